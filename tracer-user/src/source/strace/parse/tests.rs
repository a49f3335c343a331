//! Fixtures are excerpts of real `strace 6.1 -f -q -s 65536 -X raw
//! --seccomp-bpf` logs (Linux 6.18, x86_64), trimmed to the lines under
//! test; synthetic lines are marked as such.
use super::{super::syntax::Lines, *};
use crate::event::{
    abi::{CLONE_THREAD, CLONE_VFORK, CLONE_VM, O_CREAT, O_TRUNC, O_WRONLY, RENAME_EXCHANGE, SIGCHLD},
    MarkerPhase, SubmitMarker, TaskMarker, AT_FDCWD,
};

/// What a whole log gave.
#[derive(Debug, Default, PartialEq, Eq)]
struct Log {
    events: Vec<Event>,
    root: Option<Tid>,
    malformed_lines: u64,
}

fn parse_bytes(log: &[u8]) -> Log {
    let mut lines = Lines::new(log);
    let mut parser = Parser::default();
    let mut events = Vec::new();
    while let Some(line) = lines.next_line().expect("reading a byte slice cannot fail") {
        parser.push_line(line, &mut |event| events.push(event));
    }
    let root = parser.root();
    let malformed_lines = parser.finish(&mut |event| events.push(event));
    Log { events, root, malformed_lines }
}

fn parse(log: &str) -> Log {
    parse_bytes(log.as_bytes())
}

/// The events the parser hands out after each line of a log, then those
/// `finish` hands out.
fn events_per_line(log: &str) -> Vec<Vec<Event>> {
    let mut parser = Parser::default();
    let mut handed_out = Vec::new();
    for line in log.lines() {
        let mut events = Vec::new();
        parser.push_line(line.as_bytes(), &mut |event| events.push(event));
        handed_out.push(events);
    }
    let mut events = Vec::new();
    assert_eq!(parser.finish(&mut |event| events.push(event)), 0, "malformed lines in {log}");
    handed_out.push(events);
    handed_out
}

/// The events of a log that must parse without a malformed line.
fn events(log: &str) -> Vec<Event> {
    let parsed = parse(log);
    assert_eq!(parsed.malformed_lines, 0, "malformed lines in {log}");
    parsed.events
}

fn event(tid: Tid, fact: Fact) -> Event {
    Event { tid, fact }
}

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn open(dirfd: i32, path: &str, flags: u64, fd: i32) -> Fact {
    Fact::Open { dirfd, path: bytes(path), flags, fd }
}

fn close(fd: u32) -> Fact {
    Fact::Close { first: fd, last: fd }
}

/// A successful exec of `path` by task `by`.
fn exec(path: &str, argv: &[&str], by: Tid) -> Fact {
    Fact::Exec {
        dirfd: AT_FDCWD,
        path: bytes(path),
        flags: 0,
        argv: argv.iter().map(|arg| bytes(arg)).collect(),
        argv_truncated: false,
        argv_view: ArgvView::Requested,
        requested_by: by,
    }
}

fn exec_failed(path: &str, errno: i32) -> Fact {
    Fact::ExecFailed { dirfd: AT_FDCWD, path: bytes(path), flags: 0, errno }
}

fn exited(code: i32) -> Fact {
    Fact::Exit { status: WaitStatus::exited(code) }
}

const VFORK_FLAGS: u64 = CLONE_VM | CLONE_VFORK | SIGCHLD;
/// What glibc's `pthread_create` passes to clone3 (no exit signal).
const THREAD_FLAGS: u64 = 0x3d0f00;

