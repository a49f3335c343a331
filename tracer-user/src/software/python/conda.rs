//! The packages of a conda prefix: `conda-meta/*.json`.

use std::{
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
};

use serde::Deserialize;

use super::{metadata::read_optional, modified, os_path, Distribution, Evidence, Found, PythonError, Rank};
use crate::tracker::path::join;

#[derive(Deserialize)]
pub(super) struct CondaRecord {
    name: String,
    version: String,
    #[serde(default)]
    files: Vec<String>,
}

/// The packages of a conda prefix: `conda-meta/*.json`, files relative to the prefix.
pub(super) fn scan_conda_prefix(prefix: &[u8], problems: &mut Vec<PythonError>) -> Vec<Found> {
    let conda_meta = join(prefix, b"conda-meta");
    let Ok(entries) = fs::read_dir(os_path(&conda_meta)) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_name().as_bytes().ends_with(b".json") {
            continue;
        }
        let path = join(&conda_meta, entry.file_name().as_bytes());
        let Ok(metadata) = entry.metadata() else { continue };
        let Some(text) = read_optional(&path, problems) else { continue };
        let record: CondaRecord = match serde_json::from_slice(&text) {
            Ok(record) => record,
            Err(source) => {
                problems.push(PythonError::Json { path: os_path(&path).to_path_buf(), source });
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
