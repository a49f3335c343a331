//! The strace backend: runs the command under `strace -f` with the fastest
//! correct options (or attaches `strace -f -p` to running processes), and
//! turns its log into the same events the eBPF backend produces while strace
//! runs.
//!
//! strace writes its log into a pipe that a dedicated thread reads and parses
//! line by line; it sends the events in batches over a bounded channel to the
//! [`Source`], whose driver feeds them to the pipeline. Memory is bounded by
//! what the pipeline keeps (files, processes), not by the number of syscalls,
//! and the parsing overlaps the run. When the driver lags, the channel fills,
//! the thread stops reading, strace blocks on the full pipe, and so do the
//! tracees: nothing is lost.

pub mod parse;
mod syntax;

use std::{
    ffi::OsString,
    io::{BufReader, PipeReader, PipeWriter, Read},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    thread::JoinHandle,
};

use rustix::{
    event::{poll, PollFd, PollFlags, Timespec},
    process::{kill_process, pidfd_open, pidfd_send_signal, waitpid, Pid, PidfdFlags, Signal, WaitOptions},
};
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::{mpsc, oneshot},
};
use tracer_common::syscalls;

use self::{parse::Parser, syntax::Lines};
use crate::{
    event::{Event, ExistingProcess, Tid},
    launch::{Credentials, LaunchSpec},
    snapshot,
    source::{Counters, Launched, Source, SourceError},
};

