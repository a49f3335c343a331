//! What reprotrace's kernel programs and its user space agree on: the wire layout
//! of an event, the event kinds, and the table of programs, maps and globals that
//! the loader attaches and the build exports.
//!
//! Every event is an [`EventHeader`] followed by up to two byte strings whose
//! lengths the header gives. The header's `args` mean different things per
//! [`EventKind`]; each kind documents its own. Several syscalls that state the same
//! fact (open/creat/openat/openat2, dup/dup2/dup3/fcntl(F_DUPFD)) are normalised to
//! one kind (see [`syscalls`]), so user space decodes facts, not syscalls.
#![cfg_attr(not(test), no_std)]

pub mod abi;
pub mod syscalls;

/// Longest path the kernel copies (Linux `PATH_MAX`, NUL included).
pub const PATH_MAX: usize = 4096;
/// Bytes of NUL-separated argv the kernel copies for one exec.
pub const ARGV_MAX: usize = 16384;
/// Arguments the kernel copies for one exec.
pub const ARGV_MAX_ARGS: usize = 128;
/// Size of the per-CPU buffer an event is assembled in (a power of two, so the
/// programs can bound offsets with a mask the verifier understands).
pub const SCRATCH_SIZE: usize = 32768;

/// `EventHeader::flags`: the first string was cut at [`PATH_MAX`].
pub const FLAG_STR0_TRUNCATED: u16 = 1;
/// `EventHeader::flags`: the second string (or argv) was cut.
pub const FLAG_STR1_TRUNCATED: u16 = 2;
/// `EventHeader::flags`: an argv entry could not be read (page not resident).
pub const FLAG_ARGV_UNREADABLE: u16 = 4;

/// The facts the kernel reports. The discriminant is the `kind` field on the wire.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A task created another. args: [child tid, clone flags, -].
    Fork = 1,
    /// A task ended. args: [wait status (task_struct.exit_code), group_dead, -].
    Exit = 2,
    /// A task asked to exec (emitted at syscall entry, before the old image is
    /// gone). args: [dirfd, execveat flags, -]; str0 = path, str1 = argv, each
    /// argument NUL-terminated.
    ExecRequest = 3,
    /// The outcome of the task's last [`EventKind::ExecRequest`]: `ret`.
    ExecResult = 4,
    /// A file was opened. args: [dirfd, open flags, mode]; str0 = path; ret = fd.
    Open = 5,
    /// The working directory changed. args: [dirfd, -, -]; str0 = path, empty for
    /// fchdir (then dirfd is the directory).
    Chdir = 6,
    /// A name was renamed. args: [old dirfd, new dirfd, renameat2 flags];
    /// str0 = old path, str1 = new path.
    Rename = 7,
    /// A name was removed. args: [dirfd, unlinkat flags (AT_REMOVEDIR), -]; str0 = path.
    Remove = 8,
    /// A directory was created. args: [dirfd, mode, -]; str0 = path.
    Mkdir = 9,
    /// A hard link was made. args: [old dirfd, new dirfd, linkat flags];
    /// str0 = existing path, str1 = new path.
    Link = 10,
    /// A symbolic link was made. args: [-, new dirfd, -]; str0 = target (its
    /// text, not resolved), str1 = link path.
    Symlink = 11,
    /// A file was truncated. args: [dirfd, -, -]; str0 = path, empty for
    /// ftruncate (then dirfd is the open file).
    Truncate = 12,
    /// File descriptors were closed. args: [first fd, last fd, -].
    Close = 13,
    /// A descriptor was duplicated. args: [old fd, 1 if the copy is close-on-exec, -];
    /// ret = new fd.
    Dup = 14,
    /// Close-on-exec was set or cleared. args: [first fd, last fd, 1 if set].
    SetCloexec = 15,
    /// A notebook cell began or ended: an `openat` on [`abi::CELL_MARKER_DIRFD`]
    /// (which fails). str0 = the marker text.
    CellMarker = 16,
}

impl EventKind {
    /// The kind with this wire value, if there is one.
    pub fn from_wire(value: u16) -> Option<Self> {
        use EventKind::*;
        Some(match value {
            1 => Fork,
            2 => Exit,
            3 => ExecRequest,
            4 => ExecResult,
            5 => Open,
            6 => Chdir,
            7 => Rename,
            8 => Remove,
            9 => Mkdir,
            10 => Link,
            11 => Symlink,
            12 => Truncate,
            13 => Close,
            14 => Dup,
            15 => SetCloexec,
            16 => CellMarker,
            _ => return None,
        })
    }
}

