//! `reprotrace export docker MANIFEST -o DIR`: a `Dockerfile` and its
//! context that rebuild the run's environment: the recorded OS release, its
//! system packages pinned (apt), its Python distributions pinned (pip, into a
//! venv at the original prefix when the run used one), its data inputs and
//! its own files (those it read below its working directory) at their
//! paths, the working directory and the command.

use std::{
    ffi::OsStr,
    fmt::Write,
    os::unix::ffi::{OsStrExt, OsStringExt},
    path::{Path, PathBuf},
};

use crate::{
    classify, fsaccess,
    manifest::{bytes_of_display, Access, Manifest},
    software::python::normalize_name,
    tracker::path,
};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("{0} exists and is not empty: give a new directory for the Docker context")]
    NotEmpty(PathBuf),
    #[error("cannot write the Docker context in {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What the context holds.
#[derive(Debug, Default)]
pub struct DockerContext {
    pub system_packages: usize,
    pub python_distributions: usize,
    pub files: usize,
    /// Files the Dockerfile should copy but that could not be read (named).
    pub unreadable: Vec<String>,
}

/// Writes `dir/Dockerfile`, `dir/requirements.txt` and `dir/files/…`.
pub fn write_context(manifest: &Manifest, dir: &Path) -> Result<DockerContext, DockerError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DockerError::Write { path: path.clone(), source }
    };
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(DockerError::NotEmpty(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir.join("files")).map_err(fail(dir))?;
    let mut context = DockerContext::default();
    for path in own_files(manifest) {
        let mut target = dir.join("files").into_os_string().into_vec();
        target.extend_from_slice(&path);
        let target = PathBuf::from(OsStr::from_bytes(&target));
        let copied = target.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
            let mut source = fsaccess::open(&path)?;
            std::io::copy(&mut source, &mut std::fs::File::create(&target)?).map(|_| ())
        });
        match copied {
            Ok(()) => context.files += 1,
            Err(_) => context.unreadable.push(crate::manifest::display_bytes(&path)),
        }
    }
    let venv = venv_prefix(manifest);
    let pip: Vec<String> = manifest
        .software
        .python
        .iter()
        .filter(|distribution| !distribution.editable && !is_system_site(&distribution.location))
        .map(|distribution| format!("{}=={}", normalize_name(&distribution.name), distribution.version))
        .collect();
    context.python_distributions = pip.len();
    context.system_packages = manifest.software.system_packages.len();
    std::fs::write(dir.join("requirements.txt"), pip.join("\n") + "\n").map_err(fail(dir))?;
    std::fs::write(dir.join("Dockerfile"), dockerfile(manifest, venv.as_deref(), !pip.is_empty(), context.files > 0))
        .map_err(fail(dir))?;
    Ok(context)
}

/// The Dockerfile's text.
fn dockerfile(manifest: &Manifest, venv: Option<&str>, pip: bool, files: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by reprotrace from the audit of `{}` on {} ({}).",
        manifest.command.join(" "),
        manifest.host,
        manifest.started_at
    );
    let base = manifest
        .os
        .as_ref()
        .map(|os| format!("{}:{}", os.id, os.version_id.as_deref().unwrap_or("latest")))
        .unwrap_or_else(|| "debian:stable".into());
    if manifest.os.is_none() {
        let _ = writeln!(out, "# The audit did not record its OS release: guessed.");
    }
    let _ = writeln!(out, "FROM {base}");
    let packages: Vec<String> = manifest
        .software
        .system_packages
        .iter()
        .map(|package| format!("{}={}", package.name, package.version))
        .collect();
    if !packages.is_empty() {
        let _ = writeln!(out, "# The system packages the run used, at the versions it used.");
        let _ = writeln!(out, "RUN apt-get update \\\n && apt-get install -y --no-install-recommends \\");
        for package in &packages {
            let _ = writeln!(out, "      {package} \\");
        }
        let _ = writeln!(out, " && rm -rf /var/lib/apt/lists/*");
    }
    if pip {
        let _ = writeln!(out, "# The Python distributions the run used, pinned.");
        let _ = writeln!(out, "COPY requirements.txt /reprotrace/requirements.txt");
        match venv {
            Some(prefix) => {
                let _ = writeln!(
                    out,
                    "RUN python3 -m venv {prefix} \\\n && {prefix}/bin/pip install --no-deps -r /reprotrace/requirements.txt"
                );
            }
            None => {
                let _ =
                    writeln!(out, "RUN pip3 install --break-system-packages --no-deps -r /reprotrace/requirements.txt");
            }
        }
    }
    if files {
        let _ = writeln!(out, "# The run's data inputs and its own files, at their paths.");
        let _ = writeln!(out, "COPY files/ /");
    }
    let _ = writeln!(out, "WORKDIR {}", manifest.cwd);
    let argv = manifest.processes.first().map(|root| root.argv.clone()).unwrap_or_else(|| manifest.command.clone());
    let _ = writeln!(out, "CMD {}", serde_json::Value::from(argv));
    out
}

/// The venv the run's Python ran in: an interpreter's prefix outside `/usr`.
fn venv_prefix(manifest: &Manifest) -> Option<String> {
    manifest
        .software
        .interpreters
        .iter()
        .map(|interpreter| interpreter.prefix.clone())
        .find(|prefix| !prefix.starts_with("/usr") && prefix != "/")
}

/// Debian's own site directories: their distributions come with apt's packages.
fn is_system_site(location: &str) -> bool {
    location.starts_with("/usr/lib/python3/") || location.starts_with("/usr/lib/python3.")
}

/// The data inputs, and the files the run read below its working directory
/// that are neither software nor its outputs (its script, its configuration).
fn own_files(manifest: &Manifest) -> Vec<Vec<u8>> {
    let cwd = bytes_of_display(&manifest.cwd).unwrap_or_default();
    let outputs: std::collections::BTreeSet<&str> =
        manifest.data.outputs.iter().map(|output| output.path.as_str()).collect();
    let mut files: Vec<Vec<u8>> =
        manifest.data.inputs.iter().filter_map(|input| bytes_of_display(&input.path)).collect();
    files.extend(
        manifest
            .files
            .iter()
            .filter(|file| {
                matches!(file.access, Access::Read | Access::Exec) && !file.deleted && file.namespace.is_none()
            })
            .filter(|file| !outputs.contains(file.path.as_str()))
            .filter_map(|file| bytes_of_display(&file.path))
            .filter(|path| path::is_under(path, &cwd) && classify::may_be_cell_data(path)),
    );
    files.sort();
    files.dedup();
    // Directories come with their files; a file that is gone is named when copying fails.
    files.retain(|path| !fsaccess::metadata(path).is_ok_and(|metadata| metadata.is_dir()));
    files
}
