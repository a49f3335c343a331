//! reprotrace's kernel programs.
//!
//! They follow a PID tree in the kernel: `TRACED` holds the tasks of each audit;
//! `sched_process_fork` adds a child (thread or process) before it can run, and
//! `sched_process_exit` removes a task that is gone. `TASK_AUDITS` has the
//! same at each task's id: every program asks it, one array read.
//!
//! Syscalls are seen on the raw `sys_exit` tracepoint alone: one attach point
//! for every syscall of every task, a program run and an array read for a task
//! reprotrace does not follow (a per-syscall tracepoint costs several times
//! more per call, and each one attached takes an RCU grace period to detach).
//! For a followed task it reads the syscall's number and, if the syscall is
//! traced, copies its argument registers (which `pt_regs` still holds at the
//! exit: only the return value's register changed) and tail-calls the handler
//! of that number. The handler normalises the arguments into the fact the call
//! states, reads its strings (their pages are resident once the kernel has
//! copied them) and emits one event when the syscall succeeded: no program at
//! a syscall's entry (one on any `sys_enter_*` tracepoint has the kernel run
//! its perf hook at every syscall's entry on the host), nothing kept between
//! entry and exit. A fork is reported by `sched_process_fork`, with what the
//! child shares read off the two tasks; a successful exec by
//! `sched_process_exec`, from the new image: the path the kernel ran and the
//! argv it copied onto the new stack, both resident; a failed one by its
//! handler, with its path (a failed exec leaves the registers alone).
//!
//! `dedup` drops repeated facts before they are sent; `io_uring` reports the
//! requests of io_uring rings.
//!
//! Built for the host target as LLVM bitcode and linked for BPF by bpf-linker, so
//! nothing here may panic: indexes are masked and helpers are called raw.
#![no_std]

use core::{convert::Infallible, ffi::c_void, mem::MaybeUninit};

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_task_btf, bpf_get_smp_processor_id,
        bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
        bpf_probe_read_user_str,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use tracer_common::{
    abi::{
        CLONE_FILES, CLONE_FS, CLONE_NEWNS, CLONE_THREAD, CLONE_VM, ENOENT, O_ACCMODE, O_CREAT, O_DIRECTORY, O_PATH,
        O_TMPFILE_ONLY, O_TRUNC, S_EXECUTE_BITS, S_IFMT, S_IFREG,
    },
    counters,
    io_uring::{opcode, IoUringOffsets},
    syscalls::{self, Arg, Syscall},
    BinprmOffsets, CredOffsets, EventHeader, EventKind, FactKey, FileOffsets, ProcessDedup, SeenFactSet,
    SharingOffsets, SyscallRegs, ARGV_MAX, EXEC_SCRATCH_SIZE, FLAG_ARGV_TRUNCATED, FLAG_EXEC_FROM_FD,
    FLAG_IO_URING_DIRECT, FLAG_IO_URING_REQUEST, FLAG_STR0_TRUNCATED, FLAG_STR1_TRUNCATED, HEADER_SIZE, PATH_MAX,
    PROCESS_DEDUP_SLOTS, RDONLY_CAST_PLACEHOLDER, SCRATCH_SIZE, SEEN_FACT_SETS, SEEN_FACT_WAYS, SILENT_FD_LIMIT,
    SYSCALL_REGS_SPAN_MAX, SYSCALL_REGS_WINDOW_MAX, SYSCALL_SLOTS, TS_COMPAT,
};

mod dedup;
mod io_uring;

use dedup::{close_is_silent, emit_path_fact, new_epoch, new_process, not_silent, process_dedup, process_exited};

const MAX_TASKS: u32 = 65536;

// bpf_ringbuf_output/query flags (uapi/linux/bpf.h).
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// Events a CPU sends between two wake-ups of the consumer (a few hundred KiB).
const WAKEUP_EVENTS: u64 = 2048;

/// Every followed task → its audit. Written when a task is followed or
/// forgotten (a fork, a thread's exec, an exit, user space), never per
/// syscall, so its entries are allocated as they come: preallocating 65,536
/// of them cost a standalone audit's start 1.6 ms.
#[map]
static TRACED: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TASKS, BPF_F_NO_PREALLOC);

/// `bpf_map_create` flag: the array can be mapped into user space's memory.
const BPF_F_MMAPABLE: u32 = 1024;
/// `bpf_map_create` flag: a hash map allocates its entries as they come.
const BPF_F_NO_PREALLOC: u32 = 1;

/// The audit each task is followed for, plus one (0: not followed): task
/// `tid`'s is half `tid & 1` of entry `tid >> 1` (an array's entries take 8
/// bytes each; the loader sizes it from `pid_max`). The dispatchers' one
/// question, an array read the verifier inlines, where a `TRACED` lookup is
/// a helper call and a hash. A task beyond it (`pid_max` raised since the
/// load) is looked up in `TRACED`, which holds every followed task.
#[map]
static TASK_AUDITS: Array<[u32; 2]> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Task `tid`'s entry in `TASK_AUDITS`, if the array reaches it.
#[inline(always)]
fn task_audit_entry(tid: u32) -> Option<*mut u32> {
    let pair = TASK_AUDITS.get_ptr_mut(tid >> 1)?;
    // SAFETY: half 0 or 1 of the pair.
    Some(unsafe { pair.cast::<u32>().add((tid & 1) as usize) })
}

/// The audit task `tid` is followed for, if it is.
#[inline(always)]
fn task_audit(tid: u32) -> Option<u32> {
    match task_audit_entry(tid) {
        // SAFETY: a map value's aligned u32; a plain load of it is atomic.
        Some(entry) => match unsafe { entry.read_volatile() } {
            0 => None,
            audit => Some(audit.wrapping_sub(1)),
        },
        None => audit_of(tid),
    }
}

