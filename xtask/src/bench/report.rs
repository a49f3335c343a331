//! The results: a table per workload on stdout, all of it as JSON, and the
//! generated section of docs/benchmarks.md.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    modes::Mode,
    stats::{ModeResult, Summary},
    workloads::Kind,
};

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

#[derive(Debug, Serialize)]
pub struct Report {
    /// The command that produced the figures, as typed.
    pub command_line: String,
    /// When the bench started (UTC, ISO 8601).
    pub date: String,
    /// Measured rounds per mode (after one warm-up round).
    pub rounds: usize,
    pub machine: Machine,
    pub reprotrace: Reprotrace,
    pub workloads: Vec<WorkloadResult>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub cores: usize,
}

#[derive(Debug, Serialize)]
pub struct Reprotrace {
    pub binary: String,
    pub version: String,
    /// The workspace's commit (`git rev-parse HEAD`).
    pub commit: String,
    /// The working tree had uncommitted changes.
    pub dirty: bool,
}

#[derive(Debug, Serialize)]
pub struct WorkloadResult {
    pub name: String,
    pub description: String,
    /// The workload's command (CMD in the modes' templates).
    pub command: String,
    pub modes: Vec<ModeResult>,
}

/// Writes `target/bench/results.json`; unless `no_write`, also
/// docs/benchmarks.json and the generated section of docs/benchmarks.md.
pub fn write(report: &Report, root: &Path, results: &Path, no_write: bool) -> Result<()> {
    let json = serde_json::to_string_pretty(report).context("serializing the results")? + "\n";
    std::fs::write(results, &json).with_context(|| format!("cannot write {}", results.display()))?;
    println!("bench: results in {}", results.display());
    if no_write {
        return Ok(());
    }
    let docs_json = root.join("docs/benchmarks.json");
    std::fs::write(&docs_json, &json).with_context(|| format!("cannot write {}", docs_json.display()))?;
    let doc = root.join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&doc).with_context(|| format!("cannot read {}", doc.display()))?;
    let updated = replace_section(&text, &markdown(report)).with_context(|| {
        format!("{} needs the lines {BEGIN} and {END} around the generated section; add them back", doc.display())
    })?;
    std::fs::write(&doc, updated).with_context(|| format!("cannot write {}", doc.display()))?;
    println!("bench: updated {} and {}", doc.display(), docs_json.display());
    Ok(())
}

fn replace_section(text: &str, section: &str) -> Result<String> {
    let (before, rest) = text.split_once(BEGIN).context("no begin marker")?;
    let (_, after) = rest.split_once(END).context("no end marker after the begin marker")?;
    Ok(format!("{before}{BEGIN}\n{section}{END}{after}"))
}

fn seconds(value: f64) -> String {
    format!("{value:.3} s")
}

fn ratio(value: Option<f64>) -> String {
    value.map(|value| format!("{value:.2}x")).unwrap_or_else(|| "-".into())
}

/// A count with thousands separators: 1,234,567.
pub fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

fn rate(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.2}M/s", v / 1e6),
        v if v >= 1e3 => format!("{:.0}k/s", v / 1e3),
        v => format!("{v:.0}/s"),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// The target cell: `≤1.03x met` / `≤1.03x MISSED`.
fn target(summary: &Summary, missed: &str) -> String {
    match (summary.target, summary.target_met) {
        (Some(target), Some(true)) => format!("≤{target:.2}x met"),
        (Some(target), Some(false)) => format!("≤{target:.2}x {missed}"),
        (Some(target), None) => format!("≤{target:.2}x"),
        _ => String::new(),
    }
}

/// The cells of one mode's row after its name; `missed` is how a missed
/// target is written (bold in Markdown).
fn cells(result: &ModeResult, missed: &str) -> Vec<String> {
    let Some(summary) = &result.summary else {
        let why = match (&result.skipped, result.errors.first()) {
            (Some(reason), _) => format!("skipped: {reason}"),
            (None, Some(error)) => format!("failed: {}", error.error),
            (None, None) => "no runs".into(),
        };
        return vec![why];
    };
    let rss =
        [summary.peak_rss_kib_max.map(mib), summary.daemon_peak_rss_kib_max.map(|kib| format!("daemon {}", mib(kib)))]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
    vec![
        format!(
            "{} ({}–{})",
            seconds(summary.wall_s.median),
            seconds(summary.wall_s.min).trim_end_matches(" s"),
            seconds(summary.wall_s.max)
        ),
        // A harness that does not measure CPU (the cluster's) leaves it 0.
        if summary.cpu_s.max > 0.0 { seconds(summary.cpu_s.median) } else { String::new() },
        ratio(summary.ratio),
        ratio(summary.paired_ratio),
        target(summary, missed),
        summary.events_median.map(|events| grouped(events.round() as u64)).unwrap_or_default(),
        summary.events_per_s_median.map(rate).unwrap_or_default(),
        summary.lost_events_max.map(grouped).unwrap_or_default(),
        rss,
    ]
}

const HEADERS: [&str; 10] = [
    "mode",
    "wall median (min–max)",
    "CPU median",
    "vs native",
    "paired",
    "target",
    "events",
    "events/s",
    "lost",
    "peak RSS",
];

/// The runs that failed among counted ones (a mode with no sample at all
/// shows its error in its row instead).
fn failures(workload: &WorkloadResult) -> Vec<String> {
    workload
        .modes
        .iter()
        .filter(|result| result.summary.is_some())
        .flat_map(|result| {
            result.errors.iter().map(move |error| match error.round {
                Some(round) => format!("{} round {}: {}", result.mode, round + 1, error.error),
                None => format!("{} warm-up: {}", result.mode, error.error),
            })
        })
        .collect()
}

