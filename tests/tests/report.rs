//! `reprotrace report`: the HTML page of real manifests, loaded in a real
//! browser (Debian's headless Chromium). The page must render its sections
//! and its dependency graph (as many nodes and edges as the manifest says,
//! none overlapping), raise no script or console error, and load nothing:
//! every host name resolves to nothing, and Chromium's network log must show
//! no request from the page.
//!
//! Chromium is required: the tests fail, never skip, without it (`cargo xtask
//! setup` installs it). Set `REPROTRACE_REPORT_DIR` to keep the pages made.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use reprotrace::{
    manifest::Manifest,
    stale::{FileNow, StaleCell, StaleReport},
};
use reprotrace_tests::{assert_valid, audit, python_venv, reprotrace_bin};
use serde_json::{json, Value};

/// How long one page may take to load.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium of Debian's `chromium` package.
fn chromium() -> PathBuf {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium is missing: these tests load the report in headless Chromium; \
             `cargo xtask setup` installs it (apt-get install chromium)"
        )
    })
}

/// What the browser made of a page.
struct Loaded {
    /// The DOM after loading, serialized.
    dom: String,
    /// Console messages and uncaught errors, from Chromium's log.
    console: Vec<String>,
    /// Requests the page made (its own file:// load aside).
    requests: Vec<String>,
}

impl Loaded {
    fn assert_clean(&self, what: &str) {
        assert!(self.console.is_empty(), "{what}: the page logged to the console:\n{}", self.console.join("\n"));
        assert!(self.requests.is_empty(), "{what}: the page made requests:\n{}", self.requests.join("\n"));
    }
}

