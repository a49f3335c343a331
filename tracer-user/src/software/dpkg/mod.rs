//! Which Debian package owns a file, and which version of it is installed.
//!
//! This answers what `dpkg -S PATH` and `dpkg-query -W PACKAGE` would, without
//! running them: the dpkg database (normally `/var/lib/dpkg`) is read into an
//! index of every file's owner, sorted by path, and every lookup after that is
//! a binary search. Reading the database takes tens of milliseconds (a few
//! thousand file lists), so the index is kept on disk ([`cache`]) and read
//! back while the database has not changed.
//!
//! What is read:
//! - `status`: one stanza per package; a package counts as installed when its
//!   files are on disk, that is in every state except `not-installed` and
//!   `config-files` (so `hold ok installed`, `unpacked`, `half-configured` and
//!   the `triggers-*` states count);
//! - `info/NAME.list` and `info/NAME:ARCH.list` (the latter for `Multi-Arch:
//!   same` packages): the paths each package installed;
//! - `diversions` (see `dpkg-divert`): a diverted path belongs to the diverting
//!   package, and the path it was diverted to belongs to the package whose file
//!   was moved there (`/usr/bin/pg_config` is postgresql-common's and
//!   `/usr/bin/pg_config.libpq-dev` libpq-dev's, where `dpkg -S` names both
//!   packages for the first and none for the second). Under a local diversion
//!   (made by the administrator) the original name is no package's.
//!
//! Decisions a caller must know:
//! - Only files are indexed. `.list` files also name directories (`/usr/bin` is
//!   listed by a hundred packages), and a directory is nobody's in particular. A
//!   listed path is taken to be a directory when some listed path lies directly
//!   under it: dpkg lists every parent directory of what it installs, so this
//!   needs no `stat` and does not depend on the disk. An empty directory that
//!   one package alone lists stays that package's, as `dpkg -S` says too.
//! - A path that packages of different names both list (an empty shared
//!   directory, a usr-merge collision, a forced overwrite) has no single owner
//!   and is left out. Instances of one `Multi-Arch: same` package
//!   (`libc6:amd64` and `libc6:i386` share their docs) are not a conflict: the
//!   first in package order (sorted by name, version, architecture) wins.
//! - Merged /usr: where `/bin`, `/sbin`, `/lib`, `/lib32`, `/lib64` or `/libx32`
//!   is a symlink to its `/usr` counterpart on the running system, paths under
//!   it are rewritten to the `/usr` spelling, both when indexing and when
//!   looking up, so `/bin/sh` and `/usr/bin/sh` find the same owner. The
//!   symlinks are checked at load time, so an unmerged system is not mis-mapped.
//! - No other symlink is followed: `owner` answers for the name the program
//!   used. `/usr/bin/python3` is python3-minimal's link, not the interpreter it
//!   points to; a caller that wants the target's owner resolves it and asks again.
//! - Lookups are exact byte matches: paths must be absolute and lexically folded
//!   (no `.`, `..` or repeated slashes), as the tracker produces them, and may
//!   be any bytes, not only UTF-8.

mod cache;

use rustc_hash::FxBuildHasher;
use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    fs,
    io::{self, Read},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::sorted_owners::SortedOwners;

/// Where dpkg keeps its database on a Debian system.
pub const DEFAULT_ADMIN_DIR: &str = "/var/lib/dpkg";

/// The `manager` every [`SystemPackage`] from this module carries.
const MANAGER: &str = "dpkg";

/// The top-level directories a merged-/usr system replaces with symlinks into `/usr`.
const USR_MERGED_DIRS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The package state words (third word of `Status:`) under which a package has no files on disk.
const STATES_WITHOUT_FILES: &[&[u8]] = &[b"not-installed", b"config-files"];

/// A package as the manifest reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemPackage {
    /// The package name, without any `:ARCH` qualifier.
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Always `"dpkg"` here; other package managers fill in their own name.
    pub manager: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    #[error("cannot read the dpkg database file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("malformed dpkg database file {}, line {line}: {problem}", path.display())]
    Malformed { path: PathBuf, line: usize, problem: String },
}

/// The owner of every file the installed Debian packages list, built once by [`DpkgIndex::load`].
#[derive(Debug)]
pub struct DpkgIndex {
    /// Installed packages, sorted, so that package indices and tie-breaks do not depend on directory order.
    packages: Vec<SystemPackage>,
    /// The usr-merge aliases the paths in `owners` were canonicalised with; queries go through them too.
    aliases: UsrAliases,
    /// Canonical file path → index in `packages`.
    owners: SortedOwners,
}

