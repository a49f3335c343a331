//! What reprotrace keeps between audits to start faster (the dpkg index, the
//! kernel's struct offsets): files in one directory, each written atomically
//! and read back only when its key (what it was made from) still holds.
//! Root's live in `/var/cache/reprotrace`; a user's in their cache directory.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// The directory: root's `/var/cache/reprotrace`, a user's
/// `$XDG_CACHE_HOME/reprotrace` (else `~/.cache/reprotrace`) when that
/// directory is theirs: acting as a user under sudo, the environment is still
/// root's, whose cache is not for them. `None`: nothing is cached.
pub fn dir() -> Option<PathBuf> {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        return Some(PathBuf::from("/var/cache/reprotrace"));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(cache) => PathBuf::from(cache),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    let owner =
        |path: &Path| std::fs::metadata(path).ok().map(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata));
    let theirs = owner(&base).or_else(|| base.parent().and_then(owner)) == Some(euid.as_raw());
    theirs.then(|| base.join("reprotrace"))
}

/// `contents` under `name` in `dir` (made if missing), for `key`: a temporary
/// file renamed into place.
pub fn write(dir: &Path, name: &str, key: &[u8], contents: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new().prefix(".reprotrace-cache-").tempfile_in(dir)?;
    temp.write_all(&(key.len() as u64).to_le_bytes())?;
    temp.write_all(key)?;
    temp.write_all(contents)?;
    temp.persist(dir.join(name)).map_err(|err| err.error)?;
    Ok(())
}

/// The contents cached under `name` in `dir` for `key`, if there are any
/// (the whole file: the contents start at the returned offset).
pub fn read(dir: &Path, name: &str, key: &[u8]) -> Option<(Vec<u8>, usize)> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    let key_len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let start = 8usize.checked_add(key_len)?;
    (bytes.get(8..start)? == key).then_some((bytes, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_come_back_for_their_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "thing", b"key-1", b"contents").expect("write");
        let (bytes, start) = read(dir.path(), "thing", b"key-1").expect("read");
        assert_eq!(&bytes[start..], b"contents");
        assert!(read(dir.path(), "thing", b"key-2").is_none());
        assert!(read(dir.path(), "other", b"key-1").is_none());
        std::fs::write(dir.path().join("thing"), [200u8; 4]).expect("damage");
        assert!(read(dir.path(), "thing", b"key-1").is_none());
    }
}
