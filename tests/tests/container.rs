//! `export docker` checked by a real container engine: a small run (a venv
//! script that imports a pip-installed distribution and an editable project
//! of its own, and reads a data file)
//! is audited and exported, the context is built with podman, and the
//! image's own command is run without network; its output must be the
//! original's, byte for byte.
//!
//! Docker Hub is out of reach on these machines, so the base image the
//! Dockerfile's `FROM` names (`debian:12`) is made here: `mmdebstrap
//! --variant=minbase` from deb.debian.org, imported under that name. The
//! root file system is cached for the day in `CARGO_TARGET_TMPDIR`, with a
//! podman store of the test's own, so a second run starts at the build.
//!
//! The engine needs root, and, on these virtual machines, three settings the
//! test passes explicitly (docs/reproduce.md says why): the `runc` runtime
//! (Debian's crun 1.8 refuses the hybrid cgroup hierarchy), resource limits
//! no higher than the test's own (root here lacks `CAP_SYS_RESOURCE`), and the
//! host's CA bundle for pip during the build (PyPI is reached through a TLS
//! proxy only the host trusts). Every step is bounded in time, and a step that
//! fails fails the test with the engine's output: nothing is skipped.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use reprotrace_tests::{python_venv, reprotrace_bin};
use serde_json::Value;

/// Where the base image's root file system and the podman store live.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("container-build")
}

/// The script of the audited run: deterministic, so that the image must
/// write the very bytes the audit hashed.
const ANALYSIS: &str = "import six, greet\nrows = open('data.csv').read().splitlines()\n\
                        open('result.txt', 'w').write('%d %s, six %s\\n' % (len(rows), greet.WORD, six.__version__))\n";

/// Where the image's step logs go, and what a failed step says.
struct Steps {
    logs: PathBuf,
}

impl Steps {
    /// Runs `command` under `timeout`, its output (stdout and stderr) in
    /// `logs/NAME.log`; returns whether it succeeded and the output. A
    /// command that runs over `limit` is killed and fails the test.
    fn run(&self, name: &str, command: &mut Command, limit: Duration) -> (bool, String) {
        let log = self.logs.join(format!("{name}.log"));
        let file = File::create(&log).expect("log file");
        let started = Instant::now();
        let status = Command::new("timeout")
            .args(["--kill-after=10", &limit.as_secs().to_string()])
            .arg(command.get_program())
            .args(command.get_args())
            .envs(command.get_envs().filter_map(|(key, value)| Some((key, value?))))
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .status()
            .unwrap_or_else(|err| panic!("{name}: cannot run {command:?}: {err}"));
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        if status.code() == Some(124) || status.code() == Some(137) {
            panic!("{name} ran over {} s and was stopped:\n{}", limit.as_secs(), tail(&output, &log));
        }
        eprintln!("container test: {name}: {status} in {:.1} s", started.elapsed().as_secs_f64());
        (status.success(), output)
    }

    /// As [`Steps::run`], failing the test, with the output, unless it succeeds.
    fn must(&self, name: &str, command: &mut Command, limit: Duration) -> String {
        let (succeeded, output) = self.run(name, command, limit);
        assert!(succeeded, "{name} failed: {command:?}\n{}", tail(&output, &self.logs.join(format!("{name}.log"))));
        output
    }
}

/// The last lines of a step's output, and where the rest is.
fn tail(output: &str, log: &Path) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let shown = &lines[lines.len().saturating_sub(60)..];
    format!("{}\n(the whole output: {})", shown.join("\n"), log.display())
}

/// Where podman keeps its runtime state (see `Podman::new`).
const RUNTIME_STATE: &str = "/run/reprotrace-tests/podman";

/// The podman of this test: its own store, the runc runtime, limits it may set.
struct Podman {
    root: PathBuf,
    runroot: PathBuf,
    tmpdir: PathBuf,
    limits: Vec<String>,
}

