//! Samples and their summaries: min / median / max, ratios to native (of the
//! medians, and paired round by round), and the targets.

use serde::Serialize;

/// One measured run of one mode.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// The measured round (0-based; the warm-up round is not recorded).
    pub round: usize,
    /// Where in its round the run came (0 = first), to show position effects.
    pub position: usize,
    /// Seconds from spawn to reap; for the attach workload the loop time the
    /// workload printed.
    pub wall_s: f64,
    /// What this run is compared to: the mean wall of the native runs just
    /// before and after it (the host's speed drifts over seconds, so a ratio
    /// to the runs beside it is steadier than one to a run a minute away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_s: Option<f64>,
    /// User + system seconds of everything the run cost: the spawned process
    /// and its reaped descendants, a separately started tracer, the daemon's share.
    pub cpu_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_events: Option<u64>,
    /// The traced duration reprotrace reports (audit start until the tree ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// reprotrace's own peak RSS (from the manifest, when it says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
    /// CPU seconds the daemon spent during the run (already in `cpu_s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_peak_rss_kib: Option<u64>,
    /// Seconds the processes the run left behind (reprotrace's detach helper)
    /// took to end after it, waited for untimed; their CPU is in `cpu_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_s: Option<f64>,
}

impl Sample {
    pub fn events_per_s(&self) -> Option<f64> {
        let (events, duration_ms) = (self.events?, self.duration_ms?);
        (duration_ms > 0).then(|| events as f64 / (duration_ms as f64 / 1000.0))
    }
}

/// A run that failed: it is reported, never counted.
#[derive(Debug, Clone, Serialize)]
pub struct RunError {
    /// The measured round, or `None` for the warm-up.
    pub round: Option<usize>,
    pub error: String,
}

/// Everything recorded for one (workload, mode).
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: String,
    /// What the mode runs, for the reader of the JSON.
    pub command: String,
    /// Why the mode did not run at all (its tool is not available).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub errors: Vec<RunError>,
    pub samples: Vec<Sample>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

impl ModeResult {
    pub fn new(mode: &str, command: String) -> Self {
        Self { mode: mode.to_string(), command, skipped: None, errors: Vec::new(), samples: Vec::new(), summary: None }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub wall_s: Spread,
    pub cpu_s: Spread,
    /// Median wall over native's median wall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Median over runs of (this run's wall / the native runs' beside it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_s_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_events_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_peak_rss_kib_max: Option<u64>,
    /// Median time the run's leftovers took to end after it (untimed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_s_median: Option<f64>,
    /// The overhead this mode should stay within on this workload, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Whether the paired ratio (or the ratio of medians, without pairs) is within the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_met: Option<bool>,
}

/// The median; the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

fn spread(values: &[f64]) -> Option<Spread> {
    Some(Spread {
        min: values.iter().copied().min_by(f64::total_cmp)?,
        median: median(values)?,
        max: values.iter().copied().max_by(f64::total_cmp)?,
    })
}

/// Summarizes `samples` against native's samples of the same workload
/// (`None` for native itself, whose ratios are 1).
pub fn summarize(samples: &[Sample], native: Option<&[Sample]>) -> Option<Summary> {
    let walls: Vec<f64> = samples.iter().map(|sample| sample.wall_s).collect();
    let cpus: Vec<f64> = samples.iter().map(|sample| sample.cpu_s).collect();
    let wall_s = spread(&walls)?;
    let (ratio, paired_ratio) = match native {
        None => (Some(1.0), Some(1.0)),
        Some(native) => {
            let native_walls: Vec<f64> = native.iter().map(|sample| sample.wall_s).collect();
            let ratio = median(&native_walls).filter(|base| *base > 0.0).map(|base| wall_s.median / base);
            let pairs: Vec<f64> = samples
                .iter()
                .filter_map(|sample| sample.native_s.filter(|base| *base > 0.0).map(|base| sample.wall_s / base))
                .collect();
            (ratio, median(&pairs))
        }
    };
    let optional = |values: Vec<f64>| if values.is_empty() { None } else { median(&values) };
    Some(Summary {
        runs: samples.len(),
        wall_s,
        cpu_s: spread(&cpus)?,
        ratio,
        paired_ratio,
        events_median: optional(samples.iter().filter_map(|sample| sample.events.map(|n| n as f64)).collect()),
        events_per_s_median: optional(samples.iter().filter_map(Sample::events_per_s).collect()),
        lost_events_max: samples.iter().filter_map(|sample| sample.lost_events).max(),
        peak_rss_kib_max: samples.iter().filter_map(|sample| sample.peak_rss_kib).max(),
        daemon_peak_rss_kib_max: samples.iter().filter_map(|sample| sample.daemon_peak_rss_kib).max(),
        settle_s_median: optional(samples.iter().filter_map(|sample| sample.settle_s).collect()),
        target: None,
        target_met: None,
    })
}

impl Summary {
    /// Sets the target and whether the paired ratio (or the ratio of medians,
    /// without pairs) is within it.
    pub fn judge(&mut self, target: Option<f64>) {
        self.target = target;
        self.target_met = target.zip(self.paired_ratio.or(self.ratio)).map(|(target, judged)| judged <= target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: usize, wall_s: f64, native_s: Option<f64>) -> Sample {
        Sample { round, wall_s, native_s, cpu_s: wall_s, ..Sample::default() }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn paired_ratio_compares_each_run_with_the_native_runs_beside_it() {
        let native = [sample(0, 1.0, None), sample(1, 2.0, None), sample(2, 1.0, None)];
        // A run with no native run beside it (both failed) is in no pair.
        let traced = [sample(0, 1.5, Some(1.0)), sample(1, 2.0, None), sample(2, 1.1, Some(1.0))];
        let mut summary = summarize(&traced, Some(&native)).expect("samples");
        assert!((summary.paired_ratio.expect("pairs") - 1.3).abs() < 1e-9);
        assert!((summary.ratio.expect("ratio") - 1.5).abs() < 1e-9);
        summary.judge(Some(1.2));
        assert_eq!(summary.target_met, Some(false));
        summary.judge(Some(1.3));
        assert_eq!(summary.target_met, Some(true));
    }
}
