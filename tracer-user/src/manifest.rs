//! Manifest v1: the JSON document an audit produces (docs/manifest.md and
//! docs/manifest.schema.json describe it). Every list is sorted, so two audits
//! of the same run differ only in pids, times and statistics.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    access::{AccessLog, PathUse},
    classify::{DataFile, DataSets},
    errno::errno_name,
    event::WaitStatus,
    signals::signal_name,
    software::{self, python::normalize_name, SoftwareUse},
    tracker::{sorted_processes, CellRecord, ProcessRecord},
};

pub const SCHEMA_ID: &str = "reprotrace/manifest/v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: String,
    /// "ebpf" or "strace".
    pub backend: String,
    pub command: Vec<String>,
    /// The directory the command started in.
    pub cwd: String,
    pub host: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    /// The command's exit code; `None` when a signal killed it.
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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Events the pipeline consumed.
    pub events: u64,
    /// Events the kernel had to drop (ring buffer full): the manifest may miss facts.
    pub lost_events: u64,
    /// Children the kernel could not follow (its table of traced tasks was full).
    pub untracked_children: u64,
    /// Events that could not be decoded or parsed.
    pub malformed_events: u64,
    /// Paths relative to a descriptor reprotrace did not know (inherited from
    /// outside the traced tree), left out of `files`.
    pub unresolved_paths: u64,
    /// False when anything above says facts may be missing, or the audit was cut short.
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub failed_execs: Vec<FailedExec>,
    /// It was running before the audit attached to it (`reprotrace attach`).
    pub pre_existing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedExec {
    pub path: String,
    /// The errno name, e.g. "ENOENT".
    pub error: String,
}

/// How a path's contents were used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub access: Access,
    /// The run removed it or renamed it away.
    pub deleted: bool,
    pub pids: Vec<u32>,
}

/// One notebook cell: what it ran and used. Work done by the kernel during the
/// cell, and by the children it started in it, belongs to the cell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Position in the run, from 0.
    pub index: usize,
    pub execution_count: u64,
    /// The frontend's cell id, if it sent one.
    pub cell_id: Option<String>,
    pub code_sha256: String,
    pub started_at: String,
    /// `None` when the run ended before the cell did.
    pub finished_at: Option<String>,
    pub data: Data,
    pub software: CellSoftware,
    pub pids: Vec<u32>,
}

/// The software a cell used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSoftware {
    pub python: Vec<PythonDistribution>,
}

/// The software the run used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonDistribution {
    pub name: String,
    pub version: String,
    /// Who installed it (`INSTALLER`: pip, uv, conda, debian…), if recorded.
    pub installer: Option<String>,
    /// The site directory holding its metadata.
    pub location: String,
    pub editable: bool,
    /// How many of its files the run opened.
    pub files_used: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interpreter {
    pub path: String,
    pub version: String,
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The package manager: "dpkg".
    pub manager: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedFile {
    pub path: String,
    /// The system package or Python distribution owning it, if any.
    pub package: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    pub inputs: Vec<DataEntry>,
    pub outputs: Vec<DataEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataEntry {
    pub path: String,
    /// Bytes after the run; `None` for an input the run removed.
    pub size: Option<u64>,
    /// Last modification, RFC 3339 UTC; `None` for an input the run removed.
    pub mtime: Option<String>,
    /// Hex SHA-256 of the contents after the run; `None` if unreadable or removed.
    pub sha256: Option<String>,
    /// Inputs only: modified after the run started, so the run may have read
    /// other contents than the ones hashed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_during_run: bool,
}

/// Renders a path or argument for JSON: UTF-8 as is; any byte that is not part
/// of valid UTF-8 as `\xNN` (a backslash in a name stays a single backslash, so
/// the rendering is readable, and exact for every UTF-8 name).
pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// The sections of a manifest derived from the trace.
pub struct TraceSections {
    pub processes: Vec<Process>,
    pub files: Vec<FileEntry>,
    pub software: Software,
    pub data: Data,
    pub cells: Vec<Cell>,
}

/// What the pipeline found for one notebook cell.
pub struct CellSections<'a> {
    pub cell: &'a CellRecord,
    pub software: SoftwareUse,
    pub data: DataSets,
}

pub fn trace_sections(
    processes: &[ProcessRecord],
    log: &AccessLog,
    software: &SoftwareUse,
    data: &DataSets,
    cells: &[CellSections],
) -> TraceSections {
    TraceSections {
        processes: sorted_processes(processes).into_iter().map(process_entry).collect(),
        files: log.iter().map(|(path, used)| file_entry(path, used)).collect(),
        software: software_section(software),
        data: data_section(data),
        cells: cells.iter().enumerate().map(|(index, cell)| cell_entry(index, cell)).collect(),
    }
}

fn data_section(data: &DataSets) -> Data {
    Data { inputs: data_entries(&data.inputs), outputs: data_entries(&data.outputs) }
}

fn cell_entry(index: usize, sections: &CellSections) -> Cell {
    let time = |ns: u64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
        humantime::format_rfc3339_millis(at).to_string()
    };
    let cell = sections.cell;
    Cell {
        index,
        execution_count: cell.execution_count,
        cell_id: cell.cell_id.clone(),
        code_sha256: cell.code_sha256.clone(),
        started_at: time(cell.started_ns),
        finished_at: cell.finished_ns.map(time),
        data: data_section(&sections.data),
        software: CellSoftware { python: python_distributions(&sections.software) },
        pids: cell.pids.iter().copied().collect(),
    }
}

