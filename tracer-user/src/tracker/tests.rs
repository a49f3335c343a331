//! The tracker on hand-made events: forks, execs, threads, descriptors,
//! working directories, namespaces and renames.

use super::*;
use crate::event::{
    abi::{O_CREAT, O_DIRECTORY},
    ArgvView,
};

fn ev(tid: Tid, fact: Fact) -> Event {
    Event { tid, fact }
}

fn open(tid: Tid, dirfd: i32, path: &str, flags: u64, fd: i32) -> Event {
    ev(tid, Fact::Open { dirfd, path: path.into(), flags, fd })
}

fn used(pid: Pid, op: FileOp) -> Option<FileUse> {
    Some(FileUse { pid, cell: None, dask_task: None, namespace: None, op })
}

fn exec(path: &str, argv: &[&str]) -> Fact {
    exec_by(AT_FDCWD, path, argv, 100)
}

fn exec_by(dirfd: i32, path: &str, argv: &[&str], requested_by: Tid) -> Fact {
    Fact::Exec {
        dirfd,
        path: path.into(),
        flags: 0,
        argv: argv.iter().map(|arg| arg.as_bytes().to_vec()).collect(),
        argv_truncated: false,
        argv_view: ArgvView::Loaded,
        requested_by,
    }
}

fn read(path: &str) -> FileOp {
    FileOp::Open { path: path.into(), mode: OpenMode::Read, create: false }
}

fn tracker() -> Tracker {
    let mut tracker = Tracker::new();
    tracker.add_root(100, Some(1), b"/home/u".to_vec());
    tracker
}

#[test]
fn relative_and_dirfd_relative_opens_resolve() {
    let mut t = tracker();
    assert_eq!(t.apply(&open(100, AT_FDCWD, "data/../in.txt", 0, 3)), used(100, read("/home/u/in.txt")));
    t.apply(&open(100, AT_FDCWD, "/srv/d", O_DIRECTORY, 4));
    assert_eq!(
        t.apply(&open(100, 4, "x.csv", O_WRONLY | O_CREAT, 5)),
        used(100, FileOp::Open { path: b"/srv/d/x.csv".to_vec(), mode: OpenMode::Write, create: true })
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
    assert_eq!(t.apply(&open(101, AT_FDCWD, "a", 0, 4)), used(101, read("/opt/a")));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "a", 0, 4)), used(100, read("/home/u/sub/a")));
}

#[test]
fn threads_share_descriptors_and_cwd() {
    let mut t = tracker();
    t.apply(&ev(100, Fact::Fork { child: 102, flags: CLONE_THREAD | CLONE_FILES | CLONE_FS }));
    t.apply(&ev(102, Fact::Chdir { dirfd: AT_FDCWD, path: b"/tmp".to_vec() }));
    t.apply(&open(102, AT_FDCWD, "/srv", O_DIRECTORY, 7));
    assert_eq!(t.apply(&open(100, 7, "f", 0, 8)), used(100, read("/srv/f")));
    assert_eq!(t.processes().len(), 1);
    t.apply(&ev(102, Fact::Exit { status: WaitStatus::exited(0) }));
    assert!(t.processes()[0].is_running());
}

