//! Notebooks: `reprotrace attach --kernel … --inject-hooks` on a real ipykernel
//! driven by jupyter_client, and `reprotrace run` of a real notebook through
//! nbconvert, with both backends: each cell's manifest exactly as expected.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use reprotrace_tests::{
    assert_valid, python_venv, reprotrace_bin, sha256_of, wait_for, KernelSession, TestUser, BACKENDS,
};
use serde_json::Value;

/// Packages of the Jupyter venv the tests share.
const JUPYTER_PACKAGES: &[&str] =
    &["ipykernel", "jupyter_client", "nbconvert", "nbclient", "papermill", "six==1.17.0", "pytest"];

/// A venv with Jupyter's kernel and clients, made once.
fn jupyter_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| python_venv(Path::new(env!("CARGO_TARGET_TMPDIR")), "jupyter-venv", JUPYTER_PACKAGES))
}

/// A kernel session in `work` on `cells` (written to `work/cells.json`),
/// with the Python `python` starts.
fn start_kernel_session(python: Command, work: &Path, cells: &Value) -> KernelSession {
    std::fs::write(work.join("cells.json"), cells.to_string()).expect("cells");
    KernelSession::start(python, work, Some(&work.join("cells.json")))
}

/// A cell that asks the audit, over its channel, what it knows of the cells
/// so far, and writes the answer to `answer`.
fn ask_the_audit(answer: &str) -> Value {
    let source = format!(
        "import json, reprotrace.channel\n\
         open({answer:?}, 'w').write(json.dumps(reprotrace.channel.current().cells()))\n"
    );
    serde_json::json!(["ask", source])
}

fn paths(section: &Value) -> BTreeSet<String> {
    section.as_array().expect("data list").iter().map(|entry| entry["path"].as_str().expect("path").into()).collect()
}

/// The Python distributions a cell used.
fn python_names(cell: &Value) -> Vec<&str> {
    cell["software"]["python"].as_array().expect("python").iter().filter_map(|d| d["name"].as_str()).collect()
}

/// A cell without what differs between two runs of it (times, pids).
fn comparable_cell(cell: &Value) -> Value {
    let mut cell = cell.clone();
    let object = cell.as_object_mut().expect("cell");
    for volatile in ["started_at", "finished_at", "pids"] {
        object.remove(volatile);
    }
    for section in ["inputs", "outputs"] {
        for entry in object["data"][section].as_array_mut().expect("data") {
            entry.as_object_mut().expect("entry").remove("mtime");
        }
    }
    cell
}

