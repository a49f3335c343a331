//! Manifest v1: the JSON document an audit produces (docs/manifest.md
//! describes it). Its JSON Schema is generated from these types
//! ([`schema`], `reprotrace schema`, docs/manifest.schema.json), and every
//! manifest read is checked against it, so the types, the schema and what
//! reprotrace accepts cannot disagree. Every list is sorted, so two audits of
//! the same run differ only in pids, times and statistics.

mod file;
mod render;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use file::ManifestError;
pub use render::{
    bytes_of_display, display_bytes, signal_label, trace_sections, CellSections, TaskContext, TaskSections,
    TraceSections,
};

/// A path the tracker made absolute.
const ABSOLUTE_PATH: &str = "^/";
/// RFC 3339, UTC.
const TIMESTAMP: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$";
/// Hex SHA-256.
const SHA256: &str = "^[0-9a-f]{64}$";

pub const SCHEMA_ID: &str = "reprotrace/manifest/v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "reprotrace manifest v1",
    description = "What an audited run executed and which files it used. See docs/manifest.md.",
    extend("$id" = SCHEMA_ID)
)]
pub struct Manifest {
    #[schemars(extend("const" = SCHEMA_ID))]
    pub schema: String,
    /// "ebpf" or "strace".
    #[schemars(extend("enum" = ["ebpf", "strace"]))]
    pub backend: String,
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// The directory the command started in.
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub cwd: String,
    pub host: String,
    /// The operating system the run ran on (`/etc/os-release`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsRelease>,
    /// The machine and kernel the run ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The environment the command started with (`run`), or the first
    /// attached process's; secret values redacted (see `redaction`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// How command lines and the environment were redacted; absent from
    /// manifests written before redaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<Redaction>,
    /// RFC 3339, UTC.
    #[schemars(pattern(TIMESTAMP))]
    pub started_at: String,
    #[schemars(pattern(TIMESTAMP))]
    pub finished_at: String,
    /// The command's exit code; `None` when a signal killed it.
    #[schemars(range(min = 0, max = 255))]
    pub exit_code: Option<i32>,
    /// The signal that killed the command, if one did.
    pub signal: Option<String>,
    pub stats: Stats,
    pub processes: Vec<Process>,
    pub files: Vec<FileEntry>,
    pub software: Software,
    pub data: Data,
    /// Notebook cells, in the order they ran (empty outside notebooks).
    pub cells: Vec<Cell>,
    /// This audit followed a Dask worker (`reprotrace attach --dask-worker`):
    /// which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dask_worker: Option<DaskWorker>,
    /// Dask tasks run by the processes followed, in the order they began: in
    /// a worker's audit, its own; in a run merged with its workers' audits,
    /// those the run's clients submitted, whichever worker ran them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
    /// The Dask workers' hosts, each with what its workers used (a run
    /// audited with `--dask`, or `reprotrace merge`), sorted by host name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    /// This run repeated another from a bundle (`reprotrace repeat`): which.
    /// Its paths are the original run's (the bundle's root taken off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_of: Option<RepeatOf>,
    /// Paths the run's opens and stats looked for and did not find, sorted:
    /// recorded by `repeat` only, which names those the bundle lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_lookups: Vec<String>,
}

#[cfg(test)]
impl Manifest {
    /// A manifest of command `x` that used nothing, to build on in tests.
    pub(crate) fn empty_for_tests() -> Manifest {
        let text = r#"{"schema":"reprotrace/manifest/v1","backend":"ebpf","command":["x"],"cwd":"/","host":"h",
            "started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:01Z","exit_code":0,"signal":null,
            "stats":{"events":0,"lost_events":0,"untracked_children":0,"malformed_events":0,"unresolved_paths":0,
            "complete":true,"duration_ms":0},"processes":[],"files":[],
            "software":{"python":[],"interpreters":[],"system_packages":[],"executables":[],"shared_libraries":[]},
            "data":{"inputs":[],"outputs":[]},"cells":[]}"#;
        serde_json::from_str(text).expect("the template is a manifest")
    }
}

/// The run a repeat repeated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatOf {
    pub command: Vec<String>,
    pub host: String,
    #[schemars(pattern(TIMESTAMP))]
    pub started_at: String,
    /// The bundle it came from.
    pub bundle: String,
    /// Where its root was unpacked.
    pub root: String,
}

/// Secrets replaced by `<redacted>` in command lines and the environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    /// False with `--no-redact`: everything is verbatim.
    pub enabled: bool,
    /// The user's `--redact` regular expressions, besides the built-in rules.
    pub patterns: Vec<String>,
    /// Each value redacted: where (`command[2]`,
    /// `processes[pid 7].argv[1]`, `environment.GITHUB_TOKEN`…) and by which
    /// rule.
    pub redacted: Vec<Redacted>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redacted {
    pub place: String,
    pub rule: String,
}

