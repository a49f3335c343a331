//! The run side of distributed audits (`run --dask`): the directory the
//! command's Dask clients bring their workers' audits back to, and the Dask
//! configuration that tells them to (a client preload, set through Dask's
//! environment variables: the only change `--dask` makes to the command's
//! environment). Merging them is [`crate::merge`]'s job.

use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::hooks;

const PRELOAD_VARIABLE: &str = "DASK_DISTRIBUTED__CLIENT__PRELOAD";
const PRELOAD_ARGV_VARIABLE: &str = "DASK_DISTRIBUTED__CLIENT__PRELOAD_ARGV";

#[derive(Debug, thiserror::Error)]
pub enum DaskError {
    #[error("--dask sets {PRELOAD_VARIABLE}, which is already set ({0:?}): unset it, or load reprotrace's client preload yourself")]
    PreloadSet(OsString),
    #[error("cannot make the directory the Dask workers' audits come back to: {0}")]
    Reports(#[source] std::io::Error),
    #[error(transparent)]
    Hooks(#[from] hooks::HookError),
}

/// Where the command's clients leave their workers' audits; removed when dropped.
pub struct Reports {
    dir: tempfile::TempDir,
    preload: PathBuf,
}

impl Reports {
    /// A private directory, the clients' (`owner`'s uid and gid, when they run
    /// as another user than reprotrace), and the client preload written
    /// beside reprotrace's other Python hooks.
    pub fn create(owner: Option<(u32, u32)>) -> Result<Reports, DaskError> {
        if let Some(set) = std::env::var_os(PRELOAD_VARIABLE) {
            return Err(DaskError::PreloadSet(set));
        }
        let preload = hooks::install()?.join(hooks::DASK_CLIENT_PRELOAD);
        let dir = tempfile::Builder::new().prefix("reprotrace-dask-").tempdir().map_err(DaskError::Reports)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(DaskError::Reports)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(DaskError::Reports)?;
        }
        Ok(Reports { dir, preload })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The client preload (`reprotrace_dask_client.py`).
    pub fn preload(&self) -> &Path {
        &self.preload
    }

    /// The variables that make every client of the command load the preload.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        // Dask reads these as Python literals; JSON strings are ones.
        let list = |items: &[&str]| OsString::from(serde_json::Value::from(items.to_vec()).to_string());
        let preload = self.preload.to_string_lossy();
        let reports = self.dir.path().to_string_lossy();
        vec![
            (PRELOAD_VARIABLE.into(), list(&[&preload])),
            (PRELOAD_ARGV_VARIABLE.into(), list(&["--reports", &reports])),
        ]
    }
}
