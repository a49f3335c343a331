//! `reprotrace attach`: join running process trees (or a Jupyter kernel's) and
//! audit them until Ctrl-C/SIGTERM, `--duration`, or until every process
//! followed has exited. The processes keep running; the manifest marks the ones
//! that existed before the audit.
//!
//! eBPF: the programs are attached first, then every live task of the trees is
//! followed from a /proc snapshot, then /proc is read again until no task is
//! missing (children the kernel did not see being born, because their parent was
//! not followed yet). strace: `strace -f -p PID…` for every process of the trees.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    pin::pin,
    time::Duration,
};

use anyhow::{bail, Context};

use crate::{
    audit::{self, Audit, Backend, Settings, Traced},
    classify, dask,
    event::ExistingProcess,
    hooks,
    interrupts::Signals,
    jupyter,
    kernel_channel::{CellEndWaiters, DaskOffer, KernelChannels},
    launch::Credentials,
    manifest::{self, DaskWorker},
    pipeline::Pipeline,
    privilege::{self, ActingAs},
    snapshot,
    software::PathSink,
    source::{ebpf::session::Session, finish_or_warn, strace::StraceSource, warn_stream_lost, Counters, Source},
};

/// What to attach to.
pub struct Target {
    pub pids: Vec<u32>,
    /// A kernel's connection file, or its id.
    pub kernel: Option<String>,
    /// Install the cell hook in that kernel.
    pub inject_hooks: bool,
    /// Make that kernel's Dask clients take part (`run --dask`'s equivalent).
    pub dask: bool,
    pub duration: Option<Duration>,
    /// The processes are this Dask worker.
    pub dask_worker: Option<DaskWorker>,
    /// Follow other users' processes too.
    pub all_users: bool,
}

/// A kernel to install the cell hook in, or to make its Dask clients take
/// part in the audit, once tracing has begun.
struct Hook {
    pid: u32,
    connection_file: PathBuf,
    hook_dir: PathBuf,
    cell_hook: bool,
    /// The hook's channel to this audit.
    channel: PathBuf,
    /// Where its clients report their workers' audits, if they may.
    dask_reports: Option<PathBuf>,
    /// Make its Dask clients take part now (`--dask`); without it, a
    /// `%load_ext reprotrace` in the kernel may ask over the channel.
    join_dask: bool,
}

