//! The workloads, and their preparation under `target/bench/` (idempotent:
//! whatever is already there and complete is reused, so only the first run on a
//! fresh machine downloads and builds).

use std::{
    ffi::OsString,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

use anyhow::{bail, Context, Result};

use super::report::grouped;

/// Every workload, in the order they run and are reported (`cluster` is run
/// by `cluster.rs`, last).
pub const NAMES: [&str; 12] = [
    "import",
    "storm",
    "churn",
    "build",
    "forkexec",
    "notebook",
    "attach",
    "interference",
    "interference-import",
    "sustained",
    "paths",
    "cluster",
];

/// The storm: THREADS × OPENS_PER_THREAD open+fstat+close over FILES files.
const STORM_FILES: usize = 2_000;
const STORM_THREADS: usize = 4;
const STORM_OPENS_PER_THREAD: usize = 25_000;
/// The interference workload's storm is longer: it runs untraced only, so it is
/// cheap, and a 2% target needs a run long enough for 2% to stand out of the noise.
const INTERFERENCE_OPENS_PER_THREAD: usize = 100_000;
/// The churn: 2 threads × CHURN_ITERATIONS open+read+close+stat.
const CHURN_THREADS: usize = 2;
const CHURN_ITERATIONS: usize = 50_000;

/// The sustained stream: SUSTAINED_THREADS × SUSTAINED_OPENS_PER_THREAD
/// open+fstat+close by relative path, two events each (the open and its
/// close): ten million events, the audit whose memory must stay flat. Eight
/// threads a core: the ring's reader, at their priority, would get a
/// seventeenth of the cores, and must take what it needs.
const SUSTAINED_THREADS: usize = 16;
const SUSTAINED_OPENS_PER_THREAD: usize = 312_500;

/// The paths: PATHS_THREADS × PATHS_PER_THREAD stats of distinct files, each
/// once, from the storm in `distinct` mode: what an audit keeps a path (a
/// data set of many small files), where `sustained` shows it keeps nothing
/// an event. The files, empty, are named as the storm's, in a directory
/// some 75 bytes deep, as a data set's would be.
const PATHS_THREADS: usize = 16;
const PATHS_PER_THREAD: usize = 25_000;
const PATHS_FILES: usize = PATHS_THREADS * PATHS_PER_THREAD;
const PATHS_DIR: &str = "paths-files/a-data-set-of-many-samples/raw";

/// Python starts in the import workload: one start is too short for a
/// fraction of a percent to stand out.
const IMPORT_REPEATS: usize = 6;

/// zlib's sources as the `libz-sys` crate ships them (this version still has
/// zlib's own `configure` and `Makefile.in`; later ones trimmed them), pinned
/// by hash so every machine builds the same code.
const LIBZ_SYS_VERSION: &str = "1.1.8";
const LIBZ_SYS_SHA256: &str = "9702761c3935f8cc2f101793272e202c72b99da8f4224a19ddcf1279a6450bbf";

const FORKEXEC_PROCESSES: usize = 2_000;

/// Rows of the CSV the notebook reads.
const NOTEBOOK_ROWS: usize = 50_000;

/// Iterations of the attach workload's loop (open, read, close, stat).
pub const ATTACH_ITERATIONS: usize = 20_000;

/// How a workload is run and measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The command is launched under each mode; its wall and CPU time are measured.
    Launch,
    /// A running process is joined by each mode's tracer; its own loop time is measured.
    Attach,
    /// The command runs untraced, alone or while reprotrace traces another tree.
    Interference,
    /// Launched as `Launch`, under reprotrace's eBPF modes only: a stream of
    /// events long enough to show what an audit loses and keeps in memory
    /// (strace would take minutes a run, and the floor sends nothing).
    Sustained,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub name: &'static str,
    pub kind: Kind,
    /// One line for the report: what runs, with the versions that matter.
    pub description: String,
    /// The command (for `Attach`: the worker, to which the run adds its work
    /// directory and the iteration count).
    pub command: Vec<OsString>,
    pub cwd: PathBuf,
    /// Run untimed before every run (e.g. `make clean`), so each run does the same work.
    pub reset: Option<Vec<OsString>>,
    /// The slowdowns modes should stay within on this workload (mode name, target).
    pub targets: Vec<(&'static str, Target)>,
}

/// The slowdown a mode should stay within (judged on the paired ratio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    Ratio(f64),
    /// At most `margin` above what mode `floor` measured in the same run: what
    /// the attach points cost, which no program can go below.
    AboveFloor {
        floor: &'static str,
        margin: f64,
    },
}

