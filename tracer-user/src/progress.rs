//! The audit's status line on a terminal: a line when the run starts, then,
//! while it runs, elapsed time, processes, files and events, redrawn in place
//! on stderr — only when stderr is a terminal and the audit is not `--quiet`.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

/// How often the line is redrawn.
pub const INTERVAL: Duration = Duration::from_millis(500);

pub struct Progress {
    started: Instant,
    shown: bool,
    enabled: bool,
}

impl Progress {
    /// Says the audit started; `enabled` unless quiet or not on a terminal.
    pub fn start(what: &str, quiet: bool) -> Progress {
        let enabled = !quiet && std::io::stderr().is_terminal();
        if enabled {
            eprintln!("reprotrace: {what}");
        }
        Progress { started: Instant::now(), shown: false, enabled }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Redraws the line.
    pub fn show(&mut self, processes: usize, files: usize, events: u64) {
        if !self.enabled {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut stderr = std::io::stderr().lock();
        let _ =
            write!(stderr, "\rreprotrace: {elapsed:.1} s, {processes} processes, {files} files, {events} events\x1b[K");
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

/// Resolves at the next redraw when the line is shown; never otherwise.
pub async fn tick(progress: &Progress) {
    match progress.enabled() {
        true => tokio::time::sleep(INTERVAL).await,
        false => std::future::pending().await,
    }
}