impl DpkgIndex {
    /// Indexes the dpkg database under `admin_dir` (normally /var/lib/dpkg): every info/*.list file list and
    /// the versions in `status`. Returns Ok(None) when there is no dpkg database there (not a Debian system).
    ///
    /// The usr-merge aliases are read from the running system's root, `/`, because that is where the traced
    /// program's paths were resolved.
    ///
    /// The index is read from `cache_dir` when one made from this very
    /// database (and these aliases) is there, and left there otherwise.
    pub fn load(admin_dir: &Path, cache_dir: Option<&Path>) -> Result<Option<DpkgIndex>, DpkgError> {
        let aliases = UsrAliases::detect(Path::new("/"));
        let Some(cache_dir) = cache_dir else { return Self::load_with_aliases(admin_dir, aliases) };
        let Some(key) = cache::Key::of(admin_dir, &aliases) else { return Self::load_with_aliases(admin_dir, aliases) };
        if let Some((packages, owners)) = cache::read(cache_dir, &key) {
            return Ok(Some(DpkgIndex { packages, aliases, owners }));
        }
        let index = Self::load_with_aliases(admin_dir, aliases)?;
        if let Some(index) = &index {
            // A cache that cannot be written costs the next audit time, nothing else.
            let _ = cache::write(cache_dir, &key, &index.packages, &index.owners);
        }
        Ok(index)
    }

    /// The package that owns `path` (absolute, raw bytes as the program named it), if any. (For many
    /// paths, [`DpkgIndex::lookups`] remembers what each directory holds.)
    pub fn owner(&self, path: &[u8]) -> Option<&SystemPackage> {
        self.lookups().owner(path)
    }

    /// Owners asked of many paths (an audit's): whether any package lists
    /// a path under a directory is searched once per directory, and a file
    /// under one that holds none is not searched for at all (a run's data
    /// directory of thousands of files, or a virtual environment's, paid a
    /// search of the ~100,000 sorted paths for every file).
    pub fn lookups(&self) -> OwnerLookups<'_> {
        OwnerLookups {
            index: self,
            listed_dirs: PathSet::default(),
            unlisted_dirs: PathSet::default(),
            last_unlisted: Vec::new(),
        }
    }

    /// How many packages are installed (each architecture of a multi-arch package counts once).
    pub fn package_count(&self) -> usize {
        self.packages.len()
    }

    /// [`DpkgIndex::load`] with the usr-merge aliases given, so tests need not depend on the host's root.
    fn load_with_aliases(admin_dir: &Path, aliases: UsrAliases) -> Result<Option<DpkgIndex>, DpkgError> {
        let status_path = admin_dir.join("status");
        let status = match fs::read(&status_path) {
            Ok(status) => status,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DpkgError::Read { path: status_path, source }),
        };
        let packages = parse_status(&status_path, &status)?;
        let diversions = read_diversions(&admin_dir.join("diversions"), &aliases)?;
        let mut builder = IndexBuilder::new(&packages, &diversions);
        builder.add_file_lists(&admin_dir.join("info"), &aliases)?;
        let owners = SortedOwners::from_map(builder.finish(&diversions));
        Ok(Some(DpkgIndex { packages, aliases, owners }))
    }
}

/// See [`DpkgIndex::lookups`].
pub struct OwnerLookups<'a> {
    index: &'a DpkgIndex,
    /// Directories (canonical, with their final slash) under which some
    /// path is listed, and those under which none is.
    listed_dirs: PathSet,
    unlisted_dirs: PathSet,
    /// The last of `unlisted_dirs` a lookup ended in (empty before): a run's
    /// files come directory by directory, and the next is likely under it too.
    last_unlisted: Vec<u8>,
}

impl<'a> OwnerLookups<'a> {
    /// The package that owns `path` (absolute, raw bytes as the program named it), if any.
    pub fn owner(&mut self, path: &[u8]) -> Option<&'a SystemPackage> {
        let canonical = self.index.aliases.canonical(path);
        if !self.last_unlisted.is_empty() && canonical.starts_with(&self.last_unlisted) {
            return None;
        }
        // The directories above it, from the root down: one under which
        // nothing is listed settles it (`/home/`, a venv).
        for slash in canonical.iter().enumerate().filter_map(|(at, &byte)| (byte == b'/').then_some(at)) {
            let dir = &canonical[..=slash];
            if self.unlisted_dirs.contains(dir) {
                return self.unlisted(dir);
            }
            if self.listed_dirs.contains(dir) {
                continue;
            }
            if !self.index.owners.any_starting_with(dir) {
                self.unlisted_dirs.insert(dir.into());
                return self.unlisted(dir);
            }
            self.listed_dirs.insert(dir.into());
        }
        self.index.packages.get(self.index.owners.get(&canonical)?)
    }

    /// No owner: nothing is listed under `dir`, which the next lookup asks first.
    fn unlisted(&mut self, dir: &[u8]) -> Option<&'a SystemPackage> {
        self.last_unlisted.clear();
        self.last_unlisted.extend_from_slice(dir);
        None
    }
}

