//! `cargo xtask bench`: reprotrace's overhead against running untraced, strace
//! and its peers, on workloads a fresh machine prepares by itself.
//!
//! For each workload every mode runs once as a warm-up (not counted), then
//! `--rounds` rounds in which the modes take turns, the first one rotating from
//! round to round, and native runs before the first and after each of the
//! others: each run is compared with the native runs beside it, since this
//! host's speed drifts by 10-20% over seconds (a run a minute away is
//! another machine). `cargo xtask bench pipeline` is the separate
//! post-processing benchmark (an example of tracer-user); `cargo xtask bench
//! programs` measures the kernel programs' own time a syscall.

mod cluster;
mod measure;
mod modes;
mod programs;
mod report;
mod stats;
mod workloads;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use self::{
    modes::{Mode, Tools},
    report::{Machine, Report, Reprotrace, WorkloadResult},
    stats::{ModeResult, RunError, Sample},
    workloads::{Places, Target, Workload},
};
use crate::{cargo, repo_root, run};

pub const USAGE: &str = "cargo xtask bench [--rounds N] [--workloads a,b,...] [--modes x,y,...] [--reprotrace PATH] \
                         [--no-write]\n         cargo xtask bench cluster [--rounds N]  (the climate example on a \
                         simulated Dask cluster, native against `run --dask`)";

const DEFAULT_ROUNDS: usize = 5;

/// What `cargo xtask bench` was asked to do.
#[derive(Debug)]
struct Options {
    rounds: usize,
    workloads: Vec<&'static str>,
    modes: Vec<Mode>,
    reprotrace: Option<PathBuf>,
    no_write: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            rounds: DEFAULT_ROUNDS,
            workloads: workloads::NAMES.to_vec(),
            modes: Mode::ALL.to_vec(),
            reprotrace: None,
            no_write: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            // Both `--flag value` and `--flag=value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next().cloned())
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))
            };
            match flag {
                "--rounds" => {
                    let text = value()?;
                    options.rounds = text
                        .parse()
                        .ok()
                        .filter(|rounds| *rounds > 0)
                        .with_context(|| format!("--rounds takes a positive number, not {text:?}"))?;
                }
                "--workloads" => options.workloads = parse_workloads(&value()?)?,
                "--modes" => options.modes = parse_modes(&value()?)?,
                "--reprotrace" => options.reprotrace = Some(PathBuf::from(value()?)),
                "--no-write" => options.no_write = true,
                "attach" => {
                    bail!("the attach benchmark is now a workload of the harness: cargo xtask bench --workloads attach")
                }
                other => bail!("unknown argument {other:?}\nusage: {USAGE}"),
            }
        }
        Ok(options)
    }
}

fn parse_workloads(list: &str) -> Result<Vec<&'static str>> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let known = workloads::NAMES
            .iter()
            .find(|known| **known == name)
            .with_context(|| format!("unknown workload {name:?}: choose among {}", workloads::NAMES.join(", ")))?;
        chosen.push(*known);
    }
    if chosen.is_empty() {
        bail!("--workloads names no workload: choose among {}", workloads::NAMES.join(", "));
    }
    // Run in the canonical order, whatever order they were given in.
    Ok(workloads::NAMES.into_iter().filter(|name| chosen.contains(name)).collect())
}

/// Every mode's name, as `--modes` takes them.
fn mode_names() -> String {
    Mode::ALL.iter().map(|mode| mode.name()).collect::<Vec<_>>().join(", ")
}

fn parse_modes(list: &str) -> Result<Vec<Mode>> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        chosen.push(
            Mode::from_name(name).with_context(|| format!("unknown mode {name:?}: choose among {}", mode_names()))?,
        );
    }
    // native is every ratio's baseline: it always runs.
    chosen.push(Mode::Native);
    Ok(Mode::ALL.into_iter().filter(|mode| chosen.contains(mode)).collect())
}