/// Sets task `tid`'s entry in `TASK_AUDITS` (`None`: not followed).
#[inline(always)]
fn set_task_audit(tid: u32, audit_id: Option<u32>) {
    if let Some(entry) = task_audit_entry(tid) {
        // SAFETY: as in `task_audit`.
        unsafe { entry.write_volatile(audit_id.map_or(0, |audit_id| audit_id.wrapping_add(1))) };
    }
}

/// Follows `tid` for `audit_id`, in `TASK_AUDITS` first, so that no syscall
/// of a task in `TRACED` is turned away.
#[inline(always)]
fn follow(tid: u32, audit_id: u32) -> bool {
    set_task_audit(tid, Some(audit_id));
    if TRACED.insert(tid, audit_id, 0).is_ok() {
        return true;
    }
    set_task_audit(tid, None);
    false
}

/// Stops following `tid`, in `TASK_AUDITS` last.
#[inline(always)]
fn unfollow(tid: u32) {
    let _ = TRACED.remove(tid);
    set_task_audit(tid, None);
}

/// The audits of users other than root (set by the daemon): a process of
/// one that execs a setuid or setgid program is no longer followed, as
/// ptrace would not let the user follow it.
#[map]
static USER_AUDITS: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// Each traced syscall's exit handler, at its number (filled by the loader).
#[map]
static EXIT_HANDLERS: ProgramArray = ProgramArray::with_max_entries(SYSCALL_SLOTS as u32, 0);

/// Resized by the loader (`--ring-buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::LEN, 0);

#[map]
static SCRATCH: PerCpuArray<[u8; SCRATCH_SIZE]> = PerCpuArray::with_max_entries(1, 0);

/// One entry per CPU (the loader sizes it): per-CPU maps cannot hold values
/// this large.
#[map]
static EXEC_SCRATCH: Array<[u8; EXEC_SCRATCH_SIZE]> = Array::with_max_entries(1, 0);

/// Set by the loader from the kernel's BTF; 0 leaves exit statuses unknown.
#[no_mangle]
static TASK_EXIT_CODE_OFFSET: u64 = 0;
/// `task_struct.mm`, `mm_struct.arg_start` and `arg_end`, from BTF: where
/// the new image's argv is.
#[no_mangle]
static TASK_MM_OFFSET: u64 = 0;
#[no_mangle]
static MM_ARG_START_OFFSET: u64 = 0;
#[no_mangle]
static MM_ARG_END_OFFSET: u64 = 0;

/// Where syscalls keep their number and arguments in `struct pt_regs`, and
/// the task its 32-bit flag and its ids, from BTF (see tracer-common's `SyscallRegs`).
#[no_mangle]
static SYSCALL_REGS: SyscallRegs = SyscallRegs {
    number: 0,
    args: [0; 6],
    task_status: 0,
    task_pid: 0,
    task_tgid: 0,
    window_start: 0,
    window_bytes: 0,
};

/// Where an open descriptor's inode is, from BTF (see tracer-common's `FileOffsets`).
#[no_mangle]
static FILE_OFFSETS: FileOffsets =
    FileOffsets { task_files: 0, files_fdt: 0, fdtable_fd: 0, file_inode: 0, inode_mode: 0 };

/// Where a task's ids are, from BTF (see tracer-common's `CredOffsets`).
#[no_mangle]
static CRED_OFFSETS: CredOffsets = CredOffsets { task_cred: 0, uid: 0, euid: 0, gid: 0, egid: 0, cap_effective: 0 };

/// What a new task may share with its parent, from BTF (see tracer-common's
/// `SharingOffsets`).
#[no_mangle]
static SHARING_OFFSETS: SharingOffsets = SharingOffsets { task_fs: 0, task_nsproxy: 0, nsproxy_mnt_ns: 0 };

/// Where an exec's path is, from BTF (see tracer-common's `BinprmOffsets`).
#[no_mangle]
static BINPRM_OFFSETS: BinprmOffsets = BinprmOffsets { filename: 0, fdpath: 0 };

/// Set by the loader for the benchmarks' floor: every program returns at once.
#[no_mangle]
static RETURN_AT_ONCE: u64 = 0;

#[inline(always)]
fn returns_at_once() -> bool {
    loader_global(&RETURN_AT_ONCE) != 0
}

/// Set by the loader for `repeat`: opens and stats that find no file are
/// reported (a file the program needed that the bundle lacks).
#[no_mangle]
static REPORT_FAILED_LOOKUPS: u64 = 0;

/// Set by the loader when it made the calls of `kernel_memory` calls of
/// `bpf_rdonly_cast` (this kernel lets a program load from what it returns):
/// see `read_kernel`.
#[no_mangle]
static KERNEL_READS_BY_LOAD: u64 = 0;

// Offset in `sched_process_exit`'s record (see its format file; the loader
// checks it against the running kernel before attaching).
const EXIT_GROUP_DEAD_OFFSET: usize = 32;

/// The current task's thread-group id (high half) and task id (low half).
#[inline(always)]
fn current_pid_tgid() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_current_pid_tgid() }
}

#[inline(always)]
fn current_tid() -> u32 {
    current_pid_tgid() as u32
}

/// The audit `tid` is followed for, if it is.
#[inline(always)]
fn audit_of(tid: u32) -> Option<u32> {
    // SAFETY: the value is copied out at once; a concurrent removal cannot
    // invalidate it after that.
    unsafe { TRACED.get(tid) }.copied()
}

