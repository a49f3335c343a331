//! io_uring requests of followed tasks that name files: reported when they
//! are submitted (the kernel copied their paths when it prepared them), their
//! outcome when they complete.

use super::*;

/// io_uring requests of traced tasks awaiting completion: request → audit id
/// (allocated as they come: preallocating them cost every standalone audit's
/// start 2 ms, io_uring or not).
#[map]
static IO_URING_REQUESTS: HashMap<u64, u32> = HashMap::with_max_entries(MAX_TASKS, BPF_F_NO_PREALLOC);

/// Set by the loader from the kernel's BTF (`known` 0: io_uring requests are
/// not reported).
#[no_mangle]
static IO_URING_OFFSETS: IoUringOffsets = IoUringOffsets {
    known: 0,
    command: 0,
    open_dfd: 0,
    open_file_slot: 0,
    open_filename: 0,
    open_flags: 0,
    open_mode: 0,
    close_fd: 0,
    close_file_slot: 0,
    statx_dfd: 0,
    statx_flags: 0,
    statx_filename: 0,
    rename_old_dfd: 0,
    rename_new_dfd: 0,
    rename_oldpath: 0,
    rename_newpath: 0,
    rename_flags: 0,
    unlink_dfd: 0,
    unlink_flags: 0,
    unlink_filename: 0,
    mkdir_dfd: 0,
    mkdir_mode: 0,
    mkdir_filename: 0,
    link_old_dfd: 0,
    link_new_dfd: 0,
    link_oldpath: 0,
    link_newpath: 0,
    link_flags: 0,
    filename_name: 0,
};

const IO_URING_REQ_OFFSET: usize = 16;
const IO_URING_SUBMIT_OPCODE_OFFSET: usize = 32;
const IO_URING_COMPLETE_RES_OFFSET: usize = 32;

/// The i32 at `address` in kernel memory, as a syscall argument (sign-extended).
#[inline(always)]
fn read_kernel_i32_arg(address: u64) -> u64 {
    read_kernel::<i32>(address) as i64 as u64
}

/// Copies the path a kernel `struct filename *` holds to `dest` (at most
/// `PATH_MAX` bytes); returns the bytes written including the NUL, and
/// whether it may have been cut.
#[inline(always)]
fn read_kernel_filename(dest: *mut u8, filename: u64, name_offset: u64) -> (usize, bool) {
    if filename == 0 {
        return (0, false);
    }
    let name = read_kernel::<u64>(filename + name_offset);
    // SAFETY: callers pass a `dest` with PATH_MAX bytes of scratch buffer
    // behind it; the helper writes at most that, and fails on a bad pointer.
    let n = unsafe { bpf_probe_read_kernel_str(dest.cast(), PATH_MAX as u32, name as *const c_void) };
    if n <= 0 {
        return (0, false);
    }
    let n = n as usize;
    (n, n >= PATH_MAX)
}

