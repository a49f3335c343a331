//! The eBPF backend: loads the kernel programs embedded at build time, attaches
//! them, follows the tasks it is told to, and streams their events.

mod btf;
pub mod daemon_client;
pub mod decode;
mod kfunc;
pub mod preflight;
pub mod protocol;
pub mod session;

use std::{
    cmp::Reverse,
    io,
    os::fd::AsFd,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex, PoisonError,
    },
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{raw_trace_point::RawTracePointLink, trace_point::TracePointLink, RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use tokio::io::unix::AsyncFd;
use tracer_common::{counters, globals, maps, programs, syscalls::SYSCALLS, Attach, ProgramSpec};

use crate::event::Tid;
pub use decode::DecodeError;
pub use preflight::PreflightError;

/// The kernel programs, built and linked by build.rs.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reprotrace.bpf.o"));

/// How often the consumer drains the ring buffer when the kernel has not woken it.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// `bpf_map_update_elem` flag: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

/// Default ring buffer size, from a measurement (docs/benchmarks.md): with
/// its reader raised above the command (`crate::priority`), a burst of
/// 400,000 stats of distinct 120-byte paths from 16 threads on 2 cores lost
/// nothing in 10 runs through 16 MiB, and events in 2 of 10 through 8 MiB
/// (ten million short events from 4 to 32 threads lost nothing with 4 MiB).
/// 16 MiB, which the consumer maps twice: 32 MiB of its resident memory.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("cannot read the kernel's BTF ({path}): {reason}; use `--backend strace`")]
    Btf { path: &'static str, reason: String },
    #[error("--ring-buffer-size must be a power of two multiple of the page size, got {0}")]
    RingBufferSize(u32),
    #[error("cannot tell how many CPUs this machine has: {0}")]
    Cpus(String),
    #[error("reprotrace's eBPF object is not an ELF object it can read ({0}): rebuild reprotrace")]
    Object(String),
    #[error("the kernel refused reprotrace's eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused eBPF program `{name}`: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("eBPF map `{name}`: {reason}")]
    Map { name: &'static str, reason: String },
    #[error("eBPF program `{0}` is missing from reprotrace's object: the build is broken; rebuild reprotrace")]
    MissingProgram(&'static str),
    #[error("reading the ring buffer: {0}")]
    Io(#[from] io::Error),
}

/// Counters kept by the kernel programs, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events lost (`counters::LOST_EVENTS`).
    pub lost_events: u64,
    /// Tasks not followed (`counters::UNTRACKED_CHILDREN`).
    pub untracked_children: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub ring_buffer_bytes: u32,
    /// Every program returns at once: the benchmarks' floor, what the
    /// attach points cost before any work (`--bench-floor`; the audit then
    /// sees nothing).
    pub return_at_once: bool,
    /// Opens and stats that find no file are reported (`repeat`: a file the
    /// program needed that the bundle lacks).
    pub report_failed_lookups: bool,
    /// Kernel memory is read by helper calls even where this kernel lets the
    /// programs load it: the programs a kernel before 6.17 runs (tests load
    /// them here).
    pub helper_reads: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            return_at_once: false,
            report_failed_lookups: false,
            helper_reads: false,
        }
    }
}

/// Loaded and attached programs, and the ring buffer their events arrive on.
///
/// One source can serve several audits: every task it follows is tagged with
/// an audit id, and so is every event, which the consumer routes by that id
/// (see [`session`] for one audit's view, and the daemon for many).
pub struct KernelPrograms {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    /// The syscall dispatch tables, held open: the kernel empties a program
    /// table when user space closes its last descriptor of it.
    _dispatch: ProgramArray<MapData>,
    /// The `TASK_AUDITS` array, mapped into our memory.
    task_audits: TaskAudits,
    /// One per attached program; dropping one detaches its program.
    links: Vec<AttachedLink>,
    /// The io_uring programs can run here (the kernel has the tracepoints
    /// and the request layout they read).
    sees_io_uring: bool,
}

impl KernelPrograms {
    /// Checks the machine, loads and attaches every program.
    pub fn load(options: &LoadOptions) -> Result<Self, EbpfError> {
        let mut source = Self::load_detached(options)?;
        source.attach()?;
        Ok(source)
    }

    /// Checks the machine and loads every program, leaving them unattached.
    pub fn load_detached(options: &LoadOptions) -> Result<Self, EbpfError> {
        let tracefs = preflight::check()?;
        let page = page_size();
        let ring_bytes = options.ring_buffer_bytes;
        if !ring_bytes.is_power_of_two() || ring_bytes < page {
            return Err(EbpfError::RingBufferSize(ring_bytes));
        }
        let offsets = btf::KernelOffsets::of_this_kernel()?;
        let sees_io_uring = offsets.io_uring.known == 1 && preflight::io_uring_tracepoints_fit(&tracefs);
        let cpus = possible_cpus()?;
        let task_audit_pairs = task_audit_pairs()?;
        let return_at_once = u64::from(options.return_at_once);
        let report_failed_lookups = u64::from(options.report_failed_lookups);
        let (object, kernel_reads_by_load) = match u32::try_from(offsets.rdonly_cast) {
            // (The kernel calls no kfunc from a program it does not compile.)
            Ok(rdonly_cast) if rdonly_cast != 0 && !options.helper_reads && jit_compiles() => {
                let (object, calls) =
                    kfunc::with_kfunc_calls(BPF_OBJECT, tracer_common::RDONLY_CAST_PLACEHOLDER, rdonly_cast)
                        .map_err(|err| EbpfError::Object(err.to_string()))?;
                (Some(object), u64::from(calls > 0))
            }
            // Left as built: `KERNEL_READS_BY_LOAD` 0 keeps the verifier off
            // the placeholder's calls.
            _ => (None, 0),
        };
        let object = object.as_ref().map_or(BPF_OBJECT, kfunc::AlignedObject::bytes);
        let mut ebpf = EbpfLoader::new()
            // The object carries no CO-RE relocations (see btf.rs): the
            // loader needs no kernel BTF (and, patched, parses none when
            // created: third_party/aya/PATCHED.md).
            .btf(None)
            .override_global(globals::SYSCALL_REGS, &offsets.syscall_regs, true)
            .override_global(globals::FILE_OFFSETS, &offsets.files, true)
            .override_global(globals::CRED_OFFSETS, &offsets.creds, true)
            .override_global(globals::SHARING_OFFSETS, &offsets.sharing, true)
            .override_global(globals::BINPRM_OFFSETS, &offsets.binprm, true)
            .override_global(globals::RETURN_AT_ONCE, &return_at_once, true)
            .override_global(globals::REPORT_FAILED_LOOKUPS, &report_failed_lookups, true)
            .override_global(globals::KERNEL_READS_BY_LOAD, &kernel_reads_by_load, true)
            .override_global(globals::TASK_EXIT_CODE_OFFSET, &offsets.task_exit_code, true)
            .override_global(globals::TASK_MM_OFFSET, &offsets.task_mm, true)
            .override_global(globals::MM_ARG_START_OFFSET, &offsets.mm_arg_start, true)
            .override_global(globals::MM_ARG_END_OFFSET, &offsets.mm_arg_end, true)
            .override_global(globals::IO_URING_OFFSETS, &offsets.io_uring, true)
            .map_max_entries(maps::EVENTS, ring_bytes)
            .map_max_entries(maps::EXEC_SCRATCH, cpus)
            .map_max_entries(maps::TASK_AUDITS, task_audit_pairs)
            .load(object)
            .map_err(EbpfError::Load)?;
        load_programs(&mut ebpf, object)?;
        let dispatch = dispatch_table(&mut ebpf)?;
        let task_audits = TaskAudits::map(&mut ebpf, task_audit_pairs)?;
        let ring_map = ebpf
            .take_map(maps::EVENTS)
            .ok_or_else(|| EbpfError::Map { name: maps::EVENTS, reason: "missing from the object".into() })?;
        let ring = RingBuf::try_from(ring_map)
            .map_err(|err| EbpfError::Map { name: maps::EVENTS, reason: err.to_string() })?;
        // SAFETY: the ring buffer owns its descriptor and keeps it open while the
        // AsyncFd holds it; we never replace or close it.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|err| EbpfError::Io(err.into()))?;
        Ok(KernelPrograms { ebpf, ring, _dispatch: dispatch, task_audits, links: Vec::new(), sees_io_uring })
    }

    /// Attaches every program to its tracepoint (a few milliseconds: the
    /// programs are loaded already).
    pub fn attach(&mut self) -> Result<(), EbpfError> {
        for spec in programs() {
            let program_error = |source| EbpfError::Program { name: spec.symbol, source };
            let (category, name) = match spec.attach {
                Attach::RawTracepoint(name) => {
                    let program = program::<RawTracePoint>(&mut self.ebpf, spec.symbol)?;
                    let link = program.attach(name).map_err(program_error)?;
                    self.links.push(AttachedLink::Raw(program.take_link(link).map_err(program_error)?));
                    continue;
                }
                Attach::Tracepoint { category, name } if self.sees_io_uring || category != "io_uring" => {
                    (category, name.to_string())
                }
                // Tail-called, or io_uring's on a kernel whose requests they cannot read.
                Attach::Tracepoint { .. } | Attach::ExitHandler => continue,
            };
            let program = program::<TracePoint>(&mut self.ebpf, spec.symbol)?;
            let link = program.attach(category, &name).map_err(program_error)?;
            self.links.push(AttachedLink::Classic(program.take_link(link).map_err(program_error)?));
        }
        Ok(())
    }

    pub fn is_attached(&self) -> bool {
        !self.links.is_empty()
    }

    /// Whether io_uring requests of the tasks followed are reported.
    pub fn sees_io_uring(&self) -> bool {
        self.sees_io_uring
    }

    /// Detaches every program, in a thread of its own: each classic
    /// tracepoint waits for an RCU grace period (see
    /// [`KernelPrograms::detach_after_exit`]). Join the thread before
    /// attaching again, or the attach waits behind it in the kernel.
    pub fn detach_in_background(&mut self) -> std::thread::JoinHandle<()> {
        let links = std::mem::take(&mut self.links);
        std::thread::spawn(move || drop(links))
    }

    fn traced(&mut self) -> Result<BpfHashMap<&mut MapData, u32, u32>, EbpfError> {
        let map = self
            .ebpf
            .map_mut(maps::TRACED)
            .ok_or_else(|| EbpfError::Map { name: maps::TRACED, reason: "missing from the object".into() })?;
        BpfHashMap::try_from(map).map_err(traced_error)
    }

    /// Makes `audit_id` a user's audit, or root's again: a process of a
    /// user's audit that execs a setuid or setgid program is no longer
    /// followed (the kernel stops at the exec).
    pub fn set_user_audit(&mut self, audit_id: u32, users: bool) -> Result<(), EbpfError> {
        let name = maps::USER_AUDITS;
        let map =
            self.ebpf.map_mut(name).ok_or_else(|| EbpfError::Map { name, reason: "missing from the object".into() })?;
        let mut audits: BpfHashMap<&mut MapData, u32, u32> =
            BpfHashMap::try_from(map).map_err(|err| EbpfError::Map { name, reason: err.to_string() })?;
        let done = match users {
            true => audits.insert(audit_id, 1, 0),
            // Not there (root's, or never marked): nothing to undo.
            false => audits.remove(&audit_id).or(Ok(())),
        };
        done.map_err(|err| EbpfError::Map { name, reason: err.to_string() })
    }

    /// Follows `tid` and, from now on, every task it creates, as part of audit
    /// `audit_id`. Returns false when the task was already followed (by an
    /// earlier call, or by the kernel because its parent was): its audit stays.
    pub fn follow(&mut self, tid: Tid, audit_id: u32) -> Result<bool, EbpfError> {
        if self.audit_of(tid).is_some() {
            return Ok(false);
        }
        // In TASK_AUDITS first: no syscall of a task in TRACED is turned away.
        self.task_audits.set(tid, Some(audit_id));
        match self.traced()?.insert(tid, audit_id, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::SyscallError(err)) if err.io_error.raw_os_error() == Some(libc::EEXIST) => {
                // The kernel followed it meanwhile (its parent forked it):
                // its audit stays.
                self.task_audits.set(tid, self.audit_of(tid));
                Ok(false)
            }
            Err(err) => {
                self.task_audits.set(tid, None);
                Err(traced_error(err))
            }
        }
    }

    /// The audit `tid` is followed for, if any.
    pub fn audit_of(&self, tid: Tid) -> Option<u32> {
        let map = self.ebpf.map(maps::TRACED)?;
        BpfHashMap::<_, u32, u32>::try_from(map).ok()?.get(&tid, 0).ok()
    }

    /// Stops following every task of `audit_id` (an audit that ended or was
    /// abandoned while some of its tasks live on).
    pub fn forget_audit(&mut self, audit_id: u32) -> Result<(), EbpfError> {
        let mut traced = self.traced()?;
        let tasks: Vec<u32> =
            traced.iter().filter_map(Result::ok).filter(|(_, audit)| *audit == audit_id).map(|(tid, _)| tid).collect();
        for &tid in &tasks {
            // A task that exited meanwhile removed itself.
            let _ = traced.remove(&tid);
        }
        // Cleared last: an entry may outlive its task in TRACED, never the reverse.
        for tid in tasks {
            self.task_audits.set(tid, None);
        }
        Ok(())
    }

    /// Waits until the ring buffer has events, or at most [`DRAIN_INTERVAL`]:
    /// the kernel wakes us only once a batch has piled up, and the last few
    /// events of a quiet moment must not wait for the next batch.
    pub async fn wait_for_events(&mut self) -> Result<(), EbpfError> {
        if let Ok(guard) = tokio::time::timeout(DRAIN_INTERVAL, self.ring.readable_mut()).await {
            // Clear readiness before draining: an event committed while we
            // drain wakes us again instead of being stranded.
            guard?.clear_ready();
        }
        Ok(())
    }

    /// Hands every record already in the ring buffer to `sink`, without
    /// waiting. Returns the number of records read.
    pub fn drain(&mut self, sink: &mut impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut read = 0;
        while let Some(record) = ring.next() {
            read += 1;
            sink(&record);
        }
        read
    }

    pub fn counters(&self) -> Result<KernelCounters, EbpfError> {
        let map_error = |err: aya::maps::MapError| EbpfError::Map { name: maps::COUNTERS, reason: err.to_string() };
        let map = self
            .ebpf
            .map(maps::COUNTERS)
            .ok_or_else(|| EbpfError::Map { name: maps::COUNTERS, reason: "missing from the object".into() })?;
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_error)?;
        let sum = |slot: u32| -> Result<u64, EbpfError> { Ok(array.get(&slot, 0).map_err(map_error)?.iter().sum()) };
        Ok(KernelCounters {
            lost_events: sum(counters::LOST_EVENTS)?,
            untracked_children: sum(counters::UNTRACKED_CHILDREN)?,
        })
    }

    /// Detaches the programs after this process has exited, in a child left
    /// behind for that, so that reprotrace exits as soon as its work is done.
    ///
    /// Detaching a classic tracepoint waits for an RCU grace period under the
    /// kernel's event mutex (`perf_trace_event_unreg`), about 75 ms each here
    /// (the scheduler's and io_uring's: a few hundred milliseconds), which
    /// nobody should wait for. The child holds the last references to the
    /// programs' descriptors, waits for its parent to be gone, and closes them.
    pub fn detach_after_exit(self) {
        // SAFETY: after fork the child only makes async-signal-safe calls
        // (getppid, setsid, open, dup2, nanosleep, close_range, _exit).
        unsafe {
            let parent = libc::getpid();
            let pid = libc::fork();
            if pid == 0 {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for stdio in 0..3 {
                    libc::dup2(null, stdio);
                }
                let pause = libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 };
                while libc::getppid() == parent {
                    libc::nanosleep(&pause, std::ptr::null_mut());
                }
                libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
                libc::_exit(0);
            }
            if pid < 0 {
                // No helper: detach here, slowly.
                drop(self);
                return;
            }
        }
        // The descriptors close with this process, cheaply: the child still holds them.
        std::mem::forget(self);
    }
}

