//! The strace backend: runs the command under `strace -f` with the fastest
//! correct options, and turns its log into the same events the eBPF backend
//! produces while strace runs.
//!
//! strace writes its log into a pipe that a dedicated thread reads, parses
//! line by line and feeds to the [`Pipeline`], so memory is bounded by what
//! the pipeline keeps (files, processes), not by the number of syscalls, and
//! the parsing overlaps the run. When the thread lags, strace blocks on the
//! full pipe, and so do the tracees: nothing is lost.

pub mod parse;

use std::{
    ffi::OsString,
    io::{BufReader, PipeReader, PipeWriter},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    thread::JoinHandle,
};

use crate::{event::Tid, launch::Credentials, pipeline::Pipeline};

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
    #[error("cannot create a pipe for the strace log: {0}")]
    Pipe(#[source] std::io::Error),
    #[error("cannot start the thread that reads the strace log: {0}")]
    StartReader(#[source] std::io::Error),
    #[error("cannot read the strace log: {0}")]
    ReadLog(#[source] std::io::Error),
    #[error("reading the strace log failed unexpectedly")]
    ReaderPanicked,
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

/// The pipe strace writes its log into.
pub struct LogPipe {
    reader: PipeReader,
    writer: PipeWriter,
}

impl LogPipe {
    pub fn new() -> Result<Self, StraceError> {
        // Both ends are close-on-exec: neither strace nor anything else we
        // start inherits them.
        let (reader, writer) = std::io::pipe().map_err(StraceError::Pipe)?;
        Ok(LogPipe { reader, writer })
    }

    /// Where strace is to write its log (`-o`): the write end, through our
    /// /proc entry. strace opens it as it would a file, close-on-exec; an
    /// inherited descriptor (`-o /dev/fd/3`) would stay open in the traced
    /// command, visible to it and holding the pipe open after strace ends.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.writer.as_raw_fd()))
    }

    /// Starts the thread that reads the log as strace writes it and feeds its
    /// events to the pipeline `start` makes for the task of the log's first
    /// line (the command strace started).
    pub fn read(self, start: impl FnOnce(Tid) -> Pipeline + Send + 'static) -> Result<LogReader, StraceError> {
        let LogPipe { reader, writer } = self;
        let thread = std::thread::Builder::new()
            .name("strace-log".into())
            .spawn(move || feed_log(BufReader::with_capacity(READ_SIZE, Coalescing(reader)), start).map(SentLog))
            .map_err(StraceError::StartReader)?;
        Ok(LogReader { writer, thread })
    }
}

/// How much of the log the reader takes at a time.
const READ_SIZE: usize = 1 << 16;

/// Reads a pipe in chunks rather than as it is written to: strace writes each
/// line in two or more pieces, and waking the reader for every piece costs
/// more than parsing them (and slows strace down on a busy machine).
struct Coalescing(PipeReader);

impl std::io::Read for Coalescing {
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

/// The thread reading strace's log.
pub struct LogReader {
    /// Kept open until strace has exited: strace opens the pipe through it
    /// (see [`LogPipe::path`]), and its closing is what ends the log.
    writer: PipeWriter,
    thread: JoinHandle<std::io::Result<SentLog>>,
}

impl LogReader {
    /// Reads what is left of the log, once strace has exited (before, this
    /// waits for it): at most a pipe's worth, as strace blocks on a full pipe.
    pub fn finish(self) -> Result<StraceLog, StraceError> {
        drop(self.writer);
        let SentLog(log) =
            self.thread.join().map_err(|_| StraceError::ReaderPanicked)?.map_err(StraceError::ReadLog)?;
        Ok(log)
    }
}

/// The log and its pipeline, handed back by the thread that made and fed it.
struct SentLog(StraceLog);

// SAFETY: a `Pipeline` is not `Send` only because its tracker shares file
// tables and working directories between tasks through `Rc`s. Every clone of
// those `Rc`s is inside the pipeline (it is built from, fed and queried with
// plain data, and hands out none), so moving the whole pipeline to another
// thread moves them all: no two threads can touch their counts. Should the
// tracker ever hand an `Rc` out, it must use `Arc` instead, and this goes.
unsafe impl Send for SentLog {}

/// A whole strace log, fed through the pipeline.
pub struct StraceLog {
    /// `None` when no line named a task: the command did not start.
    pub pipeline: Option<Pipeline>,
    /// Lines that could not be understood (they produced no event).
    pub malformed_lines: u64,
}

/// Parses the log from `reader` line by line and feeds each event, as soon as
/// it is final, to the pipeline `start` makes for the log's first task.
fn feed_log(reader: impl std::io::BufRead, start: impl FnOnce(Tid) -> Pipeline) -> std::io::Result<StraceLog> {
    let mut lines = parse::Lines::new(reader);
    let mut parser = parse::Parser::default();
    // The pipeline needs the root, which is known once a line named a task:
    // the events of that line wait for the pipeline to be made.
    let mut first_events = Vec::new();
    let mut pipeline = loop {
        let Some(line) = lines.next_line()? else {
            // No line named a task, so none made an event.
            return Ok(StraceLog { pipeline: None, malformed_lines: parser.finish(&mut |_| {}) });
        };
        parser.push_line(line, &mut |event| first_events.push(event));
        if let Some(root) = parser.root() {
            break start(root);
        }
    };
    for event in &first_events {
        pipeline.feed(event);
    }
    let mut feed = |event| pipeline.feed(&event);
    while let Some(line) = lines.next_line()? {
        parser.push_line(line, &mut feed);
    }
    let malformed_lines = parser.finish(&mut feed);
    Ok(StraceLog { pipeline: Some(pipeline), malformed_lines })
}

#[cfg(test)]
mod tests {
    use std::{io::Write, sync::mpsc, time::Duration};

    use super::*;

    /// Opens the pipe as strace does with `-o`.
    fn open_as_strace(pipe: &LogPipe) -> std::fs::File {
        std::fs::OpenOptions::new().write(true).open(pipe.path()).expect("opening the pipe through /proc")
    }

    #[test]
    fn the_log_is_fed_while_it_is_written() {
        let pipe = LogPipe::new().expect("pipe");
        let mut strace = open_as_strace(&pipe);
        let (root_tx, root_rx) = mpsc::channel();
        let reader = pipe
            .read(move |root| {
                root_tx.send(root).expect("the test waits for the root");
                Pipeline::new(root, None, b"/".to_vec())
            })
            .expect("reader thread");
        strace.write_all(b"garbage\n100   openat(-100, \"/etc/hostname\", 0) = 3\n").expect("writing the log");
        // The pipeline exists before the log ends.
        assert_eq!(root_rx.recv_timeout(Duration::from_secs(10)), Ok(100));
        strace.write_all(b"100   +++ exited with 0 +++\n").expect("writing the log");
        drop(strace);
        let log = reader.finish().expect("reading the log");
        assert_eq!(log.malformed_lines, 1);
        // The root's exit was fed.
        assert!(!log.pipeline.expect("a pipeline").has_live_tasks());
    }

    #[test]
    fn an_empty_log_makes_no_pipeline() {
        let pipe = LogPipe::new().expect("pipe");
        drop(open_as_strace(&pipe));
        let log = pipe.read(|_| unreachable!("no line names a root")).expect("reader thread").finish().expect("log");
        assert!(log.pipeline.is_none());
        assert_eq!(log.malformed_lines, 0);
    }
}
