//! Processes: starting them with their output in a log file, running short
//! commands within a time limit, reading `/proc`, and signalling.

use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// How often waits look again.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// What `/proc/PID/stat` says about a process.
pub(crate) struct Stat {
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    pub pgid: u32,
    /// Clock ticks after boot: with the pid, identifies the process across pid reuse.
    pub start_time: u64,
}

/// The process's `/proc/PID/stat`, or `None` when there is no such process.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 of proc(5), so field N is fields[N - 3].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether the process exists and is not a zombie.
pub(crate) fn is_running(pid: u32) -> bool {
    stat(pid).is_some_and(|stat| !matches!(stat.state, 'Z' | 'X' | 'x'))
}

/// The process's command name, for messages.
pub(crate) fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).map(|comm| comm.trim().to_string()).unwrap_or_default()
}

/// The network namespace of a process, as (device, inode) of its nsfs file.
pub(crate) fn netns_of(pid: u32) -> Option<(u64, u64)> {
    fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|meta| (meta.dev(), meta.ino()))
}

/// Every process id in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Sends `signal` to one process. Never to pid 0 or 1, nor to this process:
/// whatever a state file says, nothing else can be hit.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    if pid <= 1 || pid == std::process::id() || pid > i32::MAX as u32 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Opens (truncating) `log` for a process's stdout and stderr.
fn log_file(log: &Path) -> Result<(fs::File, fs::File)> {
    let file = fs::File::create(log).with_context(|| format!("cannot create the log file {}", log.display()))?;
    let other = file.try_clone().with_context(|| format!("cannot duplicate the log file {}", log.display()))?;
    Ok((file, other))
}

/// Starts `command` in a process group of its own, stdin from /dev/null,
/// stdout and stderr into `log`. Nothing ties it to this process: it keeps
/// running when this process exits.
pub(crate) fn spawn_logged(command: &mut Command, log: &Path, what: &str) -> Result<Child> {
    let (out, err) = log_file(log)?;
    command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    command.spawn().with_context(|| format!("cannot start {what}: {command:?}"))
}

/// The last `lines` lines of a log file (at most its last 16 KiB), indented
/// for an error message.
pub(crate) fn tail(log: &Path, lines: usize) -> String {
    const MAX: u64 = 16 * 1024;
    let text = (|| -> std::io::Result<String> {
        let mut file = fs::File::open(log)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    })();
    match text {
        Err(err) => format!("    (cannot read {}: {err})", log.display()),
        Ok(text) if text.trim().is_empty() => format!("    ({} is empty)", log.display()),
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let shown = &all[all.len().saturating_sub(lines)..];
            let mut out = format!("    last lines of {}:", log.display());
            for line in shown {
                out.push_str("\n    | ");
                out.push_str(line);
            }
            out
        }
    }
}

/// A finished command's status and output.
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (in a process group of its own, stdin from /dev/null) to the
/// end, calling `watch` every [`POLL`]; kills its group when `limit` passes or
/// `watch` fails, and returns that failure.
pub(crate) fn output_within(
    command: &mut Command,
    limit: Duration,
    mut watch: impl FnMut() -> Result<()>,
) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {command:?}"))?;
    let reader = |stream: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(err) => break Err(anyhow::Error::new(err).context(format!("waiting for {command:?}"))),
        }
        if let Err(err) = watch() {
            break Err(err);
        }
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!("{command:?} did not finish within {} s", limit.as_secs()));
        }
        thread::sleep(POLL);
    };
    if outcome.is_err() {
        // The whole group, so that nothing holds the pipes open.
        signal_group(child.id(), libc::SIGKILL);
        let _ = child.wait();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(Output { status: outcome?, stdout, stderr })
}

/// Sends `signal` to a process group we started (its leader is `pgid`).
fn signal_group(pgid: u32, signal: libc::c_int) {
    if pgid <= 1 || pgid > i32::MAX as u32 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // negative pid addresses the group, never "every process" (that is -1).
    unsafe { libc::kill(-(pgid as libc::pid_t), signal) };
}

/// Runs a short command that must succeed within `limit`; returns its stdout.
pub(crate) fn run_quick(command: &mut Command, limit: Duration) -> Result<String> {
    let output = output_within(command, limit, || Ok(()))?;
    if !output.status.success() {
        bail!("{command:?} failed ({}): {}", output.status, output.stderr.trim());
    }
    Ok(output.stdout)
}