#[inline(always)]
fn read_ctx<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: the offsets read are inside the tracepoint's record (the loader
    // checks them against the kernel's format files), which the program may
    // read directly.
    unsafe { core::ptr::read_unaligned(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

/// The argument registers of the syscall whose exit is handled, copied by
/// the dispatcher from `sys_exit`'s `pt_regs` argument (by loads through
/// `kernel_memory`; one helper read of their span, the number's register
/// with them, on a kernel before 6.17) into the scratch buffer's last bytes,
/// which no event reaches; the handler it tail-calls reads them there (same
/// CPU, same run).
struct SyscallRegisters(*const u64);

/// The window's words that keep the task's `pid_tgid`, its audit and its
/// table of open files.
const PID_TGID_WORD: usize = SYSCALL_REGS_WINDOW_MAX / 8 - 1;
const AUDIT_WORD: usize = SYSCALL_REGS_WINDOW_MAX / 8 - 2;
const OPEN_FILES_WORD: usize = SYSCALL_REGS_WINDOW_MAX / 8 - 3;

impl SyscallRegisters {
    /// Where the registers are kept.
    #[inline(always)]
    fn window() -> Option<*mut u8> {
        let buf = SCRATCH.get_ptr_mut(0)?.cast::<u8>();
        // SAFETY: inside the scratch buffer, whose events end far before.
        Some(unsafe { buf.add(SCRATCH_SIZE - SYSCALL_REGS_WINDOW_MAX) })
    }

    /// Copies the syscall's argument registers (`regs`, the tracepoint's
    /// first argument: the task's `struct pt_regs`) and keeps the task's
    /// `pid_tgid`, audit and table of open files (the dispatcher).
    #[inline(always)]
    fn copy(regs: u64, task: &CurrentTask, pid_tgid: u64, audit_id: u32) -> Option<SyscallRegisters> {
        let window = Self::window()?.cast::<u64>();
        let start = loader_global(&SYSCALL_REGS.window_start);
        if loader_global(&KERNEL_READS_BY_LOAD) != 0 {
            let copy = |offset: &u64| {
                let offset = loader_global(offset);
                let word = (offset.wrapping_sub(start) >> 3) as usize & (SYSCALL_REGS_WINDOW_MAX / 8 - 1);
                // SAFETY: into the window, masked within it.
                unsafe { window.add(word).write(read_kernel::<u64>(regs + offset)) };
            };
            // Written out, not a loop: LLVM turns one over the offsets into a
            // walk of the globals that the verifier cannot bound.
            let [arg0, arg1, arg2, arg3, arg4, arg5] = &SYSCALL_REGS.args;
            copy(arg0);
            copy(arg1);
            copy(arg2);
            copy(arg3);
            copy(arg4);
            copy(arg5);
        } else {
            // One helper read of the registers' whole span, which the window
            // lays out as `pt_regs` does (the loader checked its size).
            let bytes = loader_global(&SYSCALL_REGS.window_bytes) as u32;
            if bytes as usize > SYSCALL_REGS_SPAN_MAX {
                return None;
            }
            // SAFETY: at most SYSCALL_REGS_SPAN_MAX bytes into the window, whose
            // last three words they leave; a bad address fails, not faults.
            unsafe { bpf_probe_read_kernel(window.cast(), bytes, (regs + start) as *const c_void) };
        }
        // SAFETY: the window's last three words, which no register takes
        // (the loader checked their span).
        unsafe {
            window.add(PID_TGID_WORD).write(pid_tgid);
            window.add(AUDIT_WORD).write(u64::from(audit_id));
            window.add(OPEN_FILES_WORD).write(task.open_files());
        }
        Some(SyscallRegisters(window))
    }

    /// The registers the dispatcher copied (a handler).
    #[inline(always)]
    fn copied() -> Option<SyscallRegisters> {
        Self::window().map(|window| SyscallRegisters(window.cast::<u64>()))
    }

    /// The task's `pid_tgid`, and the audit it is followed for.
    #[inline(always)]
    fn task(&self) -> (u64, u32) {
        // SAFETY: the window's last two words (see `copy`).
        unsafe { (self.0.add(PID_TGID_WORD).read(), self.0.add(AUDIT_WORD).read() as u32) }
    }

    /// The task's table of open files (see `CurrentTask::open_files`).
    #[inline(always)]
    fn open_files(&self) -> u64 {
        // SAFETY: a word of the window (see `copy`).
        unsafe { self.0.add(OPEN_FILES_WORD).read() }
    }

    /// Argument `index` (0 past the sixth).
    #[inline(always)]
    fn arg(&self, index: usize) -> u64 {
        SYSCALL_REGS.args.get(index).map_or(0, |offset| self.at(offset))
    }

    /// The register at the `pt_regs` offset `offset` holds.
    #[inline(always)]
    fn at(&self, offset: &u64) -> u64 {
        // The loader checked every register read is inside the window.
        let word = (loader_global(offset).wrapping_sub(loader_global(&SYSCALL_REGS.window_start)) >> 3) as usize;
        // SAFETY: masked within the window's SYSCALL_REGS_WINDOW_MAX bytes,
        // which start at an 8-byte boundary of the scratch buffer.
        unsafe { self.0.add(word & (SYSCALL_REGS_WINDOW_MAX / 8 - 1)).read() }
    }
}

/// The running task as a typed (BTF) pointer: a member of it, at the
/// loader's offset (a constant to the verifier: the globals are in a frozen
/// read-only map), is read by a plain load, which the verifier checks against
/// the kernel's types and the JIT guards against faults, not by a helper call.
/// (Each such load costs the verifier a search of the kernel's BTF, so it is
/// kept to the dispatcher.)
struct CurrentTask(*const u8);

impl CurrentTask {
    #[inline(always)]
    fn get() -> CurrentTask {
        // SAFETY: a helper without arguments; it returns the running task.
        CurrentTask(unsafe { bpf_get_current_task_btf() }.cast())
    }

    /// A member of the task at the loader's offset `offset`, by a typed load.
    #[inline(always)]
    fn member<T: Copy>(&self, offset: &u64) -> T {
        // SAFETY: the member's offset in the task, from BTF; the verifier
        // checks the load against the kernel's types.
        unsafe { self.0.add(loader_global(offset) as usize).cast::<T>().read() }
    }

    /// The task's `pid_tgid` as `bpf_get_current_pid_tgid` has it: the
    /// thread-group id above the task's id (two loads, no helper call).
    #[inline(always)]
    fn pid_tgid(&self) -> u64 {
        u64::from(self.member::<u32>(&SYSCALL_REGS.task_tgid)) << 32 | u64::from(self.tid())
    }

    /// The task's id.
    #[inline(always)]
    fn tid(&self) -> u32 {
        self.member(&SYSCALL_REGS.task_pid)
    }

    /// The array of the task's open files, `files->fdt->fd` (0 for a task
    /// without files): typed loads here, where the dispatcher has the task,
    /// save an open's handler three helper reads (the array's own pointers
    /// are no type the verifier follows, so the handler reads them). Made
    /// for every followed syscall, opens or not: three loads of lines the
    /// syscall just touched cost less than telling the opens apart here.
    #[inline(always)]
    fn open_files(&self) -> u64 {
        let files: *const u8 = self.member(&FILE_OFFSETS.task_files);
        // SAFETY: members at their offsets from BTF, loaded as typed
        // pointers (the JIT's guard makes a load through a null one 0).
        unsafe {
            let fdt = files.add(loader_global(&FILE_OFFSETS.files_fdt) as usize).cast::<*const u8>().read();
            fdt.add(loader_global(&FILE_OFFSETS.fdtable_fd) as usize).cast::<u64>().read()
        }
    }

    /// Whether the task is in a 32-bit syscall, whose numbers mean other
    /// calls (the eBPF backend does not follow them; the manifest counts such
    /// processes): `TS_COMPAT` in `thread_info.status`.
    #[inline(always)]
    fn in_compat_syscall(&self) -> bool {
        self.member::<u32>(&SYSCALL_REGS.task_status) & TS_COMPAT != 0
    }
}

#[inline(always)]
fn read_user_u64(ptr: u64) -> u64 {
    let mut value: u64 = 0;
    // SAFETY: the helper writes at most 8 bytes into `value`; a bad user
    // pointer makes it fail, not fault.
    let ok = unsafe { bpf_probe_read_user((&mut value as *mut u64).cast(), 8, ptr as *const c_void) };
    if ok == 0 {
        value
    } else {
        0
    }
}

#[inline(always)]
fn bump_counter(slot: u32) {
    if let Some(counter) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; a BPF program is not preempted on its CPU.
        unsafe { *counter += 1 };
    }
}

/// Copies a user string to `dest` (at most `PATH_MAX` bytes); returns the bytes
/// written including the NUL, and whether the string may have been cut.
#[inline(always)]
fn read_user_path(dest: *mut u8, ptr: u64) -> (usize, bool) {
    let n = read_user_str::<PATH_MAX>(dest, ptr);
    (n, n >= PATH_MAX)
}

/// Copies a user string to `dest` (at most `SIZE` bytes); returns the bytes
/// written including the NUL (`SIZE`: the string may be longer), 0 if it
/// cannot be read.
#[inline(always)]
fn read_user_str<const SIZE: usize>(dest: *mut u8, ptr: u64) -> usize {
    if ptr == 0 {
        return 0;
    }
    // SAFETY: callers pass a `dest` with SIZE bytes behind it; the helper
    // writes at most that, and fails on a bad pointer.
    let n = unsafe { bpf_probe_read_user_str(dest.cast(), SIZE as u32, ptr as *const c_void) };
    if n <= 0 {
        0
    } else {
        n as usize
    }
}

/// Sends the first `len` bytes of the scratch buffer.
#[inline(always)]
fn send(buf: *mut u8, len: usize) {
    let len = len & (SCRATCH_SIZE - 1);
    // SAFETY: `buf` is the per-CPU scratch buffer of SCRATCH_SIZE bytes, and
    // `len` is masked below that.
    output(unsafe { core::slice::from_raw_parts(buf, len) });
}

/// Puts an event on the ring buffer; counts a drop if the ring is full.
#[inline(always)]
fn output(event: &[u8]) {
    // Waking the consumer for every event would cost the traced program a
    // context switch per syscall: wake it only once a batch has piled up (it
    // also drains on a short timer). A per-CPU count decides, not the ring's
    // fill level: reading the shared producer position on every event made the
    // CPUs fight over its cache line.
    let flags = match COUNTERS.get_ptr_mut(counters::SINCE_WAKEUP) {
        // SAFETY: a per-CPU slot; a BPF program is not preempted on its CPU.
        Some(since) => unsafe {
            *since += 1;
            if *since >= WAKEUP_EVENTS {
                *since = 0;
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            }
        },
        None => BPF_RB_NO_WAKEUP,
    };
    if EVENTS.output::<[u8]>(event, flags).is_err() {
        bump_counter(counters::LOST_EVENTS);
    }
}

/// Makes this CPU's next event wake the consumer at once: someone waits for
/// it (a cell hook holds its kernel's next cell until the audit has seen the
/// end of this one), and a batch or the consumer's timer would keep it up to
/// `DRAIN_INTERVAL` (20 ms) in the ring.
#[inline(always)]
fn wake_on_next_output() {
    if let Some(since) = COUNTERS.get_ptr_mut(counters::SINCE_WAKEUP) {
        // SAFETY: a per-CPU slot; a BPF program is not preempted on its CPU,
        // so the next event this CPU outputs is this program's.
        unsafe { *since = WAKEUP_EVENTS - 1 };
    }
}

#[inline(always)]
fn header(kind: EventKind, audit_id: u32, ret: i64, args: [u64; 3]) -> EventHeader {
    header_of(current_pid_tgid(), kind, audit_id, ret, args)
}

/// [`header`] for the task whose `bpf_get_current_pid_tgid` is `pid_tgid`.
#[inline(always)]
fn header_of(pid_tgid: u64, kind: EventKind, audit_id: u32, ret: i64, args: [u64; 3]) -> EventHeader {
    EventHeader {
        kind: kind as u16,
        flags: 0,
        audit_id,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        // Read when the event is written (see `write_header`).
        ktime_ns: 0,
        ret,
        args,
        str_len: [0, 0],
    }
}

/// Puts `head` at the start of an event buffer, with the time: now, when the
/// event is known to be sent (an event deduplicated away costs no clock
/// read). The buffer is a scratch map value, which starts at an 8-byte
/// boundary like every map value (an unaligned write would be compiled into
/// a store per byte).
#[inline(always)]
fn write_header(buf: *mut u8, mut head: EventHeader) {
    // SAFETY: a helper without arguments.
    head.ktime_ns = unsafe { bpf_ktime_get_ns() };
    store_words::<_, { HEADER_SIZE / 8 }>(buf.cast(), head);
}

/// Stores `value` at `dest` a word at a time: LLVM would merge the stores of
/// its zero fields into a `memset`, which the BPF build makes a call to a
/// byte-by-byte loop (volatile stores are never merged). `dest` must be
/// aligned to 8 bytes, and `T` be `WORDS` words without padding.
#[inline(always)]
fn store_words<T: Copy, const WORDS: usize>(dest: *mut T, value: T) {
    const { assert!(core::mem::size_of::<T>() == WORDS * 8) };
    // SAFETY: `T` is `WORDS` words (checked above), all of them bytes of its
    // fields.
    let words: [u64; WORDS] = unsafe { core::mem::transmute_copy(&value) };
    for (index, word) in words.into_iter().enumerate() {
        // SAFETY: callers pass room for a `T`, aligned to 8 bytes.
        unsafe { dest.cast::<u64>().add(index).write_volatile(word) };
    }
}

/// Emits an event without strings.
#[inline(always)]
fn emit_header(head: EventHeader) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return };
    let buf = buf.cast::<u8>();
    write_header(buf, head);
    send(buf, HEADER_SIZE);
}

