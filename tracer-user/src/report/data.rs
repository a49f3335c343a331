//! Data files: the run's inputs and outputs with their sizes, times and
//! hashes, and every path the run used.

use std::collections::BTreeMap;

use super::html::{badge, badge_titled, grouped, human_size, human_time, path_code, plural, short_sha, w, Esc};
use crate::manifest::{Access, Data, DataEntry, FileEntry, Manifest};

/// A cell: its position in the run and its execution count.
type CellRef = (usize, u64);

/// Which cells read and wrote each path: links to them.
#[derive(Default)]
pub(super) struct CellRefs {
    /// Per path, its readers and its writers.
    by_path: BTreeMap<String, (Vec<CellRef>, Vec<CellRef>)>,
}

impl CellRefs {
    pub fn of(manifest: &Manifest) -> CellRefs {
        let mut refs = CellRefs::default();
        for (index, cell) in manifest.cells.iter().enumerate() {
            for input in &cell.data.inputs {
                refs.by_path.entry(input.path.clone()).or_default().0.push((index, cell.execution_count));
            }
            for output in &cell.data.outputs {
                refs.by_path.entry(output.path.clone()).or_default().1.push((index, cell.execution_count));
            }
        }
        refs
    }

    fn links(&self, path: &str) -> String {
        let Some((readers, writers)) = self.by_path.get(path) else { return String::new() };
        let list = |cells: &[CellRef]| {
            cells
                .iter()
                .map(|(index, count)| format!("<a href=\"#cell-{index}\">[{count}]</a>"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = Vec::new();
        if !writers.is_empty() {
            parts.push(format!("written by {}", list(writers)));
        }
        if !readers.is_empty() {
            parts.push(format!("read by {}", list(readers)));
        }
        parts.join("; ")
    }
}

pub(super) fn section(out: &mut String, manifest: &Manifest) {
    let count = manifest.data.inputs.len() + manifest.data.outputs.len();
    w!(out, "<section id=\"data\">\n<h2>Data <span class=\"count\">{count}</span></h2>\n");
    let refs = (!manifest.cells.is_empty()).then(|| CellRefs::of(manifest));
    tables(out, &manifest.data, refs.as_ref(), 3);
    out.push_str("</section>\n");
}

/// The inputs and outputs tables, under headings of `level`; with `cells`, a
/// column linking the cells that used each file.
pub(super) fn tables(out: &mut String, data: &Data, cells: Option<&CellRefs>, level: u8) {
    for (title, entries, empty) in
        [("Inputs", &data.inputs, "No data file was read."), ("Outputs", &data.outputs, "No data file was written.")]
    {
        w!(out, "<h{level}>{title} <span class=\"count\">{}</span></h{level}>\n", entries.len());
        if entries.is_empty() {
            w!(out, "<p class=\"empty\">{empty}</p>\n");
            continue;
        }
        out.push_str("<table class=\"data\"><thead><tr><th>Path</th><th class=\"num\">Size</th><th>Modified</th><th>SHA-256</th>");
        if cells.is_some() {
            out.push_str("<th>Cells</th>");
        }
        out.push_str("</tr></thead><tbody>\n");
        for entry in entries.iter() {
            w!(out, "<tr><td>{}{}</td>", path_code(&entry.path, 90), flags(entry, true));
            match entry.size {
                Some(size) => w!(out, "<td class=\"num\" title=\"{} bytes\">{}</td>", grouped(size), human_size(size)),
                None => out.push_str("<td class=\"num muted\">–</td>"),
            }
            match &entry.mtime {
                Some(mtime) => w!(out, "<td class=\"nowrap\">{}</td>", Esc(&human_time(mtime))),
                None => out.push_str("<td class=\"muted\">–</td>"),
            }
            match &entry.sha256 {
                Some(sha) => w!(out, "<td>{}</td>", short_sha(sha)),
                None if entry.over_hash_limit => {
                    out.push_str("<td class=\"muted\" title=\"larger than the audit's --hash-limit\">not hashed</td>")
                }
                None => out.push_str("<td class=\"muted\">–</td>"),
            }
            if let Some(cells) = cells {
                w!(out, "<td class=\"nowrap\">{}</td>", cells.links(&entry.path));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
    }
}

/// What is special about a data file: badges. `changed_flag`: whether to
/// say it changed during the run (not for what the run wrote itself).
fn flags(entry: &DataEntry, changed_flag: bool) -> String {
    let mut flags = String::new();
    if entry.changed_during_run && changed_flag {
        let title = ["modified after the run started: the run may have read other contents than the ones hashed"];
        flags.push(' ');
        flags.push_str(&badge_titled("warn", "changed during run", &title));
    }
    if let Some(namespace) = entry.namespace {
        let title = [format!("in the mount namespace of pid {namespace}, out of reprotrace's reach")];
        flags.push(' ');
        flags.push_str(&badge_titled("muted", "namespace", &title));
    } else if entry.size.is_none() && entry.sha256.is_none() {
        flags.push(' ');
        flags.push_str(&badge("muted", "removed or unreadable"));
    }
    flags
}

/// A compact list of data files (in a cell or a task): path and size.
/// `written` are the files the run wrote: their change during the run is
/// no news.
pub(super) fn path_list(out: &mut String, entries: &[DataEntry], written: &Data) {
    out.push_str("<ul class=\"paths\">");
    for entry in entries {
        w!(out, "<li>{}", path_code(&entry.path, 80));
        if let Some(size) = entry.size {
            w!(out, " <span class=\"muted\">{}</span>", human_size(size));
        }
        let theirs = written.outputs.iter().any(|output| output.path == entry.path);
        w!(out, "{}</li>", flags(entry, !theirs));
    }
    out.push_str("</ul>");
}

/// Every path the run used, collapsed: `anchor` is its id.
pub(super) fn files_section(out: &mut String, files: &[FileEntry], anchor: &str, title: &str) {
    w!(
        out,
        "<section id=\"{anchor}\">\n<details class=\"list\"><summary>{} <span class=\"count\">{}</span></summary>\n",
        Esc(title),
        grouped(files.len() as u64)
    );
    if files.is_empty() {
        out.push_str("<p class=\"empty\">None.</p></details></section>\n");
        return;
    }
    out.push_str("<table><thead><tr><th>Path</th><th>Access</th><th>Processes</th></tr></thead><tbody>\n");
    for file in files {
        let access = match file.access {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read, write",
            Access::Exec => "exec",
            Access::Metadata => "metadata",
        };
        w!(out, "<tr><td>{}", path_code(&file.path, 100));
        if file.deleted {
            w!(out, " {}", badge("muted", "deleted"));
        }
        if let Some(namespace) = file.namespace {
            w!(out, " {}", badge("muted", &format!("namespace of {namespace}")));
        }
        let pids: Vec<String> = file.pids.iter().take(8).map(u32::to_string).collect();
        let more = if file.pids.len() > 8 {
            format!(" … ({})", plural(file.pids.len(), "process", "processes"))
        } else {
            String::new()
        };
        w!(out, "</td><td>{access}</td><td class=\"mono\">{}{more}</td></tr>\n", pids.join(" "));
    }
    out.push_str("</tbody></table></details></section>\n");
}
