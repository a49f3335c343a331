//! Helpers for the integration tests: run the real `reprotrace` binary on real
//! workloads, validate what it writes against the published schema, and compare
//! manifests from the two backends.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
};

use serde_json::Value;

pub const BACKENDS: [&str; 2] = ["ebpf", "strace"];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `reprotrace` binary of this build (target/<profile>/reprotrace).
pub fn reprotrace_bin() -> PathBuf {
    let test_exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/reprotrace
    let profile_dir = test_exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("reprotrace");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo xtask test` builds it, or `cargo build -p tracer-user`)",
        bin.display()
    );
    bin
}

/// The outcome of one audit.
pub struct Audit {
    pub output: Output,
    pub manifest: Value,
}

impl Audit {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// Runs `reprotrace run --backend BACKEND -o <dir>/BACKEND.json -- COMMAND…` in `cwd`
/// and returns its output and manifest (validated against the schema).
pub fn audit<S: AsRef<OsStr>>(backend: &str, cwd: &Path, manifest_dir: &Path, command: &[S]) -> Audit {
    audit_with(&["--backend", backend], backend, cwd, manifest_dir, command)
}

/// Runs `reprotrace run OPTIONS… -o <dir>/NAME.json -- COMMAND…` in `cwd`
/// and returns its output and manifest (validated against the schema).
pub fn audit_with<S: AsRef<OsStr>>(
    options: &[&str],
    name: &str,
    cwd: &Path,
    manifest_dir: &Path,
    command: &[S],
) -> Audit {
    let manifest_path = manifest_dir.join(format!("{name}.json"));
    let output = Command::new(reprotrace_bin())
        .current_dir(cwd)
        // Bytecode caches get random temporary names: two runs would differ.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("run")
        .args(options)
        .arg("-o")
        .arg(&manifest_path)
        .arg("--")
        .args(command)
        .output()
        .expect("running reprotrace");
    let text = std::fs::read(&manifest_path).unwrap_or_else(|err| {
        panic!(
            "{name}: no manifest at {} ({err}); stderr:\n{}",
            manifest_path.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let manifest: Value = serde_json::from_slice(&text).expect("manifest is JSON");
    assert_valid(&manifest);
    Audit { output, manifest }
}

/// A venv of Debian's Python with `packages` (pip requirement specifiers),
/// made in `scratch` (the test's `CARGO_TARGET_TMPDIR`) and reused while its
/// package list is the same. Debian's Python, so that any user can run it.
pub fn python_venv(scratch: &Path, name: &str, packages: &[&str]) -> PathBuf {
    let venv = scratch.join(name);
    let ready = venv.join("reprotrace-packages.txt");
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&ready).ok().as_deref() == Some(wanted.as_str()) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "--disable-pip-version-check"]).args(packages));
    std::fs::write(&ready, wanted).expect("venv marker");
    venv
}

/// Dask's packages, as the simulated clusters' venvs have them.
pub const DASK_PACKAGES: &[&str] = &["dask==2026.8.0", "distributed==2026.8.0", "numpy", "wheel"];

/// The venv of the simulated Dask hosts (in `scratch`, the test's
/// `CARGO_TARGET_TMPDIR`): Dask, six 1.17.0, Jupyter's nbconvert for the
/// managers' notebooks, and reprotrace's Python package from this checkout,
/// installed as a user would.
pub fn dask_venv(scratch: &Path) -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let packages: Vec<&str> =
            DASK_PACKAGES.iter().chain(&["six==1.17.0", "nbconvert", "nbclient", "ipykernel"]).copied().collect();
        with_reprotrace_package(python_venv(scratch, "dask-venv", &packages))
    })
    .clone()
}

/// Installs this checkout's Python package (python/) into `venv`, afresh.
pub fn with_reprotrace_package(venv: PathBuf) -> PathBuf {
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-build-isolation"])
        .args(["--force-reinstall"])
        .arg(repo_root().join("python")));
    venv
}

/// The hex SHA-256 of `text`, by `sha256sum`.
pub fn sha256_of(text: &str) -> String {
    let output = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&output.stdout).split(' ').next().expect("digest").to_string()
}

/// Runs `command`, failing with its stderr unless it succeeds.
pub fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(output.status.success(), "{command:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// Fails unless the audit lost nothing, parsed every event and calls itself complete.
pub fn assert_complete(audit: &Audit) {
    let stats = &audit.manifest["stats"];
    assert_eq!(stats["lost_events"], 0, "lost events: {stats}");
    assert_eq!(stats["malformed_events"], 0, "malformed events: {stats}");
    assert_eq!(stats["complete"], true, "incomplete: {stats}\n{}", audit.stderr());
}

/// Starts `command` and returns once its stderr has printed a line containing
/// `ready`; the rest of its stderr is drained, so it never blocks on the pipe.
pub fn spawn_until(command: &mut Command, ready: &str) -> Child {
    let mut child = command.stderr(Stdio::piped()).spawn().expect("starting reprotrace");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(ready) => break,
            Some(Ok(_)) => continue,
            _ => panic!("reprotrace ended before printing {ready:?}: {:?}", child.wait()),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Fails unless `manifest` conforms to docs/manifest.schema.json.
pub fn assert_valid(manifest: &Value) {
    let schema_text = std::fs::read(repo_root().join("docs/manifest.schema.json")).expect("schema file");
    let schema: Value = serde_json::from_slice(&schema_text).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(manifest).map(|err| format!("{} at {}", err, err.instance_path)).collect();
    assert!(errors.is_empty(), "manifest violates the schema:\n{}", errors.join("\n"));
}

/// The paths of a data section (`inputs` or `outputs`).
pub fn data_paths(manifest: &Value, section: &str) -> BTreeSet<String> {
    manifest["data"][section]
        .as_array()
        .expect("data section")
        .iter()
        .map(|entry| entry["path"].as_str().expect("path").to_string())
        .collect()
}

/// `names` under `dir`, as the manifest spells them.
pub fn paths_under(dir: &Path, names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| format!("{}/{name}", dir.display())).collect()
}

/// The manifest without what legitimately differs between two audits of the
/// same run (backend, times, statistics, output mtimes, pids): pids become stable names built
/// from each process's ancestry and command line.
pub fn comparable(manifest: &Value) -> Value {
    let processes = manifest["processes"].as_array().expect("processes");
    let by_pid: BTreeMap<u64, &Value> =
        processes.iter().map(|process| (process["pid"].as_u64().expect("pid"), process)).collect();
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    // A process is named once its parent is (when the manifest has it):
    // pids wrap around at `pid_max`, so a child's can be smaller than its
    // parent's (the whole test suite forks that many). Siblings with the
    // same command line are numbered in pid order.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending: Vec<(u64, &Value)> = by_pid.iter().map(|(pid, process)| (*pid, *process)).collect();
    while !pending.is_empty() {
        let unnamed = pending.len();
        let mut waiting = Vec::new();
        for (pid, process) in pending {
            let parent = match process["ppid"].as_u64().filter(|ppid| *ppid != pid && by_pid.contains_key(ppid)) {
                Some(ppid) => match names.get(&ppid) {
                    Some(parent) => parent.clone(),
                    None => {
                        waiting.push((pid, process));
                        continue;
                    }
                },
                None => String::new(),
            };
            let base = format!("{parent}/{}{}", process["exe"], process["argv"]);
            let count = seen.entry(base.clone()).or_default();
            *count += 1;
            names.insert(pid, format!("{base}#{count}"));
        }
        // (Parents in a loop, which pids cannot make, would wait for ever.)
        assert!(waiting.len() < unnamed, "processes whose parents never come: {waiting:?}");
        pending = waiting;
    }
    let name_of =
        |pid: &Value| pid.as_u64().and_then(|pid| names.get(&pid)).cloned().map_or(Value::Null, Value::String);
    let mut comparable = manifest.clone();
    let object = comparable.as_object_mut().expect("manifest object");
    for volatile in ["backend", "started_at", "finished_at", "stats"] {
        object.remove(volatile);
    }
    let mut renamed: Vec<Value> = processes
        .iter()
        .map(|process| {
            let mut process = process.clone();
            process["ppid"] = name_of(&process["ppid"]);
            process["pid"] = name_of(&process["pid"]);
            rename_namespace(&mut process, name_of);
            process
        })
        .collect();
    renamed.sort_by_key(|process| process["pid"].to_string());
    object.insert("processes".into(), Value::Array(renamed));
    // Outputs are made anew by each run.
    for section in ["inputs", "outputs"] {
        for entry in object["data"][section].as_array_mut().expect("data section") {
            entry.as_object_mut().expect("data entry").remove("mtime");
            rename_namespace(entry, name_of);
        }
    }
    for file in object.get_mut("files").and_then(Value::as_array_mut).expect("files") {
        let mut pids: Vec<Value> = file["pids"].as_array().expect("pids").iter().map(name_of).collect();
        pids.sort_by_key(Value::to_string);
        file["pids"] = Value::Array(pids);
        rename_namespace(file, name_of);
    }
    comparable
}

/// A `namespace` field names a process by pid: give it the process's stable name.
fn rename_namespace(entry: &mut Value, name_of: impl Fn(&Value) -> Value) {
    if let Some(namespace) = entry.get_mut("namespace") {
        *namespace = name_of(namespace);
    }
}

/// Asserts two manifests agree outside backend, timing, statistics and pids,
/// naming the first sections that differ.
pub fn assert_same_run(ebpf: &Value, strace: &Value) {
    let (left, right) = (comparable(ebpf), comparable(strace));
    if left == right {
        return;
    }
    let mut report = String::new();
    for key in ["command", "cwd", "exit_code", "signal", "processes", "files", "data"] {
        if left[key] != right[key] {
            report.push_str(&format!("\n== {key} differs\n"));
            report.push_str(&describe_difference(&left[key], &right[key]));
        }
    }
    panic!("the eBPF and strace manifests differ:{report}");
}

fn describe_difference(left: &Value, right: &Value) -> String {
    match (left.as_array(), right.as_array()) {
        (Some(left), Some(right)) => {
            let only = |a: &[Value], b: &[Value]| -> Vec<String> {
                a.iter().filter(|item| !b.contains(item)).map(Value::to_string).collect()
            };
            format!(
                "only in ebpf:\n  {}\nonly in strace:\n  {}\n",
                only(left, right).join("\n  "),
                only(right, left).join("\n  ")
            )
        }
        _ => format!("ebpf: {left}\nstrace: {right}\n"),
    }
}

/// A work directory for the file_ops workload, with its inputs in place.
pub fn prepare_file_ops(work: &Path) {
    let inputs = work.join("inputs");
    std::fs::create_dir_all(&inputs).expect("inputs dir");
    std::fs::create_dir_all(work.join("outputs")).expect("outputs dir");
    for name in ["relative.txt", "dirfd.txt", "after_chdir.txt", "fchdir.txt", "thread1.txt", "thread2.txt", "a.txt"] {
        std::fs::write(inputs.join(name), format!("contents of {name}\n")).expect("input file");
    }
    std::fs::copy(repo_root().join("tests/workloads/file_ops.py"), work.join("file_ops.py")).expect("workload");
}

/// A system user made for one test, deleted after it, who may run this
/// build's `reprotrace` (and nothing else) as root through the real `sudo`:
/// a sudoers drop-in of its own, removed with the user.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    sudoers: PathBuf,
}

/// useradd and userdel lock /etc/passwd: one at a time.
static ACCOUNTS: Mutex<()> = Mutex::new(());

impl TestUser {
    pub fn create(tag: &str) -> TestUser {
        assert!(Path::new("/usr/bin/sudo").exists(), "sudo is missing: `cargo xtask setup` installs it");
        let name = format!("rt{tag}{}", std::process::id() % 100_000);
        let _lock = ACCOUNTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin"])
            .arg(&name)
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name}");
        let id = |flag: &str| -> u32 {
            let output = Command::new("id").arg(flag).arg(&name).output().expect("id");
            String::from_utf8_lossy(&output.stdout).trim().parse().expect("numeric id")
        };
        // Made now, so that dropping a half-made user removes what there is.
        let mut user = TestUser { uid: id("-u"), gid: id("-g"), sudoers: PathBuf::new(), name };
        user.sudoers = user.allow_sudo();
        user
    }

    /// Lets this user run `reprotrace` as root, without a password: a rule
    /// checked by `visudo`, then renamed into /etc/sudoers.d (sudo ignores
    /// names with a dot, such as the one it is written under).
    fn allow_sudo(&self) -> PathBuf {
        let binary = reprotrace_bin();
        let binary = binary.to_str().expect("a UTF-8 path");
        // Characters sudoers gives a meaning to would change the rule.
        assert!(!binary.contains(|c: char| c.is_whitespace() || ",:=\\\"#!()".contains(c)), "{binary}");
        let rule = format!("{} ALL=(root) NOPASSWD: {binary}\n", self.name);
        let target = PathBuf::from(format!("/etc/sudoers.d/reprotrace-test-{}", self.name));
        let staged = PathBuf::from(format!("/etc/sudoers.d/.reprotrace-test-{}.new", self.name));
        std::fs::write(&staged, rule).expect("sudoers rule");
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o440)).expect("chmod");
        run(Command::new("visudo").arg("-cf").arg(&staged));
        std::fs::rename(&staged, &target).expect("sudoers rule in place");
        target
    }

    /// `reprotrace ARGS…` run by this user through the real sudo: the
    /// user's uid, gid and groups (`setpriv`), then `sudo -n -u root`, which
    /// resets the environment, sets `SUDO_UID`/`SUDO_GID`/`SUDO_USER` and
    /// makes the umask the user's joined with sudoers' (022).
    pub fn sudo(&self, args: &[&str]) -> Command {
        let mut command = self.command("sudo");
        command.args(["--non-interactive", "--user", "root", "--"]).arg(reprotrace_bin()).args(args);
        command
    }

    /// `program` run as this user: its uid, gid and groups (`setpriv`, which
    /// then execs it: the pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid", &self.uid.to_string(), "--regid", &self.gid.to_string(), "--init-groups", "--"])
            .arg(program);
        command
    }

    /// A directory of this user's own (mode 0700).
    pub fn home(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::chown(dir.path(), Some(self.uid), Some(self.gid)).expect("chown");
        dir
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = std::fs::remove_file(format!("/etc/sudoers.d/.reprotrace-test-{}.new", self.name));
        let _lock = ACCOUNTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// The nice values in `stats`, lines of `/proc/PID/task/TID/stat` (one a
/// thread: Linux keeps nice values per thread).
pub fn nice_values(stats: &str) -> Vec<i32> {
    stats
        .lines()
        .map(|stat| {
            // Field 19; the command name before it, in parentheses, may hold spaces.
            let after_name = &stat[stat.rfind(')').expect("a stat line") + 1..];
            after_name.split_whitespace().nth(16).and_then(|nice| nice.parse().ok()).expect("a nice value")
        })
        .collect()
}

/// The nice values of `pid`'s threads.
pub fn thread_nice_values(pid: u32) -> Vec<i32> {
    let mut stats = String::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("its threads") {
        stats.push_str(&std::fs::read_to_string(task.expect("a thread").path().join("stat")).expect("a stat"));
    }
    nice_values(&stats)
}

/// What `reprotrace run OPTIONS… -- sh …`, started at nice 5, showed its
/// command: the command's nice value, those of reprotrace's threads and
/// those of `watched`'s (reprotrace's when `None`). With a `burst`, the
/// command first reads every file in it, then waits (5 s at most) for one of
/// `watched`'s threads to run at nice -10: the ring reader raised once the
/// events came.
pub fn priorities_under(
    options: &[&str],
    manifest: &Path,
    burst: Option<&Path>,
    watched: Option<u32>,
) -> (i32, Vec<i32>, Vec<i32>) {
    const SCRIPT: &str = r#"watched=${2:-$PPID}
if [ -n "$1" ]; then
    cat "$1"/* > /dev/null
    tries=0
    until cat /proc/$watched/task/*/stat | awk '{print $19}' | grep -qx -- -10; do
        tries=$((tries + 1)); [ $tries -gt 100 ] && break; sleep 0.05
    done
fi
nice; cat /proc/$PPID/task/*/stat; echo ---; cat /proc/$watched/task/*/stat"#;
    let output = Command::new("nice")
        .args(["-n", "5"])
        .arg(reprotrace_bin())
        .args(["run", "-q"])
        .args(options)
        .arg("-o")
        .arg(manifest)
        .args(["--", "sh", "-c", SCRIPT, "sh"])
        .arg(burst.map(Path::as_os_str).unwrap_or_default())
        .arg(watched.map(|pid| pid.to_string()).unwrap_or_default())
        .output()
        .expect("nice reprotrace run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (command, rest) = stdout.split_once('\n').expect("the command's nice value, then reprotrace's threads");
    let (reprotrace, watched) = rest.split_once("---\n").expect("reprotrace's threads, then the watched ones");
    (command.trim().parse().expect("a nice value"), nice_values(reprotrace), nice_values(watched))
}

/// `count` small files in a new directory `name` under `dir`, for a burst of
/// events.
pub fn burst_files(dir: &Path, name: &str, count: usize) -> PathBuf {
    let burst = dir.join(name);
    std::fs::create_dir(&burst).expect("burst dir");
    for index in 0..count {
        std::fs::write(burst.join(format!("f{index:05}")), b"x").expect("burst file");
    }
    burst
}

/// Waits until `path` exists (two minutes at most), naming `what` waited for
/// when it never does.
pub fn wait_for(path: &Path, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what} ({})", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A Jupyter kernel driven cell by cell by `tests/workloads/kernel_session.py`
/// in `work` (see that script): started, then its cells run once `go` is
/// written, then stopped.
pub struct KernelSession {
    session: Child,
    work: PathBuf,
    /// The kernel's connection file.
    pub connection: String,
}

impl KernelSession {
    /// Starts the script with the Python `python` starts, on the cells of
    /// `cells` (a JSON file; `None`: the script's own), until its kernel is up.
    pub fn start(mut python: Command, work: &Path, cells: Option<&Path>) -> KernelSession {
        python.arg(repo_root().join("tests/workloads/kernel_session.py")).arg(work);
        if let Some(cells) = cells {
            python.arg(cells);
        }
        let session = python.spawn().expect("kernel session");
        wait_for(&work.join("connection.txt"), "the kernel");
        let connection = std::fs::read_to_string(work.join("connection.txt")).expect("connection file");
        KernelSession { session, work: work.to_path_buf(), connection: connection.trim().to_string() }
    }

    /// Runs the cells, then detaches `tracer` (SIGINT, once they are done)
    /// and stops the kernel; both must end well.
    pub fn run_cells_then_detach(mut self, mut tracer: Child) {
        std::fs::write(self.work.join("go"), "").expect("go");
        wait_for(&self.work.join("done"), "the cells");
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(tracer.id() as libc::pid_t, libc::SIGINT) };
        assert!(tracer.wait().expect("reprotrace exits").success(), "the audit failed");
        self.stop();
    }

    /// Stops the kernel (its cells must have run).
    pub fn stop(&mut self) {
        std::fs::write(self.work.join("stop"), "").expect("stop");
        assert!(self.session.wait().expect("kernel session exits").success());
    }
}

/// A Python project at `project` (setuptools, for `pip install -e`) of one
/// package, `name`, whose `__init__.py` is `module`.
pub fn python_project(project: &Path, name: &str, version: &str, module: &str) {
    std::fs::create_dir_all(project.join(name)).expect("project dir");
    std::fs::write(
        project.join("pyproject.toml"),
        format!(
            "[build-system]\nrequires = [\"setuptools>=64\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
             [project]\nname = \"{name}\"\nversion = \"{version}\"\n"
        ),
    )
    .expect("pyproject");
    std::fs::write(project.join(name).join("__init__.py"), module).expect("module");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_whose_pid_wrapped_below_its_parents_is_named_below_it() {
        let process = |pid: u64, ppid: u64, exe: &str| serde_json::json!({"pid": pid, "ppid": ppid, "exe": exe, "argv": [exe], "namespace": null});
        let manifest = |parent: u64, child: u64| {
            serde_json::json!({
                "processes": [process(parent, 1, "sh"), process(child, parent, "cat")],
                "files": [],
                "data": {"inputs": [], "outputs": []},
            })
        };
        let names = |manifest: &Value| -> Vec<Value> {
            comparable(manifest)["processes"].as_array().expect("processes").iter().map(|p| p["pid"].clone()).collect()
        };
        assert_eq!(names(&manifest(32_000, 300)), names(&manifest(300, 301)));
    }
}