/// Entries of `TASK_AUDITS` (two tasks each): enough for every task id
/// this system gives now (`pid_max`, which can only be raised by root; a task
/// beyond it is found in `TRACED`, at the cost of a lookup per syscall).
fn task_audit_pairs() -> Result<u32, EbpfError> {
    const PID_MAX: &str = "/proc/sys/kernel/pid_max";
    let unreadable = |reason: String| EbpfError::Map { name: maps::TASK_AUDITS, reason };
    let text = std::fs::read_to_string(PID_MAX).map_err(|err| unreadable(format!("cannot read {PID_MAX}: {err}")))?;
    let pid_max: u32 =
        text.trim().parse().map_err(|_| unreadable(format!("{PID_MAX} holds {text:?}, not a number of task ids")))?;
    Ok(pid_max.clamp(2, tracer_common::PID_MAX_LIMIT).div_ceil(2))
}

/// The kernel's `TASK_AUDITS` array, shared memory: each task's entry is
/// stored whole and atomically, as the programs do, so that neither side
/// undoes the other's change to the neighbouring task's.
struct TaskAudits {
    /// Unmapped before the map's descriptor closes (fields drop in order).
    mapping: memmap2::MmapRaw,
    // Keeps the map alive while it is mapped.
    _map: MapData,
}