/// An io_uring request of a traced task that names files: reported now with
/// its operands (the kernel copied its paths when it prepared it), and held
/// until its completion says whether it succeeded.
#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    if returns_at_once() {
        return 0;
    }
    // A ring set up with `IORING_SETUP_SQPOLL` has its requests submitted by
    // a kernel thread of the task's process (`iou-sqp`), made without a
    // fork the scheduler's tracepoint reports: its requests are the
    // process leader's, whose files and directories it shares.
    let pid_tgid = current_pid_tgid();
    let (tid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    let (audit_id, requester) = match task_audit(tid) {
        Some(audit_id) => (audit_id, tid),
        None => match task_audit(tgid) {
            Some(audit_id) => (audit_id, tgid),
            None => return 0,
        },
    };
    // SAFETY: a valid, aligned static the loader set.
    let offsets = unsafe { core::ptr::read_volatile(&IO_URING_OFFSETS) };
    if offsets.known == 0 {
        return 0;
    }
    let request: u64 = read_ctx(&ctx, IO_URING_REQ_OFFSET);
    let code: u8 = read_ctx(&ctx, IO_URING_SUBMIT_OPCODE_OFFSET);
    let command = request + offsets.command;
    let at = |offset: u64| command + offset;
    let (kind, args, paths, direct) = match code {
        opcode::OPENAT | opcode::OPENAT2 => (
            EventKind::Open,
            [
                read_kernel_i32_arg(at(offsets.open_dfd)),
                read_kernel::<u64>(at(offsets.open_flags)),
                read_kernel::<u64>(at(offsets.open_mode)),
            ],
            [read_kernel::<u64>(at(offsets.open_filename)), 0],
            read_kernel_u32(at(offsets.open_file_slot)) != 0,
        ),
        opcode::CLOSE => {
            let fd = read_kernel_i32_arg(at(offsets.close_fd));
            (EventKind::Close, [fd, fd, 0], [0, 0], read_kernel_u32(at(offsets.close_file_slot)) != 0)
        }
        opcode::STATX => (
            EventKind::Metadata,
            [read_kernel_i32_arg(at(offsets.statx_dfd)), read_kernel_u32(at(offsets.statx_flags)), 0],
            [read_kernel::<u64>(at(offsets.statx_filename)), 0],
            false,
        ),
        opcode::RENAMEAT => (
            EventKind::Rename,
            [
                read_kernel_i32_arg(at(offsets.rename_old_dfd)),
                read_kernel_i32_arg(at(offsets.rename_new_dfd)),
                read_kernel_u32(at(offsets.rename_flags)),
            ],
            [read_kernel::<u64>(at(offsets.rename_oldpath)), read_kernel::<u64>(at(offsets.rename_newpath))],
            false,
        ),
        opcode::UNLINKAT => (
            EventKind::Remove,
            [read_kernel_i32_arg(at(offsets.unlink_dfd)), read_kernel_u32(at(offsets.unlink_flags)), 0],
            [read_kernel::<u64>(at(offsets.unlink_filename)), 0],
            false,
        ),
        opcode::MKDIRAT => (
            EventKind::Mkdir,
            [read_kernel_i32_arg(at(offsets.mkdir_dfd)), read_kernel_u32(at(offsets.mkdir_mode)), 0],
            [read_kernel::<u64>(at(offsets.mkdir_filename)), 0],
            false,
        ),
        opcode::SYMLINKAT => (
            EventKind::Symlink,
            [0, read_kernel_i32_arg(at(offsets.link_new_dfd)), 0],
            [read_kernel::<u64>(at(offsets.link_oldpath)), read_kernel::<u64>(at(offsets.link_newpath))],
            false,
        ),
        opcode::LINKAT => (
            EventKind::Link,
            [
                read_kernel_i32_arg(at(offsets.link_old_dfd)),
                read_kernel_i32_arg(at(offsets.link_new_dfd)),
                read_kernel_u32(at(offsets.link_flags)),
            ],
            [read_kernel::<u64>(at(offsets.link_oldpath)), read_kernel::<u64>(at(offsets.link_newpath))],
            false,
        ),
        _ => return 0,
    };
    if IO_URING_REQUESTS.insert(request, audit_id, 0).is_err() {
        // Its completion could not be told apart: the request is lost.
        bump_counter(counters::LOST_EVENTS);
        return 0;
    }
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return 0 };
    let buf = buf.cast::<u8>();
    // SAFETY: header + 2 × 2·PATH_MAX (lengths are masked so) fit in the
    // scratch buffer.
    let (len0, cut0) = read_kernel_filename(unsafe { buf.add(HEADER_SIZE) }, paths[0], offsets.filename_name);
    let len0 = len0 & (2 * PATH_MAX - 1);
    // SAFETY: see above.
    let (len1, cut1) = read_kernel_filename(unsafe { buf.add(HEADER_SIZE + len0) }, paths[1], offsets.filename_name);
    let len1 = len1 & (2 * PATH_MAX - 1);
    let mut head = header(kind, audit_id, request as i64, args);
    head.tid = requester;
    head.str_len = [len0 as u32, len1 as u32];
    head.flags = FLAG_IO_URING_REQUEST
        | if direct { FLAG_IO_URING_DIRECT } else { 0 }
        | if cut0 { FLAG_STR0_TRUNCATED } else { 0 }
        | if cut1 { FLAG_STR1_TRUNCATED } else { 0 };
    write_header(buf, head);
    send(buf, HEADER_SIZE + len0 + len1);
    0
}

/// The outcome of a request [`io_uring_submit_req`] reported.
#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    if returns_at_once() {
        return 0;
    }
    let request: u64 = read_ctx(&ctx, IO_URING_REQ_OFFSET);
    // SAFETY: the value is copied out at once.
    let Some(audit_id) = (unsafe { IO_URING_REQUESTS.get(request) }).copied() else { return 0 };
    let _ = IO_URING_REQUESTS.remove(request);
    let result: i32 = read_ctx(&ctx, IO_URING_COMPLETE_RES_OFFSET);
    let head = header(EventKind::IoUringCompletion, audit_id, i64::from(result), [request, 0, 0]);
    // An open's descriptor is news: its close must be sent (see
    // `ProcessDedup`). Other requests' results are 0 or a count, whose
    // descriptor at worst has its close sent needlessly.
    if result >= 0 {
        not_silent(head.tgid, result as u32);
    }
    emit_header(head);
    0
}
