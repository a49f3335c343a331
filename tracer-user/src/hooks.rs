//! The Python cell hook (python/ in the repository), embedded in the binary and
//! written to a directory the traced Python processes can import it from.
//!
//! `reprotrace run` puts that directory first on `PYTHONPATH` with
//! `REPROTRACE_CELL_MARKERS=1`, so IPython kernels it launches load the hook
//! through its `sitecustomize` (which chains to the one it shadows), with no
//! change to the notebook or the user's profile. `reprotrace attach
//! --inject-hooks` has a running kernel import it from there.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// Files of the hook directory: (relative path, contents).
const FILES: &[(&str, &str)] = &[
    ("sitecustomize.py", include_str!("../../python/sitecustomize.py")),
    ("reprotrace/__init__.py", include_str!("../../python/reprotrace/__init__.py")),
    ("reprotrace/markers.py", include_str!("../../python/reprotrace/markers.py")),
    ("reprotrace/inject.py", include_str!("../../python/reprotrace/inject.py")),
];

/// The environment variable that turns the hook on in `sitecustomize`.
pub const ENABLE_VARIABLE: &str = "REPROTRACE_CELL_MARKERS";

#[derive(Debug, thiserror::Error)]
#[error("cannot write the Python cell hook to {path}: {source}")]
pub struct HookError {
    path: PathBuf,
    source: std::io::Error,
}

/// Writes the hook files (once per content: the directory name carries a hash
/// of them) and returns the directory. Root uses /run/reprotrace, readable by
/// everyone (the command may run as the sudo user); others their runtime dir.
pub fn install() -> Result<PathBuf, HookError> {
    let euid = rustix::process::geteuid();
    let base = if euid.is_root() {
        PathBuf::from("/run/reprotrace")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("reprotrace-{}", euid.as_raw()))
    };
    let dir = base.join(format!("python-hooks-{:016x}", content_hash()));
    if dir.join(FILES[0].0).exists() {
        return Ok(dir);
    }
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HookError { path, source }
    };
    std::fs::create_dir_all(&base).map_err(fail(&base))?;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).map_err(fail(&base))?;
    // Assembled aside and renamed into place: concurrent audits never see half a hook.
    let staging = tempfile::Builder::new().prefix(".hooks-").tempdir_in(&base).map_err(fail(&base))?;
    for (relative, contents) in FILES {
        let path = staging.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail(parent))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).map_err(fail(parent))?;
        }
        let mut file = std::fs::File::create(&path).map_err(fail(&path))?;
        file.write_all(contents.as_bytes()).map_err(fail(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(fail(&path))?;
    }
    let staged = staging.keep();
    if let Err(err) = std::fs::rename(&staged, &dir) {
        // Another audit installed the same hook first.
        let _ = std::fs::remove_dir_all(&staged);
        if !dir.join(FILES[0].0).exists() {
            return Err(HookError { path: dir, source: err });
        }
    }
    Ok(dir)
}

/// FNV-1a over the embedded files: changes whenever the hook does.
fn content_hash() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (relative, contents) in FILES {
        for byte in relative.bytes().chain(contents.bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// `PYTHONPATH` with the hook directory first.
pub fn python_path(hook_dir: &Path) -> std::ffi::OsString {
    let mut value = hook_dir.as_os_str().to_owned();
    if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|existing| !existing.is_empty()) {
        value.push(":");
        value.push(existing);
    }
    value
}
