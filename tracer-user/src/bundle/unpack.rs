//! `reprotrace repeat`'s first step: a bundle unpacked into a root that holds
//! only its files, at their paths. Every content is checked against its name;
//! every path is made with `openat2(RESOLVE_IN_ROOT)`, so that no link in the
//! bundle can make it write outside the root.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs::File,
    io::{Read, Write},
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use rustix::fs::{
    fchmod, fchown, futimens, mkdirat, openat, openat2, symlinkat, utimensat, AtFlags, Gid, Mode, OFlags, ResolveFlags,
    Timespec, Timestamps, Uid, CWD,
};
use sha2::{Digest, Sha256};

use super::{BundleError, Entry, Header, Index, Kind, FORMAT};
use crate::manifest::{bytes_of_display, Manifest};

/// What a bundle held besides its files.
#[derive(Debug)]
pub struct Unpacked {
    pub header: Header,
    pub manifest: Manifest,
    pub index: Index,
    /// Files the bundle gave a setuid or setgid bit: made without it (a
    /// bundle may come from anyone, and as root without sudo the owners are
    /// restored: an unpacked root must not hold a program that runs with
    /// root's rights for whoever starts it).
    pub setid_stripped: Vec<String>,
}

/// The set-user-ID and set-group-ID bits, never restored from a bundle.
const SETID_BITS: u32 = 0o6000;