/// Emits an event whose strings are read from user memory.
#[inline(always)]
fn emit_with_paths(mut head: EventHeader, str_ptr: [u64; 2]) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return };
    let buf = buf.cast::<u8>();
    // SAFETY: header + 2 × 2·PATH_MAX (lengths are masked so) fit in the
    // scratch buffer.
    let (len0, cut0) = read_user_path(unsafe { buf.add(HEADER_SIZE) }, str_ptr[0]);
    let len0 = len0 & (2 * PATH_MAX - 1);
    // SAFETY: see above.
    let (len1, cut1) = read_user_path(unsafe { buf.add(HEADER_SIZE + len0) }, str_ptr[1]);
    let len1 = len1 & (2 * PATH_MAX - 1);
    head.str_len = [len0 as u32, len1 as u32];
    head.flags = if cut0 { FLAG_STR0_TRUNCATED } else { 0 } | if cut1 { FLAG_STR1_TRUNCATED } else { 0 };
    write_header(buf, head);
    send(buf, HEADER_SIZE + len0 + len1);
}

/// A global the loader set (a volatile read: a plain one would be folded to
/// the 0 the crate was built with).
#[inline(always)]
fn loader_global(global: &u64) -> u64 {
    // SAFETY: a valid, aligned static.
    unsafe { core::ptr::read_volatile(global) }
}

