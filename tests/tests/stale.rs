//! `reprotrace stale` on real files: manifests describing files in a scratch
//! directory as an audit records them (size, modification time, hash unless
//! over the hash limit), checked against the schema, then the files changed,
//! left alone or removed, and the real binary asked which cells are stale.

use std::{
    path::Path,
    process::{Command, Output},
};

use reprotrace_tests::{assert_valid, reprotrace_bin, sha256_of};
use serde_json::{json, Value};

fn reprotrace(args: &[&str], cwd: &Path) -> Output {
    Command::new(reprotrace_bin()).current_dir(cwd).args(args).output().expect("reprotrace")
}

/// A file's modification time as manifests record it (RFC 3339 UTC, to the second), by `date`.
fn mtime_of(path: &Path) -> String {
    let output = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ", "-r"]).arg(path).output().expect("date");
    assert!(output.status.success(), "date -r {}", path.display());
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A data entry for `path` as it is now: hashed, or over the hash limit.
fn entry(path: &Path, hashed: bool) -> Value {
    let contents = std::fs::read_to_string(path).expect("the file");
    let mut entry = json!({"path": path.display().to_string(), "size": contents.len(), "mtime": mtime_of(path),
                           "sha256": if hashed { json!(sha256_of(&contents)) } else { json!(null) }});
    if !hashed {
        entry["over_hash_limit"] = json!(true);
    }
    entry
}

fn cell(index: usize, inputs: Vec<Value>, defines: &[&str], uses: &[&str]) -> Value {
    json!({"index": index, "execution_count": index + 1, "cell_id": format!("c{}", index + 1),
           "code_sha256": format!("{:064x}", index + 1),
           "started_at": format!("2026-03-01T09:00:0{index}.000Z"), "finished_at": format!("2026-03-01T09:00:0{index}.500Z"),
           "data": {"inputs": inputs, "outputs": []}, "software": {"python": []}, "pids": [4242], "error": null,
           "names": {"defines": defines, "deletes": [], "uses": uses, "truncated": false}})
}

/// A notebook run by nbconvert with `cells`, its data the cells' inputs.
fn notebook_manifest(cells: Vec<Value>) -> Value {
    let inputs: Vec<Value> =
        cells.iter().flat_map(|cell| cell["data"]["inputs"].as_array().cloned().unwrap_or_default()).collect();
    json!({
        "schema": "reprotrace/manifest/v1", "backend": "strace",
        "command": ["jupyter", "nbconvert", "--execute", "nb.ipynb"], "cwd": "/", "host": "manager",
        "started_at": "2026-03-01T09:00:00.000Z", "finished_at": "2026-03-01T09:01:00.000Z", "exit_code": 0, "signal": null,
        "stats": {"events": 100, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 0, "complete": true, "duration_ms": 60_000},
        "processes": [{"pid": 4242, "ppid": null, "exe": "/usr/bin/python3", "argv": ["python3"], "cwd": "/",
                       "exit_code": 0, "signal": null, "failed_execs": [], "pre_existing": false}],
        "files": [], "data": {"inputs": inputs, "outputs": []},
        "software": {"python": [], "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
        "cells": cells,
    })
}

fn write_manifest(dir: &Path, manifest: &Value) -> String {
    assert_valid(manifest);
    let path = dir.join("run.json");
    std::fs::write(&path, manifest.to_string()).expect("manifest");
    path.display().to_string()
}

/// Each stale cell's execution count and reasons.
type StaleCells = Vec<(u64, Vec<String>)>;

/// `stale --json`: its exit code, the stale cells, and the notes.
fn stale_json(args: &[&str], dir: &Path) -> (Option<i32>, StaleCells, Vec<String>) {
    let output = reprotrace(&[&["stale", "--json"], args].concat(), dir);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stderr)));
    let strings = |value: &Value| -> Vec<String> {
        value.as_array().expect("a list").iter().map(|text| text.as_str().expect("text").to_string()).collect()
    };
    let stale = report["stale"]
        .as_array()
        .expect("stale")
        .iter()
        .map(|cell| (cell["execution_count"].as_u64().expect("count"), strings(&cell["reasons"])))
        .collect();
    (output.status.code(), stale, strings(&report["notes"]))
}