pub async fn attach(settings: Settings, target: Target) -> anyhow::Result<i32> {
    let owner = crate::launch::sudo_credentials()?;
    audit::check_output(&settings, owner.as_ref())?;
    let mut roots = target.pids.clone();
    let mut kernel = None;
    if let Some(spec) = &target.kernel {
        // The user names the file: it is read with their rights.
        let (connection_file, connection) = {
            let _acting = ActingAs::maybe(owner.as_ref()).context("taking the invoking user's rights")?;
            let connection_file = jupyter::connection_file(spec)?;
            let connection = jupyter::ConnectionInfo::read(&connection_file)?;
            (connection_file, connection)
        };
        let pid = jupyter::kernel_pid(&connection_file, &connection)?;
        roots.push(pid);
        kernel = Some((pid, connection_file));
    }
    if roots.is_empty() {
        bail!("nothing to attach to: give --pid PID or --kernel CONNECTION_FILE|KERNEL_ID");
    }
    // A kernel's Dask clients may take part: with --dask from the start;
    // without, when `%load_ext reprotrace` in the kernel asks over its channel.
    let (reports, dask_offer) = match (&kernel, target.dask) {
        (Some((pid, _)), true) => (Some(dask::Reports::create(hooks::owner_of(*pid))?), None),
        (None, true) => bail!("--dask needs --kernel: it makes a Jupyter kernel's Dask clients take part"),
        (Some((pid, _)), false) => match dask::Reports::create(hooks::owner_of(*pid)) {
            Ok(reports) => (Some(reports), None),
            Err(err) => (None, Some(DaskOffer::Refused(err.to_string()))),
        },
        (None, false) => (None, None),
    };
    let dask_offer = dask_offer.unwrap_or_else(|| match &reports {
        Some(reports) => {
            DaskOffer::Reports { dir: reports.path().to_path_buf(), preload: reports.preload().to_path_buf() }
        }
        None => DaskOffer::Refused("this audit follows no Jupyter kernel (attach --kernel)".into()),
    });
    let mut channels = KernelChannels::default();
    if target.inject_hooks && kernel.is_none() {
        bail!("--inject-hooks needs --kernel: it installs the cell hook in a Jupyter kernel");
    }
    // A kernel's channel is open whether the audit installs the hook or the
    // user loads it: `%load_ext reprotrace` then finds its audit.
    let hook = match kernel {
        Some((pid, connection_file)) => Some(Hook {
            pid,
            connection_file,
            hook_dir: hooks::install()?,
            cell_hook: target.inject_hooks,
            channel: channels.open(pid, hooks::owner_of(pid))?,
            dask_reports: reports.as_ref().map(|reports| reports.path().to_path_buf()),
            join_dask: target.dask,
        }),
        None => None,
    };
    let snapshot = snapshot::snapshot_trees(&roots)?;
    let first = snapshot.first().context("no process to attach to")?;
    if !target.all_users {
        refuse_other_users(&snapshot, owner.as_ref())?;
    }
    let command = first.argv.iter().map(|arg| manifest::display_bytes(arg)).collect();
    // Under sudo, the manifest is the invoking user's, made with their rights.
    let mut audit = Audit::start(command, first.cwd.clone(), owner);
    match procfs::process::Process::new(first.pid as i32).and_then(|process| process.environ()) {
        Ok(environment) => audit.record_environment(environment),
        Err(err) => eprintln!("reprotrace: warning: the environment of pid {} is not recorded: {err}", first.pid),
    }
    audit.dask_worker = target.dask_worker;
    audit.dask_reports = reports.as_ref().map(|reports| reports.path().to_path_buf());
    let mut signals = Signals::new()?;
    let watch = Watch {
        settings: &settings,
        software_paths: audit.software_paths(),
        hook,
        duration: target.duration,
        signals: &mut signals,
        channels,
        dask_offer,
    };
    let traced = match settings.backend {
        Backend::Ebpf => {
            let (source, followed) = Session::attach(&settings.session_options(), &roots, snapshot).await?;
            follow(source, followed, watch).await?
        }
        Backend::Strace => {
            let (source, followed, untraceable) = StraceSource::attach(snapshot).await?;
            for process in &untraceable {
                eprintln!("reprotrace: warning: not followed: {process}");
            }
            let mut traced = follow(source, followed, watch).await?;
            // What they did is missing: the manifest is incomplete.
            traced.counters.untracked_children += untraceable.len() as u64;
            traced
        }
    };
    audit.conclude(&settings, traced)?;
    Ok(0)
}

/// Refuses a tree with processes of other users than the invoking one (the
/// user who ran sudo, else whoever runs reprotrace): auditing them is a
/// decision to make with `--all-users`, not by accident.
fn refuse_other_users(snapshot: &[ExistingProcess], owner: Option<&Credentials>) -> anyhow::Result<()> {
    let uid = owner.map_or_else(|| rustix::process::getuid().as_raw(), |owner| owner.uid);
    let mut others: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for process in snapshot {
        if let Some(other) = privilege::uids_of(process.pid).into_iter().flatten().find(|&task_uid| task_uid != uid) {
            others.entry(other).or_default().push(process.pid);
        }
    }
    if others.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = others
        .iter()
        .map(|(other, pids)| {
            let shown: Vec<String> = pids.iter().take(5).map(u32::to_string).collect();
            let more = if pids.len() > 5 { format!(" and {} more", pids.len() - 5) } else { String::new() };
            format!("uid {other}: pid {}{more}", shown.join(", "))
        })
        .collect();
    bail!(
        "the tree has processes of other users than uid {uid} ({}): give --all-users to audit them too",
        listed.join("; ")
    )
}

/// What following attached processes needs besides its source.
struct Watch<'a> {
    settings: &'a Settings,
    software_paths: PathSink,
    hook: Option<Hook>,
    duration: Option<Duration>,
    signals: &'a mut Signals,
    /// The cell hook's questions.
    channels: KernelChannels,
    /// What the kernel's `%load_ext reprotrace` hears about Dask.
    dask_offer: DaskOffer,
}

