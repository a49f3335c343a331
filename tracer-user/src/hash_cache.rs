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
    path::PathBuf,
    time::{Duration, SystemTime},
};

use rustc_hash::FxHashMap;

use crate::{
    cache::{self, Cached, CachedFile},
    fsaccess::{FileStat, Identity},
};

/// The cache's file; the number changes with the layout.
const FILE_NAME: &str = "hashes-v2.bin";
/// What the file holds (checked before any of it is read).
const KEY: &[u8] = b"sha256 (hex) by device, inode, size, mtime ns, ctime ns; hashed-at ns; sorted; \
    then the first key of each block of 32 and the number of records";
/// How long before its hashing a file must have last changed to be kept.
pub const SETTLED: Duration = Duration::from_secs(2);
/// Files the cache remembers at most (the most recently hashed): 11 MB.
const MAX_ENTRIES: usize = 100_000;
/// A lookup reads one block of this many records (3.5 KB), found by a binary
/// search of the first key of each, which the file keeps after its records
/// (50 KB for a full cache: finding them by a pass over the records cost an
/// audit of a full cache 8 ms).
const BLOCK_RECORDS: usize = 32;
/// Where an audit's learned hashes go, appended, until there are this many
/// of them (230 KB); then the next save merges them into the records
/// ([`FILE_NAME`]) and starts the journal afresh. Rewriting the records
/// for each audit that learned anything cost a build's audit 40–60 ms with a
/// full cache (11 MB read twice and written, the old file's pages freed).
const JOURNAL_MAX: usize = 2048;
/// The journal's file: records as [`FILE_NAME`]'s, in the order learned.
const JOURNAL_NAME: &str = "hashes-journal-v1.bin";
const JOURNAL_KEY: &[u8] = b"sha256 records as hashes-v2.bin's, appended as learned; the last of a file's stands";
/// A save reads the records this many at a time (112 KB).
const CHUNK_RECORDS: usize = 1024;
/// The bytes of a key (device, inode) in the file's list of blocks.
const KEY_LEN: usize = 16;

const HEX_LEN: usize = 64;
/// device, inode, size, mtime, ctime, hashed-at: 8 bytes each, then the hash.
const RECORD_LEN: usize = 6 * 8 + HEX_LEN;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    identity: Identity,
    hashed_at_ns: i64,
    sha256: String,
}

