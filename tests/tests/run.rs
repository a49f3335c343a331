//! `reprotrace run` on real workloads, with both backends.
//!
//! These tests load eBPF programs: they need root, and fail (never skip) when
//! the programs cannot load.

use std::{collections::BTreeSet, os::unix::ffi::OsStrExt, path::Path, process::Command};

use reprotrace_tests::{
    assert_complete, assert_same_run, audit, audit_with, data_paths, paths_under, prepare_file_ops, reprotrace_bin,
    BACKENDS,
};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

fn reset_outputs(work: &Path) {
    let outputs = work.join("outputs");
    std::fs::remove_dir_all(&outputs).expect("remove outputs");
    std::fs::create_dir_all(&outputs).expect("outputs dir");
}

#[test]
fn python_file_operations_give_exact_data_and_equal_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    prepare_file_ops(&work);
    let work_arg = work.to_str().expect("utf-8 temp path");

    let mut audits = Vec::new();
    for backend in BACKENDS {
        reset_outputs(&work);
        let audit = audit(backend, dir.path(), &manifests, &[PYTHON, "work/file_ops.py", work_arg]);
        assert!(audit.output.status.success(), "{backend}: {}", audit.stderr());
        assert_complete(&audit);
        assert_eq!(
            data_paths(&audit.manifest, "inputs"),
            paths_under(
                &work,
                &[
                    "file_ops.py",
                    "inputs/a.txt",
                    "inputs/after_chdir.txt",
                    "inputs/dirfd.txt",
                    "inputs/fchdir.txt",
                    "inputs/relative.txt",
                    "inputs/thread1.txt",
                    "inputs/thread2.txt",
                ]
            ),
            "{backend} inputs"
        );
        assert_eq!(
            data_paths(&audit.manifest, "outputs"),
            paths_under(&work, &["outputs/b.txt", "outputs/caf\\xe9.txt", "outputs/child.txt", "outputs/result.json"]),
            "{backend} outputs"
        );
        let sizes: Vec<&Value> =
            audit.manifest["data"]["outputs"].as_array().expect("outputs").iter().map(|o| &o["size"]).collect();
        assert_eq!(sizes, [&Value::from(18), &Value::from(5), &Value::from(15), &Value::from(13)], "{backend} sizes");
        // "contents of a.txt\n", copied by cat.
        assert_eq!(
            audit.manifest["data"]["outputs"][0]["sha256"],
            "1cabe73d30aa48e0045679739017004f536219dfa6768c04f53d8aa248120433",
            "{backend} hash"
        );
        // The tree: python, its forked child, sh and cat.
        let exes: BTreeSet<&str> = audit.manifest["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter_map(|p| p["exe"].as_str())
            .collect();
        assert_eq!(exes, BTreeSet::from([PYTHON, "/usr/bin/sh", "/usr/bin/cat"]), "{backend} executables");
        assert_eq!(audit.manifest["processes"].as_array().expect("processes").len(), 4, "{backend} processes");
        audits.push(audit);
    }
    assert_same_run(&audits[0].manifest, &audits[1].manifest);
}

#[test]
fn shell_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("words.txt"), "pear\napple\nfig\n").expect("input");
    let mut audits = Vec::new();
    for backend in BACKENDS {
        let audit =
            audit(backend, dir.path(), dir.path(), &["sh", "-c", "cat words.txt | tr a-z A-Z | sort > sorted.txt"]);
        assert!(audit.output.status.success(), "{backend}: {}", audit.stderr());
        assert_complete(&audit);
        assert_eq!(data_paths(&audit.manifest, "inputs"), paths_under(dir.path(), &["words.txt"]), "{backend}");
        assert_eq!(data_paths(&audit.manifest, "outputs"), paths_under(dir.path(), &["sorted.txt"]), "{backend}");
        audits.push(audit);
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("sorted.txt")).expect("output"), "APPLE\nFIG\nPEAR\n");
    assert_same_run(&audits[0].manifest, &audits[1].manifest);
}

