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
//! file of the venv's `site-packages` was used. Lookups are hash lookups of the
//! path bytes. Nothing runs Python.

use std::{
    borrow::Cow,
    collections::{hash_map::Entry, HashMap, HashSet},
    ffi::OsStr,
    fs,
    hash::{BuildHasherDefault, Hasher},
    io::{self, Read},
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::tracker::path::resolve;

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
    by_identity: HashMap<(u64, u64), usize>,
    /// Folded path → distribution listing it.
    files: PathMap<usize>,
    /// Package directory of an editable install or egg → distribution owning all below it.
    package_roots: PathMap<usize>,
    /// `sys.path` directory of an editable or develop install → distribution owning the code below it.
    path_entries: PathMap<usize>,
    /// Directories looked at by `discover`; so were all their ancestors.
    explored: PathSet,
    /// Site directories and conda prefixes already scanned.
    scanned: HashSet<Vec<u8>>,
    /// Prefixes of Python environments, where editable roots stop claiming.
    environments: HashSet<Vec<u8>>,
    /// `<prefix>/lib/pythonX.Y` → its installation, `None` when not a standard library.
    stdlib_dirs: HashMap<Vec<u8>, Option<usize>>,
    interpreters: Vec<Interpreter>,
    problems: Vec<PythonError>,
    /// Warm-up: scans are kept here, whole, for the index built at the end.
    warming_up: bool,
    /// Scans by directory (site directory, or `conda-meta`): a warm-up's
    /// results, or those handed over by one.
    scans: HashMap<Vec<u8>, Scan>,
}

/// What scanning a site directory or conda prefix found, and the state of the
/// directory it was read from.
#[derive(Debug)]
struct Scan {
    stamp: Option<DirectoryStamp>,
    found: Vec<Found>,
    problems: Vec<PythonError>,
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
    /// scanning is done by the time the command ends.
    pub fn warm_up() -> Self {
        PythonIndex { warming_up: true, ..Self::default() }
    }

    /// A new index that takes `warm`'s scans of directories that have not
    /// changed since (and scans anew the others: a run that installs packages
    /// sees them).
    pub fn reusing(warm: PythonIndex) -> Self {
        PythonIndex { scans: warm.scans, ..Self::default() }
    }

    /// Looks at the directories above `path` (and at `path` itself when it is a
    /// site directory), scanning the site directories and prefixes they reveal.
    /// Cheap after the first path of a directory. Ownership of files outside
    /// any environment (editable projects) depends on their site directory
    /// having been seen, so call this for every used path before asking owners.
    pub fn discover(&mut self, path: &[u8]) {
        if is_site_dir_name(file_name(path)) {
            self.scan_site_dir(path);
        }
        let mut current = parent(path);
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
    }

    /// The distribution owning `path` (absolute, folded), discovering its
    /// directories first.
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

    fn owner_id(&self, path: &[u8]) -> Option<usize> {
        if let Some(&id) = self.files.get(path) {
            return Some(id);
        }
        let source = bytecode_source(path);
        if let Some(&id) = source.as_ref().and_then(|source| self.files.get(source)) {
            return Some(id);
        }
        self.root_owner(source.as_deref().unwrap_or(path))
    }

    /// The editable install whose nearest root holds `path`. A package root
    /// names a directory or, without its suffix, a module (`proj/mod` for
    /// `proj/mod.py`, as setuptools' finder maps them).
    fn root_owner(&self, path: &[u8]) -> Option<usize> {
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
        let mut current = Some(dir);
        while let Some(candidate) = current {
            if is_site_dir_name(file_name(candidate)) || self.environments.contains(candidate) {
                return None;
            }
            let path_entry = if is_code { self.path_entries.get(candidate) } else { None };
            if let Some(&id) = self.package_roots.get(candidate).or(path_entry) {
                return Some(id);
            }
            current = parent(candidate);
        }
        None
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
            self.scan(site.to_vec(), || {
                let mut problems = Vec::new();
                (scan_site_dir(site, &mut problems), problems)
            });
        }
    }

    fn scan_conda_prefix(&mut self, prefix: &[u8]) {
        let conda_meta = join(prefix, b"conda-meta");
        if self.scanned.insert(conda_meta.clone()) {
            self.scan(conda_meta, || {
                let mut problems = Vec::new();
                (scan_conda_prefix(prefix, &mut problems), problems)
            });
        }
    }

    /// Scans `dir` with `read` — or takes a warm-up's scan of it if the
    /// directory has not changed since — and adds what it found (or keeps it,
    /// when warming up).
    fn scan(&mut self, dir: Vec<u8>, read: impl FnOnce() -> (Vec<Found>, Vec<PythonError>)) {
        // Stamped before reading: a change made while we read shows next time.
        let stamp = directory_stamp(&dir);
        let reusable = self.scans.remove(&dir).filter(|scan| scan.stamp.is_some() && scan.stamp == stamp);
        let scan = reusable.unwrap_or_else(|| {
            let (found, problems) = read();
            Scan { stamp, found, problems }
        });
        if self.warming_up {
            self.scans.insert(dir, scan);
        } else {
            self.problems.extend(scan.problems);
            self.add(scan.found);
        }
    }

    fn add(&mut self, all_found: Vec<Found>) {
        self.files.reserve(all_found.iter().map(|found| found.files.len()).sum());
        for found in all_found {
            self.add_one(found);
        }
    }

    fn add_one(&mut self, found: Found) {
        let id = match self.by_identity.entry(found.identity) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(slot) => {
                self.distributions.push(found.distribution);
                self.ranks.push(found.rank);
                *slot.insert(self.distributions.len() - 1)
            }
        };
        for file in found.files {
            claim(&mut self.files, &self.distributions, &self.ranks, file, id);
        }
        for root in found.package_roots {
            claim(&mut self.package_roots, &self.distributions, &self.ranks, root, id);
        }
        for entry in found.path_entries {
            claim(&mut self.path_entries, &self.distributions, &self.ranks, entry, id);
        }
    }
}

