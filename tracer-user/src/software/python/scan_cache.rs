//! Scans of site directories and conda prefixes kept on disk between audits:
//! an environment's distributions are read from their `RECORD`s once, not
//! at every audit (an index of the bench's venv, 66 distributions listing
//! 16,766 files, and of Debian's `dist-packages` took 5.6–6.7 ms of CPU
//! read from the files). A scan is used again while its directory's stamp
//! is the same and every file it read, directory it listed and path it
//! probed is as it was ([`super::inputs`]); one whose reading had problems
//! is not kept, so they are reported at every audit.
//!
//! One file holds the scans of the directories scanned most recently that
//! still exist (at most [`MAX_SCANS`]): a table of them first (each scan's
//! offset counted from the table's end), then the scans. Each scan keeps
//! the owner of every file its distributions list as a sorted table
//! ([`SortedOwners`]), searched where the file is mapped: an audit decodes
//! a scan's few distributions, not its thousands of paths, and builds no
//! table of them (reading the bench venv's scan whole and claiming its
//! 16,383 files took an import audit 4–6 ms of CPU). The file is mapped
//! only when an audit scans (an audit of no Python touches nothing), and
//! rewritten only by an audit that scanned anew; it is read as untrusted
//! bytes ([`crate::cache`]).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{inputs, DirectoryStamp, Distribution, Evidence, Found, Rank};
use crate::{
    cache::{self, put_bytes, put_i64, put_u32, put_u64, Cached, Fields},
    fsaccess::Identity,
    software::sorted_owners::SortedOwners,
};

/// The cache file's name; the number changes with its layout.
const FILE_NAME: &str = "python-scans-v4.bin";
const KEY: &[u8] = b"python scans";
/// Directories whose scans are kept: the environments of a user's projects.
const MAX_SCANS: usize = 64;

/// The scans on disk, and those this audit made anew.
#[derive(Debug, Default)]
pub(super) struct ScanCache {
    /// Where the cache file is; `None`: nothing is cached.
    dir: Option<PathBuf>,
    /// The file and its table, once a scan was asked for (`None` inside:
    /// there is no file, or it does not parse).
    opened: Option<Option<Stored>>,
    /// Scans made anew, encoded: (directory, scan).
    fresh: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The cache file, mapped, and where each directory's scan is in it (the
/// most recently made first).
#[derive(Debug)]
struct Stored {
    /// Shared with the owner tables of the scans taken from it.
    file: Arc<Cached>,
    /// (directory, offset from `scans_start`, length).
    table: Vec<(Vec<u8>, u64, u64)>,
    /// Where the scans start in the file's contents: after the table.
    scans_start: u64,
}

impl Stored {
    fn open(dir: &Path) -> Option<Stored> {
        let file = Arc::new(cache::read(dir, FILE_NAME, KEY)?);
        let mut fields = Fields::new(file.contents());
        let table_len = fields.u64()?;
        let mut table = Fields::new(fields.take(usize::try_from(table_len).ok()?)?);
        let count = table.u32()? as usize;
        let mut entries = Vec::with_capacity(count.min(MAX_SCANS));
        for _ in 0..count {
            entries.push((table.bytes_field()?.to_vec(), table.u64()?, table.u64()?));
        }
        let scans_start = 8 + table_len;
        table.rest().is_empty().then_some(Stored { file, table: entries, scans_start })
    }

    /// The scan of `scanned`, as stored; `None` past the contents' end.
    fn scan(&self, scanned: &[u8]) -> Option<&[u8]> {
        let (_, offset, len) = self.table.iter().find(|(directory, _, _)| directory == scanned)?;
        let start = self.scans_start.checked_add(*offset)?;
        let end = start.checked_add(*len)?;
        self.file.contents().get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }
}

impl ScanCache {
    /// The scans cached in `dir` (read when one is asked for).
    pub(super) fn open(dir: Option<PathBuf>) -> ScanCache {
        ScanCache { dir, opened: None, fresh: Vec::new() }
    }

    fn stored(&mut self) -> Option<&Stored> {
        let dir = self.dir.as_deref()?;
        self.opened.get_or_insert_with(|| Stored::open(dir)).as_ref()
    }

