//! What every audit shares, whether it launched the command (`run`) or joined
//! running processes (`attach`): the settings, the signal handling, and the
//! conclusion — the pipeline's results assembled into a manifest, written
//! atomically even when the audit was cut short, and summarised.

use std::{
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::{
    classify,
    event::WaitStatus,
    launch::Credentials,
    manifest::{self, Manifest, Stats, SCHEMA_ID},
    pipeline::{Pipeline, PipelineOutput},
    software::{IndexBuilder, PathSink},
    source::ebpf::{
        session::{DaemonChoice, SessionOptions},
        LoadOptions,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// eBPF programs on syscall and sched tracepoints (needs root).
    Ebpf,
    /// `strace -f`, for comparison and where eBPF is unavailable.
    Strace,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ebpf => "ebpf",
            Backend::Strace => "strace",
        }
    }
}

/// How to audit and where the manifest goes.
pub struct Settings {
    pub backend: Backend,
    pub output: PathBuf,
    pub quiet: bool,
    pub ring_buffer_bytes: u32,
    /// Whether the eBPF backend asks `reprotrace daemon` or loads its own programs.
    pub daemon: DaemonChoice,
    /// The user's data classification overrides.
    pub rules: classify::Rules,
}

impl Settings {
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions { load: LoadOptions { ring_buffer_bytes: self.ring_buffer_bytes }, daemon: self.daemon.clone() }
    }
}

/// An audit under way: what the manifest will say about it besides the trace.
pub struct Audit {
    pub command: Vec<String>,
    pub cwd: Vec<u8>,
    pub owner: Option<Credentials>,
    started_at: SystemTime,
    clock: Instant,
    /// The software index, built while the audit runs.
    software_index: IndexBuilder,
}

/// What a backend hands back besides the pipeline.
pub struct Traced {
    pub pipeline: Pipeline,
    /// The command's status as its parent saw it (fallback when events miss it).
    pub root_status: Option<WaitStatus>,
    pub lost_events: u64,
    pub untracked_children: u64,
    pub malformed_events: u64,
    pub interrupted: bool,
}

impl Traced {
    /// The outcome of the strace backend: `pipeline`, fed with strace's log as
    /// it was written (strace loses no events; the `malformed_lines` it printed
    /// and we could not parse are counted).
    pub fn from_strace_log(pipeline: Pipeline, malformed_lines: u64, interrupted: bool) -> Traced {
        Traced {
            pipeline,
            root_status: None,
            lost_events: 0,
            untracked_children: 0,
            malformed_events: malformed_lines,
            interrupted,
        }
    }
}

impl Audit {
    pub fn start(command: Vec<String>, cwd: Vec<u8>, owner: Option<Credentials>) -> Self {
        Audit {
            command,
            cwd,
            owner,
            started_at: SystemTime::now(),
            clock: Instant::now(),
            software_index: IndexBuilder::start(),
        }
    }

    /// Assembles, writes and summarises the manifest; returns the command's
    /// status (`None` for an attached tree, or when no event told it).
    /// Where a pipeline sends the paths it sees, to index their software early.
    pub fn software_paths(&self) -> PathSink {
        self.software_index.sink()
    }