/// Identifies the interpreter an exec'd path runs, without running it.
///
/// The name must look like CPython's (`python`, `python3`, `python3.11`,
/// `python3.13t`). A venv is recognised as CPython does it: `pyvenv.cfg` next
/// to the executable or one level up (the path as exec'd, not resolved); its
/// prefix is that directory, its version `version` (or `version_info`, as uv
/// and virtualenv write it), its base prefix the installation found from
/// `home`. Otherwise the executable is resolved (as CPython resolves it) and
/// must be ELF; the prefix is the nearest directory above it holding the
/// landmark `lib/pythonX.Y/os.py`, X.Y taken from the resolved or exec'd name,
/// or from the only `lib/pythonX.Y` there. The patch level comes from
/// `<prefix>/include/pythonX.Y*/patchlevel.h` (`PY_VERSION`), else from the
/// `X.Y.Z` string CPython compiles into the executable or
/// `<prefix>/lib/libpythonX.Y*.so*`.
pub fn interpreter_for_executable(path: &[u8]) -> Option<Interpreter> {
    let name = file_name(path);
    if !is_python_executable_name(name) {
        return None;
    }
    let bin_dir = parent(path)?;
    for venv in [Some(bin_dir), parent(bin_dir)].into_iter().flatten() {
        if let Ok(config) = fs::read(os_path(&join(venv, b"pyvenv.cfg"))) {
            return venv_interpreter(path, venv, &config);
        }
    }
    let real = fs::canonicalize(os_path(path)).ok()?.into_os_string().into_vec();
    if !is_elf(&real) {
        return None;
    }
    let hint = [file_name(&real), name].into_iter().find(|name| major_minor(name).is_some());
    let (prefix, version_dir) = find_installation(parent(&real)?, hint)?;
    let version = patch_version(&prefix, &version_dir, &real)?;
    Some(Interpreter { path: path.to_vec(), version, prefix: prefix.clone(), base_prefix: prefix })
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

fn is_site_dir_name(name: &[u8]) -> bool {
    SITE_DIR_NAMES.contains(&name)
}

/// How much a list naming a file says about who wrote it last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Evidence {
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

/// Gives `key` to `challenger` unless its holder outranks it.
fn claim(owners: &mut PathMap<usize>, distributions: &[Distribution], ranks: &[Rank], key: Vec<u8>, challenger: usize) {
    match owners.entry(key) {
        Entry::Vacant(slot) => {
            slot.insert(challenger);
        }
        Entry::Occupied(mut held) => {
            let holder = *held.get();
            let challenger_wins = ranks[challenger]
                .cmp(&ranks[holder])
                .then_with(|| distributions[holder].cmp(&distributions[challenger]))
                .is_gt();
            if challenger_wins {
                held.insert(challenger);
            }
        }
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

fn scan_site_dir(site: &[u8], problems: &mut Vec<PythonError>) -> Vec<Found> {
    let entries = match fs::read_dir(os_path(site)) {
        Ok(entries) => entries,
        Err(error) => {
            note_unless_absent(problems, site, error);
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    // Develop installs: import root → the normalised name an egg-link expects there.
    let mut develop_roots: Vec<(Vec<u8>, Option<String>)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.as_bytes();
        if ends_with_ignore_case(name, b".dist-info") {
            found.extend(scan_dist_info(site, name, problems));
        } else if ends_with_ignore_case(name, b".egg-info") {
            found.extend(scan_egg_info(site, name, problems));
        } else if let Some(stem) = name.strip_suffix(b".egg-link") {
            let link = join(site, name);
            let Some(text) = read_optional(&link, problems) else { continue };
            let target = text_lines(&text).next().map(<[u8]>::trim_ascii).unwrap_or_default();
            if !target.is_empty() {
                let wanted = normalize_name(&String::from_utf8_lossy(stem));
                develop_roots.push((join(site, target), Some(wanted)));
            }
        } else if name == b"easy-install.pth" {
            let Some(text) = read_optional(&join(site, name), problems) else { continue };
            develop_roots.extend(pth_directories(site, &text).into_iter().map(|root| (root, None)));
        }
    }
    // An egg-link and easy-install.pth usually name the same root: keep the
    // egg-link's, which says which `.egg-info` there is the install.
    develop_roots.sort_by(|(root, wanted), (other_root, other_wanted)| {
        root.cmp(other_root).then(wanted.is_none().cmp(&other_wanted.is_none()))
    });
    develop_roots.dedup_by(|later, earlier| later.0 == earlier.0);
    for (root, wanted) in develop_roots {
        found.extend(scan_develop_root(&root, wanted.as_deref(), problems));
    }
    found
}

/// A `.dist-info` directory: `METADATA`, `INSTALLER`, `direct_url.json`, `RECORD`.
fn scan_dist_info(site: &[u8], dir_name: &[u8], problems: &mut Vec<PythonError>) -> Option<Found> {
    let dir = join(site, dir_name);
    let metadata = fs::metadata(os_path(&dir)).ok().filter(fs::Metadata::is_dir)?;
    let (name, version) = name_and_version(&dir, dir_name, problems);
    let installer = read_optional(&join(&dir, b"INSTALLER"), problems)
        .map(|text| String::from_utf8_lossy(text.trim_ascii()).into_owned())
        .filter(|installer| !installer.is_empty());
    let direct_url = read_direct_url(&dir, problems);
    let editable = direct_url.as_ref().is_some_and(DirectUrl::is_editable);
    let files: Vec<Vec<u8>> = read_optional(&join(&dir, b"RECORD"), problems)
        .map(|record| text_lines(&record).map(|line| join(site, &csv_first_field(line))).collect())
        .unwrap_or_default();
    let (package_roots, path_entries) = match &direct_url {
        Some(direct_url) if editable => editable_roots(site, &files, &direct_url.url, problems),
        _ => (Vec::new(), Vec::new()),
    };
    Some(Found {
        distribution: Distribution { name, version, installer, location: site.to_vec(), editable },
        identity: (metadata.dev(), metadata.ino()),
        rank: Rank { evidence: Evidence::Installed, modified: modified(&metadata) },
        files,
        package_roots,
        path_entries,
    })
}

/// A `.egg-info` directory (files from `installed-files.txt`, relative to it,
/// or `SOURCES.txt`, relative to the site directory) or a distutils
/// `.egg-info` file (metadata only).
fn scan_egg_info(site: &[u8], entry_name: &[u8], problems: &mut Vec<PythonError>) -> Option<Found> {
    let path = join(site, entry_name);
    let metadata = fs::metadata(os_path(&path)).ok()?;
    let (name, version, evidence, files) = if metadata.is_dir() {
        let (name, version) = name_and_version(&path, entry_name, problems);
        let listed = |file_name: &[u8], base: &[u8], problems: &mut Vec<PythonError>| {
            let text = read_optional(&join(&path, file_name), problems)?;
            // importlib quotes each line before parsing it as CSV.
            let files = text_lines(&text).map(|line| join(base, &csv_first_field(&quoted(line)))).collect();
            Some(files)
        };
        match listed(b"installed-files.txt", &path, problems) {
            Some(files) => (name, version, Evidence::Installed, files),
            None => (name, version, Evidence::Sources, listed(b"SOURCES.txt", site, problems).unwrap_or_default()),
        }
    } else {
        let head = read_head(&path, problems).unwrap_or_default();
        let (name, version) = named_or_stem(&head, &path, entry_name, problems);
        (name, version, Evidence::Installed, Vec::new())
    };
    Some(Found {
        distribution: Distribution { name, version, installer: None, location: site.to_vec(), editable: false },
        identity: (metadata.dev(), metadata.ino()),
        rank: Rank { evidence, modified: modified(&metadata) },
        files,
        package_roots: Vec::new(),
        path_entries: Vec::new(),
    })
}

/// A directory a develop install or an egg put on `sys.path`, read as
/// importlib reads it from there: the egg's `EGG-INFO`, owning everything in
/// the egg, or the `.egg-info` directories in it (only the one named `wanted`,
/// normalised, for an egg-link), owning the code under it. Their file lists
/// are located from this directory.
fn scan_develop_root(root: &[u8], wanted: Option<&str>, problems: &mut Vec<PythonError>) -> Vec<Found> {
    if ends_with_ignore_case(root, b".egg") {
        let egg = scan_egg_info(root, b"EGG-INFO", problems);
        return egg.into_iter().map(|egg| Found { package_roots: vec![root.to_vec()], ..egg }).collect();
    }
    let Ok(entries) = fs::read_dir(os_path(root)) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().into_vec();
        let Some(stem) = strip_suffix_ignore_case(&name, b".egg-info") else { continue };
        let stem_name = normalize_name(&String::from_utf8_lossy(egg_info_name(stem)));
        if wanted.is_some_and(|wanted| wanted != stem_name) {
            continue;
        }
        found.extend(scan_egg_info(root, &name, problems).map(|develop| Found {
            distribution: Distribution { editable: true, ..develop.distribution },
            path_entries: vec![root.to_vec()],
            ..develop
        }));
    }
    found
}

/// The fields of `direct_url.json` (PEP 610) that matter here.
#[derive(Deserialize)]
struct DirectUrl {
    url: String,
    #[serde(default)]
    dir_info: Option<DirInfo>,
}

#[derive(Deserialize)]
struct DirInfo {
    #[serde(default)]
    editable: bool,
}

impl DirectUrl {
    fn is_editable(&self) -> bool {
        self.dir_info.as_ref().is_some_and(|dir_info| dir_info.editable)
    }
}

fn read_direct_url(dist_info: &[u8], problems: &mut Vec<PythonError>) -> Option<DirectUrl> {
    let path = join(dist_info, b"direct_url.json");
    let text = read_optional(&path, problems)?;
    serde_json::from_slice(&text)
        .map_err(|source| problems.push(PythonError::Json { path: os_path(&path).to_path_buf(), source }))
        .ok()
}

/// Where a PEP 660 install imports from, as (package roots, `sys.path`
/// entries): the values of a setuptools finder's `MAPPING` and the path lines
/// of the `.pth` files of the site directory its `RECORD` lists, or else the
/// project directory `url` names.
fn editable_roots(
    site: &[u8],
    files: &[Vec<u8>],
    url: &str,
    problems: &mut Vec<PythonError>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut package_roots, mut path_entries) = (Vec::new(), Vec::new());
    for file in files.iter().filter(|file| parent(file) == Some(site)) {
        let name = file_name(file);
        if name.ends_with(b".pth") {
            if let Some(text) = read_optional(file, problems) {
                path_entries.extend(pth_directories(site, &text));
            }
        } else if name.starts_with(b"__editable__") && name.ends_with(b"_finder.py") {
            if let Some(text) = read_optional(file, problems) {
                package_roots.extend(finder_mapping(&text).into_iter().map(|root| join(site, &root)));
            }
        }
    }
    if package_roots.is_empty() && path_entries.is_empty() {
        path_entries.extend(file_url_path(url));
    }
    (package_roots, path_entries)
}

/// The directories a `.pth` file adds to `sys.path` (`site.addpackage`):
/// every line but comments, blank lines and `import` lines, joined to the site
/// directory.
fn pth_directories(site: &[u8], text: &[u8]) -> Vec<Vec<u8>> {
    text_lines(text)
        .filter(|line| {
            !line.starts_with(b"#")
                && !line.trim_ascii().is_empty()
                && !line.starts_with(b"import ")
                && !line.starts_with(b"import\t")
        })
        .map(|line| join(site, line.trim_ascii_end()))
        .collect()
}

/// The values of `MAPPING = {'pkg': '/project/pkg', …}` in a setuptools
/// editable finder (a Python dict literal of strings on one line).
fn finder_mapping(source: &[u8]) -> Vec<Vec<u8>> {
    let Some(line) = text_lines(source).find(|line| line.starts_with(b"MAPPING")) else { return Vec::new() };
    let Some(equals) = line.iter().position(|&byte| byte == b'=') else { return Vec::new() };
    let mut literal = PythonLiteral { text: &line[equals + 1..], position: 0 };
    let mut values = Vec::new();
    if !literal.eat(b'{') || literal.eat(b'}') {
        return values;
    }
    loop {
        let (Some(_key), true, Some(value)) = (literal.string(), literal.eat(b':'), literal.string()) else {
            return Vec::new();
        };
        values.push(value);
        if literal.eat(b'}') {
            return values;
        }
        if !literal.eat(b',') {
            return Vec::new();
        }
        if literal.eat(b'}') {
            return values;
        }
    }
}

/// A cursor over Python literal text, enough for `repr()` of a dict of strings.
struct PythonLiteral<'a> {
    text: &'a [u8],
    position: usize,
}

impl PythonLiteral<'_> {
    fn skip_space(&mut self) {
        while self.text.get(self.position).is_some_and(u8::is_ascii_whitespace) {
            self.position += 1;
        }
    }

    fn eat(&mut self, expected: u8) -> bool {
        self.skip_space();
        let found = self.text.get(self.position) == Some(&expected);
        if found {
            self.position += 1;
        }
        found
    }

    /// A quoted string, as the file-system bytes it stands for (lone
    /// surrogates U+DC80..U+DCFF are the undecodable bytes of
    /// `surrogateescape`).
    fn string(&mut self) -> Option<Vec<u8>> {
        self.skip_space();
        let quote = *self.text.get(self.position).filter(|&&quote| quote == b'\'' || quote == b'"')?;
        self.position += 1;
        let mut bytes = Vec::new();
        loop {
            let byte = *self.text.get(self.position)?;
            self.position += 1;
            match byte {
                _ if byte == quote => return Some(bytes),
                b'\\' => {
                    let escape = *self.text.get(self.position)?;
                    self.position += 1;
                    match escape {
                        b'n' => bytes.push(b'\n'),
                        b't' => bytes.push(b'\t'),
                        b'r' => bytes.push(b'\r'),
                        b'x' => self.code_point(2, &mut bytes)?,
                        b'u' => self.code_point(4, &mut bytes)?,
                        b'U' => self.code_point(8, &mut bytes)?,
                        other => bytes.push(other),
                    }
                }
                other => bytes.push(other),
            }
        }
    }

    fn code_point(&mut self, digits: usize, bytes: &mut Vec<u8>) -> Option<()> {
        let hex = std::str::from_utf8(self.text.get(self.position..self.position + digits)?).ok()?;
        self.position += digits;
        let value = u32::from_str_radix(hex, 16).ok()?;
        match value {
            0xDC80..=0xDCFF => bytes.push((value - 0xDC00) as u8),
            _ => bytes.extend_from_slice(char::from_u32(value)?.encode_utf8(&mut [0; 4]).as_bytes()),
        }
        Some(())
    }
}