    /// What the scan of `scanned` found, if one is cached that was made
    /// when the directory had `stamp` and whose inputs are unchanged: its
    /// distributions (their files in the table) and the owner of each file
    /// they list, searched where the file is mapped.
    pub(super) fn found(&mut self, scanned: &[u8], stamp: &DirectoryStamp) -> Option<(Vec<Found>, SortedOwners)> {
        let stored = self.stored()?;
        let mut fields = Fields::new(stored.scan(scanned)?);
        if decode_stamp(&mut fields)? != *stamp {
            return None;
        }
        let inputs = decode_inputs(&mut fields)?;
        if !inputs::unchanged(inputs.iter().map(|(path, identity)| (*path, *identity))) {
            return None;
        }
        let count = fields.u32()? as usize;
        let found = (0..count).map(|_| decode_found(&mut fields)).collect::<Option<Vec<Found>>>()?;
        let owners = SortedOwners::read_in_place(&stored.file, &mut fields)?;
        Some((found, owners))
    }

    /// Keeps a scan made anew, to be saved.
    pub(super) fn remember(
        &mut self,
        scanned: &[u8],
        stamp: &DirectoryStamp,
        inputs: &[(Vec<u8>, Option<Identity>)],
        found: &[Found],
        owners: &SortedOwners,
    ) {
        if self.dir.is_none() {
            return;
        }
        let mut out = Vec::new();
        encode_stamp(&mut out, stamp);
        put_u32(&mut out, inputs.len() as u32);
        for (path, identity) in inputs {
            put_bytes(&mut out, path);
            match identity {
                None => out.push(0),
                Some(identity) => {
                    out.push(1);
                    let Identity { device, inode, size, mtime_ns, ctime_ns } = *identity;
                    for word in [device, inode, size] {
                        put_u64(&mut out, word);
                    }
                    put_i64(&mut out, mtime_ns);
                    put_i64(&mut out, ctime_ns);
                }
            }
        }
        put_u32(&mut out, found.len() as u32);
        for one in found {
            encode_found(&mut out, one);
        }
        owners.put(&mut out);
        self.fresh.retain(|(directory, _)| directory != scanned);
        self.fresh.push((scanned.to_vec(), out));
    }

    /// Writes the scans made anew, then those stored before for other
    /// directories that still exist, if there are any new. One that cannot
    /// be written costs the next audit time, nothing else.
    pub(super) fn save(&mut self) {
        if self.dir.is_none() || self.fresh.is_empty() {
            return;
        }
        let fresh = std::mem::take(&mut self.fresh);
        let older: Vec<(Vec<u8>, Vec<u8>)> = match self.stored() {
            None => Vec::new(),
            Some(stored) => stored
                .table
                .iter()
                .filter(|(directory, _, _)| !fresh.iter().any(|(made, _)| made == directory))
                .filter(|(directory, _, _)| std::fs::symlink_metadata(super::os_path(directory)).is_ok())
                .take(MAX_SCANS.saturating_sub(fresh.len()))
                .filter_map(|(directory, _, _)| Some((directory.clone(), stored.scan(directory)?.to_vec())))
                .collect(),
        };
        let kept: Vec<&(Vec<u8>, Vec<u8>)> = fresh.iter().chain(&older).take(MAX_SCANS).collect();
        let mut table = Vec::new();
        put_u32(&mut table, kept.len() as u32);
        let mut offset = 0u64;
        for (directory, scan) in &kept {
            put_bytes(&mut table, directory);
            put_u64(&mut table, offset);
            put_u64(&mut table, scan.len() as u64);
            offset += scan.len() as u64;
        }
        let mut out = Vec::with_capacity(8 + table.len() + offset as usize);
        put_u64(&mut out, table.len() as u64);
        out.extend_from_slice(&table);
        for (_, scan) in &kept {
            out.extend_from_slice(scan);
        }
        if let Some(dir) = &self.dir {
            let _ = cache::write(dir, FILE_NAME, KEY, &out);
        }
    }
}

fn encode_stamp(out: &mut Vec<u8>, (own, entries): &DirectoryStamp) {
    let time = |out: &mut Vec<u8>, (seconds, nanoseconds): (i64, i64)| {
        put_i64(out, seconds);
        put_i64(out, nanoseconds);
    };
    time(out, *own);
    put_u32(out, entries.len() as u32);
    for (name, modified) in entries {
        put_bytes(out, name);
        time(out, *modified);
    }
}

fn decode_stamp(fields: &mut Fields) -> Option<DirectoryStamp> {
    let time = |fields: &mut Fields| Some((fields.i64()?, fields.i64()?));
    let own = time(fields)?;
    let count = fields.u32()? as usize;
    let entries = (0..count).map(|_| Some((fields.bytes_field()?.to_vec(), time(fields)?))).collect::<Option<_>>()?;
    Some((own, entries))
}

fn decode_inputs<'a>(fields: &mut Fields<'a>) -> Option<Vec<(&'a [u8], Option<Identity>)>> {
    let count = fields.u32()? as usize;
    (0..count)
        .map(|_| {
            let path = fields.bytes_field()?;
            let identity = match fields.u8()? {
                0 => None,
                1 => Some(Identity {
                    device: fields.u64()?,
                    inode: fields.u64()?,
                    size: fields.u64()?,
                    mtime_ns: fields.i64()?,
                    ctime_ns: fields.i64()?,
                }),
                _ => return None,
            };
            Some((path, identity))
        })
        .collect()
}

