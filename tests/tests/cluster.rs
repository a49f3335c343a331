//! Simulated clusters come up as specified (hostnames, daemons, environment,
//! nannies, threads, users) and go away without a trace, also when they fail
//! halfway. The tests run concurrently, so clusters coexist too.
//!
//! They need root; their daemons load eBPF programs, and they fail (never
//! skip) when they cannot.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use cluster::{down_from_state, Cluster, ClusterSpec, HostSpec, WorkerSpec, MANAGER, SCHEDULER};
use reprotrace_tests::{dask_venv, reprotrace_bin};
use serde_json::Value;

fn python() -> PathBuf {
    dask_venv(Path::new(env!("CARGO_TARGET_TMPDIR"))).join("bin/python")
}

fn reprotrace() -> PathBuf {
    reprotrace_bin()
}

/// `ip netns list`.
fn namespaces() -> BTreeSet<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    assert!(output.status.success(), "ip netns list: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// The interfaces of the root network namespace.
fn root_links() -> BTreeSet<String> {
    let output = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link");
    assert!(output.status.success(), "ip link: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .map(|name| name.trim().to_string())
        .collect()
}

fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).map(String::from))
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Running processes whose command line mentions `text`.
fn running_mentioning(text: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || !running(pid) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(text) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Asserts that none of `pids` runs and nothing mentions the state directory,
/// allowing a few seconds for orphans to be reaped.
fn assert_all_gone(pids: &[u32], state_dir: &Path) {
    let state_dir = state_dir.to_str().expect("utf-8 state dir").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&pid| running(pid)).collect();
        let mentioning = running_mentioning(&state_dir);
        if alive.is_empty() && mentioning.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left running: pids {alive:?}; mentioning the state dir: {mentioning:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that teardown left no namespace and no interface in the root namespace.
fn assert_network_gone(cluster_namespaces: &[String], links_before: &BTreeSet<String>) {
    let now = namespaces();
    let left: Vec<&String> = cluster_namespaces.iter().filter(|name| now.contains(*name)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let links_after = root_links();
    let added: Vec<&String> = links_after.difference(links_before).collect();
    assert!(added.is_empty(), "interfaces added to the root namespace: {added:?}");
}

/// Runs a Python script on a host of the cluster; returns its last stdout line as JSON.
fn python_on(cluster: &Cluster, host: &str, python: &Path, script: &str, args: &[&str]) -> Value {
    let output = cluster.command_on(host, python).arg("-c").arg(script).args(args).output().expect("python on host");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python on {host} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().expect("some output")).expect("JSON")
}

/// What each worker says about itself, from `client.run` and from a task
/// pinned to it, keyed by worker name; and the manager's hostname.
const PROBE: &str = r#"
import json, os, socket, sys
from distributed import Client

def probe():
    import os, socket
    return {
        "host": socket.gethostname(), "pid": os.getpid(), "ppid": os.getppid(), "uid": os.getuid(),
        "socket": os.environ.get("REPROTRACE_SOCKET"), "bin": os.environ.get("REPROTRACE_BIN"),
        "mark": os.environ.get("CLUSTER_TEST_MARK"), "cwd": os.getcwd(),
    }

with Client(sys.argv[1], timeout=60) as client:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    names = {address: str(info["name"]) for address, info in workers.items()}
    ran = client.run(probe)
    futures = {a: client.submit(probe, workers=[a], allow_other_workers=False, pure=False) for a in names}
    tasks = {a: future.result(timeout=60) for a, future in futures.items()}
    print(json.dumps({
        "manager": socket.gethostname(),
        "run": {names[a]: result for a, result in ran.items()},
        "task": {names[a]: result for a, result in tasks.items()},
        "nthreads": {names[a]: info["nthreads"] for a, info in workers.items()},
    }))
"#;

/// Writes `<CLUSTER_TEST_PRELOAD_DIR>/<worker name>` holding the hostname.
const PRELOAD: &str = r#"
import os, socket

def dask_setup(worker):
    with open(os.path.join(os.environ["CLUSTER_TEST_PRELOAD_DIR"], worker.name), "w") as out:
        out.write(socket.gethostname())
"#;

#[test]
fn two_hosts_come_up_as_specified_and_go_away() {
    let python = python();
    let reprotrace = reprotrace();
    let state = tempfile::tempdir().expect("tempdir");
    let preload = tempfile::tempdir().expect("tempdir");
    let preload_file = preload.path().join("cluster_test_preload.py");
    fs::write(&preload_file, PRELOAD).expect("preload script");
    let links_before = root_links();
    let host = |name: &str, daemon: bool| HostSpec { name: name.into(), daemon, python: python.clone(), user: None };
    let worker = |host: &str, name: &str, nthreads: u32, nanny: bool| WorkerSpec {
        host: host.into(),
        name: name.into(),
        nthreads,
        nanny,
        ..WorkerSpec::default()
    };
    let spec = ClusterSpec {
        hosts: vec![host("host-a", true), host("host-b", false)],
        workers: vec![
            WorkerSpec {
                preload: vec![preload_file.to_str().expect("utf-8").to_string()],
                env: vec![
                    ("CLUSTER_TEST_MARK".into(), "a-nanny".into()),
                    ("CLUSTER_TEST_PRELOAD_DIR".into(), preload.path().to_str().expect("utf-8").into()),
                ],
                ..worker("host-a", "a-nanny", 2, true)
            },
            worker("host-a", "a-solo", 1, false),
            worker("host-b", "b-nanny", 1, true),
            worker("host-b", "b-solo", 2, false),
        ],
        scheduler_python: python.clone(),
        reprotrace: reprotrace.clone(),
        daemon_args: Vec::new(),
        state_dir: state.path().to_path_buf(),
    };
    let started = Instant::now();
    let cluster = Cluster::up(spec).unwrap_or_else(|err| panic!("cluster up: {err:#}"));
    eprintln!("up in {:.1} s", started.elapsed().as_secs_f64());

    let address = cluster.scheduler_address();
    assert!(address.starts_with("tcp://10.233.") && address.ends_with(":8786"), "{address}");
    let socket = cluster.daemon_socket("host-a").expect("host-a has a daemon");
    assert!(socket.exists(), "{} is missing", socket.display());
    assert_eq!(cluster.daemon_socket("host-b"), None);
    assert!(fs::read_to_string(cluster.log("host-a")).expect("daemon log").contains("daemon ready"));
    assert!(fs::read_to_string(cluster.log(SCHEDULER)).expect("scheduler log").contains("Scheduler at:"));
    // The daemon runs with its host's name.
    let daemon_pid = cluster.pids()[0];
    let daemon_host = Command::new("nsenter").args(["-t", &daemon_pid.to_string(), "--uts", "hostname"]).output();
    assert_eq!(String::from_utf8_lossy(&daemon_host.expect("nsenter").stdout).trim(), "host-a");
    let hostname = cluster.command_on("host-b", "hostname").output().expect("hostname on host-b");
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "host-b");

    let report = python_on(&cluster, MANAGER, &python, PROBE, &[&address]);
    eprintln!("{report:#}");
    assert_eq!(report["manager"], "manager");
    for (name, host, nanny, nthreads) in [
        ("a-nanny", "host-a", true, 2),
        ("a-solo", "host-a", false, 1),
        ("b-nanny", "host-b", true, 1),
        ("b-solo", "host-b", false, 2),
    ] {
        let run = &report["run"][name];
        let task = &report["task"][name];
        assert_eq!(run["host"], host, "{name}: client.run's hostname");
        assert_eq!(task["host"], host, "{name}: a task's hostname");
        assert_eq!(run["pid"], task["pid"], "{name}: tasks run in the worker process");
        let top = cluster.worker_pid(name);
        if nanny {
            assert_eq!(run["ppid"], top, "{name}: the worker is the nanny's child");
        } else {
            assert_eq!(run["pid"], top, "{name}: without a nanny the top process is the worker");
        }
        let expected_socket = (host == "host-a").then(|| socket.to_str().expect("utf-8").to_string());
        assert_eq!(run["socket"].as_str().map(String::from), expected_socket, "{name}: REPROTRACE_SOCKET");
        assert_eq!(task["socket"].as_str().map(String::from), expected_socket, "{name}: REPROTRACE_SOCKET in a task");
        assert_eq!(run["bin"], reprotrace.to_str().expect("utf-8"), "{name}: REPROTRACE_BIN");
        assert_eq!(report["nthreads"][name], nthreads, "{name}: nthreads");
        assert_eq!(run["uid"], 0, "{name} runs as root");
        assert_eq!(run["cwd"], cluster.state_dir().join(host).join(name).to_str().expect("utf-8"));
        assert!(cluster.log(name).is_file(), "{name}'s log");
    }
    assert_eq!(report["run"]["a-nanny"]["mark"], "a-nanny", "the worker's own environment");
    assert_eq!(report["run"]["a-solo"]["mark"], Value::Null, "another worker's environment");
    assert_eq!(fs::read_to_string(preload.path().join("a-nanny")).expect("the preload ran"), "host-a");

    let worker_pids: Vec<u32> = ["run", "task"]
        .iter()
        .flat_map(|kind| report[kind].as_object().expect("by name").values())
        .map(|probe| probe["pid"].as_u64().expect("pid") as u32)
        .collect();
    let mut pids = cluster.pids();
    pids.extend(worker_pids);
    let cluster_namespaces = cluster.namespaces().to_vec();
    assert_eq!(cluster_namespaces.len(), 5, "switch, scheduler, manager, two hosts: {cluster_namespaces:?}");
    assert!(cluster_namespaces.iter().all(|name| namespaces().contains(name)));
    let state_dir = cluster.state_dir().to_path_buf();

    let stopping = Instant::now();
    cluster.down().unwrap_or_else(|err| panic!("cluster down: {err:#}"));
    eprintln!("down in {:.1} s", stopping.elapsed().as_secs_f64());
    assert_network_gone(&cluster_namespaces, &links_before);
    assert_all_gone(&pids, &state_dir);
    // Again, from the state file: nothing left to do.
    down_from_state(&state_dir).unwrap_or_else(|err| panic!("down again: {err:#}"));
}

/// Workers as an ordinary user: the venv is Debian's Python, which any user can run.
#[test]
fn workers_run_as_the_hosts_user() {
    let python = python();
    let user = "nobody";
    let state = tempfile::tempdir().expect("tempdir");
    let links_before = root_links();
    let spec = ClusterSpec {
        hosts: vec![HostSpec { name: "host-u".into(), daemon: false, python: python.clone(), user: Some(user.into()) }],
        workers: vec![WorkerSpec { host: "host-u".into(), name: "u-nanny".into(), ..WorkerSpec::default() }],
        scheduler_python: python.clone(),
        state_dir: state.path().to_path_buf(),
        ..ClusterSpec::default()
    };
    let cluster = Cluster::up(spec).unwrap_or_else(|err| panic!("cluster up: {err:#}"));
    let report = python_on(&cluster, MANAGER, &python, PROBE, &[&cluster.scheduler_address()]);
    let uid = fs::metadata(cluster.state_dir().join("host-u").join("u-nanny")).expect("worker dir").uid();
    assert_ne!(uid, 0, "the worker's directory belongs to {user}");
    assert_eq!(report["run"]["u-nanny"]["uid"], uid, "the worker runs as {user}");
    assert_eq!(report["run"]["u-nanny"]["host"], "host-u");
    assert_eq!(report["run"]["u-nanny"]["bin"], Value::Null, "no reprotrace given, no REPROTRACE_BIN");
    let mut pids = cluster.pids();
    pids.push(report["run"]["u-nanny"]["pid"].as_u64().expect("pid") as u32);
    let cluster_namespaces = cluster.namespaces().to_vec();
    let state_dir = cluster.state_dir().to_path_buf();
    // Dropping tears down too.
    drop(cluster);
    assert_network_gone(&cluster_namespaces, &links_before);
    assert_all_gone(&pids, &state_dir);
}

#[test]
fn a_cluster_that_fails_halfway_leaves_nothing() {
    let python = python();
    let state = tempfile::tempdir().expect("tempdir");
    let links_before = root_links();
    let spec = ClusterSpec {
        hosts: vec![HostSpec { name: "host-f".into(), daemon: true, python: python.clone(), user: None }],
        workers: vec![
            WorkerSpec { host: "host-f".into(), name: "fine".into(), ..WorkerSpec::default() },
            WorkerSpec {
                host: "host-f".into(),
                name: "doomed".into(),
                nanny: false,
                preload: vec!["cluster_test_no_such_module".into()],
                ..WorkerSpec::default()
            },
        ],
        scheduler_python: python.clone(),
        reprotrace: reprotrace(),
        state_dir: state.path().to_path_buf(),
        ..ClusterSpec::default()
    };
    let err = Cluster::up(spec).expect_err("a worker with a missing preload module cannot start");
    let message = format!("{err:#}");
    eprintln!("{message}");
    assert!(message.contains("doomed"), "the error names the worker: {message}");
    assert!(message.contains("cluster_test_no_such_module"), "the error shows the worker's log: {message}");
    // What it had started is in the state file, and all gone.
    let state_file: Value =
        serde_json::from_str(&fs::read_to_string(state.path().join("cluster.json")).expect("state file"))
            .expect("json");
    let cluster_namespaces: Vec<String> = state_file["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|name| name.as_str().expect("name").to_string())
        .collect();
    assert_eq!(cluster_namespaces.len(), 4, "switch, scheduler, manager, host: {cluster_namespaces:?}");
    let pids: Vec<u32> = state_file["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|process| process["pid"].as_u64().expect("pid") as u32)
        .collect();
    assert_eq!(pids.len(), 4, "daemon, scheduler, two workers: {state_file:#}");
    assert_network_gone(&cluster_namespaces, &links_before);
    assert_all_gone(&pids, &state.path().canonicalize().expect("state dir"));
}
