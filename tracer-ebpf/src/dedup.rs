//! Repeated facts, dropped in the kernel: a fact about an absolute path that
//! a process image stated before in the same cell is not sent again (see
//! tracer-common's `FactKey`), nor is an open that states nothing new, nor
//! the close of its descriptor (see tracer-common's `ProcessDedup`).

use super::*;

/// The checks of facts about absolute paths sent already (see tracer-common's
/// `SEEN_FACT_SETS`): a Python start-up stats and opens the same few hundred
/// paths again and again, a storm of reads opens the same files, and the
/// first time is the fact. Memory-mappable only to start its values at a
/// page, so that no set straddles two cache lines (the lookup is the
/// handlers' likeliest cache miss).
#[map]
static SEEN_FACTS: Array<SeenFactSet> = Array::with_max_entries(SEEN_FACT_SETS, BPF_F_MMAPABLE);

/// Each traced process's epoch and silent descriptors (allocated as
/// processes come: a kilobyte each, for as many as are traced).
#[map]
pub(crate) static PROCESS_DEDUP: HashMap<u32, ProcessDedup> = HashMap::with_max_entries(MAX_TASKS, BPF_F_NO_PREALLOC);

/// Where a new process's `ProcessDedup` is made (per CPU, as it is too large
/// for the BPF stack): only its epoch is ever written, so its descriptors
/// stay zero, and the entry goes into `PROCESS_DEDUP` whole, never seen
/// without its epoch.
#[map]
static NEW_PROCESS_DEDUP: PerCpuArray<ProcessDedup> = PerCpuArray::with_max_entries(1, 0);

/// Starts process `tgid` afresh (a new process): no fact of its parent's is
/// taken as its own, no descriptor is silent.
#[inline(always)]
pub(crate) fn new_process(tgid: u32) {
    let Some(fresh) = NEW_PROCESS_DEDUP.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's entry; a BPF program is not preempted on its CPU.
    let fresh = unsafe {
        (*fresh).epoch = bpf_ktime_get_ns();
        &*fresh
    };
    let _ = PROCESS_DEDUP.insert(tgid, fresh, 0);
}

/// Starts a new epoch for process `tgid`: its lookups are reported anew (its
/// descriptors stay as they are).
#[inline(always)]
pub(crate) fn new_epoch(tgid: u32) {
    match PROCESS_DEDUP.get_ptr_mut(tgid) {
        // SAFETY: an aligned u64 in the map value; a plain store of it is
        // atomic, and a racing reader sees the old epoch or the new.
        Some(dedup) => unsafe { core::ptr::addr_of_mut!((*dedup).epoch).write_volatile(bpf_ktime_get_ns()) },
        None => new_process(tgid),
    }
}

/// Process `tgid`'s entry, made now if it has none (a process that was
/// running when the audit attached to it).
#[inline(always)]
pub(crate) fn process_dedup(tgid: u32) -> Option<*mut ProcessDedup> {
    PROCESS_DEDUP.get_ptr_mut(tgid).or_else(|| {
        new_process(tgid);
        PROCESS_DEDUP.get_ptr_mut(tgid)
    })
}

/// The byte of `dedup`'s silent descriptors that is `fd`'s; `None` for a
/// descriptor past them.
#[inline(always)]
fn silent_fd(dedup: *mut ProcessDedup, fd: u32) -> Option<*mut u8> {
    if fd >= SILENT_FD_LIMIT {
        return None;
    }
    // SAFETY: the index is inside the array.
    Some(unsafe { core::ptr::addr_of_mut!((*dedup).silent_fds[fd as usize]) })
}

/// Marks descriptor `fd` silent (its open was not sent), or not (its close
/// must be sent). Stored only when that changes: the byte's line is shared
/// by the process's threads.
#[inline(always)]
fn set_silent(dedup: *mut ProcessDedup, fd: u32, silent: bool) {
    if let Some(byte) = silent_fd(dedup, fd) {
        let silent = u8::from(silent);
        // SAFETY: a byte of a map value; a plain load or store of it is atomic.
        unsafe {
            if byte.read_volatile() != silent {
                byte.write_volatile(silent);
            }
        }
    }
}

/// Whether the close of `fd` by process `tgid` closes a descriptor whose open
/// was not sent (it is not sent either; the byte stays, see `ProcessDedup`).
#[inline(always)]
pub(crate) fn close_is_silent(tgid: u32, fd: u32) -> bool {
    let Some(dedup) = PROCESS_DEDUP.get_ptr_mut(tgid) else { return false };
    let Some(byte) = silent_fd(dedup, fd) else { return false };
    // SAFETY: as in `set_silent`.
    unsafe { byte.read_volatile() != 0 }
}

