//! Finding a running Jupyter kernel and installing the cell hook in it.

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum JupyterError {
    #[error(
        "no Jupyter kernel {0}: not a connection file, and no kernel-{0}.json in the Jupyter runtime \
         directories ({1}); `jupyter --runtime-dir` shows where yours are"
    )]
    UnknownKernel(String, String),
    #[error("no running process uses the kernel connection file {0} (has the kernel exited?)")]
    NoKernelProcess(PathBuf),
    #[error("cannot install the cell hook in the kernel: {0}")]
    Inject(String),
}

/// The connection file a user named: a path, or a kernel id looked up in the
/// Jupyter runtime directories.
pub fn connection_file(spec: &str) -> Result<PathBuf, JupyterError> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()));
    }
    let id = spec.trim_start_matches("kernel-").trim_end_matches(".json");
    let dirs = runtime_dirs();
    dirs.iter().map(|dir| dir.join(format!("kernel-{id}.json"))).find(|candidate| candidate.is_file()).ok_or_else(
        || {
            let searched: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
            JupyterError::UnknownKernel(spec.to_string(), searched.join(", "))
        },
    )
}

/// Where Jupyter keeps connection files: `$JUPYTER_RUNTIME_DIR`, then each
/// user's data directory (for root and the sudo user), then `/run/user/*`.
fn runtime_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("JUPYTER_RUNTIME_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    let mut homes: Vec<PathBuf> = std::env::var_os("HOME").map(PathBuf::from).into_iter().collect();
    if let Ok(user) = std::env::var("SUDO_USER") {
        homes.push(PathBuf::from("/home").join(user));
    }
    for home in homes {
        dirs.push(home.join(".local/share/jupyter/runtime"));
    }
    if let Ok(users) = std::fs::read_dir("/run/user") {
        dirs.extend(users.flatten().map(|user| user.path().join("jupyter/runtime")));
    }
    dirs
}

/// The process whose command line names `connection_file` (`-f FILE` or
/// `--f=FILE`, as kernel launchers pass it).
pub fn kernel_pid(connection_file: &Path) -> Result<u32, JupyterError> {
    let wanted = connection_file.as_os_str().as_bytes();
    let name = connection_file.file_name().map(OsStr::as_bytes).unwrap_or(wanted);
    let entries = std::fs::read_dir("/proc").map_err(|_| JupyterError::NoKernelProcess(connection_file.into()))?;
    let mut pids: Vec<u32> = entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids.into_iter()
        .find(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            cmdline.split(|&byte| byte == 0).any(|arg| {
                let arg = arg.strip_prefix(b"--f=").unwrap_or(arg);
                arg == wanted || (arg.ends_with(name) && arg.get(arg.len() - name.len() - 1) == Some(&b'/'))
            })
        })
        .ok_or_else(|| JupyterError::NoKernelProcess(connection_file.to_path_buf()))
}

/// Installs the cell hook in the running kernel `pid`: its own Python sends one
/// silent execute request (not stored in history) over the Jupyter protocol,
/// with jupyter_client, that loads the extension from `hook_dir`. Returns the
/// kernel's pid once it has.
pub async fn inject_hooks(pid: u32, connection_file: &Path, hook_dir: &Path) -> Result<u32, JupyterError> {
    let python =
        kernel_python(pid).ok_or_else(|| JupyterError::Inject(format!("cannot find process {pid}'s Python")))?;
    let output = tokio::process::Command::new(&python)
        .args(["-m", "reprotrace.inject"])
        .arg(connection_file)
        .arg(hook_dir)
        .env("PYTHONPATH", crate::hooks::python_path(hook_dir))
        // Detaching before it is done leaves no injector behind.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| JupyterError::Inject(format!("running {}: {err}", python.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(JupyterError::Inject(stderr.trim().to_string()));
    }
    Ok(pid)
}

/// The kernel's interpreter as it was started (a venv's `bin/python` keeps the
/// venv's packages, which `/proc/PID/exe`, the resolved binary, would not).
fn kernel_python(pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|&byte| byte == 0).next()?;
    if first.first() == Some(&b'/') {
        return Some(PathBuf::from(OsStr::from_bytes(first)));
    }
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn finds_the_process_naming_a_connection_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kernel-abc.json");
        std::fs::write(&file, "{}").expect("connection file");
        let mut holder = Command::new("sh")
            .args(["-c", "sleep 5", "sh"])
            .arg(format!("--f={}", file.display()))
            .spawn()
            .expect("sh");
        // Until the child has exec'd, its command line is still ours.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            match kernel_pid(&file) {
                Ok(pid) => break pid,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(err) => panic!("{err}"),
            }
        };
        assert_eq!(found, holder.id());
        holder.kill().expect("kill");
        let _ = holder.wait();
        assert_eq!(
            connection_file(file.to_str().expect("utf-8")).expect("by path"),
            file.canonicalize().expect("canon")
        );
        std::env::set_var("JUPYTER_RUNTIME_DIR", dir.path());
        assert_eq!(connection_file("abc").expect("by id"), dir.path().join("kernel-abc.json"));
        assert!(matches!(connection_file("nope"), Err(JupyterError::UnknownKernel(..))));
    }
}
