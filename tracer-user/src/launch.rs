//! Starting the audited command: found on PATH the way strace finds it, run as
//! the user who invoked sudo (never silently as root), and held at a gate until
//! the tracer follows it, so that not one of its syscalls is missed.

use std::{
    ffi::{CString, OsStr, OsString},
    io::{Read, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::ffi::{OsStrExt, OsStringExt},
    },
    path::{Path, PathBuf},
};

use rustix::{
    pipe::{pipe_with, PipeFlags},
    process::{geteuid, kill_process, Pid, Signal},
};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no command given: put it after `--`, e.g. `reprotrace run -- python3 script.py`")]
    NoCommand,
    #[error("command not found: {0} (no executable file of that name in any PATH directory)")]
    NotFound(String),
    #[error("{0}: no such file")]
    NoSuchFile(String),
    #[error("{0} is not an executable file")]
    NotExecutable(String),
    #[error("an argument contains a NUL byte")]
    NulInArgument,
    #[error("SUDO_UID/SUDO_GID are set but not numbers ({0}); unset them or run reprotrace as that user")]
    BadSudoIds(String),
    #[error("cannot start the command: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot exec {program}: {source}")]
    Exec { program: String, source: std::io::Error },
}

/// The user the command runs as when reprotrace itself runs as root under sudo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
}

/// What to start, as whom, with which extra environment.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    /// The file to execute.
    pub program: PathBuf,
    pub argv: Vec<OsString>,
    /// Who the command runs as: the user who invoked sudo, if any.
    pub credentials: Option<Credentials>,
    /// Variables set, or replaced, in reprotrace's own environment.
    pub environment: Vec<(OsString, OsString)>,
    /// Run the program in this root rather than in ours (`reprotrace repeat`).
    pub sandbox: Option<Sandbox>,
}

/// A root the program runs in, alone: a private mount namespace where the
/// root holds only what is in `root` (plus the host's `/dev` and a `/proc`),
/// no network unless `network`. Its `/tmp` is the root's own, new with it.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub root: PathBuf,
    /// The working directory, inside the root.
    pub cwd: PathBuf,
    pub network: bool,
}

impl LaunchSpec {
    /// `command` (its first word found as execvp would), run as the user who
    /// invoked sudo.
    pub fn new(command: Vec<OsString>, environment: Vec<(OsString, OsString)>) -> Result<Self, LaunchError> {
        let program = find_program(command.first().ok_or(LaunchError::NoCommand)?)?;
        Ok(LaunchSpec { program, argv: command, credentials: sudo_credentials()?, environment, sandbox: None })
    }

    /// The environment the command starts with: ours; under sudo, the
    /// invoking user's `HOME`, `USER` and `LOGNAME` over root's (which sudo
    /// left: a command of the user's with `HOME=/root` finds no
    /// configuration of its own and cannot write its caches); then the
    /// spec's variables set or replaced.
    pub fn command_environment(&self) -> Vec<(OsString, OsString)> {
        let identity = self.credentials.as_ref().map(identity_environment).unwrap_or_default();
        let in_spec = |key: &OsString| self.environment.iter().any(|(extra, _)| extra == key);
        let in_identity = |key: &OsString| identity.iter().any(|(name, _)| name == key);
        std::env::vars_os()
            .filter(|(key, _)| !in_spec(key) && !in_identity(key))
            .chain(identity.iter().filter(|(key, _)| !in_spec(key)).cloned())
            .chain(self.environment.iter().cloned())
            .collect()
    }
}

/// The invoking user when reprotrace runs as root under sudo, else `None`
/// (then the command keeps reprotrace's own identity).
pub fn sudo_credentials() -> Result<Option<Credentials>, LaunchError> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    let (Some(uid), Some(gid)) = (std::env::var_os("SUDO_UID"), std::env::var_os("SUDO_GID")) else {
        return Ok(None);
    };
    let parse = |value: &OsStr| value.to_str().and_then(|text| text.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (parse(&uid), parse(&gid)) else {
        return Err(LaunchError::BadSudoIds(format!("{uid:?}/{gid:?}")));
    };
    if uid == 0 {
        return Ok(None);
    }
    let user = std::env::var("SUDO_USER").unwrap_or_else(|_| uid.to_string());
    let groups = supplementary_groups(&user, gid);
    Ok(Some(Credentials { user, uid, gid, groups }))
}

