//! `reprotrace export requirements|conda|apt MANIFEST`: the pinned package
//! lists that rebuild the environment an audit saw.

use crate::{manifest::Manifest, software::python::normalize_name};

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

fn header(manifest: &Manifest) -> String {
    format!("# Exported by reprotrace from an audit of `{}` on {}\n", manifest.command.join(" "), manifest.host)
}

fn requirements(manifest: &Manifest) -> String {
    let mut out = header(manifest);
    for distribution in &manifest.software.python {
        if distribution.editable {
            out.push_str(&format!(
                "# {}=={} was an editable install from {}: install it from its source\n",
                distribution.name, distribution.version, distribution.location
            ));
        } else {
            out.push_str(&format!("{}=={}\n", normalize_name(&distribution.name), distribution.version));
        }
    }
    out
}

fn conda(manifest: &Manifest) -> String {
    let mut out = header(manifest);
    out.push_str("name: reprotrace-env\ndependencies:\n");
    if let Some(interpreter) = manifest.software.interpreters.first() {
        out.push_str(&format!("  - python={}\n", interpreter.version));
    }
    let (conda, pip): (Vec<_>, Vec<_>) =
        manifest.software.python.iter().filter(|d| !d.editable).partition(|d| d.installer.as_deref() == Some("conda"));
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

fn apt(manifest: &Manifest) -> String {
    let mut out = header(manifest);
    for package in &manifest.software.system_packages {
        out.push_str(&format!("{}={}\n", package.name, package.version));
    }
    out
}
