//! Fidelity: what real programs do that a tracer can get wrong: execs the
//! syscall-entry view misses, long argvs and paths, mount namespaces and
//! chroot, renamed directories, symlinked programs, interpreters, stat-only
//! dependencies, Debian's Python, io_uring, memfd, the traced environment.
//! Each case runs under both backends; where strace can see the activity the
//! two manifests must be equal, and where it cannot the test says what differs.
//!
//! These tests load eBPF programs: they need root, and fail (never skip) when
//! the programs cannot load. The C programs are compiled with gcc in the test.

use std::{collections::BTreeSet, os::unix::ffi::OsStrExt, path::PathBuf, process::Command};

use reprotrace_tests::{
    assert_complete, assert_same_run, assert_valid, audit, data_paths, paths_under, repo_root, reprotrace_bin,
    sha256_of, spawn_until, Audit, BACKENDS,
};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// A temporary directory with `work/` (the audited program's cwd) and `manifests/`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("work")).expect("work dir");
        std::fs::create_dir_all(dir.path().join("manifests")).expect("manifest dir");
        Scratch { dir }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// `work/name`, as the manifest spells it.
    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.work().display())
    }

    fn write(&self, name: &str, contents: &str) {
        let path = self.work().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("parent dir");
        std::fs::write(path, contents).expect("writing a work file");
    }

    /// Compiles tests/workloads/fidelity/NAME.c into work/NAME.
    fn compile(&self, name: &str, flags: &[&str]) -> String {
        let source = repo_root().join(format!("tests/workloads/fidelity/{name}.c"));
        let output = Command::new("gcc")
            .args(["-O1", "-Wall", "-o"])
            .arg(self.work().join(name))
            .arg(&source)
            .args(flags)
            .output()
            .expect("running gcc (`cargo xtask setup` installs it)");
        assert!(output.status.success(), "gcc {name}.c: {}", String::from_utf8_lossy(&output.stderr));
        format!("./{name}")
    }

    /// Audits `command` in `work/` with one backend; fails if reprotrace or the command failed.
    fn audit(&self, backend: &str, command: &[&str]) -> Audit {
        let audit = audit(backend, &self.work(), &self.dir.path().join("manifests"), command);
        assert!(audit.output.status.success(), "{backend}: {command:?} failed:\n{}", audit.stderr());
        audit
    }

    /// Starts `./program wait` in the work directory, attaches to it with
    /// `backend` once it waits for a file named `go`, lets it go, and returns
    /// the attach's manifest once both ended.
    fn attach_before_go(&self, program: &str, backend: &str) -> Value {
        let _ = std::fs::remove_file(self.path("go"));
        let mut worker = Command::new(program).arg("wait").current_dir(self.work()).spawn().expect("worker");
        let manifest_path = self.dir.path().join(format!("manifests/attach-{}-{backend}.json", worker.id()));
        let mut tracer = spawn_until(
            Command::new(reprotrace_bin())
                .args(["attach", "--no-daemon", "--backend", backend, "--pid"])
                .arg(worker.id().to_string())
                .arg("-o")
                .arg(&manifest_path),
            "attached to",
        );
        std::fs::write(self.path("go"), "").expect("go");
        assert!(worker.wait().expect("worker").success());
        assert!(tracer.wait().expect("attach").success());
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        manifest
    }

    /// Audits `command` with both backends, `reset` run before each.
    fn audit_both(&self, command: &[&str], reset: impl Fn()) -> [Audit; 2] {
        BACKENDS.map(|backend| {
            reset();
            self.audit(backend, command)
        })
    }
}

/// Audits with both backends, asserts both complete and equal, and returns the eBPF one.
fn audit_equal(scratch: &Scratch, command: &[&str], reset: impl Fn()) -> Audit {
    let [ebpf, strace] = scratch.audit_both(command, reset);
    assert_complete(&ebpf);
    assert_complete(&strace);
    assert_same_run(&ebpf.manifest, &strace.manifest);
    ebpf
}

fn processes(manifest: &Value) -> &Vec<Value> {
    manifest["processes"].as_array().expect("processes")
}

/// The one process whose `exe` is `exe`.
fn process_running<'a>(manifest: &'a Value, exe: &str) -> &'a Value {
    let found: Vec<&Value> = processes(manifest).iter().filter(|process| process["exe"] == exe).collect();
    assert_eq!(found.len(), 1, "one process running {exe}: {:#}", manifest["processes"]);
    found[0]
}

fn file_entry<'a>(manifest: &'a Value, path: &str) -> &'a Value {
    manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|file| file["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in files[]: {:#}", manifest["files"]))
}

fn system_packages(manifest: &Value) -> BTreeSet<String> {
    manifest["software"]["system_packages"]
        .as_array()
        .expect("system packages")
        .iter()
        .map(|package| package["name"].as_str().expect("name").to_string())
        .collect()
}

/// The dpkg package owning `path` once the links its name goes through are
/// followed (only the name's: dpkg knows `/bin/dash`, not `/usr/bin/dash`).
fn package_owning(path: &str) -> String {
    let mut resolved = PathBuf::from(path);
    while let Ok(target) = std::fs::read_link(&resolved) {
        resolved = resolved.parent().expect("parent").join(target);
    }
    let output = Command::new("dpkg").arg("-S").arg(&resolved).output().expect("dpkg -S");
    assert!(output.status.success(), "no package owns {}", resolved.display());
    let text = String::from_utf8(output.stdout).expect("dpkg output");
    text.split(':').next().expect("package name").to_string()
}

fn stats<'a>(audit: &'a Audit, field: &str) -> &'a Value {
    &audit.manifest["stats"][field]
}

#[test]
fn execveat_and_fexecve_are_the_new_image() {
    let scratch = Scratch::new();
    scratch.write("input.txt", "read by cat\n");
    let execveat = scratch.compile("execveat", &[]);
    let fexecve = "import os\nfd = os.open('/usr/bin/cat', os.O_RDONLY)\nos.execve(fd, ['cat', 'input.txt'], {})\n";
    for command in [vec![execveat.as_str()], vec![PYTHON, "-c", fexecve]] {
        let audit = audit_equal(&scratch, &command, || {});
        let cat = process_running(&audit.manifest, "/usr/bin/cat");
        assert_eq!(cat["argv"], serde_json::json!(["cat", "input.txt"]), "{command:?}");
        assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from([scratch.path("input.txt")]), "{command:?}");
    }
}