/// `address` as memory the program may load from: the kernel's
/// `bpf_rdonly_cast(address, 0)`, a call the loader wrote where the build
/// left tracer-common's `RDONLY_CAST_PLACEHOLDER` (the call itself becomes a
/// move; each load through the pointer is guarded, a fault reading 0).
#[inline(always)]
fn kernel_memory<T>(address: u64) -> *const T {
    // SAFETY: the loader makes this call the kfunc's, whose signature this
    // is; it leaves it as it is only when `KERNEL_READS_BY_LOAD` is 0, and
    // then no path that calls it is taken.
    unsafe {
        let rdonly_cast: unsafe extern "C" fn(u64, u32) -> *const T =
            core::mem::transmute(RDONLY_CAST_PLACEHOLDER as usize);
        rdonly_cast(address, 0)
    }
}

/// The `T` at `address` in kernel memory, 0 if it cannot be read: a load
/// where the kernel allows one, else a helper read (each helper call returns
/// through the CPU's return thunk: three of them were 28% of an open
/// handler's time).
#[inline(always)]
fn read_kernel<T: Copy + Default>(address: u64) -> T {
    if loader_global(&KERNEL_READS_BY_LOAD) != 0 {
        // SAFETY: read-only, untrusted memory to the verifier, which guards
        // the load.
        return unsafe { kernel_memory::<T>(address).read() };
    }
    let mut value = T::default();
    // SAFETY: writes at most `T`'s size into `value`; a bad address makes
    // the helper fail (and zero it), not fault.
    unsafe {
        bpf_probe_read_kernel((&mut value as *mut T).cast(), core::mem::size_of::<T>() as u32, address as *const c_void)
    };
    value
}

