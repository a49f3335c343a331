//! A simulated Dask cluster on one machine, for reprotrace's tests and
//! `cargo xtask cluster`.
//!
//! Every simulated host is a Linux network namespace joined to a "switch"
//! namespace (a bridge) by a veth pair, with an address of a private /24 that
//! exists only inside those namespaces: nothing is added to the root
//! namespace. Processes on a host run in its network namespace and in a UTS
//! namespace of their own that carries the host's name, so
//! `socket.gethostname()` answers the host's name; they share the pid
//! namespace, the mount namespace (the filesystem) and the installed software
//! with everything else. A host may run a `reprotrace daemon` and Dask
//! workers (as root, or as a user); a "scheduler" host runs the Dask
//! scheduler and a "manager" host is where a client runs ([`Cluster::command_on`]).
//!
//! [`Cluster::up`] returns once everything is ready; [`Cluster::down`] (or
//! dropping the [`Cluster`]) stops every process and deletes the namespaces.
//! Everything started is recorded in `<state_dir>/cluster.json`, so that
//! [`down_from_state`] can tear a cluster down from another process (as
//! `cargo xtask cluster down` does after [`Cluster::detach`]).
//!
//! Needs root, iproute2 (`ip`), util-linux (`nsenter`, `unshare`, `setpriv`)
//! and a Python with `distributed` for the scheduler, the manager and each
//! host's workers.
//!
//! The state directory holds:
//! - `cluster.json`: the state file;
//! - `scheduler.log`, and `scheduler/` (the scheduler's working directory);
//! - `<host>/daemon.sock`, `<host>/daemon.log` for a host with a daemon;
//! - `<host>/<worker>.log`, and `<host>/<worker>/`: the worker's working and
//!   `--local-directory` (owned by the host's user, if it has one).

#![deny(missing_docs)]

mod net;
mod process;
mod state;
mod teardown;

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    fs,
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use crate::{
    net::Lease,
    process::POLL,
    state::{HostRecord, Kind, ProcRecord, State, STATE_FILE},
};

/// The name of the host the scheduler runs on (see [`Cluster::command_on`]).
pub const SCHEDULER: &str = "scheduler";
/// The name of the host meant for clients ([`Cluster::command_on`]): it runs
/// nothing of the cluster's own.
pub const MANAGER: &str = "manager";
/// The port the scheduler listens on, at its host's address.
pub const SCHEDULER_PORT: u16 = 8786;

/// One simulated host.
#[derive(Clone, Debug, Default)]
pub struct HostSpec {
    /// The host's name, also its hostname (letters, digits and `-`, at most
    /// 63, not "scheduler" nor "manager"), e.g. `host-a`.
    pub name: String,
    /// Whether the host runs a `reprotrace daemon` (on
    /// `<state_dir>/<name>/daemon.sock`, exported to its workers as
    /// `REPROTRACE_SOCKET`).
    pub daemon: bool,
    /// The Python its workers run with (a venv's `bin/python` gives the host
    /// its own packages); not resolved through symlinks.
    pub python: PathBuf,
    /// Runs the host's workers as this user (`setpriv --reuid --regid
    /// --init-groups`, with `HOME`, `USER` and `LOGNAME` set to the user's)
    /// instead of root. The daemon always runs as root. The Python and the
    /// state directory's ancestors must be usable by the user.
    pub user: Option<String>,
}

/// One Dask worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The [`HostSpec::name`] of the host it runs on.
    pub host: String,
    /// Its Dask name (`--name`): letters, digits, `.`, `_` and `-`, unique
    /// among workers and different from every host's name.
    pub name: String,
    /// Threads (`--nthreads`), at least 1.
    pub nthreads: u32,
    /// Whether a nanny runs the worker (`false`: `--no-nanny`).
    pub nanny: bool,
    /// Each becomes `--preload X` (a module such as `reprotrace.dask`, or a
    /// path to a `.py` file).
    pub preload: Vec<String>,
    /// Environment added to the worker's (after `REPROTRACE_SOCKET` and
    /// `REPROTRACE_BIN`, so it may override them).
    pub env: Vec<(String, String)>,
}

