//! Python software: which distribution owns a used file, and which interpreter
//! an executable or a standard-library file belongs to.
//!
//! Ownership is what `importlib.metadata` reports, with Python 3.13's rules (a
//! superset of 3.11's): a file belongs to the distribution whose `RECORD`
//! (`.dist-info`), `installed-files.txt` or, failing that, `SOURCES.txt`
//! (`.egg-info`) lists it. Entries are joined to the directory importlib joins
//! them to and folded lexically, like every path of a trace, so
//! `../../../bin/pip` in a venv's `RECORD` names `<venv>/bin/pip`. On top of
//! importlib:
//! - `__pycache__/m.<tag>[.opt-N].pyc` that no list names belongs to the owner
//!   of `m.py` (Python's own `source_from_cache` rule);
//! - a conda package (`<prefix>/conda-meta/*.json`) owns the files it lists, a
//!   `.dist-info` listing the same file wins (it is what importlib reports);
//! - an editable install owns what it makes importable. The package
//!   directories a setuptools `__editable___*_finder.py` maps (`MAPPING`) are
//!   its whole, package data included, as is an `.egg`. Of the directories it
//!   puts on `sys.path` (path lines of the `.pth` files its `RECORD` lists,
//!   else the project directory of `direct_url.json`; for a legacy develop
//!   install the `*.egg-link` / `easy-install.pth` directory), it owns the
//!   Python code only (`.py`, `.pyc`, `.so`): flat layouts put the project
//!   root there, and the run's data next to the code must stay data. A root
//!   does not reach into a site directory or Python environment below it (a
//!   project's own `.venv`), and a file some list names keeps that owner;
//! - when several lists name one file, the last writer wins: installed lists
//!   beat conda manifests, which beat `SOURCES.txt`, then the most recently
//!   modified metadata directory wins, then the smaller [`Distribution`].
//!
//! Lists name files, so a directory has no owner through them (a namespace
//! package's directory is shared by several distributions).
//!
//! The index is built lazily: [`PythonIndex::discover`] looks at each directory
//! above a used path once. A directory named `site-packages` or `dist-packages`
//! is scanned, and a directory that looks like a prefix (`conda-meta/`,
//! `pyvenv.cfg`, `lib/python*/{site,dist}-packages`) has its site directories
//! and conda packages scanned, so `<venv>/bin/pip` finds its owner even when no
//! file of the venv's `site-packages` was used. A file's owner is looked up
//! by its path's bytes, in each scan's sorted table of the files it lists.
//! Nothing runs Python. A scan is kept on disk for the audits after, its
//! table searched where the file is mapped, and used while nothing it read
//! has changed ([`scan_cache`]).

mod conda;
mod editable;
mod inputs;
mod interpreter;
mod metadata;
mod scan_cache;
#[cfg(test)]
mod tests;

use std::{
    collections::hash_map::Entry,
    ffi::OsStr,
    fs, io,
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use rustc_hash::{FxHashMap, FxHashSet};

pub use interpreter::interpreter_for_executable;

pub use self::metadata::bytecode_source;
use self::{
    conda::scan_conda_prefix,
    inputs::ScanLog,
    interpreter::{installation, stdlib_location},
    metadata::scan_site_dir,
    scan_cache::ScanCache,
};
use super::sorted_owners::SortedOwners;
use crate::tracker::path::{file_name, join, parent};

/// Path-keyed tables hash with FxHash (rustc's): tens of thousands of keys
/// per environment, where SipHash was a fifth of the indexing time. The keys
/// are local file names; flooding them only slows one's own audit.
type PathMap<V> = FxHashMap<Vec<u8>, V>;
type PathSet = FxHashSet<Vec<u8>>;

/// An installed distribution package, as `importlib.metadata` describes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Distribution {
    /// The `Name:` of its metadata, spelled as there (the metadata directory's
    /// stem when the header is missing, which is reported as a problem).
    pub name: String,
    /// The `Version:` of its metadata.
    pub version: String,
    /// `INSTALLER` (pip, uv, conda, debian…), trimmed; `None` when absent or
    /// empty. Conda packages say `conda`.
    pub installer: Option<String>,
    /// The directory holding its metadata: the site directory of a
    /// `.dist-info` or `.egg-info`, the project directory of a develop
    /// install, the `.egg` of an egg, the prefix of a conda package.
    pub location: Vec<u8>,
    /// An editable install: `direct_url.json` says `dir_info.editable`, or a
    /// legacy develop install (`*.egg-link`, `easy-install.pth`).
    pub editable: bool,
}

