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
pub mod io_uring;
pub mod syscalls;

/// Longest path the kernel copies (Linux `PATH_MAX`, NUL included).
pub const PATH_MAX: usize = 4096;
/// Bytes of argv (each argument NUL-terminated) the kernel sends for one exec:
/// at least 4,096 arguments of 64 bytes. Longer argvs are cut and flagged.
pub const ARGV_MAX: usize = 256 * 1024;
/// Size of the per-CPU buffer a path event is assembled in (a power of two, so
/// the programs can bound offsets with a mask the verifier understands).
pub const SCRATCH_SIZE: usize = 32768;
/// Size of the per-CPU buffer an exec event is assembled in: header, path, argv.
pub const EXEC_SCRATCH_SIZE: usize = HEADER_SIZE + 2 * PATH_MAX + ARGV_MAX;

/// `EventHeader::flags`: the first string was cut at [`PATH_MAX`].
pub const FLAG_STR0_TRUNCATED: u16 = 1;
/// `EventHeader::flags`: the second string was cut.
pub const FLAG_STR1_TRUNCATED: u16 = 2;
/// `EventHeader::flags`: an exec's argv was longer than [`ARGV_MAX`], or could
/// not be read whole.
pub const FLAG_ARGV_TRUNCATED: u16 = 4;
/// `EventHeader::flags`: an io_uring request (`ret` is its id), whose fact
/// holds if its [`EventKind::IoUringCompletion`] says it succeeded.
pub const FLAG_IO_URING_REQUEST: u16 = 8;
/// `EventHeader::flags`: the io_uring request opens or closes a direct
/// descriptor (a slot of the ring's file table, not a process descriptor).
pub const FLAG_IO_URING_DIRECT: u16 = 16;
/// `EventHeader::flags`: an exec's path is the kernel's spelling of one
/// relative to a descriptor N (`execveat`): `/dev/fd/N` for the descriptor
/// itself, `/dev/fd/N/PATH` for PATH under it.
pub const FLAG_EXEC_FROM_FD: u16 = 32;

/// The facts the kernel reports. The discriminant is the `kind` field on the wire.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A task created another. args: [child tid, clone flags, -]: the
    /// flags as the kernel applied them, read off the two tasks
    /// (`CLONE_THREAD`, `CLONE_FILES`, `CLONE_FS`, `CLONE_VM`, `CLONE_NEWNS`;
    /// no other).
    Fork = 1,
    /// A task ended. args: [wait status (task_struct.exit_code), group_dead, -].
    Exit = 2,
    /// A task's exec succeeded (reported by `sched_process_exec`, from the new
    /// image). args: [-, -, the tid that asked]; ret: argv's length in the
    /// new image; str0 = the path the kernel ran (relative to a descriptor:
    /// `/dev/fd/N/PATH`, flagged [`FLAG_EXEC_FROM_FD`]), str1 = argv, each
    /// argument NUL-terminated.
    Exec = 3,
    /// A task's exec failed. args: [dirfd, execveat flags, -]; ret = -errno;
    /// str0 = the path (the kernel copied it, so it is resident).
    ExecFailed = 4,
    /// A file was opened. args: [dirfd, open flags, mode]; str0 = path; ret = fd.
    /// The kernel sends a process image's first read-only open of a regular,
    /// non-executable file by absolute path (up to 512 bytes) with given flags
    /// in each notebook cell only; the later ones, and the closes of their
    /// descriptors, state nothing new and are not sent.
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
    /// A name was looked up without opening it (stat, access, readlink).
    /// args: [dirfd, `AT_*` flags, -]; str0 = path. The kernel sends a process
    /// image's first lookup of each absolute path (up to 512 bytes) in each
    /// notebook cell only, and no empty one (a descriptor's stat, glibc's fstat).
    Metadata = 17,
    /// The root directory changed. args: [dirfd, -, -]; str0 = path.
    Chroot = 18,
    /// The root was swapped. args: [dirfd, dirfd, -]; str0 = new root, str1 =
    /// where the old root went.
    PivotRoot = 19,
    /// The task left namespaces. args: [`CLONE_NEW*` flags, -, -].
    Unshare = 20,
    /// The task joined the namespace of a descriptor. args: [fd, `CLONE_NEW*` type, -].
    Setns = 21,
    /// A file system was mounted. args: [dirfd, mount flags, -]; str0 =
    /// source (a path for a bind mount), str1 = target.
    Mount = 22,
    /// A mount was removed. args: [dirfd, umount2 flags, -]; str0 = target.
    Umount = 23,
    /// A mount was moved or attached (`move_mount`). args: [to dirfd, from
    /// dirfd, flags]; str0 = to path, str1 = from path.
    MoveMount = 24,
    /// An anonymous memory file was made. args: [-, flags, -]; str0 = its
    /// name; ret = fd.
    MemfdCreate = 25,
    /// An io_uring request finished. args: [its id, -, -]; ret = its result.
    IoUringCompletion = 26,
    /// The task set up an io_uring (`io_uring_setup`); ret = its descriptor.
    IoUringSetup = 27,
    /// A Dask task began or ended in the calling thread: an `openat` on
    /// [`abi::TASK_MARKER_DIRFD`] (which fails). str0 = the marker text.
    TaskMarker = 28,
    /// The process made a 32-bit (ia32) syscall, which the programs do not
    /// follow (its numbers mean other calls): sent for its first one.
    Ia32Syscall = 29,
    /// A path was looked up and is not there (`ENOENT`): an open or a stat
    /// that failed, sent only when the loader asks (`repeat`, which names a
    /// file the bundle lacks). args: [dirfd, the call's kind, -]; ret =
    /// -errno; str0 = path.
    LookupFailed = 30,
    /// The task is no longer followed: it ran a setuid or setgid program in
    /// a user's audit (sent right after that exec).
    Unfollowed = 31,
}

