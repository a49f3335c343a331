//! The manifest's trace sections, rendered from what the pipeline found:
//! processes, files, software, data, cells and Dask tasks, every list sorted.

use super::{
    Access, Cell, CellError, CellNames, CellSoftware, Data, DataEntry, FailedExec, FileEntry, Interpreter, OwnedFile,
    Process, PythonDistribution, Software, SystemPackage, Task, TaskProcess,
};
use crate::{
    access::{AccessLog, PathUse},
    classify::{DataFile, DataSets},
    errno::errno_name,
    event::WaitStatus,
    signals::signal_name,
    software::{self, python::normalize_name, SoftwareUse},
    tracker::{sorted_processes, view::NamespaceId, CellRecord, DaskTaskRecord, ProcessRecord},
};

/// Renders a path or argument for JSON: UTF-8 as is, except the backslash,
/// written `\\`; any byte that is not part of valid UTF-8 as `\xNN`. So the
/// rendering is unambiguous: `caf\xe9` is the Latin-1 byte, `caf\\xe9` the
/// name typed with a backslash.
pub fn display_bytes(bytes: &[u8]) -> String {
    // Nearly every path: copied whole, not a character at a time.
    if let Ok(text) = std::str::from_utf8(bytes) {
        if memchr::memchr(b'\\', bytes).is_none() {
            return text.to_owned();
        }
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            if character == '\\' {
                out.push('\\');
            }
            out.push(character);
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// [`display_bytes`] of bytes given away: UTF-8 without a backslash, as
/// nearly every path is, becomes the string without a copy.
fn display_owned_bytes(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\\') => text,
        Ok(text) => display_bytes(text.as_bytes()),
        Err(invalid) => display_bytes(invalid.as_bytes()),
    }
}

/// The bytes a [`display_bytes`] rendering stands for (`\\` is a backslash,
/// `\xNN` a byte); `None` if `text` is not such a rendering.
pub fn bytes_of_display(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'\\' {
            bytes.push(first);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', after @ ..] => {
                bytes.push(b'\\');
                rest = after;
            }
            [b'x', high, low, after @ ..] => {
                let hex = std::str::from_utf8(&[*high, *low]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok())?;
                bytes.push(hex);
                rest = after;
            }
            _ => return None,
        }
    }
    Some(bytes)
}

/// The sections of a manifest derived from the trace.
pub struct TraceSections {
    pub processes: Vec<Process>,
    pub files: Vec<FileEntry>,
    pub software: Software,
    pub data: Data,
    pub cells: Vec<Cell>,
    pub tasks: Vec<Task>,
}

/// What the pipeline found for one notebook cell.
pub struct CellSections<'a> {
    pub cell: &'a CellRecord,
    pub software: SoftwareUse,
    pub data: DataSets,
}

/// What the pipeline found for one run of a Dask task.
pub struct TaskSections<'a> {
    pub task: &'a DaskTaskRecord,
    /// The processes it started.
    pub processes: Vec<&'a ProcessRecord>,
    pub software: SoftwareUse,
    pub data: DataSets,
}

/// The Dask tasks of an audit, and where they ran.
pub struct TaskContext<'a> {
    pub tasks: &'a [TaskSections<'a>],
    /// The host name.
    pub host: &'a str,
    /// The worker's address, when the audit knew it followed a worker.
    pub worker: Option<&'a str>,
}

pub fn trace_sections(
    processes: &[ProcessRecord],
    log: AccessLog,
    software: &SoftwareUse,
    data: &DataSets,
    cells: &[CellSections],
    tasks: &TaskContext,
) -> TraceSections {
    TraceSections {
        processes: sorted_processes(processes).into_iter().map(process_entry).collect(),
        files: file_entries(log),
        software: software_section(software),
        data: data_section(data),
        cells: cells.iter().enumerate().map(|(index, cell)| cell_entry(index, cell)).collect(),
        tasks: tasks.tasks.iter().map(|task| task_entry(task, tasks.host, tasks.worker)).collect(),
    }
}

/// Nanoseconds since the Unix epoch as RFC 3339 UTC, to the millisecond.
fn marker_time(ns: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_millis(at).to_string()
}

fn task_entry(sections: &TaskSections, host: &str, worker: Option<&str>) -> Task {
    let task = sections.task;
    Task {
        key: task.key.clone(),
        host: host.to_string(),
        // The worker's address when the task ran; the audit's (the one the
        // worker had when the audit began) for a marker without one.
        worker: task.worker.clone().or_else(|| worker.map(str::to_string)),
        pid: task.pid,
        thread: task.thread,
        started_at: marker_time(task.started_ns),
        finished_at: task.finished_ns.map(marker_time),
        cell: None,
        cell_by_clock: false,
        processes: sorted_processes_of(&sections.processes)
            .into_iter()
            .map(|process| TaskProcess {
                pid: process.pid,
                exe: process.exe.as_deref().map(display_bytes),
                argv: process.argv.iter().map(|arg| display_bytes(arg)).collect(),
            })
            .collect(),
        software: CellSoftware { python: python_distributions(&sections.software) },
        data: data_section(&sections.data),
    }
}

