//! The backend-neutral events the pipeline consumes.
//!
//! Both sources — the eBPF ring buffer and a parsed strace log — produce these,
//! in the order the facts happened. Paths are raw bytes exactly as the program
//! passed them (relative, dirfd-relative, non-UTF-8); resolving them is the
//! tracker's job. Only successful syscalls are reported, except exec, whose
//! failures are facts too.

/// A kernel task id (a thread id; equal to the process id for a main thread).
pub type Tid = u32;

pub use tracer_common::abi::{self, AT_FDCWD};
use tracer_common::EventKind;

/// A process that was running before the audit joined it, in the state
/// /proc showed: what the tracker would have learnt had it seen it start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingProcess {
    pub pid: Tid,
    pub ppid: Tid,
    /// The program image (the kernel's resolved path).
    pub exe: Option<Vec<u8>>,
    pub argv: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    /// Its root directory (`/` unless it chroot'ed).
    pub root: Vec<u8>,
    /// It is in another mount namespace than the auditor: its paths cannot be
    /// mapped to the auditor's.
    pub other_mount_namespace: bool,
    /// Its threads (those followed from the moment this was read).
    pub threads: Vec<Tid>,
    /// Descriptors open on paths: (fd, path, close-on-exec).
    pub files: Vec<(i32, Vec<u8>, bool)>,
    /// io_uring instances it holds open (set up before the audit).
    pub io_uring_rings: u64,
}

/// One fact about one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub tid: Tid,
    pub fact: Fact,
}

/// How a task ended, as `wait(2)` encodes it: `code << 8` for an exit,
/// the signal number (plus 0x80 for a core dump) for a kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStatus(pub i32);

impl WaitStatus {
    pub fn exited(code: i32) -> Self {
        WaitStatus((code & 0xff) << 8)
    }

    pub fn killed(signal: i32, core_dumped: bool) -> Self {
        WaitStatus((signal & 0x7f) | if core_dumped { 0x80 } else { 0 })
    }

    /// The exit code, if the task exited rather than being killed.
    pub fn exit_code(self) -> Option<i32> {
        (self.0 & 0x7f == 0).then_some((self.0 >> 8) & 0xff)
    }

    /// The signal that killed the task, if it was killed.
    pub fn signal(self) -> Option<i32> {
        let signal = self.0 & 0x7f;
        (signal != 0).then_some(signal)
    }
}

/// Which argv an exec fact carries. They differ for a script: the kernel's
/// script loader drops argv[0] and puts the interpreter and the script first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgvView {
    /// The new image's own (read from its memory after the exec).
    Loaded,
    /// The arguments the exec call was given (a tracer at the syscall).
    Requested,
}

