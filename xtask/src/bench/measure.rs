//! Running and timing one process: wall time around spawn→wait, CPU time from
//! `wait4`'s rusage, and the few facts read from `/proc` and from reprotrace's
//! manifest.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::Child,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// No run of any workload takes this long, even under ptrace; a run that does
/// is stuck (a tracer waiting for something that never comes), and the bench
/// should report it and go on rather than hang.
pub const RUN_LIMIT: Duration = Duration::from_secs(600);

/// How a waited-for process ended, and what it cost.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// From just before the spawn (or from the caller's start) to the reap.
    pub wall: Duration,
    /// User + system time of the process and of every descendant it reaped
    /// (a tracer reaps its traced tree, so this includes the command's CPU).
    pub cpu_s: f64,
    pub status: WaitStatus,
}

/// A raw wait status, as `wait4` reports it.
#[derive(Debug, Clone, Copy)]
pub struct WaitStatus(libc::c_int);

impl WaitStatus {
    pub fn success(self) -> bool {
        libc::WIFEXITED(self.0) && libc::WEXITSTATUS(self.0) == 0
    }

    pub fn code(self) -> Option<i32> {
        libc::WIFEXITED(self.0).then(|| libc::WEXITSTATUS(self.0))
    }

    pub fn signal(self) -> Option<i32> {
        libc::WIFSIGNALED(self.0).then(|| libc::WTERMSIG(self.0))
    }
}

impl std::fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code(), self.signal()) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (_, Some(signal)) => write!(f, "killed by signal {signal}"),
            _ => write!(f, "wait status {:#x}", self.0),
        }
    }
}

/// Waits for `child` with `wait4` (for its rusage), timing from `start`. After
/// `limit` it is sent SIGTERM (reprotrace and strace pass that on to their
/// tree), then SIGKILL, and the wait is reported as a time-out.
pub fn wait(child: Child, start: Instant, limit: Duration) -> Result<Finished> {
    let pid = pid_of(&child);
    // `Child` is dropped without waiting (std never reaps on drop), so the reap
    // below is the only one.
    drop(child);
    let (done, timed_out) = watchdog(pid, limit);
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid for writes; pid is our child.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).with_context(|| format!("waiting for process {pid}"));
        }
    }
    let wall = start.elapsed();
    // The watchdog may already have gone (time-out); then nobody listens.
    let _ = done.send(());
    if timed_out.load(Ordering::SeqCst) {
        bail!("still running after {} s: stopped it (is something waiting for input or a signal?)", limit.as_secs());
    }
    Ok(Finished { wall, cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime), status: WaitStatus(status) })
}

/// Waits for `child` like [`wait`], and fails unless it exited with 0. `what`
/// names it in the error, `log` is where its output went (its tail is quoted).
pub fn wait_success(child: Child, start: Instant, what: &str, log: Option<&Path>) -> Result<Finished> {
    let finished = wait(child, start, RUN_LIMIT).with_context(|| what.to_string())?;
    if !finished.status.success() {
        bail!("{what} failed ({}){}", finished.status, log.map(log_tail).unwrap_or_default());
    }
    Ok(finished)
}

/// Sends SIGTERM, then SIGKILL, to `pid` if `done` is not signalled in time.
fn watchdog(pid: libc::pid_t, limit: Duration) -> (mpsc::Sender<()>, Arc<AtomicBool>) {
    let (done, finished) = mpsc::channel::<()>();
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&timed_out);
    std::thread::spawn(move || {
        if finished.recv_timeout(limit) != Err(mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        flag.store(true, Ordering::SeqCst);
        send_signal(pid, libc::SIGTERM);
        if finished.recv_timeout(Duration::from_secs(10)) == Err(mpsc::RecvTimeoutError::Timeout) {
            send_signal(pid, libc::SIGKILL);
        }
    });
    (done, timed_out)
}

pub fn pid_of(child: &Child) -> libc::pid_t {
    // Linux pids fit in pid_t (at most 2^22).
    child.id() as libc::pid_t
}

pub fn send_signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; a gone pid just yields ESRCH, which is
    // what we want to ignore (the process ended on its own).
    unsafe { libc::kill(pid, signal) };
}

/// The last lines of a run's output, to quote in an error (empty if none).
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(": {}", lines[lines.len().saturating_sub(3)..].join(" | "))
}

/// A child's stderr, read line by line on a thread (so the child never blocks
/// on a full pipe), kept for error messages and searchable while it comes in.
pub struct StderrWatch {
    lines: mpsc::Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl StderrWatch {
    pub fn new(child: &mut Child) -> Result<Self> {
        let stderr = child.stderr.take().context("the child's stderr was not piped")?;
        let (sender, lines) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut seen) = keep.lock() {
                    seen.push(line.clone());
                }
                // After the wait is over nobody listens; keep draining anyway.
                let _ = sender.send(line);
            }
        });
        Ok(Self { lines, seen })
    }

    /// Waits until a line contains `needle` (if given), or `ready()` says so,
    /// within `limit`. Fails if the stream ends first (the child exited).
    pub fn wait_for(&self, needle: Option<&str>, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if ready() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("not ready after {} s{}", limit.as_secs(), self.quoted());
            }
            match self.lines.recv_timeout(left.min(Duration::from_millis(20))) {
                Ok(line) if needle.is_some_and(|needle| line.contains(needle)) => return Ok(()),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if ready() {
                        return Ok(());
                    }
                    bail!("it ended before it was ready{}", self.quoted());
                }
            }
        }
    }

    /// What it printed so far, as `: line | line` (empty if nothing).
    pub fn quoted(&self) -> String {
        let seen = self.seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        let lines: Vec<&String> = seen.iter().filter(|line| !line.trim().is_empty()).collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail: Vec<&str> = lines[lines.len().saturating_sub(3)..].iter().map(|line| line.as_str()).collect();
        format!(": {}", tail.join(" | "))
    }
}

