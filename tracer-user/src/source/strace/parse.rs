//! Parses a `strace -f -X raw` log into the backend-neutral [`Event`]s, as
//! strace writes it: [`Parser::push_line`] takes one line at a time and hands
//! each event to a sink as soon as it is final, so memory does not grow with
//! the length of the log.
//!
//! With `-f -o LOG` every line starts with the task id, then one of:
//!
//! - a whole call: `openat(-100, "a.txt", 0x241, 0666) = 3`;
//! - the start of a call another task's line interrupted:
//!   `vfork( <unfinished ...>` (or `<pid changed to N ...>` when a non-leader
//!   thread execs), finished later by `<... vfork resumed>) = 4581`;
//! - the task's end: `+++ exited with 0 +++`, `+++ killed by SIGKILL +++`, or
//!   `+++ superseded by execve in pid N +++` (the leader whose thread N exec'd);
//! - a signal: `--- SIGCHLD {...} ---`.
//!
//! `-X raw` prints every flag and command as a number, so no flag tables are
//! needed here. Like the eBPF backend, only successful syscalls become events,
//! except exec: its request is reported where the call started and its result
//! (success or failure) where it finished.
//!
//! A child's `Fork` always comes before the child's first event, even though
//! with `-f` a vfork'ed child's lines are logged before its parent's
//! `<... vfork resumed>) = CHILD`: the parser keeps a slot for the `Fork` at
//! the child's first line and fills it when the clone's result arrives. The
//! events after an unfilled slot are held back, in order, until it is filled.
//! Only a clone that had started when the child first showed can fill it
//! (strace prints a call's start before the child can run), so a task that
//! shows up while no clone is under way gets no slot (it predates the log, as
//! when attaching), and a slot is given up as soon as every clone that could
//! fill it has returned something else: the held-back events are those of the
//! few lines a vfork'ed child prints before its parent resumes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::BufRead;

use crate::errno::errno_number;
use crate::event::{
    abi::{
        AT_REMOVEDIR, CLONE_VFORK, CLONE_VM, CLOSE_RANGE_CLOEXEC, FD_CLOEXEC, F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD,
        O_CLOEXEC, O_CREAT, O_TRUNC, O_WRONLY, SIGCHLD,
    },
    CellMarker, Event, Fact, Tid, WaitStatus, AT_FDCWD, CELL_MARKER_DIRFD,
};
use crate::signals::signal_number;

/// More arguments than any modelled syscall takes (clone prints five).
const MAX_ARGS: usize = 6;

/// Reads a log line by line, as bytes, not text: strace escapes unprintable
/// bytes, but nothing guarantees a line is UTF-8 (a log cut short by a kill
/// can end mid-character).
pub struct Lines<R> {
    reader: R,
    line: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines { reader, line: Vec::new() }
    }

    /// The next line, without its newline; `None` at the end of the log.
    pub fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Ok(None);
        }
        Ok(Some(self.line.strip_suffix(b"\n").unwrap_or(&self.line)))
    }
}

/// A line (or joined call) that does not have the shape strace prints.
#[derive(Debug)]
struct Malformed;

type Parsed<T = ()> = Result<T, Malformed>;

/// The syscalls the pipeline models; strace is told to trace only these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syscall {
    Open,
    Creat,
    Openat,
    Openat2,
    Execve,
    Execveat,
    Chdir,
    Fchdir,
    Rename,
    Renameat,
    Renameat2,
    Unlink,
    Unlinkat,
    Rmdir,
    Mkdir,
    Mkdirat,
    Link,
    Linkat,
    Symlink,
    Symlinkat,
    Truncate,
    Ftruncate,
    Close,
    CloseRange,
    Dup,
    Dup2,
    Dup3,
    Fcntl,
    Clone,
    Clone3,
    Fork,
    Vfork,
}

impl Syscall {
    fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"open" => Self::Open,
            b"creat" => Self::Creat,
            b"openat" => Self::Openat,
            b"openat2" => Self::Openat2,
            b"execve" => Self::Execve,
            b"execveat" => Self::Execveat,
            b"chdir" => Self::Chdir,
            b"fchdir" => Self::Fchdir,
            b"rename" => Self::Rename,
            b"renameat" => Self::Renameat,
            b"renameat2" => Self::Renameat2,
            b"unlink" => Self::Unlink,
            b"unlinkat" => Self::Unlinkat,
            b"rmdir" => Self::Rmdir,
            b"mkdir" => Self::Mkdir,
            b"mkdirat" => Self::Mkdirat,
            b"link" => Self::Link,
            b"linkat" => Self::Linkat,
            b"symlink" => Self::Symlink,
            b"symlinkat" => Self::Symlinkat,
            b"truncate" => Self::Truncate,
            b"ftruncate" => Self::Ftruncate,
            b"close" => Self::Close,
            b"close_range" => Self::CloseRange,
            b"dup" => Self::Dup,
            b"dup2" => Self::Dup2,
            b"dup3" => Self::Dup3,
            b"fcntl" => Self::Fcntl,
            b"clone" => Self::Clone,
            b"clone3" => Self::Clone3,
            b"fork" => Self::Fork,
            b"vfork" => Self::Vfork,
            _ => return None,
        })
    }

    fn is_exec(self) -> bool {
        matches!(self, Self::Execve | Self::Execveat)
    }

    fn is_clone(self) -> bool {
        matches!(self, Self::Clone | Self::Clone3 | Self::Fork | Self::Vfork)
    }
}

/// A call strace has started printing but not finished.
struct PendingCall {
    syscall: Syscall,
    /// The call so far, without the `<unfinished ...>` marker.
    text: Vec<u8>,
    /// The number of the line the call started on.
    started: u64,
    /// Set when the leader took the call over from an exec'ing thread: strace
    /// then prints a meaningless return value, but the exec did succeed.
    exec_succeeded: bool,
}

/// How a line that starts a call ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The call and its result are on this line.
    Complete,
    /// `<unfinished ...>`, `<pid changed to N ...>` or `<detached ...>`: the
    /// result follows on a `<... NAME resumed>` line, if at all.
    Interrupted,
}

/// How a finished call reached us.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Completion {
    /// The whole call was on one line.
    Whole,
    /// The call was joined from its start and its resumption; an exec request
    /// was reported when it started.
    Resumed,
    /// The leader finished an exec its thread started: the exec succeeded,
    /// whatever return value strace prints.
    ResumedByLeader,
}

/// An event on its way out of the parser.
enum Queued {
    Event(Event),
    /// The place of a Fork whose clone has not returned yet: `child` first
    /// showed on line `line`.
    ForkSlot {
        child: Tid,
        line: u64,
    },
}

/// Turns the lines of a log, pushed one at a time, into events.
#[derive(Default)]
pub struct Parser {
    root: Option<Tid>,
    malformed_lines: u64,
    /// The lines pushed so far.
    lines: u64,
    /// Interrupted calls, by the task that made them.
    pending: HashMap<Tid, PendingCall>,
    /// Buffers of finished interrupted calls, reused for the next ones.
    spare_buffers: Vec<Vec<u8>>,
    /// Live tasks whose Fork was handed out (or has a slot), the root, and
    /// tasks that predate the log.
    known: HashSet<Tid>,
    /// The events of the line being parsed, and those held back behind a
    /// Fork slot, in order.
    queue: VecDeque<Queued>,
    /// How many entries have left `queue`: the position of its front.
    dequeued: u64,
    /// Tasks that showed up before their parent's clone returned: the position
    /// of their Fork slot. With `-f`, a child's lines can come before
    /// `<... vfork resumed>) = CHILD`, but consumers need the Fork before
    /// anything the child does.
    awaiting_fork: HashMap<Tid, u64>,
}

impl Parser {
    /// Parses one line (without its newline) and hands `sink` the events that
    /// are now final, in order. A line that cannot be understood is counted
    /// (see [`Parser::finish`]) and skipped.
    pub fn push_line(&mut self, line: &[u8], sink: &mut impl FnMut(Event)) {
        self.lines += 1;
        if self.line(line).is_err() {
            self.malformed_lines += 1;
        }
        self.release(sink);
    }

    /// The task of the log's first line: the command strace started.
    pub fn root(&self) -> Option<Tid> {
        self.root
    }