/// Maps keyed by paths, hashed with FxHash: several times faster than the default SipHash, whose resistance to
/// chosen-key floods buys nothing here (the keys come from the dpkg database, written by root; the traced
/// program's paths are only looked up, never inserted).
type PathMap<V> = HashMap<Box<[u8]>, V, FxBuildHasher>;
type PathSet = HashSet<Box<[u8]>, FxBuildHasher>;

/// Top-level directories that are symlinks to their `/usr` counterpart, as (`/bin`, `/usr/bin`) pairs.
#[derive(Debug, Default, PartialEq, Eq)]
struct UsrAliases {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl UsrAliases {
    /// The aliases for the given top-level directory names (`"bin"` maps `/bin` to `/usr/bin`).
    fn for_dirs<'a>(dirs: impl IntoIterator<Item = &'a str>) -> Self {
        let pairs = dirs.into_iter().map(|dir| (format!("/{dir}").into_bytes(), format!("/usr/{dir}").into_bytes()));
        UsrAliases { pairs: pairs.collect() }
    }

    /// The aliases in effect under `root`: each candidate directory that is a symlink to `usr/NAME` (relative
    /// or absolute). Anything else, a real directory, a missing one or a link elsewhere, is left alone.
    fn detect(root: &Path) -> Self {
        Self::for_dirs(USR_MERGED_DIRS.iter().copied().filter(|dir| {
            fs::read_link(root.join(dir)).is_ok_and(|target| {
                let target = target.as_os_str().as_bytes();
                let trimmed = target.strip_prefix(b"/").unwrap_or(target);
                let trimmed = trimmed.strip_suffix(b"/").unwrap_or(trimmed);
                trimmed.strip_prefix(b"usr/") == Some(dir.as_bytes())
            })
        }))
    }

    /// `path` with an aliased top-level directory replaced by its `/usr` form; borrowed when nothing changes.
    fn canonical<'a>(&self, path: &'a [u8]) -> Cow<'a, [u8]> {
        for (alias, target) in &self.pairs {
            if let Some(rest) = path.strip_prefix(alias.as_slice()) {
                if rest.is_empty() || rest.starts_with(b"/") {
                    return Cow::Owned([target.as_slice(), rest].concat());
                }
            }
        }
        Cow::Borrowed(path)
    }
}

/// The installed packages in the `status` file at `path`, sorted.
fn parse_status(path: &Path, status: &[u8]) -> Result<Vec<SystemPackage>, DpkgError> {
    let mut packages = Vec::new();
    let mut stanza = Stanza::default();
    for (line_index, line) in status.split(|&byte| byte == b'\n').enumerate() {
        let line_number = line_index + 1;
        if line.is_empty() {
            packages.extend(stanza.finish(path)?);
            stanza = Stanza::default();
            continue;
        }
        if stanza.first_line == 0 {
            stanza.first_line = line_number;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            continue; // a continuation of a multi-line field (Description, Conffiles): nothing we need
        }
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            return Err(malformed(path, line_number, "a line that is neither `Field: value` nor a continuation"));
        };
        let value = line[colon + 1..].trim_ascii();
        let field = &line[..colon];
        let slot = if field.eq_ignore_ascii_case(b"Package") {
            &mut stanza.package
        } else if field.eq_ignore_ascii_case(b"Status") {
            &mut stanza.status
        } else if field.eq_ignore_ascii_case(b"Version") {
            &mut stanza.version
        } else if field.eq_ignore_ascii_case(b"Architecture") {
            &mut stanza.architecture
        } else {
            continue;
        };
        *slot = Some(field_text(path, line_number, value)?);
    }
    packages.extend(stanza.finish(path)?);
    packages.sort();
    Ok(packages)
}

/// The fields of one `status` stanza that the index needs.
#[derive(Default)]
struct Stanza {
    /// Line number of the stanza's first line, for messages; 0 while the stanza is empty.
    first_line: usize,
    package: Option<String>,
    status: Option<String>,
    version: Option<String>,
    architecture: Option<String>,
}

impl Stanza {
    /// The package this stanza describes, if it is installed; an empty stanza (between blank lines) is none.
    fn finish(self, path: &Path) -> Result<Option<SystemPackage>, DpkgError> {
        if self.first_line == 0 {
            return Ok(None);
        }
        let line = self.first_line;
        let Some(name) = self.package else {
            return Err(malformed(path, line, "a stanza without a Package field"));
        };
        let Some(status) = self.status else {
            return Err(malformed(path, line, format!("package {name} has no Status field")));
        };
        let Some(state) = status.split_ascii_whitespace().nth(2) else {
            return Err(malformed(
                path,
                line,
                format!("package {name} has a Status that is not three words: {status}"),
            ));
        };
        if STATES_WITHOUT_FILES.contains(&state.as_bytes()) {
            return Ok(None);
        }
        let Some(version) = self.version else {
            return Err(malformed(path, line, format!("installed package {name} has no Version field")));
        };
        let Some(architecture) = self.architecture else {
            return Err(malformed(path, line, format!("installed package {name} has no Architecture field")));
        };
        Ok(Some(SystemPackage { name, version, architecture, manager: MANAGER }))
    }
}