/// The same target for each of `modes`.
fn each(modes: &[&'static str], target: Target) -> Vec<(&'static str, Target)> {
    modes.iter().map(|mode| (*mode, target)).collect()
}

/// What preparation found or built.
pub struct Prepared {
    pub workloads: Vec<Workload>,
    /// The `reprozip` program, or why there is none.
    pub reprozip: std::result::Result<PathBuf, String>,
}

/// Where the workloads' files and the bench's scratch files live.
pub struct Places {
    /// The workspace root (sources under `xtask/workloads/`).
    pub root: PathBuf,
    /// `target/bench`.
    pub bench: PathBuf,
    /// Scratch space for runs (manifests, logs).
    pub scratch: PathBuf,
}

impl Places {
    /// The places of the workspace at `root`: `target/bench`, its scratch.
    pub fn of(root: PathBuf) -> Self {
        let bench = root.join("target/bench");
        Places { root, scratch: bench.join("scratch"), bench }
    }

    fn venv(&self) -> PathBuf {
        self.bench.join("venv")
    }

    fn source(&self, name: &str) -> PathBuf {
        self.root.join("xtask/workloads").join(name)
    }
}

/// Prepares the named workloads (and reprozip, if `want_reprozip`).
pub fn prepare(places: &Places, names: &[&str], want_reprozip: bool) -> Result<Prepared> {
    std::fs::create_dir_all(&places.scratch).with_context(|| format!("cannot create {}", places.scratch.display()))?;
    let wants = |name: &str| names.contains(&name);
    let versions = if ["import", "notebook", "interference-import"].into_iter().any(wants) || want_reprozip {
        Some(prepare_venv(places)?)
    } else {
        None
    };
    let reprozip = if want_reprozip { prepare_reprozip(places) } else { Err("not asked for (--modes)".to_string()) };
    let storm = if ["storm", "churn", "interference", "sustained", "paths"].into_iter().any(wants) {
        Some(prepare_storm(places)?)
    } else {
        None
    };
    let paths = match (&storm, wants("paths")) {
        (Some(storm), true) => Some(prepare_paths(places, &storm[0])?),
        _ => None,
    };
    let import_loop = |python: PathBuf| -> Vec<OsString> {
        let python = python.to_string_lossy().replace('\'', "'\\''");
        let script = format!(
            "i=0; while [ $i -lt {IMPORT_REPEATS} ]; do '{python}' -c 'import numpy, pandas' || exit 1; i=$((i+1)); done"
        );
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    };
    let import_description = format!(
        "{IMPORT_REPEATS} × `python -c \"import numpy, pandas\"` ({} in a venv), one after another",
        versions.as_deref().unwrap_or("numpy, pandas")
    );
    let mut workloads = Vec::new();
    for name in names {
        let workload = match *name {
            "import" => Workload {
                name: "import",
                kind: Kind::Launch,
                description: import_description.clone(),
                command: import_loop(places.venv().join("bin/python")),
                cwd: places.scratch.clone(),
                reset: None,
                targets: vec![("ebpf", Target::Ratio(1.05)), ("ebpf-daemon", Target::Ratio(1.02))],
            },
            "storm" => Workload {
                name: "storm",
                kind: Kind::Launch,
                description: format!("`xtask/workloads/storm.c`: {}", storm_description(STORM_OPENS_PER_THREAD)),
                command: storm_command(storm.as_deref(), STORM_OPENS_PER_THREAD)?,
                cwd: places.scratch.clone(),
                reset: None,
                targets: vec![("ebpf-daemon", Target::Ratio(1.30))],
            },
            "churn" => Workload {
                name: "churn",
                kind: Kind::Launch,
                description: format!(
                    "`xtask/workloads/storm.c` in churn mode: {CHURN_THREADS} threads × {} open+read+close+stat of \
                     {} small files",
                    grouped(CHURN_ITERATIONS as u64),
                    grouped(STORM_FILES as u64)
                ),
                command: storm_mode_command(storm.as_deref(), CHURN_THREADS, CHURN_ITERATIONS, "churn")?,
                cwd: places.scratch.clone(),
                reset: None,
                targets: vec![("ebpf-daemon", Target::Ratio(1.30))],
            },
            "sustained" => Workload {
                name: "sustained",
                kind: Kind::Sustained,
                description: format!(
                    "`xtask/workloads/storm.c` in relative mode: {SUSTAINED_THREADS} threads × {} open+fstat+close of {} \
                     small files by relative path (facts about relative paths are never deduplicated: each open \
                     and its close are events), {} events",
                    grouped(SUSTAINED_OPENS_PER_THREAD as u64),
                    grouped(STORM_FILES as u64),
                    grouped((2 * SUSTAINED_THREADS * SUSTAINED_OPENS_PER_THREAD) as u64)
                ),
                command: storm_mode_command(
                    storm.as_deref(),
                    SUSTAINED_THREADS,
                    SUSTAINED_OPENS_PER_THREAD,
                    "relative",
                )?,
                cwd: places.scratch.clone(),
                reset: None,
                targets: vec![],
            },
            "paths" => Workload {
                name: "paths",
                kind: Kind::Sustained,
                description: format!(
                    "`xtask/workloads/storm.c` in distinct mode: {PATHS_THREADS} threads × {} stats by absolute path \
                     of empty files of their own, each once: {} distinct paths (`target/bench/{PATHS_DIR}/fNNNNN`), \
                     what an audit keeps a path",
                    grouped(PATHS_PER_THREAD as u64),
                    grouped(PATHS_FILES as u64)
                ),
                command: storm_mode_command(paths.as_deref(), PATHS_THREADS, PATHS_PER_THREAD, "distinct")?,
                cwd: places.scratch.clone(),
                reset: None,
                targets: vec![],
            },
            "interference" => Workload {
                name: "interference",
                kind: Kind::Interference,
                description: format!(
                    "The storm, untraced ({}): alone, or while reprotrace traces `sleep 600` elsewhere",
                    storm_description(INTERFERENCE_OPENS_PER_THREAD)
                ),
                command: storm_command(storm.as_deref(), INTERFERENCE_OPENS_PER_THREAD)?,
                cwd: places.scratch.clone(),
                reset: None,
                targets: vec![
                    ("ebpf", Target::AboveFloor { floor: "ebpf-floor", margin: 0.05 }),
                    ("ebpf-daemon", Target::AboveFloor { floor: "ebpf-daemon-floor", margin: 0.05 }),
                ],
            },
            "interference-import" => Workload {
                name: "interference-import",
                kind: Kind::Interference,
                description: format!(
                    "The import workload, untraced ({import_description}): alone, or while reprotrace traces \
                     `sleep 600` elsewhere"
                ),
                command: import_loop(places.venv().join("bin/python")),
                cwd: places.scratch.clone(),
                reset: None,
                targets: each(&["ebpf", "ebpf-daemon"], Target::Ratio(1.02)),
            },
            "build" => {
                let dir = prepare_zlib(places)?;
                Workload {
                    name: "build",
                    kind: Kind::Launch,
                    description: format!(
                        "`make -j2` of zlib 1.2.11 (from the libz-sys {LIBZ_SYS_VERSION} crate), after an untimed \
                         `make clean`"
                    ),
                    command: vec!["make".into(), "-j2".into()],
                    cwd: dir,
                    reset: Some(vec!["make".into(), "clean".into()]),
                    targets: each(&["ebpf", "ebpf-daemon"], Target::Ratio(1.03)),
                }
            }
            "forkexec" => Workload {
                name: "forkexec",
                kind: Kind::Launch,
                description: format!(
                    "`/bin/sh` running `/bin/true` {} times, one after another",
                    grouped(FORKEXEC_PROCESSES as u64)
                ),
                command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("i=0; while [ $i -lt {FORKEXEC_PROCESSES} ]; do /bin/true; i=$((i+1)); done").into(),
                ],
                cwd: places.scratch.clone(),
                reset: None,
                targets: each(&["ebpf", "ebpf-daemon"], Target::Ratio(1.10)),
            },
            "notebook" => {
                let dir = prepare_notebook(places)?;
                let jupyter = places.venv().join("bin/jupyter");
                Workload {
                    name: "notebook",
                    kind: Kind::Launch,
                    description: format!(
                        "`jupyter nbconvert --to notebook --execute` of `xtask/workloads/analysis.ipynb` (5 cells, \
                         pandas on a {}-row CSV)",
                        grouped(NOTEBOOK_ROWS as u64)
                    ),
                    command: vec![
                        jupyter.into(),
                        "nbconvert".into(),
                        "--to".into(),
                        "notebook".into(),
                        "--execute".into(),
                        "--output".into(),
                        "analysis.out.ipynb".into(),
                        "analysis.ipynb".into(),
                    ],
                    cwd: dir,
                    reset: None,
                    targets: Vec::new(),
                }
            }
            "attach" => Workload {
                name: "attach",
                kind: Kind::Attach,
                description: format!(
                    "A running Python process (`xtask/workloads/attach_loop.py`), joined by the tracer while it waits, \
                     then {} × open+read+close+stat of a small CSV; the measure is its own loop time",
                    grouped(ATTACH_ITERATIONS as u64)
                ),
                command: vec!["/usr/bin/python3".into(), places.source("attach_loop.py").into()],
                cwd: places.scratch.clone(),
                reset: None,
                targets: each(&["ebpf-attach", "ebpf-daemon-attach"], Target::Ratio(1.05)),
            },
            // Its clusters are its own (`cluster.rs`).
            "cluster" => continue,
            other => bail!("unknown workload {other:?}"),
        };
        workloads.push(workload);
    }
    Ok(Prepared { workloads, reprozip })
}