fn encode_found(out: &mut Vec<u8>, found: &Found) {
    let Distribution { name, version, installer, location, editable } = &found.distribution;
    put_bytes(out, name.as_bytes());
    put_bytes(out, version.as_bytes());
    match installer {
        None => out.push(0),
        Some(installer) => {
            out.push(1);
            put_bytes(out, installer.as_bytes());
        }
    }
    put_bytes(out, location);
    out.push(u8::from(*editable));
    put_u64(out, found.identity.0);
    put_u64(out, found.identity.1);
    out.push(found.rank.evidence as u8);
    put_i64(out, found.rank.modified.0);
    put_i64(out, found.rank.modified.1);
    // The files are the scan's owner table's.
    for paths in [&found.package_roots, &found.path_entries] {
        put_u32(out, paths.len() as u32);
        for path in paths {
            put_bytes(out, path);
        }
    }
}

fn decode_found(fields: &mut Fields) -> Option<Found> {
    let name = fields.text()?;
    let version = fields.text()?;
    let installer = match fields.u8()? {
        0 => None,
        1 => Some(fields.text()?),
        _ => return None,
    };
    let location = fields.bytes_field()?.to_vec();
    let editable = match fields.u8()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let identity = (fields.u64()?, fields.u64()?);
    let evidence = evidence_of(fields.u8()?)?;
    let modified = (fields.i64()?, fields.i64()?);
    let mut paths = || -> Option<Vec<Vec<u8>>> {
        let count = fields.u32()? as usize;
        (0..count).map(|_| fields.bytes_field().map(<[u8]>::to_vec)).collect()
    };
    let (package_roots, path_entries) = (paths()?, paths()?);
    Some(Found {
        distribution: Distribution { name, version, installer, location, editable },
        identity,
        rank: Rank { evidence, modified },
        files: Vec::new(),
        package_roots,
        path_entries,
    })
}

/// `Evidence` by its discriminant, as it is written (`evidence as u8`).
const EVIDENCE: [Evidence; 4] = [Evidence::TopLevel, Evidence::Sources, Evidence::Conda, Evidence::Installed];

