//! Reproduce, not only record: a run audited, packed, its files moved away,
//! repeated from the bundle alone and its outputs verified; bundles of a
//! part (cells, a host); a bundle with a hole; a Dockerfile.
//!
//! These tests load eBPF programs (the repeat is traced): they need root, and
//! fail (never skip) when the programs cannot load.

use std::{
    collections::BTreeSet,
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use reprotrace_tests::{python_venv, reprotrace_bin, BACKENDS};
use serde_json::Value;

fn reprotrace(args: &[&str], cwd: &Path) -> Output {
    Command::new(reprotrace_bin()).current_dir(cwd).args(args).output().expect("reprotrace")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A venv with a real package (six 1.16.0) the analysis imports.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| python_venv(Path::new(env!("CARGO_TARGET_TMPDIR")), "repeat-venv", &["six==1.16.0"]))
}

/// `run/analysis.py` with `run/data.csv`, run with a copy of the venv in
/// `run/venv` (which the test moves away later).
fn prepare(dir: &Path, script: &str) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    let copied = Command::new("cp").arg("-a").arg(venv()).arg(run.join("venv")).status().expect("cp");
    assert!(copied.success());
    std::fs::write(run.join("analysis.py"), script).expect("script");
    std::fs::write(run.join("data.csv"), "a\nb\nc\n").expect("data");
    run
}

/// `script` run in a fresh copy of the venv under `dir/run`, audited into
/// `dir/run.json` and packed into `dir/run.bundle`; the run's directory.
fn audit_and_pack(dir: &Path, script: &str) -> PathBuf {
    let run = prepare(dir, script);
    assert!(reprotrace(&["run", "-q", "-o", "../run.json", "--", "venv/bin/python", "analysis.py"], &run)
        .status
        .success());
    assert!(reprotrace(&["pack", "-q", "run.json", "-o", "run.bundle"], dir).status.success());
    run
}

const ANALYSIS: &str = "import six\nrows = open('data.csv').read().splitlines()\n\
                        open('result.txt', 'w').write('%d rows, six %s\\n' % (len(rows), six.__version__))\n";

/// The members of a bundle, and its index.
fn bundle_index(bundle: &Path) -> (Vec<String>, Value) {
    let decoder = zstd::Decoder::new(std::fs::File::open(bundle).expect("bundle")).expect("zstd");
    let mut archive = tar::Archive::new(decoder);
    let mut names = Vec::new();
    let mut index = Value::Null;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("name").display().to_string();
        if name == "index.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("index");
            index = serde_json::from_str(&text).expect("JSON");
        }
        names.push(name);
    }
    (names, index)
}

/// A bundle's `bundle.json`.
fn bundle_header(bundle: &Path) -> Value {
    let decoder = zstd::Decoder::new(std::fs::File::open(bundle).expect("bundle")).expect("zstd");
    let mut archive = tar::Archive::new(decoder);
    let mut first = archive.entries().expect("entries").next().expect("a member").expect("entry");
    assert_eq!(first.path().expect("name").display().to_string(), "bundle.json");
    serde_json::from_reader(&mut first).expect("bundle.json")
}

/// `repeat BUNDLE` exits 2 before making anything, saying the bundle cannot
/// be repeated on its own and how to pack one that can (`hint`).
fn assert_not_repeatable(work: &Path, bundle: &str, hint: &str) {
    let refused = reprotrace(&["repeat", "-q", bundle, "--outdir", "never"], work);
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("{bundle} cannot be repeated on its own: it holds ")), "{said}");
    assert!(said.contains(hint) && !said.contains("hole in the audit"), "{said}");
    assert!(!work.join("never").exists(), "refused before anything is made");
}