/// Whether `task` (just exec'd) runs with more rights than its user: other
/// effective ids than its real ones (a setuid or setgid program), or, for a
/// user other than root, effective capabilities (a program with file
/// capabilities). A user's audit must not follow it (the rule ptrace
/// applies).
#[inline(always)]
fn raised_privileges(task: u64) -> bool {
    let cred = read_kernel::<u64>(task + loader_global(&CRED_OFFSETS.task_cred));
    if cred == 0 {
        return false;
    }
    let id = |offset: &u64| read_kernel_u32(cred + loader_global(offset));
    let uid = id(&CRED_OFFSETS.uid);
    let capabilities = read_kernel::<u64>(cred + loader_global(&CRED_OFFSETS.cap_effective));
    uid != id(&CRED_OFFSETS.euid) || id(&CRED_OFFSETS.gid) != id(&CRED_OFFSETS.egid) || (uid != 0 && capabilities != 0)
}

/// Emits a successful exec, from the new image: the path the kernel ran
/// (`binprm->filename`, flagged when it spelled one relative to a
/// descriptor) and the argv it copied to the new stack
/// (`mm->arg_start..arg_end`), up to [`ARGV_MAX`] bytes.
#[inline(always)]
fn emit_exec(binprm: u64, mut head: EventHeader) {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = EXEC_SCRATCH.get_ptr_mut(cpu) else { return };
    let buf = buf.cast::<u8>();
    let filename = read_kernel::<u64>(binprm + loader_global(&BINPRM_OFFSETS.filename));
    // SAFETY: the helper writes at most PATH_MAX bytes after the header,
    // inside the buffer, and fails on a bad address.
    let read =
        unsafe { bpf_probe_read_kernel_str(buf.add(HEADER_SIZE).cast(), PATH_MAX as u32, filename as *const c_void) };
    let len0 = if read > 0 { read as usize & (2 * PATH_MAX - 1) } else { 0 };
    let mut flags = if len0 >= PATH_MAX { FLAG_STR0_TRUNCATED } else { 0 };
    // `fdpath` holds the kernel's spelling of a path relative to a
    // descriptor, and `filename` points at it.
    if read_kernel::<u64>(binprm + loader_global(&BINPRM_OFFSETS.fdpath)) != 0 {
        flags |= FLAG_EXEC_FROM_FD;
    }
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let mm = read_kernel::<u64>(task + loader_global(&TASK_MM_OFFSET));
    let (start, end) = (
        read_kernel::<u64>(mm + loader_global(&MM_ARG_START_OFFSET)),
        read_kernel::<u64>(mm + loader_global(&MM_ARG_END_OFFSET)),
    );
    let total = end.saturating_sub(start);
    let mut len1 = total as usize;
    if len1 > ARGV_MAX {
        len1 = ARGV_MAX;
        flags |= FLAG_ARGV_TRUNCATED;
    }
    if mm == 0 || len1 == 0 {
        len1 = 0;
    } else {
        // SAFETY: header + 2·PATH_MAX + ARGV_MAX is the buffer's size and
        // `len1` is at most ARGV_MAX; the pages were just written by the
        // kernel, and a failure is reported, not faulted.
        let ok =
            unsafe { bpf_probe_read_user(buf.add(HEADER_SIZE + len0).cast(), len1 as u32, start as *const c_void) };
        if ok != 0 {
            len1 = 0;
            flags |= FLAG_ARGV_TRUNCATED;
        }
    }
    head.ret = total as i64;
    head.str_len = [len0 as u32, len1 as u32];
    head.flags = flags;
    write_header(buf, head);
    let len = HEADER_SIZE + len0 + len1;
    // Always true (each length is bounded above); says so to the verifier.
    if len > EXEC_SCRATCH_SIZE {
        return;
    }
    // SAFETY: `len` is within the buffer.
    let event = unsafe { core::slice::from_raw_parts(buf, len) };
    output(event);
}

