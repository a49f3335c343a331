//! Bundles (`reprotrace pack`, read by `reprotrace repeat`): one
//! zstd-compressed tar holding a manifest and the files its run used, each
//! content once, so that the run can be repeated from the bundle alone.
//!
//! Members, in order: `bundle.json` (the format and what part of the run it
//! holds), `manifest.json`, `lists/*` (pinned package lists, `--data-only`),
//! `objects/<sha256>` (each content once), and last `index.json`: every path
//! of the root (files, symbolic links, directories) with its owner, mode and
//! times, and the paths deliberately left out. Packing reads every file twice
//! (to name its content, then to copy it), so memory stays bounded; unpacking
//! checks every content against its name.

mod pack;
mod unpack;

pub use pack::{pack, used_paths, PackReport, Part, PROVIDED_TREES};
use serde::{Deserialize, Serialize};
pub use unpack::{read_header, unpack, Unpacked};

/// What `bundle.json` says the format is.
pub const FORMAT: &str = "reprotrace/bundle/v1";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write the bundle {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot read {path} to pack it: {source}")]
    ReadFile { path: String, source: std::io::Error },
    #[error("files changed since the audit (pack them anyway with --allow-changed): {0}")]
    Changed(String),
    #[error("{0} is not a reprotrace bundle, or it is corrupt or truncated: {1}")]
    Corrupt(std::path::PathBuf, String),
    #[error("cannot unpack into {path}: {source}")]
    Unpack { path: String, source: std::io::Error },
    #[error("{0}")]
    Part(String),
}

/// `bundle.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    /// What part of the run it holds: `run`, `host NAME`, `cells N,M`, `data only`.
    pub part: String,
    /// Whether `reprotrace repeat` can run it: only a bundle of the whole run.
    pub repeatable: bool,
    /// When it cannot be repeated: why, and how to pack a bundle that can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_repeatable: Option<String>,
}

impl Header {
    /// Why `reprotrace repeat` must refuse this bundle, if it must. Decided
    /// by the part it holds, not by its `repeatable` flag: bundles of cells
    /// or of a host packed by earlier versions say `repeatable: true`.
    pub fn repeat_refusal(&self) -> Option<String> {
        match Part::from_label(&self.part) {
            Some(part) => part.not_repeatable_because(),
            None => Some(format!("it holds a part ({:?}) this reprotrace does not know", self.part)),
        }
    }
}

/// One path of the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// As the manifest spells paths (`display_bytes`).
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Kind {
    /// A regular file whose content is `objects/<sha256>`; `data`: one of the run's data inputs.
    File {
        sha256: String,
        size: u64,
        data: bool,
    },
    Symlink {
        target: String,
    },
    Dir,
}

/// `index.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub entries: Vec<Entry>,
    /// Paths the run used that the bundle leaves out on purpose: made by the
    /// run itself (a repeat makes them again), or gone since.
    pub left_out: Vec<String>,
}

#[cfg(test)]
mod tests;
