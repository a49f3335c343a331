//! Developer tasks: `cargo xtask setup | test | demo | bench`.
//!
//! - `setup` installs what building and testing need on a fresh machine:
//!   bpf-linker 0.10.1 (the eBPF linker that works with the LLVM inside the Rust
//!   toolchain), strace, and the Debian packages the tests use (podman and
//!   mmdebstrap among them); it installs only what is missing.
//! - `test` builds the workspace (the `reprotrace` binary the integration tests
//!   run) and runs every test.
//! - `demo` sets up, builds, and audits the example analysis with both backends.
//! - `bench` measures reprotrace's overhead against running untraced, strace
//!   and reprozip on prepared workloads (imports, an open storm, a C build,
//!   fork/exec, a notebook, attaching to a running process, and the cost to
//!   untraced processes), interleaved rounds; see `bench/mod.rs` and
//!   docs/benchmarks.md.
//! - `bench pipeline` times the post-processing of a 100k-event audit.
//! - `bench programs` measures the kernel programs' own time a syscall.
//! - `cluster up|down` starts a simulated Dask cluster (hosts as network
//!   namespaces, each with a reprotrace daemon and workers) and leaves it
//!   running, or tears it down; see `cluster.rs`.

mod bench;
mod cluster;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

const BPF_LINKER_VERSION: &str = "0.10.1";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str).unwrap_or_default() {
        "setup" => setup(),
        "test" => test(),
        "demo" if args.get(1).map(String::as_str) == Some("cluster") => cluster::demo(),
        "demo" => demo(),
        "bench" => bench::main(&args[1..]),
        "cluster" => cluster::main(&args[1..]),
        _ => bail!(
            "usage: cargo xtask <setup|test|demo|bench|cluster>\n  setup  install bpf-linker {BPF_LINKER_VERSION}, strace and the Debian packages the tests use\n  \
             test   build and run every test (needs root)\n  demo   setup, build, and audit examples/analysis.py with both \
             backends\n  demo cluster  the three example notebooks under `reprotrace run --dask` on a simulated \
             cluster, checked\n  bench  overhead of reprotrace against native, strace and reprozip on prepared workloads \
             (root; 38–65 minutes at 5 rounds on 2 cores; writes docs/benchmarks.md):\n         {}\n  \
             bench pipeline  time the post-processing of a 100k-event audit\n  bench programs  the kernel \
             programs' own time a syscall (root)\n  cluster  a simulated Dask cluster on \
             this machine, left running (root):\n         {}",
            bench::USAGE,
            cluster::USAGE
        ),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(repo_root());
    command
}

fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// The Rust toolchain's own library directory, where bpf-linker finds LLVM.
fn rust_sysroot_lib() -> Result<String> {
    let output = Command::new("rustc").args(["--print", "sysroot"]).output().context("running rustc")?;
    Ok(format!("{}/lib", String::from_utf8_lossy(&output.stdout).trim()))
}

fn installed_bpf_linker_version() -> Option<String> {
    let output =
        Command::new("bpf-linker").arg("--version").env("LD_LIBRARY_PATH", rust_sysroot_lib().ok()?).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().nth(1).map(str::to_string)
}

fn on_path(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program} >/dev/null")]).status().is_ok_and(|s| s.success())
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        // The status's last word: "installed", not "not-installed" (which
        // also ends so) nor "half-installed".
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).split_whitespace().last() == Some("installed"))
}

