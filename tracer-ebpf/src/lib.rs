//! reprotrace's kernel programs.
//!
//! They follow a PID tree in the kernel: `TRACED` holds the tasks of each audit;
//! `sched_process_fork` adds a child (thread or process) before it can run, and
//! `sched_process_exit` removes a task that is gone. For a task not in `TRACED`
//! each program costs one hash lookup and returns.
//!
//! Syscall entry programs only normalise their arguments into a `PendingSyscall`;
//! the exit program reads the strings (their pages are resident once the kernel has
//! copied them) and emits one event when the syscall succeeded. Exec is the one
//! exception: its path and argv are read at entry, because a successful exec
//! destroys the memory they live in.
//!
//! Built for the host target as LLVM bitcode and linked for BPF by bpf-linker, so
//! nothing here may panic: indexes are masked and helpers are called raw.
#![no_std]

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
        bpf_probe_read_user_str,
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
    EbpfContext,
};
use tracer_common::{
    abi::{
        AT_FDCWD_ARG, AT_REMOVEDIR, CELL_MARKER_DIRFD, CLONE_VFORK, CLONE_VM, CLOSE_RANGE_CLOEXEC, FD_CLOEXEC, F_DUPFD,
        F_DUPFD_CLOEXEC, F_SETFD, O_CLOEXEC, O_CREAT, O_TRUNC, O_WRONLY, SIGCHLD,
    },
    counters, EventHeader, EventKind, PendingSyscall, ARGV_MAX, ARGV_MAX_ARGS, FLAG_ARGV_UNREADABLE,
    FLAG_STR0_TRUNCATED, FLAG_STR1_TRUNCATED, HEADER_SIZE, PATH_MAX, SCRATCH_SIZE,
};

const MAX_TASKS: u32 = 65536;

// bpf_ringbuf_output/query flags (uapi/linux/bpf.h).
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// Events a CPU sends between two wake-ups of the consumer (a few hundred KiB).
const WAKEUP_EVENTS: u64 = 2048;

#[map]
static TRACED: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TASKS, 0);

#[map]
static PENDING: HashMap<u32, PendingSyscall> = HashMap::with_max_entries(MAX_TASKS, 0);

/// Resized by the loader (`--ring-buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::LEN, 0);

#[map]
static SCRATCH: PerCpuArray<[u8; SCRATCH_SIZE]> = PerCpuArray::with_max_entries(1, 0);

/// Set by the loader from the kernel's BTF; 0 leaves exit statuses unknown.
#[no_mangle]
static TASK_EXIT_CODE_OFFSET: u64 = 0;

// Offsets in the tracepoint records (see /sys/kernel/tracing/events/*/*/format;
// the loader checks them against the running kernel before attaching).
const SYSCALL_NR_OFFSET: usize = 8;
const SYSCALL_ARGS_OFFSET: usize = 16;
const SYSCALL_RET_OFFSET: usize = 16;
const FORK_CHILD_PID_OFFSET: usize = 20;
const EXEC_PID_OFFSET: usize = 12;
const EXEC_OLD_PID_OFFSET: usize = 16;
const EXIT_GROUP_DEAD_OFFSET: usize = 32;

const CWD: u64 = AT_FDCWD_ARG;

#[inline(always)]
fn current_tid() -> u32 {
    // Low half: the task id; high half: the thread-group id.
    unsafe { bpf_get_current_pid_tgid() as u32 }
}

