//! `cargo xtask cluster up|down`: a simulated Dask cluster on this machine
//! (the `cluster` crate: hosts as network namespaces, each with its hostname,
//! its `reprotrace daemon` and its workers), left running for experiments
//! such as `reprotrace run --dask -- python manager.py` on the manager host.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
// `::cluster`: the crate, not this module.
use ::cluster::{Cluster, ClusterSpec, HostSpec, WorkerSpec, MANAGER};

use crate::{cargo, repo_root, run};

/// The subcommand's usage, for the xtask's.
pub const USAGE: &str = "cargo xtask cluster up [--hosts N] [--workers M] [--state DIR] [--python PATH] [--venv DIR] \
                         [--reprotrace PATH]\n         cargo xtask cluster down [--state DIR]";

/// The versions the simulated cluster was verified with.
const DASK_PACKAGES: [&str; 3] = ["dask==2026.8.0", "distributed==2026.8.0", "numpy"];
/// The preload that gives each worker's tasks to reprotrace.
const PRELOAD: &str = "reprotrace.dask";

const HELP: &str = "\
usage: cargo xtask cluster up [options]    start a simulated Dask cluster and leave it running (root)
       cargo xtask cluster down [--state DIR]    tear it down

  --hosts N          simulated hosts host-1…host-N, each with a reprotrace daemon (default 2)
  --workers M        Dask workers per host, host-1-w1… (default 2)
  --state DIR        sockets, logs and the state file (default target/cluster/state)
  --python PATH      the Python of the scheduler, the manager and the workers (default: a venv at
                     --venv with dask, distributed, numpy and the repo's ./python package, made if missing)
  --venv DIR         where that venv goes (default target/cluster/venv)
  --reprotrace PATH  the reprotrace binary (default: `cargo build -p tracer-user` and use that)";

/// What the command line asks for.
struct Options {
    hosts: usize,
    workers: usize,
    state: PathBuf,
    python: Option<PathBuf>,
    venv: PathBuf,
    reprotrace: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String], up: bool) -> Result<Options> {
        let cluster_dir = repo_root().join("target").join("cluster");
        let mut options = Options {
            hosts: 2,
            workers: 2,
            state: cluster_dir.join("state"),
            python: None,
            venv: cluster_dir.join("venv"),
            reprotrace: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            if matches!(flag, "-h" | "--help") {
                bail!("{HELP}");
            }
            let value = match inline {
                Some(value) => value,
                None => args.next().cloned().with_context(|| format!("{flag} needs a value\n{HELP}"))?,
            };
            let count = |value: &str| -> Result<usize> {
                value
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .with_context(|| format!("{flag} {value}: give a count of at least 1"))
            };
            match (flag, up) {
                ("--state", _) => options.state = value.into(),
                ("--hosts", true) => options.hosts = count(&value)?,
                ("--workers", true) => options.workers = count(&value)?,
                ("--python", true) => options.python = Some(value.into()),
                ("--venv", true) => options.venv = value.into(),
                ("--reprotrace", true) => options.reprotrace = Some(value.into()),
                _ => bail!("unknown option {arg:?}\n{HELP}"),
            }
        }
        Ok(options)
    }
}

/// `cargo xtask cluster …`.
pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => up(&Options::parse(&args[1..], true)?),
        Some("down") => down(&Options::parse(&args[1..], false)?),
        _ => bail!("{HELP}"),
    }
}