fn evidence_of(code: u8) -> Option<Evidence> {
    EVIDENCE.get(usize::from(code)).copied().filter(|evidence| *evidence as u8 == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_is_decoded_as_it_was_encoded() {
        let found: Vec<Found> = EVIDENCE
            .iter()
            .enumerate()
            .map(|(index, &evidence)| Found {
                distribution: Distribution {
                    name: format!("name-{index}"),
                    version: "1.0".to_owned(),
                    installer: (index % 2 == 0).then(|| "pip".to_owned()),
                    location: b"/site".to_vec(),
                    editable: index == 1,
                },
                identity: (index as u64, u64::MAX),
                rank: Rank { evidence, modified: (-1, index as i64) },
                // Kept in the scan's owner table, not with the distribution.
                files: Vec::new(),
                package_roots: vec![b"/project/pkg".to_vec(); index],
                path_entries: vec![b"/project".to_vec(); 3 - index],
            })
            .collect();
        let mut out = Vec::new();
        for one in &found {
            encode_found(&mut out, one);
        }
        let mut fields = Fields::new(&out);
        let decoded: Vec<Found> = found.iter().map(|_| decode_found(&mut fields).expect("decoded")).collect();
        assert!(fields.rest().is_empty());
        assert_eq!(format!("{decoded:?}"), format!("{found:?}"));

        let stamp = ((5, 6), vec![(b"a.dist-info".to_vec(), (7, 8))]);
        let mut out = Vec::new();
        encode_stamp(&mut out, &stamp);
        assert_eq!(decode_stamp(&mut Fields::new(&out)), Some(stamp));
    }

    /// The owners of a cached scan's files, as the audit after reads them
    /// back: searched where the file is mapped.
    #[test]
    fn a_cached_scan_owns_its_files_as_the_scan_that_made_it() {
        let cache = tempfile::tempdir().expect("tempdir");
        let sites = tempfile::tempdir().expect("tempdir");
        let site = sites.path().join("site-packages");
        std::fs::create_dir_all(&site).expect("site");
        let site = site.into_os_string().into_encoded_bytes();
        let stamp: DirectoryStamp = ((1, 2), Vec::new());
        let distribution = |name: &str| Found {
            distribution: Distribution {
                name: name.to_owned(),
                version: "1.0".to_owned(),
                installer: None,
                location: site.clone(),
                editable: false,
            },
            identity: (0, name.len() as u64),
            rank: Rank { evidence: Evidence::Installed, modified: (0, 0) },
            files: Vec::new(),
            package_roots: Vec::new(),
            path_entries: Vec::new(),
        };
        let files: Vec<(Vec<u8>, usize)> =
            [b"b/__init__.py".as_slice(), b"a/__init__.py", b"a/\xff.py", b"a/z.py", b"a.py"]
                .iter()
                .enumerate()
                .map(|(index, file)| {
                    let path = [site.as_slice(), b"/", file].concat();
                    (path, index % 2)
                })
                .collect();
        let owners = SortedOwners::from_map(files.iter().map(|(path, owner)| (path.as_slice(), *owner)));
        let mut disk = ScanCache::open(Some(cache.path().to_path_buf()));
        disk.remember(&site, &stamp, &[], &[distribution("first"), distribution("second")], &owners);
        disk.save();

        let mut disk = ScanCache::open(Some(cache.path().to_path_buf()));
        let (found, stored) = disk.found(&site, &stamp).expect("cached");
        let names: Vec<&str> = found.iter().map(|found| found.distribution.name.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        for (path, owner) in &files {
            assert_eq!(stored.get(path), Some(*owner), "{}", String::from_utf8_lossy(path));
        }
        assert_eq!(stored.get(&[site.as_slice(), b"/a"].concat()), None, "a directory is nobody's");
        assert_eq!(stored.get(b"/elsewhere.py"), None);
        let mut sorted = files.clone();
        sorted.sort();
        let listed: Vec<(Vec<u8>, usize)> = stored.iter().map(|(path, owner)| (path.to_vec(), owner)).collect();
        assert_eq!(listed, sorted, "in path order");
    }

    #[test]
    fn the_scans_made_most_recently_of_directories_still_there_are_kept() {
        let cache = tempfile::tempdir().expect("tempdir");
        let sites = tempfile::tempdir().expect("tempdir");
        let stamp: DirectoryStamp = ((1, 2), Vec::new());
        let names = |range: std::ops::Range<usize>| -> Vec<Vec<u8>> {
            let made = range.map(|index| sites.path().join(format!("site-{index}")));
            made.map(|site| {
                std::fs::create_dir_all(&site).expect("site");
                site.into_os_string().into_encoded_bytes()
            })
            .collect()
        };
        let save = |directories: &[Vec<u8>]| {
            let mut disk = ScanCache::open(Some(cache.path().to_path_buf()));
            for directory in directories {
                disk.remember(directory, &stamp, &[], &[], &SortedOwners::from_map(Vec::<(&[u8], usize)>::new()));
            }
            disk.save();
        };
        let kept = || -> Vec<Vec<u8>> {
            let stored = Stored::open(cache.path()).expect("stored");
            stored.table.into_iter().map(|(directory, _, _)| directory).collect()
        };
        save(&names(0..MAX_SCANS));
        save(&names(MAX_SCANS..MAX_SCANS + 2));
        assert_eq!(kept(), [names(MAX_SCANS..MAX_SCANS + 2), names(0..MAX_SCANS - 2)].concat());

        // A directory gone is forgotten at the next save.
        std::fs::remove_dir(sites.path().join("site-0")).expect("remove");
        save(&names(MAX_SCANS + 2..MAX_SCANS + 3));
        let expected = [names(MAX_SCANS + 2..MAX_SCANS + 3), names(MAX_SCANS..MAX_SCANS + 2), names(1..MAX_SCANS - 2)];
        assert_eq!(kept(), expected.concat());
    }
}
