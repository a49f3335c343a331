//! Which used paths are the run's data: inputs it read and outputs it left.
//!
//! Rules (docs/manifest.md): only regular files outside system trees count;
//! an input was read and not written by the run; an output was created or
//! written by the run and still exists under that name when it ends (so a temp
//! file renamed over its target leaves the target, and a file created and
//! deleted leaves nothing). Sizes are taken after the run.

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::Path};

use crate::{
    access::{AccessLog, PathUse},
    tracker::path::is_under,
};

/// Trees whose files are the system's, never the run's data.
pub const SYSTEM_TREES: &[&[u8]] = &[
    b"/usr", b"/lib", b"/lib32", b"/lib64", b"/libx32", b"/bin", b"/sbin", b"/etc", b"/proc", b"/sys", b"/dev",
    b"/run", b"/boot",
];

/// A data file and its size after the run (`None` for an input the run removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    pub path: Vec<u8>,
    pub size: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSets {
    pub inputs: Vec<DataFile>,
    pub outputs: Vec<DataFile>,
}

pub fn is_system_path(path: &[u8]) -> bool {
    SYSTEM_TREES.iter().any(|tree| is_under(path, tree))
}

/// Classifies the access log, looking at the file system as it is now.
pub fn classify(log: &AccessLog) -> DataSets {
    let mut data = DataSets::default();
    for (path, used) in log.iter() {
        if used.directory || is_system_path(path) {
            continue;
        }
        let Some(kind) = data_kind(used) else { continue };
        let metadata = std::fs::metadata(Path::new(OsStr::from_bytes(path)));
        let regular_size = match &metadata {
            Ok(metadata) if metadata.is_file() => Some(metadata.len()),
            Ok(_) => continue,
            Err(_) => None,
        };
        match kind {
            DataKind::Output if regular_size.is_some() => {
                data.outputs.push(DataFile { path: path.to_vec(), size: regular_size });
            }
            DataKind::Input if regular_size.is_some() || used.gone => {
                data.inputs.push(DataFile { path: path.to_vec(), size: regular_size });
            }
            _ => {}
        }
    }
    data
}

enum DataKind {
    Input,
    Output,
}

fn data_kind(used: &PathUse) -> Option<DataKind> {
    if used.written {
        return (!used.gone).then_some(DataKind::Output);
    }
    used.read.then_some(DataKind::Input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{FileOp, OpenMode};

    #[test]
    fn classification_follows_the_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().as_os_str().as_bytes().to_vec();
        let file = |name: &str| {
            let mut path = base.clone();
            path.extend_from_slice(b"/");
            path.extend_from_slice(name.as_bytes());
            path
        };
        std::fs::write(OsStr::from_bytes(&file("in.csv")), b"abc").expect("write");
        std::fs::write(OsStr::from_bytes(&file("out.csv")), b"hello").expect("write");
        let mut log = AccessLog::new();
        log.record(1, FileOp::Open { path: file("in.csv"), mode: OpenMode::Read });
        log.record(1, FileOp::Open { path: file("out.tmp"), mode: OpenMode::Write });
        log.record(1, FileOp::Rename { from: file("out.tmp"), to: file("out.csv"), exchange: false });
        log.record(1, FileOp::Open { path: file("scratch"), mode: OpenMode::Write });
        log.record(1, FileOp::Remove { path: file("scratch"), dir: false });
        log.record(1, FileOp::Open { path: b"/etc/hosts".to_vec(), mode: OpenMode::Read });
        let data = classify(&log);
        assert_eq!(data.inputs, vec![DataFile { path: file("in.csv"), size: Some(3) }]);
        assert_eq!(data.outputs, vec![DataFile { path: file("out.csv"), size: Some(5) }]);
    }
}
