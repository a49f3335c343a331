//! Which used paths are the run's data: inputs it read and outputs it left.
//!
//! The rules, in order (docs/manifest.md):
//! 1. a path matching an `--exclude` glob is never data;
//! 2. a path matching an `--include` glob is data whatever else is said below;
//! 3. otherwise it is not data if it lies in a system tree (`/usr`, `/etc`, …), is a
//!    cache (`__pycache__`, `~/.cache`, `/var/cache`, fontconfig and matplotlib
//!    caches, Dask's `dask-scratch-space`), is package metadata (a `.dist-info`
//!    or `.egg-info`, an editable project's included), is an anonymous memory
//!    file, is reprotrace's own (a `reprotrace-dask-*` directory), or belongs
//!    to software the manifest lists (a Python distribution, an interpreter's
//!    standard library, a system package).
//!
//! Of what remains, only regular files count: an input was read and not written
//! by the run; an output was created or written by the run and still exists under
//! that name when it ends (a temp file renamed over its target leaves the target;
//! a file opened with `O_CREAT`, even read-only, and born after the run started
//! was made by it; a file created and deleted leaves nothing, even opened
//! read-only: `O_CREAT` may have made it). Each data file is described by its size and mtime, and
//! [`hash_data`] adds its SHA-256, hashing in parallel. Paths in a mount
//! namespace the auditor cannot see into are listed with the namespace and
//! nothing else: whatever sits at that path on the host is another file.

use std::{
    collections::HashMap,
    ffi::OsStr,
    io::Read,
    os::unix::ffi::OsStrExt,
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::SystemTime,
};

use globset::{GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::{
    access::{AccessLog, PathUse},
    fsaccess::{self, FileStat, Lstats},
    hash_cache::HashCache,
    software,
    tracker::{path::is_under, view::NamespaceId},
    units,
};

/// Trees whose files are the system's, never the run's data.
pub const SYSTEM_TREES: &[&[u8]] = &[
    b"/usr",
    b"/lib",
    b"/lib32",
    b"/lib64",
    b"/libx32",
    b"/bin",
    b"/sbin",
    b"/etc",
    b"/proc",
    b"/sys",
    b"/dev",
    b"/run",
    b"/boot",
    b"/var/cache",
    b"/var/lib/dpkg",
];

/// Path components that mark a cache wherever they appear.
const CACHE_COMPONENTS: &[&[u8]] =
    &[b"__pycache__", b".cache", b".matplotlib", b".fontconfig", b".ipython", b"dask-scratch-space"];

#[derive(Debug, thiserror::Error)]
#[error("invalid glob {pattern:?}: {source}")]
pub struct GlobError {
    pattern: String,
    source: globset::Error,
}

/// The user's overrides of the built-in rules.
#[derive(Clone, Debug)]
pub struct Rules {
    include: GlobSet,
    exclude: GlobSet,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { include: GlobSet::empty(), exclude: GlobSet::empty() }
    }
}

impl Rules {
    /// Rules from `--include` and `--exclude` globs (matched against absolute
    /// paths; `*` does not cross `/`, `**` does).
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, GlobError> {
        Ok(Rules { include: glob_set(include)?, exclude: glob_set(exclude)? })
    }
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, GlobError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|source| GlobError { pattern: pattern.clone(), source })?;
        builder.add(glob);
    }
    builder.build().map_err(|source| GlobError { pattern: patterns.join(" "), source })
}

/// A data file as the manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    pub path: Vec<u8>,
    /// `None` for an input the run removed.
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    /// Hex SHA-256 of the contents after the run; `None` if it could not be read.
    pub sha256: Option<String>,
    /// An input whose modification time is later than the start of the run:
    /// something changed it while the run used it.
    pub changed_during_run: bool,
    /// The path is in this mount namespace, out of the auditor's reach: not
    /// described further.
    pub namespace: Option<NamespaceId>,
    /// Larger than the hash limit: described by size and mtime only.
    pub over_hash_limit: bool,
}