/// Processes by pid, a reused pid's records in the order they came.
fn sorted_processes_of<'a>(processes: &[&'a ProcessRecord]) -> Vec<&'a ProcessRecord> {
    let mut sorted = processes.to_vec();
    sorted.sort_by_key(|process| process.pid);
    sorted
}

fn data_section(data: &DataSets) -> Data {
    Data { inputs: data_entries(&data.inputs), outputs: data_entries(&data.outputs) }
}

fn cell_entry(index: usize, sections: &CellSections) -> Cell {
    let cell = sections.cell;
    Cell {
        index,
        execution_count: cell.execution_count,
        cell_id: cell.cell_id.clone(),
        code_sha256: cell.code_sha256.clone(),
        started_at: marker_time(cell.started_ns),
        finished_at: cell.finished_ns.map(marker_time),
        data: data_section(&sections.data),
        software: CellSoftware { python: python_distributions(&sections.software) },
        pids: cell.pids.iter().copied().collect(),
        error: cell
            .outcome
            .as_ref()
            .and_then(|outcome| outcome.error.as_ref())
            .map(|error| CellError { ename: error.ename.clone(), evalue: error.evalue.clone() }),
        names: cell.outcome.as_ref().and_then(|outcome| outcome.names.as_ref()).map(|names| CellNames {
            defines: names.defines.clone(),
            deletes: names.deletes.clone(),
            uses: names.uses.clone(),
            truncated: names.truncated,
        }),
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
            files: software
                .editable_files
                .get(distribution)
                .map(|files| files.iter().map(|path| display_bytes(path)).collect())
                .unwrap_or_default(),
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
        interpreters: record.interpreters.iter().map(|interpreter| display_bytes(interpreter)).collect(),
        argv_truncated: record.argv_truncated,
        namespace: record.namespace,
        cell_hook: record.cell_hook,
    }
}

pub fn signal_label(signal: i32) -> String {
    signal_name(signal).map(str::to_string).unwrap_or_else(|| format!("signal {signal}"))
}

fn errno_label(errno: i32) -> String {
    errno_name(errno).map(str::to_string).unwrap_or_else(|| format!("errno {errno}"))
}

fn file_entry(path: Vec<u8>, namespace: Option<NamespaceId>, used: PathUse) -> FileEntry {
    let access = match (used.read, used.written) {
        (true, true) => Access::ReadWrite,
        (false, true) => Access::Write,
        _ if used.exec => Access::Exec,
        (true, false) => Access::Read,
        (false, false) => Access::Metadata,
    };
    FileEntry { path: display_owned_bytes(path), access, deleted: used.gone, namespace, pids: used.pids.into_vec() }
}

/// Every path the run used, sorted by path: the host's, and those in mount
/// namespaces out of reach. The log is taken apart as its entries become
/// the manifest's, so a run of millions of paths does not hold both.
fn file_entries(log: AccessLog) -> Vec<FileEntry> {
    let has_foreign = log.foreign().next().is_some();
    let mut entries: Vec<FileEntry> =
        log.into_entries().map(|(namespace, path, used)| file_entry(path, namespace, used)).collect();
    if has_foreign {
        entries.sort_by(|a, b| (a.path.as_bytes(), a.namespace).cmp(&(b.path.as_bytes(), b.namespace)));
    }
    entries
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
            namespace: file.namespace,
            over_hash_limit: file.over_hash_limit,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_utf8_and_escapes_the_rest() {
        assert_eq!(display_bytes("café".as_bytes()), "café");
        assert_eq!(display_bytes(b"caf\xe9.txt"), "caf\\xe9.txt");
        // A name typed with a backslash is not the Latin-1 byte.
        assert_eq!(display_bytes(b"caf\\xe9.txt"), "caf\\\\xe9.txt");
    }

    #[test]
    fn bytes_given_away_display_as_bytes_lent() {
        for bytes in [&b"/data/in.csv"[..], "café".as_bytes(), b"caf\xe9.txt", b"caf\\xe9.txt", b"\xff\xfe"] {
            assert_eq!(display_owned_bytes(bytes.to_vec()), display_bytes(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn displayed_bytes_come_back() {
        for bytes in [&b"caf\xe9.txt"[..], b"caf\\xe9.txt", "café \\ x".as_bytes(), b"\xff\xfe"] {
            assert_eq!(bytes_of_display(&display_bytes(bytes)).as_deref(), Some(bytes), "{bytes:?}");
        }
        assert_eq!(bytes_of_display("a\\q"), None);
        assert_eq!(bytes_of_display("a\\x4"), None);
    }
}
