//! `reprotrace report`: a manifest as one self-contained HTML page, for people.
//!
//! The page needs nothing but itself: its style is inline, it has no script
//! (its collapsible lists are `<details>`), and its Content-Security-Policy
//! forbids loading anything, so opening it never touches the network. Its
//! dependency graph is an inline SVG whose layout is computed here
//! ([`layout`]). Every value from the manifest is escaped ([`html::Esc`]).
//!
//! The modules, one job each: [`html`] (escaping and formats), [`header`]
//! (the run and whether its audit is complete), [`graph`] (cells, files and
//! their edges), [`layout`] (where they go), [`svg`] (drawing them),
//! [`cells`] (the timeline), [`data`], [`processes`], [`software`], and
//! [`dask`] (hosts and tasks).

mod cells;
mod dask;
mod data;
mod graph;
mod header;
mod html;
mod layout;
mod processes;
mod software;
mod svg;

use html::{w, Esc};

use crate::{manifest::Manifest, stale::StaleReport};

/// Nothing may be loaded: no script, no font, no image from anywhere, no
/// request; only the page's own style.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const STYLE: &str = include_str!("style.css");

/// The report of `manifest` as one self-contained HTML page; `stale` is what
/// `reprotrace stale` found (empty when not computed).
pub fn render(manifest: &Manifest, stale: &StaleReport) -> String {
    let mut out = String::with_capacity(64 * 1024 + manifest.files.len() * 200);
    let command = html::middle_cut(&html::shell_line(&manifest.command), 80);
    w!(
        &mut out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"generator\" content=\"reprotrace {}\">\n\
         <title>reprotrace: {} on {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        env!("CARGO_PKG_VERSION"),
        Esc(&command),
        Esc(&manifest.host),
    );
    navigation(&mut out, manifest);
    out.push_str("<main>\n");
    header::header(&mut out, manifest);
    svg::section(&mut out, manifest, stale);
    cells::section(&mut out, manifest, stale);
    data::section(&mut out, manifest);
    processes::section(&mut out, manifest);
    software::section(&mut out, manifest);
    dask::hosts_section(&mut out, manifest);
    dask::tasks_section(&mut out, manifest);
    data::files_section(&mut out, &manifest.files, "files", "All paths the run used");
    w!(
        &mut out,
        "<footer>Written by reprotrace {} from a manifest of schema <code>{}</code>.</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        Esc(&manifest.schema)
    );
    out
}

/// The bar of links to the sections the page has.
fn navigation(out: &mut String, manifest: &Manifest) {
    out.push_str("<nav><a href=\"#top\" class=\"brand\">reprotrace</a>");
    let data = manifest.data.inputs.len() + manifest.data.outputs.len();
    let links: [(&str, &str, usize, bool); 8] = [
        ("graph", "Graph", 0, svg::drawn(manifest)),
        ("cells", "Cells", manifest.cells.len(), !manifest.cells.is_empty()),
        ("data", "Data", data, true),
        ("processes", "Processes", manifest.processes.len(), true),
        ("software", "Software", manifest.software.python.len() + manifest.software.system_packages.len(), true),
        ("hosts", "Hosts", manifest.hosts.len(), !manifest.hosts.is_empty()),
        ("tasks", "Tasks", manifest.tasks.len(), !manifest.tasks.is_empty()),
        ("files", "Paths", manifest.files.len(), true),
    ];
    for (anchor, name, count, shown) in links {
        if !shown {
            continue;
        }
        if anchor == "graph" {
            w!(out, "<a href=\"#{anchor}\">{name}</a>");
        } else {
            w!(out, "<a href=\"#{anchor}\">{name} <span class=\"count\">{}</span></a>", html::grouped(count as u64));
        }
    }
    out.push_str("</nav>\n");
}

#[cfg(test)]
mod tests;