#[derive(Debug, thiserror::Error)]
pub enum StraceError {
    #[error("strace is not installed (needed by `--backend strace`): install it, e.g. `apt-get install strace`")]
    NotInstalled,
    #[error("cannot start strace: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot create a pipe for the strace log: {0}")]
    Pipe(#[source] std::io::Error),
    #[error("cannot start the thread that reads the strace log: {0}")]
    StartReader(#[source] std::io::Error),
    #[error("cannot read the strace log: {0}")]
    ReadLog(#[source] std::io::Error),
    #[error("reading the strace log failed unexpectedly")]
    ReaderPanicked,
    #[error("strace exited before it started the command (see its message above)")]
    NothingStarted,
    #[error("strace could not attach to any of the processes: {0}")]
    CouldNotAttach(String),
    #[error("cannot watch strace (pidfd): {0}")]
    Watch(#[source] std::io::Error),
    #[error(
        "strace did not detach within {} s of being asked and was killed (the kernel detached it from the processes); \
         the end of its log may be missing",
        DETACH_PATIENCE.as_secs()
    )]
    DidNotDetach,
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
/// keep in sync); `-s 131072` keeps paths and arguments whole (the kernel's
/// limit on one argument, `MAX_ARG_STRLEN`, is that with its NUL); `-q` drops attach
/// messages. Signal lines stay: `-e signal=none` would also hide `+++ killed by
/// SIG… +++`.
pub fn strace_args(log: &Path, target: &Target) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-f", "-q", "-X", "raw", "-s", "131072"].iter().map(OsString::from).collect();
    args.push("-e".into());
    // The syscalls both backends model (tracer-common's table).
    args.push(format!("trace={}", syscalls::NAMES).into());
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

/// The pipe strace writes its log into.
struct LogPipe {
    reader: PipeReader,
    writer: PipeWriter,
}

impl LogPipe {
    fn new() -> Result<Self, StraceError> {
        // Both ends are close-on-exec: neither strace nor anything else we
        // start inherits them.
        let (reader, writer) = std::io::pipe().map_err(StraceError::Pipe)?;
        // Room for strace to run ahead of the reader (a write that finds the
        // pipe full blocks it, and its tracees). The default 64 KiB if the
        // system refuses (a user over the pipe-user-pages limits).
        let _ = rustix::pipe::fcntl_setpipe_size(&writer, LOG_PIPE_BYTES);
        Ok(LogPipe { reader, writer })
    }

    /// Where strace is to write its log (`-o`): the write end, through our
    /// /proc entry. strace opens it as it would a file, close-on-exec; an
    /// inherited descriptor (`-o /dev/fd/3`) would stay open in the traced
    /// command, visible to it and holding the pipe open after strace ends.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.writer.as_raw_fd()))
    }
}

/// How much of the log the reader takes at a time.
const READ_SIZE: usize = 1 << 16;

/// The log pipe's capacity (the most an unprivileged user may set by default,
/// `/proc/sys/fs/pipe-max-size`).
const LOG_PIPE_BYTES: usize = 1 << 20;

/// Most events in one batch, and batches waiting for the driver: at most
/// some 64k events (a few MiB) are between strace and the pipeline.
const BATCH_EVENTS: usize = 1024;
const BATCHES_IN_FLIGHT: usize = 64;

/// Reads a pipe in chunks rather than as it is written to: strace writes each
/// line in two or more pieces, and waking the reader for every piece costs
/// more than parsing them (and slows strace down on a busy machine).
struct Coalescing(PipeReader);

impl Read for Coalescing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.0.read(buf)?;
        if read > 0 && read < buf.len() / 4 {
            // Let the pipe fill a little. strace writes some 10 MB/s (180 MB
            // in 18 s for a million opens), a fraction of the pipe's 64 KiB
            // in this time, so it does not block meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(read)
    }
}

/// How strace came to follow the processes, which says how it stops.
enum Mode {
    /// It started the command: it cannot leave it running (once strace is
    /// gone, the syscalls its seccomp filter hands to a tracer fail with
    /// ENOSYS), so stopping it early ends the command's processes.
    Launched,
    /// It attached: SIGINT makes it detach, and the processes go on.
    Attached,
}

/// The events of a strace log, as a [`Source`].
pub struct StraceSource {
    mode: Mode,
    strace_pid: u32,
    /// Becomes readable when strace exits (it is not reaped through it).
    strace_exit: AsyncFd<OwnedFd>,
    /// The log pipe's read end, to see how full it is (the reader thread
    /// reads through its own descriptor). Closed when the reader has ended,
    /// so that a strace still writing is told (EPIPE) rather than blocked.
    log: Option<OwnedFd>,
    batches: mpsc::Receiver<Vec<Event>>,
    /// Taken by `finish`, the only place that joins it (an `Option` because
    /// the source has a `Drop`).
    reader: Option<JoinHandle<std::io::Result<u64>>>,
}

impl StraceSource {
    /// Starts `spec` under strace; returns once strace has started it.
    pub async fn launch(spec: &LaunchSpec) -> Result<(StraceSource, Launched), StraceError> {
        let log = LogPipe::new()?;
        let target = Target::Launch(spec.credentials.as_ref(), &spec.argv);
        let mut command = std::process::Command::new(find_strace()?);
        // strace passes its environment on: the command's, as the eBPF
        // backend gives it and the manifest records it.
        command.args(strace_args(&log.path(), &target)).env_clear().envs(spec.command_environment());
        let (root_tx, mut root_rx) = oneshot::channel();
        let (mut source, writer) = StraceSource::start(Mode::Launched, command, log, Some(root_tx))?;
        // The log's first task is the command strace started.
        let root = tokio::select! {
            biased;
            root = &mut root_rx => root.ok(),
            _ = source.strace_exit.readable() => None,
        };
        // strace has the pipe open (it wrote a line) or is gone: its closing
        // alone ends the log from now on.
        drop(writer);
        // strace may have written its log and exited before the reader got to
        // the first line: with the pipe closed, the reader says, or gives up.
        let root = match root {
            Some(root) => Some(root),
            None => root_rx.await.ok(),
        };
        let Some(root) = root else {
            source.drain_unused().await;
            return Err(StraceError::NothingStarted);
        };
        let launched = Launched { root, parent: Some(source.strace_pid), exec_error: None };
        Ok((source, launched))
    }

