//! Scans of site directories and conda prefixes kept on disk between audits:
//! an environment's distributions are read from their `RECORD`s once, not
//! at every audit (the bench's venv, 66 distributions listing 16,766
//! files, took 16 ms of CPU a scan). A scan is used again while its
//! directory's stamp is the same and every file it read, directory it
//! listed and path it probed is as it was ([`super::inputs`]); one whose
//! reading had problems is not kept, so they are reported at every audit.
//!
//! One file holds the scans of the directories scanned most recently (at
//! most [`MAX_SCANS`]); it is rewritten only by an audit that scanned anew,
//! and read as untrusted bytes ([`crate::cache`]).

use std::{ops::Range, path::PathBuf};

use super::{inputs, DirectoryStamp, Distribution, Evidence, Found, Rank};
use crate::{
    cache::{self, put_bytes, Cached, Fields},
    fsaccess::Identity,
};

/// The cache file's name; the number changes with its layout.
const FILE_NAME: &str = "python-scans-v1.bin";
const KEY: &[u8] = b"python scans";
/// Directories whose scans are kept: the environments of a user's projects.
const MAX_SCANS: usize = 64;

/// The scans on disk, and those this audit made anew.
#[derive(Debug, Default)]
pub(super) struct ScanCache {
    /// Where the cache file is; `None`: nothing is cached.
    dir: Option<PathBuf>,
    cached: Option<Cached>,
    /// Each scanned directory's scan, where it is in `cached`, the most
    /// recently made first.
    scans: Vec<(Vec<u8>, Range<usize>)>,
    /// Scans made anew, encoded: (directory, scan).
    fresh: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ScanCache {
    /// The scans cached in `dir`.
    pub(super) fn open(dir: Option<PathBuf>) -> ScanCache {
        let cached = dir.as_deref().and_then(|dir| cache::read(dir, FILE_NAME, KEY));
        let scans = cached.as_ref().and_then(|cached| locate(cached.contents())).unwrap_or_default();
        ScanCache { dir, cached, scans, fresh: Vec::new() }
    }

    /// What the scan of `scanned` found, if one is cached that was made
    /// when the directory had `stamp` and whose inputs are unchanged.
    pub(super) fn found(&self, scanned: &[u8], stamp: &DirectoryStamp) -> Option<Vec<Found>> {
        let (_, range) = self.scans.iter().find(|(directory, _)| directory == scanned)?;
        let mut fields = Fields::new(self.cached.as_ref()?.contents().get(range.clone())?);
        if decode_stamp(&mut fields)? != *stamp {
            return None;
        }
        let inputs = decode_inputs(&mut fields)?;
        if !inputs::unchanged(inputs.iter().map(|(path, identity)| (*path, *identity))) {
            return None;
        }
        let count = fields.u32()? as usize;
        let found = (0..count).map(|_| decode_found(&mut fields)).collect::<Option<Vec<Found>>>()?;
        fields.rest().is_empty().then_some(found)
    }

    /// Keeps a scan made anew, to be saved.
    pub(super) fn remember(
        &mut self,
        scanned: &[u8],
        stamp: &DirectoryStamp,
        inputs: &[(Vec<u8>, Option<Identity>)],
        found: &[Found],
    ) {
        if self.dir.is_none() {
            return;
        }
        let mut out = Vec::new();
        encode_stamp(&mut out, stamp);
        out.extend_from_slice(&(inputs.len() as u32).to_le_bytes());
        for (path, identity) in inputs {
            put_bytes(&mut out, path);
            match identity {
                None => out.push(0),
                Some(identity) => {
                    out.push(1);
                    let Identity { device, inode, size, mtime_ns, ctime_ns } = *identity;
                    for word in [device, inode, size, mtime_ns as u64, ctime_ns as u64] {
                        out.extend_from_slice(&word.to_le_bytes());
                    }
                }
            }
        }
        out.extend_from_slice(&(found.len() as u32).to_le_bytes());
        for one in found {
            encode_found(&mut out, one);
        }
        self.fresh.retain(|(directory, _)| directory != scanned);
        self.fresh.push((scanned.to_vec(), out));
    }

    /// Writes the scans made anew, then those cached before for other
    /// directories, if there are any new. One that cannot be written costs
    /// the next audit time, nothing else.
    pub(super) fn save(&self) {
        let (Some(dir), false) = (&self.dir, self.fresh.is_empty()) else { return };
        let contents = self.cached.as_ref().map(Cached::contents).unwrap_or_default();
        let older = self
            .scans
            .iter()
            .filter(|(scanned, _)| !self.fresh.iter().any(|(fresh, _)| fresh == scanned))
            .filter_map(|(scanned, range)| Some((scanned.as_slice(), contents.get(range.clone())?)));
        let kept: Vec<(&[u8], &[u8])> = self
            .fresh
            .iter()
            .map(|(scanned, scan)| (scanned.as_slice(), scan.as_slice()))
            .chain(older)
            .take(MAX_SCANS)
            .collect();
        let mut out = Vec::with_capacity(kept.iter().map(|(scanned, scan)| scanned.len() + scan.len() + 8).sum());
        out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
        for (scanned, scan) in kept {
            put_bytes(&mut out, scanned);
            put_bytes(&mut out, scan);
        }
        let _ = cache::write(dir, FILE_NAME, KEY, &out);
    }
}

/// Where each directory's scan is in the file's `contents`, in its order.
fn locate(contents: &[u8]) -> Option<Vec<(Vec<u8>, Range<usize>)>> {
    let mut fields = Fields::new(contents);
    let count = fields.u32()? as usize;
    let mut scans = Vec::with_capacity(count.min(MAX_SCANS));
    for _ in 0..count {
        let scanned = fields.bytes_field()?.to_vec();
        let scan = fields.bytes_field()?;
        let start = scan.as_ptr() as usize - contents.as_ptr() as usize;
        scans.push((scanned, start..start + scan.len()));
    }
    fields.rest().is_empty().then_some(scans)
}

fn encode_stamp(out: &mut Vec<u8>, (own, entries): &DirectoryStamp) {
    let time = |out: &mut Vec<u8>, (seconds, nanoseconds): (i64, i64)| {
        out.extend_from_slice(&seconds.to_le_bytes());
        out.extend_from_slice(&nanoseconds.to_le_bytes());
    };
    time(out, *own);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
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
    for word in [found.identity.0, found.identity.1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.push(found.rank.evidence as u8);
    for word in [found.rank.modified.0, found.rank.modified.1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for paths in [&found.files, &found.package_roots, &found.path_entries] {
        out.extend_from_slice(&(paths.len() as u32).to_le_bytes());
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
    let (files, package_roots, path_entries) = (paths()?, paths()?, paths()?);
    Some(Found {
        distribution: Distribution { name, version, installer, location, editable },
        identity,
        rank: Rank { evidence, modified },
        files,
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
                files: vec![b"/site/a.py".to_vec(), b"/site/\xff".to_vec()],
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

    #[test]
    fn the_scans_made_most_recently_are_kept() {
        let cache = tempfile::tempdir().expect("tempdir");
        let stamp: DirectoryStamp = ((1, 2), Vec::new());
        let names = |range: Range<usize>| range.map(|index| format!("/site-{index}").into_bytes()).collect::<Vec<_>>();
        let save = |directories: &[Vec<u8>]| {
            let mut disk = ScanCache::open(Some(cache.path().to_path_buf()));
            for directory in directories {
                disk.remember(directory, &stamp, &[], &[]);
            }
            disk.save();
        };
        save(&names(0..MAX_SCANS));
        save(&names(MAX_SCANS..MAX_SCANS + 2));
        let kept: Vec<Vec<u8>> = ScanCache::open(Some(cache.path().to_path_buf()))
            .scans
            .into_iter()
            .map(|(directory, _)| directory)
            .collect();
        let expected = [names(MAX_SCANS..MAX_SCANS + 2), names(0..MAX_SCANS - 2)].concat();
        assert_eq!(kept, expected);
    }
}
