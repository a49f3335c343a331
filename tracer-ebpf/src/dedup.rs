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

/// Traced processes' epochs and silent descriptors, each at its id's slot
/// (see tracer-common's `PROCESS_DEDUP_SLOTS`). Memory-mappable only to
/// start its values at a page, so that a slot's epoch and owner share one
/// cache line.
#[map]
static DEDUP_SLOTS: Array<ProcessDedup> = Array::with_max_entries(PROCESS_DEDUP_SLOTS, BPF_F_MMAPABLE);

/// Where a process's fresh slot is made before it is stored whole (per
/// CPU, as it is too large for the BPF stack): only its epoch and owner are
/// ever written, so its descriptors stay zero.
#[map]
static FRESH_SLOT: PerCpuArray<ProcessDedup> = PerCpuArray::with_max_entries(1, 0);

/// The slot of process `tgid`'s id, whoever holds it.
#[inline(always)]
fn slot_of(tgid: u32) -> Option<*mut ProcessDedup> {
    DEDUP_SLOTS.get_ptr_mut(tgid & (PROCESS_DEDUP_SLOTS - 1))
}

/// Who holds `slot` (a thread-group id; 0: no one).
#[inline(always)]
fn owner(slot: *mut ProcessDedup) -> u32 {
    // SAFETY: an aligned u64 of the map value; a plain load of it is atomic.
    unsafe { core::ptr::addr_of!((*slot).owner).read_volatile() as u32 }
}

/// Process `tgid`'s slot, if it holds it.
#[inline(always)]
fn entry_of(tgid: u32) -> Option<*mut ProcessDedup> {
    slot_of(tgid).filter(|&slot| owner(slot) == tgid)
}

/// Starts process `tgid` afresh (a new process): no fact of its parent's is
/// taken as its own, no descriptor is silent. It takes its id's slot unless
/// another process holds it that a task of an audit still follows (a holder
/// gone, or no audit's concern now, leaves it); then it has none, and its
/// facts are all sent, as they would be without deduplication.
#[inline(always)]
pub(crate) fn new_process(tgid: u32) {
    let Some(slot) = slot_of(tgid) else { return };
    let holder = owner(slot);
    if holder != 0 && holder != tgid && task_audit(holder).is_some() {
        return;
    }
    let Some(fresh) = FRESH_SLOT.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's entry; a BPF program is not preempted on its CPU.
    let fresh = unsafe {
        (*fresh).epoch = bpf_ktime_get_ns();
        (*fresh).owner = u64::from(tgid);
        &*fresh
    };
    // Stored whole (a copy, by reference: the value is too large for the BPF
    // stack): no thread of the new process runs yet (a fork's child, or the
    // one thread whose syscall found no slot), and no thread of a holder it
    // replaces is followed.
    let _ = DEDUP_SLOTS.set(tgid & (PROCESS_DEDUP_SLOTS - 1), fresh, 0);
}

/// Forgets process `tgid` (it exited): frees its slot.
#[inline(always)]
pub(crate) fn process_exited(tgid: u32) {
    if let Some(slot) = entry_of(tgid) {
        // SAFETY: an aligned u64 of the map value; a store of the whole word.
        unsafe { core::ptr::addr_of_mut!((*slot).owner).write_volatile(0) };
    }
}

/// Starts a new epoch for process `tgid`: its lookups are reported anew (its
/// descriptors stay as they are).
#[inline(always)]
pub(crate) fn new_epoch(tgid: u32) {
    match entry_of(tgid) {
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
    // A match, not `Option::or_else`, which the BPF build leaves a call.
    match entry_of(tgid) {
        Some(entry) => Some(entry),
        None => {
            new_process(tgid);
            entry_of(tgid)
        }
    }
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
    let Some(dedup) = entry_of(tgid) else { return false };
    let Some(byte) = silent_fd(dedup, fd) else { return false };
    // SAFETY: as in `set_silent`.
    unsafe { byte.read_volatile() != 0 }
}

/// Descriptor `fd` of process `tgid` is new, from a call that is sent: its
/// close must be sent too.
#[inline(always)]
pub(crate) fn not_silent(tgid: u32, fd: u32) {
    if let Some(dedup) = entry_of(tgid) {
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

/// The hash of the words at `words` that hold a path of `len` bytes (its NUL
/// included; zeros after it), at most `WORDS` of them (see tracer-common's
/// `FactKey::path_hash_step`): a storm's paths take 6 of a short path's 16
/// (a stat 20–35 ns less, `bench programs`).
#[inline(always)]
fn hash_words<const WORDS: usize>(words: *const u64, len: usize) -> u64 {
    let mut hash = FactKey::PATH_HASH_SEED;
    // The loop tests a count made from `len` by a shift, not `len` itself:
    // the verifier narrows a length tested at each word into 16 states it
    // walks the rest of the program with (20 ms more a standalone start);
    // a shifted copy is its own value, dead after the loop.
    let used = (len + 7) >> 3;
    for word in 0..WORDS {
        if word >= used {
            break;
        }
        // SAFETY: inside the scratch buffer, at an 8-byte boundary.
        hash = FactKey::path_hash_step(hash, unsafe { words.add(word).read() });
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
            true => hash_words::<{ SHORT_PATH_BYTES / 8 }>(short, len),
            false => hash_words::<{ DEDUP_BYTES / 8 }>(path.cast(), len),
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