/// The reprotrace binary to bench: `given`, or the release build (built now).
fn reprotrace_binary(given: Option<&Path>, root: &Path) -> Result<PathBuf> {
    match given {
        Some(path) => std::path::absolute(path)
            .ok()
            .filter(|path| path.is_file())
            .with_context(|| format!("--reprotrace {}: no such file", path.display())),
        None => {
            run(cargo().args(["build", "--release", "--package", "tracer-user"]))
                .context("building reprotrace failed; to bench an existing binary, give --reprotrace PATH")?;
            // Where that build put it: CARGO_TARGET_DIR moves it out of target/.
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir));
            Ok(target.join("release/reprotrace"))
        }
    }
}

/// `cargo xtask bench ARGS`.
pub fn main(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("pipeline") {
        return run(cargo().args(["run", "--release", "--package", "tracer-user", "--example", "pipeline_bench"]));
    }
    if args.first().map(String::as_str) == Some("programs") {
        let root = repo_root();
        let reprotrace = reprotrace_binary(None, &root)?;
        return programs::main(&reprotrace, &Places::of(root));
    }
    if args.first().map(String::as_str) == Some("cluster") {
        let rounds = match args.get(1..) {
            Some([flag, rounds]) if flag == "--rounds" => {
                rounds.parse().ok().filter(|&n| n >= 1).context("--rounds: give a count of at least 1")?
            }
            Some([]) | None => DEFAULT_ROUNDS,
            Some(_) => bail!("usage: cargo xtask bench cluster [--rounds N]"),
        };
        return cluster::main(rounds);
    }
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!(
            "usage: {USAGE}\n\nworkloads: {}\nmodes: {}\n`cargo xtask bench pipeline`: the post-processing alone",
            workloads::NAMES.join(", "),
            mode_names()
        );
        return Ok(());
    }
    let options = Options::parse(args)?;
    let command_line = ["cargo xtask bench".to_string()].into_iter().chain(args.iter().map(|arg| shell_quote(arg)));
    let command_line = command_line.collect::<Vec<_>>().join(" ");
    let date = date_utc();
    let root = repo_root();
    let reprotrace = reprotrace_binary(options.reprotrace.as_deref(), &root)?;
    // The tree the binary was built from, as it is now: edits made while the
    // workloads run are not in what they measure.
    let measured = reprotrace_info(&root, &reprotrace);
    let places = Places::of(root.clone());
    let want_reprozip = options.modes.contains(&Mode::Reprozip)
        && options.workloads.iter().any(|name| !["attach", "interference"].contains(name));
    let prepared = workloads::prepare(&places, &options.workloads, want_reprozip)?;
    if let (true, Err(reason)) = (want_reprozip, &prepared.reprozip) {
        println!("bench: the reprozip mode is skipped: {reason}");
    }
    let tools = Tools {
        reprotrace: reprotrace.clone(),
        reprozip: prepared.reprozip,
        scratch: places.scratch.clone(),
        socket: std::env::temp_dir().join(format!("reprotrace-bench-{}.sock", std::process::id())),
    };
    measure::become_subreaper()?;
    let mut results = Vec::new();
    for workload in &prepared.workloads {
        let result = bench_workload(&tools, workload, &options);
        report::print_table(&result);
        results.push(result);
    }
    if options.workloads.contains(&"cluster") {
        println!("\nbench: cluster: {}", cluster::DESCRIPTION);
        let result = cluster::bench(options.rounds).unwrap_or_else(|error| {
            let mut failed = stats::ModeResult::new("native", String::new());
            failed.errors.push(RunError { round: None, error: format!("{error:#}") });
            WorkloadResult {
                name: "cluster".into(),
                description: cluster::DESCRIPTION.into(),
                command: String::new(),
                modes: vec![failed],
            }
        });
        report::print_table(&result);
        results.push(result);
    }
    let report = Report {
        command_line,
        date,
        rounds: options.rounds,
        machine: machine(),
        reprotrace: measured,
        workloads: results,
    };
    report::write(&report, &root, &places.bench.join("results.json"), options.no_write)
}

