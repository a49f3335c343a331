//! The `reprotrace` command line.

use std::{
    ffi::OsString,
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;

use clap::{Parser, Subcommand};
use reprotrace::{
    attach,
    audit::{Backend, Settings},
    bundle,
    classify::{self, Rules},
    daemon::{self, DaemonSettings},
    diff, docker,
    export::{self, Format},
    launch::LaunchError,
    manifest::{self, DaskWorker, Manifest},
    merge,
    redact::Redactor,
    repeat, report, run, show,
    source::ebpf::{protocol::DEFAULT_SOCKET, session::DaemonChoice, LoadOptions, DEFAULT_RING_BUFFER_BYTES},
    stale, units,
};

/// Exit code for reprotrace's own failures (the command's codes pass through).
const REPROTRACE_FAILED: u8 = 125;

#[derive(Parser)]
#[command(name = "reprotrace", version, about = "Trace a program's process tree and write what it used as a manifest")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command under the tracer and write its manifest.
    Run(RunArgs),
    /// Follow running processes (or a Jupyter kernel) until Ctrl-C, --duration,
    /// or their exit, and write their manifest; they keep running.
    Attach(AttachArgs),
    /// Keep the eBPF programs loaded and serve audits, so that `run` and
    /// `attach` start at once and leave nothing to detach (runs until Ctrl-C or SIGTERM).
    Daemon(DaemonArgs),
    /// Compare two manifests: packages added, removed or at other versions, data
    /// files added, removed or changed. Exits 0 when they agree, 1 when they differ.
    Diff {
        before: PathBuf,
        after: PathBuf,
        /// Compare what this Dask host used (`hosts[]`) in both, not the runs' own sections.
        #[arg(long)]
        host: Option<String>,
    },
    /// Pack what a run used into one file (zstd tar, each content once):
    /// programs, libraries, interpreters, the Python files it imported, its
    /// configuration, data and script — only what it used.
    Pack {
        manifest: PathBuf,
        /// Where to write the bundle.
        #[arg(short, long)]
        output: PathBuf,
        /// Only what notebook cell N needed: its data and the run's software
        /// (give --cell again for more cells). `repeat` cannot run such a
        /// bundle: the run's command executes every cell.
        #[arg(long = "cell", value_name = "N", conflicts_with_all = ["host", "data_only"])]
        cells: Vec<u64>,
        /// One host of a distributed run (`hosts[]`): its workers' files.
        /// `repeat` cannot run such a bundle: the run's command ran elsewhere.
        #[arg(long, conflicts_with = "data_only")]
        host: Option<String>,
        /// The data inputs and pinned package lists only, no software files
        /// (`repeat` cannot run such a bundle).
        #[arg(long)]
        data_only: bool,
        /// Pack data inputs whose contents changed since the audit.
        #[arg(long)]
        allow_changed: bool,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run a bundle's command again from the bundle alone (a private root with
    /// only its files), traced, and compare every output with the original's.
    /// Exits 0 when all are identical, 1 when one differs or is missing, 2
    /// when the repeat could not run or the bundle lacks a file the run used.
    Repeat(RepeatArgs),
    /// Merge Dask workers' audits (`reprotrace attach --dask-worker …`) into a
    /// run's manifest, as `run --dask` does: `hosts` and `tasks`.
    Merge {
        /// Where to write the merged manifest.
        #[arg(short, long)]
        output: PathBuf,
        /// The run's own manifest.
        run: PathBuf,
        /// The workers' manifests.
        #[arg(required = true)]
        workers: Vec<PathBuf>,
    },
    /// Which notebook cells of an audited run would now compute something
    /// else: a file they read changed, their source changed (with
    /// --notebook), or they depend on such a cell through a file or a name.
    /// Exits 0 when none is stale, 1 when some are, 2 on error.
    Stale {
        manifest: PathBuf,
        /// The notebook as it is now, to compare the cells' sources with.
        #[arg(long, value_name = "NB.ipynb")]
        notebook: Option<PathBuf>,
        /// Print `{"stale": [{"execution_count", "cell_id", "reasons"}], "notes": [...]}`.
        #[arg(long)]
        json: bool,
        /// Files larger than this are compared by size and modification
        /// time, not hashed, as the audit's `--hash-limit` (suffixes K, M, G,
        /// T; `none`: hash everything).
        #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_hash_limit)]
        hash_limit: HashLimit,
    },
    /// A manifest's essentials as tables: processes, inputs and outputs,
    /// software, cells, Dask hosts and tasks.
    Show { manifest: PathBuf },
    /// One self-contained HTML page (no network): the run, its process tree,
    /// data, software, cells as a timeline with which are stale now, a graph
    /// of cells and files, Dask hosts and tasks.
    Report {
        manifest: PathBuf,
        /// Where to write the page.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
        /// The notebook as it is now, for stale cells (as `stale --notebook`).
        #[arg(long, value_name = "NB.ipynb")]
        notebook: Option<PathBuf>,
        /// Files larger than this are not hashed to find stale cells (as
        /// `stale --hash-limit`).
        #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_hash_limit)]
        hash_limit: HashLimit,
    },
    /// Print the JSON Schema of the manifests this reprotrace writes and reads.
    Schema,
    /// Write the pinned package list that rebuilds a manifest's environment.
    Export {
        #[arg(value_enum)]
        format: Format,
        manifest: PathBuf,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Export what this Dask host used (`hosts[]`), not the run's own software.
        #[arg(long)]
        host: Option<String>,
    },
}

/// Options every audit takes.
#[derive(clap::Args)]
struct AuditArgs {
    /// How to trace: eBPF programs in the kernel, or strace.
    #[arg(long, value_enum, default_value = "ebpf")]
    backend: Backend,
    /// Where to write the manifest.
    #[arg(short, long, default_value = "reprotrace.json")]
    output: PathBuf,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Ring buffer size in bytes (eBPF backend; a power of two, suffixes K, M, G).
    /// A running daemon uses its own.
    #[arg(long, default_value_t = DEFAULT_RING_BUFFER_BYTES, value_parser = parse_size)]
    ring_buffer_size: u32,
    /// Use the `reprotrace daemon` listening here, and fail if there is none
    /// (default: the one at /run/reprotrace/daemon.sock if it runs).
    #[arg(long, value_name = "PATH", conflicts_with = "no_daemon")]
    socket: Option<PathBuf>,
    /// Load the eBPF programs in this process even if a daemon runs.
    #[arg(long)]
    no_daemon: bool,
    /// For the benchmarks only: programs that return at once, to measure
    /// what their attach points cost (the manifest records nothing).
    #[arg(long, hide = true)]
    bench_floor: bool,
    /// For tests and comparisons: read kernel memory with helper calls, as on
    /// a kernel before 6.17, even where this one lets the programs load it.
    #[arg(long, hide = true, requires = "no_daemon")]
    helper_reads: bool,
    /// Count files matching this glob as data even if a built-in rule says otherwise
    /// (repeatable; absolute paths, `*` stays within a directory, `**` crosses them).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Never count files matching this glob as data (repeatable; wins over --include).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Data files larger than this are recorded by size and mtime, without a
    /// hash (suffixes K, M, G, T; `none`: hash everything).
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_hash_limit)]
    hash_limit: HashLimit,
    /// Read and hash every data file again, even one reprotrace hashed
    /// before whose device, inode, size and modification and change times
    /// say it has not changed since (by default its hash is taken from the
    /// user's cache).
    #[arg(long)]
    rehash: bool,
    /// Also redact what matches this regular expression in command lines and
    /// environment values (repeatable; a variable whose name matches loses
    /// its whole value). Secret-looking options, variables, URL passwords and
    /// key formats are always redacted (docs/security.md).
    #[arg(long, value_name = "PATTERN")]
    redact: Vec<String>,
    /// Record command lines and the environment verbatim, secrets included.
    #[arg(long, conflicts_with = "redact")]
    no_redact: bool,
}