/// The facts the pipeline models. Syscalls stating the same fact share a variant
/// (`open`, `creat`, `openat` and `openat2` are all [`Fact::Open`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// The task created `child`; `flags` are the clone flags (`abi::CLONE_*`).
    Fork { child: Tid, flags: u64 },
    /// The task ended.
    Exit { status: WaitStatus },
    /// The task's process now runs `path` (relative to `dirfd`; empty: the
    /// file `dirfd` is open on) with `argv`, seen as `argv_view` says. After a
    /// non-leader thread's exec it arrives under the process id; `requested_by`
    /// is the thread that asked.
    Exec {
        dirfd: i32,
        path: Vec<u8>,
        flags: u64,
        argv: Vec<Vec<u8>>,
        argv_truncated: bool,
        argv_view: ArgvView,
        requested_by: Tid,
    },
    /// The task could not exec `path` (relative to `dirfd`): `errno`.
    ExecFailed { dirfd: i32, path: Vec<u8>, flags: u64, errno: i32 },
    /// `path` (relative to `dirfd`) was opened as descriptor `fd`.
    Open { dirfd: i32, path: Vec<u8>, flags: u64, fd: i32 },
    /// `path` was looked up without being opened (stat, access, readlink);
    /// `flags` are the `AT_*` ones (`AT_EMPTY_PATH`: the file `dirfd` is open on).
    Metadata { dirfd: i32, path: Vec<u8>, flags: u64 },
    /// The working directory became `path` relative to `dirfd`; an empty path
    /// means the directory `dirfd` is open on (fchdir).
    Chdir { dirfd: i32, path: Vec<u8> },
    /// The root directory became `path` (chroot).
    Chroot { dirfd: i32, path: Vec<u8> },
    /// The root became `new_root`, the old one moved to `put_old` (pivot_root).
    PivotRoot { new_root: Vec<u8>, put_old: Vec<u8> },
    /// The task left namespaces (`CLONE_NEW*` flags).
    Unshare { flags: u64 },
    /// The task joined the namespace of descriptor `fd` (`nstype`: `CLONE_NEW*`, 0 for any).
    Setns { fd: i32, nstype: u64 },
    /// A file system was mounted on `target` (relative to `dirfd`); for a bind
    /// mount (`MS_BIND` in `flags`), `source` is the path it shows.
    Mount { dirfd: i32, source: Vec<u8>, target: Vec<u8>, flags: u64 },
    /// The mount on `target` was removed.
    Umount { dirfd: i32, target: Vec<u8> },
    /// A mount was attached on `to` (move_mount), from `from` (relative to
    /// `from_dirfd`; empty: the mount `from_dirfd` stands for).
    MoveMount { to_dirfd: i32, to: Vec<u8>, from_dirfd: i32, from: Vec<u8> },
    /// An anonymous memory file named `name` was made, as descriptor `fd`.
    MemfdCreate { name: Vec<u8>, fd: i32 },
    /// The task set up an io_uring (whose requests only some sources see).
    IoUringSetup,
    /// The process made a 32-bit syscall, which the eBPF programs do not
    /// follow.
    Ia32Syscall,
    /// An open or a stat of `path` found no file (reported for repeats only).
    LookupFailed { dirfd: i32, path: Vec<u8> },
    /// The task is no longer followed: it ran a setuid or setgid program in
    /// a user's audit.
    Unfollowed,
    /// `old` was renamed to `new`; `flags` are renameat2's.
    Rename { old_dirfd: i32, old: Vec<u8>, new_dirfd: i32, new: Vec<u8>, flags: u64 },
    /// `path` was removed (`dir`: by rmdir or `AT_REMOVEDIR`).
    Remove { dirfd: i32, path: Vec<u8>, dir: bool },
    /// A directory was created.
    Mkdir { dirfd: i32, path: Vec<u8> },
    /// A hard link `new` to `old` was made.
    Link { old_dirfd: i32, old: Vec<u8>, new_dirfd: i32, new: Vec<u8> },
    /// A symbolic link `link` whose text is `target` was made.
    Symlink { target: Vec<u8>, dirfd: i32, link: Vec<u8> },
    /// A file was truncated; an empty path means the file `dirfd` is open on.
    Truncate { dirfd: i32, path: Vec<u8> },
    /// Descriptors `first..=last` were closed.
    Close { first: u32, last: u32 },
    /// Descriptor `old` was duplicated as `new`.
    Dup { old: i32, new: i32, cloexec: bool },
    /// Close-on-exec was set (`on`) or cleared on descriptors `first..=last`.
    SetCloexec { first: u32, last: u32, on: bool },
    /// A notebook cell began or ended in this task's process.
    CellMarker(CellMarker),
    /// A Dask task began or ended in this thread.
    TaskMarker(TaskMarker),
    /// A Dask client of this task's process submitted a graph to its scheduler.
    SubmitMarker(SubmitMarker),
}

/// Why normalised parts do not make a fact.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FactError {
    #[error("an openat on the cell-marker dirfd does not carry a cell marker")]
    BadCellMarker,
    #[error("an openat on the task-marker dirfd does not carry a task or submission marker")]
    BadTaskMarker,
    #[error("an io_uring completion is half of a fact, not one")]
    HalfAFact,
}