/// Runs every mode of `workload` that was asked for: a warm-up round, then the
/// rounds, interleaved. Failures are recorded in the result, not returned.
fn bench_workload(tools: &Tools, workload: &Workload, options: &Options) -> WorkloadResult {
    let modes: Vec<Mode> = options.modes.iter().copied().filter(|mode| mode.applies_to(workload.kind)).collect();
    let mut results: Vec<ModeResult> =
        modes.iter().map(|mode| ModeResult::new(mode.name(), mode.template(workload.kind))).collect();
    // Modes still running: a mode whose tool is missing, or that fails its
    // warm-up, drops out (it would fail every round the same way).
    let mut active = vec![true; modes.len()];
    for (index, mode) in modes.iter().enumerate() {
        if let (Mode::Reprozip, Err(reason)) = (mode, &tools.reprozip) {
            results[index].skipped = Some(reason.clone());
            active[index] = false;
        }
    }
    println!("\nbench: {}: {}", workload.name, workload.description);
    print!("  warm-up:");
    for (index, mode) in modes.iter().enumerate() {
        if !active[index] {
            continue;
        }
        match modes::run_once(tools, workload, *mode) {
            Ok(sample) => print!(" {} {:.2}s", mode.name(), sample.wall_s),
            Err(error) => {
                let error = format!("{error:#}");
                print!(" {} FAILED", mode.name());
                results[index].errors.push(RunError { round: None, error });
                active[index] = false;
            }
        }
        flush();
    }
    println!();
    // Native, when it runs: every other run is compared with the native runs beside it.
    let native = modes.iter().position(|mode| *mode == Mode::Native).filter(|native| active[*native]);
    for round in 0..options.rounds {
        print!("  round {}/{}:", round + 1, options.rounds);
        let order = round_order(modes.len(), round, &active, native);
        // The round's runs by position, kept until the native runs after them are known.
        let mut runs: Vec<Option<Sample>> = Vec::new();
        for (position, index) in order.iter().copied().enumerate() {
            let mode = modes[index];
            match modes::run_once(tools, workload, mode) {
                Ok(sample) => {
                    print!(" {} {:.2}s", mode.name(), sample.wall_s);
                    runs.push(Some(Sample { round, position, ..sample }));
                }
                Err(error) => {
                    print!(" {} FAILED", mode.name());
                    runs.push(None);
                    results[index].errors.push(RunError { round: Some(round), error: format!("{error:#}") });
                }
            }
            flush();
        }
        let walls: Vec<Option<f64>> = runs.iter().map(|run| run.as_ref().map(|sample| sample.wall_s)).collect();
        for (position, (index, run)) in order.iter().copied().zip(runs).enumerate() {
            if let Some(sample) = run {
                let native_s = native_beside(&order, &walls, native, position);
                results[index].samples.push(Sample { native_s, ..sample });
            }
        }
        println!();
    }

    let native = results.iter().find(|result| result.mode == Mode::Native.name()).map(|result| result.samples.clone());
    for (mode, result) in modes.iter().zip(results.iter_mut()) {
        let baseline = if *mode == Mode::Native { None } else { Some(native.as_deref().unwrap_or_default()) };
        result.summary = stats::summarize(&result.samples, baseline);
    }
    // Then the targets: one may be relative to another mode's figure.
    let paired = |results: &[ModeResult], name: &str| {
        results.iter().find(|result| result.mode == name)?.summary.as_ref()?.paired_ratio
    };
    for (name, target) in &workload.targets {
        let limit = match *target {
            Target::Ratio(limit) => Some(limit),
            Target::AboveFloor { floor, margin } => paired(&results, floor).map(|floor| floor + margin),
        };
        if let Some(summary) = results.iter_mut().find(|result| result.mode == *name).and_then(|r| r.summary.as_mut()) {
            summary.judge(limit);
        }
    }
    WorkloadResult {
        name: workload.name.to_string(),
        description: workload.description.clone(),
        command: workload.command.iter().map(|arg| shell_quote(&arg.to_string_lossy())).collect::<Vec<_>>().join(" "),
        modes: results,
    }
}