/// A CPython installation or virtual environment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interpreter {
    /// The executable: as exec'd for [`interpreter_for_executable`],
    /// `<prefix>/bin/pythonX.Y` for one found through its standard library.
    pub path: Vec<u8>,
    /// `X.Y.Z` (see [`interpreter_for_executable`] for where it comes from);
    /// `X.Y` when no source gives the patch level.
    pub version: String,
    /// `sys.prefix`: the venv directory for a venv.
    pub prefix: Vec<u8>,
    /// `sys.base_prefix`: the installation whose standard library it runs,
    /// `prefix` itself unless a venv.
    pub base_prefix: Vec<u8>,
}

/// Something the index could not read. Indexing goes on without it; the
/// integrator may report these as warnings.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not the JSON expected: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{} has no Name or Version header", path.display())]
    Metadata { path: PathBuf },
}

/// Owners of Python files, discovered lazily per directory and kept for the
/// life of the index (one audit).
#[derive(Debug, Default)]
pub struct PythonIndex {
    distributions: Vec<Distribution>,
    ranks: Vec<Rank>,
    /// The distribution read from each metadata directory or conda record, by
    /// (device, inode): a site directory reached through two spellings (`lib`
    /// and its `lib64` link) yields one distribution, not two.
    by_identity: FxHashMap<(u64, u64), usize>,
    /// Which distribution each listed file belongs to, a table per scan
    /// added: its scan's own, claimed as it was made or kept by a cached
    /// one, not merged into one at the audit's end (claiming the bench
    /// venv's 16,766 files there took 1.3 ms of an import audit's end).
    listings: Vec<Listing>,
    /// Package directory of an editable install or egg → distribution owning all below it.
    package_roots: PathMap<usize>,
    /// `sys.path` directory of an editable or develop install → distribution owning the code below it.
    path_entries: PathMap<usize>,
    /// Directories looked at by `discover`; so were all their ancestors.
    explored: PathSet,
    /// The directory of the path `discover` looked at last: a run's files
    /// come directory by directory, and a path of the same one is done
    /// without hashing it (twice a used file at an audit's end). Empty
    /// before the first, which no path's directory is.
    last_explored: Vec<u8>,
    /// What the files of one directory share in their owners, found for
    /// the first of them asked about.
    directory: DirectoryMemo,
    /// Site directories and conda prefixes already scanned.
    scanned: PathSet,
    /// Prefixes of Python environments, where editable roots stop claiming.
    environments: PathSet,
    /// `<prefix>/lib/pythonX.Y` → its installation, `None` when not a standard library.
    stdlib_dirs: PathMap<Option<usize>>,
    interpreters: Vec<Interpreter>,
    problems: Vec<PythonError>,
    /// Warm-up: scans are kept here, whole, for the index built at the end.
    warming_up: bool,
    /// Scans by directory (site directory, or `conda-meta`): a warm-up's
    /// results, or those handed over by one.
    scans: PathMap<Scan>,
    /// Scans kept on disk by audits before, and those made anew.
    disk: ScanCache,
}

/// What scanning a site directory or conda prefix found, and the state of the
/// directory it was read from.
#[derive(Debug)]
struct Scan {
    stamp: Option<DirectoryStamp>,
    /// The distributions found (their files moved to `owners`).
    found: Vec<Found>,
    /// Folded path → the position in `found` of the distribution whose
    /// lists win it: claimed as the scan is made, or the table a cached
    /// scan kept.
    owners: SortedOwners,
    problems: Vec<PythonError>,
}

