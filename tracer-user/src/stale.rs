//! `reprotrace stale`: which notebook cells would now compute something else
//! than in the audited run.
//!
//! A cell is stale when a file it read has other contents now than it had
//! when the cell read it (or is gone), when its source differs from the
//! notebook's (given one), or when it depends on a stale cell: it reads a file
//! that cell wrote, or a name that cell defined (the latest earlier writer or
//! definer). A file the run's own later cells changed is not staleness: a
//! re-run from the top would read it as they left it, which is said apart.
//! The Dask tasks a cell submitted (`tasks[].cell`, in a run merged with its
//! workers' audits) compute for it: what they read and wrote is the cell's.
//!
//! Files are compared by hash when both the run and `stale` could hash them.
//! A file one of them did not hash (over the hash limit, unreadable) is
//! compared by size and modification time, as the manifest records them; when
//! even those cannot decide, `stale` says it cannot tell rather than claim a
//! change.

use std::{collections::BTreeMap, os::unix::fs::MetadataExt};

use serde::Serialize;

use crate::{
    classify,
    manifest::{self, Cell, DataEntry, Manifest, Task},
    notebook::Notebook,
    units,
};

/// A cell that would compute something else now, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaleCell {
    pub execution_count: u64,
    pub cell_id: Option<String>,
    /// One sentence per reason, e.g. "it read /data/x.csv, which changed since the run".
    pub reasons: Vec<String>,
}

/// What `stale` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StaleReport {
    pub stale: Vec<StaleCell>,
    /// What is not staleness but worth knowing: files the run's own later
    /// cells changed, which a re-run from the top would read as they left
    /// them; files compared by size and modification time only, or not at all.
    pub notes: Vec<String>,
}

impl StaleReport {
    /// Adds a note, once.
    fn note(&mut self, text: String) {
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }
}

/// A file as a cell saw or left it: the manifest's description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSeen {
    /// As the manifest spells it.
    pub path: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// RFC 3339 UTC to the second, as the manifest records it.
    pub mtime: Option<String>,
    /// The audit did not hash it: larger than its hash limit.
    pub over_hash_limit: bool,
    /// Used by a Dask task the cell submitted, not by the cell's kernel:
    /// which ("Dask task KEY on HOST").
    pub task: Option<String>,
}

impl FileSeen {
    pub fn of(entry: &DataEntry) -> FileSeen {
        FileSeen {
            path: entry.path.clone(),
            sha256: entry.sha256.clone(),
            size: entry.size,
            mtime: entry.mtime.clone(),
            over_hash_limit: entry.over_hash_limit,
            task: None,
        }
    }

    /// Who read it, for a reason: "it" (the cell), or the cell's task.
    fn reader(&self) -> String {
        match &self.task {
            Some(task) => format!("its {task}"),
            None => "it".to_string(),
        }
    }

    /// The same file, described the same way.
    fn same_description(&self, other: &FileSeen) -> bool {
        (&self.path, &self.sha256, self.size, &self.mtime) == (&other.path, &other.sha256, other.size, &other.mtime)
    }
}

/// A file as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileNow {
    Gone,
    /// It may be there, but cannot be looked at (a permission): why.
    Unreachable(String),
    Present {
        size: u64,
        /// RFC 3339 UTC to the second, as manifests record modification times.
        mtime: Option<String>,
        /// `None`: unreadable, or over the hash limit.
        sha256: Option<String>,
        /// Larger than the hash limit `stale` was given: not hashed.
        over_hash_limit: bool,
    },
}

/// The file the manifest spells `display` as it is now, hashed when it is
/// not larger than `hash_limit` (`None`: hash whatever its size).
pub fn file_now(display: &str, hash_limit: Option<u64>) -> FileNow {
    let Some(path) = manifest::bytes_of_display(display) else {
        return FileNow::Unreachable("its path in the manifest is malformed".to_string());
    };
    let metadata = match crate::fsaccess::metadata(&path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return FileNow::Gone,
        Err(err) => return FileNow::Unreachable(err.to_string()),
    };
    let over_hash_limit = hash_limit.is_some_and(|limit| metadata.size() > limit);
    FileNow::Present {
        size: metadata.size(),
        mtime: metadata.modified().ok().map(|mtime| humantime::format_rfc3339_seconds(mtime).to_string()),
        sha256: if over_hash_limit { None } else { classify::sha256_of(&path) },
        over_hash_limit,
    }
}

/// How a file the run saw compares with the file now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Comparison {
    /// The same hash.
    Same,
    /// Not hashed on one side (why), the same size and modification time.
    SameSizeAndTime(String),
    /// Other contents: how it shows ("" when the hashes differ).
    Changed(String),
    /// Not hashed on one side, the same size but another modification time:
    /// modified, perhaps to the same contents (how it shows).
    Modified(String),
    Gone,
    /// Neither hashes nor size and time can say: why.
    CannotTell(String),
}