fn up(options: &Options) -> Result<()> {
    let python = match &options.python {
        Some(python) => python.clone(),
        None => ensure_venv(&options.venv)?,
    };
    let reprotrace = match &options.reprotrace {
        Some(reprotrace) => reprotrace.clone(),
        None => {
            println!("xtask: building reprotrace");
            run(cargo().args(["build", "-p", "tracer-user"]))?;
            target_dir().join("debug").join("reprotrace")
        }
    };
    let preload = match Command::new(&python).args(["-c", &format!("import {PRELOAD}")]).output() {
        Ok(output) if output.status.success() => vec![PRELOAD.to_string()],
        Ok(output) => {
            let why = String::from_utf8_lossy(&output.stderr);
            println!(
                "xtask: warning: {} cannot import {PRELOAD}, so the workers go without `--preload {PRELOAD}`: {}",
                python.display(),
                why.trim().lines().last().unwrap_or_default()
            );
            Vec::new()
        }
        Err(err) => bail!("cannot run {}: {err}", python.display()),
    };
    let hosts: Vec<HostSpec> = (1..=options.hosts)
        .map(|n| HostSpec { name: format!("host-{n}"), daemon: true, python: python.clone(), user: None })
        .collect();
    let workers = hosts
        .iter()
        .flat_map(|host| {
            (1..=options.workers).map(|n| WorkerSpec {
                host: host.name.clone(),
                name: format!("{}-w{n}", host.name),
                preload: preload.clone(),
                ..WorkerSpec::default()
            })
        })
        .collect();
    let spec = ClusterSpec {
        hosts,
        workers,
        scheduler_python: python.clone(),
        reprotrace: reprotrace.clone(),
        daemon_args: Vec::new(),
        state_dir: options.state.clone(),
    };
    println!("xtask: starting {} hosts × {} workers (this takes a little while)", options.hosts, options.workers);
    let cluster = Cluster::up(spec)?;
    let state = cluster.state_dir().display().to_string();
    println!("xtask: the cluster is up; it keeps running until `cargo xtask cluster down --state {state}`");
    println!("  scheduler:  {}", cluster.scheduler_address());
    for n in 1..=options.hosts {
        let host = format!("host-{n}");
        let address = cluster.host_address(&host).map(|address| address.to_string()).unwrap_or_default();
        let socket = cluster.daemon_socket(&host).map(|socket| socket.display().to_string()).unwrap_or_default();
        let workers = match options.workers {
            1 => format!("worker {host}-w1"),
            n => format!("workers {host}-w1…{host}-w{n}"),
        };
        println!("  {host}:  {address}, daemon {socket}, {workers}");
    }
    println!("  logs and state:  {state}");
    let prefix = cluster.command_prefix(MANAGER).context("the cluster has no manager host")?;
    let prefix: Vec<String> = prefix.iter().map(|arg| shell_quote(arg)).collect();
    println!("  run on the manager host (hostname `{MANAGER}`):\n    {} COMMAND…", prefix.join(" "));
    println!(
        "  for example:\n    {} env DASK_SCHEDULER_ADDRESS={} {} run --dask -- {} manager.py",
        prefix.join(" "),
        cluster.scheduler_address(),
        shell_quote(reprotrace.as_os_str()),
        shell_quote(python.as_os_str())
    );
    // The processes outlive this one.
    cluster.detach();
    Ok(())
}

fn down(options: &Options) -> Result<()> {
    ::cluster::down_from_state(&options.state)?;
    println!("xtask: the cluster of {} is down (its logs stay)", options.state.display());
    Ok(())
}

/// Cargo's target directory, where the reprotrace binary is built.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}

/// Whether `python` can run `code`.
fn runs(python: &Path, code: &str) -> bool {
    Command::new(python).args(["-c", code]).output().is_ok_and(|output| output.status.success())
}

/// A venv with dask, distributed and numpy at `dir` (made if missing), and
/// the repo's Python package reinstalled; returns its python.
fn ensure_venv(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin").join("python");
    if !python.exists() {
        // Debian's Python where there is one: a pyenv Python under /root
        // could not run workers as other users.
        let base = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        println!("xtask: creating a venv for the cluster at {} (from {base})", dir.display());
        run(Command::new(base).args(["-m", "venv"]).arg(dir))
            .context("cannot create the venv (on Debian: apt-get install python3-venv)")?;
    }
    if !runs(&python, "import dask, distributed, numpy") {
        println!("xtask: installing {} into {}", DASK_PACKAGES.join(" "), dir.display());
        run(Command::new(&python).args(["-m", "pip", "install", "--disable-pip-version-check"]).args(DASK_PACKAGES))
            .context("cannot install the Dask packages into the venv (is PyPI reachable?)")?;
    }
    // Always: the package changes with the repo.
    let output = Command::new(&python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--force-reinstall", "--no-deps"])
        .arg(repo_root().join("python"))
        .output()
        .context("running pip")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        println!(
            "xtask: warning: `pip install ./python` failed ({}), going on without the repo's Python package:\n  {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        );
    }
    Ok(python)
}

/// `arg` as one word for sh.
fn shell_quote(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    let plain = |byte: u8| byte.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&byte);
    if !text.is_empty() && text.bytes().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
