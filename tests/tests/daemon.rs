//! `reprotrace daemon`: audits served by programs loaded once give the same
//! manifests as audits that load their own, concurrent audits see only their
//! own trees, and a daemon that goes away mid-audit costs completeness, never
//! the manifest.
//!
//! These tests load eBPF programs: they need root, and fail (never skip) when
//! the programs cannot load.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use reprotrace_tests::{
    assert_complete, assert_same_run, assert_valid, audit_with, data_paths, paths_under, prepare_file_ops,
    reprotrace_bin, spawn_until, Audit, TestUser,
};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// A daemon on a socket of its own, stopped when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &Path, options: &[&str]) -> Daemon {
        let socket = dir.join("daemon.sock");
        let child = spawn_until(
            Command::new(reprotrace_bin()).args(["daemon", "--socket"]).arg(&socket).args(options),
            "daemon ready",
        );
        Daemon { child, socket }
    }

    fn socket_arg(&self) -> &str {
        self.socket.to_str().expect("utf-8 temp path")
    }

    fn stop(&mut self) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `reprotrace attach --socket … --pid PID`, once it has attached.
fn attach_through(daemon: &Daemon, pid: u32, manifest: &Path) -> Child {
    spawn_until(
        Command::new(reprotrace_bin())
            .args(["attach", "--socket", daemon.socket_arg(), "--pid", &pid.to_string(), "-o"])
            .arg(manifest),
        "attached to",
    )
}

#[test]
fn audits_through_the_daemon_equal_audits_that_load_their_own_programs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    let work = dir.path().join("work");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    prepare_file_ops(&work);
    let work_arg = work.to_str().expect("utf-8 temp path");
    let command = [PYTHON, "work/file_ops.py", work_arg];

    let own = audit_with(&["--no-daemon"], "own", dir.path(), &manifests, &command);
    std::fs::remove_dir_all(work.join("outputs")).expect("reset outputs");
    std::fs::create_dir_all(work.join("outputs")).expect("outputs dir");
    let served = audit_with(&["--socket", daemon.socket_arg()], "served", dir.path(), &manifests, &command);
    for audit in [&own, &served] {
        assert!(audit.output.status.success(), "{}", audit.stderr());
        assert_complete(audit);
    }
    assert_eq!(served.manifest["backend"], "ebpf");
    assert!(data_paths(&served.manifest, "outputs").contains(&format!("{work_arg}/outputs/result.json")));
    assert_same_run(&own.manifest, &served.manifest);
}

/// The daemon's ring reader runs above the commands it follows from its
/// start, before any audit's first event, and its other threads do not; an
/// audit's client only reads a socket (the daemon keeps its backlog), so it
/// stays, with its command, at the priority it was started with.
#[test]
fn the_daemons_ring_reader_is_raised_and_a_client_keeps_its_priority() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    let idle = reprotrace_tests::thread_nice_values(daemon.child.id());
    assert_eq!(idle.iter().filter(|&&nice| nice == -10).count(), 1, "only the reader is raised: {idle:?}");

    let burst = reprotrace_tests::burst_files(dir.path(), "burst", 100);
    let (command, client, daemon_threads) = reprotrace_tests::priorities_under(
        &["--socket", daemon.socket_arg()],
        &dir.path().join("nice.json"),
        Some(&burst),
        Some(daemon.child.id()),
    );
    assert_eq!(command, 5, "the command runs at the priority reprotrace was given");
    assert!(daemon_threads.contains(&-10), "the daemon's reader raised itself: {daemon_threads:?}");
    // Its bookkeeping threads run at nice 19.
    assert!(client.iter().all(|&nice| nice >= 5), "the client is not raised: {client:?}");
}