impl Entry {
    /// Its record; `None` for a hash that is not [`HEX_LEN`] long (`learn`
    /// keeps none).
    fn encode(&self) -> Option<[u8; RECORD_LEN]> {
        let Identity { device, inode, size, mtime_ns, ctime_ns } = self.identity;
        let words = [device, inode, size, mtime_ns as u64, ctime_ns as u64, self.hashed_at_ns as u64];
        let mut record = [0u8; RECORD_LEN];
        for (index, word) in words.into_iter().enumerate() {
            record[index * 8..index * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        let hash: &[u8; HEX_LEN] = self.sha256.as_bytes().try_into().ok()?;
        record[6 * 8..].copy_from_slice(hash);
        Some(record)
    }

    /// A record; `None` for one that is not (a damaged file).
    fn decode(record: &[u8; RECORD_LEN]) -> Option<Entry> {
        if !record_is_whole(record) {
            return None;
        }
        let (device, inode) = record_key(record);
        let signed = |index: usize| i64::from_le_bytes(record_word(record, index));
        Some(Entry {
            identity: Identity {
                device,
                inode,
                size: u64::from_le_bytes(record_word(record, 2)),
                mtime_ns: signed(3),
                ctime_ns: signed(4),
            },
            hashed_at_ns: record_hashed_at(record),
            // Hex digits, checked above.
            sha256: std::str::from_utf8(&record[6 * 8..]).ok()?.to_owned(),
        })
    }
}

/// The hashes remembered (the cache file, read in place: its records sorted
/// by device and inode), and those learned during this audit.
#[derive(Debug, Default)]
pub struct HashCache {
    /// `None`: nothing is read or kept (`--rehash`, no cache directory, or
    /// a cache that is not only this user's).
    dir: Option<PathBuf>,
    remembered: Option<Remembered>,
    /// The journal, read in place: entries learned since the records were
    /// last written.
    journal: Option<Cached>,
    /// The journal's last whole record of each file, by its index there:
    /// decoded only when asked (decoding all 2,000 a journal can hold took
    /// an audit 0.4 ms).
    journaled: FxHashMap<(u64, u64), usize>,
    /// Whether the journal can take more records: not when a record of it
    /// was cut short (a write a crash interrupted), as the next would not
    /// start at a record's start.
    journal_whole: bool,
    learned: BTreeMap<(u64, u64), Entry>,
}

/// The records of the cache file, and the first key of each of their blocks.
#[derive(Debug)]
struct Remembered {
    file: CachedFile,
    records: usize,
    /// The first key of each block of [`BLOCK_RECORDS`], read at the first
    /// lookup (`None`: the file could not be read).
    fence: std::cell::OnceCell<Option<Vec<(u64, u64)>>>,
}

/// The block of records a lookup read last: lookups in key order read each
/// block once.
#[derive(Default)]
struct LastBlock {
    index: Option<usize>,
    bytes: Vec<u8>,
}

impl Remembered {
    /// The records of `file` (see [`FILE_NAME`]'s layout), if its length
    /// says it holds them whole: `records` of them, the keys of their
    /// blocks, their number.
    fn of(file: CachedFile) -> Option<Remembered> {
        let trailer_at = file.contents_len().checked_sub(8)?;
        let mut trailer = [0u8; 8];
        file.read_at(trailer_at, &mut trailer).ok()?;
        let records = usize::try_from(u64::from_le_bytes(trailer)).ok()?;
        let keys_len = records.div_ceil(BLOCK_RECORDS).checked_mul(KEY_LEN)?;
        let expected = records.checked_mul(RECORD_LEN)?.checked_add(keys_len)?;
        (expected as u64 == trailer_at).then(|| Remembered { file, records, fence: Default::default() })
    }

    /// The record of the file `key` names, if there is one; `last` keeps
    /// the block read.
    fn find(&self, key: (u64, u64), last: &mut LastBlock) -> Option<[u8; RECORD_LEN]> {
        let fence = self.fence.get_or_init(|| self.read_fence()).as_ref()?;
        let block = fence.partition_point(|first| *first <= key).checked_sub(1)?;
        if last.index != Some(block) {
            let begin = block * BLOCK_RECORDS;
            let count = BLOCK_RECORDS.min(self.records - begin);
            last.index = None;
            last.bytes.resize(count * RECORD_LEN, 0);
            self.file.read_at((begin * RECORD_LEN) as u64, &mut last.bytes).ok()?;
            last.index = Some(block);
        }
        let (records, _) = last.bytes.as_chunks::<RECORD_LEN>();
        records.binary_search_by_key(&key, record_key).ok().map(|found| records[found])
    }

    /// The first key of each block, as the file keeps them after the records.
    fn read_fence(&self) -> Option<Vec<(u64, u64)>> {
        let mut bytes = vec![0u8; self.records.div_ceil(BLOCK_RECORDS) * KEY_LEN];
        self.file.read_at((self.records * RECORD_LEN) as u64, &mut bytes).ok()?;
        let (keys, _) = bytes.as_chunks::<KEY_LEN>();
        Some(keys.iter().map(|key| key_of(key)).collect())
    }

    /// Runs `visit` over the records in order, [`CHUNK_RECORDS`] at a time.
    fn each_chunk(&self, mut visit: impl FnMut(&[[u8; RECORD_LEN]]) -> std::io::Result<()>) -> std::io::Result<()> {
        let mut bytes = vec![0u8; CHUNK_RECORDS * RECORD_LEN];
        let mut done = 0;
        while done < self.records {
            let count = CHUNK_RECORDS.min(self.records - done);
            let chunk = &mut bytes[..count * RECORD_LEN];
            self.file.read_at((done * RECORD_LEN) as u64, chunk)?;
            visit(chunk.as_chunks::<RECORD_LEN>().0)?;
            done += count;
        }
        Ok(())
    }
}

impl HashCache {
    /// The calling user's cache (see [`crate::cache::dir`]).
    pub fn open() -> HashCache {
        let Some(dir) = cache::dir() else { return HashCache::default() };
        HashCache::in_dir(dir)
    }

    /// The cache kept in `dir`.
    pub(crate) fn in_dir(dir: PathBuf) -> HashCache {
        let remembered = cache::open(&dir, FILE_NAME, KEY).and_then(Remembered::of);
        let journal = cache::read(&dir, JOURNAL_NAME, JOURNAL_KEY);
        let (records, rest) = journal.as_ref().map_or((&[][..], &[][..]), |journal| journal.contents().as_chunks());
        let journal_whole = rest.is_empty();
        let mut journaled = FxHashMap::with_capacity_and_hasher(records.len(), Default::default());
        // In the order learned: a file's last record stands.
        for (index, record) in records.iter().enumerate().filter(|(_, record)| record_is_whole(record)) {
            journaled.insert(record_key(record), index);
        }
        HashCache { dir: Some(dir), remembered, journal, journaled, journal_whole, learned: BTreeMap::new() }
    }

    /// Whether it answers and learns at all.
    pub fn in_use(&self) -> bool {
        self.dir.is_some()
    }

    /// Runs `visit` over the records remembered, in order.
    fn each_remembered(&self, visit: impl FnMut(&[[u8; RECORD_LEN]]) -> std::io::Result<()>) -> std::io::Result<()> {
        self.remembered.as_ref().map_or(Ok(()), |remembered| remembered.each_chunk(visit))
    }

    /// The hash of each file `files` describes, if it was hashed since it
    /// last changed (`None` for `None`). Looked up in the order of the
    /// file's records, so that files made together (whose inodes are near)
    /// are found in one read.
    pub fn hashes_of<'a>(&self, files: impl IntoIterator<Item = Option<&'a FileStat>>) -> Vec<Option<String>> {
        let identities: Vec<Option<Identity>> = files.into_iter().map(|file| file.map(Identity::of)).collect();
        let mut order: Vec<(Identity, usize)> =
            identities.iter().enumerate().filter_map(|(index, identity)| Some(((*identity)?, index))).collect();
        order.sort_unstable_by_key(|(identity, _)| (identity.device, identity.inode));
        let mut answers = vec![None; identities.len()];
        let mut last = LastBlock::default();
        for (identity, index) in order {
            answers[index] = self.known_hash(identity, &mut last);
        }
        answers
    }

    /// The hash of the file `identity` describes, if it is known.
    fn known_hash(&self, identity: Identity, last: &mut LastBlock) -> Option<String> {
        let key = (identity.device, identity.inode);
        if let Some(entry) = self.learned.get(&key) {
            return (entry.identity == identity).then(|| entry.sha256.clone());
        }
        let entry = match self.journaled.get(&key) {
            Some(&index) => self.journal_entry(index)?,
            None => Entry::decode(&self.remembered.as_ref()?.find(key, last)?)?,
        };
        (entry.identity == identity).then_some(entry.sha256)
    }

    /// The journal's record at `index`.
    fn journal_entry(&self, index: usize) -> Option<Entry> {
        let (records, _) = self.journal.as_ref()?.contents().as_chunks::<RECORD_LEN>();
        Entry::decode(records.get(index)?)
    }

    /// Remembers `sha256` for the file `metadata` described before its
    /// hashing began at `hashing_began`, if it had settled by then.
    pub fn learn(&mut self, metadata: &FileStat, sha256: &str, hashing_began: SystemTime) {
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

    /// Keeps what this audit learned, if anything: in the journal while it
    /// has room, else merged with the journal into the records, the newest
    /// [`MAX_ENTRIES`] entries, one per file. A cache that cannot be written
    /// costs the next audit time, not correctness: the error is returned for
    /// the caller to weigh.
    pub fn save(self) -> std::io::Result<()> {
        self.save_within(MAX_ENTRIES, JOURNAL_MAX)
    }

    /// [`HashCache::save`], with a journal of at most `journal_most` entries
    /// and records of the newest `most`.
    fn save_within(mut self, most: usize, journal_most: usize) -> std::io::Result<()> {
        let Some(dir) = self.dir.clone().filter(|_| !self.learned.is_empty()) else { return Ok(()) };
        if self.journal_whole && self.journaled.len() + self.learned.len() <= journal_most {
            let records: Vec<u8> = self.learned.values().filter_map(Entry::encode).flatten().collect();
            return cache::append(&dir, JOURNAL_NAME, JOURNAL_KEY, &records);
        }
        // The journal's entries are newer than the records': merged as learned.
        for (key, index) in std::mem::take(&mut self.journaled) {
            if let Some(entry) = self.journal_entry(index) {
                self.learned.entry(key).or_insert(entry);
            }
        }
        self.save_newest(&dir, most)?;
        // (An entry another audit appended meanwhile is lost: it is hashed again.)
        cache::remove(&dir, JOURNAL_NAME);
        Ok(())
    }

    /// Writes the records: the newest `most` of those remembered and those
    /// learned. Both are in file order: they are merged as they are written,
    /// the remembered ones copied as they are, so that the cache is never
    /// whole in memory (decoded, and mapped, a full one added 40 MB to an
    /// audit's peak memory).
    fn save_newest(&self, dir: &std::path::Path, most: usize) -> std::io::Result<()> {
        let remembered = self.remembered.as_ref().map_or(0, |remembered| remembered.records);
        // Damaged records are dropped, and those of files learned again.
        let still_true =
            |record: &&[u8; RECORD_LEN]| record_is_whole(record) && !self.learned.contains_key(&record_key(record));
        let mut newest = match remembered + self.learned.len() > most {
            true => {
                let mut times: Vec<i64> = self.learned.values().map(|entry| entry.hashed_at_ns).collect();
                self.each_remembered(|chunk| {
                    times.extend(chunk.iter().filter(still_true).map(record_hashed_at));
                    Ok(())
                })?;
                Newest::of(times, most)
            }
            false => Newest::all(),
        };
        cache::write_with(dir, FILE_NAME, KEY, |out| {
            let mut out = RecordWriter::new(out);
            let mut learned = self.learned.values().peekable();
            // A record out of order (a file not written by a save) is
            // dropped: the file written stays sorted for the lookups.
            let mut last = None;
            self.each_remembered(|chunk| {
                for record in chunk.iter().filter(still_true) {
                    if last.is_some_and(|last| record_key(record) <= last) {
                        continue;
                    }
                    last = Some(record_key(record));
                    while let Some(entry) = learned.next_if(|entry| entry_key(entry) < record_key(record)) {
                        out.learned(&mut newest, entry)?;
                    }
                    if newest.keeps(record_hashed_at(record)) {
                        out.put(record)?;
                    }
                }
                Ok(())
            })?;
            learned.try_for_each(|entry| out.learned(&mut newest, entry))?;
            out.finish()
        })
    }
}

/// Writes the records of a cache file in order, then the first key of each
/// block of them and their number (see [`Remembered::of`]).
struct RecordWriter<'a> {
    out: &'a mut dyn std::io::Write,
    written: usize,
    fence: Vec<u8>,
}

impl<'a> RecordWriter<'a> {
    fn new(out: &'a mut dyn std::io::Write) -> RecordWriter<'a> {
        RecordWriter { out, written: 0, fence: Vec::new() }
    }

    fn put(&mut self, record: &[u8; RECORD_LEN]) -> std::io::Result<()> {
        if self.written.is_multiple_of(BLOCK_RECORDS) {
            self.fence.extend_from_slice(&record[..KEY_LEN]);
        }
        self.written += 1;
        self.out.write_all(record)
    }

    /// Writes a learned entry if the save keeps it.
    fn learned(&mut self, newest: &mut Newest, entry: &Entry) -> std::io::Result<()> {
        if !newest.keeps(entry.hashed_at_ns) {
            return Ok(());
        }
        entry.encode().map_or(Ok(()), |record| self.put(&record))
    }

    fn finish(self) -> std::io::Result<()> {
        self.out.write_all(&self.fence)?;
        self.out.write_all(&(self.written as u64).to_le_bytes())
    }
}

/// Which entries a save keeps: those hashed after `cutoff`, and `at_cutoff`
/// of those hashed at it.
struct Newest {
    cutoff: i64,
    at_cutoff: usize,
}

impl Newest {
    fn all() -> Newest {
        Newest { cutoff: i64::MIN, at_cutoff: usize::MAX }
    }

