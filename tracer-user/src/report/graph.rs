//! The dependency graph of a run: its steps (the notebook's cells in run
//! order, or the whole run as one step outside notebooks) and its data files,
//! with an edge file → step for each input, step → file for each output, and
//! step → step for names a cell uses that an earlier cell defined.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use super::html::{between, human_duration};

use crate::{
    manifest::{Cell, Data, Manifest},
    stale::StaleReport,
};

/// More data files than this make a graph nobody reads: it is left out.
pub(super) const MAX_FILES: usize = 250;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NodeKind {
    /// A notebook cell: its position in `cells`.
    Cell { index: usize, stale: bool, error: bool },
    /// The whole run, outside notebooks.
    Run,
    /// A data file.
    File { path: String, written: bool, changed: bool, removed: bool },
}

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub kind: NodeKind,
    /// Short text drawn in the node.
    pub label: String,
    /// What a hover shows: the full path, or the cell's details.
    pub title: String,
    /// A short note drawn at the node's right end: a step's duration.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum EdgeKind {
    /// file → step: the step read the file.
    Reads,
    /// step → file: the step wrote the file.
    Writes,
    /// step → step: the later cell used names the earlier one defined.
    Names,
}

#[derive(Clone, Debug)]
pub(super) struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
    /// Only through Dask tasks the step submitted.
    pub via_task: bool,
    /// For `Names`: the names.
    pub names: Vec<String>,
}

/// Steps first (`nodes[..steps]`, in run order), then files.
#[derive(Clone, Debug, Default)]
pub(super) struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub steps: usize,
}

impl Graph {
    pub fn files(&self) -> usize {
        self.nodes.len() - self.steps
    }
}

/// The label of a cell: `[3] load-data`.
pub(super) fn cell_label(cell: &Cell) -> String {
    match &cell.cell_id {
        Some(id) => format!("[{}] {id}", cell.execution_count),
        None => format!("[{}]", cell.execution_count),
    }
}

/// Whether `stale` lists this cell: by execution count, and by cell id when
/// both have one.
pub(super) fn stale_reasons<'a>(cell: &Cell, stale: &'a StaleReport) -> Option<&'a [String]> {
    stale
        .stale
        .iter()
        .find(|entry| {
            entry.execution_count == cell.execution_count
                && match (&entry.cell_id, &cell.cell_id) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        })
        .map(|entry| entry.reasons.as_slice())
}

struct Builder {
    graph: Graph,
    files: HashMap<(String, Option<u32>), usize>,
    edges: BTreeMap<(usize, usize), usize>,
}

impl Builder {
    fn file(&mut self, path: &str, namespace: Option<u32>) -> usize {
        if let Some(&node) = self.files.get(&(path.to_string(), namespace)) {
            return node;
        }
        let node = self.graph.nodes.len();
        self.graph.nodes.push(Node {
            kind: NodeKind::File { path: path.to_string(), written: false, changed: false, removed: false },
            label: String::new(),
            title: String::new(),
            detail: String::new(),
        });
        self.files.insert((path.to_string(), namespace), node);
        node
    }

    fn edge(&mut self, from: usize, to: usize, kind: EdgeKind, via_task: bool) -> usize {
        if let Some(&edge) = self.edges.get(&(from, to)) {
            let existing = &mut self.graph.edges[edge];
            existing.via_task &= via_task;
            return edge;
        }
        let edge = self.graph.edges.len();
        self.graph.edges.push(Edge { from, to, kind, via_task, names: Vec::new() });
        self.edges.insert((from, to), edge);
        edge
    }

    fn data(&mut self, step: usize, data: &Data, via_task: bool) {
        for input in &data.inputs {
            let file = self.file(&input.path, input.namespace);
            if let NodeKind::File { changed, removed, .. } = &mut self.graph.nodes[file].kind {
                *changed |= input.changed_during_run;
                *removed |= input.size.is_none() && input.namespace.is_none();
            }
            self.edge(file, step, EdgeKind::Reads, via_task);
        }
        for output in &data.outputs {
            let file = self.file(&output.path, output.namespace);
            if let NodeKind::File { written, .. } = &mut self.graph.nodes[file].kind {
                *written = true;
            }
            self.edge(step, file, EdgeKind::Writes, via_task);
        }
    }
}

