//! What every audit shares, whether it launched the command (`run`) or joined
//! running processes (`attach`): its conclusion — the pipeline's results
//! assembled into a manifest, written atomically even when the audit was cut
//! short, and summarised.

mod settings;
mod summary;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    thread::JoinHandle,
    time::{Instant, SystemTime},
};

pub use settings::{Backend, Settings};

use anyhow::Context;

use crate::{
    event::WaitStatus,
    launch::Credentials,
    manifest::{self, DaskWorker, Manifest, OsRelease, Platform, Stats, SCHEMA_ID},
    merge,
    notebook::Notebook,
    pipeline::{Pipeline, PipelineOutput},
    priority,
    privilege::ActingAs,
    software::{IndexBuilder, PathSink},
    source::Counters,
};

/// An audit under way: what the manifest will say about it besides the trace.
pub struct Audit {
    pub command: Vec<String>,
    pub cwd: Vec<u8>,
    pub owner: Option<Credentials>,
    /// The processes followed are this Dask worker.
    pub dask_worker: Option<DaskWorker>,
    /// Where the run's Dask clients leave their workers' audits, to merge
    /// into its manifest (`run --dask`).
    pub dask_reports: Option<PathBuf>,
    /// The notebook the command runs (nbconvert's, papermill's): cells whose
    /// client sent no id get its cells' ids, matched by source.
    pub notebook: Option<PathBuf>,
    /// The environment the command started with (`NAME` → value).
    environment: BTreeMap<String, String>,
    started_at: SystemTime,
    clock: Instant,
    /// The software index, built while the audit runs.
    software_index: IndexBuilder,
    /// The host's system and platform, read while the audit runs.
    host_facts: HostFacts,
}

/// The host's operating system and platform, read on a thread of the lowest
/// priority while the audit runs (`/proc/cpuinfo`, `/proc/meminfo` and
/// `/etc/os-release`: 0.1 ms of an audit's end otherwise).
struct HostFacts(std::io::Result<JoinHandle<(Option<OsRelease>, Platform)>>);

impl HostFacts {
    fn start() -> HostFacts {
        HostFacts(priority::spawn_at_lowest_priority("host-facts", read_host_facts))
    }

    /// The facts: the thread's if it has read them, else read now (a thread
    /// of the lowest priority on a busy host may not have run yet).
    fn take(self) -> (Option<OsRelease>, Platform) {
        match self.0 {
            Ok(reader) if reader.is_finished() => reader.join().unwrap_or_else(|_| read_host_facts()),
            _ => read_host_facts(),
        }
    }
}

fn read_host_facts() -> (Option<OsRelease>, Platform) {
    (OsRelease::of_this_host(), Platform::of_this_host())
}

/// What a driver hands back: the fed pipeline and what the source counted.
pub struct Traced {
    pub pipeline: Pipeline,
    /// The command's status as its parent saw it (fallback when events miss it).
    pub root_status: Option<WaitStatus>,
    pub counters: Counters,
    /// The audit stopped before the processes it followed had ended, or
    /// lost its event stream.
    pub interrupted: bool,
    /// The user stopped the audit before the command ended (a second signal).
    pub stopped_by_user: bool,
}

impl Audit {
    pub fn start(command: Vec<String>, cwd: Vec<u8>, owner: Option<Credentials>) -> Self {
        let software_owner = owner.clone();
        Audit {
            command,
            cwd,
            owner,
            dask_worker: None,
            dask_reports: None,
            notebook: None,
            environment: BTreeMap::new(),
            started_at: SystemTime::now(),
            clock: Instant::now(),
            software_index: IndexBuilder::start(software_owner),
            host_facts: HostFacts::start(),
        }
    }

    /// The environment the command started with.
    pub fn record_environment(&mut self, variables: impl IntoIterator<Item = (OsString, OsString)>) {
        self.environment = variables
            .into_iter()
            .map(|(name, value)| (manifest::display_bytes(name.as_bytes()), manifest::display_bytes(value.as_bytes())))
            .collect();
    }

    /// Where a pipeline sends the paths it sees, to index their software early.
    pub fn software_paths(&self) -> PathSink {
        self.software_index.sink()
    }

