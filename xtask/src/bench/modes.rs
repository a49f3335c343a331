//! The modes: how each one runs a workload once (launching it under a tracer,
//! attaching a tracer to it, or running it beside a traced tree), and the
//! reprotrace daemon the daemon modes share.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    measure::{self, Finished, StderrWatch},
    stats::Sample,
    workloads::{Kind, Workload, ATTACH_ITERATIONS},
};

/// How long a tracer or the daemon may take to say it is ready (loading the
/// eBPF programs takes a fraction of a second; strace -p is instant).
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How long what a run leaves behind may take to end (reprotrace's detach
/// helper needs a few seconds: an RCU grace period per tracepoint).
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Native,
    Ebpf,
    EbpfDaemon,
    /// `Ebpf` with programs that return at once: the attach points' cost.
    EbpfFloor,
    /// `EbpfDaemon` with programs that return at once.
    EbpfDaemonFloor,
    RtStrace,
    Strace,
    StraceSeccomp,
    Reprozip,
    EbpfAttach,
    EbpfDaemonAttach,
    /// `EbpfAttach` with programs that return at once.
    EbpfAttachFloor,
    /// `EbpfDaemonAttach` with programs that return at once.
    EbpfDaemonAttachFloor,
    RtStraceAttach,
    StraceP,
}

impl Mode {
    pub const ALL: [Mode; 15] = [
        Mode::Native,
        Mode::Ebpf,
        Mode::EbpfDaemon,
        Mode::EbpfFloor,
        Mode::EbpfDaemonFloor,
        Mode::RtStrace,
        Mode::Strace,
        Mode::StraceSeccomp,
        Mode::Reprozip,
        Mode::EbpfAttach,
        Mode::EbpfDaemonAttach,
        Mode::EbpfAttachFloor,
        Mode::EbpfDaemonAttachFloor,
        Mode::RtStraceAttach,
        Mode::StraceP,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Ebpf => "ebpf",
            Mode::EbpfDaemon => "ebpf-daemon",
            Mode::EbpfFloor => "ebpf-floor",
            Mode::EbpfDaemonFloor => "ebpf-daemon-floor",
            Mode::RtStrace => "rt-strace",
            Mode::Strace => "strace",
            Mode::StraceSeccomp => "strace-seccomp",
            Mode::Reprozip => "reprozip",
            Mode::EbpfAttach => "ebpf-attach",
            Mode::EbpfDaemonAttach => "ebpf-daemon-attach",
            Mode::EbpfAttachFloor => "ebpf-attach-floor",
            Mode::EbpfDaemonAttachFloor => "ebpf-daemon-attach-floor",
            Mode::RtStraceAttach => "rt-strace-attach",
            Mode::StraceP => "strace-p",
        }
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name)
    }

    /// Whether the mode runs for this kind of workload. The interference
    /// workload reuses the launch modes' names for what runs beside it.
    pub fn applies_to(self, kind: Kind) -> bool {
        use Mode::*;
        match kind {
            Kind::Launch => matches!(
                self,
                Native | Ebpf | EbpfDaemon | EbpfFloor | EbpfDaemonFloor | RtStrace | Strace | StraceSeccomp | Reprozip
            ),
            Kind::Attach => matches!(
                self,
                Native
                    | EbpfAttach
                    | EbpfDaemonAttach
                    | EbpfAttachFloor
                    | EbpfDaemonAttachFloor
                    | RtStraceAttach
                    | StraceP
            ),
            Kind::Interference => matches!(self, Native | Ebpf | EbpfDaemon | EbpfFloor | EbpfDaemonFloor),
            Kind::Sustained => matches!(self, Native | Ebpf | EbpfDaemon),
        }
    }

    pub fn uses_daemon(self) -> bool {
        matches!(self, Mode::EbpfDaemon | Mode::EbpfDaemonFloor | Mode::EbpfDaemonAttach | Mode::EbpfDaemonAttachFloor)
    }

    /// The floor modes: reprotrace's programs attached, returning at once.
    pub fn is_floor(self) -> bool {
        matches!(self, Mode::EbpfFloor | Mode::EbpfDaemonFloor | Mode::EbpfAttachFloor | Mode::EbpfDaemonAttachFloor)
    }

    /// Whether a run writes a reprotrace manifest to read the statistics from.
    fn writes_manifest(self) -> bool {
        !matches!(self, Mode::Native | Mode::Strace | Mode::StraceSeccomp | Mode::Reprozip | Mode::StraceP)
    }

    /// What the mode runs, for the report (CMD: the workload; M: a manifest;
    /// S: the daemon's socket; P: the workload's pid).
    pub fn template(self, kind: Kind) -> String {
        if kind == Kind::Interference {
            return match self {
                Mode::Native => "CMD alone".into(),
                Mode::EbpfDaemon => "CMD while `reprotrace run -q --socket S -o M -- sleep 600` runs".into(),
                Mode::EbpfDaemonFloor => "as `ebpf-daemon`, the daemon's programs returning at once".into(),
                Mode::EbpfFloor => "as `ebpf`, the programs returning at once".into(),
                _ => "CMD while `reprotrace run -q --no-daemon -o M -- sleep 600` runs".into(),
            };
        }
        match self {
            Mode::Native => "CMD",
            Mode::Ebpf => "reprotrace run -q --no-daemon -o M -- CMD",
            Mode::EbpfDaemon => "reprotrace run -q --socket S -o M -- CMD, beside `reprotrace daemon --socket S`",
            Mode::EbpfFloor => {
                "as `ebpf` with `--bench-floor`: every program returns at once (the attach points' cost)"
            }
            Mode::EbpfDaemonFloor => "as `ebpf-daemon`, the daemon started with `--bench-floor`",
            Mode::RtStrace => "reprotrace run -q --backend strace -o M -- CMD",
            Mode::Strace => "strace -f -q -o LOG -e trace=SYSCALLS -- CMD",
            Mode::StraceSeccomp => "strace -f -q --seccomp-bpf -o LOG -e trace=SYSCALLS -- CMD",
            Mode::Reprozip => "reprozip trace --dont-identify-packages --overwrite -d DIR CMD",
            Mode::EbpfAttach => "reprotrace attach --no-daemon --pid P -o M",
            Mode::EbpfDaemonAttach => {
                "reprotrace attach --socket S --pid P -o M, beside `reprotrace daemon --socket S`"
            }
            Mode::EbpfAttachFloor => {
                "as `ebpf-attach` with `--bench-floor`: every program returns at once (stopped with SIGINT)"
            }
            Mode::EbpfDaemonAttachFloor => {
                "as `ebpf-daemon-attach`, the daemon started with `--bench-floor` (stopped with SIGINT)"
            }
            Mode::RtStraceAttach => "reprotrace attach --backend strace --pid P -o M",
            Mode::StraceP => "strace -f -q -o LOG -e trace=SYSCALLS -p P (stopped with SIGINT)",
        }
        .into()
    }
}

