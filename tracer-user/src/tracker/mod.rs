//! The process tree, its descriptor tables, working and root directories and
//! mount namespaces, and path resolution: turns raw [`Event`]s into
//! [`FileOp`]s on absolute paths and a record of every process.
//!
//! Model (see docs/path-resolution.md):
//! - a task (thread) belongs to a process (thread group) and points at an fd
//!   table and a file-system view (working and root directory), each shared
//!   the way `clone` flags say (`CLONE_FILES`, `CLONE_FS`; threads share
//!   both), and at a mount namespace ([`view`]);
//! - exec gives the process a private copy of its fd table without the
//!   close-on-exec descriptors, and makes the exec'ing thread the only one;
//! - every path is made absolute against the cwd, the root or the dirfd's
//!   path, folded lexically, and mapped to where the auditor finds the file.

pub mod path;
pub mod view;

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap},
    rc::Rc,
};

use self::view::{MountTable, NamespaceId, Place, SharedMounts};
use crate::event::{
    abi::{
        AT_EMPTY_PATH, CLONE_FILES, CLONE_FS, CLONE_NEWNS, CLONE_THREAD, MS_BIND, MS_MOVE, MS_PROPAGATION, MS_REMOUNT,
        O_ACCMODE, O_CLOEXEC, O_CREAT, O_PATH, O_RDWR, O_TRUNC, O_WRONLY, RENAME_EXCHANGE,
    },
    CellMarker, CellOutcome, Event, ExistingProcess, Fact, MarkerPhase, SubmitMarker, TaskMarker, Tid, WaitStatus,
    AT_FDCWD,
};

/// A process id (a thread-group id).
pub type Pid = u32;

/// What an open grants on a file's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    Read,
    Write,
    ReadWrite,
    /// `O_PATH`: a name only, no data.
    PathOnly,
}

/// What a process did to an absolute path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOp {
    Open {
        path: Vec<u8>,
        mode: OpenMode,
        /// `O_CREAT`: the open may have made the file.
        create: bool,
    },
    Exec {
        path: Vec<u8>,
    },
    /// Looked up by name only (stat, access, readlink).
    Metadata {
        path: Vec<u8>,
    },
    Remove {
        path: Vec<u8>,
        dir: bool,
    },
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
        exchange: bool,
    },
    Mkdir {
        path: Vec<u8>,
    },
    /// A new name (hard or symbolic link) was made.
    Link {
        path: Vec<u8>,
    },
    Truncate {
        path: Vec<u8>,
    },
    /// The working (or root) directory became this path.
    Chdir {
        path: Vec<u8>,
    },
}

/// A file operation, who did it, and during which notebook cell and Dask task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileUse {
    pub pid: Pid,
    pub cell: Option<usize>,
    pub dask_task: Option<usize>,
    /// The paths are in this mount namespace, which the auditor cannot see
    /// into; `None`: they are the auditor's.
    pub namespace: Option<NamespaceId>,
    pub op: FileOp,
}

/// A notebook cell, as its markers delimit it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellRecord {
    pub execution_count: u64,
    pub cell_id: Option<String>,
    pub code_sha256: String,
    /// Marker times, nanoseconds since the Unix epoch.
    pub started_ns: u64,
    pub finished_ns: Option<u64>,
    /// Processes that did work during the cell, or were born in it.
    pub pids: BTreeSet<Pid>,
    /// What the hook said of the cell's run at its end.
    pub outcome: Option<CellOutcome>,
}

/// One run of a Dask task, as its markers delimit it in the thread that ran it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaskTaskRecord {
    pub key: String,
    /// The worker process, and the thread of its pool that ran the task.
    pub pid: Pid,
    pub thread: Tid,
    /// Marker times, nanoseconds since the Unix epoch.
    pub started_ns: u64,
    pub finished_ns: Option<u64>,
    /// The worker process and the processes the task started.
    pub pids: BTreeSet<Pid>,
    /// The address of the worker, as its begin marker gave it.
    pub worker: Option<String>,
}

/// A graph a Dask client of the traced tree submitted (its submission marker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmissionRecord {
    /// The submission's id (Dask's `stimulus_id` of the `update-graph`).
    pub id: String,
    /// The submitting process.
    pub pid: Pid,
    /// Marker time, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The notebook cell the submitting process's work belonged to then.
    pub cell: Option<usize>,
}

/// A failed exec: the path tried and the errno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedExec {
    pub path: Vec<u8>,
    pub errno: i32,
}