/// An exec's argv as the source has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Argv {
    pub args: Vec<Vec<u8>>,
    /// Longer than the source could take whole.
    pub truncated: bool,
}

impl Fact {
    /// The fact an event of `kind` states, from the parts both sources reduce
    /// a call to (tracer-common's `Syscall::normalise`, or the kernel's own
    /// events): its three arguments as the kind documents them, the call's
    /// return value, its strings, and for an exec its argv. A `Fork` carries
    /// the child in `args[0]`.
    pub fn from_parts(
        kind: EventKind,
        args: [u64; 3],
        ret: i64,
        [first, second]: [Vec<u8>; 2],
        argv: Argv,
    ) -> Result<Fact, FactError> {
        let [a0, a1, a2] = args;
        // Descriptors travel as 64-bit syscall arguments; the kernel reads their low half.
        let fd = |value: u64| value as i32;
        Ok(match kind {
            EventKind::Fork => Fact::Fork { child: a0 as Tid, flags: a1 },
            EventKind::Exit => Fact::Exit { status: WaitStatus(a0 as i32) },
            EventKind::Exec => Fact::Exec {
                dirfd: fd(a0),
                path: first,
                flags: a1,
                argv: argv.args,
                argv_truncated: argv.truncated,
                argv_view: ArgvView::Loaded,
                requested_by: a2 as Tid,
            },
            EventKind::ExecFailed => Fact::ExecFailed {
                dirfd: fd(a0),
                path: first,
                flags: a1,
                errno: i32::try_from(-ret).unwrap_or(i32::MAX),
            },
            EventKind::Open => Fact::Open { dirfd: fd(a0), path: first, flags: a1, fd: ret as i32 },
            EventKind::Metadata => Fact::Metadata { dirfd: fd(a0), path: first, flags: a1 },
            EventKind::Chdir => Fact::Chdir { dirfd: fd(a0), path: first },
            EventKind::Chroot => Fact::Chroot { dirfd: fd(a0), path: first },
            EventKind::PivotRoot => Fact::PivotRoot { new_root: first, put_old: second },
            EventKind::Unshare => Fact::Unshare { flags: a0 },
            EventKind::Setns => Fact::Setns { fd: fd(a0), nstype: a1 },
            EventKind::Mount => Fact::Mount { dirfd: fd(a0), source: first, target: second, flags: a1 },
            EventKind::Umount => Fact::Umount { dirfd: fd(a0), target: first },
            EventKind::MoveMount => Fact::MoveMount { to_dirfd: fd(a0), to: first, from_dirfd: fd(a1), from: second },
            EventKind::MemfdCreate => Fact::MemfdCreate { name: first, fd: ret as i32 },
            EventKind::IoUringSetup => Fact::IoUringSetup,
            EventKind::Ia32Syscall => Fact::Ia32Syscall,
            EventKind::LookupFailed => Fact::LookupFailed { dirfd: fd(a0), path: first },
            EventKind::Unfollowed => Fact::Unfollowed,
            EventKind::IoUringCompletion => return Err(FactError::HalfAFact),
            EventKind::Rename => {
                Fact::Rename { old_dirfd: fd(a0), old: first, new_dirfd: fd(a1), new: second, flags: a2 }
            }
            EventKind::Remove => Fact::Remove { dirfd: fd(a0), path: first, dir: a1 & abi::AT_REMOVEDIR != 0 },
            EventKind::Mkdir => Fact::Mkdir { dirfd: fd(a0), path: first },
            EventKind::Link => Fact::Link { old_dirfd: fd(a0), old: first, new_dirfd: fd(a1), new: second },
            EventKind::Symlink => Fact::Symlink { target: first, dirfd: fd(a1), link: second },
            EventKind::Truncate => Fact::Truncate { dirfd: fd(a0), path: first },
            EventKind::Close => Fact::Close { first: a0 as u32, last: a1 as u32 },
            EventKind::Dup => Fact::Dup { old: fd(a0), new: ret as i32, cloexec: a1 != 0 },
            EventKind::SetCloexec => Fact::SetCloexec { first: a0 as u32, last: a1 as u32, on: a2 != 0 },
            EventKind::CellMarker => Fact::CellMarker(CellMarker::parse(&first).ok_or(FactError::BadCellMarker)?),
            // Task markers and submission markers share their dirfd.
            EventKind::TaskMarker => match TaskMarker::parse(&first) {
                Some(marker) => Fact::TaskMarker(marker),
                None => Fact::SubmitMarker(SubmitMarker::parse(&first).ok_or(FactError::BadTaskMarker)?),
            },
        })
    }
}

