//! The Python side (python/ in the repository: the cell hook, and the Dask
//! client preload of `run --dask`), embedded in the binary and written to a
//! directory the kernels and clients can import it from.
//!
//! The traced command's environment is left as it was given: the hook is
//! loaded into each IPython kernel through the kernel's own Jupyter protocol
//! (see [`crate::jupyter::client`]), by `reprotrace run` as soon as a kernel
//! starts in the traced tree and by `reprotrace attach --inject-hooks`.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::kernel_channel::{ChannelError, KernelChannels};

/// Files of the hook directory: (relative path, contents).
const FILES: &[(&str, &str)] = &[
    ("reprotrace/__init__.py", include_str!("../../python/reprotrace/__init__.py")),
    ("reprotrace/markers.py", include_str!("../../python/reprotrace/markers.py")),
    ("reprotrace/names.py", include_str!("../../python/reprotrace/names.py")),
    ("reprotrace/channel.py", include_str!("../../python/reprotrace/channel.py")),
    ("reprotrace/dask.py", include_str!("../../python/reprotrace/dask.py")),
    ("reprotrace_dask_client.py", include_str!("../../python/reprotrace_dask_client.py")),
];

/// The Dask client preload in the hook directory (`run --dask`).
pub const DASK_CLIENT_PRELOAD: &str = "reprotrace_dask_client.py";

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

/// The user and group of process `pid` (those of its /proc directory).
pub fn owner_of(pid: u32) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}")).ok().map(|metadata| (metadata.uid(), metadata.gid()))
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

/// Cell hooks being installed in kernels, each in a task of its own, while
/// the audit goes on.
#[derive(Default)]
pub struct KernelHooks {
    /// The hook directory, written the first time a kernel needs it.
    dir: Option<PathBuf>,
    installing: tokio::task::JoinSet<(u32, Result<(), crate::jupyter::JupyterError>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelHookError {
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

impl KernelHooks {
    /// Starts installing the hook in kernel `pid`, which uses
    /// `connection_file`, with a channel to this audit among `channels`.
    pub fn start(
        &mut self,
        pid: u32,
        connection_file: PathBuf,
        channels: &mut KernelChannels,
    ) -> Result<(), KernelHookError> {
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => self.dir.insert(install()?).clone(),
        };
        let channel = channels.open(pid, owner_of(pid))?;
        self.installing
            .spawn(async move { (pid, crate::jupyter::inject_hooks(&connection_file, &dir, Some(&channel)).await) });
        Ok(())
    }

    /// The next installation that finished: the kernel's pid and how it went.
    /// Pending forever while none is under way.
    pub async fn next(&mut self) -> (u32, Result<(), crate::jupyter::JupyterError>) {
        match self.installing.join_next().await {
            Some(Ok(done)) => done,
            Some(Err(panicked)) => (0, Err(crate::jupyter::JupyterError::Inject(panicked.to_string()))),
            None => std::future::pending().await,
        }
    }
}
