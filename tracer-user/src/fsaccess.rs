//! Reading the files a run used, by absolute paths of any length: a path the
//! kernel would refuse as too long (a run can make one with relative paths
//! and `chdir`) is opened directory by directory. At the audit's end, what
//! each file is, asked once for all of them on every core ([`Lstats`]).

use std::{
    fs::{File, Metadata},
    io,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustc_hash::FxHashMap;
use rustix::fs::{openat, statx, AtFlags, Mode, OFlags, Statx, StatxFlags, StatxTimestamp, CWD};

use crate::tracker::path::{file_name, parent};

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

/// What the kernel says of a file (`statx`): what an audit's end asks of
/// it, in 80 bytes where a `std::fs::Metadata` takes 176 (an audit's end
/// holds one for each of a run's files, and copies them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Type and permissions (`st_mode`).
    pub mode: u32,
    /// The file system's device, as `st_dev` has it.
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    /// Seconds and nanoseconds since the epoch, as the kernel gives them.
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    /// Birth time, where the file system records one.
    pub btime: Option<SystemTime>,
}

impl FileStat {
    fn of_statx(statx: &Statx) -> FileStat {
        let time = |stamp: &StatxTimestamp| (stamp.tv_sec, stamp.tv_nsec);
        FileStat {
            mode: u32::from(statx.stx_mode),
            device: rustix::fs::makedev(statx.stx_dev_major, statx.stx_dev_minor),
            inode: statx.stx_ino,
            size: statx.stx_size,
            mtime: time(&statx.stx_mtime),
            ctime: time(&statx.stx_ctime),
            btime: (statx.stx_mask & StatxFlags::BTIME.bits() != 0).then(|| system_time(time(&statx.stx_btime))),
        }
    }

    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    pub fn modified(&self) -> SystemTime {
        system_time(self.mtime)
    }

    /// `None` where the file system records no birth time.
    pub fn created(&self) -> Option<SystemTime> {
        self.btime
    }
}

impl From<&Metadata> for FileStat {
    fn from(metadata: &Metadata) -> FileStat {
        // (`std` gives the nanoseconds as an i64 in 0..1e9.)
        let time = |seconds: i64, nanoseconds: i64| (seconds, nanoseconds as u32);
        FileStat {
            mode: metadata.mode(),
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime: time(metadata.mtime(), metadata.mtime_nsec()),
            ctime: time(metadata.ctime(), metadata.ctime_nsec()),
            btime: metadata.created().ok(),
        }
    }
}

/// What identifies a file's contents, as `stat` says: what the caches keep
/// of a file they read (the hash cache of a hashed file, the Python index of
/// the metadata it read), and compare with what `stat` says of it later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Identity {
    pub fn of(stat: &FileStat) -> Identity {
        let ns = |(seconds, nanoseconds): (i64, u32)| {
            seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(nanoseconds))
        };
        Identity {
            device: stat.device,
            inode: stat.inode,
            size: stat.size,
            mtime_ns: ns(stat.mtime),
            ctime_ns: ns(stat.ctime),
        }
    }
}

/// The time `(seconds, nanoseconds)` after the epoch (seconds may be negative).
fn system_time((seconds, nanoseconds): (i64, u32)) -> SystemTime {
    let nanoseconds = Duration::from_nanos(u64::from(nanoseconds));
    match u64::try_from(seconds) {
        Ok(seconds) => UNIX_EPOCH + Duration::from_secs(seconds) + nanoseconds,
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + nanoseconds,
    }
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
    answers: FxHashMap<&'a [u8], Result<FileStat, io::ErrorKind>>,
}

/// Below this many paths a thread costs more than it saves.
const PATHS_PER_THREAD_AT_LEAST: usize = 64;
/// The paths a thread takes at a time: a thread that starts late (the
/// core busy, or taken by the host) leaves the others more, instead of
/// holding up the audit's end with a share of its own.
const PATHS_PER_TAKE: usize = 32;
/// Files of one directory, from this many on, are asked about relative to
/// the directory, opened once: the kernel then walks the directory's path
/// once, not once a file (`statx` of a file in a directory five deep took a
/// third longer by its whole path).
const RELATIVE_AT_LEAST: usize = 4;

