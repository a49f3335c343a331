//! Reading a site directory's distributions as `importlib.metadata` does:
//! `.dist-info` (`METADATA`, `INSTALLER`, `RECORD`), `.egg-info` directories
//! and files, develop installs and eggs; and the small parsers their files
//! need (RFC 822 headers, Python's line splitting, CSV's first field).

use std::{
    borrow::Cow,
    fs,
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::MetadataExt,
    },
};

use super::{
    editable::{editable_roots, pth_directories, read_direct_url, DirectUrl},
    ends_with_ignore_case,
    inputs::ScanLog,
    modified, normalize_name, os_path, strip_suffix_ignore_case, Distribution, Evidence, Found, PythonError, Rank,
    SplitByte,
};
use crate::tracker::path::{file_name, join, parent};

pub(super) fn scan_site_dir(site: &[u8], log: &mut ScanLog) -> Vec<Found> {
    let entries = match log.read_dir(site) {
        Ok(entries) => entries,
        Err(error) => {
            log.problem_unless_absent(site, error);
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
            found.extend(scan_dist_info(site, name, log));
        } else if ends_with_ignore_case(name, b".egg-info") {
            found.extend(scan_egg_info(site, name, log));
        } else if let Some(stem) = name.strip_suffix(b".egg-link") {
            let link = join(site, name);
            let Some(text) = log.read(&link) else { continue };
            let target = text_lines(&text).next().map(<[u8]>::trim_ascii).unwrap_or_default();
            if !target.is_empty() {
                let wanted = normalize_name(&String::from_utf8_lossy(stem));
                develop_roots.push((join(site, target), Some(wanted)));
            }
        } else if name == b"easy-install.pth" {
            let Some(text) = log.read(&join(site, name)) else { continue };
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
        found.extend(scan_develop_root(&root, wanted.as_deref(), log));
    }
    found
}

/// A `.dist-info` directory: `METADATA`, `INSTALLER`, `direct_url.json`, `RECORD`.
pub(super) fn scan_dist_info(site: &[u8], dir_name: &[u8], log: &mut ScanLog) -> Option<Found> {
    let dir = join(site, dir_name);
    let metadata = log.metadata(&dir).filter(fs::Metadata::is_dir)?;
    let (name, version) = name_and_version(&dir, dir_name, log);
    let installer = log
        .read(&join(&dir, b"INSTALLER"))
        .map(|text| String::from_utf8_lossy(text.trim_ascii()).into_owned())
        .filter(|installer| !installer.is_empty());
    let direct_url = read_direct_url(&dir, log);
    let editable = direct_url.as_ref().is_some_and(DirectUrl::is_editable);
    let record = log.read(&join(&dir, b"RECORD"));
    let evidence = if record.is_some() { Evidence::Installed } else { Evidence::TopLevel };
    let files: Vec<Vec<u8>> = record
        .map(|record| text_lines(&record).map(|line| join(site, &csv_first_field(line))).collect())
        .unwrap_or_default();
    let (package_roots, path_entries) = match &direct_url {
        Some(direct_url) if editable => editable_roots(site, &files, &direct_url.url, log),
        // Debian strips RECORD: the import names are all that says what is whose.
        _ if evidence == Evidence::TopLevel => (top_level_roots(&dir, site, &name, log), Vec::new()),
        _ => (Vec::new(), Vec::new()),
    };
    Some(Found {
        distribution: Distribution { name, version, installer, location: site.to_vec(), editable },
        identity: (metadata.dev(), metadata.ino()),
        rank: Rank { evidence, modified: modified(&metadata) },
        files,
        package_roots,
        path_entries,
    })
}

/// A `.egg-info` directory (files from `installed-files.txt`, relative to it,
/// or `SOURCES.txt`, relative to the site directory) or a distutils
/// `.egg-info` file (metadata only).
pub(super) fn scan_egg_info(site: &[u8], entry_name: &[u8], log: &mut ScanLog) -> Option<Found> {
    let path = join(site, entry_name);
    let metadata = log.metadata(&path)?;
    let (name, version, evidence, files) = if metadata.is_dir() {
        let (name, version) = name_and_version(&path, entry_name, log);
        let listed = |file_name: &[u8], base: &[u8], log: &mut ScanLog| {
            let text = log.read(&join(&path, file_name))?;
            // importlib quotes each line before parsing it as CSV.
            let files = text_lines(&text).map(|line| join(base, &csv_first_field(&quoted(line)))).collect();
            Some(files)
        };
        match listed(b"installed-files.txt", &path, log) {
            Some(files) => (name, version, Evidence::Installed, files),
            None => match listed(b"SOURCES.txt", site, log) {
                Some(files) => (name, version, Evidence::Sources, files),
                None => (name, version, Evidence::TopLevel, Vec::new()),
            },
        }
    } else {
        let head = log.read_head(&path).unwrap_or_default();
        let (name, version) = named_or_stem(&head, &path, entry_name, log);
        (name, version, Evidence::Installed, Vec::new())
    };
    // Debian's `.egg-info` directories list no files: the import names say.
    let package_roots = match evidence {
        Evidence::TopLevel if metadata.is_dir() => top_level_roots(&path, site, &name, log),
        _ => Vec::new(),
    };
    Some(Found {
        distribution: Distribution { name, version, installer: None, location: site.to_vec(), editable: false },
        identity: (metadata.dev(), metadata.ino()),
        rank: Rank { evidence, modified: modified(&metadata) },
        files,
        package_roots,
        path_entries: Vec::new(),
    })
}

/// The import roots `top_level.txt` in metadata directory `dir` names, in the
/// site directory: each package directory, or module (`six` for `six.py`).
/// A root that is a namespace package (`namespace_packages.txt`), which
/// several distributions share, narrows to the distribution's own part when
/// its name says which: `lazr/uri` for `lazr.uri` in namespace `lazr`.
fn top_level_roots(dir: &[u8], site: &[u8], distribution: &str, log: &mut ScanLog) -> Vec<Vec<u8>> {
    let Some(text) = log.read(&join(dir, b"top_level.txt")) else { return Vec::new() };
    let namespaces = log.read(&join(dir, b"namespace_packages.txt")).unwrap_or_default();
    let namespaces: Vec<&[u8]> = text_lines(&namespaces).map(<[u8]>::trim_ascii).collect();
    text_lines(&text)
        .map(<[u8]>::trim_ascii)
        .filter(|name| !name.is_empty())
        .map(|name| {
            // Narrowed only to a part that is there (a name spelled otherwise
            // than its directory keeps the whole root, shared as before).
            own_part_of_namespace(name, &namespaces, distribution)
                .map(|part| join(site, &part))
                .filter(|part| log.metadata(part).is_some_and(|metadata| metadata.is_dir()))
                .unwrap_or_else(|| join(site, name))
        })
        .collect()
}

/// The path, under the site directory, of `distribution`'s part of namespace
/// package `root` (the longest of `namespaces` its dotted name extends), if
/// `root` is one.
fn own_part_of_namespace(root: &[u8], namespaces: &[&[u8]], distribution: &str) -> Option<Vec<u8>> {
    let name = distribution.as_bytes();
    namespaces
        .iter()
        .filter(|namespace| namespace.split(|&byte| byte == b'.').next() == Some(root))
        .filter(|namespace| {
            name.len() > namespace.len() + 1 && name.starts_with(namespace) && name[namespace.len()] == b'.'
        })
        .max_by_key(|namespace| namespace.len())
        .map(|_| name.iter().map(|&byte| if byte == b'.' { b'/' } else { byte }).collect())
}

/// A directory a develop install or an egg put on `sys.path`, read as
/// importlib reads it from there: the egg's `EGG-INFO`, owning everything in
/// the egg, or the `.egg-info` directories in it (only the one named `wanted`,
/// normalised, for an egg-link), owning the code under it. Their file lists
/// are located from this directory.
pub(super) fn scan_develop_root(root: &[u8], wanted: Option<&str>, log: &mut ScanLog) -> Vec<Found> {
    if ends_with_ignore_case(root, b".egg") {
        let egg = scan_egg_info(root, b"EGG-INFO", log);
        return egg.into_iter().map(|egg| Found { package_roots: vec![root.to_vec()], ..egg }).collect();
    }
    let Ok(entries) = log.read_dir(root) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().into_vec();
        let Some(stem) = strip_suffix_ignore_case(&name, b".egg-info") else { continue };
        let stem_name = normalize_name(&String::from_utf8_lossy(egg_info_name(stem)));
        if wanted.is_some_and(|wanted| wanted != stem_name) {
            continue;
        }
        found.extend(scan_egg_info(root, &name, log).map(|develop| Found {
            distribution: Distribution { editable: true, ..develop.distribution },
            path_entries: vec![root.to_vec()],
            ..develop
        }));
    }
    found
}

