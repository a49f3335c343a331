//! `reprotrace pack`: which paths a part of a run needs, and writing them.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    io::{BufWriter, Read, Write},
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
    time::SystemTime,
};

use sha2::{Digest, Sha256};

use super::{BundleError, Entry, Header, Index, Kind, FORMAT};
use crate::{
    export::{self, Format},
    fsaccess,
    manifest::{bytes_of_display, display_bytes, Access, Manifest},
    merge,
    tracker::path,
    units::human_size,
};

/// Which part of the run a bundle holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// The run's own processes (the manager's, in a distributed run).
    Run,
    /// What one host of a distributed run used (`hosts[]`). Not
    /// repeatable: its workers ran tasks the run's command sent them.
    Host(String),
    /// What these notebook cells needed: their data inputs, and the run's
    /// software (no other cell's data). Not repeatable: the run's command
    /// executes every cell, and the others' data is not there.
    Cells(Vec<u64>),
    /// The data inputs, and the pinned package lists in `lists/`.
    DataOnly,
}

impl Part {
    /// What `bundle.json` calls the part.
    pub fn label(&self) -> String {
        match self {
            Part::Run => "run".into(),
            Part::Host(host) => format!("host {host}"),
            Part::Cells(cells) => format!("cells {}", Self::cell_list(cells)),
            Part::DataOnly => "data only".into(),
        }
    }

    /// The part a `bundle.json` names (`label`'s inverse).
    pub fn from_label(label: &str) -> Option<Part> {
        match label {
            "run" => Some(Part::Run),
            "data only" => Some(Part::DataOnly),
            _ => {
                if let Some(host) = label.strip_prefix("host ") {
                    return Some(Part::Host(host.into()));
                }
                let cells = label.strip_prefix("cells ")?;
                cells.split(',').map(|count| count.parse().ok()).collect::<Option<Vec<u64>>>().map(Part::Cells)
            }
        }
    }

    fn cell_list(cells: &[u64]) -> String {
        cells.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }

    /// Why a bundle of this part cannot be repeated on its own, and how to
    /// pack one that can; `None` for the whole run.
    pub fn not_repeatable_because(&self) -> Option<String> {
        let whole = "`reprotrace pack MANIFEST -o BUNDLE`";
        match self {
            Part::Run => None,
            Part::Cells(cells) => Some(format!(
                "it holds what notebook {} {} needed (their data and the run's software), not the whole run: \
                 the run's command executes every cell, and the other cells' data is not in it. {whole} without \
                 --cell packs a bundle that can be repeated",
                if cells.len() == 1 { "cell" } else { "cells" },
                Self::cell_list(cells)
            )),
            Part::Host(host) => Some(format!(
                "it holds what the Dask workers on host {host} used, not the run: their tasks came from the run's \
                 command, which ran elsewhere. {whole} without --host packs the run's own side, which can be \
                 repeated"
            )),
            Part::DataOnly => Some(format!(
                "it holds the data inputs and the pinned package lists (lists/), no software. Rebuild the \
                 environment from those lists or with `reprotrace export docker`; {whole} without --data-only \
                 packs a bundle that can be repeated"
            )),
        }
    }
}

/// What a bundle holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackReport {
    pub files: usize,
    /// Distinct contents.
    pub contents: usize,
    pub software_bytes: u64,
    pub data_bytes: u64,
    pub bundle_bytes: u64,
    pub left_out: Vec<String>,
    /// Why `reprotrace repeat` will refuse it, for a bundle of a part.
    pub not_repeatable: Option<String>,
}

impl std::fmt::Display for PackReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = (self.software_bytes + self.data_bytes).max(1);
        write!(
            f,
            "{} files ({} distinct contents), {} of software and {} of data ({:.0}% data), compressed to {}",
            self.files,
            self.contents,
            human_size(self.software_bytes),
            human_size(self.data_bytes),
            100.0 * self.data_bytes as f64 / total as f64,
            human_size(self.bundle_bytes)
        )
    }
}