/// Why a file was not hashed on one side or the other, for the notes.
fn unhashed_because(seen: &FileSeen, now: &FileNow, hash_limit: Option<u64>) -> String {
    let limit = hash_limit.map_or_else(|| "none".to_string(), units::human_size);
    match now {
        _ if seen.over_hash_limit => "it was over the audit's hash limit".to_string(),
        _ if seen.sha256.is_none() => "the audit could not hash it".to_string(),
        FileNow::Present { over_hash_limit: true, .. } => {
            format!("it is over the hash limit ({limit}, --hash-limit none hashes it)")
        }
        FileNow::Present { sha256: None, .. } => "it cannot be read now".to_string(),
        _ => "it was not hashed".to_string(),
    }
}

fn compare(seen: &FileSeen, now: &FileNow, hash_limit: Option<u64>) -> Comparison {
    let (size, mtime, sha256) = match now {
        // Whatever the run could or could not hash, a file gone is a change.
        FileNow::Gone => return Comparison::Gone,
        FileNow::Unreachable(why) => return Comparison::CannotTell(format!("it cannot be looked at now: {why}")),
        FileNow::Present { size, mtime, sha256, .. } => (*size, mtime, sha256),
    };
    if let (Some(then), Some(now)) = (&seen.sha256, sha256) {
        return if then == now { Comparison::Same } else { Comparison::Changed(String::new()) };
    }
    let unhashed = unhashed_because(seen, now, hash_limit);
    if let Some(then) = seen.size.filter(|then| *then != size) {
        return Comparison::Changed(format!(
            "its size went from {then} to {size} bytes; {unhashed}, so it was compared by size and modification time"
        ));
    }
    match (&seen.mtime, mtime) {
        (Some(then), Some(now)) if then != now => Comparison::Modified(format!(
            "it was modified at {now}, not {then} as recorded; {unhashed}, so it was compared by size and \
             modification time, and whether its contents differ cannot be told"
        )),
        (Some(_), Some(_)) if seen.size.is_some() => Comparison::SameSizeAndTime(unhashed),
        _ => Comparison::CannotTell(format!("{unhashed}, and the manifest records no size and modification time")),
    }
}

/// A cell as staleness sees it: what it read and wrote (with the
/// descriptions of the files it saw and left), the names it defined and
/// used, and its source's hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellView {
    pub execution_count: u64,
    pub cell_id: Option<String>,
    pub code_sha256: String,
    pub inputs: Vec<FileSeen>,
    pub outputs: Vec<FileSeen>,
    pub defines: Vec<String>,
    pub uses: Vec<String>,
}

impl CellView {
    /// The cell, and what the Dask tasks it submitted read and wrote: a task
    /// computes for the cell that submitted it (as the report's graph draws).
    /// A file several of them read alike is listed once, by its first reader.
    pub fn with_tasks<'a>(cell: &Cell, tasks: impl Iterator<Item = &'a Task>) -> CellView {
        let mut view = CellView::of(cell);
        for task in tasks {
            let label = format!("Dask task {} on {}", task.key, task.host);
            for (files, entries) in [(&mut view.inputs, &task.data.inputs), (&mut view.outputs, &task.data.outputs)] {
                for entry in entries {
                    let seen = FileSeen { task: Some(label.clone()), ..FileSeen::of(entry) };
                    if !files.iter().any(|known| known.same_description(&seen)) {
                        files.push(seen);
                    }
                }
            }
        }
        view
    }

    pub fn of(cell: &Cell) -> CellView {
        let files = |entries: &[DataEntry]| entries.iter().map(FileSeen::of).collect();
        let names = cell.names.as_ref();
        CellView {
            execution_count: cell.execution_count,
            cell_id: cell.cell_id.clone(),
            code_sha256: cell.code_sha256.clone(),
            inputs: files(&cell.data.inputs),
            outputs: files(&cell.data.outputs),
            defines: names.map(|names| names.defines.clone()).unwrap_or_default(),
            uses: names.map(|names| names.uses.clone()).unwrap_or_default(),
        }
    }
}

/// The stale cells of a manifest's run; `current` describes a file as it is
/// now (see [`file_now`]), hashed up to `hash_limit`; `notebook`, if given,
/// is the notebook now.
pub fn stale_cells(
    manifest: &Manifest,
    notebook: Option<&Notebook>,
    hash_limit: Option<u64>,
    current: &dyn Fn(&str) -> FileNow,
) -> StaleReport {
    let cells: Vec<CellView> = manifest
        .cells
        .iter()
        .enumerate()
        .map(|(index, cell)| {
            let submitted = manifest.tasks.iter().filter(|task| task.submitting_cell(&manifest.cells) == Some(index));
            CellView::with_tasks(cell, submitted)
        })
        .collect();
    let sources = notebook.map(|notebook| changed_sources(&cells, notebook));
    judge(&cells, sources.as_deref(), hash_limit, current)
}