    /// Attaches strace to the processes of `existing`; returns once it traces
    /// every one of their threads it can, with the processes it follows and
    /// those it cannot (another tracer has them, or strace was refused: it
    /// says why), which are left out.
    pub async fn attach(
        existing: Vec<ExistingProcess>,
    ) -> Result<(StraceSource, Vec<ExistingProcess>, Vec<Untraceable>), StraceError> {
        let log = LogPipe::new()?;
        let pids: Vec<u32> = existing.iter().map(|process| process.pid).collect();
        let mut command = std::process::Command::new(find_strace()?);
        command.args(strace_args(&log.path(), &Target::Attach(&pids)));
        kill_strace_when_reprotrace_dies(&mut command);
        let (mut source, writer) = StraceSource::start(Mode::Attached, command, log, None)?;
        let tids: Vec<u32> = existing.iter().flat_map(|process| process.threads.iter().copied()).collect();
        let strace_pid = source.strace_pid;
        let attached = tokio::select! {
            biased;
            () = settle_attaching(&tids) => true,
            _ = source.strace_exit.readable() => false,
        };
        // strace opens its log before it attaches.
        drop(writer);
        let (followed, untraceable): (Vec<ExistingProcess>, Vec<ExistingProcess>) = existing
            .into_iter()
            .partition(|process| attached && tracer_of(process.pid).is_none_or(|tracer| tracer == strace_pid));
        let untraceable: Vec<Untraceable> = untraceable
            .into_iter()
            .map(|process| Untraceable {
                pid: process.pid,
                tracer: tracer_of(process.pid).filter(|&tracer| tracer != 0),
            })
            .collect();
        if followed.is_empty() {
            // Nothing to trace: strace goes (and no longer opens the log).
            source.signal_strace(Signal::KILL);
            let _ = source.strace_exit.readable().await;
            source.drain_unused().await;
            let reasons: Vec<String> = untraceable.iter().map(Untraceable::to_string).collect();
            return Err(StraceError::CouldNotAttach(reasons.join("; ")));
        }
        Ok((source, followed, untraceable))
    }

    /// Spawns strace and the thread reading its log; hands back our copy of
    /// the log's write end, to be dropped once strace has the log open.
    fn start(
        mode: Mode,
        mut command: std::process::Command,
        log: LogPipe,
        root: Option<oneshot::Sender<Tid>>,
    ) -> Result<(StraceSource, PipeWriter), StraceError> {
        let LogPipe { reader, writer } = log;
        let log = Some(OwnedFd::from(reader.try_clone().map_err(StraceError::Pipe)?));
        // Not waited for through this handle: the driver reaps (see `finish`).
        let strace = command.spawn().map_err(StraceError::Spawn)?;
        let strace_pid = strace.id();
        let pidfd = Pid::from_child(&strace);
        let pidfd = pidfd_open(pidfd, PidfdFlags::empty()).map_err(|err| StraceError::Watch(err.into()))?;
        // SAFETY: the OwnedFd keeps its descriptor open, and the same, while the AsyncFd owns it.
        let strace_exit = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|err| StraceError::Watch(err.into()))?;
        let (batches_tx, batches) = mpsc::channel(BATCHES_IN_FLIGHT);
        let reader = std::thread::Builder::new()
            .name("strace-log".into())
            .spawn(move || {
                read_log(BufReader::with_capacity(READ_SIZE, Coalescing(reader)), root, &mut |batch| {
                    batches_tx.blocking_send(batch).is_ok()
                })
            })
            .map_err(StraceError::StartReader)?;
        Ok((StraceSource { mode, strace_pid, strace_exit, log, batches, reader: Some(reader) }, writer))
    }

    fn strace_has_exited(&self) -> bool {
        let mut fds = [PollFd::new(self.strace_exit.get_ref(), PollFlags::IN)];
        poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).is_ok_and(|ready| ready > 0)
    }

    /// Whether strace may be blocked writing its log: the pipe is more than
    /// half full (strace writes a few KiB at a time, so with half the pipe
    /// free no write of its blocks).
    fn log_is_filling(&self) -> bool {
        self.log.as_ref().is_some_and(|log| {
            let capacity = rustix::pipe::fcntl_getpipe_size(log).unwrap_or(LOG_PIPE_BYTES);
            rustix::io::ioctl_fionread(log).is_ok_and(|queued| queued > capacity as u64 / 2)
        })
    }

    fn signal_strace(&self, signal: Signal) {
        // Through the pidfd: never another process that took strace's pid.
        let _ = pidfd_send_signal(self.strace_exit.get_ref().as_fd(), signal);
    }

    /// After a failed start: reads the log to its end (strace is gone) and
    /// reaps strace.
    async fn drain_unused(&mut self) {
        while self.batches.recv().await.is_some() {}
        self.reap();
    }

    /// Reaps strace if no one did: in `run`, reprotrace reaps every child.
    fn reap(&self) {
        if let Some(pid) = Pid::from_raw(self.strace_pid as i32) {
            let _ = waitpid(Some(pid), WaitOptions::NOHANG);
        }
    }
}

