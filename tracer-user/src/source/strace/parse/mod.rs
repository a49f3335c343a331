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
//! Which syscall states what is tracer-common's table, the one the kernel
//! programs use: a call's printed arguments go through the same
//! normalisation (see [`syntax`] for how they are read). `-X raw` prints every
//! flag and command as a number, so no flag tables are needed here. Like the
//! eBPF backend, only successful syscalls become events, except exec (its
//! request is reported where the call started and its result, success or
//! failure, where it finished) and cell markers, which fail by design.
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

use tracer_common::{
    syscalls::{self, Normalised, Shape, Syscall},
    EventKind,
};

use super::syntax::{
    exec_errno, find, parse_int, parse_tid, parse_tid_value, split_ending, split_tid, Call, Ending, Malformed, Outcome,
    Parsed,
};
use crate::{
    event::{Argv, ArgvView, Event, Fact, Tid, WaitStatus},
    signals::signal_number,
};

/// A call strace has started printing but not finished.
struct PendingCall {
    syscall: &'static Syscall,
    /// The call so far, without the `<unfinished ...>` marker.
    text: Vec<u8>,
    /// The number of the line the call started on.
    started: u64,
    /// The exec'ing thread whose call the leader took over: strace then prints
    /// a meaningless return value, but the exec did succeed.
    exec_requested_by: Option<Tid>,
}

/// How a finished call reached us.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Completion {
    /// The whole call was on one line.
    Whole,
    /// The call was joined from its start and its resumption.
    Resumed,
    /// The leader finished an exec this thread started: the exec succeeded,
    /// whatever return value strace prints.
    ResumedByLeader(Tid),
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
        self.pending.values().any(|call| is_clone(call.syscall) && call.started < line)
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
            exec.exec_requested_by = Some(thread);
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
        let Some(syscall) = syscalls::by_name(&text[..name_end]) else {
            // Not a syscall the pipeline models (exit_group, an untraced one).
            return Ok(());
        };
        match ending {
            Ending::Complete => self.finish_call(tid, syscall, text, Completion::Whole, self.lines),
            Ending::Interrupted => {
                let mut buffer = self.spare_buffers.pop().unwrap_or_default();
                buffer.extend_from_slice(text);
                let call = PendingCall { syscall, text: buffer, started: self.lines, exec_requested_by: None };
                if let Some(abandoned) = self.pending.insert(tid, call) {
                    self.recycle(abandoned.text);
                }
                Ok(())
            }
        }
    }

    /// A `<... NAME resumed>REST` line (the `<... ` already stripped).
    fn resumed_line(&mut self, tid: Tid, text: &[u8]) -> Parsed {
        const MARKER: &[u8] = b" resumed>";
        let marker = find(text, MARKER).ok_or(Malformed)?;
        let syscall = syscalls::by_name(&text[..marker]);
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
        let completion = match call.exec_requested_by {
            Some(thread) => Completion::ResumedByLeader(thread),
            None => Completion::Resumed,
        };
        let result = self.finish_call(tid, call.syscall, &call.text, completion, call.started);
        self.recycle(call.text);
        result
    }

    /// Reports what a finished call (`NAME(ARGS) = RESULT`), started on line
    /// `started`, established.
    fn finish_call(
        &mut self,
        tid: Tid,
        syscall: &Syscall,
        text: &[u8],
        completion: Completion,
        started: u64,
    ) -> Parsed {
        let call = Call::parse(text)?;
        let outcome = Outcome::parse(call.result.ok_or(Malformed)?)?;
        if is_exec(syscall) {
            return self.exec(tid, syscall, &call, completion, outcome);
        }
        let returned = match outcome {
            Outcome::Returned(ret) => Some(ret),
            Outcome::Failed { .. } | Outcome::Unknown => None,
        };
        let fact = match normalise(syscall, &call) {
            Ok(Some(fact)) => fact,
            Ok(None) => return Ok(()),
            // A failed call may print what it could not read (an address for
            // a struct): it states nothing, so that is not malformed.
            Err(malformed) => return if returned.is_some() { Err(malformed) } else { Ok(()) },
        };
        let ret = match returned {
            Some(ret) => ret,
            // A marker fails by design.
            None if matches!(fact.kind, EventKind::CellMarker | EventKind::TaskMarker) => 0,
            None => return Ok(()),
        };
        let mut args = fact.args;
        if fact.kind == EventKind::Fork {
            // The kernel reports the child; strace prints it as the result.
            args[0] = u64::from(parse_tid_value(ret)?);
        }
        let strings = [path_at(&call, fact.strings[0])?, path_at(&call, fact.strings[1])?];
        match Fact::from_parts(fact.kind, args, ret, strings, Argv::default()).map_err(|_| Malformed)? {
            Fact::Fork { child, flags } => self.fork(tid, child, flags, started),
            fact => self.emit(tid, fact),
        }
        Ok(())
    }

    /// A finished exec: the process runs the new image (under the leader's
    /// id, when a thread exec'd), or the exec failed.
    fn exec(&mut self, tid: Tid, syscall: &Syscall, call: &Call, completion: Completion, outcome: Outcome) -> Parsed {
        let (Some(fact), Shape::Exec { argv, .. }) = (normalise(syscall, call)?, syscall.shape) else {
            return Err(Malformed);
        };
        let path = path_at(call, fact.strings[0])?;
        let [dirfd, flags, _] = fact.args;
        let fact = match (completion, outcome) {
            (Completion::ResumedByLeader(requested_by), _) => {
                success(dirfd, path, flags, call.string_array(argv)?, requested_by)
            }
            (_, Outcome::Returned(_)) => success(dirfd, path, flags, call.string_array(argv)?, tid),
            (_, Outcome::Failed { detail }) => {
                let ret = -exec_errno(detail).ok_or(Malformed)?;
                Fact::from_parts(EventKind::ExecFailed, fact.args, ret, [path, Vec::new()], Argv::default())
                    .map_err(|_| Malformed)?
            }
            // Killed during the exec, or to be restarted: no outcome.
            (_, Outcome::Unknown) => return Ok(()),
        };
        self.emit(tid, fact);
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

/// A successful exec's fact.
fn success(dirfd: u64, path: Vec<u8>, flags: u64, (args, truncated): (Vec<Vec<u8>>, bool), requested_by: Tid) -> Fact {
    Fact::Exec {
        dirfd: dirfd as i32,
        path,
        flags,
        argv: args,
        argv_truncated: truncated,
        argv_view: ArgvView::Requested,
        requested_by,
    }
}

fn is_exec(syscall: &Syscall) -> bool {
    matches!(syscall.shape, Shape::Exec { .. })
}

fn is_clone(syscall: &Syscall) -> bool {
    matches!(syscall.shape, Shape::Fact { kind: EventKind::Fork, .. })
}

/// The fact a call states, its arguments read the way tracer-common's table says.
fn normalise(syscall: &Syscall, call: &Call) -> Parsed<Option<Normalised>> {
    syscall.normalise(|arg| call.value(arg))
}

/// The string argument at `position`, if the fact has one there.
fn path_at(call: &Call, position: Option<u8>) -> Parsed<Vec<u8>> {
    position.map_or(Ok(Vec::new()), |position| call.path(position))
}

#[cfg(test)]
mod tests;
