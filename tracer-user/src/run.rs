//! `reprotrace run`: launch a command under either backend and audit it until
//! it and every process it left behind have exited (or the user interrupted
//! twice).
//!
//! IPython kernels the command starts (`jupyter nbconvert --execute`,
//! `papermill`, …) get the cell hook through `PYTHONPATH` (see [`hooks`]).

use std::{ffi::OsString, os::unix::ffi::OsStrExt, path::Path};

use anyhow::{bail, Context};
use tokio::sync::mpsc;

use crate::{
    audit::{Audit, Backend, Settings, Signals, Traced},
    event::WaitStatus,
    hooks,
    launch::{self, Credentials},
    manifest,
    pipeline::Pipeline,
    snapshot,
    software::PathSink,
    source::{
        ebpf::{
            protocol::AuditCounters,
            session::{self, Session},
        },
        strace,
    },
};

/// Runs the audit; returns the exit code reprotrace should exit with (the command's).
pub async fn run(settings: Settings, command: Vec<OsString>) -> anyhow::Result<i32> {
    let Some(program_name) = command.first() else {
        return Err(launch::LaunchError::NoCommand.into());
    };
    let program = launch::find_program(program_name)?;
    let credentials = launch::sudo_credentials()?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let hook_dir = hooks::install()?;
    let environment = vec![
        (OsString::from(hooks::ENABLE_VARIABLE), OsString::from("1")),
        (OsString::from("PYTHONPATH"), hooks::python_path(&hook_dir)),
    ];
    let described: Vec<String> = command.iter().map(|arg| manifest::display_bytes(arg.as_bytes())).collect();
    let audit = Audit::start(described, cwd.as_os_str().as_bytes().to_vec(), credentials.clone());
    let mut signals = Signals::new()?;
    let launch = Launch { program: &program, command: &command, credentials: credentials.as_ref(), environment };

    let (traced, launch_error) = match settings.backend {
        Backend::Ebpf => {
            trace_with_ebpf(&settings, &launch, audit.cwd.clone(), audit.software_paths(), &mut signals).await?
        }
        Backend::Strace => {
            (trace_with_strace(&launch, audit.cwd.clone(), audit.software_paths(), &mut signals).await?, None)
        }
    };
    let status = audit.conclude(&settings, traced)?;
    if let Some(error) = launch_error {
        return Err(error.into());
    }
    // As a shell reports it: the exit code, or 128 + the killing signal.
    Ok(status.and_then(|status| status.exit_code().or(status.signal().map(|signal| 128 + signal))).unwrap_or(1))
}

/// What to start, as whom, with which extra environment.
struct Launch<'a> {
    program: &'a Path,
    command: &'a [OsString],
    credentials: Option<&'a Credentials>,
    environment: Vec<(OsString, OsString)>,
}

async fn trace_with_ebpf(
    settings: &Settings,
    launch: &Launch<'_>,
    cwd: Vec<u8>,
    software_paths: PathSink,
    signals: &mut Signals,
) -> anyhow::Result<(Traced, Option<launch::LaunchError>)> {
    let mut session = Session::open(&settings.session_options()).await?;
    // Orphans of the traced tree come back to us, so we can tell when all are gone.
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let child = launch::spawn_gated(launch.program, launch.command, launch.credentials, &launch.environment)?;
    let root = child.pid;
    if let Err(err) = session.follow(&[root]).await {
        // SAFETY: kill has no memory effects; the child is ours and still gated.
        unsafe { libc::kill(root as libc::pid_t, libc::SIGKILL) };
        return Err(err.into());
    }
    let mut pipeline = Pipeline::new(root, Some(std::process::id()), cwd);
    pipeline.warm_up_software(software_paths);
    let launch_error = child.open_gate().err();

    let (reaped_tx, mut reaped_rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || reap_all_children(reaped_tx));
    let mut root_status = None;
    let mut interrupted = false;
    let mut streaming = true;
    let mut feed = |event: crate::event::Event| pipeline.feed(&event);
    loop {
        tokio::select! {
            batch = session.next_batch(&mut feed), if streaming => {
                if let Err(err) = batch {
                    // Keep waiting for the command, but say what the manifest misses.
                    session::warn_stream_lost(&err);
                    streaming = false;
                    interrupted = true;
                }
            }
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
    let counters = match streaming {
        true => session.finish_or_warn(&mut feed).await,
        false => None,
    };
    let counters = counters.unwrap_or_else(|| {
        interrupted = true;
        AuditCounters::default()
    });
    let traced = Traced {
        pipeline,
        root_status,
        lost_events: counters.lost_events,
        untracked_children: counters.untracked_children,
        malformed_events: counters.malformed_events,
        interrupted,
    };
    Ok((traced, launch_error))
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
    launch: &Launch<'_>,
    cwd: Vec<u8>,
    software_paths: PathSink,
    signals: &mut Signals,
) -> anyhow::Result<Traced> {
    let strace_path = strace::find_strace()?;
    let log = strace::LogPipe::new()?;
    let target = strace::Target::Launch(launch.credentials, launch.command);
    let mut child = strace::command(&strace_path, &log.path(), target)
        .envs(launch.environment.iter().map(|(key, value)| (key, value)))
        .spawn()
        .map_err(strace::StraceError::Spawn)?;
    let strace_pid = child.id();
    // Parsed while strace runs; the log's first task is the command strace started.
    let log = log.read(move |root| {
        let mut pipeline = Pipeline::new(root, strace_pid, cwd);
        pipeline.warm_up_software(software_paths);
        pipeline
    })?;
    let mut interrupted = false;
    loop {
        tokio::select! {
            status = child.wait() => { status.map_err(strace::StraceError::Spawn)?; break; }
            signal = signals.next() => {
                let root = strace_pid.and_then(strace::traced_root);
                if !signals.forward(signal, root) && !interrupted {
                    interrupted = true;
                    // strace cannot leave the command running: once it is gone, the
                    // syscalls its seccomp filter hands to a tracer fail (ENOSYS).
                    // So the command's tree ends here, and strace with it.
                    eprintln!("reprotrace: ending the command's processes (strace cannot leave them running)");
                    if let Some(pid) = strace_pid {
                        kill_traced_tree(pid);
                    }
                }
            }
        }
    }
    let log = log.finish()?;
    let Some(pipeline) = log.pipeline else {
        bail!("strace wrote an empty log: the command did not start (see strace's message above)");
    };
    Ok(Traced::from_strace_log(pipeline, log.malformed_lines, interrupted))
}

/// Kills every process strace traces (its descendants), so that it writes the
/// end of its log and exits.
fn kill_traced_tree(strace_pid: u32) {
    let Ok(tree) = snapshot::snapshot_trees(&[strace_pid]) else { return };
    for process in tree.iter().filter(|process| process.pid != strace_pid) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(process.pid as libc::pid_t, libc::SIGKILL) };
    }
}