/// How data files are hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hashing {
    /// Files larger than this are not hashed (`None`: all are).
    pub limit: Option<u64>,
    /// A progress line on stderr while much is hashed (the caller knows it
    /// is a terminal).
    pub report: bool,
    /// Every file is read, none taken from the hashes remembered
    /// (`--rehash`; see [`crate::hash_cache`]).
    pub rehash: bool,
}

impl Hashing {
    /// The default `--hash-limit`: hashing 4 GiB takes some seconds.
    pub const DEFAULT_LIMIT: u64 = 4 << 30;
}

impl Default for Hashing {
    fn default() -> Self {
        Hashing { limit: Some(Hashing::DEFAULT_LIMIT), report: false, rehash: false }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSets {
    pub inputs: Vec<DataFile>,
    pub outputs: Vec<DataFile>,
}

pub fn is_system_path(path: &[u8]) -> bool {
    SYSTEM_TREES.iter().any(|tree| is_under(path, tree))
}

/// Never data, by the built-in rules, wherever it is: system trees, caches,
/// distributions' metadata (an editable project's `.egg-info` included:
/// software), reprotrace's own state. (One pass over the path's components:
/// a run's every file is asked.)
fn is_never_data(path: &[u8]) -> bool {
    is_system_path(path)
        || path.starts_with(b"/memfd:")
        || path.split(|&byte| byte == b'/').any(|component| {
            CACHE_COMPONENTS.contains(&component)
                || software::is_metadata_dir_name(component)
                || is_reprotrace_state(component)
        })
}

/// The state reprotrace's Dask plugin keeps beside a worker it audits, and
/// the reports a run's clients bring back (python/reprotrace/dask.py): the
/// tracer's own files, written inside the traced tree.
fn is_reprotrace_state(component: &[u8]) -> bool {
    component.starts_with(b"reprotrace-dask-")
}

/// Classifies the access log, looking at the file system as it is now
/// (`lstats`, asked at the audit's end). `is_software` tells whether a path
/// belongs to software the manifest lists.
pub fn classify(
    log: &AccessLog,
    rules: &Rules,
    is_software: &dyn Fn(&[u8]) -> bool,
    started_at: SystemTime,
    lstats: &Lstats,
) -> DataSets {
    let mut data = DataSets::default();
    for (path, used) in log.iter() {
        if used.directory {
            continue;
        }
        // First what the run did with it: a path it only looked at (a stat)
        // is no data whatever the rules say, and runs look at many.
        let Some(kind) = data_kind(used) else { continue };
        let os_path = Path::new(OsStr::from_bytes(path));
        if rules.exclude.is_match(os_path) {
            continue;
        }
        if !rules.include.is_match(os_path) && (is_never_data(path) || is_software(path)) {
            continue;
        }
        let metadata = lstats.metadata(path);
        let regular = match &metadata {
            Ok(metadata) if metadata.is_file() => Some(metadata),
            Ok(_) => continue,
            Err(_) => None,
        };
        let file = DataFile {
            path: path.to_vec(),
            size: regular.map(|metadata| metadata.size),
            mtime: regular.map(FileStat::modified),
            sha256: None,
            changed_during_run: false,
            namespace: None,
            over_hash_limit: false,
        };
        let kind = match kind {
            DataKind::Input
                if used.created && regular.is_some_and(|metadata| born_during_run(metadata, started_at)) =>
            {
                DataKind::Output
            }
            kind => kind,
        };
        match kind {
            DataKind::Output if regular.is_some() => data.outputs.push(file),
            DataKind::Input if regular.is_some() || used.gone => {
                let changed = file.mtime.is_some_and(|mtime| mtime > started_at);
                data.inputs.push(DataFile { changed_during_run: changed, ..file });
            }
            _ => {}
        }
    }
    for (namespace, path, used) in log.foreign() {
        let os_path = Path::new(OsStr::from_bytes(path));
        if used.directory
            || rules.exclude.is_match(os_path)
            || (!rules.include.is_match(os_path) && is_never_data(path))
        {
            continue;
        }
        let file = DataFile {
            path: path.to_vec(),
            size: None,
            mtime: None,
            sha256: None,
            changed_during_run: false,
            namespace: Some(namespace),
            over_hash_limit: false,
        };
        match data_kind(used) {
            Some(DataKind::Output) => data.outputs.push(file),
            Some(DataKind::Input) => data.inputs.push(file),
            None => {}
        }
    }
    data
}

/// Fills in every file's SHA-256, hashing files on every core; a file already
/// described in `known` (the run's data, when describing a cell's), or
/// unchanged (`lstats`) since `remembered` learned its hash, is not read again.
pub fn hash_data(
    data: &mut DataSets,
    known: Option<&DataSets>,
    hashing: Hashing,
    lstats: &Lstats,
    remembered: &mut HashCache,
) {
    let known_hashes: HashMap<&[u8], &str> = known
        .map(|known| {
            known
                .inputs
                .iter()
                .chain(&known.outputs)
                .filter_map(|file| Some((file.path.as_slice(), file.sha256.as_deref()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut unknown = Vec::new();
    for file in data.inputs.iter_mut().chain(data.outputs.iter_mut()).filter(|file| file.size.is_some()) {
        if file.sha256.is_some() {
            continue;
        }
        match known_hashes.get(file.path.as_slice()) {
            Some(hash) => file.sha256 = Some(hash.to_string()),
            None => unknown.push(file),
        }
    }
    hash_all(unknown, hashing, lstats, remembered);
}

enum DataKind {
    Input,
    Output,
}

fn data_kind(used: &PathUse) -> Option<DataKind> {
    // Its contents live on under the name its directory was renamed to.
    if used.moved {
        return None;
    }
    if used.written {
        return (!used.gone).then_some(DataKind::Output);
    }
    // Opened with O_CREAT and gone at the end: the run may have made it, and
    // a file created and deleted is nothing.
    if used.created && used.gone {
        return None;
    }
    used.read.then_some(DataKind::Input)
}

/// A regular file as it was at one moment (when a notebook cell ended).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// `None` if it could not be read, or is over the hash limit.
    pub sha256: Option<String>,
    pub over_hash_limit: bool,
}

/// Whether `path` may be a cell's data, so that its contents are worth
/// hashing as the cell leaves it: not never-data by the built-in rules, not
/// in a Python site directory (software, which the run's index will claim).
pub fn may_be_cell_data(path: &[u8]) -> bool {
    !is_never_data(path)
        && !path
            .split(|&byte| byte == b'/')
            .any(|component| component == b"site-packages" || component == b"dist-packages")
}

/// The state of each of `paths` that is a regular file now, hashed on every
/// core (up to `hash_limit`).
pub fn states_now(paths: impl IntoIterator<Item = Vec<u8>>, hash_limit: Option<u64>) -> HashMap<Vec<u8>, FileState> {
    let mut files: Vec<DataFile> = paths
        .into_iter()
        .filter_map(|path| {
            let metadata = fsaccess::metadata(&path).ok().filter(std::fs::Metadata::is_file)?;
            Some(DataFile {
                size: Some(metadata.len()),
                mtime: metadata.modified().ok(),
                sha256: None,
                changed_during_run: false,
                namespace: None,
                over_hash_limit: false,
                path,
            })
        })
        .collect();
    let hashing = Hashing { limit: hash_limit, report: false, rehash: true };
    hash_all(files.iter_mut().collect(), hashing, &Lstats::default(), &mut HashCache::default());
    files
        .into_iter()
        .map(|file| {
            let state = FileState {
                size: file.size.unwrap_or(0),
                mtime: file.mtime,
                sha256: file.sha256,
                over_hash_limit: file.over_hash_limit,
            };
            (file.path, state)
        })
        .collect()
}

/// Describes the files of `data` that `states` knows as `states` says (how a
/// cell left them), instead of as they are now.
pub fn describe_as(data: &mut DataSets, states: &HashMap<Vec<u8>, FileState>) {
    for file in data.inputs.iter_mut().chain(data.outputs.iter_mut()) {
        if let Some(state) = states.get(&file.path) {
            file.size = Some(state.size);
            file.mtime = state.mtime;
            file.sha256.clone_from(&state.sha256);
            file.over_hash_limit = state.over_hash_limit;
        }
    }
}

/// Whether the file came into being after `started_at`: a file the run opened
/// with `O_CREAT`, even read-only, was then made by it, which is writing it.
/// File systems without birth times (`statx` without `STATX_BTIME`) never say so.
fn born_during_run(metadata: &FileStat, started_at: SystemTime) -> bool {
    // Inode timestamps come from the kernel's coarse clock, up to a tick
    // behind the clock `started_at` was read from.
    const COARSE_CLOCK_SLACK: std::time::Duration = std::time::Duration::from_millis(10);
    metadata.created().is_some_and(|born| born + COARSE_CLOCK_SLACK >= started_at)
}

/// Hashes `files` on every core, each read in a stream, but for those over
/// the limit and those `remembered` knows unchanged (`lstats`); with
/// `hashing.report`, when there is enough to wait for, a progress line on
/// stderr. Teaches `remembered` what it read.
fn hash_all(files: Vec<&mut DataFile>, hashing: Hashing, lstats: &Lstats, remembered: &mut HashCache) {
    let (files, over): (Vec<&mut DataFile>, Vec<&mut DataFile>) = files
        .into_iter()
        .partition(|file| hashing.limit.is_none_or(|limit| file.size.is_none_or(|size| size <= limit)));
    for file in over {
        file.over_hash_limit = true;
    }
    // Every read below starts after this (see `HashCache::learn`).
    let began = SystemTime::now();
    // (What each file is, asked only of a cache that may answer.)
    let files: Vec<(&mut DataFile, Option<FileStat>)> = files
        .into_iter()
        .map(|file| {
            let metadata = match remembered.in_use() {
                true => lstats.metadata(&file.path).ok().filter(FileStat::is_file),
                false => None,
            };
            (file, metadata)
        })
        .collect();
    let known = remembered.hashes_of(files.iter().map(|(_, metadata)| metadata.as_ref()));
    let mut read: Vec<(&mut DataFile, Option<FileStat>)> = Vec::new();
    for ((file, metadata), sha256) in files.into_iter().zip(known) {
        match sha256 {
            Some(sha256) => file.sha256 = Some(sha256),
            None => read.push((file, metadata)),
        }
    }
    if !read.is_empty() {
        hash_read(&mut read.iter_mut().map(|(file, _)| &mut **file).collect::<Vec<_>>(), hashing.report);
    }
    for (file, metadata) in &read {
        if let (Some(metadata), Some(sha256)) = (metadata, &file.sha256) {
            remembered.learn(metadata, sha256, began);
        }
    }
}

/// Reads and hashes `files` on every core.
fn hash_read(files: &mut [&mut DataFile], report: bool) {
    let total: u64 = files.iter().filter_map(|file| file.size).sum();
    let hashed = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        if report && total >= REPORT_HASHING_ABOVE {
            scope.spawn(|| hashing_progress(&hashed, total, &done));
        }
        let hashers: Vec<_> = files
            .chunks_mut(chunk)
            .map(|part| {
                let hashed = &hashed;
                scope.spawn(move || {
                    // One buffer a worker: zeroing 64 KiB a file cost more
                    // than hashing a small one.
                    let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
                    for file in part {
                        file.sha256 = sha256_counting(&file.path, hashed, &mut buffer);
                    }
                })
            })
            .collect();
        for hasher in hashers {
            let _ = hasher.join();
        }
        done.store(true, Ordering::Relaxed);
    });
}

/// Below this, hashing is over before a progress line would help.
const REPORT_HASHING_ABOVE: u64 = 256 << 20;

/// Redraws "hashing data: X of Y" until `done`, then clears it.
fn hashing_progress(hashed: &AtomicU64, total: u64, done: &AtomicBool) {
    let tick = std::time::Duration::from_millis(250);
    while !done.load(Ordering::Relaxed) {
        let so_far = units::human_size(hashed.load(Ordering::Relaxed));
        eprint!("\rreprotrace: hashing the data: {so_far} of {}\x1b[K", units::human_size(total));
        std::thread::sleep(tick);
    }
    eprint!("\r\x1b[K");
}

/// The hex SHA-256 of a file's contents; `None` if it cannot be read.
pub fn sha256_of(path: &[u8]) -> Option<String> {
    sha256_counting(path, &AtomicU64::new(0), &mut vec![0u8; HASH_BUFFER_BYTES])
}

/// [`sha256_of`], adding the bytes it reads to `hashed` as it goes.
fn sha256_counting(path: &[u8], hashed: &AtomicU64, buffer: &mut [u8]) -> Option<String> {
    let mut file = fsaccess::open(path).ok()?;
    let mut hasher = Sha256::new();
    loop {
        let read = file.read(buffer).ok()?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        hashed.fetch_add(read as u64, Ordering::Relaxed);
    }
    Some(format!("{:x}", hasher.finalize()))
}

/// What a hashing worker reads at a time.
const HASH_BUFFER_BYTES: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{FileOp, OpenMode};

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn path(&self, name: &str) -> Vec<u8> {
            let mut path = self.dir.path().as_os_str().as_bytes().to_vec();
            path.extend_from_slice(b"/");
            path.extend_from_slice(name.as_bytes());
            path
        }

        fn write(&self, name: &str, contents: &[u8]) -> Vec<u8> {
            let path = self.path(name);
            let os_path = Path::new(OsStr::from_bytes(&path));
            std::fs::create_dir_all(os_path.parent().expect("parent")).expect("mkdir");
            std::fs::write(os_path, contents).expect("write");
            path
        }
    }

    fn no_software(_: &[u8]) -> bool {
        false
    }

    #[test]
    fn a_file_unchanged_since_it_was_hashed_is_not_read_again() {
        let fx = Fixture { dir: tempfile::tempdir().expect("tempdir") };
        let input = fx.write("in.csv", b"abc");
        let mut log = AccessLog::new();
        log.record(1, FileOp::Open { path: input.clone(), mode: OpenMode::Read, create: false });
        let started = SystemTime::now() - std::time::Duration::from_secs(3600);
        let lstats = Lstats::of(vec![&input], || ()).0;
        let hash = |remembered: &mut HashCache| {
            let mut data = classify(&log, &Rules::default(), &no_software, started, &lstats);
            hash_data(&mut data, None, Hashing::default(), &lstats, remembered);
            data.inputs[0].sha256.clone().expect("hashed")
        };
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        // A cache that remembers another hash for it (which no real file
        // would have): the file is not read.
        let mut remembered = HashCache::in_dir(fx.dir.path().join("cache"));
        let settled = SystemTime::now() + crate::hash_cache::SETTLED + std::time::Duration::from_millis(10);
        let other = "0".repeat(64);
        remembered.learn(&lstats.metadata(&input).expect("stat"), &other, settled);
        assert_eq!(hash(&mut remembered), other);
        // Without it, it is read; just written, its hash is not kept.
        let mut fresh = HashCache::in_dir(fx.dir.path().join("fresh"));
        assert_eq!(hash(&mut fresh), abc);
        fresh.save().expect("save");
        assert_eq!(hash(&mut HashCache::in_dir(fx.dir.path().join("fresh"))), abc);
        assert!(!fx.dir.path().join("fresh").exists(), "nothing settled was learned");
    }

    #[test]
    fn classification_follows_the_rules() {
        let started = SystemTime::now() - std::time::Duration::from_secs(3600);
        let fx = Fixture { dir: tempfile::tempdir().expect("tempdir") };
        let input = fx.write("in.csv", b"abc");
        let output = fx.write("out.csv", b"hello");
        let mut log = AccessLog::new();
        log.record(1, FileOp::Open { path: input.clone(), mode: OpenMode::Read, create: false });
        log.record(1, FileOp::Open { path: fx.path("out.tmp"), mode: OpenMode::Write, create: true });
        log.record(1, FileOp::Rename { from: fx.path("out.tmp"), to: output.clone(), exchange: false });
        log.record(1, FileOp::Open { path: fx.path("scratch"), mode: OpenMode::Write, create: true });
        log.record(1, FileOp::Remove { path: fx.path("scratch"), dir: false });
        log.record(1, FileOp::Open { path: b"/etc/hosts".to_vec(), mode: OpenMode::Read, create: false });
        let mut data = classify(&log, &Rules::default(), &no_software, started, &Lstats::default());
        hash_data(&mut data, None, Hashing::default(), &Lstats::default(), &mut HashCache::default());
        assert_eq!(data.inputs.len(), 1);
        let first = &data.inputs[0];
        assert_eq!((first.path.clone(), first.size), (input, Some(3)));
        assert_eq!(first.sha256.as_deref(), Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        assert!(first.changed_during_run, "written after `started`");
        assert_eq!(data.outputs.iter().map(|file| file.path.clone()).collect::<Vec<_>>(), vec![output]);
    }

    #[test]
    fn a_file_opened_read_only_with_o_creat_is_an_output_if_born_during_the_run() {
        let fx = Fixture { dir: tempfile::tempdir().expect("tempdir") };
        let existing = fx.write("existing.txt", b"before");
        // Well beyond the coarse clock's slack.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let started = SystemTime::now();
        let made = fx.write("made.txt", b"");
        let mut log = AccessLog::new();
        for path in [&existing, &made] {
            log.record(1, FileOp::Open { path: path.clone(), mode: OpenMode::Read, create: true });
        }
        let data = classify(&log, &Rules::default(), &no_software, started, &Lstats::default());
        let paths = |files: &[DataFile]| files.iter().map(|file| file.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&data.inputs), vec![existing]);
        assert_eq!(paths(&data.outputs), vec![made]);
    }

    #[test]
    fn caches_software_and_globs() {
        let fx = Fixture { dir: tempfile::tempdir().expect("tempdir") };
        let cached = fx.write("pkg/__pycache__/m.cpython-311.pyc", b"x");
        let dot_cache = fx.write("home/.cache/tool/state", b"x");
        let library = fx.write("venv/lib/site.py", b"x");
        let kept = fx.write("data/keep.bin", b"x");
        let dropped = fx.write("data/drop.log", b"x");
        let mut log = AccessLog::new();
        for path in [&cached, &dot_cache, &library, &kept, &dropped] {
            log.record(1, FileOp::Open { path: path.clone(), mode: OpenMode::Read, create: false });
        }
        let is_software = |path: &[u8]| path.ends_with(b"site.py");
        let rules = Rules::new(&[], &["**/*.log".to_string()]).expect("globs");
        let data = classify(&log, &rules, &is_software, SystemTime::now(), &Lstats::default());
        assert_eq!(data.inputs.iter().map(|file| file.path.clone()).collect::<Vec<_>>(), vec![kept.clone()]);
        // --include brings back what the built-in rules leave out.
        let rules = Rules::new(&["**/__pycache__/*".to_string()], &[]).expect("globs");
        let data = classify(&log, &rules, &is_software, SystemTime::now(), &Lstats::default());
        let paths: Vec<Vec<u8>> = data.inputs.iter().map(|file| file.path.clone()).collect();
        assert!(paths.contains(&cached) && paths.contains(&kept) && paths.contains(&dropped));
    }

    #[test]
    fn bad_globs_are_reported() {
        let err = Rules::new(&["a[".to_string()], &[]).expect_err("unclosed class");
        assert!(err.to_string().contains("a["), "{err}");
    }
}
