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
//! - an editable install owns the files under its import roots: the path lines
//!   of the `.pth` files its `RECORD` lists, the `MAPPING` of a setuptools
//!   `__editable___*_finder.py`, or else the project directory of
//!   `direct_url.json`; a legacy develop install (`*.egg-link`,
//!   `easy-install.pth`) owns the directory it put on `sys.path`. A root does
//!   not claim the files of a site directory or Python environment below it (a
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
    /// Import root of an editable or develop install → distribution.
    roots: PathMap<usize>,
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
}

impl PythonIndex {
    pub fn new() -> Self {
        Self::default()
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

    /// The editable install whose import root holds `path`. A root names a
    /// package directory or, without its suffix, a module (`proj/mod` for
    /// `proj/mod.py`, as setuptools' finder maps them).
    fn root_owner(&self, path: &[u8]) -> Option<usize> {
        if self.roots.is_empty() {
            return None;
        }
        let (dir, name) = (parent(path)?, file_name(path));
        if let Some(dot) = name.iter().position(|&byte| byte == b'.').filter(|&dot| dot > 0) {
            if let Some(&id) = self.roots.get(&join(dir, &name[..dot])) {
                return Some(id);
            }
        }
        let mut current = Some(dir);
        while let Some(candidate) = current {
            if is_site_dir_name(file_name(candidate)) || self.environments.contains(candidate) {
                return None;
            }
            if let Some(&id) = self.roots.get(candidate) {
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
            let found = scan_site_dir(site, &mut self.problems);
            self.add(found);
        }
    }

    fn scan_conda_prefix(&mut self, prefix: &[u8]) {
        let conda_meta = join(prefix, b"conda-meta");
        if self.scanned.insert(conda_meta) {
            let found = scan_conda_prefix(prefix, &mut self.problems);
            self.add(found);
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
        for root in found.roots {
            claim(&mut self.roots, &self.distributions, &self.ranks, root, id);
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
    let version = patch_version(&prefix, &version_dir, &real);
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
struct Found {
    distribution: Distribution,
    /// (device, inode) of its metadata directory or conda record.
    identity: (u64, u64),
    rank: Rank,
    /// Folded paths its lists name.
    files: Vec<Vec<u8>>,
    /// Import roots of an editable or develop install.
    roots: Vec<Vec<u8>>,
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
    develop_roots.sort();
    // An egg-link and easy-install.pth usually name the same root; the egg-link sorts first.
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
    let roots = match &direct_url {
        Some(direct_url) if editable => editable_roots(site, &files, &direct_url.url, problems),
        _ => Vec::new(),
    };
    Some(Found {
        distribution: Distribution { name, version, installer, location: site.to_vec(), editable },
        identity: (metadata.dev(), metadata.ino()),
        rank: Rank { evidence: Evidence::Installed, modified: modified(&metadata) },
        files,
        roots,
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
        roots: Vec::new(),
    })
}

/// A directory a develop install or an egg put on `sys.path`: the egg's
/// `EGG-INFO`, or the `.egg-info` directories in it (only the one named
/// `wanted`, normalised, for an egg-link). It owns everything under it.
fn scan_develop_root(root: &[u8], wanted: Option<&str>, problems: &mut Vec<PythonError>) -> Vec<Found> {
    let mut metadata_dirs = Vec::new();
    if ends_with_ignore_case(root, b".egg") {
        metadata_dirs.push((join(root, b"EGG-INFO"), b"EGG-INFO".to_vec(), false));
    } else if let Ok(entries) = fs::read_dir(os_path(root)) {
        for entry in entries.flatten() {
            let name = entry.file_name().into_vec();
            let Some(stem) = strip_suffix_ignore_case(&name, b".egg-info") else { continue };
            let stem_name = normalize_name(&String::from_utf8_lossy(egg_info_name(stem)));
            if wanted.is_none_or(|wanted| wanted == stem_name) {
                metadata_dirs.push((join(root, &name), name, true));
            }
        }
    }
    let mut found = Vec::new();
    for (dir, dir_name, editable) in metadata_dirs {
        let Some(metadata) = fs::metadata(os_path(&dir)).ok().filter(fs::Metadata::is_dir) else { continue };
        let (name, version) = name_and_version(&dir, &dir_name, problems);
        found.push(Found {
            distribution: Distribution { name, version, installer: None, location: root.to_vec(), editable },
            identity: (metadata.dev(), metadata.ino()),
            rank: Rank { evidence: Evidence::Installed, modified: modified(&metadata) },
            files: Vec::new(),
            roots: vec![root.to_vec()],
        });
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

/// Where a PEP 660 install imports from: path lines of the `.pth` files of the
/// site directory its `RECORD` lists, values of a setuptools finder's
/// `MAPPING`, or else the project directory `url` names.
fn editable_roots(site: &[u8], files: &[Vec<u8>], url: &str, problems: &mut Vec<PythonError>) -> Vec<Vec<u8>> {
    let mut roots = Vec::new();
    for file in files.iter().filter(|file| parent(file) == Some(site)) {
        let name = file_name(file);
        if name.ends_with(b".pth") {
            if let Some(text) = read_optional(file, problems) {
                roots.extend(pth_directories(site, &text));
            }
        } else if name.starts_with(b"__editable__") && name.ends_with(b"_finder.py") {
            if let Some(text) = read_optional(file, problems) {
                roots.extend(finder_mapping(&text).into_iter().map(|root| join(site, &root)));
            }
        }
    }
    if roots.is_empty() {
        roots.extend(file_url_path(url));
    }
    roots
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
            roots: Vec::new(),
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
        [module, _tag, optimization, b"pyc"] if optimization.len() > 4 && optimization.starts_with(b"opt-") => module,
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
    let version = patch_version(prefix, version_dir, &executable);
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
        None => patch_version(&base_prefix, &version_dir, &join(&home, &version_dir)),
    };
    Some(Interpreter { path: path.to_vec(), version, prefix: venv.to_vec(), base_prefix })
}

/// `X.Y.Z` of an installation: `include/pythonX.Y*/patchlevel.h`, else the
/// version string in the executable or in `lib/libpythonX.Y*.so*`, else `X.Y`.
fn patch_version(prefix: &[u8], version_dir: &[u8], executable: &[u8]) -> String {
    let Some(major_minor) = major_minor(version_dir) else { return String::new() };
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
        .unwrap_or_else(|| major_minor.to_owned())
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