    /// Assembles, writes and summarises the manifest; returns the command's
    /// status (`None` for an attached tree, when no event told it, or when
    /// the user stopped the audit: the status is then not the command's
    /// doing, as when strace's end took the command's processes with it).
    pub fn conclude(self, settings: &Settings, traced: Traced) -> anyhow::Result<Option<WaitStatus>> {
        let duration = self.clock.elapsed();
        let finished_at = SystemTime::now();
        let Traced { pipeline, root_status, counters, interrupted, stopped_by_user } = traced;
        let host = hostname();
        let worker = self.dask_worker.as_ref().map(|worker| worker.address.as_str());
        // From here on, what is read, hashed and written for the user is
        // read, hashed and written with the user's rights.
        let _acting = ActingAs::maybe(self.owner.as_ref()).context("taking the invoking user's rights")?;
        let PipelineOutput { sections, events, tracker, root, warnings, submissions, missing_lookups, software_index } =
            pipeline.finish(&settings.rules, self.started_at, self.software_index, &host, worker)?;
        // The command's status, for `run`; an attached tree has no one command.
        let status = root.filter(|root| !root.pre_existing).and_then(|root| root.status).or(root_status);
        let Counters { lost_events, untracked_children, malformed_events, sees_io_uring } = counters;
        let unfollowed_privileged = tracker.unfollowed_privileged;
        let unseen_io_uring_rings = if sees_io_uring { 0 } else { tracker.io_uring_setups };
        let malformed_events = malformed_events + tracker.unknown_tasks;
        let (os, platform) = self.host_facts.take();
        let mut manifest = Manifest {
            schema: SCHEMA_ID.to_string(),
            backend: settings.backend.name().to_string(),
            command: self.command,
            cwd: manifest::display_bytes(&self.cwd),
            host,
            os,
            platform: Some(platform),
            environment: self.environment,
            redaction: None,
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
                truncated_argvs: tracker.truncated_argvs,
                ia32_processes: tracker.ia32_processes,
                unseen_io_uring_rings,
                unfollowed_privileged,
                interrupted,
                missing_work: Vec::new(),
                complete: lost_events == 0
                    && untracked_children == 0
                    && malformed_events == 0
                    && tracker.truncated_argvs == 0
                    && unseen_io_uring_rings == 0
                    && unfollowed_privileged == 0
                    // strace sees 32-bit programs' system calls; the eBPF tracepoints do not.
                    && (tracker.ia32_processes == 0 || settings.backend == Backend::Strace)
                    && !interrupted,
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                peak_rss_kib: own_peak_rss_kib(),
            },
            processes: sections.processes,
            files: sections.files,
            software: sections.software,
            data: sections.data,
            cells: sections.cells,
            dask_worker: self.dask_worker,
            tasks: sections.tasks,
            hosts: Vec::new(),
            repeat_of: None,
            missing_lookups: missing_lookups.iter().map(|path| manifest::display_bytes(path)).collect(),
        };
        let mut warnings = warnings;
        if let Some(path) = self.notebook.as_ref().filter(|_| !manifest.cells.is_empty()) {
            match Notebook::read(path) {
                Ok(notebook) => notebook.fill_cell_ids(&mut manifest.cells),
                Err(err) => warnings.push(format!("the cells keep no ids: {err}")),
            }
        }
        if let Some(reports) = &self.dask_reports {
            match merge::Reports::read_dir(reports) {
                Ok(reports) => {
                    let reports = merge::Reports { submitted_in: submissions, ..reports };
                    warnings.extend(merge::merge_workers(&mut manifest, reports))
                }
                Err(err) => {
                    warnings.push(format!("the Dask workers' audits could not be merged: {err}"));
                    manifest.stats.complete = false;
                }
            }
        }
        settings.redactor.redact_manifest(&mut manifest);
        let written = save(&manifest, &settings.output)?;
        if !settings.quiet {
            for warning in &warnings {
                eprintln!("reprotrace: warning: {warning}");
            }
            summary::print(&manifest, &written);
        }
        // A process concludes one audit (`run`, `attach`, `repeat`) and
        // exits soon after: its exit frees these at once, where freeing
        // them one by one (tens of thousands of paths, many allocated by
        // the index's thread) took an audit of `import numpy, pandas`
        // 1.3–1.8 ms after its manifest was written.
        std::mem::forget(software_index);
        std::mem::forget(manifest);
        Ok(status.filter(|_| !stopped_by_user))
    }
}

/// Refuses, before anything runs, an output the manifest could not be
/// written to, checked as `owner`, the user it is written for.
pub fn check_output(settings: &Settings, owner: Option<&Credentials>) -> anyhow::Result<()> {
    let _acting = ActingAs::maybe(owner).context("taking the invoking user's rights")?;
    Manifest::check_writable(&settings.output)?;
    Ok(())
}

/// Writes the manifest to `output`, or, when that fails at the end of an
/// audit (a full disk), where a failed write leaves it, saying where: the
/// audit is not lost. Returns where it went.
fn save(manifest: &Manifest, output: &Path) -> anyhow::Result<PathBuf> {
    let err = match manifest.write_atomically(output) {
        Ok(()) => return Ok(output.to_path_buf()),
        Err(err) => err,
    };
    let unsaved = manifest.write_unsaved().with_context(|| err.to_string())?;
    eprintln!("reprotrace: error: {err}; the manifest was saved to {} instead", unsaved.display());
    Ok(unsaved)
}

/// This process's peak resident set size, in KiB (`VmHWM`).
fn own_peak_rss_kib() -> u64 {
    procfs::process::Process::myself().and_then(|me| me.status()).ok().and_then(|status| status.vmhwm).unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_string()).unwrap_or_default()
}