/// The order of a round's runs (indexes into the modes): the active modes
/// rotated so that every one takes every position equally often, with
/// `native` (if it runs) before the first and after each of the others.
fn round_order(modes: usize, round: usize, active: &[bool], native: Option<usize>) -> Vec<usize> {
    let mut order = Vec::new();
    for index in (0..modes).map(|offset| (round + offset) % modes) {
        if active[index] && Some(index) != native {
            order.extend(native);
            order.push(index);
        }
    }
    order.extend(native);
    order
}

/// What the run at `position` of `order` is compared with: the mean wall of
/// the native runs just before and after it that succeeded (`walls`, by
/// position); none for a native run, or one with no such neighbour.
fn native_beside(order: &[usize], walls: &[Option<f64>], native: Option<usize>, position: usize) -> Option<f64> {
    let native = native?;
    if order.get(position) == Some(&native) {
        return None;
    }
    let wall_at = |at: usize| match order.get(at) == Some(&native) {
        true => walls.get(at).copied().flatten(),
        false => None,
    };
    let beside: Vec<f64> =
        [position.checked_sub(1).and_then(wall_at), wall_at(position + 1)].into_iter().flatten().collect();
    (!beside.is_empty()).then(|| beside.iter().sum::<f64>() / beside.len() as f64)
}

fn flush() {
    use std::io::Write;
    // Progress only: a failed flush loses nothing that matters.
    let _ = std::io::stdout().flush();
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,/=:+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The output of a command that should not fail, or `unknown`.
fn output_of(program: &str, args: &[&str], cwd: &Path) -> String {
    std::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn date_utc() -> String {
    output_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"], Path::new("/"))
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, model)| model.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    Machine {
        kernel: output_of("uname", &["-r"], Path::new("/")),
        cpu_model,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
    }
}

fn reprotrace_info(root: &Path, binary: &Path) -> Reprotrace {
    let status = output_of("git", &["status", "--porcelain", "--untracked-files=no"], root);
    Reprotrace {
        // Relative to the workspace when it is inside it: the docs should not name this machine's paths.
        binary: binary.strip_prefix(root).unwrap_or(binary).display().to_string(),
        version: output_of(&binary.to_string_lossy(), &["--version"], root),
        commit: output_of("git", &["rev-parse", "HEAD"], root),
        dirty: !status.is_empty() && status != "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_options_in_both_spellings() {
        let options = Options::parse(&args("--rounds=3 --workloads storm,import --modes ebpf --no-write")).expect("ok");
        assert_eq!(options.rounds, 3);
        assert_eq!(options.workloads, ["import", "storm"]);
        assert_eq!(options.modes, [Mode::Native, Mode::Ebpf]);
        assert!(options.no_write);
        let options = Options::parse(&args("--rounds 2 --reprotrace /tmp/r")).expect("ok");
        assert_eq!((options.rounds, options.reprotrace), (2, Some(PathBuf::from("/tmp/r"))));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for bad in ["--rounds 0", "--rounds", "--workloads nope", "--modes fast", "--frobnicate", "attach"] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn native_runs_before_the_first_mode_and_after_each_other() {
        // Modes 0 (native), 1, 2 and 3 (dropped out); round 1 starts at mode 1.
        let active = [true, true, true, false];
        assert_eq!(round_order(4, 1, &active, Some(0)), vec![0, 1, 0, 2, 0]);
        assert_eq!(round_order(4, 2, &active, Some(0)), vec![0, 2, 0, 1, 0]);
        // Without native (not asked for), every active mode once.
        assert_eq!(round_order(4, 1, &active, None), vec![1, 2, 0]);
    }

    #[test]
    fn a_run_is_compared_with_the_native_runs_beside_it() {
        let order = [0, 1, 0, 2, 0];
        let walls = [Some(1.0), Some(5.0), Some(2.0), Some(7.0), None];
        assert_eq!(native_beside(&order, &walls, Some(0), 1), Some(1.5));
        // The native run after it failed: the one before is the baseline.
        assert_eq!(native_beside(&order, &walls, Some(0), 3), Some(2.0));
        assert_eq!(native_beside(&order, &walls, Some(0), 2), None);
        assert_eq!(native_beside(&[1, 2], &[Some(1.0), Some(2.0)], None, 0), None);
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("--modes=native,ebpf"), "--modes=native,ebpf");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