#[test]
fn files_over_the_hash_limit_are_compared_by_size_and_time_and_their_deletion_is_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let (big, small) = (work.join("big.bin"), work.join("small.csv"));
    std::fs::write(&big, "x".repeat(64)).expect("big");
    std::fs::write(&small, "a,b\n1,2\n").expect("small");
    // Cell 1 read big.bin, which the audit did not hash (over its limit);
    // cell 2 uses what cell 1 defined; cell 3 read small.csv, hashed.
    let manifest = notebook_manifest(vec![
        cell(0, vec![entry(&big, false)], &["big"], &[]),
        cell(1, vec![], &["summary"], &["big"]),
        cell(2, vec![entry(&small, true)], &[], &[]),
    ]);
    let manifest = write_manifest(work, &manifest);
    let (big_path, small_path) = (big.display().to_string(), small.display().to_string());

    // Nothing changed: nothing stale, and how big.bin was compared is said.
    let fresh = reprotrace(&["stale", &manifest], work);
    let text = String::from_utf8_lossy(&fresh.stdout);
    assert_eq!(fresh.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&fresh.stderr));
    assert!(text.contains("no cell is stale (3 cells)"), "{text}");
    assert!(
        text.contains(&format!(
            "note: {big_path} was compared by size and modification time, unchanged: it was over the audit's hash limit"
        )),
        "{text}"
    );

    // stale's own limit: a file over it is not hashed, and the output says so.
    let (code, stale, notes) = stale_json(&["--hash-limit", "4", &manifest], work);
    assert_eq!((code, stale), (Some(0), vec![]), "{notes:?}");
    assert!(
        notes.contains(&format!(
            "{small_path} was compared by size and modification time, unchanged: \
             it is over the hash limit (4 B, --hash-limit none hashes it)"
        )),
        "{notes:?}"
    );

    // small.csv rewritten with other contents of the same size: its hash says so.
    std::fs::write(&small, "a,b\n3,4\n").expect("small");
    let (code, stale, _) = stale_json(&["--hash-limit", "none", &manifest], work);
    assert_eq!(code, Some(1));
    assert_eq!(stale, [(3, vec![format!("it read {small_path}, which changed since the run")])]);

    // big.bin grows: changed, by its size.
    std::fs::write(&big, "x".repeat(65)).expect("big");
    let (code, stale, _) = stale_json(&[&manifest], work);
    assert_eq!(code, Some(1));
    assert_eq!(stale[0].0, 1);
    assert!(
        stale[0].1[0].starts_with(&format!(
            "it read {big_path}, which changed since the run (its size went from 64 to 65 bytes"
        )),
        "{stale:?}"
    );

    // big.bin removed: its reader is stale, and the cell that uses its name.
    std::fs::remove_file(&big).expect("remove");
    let (code, stale, _) = stale_json(&[&manifest], work);
    assert_eq!(code, Some(1));
    assert_eq!(
        stale[..2],
        [
            (1, vec![format!("it read {big_path}, which is gone")]),
            (2, vec!["it uses big, which stale cell [1] (c1) defines".to_string()]),
        ]
    );
}

/// A notebook run merged with its Dask workers' audits, as `run --dask`
/// writes it: the manager's cells, a host with one worker, and the tasks
/// cell [2] submitted, which read `station` (cell [1] only made the client).
fn merged_dask_manifest(station: &Path) -> Value {
    let mut manifest = notebook_manifest(vec![
        cell(0, vec![], &["client"], &[]),
        cell(1, vec![], &["futures"], &["client"]),
        cell(2, vec![], &["trend"], &["futures"]),
    ]);
    let task = |key: &str| {
        json!({"key": key, "host": "worker-a", "worker": "tcp://10.0.0.2:40001", "pid": 5000, "thread": 5001,
               "started_at": "2026-03-01T09:00:01.200Z", "finished_at": "2026-03-01T09:00:01.300Z", "cell": 2,
               "processes": [], "software": {"python": []},
               "data": {"inputs": [entry(station, true)], "outputs": []}})
    };
    manifest["tasks"] = json!([task("('fit-station', 0)"), task("('fit-station', 1)")]);
    manifest["hosts"] = json!([{
        "host": "worker-a",
        "workers": [{"address": "tcp://10.0.0.2:40001", "name": "a-0", "pids": [5000]}],
        "stats": {"events": 10, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 0, "complete": true, "duration_ms": 1000},
        "processes": [{"pid": 5000, "ppid": 1, "exe": "/usr/bin/python3", "argv": ["dask", "worker"], "cwd": "/",
                       "exit_code": null, "signal": null, "failed_execs": [], "pre_existing": true}],
        "files": [{"path": station.display().to_string(), "access": "read", "deleted": false, "pids": [5000]}],
        "software": {"python": [], "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
        "data": {"inputs": [entry(station, true)], "outputs": []},
    }]);
    manifest
}

#[test]
fn a_changed_input_of_a_dask_task_makes_the_cell_that_submitted_it_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let station = work.join("station-000.csv");
    std::fs::write(&station, "year,temperature\n2001,10.5\n2002,10.7\n").expect("station");
    let manifest = write_manifest(work, &merged_dask_manifest(&station));

    let fresh = reprotrace(&["stale", &manifest], work);
    let text = String::from_utf8_lossy(&fresh.stdout);
    assert_eq!(fresh.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&fresh.stderr));
    assert!(text.contains("no cell is stale (3 cells)"), "{text}");

    // The station's data is corrected after the run: the cell that submitted
    // the tasks reading it is stale, once, and the cell using its result.
    std::fs::write(&station, "year,temperature\n2001,10.5\n2002,10.9\n").expect("station");
    let (code, stale, _) = stale_json(&[&manifest], work);
    assert_eq!(code, Some(1));
    let station_path = station.display().to_string();
    assert_eq!(
        stale,
        [
            (
                2,
                vec![format!(
                    "its Dask task ('fit-station', 0) on worker-a read {station_path}, which changed since the run"
                )]
            ),
            (3, vec!["it uses futures, which stale cell [2] (c2) defines".to_string()]),
        ]
    );
    let text = String::from_utf8_lossy(&reprotrace(&["stale", &manifest], work).stdout).into_owned();
    assert!(text.contains("cell [2] (c2) is stale: its Dask task ('fit-station', 0) on worker-a read"), "{text}");
}