#[inline(always)]
fn read_ctx<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // Tracepoint records are readable directly by the program.
    unsafe { core::ptr::read_unaligned(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

#[inline(always)]
fn syscall_arg(ctx: &TracePointContext, index: usize) -> u64 {
    read_ctx(ctx, SYSCALL_ARGS_OFFSET + 8 * index)
}

#[inline(always)]
fn read_user_u64(ptr: u64) -> u64 {
    let mut value: u64 = 0;
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
        unsafe { *counter += 1 };
    }
}

/// Copies a user string to `dest` (at most `PATH_MAX` bytes); returns the bytes
/// written including the NUL, and whether the string may have been cut.
#[inline(always)]
fn read_user_path(dest: *mut u8, ptr: u64) -> (usize, bool) {
    if ptr == 0 {
        return (0, false);
    }
    let n = unsafe { bpf_probe_read_user_str(dest.cast(), PATH_MAX as u32, ptr as *const c_void) };
    if n <= 0 {
        return (0, false);
    }
    let n = n as usize;
    (n, n >= PATH_MAX)
}

/// Sends the first `len` bytes of the scratch buffer; counts a drop if the ring is full.
#[inline(always)]
fn send(buf: *mut u8, len: usize) {
    let len = len & (SCRATCH_SIZE - 1);
    let event = unsafe { core::slice::from_raw_parts(buf, len) };
    // Waking the consumer for every event would cost the traced program a
    // context switch per syscall: wake it only once a batch has piled up (it
    // also drains on a short timer). A per-CPU count decides, not the ring's
    // fill level: reading the shared producer position on every event made the
    // CPUs fight over its cache line.
    let flags = match COUNTERS.get_ptr_mut(counters::SINCE_WAKEUP) {
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
        bump_counter(counters::RINGBUF_DROPS);
    }
}

#[inline(always)]
fn header(kind: EventKind, audit_id: u32, ret: i64, args: [u64; 3]) -> EventHeader {
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    EventHeader {
        kind: kind as u16,
        flags: 0,
        audit_id,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        ret,
        args,
        str_len: [0, 0],
        _reserved: 0,
    }
}

/// Emits an event without strings.
#[inline(always)]
fn emit_header(head: EventHeader) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return };
    let buf = buf.cast::<u8>();
    unsafe { buf.cast::<EventHeader>().write_unaligned(head) };
    send(buf, HEADER_SIZE);
}

/// Emits an event whose strings are read from user memory.
#[inline(always)]
fn emit_with_paths(mut head: EventHeader, str_ptr: [u64; 2]) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return };
    let buf = buf.cast::<u8>();
    let (len0, cut0) = read_user_path(unsafe { buf.add(HEADER_SIZE) }, str_ptr[0]);
    let len0 = len0 & (2 * PATH_MAX - 1);
    let (len1, cut1) = read_user_path(unsafe { buf.add(HEADER_SIZE + len0) }, str_ptr[1]);
    let len1 = len1 & (2 * PATH_MAX - 1);
    head.str_len = [len0 as u16, len1 as u16];
    head.flags = if cut0 { FLAG_STR0_TRUNCATED } else { 0 } | if cut1 { FLAG_STR1_TRUNCATED } else { 0 };
    unsafe { buf.cast::<EventHeader>().write_unaligned(head) };
    send(buf, HEADER_SIZE + len0 + len1);
}

/// Emits an exec request: the path and the argv array, read before the exec.
#[inline(always)]
fn emit_exec_request(mut head: EventHeader, path_ptr: u64, argv_ptr: u64) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return };
    let buf = buf.cast::<u8>();
    let (len0, cut0) = read_user_path(unsafe { buf.add(HEADER_SIZE) }, path_ptr);
    let len0 = len0 & (2 * PATH_MAX - 1);
    let argv_base = HEADER_SIZE + len0;
    let mut used: usize = 0;
    let mut flags = if cut0 { FLAG_STR0_TRUNCATED } else { 0 };
    let mut complete = false;
    if argv_ptr != 0 {
        for index in 0..ARGV_MAX_ARGS {
            let mut arg: u64 = 0;
            let read = unsafe {
                bpf_probe_read_user((&mut arg as *mut u64).cast(), 8, (argv_ptr + 8 * index as u64) as *const c_void)
            };
            if read != 0 {
                flags |= FLAG_ARGV_UNREADABLE;
                complete = true;
                break;
            }
            if arg == 0 {
                complete = true;
                break;
            }
            if used >= ARGV_MAX {
                break;
            }
            let offset = argv_base + (used & (ARGV_MAX - 1));
            let n = unsafe { bpf_probe_read_user_str(buf.add(offset).cast(), PATH_MAX as u32, arg as *const c_void) };
            if n <= 0 {
                flags |= FLAG_ARGV_UNREADABLE;
                complete = true;
                break;
            }
            if n as usize >= PATH_MAX {
                flags |= FLAG_STR1_TRUNCATED;
            }
            used += n as usize & (PATH_MAX * 2 - 1);
        }
    } else {
        complete = true;
    }
    if !complete {
        flags |= FLAG_STR1_TRUNCATED;
    }
    let used = used & (ARGV_MAX * 2 - 1);
    head.str_len = [len0 as u16, used as u16];
    head.flags = flags;
    unsafe { buf.cast::<EventHeader>().write_unaligned(head) };
    send(buf, argv_base + used);
}

