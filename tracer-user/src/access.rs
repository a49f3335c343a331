//! What each absolute path went through during the run: read, written, exec'd,
//! made, removed or renamed away, and by which processes; paths the auditor
//! cannot reach (in another mount namespace) apart.

use std::collections::{btree_map::Entry, BTreeMap};

use smallvec::SmallVec;

use crate::tracker::{view::NamespaceId, FileOp, OpenMode, Pid};

/// The history of one path, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathUse {
    /// Its contents were read (opened for reading).
    pub read: bool,
    /// Its contents were produced or changed by the run (opened for writing,
    /// truncated, made by a rename or a link).
    pub written: bool,
    /// It was exec'd.
    pub exec: bool,
    /// It was used as a directory (mkdir, rmdir, chdir).
    pub directory: bool,
    /// The run removed it or renamed it away, and did not make it again.
    pub gone: bool,
    /// It was opened with `O_CREAT`: the run may have made it.
    pub created: bool,
    /// It went away with a directory the run renamed: its contents live on
    /// under the new name, which has its history.
    pub moved: bool,
    /// Processes that used it.
    pub pids: PidSet,
}

/// The processes that used a path, sorted, held inline while they are few:
/// most paths are used by one process, and a run may use millions of paths
/// (a set of its own per path, as a `BTreeSet` is, costs some 64 bytes
/// more a path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PidSet(SmallVec<[Pid; 4]>);

impl PidSet {
    pub fn insert(&mut self, pid: Pid) {
        // Processes come mostly in order of their pids: usually a push.
        if self.0.last().is_some_and(|&last| last < pid) {
            self.0.push(pid);
        } else if let Err(at) = self.0.binary_search(&pid) {
            self.0.insert(at, pid);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Pid> + '_ {
        self.0.iter().copied()
    }

    /// The pids, in order.
    pub fn into_vec(self) -> Vec<Pid> {
        self.0.into_vec()
    }
}

impl Extend<Pid> for PidSet {
    fn extend<T: IntoIterator<Item = Pid>>(&mut self, pids: T) {
        for pid in pids {
            self.insert(pid);
        }
    }
}

/// Every path the run used, sorted by path bytes.
#[derive(Clone, Debug, Default)]
pub struct AccessLog {
    paths: BTreeMap<Vec<u8>, PathUse>,
    /// Paths in mount namespaces the auditor cannot see into.
    foreign: BTreeMap<(NamespaceId, Vec<u8>), PathUse>,
}

impl AccessLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, pid: Pid, op: FileOp) {
        self.record_noting_new(pid, op, &mut |_| {});
    }

    /// Records `op` on paths in mount namespace `namespace`, out of the auditor's reach.
    pub fn record_foreign(&mut self, pid: Pid, namespace: NamespaceId, op: FileOp) {
        let mut local = AccessLog::new();
        local.record(pid, op);
        for (path, used) in local.paths {
            let entry = self.foreign.entry((namespace, path)).or_default();
            entry.merge(used);
        }
    }

    /// Records `op`, and hands `first_seen` each path the log had not seen before.
    pub fn record_noting_new(&mut self, pid: Pid, op: FileOp, first_seen: &mut impl FnMut(&[u8])) {
        if let FileOp::Rename { from, to, exchange: false } = &op {
            self.move_below(pid, from, to, first_seen);
        }
        let paths = &mut self.paths;
        match op {
            FileOp::Open { path, mode, create } => {
                let entry = entry(paths, pid, path, first_seen);
                entry.created |= create;
                match mode {
                    OpenMode::Read => entry.read = true,
                    OpenMode::Write => entry.written = true,
                    OpenMode::ReadWrite => {
                        entry.read = true;
                        entry.written = true;
                    }
                    OpenMode::PathOnly => {}
                }
                if mode != OpenMode::PathOnly && mode != OpenMode::Read {
                    entry.gone = false;
                }
            }
            FileOp::Exec { path } => entry(paths, pid, path, first_seen).exec = true,
            FileOp::Metadata { path } => {
                entry(paths, pid, path, first_seen);
            }
            FileOp::Remove { path, dir } => {
                let entry = entry(paths, pid, path, first_seen);
                entry.gone = true;
                entry.directory |= dir;
            }
            FileOp::Rename { from, to, exchange } => {
                let source = entry(paths, pid, from, first_seen);
                if exchange {
                    source.written = true;
                } else {
                    source.gone = true;
                }
                let target = entry(paths, pid, to, first_seen);
                target.written = true;
                target.gone = false;
            }
            FileOp::Mkdir { path } => {
                let entry = entry(paths, pid, path, first_seen);
                entry.directory = true;
                entry.gone = false;
            }
            FileOp::Link { path } | FileOp::Truncate { path } => {
                let entry = entry(paths, pid, path, first_seen);
                entry.written = true;
                entry.gone = false;
            }
            FileOp::Chdir { path } => entry(paths, pid, path, first_seen).directory = true,
        }
    }

    /// A directory `from` became `to`: what the log knows below it moved too.
    fn move_below(&mut self, pid: Pid, from: &[u8], to: &[u8], first_seen: &mut impl FnMut(&[u8])) {
        let mut below = from.to_vec();
        below.push(b'/');
        let moved: Vec<(Vec<u8>, PathUse)> = self
            .paths
            .range_mut(below.clone()..)
            .take_while(|(path, _)| path.starts_with(&below))
            .filter(|(_, used)| !used.gone)
            .map(|(path, used)| {
                let before = used.clone();
                used.gone = true;
                used.moved = true;
                (path.clone(), before)
            })
            .collect();
        for (path, before) in moved {
            let renamed = [to, &path[from.len()..]].concat();
            let entry = entry(&mut self.paths, pid, renamed, first_seen);
            entry.merge(before);
            entry.gone = false;
        }
    }

    /// Paths and their history, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &PathUse)> {
        self.paths.iter().map(|(path, used)| (path.as_slice(), used))
    }

    /// Paths in mount namespaces the auditor cannot see into, and their history.
    pub fn foreign(&self) -> impl Iterator<Item = (NamespaceId, &[u8], &PathUse)> {
        self.foreign.iter().map(|((namespace, path), used)| (*namespace, path.as_slice(), used))
    }

    /// Every path and its history, the host's sorted by path, then those
    /// out of reach (`Some` namespace), sorted by namespace and path.
    pub fn into_entries(self) -> impl Iterator<Item = (Option<NamespaceId>, Vec<u8>, PathUse)> {
        let foreign = self.foreign.into_iter().map(|((namespace, path), used)| (Some(namespace), path, used));
        self.paths.into_iter().map(|(path, used)| (None, path, used)).chain(foreign)
    }

    pub fn len(&self) -> usize {
        self.paths.len() + self.foreign.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.foreign.is_empty()
    }
}