    /// Ends the log: hands `sink` the events still held back and returns how
    /// many lines could not be understood.
    pub fn finish(mut self, sink: &mut impl FnMut(Event)) -> u64 {
        // No call will finish any more, so no slot can be filled: the tasks
        // whose clone never showed (the log was cut short) keep their events,
        // without a Fork.
        self.pending.clear();
        self.release(sink);
        self.malformed_lines
    }

    fn line(&mut self, line: &[u8]) -> Parsed {
        let (tid, rest) = split_tid(line)?;
        self.see(tid);
        if let Some(status) = rest.strip_prefix(b"+++ ") {
            self.status_line(tid, status)
        } else if rest.starts_with(b"--- ") {
            // Signal deliveries change nothing the pipeline models.
            Ok(())
        } else if let Some(resumed) = rest.strip_prefix(b"<... ") {
            self.resumed_line(tid, resumed)
        } else {
            self.call_line(tid, rest)
        }
    }

    /// Notes that `tid` printed a line, reserving a slot for its Fork if it is
    /// new and a clone under way may turn out to have made it.
    fn see(&mut self, tid: Tid) {
        if self.root.is_none() {
            self.root = Some(tid);
            self.known.insert(tid);
        } else if self.known.insert(tid) && self.clone_pending_before(self.lines) {
            // Reserved at the task's first line, not its first event, so that
            // the slot also comes before the Fork of any child it makes. The
            // slot is filled by `fork`, or dropped by `release`.
            self.awaiting_fork.insert(tid, self.dequeued + self.queue.len() as u64);
            self.queue.push_back(Queued::ForkSlot { child: tid, line: self.lines });
        }
    }

    /// Whether a clone that started before line `line` has yet to return: only
    /// such a clone can have made a task that first showed on that line.
    fn clone_pending_before(&self, line: u64) -> bool {
        self.pending.values().any(|call| call.syscall.is_clone() && call.started < line)
    }

    /// Hands `sink` the events at the front of the queue, up to the first Fork
    /// slot that may still be filled.
    fn release(&mut self, sink: &mut impl FnMut(Event)) {
        while let Some(front) = self.queue.front() {
            if let &Queued::ForkSlot { child, line } = front {
                if self.clone_pending_before(line) {
                    break;
                }
                // No clone that could have made the child is under way any
                // more (each made another task, or the log was cut short):
                // its events go on without a Fork.
                if self.awaiting_fork.get(&child) == Some(&self.dequeued) {
                    self.awaiting_fork.remove(&child);
                }
            }
            if let Some(Queued::Event(event)) = self.queue.pop_front() {
                sink(event);
            }
            self.dequeued += 1;
        }
    }

    /// A `+++ ... +++` line (the `+++ ` already stripped).
    fn status_line(&mut self, tid: Tid, status: &[u8]) -> Parsed {
        let status = status.strip_suffix(b" +++").ok_or(Malformed)?;
        if let Some(code) = status.strip_prefix(b"exited with ") {
            let code = parse_int(code).ok_or(Malformed)?;
            self.exit(tid, WaitStatus::exited(code as i32));
        } else if let Some(signal) = status.strip_prefix(b"killed by ") {
            let (signal, core_dumped) = match signal.strip_suffix(b" (core dumped)") {
                Some(signal) => (signal, true),
                None => (signal, false),
            };
            let signal = std::str::from_utf8(signal).map_err(|_| Malformed)?;
            let signal = signal_number(signal).ok_or(Malformed)?;
            self.exit(tid, WaitStatus::killed(signal, core_dumped));
        } else if let Some(thread) = status.strip_prefix(b"superseded by execve in pid ") {
            let thread = parse_tid(thread).ok_or(Malformed)?;
            self.supersede(tid, thread);
        } else {
            return Err(Malformed);
        }
        Ok(())
    }

    fn exit(&mut self, tid: Tid, status: WaitStatus) {
        self.emit(tid, Fact::Exit { status });
        self.drop_pending(tid);
        // The id may be reused by a later task, which will need its own Fork.
        self.known.remove(&tid);
    }

    /// `leader` was replaced by its thread `thread`, which exec'd: the thread
    /// now has the leader's id, and the leader's next line finishes the exec.
    fn supersede(&mut self, leader: Tid, thread: Tid) {
        self.drop_pending(leader);
        if let Some(mut exec) = self.pending.remove(&thread) {
            exec.exec_succeeded = true;
            self.pending.insert(leader, exec);
        }
        self.known.remove(&thread);
    }

    fn drop_pending(&mut self, tid: Tid) {
        if let Some(call) = self.pending.remove(&tid) {
            self.recycle(call.text);
        }
    }

    fn recycle(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.spare_buffers.push(buffer);
    }

    /// A line that starts a call, whole or interrupted.
    fn call_line(&mut self, tid: Tid, text: &[u8]) -> Parsed {
        let (text, ending) = split_ending(text);
        let name_end = text.iter().position(|&b| b == b'(').ok_or(Malformed)?;
        let Some(syscall) = Syscall::from_name(&text[..name_end]) else {
            // Not a syscall the pipeline models (exit_group, an untraced one).
            return Ok(());
        };
        match ending {
            Ending::Complete => self.finish_call(tid, syscall, text, Completion::Whole, self.lines),
            Ending::Interrupted => {
                // An exec's path and argv are all printed when it starts, and
                // the request is a fact even if the exec never returns.
                let request = if syscall.is_exec() {
                    Call::parse(text).and_then(|call| self.exec_request(tid, syscall, &call))
                } else {
                    Ok(())
                };
                let mut buffer = self.spare_buffers.pop().unwrap_or_default();
                buffer.extend_from_slice(text);
                let call = PendingCall { syscall, text: buffer, started: self.lines, exec_succeeded: false };
                if let Some(abandoned) = self.pending.insert(tid, call) {
                    self.recycle(abandoned.text);
                }
                request
            }
        }
    }

    /// A `<... NAME resumed>REST` line (the `<... ` already stripped).
    fn resumed_line(&mut self, tid: Tid, text: &[u8]) -> Parsed {
        const MARKER: &[u8] = b" resumed>";
        let marker = find(text, MARKER).ok_or(Malformed)?;
        let syscall = Syscall::from_name(&text[..marker]);
        let rest = &text[marker + MARKER.len()..];
        let Some(mut call) = self.pending.remove(&tid) else {
            // The start of an unmodelled syscall was skipped, so no start is
            // expected; a modelled one must have started.
            return if syscall.is_some() { Err(Malformed) } else { Ok(()) };
        };
        if syscall != Some(call.syscall) {
            self.recycle(call.text);
            return Err(Malformed);
        }
        call.text.extend_from_slice(rest);
        let (joined, ending) = split_ending(&call.text);
        if ending == Ending::Interrupted {
            // Interrupted again: keep waiting for the rest.
            let kept = joined.len();
            call.text.truncate(kept);
            self.pending.insert(tid, call);
            return Ok(());
        }
        let completion = if call.exec_succeeded { Completion::ResumedByLeader } else { Completion::Resumed };
        let result = self.finish_call(tid, call.syscall, &call.text, completion, call.started);
        self.recycle(call.text);
        result
    }

    /// Reports what a finished call (`NAME(ARGS) = RESULT`), started on line
    /// `started`, established.
    fn finish_call(&mut self, tid: Tid, syscall: Syscall, text: &[u8], completion: Completion, started: u64) -> Parsed {
        let call = Call::parse(text)?;
        let outcome = Outcome::parse(call.result.ok_or(Malformed)?)?;
        if syscall.is_exec() {
            if completion == Completion::Whole {
                self.exec_request(tid, syscall, &call)?;
            }
            let ret = match (completion, outcome) {
                (Completion::ResumedByLeader, _) => 0,
                (_, Outcome::Returned(ret)) => ret,
                (_, Outcome::Failed { detail }) => -exec_errno(detail).ok_or(Malformed)?,
                // Killed during the exec, or to be restarted: no outcome.
                (_, Outcome::Unknown) => return Ok(()),
            };
            self.emit(tid, Fact::ExecResult { ret });
            return Ok(());
        }
        // A cell marker fails by design; it is recognised by its dirfd alone.
        if syscall == Syscall::Openat && call.fd(0)? == CELL_MARKER_DIRFD {
            let marker = CellMarker::parse(&call.path(1)?).ok_or(Malformed)?;
            self.emit(tid, Fact::CellMarker(marker));
            return Ok(());
        }
        let Outcome::Returned(ret) = outcome else {
            return Ok(());
        };
        match success_fact(syscall, &call, ret)? {
            Some(Fact::Fork { child, flags }) => self.fork(tid, child, flags, started),
            Some(fact) => self.emit(tid, fact),
            None => {}
        }
        Ok(())
    }