impl EventKind {
    /// The kind with this wire value, if there is one.
    pub fn from_wire(value: u16) -> Option<Self> {
        use EventKind::*;
        Some(match value {
            1 => Fork,
            2 => Exit,
            3 => Exec,
            4 => ExecFailed,
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
            17 => Metadata,
            18 => Chroot,
            19 => PivotRoot,
            20 => Unshare,
            21 => Setns,
            22 => Mount,
            23 => Umount,
            24 => MoveMount,
            25 => MemfdCreate,
            26 => IoUringCompletion,
            27 => IoUringSetup,
            28 => TaskMarker,
            29 => Ia32Syscall,
            30 => LookupFailed,
            31 => Unfollowed,
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
    pub str_len: [u32; 2],
}

/// Size of [`EventHeader`] on the wire.
pub const HEADER_SIZE: usize = core::mem::size_of::<EventHeader>();

/// Where the raw `sys_exit` tracepoint's programs find a
/// syscall's number and arguments (byte offsets in `struct pt_regs`, from the
/// kernel's BTF), and how they tell a 32-bit (ia32) syscall, whose numbers are
/// other ones: `thread_info.status` (at that offset in `task_struct`) has
/// `TS_COMPAT`; and the task's ids, which the dispatcher reads from the task
/// it has at hand rather than by another helper call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallRegs {
    /// `orig_ax`: the syscall's number.
    pub number: u64,
    /// `di`, `si`, `dx`, `r10`, `r8`, `r9`: its arguments, in order.
    pub args: [u64; 6],
    /// `task_struct.thread_info.status`.
    pub task_status: u64,
    /// `task_struct.pid` and `tgid`.
    pub task_pid: u64,
    pub task_tgid: u64,
    /// The span of `struct pt_regs` that holds the number and every argument
    /// register, from this offset: the dispatcher keeps each register at the
    /// same place relative to it for the handlers (at most
    /// [`SYSCALL_REGS_SPAN_MAX`] bytes).
    pub window_start: u64,
    pub window_bytes: u64,
}

/// The bytes where the dispatcher keeps a syscall's registers for its
/// handler: the registers' span, then, in the last three words, the task's
/// table of open files, its audit and its `pid_tgid` (what the handlers need
/// not look up again).
pub const SYSCALL_REGS_WINDOW_MAX: usize = 128;

/// Most bytes the registers may span (x86_64's span 72).
pub const SYSCALL_REGS_SPAN_MAX: usize = SYSCALL_REGS_WINDOW_MAX - 24;

// SAFETY: plain integers, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SyscallRegs {}

/// x86's `TS_COMPAT` in `thread_info.status`: the task is in a 32-bit syscall.
pub const TS_COMPAT: u32 = 0x0002;

/// The most task ids Linux can give (`PID_MAX_LIMIT` on 64-bit): the
/// largest `TASK_AUDITS` the loader makes.
pub const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;

/// Slots of the syscall dispatch table (`EXIT_HANDLERS`): above every x86_64
/// syscall number reprotrace traces.
pub const SYSCALL_SLOTS: usize = 512;

/// A fact as `SEEN_FACTS` holds it: a fact about an absolute path that one
/// process image stated during one notebook cell (or Dask task) of one audit:
/// a lookup, or an open with given flags. The first occurrence is sent, and
/// the same fact again is not: it would tell user space nothing new.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactKey {
    pub audit_id: u32,
    /// The process (thread-group) id.
    pub tgid: u32,
    /// The process's epoch (see [`ProcessDedup`]): new at each fork, exec,
    /// cell or task marker and change of root or namespace, so a process,
    /// image, cell or view of the file system never inherits another's facts.
    pub epoch: u64,
    /// The path's length, NUL included.
    pub path_len: u32,
    /// The [`EventKind`] (high byte) and, for an open, its flags (low 24 bits).
    pub detail: u32,
    /// A 64-bit hash of the absolute path (see [`FactKey::path_hash_step`]).
    pub path_hash: u64,
}

impl FactKey {
    /// Where a path's hash starts (see [`FactKey::path_hash_step`]).
    pub const PATH_HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