#[test]
fn an_exec_from_a_thread_runs_in_the_cwd_another_thread_set() {
    let scratch = Scratch::new();
    scratch.write("sub/input.txt", "read after another thread's chdir\n");
    std::fs::copy("/usr/bin/cat", scratch.work().join("sub/mycat")).expect("copy cat");
    let threads = scratch.compile("threads", &["-pthread"]);
    // The leader waiting in a system call, then spinning in user space.
    for mode in ["", "spin"] {
        let audit = audit_equal(&scratch, &[threads.as_str(), mode], || {});
        let mycat = process_running(&audit.manifest, &scratch.path("sub/mycat"));
        assert_eq!(mycat["argv"], serde_json::json!(["mycat", "input.txt"]), "{mode}");
        assert_eq!(mycat["cwd"], scratch.path("sub"), "{mode}");
        assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from([scratch.path("sub/input.txt")]), "{mode}");
    }

    // The same from Python: a thread calls os.execv while the main thread waits.
    let script = "import os, threading\n\
                  threading.Thread(target=os.execv, args=('/usr/bin/cat', ['cat', 'sub/input.txt'])).start()\n\
                  threading.Event().wait()\n";
    let audit = audit_equal(&scratch, &[PYTHON, "-c", script], || {});
    let cat = process_running(&audit.manifest, "/usr/bin/cat");
    assert_eq!(cat["argv"], serde_json::json!(["cat", "sub/input.txt"]));
    assert!(data_paths(&audit.manifest, "inputs").contains(&scratch.path("sub/input.txt")));
}

/// The programs a kernel before 6.17 runs, which read kernel memory by
/// helper calls (`--helper-reads`), make the manifest this kernel's make,
/// which read it by loads through `bpf_rdonly_cast`: the syscalls'
/// registers, exit statuses, exec'd argvs and opens' plain-file checks are
/// read both ways.
#[test]
fn kernel_memory_read_by_helpers_makes_the_manifest_loads_make() {
    let scratch = Scratch::new();
    scratch.write("input.txt", "read twice\n");
    let command = ["/bin/sh", "-c", "cat input.txt input.txt > output.txt; /bin/sh -c 'exit 3'; exit 5"];
    let manifests = scratch.dir.path().join("manifests");
    let [loads, helpers] = [("loads", &["--no-daemon"][..]), ("helpers", &["--no-daemon", "--helper-reads"])]
        .map(|(name, options)| reprotrace_tests::audit_with(options, name, &scratch.work(), &manifests, &command));
    for audit in [&loads, &helpers] {
        assert_complete(audit);
        assert_eq!(audit.output.status.code(), Some(5), "{}", audit.stderr());
        let statuses: BTreeSet<i64> =
            processes(&audit.manifest).iter().filter_map(|process| process["exit_code"].as_i64()).collect();
        assert_eq!(statuses, BTreeSet::from([0, 3, 5]));
        assert_eq!(
            process_running(&audit.manifest, "/usr/bin/cat")["argv"],
            serde_json::json!(["cat", "input.txt", "input.txt"])
        );
        assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from([scratch.path("input.txt")]));
        assert_eq!(data_paths(&audit.manifest, "outputs"), BTreeSet::from([scratch.path("output.txt")]));
    }
    assert_same_run(&loads.manifest, &helpers.manifest);
}