/// `HOME` (from the user database), `USER` and `LOGNAME` of `credentials`,
/// as `sudo -u USER` or a login sets them.
fn identity_environment(credentials: &Credentials) -> Vec<(OsString, OsString)> {
    let mut identity = Vec::new();
    if let Some(home) = home_directory(credentials.uid) {
        identity.push((OsString::from("HOME"), home));
    }
    for name in ["USER", "LOGNAME"] {
        identity.push((OsString::from(name), OsString::from(&credentials.user)));
    }
    identity
}

/// The home directory the user database gives `uid` (NSS: only libc reads it).
fn home_directory(uid: libc::uid_t) -> Option<OsString> {
    let mut buffer: Vec<libc::c_char> = vec![0; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids),
    // which getpwuid_r overwrites.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local, the buffer's length is given;
    // getpwuid_r writes only there.
    let rc = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points at a NUL-terminated string inside `buffer`, alive here.
    let home = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
    Some(OsString::from_vec(home.to_bytes().to_vec())).filter(|home| !home.is_empty())
}

/// Under sudo, this process becomes the user who invoked it, for good: what
/// it reads and writes next (a bundle's files, a Docker context) is what
/// that user may read and write. Without sudo, nothing changes.
pub fn become_invoking_user() -> Result<(), LaunchError> {
    let Some(credentials) = sudo_credentials()? else { return Ok(()) };
    // SAFETY: plain system calls on valid data; the groups buffer holds `len` entries.
    let failed = unsafe {
        libc::setgroups(credentials.groups.len(), credentials.groups.as_ptr()) != 0
            || libc::setgid(credentials.gid) != 0
            || libc::setuid(credentials.uid) != 0
    };
    match failed {
        true => Err(LaunchError::Spawn(std::io::Error::last_os_error())),
        false => Ok(()),
    }
}