/// Everything the manifest says about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRecord {
    pub pid: Pid,
    pub ppid: Option<Pid>,
    /// The program image, absolute; inherited from the parent until an exec.
    pub exe: Option<Vec<u8>>,
    pub argv: Vec<Vec<u8>>,
    /// The source could not take the whole argv: `argv` is its beginning.
    pub argv_truncated: bool,
    /// For a script: the interpreters the kernel ran it with.
    pub interpreters: Vec<Vec<u8>>,
    /// The image is a 32-bit (ia32) program.
    pub ia32: bool,
    /// reprotrace's cell hook was installed in it.
    pub cell_hook: bool,
    /// The working directory when the image started (exec, or fork if none).
    pub cwd: Vec<u8>,
    /// `exe` and `cwd` are in this mount namespace, out of the auditor's reach.
    pub namespace: Option<NamespaceId>,
    pub status: Option<WaitStatus>,
    pub failed_execs: Vec<FailedExec>,
    /// The notebook cell its work belongs to: for the process that emits cell
    /// markers, the cell running now; for others, the cell they were born in.
    pub cell: Option<usize>,
    /// The Dask task it was started by (forked by a thread running the task):
    /// all its work belongs to that task.
    pub dask_task: Option<usize>,
    /// It was running before the audit attached to it.
    pub pre_existing: bool,
    live_threads: u32,
}

impl ProcessRecord {
    pub fn is_running(&self) -> bool {
        self.live_threads > 0
    }
}

#[derive(Clone, Debug)]
struct OpenFile {
    /// In the task's namespace coordinates.
    path: Rc<[u8]>,
    cloexec: bool,
}

/// A task's working and root directories, in its namespace coordinates.
#[derive(Clone, Debug)]
struct Fs {
    root: Vec<u8>,
    cwd: Vec<u8>,
}

type FdTable = Rc<RefCell<HashMap<i32, OpenFile>>>;
type SharedFs = Rc<RefCell<Fs>>;

#[derive(Clone, Debug)]
struct Task {
    /// Index into `Tracker::processes`.
    process: usize,
    files: FdTable,
    fs: SharedFs,
    mounts: SharedMounts,
}

/// Counters of what could not be modelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Events from a task the tracker never saw created.
    pub unknown_tasks: u64,
    /// Paths relative to a descriptor the tracker does not know.
    pub unresolved_paths: u64,
    /// Processes whose argv could not be taken whole.
    pub truncated_argvs: u64,
    /// Processes that ran a 32-bit program.
    pub ia32_processes: u64,
    /// io_uring instances the tasks set up, or held when the audit began.
    pub io_uring_setups: u64,
    /// Processes no longer followed past a setuid or setgid program they ran
    /// (a user's audit).
    pub unfollowed_privileged: u64,
}

/// Follows tasks and processes through events; see the module documentation.
#[derive(Debug, Default)]
pub struct Tracker {
    tasks: HashMap<Tid, Task>,
    /// Every process seen, in order of appearance (pids may be reused).
    processes: Vec<ProcessRecord>,
    cells: Vec<CellRecord>,
    dask_tasks: Vec<DaskTaskRecord>,
    /// Graphs the traced tree's Dask clients submitted, in order.
    submissions: Vec<SubmissionRecord>,
    /// Threads running a Dask task now (and threads they started meanwhile).
    bound_threads: HashMap<Tid, usize>,
    /// Paths (the auditor's) that opens and stats found missing, when the
    /// source reports them (a repeat).
    missing_lookups: BTreeSet<Vec<u8>>,
    /// Reprotrace's own mount namespace, shared by every task followed in
    /// it: a mount one of them makes there shows to all of them.
    own_namespace: SharedMounts,
    stats: TrackerStats,
}