    /// A path's hash with one more word of it taken in: the path is hashed
    /// 8 bytes (a little-endian word) at a time from
    /// [`FactKey::PATH_HASH_SEED`], up to the word that holds its NUL (zeros
    /// after it). Cheap and one-to-one in each word, not well spread: paths
    /// that differ in their last bytes differ in few bits of the hash, and
    /// [`FactKey::set`] spreads them.
    #[inline(always)]
    pub fn path_hash_step(hash: u64, word: u64) -> u64 {
        let hash = (hash ^ word).wrapping_mul(0x0100_0000_01b3);
        hash ^ hash >> 29
    }

    /// The fact's fingerprint as `SEEN_FACTS` holds it: a 64-bit hash of the
    /// whole fact, never 0 (which marks an empty slot).
    #[inline(always)]
    pub fn check(&self) -> u64 {
        let words = [
            u64::from(self.audit_id) << 32 | u64::from(self.tgid),
            self.epoch,
            u64::from(self.path_len) << 32 | u64::from(self.detail),
            self.path_hash,
        ];
        let mut hash: u64 = 0x9e37_79b9_7f4a_7c15;
        for word in words {
            hash = (hash ^ word).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            hash ^= hash >> 31;
        }
        hash | 1 << 63
    }

    /// The fact's set in `SEEN_FACTS`. Chosen by another function of the
    /// fact than [`FactKey::check`] (the path's hash and the process image's
    /// epoch), so that facts sharing a set still differ in all 64 bits of
    /// their checks, not only in those the set leaves free; and the facts a
    /// process image states about one path (its lookups and opens) share a
    /// set, one cache line. The set is the top bits of a product, which
    /// every bit of the path's hash reaches: 2,000 paths that differ only in
    /// their last digits took about 200 sets when the set was a band of
    /// the hash's bits, and evicted one another on every pass of a storm.
    #[inline(always)]
    pub fn set(&self) -> u32 {
        let spread =
            (self.path_hash ^ self.epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (spread >> (64 - SEEN_FACT_SET_BITS)) as u32
    }
}

/// The ways of a `SEEN_FACTS` set: the checks of facts sent, the newest
/// first (0: empty). Eight, a whole cache line: a process image states up to
/// two facts about a path it rereads (its open and its lookup), and with four
/// ways the few sets that three of a churn's 2,000 paths share (six facts)
/// evicted one another's on every pass, some 1,800 facts sent again.
pub const SEEN_FACT_WAYS: usize = 8;

/// A set of the `SEEN_FACTS` array (see [`SEEN_FACT_SETS`]).
pub type SeenFactSet = [u64; SEEN_FACT_WAYS];

/// Sets of the `SEEN_FACTS` array (a power of two), a set-associative cache
/// of the facts sent: 64 bytes a set, one cache line (the array is
/// memory-mappable, which puts its values at a page boundary), as a lookup
/// is the handlers' likeliest cache miss. A hit is an array read the
/// verifier inlines, where an LRU hash map took a helper call, a bucket walk
/// and a shared write. A way is one aligned word, written whole: no CPU sees
/// half a fact. An evicted fact is only sent again, so this sizes the cache,
/// not what is exact.
pub const SEEN_FACT_SETS: u32 = 1 << SEEN_FACT_SET_BITS;

/// The bits of a [`SEEN_FACT_SETS`] index.
pub const SEEN_FACT_SET_BITS: u32 = 13;

/// Descriptors below this number can be silent (see [`ProcessDedup`]); an
/// open of a higher one is always sent.
pub const SILENT_FD_LIMIT: u32 = 1024;

/// Slots of the `DEDUP_SLOTS` array (a power of two): process `tgid` holds
/// slot `tgid % PROCESS_DEDUP_SLOTS` unless a followed process holds it (it
/// then goes without: its facts are all sent). A slot is an array read the
/// verifier inlines, where a hash map's lookup was a call, a hash and a
/// bucket walk (two an open and its close: 2% of an open loop's time).
pub const PROCESS_DEDUP_SLOTS: u32 = 1 << 11;

/// A slot of the `DEDUP_SLOTS` array: a traced process's (thread group's)
/// epoch and silent descriptors.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessDedup {
    /// New at each fork, exec, cell or task marker and change of root or
    /// namespace (the time it began): see [`FactKey::epoch`].
    pub epoch: u64,
    /// The audit id plus one once the process's first 32-bit syscall was
    /// reported to that audit (0: not reported).
    pub ia32_reported: u64,
    /// The process (thread-group id) that holds the slot, 0 if none.
    pub owner: u64,
    /// Keeps `silent_fds`, which the process's threads write, off the cache
    /// line the epoch and owner are read from at every lookup.
    pub _apart: [u64; 5],
    /// Byte `fd` is 1 when descriptor `fd` came from an open that was not
    /// sent (the same fact sent already), so that its close is not sent
    /// either; 0 once a call that is sent (an open, a dup, an io_uring
    /// request's completion) makes that number anew. A silent close leaves
    /// it at 1: a descriptor that a call the programs do not follow makes
    /// there (a socket, a pipe) was never an open user space knows of, so
    /// its close says nothing either, and a loop that reopens the same file
    /// stores nothing (threads storing into one line of bytes made it
    /// bounce between their CPUs).
    /// Bytes, not bits: each is stored on its own, where threads that share
    /// a word of bits would need a locked read-modify-write each.
    pub silent_fds: [u8; SILENT_FD_LIMIT as usize],
}

/// Where the programs find an open descriptor's inode mode (byte offsets from
/// BTF): `task_struct.files`, `files_struct.fdt`, `fdtable.fd`,
/// `file.f_inode`, `inode.i_mode`. An open is only left unsent when it opened
/// a regular file that is not executable: a directory's descriptor resolves
/// later paths, an executable's may be run through `/dev/fd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOffsets {
    pub task_files: u64,
    pub files_fdt: u64,
    pub fdtable_fd: u64,
    pub file_inode: u64,
    pub inode_mode: u64,
}