    fn exec_request(&mut self, tid: Tid, syscall: Syscall, call: &Call) -> Parsed {
        let (dirfd, path, argv, flags) = match syscall {
            Syscall::Execve => (AT_FDCWD, call.path(0)?, call.string_array(1)?, 0),
            Syscall::Execveat => (call.fd(0)?, call.path(1)?, call.string_array(2)?, call.flags(4)?),
            _ => return Ok(()),
        };
        self.emit(tid, Fact::ExecRequest { dirfd, path, argv, flags });
        Ok(())
    }

    fn emit(&mut self, tid: Tid, fact: Fact) {
        self.queue.push_back(Queued::Event(Event { tid, fact }));
    }

    /// `parent`'s clone, started on line `started`, made `child`.
    fn fork(&mut self, parent: Tid, child: Tid, flags: u64, started: u64) {
        let fork = Queued::Event(Event { tid: parent, fact: Fact::Fork { child, flags } });
        let slot = self.awaiting_fork.get(&child).and_then(|&position| {
            let index = usize::try_from(position.checked_sub(self.dequeued)?).ok()?;
            match self.queue.get(index)? {
                // A clone that started after the child first showed made a
                // later task with the same id, the child having ended.
                Queued::ForkSlot { line, .. } if started < *line => Some(index),
                _ => None,
            }
        });
        match slot {
            Some(index) => {
                self.awaiting_fork.remove(&child);
                self.queue[index] = fork;
            }
            None => {
                self.queue.push_back(fork);
                self.known.insert(child);
            }
        }
    }
}

/// The fact a successful non-exec call established, if any.
fn success_fact(syscall: Syscall, call: &Call, ret: i64) -> Parsed<Option<Fact>> {
    let new_fd = || i32::try_from(ret).map_err(|_| Malformed);
    let fact = match syscall {
        Syscall::Open => Fact::Open { dirfd: AT_FDCWD, path: call.path(0)?, flags: call.flags(1)?, fd: new_fd()? },
        Syscall::Creat => {
            Fact::Open { dirfd: AT_FDCWD, path: call.path(0)?, flags: O_CREAT | O_WRONLY | O_TRUNC, fd: new_fd()? }
        }
        Syscall::Openat => Fact::Open { dirfd: call.fd(0)?, path: call.path(1)?, flags: call.flags(2)?, fd: new_fd()? },
        Syscall::Openat2 => {
            // `{flags=0x41, mode=0644, resolve=0}`
            let flags = struct_field(call.arg(2)?, b"flags").ok_or(Malformed)?;
            Fact::Open {
                dirfd: call.fd(0)?,
                path: call.path(1)?,
                flags: parse_flags(flags).ok_or(Malformed)?,
                fd: new_fd()?,
            }
        }
        Syscall::Chdir => Fact::Chdir { dirfd: AT_FDCWD, path: call.path(0)? },
        Syscall::Fchdir => Fact::Chdir { dirfd: call.fd(0)?, path: Vec::new() },
        Syscall::Rename => {
            Fact::Rename { old_dirfd: AT_FDCWD, old: call.path(0)?, new_dirfd: AT_FDCWD, new: call.path(1)?, flags: 0 }
        }
        Syscall::Renameat | Syscall::Renameat2 => Fact::Rename {
            old_dirfd: call.fd(0)?,
            old: call.path(1)?,
            new_dirfd: call.fd(2)?,
            new: call.path(3)?,
            flags: match syscall {
                Syscall::Renameat2 => call.flags(4)?,
                _ => 0,
            },
        },
        Syscall::Unlink | Syscall::Rmdir => {
            Fact::Remove { dirfd: AT_FDCWD, path: call.path(0)?, dir: syscall == Syscall::Rmdir }
        }
        Syscall::Unlinkat => {
            Fact::Remove { dirfd: call.fd(0)?, path: call.path(1)?, dir: call.flags(2)? & AT_REMOVEDIR != 0 }
        }
        Syscall::Mkdir => Fact::Mkdir { dirfd: AT_FDCWD, path: call.path(0)? },
        Syscall::Mkdirat => Fact::Mkdir { dirfd: call.fd(0)?, path: call.path(1)? },
        Syscall::Link => {
            Fact::Link { old_dirfd: AT_FDCWD, old: call.path(0)?, new_dirfd: AT_FDCWD, new: call.path(1)? }
        }
        Syscall::Linkat => {
            Fact::Link { old_dirfd: call.fd(0)?, old: call.path(1)?, new_dirfd: call.fd(2)?, new: call.path(3)? }
        }
        Syscall::Symlink => Fact::Symlink { target: call.path(0)?, dirfd: AT_FDCWD, link: call.path(1)? },
        Syscall::Symlinkat => Fact::Symlink { target: call.path(0)?, dirfd: call.fd(1)?, link: call.path(2)? },
        Syscall::Truncate => Fact::Truncate { dirfd: AT_FDCWD, path: call.path(0)? },
        Syscall::Ftruncate => Fact::Truncate { dirfd: call.fd(0)?, path: Vec::new() },
        Syscall::Close => {
            let fd = call.unsigned(0)?;
            Fact::Close { first: fd, last: fd }
        }
        Syscall::CloseRange => {
            let (first, last) = (call.unsigned(0)?, call.unsigned(1)?);
            if call.flags(2)? & CLOSE_RANGE_CLOEXEC != 0 {
                Fact::SetCloexec { first, last, on: true }
            } else {
                Fact::Close { first, last }
            }
        }
        Syscall::Dup | Syscall::Dup2 => Fact::Dup { old: call.fd(0)?, new: new_fd()?, cloexec: false },
        Syscall::Dup3 => Fact::Dup { old: call.fd(0)?, new: new_fd()?, cloexec: call.flags(2)? & O_CLOEXEC != 0 },
        // `-X raw` prints the command as a number: `fcntl(4, 0x406, 30) = 30`.
        Syscall::Fcntl => match call.flags(1)? {
            command @ (F_DUPFD | F_DUPFD_CLOEXEC) => {
                Fact::Dup { old: call.fd(0)?, new: new_fd()?, cloexec: command == F_DUPFD_CLOEXEC }
            }
            F_SETFD => {
                let fd = call.unsigned(0)?;
                Fact::SetCloexec { first: fd, last: fd, on: call.flags(2)? & FD_CLOEXEC != 0 }
            }
            _ => return Ok(None),
        },
        // `clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=...)`: the
        // exit signal is or'ed in, as in the raw argument the eBPF backend sees.
        Syscall::Clone => {
            let flags = call.args().iter().find_map(|arg| arg.strip_prefix(b"flags=")).ok_or(Malformed)?;
            Fact::Fork { child: parse_tid_value(ret)?, flags: parse_flags(flags).ok_or(Malformed)? }
        }
        // `clone3({flags=0x3d0f00, ...} => {parent_tid=[7144]}, 88)`
        Syscall::Clone3 => {
            let flags = struct_field(call.arg(0)?, b"flags").ok_or(Malformed)?;
            Fact::Fork { child: parse_tid_value(ret)?, flags: parse_flags(flags).ok_or(Malformed)? }
        }
        Syscall::Fork => Fact::Fork { child: parse_tid_value(ret)?, flags: SIGCHLD },
        Syscall::Vfork => Fact::Fork { child: parse_tid_value(ret)?, flags: CLONE_VM | CLONE_VFORK | SIGCHLD },
        // Exec reports its request and result whatever the outcome.
        Syscall::Execve | Syscall::Execveat => return Ok(None),
    };
    Ok(Some(fact))
}

/// A call split into its parts, borrowing the line.
struct Call<'a> {
    args: [&'a [u8]; MAX_ARGS],
    arg_count: usize,
    /// What follows the closing parenthesis (` = 3`); `None` if the text ends
    /// before it, as an interrupted call does.
    result: Option<&'a [u8]>,
}

