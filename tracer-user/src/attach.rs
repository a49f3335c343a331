//! `reprotrace attach`: join running process trees (or a Jupyter kernel's) and
//! audit them until Ctrl-C/SIGTERM, `--duration`, or until every process
//! followed has exited. The processes keep running; the manifest marks the ones
//! that existed before the audit.
//!
//! eBPF: the programs are attached first, then every live task of the trees is
//! followed from a /proc snapshot, then /proc is read again until no task is
//! missing (children the kernel did not see being born, because their parent was
//! not followed yet). strace: `strace -f -p PID…` for every process of the trees.

use std::{path::PathBuf, pin::pin, time::Duration};

use anyhow::{bail, Context};

use crate::{
    audit::{Audit, Backend, Settings, Signals, Traced},
    event::Event,
    hooks, jupyter, manifest,
    pipeline::Pipeline,
    snapshot::{self, ProcessSnapshot},
    software::PathSink,
    source::{
        ebpf::{
            protocol::AuditCounters,
            session::{self, Session},
        },
        strace,
    },
};

/// What to attach to.
pub struct Target {
    pub pids: Vec<u32>,
    /// A kernel's connection file, or its id.
    pub kernel: Option<String>,
    /// Install the cell hook in that kernel.
    pub inject_hooks: bool,
    pub duration: Option<Duration>,
}

/// A kernel to install the hook in once tracing has begun.
struct Kernel {
    pid: u32,
    connection_file: PathBuf,
}

pub async fn attach(settings: Settings, target: Target) -> anyhow::Result<i32> {
    let mut roots = target.pids.clone();
    let mut kernel = None;
    if let Some(spec) = &target.kernel {
        let connection_file = jupyter::connection_file(spec)?;
        let pid = jupyter::kernel_pid(&connection_file)?;
        roots.push(pid);
        kernel = Some(Kernel { pid, connection_file });
    }
    if roots.is_empty() {
        bail!("nothing to attach to: give --pid PID or --kernel CONNECTION_FILE|KERNEL_ID");
    }
    if target.inject_hooks && kernel.is_none() {
        bail!("--inject-hooks needs --kernel: it installs the cell hook in a Jupyter kernel");
    }
    let hook = match (&kernel, target.inject_hooks) {
        (Some(kernel), true) => Some((kernel, hooks::install()?)),
        _ => None,
    };
    let snapshots = snapshot::snapshot_trees(&roots)?;
    let first = snapshots.first().context("no process to attach to")?;
    let command = first.argv.iter().map(|arg| manifest::display_bytes(arg)).collect();
    let audit = Audit::start(command, first.cwd.clone(), None);
    let mut signals = Signals::new()?;
    let announce = |processes: usize, threads: usize| -> anyhow::Result<()> {
        if !settings.quiet {
            eprintln!(
                "reprotrace: attached to {processes} processes ({threads} threads); Ctrl-C to detach and write {}",
                settings.output.display()
            );
        }
        if let Some((kernel, hook_dir)) = &hook {
            jupyter::inject_hooks(kernel.pid, &kernel.connection_file, hook_dir)?;
            if !settings.quiet {
                eprintln!("reprotrace: cell hook installed in kernel {}", kernel.pid);
            }
        }
        Ok(())
    };
    let traced = match settings.backend {
        Backend::Ebpf => {
            attach_ebpf(&settings, audit.software_paths(), &roots, snapshots, target.duration, &mut signals, announce)
                .await?
        }
        Backend::Strace => {
            attach_strace(snapshots, audit.software_paths(), target.duration, &mut signals, announce).await?
        }
    };
    audit.conclude(&settings, traced)?;
    Ok(0)
}