impl Drop for StraceSource {
    /// A source given up before `finish` (an error on the way) leaves no
    /// strace attached: it would go on stopping the processes it was
    /// attached to at every syscall after reprotrace is gone. Killed, not
    /// told to detach: its log is given up, and the kernel detaches a killed
    /// tracer's tracees at once, where a SIGINT may wait for their next event
    /// (see `finish`). (One that started the command follows it to its end,
    /// as the command needs.)
    fn drop(&mut self) {
        if matches!(self.mode, Mode::Attached) && !self.strace_has_exited() {
            self.signal_strace(Signal::KILL);
        }
    }
}

impl Source for StraceSource {
    /// Ends when strace has exited and its log is read.
    async fn next_batch(&mut self, feed: &mut impl FnMut(Event)) -> Result<bool, SourceError> {
        let Some(batch) = self.batches.recv().await else {
            self.log = None;
            return Ok(false);
        };
        batch.into_iter().for_each(&mut *feed);
        while let Ok(batch) = self.batches.try_recv() {
            batch.into_iter().for_each(&mut *feed);
        }
        Ok(true)
    }

    async fn finish(mut self, feed: &mut impl FnMut(Event)) -> Result<Counters, SourceError> {
        let running = !self.strace_has_exited();
        let detaching = running && matches!(self.mode, Mode::Attached);
        if running && matches!(self.mode, Mode::Launched) {
            eprintln!("reprotrace: ending the command's processes (strace cannot leave them running)");
            kill_traced_processes(self.strace_pid);
        }
        // strace writes the rest of its log and exits. An attached one is
        // told to detach with SIGINT, which it acts on between two waits for
        // its tracees: one that comes just before it waits again is seen only
        // at a tracee's next event, which an idle tracee (a kernel at rest, a
        // sleeper) may never make. So the signal is repeated each second
        // until strace is gone. Never while the log pipe is filling: a
        // signal that interrupts strace's write to a full pipe loses what it
        // was writing (it sets no SA_RESTART, and stdio drops the buffer).
        // One that does not act on it at all (stopped, or stuck in the
        // kernel) is killed in the end: the kernel detaches it, and the
        // audit says its log may be cut short.
        let mut detach_due = detaching.then(tokio::time::Instant::now);
        let kill_at = tokio::time::Instant::now() + DETACH_PATIENCE;
        let mut killed = false;
        loop {
            let now = tokio::time::Instant::now();
            if detach_due.is_some() && kill_at <= now {
                self.signal_strace(Signal::KILL);
                killed = true;
                detach_due = None;
            }
            if detach_due.is_some_and(|due| due <= now) && !self.log_is_filling() {
                self.signal_strace(Signal::INT);
                detach_due = Some(now + DETACH_REPEAT);
            }
            tokio::select! {
                batch = self.batches.recv() => match batch {
                    Some(batch) => batch.into_iter().for_each(&mut *feed),
                    None => break,
                },
                () = tokio::time::sleep(DETACH_POLL), if detach_due.is_some() => {}
            }
        }
        // The log has ended: a strace still writing (its reader gone early)
        // gets EPIPE rather than a pipe that stays full.
        self.log = None;
        self.strace_exit.readable().await.map_err(StraceError::Watch)?.retain_ready();
        self.reap();
        let reader = self.reader.take().ok_or(StraceError::ReaderPanicked)?;
        let malformed_lines = reader.join().map_err(|_| StraceError::ReaderPanicked)?.map_err(StraceError::ReadLog)?;
        if killed {
            return Err(StraceError::DidNotDetach.into());
        }
        // strace sees io_uring_setup, not what the ring then does.
        Ok(Counters { malformed_events: malformed_lines, sees_io_uring: false, ..Counters::default() })
    }

    /// strace stops the tracees rather than lose anything.
    fn lost_so_far(&self) -> Option<u64> {
        Some(0)
    }
}