/// Loads `page` in headless Chromium: its DOM with `--dump-dom`, or a
/// screenshot of its first `height` pixels into `screenshot`.
fn load(page: &Path, screenshot: Option<(&Path, u32)>) -> Loaded {
    let scratch = tempfile::tempdir().expect("tempdir");
    let net_log = scratch.path().join("net-log.json");
    let (stdout, stderr) = (scratch.path().join("stdout"), scratch.path().join("stderr"));
    let mut command = Command::new(chromium());
    command
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        // No name resolves: nothing can reach the network, whatever asks.
        .arg("--host-resolver-rules=MAP * ~NOTFOUND")
        .args(["--no-first-run", "--disable-extensions", "--disable-background-networking", "--disable-sync"])
        .args(["--disable-component-update", "--disable-default-apps", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", scratch.path().join("profile").display()))
        .arg(format!("--log-net-log={}", net_log.display()));
    match screenshot {
        Some((png, height)) => {
            command.arg(format!("--screenshot={}", png.display())).arg(format!("--window-size=1280,{height}"))
        }
        None => command.arg("--dump-dom"),
    };
    command
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        // Its own process group, so a hung browser goes with all its children.
        .process_group(0);
    let mut child = command.spawn().expect("starting chromium");
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: kill has no memory effects; the group is the browser's own.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            panic!("chromium did not finish loading {} in {BROWSER_TIMEOUT:?}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&stderr).expect("chromium's stderr");
    assert!(status.success(), "chromium failed ({status}) on {}:\n{log}", page.display());
    let console = log
        .lines()
        .filter(|line| {
            line.contains(":CONSOLE") || line.contains("Uncaught") || line.contains("Content Security Policy")
        })
        .map(str::to_string)
        .collect();
    Loaded {
        dom: std::fs::read_to_string(&stdout).expect("chromium's stdout"),
        console,
        requests: page_requests(&std::fs::read(&net_log).expect("chromium's network log")),
    }
}

/// The URL requests in a Chromium network log that a page made: Chromium's
/// own (updates, sign-in, which fail to resolve here) have no origin.
fn page_requests(net_log: &[u8]) -> Vec<String> {
    let log: Value = serde_json::from_slice(net_log).expect("the network log is JSON");
    let start_job = &log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    assert!(start_job.is_u64(), "no URL_REQUEST_START_JOB in the network log's constants");
    log["events"]
        .as_array()
        .expect("network log events")
        .iter()
        .filter(|event| &event["type"] == start_job)
        .filter_map(|event| {
            let params = &event["params"];
            let url = params["url"].as_str()?;
            (params["initiator"] != "not an origin").then(|| format!("{url} (initiator {})", params["initiator"]))
        })
        .collect()
}

/// Writes the report of `manifest` into `dir` (and `REPROTRACE_REPORT_DIR`).
fn write_report(manifest: &Value, stale: &StaleReport, dir: &Path, name: &str) -> PathBuf {
    let manifest: Manifest = serde_json::from_value(manifest.clone()).expect("the manifest's types read it");
    let started = Instant::now();
    let page = reprotrace::report::render(&manifest, stale);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "rendering took {took:?}");
    let path = dir.join(format!("{name}.html"));
    std::fs::write(&path, &page).expect("writing the report");
    if let Some(keep) = std::env::var_os("REPROTRACE_REPORT_DIR") {
        std::fs::create_dir_all(&keep).expect("REPROTRACE_REPORT_DIR");
        std::fs::write(Path::new(&keep).join(format!("{name}.html")), &page).expect("keeping the report");
    }
    path
}

/// The graph the report must draw: (steps, files, edges). One step per cell
/// (or one for a run outside notebooks), one node per data file; an edge for
/// each file a step (or a Dask task it submitted) read or wrote, and one from
/// the latest earlier cell that defined a name to each cell that uses it.
fn expected_graph(manifest: &Value) -> (usize, usize, usize) {
    let cells = manifest["cells"].as_array().expect("cells");
    let tasks = manifest["tasks"].as_array().cloned().unwrap_or_default();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    let mut files: BTreeSet<String> = BTreeSet::new();
    let mut add = |step: usize, data: &Value| {
        for (section, reads) in [("inputs", true), ("outputs", false)] {
            for entry in data[section].as_array().expect("data section") {
                let file = entry["path"].as_str().expect("path").to_string();
                files.insert(file.clone());
                let step = format!("step {step}");
                edges.insert(if reads { (file, step) } else { (step, file) });
            }
        }
    };
    let steps = if cells.is_empty() {
        add(0, &manifest["data"]);
        for task in &tasks {
            add(0, &task["data"]);
        }
        usize::from(!edges.is_empty())
    } else {
        for (index, cell) in cells.iter().enumerate() {
            add(index, &cell["data"]);
        }
        for task in &tasks {
            if let Some(index) = cells.iter().position(|cell| cell["execution_count"] == task["cell"]) {
                add(index, &task["data"]);
            }
        }
        let mut defined_by: BTreeMap<String, usize> = BTreeMap::new();
        for (index, cell) in cells.iter().enumerate() {
            let names = |key: &str| -> Vec<String> {
                cell["names"][key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            };
            for name in names("uses") {
                if let Some(definer) = defined_by.get(&name) {
                    edges.insert((format!("step {definer}"), format!("step {index}")));
                }
            }
            for name in names("deletes") {
                defined_by.remove(&name);
            }
            for name in names("defines") {
                defined_by.insert(name, index);
            }
        }
        cells.len()
    };
    (steps, files.len(), edges.len())
}

/// The `x`, `y`, `width` and `height` of every `<rect>` in the DOM's graph.
fn graph_rects(dom: &str) -> Vec<[f64; 4]> {
    let svg = &dom[dom.find("<svg class=\"graph\"").expect("the graph's svg")..];
    let svg = &svg[..svg.find("</svg>").expect("the svg's end")];
    let attribute = |tag: &str, name: &str| -> f64 {
        let start = tag.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("{name} in {tag}")) + name.len() + 3;
        tag[start..start + tag[start..].find('"').expect("quote")].parse().expect("a number")
    };
    svg.split("<rect").skip(1).map(|tag| ["x", "y", "width", "height"].map(|name| attribute(tag, name))).collect()
}

/// Checks the DOM of a report: its sections, its graph's nodes and edges.
fn check_report(manifest: &Value, dom: &str, what: &str) {
    for section in ["id=\"top\"", "id=\"data\"", "id=\"processes\"", "id=\"software\"", "id=\"files\""] {
        assert!(dom.contains(section), "{what}: no {section}");
    }
    let cells = manifest["cells"].as_array().expect("cells").len();
    if cells > 0 {
        assert!(dom.contains("id=\"cells\""), "{what}: no cells");
        assert_eq!(dom.matches("<li class=\"cell").count(), cells, "{what}: the timeline's cells");
    }
    let (steps, files, edges) = expected_graph(manifest);
    assert!(dom.contains("<svg class=\"graph\""), "{what}: no graph");
    let step_nodes = dom.matches("class=\"node cell").count() + dom.matches("class=\"node run\"").count();
    assert_eq!(step_nodes, steps, "{what}: step nodes");
    assert_eq!(dom.matches("class=\"node file").count(), files, "{what}: file nodes");
    assert_eq!(dom.matches("<path class=\"edge").count(), edges, "{what}: edges");
    let rects = graph_rects(dom);
    assert_eq!(rects.len(), steps + files, "{what}: one box per node");
    for (a, [x1, y1, w1, h1]) in rects.iter().enumerate() {
        for [x2, y2, w2, h2] in &rects[a + 1..] {
            let apart = x1 + w1 <= *x2 || x2 + w2 <= *x1 || y1 + h1 <= *y2 || y2 + h2 <= *y1;
            assert!(apart, "{what}: nodes overlap: {:?} {:?}", [x1, y1, w1, h1], [x2, y2, w2, h2]);
        }
    }
}

#[test]
fn the_browser_checks_catch_errors_and_requests() {
    // Without this, a clean result would prove nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><title>bad</title><link rel=\"stylesheet\" href=\"https://cdn.example/x.css\">\
         </head><body><img src=\"http://example.invalid/x.png\"><script>undefinedFunction();</script></body></html>",
    )
    .expect("page");
    let loaded = load(&page, None);
    assert!(loaded.console.iter().any(|line| line.contains("undefinedFunction")), "{:?}", loaded.console);
    assert!(loaded.requests.iter().any(|url| url.contains("cdn.example")), "{:?}", loaded.requests);
    assert!(loaded.requests.iter().any(|url| url.contains("example.invalid")), "{:?}", loaded.requests);
}