/// The machine and kernel a run ran on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The kernel's release (`uname -r`).
    pub kernel: String,
    /// The machine architecture (`uname -m`: `x86_64`, `aarch64`).
    pub arch: String,
    /// The CPU's model name (`/proc/cpuinfo`), if it says.
    pub cpu_model: Option<String>,
    /// Its CPUs (`/proc/cpuinfo`), whether or not the run could use them all.
    pub cpus: usize,
    /// Memory, in KiB (`MemTotal`).
    pub memory_kib: Option<u64>,
}

impl Platform {
    pub fn of_this_host() -> Platform {
        use procfs::Current;
        let uname = rustix::system::uname();
        let cpuinfo = procfs::CpuInfo::current().ok();
        Platform {
            kernel: uname.release().to_string_lossy().into_owned(),
            arch: uname.machine().to_string_lossy().into_owned(),
            cpu_model: cpuinfo.as_ref().and_then(|cpuinfo| cpuinfo.model_name(0)).map(str::to_string),
            cpus: cpuinfo.as_ref().map_or(0, procfs::CpuInfo::num_cores),
            memory_kib: procfs::Meminfo::current().ok().map(|meminfo| meminfo.mem_total / 1024),
        }
    }
}

/// An operating system release, as `/etc/os-release` names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OsRelease {
    /// `ID` (`debian`).
    pub id: String,
    /// `VERSION_ID` (`12`), if there is one (rolling releases have none).
    pub version_id: Option<String>,
    /// `PRETTY_NAME` (`Debian GNU/Linux 12 (bookworm)`).
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Reads `/etc/os-release` (or `/usr/lib/os-release`); `None` if neither says.
    pub fn of_this_host() -> Option<OsRelease> {
        let text = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .ok()?;
        OsRelease::parse(&text)
    }

    fn parse(text: &str) -> Option<OsRelease> {
        let field = |name: &str| {
            text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix('=')).map(|value| {
                let value = value.trim();
                value.strip_prefix('"').and_then(|value| value.strip_suffix('"')).unwrap_or(value).to_string()
            })
        };
        Some(OsRelease { id: field("ID")?, version_id: field("VERSION_ID"), pretty_name: field("PRETTY_NAME") })
    }
}

/// A Dask worker, as it calls itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaskWorker {
    /// Its address (`tcp://10.0.0.2:40123`).
    #[schemars(length(min = 1))]
    pub address: String,
    /// Its name (`--name`), if it was given one.
    pub name: Option<String>,
}

/// One run of a Dask task: what it ran and used. Work done by the pool thread
/// that ran it, between the task's markers, by the threads that thread
/// started meanwhile, and by the processes they started, belongs to the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// The task's key, as Python prints it (`('inc-5c3a…', 3)`).
    #[schemars(length(min = 1))]
    pub key: String,
    /// The host name of the worker that ran it.
    pub host: String,
    /// The address of the worker that ran it, as that worker had it then
    /// (a worker its nanny restarted has a new one); from the worker's
    /// audit, for a task marker that did not say.
    pub worker: Option<String>,
    /// The worker process, and the thread of its pool that ran the task.
    #[schemars(range(min = 1))]
    pub pid: u32,
    #[schemars(range(min = 1))]
    pub thread: u32,
    #[schemars(pattern(TIMESTAMP))]
    pub started_at: String,
    /// `None` when the audit ended before the task did.
    #[schemars(pattern(TIMESTAMP))]
    pub finished_at: Option<String>,
    /// The execution count of the notebook cell that submitted it, when the
    /// run was a notebook (merged manifests only): the cell the submitting
    /// process was running when the run's own trace saw the submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<u64>,
    /// `cell` was found by comparing the scheduler's clock with the cells'
    /// times, for want of the run's own record of the submission: near a
    /// cell boundary it may be wrong by the clocks' difference.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cell_by_clock: bool,
    /// The processes the task started (its worker process not included).
    pub processes: Vec<TaskProcess>,
    pub software: CellSoftware,
    pub data: Data,
}

impl Task {
    /// The position in `cells` of the cell that submitted it: the latest
    /// with its `cell` execution count that began before it (a notebook may
    /// run a count twice), else the first with that count.
    pub fn submitting_cell(&self, cells: &[Cell]) -> Option<usize> {
        let count = self.cell?;
        let mut matching = cells.iter().enumerate().filter(|(_, cell)| cell.execution_count == count);
        let first = matching.clone().next().map(|(index, _)| index);
        matching.rfind(|(_, cell)| cell.started_at <= self.started_at).map(|(index, _)| index).or(first)
    }
}

