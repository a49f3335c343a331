//! Finding Jupyter kernels, running ones and ones a traced command starts, and
//! installing the cell hook in them ([`client`]).

pub mod client;

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use procfs::process::FDTarget;
use serde::Deserialize;

/// What reprotrace reads of a kernel's connection file.
#[derive(Debug, Deserialize)]
pub struct ConnectionInfo {
    #[serde(default = "tcp")]
    pub transport: String,
    pub ip: String,
    pub shell_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "hmac_sha256")]
    pub signature_scheme: String,
}

fn tcp() -> String {
    "tcp".into()
}

fn hmac_sha256() -> String {
    "hmac-sha256".into()
}

impl ConnectionInfo {
    pub fn read(connection_file: &Path) -> Result<ConnectionInfo, JupyterError> {
        let fail = |why: String| JupyterError::ConnectionFile(connection_file.to_path_buf(), why);
        let text = std::fs::read(connection_file).map_err(|err| fail(err.to_string()))?;
        serde_json::from_slice(&text).map_err(|err| fail(format!("not a kernel connection file ({err})")))
    }

    /// Where the kernel's shell channel listens, as ZeroMQ names it.
    pub fn shell_endpoint(&self) -> String {
        match self.transport.as_str() {
            "ipc" => format!("ipc://{}-{}", self.ip, self.shell_port),
            transport => format!("{transport}://{}:{}", self.ip, self.shell_port),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JupyterError {
    #[error(
        "no Jupyter kernel {0}: not a connection file, and no kernel-{0}.json in the Jupyter runtime \
         directories ({1}); `jupyter --runtime-dir` shows where yours are"
    )]
    UnknownKernel(String, String),
    #[error("no running kernel uses the connection file {0}: {1} (has the kernel exited?)")]
    NoKernelProcess(PathBuf, String),
    #[error("cannot read the kernel connection file {0}: {1}")]
    ConnectionFile(PathBuf, String),
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

/// The kernel serving `connection`: the process that holds open the socket
/// listening on its shell port (a TCP port, or an `ipc` transport's socket
/// file), the topmost when children inherited it. Never this process or what
/// it started: a stale file whose port someone else took is not a kernel.
pub fn kernel_pid(connection_file: &Path, connection: &ConnectionInfo) -> Result<u32, JupyterError> {
    let no_kernel = |why: String| JupyterError::NoKernelProcess(connection_file.to_path_buf(), why);
    let inodes = listening_inodes(connection).map_err(|err| no_kernel(format!("cannot read the sockets: {err}")))?;
    if inodes.is_empty() {
        return Err(no_kernel(format!("nothing listens on its shell port, {}", connection.shell_endpoint())));
    }
    let mut ours = crate::snapshot::descendants_of_this_process().unwrap_or_default();
    ours.push(std::process::id());
    let mut holders = BTreeMap::new();
    let all = procfs::process::all_processes().map_err(|err| no_kernel(format!("cannot list processes: {err}")))?;
    for process in all.flatten() {
        let pid = process.pid as u32;
        if ours.contains(&pid) {
            continue;
        }
        let Ok(fds) = process.fd() else { continue };
        let holds = fds.flatten().any(|fd| matches!(fd.target, FDTarget::Socket(inode) if inodes.contains(&inode)));
        if holds {
            holders.insert(pid, process.stat().map(|stat| stat.ppid as u32).unwrap_or(0));
        }
    }
    let topmost: Vec<u32> =
        holders.iter().filter(|(_, ppid)| !holders.contains_key(ppid)).map(|(&pid, _)| pid).collect();
    match topmost.as_slice() {
        [pid] => Ok(*pid),
        [] => Err(no_kernel(format!(
            "no process of this host's namespaces holds the socket listening on {}",
            connection.shell_endpoint()
        ))),
        several => Err(no_kernel(format!(
            "several unrelated processes ({several:?}) hold the socket listening on {}",
            connection.shell_endpoint()
        ))),
    }
}

/// The inodes of the sockets listening where `connection` says the kernel's
/// shell channel is.
fn listening_inodes(connection: &ConnectionInfo) -> procfs::ProcResult<BTreeSet<u64>> {
    if connection.transport == "ipc" {
        let path = PathBuf::from(format!("{}-{}", connection.ip, connection.shell_port));
        let path = std::path::absolute(&path).unwrap_or(path);
        let sockets = procfs::net::unix()?;
        return Ok(sockets
            .into_iter()
            .filter(|socket| socket.path.as_ref() == Some(&path))
            .map(|socket| socket.inode)
            .collect());
    }
    let mut sockets = procfs::net::tcp()?;
    sockets.extend(procfs::net::tcp6()?);
    Ok(sockets
        .into_iter()
        .filter(|socket| {
            socket.state == procfs::net::TcpState::Listen && socket.local_address.port() == connection.shell_port
        })
        .map(|socket| socket.inode)
        .collect())
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
        "import reprotrace\n\
         if hasattr(reprotrace, 'collect_dask'):\n    reprotrace.collect_dask()\n\
         else:\n    import reprotrace.dask\n    reprotrace.dask.collect_kernel_clients()\n",
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

    fn connection(dir: &Path, name: &str, port: u16) -> (PathBuf, ConnectionInfo) {
        let file = dir.join(name);
        let text = format!(r#"{{"transport": "tcp", "ip": "127.0.0.1", "shell_port": {port}, "key": "k"}}"#);
        std::fs::write(&file, text).expect("connection file");
        let info = ConnectionInfo::read(&file).expect("readable");
        (file, info)
    }

    #[test]
    fn the_kernel_is_the_process_listening_on_its_shell_port() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A listener that is not this process's descendant: its shell exits at once.
        let port_file = dir.path().join("port");
        let listener = format!(
            "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\n\
             open({:?}, 'w').write(str(s.getsockname()[1]))\ntime.sleep(30)\n",
            port_file.display().to_string()
        );
        let started = Command::new("sh")
            .args(["-c", "python3 -c \"$1\" >/dev/null 2>&1 & echo $!", "sh", &listener])
            .output()
            .expect("sh");
        let pid: u32 = String::from_utf8_lossy(&started.stdout).trim().parse().expect("pid");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let port: u16 = loop {
            match std::fs::read_to_string(&port_file).ok().and_then(|text| text.parse().ok()) {
                Some(port) => break port,
                None if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                None => panic!("the listener never said its port"),
            }
        };
        let (file, info) = connection(dir.path(), "kernel-abc.json", port);
        let found = kernel_pid(&file, &info);
        let _ = Command::new("kill").arg(pid.to_string()).status();
        assert_eq!(found.expect("found"), pid);

        // This process's own sockets are never a kernel, nor is a port nobody holds.
        let own = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let (file, info) = connection(dir.path(), "kernel-own.json", own.local_addr().expect("addr").port());
        let err = kernel_pid(&file, &info).expect_err("ours");
        assert!(err.to_string().contains("no process of this host's namespaces holds"), "{err}");
        drop(own);
        let err = kernel_pid(&file, &info).expect_err("nobody listens");
        assert!(err.to_string().contains("nothing listens on its shell port, tcp://127.0.0.1:"), "{err}");

        std::fs::write(&file, "{}").expect("not a connection file");
        let err = ConnectionInfo::read(&file).expect_err("refused");
        assert!(err.to_string().contains("not a kernel connection file"), "{err}");

        assert_eq!(
            connection_file(file.to_str().expect("utf-8")).expect("by path"),
            file.canonicalize().expect("canon")
        );
        std::env::set_var("JUPYTER_RUNTIME_DIR", dir.path());
        assert_eq!(connection_file("abc").expect("by id"), dir.path().join("kernel-abc.json"));
        assert!(matches!(connection_file("nope"), Err(JupyterError::UnknownKernel(..))));
    }
}
