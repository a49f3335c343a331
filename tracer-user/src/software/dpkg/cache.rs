//! The dpkg index on disk, read back instead of the database while the
//! database is what it was: the same `status` file (device, inode, size,
//! modification time), the same `info` directory (its modification time
//! changes whenever dpkg adds, replaces or removes a file list) and
//! `diversions` file, and the same usr-merge aliases.
//!
//! The file is reprotrace's own (see [`crate::cache`]). It is read as
//! untrusted bytes all the same: anything that does not parse, or does not
//! match, is ignored and the database read instead.

use std::{
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
};

use super::{SortedOwners, SystemPackage, UsrAliases, MANAGER};
use crate::cache::{put_bytes, put_i64, put_u32, Fields};

/// The cache file's name; the number changes with its layout.
const FILE_NAME: &str = "dpkg-index-v1.bin";

/// What the database was when the index was made from it.
#[derive(Debug, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// The key of the database under `admin_dir` now; `None` when its `status`
    /// or `info` cannot be examined (the caller then reads the database, which
    /// says why).
    pub fn of(admin_dir: &Path, aliases: &UsrAliases) -> Option<Key> {
        let mut key = Vec::new();
        let mut push = |value: i64| put_i64(&mut key, value);
        let status = std::fs::metadata(admin_dir.join("status")).ok()?;
        for value in
            [status.dev() as i64, status.ino() as i64, status.size() as i64, status.mtime(), status.mtime_nsec()]
        {
            push(value);
        }
        let info = std::fs::metadata(admin_dir.join("info")).ok()?;
        push(info.mtime());
        push(info.mtime_nsec());
        match std::fs::metadata(admin_dir.join("diversions")) {
            Ok(diversions) => [diversions.size() as i64, diversions.mtime(), diversions.mtime_nsec()].map(&mut push),
            Err(_) => [-1, -1, -1].map(&mut push),
        };
        put_bytes(&mut key, admin_dir.as_os_str().as_bytes());
        for (alias, target) in &aliases.pairs {
            put_bytes(&mut key, alias);
            put_bytes(&mut key, target);
        }
        Some(Key(key))
    }
}

/// The index cached in `dir` for `key`, if there is one and it is whole.
pub fn read(dir: &Path, key: &Key) -> Option<(Vec<SystemPackage>, SortedOwners)> {
    let cached = std::sync::Arc::new(crate::cache::read(dir, FILE_NAME, &key.0)?);
    let mut reader = Fields::new(cached.contents());
    let package_count = reader.u32()? as usize;
    let mut packages = Vec::with_capacity(package_count.min(1 << 20));
    for _ in 0..package_count {
        packages.push(SystemPackage {
            name: reader.text()?,
            version: reader.text()?,
            architecture: reader.text()?,
            manager: MANAGER,
        });
    }
    let owners = SortedOwners::read_in_place(&cached, &mut reader)?;
    Some((packages, owners))
}

/// Leaves the index in `dir` for `key` (a temporary file renamed into place).
pub fn write(dir: &Path, key: &Key, packages: &[SystemPackage], owners: &SortedOwners) -> std::io::Result<()> {
    let mut out = Vec::new();
    put_u32(&mut out, packages.len() as u32);
    for package in packages {
        for text in [&package.name, &package.version, &package.architecture] {
            put_bytes(&mut out, text.as_bytes());
        }
    }
    owners.put(&mut out);
    crate::cache::write(dir, FILE_NAME, &key.0, &out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::software::sorted_owners::OWNER_ENTRY_BYTES;

    fn database(dir: &Path) {
        std::fs::create_dir_all(dir.join("info")).expect("info");
        std::fs::write(
            dir.join("status"),
            "Package: dash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 0.5.12-2\n",
        )
        .expect("status");
        std::fs::write(dir.join("info/dash.list"), "/.\n/usr\n/usr/bin\n/usr/bin/dash\n").expect("list");
    }

    /// A database in `admin`, indexed and cached in `cache`: the index built
    /// and the cache's key.
    fn cached(admin: &Path, cache: &Path) -> (super::super::DpkgIndex, Key) {
        database(admin);
        let built = super::super::DpkgIndex::load(admin, Some(cache)).expect("load").expect("dpkg");
        let key = Key::of(admin, &built.aliases).expect("key");
        (built, key)
    }

    #[test]
    fn a_cached_index_answers_as_the_database_until_the_database_changes() {
        let admin = tempfile::tempdir().expect("tempdir");
        let cache = tempfile::tempdir().expect("tempdir");
        let (built, key) = cached(admin.path(), cache.path());
        assert!(cache.path().join(FILE_NAME).exists());
        let (packages, owners) = read(cache.path(), &key).expect("the cache is read back");
        assert_eq!(packages, built.packages);
        let lookups = |owners: &SortedOwners| -> Vec<(Vec<u8>, usize)> {
            owners.iter().map(|(path, owner)| (path.to_vec(), owner)).collect()
        };
        assert_eq!(lookups(&owners), lookups(&built.owners));
        assert_eq!(owners.get(b"/usr/bin/dash"), Some(0));
        assert_eq!(owners.get(b"/usr/bin"), None, "a directory is nobody's");

        // A new file list changes the key: the stale cache is not read.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(admin.path().join("info/new.list"), "/usr/bin/new\n").expect("list");
        assert!(read(cache.path(), &Key::of(admin.path(), &built.aliases).expect("key")).is_none());

        // A damaged cache is ignored, never trusted.
        let mut bytes = std::fs::read(cache.path().join(FILE_NAME)).expect("cache");
        bytes.truncate(bytes.len() - 3);
        std::fs::write(cache.path().join(FILE_NAME), bytes).expect("damage");
        assert!(read(cache.path(), &key).is_none());
    }

    #[test]
    fn an_entry_damaged_in_place_names_no_package() {
        let admin = tempfile::tempdir().expect("tempdir");
        let cache = tempfile::tempdir().expect("tempdir");
        let (_, key) = cached(admin.path(), cache.path());
        let owner_of_dash = |bytes: &[u8]| {
            std::fs::write(cache.path().join(FILE_NAME), bytes).expect("damage");
            let (packages, owners) = read(cache.path(), &key).expect("the layout is whole");
            let index = super::super::DpkgIndex { packages, aliases: UsrAliases::default(), owners };
            index.owner(b"/usr/bin/dash").map(|package| package.name.clone())
        };
        let whole = std::fs::read(cache.path().join(FILE_NAME)).expect("cache");
        assert_eq!(owner_of_dash(&whole).as_deref(), Some("dash"));
        // The last entry, `/usr/bin/dash`'s: its package, then its path, out of range.
        let last = whole.len() - OWNER_ENTRY_BYTES;
        let mut damaged = whole.clone();
        damaged[last + 8..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(owner_of_dash(&damaged), None);
        let mut damaged = whole;
        damaged[last..last + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(owner_of_dash(&damaged), None);
    }
}