/// The pseudo-path of an anonymous memory file, as the kernel shows it in
/// `/proc/PID/fd` and `/proc/PID/exe`.
pub fn memfd_path(name: &[u8]) -> Vec<u8> {
    [b"/memfd:".as_slice(), name, b" (deleted)"].concat()
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts following `pid`, a single-threaded process about to exec (the
    /// command reprotrace launched), whose working directory is `cwd`.
    pub fn add_root(&mut self, pid: Pid, ppid: Option<Pid>, cwd: Vec<u8>) {
        let process = self.processes.len();
        self.processes.push(ProcessRecord {
            pid,
            ppid,
            exe: None,
            argv: Vec::new(),
            argv_truncated: false,
            interpreters: Vec::new(),
            ia32: false,
            cell_hook: false,
            cwd: cwd.clone(),
            namespace: None,
            status: None,
            failed_execs: Vec::new(),
            cell: None,
            dask_task: None,
            pre_existing: false,
            live_threads: 1,
        });
        let fs = Rc::new(RefCell::new(Fs { root: b"/".to_vec(), cwd }));
        let task = Task { process, files: Rc::default(), fs, mounts: self.own_namespace.clone() };
        self.tasks.insert(pid, task);
    }

    /// Starts following a process that was running before the audit, in the
    /// state /proc showed (threads share its descriptors and directory); for a
    /// process already followed, only the threads it did not know (they were
    /// created while the audit attached).
    pub fn add_existing(&mut self, existing: &ExistingProcess) {
        if let Some(task) = self.tasks.get(&existing.pid).cloned() {
            for &tid in &existing.threads {
                self.add_existing_thread_of(&task, tid);
            }
            return;
        }
        // Rings set up before the audit count as set up in it.
        self.stats.io_uring_setups += existing.io_uring_rings;
        let mounts = match existing.other_mount_namespace {
            true => Rc::new(RefCell::new(MountTable::foreign(existing.pid))),
            false => self.own_namespace.clone(),
        };
        let process = self.processes.len();
        self.processes.push(ProcessRecord {
            pid: existing.pid,
            ppid: Some(existing.ppid),
            exe: existing.exe.clone(),
            argv: existing.argv.clone(),
            argv_truncated: false,
            interpreters: Vec::new(),
            ia32: false,
            cell_hook: false,
            cwd: existing.cwd.clone(),
            namespace: existing.other_mount_namespace.then_some(existing.pid),
            status: None,
            failed_execs: Vec::new(),
            cell: None,
            dask_task: None,
            pre_existing: true,
            live_threads: 0,
        });
        let files: HashMap<i32, OpenFile> = existing
            .files
            .iter()
            .map(|(fd, path, cloexec)| (*fd, OpenFile { path: Rc::from(path.as_slice()), cloexec: *cloexec }))
            .collect();
        let fs = Fs { root: existing.root.clone(), cwd: existing.cwd.clone() };
        let task = Task { process, files: Rc::new(RefCell::new(files)), fs: Rc::new(RefCell::new(fs)), mounts };
        for &tid in &existing.threads {
            self.add_existing_thread_of(&task, tid);
        }
    }

    fn add_existing_thread_of(&mut self, task: &Task, tid: Tid) {
        if self.tasks.insert(tid, task.clone()).is_none() {
            self.processes[task.process].live_threads += 1;
        }
    }

    /// What the image process `pid` just exec'd turned out to be; a script's
    /// argv as its interpreter got it, where the exec fact had another view.
    pub fn note_image(&mut self, pid: Pid, interpreters: Vec<Vec<u8>>, loaded_argv: Option<Vec<Vec<u8>>>, ia32: bool) {
        let Some(record) = self.processes.iter_mut().rev().find(|record| record.pid == pid) else { return };
        record.interpreters = interpreters;
        if let Some(argv) = loaded_argv {
            record.argv = argv;
        }
        if ia32 && !record.ia32 {
            self.stats.ia32_processes += 1;
            record.ia32 = true;
        }
    }

    /// The cell hook was installed in process `pid` (its current image).
    pub fn mark_cell_hook(&mut self, pid: Pid) {
        if let Some(record) = self.processes.iter_mut().rev().find(|record| record.pid == pid) {
            record.cell_hook = true;
        }
    }

    /// Every process seen so far, in order of appearance.
    pub fn processes(&self) -> &[ProcessRecord] {
        &self.processes
    }

    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// The notebook cells seen so far, in the order they began.
    pub fn cells(&self) -> &[CellRecord] {
        &self.cells
    }

    /// The Dask task runs seen so far, in the order they began.
    pub fn dask_tasks(&self) -> &[DaskTaskRecord] {
        &self.dask_tasks
    }

    /// The graphs the traced tree's Dask clients submitted, in order.
    pub fn submissions(&self) -> &[SubmissionRecord] {
        &self.submissions
    }

    /// The paths opens and stats found missing (reported by a repeat's programs).
    pub fn missing_lookups(&self) -> &BTreeSet<Vec<u8>> {
        &self.missing_lookups
    }

    /// Whether any followed task is still alive.
    pub fn has_live_tasks(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Applies one event; returns the file operation it amounts to, if any, with
    /// the process that did it and the cell it belongs to.
    pub fn apply(&mut self, event: &Event) -> Option<FileUse> {
        let known = self.tasks.get(&event.tid).cloned();
        let task = match (known, &event.fact) {
            (Some(task), _) => task,
            // A non-leader thread's exec arrives under the process id, whose
            // task (the old leader) exited when the exec began.
            (None, Fact::Exec { requested_by, .. }) if self.tasks.contains_key(requested_by) => {
                self.tasks[requested_by].clone()
            }
            (None, _) => {
                self.stats.unknown_tasks += 1;
                return None;
            }
        };
        let pid = self.processes[task.process].pid;
        let located = match &event.fact {
            Fact::Fork { child, flags } => {
                self.fork(event.tid, &task, *child, *flags);
                None
            }
            Fact::Exit { status } => {
                self.exit(event.tid, &task, *status);
                None
            }
            Fact::Exec { dirfd, path, flags, argv, argv_truncated, requested_by, .. } => {
                let exec = Exec { dirfd: *dirfd, path, flags: *flags, argv, argv_truncated: *argv_truncated };
                self.exec(event.tid, *requested_by, &task, exec)
            }
            Fact::ExecFailed { dirfd, path, flags, errno } => {
                let place = self.place(&task, *dirfd, path, *flags & AT_EMPTY_PATH != 0)?;
                let (Place::Host(path) | Place::Foreign(_, path)) = place;
                self.processes[task.process].failed_execs.push(FailedExec { path, errno: *errno });
                None
            }
            Fact::Open { dirfd, path, flags, fd } => {
                let located = self.locate(&task, *dirfd, path, false)?;
                let open_file = OpenFile { path: Rc::from(located.as_slice()), cloexec: flags & O_CLOEXEC != 0 };
                task.files.borrow_mut().insert(*fd, open_file);
                let place = self.to_place(&task, &located);
                Some(single(place, |path| FileOp::Open { path, mode: open_mode(*flags), create: flags & O_CREAT != 0 }))
            }
            // An empty path is a descriptor's stat (glibc's fstat): no name was
            // looked up (the eBPF programs do not even report it).
            Fact::Metadata { path, .. } if path.is_empty() => None,
            Fact::Metadata { dirfd, path, .. } => {
                let place = self.place(&task, *dirfd, path, false)?;
                Some(single(place, |path| FileOp::Metadata { path }))
            }
            Fact::Chdir { dirfd, path } => {
                let located = self.locate(&task, *dirfd, path, true)?;
                task.fs.borrow_mut().cwd.clone_from(&located);
                Some(single(self.to_place(&task, &located), |path| FileOp::Chdir { path }))
            }
            Fact::Chroot { dirfd, path } => {
                let located = self.locate(&task, *dirfd, path, true)?;
                task.fs.borrow_mut().root.clone_from(&located);
                Some(single(self.to_place(&task, &located), |path| FileOp::Chdir { path }))
            }
            Fact::PivotRoot { new_root, put_old } => {
                let new_root = self.locate(&task, AT_FDCWD, new_root, false)?;
                let put_old = self.locate(&task, AT_FDCWD, put_old, false)?;
                self.pivot_root(&task, &new_root, &put_old);
                None
            }
            Fact::Unshare { flags } => {
                if flags & CLONE_FS != 0 {
                    let fs = task.fs.borrow().clone();
                    self.update_task(event.tid, |task| task.fs = Rc::new(RefCell::new(fs)));
                }
                if flags & CLONE_NEWNS != 0 {
                    let copy = task.mounts.borrow().copied_for(pid);
                    self.update_task(event.tid, |task| task.mounts = Rc::new(RefCell::new(copy)));
                }
                None
            }
            Fact::Setns { fd, nstype } => {
                let mount_namespace = match *nstype {
                    0 => task.files.borrow().get(fd).is_some_and(|file| file.path.ends_with(b"/ns/mnt")),
                    nstype => nstype & CLONE_NEWNS != 0,
                };
                if mount_namespace {
                    let joined = MountTable::joined(pid);
                    self.update_task(event.tid, |task| task.mounts = Rc::new(RefCell::new(joined)));
                }
                None
            }
            Fact::Mount { dirfd, source, target, flags } => {
                let target = self.locate(&task, *dirfd, target, false)?;
                let mut mounts = task.mounts.borrow_mut();
                if flags & MS_BIND != 0 {
                    let source = self.locate(&task, AT_FDCWD, source, false)?;
                    mounts.bind(&source, target, pid);
                } else if flags & MS_MOVE != 0 {
                    let source = self.locate(&task, AT_FDCWD, source, false)?;
                    mounts.unmount(&source);
                    mounts.opaque(target, pid);
                } else if flags & (MS_REMOUNT | MS_PROPAGATION) == 0 {
                    mounts.opaque(target, pid);
                }
                None
            }
            Fact::Umount { dirfd, target } => {
                let target = self.locate(&task, *dirfd, target, false)?;
                task.mounts.borrow_mut().unmount(&target);
                None
            }
            Fact::MoveMount { to_dirfd, to, .. } => {
                let target = self.locate(&task, *to_dirfd, to, true)?;
                task.mounts.borrow_mut().opaque(target, pid);
                None
            }
            Fact::IoUringSetup => {
                self.stats.io_uring_setups += 1;
                None
            }
            Fact::Unfollowed => {
                // Nothing more comes of it: it is over for the audit, with no
                // status of its own.
                if self.tasks.remove(&event.tid).is_some() {
                    let record = &mut self.processes[task.process];
                    record.live_threads = record.live_threads.saturating_sub(1);
                }
                self.stats.unfollowed_privileged += 1;
                None
            }
            Fact::LookupFailed { dirfd, path } => {
                if let Place::Host(path) = self.place(&task, *dirfd, path, false)? {
                    self.missing_lookups.insert(path);
                }
                None
            }
            Fact::Ia32Syscall => {
                let record = &mut self.processes[task.process];
                if !record.ia32 {
                    record.ia32 = true;
                    self.stats.ia32_processes += 1;
                }
                None
            }
            Fact::MemfdCreate { name, fd } => {
                let open_file = OpenFile { path: Rc::from(memfd_path(name).as_slice()), cloexec: false };
                task.files.borrow_mut().insert(*fd, open_file);
                None
            }
            Fact::Rename { old_dirfd, old, new_dirfd, new, flags } => {
                let from = self.locate(&task, *old_dirfd, old, false)?;
                let to = self.locate(&task, *new_dirfd, new, false)?;
                let exchange = flags & RENAME_EXCHANGE != 0;
                if !exchange {
                    self.moved(&from, &to);
                }
                let (from, to) = (self.to_place(&task, &from), self.to_place(&task, &to));
                Some(match (from, to) {
                    (Place::Host(from), Place::Host(to)) => (None, FileOp::Rename { from, to, exchange }),
                    (Place::Foreign(id, from), Place::Foreign(_, to) | Place::Host(to))
                    | (Place::Host(from), Place::Foreign(id, to)) => (Some(id), FileOp::Rename { from, to, exchange }),
                })
            }
            Fact::Remove { dirfd, path, dir } => {
                let place = self.place(&task, *dirfd, path, false)?;
                Some(single(place, |path| FileOp::Remove { path, dir: *dir }))
            }
            Fact::Mkdir { dirfd, path } => {
                Some(single(self.place(&task, *dirfd, path, false)?, |path| FileOp::Mkdir { path }))
            }
            Fact::Link { new_dirfd, new, .. } => {
                Some(single(self.place(&task, *new_dirfd, new, false)?, |path| FileOp::Link { path }))
            }
            Fact::Symlink { dirfd, link, .. } => {
                Some(single(self.place(&task, *dirfd, link, false)?, |path| FileOp::Link { path }))
            }
            Fact::Truncate { dirfd, path } => {
                Some(single(self.place(&task, *dirfd, path, true)?, |path| FileOp::Truncate { path }))
            }
            Fact::Close { first, last } => {
                let mut files = task.files.borrow_mut();
                if last.saturating_sub(*first) as usize >= files.len() {
                    files.retain(|fd, _| !fd_in_range(*fd, *first, *last));
                } else {
                    for fd in *first..=*last {
                        files.remove(&(fd as i32));
                    }
                }
                None
            }
            Fact::Dup { old, new, cloexec } => {
                let mut files = task.files.borrow_mut();
                match files.get(old).cloned() {
                    Some(open_file) => {
                        files.insert(*new, OpenFile { cloexec: *cloexec, ..open_file });
                    }
                    // A copy of something that is not a file we know (a pipe,
                    // a socket): whatever `new` was is gone.
                    None => {
                        files.remove(new);
                    }
                }
                None
            }
            Fact::SetCloexec { first, last, on } => {
                for (fd, open_file) in task.files.borrow_mut().iter_mut() {
                    if fd_in_range(*fd, *first, *last) {
                        open_file.cloexec = *on;
                    }
                }
                None
            }
            Fact::CellMarker(marker) => {
                self.cell_marker(task.process, marker);
                None
            }
            Fact::TaskMarker(marker) => {
                self.task_marker(event.tid, pid, marker);
                None
            }
            Fact::SubmitMarker(SubmitMarker { time_ns, id }) => {
                // The cell is the submitting process's, whichever of its
                // threads sends the graph (a client's event loop, say).
                let cell = self.processes[task.process].cell;
                self.submissions.push(SubmissionRecord { id: id.clone(), pid, time_ns: *time_ns, cell });
                None
            }
        };
        let (namespace, op) = located?;
        let cell = self.processes[task.process].cell;
        if let Some(cell) = cell {
            self.cells[cell].pids.insert(pid);
        }
        let dask_task = self.bound_threads.get(&event.tid).copied().or(self.processes[task.process].dask_task);
        if let Some(dask_task) = dask_task {
            self.dask_tasks[dask_task].pids.insert(pid);
        }
        Some(FileUse { pid, cell, dask_task, namespace, op })
    }

    /// A Dask task begins or ends in thread `tid` of process `pid`: the
    /// thread's work, and that of the threads and processes it starts, belongs
    /// to the task until the end marker (a thread it started and that lives
    /// on, a pool's, is the worker's again then).
    fn task_marker(&mut self, tid: Tid, pid: Pid, marker: &TaskMarker) {
        match marker.phase {
            MarkerPhase::Begin => {
                self.dask_tasks.push(DaskTaskRecord {
                    key: marker.key.clone(),
                    pid,
                    thread: tid,
                    started_ns: marker.time_ns,
                    finished_ns: None,
                    pids: BTreeSet::from([pid]),
                    worker: marker.worker.clone(),
                });
                self.bound_threads.insert(tid, self.dask_tasks.len() - 1);
            }
            MarkerPhase::End => {
                if let Some(ended) = self.bound_threads.remove(&tid) {
                    self.dask_tasks[ended].finished_ns = Some(marker.time_ns);
                    self.bound_threads.retain(|_, dask_task| *dask_task != ended);
                }
            }
        }
    }

    /// Replaces what the task `tid` points at (unsharing its view).
    fn update_task(&mut self, tid: Tid, update: impl FnOnce(&mut Task)) {
        if let Some(task) = self.tasks.get_mut(&tid) {
            update(task);
        }
    }

    /// A cell begins or ends in `process`: its work, and that of the children
    /// it starts, belongs to the cell until the end marker.
    fn cell_marker(&mut self, process: usize, marker: &CellMarker) {
        let record = &mut self.processes[process];
        match marker.phase {
            MarkerPhase::Begin => {
                self.cells.push(CellRecord {
                    execution_count: marker.execution_count,
                    cell_id: marker.cell_id.clone(),
                    code_sha256: marker.code_sha256.clone(),
                    started_ns: marker.time_ns,
                    finished_ns: None,
                    pids: BTreeSet::from([record.pid]),
                    outcome: None,
                });
                record.cell = Some(self.cells.len() - 1);
            }
            MarkerPhase::End => {
                if let Some(cell) = record.cell.take() {
                    self.cells[cell].finished_ns = Some(marker.time_ns);
                    self.cells[cell].outcome.clone_from(&marker.outcome);
                }
            }
        }
    }

    /// Makes `path` absolute in `task`'s namespace coordinates: against its
    /// root when absolute, its cwd for `AT_FDCWD`, else the path `dirfd` is
    /// open on. An empty path names the dirfd itself when `empty_is_dirfd`
    /// (fchdir, ftruncate, `AT_EMPTY_PATH`). A path through `/proc/self/fd/N`
    /// or `/dev/fd/N` is the path descriptor N is open on.
    fn locate(&mut self, task: &Task, dirfd: i32, path: &[u8], empty_is_dirfd: bool) -> Option<Vec<u8>> {
        let fs = task.fs.borrow();
        let located = if path.first() == Some(&b'/') {
            path::within(&fs.root, &fs.root, path)
        } else if dirfd == AT_FDCWD && !path.is_empty() {
            path::within(&fs.root, &fs.cwd, path)
        } else if path.is_empty() && !empty_is_dirfd {
            return None;
        } else {
            let files = task.files.borrow();
            let Some(open_file) = files.get(&dirfd) else {
                self.stats.unresolved_paths += 1;
                return None;
            };
            path::resolve(&open_file.path, path)
        };
        drop(fs);
        Some(self.through_descriptor(task, located))
    }

    /// `/proc/self/fd/N/REST`, `/proc/PID/fd/N/REST` (a followed process),
    /// `/proc/thread-self/fd/N/REST` and `/dev/fd/N/REST` name what descriptor
    /// N is open on: its path, then REST.
    fn through_descriptor(&self, task: &Task, located: Vec<u8>) -> Vec<u8> {
        let Some((owner, fd, rest)) = path::descriptor_path(&located) else { return located };
        let table = match owner {
            None => Some(Rc::clone(&task.files)),
            Some(pid) => self.tasks.get(&pid).map(|owner| Rc::clone(&owner.files)),
        };
        let target = table.and_then(|table| table.borrow().get(&fd).map(|file| file.path.to_vec()));
        match target {
            Some(target) if rest.is_empty() => target,
            Some(target) => path::resolve(&target, rest),
            None => located,
        }
    }

    /// Where the auditor finds `located` (namespace coordinates of `task`).
    fn to_place(&self, task: &Task, located: &[u8]) -> Place {
        // An anonymous memory file is in no file system.
        if located.starts_with(b"/memfd:") {
            return Place::Host(located.to_vec());
        }
        task.mounts.borrow().to_host(located)
    }

    fn place(&mut self, task: &Task, dirfd: i32, path: &[u8], empty_is_dirfd: bool) -> Option<Place> {
        let located = self.locate(task, dirfd, path, empty_is_dirfd)?;
        Some(self.to_place(task, &located))
    }

    /// A name moved from `from` to `to`: the working directories and open
    /// descriptors below it (a renamed directory) follow it.
    fn moved(&mut self, from: &[u8], to: &[u8]) {
        let rebase = |path: &[u8]| -> Option<Vec<u8>> {
            let rest = path.strip_prefix(from)?;
            (rest.first() == Some(&b'/')).then(|| [to, rest].concat()).or_else(|| rest.is_empty().then(|| to.to_vec()))
        };
        for task in self.tasks.values() {
            let mut fs = task.fs.borrow_mut();
            if let Some(cwd) = rebase(&fs.cwd) {
                fs.cwd = cwd;
            }
            for open_file in task.files.borrow_mut().values_mut() {
                if let Some(path) = rebase(&open_file.path) {
                    open_file.path = Rc::from(path.as_slice());
                }
            }
        }
    }

    fn pivot_root(&mut self, task: &Task, new_root: &[u8], put_old: &[u8]) {
        task.mounts.borrow_mut().pivot_root(new_root, put_old);
        let mut fs = task.fs.borrow_mut();
        let rebase = |path: &[u8]| {
            let rest = path.strip_prefix(new_root).filter(|rest| rest.is_empty() || rest.starts_with(b"/"))?;
            Some(path::resolve(b"/", rest.strip_prefix(b"/").unwrap_or(rest)))
        };
        fs.cwd = rebase(&fs.cwd).unwrap_or_else(|| b"/".to_vec());
        fs.root = b"/".to_vec();
    }

    fn fork(&mut self, parent_tid: Tid, parent: &Task, child: Tid, flags: u64) {
        let bound = self.bound_threads.get(&parent_tid).copied();
        let files = if flags & CLONE_FILES != 0 {
            Rc::clone(&parent.files)
        } else {
            Rc::new(RefCell::new(parent.files.borrow().clone()))
        };
        let fs = if flags & CLONE_FS != 0 {
            Rc::clone(&parent.fs)
        } else {
            Rc::new(RefCell::new(parent.fs.borrow().clone()))
        };
        let process = if flags & CLONE_THREAD != 0 {
            self.processes[parent.process].live_threads += 1;
            if let Some(dask_task) = bound {
                self.bound_threads.insert(child, dask_task);
            }
            parent.process
        } else {
            let from = &self.processes[parent.process];
            let record = ProcessRecord {
                pid: child,
                ppid: Some(from.pid),
                exe: from.exe.clone(),
                argv: from.argv.clone(),
                argv_truncated: from.argv_truncated,
                interpreters: from.interpreters.clone(),
                ia32: from.ia32,
                cell_hook: false,
                cwd: from.cwd.clone(),
                namespace: from.namespace,
                status: None,
                failed_execs: Vec::new(),
                cell: from.cell,
                dask_task: bound.or(from.dask_task),
                pre_existing: false,
                live_threads: 1,
            };
            if let Some(cell) = from.cell {
                self.cells[cell].pids.insert(child);
            }
            if let Some(dask_task) = bound.or(from.dask_task) {
                self.dask_tasks[dask_task].pids.insert(child);
            }
            self.processes.push(record);
            self.processes.len() - 1
        };
        let mounts = match flags & CLONE_NEWNS {
            0 => Rc::clone(&parent.mounts),
            _ => Rc::new(RefCell::new(parent.mounts.borrow().copied_for(child))),
        };
        self.tasks.insert(child, Task { process, files, fs, mounts });
    }

    /// A task ended; the process's status is its last task's.
    fn exit(&mut self, tid: Tid, task: &Task, status: WaitStatus) {
        self.tasks.remove(&tid);
        self.bound_threads.remove(&tid);
        let record = &mut self.processes[task.process];
        record.live_threads = record.live_threads.saturating_sub(1);
        if record.live_threads == 0 {
            record.status = Some(status);
        }
    }

    /// The process of `task` now runs a new image: the exec'ing thread
    /// (`requested_by`) is its only task, under the process id `tid`, with a
    /// private copy of the descriptors that were not close-on-exec.
    fn exec(&mut self, tid: Tid, requested_by: Tid, task: &Task, exec: Exec) -> Option<(Option<NamespaceId>, FileOp)> {
        let place = self.place(task, exec.dirfd, exec.path, exec.flags & AT_EMPTY_PATH != 0 || exec.path.is_empty());
        let process = task.process;
        self.tasks.retain(|other, t| t.process != process || *other == requested_by || *other == tid);
        let mut survivor =
            self.tasks.remove(&requested_by).or_else(|| self.tasks.remove(&tid)).unwrap_or_else(|| task.clone());
        let kept: HashMap<i32, OpenFile> = survivor
            .files
            .borrow()
            .iter()
            .filter(|(_, open_file)| !open_file.cloexec)
            .map(|(fd, open_file)| (*fd, open_file.clone()))
            .collect();
        survivor.files = Rc::new(RefCell::new(kept));
        let cwd = survivor.fs.borrow().cwd.clone();
        let cwd_place = self.to_place(&survivor, &cwd);
        self.tasks.insert(tid, survivor);
        if exec.argv_truncated {
            self.stats.truncated_argvs += 1;
        }
        let record = &mut self.processes[process];
        record.live_threads = 1;
        record.status = None;
        record.argv = exec.argv.to_vec();
        record.argv_truncated = exec.argv_truncated;
        record.interpreters.clear();
        record.ia32 = false;
        let (Place::Host(cwd) | Place::Foreign(_, cwd)) = cwd_place;
        record.cwd = cwd;
        match place {
            Some(Place::Host(path)) => {
                record.exe = Some(path.clone());
                record.namespace = None;
                Some((None, FileOp::Exec { path }))
            }
            Some(Place::Foreign(id, path)) => {
                record.exe = Some(path.clone());
                record.namespace = Some(id);
                Some((Some(id), FileOp::Exec { path }))
            }
            None => {
                record.exe = None;
                None
            }
        }
    }
}

/// A successful exec, as the tracker needs it.
struct Exec<'a> {
    dirfd: i32,
    path: &'a [u8],
    flags: u64,
    argv: &'a [Vec<u8>],
    argv_truncated: bool,
}

/// One operation on a path, where the auditor finds it.
fn single(place: Place, op: impl FnOnce(Vec<u8>) -> FileOp) -> (Option<NamespaceId>, FileOp) {
    match place {
        Place::Host(path) => (None, op(path)),
        Place::Foreign(id, path) => (Some(id), op(path)),
    }
}

fn fd_in_range(fd: i32, first: u32, last: u32) -> bool {
    u32::try_from(fd).is_ok_and(|fd| fd >= first && fd <= last)
}

fn open_mode(flags: u64) -> OpenMode {
    if flags & O_PATH != 0 {
        return OpenMode::PathOnly;
    }
    match flags & O_ACCMODE {
        O_WRONLY => OpenMode::Write,
        O_RDWR => OpenMode::ReadWrite,
        _ if flags & O_TRUNC != 0 => OpenMode::Write,
        _ => OpenMode::Read,
    }
}

/// Processes sorted by pid, then order of appearance: the manifest's order.
pub fn sorted_processes(processes: &[ProcessRecord]) -> Vec<&ProcessRecord> {
    let mut by_pid: BTreeMap<Pid, Vec<&ProcessRecord>> = BTreeMap::new();
    for record in processes {
        by_pid.entry(record.pid).or_default().push(record);
    }
    by_pid.into_values().flatten().collect()
}

#[cfg(test)]
mod tests;