/// Descriptor `fd` of process `tgid` is new, from a call that is sent: its
/// close must be sent too.
#[inline(always)]
pub(crate) fn not_silent(tgid: u32, fd: u32) {
    if let Some(dedup) = PROCESS_DEDUP.get_ptr_mut(tgid) {
        set_silent(dedup, fd, false);
    }
}

/// Facts about absolute paths up to this long are deduplicated (longer ones
/// are always sent).
const DEDUP_BYTES: usize = 512;

/// Paths shorter than this, most of them, are read onto the program's
/// stack; a longer one is read again into the scratch buffer, cleared up to
/// [`DEDUP_BYTES`].
const SHORT_PATH_BYTES: usize = 128;

/// Zeroes the first `WORDS` words at `words`.
#[inline(always)]
fn clear_words<const WORDS: usize>(words: *mut u64) {
    for word in 0..WORDS {
        // SAFETY: callers pass a buffer with room for them, at an 8-byte
        // boundary. (Volatile: LLVM would make the loop a `memset`, which
        // the BPF build makes a call to a byte-by-byte loop.)
        unsafe { words.add(word).write_volatile(0) };
    }
}

/// A hash of the first `WORDS` words at `words`, which hold a path and
/// zeros after it (whatever the path's length, so that the verifier walks a
/// straight line: masking the words past its end by arithmetic on the length
/// took it 40–70 ms a program).
#[inline(always)]
fn hash_words<const WORDS: usize>(words: *const u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in 0..WORDS {
        // SAFETY: inside the scratch buffer, at an 8-byte boundary.
        let value = unsafe { words.add(word).read() };
        hash = (hash ^ value).wrapping_mul(0x0100_0000_01b3);
        hash ^= hash >> 29;
    }
    hash
}

/// The open flags under which an open of a regular file states nothing more
/// than the first one did (read only, not creating, truncating or opening a
/// directory, a path or a temporary file).
const SILENCEABLE_OPEN_FLAGS_MASK: u64 = O_ACCMODE | O_CREAT | O_TRUNC | O_DIRECTORY | O_PATH | O_TMPFILE_ONLY;

/// Whether descriptor `fd` in `open_files` (the task's array of open files,
/// which the dispatcher read) is a regular file without execute bits: one
/// whose descriptor resolves no path (a directory's does) and is run through
/// no `/dev/fd` (an executable's may be).
#[inline(always)]
fn is_plain_file(open_files: u64, fd: u32) -> bool {
    // Untyped reads (`read_kernel`), not typed loads: the array holds
    // pointers of no type the verifier follows, and each typed load costs it
    // a search of the kernel's BTF in every open handler (the dispatcher,
    // one program, makes the loads that reach the array).
    if open_files == 0 {
        return false;
    }
    let file = read_kernel::<u64>(open_files + 8 * u64::from(fd));
    let inode = read_kernel::<u64>(file + loader_global(&FILE_OFFSETS.file_inode));
    if file == 0 || inode == 0 {
        return false;
    }
    let mode = read_kernel_u32(inode + loader_global(&FILE_OFFSETS.inode_mode)) as u32 & 0xffff;
    mode & S_IFMT == S_IFREG && mode & S_EXECUTE_BITS == 0
}

/// Whether `fact` was sent already; remembers it if not, as its set's
/// newest (the oldest is forgotten). Ways, not one slot a set: facts that
/// share a set do not evict each other (a one-way cache sent 2.6 times the
/// churn's events, every colliding pair again on each pass), and a path's
/// lookups and opens share one.
#[inline(always)]
fn seen_before(fact: &FactKey) -> bool {
    let check = fact.check();
    let Some(set) = SEEN_FACTS.get_ptr_mut(fact.set()) else { return false };
    let ways = set.cast::<u64>();
    for way in 0..SEEN_FACT_WAYS {
        // SAFETY: a word of the set, aligned; other CPUs may write it at the
        // same time (each store is of a whole word).
        if unsafe { ways.add(way).read_volatile() } == check {
            return true;
        }
    }
    for way in (1..SEEN_FACT_WAYS).rev() {
        // SAFETY: as above.
        unsafe { ways.add(way).write_volatile(ways.add(way - 1).read_volatile()) };
    }
    // SAFETY: as above.
    unsafe { ways.write_volatile(check) };
    false
}

