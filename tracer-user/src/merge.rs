//! Bringing a distributed run together: the manager's manifest (the run's own
//! audit) and the audits of the Dask workers that ran its tasks become one
//! manifest. The manager's sections stay as they are; the workers' go to
//! `hosts[]` (one entry per host, its workers' audits merged) and `tasks[]`.
//!
//! The workers' audits reach the run through a directory its Dask clients
//! fill when they close (python/reprotrace/dask.py): one `*.manifest.json` per
//! worker audit, one `*.unaudited.json` per worker that could not be audited
//! (and why), and `*.submitted.json`, the keys each client submitted and when
//! (and which of them a worker ran, and in which submission). Which notebook
//! cell submitted a key comes from the run's own trace: each submission's
//! marker, seen in the manager's event stream while that cell ran. Each client also leaves
//! `TAG.joined.json` when it takes part and `TAG.reported.json` once it has
//! reported: a client that joined and never reported lost its workers'
//! audits, which makes the run incomplete. `reprotrace merge` takes
//! manifests gathered by other means.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::manifest::{
    Access, Cell, Data, DataEntry, FileEntry, Host, HostWorker, Manifest, ManifestError, Process, PythonDistribution,
    Software, Stats, Task,
};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read the Dask workers' audits in {path}: {source}")]
    ReadDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path} is not a worker report reprotrace wrote: {source}")]
    Report { path: PathBuf, source: serde_json::Error },
    #[error("{path} was not written by a Dask worker's audit (it has no `dask_worker`): audit workers with `reprotrace attach --dask-worker ADDRESS`")]
    NotAWorker { path: PathBuf },
    #[error("no Dask host {host:?} in this manifest (its hosts: {known})")]
    NoSuchHost { host: String, known: String },
}

/// The manifest as one of its Dask hosts saw the run: that host's processes,
/// files, software and data in place of the run's own (for `diff --host`
/// and `export --host`).
pub fn host_view(manifest: &Manifest, host: &str) -> Result<Manifest, MergeError> {
    let Some(found) = manifest.hosts.iter().find(|candidate| candidate.host == host) else {
        let known: Vec<&str> = manifest.hosts.iter().map(|host| host.host.as_str()).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        return Err(MergeError::NoSuchHost { host: host.to_string(), known });
    };
    Ok(Manifest {
        host: found.host.clone(),
        stats: found.stats.clone(),
        processes: found.processes.clone(),
        files: found.files.clone(),
        software: found.software.clone(),
        data: found.data.clone(),
        cells: Vec::new(),
        tasks: manifest.tasks.iter().filter(|task| task.host == host).cloned().collect(),
        hosts: Vec::new(),
        ..manifest.clone()
    })
}

/// A worker the run's clients asked for an audit of, and did not get one.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Unaudited {
    pub host: String,
    pub address: String,
    pub name: Option<String>,
    pub reason: String,
}

/// The keys a client submitted, each with the time it was submitted
/// (nanoseconds since the Unix epoch).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Submitted {
    pub keys: BTreeMap<String, u64>,
    /// Those of them a worker ran to the end (to a result or an error) in
    /// its thread pool or on its event loop; `None` from a scheduler plugin
    /// too old to say. A task that never ran (its dependency failed, it was
    /// cancelled) is not expected to have a record.
    #[serde(default)]
    pub ran: Option<BTreeSet<String>>,
    /// The submission (Dask's `stimulus_id` of the `update-graph`) that
    /// first brought each key; empty from a scheduler plugin too old to say.
    #[serde(default)]
    pub submissions: BTreeMap<String, String>,
}

/// A client of the run that took part (`TAG.joined.json`), or that has
/// reported (`TAG.reported.json`): which, and what went wrong meanwhile.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientNote {
    /// The Dask client's id.
    pub client: String,
    /// The process it lives in.
    pub pid: u32,
    /// What it could not do, one line each (a plugin it could not
    /// register, audits it could not collect): work missing from the run.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// What the workers sent back.
#[derive(Debug, Default)]
pub struct Reports {
    pub workers: Vec<Manifest>,
    pub unaudited: Vec<Unaudited>,
    /// `None`: the tasks' submitters are unknown, every task is the run's.
    pub submitted: Option<Submitted>,
    /// The clients that took part, by tag (the reports' file name stem).
    pub joined: BTreeMap<String, ClientNote>,
    /// The clients that reported, by tag.
    pub reported: BTreeMap<String, ClientNote>,
    /// What the run's own trace saw of its clients' submissions (their
    /// markers): submission id → the execution count of the cell the
    /// submitting process was running (`None`: none). Filled by the audit,
    /// not read from the directory.
    pub submitted_in: BTreeMap<String, Option<u64>>,
}