/// The fixed part of every event; strings follow it back to back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// An [`EventKind`] wire value.
    pub kind: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// The audit (traced PID tree) the task belongs to.
    pub audit_id: u32,
    /// Thread-group id (the process id user space sees).
    pub tgid: u32,
    /// Task id (the thread id).
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the event was emitted.
    pub ktime_ns: u64,
    /// The syscall's return value, where the kind has one.
    pub ret: i64,
    /// Kind-specific arguments.
    pub args: [u64; 3],
    /// Lengths of the two strings that follow, each counting its final NUL.
    pub str_len: [u16; 2],
    pub _reserved: u32,
}

/// Size of [`EventHeader`] on the wire.
pub const HEADER_SIZE: usize = core::mem::size_of::<EventHeader>();

/// What the entry program of a syscall leaves for its exit program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingSyscall {
    /// The syscall number at entry; the exit program ignores a mismatch.
    pub syscall_nr: u32,
    /// The [`EventKind`] the exit program emits.
    pub kind: u16,
    pub _reserved: u16,
    pub args: [u64; 3],
    /// User pointers to the strings, read at exit when the kernel has touched them.
    pub str_ptr: [u64; 2],
}

/// Map names, as exported from the object and looked up by the loader.
pub mod maps {
    /// `HashMap<u32 tid, u32 audit id>`: the tasks being traced.
    pub const TRACED: &str = "TRACED";
    /// `HashMap<u32 tid, PendingSyscall>`.
    pub const PENDING: &str = "PENDING";
    /// The ring buffer events travel on.
    pub const EVENTS: &str = "EVENTS";
    /// `PerCpuArray<u64>` of per-CPU counters, indexed by [`super::counters`].
    pub const COUNTERS: &str = "COUNTERS";
    /// `PerCpuArray<[u8; SCRATCH_SIZE]>` where events are assembled.
    pub const SCRATCH: &str = "SCRATCH";
    pub const ALL: &[&str] = &[TRACED, PENDING, EVENTS, COUNTERS, SCRATCH];
}

/// Slots of the `COUNTERS` map.
pub mod counters {
    /// Events dropped because the ring buffer was full.
    pub const RINGBUF_DROPS: u32 = 0;
    /// Children that could not be followed because the `TRACED` map was full.
    pub const UNTRACKED_CHILDREN: u32 = 1;
    /// Events this CPU sent since it last woke the consumer (kernel-side bookkeeping).
    pub const SINCE_WAKEUP: u32 = 2;
    /// Number of slots.
    pub const LEN: u32 = 3;
}

/// Globals user space sets before load (read-only data in the object).
pub mod globals {
    /// Byte offset of `exit_code` in `struct task_struct`, from the kernel's BTF.
    pub const TASK_EXIT_CODE_OFFSET: &str = "TASK_EXIT_CODE_OFFSET";
    pub const ALL: &[&str] = &[TASK_EXIT_CODE_OFFSET];
}

/// A tracepoint program: its symbol in the object and where it attaches.
#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    pub symbol: &'static str,
    pub category: &'static str,
    pub name: &'static str,
}

/// The programs on the scheduler's tracepoints, which follow the PID tree.
pub const SCHED_PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec { symbol: "sched_process_fork", category: "sched", name: "sched_process_fork" },
    ProgramSpec { symbol: "sched_process_exec", category: "sched", name: "sched_process_exec" },
    ProgramSpec { symbol: "sched_process_exit", category: "sched", name: "sched_process_exit" },
];

/// Every program in the object: the scheduler's, then an entry and an exit
/// program per traced syscall. The build exports these symbols and the
/// loader attaches each one.
pub fn programs() -> impl Iterator<Item = ProgramSpec> {
    let syscall_programs = syscalls::SYSCALLS.iter().flat_map(|syscall| {
        [syscall.enter_program, syscall.exit_program].map(|program| ProgramSpec {
            symbol: program,
            category: "syscalls",
            name: program,
        })
    });
    SCHED_PROGRAMS.iter().copied().chain(syscall_programs)
}