#[test]
fn failed_exec_is_recorded_and_exit_code_passes_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data.txt"), "not a program\n").expect("data file");
    let script = "env no-such-command-xyz 2>/dev/null; ./data.txt 2>/dev/null; exit 7";
    let mut audits = Vec::new();
    for backend in BACKENDS {
        let audit = audit(backend, dir.path(), dir.path(), &["sh", "-c", script]);
        assert_eq!(audit.output.status.code(), Some(7), "{backend}: {}", audit.stderr());
        assert_eq!(audit.manifest["exit_code"], 7);
        assert_complete(&audit);
        let failures: Vec<&Value> = audit.manifest["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .flat_map(|p| p["failed_execs"].as_array().expect("failed_execs"))
            .collect();
        assert!(
            failures.iter().any(|f| f["path"] == "/usr/bin/no-such-command-xyz" && f["error"] == "ENOENT"),
            "{backend}: {failures:?}"
        );
        let not_a_program = format!("{}/data.txt", dir.path().display());
        assert!(
            failures.iter().any(|f| f["path"] == not_a_program.as_str() && f["error"] == "EACCES"),
            "{backend}: {failures:?}"
        );
        audits.push(audit);
    }
    assert_same_run(&audits[0].manifest, &audits[1].manifest);
}

#[test]
fn a_killed_command_reports_its_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    for backend in BACKENDS {
        let audit = audit(backend, dir.path(), dir.path(), &["sh", "-c", "kill -KILL $$"]);
        assert_eq!(audit.output.status.code(), Some(128 + 9), "{backend}: {}", audit.stderr());
        assert_eq!(audit.manifest["exit_code"], Value::Null, "{backend}");
        assert_eq!(audit.manifest["signal"], "SIGKILL", "{backend}");
    }
}

/// A command that is not there exits 127, one that cannot run 126, as in a shell.
#[test]
fn a_missing_command_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("not-executable"), "data").expect("file");
    for backend in BACKENDS {
        for (command, code, message) in [
            ("no-such-command-xyz", 127, "command not found: no-such-command-xyz"),
            ("./doesntexist", 127, "./doesntexist: no such file"),
            ("./not-executable", 126, "./not-executable is not an executable file"),
        ] {
            let output = Command::new(reprotrace_bin())
                .current_dir(dir.path())
                .args(["run", "--backend", backend, "--", command])
                .output()
                .expect("running reprotrace");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(code), "{backend}: {stderr}");
            assert!(stderr.contains(message), "{backend}: {stderr}");
        }
    }
}

#[test]
fn without_privileges_ebpf_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"])
        .arg(reprotrace_bin())
        .args(["run", "-o", "/dev/null", "--", "true"])
        .current_dir(dir.path())
        .output()
        .expect("running setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("needs root") && stderr.contains("--backend strace"), "{stderr}");
}