fn indexed_paths(index: &Value) -> BTreeSet<String> {
    index["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["path"].as_str().expect("path").into())
        .collect()
}

#[test]
fn a_packed_run_repeats_from_the_bundle_alone_and_verifies_its_outputs() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = prepare(dir.path(), ANALYSIS);
        let audited = reprotrace(
            &["run", "-q", "--backend", backend, "-o", "../run.json", "--", "venv/bin/python", "analysis.py"],
            &run,
        );
        assert!(audited.status.success(), "{backend}: {}", text(&audited));
        let packed = reprotrace(&["pack", "run.json", "-o", "run.bundle"], dir.path());
        assert!(packed.status.success(), "{}", text(&packed));
        assert!(text(&packed).contains("packed"), "{}", text(&packed));
        let (members, index) = bundle_index(&dir.path().join("run.bundle"));
        assert_eq!(members.first().map(String::as_str), Some("bundle.json"));
        assert_eq!(members.last().map(String::as_str), Some("index.json"));
        let held = indexed_paths(&index);
        for needed in ["analysis.py", "data.csv", "venv/lib/python3.11/site-packages/six.py"] {
            assert!(held.contains(&run.join(needed).display().to_string()), "{backend}: {needed} not in {held:?}");
        }
        assert!(!held.contains(&run.join("result.txt").display().to_string()), "outputs are not packed");
        // Much smaller than what it came from: only what the run used.
        let venv_size: u64 = walk_size(&run.join("venv"));
        let bundle_size = std::fs::metadata(dir.path().join("run.bundle")).expect("bundle").len();
        assert!(bundle_size < venv_size / 2, "bundle {bundle_size} B, venv {venv_size} B");

        // The Dockerfile of the same run: the recorded OS, pinned packages.
        let exported = reprotrace(&["export", "docker", "run.json", "-o", "docker"], dir.path());
        assert!(exported.status.success(), "{}", text(&exported));
        let dockerfile = std::fs::read_to_string(dir.path().join("docker/Dockerfile")).expect("Dockerfile");
        assert!(dockerfile.lines().any(|line| line.starts_with("FROM debian:")), "{dockerfile}");
        assert!(dockerfile.contains("libc6="), "{dockerfile}");
        let venv = run.join("venv").display().to_string();
        assert!(dockerfile.contains(&format!(r#"RUN ["python3.11","-m","venv","{venv}"]"#)), "{dockerfile}");
        // What makes the venv, at the interpreter's Debian version.
        assert!(dockerfile.contains("\"python3.11-venv=3.11."), "{dockerfile}");
        assert!(dockerfile.contains(r#"CMD ["venv/bin/python","analysis.py"]"#), "{dockerfile}");
        let requirements = std::fs::read_to_string(dir.path().join("docker/requirements.txt")).expect("requirements");
        assert!(requirements.lines().any(|line| line == "six==1.16.0"), "{requirements}");
        // Its data and script are in the context, at their paths.
        let context = dir.path().join("docker/files").join(run.strip_prefix("/").expect("absolute"));
        for name in ["analysis.py", "data.csv"] {
            assert!(context.join(name).is_file(), "{name} is not in the Docker context: {}", text(&exported));
        }
        assert!(!context.join("venv").exists(), "the image remakes the venv: none of its files is copied");

        // Everything the run used moves away: the repeat has the bundle alone.
        std::fs::rename(&run, dir.path().join("moved-away")).expect("move away");
        let repeated = reprotrace(&["repeat", "-q", "run.bundle", "--outdir", "again"], dir.path());
        let said = text(&repeated);
        assert_eq!(repeated.status.code(), Some(0), "{backend}: {said}");
        assert!(said.contains(&format!("identical {}", run.join("result.txt").display())), "{said}");
        let output = dir.path().join("again/root").join(run.join("result.txt").strip_prefix("/").expect("absolute"));
        assert_eq!(std::fs::read_to_string(output).expect("the repeat's output"), "3 rows, six 1.16.0\n");
        assert!(!run.exists(), "never written over the originals");
        let same = reprotrace(&["diff", "run.json", "again/repeat.json"], dir.path());
        assert_eq!(same.status.code(), Some(0), "{}", text(&same));
        assert!(text(&same).contains("reproduced"), "{}", text(&same));
        reprotrace_tests::assert_valid(
            &serde_json::from_slice(&std::fs::read(dir.path().join("again/repeat.json")).expect("manifest"))
                .expect("JSON"),
        );
    }
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |metadata| metadata.len()),
            _ => 0,
        })
        .sum()
}

#[test]
fn a_run_that_writes_the_time_is_not_reproduced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "import time\nopen('stamp.txt', 'w').write(str(time.time_ns()))\n";
    let run = audit_and_pack(dir.path(), script);
    let repeated = reprotrace(&["repeat", "-q", "run.bundle", "--outdir", "again"], dir.path());
    let said = text(&repeated);
    assert_eq!(repeated.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("DIFFERS   {}", run.join("stamp.txt").display())), "{said}");
}