impl TaskAudits {
    fn map(ebpf: &mut Ebpf, pairs: u32) -> Result<TaskAudits, EbpfError> {
        let name = maps::TASK_AUDITS;
        let map =
            ebpf.take_map(name).ok_or_else(|| EbpfError::Map { name, reason: "missing from the object".into() })?;
        let map = match map {
            aya::maps::Map::Array(data) => data,
            _ => return Err(EbpfError::Map { name, reason: "not an array".into() }),
        };
        // A shared mapping of the map's own memory (it was created
        // BPF_F_MMAPABLE, of exactly this size).
        let mapping = memmap2::MmapOptions::new()
            .len(pairs as usize * 2 * std::mem::size_of::<u32>())
            .map_raw(&map.fd().as_fd())
            .map_err(|err| EbpfError::Map { name, reason: format!("cannot map it into memory: {err}") })?;
        Ok(TaskAudits { mapping, _map: map })
    }

    /// Sets task `tid`'s audit (`None`: not followed).
    fn set(&self, tid: Tid, audit_id: Option<u32>) {
        let index = tid as usize;
        if index >= self.mapping.len() / std::mem::size_of::<u32>() {
            return;
        }
        // SAFETY: `index` is within the mapping, which lives as long as self;
        // u32 entries are 4-byte aligned in a page-aligned mapping, and every
        // access to them, here and in the programs, is a whole, atomic one.
        let entry = unsafe { &*self.mapping.as_mut_ptr().cast::<AtomicU32>().add(index) };
        entry.store(audit_id.map_or(0, |audit_id| audit_id.wrapping_add(1)), Ordering::Relaxed);
    }
}

