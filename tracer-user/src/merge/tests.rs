use super::*;

/// A manifest with nothing in it but what `extra` sets.
fn manifest(extra: serde_json::Value) -> Manifest {
    let mut value = serde_json::json!({
        "schema": "reprotrace/manifest/v1", "backend": "ebpf", "command": ["x"], "cwd": "/", "host": "manager",
        "started_at": "2026-12-01T10:00:00.000Z", "finished_at": "2026-12-01T10:01:00.000Z",
        "exit_code": 0, "signal": null,
        "stats": {"events": 10, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 0, "complete": true, "duration_ms": 5},
        "processes": [], "files": [], "software": {"python": [], "interpreters": [], "system_packages": [],
                      "executables": [], "shared_libraries": []},
        "data": {"inputs": [], "outputs": []}, "cells": []
    });
    for (key, field) in extra.as_object().expect("object") {
        value[key] = field.clone();
    }
    serde_json::from_value(value).expect("a manifest")
}

fn task(key: &str, host: &str) -> serde_json::Value {
    serde_json::json!({"key": key, "host": host, "worker": null, "pid": 100, "thread": 101,
        "started_at": "2026-12-01T10:00:10.000Z", "finished_at": "2026-12-01T10:00:11.000Z",
        "processes": [], "software": {"python": []}, "data": {"inputs": [], "outputs": []}})
}

fn worker(host: &str, address: &str, tasks: Vec<serde_json::Value>, six: &str, lost: u64) -> Manifest {
    manifest(serde_json::json!({
        "host": host,
        "dask_worker": {"address": address, "name": null},
        "tasks": tasks,
        "stats": {"events": 5, "lost_events": lost, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 0, "complete": lost == 0, "duration_ms": 7},
        "processes": [{"pid": 100, "ppid": 1, "exe": "/usr/bin/python3", "argv": ["python3"], "cwd": "/",
                       "exit_code": null, "signal": null, "failed_execs": [], "pre_existing": true}],
        "files": [{"path": "/data/in.csv", "access": "read", "deleted": false, "pids": [100]}],
        "software": {"python": [{"name": "six", "version": six, "installer": "pip", "location": "/venv",
                                 "editable": false, "files_used": 1}],
                     "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
    }))
}

#[test]
fn workers_become_hosts_and_tasks_are_the_runs() {
    let mut run = manifest(serde_json::json!({
        "cells": [{"index": 0, "execution_count": 4, "cell_id": null, "code_sha256": "0".repeat(64),
                   "started_at": "2026-12-01T10:00:05.000Z", "finished_at": "2026-12-01T10:00:20.000Z",
                   "data": {"inputs": [], "outputs": []}, "software": {"python": []}, "pids": [1]}]
    }));
    let before = run.clone();
    let submitted_at = 1_796_119_206_000_000_000; // 2026-12-01T10:00:06Z
    let reports = Reports {
        workers: vec![
            worker("host-a", "tcp://10.0.0.2:1", vec![task("mine-1", "host-a"), task("theirs", "host-a")], "1.17.0", 0),
            worker("host-a", "tcp://10.0.0.2:2", vec![], "1.17.0", 3),
            worker("host-b", "tcp://10.0.0.3:1", vec![task("mine-2", "host-b")], "1.16.0", 0),
        ],
        unaudited: vec![Unaudited {
            host: "host-c".into(),
            address: "tcp://10.0.0.4:1".into(),
            name: Some("c1".into()),
            reason: "no reprotrace daemon on this host".into(),
        }],
        submitted: Some(Submitted {
            keys: BTreeMap::from([("mine-1".to_string(), submitted_at), ("mine-2".to_string(), submitted_at)]),
            ran: None,
            submissions: BTreeMap::new(),
        }),
        ..Reports::default()
    };
    let warnings = merge_workers(&mut run, reports);

    // The manager's own sections are untouched.
    assert_eq!(
        (&run.processes, &run.files, &run.software, &run.data, &run.cells),
        (&before.processes, &before.files, &before.software, &before.data, &before.cells)
    );
    let hosts: Vec<&str> = run.hosts.iter().map(|host| host.host.as_str()).collect();
    assert_eq!(hosts, ["host-a", "host-b", "host-c"]);
    let host_a = &run.hosts[0];
    assert_eq!(host_a.workers.len(), 2);
    assert_eq!(host_a.workers[0].pids, [100]);
    assert_eq!(host_a.files.len(), 1, "one entry per path");
    assert_eq!(host_a.software.python[0].files_used, 2);
    assert_eq!((host_a.stats.lost_events, host_a.stats.complete), (3, false));
    assert_eq!(run.hosts[2].workers[0].unaudited.as_deref(), Some("no reprotrace daemon on this host"));
    assert!(!run.hosts[2].stats.complete);

    let keys: Vec<&str> = run.tasks.iter().map(|task| task.key.as_str()).collect();
    assert_eq!(keys, ["mine-1", "mine-2"], "only the keys the run submitted");
    assert!(run.tasks.iter().all(|task| task.cell == Some(4) && task.cell_by_clock), "no submission markers");
    assert_eq!((run.stats.events, run.stats.lost_events, run.stats.complete), (25, 3, false));
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains("six differs between hosts: 1.16.0 on host-b; 1.17.0 on host-a")),
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|warning| warning.contains("c1 on host-c was not audited")), "{warnings:?}");
}