#[test]
fn a_bundle_missing_a_file_the_run_used_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = audit_and_pack(dir.path(), ANALYSIS);
    // The same bundle, without six.py.
    let six = run.join("venv/lib/python3.11/site-packages/six.py").display().to_string();
    rewrite_without(&dir.path().join("run.bundle"), &dir.path().join("holed.bundle"), &six);
    let repeated = reprotrace(&["repeat", "-q", "holed.bundle", "--outdir", "again"], dir.path());
    let said = text(&repeated);
    assert_eq!(repeated.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("the bundle lacks {six}, which the run used")), "{said}");
    // The data file missing from the manifest too, as if the audit had
    // never seen it read: the repeat looks for it, and names it.
    let data = run.join("data.csv").display().to_string();
    rewrite_as_unseen(&dir.path().join("run.bundle"), &dir.path().join("unseen.bundle"), &data);
    let repeated = reprotrace(&["repeat", "-q", "unseen.bundle", "--outdir", "again-unseen"], dir.path());
    let said = text(&repeated);
    assert_eq!(repeated.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("the program looked for {data}, which the bundle lacks")), "{said}");
    assert!(said.contains("a hole in the audit"), "{said}");
    // Only that one: what Python looks for and finds nowhere is no hole.
    assert_eq!(said.matches("the program looked for").count(), 1, "{said}");
    let repeat_manifest: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("again-unseen/repeat.json")).expect("the repeat's manifest"),
    )
    .expect("JSON");
    reprotrace_tests::assert_valid(&repeat_manifest);
    assert!(repeat_manifest["missing_lookups"].as_array().expect("missing lookups").contains(&Value::from(data)));
    // A damaged bundle: refused, clearly.
    let bytes = std::fs::read(dir.path().join("run.bundle")).expect("bundle");
    std::fs::write(dir.path().join("cut.bundle"), &bytes[..bytes.len() / 3]).expect("cut");
    let refused = reprotrace(&["repeat", "-q", "cut.bundle", "--outdir", "again2"], dir.path());
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("corrupt or truncated"), "{}", text(&refused));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("again2")).expect("OUTDIR").flatten().collect();
    assert!(left.is_empty(), "the staging directory is removed: {left:?}");
}

/// As root without sudo, the bundle's owners are restored, but never a
/// setuid or setgid bit, and OUTDIR is its owner's alone.
#[test]
fn a_repeat_never_restores_setuid_bits_and_keeps_its_root_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    audit_and_pack(dir.path(), ANALYSIS);
    // The interpreter the run executed, made root's and setuid by the bundle.
    let mut python = String::new();
    rewrite_index(&dir.path().join("run.bundle"), &dir.path().join("setuid.bundle"), |index| {
        let entry = index["entries"]
            .as_array_mut()
            .expect("entries")
            .iter_mut()
            .find(|entry| {
                entry["kind"]["file"].is_object()
                    && entry["path"].as_str().is_some_and(|path| path.starts_with("/usr/bin/python3"))
            })
            .expect("the interpreter is in the bundle");
        python = entry["path"].as_str().expect("path").to_string();
        entry["mode"] = (0o6755).into();
        (entry["uid"], entry["gid"]) = (0.into(), 0.into());
        None
    });
    let repeated = reprotrace(&["repeat", "run.bundle", "--outdir", "again"], dir.path());
    let repeated_setuid = reprotrace(&["repeat", "setuid.bundle", "--outdir", "again-setuid"], dir.path());
    let said = text(&repeated_setuid);
    assert_eq!(repeated_setuid.status.code(), Some(0), "{said}");
    assert_eq!(said.matches("setuid or setgid bits").count(), 1, "warned once: {said}");
    assert!(said.contains(&format!("setuid or setgid bits on {python}: not restored")), "{said}");
    assert!(!text(&repeated).contains("setuid"), "{}", text(&repeated));
    let unpacked = std::fs::metadata(dir.path().join("again-setuid/root").join(&python[1..])).expect("python");
    assert_eq!((unpacked.mode() & 0o7777, unpacked.uid()), (0o755, 0), "owner restored, bits not");
    for outdir in ["again", "again-setuid"] {
        let mode = std::fs::metadata(dir.path().join(outdir)).expect("OUTDIR").mode() & 0o777;
        assert_eq!(mode, 0o700, "{outdir}: no other user may enter");
    }
}