/// A process a task started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskProcess {
    #[schemars(range(min = 1))]
    pub pid: u32,
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub exe: Option<String>,
    pub argv: Vec<String>,
}

/// A host of the Dask cluster: its workers and what they used there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Its host name.
    #[schemars(length(min = 1))]
    pub host: String,
    /// Its workers, sorted by address.
    pub workers: Vec<HostWorker>,
    /// Its workers' audits, merged: the same shapes as the run's own sections.
    pub stats: Stats,
    pub processes: Vec<Process>,
    pub files: Vec<FileEntry>,
    pub software: Software,
    pub data: Data,
}

/// A worker of a host, and whether its audit came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostWorker {
    #[schemars(length(min = 1))]
    pub address: String,
    pub name: Option<String>,
    /// The processes its audit followed from the start: the nanny (or the
    /// worker, without one).
    pub pids: Vec<u32>,
    /// Why this worker was not audited (no daemon on its host, refused…):
    /// its work is missing, and the run is incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unaudited: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Events the pipeline consumed.
    pub events: u64,
    /// Events the kernel had to drop (ring buffer full, or no memory for a
    /// call's state): the manifest may miss facts.
    pub lost_events: u64,
    /// Processes the kernel could not follow (its table of traced tasks was
    /// full, or no memory for the entry).
    pub untracked_children: u64,
    /// Events that could not be decoded or parsed.
    pub malformed_events: u64,
    /// Paths relative to a descriptor reprotrace did not know (inherited from
    /// outside the traced tree), left out of `files`.
    pub unresolved_paths: u64,
    /// Processes whose argv was longer than the backend takes whole
    /// (`processes[].argv_truncated`).
    #[serde(default)]
    pub truncated_argvs: u64,
    /// Processes that ran a 32-bit (ia32) program: its syscalls are not seen
    /// by the eBPF backend's tracepoints.
    #[serde(default)]
    pub ia32_processes: u64,
    /// io_uring instances the run set up whose requests the backend cannot
    /// see (strace): their file operations are missing.
    #[serde(default)]
    pub unseen_io_uring_rings: u64,
    /// Processes not followed past a setuid or setgid program they ran (and
    /// their children): an audit by a user through `daemon --allow-users`
    /// does not see what a more privileged program does, as ptrace does not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unfollowed_privileged: u64,
    /// The audit stopped before the traced tree ended: a second Ctrl-C
    /// (SIGINT, SIGTERM or SIGHUP), or its event stream was lost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Work the audit knows it is missing and no counter above counts, one
    /// line each: a Dask client that took part but never reported its
    /// workers' audits, Dask tasks the run submitted and a worker ran that
    /// have no record. Absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_work: Vec<String>,
    /// False when anything above says facts may be missing, or the audit was interrupted.
    pub complete: bool,
    /// From the audit's start until its process tree ended (or it stopped
    /// following it), excluding the writing of this manifest.
    pub duration_ms: u64,
    /// reprotrace's own peak resident memory (the eBPF ring buffer's mapping
    /// included, when this process loaded the programs). Absent from
    /// manifests written before it was recorded.
    #[serde(default)]
    pub peak_rss_kib: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Process {
    #[schemars(range(min = 1))]
    pub pid: u32,
    pub ppid: Option<u32>,
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub exe: Option<String>,
    pub argv: Vec<String>,
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub cwd: String,
    #[schemars(range(min = 0, max = 255))]
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub failed_execs: Vec<FailedExec>,
    /// It was running before the audit attached to it (`reprotrace attach`).
    pub pre_existing: bool,
    /// For a script (`#!`): the interpreters the kernel ran it with, the
    /// script's own first, then theirs when they are scripts too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(ABSOLUTE_PATH)))]
    pub interpreters: Vec<String>,
    /// `argv` is the beginning of a longer argv the backend could not take whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    /// `exe` and `cwd` are in a mount namespace reprotrace cannot see into:
    /// the pid of the process that made or joined it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<u32>,
    /// reprotrace's notebook cell hook was installed in this process (an
    /// IPython kernel), so its work is cut per cell.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cell_hook: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedExec {
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub path: String,
    /// The errno name, e.g. "ENOENT".
    pub error: String,
}

/// How a path's contents were used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Exec,
    /// Used by name only: a directory made, entered or removed, an `O_PATH`
    /// open, a name removed that the run had not written.
    Metadata,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub path: String,
    pub access: Access,
    /// The run removed it or renamed it away.
    pub deleted: bool,
    /// The path is in a mount namespace reprotrace cannot see into: the pid
    /// of the process that made or joined it. The file is not on the host at
    /// that path, and is never hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<u32>,
    /// The processes that used it.
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub pids: Vec<u32>,
}