impl Reports {
    /// Reads the reports the run's clients left in `dir` (see the module
    /// documentation), in file name order.
    pub fn read_dir(dir: &Path) -> Result<Reports, MergeError> {
        let read_dir = |source| MergeError::ReadDir { path: dir.to_path_buf(), source };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_dir)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .map_err(read_dir)?;
        paths.sort();
        let mut reports = Reports::default();
        let mut submissions: Vec<Submitted> = Vec::new();
        for path in paths {
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            if name.ends_with(".manifest.json") {
                reports.workers.push(worker_manifest(&path)?);
            } else if name.ends_with(".unaudited.json") {
                reports.unaudited.push(read_json(&path)?);
            } else if name.ends_with(".submitted.json") {
                submissions.push(read_json(&path)?);
            } else if let Some(tag) = name.strip_suffix(".joined.json") {
                reports.joined.insert(tag.to_string(), read_json(&path)?);
            } else if let Some(tag) = name.strip_suffix(".reported.json") {
                reports.reported.insert(tag.to_string(), read_json(&path)?);
            }
        }
        if !submissions.is_empty() {
            // Which keys ran is known only if every client's scheduler plugin said.
            let ran = submissions
                .iter()
                .all(|submitted| submitted.ran.is_some())
                .then(|| submissions.iter().flat_map(|submitted| submitted.ran.iter().flatten().cloned()).collect());
            let mut keys = BTreeMap::new();
            let mut by_submission = BTreeMap::new();
            for submitted in submissions {
                keys.extend(submitted.keys);
                by_submission.extend(submitted.submissions);
            }
            reports.submitted = Some(Submitted { keys, ran, submissions: by_submission });
        }
        Ok(reports)
    }

    /// Worker manifests given by path (`reprotrace merge`).
    pub fn from_manifests(paths: &[PathBuf]) -> Result<Reports, MergeError> {
        let workers = paths.iter().map(|path| worker_manifest(path)).collect::<Result<_, _>>()?;
        Ok(Reports { workers, ..Reports::default() })
    }
}

