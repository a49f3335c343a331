//! `reprotrace run`: launch a command under either backend and audit it until
//! it and every process it left behind have exited (or the user interrupted
//! twice).
//!
//! The command gets exactly the environment reprotrace was given. IPython
//! kernels it starts (`jupyter nbconvert --execute`, `papermill`, …) get the
//! cell hook through their own Jupyter protocol as soon as they start (see
//! [`hooks`]).

use std::{ffi::OsString, os::unix::ffi::OsStrExt};

use anyhow::Context;
use rustix::process::{getpid, set_child_subreaper, waitpid, WaitOptions};
use tokio::sync::mpsc;

use crate::{
    audit::{self, Audit, Backend, Settings, Traced},
    classify, dask,
    event::{Tid, WaitStatus},
    hooks::KernelHooks,
    interrupts::Signals,
    kernel_channel::{CellEndWaiters, DaskOffer, KernelChannels},
    launch::{self, LaunchError, LaunchSpec},
    manifest, notebook,
    pipeline::Pipeline,
    progress::Progress,
    software::PathSink,
    source::{
        ebpf::session::Session, finish_or_warn, strace::StraceSource, warn_stream_lost, Counters, Launched, Source,
    },
};

/// Runs the audit; returns the exit code reprotrace should exit with (the
/// command's). With `dask`, the Dask workers the command's clients use are
/// audited too, and merged into the manifest.
pub async fn run(settings: Settings, command: Vec<OsString>, dask: bool) -> anyhow::Result<i32> {
    let reports = match dask {
        true => {
            let owner = launch::sudo_credentials()?.map(|owner| (owner.uid, owner.gid));
            Some(dask::Reports::create(owner)?)
        }
        false => None,
    };
    let environment = reports.as_ref().map(dask::Reports::environment).unwrap_or_default();
    let spec = LaunchSpec::new(command, environment)?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let described: Vec<String> = spec.argv.iter().map(|arg| manifest::display_bytes(arg.as_bytes())).collect();
    let mut audit = Audit::start(described, cwd.as_os_str().as_bytes().to_vec(), spec.credentials.clone());
    audit.dask_reports = reports.as_ref().map(|reports| reports.path().to_path_buf());
    audit.notebook = notebook::notebook_of_command(&audit.command, &cwd);
    audit.record_environment(spec.command_environment());
    let status = audit_launch(&settings, &spec, audit).await?;
    // As a shell reports it: the exit code, or 128 + the killing signal; with
    // no status, the audit was interrupted before the command ended.
    Ok(status
        .and_then(|status| status.exit_code().or(status.signal().map(|signal| 128 + signal)))
        .unwrap_or(INTERRUPTED))
}

/// The exit code of an audit stopped before its command ended (a second
/// Ctrl-C, SIGTERM or SIGHUP), as a shell says of a Ctrl-C.
pub const INTERRUPTED: i32 = 130;

/// Launches `spec` under the audit and concludes it (the manifest written);
/// returns the command's status as the trace saw it.
pub async fn audit_launch(settings: &Settings, spec: &LaunchSpec, audit: Audit) -> anyhow::Result<Option<WaitStatus>> {
    audit::check_output(settings, spec.credentials.as_ref())?;
    let mut signals = Signals::new()?;
    // Orphans of the traced tree come back to us, so we can tell when all are gone.
    set_child_subreaper(Some(getpid())).context("becoming the traced tree's subreaper")?;
    let what = format!(
        "auditing `{}` ({} backend; the manifest goes to {})",
        audit.command.join(" "),
        settings.backend.name(),
        settings.output.display()
    );
    let watch = Watch {
        cwd: audit.cwd.clone(),
        software_paths: audit.software_paths(),
        signals: &mut signals,
        settings,
        progress: Progress::start(&what, settings.quiet),
        dask: match &audit.dask_reports {
            // Its clients take part already (the preload): joining again changes nothing.
            Some(reports) => match crate::hooks::install() {
                Ok(hooks) => {
                    DaskOffer::Reports { dir: reports.clone(), preload: hooks.join(crate::hooks::DASK_CLIENT_PRELOAD) }
                }
                Err(err) => DaskOffer::Refused(err.to_string()),
            },
            None => DaskOffer::Refused(
                "this audit (reprotrace run without --dask) does not bring Dask workers' audits back: \
                 run it with --dask"
                    .into(),
            ),
        },
    };
    let (traced, exec_error) = match settings.backend {
        Backend::Ebpf => {
            let (source, launched) = Session::launch(&settings.session_options(), spec).await?;
            follow(source, launched, watch).await
        }
        Backend::Strace => {
            let (source, launched) = StraceSource::launch(spec).await?;
            follow(source, launched, watch).await
        }
    };
    let status = audit.conclude(settings, traced)?;
    if let Some(error) = exec_error {
        return Err(error.into());
    }
    Ok(status)
}