#[test]
fn attaching_to_a_kernel_cuts_the_manifest_per_cell() {
    let venv = jupyter_venv();
    let mut per_backend = Vec::new();
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path();
        std::fs::write(work.join("input.csv"), "a,b\n1,2\n").expect("input");
        std::fs::write(work.join("for_child.txt"), "hello child\n").expect("child input");
        let mut session = KernelSession::start(Command::new(venv.join("bin/python")), work, None);
        let kernel_pid: u32 =
            std::fs::read_to_string(work.join("kernel.pid")).expect("pid").trim().parse().expect("pid number");

        let manifest_path = work.join(format!("{backend}.json"));
        let mut tracer = Command::new(reprotrace_bin())
            .args(["attach", "--backend", backend, "--kernel", &session.connection, "--inject-hooks", "-o"])
            .arg(&manifest_path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("reprotrace attach");
        let mut stderr = BufReader::new(tracer.stderr.take().expect("stderr"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let read = stderr.read_line(&mut line).expect("reading reprotrace's stderr");
            assert!(read > 0, "{backend}: reprotrace ended before the hook was installed:\n{seen}");
            seen.push_str(&line);
            if line.contains("cell hook installed") {
                break;
            }
        }
        std::fs::write(work.join("go"), "").expect("go");
        wait_for(&work.join("done"), "the cells");
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(tracer.id() as libc::pid_t, libc::SIGINT) };
        let status = tracer.wait().expect("reprotrace exits");
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        assert!(status.success(), "{backend}: {seen}{rest}");
        session.stop();

        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        let expected: Value =
            serde_json::from_slice(&std::fs::read(work.join("cells.json")).expect("cells.json")).expect("JSON");
        let cells = manifest["cells"].as_array().expect("cells");
        assert_eq!(cells.len(), 5, "{backend}: {cells:#?}");
        for (cell, want) in cells.iter().zip(expected.as_array().expect("expected cells")) {
            assert_eq!(cell["execution_count"], want["execution_count"], "{backend}");
            assert_eq!(cell["cell_id"], want["cell_id"], "{backend}");
            assert_eq!(cell["code_sha256"], want["code_sha256"], "{backend}");
            assert!(cell["finished_at"].is_string(), "{backend}: every cell ends, the raising one too");
            assert!(cell["pids"].as_array().expect("pids").contains(&Value::from(kernel_pid)), "{backend}");
        }
        let file = |name: &str| BTreeSet::from([work.join(name).display().to_string()]);
        let none = BTreeSet::new();
        assert_eq!(paths(&cells[0]["data"]["inputs"]), file("input.csv"), "{backend}: cell 1 reads");
        assert_eq!(paths(&cells[0]["data"]["outputs"]), none, "{backend}");
        assert_eq!(paths(&cells[1]["data"]["outputs"]), file("out.txt"), "{backend}: cell 2 writes");
        assert_eq!(paths(&cells[1]["data"]["inputs"]), none, "{backend}");
        let imported = python_names(&cells[2]);
        assert_eq!(imported, ["six"], "{backend}: cell 3 imports six");
        assert_eq!(paths(&cells[3]["data"]["inputs"]), file("for_child.txt"), "{backend}: cell 4's child reads");
        assert!(cells[3]["pids"].as_array().expect("pids").len() >= 2, "{backend}: the child belongs to cell 4");
        assert_eq!(paths(&cells[4]["data"]["inputs"]), none, "{backend}");
        let kernel = manifest["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .find(|p| p["pid"] == kernel_pid)
            .expect("the kernel process");
        assert_eq!(kernel["pre_existing"], true, "{backend}");
        assert_eq!(manifest["stats"]["lost_events"], 0, "{backend}");
        per_backend.push(cells.iter().map(comparable_cell).collect::<Vec<_>>());
    }
    // Two sessions in two directories: compare with the directory names
    // unified, and without the hashes of sources that name their directory.
    let strip = |text: &str| -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("/tmp/.tmp") {
            out.push_str(&rest[..at]);
            out.push_str("/tmp/WORK");
            rest = &rest[at + "/tmp/.tmp".len()..];
            rest = &rest[rest.find('/').unwrap_or(rest.len())..];
        }
        out.push_str(rest);
        out
    };
    let ignore_hashes = |cells: &Vec<Value>| -> Value {
        let text = strip(&serde_json::to_string(cells).expect("JSON"));
        let mut cells: Value = serde_json::from_str(&text).expect("JSON");
        for cell in cells.as_array_mut().expect("cells") {
            cell.as_object_mut().expect("cell").remove("code_sha256");
        }
        cells
    };
    assert_eq!(
        ignore_hashes(&per_backend[0]),
        ignore_hashes(&per_backend[1]),
        "per-cell manifests differ between backends"
    );
}

