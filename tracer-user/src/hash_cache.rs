//! The SHA-256 of data files hashed before, by what `stat` says of them: an
//! audit reads again only the files that changed since (a notebook's
//! gigabytes of inputs are hashed once, not at every audit). Kept in
//! reprotrace's cache directory ([`crate::cache`]), read and written with
//! the rights of the user the audit acts as; `--rehash` leaves it alone.
//!
//! An entry holds a file's device, inode, size, modification and change
//! times (to the nanosecond) and its hash, and answers only for a file whose
//! `stat` still says all of them. Whatever changes a file's contents (a
//! write, a truncation, a rename over it) moves its change time, which only
//! the kernel sets: no one can put it back. A file changed less than
//! [`SETTLED`] before its hashing began is not kept: another write within
//! the same tick of the clock could leave the same times on other contents.

use std::{
    collections::BTreeMap,
    fs::Metadata,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use crate::cache::{self, Cached};

/// The cache's file; the number changes with the layout.
const FILE_NAME: &str = "hashes-v1.bin";
/// What the file's records are (checked before any is read).
const KEY: &[u8] = b"sha256 (hex) by device, inode, size, mtime ns, ctime ns; hashed-at ns; sorted";
/// How long before its hashing a file must have last changed to be kept.
pub const SETTLED: Duration = Duration::from_secs(2);
/// Files the cache remembers at most (the most recently hashed): 11 MB.
const MAX_ENTRIES: usize = 100_000;

const HEX_LEN: usize = 64;
/// device, inode, size, mtime, ctime, hashed-at: 8 bytes each, then the hash.
const RECORD_LEN: usize = 6 * 8 + HEX_LEN;

/// What identifies a file's contents, as `stat` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Identity {
    fn of(metadata: &Metadata) -> Identity {
        let ns = |seconds: i64, nanoseconds: i64| seconds.saturating_mul(1_000_000_000).saturating_add(nanoseconds);
        Identity {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    identity: Identity,
    hashed_at_ns: i64,
    sha256: String,
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        let Identity { device, inode, size, mtime_ns, ctime_ns } = self.identity;
        for word in [device, inode, size] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for word in [mtime_ns, ctime_ns, self.hashed_at_ns] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(self.sha256.as_bytes());
    }

    /// A record; `None` for one that is not (a damaged file).
    fn decode(record: &[u8]) -> Option<Entry> {
        let word = |index: usize| -> Option<[u8; 8]> { record.get(index * 8..index * 8 + 8)?.try_into().ok() };
        let sha256 = std::str::from_utf8(record.get(6 * 8..RECORD_LEN)?).ok()?;
        if !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        Some(Entry {
            identity: Identity {
                device: u64::from_le_bytes(word(0)?),
                inode: u64::from_le_bytes(word(1)?),
                size: u64::from_le_bytes(word(2)?),
                mtime_ns: i64::from_le_bytes(word(3)?),
                ctime_ns: i64::from_le_bytes(word(4)?),
            },
            hashed_at_ns: i64::from_le_bytes(word(5)?),
            sha256: sha256.to_string(),
        })
    }
}

/// The hashes remembered (the file, mapped, its records sorted by device and
/// inode), and those learned during this audit.
#[derive(Debug, Default)]
pub struct HashCache {
    /// `None`: nothing is read or kept (`--rehash`, no cache directory, or
    /// a cache that is not only this user's).
    dir: Option<PathBuf>,
    remembered: Option<Cached>,
    learned: BTreeMap<(u64, u64), Entry>,
}

impl HashCache {
    /// The calling user's cache (see [`crate::cache::dir`]).
    pub fn open() -> HashCache {
        let Some(dir) = cache::dir() else { return HashCache::default() };
        HashCache::in_dir(dir)
    }

    /// The cache kept in `dir`.
    pub(crate) fn in_dir(dir: PathBuf) -> HashCache {
        let remembered = cache::read(&dir, FILE_NAME, KEY).filter(|file| file.contents().len() % RECORD_LEN == 0);
        HashCache { dir: Some(dir), remembered, learned: BTreeMap::new() }
    }

    /// Whether it answers and learns at all.
    pub fn in_use(&self) -> bool {
        self.dir.is_some()
    }

    fn records(&self) -> &[u8] {
        self.remembered.as_ref().map_or(&[], Cached::contents)
    }

    /// The hash of the file `metadata` describes, if it was hashed since it
    /// last changed.
    pub fn hash_of(&self, metadata: &Metadata) -> Option<String> {
        let identity = Identity::of(metadata);
        let key = (identity.device, identity.inode);
        if let Some(entry) = self.learned.get(&key) {
            return (entry.identity == identity).then(|| entry.sha256.clone());
        }
        // The records are sorted by device and inode: a binary search, in place.
        let (records, _) = self.records().as_chunks::<RECORD_LEN>();
        let key_of = |record: &[u8; RECORD_LEN]| {
            let word = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap_or_default());
            (word(0), word(8))
        };
        let found = records.binary_search_by_key(&key, key_of).ok()?;
        let entry = Entry::decode(&records[found])?;
        (entry.identity == identity).then_some(entry.sha256)
    }

    /// Remembers `sha256` for the file `metadata` described before its
    /// hashing began at `hashing_began`, if it had settled by then.
    pub fn learn(&mut self, metadata: &Metadata, sha256: &str, hashing_began: SystemTime) {
        if !self.in_use() || sha256.len() != HEX_LEN {
            return;
        }
        let identity = Identity::of(metadata);
        let began_ns = hashing_began
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
        let settled_ns = began_ns.saturating_sub(SETTLED.as_nanos() as i64);
        if identity.ctime_ns > settled_ns {
            return;
        }
        let entry = Entry { identity, hashed_at_ns: began_ns, sha256: sha256.to_string() };
        self.learned.insert((identity.device, identity.inode), entry);
    }

    /// Writes the cache back if this audit learned anything: the newest
    /// [`MAX_ENTRIES`] entries, one per file. A cache that cannot be written
    /// costs the next audit time, not correctness: the error is returned for
    /// the caller to weigh.
    pub fn save(self) -> std::io::Result<()> {
        let Some(dir) = self.dir.as_ref().filter(|_| !self.learned.is_empty()) else { return Ok(()) };
        let mut entries: Vec<Entry> = self
            .records()
            .chunks_exact(RECORD_LEN)
            .filter_map(Entry::decode)
            .filter(|entry| !self.learned.contains_key(&(entry.identity.device, entry.identity.inode)))
            .chain(self.learned.values().cloned())
            .collect();
        if entries.len() > MAX_ENTRIES {
            entries.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.hashed_at_ns));
            entries.truncate(MAX_ENTRIES);
        }
        entries.sort_unstable_by_key(|entry| (entry.identity.device, entry.identity.inode));
        let mut contents = Vec::with_capacity(entries.len() * RECORD_LEN);
        for entry in &entries {
            entry.encode(&mut contents);
        }
        cache::write(dir, FILE_NAME, KEY, &contents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn settled_file(dir: &std::path::Path, name: &str, contents: &[u8]) -> (PathBuf, SystemTime) {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        (path, SystemTime::now() + SETTLED + Duration::from_millis(10))
    }

    #[test]
    fn an_unchanged_file_is_answered_and_a_changed_one_is_not() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("cache");
        let (path, later) = settled_file(home.path(), "input.csv", b"1,2,3\n");
        let mut cache = HashCache::in_dir(dir.clone());
        let metadata = std::fs::metadata(&path).expect("stat");
        assert_eq!(cache.hash_of(&metadata), None);
        cache.learn(&metadata, HASH_A, later);
        assert_eq!(cache.hash_of(&metadata).as_deref(), Some(HASH_A), "learned this audit");
        cache.save().expect("save");
        let cache = HashCache::in_dir(dir.clone());
        assert_eq!(cache.hash_of(&std::fs::metadata(&path).expect("stat")).as_deref(), Some(HASH_A));
        // Same size, the modification time put back: the change time moved.
        let mtime = std::fs::metadata(&path).expect("stat").modified().expect("mtime");
        std::fs::write(&path, b"9,9,9\n").expect("rewrite");
        std::fs::File::options().write(true).open(&path).expect("open").set_modified(mtime).expect("set mtime");
        let rewritten = std::fs::metadata(&path).expect("stat");
        assert_eq!(rewritten.modified().expect("mtime"), mtime);
        assert_eq!(cache.hash_of(&rewritten), None, "a file whose change time moved is hashed again");
    }

    #[test]
    fn a_file_changed_just_before_its_hashing_is_not_kept() {
        let home = tempfile::tempdir().expect("tempdir");
        let (path, _) = settled_file(home.path(), "output.csv", b"fresh\n");
        let mut cache = HashCache::in_dir(home.path().join("cache"));
        let metadata = std::fs::metadata(&path).expect("stat");
        cache.learn(&metadata, HASH_A, SystemTime::now());
        assert_eq!(cache.hash_of(&metadata), None);
    }

    #[test]
    fn the_newest_entries_are_kept_one_per_file_and_damage_is_ignored() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("cache");
        let (first, later) = settled_file(home.path(), "a", b"a");
        let (second, _) = settled_file(home.path(), "b", b"b");
        let mut cache = HashCache::in_dir(dir.clone());
        cache.learn(&std::fs::metadata(&first).expect("stat"), HASH_A, later);
        cache.save().expect("save");
        let hash_b = "b".repeat(HEX_LEN);
        let mut cache = HashCache::in_dir(dir.clone());
        cache.learn(&std::fs::metadata(&second).expect("stat"), &hash_b, later);
        cache.learn(&std::fs::metadata(&first).expect("stat"), &hash_b, later);
        cache.save().expect("save");
        let cache = HashCache::in_dir(dir.clone());
        assert_eq!(cache.records().len(), 2 * RECORD_LEN, "one entry a file");
        for path in [&first, &second] {
            assert_eq!(cache.hash_of(&std::fs::metadata(path).expect("stat")), Some(hash_b.clone()));
        }
        // A file cut short is not read.
        let file = dir.join(FILE_NAME);
        let length = std::fs::metadata(&file).expect("stat").len();
        std::fs::File::options().write(true).open(&file).expect("open").set_len(length - 1).expect("cut");
        assert_eq!(HashCache::in_dir(dir).hash_of(&std::fs::metadata(&first).expect("stat")), None);
    }

    #[test]
    fn without_a_directory_nothing_is_kept() {
        let home = tempfile::tempdir().expect("tempdir");
        let (path, later) = settled_file(home.path(), "a", b"a");
        let mut cache = HashCache::default();
        let metadata = std::fs::metadata(&path).expect("stat");
        cache.learn(&metadata, HASH_A, later);
        assert_eq!(cache.hash_of(&metadata), None);
        cache.save().expect("nothing to save");
    }
}