/// Name and version from the metadata of a `.dist-info` or `.egg-info`
/// directory: `METADATA`, else `PKG-INFO` (the first that is not empty, as importlib reads them).
pub(super) fn name_and_version(dir: &[u8], dir_name: &[u8], log: &mut ScanLog) -> (String, String) {
    let head = [b"METADATA".as_slice(), b"PKG-INFO"]
        .into_iter()
        .find_map(|file| log.read_head(&join(dir, file)).filter(|head| !head.is_empty()))
        .unwrap_or_default();
    named_or_stem(&head, dir, dir_name, log)
}

/// `Name:` and `Version:` of metadata headers; the `name-version` stem of the
/// metadata directory stands in for a missing one (a reported problem).
pub(super) fn named_or_stem(head: &[u8], path: &[u8], dir_name: &[u8], log: &mut ScanLog) -> (String, String) {
    let (name, version) = (header(head, b"Name"), header(head, b"Version"));
    if name.is_none() || version.is_none() {
        log.problems.push(PythonError::Metadata { path: os_path(path).to_path_buf() });
    }
    let stem = dir_name.rsplit_once_byte(b'.').map_or(dir_name, |(stem, _suffix)| stem);
    let (stem_name, stem_version) = stem.split_once_byte(b'-').unwrap_or((stem, b""));
    (
        name.unwrap_or_else(|| String::from_utf8_lossy(stem_name).into_owned()),
        version.unwrap_or_else(|| String::from_utf8_lossy(stem_version).into_owned()),
    )
}