/// Reads all of a child's stdout (the attach workload prints its loop time).
pub fn read_stdout(child: &mut Child) -> Result<String> {
    let mut text = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut text).context("reading the workload's output")?;
    }
    Ok(text)
}

/// Fields of `/proc/PID/stat` after the command name (which may contain
/// spaces and parentheses, so split after its last `)`): index 0 is the state.
fn proc_stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU seconds a live process used: its threads' user and system time, plus
/// that of the children it reaped (a helper the daemon starts counts too).
pub fn proc_cpu_seconds(pid: libc::pid_t) -> Result<f64> {
    let fields = proc_stat_fields(pid).with_context(|| format!("reading /proc/{pid}/stat (has it exited?)"))?;
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let ticks: u64 = fields
        .get(11..15)
        .context("/proc/PID/stat is shorter than expected")?
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok(ticks as f64 / per_second as f64)
}

/// A `/proc/PID/status` field's number (`VmHWM`, `TracerPid`, ...).
pub fn proc_status_number(pid: libc::pid_t, field: &str) -> Option<u64> {
    field_number(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, field)
}

/// The number of a `field:\tvalue [unit]` line of a `/proc` file's `text`.
pub fn field_number(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// Whether `pid` is still running (not gone, not a zombie waiting for us);
/// unlike `try_wait` this does not reap it, so `wait4` still gets its rusage.
pub fn is_running(pid: libc::pid_t) -> bool {
    proc_stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z" && state != "X"))
}

/// Whether some descendant of `root` runs a program called `comm`.
pub fn has_descendant_named(root: libc::pid_t, comm: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    let mut parents: Vec<(libc::pid_t, libc::pid_t, String)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        let Some(ppid) = proc_stat_fields(pid).and_then(|fields| fields.get(1)?.parse().ok()) else { continue };
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        parents.push((pid, ppid, name.trim().to_string()));
    }
    let mut tree = vec![root];
    // Grow the set of descendants until it stops growing (the table is small).
    loop {
        let before = tree.len();
        for (pid, ppid, _) in &parents {
            if tree.contains(ppid) && !tree.contains(pid) {
                tree.push(*pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    parents.iter().any(|(pid, _, name)| *pid != root && tree.contains(pid) && name == comm)
}

/// What a reprotrace manifest says about the audit's cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct ManifestStats {
    pub events: u64,
    pub lost_events: u64,
    pub duration_ms: u64,
    /// reprotrace's own peak RSS; older binaries do not write it.
    pub peak_rss_kib: Option<u64>,
}

pub fn read_manifest_stats(path: &Path) -> Result<ManifestStats> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reprotrace wrote no manifest at {} (see its error above)", path.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let stats = &manifest["stats"];
    let number =
        |key: &str| stats[key].as_u64().with_context(|| format!("{} has no stats.{key} number", path.display()));
    Ok(ManifestStats {
        events: number("events")?,
        lost_events: number("lost_events")?,
        duration_ms: number("duration_ms")?,
        peak_rss_kib: stats["peak_rss_kib"].as_u64(),
    })
}

/// Makes the bench the reaper of its descendants' orphans, so that what a run
/// leaves behind (reprotrace's detach helper outlives it on purpose) becomes
/// our child: [`settle`] can wait for it and count its CPU.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes a plain integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_CHILD_SUBREAPER)");
    }
    Ok(())
}

/// What a run left behind, once it has ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settled {
    /// How long after the run the last leftover process ended.
    pub wall: Duration,
    /// Their user + system time.
    pub cpu_s: f64,
}

/// Waits for every child of the bench (orphans a run left behind,
/// adopted by [`become_subreaper`]), untimed, so they neither slow the next
/// run down nor go uncounted. After `limit` they are killed and it fails.
pub fn settle(limit: Duration) -> Result<Settled> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let start = Instant::now();
    let mut cpu_s = 0.0;
    loop {
        let left: Vec<libc::pid_t> = children_of(me);
        if left.is_empty() {
            return Ok(Settled { wall: start.elapsed(), cpu_s });
        }
        for pid in &left {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value of that plain C struct.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: status and usage are valid for writes; WNOHANG never blocks.
            if unsafe { libc::wait4(*pid, &mut status, libc::WNOHANG, &mut usage) } == *pid {
                cpu_s += seconds(usage.ru_utime) + seconds(usage.ru_stime);
            }
        }
        if start.elapsed() > limit {
            for pid in &left {
                send_signal(*pid, libc::SIGKILL);
            }
            bail!(
                "processes the run left behind ({left:?}) were still running {} s after it: killed them",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn seconds(time: libc::timeval) -> f64 {
    time.tv_sec as f64 + time.tv_usec as f64 / 1e6
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            proc_stat_fields(*pid).and_then(|fields| fields.get(1)?.parse::<libc::pid_t>().ok()) == Some(parent)
        })
        .collect()
}