/// The user's groups, from the system's group database (NSS: only libc reads it).
fn supplementary_groups(user: &str, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let Ok(name) = CString::new(user) else { return vec![gid] };
    let mut groups: Vec<libc::gid_t> = vec![0; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: `name` is NUL-terminated and the buffer holds `count` entries;
    // getgrouplist writes at most that.
    let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
    if rc < 0 {
        return vec![gid];
    }
    groups.truncate(usize::try_from(count).unwrap_or(0));
    groups
}

/// The file to exec for `name`: itself if it has a slash, else the first
/// executable regular file of that name on PATH (as strace and execvp do).
pub fn find_program(name: &OsStr) -> Result<PathBuf, LaunchError> {
    let display = name.to_string_lossy().into_owned();
    if name.as_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return match std::fs::metadata(&path) {
            Ok(metadata) if is_executable_file(&metadata) => Ok(path),
            Ok(_) => Err(LaunchError::NotExecutable(display)),
            Err(_) => Err(LaunchError::NoSuchFile(display)),
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    for dir in search.as_bytes().split(|&byte| byte == b':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = dir.join(name);
        if std::fs::metadata(&candidate).is_ok_and(|metadata| is_executable_file(&metadata)) {
            return Ok(candidate);
        }
    }
    Err(LaunchError::NotFound(display))
}

fn is_executable_file(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
}

impl LaunchError {
    /// The exit code a shell (and `env`, `timeout`) gives this failure: 127
    /// for a command not found, 126 for one that cannot be run.
    pub fn shell_exit_code(&self) -> Option<u8> {
        match self {
            LaunchError::NotFound(_) | LaunchError::NoSuchFile(_) => Some(127),
            LaunchError::NotExecutable(_) => Some(126),
            _ => None,
        }
    }
}

/// A forked child waiting at the gate, before its exec.
pub struct GatedChild {
    pid: u32,
    gate: OwnedFd,
    exec_error: OwnedFd,
    program: String,
}

/// Forks a child that waits for [`GatedChild::open_gate`], then drops to the
/// spec's credentials and execs its program, in our environment with the
/// spec's variables set.
pub fn spawn_gated(spec: &LaunchSpec) -> Result<GatedChild, LaunchError> {
    // Everything the child needs is prepared here: after fork it may only make
    // async-signal-safe calls.
    let c_program = CString::new(spec.program.as_os_str().as_bytes()).map_err(|_| LaunchError::NulInArgument)?;
    let c_argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|arg| CString::new(arg.clone().into_vec()))
        .collect::<Result<_, _>>()
        .map_err(|_| LaunchError::NulInArgument)?;
    let mut argv_ptrs: Vec<*const libc::c_char> = c_argv.iter().map(|arg| arg.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let environ: Vec<CString> = spec
        .command_environment()
        .into_iter()
        .filter_map(|(key, value)| {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            CString::new(entry).ok()
        })
        .collect();
    let mut env_ptrs: Vec<*const libc::c_char> = environ.iter().map(|entry| entry.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let credentials = spec.credentials.as_ref();
    let sandbox = spec.sandbox.as_ref().map(SandboxPaths::new).transpose()?;

    let (gate_read, gate_write) = pipe_with(PipeFlags::CLOEXEC).map_err(|err| LaunchError::Spawn(err.into()))?;
    let (error_read, error_write) = pipe_with(PipeFlags::CLOEXEC).map_err(|err| LaunchError::Spawn(err.into()))?;
    // SAFETY: the child branch below only calls async-signal-safe functions
    // (read, unshare, mount, chroot, chdir, setgroups, setgid, setuid, execve,
    // write, _exit) on data prepared before the fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Spawn(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: as above; every pointer points into data that outlives the
        // child's use of it (the child execs or exits).
        unsafe {
            let mut byte = 0u8;
            if libc::read(gate_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(127);
            }
            if let Some(sandbox) = &sandbox {
                if sandbox.enter() != 0 {
                    report_errno_and_exit(error_write.as_raw_fd());
                }
            }
            if let Some(credentials) = credentials {
                if libc::setgroups(credentials.groups.len(), credentials.groups.as_ptr()) != 0
                    || libc::setgid(credentials.gid) != 0
                    || libc::setuid(credentials.uid) != 0
                {
                    report_errno_and_exit(error_write.as_raw_fd());
                }
            }
            libc::execve(c_program.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
            report_errno_and_exit(error_write.as_raw_fd());
        }
    }
    drop(gate_read);
    drop(error_write);
    Ok(GatedChild {
        pid: pid.unsigned_abs(),
        gate: gate_write,
        exec_error: error_read,
        program: spec.program.to_string_lossy().into_owned(),
    })
}

/// A sandbox's paths, made C strings before the fork.
struct SandboxPaths {
    root: CString,
    dev: CString,
    proc: CString,
    cwd: CString,
    network: bool,
}

impl SandboxPaths {
    fn new(sandbox: &Sandbox) -> Result<SandboxPaths, LaunchError> {
        let c = |path: &Path| CString::new(path.as_os_str().as_bytes()).map_err(|_| LaunchError::NulInArgument);
        Ok(SandboxPaths {
            root: c(&sandbox.root)?,
            dev: c(&sandbox.root.join("dev"))?,
            proc: c(&sandbox.root.join("proc"))?,
            cwd: c(&sandbox.cwd)?,
            network: sandbox.network,
        })
    }

    /// In the forked child: enters the sandbox; 0, or -1 with errno set.
    ///
    /// # Safety
    /// Only for the child of a fork (it changes the process's namespaces and root).
    unsafe fn enter(&self) -> libc::c_int {
        let namespaces = libc::CLONE_NEWNS | if self.network { 0 } else { libc::CLONE_NEWNET };
        let none = std::ptr::null::<libc::c_char>();
        // SAFETY: every pointer is a NUL-terminated string prepared before
        // the fork, or null where the call allows it.
        unsafe {
            if libc::unshare(namespaces) != 0
                || libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
                || libc::mount(
                    c"/dev".as_ptr(),
                    self.dev.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                || libc::mount(c"proc".as_ptr(), self.proc.as_ptr(), c"proc".as_ptr(), 0, std::ptr::null()) != 0
                || libc::chroot(self.root.as_ptr()) != 0
                || libc::chdir(self.cwd.as_ptr()) != 0
            {
                return -1;
            }
        }
        0
    }
}

/// In the forked child: sends errno to the parent and exits as a shell would.
///
/// # Safety
/// Only for the child of a fork, which must not return from it.
unsafe fn report_errno_and_exit(fd: libc::c_int) -> ! {
    // SAFETY: errno is this thread's, and the buffer is 4 valid bytes.
    unsafe {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

impl GatedChild {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lets the child exec; returns once the exec happened, or with why it failed.
    pub fn open_gate(self) -> Result<(), LaunchError> {
        let mut gate = std::fs::File::from(self.gate);
        gate.write_all(&[1]).map_err(LaunchError::Spawn)?;
        drop(gate);
        // The error pipe closes on a successful exec (close-on-exec), or carries errno.
        let mut report = Vec::new();
        let mut reader = std::fs::File::from(self.exec_error);
        reader.read_to_end(&mut report).map_err(LaunchError::Spawn)?;
        match <[u8; 4]>::try_from(report.as_slice()) {
            Ok(errno) => Err(LaunchError::Exec {
                program: self.program,
                source: std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
            }),
            Err(_) => Ok(()),
        }
    }

    /// Kills the child before it ran anything (it could not be followed).
    pub fn abandon(self) {
        if let Some(pid) = Pid::from_raw(self.pid as i32) {
            // It is ours and waits at the gate: it cannot have exited yet.
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_like_execvp() {
        assert!(find_program(OsStr::new("sh")).expect("sh on PATH").is_absolute());
        assert!(matches!(find_program(OsStr::new("no-such-program-xyz")), Err(LaunchError::NotFound(_))));
        assert!(matches!(find_program(OsStr::new("./no-such-program-xyz")), Err(LaunchError::NoSuchFile(_))));
        let data = tempfile::NamedTempFile::new().expect("temp file");
        assert!(matches!(find_program(data.path().as_os_str()), Err(LaunchError::NotExecutable(_))));
    }

    /// The user's identity variables replace ours; the spec's own replace both.
    #[test]
    fn the_command_gets_the_invoking_users_identity() {
        // uid 0 is in every user database; its name here is made up, to tell it from the real one.
        let credentials = Credentials { user: "someone".into(), uid: 0, gid: 0, groups: vec![0] };
        let spec = |environment: Vec<(OsString, OsString)>| LaunchSpec {
            program: PathBuf::from("/bin/true"),
            argv: vec!["true".into()],
            credentials: Some(credentials.clone()),
            environment,
            sandbox: None,
        };
        let value = |environment: &[(OsString, OsString)], name: &str| {
            let values: Vec<&OsString> =
                environment.iter().filter(|(key, _)| key == name).map(|(_, value)| value).collect();
            assert!(values.len() <= 1, "{name} once: {values:?}");
            values.first().map(|value| value.to_string_lossy().into_owned())
        };
        let environment = spec(Vec::new()).command_environment();
        assert_eq!(value(&environment, "USER").as_deref(), Some("someone"));
        assert_eq!(value(&environment, "LOGNAME").as_deref(), Some("someone"));
        assert_eq!(value(&environment, "HOME"), home_directory(0).map(|home| home.to_string_lossy().into_owned()));
        assert!(value(&environment, "HOME").is_some(), "uid 0 has a home directory");
        let recorded = spec(vec![("HOME".into(), "/recorded".into())]).command_environment();
        assert_eq!(value(&recorded, "HOME").as_deref(), Some("/recorded"));
        let unchanged = LaunchSpec { credentials: None, ..spec(Vec::new()) }.command_environment();
        assert_eq!(value(&unchanged, "USER"), std::env::var("USER").ok());
    }
}
