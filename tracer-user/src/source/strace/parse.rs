//! Parses a `strace -f -X raw` log into the backend-neutral [`Event`]s.
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

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use crate::errno::errno_number;
use crate::event::{
    clone_flags::{CLONE_VFORK, CLONE_VM},
    open_flags::{O_CLOEXEC, O_CREAT, O_TRUNC, O_WRONLY},
    Event, Fact, Tid, WaitStatus, AT_FDCWD, AT_REMOVEDIR,
};
use crate::signals::signal_number;

/// The exit signal `fork()` and `vfork()` imply (it is part of clone's flags).
const SIGCHLD: u64 = 17;
/// `close_range` flag: mark the range close-on-exec instead of closing it.
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
/// The `fcntl` commands that change the descriptor table.
const F_DUPFD: i64 = 0;
const F_SETFD: i64 = 2;
const F_DUPFD_CLOEXEC: i64 = 1030;
/// `F_SETFD` argument bit: close-on-exec.
const FD_CLOEXEC: i64 = 1;
/// More arguments than any modelled syscall takes (clone prints five).
const MAX_ARGS: usize = 6;

/// A parsed strace log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StraceLog {
    /// The facts, in the order they happened.
    pub events: Vec<Event>,
    /// The task of the log's first line: the command strace started.
    pub root: Option<Tid>,
    /// Lines that could not be understood (they produced no event).
    pub malformed_lines: u64,
}

/// Parses a strace log, line by line.
///
/// Only reading can fail; a line that cannot be understood is counted in
/// [`StraceLog::malformed_lines`] and skipped. Lines are read as bytes because
/// strace copies non-UTF-8 bytes of unusual strings verbatim.
pub fn parse_log<R: BufRead>(mut reader: R) -> std::io::Result<StraceLog> {
    let mut parser = Parser::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if parser.line(text).is_err() {
            parser.malformed_lines += 1;
        }
    }
    Ok(parser.finish())
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
}

/// A call strace has started printing but not finished.
struct PendingCall {
    syscall: Syscall,
    /// The call so far, without the `<unfinished ...>` marker.
    text: Vec<u8>,
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

#[derive(Default)]
struct Parser {
    events: Vec<Event>,
    root: Option<Tid>,
    malformed_lines: u64,
    /// Interrupted calls, by the task that made them.
    pending: HashMap<Tid, PendingCall>,
    /// Buffers of finished interrupted calls, reused for the next ones.
    spare_buffers: Vec<Vec<u8>>,
    /// Live tasks whose Fork is already in `events` (or reserved), and the root.
    known: HashSet<Tid>,
    /// Tasks that showed up before their parent's clone returned: the index of
    /// the slot in `events` reserved for their Fork. With `-f`, a child's lines
    /// can come before `<... vfork resumed>) = CHILD`, but consumers need the
    /// Fork before anything the child does.
    awaiting_fork: HashMap<Tid, usize>,
}

impl Parser {
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