/// A program that reads and writes files, names one with markup and one
/// with a byte that is not UTF-8, runs a child, and fails.
const SCRIPT: &str = r#"
import subprocess, sys
rows = open("inputs/measurements.csv").read().splitlines()
open("outputs/summary.txt", "w").write(f"{len(rows)} rows\n")
open("outputs/a<b&\"c'.txt", "w").write("markup in a name\n")
open(b"outputs/caf\xe9.txt", "wb").write(b"a Latin-1 name\n")
subprocess.run(["/bin/sh", "-c", "cat inputs/notes.txt > outputs/notes-copy.txt"], check=True)
sys.exit(3)
"#;

#[test]
fn a_real_run_renders_in_the_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("inputs")).expect("inputs");
    std::fs::create_dir_all(work.join("outputs")).expect("outputs");
    std::fs::write(work.join("inputs/measurements.csv"), "x,y\n1,2\n3,4\n").expect("input");
    std::fs::write(work.join("inputs/notes.txt"), "notes\n").expect("input");
    std::fs::write(work.join("script.py"), SCRIPT).expect("script");
    let run = audit("strace", &work, dir.path(), &["/usr/bin/python3", "script.py"]);
    assert_eq!(run.output.status.code(), Some(3), "{}", run.stderr());
    let manifest = run.manifest;
    assert_eq!(manifest["data"]["outputs"].as_array().expect("outputs").len(), 4, "{manifest:#}");

    let page = write_report(&manifest, &StaleReport::default(), dir.path(), "run");
    let loaded = load(&page, None);
    loaded.assert_clean("a script's report");
    check_report(&manifest, &loaded.dom, "a script's report");
    let dom = &loaded.dom;
    assert!(dom.contains("exit 3"), "the run's exit code");
    assert!(dom.contains("a&lt;b&amp;\"c'.txt"), "a name with markup is text");
    assert!(dom.contains(r"caf\xe9.txt"), "the manifest's escape shows as it is");
    assert!(dom.contains("class=\"node run\""), "outside notebooks, the run is the graph's one step");
    // The process tree: python, and its child shell under it, and cat under that.
    let python = dom.find("<b>/usr/bin/python3</b>").expect("python in the tree");
    let shell = dom.find("<b>/bin/sh</b>").expect("the shell in the tree");
    assert!(python < shell && dom[python..shell].contains("<ul>"), "the shell is nested under python");
}