#[test]
fn the_managers_versions_are_compared_with_its_workers() {
    let mut run = manifest(serde_json::json!({
        "software": {"python": [{"name": "six", "version": "1.16.0", "installer": "debian", "location": "/usr/lib/python3/dist-packages",
                                 "editable": false, "files_used": 1}],
                     "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
    }));
    let before = run.software.clone();
    let reports = Reports {
        workers: vec![
            worker("host-a", "tcp://a:1", vec![], "1.17.0", 0),
            worker("host-b", "tcp://b:1", vec![], "1.17.0", 0),
        ],
        ..Reports::default()
    };
    let warnings = merge_workers(&mut run, reports);
    assert_eq!(
        warnings,
        ["six differs between the manager and its workers: 1.16.0 on the manager (manager); 1.17.0 on host-a, host-b"]
    );
    assert_eq!(run.software, before, "the manager's software is untouched");

    // The same versions everywhere: nothing to say.
    let mut run = manifest(serde_json::json!({"software": serde_json::to_value(&run.software).expect("JSON")}));
    let reports = Reports { workers: vec![worker("host-a", "tcp://a:1", vec![], "1.16.0", 0)], ..Reports::default() };
    assert_eq!(merge_workers(&mut run, reports), Vec::<String>::new());
}

/// Two cells, [1] from 10:00:05 to 10:00:20 and [2] from 10:00:21 on.
fn two_cells() -> Manifest {
    let cell = |count: u64, started: &str, finished: &str| {
        serde_json::json!({"index": count - 1, "execution_count": count, "cell_id": null, "code_sha256": "0".repeat(64),
            "started_at": started, "finished_at": finished,
            "data": {"inputs": [], "outputs": []}, "software": {"python": []}, "pids": [1]})
    };
    manifest(serde_json::json!({"cells": [
        cell(1, "2026-12-01T10:00:05.000Z", "2026-12-01T10:00:20.000Z"),
        cell(2, "2026-12-01T10:00:21.000Z", "2026-12-01T10:00:40.000Z"),
    ]}))
}

#[test]
fn the_runs_own_record_of_a_submission_gives_its_cell_whatever_the_schedulers_clock() {
    let mut run = two_cells();
    // The scheduler's clock is an hour behind: by the clock, no cell.
    let skewed = 1_796_119_206_000_000_000 - 3_600_000_000_000;
    let keys = ["in-1", "in-2", "also-2", "unmarked"];
    let reports = Reports {
        workers: vec![worker("host-a", "tcp://a:1", keys.iter().map(|key| task(key, "host-a")).collect(), "1", 0)],
        submitted: Some(Submitted {
            keys: keys.iter().map(|key| (key.to_string(), skewed)).collect(),
            ran: None,
            submissions: BTreeMap::from([
                ("in-1".to_string(), "graph-a".to_string()),
                ("in-2".to_string(), "graph-b".to_string()),
                ("also-2".to_string(), "graph-b".to_string()),
                // Its submission's marker never reached the run.
                ("unmarked".to_string(), "graph-lost".to_string()),
            ]),
        }),
        submitted_in: BTreeMap::from([("graph-a".to_string(), Some(1)), ("graph-b".to_string(), Some(2))]),
        ..Reports::default()
    };
    let warnings = merge_workers(&mut run, reports);
    let cells: BTreeMap<&str, (Option<u64>, bool)> =
        run.tasks.iter().map(|task| (task.key.as_str(), (task.cell, task.cell_by_clock))).collect();
    assert_eq!(
        cells,
        BTreeMap::from([
            ("in-1", (Some(1), false)),
            ("in-2", (Some(2), false)),
            ("also-2", (Some(2), false)),
            ("unmarked", (None, false)),
        ])
    );
    assert_eq!(
        warnings,
        ["1 Dask task (unmarked) was matched to notebook cells by the scheduler's clock, not by the run's own record \
          of the submission (a client without reprotrace's submission markers, or a marker lost): a task \
          submitted near a cell boundary may be in the wrong cell if the clocks differ (`cell_by_clock` in tasks[])"]
    );
    assert!(run.stats.complete, "a cell found by the clock is no missing work");

    // The clock, when it finds one, says so in the task.
    let mut run = two_cells();
    let on_time = 1_796_119_222_000_000_000; // 10:00:22, in cell [2]
    let reports = Reports {
        workers: vec![worker("host-a", "tcp://a:1", vec![task("unmarked", "host-a")], "1", 0)],
        submitted: Some(Submitted {
            keys: BTreeMap::from([("unmarked".to_string(), on_time)]),
            ran: None,
            submissions: BTreeMap::new(),
        }),
        ..Reports::default()
    };
    merge_workers(&mut run, reports);
    assert_eq!((run.tasks[0].cell, run.tasks[0].cell_by_clock), (Some(2), true));

    // Submitted outside any cell (before the first): exactly no cell, and nothing to say.
    let mut run = two_cells();
    let reports = Reports {
        workers: vec![worker("host-a", "tcp://a:1", vec![task("early", "host-a")], "1", 0)],
        submitted: Some(Submitted {
            keys: BTreeMap::from([("early".to_string(), on_time)]),
            ran: None,
            submissions: BTreeMap::from([("early".to_string(), "graph-0".to_string())]),
        }),
        submitted_in: BTreeMap::from([("graph-0".to_string(), None)]),
        ..Reports::default()
    };
    assert_eq!(merge_workers(&mut run, reports), Vec::<String>::new());
    assert_eq!((run.tasks[0].cell, run.tasks[0].cell_by_clock), (None, false));
}

#[test]
fn without_submissions_every_task_is_kept() {
    let mut run = manifest(serde_json::json!({}));
    let reports =
        Reports { workers: vec![worker("h", "tcp://a:1", vec![task("k", "h")], "1", 0)], ..Reports::default() };
    merge_workers(&mut run, reports);
    assert_eq!(run.tasks.len(), 1);
    assert_eq!(run.tasks[0].cell, None);
    assert!(run.stats.complete);
}

#[test]
fn accesses_combine() {
    assert_eq!(combined_access(Access::Read, Access::Write), Access::ReadWrite);
    assert_eq!(combined_access(Access::Exec, Access::Metadata), Access::Exec);
    assert_eq!(combined_access(Access::Metadata, Access::Metadata), Access::Metadata);
    assert_eq!(combined_access(Access::Exec, Access::Read), Access::Exec);
}

/// A reports directory as the run's clients leave it: each `(name, JSON)` a file.
fn reports_dir(files: &[(&str, serde_json::Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, value) in files {
        std::fs::write(dir.path().join(name), value.to_string()).expect("report file");
    }
    dir
}

fn worker_json(tasks: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::to_value(worker("host-a", "tcp://10.0.0.2:1", tasks, "1.17.0", 0)).expect("JSON")
}

fn merged_from(dir: &tempfile::TempDir) -> (Manifest, Vec<String>) {
    let mut run = manifest(serde_json::json!({}));
    let warnings = merge_workers(&mut run, Reports::read_dir(dir.path()).expect("the reports"));
    (run, warnings)
}

#[test]
fn a_client_that_took_part_and_never_reported_makes_the_run_incomplete() {
    let joined = serde_json::json!({"client": "Client-1", "pid": 77, "problems": []});
    let dir = reports_dir(&[("77-Client-1.joined.json", joined.clone())]);
    let (run, warnings) = merged_from(&dir);
    let line = "Dask client Client-1 (process 77) took part but never reported its workers' audits: \
                it was not closed (client.close()), or its process ended first";
    assert_eq!(run.stats.missing_work, [line]);
    assert!(!run.stats.complete);
    assert_eq!(warnings, [line]);

    // Once it reported (its audits merged), the run is complete.
    let reported = serde_json::json!({"client": "Client-1", "pid": 77, "problems": []});
    let submitted = serde_json::json!({"keys": {"k": 1}, "ran": ["k"]});
    let dir = reports_dir(&[
        ("77-Client-1.joined.json", joined),
        ("77-Client-1.submitted.json", submitted),
        ("77-Client-1-0.manifest.json", worker_json(vec![task("k", "host-a")])),
        ("77-Client-1.reported.json", reported),
    ]);
    let (run, warnings) = merged_from(&dir);
    assert_eq!((run.stats.complete, &run.stats.missing_work), (true, &Vec::<String>::new()), "{warnings:?}");
    assert_eq!(run.tasks.len(), 1);
}

#[test]
fn submitted_tasks_a_worker_ran_without_a_record_make_the_run_incomplete() {
    let note = serde_json::json!({"client": "Client-2", "pid": 78, "problems": []});
    // k1 ran and has a record; k2..k5 ran and have none (coroutines, say);
    // k6 never ran (its dependency failed): nothing is expected of it.
    let keys: serde_json::Map<String, serde_json::Value> =
        (1..=6).map(|n| (format!("k{n}"), serde_json::json!(n))).collect();
    let submitted = serde_json::json!({"keys": keys, "ran": ["k1", "k2", "k3", "k4", "k5"]});
    let dir = reports_dir(&[
        ("78-Client-2.joined.json", note.clone()),
        ("78-Client-2.submitted.json", submitted),
        ("78-Client-2-0.manifest.json", worker_json(vec![task("k1", "host-a")])),
        ("78-Client-2.reported.json", note.clone()),
    ]);
    let (run, _) = merged_from(&dir);
    assert_eq!(
        run.stats.missing_work,
        ["4 of the 5 Dask tasks the run submitted and a worker ran have no record (k2, k3, k4 and 1 more): \
          coroutine tasks, tasks run while a worker's audit restarted, or on a worker not audited"]
    );
    assert!(!run.stats.complete);

    // A scheduler plugin too old to say which ran: nothing is claimed.
    let dir = reports_dir(&[
        ("78-Client-2.joined.json", note.clone()),
        ("78-Client-2.submitted.json", serde_json::json!({"keys": {"k1": 1, "k2": 2}})),
        ("78-Client-2-0.manifest.json", worker_json(vec![task("k1", "host-a")])),
        ("78-Client-2.reported.json", note),
    ]);
    let (run, _) = merged_from(&dir);
    assert!(run.stats.complete && run.stats.missing_work.is_empty(), "{:?}", run.stats);
}

#[test]
fn what_a_client_could_not_do_is_missing_work() {
    let joined = serde_json::json!({"client": "Client-3", "pid": 79,
        "problems": ["could not register reprotrace on the cluster: no worker plugin support"]});
    let reported = serde_json::json!({"client": "Client-3", "pid": 79,
        "problems": ["could not collect the workers' audits: CommClosedError"]});
    let dir = reports_dir(&[("79-Client-3.joined.json", joined), ("79-Client-3.reported.json", reported)]);
    let (run, _) = merged_from(&dir);
    assert_eq!(
        run.stats.missing_work,
        [
            "Dask client Client-3 (process 79): could not register reprotrace on the cluster: no worker plugin support",
            "Dask client Client-3 (process 79): could not collect the workers' audits: CommClosedError",
        ]
    );
    assert!(!run.stats.complete);
}

#[test]
fn a_worker_whose_plugin_failed_to_set_up_is_unaudited() {
    // What dask.py sends for a worker whose plugin setup failed.
    let unaudited = serde_json::json!({"host": "host-a", "address": "tcp://10.0.0.2:1", "name": "a-0",
        "reason": "reprotrace's plugin could not be set up: this distributed (2099.1.0) has no \
                   distributed.worker._run_task_simple, which reprotrace wraps to mark tasks"});
    let dir = reports_dir(&[("80-Client-4-0.unaudited.json", unaudited)]);
    let (run, warnings) = merged_from(&dir);
    assert!(!run.stats.complete);
    assert!(run.hosts[0].workers[0].unaudited.as_deref().is_some_and(|why| why.contains("_run_task_simple")));
    assert!(warnings.iter().any(|warning| warning.contains("a-0 on host-a was not audited")), "{warnings:?}");
}