/// Whether a marker opens or closes a cell or a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerPhase {
    Begin,
    End,
}

/// What reprotrace's IPython hook says about a cell (python/reprotrace/markers.py):
/// `reprotrace-cell:1:<phase>:<execution_count>:<cell_id>:<code_sha256>:<unix_time_ns>`,
/// or, for an END, version 2 with one more field last, a JSON object (ASCII):
/// `{"error": null | {"ename", "evalue"}, "names": null | {"defines", "deletes", "uses", "truncated"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellMarker {
    pub phase: MarkerPhase,
    pub execution_count: u64,
    /// The frontend's cell id, if it sent one.
    pub cell_id: Option<String>,
    pub code_sha256: String,
    /// Wall-clock time of the marker, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// What the END of a version 2 marker says of the cell's run.
    pub outcome: Option<CellOutcome>,
}

/// The exception a cell raised, and the names its source defines and uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct CellOutcome {
    #[serde(default)]
    pub error: Option<CellError>,
    #[serde(default)]
    pub names: Option<CellNames>,
}

/// The exception a cell raised: its type's name and its message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct CellError {
    pub ename: String,
    pub evalue: String,
}

/// The names a cell's source binds, deletes and reads at the notebook's top
/// level (a static reading by the hook; `truncated`: the lists were cut to fit
/// the marker).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct CellNames {
    #[serde(default)]
    pub defines: Vec<String>,
    #[serde(default)]
    pub deletes: Vec<String>,
    #[serde(default)]
    pub uses: Vec<String>,
    #[serde(default)]
    pub truncated: bool,
}

impl CellMarker {
    /// Parses a marker's text; `None` if it is not one.
    pub fn parse(text: &[u8]) -> Option<CellMarker> {
        let text = std::str::from_utf8(text).ok()?;
        let (rest, version) = match (text.strip_prefix("reprotrace-cell:1:"), text.strip_prefix("reprotrace-cell:2:")) {
            (Some(rest), _) => (rest, 1),
            (_, Some(rest)) => (rest, 2),
            _ => return None,
        };
        // Version 2's last field, JSON, may hold colons.
        let mut fields = rest.splitn(6, ':');
        let phase = match fields.next()? {
            "begin" => MarkerPhase::Begin,
            "end" => MarkerPhase::End,
            _ => return None,
        };
        let execution_count = fields.next()?.parse().ok()?;
        let cell_id = match fields.next()? {
            "-" => None,
            id => Some(id.to_string()),
        };
        let code_sha256 = fields.next()?.to_string();
        let time_ns = fields.next()?.parse().ok()?;
        let outcome = match version {
            1 => None,
            _ => Some(serde_json::from_str(fields.next()?).ok()?),
        };
        if fields.next().is_some() || code_sha256.len() != 64 || code_sha256.contains(':') {
            return None;
        }
        Some(CellMarker { phase, execution_count, cell_id, code_sha256, time_ns, outcome })
    }
}