/// How often `finish` tells an attached strace again to detach, how often
/// it looks whether it may, and how long before it kills it (see `finish`).
const DETACH_REPEAT: std::time::Duration = std::time::Duration::from_secs(1);
const DETACH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
const DETACH_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Has an attached strace killed when reprotrace dies without ending it
/// (killed outright among others): the user's processes must not go on
/// stopping at every syscall for a strace no one reads. SIGKILL, not the
/// SIGINT `finish` sends: the kernel sends this signal once, and strace may
/// miss a SIGINT until its tracees' next event (see `finish`); killed, strace
/// is detached from them by the kernel, which lets them run on (strace sets
/// `PTRACE_O_EXITKILL` only when it starts the command). (The kernel sends it
/// when the spawning thread ends: the main thread here, whose runtime runs on
/// it.)
fn kill_strace_when_reprotrace_dies(command: &mut std::process::Command) {
    let reprotrace = rustix::process::getpid();
    // SAFETY: between fork and exec the closure makes two system calls and
    // allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // Died before the request took: nothing would send the signal.
            if rustix::process::getppid() != Some(reprotrace) {
                return Err(std::io::Error::other("reprotrace ended while starting strace"));
            }
            Ok(())
        })
    };
}

/// Kills every process of the traced tree: reprotrace's descendants (orphans
/// come back to it) but itself and strace, so that strace writes the end of
/// its log and exits.
fn kill_traced_processes(strace_pid: u32) {
    let Ok(descendants) = snapshot::descendants_of_this_process() else { return };
    for descendant in descendants.into_iter().filter(|&pid| pid != strace_pid) {
        if let Some(pid) = Pid::from_raw(descendant as i32) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// A process strace could not attach to.
#[derive(Debug)]
pub struct Untraceable {
    pub pid: u32,
    /// The process that traces it already, if one does.
    pub tracer: Option<u32>,
}

impl std::fmt::Display for Untraceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tracer {
            Some(tracer) => write!(f, "pid {} is traced already, by pid {tracer}", self.pid),
            None => write!(f, "pid {} refused strace (see strace's message)", self.pid),
        }
    }
}

/// Returns once each of `tids` is traced (by strace), gone, or cannot
/// be: another tracer has it, or strace made no progress for a while (it
/// was refused, and said so).
async fn settle_attaching(tids: &[u32]) {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
    let mut waiting = usize::MAX;
    let mut progress_at = std::time::Instant::now();
    loop {
        // Untraced yet (`TracerPid: 0`); one traced by another tracer never will be.
        let untraced = tids.iter().filter(|tid| tracer_of(**tid) == Some(0)).count();
        if untraced == 0 {
            return;
        }
        if untraced < waiting {
            waiting = untraced;
            progress_at = std::time::Instant::now();
        } else if progress_at.elapsed() > PATIENCE {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The `TracerPid` of a task; `None` if the task is gone.
fn tracer_of(tid: u32) -> Option<u32> {
    let status = std::fs::read(format!("/proc/{tid}/status")).ok()?;
    let status = String::from_utf8_lossy(&status);
    status.lines().find_map(|line| line.strip_prefix("TracerPid:")).and_then(|pid| pid.trim().parse().ok())
}

/// Parses the log from `reader` line by line and hands the events to `send`
/// in batches, as soon as they are final: a batch goes when it is full or when
/// the log has nothing more to read for now. Sends the log's first task (the
/// command strace started) to `root` once a line names it. Returns how many
/// lines could not be understood; stops early when `send` says no one listens.
fn read_log(
    reader: BufReader<impl Read>,
    mut root: Option<oneshot::Sender<Tid>>,
    send: &mut impl FnMut(Vec<Event>) -> bool,
) -> std::io::Result<u64> {
    let mut lines = Lines::new(reader);
    let mut parser = Parser::default();
    let mut batch = Vec::with_capacity(BATCH_EVENTS);
    while let Some(line) = lines.next_line()? {
        parser.push_line(line, &mut |event| batch.push(event));
        if let Some(first) = parser.root() {
            if let Some(root) = root.take() {
                let _ = root.send(first);
            }
        }
        let due = batch.len() >= BATCH_EVENTS || (!batch.is_empty() && lines.buffered().is_empty());
        if due && !send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_EVENTS))) {
            return Ok(parser.finish(&mut |_| {}));
        }
    }
    let malformed_lines = parser.finish(&mut |event| batch.push(event));
    if !batch.is_empty() {
        send(batch);
    }
    Ok(malformed_lines)
}

#[cfg(test)]
mod tests {
    use std::{io::Write, time::Duration};

    use super::*;
    use crate::event::Fact;