impl AuditArgs {
    fn settings(self) -> anyhow::Result<Settings> {
        if self.bench_floor && !self.quiet {
            eprintln!("reprotrace: --bench-floor: the programs return at once, the manifest records nothing");
        }
        Ok(Settings {
            backend: self.backend,
            output: self.output,
            quiet: self.quiet,
            load: LoadOptions {
                ring_buffer_bytes: self.ring_buffer_size,
                return_at_once: self.bench_floor,
                report_failed_lookups: false,
                helper_reads: self.helper_reads,
            },
            daemon: match (self.socket, self.no_daemon) {
                (_, true) => DaemonChoice::Never,
                (Some(path), false) => DaemonChoice::At(path),
                (None, false) => DaemonChoice::Auto,
            },
            rules: Rules::new(&self.include, &self.exclude)?,
            hash_limit: self.hash_limit.0,
            rehash: self.rehash,
            redactor: Redactor::new(&self.redact, !self.no_redact)?,
        })
    }
}

#[derive(clap::Args)]
struct DaemonArgs {
    /// Where to listen.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Ring buffer size in bytes, shared by every audit (a power of two, suffixes K, M, G).
    #[arg(long, default_value_t = DEFAULT_RING_BUFFER_BYTES, value_parser = parse_size)]
    ring_buffer_size: u32,
    /// Detach the programs after this many seconds without an audit (attached
    /// programs slow every syscall on the host a little), or `never`. The next
    /// audit attaches them again in a few milliseconds.
    #[arg(long, value_name = "SECONDS|never", default_value = "30", value_parser = parse_idle)]
    idle_detach: IdleDetach,
    /// Let every local user connect (socket mode 0666), each to audit only its
    /// own processes (checked with the peer's credentials): how Dask workers
    /// run by ordinary users audit themselves. Without it, root only.
    #[arg(long)]
    allow_users: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// For the benchmarks only: programs that return at once (the audits
    /// record nothing).
    #[arg(long, hide = true)]
    bench_floor: bool,
}