/// The three ways people run a notebook from the command line, each under a
/// plain `reprotrace run`: per-cell sections with no flag and no change to
/// the notebook.
#[test]
fn a_notebook_run_under_reprotrace_is_cut_per_cell() {
    let venv = jupyter_venv();
    let runners: [(&str, &[&str], Option<&str>); 3] = [
        (
            "jupyter",
            &["nbconvert", "--to", "notebook", "--execute", "analysis.ipynb", "--output", "executed.ipynb"],
            Some("executed.ipynb"),
        ),
        ("jupyter", &["execute", "analysis.ipynb"], None),
        ("papermill", &["analysis.ipynb", "executed.ipynb"], Some("executed.ipynb")),
    ];
    for (backend, (runner, runner_args, written)) in
        BACKENDS.iter().flat_map(|backend| runners.iter().map(move |runner| (*backend, runner)))
    {
        let backend = format!("{backend} ({runner} {})", runner_args[0]);
        let backend_name = backend.split(' ').next().expect("a backend");
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path();
        std::fs::write(work.join("input.csv"), "x\n1\n").expect("input");
        let cell = |id: &str, source: &str| {
            serde_json::json!({"cell_type": "code", "id": id, "metadata": {}, "execution_count": null,
                               "outputs": [], "source": source})
        };
        let notebook = serde_json::json!({
            "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [
                cell("load", "rows = open('input.csv').read().splitlines()"),
                cell("save", "open('result.txt', 'w').write(str(len(rows)))"),
                cell("six", "import six"),
            ]
        });
        std::fs::write(work.join("analysis.ipynb"), notebook.to_string()).expect("notebook");
        let manifest_path = work.join(format!("{backend_name}.json"));
        let output = Command::new(reprotrace_bin())
            .current_dir(work)
            .args(["run", "--quiet", "--backend", backend_name, "-o"])
            .arg(&manifest_path)
            .arg("--")
            .arg(venv.join("bin").join(runner))
            .args(*runner_args)
            .output()
            .expect("reprotrace run");
        assert!(output.status.success(), "{backend}: {}", String::from_utf8_lossy(&output.stderr));
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        let cells = manifest["cells"].as_array().expect("cells");
        // nbclient sends no cell ids (JupyterLab does): the cells are known by count.
        let counts: Vec<&Value> = cells.iter().map(|c| &c["execution_count"]).collect();
        assert_eq!(counts, [&Value::from(1), &Value::from(2), &Value::from(3)], "{backend}");
        let file = |name: &str| BTreeSet::from([work.join(name).display().to_string()]);
        assert_eq!(paths(&cells[0]["data"]["inputs"]), file("input.csv"), "{backend}");
        assert_eq!(paths(&cells[1]["data"]["outputs"]), file("result.txt"), "{backend}");
        let imported = python_names(&cells[2]);
        assert_eq!(imported, ["six"], "{backend}");
        // The hook went to the kernel only, over its own protocol: its
        // environment, and everyone else's, untouched.
        let hooked: Vec<&Value> = manifest["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter(|process| process["cell_hook"] == true)
            .collect();
        assert_eq!(hooked.len(), 1, "{backend}: {:#}", manifest["processes"]);
        assert!(hooked[0]["argv"].to_string().contains("ipykernel_launcher"), "{backend}: {}", hooked[0]);
        // The run as a whole read the notebook and wrote the executed copy.
        assert!(paths(&manifest["data"]["inputs"]).contains(&work.join("analysis.ipynb").display().to_string()));
        if let Some(written) = written {
            let outputs = paths(&manifest["data"]["outputs"]);
            assert!(outputs.contains(&work.join(written).display().to_string()), "{backend}: {outputs:?}");
        }
    }
}

