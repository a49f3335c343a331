//! Paths and the index of each one's owner, sorted by path, in one buffer
//! laid out as a cache file holds them: searched in place, so that a table
//! read back from disk (mapped, see [`crate::cache::Cached`]) is neither
//! copied nor rebuilt. The dpkg index keeps every packaged file's owner so,
//! and a cached Python scan the owner of every file its distributions list
//! (decoding the bench venv's 16,383 paths and hashing them into a table
//! took an import audit 4–6 ms of CPU).

use std::{ops::Range, sync::Arc};

use crate::cache::{put_bytes, put_u32, Cached, Fields};

#[derive(Debug)]
pub(super) struct SortedOwners {
    bytes: OwnerBytes,
    /// Where in `bytes` the paths are, back to back.
    paths: Range<usize>,
    /// Where in `bytes` the entries are, in path order: the offset of the
    /// path in `paths`, its length and its owner's index, little-endian
    /// u32s.
    entries: Range<usize>,
}

/// The bytes of [`SortedOwners`]: made here, or a cache file's (shared by
/// the tables it holds).
#[derive(Debug)]
enum OwnerBytes {
    Built(Vec<u8>),
    Cached(Arc<Cached>),
}

impl std::ops::Deref for OwnerBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            OwnerBytes::Built(bytes) => bytes,
            OwnerBytes::Cached(cached) => cached.contents(),
        }
    }
}

/// The bytes an entry of [`SortedOwners`] takes.
pub(super) const OWNER_ENTRY_BYTES: usize = 12;

impl SortedOwners {
    /// The table of `owners` (each path once).
    pub(super) fn from_map<P: AsRef<[u8]>>(owners: impl IntoIterator<Item = (P, usize)>) -> SortedOwners {
        let mut sorted: Vec<(P, usize)> = owners.into_iter().collect();
        sorted.sort_unstable_by(|(path, _), (other, _)| path.as_ref().cmp(other.as_ref()));
        let paths_len: usize = sorted.iter().map(|(path, _)| path.as_ref().len()).sum();
        let mut bytes = Vec::with_capacity(paths_len + sorted.len() * OWNER_ENTRY_BYTES);
        for (path, _) in &sorted {
            bytes.extend_from_slice(path.as_ref());
        }
        let mut offset = 0u32;
        for (path, owner) in &sorted {
            let len = path.as_ref().len() as u32;
            for value in [offset, len, *owner as u32] {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            offset += len;
        }
        SortedOwners { paths: 0..paths_len, entries: paths_len..bytes.len(), bytes: OwnerBytes::Built(bytes) }
    }

    /// Appends the table to a cache file's contents, where
    /// [`SortedOwners::read_in_place`] reads it back: last in them, or in a
    /// record of them.
    pub(super) fn put(&self, out: &mut Vec<u8>) {
        let entries = self.entries();
        out.reserve(self.paths().len() + entries.len() * OWNER_ENTRY_BYTES + 8);
        put_bytes(out, self.paths());
        put_u32(out, entries.len() as u32);
        out.extend_from_slice(entries.as_flattened());
    }

    /// The table [`SortedOwners::put`] left as the rest of `fields` (which
    /// read `cached`'s contents), taken as it is. It was written in order
    /// and on disk before being renamed into place ([`crate::cache::write`]),
    /// so a crash cannot leave it half written. Walking it to check its
    /// order faulted in the whole mapped file and cost every audit 1.5 ms of
    /// its software index; a lookup reads only the entries it visits, each
    /// bounds-checked, and an entry out of range names no path and no owner.
    pub(super) fn read_in_place(cached: &Arc<Cached>, fields: &mut Fields) -> Option<SortedOwners> {
        let contents = cached.contents().as_ptr() as usize;
        let paths = fields.bytes_field()?;
        let paths_start = (paths.as_ptr() as usize).checked_sub(contents)?;
        let count = fields.u32()? as usize;
        if count.checked_mul(OWNER_ENTRY_BYTES) != Some(fields.rest().len()) {
            return None;
        }
        let entries = fields.take(fields.rest().len())?;
        let entries_start = (entries.as_ptr() as usize).checked_sub(contents)?;
        Some(SortedOwners {
            bytes: OwnerBytes::Cached(Arc::clone(cached)),
            paths: paths_start..paths_start + paths.len(),
            entries: entries_start..entries_start + entries.len(),
        })
    }

    fn paths(&self) -> &[u8] {
        self.bytes.get(self.paths.clone()).unwrap_or_default()
    }

    /// The entries, as the cache file holds them.
    fn entries(&self) -> &[[u8; OWNER_ENTRY_BYTES]] {
        self.bytes.get(self.entries.clone()).unwrap_or_default().as_chunks().0
    }

    fn path(&self, [offset, len, _]: [u32; 3]) -> &[u8] {
        self.paths().get(offset as usize..(offset as usize).saturating_add(len as usize)).unwrap_or_default()
    }

    pub(super) fn get(&self, path: &[u8]) -> Option<usize> {
        let entries = self.entries();
        let found = entries.binary_search_by(|entry| self.path(decode_entry(entry)).cmp(path)).ok()?;
        entries.get(found).map(|entry| decode_entry(entry)[2] as usize)
    }

    /// Whether some path starts with `prefix` (they are sorted: the first
    /// path not below it tells).
    pub(super) fn any_starting_with(&self, prefix: &[u8]) -> bool {
        let entries = self.entries();
        let first = entries.partition_point(|entry| self.path(decode_entry(entry)) < prefix);
        entries.get(first).is_some_and(|entry| self.path(decode_entry(entry)).starts_with(prefix))
    }

    /// Each path and its owner's index, in path order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], usize)> {
        self.entries().iter().map(|entry| {
            let entry = decode_entry(entry);
            (self.path(entry), entry[2] as usize)
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

/// An entry of [`SortedOwners`]: its path's offset in the paths, its
/// length, its owner's index.
fn decode_entry(entry: &[u8; OWNER_ENTRY_BYTES]) -> [u32; 3] {
    let (words, _) = entry.as_chunks::<4>();
    let word = |n: usize| words.get(n).map_or(0, |word| u32::from_le_bytes(*word));
    [word(0), word(1), word(2)]
}
