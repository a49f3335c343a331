//! `reprotrace export requirements|conda|apt MANIFEST`: the pinned package
//! lists that rebuild the environment an audit saw.

use crate::{
    grammar,
    manifest::{Manifest, PythonDistribution},
    software::python::normalize_name,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A pip requirements file: `name==version`.
    Requirements,
    /// A conda environment.yml: conda packages pinned, pip packages under `pip:`.
    Conda,
    /// An apt package list: `name=version`, for `apt-get install`.
    Apt,
    /// A Dockerfile and its context, in the directory given with `-o`.
    Docker,
}

/// Renders `manifest`'s software in `format`.
pub fn export(manifest: &Manifest, format: Format) -> String {
    match format {
        Format::Requirements => requirements(manifest),
        Format::Conda => conda(manifest),
        Format::Apt => apt(manifest),
        // A directory, not a text: see `crate::docker`.
        Format::Docker => String::new(),
    }
}

/// The comment heading a list: the command on one line, control characters
/// escaped, so no argument can start a line of its own.
fn header(manifest: &Manifest) -> String {
    let command = comment_text(&manifest.command.join(" "));
    format!("# Exported by reprotrace from an audit of `{command}` on {}\n", comment_text(&manifest.host))
}

/// `text` fit for the inside of a one-line comment: every control character
/// (and anything not ASCII) escaped, so it cannot end the line.
pub fn comment_text(text: &str) -> String {
    text.chars().flat_map(char::escape_default).collect()
}

/// A distribution's name and version, when both are valid (a PEP 508 name,
/// a PEP 440 version): a crafted manifest's other values never reach pip.
fn pip_safe(name: &str, version: &str) -> bool {
    grammar::is_python_name(name) && grammar::is_python_version(version)
}

/// A Debian package's name and version, when both are valid ones.
fn apt_safe(name: &str, version: &str) -> bool {
    grammar::is_debian_name(name) && grammar::is_debian_version(version)
}

/// Debian's own Python distributions come with its packages (apt), not pip.
fn from_debian(distribution: &PythonDistribution) -> bool {
    distribution.installer.as_deref() == Some("debian") || distribution.location.starts_with("/usr/lib/python3/")
}

fn requirements(manifest: &Manifest) -> String {
    let mut out = header(manifest);
    for distribution in manifest.software.python.iter().filter(|distribution| !from_debian(distribution)) {
        let (name, version) = (normalize_name(&distribution.name), &distribution.version);
        if !pip_safe(&name, version) {
            out.push_str("# left out: a distribution whose name or version is not a valid one\n");
        } else if distribution.editable {
            out.push_str(&format!("# {name}=={version} was an editable install: install it from its source\n"));
        } else {
            out.push_str(&format!("{name}=={version}\n"));
        }
    }
    out
}

fn conda(manifest: &Manifest) -> String {
    let mut out = header(manifest);
    out.push_str("name: reprotrace-env\ndependencies:\n");
    if let Some(interpreter) =
        manifest.software.interpreters.first().filter(|interpreter| grammar::is_python_version(&interpreter.version))
    {
        out.push_str(&format!("  - python={}\n", interpreter.version));
    }
    let (conda, pip): (Vec<_>, Vec<_>) = manifest
        .software
        .python
        .iter()
        .filter(|d| !d.editable && !from_debian(d) && pip_safe(&normalize_name(&d.name), &d.version))
        .partition(|d| d.installer.as_deref() == Some("conda"));
    for distribution in conda {
        out.push_str(&format!("  - {}={}\n", normalize_name(&distribution.name), distribution.version));
    }
    if !pip.is_empty() {
        out.push_str("  - pip\n  - pip:\n");
        for distribution in pip {
            out.push_str(&format!("      - {}=={}\n", normalize_name(&distribution.name), distribution.version));
        }
    }
    out
}

/// `name=version` lines only, so that `apt-get install $(reprotrace export
/// apt m.json)` works; Debian's Python distributions are among them.
fn apt(manifest: &Manifest) -> String {
    manifest
        .software
        .system_packages
        .iter()
        .filter(|package| apt_safe(&package.name, &package.version))
        .map(|package| format!("{}={}\n", package.name, package.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(command: &str, distributions: &[(&str, &str, &str)], packages: &[(&str, &str)]) -> Manifest {
        let python: Vec<serde_json::Value> = distributions
            .iter()
            .map(|(name, version, location)| {
                serde_json::json!({"name": name, "version": version, "installer": "pip", "location": location,
                                   "editable": false, "files_used": 1})
            })
            .collect();
        let system: Vec<serde_json::Value> = packages
            .iter()
            .map(|(name, version)| serde_json::json!({"name": name, "version": version, "architecture": "amd64", "manager": "dpkg"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "schema": "reprotrace/manifest/v1", "backend": "ebpf", "command": [command], "cwd": "/", "host": "h",
            "started_at": "2026-12-01T10:00:00.000Z", "finished_at": "2026-12-01T10:00:01.000Z", "exit_code": 0,
            "signal": null, "stats": {"events": 1, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
            "unresolved_paths": 0, "complete": true, "duration_ms": 1}, "processes": [], "files": [],
            "software": {"python": python, "interpreters": [], "system_packages": system, "executables": [], "shared_libraries": []},
            "data": {"inputs": [], "outputs": []}, "cells": []
        }))
        .expect("a manifest")
    }

    #[test]
    fn nothing_from_the_manifest_breaks_out_of_its_line() {
        let crafted = manifest(
            "python\n--index-url https://evil.example/simple",
            &[
                ("six", "1.16.0", "/v/site-packages"),
                ("evil", "1.0\n--extra-index-url x", "/v/site-packages"),
                ("yaml", "6.0", "/usr/lib/python3/dist-packages"),
            ],
            &[("python3-yaml", "6.0-3"), ("bad name", "1")],
        );
        let requirements = export(&crafted, Format::Requirements);
        assert!(!requirements.lines().any(|line| line.starts_with("--")), "{requirements}");
        assert!(requirements.lines().any(|line| line == "six==1.16.0"));
        assert!(!requirements.contains("yaml"), "Debian's own distributions come with apt");
        assert_eq!(export(&crafted, Format::Apt), "python3-yaml=6.0-3\n");
        let conda = export(&crafted, Format::Conda);
        assert!(!conda.lines().any(|line| line.trim_start().starts_with("--")), "{conda}");
    }
}
