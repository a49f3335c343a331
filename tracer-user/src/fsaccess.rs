//! Reading the files a run used, by absolute paths of any length: a path the
//! kernel would refuse as too long (a run can make one with relative paths
//! and `chdir`) is opened directory by directory. At the audit's end, what
//! each file is, asked once for all of them on every core ([`Lstats`]).

use std::{
    fs::{File, Metadata},
    io,
    os::unix::ffi::OsStrExt,
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
};

use rustc_hash::FxHashMap;
use rustix::fs::{openat, Mode, OFlags, CWD};

/// Longest path handed to the kernel in one piece (below `PATH_MAX`).
const PIECE: usize = 3072;

/// Opens `path` (absolute) for reading.
pub fn open(path: &[u8]) -> io::Result<File> {
    open_with(path, OFlags::RDONLY | OFlags::CLOEXEC)
}

/// The metadata of what `path` (absolute) names, symbolic links followed.
pub fn metadata(path: &[u8]) -> io::Result<std::fs::Metadata> {
    if path.len() <= PIECE {
        return std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(path)));
    }
    open_with(path, OFlags::PATH | OFlags::CLOEXEC)?.metadata()
}

/// What `lstat` said of each of a run's files, asked once for all of them
/// when the audit ends, on every core: software identification asks whether
/// a file is a symbolic link, data classification what it is, and for a file
/// that is no link both answers are in its `lstat` (the kernel's own work,
/// most of an audit's end). A path it was not asked about (any, for the
/// default one), or one too long to hand the kernel in one piece, is asked
/// about when needed.
#[derive(Default)]
pub struct Lstats<'a> {
    /// Keyed by path, hashed with FxHash (as the software indexes' tables).
    answers: FxHashMap<&'a [u8], Result<Metadata, io::ErrorKind>>,
}

/// Below this many paths a thread costs more than it saves.
const PATHS_PER_THREAD_AT_LEAST: usize = 64;
/// The paths a thread takes at a time: a thread that starts late (the
/// core busy, or taken by the host) leaves the others more, instead of
/// holding up the audit's end with a share of its own.
const PATHS_PER_TAKE: usize = 32;

impl<'a> Lstats<'a> {
    /// `lstat`s every one of `paths` (absolute), on as many threads as
    /// there are cores (started by the calling thread: they act with its
    /// rights).
    pub fn of(paths: Vec<&'a [u8]>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let threads = cores.min(paths.len().div_ceil(PATHS_PER_THREAD_AT_LEAST)).max(1);
        let next = AtomicUsize::new(0);
        let take_all = || {
            let mut answers = Vec::with_capacity(paths.len().div_ceil(threads) + PATHS_PER_TAKE);
            loop {
                let start = next.fetch_add(PATHS_PER_TAKE, Ordering::Relaxed);
                if start >= paths.len() {
                    break;
                }
                answers.extend(lstat_all(&paths[start..paths.len().min(start + PATHS_PER_TAKE)]));
            }
            answers
        };
        let answers = std::thread::scope(|scope| {
            // One that cannot start leaves its share to the others.
            let helpers: Vec<_> = (1..threads)
                .filter_map(|_| std::thread::Builder::new().name("lstat".into()).spawn_scoped(scope, take_all).ok())
                .collect();
            // Sized at once: growing it moved every answer (a `Metadata` is
            // large) several times.
            let mut answers = FxHashMap::with_capacity_and_hasher(paths.len(), Default::default());
            answers.extend(take_all());
            for helper in helpers {
                // One that failed leaves its paths to be asked when needed.
                answers.extend(helper.join().unwrap_or_default());
            }
            answers
        });
        Lstats { answers }
    }

    /// Whether `path` is a symbolic link.
    pub fn is_symlink(&self, path: &[u8]) -> bool {
        match self.answers.get(path) {
            Some(answer) => answer.as_ref().is_ok_and(|metadata| metadata.file_type().is_symlink()),
            None => lstat(path).is_ok_and(|metadata| metadata.file_type().is_symlink()),
        }
    }

    /// The metadata of what `path` (absolute) names, symbolic links
    /// followed, as [`metadata`] has it: a file's `lstat`, unless it is a
    /// link. (A path `lstat` cannot reach, `stat` cannot either: they walk
    /// the same directories.)
    pub fn metadata(&self, path: &[u8]) -> io::Result<Metadata> {
        match self.answers.get(path) {
            Some(Ok(metadata)) if !metadata.file_type().is_symlink() => Ok(metadata.clone()),
            Some(Err(kind)) => Err(io::Error::from(*kind)),
            Some(Ok(_)) | None => metadata(path),
        }
    }
}

/// Each of `paths` short enough to hand the kernel, and its `lstat`.
fn lstat_all<'a, 'b>(
    paths: &'b [&'a [u8]],
) -> impl Iterator<Item = (&'a [u8], Result<Metadata, io::ErrorKind>)> + use<'a, 'b> {
    paths.iter().filter(|path| path.len() <= PIECE).map(|&path| (path, lstat(path).map_err(|err| err.kind())))
}

