//! The notebook's cells as a timeline: in the order they ran, each with its
//! times, outcome, staleness, data, processes, software and names.

use std::time::Duration;

use super::{
    data::path_list,
    graph::{cell_label, stale_reasons},
    html::{badge, badge_titled, between, human_duration, parse_time, plural, short_sha, time_element, w, Esc},
};
use crate::{
    manifest::{Cell, Data, Manifest},
    stale::StaleReport,
};

pub(super) fn section(out: &mut String, manifest: &Manifest, stale: &StaleReport) {
    if manifest.cells.is_empty() {
        return;
    }
    let cells = &manifest.cells;
    w!(out, "<section id=\"cells\">\n<h2>Cells <span class=\"count\">{}</span></h2>\n", cells.len());
    // Times are told from the first cell's start, and the bars span the cells.
    let first =
        cells.iter().min_by_key(|cell| parse_time(&cell.started_at)).map_or("", |cell| cell.started_at.as_str());
    let ends = cells.iter().filter_map(|cell| cell.finished_at.as_deref().or(Some(&cell.started_at)));
    let last = ends.max_by_key(|end| parse_time(end)).unwrap_or(first);
    let span = between(first, last).filter(|span| !span.is_zero());
    let raised = cells.iter().filter(|cell| cell.error.is_some()).count();
    let stale_count = cells.iter().filter(|cell| stale_reasons(cell, stale).is_some()).count();
    let mut summary = format!("{} ran", plural(cells.len(), "cell", "cells"));
    if let Some(span) = span {
        w!(&mut summary, " in {}", human_duration(span));
    }
    if let Some(wait) = between(&manifest.started_at, first) {
        w!(&mut summary, ", from {} after the run started", human_duration(wait));
    }
    let mut parts = vec![summary];
    if raised > 0 {
        parts.push(format!("{raised} raised an exception"));
    }
    if stale_count > 0 {
        parts.push(format!("{stale_count} would compute something else now"));
    }
    w!(out, "<p>{}. Times are from the first cell's start.</p>\n", Esc(&parts.join("; ")));
    if !stale.notes.is_empty() {
        out.push_str("<ul class=\"notes\">");
        for note in &stale.notes {
            w!(out, "<li>{}</li>", Esc(note));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<ol class=\"timeline\">\n");
    for (index, cell) in cells.iter().enumerate() {
        let reasons = stale_reasons(cell, stale);
        let tasks = manifest.tasks.iter().filter(|task| task.cell == Some(cell.execution_count)).count();
        let context = Context { start: first, span, reasons, tasks, written: &manifest.data };
        entry(out, index, cell, &context);
    }
    out.push_str("</ol>\n</section>\n");
}

struct Context<'a> {
    /// The first cell's start.
    start: &'a str,
    /// The time the bars stand for.
    span: Option<Duration>,
    reasons: Option<&'a [String]>,
    /// Dask tasks the cell submitted.
    tasks: usize,
    /// The run's data, whose outputs it wrote itself.
    written: &'a Data,
}

/// `+1.2 s`: how long after the run's start.
fn offset(start: &str, at: &str) -> String {
    between(start, at).map(|offset| format!("+{}", human_duration(offset))).unwrap_or_default()
}

