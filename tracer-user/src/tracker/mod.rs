//! The process tree, its descriptor and working-directory tables, and path
//! resolution: turns raw [`Event`]s into [`FileOp`]s on absolute paths and a
//! record of every process.
//!
//! Model (see docs/path-resolution.md):
//! - a task (thread) belongs to a process (thread group) and points at an fd
//!   table and a working directory, each shared the way `clone` flags say
//!   (`CLONE_FILES`, `CLONE_FS`; threads share both);
//! - exec gives the process a private copy of its fd table without the
//!   close-on-exec descriptors, and makes the exec'ing thread the only one;
//! - every path is made absolute against the cwd or the dirfd's path, and folded
//!   lexically.

pub mod path;

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap},
    rc::Rc,
};

use crate::event::{
    abi::{
        AT_EMPTY_PATH, CLONE_FILES, CLONE_FS, CLONE_THREAD, O_ACCMODE, O_CLOEXEC, O_PATH, O_RDWR, O_TRUNC, O_WRONLY,
        RENAME_EXCHANGE,
    },
    CellMarker, CellPhase, Event, ExistingProcess, Fact, Tid, WaitStatus, AT_FDCWD,
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
    },
    Exec {
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
    /// The working directory became this path.
    Chdir {
        path: Vec<u8>,
    },
}

/// A file operation, who did it, and during which notebook cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileUse {
    pub pid: Pid,
    pub cell: Option<usize>,
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
    /// The working directory when the image started (exec, or fork if none).
    pub cwd: Vec<u8>,
    pub status: Option<WaitStatus>,
    pub failed_execs: Vec<FailedExec>,
    /// The notebook cell its work belongs to: for the process that emits cell
    /// markers, the cell running now; for others, the cell they were born in.
    pub cell: Option<usize>,
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
    path: Rc<[u8]>,
    cloexec: bool,
}

type FdTable = Rc<RefCell<HashMap<i32, OpenFile>>>;
type WorkingDir = Rc<RefCell<Vec<u8>>>;

#[derive(Clone, Debug)]
struct Task {
    /// Index into `Tracker::processes`.
    process: usize,
    files: FdTable,
    cwd: WorkingDir,
}

/// An exec asked for and not yet answered.
#[derive(Clone, Debug)]
struct ExecRequest {
    path: Option<Vec<u8>>,
    argv: Vec<Vec<u8>>,
    cwd: Vec<u8>,
}

/// Counters of what could not be modelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Events from a task the tracker never saw created.
    pub unknown_tasks: u64,
    /// Paths relative to a descriptor the tracker does not know.
    pub unresolved_paths: u64,
}