#[test]
fn concurrent_audits_see_only_their_own_trees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    let script = "import sys, time\nfor i in range(200):\n    open(sys.argv[1] + '/out-%d' % i, 'w').write('x')\n    \
                  time.sleep(0.001)\n";
    let audits: Vec<(PathBuf, std::thread::JoinHandle<Audit>)> = (0..3)
        .map(|index| {
            let work = dir.path().join(format!("tree{index}"));
            std::fs::create_dir_all(&work).expect("work dir");
            let socket = daemon.socket_arg().to_string();
            let (root, handle_work) = (dir.path().to_path_buf(), work.clone());
            let handle = std::thread::spawn(move || {
                let work_arg = handle_work.to_str().expect("utf-8").to_string();
                audit_with(
                    &["--socket", &socket],
                    &format!("tree{index}"),
                    &root,
                    &handle_work,
                    &[PYTHON, "-c", script, &work_arg],
                )
            });
            (work, handle)
        })
        .collect();
    let names: Vec<String> = (0..200).map(|i| format!("out-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for (work, handle) in audits {
        let audit = handle.join().expect("audit thread");
        assert!(audit.output.status.success(), "{}", audit.stderr());
        assert_complete(&audit);
        assert_eq!(data_paths(&audit.manifest, "outputs"), paths_under(&work, &names), "{}", work.display());
    }
}

#[test]
fn attach_through_the_daemon_follows_a_running_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    let go = dir.path().join("go");
    let output = dir.path().join("written.txt");
    let script = format!(
        "import os, time\nwhile not os.path.exists({go:?}): time.sleep(0.01)\nopen({output:?}, 'w').write('done')\n",
        go = go.to_str().expect("utf-8"),
        output = output.to_str().expect("utf-8"),
    );
    let mut worker = Command::new(PYTHON).args(["-c", &script]).spawn().expect("worker");
    let manifest = dir.path().join("attached.json");
    let mut tracer = attach_through(&daemon, worker.id(), &manifest);
    std::fs::write(&go, "").expect("go");
    assert!(worker.wait().expect("worker").success());
    assert!(tracer.wait().expect("attach").success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
    reprotrace_tests::assert_valid(&manifest);
    assert_eq!(manifest["stats"]["complete"], true, "{}", manifest["stats"]);
    assert!(data_paths(&manifest, "outputs").contains(output.to_str().expect("utf-8")), "{}", manifest["data"]);
}

#[test]
fn a_process_in_one_audit_is_refused_to_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    let mut worker = Command::new("sleep").arg("30").spawn().expect("worker");
    let pid = worker.id().to_string();
    let mut first = attach_through(&daemon, worker.id(), &dir.path().join("first.json"));
    let second = Command::new(reprotrace_bin())
        .args(["attach", "--socket", daemon.socket_arg(), "--pid", &pid, "-o"])
        .arg(dir.path().join("second.json"))
        .output()
        .expect("second attach");
    let message = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(125), "{message}");
    assert!(message.contains("already followed by another audit"), "{message}");
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(first.wait().expect("first attach").success());
}

#[test]
fn a_daemon_stopped_mid_audit_costs_completeness_not_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(dir.path());
    let before = dir.path().join("before.txt");
    let after = dir.path().join("after.txt");
    let script = format!(
        "import time\nopen({before:?}, 'w').write('1')\ntime.sleep(1.5)\nopen({after:?}, 'w').write('2')\n",
        before = before.to_str().expect("utf-8"),
        after = after.to_str().expect("utf-8"),
    );
    let manifest = dir.path().join("cut.json");
    let run = Command::new(reprotrace_bin())
        .args(["run", "--socket", daemon.socket_arg(), "-o"])
        .arg(&manifest)
        .args(["--", PYTHON, "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .expect("reprotrace run");
    std::thread::sleep(Duration::from_millis(700));
    daemon.stop();
    let output = run.wait_with_output().expect("reprotrace run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the command's status passes through: {stderr}");
    assert!(stderr.contains("lost the eBPF event stream"), "{stderr}");
    assert!(after.exists(), "the command ran to its end");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
    reprotrace_tests::assert_valid(&manifest);
    assert_eq!(manifest["stats"]["complete"], false);
    let outputs = data_paths(&manifest, "outputs");
    assert!(outputs.contains(before.to_str().expect("utf-8")), "what arrived before is kept: {outputs:?}");
}

/// The daemon's attached tracepoints: one perf event descriptor each.
fn perf_events_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's descriptors")
        .flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy().contains("perf_event")))
        .count()
}