/// What reprotrace's Dask worker plugin says about a task, from the thread
/// that runs it (python/reprotrace/dask.py): the text
/// `reprotrace-task:2:<phase>:<unix_time_ns>:<n>:<worker_address>:<key>`,
/// where `n` is the address's length in bytes (0: unknown) and the key comes
/// last since it is any text but NUL (Dask keys are strings or tuples,
/// written as Python prints them). Version 1,
/// `reprotrace-task:1:<phase>:<unix_time_ns>:<key>`, has no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskMarker {
    pub phase: MarkerPhase,
    /// Wall-clock time of the marker, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub key: String,
    /// The address of the worker that runs the task, as that worker had it
    /// then (a worker its nanny restarted has a new one).
    pub worker: Option<String>,
}

impl TaskMarker {
    /// Parses a marker's text; `None` if it is not one.
    pub fn parse(text: &[u8]) -> Option<TaskMarker> {
        let text = std::str::from_utf8(text).ok()?;
        let (version, rest) = match (text.strip_prefix("reprotrace-task:1:"), text.strip_prefix("reprotrace-task:2:")) {
            (Some(rest), _) => (1, rest),
            (_, Some(rest)) => (2, rest),
            _ => return None,
        };
        let (phase, rest) = rest.split_once(':')?;
        let phase = match phase {
            "begin" => MarkerPhase::Begin,
            "end" => MarkerPhase::End,
            _ => return None,
        };
        let (time_ns, rest) = rest.split_once(':')?;
        let time_ns = time_ns.parse().ok()?;
        let (worker, key) = match version {
            1 => (None, rest),
            _ => {
                let (length, rest) = rest.split_once(':')?;
                let length: usize = length.parse().ok()?;
                let address = rest.get(..length)?;
                let key = rest.get(length..)?.strip_prefix(':')?;
                ((!address.is_empty()).then(|| address.to_string()), key)
            }
        };
        (!key.is_empty()).then(|| TaskMarker { phase, time_ns, key: key.to_string(), worker })
    }
}

/// What reprotrace's Dask client hook says when a client of the traced tree
/// sends its scheduler a graph (one `update-graph` message; python/reprotrace/dask.py),
/// from the thread that submits it: the text
/// `reprotrace-submit:1:<unix_time_ns>:<submission_id>`, on the task markers'
/// dirfd. The scheduler's plugin notes the keys of each submission by the same
/// id (Dask's `stimulus_id`), so the run knows which of its cells submitted
/// which key from its own trace, on its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitMarker {
    /// Wall-clock time of the marker, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub id: String,
}