    /// The newest `most` of entries hashed at `times`.
    fn of(mut times: Vec<i64>, most: usize) -> Newest {
        if times.len() <= most {
            return Newest::all();
        }
        let Some(last) = most.checked_sub(1) else { return Newest { cutoff: i64::MAX, at_cutoff: 0 } };
        let (_, &mut cutoff, _) = times.select_nth_unstable_by_key(last, |&time| std::cmp::Reverse(time));
        let after = times.iter().filter(|&&time| time > cutoff).count();
        Newest { cutoff, at_cutoff: most - after }
    }

    fn keeps(&mut self, hashed_at_ns: i64) -> bool {
        if hashed_at_ns > self.cutoff {
            return true;
        }
        let keep = hashed_at_ns == self.cutoff && self.at_cutoff > 0;
        self.at_cutoff -= usize::from(keep);
        keep
    }
}

/// The word at `index` of a record (see [`RECORD_LEN`]) or a key.
fn record_word(record: &[u8], index: usize) -> [u8; 8] {
    let mut word = [0; 8];
    word.copy_from_slice(&record[index * 8..index * 8 + 8]);
    word
}

/// The device and inode a record or a key of the block list starts with.
fn key_of(bytes: &[u8]) -> (u64, u64) {
    (u64::from_le_bytes(record_word(bytes, 0)), u64::from_le_bytes(record_word(bytes, 1)))
}

/// A record's device and inode, the order of the file.
fn record_key(record: &[u8; RECORD_LEN]) -> (u64, u64) {
    key_of(record)
}

fn record_hashed_at(record: &[u8; RECORD_LEN]) -> i64 {
    i64::from_le_bytes(record_word(record, 5))
}

/// Whether a record's hash is whole (hex digits), as [`Entry::decode`] asks.
fn record_is_whole(record: &[u8; RECORD_LEN]) -> bool {
    record[6 * 8..].iter().all(u8::is_ascii_hexdigit)
}

fn entry_key(entry: &Entry) -> (u64, u64) {
    (entry.identity.device, entry.identity.inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered_keys(cache: &HashCache) -> Vec<(u64, u64)> {
        let mut keys = Vec::new();
        cache
            .each_remembered(|chunk| {
                keys.extend(chunk.iter().map(record_key));
                Ok(())
            })
            .expect("the cache file reads");
        keys
    }

    /// The hash `cache` knows of the file `metadata` describes.
    fn hash_of(cache: &HashCache, metadata: &FileStat) -> Option<String> {
        cache.hashes_of([Some(metadata)]).pop().flatten()
    }

    /// What `stat` says of `path`.
    fn stat(path: impl AsRef<std::path::Path>) -> FileStat {
        FileStat::from(&std::fs::metadata(path).expect("stat"))
    }

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
        let metadata = stat(&path);
        assert_eq!(hash_of(&cache, &metadata), None);
        cache.learn(&metadata, HASH_A, later);
        assert_eq!(hash_of(&cache, &metadata).as_deref(), Some(HASH_A), "learned this audit");
        cache.save().expect("save");
        let cache = HashCache::in_dir(dir.clone());
        assert_eq!(hash_of(&cache, &stat(&path)).as_deref(), Some(HASH_A));
        // Same size, the modification time put back: the change time moved.
        let mtime = std::fs::metadata(&path).expect("stat").modified().expect("mtime");
        std::fs::write(&path, b"9,9,9\n").expect("rewrite");
        std::fs::File::options().write(true).open(&path).expect("open").set_modified(mtime).expect("set mtime");
        let rewritten = stat(&path);
        assert_eq!(rewritten.modified(), mtime);
        assert_eq!(hash_of(&cache, &rewritten), None, "a file whose change time moved is hashed again");
    }

    #[test]
    fn a_file_changed_just_before_its_hashing_is_not_kept() {
        let home = tempfile::tempdir().expect("tempdir");
        let (path, _) = settled_file(home.path(), "output.csv", b"fresh\n");
        let mut cache = HashCache::in_dir(home.path().join("cache"));
        let metadata = stat(&path);
        cache.learn(&metadata, HASH_A, SystemTime::now());
        assert_eq!(hash_of(&cache, &metadata), None);
    }

    #[test]
    fn the_newest_entries_are_kept_one_per_file_and_damage_is_ignored() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("cache");
        let (first, later) = settled_file(home.path(), "a", b"a");
        let (second, _) = settled_file(home.path(), "b", b"b");
        let mut cache = HashCache::in_dir(dir.clone());
        cache.learn(&stat(&first), HASH_A, later);
        cache.save_within(MAX_ENTRIES, 0).expect("save");
        let hash_b = "b".repeat(HEX_LEN);
        let mut cache = HashCache::in_dir(dir.clone());
        cache.learn(&stat(&second), &hash_b, later);
        cache.learn(&stat(&first), &hash_b, later);
        cache.save_within(MAX_ENTRIES, 0).expect("save");
        let cache = HashCache::in_dir(dir.clone());
        assert_eq!(remembered_keys(&cache).len(), 2, "one entry a file");
        for path in [&first, &second] {
            assert_eq!(hash_of(&cache, &stat(path)), Some(hash_b.clone()));
        }
        // A file cut short is not read.
        let file = dir.join(FILE_NAME);
        let length = stat(&file).size;
        std::fs::File::options().write(true).open(&file).expect("open").set_len(length - 1).expect("cut");
        assert_eq!(hash_of(&HashCache::in_dir(dir.clone()), &stat(&first)), None);
        // Nor is one whose count of records no file could hold.
        cache::write(&dir, FILE_NAME, KEY, &u64::MAX.to_le_bytes()).expect("write");
        assert_eq!(hash_of(&HashCache::in_dir(dir), &stat(&first)), None);
    }