#[derive(Clone, Copy, Debug)]
struct IdleDetach(Option<Duration>);

fn parse_idle(text: &str) -> Result<IdleDetach, String> {
    match text {
        "never" => Ok(IdleDetach(None)),
        _ => parse_seconds(text).map(|after| IdleDetach(Some(after))),
    }
}

/// A number of seconds: finite, not negative (`1.5`, `30`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text} is not a duration: give a number of seconds, at least 0 and finite"))
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    audit: AuditArgs,
    /// Audit the Dask workers the command's clients use too: every
    /// `distributed.Client` of the traced tree registers reprotrace's plugins
    /// on its cluster and, when it closes, brings back its workers' audits
    /// (each host needs `reprotrace daemon --allow-users` and the `reprotrace`
    /// Python package), merged into this manifest as `hosts` and `tasks`. Sets
    /// `DASK_DISTRIBUTED__CLIENT__PRELOAD` and `…__PRELOAD_ARGV` for the command.
    #[arg(long)]
    dask: bool,
    /// The command and its arguments (after `--`).
    // The command's own options come after its name: an option of ours
    // misspelled before `--` is an error, never a command.
    #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(clap::Args)]
struct RepeatArgs {
    bundle: PathBuf,
    /// Where to write the repeat's manifest (default: OUTDIR/repeat.json).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Where the repeat's root and outputs go (made; default: a new
    /// reprotrace-repeat-TIME directory here).
    #[arg(long)]
    outdir: Option<PathBuf>,
    /// Let the command use the network (by default it has none).
    #[arg(long)]
    net: bool,
    /// Print nothing but errors and the verdict.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct AttachArgs {
    #[command(flatten)]
    audit: AuditArgs,
    /// A process to follow, with its threads and descendants (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// A Jupyter kernel to follow: its connection file, or its kernel id.
    #[arg(long, value_name = "CONNECTION_FILE|KERNEL_ID")]
    kernel: Option<String>,
    /// Install the cell hook in the kernel (a silent request, kept out of its
    /// history), so the manifest is cut per cell.
    #[arg(long, requires = "kernel")]
    inject_hooks: bool,
    /// Make the kernel's Dask clients take part, as `run --dask` does: those
    /// it has and those it makes register reprotrace's plugins, and report
    /// their workers' audits when the attach ends (merged as `hosts`, `tasks`).
    #[arg(long, requires = "kernel")]
    dask: bool,
    /// Detach after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// The processes are this Dask worker (its address): the manifest says so,
    /// and its tasks name it, for `reprotrace merge`.
    #[arg(long, value_name = "ADDRESS")]
    dask_worker: Option<String>,
    /// The Dask worker's name.
    #[arg(long, value_name = "NAME", requires = "dask_worker")]
    dask_worker_name: Option<String>,
    /// Follow processes of other users too (`--pid 1`, another user's
    /// kernel): without it, a tree with processes that are not the invoking
    /// user's is refused.
    #[arg(long)]
    all_users: bool,
}