/// A field value as text; dpkg writes package names, versions and architectures in ASCII.
fn field_text(path: &Path, line: usize, value: &[u8]) -> Result<String, DpkgError> {
    String::from_utf8(value.to_vec()).map_err(|_| malformed(path, line, "a field value that is not UTF-8"))
}

fn malformed(path: &Path, line: usize, problem: impl Into<String>) -> DpkgError {
    DpkgError::Malformed { path: path.to_path_buf(), line, problem: problem.into() }
}

/// One `dpkg-divert` record: packages other than `diverter` that ship `from` have it installed as `to`.
struct Diversion {
    from: Vec<u8>,
    to: Vec<u8>,
    /// `None` for a local diversion (made by the administrator, written `:` in the file).
    diverter: Option<String>,
}

/// The diversions in the file at `path` (three lines each: from, to, diverting package), with canonical
/// paths. A missing file means no diversions.
fn read_diversions(path: &Path, aliases: &UsrAliases) -> Result<Vec<Diversion>, DpkgError> {
    let contents = match fs::read(path) {
        Ok(contents) => contents,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DpkgError::Read { path: path.to_path_buf(), source }),
    };
    if contents.is_empty() {
        return Ok(Vec::new());
    }
    let lines: Vec<&[u8]> = contents.strip_suffix(b"\n").unwrap_or(&contents).split(|&byte| byte == b'\n').collect();
    let records = lines.chunks_exact(3);
    if !records.remainder().is_empty() {
        return Err(malformed(path, lines.len(), "the line count is not a multiple of three (from, to, package)"));
    }
    records
        .enumerate()
        .map(|(record_index, record)| {
            let diverter = match record[2] {
                b":" => None,
                name => Some(field_text(path, record_index * 3 + 3, name)?),
            };
            Ok(Diversion {
                from: aliases.canonical(record[0]).into_owned(),
                to: aliases.canonical(record[1]).into_owned(),
                diverter,
            })
        })
        .collect()
}

/// The index of the installed package called `name` (optionally `NAME:ARCH`), in `packages` sorted by name.
/// Without an architecture the first instance is taken, as dpkg names a `.list` file without one only when
/// a single instance can be installed.
fn find_package(packages: &[SystemPackage], qualified_name: &[u8]) -> Option<usize> {
    let (name, architecture) = match qualified_name.iter().position(|&byte| byte == b':') {
        Some(colon) => (&qualified_name[..colon], Some(&qualified_name[colon + 1..])),
        None => (qualified_name, None),
    };
    let first = packages.partition_point(|package| package.name.as_bytes() < name);
    packages[first..]
        .iter()
        .take_while(|package| package.name.as_bytes() == name)
        .position(|package| architecture.is_none_or(|architecture| package.architecture.as_bytes() == architecture))
        .map(|offset| first + offset)
}

/// The directory part of an absolute path (`/` for a top-level entry); `None` for a relative path or `/`.
fn parent_of(path: &[u8]) -> Option<&[u8]> {
    match path.iter().rposition(|&byte| byte == b'/')? {
        0 if path.len() > 1 => Some(b"/"),
        0 => None,
        slash => Some(&path[..slash]),
    }
}

/// Accumulates the file lists into an owner map; see the module documentation for the rules.
struct IndexBuilder<'a> {
    packages: &'a [SystemPackage],
    /// Every listed path, canonical, → the package listing it (the lowest index among instances of one name).
    owners: PathMap<usize>,
    /// Listed paths that must not have an owner: directories (parents of other entries) and paths listed by
    /// packages of different names.
    unowned: PathSet,
    /// Every package listing each diverted path, to give the path it was diverted to its true owner.
    diverted_listers: PathMap<Vec<usize>>,
}

impl<'a> IndexBuilder<'a> {
    fn new(packages: &'a [SystemPackage], diversions: &[Diversion]) -> Self {
        let diverted_listers = diversions.iter().map(|diversion| (diversion.from.as_slice().into(), Vec::new()));
        IndexBuilder {
            packages,
            owners: PathMap::default(),
            unowned: PathSet::default(),
            diverted_listers: diverted_listers.collect(),
        }
    }

    /// Adds the `.list` file of every installed package in `info_dir`; lists of packages that are not
    /// installed (a removed package keeps its conffiles' list) are skipped.
    fn add_file_lists(&mut self, info_dir: &Path, aliases: &UsrAliases) -> Result<(), DpkgError> {
        let read_error = |source| DpkgError::Read { path: info_dir.to_path_buf(), source };
        // One buffer for every list: allocating and freeing a large one per package shows up in profiles.
        let mut list = Vec::new();
        for entry in fs::read_dir(info_dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let file_name = entry.file_name();
            let Some(qualified_name) = file_name.as_bytes().strip_suffix(b".list") else { continue };
            let Some(package) = find_package(self.packages, qualified_name) else { continue };
            let list_path = entry.path();
            list.clear();
            fs::File::open(&list_path)
                .and_then(|mut file| file.read_to_end(&mut list))
                .map_err(|source| DpkgError::Read { path: list_path, source })?;
            for listed in list.split(|&byte| byte == b'\n') {
                // `/.` stands for the root directory itself, which is never a package's.
                if !listed.is_empty() && listed != b"/." {
                    self.add_entry(&aliases.canonical(listed), package);
                }
            }
        }
        Ok(())
    }

