//! `reprotrace run`: audit one command with either backend and write its manifest.
//!
//! Both backends end the same way: the command and every process it left behind
//! have exited (or the user interrupted twice), the events went through the
//! pipeline, and the manifest is written atomically even when the audit was cut
//! short.

use std::{
    ffi::OsString,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    time::{Instant, SystemTime},
};

use anyhow::{bail, Context};
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    sync::mpsc,
};

use crate::{
    classify,
    event::WaitStatus,
    launch::{self, Credentials},
    manifest::{self, Manifest, Stats, SCHEMA_ID},
    pipeline::{Pipeline, PipelineOutput},
    software::SoftwareIndex,
    source::{
        ebpf::{EbpfSource, LoadOptions},
        strace,
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

pub struct RunOptions {
    pub backend: Backend,
    pub command: Vec<OsString>,
    pub output: PathBuf,
    pub quiet: bool,
    pub ring_buffer_bytes: u32,
    /// The user's data classification overrides.
    pub rules: classify::Rules,
}

/// What a backend hands back besides the pipeline.
struct Traced {
    pipeline: Pipeline,
    /// The command's status as its parent saw it (fallback when events miss it).
    root_status: Option<WaitStatus>,
    lost_events: u64,
    untracked_children: u64,
    malformed_events: u64,
    interrupted: bool,
    /// A failure to exec the command itself, reported after the manifest is written.
    launch_error: Option<launch::LaunchError>,
}

/// Runs the audit; returns the exit code reprotrace should exit with (the command's).
pub async fn run(options: RunOptions) -> anyhow::Result<i32> {
    let Some(program_name) = options.command.first() else {
        return Err(launch::LaunchError::NoCommand.into());
    };
    let program = launch::find_program(program_name)?;
    let credentials = launch::sudo_credentials()?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let cwd = cwd.as_os_str().as_bytes().to_vec();
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let mut signals = ForwardedSignals::new()?;
    // The package database is read while the command runs.
    let software_index = std::thread::spawn(SoftwareIndex::load);

    let traced = match options.backend {
        Backend::Ebpf => trace_with_ebpf(&options, &program, credentials.as_ref(), cwd.clone(), &mut signals).await?,
        Backend::Strace => trace_with_strace(&options, credentials.as_ref(), cwd.clone(), &mut signals).await?,
    };
    let duration = clock.elapsed();
    let finished_at = SystemTime::now();

    let Traced { pipeline, root_status, lost_events, untracked_children, malformed_events, interrupted, launch_error } =
        traced;
    let mut software_index = match software_index.join() {
        Ok(loaded) => loaded?,
        Err(_) => bail!("reading the package database failed unexpectedly"),
    };
    let PipelineOutput { sections, events, tracker, root, warnings } =
        pipeline.finish(&options.rules, started_at, &mut software_index);
    let status = root.and_then(|root| root.status).or(root_status);
    let malformed_events = malformed_events + tracker.unknown_tasks;
    let manifest = Manifest {
        schema: SCHEMA_ID.to_string(),
        backend: options.backend.name().to_string(),
        command: options.command.iter().map(|arg| manifest::display_bytes(arg.as_bytes())).collect(),
        cwd: manifest::display_bytes(&cwd),
        host: hostname(),
        started_at: humantime::format_rfc3339_millis(started_at).to_string(),
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
        },
        processes: sections.processes,
        files: sections.files,
        software: sections.software,
        data: sections.data,
        cells: sections.cells,
    };
    manifest.write_atomically(&options.output)?;
    if let Some(credentials) = &credentials {
        give_to_user(&options.output, credentials);
    }
    if !options.quiet {
        for warning in &warnings {
            eprintln!("reprotrace: warning: {warning}");
        }
        print_summary(&manifest, &options.output);
    }
    if let Some(error) = launch_error {
        return Err(error.into());
    }
    Ok(match status {
        Some(status) => status.exit_code().or(status.signal().map(|signal| 128 + signal)).unwrap_or(1),
        None => 1,
    })
}

async fn trace_with_ebpf(
    options: &RunOptions,
    program: &std::path::Path,
    credentials: Option<&Credentials>,
    cwd: Vec<u8>,
    signals: &mut ForwardedSignals,
) -> anyhow::Result<Traced> {
    let audit_id = std::process::id();
    let load = LoadOptions { ring_buffer_bytes: options.ring_buffer_bytes };
    let mut source = EbpfSource::load(&load, audit_id)?;
    // Orphans of the traced tree come back to us, so we can tell when all are gone.
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let child = launch::spawn_gated(program, &options.command, credentials)?;
    let root = child.pid;
    if let Err(err) = source.follow(root) {
        // SAFETY: kill has no memory effects; the child is ours and still gated.
        unsafe { libc::kill(root as libc::pid_t, libc::SIGKILL) };
        return Err(err.into());
    }
    let mut pipeline = Pipeline::new(root, Some(std::process::id()), cwd);
    let launch_error = child.open_gate().err();

    let (reaped_tx, mut reaped_rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || reap_all_children(reaped_tx));
    let mut root_status = None;
    let mut interrupted = false;
    let mut feed = |event: crate::event::Event| pipeline.feed(&event);
    loop {
        tokio::select! {
            batch = source.next_batch(&mut feed) => { batch?; }
            reaped = reaped_rx.recv() => match reaped {
                Some((pid, status)) if pid == root => root_status = Some(status),
                Some(_) => {}
                // No children left: the whole tree is gone.
                None => break,
            },
            signal = signals.next() => {
                if !signals.forward(signal, root_status.is_none().then_some(root)) {
                    interrupted = true;
                    break;
                }
            }
        }
    }
    // Every task's last event was committed before it could be reaped.
    source.drain_now(&mut feed);
    let counters = source.counters()?;
    let malformed_events = source.malformed_events();
    source.detach_after_exit();
    Ok(Traced {
        pipeline,
        root_status,
        lost_events: counters.lost_events,
        untracked_children: counters.untracked_children,
        malformed_events,
        interrupted,
        launch_error,
    })
}

/// Reaps every child (we are a subreaper) until none is left.
fn reap_all_children(reaped: mpsc::UnboundedSender<(u32, WaitStatus)>) {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            let _ = reaped.send((pid as u32, WaitStatus(status)));
            continue;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

async fn trace_with_strace(
    options: &RunOptions,
    credentials: Option<&Credentials>,
    cwd: Vec<u8>,
    signals: &mut ForwardedSignals,
) -> anyhow::Result<Traced> {
    let strace_path = strace::find_strace()?;
    let log_dir = tempfile::tempdir().context("creating a directory for the strace log")?;
    let log = log_dir.path().join("strace.log");
    let mut child = strace::command(&strace_path, &log, credentials, &options.command)
        .spawn()
        .map_err(strace::StraceError::Spawn)?;
    let strace_pid = child.id();
    let mut interrupted = false;
    loop {
        tokio::select! {
            status = child.wait() => { status.map_err(strace::StraceError::Spawn)?; break; }
            signal = signals.next() => {
                let root = strace_pid.and_then(strace::traced_root);
                if !signals.forward(signal, root) {
                    interrupted = true;
                    // strace detaches and flushes its log on SIGTERM.
                    if let Some(pid) = strace_pid {
                        // SAFETY: kill has no memory effects.
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                    }
                }
            }
        }
    }
    let parsed = strace::read_log(&log)?;
    let Some(root) = parsed.root else {
        bail!("strace wrote an empty log: the command did not start (see strace's message above)");
    };
    let mut pipeline = Pipeline::new(root, strace_pid, cwd);
    for event in &parsed.events {
        pipeline.feed(event);
    }
    Ok(Traced {
        pipeline,
        root_status: None,
        lost_events: 0,
        untracked_children: 0,
        malformed_events: parsed.malformed_lines,
        interrupted,
        launch_error: None,
    })
}

/// Ctrl-C, SIGTERM and SIGHUP: the first of them is passed on to the command;
/// another one stops waiting for it (the manifest is still written).
struct ForwardedSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    forwarded: bool,
}

impl ForwardedSignals {
    fn new() -> anyhow::Result<Self> {
        let install = |kind| signal(kind).context("installing signal handlers");
        Ok(ForwardedSignals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
            forwarded: false,
        })
    }

    async fn next(&mut self) -> libc::c_int {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
            _ = self.hangup.recv() => libc::SIGHUP,
        }
    }

    /// Passes `signal` to `target`; false when the user asked a second time
    /// (or there is nobody to pass it to) and the audit should stop waiting.
    fn forward(&mut self, signal: libc::c_int, target: Option<u32>) -> bool {
        let Some(target) = target.filter(|_| !self.forwarded) else { return false };
        self.forwarded = true;
        eprintln!("reprotrace: passing the signal on to the command; send it again to stop waiting");
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(target as libc::pid_t, signal) };
        true
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_string()).unwrap_or_default()
}

/// Under sudo, the manifest belongs to the user who asked for it.
fn give_to_user(path: &std::path::Path, credentials: &Credentials) {
    if let Err(err) = std::os::unix::fs::chown(path, Some(credentials.uid), Some(credentials.gid)) {
        eprintln!("reprotrace: warning: could not give {} to {}: {err}", path.display(), credentials.user);
    }
}

fn print_summary(manifest: &Manifest, output: &std::path::Path) {
    let stats = &manifest.stats;
    let outcome = match (&manifest.exit_code, &manifest.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by {signal}"),
        (None, None) => "exit status unknown".to_string(),
    };
    eprintln!(
        "reprotrace: {} audit finished in {:.2} s ({outcome}): {} processes, {} files, {} inputs, {} outputs, \
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
