//! Writing a manifest atomically, and reading one back: checked against the
//! schema generated from the types before it is trusted.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use super::{schema, Manifest, SCHEMA_ID};

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
    #[error("{path} is not a valid reprotrace manifest: {problems}")]
    Invalid { path: PathBuf, problems: String },
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
        // As any file the user makes: 0666 less the umask (the temporary file is 0600).
        let umask = rustix::process::umask(rustix::fs::Mode::empty());
        rustix::process::umask(umask);
        let mode = 0o666 & !umask.bits();
        temp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(fail)?;
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
        Manifest::parse(&text, path)
    }

    /// A manifest from its JSON text, checked as [`Manifest::read`] checks
    /// it; `path` says where it came from, for errors.
    pub fn parse(text: &[u8], path: &Path) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|source| ManifestError::Corrupt { path: path.to_path_buf(), source })?;
        let schema = value.get("schema").and_then(|schema| schema.as_str()).unwrap_or_default();
        if schema != SCHEMA_ID {
            return Err(ManifestError::WrongSchema { path: path.to_path_buf(), found: schema.to_string() });
        }
        let problems: Vec<String> = validator()
            .iter_errors(&value)
            .take(3)
            .map(|error| format!("{} (at {})", error, error.instance_path))
            .collect();
        if !problems.is_empty() {
            return Err(ManifestError::Invalid { path: path.to_path_buf(), problems: problems.join("; ") });
        }
        serde_json::from_value(value).map_err(|source| ManifestError::Corrupt { path: path.to_path_buf(), source })
    }
}

/// The validator of [`schema`], compiled once.
fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        // The schema is generated from our own types: failing to compile it is
        // a bug of this build, caught by the tests.
        #[allow(clippy::expect_used)]
        jsonschema::validator_for(&schema()).expect("the generated manifest schema compiles")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_foreign_and_invalid_files_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.json");
        std::fs::write(&path, b"{\"schema\": \"reprotrace/manifest/v1\", \"backend\": ").expect("write");
        let err = Manifest::read(&path).expect_err("truncated");
        assert!(err.to_string().contains("corrupt"), "{err}");
        std::fs::write(&path, b"{\"schema\": \"other\"}").expect("write");
        let err = Manifest::read(&path).expect_err("foreign");
        assert!(err.to_string().contains("schema"), "{err}");
        std::fs::write(&path, b"{\"schema\": \"reprotrace/manifest/v1\", \"backend\": \"ebpf\"}").expect("write");
        let err = Manifest::read(&path).expect_err("incomplete");
        assert!(err.to_string().contains("not a valid reprotrace manifest"), "{err}");
    }
}