#[test]
fn exec_strings_in_untouched_pages_are_read_from_the_new_image() {
    let scratch = Scratch::new();
    std::fs::write(scratch.work().join("strings"), b"/usr/bin/cat\0cat\0first.txt\0second.txt\0").expect("strings");
    scratch.write("first.txt", "first\n");
    scratch.write("second.txt", "second\n");
    let untouched = scratch.compile("untouched", &[]);
    let audit = audit_equal(&scratch, &[untouched.as_str()], || {});
    let argvs: BTreeSet<String> = processes(&audit.manifest)
        .iter()
        .filter(|process| process["exe"] == "/usr/bin/cat")
        .map(|process| process["argv"].to_string())
        .collect();
    assert_eq!(argvs, BTreeSet::from([r#"["cat","first.txt"]"#.into(), r#"["cat","second.txt"]"#.into()]));
    assert_eq!(
        data_paths(&audit.manifest, "inputs"),
        paths_under(&scratch.work(), &["first.txt", "second.txt", "strings"])
    );
}

/// The eBPF programs see 64-bit syscalls only: a 32-bit process makes the
/// audit incomplete, loudly, also when its program was deleted at once or it
/// ran before the audit attached. strace decodes both ABIs and sees
/// everything.
#[test]
fn a_32_bit_process_is_seen_by_strace_and_makes_an_ebpf_audit_incomplete() {
    let scratch = Scratch::new();
    scratch.write("input.txt", "thirty-two\n");
    let ia32 = scratch.compile("ia32", &["-m32"]);
    let [ebpf, strace] = scratch.audit_both(&[ia32.as_str()], || {});

    assert_eq!(stats(&ebpf, "ia32_processes"), 1, "{}", ebpf.manifest["stats"]);
    assert_eq!(stats(&ebpf, "complete"), false);
    assert!(ebpf.stderr().contains("32-bit"), "no warning:\n{}", ebpf.stderr());

    assert_complete(&strace);
    assert_eq!(stats(&strace, "ia32_processes"), 1);
    assert_eq!(data_paths(&strace.manifest, "inputs"), BTreeSet::from([scratch.path("input.txt")]));
    assert_eq!(data_paths(&strace.manifest, "outputs"), BTreeSet::from([scratch.path("out.txt")]));
    let program = process_running(&strace.manifest, &scratch.path("ia32"));
    assert_eq!(program["argv"], serde_json::json!([ia32]));

    // The kernel reports a 32-bit process itself: one whose program is gone
    // before user space could read it, or one running before the audit.
    let gone = scratch.work().join("gone32");
    let copy = || {
        std::fs::copy(scratch.work().join("ia32"), &gone).expect("copy");
    };
    let [ebpf, strace] = scratch.audit_both(&["./gone32", "unlink"], copy);
    assert!(!gone.exists());
    assert_eq!(stats(&ebpf, "ia32_processes"), 1, "{}", ebpf.manifest["stats"]);
    assert_eq!(stats(&ebpf, "complete"), false);
    assert_eq!(data_paths(&strace.manifest, "outputs"), BTreeSet::from([scratch.path("out.txt")]));

    let manifest = scratch.attach_before_go(&ia32, "ebpf");
    assert_eq!(manifest["stats"]["ia32_processes"], 1, "{}", manifest["stats"]);
    assert_eq!(manifest["stats"]["complete"], false);
}

/// A Python script that runs /usr/bin/true with `count` arguments of `length` bytes.
fn run_true_with(count: usize, length: usize) -> String {
    format!(
        "import subprocess\n\
         subprocess.run(['/usr/bin/true'] + [f'{{i:05d}}' + 'x' * {pad} for i in range({count})], check=True)\n",
        pad = length - 5,
    )
}

fn long_argv(count: usize, length: usize) -> Value {
    let mut argv = vec!["/usr/bin/true".to_string()];
    argv.extend((0..count).map(|i| format!("{i:05}{}", "x".repeat(length - 5))));
    Value::from(argv)
}

#[test]
fn long_argvs_are_exact_or_marked_truncated() {
    let scratch = Scratch::new();
    // 4,096 arguments, 240 KiB: both backends have it all.
    let audit = audit_equal(&scratch, &[PYTHON, "-c", &run_true_with(4096, 59)], || {});
    let program = process_running(&audit.manifest, "/usr/bin/true");
    assert_eq!(program["argv"], long_argv(4096, 59));
    assert!(program.get("argv_truncated").is_none());

    // 300,000 bytes: beyond what the eBPF programs read. strace prints it all.
    let [ebpf, strace] = scratch.audit_both(&[PYTHON, "-c", &run_true_with(5000, 59)], || {});
    let program = process_running(&ebpf.manifest, "/usr/bin/true");
    assert_eq!(program["argv_truncated"], true);
    let kept = program["argv"].as_array().expect("argv");
    assert_eq!(kept[..], long_argv(5000, 59).as_array().expect("argv")[..kept.len()], "a prefix is kept");
    assert_eq!(stats(&ebpf, "truncated_argvs"), 1);
    assert_eq!(stats(&ebpf, "complete"), false);
    assert!(ebpf.stderr().contains("argv"), "no warning:\n{}", ebpf.stderr());
    assert_complete(&strace);
    assert_eq!(process_running(&strace.manifest, "/usr/bin/true")["argv"], long_argv(5000, 59));

    // One argument as long as the kernel allows (MAX_ARG_STRLEN, its NUL
    // included): both backends have it whole.
    let audit = audit_equal(&scratch, &[PYTHON, "-c", &run_true_with(1, 131_071)], || {});
    assert_eq!(process_running(&audit.manifest, "/usr/bin/true")["argv"], long_argv(1, 131_071));
}

#[test]
fn an_output_deeper_than_path_max_is_data() {
    let scratch = Scratch::new();
    let names: Vec<String> = (0..20).map(|level| format!("d{level:02}{}", "x".repeat(250))).collect();
    let script = format!(
        "import os\nfor name in {names:?}:\n    os.mkdir(name)\n    os.chdir(name)\nopen('out.txt', 'w').write('deep\\n')\n"
    );
    let audit = audit_equal(&scratch, &[PYTHON, "-c", &script], || {
        let _ = std::fs::remove_dir_all(scratch.work().join(&names[0]));
    });
    let deep = scratch.path(&format!("{}/out.txt", names.join("/")));
    assert!(deep.len() > 4096, "{} bytes", deep.len());
    let outputs = audit.manifest["data"]["outputs"].as_array().expect("outputs");
    let output = outputs.iter().find(|output| output["path"] == deep.as_str()).expect("the deep output");
    assert_eq!(output["sha256"], sha256_of("deep\n"));
}

/// `unshare -m`, then a bind mount: the program names `view/…`, the files are
/// in `real/`, and a decoy sits at `view/…` on the host.
#[test]
fn a_bind_mount_in_a_new_mount_namespace_is_followed_to_the_real_files() {
    let scratch = Scratch::new();
    scratch.write("real/input.txt", "real\n");
    scratch.write("view/input.txt", "decoy\n");
    let script = "mount --bind real view && cat view/input.txt > view/out.txt";
    let audit = audit_equal(&scratch, &["unshare", "-m", "sh", "-c", script], || {
        let _ = std::fs::remove_file(scratch.work().join("real/out.txt"));
    });
    assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from([scratch.path("real/input.txt")]));
    assert_eq!(data_paths(&audit.manifest, "outputs"), BTreeSet::from([scratch.path("real/out.txt")]));
    assert_eq!(audit.manifest["data"]["inputs"][0]["sha256"], sha256_of("real\n"));
    assert_eq!(audit.manifest["data"]["outputs"][0]["sha256"], sha256_of("real\n"));
}

/// Children of clone(2) share with their parent what their flags say: one in
/// a new mount namespace reads through its bind mount, which its parent does
/// not see; one sharing the descriptors opens a directory its parent then
/// opens under; one sharing the working directory changes it for its parent.
/// (The eBPF backend reads what a child shares off the two tasks.)
#[test]
fn children_of_clone_share_what_their_flags_say() {
    let scratch = Scratch::new();
    scratch.write("real/input.txt", "real\n");
    scratch.write("real/second.txt", "second\n");
    scratch.write("real/third.txt", "third\n");
    scratch.write("view/input.txt", "decoy\n");
    let program = scratch.compile("clone_sharing", &[]);
    let audit = audit_equal(&scratch, &[program.as_str()], || {});
    let expected =
        ["real/input.txt", "view/input.txt", "real/second.txt", "real/third.txt"].map(|path| scratch.path(path));
    assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from(expected));
}

/// Mounts the run makes in reprotrace's own mount namespace (a root run, no
/// `unshare` in the command) are gone when files are hashed: a bind mount's
/// files are recorded where they are, a tmpfs's are marked and never hashed,
/// and the decoys under them are never taken for them.
#[test]
fn mounts_in_the_auditors_own_namespace_are_followed() {
    let scratch = Scratch::new();
    scratch.write("real/input.txt", "real\n");
    scratch.write("view/input.txt", "decoy\n");
    scratch.write("view/scratch.txt", "decoy\n");
    let script = "mount --bind real view && cat view/input.txt > view/out.txt && umount view && \
                  mount -t tmpfs none view && echo private > view/scratch.txt && umount view";
    for backend in BACKENDS {
        let _ = std::fs::remove_file(scratch.work().join("real/out.txt"));
        let manifest_path = scratch.dir.path().join(format!("manifests/own-namespace-{backend}.json"));
        // reprotrace in a private namespace of its own, so that the run's
        // mounts are in the auditor's namespace and never on the host's.
        let output = Command::new("unshare")
            .args(["-m", "--propagation", "private"])
            .arg(reprotrace_bin())
            .args(["run", "--backend", backend, "-o"])
            .arg(&manifest_path)
            .args(["--", "sh", "-c", script])
            .current_dir(scratch.work())
            .output()
            .expect("unshare");
        assert!(output.status.success(), "{backend}: {}", String::from_utf8_lossy(&output.stderr));
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        assert_eq!(data_paths(&manifest, "inputs"), BTreeSet::from([scratch.path("real/input.txt")]), "{backend}");
        assert_eq!(manifest["data"]["inputs"][0]["sha256"], sha256_of("real\n"), "{backend}");
        let outputs = manifest["data"]["outputs"].as_array().expect("outputs");
        let real_out = outputs.iter().find(|output| output["path"] == scratch.path("real/out.txt").as_str());
        assert_eq!(real_out.expect("real/out.txt")["sha256"], sha256_of("real\n"), "{backend}");
        let hidden = file_entry(&manifest, &scratch.path("view/scratch.txt"));
        assert!(hidden["namespace"].is_u64(), "{backend}: {hidden}");
        for output in outputs {
            assert!(output["sha256"] != sha256_of("decoy\n"), "{backend}: a decoy hashed: {output}");
        }
    }
}

/// A tmpfs mounted in a new namespace is not on the host: its files are
/// recorded with the namespace, never hashed, never confused with the decoy.
#[test]
fn files_in_a_namespace_only_tmpfs_are_marked_and_never_hashed() {
    let scratch = Scratch::new();
    scratch.write("view/scratch.txt", "decoy\n");
    let script = "mount -t tmpfs none view && echo private > view/scratch.txt && cat view/scratch.txt";
    let audit = audit_equal(&scratch, &["unshare", "-m", "sh", "-c", script], || {});
    let scratch_file = scratch.path("view/scratch.txt");
    let entry = file_entry(&audit.manifest, &scratch_file);
    let namespace = entry["namespace"].as_u64().expect("a namespace pid");
    // Named by the process that made it: unshare, which then exec'd sh.
    let maker = processes(&audit.manifest).iter().find(|process| process["pid"] == namespace).expect("maker");
    assert_eq!(maker["argv"][0], "sh", "{maker}");
    assert_eq!(file_entry(&audit.manifest, "/usr/bin/unshare")["access"], "exec");
    for output in audit.manifest["data"]["outputs"].as_array().expect("outputs") {
        assert!(output["path"] != scratch_file.as_str() || output["sha256"].is_null(), "hashed: {output}");
    }
    assert_eq!(std::fs::read_to_string(scratch.work().join("view/scratch.txt")).expect("decoy"), "decoy\n");
}

/// `pivot_root` into a bind mount of the host's root, the old root put at
/// `/mnt`: a file named through the new root and through the old one is the
/// same host file, recorded once, hashed as it is.
#[test]
fn paths_after_pivot_root_are_the_hosts() {
    let scratch = Scratch::new();
    scratch.write("data.txt", "real\n");
    let data = scratch.path("data.txt");
    let newroot = scratch.path("newroot");
    std::fs::create_dir_all(&newroot).expect("newroot");
    let script = format!(
        "mount --bind / {newroot} && cd {newroot} && pivot_root . mnt && cat {data} /mnt{data} > {out}",
        out = scratch.path("out.txt")
    );
    let audit = audit_equal(&scratch, &["unshare", "-m", "--propagation", "private", "sh", "-c", &script], || {});
    assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from([data]));
    assert_eq!(audit.manifest["data"]["inputs"][0]["sha256"], sha256_of("real\n"));
    assert_eq!(data_paths(&audit.manifest, "outputs"), BTreeSet::from([scratch.path("out.txt")]));
    assert_eq!(std::fs::read_to_string(scratch.work().join("out.txt")).expect("out"), "real\nreal\n");
}

