//! What every audit shares, whether it launched the command (`run`) or joined
//! running processes (`attach`): its conclusion — the pipeline's results
//! assembled into a manifest, written atomically even when the audit was cut
//! short, and summarised.

mod settings;
mod summary;

use std::{
    path::PathBuf,
    time::{Instant, SystemTime},
};

pub use settings::{Backend, Settings};

use anyhow::Context;

use crate::{
    event::WaitStatus,
    launch::Credentials,
    manifest::{self, DaskWorker, Manifest, OsRelease, Stats, SCHEMA_ID},
    merge,
    notebook::Notebook,
    pipeline::{Pipeline, PipelineOutput},
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
    started_at: SystemTime,
    clock: Instant,
    /// The software index, built while the audit runs.
    software_index: IndexBuilder,
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
}

impl Audit {
    pub fn start(command: Vec<String>, cwd: Vec<u8>, owner: Option<Credentials>) -> Self {
        Audit {
            command,
            cwd,
            owner,
            dask_worker: None,
            dask_reports: None,
            notebook: None,
            started_at: SystemTime::now(),
            clock: Instant::now(),
            software_index: IndexBuilder::start(),
        }
    }

    /// Where a pipeline sends the paths it sees, to index their software early.
    pub fn software_paths(&self) -> PathSink {
        self.software_index.sink()
    }

    /// Assembles, writes and summarises the manifest; returns the command's
    /// status (`None` for an attached tree, or when no event told it).
    pub fn conclude(self, settings: &Settings, traced: Traced) -> anyhow::Result<Option<WaitStatus>> {
        let duration = self.clock.elapsed();
        let finished_at = SystemTime::now();
        let Traced { mut pipeline, root_status, counters, interrupted } = traced;
        pipeline.stop_software_warm_up();
        let mut software_index = self.software_index.finish()?;
        let host = hostname();
        let worker = self.dask_worker.as_ref().map(|worker| worker.address.as_str());
        // From here on, what is read, hashed and written for the user is
        // read, hashed and written with the user's rights.
        let _acting = ActingAs::maybe(self.owner.as_ref()).context("taking the invoking user's rights")?;
        let PipelineOutput { sections, events, tracker, root, warnings } =
            pipeline.finish(&settings.rules, self.started_at, &mut software_index, &host, worker);
        // The command's status, for `run`; an attached tree has no one command.
        let status = root.filter(|root| !root.pre_existing).and_then(|root| root.status).or(root_status);
        let Counters { lost_events, untracked_children, malformed_events, sees_io_uring } = counters;
        let unseen_io_uring_rings = if sees_io_uring { 0 } else { tracker.io_uring_setups };
        let malformed_events = malformed_events + tracker.unknown_tasks;
        let mut manifest = Manifest {
            schema: SCHEMA_ID.to_string(),
            backend: settings.backend.name().to_string(),
            command: self.command,
            cwd: manifest::display_bytes(&self.cwd),
            host,
            os: OsRelease::of_this_host(),
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
                complete: lost_events == 0
                    && untracked_children == 0
                    && malformed_events == 0
                    && tracker.truncated_argvs == 0
                    && unseen_io_uring_rings == 0
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
                Ok(reports) => warnings.extend(merge::merge_workers(&mut manifest, reports)),
                Err(err) => {
                    warnings.push(format!("the Dask workers' audits could not be merged: {err}"));
                    manifest.stats.complete = false;
                }
            }
        }
        manifest.write_atomically(&settings.output)?;
        if !settings.quiet {
            for warning in &warnings {
                eprintln!("reprotrace: warning: {warning}");
            }
            summary::print(&manifest, &settings.output);
        }
        Ok(status)
    }
}

/// This process's peak resident set size, in KiB (`VmHWM`).
fn own_peak_rss_kib() -> u64 {
    procfs::process::Process::myself().and_then(|me| me.status()).ok().and_then(|status| status.vmhwm).unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_string()).unwrap_or_default()
}
