//! The user-side pipeline both backends feed: events → tracker → access logs
//! (the run's, and one per notebook cell), and at the end software
//! identification, data classification and the manifest's trace sections.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    time::SystemTime,
};

use crate::{
    access::AccessLog,
    classify::{self, FileState},
    event::{abi::AT_FDCWD, ArgvView, CellError, CellMarker, Event, ExistingProcess, Fact, MarkerPhase},
    fsaccess::Lstats,
    hash_cache::HashCache,
    image::{self, Image},
    jupyter,
    manifest::{self, CellSections, TaskContext, TaskSections, TraceSections},
    software::{self, IndexBuilder, IndexError, PathSink, SoftwareIndex},
    stale::{self, CellView},
    tracker::{FileOp, FileUse, Pid, ProcessRecord, Tracker, TrackerStats},
};

pub struct Pipeline {
    tracker: Tracker,
    log: AccessLog,
    /// One access log per notebook cell, indexed like the tracker's cells.
    cell_logs: Vec<AccessLog>,
    /// One access log per Dask task run, indexed like the tracker's.
    task_logs: Vec<AccessLog>,
    /// For each cell that ended, its files as it left them (by cell index).
    cell_states: HashMap<usize, HashMap<Vec<u8>, FileState>>,
    /// The END markers processed so far (their times), for whoever waits on one.
    ended_cells: HashSet<u64>,
    events: u64,
    /// Where new paths go so that software indexing starts before the run ends.
    software_paths: Option<PathSink>,
    /// What each exec'd file is, read once per (path, working directory).
    images: HashMap<(Vec<u8>, Vec<u8>), Image>,
    /// IPython kernels that started since [`Pipeline::take_started_kernels`]
    /// was last asked: their pids and connection files.
    started_kernels: Vec<(Pid, PathBuf)>,
    /// Show a progress line while the data is hashed.
    hashing: classify::Hashing,
}

/// The parts of the run an operation also belongs to.
#[derive(Clone, Copy)]
struct Scopes {
    cell: Option<usize>,
    dask_task: Option<usize>,
}

/// What the pipeline learnt, ready for the manifest.
pub struct PipelineOutput {
    pub sections: TraceSections,
    pub events: u64,
    pub tracker: TrackerStats,
    /// The root process as the trace saw it.
    pub root: Option<ProcessRecord>,
    /// What could not be read while identifying software.
    pub warnings: Vec<String>,
    /// The graphs the traced tree's Dask clients submitted: submission id →
    /// the execution count of the notebook cell the submitting process was
    /// running then (`None`: none). The first submission of an id counts.
    pub submissions: BTreeMap<String, Option<u64>>,
    /// Paths opens and stats found missing (a repeat's programs report them).
    pub missing_lookups: Vec<Vec<u8>>,
    /// The software index identification used.
    pub software_index: SoftwareIndex,
}

impl Pipeline {
    /// A pipeline following `root`, started by `ppid` in directory `cwd`.
    pub fn new(root: Pid, ppid: Option<Pid>, cwd: Vec<u8>) -> Self {
        let mut tracker = Tracker::new();
        tracker.add_root(root, ppid, cwd);
        Self::following(tracker)
    }

    fn following(tracker: Tracker) -> Self {
        Pipeline {
            tracker,
            log: AccessLog::new(),
            cell_logs: Vec::new(),
            task_logs: Vec::new(),
            cell_states: HashMap::new(),
            ended_cells: HashSet::new(),
            events: 0,
            software_paths: None,
            images: HashMap::new(),
            started_kernels: Vec::new(),
            hashing: classify::Hashing::default(),
        }
    }

    /// A pipeline following processes that were already running (a process
    /// may come several times, with threads found later).
    pub fn attached(existing: &[ExistingProcess]) -> Self {
        let mut tracker = Tracker::new();
        for process in existing {
            tracker.add_existing(process);
        }
        Self::following(tracker)
    }

    /// Sends every path the run uses, when first used, to `sink`.
    pub fn warm_up_software(&mut self, sink: PathSink) {
        self.software_paths = Some(sink);
    }