    #[test]
    fn a_full_cache_keeps_its_newest_entries_in_file_order() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("cache");
        let files: Vec<(PathBuf, SystemTime)> =
            ["a", "b", "c", "d"].iter().map(|name| settled_file(home.path(), name, name.as_bytes())).collect();
        let hashes: Vec<String> = ["1", "2", "3", "4"].iter().map(|digit| digit.repeat(HEX_LEN)).collect();
        // One file an audit, each later than the one before; two kept.
        for ((path, later), hash) in files.iter().zip(&hashes) {
            let mut cache = HashCache::in_dir(dir.clone());
            cache.learn(&stat(path), hash, *later);
            cache.save_within(2, 0).expect("save");
            std::thread::sleep(Duration::from_millis(2));
        }
        let cache = HashCache::in_dir(dir.clone());
        let found: Vec<Option<String>> = files.iter().map(|(path, _)| hash_of(&cache, &stat(path))).collect();
        assert_eq!(found, [None, None, Some(hashes[2].clone()), Some(hashes[3].clone())]);
        assert!(remembered_keys(&cache).is_sorted(), "the file stays in order for the lookups' binary search");
        // A file learned again replaces its entry, whatever the order of inodes.
        let mut cache = HashCache::in_dir(dir.clone());
        let (first, later) = &files[0];
        cache.learn(&stat(first), &hashes[1], *later + Duration::from_secs(1));
        cache.save_within(2, 0).expect("save");
        let cache = HashCache::in_dir(dir);
        assert_eq!(hash_of(&cache, &stat(first)), Some(hashes[1].clone()));
        assert_eq!(remembered_keys(&cache).len(), 2);
    }