/// The local path of a `file:` URL (percent-decoded, host ignored).
fn file_url_path(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("file://")?;
    let path = &rest[rest.find('/')?..];
    let mut bytes = Vec::with_capacity(path.len());
    let mut input = path.as_bytes().iter();
    while let Some(&byte) = input.next() {
        let escaped = (byte == b'%')
            .then(|| input.as_slice().get(..2))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                input.nth(1);
            }
            None => bytes.push(byte),
        }
    }
    Some(resolve(b"/", &bytes))
}

#[derive(Deserialize)]
struct CondaRecord {
    name: String,
    version: String,
    #[serde(default)]
    files: Vec<String>,
}

/// The packages of a conda prefix: `conda-meta/*.json`, files relative to the prefix.
fn scan_conda_prefix(prefix: &[u8], problems: &mut Vec<PythonError>) -> Vec<Found> {
    let conda_meta = join(prefix, b"conda-meta");
    let Ok(entries) = fs::read_dir(os_path(&conda_meta)) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().ends_with(b".json") {
            continue;
        }
        let path = join(&conda_meta, entry.file_name().as_bytes());
        let Ok(metadata) = entry.metadata() else { continue };
        let Some(text) = read_optional(&path, problems) else { continue };
        let record: CondaRecord = match serde_json::from_slice(&text) {
            Ok(record) => record,
            Err(source) => {
                problems.push(PythonError::Json { path: os_path(&path).to_path_buf(), source });
                continue;
            }
        };
        found.push(Found {
            distribution: Distribution {
                name: record.name,
                version: record.version,
                installer: Some("conda".to_owned()),
                location: prefix.to_vec(),
                editable: false,
            },
            identity: (metadata.dev(), metadata.ino()),
            rank: Rank { evidence: Evidence::Conda, modified: modified(&metadata) },
            files: record.files.iter().map(|file| join(prefix, file.as_bytes())).collect(),
            package_roots: Vec::new(),
            path_entries: Vec::new(),
        });
    }
    found
}

/// Name and version from the metadata of a `.dist-info` or `.egg-info`
/// directory: `METADATA`, else `PKG-INFO` (the first that is not empty, as importlib reads them).
fn name_and_version(dir: &[u8], dir_name: &[u8], problems: &mut Vec<PythonError>) -> (String, String) {
    let head = [b"METADATA".as_slice(), b"PKG-INFO"]
        .into_iter()
        .find_map(|file| read_head(&join(dir, file), problems).filter(|head| !head.is_empty()))
        .unwrap_or_default();
    named_or_stem(&head, dir, dir_name, problems)
}

/// `Name:` and `Version:` of metadata headers; the `name-version` stem of the
/// metadata directory stands in for a missing one (a reported problem).
fn named_or_stem(head: &[u8], path: &[u8], dir_name: &[u8], problems: &mut Vec<PythonError>) -> (String, String) {
    let (name, version) = (header(head, b"Name"), header(head, b"Version"));
    if name.is_none() || version.is_none() {
        problems.push(PythonError::Metadata { path: os_path(path).to_path_buf() });
    }
    let stem = dir_name.rsplit_once_byte(b'.').map_or(dir_name, |(stem, _suffix)| stem);
    let (stem_name, stem_version) = stem.split_once_byte(b'-').unwrap_or((stem, b""));
    (
        name.unwrap_or_else(|| String::from_utf8_lossy(stem_name).into_owned()),
        version.unwrap_or_else(|| String::from_utf8_lossy(stem_version).into_owned()),
    )
}

/// The name part of an `.egg-info` stem (`My_Proj-1.0` → `My_Proj`).
fn egg_info_name(stem: &[u8]) -> &[u8] {
    stem.split_once_byte(b'-').map_or(stem, |(name, _version)| name)
}

/// The first value of header `key` (case-insensitive) in RFC 822 headers, as
/// Python's `email` parser gives it: leading blanks and the line end removed,
/// continuation lines kept. The headers end at the first line that is neither
/// `name:` (printable ASCII name) nor a continuation.
fn header(head: &[u8], key: &[u8]) -> Option<String> {
    let is_continuation = |line: &[u8]| line.starts_with(b" ") || line.starts_with(b"\t");
    let mut lines = head.split(|&byte| byte == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    while let Some(line) = lines.next() {
        let field =
            line.split_once_byte(b':').filter(|(name, _value)| name.iter().all(|byte| (0x21..=0x7e).contains(byte)));
        let Some((name, value)) = field else {
            if is_continuation(line) {
                continue;
            }
            return None;
        };
        if !name.eq_ignore_ascii_case(key) {
            continue;
        }
        let mut value = String::from_utf8_lossy(value.trim_ascii_start()).into_owned();
        for continuation in lines.take_while(|line| is_continuation(line)) {
            value.push('\n');
            value.push_str(&String::from_utf8_lossy(continuation));
        }
        return Some(value);
    }
    None
}

/// The header block of a metadata file (up to its first blank line): the
/// long description after it can be large and is not needed.
fn read_head(path: &[u8], problems: &mut Vec<PythonError>) -> Option<Vec<u8>> {
    let mut file = match fs::File::open(os_path(path)) {
        Ok(file) => file,
        Err(error) => {
            note_unless_absent(problems, path, error);
            return None;
        }
    };
    let mut head = Vec::new();
    let mut chunk = [0; 8192];
    loop {
        let read = match file.read(&mut chunk) {
            Ok(0) => return Some(head),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                note_unless_absent(problems, path, error);
                return None;
            }
        };
        let searched_from = head.len().saturating_sub(2);
        head.extend_from_slice(&chunk[..read]);
        let tail = &head[searched_from..];
        if tail.windows(2).any(|pair| pair == b"\n\n") || tail.windows(3).any(|triple| triple == b"\n\r\n") {
            return Some(head);
        }
    }
}

