//! `reprotrace repeat BUNDLE`: the run again, from the bundle alone, and the
//! verdict on its outputs.
//!
//! The bundle is unpacked into `OUTDIR/root`; the command runs there as in a
//! chroot (a private mount namespace holding only the bundle's files plus
//! `/dev` and a `/proc`, its `/tmp` new, without network unless asked), as the
//! invoking user, traced: the repeat has its own manifest, its paths the
//! original run's. Each output the original run left is compared with what
//! the repeat left. A path the run used that the bundle lacks (neither held
//! nor left out on purpose) is a hole in the audit, named before anything runs.

use std::{
    ffi::OsString,
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::{
    audit::{Audit, Backend, Settings},
    bundle::{self, Unpacked},
    classify, fsaccess,
    launch::{self, LaunchSpec, Sandbox},
    manifest::{bytes_of_display, display_bytes, Manifest, RepeatOf},
    privilege::ActingAs,
    redact, run,
    tracker::path,
};

/// Exit codes: every output identical, some differ or are missing, or the
/// repeat could not run (or the bundle has holes).
pub const IDENTICAL: i32 = 0;
pub const DIFFERENT: i32 = 1;
pub const COULD_NOT_RUN: i32 = 2;

pub struct RepeatOptions {
    pub bundle: PathBuf,
    /// Where the root and the outputs go (made; must not exist).
    pub outdir: PathBuf,
    pub network: bool,
}

/// Repeats; returns the exit code (see the constants).
pub async fn repeat(settings: Settings, options: RepeatOptions) -> anyhow::Result<i32> {
    if settings.backend != Backend::Ebpf {
        anyhow::bail!("repeat traces with the eBPF backend only: strace cannot start a command in the repeat's root");
    }
    // Under sudo, the bundle is read, and unpacked, where the user may
    // write, with the user's rights: the root is theirs.
    let owner = launch::sudo_credentials()?;
    let acting = ActingAs::maybe(owner.as_ref()).context("taking the invoking user's rights")?;
    // A bundle of a part of the run is refused before anything is made.
    match bundle::read_header(&options.bundle) {
        Ok(header) if !refused(&options.bundle, &header) => {}
        Ok(_) => return Ok(COULD_NOT_RUN),
        Err(err) => {
            eprintln!("reprotrace: error: {err}");
            return Ok(COULD_NOT_RUN);
        }
    }
    // Only its owner may enter: as root without sudo the bundle's owners are
    // restored, and no other user may reach (and run, or change before the
    // repeat runs them) files that root owns there.
    std::fs::DirBuilder::new().mode(0o700).create(&options.outdir).with_context(|| {
        format!("making {} (it must not exist: a repeat never writes over another)", options.outdir.display())
    })?;
    // Absolute: the child enters it from wherever we are.
    let root = std::path::absolute(options.outdir.join("root")).context("the repeat's directory")?;
    let Unpacked { header, manifest: original, index, setid_stripped } = match bundle::unpack(&options.bundle, &root) {
        Ok(unpacked) => unpacked,
        Err(err) => {
            eprintln!("reprotrace: error: {err}");
            return Ok(COULD_NOT_RUN);
        }
    };
    // Checked again on the header unpacking read: a bundle may hold another
    // bundle.json further in.
    if refused(&options.bundle, &header) {
        return Ok(COULD_NOT_RUN);
    }
    // Once, however many: the bits are the bundle's claim, not an error.
    if let Some(first) = setid_stripped.first() {
        let others = match setid_stripped.len() {
            1 => String::new(),
            count => format!(" and {} other files", count - 1),
        };
        eprintln!(
            "reprotrace: warning: the bundle asks for setuid or setgid bits on {first}{others}: not restored (a \
             repeat never makes programs that run with another user's rights; one that needs them may fail)"
        );
    }
    let holes = holes(&original, &index);
    if !holes.is_empty() {
        for hole in &holes {
            eprintln!("reprotrace: the bundle lacks {hole}, which the run used: a hole in the audit");
        }
        return Ok(COULD_NOT_RUN);
    }
    let Some(command) = root_process(&original) else {
        eprintln!("reprotrace: error: the bundle's manifest names no command that ran");
        return Ok(COULD_NOT_RUN);
    };
    for (dir, mode) in [("dev", 0o755), ("proc", 0o555), ("tmp", 0o1777)] {
        let path = root.join(dir);
        std::fs::create_dir_all(&path).with_context(|| format!("making {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    // Tracing needs root's rights again.
    drop(acting);
    let cwd =
        PathBuf::from(std::ffi::OsStr::from_bytes(&bytes_of_display(&original.cwd).unwrap_or_else(|| b"/".to_vec())));
    if command
        .argv
        .iter()
        .any(|arg| arg.as_bytes().windows(redact::MARK.len()).any(|part| part == redact::MARK.as_bytes()))
    {
        eprintln!(
            "reprotrace: warning: the command line was redacted when audited: the repeat passes {} where secrets were \
             (audit with --no-redact, or mind the difference)",
            redact::MARK
        );
    }
    // The original's environment over ours, but for the values redacted.
    let environment = original
        .environment
        .iter()
        .filter(|(_, value)| !value.contains(redact::MARK))
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect();
    let spec = LaunchSpec {
        program: command.program,
        argv: command.argv,
        credentials: owner.clone(),
        environment,
        sandbox: Some(Sandbox { root: root.clone(), cwd: cwd.clone(), network: options.network }),
    };
    // The command starts here, then enters the root and its directory there.
    let here = std::env::current_dir().context("reading the current directory")?;
    let mut audit =
        Audit::start(original.command.clone(), here.as_os_str().as_bytes().to_vec(), spec.credentials.clone());
    audit.record_environment(spec.command_environment());
    let status = match run::audit_launch(&settings, &spec, audit).await {
        Ok(status) => status,
        Err(err) => {
            eprintln!("reprotrace: error: the repeat could not run: {err}");
            return Ok(COULD_NOT_RUN);
        }
    };
    // The repeat's manifest, in the original run's paths; the outputs hashed
    // as the user.
    let _acting = ActingAs::maybe(owner.as_ref()).context("taking the invoking user's rights")?;
    let mut repeated = Manifest::read(&settings.output)?;
    let root_display = display_bytes(root.as_os_str().as_bytes());
    strip_root(&mut repeated, &root_display);
    repeated.cwd.clone_from(&original.cwd);
    // Software is identified from the host's package databases, at the
    // host's paths: in the root it is the bundle's, the original's by
    // construction; and what it took for data, software or system files.
    repeated.software = original.software.clone();
    for entries in [&mut repeated.data.inputs, &mut repeated.data.outputs] {
        entries.retain(|entry| bytes_of_display(&entry.path).is_some_and(|path| classify::may_be_cell_data(&path)));
    }
    repeated.repeat_of = Some(RepeatOf {
        command: original.command.clone(),
        host: original.host.clone(),
        started_at: original.started_at.clone(),
        bundle: options.bundle.display().to_string(),
        root: root_display,
    });
    repeated.write_atomically(&settings.output)?;

    let mut verdict = IDENTICAL;
    for output in &original.data.outputs {
        let inside = bytes_of_display(&output.path).map(|path| {
            let mut inside = root.as_os_str().as_bytes().to_vec();
            inside.extend_from_slice(&path);
            inside
        });
        let now = inside.as_deref().and_then(classify::sha256_of);
        let said = match (&now, &output.sha256) {
            (None, _) => "missing  ",
            (Some(now), Some(then)) if now == then => "identical",
            // The audit did not hash it: nothing to compare with.
            (Some(_), None) if output.over_hash_limit => "unchecked",
            _ => "DIFFERS  ",
        };
        if said != "identical" {
            verdict = DIFFERENT;
        }
        println!("{said} {}", output.path);
    }
    let exit = status.and_then(crate::event::WaitStatus::exit_code);
    if exit != original.exit_code {
        println!("the command exited {exit:?}, the original run {:?}", original.exit_code);
        verdict = DIFFERENT;
    }
    // What the program looked for and did not find, though this host has it
    // and the original run did not make or remove it: the bundle lacks a
    // file the run needed, which the audit never saw it use.
    let missed = missed_by_the_audit(&repeated.missing_lookups, &original, &index.left_out);
    for path in &missed {
        eprintln!(
            "reprotrace: the program looked for {path}, which the bundle lacks and this host has: a hole in the audit"
        );
    }
    let outputs = original.data.outputs.len();
    if !missed.is_empty() {
        println!(
            "not reproduced: the bundle lacks files the run needed (the repeat's files are in {})",
            root.display()
        );
        return Ok(COULD_NOT_RUN);
    }
    match verdict {
        IDENTICAL => println!("reproduced: {outputs} outputs identical (the repeat's files are in {})", root.display()),
        _ => println!("not reproduced (the repeat's files are in {})", root.display()),
    }
    Ok(verdict)
}

/// Whether `header` says its bundle holds only a part of a run, which
/// cannot be repeated on its own; if so, says why and what to pack instead.
fn refused(bundle: &Path, header: &bundle::Header) -> bool {
    let Some(reason) = header.repeat_refusal() else { return false };
    eprintln!("reprotrace: error: {} cannot be repeated on its own: {reason}", bundle.display());
    true
}

/// The command of a run: its first process's program and argv.
struct Command {
    program: PathBuf,
    argv: Vec<OsString>,
}

fn root_process(manifest: &Manifest) -> Option<Command> {
    let pids: std::collections::BTreeSet<u32> = manifest.processes.iter().map(|process| process.pid).collect();
    let root = manifest.processes.iter().find(|process| process.ppid.is_none_or(|ppid| !pids.contains(&ppid)))?;
    let program = bytes_of_display(root.exe.as_deref()?)?;
    let argv = root
        .argv
        .iter()
        .map(|arg| bytes_of_display(arg).map(|arg| std::ffi::OsStr::from_bytes(&arg).to_os_string()))
        .collect::<Option<Vec<_>>>()?;
    Some(Command { program: PathBuf::from(std::ffi::OsStr::from_bytes(&program)), argv })
}

/// Paths the run used (as `pack` chooses them) that the bundle neither holds
/// (through its links) nor says it left out.
fn holes(original: &Manifest, index: &bundle::Index) -> Vec<String> {
    let entries: std::collections::BTreeMap<Vec<u8>, &bundle::Kind> =
        index.entries.iter().filter_map(|entry| Some((bytes_of_display(&entry.path)?, &entry.kind))).collect();
    let left_out: std::collections::BTreeSet<Vec<u8>> =
        index.left_out.iter().filter_map(|path| bytes_of_display(path)).collect();
    bundle::used_paths(original)
        .into_iter()
        .filter(|path| !left_out.contains(path) && !holds(&entries, path))
        .map(|path| display_bytes(&path))
        .collect()
}

/// Whether `path` resolves, through the bundle's own links, to something it holds.
fn holds(entries: &std::collections::BTreeMap<Vec<u8>, &bundle::Kind>, path: &[u8]) -> bool {
    let mut path = path.to_vec();
    for _ in 0..40 {
        let components: Vec<&[u8]> = path.split(|&byte| byte == b'/').filter(|part| !part.is_empty()).collect();
        let mut prefix = Vec::new();
        let mut followed = None;
        for (position, component) in components.iter().enumerate() {
            prefix.push(b'/');
            prefix.extend_from_slice(component);
            match entries.get(&prefix) {
                None => return false,
                Some(bundle::Kind::Symlink { target }) => {
                    let Some(target) = bytes_of_display(target) else { return false };
                    let parent = crate::tracker::path::parent(&prefix).unwrap_or(b"/");
                    let mut resolved = crate::tracker::path::resolve(parent, &target);
                    for rest in &components[position + 1..] {
                        resolved.push(b'/');
                        resolved.extend_from_slice(rest);
                    }
                    followed = Some(crate::tracker::path::normalize(&resolved));
                    break;
                }
                Some(_) => {}
            }
        }
        match followed {
            Some(next) => path = next,
            None => return true,
        }
    }
    false
}

/// Of the paths a repeat looked for and did not find (in the original's
/// terms), those this host has where the original ran (a file, through its
/// links), outside the trees a repeat provides, that the original run's
/// audit did not see at all (a path it saw is in the bundle or left out on
/// purpose) and that came into being before the original run ended (a file
/// made since, the original run could not have found either).
fn missed_by_the_audit(missing: &[String], original: &Manifest, left_out: &[String]) -> Vec<String> {
    let seen: std::collections::BTreeSet<&str> =
        original.files.iter().map(|file| file.path.as_str()).chain(left_out.iter().map(String::as_str)).collect();
    let ended = humantime::parse_rfc3339(&original.finished_at).ok();
    missing
        .iter()
        .filter(|path| !seen.contains(path.as_str()))
        .filter(|path| {
            bytes_of_display(path).is_some_and(|bytes| {
                !bundle::PROVIDED_TREES.iter().any(|tree| path::is_under(&bytes, tree))
                    && fsaccess::metadata(&bytes).is_ok_and(|metadata| {
                        let born = metadata.created().ok();
                        !metadata.is_dir() && !matches!((born, ended), (Some(born), Some(ended)) if born > ended)
                    })
            })
        })
        .cloned()
        .collect()
}

/// Every path of `manifest` below `root` (its display), made the original's.
fn strip_root(manifest: &mut Manifest, root: &str) {
    let strip = |path: &mut String| {
        if let Some(rest) = path.strip_prefix(root).filter(|rest| rest.starts_with('/')) {
            *path = rest.to_string();
        } else if path == root {
            *path = "/".to_string();
        }
    };
    strip(&mut manifest.cwd);
    for process in &mut manifest.processes {
        process.exe.iter_mut().for_each(strip);
        strip(&mut process.cwd);
        process.interpreters.iter_mut().for_each(strip);
        process.failed_execs.iter_mut().for_each(|failed| strip(&mut failed.path));
    }
    manifest.files.iter_mut().for_each(|file| strip(&mut file.path));
    manifest.missing_lookups.iter_mut().for_each(strip);
    let data = |data: &mut crate::manifest::Data| {
        data.inputs.iter_mut().chain(data.outputs.iter_mut()).for_each(|entry| strip(&mut entry.path));
    };
    data(&mut manifest.data);
    manifest.cells.iter_mut().for_each(|cell| data(&mut cell.data));
    let software = &mut manifest.software;
    software.python.iter_mut().for_each(|distribution| strip(&mut distribution.location));
    software.interpreters.iter_mut().for_each(|interpreter| {
        strip(&mut interpreter.path);
        strip(&mut interpreter.prefix);
    });
    software.executables.iter_mut().chain(software.shared_libraries.iter_mut()).for_each(|file| strip(&mut file.path));
}

/// `OUTDIR` when none is given: a new directory named after the time.
pub fn default_outdir() -> PathBuf {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "");
    Path::new(&format!("reprotrace-repeat-{now}")).to_path_buf()
}