#[test]
fn exec_drops_cloexec_descriptors_and_records_the_image() {
    let mut t = tracker();
    t.apply(&open(100, AT_FDCWD, "/keep", O_DIRECTORY, 3));
    t.apply(&open(100, AT_FDCWD, "/drop", O_DIRECTORY | O_CLOEXEC, 4));
    assert_eq!(
        t.apply(&ev(100, exec("./tool", &["tool", "-x"]))),
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
    let failed = Fact::ExecFailed { dirfd: AT_FDCWD, path: b"/nope".to_vec(), flags: 0, errno: 2 };
    assert_eq!(t.apply(&ev(100, failed)), None);
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
    t.apply(&ev(100, exec("/bin/x", &[])));
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

fn marker(phase: MarkerPhase, count: u64, time_ns: u64) -> Fact {
    Fact::CellMarker(CellMarker {
        phase,
        execution_count: count,
        cell_id: Some(format!("cell-{count}")),
        code_sha256: "0".repeat(64),
        time_ns,
        outcome: None,
    })
}

#[test]
fn work_belongs_to_the_cell_that_started_it() {
    let mut t = tracker();
    t.apply(&open(100, AT_FDCWD, "before", 0, 3));
    t.apply(&ev(100, marker(MarkerPhase::Begin, 1, 10)));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "a", 0, 4)).and_then(|u| u.cell), Some(0));
    // A thread of the kernel, and a child started in the cell.
    t.apply(&ev(100, Fact::Fork { child: 101, flags: CLONE_THREAD | CLONE_FILES | CLONE_FS }));
    assert_eq!(t.apply(&open(101, AT_FDCWD, "b", 0, 5)).and_then(|u| u.cell), Some(0));
    t.apply(&ev(100, Fact::Fork { child: 200, flags: 17 }));
    t.apply(&ev(100, marker(MarkerPhase::End, 1, 20)));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "between", 0, 6)).and_then(|u| u.cell), None);
    t.apply(&ev(100, marker(MarkerPhase::Begin, 2, 30)));
    // The child still works for the cell it was born in.
    assert_eq!(t.apply(&open(200, AT_FDCWD, "late", 0, 3)).and_then(|u| u.cell), Some(0));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "c", 0, 7)).and_then(|u| u.cell), Some(1));
    let cells = t.cells();
    assert_eq!(cells.len(), 2);
    assert_eq!((cells[0].started_ns, cells[0].finished_ns), (10, Some(20)));
    assert_eq!(cells[0].pids, BTreeSet::from([100, 200]));
    assert_eq!((cells[1].execution_count, cells[1].finished_ns), (2, None));
}

#[test]
fn a_threads_exec_continues_under_the_process_id() {
    let mut t = tracker();
    t.apply(&ev(100, Fact::Fork { child: 101, flags: CLONE_THREAD | CLONE_FILES | CLONE_FS }));
    // The leader goes first (de_thread), then the thread's exec arrives
    // under the process id.
    t.apply(&ev(100, Fact::Exit { status: WaitStatus::exited(0) }));
    let exec = exec_by(AT_FDCWD, "/bin/echo", &["echo", "hi"], 101);
    assert_eq!(t.apply(&ev(100, exec)), used(100, FileOp::Exec { path: b"/bin/echo".to_vec() }));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "x", 0, 3)), used(100, read("/home/u/x")));
    assert_eq!(t.stats().unknown_tasks, 0);
    let record = &t.processes()[0];
    assert!(record.is_running() && record.status.is_none(), "the process lives on: {record:?}");
    t.apply(&ev(100, Fact::Exit { status: WaitStatus::exited(4) }));
    assert_eq!(t.processes()[0].status.and_then(WaitStatus::exit_code), Some(4));
}

#[test]
fn a_thread_that_exits_does_not_end_its_process() {
    let mut t = tracker();
    t.apply(&ev(100, Fact::Fork { child: 101, flags: CLONE_THREAD | CLONE_FILES | CLONE_FS }));
    t.apply(&ev(101, Fact::Exit { status: WaitStatus::exited(0) }));
    assert_eq!(t.processes()[0].status, None);
}

#[test]
fn descriptors_and_memory_files_through_proc_and_dev_fd() {
    let mut t = tracker();
    t.apply(&ev(100, Fact::MemfdCreate { name: b"payload".to_vec(), fd: 3 }));
    let exec = exec_by(3, "", &["payload"], 100);
    assert_eq!(t.apply(&ev(100, exec)), used(100, FileOp::Exec { path: b"/memfd:payload (deleted)".to_vec() }));
    t.apply(&open(100, AT_FDCWD, "/srv/data", O_DIRECTORY, 5));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "/proc/self/fd/5/x.csv", 0, 6)), used(100, read("/srv/data/x.csv")));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "/dev/fd/5", 0, 7)), used(100, read("/srv/data")));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "/proc/100/fd/5/y", 0, 8)), used(100, read("/srv/data/y")));
}