/// What every syscall's exit handler does for a followed task: normalises the
/// call into the fact it states (the shared table of tracer-common) and emits
/// it if the syscall succeeded (or, for a failed exec and the markers, failed).
/// It goes by `syscall.shape` alone: the loader gives every syscall of a
/// shape the first one's handler (`Syscall::handled_by`).
#[inline(always)]
fn on_exit(ctx: &RawTracePointContext, syscall: &Syscall) {
    let Some(registers) = SyscallRegisters::copied() else { return };
    let (pid_tgid, audit_id) = registers.task();
    let ret: i64 = ctx.arg(1);
    let value = |arg: Arg| -> Result<u64, Infallible> {
        Ok(match arg {
            Arg::Raw(position) | Arg::Named(position, _) => registers.arg(usize::from(position)),
            Arg::Member { position, offset, .. } => {
                read_user_u64(registers.arg(usize::from(position)).wrapping_add(u64::from(offset)))
            }
            // Resolved by `normalise` itself.
            Arg::Unused | Arg::Const(_) | Arg::Bit(..) => 0,
        })
    };
    let Ok(Some(fact)) = syscall.normalise(value) else { return };
    let kind = fact.kind;
    let fails_by_design = matches!(kind, EventKind::ExecFailed | EventKind::CellMarker | EventKind::TaskMarker);
    if ret < 0 && !fails_by_design {
        if ret == -ENOENT
            && matches!(kind, EventKind::Open | EventKind::Metadata)
            && loader_global(&REPORT_FAILED_LOOKUPS) != 0
        {
            let path = fact.strings[0].map_or(0, |position| registers.arg(usize::from(position)));
            let head = header_of(pid_tgid, EventKind::LookupFailed, audit_id, ret, [fact.args[0], kind as u64, 0]);
            emit_with_paths(head, [path, 0]);
        }
        return;
    }
    let str_ptr = fact.strings.map(|position| position.map_or(0, |position| registers.arg(usize::from(position))));
    let head = header_of(pid_tgid, kind, audit_id, ret, fact.args);
    match kind {
        // Reported by sched_process_fork while the syscall runs.
        EventKind::Fork => {}
        // A success is reported from the new image (whose registers these
        // are now); failures are facts too: the program was looked for there.
        EventKind::ExecFailed if ret < 0 => emit_with_paths(head, str_ptr),
        EventKind::ExecFailed => {}
        // A marker fails by design; the cell's or task's lookups are its own.
        EventKind::CellMarker | EventKind::TaskMarker => {
            new_epoch(head.tgid);
            wake_on_next_output();
            emit_with_paths(head, str_ptr)
        }
        EventKind::Metadata => emit_path_fact(head, str_ptr[0], None, 0),
        EventKind::Open => emit_path_fact(head, str_ptr[0], Some(ret as u32), registers.open_files()),
        EventKind::Close if head.args[0] == head.args[1] && close_is_silent(head.tgid, head.args[0] as u32) => {}
        kind => {
            match kind {
                // A new descriptor: its close must be sent.
                EventKind::Dup | EventKind::MemfdCreate | EventKind::IoUringSetup => {
                    not_silent(head.tgid, ret as u32);
                }
                // What an absolute path names changed for this process:
                // facts about them are news again.
                EventKind::Chroot
                | EventKind::PivotRoot
                | EventKind::Setns
                | EventKind::Unshare
                | EventKind::Mount
                | EventKind::Umount
                | EventKind::MoveMount => new_epoch(head.tgid),
                _ => {}
            }
            emit_with_paths(head, str_ptr)
        }
    }
}

/// Reports the first 32-bit syscall of a followed task's process: its
/// files are not seen, and the audit must say so, even when the program it
/// ran is gone by the time user space could look at it.
#[inline(always)]
fn report_ia32_process(pid_tgid: u64, audit_id: u32) {
    // Without an entry (the map full), every 32-bit syscall is reported: user
    // space counts a process once. An entry another audit left (a process
    // that exited unfollowed, its pid reused) holds another audit's mark.
    if let Some(dedup) = process_dedup((pid_tgid >> 32) as u32) {
        let mark = u64::from(audit_id) + 1;
        // SAFETY: an aligned u64 of the map value; a racing thread of the
        // same process may report it twice, which user space takes as once.
        unsafe {
            let reported = core::ptr::addr_of_mut!((*dedup).ia32_reported);
            if reported.read_volatile() == mark {
                return;
            }
            reported.write_volatile(mark);
        }
    }
    emit_header(header(EventKind::Ia32Syscall, audit_id, 0, [0; 3]));
}

/// Dispatches the exit of a followed task's syscall to the handler of its
/// number, if it is traced (a tail call to an empty slot falls through).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    if returns_at_once() {
        return 0;
    }
    // The task, not its `pid_tgid`: one helper call gives the ids and what
    // else a followed task's handler needs.
    let task = CurrentTask::get();
    let Some(audit_id) = task_audit(task.tid()) else { return 0 };
    let pid_tgid = task.pid_tgid();
    // A 32-bit syscall's number means another call: it is never dispatched
    // (here, once for all handlers, which the verifier checks without it).
    if task.in_compat_syscall() {
        report_ia32_process(pid_tgid, audit_id);
        return 0;
    }
    let regs: u64 = ctx.arg(0);
    // The number first: most syscalls are not traced, and their registers
    // need no copy. (On a kernel before 6.17 this is a helper read of its
    // own, one more for a traced syscall and the span's read saved for the
    // others.)
    let nr = read_kernel::<u64>(regs + loader_global(&SYSCALL_REGS.number));
    if !syscalls::is_traced(nr) {
        return 0;
    }
    if SyscallRegisters::copy(regs, &task, pid_tgid, audit_id).is_some() {
        // SAFETY: the table holds raw tracepoint programs of this context's
        // type, which the loader put there; `nr` is inside it (traced).
        unsafe { EXIT_HANDLERS.tail_call(&ctx, nr as u32) };
    }
    0
}

/// Never set: the condition of `stay_on_task_stack`'s tail call.
#[no_mangle]
static TAIL_CALL_NEVER_TAKEN: u64 = 0;

/// Keeps a handler on the task's kernel stack. The kernel (6.13 on) gives a
/// program that uses more than 64 bytes of stack a per-CPU stack of its own,
/// unless it holds a tail call. The copy of a path from user memory onto
/// that stack is then checked as heap memory (hardened usercopy: two more
/// calls a read), where a destination on the task's stack passes at once:
/// 37 ns an fstat's handler, 18 ns an open's (20 shuffled rounds). The verifier
/// decides the stack before it drops this call as never taken.
#[inline(always)]
fn stay_on_task_stack(ctx: &RawTracePointContext) {
    if loader_global(&TAIL_CALL_NEVER_TAKEN) != 0 {
        // SAFETY: as the dispatcher's tail call (never made).
        unsafe { EXIT_HANDLERS.tail_call(ctx, 0) };
    }
}