impl SubmitMarker {
    /// Parses a marker's text; `None` if it is not one.
    pub fn parse(text: &[u8]) -> Option<SubmitMarker> {
        let text = std::str::from_utf8(text).ok()?;
        let (time_ns, id) = text.strip_prefix("reprotrace-submit:1:")?.split_once(':')?;
        let time_ns = time_ns.parse().ok()?;
        (!id.is_empty()).then(|| SubmitMarker { time_ns, id: id.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_submission_markers() {
        assert_eq!(
            SubmitMarker::parse(b"reprotrace-submit:1:1700000000123456789:update-graph-reprotrace-0f1e"),
            Some(SubmitMarker { time_ns: 1_700_000_000_123_456_789, id: "update-graph-reprotrace-0f1e".into() })
        );
        assert_eq!(SubmitMarker::parse(b"reprotrace-submit:1:5:a:b").map(|marker| marker.id), Some("a:b".into()));
        assert_eq!(SubmitMarker::parse(b"reprotrace-submit:1:5:"), None);
        assert_eq!(SubmitMarker::parse(b"reprotrace-submit:1:x:id"), None);
        assert_eq!(SubmitMarker::parse(b"reprotrace-submit:2:5:id"), None);
        assert_eq!(SubmitMarker::parse(b"reprotrace-task:1:begin:5:k"), None);
    }

    #[test]
    fn parses_task_markers() {
        assert_eq!(
            TaskMarker::parse(b"reprotrace-task:1:begin:1700000000123456789:('inc-0a1b', 3)"),
            Some(TaskMarker {
                phase: MarkerPhase::Begin,
                time_ns: 1_700_000_000_123_456_789,
                key: "('inc-0a1b', 3)".into(),
                worker: None,
            })
        );
        assert_eq!(
            TaskMarker::parse(b"reprotrace-task:2:begin:7:20:tcp://10.0.0.2:41234:('inc-0a1b', 3)"),
            Some(TaskMarker {
                phase: MarkerPhase::Begin,
                time_ns: 7,
                key: "('inc-0a1b', 3)".into(),
                worker: Some("tcp://10.0.0.2:41234".into()),
            })
        );
        let unknown = TaskMarker::parse(b"reprotrace-task:2:end:7:0::k:1").expect("no address");
        assert_eq!((unknown.worker, unknown.key.as_str()), (None, "k:1"));
        assert_eq!(TaskMarker::parse(b"reprotrace-task:2:begin:7:25:tcp://10.0.0.2:41234:k"), None, "too long");
        assert_eq!(TaskMarker::parse(b"reprotrace-task:2:begin:7:3:tcpk"), None, "no colon after");
        assert_eq!(TaskMarker::parse(b"reprotrace-task:2:begin:7:x:a:k"), None);
        assert_eq!(
            TaskMarker::parse(b"reprotrace-task:2:begin:7:2:\xc3\xa9:k"),
            Some(TaskMarker { phase: MarkerPhase::Begin, time_ns: 7, key: "k".into(), worker: Some("\u{e9}".into()) }),
            "a length in bytes"
        );
        assert_eq!(TaskMarker::parse(b"reprotrace-task:2:begin:7:1:\xc3\xa9:k"), None, "not at a character boundary");
        let end = TaskMarker::parse(b"reprotrace-task:1:end:5:a:b:c").expect("end marker");
        assert_eq!((end.phase, end.key.as_str()), (MarkerPhase::End, "a:b:c"));
        assert_eq!(TaskMarker::parse(b"reprotrace-task:1:begin:5:"), None);
        assert_eq!(TaskMarker::parse(b"reprotrace-task:3:begin:5:k"), None);
        assert_eq!(TaskMarker::parse(b"reprotrace-cell:1:begin:5:k"), None);
    }

    #[test]
    fn parses_cell_markers() {
        let sha = "ab".repeat(32);
        let marker = CellMarker::parse(format!("reprotrace-cell:1:begin:7:c-1_x:{sha}:1700000000123456789").as_bytes());
        assert_eq!(
            marker,
            Some(CellMarker {
                phase: MarkerPhase::Begin,
                execution_count: 7,
                cell_id: Some("c-1_x".into()),
                code_sha256: sha.clone(),
                time_ns: 1_700_000_000_123_456_789,
                outcome: None,
            })
        );
        let end = CellMarker::parse(format!("reprotrace-cell:1:end:7:-:{sha}:5").as_bytes()).expect("end marker");
        assert_eq!((end.phase, end.cell_id), (MarkerPhase::End, None));
        let payload = r#"{"error": {"ename": "ValueError", "evalue": "a: b"}, "names": {"defines": ["x"], "deletes": [], "uses": ["pd"], "truncated": false}}"#;
        let end = CellMarker::parse(format!("reprotrace-cell:2:end:8:-:{sha}:6:{payload}").as_bytes()).expect("v2");
        let outcome = end.outcome.expect("an outcome");
        assert_eq!(outcome.error, Some(CellError { ename: "ValueError".into(), evalue: "a: b".into() }));
        assert_eq!(outcome.names.map(|names| (names.defines, names.uses)), Some((vec!["x".into()], vec!["pd".into()])));
        assert_eq!(CellMarker::parse(format!("reprotrace-cell:2:end:8:-:{sha}:6:not json").as_bytes()), None);
        assert_eq!(CellMarker::parse(b"reprotrace-cell:2:begin:1:-:x:1"), None);
        assert_eq!(CellMarker::parse(format!("reprotrace-cell:1:begin:1:-:{sha}:1:extra").as_bytes()), None);
    }
}