impl Scan {
    fn new(stamp: Option<DirectoryStamp>, mut found: Vec<Found>, problems: Vec<PythonError>) -> Scan {
        let mut owners = PathMap::default();
        owners.reserve(found.iter().map(|found| found.files.len()).sum());
        for challenger in 0..found.len() {
            for file in std::mem::take(&mut found[challenger].files) {
                claim(&mut owners, file, challenger, |challenger, holder| found[challenger].outranks(&found[holder]));
            }
        }
        Scan { stamp, found, owners: SortedOwners::from_map(owners), problems }
    }
}

/// The owners of the files that scans list, once their distributions
/// joined an index: one scan's, or several merged.
#[derive(Debug)]
struct Listing {
    /// Folded path → the position in `ids` of the distribution owning it
    /// (one past them, in a damaged cache's table, names none).
    owners: SortedOwners,
    /// The index's ids of the distributions.
    ids: Vec<usize>,
}

/// Tables of owners an index keeps apart: a file's owner is asked of each,
/// so beyond these few (a venv's site directory, the system's, a conda
/// prefix's…) a scan's table is merged into the last one instead (an audit
/// across many environments asks a few tables, not one per environment).
const MAX_LISTINGS: usize = 4;

impl Listing {
    /// Adds `other`'s files, each to the distribution that outranks the
    /// other (`outranks` compares the index's ids).
    fn merge(&mut self, other: Listing, outranks: impl Fn(usize, usize) -> bool) {
        let (offset, others) = (self.ids.len(), other.ids.len());
        let mut owners: PathMap<usize> = self
            .owners
            .iter()
            .filter(|&(_, position)| position < offset)
            .map(|(file, position)| (file.to_vec(), position))
            .collect();
        self.ids.extend(other.ids);
        let ids = &self.ids;
        for (file, position) in other.owners.iter().filter(|&(_, position)| position < others) {
            claim(&mut owners, file.to_vec(), offset + position, |challenger, holder| {
                outranks(ids[challenger], ids[holder])
            });
        }
        self.owners = SortedOwners::from_map(owners);
    }
}

/// A directory's modification time and its entries' (installing, removing or
/// upgrading a distribution changes one of them).
type DirectoryStamp = ((i64, i64), Vec<(Vec<u8>, (i64, i64))>);

fn directory_stamp(dir: &[u8]) -> Option<DirectoryStamp> {
    let own = modified(&fs::metadata(os_path(dir)).ok()?);
    let mut entries: Vec<(Vec<u8>, (i64, i64))> = fs::read_dir(os_path(dir))
        .ok()?
        .flatten()
        .filter_map(|entry| Some((entry.file_name().into_vec(), modified(&entry.metadata().ok()?))))
        .collect();
    entries.sort_unstable();
    Some((own, entries))
}