/// What following a launched command needs besides its source.
struct Watch<'a> {
    cwd: Vec<u8>,
    software_paths: PathSink,
    signals: &'a mut Signals,
    settings: &'a Settings,
    progress: Progress,
    /// What a kernel's `%load_ext reprotrace` hears about Dask.
    dask: DaskOffer,
}

/// The driver of every launched audit: feeds the pipeline what the source
/// yields until the command and everything it left behind has been reaped,
/// passing the first Ctrl-C/SIGTERM/SIGHUP on to the command and stopping at
/// the second.
async fn follow(mut source: impl Source, launched: Launched, watch: Watch<'_>) -> (Traced, Option<LaunchError>) {
    let Launched { root, parent, exec_error } = launched;
    let Watch { cwd, software_paths, signals, settings, mut progress, dask } = watch;
    let mut waiters = CellEndWaiters::offering(dask);
    let mut pipeline = Pipeline::new(root, parent, cwd);
    pipeline.warm_up_software(software_paths);
    pipeline.hash_with(classify::Hashing {
        limit: settings.hash_limit,
        report: progress.enabled(),
        rehash: settings.rehash,
    });
    let mut reaped = reap_children();
    let mut root_status = None;
    let mut interrupted = false;
    let mut stopped_by_user = false;
    let mut stream = Stream::Open;
    let mut hooks = KernelHooks::default();
    let mut channels = KernelChannels::default();
    loop {
        let mut feed = |event| pipeline.feed(&event);
        let mut hooked = None;
        tokio::select! {
            more = source.next_batch(&mut feed), if stream == Stream::Open => match more {
                Ok(true) => {}
                // The source ended (strace exited): its last events are in.
                Ok(false) => stream = Stream::Ended,
                Err(err) => {
                    // Keep waiting for the command, but say what the manifest misses.
                    warn_stream_lost(&err);
                    stream = Stream::Lost;
                    interrupted = true;
                }
            },
            reaped = reaped.recv() => match reaped {
                Some((pid, status)) if pid == root => root_status = Some(status),
                Some(_) => {}
                // No children left: the whole tree is gone.
                None => break,
            },
            signal = signals.next() => {
                if !signals.forward(signal, root_status.is_none().then_some(root)) {
                    interrupted = true;
                    stopped_by_user = root_status.is_none();
                    break;
                }
            }
            installed = hooks.next() => hooked = Some(installed),
            query = channels.next() => waiters.take(query, &pipeline, settings.backend.name(), &settings.output),
            () = waiters.deadline() => {}
            () = progress.tick() => {
                let (processes, files, events) = pipeline.progress();
                progress.show(processes, files, events, source.lost_so_far());
            }
        }
        waiters.settle(&pipeline);
        if let Some((kernel, installed)) = hooked {
            match installed {
                Ok(()) => pipeline.mark_cell_hook(kernel),
                Err(err) => eprintln!("reprotrace: warning: no cells for kernel {kernel}: {err}"),
            }
        }
        for (kernel, connection_file) in pipeline.take_started_kernels() {
            if let Err(err) = hooks.start(kernel, connection_file, &mut channels) {
                eprintln!("reprotrace: warning: no cells for kernel {kernel}: {err}");
            }
        }
    }
    progress.finish();
    let counters = match stream {
        Stream::Lost => Counters::default(),
        Stream::Open | Stream::Ended => {
            finish_or_warn(source, &mut |event| pipeline.feed(&event), &mut interrupted).await
        }
    };
    (Traced { pipeline, root_status, counters, interrupted, stopped_by_user }, exec_error)
}

/// Whether a source still yields events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Open,
    Ended,
    /// It failed: what it had not delivered is lost.
    Lost,
}

/// Reaps every child (we are a subreaper) in a thread, until none is left:
/// the channel closes then.
fn reap_children() -> mpsc::UnboundedReceiver<(Tid, WaitStatus)> {
    let (reaped_tx, reaped_rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        match waitpid(None, WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let _ = reaped_tx.send((pid.as_raw_nonzero().get().unsigned_abs(), WaitStatus(status.as_raw())));
            }
            Err(rustix::io::Errno::INTR) => {}
            // ECHILD: no children left.
            Ok(None) | Err(_) => return,
        }
    });
    reaped_rx
}