#[test]
fn a_renamed_directory_moves_working_directories_and_descriptors() {
    let mut t = tracker();
    t.apply(&ev(100, Fact::Chdir { dirfd: AT_FDCWD, path: b"run".to_vec() }));
    t.apply(&open(100, AT_FDCWD, "/home/u/run/sub", O_DIRECTORY, 3));
    let rename = Fact::Rename {
        old_dirfd: AT_FDCWD,
        old: b"/home/u/run".to_vec(),
        new_dirfd: AT_FDCWD,
        new: b"/home/u/done".to_vec(),
        flags: 0,
    };
    t.apply(&ev(100, rename));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "x", 0, 4)), used(100, read("/home/u/done/x")));
    assert_eq!(t.apply(&open(100, 3, "y", 0, 5)), used(100, read("/home/u/done/sub/y")));
}

#[test]
fn chroot_and_bind_mounts_in_a_new_namespace_map_to_the_host() {
    let mut t = tracker();
    t.apply(&ev(100, Fact::Fork { child: 200, flags: CLONE_NEWNS | 17 }));
    let bind =
        Fact::Mount { dirfd: AT_FDCWD, source: b"/tmp/real".to_vec(), target: b"/data".to_vec(), flags: MS_BIND };
    t.apply(&ev(200, bind));
    assert_eq!(t.apply(&open(200, AT_FDCWD, "/data/in.csv", 0, 3)), used(200, read("/tmp/real/in.csv")));
    // The parent's namespace is untouched.
    assert_eq!(t.apply(&open(100, AT_FDCWD, "/data/in.csv", 0, 3)), used(100, read("/data/in.csv")));
    // A tmpfs there is out of the auditor's reach.
    t.apply(&ev(
        200,
        Fact::Mount { dirfd: AT_FDCWD, source: b"tmpfs".to_vec(), target: b"/data/tmp".to_vec(), flags: 0 },
    ));
    let foreign = t.apply(&open(200, AT_FDCWD, "/data/tmp/x", 0, 4)).expect("a use");
    assert_eq!((foreign.namespace, foreign.op), (Some(200), read("/data/tmp/x")));
    // chroot: absolute paths start at the new root.
    t.apply(&ev(100, Fact::Chroot { dirfd: AT_FDCWD, path: b"/jail".to_vec() }));
    assert_eq!(t.apply(&open(100, AT_FDCWD, "/etc/passwd", 0, 5)), used(100, read("/jail/etc/passwd")));
    // setns into a namespace the trace did not make: nothing is reachable.
    t.apply(&ev(100, Fact::Setns { fd: 9, nstype: CLONE_NEWNS }));
    let joined = t.apply(&open(100, AT_FDCWD, "/etc/hosts", 0, 6)).expect("a use");
    assert_eq!(joined.namespace, Some(100));
}

/// Processes an attach found in reprotrace's own namespace share it: a bind
/// mount one of them makes there shows to the others.
#[test]
fn processes_in_the_auditors_namespace_share_its_mounts() {
    let mut t = Tracker::new();
    for pid in [300, 400] {
        t.add_existing(&ExistingProcess {
            pid,
            ppid: 1,
            exe: None,
            argv: Vec::new(),
            cwd: b"/".to_vec(),
            root: b"/".to_vec(),
            other_mount_namespace: false,
            threads: vec![pid],
            files: Vec::new(),
            io_uring_rings: 0,
        });
    }
    let bind =
        Fact::Mount { dirfd: AT_FDCWD, source: b"/srv/real".to_vec(), target: b"/srv/view".to_vec(), flags: MS_BIND };
    t.apply(&ev(300, bind));
    assert_eq!(t.apply(&open(400, AT_FDCWD, "/srv/view/in.csv", 0, 3)), used(400, read("/srv/real/in.csv")));
}

fn task_marker(tid: Tid, phase: MarkerPhase, key: &str, time_ns: u64) -> Event {
    ev(tid, Fact::TaskMarker(TaskMarker { phase, time_ns, key: key.into(), worker: None }))
}