/// Trees a repeat provides itself.
pub const PROVIDED_TREES: [&[u8]; 3] = [b"/proc", b"/sys", b"/dev"];
/// Symbolic links followed while resolving one path, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// Packs `part` of `manifest`'s run into `output`. A data input whose content
/// differs from the manifest's hash is refused unless `allow_changed`, and so
/// is any other file (a program, a library, a Python module) changed since
/// the audit ended: the manifest holds no hash of those, but an upgrade
/// (dpkg, pip) writes new files, whose inode change time is then later.
pub fn pack(
    manifest: &Manifest,
    part: &Part,
    allow_changed: bool,
    output: &Path,
    progress: bool,
) -> Result<PackReport, BundleError> {
    let sections = match part {
        Part::Host(host) => merge::host_view(manifest, host).map_err(|err| BundleError::Part(err.to_string()))?,
        _ => manifest.clone(),
    };
    // What the run made itself is left out; a host's audits started at
    // other times than the run, which is all the manifest keeps: not there.
    let finished = humantime::parse_rfc3339(&manifest.finished_at).ok();
    let run = match part {
        Part::Host(_) => None,
        _ => humantime::parse_rfc3339(&manifest.started_at).ok().map(|started| RunSpan { started, finished }),
    };
    let inputs: BTreeMap<Vec<u8>, Option<String>> = sections
        .data
        .inputs
        .iter()
        .filter_map(|input| Some((bytes_of_display(&input.path)?, input.sha256.clone())))
        .collect();
    let mut wanted: BTreeSet<Vec<u8>> = match part {
        Part::DataOnly => inputs.keys().cloned().collect(),
        _ => used_paths(&sections),
    };
    if let Part::Cells(counts) = part {
        let mut theirs = BTreeSet::new();
        for count in counts {
            let cell = manifest.cells.iter().find(|cell| cell.execution_count == *count).ok_or_else(|| {
                let known: Vec<String> = manifest.cells.iter().map(|cell| cell.execution_count.to_string()).collect();
                BundleError::Part(format!("no cell [{count}] in this run (its cells: {})", known.join(", ")))
            })?;
            theirs.extend(cell.data.inputs.iter().filter_map(|input| bytes_of_display(&input.path)));
        }
        // Other cells' data stays out.
        wanted.retain(|path| !inputs.contains_key(path) || theirs.contains(path));
    }
    if matches!(part, Part::Run | Part::Cells(_)) {
        if let Some(cwd) = bytes_of_display(&manifest.cwd) {
            wanted.insert(cwd);
        }
    }
    let mut index = Index::default();
    let mut entries: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    for path in &wanted {
        add_path(path, run, &mut entries, &mut index.left_out);
    }
    // The contents, named by their hash; data inputs checked against the
    // manifest's, the rest against the time the audit ended (but for what the
    // run wrote itself: an attached process may go on writing it).
    let written: BTreeSet<Vec<u8>> = sections
        .files
        .iter()
        .filter(|file| matches!(file.access, Access::Write | Access::ReadWrite))
        .filter_map(|file| bytes_of_display(&file.path))
        .collect();
    let mut changed = Vec::new();
    let mut report = PackReport { left_out: index.left_out.clone(), ..PackReport::default() };
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (path, entry) in &mut entries {
        let Kind::File { sha256, size, data } = &mut entry.kind else { continue };
        *sha256 = hash_file(path)?;
        *data = inputs.contains_key(path);
        if let Some(Some(expected)) = inputs.get(path) {
            if expected != sha256 {
                changed.push(display_bytes(path));
            }
        }
        // (A host's audit ended at a time the manifest does not keep.)
        let audit_end = run.and_then(|run| run.finished);
        if !*data && !written.contains(path) && audit_end.is_some_and(|finished| changed_after(path, finished)) {
            changed.push(format!("{} (not data: changed after the audit ended)", display_bytes(path)));
        }
        match *data {
            true => report.data_bytes += *size,
            false => report.software_bytes += *size,
        }
        report.files += 1;
        contents.entry(sha256.clone()).or_insert_with(|| path.clone());
    }
    if !changed.is_empty() && !allow_changed {
        return Err(BundleError::Changed(changed.join(", ")));
    }
    report.contents = contents.len();
    index.entries = entries.into_values().collect();
    report.not_repeatable = part.not_repeatable_because();
    let header = Header {
        format: FORMAT.into(),
        part: part.label(),
        repeatable: report.not_repeatable.is_none(),
        not_repeatable: report.not_repeatable.clone(),
    };
    let lists = match part {
        Part::DataOnly => vec![
            ("lists/requirements.txt", export::export(&sections, Format::Requirements)),
            ("lists/apt.txt", export::export(&sections, Format::Apt)),
        ],
        _ => Vec::new(),
    };
    write_bundle(output, &header, manifest, &lists, &contents, &index, progress)?;
    report.bundle_bytes = std::fs::metadata(output).map(|metadata| metadata.len()).unwrap_or(0);
    Ok(report)
}

/// Whether the inode at `path` changed (written, replaced, its mode or owner
/// changed) after `time`.
fn changed_after(path: &[u8], time: SystemTime) -> bool {
    let Ok(metadata) = std::fs::symlink_metadata(os_path(path)) else { return false };
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let changed = (metadata.ctime(), metadata.ctime_nsec());
    changed > (since_epoch.as_secs() as i64, i64::from(since_epoch.subsec_nanos()))
}

/// Every path the run read, executed or looked up and did not only write,
/// in the auditor's namespace, outside the trees a repeat provides.
pub fn used_paths(manifest: &Manifest) -> BTreeSet<Vec<u8>> {
    manifest
        .files
        .iter()
        .filter(|file| file.namespace.is_none() && !file.deleted && file.access != Access::Write)
        .filter_map(|file| bytes_of_display(&file.path))
        .filter(|path| !PROVIDED_TREES.iter().any(|tree| path::is_under(path, tree)))
        .collect()
}

/// When the audited run was (`finished` unknown: until now).
#[derive(Clone, Copy)]
struct RunSpan {
    started: SystemTime,
    finished: Option<SystemTime>,
}