fn python_distributions(software: &SoftwareUse) -> Vec<PythonDistribution> {
    let mut python: Vec<PythonDistribution> = software
        .python
        .iter()
        .map(|(distribution, files_used)| PythonDistribution {
            name: distribution.name.clone(),
            version: distribution.version.clone(),
            installer: distribution.installer.clone(),
            location: display_bytes(&distribution.location),
            editable: distribution.editable,
            files_used: *files_used,
        })
        .collect();
    python.sort_by_cached_key(|distribution| (normalize_name(&distribution.name), distribution.location.clone()));
    python
}

fn software_section(software: &SoftwareUse) -> Software {
    let owned_files = |files: &[software::OwnedFile]| -> Vec<OwnedFile> {
        files.iter().map(|file| OwnedFile { path: display_bytes(&file.path), package: file.package.clone() }).collect()
    };
    Software {
        python: python_distributions(software),
        interpreters: software
            .interpreters
            .iter()
            .map(|interpreter| Interpreter {
                path: display_bytes(&interpreter.path),
                version: interpreter.version.clone(),
                prefix: display_bytes(&interpreter.prefix),
            })
            .collect(),
        system_packages: software
            .system_packages
            .iter()
            .map(|package| SystemPackage {
                name: package.name.clone(),
                version: package.version.clone(),
                architecture: package.architecture.clone(),
                manager: package.manager.to_string(),
            })
            .collect(),
        executables: owned_files(&software.executables),
        shared_libraries: owned_files(&software.shared_libraries),
    }
}

fn process_entry(record: &ProcessRecord) -> Process {
    Process {
        pid: record.pid,
        ppid: record.ppid,
        exe: record.exe.as_deref().map(display_bytes),
        argv: record.argv.iter().map(|arg| display_bytes(arg)).collect(),
        cwd: display_bytes(&record.cwd),
        exit_code: record.status.and_then(WaitStatus::exit_code),
        signal: record.status.and_then(WaitStatus::signal).map(signal_label),
        failed_execs: record
            .failed_execs
            .iter()
            .map(|failed| FailedExec { path: display_bytes(&failed.path), error: errno_label(failed.errno) })
            .collect(),
        pre_existing: record.pre_existing,
    }
}

pub fn signal_label(signal: i32) -> String {
    signal_name(signal).map(str::to_string).unwrap_or_else(|| format!("signal {signal}"))
}

fn errno_label(errno: i32) -> String {
    errno_name(errno).map(str::to_string).unwrap_or_else(|| format!("errno {errno}"))
}

fn file_entry(path: &[u8], used: &PathUse) -> FileEntry {
    let access = match (used.read, used.written) {
        (true, true) => Access::ReadWrite,
        (false, true) => Access::Write,
        _ if used.exec => Access::Exec,
        (true, false) => Access::Read,
        (false, false) => Access::Metadata,
    };
    FileEntry {
        path: display_bytes(path),
        access,
        deleted: used.gone,
        pids: used.pids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect(),
    }
}

fn data_entries(files: &[DataFile]) -> Vec<DataEntry> {
    files
        .iter()
        .map(|file| DataEntry {
            path: display_bytes(&file.path),
            size: file.size,
            mtime: file.mtime.map(|mtime| humantime::format_rfc3339_seconds(mtime).to_string()),
            sha256: file.sha256.clone(),
            changed_during_run: file.changed_during_run,
        })
        .collect()
}

/// Why a manifest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot write the manifest to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read the manifest {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a reprotrace manifest (or it is corrupt): {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("{path} is a manifest of schema {found:?}; this reprotrace reads {SCHEMA_ID:?}")]
    WrongSchema { path: PathBuf, found: String },
}

impl Manifest {
    /// Writes the manifest atomically: a temporary file beside the target,
    /// flushed to disk, then renamed over it. A reader never sees half a file.
    pub fn write_atomically(&self, path: &Path) -> Result<(), ManifestError> {
        let fail = |source| ManifestError::Write { path: path.to_path_buf(), source };
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let mut temp =
            tempfile::Builder::new().prefix(".reprotrace-").suffix(".json.tmp").tempfile_in(dir).map_err(fail)?;
        // Buffered: serde writes a token at a time.
        let mut writer = std::io::BufWriter::with_capacity(1 << 16, &mut temp);
        serde_json::to_writer_pretty(&mut writer, self).map_err(|err| fail(err.into()))?;
        writer.write_all(b"\n").map_err(fail)?;
        writer.flush().map_err(fail)?;
        drop(writer);
        temp.as_file().sync_all().map_err(fail)?;
        temp.persist(path).map_err(|err| fail(err.error))?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|source| ManifestError::Corrupt { path: path.to_path_buf(), source })?;
        let schema = value.get("schema").and_then(|schema| schema.as_str()).unwrap_or_default();
        if schema != SCHEMA_ID {
            return Err(ManifestError::WrongSchema { path: path.to_path_buf(), found: schema.to_string() });
        }
        serde_json::from_value(value).map_err(|source| ManifestError::Corrupt { path: path.to_path_buf(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_utf8_and_escapes_the_rest() {
        assert_eq!(display_bytes("café".as_bytes()), "café");
        assert_eq!(display_bytes(b"caf\xe9.txt"), "caf\\xe9.txt");
    }

    #[test]
    fn corrupt_and_foreign_files_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.json");
        std::fs::write(&path, b"{\"schema\": \"reprotrace/manifest/v1\", \"backend\": ").expect("write");
        let err = Manifest::read(&path).expect_err("truncated");
        assert!(err.to_string().contains("corrupt"), "{err}");
        std::fs::write(&path, b"{\"schema\": \"other\"}").expect("write");
        let err = Manifest::read(&path).expect_err("foreign");
        assert!(err.to_string().contains("schema"), "{err}");
    }
}
