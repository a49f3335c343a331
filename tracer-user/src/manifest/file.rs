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

/// A new file whose bytes the kernel starts writing to disk as soon as they
/// are written, so that the `fsync` after the last waits for little more
/// than the last: the disk works while the rest of the JSON is made (as dpkg
/// does before its `fsync`s). A manifest of 2,000 files (770 kB) waited
/// 1.4–3.5 ms for its `fsync` after its 1 ms of JSON. Written
/// [`WRITE_BYTES`] at a time.
struct WritebackStarted<'a> {
    file: &'a mut std::fs::File,
    /// Bytes written so far: where the next write lands.
    written: u64,
}

/// How much of a manifest is written (and its writeback started) at a time:
/// each start is a request to the disk, which a virtual machine pays for
/// with an exit to its host. 256 KiB, not 64: 0.4 ms less from a 770 kB
/// manifest's JSON to its rename (medians of 25 audits on a virtual AMD
/// host; 128 KiB the same, writing it all before its `fsync` 0.1 ms more).
const WRITE_BYTES: usize = 1 << 18;

impl Write for WritebackStarted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        let count = self.file.write(buf)?;
        let (Ok(offset), Ok(len)) = (i64::try_from(self.written), i64::try_from(count)) else { return Ok(count) };
        // SAFETY: plain integers for an open descriptor; no memory is shared.
        // A hint: what it cannot start, the `fsync` after writes anyway.
        let _ = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Manifest {
    /// Refuses, before anything runs, a path the manifest could not be
    /// written to: a directory, in a directory that is missing, or one where
    /// no file can be made (read-only, not the user's). Better now than
    /// after an hour of tracing.
    pub fn check_writable(path: &Path) -> Result<(), ManifestError> {
        let fail = |source| ManifestError::Write { path: path.to_path_buf(), source };
        if std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir()) {
            return Err(fail(std::io::Error::other("it is a directory: give -o the path of a file")));
        }
        if is_special(path) {
            return open_special(path).map(drop).map_err(fail);
        }
        let dir = directory_of(path);
        if !dir.is_dir() {
            let missing = format!("the directory {} does not exist: create it first", dir.display());
            return Err(fail(std::io::Error::other(missing)));
        }
        tempfile::Builder::new().prefix(".reprotrace-").tempfile_in(dir).map(drop).map_err(|err| fail(os_error(err)))
    }

    /// Writes the manifest atomically: a temporary file beside the target,
    /// flushed to disk, then renamed over it. A reader never sees half a file.
    /// A device or a pipe (`/dev/null`, `/dev/stdout`) is written to as it is.
    pub fn write_atomically(&self, path: &Path) -> Result<(), ManifestError> {
        let fail = |source| ManifestError::Write { path: path.to_path_buf(), source };
        if is_special(path) {
            let mut file = open_special(path).map_err(fail)?;
            return self.write_json(&mut file).map_err(fail);
        }
        let mut temp = tempfile::Builder::new()
            .prefix(".reprotrace-")
            .suffix(".json.tmp")
            .tempfile_in(directory_of(path))
            .map_err(|err| fail(os_error(err)))?;
        self.write_new(temp.as_file_mut()).map_err(fail)?;
        temp.persist(path).map_err(|err| fail(err.error))?;
        Ok(())
    }

    /// Writes the manifest where a failed write leaves it (see
    /// [`Manifest::write_atomically`]): a new file `reprotrace-unsaved-*.json`
    /// in `$TMPDIR` (else `/tmp`); returns its path.
    pub fn write_unsaved(&self) -> Result<PathBuf, ManifestError> {
        let dir = std::env::temp_dir();
        let fail = |source| ManifestError::Write { path: dir.join("reprotrace-unsaved-*.json"), source };
        let mut temp = tempfile::Builder::new()
            .prefix("reprotrace-unsaved-")
            .suffix(".json")
            .tempfile_in(&dir)
            .map_err(|err| fail(os_error(err)))?;
        self.write_new(temp.as_file_mut()).map_err(fail)?;
        let (_, path) = temp.keep().map_err(|err| fail(err.error))?;
        Ok(path)
    }

    /// The manifest in a file just made, on disk, with the mode of any file
    /// the user makes: 0666 less the umask (a temporary file is 0600).
    fn write_new(&self, file: &mut std::fs::File) -> std::io::Result<()> {
        let umask = rustix::process::umask(rustix::fs::Mode::empty());
        rustix::process::umask(umask);
        let mode = 0o666 & !umask.bits();
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        self.write_json(&mut WritebackStarted { file, written: 0 })?;
        file.sync_all()
    }

    fn write_json(&self, file: &mut impl Write) -> std::io::Result<()> {
        // Buffered: serde writes a token at a time.
        let mut writer = std::io::BufWriter::with_capacity(WRITE_BYTES, file);
        serde_json::to_writer_pretty(&mut writer, self)?;
        writer.write_all(b"\n")?;
        writer.flush()
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

/// Whether `path` (followed) is neither a regular file nor a directory: a
/// device, a pipe, written to in place.
fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| !metadata.is_file() && !metadata.is_dir())
}

/// Opens a device or a pipe to write to; a pipe no one reads is refused
/// rather than waited for.
fn open_special(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    // Blocking again: a reader that is slow is waited for.
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty())?;
    Ok(file)
}

/// The system's error alone: tempfile's errors add ` at path "…"`, the
/// temporary file's name, which says nothing to the user (and tempfile
/// keeps the original error private).
fn os_error(err: std::io::Error) -> std::io::Error {
    match err.to_string().split_once(" at path ") {
        Some((system, _)) => std::io::Error::new(err.kind(), system.to_string()),
        None => err,
    }
}

/// The directory a file at `path` goes in.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
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