impl Default for WorkerSpec {
    /// One thread, with a nanny, no preload, no extra environment; `host` and
    /// `name` empty (to be filled in).
    fn default() -> WorkerSpec {
        WorkerSpec {
            host: String::new(),
            name: String::new(),
            nthreads: 1,
            nanny: true,
            preload: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A whole cluster: its hosts, its workers, and what runs them.
#[derive(Clone, Debug, Default)]
pub struct ClusterSpec {
    /// The simulated hosts (at most 240), besides the scheduler and manager hosts.
    pub hosts: Vec<HostSpec>,
    /// The workers, each on one of [`ClusterSpec::hosts`].
    pub workers: Vec<WorkerSpec>,
    /// The Python that runs the scheduler, and the readiness check on the
    /// manager host.
    pub scheduler_python: PathBuf,
    /// The `reprotrace` binary: runs the daemons, and is exported to every
    /// worker as `REPROTRACE_BIN`. Needed only when a host has a daemon.
    pub reprotrace: PathBuf,
    /// Extra arguments for every `reprotrace daemon` (e.g. `--allow-users`).
    /// Not `--quiet`: the daemon's `daemon ready` line is how readiness is seen.
    pub daemon_args: Vec<String>,
    /// Where the state file, sockets and logs go. Created if missing and made
    /// mode 0755 (so that hosts' users can reach their sockets and
    /// directories); one cluster at a time per directory. Files of an earlier
    /// cluster there are overwritten.
    pub state_dir: PathBuf,
}

impl ClusterSpec {
    /// The time [`Cluster::up`] allows: a minute, plus 20 s a worker and 10 s
    /// a host (on two cores, Python processes importing `distributed` side by
    /// side are slow).
    pub fn default_timeout(&self) -> Duration {
        Duration::from_secs(60 + 20 * self.workers.len() as u64 + 10 * self.hosts.len() as u64)
    }
}

/// Clusters this process has brought up: part of each one's namespace prefix.
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// A running simulated cluster. Dropping it tears it down (ignoring errors)
/// unless it was [detached](Cluster::detach); [`Cluster::down`] does the
/// same and reports errors.
#[derive(Debug)]
pub struct Cluster {
    state: State,
    state_dir: PathBuf,
    /// The processes started, to be reaped.
    children: Vec<Child>,
    lease: Option<Lease>,
    /// Torn down or detached: nothing left for drop to do.
    finished: bool,
}

impl Cluster {
    /// Starts the cluster and returns once all of it is ready: the scheduler
    /// is listening, every daemon printed `daemon ready`, and every worker is
    /// connected to the scheduler (asked from the manager host), within
    /// [`ClusterSpec::default_timeout`]. On failure, everything started is
    /// torn down again and the error names what did not come up, with the
    /// end of its log.
    pub fn up(spec: ClusterSpec) -> Result<Cluster> {
        let timeout = spec.default_timeout();
        Cluster::up_within(spec, timeout)
    }

    /// [`Cluster::up`] with a time limit of your choosing.
    pub fn up_within(spec: ClusterSpec, timeout: Duration) -> Result<Cluster> {
        let deadline = Instant::now() + timeout;
        let spec = validate(spec)?;
        let daemon_hosts: Vec<&str> =
            spec.spec.hosts.iter().filter(|host| host.daemon).map(|host| host.name.as_str()).collect();
        let state_dir = prepare_state_dir(&spec.spec.state_dir, &daemon_hosts)?;
        let seed = std::process::id().wrapping_mul(7).wrapping_add(CLUSTERS.load(Ordering::Relaxed).wrapping_mul(13));
        let lease = net::lease_subnet(seed)?;
        let prefix = unique_prefix()?;
        let scheduler_address = format!("tcp://{}:{SCHEDULER_PORT}", lease.address(2));
        let mut cluster = Cluster {
            state: State::new(prefix, lease.subnet(), scheduler_address),
            state_dir,
            children: Vec::new(),
            lease: Some(lease),
            finished: false,
        };
        let started = cluster.start(&spec, deadline, timeout);
        let Err(err) = started else { return Ok(cluster) };
        let logs = cluster.state_dir.display().to_string();
        Err(match cluster.finish() {
            Ok(()) => err.context(format!(
                "the simulated cluster did not come up; what had started is torn down again (logs are in {logs})"
            )),
            Err(cleanup) => err.context(format!(
                "the simulated cluster did not come up, and tearing down what had started failed too: {cleanup:#}\n\
                 (logs are in {logs}; retry the teardown with `cargo xtask cluster down --state {logs}`)"
            )),
        })
    }

    /// The scheduler's address, `tcp://10.233.N.2:8786`.
    pub fn scheduler_address(&self) -> String {
        self.state.scheduler_address.clone()
    }

    /// The socket of the host's daemon; `None` for a host without one (or no
    /// such host).
    pub fn daemon_socket(&self, host: &str) -> Option<PathBuf> {
        self.host_record(host)?.daemon_socket.clone()
    }

    /// The host's address on the cluster's network (10.233.N.x); hosts
    /// [`SCHEDULER`] and [`MANAGER`] included.
    pub fn host_address(&self, host: &str) -> Option<Ipv4Addr> {
        Some(self.host_record(host)?.address)
    }

    /// The arguments that run a program on `host` (in its network namespace,
    /// with its hostname): `nsenter --net=… -- unshare --uts -- sh -c
    /// 'hostname "$1" && shift && exec "$@"' sh HOST`, followed by the program
    /// and its arguments. The program is exec'd: it keeps the pid of the first.
    pub fn command_prefix(&self, host: &str) -> Option<Vec<OsString>> {
        let record = self.host_record(host)?;
        let mut net = OsString::from("--net=");
        net.push(net::namespace_path(&record.namespace));
        let args = ["nsenter".into(), net, "--".into(), "unshare".into(), "--uts".into(), "--".into(), "sh".into()];
        let script =
            ["-c".into(), r#"hostname "$1" && shift && exec "$@""#.into(), "sh".into(), record.name.clone().into()];
        Some(args.into_iter().chain(script).collect())
    }

    /// A command that runs `program` on `host` (a [`HostSpec::name`],
    /// [`SCHEDULER`] or [`MANAGER`]): in that host's network namespace, with
    /// its hostname, as root, in the caller's mount namespace and environment.
    /// The caller adds arguments, environment (`REPROTRACE_SOCKET` is not set
    /// for it: see [`Cluster::daemon_socket`]), working directory and stdio.
    /// Whatever still runs in the host's namespace at [`Cluster::down`] is
    /// stopped then.
    ///
    /// Panics if there is no such host.
    pub fn command_on(&self, host: &str, program: impl AsRef<OsStr>) -> Command {
        let Some(prefix) = self.command_prefix(host) else {
            panic!("the cluster has no host {host:?} (it has {:?})", self.host_names())
        };
        let mut command = Command::new(&prefix[0]);
        command.args(&prefix[1..]).arg(program);
        command
    }

    /// The pid of the worker's top process: its nanny, or the worker itself
    /// under `--no-nanny` (started through [`Cluster::command_on`], so it is
    /// the Python process itself).
    ///
    /// Panics if there is no such worker.
    pub fn worker_pid(&self, name: &str) -> u32 {
        match self.state.processes.iter().find(|record| record.kind == Kind::Worker && record.name == name) {
            Some(record) => record.pid,
            None => panic!("the cluster has no worker {name:?}"),
        }
    }

    /// The log file (stdout and stderr) of a worker (by its name), of a
    /// host's daemon (by the host's name), or of the scheduler ([`SCHEDULER`]).
    ///
    /// Panics if nothing of that name was started.
    pub fn log(&self, name: &str) -> PathBuf {
        match self.state.processes.iter().find(|record| record.name == name) {
            Some(record) => record.log.clone(),
            None => panic!("the cluster started no worker, daemon or scheduler named {name:?}"),
        }
    }

    /// The pids of every process the cluster started itself, in start order:
    /// the daemons (in host order), the scheduler, the workers' top processes
    /// (not their children).
    pub fn pids(&self) -> Vec<u32> {
        self.state.processes.iter().map(|record| record.pid).collect()
    }

    /// The names of the cluster's network namespaces (as `ip netns list`
    /// shows them), the switch's first.
    pub fn namespaces(&self) -> &[String] {
        &self.state.namespaces
    }

    /// The state directory (absolute).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Tears the cluster down: every process in its namespaces or in a
    /// process group it started gets SIGTERM (workers, the scheduler and
    /// whatever runs on the hosts first, the daemons last), then SIGKILL if it
    /// outlasts 15 s; then the namespaces are deleted (which deletes the veths
    /// and the bridge). Logs, sockets left by killed daemons and the state
    /// file stay. Goes as far as it can, then reports whatever is left.
    pub fn down(mut self) -> Result<()> {
        self.finish()
    }

    /// Leaves the cluster running after this value is gone (and after this
    /// process exits): [`down_from_state`] on [`Cluster::state_dir`] tears it
    /// down. Returns the state directory.
    pub fn detach(mut self) -> PathBuf {
        self.finished = true;
        // Dropping a `Child` neither kills nor waits for it.
        self.children.clear();
        self.state_dir.clone()
    }

    /// Tears down, once.
    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        let result = teardown::teardown(&self.state, &mut self.children);
        // The subnet is free for this process's next cluster.
        self.lease = None;
        result
    }

    fn host_record(&self, host: &str) -> Option<&HostRecord> {
        self.state.hosts.iter().find(|record| record.name == host)
    }

    fn host_names(&self) -> Vec<&str> {
        self.state.hosts.iter().map(|record| record.name.as_str()).collect()
    }

    fn save(&self) -> Result<()> {
        self.state.save(&self.state_dir)
    }

    /// Everything [`Cluster::up`] does after the checks, recording as it goes.
    fn start(&mut self, spec: &Checked, deadline: Instant, timeout: Duration) -> Result<()> {
        self.build_network(spec)?;
        let mut ready = Vec::new();
        for host in spec.spec.hosts.iter().filter(|host| host.daemon) {
            ready.push(self.start_daemon(spec, host)?);
        }
        ready.push(self.start_scheduler(spec)?);
        self.wait_for_lines(&ready, deadline, timeout)?;
        for worker in &spec.spec.workers {
            self.start_worker(spec, worker)?;
        }
        self.wait_for_workers(spec, deadline, timeout)
    }

    /// The switch, and a namespace plugged into it for the scheduler (.2),
    /// the manager (.3) and each host (.10 on).
    fn build_network(&mut self, spec: &Checked) -> Result<()> {
        let prefix = self.state.prefix.clone();
        let switch = format!("{prefix}-sw");
        self.add_namespace(&switch)?;
        net::make_switch(&switch).context("cannot set up the switch namespace's bridge")?;
        let Some(lease) = &self.lease else { bail!("the cluster has no subnet") };
        let mut hosts = vec![
            (SCHEDULER.to_string(), format!("{prefix}-sc"), lease.address(2), None),
            (MANAGER.to_string(), format!("{prefix}-mg"), lease.address(3), None),
        ];
        for (index, host) in spec.spec.hosts.iter().enumerate() {
            make_dir(&self.state_dir.join(&host.name), None)?;
            let socket = host.daemon.then(|| self.state_dir.join(&host.name).join("daemon.sock"));
            hosts.push((
                host.name.clone(),
                format!("{prefix}-h{}", index + 1),
                lease.address(10 + index as u8),
                socket,
            ));
        }
        for (port, (name, namespace, address, daemon_socket)) in hosts.into_iter().enumerate() {
            self.add_namespace(&namespace)?;
            net::plug(&switch, &format!("v{port}"), &namespace, address)
                .with_context(|| format!("cannot connect host {name} (namespace {namespace}) to the switch"))?;
            self.state.hosts.push(HostRecord { name, namespace, address, daemon_socket });
            self.save()?;
        }
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> Result<()> {
        net::add_namespace(name).with_context(|| format!("cannot create network namespace {name}"))?;
        self.state.namespaces.push(name.to_string());
        self.save()
    }

    /// Starts a process and records it (before anything else can fail).
    fn spawn(&mut self, kind: Kind, name: &str, host: &str, mut command: Command, log: PathBuf) -> Result<Waited> {
        let what = match kind {
            Kind::Daemon => format!("the reprotrace daemon of host {host}"),
            Kind::Scheduler => "the Dask scheduler".to_string(),
            Kind::Worker => format!("Dask worker {name} on host {host}"),
        };
        let child = process::spawn_logged(&mut command, &log, &what)?;
        let pid = child.id();
        let start_time = process::stat(pid).map_or(0, |stat| stat.start_time);
        self.children.push(child);
        self.state.processes.push(ProcRecord {
            kind,
            name: name.to_string(),
            host: host.to_string(),
            pid,
            start_time,
            log: log.clone(),
        });
        self.save()?;
        Ok(Waited { what, pid, log, needle: "" })
    }

    fn start_daemon(&mut self, spec: &Checked, host: &HostSpec) -> Result<Waited> {
        let dir = self.state_dir.join(&host.name);
        let Some(socket) = self.daemon_socket(&host.name) else { bail!("host {} has no daemon socket", host.name) };
        // A socket left by an earlier daemon would confuse its clients.
        match fs::remove_file(&socket) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("cannot remove the old socket {}", socket.display()))
            }
            _ => {}
        }
        let mut command = self.command_on(&host.name, &spec.spec.reprotrace);
        command.arg("daemon").arg("--socket").arg(&socket).args(&spec.spec.daemon_args).current_dir(&dir);
        let waited = self.spawn(Kind::Daemon, &host.name, &host.name, command, dir.join("daemon.log"))?;
        Ok(Waited { needle: "daemon ready", ..waited })
    }

    fn start_scheduler(&mut self, spec: &Checked) -> Result<Waited> {
        let dir = self.state_dir.join(SCHEDULER);
        make_dir(&dir, None)?;
        let address = self.host_address(SCHEDULER).context("the cluster has no scheduler host")?.to_string();
        let mut command = self.command_on(SCHEDULER, &spec.spec.scheduler_python);
        command
            .args(["-m", "distributed.cli.dask_scheduler", "--host", &address, "--port", &SCHEDULER_PORT.to_string()])
            // The HTTP server (health, metrics) runs anyway: on loopback.
            .args(["--no-dashboard", "--dashboard-address", "127.0.0.1:0"])
            .current_dir(&dir);
        let waited =
            self.spawn(Kind::Scheduler, SCHEDULER, SCHEDULER, command, self.state_dir.join("scheduler.log"))?;
        Ok(Waited { needle: "Scheduler at:", ..waited })
    }

    fn start_worker(&mut self, spec: &Checked, worker: &WorkerSpec) -> Result<()> {
        let Some(host) = spec.spec.hosts.iter().find(|host| host.name == worker.host) else {
            bail!("worker {} is on host {}, which the spec does not have", worker.name, worker.host)
        };
        let account = host.user.as_ref().and_then(|user| spec.accounts.get(user));
        let host_dir = self.state_dir.join(&host.name);
        let dir = host_dir.join(&worker.name);
        make_dir(&dir, account)?;
        let mut command = match account {
            None => self.command_on(&host.name, &host.python),
            Some(account) => {
                let mut command = self.command_on(&host.name, "setpriv");
                command
                    .args(["--reuid", &account.uid.to_string(), "--regid", &account.gid.to_string()])
                    .args(["--init-groups", "--"])
                    .arg(&host.python)
                    .env("HOME", &account.home)
                    .env("USER", &account.name)
                    .env("LOGNAME", &account.name);
                command
            }
        };
        let address = self.host_address(&host.name).context("the host has no address")?.to_string();
        command
            .args(["-m", "distributed.cli.dask_worker", &self.state.scheduler_address])
            .args(["--name", &worker.name, "--nthreads", &worker.nthreads.to_string(), "--host", &address])
            // The HTTP server (health, metrics) runs anyway: on loopback.
            .args(["--no-dashboard", "--dashboard-address", "127.0.0.1:0"])
            .arg("--local-directory")
            .arg(&dir)
            .current_dir(&dir);
        if !worker.nanny {
            command.arg("--no-nanny");
        }
        for module in &worker.preload {
            command.args(["--preload", module]);
        }
        command.env_remove("REPROTRACE_SOCKET");
        if let Some(socket) = self.daemon_socket(&host.name) {
            command.env("REPROTRACE_SOCKET", socket);
        }
        if !spec.spec.reprotrace.as_os_str().is_empty() {
            command.env("REPROTRACE_BIN", &spec.spec.reprotrace);
        }
        command.envs(worker.env.iter().map(|(key, value)| (key, value)));
        let log = host_dir.join(format!("{}.log", worker.name));
        self.spawn(Kind::Worker, &worker.name, &host.name, command, log).map(drop)
    }

    /// The exit status of a process we started, once it has exited.
    fn exited(&mut self, pid: u32) -> Option<ExitStatus> {
        let child = self.children.iter_mut().find(|child| child.id() == pid)?;
        child.try_wait().ok().flatten()
    }

    /// Waits until each process printed its line, failing at once when one exits.
    fn wait_for_lines(&mut self, waited: &[Waited], deadline: Instant, timeout: Duration) -> Result<()> {
        let mut pending: Vec<&Waited> = waited.iter().collect();
        loop {
            let mut still = Vec::new();
            for waited in pending {
                if fs::read_to_string(&waited.log).is_ok_and(|text| text.contains(waited.needle)) {
                    continue;
                }
                if let Some(status) = self.exited(waited.pid) {
                    bail!(
                        "{} exited ({status}) before printing `{}`\n{}",
                        waited.what,
                        waited.needle,
                        process::tail(&waited.log, 30)
                    );
                }
                still.push(waited);
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let report: Vec<String> = pending
                    .iter()
                    .map(|waited| {
                        format!("{} did not print `{}`\n{}", waited.what, waited.needle, process::tail(&waited.log, 30))
                    })
                    .collect();
                bail!("not ready within {} s:\n{}", timeout.as_secs(), report.join("\n"));
            }
            thread::sleep(POLL);
        }
    }

    /// Asks the scheduler, from the manager host, until every worker is
    /// connected; fails at once when a worker exits.
    fn wait_for_workers(&mut self, spec: &Checked, deadline: Instant, timeout: Duration) -> Result<()> {
        if spec.spec.workers.is_empty() {
            return Ok(());
        }
        let workers: Vec<(String, u32, PathBuf)> = self
            .state
            .processes
            .iter()
            .filter(|record| record.kind == Kind::Worker)
            .map(|record| (record.name.clone(), record.pid, record.log.clone()))
            .collect();
        let names: Vec<&str> = workers.iter().map(|(name, _, _)| name.as_str()).collect();
        let names = serde_json::to_string(&names).context("encoding the worker names")?;
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(10));
        let address = self.scheduler_address();
        let mut command = self.command_on(MANAGER, &spec.spec.scheduler_python);
        command
            .args(["-c", READY_CHECK, &address, &left.as_secs_f64().to_string(), &names])
            .current_dir(&self.state_dir);
        let scheduler_log = self.log(SCHEDULER);
        // Python's own deadline comes first; this only bounds a hung one.
        let output = process::output_within(&mut command, left + Duration::from_secs(30), || {
            for (name, pid, log) in &workers {
                if let Some(status) = self.exited(*pid) {
                    bail!("Dask worker {name} exited ({status}) before connecting\n{}", process::tail(log, 30));
                }
            }
            Ok(())
        })
        .context("waiting for the workers to connect to the scheduler")?;
        if !output.status.success() {
            bail!(
                "asking the scheduler at {address} for its workers failed (Python on the manager host: {}):\n{}\n{}",
                output.status,
                indent_tail(&output.stderr, 30),
                process::tail(&scheduler_log, 20)
            );
        }
        let seen: Vec<String> = output
            .stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .and_then(|value| serde_json::from_value(value.get("seen")?.clone()).ok())
            .with_context(|| format!("the readiness check printed no worker list: {:?}", output.stdout))?;
        let missing: Vec<&(String, u32, PathBuf)> =
            workers.iter().filter(|(name, _, _)| !seen.contains(name)).collect();
        if !missing.is_empty() {
            let report: Vec<String> = missing.iter().map(|(_, _, log)| process::tail(log, 30)).collect();
            let names: Vec<&str> = missing.iter().map(|(name, _, _)| name.as_str()).collect();
            bail!(
                "Dask worker(s) {} did not connect to the scheduler at {address} within {} s (connected: {seen:?})\n{}\n{}",
                names.join(", "),
                timeout.as_secs(),
                report.join("\n"),
                process::tail(&scheduler_log, 20)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    /// Tears the cluster down (see [`Cluster::down`]) unless that was done or
    /// it was detached; errors are ignored.
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish();
        }
    }
}

/// Tears down the cluster whose state file is in `state_dir` (as written by
/// [`Cluster::up`], e.g. after [`Cluster::detach`] or a crash), completely:
/// see [`Cluster::down`]. Running it again, or on a cluster already down,
/// does nothing.
pub fn down_from_state(state_dir: &Path) -> Result<()> {
    let state = state::State::load(state_dir)?.with_context(|| {
        format!(
            "there is no cluster state in {} ({STATE_FILE} is missing): no cluster was brought up with that state \
             directory",
            state_dir.display()
        )
    })?;
    teardown::teardown(&state, &mut Vec::new())
}

/// The Python that waits, on the manager host, until the scheduler knows
/// every worker: `ADDRESS SECONDS NAMES_JSON`; prints `{"seen": [names]}`.
const READY_CHECK: &str = r#"
import json, sys, time
from distributed import Client
address, limit, expected = sys.argv[1], float(sys.argv[2]), set(json.loads(sys.argv[3]))
deadline = time.monotonic() + limit
client = Client(address, timeout=limit)
while True:
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:
        info = client.scheduler_info()
    seen = {str(worker.get("name")) for worker in info["workers"].values()}
    if expected <= seen or time.monotonic() > deadline:
        break
    time.sleep(0.25)
client.close()
print(json.dumps({"seen": sorted(seen)}))
"#;

/// A process to wait for: until `needle` shows in its log.
#[derive(Clone)]
struct Waited {
    what: String,
    pid: u32,
    log: PathBuf,
    needle: &'static str,
}

/// A user the workers of a host run as.
#[derive(Clone, Debug)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// A spec that passed [`validate`], with absolute paths and its users looked up.
struct Checked {
    spec: ClusterSpec,
    accounts: HashMap<String, Account>,
}

/// Looks a user up (`getent passwd`, so NSS is honoured).
fn account(user: &str) -> Result<Account> {
    let entry = process::run_quick(Command::new("getent").args(["passwd", user]), Duration::from_secs(10))
        .with_context(|| format!("there is no user {user:?} (`getent passwd {user}` finds none)"))?;
    let fields: Vec<&str> = entry.trim().split(':').collect();
    ensure!(fields.len() >= 7, "`getent passwd {user}` printed {entry:?}, not a passwd line");
    Ok(Account {
        name: user.to_string(),
        uid: fields[2].parse().with_context(|| format!("user {user}'s uid {:?}", fields[2]))?,
        gid: fields[3].parse().with_context(|| format!("user {user}'s gid {:?}", fields[3]))?,
        home: PathBuf::from(fields[5]),
    })
}

/// Checks that `account` can run `python` with `distributed`, and run it
/// again from inside (as a nanny starts its worker and multiprocessing its
/// resource tracker): a venv whose base Python the user cannot reach fails
/// only there, with a mere "Broken pipe".
fn check_usable(account: &Account, python: &Path) -> Result<()> {
    const SCRIPT: &str = "import subprocess, sys; \
        sys.exit(subprocess.call([sys.executable, '-c', 'import distributed']))";
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", &account.uid.to_string(), "--regid", &account.gid.to_string(), "--init-groups", "--"])
        .arg(python)
        .args(["-c", SCRIPT])
        .env("HOME", &account.home)
        .current_dir("/");
    process::run_quick(&mut command, Duration::from_secs(60)).map(drop).with_context(|| {
        format!(
            "{} cannot run {} and import distributed from a Python it starts (every directory on the way to the \
             venv and to its base Python, e.g. under /root, must be searchable by the user)",
            account.name,
            python.display()
        )
    })
}

/// Whether `name` is a usable hostname (one DNS label).
fn valid_hostname(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is usable as a worker name (and a file name).
fn valid_worker_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// An absolute path that must be an existing file.
fn existing_file(path: &Path, what: &str) -> Result<PathBuf> {
    ensure!(!path.as_os_str().is_empty(), "{what} is not set");
    // Not canonicalized: a venv's python is a symlink that must stay one.
    let absolute = std::path::absolute(path).with_context(|| format!("{what} {}", path.display()))?;
    ensure!(absolute.is_file(), "{what} {} does not exist", path.display());
    Ok(absolute)
}

/// Checks the spec before anything is started.
fn validate(mut spec: ClusterSpec) -> Result<Checked> {
    ensure!(spec.hosts.len() <= 240, "at most 240 hosts fit the cluster's /24 ({} asked for)", spec.hosts.len());
    let mut accounts = HashMap::new();
    for host in &mut spec.hosts {
        ensure!(
            valid_hostname(&host.name) && host.name != SCHEDULER && host.name != MANAGER,
            "host name {:?} is not a usable hostname (letters, digits and inner `-`, at most 63; not {SCHEDULER:?} \
             or {MANAGER:?})",
            host.name
        );
        host.python = existing_file(&host.python, &format!("the python of host {}", host.name))?;
        if let Some(user) = &host.user {
            if !accounts.contains_key(user) {
                accounts.insert(user.clone(), account(user)?);
            }
            if let Some(account) = accounts.get(user) {
                check_usable(account, &host.python)
                    .with_context(|| format!("host {}'s workers cannot run as user {user}", host.name))?;
            }
        }
    }
    let host_names: Vec<&str> = spec.hosts.iter().map(|host| host.name.as_str()).collect();
    for (index, name) in host_names.iter().enumerate() {
        ensure!(!host_names[..index].contains(name), "two hosts are named {name:?}");
    }
    let mut worker_names: Vec<&str> = Vec::new();
    for worker in &spec.workers {
        ensure!(
            valid_worker_name(&worker.name),
            "worker name {:?} is not usable (letters, digits, `.`, `_` and `-`, at most 100, not starting with `.`)",
            worker.name
        );
        ensure!(!worker_names.contains(&worker.name.as_str()), "two workers are named {:?}", worker.name);
        ensure!(
            !host_names.contains(&worker.name.as_str()) && worker.name != SCHEDULER && worker.name != MANAGER,
            "worker {:?} has the name of a host (log names must tell them apart)",
            worker.name
        );
        ensure!(
            host_names.contains(&worker.host.as_str()),
            "worker {} is on host {:?}, which the spec does not have (hosts: {host_names:?})",
            worker.name,
            worker.host
        );
        ensure!(worker.nthreads >= 1, "worker {} has nthreads 0: give it at least 1", worker.name);
        for (key, value) in &worker.env {
            ensure!(
                !key.is_empty() && !key.contains(['=', '\0']) && !value.contains('\0'),
                "worker {}'s environment variable {key:?} is not usable",
                worker.name
            );
        }
        worker_names.push(&worker.name);
    }
    spec.scheduler_python = existing_file(&spec.scheduler_python, "the scheduler's python")?;
    if spec.hosts.iter().any(|host| host.daemon) || !spec.reprotrace.as_os_str().is_empty() {
        spec.reprotrace =
            existing_file(&spec.reprotrace, "the reprotrace binary (build it with `cargo build -p tracer-user`)")?;
    }
    ensure!(!spec.state_dir.as_os_str().is_empty(), "the state directory is not set");
    Ok(Checked { spec, accounts })
}

/// Creates a directory (mode 0755), owned by `account` if given.
fn make_dir(dir: &Path, account: Option<&Account>) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} mode 0755", dir.display()))?;
    if let Some(account) = account {
        std::os::unix::fs::chown(dir, Some(account.uid), Some(account.gid))
            .with_context(|| format!("cannot give {} to user {}", dir.display(), account.name))?;
    }
    Ok(())
}

