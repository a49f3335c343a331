//! The packages of a conda prefix: `conda-meta/*.json`.

use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};

use serde::Deserialize;

use super::{inputs::ScanLog, modified, os_path, Distribution, Evidence, Found, PythonError, Rank};
use crate::tracker::path::join;

#[derive(Deserialize)]
pub(super) struct CondaRecord {
    name: String,
    version: String,
    #[serde(default)]
    files: Vec<String>,
}

/// The packages of a conda prefix: `conda-meta/*.json`, files relative to the prefix.
pub(super) fn scan_conda_prefix(prefix: &[u8], log: &mut ScanLog) -> Vec<Found> {
    let conda_meta = join(prefix, b"conda-meta");
    let Ok(entries) = log.read_dir(&conda_meta) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().ends_with(b".json") {
            continue;
        }
        let path = join(&conda_meta, entry.file_name().as_bytes());
        // The record's own identity and time (a link's, not its target's)
        // rank it; what the scan read through it is recorded by `read`.
        let Ok(metadata) = entry.metadata() else { continue };
        let Some(text) = log.read(&path) else { continue };
        let record: CondaRecord = match serde_json::from_slice(&text) {
            Ok(record) => record,
            Err(source) => {
                log.problems.push(PythonError::Json { path: os_path(&path).to_path_buf(), source });
                continue;
            }
        };
        found.push(Found {
            distribution: Distribution {
                name: record.name,
                version: record.version,
                installer: Some("conda".to_owned()),
                location: prefix.to_vec(),
                editable: false,
            },
            identity: (metadata.dev(), metadata.ino()),
            rank: Rank { evidence: Evidence::Conda, modified: modified(&metadata) },
            files: record.files.iter().map(|file| join(prefix, file.as_bytes())).collect(),
            package_roots: Vec::new(),
            path_entries: Vec::new(),
        });
    }
    found
}