/// Starts `reprotrace run` of a Python `program` in `dir`, and returns once the
/// program has created `dir/ready`.
fn run_until_ready(dir: &Path, backend: &str, manifest: &Path, program: &str) -> std::process::Child {
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(reprotrace_bin())
        .current_dir(dir)
        .args(["run", "--quiet", "--backend", backend, "-o"])
        .arg(manifest)
        .args(["--", PYTHON, "-c", program])
        .spawn()
        .expect("running reprotrace");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready.exists() {
        assert!(std::time::Instant::now() < deadline, "{backend}: the workload never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

#[test]
fn sigterm_is_passed_on_and_the_manifest_still_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = "import signal, sys, time\n\
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))\n\
        open('ready', 'w').close()\n\
        time.sleep(60)\n";
    for backend in BACKENDS {
        let manifest = dir.path().join(format!("{backend}.json"));
        let mut child = run_until_ready(dir.path(), backend, &manifest, program);
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait().expect("reprotrace exits");
        assert_eq!(status.code(), Some(5), "{backend}");
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
        reprotrace_tests::assert_valid(&manifest);
        assert_eq!(manifest["exit_code"], 5, "{backend}");
        assert_eq!(manifest["stats"]["complete"], true, "{backend}");
    }
}

#[test]
fn a_second_sigterm_stops_waiting_and_writes_what_was_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ignores the first SIGTERM reprotrace passes on, and would run for a minute.
    let program = "import os, signal, time\n\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
        open('seen.txt', 'w').write('x')\n\
        open('pid', 'w').write(str(os.getpid()))\n\
        open('ready', 'w').close()\n\
        time.sleep(60)\n";
    for backend in BACKENDS {
        let manifest = dir.path().join(format!("{backend}.json"));
        let started = std::time::Instant::now();
        let mut child = run_until_ready(dir.path(), backend, &manifest, program);
        for _ in 0..2 {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let status = child.wait().expect("reprotrace exits");
        // The program outlives the audit by design: it goes now.
        let program_pid: i32 =
            std::fs::read_to_string(dir.path().join("pid")).expect("pid").trim().parse().expect("a pid");
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(program_pid, libc::SIGKILL) };
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{backend}: reprotrace kept waiting");
        assert_eq!(status.code(), Some(130), "{backend}: an interrupted audit's code");
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
        reprotrace_tests::assert_valid(&manifest);
        assert_eq!(manifest["stats"]["complete"], false, "{backend}");
        assert_eq!(manifest["stats"]["interrupted"], true, "{backend}");
        assert!(data_paths(&manifest, "outputs").contains(&format!("{}/seen.txt", dir.path().display())), "{backend}");
    }
}

/// Through the real sudo, from a real user: the command runs as that user,
/// with that user's `HOME`, `USER` and `LOGNAME` (sudo leaves root's), and
/// the manifest is theirs.
#[test]
fn under_sudo_the_command_runs_as_the_invoking_user() {
    let user = reprotrace_tests::TestUser::create("id");
    // The manifest is written with the user's rights: in a directory of theirs.
    let home = user.home();
    for backend in BACKENDS {
        let manifest = home.path().join(format!("{backend}.json"));
        let output = user
            .sudo(&["run", "--quiet", "--backend", backend, "-o"])
            .arg(&manifest)
            .args(["--", "sh", "-c", "id -u; echo \"$HOME $USER $LOGNAME\""])
            .current_dir(home.path())
            .output()
            .expect("running reprotrace");
        assert!(output.status.success(), "{backend}: {}", String::from_utf8_lossy(&output.stderr));
        let passwd = Command::new("getent").args(["passwd", &user.name]).output().expect("getent");
        let passwd = String::from_utf8_lossy(&passwd.stdout);
        let user_home = passwd.trim().split(':').nth(5).expect("a home directory");
        let name = &user.name;
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("{}\n{user_home} {name} {name}\n", user.uid),
            "{backend}: the user's identity"
        );
        let written = std::fs::metadata(&manifest).expect("manifest");
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&written), user.uid, "{backend}: the user's manifest");
        // The real sudo's mark, and the environment the command had, recorded.
        let recorded: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
        assert_eq!(recorded["environment"]["SUDO_USER"], name.as_str(), "{backend}");
        assert!(recorded["environment"]["SUDO_COMMAND"].is_string(), "{backend}: not through sudo?");
        assert_eq!(recorded["environment"]["HOME"], user_home, "{backend}");
    }
}

/// K threads × N opens of distinct files: exactly those files, and every event accounted for.
#[test]
fn an_open_storm_from_threads_loses_nothing() {
    const THREADS: usize = 4;
    const FILES: usize = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let storm = dir.path().join("storm");
    std::fs::create_dir(&storm).expect("storm dir");
    for index in 0..FILES {
        std::fs::write(storm.join(format!("f{index:05}")), b"x").expect("file");
    }
    let script = reprotrace_tests::repo_root().join("tests/workloads/open_storm.py");
    let script = script.to_str().expect("utf-8 path");
    let storm_arg = storm.to_str().expect("utf-8 path");
    for backend in BACKENDS {
        let audit = audit(backend, dir.path(), dir.path(), &[PYTHON, script, storm_arg, &THREADS.to_string()]);
        assert!(audit.output.status.success(), "{backend}: {}", audit.stderr());
        assert_complete(&audit);
        let inputs = data_paths(&audit.manifest, "inputs");
        let stormed: Vec<&String> = inputs.iter().filter(|path| path.starts_with(storm_arg)).collect();
        assert_eq!(stormed.len(), FILES, "{backend}: every file opened once is in the manifest");
    }
}

/// The thread that reads the ring buffer runs above the command from before
/// its first event (a command with more threads than the host has cores
/// left it a thread's share of them, and the kernel dropped the events it had
/// no room for); the command keeps the priority reprotrace was started with.
#[test]
fn the_ring_reader_raises_itself_and_the_command_keeps_its_priority() {
    let dir = tempfile::tempdir().expect("tempdir");
    let burst = reprotrace_tests::burst_files(dir.path(), "burst", 100);
    let (command, reprotrace, _) =
        reprotrace_tests::priorities_under(&["--no-daemon"], &dir.path().join("nice.json"), Some(&burst), None);
    assert_eq!(command, 5, "the command runs at the priority reprotrace was given");
    assert!(reprotrace.contains(&-10), "the reader raised itself to nice -10: {reprotrace:?}");
}