impl PythonIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// An index that only scans, for [`PythonIndex::reusing`]: run it while
    /// the audit goes on, on the paths as the trace reveals them, and the
    /// scanning is done by the time the command ends. Scans cached in
    /// `cache_dir` by audits before are used while what they read is
    /// unchanged.
    pub fn warm_up(cache_dir: Option<PathBuf>) -> Self {
        PythonIndex { warming_up: true, disk: ScanCache::open(cache_dir), ..Self::default() }
    }

    /// A new index that takes `warm`'s scans of directories that have not
    /// changed since (and scans anew the others: a run that installs packages
    /// sees them).
    pub fn reusing(warm: PythonIndex) -> Self {
        PythonIndex { scans: warm.scans, disk: warm.disk, ..Self::default() }
    }

    /// Leaves the scans made anew on disk, for the audits after.
    pub fn save_scans(&mut self) {
        self.disk.save();
    }

    /// Looks at the directories above `path` (and at `path` itself when it is a
    /// site directory), scanning the site directories and prefixes they reveal.
    /// Cheap after the first path of a directory. Ownership of files outside
    /// any environment (editable projects) depends on their site directory
    /// having been seen, so call this for every used path before asking owners.
    pub fn discover(&mut self, path: &[u8]) {
        if is_site_dir_name(file_name(path)) {
            self.directory.forget();
            self.scan_site_dir(path);
        }
        let directory = parent(path);
        if directory == Some(self.last_explored.as_slice()) {
            return;
        }
        // What is found below may own anything.
        self.directory.forget();
        let mut current = directory;
        while let Some(dir) = current {
            if self.explored.contains(dir) {
                break;
            }
            self.explored.insert(dir.to_vec());
            if is_site_dir_name(file_name(dir)) {
                self.scan_site_dir(dir);
            }
            // Nothing inside a site directory is a prefix: saves three probes per package directory.
            if !dir.split(|&byte| byte == b'/').any(is_site_dir_name) {
                self.probe_prefix(dir);
            }
            current = parent(dir);
        }
        if let Some(directory) = directory {
            self.last_explored.clear();
            self.last_explored.extend_from_slice(directory);
        }
    }

    /// The distribution owning `path` (absolute, folded), discovering its
    /// directories first. (The index grows only as directories are
    /// discovered: [`DirectoryMemo`] holds between.)
    pub fn owner(&mut self, path: &[u8]) -> Option<&Distribution> {
        self.discover(path);
        let id = self.owner_id(path)?;
        Some(&self.distributions[id])
    }

    /// The installation whose standard library holds `path`
    /// (`<prefix>/lib/pythonX.Y/…`, `lib-dynload` included, its site
    /// directories not), if `<prefix>/lib/pythonX.Y/os.py` (Python's own
    /// landmark) and `<prefix>/bin/pythonX.Y` exist. A venv has no standard
    /// library: its files are found in the base installation.
    pub fn stdlib_interpreter(&mut self, path: &[u8]) -> Option<&Interpreter> {
        let (prefix, stdlib_dir, version_dir) = stdlib_location(path)?;
        let id = match self.stdlib_dirs.get(stdlib_dir) {
            Some(known) => *known,
            None => {
                let found = installation(prefix, stdlib_dir, version_dir).map(|interpreter| {
                    match self.interpreters.iter().position(|known| known.prefix == interpreter.prefix) {
                        Some(id) => id,
                        None => {
                            self.interpreters.push(interpreter);
                            self.interpreters.len() - 1
                        }
                    }
                });
                self.stdlib_dirs.insert(stdlib_dir.to_vec(), found);
                found
            }
        }?;
        Some(&self.interpreters[id])
    }

    /// The installations found so far by [`Self::stdlib_interpreter`], one per
    /// prefix, in discovery order.
    pub fn interpreters(&self) -> &[Interpreter] {
        &self.interpreters
    }

    /// What could not be read so far.
    pub fn problems(&self) -> &[PythonError] {
        &self.problems
    }

    fn owner_id(&mut self, path: &[u8]) -> Option<usize> {
        if let Some(id) = self.listed_owner(path) {
            return Some(id);
        }
        let source = bytecode_source(path);
        if let Some(id) = source.as_ref().and_then(|source| self.listed_owner(source)) {
            return Some(id);
        }
        self.root_owner(source.as_deref().unwrap_or(path))
    }

    /// The distribution whose lists win `path`: each scan's winner, and the
    /// winner of those (as if every list had claimed it in one table).
    fn listed_owner(&mut self, path: &[u8]) -> Option<usize> {
        // (Every listed path is absolute: one without a directory is not.)
        let dir = parent(path)?;
        let listings = &self.listings;
        // Only the tables that list some path in its directory (none, for
        // most of a run's data): searched once a directory, not once a file.
        let holding = self.directory.of(dir).listings.get_or_insert_with(|| {
            let mut prefix = dir.to_vec();
            if prefix.last() != Some(&b'/') {
                prefix.push(b'/');
            }
            let holds = |(_, listing): &(usize, &Listing)| listing.owners.any_starting_with(&prefix);
            listings.iter().enumerate().filter(holds).map(|(index, _)| index).collect()
        });
        let outranks = outranks_in(&self.ranks, &self.distributions);
        let mut owner = None;
        for listing in holding.iter().filter_map(|&index| listings.get(index)) {
            if let Some(&challenger) = listing.owners.get(path).and_then(|local| listing.ids.get(local)) {
                owner = match owner {
                    Some(holder) if !outranks(challenger, holder) => Some(holder),
                    _ => Some(challenger),
                };
            }
        }
        owner
    }

    /// The editable install whose nearest root holds `path`. A package root
    /// names a directory or, without its suffix, a module (`proj/mod` for
    /// `proj/mod.py`, as setuptools' finder maps them).
    fn root_owner(&mut self, path: &[u8]) -> Option<usize> {
        if self.package_roots.is_empty() && self.path_entries.is_empty() {
            return None;
        }
        let (dir, name) = (parent(path)?, file_name(path));
        if let Some(dot) = name.iter().position(|&byte| byte == b'.').filter(|&dot| dot > 0) {
            if let Some(&id) = self.package_roots.get(&join(dir, &name[..dot])) {
                return Some(id);
            }
        }
        let is_code = [b".py".as_slice(), b".pyc", b".so"].iter().any(|suffix| name.ends_with(suffix));
        let (package_roots, path_entries, environments) = (&self.package_roots, &self.path_entries, &self.environments);
        *self.directory.of(dir).roots[usize::from(is_code)]
            .get_or_insert_with(|| root_above(dir, is_code, package_roots, path_entries, environments))
    }

    /// Scans what makes `dir` a Python prefix: conda packages, a venv, site
    /// directories under `lib/`.
    fn probe_prefix(&mut self, dir: &[u8]) {
        if is_dir(&join(dir, b"conda-meta")) {
            self.environments.insert(dir.to_vec());
            self.scan_conda_prefix(dir);
        }
        if fs::metadata(os_path(&join(dir, b"pyvenv.cfg"))).is_ok() {
            self.environments.insert(dir.to_vec());
        }
        let lib = join(dir, b"lib");
        let Ok(entries) = fs::read_dir(os_path(&lib)) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.as_bytes().starts_with(b"python") && !name.as_bytes().starts_with(b"pypy") {
                continue;
            }
            for site_name in SITE_DIR_NAMES {
                let site = join(&join(&lib, name.as_bytes()), site_name);
                if is_dir(&site) {
                    self.environments.insert(dir.to_vec());
                    self.scan_site_dir(&site);
                }
            }
        }
    }

    fn scan_site_dir(&mut self, site: &[u8]) {
        if self.scanned.insert(site.to_vec()) {
            self.scan(site.to_vec(), |log| scan_site_dir(site, log));
        }
    }

    fn scan_conda_prefix(&mut self, prefix: &[u8]) {
        let conda_meta = join(prefix, b"conda-meta");
        if self.scanned.insert(conda_meta.clone()) {
            self.scan(conda_meta, |log| scan_conda_prefix(prefix, log));
        }
    }

    /// Scans `dir` with `read` — or takes a warm-up's scan of it if the
    /// directory has not changed since, else one an audit before left on
    /// disk if nothing it read has changed — and adds what it found (or
    /// keeps it, when warming up).
    fn scan(&mut self, dir: Vec<u8>, read: impl FnOnce(&mut ScanLog) -> Vec<Found>) {
        // Stamped before reading: a change made while we read shows next time.
        let stamp = directory_stamp(&dir);
        let reusable = self.scans.remove(&dir).filter(|scan| scan.stamp.is_some() && scan.stamp == stamp);
        let cached = || {
            let (found, owners) = self.disk.found(&dir, stamp.as_ref()?)?;
            Some(Scan { stamp: stamp.clone(), found, owners, problems: Vec::new() })
        };
        let scan = match reusable.or_else(cached) {
            Some(scan) => scan,
            None => {
                let mut log = ScanLog::default();
                let found = read(&mut log);
                let reusable = log.is_reusable();
                let scan = Scan::new(stamp, found, log.problems);
                if let Some(stamp) = scan.stamp.as_ref().filter(|_| reusable) {
                    self.disk.remember(&dir, stamp, &log.inputs, &scan.found, &scan.owners);
                }
                scan
            }
        };
        if self.warming_up {
            self.scans.insert(dir, scan);
        } else {
            self.problems.extend(scan.problems);
            let ids = scan.found.into_iter().map(|found| self.add_one(found)).collect();
            let listing = Listing { owners: scan.owners, ids };
            let full = self.listings.len() >= MAX_LISTINGS;
            match self.listings.last_mut() {
                _ if listing.owners.is_empty() => {}
                Some(last) if full => last.merge(listing, outranks_in(&self.ranks, &self.distributions)),
                _ => self.listings.push(listing),
            }
        }
    }

    /// Adds a distribution (once, however many spellings its directory was
    /// reached by) and its package roots and `sys.path` entries; returns its id.
    fn add_one(&mut self, found: Found) -> usize {
        let id = match self.by_identity.entry(found.identity) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(slot) => {
                self.distributions.push(found.distribution);
                self.ranks.push(found.rank);
                *slot.insert(self.distributions.len() - 1)
            }
        };
        let outranks = outranks_in(&self.ranks, &self.distributions);
        for (owners, keys) in
            [(&mut self.package_roots, found.package_roots), (&mut self.path_entries, found.path_entries)]
        {
            for key in keys {
                claim(owners, key, id, &outranks);
            }
        }
        id
    }
}