#[test]
fn path_syscalls_map_to_their_facts() {
    let log = r#"6978  mkdir("/tmp/st/work", 0777)       = 0
6978  openat(-100, "/tmp/st/work", 0x90000) = 3
6978  openat(3, "a.txt", 0x80241, 0644) = 4
6978  rename("/tmp/st/work/a.txt", "/tmp/st/work/b.txt") = 0
6978  renameat(3, "b.txt", 3, "c.txt")  = 0
6978  link("/tmp/st/work/d.txt", "/tmp/st/work/e.txt") = 0
6978  linkat(3, "d.txt", 3, "f.txt", 0x400) = 0
6978  symlink("d.txt", "/tmp/st/work/sym") = 0
6978  symlinkat("d.txt", 3, "sym2")     = 0
6978  truncate("/tmp/st/work/d.txt", 2) = 0
6978  ftruncate(4, 1)                   = 0
6978  unlink("/tmp/st/work/e.txt")      = 0
6978  unlinkat(3, "f.txt", 0)           = 0
6978  mkdirat(3, "sub2", 0777)          = 0
6978  rmdir("/tmp/st/work/sub")         = 0
6978  unlinkat(3, "sub2", 0x200)        = 0
6978  chdir("/tmp/st/work")             = 0
6978  fchdir(3)                         = 0
"#;
    let expected = [
        Fact::Mkdir { dirfd: AT_FDCWD, path: bytes("/tmp/st/work") },
        open(AT_FDCWD, "/tmp/st/work", 0x90000, 3),
        open(3, "a.txt", 0x80241, 4),
        Fact::Rename {
            old_dirfd: AT_FDCWD,
            old: bytes("/tmp/st/work/a.txt"),
            new_dirfd: AT_FDCWD,
            new: bytes("/tmp/st/work/b.txt"),
            flags: 0,
        },
        Fact::Rename { old_dirfd: 3, old: bytes("b.txt"), new_dirfd: 3, new: bytes("c.txt"), flags: 0 },
        Fact::Link {
            old_dirfd: AT_FDCWD,
            old: bytes("/tmp/st/work/d.txt"),
            new_dirfd: AT_FDCWD,
            new: bytes("/tmp/st/work/e.txt"),
        },
        Fact::Link { old_dirfd: 3, old: bytes("d.txt"), new_dirfd: 3, new: bytes("f.txt") },
        Fact::Symlink { target: bytes("d.txt"), dirfd: AT_FDCWD, link: bytes("/tmp/st/work/sym") },
        Fact::Symlink { target: bytes("d.txt"), dirfd: 3, link: bytes("sym2") },
        Fact::Truncate { dirfd: AT_FDCWD, path: bytes("/tmp/st/work/d.txt") },
        Fact::Truncate { dirfd: 4, path: Vec::new() },
        Fact::Remove { dirfd: AT_FDCWD, path: bytes("/tmp/st/work/e.txt"), dir: false },
        Fact::Remove { dirfd: 3, path: bytes("f.txt"), dir: false },
        Fact::Mkdir { dirfd: 3, path: bytes("sub2") },
        Fact::Remove { dirfd: AT_FDCWD, path: bytes("/tmp/st/work/sub"), dir: true },
        Fact::Remove { dirfd: 3, path: bytes("sub2"), dir: true },
        Fact::Chdir { dirfd: AT_FDCWD, path: bytes("/tmp/st/work") },
        Fact::Chdir { dirfd: 3, path: Vec::new() },
    ];
    let expected: Vec<Event> = expected.into_iter().map(|f| event(6978, f)).collect();
    assert_eq!(events(log), expected);
}

