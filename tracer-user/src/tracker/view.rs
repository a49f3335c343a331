//! How a task sees the file system, and how that maps to the auditor's view:
//! its root directory (chroot, pivot_root) and its mount namespace (unshare,
//! clone and setns with `CLONE_NEWNS`, then mount, umount and move_mount).
//!
//! Paths inside the tracker are in *namespace coordinates*: absolute paths in
//! the task's mount namespace. A task's root is such a path too (`/` unless it
//! chroot'ed). [`MountTable::to_host`] turns one into the path the auditor
//! (reprotrace, in its own namespace) reaches the same file by:
//! - in reprotrace's namespace or one the tree made, the path through the
//!   bind mounts the tree made there (`mount --bind /data/real /mnt` makes
//!   `/mnt/x` be `/data/real/x`), itself if no mount covers it (a new
//!   namespace starts as a copy of its parent's). Also in reprotrace's own
//!   namespace: the mount may be gone by the time files are hashed, and the
//!   path would then name whatever it covered;
//! - below any other mount made there (a tmpfs, an overlay, a `move_mount`),
//!   or in a namespace joined with `setns`, nowhere: the auditor cannot reach
//!   it by any path (or, in its own namespace, not once the mount is gone),
//!   and the manifest says the file was seen in another namespace rather than
//!   hash whatever sits at that path on the host.

use std::{cell::RefCell, rc::Rc};

use super::path::{is_under, resolve};

/// The mount namespace a task is in, shared by every task in it.
pub type SharedMounts = Rc<RefCell<MountTable>>;

/// Identifies a mount namespace the auditor cannot see into: the process that
/// entered or made it.
pub type NamespaceId = u32;

/// A mount namespace as far as the trace tells.
#[derive(Clone, Debug, Default)]
pub struct MountTable {
    /// `None`: reprotrace's own namespace (or a copy of it, so far).
    /// `Some(id)`: a namespace the trace made or joined.
    id: Option<NamespaceId>,
    /// Joined with setns: nothing about it is known.
    unknown: bool,
    /// Mounts made in it, in order: the deepest one covering a path shows
    /// there, the last one of those on the same directory.
    mounts: Vec<Mount>,
}

#[derive(Clone, Debug)]
struct Mount {
    /// Where it is mounted, in namespace coordinates.
    target: Vec<u8>,
    /// What shows there: a host directory (bind mount), or nothing the
    /// auditor can reach.
    source: Option<Vec<u8>>,
    /// The process that mounted it: the namespace a file below an opaque
    /// mount in reprotrace's own namespace is said to be in.
    by: NamespaceId,
}

/// Where a path used by a task is, for the auditor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// This path on the host.
    Host(Vec<u8>),
    /// This path in mount namespace `NamespaceId`, which the auditor cannot reach.
    Foreign(NamespaceId, Vec<u8>),
}

impl MountTable {
    /// A copy of `self` for a new namespace made by `creator` (unshare or
    /// clone with `CLONE_NEWNS`): the same mounts, from now on its own.
    pub fn copied_for(&self, creator: NamespaceId) -> MountTable {
        MountTable { id: Some(self.id.unwrap_or(creator)), ..self.clone() }
    }

    /// The namespace joined by `joiner` with setns: unknown.
    pub fn joined(joiner: NamespaceId) -> MountTable {
        MountTable { id: Some(joiner), unknown: true, mounts: Vec::new() }
    }

    /// A namespace reprotrace did not see being made (a process it attached to).
    pub fn foreign(id: NamespaceId) -> MountTable {
        Self::joined(id)
    }

    /// A bind mount of `source` (namespace coordinates) on `target`, by
    /// process `by`.
    pub fn bind(&mut self, source: &[u8], target: Vec<u8>, by: NamespaceId) {
        let source = match self.to_host(source) {
            Place::Host(host) => Some(host),
            Place::Foreign(..) => None,
        };
        self.mounts.push(Mount { target, source, by });
    }

    /// A mount on `target`, by process `by`, of something the auditor cannot
    /// reach (a new file system, a moved or detached mount).
    pub fn opaque(&mut self, target: Vec<u8>, by: NamespaceId) {
        self.mounts.push(Mount { target, source: None, by });
    }

    /// The last mount on `target` went away.
    pub fn unmount(&mut self, target: &[u8]) {
        if let Some(index) = self.mounts.iter().rposition(|mount| mount.target == target) {
            self.mounts.remove(index);
        }
    }

    /// `pivot_root(new_root, put_old)`: `new_root` becomes `/`, and what was
    /// outside it moves below `put_old` (both in the old coordinates; `put_old`
    /// lies inside `new_root`).
    pub fn pivot_root(&mut self, new_root: &[u8], put_old: &[u8]) {
        let old_root_below = relative_to(put_old, new_root);
        for mount in &mut self.mounts {
            mount.target = match relative_to(&mount.target, new_root) {
                Some(inside) => inside,
                None => resolve(&old_root_below.clone().unwrap_or_else(|| b"/".to_vec()), &mount.target[1..]),
            };
        }
        // What was `/` is now below `put_old`; what was outside every mount
        // there is the host's own tree.
        if let Some(put_old) = old_root_below {
            if let Some(id) = self.id {
                self.mounts.insert(0, Mount { target: put_old, source: Some(b"/".to_vec()), by: id });
            }
        }
        let root_mounted = self.mounts.iter().any(|mount| mount.target == b"/");
        if let (false, Some(id)) = (root_mounted, self.id) {
            // pivot_root needs `new_root` to be a mount point; one the trace
            // did not see being made is out of reach.
            self.mounts.insert(0, Mount { target: b"/".to_vec(), source: None, by: id });
        }
    }