/// Records a traced task's syscall arguments for its exit program.
#[inline(always)]
fn enter(ctx: &TracePointContext, kind: EventKind, args: [u64; 3], str_ptr: [u64; 2]) {
    let tid = current_tid();
    if unsafe { TRACED.get(tid) }.is_none() {
        return;
    }
    let pending = PendingSyscall {
        syscall_nr: read_ctx::<i32>(ctx, SYSCALL_NR_OFFSET) as u32,
        kind: kind as u16,
        _reserved: 0,
        args,
        str_ptr,
    };
    let _ = PENDING.insert(tid, pending, 0);
}

/// Emits the fact a traced task's syscall established, if it succeeded.
#[inline(always)]
fn exit(ctx: &TracePointContext) {
    let tid = current_tid();
    let Some(pending) = (unsafe { PENDING.get(tid) }).copied() else { return };
    let _ = PENDING.remove(tid);
    if pending.syscall_nr != read_ctx::<i32>(ctx, SYSCALL_NR_OFFSET) as u32 {
        return;
    }
    let Some(&audit_id) = (unsafe { TRACED.get(tid) }) else { return };
    let ret: i64 = read_ctx(ctx, SYSCALL_RET_OFFSET);
    let Some(kind) = EventKind::from_wire(pending.kind) else { return };
    match kind {
        // Reported by sched_process_fork while the syscall runs.
        EventKind::Fork => {}
        // Failed execs are facts too: the program was looked for there.
        EventKind::ExecResult => {
            emit_header(header(kind, audit_id, ret, pending.args));
        }
        // A cell marker fails by design; it is recognised by its dirfd alone.
        EventKind::Open if pending.args[0] as i32 == CELL_MARKER_DIRFD => {
            emit_with_paths(header(EventKind::CellMarker, audit_id, ret, pending.args), pending.str_ptr)
        }
        _ if ret < 0 => {}
        _ => emit_with_paths(header(kind, audit_id, ret, pending.args), pending.str_ptr),
    }
}

macro_rules! syscall_exits {
    ($($name:ident),* $(,)?) => {$(
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            exit(&ctx);
            0
        }
    )*};
}

syscall_exits!(
    sys_exit_open,
    sys_exit_creat,
    sys_exit_openat,
    sys_exit_openat2,
    sys_exit_execve,
    sys_exit_execveat,
    sys_exit_chdir,
    sys_exit_fchdir,
    sys_exit_rename,
    sys_exit_renameat,
    sys_exit_renameat2,
    sys_exit_unlink,
    sys_exit_unlinkat,
    sys_exit_rmdir,
    sys_exit_mkdir,
    sys_exit_mkdirat,
    sys_exit_link,
    sys_exit_linkat,
    sys_exit_symlink,
    sys_exit_symlinkat,
    sys_exit_truncate,
    sys_exit_ftruncate,
    sys_exit_close,
    sys_exit_close_range,
    sys_exit_dup,
    sys_exit_dup2,
    sys_exit_dup3,
    sys_exit_fcntl,
    sys_exit_clone,
    sys_exit_clone3,
    sys_exit_fork,
    sys_exit_vfork,
);

/// Defines a syscall entry program from `|ctx, a| (kind, args, strings)`,
/// where `a(i)` is the i-th syscall argument.
macro_rules! syscall_enter {
    ($name:ident, |$ctx:ident, $a:ident| $body:expr) => {
        #[tracepoint]
        pub fn $name($ctx: TracePointContext) -> u32 {
            let $a = |index: usize| syscall_arg(&$ctx, index);
            let (kind, args, strings): (EventKind, [u64; 3], [u64; 2]) = $body;
            enter(&$ctx, kind, args, strings);
            0
        }
    };
}