/// Packages of the Jupyter venv: the same list as notebook.rs's, so the
/// two share the venv.
const JUPYTER_PACKAGES: &[&str] = &["ipykernel", "jupyter_client", "nbconvert", "nbclient", "six==1.17.0", "pytest"];

fn jupyter_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| python_venv(Path::new(env!("CARGO_TARGET_TMPDIR")), "jupyter-venv", JUPYTER_PACKAGES))
}

/// A small analysis: cells that read data, pass names along, write
/// results that later cells read, run a child, import a package, and raise.
const NOTEBOOK_CELLS: &[(&str, &str)] = &[
    ("load", "import csv, json\nrows = list(csv.DictReader(open('data/measurements.csv')))"),
    ("config", "config = json.load(open('config.json'))"),
    ("clean", "clean = [row for row in rows if float(row['value']) >= config['threshold']]"),
    ("save", "with open('out/clean.csv', 'w') as f:\n    f.write('\\n'.join(row['value'] for row in clean))"),
    ("count", "import subprocess\nsubprocess.run(['wc', '-l', 'out/clean.csv'], check=True)"),
    ("summary", "summary = {'n': len(clean)}\njson.dump(summary, open('out/summary.json', 'w'))"),
    ("report", "import six\nreport = open('out/summary.json').read() + open('notes.txt').read()"),
    ("check", "if summary['n'] < 10:\n    raise ValueError(f\"only {summary['n']} rows <= threshold & co\")"),
    ("write", "open('out/report.txt', 'w').write(report)"),
];

