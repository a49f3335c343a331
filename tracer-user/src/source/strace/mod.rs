//! The strace backend: runs the command under `strace -f` with the fastest
//! correct options, then parses the log into the same events the eBPF backend
//! produces.

pub mod parse;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use crate::launch::Credentials;

/// The syscalls both backends model (tracer-common's program table, by name).
pub const TRACED_SYSCALLS: &str = "open,creat,openat,openat2,execve,execveat,chdir,fchdir,\
rename,renameat,renameat2,unlink,unlinkat,rmdir,mkdir,mkdirat,link,linkat,symlink,symlinkat,\
truncate,ftruncate,close,close_range,dup,dup2,dup3,fcntl,clone,clone3,fork,vfork";

#[derive(Debug, thiserror::Error)]
pub enum StraceError {
    #[error("strace is not installed (needed by `--backend strace`): install it, e.g. `apt-get install strace`")]
    NotInstalled,
    #[error("cannot start strace: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot read the strace log {path}: {source}")]
    ReadLog { path: PathBuf, source: std::io::Error },
}

/// Finds strace on PATH.
pub fn find_strace() -> Result<PathBuf, StraceError> {
    crate::launch::find_program(std::ffi::OsStr::new("strace")).map_err(|_| StraceError::NotInstalled)
}

/// What strace follows: a command it starts (as the sudo user, if any), or
/// running processes it attaches to.
pub enum Target<'a> {
    Launch(Option<&'a Credentials>, &'a [OsString]),
    Attach(&'a [u32]),
}

/// The strace command line that traces `target` into `log`.
///
/// `--seccomp-bpf` stops the tracee only on the syscalls we model (strace
/// cannot use it when attaching); `-X raw` prints flags as numbers (no table to
/// keep in sync); `-s 65536` keeps paths and arguments whole; `-q` drops attach
/// messages. Signal lines stay: `-e signal=none` would also hide `+++ killed by
/// SIG… +++`.
pub fn strace_args(log: &Path, target: &Target) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-f", "-q", "-X", "raw", "-s", "65536"].iter().map(OsString::from).collect();
    args.push("-e".into());
    args.push(format!("trace={TRACED_SYSCALLS}").into());
    args.push("-o".into());
    args.push(log.as_os_str().to_owned());
    match target {
        Target::Launch(credentials, command) => {
            args.push("--seccomp-bpf".into());
            if let Some(credentials) = credentials {
                args.push("-u".into());
                args.push(credentials.user.clone().into());
            }
            args.push("--".into());
            args.extend(command.iter().cloned());
        }
        Target::Attach(pids) => {
            for pid in *pids {
                args.push("-p".into());
                args.push(pid.to_string().into());
            }
        }
    }
    args
}

/// The command that runs strace on `target`, logging to `log`.
pub fn command(strace: &Path, log: &Path, target: Target) -> tokio::process::Command {
    let mut strace = tokio::process::Command::new(strace);
    strace.args(strace_args(log, &target));
    strace
}

/// The command strace started (its first child), once it has started it.
pub fn traced_root(strace_pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Parses a finished strace log.
pub fn read_log(path: &Path) -> Result<parse::StraceLog, StraceError> {
    let read_error = |source| StraceError::ReadLog { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    parse::parse_log(std::io::BufReader::with_capacity(1 << 20, file)).map_err(read_error)
}
