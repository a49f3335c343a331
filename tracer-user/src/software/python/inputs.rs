//! What a scan of a site directory or conda prefix looks at, recorded as it
//! reads: every file read, directory listed and path probed, with what
//! identified it then. A scan kept on disk ([`super::scan_cache`]) is used
//! again only while every one of them is as it was.

use std::{
    fs,
    io::{self, Read},
};

use super::{os_path, PythonError};
use crate::fsaccess::{FileStat, Identity};

/// What a scan looked at, and what it could not read.
#[derive(Debug, Default)]
pub(super) struct ScanLog {
    pub(super) problems: Vec<PythonError>,
    /// Each path looked at, and what identified it then (`None`: absent).
    pub(super) inputs: Vec<(Vec<u8>, Option<Identity>)>,
    /// A path answered with neither what it is nor its absence (no
    /// permission, say): the scan is right now but cannot be checked later.
    uncheckable: bool,
}

impl ScanLog {
    /// Whether what the scan found can be used again while its inputs stay
    /// as they were: it read everything it looked for.
    pub(super) fn is_reusable(&self) -> bool {
        self.problems.is_empty() && !self.uncheckable
    }

    /// `fs::metadata(path)`, recorded.
    pub(super) fn metadata(&mut self, path: &[u8]) -> Option<fs::Metadata> {
        let answer = fs::metadata(os_path(path));
        self.note(path, answer.as_ref());
        answer.ok()
    }

    /// The entries of directory `dir`, recorded as it was before they were
    /// read (an entry added meanwhile changes it after).
    pub(super) fn read_dir(&mut self, dir: &[u8]) -> io::Result<fs::ReadDir> {
        let answer = fs::metadata(os_path(dir));
        self.note(dir, answer.as_ref());
        answer?;
        fs::read_dir(os_path(dir)).inspect_err(|_| self.uncheckable = true)
    }

    /// Records `error` reading `path` as a problem, unless `path` is absent.
    pub(super) fn problem_unless_absent(&mut self, path: &[u8], error: io::Error) {
        if !is_absence(&error) {
            self.problems.push(PythonError::Read { path: os_path(path).to_path_buf(), source: error });
        }
    }

    /// A whole file, `None` when it (or its directory) does not exist; other
    /// failures are problems.
    pub(super) fn read(&mut self, path: &[u8]) -> Option<Vec<u8>> {
        let mut file = self.open(path)?;
        let mut text = Vec::new();
        match file.read_to_end(&mut text) {
            Ok(_) => Some(text),
            Err(error) => self.problem(path, error),
        }
    }

    /// The header block of a metadata file (up to its first blank line): the
    /// long description after it can be large and is not needed.
    pub(super) fn read_head(&mut self, path: &[u8]) -> Option<Vec<u8>> {
        let mut file = self.open(path)?;
        let mut head = Vec::new();
        let mut chunk = [0; 8192];
        loop {
            let read = match file.read(&mut chunk) {
                Ok(0) => return Some(head),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return self.problem(path, error),
            };
            let searched_from = head.len().saturating_sub(2);
            head.extend_from_slice(&chunk[..read]);
            let tail = &head[searched_from..];
            if tail.windows(2).any(|pair| pair == b"\n\n") || tail.windows(3).any(|triple| triple == b"\n\r\n") {
                return Some(head);
            }
        }
    }

    /// `path` opened, recorded as the file opened was before it is read.
    fn open(&mut self, path: &[u8]) -> Option<fs::File> {
        let opened = fs::File::open(os_path(path)).and_then(|file| Ok((file.metadata()?, file)));
        match opened {
            Ok((metadata, file)) => {
                self.note(path, Ok(&metadata));
                Some(file)
            }
            Err(error) => {
                self.note(path, Err(&error));
                self.problem_unless_absent(path, error);
                None
            }
        }
    }

    fn problem<T>(&mut self, path: &[u8], error: io::Error) -> Option<T> {
        self.problems.push(PythonError::Read { path: os_path(path).to_path_buf(), source: error });
        None
    }

    fn note(&mut self, path: &[u8], answer: Result<&fs::Metadata, &io::Error>) {
        let identity = match answer {
            Ok(metadata) => Some(identity_of(metadata)),
            Err(error) if is_absence(error) => None,
            Err(_) => {
                self.uncheckable = true;
                return;
            }
        };
        self.inputs.push((path.to_vec(), identity));
    }
}

/// Whether every one of `inputs` is still what it was.
pub(super) fn unchanged<'a>(mut inputs: impl Iterator<Item = (&'a [u8], Option<Identity>)>) -> bool {
    inputs.all(|(path, identity)| match fs::metadata(os_path(path)) {
        Ok(metadata) => identity == Some(identity_of(&metadata)),
        Err(error) => identity.is_none() && is_absence(&error),
    })
}

fn identity_of(metadata: &fs::Metadata) -> Identity {
    Identity::of(&FileStat::from(metadata))
}

/// Not there: the path, or a directory on its way, does not exist.
fn is_absence(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}