// SAFETY: plain integers, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FileOffsets {}

/// Where the programs find a task's credentials (byte offsets from BTF):
/// `task_struct.cred`, and `cred.uid`, `euid`, `gid`, `egid` (each a
/// `kuid_t`/`kgid_t`, whose value is its first 4 bytes) and
/// `cap_effective` (a `kernel_cap_t`, 64 bits).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredOffsets {
    pub task_cred: u64,
    pub uid: u64,
    pub euid: u64,
    pub gid: u64,
    pub egid: u64,
    pub cap_effective: u64,
}

// SAFETY: plain integers, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for CredOffsets {}

/// What a new task shares with its parent, where `sched_process_fork` finds
/// it (byte offsets from BTF): `task_struct.fs` and `nsproxy`, and
/// `nsproxy.mnt_ns` (with [`FileOffsets::task_files`], `task_struct.mm`
/// and the ids of [`SyscallRegs`]). The fork's flags are read off the two
/// tasks, not the call's arguments: no program runs at a syscall's entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharingOffsets {
    pub task_fs: u64,
    pub task_nsproxy: u64,
    pub nsproxy_mnt_ns: u64,
}

// SAFETY: plain integers, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SharingOffsets {}

/// Where `sched_process_exec` finds the path the kernel ran (byte offsets
/// from BTF): `linux_binprm.filename`, and `linux_binprm.fdpath`, which is
/// set when that path is the kernel's spelling of one relative to a
/// descriptor (`/dev/fd/N` or `/dev/fd/N/PATH`, see [`FLAG_EXEC_FROM_FD`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BinprmOffsets {
    pub filename: u64,
    pub fdpath: u64,
}