    /// Where the file at `path` (namespace coordinates) is for the auditor.
    pub fn to_host(&self, path: &[u8]) -> Place {
        if let (Some(id), true) = (self.id, self.unknown) {
            return Place::Foreign(id, path.to_vec());
        }
        // The deepest mount covering the path shows there; of mounts on the
        // same directory, the last one.
        let covering = self
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, mount)| is_under(path, &mount.target))
            .max_by_key(|(order, mount)| (mount.target.len(), *order))
            .map(|(_, mount)| mount);
        match covering {
            None => Place::Host(path.to_vec()),
            Some(Mount { target, source: Some(source), .. }) => {
                let rest = &path[target.len()..];
                Place::Host(resolve(source, rest.strip_prefix(b"/").unwrap_or(rest)))
            }
            Some(Mount { source: None, by, .. }) => Place::Foreign(self.id.unwrap_or(*by), path.to_vec()),
        }
    }
}

/// `path` below `dir`, as an absolute path with `dir` as its root.
fn relative_to(path: &[u8], dir: &[u8]) -> Option<Vec<u8>> {
    if !is_under(path, dir) {
        return None;
    }
    let rest = &path[dir.len().min(path.len())..];
    Some(resolve(b"/", rest.strip_prefix(b"/").unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(path: &str) -> Place {
        Place::Host(path.as_bytes().to_vec())
    }

    #[test]
    fn the_auditors_namespace_and_its_copies_see_the_host() {
        let own = MountTable::default();
        assert_eq!(own.to_host(b"/data/x"), host("/data/x"));
        let mut copy = own.copied_for(40);
        assert_eq!(copy.to_host(b"/data/x"), host("/data/x"));
        copy.bind(b"/tmp/real", b"/data".to_vec(), 41);
        assert_eq!(copy.to_host(b"/data/x"), host("/tmp/real/x"));
        assert_eq!(copy.to_host(b"/data"), host("/tmp/real"));
        assert_eq!(copy.to_host(b"/database"), host("/database"));
        copy.opaque(b"/data/scratch".to_vec(), 41);
        assert_eq!(copy.to_host(b"/data/scratch/y"), Place::Foreign(40, b"/data/scratch/y".to_vec()));
        copy.unmount(b"/data/scratch");
        assert_eq!(copy.to_host(b"/data/scratch/y"), host("/tmp/real/scratch/y"));
        // A copy of a copy keeps the first namespace's mounts and its own id.
        let nested = copy.copied_for(50);
        assert_eq!(nested.to_host(b"/data/x"), host("/tmp/real/x"));
    }

    /// Mounts the tree makes in the auditor's own namespace may be gone when
    /// files are hashed: a bind mount's files are where it took them from,
    /// and those below another mount are out of reach, in the mounter's name.
    #[test]
    fn mounts_in_the_auditors_namespace_are_followed() {
        let mut own = MountTable::default();
        own.bind(b"/srv/real", b"/srv/view".to_vec(), 30);
        assert_eq!(own.to_host(b"/srv/view/in.txt"), host("/srv/real/in.txt"));
        own.opaque(b"/mnt/scratch".to_vec(), 31);
        assert_eq!(own.to_host(b"/mnt/scratch/x"), Place::Foreign(31, b"/mnt/scratch/x".to_vec()));
        own.unmount(b"/srv/view");
        assert_eq!(own.to_host(b"/srv/view/in.txt"), host("/srv/view/in.txt"));
        assert_eq!(own.to_host(b"/etc/hosts"), host("/etc/hosts"));
    }

    #[test]
    fn a_joined_namespace_is_out_of_reach() {
        assert_eq!(MountTable::joined(7).to_host(b"/etc/hosts"), Place::Foreign(7, b"/etc/hosts".to_vec()));
    }

    #[test]
    fn pivot_root_into_a_container() {
        let mut table = MountTable::default().copied_for(9);
        table.opaque(b"/var/lib/ctr/rootfs".to_vec(), 9);
        table.bind(b"/home/u/project", b"/var/lib/ctr/rootfs/work".to_vec(), 9);
        table.pivot_root(b"/var/lib/ctr/rootfs", b"/var/lib/ctr/rootfs/.old");
        assert_eq!(table.to_host(b"/work/in.csv"), host("/home/u/project/in.csv"));
        assert_eq!(table.to_host(b"/usr/bin/python3"), Place::Foreign(9, b"/usr/bin/python3".to_vec()));
        assert_eq!(table.to_host(b"/.old/etc/passwd"), host("/etc/passwd"));
    }
}