impl Podman {
    fn new(cache: &Path) -> Podman {
        assert!(
            Path::new("/usr/bin/podman").exists() && Path::new("/usr/bin/runc").exists(),
            "podman and runc are missing: `cargo xtask setup` installs them"
        );
        // podman refuses a runroot over 50 characters (a checkout's target
        // dir is often longer), so the runtime state has a short fixed path.
        // It is what a tmpfs would hold: stale after a reboot.
        let state = Path::new(RUNTIME_STATE);
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
        let booted = state.join("boot_id");
        if std::fs::read_to_string(&booted).ok().as_deref() != Some(boot.as_str()) {
            let _ = std::fs::remove_dir_all(state);
            std::fs::create_dir_all(state).expect("state dir");
            std::fs::write(&booted, &boot).expect("boot id");
        }
        // podman's database records the runroot it was made with and refuses
        // another: a store made with an earlier runroot is started afresh.
        let root = cache.join("storage");
        let made_with = cache.join("storage-runroot");
        if std::fs::read_to_string(&made_with).ok().as_deref() != Some(RUNTIME_STATE) {
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(cache).expect("cache dir");
            std::fs::write(&made_with, RUNTIME_STATE).expect("runroot stamp");
        }
        Podman { root, runroot: state.join("run"), tmpdir: state.join("libpod"), limits: resource_limits() }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--tmpdir")
            .arg(&self.tmpdir)
            .args(["--runtime", "runc"]);
        command
    }

    /// `podman build` or `podman run`, with the limits this machine lets root set.
    fn limited(&self, subcommand: &str) -> Command {
        let mut command = self.command();
        command.arg(subcommand).args(&self.limits);
        command
    }
}

/// `--ulimit` options at the test's own hard limits: podman's defaults
/// (RLIMIT_NOFILE 1048576) are above them, and root without
/// `CAP_SYS_RESOURCE` cannot raise a limit; podman itself holds
/// RLIMIT_NPROC to 32768.
fn resource_limits() -> Vec<String> {
    let hard = |resource| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct it is given, nothing else.
        let got = unsafe { libc::getrlimit(resource, &mut limit) };
        assert_eq!(got, 0, "getrlimit");
        limit.rlim_max
    };
    let nofile = hard(libc::RLIMIT_NOFILE).min(1 << 20);
    let nproc = hard(libc::RLIMIT_NPROC).min(32768);
    vec![format!("--ulimit=nofile={nofile}:{nofile}"), format!("--ulimit=nproc={nproc}:{nproc}")]
}

/// A `KEY=value` of /etc/os-release.
fn os_release(key: &str) -> String {
    let text = std::fs::read_to_string("/etc/os-release").expect("/etc/os-release");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(|value| value.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("/etc/os-release has no {key}"))
}

/// Today (UTC), as `date` spells it: the base image is remade each day.
fn today() -> String {
    let output = Command::new("date").args(["-u", "+%F"]).output().expect("date");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Makes `image` (the Dockerfile's `FROM`, this host's release) in the
/// store, unless today's is there: a minimal Debian of this host's release
/// from deb.debian.org, with the suites Debian's own images have.
fn base_image(podman: &Podman, steps: &Steps, image: &str) {
    let (id, version, codename) = (os_release("ID"), os_release("VERSION_ID"), os_release("VERSION_CODENAME"));
    assert_eq!(id, "debian", "the base image is made from deb.debian.org: this test needs a Debian host");
    assert_eq!(image, format!("{id}:{version}"), "the Dockerfile names another release than this host's");
    let cache = cache_dir();
    let rootfs_name = format!("{id}-{version}-{codename}-minbase-{}.tar", today());
    let rootfs = cache.join(&rootfs_name);
    let label = "org.reprotrace.test.rootfs";
    let (_, imported) = steps.run(
        "inspect-base",
        podman.command().args(["image", "inspect", "--format", &format!("{{{{index .Labels \"{label}\"}}}}"), image]),
        Duration::from_secs(60),
    );
    if imported.trim() == rootfs_name {
        return;
    }
    if !rootfs.exists() {
        // Other days' root file systems are not needed any more.
        for entry in std::fs::read_dir(&cache).expect("cache dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{id}-{version}-")) && name.ends_with(".tar") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let partial = cache.join(format!("{rootfs_name}.partial"));
        let mirror = "http://deb.debian.org/debian";
        steps.must(
            "mmdebstrap",
            Command::new("mmdebstrap")
                // The format named: the output's name does not end in .tar.
                .args(["--variant=minbase", "--format=tar", &codename])
                .arg(&partial)
                .arg(format!("deb {mirror} {codename} main"))
                .arg(format!("deb {mirror} {codename}-updates main"))
                .arg(format!("deb http://deb.debian.org/debian-security {codename}-security main")),
            Duration::from_secs(900),
        );
        std::fs::rename(&partial, &rootfs).expect("the root file system, in place");
    }
    steps.must(
        "import-base",
        podman
            .command()
            .arg("import")
            .arg(format!("--change=LABEL {label}={rootfs_name}"))
            .arg("--change=ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("--change=CMD [\"bash\"]")
            .arg(&rootfs)
            .arg(image),
        Duration::from_secs(300),
    );
    // Yesterday's base, untagged now.
    steps.must("prune", podman.command().args(["image", "prune", "--force"]), Duration::from_secs(120));
}

/// The built image and the container that ran it, removed however the test ends.
struct Built<'a> {
    podman: &'a Podman,
    image: String,
    container: String,
}