fn parse_size(text: &str) -> Result<u32, String> {
    let bytes = units::parse_size(text)?;
    u32::try_from(bytes).map_err(|_| format!("{text} is too large (at most 2G)"))
}

/// `--hash-limit`: a size, or `none` (no limit).
#[derive(Clone, Copy)]
struct HashLimit(Option<u64>);

fn parse_hash_limit(text: &str) -> Result<HashLimit, String> {
    match text {
        "none" => Ok(HashLimit(None)),
        size => units::parse_size(size).map(|limit| HashLimit(Some(limit))),
    }
}

/// A manifest as read, or as seen from one of its Dask hosts.
fn read_manifest(path: &Path, host: Option<&str>) -> anyhow::Result<Manifest> {
    let manifest = Manifest::read(path)?;
    Ok(match host {
        Some(host) => merge::host_view(&manifest, host).with_context(|| format!("in {}", path.display()))?,
        None => manifest,
    })
}

fn diff_manifests(before: &Path, after: &Path, host: Option<&str>) -> anyhow::Result<i32> {
    let (before, after) = (read_manifest(before, host)?, read_manifest(after, host)?);
    let changes = diff::diff(&before, &after);
    for change in &changes {
        println!("{change}");
    }
    if changes.is_empty() && after.repeat_of.is_some() {
        println!("reproduced: the same outputs from the same inputs");
    }
    Ok(if changes.is_empty() { 0 } else { 1 })
}

/// Exit code of `stale` when it fails (0 and 1 say whether cells are stale).
const STALE_FAILED: u8 = 2;

/// What is stale in `manifest` now, against `notebook` if given (whose ids
/// the cells without one first get, matched by source), hashing files up to
/// `hash_limit`.
fn stale_now(
    manifest: &mut Manifest,
    notebook: Option<&Path>,
    hash_limit: HashLimit,
) -> anyhow::Result<stale::StaleReport> {
    let notebook = notebook.map(reprotrace::notebook::Notebook::read).transpose()?;
    if let Some(notebook) = &notebook {
        notebook.fill_cell_ids(&mut manifest.cells);
    }
    let current = |display: &str| stale::file_now(display, hash_limit.0);
    Ok(stale::stale_cells(manifest, notebook.as_ref(), hash_limit.0, &current))
}

fn report_page(path: &Path, output: &Path, notebook: Option<&Path>, hash_limit: HashLimit) -> anyhow::Result<i32> {
    let mut manifest = Manifest::read(path)?;
    let stale = stale_now(&mut manifest, notebook, hash_limit)?;
    std::fs::write(output, report::render(&manifest, &stale))
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!("reprotrace: report written to {}", output.display());
    Ok(0)
}

fn stale_cells(path: &Path, notebook: Option<&Path>, json: bool, hash_limit: HashLimit) -> anyhow::Result<i32> {
    let mut manifest = Manifest::read(path)?;
    let report = stale_now(&mut manifest, notebook, hash_limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for cell in &report.stale {
            let label = match &cell.cell_id {
                Some(id) => format!("[{}] ({id})", cell.execution_count),
                None => format!("[{}]", cell.execution_count),
            };
            println!("cell {label} is stale: {}", cell.reasons.join("; "));
        }
        for note in &report.notes {
            println!("note: {note}");
        }
        if report.stale.is_empty() {
            println!("no cell is stale ({} cells)", manifest.cells.len());
        }
    }
    Ok(if report.stale.is_empty() { 0 } else { 1 })
}