/// `setns` into a mount namespace the tree did not make (`nsenter`): what is
/// read there is recorded as another namespace's, never hashed, and the
/// decoy at the same path on the host is never taken for it.
#[test]
fn files_read_after_setns_are_marked_and_never_hashed() {
    let scratch = Scratch::new();
    scratch.write("view/x.txt", "decoy\n");
    let ready = scratch.work().join("ready");
    let holder_script = "mount -t tmpfs none view && echo private > view/x.txt && touch ready && exec sleep 60";
    let mut holder = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", holder_script])
        .current_dir(scratch.work())
        .spawn()
        .expect("a namespace holder");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready.exists() {
        assert!(std::time::Instant::now() < deadline, "the namespace holder never got ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let namespace = format!("--mount=/proc/{}/ns/mnt", holder.id());
    let inside = scratch.path("view/x.txt");
    let [ebpf, strace] = scratch.audit_both(&["nsenter", &namespace, "--", "cat", &inside], || {});
    let _ = holder.kill();
    let _ = holder.wait();
    for audit in [&ebpf, &strace] {
        let entry = file_entry(&audit.manifest, &inside);
        assert!(entry["namespace"].is_u64(), "{entry}");
        for input in audit.manifest["data"]["inputs"].as_array().expect("inputs") {
            assert!(input["path"] != inside.as_str() || input["sha256"].is_null(), "hashed: {input}");
        }
    }
    assert_eq!(std::fs::read_to_string(scratch.work().join("view/x.txt")).expect("decoy"), "decoy\n");
}

#[test]
fn paths_after_chroot_are_under_the_new_root() {
    let scratch = Scratch::new();
    scratch.write("root/input.txt", "inside the root\n");
    let script = "import os\nos.chroot('root')\nos.chdir('/')\ndata = open('/input.txt').read()\nopen('/out.txt', 'w').write(data)\n";
    let audit = audit_equal(&scratch, &[PYTHON, "-c", script], || {});
    assert!(data_paths(&audit.manifest, "inputs").contains(&scratch.path("root/input.txt")));
    assert_eq!(data_paths(&audit.manifest, "outputs"), BTreeSet::from([scratch.path("root/out.txt")]));
}

#[test]
fn renaming_a_directory_moves_the_cwd_and_open_directories_with_it() {
    let scratch = Scratch::new();
    let script = "import os\n\
                  os.mkdir('a'); os.mkdir('c')\n\
                  directory = os.open('c', os.O_RDONLY | os.O_DIRECTORY)\n\
                  os.chdir('a')\n\
                  os.rename('../a', '../b'); os.rename('../c', '../d')\n\
                  open('out.txt', 'w').write('cwd\\n')\n\
                  os.write(os.open('x.txt', os.O_WRONLY | os.O_CREAT, dir_fd=directory), b'fd\\n')\n";
    let audit = audit_equal(&scratch, &[PYTHON, "-c", script], || {
        for name in ["a", "b", "c", "d"] {
            let _ = std::fs::remove_dir_all(scratch.work().join(name));
        }
    });
    assert_eq!(data_paths(&audit.manifest, "outputs"), paths_under(&scratch.work(), &["b/out.txt", "d/x.txt"]));
}

#[test]
fn symlinked_programs_and_files_keep_their_name_and_get_their_package() {
    let scratch = Scratch::new();
    // Debian's programs, not whatever else a user's PATH holds first.
    let script = "PATH=/usr/bin:/bin; echo 1 | awk '{print}' >/dev/null && as --version >/dev/null && date >/dev/null \
                  && python3 -c pass";
    let audit = audit_equal(&scratch, &["sh", "-c", script], || {});
    for exe in ["/usr/bin/awk", "/usr/bin/as", "/usr/bin/python3"] {
        process_running(&audit.manifest, exe);
    }
    let packages = system_packages(&audit.manifest);
    for path in ["/usr/bin/awk", "/usr/bin/as", "/usr/bin/python3", "/etc/localtime"] {
        let package = package_owning(path);
        assert!(packages.contains(&package), "{path}: {package} missing from {packages:?}");
    }
}

#[test]
fn shebang_interpreters_are_recorded_through_chains() {
    let scratch = Scratch::new();
    scratch.write("input.txt", "read by scripts\n");
    scratch.write("hello.sh", "#!/bin/sh\ncat input.txt\n");
    scratch.write("hello.py", "#!/usr/bin/env python3\nprint(open('input.txt').read())\n");
    // An interpreter that is itself a script: the kernel runs /bin/sh inner.sh outer.
    scratch.write("inner.sh", "#!/bin/sh\ncat input.txt\n");
    scratch.write("outer", &format!("#!{}\n", scratch.path("inner.sh")));
    for name in ["hello.sh", "hello.py", "inner.sh", "outer"] {
        let status = Command::new("chmod").arg("+x").arg(scratch.work().join(name)).status().expect("chmod");
        assert!(status.success());
    }
    let audit = audit_equal(&scratch, &["sh", "-c", "PATH=/usr/bin:/bin; ./hello.sh && ./hello.py && ./outer"], || {});
    // The argv is the one the interpreter got: binfmt_script replaced argv[0]
    // by the interpreter and the script's name.
    let hello = process_running(&audit.manifest, &scratch.path("hello.sh"));
    assert_eq!(hello["interpreters"], serde_json::json!(["/bin/sh"]));
    assert_eq!(hello["argv"], serde_json::json!(["/bin/sh", "./hello.sh"]));
    let outer = process_running(&audit.manifest, &scratch.path("outer"));
    assert_eq!(outer["interpreters"], serde_json::json!([scratch.path("inner.sh"), "/bin/sh"]));
    assert_eq!(outer["argv"], serde_json::json!(["/bin/sh", scratch.path("inner.sh"), "./outer"]));
    // env execs python3 in the same process, which ends with that image;
    // the script and env stay in files[] as exec'd.
    let python = process_running(&audit.manifest, "/usr/bin/python3");
    assert_eq!(python["argv"], serde_json::json!(["python3", "./hello.py"]));
    for exec in [scratch.path("hello.py"), "/usr/bin/env".to_string()] {
        assert_eq!(file_entry(&audit.manifest, &exec)["access"], "exec", "{exec}");
    }
    let packages = system_packages(&audit.manifest);
    for program in ["/bin/sh", "/usr/bin/env", "/usr/bin/python3"] {
        let package = package_owning(program);
        assert!(packages.contains(&package), "{program}: {package} missing from {packages:?}");
    }
}

/// ReproZip's "shebang corner-cases": `a` links to `b`, whose `#!` names
/// `c 0`; `c` links to `d`, whose `#!` names `e` relatively (found from the
/// working directory); `e` names /bin/echo.
#[test]
fn relative_and_symlinked_interpreters_are_followed() {
    let scratch = Scratch::new();
    let c = scratch.path("c");
    scratch.write("b", &format!("#!{c} 0\nsome content\n"));
    scratch.write("d", "#!e");
    scratch.write("e", "#!/bin/echo");
    for (link, target) in [("a", "b"), ("c", "d")] {
        std::os::unix::fs::symlink(target, scratch.work().join(link)).expect("symlink");
    }
    for name in ["b", "d", "e"] {
        let status = Command::new("chmod").arg("744").arg(scratch.work().join(name)).status().expect("chmod");
        assert!(status.success());
    }
    let audit = audit_equal(&scratch, &["./a", "1", "2"], || {});
    assert_eq!(String::from_utf8_lossy(&audit.output.stdout), format!("e {c} 0 ./a 1 2\n"));
    let script = process_running(&audit.manifest, &scratch.path("a"));
    assert_eq!(script["interpreters"], serde_json::json!([c, scratch.path("e"), "/bin/echo"]));
    assert_eq!(script["argv"], serde_json::json!(["/bin/echo", "e", c, "0", "./a", "1", "2"]));
}

#[test]
fn an_up_to_date_make_records_the_timestamps_it_read() {
    let scratch = Scratch::new();
    scratch.write("Makefile", "out.txt: a.c b.h c.h\n\tcat a.c b.h c.h > out.txt\n");
    for name in ["a.c", "b.h", "c.h"] {
        scratch.write(name, name);
    }
    let built = Command::new("make").arg("-s").current_dir(scratch.work()).status().expect("make");
    assert!(built.success());
    let audit = audit_equal(&scratch, &["make"], || {});
    for name in ["a.c", "b.h", "c.h", "out.txt"] {
        assert_eq!(file_entry(&audit.manifest, &scratch.path(name))["access"], "metadata", "{name}");
    }
    assert_eq!(file_entry(&audit.manifest, &scratch.path("Makefile"))["access"], "read");
    assert!(data_paths(&audit.manifest, "outputs").is_empty(), "{}", audit.manifest["data"]);
}

#[test]
fn debian_python_distributions_are_found_with_their_packages() {
    let scratch = Scratch::new();
    let audit = audit_equal(&scratch, &[PYTHON, "-c", "import yaml, six, lazr.uri"], || {});
    let oracle = Command::new(PYTHON)
        .args([
            "-c",
            "import importlib.metadata as m\nfor name in ('PyYAML', 'six', 'lazr.uri'): print(name, m.version(name))",
        ])
        .output()
        .expect("importlib.metadata");
    let expected: BTreeSet<String> =
        String::from_utf8(oracle.stdout).expect("text").lines().map(str::to_string).collect();
    let found: BTreeSet<String> = audit.manifest["software"]["python"]
        .as_array()
        .expect("python")
        .iter()
        .map(|distribution| {
            format!(
                "{} {}",
                distribution["name"].as_str().expect("name"),
                distribution["version"].as_str().expect("version")
            )
        })
        .collect();
    assert!(found.is_superset(&expected), "{found:?} lacks some of {expected:?}");
    let packages = system_packages(&audit.manifest);
    for package in ["python3-yaml", "python3-six", "python3-lazr.uri"] {
        assert!(packages.contains(package), "{package} missing from {packages:?}");
    }
}

/// io_uring requests are visible to the eBPF programs only, whether the task
/// submits them or a kernel thread polls its ring (`IORING_SETUP_SQPOLL`):
/// strace never sees them, so its audit is incomplete and says why, also
/// when the ring was set up before it attached.
#[test]
fn io_uring_file_work_is_recorded_by_ebpf_and_makes_strace_incomplete() {
    let scratch = Scratch::new();
    let program = scratch.compile("io_uring", &["-luring"]);
    let reset = || {
        scratch.write("input.txt", "through the ring\n");
        scratch.write("meta.txt", "stat only\n");
        scratch.write("gone.txt", "removed\n");
        let _ = std::fs::remove_file(scratch.work().join("out.txt"));
    };
    for mode in ["", "sqpoll"] {
        let [ebpf, strace] = scratch.audit_both(&[program.as_str(), mode], reset);
        assert_io_uring_work(&scratch, &ebpf, &strace, mode);
    }

    // A ring set up before strace attached is not seen either.
    reset();
    let manifest = scratch.attach_before_go(&program, "strace");
    assert_eq!(manifest["stats"]["unseen_io_uring_rings"], 1, "{}", manifest["stats"]);
    assert_eq!(manifest["stats"]["complete"], false);
}

fn assert_io_uring_work(scratch: &Scratch, ebpf: &Audit, strace: &Audit, mode: &str) {
    assert_complete(ebpf);
    let seen = || format!("{mode}: {:#}", ebpf.manifest["files"]);
    assert_eq!(data_paths(&ebpf.manifest, "inputs"), BTreeSet::from([scratch.path("input.txt")]), "{}", seen());
    assert_eq!(data_paths(&ebpf.manifest, "outputs"), BTreeSet::from([scratch.path("out.txt")]), "{}", seen());
    assert_eq!(ebpf.manifest["data"]["outputs"][0]["sha256"], sha256_of("through the ring\n"));
    assert_eq!(file_entry(&ebpf.manifest, &scratch.path("meta.txt"))["access"], "metadata");
    assert_eq!(file_entry(&ebpf.manifest, &scratch.path("gone.txt"))["deleted"], true);
    assert_eq!(file_entry(&ebpf.manifest, &scratch.path("out.tmp"))["deleted"], true);

    assert_eq!(stats(strace, "unseen_io_uring_rings"), 1, "{mode}: {}", strace.manifest["stats"]);
    assert_eq!(stats(strace, "complete"), false);
    assert!(strace.stderr().contains("io_uring"), "{mode}: no warning:\n{}", strace.stderr());
}

#[test]
fn an_exec_of_a_memfd_is_a_program_not_data() {
    let scratch = Scratch::new();
    scratch.write("input.txt", "read by a memfd program\n");
    let script = "import os\n\
                  fd = os.memfd_create('payload')\n\
                  os.write(fd, open('/usr/bin/cat', 'rb').read())\n\
                  os.execve(fd, ['payload', 'input.txt'], {})\n";
    let audit = audit_equal(&scratch, &[PYTHON, "-c", script], || {});
    let payload = process_running(&audit.manifest, "/memfd:payload (deleted)");
    assert_eq!(payload["argv"], serde_json::json!(["payload", "input.txt"]));
    assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from([scratch.path("input.txt")]));
    assert!(data_paths(&audit.manifest, "outputs").is_empty(), "{}", audit.manifest["data"]);
}

#[test]
fn the_traced_program_sees_exactly_its_environment() {
    let scratch = Scratch::new();
    let environment =
        |output: &[u8]| -> BTreeSet<String> { String::from_utf8_lossy(output).lines().map(str::to_string).collect() };
    let direct = Command::new("env").env("PYTHONDONTWRITEBYTECODE", "1").output().expect("env");
    for backend in BACKENDS {
        let audit = scratch.audit(backend, &["env"]);
        assert_eq!(environment(&audit.output.stdout), environment(&direct.stdout), "{backend}");
    }
}

/// A live process whose threads come and go has no exit status.
#[test]
fn an_attached_process_that_keeps_running_has_no_exit_status() {
    let scratch = Scratch::new();
    let go = scratch.path("go");
    let done = scratch.path("done");
    let script = format!(
        "import os, threading, time\n\
         while not os.path.exists({go:?}): time.sleep(0.01)\n\
         for _ in range(3):\n    thread = threading.Thread(target=time.sleep, args=(0.01,)); thread.start(); thread.join()\n\
         open({done:?}, 'w').write('threads ended')\n\
         time.sleep(60)\n"
    );
    for backend in BACKENDS {
        let _ = std::fs::remove_file(&go);
        let mut worker = Command::new(PYTHON).args(["-c", &script]).spawn().expect("worker");
        let manifest_path = scratch.dir.path().join(format!("manifests/attach-{backend}.json"));
        let mut tracer = spawn_until(
            Command::new(reprotrace_bin())
                .args(["attach", "--no-daemon", "--backend", backend, "--duration", "3", "--pid"])
                .arg(worker.id().to_string())
                .arg("-o")
                .arg(&manifest_path),
            "attached to",
        );
        std::fs::write(&go, "").expect("go");
        assert!(tracer.wait().expect("attach").success(), "{backend}");
        let _ = worker.kill();
        let _ = worker.wait();
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        assert!(data_paths(&manifest, "outputs").contains(&done), "{backend}: {}", manifest["data"]);
        let process = processes(&manifest)
            .iter()
            .find(|process| process["pid"] == worker.id())
            .unwrap_or_else(|| panic!("{backend}: the worker is missing: {:#}", manifest["processes"]));
        assert!(process["exit_code"].is_null(), "{backend}: {process}");
        assert!(process["signal"].is_null(), "{backend}: {process}");
    }
}

#[test]
fn package_metadata_and_dask_scratch_files_are_not_data() {
    let scratch = Scratch::new();
    scratch.write("project/other-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n");
    scratch.write("input.txt", "real data\n");
    let script = "import os\n\
                  os.makedirs('project/project.egg-info', exist_ok=True)\n\
                  open('project/project.egg-info/PKG-INFO', 'w').write('Name: project\\n')\n\
                  open('project/project.egg-info/top_level.txt', 'w').write('project\\n')\n\
                  open('project/other-1.0.dist-info/METADATA').read()\n\
                  os.makedirs('dask-scratch-space/worker-1', exist_ok=True)\n\
                  open('dask-scratch-space/global.lock', 'w').close()\n\
                  open('dask-scratch-space/worker-1.dirlock', 'w').close()\n\
                  open('input.txt').read()\n";
    let audit = audit_equal(&scratch, &[PYTHON, "-c", script], || {});
    assert_eq!(data_paths(&audit.manifest, "inputs"), BTreeSet::from([scratch.path("input.txt")]));
    assert!(data_paths(&audit.manifest, "outputs").is_empty(), "{}", audit.manifest["data"]);
}

/// Creating a file is writing it, whatever the access mode: O_RDONLY|O_CREAT
/// makes an output, and a file made and removed by the run is nothing.
#[test]
fn a_file_created_read_only_is_an_output_and_one_created_and_removed_is_nothing() {
    let scratch = Scratch::new();
    let script = "import os\n\
                  os.close(os.open('kept.txt', os.O_RDONLY | os.O_CREAT))\n\
                  os.close(os.open('temporary.txt', os.O_RDONLY | os.O_CREAT))\n\
                  os.unlink('temporary.txt')\n";
    let audit = audit_equal(&scratch, &[PYTHON, "-c", script], || {
        let _ = std::fs::remove_file(scratch.work().join("kept.txt"));
    });
    assert_eq!(data_paths(&audit.manifest, "outputs"), BTreeSet::from([scratch.path("kept.txt")]));
    assert!(data_paths(&audit.manifest, "inputs").is_empty(), "{}", audit.manifest["data"]);
}

/// A backslash typed in a name and a byte that is not UTF-8 never make the same string.
#[test]
fn a_literal_backslash_and_a_non_utf8_byte_are_told_apart() {
    let scratch = Scratch::new();
    let script = "open(b'caf\\\\xe9.txt', 'w').write('backslash')\nopen(b'caf\\xe9.txt', 'w').write('latin-1')\n";
    let audit = audit_equal(&scratch, &[PYTHON, "-c", script], || {});
    assert_eq!(
        data_paths(&audit.manifest, "outputs"),
        paths_under(&scratch.work(), &[r"caf\\xe9.txt", r"caf\xe9.txt"])
    );
    let on_disk: BTreeSet<Vec<u8>> = std::fs::read_dir(scratch.work())
        .expect("work dir")
        .map(|entry| entry.expect("entry").file_name().as_bytes().to_vec())
        .collect();
    assert!(on_disk.contains(b"caf\\xe9.txt".as_slice()) && on_disk.contains(b"caf\xe9.txt".as_slice()));
}

/// Python lines that give descriptor number `fd`, left by a silent close,
/// to a pipe (a call not followed), then to a directory whose descriptor
/// resolves the next open (`sub/inner.txt`, read).
const SILENT_NUMBER_REUSED: &str = "r, w = os.pipe()
assert r == fd, (r, fd)
os.close(r); os.close(w)
d = os.open(os.path.join(work, 'sub'), os.O_RDONLY)
assert d == fd, (d, fd)
inner = os.open('inner.txt', os.O_RDONLY, dir_fd=d)
os.read(inner, 5); os.close(inner); os.close(d)
";

/// A silent close (of an open the kernel did not send) leaves its descriptor
/// number marked silent: the descriptors that later take that number — a
/// pipe's (a call not followed), a directory's that resolves the next open,
/// a dup's — are recorded as strace records them.
#[test]
fn descriptor_numbers_reused_after_a_silent_close_are_recorded_exactly() {
    let scratch = Scratch::new();
    scratch.write("input.txt", "input");
    scratch.write("sub/inner.txt", "inner");
    let script = format!(
        "import os\n\
                  work = os.getcwd()\n\
                  name = os.path.join(work, 'input.txt')\n\
                  for _ in range(3):\n\
                  \x20   fd = os.open(name, os.O_RDONLY)\n\
                  \x20   os.read(fd, 5)\n\
                  \x20   os.close(fd)\n\
                  {SILENT_NUMBER_REUSED}\
                  silent = os.open(name, os.O_RDONLY)\n\
                  copy = os.dup(silent)\n\
                  os.close(silent)\n\
                  os.close(copy)\n\
                  out = os.open(os.path.join(work, 'out.txt'), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n\
                  assert out == fd, (out, fd)\n\
                  os.write(out, b'done'); os.close(out)\n"
    );
    let audit = audit_equal(&scratch, &[PYTHON, "-c", &script], || {
        let _ = std::fs::remove_file(scratch.work().join("out.txt"));
    });
    assert_eq!(
        data_paths(&audit.manifest, "inputs"),
        BTreeSet::from([scratch.path("input.txt"), scratch.path("sub/inner.txt")])
    );
    assert_eq!(data_paths(&audit.manifest, "outputs"), BTreeSet::from([scratch.path("out.txt")]));
}

/// A process whose dedup slot (`tgid % 2048`) a followed process holds goes
/// without one: its repeated opens and their closes are all sent, and the
/// holder keeps its own silent descriptors. The child is given such a pid
/// through `ns_last_pid` (retried: other processes on the host take pids
/// too, so the number of tries, and of children, varies: only the files are
/// compared with strace's).
#[test]
fn a_process_sharing_a_dedup_slot_with_a_followed_one_is_recorded_exactly() {
    let scratch = Scratch::new();
    scratch.write("a.txt", "holder");
    scratch.write("b.txt", "collider");
    scratch.write("sub/inner.txt", "inner");
    let script = format!(
        "import os\n\
                  work = os.getcwd()\n\
                  def read(name):\n\
                  \x20   fd = os.open(os.path.join(work, name), os.O_RDONLY)\n\
                  \x20   os.read(fd, 8)\n\
                  \x20   os.close(fd)\n\
                  \x20   return fd\n\
                  for _ in range(3): fd = read('a.txt')\n\
                  me = os.getpid()\n\
                  pid_max = int(open('/proc/sys/kernel/pid_max').read())\n\
                  targets = [t for k in range(1, 16) for t in (me + k * 2048, me - k * 2048) if 300 < t < pid_max]\n\
                  child = None\n\
                  for target in targets * 5:\n\
                  \x20   with open('/proc/sys/kernel/ns_last_pid', 'w') as f: f.write(str(target - 1))\n\
                  \x20   pid = os.fork()\n\
                  \x20   if pid == 0:\n\
                  \x20       if os.getpid() != target: os._exit(3)\n\
                  \x20       for _ in range(3): read('b.txt')\n\
                  \x20       r, w = os.pipe(); os.close(r); os.close(w)\n\
                  \x20       open(os.path.join(work, 'b-out.txt'), 'w').write('b')\n\
                  \x20       os._exit(0)\n\
                  \x20   if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0:\n\
                  \x20       child = pid\n\
                  \x20       break\n\
                  assert child, f'no child got a pid sharing a slot with {{me}}'\n\
                  for _ in range(3): fd = read('a.txt')\n\
                  {SILENT_NUMBER_REUSED}\
                  open(os.path.join(work, 'a-out.txt'), 'w').write('a')\n"
    );
    let audits = scratch.audit_both(&[PYTHON, "-c", &script], || {
        for name in ["a-out.txt", "b-out.txt"] {
            let _ = std::fs::remove_file(scratch.work().join(name));
        }
    });
    for audit in &audits {
        assert_complete(audit);
        assert_eq!(
            data_paths(&audit.manifest, "inputs"),
            BTreeSet::from([scratch.path("a.txt"), scratch.path("b.txt"), scratch.path("sub/inner.txt")]),
            "{}",
            audit.manifest["backend"]
        );
        assert_eq!(
            data_paths(&audit.manifest, "outputs"),
            BTreeSet::from([scratch.path("a-out.txt"), scratch.path("b-out.txt")]),
            "{}",
            audit.manifest["backend"]
        );
    }
}

/// The kernel drops a repeated fact (hashing paths up to 512 bytes: 128 read
/// at once, longer ones read again) and the close of a repeated open (below
/// descriptor 1,024): paths that share their first 128 bytes and their length,
/// a path longer than 512 bytes, and repeated opens on descriptors past 1,024
/// are each recorded as strace records them.
#[test]
fn repeated_long_paths_and_high_descriptors_are_recorded_exactly() {
    let scratch = Scratch::new();
    let long_dir = format!("{}/{}", "d".repeat(150), "e".repeat(40));
    let deep_dir = (0..6).map(|level| format!("{level}{}", "x".repeat(99))).collect::<Vec<_>>().join("/");
    for name in [format!("{long_dir}/a.txt"), format!("{long_dir}/b.txt"), format!("{deep_dir}/deep.txt")] {
        scratch.write(&name, &name);
    }
    scratch.write("written-after.txt", "");
    let script = format!(
        "import os, resource\n\
         soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2048), hard))\n\
         work = os.getcwd()\n\
         names = [os.path.join(work, n) for n in ({a:?}, {b:?}, {deep:?})]\n\
         for _ in range(3):\n\
         \x20   for name in names:\n\
         \x20       os.stat(name)\n\
         \x20       with open(name) as f: f.read()\n\
         held = [os.open('/etc/hostname', os.O_RDONLY) for _ in range(1030)]\n\
         for _ in range(3):\n\
         \x20   fd = os.open(names[0], os.O_RDONLY)\n\
         \x20   assert fd >= 1024, fd\n\
         \x20   os.close(fd)\n\
         for fd in held: os.close(fd)\n\
         open('written-after.txt', 'w').write('done')\n",
        a = format!("{long_dir}/a.txt"),
        b = format!("{long_dir}/b.txt"),
        deep = format!("{deep_dir}/deep.txt"),
    );
    let audit = audit_equal(&scratch, &[PYTHON, "-c", &script], || {});
    let inputs = data_paths(&audit.manifest, "inputs");
    for name in [format!("{long_dir}/a.txt"), format!("{long_dir}/b.txt"), format!("{deep_dir}/deep.txt")] {
        assert!(inputs.contains(&scratch.path(&name)), "{name} missing from {inputs:?}");
    }
    assert_eq!(data_paths(&audit.manifest, "outputs"), BTreeSet::from([scratch.path("written-after.txt")]));
}

/// Repeated facts stay in the kernel: the second, third and fourth passes of
/// open, read, close and stat over 2,000 files named by number (a storm's
/// pattern: paths that differ in their last digits) send next to nothing
/// (a pass sends 6,000 events when nothing is dropped). Counts events, not
/// time: a fact cache whose sets such paths crowd sends them all again.
#[test]
fn passes_over_many_files_after_the_first_send_next_to_nothing() {
    let scratch = Scratch::new();
    for file in 0..2000 {
        scratch.write(&format!("files/f{file:05}"), "x");
    }
    let script = "import os, sys\n\
                  work = os.path.join(os.getcwd(), 'files')\n\
                  names = [os.path.join(work, f'f{i:05}') for i in range(2000)]\n\
                  for _ in range(int(sys.argv[1])):\n\
                  \x20   for name in names:\n\
                  \x20       fd = os.open(name, os.O_RDONLY); os.read(fd, 8); os.close(fd)\n\
                  \x20       os.stat(name)\n";
    let events = |passes: &str| {
        let audit = scratch.audit("ebpf", &[PYTHON, "-c", script, passes]);
        assert_complete(&audit);
        assert_eq!(data_paths(&audit.manifest, "inputs").len(), 2000, "{passes} passes");
        audit.manifest["stats"]["events"].as_u64().expect("events")
    };
    let (one_pass, four_passes) = (events("1"), events("4"));
    // One pass sends 6,068 events, and four as many, but now and then 45 or
    // 90 more: where a process's facts go depends on its epoch, and when five
    // of the 2,000 paths share a set (ten facts for eight ways, in about one
    // audit in ten to twenty), their open, close and stat go again on each later
    // pass (5 × 3 × 3). A later pass sent again is 6,000 more, and sets that
    // crowded one another (four ways) sent 1,800 more a pass: 200 tells those
    // apart from the few a set-associative cache of this size must resend.
    assert!(
        four_passes < one_pass + 200,
        "one pass sent {one_pass} events, four passes {four_passes}: the later passes' facts were sent again"
    );
}