fn worker_manifest(path: &Path) -> Result<Manifest, MergeError> {
    let manifest = Manifest::read(path)?;
    if manifest.dask_worker.is_none() {
        return Err(MergeError::NotAWorker { path: path.to_path_buf() });
    }
    Ok(manifest)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, MergeError> {
    let text = std::fs::read(path).map_err(|source| MergeError::ReadDir { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&text).map_err(|source| MergeError::Report { path: path.to_path_buf(), source })
}

/// Adds the workers' audits to the run's manifest: `hosts[]`, `tasks[]` (only
/// the keys the run submitted, when that is known, each with the notebook cell
/// that submitted it), and statistics for the whole. Returns warnings for the
/// summary: unaudited workers, packages whose versions differ between hosts.
pub fn merge_workers(run: &mut Manifest, reports: Reports) -> Vec<String> {
    let Reports { workers, unaudited, submitted, joined, reported, submitted_in } = reports;
    let mut warnings = Vec::new();
    let mut hosts: BTreeMap<String, Vec<&Manifest>> = BTreeMap::new();
    for worker in &workers {
        hosts.entry(worker.host.clone()).or_default().push(worker);
    }
    for missing in &unaudited {
        hosts.entry(missing.host.clone()).or_default();
        warnings.push(format!(
            "Dask worker {} on {} was not audited: {}",
            missing.name.as_deref().unwrap_or(&missing.address),
            missing.host,
            missing.reason
        ));
    }
    let mut merged_hosts: Vec<Host> = hosts
        .into_iter()
        .map(|(host, audits)| {
            let missing: Vec<&Unaudited> = unaudited.iter().filter(|missing| missing.host == host).collect();
            merge_host(host, &audits, &missing)
        })
        .collect();
    merged_hosts.sort_by(|a, b| a.host.cmp(&b.host));

    // The run's own tasks (workers it started itself, a LocalCluster's) first.
    let mut tasks: Vec<Task> = std::mem::take(&mut run.tasks)
        .into_iter()
        .chain(workers.iter().flat_map(|worker| worker.tasks.iter().cloned()))
        .filter(|task| submitted.as_ref().is_none_or(|submitted| submitted.keys.contains_key(&task.key)))
        .collect();
    let mut by_clock: Vec<&str> = Vec::new();
    if let Some(submitted) = &submitted {
        for task in &mut tasks {
            (task.cell, task.cell_by_clock) =
                match submitted.submissions.get(&task.key).and_then(|id| submitted_in.get(id)) {
                    // Exact: the cell the submitting process was running when
                    // the run's own trace saw the submission.
                    Some(cell) => (*cell, false),
                    // No marker for it: the scheduler's clock against the manager's.
                    None => {
                        let cell = submitted.keys.get(&task.key).and_then(|at| submitting_cell(&run.cells, *at));
                        if !run.cells.is_empty() {
                            by_clock.push(&task.key);
                        }
                        (cell, cell.is_some())
                    }
                };
        }
    }
    let clock_warning = clock_matched(&by_clock);
    tasks.sort_by(|a, b| (&a.started_at, &a.key, &a.host, a.thread).cmp(&(&b.started_at, &b.key, &b.host, b.thread)));
    warnings.extend(clock_warning);

    let mut missing_work = missing_clients(&joined, &reported);
    if let Some(line) = submitted.as_ref().and_then(|submitted| tasks_without_record(submitted, &tasks)) {
        missing_work.push(line);
    }
    run.stats = summed_stats(&run.stats, merged_hosts.iter().map(|host| &host.stats));
    run.stats.complete &= unaudited.is_empty() && missing_work.is_empty();
    warnings.extend(missing_work.iter().cloned());
    run.stats.missing_work.extend(missing_work);
    warnings.extend(version_differences(&run.host, &run.software, &merged_hosts));
    run.tasks = tasks;
    run.hosts = merged_hosts;
    warnings
}

/// One line per client of the run whose workers' audits are missing, in
/// part (what it could not do) or whole (it took part and never reported).
fn missing_clients(joined: &BTreeMap<String, ClientNote>, reported: &BTreeMap<String, ClientNote>) -> Vec<String> {
    let mut lines = Vec::new();
    for (tag, client) in joined {
        let who = format!("Dask client {} (process {})", client.client, client.pid);
        lines.extend(client.problems.iter().map(|problem| format!("{who}: {problem}")));
        match reported.get(tag) {
            Some(report) => lines.extend(report.problems.iter().map(|problem| format!("{who}: {problem}"))),
            None => lines.push(format!(
                "{who} took part but never reported its workers' audits: it was not closed (client.close()), \
                 or its process ended first"
            )),
        }
    }
    lines
}

/// How many keys the run submitted and a worker ran have no task record, in
/// one line naming a few; `None` when every one has one, or when which ran
/// is unknown.
fn tasks_without_record(submitted: &Submitted, tasks: &[Task]) -> Option<String> {
    /// Keys named in the line; the rest are counted.
    const NAMED: usize = 3;
    let recorded: BTreeSet<&str> = tasks.iter().map(|task| task.key.as_str()).collect();
    let ran = submitted.ran.as_ref()?;
    let missing: Vec<&str> = ran
        .iter()
        .map(String::as_str)
        .filter(|key| submitted.keys.contains_key(*key) && !recorded.contains(key))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut named = missing.iter().take(NAMED).copied().collect::<Vec<_>>().join(", ");
    if missing.len() > NAMED {
        named.push_str(&format!(" and {} more", missing.len() - NAMED));
    }
    Some(format!(
        "{} of the {} Dask tasks the run submitted and a worker ran have no record ({named}): coroutine tasks, \
         tasks run while a worker's audit restarted, or on a worker not audited",
        missing.len(),
        ran.iter().filter(|key| submitted.keys.contains_key(*key)).count()
    ))
}

/// One line when tasks of a notebook run were put in cells by the
/// scheduler's clock, their submission unseen in the run's own trace.
fn clock_matched(keys: &[&str]) -> Option<String> {
    /// Keys named in the line; the rest are counted.
    const NAMED: usize = 3;
    if keys.is_empty() {
        return None;
    }
    let mut named = keys.iter().take(NAMED).copied().collect::<Vec<_>>().join(", ");
    if keys.len() > NAMED {
        named.push_str(&format!(" and {} more", keys.len() - NAMED));
    }
    Some(format!(
        "{} Dask task{} ({named}) {} matched to notebook cells by the scheduler's clock, not by the run's own record of \
         the submission (a client without reprotrace's submission markers, or a marker lost): a task submitted \
         near a cell boundary may be in the wrong cell if the clocks differ (`cell_by_clock` in tasks[])",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        if keys.len() == 1 { "was" } else { "were" },
    ))
}

/// The notebook cell that was running at `at` (nanoseconds since the epoch).
fn submitting_cell(cells: &[Cell], at: u64) -> Option<u64> {
    let parse = |text: &str| humantime::parse_rfc3339(text).ok();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(at);
    // Cell times are to the millisecond: a key submitted in a cell's last
    // millisecond still belongs to it.
    let slack = std::time::Duration::from_millis(1);
    cells
        .iter()
        .rfind(|cell| {
            let started = parse(&cell.started_at);
            let finished = cell.finished_at.as_deref().and_then(parse);
            started.is_some_and(|started| started <= at) && finished.is_none_or(|finished| at <= finished + slack)
        })
        .map(|cell| cell.execution_count)
}

fn merge_host(host: String, audits: &[&Manifest], missing: &[&Unaudited]) -> Host {
    let mut workers: Vec<HostWorker> = audits
        .iter()
        .filter_map(|audit| {
            let worker = audit.dask_worker.as_ref()?;
            Some(HostWorker {
                address: worker.address.clone(),
                name: worker.name.clone(),
                pids: roots(&audit.processes),
                unaudited: None,
            })
        })
        .chain(missing.iter().map(|missing| HostWorker {
            address: missing.address.clone(),
            name: missing.name.clone(),
            pids: Vec::new(),
            unaudited: Some(missing.reason.clone()),
        }))
        .collect();
    workers.sort_by(|a, b| a.address.cmp(&b.address));
    let mut stats =
        summed_stats(&Stats { complete: true, ..Stats::default() }, audits.iter().map(|audit| &audit.stats));
    stats.complete &= missing.is_empty() && !audits.is_empty();
    // The host's workers were audited side by side.
    stats.duration_ms = audits.iter().map(|audit| audit.stats.duration_ms).max().unwrap_or(0);
    stats.peak_rss_kib = audits.iter().map(|audit| audit.stats.peak_rss_kib).max().unwrap_or(0);
    let mut processes: Vec<Process> = audits.iter().flat_map(|audit| audit.processes.iter().cloned()).collect();
    processes.sort_by_key(|process| process.pid);
    Host {
        host,
        workers,
        stats,
        processes,
        files: merge_files(audits.iter().flat_map(|audit| audit.files.iter())),
        software: merge_software(audits.iter().map(|audit| &audit.software)),
        data: merge_data(audits.iter().map(|audit| &audit.data)),
    }
}

/// The processes an audit followed from the start: those whose parent it did not follow.
fn roots(processes: &[Process]) -> Vec<u32> {
    let pids: BTreeSet<u32> = processes.iter().map(|process| process.pid).collect();
    processes
        .iter()
        .filter(|process| process.ppid.is_none_or(|ppid| !pids.contains(&ppid)))
        .map(|process| process.pid)
        .collect()
}

/// The statistics of `base` with the counters of `parts` added: complete
/// only if every part is; `base`'s duration and memory.
fn summed_stats<'a>(base: &Stats, parts: impl Iterator<Item = &'a Stats>) -> Stats {
    parts.fold(base.clone(), |whole, part| Stats {
        events: whole.events + part.events,
        lost_events: whole.lost_events + part.lost_events,
        untracked_children: whole.untracked_children + part.untracked_children,
        malformed_events: whole.malformed_events + part.malformed_events,
        unresolved_paths: whole.unresolved_paths + part.unresolved_paths,
        truncated_argvs: whole.truncated_argvs + part.truncated_argvs,
        ia32_processes: whole.ia32_processes + part.ia32_processes,
        unseen_io_uring_rings: whole.unseen_io_uring_rings + part.unseen_io_uring_rings,
        interrupted: whole.interrupted || part.interrupted,
        missing_work: whole.missing_work.iter().chain(&part.missing_work).cloned().collect(),
        complete: whole.complete && part.complete,
        ..whole
    })
}

/// One entry per path: accesses combined, processes together; deleted only
/// if every audit saw it go.
fn merge_files<'a>(files: impl Iterator<Item = &'a FileEntry>) -> Vec<FileEntry> {
    let mut merged: BTreeMap<(String, Option<u32>), FileEntry> = BTreeMap::new();
    for file in files {
        match merged.get_mut(&(file.path.clone(), file.namespace)) {
            Some(entry) => {
                entry.access = combined_access(entry.access, file.access);
                entry.deleted &= file.deleted;
                entry.pids.extend(&file.pids);
                entry.pids.sort_unstable();
                entry.pids.dedup();
            }
            None => {
                merged.insert((file.path.clone(), file.namespace), file.clone());
            }
        }
    }
    merged.into_values().collect()
}