    /// Stops sending paths (the index builder finishes once no one sends).
    fn stop_software_warm_up(&mut self) {
        self.software_paths = None;
    }

    pub fn feed(&mut self, event: &Event) {
        self.events += 1;
        if let Fact::CellMarker(CellMarker { phase: MarkerPhase::End, time_ns, .. }) = &event.fact {
            self.tracker.apply(event);
            self.cell_ended(*time_ns);
            return;
        }
        let Some(FileUse { pid, cell, dask_task, namespace, op }) = self.tracker.apply(event) else { return };
        let scopes = Scopes { cell, dask_task };
        if let Some(namespace) = namespace {
            self.log.record_foreign(pid, namespace, op);
            return;
        }
        let image = match &op {
            FileOp::Exec { path } => Some(self.inspect(path, pid)),
            _ => None,
        };
        self.record(pid, scopes, op);
        if let Some(image) = image {
            let interpreters = image.interpreters();
            // The kernel maps the dynamic loader itself: no system call names it.
            for interpreter in interpreters.iter().chain(&image.elf_interpreter) {
                self.record(pid, scopes, FileOp::Exec { path: interpreter.clone() });
            }
            // A tracer at the syscall saw the arguments before the script
            // loader rewrote them: give the process the argv it really got.
            let loaded_argv = match &event.fact {
                Fact::Exec { dirfd, path, argv, argv_view: ArgvView::Requested, .. } if !interpreters.is_empty() => {
                    Some(image.loaded_argv(&kernel_filename(*dirfd, path), argv))
                }
                _ => None,
            };
            self.tracker.note_image(pid, interpreters, loaded_argv, image.ia32);
            if let Some(process) = self.tracker.processes().iter().rev().find(|process| process.pid == pid) {
                if let Some(connection_file) = jupyter::kernel_connection_file(&process.argv, &process.cwd) {
                    self.started_kernels.push((pid, connection_file));
                }
            }
        }
    }

    /// A cell ended: what it read and wrote is hashed now, as it left them
    /// (a later cell may change them).
    fn cell_ended(&mut self, time_ns: u64) {
        self.ended_cells.insert(time_ns);
        let Some(index) = self.tracker.cells().iter().rposition(|cell| cell.finished_ns == Some(time_ns)) else {
            return;
        };
        let Some(log) = self.cell_logs.get(index) else { return };
        let paths = log
            .iter()
            .filter(|(path, used)| {
                (used.read || used.written) && !used.directory && !used.gone && classify::may_be_cell_data(path)
            })
            .map(|(path, _)| path.to_vec());
        self.cell_states.insert(index, classify::states_now(paths, self.hashing.limit));
    }

    /// The cells that ended so far, what they read and wrote (with the
    /// hashes they saw and left) and their names, and which are stale now:
    /// what the `%reprotrace` magic shows (see [`crate::kernel_channel`]).
    pub fn cells_summary(&self) -> serde_json::Value {
        let views: Vec<(CellView, Option<&CellError>)> = self
            .tracker
            .cells()
            .iter()
            .enumerate()
            .filter_map(|(index, cell)| {
                let states = self.cell_states.get(&index)?;
                let mut view = CellView {
                    execution_count: cell.execution_count,
                    cell_id: cell.cell_id.clone(),
                    code_sha256: cell.code_sha256.clone(),
                    ..CellView::default()
                };
                for (path, used) in self.cell_logs.get(index).into_iter().flat_map(AccessLog::iter) {
                    let Some(state) = states.get(path) else { continue };
                    let entry = stale::FileSeen {
                        path: manifest::display_bytes(path),
                        sha256: state.sha256.clone(),
                        size: Some(state.size),
                        mtime: state.mtime.map(|mtime| humantime::format_rfc3339_seconds(mtime).to_string()),
                        over_hash_limit: state.over_hash_limit,
                        task: None,
                    };
                    match used.written {
                        true => view.outputs.push(entry),
                        false => view.inputs.push(entry),
                    }
                }
                let outcome = cell.outcome.as_ref();
                let names = outcome.and_then(|outcome| outcome.names.as_ref());
                view.defines = names.map(|names| names.defines.clone()).unwrap_or_default();
                view.uses = names.map(|names| names.uses.clone()).unwrap_or_default();
                Some((view, outcome.and_then(|outcome| outcome.error.as_ref())))
            })
            .collect();
        let cells: Vec<CellView> = views.iter().map(|(view, _)| view.clone()).collect();
        let current = |display: &str| stale::file_now(display, self.hashing.limit);
        let report = stale::judge(&cells, None, self.hashing.limit, &current);
        let paths = |files: &[stale::FileSeen]| files.iter().map(|file| file.path.clone()).collect::<Vec<_>>();
        let described: Vec<serde_json::Value> = views
            .iter()
            .map(|(view, error)| {
                serde_json::json!({
                    "execution_count": view.execution_count,
                    "cell_id": view.cell_id,
                    "inputs": paths(&view.inputs),
                    "outputs": paths(&view.outputs),
                    "defines": view.defines,
                    "uses": view.uses,
                    "error": error.map(|error| serde_json::json!({"ename": error.ename, "evalue": error.evalue})),
                })
            })
            .collect();
        serde_json::json!({"ok": true, "cells": described, "stale": report.stale, "notes": report.notes})
    }