/// The syscalls `--backend strace` traces (tracer-common's table): the plain
/// strace modes trace exactly those.
const STRACE_SYSCALLS: &str = tracer_common::syscalls::NAMES;

/// What the modes run with.
pub struct Tools {
    pub reprotrace: PathBuf,
    pub reprozip: std::result::Result<PathBuf, String>,
    pub scratch: PathBuf,
    /// Where the daemon modes' daemon listens.
    pub socket: PathBuf,
}

/// A child that is stopped (SIGTERM, then SIGKILL) and reaped if it is dropped
/// before being waited for, so an error path leaves no tracer, daemon or
/// worker behind.
pub struct Guard(Option<Child>);

impl Guard {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    fn pid(&self) -> libc::pid_t {
        self.0.as_ref().map_or(0, measure::pid_of)
    }

    fn child_mut(&mut self) -> Result<&mut Child> {
        self.0.as_mut().context("the process was already waited for")
    }

    /// Disarms the guard: the caller waits for the child.
    fn into_child(mut self) -> Result<Child> {
        self.0.take().context("the process was already waited for")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            measure::send_signal(measure::pid_of(&child), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a tracer or daemon with its stderr watched (and drained) and no other
/// standard stream; it is killed if the guard is dropped before it exits.
fn spawn_watched(command: &mut Command) -> Result<(Guard, StderrWatch)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stderr = StderrWatch::new(&mut child)?;
    Ok((Guard::new(child), stderr))
}

/// `reprotrace daemon`, started around each run of a daemon mode and stopped
/// (SIGTERM) when dropped.
pub struct Daemon {
    process: Guard,
    socket: PathBuf,
    // Keeps draining the daemon's stderr so it never blocks on the pipe.
    _stderr: StderrWatch,
}

impl Daemon {
    pub fn start(reprotrace: &Path, socket: &Path, floor: bool) -> Result<Daemon> {
        // A socket left by a killed bench would look ready at once.
        let _ = std::fs::remove_file(socket);
        let mut command = Command::new(reprotrace);
        command.args(["daemon", "--socket"]).arg(socket);
        if floor {
            command.arg("--bench-floor");
        }
        let (process, stderr) = spawn_watched(&mut command)?;
        stderr
            // Not the socket's appearing: the daemon listens before it loads
            // the programs, and a client would wait for the load.
            .wait_for(Some("daemon ready"), READY_LIMIT, || false)
            .context("`reprotrace daemon` did not start")?;
        Ok(Daemon { process, socket: socket.to_path_buf(), _stderr: stderr })
    }

    /// Its process id (it holds the programs it loaded).
    pub fn pid(&self) -> libc::pid_t {
        self.process.pid()
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn cpu_seconds(&self) -> Result<f64> {
        measure::proc_cpu_seconds(self.process.pid()).context("the daemon's CPU time (did it die?)")
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        measure::proc_status_number(self.process.pid(), "VmHWM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Stop it first (the guard's own drop would come after this body).
        drop(std::mem::replace(&mut self.process, Guard(None)));
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Runs `workload` once under `mode` and measures it, then waits (untimed)
/// for what the run left behind. The caller fills in the round and position.
///
/// A daemon mode starts its daemon before the run and stops it after, both
/// untimed: a daemon left loaded would put its programs in the way of every
/// other mode's syscalls (native's included) and flatter every ratio.
pub fn run_once(tools: &Tools, workload: &Workload, mode: Mode) -> Result<Sample> {
    let files = RunFiles::new(&tools.scratch, workload.name, mode);
    let result = match workload.kind {
        Kind::Launch | Kind::Attach | Kind::Sustained => {
            let daemon = match mode.uses_daemon() {
                true => Some(Daemon::start(&tools.reprotrace, &tools.socket, mode.is_floor())?),
                false => None,
            };
            let served = daemon.as_ref();
            let result = match workload.kind {
                Kind::Attach => charged(served, || run_attach(tools, workload, mode, served, &files)),
                _ => charged(served, || run_launch(tools, workload, mode, served, &files)),
            };
            if let Some(daemon) = daemon {
                drop(daemon);
                // Its teardown (the detach helper) is not the run's cost: a
                // resident daemon does not pay it per audit.
                measure::settle(SETTLE_LIMIT)?;
            }
            result
        }
        Kind::Interference => run_interference(tools, workload, mode, &files),
    };
    // Settle even after a failure: leftovers (a daemon's detach helper among
    // them) would disturb the next run.
    let settled = measure::settle(SETTLE_LIMIT);
    let mut sample = result?;
    let settled = settled?;
    if settled.cpu_s > 0.0 || settled.wall > Duration::from_millis(20) {
        sample.cpu_s += settled.cpu_s;
        sample.settle_s = Some(settled.wall.as_secs_f64());
    }
    Ok(sample)
}

/// Runs `run`, adding the daemon's CPU time meanwhile to the sample's.
fn charged(daemon: Option<&Daemon>, run: impl FnOnce() -> Result<Sample>) -> Result<Sample> {
    let before = daemon.map(Daemon::cpu_seconds).transpose()?;
    let mut sample = run()?;
    if let (Some(daemon), Some(before)) = (daemon, before) {
        let spent = (daemon.cpu_seconds()? - before).max(0.0);
        sample.daemon_cpu_s = Some(spent);
        sample.cpu_s += spent;
        sample.daemon_peak_rss_kib = daemon.peak_rss_kib();
    }
    Ok(sample)
}

/// A run's files in the scratch directory, named after workload and mode
/// (overwritten by the next run of the same pair).
struct RunFiles {
    manifest: PathBuf,
    log: PathBuf,
    strace_log: PathBuf,
    reprozip_dir: PathBuf,
    attach_dir: PathBuf,
}

impl RunFiles {
    fn new(scratch: &Path, workload: &str, mode: Mode) -> Self {
        let base = format!("{workload}-{}", mode.name());
        Self {
            manifest: scratch.join(format!("{base}.json")),
            log: scratch.join(format!("{base}.log")),
            strace_log: scratch.join(format!("{base}.strace")),
            reprozip_dir: scratch.join(format!("{base}.reprozip")),
            attach_dir: scratch.join(format!("{base}.work")),
        }
    }
}

fn log_file(path: &Path) -> Result<(Stdio, Stdio)> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok((file.try_clone()?.into(), file.into()))
}

/// The command line that runs `command` under a launch mode.
fn launch_argv(
    tools: &Tools,
    mode: Mode,
    command: &[OsString],
    files: &RunFiles,
    daemon: Option<&Daemon>,
) -> Result<Vec<OsString>> {
    let reprotrace = || -> Vec<OsString> { vec![tools.reprotrace.clone().into(), "run".into(), "-q".into()] };
    let strace = |seccomp: bool| -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["strace".into(), "-f".into(), "-q".into()];
        if seccomp {
            argv.push("--seccomp-bpf".into());
        }
        argv.extend([
            "-o".into(),
            files.strace_log.clone().into(),
            "-e".into(),
            format!("trace={}", STRACE_SYSCALLS).into(),
        ]);
        argv.push("--".into());
        argv
    };
    let mut argv: Vec<OsString> = match mode {
        Mode::Native => Vec::new(),
        Mode::Ebpf => [reprotrace(), vec!["--no-daemon".into()]].concat(),
        Mode::EbpfFloor => [reprotrace(), vec!["--no-daemon".into(), "--bench-floor".into()]].concat(),
        Mode::EbpfDaemon | Mode::EbpfDaemonFloor => {
            let daemon = daemon.context("no daemon is running")?;
            [reprotrace(), vec!["--socket".into(), daemon.socket.clone().into()]].concat()
        }
        Mode::RtStrace => [reprotrace(), vec!["--backend".into(), "strace".into()]].concat(),
        Mode::Strace => strace(false),
        Mode::StraceSeccomp => strace(true),
        Mode::Reprozip => {
            let reprozip = tools.reprozip.as_ref().map_err(|reason| anyhow::anyhow!("no reprozip: {reason}"))?;
            vec![
                reprozip.clone().into(),
                "trace".into(),
                "--dont-identify-packages".into(),
                "--overwrite".into(),
                "-d".into(),
                files.reprozip_dir.clone().into(),
            ]
        }
        other => bail!("{} is not a launch mode", other.name()),
    };
    if mode.writes_manifest() {
        argv.extend(["-o".into(), files.manifest.clone().into(), "--".into()]);
    }
    argv.extend(command.iter().cloned());
    Ok(argv)
}

fn command_of(argv: &[OsString], cwd: &Path) -> Result<Command> {
    let (program, args) = argv.split_first().context("empty command line")?;
    let mut command = Command::new(program);
    command.args(args).current_dir(cwd).stdin(Stdio::null());
    Ok(command)
}

/// Runs the workload's reset step (untimed), then `argv`, timed; fails unless
/// it exits with 0. Output goes to `log`, quoted in the error.
fn timed_run(workload: &Workload, argv: &[OsString], log: &Path) -> Result<Finished> {
    if let Some(reset) = &workload.reset {
        let (stdout, stderr) = log_file(log)?;
        let status = command_of(reset, &workload.cwd)?.stdout(stdout).stderr(stderr).status()?;
        if !status.success() {
            bail!("the untimed reset step failed ({status}){}", measure::log_tail(log));
        }
    }
    let (stdout, stderr) = log_file(log)?;
    let mut command = command_of(argv, &workload.cwd)?;
    command.stdout(stdout).stderr(stderr);
    let start = Instant::now();
    let child = command.spawn().with_context(|| format!("cannot start {:?}", argv[0]))?;
    measure::wait_success(child, start, "the run", Some(log))
}

fn with_manifest(mut sample: Sample, mode: Mode, manifest: &Path) -> Result<Sample> {
    if mode.writes_manifest() {
        let stats = measure::read_manifest_stats(manifest)?;
        sample.events = Some(stats.events);
        sample.lost_events = Some(stats.lost_events);
        sample.duration_ms = Some(stats.duration_ms);
        sample.peak_rss_kib = stats.peak_rss_kib;
    }
    Ok(sample)
}

fn run_launch(
    tools: &Tools,
    workload: &Workload,
    mode: Mode,
    daemon: Option<&Daemon>,
    files: &RunFiles,
) -> Result<Sample> {
    // A manifest left by an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(&files.manifest);
    let argv = launch_argv(tools, mode, &workload.command, files, daemon)?;
    let finished = timed_run(workload, &argv, &files.log);
    // The storm's strace log is tens of megabytes; nothing reads it.
    let _ = std::fs::remove_file(&files.strace_log);
    let finished = finished?;
    let sample = Sample { wall_s: finished.wall.as_secs_f64(), cpu_s: finished.cpu_s, ..Sample::default() };
    with_manifest(sample, mode, &files.manifest)
}

/// The attach workload: start the worker, let it get ready, attach the mode's
/// tracer, tell the worker to go, and take the loop time it prints.
fn run_attach(
    tools: &Tools,
    workload: &Workload,
    mode: Mode,
    daemon: Option<&Daemon>,
    files: &RunFiles,
) -> Result<Sample> {
    let work = &files.attach_dir;
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("cannot remove {}", work.display()))?;
    }
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let worker_log = work.join("worker.log");
    let (_, stderr) = log_file(&worker_log)?;
    let mut argv = workload.command.clone();
    argv.extend([work.clone().into(), ATTACH_ITERATIONS.to_string().into()]);
    let worker_start = Instant::now();
    let child = command_of(&argv, &workload.cwd)?
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("cannot start the attach workload (/usr/bin/python3)")?;
    let mut worker = Guard::new(child);
    let pid = worker.pid();
    while !work.join("ready").exists() {
        if !measure::is_running(pid) || worker_start.elapsed() > READY_LIMIT {
            bail!("the attach workload did not get ready{}", measure::log_tail(&worker_log));
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    let manifest = work.join("manifest.json");
    let reprotrace_attach = |extra: &[&str]| -> Command {
        let mut command = Command::new(&tools.reprotrace);
        command.arg("attach").args(extra).args(["--pid", &pid.to_string(), "-o"]).arg(&manifest);
        command
    };
    let socket;
    let tracer_command = match mode {
        Mode::Native => None,
        Mode::EbpfAttach => Some(reprotrace_attach(&["--no-daemon"])),
        Mode::EbpfAttachFloor => Some(reprotrace_attach(&["--no-daemon", "--bench-floor"])),
        Mode::EbpfDaemonAttach | Mode::EbpfDaemonAttachFloor => {
            socket = daemon.context("no daemon is running")?.socket.to_string_lossy().into_owned();
            Some(reprotrace_attach(&["--socket", &socket]))
        }
        Mode::RtStraceAttach => Some(reprotrace_attach(&["--backend", "strace"])),
        Mode::StraceP => {
            let mut command = Command::new("strace");
            command.args(["-f", "-q", "-o"]).arg(work.join("strace.log"));
            command.args(["-e", &format!("trace={}", STRACE_SYSCALLS), "-p", &pid.to_string()]);
            Some(command)
        }
        other => bail!("{} is not an attach mode", other.name()),
    };
    let tracer = match tracer_command {
        None => None,
        Some(mut command) => {
            let tracer_start = Instant::now();
            let (tracer, stderr) = spawn_watched(&mut command)?;
            let tracer_pid = tracer.pid();
            if mode == Mode::StraceP {
                // strace -q says nothing when it has attached; the kernel does.
                let attached = || measure::proc_status_number(pid, "TracerPid") == Some(tracer_pid as u64);
                stderr.wait_for(None, READY_LIMIT, attached).context("strace -p did not attach")?;
            } else {
                stderr
                    .wait_for(Some("attached to"), READY_LIMIT, || false)
                    .context("reprotrace attach did not attach")?;
            }
            Some((tracer, stderr, tracer_start))
        }
    };

    std::fs::write(work.join("go"), "").context("cannot tell the attach workload to go")?;
    let output = measure::read_stdout(worker.child_mut()?)?;
    let worker = measure::wait_success(worker.into_child()?, worker_start, "the attach workload", Some(&worker_log))?;
    let loop_s: f64 = output
        .trim()
        .parse()
        .with_context(|| format!("the attach workload printed {output:?}, not its loop time in seconds"))?;
    let mut cpu_s = worker.cpu_s;
    if let Some((tracer, stderr, tracer_start)) = tracer {
        // strace -p usually ends with its last tracee, SIGINT makes sure; a
        // floor's programs, returning at once, never see the workload exit.
        if mode == Mode::StraceP || mode.is_floor() {
            measure::send_signal(tracer.pid(), libc::SIGINT);
        }
        let finished = measure::wait(tracer.into_child()?, tracer_start, READY_LIMIT)?;
        let interrupted = finished.status.code() == Some(130) || finished.status.signal() == Some(libc::SIGINT);
        if !(finished.status.success() || (mode == Mode::StraceP && interrupted)) {
            bail!("the tracer failed ({}){}", finished.status, stderr.quoted());
        }
        cpu_s += finished.cpu_s;
    }
    let sample = Sample { wall_s: loop_s, cpu_s, ..Sample::default() };
    with_manifest(sample, mode, &manifest)
}

/// The storm, untraced, alone or while reprotrace traces a `sleep` elsewhere:
/// what a resident tracer costs the processes it does not trace.
fn run_interference(tools: &Tools, workload: &Workload, mode: Mode, files: &RunFiles) -> Result<Sample> {
    let _ = std::fs::remove_file(&files.manifest);
    let daemon = match mode.uses_daemon() {
        true => Some(Daemon::start(&tools.reprotrace, &tools.socket, mode.is_floor())?),
        false => None,
    };
    let background = match mode {
        Mode::Native => None,
        Mode::Ebpf | Mode::EbpfDaemon | Mode::EbpfFloor | Mode::EbpfDaemonFloor => {
            let mut command = Command::new(&tools.reprotrace);
            command.args(["run", "-q"]);
            match &daemon {
                Some(daemon) => command.arg("--socket").arg(&daemon.socket),
                None => command.arg("--no-daemon"),
            };
            if mode == Mode::EbpfFloor {
                command.arg("--bench-floor");
            }
            command.arg("-o").arg(&files.manifest).args(["--", "sleep", "600"]);
            let start = Instant::now();
            let (process, stderr) = spawn_watched(command.current_dir(&tools.scratch))?;
            let pid = process.pid();
            // reprotrace lets its child exec only once the tracing is in place,
            // so a `sleep` in its tree means the audit is running.
            stderr
                .wait_for(None, READY_LIMIT, || measure::has_descendant_named(pid, "sleep"))
                .context("the background `reprotrace run -- sleep 600` did not start tracing")?;
            Some((process, stderr, start))
        }
        other => bail!("{} is not an interference mode", other.name()),
    };
    let mut sample = charged(daemon.as_ref(), || {
        let storm = timed_run(workload, &workload.command, &files.log)?;
        Ok(Sample { wall_s: storm.wall.as_secs_f64(), cpu_s: storm.cpu_s, ..Sample::default() })
    })?;
    if let Some((process, stderr, start)) = background {
        // reprotrace passes SIGTERM on to the sleep and exits with 128 + 15.
        measure::send_signal(process.pid(), libc::SIGTERM);
        let finished = measure::wait(process.into_child()?, start, READY_LIMIT)?;
        if !(finished.status.success() || finished.status.code() == Some(128 + libc::SIGTERM)) {
            bail!("the background reprotrace failed ({}){}", finished.status, stderr.quoted());
        }
        sample = with_manifest(sample, mode, &files.manifest)?;
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_has_a_unique_name_and_applies_somewhere() {
        for mode in Mode::ALL {
            assert_eq!(Mode::from_name(mode.name()), Some(mode));
            assert!([Kind::Launch, Kind::Attach, Kind::Interference].into_iter().any(|kind| mode.applies_to(kind)));
        }
    }
}
