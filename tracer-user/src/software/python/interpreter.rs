//! CPython installations and virtual environments: which interpreter an
//! executable is, which installation a standard-library file belongs to, and
//! their versions, found without running Python.

use std::{fs, io::Read, os::unix::ffi::OsStringExt, sync::LazyLock};

use memchr::memmem;

use super::{is_site_dir_name, metadata::text_lines, os_path, Interpreter, SplitByte};
use crate::tracker::path::{file_name, join, parent, resolve};

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

/// Splits a standard-library path into (prefix, `<prefix>/lib/pythonX.Y`,
/// `pythonX.Y`); `None` inside its site directories.
pub(super) fn stdlib_location(path: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut search_from = 0;
    // Built once, not for each path: every file of an audit's end is asked.
    static LIB: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"/lib"));
    while let Some(found) = LIB.find(&path[search_from..]) {
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
pub(super) fn major_minor(name: &[u8]) -> Option<&str> {
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
pub(super) fn is_python_executable_name(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"python") else { return false };
    let digits_and_dots = rest.iter().take_while(|byte| byte.is_ascii_digit() || **byte == b'.').count();
    let abi_flags = &rest[digits_and_dots..];
    abi_flags.len() <= 1 && abi_flags.iter().all(u8::is_ascii_lowercase)
}

/// The installation of the standard library at `stdlib_dir`.
pub(super) fn installation(prefix: &[u8], stdlib_dir: &[u8], version_dir: &[u8]) -> Option<Interpreter> {
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
pub(super) fn has_landmark(stdlib_dir: &[u8]) -> bool {
    [b"os.py".as_slice(), b"os.pyc"].iter().any(|landmark| fs::metadata(os_path(&join(stdlib_dir, landmark))).is_ok())
}

/// The nearest directory at or above `start` with a standard library
/// (`lib/pythonX.Y/os.py`, or `lib64/`), as CPython searches for its prefix,
/// and that library's directory name. With a `hint` (`python3.11`), the
/// library named so, else the only one of that X.Y; without, the only one.
pub(super) fn find_installation(start: &[u8], hint: Option<&[u8]>) -> Option<(Vec<u8>, Vec<u8>)> {
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
pub(super) fn venv_interpreter(path: &[u8], venv: &[u8], config: &[u8]) -> Option<Interpreter> {
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
pub(super) fn patch_version(prefix: &[u8], version_dir: &[u8], executable: &[u8]) -> Option<String> {
    let major_minor = major_minor(version_dir)?;
    let include = join(prefix, b"include");
    let headers = entries_starting_with(&include, version_dir)
        .into_iter()
        .map(|dir| join(&join(&include, &dir), b"patchlevel.h"));
    let library_dir = join(prefix, b"lib");
    let libraries = entries_starting_with(&library_dir, &[b"lib".as_slice(), version_dir].concat())
        .into_iter()
        .filter(|name| memmem::find(name, b".so").is_some())
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

pub(super) fn entries_starting_with(dir: &[u8], prefix: &[u8]) -> Vec<Vec<u8>> {
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
pub(super) fn version_from_patchlevel(text: &[u8]) -> Option<String> {
    text.split(|&byte| byte == b'\n').find_map(|line| {
        let rest = line.trim_ascii().strip_prefix(b"#define")?.trim_ascii_start().strip_prefix(b"PY_VERSION")?;
        let quoted = rest.trim_ascii().strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        Some(String::from_utf8_lossy(quoted).into_owned())
    })
}

/// CPython keeps `PY_VERSION` as its own NUL-terminated string (`"3.11.2"`).
pub(super) fn version_in_binary(binary: &[u8], major_minor: &str) -> Option<String> {
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

pub(super) fn is_elf(path: &[u8]) -> bool {
    let mut magic = [0; 4];
    fs::File::open(os_path(path)).and_then(|mut file| file.read_exact(&mut magic)).is_ok() && &magic == b"\x7fELF"
}
