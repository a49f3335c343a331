//! What reprotrace keeps between audits to start faster (the dpkg index, the
//! kernel's struct offsets): files in one directory, each written atomically
//! and read back only when its key (what it was made from) still holds.
//! Root's live in `/var/cache/reprotrace`; a user's in their cache directory.
//! A directory that is not the user's alone, or a link, is neither read nor
//! written: root trusts what it reads there (the offsets it hands the kernel
//! programs, which package owns a file).

use std::{
    io::Write,
    os::unix::fs::DirBuilderExt,
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

/// Whether `dir` is a directory (not a link to one) of this user's that no
/// one else can write to: what is read from it is trusted, by root too.
fn is_ours(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|metadata| {
        metadata.is_dir() && metadata.uid() == rustix::process::geteuid().as_raw() && metadata.mode() & 0o022 == 0
    })
}

/// `contents` under `name` in `dir` (made if missing), for `key`: a temporary
/// file, on disk before it is renamed into place, so that a crash leaves
/// the old file or the new one whole. For what is trusted as it is read
/// back (the dpkg index, searched in place; the kernel's offsets).
pub fn write(dir: &Path, name: &str, key: &[u8], contents: &[u8]) -> std::io::Result<()> {
    write_file(dir, name, key, Durability::Synced, |out| out.write_all(contents))
}

/// As [`write`], with the contents written by `fill` as it makes them (a
/// cache of megabytes is never whole in memory), and not waited for on
/// disk: for a file whose records are each checked as they are read back
/// (the hash cache, rewritten at an audit's end).
pub fn write_with(
    dir: &Path,
    name: &str,
    key: &[u8],
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_file(dir, name, key, Durability::Unsynced, fill)
}

/// Whether a cache file is on disk before it is renamed into place.
enum Durability {
    Synced,
    Unsynced,
}

fn write_file(
    dir: &Path,
    name: &str,
    key: &[u8],
    durability: Durability,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    ready_to_write(dir)?;
    let mut temp = tempfile::Builder::new().prefix(".reprotrace-cache-").tempfile_in(dir)?;
    let mut out = std::io::BufWriter::new(temp.as_file_mut());
    out.write_all(&(key.len() as u64).to_le_bytes())?;
    out.write_all(key)?;
    fill(&mut out)?;
    out.flush()?;
    drop(out);
    if let Durability::Synced = durability {
        temp.as_file().sync_all()?;
    }
    temp.persist(dir.join(name)).map_err(|err| err.error)?;
    remove_other_versions(dir, name);
    Ok(())
}

/// Makes `dir` if it is missing; an error if it is not ours alone.
fn ready_to_write(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    if !is_ours(dir) {
        return Err(std::io::Error::other(format!("{} is not only ours to write", dir.display())));
    }
    Ok(())
}

/// Adds `contents` at the end of the file `name` in `dir` for `key`, in one
/// write, so that audits appending at once never interleave their bytes; a
/// file that is missing, a link or for another key is made anew
/// ([`write`]) with `contents` alone.
pub fn append(dir: &Path, name: &str, key: &[u8], contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    ready_to_write(dir)?;
    let opened =
        std::fs::OpenOptions::new().read(true).append(true).custom_flags(libc::O_NOFOLLOW).open(dir.join(name));
    match opened {
        Ok(mut file) if starts_with_key(&file, key) => file.write_all(contents),
        _ => write(dir, name, key, contents),
    }
}

/// Whether `file` starts with `key` as [`write`] puts it there: its length, then itself.
fn starts_with_key(file: &std::fs::File, key: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let mut stored = vec![0u8; 8 + key.len()];
    file.read_exact_at(&mut stored, 0).is_ok() && stored[..8] == (key.len() as u64).to_le_bytes() && &stored[8..] == key
}

/// Removes `name` from `dir`, if it is there and the directory ours.
pub fn remove(dir: &Path, name: &str) {
    if is_ours(dir) {
        // One left behind is read and merged again, nothing worse.
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// Removes the other versions of `name` (`STEM-vN.bin`, the number changing
/// with the layout) from `dir`: nothing reads them again, and without this
/// each new layout would leave its predecessor behind for good.
fn remove_other_versions(dir: &Path, name: &str) {
    let Some(stem) = versioned_stem(name) else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let other = entry.file_name();
        let Some(other) = other.to_str() else { continue };
        if other != name && versioned_stem(other) == Some(stem) {
            // One left behind costs a few bytes, nothing else.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Appends `bytes` to a cache file's contents as a field: its length, then
/// itself ([`Fields::bytes_field`]).
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Appends a field [`Fields::u32`] reads.
pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends a field [`Fields::u64`] reads.
pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends a field [`Fields::i64`] reads.
pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Reads a cache file's fields in order; `None` past its end (a file is read
/// as untrusted bytes: one that does not parse is not used).
pub struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes }
    }

    /// What is left to read.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.bytes.len() {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(taken)
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A field [`put_bytes`] wrote.
    pub fn bytes_field(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes_field()?.to_vec()).ok()
    }
}

