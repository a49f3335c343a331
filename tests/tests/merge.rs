//! `reprotrace merge` on manifests written as the audits write them (a
//! run's, and Dask workers' from `attach --dask-worker`), checked against
//! the schema: what it says about the whole.

use std::{path::Path, process::Command};

use reprotrace_tests::{assert_valid, reprotrace_bin};
use serde_json::{json, Value};

/// An audit on `host` that used `six` at `six_version`.
fn audit(host: &str, six_version: &str, location: &str) -> Value {
    json!({
        "schema": "reprotrace/manifest/v1", "backend": "ebpf", "command": ["python3", "manager.py"], "cwd": "/",
        "host": host, "started_at": "2026-03-01T09:00:00.000Z", "finished_at": "2026-03-01T09:01:00.000Z",
        "exit_code": 0, "signal": null,
        "stats": {"events": 100, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 0, "complete": true, "duration_ms": 60_000},
        "processes": [{"pid": 4242, "ppid": 1, "exe": "/usr/bin/python3", "argv": ["python3"], "cwd": "/",
                       "exit_code": 0, "signal": null, "failed_execs": [], "pre_existing": false}],
        "files": [],
        "software": {"python": [{"name": "six", "version": six_version, "installer": "pip", "location": location,
                                 "editable": false, "files_used": 2}],
                     "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
        "data": {"inputs": [], "outputs": []}, "cells": [],
    })
}

fn worker(host: &str, address: &str, six_version: &str) -> Value {
    let mut manifest = audit(host, six_version, "/opt/venv/lib/python3.11/site-packages");
    manifest["dask_worker"] = json!({"address": address, "name": null});
    manifest["command"] = json!(["dask", "worker", "tcp://scheduler:8786"]);
    manifest["processes"][0]["pre_existing"] = json!(true);
    manifest
}

fn write(dir: &Path, name: &str, manifest: &Value) -> std::path::PathBuf {
    assert_valid(manifest);
    let path = dir.join(name);
    std::fs::write(&path, manifest.to_string()).expect("manifest");
    path
}

#[test]
fn the_managers_package_versions_are_compared_with_its_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let manager = write(work, "manager.json", &audit("laptop", "1.16.0", "/usr/lib/python3/dist-packages"));
    let workers = [
        write(work, "worker-a.json", &worker("node-a", "tcp://10.0.0.2:40001", "1.17.0")),
        write(work, "worker-b.json", &worker("node-b", "tcp://10.0.0.3:40001", "1.17.0")),
    ];
    let merged = work.join("merged.json");
    let output = Command::new(reprotrace_bin())
        .args(["merge", "-o"])
        .arg(&merged)
        .arg(&manager)
        .args(&workers)
        .output()
        .expect("merge");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "reprotrace: warning: six differs between the manager and its workers: \
             1.16.0 on the manager (laptop); 1.17.0 on node-a, node-b"
        ),
        "{stderr}"
    );
    let manifest: Value = serde_json::from_slice(&std::fs::read(&merged).expect("merged")).expect("JSON");
    assert_valid(&manifest);
    assert_eq!(manifest["software"]["python"][0]["version"], "1.16.0", "the manager's own software stays");
}