// SAFETY: plain integers, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for BinprmOffsets {}

/// Map names, as exported from the object and looked up by the loader.
pub mod maps {
    /// `HashMap<u32 tid, u32 audit id>`: the tasks being traced.
    pub const TRACED: &str = "TRACED";
    /// The ring buffer events travel on.
    pub const EVENTS: &str = "EVENTS";
    /// `PerCpuArray<u64>` of per-CPU counters, indexed by [`super::counters`].
    pub const COUNTERS: &str = "COUNTERS";
    /// `PerCpuArray<[u8; SCRATCH_SIZE]>` where events are assembled.
    pub const SCRATCH: &str = "SCRATCH";
    /// `Array<[u8; EXEC_SCRATCH_SIZE]>`, one entry per CPU (too large for a
    /// per-CPU map), where exec events are assembled.
    pub const EXEC_SCRATCH: &str = "EXEC_SCRATCH";
    /// `Array<SeenFactSet>` of [`super::SEEN_FACT_SETS`]: facts about
    /// absolute paths sent already (not sent again by the same process
    /// image in the same cell).
    pub const SEEN_FACTS: &str = "SEEN_FACTS";
    /// `Array<ProcessDedup>` of [`super::PROCESS_DEDUP_SLOTS`]: traced
    /// processes' epochs and silent descriptors, at their ids' slots.
    pub const DEDUP_SLOTS: &str = "DEDUP_SLOTS";
    /// `PerCpuArray<ProcessDedup>` of one entry, where a process's fresh
    /// slot is made.
    pub const FRESH_SLOT: &str = "FRESH_SLOT";
    /// `HashMap<u32 audit id, u32>`: the audits of users other than root,
    /// which do not follow a process past a setuid or setgid exec.
    pub const USER_AUDITS: &str = "USER_AUDITS";
    /// `HashMap<u64 request, u32 audit id>`: io_uring requests awaiting completion.
    pub const IO_URING_REQUESTS: &str = "IO_URING_REQUESTS";
    /// `Array<[u32; 2]>` of half `pid_max` entries, memory-mapped by user
    /// space: task `tid`'s audit plus one (0: not followed) is half `tid & 1`
    /// of entry `tid >> 1` (set before the task is added to `TRACED`,
    /// cleared after it is removed), so that every program asks one array
    /// read instead of a hash lookup.
    pub const TASK_AUDITS: &str = "TASK_AUDITS";
    /// `ProgramArray` of [`super::SYSCALL_SLOTS`]: each traced syscall's exit handler at its number.
    pub const EXIT_HANDLERS: &str = "EXIT_HANDLERS";
    pub const ALL: &[&str] = &[
        TRACED,
        EVENTS,
        COUNTERS,
        SCRATCH,
        EXEC_SCRATCH,
        SEEN_FACTS,
        DEDUP_SLOTS,
        FRESH_SLOT,
        IO_URING_REQUESTS,
        EXIT_HANDLERS,
        TASK_AUDITS,
        USER_AUDITS,
    ];
}