/// For each cell, why its source no longer is the notebook's, if it is not:
/// a cell with an id is compared with the notebook's cell of that id, one
/// without with the notebook's code cell at its position.
fn changed_sources(cells: &[CellView], notebook: &Notebook) -> Vec<Option<String>> {
    cells
        .iter()
        .enumerate()
        .map(|(position, cell)| {
            let counterpart = match &cell.cell_id {
                Some(id) => notebook.cells.iter().find(|candidate| candidate.id.as_deref() == Some(id.as_str())),
                None => notebook.cells.get(position),
            };
            match counterpart {
                None => Some("its cell is no longer in the notebook".to_string()),
                Some(now) if now.source_sha256 != cell.code_sha256 => {
                    Some("its source changed in the notebook".to_string())
                }
                Some(_) => None,
            }
        })
        .collect()
}

/// Decides, cell by cell in run order (so that staleness propagates).
/// `hash_limit` is the one `current` hashed up to, for the notes.
pub fn judge(
    cells: &[CellView],
    sources: Option<&[Option<String>]>,
    hash_limit: Option<u64>,
    current: &dyn Fn(&str) -> FileNow,
) -> StaleReport {
    let mut report = StaleReport::default();
    let mut stale = vec![false; cells.len()];
    // Look once per path: several cells may read one file.
    let mut now: BTreeMap<&str, FileNow> = BTreeMap::new();
    for (index, cell) in cells.iter().enumerate() {
        let mut reasons = Vec::new();
        if let Some(reason) = sources.and_then(|sources| sources.get(index).cloned().flatten()) {
            reasons.push(reason);
        }
        for seen in &cell.inputs {
            let path = seen.path.as_str();
            let file = now.entry(path).or_insert_with(|| current(path)).clone();
            let comparison = compare(seen, &file, hash_limit);
            match &comparison {
                Comparison::Same => continue,
                Comparison::SameSizeAndTime(unhashed) => {
                    report.note(format!("{path} was compared by size and modification time, unchanged: {unhashed}"));
                    continue;
                }
                Comparison::CannotTell(why) => {
                    report.note(format!(
                        "cannot tell whether {path}, which cell {} read, changed since the run: {why}",
                        label(cell)
                    ));
                    continue;
                }
                Comparison::Changed(_) | Comparison::Modified(_) | Comparison::Gone => {}
            }
            // The last later cell that wrote it, and what it left.
            let rewritten = cells[index + 1..]
                .iter()
                .rev()
                .find_map(|later| later.outputs.iter().find(|written| written.path == path).map(|left| (later, left)));
            let left_as_now = rewritten.filter(|(_, left)| {
                matches!(compare(left, &file, hash_limit), Comparison::Same | Comparison::SameSizeAndTime(_))
            });
            if let Some((later, _)) = left_as_now {
                report.note(
                    format!(
                        "cell {} read {path} before cell {} of the run changed it: a re-run from the top reads what cell {} wrote",
                        label(cell),
                        label(later),
                        label(later)
                    ),
                );
                continue;
            }
            let reader = seen.reader();
            reasons.push(match comparison {
                Comparison::Gone => format!("{reader} read {path}, which is gone"),
                Comparison::Modified(how) => format!("{reader} read {path}, which was modified since the run ({how})"),
                Comparison::Changed(how) if !how.is_empty() => {
                    format!("{reader} read {path}, which changed since the run ({how})")
                }
                _ => format!("{reader} read {path}, which changed since the run"),
            });
        }
        for seen in &cell.inputs {
            let path = &seen.path;
            let writer = cells[..index]
                .iter()
                .enumerate()
                .rev()
                .find(|(_, earlier)| earlier.outputs.iter().any(|written| written.path == *path));
            if let Some((_, earlier)) = writer.filter(|(writer, _)| stale[*writer]) {
                reasons.push(format!("{} read {path}, which stale cell {} wrote", seen.reader(), label(earlier)));
            }
        }
        for name in &cell.uses {
            let definer = cells[..index].iter().enumerate().rev().find(|(_, earlier)| earlier.defines.contains(name));
            if let Some((_, earlier)) = definer.filter(|(definer, _)| stale[*definer]) {
                reasons.push(format!("it uses {name}, which stale cell {} defines", label(earlier)));
            }
        }
        if !reasons.is_empty() {
            // The cell and its tasks may read one file under two descriptions.
            let mut said = std::collections::BTreeSet::new();
            reasons.retain(|reason| said.insert(reason.clone()));
            stale[index] = true;
            report.stale.push(StaleCell {
                execution_count: cell.execution_count,
                cell_id: cell.cell_id.clone(),
                reasons,
            });
        }
    }
    report
}

/// `[N]`, or `[N] (id)` when the cell has an id.
pub fn label(cell: &CellView) -> String {
    match &cell.cell_id {
        Some(id) => format!("[{}] ({id})", cell.execution_count),
        None => format!("[{}]", cell.execution_count),
    }
}

#[cfg(test)]
mod tests;