    #[test]
    fn every_file_of_a_cache_of_many_blocks_is_found() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("cache");
        // More records than a save reads at once, in many lookup blocks.
        let count = CHUNK_RECORDS + BLOCK_RECORDS + 3;
        let mut cache = HashCache::in_dir(dir.clone());
        let mut files = Vec::with_capacity(count);
        for index in 0..count {
            let (path, later) = settled_file(home.path(), &format!("f{index}"), index.to_string().as_bytes());
            let hash = format!("{index:064x}");
            cache.learn(&stat(&path), &hash, later);
            files.push((path, hash));
        }
        cache.save_within(MAX_ENTRIES, 0).expect("save");
        let cache = HashCache::in_dir(dir);
        assert_eq!(remembered_keys(&cache).len(), count);
        for (path, hash) in &files {
            assert_eq!(hash_of(&cache, &stat(path)).as_ref(), Some(hash), "{path:?}");
        }
        let elsewhere = stat(home.path());
        assert_eq!(hash_of(&cache, &elsewhere), None, "a file never hashed");
        // All at once, in another order than the file's, beside files not asked of it.
        let metadata: Vec<FileStat> = files.iter().rev().map(|(path, _)| stat(path)).collect();
        let asked = metadata.iter().map(Some).chain([None, Some(&elsewhere)]);
        let expected = files.iter().rev().map(|(_, hash)| Some(hash.clone())).chain([None, None]);
        assert_eq!(cache.hashes_of(asked), expected.collect::<Vec<_>>());
    }

    #[test]
    fn a_save_drops_records_out_of_order() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("cache");
        let record = |inode: u64| {
            let identity = Identity { device: 1, inode, size: 1, mtime_ns: 1, ctime_ns: 1 };
            Entry { identity, hashed_at_ns: 1, sha256: HASH_A.to_string() }.encode().expect("a record")
        };
        let mut unsorted = Vec::new();
        let mut writer = RecordWriter::new(&mut unsorted);
        for inode in [9, 3, 5] {
            writer.put(&record(inode)).expect("put");
        }
        writer.finish().expect("finish");
        cache::write(&dir, FILE_NAME, KEY, &unsorted).expect("write");
        let (path, later) = settled_file(home.path(), "a", b"a");
        let mut cache = HashCache::in_dir(dir.clone());
        cache.learn(&stat(&path), HASH_A, later);
        cache.save_within(MAX_ENTRIES, 0).expect("save");
        let keys = remembered_keys(&HashCache::in_dir(dir));
        assert!(keys.is_sorted() && keys.len() == 2, "{keys:?}");
    }

    #[test]
    fn learned_hashes_go_to_the_journal_until_it_is_full_then_into_the_records() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("cache");
        let files: Vec<(PathBuf, SystemTime)> =
            ["a", "b", "c"].iter().map(|name| settled_file(home.path(), name, name.as_bytes())).collect();
        let hashes: Vec<String> = ["1", "2", "3"].iter().map(|digit| digit.repeat(HEX_LEN)).collect();
        let learn_one = |index: usize, hash: &str| {
            let mut cache = HashCache::in_dir(dir.clone());
            let (path, later) = &files[index];
            cache.learn(&stat(path), hash, *later);
            cache.save_within(MAX_ENTRIES, 2).expect("save");
        };
        learn_one(0, &hashes[0]);
        learn_one(1, &hashes[1]);
        assert!(!dir.join(FILE_NAME).exists(), "two entries fit the journal: no records written");
        let found = |cache: &HashCache| -> Vec<Option<String>> {
            files.iter().map(|(path, _)| hash_of(cache, &stat(path))).collect()
        };
        assert_eq!(found(&HashCache::in_dir(dir.clone())), [Some(hashes[0].clone()), Some(hashes[1].clone()), None]);
        // A third does not: all three go into the records, the journal starts afresh.
        learn_one(2, &hashes[2]);
        assert!(!dir.join(JOURNAL_NAME).exists());
        let cache = HashCache::in_dir(dir.clone());
        assert_eq!(remembered_keys(&cache).len(), 3);
        assert_eq!(found(&cache), hashes.iter().cloned().map(Some).collect::<Vec<_>>());
        // The journal's last entry for a file stands over the records'.
        learn_one(0, &hashes[2]);
        assert_eq!(found(&HashCache::in_dir(dir.clone()))[0], Some(hashes[2].clone()));
        // A journal whose last record was cut short is merged, not appended to.
        let journal = dir.join(JOURNAL_NAME);
        let length = stat(&journal).size;
        std::fs::File::options().write(true).open(&journal).expect("open").set_len(length - 1).expect("cut");
        learn_one(1, &hashes[0]);
        assert!(!journal.exists());
        assert_eq!(found(&HashCache::in_dir(dir))[1], Some(hashes[0].clone()));
    }

    #[test]
    fn without_a_directory_nothing_is_kept() {
        let home = tempfile::tempdir().expect("tempdir");
        let (path, later) = settled_file(home.path(), "a", b"a");
        let mut cache = HashCache::default();
        let metadata = stat(&path);
        cache.learn(&metadata, HASH_A, later);
        assert_eq!(hash_of(&cache, &metadata), None);
        cache.save().expect("nothing to save");
    }
}
