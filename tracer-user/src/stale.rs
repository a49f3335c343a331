//! `reprotrace stale`: which notebook cells would now compute something else
//! than in the audited run.
//!
//! A cell is stale when a file it read has other contents now than it had
//! when the cell read it (or is gone), when its source differs from the
//! notebook's (given one), or when it depends on a stale cell: it reads a file
//! that cell wrote, or a name that cell defined (the latest earlier writer or
//! definer). A file the run's own later cells changed is not staleness: a
//! re-run from the top would read it as they left it, which is said apart.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    manifest::{Cell, Manifest},
    notebook::Notebook,
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
    /// cells changed, which a re-run from the top would read as they left them.
    pub notes: Vec<String>,
}

/// A cell as staleness sees it: what it read and wrote (paths as the
/// manifest spells them, with the hashes the cell saw and left), the names
/// it defined and used, and its source's hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellView {
    pub execution_count: u64,
    pub cell_id: Option<String>,
    pub code_sha256: String,
    pub inputs: Vec<(String, Option<String>)>,
    pub outputs: Vec<(String, Option<String>)>,
    pub defines: Vec<String>,
    pub uses: Vec<String>,
}

impl CellView {
    pub fn of(cell: &Cell) -> CellView {
        let files = |entries: &[crate::manifest::DataEntry]| {
            entries.iter().map(|entry| (entry.path.clone(), entry.sha256.clone())).collect()
        };
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

/// The stale cells of a manifest's run; `current` hashes a file as it is now
/// (`None`: gone or unreadable); `notebook`, if given, is the notebook now.
pub fn stale_cells(
    manifest: &Manifest,
    notebook: Option<&Notebook>,
    current: &dyn Fn(&str) -> Option<String>,
) -> StaleReport {
    let cells: Vec<CellView> = manifest.cells.iter().map(CellView::of).collect();
    let sources = notebook.map(|notebook| changed_sources(&cells, notebook));
    judge(&cells, sources.as_deref(), current)
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
pub fn judge(
    cells: &[CellView],
    sources: Option<&[Option<String>]>,
    current: &dyn Fn(&str) -> Option<String>,
) -> StaleReport {
    let mut report = StaleReport::default();
    let mut stale = vec![false; cells.len()];
    // Hash once per path: several cells may read one file.
    let mut now: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for (index, cell) in cells.iter().enumerate() {
        let mut reasons = Vec::new();
        if let Some(reason) = sources.and_then(|sources| sources.get(index).cloned().flatten()) {
            reasons.push(reason);
        }
        for (path, seen) in &cell.inputs {
            let hash = now.entry(path).or_insert_with(|| current(path)).clone();
            if hash == *seen {
                continue;
            }
            // The last later cell that wrote it, and what it left.
            let rewritten = cells[index + 1..].iter().rev().find_map(|later| {
                later.outputs.iter().find(|(written, _)| written == path).map(|(_, left)| (later, left))
            });
            match (rewritten, &hash) {
                (Some((later, left)), Some(_)) if *left == hash => report.notes.push(format!(
                    "cell {} read {path} before cell {} of the run changed it: a re-run from the top reads what cell {} wrote",
                    label(cell),
                    label(later),
                    label(later)
                )),
                (_, None) => reasons.push(format!("it read {path}, which is gone")),
                (_, Some(_)) => reasons.push(format!("it read {path}, which changed since the run")),
            }
        }
        for (path, _) in &cell.inputs {
            let writer = cells[..index]
                .iter()
                .enumerate()
                .rev()
                .find(|(_, earlier)| earlier.outputs.iter().any(|(written, _)| written == path));
            if let Some((_, earlier)) = writer.filter(|(writer, _)| stale[*writer]) {
                reasons.push(format!("it read {path}, which stale cell {} wrote", label(earlier)));
            }
        }
        for name in &cell.uses {
            let definer = cells[..index].iter().enumerate().rev().find(|(_, earlier)| earlier.defines.contains(name));
            if let Some((_, earlier)) = definer.filter(|(definer, _)| stale[*definer]) {
                reasons.push(format!("it uses {name}, which stale cell {} defines", label(earlier)));
            }
        }
        if !reasons.is_empty() {
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