#[test]
fn an_idle_daemon_detaches_and_the_next_audit_attaches_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_with(dir.path(), &["--idle-detach", "0.2"]);
    let pid = daemon.child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while perf_events_of(pid) > 0 {
        assert!(std::time::Instant::now() < deadline, "the idle daemon kept its programs attached");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = dir.path().join("out.txt");
    let audit = audit_with(
        &["--socket", daemon.socket_arg()],
        "after-idle",
        dir.path(),
        dir.path(),
        &[PYTHON, "-c", &format!("open({:?}, 'w').write('x')", output.to_str().expect("utf-8"))],
    );
    assert!(audit.output.status.success(), "{}", audit.stderr());
    assert_complete(&audit);
    assert!(data_paths(&audit.manifest, "outputs").contains(output.to_str().expect("utf-8")));
}

/// A user auditing its own command through `daemon --allow-users` does not
/// see inside a setuid program the command runs (`mount`, setuid root): its
/// exec is recorded, what it then opened is not, and the audit says it is
/// incomplete. Root's audit of the same command sees it all.
#[test]
fn a_users_audit_stops_at_a_setuid_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let daemon = Daemon::start_with(dir.path(), &["--allow-users"]);
    let user = TestUser::create("suid");
    let home = user.home();
    let script = "mount > /dev/null; cat /etc/hostname > /dev/null";
    let audit = |as_user: bool| -> Value {
        let manifest = home.path().join(if as_user { "user.json" } else { "root.json" });
        let mut command = match as_user {
            true => user.command(reprotrace_bin()),
            false => Command::new(reprotrace_bin()),
        };
        let output = command
            .args(["run", "--socket", daemon.socket_arg(), "-o"])
            .arg(&manifest)
            .args(["--", "sh", "-c", script])
            .current_dir(home.path())
            .output()
            .expect("reprotrace run");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        manifest
    };
    let paths = |manifest: &Value| -> Vec<String> {
        manifest["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|file| file["path"].as_str().expect("path").into())
            .collect()
    };
    let mount_ran = |manifest: &Value| {
        manifest["processes"].as_array().expect("processes").iter().any(|process| process["exe"] == "/usr/bin/mount")
    };

    let users = audit(true);
    assert_eq!(users["stats"]["unfollowed_privileged"], 1, "{}", users["stats"]);
    assert_eq!(users["stats"]["complete"], false);
    assert!(mount_ran(&users), "the exec is the user's: {:#}", users["processes"]);
    let seen = paths(&users);
    assert!(seen.contains(&"/etc/hostname".to_string()), "the command goes on being followed: {seen:?}");
    assert!(!seen.iter().any(|path| path.contains("libmount")), "mount's own files: {seen:?}");

    let roots = audit(false);
    assert!(roots["stats"].get("unfollowed_privileged").is_none(), "{}", roots["stats"]);
    assert!(mount_ran(&roots));
    assert!(paths(&roots).iter().any(|path| path.contains("libmount")), "{:?}", paths(&roots));

    // Attached to, the user's process that runs the setuid program ends for
    // the audit at that exec: the attach ends with the tree, not at a deadline.
    let go = home.path().join("go");
    let mut worker = user
        .command("/bin/sh")
        .args(["-c", "while [ ! -e go ]; do sleep 0.05; done; exec mount"])
        .current_dir(home.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("the user's process");
    let manifest = home.path().join("attached.json");
    let mut attach = spawn_until(
        user.command(reprotrace_bin())
            .args(["attach", "--socket", daemon.socket_arg(), "--pid", &worker.id().to_string(), "-o"])
            .arg(&manifest),
        "attached to",
    );
    std::fs::write(&go, "").expect("go");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while attach.try_wait().expect("attach").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = attach.kill();
            panic!("the attach did not end with its tree");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = worker.wait();
    let attached: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
    assert_eq!(attached["stats"]["unfollowed_privileged"], 1, "{}", attached["stats"]);
}

#[test]
fn daemon_errors_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("none.sock");
    let output = Command::new(reprotrace_bin())
        .args(["run", "--socket", missing.to_str().expect("utf-8"), "-o"])
        .arg(dir.path().join("m.json"))
        .args(["--", "true"])
        .output()
        .expect("reprotrace run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("reprotrace daemon") && stderr.contains("--no-daemon"), "{stderr}");

    let daemon = Daemon::start(dir.path());
    let second = Command::new(reprotrace_bin())
        .args(["daemon", "--socket", daemon.socket_arg()])
        .output()
        .expect("second daemon");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("already listens"), "{stderr}");
}