/// An attached program's link, held to keep it attached.
enum AttachedLink {
    // Only dropped: that detaches.
    Raw(#[allow(dead_code)] RawTracePointLink),
    Classic(#[allow(dead_code)] TracePointLink),
}

/// The program `symbol`, as the type of program it is (`TracePoint`, `RawTracePoint`).
fn program<'a, P>(ebpf: &'a mut Ebpf, symbol: &'static str) -> Result<&'a mut P, EbpfError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(symbol)
        .ok_or(EbpfError::MissingProgram(symbol))?
        .try_into()
        .map_err(|source| EbpfError::Program { name: symbol, source })
}

/// Loads every program, on as many threads as there are CPUs (the calling
/// thread one of them): the kernel verifies each program on the thread that
/// loads it, and verification is half of a standalone audit's start. The
/// largest programs go first and each thread takes the next one left: the
/// verifier's time grows with a program's size, and the two open handlers'
/// (4 and 6 ms on a virtual AMD host) were a quarter of it, so that handing
/// the programs out by turns left one thread 22 ms of work and the other 14
/// (loading them all: 30.0 → 26.5 ms, medians of 16 standalone starts). (On
/// two CPUs, `run -- true` took 108 ms instead of 115 with two threads
/// instead of one: the programs do not verify in parallel as well as that
/// suggests.)
fn load_programs(ebpf: &mut Ebpf, object: &[u8]) -> Result<(), EbpfError> {
    let mut found: Vec<(ProgramSpec, &mut aya::programs::Program)> = Vec::new();
    let specs: Vec<ProgramSpec> = programs().collect();
    for (name, program) in ebpf.programs_mut() {
        if let Some(spec) = specs.iter().find(|spec| spec.symbol == name) {
            found.push((*spec, program));
        }
    }
    if let Some(missing) = specs.iter().find(|spec| !found.iter().any(|(seen, _)| seen.symbol == spec.symbol)) {
        return Err(EbpfError::MissingProgram(missing.symbol));
    }
    let sizes = program_sizes(object);
    found.sort_by_key(|(spec, _)| Reverse(sizes.get(spec.symbol).copied().unwrap_or_default()));
    let queue = Mutex::new(found.into_iter());
    let load_what_is_left = || loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
        let Some((spec, program)) = next else { return Ok(()) };
        load_one(spec, program)?;
    };
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    std::thread::scope(|scope| {
        // One that cannot start leaves its programs to the others.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new().name("verify".into()).spawn_scoped(scope, load_what_is_left).ok()
            })
            .collect();
        let own = load_what_is_left();
        helpers.into_iter().fold(own, |result, helper| {
            let helped = helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result.and(helped)
        })
    })
}