/// Resolves after `duration`, or never.
async fn deadline(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

async fn attach_ebpf(
    settings: &Settings,
    software_paths: PathSink,
    roots: &[u32],
    snapshots: Vec<ProcessSnapshot>,
    duration: Option<Duration>,
    signals: &mut Signals,
    announce: impl FnOnce(usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Traced> {
    let mut session = Session::open(&settings.session_options()).await?;
    let mut pipeline = Pipeline::attached(&snapshots);
    pipeline.warm_up_software(software_paths);
    let tids: Vec<u32> = snapshots.iter().flat_map(|process| process.threads.iter().copied()).collect();
    session.follow(&tids).await?;
    // Tasks born between the snapshot and the following of their parent.
    let mut processes = snapshots.len();
    let mut threads = tids.len();
    while let Ok(again) = snapshot::snapshot_trees(roots) {
        let mut found = false;
        for mut process in again {
            let new = session.follow(&process.threads).await?;
            if new.is_empty() {
                continue;
            }
            found = true;
            process.threads = new;
            processes += usize::from(!pipeline.knows(process.pid));
            threads += process.threads.len();
            pipeline.add_late(&process);
        }
        if !found {
            break;
        }
    }
    announce(processes, threads)?;

    // Detaching (a signal, the deadline) is the normal end of an attach, not
    // an interruption: the processes go on without us.
    let mut until = pin!(deadline(duration));
    let mut interrupted = false;
    while pipeline.has_live_tasks() {
        let mut feed = |event: Event| pipeline.feed(&event);
        tokio::select! {
            batch = session.next_batch(&mut feed) => {
                if let Err(err) = batch {
                    session::warn_stream_lost(&err);
                    interrupted = true;
                    break;
                }
            }
            _ = signals.next() => break,
            () = &mut until => break,
        }
    }
    let counters = match interrupted {
        false => session.finish_or_warn(&mut |event| pipeline.feed(&event)).await,
        true => None,
    };
    let counters = counters.unwrap_or_else(|| {
        interrupted = true;
        AuditCounters::default()
    });
    Ok(Traced {
        pipeline,
        root_status: None,
        lost_events: counters.lost_events,
        untracked_children: counters.untracked_children,
        malformed_events: counters.malformed_events,
        interrupted,
    })
}

async fn attach_strace(
    snapshots: Vec<ProcessSnapshot>,
    software_paths: PathSink,
    duration: Option<Duration>,
    signals: &mut Signals,
    announce: impl FnOnce(usize, usize) -> anyhow::Result<()>,
) -> anyhow::Result<Traced> {
    let strace_path = strace::find_strace()?;
    let log = strace::LogPipe::new()?;
    let pids: Vec<u32> = snapshots.iter().map(|process| process.pid).collect();
    let mut child = strace::command(&strace_path, &log.path(), strace::Target::Attach(&pids))
        .spawn()
        .map_err(strace::StraceError::Spawn)?;
    let strace_pid = child.id().context("strace exited at once")?;
    // Parsed while strace runs, by a thread that makes its own pipeline.
    let followed = snapshots.clone();
    let log = log.read(move |_| {
        let mut pipeline = Pipeline::attached(&followed);
        pipeline.warm_up_software(software_paths);
        pipeline
    })?;
    // strace has attached once it is the tracer of every thread.
    let tids: Vec<u32> = snapshots.iter().flat_map(|process| process.threads.iter().copied()).collect();
    let attached = async {
        while !tids.iter().all(|tid| tracer_of(*tid).is_none_or(|tracer| tracer == strace_pid)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        () = attached => {}
        status = child.wait() => bail!("strace could not attach ({})", status.map_err(strace::StraceError::Spawn)?),
    }
    announce(snapshots.len(), tids.len())?;

    let mut until = pin!(deadline(duration));
    tokio::select! {
        status = child.wait() => { status.map_err(strace::StraceError::Spawn)?; }
        _ = signals.next() => stop_strace(&mut child, strace_pid).await?,
        () = &mut until => stop_strace(&mut child, strace_pid).await?,
    }
    let log = log.finish()?;
    // An empty log: the processes made no call we trace.
    let pipeline = log.pipeline.unwrap_or_else(|| Pipeline::attached(&snapshots));
    Ok(Traced::from_strace_log(pipeline, log.malformed_lines, false))
}

/// Detaches strace (SIGINT) and waits for it to flush its log.
async fn stop_strace(child: &mut tokio::process::Child, pid: u32) -> anyhow::Result<()> {
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    child.wait().await.map_err(strace::StraceError::Spawn)?;
    Ok(())
}

/// The `TracerPid` of a task; `None` if the task is gone.
fn tracer_of(tid: u32) -> Option<u32> {
    let status = std::fs::read(format!("/proc/{tid}/status")).ok()?;
    let status = String::from_utf8_lossy(&status);
    status.lines().find_map(|line| line.strip_prefix("TracerPid:")).and_then(|pid| pid.trim().parse().ok())
}