/// A whole file, `None` when it (or its directory) does not exist; other
/// failures are recorded.
fn read_optional(path: &[u8], problems: &mut Vec<PythonError>) -> Option<Vec<u8>> {
    fs::read(os_path(path)).map_err(|error| note_unless_absent(problems, path, error)).ok()
}

fn note_unless_absent(problems: &mut Vec<PythonError>, path: &[u8], error: io::Error) {
    if !matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) {
        problems.push(PythonError::Read { path: os_path(path).to_path_buf(), source: error });
    }
}

/// Lines as Python's `str.splitlines()` cuts UTF-8 text (importlib splits
/// `RECORD` so): at `\n`, `\r`, `\r\n`, `\v`, `\f`, `\x1c`-`\x1e`, U+0085,
/// U+2028 and U+2029.
fn text_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut searched = 0;
        loop {
            let Some(found) = rest[searched..]
                .iter()
                .position(|&byte| matches!(byte, b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1e | 0xc2 | 0xe2))
            else {
                let line = rest;
                rest = &[];
                return Some(line);
            };
            let at = searched + found;
            let break_length = match rest[at..] {
                [b'\r', b'\n', ..] | [0xc2, 0x85, ..] => 2,
                [0xe2, 0x80, 0xa8 | 0xa9, ..] => 3,
                [0xc2 | 0xe2, ..] => 0,
                _ => 1,
            };
            if break_length > 0 {
                let line = &rest[..at];
                rest = &rest[at + break_length..];
                return Some(line);
            }
            searched = at + 1;
        }
    })
}

/// The first field of a CSV line as Python's `csv.reader` reads it (excel
/// dialect, not strict): a quoted field folds `""` to `"` and keeps what
/// follows its closing quote up to the comma.
fn csv_first_field(line: &[u8]) -> Cow<'_, [u8]> {
    let Some(quoted) = line.strip_prefix(b"\"") else {
        let end = line.iter().position(|&byte| byte == b',').unwrap_or(line.len());
        return Cow::Borrowed(&line[..end]);
    };
    let mut field = Vec::with_capacity(quoted.len());
    let mut bytes = quoted.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'"' {
            field.push(byte);
        } else if bytes.next_if_eq(&b'"').is_some() {
            field.push(b'"');
        } else {
            field.extend(bytes.by_ref().take_while(|&byte| byte != b','));
            break;
        }
    }
    Cow::Owned(field)
}

fn quoted(line: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(line.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(line);
    quoted.push(b'"');
    quoted
}

/// `dir/__pycache__/mod.<tag>[.opt-N].pyc` → `dir/mod.py`, as
/// `importlib.util.source_from_cache` maps it.
fn bytecode_source(path: &[u8]) -> Option<Vec<u8>> {
    let cache_dir = parent(path)?;
    if file_name(cache_dir) != b"__pycache__" {
        return None;
    }
    let parts: Vec<&[u8]> = file_name(path).split(|&byte| byte == b'.').collect();
    let module = match parts.as_slice() {
        [module, _tag, b"pyc"] => module,
        [module, _tag, optimization, b"pyc"] => {
            let level = optimization.strip_prefix(b"opt-")?;
            if level.is_empty() || !level.iter().all(u8::is_ascii_alphanumeric) {
                return None;
            }
            module
        }
        _ => return None,
    };
    let mut source = module.to_vec();
    source.extend_from_slice(b".py");
    Some(join(parent(cache_dir)?, &source))
}

/// Splits a standard-library path into (prefix, `<prefix>/lib/pythonX.Y`,
/// `pythonX.Y`); `None` inside its site directories.
fn stdlib_location(path: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut search_from = 0;
    while let Some(found) = find(&path[search_from..], b"/lib") {
        let lib_start = search_from + found;
        search_from = lib_start + 1;
        let after_lib = &path[lib_start + 4..];
        let after_lib = after_lib.strip_prefix(b"64").unwrap_or(after_lib);
        let Some((version_dir, inside)) = after_lib.strip_prefix(b"/").and_then(|rest| rest.split_once_byte(b'/'))
        else {
            continue;
        };
        if major_minor(version_dir).is_none() {
            continue;
        }
        let first_inside = inside.split_once_byte(b'/').map_or(inside, |(first, _rest)| first);
        if first_inside.is_empty() || is_site_dir_name(first_inside) {
            return None;
        }
        let stdlib_dir = &path[..path.len() - inside.len() - 1];
        let prefix = if lib_start == 0 { b"/".as_slice() } else { &path[..lib_start] };
        return Some((prefix, stdlib_dir, version_dir));
    }
    None
}

/// `X.Y` of a name like `python3.11`, `python3.13t` (a standard library
/// directory or an executable).
fn major_minor(name: &[u8]) -> Option<&str> {
    let text = name.strip_prefix(b"python")?;
    let digits = |from: usize| text[from..].iter().take_while(|byte| byte.is_ascii_digit()).count();
    let major = digits(0);
    if major == 0 || text.get(major) != Some(&b'.') {
        return None;
    }
    let minor = digits(major + 1);
    let end = major + 1 + minor;
    if minor == 0 || !text[end..].iter().all(u8::is_ascii_lowercase) {
        return None;
    }
    std::str::from_utf8(&text[..end]).ok()
}

/// `python`, `python3`, `python3.11`, `python3.13t`, not `python3-config`.
fn is_python_executable_name(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"python") else { return false };
    let digits_and_dots = rest.iter().take_while(|byte| byte.is_ascii_digit() || **byte == b'.').count();
    let abi_flags = &rest[digits_and_dots..];
    abi_flags.len() <= 1 && abi_flags.iter().all(u8::is_ascii_lowercase)
}

/// The installation of the standard library at `stdlib_dir`.
fn installation(prefix: &[u8], stdlib_dir: &[u8], version_dir: &[u8]) -> Option<Interpreter> {
    if !has_landmark(stdlib_dir) {
        return None;
    }
    let executable = join(&join(prefix, b"bin"), version_dir);
    if !fs::metadata(os_path(&executable)).is_ok_and(|metadata| metadata.is_file()) {
        return None;
    }
    let version = patch_version(prefix, version_dir, &executable)?;
    Some(Interpreter { path: executable, version, prefix: prefix.to_vec(), base_prefix: prefix.to_vec() })
}

/// CPython's landmark for a standard library directory.
fn has_landmark(stdlib_dir: &[u8]) -> bool {
    [b"os.py".as_slice(), b"os.pyc"].iter().any(|landmark| fs::metadata(os_path(&join(stdlib_dir, landmark))).is_ok())
}

/// The nearest directory at or above `start` with a standard library
/// (`lib/pythonX.Y/os.py`, or `lib64/`), as CPython searches for its prefix,
/// and that library's directory name. With a `hint` (`python3.11`), the
/// library named so, else the only one of that X.Y; without, the only one.
fn find_installation(start: &[u8], hint: Option<&[u8]>) -> Option<(Vec<u8>, Vec<u8>)> {
    let hinted_major_minor = hint.and_then(major_minor);
    let mut current = Some(start);
    while let Some(dir) = current {
        for lib in [b"lib".as_slice(), b"lib64"] {
            let lib_dir = join(dir, lib);
            let libraries: Vec<Vec<u8>> = fs::read_dir(os_path(&lib_dir))
                .map(|entries| entries.flatten().map(|entry| entry.file_name().into_vec()).collect())
                .unwrap_or_default();
            let mut candidates: Vec<Vec<u8>> = libraries
                .into_iter()
                .filter(|name| {
                    major_minor(name).is_some_and(|found| hinted_major_minor.is_none_or(|hinted| hinted == found))
                })
                .filter(|name| has_landmark(&join(&lib_dir, name)))
                .collect();
            if let Some(exact) = hint.and_then(|hint| candidates.iter().position(|name| name == hint)) {
                candidates.swap(0, exact);
                candidates.truncate(1);
            }
            if let [version_dir] = candidates.as_slice() {
                return Some((dir.to_vec(), version_dir.clone()));
            }
        }
        current = parent(dir);
    }
    None
}