impl<'a> Call<'a> {
    fn parse(text: &'a [u8]) -> Parsed<Self> {
        let open = text.iter().position(|&b| b == b'(').ok_or(Malformed)?;
        let mut call = Call { args: [&[]; MAX_ARGS], arg_count: 0, result: None };
        let mut items = Items::new(&text[open + 1..]);
        for arg in items.by_ref() {
            // Arguments past the last one any modelled syscall uses don't matter.
            if call.arg_count < MAX_ARGS {
                call.args[call.arg_count] = arg;
                call.arg_count += 1;
            }
        }
        // `fork()` has one empty item, not one argument.
        if call.arg_count == 1 && call.args[0].is_empty() {
            call.arg_count = 0;
        }
        call.result = match items.closing() {
            Some((b')', rest)) => Some(rest),
            Some(_) => return Err(Malformed),
            None => None,
        };
        Ok(call)
    }

    fn args(&self) -> &[&'a [u8]] {
        &self.args[..self.arg_count]
    }

    fn arg(&self, index: usize) -> Parsed<&'a [u8]> {
        self.args().get(index).copied().ok_or(Malformed)
    }

    fn int(&self, index: usize) -> Parsed<i64> {
        parse_int(self.arg(index)?).ok_or(Malformed)
    }

    /// A descriptor or dirfd (`-100` is `AT_FDCWD`); the kernel reads an `int`.
    fn fd(&self, index: usize) -> Parsed<i32> {
        Ok(self.int(index)? as i32)
    }

    /// An `unsigned int` argument: `close_range`'s `~0` prints as 4294967295.
    fn unsigned(&self, index: usize) -> Parsed<u32> {
        Ok(self.int(index)? as u32)
    }

    fn flags(&self, index: usize) -> Parsed<u64> {
        parse_flags(self.arg(index)?).ok_or(Malformed)
    }

    fn path(&self, index: usize) -> Parsed<Vec<u8>> {
        parse_path(self.arg(index)?).ok_or(Malformed)
    }

    fn string_array(&self, index: usize) -> Parsed<Vec<Vec<u8>>> {
        parse_string_array(self.arg(index)?).ok_or(Malformed)
    }
}

/// What a finished call returned.
#[derive(Clone, Copy)]
enum Outcome<'a> {
    /// `= 3`, `= 0x1 (flags FD_CLOEXEC)`.
    Returned(i64),
    /// `= -1 ENOENT (No such file or directory)`; `detail` is what follows `-1`.
    Failed { detail: &'a [u8] },
    /// `= ?`: the task died in the call, or it will be restarted.
    Unknown,
}

impl<'a> Outcome<'a> {
    fn parse(result: &'a [u8]) -> Parsed<Self> {
        let result = result.trim_ascii_start().strip_prefix(b"=").ok_or(Malformed)?.trim_ascii_start();
        if result.starts_with(b"?") {
            return Ok(Self::Unknown);
        }
        let (value, detail) = split_word(result);
        let value = parse_int(value).ok_or(Malformed)?;
        Ok(if value < 0 { Self::Failed { detail } } else { Self::Returned(value) })
    }
}

/// The errno of a failed exec: `ENOENT (No such file or directory)` or, for a
/// value strace has no name for, `(errno 1234)`.
fn exec_errno(detail: &[u8]) -> Option<i64> {
    let detail = detail.trim_ascii_start();
    if let Some(number) = detail.strip_prefix(b"(errno ") {
        let number = parse_int(number.strip_suffix(b")")?)?;
        // Anything else is not an error number (the kernel's are below 4096).
        return (1..4096).contains(&number).then_some(number);
    }
    let (name, _) = split_word(detail);
    let name = std::str::from_utf8(name).ok()?;
    errno_number(name).map(i64::from)
}

/// Splits `PID  REST` into the task id and the rest.
fn split_tid(line: &[u8]) -> Parsed<(Tid, &[u8])> {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    let (tid, rest) = line.split_at(digits);
    let tid = parse_tid(tid).ok_or(Malformed)?;
    let rest = rest.trim_ascii_start();
    // The id is followed by padding: the text must not start glued to it.
    if rest.len() == line.len() - digits {
        return Err(Malformed);
    }
    Ok((tid, rest))
}

/// Separates a call line from its interruption marker, if it has one.
fn split_ending(text: &[u8]) -> (&[u8], Ending) {
    const MARKERS: [&[u8]; 3] = [b"<unfinished ...>", b"<pid changed to ", b"<detached ...>"];
    // The marker is the line's last `<...>`; strings inside the call may hold
    // `<` but the call never ends with `>` otherwise, except `= ? <unavailable>`.
    if text.ends_with(b">") {
        if let Some(start) = text.iter().rposition(|&b| b == b'<') {
            let marker = &text[start..];
            if MARKERS.iter().any(|known| marker.starts_with(known)) {
                return (text[..start].trim_ascii_end(), Ending::Interrupted);
            }
        }
    }
    (text, Ending::Complete)
}

/// The value of field `name` in a printed struct: `{flags=0x41, mode=0644}`.
fn struct_field<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let fields = text.strip_prefix(b"{")?;
    Items::new(fields).find_map(|field| field.strip_prefix(name).and_then(|value| value.strip_prefix(b"=")))
}

/// A path argument: a quoted string, or `NULL` (or an address strace could not
/// read), which is taken as an empty path.
fn parse_path(text: &[u8]) -> Option<Vec<u8>> {
    if text.starts_with(b"\"") {
        unquote(text)
    } else if text == b"NULL" || parse_int(text).is_some() {
        Some(Vec::new())
    } else {
        None
    }
}

/// An argv array: `["sh", "-c", "x"]`, possibly cut short (`["a", ...]`);
/// `NULL` or an unreadable address is an empty one.
fn parse_string_array(text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let Some(items) = text.strip_prefix(b"[") else {
        return (text == b"NULL" || parse_int(text).is_some()).then(Vec::new);
    };
    Items::new(items).filter(|item| item.starts_with(b"\"")).map(unquote).collect()
}

/// Decodes a string strace printed in C syntax: `"caf\303\251\n"`. Text after
/// the closing quote (`...` when `-s` cut the string) is ignored.
fn unquote(text: &[u8]) -> Option<Vec<u8>> {
    let body = text.strip_prefix(b"\"")?;
    let mut bytes = Vec::with_capacity(body.len());
    let mut index = 0;
    while let Some(&byte) = body.get(index) {
        index += 1;
        let decoded = match byte {
            b'"' => return Some(bytes),
            b'\\' => {
                let escaped = *body.get(index)?;
                index += 1;
                match escaped {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'x' => {
                        let (value, len) = leading_digits(&body[index..], 16, 2);
                        if len == 0 {
                            return None;
                        }
                        index += len;
                        value
                    }
                    // strace prints as few octal digits as it can: `\1`, `\377`.
                    b'0'..=b'7' => {
                        let (value, len) = leading_digits(&body[index - 1..], 8, 3);
                        index += len - 1;
                        value
                    }
                    // `\\`, `\"` and any other escaped character stand for themselves.
                    other => other,
                }
            }
            plain => plain,
        };
        bytes.push(decoded);
    }
    // No closing quote: the line was cut.
    None
}

/// The value of the (at most `max`) digits in `radix` that `text` starts
/// with, and how many there were. The value wraps at a byte.
fn leading_digits(text: &[u8], radix: u32, max: usize) -> (u8, usize) {
    let mut value: u32 = 0;
    let mut len = 0;
    for digit in text.iter().take(max).map_while(|&b| char::from(b).to_digit(radix)) {
        value = value * radix + digit;
        len += 1;
    }
    (value as u8, len)
}

/// The comma-separated items of a list whose opening bracket was consumed, up
/// to its closing bracket. Commas and brackets inside strings, nested lists
/// and `/* comments */` don't count.
struct Items<'a> {
    text: &'a [u8],
    position: usize,
    /// Where the list ended: the closing bracket's index, once seen.
    close: Option<usize>,
    finished: bool,
}

impl<'a> Items<'a> {
    fn new(text: &'a [u8]) -> Self {
        Items { text, position: 0, close: None, finished: false }
    }