/// Creates the state directory (0755), refusing one whose cluster is still
/// up or too long for the daemons' sockets; returns it absolute.
fn prepare_state_dir(dir: &Path, daemon_hosts: &[&str]) -> Result<PathBuf> {
    make_dir(dir, None)?;
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    if let Some(old) = State::load(&dir)? {
        let live_namespaces: Vec<&String> = old.namespaces.iter().filter(|name| net::namespace_exists(name)).collect();
        let live_processes = old.processes.iter().any(|record| {
            process::is_running(record.pid)
                && process::stat(record.pid).is_some_and(|stat| stat.start_time == record.start_time)
        });
        ensure!(
            live_namespaces.is_empty() && !live_processes,
            "a cluster is still up in {} (namespaces {live_namespaces:?}): tear it down first with `cargo xtask \
             cluster down --state {}` (cluster::down_from_state), or use another state directory",
            dir.display(),
            dir.display()
        );
    }
    for host in daemon_hosts {
        // A daemon's socket path must fit sun_path (108 bytes with its NUL).
        let socket = dir.join(host).join("daemon.sock");
        ensure!(
            socket.as_os_str().len() < 108,
            "the daemon socket {} would be longer than a Unix socket path may be (107 bytes): use a shorter state \
             directory",
            socket.display()
        );
    }
    Ok(dir)
}

/// A namespace prefix (`rc<pid>x<n>`) that no existing namespace uses.
fn unique_prefix() -> Result<String> {
    let existing = net::list_namespaces()?;
    for _ in 0..1000 {
        let prefix = format!("rc{}x{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed));
        if !existing.iter().any(|name| name.starts_with(&format!("{prefix}-"))) {
            return Ok(prefix);
        }
    }
    bail!("no free namespace prefix: `ip netns list` shows a thousand of this process's; delete stale ones")
}

/// The end of a command's output, indented for an error message.
fn indent_tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|line| format!("    | {line}")).collect::<Vec<_>>().join("\n")
}