/// Adds `path` to `entries`, with the directories and symbolic links on the
/// way to it and, for a link, what it points to. What the run made itself
/// (born while it ran), and what is gone, goes to `left_out`.
fn add_path(path: &[u8], run: Option<RunSpan>, entries: &mut BTreeMap<Vec<u8>, Entry>, left_out: &mut Vec<String>) {
    let mut pending = vec![path.to_vec()];
    let mut links = 0;
    while let Some(path) = pending.pop() {
        let components: Vec<&[u8]> = path.split(|&byte| byte == b'/').filter(|part| !part.is_empty()).collect();
        let mut prefix = Vec::new();
        for (position, component) in components.iter().enumerate() {
            prefix.push(b'/');
            prefix.extend_from_slice(component);
            let last = position + 1 == components.len();
            let Ok(metadata) = std::fs::symlink_metadata(os_path(&prefix)) else {
                left_out.push(display_bytes(&prefix));
                break;
            };
            if last && run.is_some_and(|run| born_during(&metadata, run)) {
                left_out.push(display_bytes(&prefix));
                break;
            }
            let kind = match metadata.file_type() {
                kind if kind.is_symlink() => {
                    let Ok(target) = std::fs::read_link(os_path(&prefix)) else { break };
                    let target = target.as_os_str().as_bytes().to_vec();
                    let parent = path::parent(&prefix).unwrap_or(b"/");
                    let mut resolved = path::resolve(parent, &target);
                    for rest in &components[position + 1..] {
                        resolved.push(b'/');
                        resolved.extend_from_slice(rest);
                    }
                    links += 1;
                    if links <= MAX_LINKS {
                        pending.push(path::normalize(&resolved));
                    }
                    Kind::Symlink { target: display_bytes(&target) }
                }
                kind if kind.is_dir() => Kind::Dir,
                kind if kind.is_file() && last => {
                    Kind::File { sha256: String::new(), size: metadata.len(), data: false }
                }
                // A device, a socket, a fifo: a repeat provides its own.
                _ => break,
            };
            let stop = matches!(kind, Kind::Symlink { .. });
            entries.entry(prefix.clone()).or_insert_with(|| Entry {
                path: display_bytes(&prefix),
                kind,
                mode: metadata.mode() & 0o7777,
                uid: metadata.uid(),
                gid: metadata.gid(),
                mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
            });
            if stop {
                break;
            }
        }
    }
}

/// Whether the file or directory came into being while the run ran (the run
/// made it): its birth time says, where the file system keeps one. One born
/// after the audit ended replaced what the run used (an upgrade).
fn born_during(metadata: &std::fs::Metadata, run: RunSpan) -> bool {
    metadata.created().is_ok_and(|born| born >= run.started && run.finished.is_none_or(|finished| born <= finished))
}

fn hash_file(path: &[u8]) -> Result<String, BundleError> {
    let fail = |source| BundleError::ReadFile { path: display_bytes(path), source };
    let mut file = fsaccess::open(path).map_err(fail)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(fail)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Writes the bundle beside `output`, then renames it into place.
fn write_bundle(
    output: &Path,
    header: &Header,
    manifest: &Manifest,
    lists: &[(&str, String)],
    contents: &BTreeMap<String, Vec<u8>>,
    index: &Index,
    progress: bool,
) -> Result<(), BundleError> {
    let fail = |source: std::io::Error| BundleError::Write { path: output.to_path_buf(), source };
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new().prefix(".reprotrace-bundle-").tempfile_in(dir).map_err(fail)?;
    let encoder = zstd::Encoder::new(BufWriter::with_capacity(1 << 20, temp.as_file()), 9).map_err(fail)?;
    let mut tar = tar::Builder::new(encoder);
    let json = |value: serde_json::Result<String>| value.map_err(|err| fail(err.into()));
    append(&mut tar, "bundle.json", json(serde_json::to_string_pretty(header))?.as_bytes()).map_err(fail)?;
    append(&mut tar, "manifest.json", json(serde_json::to_string_pretty(manifest))?.as_bytes()).map_err(fail)?;
    for (name, text) in lists {
        append(&mut tar, name, text.as_bytes()).map_err(fail)?;
    }
    for (done, (sha256, path)) in contents.iter().enumerate() {
        let file =
            fsaccess::open(path).map_err(|source| BundleError::ReadFile { path: display_bytes(path), source })?;
        let size = file.metadata().map_err(fail)?.len();
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("objects/{sha256}"), file).map_err(fail)?;
        if progress && (done % 200 == 0 || done + 1 == contents.len()) {
            eprint!("\rreprotrace: packing: {} of {} contents\x1b[K", done + 1, contents.len());
        }
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    append(&mut tar, "index.json", json(serde_json::to_string_pretty(index))?.as_bytes()).map_err(fail)?;
    let encoder = tar.into_inner().map_err(fail)?;
    let mut writer = encoder.finish().map_err(fail)?;
    writer.flush().map_err(fail)?;
    drop(writer);
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(output).map_err(|err| fail(err.error))?;
    Ok(())
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, bytes)
}

fn os_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}