/// Slots of the `COUNTERS` map.
pub mod counters {
    /// Events lost: the ring buffer was full, or the kernel had no memory
    /// for what a call's exit or an io_uring request's completion needs.
    pub const LOST_EVENTS: u32 = 0;
    /// Tasks that could not be followed: the `TRACED` map full, or no memory
    /// for their entry.
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
    /// Byte offset of `mm` in `struct task_struct`.
    pub const TASK_MM_OFFSET: &str = "TASK_MM_OFFSET";
    /// Byte offsets of `arg_start` and `arg_end` in `struct mm_struct`.
    pub const MM_ARG_START_OFFSET: &str = "MM_ARG_START_OFFSET";
    pub const MM_ARG_END_OFFSET: &str = "MM_ARG_END_OFFSET";
    /// An [`crate::io_uring::IoUringOffsets`].
    pub const IO_URING_OFFSETS: &str = "IO_URING_OFFSETS";
    /// A [`crate::SyscallRegs`]: where a syscall's number and arguments are
    /// in `struct pt_regs`, and where a task says it is in a 32-bit syscall.
    pub const SYSCALL_REGS: &str = "SYSCALL_REGS";
    /// A [`crate::FileOffsets`].
    pub const FILE_OFFSETS: &str = "FILE_OFFSETS";
    /// A [`crate::CredOffsets`].
    pub const CRED_OFFSETS: &str = "CRED_OFFSETS";
    /// A [`crate::SharingOffsets`].
    pub const SHARING_OFFSETS: &str = "SHARING_OFFSETS";
    /// A [`crate::BinprmOffsets`].
    pub const BINPRM_OFFSETS: &str = "BINPRM_OFFSETS";
    /// Non-zero: every program returns at once (the benchmarks' floor: what
    /// attaching costs before any work).
    pub const RETURN_AT_ONCE: &str = "RETURN_AT_ONCE";
    /// Non-zero: opens and stats that find no file (`ENOENT`) are reported
    /// (`EventKind::LookupFailed`).
    pub const REPORT_FAILED_LOOKUPS: &str = "REPORT_FAILED_LOOKUPS";
    /// Non-zero: the loader turned the programs' calls of
    /// [`crate::RDONLY_CAST_PLACEHOLDER`] into calls of the kernel's
    /// `bpf_rdonly_cast`, so kernel memory is read by loads, not helper calls.
    pub const KERNEL_READS_BY_LOAD: &str = "KERNEL_READS_BY_LOAD";
    pub const ALL: &[&str] = &[
        TASK_EXIT_CODE_OFFSET,
        TASK_MM_OFFSET,
        MM_ARG_START_OFFSET,
        MM_ARG_END_OFFSET,
        IO_URING_OFFSETS,
        SYSCALL_REGS,
        FILE_OFFSETS,
        CRED_OFFSETS,
        SHARING_OFFSETS,
        BINPRM_OFFSETS,
        RETURN_AT_ONCE,
        REPORT_FAILED_LOOKUPS,
        KERNEL_READS_BY_LOAD,
    ];
}

/// What the programs call where they mean the kernel function (kfunc)
/// `bpf_rdonly_cast(address, 0)`: a helper number no kernel has. A kfunc call
/// names the function by its id in the running kernel's BTF, which the build
/// cannot know and aya 0.14 cannot resolve, so the loader writes it into
/// each such call (`tracer-user`'s `kfunc` module). The kfunc returns its
/// argument as read-only, untrusted kernel memory: the verifier lets the
/// program load from it at any offset, each load guarded as a helper read
/// would be (a fault reads 0), and the call itself is compiled to a move.
/// Since Linux 6.17 (`BPF_FEAT_RDONLY_CAST_TO_VOID`); on an older kernel the
/// calls are left as they are, on a path the verifier never walks (see
/// [`globals::KERNEL_READS_BY_LOAD`]).
pub const RDONLY_CAST_PLACEHOLDER: u32 = 0x7e4d_0001;

/// How a program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// To the raw tracepoint of this name (`sys_exit`).
    RawTracepoint(&'static str),
    /// To the tracepoint `category:name`.
    Tracepoint { category: &'static str, name: &'static str },
    /// Not attached: the `sys_exit` dispatcher tail-calls it (slot `nr` of
    /// `EXIT_HANDLERS`) for each syscall `nr` it
    /// [handles](syscalls::Syscall::handled_by).
    ExitHandler,
}

/// A program: its symbol in the object and how it is attached.
#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    pub symbol: &'static str,
    pub attach: Attach,
}

impl ProgramSpec {
    /// The program on a raw tracepoint, named after it.
    const fn raw_tracepoint(name: &'static str) -> ProgramSpec {
        ProgramSpec { symbol: name, attach: Attach::RawTracepoint(name) }
    }

    /// The program on a classic tracepoint, named after it.
    const fn tracepoint(category: &'static str, name: &'static str) -> ProgramSpec {
        ProgramSpec { symbol: name, attach: Attach::Tracepoint { category, name } }
    }

    /// A raw tracepoint program (every other one is a classic tracepoint's).
    pub fn is_raw_tracepoint(&self) -> bool {
        matches!(self.attach, Attach::RawTracepoint(_) | Attach::ExitHandler)
    }
}