pub(crate) fn setup() -> Result<()> {
    match installed_bpf_linker_version() {
        Some(version) if version == BPF_LINKER_VERSION => println!("xtask: bpf-linker {version} is installed"),
        found => {
            println!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (found {found:?}); this takes about a minute");
            run(cargo()
                .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked", "--force"])
                .env("LD_LIBRARY_PATH", rust_sysroot_lib()?))?;
        }
    }
    // Programs the tests run, and Debian packages the Python tests build venvs with.
    // ip, nsenter and unshare make the simulated Dask hosts (the cluster crate);
    // the security tests create a real user (useradd) who runs reprotrace
    // through the real sudo (a sudoers rule checked by visudo), and mount
    // small tmpfs.
    let mut missing: Vec<&str> = [
        ("strace", "strace"),
        ("useradd", "passwd"),
        ("sudo", "sudo"),
        ("visudo", "sudo"),
        ("mount", "mount"),
        ("setpriv", "util-linux"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("ip", "iproute2"),
        ("python3", "python3"),
    ]
    .into_iter()
    .filter(|(program, _)| !on_path(program))
    .map(|(_, package)| package)
    .collect();
    // linux-libc-dev: the ABI's syscall numbers, which a test checks the syscall table against.
    // The fidelity tests compile C (gcc, 32-bit with gcc-multilib, io_uring with liburing-dev),
    // run make, and audit Debian's own Python distributions (python3-yaml, python3-six, two sharing the namespace `lazr`) and
    // symlinked programs and files (mawk, binutils, tzdata).
    missing.extend(
        [
            "python3-venv",
            "python3-wheel",
            "linux-libc-dev",
            "gcc",
            "gcc-multilib",
            "liburing-dev",
            "make",
            "python3-yaml",
            "python3-six",
            // Two distributions sharing the namespace package `lazr`.
            "python3-lazr.uri",
            "python3-lazr.restfulclient",
            "mawk",
            "binutils",
            "tzdata",
            // The report tests render HTML in a real browser.
            "chromium",
            // The container test builds `export docker`'s context with podman
            // on a base image made by mmdebstrap. runc: Debian's crun refuses
            // these machines' hybrid cgroup hierarchy.
            "podman",
            "runc",
            "mmdebstrap",
        ]
        .into_iter()
        .filter(|package| !dpkg_installed(package)),
    );
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        println!("xtask: installing {}", missing.join(", "));
        run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !Path::new("/usr/bin/python3").exists() {
        bail!("the tests run /usr/bin/python3 (Debian's python3 package); install it");
    }
    println!("xtask: setup done");
    Ok(())
}

/// Far above a normal run (some 5 minutes), well inside CI's limit.
const TEST_RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

fn test() -> Result<()> {
    // The integration tests run the real binary: build it first.
    run(cargo().args(["build", "--workspace", "--all-targets"]))?;
    // Echo cargo's output while adding up its per-target results, so the run
    // ends on one line that counts every test.
    // In a process group of its own, so that a watchdog can end every
    // process of the run: a test that hangs fails the run in bounded time
    // (cargo's "has been running for over 60 seconds" lines name it).
    // Every test binary runs even after one fails, so that a run names all
    // its failures at once.
    let mut child = cargo()
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .context("running cargo test")?;
    let group = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(TEST_RUN_LIMIT);
        // SAFETY: kill(2) with a negative pid signals the process group this
        // function made; it touches no memory.
        unsafe { libc::kill(-(group as libc::pid_t), libc::SIGKILL) };
        // Not waiting for the output to end: a process that left the group
        // may hold it open.
        eprintln!(
            "the tests ran over {} minutes and were stopped: the test running longest above hangs",
            TEST_RUN_LIMIT.as_secs() / 60
        );
        std::process::exit(1);
    });
    let stdout = child.stdout.take().context("cargo test's output")?;
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut count = |line: String| {
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            passed += count_before(result, " passed");
            failed += count_before(result, " failed");
        }
    };
    let mut status = None;
    loop {
        match lines.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(line) => count(line?),
            // The output ended: every process that held it is gone.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if status.is_none() {
                    status = child.try_wait()?;
                }
                // cargo is done, and a process a test left behind still
                // holds the output: say which, and end them rather than
                // wait for them.
                if status.is_some() {
                    end_leftovers(group);
                }
            }
        }
    }
    let status = match status {
        Some(status) => status,
        None => child.wait()?,
    };
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Once cargo test has exited: the processes of its group still running
/// (left behind by a test) are named and killed.
fn end_leftovers(group: u32) {
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    let mut leftovers = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command's closing parenthesis: state, ppid, pgrp.
        let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>()) else {
            continue;
        };
        if fields.get(2).and_then(|pgrp| pgrp.parse::<u32>().ok()) == Some(group) && fields.first() != Some(&"Z") {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            // Where it was stuck, to find which test left it and why.
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            let waiting = match wchan.as_str() {
                "" => String::new(),
                "0" => ", not waiting".into(),
                wchan => format!(", waiting in {wchan}"),
            };
            let details =
                format!("state {}, parent {}{waiting}", fields.first().unwrap_or(&"?"), fields.get(1).unwrap_or(&"?"));
            leftovers.push((pid, command, details));
        }
    }
    for (pid, command, details) in &leftovers {
        eprintln!(
            "xtask: warning: a test left pid {pid} running ({details}), holding the test output; killed: {command}"
        );
        // SAFETY: kill(2) on a pid of the test run's own process group; no memory is touched.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
}

/// The number just before `label` in a `test result:` line.
fn count_before(result: &str, label: &str) -> u64 {
    result
        .split(';')
        .find_map(|part| part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

fn demo() -> Result<()> {
    setup()?;
    run(cargo().args(["build", "--release", "--package", "tracer-user"]))?;
    let root = repo_root();
    let reprotrace = root.join("target/release/reprotrace");
    let out = root.join("target/demo");
    std::fs::create_dir_all(&out)?;
    for backend in ["ebpf", "strace"] {
        let manifest = out.join(format!("{backend}.json"));
        println!("\nxtask: auditing examples/analysis.py with the {backend} backend");
        run(Command::new(&reprotrace)
            .current_dir(&root)
            .args(["run", "--backend", backend, "-o"])
            .arg(&manifest)
            .args(["--", "/usr/bin/python3", "examples/analysis.py", "examples/data/measurements.csv"])
            .arg(out.join("report")))?;
    }
    let text = std::fs::read_to_string(out.join("ebpf.json"))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)?;
    let names = |list: &serde_json::Value, key: &str| -> Vec<String> {
        list.as_array().into_iter().flatten().filter_map(|item| item[key].as_str().map(str::to_string)).collect()
    };
    println!("\nxtask: manifests in {}; from the eBPF one:", out.display());
    println!("  interpreters:    {}", names(&manifest["software"]["interpreters"], "path").join(", "));
    println!("  system packages: {}", names(&manifest["software"]["system_packages"], "name").join(", "));
    println!("  data:\n{}", serde_json::to_string_pretty(&manifest["data"])?);
    let diff =
        Command::new(&reprotrace).arg("diff").arg(out.join("ebpf.json")).arg(out.join("strace.json")).status()?;
    println!(
        "xtask: `reprotrace diff` of the two backends' manifests exits {:?} (0: same packages and data)",
        diff.code()
    );
    Ok(())
}
