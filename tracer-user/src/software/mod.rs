//! Which software the run used: Python distributions and interpreters, system
//! packages, executables and shared libraries, found from the files it opened
//! and executed. Every file attributed here is software, never data.

pub mod dpkg;
pub mod python;
mod sorted_owners;

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::ffi::{OsStrExt, OsStringExt},
    path::Path,
    sync::mpsc,
    thread::JoinHandle,
};

use rustc_hash::FxHashSet;

use crate::{
    access::{AccessLog, PathUse},
    fsaccess::Lstats,
    launch::Credentials,
    privilege::ActingAs,
    tracker::path::{file_name, parent},
};

pub use dpkg::{DpkgError, SystemPackage};
pub use python::{Distribution, Interpreter};

/// The package databases consulted, loaded once per audit.
pub struct SoftwareIndex {
    dpkg: Option<dpkg::DpkgIndex>,
    python: python::PythonIndex,
}

/// Builds the [`SoftwareIndex`] while the audit runs, in a thread of its own:
/// the package database at once, and Python's site directories as the trace
/// reveals the paths under them, so that little is left to read when the
/// command ends.
pub struct IndexBuilder {
    paths: mpsc::Sender<ToIndex>,
    worker: std::io::Result<JoinHandle<Result<SoftwareIndex, IndexError>>>,
}

/// What the index's thread is told.
enum ToIndex {
    /// A path the trace used (see [`PathSink`]).
    Seen(Vec<u8>),
    /// Those of the files identification will ask about ([`used_files`])
    /// that reveal directories ([`Revealing`]), once the run is over.
    Used(Vec<Vec<u8>>),
}

/// The index being finished on its thread (see [`IndexBuilder::finish`]).
pub struct FinishingIndex {
    worker: std::io::Result<JoinHandle<Result<SoftwareIndex, IndexError>>>,
}