fn combined_access(a: Access, b: Access) -> Access {
    let reads = |access| matches!(access, Access::Read | Access::ReadWrite);
    let writes = |access| matches!(access, Access::Write | Access::ReadWrite);
    match (reads(a) || reads(b), writes(a) || writes(b)) {
        (true, true) => Access::ReadWrite,
        (false, true) => Access::Write,
        _ if a == Access::Exec || b == Access::Exec => Access::Exec,
        (true, false) => Access::Read,
        (false, false) => Access::Metadata,
    }
}

fn merge_software<'a>(parts: impl Iterator<Item = &'a Software>) -> Software {
    let mut python: BTreeMap<(String, String, String), PythonDistribution> = BTreeMap::new();
    let mut software = Software::default();
    for part in parts {
        for distribution in &part.python {
            let key = (distribution.name.to_lowercase(), distribution.version.clone(), distribution.location.clone());
            python
                .entry(key)
                .and_modify(|known| {
                    known.files_used += distribution.files_used;
                    known.files.extend(distribution.files.iter().cloned());
                    known.files.sort();
                    known.files.dedup();
                })
                .or_insert_with(|| distribution.clone());
        }
        software.interpreters.extend(part.interpreters.iter().cloned());
        software.system_packages.extend(part.system_packages.iter().cloned());
        software.executables.extend(part.executables.iter().cloned());
        software.shared_libraries.extend(part.shared_libraries.iter().cloned());
    }
    software.python = python.into_values().collect();
    software.interpreters.sort_by(|a, b| a.path.cmp(&b.path));
    software.interpreters.dedup();
    software.system_packages.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    software.system_packages.dedup();
    for files in [&mut software.executables, &mut software.shared_libraries] {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup();
    }
    software
}