/// PEP 503 normalisation: lowercase, runs of `-`, `_` and `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for character in name.chars() {
        if matches!(character, '-' | '_' | '.') {
            if !in_separator_run {
                normalized.push('-');
            }
            in_separator_run = true;
        } else {
            normalized.extend(character.to_lowercase());
            in_separator_run = false;
        }
    }
    normalized
}

const SITE_DIR_NAMES: [&[u8]; 2] = [b"site-packages", b"dist-packages"];

pub(super) fn is_site_dir_name(name: &[u8]) -> bool {
    SITE_DIR_NAMES.contains(&name)
}

/// How much a list naming a file says about who wrote it last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Evidence {
    /// `top_level.txt` alone (Debian's packages strip their file lists): the
    /// import names a distribution provides, as `packages_distributions` reads them.
    TopLevel,
    /// `SOURCES.txt`: the source archive's files, not the installed ones.
    Sources,
    /// A conda manifest: shadowed by a `.dist-info` inside the package.
    Conda,
    /// `RECORD` or `installed-files.txt`, written by the installer.
    Installed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    evidence: Evidence,
    /// Modification time of the metadata, (seconds, nanoseconds).
    modified: (i64, i64),
}

/// Gives `key` to `challenger` if it has no holder or `challenger` outranks it.
fn claim(owners: &mut PathMap<usize>, key: Vec<u8>, challenger: usize, outranks: impl Fn(usize, usize) -> bool) {
    match owners.entry(key) {
        Entry::Vacant(slot) => {
            slot.insert(challenger);
        }
        Entry::Occupied(mut held) => {
            if outranks(challenger, *held.get()) {
                held.insert(challenger);
            }
        }
    }
}