syscall_enter!(sys_enter_open, |ctx, a| (EventKind::Open, [CWD, a(1), a(2)], [a(0), 0]));
syscall_enter!(sys_enter_creat, |ctx, a| { (EventKind::Open, [CWD, O_CREAT | O_WRONLY | O_TRUNC, a(1)], [a(0), 0]) });
syscall_enter!(sys_enter_openat, |ctx, a| (EventKind::Open, [a(0), a(2), a(3)], [a(1), 0]));
syscall_enter!(sys_enter_openat2, |ctx, a| {
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how = a(2);
    (EventKind::Open, [a(0), read_user_u64(how), read_user_u64(how + 8)], [a(1), 0])
});
syscall_enter!(sys_enter_chdir, |ctx, a| (EventKind::Chdir, [CWD, 0, 0], [a(0), 0]));
syscall_enter!(sys_enter_fchdir, |ctx, a| (EventKind::Chdir, [a(0), 0, 0], [0, 0]));
syscall_enter!(sys_enter_rename, |ctx, a| (EventKind::Rename, [CWD, CWD, 0], [a(0), a(1)]));
syscall_enter!(sys_enter_renameat, |ctx, a| { (EventKind::Rename, [a(0), a(2), 0], [a(1), a(3)]) });
syscall_enter!(sys_enter_renameat2, |ctx, a| { (EventKind::Rename, [a(0), a(2), a(4)], [a(1), a(3)]) });
syscall_enter!(sys_enter_unlink, |ctx, a| (EventKind::Remove, [CWD, 0, 0], [a(0), 0]));
syscall_enter!(sys_enter_unlinkat, |ctx, a| (EventKind::Remove, [a(0), a(2), 0], [a(1), 0]));
syscall_enter!(sys_enter_rmdir, |ctx, a| { (EventKind::Remove, [CWD, AT_REMOVEDIR, 0], [a(0), 0]) });
syscall_enter!(sys_enter_mkdir, |ctx, a| (EventKind::Mkdir, [CWD, a(1), 0], [a(0), 0]));
syscall_enter!(sys_enter_mkdirat, |ctx, a| (EventKind::Mkdir, [a(0), a(2), 0], [a(1), 0]));
syscall_enter!(sys_enter_link, |ctx, a| (EventKind::Link, [CWD, CWD, 0], [a(0), a(1)]));
syscall_enter!(sys_enter_linkat, |ctx, a| (EventKind::Link, [a(0), a(2), a(4)], [a(1), a(3)]));
syscall_enter!(sys_enter_symlink, |ctx, a| (EventKind::Symlink, [0, CWD, 0], [a(0), a(1)]));
syscall_enter!(sys_enter_symlinkat, |ctx, a| { (EventKind::Symlink, [0, a(1), 0], [a(0), a(2)]) });
syscall_enter!(sys_enter_truncate, |ctx, a| (EventKind::Truncate, [CWD, 0, 0], [a(0), 0]));
syscall_enter!(sys_enter_ftruncate, |ctx, a| (EventKind::Truncate, [a(0), 0, 0], [0, 0]));
syscall_enter!(sys_enter_close, |ctx, a| (EventKind::Close, [a(0), a(0), 0], [0, 0]));
syscall_enter!(sys_enter_close_range, |ctx, a| {
    if a(2) & CLOSE_RANGE_CLOEXEC != 0 {
        (EventKind::SetCloexec, [a(0), a(1), 1], [0, 0])
    } else {
        (EventKind::Close, [a(0), a(1), 0], [0, 0])
    }
});
syscall_enter!(sys_enter_dup, |ctx, a| (EventKind::Dup, [a(0), 0, 0], [0, 0]));
syscall_enter!(sys_enter_dup2, |ctx, a| (EventKind::Dup, [a(0), 0, 0], [0, 0]));
syscall_enter!(sys_enter_dup3, |ctx, a| { (EventKind::Dup, [a(0), (a(2) & O_CLOEXEC != 0) as u64, 0], [0, 0]) });
syscall_enter!(sys_enter_clone, |ctx, a| (EventKind::Fork, [0, a(0), 0], [0, 0]));
syscall_enter!(sys_enter_clone3, |ctx, a| {
    // struct clone_args starts with `u64 flags`.
    (EventKind::Fork, [0, read_user_u64(a(0)), 0], [0, 0])
});
syscall_enter!(sys_enter_fork, |ctx, _a| (EventKind::Fork, [0, SIGCHLD, 0], [0, 0]));
syscall_enter!(sys_enter_vfork, |ctx, _a| { (EventKind::Fork, [0, CLONE_VM | CLONE_VFORK | SIGCHLD, 0], [0, 0]) });