    /// Whether the END marker of this time has been processed (and its
    /// cell's files hashed).
    pub fn has_ended_cell(&self, time_ns: u64) -> bool {
        self.ended_cells.contains(&time_ns)
    }

    /// The IPython kernels that started in the tree since the last call.
    pub fn take_started_kernels(&mut self) -> Vec<(Pid, PathBuf)> {
        std::mem::take(&mut self.started_kernels)
    }

    /// The cell hook was installed in process `pid`.
    pub fn mark_cell_hook(&mut self, pid: Pid) {
        self.tracker.mark_cell_hook(pid);
    }

    fn record(&mut self, pid: Pid, scopes: Scopes, op: FileOp) {
        for (logs, index) in [(&mut self.cell_logs, scopes.cell), (&mut self.task_logs, scopes.dask_task)] {
            if let Some(index) = index {
                if logs.len() <= index {
                    logs.resize_with(index + 1, AccessLog::new);
                }
                logs[index].record(pid, op.clone());
            }
        }
        match &mut self.software_paths {
            Some(sink) => self.log.record_noting_new(pid, op, &mut |path| sink.send(path)),
            None => self.log.record(pid, op),
        }
    }

    /// What the file `path` process `pid` exec'd is (read once per path and
    /// working directory, which relative `#!` interpreters are found from).
    fn inspect(&mut self, path: &[u8], pid: Pid) -> Image {
        let cwd = self.tracker.processes().iter().rev().find(|process| process.pid == pid).map(|process| &process.cwd);
        let key = (path.to_vec(), cwd.cloned().unwrap_or_default());
        if let Some(known) = self.images.get(&key) {
            return known.clone();
        }
        let image = image::inspect(path, &key.1);
        self.images.insert(key, image.clone());
        image
    }

    /// How the data is hashed: the size limit, and whether to show progress.
    pub fn hash_with(&mut self, hashing: classify::Hashing) {
        self.hashing = hashing;
    }

    /// Processes, paths and events so far, for the status line.
    pub fn progress(&self) -> (usize, usize, u64) {
        (self.tracker.processes().len(), self.log.len(), self.events)
    }

    /// Whether any followed task is still alive, as far as events tell.
    pub fn has_live_tasks(&self) -> bool {
        self.tracker.has_live_tasks()
    }