/// One entry per path; of two descriptions of one file, the later one (the
/// audits ended at different times).
fn merge_data<'a>(parts: impl Iterator<Item = &'a Data>) -> Data {
    let mut inputs: BTreeMap<String, DataEntry> = BTreeMap::new();
    let mut outputs: BTreeMap<String, DataEntry> = BTreeMap::new();
    for part in parts {
        for (merged, entries) in [(&mut inputs, &part.inputs), (&mut outputs, &part.outputs)] {
            for entry in entries {
                match merged.get(&entry.path) {
                    Some(known) if known.mtime >= entry.mtime => {}
                    _ => {
                        merged.insert(entry.path.clone(), entry.clone());
                    }
                }
            }
        }
    }
    // A file one worker read and another wrote is the run's output.
    inputs.retain(|path, _| !outputs.contains_key(path));
    Data { inputs: inputs.into_values().collect(), outputs: outputs.into_values().collect() }
}

/// One line per Python distribution found at different versions on
/// different worker hosts, or on the manager (the run's own software, on
/// `manager_host`) and its workers: the usual Dask mismatch, where a task
/// unpickles what the manager pickled with another version.
fn version_differences(manager_host: &str, manager: &Software, hosts: &[Host]) -> Vec<String> {
    let manager_label = format!("the manager ({manager_host})");
    // Distribution names are compared as pip does, whatever their spelling.
    let mut versions: BTreeMap<String, (String, BTreeMap<String, Vec<String>>)> = BTreeMap::new();
    let mut note = |name: &str, version: &str, place: &str| {
        let (_, by_version) = versions
            .entry(name.to_lowercase().replace(['_', '.'], "-"))
            .or_insert_with(|| (name.to_string(), BTreeMap::new()));
        let places = by_version.entry(version.to_string()).or_default();
        if !places.iter().any(|known| known == place) {
            places.push(place.to_string());
        }
    };
    for distribution in &manager.python {
        note(&distribution.name, &distribution.version, &manager_label);
    }
    for host in hosts {
        for distribution in &host.software.python {
            note(&distribution.name, &distribution.version, &host.host);
        }
    }
    versions
        .into_values()
        .filter(|(_, by_version)| by_version.len() > 1)
        .map(|(name, by_version)| {
            let with_manager = by_version.values().flatten().any(|place| *place == manager_label);
            let places: Vec<String> =
                by_version.into_iter().map(|(version, places)| format!("{version} on {}", places.join(", "))).collect();
            let between = if with_manager { "the manager and its workers" } else { "hosts" };
            format!("{name} differs between {between}: {}", places.join("; "))
        })
        .collect()
}

#[cfg(test)]
mod tests;