/// The graph of `manifest`; empty when there is nothing to draw.
pub(super) fn build(manifest: &Manifest, stale: &StaleReport) -> Graph {
    let mut builder = Builder { graph: Graph::default(), files: HashMap::new(), edges: BTreeMap::new() };
    let cells = &manifest.cells;
    if cells.is_empty() {
        let has_data = |data: &Data| !data.inputs.is_empty() || !data.outputs.is_empty();
        if !has_data(&manifest.data) && !manifest.tasks.iter().any(|task| has_data(&task.data)) {
            return Graph::default();
        }
        let command = manifest.command.iter().map(|arg| super::html::file_name(arg)).collect::<Vec<_>>().join(" ");
        builder.graph.nodes.push(Node {
            kind: NodeKind::Run,
            label: command,
            title: manifest.command.join(" "),
            detail: human_duration(Duration::from_millis(manifest.stats.duration_ms)),
        });
        builder.graph.steps = 1;
        builder.data(0, &manifest.data, false);
        for task in &manifest.tasks {
            builder.data(0, &task.data, true);
        }
    } else {
        for (index, cell) in cells.iter().enumerate() {
            let reasons = stale_reasons(cell, stale);
            let mut title = cell_label(cell);
            let duration = cell.finished_at.as_deref().and_then(|end| between(&cell.started_at, end));
            if let Some(duration) = duration {
                title.push_str(&format!(", {}", human_duration(duration)));
            }
            if let Some(error) = &cell.error {
                title.push_str(&format!("\nraised {}: {}", error.ename, error.evalue));
            }
            for reason in reasons.unwrap_or_default() {
                title.push_str(&format!("\nstale: {reason}"));
            }
            builder.graph.nodes.push(Node {
                kind: NodeKind::Cell { index, stale: reasons.is_some(), error: cell.error.is_some() },
                label: cell_label(cell),
                title,
                detail: duration.map(human_duration).unwrap_or_default(),
            });
        }
        builder.graph.steps = cells.len();
        for (index, cell) in cells.iter().enumerate() {
            builder.data(index, &cell.data, false);
        }
        for task in &manifest.tasks {
            if let Some(step) = task.submitting_cell(cells) {
                builder.data(step, &task.data, true);
            }
        }
        name_edges(&mut builder, cells);
    }
    let mut graph = builder.graph;
    for node in &mut graph.nodes {
        // A file the run wrote changed during it, of course: only inputs
        // changed from outside are worth a flag.
        if let NodeKind::File { written: true, changed, .. } = &mut node.kind {
            *changed = false;
        }
    }
    label_files(&mut graph);
    graph
}

/// An edge from the latest earlier cell that defined a name to each cell
/// that uses it (a `del` in between removes the definition).
fn name_edges(builder: &mut Builder, cells: &[Cell]) {
    let mut defined_by: HashMap<&str, usize> = HashMap::new();
    for (index, cell) in cells.iter().enumerate() {
        let Some(names) = &cell.names else { continue };
        let mut used: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for name in &names.uses {
            if let Some(&definer) = defined_by.get(name.as_str()) {
                used.entry(definer).or_default().push(name.clone());
            }
        }
        for (definer, names) in used {
            let edge = builder.edge(definer, index, EdgeKind::Names, false);
            builder.graph.edges[edge].names = names;
        }
        for name in &names.deletes {
            defined_by.remove(name.as_str());
        }
        for name in &names.defines {
            defined_by.insert(name, index);
        }
    }
}