/// The name part of an `.egg-info` stem (`My_Proj-1.0` → `My_Proj`).
pub(super) fn egg_info_name(stem: &[u8]) -> &[u8] {
    stem.split_once_byte(b'-').map_or(stem, |(name, _version)| name)
}

/// The first value of header `key` (case-insensitive) in RFC 822 headers, as
/// Python's `email` parser gives it: leading blanks and the line end removed,
/// continuation lines kept. The headers end at the first line that is neither
/// `name:` (printable ASCII name) nor a continuation.
pub(super) fn header(head: &[u8], key: &[u8]) -> Option<String> {
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

/// Lines as Python's `str.splitlines()` cuts UTF-8 text (importlib splits
/// `RECORD` so): at `\n`, `\r`, `\r\n`, `\v`, `\f`, `\x1c`-`\x1e`, U+0085,
/// U+2028 and U+2029.
pub(super) fn text_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
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
pub(super) fn csv_first_field(line: &[u8]) -> Cow<'_, [u8]> {
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

pub(super) fn quoted(line: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(line.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(line);
    quoted.push(b'"');
    quoted
}

/// `dir/__pycache__/mod.<tag>[.opt-N].pyc` → `dir/mod.py`, as
/// `importlib.util.source_from_cache` maps it.
pub fn bytecode_source(path: &[u8]) -> Option<Vec<u8>> {
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