/// Follows tasks and processes through events; see the module documentation.
#[derive(Debug, Default)]
pub struct Tracker {
    tasks: HashMap<Tid, Task>,
    /// Every process seen, in order of appearance (pids may be reused).
    processes: Vec<ProcessRecord>,
    pending_execs: HashMap<Tid, ExecRequest>,
    cells: Vec<CellRecord>,
    stats: TrackerStats,
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
            cwd: cwd.clone(),
            status: None,
            failed_execs: Vec::new(),
            cell: None,
            pre_existing: false,
            live_threads: 1,
        });
        let task = Task { process, files: Rc::default(), cwd: Rc::new(RefCell::new(cwd)) };
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
        let process = self.processes.len();
        self.processes.push(ProcessRecord {
            pid: existing.pid,
            ppid: Some(existing.ppid),
            exe: existing.exe.clone(),
            argv: existing.argv.clone(),
            cwd: existing.cwd.clone(),
            status: None,
            failed_execs: Vec::new(),
            cell: None,
            pre_existing: true,
            live_threads: 0,
        });
        let files: HashMap<i32, OpenFile> = existing
            .files
            .iter()
            .map(|(fd, path, cloexec)| (*fd, OpenFile { path: Rc::from(path.as_slice()), cloexec: *cloexec }))
            .collect();
        let task =
            Task { process, files: Rc::new(RefCell::new(files)), cwd: Rc::new(RefCell::new(existing.cwd.clone())) };
        for &tid in &existing.threads {
            self.add_existing_thread_of(&task, tid);
        }
    }

    fn add_existing_thread_of(&mut self, task: &Task, tid: Tid) {
        if self.tasks.insert(tid, task.clone()).is_none() {
            self.processes[task.process].live_threads += 1;
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

    /// Whether any followed task is still alive.
    pub fn has_live_tasks(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Applies one event; returns the file operation it amounts to, if any, with
    /// the process that did it and the cell it belongs to.
    pub fn apply(&mut self, event: &Event) -> Option<FileUse> {
        let Some(task) = self.tasks.get(&event.tid).cloned() else {
            self.stats.unknown_tasks += 1;
            return None;
        };
        let pid = self.processes[task.process].pid;
        let op = match &event.fact {
            Fact::Fork { child, flags } => {
                self.fork(&task, *child, *flags);
                None
            }
            Fact::Exit { status } => {
                self.exit(event.tid, &task, *status);
                None
            }
            Fact::ExecRequest { dirfd, path, argv, flags } => {
                let path = self.resolve_at(&task, *dirfd, path, *flags & AT_EMPTY_PATH != 0);
                let request = ExecRequest { path, argv: argv.clone(), cwd: task.cwd.borrow().clone() };
                self.pending_execs.insert(event.tid, request);
                None
            }
            Fact::ExecResult { ret } => self.exec_result(event.tid, &task, *ret),
            Fact::Open { dirfd, path, flags, fd } => {
                let path = self.resolve_at(&task, *dirfd, path, false)?;
                let open_file = OpenFile { path: Rc::from(path.as_slice()), cloexec: flags & O_CLOEXEC != 0 };
                task.files.borrow_mut().insert(*fd, open_file);
                Some(FileOp::Open { path, mode: open_mode(*flags) })
            }
            Fact::Chdir { dirfd, path } => {
                let path = self.resolve_at(&task, *dirfd, path, true)?;
                task.cwd.borrow_mut().clone_from(&path);
                Some(FileOp::Chdir { path })
            }
            Fact::Rename { old_dirfd, old, new_dirfd, new, flags } => {
                let from = self.resolve_at(&task, *old_dirfd, old, false)?;
                let to = self.resolve_at(&task, *new_dirfd, new, false)?;
                Some(FileOp::Rename { from, to, exchange: flags & RENAME_EXCHANGE != 0 })
            }
            Fact::Remove { dirfd, path, dir } => {
                let path = self.resolve_at(&task, *dirfd, path, false)?;
                Some(FileOp::Remove { path, dir: *dir })
            }
            Fact::Mkdir { dirfd, path } => Some(FileOp::Mkdir { path: self.resolve_at(&task, *dirfd, path, false)? }),
            Fact::Link { new_dirfd, new, .. } => {
                Some(FileOp::Link { path: self.resolve_at(&task, *new_dirfd, new, false)? })
            }
            Fact::Symlink { dirfd, link, .. } => {
                Some(FileOp::Link { path: self.resolve_at(&task, *dirfd, link, false)? })
            }
            Fact::Truncate { dirfd, path } => {
                Some(FileOp::Truncate { path: self.resolve_at(&task, *dirfd, path, true)? })
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
        };
        let cell = self.processes[task.process].cell;
        let op = op?;
        if let Some(cell) = cell {
            self.cells[cell].pids.insert(pid);
        }
        Some(FileUse { pid, cell, op })
    }

    /// A cell begins or ends in `process`: its work, and that of the children
    /// it starts, belongs to the cell until the end marker.
    fn cell_marker(&mut self, process: usize, marker: &CellMarker) {
        let record = &mut self.processes[process];
        match marker.phase {
            CellPhase::Begin => {
                self.cells.push(CellRecord {
                    execution_count: marker.execution_count,
                    cell_id: marker.cell_id.clone(),
                    code_sha256: marker.code_sha256.clone(),
                    started_ns: marker.time_ns,
                    finished_ns: None,
                    pids: BTreeSet::from([record.pid]),
                });
                record.cell = Some(self.cells.len() - 1);
            }
            CellPhase::End => {
                if let Some(cell) = record.cell.take() {
                    self.cells[cell].finished_ns = Some(marker.time_ns);
                }
            }
        }
    }

    /// Makes `path` absolute for `task`: against its cwd for `AT_FDCWD`, else
    /// against the path `dirfd` is open on. An empty path names the dirfd itself
    /// when `empty_is_dirfd` (fchdir, ftruncate, `AT_EMPTY_PATH`).
    fn resolve_at(&mut self, task: &Task, dirfd: i32, path: &[u8], empty_is_dirfd: bool) -> Option<Vec<u8>> {
        if path.first() == Some(&b'/') {
            return Some(path::normalize(path));
        }
        if dirfd == AT_FDCWD && !path.is_empty() {
            return Some(path::resolve(&task.cwd.borrow(), path));
        }
        if path.is_empty() && !empty_is_dirfd {
            return None;
        }
        let files = task.files.borrow();
        let Some(open_file) = files.get(&dirfd) else {
            self.stats.unresolved_paths += 1;
            return None;
        };
        Some(path::resolve(&open_file.path, path))
    }

    fn fork(&mut self, parent: &Task, child: Tid, flags: u64) {
        let files = if flags & CLONE_FILES != 0 {
            Rc::clone(&parent.files)
        } else {
            Rc::new(RefCell::new(parent.files.borrow().clone()))
        };
        let cwd = if flags & CLONE_FS != 0 {
            Rc::clone(&parent.cwd)
        } else {
            Rc::new(RefCell::new(parent.cwd.borrow().clone()))
        };
        let process = if flags & CLONE_THREAD != 0 {
            self.processes[parent.process].live_threads += 1;
            parent.process
        } else {
            let from = &self.processes[parent.process];
            let record = ProcessRecord {
                pid: child,
                ppid: Some(from.pid),
                exe: from.exe.clone(),
                argv: from.argv.clone(),
                cwd: cwd.borrow().clone(),
                status: None,
                failed_execs: Vec::new(),
                cell: from.cell,
                pre_existing: false,
                live_threads: 1,
            };
            if let Some(cell) = from.cell {
                self.cells[cell].pids.insert(child);
            }
            self.processes.push(record);
            self.processes.len() - 1
        };
        self.tasks.insert(child, Task { process, files, cwd });
    }

    fn exit(&mut self, tid: Tid, task: &Task, status: WaitStatus) {
        self.tasks.remove(&tid);
        self.pending_execs.remove(&tid);
        let record = &mut self.processes[task.process];
        record.live_threads = record.live_threads.saturating_sub(1);
        record.status = Some(status);
    }

    fn exec_result(&mut self, tid: Tid, task: &Task, ret: i64) -> Option<FileOp> {
        // A non-leader thread that execs comes back under the process id, its
        // request still filed under its old task id.
        let request_tid = if self.pending_execs.contains_key(&tid) {
            tid
        } else {
            let process = task.process;
            self.pending_execs
                .keys()
                .copied()
                .find(|other| self.tasks.get(other).is_some_and(|t| t.process == process))?
        };
        let request = self.pending_execs.remove(&request_tid)?;
        let path = request.path?;
        if ret < 0 {
            let errno = i32::try_from(-ret).unwrap_or(i32::MAX);
            self.processes[task.process].failed_execs.push(FailedExec { path, errno });
            return None;
        }
        // The exec'ing thread is now the only one, under the process id.
        let process = task.process;
        self.tasks.retain(|other, t| t.process != process || *other == request_tid);
        if let Some(mut survivor) = self.tasks.remove(&request_tid) {
            let kept: HashMap<i32, OpenFile> = survivor
                .files
                .borrow()
                .iter()
                .filter(|(_, open_file)| !open_file.cloexec)
                .map(|(fd, open_file)| (*fd, open_file.clone()))
                .collect();
            survivor.files = Rc::new(RefCell::new(kept));
            self.tasks.insert(tid, survivor);
        }
        let record = &mut self.processes[process];
        record.live_threads = 1;
        record.exe = Some(path.clone());
        record.argv = request.argv;
        record.cwd = request.cwd;
        Some(FileOp::Exec { path })
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
mod tests {
    use super::*;
    use crate::event::abi::{O_CREAT, O_DIRECTORY};

    fn ev(tid: Tid, fact: Fact) -> Event {
        Event { tid, fact }
    }

    fn open(tid: Tid, dirfd: i32, path: &str, flags: u64, fd: i32) -> Event {
        ev(tid, Fact::Open { dirfd, path: path.into(), flags, fd })
    }

    fn used(pid: Pid, op: FileOp) -> Option<FileUse> {
        Some(FileUse { pid, cell: None, op })
    }

    fn tracker() -> Tracker {
        let mut tracker = Tracker::new();
        tracker.add_root(100, Some(1), b"/home/u".to_vec());
        tracker
    }

    #[test]
    fn relative_and_dirfd_relative_opens_resolve() {
        let mut t = tracker();
        assert_eq!(
            t.apply(&open(100, AT_FDCWD, "data/../in.txt", 0, 3)),
            used(100, FileOp::Open { path: b"/home/u/in.txt".to_vec(), mode: OpenMode::Read })
        );
        t.apply(&open(100, AT_FDCWD, "/srv/d", O_DIRECTORY, 4));
        assert_eq!(
            t.apply(&open(100, 4, "x.csv", O_WRONLY | O_CREAT, 5)),
            used(100, FileOp::Open { path: b"/srv/d/x.csv".to_vec(), mode: OpenMode::Write })
        );
        // After close, the descriptor no longer resolves.
        t.apply(&ev(100, Fact::Close { first: 4, last: 4 }));
        assert_eq!(t.apply(&open(100, 4, "y", 0, 6)), None);
        assert_eq!(t.stats().unresolved_paths, 1);
    }

    #[test]
    fn cwd_follows_chdir_fchdir_and_is_inherited() {
        let mut t = tracker();
        t.apply(&ev(100, Fact::Chdir { dirfd: AT_FDCWD, path: b"sub".to_vec() }));
        t.apply(&open(100, AT_FDCWD, "/opt", O_DIRECTORY, 3));
        t.apply(&ev(100, Fact::Fork { child: 101, flags: 17 }));
        // The child has its own copy of cwd and descriptors.
        t.apply(&ev(101, Fact::Chdir { dirfd: 3, path: Vec::new() }));
        assert_eq!(
            t.apply(&open(101, AT_FDCWD, "a", 0, 4)),
            used(101, FileOp::Open { path: b"/opt/a".to_vec(), mode: OpenMode::Read })
        );
        assert_eq!(
            t.apply(&open(100, AT_FDCWD, "a", 0, 4)),
            used(100, FileOp::Open { path: b"/home/u/sub/a".to_vec(), mode: OpenMode::Read })
        );
    }

    #[test]
    fn threads_share_descriptors_and_cwd() {
        let mut t = tracker();
        t.apply(&ev(100, Fact::Fork { child: 102, flags: CLONE_THREAD | CLONE_FILES | CLONE_FS }));
        t.apply(&ev(102, Fact::Chdir { dirfd: AT_FDCWD, path: b"/tmp".to_vec() }));
        t.apply(&open(102, AT_FDCWD, "/srv", O_DIRECTORY, 7));
        assert_eq!(
            t.apply(&open(100, 7, "f", 0, 8)),
            used(100, FileOp::Open { path: b"/srv/f".to_vec(), mode: OpenMode::Read })
        );
        assert_eq!(t.processes().len(), 1);
        t.apply(&ev(102, Fact::Exit { status: WaitStatus::exited(0) }));
        assert!(t.processes()[0].is_running());
    }

    #[test]
    fn exec_drops_cloexec_descriptors_and_records_the_image() {
        let mut t = tracker();
        t.apply(&open(100, AT_FDCWD, "/keep", O_DIRECTORY, 3));
        t.apply(&open(100, AT_FDCWD, "/drop", O_DIRECTORY | O_CLOEXEC, 4));
        t.apply(&ev(
            100,
            Fact::ExecRequest {
                dirfd: AT_FDCWD,
                path: b"./tool".to_vec(),
                argv: vec![b"tool".to_vec(), b"-x".to_vec()],
                flags: 0,
            },
        ));
        assert_eq!(
            t.apply(&ev(100, Fact::ExecResult { ret: 0 })),
            used(100, FileOp::Exec { path: b"/home/u/tool".to_vec() })
        );
        assert!(t.apply(&open(100, 3, "a", 0, 5)).is_some());
        assert!(t.apply(&open(100, 4, "a", 0, 6)).is_none());
        let record = &t.processes()[0];
        assert_eq!(record.exe.as_deref(), Some(&b"/home/u/tool"[..]));
        assert_eq!(record.argv, vec![b"tool".to_vec(), b"-x".to_vec()]);
    }

    #[test]
    fn failed_exec_is_recorded_and_image_kept() {
        let mut t = tracker();
        t.apply(&ev(100, Fact::ExecRequest { dirfd: AT_FDCWD, path: b"/nope".to_vec(), argv: vec![], flags: 0 }));
        assert_eq!(t.apply(&ev(100, Fact::ExecResult { ret: -2 })), None);
        assert_eq!(t.processes()[0].failed_execs, vec![FailedExec { path: b"/nope".to_vec(), errno: 2 }]);
        assert_eq!(t.processes()[0].exe, None);
    }

    #[test]
    fn dup_and_fcntl_follow_descriptors() {
        let mut t = tracker();
        t.apply(&open(100, AT_FDCWD, "/d", O_DIRECTORY, 3));
        t.apply(&ev(100, Fact::Dup { old: 3, new: 10, cloexec: true }));
        t.apply(&ev(100, Fact::SetCloexec { first: 10, last: 10, on: false }));
        t.apply(&ev(100, Fact::Close { first: 3, last: u32::MAX }));
        t.apply(&ev(100, Fact::ExecRequest { dirfd: AT_FDCWD, path: b"/bin/x".to_vec(), argv: vec![], flags: 0 }));
        t.apply(&ev(100, Fact::ExecResult { ret: 0 }));
        assert!(t.apply(&open(100, 10, "f", 0, 3)).is_none(), "closed by close(3..)");
    }

    #[test]
    fn process_tree_and_exit_status() {
        let mut t = tracker();
        t.apply(&ev(100, Fact::Fork { child: 200, flags: 17 }));
        t.apply(&ev(200, Fact::Exit { status: WaitStatus::killed(9, false) }));
        t.apply(&ev(100, Fact::Exit { status: WaitStatus::exited(3) }));
        let child = &t.processes()[1];
        assert_eq!((child.pid, child.ppid), (200, Some(100)));
        assert_eq!(child.status.and_then(WaitStatus::signal), Some(9));
        assert_eq!(t.processes()[0].status.and_then(WaitStatus::exit_code), Some(3));
        assert!(!t.has_live_tasks());
    }

    fn marker(phase: CellPhase, count: u64, time_ns: u64) -> Fact {
        Fact::CellMarker(CellMarker {
            phase,
            execution_count: count,
            cell_id: Some(format!("cell-{count}")),
            code_sha256: "0".repeat(64),
            time_ns,
        })
    }

    #[test]
    fn work_belongs_to_the_cell_that_started_it() {
        let mut t = tracker();
        t.apply(&open(100, AT_FDCWD, "before", 0, 3));
        t.apply(&ev(100, marker(CellPhase::Begin, 1, 10)));
        assert_eq!(t.apply(&open(100, AT_FDCWD, "a", 0, 4)).and_then(|u| u.cell), Some(0));
        // A thread of the kernel, and a child started in the cell.
        t.apply(&ev(100, Fact::Fork { child: 101, flags: CLONE_THREAD | CLONE_FILES | CLONE_FS }));
        assert_eq!(t.apply(&open(101, AT_FDCWD, "b", 0, 5)).and_then(|u| u.cell), Some(0));
        t.apply(&ev(100, Fact::Fork { child: 200, flags: 17 }));
        t.apply(&ev(100, marker(CellPhase::End, 1, 20)));
        assert_eq!(t.apply(&open(100, AT_FDCWD, "between", 0, 6)).and_then(|u| u.cell), None);
        t.apply(&ev(100, marker(CellPhase::Begin, 2, 30)));
        // The child still works for the cell it was born in.
        assert_eq!(t.apply(&open(200, AT_FDCWD, "late", 0, 3)).and_then(|u| u.cell), Some(0));
        assert_eq!(t.apply(&open(100, AT_FDCWD, "c", 0, 7)).and_then(|u| u.cell), Some(1));
        let cells = t.cells();
        assert_eq!(cells.len(), 2);
        assert_eq!((cells[0].started_ns, cells[0].finished_ns), (10, Some(20)));
        assert_eq!(cells[0].pids, BTreeSet::from([100, 200]));
        assert_eq!((cells[1].execution_count, cells[1].finished_ns), (2, None));
    }
}