/// `kernel-offsets-v` of `kernel-offsets-v7.bin`; `None` for a name without
/// a version.
fn versioned_stem(name: &str) -> Option<&str> {
    let number = name.strip_suffix(".bin")?;
    let digits = number.len() - number.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let stem = number.get(..number.len() - digits)?;
    (digits > 0 && stem.ends_with("-v")).then_some(stem)
}

/// A cached file's contents, mapped into memory rather than read: an audit
/// looks up a few hundred paths in a dpkg index of megabytes, or in the
/// scans of its Python environments, and copying the whole file cost it
/// more than anything else it does at its start.
#[derive(Debug)]
pub struct Cached {
    file: memmap2::Mmap,
    /// Where the contents start, after the key.
    start: usize,
}

impl Cached {
    pub fn contents(&self) -> &[u8] {
        self.file.get(self.start..).unwrap_or_default()
    }
}

/// The contents cached under `name` in `dir` for `key`, if there are any.
pub fn read(dir: &Path, name: &str, key: &[u8]) -> Option<Cached> {
    if !is_ours(dir) {
        return None;
    }
    let file = std::fs::File::open(dir.join(name)).ok()?;
    // SAFETY: a mapping is only unsound if the file changes under it. A
    // cached file is never written in place: `write` renames a new file over
    // it, and the mapping keeps the one it mapped; `append` adds bytes past
    // the end, which the mapping does not reach. The directory is this
    // user's alone (`is_ours`), so no one else can truncate it either.
    let file = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let key_len = u64::from_le_bytes(file.get(..8)?.try_into().ok()?) as usize;
    let start = 8usize.checked_add(key_len)?;
    (file.get(8..start)? == key).then_some(Cached { file, start })
}

/// A cached file read in place, piece by piece, not mapped: a file that is
/// searched here and there would be mapped whole into the audit's memory
/// all the same (a fault maps the pages around it that the page cache
/// holds), and one read through once would stay there.
#[derive(Debug)]
pub struct CachedFile {
    file: std::fs::File,
    /// Where the contents start, after the key, and their length.
    start: u64,
    len: u64,
}

impl CachedFile {
    /// The contents' length in bytes.
    pub fn contents_len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from the contents at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, self.start + offset)
    }
}

/// The contents cached under `name` in `dir` for `key`, to be read in place
/// (see [`CachedFile`]). The file read is the one opened here: one written
/// meanwhile is renamed over its name, never written into it.
pub fn open(dir: &Path, name: &str, key: &[u8]) -> Option<CachedFile> {
    if !is_ours(dir) {
        return None;
    }
    let file = std::fs::File::open(dir.join(name)).ok()?;
    let size = file.metadata().ok()?.len();
    let start = (key.len() as u64 + 8).min(size);
    starts_with_key(&file, key).then_some(CachedFile { file, start, len: size - start })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_come_back_for_their_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "thing", b"key-1", b"contents").expect("write");
        assert_eq!(read(dir.path(), "thing", b"key-1").expect("read").contents(), b"contents");
        assert!(read(dir.path(), "thing", b"key-2").is_none());
        let opened = open(dir.path(), "thing", b"key-1").expect("open");
        let mut tents = [0u8; 5];
        opened.read_at(3, &mut tents).expect("read_at");
        assert_eq!((opened.contents_len(), &tents), (8, b"tents"));
        assert!(opened.read_at(4, &mut tents).is_err(), "past the contents' end");
        assert!(open(dir.path(), "thing", b"key-2").is_none());
        assert!(read(dir.path(), "other", b"key-1").is_none());
        std::fs::write(dir.path().join("thing"), [200u8; 4]).expect("damage");
        assert!(read(dir.path(), "thing", b"key-1").is_none());
    }

    #[test]
    fn a_new_version_replaces_the_old_ones_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "thing-v1.bin", b"key", b"old").expect("write");
        write(dir.path(), "other-v1.bin", b"key", b"another's").expect("write");
        std::fs::write(dir.path().join("thing-v1.bin.keep"), b"not a version").expect("write");
        write(dir.path(), "thing-v2.bin", b"key", b"new").expect("write");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["other-v1.bin", "thing-v1.bin.keep", "thing-v2.bin"]);
        assert_eq!(versioned_stem("kernel-offsets-v7.bin"), Some("kernel-offsets-v"));
        assert_eq!(versioned_stem("thing.bin"), None);
        assert_eq!(versioned_stem("thing-v.bin"), None);
    }

    #[test]
    fn a_directory_others_can_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "thing", b"key", b"contents").expect("write");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(read(dir.path(), "thing", b"key").is_none());
        assert!(write(dir.path(), "thing", b"key", b"contents").is_err());
    }
}