/// Labels and titles of the file nodes, now that their edges are known.
fn label_files(graph: &mut Graph) {
    let step_label = |graph: &Graph, step: usize| match &graph.nodes[step].kind {
        NodeKind::Cell { .. } => graph.nodes[step].label.split(' ').next().unwrap_or_default().to_string(),
        _ => "the run".to_string(),
    };
    let mut readers: HashMap<usize, Vec<String>> = HashMap::new();
    let mut writers: HashMap<usize, Vec<String>> = HashMap::new();
    for edge in &graph.edges {
        match edge.kind {
            EdgeKind::Reads => readers.entry(edge.from).or_default().push(step_label(graph, edge.to)),
            EdgeKind::Writes => writers.entry(edge.to).or_default().push(step_label(graph, edge.from)),
            EdgeKind::Names => {}
        }
    }
    for (node, entry) in graph.nodes.iter_mut().enumerate() {
        let NodeKind::File { path, changed, removed, .. } = &entry.kind else { continue };
        entry.label = super::html::shorten_path(path, 30);
        let mut title = path.clone();
        if let Some(writers) = writers.get(&node) {
            title.push_str(&format!("\nwritten by {}", writers.join(", ")));
        }
        if let Some(readers) = readers.get(&node) {
            title.push_str(&format!("\nread by {}", readers.join(", ")));
        }
        if *changed {
            title.push_str("\nchanged during the run");
        }
        if *removed {
            title.push_str("\nremoved by the run");
        }
        entry.title = title;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        manifest::{CellNames, CellSoftware, DataEntry},
        stale::StaleCell,
    };

    fn entry(path: &str) -> DataEntry {
        DataEntry {
            path: path.into(),
            size: Some(1),
            mtime: None,
            sha256: None,
            changed_during_run: false,
            namespace: None,
            over_hash_limit: false,
        }
    }

    pub(crate) fn cell(index: usize, inputs: &[&str], outputs: &[&str], defines: &[&str], uses: &[&str]) -> Cell {
        Cell {
            index,
            execution_count: index as u64 + 1,
            cell_id: None,
            code_sha256: "0".repeat(64),
            started_at: format!("2026-01-01T00:00:{:02}Z", index % 60),
            finished_at: None,
            data: Data {
                inputs: inputs.iter().map(|path| entry(path)).collect(),
                outputs: outputs.iter().map(|path| entry(path)).collect(),
            },
            software: CellSoftware::default(),
            pids: vec![1],
            error: None,
            names: Some(CellNames {
                defines: defines.iter().map(|name| name.to_string()).collect(),
                deletes: Vec::new(),
                uses: uses.iter().map(|name| name.to_string()).collect(),
                truncated: false,
            }),
        }
    }

    fn edges(graph: &Graph) -> Vec<(usize, usize, EdgeKind)> {
        graph.edges.iter().map(|edge| (edge.from, edge.to, edge.kind)).collect()
    }

    #[test]
    fn files_connect_their_readers_and_writers_and_names_their_latest_definer() {
        let cells = vec![
            cell(0, &["/in.csv"], &[], &["df"], &[]),
            cell(1, &[], &["/out.csv"], &["df"], &["df"]),
            cell(2, &["/out.csv", "/in.csv"], &[], &[], &["df"]),
        ];
        let mut builder = Builder { graph: Graph::default(), files: HashMap::new(), edges: BTreeMap::new() };
        builder.graph.steps = 3;
        for _ in 0..3 {
            builder.graph.nodes.push(Node {
                kind: NodeKind::Run,
                label: String::new(),
                title: String::new(),
                detail: String::new(),
            });
        }
        for (index, cell) in cells.iter().enumerate() {
            builder.data(index, &cell.data, false);
        }
        name_edges(&mut builder, &cells);
        let graph = builder.graph;
        // Nodes 3 and 4: /in.csv and /out.csv.
        assert_eq!(
            edges(&graph),
            [
                (3, 0, EdgeKind::Reads),
                (1, 4, EdgeKind::Writes),
                (4, 2, EdgeKind::Reads),
                (3, 2, EdgeKind::Reads),
                (0, 1, EdgeKind::Names),
                (1, 2, EdgeKind::Names),
            ]
        );
        assert_eq!(graph.edges[4].names, ["df"]);
    }

    #[test]
    fn a_deleted_name_links_nothing_and_stale_cells_are_marked() {
        let mut cells =
            vec![cell(0, &[], &[], &["x"], &[]), cell(1, &[], &[], &[], &[]), cell(2, &[], &[], &[], &["x"])];
        if let Some(names) = &mut cells[1].names {
            names.deletes.push("x".into());
        }
        let mut builder = Builder { graph: Graph::default(), files: HashMap::new(), edges: BTreeMap::new() };
        name_edges(&mut builder, &cells);
        assert!(builder.graph.edges.is_empty());
        let stale = StaleReport {
            stale: vec![StaleCell { execution_count: 2, cell_id: None, reasons: vec!["it read /in.csv".into()] }],
            notes: Vec::new(),
        };
        assert_eq!(stale_reasons(&cells[1], &stale), Some(&["it read /in.csv".to_string()][..]));
        assert_eq!(stale_reasons(&cells[0], &stale), None);
    }
}