/// Why the software index could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Dpkg(#[from] DpkgError),
    #[error("cannot take the invoking user's rights to index software: {0}")]
    Credentials(#[source] std::io::Error),
    #[error("cannot start the thread that indexes software: {0}")]
    Thread(#[source] std::io::Error),
}

/// Hands paths the trace used to an [`IndexBuilder`]: those that reveal
/// directories ([`Revealing`]). A run's millions of files in a few
/// directories queue a few paths for the index's thread, which runs at the
/// lowest priority and may be far behind.
pub struct PathSink {
    paths: mpsc::Sender<ToIndex>,
    revealing: Revealing,
}

impl PathSink {
    /// Looks at `path`'s directories ahead of time (the final index looks
    /// again, so a path missed here costs time, not correctness).
    pub fn send(&mut self, path: &[u8]) {
        if self.revealing.reveals(path) {
            // A builder that is gone has finished: nothing more to warm up.
            let _ = self.paths.send(ToIndex::Seen(path.to_vec()));
        }
    }
}

/// Which paths show the index something new: the first of each directory,
/// as the index looks at a path's directories, which its siblings share,
/// and any site directory itself.
#[derive(Default)]
struct Revealing {
    directories: FxHashSet<Vec<u8>>,
    /// The directory of the path asked about last: a run's files come
    /// directory by directory, and a sorted list's do.
    last: Option<Vec<u8>>,
}

impl Revealing {
    fn reveals(&mut self, path: &[u8]) -> bool {
        let directory = parent(path).unwrap_or_default();
        let same_as_last = self.last.as_deref() == Some(directory);
        let new_directory = !same_as_last && !self.directories.contains(directory);
        if new_directory {
            self.directories.insert(directory.to_vec());
        }
        if !same_as_last {
            let last = self.last.get_or_insert_default();
            last.clear();
            last.extend_from_slice(directory);
        }
        new_directory || python::is_site_dir_name(file_name(path))
    }
}

impl IndexBuilder {
    /// Starts indexing, reading files as `owner` when there is one (the
    /// user an audit under sudo is for).
    pub fn start(owner: Option<Credentials>) -> Self {
        let (paths, incoming) = mpsc::channel::<ToIndex>();
        let at_starters_priority = crate::priority::for_threads_started_later();
        let worker = crate::priority::spawn_at_lowest_priority("software-index", move || {
            // The paths come from the user's run: never followed as root.
            let _acting = ActingAs::maybe(owner.as_ref()).map_err(IndexError::Credentials)?;
            let cache_dir = crate::cache::dir();
            let dpkg = dpkg::DpkgIndex::load(Path::new(dpkg::DEFAULT_ADMIN_DIR), cache_dir.as_deref())?;
            let mut warm = python::PythonIndex::warm_up(cache_dir);
            let mut used = Vec::new();
            for message in incoming {
                match message {
                    ToIndex::Seen(path) => warm.discover(&path),
                    ToIndex::Used(paths) => used = paths,
                }
            }
            // The run is over, and the audit waits for what is left: no
            // longer the lowest priority (unless it may not be raised).
            at_starters_priority();
            // The final index, its directories looked at as identification
            // would look at them, while the audit's end goes on.
            let mut python = python::PythonIndex::reusing(warm);
            for path in &used {
                python.discover(path);
            }
            python.save_scans();
            Ok(SoftwareIndex { dpkg, python })
        });
        IndexBuilder { paths, worker }
    }

    pub fn sink(&self) -> PathSink {
        PathSink { paths: self.paths.clone(), revealing: Revealing::default() }
    }

    /// Finishes the index on its thread, once every [`PathSink`] is dropped
    /// and the paths sent are looked at: the directories of `log`'s files
    /// that [`identify`] will ask about ([`used_files`]) are discovered
    /// there, while the caller goes on (with the `lstat`s of the audit's
    /// end: an audit of `import numpy, pandas` waited 2 ms for them after).
    pub fn finish(self, log: &AccessLog) -> FinishingIndex {
        let mut revealing = Revealing::default();
        let used = used_files(log).map(|(path, _)| path).filter(|path| revealing.reveals(path));
        // A builder that is gone has failed: `wait` says why.
        let _ = self.paths.send(ToIndex::Used(used.map(<[u8]>::to_vec).collect()));
        FinishingIndex { worker: self.worker }
    }
}

impl FinishingIndex {
    /// The index, finished.
    pub fn wait(self) -> Result<SoftwareIndex, IndexError> {
        self.worker.map_err(IndexError::Thread)?.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// A file the run executed or loaded, and what owns it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnedFile {
    pub path: Vec<u8>,
    pub package: Option<String>,
}

/// The software a run used.
#[derive(Debug, Default)]
pub struct SoftwareUse {
    /// Distributions, with how many of their files the run opened.
    pub python: BTreeMap<Distribution, u64>,
    /// The files of each editable distribution the run used (its project's
    /// source, and the hooks in the site directory that make it importable):
    /// what an image needs copied, as no index holds them.
    pub editable_files: BTreeMap<Distribution, BTreeSet<Vec<u8>>>,
    pub interpreters: BTreeSet<Interpreter>,
    pub system_packages: BTreeSet<SystemPackage>,
    pub executables: Vec<OwnedFile>,
    pub shared_libraries: Vec<OwnedFile>,
    /// Package metadata that could not be read (its files are not attributed).
    pub problems: Vec<String>,
    /// Hashed with FxHash (as the indexes' path tables): data classification asks it of every file.
    owned: FxHashSet<Vec<u8>>,
}

impl SoftwareUse {
    /// Whether `path` belongs to software listed here (so it is not data).
    pub fn owns(&self, path: &[u8]) -> bool {
        self.owned.contains(path)
    }
}

/// The files of `log` [`identify`] attributes: those read or executed, and
/// not written (what a run made is its data).
pub fn used_files(log: &AccessLog) -> impl Iterator<Item = (&[u8], &PathUse)> {
    log.iter().filter(|(_, used)| (used.read || used.exec) && !used.written)
}

/// Attributes every file the run read or executed to the software owning it.
pub fn identify(log: &AccessLog, index: &mut SoftwareIndex, lstats: &Lstats) -> SoftwareUse {
    // An editable project's files are found through its site directory, which
    // may be seen only later in path order: discover every directory first
    // (at once for those [`IndexBuilder::finish`] discovered).
    for (path, _) in used_files(log) {
        index.python.discover(path);
    }
    let mut found = SoftwareUse::default();
    // Installations whose standard library was read; folded into the executed
    // interpreters below.
    let mut stdlib_users = BTreeSet::new();
    let mut system_owners = index.dpkg.as_ref().map(dpkg::DpkgIndex::lookups);
    for (path, used) in used_files(log) {
        // Executables and shared libraries are listed with their package's name.
        let listed = used.exec || is_shared_library(path);
        let mut package = None;
        let mut owned = false;
        if let Some(distribution) = index.python.owner(path) {
            if listed {
                package = Some(distribution.name.clone());
            }
            // Reading a distribution's metadata (as importlib.metadata and
            // pkg_resources do for every installed one) is not using it.
            // (What was found before is not cloned again for each file.)
            if !in_metadata_dir(path) {
                match found.python.get_mut(distribution) {
                    Some(files) => *files += 1,
                    None => _ = found.python.insert(distribution.clone(), 1),
                }
            }
            if distribution.editable {
                let files = found.editable_files.entry(distribution.clone()).or_default();
                files.insert(path.to_vec());
                // Bytecode is loaded only from beside its source, which was
                // then only looked at.
                files.extend(python::bytecode_source(path));
            }
            owned = true;
        } else if let Some(interpreter) = index.python.stdlib_interpreter(path) {
            if !stdlib_users.contains(interpreter) {
                stdlib_users.insert(interpreter.clone());
            }
            owned = true;
        } else if file_name(path) == b"pyvenv.cfg" {
            // A virtual environment's configuration is its interpreter's.
            owned = true;
        }
        // The package of the name as used, and of what it points to: a
        // program run through a link (`python3` → `python3.11`, `awk` →
        // `mawk`), a configuration link (`/etc/localtime`) belongs to both.
        // Bytecode compiled at install time is its source's.
        let resolved = resolve_links(path, used.exec, lstats);
        let source = python::bytecode_source(path);
        for candidate in [Some(path), source.as_deref(), resolved.as_deref()].into_iter().flatten() {
            let Some(system_package) = system_owners.as_mut().and_then(|owners| owners.owner(candidate)) else {
                continue;
            };
            if listed {
                package.get_or_insert_with(|| system_package.name.clone());
            }
            if !found.system_packages.contains(system_package) {
                found.system_packages.insert(system_package.clone());
            }
            owned = true;
            if !used.exec {
                break;
            }
        }
        if used.exec {
            if let Some(interpreter) = python::interpreter_for_executable(path) {
                found.interpreters.insert(interpreter);
            }
            found.executables.push(OwnedFile { path: path.to_vec(), package });
            owned = true;
        } else if listed {
            found.shared_libraries.push(OwnedFile { path: path.to_vec(), package });
            owned = true;
        }
        if owned {
            found.owned.insert(path.to_vec());
        }
    }
    // One entry per interpreter: an installation whose standard library an
    // executed interpreter (or a venv based on it) read is that interpreter.
    for installation in stdlib_users {
        let executed = found.interpreters.iter().any(|interpreter| {
            interpreter.prefix == installation.prefix || interpreter.base_prefix == installation.prefix
        });
        if !executed {
            found.interpreters.insert(installation);
        }
    }
    found.problems = index.python.problems().iter().map(ToString::to_string).collect();
    found
}

/// What `path` names once symbolic links are followed, when that differs:
/// always for an executed file, else only for a link (one `lstat`).
fn resolve_links(path: &[u8], executed: bool, lstats: &Lstats) -> Option<Vec<u8>> {
    if !executed && !lstats.is_symlink(path) {
        return None;
    }
    let os_path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let resolved = std::fs::canonicalize(os_path).ok()?.into_os_string().into_vec();
    (resolved != path).then_some(resolved)
}

fn in_metadata_dir(path: &[u8]) -> bool {
    path.split(|&byte| byte == b'/').any(is_metadata_dir_name)
}

/// A distribution's metadata directory (`.dist-info`, or an egg's or an
/// editable project's `.egg-info`).
pub fn is_metadata_dir_name(name: &[u8]) -> bool {
    name.ends_with(b".dist-info") || name.ends_with(b".egg-info")
}

/// `libfoo.so`, `libfoo.so.6`, `_ext.cpython-311-x86_64-linux-gnu.so`.
fn is_shared_library(path: &[u8]) -> bool {
    let name = file_name(path);
    name.ends_with(b".so")
        || name
            .windows(4)
            .position(|window| window == b".so.")
            .is_some_and(|at| name[at + 4..].iter().all(|&byte| byte.is_ascii_digit() || byte == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_sent_a_directorys_first_path_and_site_directories() {
        let (paths, incoming) = mpsc::channel();
        let mut sink = PathSink { paths, revealing: Revealing::default() };
        for path in [
            &b"/data/a.csv"[..],
            b"/data/b.csv",
            b"/v/lib/python3.11/site-packages/numpy/__init__.py",
            b"/v/lib/python3.11/site-packages/numpy/core.py",
            b"/data/c.csv",
            b"/v/lib/python3.11/site-packages",
            b"/v/lib/python3.11/dist-packages",
        ] {
            sink.send(path);
        }
        drop(sink);
        let sent: Vec<Vec<u8>> = incoming
            .iter()
            .filter_map(|message| match message {
                ToIndex::Seen(path) => Some(path),
                ToIndex::Used(_) => None,
            })
            .collect();
        let expected: [&[u8]; 4] = [
            b"/data/a.csv",
            b"/v/lib/python3.11/site-packages/numpy/__init__.py",
            b"/v/lib/python3.11/site-packages",
            b"/v/lib/python3.11/dist-packages",
        ];
        assert_eq!(sent, expected);
    }

    #[test]
    fn recognises_shared_libraries() {
        assert!(is_shared_library(b"/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_shared_library(b"/v/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so"));
        assert!(is_shared_library(b"/usr/lib/libz.so.1.2.13"));
        assert!(!is_shared_library(b"/data/results.so.csv"));
        assert!(!is_shared_library(b"/etc/ld.so.cache"));
    }
}