    /// Notes that `tid` printed a line, reserving a slot for its Fork if it is new.
    fn see(&mut self, tid: Tid) {
        if self.root.is_none() {
            self.root = Some(tid);
            self.known.insert(tid);
        } else if self.known.insert(tid) {
            // Reserved at the task's first line, not its first event, so that
            // the slot also comes before the Fork of any child it makes. The
            // placeholder is replaced by `fork` or removed by `finish`.
            self.awaiting_fork.insert(tid, self.events.len());
            self.events.push(Event {
                tid,
                fact: Fact::Fork {
                    child: tid,
                    flags: 0,
                },
            });
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
            Ending::Complete => self.finish_call(tid, syscall, text, Completion::Whole),
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
                let call = PendingCall {
                    syscall,
                    text: buffer,
                    exec_succeeded: false,
                };
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
            return if syscall.is_some() {
                Err(Malformed)
            } else {
                Ok(())
            };
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
        let completion = if call.exec_succeeded {
            Completion::ResumedByLeader
        } else {
            Completion::Resumed
        };
        let result = self.finish_call(tid, call.syscall, &call.text, completion);
        self.recycle(call.text);
        result
    }

    /// Reports what a finished call (`NAME(ARGS) = RESULT`) established.
    fn finish_call(
        &mut self,
        tid: Tid,
        syscall: Syscall,
        text: &[u8],
        completion: Completion,
    ) -> Parsed {
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
        let Outcome::Returned(ret) = outcome else {
            return Ok(());
        };
        match success_fact(syscall, &call, ret)? {
            Some(Fact::Fork { child, flags }) => self.fork(tid, child, flags),
            Some(fact) => self.emit(tid, fact),
            None => {}
        }
        Ok(())
    }

    fn exec_request(&mut self, tid: Tid, syscall: Syscall, call: &Call) -> Parsed {
        let (dirfd, path, argv, flags) = match syscall {
            Syscall::Execve => (AT_FDCWD, call.path(0)?, call.string_array(1)?, 0),
            Syscall::Execveat => (
                call.fd(0)?,
                call.path(1)?,
                call.string_array(2)?,
                call.flags(4)? as u32,
            ),
            _ => return Ok(()),
        };
        self.emit(
            tid,
            Fact::ExecRequest {
                dirfd,
                path,
                argv,
                flags,
            },
        );
        Ok(())
    }

    fn emit(&mut self, tid: Tid, fact: Fact) {
        self.events.push(Event { tid, fact });
    }

    fn fork(&mut self, parent: Tid, child: Tid, flags: u64) {
        let fork = Event {
            tid: parent,
            fact: Fact::Fork { child, flags },
        };
        if let Some(slot) = self.awaiting_fork.remove(&child) {
            self.events[slot] = fork;
        } else {
            self.events.push(fork);
            self.known.insert(child);
        }
    }

    fn finish(mut self) -> StraceLog {
        // Tasks whose clone never showed (the log began late, or was cut):
        // their events stay, without a Fork.
        let mut unfilled: Vec<usize> = self.awaiting_fork.into_values().collect();
        unfilled.sort_unstable();
        let mut unfilled = unfilled.into_iter().peekable();
        let mut index = 0;
        self.events.retain(|_| {
            let keep = unfilled.next_if_eq(&index).is_none();
            index += 1;
            keep
        });
        StraceLog {
            events: self.events,
            root: self.root,
            malformed_lines: self.malformed_lines,
        }
    }
}

/// The fact a successful non-exec call established, if any.
fn success_fact(syscall: Syscall, call: &Call, ret: i64) -> Parsed<Option<Fact>> {
    let new_fd = || i32::try_from(ret).map_err(|_| Malformed);
    let fact = match syscall {
        Syscall::Open => Fact::Open {
            dirfd: AT_FDCWD,
            path: call.path(0)?,
            flags: call.flags(1)? as u32,
            fd: new_fd()?,
        },
        Syscall::Creat => Fact::Open {
            dirfd: AT_FDCWD,
            path: call.path(0)?,
            flags: O_CREAT | O_WRONLY | O_TRUNC,
            fd: new_fd()?,
        },
        Syscall::Openat => Fact::Open {
            dirfd: call.fd(0)?,
            path: call.path(1)?,
            flags: call.flags(2)? as u32,
            fd: new_fd()?,
        },
        Syscall::Openat2 => {
            // `{flags=0x41, mode=0644, resolve=0}`
            let flags = struct_field(call.arg(2)?, b"flags").ok_or(Malformed)?;
            Fact::Open {
                dirfd: call.fd(0)?,
                path: call.path(1)?,
                flags: parse_flags(flags).ok_or(Malformed)? as u32,
                fd: new_fd()?,
            }
        }
        Syscall::Chdir => Fact::Chdir {
            dirfd: AT_FDCWD,
            path: call.path(0)?,
        },
        Syscall::Fchdir => Fact::Chdir {
            dirfd: call.fd(0)?,
            path: Vec::new(),
        },
        Syscall::Rename => Fact::Rename {
            old_dirfd: AT_FDCWD,
            old: call.path(0)?,
            new_dirfd: AT_FDCWD,
            new: call.path(1)?,
            flags: 0,
        },
        Syscall::Renameat | Syscall::Renameat2 => Fact::Rename {
            old_dirfd: call.fd(0)?,
            old: call.path(1)?,
            new_dirfd: call.fd(2)?,
            new: call.path(3)?,
            flags: match syscall {
                Syscall::Renameat2 => call.flags(4)? as u32,
                _ => 0,
            },
        },
        Syscall::Unlink | Syscall::Rmdir => Fact::Remove {
            dirfd: AT_FDCWD,
            path: call.path(0)?,
            dir: syscall == Syscall::Rmdir,
        },
        Syscall::Unlinkat => Fact::Remove {
            dirfd: call.fd(0)?,
            path: call.path(1)?,
            dir: call.flags(2)? & u64::from(AT_REMOVEDIR) != 0,
        },
        Syscall::Mkdir => Fact::Mkdir {
            dirfd: AT_FDCWD,
            path: call.path(0)?,
        },
        Syscall::Mkdirat => Fact::Mkdir {
            dirfd: call.fd(0)?,
            path: call.path(1)?,
        },
        Syscall::Link => Fact::Link {
            old_dirfd: AT_FDCWD,
            old: call.path(0)?,
            new_dirfd: AT_FDCWD,
            new: call.path(1)?,
        },
        Syscall::Linkat => Fact::Link {
            old_dirfd: call.fd(0)?,
            old: call.path(1)?,
            new_dirfd: call.fd(2)?,
            new: call.path(3)?,
        },
        Syscall::Symlink => Fact::Symlink {
            target: call.path(0)?,
            dirfd: AT_FDCWD,
            link: call.path(1)?,
        },
        Syscall::Symlinkat => Fact::Symlink {
            target: call.path(0)?,
            dirfd: call.fd(1)?,
            link: call.path(2)?,
        },
        Syscall::Truncate => Fact::Truncate {
            dirfd: AT_FDCWD,
            path: call.path(0)?,
        },
        Syscall::Ftruncate => Fact::Truncate {
            dirfd: call.fd(0)?,
            path: Vec::new(),
        },
        Syscall::Close => {
            let fd = call.unsigned(0)?;
            Fact::Close {
                first: fd,
                last: fd,
            }
        }
        Syscall::CloseRange => {
            let (first, last) = (call.unsigned(0)?, call.unsigned(1)?);
            if call.flags(2)? & CLOSE_RANGE_CLOEXEC != 0 {
                Fact::SetCloexec {
                    first,
                    last,
                    on: true,
                }
            } else {
                Fact::Close { first, last }
            }
        }
        Syscall::Dup | Syscall::Dup2 => Fact::Dup {
            old: call.fd(0)?,
            new: new_fd()?,
            cloexec: false,
        },
        Syscall::Dup3 => Fact::Dup {
            old: call.fd(0)?,
            new: new_fd()?,
            cloexec: call.flags(2)? & u64::from(O_CLOEXEC) != 0,
        },
        // `-X raw` prints the command as a number: `fcntl(4, 0x406, 30) = 30`.
        Syscall::Fcntl => match call.int(1)? {
            command @ (F_DUPFD | F_DUPFD_CLOEXEC) => Fact::Dup {
                old: call.fd(0)?,
                new: new_fd()?,
                cloexec: command == F_DUPFD_CLOEXEC,
            },
            F_SETFD => {
                let fd = call.unsigned(0)?;
                Fact::SetCloexec {
                    first: fd,
                    last: fd,
                    on: call.int(2)? & FD_CLOEXEC != 0,
                }
            }
            _ => return Ok(None),
        },
        // `clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=...)`: the
        // exit signal is or'ed in, as in the raw argument the eBPF backend sees.
        Syscall::Clone => {
            let flags = call
                .args()
                .iter()
                .find_map(|arg| arg.strip_prefix(b"flags="))
                .ok_or(Malformed)?;
            Fact::Fork {
                child: parse_tid_value(ret)?,
                flags: parse_flags(flags).ok_or(Malformed)?,
            }
        }
        // `clone3({flags=0x3d0f00, ...} => {parent_tid=[7144]}, 88)`
        Syscall::Clone3 => {
            let flags = struct_field(call.arg(0)?, b"flags").ok_or(Malformed)?;
            Fact::Fork {
                child: parse_tid_value(ret)?,
                flags: parse_flags(flags).ok_or(Malformed)?,
            }
        }
        Syscall::Fork => Fact::Fork {
            child: parse_tid_value(ret)?,
            flags: SIGCHLD,
        },
        Syscall::Vfork => Fact::Fork {
            child: parse_tid_value(ret)?,
            flags: CLONE_VM | CLONE_VFORK | SIGCHLD,
        },
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
        let mut call = Call {
            args: [&[]; MAX_ARGS],
            arg_count: 0,
            result: None,
        };
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
        let result = result
            .trim_ascii_start()
            .strip_prefix(b"=")
            .ok_or(Malformed)?
            .trim_ascii_start();
        if result.starts_with(b"?") {
            return Ok(Self::Unknown);
        }
        let (value, detail) = split_word(result);
        let value = parse_int(value).ok_or(Malformed)?;
        Ok(if value < 0 {
            Self::Failed { detail }
        } else {
            Self::Returned(value)
        })
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
    Items::new(fields).find_map(|field| {
        field
            .strip_prefix(name)
            .and_then(|value| value.strip_prefix(b"="))
    })
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
    Items::new(items)
        .filter(|item| item.starts_with(b"\""))
        .map(unquote)
        .collect()
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
    for digit in text
        .iter()
        .take(max)
        .map_while(|&b| char::from(b).to_digit(radix))
    {
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
        Items {
            text,
            position: 0,
            close: None,
            finished: false,
        }
    }

    /// The closing bracket and the text after it, once the items are consumed;
    /// `None` if the text ended first.
    fn closing(&self) -> Option<(u8, &'a [u8])> {
        self.close
            .map(|index| (self.text[index], &self.text[index + 1..]))
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
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn parse_tid(text: &[u8]) -> Option<Tid> {
    Tid::try_from(parse_int(text)?).ok()
}

fn parse_tid_value(value: i64) -> Parsed<Tid> {
    Tid::try_from(value).map_err(|_| Malformed)
}

/// Flags as `-X raw` prints them: `0x241`, or `0x1200000|17` for clone.
fn parse_flags(text: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'|')
        .try_fold(0u64, |flags, part| Some(flags | parse_int(part)? as u64))
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
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
    }
    let value = if complement { !value } else { value } as i64;
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}