/// `bundle.json` alone (the tar's first member): what part of a run the
/// bundle holds, read before anything is unpacked.
pub fn read_header(bundle: &Path) -> Result<Header, BundleError> {
    let corrupt = |reason: String| BundleError::Corrupt(bundle.to_path_buf(), reason);
    let file = File::open(bundle).map_err(|err| corrupt(err.to_string()))?;
    let decoder = zstd::Decoder::new(file).map_err(|err| corrupt(err.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(|err| corrupt(err.to_string()))?;
    let mut first =
        entries.next().ok_or_else(|| corrupt("it is empty".into()))?.map_err(|err| corrupt(err.to_string()))?;
    let name = first.path().map_err(|err| corrupt(err.to_string()))?.to_string_lossy().into_owned();
    if name != "bundle.json" {
        return Err(corrupt(format!("it starts with {name:?}, not bundle.json")));
    }
    let header = json::<Header>(&mut first).map_err(corrupt)?;
    if header.format != FORMAT {
        return Err(corrupt(format!("format {:?}, this reprotrace reads {FORMAT:?}", header.format)));
    }
    Ok(header)
}

/// Unpacks `bundle` into `root` (made here; it must not exist), its contents
/// staged in `root`'s parent meanwhile; the staging directory is removed
/// whether or not unpacking succeeds.
pub fn unpack(bundle: &Path, root: &Path) -> Result<Unpacked, BundleError> {
    let staging = root.with_extension("objects");
    std::fs::create_dir_all(&staging).map_err(unpack_error(&staging))?;
    let unpacked = unpack_staged(bundle, root, &staging);
    let removed = std::fs::remove_dir_all(&staging).map_err(unpack_error(&staging));
    // The unpacking's own error first: it says what is wrong with the bundle.
    let unpacked = unpacked?;
    removed?;
    Ok(unpacked)
}

fn unpack_error(path: &Path) -> impl Fn(std::io::Error) -> BundleError {
    let path = path.display().to_string();
    move |source| BundleError::Unpack { path: path.clone(), source }
}

fn unpack_staged(bundle: &Path, root: &Path, staging: &Path) -> Result<Unpacked, BundleError> {
    let corrupt = |reason: String| BundleError::Corrupt(bundle.to_path_buf(), reason);
    let file = File::open(bundle).map_err(|err| corrupt(err.to_string()))?;
    let decoder = zstd::Decoder::new(file).map_err(|err| corrupt(err.to_string()))?;
    let mut archive = tar::Archive::new(decoder);
    let (mut header, mut manifest, mut index) = (None, None, None);
    let mut objects: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in archive.entries().map_err(|err| corrupt(err.to_string()))? {
        let mut entry = entry.map_err(|err| corrupt(err.to_string()))?;
        let name = entry.path().map_err(|err| corrupt(err.to_string()))?.to_string_lossy().into_owned();
        match name.as_str() {
            "bundle.json" => header = Some(json::<Header>(&mut entry).map_err(corrupt)?),
            "manifest.json" => {
                let mut text = Vec::new();
                entry.read_to_end(&mut text).map_err(|err| corrupt(err.to_string()))?;
                manifest = Some(Manifest::parse(&text, bundle).map_err(|err| corrupt(err.to_string()))?);
            }
            "index.json" => index = Some(json::<Index>(&mut entry).map_err(corrupt)?),
            _ => {
                let Some(sha256) = name.strip_prefix("objects/") else { continue };
                if sha256.len() != 64 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                    return Err(corrupt(format!("an object named {name:?}")));
                }
                let path = staging.join(sha256);
                let copied = copy_hashing(&mut entry, &path).map_err(|err| corrupt(err.to_string()))?;
                if copied != sha256 {
                    return Err(corrupt(format!("the content of {name} does not match its name")));
                }
                objects.insert(sha256.to_string(), path);
            }
        }
    }
    let header = header.ok_or_else(|| corrupt("no bundle.json".into()))?;
    if header.format != FORMAT {
        return Err(corrupt(format!("format {:?}, this reprotrace reads {FORMAT:?}", header.format)));
    }
    let manifest = manifest.ok_or_else(|| corrupt("no manifest.json".into()))?;
    let index = index.ok_or_else(|| corrupt("no index.json: the bundle is truncated".into()))?;
    std::fs::create_dir(root).map_err(unpack_error(root))?;
    let root_fd = openat(CWD, root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|err| unpack_error(root)(err.into()))?;
    let mut setid_stripped = Vec::new();
    for entry in &index.entries {
        // Directories lose the bits too, unreported: on a directory they only
        // choose new files' group, and Debian's own have them (/usr/local/…).
        if entry.mode & SETID_BITS != 0 && matches!(entry.kind, Kind::File { .. }) {
            setid_stripped.push(entry.path.clone());
        }
        materialize(&root_fd, entry, &objects, bundle)?;
    }
    // Directories' times last: making their entries changed them.
    for entry in index.entries.iter().rev().filter(|entry| entry.kind == Kind::Dir) {
        let (parent, name) = parent_and_name(&root_fd, entry)?;
        let _ = utimensat(&parent, OsStr::from_bytes(&name), &times(entry.mtime_ns), AtFlags::SYMLINK_NOFOLLOW);
    }
    Ok(Unpacked { header, manifest, index, setid_stripped })
}

fn json<T: serde::de::DeserializeOwned>(reader: &mut impl Read) -> Result<T, String> {
    let mut text = Vec::new();
    reader.read_to_end(&mut text).map_err(|err| err.to_string())?;
    serde_json::from_slice(&text).map_err(|err| err.to_string())
}

/// Copies `reader` to `path`; returns the hex SHA-256 of what it copied.
fn copy_hashing(reader: &mut impl Read, path: &Path) -> std::io::Result<String> {
    let mut out = File::create(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read])?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The directory holding `entry` (resolved inside the root) and its name.
fn parent_and_name(root: &OwnedFd, entry: &Entry) -> Result<(OwnedFd, Vec<u8>), BundleError> {
    let bad = |reason: &str| BundleError::Unpack {
        path: entry.path.clone(),
        source: std::io::Error::other(reason.to_string()),
    };
    let bytes = bytes_of_display(&entry.path).ok_or_else(|| bad("not a path the manifest could spell"))?;
    if bytes.first() != Some(&b'/') || bytes.split(|&byte| byte == b'/').any(|part| part == b"..") {
        return Err(bad("not a plain absolute path"));
    }
    let cut = bytes.iter().rposition(|&byte| byte == b'/').unwrap_or(0);
    let parent = if cut == 0 { b".".as_slice() } else { &bytes[1..cut] };
    let parent_fd = openat2(
        root,
        OsStr::from_bytes(parent),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .map_err(|err| BundleError::Unpack { path: entry.path.clone(), source: err.into() })?;
    Ok((parent_fd, bytes[cut + 1..].to_vec()))
}

fn materialize(
    root: &OwnedFd,
    entry: &Entry,
    objects: &BTreeMap<String, PathBuf>,
    bundle: &Path,
) -> Result<(), BundleError> {
    if entry.path == "/" {
        return Ok(());
    }
    let (parent, name) = parent_and_name(root, entry)?;
    let name = OsStr::from_bytes(&name);
    let fail = |source: std::io::Error| BundleError::Unpack { path: entry.path.clone(), source };
    // Permission bits and the sticky bit only: never setuid or setgid.
    let mode = Mode::from_raw_mode(entry.mode & 0o7777 & !SETID_BITS);
    let owner = (Some(Uid::from_raw(entry.uid)), Some(Gid::from_raw(entry.gid)));
    match &entry.kind {
        Kind::Dir => {
            match mkdirat(&parent, name, mode) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(err) => return Err(fail(err.into())),
            }
            let dir = openat(
                &parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|err| fail(err.into()))?;
            // Ownership only where we may give it (as root).
            let _ = fchown(&dir, owner.0, owner.1);
            fchmod(&dir, mode).map_err(|err| fail(err.into()))?;
        }
        Kind::Symlink { target } => {
            let target = bytes_of_display(target)
                .ok_or_else(|| fail(std::io::Error::other("a link target the manifest could not spell")))?;
            symlinkat(OsStr::from_bytes(&target), &parent, name).map_err(|err| fail(err.into()))?;
        }
        Kind::File { sha256, .. } => {
            let source = objects
                .get(sha256)
                .ok_or_else(|| BundleError::Corrupt(bundle.to_path_buf(), format!("no content for {}", entry.path)))?;
            let file = openat(
                &parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|err| fail(err.into()))?;
            let mut file = File::from(file);
            std::io::copy(&mut File::open(source).map_err(fail)?, &mut file).map_err(fail)?;
            let _ = fchown(&file, owner.0, owner.1);
            fchmod(&file, mode).map_err(|err| fail(err.into()))?;
            futimens(&file, &times(entry.mtime_ns)).map_err(|err| fail(err.into()))?;
        }
    }
    Ok(())
}

fn times(mtime_ns: i128) -> Timestamps {
    let at = Timespec {
        tv_sec: (mtime_ns.div_euclid(1_000_000_000)) as i64,
        tv_nsec: (mtime_ns.rem_euclid(1_000_000_000)) as _,
    };
    Timestamps { last_access: at, last_modification: at }
}