#[test]
fn a_real_notebook_renders_with_its_graph_and_stale_cells() {
    let venv = jupyter_venv();
    let dir = tempfile::Builder::new().prefix("notebook-").tempdir().expect("tempdir");
    let work = dir.path();
    std::fs::create_dir_all(work.join("data")).expect("data");
    std::fs::create_dir_all(work.join("out")).expect("out");
    std::fs::write(work.join("data/measurements.csv"), "name,value\na,1\nb,5\nc,7\n").expect("data");
    std::fs::write(work.join("config.json"), "{\"threshold\": 4}").expect("config");
    std::fs::write(work.join("notes.txt"), "checked by hand\n").expect("notes");
    let cells: Vec<Value> = NOTEBOOK_CELLS
        .iter()
        .map(|(id, source)| {
            json!({"cell_type": "code", "id": id, "metadata": {}, "execution_count": null, "outputs": [], "source": source})
        })
        .collect();
    let notebook = json!({"nbformat": 4, "nbformat_minor": 5, "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}});
    std::fs::write(work.join("analysis.ipynb"), notebook.to_string()).expect("notebook");
    let manifest_path = work.join("notebook.json");
    let started = Instant::now();
    let output = Command::new(reprotrace_bin())
        .current_dir(work)
        .args(["run", "--quiet", "--backend", "strace", "-o"])
        .arg(&manifest_path)
        .arg("--")
        .arg(venv.join("bin/jupyter"))
        .args(["nbconvert", "--to", "notebook", "--execute", "--allow-errors", "analysis.ipynb"])
        .args(["--output", "executed.ipynb"])
        .output()
        .expect("reprotrace run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("the notebook ran under reprotrace in {:?}", started.elapsed());
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    assert_valid(&manifest);
    assert_eq!(manifest["cells"].as_array().expect("cells").len(), NOTEBOOK_CELLS.len(), "{:#}", manifest["cells"]);

    // The configuration changes after the run: the cells that read it, and
    // those downstream, are stale.
    let typed: Manifest = serde_json::from_value(manifest.clone()).expect("typed manifest");
    let config = work.join("config.json").display().to_string();
    let current = |path: &str| {
        let Some(entry) = typed.data.inputs.iter().chain(&typed.data.outputs).find(|entry| entry.path == path) else {
            return FileNow::Gone;
        };
        let sha256 = if path == config { Some("0".repeat(64)) } else { entry.sha256.clone() };
        FileNow::Present { size: entry.size.unwrap_or(0), mtime: entry.mtime.clone(), sha256, over_hash_limit: false }
    };
    let stale = reprotrace::stale::stale_cells(&typed, None, None, &current);
    assert!(!stale.stale.is_empty(), "changing config.json makes cells stale: {stale:?}");

    let page = write_report(&manifest, &stale, work, "notebook");
    let loaded = load(&page, None);
    loaded.assert_clean("a notebook's report");
    check_report(&manifest, &loaded.dom, "a notebook's report");
    let dom = &loaded.dom;
    let stale_nodes =
        dom.matches("class=\"node cell stale").count() + dom.matches("class=\"node cell error stale").count();
    assert_eq!(stale_nodes, stale.stale.len(), "every stale cell is highlighted in the graph");
    for reason in stale.stale.iter().flat_map(|cell| &cell.reasons) {
        let text = reason.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        assert!(dom.contains(&text), "the stale reason {reason:?} is shown");
    }
    if manifest["cells"].as_array().expect("cells").iter().any(|cell| cell["error"].is_object()) {
        assert!(dom.contains("ValueError") && dom.contains("rows &lt;= threshold &amp; co"), "the cell's exception");
    }
    // A picture of it, as a person would see it.
    let png = work.join("notebook.png");
    let shot = load(&page, Some((&png, 2000)));
    shot.assert_clean("the notebook report's screenshot");
    let size = std::fs::metadata(&png).expect("the screenshot").len();
    assert!(size > 20_000, "the screenshot is {size} bytes: a blank page?");
}

/// Milliseconds after 09:00 on 2026-03-01, as a manifest's timestamp.
fn at(ms: u64) -> String {
    let seconds = ms / 1000;
    format!("2026-03-01T{:02}:{:02}:{:02}.{:03}Z", 9 + seconds / 3600, seconds / 60 % 60, seconds % 60, ms % 1000)
}

fn data_entry(path: &str, number: u64) -> Value {
    json!({"path": path, "size": 1000 * number * number + 17, "mtime": "2026-02-28T17:00:00Z",
           "sha256": format!("{number:064x}")})
}

fn python(name: &str, version: &str) -> Value {
    json!({"name": name, "version": version, "installer": "pip", "location": "/opt/venv/lib/python3.11/site-packages",
           "editable": false, "files_used": 12})
}

/// A notebook of 30 cells over 60 files, with names passed between cells,
/// Dask tasks on two hosts (one worker unaudited), written by hand.
fn large_manifest() -> Value {
    let file = |number: usize| format!("/srv/project/data/stage-{}/part-{number:02}.parquet", number % 4);
    let mut cells = Vec::new();
    for index in 0..30usize {
        // Cell i writes files 2i and 2i+1 (odd cells only the first), and
        // reads files written two and five cells before.
        let outputs: Vec<Value> = (0..2)
            .map(|k| 2 * index + k)
            .filter(|n| index % 2 == 0 || n % 2 == 0)
            .map(|n| data_entry(&file(n), n as u64))
            .collect();
        // And one of the files no cell writes (those numbered 3 mod 4).
        let inputs: Vec<Value> = [index.checked_sub(2), index.checked_sub(5)]
            .into_iter()
            .flatten()
            .map(|n| 2 * n + 1)
            .filter(|n| n % 4 != 3)
            .chain([4 * (index % 15) + 3])
            .map(|n| data_entry(&file(n), n as u64))
            .collect();
        let uses: Vec<String> =
            [index.checked_sub(1), index.checked_sub(3)].into_iter().flatten().map(|n| format!("v{n}")).collect();
        cells.push(json!({
            "index": index, "execution_count": index + 1, "cell_id": format!("cell-{index:02}"),
            "code_sha256": format!("{:064x}", index + 1000),
            "started_at": at(1000 + index as u64 * 4000), "finished_at": at(2500 + index as u64 * 4000 + (index as u64 % 5) * 300),
            "data": {"inputs": inputs, "outputs": outputs},
            "software": {"python": if index % 3 == 0 { vec![python("pandas", "2.2.3")] } else { vec![] }},
            "pids": [4242], "error": if index == 17 { json!({"ename": "KeyError", "evalue": "'<missing>'"}) } else { json!(null) },
            "names": {"defines": [format!("v{index}")], "deletes": [], "uses": uses, "truncated": false},
        }));
    }
    let inputs: Vec<Value> = (0..60).filter(|n| n % 4 == 3).map(|n| data_entry(&file(n), n as u64)).collect();
    let mut changed = inputs[0].clone();
    changed["changed_during_run"] = json!(true);
    let inputs: Vec<Value> = std::iter::once(changed).chain(inputs[1..].iter().cloned()).collect();
    let outputs: Vec<Value> = (0..60).filter(|n| n % 4 != 3).map(|n| data_entry(&file(n), n as u64)).collect();
    let tasks: Vec<Value> = (0..12u64)
        .map(|k| {
            json!({"key": format!("('process-part-<{k}>', {k})"), "host": if k % 3 == 0 { "worker-b" } else { "worker-a" },
                   "worker": if k % 3 == 0 { "tcp://10.0.0.3:40001" } else { "tcp://10.0.0.2:40001" },
                   "pid": 5000 + k % 2, "thread": 6000 + k, "started_at": at(41_000 + k * 200),
                   "finished_at": if k == 11 { json!(null) } else { json!(at(41_150 + k * 200)) },
                   "cell": 11, "processes": [],
                   "software": {"python": [python("dask", "2026.8.0")]},
                   "data": {"inputs": [data_entry(&file(3), 3)],
                            "outputs": [data_entry(&format!("/scratch/results/task-{k:02}.npy"), k)]}})
        })
        .collect();
    let host = |name: &str, workers: Value, complete: bool| {
        json!({"host": name, "workers": workers,
               "stats": {"events": 52_000, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                         "unresolved_paths": 0, "complete": complete, "duration_ms": 61_000},
               "processes": [{"pid": 5000, "ppid": 1, "exe": "/opt/venv/bin/python3", "argv": ["dask", "worker", "tcp://sched:8786"],
                              "cwd": "/srv", "exit_code": null, "signal": null, "failed_execs": [], "pre_existing": true}],
               "files": [], "data": {"inputs": [data_entry(&file(3), 3)], "outputs": []},
               "software": {"python": [python("dask", "2026.8.0"), python("pandas", "2.1.0")], "interpreters": [],
                            "system_packages": [], "executables": [], "shared_libraries": []}})
    };
    json!({
        "schema": "reprotrace/manifest/v1", "backend": "ebpf",
        "command": ["jupyter", "nbconvert", "--to", "notebook", "--execute", "pipeline.ipynb"],
        "cwd": "/srv/project", "host": "manager", "started_at": at(0), "finished_at": at(125_000),
        "exit_code": 0, "signal": null,
        "stats": {"events": 812_345, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 0, "complete": false, "duration_ms": 125_000, "peak_rss_kib": 48_000},
        "processes": [
            {"pid": 4200, "ppid": 1, "exe": "/opt/venv/bin/python3", "argv": ["/opt/venv/bin/python3", "/opt/venv/bin/jupyter-nbconvert", "--execute", "pipeline.ipynb"],
             "cwd": "/srv/project", "exit_code": 0, "signal": null, "failed_execs": [], "pre_existing": false},
            {"pid": 4242, "ppid": 4200, "exe": "/opt/venv/bin/python3", "argv": ["/opt/venv/bin/python3", "-m", "ipykernel_launcher", "-f", "/tmp/kernel.json"],
             "cwd": "/srv/project", "exit_code": 0, "signal": null, "failed_execs": [], "pre_existing": false, "cell_hook": true},
        ],
        "files": [], "data": {"inputs": inputs, "outputs": outputs},
        "software": {"python": [python("dask", "2026.8.0"), python("pandas", "2.2.3")], "interpreters": [],
                     "system_packages": [], "executables": [], "shared_libraries": []},
        "cells": cells, "tasks": tasks,
        "hosts": [
            host("worker-a", json!([{"address": "tcp://10.0.0.2:40001", "name": "a-0", "pids": [5000]}]), true),
            host("worker-b", json!([{"address": "tcp://10.0.0.3:40001", "name": null, "pids": [],
                                     "unaudited": "no reprotrace daemon on worker-b"}]), false),
        ],
    })
}

#[test]
fn a_large_distributed_notebook_stays_readable() {
    let manifest = large_manifest();
    assert_valid(&manifest);
    let dir = tempfile::tempdir().expect("tempdir");
    let stale = StaleReport {
        stale: vec![StaleCell {
            execution_count: 8,
            cell_id: Some("cell-07".into()),
            reasons: vec!["it read /srv/project/data/stage-3/part-03.parquet, which changed since the run".into()],
        }],
        notes: Vec::new(),
    };
    let page = write_report(&manifest, &stale, dir.path(), "large");
    let loaded = load(&page, None);
    loaded.assert_clean("a large report");
    check_report(&manifest, &loaded.dom, "a large report");
    let dom = &loaded.dom;
    let (steps, files, _) = expected_graph(&manifest);
    assert_eq!((steps, files), (30, 72), "30 cells, 60 files and 12 task outputs");
    assert!(dom.contains("id=\"hosts\"") && dom.contains("id=\"tasks\""));
    assert!(dom.contains("no reprotrace daemon on worker-b") && dom.contains("not audited"), "the unaudited worker");
    assert!(dom.contains("the run has 2.2.3"), "a host's version that differs from the run's");
    assert_eq!(dom.matches("process-part-&lt;").count(), 12 * 2, "each task's key, shown and in its title");
    assert!(dom.contains("class=\"node cell stale\""), "the stale cell");
    assert!(dom.contains("class=\"node cell error\""), "the cell that raised");
    assert!(dom.contains("changed during run"), "the input changed during the run");
    // Readable: the drawing fits a wide screen, and its labels are not tiny.
    let svg = &dom[dom.find("<svg class=\"graph\"").expect("svg")..];
    let width: f64 =
        svg[svg.find("width=\"").expect("width") + 7..].split('"').next().expect("width").parse().expect("number");
    assert!(width <= 1400.0, "the graph is {width} wide");
}