impl Drop for Built<'_> {
    fn drop(&mut self) {
        let _ = self.podman.command().args(["rm", "--force", &self.container]).output();
        let _ = self.podman.command().args(["rmi", "--force", &self.image]).output();
    }
}

fn reprotrace(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(reprotrace_bin()).current_dir(cwd).args(args).output().expect("reprotrace")
}

fn said(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The `name=version` arguments of the Dockerfile's `apt-install.sh` step.
fn apt_arguments(dockerfile: &str) -> Vec<String> {
    let start = dockerfile.find("RUN [\"sh\", \"/reprotrace/apt-install.sh\"").expect("the apt step");
    let end = start + dockerfile[start..].find("]\n").expect("its end");
    let json = dockerfile[start + "RUN ".len()..=end].replace("\\\n", "");
    let argv: Vec<String> = serde_json::from_str(&json).expect("the apt step in JSON form");
    argv[2..].to_vec()
}

#[test]
fn an_exported_dockerfile_builds_and_its_image_reproduces_the_run() {
    let started = Instant::now();
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).expect("cache dir");
    let dir = tempfile::tempdir().expect("tempdir");
    // Kept after a failure, for the engine's whole output (the last run's).
    let logs = cache.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).expect("logs dir");
    let steps = Steps { logs };

    // The run: a venv with six 1.16.0 from PyPI, a script, its data.
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    let venv = python_venv(Path::new(env!("CARGO_TARGET_TMPDIR")), "container-venv", &["six==1.16.0"]);
    steps.must("copy-venv", Command::new("cp").arg("-a").arg(&venv).arg(run.join("venv")), Duration::from_secs(60));
    std::fs::write(run.join("analysis.py"), ANALYSIS).expect("script");
    std::fs::write(run.join("data.csv"), "a\nb\nc\n").expect("data");
    // And an editable project of the run's own, which no index can install:
    // the image gets its files copied.
    let project = run.join("proj");
    reprotrace_tests::python_project(&project, "greet", "0.1", "WORD = 'rows'\n");
    steps.must(
        "editable-install",
        // Through the copy's python: a copied venv's `pip` script still names
        // the original venv's interpreter.
        Command::new(run.join("venv/bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e"])
            .arg(&project),
        Duration::from_secs(300),
    );
    let audited = reprotrace(&["run", "-q", "-o", "../run.json", "--", "venv/bin/python", "analysis.py"], &run);
    assert!(audited.status.success(), "{}", said(&audited));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("run.json")).expect("manifest")).expect("JSON");
    let result = run.join("result.txt").display().to_string();
    let recorded_hash = manifest["data"]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|output| output["path"] == result.as_str())
        .and_then(|output| output["sha256"].as_str())
        .expect("result.txt is a hashed output")
        .to_string();

    let exported = reprotrace(&["export", "docker", "run.json", "-o", "context"], dir.path());
    assert!(exported.status.success(), "{}", said(&exported));
    let context = dir.path().join("context");
    let dockerfile = std::fs::read_to_string(context.join("Dockerfile")).expect("Dockerfile");
    let from = dockerfile.lines().find_map(|line| line.strip_prefix("FROM ")).expect("FROM");

    let podman = Podman::new(&cache);
    base_image(&podman, &steps, from);
    let built = Built {
        podman: &podman,
        image: format!("localhost/reprotrace-test-export:{}", std::process::id()),
        container: format!("reprotrace-test-export-{}", std::process::id()),
    };
    // The build, as a user would run it, but for this machine's settings:
    // host networking (apt and pip reach their archives; nothing of the
    // machine's bridge or firewall is changed) and the host's CA bundle and
    // a pip.conf naming it, mounted for the build only.
    // The bundle goes where no package writes (the image's ca-certificates
    // writes its own at the host's path).
    let (bundle, mounted) = ("/etc/ssl/certs/ca-certificates.crt", "/run/reprotrace-test-ca.crt");
    let pip_conf = cache.join("pip.conf");
    std::fs::write(&pip_conf, format!("[global]\ncert = {mounted}\n")).expect("pip.conf");
    let build = |name: &str, extra: &[&str]| {
        let mut command = podman.limited("build");
        command.args(["--pull=never", "--layers=false", "--network=host"]);
        if Path::new(bundle).exists() {
            command.arg(format!("--volume={bundle}:{mounted}:ro"));
            command.arg(format!("--volume={}:/etc/pip.conf:ro", pip_conf.display()));
        }
        command.args(extra).arg(format!("--tag={}", built.image)).arg(&context);
        steps.run(name, &mut command, Duration::from_secs(900))
    };
    // By default, a recorded version the archive no longer has stops the
    // build, naming it; the other packages are installable as recorded.
    let pins = apt_arguments(&dockerfile);
    let (exact, output) = build("build-exact", &[]);
    let superseded: Vec<String> = match exact {
        true => Vec::new(),
        false => {
            let named = output
                .lines()
                .find_map(|line| {
                    line.strip_prefix("reprotrace: the archive no longer has these versions the run used:")
                })
                .unwrap_or_else(|| {
                    let log = steps.logs.join("build-exact.log");
                    panic!("the build failed, not for superseded versions:\n{}", tail(&output, &log))
                });
            assert!(output.contains("--build-arg REPROTRACE_SUPERSEDED=current"), "{output}");
            let named: Vec<String> = named.split_whitespace().map(str::to_string).collect();
            assert!(named.iter().all(|pin| pins.contains(pin)), "{named:?} are not all among {pins:?}");
            let (current, output) = build("build-current", &["--build-arg=REPROTRACE_SUPERSEDED=current"]);
            assert!(current, "the build failed:\n{}", tail(&output, &steps.logs.join("build-current.log")));
            named
        }
    };

    // The image's own command, without network: it writes what the run wrote.
    steps.must(
        "run-image",
        podman.limited("run").args(["--network=none", "--name", &built.container, &built.image]),
        Duration::from_secs(120),
    );
    let copied = dir.path().join("result-from-image.txt");
    steps.must(
        "copy-result",
        podman.command().arg("cp").arg(format!("{}:{result}", built.container)).arg(&copied),
        Duration::from_secs(60),
    );
    let written = std::fs::read_to_string(&copied).expect("the image's result.txt");
    assert_eq!(written, "3 rows, six 1.16.0\n");
    assert_eq!(reprotrace_tests::sha256_of(&written), recorded_hash, "the image's output is the run's");

    // What the image holds: every package at its recorded version but the
    // superseded ones, which it lists with the version installed instead;
    // /tmp as the system has it; nothing of the build's TLS setup (podman
    // leaves the points it mounted them on, empty).
    let names: Vec<&str> = pins.iter().map(|pin| pin.split('=').next().expect("a name")).collect();
    let script = "dpkg-query -W -f '${Package}=${Version}\\n' \"$@\"; echo --; cat /reprotrace/superseded.txt; \
                  echo --; stat -c %a /tmp; test ! -s /etc/pip.conf && test ! -s /run/reprotrace-test-ca.crt && echo clean";
    let facts = steps.must(
        "inspect-image",
        podman.limited("run").args(["--rm", "--network=none", &built.image, "sh", "-c", script, "sh"]).args(&names),
        Duration::from_secs(120),
    );
    let sections: Vec<&str> = facts.split("--\n").collect();
    assert_eq!(sections.len(), 3, "{facts}");
    let installed: Vec<&str> = sections[0].lines().collect();
    for pin in &pins {
        let name = pin.split('=').next().expect("a name");
        if superseded.contains(pin) {
            let line = sections[1]
                .lines()
                .find(|line| line.starts_with(&format!("{name} recorded ")))
                .unwrap_or_else(|| panic!("{pin} is not in /reprotrace/superseded.txt:\n{facts}"));
            let now = line.rsplit(' ').next().expect("installed version");
            assert!(installed.contains(&format!("{name}={now}").as_str()), "{line}\n{facts}");
        } else {
            assert!(installed.contains(&pin.as_str()), "{pin} is not installed as recorded:\n{facts}");
        }
    }
    assert_eq!(sections[1].lines().count(), superseded.len(), "{facts}");
    assert_eq!(sections[2].lines().collect::<Vec<_>>(), ["1777", "clean"], "{facts}");
    eprintln!(
        "container test: {} superseded of {} packages; {:.0} s in all",
        superseded.len(),
        pins.len(),
        started.elapsed().as_secs_f64()
    );
}