/// One notebook cell: what it ran and used. Work done by the kernel during the
/// cell, and by the children it started in it, belongs to the cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Position in the run, from 0.
    pub index: usize,
    pub execution_count: u64,
    /// The frontend's cell id, if it sent one.
    pub cell_id: Option<String>,
    /// SHA-256 of the cell's source.
    #[schemars(pattern(SHA256))]
    pub code_sha256: String,
    #[schemars(pattern(TIMESTAMP))]
    pub started_at: String,
    /// `None` when the run ended before the cell did.
    #[schemars(pattern(TIMESTAMP))]
    pub finished_at: Option<String>,
    pub data: Data,
    pub software: CellSoftware,
    /// The kernel and the processes that worked for the cell.
    #[schemars(inner(range(min = 1)))]
    pub pids: Vec<u32>,
    /// The exception the cell raised; `null` when it ran through (or the hook
    /// could not say: an older hook, or the run ended first).
    #[serde(default)]
    pub error: Option<CellError>,
    /// The names the cell's source binds, deletes and reads at the top level
    /// (a static reading by the hook), when the hook reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<CellNames>,
}

/// The exception a cell raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CellError {
    /// Its type's name (`ValueError`).
    pub ename: String,
    /// Its message (cut to 500 characters).
    pub evalue: String,
}

/// The names a cell binds, deletes and reads at the notebook's top level, as
/// a static reading of its source finds them (docs/manifest.md has the limits).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CellNames {
    /// Assigned, imported, or defined by `def` and `class`.
    pub defines: Vec<String>,
    /// Removed by `del`.
    pub deletes: Vec<String>,
    /// Read before the cell binds them: from earlier cells (or builtins the
    /// cell shadows).
    pub uses: Vec<String>,
    /// The lists were cut to fit the marker.
    pub truncated: bool,
}

/// The software a cell used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CellSoftware {
    pub python: Vec<PythonDistribution>,
}

/// The software the run used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Software {
    /// Python distributions any of whose files the run opened, sorted by name.
    pub python: Vec<PythonDistribution>,
    /// Python interpreters the run executed or whose standard library it read.
    pub interpreters: Vec<Interpreter>,
    /// System packages owning any file the run executed or opened, sorted by name.
    pub system_packages: Vec<SystemPackage>,
    /// Every file the run executed, with its owning package.
    pub executables: Vec<OwnedFile>,
    /// Every shared library the run opened, with its owning package.
    pub shared_libraries: Vec<OwnedFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PythonDistribution {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub version: String,
    /// Who installed it (`INSTALLER`: pip, uv, conda, debian…), if recorded.
    pub installer: Option<String>,
    /// The site directory holding its metadata.
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub location: String,
    pub editable: bool,
    /// How many of its files the run opened.
    #[schemars(range(min = 1))]
    pub files_used: u64,
    /// For an editable project only: the files of it the run used (its
    /// source, and the hooks in the site directory that make it
    /// importable), sorted; `export docker` copies them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Interpreter {
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub path: String,
    pub version: String,
    /// `sys.prefix`.
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemPackage {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub version: String,
    pub architecture: String,
    /// The package manager: "dpkg".
    #[schemars(extend("enum" = ["dpkg"]))]
    pub manager: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnedFile {
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub path: String,
    /// The system package or Python distribution owning it, if any.
    pub package: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Data {
    pub inputs: Vec<DataEntry>,
    pub outputs: Vec<DataEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataEntry {
    #[schemars(pattern(ABSOLUTE_PATH))]
    pub path: String,
    /// Bytes after the run; `None` for an input the run removed.
    pub size: Option<u64>,
    /// Last modification, RFC 3339 UTC; `None` for an input the run removed.
    #[schemars(pattern(TIMESTAMP))]
    pub mtime: Option<String>,
    /// Hex SHA-256 of the contents after the run; `None` if unreadable,
    /// removed, or over the hash limit.
    #[schemars(pattern(SHA256))]
    pub sha256: Option<String>,
    /// Larger than the audit's `--hash-limit`: not hashed, described by
    /// size and mtime only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_hash_limit: bool,
    /// Inputs only: modified after the run started, so the run may have read
    /// other contents than the ones hashed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_during_run: bool,
    /// The path is in a mount namespace reprotrace cannot see into (see
    /// `files[].namespace`): size, mtime and hash are unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<u32>,
}

/// The JSON Schema (2020-12) of a manifest, generated from the types.
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(Manifest).to_value()
}

/// Whether a counter is 0 (left out of a manifest then).
fn is_zero(count: &u64) -> bool {
    *count == 0
}