/// The driver of every attached audit: feeds the pipeline what the source
/// yields until Ctrl-C/SIGTERM/SIGHUP, the deadline, or until every process
/// followed has exited. Detaching is the normal end of an attach, not an
/// interruption: the processes go on without us.
async fn follow(mut source: impl Source, followed: Vec<ExistingProcess>, watch: Watch<'_>) -> anyhow::Result<Traced> {
    let Watch { settings, software_paths, hook, duration, signals, mut channels, dask_offer } = watch;
    let mut waiters = CellEndWaiters::offering(dask_offer);
    let mut pipeline = Pipeline::attached(&followed);
    pipeline.hash_with(classify::Hashing { limit: settings.hash_limit, report: false, rehash: settings.rehash });
    pipeline.warm_up_software(software_paths);
    if !settings.quiet {
        let processes: BTreeSet<u32> = followed.iter().map(|process| process.pid).collect();
        let threads: usize = followed.iter().map(|process| process.threads.len()).sum();
        eprintln!(
            "reprotrace: attached to {} processes ({threads} threads); Ctrl-C to detach and write {}",
            processes.len(),
            settings.output.display()
        );
    }
    // Installed while the events flow: the kernel's work for it is traced, and
    // must not wait for us.
    let mut injecting = hook.is_some();
    let mut injection = pin!(async {
        let Some(hook) = &hook else { return Ok(None) };
        if let Some(reports) = hook.dask_reports.as_ref().filter(|_| hook.join_dask) {
            jupyter::join_dask_clients(&hook.connection_file, &hook.hook_dir, reports).await?;
        }
        match hook.cell_hook {
            true => jupyter::inject_hooks(&hook.connection_file, &hook.hook_dir, Some(&hook.channel))
                .await
                .map(|()| Some(hook.pid)),
            false => Ok(None),
        }
    });
    let mut until = pin!(deadline(duration));
    let mut lost = false;
    while pipeline.has_live_tasks() {
        let mut feed = |event| pipeline.feed(&event);
        let mut hooked = None;
        tokio::select! {
            more = source.next_batch(&mut feed) => match more {
                Ok(true) => {}
                // strace exited: every process it followed is gone.
                Ok(false) => break,
                Err(err) => {
                    warn_stream_lost(&err);
                    lost = true;
                    break;
                }
            },
            injected = &mut injection, if injecting => {
                injecting = false;
                hooked = injected?;
            }
            query = channels.next() => waiters.take(query, &pipeline, settings.backend.name(), &settings.output),
            () = waiters.deadline() => {}
            _ = signals.next() => break,
            () = &mut until => break,
        }
        waiters.settle(&pipeline);
        if let Some(pid) = hooked {
            pipeline.mark_cell_hook(pid);
            if !settings.quiet {
                eprintln!("reprotrace: cell hook installed in kernel {pid}");
            }
        }
    }
    // The kernel's clients report their workers' audits, while the events
    // of the kernel's work for it still flow.
    let joined = hook.as_ref().is_some_and(|hook| hook.join_dask) || waiters.dask_taken();
    if let Some(hook) = hook.as_ref().filter(|hook| hook.dask_reports.is_some() && joined && !injecting && !lost) {
        let mut collection = pin!(jupyter::collect_dask_clients(&hook.connection_file));
        let collected = loop {
            let mut feed = |event| pipeline.feed(&event);
            tokio::select! {
                collected = &mut collection => break collected,
                more = source.next_batch(&mut feed) => match more {
                    Ok(true) => {}
                    Ok(false) => break (&mut collection).await,
                    Err(err) => {
                        warn_stream_lost(&err);
                        lost = true;
                        break (&mut collection).await;
                    }
                },
            }
        };
        if let Err(err) = collected {
            eprintln!("reprotrace: warning: the kernel's Dask clients did not report their workers' audits: {err}");
        }
    }
    let mut interrupted = lost;
    let counters = match lost {
        true => Counters::default(),
        false => finish_or_warn(source, &mut |event| pipeline.feed(&event), &mut interrupted).await,
    };
    // Detaching is how an attach ends, not an interruption.
    Ok(Traced { pipeline, root_status: None, counters, interrupted, stopped_by_user: false })
}

/// Resolves after `duration`, or never.
async fn deadline(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