impl<'a> Lstats<'a> {
    /// `lstat`s every one of `paths` (absolute, sorted: a directory's files
    /// come together), on as many threads as there are cores (started by the
    /// calling thread: they act with its rights); the calling thread runs
    /// `meanwhile` once the others are started, then takes its share. (A
    /// thread woken on an idle core of a virtual machine may take a
    /// millisecond to run: started first, the helpers of an audit of 2,000
    /// files did their share, and its `lstat`s took 1.2 ms where they took
    /// 1.8.)
    pub fn of<R>(paths: Vec<&'a [u8]>, meanwhile: impl FnOnce() -> R) -> (Self, R) {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let threads = cores.min(paths.len().div_ceil(PATHS_PER_THREAD_AT_LEAST)).max(1);
        // What a thread takes at a time: up to PATHS_PER_TAKE paths of one directory.
        let takes: Vec<&[&'a [u8]]> = paths
            .chunk_by(|one, next| parent(one) == parent(next))
            .flat_map(|siblings| siblings.chunks(PATHS_PER_TAKE))
            .collect();
        let next = AtomicUsize::new(0);
        let take_all = || {
            let mut answers = Vec::with_capacity(paths.len().div_ceil(threads) + PATHS_PER_TAKE);
            while let Some(siblings) = takes.get(next.fetch_add(1, Ordering::Relaxed)) {
                lstat_siblings(siblings, &mut answers);
            }
            answers
        };
        std::thread::scope(|scope| {
            // One that cannot start leaves its share to the others.
            let helpers: Vec<_> = (1..threads)
                .filter_map(|_| std::thread::Builder::new().name("lstat".into()).spawn_scoped(scope, take_all).ok())
                .collect();
            let meanwhile = meanwhile();
            let mut answers = FxHashMap::with_capacity_and_hasher(paths.len(), Default::default());
            answers.extend(take_all());
            for helper in helpers {
                // One that failed leaves its paths to be asked when needed.
                answers.extend(helper.join().unwrap_or_default());
            }
            (Lstats { answers }, meanwhile)
        })
    }

    /// Whether `path` is a symbolic link.
    pub fn is_symlink(&self, path: &[u8]) -> bool {
        match self.answers.get(path) {
            Some(answer) => answer.as_ref().is_ok_and(FileStat::is_symlink),
            None => lstat(path).is_ok_and(|metadata| metadata.file_type().is_symlink()),
        }
    }

    /// What `path` (absolute) names, symbolic links followed, as
    /// [`metadata`] has it: a file's `lstat`, unless it is a link. (A path
    /// `lstat` cannot reach, `stat` cannot either: they walk the same
    /// directories.)
    pub fn metadata(&self, path: &[u8]) -> io::Result<FileStat> {
        match self.answers.get(path) {
            Some(Ok(stat)) if !stat.is_symlink() => Ok(*stat),
            Some(Err(kind)) => Err(io::Error::from(*kind)),
            Some(Ok(_)) | None => metadata(path).map(|metadata| FileStat::from(&metadata)),
        }
    }
}

/// Adds to `answers` each of `siblings` (paths in one directory) short
/// enough to hand the kernel, and its `lstat`: relative to the directory
/// when there are enough of them and it opens.
fn lstat_siblings<'a>(siblings: &[&'a [u8]], answers: &mut Vec<(&'a [u8], Result<FileStat, io::ErrorKind>)>) {
    const ASKED: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::BTIME);
    let directory = match siblings {
        [first, ..] if siblings.len() >= RELATIVE_AT_LEAST => {
            parent(first).filter(|directory| directory.len() <= PIECE).and_then(|directory| {
                openat(CWD, directory, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()
            })
        }
        _ => None,
    };
    for &path in siblings.iter().filter(|path| path.len() <= PIECE) {
        let answer = match (&directory, file_name(path)) {
            (Some(directory), name) if !name.is_empty() => statx(directory, name, AtFlags::SYMLINK_NOFOLLOW, ASKED),
            _ => statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, ASKED),
        };
        answers.push((path, answer.map(|statx| FileStat::of_statx(&statx)).map_err(|err| io::Error::from(err).kind())));
    }
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
        let lstats = Lstats::of(vec![&path], || ()).0;
        assert_eq!(lstats.metadata(&path).expect("asked when needed").size, 4);
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
        // Too few in their directory to open it: asked about by their whole path.
        let few = [at("dir/a"), at("dir/b")];
        for file in &few {
            std::fs::write(OsStr::from_bytes(file), b"few").expect("write");
        }
        let (link, dangling, missing, directory) = (at("link"), at("dangling"), at("missing"), at("dir"));
        let mut asked: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        asked.extend([link.as_slice(), dangling.as_slice(), missing.as_slice(), directory.as_slice()]);
        asked.extend(few.iter().map(Vec::as_slice));
        let (lstats, meanwhile) = Lstats::of(asked, || "ran");
        assert_eq!(meanwhile, "ran");
        let as_std_says = |path: &[u8]| lstat(path).ok().map(|metadata| FileStat::from(&metadata));
        for (index, file) in files.iter().enumerate() {
            assert_eq!(lstats.metadata(file).expect("a file").size, index as u64);
            assert!(!lstats.is_symlink(file));
            // Asked relative to their directory, they are described as `std` describes them.
            assert_eq!(lstats.metadata(file).ok(), as_std_says(file));
        }
        for file in &few {
            assert_eq!(lstats.metadata(file).ok(), as_std_says(file));
        }
        assert!(lstats.is_symlink(&link) && lstats.is_symlink(&dangling));
        assert_eq!(lstats.metadata(&link).expect("followed").size, 7, "a link's metadata is its target's");
        assert_eq!(lstats.metadata(&dangling).expect_err("dangling").kind(), io::ErrorKind::NotFound);
        assert_eq!(lstats.metadata(&missing).expect_err("missing").kind(), io::ErrorKind::NotFound);
        assert!(!lstats.is_symlink(&missing));
        assert_eq!(lstats.metadata(&directory).expect("a directory").mode & libc::S_IFMT, libc::S_IFDIR);
        // A path it was not asked about is asked about when needed.
        let unasked = at("unasked");
        std::fs::write(OsStr::from_bytes(&unasked), b"late").expect("write");
        assert_eq!(lstats.metadata(&unasked).expect("asked now").size, 4);
    }
}