fn show_manifest(path: &Path) -> anyhow::Result<i32> {
    let manifest = Manifest::read(path)?;
    print!("{}", show::render(&manifest, std::io::stdout().is_terminal()));
    Ok(0)
}

fn print_schema() -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(&manifest::schema())?);
    Ok(0)
}

fn merge_manifests(output: &Path, run: &Path, workers: &[PathBuf]) -> anyhow::Result<i32> {
    let mut manifest = Manifest::read(run)?;
    for warning in merge::merge_workers(&mut manifest, merge::Reports::from_manifests(workers)?) {
        eprintln!("reprotrace: warning: {warning}");
    }
    manifest.write_atomically(output)?;
    eprintln!(
        "reprotrace: merged {} worker audits into {} ({} hosts, {} tasks)",
        workers.len(),
        output.display(),
        manifest.hosts.len(),
        manifest.tasks.len()
    );
    Ok(0)
}

fn pack_bundle(
    manifest: &Path,
    output: &Path,
    part: &bundle::Part,
    allow_changed: bool,
    quiet: bool,
) -> anyhow::Result<i32> {
    let manifest = Manifest::read(manifest)?;
    let report = bundle::pack(&manifest, part, allow_changed, output, !quiet && std::io::stderr().is_terminal())?;
    if !quiet {
        if !report.left_out.is_empty() {
            eprintln!(
                "reprotrace: left out {} paths the run made itself or that are gone: {}",
                report.left_out.len(),
                report.left_out.join(", ")
            );
        }
        eprintln!("reprotrace: packed {report} into {}", output.display());
        if let Some(reason) = &report.not_repeatable {
            eprintln!("reprotrace: note: `reprotrace repeat` cannot run this bundle on its own: {reason}");
        }
    }
    Ok(0)
}

fn repeat_bundle(runtime: &tokio::runtime::Runtime, args: RepeatArgs) -> anyhow::Result<i32> {
    let outdir = args.outdir.unwrap_or_else(repeat::default_outdir);
    let settings = Settings {
        backend: Backend::Ebpf,
        output: args.output.unwrap_or_else(|| outdir.join("repeat.json")),
        quiet: args.quiet,
        // Its own programs, which report the lookups that find nothing: a
        // file the program needed that the bundle lacks is named.
        load: LoadOptions { report_failed_lookups: true, ..LoadOptions::default() },
        daemon: DaemonChoice::Never,
        rules: Rules::default(),
        hash_limit: Some(classify::Hashing::DEFAULT_LIMIT),
        // What the repeat read and wrote is checked against the original:
        // every file is read.
        rehash: true,
        redactor: Redactor::default(),
    };
    runtime.block_on(repeat::repeat(settings, repeat::RepeatOptions { bundle: args.bundle, outdir, network: args.net }))
}

fn export_manifest(format: Format, manifest: &Path, output: Option<&Path>, host: Option<&str>) -> anyhow::Result<i32> {
    if format == Format::Docker {
        let dir = output.context("export docker writes a directory: give it with -o DIR")?;
        let context = docker::write_context(&read_manifest(manifest, host)?, dir)?;
        for unreadable in &context.unreadable {
            eprintln!("reprotrace: warning: could not copy {unreadable} into the context");
        }
        eprintln!(
            "reprotrace: wrote {}/Dockerfile: {} system packages, {} Python distributions, {} files; build it with `podman build {}`",
            dir.display(),
            context.system_packages,
            context.python_distributions,
            context.files,
            dir.display()
        );
        return Ok(0);
    }
    let text = export::export(&read_manifest(manifest, host)?, format);
    match output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(0)
}

