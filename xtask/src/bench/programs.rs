//! `cargo xtask bench programs`: what the kernel programs cost each syscall,
//! measured by the kernel itself (`BPF_ENABLE_STATS`: every program run is
//! timed, `run_time_ns` and `run_cnt` in its info; a tail call counts in its
//! caller, the dispatcher). Far steadier than wall clocks on a shared host,
//! and it says where the time goes: each loop below makes one kind of
//! syscall, audited through a daemon, once with the programs returning at
//! once (`--bench-floor`) and once doing their work.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{bail, Context, Result};
use aya::sys::{enable_stats, Stats};

use super::{
    measure,
    modes::Daemon,
    workloads::{compile, Places},
};

/// Calls each loop makes.
const CALLS: u64 = 200_000;

/// The loops of `xtask/workloads/syscalls.c`, and what each call costs the
/// programs.
const LOOPS: [(&str, &str); 5] = [
    ("getppid", "a syscall reprotrace does not trace (the dispatcher's test of its number)"),
    ("fstat", "glibc's fstat: newfstatat(fd, \"\", AT_EMPTY_PATH), whose empty path is read"),
    ("stat", "a lookup of the same absolute path (read, hashed, not sent again)"),
    ("open", "an open of the same file (not sent again) and its close (silent)"),
    ("dup", "a dup (sent) and its close (sent)"),
];

/// The run time and runs so far of the programs daemon `pid` holds, read
/// from its descriptors' `/proc` entries (a program's show `run_time_ns` and
/// `run_cnt`). Not every program on the host that bears one of reprotrace's
/// names: a daemon stopped just before leaves its programs loaded for a
/// moment, and a sum over programs that vanish between two readings went
/// backwards (a loop measured at 0 ns).
fn program_totals(pid: libc::pid_t) -> Result<(Duration, u64)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut totals = (Duration::ZERO, 0);
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir} (did the daemon die?)"))? {
        // A descriptor closed since the listing: not a program of the daemon's.
        let Ok(info) = std::fs::read_to_string(entry.context("listing the daemon's descriptors")?.path()) else {
            continue;
        };
        let field = |name| measure::field_number(&info, name);
        if let (Some(time), Some(runs)) = (field("run_time_ns"), field("run_cnt")) {
            totals.0 += Duration::from_nanos(time);
            totals.1 += runs;
        }
    }
    Ok(totals)
}

/// One audited run of `kind`'s loop; returns the programs' nanoseconds a
/// run and a call.
fn measure(reprotrace: &Path, daemon: &Daemon, loop_binary: &Path, kind: &str, file: &Path) -> Result<(f64, f64)> {
    let audit = |measured: bool| -> Result<(Duration, u64)> {
        let stats = match measured {
            true => Some(enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS (needs root)")?),
            false => None,
        };
        let before = program_totals(daemon.pid())?;
        let status = Command::new(reprotrace)
            .args(["run", "-q", "--socket"])
            .arg(daemon.socket())
            .args(["-o", "/dev/null", "--"])
            .arg(loop_binary)
            .arg(kind)
            .arg(file)
            .arg(CALLS.to_string())
            .status()
            .context("cannot run reprotrace")?;
        if !status.success() {
            bail!("the audit of the {kind} loop failed ({status})");
        }
        let after = program_totals(daemon.pid())?;
        drop(stats);
        Ok((after.0.saturating_sub(before.0), after.1.saturating_sub(before.1)))
    };
    // A warm-up audit first: the daemon attaches and its caches fill.
    audit(false)?;
    let (time, runs) = audit(true)?;
    let nanos = time.as_nanos() as f64;
    Ok((nanos / runs.max(1) as f64, nanos / CALLS as f64))
}

pub fn main(reprotrace: &Path, places: &Places) -> Result<()> {
    let loop_binary = compile(places, "syscalls")?;
    let file = places.bench.join("syscalls-file.csv");
    std::fs::write(&file, "x,y\n".repeat(64)).with_context(|| format!("cannot write {}", file.display()))?;
    let socket = std::env::temp_dir().join(format!("reprotrace-programs-{}.sock", std::process::id()));
    let mut rows = Vec::new();
    for floor in [true, false] {
        // Stopped when dropped, after its loops.
        let daemon = Daemon::start(reprotrace, &socket, floor)?;
        for (kind, _) in LOOPS {
            rows.push(measure(reprotrace, &daemon, &loop_binary, kind, &file)?);
        }
    }
    let (floors, works) = rows.split_at(LOOPS.len());
    println!("\nbench: the programs' time in the kernel, {CALLS} calls a loop, audited through a daemon (floor: every program returns at once)");
    println!("  {:<8} {:>12} {:>12} {:>12} {:>12}  what a call is", "loop", "ns/run", "floor", "ns/call", "floor");
    for (((kind, what), (run, call)), (floor_run, floor_call)) in LOOPS.iter().zip(works).zip(floors) {
        println!("  {kind:<8} {run:>12.0} {floor_run:>12.0} {call:>12.0} {floor_call:>12.0}  {what}");
    }
    println!("  (the kernel's own timing of each run is part of every figure, the floor's included)");
    Ok(())
}