#[test]
fn open_variants_renameat2_and_fork() {
    let log = r#"7139  open("o1.txt", 0x41, 0600)        = 3
7139  open("o1.txt", 0)                 = 3
7139  creat("c1.txt", 0640)             = 3
7139  openat2(-100, "o1.txt", {flags=0x80000, resolve=0x8}, 24) = 3
7139  openat2(-100, "o2.txt", {flags=0x41, mode=0644, resolve=0}, 24) = 3
7139  openat(-100, "/nonexistent", 0x80000) = -1 ENOENT (No such file or directory)
7139  renameat2(3, "o1.txt", 3, "o2.txt", 0x2) = 0
7139  renameat2(-100, "o2.txt", -100, "o3.txt", 0x1) = 0
7139  linkat(3, "o3.txt", -100, "l1.txt", 0) = 0
7139  mkdirat(-100, "m1", 0755)         = 0
7139  fork()                            = 7140
7140  +++ exited with 0 +++
7139  clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7fd56c018e50) = 7141
"#;
    let expected = vec![
        event(7139, open(AT_FDCWD, "o1.txt", 0x41, 3)),
        event(7139, open(AT_FDCWD, "o1.txt", 0, 3)),
        event(7139, open(AT_FDCWD, "c1.txt", O_CREAT | O_WRONLY | O_TRUNC, 3)),
        event(7139, open(AT_FDCWD, "o1.txt", 0x80000, 3)),
        event(7139, open(AT_FDCWD, "o2.txt", 0x41, 3)),
        event(
            7139,
            Fact::Rename {
                old_dirfd: 3,
                old: bytes("o1.txt"),
                new_dirfd: 3,
                new: bytes("o2.txt"),
                flags: RENAME_EXCHANGE,
            },
        ),
        event(
            7139,
            Fact::Rename {
                old_dirfd: AT_FDCWD,
                old: bytes("o2.txt"),
                new_dirfd: AT_FDCWD,
                new: bytes("o3.txt"),
                flags: 1,
            },
        ),
        event(7139, Fact::Link { old_dirfd: 3, old: bytes("o3.txt"), new_dirfd: AT_FDCWD, new: bytes("l1.txt") }),
        event(7139, Fact::Mkdir { dirfd: AT_FDCWD, path: bytes("m1") }),
        event(7139, Fact::Fork { child: 7140, flags: SIGCHLD }),
        event(7140, exited(0)),
        event(7139, Fact::Fork { child: 7141, flags: 0x1200000 | SIGCHLD }),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn descriptor_syscalls() {
    let log = r#"6978  fcntl(4, 0x406, 0)                = 5
6978  dup2(4, 20)                       = 20
6978  dup3(4, 21, 0x80000)              = 21
6978  fcntl(4, 0x406, 30)               = 30
6978  fcntl(4, 0, 40)                   = 40
6978  fcntl(4, 0x2, 0x1)                = 0
6978  fcntl(4, 0x2, 0)                  = 0
6978  fcntl(4, 0x3)                     = 0x8002 (flags O_RDWR|O_LARGEFILE)
6978  fcntl(3, 0x1)                     = 0x1 (flags 0x1)
6978  close_range(20, 21, 0)            = 0
6978  close(6)                          = 0
6978  close(50)                         = -1 EBADF (Bad file descriptor)
6978  close_range(60, 4294967295, 0)    = 0
6978  close_range(3, 4294967295, 0x4)   = 0
6978  dup3(3, 50, 0)                    = 50
6981  fcntl(1, 0, 10)                   = 10
6981  dup2(3, 1)                        = 1
"#;
    let dup = |old, new, cloexec| Fact::Dup { old, new, cloexec };
    let expected = vec![
        event(6978, dup(4, 5, true)),
        event(6978, dup(4, 20, false)),
        event(6978, dup(4, 21, true)),
        event(6978, dup(4, 30, true)),
        event(6978, dup(4, 40, false)),
        event(6978, Fact::SetCloexec { first: 4, last: 4, on: true }),
        event(6978, Fact::SetCloexec { first: 4, last: 4, on: false }),
        event(6978, Fact::Close { first: 20, last: 21 }),
        event(6978, close(6)),
        event(6978, Fact::Close { first: 60, last: u32::MAX }),
        event(6978, Fact::SetCloexec { first: 3, last: u32::MAX, on: true }),
        event(6978, dup(3, 50, false)),
        // 6981 has no clone line in this excerpt: its events stay, unforked.
        event(6981, dup(1, 10, false)),
        event(6981, dup(3, 1, false)),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn vfork_child_gets_its_fork_before_its_first_line() {
    // The vfork'ed child runs (and is logged) before its parent's vfork
    // returns; the child's exec is itself split around the parent's lines.
    let log = r#"6978  vfork( <unfinished ...>
6981  close(6)                          = 0
6981  execve("/root/.cargo/bin/sh", ["sh", "-c", "nonexistent_cmd_xyz; echo hi > /tmp/st/work/sh.txt"], 0x7ffe31712a50 /* 35 vars */) = -1 ENOENT (No such file or directory)
6981  execve("/usr/bin/sh", ["sh", "-c", "nonexistent_cmd_xyz; echo hi > /tmp/st/work/sh.txt"], 0x7ffe31712a50 /* 35 vars */ <unfinished ...>
6978  <... vfork resumed>)              = 6981
6978  close(7)                          = 0
6981  <... execve resumed>)             = 0
6981  openat(-100, "/tmp/st/work/sh.txt", 0x241, 0666) = 3
6981  +++ exited with 0 +++
6978  vfork( <unfinished ...>
6983  close(6)                          = 0
6983  execve("/nonexistent/prog", ["/nonexistent/prog"], 0x7ffe31712a50 /* 35 vars */) = -1 ENOENT (No such file or directory)
6983  +++ exited with 255 +++
6978  <... vfork resumed>)              = 6983
6978  close(7)                          = 0
"#;
    let argv = ["sh", "-c", "nonexistent_cmd_xyz; echo hi > /tmp/st/work/sh.txt"];
    let vfork = |child| Fact::Fork { child, flags: VFORK_FLAGS };
    let expected = vec![
        event(6978, vfork(6981)),
        event(6981, close(6)),
        event(6981, exec_failed("/root/.cargo/bin/sh", 2)),
        event(6978, close(7)),
        event(6981, exec("/usr/bin/sh", &argv, 6981)),
        event(6981, open(AT_FDCWD, "/tmp/st/work/sh.txt", 0x241, 3)),
        event(6981, exited(0)),
        event(6978, vfork(6983)),
        event(6983, close(6)),
        event(6983, exec_failed("/nonexistent/prog", 2)),
        event(6983, exited(255)),
        event(6978, close(7)),
    ];
    let parsed = parse(log);
    assert_eq!(parsed.events, expected);
    assert_eq!(parsed.root, Some(6978));
    assert_eq!(parsed.malformed_lines, 0);
}

#[test]
fn posix_spawn_clone3_child_before_its_result() {
    let log = r#"7139  clone3({flags=0x4100, exit_signal=17, stack=0x7fd56b3ea000, stack_size=0x9000}, 88 <unfinished ...>
7143  execve("/bin/true", ["true"], 0x7fd56b2f9e90 /* 35 vars */ <unfinished ...>
7139  <... clone3 resumed>)             = 7143
7143  <... execve resumed>)             = 0
7143  openat(-100, "/etc/ld.so.cache", 0x80000) = 3
7143  +++ exited with 0 +++
"#;
    let expected = vec![
        // clone3's flags are `clone_args.flags`, without the exit signal.
        event(7139, Fact::Fork { child: 7143, flags: CLONE_VM | CLONE_VFORK }),
        event(7143, exec("/bin/true", &["true"], 7143)),
        event(7143, open(AT_FDCWD, "/etc/ld.so.cache", 0x80000, 3)),
        event(7143, exited(0)),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn threads_with_interleaved_unfinished_calls() {
    let log = r#"7326  clone3({flags=0x3d0f00, child_tid=0x7f37cc998990, parent_tid=0x7f37cc998990, exit_signal=0, stack=0x7f37cc198000, stack_size=0x7fff80, tls=0x7f37cc9986c0} => {parent_tid=[7327]}, 88) = 7327
7327  openat(-100, "/tmp/st/work3/t0_0", 0x80041, 0644 <unfinished ...>
7326  clone3({flags=0x3d0f00, child_tid=0x7f37cc197990, parent_tid=0x7f37cc197990, exit_signal=0, stack=0x7f37cb997000, stack_size=0x7fff80, tls=0x7f37cc1976c0} <unfinished ...>
7327  <... openat resumed>)             = 3
7326  <... clone3 resumed> => {parent_tid=[7328]}, 88) = 7328
7327  close(3)                          = 0
7328  openat(-100, "/tmp/st/work3/t1_0", 0x80041, 0644) = 3
7327  close(4 <unfinished ...>
7328  close(3 <unfinished ...>
7327  <... close resumed>)              = 0
7328  <... close resumed>)              = 0
7328  +++ exited with 0 +++
"#;
    assert_eq!(THREAD_FLAGS & CLONE_THREAD, CLONE_THREAD);
    let thread = |child| Fact::Fork { child, flags: THREAD_FLAGS };
    let expected = vec![
        event(7326, thread(7327)),
        event(7327, open(AT_FDCWD, "/tmp/st/work3/t0_0", 0x80041, 3)),
        event(7326, thread(7328)),
        event(7327, close(3)),
        event(7328, open(AT_FDCWD, "/tmp/st/work3/t1_0", 0x80041, 3)),
        event(7327, close(4)),
        event(7328, close(3)),
        event(7328, exited(0)),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn exec_from_a_thread_finishes_under_the_leader() {
    // strace prints a meaningless errno for the leader's resumed execve.
    let log = r#"7139  clone3({flags=0x3d0f00, child_tid=0x7fd56b285990, parent_tid=0x7fd56b285990, exit_signal=0, stack=0x7fd56aa85000, stack_size=0x7fff80, tls=0x7fd56b2856c0} => {parent_tid=[7144]}, 88) = 7144
7144  execve("/bin/true", ["true", "from-thread"], 0x7fff3fddd9f0 /* 35 vars */ <pid changed to 7139 ...>
7139  +++ superseded by execve in pid 7144 +++
7139  <... execve resumed>)             = -1 (errno 18446744073709551359)
7139  close(3)                          = 0
7139  +++ exited with 0 +++
"#;
    let expected = vec![
        event(7139, Fact::Fork { child: 7144, flags: THREAD_FLAGS }),
        event(7139, exec("/bin/true", &["true", "from-thread"], 7144)),
        event(7139, close(3)),
        event(7139, exited(0)),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn exec_from_a_thread_that_was_already_unfinished() {
    // Synthetic, in the shape strace's own test suite expects
    // (tests/threaded_execve.c): the leader's interrupted call ends first.
    let log = r#"200   clone3({flags=0x3d0f00, exit_signal=0} => {parent_tid=[201]}, 88) = 201
200   close(5 <unfinished ...>
201   execve("/bin/true", ["true"], 0x1 /* 1 var */ <unfinished ...>
200   <... close resumed>) = ?
200   +++ superseded by execve in pid 201 +++
200   <... execve resumed>) = 0
"#;
    let expected =
        vec![event(200, Fact::Fork { child: 201, flags: THREAD_FLAGS }), event(200, exec("/bin/true", &["true"], 201))];
    assert_eq!(events(log), expected);
}

#[test]
fn exec_variants_and_failures() {
    let log = r#"7139  clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7fd56c018e50) = 7141
7141  openat(-100, "/bin/true", 0x280000) = 4
7141  execveat(4, "", ["true", "x"], 0x7fd56b5a98d0 /* 1 var */, 0x1000) = 0
7139  clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7fd56c018e50) = 7142
7142  execveat(-100, "/nonexistent/x", ["true"], NULL, 0) = -1 ENOENT (No such file or directory)
7142  execve(NULL, NULL, NULL)          = -1 EFAULT (Bad address)
7142  +++ exited with 0 +++
"#;
    let fork = |child| Fact::Fork { child, flags: 0x1200000 | SIGCHLD };
    let expected = vec![
        event(7139, fork(7141)),
        event(7141, open(AT_FDCWD, "/bin/true", 0x280000, 4)),
        event(
            7141,
            Fact::Exec {
                dirfd: 4,
                path: Vec::new(),
                flags: crate::event::abi::AT_EMPTY_PATH,
                argv: vec![bytes("true"), bytes("x")],
                argv_truncated: false,
                argv_view: ArgvView::Requested,
                requested_by: 7141,
            },
        ),
        event(7139, fork(7142)),
        event(7142, exec_failed("/nonexistent/x", 2)),
        event(7142, exec_failed("", 14)),
        event(7142, exited(0)),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn signals_kills_and_restarted_calls() {
    // Logged without `-e signal=none`, which also hides `killed by` lines.
    let log = r#"10321 openat(-100, "/tmp/st/fifo", 0x80000) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)
10321 --- SIGALRM {si_signo=14, si_code=0x80} ---
10321 openat(-100, "/tmp/st/fifo", 0x80000 <unfinished ...>
10321 <... openat resumed>)             = 3
10321 vfork( <unfinished ...>
10360 execve("/usr/bin/sh", ["sh", "-c", "kill -QUIT $$"], 0x7fffdae2c650 /* 35 vars */ <unfinished ...>
10321 <... vfork resumed>)              = 10360
10360 <... execve resumed>)             = 0
10360 --- SIGQUIT {si_signo=3, si_code=0, si_pid=10360, si_uid=0} ---
10360 +++ killed by SIGQUIT (core dumped) +++
10321 --- SIGCHLD {si_signo=17, si_code=0x3, si_pid=10360, si_uid=0, si_status=3, si_utime=0, si_stime=0} ---
10321 clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f6f70d42a10) = 7083
7083  execve("/usr/bin/sleep", ["sleep", "5"], 0x55c2fdda3d18 /* 35 vars */) = ?
7083  +++ killed by SIGKILL +++
10321 +++ killed by SIGRT_2 +++
"#;
    let expected = vec![
        event(10321, open(AT_FDCWD, "/tmp/st/fifo", 0x80000, 3)),
        event(10321, Fact::Fork { child: 10360, flags: VFORK_FLAGS }),
        event(10360, exec("/usr/bin/sh", &["sh", "-c", "kill -QUIT $$"], 10360)),
        event(10360, Fact::Exit { status: WaitStatus::killed(libc::SIGQUIT, true) }),
        event(10321, Fact::Fork { child: 7083, flags: 0x1200000 | SIGCHLD }),
        // Killed during the exec: no outcome, nothing to report.
        event(7083, Fact::Exit { status: WaitStatus::killed(libc::SIGKILL, false) }),
        event(10321, Fact::Exit { status: WaitStatus::killed(34, false) }),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn escaped_and_non_utf8_names_survive_byte_exact() {
    let log = r#"6978  openat(-100, "/tmp/st/work/caf\303\251 \"q\"\\\n\t\1\377", 0x80241, 0666) = 6
6978  unlink("/tmp/st/work/caf\303\251 \"q\"\\\n\t\1\377") = 0
6978  execve("/bin/echo", ["echo", "a, b)", "\x41\a\b\v\f\r\0\0012", "long"...], 0x7ffe /* 3 vars */) = 0
"#;
    let name = b"/tmp/st/work/caf\xc3\xa9 \"q\"\\\n\t\x01\xff".to_vec();
    let expected = vec![
        event(6978, Fact::Open { dirfd: AT_FDCWD, path: name.clone(), flags: 0x80241, fd: 6 }),
        event(6978, Fact::Remove { dirfd: AT_FDCWD, path: name, dir: false }),
        event(
            6978,
            Fact::Exec {
                dirfd: AT_FDCWD,
                path: bytes("/bin/echo"),
                flags: 0,
                // "long"... was cut at -s: not an argument the program got.
                argv: vec![bytes("echo"), bytes("a, b)"), b"A\x07\x08\x0b\x0c\r\0\x012".to_vec()],
                argv_truncated: true,
                argv_view: ArgvView::Requested,
                requested_by: 6978,
            },
        ),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn raw_bytes_and_lines_longer_than_64_kib() {
    let long = "d/".repeat(40_000);
    let mut log = format!("100   mkdir(\"{long}\", 0777) = 0\n").into_bytes();
    log.extend_from_slice(b"100   openat(-100, \"\xff\xfe\", 0) = 3\n");
    let parsed = parse_bytes(&log);
    assert_eq!(parsed.malformed_lines, 0);
    assert_eq!(
        parsed.events,
        vec![
            event(100, Fact::Mkdir { dirfd: AT_FDCWD, path: bytes(&long) },),
            event(100, Fact::Open { dirfd: AT_FDCWD, path: vec![0xff, 0xfe], flags: 0, fd: 3 },),
        ]
    );
}

#[test]
fn reused_ids_get_a_fresh_fork() {
    // Synthetic: task 101 ends, and a later child gets its id back.
    let log = r#"100   clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f0) = 101
101   close(3)                          = 0
101   +++ exited with 0 +++
100   vfork( <unfinished ...>
101   close(4)                          = 0
100   <... vfork resumed>)              = 101
"#;
    let expected = vec![
        event(100, Fact::Fork { child: 101, flags: 0x1200000 | SIGCHLD }),
        event(101, close(3)),
        event(101, exited(0)),
        event(100, Fact::Fork { child: 101, flags: VFORK_FLAGS }),
        event(101, close(4)),
    ];
    assert_eq!(events(log), expected);
}

#[test]
fn grandchild_fork_follows_its_parents_fork() {
    // Synthetic: both forks' results arrive after the children's lines.
    let log = r#"100   vfork( <unfinished ...>
101   vfork( <unfinished ...>
102   close(3)                          = 0
101   <... vfork resumed>)              = 102
100   <... vfork resumed>)              = 101
"#;
    let vfork = |child| Fact::Fork { child, flags: VFORK_FLAGS };
    let expected = vec![event(100, vfork(101)), event(101, vfork(102)), event(102, close(3))];
    assert_eq!(events(log), expected);
}

#[test]
fn malformed_lines_are_counted_and_skipped() {
    let log = r#"300   close(3)                          = 0
garbage without a pid
300
300   openat(-100, "unterminated, 0) = 3
300   <... openat resumed>)             = 3
300   close(4 <unfinished ...>
300   <... dup resumed>)                = 5
300   +++ exited strangely +++
300   +++ killed by SIGNOPE +++
300   execve("/x", ["x"], 0x1 /* 1 var */) = -1 EUNKNOWN (Who knows)
300   exit_group(0)                     = ?
300   <... nanosleep resumed>)          = 0
300   restart_syscall(<... resuming interrupted read ...>) = 0
300   close(5)                          = 0
"#;
    let parsed = parse(log);
    assert_eq!(parsed.root, Some(300));
    // Unmodelled syscalls (exit_group, nanosleep, restart_syscall) are
    // not malformed; the failed exec with an unknown errno has no outcome.
    assert_eq!(parsed.malformed_lines, 8);
    assert_eq!(parsed.events, vec![event(300, close(3)), event(300, close(5))]);
}

#[test]
fn empty_log() {
    assert_eq!(parse(""), Log::default());
}

#[test]
fn events_come_out_as_soon_as_their_forks_allow() {
    let log = r#"6978  close(5)                          = 0
6978  vfork( <unfinished ...>
6981  close(6)                          = 0
6981  execve("/bin/true", ["true"], 0x1 /* 1 var */ <unfinished ...>
6978  <... vfork resumed>)              = 6981
6981  <... execve resumed>)             = 0
"#;
    assert_eq!(
        events_per_line(log),
        vec![
            vec![event(6978, close(5))],
            vec![],
            // Held back until the Fork they follow is known.
            vec![],
            vec![],
            vec![event(6978, Fact::Fork { child: 6981, flags: VFORK_FLAGS }), event(6981, close(6))],
            vec![event(6981, exec("/bin/true", &["true"], 6981))],
            vec![],
        ]
    );
}

#[test]
fn tasks_that_predate_the_log_are_not_held_back() {
    // As when attaching: no clone is under way when 501 first shows.
    let log = "500   close(3) = 0\n501   close(4) = 0\n";
    assert_eq!(events_per_line(log), vec![vec![event(500, close(3))], vec![event(501, close(4))], vec![]]);
}

#[test]
fn a_slot_is_given_up_once_its_possible_clones_made_others() {
    // Synthetic: 200 shows while 100's clone is under way, but that
    // clone makes 101.
    let log = r#"100   clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f0 <unfinished ...>
200   close(3)                          = 0
100   <... clone resumed>)              = 101
200   close(4)                          = 0
"#;
    assert_eq!(
        events_per_line(log),
        vec![
            vec![],
            vec![],
            vec![event(200, close(3)), event(100, Fact::Fork { child: 101, flags: 0x1200000 | SIGCHLD })],
            vec![event(200, close(4))],
            vec![],
        ]
    );
}

#[test]
fn a_log_cut_short_hands_out_what_it_held_back() {
    // Synthetic: strace was stopped before the vfork returned; the last
    // line has no newline.
    let log = "100   vfork( <unfinished ...>\n101   close(3) = 0";
    assert_eq!(events_per_line(log), vec![vec![], vec![], vec![event(101, close(3))]]);
    assert_eq!(parse(log).events, vec![event(101, close(3))]);
}

#[test]
fn cell_and_task_markers_fail_by_design_and_are_facts() {
    let sha = "ab".repeat(32);
    let log = format!(
        "7000  openat(-29300, \"reprotrace-cell:1:begin:3:-:{sha}:11\", 0) = -1 EBADF (Bad file descriptor)\n\
         7001  openat(-29301, \"reprotrace-task:1:begin:12:('inc-1', 0)\", 0) = -1 EBADF (Bad file descriptor)\n\
         7001  openat(-29301, \"reprotrace-task:1:end:13:('inc-1', 0)\", 0) = -1 EBADF (Bad file descriptor)\n\
         7000  openat(-29301, \"reprotrace-submit:1:14:update-graph-reprotrace-9a\", 0) = -1 EBADF (Bad file descriptor)\n"
    );
    let facts: Vec<Fact> = events(&log).into_iter().map(|event| event.fact).collect();
    assert!(matches!(&facts[0], Fact::CellMarker(marker) if marker.execution_count == 3));
    let task =
        |phase, time_ns| Fact::TaskMarker(TaskMarker { phase, time_ns, key: "('inc-1', 0)".into(), worker: None });
    assert_eq!(facts[1..3], [task(MarkerPhase::Begin, 12), task(MarkerPhase::End, 13)]);
    assert_eq!(facts[3], Fact::SubmitMarker(SubmitMarker { time_ns: 14, id: "update-graph-reprotrace-9a".into() }));
}
