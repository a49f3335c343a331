//! The dependency graph's section: the graph drawn as inline SVG from its
//! layout, with a legend. Nodes link to their cells in the timeline; every
//! node and edge has a `<title>` (full paths, names) that a hover shows.

use super::{
    graph::{self, EdgeKind, Graph, NodeKind},
    html::{middle_cut, plural, w, Esc},
    layout::{layout, Layout, Rect},
};
use crate::{manifest::Manifest, stale::StaleReport};

/// Roughly how wide a character of the labels' monospace font is (11px).
const CHAR_W: f64 = 6.7;

/// Whether the page draws a graph (for the navigation).
pub(super) fn drawn(manifest: &Manifest) -> bool {
    !graph::build(manifest, &StaleReport::default()).edges.is_empty()
}

pub(super) fn section(out: &mut String, manifest: &Manifest, stale: &StaleReport) {
    let graph = graph::build(manifest, stale);
    if graph.edges.is_empty() {
        return;
    }
    out.push_str("<section id=\"graph\">\n<h2>Dependency graph</h2>\n");
    let steps = if manifest.cells.is_empty() { "The run".to_string() } else { plural(graph.steps, "cell", "cells") };
    if graph.files() > graph::MAX_FILES {
        w!(
            out,
            "<p class=\"empty\">Not drawn: {} and {} are more than a drawing can show; the tables below list them.</p>\n</section>\n",
            Esc(&steps),
            plural(graph.files(), "data file", "data files")
        );
        return;
    }
    let layout = layout(&graph);
    w!(
        out,
        "<p class=\"muted\">{} and the {} {} read and wrote{}. Hover over a node or an edge for details{}.</p>\n",
        Esc(&steps),
        plural(graph.files(), "data file", "data files"),
        if manifest.cells.is_empty() { "it" } else { "they" },
        if graph.edges.iter().any(|edge| edge.kind == EdgeKind::Names) {
            ", and the names cells took from earlier cells"
        } else {
            ""
        },
        if manifest.cells.is_empty() { "" } else { "; a cell links to its entry below" }
    );
    out.push_str("<div class=\"graph-wrap\">\n");
    draw(out, &graph, &layout);
    out.push_str("</div>\n");
    legend(out, &graph);
    out.push_str("</section>\n");
}

/// The SVG of a laid-out graph.
pub(super) fn draw(out: &mut String, graph: &Graph, layout: &Layout) {
    let (width, height) = (layout.width.ceil(), layout.height.ceil());
    w!(
        out,
        "<svg class=\"graph\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"graph-title\">\n\
         <title id=\"graph-title\">Dependency graph: {} and {}</title>\n<defs>",
        plural(graph.steps, "step", "steps"),
        plural(graph.files(), "file", "files")
    );
    for kind in ["reads", "writes", "names"] {
        w!(
            out,
            "<marker id=\"arrow-{kind}\" class=\"{kind}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\"/></marker>"
        );
    }
    out.push_str("</defs>\n<g class=\"edges\">\n");
    for (edge, route) in graph.edges.iter().zip(&layout.routes) {
        let kind = match edge.kind {
            EdgeKind::Reads => "reads",
            EdgeKind::Writes => "writes",
            EdgeKind::Names => "names",
        };
        let task = if edge.via_task { " task" } else { "" };
        let from = short_name(graph, edge.from);
        let to = short_name(graph, edge.to);
        let mut title = match edge.kind {
            EdgeKind::Reads => format!("{to} read {from}"),
            EdgeKind::Writes => format!("{from} wrote {to}"),
            EdgeKind::Names => format!("{to} used {} from {from}", edge.names.join(", ")),
        };
        if edge.via_task {
            title.push_str(" (through Dask tasks)");
        }
        w!(
            out,
            "<path class=\"edge {kind}{task}\" d=\"{}\" marker-end=\"url(#arrow-{kind})\"><title>{}</title></path>\n",
            path_data(route),
            Esc(&title)
        );
    }
    out.push_str("</g>\n<g class=\"nodes\">\n");
    for (node, rect) in graph.nodes.iter().zip(&layout.nodes) {
        let title = node.title.split('\n').map(|line| Esc(line).to_string()).collect::<Vec<_>>().join("\n");
        match &node.kind {
            NodeKind::Cell { index, stale, error } => {
                let mut class = String::from("node cell");
                let mut tag = "";
                if *error {
                    class.push_str(" error");
                    tag = "error";
                }
                if *stale {
                    class.push_str(" stale");
                    tag = "stale";
                }
                w!(out, "<a class=\"{class}\" href=\"#cell-{index}\"><title>{title}</title>");
                shape(out, rect, &node.label, if tag.is_empty() { &node.detail } else { tag }, 5.0);
                out.push_str("</a>\n");
            }
            NodeKind::Run => {
                w!(out, "<g class=\"node run\"><title>{title}</title>");
                shape(out, rect, &node.label, &node.detail, 5.0);
                out.push_str("</g>\n");
            }
            NodeKind::File { written, changed, .. } => {
                let class = if *written { "output" } else { "input" };
                let changed = if *changed { " changed" } else { "" };
                w!(out, "<g class=\"node file {class}{changed}\"><title>{title}</title>");
                shape(out, rect, &node.label, "", 3.0);
                out.push_str("</g>\n");
            }
        }
    }
    out.push_str("</g>\n</svg>\n");
}