/// The programs besides the syscalls' exit handlers: the syscall dispatcher
/// on the `sys_exit` raw tracepoint (one attach point for every syscall: a
/// program run and an array read for a task reprotrace does not follow), the
/// scheduler's tracepoints, which follow the PID tree, and io_uring's, which
/// see its requests.
pub const FIXED_PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec::raw_tracepoint("sys_exit"),
    ProgramSpec::raw_tracepoint("sched_process_fork"),
    ProgramSpec::raw_tracepoint("sched_process_exec"),
    ProgramSpec::tracepoint("sched", "sched_process_exit"),
    ProgramSpec::tracepoint("io_uring", "io_uring_submit_req"),
    ProgramSpec::tracepoint("io_uring", "io_uring_complete"),
];

/// Every program in the object: the fixed ones and an exit handler per
/// shape of traced syscall (that of the first syscall of the shape: see
/// [`Syscall::handled_by`](syscalls::Syscall::handled_by)). None runs at a
/// syscall's entry: a program on any `syscalls:sys_enter_*` tracepoint has
/// the kernel call its perf hook at the entry of every syscall on the host
/// (a third of the floor's cost on this kernel). The build exports these
/// symbols and the loader loads each.
pub fn programs() -> impl Iterator<Item = ProgramSpec> {
    let handlers = syscalls::SYSCALLS
        .iter()
        .filter(|syscall| syscall.handled_by().nr == syscall.nr)
        .map(|syscall| ProgramSpec { symbol: syscall.exit_handler, attach: Attach::ExitHandler });
    FIXED_PROGRAMS.iter().copied().chain(handlers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fact's check tells every field of it, and is never an empty slot's
    /// 0; its set is inside the array.
    #[test]
    fn a_seen_fact_checks_every_field() {
        let fact = FactKey { audit_id: 1, tgid: 2, epoch: 3, path_len: 4, detail: 5, path_hash: 6 };
        let changed = [
            FactKey { audit_id: 7, ..fact },
            FactKey { tgid: 7, ..fact },
            FactKey { epoch: 7, ..fact },
            FactKey { path_len: 7, ..fact },
            FactKey { detail: 7, ..fact },
            FactKey { path_hash: 7, ..fact },
        ];
        let check = fact.check();
        assert_ne!(FactKey::default().check(), 0);
        for other in changed {
            assert_ne!(other.check(), check, "{other:?}");
            assert!(other.set() < SEEN_FACT_SETS, "{other:?}");
        }
        // Facts that swap their halves do not collide either.
        let swapped = FactKey { audit_id: 2, tgid: 1, path_len: 5, detail: 4, ..fact };
        assert_ne!(swapped.check(), check);
    }

    /// The hash of `path` as the eBPF side takes it: a word at a time, up to
    /// the one that holds its NUL.
    fn path_hash(path: &str) -> u64 {
        let mut bytes = path.as_bytes().to_vec();
        bytes.resize((bytes.len() + 1).div_ceil(8) * 8, 0);
        bytes.chunks_exact(8).fold(FactKey::PATH_HASH_SEED, |hash, word| {
            FactKey::path_hash_step(hash, u64::from_le_bytes(word.try_into().expect("8 bytes")))
        })
    }

    /// A storm's files (2,000 of one directory, named by number, as `cargo
    /// xtask bench` makes them) spread over the sets: none gets more of them
    /// than it has room for the two facts a churn states about each (its
    /// open and its lookup), so a pass over them evicts none of the first
    /// pass's facts. Their names put the digits at each offset in a word,
    /// and the epochs are ones a boot's clock gives.
    #[test]
    fn paths_differing_in_their_last_digits_take_sets_of_their_own() {
        for directory in ["/tmp/s/", "/data/storm/", "/work/main/target/bench/storm-files/", "/home/a/runs/2026/"] {
            for epoch in [1_000_000_000, 68_912_345_678_901, 1_000_000_000_000_003] {
                let mut paths_in_set = vec![0usize; SEEN_FACT_SETS as usize];
                for file in 0..2000 {
                    let path = format!("{directory}f{file:05}");
                    let fact = FactKey {
                        epoch,
                        path_len: path.len() as u32 + 1,
                        path_hash: path_hash(&path),
                        ..FactKey::default()
                    };
                    paths_in_set[fact.set() as usize] += 1;
                }
                let fullest = paths_in_set.iter().max().copied().unwrap_or_default();
                let sets_taken = paths_in_set.iter().filter(|&&paths| paths > 0).count();
                assert!(
                    2 * fullest <= SEEN_FACT_WAYS,
                    "{directory}: {fullest} paths in one set, {sets_taken} sets taken (epoch {epoch})"
                );
            }
        }
    }
}
