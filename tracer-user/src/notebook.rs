//! Jupyter notebook files (nbformat 4), as far as reprotrace reads them: the
//! code cells' ids and sources, to name the cells of a run whose client sent
//! no cell ids (nbclient: nbconvert, papermill), and to tell which cells'
//! sources changed since (`reprotrace stale --notebook`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::manifest::Cell;

#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    #[error("cannot read the notebook {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a Jupyter notebook (nbformat 4): {source}")]
    Invalid { path: PathBuf, source: serde_json::Error },
}

/// A code cell of a notebook file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotebookCell {
    /// Its id (nbformat 4.5 and later).
    pub id: Option<String>,
    /// SHA-256 of its source in UTF-8, as the cell hook computes it.
    pub source_sha256: String,
}

/// The code cells of a notebook file, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notebook {
    pub cells: Vec<NotebookCell>,
}

#[derive(Deserialize)]
struct File {
    cells: Vec<FileCell>,
}

#[derive(Deserialize)]
struct FileCell {
    cell_type: String,
    #[serde(default)]
    id: Option<String>,
    source: Source,
}

/// nbformat stores a source as one string or a list of lines.
#[derive(Deserialize)]
#[serde(untagged)]
enum Source {
    Text(String),
    Lines(Vec<String>),
}

impl Notebook {
    pub fn read(path: &Path) -> Result<Notebook, NotebookError> {
        let text = std::fs::read(path).map_err(|source| NotebookError::Read { path: path.to_path_buf(), source })?;
        let file: File = serde_json::from_slice(&text)
            .map_err(|source| NotebookError::Invalid { path: path.to_path_buf(), source })?;
        let cells = file
            .cells
            .into_iter()
            .filter(|cell| cell.cell_type == "code")
            .map(|cell| {
                let source = match cell.source {
                    Source::Text(text) => text,
                    Source::Lines(lines) => lines.concat(),
                };
                let digest = Sha256::digest(source.as_bytes());
                NotebookCell { id: cell.id, source_sha256: format!("{digest:x}") }
            })
            .collect();
        Ok(Notebook { cells })
    }

    /// Names the run's cells that have no id after the notebook's cells of
    /// the same source, each notebook cell used once, in order.
    pub fn fill_cell_ids(&self, cells: &mut [Cell]) {
        let mut used = vec![false; self.cells.len()];
        for cell in cells.iter_mut().filter(|cell| cell.cell_id.is_none()) {
            let found = self
                .cells
                .iter()
                .enumerate()
                .find(|(index, candidate)| !used[*index] && candidate.source_sha256 == cell.code_sha256);
            if let Some((index, candidate)) = found {
                used[index] = true;
                cell.cell_id.clone_from(&candidate.id);
            }
        }
    }
}

/// The notebook a command runs, if it names one that exists: the first
/// `*.ipynb` argument (nbconvert's, `jupyter execute`'s, papermill's input),
/// relative to `cwd`.
pub fn notebook_of_command(argv: &[String], cwd: &Path) -> Option<PathBuf> {
    argv.iter().skip(1).filter(|arg| arg.ends_with(".ipynb")).map(|arg| cwd.join(arg)).find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(count: u64, sha: &str, id: Option<&str>) -> Cell {
        Cell {
            index: count as usize,
            execution_count: count,
            cell_id: id.map(str::to_string),
            code_sha256: sha.into(),
            started_at: "2026-12-01T10:00:00.000Z".into(),
            finished_at: None,
            data: Default::default(),
            software: Default::default(),
            pids: vec![1],
            error: None,
            names: None,
        }
    }

    #[test]
    fn cells_get_the_ids_of_the_notebook_cells_with_their_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nb.ipynb");
        let notebook = serde_json::json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# title"},
            {"cell_type": "code", "id": "load", "metadata": {}, "outputs": [], "execution_count": null, "source": ["x = 1\n", "y = 2"]},
            {"cell_type": "code", "id": "again", "metadata": {}, "outputs": [], "execution_count": null, "source": "x = 1\ny = 2"},
        ]});
        std::fs::write(&path, notebook.to_string()).expect("notebook");
        let read = Notebook::read(&path).expect("a notebook");
        assert_eq!(read.cells.len(), 2);
        let sha: String = Sha256::digest(b"x = 1\ny = 2").iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(read.cells[0].source_sha256, sha, "lines joined as they are");
        assert_eq!(read.cells[1].source_sha256, sha);
        let mut cells =
            vec![cell(1, &sha, None), cell(2, &sha, None), cell(3, &"0".repeat(64), None), cell(4, &sha, Some("kept"))];
        read.fill_cell_ids(&mut cells);
        let ids: Vec<Option<&str>> = cells.iter().map(|cell| cell.cell_id.as_deref()).collect();
        assert_eq!(ids, [Some("load"), Some("again"), None, Some("kept")]);
        assert_eq!(
            notebook_of_command(&["jupyter".into(), "nbconvert".into(), "nb.ipynb".into()], dir.path()),
            Some(path)
        );
        assert!(matches!(Notebook::read(&dir.path().join("none.ipynb")), Err(NotebookError::Read { .. })));
    }
}