    /// Identifies software (with the index `index_builder` finishes; every
    /// path sink of it dropped), classifies the data (stat'ing files as
    /// they are now, once), for the run, each cell and each Dask task, and
    /// renders the sections; the tasks ran on `host`, in `worker` when it is
    /// a Dask worker.
    pub fn finish(
        mut self,
        rules: &classify::Rules,
        started_at: SystemTime,
        index_builder: IndexBuilder,
        host: &str,
        worker: Option<&str>,
    ) -> Result<PipelineOutput, IndexError> {
        self.stop_software_warm_up();
        // Every file the run read or wrote, as it is now: what software
        // identification and data classification ask of each (an exec'd
        // file's links are resolved whole, and it is software). The index's
        // thread is told to finish while they are asked about.
        let files = self.log.iter().filter(|(_, used)| !used.directory && !used.exec && (used.read || used.written));
        let (lstats, finishing) = Lstats::of(files.map(|(path, _)| path).collect(), || index_builder.finish(&self.log));
        let mut index = finishing.wait()?;
        let software = software::identify(&self.log, &mut index, &lstats);
        let mut data = classify::classify(&self.log, rules, &|path| software.owns(path), started_at, &lstats);
        let mut remembered = match self.hashing.rehash {
            true => HashCache::default(),
            false => HashCache::open(),
        };
        classify::hash_data(&mut data, None, self.hashing, &lstats, &mut remembered);
        let empty = AccessLog::new();
        // A cell's or task's own software and data, by the run's rules; its
        // files already hashed for the run are not read again.
        let mut scoped = |log: &AccessLog, states: Option<&HashMap<Vec<u8>, FileState>>| {
            let own_software = software::identify(log, &mut index, &lstats);
            let owned = |path: &[u8]| own_software.owns(path) || software.owns(path);
            let mut own_data = classify::classify(log, rules, &owned, started_at, &lstats);
            if let Some(states) = states {
                classify::describe_as(&mut own_data, states);
            }
            let hashing = classify::Hashing { report: false, ..self.hashing };
            classify::hash_data(&mut own_data, Some(&data), hashing, &lstats, &mut remembered);
            (own_software, own_data)
        };
        let cells: Vec<CellSections> = self
            .tracker
            .cells()
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                let (software, data) =
                    scoped(self.cell_logs.get(index).unwrap_or(&empty), self.cell_states.get(&index));
                CellSections { cell, software, data }
            })
            .collect();
        let processes = self.tracker.processes();
        let tasks: Vec<TaskSections> = self
            .tracker
            .dask_tasks()
            .iter()
            .enumerate()
            .map(|(index, task)| {
                let (software, data) = scoped(self.task_logs.get(index).unwrap_or(&empty), None);
                let started = processes.iter().filter(|process| process.dask_task == Some(index)).collect();
                TaskSections { task, processes: started, software, data }
            })
            .collect();
        // One that cannot be written costs the next audit time, nothing else
        // (as every cache: `crate::cache`).
        let _ = remembered.save();
        let mut submissions = BTreeMap::new();
        for submission in self.tracker.submissions() {
            let cell = submission.cell.and_then(|cell| self.tracker.cells().get(cell)).map(|cell| cell.execution_count);
            submissions.entry(submission.id.clone()).or_insert(cell);
        }
        Ok(PipelineOutput {
            submissions,
            missing_lookups: self.tracker.missing_lookups().iter().cloned().collect(),
            sections: manifest::trace_sections(
                processes,
                self.log,
                &software,
                &data,
                &cells,
                &TaskContext { tasks: &tasks, host, worker },
            ),
            events: self.events,
            tracker: self.tracker.stats(),
            root: processes.first().cloned(),
            warnings: software.problems.clone(),
            software_index: index,
        })
    }
}

/// The name the kernel gives an exec'd file (`bprm->filename`): the path as
/// passed, or through `/dev/fd/N` when it is relative to a descriptor.
fn kernel_filename(dirfd: i32, path: &[u8]) -> Vec<u8> {
    if path.starts_with(b"/") || dirfd == AT_FDCWD {
        return path.to_vec();
    }
    let mut filename = format!("/dev/fd/{dirfd}").into_bytes();
    if !path.is_empty() {
        filename.push(b'/');
        filename.extend_from_slice(path);
    }
    filename
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_filenames_are_named_as_the_kernel_names_them() {
        assert_eq!(kernel_filename(AT_FDCWD, b"./run.sh"), b"./run.sh");
        assert_eq!(kernel_filename(3, b"/bin/run.sh"), b"/bin/run.sh");
        assert_eq!(kernel_filename(3, b"run.sh"), b"/dev/fd/3/run.sh");
        assert_eq!(kernel_filename(3, b""), b"/dev/fd/3");
    }
}