    /// Starts a `sleep 60`, attaches strace to it and hands the source to
    /// `then`; returns the sleeper and what `then` returned.
    fn attached_to_a_sleeper<T>(then: impl AsyncFnOnce(StraceSource) -> T) -> (std::process::Child, T) {
        let sleeper = std::process::Command::new("sleep").arg("60").spawn().expect("sleep");
        let existing = snapshot::snapshot_trees(&[sleeper.id()]).expect("snapshot");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let result = runtime.block_on(async {
            let (source, followed, _) = StraceSource::attach(existing).await.expect("strace attaches");
            assert_eq!(followed.len(), 1);
            assert_eq!(tracer_of(sleeper.id()), Some(source.strace_pid));
            then(source).await
        });
        (sleeper, result)
    }

    #[test]
    fn an_attached_strace_given_up_before_its_end_detaches() {
        // Dropped without `finish`: an error on the way.
        let (mut sleeper, strace_pid) = attached_to_a_sleeper(async |source| source.strace_pid);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let strace_running = || {
            std::fs::read_to_string(format!("/proc/{strace_pid}/stat"))
                .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        };
        while tracer_of(sleeper.id()) != Some(0) || strace_running() {
            assert!(std::time::Instant::now() < deadline, "strace is still attached or running");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(sleeper.try_wait().expect("sleep").is_none(), "the process goes on, untraced");
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        if let Some(pid) = Pid::from_raw(strace_pid as i32) {
            let _ = waitpid(Some(pid), WaitOptions::empty());
        }
    }

    /// A strace that does not act on the SIGINT (stopped here) is killed in
    /// the end, the process it followed left running and untraced, and the
    /// audit told that the log may be cut short.
    #[test]
    fn an_attached_strace_that_will_not_detach_is_killed() {
        let (mut sleeper, finished) = attached_to_a_sleeper(async |source| {
            source.signal_strace(Signal::STOP);
            source.finish(&mut |_| {}).await
        });
        assert!(
            matches!(finished, Err(SourceError::Strace(StraceError::DidNotDetach))),
            "{:?}",
            finished.map(|_| "finished")
        );
        assert_eq!(tracer_of(sleeper.id()), Some(0), "the process is untraced");
        assert!(sleeper.try_wait().expect("sleep").is_none(), "the process goes on");
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }

    /// Opens the pipe as strace does with `-o`.
    fn open_as_strace(pipe: &LogPipe) -> std::fs::File {
        std::fs::OpenOptions::new().write(true).open(pipe.path()).expect("opening the pipe through /proc")
    }

    #[test]
    fn the_log_is_read_while_it_is_written() {
        let pipe = LogPipe::new().expect("pipe");
        let mut strace = open_as_strace(&pipe);
        let LogPipe { reader, writer } = pipe;
        drop(writer);
        let (root_tx, mut root_rx) = oneshot::channel();
        let (batches_tx, batches_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            read_log(BufReader::new(reader), Some(root_tx), &mut |batch| batches_tx.send(batch).is_ok())
        });
        strace.write_all(b"garbage\n100   openat(-100, \"/etc/hostname\", 0) = 3\n").expect("writing the log");
        // The first events and the root arrive before the log ends.
        let first = batches_rx.recv_timeout(Duration::from_secs(10)).expect("a batch");
        assert!(matches!(first.as_slice(), [Event { tid: 100, fact: Fact::Open { .. } }]), "{first:?}");
        assert_eq!(root_rx.try_recv(), Ok(100));
        strace.write_all(b"100   +++ exited with 0 +++\n").expect("writing the log");
        drop(strace);
        assert_eq!(thread.join().expect("reader").expect("read"), 1, "one malformed line");
        let rest: Vec<Event> = batches_rx.iter().flatten().collect();
        assert!(matches!(rest.as_slice(), [Event { tid: 100, fact: Fact::Exit { .. } }]), "{rest:?}");
    }

    #[test]
    fn an_empty_log_names_no_root() {
        let (root_tx, mut root_rx) = oneshot::channel();
        let read = read_log(BufReader::new(&b""[..]), Some(root_tx), &mut |_| unreachable!("no events"));
        assert_eq!(read.expect("read"), 0);
        assert!(root_rx.try_recv().is_err());
    }
}