    /// The closing bracket and the text after it, once the items are consumed;
    /// `None` if the text ended first.
    fn closing(&self) -> Option<(u8, &'a [u8])> {
        self.close.map(|index| (self.text[index], &self.text[index + 1..]))
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.finished {
            return None;
        }
        let start = self.position;
        let end = start + item_end(&self.text[start..]);
        match self.text.get(end) {
            Some(b',') => self.position = end + 1,
            Some(_) => {
                self.finished = true;
                self.close = Some(end);
            }
            None => self.finished = true,
        }
        Some(self.text[start..end].trim_ascii())
    }
}

/// The index of the `,` or closing bracket that ends the first item of `text`
/// (its length if neither does).
fn item_end(text: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut index = 0;
    while let Some(&byte) = text.get(index) {
        match byte {
            b'"' => {
                index += 1;
                while let Some(&byte) = text.get(index) {
                    index += if byte == b'\\' { 2 } else { 1 };
                    if byte == b'"' {
                        break;
                    }
                }
                continue;
            }
            b'/' if text.get(index + 1) == Some(&b'*') => {
                index = find(&text[index + 2..], b"*/").map_or(text.len(), |end| index + end + 4);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => return index,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => return index,
            _ => {}
        }
        index += 1;
    }
    text.len()
}

/// Splits off the first space-separated word.
fn split_word(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    text.split_at(end)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn parse_tid(text: &[u8]) -> Option<Tid> {
    Tid::try_from(parse_int(text)?).ok()
}

fn parse_tid_value(value: i64) -> Parsed<Tid> {
    Tid::try_from(value).map_err(|_| Malformed)
}

/// Flags as `-X raw` prints them: `0x241`, or `0x1200000|17` for clone.
fn parse_flags(text: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'|').try_fold(0u64, |flags, part| Some(flags | parse_int(part)? as u64))
}

/// An integer as strace prints one: `3`, `-100`, `0x80241`, `0666` (octal),
/// `~0`. Values above `i64::MAX` wrap, as the kernel's 64-bit registers do.
fn parse_int(text: &[u8]) -> Option<i64> {
    let text = text.trim_ascii();
    let (negative, text) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (complement, text) = match text.strip_prefix(b"~") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (digits, radix) = if let Some(hex) = text.strip_prefix(b"0x") {
        (hex, 16)
    } else if text.len() > 1 && text[0] == b'0' {
        (&text[1..], 8)
    } else {
        (text, 10)
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &byte in digits {
        let digit = char::from(byte).to_digit(radix)?;
        value = value.checked_mul(u64::from(radix))?.checked_add(u64::from(digit))?;
    }
    let value = if complement { !value } else { value } as i64;
    Some(if negative { value.wrapping_neg() } else { value })
}

#[cfg(test)]
mod tests {
    //! Fixtures are excerpts of real `strace 6.1 -f -q -s 65536 -X raw
    //! --seccomp-bpf` logs (Linux 6.18, x86_64), trimmed to the lines under
    //! test; synthetic lines are marked as such.
    use super::*;
    use crate::event::abi::{CLONE_THREAD, RENAME_EXCHANGE};

    /// What a whole log gave.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Log {
        events: Vec<Event>,
        root: Option<Tid>,
        malformed_lines: u64,
    }

    fn parse_bytes(log: &[u8]) -> Log {
        let mut lines = Lines::new(log);
        let mut parser = Parser::default();
        let mut events = Vec::new();
        while let Some(line) = lines.next_line().expect("reading a byte slice cannot fail") {
            parser.push_line(line, &mut |event| events.push(event));
        }
        let root = parser.root();
        let malformed_lines = parser.finish(&mut |event| events.push(event));
        Log { events, root, malformed_lines }
    }

    fn parse(log: &str) -> Log {
        parse_bytes(log.as_bytes())
    }

    /// The events the parser hands out after each line of a log, then those
    /// `finish` hands out.
    fn events_per_line(log: &str) -> Vec<Vec<Event>> {
        let mut parser = Parser::default();
        let mut handed_out = Vec::new();
        for line in log.lines() {
            let mut events = Vec::new();
            parser.push_line(line.as_bytes(), &mut |event| events.push(event));
            handed_out.push(events);
        }
        let mut events = Vec::new();
        assert_eq!(parser.finish(&mut |event| events.push(event)), 0, "malformed lines in {log}");
        handed_out.push(events);
        handed_out
    }

    /// The events of a log that must parse without a malformed line.
    fn events(log: &str) -> Vec<Event> {
        let parsed = parse(log);
        assert_eq!(parsed.malformed_lines, 0, "malformed lines in {log}");
        parsed.events
    }

    fn event(tid: Tid, fact: Fact) -> Event {
        Event { tid, fact }
    }

    fn bytes(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    fn open(dirfd: i32, path: &str, flags: u64, fd: i32) -> Fact {
        Fact::Open { dirfd, path: bytes(path), flags, fd }
    }

    fn close(fd: u32) -> Fact {
        Fact::Close { first: fd, last: fd }
    }

    fn exec(path: &str, argv: &[&str]) -> Fact {
        Fact::ExecRequest {
            dirfd: AT_FDCWD,
            path: bytes(path),
            argv: argv.iter().map(|arg| bytes(arg)).collect(),
            flags: 0,
        }
    }

    fn exited(code: i32) -> Fact {
        Fact::Exit { status: WaitStatus::exited(code) }
    }

    const VFORK_FLAGS: u64 = CLONE_VM | CLONE_VFORK | SIGCHLD;
    /// What glibc's `pthread_create` passes to clone3 (no exit signal).
    const THREAD_FLAGS: u64 = 0x3d0f00;

    #[test]
    fn path_syscalls_map_to_their_facts() {
        let log = r#"6978  mkdir("/tmp/st/work", 0777)       = 0
6978  openat(-100, "/tmp/st/work", 0x90000) = 3
6978  openat(3, "a.txt", 0x80241, 0644) = 4
6978  rename("/tmp/st/work/a.txt", "/tmp/st/work/b.txt") = 0
6978  renameat(3, "b.txt", 3, "c.txt")  = 0
6978  link("/tmp/st/work/d.txt", "/tmp/st/work/e.txt") = 0
6978  linkat(3, "d.txt", 3, "f.txt", 0x400) = 0
6978  symlink("d.txt", "/tmp/st/work/sym") = 0
6978  symlinkat("d.txt", 3, "sym2")     = 0
6978  truncate("/tmp/st/work/d.txt", 2) = 0
6978  ftruncate(4, 1)                   = 0
6978  unlink("/tmp/st/work/e.txt")      = 0
6978  unlinkat(3, "f.txt", 0)           = 0
6978  mkdirat(3, "sub2", 0777)          = 0
6978  rmdir("/tmp/st/work/sub")         = 0
6978  unlinkat(3, "sub2", 0x200)        = 0
6978  chdir("/tmp/st/work")             = 0
6978  fchdir(3)                         = 0
"#;
        let expected = [
            Fact::Mkdir { dirfd: AT_FDCWD, path: bytes("/tmp/st/work") },
            open(AT_FDCWD, "/tmp/st/work", 0x90000, 3),
            open(3, "a.txt", 0x80241, 4),
            Fact::Rename {
                old_dirfd: AT_FDCWD,
                old: bytes("/tmp/st/work/a.txt"),
                new_dirfd: AT_FDCWD,
                new: bytes("/tmp/st/work/b.txt"),
                flags: 0,
            },
            Fact::Rename { old_dirfd: 3, old: bytes("b.txt"), new_dirfd: 3, new: bytes("c.txt"), flags: 0 },
            Fact::Link {
                old_dirfd: AT_FDCWD,
                old: bytes("/tmp/st/work/d.txt"),
                new_dirfd: AT_FDCWD,
                new: bytes("/tmp/st/work/e.txt"),
            },
            Fact::Link { old_dirfd: 3, old: bytes("d.txt"), new_dirfd: 3, new: bytes("f.txt") },
            Fact::Symlink { target: bytes("d.txt"), dirfd: AT_FDCWD, link: bytes("/tmp/st/work/sym") },
            Fact::Symlink { target: bytes("d.txt"), dirfd: 3, link: bytes("sym2") },
            Fact::Truncate { dirfd: AT_FDCWD, path: bytes("/tmp/st/work/d.txt") },
            Fact::Truncate { dirfd: 4, path: Vec::new() },
            Fact::Remove { dirfd: AT_FDCWD, path: bytes("/tmp/st/work/e.txt"), dir: false },
            Fact::Remove { dirfd: 3, path: bytes("f.txt"), dir: false },
            Fact::Mkdir { dirfd: 3, path: bytes("sub2") },
            Fact::Remove { dirfd: AT_FDCWD, path: bytes("/tmp/st/work/sub"), dir: true },
            Fact::Remove { dirfd: 3, path: bytes("sub2"), dir: true },
            Fact::Chdir { dirfd: AT_FDCWD, path: bytes("/tmp/st/work") },
            Fact::Chdir { dirfd: 3, path: Vec::new() },
        ];
        let expected: Vec<Event> = expected.into_iter().map(|f| event(6978, f)).collect();
        assert_eq!(events(log), expected);
    }

    #[test]
    fn open_variants_renameat2_and_fork() {
        let log = r#"7139  open("o1.txt", 0x41, 0600)        = 3
7139  open("o1.txt", 0)                 = 3
7139  creat("c1.txt", 0640)             = 3
7139  openat2(-100, "o1.txt", {flags=0x80000, resolve=0x8}, 24) = 3
7139  openat2(-100, "o2.txt", {flags=0x41, mode=0644, resolve=0}, 24) = 3
7139  openat(-100, "/nonexistent", 0x80000) = -1 ENOENT (No such file or directory)
7139  renameat2(3, "o1.txt", 3, "o2.txt", 0x2) = 0
7139  renameat2(-100, "o2.txt", -100, "o3.txt", 0x1) = 0
7139  linkat(3, "o3.txt", -100, "l1.txt", 0) = 0
7139  mkdirat(-100, "m1", 0755)         = 0
7139  fork()                            = 7140
7140  +++ exited with 0 +++
7139  clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7fd56c018e50) = 7141
"#;
        let expected = vec![
            event(7139, open(AT_FDCWD, "o1.txt", 0x41, 3)),
            event(7139, open(AT_FDCWD, "o1.txt", 0, 3)),
            event(7139, open(AT_FDCWD, "c1.txt", O_CREAT | O_WRONLY | O_TRUNC, 3)),
            event(7139, open(AT_FDCWD, "o1.txt", 0x80000, 3)),
            event(7139, open(AT_FDCWD, "o2.txt", 0x41, 3)),
            event(
                7139,
                Fact::Rename {
                    old_dirfd: 3,
                    old: bytes("o1.txt"),
                    new_dirfd: 3,
                    new: bytes("o2.txt"),
                    flags: RENAME_EXCHANGE,
                },
            ),
            event(
                7139,
                Fact::Rename {
                    old_dirfd: AT_FDCWD,
                    old: bytes("o2.txt"),
                    new_dirfd: AT_FDCWD,
                    new: bytes("o3.txt"),
                    flags: 1,
                },
            ),
            event(7139, Fact::Link { old_dirfd: 3, old: bytes("o3.txt"), new_dirfd: AT_FDCWD, new: bytes("l1.txt") }),
            event(7139, Fact::Mkdir { dirfd: AT_FDCWD, path: bytes("m1") }),
            event(7139, Fact::Fork { child: 7140, flags: SIGCHLD }),
            event(7140, exited(0)),
            event(7139, Fact::Fork { child: 7141, flags: 0x1200000 | SIGCHLD }),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn descriptor_syscalls() {
        let log = r#"6978  fcntl(4, 0x406, 0)                = 5
6978  dup2(4, 20)                       = 20
6978  dup3(4, 21, 0x80000)              = 21
6978  fcntl(4, 0x406, 30)               = 30
6978  fcntl(4, 0, 40)                   = 40
6978  fcntl(4, 0x2, 0x1)                = 0
6978  fcntl(4, 0x2, 0)                  = 0
6978  fcntl(4, 0x3)                     = 0x8002 (flags O_RDWR|O_LARGEFILE)
6978  fcntl(3, 0x1)                     = 0x1 (flags 0x1)
6978  close_range(20, 21, 0)            = 0
6978  close(6)                          = 0
6978  close(50)                         = -1 EBADF (Bad file descriptor)
6978  close_range(60, 4294967295, 0)    = 0
6978  close_range(3, 4294967295, 0x4)   = 0
6978  dup3(3, 50, 0)                    = 50
6981  fcntl(1, 0, 10)                   = 10
6981  dup2(3, 1)                        = 1
"#;
        let dup = |old, new, cloexec| Fact::Dup { old, new, cloexec };
        let expected = vec![
            event(6978, dup(4, 5, true)),
            event(6978, dup(4, 20, false)),
            event(6978, dup(4, 21, true)),
            event(6978, dup(4, 30, true)),
            event(6978, dup(4, 40, false)),
            event(6978, Fact::SetCloexec { first: 4, last: 4, on: true }),
            event(6978, Fact::SetCloexec { first: 4, last: 4, on: false }),
            event(6978, Fact::Close { first: 20, last: 21 }),
            event(6978, close(6)),
            event(6978, Fact::Close { first: 60, last: u32::MAX }),
            event(6978, Fact::SetCloexec { first: 3, last: u32::MAX, on: true }),
            event(6978, dup(3, 50, false)),
            // 6981 has no clone line in this excerpt: its events stay, unforked.
            event(6981, dup(1, 10, false)),
            event(6981, dup(3, 1, false)),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn vfork_child_gets_its_fork_before_its_first_line() {
        // The vfork'ed child runs (and is logged) before its parent's vfork
        // returns; the child's exec is itself split around the parent's lines.
        let log = r#"6978  vfork( <unfinished ...>
6981  close(6)                          = 0
6981  execve("/root/.cargo/bin/sh", ["sh", "-c", "nonexistent_cmd_xyz; echo hi > /tmp/st/work/sh.txt"], 0x7ffe31712a50 /* 35 vars */) = -1 ENOENT (No such file or directory)
6981  execve("/usr/bin/sh", ["sh", "-c", "nonexistent_cmd_xyz; echo hi > /tmp/st/work/sh.txt"], 0x7ffe31712a50 /* 35 vars */ <unfinished ...>
6978  <... vfork resumed>)              = 6981
6978  close(7)                          = 0
6981  <... execve resumed>)             = 0
6981  openat(-100, "/tmp/st/work/sh.txt", 0x241, 0666) = 3
6981  +++ exited with 0 +++
6978  vfork( <unfinished ...>
6983  close(6)                          = 0
6983  execve("/nonexistent/prog", ["/nonexistent/prog"], 0x7ffe31712a50 /* 35 vars */) = -1 ENOENT (No such file or directory)
6983  +++ exited with 255 +++
6978  <... vfork resumed>)              = 6983
6978  close(7)                          = 0
"#;
        let argv = ["sh", "-c", "nonexistent_cmd_xyz; echo hi > /tmp/st/work/sh.txt"];
        let vfork = |child| Fact::Fork { child, flags: VFORK_FLAGS };
        let expected = vec![
            event(6978, vfork(6981)),
            event(6981, close(6)),
            event(6981, exec("/root/.cargo/bin/sh", &argv)),
            event(6981, Fact::ExecResult { ret: -2 }),
            event(6981, exec("/usr/bin/sh", &argv)),
            event(6978, close(7)),
            event(6981, Fact::ExecResult { ret: 0 }),
            event(6981, open(AT_FDCWD, "/tmp/st/work/sh.txt", 0x241, 3)),
            event(6981, exited(0)),
            event(6978, vfork(6983)),
            event(6983, close(6)),
            event(6983, exec("/nonexistent/prog", &["/nonexistent/prog"])),
            event(6983, Fact::ExecResult { ret: -2 }),
            event(6983, exited(255)),
            event(6978, close(7)),
        ];
        let parsed = parse(log);
        assert_eq!(parsed.events, expected);
        assert_eq!(parsed.root, Some(6978));
        assert_eq!(parsed.malformed_lines, 0);
    }

    #[test]
    fn posix_spawn_clone3_child_before_its_result() {
        let log = r#"7139  clone3({flags=0x4100, exit_signal=17, stack=0x7fd56b3ea000, stack_size=0x9000}, 88 <unfinished ...>
7143  execve("/bin/true", ["true"], 0x7fd56b2f9e90 /* 35 vars */ <unfinished ...>
7139  <... clone3 resumed>)             = 7143
7143  <... execve resumed>)             = 0
7143  openat(-100, "/etc/ld.so.cache", 0x80000) = 3
7143  +++ exited with 0 +++
"#;
        let expected = vec![
            // clone3's flags are `clone_args.flags`, without the exit signal.
            event(7139, Fact::Fork { child: 7143, flags: CLONE_VM | CLONE_VFORK }),
            event(7143, exec("/bin/true", &["true"])),
            event(7143, Fact::ExecResult { ret: 0 }),
            event(7143, open(AT_FDCWD, "/etc/ld.so.cache", 0x80000, 3)),
            event(7143, exited(0)),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn threads_with_interleaved_unfinished_calls() {
        let log = r#"7326  clone3({flags=0x3d0f00, child_tid=0x7f37cc998990, parent_tid=0x7f37cc998990, exit_signal=0, stack=0x7f37cc198000, stack_size=0x7fff80, tls=0x7f37cc9986c0} => {parent_tid=[7327]}, 88) = 7327
7327  openat(-100, "/tmp/st/work3/t0_0", 0x80041, 0644 <unfinished ...>
7326  clone3({flags=0x3d0f00, child_tid=0x7f37cc197990, parent_tid=0x7f37cc197990, exit_signal=0, stack=0x7f37cb997000, stack_size=0x7fff80, tls=0x7f37cc1976c0} <unfinished ...>
7327  <... openat resumed>)             = 3
7326  <... clone3 resumed> => {parent_tid=[7328]}, 88) = 7328
7327  close(3)                          = 0
7328  openat(-100, "/tmp/st/work3/t1_0", 0x80041, 0644) = 3
7327  close(4 <unfinished ...>
7328  close(3 <unfinished ...>
7327  <... close resumed>)              = 0
7328  <... close resumed>)              = 0
7328  +++ exited with 0 +++
"#;
        assert_eq!(THREAD_FLAGS & CLONE_THREAD, CLONE_THREAD);
        let thread = |child| Fact::Fork { child, flags: THREAD_FLAGS };
        let expected = vec![
            event(7326, thread(7327)),
            event(7327, open(AT_FDCWD, "/tmp/st/work3/t0_0", 0x80041, 3)),
            event(7326, thread(7328)),
            event(7327, close(3)),
            event(7328, open(AT_FDCWD, "/tmp/st/work3/t1_0", 0x80041, 3)),
            event(7327, close(4)),
            event(7328, close(3)),
            event(7328, exited(0)),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn exec_from_a_thread_finishes_under_the_leader() {
        // strace prints a meaningless errno for the leader's resumed execve.
        let log = r#"7139  clone3({flags=0x3d0f00, child_tid=0x7fd56b285990, parent_tid=0x7fd56b285990, exit_signal=0, stack=0x7fd56aa85000, stack_size=0x7fff80, tls=0x7fd56b2856c0} => {parent_tid=[7144]}, 88) = 7144
7144  execve("/bin/true", ["true", "from-thread"], 0x7fff3fddd9f0 /* 35 vars */ <pid changed to 7139 ...>
7139  +++ superseded by execve in pid 7144 +++
7139  <... execve resumed>)             = -1 (errno 18446744073709551359)
7139  close(3)                          = 0
7139  +++ exited with 0 +++
"#;
        let expected = vec![
            event(7139, Fact::Fork { child: 7144, flags: THREAD_FLAGS }),
            event(7144, exec("/bin/true", &["true", "from-thread"])),
            event(7139, Fact::ExecResult { ret: 0 }),
            event(7139, close(3)),
            event(7139, exited(0)),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn exec_from_a_thread_that_was_already_unfinished() {
        // Synthetic, in the shape strace's own test suite expects
        // (tests/threaded_execve.c): the leader's interrupted call ends first.
        let log = r#"200   clone3({flags=0x3d0f00, exit_signal=0} => {parent_tid=[201]}, 88) = 201
200   close(5 <unfinished ...>
201   execve("/bin/true", ["true"], 0x1 /* 1 var */ <unfinished ...>
200   <... close resumed>) = ?
200   +++ superseded by execve in pid 201 +++
200   <... execve resumed>) = 0
"#;
        let expected = vec![
            event(200, Fact::Fork { child: 201, flags: THREAD_FLAGS }),
            event(201, exec("/bin/true", &["true"])),
            event(200, Fact::ExecResult { ret: 0 }),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn exec_variants_and_failures() {
        let log = r#"7139  clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7fd56c018e50) = 7141
7141  openat(-100, "/bin/true", 0x280000) = 4
7141  execveat(4, "", ["true", "x"], 0x7fd56b5a98d0 /* 1 var */, 0x1000) = 0
7139  clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7fd56c018e50) = 7142
7142  execveat(-100, "/nonexistent/x", ["true"], NULL, 0) = -1 ENOENT (No such file or directory)
7142  execve(NULL, NULL, NULL)          = -1 EFAULT (Bad address)
7142  +++ exited with 0 +++
"#;
        let fork = |child| Fact::Fork { child, flags: 0x1200000 | SIGCHLD };
        let expected = vec![
            event(7139, fork(7141)),
            event(7141, open(AT_FDCWD, "/bin/true", 0x280000, 4)),
            event(
                7141,
                Fact::ExecRequest {
                    dirfd: 4,
                    path: Vec::new(),
                    argv: vec![bytes("true"), bytes("x")],
                    flags: crate::event::abi::AT_EMPTY_PATH,
                },
            ),
            event(7141, Fact::ExecResult { ret: 0 }),
            event(7139, fork(7142)),
            event(7142, exec("/nonexistent/x", &["true"])),
            event(7142, Fact::ExecResult { ret: -2 }),
            event(7142, exec("", &[])),
            event(7142, Fact::ExecResult { ret: -14 }),
            event(7142, exited(0)),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn signals_kills_and_restarted_calls() {
        // Logged without `-e signal=none`, which also hides `killed by` lines.
        let log = r#"10321 openat(-100, "/tmp/st/fifo", 0x80000) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)
10321 --- SIGALRM {si_signo=14, si_code=0x80} ---
10321 openat(-100, "/tmp/st/fifo", 0x80000 <unfinished ...>
10321 <... openat resumed>)             = 3
10321 vfork( <unfinished ...>
10360 execve("/usr/bin/sh", ["sh", "-c", "kill -QUIT $$"], 0x7fffdae2c650 /* 35 vars */ <unfinished ...>
10321 <... vfork resumed>)              = 10360
10360 <... execve resumed>)             = 0
10360 --- SIGQUIT {si_signo=3, si_code=0, si_pid=10360, si_uid=0} ---
10360 +++ killed by SIGQUIT (core dumped) +++
10321 --- SIGCHLD {si_signo=17, si_code=0x3, si_pid=10360, si_uid=0, si_status=3, si_utime=0, si_stime=0} ---
10321 clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f6f70d42a10) = 7083
7083  execve("/usr/bin/sleep", ["sleep", "5"], 0x55c2fdda3d18 /* 35 vars */) = ?
7083  +++ killed by SIGKILL +++
10321 +++ killed by SIGRT_2 +++
"#;
        let expected = vec![
            event(10321, open(AT_FDCWD, "/tmp/st/fifo", 0x80000, 3)),
            event(10321, Fact::Fork { child: 10360, flags: VFORK_FLAGS }),
            event(10360, exec("/usr/bin/sh", &["sh", "-c", "kill -QUIT $$"])),
            event(10360, Fact::ExecResult { ret: 0 }),
            event(10360, Fact::Exit { status: WaitStatus::killed(libc::SIGQUIT, true) }),
            event(10321, Fact::Fork { child: 7083, flags: 0x1200000 | SIGCHLD }),
            // Killed during the exec: a request, no result.
            event(7083, exec("/usr/bin/sleep", &["sleep", "5"])),
            event(7083, Fact::Exit { status: WaitStatus::killed(libc::SIGKILL, false) }),
            event(10321, Fact::Exit { status: WaitStatus::killed(34, false) }),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn escaped_and_non_utf8_names_survive_byte_exact() {
        let log = r#"6978  openat(-100, "/tmp/st/work/caf\303\251 \"q\"\\\n\t\1\377", 0x80241, 0666) = 6
6978  unlink("/tmp/st/work/caf\303\251 \"q\"\\\n\t\1\377") = 0
6978  execve("/bin/echo", ["echo", "a, b)", "\x41\a\b\v\f\r\0\0012", "long"...], 0x7ffe /* 3 vars */) = 0
"#;
        let name = b"/tmp/st/work/caf\xc3\xa9 \"q\"\\\n\t\x01\xff".to_vec();
        let expected = vec![
            event(6978, Fact::Open { dirfd: AT_FDCWD, path: name.clone(), flags: 0x80241, fd: 6 }),
            event(6978, Fact::Remove { dirfd: AT_FDCWD, path: name, dir: false }),
            event(
                6978,
                Fact::ExecRequest {
                    dirfd: AT_FDCWD,
                    path: bytes("/bin/echo"),
                    argv: vec![bytes("echo"), bytes("a, b)"), b"A\x07\x08\x0b\x0c\r\0\x012".to_vec(), bytes("long")],
                    flags: 0,
                },
            ),
            event(6978, Fact::ExecResult { ret: 0 }),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn raw_bytes_and_lines_longer_than_64_kib() {
        let long = "d/".repeat(40_000);
        let mut log = format!("100   mkdir(\"{long}\", 0777) = 0\n").into_bytes();
        log.extend_from_slice(b"100   openat(-100, \"\xff\xfe\", 0) = 3\n");
        let parsed = parse_bytes(&log);
        assert_eq!(parsed.malformed_lines, 0);
        assert_eq!(
            parsed.events,
            vec![
                event(100, Fact::Mkdir { dirfd: AT_FDCWD, path: bytes(&long) },),
                event(100, Fact::Open { dirfd: AT_FDCWD, path: vec![0xff, 0xfe], flags: 0, fd: 3 },),
            ]
        );
    }

    #[test]
    fn reused_ids_get_a_fresh_fork() {
        // Synthetic: task 101 ends, and a later child gets its id back.
        let log = r#"100   clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f0) = 101
101   close(3)                          = 0
101   +++ exited with 0 +++
100   vfork( <unfinished ...>
101   close(4)                          = 0
100   <... vfork resumed>)              = 101
"#;
        let expected = vec![
            event(100, Fact::Fork { child: 101, flags: 0x1200000 | SIGCHLD }),
            event(101, close(3)),
            event(101, exited(0)),
            event(100, Fact::Fork { child: 101, flags: VFORK_FLAGS }),
            event(101, close(4)),
        ];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn grandchild_fork_follows_its_parents_fork() {
        // Synthetic: both forks' results arrive after the children's lines.
        let log = r#"100   vfork( <unfinished ...>
101   vfork( <unfinished ...>
102   close(3)                          = 0
101   <... vfork resumed>)              = 102
100   <... vfork resumed>)              = 101
"#;
        let vfork = |child| Fact::Fork { child, flags: VFORK_FLAGS };
        let expected = vec![event(100, vfork(101)), event(101, vfork(102)), event(102, close(3))];
        assert_eq!(events(log), expected);
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let log = r#"300   close(3)                          = 0
garbage without a pid
300
300   openat(-100, "unterminated, 0) = 3
300   <... openat resumed>)             = 3
300   close(4 <unfinished ...>
300   <... dup resumed>)                = 5
300   +++ exited strangely +++
300   +++ killed by SIGNOPE +++
300   execve("/x", ["x"], 0x1 /* 1 var */) = -1 EUNKNOWN (Who knows)
300   exit_group(0)                     = ?
300   <... nanosleep resumed>)          = 0
300   restart_syscall(<... resuming interrupted read ...>) = 0
300   close(5)                          = 0
"#;
        let parsed = parse(log);
        assert_eq!(parsed.root, Some(300));
        // Unmodelled syscalls (exit_group, nanosleep, restart_syscall) are
        // not malformed; the failed exec with an unknown errno has no result.
        assert_eq!(parsed.malformed_lines, 8);
        assert_eq!(parsed.events, vec![event(300, close(3)), event(300, exec("/x", &["x"])), event(300, close(5)),]);
    }

    #[test]
    fn empty_log() {
        assert_eq!(parse(""), Log::default());
    }

    #[test]
    fn events_come_out_as_soon_as_their_forks_allow() {
        let log = r#"6978  close(5)                          = 0
6978  vfork( <unfinished ...>
6981  close(6)                          = 0
6981  execve("/bin/true", ["true"], 0x1 /* 1 var */ <unfinished ...>
6978  <... vfork resumed>)              = 6981
6981  <... execve resumed>)             = 0
"#;
        assert_eq!(
            events_per_line(log),
            vec![
                vec![event(6978, close(5))],
                vec![],
                // Held back until the Fork they follow is known.
                vec![],
                vec![],
                vec![
                    event(6978, Fact::Fork { child: 6981, flags: VFORK_FLAGS }),
                    event(6981, close(6)),
                    event(6981, exec("/bin/true", &["true"])),
                ],
                vec![event(6981, Fact::ExecResult { ret: 0 })],
                vec![],
            ]
        );
    }

    #[test]
    fn tasks_that_predate_the_log_are_not_held_back() {
        // As when attaching: no clone is under way when 501 first shows.
        let log = "500   close(3) = 0\n501   close(4) = 0\n";
        assert_eq!(events_per_line(log), vec![vec![event(500, close(3))], vec![event(501, close(4))], vec![]]);
    }

    #[test]
    fn a_slot_is_given_up_once_its_possible_clones_made_others() {
        // Synthetic: 200 shows while 100's clone is under way, but that
        // clone makes 101.
        let log = r#"100   clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f0 <unfinished ...>
200   close(3)                          = 0
100   <... clone resumed>)              = 101
200   close(4)                          = 0
"#;
        assert_eq!(
            events_per_line(log),
            vec![
                vec![],
                vec![],
                vec![event(200, close(3)), event(100, Fact::Fork { child: 101, flags: 0x1200000 | SIGCHLD })],
                vec![event(200, close(4))],
                vec![],
            ]
        );
    }

    #[test]
    fn a_log_cut_short_hands_out_what_it_held_back() {
        // Synthetic: strace was stopped before the vfork returned; the last
        // line has no newline.
        let log = "100   vfork( <unfinished ...>\n101   close(3) = 0";
        assert_eq!(events_per_line(log), vec![vec![], vec![], vec![event(101, close(3))]]);
        assert_eq!(parse(log).events, vec![event(101, close(3))]);
    }

    #[test]
    fn integers_as_strace_prints_them() {
        for (text, value) in [
            ("3", Some(3)),
            ("-100", Some(-100)),
            ("0x80241", Some(0x80241)),
            ("0666", Some(0o666)),
            ("0", Some(0)),
            ("4294967295", Some(4_294_967_295)),
            ("~0", Some(-1)),
            ("18446744073709551615", Some(-1)),
            ("18446744073709551616", None),
            ("", None),
            ("0x", None),
            ("08", None),
            ("NULL", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), value, "{text}");
        }
        assert_eq!(parse_flags(b"0x1200000|17"), Some(0x1200011));
        assert_eq!(parse_flags(b"0x1200000|x"), None);
    }

    #[test]
    fn strings_as_strace_prints_them() {
        for (text, value) in [
            (r#""plain""#, Some(&b"plain"[..])),
            (r#""a\"b\\c""#, Some(b"a\"b\\c")),
            (r#""\303\251\1\0012""#, Some(b"\xc3\xa9\x01\x012")),
            (r#""\x7f\xff\xa""#, Some(b"\x7f\xff\x0a")),
            (r#""cut"..."#, Some(b"cut")),
            (r#""no end"#, None),
            (r#""\x""#, None),
        ] {
            assert_eq!(unquote(text.as_bytes()).as_deref(), value, "{text}");
        }
        assert_eq!(parse_path(b"NULL"), Some(Vec::new()));
        assert_eq!(parse_path(b"0x7ffe1234"), Some(Vec::new()));
        assert_eq!(parse_path(b"AT_FDCWD"), None);
        assert_eq!(parse_string_array(br#"["a", "b,]", ...]"#), Some(vec![bytes("a"), bytes("b,]")]));
        assert_eq!(parse_string_array(b"[]"), Some(Vec::new()));
    }
}