/// Compiles `xtask/workloads/NAME.c` into `target/bench/NAME` (again when
/// the source is newer); returns the binary.
pub(super) fn compile(places: &Places, name: &str) -> Result<PathBuf> {
    let source = places.source(&format!("{name}.c"));
    let binary = places.bench.join(name);
    // Made here: `bench programs` compiles before any workload is prepared.
    std::fs::create_dir_all(&places.bench).with_context(|| format!("cannot create {}", places.bench.display()))?;
    if modified(&binary) < modified(&source) {
        println!("bench: compiling {}", source.display());
        step(
            Command::new("gcc").args(["-O2", "-Wall", "-pthread", "-o"]).arg(&binary).arg(&source),
            &format!("the {name} workload is compiled with gcc: apt-get install gcc"),
        )?;
    }
    Ok(binary)
}

/// Runs a preparation step quietly; on failure says what failed, its last
/// lines of output, and `fix` (what the user can do about it).
fn step(command: &mut Command, fix: &str) -> Result<()> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("cannot start {command:?}: {fix}"))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
        bail!("{command:?} failed ({}):\n  {tail}\n{fix}", output.status);
    }
    Ok(())
}

/// The bench venv (Debian's Python, like the tests), with numpy, pandas and
/// Jupyter's notebook runner. Returns "numpy X, pandas Y".
fn prepare_venv(places: &Places) -> Result<String> {
    let venv = places.venv();
    let python = venv.join("bin/python");
    if !python.exists() {
        println!("bench: creating the venv {}", venv.display());
        step(
            Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv),
            "the bench needs Debian's python3 with venv: run `cargo xtask setup` (or apt-get install python3-venv)",
        )?;
    }
    let ready = Command::new(&python)
        .args(["-c", "import numpy, pandas, ipykernel, nbconvert"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ready {
        println!("bench: installing numpy, pandas, ipykernel and nbconvert into the venv (a minute or two, once)");
        step(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "numpy",
                "pandas",
                "ipykernel",
                "nbconvert",
            ]),
            "pip could not install the import and notebook workloads' packages: is PyPI reachable? \
             (delete target/bench/venv to start over)",
        )?;
    }
    let output = Command::new(&python)
        .args(["-c", "import numpy, pandas; print(f'numpy {numpy.__version__}, pandas {pandas.__version__}')"])
        .output()
        .context("running the venv's python")?;
    if !output.status.success() {
        bail!(
            "the bench venv cannot import numpy and pandas ({}); delete {} and run again",
            String::from_utf8_lossy(&output.stderr).trim(),
            venv.display()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// reprozip, from the venv (installed there with pip if missing), else from PATH.
/// Its absence is not an error: the mode is skipped, and says why.
fn prepare_reprozip(places: &Places) -> std::result::Result<PathBuf, String> {
    let in_venv = places.venv().join("bin/reprozip");
    if !in_venv.exists() {
        println!("bench: installing reprozip into the venv (once)");
        let installed = step(
            Command::new(places.venv().join("bin/python")).args(["-m", "pip", "install", "--quiet", "reprozip"]),
            "reprozip needs a C compiler and Python's headers (python3-dev) to build",
        );
        if let Err(error) = installed {
            return match which("reprozip") {
                Some(path) => Ok(path),
                None => Err(format!("`pip install reprozip` failed: {error:#}")),
            };
        }
    }
    let works = Command::new(&in_venv)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        Ok(in_venv)
    } else {
        Err(format!("{} --version fails", in_venv.display()))
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

fn storm_description(opens_per_thread: usize) -> String {
    format!(
        "{STORM_THREADS} threads × {} open+fstat+close of {} small files",
        grouped(opens_per_thread as u64),
        grouped(STORM_FILES as u64)
    )
}

/// The storm's command line in one of its modes (`churn`, `relative`,
/// `distinct`): the prepared program, directory and file count, then
/// `threads` × `iterations`.
fn storm_mode_command(
    prepared: Option<&[OsString]>,
    threads: usize,
    iterations: usize,
    mode: &str,
) -> Result<Vec<OsString>> {
    let mut command = prepared.context("the storm was not prepared")?[..3].to_vec();
    command.extend([threads.to_string().into(), iterations.to_string().into(), mode.into()]);
    Ok(command)
}

/// The storm's command line: the prepared part, then the opens per thread.
fn storm_command(prepared: Option<&[OsString]>, opens_per_thread: usize) -> Result<Vec<OsString>> {
    let mut command = prepared.context("the storm was not prepared")?.to_vec();
    command.push(opens_per_thread.to_string().into());
    Ok(command)
}

/// Compiles the storm (again when its source is newer) and lays out its files.
/// Returns its command line but for the last argument (opens per thread).
fn prepare_storm(places: &Places) -> Result<Vec<OsString>> {
    let binary = compile(places, "storm")?;
    let files = places.bench.join("storm-files");
    std::fs::create_dir_all(&files).with_context(|| format!("cannot create {}", files.display()))?;
    let line = "storm-file,0123456789abcdef0123456789abcdef0123456789abcdef0123\n";
    for index in 0..STORM_FILES {
        let path = files.join(format!("f{index:05}"));
        if !path.exists() {
            std::fs::write(&path, line).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(vec![binary.into(), files.into(), STORM_FILES.to_string().into(), STORM_THREADS.to_string().into()])
}

/// Lays out the `paths` workload's empty files, once (a marker says all are
/// there). Returns the storm's command line over them, as [`prepare_storm`]
/// does over its own, but for the threads, iterations and mode.
fn prepare_paths(places: &Places, storm: &OsString) -> Result<Vec<OsString>> {
    let dir = places.bench.join(PATHS_DIR);
    let prepared = places.bench.join(format!("paths-files/.bench-prepared-{PATHS_FILES}"));
    if !prepared.exists() {
        println!("bench: making {} empty files in {}", grouped(PATHS_FILES as u64), dir.display());
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for index in 0..PATHS_FILES {
            let path = dir.join(format!("f{index:05}"));
            std::fs::File::create(&path).with_context(|| format!("cannot make {}", path.display()))?;
        }
        std::fs::write(&prepared, "")?;
    }
    Ok(vec![storm.clone(), dir.into(), PATHS_FILES.to_string().into()])
}

/// zlib's sources from the libz-sys crate, configured once: `target/bench/zlib`.
fn prepare_zlib(places: &Places) -> Result<PathBuf> {
    let dir = places.bench.join("zlib");
    let configured = dir.join(".bench-configured");
    if configured.exists() {
        return Ok(dir);
    }
    let archive = places.bench.join(format!("libz-sys-{LIBZ_SYS_VERSION}.crate"));
    if sha256(&archive).as_deref() != Some(LIBZ_SYS_SHA256) {
        let url = format!("https://static.crates.io/crates/libz-sys/libz-sys-{LIBZ_SYS_VERSION}.crate");
        println!("bench: downloading {url}");
        let partial = archive.with_extension("partial");
        step(
            Command::new("curl")
                .args(["--silent", "--show-error", "--fail", "--location", "--output"])
                .arg(&partial)
                .arg(&url),
            "the build workload's sources come from crates.io: is it reachable? (curl must be installed)",
        )?;
        let found = sha256(&partial);
        if found.as_deref() != Some(LIBZ_SYS_SHA256) {
            bail!("{url} has SHA-256 {found:?}, not {LIBZ_SYS_SHA256}: the download is corrupt or was changed");
        }
        std::fs::rename(&partial, &archive)?;
    }
    let unpacked = places.bench.join("zlib-unpack");
    // Leftovers of an interrupted preparation are discarded, not trusted.
    for stale in [&unpacked, &dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&unpacked)?;
    step(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked), "tar must be installed")?;
    let source = unpacked.join(format!("libz-sys-{LIBZ_SYS_VERSION}/src/zlib"));
    std::fs::rename(&source, &dir)
        .with_context(|| format!("the crate has no src/zlib ({} missing)", source.display()))?;
    std::fs::remove_dir_all(&unpacked)?;
    println!("bench: configuring zlib in {}", dir.display());
    step(
        Command::new("./configure").current_dir(&dir),
        "zlib's configure needs a C compiler: apt-get install gcc make",
    )?;
    std::fs::write(&configured, "")?;
    Ok(dir)
}

fn sha256(path: &Path) -> Option<String> {
    let output = Command::new("sha256sum").arg(path).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.success().then(|| text.split_whitespace().next().map(str::to_string)).flatten()
}

/// The notebook beside the CSV it reads: `target/bench/notebook`.
fn prepare_notebook(places: &Places) -> Result<PathBuf> {
    let dir = places.bench.join("notebook");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Copied every time, so an edited notebook is what runs.
    std::fs::copy(places.source("analysis.ipynb"), dir.join("analysis.ipynb"))
        .context("copying xtask/workloads/analysis.ipynb")?;
    let data = dir.join("data.csv");
    if !data.exists() {
        write_notebook_data(&data).with_context(|| format!("cannot write {}", data.display()))?;
    }
    Ok(dir)
}

/// A deterministic CSV (`id,group,x,y`) from a xorshift generator, so every
/// machine's notebook does the same work.
fn write_notebook_data(path: &Path) -> Result<()> {
    let partial = path.with_extension("partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    writeln!(out, "id,group,x,y")?;
    for id in 0..NOTEBOOK_ROWS {
        let group = (b'A' + (next() * 8.0) as u8) as char;
        writeln!(out, "{id},{group},{:.6},{:.6}", next() * 100.0, next() * 50.0 - 25.0)?;
    }
    out.into_inner().map_err(|error| error.into_error())?.sync_all()?;
    std::fs::rename(&partial, path)?;
    Ok(())
}
