//! The audit's status line on a terminal: a line when the run starts, then,
//! while it runs, elapsed time, processes, files, events and lost events,
//! redrawn in place on stderr — only when stderr is a terminal and the audit
//! is not `--quiet`. Hashing large data at the end shows its own progress
//! ([`crate::classify`]).

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

/// How often the line is redrawn.
pub const INTERVAL: Duration = Duration::from_millis(500);

pub struct Progress {
    started: Instant,
    shown: bool,
    /// The redraws' schedule, when the line is shown at all.
    ticks: Option<tokio::time::Interval>,
}

impl Progress {
    /// Says the audit started; `enabled` unless quiet or not on a terminal.
    pub fn start(what: &str, quiet: bool) -> Progress {
        let enabled = !quiet && std::io::stderr().is_terminal();
        if enabled {
            eprintln!("reprotrace: {what}");
        }
        let ticks = enabled.then(|| {
            let mut ticks = tokio::time::interval(INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            ticks
        });
        Progress { started: Instant::now(), shown: false, ticks }
    }

    pub fn enabled(&self) -> bool {
        self.ticks.is_some()
    }

    /// Resolves at the next redraw; never when the line is not shown.
    /// Cancel-safe: the schedule does not restart when another event wins.
    pub async fn tick(&mut self) {
        match &mut self.ticks {
            Some(ticks) => {
                ticks.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Redraws the line; `lost`, when the source can tell.
    pub fn show(&mut self, processes: usize, files: usize, events: u64, lost: Option<u64>) {
        if !self.enabled() {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let lost = lost.map_or_else(String::new, |lost| format!(", {lost} lost"));
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\rreprotrace: {elapsed:.1} s, {processes} processes, {files} files, {events} events{lost}\x1b[K"
        );
        let _ = stderr.flush();
        self.shown = true;
    }

    /// Clears the line, before the summary.
    pub fn finish(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}