/// Whether a list of `challenger`'s beats one of `holder`'s naming the same
/// file: the higher rank, then the smaller distribution (see the module's rules).
fn outranks((rank, challenger): (Rank, &Distribution), (held_rank, holder): (Rank, &Distribution)) -> bool {
    rank.cmp(&held_rank).then_with(|| holder.cmp(challenger)).is_gt()
}

/// The editable install whose nearest root holds directory `dir`, or
/// (`is_code`) whose `sys.path` entry does; none beyond a site directory
/// or an environment's prefix.
fn root_above(
    dir: &[u8],
    is_code: bool,
    package_roots: &PathMap<usize>,
    path_entries: &PathMap<usize>,
    environments: &PathSet,
) -> Option<usize> {
    let mut current = Some(dir);
    while let Some(candidate) = current {
        if is_site_dir_name(file_name(candidate)) || environments.contains(candidate) {
            return None;
        }
        let path_entry = if is_code { path_entries.get(candidate) } else { None };
        if let Some(&id) = package_roots.get(candidate).or(path_entry) {
            return Some(id);
        }
        current = parent(candidate);
    }
    None
}

/// What the files of one directory share in their owners, found for the
/// first of them asked about: a run's files come directory by directory.
/// Forgotten whenever the index may have grown.
#[derive(Debug, Default)]
struct DirectoryMemo {
    dir: Vec<u8>,
    /// The listings that hold some path under `dir`.
    listings: Option<Vec<usize>>,
    /// The editable install owning its other files (`[0]`) and its code (`[1]`).
    roots: [Option<Option<usize>>; 2],
}