#[test]
fn dask_tasks_are_per_thread_with_the_processes_they_start() {
    let mut t = tracker();
    let threads = CLONE_THREAD | CLONE_FILES | CLONE_FS;
    // Two pool threads of the worker process run two tasks at once.
    t.apply(&ev(100, Fact::Fork { child: 110, flags: threads }));
    t.apply(&ev(100, Fact::Fork { child: 111, flags: threads }));
    t.apply(&task_marker(110, MarkerPhase::Begin, "a", 1));
    t.apply(&task_marker(111, MarkerPhase::Begin, "b", 2));
    let task_of = |used: Option<FileUse>| used.and_then(|used| used.dask_task);
    assert_eq!(task_of(t.apply(&open(110, AT_FDCWD, "a.csv", 0, 3))), Some(0));
    assert_eq!(task_of(t.apply(&open(111, AT_FDCWD, "b.csv", 0, 4))), Some(1));
    // The event loop thread is the worker's.
    assert_eq!(task_of(t.apply(&open(100, AT_FDCWD, "log", 0, 5))), None);
    // Task b starts a process and a thread: both work for it.
    t.apply(&ev(111, Fact::Fork { child: 200, flags: 17 }));
    t.apply(&ev(111, Fact::Fork { child: 112, flags: threads }));
    assert_eq!(task_of(t.apply(&open(200, AT_FDCWD, "c.csv", 0, 3))), Some(1));
    assert_eq!(task_of(t.apply(&open(112, AT_FDCWD, "d.csv", 0, 6))), Some(1));
    t.apply(&task_marker(111, MarkerPhase::End, "b", 9));
    // After the end, the thread it started and its own thread are the worker's
    // again; the process it started stays the task's.
    assert_eq!(task_of(t.apply(&open(112, AT_FDCWD, "e.csv", 0, 7))), None);
    assert_eq!(task_of(t.apply(&open(111, AT_FDCWD, "f.csv", 0, 8))), None);
    assert_eq!(task_of(t.apply(&open(200, AT_FDCWD, "g.csv", 0, 4))), Some(1));
    let tasks = t.dask_tasks();
    assert_eq!((tasks[1].key.as_str(), tasks[1].thread, tasks[1].finished_ns), ("b", 111, Some(9)));
    assert_eq!(tasks[1].pids, BTreeSet::from([100, 200]));
    assert_eq!(tasks[0].finished_ns, None);
    assert_eq!(t.processes().iter().find(|process| process.pid == 200).and_then(|process| process.dask_task), Some(1));
}

fn submission(tid: Tid, id: &str, time_ns: u64) -> Event {
    ev(tid, Fact::SubmitMarker(SubmitMarker { time_ns, id: id.into() }))
}

#[test]
fn a_submission_belongs_to_the_cell_its_process_is_running() {
    let mut t = tracker();
    let threads = CLONE_THREAD | CLONE_FILES | CLONE_FS;
    // Before any cell; then from the client's event loop thread during cell
    // 1; then from the main thread during cell 2; then after it.
    t.apply(&submission(100, "graph-0", 1));
    t.apply(&ev(100, marker(MarkerPhase::Begin, 1, 10)));
    t.apply(&ev(100, Fact::Fork { child: 101, flags: threads }));
    t.apply(&submission(101, "graph-1", 11));
    t.apply(&ev(100, marker(MarkerPhase::End, 1, 20)));
    t.apply(&ev(100, marker(MarkerPhase::Begin, 2, 30)));
    t.apply(&submission(100, "graph-2", 31));
    t.apply(&ev(100, marker(MarkerPhase::End, 2, 40)));
    t.apply(&submission(100, "graph-3", 41));
    let cells: Vec<(&str, Option<u64>)> = t
        .submissions()
        .iter()
        .map(|submission| (submission.id.as_str(), submission.cell.map(|cell| t.cells()[cell].execution_count)))
        .collect();
    assert_eq!(cells, [("graph-0", None), ("graph-1", Some(1)), ("graph-2", Some(2)), ("graph-3", None)]);
    assert_eq!(t.submissions()[1].pid, 100, "the process, not the thread");
}