/// Copies `bundle` to `out` without `path` (its index entry and its content).
fn rewrite_without(bundle: &Path, out: &Path, path: &str) {
    let object = find_object(bundle, path);
    rewrite_index(bundle, out, |index| {
        index["entries"].as_array_mut().expect("entries").retain(|entry| entry["path"] != path);
        Some(object)
    });
}

/// `bundle` without `path`, and its manifest without a word of it: a file the
/// run used and the audit missed.
fn rewrite_as_unseen(bundle: &Path, out: &Path, path: &str) {
    let object = find_object(bundle, path);
    rewrite_members(bundle, out, |index, manifest| {
        index["entries"].as_array_mut().expect("entries").retain(|entry| entry["path"] != path);
        manifest["files"].as_array_mut().expect("files").retain(|file| file["path"] != path);
        manifest["data"]["inputs"].as_array_mut().expect("inputs").retain(|input| input["path"] != path);
        Some(object)
    });
}

/// The bundle member holding `path`'s contents.
fn find_object(bundle: &Path, path: &str) -> String {
    bundle_index(bundle).1["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|entry| entry["path"] == path)
        .and_then(|entry| entry["kind"]["file"]["sha256"].as_str())
        .map(|sha| format!("objects/{sha}"))
        .expect("the file is in the bundle")
}

/// Copies `bundle` to `out` with its index changed by `edit`, which may name
/// a member to leave out.
fn rewrite_index(bundle: &Path, out: &Path, edit: impl FnOnce(&mut Value) -> Option<String>) {
    rewrite_members(bundle, out, |index, _| edit(index));
}

/// Copies `bundle` to `out` with its index and manifest changed by `edit`,
/// which may name a member to leave out.
fn rewrite_members(bundle: &Path, out: &Path, edit: impl FnOnce(&mut Value, &mut Value) -> Option<String>) {
    let decoder = zstd::Decoder::new(std::fs::File::open(bundle).expect("bundle")).expect("zstd");
    let mut archive = tar::Archive::new(decoder);
    let encoder = zstd::Encoder::new(std::fs::File::create(out).expect("out"), 3).expect("zstd");
    let mut builder = tar::Builder::new(encoder);
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("name").display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("member");
        members.push((name, bytes));
    }
    let mut index: Value = serde_json::from_slice(&members.last().expect("index").1).expect("index JSON");
    let manifest_bytes = &members.iter().find(|(name, _)| name == "manifest.json").expect("a manifest").1;
    let mut manifest: Value = serde_json::from_slice(manifest_bytes).expect("manifest JSON");
    let left_out = edit(&mut index, &mut manifest);
    for (name, mut bytes) in members {
        if Some(&name) == left_out.as_ref() {
            continue;
        }
        if name == "index.json" {
            bytes = serde_json::to_vec(&index).expect("JSON");
        }
        if name == "manifest.json" {
            bytes = serde_json::to_vec(&manifest).expect("JSON");
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, bytes.as_slice()).expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("zstd");
}

/// `--cell` holds only that cell's data, `--data-only` no software, `--host`
/// only that host's files.
#[test]
fn bundles_of_a_part_hold_only_their_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    std::fs::write(work.join("first.csv"), "1\n").expect("first");
    std::fs::write(work.join("second.csv"), "2\n").expect("second");
    let jupyter = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jupyter-venv/bin/jupyter");
    let venv = python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "jupyter-venv",
        &["ipykernel", "jupyter_client", "nbconvert", "nbclient", "papermill", "six==1.17.0", "pytest"],
    );
    assert!(jupyter.starts_with(&venv));
    let cell = |id: &str, source: &str| serde_json::json!({"cell_type": "code", "id": id, "metadata": {}, "execution_count": null, "outputs": [], "source": source});
    let notebook = serde_json::json!({"nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [cell("one", "a = open('first.csv').read()"), cell("two", "b = open('second.csv').read()")]});
    std::fs::write(work.join("nb.ipynb"), notebook.to_string()).expect("notebook");
    let ran = Command::new(reprotrace_bin())
        .current_dir(work)
        .args(["run", "-q", "-o", "nb.json", "--"])
        .arg(&jupyter)
        .args(["nbconvert", "--to", "notebook", "--execute", "nb.ipynb", "--output", "out.ipynb"])
        .output()
        .expect("reprotrace run");
    assert!(ran.status.success(), "{}", text(&ran));
    let (first, second) = (work.join("first.csv").display().to_string(), work.join("second.csv").display().to_string());

    let packed = reprotrace(&["pack", "nb.json", "--cell", "1", "-o", "cell1.bundle"], work);
    assert!(packed.status.success(), "{}", text(&packed));
    assert!(text(&packed).contains("`reprotrace repeat` cannot run this bundle on its own"), "{}", text(&packed));
    let held = indexed_paths(&bundle_index(&work.join("cell1.bundle")).1);
    assert!(held.contains(&first) && !held.contains(&second), "{held:?}");
    assert!(held.iter().any(|path| path.ends_with("/bin/python3") || path.contains("/python3.11")), "its software too");
    // It says what it holds, and a repeat refuses it up front, saying how to
    // pack one that can be repeated (not "a hole in the audit").
    let header = bundle_header(&work.join("cell1.bundle"));
    assert_eq!((header["part"].as_str(), header["repeatable"].as_bool()), (Some("cells 1"), Some(false)));
    assert_not_repeatable(work, "cell1.bundle", "without --cell");

    assert!(reprotrace(&["pack", "-q", "nb.json", "--data-only", "-o", "data.bundle"], work).status.success());
    let (members, index) = bundle_index(&work.join("data.bundle"));
    assert_eq!(
        indexed_paths(&index).into_iter().filter(|path| path.ends_with(".csv")).collect::<BTreeSet<_>>(),
        BTreeSet::from([first.clone(), second.clone()])
    );
    assert!(members.contains(&"lists/requirements.txt".to_string()) && members.contains(&"lists/apt.txt".to_string()));
    assert!(!indexed_paths(&index).iter().any(|path| path.contains("site-packages")), "no software");
    assert_not_repeatable(work, "data.bundle", "without --data-only");

    // A host of a distributed run: a worker's audit merged in, then packed alone.
    let worker_file = work.join("worker-only.txt");
    std::fs::write(&worker_file, "w").expect("worker file");
    let mut worker = Command::new("sh")
        .args(["-c", "while [ ! -e go ]; do sleep 0.05; done; cat worker-only.txt > /dev/null; sleep 30"])
        .current_dir(work)
        .spawn()
        .expect("a stand-in worker");
    let mut audit = reprotrace_tests::spawn_until(
        Command::new(reprotrace_bin()).current_dir(work).args([
            "attach",
            "--no-daemon",
            "--pid",
            &worker.id().to_string(),
            "--dask-worker",
            "tcp://10.0.0.9:1",
            "-o",
            "worker.json",
        ]),
        "attached to",
    );
    std::fs::write(work.join("go"), "").expect("go");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(audit.id() as libc::pid_t, libc::SIGINT) };
    assert!(audit.wait().expect("attach").success());
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(reprotrace(&["merge", "-o", "merged.json", "nb.json", "worker.json"], work).status.success());
    let merged: Value =
        serde_json::from_slice(&std::fs::read(work.join("merged.json")).expect("merged")).expect("JSON");
    reprotrace_tests::assert_valid(&merged);
    let host = merged["hosts"][0]["host"].as_str().expect("a host").to_string();
    assert!(reprotrace(&["pack", "-q", "merged.json", "--host", &host, "-o", "host.bundle"], work).status.success());
    let held = indexed_paths(&bundle_index(&work.join("host.bundle")).1);
    assert!(held.contains(&worker_file.display().to_string()), "{held:?}");
    assert!(!held.contains(&first), "not the manager's data");
    assert_not_repeatable(work, "host.bundle", "without --host");
    let unknown = reprotrace(&["pack", "merged.json", "--host", "nowhere", "-o", "x.bundle"], work);
    assert!(text(&unknown).contains("no Dask host \"nowhere\""), "{}", text(&unknown));
}