/// The size in bytes of each function of the object's code, by name (its
/// programs among them); none for an object that does not parse (aya has
/// parsed it already, and says what is wrong with it).
fn program_sizes(object: &[u8]) -> std::collections::HashMap<&str, u64> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let Ok(file) = object::File::parse(object) else { return Default::default() };
    file.symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text)
        .filter_map(|symbol| Some((symbol.name().ok()?, symbol.size())))
        .collect()
}

/// Loads one program, as the type of program it is.
fn load_one(spec: ProgramSpec, program: &mut aya::programs::Program) -> Result<(), EbpfError> {
    let program_error = |source| EbpfError::Program { name: spec.symbol, source };
    match spec.is_raw_tracepoint() {
        true => <&mut RawTracePoint>::try_from(program).map_err(program_error)?.load().map_err(program_error),
        false => <&mut TracePoint>::try_from(program).map_err(program_error)?.load().map_err(program_error),
    }
}

/// Fills the syscall dispatch table: at each traced syscall's number, the
/// exit handler of its shape.
fn dispatch_table(ebpf: &mut Ebpf) -> Result<ProgramArray<MapData>, EbpfError> {
    let name = maps::EXIT_HANDLERS;
    let map_error = |reason: String| EbpfError::Map { name, reason };
    let map = ebpf.take_map(name).ok_or_else(|| map_error("missing from the object".into()))?;
    let mut table = ProgramArray::try_from(map).map_err(|err| map_error(err.to_string()))?;
    for syscall in SYSCALLS {
        let handler = syscall.handled_by().exit_handler;
        let program = program::<RawTracePoint>(ebpf, handler)?;
        let fd = program.fd().map_err(|source| EbpfError::Program { name: handler, source })?;
        table.set(syscall.nr, fd, 0).map_err(|err| map_error(err.to_string()))?;
    }
    Ok(table)
}