fn entry(out: &mut String, index: usize, cell: &Cell, context: &Context) {
    let mut class = String::from("cell");
    if context.reasons.is_some() {
        class.push_str(" stale");
    }
    if cell.error.is_some() {
        class.push_str(" error");
    }
    w!(out, "<li class=\"{class}\" id=\"cell-{index}\">\n<div class=\"cell-head\">");
    w!(out, "<span class=\"label\">{}</span>", Esc(&cell_label(cell)));
    let duration = cell.finished_at.as_deref().and_then(|end| between(&cell.started_at, end));
    w!(
        out,
        "<span class=\"when\">{} · {}</span>",
        offset(context.start, &cell.started_at),
        duration.map(human_duration).unwrap_or_else(|| "did not finish".into())
    );
    if let Some(error) = &cell.error {
        w!(out, "{}", badge("bad", &error.ename));
    }
    if context.reasons.is_some() {
        w!(out, "{}", badge("warn", "stale"));
    }
    if cell.finished_at.is_none() {
        w!(out, "{}", badge("muted", "unfinished"));
    }
    out.push_str("</div>\n");
    bar(out, cell, context);
    out.push_str("<dl class=\"cell-facts\">\n");
    if let Some(error) = &cell.error {
        w!(out, "<dt>Raised</dt><dd><code>{}</code>: {}</dd>\n", Esc(&error.ename), Esc(&error.evalue));
    }
    if let Some(reasons) = context.reasons {
        out.push_str("<dt>Stale</dt><dd><ul class=\"reasons\">");
        for reason in reasons {
            w!(out, "<li>{}</li>", Esc(reason));
        }
        out.push_str("</ul></dd>\n");
    }
    if !cell.data.inputs.is_empty() {
        out.push_str("<dt>Reads</dt><dd>");
        path_list(out, &cell.data.inputs, context.written);
        out.push_str("</dd>\n");
    }
    if !cell.data.outputs.is_empty() {
        out.push_str("<dt>Writes</dt><dd>");
        path_list(out, &cell.data.outputs, context.written);
        out.push_str("</dd>\n");
    }
    if !cell.pids.is_empty() {
        let pids: Vec<String> = cell.pids.iter().map(|pid| format!("<a href=\"#p-{pid}\">{pid}</a>")).collect();
        w!(out, "<dt>Processes</dt><dd class=\"mono\">{}</dd>\n", pids.join(" "));
    }
    if context.tasks > 0 {
        w!(out, "<dt>Dask</dt><dd><a href=\"#tasks\">{}</a> submitted</dd>\n", plural(context.tasks, "task", "tasks"));
    }
    if !cell.software.python.is_empty() {
        let python: Vec<String> = cell
            .software
            .python
            .iter()
            .map(|distribution| format!("<code>{}</code>&nbsp;{}", Esc(&distribution.name), Esc(&distribution.version)))
            .collect();
        w!(out, "<dt>Python</dt><dd>{}</dd>\n", python.join(", "));
    }
    if let Some(names) = &cell.names {
        for (title, list) in [("Defines", &names.defines), ("Deletes", &names.deletes), ("Uses", &names.uses)] {
            if list.is_empty() {
                continue;
            }
            let codes: Vec<String> = list.iter().map(|name| format!("<code>{}</code>", Esc(name))).collect();
            w!(out, "<dt>{title}</dt><dd>{}", codes.join(", "));
            if names.truncated {
                w!(out, " {}", badge_titled("muted", "cut", &["the hook cut the lists of names to fit its marker"]));
            }
            out.push_str("</dd>\n");
        }
    }
    w!(out, "<dt>Source</dt><dd>{}", short_sha(&cell.code_sha256));
    w!(out, " <span class=\"muted\">started {}", time_element(&cell.started_at));
    if let Some(finished) = &cell.finished_at {
        w!(out, ", finished {}", time_element(finished));
    }
    out.push_str("</span></dd>\n</dl>\n</li>\n");
}

/// Where in the run the cell ran, as a bar.
fn bar(out: &mut String, cell: &Cell, context: &Context) {
    let Some(span) = context.span else { return };
    let Some(from) = between(context.start, &cell.started_at) else { return };
    let length = cell.finished_at.as_deref().and_then(|end| between(&cell.started_at, end)).unwrap_or_default();
    let whole = span.as_secs_f64();
    let left = (from.as_secs_f64() / whole * 100.0).clamp(0.0, 100.0);
    let width = (length.as_secs_f64() / whole * 100.0).clamp(0.0, 100.0 - left);
    w!(
        out,
        "<div class=\"bar\" aria-hidden=\"true\"><span style=\"left:{left:.2}%;width:{width:.2}%\"></span></div>\n"
    );
}
