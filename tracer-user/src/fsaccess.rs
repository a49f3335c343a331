//! Reading the files a run used, by absolute paths of any length: a path the
//! kernel would refuse as too long (a run can make one with relative paths
//! and `chdir`) is opened directory by directory.

use std::{fs::File, io, os::unix::ffi::OsStrExt, path::Path};

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
    use std::io::Read;

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
    }
}