fn traced_error(err: aya::maps::MapError) -> EbpfError {
    EbpfError::Map { name: maps::TRACED, reason: err.to_string() }
}

/// Whether the kernel compiles BPF programs (`net.core.bpf_jit_enable`,
/// never 0 on a kernel built to always compile them).
fn jit_compiles() -> bool {
    std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable").map_or(true, |value| value.trim() != "0")
}

fn page_size() -> u32 {
    u32::try_from(rustix::param::page_size()).unwrap_or(4096)
}

/// How many CPUs the kernel may run programs on (`/sys/devices/system/cpu/possible`,
/// e.g. `0-1`): one exec buffer each.
fn possible_cpus() -> Result<u32, EbpfError> {
    const POSSIBLE: &str = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(POSSIBLE).map_err(|err| EbpfError::Cpus(format!("{POSSIBLE}: {err}")))?;
    let highest = text
        .trim()
        .split(',')
        .filter_map(|range| range.rsplit('-').next()?.trim().parse::<u32>().ok())
        .max()
        .ok_or_else(|| EbpfError::Cpus(format!("{POSSIBLE} says {text:?}")))?;
    Ok(highest + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both builds of the programs pass the verifier of this kernel: the one
    /// that reads kernel memory by loads (its placeholder calls made kfunc
    /// calls), and the one a kernel before 6.17 runs, which calls helpers and
    /// leaves the placeholder on paths the verifier must see are not taken.
    #[test]
    fn the_programs_load_with_kernel_reads_by_load_and_by_helper() {
        // (The ring buffer registers with the runtime's reactor.)
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("a runtime");
        let _in_runtime = runtime.enter();
        for helper_reads in [false, true] {
            let options = LoadOptions { helper_reads, ..LoadOptions::default() };
            if let Err(err) = KernelPrograms::load_detached(&options) {
                panic!("helper_reads {helper_reads}: {err:#}");
            }
        }
    }

    /// The loader hands out the largest programs first: each has its size in
    /// the object, and the open handlers, the slowest to verify, are among
    /// the largest.
    #[test]
    fn every_program_has_a_size_and_the_open_handlers_are_large() {
        let sizes = program_sizes(BPF_OBJECT);
        let mut by_size: Vec<(u64, &str)> =
            programs().map(|spec| (sizes.get(spec.symbol).copied().unwrap_or(0), spec.symbol)).collect();
        assert!(by_size.iter().all(|(size, _)| *size > 0), "{by_size:?}");
        by_size.sort_unstable_by(|a, b| b.cmp(a));
        let largest: Vec<&str> = by_size.iter().take(6).map(|(_, symbol)| *symbol).collect();
        for handler in ["exit_open", "exit_openat2"] {
            assert!(largest.contains(&handler), "{handler} not among {largest:?}");
        }
    }
}