impl PathUse {
    /// Folds `other`'s history into this one's.
    fn merge(&mut self, other: PathUse) {
        self.read |= other.read;
        self.written |= other.written;
        self.exec |= other.exec;
        self.directory |= other.directory;
        self.gone = other.gone;
        self.created |= other.created;
        self.moved |= other.moved;
        self.pids.extend(other.pids.iter());
    }
}

fn entry<'a>(
    paths: &'a mut BTreeMap<Vec<u8>, PathUse>,
    pid: Pid,
    path: Vec<u8>,
    first_seen: &mut impl FnMut(&[u8]),
) -> &'a mut PathUse {
    let entry = match paths.entry(path) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(new) => {
            first_seen(new.key());
            new.insert(PathUse::default())
        }
    };
    entry.pids.insert(pid);
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<u8> {
        p.as_bytes().to_vec()
    }

    #[test]
    fn atomic_save_leaves_only_the_target_written() {
        let mut log = AccessLog::new();
        log.record(1, FileOp::Open { path: path("/w/out.tmp"), mode: OpenMode::Write, create: true });
        log.record(1, FileOp::Rename { from: path("/w/out.tmp"), to: path("/w/out"), exchange: false });
        let uses: BTreeMap<_, _> = log.iter().collect();
        assert!(uses[&b"/w/out.tmp"[..]].gone);
        assert!(uses[&b"/w/out"[..]].written && !uses[&b"/w/out"[..]].gone);
    }

    #[test]
    fn a_paths_processes_stay_sorted_and_distinct() {
        let mut pids = PidSet::default();
        // Past the four held inline too.
        pids.extend([5, 3, 5, 9, 1, 3, 12, 7, 12, 2]);
        assert_eq!(pids.iter().collect::<Vec<_>>(), [1, 2, 3, 5, 7, 9, 12]);
        assert_eq!(pids.into_vec(), [1, 2, 3, 5, 7, 9, 12]);
    }

    #[test]
    fn removed_then_recreated_is_present() {
        let mut log = AccessLog::new();
        log.record(1, FileOp::Remove { path: path("/w/f"), dir: false });
        log.record(2, FileOp::Open { path: path("/w/f"), mode: OpenMode::Write, create: true });
        let (_, used) = log.iter().next().expect("one path");
        assert!(!used.gone && used.written);
        assert_eq!(used.pids.iter().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_renamed_directory_takes_its_files_along() {
        let mut log = AccessLog::new();
        log.record(1, FileOp::Open { path: path("/w/run/out.csv"), mode: OpenMode::Write, create: true });
        log.record(1, FileOp::Open { path: path("/w/run/in.csv"), mode: OpenMode::Read, create: false });
        log.record(1, FileOp::Rename { from: path("/w/run"), to: path("/w/done"), exchange: false });
        let uses: BTreeMap<_, _> = log.iter().collect();
        assert!(uses[&b"/w/run/out.csv"[..]].gone && uses[&b"/w/run/out.csv"[..]].moved);
        let moved = uses[&b"/w/done/out.csv"[..]];
        assert!(moved.written && !moved.gone);
        assert!(uses[&b"/w/done/in.csv"[..]].read);
        // `/w/running` is not below `/w/run`.
        assert!(!uses.contains_key(&b"/w/doneing"[..]));
    }
}