#[tracepoint]
pub fn sys_enter_fcntl(ctx: TracePointContext) -> u32 {
    let (fd, cmd, arg) = (syscall_arg(&ctx, 0), syscall_arg(&ctx, 1), syscall_arg(&ctx, 2));
    match cmd {
        F_DUPFD => enter(&ctx, EventKind::Dup, [fd, 0, 0], [0, 0]),
        F_DUPFD_CLOEXEC => enter(&ctx, EventKind::Dup, [fd, 1, 0], [0, 0]),
        F_SETFD => enter(&ctx, EventKind::SetCloexec, [fd, fd, arg & FD_CLOEXEC], [0, 0]),
        // Other commands change nothing reprotrace models; the exit program
        // ignores them for want of a pending entry.
        _ => {}
    }
    0
}

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    exec_request(&ctx, CWD, syscall_arg(&ctx, 0), syscall_arg(&ctx, 1), 0);
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let a = |index: usize| syscall_arg(&ctx, index);
    exec_request(&ctx, a(0), a(1), a(2), a(4));
    0
}

#[inline(always)]
fn exec_request(ctx: &TracePointContext, dirfd: u64, path: u64, argv: u64, flags: u64) {
    let tid = current_tid();
    let Some(&audit_id) = (unsafe { TRACED.get(tid) }) else { return };
    emit_exec_request(header(EventKind::ExecRequest, audit_id, 0, [dirfd, flags, 0]), path, argv);
    enter(ctx, EventKind::ExecResult, [dirfd, flags, 0], [0, 0]);
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    // Runs in the parent, before the child is first scheduled: the child is in
    // TRACED before it can make a syscall.
    let parent = current_tid();
    let Some(&audit_id) = (unsafe { TRACED.get(parent) }) else { return 0 };
    let child: i32 = read_ctx(&ctx, FORK_CHILD_PID_OFFSET);
    let child = child as u32;
    if TRACED.insert(child, audit_id, 0).is_err() {
        bump_counter(counters::UNTRACKED_CHILDREN);
    }
    let clone_flags = match unsafe { PENDING.get(parent) } {
        Some(pending) if pending.kind == EventKind::Fork as u16 => pending.args[1],
        // A thread the kernel made on the task's behalf (io_uring workers).
        _ => 0,
    };
    emit_header(header(EventKind::Fork, audit_id, 0, [child as u64, clone_flags, 0]));
    0
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    // A non-leader thread that execs takes over the thread-group id: keep
    // following it under its new id.
    let pid: i32 = read_ctx(&ctx, EXEC_PID_OFFSET);
    let old_pid: i32 = read_ctx(&ctx, EXEC_OLD_PID_OFFSET);
    if pid == old_pid {
        return 0;
    }
    let (pid, old_pid) = (pid as u32, old_pid as u32);
    let Some(&audit_id) = (unsafe { TRACED.get(old_pid) }) else { return 0 };
    let _ = TRACED.insert(pid, audit_id, 0);
    let _ = TRACED.remove(old_pid);
    if let Some(pending) = (unsafe { PENDING.get(old_pid) }).copied() {
        let _ = PENDING.insert(pid, pending, 0);
        let _ = PENDING.remove(old_pid);
    }
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let tid = current_tid();
    let Some(&audit_id) = (unsafe { TRACED.get(tid) }) else { return 0 };
    let offset = unsafe { core::ptr::read_volatile(&TASK_EXIT_CODE_OFFSET) };
    let mut status: i32 = 0;
    if offset != 0 {
        let task = unsafe { bpf_get_current_task() };
        unsafe { bpf_probe_read_kernel((&mut status as *mut i32).cast(), 4, (task + offset) as *const c_void) };
    }
    let group_dead: u8 = read_ctx(&ctx, EXIT_GROUP_DEAD_OFFSET);
    let head = header(EventKind::Exit, audit_id, 0, [status as u32 as u64, group_dead as u64, 0]);
    let _ = TRACED.remove(tid);
    let _ = PENDING.remove(tid);
    emit_header(head);
    0
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable by construction; the verifier would reject a reachable loop.
    loop {}
}