/// `attach --kernel` without `--inject-hooks` still listens for the kernel:
/// a user who types `%load_ext reprotrace` gets an audit that waits at each
/// cell's end, and answers it.
#[test]
fn a_hand_loaded_extension_finds_the_attached_audit() {
    let venv = jupyter_venv();
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    std::fs::write(work.join("x.txt"), "v1").expect("x");
    let x = work.join("x.txt").display().to_string();
    let answer = work.join("answer.json").display().to_string();
    let status = work.join("status.txt").display().to_string();
    let package = reprotrace_tests::repo_root().join("python").display().to_string();
    let cells = serde_json::json!([
        [
            "load",
            format!(
                "import sys; sys.path.insert(0, {package:?})\n\
                 %load_ext reprotrace\n\
                 import reprotrace; open({status:?}, 'w').write(reprotrace.status_line())\n"
            )
        ],
        ["peek", format!("before = open({x:?}).read()\n")],
        ["overwrite", format!("open({x:?}, 'w').write('v2')\n")],
        ask_the_audit(&answer),
    ]);
    let session = start_kernel_session(Command::new(venv.join("bin/python")), work, &cells);
    let manifest_path = work.join("session.json");
    let tracer = reprotrace_tests::spawn_until(
        Command::new(reprotrace_bin()).args(["attach", "--kernel", &session.connection, "-o"]).arg(&manifest_path),
        "attached to",
    );
    session.run_cells_then_detach(tracer);

    let said = std::fs::read_to_string(work.join("status.txt")).expect("status line");
    assert!(said.contains("an audit is listening"), "{said}");
    let answer: Value =
        serde_json::from_slice(&std::fs::read(work.join("answer.json")).expect("answer")).expect("JSON");
    assert_eq!(answer["ok"], true, "{answer}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    assert_valid(&manifest);
    let cells = manifest["cells"].as_array().expect("cells");
    let peek = cells.iter().find(|cell| cell["cell_id"] == "peek").unwrap_or_else(|| panic!("{cells:#?}"));
    assert_eq!(peek["data"]["inputs"][0]["sha256"], sha256_of("v1"), "as the cell read it: {peek:#}");
}

/// Injecting the hook into another user's kernel runs nothing as root: the
/// hook's code goes over the kernel's own protocol and runs inside the
/// kernel, as its owner, and reprotrace starts no interpreter (every exec of
/// the attach is traced here, by strace).
#[test]
fn injecting_into_another_users_kernel_runs_nothing_as_root() {
    let venv = jupyter_venv();
    let user = TestUser::create("kern");
    let home = user.home();
    let work = home.path();
    let cells = serde_json::json!([["whoami", "import os\nopen('uid.txt', 'w').write(str(os.getuid()))\n"]]);
    let mut as_user = user.command(venv.join("bin/python"));
    as_user.env("HOME", work).env("JUPYTER_RUNTIME_DIR", work.join("runtime"));
    let mut session = start_kernel_session(as_user, work, &cells);
    let mine = tempfile::tempdir().expect("tempdir");
    let execs = mine.path().join("execs.log");
    let mut strace = reprotrace_tests::spawn_until(
        Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=execve,execveat", "-o"])
            .arg(&execs)
            .arg(reprotrace_bin())
            .args(["attach", "--all-users", "--kernel", &session.connection, "--inject-hooks", "-o"])
            .arg(mine.path().join("session.json")),
        "cell hook installed",
    );
    std::fs::write(work.join("go"), "").expect("go");
    wait_for(&work.join("done"), "the cells");
    // reprotrace is strace's child: it is the one told to detach.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id())).expect("children");
    let attach: i32 = children.split_whitespace().next().and_then(|pid| pid.parse().ok()).expect("reprotrace's pid");
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(attach, libc::SIGINT) };
    assert!(strace.wait().expect("strace exits").success());
    session.stop();

    assert_eq!(std::fs::read_to_string(work.join("uid.txt")).expect("uid"), user.uid.to_string());
    let log = std::fs::read_to_string(&execs).expect("exec log");
    let programs: Vec<&str> =
        log.lines().filter(|line| line.contains("= 0")).filter_map(|line| line.split('"').nth(1)).collect();
    let ours = reprotrace_bin().display().to_string();
    assert!(programs.iter().all(|program| *program == ours), "reprotrace ran {programs:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(mine.path().join("session.json")).expect("manifest")).expect("JSON");
    assert_eq!(manifest["cells"].as_array().map(Vec::len), Some(1), "{:#}", manifest["cells"]);
}

#[test]
fn attach_errors_are_clear() {
    for (args, message) in [
        (vec!["attach", "--pid", "4000000"], "no process 4000000"),
        (vec!["attach", "--kernel", "no-such-kernel-id"], "no Jupyter kernel no-such-kernel-id"),
        (vec!["attach"], "nothing to attach to"),
    ] {
        let output = Command::new(reprotrace_bin()).args(&args).output().expect("reprotrace attach");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn attaching_to_a_pid_follows_it_until_it_exits() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path();
        std::fs::write(work.join("polled.txt"), "data\n").expect("polled file");
        let program = "import os, time\n\
            while not os.path.exists('stop'):\n\
            \x20   open('polled.txt').read()\n\
            \x20   time.sleep(0.02)\n\
            open('result.txt', 'w').write('done')\n";
        let mut worker =
            Command::new("/usr/bin/python3").current_dir(work).args(["-c", program]).spawn().expect("worker");
        let manifest_path = work.join(format!("{backend}.json"));
        let mut tracer = Command::new(reprotrace_bin())
            .args(["attach", "--backend", backend, "--pid", &worker.id().to_string(), "-o"])
            .arg(&manifest_path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("reprotrace attach");
        let mut stderr = BufReader::new(tracer.stderr.take().expect("stderr"));
        let mut line = String::new();
        while !line.contains("attached to 1 processes") {
            line.clear();
            assert!(stderr.read_line(&mut line).expect("stderr") > 0, "{backend}: reprotrace ended early");
        }
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(work.join("stop"), "").expect("stop");
        assert!(worker.wait().expect("worker exits").success());
        // The worker's exit ends the audit by itself.
        assert!(tracer.wait().expect("reprotrace exits").success(), "{backend}");
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        let process = &manifest["processes"][0];
        assert_eq!(
            (process["pid"].as_u64(), &process["pre_existing"]),
            (Some(u64::from(worker.id())), &Value::Bool(true))
        );
        assert_eq!(process["exit_code"], 0, "{backend}");
        let file = |name: &str| BTreeSet::from([work.join(name).display().to_string()]);
        assert_eq!(paths(&manifest["data"]["inputs"]), file("polled.txt"), "{backend}");
        assert_eq!(paths(&manifest["data"]["outputs"]), file("result.txt"), "{backend}");
    }
}

#[test]
fn the_python_hook_passes_its_own_tests() {
    let venv = jupyter_venv();
    let python_dir = reprotrace_tests::repo_root().join("python");
    let output = Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(python_dir.join("tests"))
        .current_dir(&python_dir)
        .env("PYTHONPATH", &python_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("pytest");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}{}", String::from_utf8_lossy(&output.stderr));
    // Every test must run here (ipykernel, jupyter_client and strace are
    // present), but those of syntax newer than Debian's Python.
    let skipped: Vec<&str> = report.lines().filter(|line| line.starts_with("SKIPPED")).collect();
    assert!(skipped.iter().all(|line| line.contains("need Python 3.12")), "{report}");
}

fn reprotrace(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(reprotrace_bin()).current_dir(cwd).args(args).output().expect("reprotrace")
}

/// A notebook's cells as they saw their files, their errors and names, and
/// what `stale` and `show` make of them: nbconvert under `reprotrace run`,
/// both backends.
#[test]
fn cells_carry_what_they_saw_and_stale_says_what_changed() {
    let venv = jupyter_venv();
    let cell = |id: &str, source: &str| {
        serde_json::json!({"cell_type": "code", "id": id, "metadata": {}, "execution_count": null,
                           "outputs": [], "source": source})
    };
    let notebook = |overwrite: &str| {
        serde_json::json!({
            "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [
                cell("load", "rows = open('data.csv').read().splitlines()"),
                cell("count", "n = len(rows)"),
                cell("peek", "before = open('x.txt').read()"),
                cell("overwrite", overwrite),
                cell("fail", "raise ValueError('boom: not a number')"),
                cell("save", "open('n.txt', 'w').write(str(n))"),
            ]
        })
    };
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path();
        std::fs::write(work.join("data.csv"), "a\nb\nc\n").expect("data");
        std::fs::write(work.join("x.txt"), "v1").expect("x");
        std::fs::write(work.join("nb.ipynb"), notebook("open('x.txt', 'w').write('v2')").to_string())
            .expect("notebook");
        let manifest = work.join("run.json");
        let output = Command::new(reprotrace_bin())
            .current_dir(work)
            .args(["run", "--quiet", "--backend", backend, "-o"])
            .arg(&manifest)
            .arg("--")
            .arg(venv.join("bin/jupyter"))
            .args(["nbconvert", "--to", "notebook", "--execute", "--allow-errors", "nb.ipynb", "--output", "out.ipynb"])
            .output()
            .expect("reprotrace run");
        assert!(output.status.success(), "{backend}: {}", String::from_utf8_lossy(&output.stderr));
        let run: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("JSON");
        assert_valid(&run);
        let cells = run["cells"].as_array().expect("cells");
        let ids: Vec<&str> = cells.iter().filter_map(|cell| cell["cell_id"].as_str()).collect();
        assert_eq!(ids, ["load", "count", "peek", "overwrite", "fail", "save"], "{backend}: ids from the notebook");
        let x = work.join("x.txt").display().to_string();
        // The cell that read x.txt saw v1; the one that overwrote it left v2.
        let peek = &cells[2]["data"]["inputs"][0];
        assert_eq!(
            (peek["path"].as_str(), peek["sha256"].as_str()),
            (Some(x.as_str()), Some(sha256_of("v1").as_str()))
        );
        let overwrite = &cells[3]["data"]["outputs"][0];
        assert_eq!(
            (overwrite["path"].as_str(), overwrite["sha256"].as_str()),
            (Some(x.as_str()), Some(sha256_of("v2").as_str()))
        );
        // The failing cell: its error, and not the traceback's software.
        assert_eq!(cells[4]["error"], serde_json::json!({"ename": "ValueError", "evalue": "boom: not a number"}));
        assert!(cells[3]["error"].is_null());
        let failing_software = cells[4]["software"]["python"].to_string().to_lowercase();
        for machinery in ["pygments", "stack_data", "stack-data", "asttokens", "executing", "pure_eval", "pure-eval"] {
            assert!(!failing_software.contains(machinery), "{backend}: {machinery} in {failing_software}");
        }
        assert_eq!(cells[0]["names"]["defines"], serde_json::json!(["rows"]));
        assert_eq!(cells[1]["names"]["uses"], serde_json::json!(["rows"]));
        assert_eq!(cells[5]["names"]["uses"], serde_json::json!(["n"]));

        // Nothing changed since: nothing stale; the run's own overwrite is a note.
        let manifest_arg = manifest.to_str().expect("utf-8");
        let fresh = reprotrace(&["stale", manifest_arg], work);
        let text = String::from_utf8_lossy(&fresh.stdout);
        assert_eq!(fresh.status.code(), Some(0), "{backend}: {text}");
        assert!(text.contains("a re-run from the top reads what cell [4] (overwrite) wrote"), "{backend}: {text}");
        // data.csv changes: its reader is stale, and what depends on it by name.
        std::fs::write(work.join("data.csv"), "a\nb\n").expect("data");
        let changed = reprotrace(&["stale", "--json", manifest_arg], work);
        assert_eq!(changed.status.code(), Some(1), "{backend}");
        let report: Value = serde_json::from_slice(&changed.stdout).expect("JSON");
        let stale: Vec<(u64, &str)> = report["stale"]
            .as_array()
            .expect("stale")
            .iter()
            .map(|cell| (cell["execution_count"].as_u64().expect("count"), cell["cell_id"].as_str().expect("id")))
            .collect();
        assert_eq!(stale, [(1, "load"), (2, "count"), (6, "save")], "{backend}: {report:#}");
        assert!(report["stale"][1]["reasons"][0].as_str().expect("reason").contains("it uses rows"), "{report:#}");
        std::fs::write(work.join("data.csv"), "a\nb\nc\n").expect("data");
        // A cell's source changes in the notebook: that cell is stale.
        std::fs::write(work.join("nb.ipynb"), notebook("open('x.txt', 'w').write('v3')").to_string())
            .expect("notebook");
        let edited = reprotrace(&["stale", "--notebook", "nb.ipynb", manifest_arg], work);
        let text = String::from_utf8_lossy(&edited.stdout);
        assert_eq!(edited.status.code(), Some(1), "{backend}: {text}");
        assert!(
            text.contains("cell [4] (overwrite) is stale: its source changed in the notebook"),
            "{backend}: {text}"
        );
        assert_eq!(text.lines().filter(|line| line.contains("is stale")).count(), 1, "{backend}: {text}");
        let broken = reprotrace(&["stale", "no-such.json"], work);
        assert_eq!(broken.status.code(), Some(2));

        // show: the essentials, without jq.
        let shown = reprotrace(&["show", manifest_arg], work);
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success(), "{text}");
        for expected in ["Cells (6)", "[5] fail", "ValueError: boom: not a number", "data.csv", "Processes"] {
            assert!(text.contains(expected), "{backend}: no {expected:?} in\n{text}");
        }
        assert!(!text.contains('\u{1b}'), "no colours off a terminal");

        // report: one page, the stale cell marked (rendered in a browser by tests/report.rs).
        let page = work.join("report.html");
        let written = reprotrace(&["report", manifest_arg, "--notebook", "nb.ipynb", "-o", "report.html"], work);
        assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
        let html = std::fs::read_to_string(&page).expect("report");
        for expected in ["<svg", "boom: not a number", "its source changed in the notebook"] {
            assert!(html.contains(expected), "{backend}: no {expected:?} in the report");
        }
    }
}