    fn add_entry(&mut self, path: &[u8], package: usize) {
        if let Some(listers) = self.diverted_listers.get_mut(path) {
            listers.push(package);
        }
        if let Some(parent) = parent_of(path) {
            if !self.unowned.contains(parent) {
                self.unowned.insert(parent.into());
            }
        }
        match self.owners.get_mut(path) {
            None => {
                self.owners.insert(path.into(), package);
            }
            Some(owner) if self.packages[*owner].name == self.packages[package].name => {
                *owner = (*owner).min(package);
            }
            Some(_) => {
                if !self.unowned.contains(path) {
                    self.unowned.insert(path.into());
                }
            }
        }
    }

    /// The owner map: files only, with diversions applied.
    fn finish(self, diversions: &[Diversion]) -> PathMap<usize> {
        let IndexBuilder { packages, mut owners, unowned, diverted_listers } = self;
        owners.retain(|path, _| !unowned.contains(path));
        for diversion in diversions {
            let diverter = diversion.diverter.as_deref().and_then(|name| find_package(packages, name.as_bytes()));
            // The file at `from` is the diverter's (whether it ships it or makes it in a maintainer script); a
            // local diversion, or one by a package no longer installed, leaves no package owning it.
            match diverter {
                Some(diverter) => owners.insert(diversion.from.as_slice().into(), diverter),
                None => owners.remove(diversion.from.as_slice()),
            };
            // The file at `to` is what another package shipped as `from`.
            let listers = diverted_listers.get(diversion.from.as_slice()).map_or(&[][..], Vec::as_slice);
            let diverter_name = diverter.map(|diverter| packages[diverter].name.as_str());
            let displaced: Vec<usize> = listers
                .iter()
                .copied()
                .filter(|&lister| Some(packages[lister].name.as_str()) != diverter_name)
                .collect();
            if let Some(&first) = displaced.iter().min() {
                if displaced.iter().all(|&other| packages[other].name == packages[first].name) {
                    owners.insert(diversion.to.as_slice().into(), first);
                } else {
                    owners.remove(diversion.to.as_slice());
                }
            }
        }
        owners
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Six installed packages (two instances of multi-arch libc6, one on hold), one with only its conffiles
    /// left and one purged; the stanzas carry multi-line fields the parser must skip.
    const STATUS: &str = "\
Package: coreutils
Status: install ok installed
Priority: required
Architecture: amd64
Version: 9.1-1
Description: GNU core utilities
 This package contains the basic file, shell and text manipulation
 .
 utilities.

Package: dash
Status: hold ok installed
Architecture: amd64
Version: 0.5.12-2
Conffiles:
 /etc/dash.conf 0123456789abcdef0123456789abcdef

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u14

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u14

Package: postgresql-common
Status: install ok installed
Architecture: all
Version: 248+deb12u1

Package: libpq-dev
Status: install ok installed
Architecture: amd64
Version: 15.18-0+deb12u1

Package: oldpkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: gone
Status: purge ok not-installed
Architecture: amd64
";

    /// dash diverts /bin/sh (which only it ships), postgresql-common diverts pg_config (which libpq-dev ships
    /// too), and the administrator diverted /usr/bin/cp.
    const DIVERSIONS: &str = "\
/bin/sh
/bin/sh.distrib
dash
/usr/bin/pg_config
/usr/bin/pg_config.libpq-dev
postgresql-common
/usr/bin/cp
/usr/bin/cp.orig
:
";

    const LISTS: &[(&str, &[&[u8]])] = &[
        (
            "coreutils.list",
            &[
                b"/.",
                b"/bin",
                b"/bin/ls",
                b"/usr",
                b"/usr/bin",
                b"/usr/bin/cp",
                b"/usr/share",
                b"/usr/share/empty",
                b"/usr/share/caf\xe9",
            ],
        ),
        ("dash.list", &[b"/.", b"/bin", b"/bin/dash", b"/bin/sh", b"/usr", b"/usr/share", b"/usr/share/empty"]),
        (
            "libc6:amd64.list",
            &[
                b"/.",
                b"/lib",
                b"/lib/x86_64-linux-gnu",
                b"/lib/x86_64-linux-gnu/libc.so.6",
                b"/usr",
                b"/usr/share",
                b"/usr/share/doc",
                b"/usr/share/doc/libc6",
                b"/usr/share/doc/libc6/copyright",
            ],
        ),
        (
            "libc6:i386.list",
            &[
                b"/.",
                b"/usr",
                b"/usr/lib",
                b"/usr/lib/i386-linux-gnu",
                b"/usr/lib/i386-linux-gnu/libc.so.6",
                b"/usr/share",
                b"/usr/share/doc",
                b"/usr/share/doc/libc6",
                b"/usr/share/doc/libc6/copyright",
            ],
        ),
        ("postgresql-common.list", &[b"/.", b"/usr", b"/usr/bin", b"/usr/bin/pg_config"]),
        ("libpq-dev.list", &[b"/.", b"/usr", b"/usr/bin", b"/usr/bin/pg_config"]),
        ("oldpkg.list", &[b"/etc", b"/etc/oldpkg.conf"]),
        ("ghost.list", &[b"/usr/bin/ghost"]),
        ("dash.md5sums", &[b"0123456789abcdef0123456789abcdef  usr/bin/not-a-listed-path"]),
    ];

    /// An admin dir holding `status`, `diversions` (when given) and `info/` with `lists`.
    fn admin_dir(status: &str, diversions: Option<&str>, lists: &[(&str, &[&[u8]])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("status"), status).expect("write status");
        if let Some(diversions) = diversions {
            fs::write(dir.path().join("diversions"), diversions).expect("write diversions");
        }
        fs::create_dir(dir.path().join("info")).expect("create info");
        for (file_name, entries) in lists {
            let contents: Vec<u8> = entries.iter().flat_map(|entry| [*entry, b"\n"].concat()).collect();
            fs::write(dir.path().join("info").join(file_name), contents).expect("write list");
        }
        dir
    }

    fn synthetic_index(aliases: UsrAliases) -> DpkgIndex {
        let dir = admin_dir(STATUS, Some(DIVERSIONS), LISTS);
        DpkgIndex::load_with_aliases(dir.path(), aliases).expect("load").expect("a dpkg database")
    }

    /// The owner's `name:architecture=version`, or `None`.
    fn owner_of(index: &DpkgIndex, path: &[u8]) -> Option<String> {
        index.owner(path).map(|package| format!("{}:{}={}", package.name, package.architecture, package.version))
    }

    #[test]
    fn owners_of_files_under_merged_usr() {
        let index = synthetic_index(UsrAliases::for_dirs(["bin", "lib"]));
        assert_eq!(index.package_count(), 6);
        let coreutils = Some("coreutils:amd64=9.1-1".to_string());
        let libc6_amd64 = Some("libc6:amd64=2.36-9+deb12u14".to_string());
        let libc6_i386 = Some("libc6:i386=2.36-9+deb12u14".to_string());
        // Listed under the alias, asked for under either spelling, and the other way round.
        assert_eq!(owner_of(&index, b"/bin/ls"), coreutils);
        assert_eq!(owner_of(&index, b"/usr/bin/ls"), coreutils);
        assert_eq!(owner_of(&index, b"/lib/x86_64-linux-gnu/libc.so.6"), libc6_amd64);
        assert_eq!(owner_of(&index, b"/usr/lib/x86_64-linux-gnu/libc.so.6"), libc6_amd64);
        assert_eq!(owner_of(&index, b"/lib/i386-linux-gnu/libc.so.6"), libc6_i386);
        // A file both instances of a multi-arch package ship goes to the first, whatever the directory order.
        assert_eq!(owner_of(&index, b"/usr/share/doc/libc6/copyright"), libc6_amd64);
        assert_eq!(owner_of(&index, b"/usr/share/caf\xe9"), coreutils);
        assert_eq!(index.owner(b"/usr/bin/ls").map(|package| package.manager), Some("dpkg"));
    }

    #[test]
    fn directories_and_unlisted_paths_have_no_owner() {
        let index = synthetic_index(UsrAliases::for_dirs(["bin", "lib"]));
        let unowned: &[&[u8]] = &[
            b"/",
            b"/.",
            b"/bin",
            b"/usr/bin",
            b"/usr/share",
            b"/lib/x86_64-linux-gnu",
            b"/usr/share/doc/libc6",
            b"/usr/share/empty", // an empty directory two packages list
            b"/etc/oldpkg.conf", // oldpkg has only its conffiles left
            b"/usr/bin/ghost",   // a list without a status stanza
            b"/usr/bin/not-a-listed-path",
            b"/usr/bin/l",
            b"/tmp/data.csv",
        ];
        for path in unowned {
            assert_eq!(owner_of(&index, path), None, "{}", String::from_utf8_lossy(path));
        }
    }

    #[test]
    fn many_lookups_answer_as_single_ones() {
        let index = synthetic_index(UsrAliases::for_dirs(["bin", "lib"]));
        let mut lookups = index.lookups();
        // Paths under unlisted directories and listed ones, their siblings
        // and aliases, each asked twice of lookups that remember
        // directories, and once of lookups that know nothing yet.
        let paths: &[&[u8]] = &[
            b"/data/a.csv",
            b"/data/b.csv",
            b"/tmp/data.csv",
            b"/usr/bin/ls",
            b"/usr/bin/not-a-listed-path",
            b"/bin/ls",
            b"/bin/sh",
            b"/usr/bin-old/ls",
            b"/usr/share/doc/libc6/copyright",
            b"/usr/share/doc/libc6/missing",
            b"/usr/share/doc/other/copyright",
            b"/lib/x86_64-linux-gnu/libc.so.6",
            b"relative",
            b"/",
        ];
        for path in paths.iter().chain(paths) {
            let expected = index.owner(path).map(|package| &package.name);
            assert_eq!(lookups.owner(path).map(|package| &package.name), expected, "{}", String::from_utf8_lossy(path));
        }
        assert!(lookups.unlisted_dirs.contains(&b"/data/"[..]));
        assert!(lookups.unlisted_dirs.contains(&b"/usr/share/doc/other/"[..]));
        assert!(lookups.listed_dirs.contains(&b"/usr/bin/"[..]));
    }

    #[test]
    fn diverted_paths_belong_to_the_diverting_package() {
        let index = synthetic_index(UsrAliases::for_dirs(["bin", "lib"]));
        assert_eq!(owner_of(&index, b"/bin/sh"), Some("dash:amd64=0.5.12-2".to_string()));
        assert_eq!(owner_of(&index, b"/usr/bin/sh"), Some("dash:amd64=0.5.12-2".to_string()));
        assert_eq!(owner_of(&index, b"/bin/sh.distrib"), None);
        assert_eq!(owner_of(&index, b"/usr/bin/pg_config"), Some("postgresql-common:all=248+deb12u1".to_string()));
        assert_eq!(
            owner_of(&index, b"/usr/bin/pg_config.libpq-dev"),
            Some("libpq-dev:amd64=15.18-0+deb12u1".to_string())
        );
        // A local diversion: the administrator's file sits at the original name, coreutils' under the new one.
        assert_eq!(owner_of(&index, b"/usr/bin/cp"), None);
        assert_eq!(owner_of(&index, b"/usr/bin/cp.orig"), Some("coreutils:amd64=9.1-1".to_string()));
    }

    #[test]
    fn without_aliases_each_spelling_is_its_own_path() {
        let index = synthetic_index(UsrAliases::default());
        assert_eq!(owner_of(&index, b"/bin/ls"), Some("coreutils:amd64=9.1-1".to_string()));
        assert_eq!(owner_of(&index, b"/usr/bin/ls"), None);
        assert_eq!(owner_of(&index, b"/usr/lib/x86_64-linux-gnu/libc.so.6"), None);
    }

    #[test]
    fn aliases_are_only_the_links_into_usr() {
        let root = tempfile::tempdir().expect("temp dir");
        for dir in ["usr/bin", "usr/sbin", "usr/lib", "lib"] {
            fs::create_dir_all(root.path().join(dir)).expect("create dir");
        }
        for (link, target) in [("bin", "usr/bin"), ("sbin", "/usr/sbin/"), ("lib64", "usr/lib"), ("lib32", "opt/lib32")]
        {
            std::os::unix::fs::symlink(target, root.path().join(link)).expect("symlink");
        }
        let aliases = UsrAliases::detect(root.path());
        let canonical = |path: &'static [u8]| aliases.canonical(path).into_owned();
        assert_eq!(canonical(b"/bin/sh"), b"/usr/bin/sh");
        assert_eq!(canonical(b"/bin"), b"/usr/bin");
        assert_eq!(canonical(b"/sbin/init"), b"/usr/sbin/init");
        assert_eq!(canonical(b"/lib/x86_64-linux-gnu/libc.so.6"), b"/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(canonical(b"/lib64/ld-linux-x86-64.so.2"), b"/lib64/ld-linux-x86-64.so.2");
        assert_eq!(canonical(b"/lib32/libc.so.6"), b"/lib32/libc.so.6");
        assert_eq!(canonical(b"/binaries/tool"), b"/binaries/tool");
        assert_eq!(canonical(b"/usr/bin/sh"), b"/usr/bin/sh");
    }

    #[test]
    fn no_database_is_not_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(DpkgIndex::load(dir.path(), None).expect("load").is_none());
        assert!(DpkgIndex::load(&dir.path().join("missing"), Some(dir.path())).expect("load").is_none());
    }

    #[test]
    fn malformed_files_are_named_in_the_error() {
        let cases = [
            ("Package: a\nStatus: install ok installed\nnot a field\n", None, "status, line 3: a line that is neither"),
            ("Status: install ok installed\nVersion: 1\n", None, "status, line 1: a stanza without a Package field"),
            ("Package: a\nStatus: installed\n", None, "status, line 1: package a has a Status that is not three words"),
            (
                "\nPackage: a\nStatus: install ok installed\nArchitecture: all\n",
                None,
                "line 2: installed package a has no Version",
            ),
            ("Package: a\nStatus: install ok unpacked\nVersion: 1\n", None, "installed package a has no Architecture"),
            (
                "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n",
                Some("/a\n/a.orig\n"),
                "diversions, line 2: the line count",
            ),
        ];
        for (status, diversions, expected) in cases {
            let dir = admin_dir(status, diversions, &[]);
            let error = DpkgIndex::load_with_aliases(dir.path(), UsrAliases::default()).expect_err(expected);
            let message = error.to_string();
            assert!(message.contains(expected), "{message:?} does not contain {expected:?}");
            assert!(message.contains(&dir.path().display().to_string()), "{message:?} does not name the file");
        }
    }

    #[test]
    fn a_missing_info_dir_is_a_read_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("status"), STATUS).expect("write status");
        let error = DpkgIndex::load_with_aliases(dir.path(), UsrAliases::default()).expect_err("no info dir");
        assert!(matches!(&error, DpkgError::Read { path, .. } if path.ends_with("info")), "{error}");
    }

    #[test]
    fn instances_of_one_package_share_paths_and_different_packages_conflict() {
        let package = |name: &str, architecture: &str| SystemPackage {
            name: name.to_string(),
            version: "1".to_string(),
            architecture: architecture.to_string(),
            manager: MANAGER,
        };
        let packages = [package("libc6", "amd64"), package("libc6", "i386"), package("other", "all")];
        let mut builder = IndexBuilder::new(&packages, &[]);
        // Whichever instance is read first, the first in package order wins.
        for (path, lister) in [(&b"/usr/share/doc/libc6/copyright"[..], 1), (b"/usr/share/doc/libc6/copyright", 0)] {
            builder.add_entry(path, lister);
        }
        for (path, lister) in
            [(&b"/usr/share/doc/libc6/changelog.gz"[..], 0), (b"/usr/share/doc/libc6/changelog.gz", 1)]
        {
            builder.add_entry(path, lister);
        }
        for (path, lister) in [(&b"/usr/share/both"[..], 1), (b"/usr/share/both", 0), (b"/usr/share/both", 2)] {
            builder.add_entry(path, lister);
        }
        let owners = builder.finish(&[]);
        assert_eq!(owners.get(&b"/usr/share/doc/libc6/copyright"[..]), Some(&0));
        assert_eq!(owners.get(&b"/usr/share/doc/libc6/changelog.gz"[..]), Some(&0));
        assert_eq!(owners.get(&b"/usr/share/both"[..]), None);
    }

    /// What `dpkg-query -W -f=FORMAT PACKAGE` prints, or `None` when dpkg-query is missing or fails.
    fn dpkg_query(format: &str, package: &str) -> Option<String> {
        let output = Command::new("dpkg-query").args(["-W", "-f", format, package]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    #[test]
    fn this_machine() {
        let admin_dir = Path::new(DEFAULT_ADMIN_DIR);
        let Some(index) = DpkgIndex::load(admin_dir, None).expect("load the dpkg database") else {
            eprintln!("no dpkg database at {DEFAULT_ADMIN_DIR}: not a Debian system, skipped");
            return;
        };
        let installed = dpkg_query("${db:Status-Status}\\n", "*").expect("dpkg-query lists the packages");
        let installed = installed.lines().filter(|state| !["not-installed", "config-files"].contains(state));
        assert_eq!(index.package_count(), installed.count());

        let owner_name = |path: &[u8]| index.owner(path).map(|package| package.name.as_str());
        assert_eq!(owner_name(b"/bin/sh"), Some("dash"));
        if index.aliases.canonical(b"/bin/sh").as_ref() == b"/usr/bin/sh" {
            assert_eq!(owner_name(b"/usr/bin/sh"), Some("dash"));
        }
        assert_eq!(owner_name(b"/etc/hostname"), None); // written by the installer; `dpkg -S` finds no owner
        assert_eq!(owner_name(b"/tmp/reprotrace-dpkg-test/output.csv"), None);
        assert_eq!(owner_name(b"/usr/bin"), None);
        if Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6").exists() {
            let version = dpkg_query("${Version}", "libc6").expect("libc6 is installed");
            for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"] {
                let libc6 = index.owner(path.as_bytes()).expect("libc.so.6 has an owner");
                assert_eq!((libc6.name.as_str(), libc6.version.as_str()), ("libc6", version.as_str()));
            }
        }
        let diversions = read_diversions(&admin_dir.join("diversions"), &UsrAliases::detect(Path::new("/")))
            .expect("read the diversions");
        for diversion in diversions {
            let Some(diverter) = diversion.diverter.filter(|name| dpkg_query("${Version}", name).is_some()) else {
                continue;
            };
            assert_eq!(
                owner_name(&diversion.from),
                Some(diverter.as_str()),
                "{}",
                String::from_utf8_lossy(&diversion.from)
            );
        }
    }
}