/// Defines the exit handler of each syscall of tracer-common's table,
/// `exit_<name>`. (The table entry is a constant, so each program keeps only
/// the branches its syscall can take.) The build exports one handler per
/// shape (`tracer_common::programs`); the rest are left out.
macro_rules! syscall_programs {
    ($($name:ident = $nr:literal $(@ $tracepoint:ident)? => $shape:ident $shape_args:tt,)*) => {$(
        mod $name {
            use tracer_common::syscalls::{notation::*, Syscall};

            pub(crate) const SYSCALL: Syscall = Syscall {
                name: stringify!($name),
                nr: $nr,
                shape: $shape $shape_args,
                exit_handler: concat!("exit_", stringify!($name)),
                tracepoint: tracer_common::__tracepoint_name!($name $($tracepoint)?),
            };

            #[unsafe(export_name = concat!("exit_", stringify!($name)))]
            #[unsafe(link_section = "raw_tp")]
            fn exit(ctx: *mut core::ffi::c_void) -> u32 {
                let ctx = aya_ebpf::programs::RawTracePointContext::new(ctx);
                super::on_exit(&ctx, &SYSCALL);
                super::stay_on_task_stack(&ctx);
                0
            }
        }
    )*};
}

tracer_common::for_each_syscall!(syscall_programs);

/// A task made a child (a thread or a process), reported from the parent
/// before the child first runs: the child is followed before it can make a
/// syscall. What it shares with its parent is read off the two tasks, which
/// is what the clone flags made of it (`CLONE_VM` without `CLONE_THREAD`:
/// a vfork); no program at the call's entry is needed to know them.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    if returns_at_once() {
        return 0;
    }
    let pid_tgid = current_pid_tgid();
    let Some(audit_id) = task_audit(pid_tgid as u32) else { return 0 };
    let (parent, child): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    let child_tid = read_kernel_u32(child + loader_global(&SYSCALL_REGS.task_pid)) as u32;
    if !follow(child_tid, audit_id) {
        bump_counter(counters::UNTRACKED_CHILDREN);
    }
    let shares = |offset: u64| read_kernel::<u64>(parent + offset) == read_kernel::<u64>(child + offset);
    let mut clone_flags = 0;
    if read_kernel_u32(child + loader_global(&SYSCALL_REGS.task_tgid)) == pid_tgid >> 32 {
        clone_flags |= CLONE_THREAD;
    }
    if shares(loader_global(&FILE_OFFSETS.task_files)) {
        clone_flags |= CLONE_FILES;
    }
    if shares(loader_global(&SHARING_OFFSETS.task_fs)) {
        clone_flags |= CLONE_FS;
    }
    if shares(loader_global(&TASK_MM_OFFSET)) {
        clone_flags |= CLONE_VM;
    }
    let mount_namespace = |task: u64| {
        let nsproxy = read_kernel::<u64>(task + loader_global(&SHARING_OFFSETS.task_nsproxy));
        read_kernel::<u64>(nsproxy + loader_global(&SHARING_OFFSETS.nsproxy_mnt_ns))
    };
    if mount_namespace(parent) != mount_namespace(child) {
        clone_flags |= CLONE_NEWNS;
    }
    if clone_flags & CLONE_THREAD == 0 {
        new_process(child_tid);
    }
    emit_header(header_of(pid_tgid, EventKind::Fork, audit_id, 0, [u64::from(child_tid), clone_flags, 0]));
    0
}

/// A task's exec succeeded, reported from the new image (the raw
/// tracepoint's arguments: the task, its id before the exec, the kernel's
/// `linux_binprm`).
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    if returns_at_once() {
        return 0;
    }
    // The task's id now: a non-leader thread that execs has taken over the
    // thread-group id.
    let pid = current_tid();
    let old_pid = ctx.arg::<u64>(1) as u32;
    let Some(audit_id) = task_audit(old_pid) else { return 0 };
    if pid != old_pid {
        // Keep following it under its new id.
        if !follow(pid, audit_id) {
            bump_counter(counters::UNTRACKED_CHILDREN);
        }
        unfollow(old_pid);
    }
    new_epoch(pid);
    emit_exec(ctx.arg(2), header(EventKind::Exec, audit_id, 0, [0, 0, u64::from(old_pid)]));
    // SAFETY: the value is only tested for presence; a helper without arguments.
    if unsafe { USER_AUDITS.get(audit_id).is_some() && raised_privileges(bpf_get_current_task()) } {
        // Here, not in user space: nothing of the program reaches the user,
        // even if the exec's record were lost, and no child of it is followed.
        emit_header(header(EventKind::Unfollowed, audit_id, 0, [0; 3]));
        unfollow(pid);
    }
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if returns_at_once() {
        return 0;
    }
    let tid = current_tid();
    let Some(audit_id) = task_audit(tid) else { return 0 };
    let offset = loader_global(&TASK_EXIT_CODE_OFFSET);
    let status = match offset {
        0 => 0,
        // SAFETY: a helper without arguments.
        _ => read_kernel_u32(unsafe { bpf_get_current_task() } + offset),
    };
    let group_dead: u8 = read_ctx(&ctx, EXIT_GROUP_DEAD_OFFSET);
    let head = header(EventKind::Exit, audit_id, 0, [status, group_dead as u64, 0]);
    unfollow(tid);
    if group_dead != 0 {
        process_exited(head.tgid);
    }
    emit_header(head);
    0
}

/// The u32 at `address` in kernel memory, 0 if it cannot be read.
#[inline(always)]
fn read_kernel_u32(address: u64) -> u64 {
    u64::from(read_kernel::<u32>(address))
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable by construction; the verifier would reject a reachable loop.
    loop {}
}
