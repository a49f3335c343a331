//! Distributed audits on a Dask cluster of simulated hosts (network
//! namespaces with their own host names, daemons and venvs; see the `cluster`
//! crate): `reprotrace run --dask` of a manager whose tasks run on five
//! workers of three hosts, and of an example notebook.
//!
//! These tests load eBPF programs (the hosts' daemons): they need root, and
//! fail (never skip) when the programs cannot load.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use cluster::{Cluster, ClusterSpec, HostSpec, WorkerSpec, MANAGER};
use reprotrace_tests::{
    assert_valid, dask_venv, python_venv, repo_root, reprotrace_bin, with_reprotrace_package, KernelSession, BACKENDS,
    DASK_PACKAGES,
};
use serde_json::Value;

/// The venv of the host whose six is older (the others have `dask_venv`'s).
fn old_six_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let packages: Vec<&str> = DASK_PACKAGES.iter().chain(&["six==1.16.0"]).copied().collect();
        with_reprotrace_package(python_venv(Path::new(env!("CARGO_TARGET_TMPDIR")), "dask-venv-old-six", &packages))
    })
}

fn current_venv() -> PathBuf {
    dask_venv(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// A directory every host's user can use.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn worker(host: &str, name: &str, nthreads: u32, nanny: bool, preload: bool) -> WorkerSpec {
    WorkerSpec {
        host: host.into(),
        name: name.into(),
        nthreads,
        nanny,
        preload: if preload { vec!["reprotrace.dask".into()] } else { Vec::new() },
        ..WorkerSpec::default()
    }
}

fn host(name: &str, daemon: bool, venv: &Path, user: Option<&str>) -> HostSpec {
    HostSpec { name: name.into(), daemon, python: venv.join("bin/python"), user: user.map(str::to_string) }
}

fn start(state: &Path, hosts: Vec<HostSpec>, workers: Vec<WorkerSpec>) -> Cluster {
    Cluster::up(ClusterSpec {
        hosts,
        workers,
        scheduler_python: current_venv().join("bin/python"),
        reprotrace: reprotrace_bin(),
        daemon_args: vec!["--allow-users".into()],
        state_dir: state.to_path_buf(),
    })
    .expect("the simulated cluster comes up")
}

/// `reprotrace run --dask OPTIONS… -o MANIFEST -- COMMAND…` on the manager host.
fn run_dask(cluster: &Cluster, options: &[&str], manifest: &Path, cwd: &Path, command: &[&str]) -> (Value, String) {
    let output = cluster
        .command_on(MANAGER, reprotrace_bin())
        .current_dir(cwd)
        .args(["run", "--dask", "--no-daemon"])
        .args(options)
        .arg("-o")
        .arg(manifest)
        .arg("--")
        .args(command)
        .output()
        .expect("reprotrace run");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "reprotrace run --dask failed:\n{stderr}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest).expect("manifest")).expect("JSON");
    assert_valid(&manifest);
    (manifest, stderr)
}

/// A task's inputs and outputs.
type TaskData = (BTreeSet<String>, BTreeSet<String>);

fn paths(section: &Value) -> BTreeSet<String> {
    section.as_array().expect("list").iter().map(|entry| entry["path"].as_str().expect("path").to_string()).collect()
}

fn distributions(software: &Value) -> BTreeSet<(String, String)> {
    software["python"]
        .as_array()
        .expect("python")
        .iter()
        .map(|d| (d["name"].as_str().expect("name").to_string(), d["version"].as_str().expect("version").to_string()))
        .collect()
}

/// The distributions owning `files`, by importlib in `venv`: the oracle.
fn owning_distributions(venv: &Path, files: &BTreeSet<String>) -> BTreeSet<(String, String)> {
    let script = "import importlib.metadata, json, os, sys\n\
                  loaded = set(json.load(sys.stdin))\n\
                  found = set()\n\
                  for d in importlib.metadata.distributions():\n\
                  \x20   files = {os.path.realpath(d.locate_file(f)) for f in (d.files or [])}\n\
                  \x20   if files & loaded: found.add((d.metadata['Name'], d.version))\n\
                  print(json.dumps(sorted(found)))\n";
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("oracle");
    serde_json::to_writer(child.stdin.take().expect("stdin"), files).expect("oracle input");
    let output = child.wait_with_output().expect("oracle");
    let found: Vec<(String, String)> = serde_json::from_slice(&output.stdout).expect("oracle output");
    found.into_iter().collect()
}

#[test]
fn a_run_on_three_hosts_gets_every_workers_audit_per_task() {
    let scratch = shared_dir();
    let data = scratch.path().join("data");
    std::fs::create_dir_all(data.join("in")).expect("in");
    std::fs::create_dir_all(data.join("out")).expect("out");
    // host-b's workers run as nobody and write here too.
    for dir in [&data, &data.join("out")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let tasks = ["threads-1", "threads-2", "child", "solo", "plain", "before-restart", "unaudited", "after-restart"];
    for name in tasks {
        std::fs::write(data.join(format!("in/{name}.txt")), format!("input of {name}\n")).expect("input");
    }
    let manager = scratch.path().join("dask_manager.py");
    std::fs::copy(repo_root().join("tests/workloads/dask_manager.py"), &manager).expect("manager script");
    let (current, old) = (current_venv(), old_six_venv());
    let current = current.as_path();
    let cluster = start(
        &scratch.path().join("cluster"),
        vec![
            host("host-a", true, current, None),
            host("host-b", true, old, Some("nobody")),
            host("host-c", false, current, None),
        ],
        vec![
            worker("host-a", "a-threads", 2, true, true),
            worker("host-a", "a-solo", 1, false, true),
            worker("host-b", "b-plain", 1, true, false),
            worker("host-b", "b-restart", 1, true, true),
            worker("host-c", "c-lone", 1, true, true),
        ],
    );
    let python = current.join("bin/python");
    let command = [python.to_str().expect("utf-8"), manager.to_str().expect("utf-8")];
    let mut task_data: Vec<BTreeMap<String, TaskData>> = Vec::new();
    for backend in BACKENDS {
        for name in tasks {
            let _ = std::fs::remove_file(data.join(format!("out/{name}.txt")));
        }
        let scheduler = cluster.scheduler_address();
        let data_arg = data.to_str().expect("utf-8");
        let manifest_path = scratch.path().join(format!("{backend}.json"));
        let (manifest, stderr) = run_dask(
            &cluster,
            &["--backend", backend],
            &manifest_path,
            scratch.path(),
            &[command[0], command[1], &scheduler, data_arg],
        );

        // The manager's own sections are the manager's: its process, its
        // script and its oracle file; nothing of the workers'.
        let processes = manifest["processes"].as_array().expect("processes");
        assert_eq!(processes[0]["argv"][1], command[1], "{backend}: the manager first");
        assert!(
            !manifest["processes"].to_string().contains("dask_worker"),
            "{backend}: no worker in the manager's tree"
        );
        assert_eq!(
            paths(&manifest["data"]["outputs"]),
            BTreeSet::from(["oracle.json", "addresses.json"].map(|name| data.join(name).display().to_string()))
        );
        assert_eq!(paths(&manifest["data"]["inputs"]), BTreeSet::from([manager.display().to_string()]));
        assert!(!manifest["files"].to_string().contains("/out/"), "{backend}: the manager never touched out/");

        // Hosts: the two with daemons complete, the third listed with the reason.
        let hosts: BTreeMap<&str, &Value> = manifest["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|host| (host["host"].as_str().expect("host"), host))
            .collect();
        assert_eq!(hosts.keys().copied().collect::<Vec<_>>(), ["host-a", "host-b", "host-c"], "{backend}");
        for audited in ["host-a", "host-b"] {
            assert_eq!(hosts[audited]["stats"]["complete"], true, "{backend} {audited}: {}", hosts[audited]["stats"]);
            assert_eq!(hosts[audited]["workers"].as_array().expect("workers").len(), 2, "{backend} {audited}");
        }
        let lone = &hosts["host-c"]["workers"][0];
        assert_eq!(lone["name"], "c-lone");
        assert!(lone["unaudited"].as_str().expect("a reason").contains("no reprotrace daemon"), "{lone}");
        assert_eq!(manifest["stats"]["complete"], false, "a worker was not audited");
        assert!(stderr.contains("c-lone on host-c was not audited"), "{stderr}");
        // The audit followed the nanny: the worker it restarted is in it.
        let restart = hosts["host-b"]["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .find(|worker| worker["name"] == "b-restart")
            .expect("b-restart");
        assert_eq!(restart["pids"], serde_json::json!([cluster.worker_pid("b-restart")]));

        // Every task of an audited worker, exactly its own data.
        let runs = manifest["tasks"].as_array().expect("tasks");
        let by_key: BTreeMap<&str, &Value> =
            runs.iter().map(|task| (task["key"].as_str().expect("key"), task)).collect();
        assert_eq!(runs.len(), by_key.len(), "{backend}: each task ran once");
        let expected: BTreeSet<&str> = tasks.iter().copied().filter(|name| *name != "unaudited").collect();
        assert_eq!(by_key.keys().copied().collect::<BTreeSet<_>>(), expected, "{backend}");
        let mut seen = BTreeMap::new();
        for (key, task) in &by_key {
            let input = BTreeSet::from([data.join(format!("in/{key}.txt")).display().to_string()]);
            let output = BTreeSet::from([data.join(format!("out/{key}.txt")).display().to_string()]);
            assert_eq!(paths(&task["data"]["inputs"]), input, "{backend} {key}: {task}");
            assert_eq!(paths(&task["data"]["outputs"]), output, "{backend} {key}: {task}");
            let host =
                if key.starts_with("threads") || *key == "child" || *key == "solo" { "host-a" } else { "host-b" };
            assert_eq!(task["host"], host, "{backend} {key}");
            seen.insert(key.to_string(), (paths(&task["data"]["inputs"]), paths(&task["data"]["outputs"])));
        }
        assert_ne!(by_key["threads-1"]["thread"], by_key["threads-2"]["thread"], "two pool threads at once");
        assert_eq!(by_key["child"]["processes"][0]["argv"][0], "cp");
        assert!(by_key["solo"]["processes"].as_array().expect("processes").is_empty());
        assert_ne!(by_key["before-restart"]["pid"], by_key["after-restart"]["pid"], "a new worker process");
        // Each task names the worker's address when it ran: after the nanny's
        // restart, the new process's, which the audit (started before) never knew.
        let sent_to: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(data.join("addresses.json")).expect("addresses")).expect("JSON");
        for (key, task) in &by_key {
            assert_eq!(task["worker"].as_str(), Some(sent_to[*key].as_str()), "{backend} {key}");
        }
        let audited_as = restart["address"].as_str().expect("the audit's address");
        assert_eq!(audited_as, sent_to["before-restart"], "{backend}: the audit began before the restart");
        if sent_to["after-restart"] != sent_to["before-restart"] {
            assert_ne!(by_key["after-restart"]["worker"].as_str(), Some(audited_as), "{backend}");
        }
        task_data.push(seen);

        // Each host's software, exactly what importlib says its workers loaded.
        let oracle: BTreeMap<String, Vec<String>> =
            serde_json::from_slice(&std::fs::read(data.join("oracle.json")).expect("oracle")).expect("oracle JSON");
        for (host_name, venv, workers) in
            [("host-a", current, ["a-threads", "a-solo"]), ("host-b", old, ["b-plain", "b-restart"])]
        {
            let loaded: BTreeSet<String> = workers.iter().flat_map(|worker| oracle[*worker].iter().cloned()).collect();
            assert_eq!(
                distributions(&hosts[host_name]["software"]),
                owning_distributions(venv, &loaded),
                "{backend} {host_name}"
            );
        }
        let six = |host: &str| distributions(&hosts[host]["software"]).into_iter().find(|(name, _)| name == "six");
        assert_eq!(six("host-a").map(|(_, version)| version).as_deref(), Some("1.17.0"));
        assert_eq!(six("host-b").map(|(_, version)| version).as_deref(), Some("1.16.0"));
        assert!(stderr.contains("six differs between hosts: 1.16.0 on host-b; 1.17.0 on host-a"), "{stderr}");
        // One host's environment, to rebuild it.
        let export = Command::new(reprotrace_bin())
            .args(["export", "requirements", "--host", "host-b"])
            .arg(&manifest_path)
            .output()
            .expect("reprotrace export");
        let requirements = String::from_utf8_lossy(&export.stdout);
        assert!(export.status.success() && requirements.lines().any(|line| line == "six==1.16.0"), "{requirements}");
    }
    assert_eq!(task_data[0], task_data[1], "the manager's backend changes nothing of the workers'");
    // Host by host, the two runs used the same software and data.
    for host in ["host-a", "host-b"] {
        let diff = Command::new(reprotrace_bin())
            .args(["diff", "--host", host])
            .arg(scratch.path().join("ebpf.json"))
            .arg(scratch.path().join("strace.json"))
            .output()
            .expect("reprotrace diff");
        assert_eq!(diff.status.code(), Some(0), "{host}: {}", String::from_utf8_lossy(&diff.stdout));
    }
    let unknown = Command::new(reprotrace_bin())
        .args(["diff", "--host", "host-z"])
        .arg(scratch.path().join("ebpf.json"))
        .arg(scratch.path().join("strace.json"))
        .output()
        .expect("reprotrace diff");
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert!(message.contains("no Dask host \"host-z\"") && message.contains("host-a, host-b, host-c"), "{message}");
    cluster.down().expect("the cluster goes down");
}

/// The climate example, a notebook run by nbconvert under `reprotrace run
/// --dask`: one task per station, each with exactly its CSV in and its fit
/// out, attributed to the notebook cell that submitted it.
#[test]
fn an_example_notebook_gets_its_tasks_per_cell() {
    let scratch = shared_dir();
    let example = scratch.path().join("climate");
    let data = scratch.path().join("data");
    std::fs::create_dir_all(&example).expect("example dir");
    for name in ["climate.ipynb", "generate.py"] {
        std::fs::copy(repo_root().join("examples/climate").join(name), example.join(name)).expect("example file");
    }
    let venv = current_venv();
    reprotrace_tests::run(
        Command::new(venv.join("bin/python")).arg(example.join("generate.py")).arg("--out").arg(&data),
    );
    let cluster = start(
        &scratch.path().join("cluster"),
        vec![host("host-a", true, &venv, None), host("host-b", true, &venv, None)],
        vec![
            worker("host-a", "a1", 2, true, true),
            worker("host-a", "a2", 1, true, true),
            worker("host-b", "b1", 1, true, true),
        ],
    );
    let jupyter = venv.join("bin/jupyter");
    let output = cluster
        .command_on(MANAGER, reprotrace_bin())
        .current_dir(&example)
        .env("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address())
        .env("EXAMPLE_DATA_DIR", &data)
        .args(["run", "--dask", "--no-daemon", "-o"])
        .arg(scratch.path().join("climate.json"))
        .arg("--")
        .arg(&jupyter)
        .args(["nbconvert", "--to", "notebook", "--execute", "climate.ipynb", "--output", "climate.out.ipynb"])
        .output()
        .expect("reprotrace run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(scratch.path().join("climate.json")).expect("manifest")).expect("JSON");
    assert_valid(&manifest);
    assert_eq!(manifest["stats"]["complete"], true, "{}\n{stderr}", manifest["stats"]);

    // The cell that called client.submit: the fourth code cell.
    let submit_cell = manifest["cells"][3]["execution_count"].as_u64().expect("the submitting cell");
    let stations: Vec<String> = (0..10).map(|index| format!("ST{index:03}")).collect();
    let tasks = manifest["tasks"].as_array().expect("tasks");
    let keys: BTreeSet<&str> = tasks.iter().map(|task| task["key"].as_str().expect("key")).collect();
    let expected: BTreeSet<String> = stations.iter().map(|station| format!("fit-{station}")).collect();
    assert_eq!(keys, expected.iter().map(String::as_str).collect(), "one task per station");
    for task in tasks {
        let station = task["key"].as_str().expect("key").trim_start_matches("fit-");
        let file = |path: String| BTreeSet::from([data.join(path).display().to_string()]);
        assert_eq!(paths(&task["data"]["inputs"]), file(format!("stations/{station}.csv")), "{task}");
        assert_eq!(paths(&task["data"]["outputs"]), file(format!("fits/{station}.json")), "{task}");
        assert_eq!(task["cell"].as_u64(), Some(submit_cell), "{task}");
        assert!(task.get("cell_by_clock").is_none(), "by the submission's marker: {task}");
    }
    let outputs = paths(&manifest["data"]["outputs"]);
    assert!(outputs.contains(&data.join("results/climate.json").display().to_string()), "{outputs:?}");
    assert!(outputs.contains(&example.join("climate.out.ipynb").display().to_string()), "{outputs:?}");
    let hosts: Vec<&str> =
        manifest["hosts"].as_array().expect("hosts").iter().filter_map(|h| h["host"].as_str()).collect();
    assert_eq!(hosts, ["host-a", "host-b"]);
    cluster.down().expect("the cluster goes down");
}

/// `reprotrace attach --kernel … --dask`: a client the kernel creates after the
/// attach takes part; its workers report when the attach ends, with the
/// tasks attributed to the cell that submitted them: exactly, from the
/// submission markers the attach saw in the kernel, though the scheduler's
/// clock (as its plugin reads it) is an hour behind.
#[test]
fn an_attached_kernels_clients_bring_their_workers_audits() {
    let scratch = shared_dir();
    let work = scratch.path().join("work");
    std::fs::create_dir_all(work.join("out")).expect("work dir");
    for name in ["x", "y"] {
        std::fs::write(work.join(format!("{name}.txt")), format!("input {name}\n")).expect("input");
    }
    let venv = current_venv();
    let cluster = start(
        &scratch.path().join("cluster"),
        vec![host("host-a", true, &venv, None)],
        vec![worker("host-a", "a1", 1, true, false), worker("host-a", "a2", 1, true, true)],
    );
    let work_text = work.to_str().expect("utf-8");
    let cells = serde_json::json!([
        ["connect", format!("from distributed import Client\nclient = Client({:?})\nclient.wait_for_workers(2)\n", cluster.scheduler_address())],
        ["submit", format!(
            "def copy(name):\n    text = open({work_text:?} + '/' + name + '.txt').read()\n    open({work_text:?} + '/out/' + name + '.txt', 'w').write(text)\n\
             client.gather([client.submit(copy, name, key='copy-' + name, pure=False) for name in ('x', 'y')])\n"
        )],
    ]);
    std::fs::write(scratch.path().join("cells.json"), cells.to_string()).expect("cells");
    let mut python = cluster.command_on(MANAGER, venv.join("bin/python"));
    // The kernel's client gives the scheduler's plugin this skew.
    python.env("REPROTRACE_TEST_SCHEDULER_CLOCK_SKEW_NS", (-3_600_000_000_000_i64).to_string());
    let session = KernelSession::start(python, &work, Some(&scratch.path().join("cells.json")));
    let manifest_path = scratch.path().join("attached.json");
    let tracer = reprotrace_tests::spawn_until(
        cluster
            .command_on(MANAGER, reprotrace_bin())
            .args(["attach", "--no-daemon", "--kernel", &session.connection, "--inject-hooks", "--dask", "-o"])
            .arg(&manifest_path),
        "cell hook installed",
    );
    session.run_cells_then_detach(tracer);

    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    assert_valid(&manifest);
    let submit_cell = manifest["cells"][1]["execution_count"].as_u64().expect("the submitting cell");
    let tasks = manifest["tasks"].as_array().expect("tasks");
    let keys: BTreeSet<&str> = tasks.iter().filter_map(|task| task["key"].as_str()).collect();
    assert_eq!(keys, BTreeSet::from(["copy-x", "copy-y"]), "{tasks:#?}");
    for task in tasks {
        let name = task["key"].as_str().expect("key").trim_start_matches("copy-");
        assert_eq!(
            paths(&task["data"]["inputs"]),
            BTreeSet::from([work.join(format!("{name}.txt")).display().to_string()])
        );
        assert_eq!(
            paths(&task["data"]["outputs"]),
            BTreeSet::from([work.join(format!("out/{name}.txt")).display().to_string()])
        );
        assert_eq!(task["cell"].as_u64(), Some(submit_cell), "{task}");
        assert!(task.get("cell_by_clock").is_none(), "by the submission's marker: {task}");
    }
    assert_eq!(
        manifest["hosts"][0]["workers"].as_array().expect("workers").len(),
        2,
        "the one without the preload too"
    );
    assert_eq!(manifest["stats"]["complete"], true, "{}", manifest["stats"]);
    cluster.down().expect("the cluster goes down");
}

/// `%load_ext reprotrace` typed in a kernel that `reprotrace attach --kernel`
/// (no `--inject-hooks`, no `--dask`) follows: the extension finds the
/// audit's channel, asks it, and makes the kernel's Dask clients take part,
/// as `--dask` would; their workers report when the attach ends.
#[test]
fn load_ext_under_an_attach_makes_the_kernels_clients_take_part() {
    let scratch = shared_dir();
    let work = scratch.path().join("work");
    std::fs::create_dir_all(work.join("out")).expect("work dir");
    std::fs::write(work.join("z.txt"), "input z\n").expect("input");
    let venv = current_venv();
    let cluster = start(
        &scratch.path().join("cluster"),
        vec![host("host-a", true, &venv, None)],
        vec![worker("host-a", "a1", 1, true, false)],
    );
    let work_text = work.to_str().expect("utf-8");
    let status = work.join("status.txt");
    let cells = serde_json::json!([
        // What the load printed, for the test to read.
        ["load", format!(
            "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()) as printed:\n    get_ipython().run_line_magic('load_ext', 'reprotrace')\n\
             open({:?}, 'w').write(printed.getvalue())\n", status.to_str().expect("utf-8")
        )],
        ["connect", format!("from distributed import Client\nclient = Client({:?})\nclient.wait_for_workers(1)\n", cluster.scheduler_address())],
        ["submit", format!(
            "def copy(name):\n    text = open({work_text:?} + '/' + name + '.txt').read()\n    open({work_text:?} + '/out/' + name + '.txt', 'w').write(text)\n\
             client.submit(copy, 'z', key='copy-z', pure=False).result()\n"
        )],
    ]);
    std::fs::write(scratch.path().join("cells.json"), cells.to_string()).expect("cells");
    let python = cluster.command_on(MANAGER, venv.join("bin/python"));
    let session = KernelSession::start(python, &work, Some(&scratch.path().join("cells.json")));
    let manifest_path = scratch.path().join("attached.json");
    let tracer = reprotrace_tests::spawn_until(
        cluster
            .command_on(MANAGER, reprotrace_bin())
            .args(["attach", "--no-daemon", "--kernel", &session.connection, "-o"])
            .arg(&manifest_path),
        "attached to",
    );
    session.run_cells_then_detach(tracer);

    let printed = std::fs::read_to_string(&status).expect("the load's status line");
    assert!(printed.contains("an audit is listening") && printed.contains("Dask clients take part"), "{printed}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    assert_valid(&manifest);
    let submit_cell = manifest["cells"][1]["execution_count"].as_u64().expect("the submitting cell");
    let tasks = manifest["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0]["key"], "copy-z");
    assert_eq!(tasks[0]["cell"].as_u64(), Some(submit_cell), "{}", tasks[0]);
    assert_eq!(paths(&tasks[0]["data"]["outputs"]), BTreeSet::from([work.join("out/z.txt").display().to_string()]));
    assert_eq!(manifest["hosts"][0]["workers"].as_array().expect("workers").len(), 1);
    assert_eq!(manifest["stats"]["complete"], true, "{}", manifest["stats"]);
    cluster.down().expect("the cluster goes down");
}

/// `reprotrace merge`: a run's manifest and a worker's audit made by hand
/// (`attach --dask-worker`), as `run --dask` would merge them.
#[test]
fn audits_gathered_by_hand_merge() {
    let scratch = shared_dir();
    let work = scratch.path();
    let mut worker = Command::new("sleep").arg("30").spawn().expect("a stand-in worker");
    let worker_manifest = work.join("worker.json");
    let mut audit = reprotrace_tests::spawn_until(
        Command::new(reprotrace_bin())
            .args(["attach", "--no-daemon", "--pid", &worker.id().to_string()])
            .args(["--dask-worker", "tcp://10.0.0.9:4000", "--dask-worker-name", "by-hand", "-o"])
            .arg(&worker_manifest),
        "attached to",
    );
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(audit.id() as libc::pid_t, libc::SIGINT) };
    assert!(audit.wait().expect("attach").success());
    let _ = worker.kill();
    let _ = worker.wait();
    let run = reprotrace_tests::audit("ebpf", work, work, &["true"]);
    assert!(run.output.status.success(), "{}", run.stderr());
    let merged = work.join("merged.json");
    let output = Command::new(reprotrace_bin())
        .args(["merge", "-o"])
        .arg(&merged)
        .arg(work.join("ebpf.json"))
        .arg(&worker_manifest)
        .output()
        .expect("reprotrace merge");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: Value = serde_json::from_slice(&std::fs::read(&merged).expect("merged")).expect("JSON");
    assert_valid(&manifest);
    let worker_entry = &manifest["hosts"][0]["workers"][0];
    assert_eq!(
        (worker_entry["address"].as_str(), worker_entry["name"].as_str()),
        (Some("tcp://10.0.0.9:4000"), Some("by-hand"))
    );
    assert_eq!(worker_entry["pids"], serde_json::json!([worker.id()]));
    for section in ["processes", "files", "software", "data", "cells"] {
        assert_eq!(manifest[section], run.manifest[section], "{section} is the run's own");
    }
    // The run's manifest is no worker's: merge says what to give it.
    let refused = Command::new(reprotrace_bin())
        .args(["merge", "-o"])
        .arg(work.join("refused.json"))
        .arg(&merged)
        .arg(work.join("ebpf.json"))
        .output()
        .expect("reprotrace merge");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(125), "{message}");
    assert!(
        message.contains("was not written by a Dask worker's audit") && message.contains("--dask-worker"),
        "{message}"
    );
}

/// A LocalCluster the run starts itself: its workers are in the run's own
/// tree, so both backends see their task markers directly; the plugin leaves
/// them unaudited by themselves, and the tasks are in the run's `tasks[]`.
#[test]
fn a_local_clusters_tasks_are_seen_by_both_backends() {
    let scratch = shared_dir();
    let work = scratch.path();
    std::fs::create_dir_all(work.join("out")).expect("out");
    for name in ["p", "q", "r"] {
        std::fs::write(work.join(format!("{name}.txt")), format!("input {name}\n")).expect("input");
    }
    let script = format!(
        "import os\n\
         from distributed import Client, LocalCluster\n\
         def copy(name):\n    text = open(os.path.join({work:?}, name + '.txt')).read()\n    \
         open(os.path.join({work:?}, 'out', name + '.txt'), 'w').write(text)\n\
         if __name__ == '__main__':\n    \
         with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster, Client(cluster) as client:\n        \
         client.gather([client.submit(copy, name, key='local-' + name, pure=False) for name in 'pqr'])\n",
        work = work.to_str().expect("utf-8"),
    );
    std::fs::write(work.join("local.py"), script).expect("script");
    let python = current_venv().join("bin/python");
    let mut per_backend = Vec::new();
    for backend in BACKENDS {
        let manifest_path = work.join(format!("local-{backend}.json"));
        let output = Command::new(reprotrace_bin())
            .current_dir(work)
            .args(["run", "--dask", "--no-daemon", "--backend", backend, "-o"])
            .arg(&manifest_path)
            .arg("--")
            .arg(&python)
            .arg("local.py")
            .output()
            .expect("reprotrace run");
        assert!(output.status.success(), "{backend}: {}", String::from_utf8_lossy(&output.stderr));
        let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
        assert_valid(&manifest);
        assert!(manifest.get("hosts").is_none(), "{backend}: the run followed its workers itself");
        let tasks: BTreeMap<String, TaskData> = manifest["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|task| {
                let key = task["key"].as_str().expect("key").to_string();
                (key, (paths(&task["data"]["inputs"]), paths(&task["data"]["outputs"])))
            })
            .collect();
        for name in ["p", "q", "r"] {
            let input = BTreeSet::from([work.join(format!("{name}.txt")).display().to_string()]);
            let output = BTreeSet::from([work.join(format!("out/{name}.txt")).display().to_string()]);
            assert_eq!(tasks.get(&format!("local-{name}")), Some(&(input, output)), "{backend}: {tasks:#?}");
        }
        assert_eq!(tasks.len(), 3, "{backend}: only the run's keys");
        // Every key a worker ran has its record, and the client reported.
        assert_eq!(manifest["stats"]["complete"], true, "{backend}: {}", manifest["stats"]);
        per_backend.push(tasks);
    }
    assert_eq!(per_backend[0], per_backend[1]);
}

/// Dask work that goes missing makes the run incomplete, each piece with its
/// reason: a worker whose plugin could not be set up (as on a distributed
/// without the private function the task markers wrap), the task it ran
/// with no record, and a client that took part but never reported.
#[test]
fn dask_work_that_goes_missing_makes_the_run_incomplete() {
    let scratch = shared_dir();
    let work = scratch.path();
    let script = "import os\n\
         from distributed import Client, LocalCluster\n\
         import distributed.worker as worker_module\n\
         def double(x):\n    return 2 * x\n\
         if __name__ == '__main__':\n    \
         with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:\n        \
         # The client's preload sets the plugin up while the function is hidden.\n        \
         hidden = worker_module._run_task_simple\n        \
         del worker_module._run_task_simple\n        \
         try:\n            client = Client(cluster)\n        \
         finally:\n            worker_module._run_task_simple = hidden\n        \
         assert client.submit(double, 21, key='double-21').result() == 42\n        \
         client.close()\n        \
         lost = Client(cluster)\n        \
         assert lost.submit(double, 1, key='double-1').result() == 2\n        \
         os._exit(0)  # before the second client closes\n";
    std::fs::write(work.join("missing.py"), script).expect("script");
    let manifest_path = work.join("missing.json");
    let output = Command::new(reprotrace_bin())
        .current_dir(work)
        .args(["run", "--dask", "--no-daemon", "--backend", "strace", "-o"])
        .arg(&manifest_path)
        .arg("--")
        .arg(current_venv().join("bin/python"))
        .arg("missing.py")
        .output()
        .expect("reprotrace run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the run itself succeeds: {stderr}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    assert_valid(&manifest);
    assert_eq!(manifest["stats"]["complete"], false, "{}", manifest["stats"]);

    let workers = manifest["hosts"][0]["workers"].as_array().expect("the host's workers");
    assert_eq!(workers.len(), 1, "{workers:?}");
    let reason = workers[0]["unaudited"].as_str().expect("the worker is listed unaudited");
    assert!(
        reason.starts_with("reprotrace's plugin could not be set up: this distributed (")
            && reason.contains("has no distributed.worker._run_task_simple"),
        "{reason}"
    );
    let missing: Vec<&str> = manifest["stats"]["missing_work"]
        .as_array()
        .expect("missing_work")
        .iter()
        .map(|line| line.as_str().expect("a line"))
        .collect();
    assert_eq!(missing.len(), 2, "{missing:#?}");
    assert!(
        missing.iter().any(|line| line.contains("took part but never reported its workers' audits")),
        "{missing:#?}"
    );
    assert!(
        missing.iter().any(|line| line
            .starts_with("1 of the 1 Dask tasks the run submitted and a worker ran have no record (double-21)")),
        "{missing:#?}"
    );
    for line in &missing {
        assert!(stderr.contains(&format!("reprotrace: warning: {line}")), "{line:?} said on stderr:\n{stderr}");
    }
    assert!(stderr.contains("the manifest may be incomplete"), "{stderr}");
}