    pub fn conclude(self, settings: &Settings, traced: Traced) -> anyhow::Result<Option<WaitStatus>> {
        let duration = self.clock.elapsed();
        let finished_at = SystemTime::now();
        let Traced { pipeline, root_status, lost_events, untracked_children, malformed_events, interrupted } = traced;
        let mut pipeline = pipeline;
        pipeline.stop_software_warm_up();
        let mut software_index = self.software_index.finish()?;
        let PipelineOutput { sections, events, tracker, root, warnings } =
            pipeline.finish(&settings.rules, self.started_at, &mut software_index);
        // The command's status, for `run`; an attached tree has no one command.
        let status = root.filter(|root| !root.pre_existing).and_then(|root| root.status).or(root_status);
        let malformed_events = malformed_events + tracker.unknown_tasks;
        let manifest = Manifest {
            schema: SCHEMA_ID.to_string(),
            backend: settings.backend.name().to_string(),
            command: self.command,
            cwd: manifest::display_bytes(&self.cwd),
            host: hostname(),
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
            finished_at: humantime::format_rfc3339_millis(finished_at).to_string(),
            exit_code: status.and_then(WaitStatus::exit_code),
            signal: status.and_then(WaitStatus::signal).map(manifest::signal_label),
            stats: Stats {
                events,
                lost_events,
                untracked_children,
                malformed_events,
                unresolved_paths: tracker.unresolved_paths,
                complete: lost_events == 0 && untracked_children == 0 && malformed_events == 0 && !interrupted,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                peak_rss_kib: own_peak_rss_kib(),
            },
            processes: sections.processes,
            files: sections.files,
            software: sections.software,
            data: sections.data,
            cells: sections.cells,
        };
        manifest.write_atomically(&settings.output)?;
        if let Some(owner) = &self.owner {
            give_to_user(&settings.output, owner);
        }
        if !settings.quiet {
            for warning in &warnings {
                eprintln!("reprotrace: warning: {warning}");
            }
            print_summary(&manifest, &settings.output);
        }
        Ok(status)
    }
}

/// Ctrl-C, SIGTERM and SIGHUP, as one stream.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    forwarded: bool,
}

impl Signals {
    pub fn new() -> anyhow::Result<Self> {
        let install = |kind| signal(kind).context("installing signal handlers");
        Ok(Signals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
            forwarded: false,
        })
    }

    pub async fn next(&mut self) -> libc::c_int {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
            _ = self.hangup.recv() => libc::SIGHUP,
        }
    }

    /// Passes the first signal to `target`; false when the user asked a second
    /// time (or there is nobody to pass it to) and the audit should stop waiting.
    pub fn forward(&mut self, signal: libc::c_int, target: Option<u32>) -> bool {
        let Some(target) = target.filter(|_| !self.forwarded) else { return false };
        self.forwarded = true;
        eprintln!("reprotrace: passing the signal on to the command; send it again to stop waiting");
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(target as libc::pid_t, signal) };
        true
    }
}

/// This process's peak resident set size (Linux reports it in KiB).
fn own_peak_rss_kib() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_string()).unwrap_or_default()
}

/// Under sudo, the manifest belongs to the user who asked for it.
fn give_to_user(path: &Path, owner: &Credentials) {
    if let Err(err) = std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)) {
        eprintln!("reprotrace: warning: could not give {} to {}: {err}", path.display(), owner.user);
    }
}

fn print_summary(manifest: &Manifest, output: &Path) {
    let stats = &manifest.stats;
    let outcome = match (&manifest.exit_code, &manifest.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by {signal}"),
        (None, None) => "no exit status".to_string(),
    };
    let cells = if manifest.cells.is_empty() { String::new() } else { format!("{} cells, ", manifest.cells.len()) };
    eprintln!(
        "reprotrace: {} audit finished in {:.2} s ({outcome}): {} processes, {cells}{} files, {} inputs, {} outputs, \
         {} events, {} lost events",
        manifest.backend,
        stats.duration_ms as f64 / 1000.0,
        manifest.processes.len(),
        manifest.files.len(),
        manifest.data.inputs.len(),
        manifest.data.outputs.len(),
        stats.events,
        stats.lost_events,
    );
    if !stats.complete {
        eprintln!(
            "reprotrace: warning: the manifest may be incomplete: {} lost events, {} untracked children, \
             {} malformed events{}",
            stats.lost_events,
            stats.untracked_children,
            stats.malformed_events,
            if stats.lost_events > 0 { " (try a larger --ring-buffer-size)" } else { "" },
        );
    }
    eprintln!("reprotrace: manifest written to {}", output.display());
}
