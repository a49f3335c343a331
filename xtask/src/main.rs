//! Developer tasks: `cargo xtask setup | test | demo`.
//!
//! - `setup` installs what building and testing need on a fresh machine:
//!   bpf-linker 0.10.1 (the eBPF linker that works with the LLVM inside the Rust
//!   toolchain) and strace.
//! - `test` builds the workspace (the `reprotrace` binary the integration tests
//!   run) and runs every test.
//! - `demo` sets up, builds, and audits the example analysis with both backends.
//! - `bench pipeline` times the post-processing of a 100k-event audit.
//! - `bench attach` compares a running process's slowdown under `reprotrace
//!   attach` (eBPF) and `strace -p`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

const BPF_LINKER_VERSION: &str = "0.10.1";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "setup" => setup(),
        "test" => test(),
        "demo" => demo(),
        "bench" => bench(std::env::args().nth(2).as_deref()),
        _ => bail!(
            "usage: cargo xtask <setup|test|demo|bench pipeline>\n  setup  install bpf-linker {BPF_LINKER_VERSION} and strace\n  \
             test   build and run every test (needs root)\n  demo   setup, build, and audit examples/analysis.py with both \
             backends\n  bench pipeline  time the post-processing of a 100k-event audit\n  \
             bench attach    attach overhead, eBPF vs strace -p"
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
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).ends_with("installed"))
}

fn setup() -> Result<()> {
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
    let mut missing: Vec<&str> = [("strace", "strace"), ("setpriv", "util-linux"), ("python3", "python3")]
        .into_iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| package)
        .collect();
    missing.extend(["python3-venv", "python3-wheel"].into_iter().filter(|package| !dpkg_installed(package)));
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

fn test() -> Result<()> {
    // The integration tests run the real binary: build it first.
    run(cargo().args(["build", "--workspace", "--all-targets"]))?;
    // Echo cargo's output while adding up its per-target results, so the run
    // ends on one line that counts every test.
    let mut child = cargo()
        .args(["test", "--workspace", "--all-targets"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test's output")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            passed += count_before(result, " passed");
            failed += count_before(result, " failed");
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// The number just before `label` in a `test result:` line.
fn count_before(result: &str, label: &str) -> u64 {
    result
        .split(';')
        .find_map(|part| part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

fn bench(which: Option<&str>) -> Result<()> {
    match which {
        Some("pipeline") => {
            run(cargo().args(["run", "--release", "--package", "tracer-user", "--example", "pipeline_bench"]))
        }
        Some("attach") => bench_attach(),
        _ => bail!("usage: cargo xtask bench pipeline|attach"),
    }
}

/// Attach overhead: a running process's file loop, untraced, under
/// `reprotrace attach` (eBPF) and under `reprotrace attach --backend strace`
/// (`strace -p`), interleaved, median of the rounds.
fn bench_attach() -> Result<()> {
    const ROUNDS: usize = 5;
    const ITERATIONS: &str = "20000";
    run(cargo().args(["build", "--release", "--package", "tracer-user"]))?;
    let root = repo_root();
    let reprotrace = root.join("target/release/reprotrace");
    let workload = root.join("xtask/workloads/attach_loop.py");
    let modes = ["native", "ebpf", "strace"];
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 0..ROUNDS {
        for (mode_index, mode) in modes.iter().enumerate() {
            let work =
                std::env::temp_dir().join(format!("reprotrace-bench-attach-{}-{round}-{mode}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            let worker = Command::new("/usr/bin/python3")
                .arg(&workload)
                .arg(&work)
                .arg(ITERATIONS)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("starting the workload")?;
            while !work.join("ready").exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let tracer = if *mode == "native" {
                None
            } else {
                let mut tracer = Command::new(&reprotrace)
                    .args(["attach", "--backend", mode, "--pid", &worker.id().to_string(), "-o"])
                    .arg(work.join("manifest.json"))
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .context("starting reprotrace attach")?;
                let stderr = tracer.stderr.take().context("reprotrace's stderr")?;
                let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
                while !lines.next().context("reprotrace ended before attaching")??.contains("attached to") {}
                Some(tracer)
            };
            std::fs::write(work.join("go"), "")?;
            let output = worker.wait_with_output()?;
            let elapsed: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().context("workload output")?;
            if let Some(mut tracer) = tracer {
                tracer.wait()?;
            }
            seconds[mode_index].push(elapsed);
            std::fs::remove_dir_all(&work)?;
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let native = median(&mut seconds[0].clone());
    println!("attach overhead: {ITERATIONS} open+read+close+stat iterations, {ROUNDS} interleaved rounds, median");
    for (mode, values) in modes.iter().zip(seconds.iter_mut()) {
        let value = median(values);
        println!("  {mode:<7} {value:.3} s  {:.2}x", value / native);
    }
    Ok(())
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