/// With a ring buffer too small for the burst, the loss is counted, the
/// manifest says it is incomplete, and the summary warns.
#[test]
fn lost_events_are_counted_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest_path = dir.path().join("small-ring.json");
    let output = Command::new(reprotrace_bin())
        .current_dir(dir.path())
        .args(["run", "--ring-buffer-size", "4K", "-o"])
        .arg(&manifest_path)
        .args(["--", "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do cat /etc/hostname /etc/hostname > /dev/null; done"])
        .output()
        .expect("reprotrace run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    reprotrace_tests::assert_valid(&manifest);
    let lost = manifest["stats"]["lost_events"].as_u64().expect("lost_events");
    assert!(lost > 0, "a 4 KiB ring cannot hold an exec's events: {}", manifest["stats"]);
    assert_eq!(manifest["stats"]["complete"], false);
    assert!(stderr.contains("may be incomplete") && stderr.contains("--ring-buffer-size"), "{stderr}");
}

/// On a terminal, a line when the run starts and a status line while it
/// runs; off a terminal (every other test), neither.
#[test]
fn a_terminal_gets_a_status_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "{} run --backend strace -o {} -- sh -c 'sleep 1.2; echo done'",
        reprotrace_bin().display(),
        dir.path().join("m.json").display()
    );
    // `script` gives the command a pseudo-terminal, and records what it printed.
    let output = Command::new("script").args(["-qec", &command, "/dev/null"]).output().expect("script (util-linux)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("reprotrace: auditing `sh -c sleep 1.2; echo done` (strace backend"), "{text}");
    assert!(text.contains("processes") && text.contains("events, 0 lost"), "{text}");
    assert!(text.contains("manifest written to"), "{text}");
}

/// A data file's hash is remembered (in root's cache, for root's audits) and
/// taken again without reading the file only while it is unchanged:
/// rewritten with the same size and its modification time put back, it is
/// read and hashed anew; `--rehash` reads it whatever the cache says.
#[test]
fn a_remembered_hash_stands_only_for_an_unchanged_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    let input = dir.path().join("input.csv");
    // Contents of this test's own, so that the cache's entry is this file's.
    std::fs::write(&input, format!("{}\n", dir.path().display())).expect("write");
    // Hashes are remembered only for files last changed over 2 s before.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let input_arg = input.to_str().expect("utf-8 temp path");
    let hash_in = |options: &[&str], name: &str| -> String {
        let audit = audit_with(options, name, dir.path(), &manifests, &["/usr/bin/cat", input_arg]);
        assert!(audit.output.status.success(), "{name}: {}", audit.stderr());
        let inputs = audit.manifest["data"]["inputs"].as_array().expect("inputs").clone();
        let entry = inputs.iter().find(|entry| entry["path"] == input_arg).expect("the input is data");
        entry["sha256"].as_str().expect("hashed").to_string()
    };
    let written = reprotrace::classify::sha256_of(input.as_os_str().as_bytes()).expect("hash");
    assert_eq!(hash_in(&["--no-daemon"], "first"), written);
    // In the journal of root's cache, or in its records if the journal was full.
    let cache: Vec<u8> = ["hashes-journal-v1.bin", "hashes-v2.bin"]
        .iter()
        .flat_map(|name| std::fs::read(format!("/var/cache/reprotrace/{name}")).unwrap_or_default())
        .collect();
    assert!(cache.windows(written.len()).any(|window| window == written.as_bytes()), "the hash is remembered");
    assert_eq!(hash_in(&["--no-daemon"], "again"), written);
    // Other contents of the same size, the modification time put back.
    let mtime = std::fs::metadata(&input).expect("stat").modified().expect("mtime");
    let contents = std::fs::read(&input).expect("read");
    std::fs::write(&input, contents.iter().map(|byte| byte ^ 1).collect::<Vec<u8>>()).expect("rewrite");
    std::fs::File::options().write(true).open(&input).expect("open").set_modified(mtime).expect("mtime back");
    let rewritten = reprotrace::classify::sha256_of(input.as_os_str().as_bytes()).expect("hash");
    assert_ne!(rewritten, written);
    assert_eq!(hash_in(&["--no-daemon"], "rewritten"), rewritten, "a file whose change time moved is read again");
    assert_eq!(hash_in(&["--no-daemon", "--rehash"], "rehashed"), rewritten);
}
