//! The `cluster` workload (also alone: `cargo xtask bench cluster`): the
//! climate example notebook on a simulated Dask cluster (2 hosts × 2
//! workers), native against audited, side by side in one run. Two clusters stay up for the whole benchmark: a plain one (no
//! daemon, no preload) for native runs, and one whose hosts run a daemon and
//! whose workers load `reprotrace.dask`, where the notebook runs under
//! `reprotrace run --dask` (through host-1's daemon). Rounds alternate which
//! goes first; the measure is the wall time of the whole nbconvert run, the
//! collection of the workers' audits and the merged manifest included.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Context, Result};
use cluster::{Cluster, MANAGER};

use super::{
    report::WorkloadResult,
    stats::{summarize, ModeResult, Sample},
};
use crate::{cargo, cluster as xcluster, repo_root, run};

const HOSTS: usize = 2;
const WORKERS_PER_HOST: usize = 2;

/// What one round runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Native,
    Audited,
}

/// `cargo xtask bench cluster`.
pub fn main(rounds: usize) -> Result<()> {
    crate::setup()?;
    run(cargo().args(["build", "--release", "-p", "tracer-user"]))?;
    super::report::print_table(&bench(rounds)?);
    Ok(())
}

/// What the workload is, for the report.
pub const DESCRIPTION: &str =
    "The climate example (`examples/climate/climate.ipynb`, 10 stations) by `jupyter nbconvert \
                               --execute` on a simulated Dask cluster of 2 hosts × 2 workers (network namespaces); \
                               the measure is the whole run's wall time, the collection of the workers' audits and \
                               the merged manifest included";

/// Runs the workload (the release binary is built already).
pub fn bench(rounds: usize) -> Result<WorkloadResult> {
    let root = repo_root();
    let reprotrace = xcluster::target_dir().join("release").join("reprotrace");
    let python = xcluster::ensure_venv(&root.join("target/cluster/venv"))?;
    let out = root.join("target/bench/cluster");
    let _ = std::fs::remove_dir_all(&out);
    let example = out.join("climate");
    std::fs::create_dir_all(&example)?;
    let source = root.join("examples/climate");
    std::fs::copy(source.join("climate.ipynb"), example.join("climate.ipynb"))?;
    run(Command::new(&python).arg(source.join("generate.py")).arg("--out").arg(example.join("data")))?;

    println!("bench: starting two simulated clusters of {HOSTS} hosts × {WORKERS_PER_HOST} workers");
    let plain = Cluster::up(xcluster::spec(&out.join("plain"), HOSTS, WORKERS_PER_HOST, &python, &reprotrace, false)?)?;
    let audited =
        Cluster::up(xcluster::spec(&out.join("audited"), HOSTS, WORKERS_PER_HOST, &python, &reprotrace, true)?)?;
    let socket = audited.daemon_socket("host-1").context("host-1 has no daemon")?;
    let run_once = |mode: Mode| -> Result<f64> {
        let (cluster, manifest) = match mode {
            Mode::Native => (&plain, None),
            Mode::Audited => (&audited, Some(out.join("run.json"))),
        };
        let jupyter = python.with_file_name("jupyter");
        let mut command = match &manifest {
            None => cluster.command_on(MANAGER, &jupyter),
            Some(manifest) => {
                let mut command = cluster.command_on(MANAGER, &reprotrace);
                command.args(["run", "--dask", "--quiet", "--socket"]).arg(&socket).arg("-o").arg(manifest).arg("--");
                command.arg(&jupyter);
                command
            }
        };
        command
            .current_dir(&example)
            .env("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address())
            .env("EXAMPLE_DATA_DIR", example.join("data"))
            .args(["nbconvert", "--to", "notebook", "--execute", "climate.ipynb", "--output", "climate.out.ipynb"]);
        let start = Instant::now();
        let output = command.output().context("running the notebook")?;
        let wall = start.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!("the climate notebook failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
        }
        if let Some(manifest) = &manifest {
            check_complete(manifest)?;
        }
        Ok(wall)
    };

    println!("bench: warm-up");
    for mode in [Mode::Native, Mode::Audited] {
        run_once(mode)?;
    }
    let (mut native, mut traced) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [Mode::Native, Mode::Audited] } else { [Mode::Audited, Mode::Native] };
        for (position, mode) in order.into_iter().enumerate() {
            let wall_s = run_once(mode)?;
            let sample = Sample { round, position, wall_s, ..Sample::default() };
            match mode {
                Mode::Native => native.push(sample),
                Mode::Audited => traced.push(sample),
            }
        }
        // The two runs of a round are side by side: each audited run is
        // compared with its round's native one.
        traced[round].native_s = Some(native[round].wall_s);
        println!(
            "  round {}/{rounds}: native {:.2}s audited {:.2}s",
            round + 1,
            native[round].wall_s,
            traced[round].wall_s
        );
    }
    plain.down()?;
    audited.down()?;
    let mut native_result = ModeResult::new("native", "CMD on the plain cluster (no daemon, no preload)".into());
    native_result.summary = summarize(&native, None);
    native_result.samples = native;
    let mut audited_result = ModeResult::new(
        "ebpf-daemon",
        "reprotrace run --dask -q --socket S -o M -- CMD on a cluster whose hosts run a daemon and whose workers \
         load `reprotrace.dask` (each audited through its host's daemon)"
            .into(),
    );
    audited_result.summary = summarize(&traced, Some(&native_result.samples));
    audited_result.samples = traced;
    Ok(WorkloadResult {
        name: "cluster".into(),
        description: DESCRIPTION.into(),
        command: "jupyter nbconvert --to notebook --execute climate.ipynb --output climate.out.ipynb".into(),
        modes: vec![native_result, audited_result],
    })
}

/// The audited run's manifest is complete, with every station's task.
fn check_complete(manifest: &Path) -> Result<()> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)?;
    let tasks = manifest["tasks"].as_array().map_or(0, Vec::len);
    if manifest["stats"]["complete"] != true || tasks != 10 {
        bail!("the audited run's manifest is incomplete ({tasks} tasks): {}", manifest["stats"]);
    }
    Ok(())
}