pub fn print_table(workload: &WorkloadResult) {
    println!("\n{}: {}", workload.name, workload.description);
    let rows: Vec<Vec<String>> =
        workload.modes.iter().map(|result| [vec![result.mode.clone()], cells(result, "MISSED")].concat()).collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|header| header.chars().count()).collect();
    for row in &rows {
        // A failure's message spans the row: it sets no column's width but the mode's.
        let cells = if row.len() == HEADERS.len() { row.len() } else { 1 };
        for (width, cell) in widths.iter_mut().zip(&row[..cells]) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}", width = *width)).collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(&HEADERS.map(String::from));
    for row in &rows {
        line(row);
    }
    for failure in failures(workload) {
        println!("  failed run: {failure}");
    }
}

fn escape(cell: &str) -> String {
    cell.replace('|', "\\|").replace('\n', " ")
}

fn markdown(report: &Report) -> String {
    let machine = &report.machine;
    let tool = &report.reprotrace;
    let mut out = String::new();
    let mut push = |line: &str| {
        out.push_str(line);
        out.push('\n');
    };
    push("## Overhead (`cargo xtask bench`)");
    push("");
    push(&format!(
        "Generated by `{}` on {}: kernel {}, {} ({} cores); {} (`{}`), workspace at commit {}{}. Raw samples: \
         [benchmarks.json](benchmarks.json).",
        report.command_line,
        report.date,
        machine.kernel,
        machine.cpu_model,
        machine.cores,
        tool.version,
        tool.binary,
        tool.commit.get(..12).unwrap_or(&tool.commit),
        if tool.dirty { " with uncommitted changes" } else { "" }
    ));
    push("");
    push(&format!(
        "Each workload runs its modes in turn, {} rounds after one uncounted warm-up round, the first mode rotating \
         from round to round and `native` running before the first and after each of the others (this host's speed \
         drifts over seconds: a run is compared with the native runs beside it, not one a minute away). *wall* is \
         spawn to exit (for `attach`, the loop time the workload prints); *CPU* is user + system time of the run and \
         everything it reaped, plus a separately started tracer's, the daemon's meanwhile (daemon modes) and that of \
         what the run left behind (reprotrace's detach helper, waited for untimed between runs so that it slows no \
         other run); *vs native* divides the medians, *paired* is the median of the ratios of each run to the mean of \
         the two native runs beside it, and a target is judged on the paired ratio (`interference`'s targets are its \
         floor modes' paired ratios in the same run + 0.05). *events/s* is the manifest's events over its traced \
         duration, *lost* the most events any run lost, *peak RSS* reprotrace's own (and the daemon's). A failed run \
         is reported, never counted. A daemon mode starts its daemon before each run and stops it after, untimed and \
         uncharged (a resident daemon pays neither per audit), so that no other mode runs beside its loaded programs; \
         what those cost other processes is the `interference` workloads' question. The `cluster` workload has its own \
         harness (`bench/cluster.rs`): two simulated clusters stay up for all of its rounds, and its rows name what \
         runs there.",
        report.rounds
    ));
    push("");
    push(
        "Modes (CMD: the workload; M: the manifest; S: the daemon's socket; P: the workload's pid; SYSCALLS: the \
          list `--backend strace` traces):",
    );
    push("");
    for mode in Mode::ALL {
        let kind = if mode.applies_to(Kind::Launch) { Kind::Launch } else { Kind::Attach };
        push(&format!("- `{}`: {}", mode.name(), mode.template(kind)));
    }
    push(&format!(
        "- `interference` and `interference-import` run CMD untraced: `native` alone, `ebpf` while {}, \
         `ebpf-daemon` while {}, and their floor modes with the programs returning at once.",
        Mode::Ebpf.template(Kind::Interference).trim_start_matches("CMD while "),
        Mode::EbpfDaemon.template(Kind::Interference).trim_start_matches("CMD while ")
    ));
    push("- `sustained` and `paths` run under `native`, `ebpf` and `ebpf-daemon` only: ten million events, and 400,000 distinct paths, to show what an audit loses and the memory it keeps.");
    for workload in &report.workloads {
        push("");
        push(&format!("### {}", workload.name));
        push("");
        push(&format!("{}.", workload.description.trim_end_matches('.')));
        push("");
        push(&format!("| {} |", HEADERS.join(" | ")));
        push(&format!("|{}", "---|".repeat(HEADERS.len())));
        for result in &workload.modes {
            let mut row = [vec![format!("`{}`", result.mode)], cells(result, "**missed**")].concat();
            row.resize(HEADERS.len(), String::new());
            let row: Vec<String> = row.iter().map(|cell| escape(cell)).collect();
            push(&format!("| {} |", row.join(" | ")));
        }
        let failed = failures(workload);
        if !failed.is_empty() {
            push("");
            push("Failed runs (not counted):");
            push("");
            for failure in failed {
                push(&format!("- {}", escape(&failure)));
            }
        }
    }
    push("");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_marked_section() {
        let text = "# B\n\nkept\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\n## After\n";
        let updated = replace_section(text, "new\n").expect("markers");
        assert_eq!(updated, "# B\n\nkept\n\n<!-- bench:begin -->\nnew\n<!-- bench:end -->\n\n## After\n");
        assert!(replace_section("no markers", "x").is_err());
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(rate(2_500_000.0), "2.50M/s");
    }
}