/// Emits a fact about one path: a lookup, or an open (`fd`: the descriptor
/// it returned, in the task's `open_files`; 0 for a lookup), unless this
/// process image stated the same fact about the same absolute path before
/// (for an open: a read-only one of a plain file, with the same flags; its
/// descriptor is then silent, see `ProcessDedup`).
#[inline(always)]
pub(crate) fn emit_path_fact(mut head: EventHeader, path_ptr: u64, fd: Option<u32>, open_files: u64) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else { return };
    let buf = buf.cast::<u8>();
    // SAFETY: header + PATH_MAX fit in the scratch buffer.
    let path = unsafe { buf.add(HEADER_SIZE) };
    // Read onto the stack first: the kernel checks the destination of every
    // copy from user memory (hardened usercopy), and a map value's check
    // looks up its page, which cost an open's handler as much as its own
    // work; an object on the task's stack passes at once (the handlers stay
    // there: `stay_on_task_stack`). Zeros after the path's end: they are
    // hashed with it.
    // Cleared by word stores, not an array's initialiser, which LLVM makes a
    // `memset` and the BPF build a call to a byte-by-byte loop: 640
    // instructions an open and a stat, 3% of a storm's time.
    let mut short_buf = MaybeUninit::<[u64; SHORT_PATH_BYTES / 8]>::uninit();
    let short = short_buf.as_mut_ptr().cast::<u64>();
    clear_words::<{ SHORT_PATH_BYTES / 8 }>(short);
    let short_len = read_user_str::<SHORT_PATH_BYTES>(short.cast(), path_ptr);
    let is_short = short_len < SHORT_PATH_BYTES;
    let (len, cut) = match is_short {
        true => (short_len, false),
        false => {
            clear_words::<{ DEDUP_BYTES / 8 }>(path.cast());
            read_user_path(path, path_ptr)
        }
    };
    // An empty name looked nothing up (`AT_EMPTY_PATH`: a descriptor's stat,
    // as glibc's fstat makes one), nor did one that cannot be read. (An
    // open's is a fact whatever its path.)
    if len <= 1 && fd.is_none() {
        return;
    }
    // SAFETY: the stack buffer's first word (cleared), or a long path's first
    // byte, inside the scratch buffer.
    let first = if is_short { unsafe { short.read() as u8 } } else { unsafe { *path } };
    // The fact's kind and flags as the dedup key holds them; 0 for a fact
    // always sent. (Not an `Option`: LLVM leaves a `None`'s payload undefined,
    // then spills whatever register it was in, and the verifier refuses a
    // program that reads a register a helper call clobbered.)
    let detail = match fd {
        None => (EventKind::Metadata as u32) << 24,
        Some(fd)
            if fd < SILENT_FD_LIMIT
                && head.args[1] & SILENCEABLE_OPEN_FLAGS_MASK == 0
                && is_plain_file(open_files, fd) =>
        {
            (EventKind::Open as u32) << 24 | (head.args[1] & 0x00ff_ffff) as u32
        }
        Some(_) => 0,
    };
    // (A path of more than DEDUP_BYTES is sent: only that much of it is hashed.)
    let dedup = match detail != 0 && first == b'/' && len <= DEDUP_BYTES {
        true => process_dedup(head.tgid),
        false => None,
    };
    if let Some(dedup) = dedup {
        let path_hash = match is_short {
            true => hash_words::<{ SHORT_PATH_BYTES / 8 }>(short),
            false => hash_words::<{ DEDUP_BYTES / 8 }>(path.cast()),
        };
        let fact = FactKey {
            audit_id: head.audit_id,
            tgid: head.tgid,
            // SAFETY: an aligned u64 of the map value (see `new_epoch`).
            epoch: unsafe { core::ptr::addr_of!((*dedup).epoch).read_volatile() },
            path_len: len as u32,
            detail,
            path_hash,
        };
        if seen_before(&fact) {
            if let Some(fd) = fd {
                set_silent(dedup, fd, true);
            }
            return;
        }
    }
    if let Some(fd) = fd {
        // The descriptor number may be one a silent open had: its close is
        // this open's now.
        not_silent(head.tgid, fd);
    }
    if is_short {
        for index in 0..SHORT_PATH_BYTES / 8 {
            // SAFETY: header + SHORT_PATH_BYTES fit in the scratch buffer,
            // at an 8-byte boundary; the stack buffer's words were cleared.
            unsafe { path.cast::<u64>().add(index).write(short.add(index).read()) };
        }
    }
    let len = len & (2 * PATH_MAX - 1);
    head.str_len = [len as u32, 0];
    head.flags = if cut { FLAG_STR0_TRUNCATED } else { 0 };
    write_header(buf, head);
    send(buf, HEADER_SIZE + len);
}
