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

/// The versions the simulated cluster was verified with, and what runs the
/// example notebooks on the manager host.
const DASK_PACKAGES: [&str; 6] =
    ["dask==2026.8.0", "distributed==2026.8.0", "numpy", "nbconvert", "nbclient", "ipykernel"];
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

/// `cargo xtask demo cluster`: the three example notebooks (examples/), each
/// under `reprotrace run --dask` on a simulated cluster of 3 hosts × 2
/// workers, their manifests checked: every input has its task, which read it
/// and wrote its output, on a host of the cluster.
pub fn demo() -> Result<()> {
    crate::setup()?;
    run(cargo().args(["build", "--release", "-p", "tracer-user"]))?;
    let reprotrace = target_dir().join("release").join("reprotrace");
    let out = repo_root().join("target").join("demo").join("cluster");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let python = ensure_venv(&repo_root().join("target").join("cluster").join("venv"))?;
    println!("xtask: starting 3 hosts × 2 workers");
    let cluster = Cluster::up(spec(&out.join("state"), 3, 2, &python, &reprotrace, true)?)?;
    // (example, its input directory, its per-task output directory, the key prefix)
    let examples = [
        ("convolution", "images", "edges", "convolve-"),
        ("climate", "stations", "fits", "fit-"),
        ("hep", "events", "histograms", "histogram-"),
    ];
    for (example, inputs, outputs, prefix) in examples {
        let dir = out.join(example);
        let data = dir.join("data");
        std::fs::create_dir_all(&dir)?;
        let source = repo_root().join("examples").join(example);
        let notebook = format!("{example}.ipynb");
        std::fs::copy(source.join(&notebook), dir.join(&notebook))?;
        run(Command::new(&python).arg(source.join("generate.py")).arg("--out").arg(&data))?;
        let manifest = out.join(format!("{example}.json"));
        println!("\nxtask: {example}: reprotrace run --dask -- jupyter nbconvert --execute {notebook}");
        run(cluster
            .command_on(MANAGER, &reprotrace)
            .current_dir(&dir)
            .env("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address())
            .env("EXAMPLE_DATA_DIR", &data)
            .args(["run", "--dask", "--no-daemon", "-o"])
            .arg(&manifest)
            .arg("--")
            .arg(python.with_file_name("jupyter"))
            .args(["nbconvert", "--to", "notebook", "--execute", &notebook, "--output"])
            .arg(format!("{example}.out.ipynb")))?;
        check_example(&manifest, &data.join(inputs), &data.join(outputs), prefix)?;
    }
    cluster.down()?;
    println!("\nxtask: the three examples ran on the simulated cluster; manifests in {}", out.display());
    Ok(())
}

/// Every input file of an example has exactly one task, which read it and
/// wrote one file of `outputs`; the run is complete.
fn check_example(manifest: &Path, inputs: &Path, outputs: &Path, prefix: &str) -> Result<()> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)?;
    let paths = |list: &serde_json::Value| -> Vec<String> {
        list.as_array().into_iter().flatten().filter_map(|entry| entry["path"].as_str().map(str::to_string)).collect()
    };
    let tasks = manifest["tasks"].as_array().context("no tasks in the manifest")?;
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(inputs)?.map(|entry| entry.map(|entry| entry.path())).collect::<Result<_, _>>()?;
    files.sort();
    for file in &files {
        let file = file.display().to_string();
        let readers: Vec<&serde_json::Value> =
            tasks.iter().filter(|task| paths(&task["data"]["inputs"]) == [file.clone()]).collect();
        let [task] = readers.as_slice() else { bail!("{file}: {} tasks read it, not one", readers.len()) };
        let written = paths(&task["data"]["outputs"]);
        if written.len() != 1 || !written[0].starts_with(&outputs.display().to_string()) {
            bail!("{file}: its task {} wrote {written:?}", task["key"]);
        }
        if !task["key"].as_str().unwrap_or_default().starts_with(prefix) {
            bail!("{file}: read by task {}", task["key"]);
        }
    }
    if manifest["stats"]["complete"] != true {
        bail!("the audit is incomplete: {}", manifest["stats"]);
    }
    let hosts: Vec<String> = manifest["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|host| {
            let python: Vec<String> = host["software"]["python"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| Some(format!("{} {}", d["name"].as_str()?, d["version"].as_str()?)))
                .collect();
            format!(
                "  {}: {} workers; {}",
                host["host"].as_str().unwrap_or("?"),
                host["workers"].as_array().map_or(0, Vec::len),
                python.join(", ")
            )
        })
        .collect();
    println!(
        "xtask: checked: {} inputs, each read by one task on the cluster that wrote one output; hosts:\n{}",
        files.len(),
        hosts.join("\n")
    );
    Ok(())
}

/// A cluster of `hosts` hosts with `workers` workers each, all on `python`;
/// `audited`: each host runs a daemon and each worker loads the preload
/// (when the venv has it).
pub(crate) fn spec(
    state: &Path,
    hosts: usize,
    workers: usize,
    python: &Path,
    reprotrace: &Path,
    audited: bool,
) -> Result<ClusterSpec> {
    let preload = match Command::new(python).args(["-c", &format!("import {PRELOAD}")]).output() {
        _ if !audited => Vec::new(),
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
    let hosts: Vec<HostSpec> = (1..=hosts)
        .map(|n| HostSpec { name: format!("host-{n}"), daemon: audited, python: python.to_path_buf(), user: None })
        .collect();
    let workers = hosts
        .iter()
        .flat_map(|host| {
            (1..=workers).map(|n| WorkerSpec {
                host: host.name.clone(),
                name: format!("{}-w{n}", host.name),
                preload: preload.clone(),
                ..WorkerSpec::default()
            })
        })
        .collect();
    Ok(ClusterSpec {
        hosts,
        workers,
        scheduler_python: python.to_path_buf(),
        reprotrace: reprotrace.to_path_buf(),
        daemon_args: Vec::new(),
        state_dir: state.to_path_buf(),
    })
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
    let spec = spec(&options.state, options.hosts, options.workers, &python, &reprotrace, true)?;
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
pub(crate) fn target_dir() -> PathBuf {
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
pub(crate) fn ensure_venv(dir: &Path) -> Result<PathBuf> {
    let python = dir.join("bin").join("python");
    if !python.exists() {
        // Debian's Python where there is one: a pyenv Python under /root
        // could not run workers as other users.
        let base = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        println!("xtask: creating a venv for the cluster at {} (from {base})", dir.display());
        run(Command::new(base).args(["-m", "venv"]).arg(dir))
            .context("cannot create the venv (on Debian: apt-get install python3-venv)")?;
    }
    if !runs(&python, "import dask, distributed, numpy, nbconvert, ipykernel") {
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