impl DirectoryMemo {
    /// The memo of `dir`, empty unless it was `dir`'s already.
    fn of(&mut self, dir: &[u8]) -> &mut DirectoryMemo {
        if self.dir != dir {
            self.forget();
            self.dir.extend_from_slice(dir);
        }
        self
    }

    fn forget(&mut self) {
        self.dir.clear();
        self.listings = None;
        self.roots = [None; 2];
    }
}

/// [`outranks`] for distributions by id.
fn outranks_in<'a>(ranks: &'a [Rank], distributions: &'a [Distribution]) -> impl Fn(usize, usize) -> bool + 'a {
    |challenger, holder| {
        outranks((ranks[challenger], &distributions[challenger]), (ranks[holder], &distributions[holder]))
    }
}

/// One distribution as its metadata describes it, before it joins the index.
#[derive(Debug)]
struct Found {
    distribution: Distribution,
    /// (device, inode) of its metadata directory or conda record.
    identity: (u64, u64),
    rank: Rank,
    /// Folded paths its lists name.
    files: Vec<Vec<u8>>,
    /// Package directories of an editable install or an egg.
    package_roots: Vec<Vec<u8>>,
    /// `sys.path` directories of an editable or develop install.
    path_entries: Vec<Vec<u8>>,
}

impl Found {
    fn outranks(&self, holder: &Found) -> bool {
        outranks((self.rank, &self.distribution), (holder.rank, &holder.distribution))
    }
}

fn os_path(path: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(path))
}

fn is_dir(path: &[u8]) -> bool {
    fs::metadata(os_path(path)).is_ok_and(|metadata| metadata.is_dir())
}

fn modified(metadata: &fs::Metadata) -> (i64, i64) {
    (metadata.mtime(), metadata.mtime_nsec())
}

fn ends_with_ignore_case(text: &[u8], suffix: &[u8]) -> bool {
    strip_suffix_ignore_case(text, suffix).is_some()
}

fn strip_suffix_ignore_case<'a>(text: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    let split = text.len().checked_sub(suffix.len())?;
    text[split..].eq_ignore_ascii_case(suffix).then_some(&text[..split])
}

/// `split_once` and `rsplit_once` on a byte, for byte strings.
trait SplitByte {
    fn split_once_byte(&self, separator: u8) -> Option<(&[u8], &[u8])>;
    fn rsplit_once_byte(&self, separator: u8) -> Option<(&[u8], &[u8])>;
}

impl SplitByte for [u8] {
    fn split_once_byte(&self, separator: u8) -> Option<(&[u8], &[u8])> {
        let at = self.iter().position(|&byte| byte == separator)?;
        Some((&self[..at], &self[at + 1..]))
    }

    fn rsplit_once_byte(&self, separator: u8) -> Option<(&[u8], &[u8])> {
        let at = self.iter().rposition(|&byte| byte == separator)?;
        Some((&self[..at], &self[at + 1..]))
    }
}
