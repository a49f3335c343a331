//! Finding Jupyter kernels, running ones and ones a traced command starts, and
//! installing the cell hook in them ([`client`]).

pub mod client;

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

/// The connection file of an IPython kernel, from the command line that
/// starts it (`python -m ipykernel_launcher -f FILE`, `--f=FILE`, or
/// `--ConnectionFileMixin.connection_file=FILE`), made absolute against `cwd`;
/// `None` for any other command.
pub fn kernel_connection_file(argv: &[Vec<u8>], cwd: &[u8]) -> Option<PathBuf> {
    let is_kernel = argv
        .iter()
        .any(|arg| arg == b"ipykernel_launcher" || arg == b"ipykernel" || arg.ends_with(b"/ipykernel_launcher.py"));
    if !is_kernel {
        return None;
    }
    let mut args = argv.iter();
    let file = loop {
        let arg = args.next()?;
        if arg == b"-f" {
            break args.next()?.clone();
        }
        for prefix in [&b"--f="[..], b"--ConnectionFileMixin.connection_file="] {
            if let Some(file) = arg.strip_prefix(prefix) {
                return Some(absolute(file, cwd));
            }
        }
    };
    Some(absolute(&file, cwd))
}

fn absolute(file: &[u8], cwd: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&crate::tracker::path::resolve(cwd, file)))
}

/// Installs the cell hook in the kernel using `connection_file` (see
/// [`client::install_hook`]), connected to the audit's `channel` if given.
pub async fn inject_hooks(connection_file: &Path, hook_dir: &Path, channel: Option<&Path>) -> Result<(), JupyterError> {
    client::install_hook(connection_file, hook_dir, channel, HOOK_TIMEOUT).await
}

/// Makes the kernel's Dask clients, those it has and those it makes, take
/// part in the audit: they register reprotrace's plugins, and report their
/// workers' audits to `reports` (python/reprotrace/dask.py, in `hook_dir`).
pub async fn join_dask_clients(connection_file: &Path, hook_dir: &Path, reports: &Path) -> Result<(), JupyterError> {
    let dir = serde_json::to_string(&hook_dir.to_string_lossy()).unwrap_or_default();
    let reports = serde_json::to_string(&reports.to_string_lossy()).unwrap_or_default();
    let code = format!(
        "import sys as _reprotrace_sys\n\
         if {dir} not in _reprotrace_sys.path:\n    _reprotrace_sys.path.insert(0, {dir})\n\
         del _reprotrace_sys\n\
         import reprotrace.dask\n\
         reprotrace.dask.join_kernel_clients({reports})\n"
    );
    client::execute_silently(connection_file, &code, HOOK_TIMEOUT).await
}

/// The audit ends: the kernel's Dask clients collect their workers' audits
/// now, and stop taking part.
pub async fn collect_dask_clients(connection_file: &Path) -> Result<(), JupyterError> {
    client::execute_silently(
        connection_file,
        "import reprotrace.dask\nreprotrace.dask.collect_kernel_clients()\n",
        HOOK_TIMEOUT,
    )
    .await
}

/// How long a kernel may take to start listening and answer the hook's request.
const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn kernels_are_recognised_by_their_command_line() {
        let argv = |args: &[&str]| args.iter().map(|arg| arg.as_bytes().to_vec()).collect::<Vec<_>>();
        let kernel = argv(&["/v/bin/python", "-m", "ipykernel_launcher", "-f", "/tmp/k.json"]);
        assert_eq!(kernel_connection_file(&kernel, b"/w"), Some(PathBuf::from("/tmp/k.json")));
        let relative = argv(&["python3", "-m", "ipykernel", "--f=run/k.json"]);
        assert_eq!(kernel_connection_file(&relative, b"/w"), Some(PathBuf::from("/w/run/k.json")));
        assert_eq!(kernel_connection_file(&argv(&["python3", "-f", "x.json"]), b"/w"), None);
        assert_eq!(kernel_connection_file(&argv(&["python3", "-m", "ipykernel_launcher"]), b"/w"), None);
    }

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