/// `err` and its causes, each said once: a cause whose text the message
/// already holds (a library error that prints its source) is not repeated.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Commands that only read and write files for whoever asked: under sudo
/// they run as that user from the start.
fn as_invoking_user(command: &Command) -> bool {
    !matches!(command, Command::Run(_) | Command::Attach(_) | Command::Daemon(_) | Command::Repeat(_))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if as_invoking_user(&cli.command) {
        if let Err(err) = reprotrace::launch::become_invoking_user() {
            eprintln!("reprotrace: error: cannot become the user who ran sudo: {err}");
            return ExitCode::from(REPROTRACE_FAILED);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(reprotrace::priority::for_threads_started_later())
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("reprotrace: error: cannot start the runtime: {err}");
            return ExitCode::from(REPROTRACE_FAILED);
        }
    };
    let result = match cli.command {
        Command::Run(args) => {
            args.audit.settings().and_then(|settings| runtime.block_on(run::run(settings, args.command, args.dask)))
        }
        Command::Attach(args) => args.audit.settings().and_then(|settings| {
            let target = attach::Target {
                pids: args.pids,
                kernel: args.kernel,
                inject_hooks: args.inject_hooks,
                dask: args.dask,
                duration: args.duration,
                dask_worker: args.dask_worker.map(|address| DaskWorker { address, name: args.dask_worker_name }),
                all_users: args.all_users,
            };
            runtime.block_on(attach::attach(settings, target))
        }),
        Command::Daemon(args) => {
            if args.bench_floor && !args.quiet {
                eprintln!("reprotrace: --bench-floor: the programs return at once, audits record nothing");
            }
            runtime.block_on(daemon::serve(DaemonSettings {
                socket: args.socket,
                load: LoadOptions {
                    ring_buffer_bytes: args.ring_buffer_size,
                    return_at_once: args.bench_floor,
                    report_failed_lookups: false,
                    helper_reads: false,
                },
                idle_detach: args.idle_detach.0,
                allow_users: args.allow_users,
                quiet: args.quiet,
            }))
        }
        Command::Diff { before, after, host } => diff_manifests(&before, &after, host.as_deref()),
        Command::Merge { output, run, workers } => merge_manifests(&output, &run, &workers),
        Command::Stale { manifest, notebook, json, hash_limit } => {
            match stale_cells(&manifest, notebook.as_deref(), json, hash_limit) {
                Ok(code) => Ok(code),
                Err(err) => {
                    eprintln!("reprotrace: error: {}", error_text(&err));
                    return ExitCode::from(STALE_FAILED);
                }
            }
        }
        Command::Show { manifest } => show_manifest(&manifest),
        Command::Report { manifest, output, notebook, hash_limit } => {
            report_page(&manifest, &output, notebook.as_deref(), hash_limit)
        }
        Command::Schema => print_schema(),
        Command::Pack { manifest, output, cells, host, data_only, allow_changed, quiet } => {
            let part = match (host, data_only) {
                (Some(host), _) => bundle::Part::Host(host),
                (None, true) => bundle::Part::DataOnly,
                (None, false) if !cells.is_empty() => bundle::Part::Cells(cells),
                (None, false) => bundle::Part::Run,
            };
            pack_bundle(&manifest, &output, &part, allow_changed, quiet)
        }
        Command::Repeat(args) => match repeat_bundle(&runtime, args) {
            Ok(code) => Ok(code),
            Err(err) => {
                eprintln!("reprotrace: error: {}", error_text(&err));
                return ExitCode::from(repeat::COULD_NOT_RUN as u8);
            }
        },
        Command::Export { format, manifest, output, host } => {
            export_manifest(format, &manifest, output.as_deref(), host.as_deref())
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(REPROTRACE_FAILED)),
        Err(err) => {
            eprintln!("reprotrace: error: {}", error_text(&err));
            // A command that is not there or cannot run exits as in a shell.
            let launch_code = err.downcast_ref::<LaunchError>().and_then(LaunchError::shell_exit_code);
            ExitCode::from(launch_code.unwrap_or(REPROTRACE_FAILED))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_are_checked() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("17179869185G").is_err(), "no wraparound");
        assert!(parse_size("4G").is_err());
        assert!(parse_size("12X").is_err());
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["nan", "inf", "-1", "soon", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
        assert!(matches!(parse_idle("never"), Ok(IdleDetach(None))));
    }
}