/// `attach --kernel … --inject-hooks` on a kernel driven by jupyter_client:
/// a cell's input hashed as it read it though the next cell overwrites it,
/// a failing cell's error, and the kernel's own view over the hook's channel
/// (what `%reprotrace` shows), both backends.
#[test]
fn an_attached_kernels_cells_see_their_files_and_ask_the_audit() {
    let venv = jupyter_venv();
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path();
        std::fs::write(work.join("x.txt"), "v1").expect("x");
        let x = work.join("x.txt").display().to_string();
        let answer = work.join("answer.json").display().to_string();
        let cells = serde_json::json!([
            ["peek", format!("before = open({x:?}).read()\n")],
            ["overwrite", format!("open({x:?}, 'w').write('v2')\n")],
            ["fail", "raise KeyError('missing')\n"],
            ask_the_audit(&answer),
        ]);
        let session = start_kernel_session(Command::new(venv.join("bin/python")), work, &cells);
        let manifest_path = work.join("session.json");
        let tracer = reprotrace_tests::spawn_until(
            Command::new(reprotrace_bin())
                .args(["attach", "--backend", backend, "--kernel", &session.connection, "--inject-hooks", "-o"])
                .arg(&manifest_path),
            "cell hook installed",
        );
        session.run_cells_then_detach(tracer);

        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        let cells = manifest["cells"].as_array().expect("cells");
        assert_eq!(cells.len(), 4, "{backend}: {cells:#?}");
        assert_eq!(cells[0]["data"]["inputs"][0]["sha256"], sha256_of("v1"), "{backend}: as cell 1 read it");
        assert_eq!(cells[1]["data"]["outputs"][0]["sha256"], sha256_of("v2"), "{backend}: as cell 2 left it");
        assert_eq!(cells[2]["error"], serde_json::json!({"ename": "KeyError", "evalue": "'missing'"}), "{backend}");
        // The kernel asked the audit while it ran: cells 1–3, cell 1's input
        // overwritten by the run itself (a note, not staleness).
        let answer: Value =
            serde_json::from_slice(&std::fs::read(work.join("answer.json")).expect("answer")).expect("JSON");
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(answer["cells"].as_array().map(Vec::len), Some(3), "{backend}: {answer:#}");
        assert_eq!(answer["cells"][0]["inputs"], serde_json::json!([x]), "{backend}");
        assert_eq!(answer["cells"][2]["error"]["ename"], "KeyError");
        assert!(answer["stale"].as_array().expect("stale").is_empty(), "{backend}: {answer:#}");
        assert!(answer["notes"][0].as_str().expect("a note").contains("a re-run from the top"), "{answer:#}");
    }
}