/// What `path` names, itself (a link is not followed).
fn lstat(path: &[u8]) -> io::Result<Metadata> {
    std::fs::symlink_metadata(Path::new(std::ffi::OsStr::from_bytes(path)))
}

fn open_with(path: &[u8], flags: OFlags) -> io::Result<File> {
    if path.len() <= PIECE {
        let fd = openat(CWD, path, flags, Mode::empty())?;
        return Ok(File::from(fd));
    }
    // Directory by directory: each piece ends at a slash and is short enough.
    let mut directory = None;
    let mut rest = path;
    while rest.len() > PIECE {
        let cut = rest[..PIECE].iter().rposition(|&byte| byte == b'/').filter(|&cut| cut > 0).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a path component is longer than the kernel takes")
        })?;
        let (piece, remaining) = rest.split_at(cut);
        let opened = match &directory {
            None => openat(CWD, piece, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?,
            Some(parent) => openat(parent, piece, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?,
        };
        directory = Some(opened);
        rest = &remaining[1..];
    }
    let fd = match &directory {
        None => openat(CWD, rest, flags, Mode::empty())?,
        Some(parent) => openat(parent, rest, flags, Mode::empty())?,
    };
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsStr, io::Read, os::unix::ffi::OsStringExt};

    use super::*;

    #[test]
    fn paths_longer_than_the_kernel_takes_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let component = "d".repeat(200);
        // Made as a run would: one short relative step at a time.
        let mut fd = openat(CWD, dir.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("base");
        for _ in 0..30 {
            rustix::fs::mkdirat(&fd, component.as_str(), Mode::from_raw_mode(0o755)).expect("mkdir");
            fd = openat(&fd, component.as_str(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("step");
        }
        let file = openat(&fd, "out.txt", OFlags::WRONLY | OFlags::CREATE, Mode::from_raw_mode(0o644)).expect("file");
        rustix::io::write(&file, b"deep").expect("write");
        let mut path = dir.path().as_os_str().as_bytes().to_vec();
        for _ in 0..30 {
            path.push(b'/');
            path.extend_from_slice(component.as_bytes());
        }
        path.extend_from_slice(b"/out.txt");
        assert!(path.len() > 4096, "{} bytes", path.len());
        assert_eq!(metadata(&path).expect("metadata").len(), 4);
        let mut contents = String::new();
        open(&path).expect("open").read_to_string(&mut contents).expect("read");
        assert_eq!(contents, "deep");
        let lstats = Lstats::of(vec![&path]);
        assert_eq!(lstats.metadata(&path).expect("asked when needed").len(), 4);
        assert!(!lstats.is_symlink(&path));
    }

    #[test]
    fn lstats_answer_as_the_kernel_does_for_files_links_and_missing_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |name: &str| dir.path().join(name).into_os_string().into_vec();
        // Enough files for every core to take a part.
        let files: Vec<Vec<u8>> = (0..300).map(|index| at(&format!("f{index}"))).collect();
        for (index, file) in files.iter().enumerate() {
            std::fs::write(OsStr::from_bytes(file), vec![b'x'; index]).expect("write");
        }
        std::os::unix::fs::symlink(OsStr::from_bytes(&files[7]), OsStr::from_bytes(&at("link"))).expect("link");
        std::os::unix::fs::symlink(OsStr::from_bytes(&at("nowhere")), OsStr::from_bytes(&at("dangling")))
            .expect("dangling");
        std::fs::create_dir(dir.path().join("dir")).expect("dir");
        let (link, dangling, missing, directory) = (at("link"), at("dangling"), at("missing"), at("dir"));
        let mut asked: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        asked.extend([link.as_slice(), dangling.as_slice(), missing.as_slice(), directory.as_slice()]);
        let lstats = Lstats::of(asked);
        for (index, file) in files.iter().enumerate() {
            assert_eq!(lstats.metadata(file).expect("a file").len(), index as u64);
            assert!(!lstats.is_symlink(file));
        }
        assert!(lstats.is_symlink(&link) && lstats.is_symlink(&dangling));
        assert_eq!(lstats.metadata(&link).expect("followed").len(), 7, "a link's metadata is its target's");
        assert_eq!(lstats.metadata(&dangling).expect_err("dangling").kind(), io::ErrorKind::NotFound);
        assert_eq!(lstats.metadata(&missing).expect_err("missing").kind(), io::ErrorKind::NotFound);
        assert!(!lstats.is_symlink(&missing));
        assert!(lstats.metadata(&directory).expect("a directory").is_dir());
        // A path it was not asked about is asked about when needed.
        let unasked = at("unasked");
        std::fs::write(OsStr::from_bytes(&unasked), b"late").expect("write");
        assert_eq!(lstats.metadata(&unasked).expect("asked now").len(), 4);
    }
}