/// A venv's interpreter from its `pyvenv.cfg`.
fn venv_interpreter(path: &[u8], venv: &[u8], config: &[u8]) -> Option<Interpreter> {
    let value = |key: &[u8]| {
        text_lines(config).find_map(|line| {
            let (name, value) = line.split_once_byte(b'=')?;
            (name.trim_ascii() == key).then(|| String::from_utf8_lossy(value.trim_ascii()).into_owned())
        })
    };
    // `version_info` is `3.11.7` (uv) or `3.11.7.final.0` (virtualenv).
    let stated = value(b"version").or_else(|| value(b"version_info"));
    let stated = stated.map(|version| version.split('.').take(3).collect::<Vec<_>>().join("."));
    let hint = stated.as_deref().and_then(|version| {
        let (major, rest) = version.split_once('.')?;
        let minor = rest.split('.').next()?;
        Some(format!("python{major}.{minor}"))
    });
    let home = resolve(b"/", value(b"home")?.as_bytes());
    let (base_prefix, version_dir) = find_installation(&home, hint.as_deref().map(str::as_bytes))?;
    let version = match stated {
        Some(version) => version,
        None => patch_version(&base_prefix, &version_dir, &join(&home, &version_dir))?,
    };
    Some(Interpreter { path: path.to_vec(), version, prefix: venv.to_vec(), base_prefix })
}

/// `X.Y.Z` of the installation whose standard library is `version_dir`
/// (`python3.11`): `include/pythonX.Y*/patchlevel.h`, else the version string
/// in the executable or in `lib/libpythonX.Y*.so*`, else `X.Y`.
fn patch_version(prefix: &[u8], version_dir: &[u8], executable: &[u8]) -> Option<String> {
    let major_minor = major_minor(version_dir)?;
    let include = join(prefix, b"include");
    let headers = entries_starting_with(&include, version_dir)
        .into_iter()
        .map(|dir| join(&join(&include, &dir), b"patchlevel.h"));
    let library_dir = join(prefix, b"lib");
    let libraries = entries_starting_with(&library_dir, &[b"lib".as_slice(), version_dir].concat())
        .into_iter()
        .filter(|name| find(name, b".so").is_some())
        .map(|name| join(&library_dir, &name));
    headers
        .filter_map(|header| fs::read(os_path(&header)).ok())
        .find_map(|text| version_from_patchlevel(&text))
        .or_else(|| {
            std::iter::once(executable.to_vec())
                .chain(libraries)
                .filter_map(|binary| fs::read(os_path(&binary)).ok())
                .find_map(|binary| version_in_binary(&binary, major_minor))
        })
        .or_else(|| Some(major_minor.to_owned()))
}

fn entries_starting_with(dir: &[u8], prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = fs::read_dir(os_path(dir))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().into_vec())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `#define PY_VERSION "3.11.7"`.
fn version_from_patchlevel(text: &[u8]) -> Option<String> {
    text.split(|&byte| byte == b'\n').find_map(|line| {
        let rest = line.trim_ascii().strip_prefix(b"#define")?.trim_ascii_start().strip_prefix(b"PY_VERSION")?;
        let quoted = rest.trim_ascii().strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        Some(String::from_utf8_lossy(quoted).into_owned())
    })
}

/// CPython keeps `PY_VERSION` as its own NUL-terminated string (`"3.11.2"`).
fn version_in_binary(binary: &[u8], major_minor: &str) -> Option<String> {
    let wanted = format!("{major_minor}.");
    binary.split(|&byte| byte == 0).find_map(|text| {
        let patch = text.strip_prefix(wanted.as_bytes())?;
        let digits = patch.iter().take_while(|byte| byte.is_ascii_digit()).count();
        let release = &patch[digits..];
        let plausible = digits > 0
            && release.len() <= 4
            && release.iter().all(|byte| byte.is_ascii_alphanumeric() || *byte == b'+');
        plausible.then(|| String::from_utf8_lossy(text).into_owned())
    })
}

fn is_elf(path: &[u8]) -> bool {
    let mut magic = [0; 4];
    fs::File::open(os_path(path)).and_then(|mut file| file.read_exact(&mut magic)).is_ok() && &magic == b"\x7fELF"
}

/// `relative` joined to the folded directory `base` and folded, without the
/// general folding when there is nothing to fold (most `RECORD` entries).
fn join(base: &[u8], relative: &[u8]) -> Vec<u8> {
    let plain = !relative.starts_with(b"/")
        && relative.split(|&byte| byte == b'/').all(|component| !matches!(component, b"" | b"." | b".."));
    if !plain {
        return resolve(base, relative);
    }
    let mut joined = Vec::with_capacity(base.len() + 1 + relative.len());
    joined.extend_from_slice(base);
    if base != b"/" {
        joined.push(b'/');
    }
    joined.extend_from_slice(relative);
    joined
}

/// Path-keyed tables hash with FxHash (rustc's): tens of thousands of keys
/// per environment, where SipHash was a fifth of the indexing time. The keys
/// are local file names; flooding them only slows one's own audit.
type PathMap<V> = HashMap<Vec<u8>, V, BuildHasherDefault<PathHasher>>;
type PathSet = HashSet<Vec<u8>, BuildHasherDefault<PathHasher>>;

#[derive(Default)]
struct PathHasher(u64);

impl PathHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        let mut last = [0; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(last));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
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

/// The directory above an absolute, folded path; `None` for `/`.
fn parent(path: &[u8]) -> Option<&[u8]> {
    match path.iter().rposition(|&byte| byte == b'/')? {
        0 if path.len() > 1 => Some(b"/"),
        0 => None,
        slash => Some(&path[..slash]),
    }
}

fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&byte| byte == b'/').next().unwrap_or(path)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
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

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        path::PathBuf,
        process::Command,
        time::{Duration, SystemTime},
    };

    use super::*;

    fn write(path: &Path, contents: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().expect("parent")).expect("create directories");
        fs::write(path, contents).expect("write");
    }

    fn bytes(path: &Path) -> Vec<u8> {
        path.as_os_str().as_bytes().to_vec()
    }

    /// A `.dist-info` with METADATA (whose body repeats `Name:`, which must not count) and RECORD.
    fn dist_info(site: &Path, dir_name: &str, name: &str, version: &str, record: &str) -> PathBuf {
        let dir = site.join(dir_name);
        write(
            &dir.join("METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: body\n"),
        );
        write(&dir.join("RECORD"), record);
        dir
    }

    fn owner_of(index: &mut PythonIndex, path: &Path) -> Option<(String, String)> {
        index.owner(&bytes(path)).map(|dist| (dist.name.clone(), dist.version.clone()))
    }

    fn named(name: &str, version: &str) -> Option<(String, String)> {
        Some((name.to_owned(), version.to_owned()))
    }

    #[test]
    fn record_entries_are_unquoted_and_folded() {
        let temp = tempfile::tempdir().expect("tempdir");
        let prefix = temp.path().join("env");
        let site = prefix.join("lib/python3.11/site-packages");
        let record = [
            "demo/__init__.py,sha256=abc,10",
            "\"demo/odd,name.py\",sha256=abc,10",
            "\"demo/say \"\"hi\"\".py\",,",
            "demo/mod.py,,",
            "demo//./sub/../plain.py,,",
            "../../../bin/demo,,",
            "demo-1.0.dist-info/RECORD,,",
        ]
        .join("\r\n");
        let dir = dist_info(&site, "demo-1.0.dist-info", "Demo", "1.0", &record);
        write(&dir.join("INSTALLER"), "uv\n");
        let mut index = PythonIndex::new();
        // A script outside the site directory: found through its prefix.
        let script = index.owner(&bytes(&prefix.join("bin/demo"))).expect("script owner").clone();
        assert_eq!(
            script,
            Distribution {
                name: "Demo".into(),
                version: "1.0".into(),
                installer: Some("uv".into()),
                location: bytes(&site),
                editable: false,
            }
        );
        for listed in ["demo/__init__.py", "demo/odd,name.py", "demo/say \"hi\".py", "demo/plain.py"] {
            assert_eq!(owner_of(&mut index, &site.join(listed)), named("Demo", "1.0"), "{listed}");
        }
        assert_eq!(owner_of(&mut index, &site.join("demo-1.0.dist-info/RECORD")), named("Demo", "1.0"));
        // Bytecode no list names belongs to the owner of its source.
        for cached in ["mod.cpython-311.pyc", "mod.cpython-311.opt-1.pyc", "mod.pypy39.opt-2.pyc"] {
            assert_eq!(owner_of(&mut index, &site.join("demo/__pycache__").join(cached)), named("Demo", "1.0"));
        }
        for unowned in [
            "demo/__pycache__/mod.cpython-311.opt-.pyc",
            "demo/__pycache__/mod.cpython-311.opt-!.pyc",
            "demo/__pycache__/x.mod.cpython-311.pyc",
            "demo/untracked.py",
            "demo",
        ] {
            assert_eq!(owner_of(&mut index, &site.join(unowned)), None, "{unowned}");
        }
        assert!(index.problems().is_empty(), "{:?}", index.problems());
    }

    #[test]
    fn egg_info_lists_and_evidence() {
        let temp = tempfile::tempdir().expect("tempdir");
        let prefix = temp.path();
        let site = prefix.join("lib/python3.11/site-packages");
        let old = site.join("old-2.0.egg-info");
        write(&old.join("PKG-INFO"), "Metadata-Version: 1.1\nName: old\nVersion: 2.0\n");
        write(
            &old.join("installed-files.txt"),
            "../old/__init__.py\n../old/__pycache__/__init__.cpython-311.pyc\n../../../../bin/old\n",
        );
        write(&old.join("SOURCES.txt"), "setup.py\nold/ignored.py\n");
        let sources = site.join("Src_Only-3.0-py3.11.egg-info");
        write(&sources.join("PKG-INFO"), "Name: src-only\nVersion: 3.0\n");
        write(&sources.join("SOURCES.txt"), "src_only/__init__.py\nshared.py\nsetup.py\n");
        let wheel = dist_info(&site, "wheel_dist-1.0.dist-info", "wheel-dist", "1.0", "shared.py,,\n");
        // Older than the egg-info: the kind of list decides, not the time.
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::File::open(wheel).expect("open").set_modified(an_hour_ago).expect("set mtime");
        write(
            &site.join("distutils_thing-0.5-py3.11.egg-info"),
            "Metadata-Version: 1.0\nName: distutils-thing\nVersion: 0.5\n",
        );
        let mut index = PythonIndex::new();
        assert_eq!(owner_of(&mut index, &prefix.join("bin/old")), named("old", "2.0"));
        assert_eq!(owner_of(&mut index, &site.join("old/__init__.py")), named("old", "2.0"));
        assert_eq!(owner_of(&mut index, &site.join("old/ignored.py")), None, "installed-files.txt comes first");
        assert_eq!(owner_of(&mut index, &site.join("src_only/__init__.py")), named("src-only", "3.0"));
        assert_eq!(
            owner_of(&mut index, &site.join("shared.py")),
            named("wheel-dist", "1.0"),
            "RECORD beats SOURCES.txt"
        );
        assert!(index.problems().is_empty(), "{:?}", index.problems());
    }

    #[test]
    fn the_last_writer_of_a_shared_file_owns_it() {
        let temp = tempfile::tempdir().expect("tempdir");
        let site = temp.path().join("site-packages");
        let older = dist_info(&site, "older-1.0.dist-info", "older", "1.0", "shared/x.py,,\n");
        let newer = dist_info(&site, "newer-1.0.dist-info", "newer", "1.0", "shared/x.py,,\n");
        let now = SystemTime::now();
        for (dir, age) in [(older, 60), (newer, 0)] {
            let dir = fs::File::open(dir).expect("open");
            dir.set_modified(now - Duration::from_secs(age)).expect("set mtime");
        }
        let mut index = PythonIndex::new();
        assert_eq!(owner_of(&mut index, &site.join("shared/x.py")), named("newer", "1.0"));
    }

    #[test]
    fn a_warm_up_scan_is_reused_until_its_directory_changes() {
        let temp = tempfile::tempdir().expect("tempdir");
        let site = temp.path().join("site-packages");
        dist_info(&site, "first-1.0.dist-info", "first", "1.0", "first/__init__.py,,\n");
        let mut warm = PythonIndex::warm_up();
        warm.discover(&bytes(&site.join("first/__init__.py")));
        // The final index takes what the warm-up read (a list rewritten in
        // place, which no installer does, is not read again)…
        let record = site.join("first-1.0.dist-info/RECORD");
        let stamp = fs::metadata(&record).and_then(|meta| meta.modified()).expect("mtime");
        fs::write(&record, "elsewhere.py,,\n").expect("rewrite");
        fs::File::options().write(true).open(&record).and_then(|file| file.set_modified(stamp)).expect("mtime");
        let mut index = PythonIndex::reusing(warm);
        assert_eq!(owner_of(&mut index, &site.join("first/__init__.py")), named("first", "1.0"));
        assert_eq!(owner_of(&mut index, &site.join("elsewhere.py")), None);
        fs::write(&record, "first/__init__.py,,\n").expect("restore");

        // …unless the run installed something after the warm-up looked.
        let mut warm = PythonIndex::warm_up();
        warm.discover(&bytes(&site.join("first/__init__.py")));
        dist_info(&site, "second-2.0.dist-info", "second", "2.0", "second.py,,\n");
        let mut index = PythonIndex::reusing(warm);
        assert_eq!(owner_of(&mut index, &site.join("second.py")), named("second", "2.0"));
        assert_eq!(owner_of(&mut index, &site.join("first/__init__.py")), named("first", "1.0"));
    }

    #[test]
    fn namespace_packages_are_owned_per_file() {
        let temp = tempfile::tempdir().expect("tempdir");
        let site = temp.path().join("dist-packages");
        dist_info(&site, "ns_a-1.0.dist-info", "ns.a", "1.0", "ns/a/__init__.py,,\n");
        dist_info(&site, "NS.B-2.0.dist-info", "NS.B", "2.0", "ns/b/__init__.py,,\n");
        let mut index = PythonIndex::new();
        assert_eq!(owner_of(&mut index, &site.join("ns/a/__init__.py")), named("ns.a", "1.0"));
        assert_eq!(owner_of(&mut index, &site.join("ns/b/__init__.py")), named("NS.B", "2.0"));
        assert_eq!(owner_of(&mut index, &site.join("ns")), None);
        assert_eq!(owner_of(&mut index, &site.join("ns/c.py")), None);
    }

    #[test]
    fn names_normalise_as_pep_503_says() {
        assert_eq!(normalize_name("Foo__Bar.-baz"), "foo-bar-baz");
        assert_eq!(normalize_name("lazr.restfulclient"), "lazr-restfulclient");
        assert_eq!(normalize_name("PyYAML"), "pyyaml");
    }

    #[test]
    fn conda_packages_own_their_files_and_dist_info_wins_inside_site_packages() {
        let temp = tempfile::tempdir().expect("tempdir");
        let prefix = temp.path().join("conda env");
        let site = prefix.join("lib/python3.11/site-packages");
        write(
            &prefix.join("conda-meta/zlib-1.3-h0.json"),
            r#"{"name": "zlib", "version": "1.3", "build": "h0", "files": ["lib/libz.so.1", "include/zlib.h"]}"#,
        );
        write(
            &prefix.join("conda-meta/numpy-1.26.4-py311.json"),
            r#"{"name": "numpy", "version": "1.26.4", "files": ["lib/python3.11/site-packages/numpy/__init__.py", "bin/f2py"]}"#,
        );
        write(&prefix.join("conda-meta/history"), "not json");
        let numpy = dist_info(&site, "numpy-1.26.4.dist-info", "numpy", "1.26.4", "numpy/__init__.py,,\n");
        write(&numpy.join("INSTALLER"), "conda");
        let mut index = PythonIndex::new();
        let zlib = index.owner(&bytes(&prefix.join("lib/libz.so.1"))).expect("zlib").clone();
        assert_eq!(
            zlib,
            Distribution {
                name: "zlib".into(),
                version: "1.3".into(),
                installer: Some("conda".into()),
                location: bytes(&prefix),
                editable: false,
            }
        );
        let numpy_init = index.owner(&bytes(&site.join("numpy/__init__.py"))).expect("numpy").clone();
        assert_eq!(numpy_init.location, bytes(&site), "the dist-info, not the conda record");
        assert_eq!(numpy_init.installer.as_deref(), Some("conda"));
        assert_eq!(
            index.owner(&bytes(&prefix.join("bin/f2py"))).map(|dist| dist.location.clone()),
            Some(bytes(&prefix))
        );
        assert!(index.problems().is_empty(), "{:?}", index.problems());
    }

    #[test]
    fn editable_installs_own_their_import_roots() {
        let temp = tempfile::tempdir().expect("tempdir");
        let base = temp.path();
        // The venv lives inside the flat project, whose url is the only root it gives.
        let flat = base.join("flat");
        let venv = flat.join(".venv");
        write(&venv.join("pyvenv.cfg"), "home = /usr/bin\n");
        let site = venv.join("lib/python3.11/site-packages");
        // A src layout: `.pth` path line, project directory with a space.
        let src_project = base.join("my proj");
        let src = dist_info(&site, "src_proj-0.1.dist-info", "src-proj", "0.1", "__editable__.src_proj-0.1.pth,,\n");
        write(
            &src.join("direct_url.json"),
            r#"{"dir_info": {"editable": true}, "url": "file:///PROJECT"}"#
                .replace("/PROJECT", &format!("{}/my%20proj", base.display())),
        );
        write(
            &site.join("__editable__.src_proj-0.1.pth"),
            format!("# comment\nimport os\n{}/src\n", src_project.display()),
        );
        // A flat layout through setuptools' finder: a package and a module.
        let finder_project = base.join("fin");
        let record = "__editable__.fin-0.3.pth,,\n__editable___fin_0_3_finder.py,,\n";
        let fin = dist_info(&site, "fin-0.3.dist-info", "fin", "0.3", record);
        write(
            &fin.join("direct_url.json"),
            format!(r#"{{"dir_info": {{"editable": true}}, "url": "file://{}"}}"#, finder_project.display()),
        );
        write(
            &site.join("__editable__.fin-0.3.pth"),
            "import __editable___fin_0_3_finder; __editable___fin_0_3_finder.install()",
        );
        let mapping = format!(
            "MAPPING: dict[str, str] = {{'finmod': '{0}/finmod', 'finpkg': '{0}/finpkg'}}\n",
            finder_project.display()
        );
        write(&site.join("__editable___fin_0_3_finder.py"), format!("import sys\n{mapping}NAMESPACES = {{}}\n"));
        let flat_dist = dist_info(&site, "flat-0.2.dist-info", "flat", "0.2", "");
        write(
            &flat_dist.join("direct_url.json"),
            format!(r#"{{"dir_info": {{"editable": true}}, "url": "file://{}"}}"#, flat.display()),
        );
        // Not editable: a local directory install.
        let local = dist_info(&site, "local-1.0.dist-info", "local", "1.0", "local.py,,\n");
        write(
            &local.join("direct_url.json"),
            format!(r#"{{"dir_info": {{}}, "url": "file://{}"}}"#, base.join("local").display()),
        );
        let broken = dist_info(&site, "broken-1.0.dist-info", "broken", "1.0", "");
        write(&broken.join("direct_url.json"), "{not json");

        let mut index = PythonIndex::new();
        // The integrator discovers every used path first; Python reads the site directory's .pth files at start-up.
        index.discover(&bytes(&site.join("__editable__.fin-0.3.pth")));
        let edpkg = index.owner(&bytes(&src_project.join("src/edpkg/__init__.py"))).expect("src layout").clone();
        assert_eq!((edpkg.name.as_str(), edpkg.editable, edpkg.location), ("src-proj", true, bytes(&site)));
        assert_eq!(
            owner_of(&mut index, &src_project.join("src/edpkg/__pycache__/__init__.cpython-311.pyc")),
            named("src-proj", "0.1")
        );
        assert_eq!(owner_of(&mut index, &src_project.join("pyproject.toml")), None, "outside the import root");
        assert_eq!(owner_of(&mut index, &src_project.join("src/edpkg/table.csv")), None, "code only on sys.path");
        assert_eq!(owner_of(&mut index, &finder_project.join("finpkg/sub/a.py")), named("fin", "0.3"));
        assert_eq!(owner_of(&mut index, &finder_project.join("finpkg/data.json")), named("fin", "0.3"), "package data");
        assert_eq!(owner_of(&mut index, &finder_project.join("finmod.py")), named("fin", "0.3"));
        assert_eq!(
            owner_of(&mut index, &finder_project.join("__pycache__/finmod.cpython-311.pyc")),
            named("fin", "0.3")
        );
        assert_eq!(owner_of(&mut index, &finder_project.join("setup.py")), None);
        assert_eq!(owner_of(&mut index, &flat.join("analysis.py")), named("flat", "0.2"), "code in the url directory");
        assert_eq!(owner_of(&mut index, &flat.join("ext.cpython-311-x86_64-linux-gnu.so")), named("flat", "0.2"));
        assert_eq!(owner_of(&mut index, &flat.join("data/input.csv")), None, "the run's data stays data");
        assert_eq!(owner_of(&mut index, &venv.join("bin/python")), None, "an environment inside a root");
        assert_eq!(owner_of(&mut index, &site.join("untracked.py")), None);
        assert_eq!(owner_of(&mut index, &base.join("local/local.py")), None);
        assert_eq!(index.owner(&bytes(&site.join("local.py"))).map(|dist| dist.editable), Some(false));
        assert!(matches!(index.problems(), [PythonError::Json { .. }]), "{:?}", index.problems());
    }

    #[test]
    fn develop_installs_and_eggs_own_the_directory_they_add() {
        let temp = tempfile::tempdir().expect("tempdir");
        let site = temp.path().join("venv/lib/python3.11/site-packages");
        let project = temp.path().join("legacy");
        write(&project.join("Leg_Proj.egg-info/PKG-INFO"), "Metadata-Version: 2.1\nName: Leg-Proj\nVersion: 0.3\n");
        // Sorts before Leg-Proj: only the egg-link's name keeps it out.
        write(&project.join("A_Stale.egg-info/PKG-INFO"), "Name: A-Stale\nVersion: 9\n");
        write(&site.join("Leg-Proj.egg-link"), format!("{}\n.", project.display()));
        let egg = site.join("Egg-1.0-py3.11.egg");
        write(&egg.join("EGG-INFO/PKG-INFO"), "Name: Egg\nVersion: 1.0\n");
        let easy_install =
            format!("import sys; sys.__plen = len(sys.path)\n{}\n./Egg-1.0-py3.11.egg\n", project.display());
        write(&site.join("easy-install.pth"), easy_install);
        let mut index = PythonIndex::new();
        index.discover(&bytes(&site.join("easy-install.pth")));
        let legacy = index.owner(&bytes(&project.join("legpkg/__init__.py"))).expect("develop install").clone();
        assert_eq!(
            legacy,
            Distribution {
                name: "Leg-Proj".into(),
                version: "0.3".into(),
                installer: None,
                location: bytes(&project),
                editable: true,
            }
        );
        assert_eq!(owner_of(&mut index, &project.join("setup.cfg")), None, "code only on sys.path");
        let egg_module = index.owner(&bytes(&egg.join("egg/__init__.py"))).expect("egg").clone();
        assert_eq!((egg_module.name.as_str(), egg_module.editable), ("Egg", false));
        assert_eq!(owner_of(&mut index, &egg.join("egg/data.txt")), named("Egg", "1.0"), "an egg is all package");
    }

    #[test]
    fn standard_libraries_and_interpreters() {
        let temp = tempfile::tempdir().expect("tempdir");
        let prefix = fs::canonicalize(temp.path()).expect("canonical").join("opt/py");
        // No patchlevel.h: the version string compiled into the executable tells.
        write(&prefix.join("bin/python3.11"), b"\x7fELF\0\x003.11.0 is old\x003.11.4\0rest");
        write(&prefix.join("lib/python3.11/os.py"), "");
        let mut index = PythonIndex::new();
        let stdlib = index.stdlib_interpreter(&bytes(&prefix.join("lib/python3.11/lib-dynload/_ssl.so"))).cloned();
        let expected = Interpreter {
            path: bytes(&prefix.join("bin/python3.11")),
            version: "3.11.4".into(),
            prefix: bytes(&prefix),
            base_prefix: bytes(&prefix),
        };
        assert_eq!(stdlib.as_ref(), Some(&expected));
        assert!(index.stdlib_interpreter(&bytes(&prefix.join("lib/python3.11/site-packages/six.py"))).is_none());
        assert!(index.stdlib_interpreter(&bytes(&prefix.join("lib/python3.12/os.py"))).is_none());
        assert_eq!(index.interpreters(), std::slice::from_ref(&expected));

        std::os::unix::fs::symlink("python3.11", prefix.join("bin/python3")).expect("symlink");
        let exec_path = bytes(&prefix.join("bin/python3"));
        assert_eq!(interpreter_for_executable(&exec_path), Some(Interpreter { path: exec_path, ..expected.clone() }));
        write(
            &prefix.join("include/python3.11/patchlevel.h"),
            "#define PY_MINOR_VERSION 11\n#define PY_VERSION \"3.11.5\"\n",
        );
        assert_eq!(interpreter_for_executable(&expected.path).map(|found| found.version), Some("3.11.5".into()));

        let venv = prefix.join("venvs/v");
        write(&venv.join("pyvenv.cfg"), format!("home = {}/bin\nversion_info = 3.11.5.final.0\n", prefix.display()));
        std::os::unix::fs::symlink(prefix.join("bin/python3.11"), venv.join("python")).expect("symlink");
        let venv_python = bytes(&venv.join("python"));
        let found = interpreter_for_executable(&venv_python);
        let expected_venv = Interpreter {
            path: venv_python,
            version: "3.11.5".into(),
            prefix: bytes(&venv),
            base_prefix: bytes(&prefix),
        };
        assert_eq!(found, Some(expected_venv));
        assert_eq!(interpreter_for_executable(&bytes(&prefix.join("bin/python3.11-config"))), None);
    }

    #[test]
    fn csv_and_lines_follow_python() {
        let lines: Vec<&[u8]> = text_lines(b"a\r\nb\rc\x0cd\xe2\x80\xa8e\xc2\x85f\xc3\xa9\n\n").collect();
        assert_eq!(lines, [&b"a"[..], b"b", b"c", b"d", b"e", b"f\xc3\xa9", b""]);
        assert_eq!(&*csv_first_field(b"a,b"), b"a");
        assert_eq!(&*csv_first_field(b"\"a,\"\"b\"\"\"x,y"), b"a,\"b\"x");
        assert_eq!(&*csv_first_field(b" \"a\",b"), b" \"a\"");
        assert_eq!(&*csv_first_field(b"\"open"), b"open");
    }

    #[test]
    fn small_parsers() {
        let finder = br#"MAPPING = {'a': '/p/caf\xe9', "b": '/p/\udce9 it\'s'}"#;
        assert_eq!(finder_mapping(finder), [b"/p/caf\xc3\xa9".to_vec(), b"/p/\xe9 it's".to_vec()]);
        assert_eq!(file_url_path("file://localhost/a%20b/./c%2"), Some(b"/a b/c%2".to_vec()));
        assert_eq!(file_url_path("https://example.com/x"), None);
        let head = b"Name: first\n folded\nVersion:1.0\nName: second\nnot a header\nInstaller: x\n";
        assert_eq!(header(head, b"name").as_deref(), Some("first\n folded"));
        assert_eq!(header(head, b"Version").as_deref(), Some("1.0"));
        assert_eq!(header(head, b"Installer"), None);
        assert_eq!(major_minor(b"python3.13t"), Some("3.13"));
        assert_eq!(major_minor(b"python3"), None);
        assert!(is_python_executable_name(b"python3.11") && is_python_executable_name(b"python"));
        assert!(!is_python_executable_name(b"python3-config") && !is_python_executable_name(b"pip"));
        assert_eq!(stdlib_location(b"/usr/lib64/python3.11/json/x.py").map(|found| found.0), Some(&b"/usr"[..]));
    }

    /// The venv's Python describes itself and its distributions (the oracle).
    const ORACLE: &str = r#"
import importlib, importlib.metadata as md, importlib.util, json, os, platform, sys
modules = []
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    modules.append({"name": name, "file": module.__file__, "cached": importlib.util.cache_from_source(module.__file__),
                    "dists": md.packages_distributions().get(name, [])})
dists = [{"name": d.metadata["Name"], "version": d.version,
          "files": [os.path.normpath(str(d.locate_file(f))) for f in d.files or []]} for d in md.distributions()]
print(json.dumps({"dists": dists, "modules": modules, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
                  "version": platform.python_version(), "os": os.__file__}))
"#;

    #[derive(Deserialize)]
    struct Oracle {
        dists: Vec<OracleDist>,
        modules: Vec<OracleModule>,
        prefix: String,
        base_prefix: String,
        version: String,
        os: String,
    }

    #[derive(Deserialize)]
    struct OracleDist {
        name: String,
        version: String,
        files: Vec<String>,
    }

    #[derive(Deserialize)]
    struct OracleModule {
        name: String,
        file: String,
        cached: String,
        dists: Vec<String>,
    }

    fn run(command: &mut Command) -> Vec<u8> {
        let output = command.output().expect("run");
        assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    /// A real venv (pip and setuptools from ensurepip, offline) with PEP 660
    /// and legacy editable installs; every answer is checked against
    /// `importlib.metadata` in that venv. The PEP 660 build needs `wheel`,
    /// which Debian's python3-wheel provides through the system site.
    #[test]
    fn a_real_venv_agrees_with_importlib_metadata() {
        let temp = tempfile::tempdir().expect("tempdir");
        let base = temp.path();
        let venv = base.join("venv");
        run(Command::new("/usr/bin/python3").args(["-m", "venv", "--system-site-packages"]).arg(&venv));
        write(&base.join("proj/pyproject.toml"), "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n[project]\nname = \"Ed_Proj\"\nversion = \"0.1\"\n");
        write(&base.join("proj/src/edpkg/__init__.py"), "");
        write(&base.join("flat/pyproject.toml"), "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n[project]\nname = \"flatproj\"\nversion = \"0.2\"\n[tool.setuptools]\npackages = [\"flatpkg\"]\npy-modules = [\"flatmod\"]\n");
        write(&base.join("flat/flatpkg/__init__.py"), "");
        write(&base.join("flat/flatmod.py"), "");
        write(
            &base.join("legacy/setup.py"),
            "from setuptools import setup\nsetup(name='Leg-Proj', version='0.3', packages=['legpkg'])\n",
        );
        write(&base.join("legacy/legpkg/__init__.py"), "");
        let python = venv.join("bin/python");
        let pip = |arguments: &[&str]| {
            let mut command = Command::new(&python);
            command.args(["-m", "pip", "install", "-q", "--no-index", "--no-build-isolation"]).args(arguments);
            run(command.current_dir(base).env("PIP_DISABLE_PIP_VERSION_CHECK", "1"));
        };
        pip(&["-e", "./proj", "-e", "./flat"]);
        pip(&["--no-use-pep517", "-e", "./legacy"]);
        let modules = ["edpkg", "flatpkg", "flatmod", "legpkg"];
        let oracle: Oracle = serde_json::from_slice(&run(Command::new(&python).arg("-c").arg(ORACLE).args(modules)))
            .expect("oracle JSON");

        let mut index = PythonIndex::new();
        // Every path first, as the integrator does: start-up reads the site directory.
        index.discover(&bytes(&venv.join("lib/python3.11/site-packages/distutils-precedence.pth")));
        let mut expected: HashMap<Vec<u8>, BTreeSet<(String, String)>> = HashMap::new();
        for dist in &oracle.dists {
            for file in &dist.files {
                expected.entry(file.as_bytes().to_vec()).or_default().insert((dist.name.clone(), dist.version.clone()));
            }
        }
        // Recall: every file importlib lists is owned by (one of) its distributions.
        assert!(expected.len() > 1000, "pip and setuptools list over a thousand files");
        for (file, owners) in &expected {
            let found = owner_of(&mut index, os_path(file)).expect("an owner");
            assert!(owners.contains(&found), "{}: {found:?} not in {owners:?}", String::from_utf8_lossy(file));
        }
        // Precision: no other file of the venv has an owner, but bytecode of a listed source.
        let mut directories = vec![venv.clone()];
        while let Some(directory) = directories.pop() {
            for entry in fs::read_dir(&directory).expect("read_dir").flatten() {
                let path = bytes(&entry.path());
                if entry.file_type().expect("file type").is_dir() {
                    directories.push(entry.path());
                } else if !expected.contains_key(&path) {
                    if let Some(found) = owner_of(&mut index, &entry.path()) {
                        let source = bytecode_source(&path).and_then(|source| expected.get(&source));
                        assert!(
                            source.is_some_and(|owners| owners.contains(&found)),
                            "{}: {found:?}",
                            entry.path().display()
                        );
                    }
                }
            }
        }
        // Editable and develop installs: the module files and their bytecode.
        for module in &oracle.modules {
            let expected_dists: Vec<String> = module.dists.iter().map(|name| normalize_name(name)).collect();
            for file in [&module.file, &module.cached] {
                let found =
                    index.owner(file.as_bytes()).unwrap_or_else(|| panic!("{} has no owner", module.name)).clone();
                assert!(found.editable, "{found:?}");
                assert!(
                    expected_dists.contains(&normalize_name(&found.name)),
                    "{file}: {found:?} vs {expected_dists:?}"
                );
            }
        }
        assert_eq!(owner_of(&mut index, &base.join("proj/pyproject.toml")), None);
        assert!(index.problems().is_empty(), "{:?}", index.problems());

        // Interpreters: the venv's and the system's, as Python sees itself.
        let venv_python = bytes(&python);
        let expected_venv = Interpreter {
            path: venv_python.clone(),
            version: oracle.version.clone(),
            prefix: oracle.prefix.into_bytes(),
            base_prefix: oracle.base_prefix.clone().into_bytes(),
        };
        assert_eq!(interpreter_for_executable(&venv_python), Some(expected_venv));
        let stdlib = index.stdlib_interpreter(oracle.os.as_bytes()).expect("os.py is the standard library's");
        assert_eq!((stdlib.prefix.clone(), stdlib.version.clone()), (oracle.base_prefix.into_bytes(), oracle.version));
        let system = run(Command::new("/usr/bin/python3")
            .args(["-c", "import platform, sys; print(platform.python_version(), sys.prefix)"]));
        let system = String::from_utf8(system).expect("UTF-8");
        let (version, prefix) = system.trim().split_once(' ').expect("version and prefix");
        let expected_system = Interpreter {
            path: b"/usr/bin/python3".to_vec(),
            version: version.into(),
            prefix: prefix.as_bytes().to_vec(),
            base_prefix: prefix.as_bytes().to_vec(),
        };
        assert_eq!(interpreter_for_executable(b"/usr/bin/python3"), Some(expected_system));
    }
}
