//! Software: Python distributions and interpreters, system packages, and the
//! executables and shared libraries the run used.

use std::collections::HashMap;

use super::html::{badge, badge_titled, grouped, path_code, w, Esc};
use crate::{
    manifest::{Manifest, OwnedFile, PythonDistribution, Software},
    software::python::normalize_name as normalized,
};

/// Lists up to this long are open.
const OPEN_UP_TO: usize = 15;

pub(super) fn section(out: &mut String, manifest: &Manifest) {
    out.push_str("<section id=\"software\">\n<h2>Software</h2>\n");
    software(out, &manifest.software, None, 3);
    out.push_str("</section>\n");
}

/// The software lists, under headings of `level`; `reference` is the run's
/// own distributions, to flag the versions a worker host has that differ.
pub(super) fn software(out: &mut String, software: &Software, reference: Option<&[PythonDistribution]>, level: u8) {
    w!(out, "<h{level}>Python distributions <span class=\"count\">{}</span></h{level}>\n", software.python.len());
    python_table(out, &software.python, reference);
    w!(out, "<h{level}>Interpreters <span class=\"count\">{}</span></h{level}>\n", software.interpreters.len());
    if software.interpreters.is_empty() {
        out.push_str("<p class=\"empty\">No Python interpreter.</p>\n");
    } else {
        out.push_str("<table><thead><tr><th>Path</th><th>Version</th><th>Prefix</th></tr></thead><tbody>\n");
        for interpreter in &software.interpreters {
            w!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                path_code(&interpreter.path, 70),
                Esc(&interpreter.version),
                path_code(&interpreter.prefix, 70)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    let packages = &software.system_packages;
    let open = if packages.len() <= OPEN_UP_TO { " open" } else { "" };
    w!(
        out,
        "<details class=\"list\"{open}><summary>System packages <span class=\"count\">{}</span></summary>\n",
        packages.len()
    );
    if packages.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>\n");
    } else {
        out.push_str("<table><thead><tr><th>Name</th><th>Version</th><th>Architecture</th><th>Manager</th></tr></thead><tbody>\n");
        for package in packages {
            w!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                Esc(&package.name),
                Esc(&package.version),
                Esc(&package.architecture),
                Esc(&package.manager)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</details>\n");
    owned_files(out, "Executables", &software.executables);
    owned_files(out, "Shared libraries", &software.shared_libraries);
}

/// The Python distributions used; `reference` flags versions that differ.
pub(super) fn python_table(out: &mut String, python: &[PythonDistribution], reference: Option<&[PythonDistribution]>) {
    if python.is_empty() {
        out.push_str("<p class=\"empty\">No Python distribution.</p>\n");
        return;
    }
    let reference: HashMap<String, &str> = reference
        .unwrap_or_default()
        .iter()
        .map(|distribution| (normalized(&distribution.name), distribution.version.as_str()))
        .collect();
    out.push_str(
        "<table><thead><tr><th>Name</th><th>Version</th><th>Installer</th><th>Location</th>\
         <th class=\"num\">Files used</th></tr></thead><tbody>\n",
    );
    for distribution in python {
        w!(out, "<tr><td><code>{}</code>", Esc(&distribution.name));
        if distribution.editable {
            w!(
                out,
                " {}",
                badge_titled("info", "editable", &["installed in development mode: its files are the project's"])
            );
        }
        w!(out, "</td><td><code>{}</code>", Esc(&distribution.version));
        if let Some(theirs) = reference.get(&normalized(&distribution.name)) {
            if *theirs != distribution.version {
                w!(out, " {}", badge("warn", &format!("the run has {theirs}")));
            }
        }
        w!(
            out,
            "</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>\n",
            distribution.installer.as_deref().map(|installer| Esc(installer).to_string()).unwrap_or_else(|| "–".into()),
            path_code(&distribution.location, 70),
            grouped(distribution.files_used)
        );
    }
    out.push_str("</tbody></table>\n");
}

/// A collapsed list of files with their owning package.
fn owned_files(out: &mut String, title: &str, files: &[OwnedFile]) {
    let open = if !files.is_empty() && files.len() <= 5 { " open" } else { "" };
    w!(
        out,
        "<details class=\"list\"{open}><summary>{title} <span class=\"count\">{}</span></summary>\n",
        grouped(files.len() as u64)
    );
    if files.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>\n");
    } else {
        out.push_str("<table><thead><tr><th>Path</th><th>Package</th></tr></thead><tbody>\n");
        for file in files {
            let package = file.package.as_deref().map(|package| format!("<code>{}</code>", Esc(package)));
            w!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>\n",
                path_code(&file.path, 100),
                package.unwrap_or_else(|| "<span class=\"muted\">none</span>".into())
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</details>\n");
}
