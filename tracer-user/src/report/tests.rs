use serde_json::json;

use super::render;
use crate::{
    manifest::Manifest,
    stale::{StaleCell, StaleReport},
};

const EVIL: &str = "/tmp/<script>alert('x')</script>&\"q\".csv";

fn entry(path: &str) -> serde_json::Value {
    json!({"path": path, "size": 2048, "mtime": "2026-01-01T00:00:01Z", "sha256": "ab".repeat(32)})
}

/// A notebook run with hostile names, two cells, a task and a host.
fn sample() -> Manifest {
    let cell = |index: usize, inputs: Vec<serde_json::Value>, outputs: Vec<serde_json::Value>| {
        json!({
            "index": index, "execution_count": index + 1, "cell_id": format!("id-<{index}>"),
            "code_sha256": "cd".repeat(32),
            "started_at": format!("2026-01-01T00:00:0{}.000Z", index + 1),
            "finished_at": format!("2026-01-01T00:00:0{}.500Z", index + 1),
            "data": {"inputs": inputs, "outputs": outputs},
            "software": {"python": []}, "pids": [100],
            "error": if index == 1 { json!({"ename": "ValueError", "evalue": "bad <value> & more"}) } else { json!(null) },
            "names": {"defines": ["df<1>"], "deletes": [], "uses": if index == 1 { vec!["df<1>"] } else { vec![] }, "truncated": false},
        })
    };
    let mut changed = entry(r"/data/caf\xe9.csv");
    changed["changed_during_run"] = json!(true);
    let value = json!({
        "schema": "reprotrace/manifest/v1", "backend": "strace",
        "command": ["python3", "-c", "print('<b>hi</b>')"], "cwd": "/work & play", "host": "host<1>",
        "started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:05.000Z",
        "exit_code": 1, "signal": null,
        "stats": {"events": 1234, "lost_events": 3, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 2, "complete": false, "duration_ms": 5000},
        "processes": [
            {"pid": 100, "ppid": 1, "exe": "/usr/bin/python3.11", "argv": ["python3", "-c", "print('<b>hi</b>')"],
             "cwd": "/work & play", "exit_code": 1, "signal": null,
             "failed_execs": [{"path": "/bin/<nope>", "error": "ENOENT"}], "pre_existing": false, "cell_hook": true},
            {"pid": 101, "ppid": 100, "exe": "/bin/sh", "argv": ["sh", "-c", "x\ny"], "cwd": "/tmp",
             "exit_code": null, "signal": "SIGKILL", "failed_execs": [], "pre_existing": false,
             "interpreters": ["/usr/bin/env"]},
        ],
        "files": [{"path": EVIL, "access": "read", "deleted": false, "pids": [100]}],
        "software": {"python": [{"name": "six", "version": "1.17.0", "installer": "pip", "location": "/venv/lib",
                                 "editable": false, "files_used": 1}],
                     "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
        "data": {"inputs": [entry(EVIL), changed], "outputs": [entry("/out/result.txt")]},
        "cells": [cell(0, vec![entry(EVIL)], vec![entry("/out/result.txt")]), cell(1, vec![entry("/out/result.txt")], vec![])],
        "tasks": [{"key": "('inc-<1>', 0)", "host": "host<1>", "worker": "tcp://10.0.0.2:1", "pid": 7, "thread": 8,
                   "started_at": "2026-01-01T00:00:01.100Z", "finished_at": null, "cell": 1,
                   "processes": [], "software": {"python": []}, "data": {"inputs": [], "outputs": [entry("/out/task.bin")]}}],
        "hosts": [{"host": "host<1>", "workers": [{"address": "tcp://10.0.0.2:1", "name": null, "pids": [7],
                                                   "unaudited": "no <daemon>"}],
                   "stats": {"events": 0, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                             "unresolved_paths": 0, "complete": false, "duration_ms": 0},
                   "processes": [], "files": [],
                   "software": {"python": [{"name": "Six", "version": "1.16.0", "installer": null,
                                            "location": "/w/lib", "editable": true, "files_used": 2}],
                                "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
                   "data": {"inputs": [], "outputs": []}}],
    });
    serde_json::from_value(value).expect("a valid manifest")
}

fn stale() -> StaleReport {
    StaleReport {
        stale: vec![StaleCell {
            execution_count: 2,
            cell_id: Some("id-<1>".into()),
            reasons: vec![format!("it read {EVIL}, which changed since the run")],
        }],
        notes: vec!["a <note>".into()],
    }
}

#[test]
fn nothing_from_the_manifest_becomes_markup() {
    let page = render(&sample(), &stale());
    // Only our own tags: no script, and every hostile string escaped.
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<b>hi"));
    assert!(!page.contains("<nope>") && !page.contains("<daemon>") && !page.contains("<value>"));
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;.csv"));
    assert!(page.contains(r"/data/caf\xe9.csv"), "the manifest's escapes stay literal");
    assert!(page.contains("-c &#39;x\u{240a}y&#39;"), "a newline in an argument is shown");
    assert!(page.contains("id-&lt;1&gt;") && page.contains("df&lt;1&gt;"));
    assert!(page.contains("host&lt;1&gt;") && page.contains("/work &amp; play"));
}

#[test]
fn the_page_has_every_section_and_loads_nothing() {
    let page = render(&sample(), &stale());
    assert!(page.starts_with("<!DOCTYPE html>"));
    for id in ["top", "graph", "cells", "data", "processes", "software", "hosts", "tasks", "files"] {
        assert!(page.contains(&format!("id=\"{id}\"")), "section {id} missing");
    }
    assert!(page.contains("Content-Security-Policy") && page.contains("default-src 'none'"));
    for remote in ["http://", "https://", "src=", "@import", "url(http"] {
        assert!(!page.contains(remote), "{remote} in the page");
    }
    // The run's facts.
    assert!(page.contains("incomplete") && page.contains("3 events lost"));
    assert!(page.contains("Dask worker tcp://10.0.0.2:1 on host&lt;1&gt; was not audited: no &lt;daemon&gt;"));
    assert!(page.contains("exit 1") && page.contains("killed by SIGKILL") && page.contains("1 failed exec"));
    assert!(page.contains("2 paths left out"));
    assert!(page.contains("2.0 KiB") && page.contains("title=\"2,048 bytes\""));
    assert!(page.contains("title=\"abababab") && page.contains("abababababab…"));
    assert!(page.contains("changed during run"));
    assert!(page.contains("ValueError") && page.contains("bad &lt;value&gt; &amp; more"));
    assert!(page.contains("which changed since the run") && page.contains("a &lt;note&gt;"));
    assert!(page.contains("the run has 1.17.0"), "the host's six differs from the run's");
    // The graph: two cells, three files (one through a task), their edges and a name.
    assert_eq!(page.matches("<a class=\"node cell").count(), 2);
    assert_eq!(page.matches("<g class=\"node file").count(), 3);
    assert_eq!(page.matches("<path class=\"edge").count(), 5);
    assert_eq!(page.matches("class=\"edge names").count(), 1);
    assert_eq!(page.matches("class=\"edge writes task").count(), 1);
    assert!(page.contains("node cell error stale"));
    // Deterministic.
    assert_eq!(page, render(&sample(), &stale()));
}

#[test]
fn a_plain_run_draws_itself_between_its_inputs_and_outputs() {
    let mut manifest = sample();
    manifest.cells.clear();
    manifest.tasks.clear();
    manifest.hosts.clear();
    let page = render(&manifest, &StaleReport::default());
    assert!(!page.contains("id=\"cells\"") && !page.contains("id=\"hosts\"") && !page.contains("id=\"tasks\""));
    assert_eq!(page.matches("<g class=\"node run\"").count(), 1);
    assert_eq!(page.matches("<g class=\"node file").count(), 3);
    assert_eq!(page.matches("<path class=\"edge").count(), 3);
    manifest.data.inputs.clear();
    manifest.data.outputs.clear();
    let page = render(&manifest, &StaleReport::default());
    assert!(!page.contains("id=\"graph\""), "nothing to draw");
}

fn process(pid: u32, ppid: Option<u32>) -> crate::manifest::Process {
    serde_json::from_value(json!({
        "pid": pid, "ppid": ppid, "exe": "/bin/sh", "argv": ["sh", "-c", format!("step {pid}")], "cwd": "/",
        "exit_code": 0, "signal": null, "failed_execs": [], "pre_existing": false,
    }))
    .expect("a process")
}

#[test]
fn deep_and_cyclic_process_trees_render_every_process_once() {
    let mut manifest = sample();
    // A chain 20,000 deep (no recursion to overflow), and two processes
    // naming each other as parent (reused pids).
    manifest.processes = (1..=20_000).map(|pid| process(pid, (pid > 1).then_some(pid - 1))).collect();
    manifest.processes.push(process(30_001, Some(30_002)));
    manifest.processes.push(process(30_002, Some(30_001)));
    let started = std::time::Instant::now();
    let page = render(&manifest, &StaleReport::default());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    for pid in [1, 20_000, 30_001, 30_002] {
        assert_eq!(page.matches(&format!("step {pid}&#39;</code>")).count(), 1, "process {pid}");
    }
    assert_eq!(page.matches("<li id=\"p-").count(), 20_002);
    assert_eq!(page.matches("<ul>").count(), page.matches("</ul>").count() - page.matches("<ul class=").count());
}