/// A node's box and label, cut to fit; `tag` is drawn at its right end.
fn shape(out: &mut String, rect: &Rect, label: &str, tag: &str, radius: f64) {
    w!(
        out,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{radius}\"/>",
        rect.x,
        rect.y,
        rect.w,
        rect.h
    );
    // The tag's font is proportional and smaller: about 5.5px a character.
    let tag_room = if tag.is_empty() { 0.0 } else { tag.chars().count() as f64 * 5.5 + 10.0 };
    let fits = ((rect.w - 16.0 - tag_room) / CHAR_W).max(4.0) as usize;
    w!(out, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", rect.x + 8.0, rect.center_y(), Esc(&middle_cut(label, fits)));
    if !tag.is_empty() {
        w!(
            out,
            "<text class=\"tag\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            rect.right() - 7.0,
            rect.center_y(),
            Esc(tag)
        );
    }
}

/// What an edge's title calls a node.
fn short_name(graph: &Graph, node: usize) -> String {
    match &graph.nodes[node].kind {
        NodeKind::File { path, .. } => path.clone(),
        NodeKind::Cell { .. } => format!("cell {}", graph.nodes[node].label),
        NodeKind::Run => "the run".into(),
    }
}

/// An orthogonal route as path data, its corners rounded.
pub(super) fn path_data(route: &[(f64, f64)]) -> String {
    // Without repeated points and points along a straight line.
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(route.len());
    for &point in route {
        if points.last() == Some(&point) {
            continue;
        }
        if points.len() >= 2 {
            let (a, b) = (points[points.len() - 2], points[points.len() - 1]);
            if (a.0 == b.0 && b.0 == point.0) || (a.1 == b.1 && b.1 == point.1) {
                points.pop();
            }
        }
        points.push(point);
    }
    let Some(&(x, y)) = points.first() else { return String::new() };
    let mut data = format!("M{x:.1},{y:.1}");
    for index in 1..points.len() {
        let (x, y) = points[index];
        if index + 1 == points.len() {
            w!(&mut data, "L{x:.1},{y:.1}");
            break;
        }
        let (before, after) = (points[index - 1], points[index + 1]);
        let length = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() + (a.1 - b.1).abs();
        let radius = 5.0_f64.min(length(before, (x, y)) / 2.0).min(length((x, y), after) / 2.0);
        let toward = |from: (f64, f64), to: (f64, f64), by: f64| {
            let span = length(from, to).max(f64::EPSILON);
            (from.0 + (to.0 - from.0) * by / span, from.1 + (to.1 - from.1) * by / span)
        };
        let entry = toward((x, y), before, radius);
        let exit = toward((x, y), after, radius);
        w!(&mut data, "L{:.1},{:.1}Q{x:.1},{y:.1} {:.1},{:.1}", entry.0, entry.1, exit.0, exit.1);
    }
    data
}

/// What the colours and lines mean, for what the graph has.
fn legend(out: &mut String, graph: &Graph) {
    let has = |test: &dyn Fn(&NodeKind) -> bool| graph.nodes.iter().any(|node| test(&node.kind));
    let mut items: Vec<(&str, &str)> = Vec::new();
    if has(&|kind| matches!(kind, NodeKind::Cell { .. })) {
        items.push(("swatch cell", "cell"));
    }
    if has(&|kind| matches!(kind, NodeKind::Cell { stale: true, .. })) {
        items.push(("swatch stale", "stale cell"));
    }
    if has(&|kind| matches!(kind, NodeKind::Cell { error: true, .. })) {
        items.push(("swatch error", "cell that raised"));
    }
    if has(&|kind| matches!(kind, NodeKind::File { written: false, .. })) {
        items.push(("swatch input", "input file"));
    }
    if has(&|kind| matches!(kind, NodeKind::File { written: true, .. })) {
        items.push(("swatch output", "file written"));
    }
    if has(&|kind| matches!(kind, NodeKind::File { changed: true, .. })) {
        items.push(("swatch changed", "changed during the run"));
    }
    let edges = |kind: EdgeKind| graph.edges.iter().any(|edge| edge.kind == kind);
    if edges(EdgeKind::Reads) {
        items.push(("line reads", "read"));
    }
    if edges(EdgeKind::Writes) {
        items.push(("line writes", "written"));
    }
    if edges(EdgeKind::Names) {
        items.push(("line names", "names used"));
    }
    if graph.edges.iter().any(|edge| edge.via_task) {
        items.push(("line task", "through Dask tasks"));
    }
    out.push_str("<div class=\"legend\">");
    for (class, text) in items {
        w!(out, "<span><span class=\"{class}\"></span>{text}</span>");
    }
    out.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corners_are_rounded_and_straight_runs_merged() {
        assert_eq!(path_data(&[(0.0, 0.0), (10.0, 0.0), (20.0, 0.0)]), "M0.0,0.0L20.0,0.0");
        assert_eq!(
            path_data(&[(0.0, 0.0), (20.0, 0.0), (20.0, 20.0), (40.0, 20.0)]),
            "M0.0,0.0L15.0,0.0Q20.0,0.0 20.0,5.0L20.0,15.0Q20.0,20.0 25.0,20.0L40.0,20.0"
        );
        assert_eq!(path_data(&[]), "");
    }
}
