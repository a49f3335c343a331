//! The live processes an attach starts from, read from /proc: each process of
//! the trees below the given pids, with its threads, program, arguments,
//! working directory and open files.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::ffi::OsStrExt,
};

use procfs::process::{FDTarget, Process};

use crate::event::{abi::O_CLOEXEC, ExistingProcess, Tid};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no process {0} (it does not exist, or has exited)")]
    NoSuchProcess(u32),
    #[error("cannot read /proc: {0}")]
    Proc(String),
    #[error("process {0} is this reprotrace: an audit cannot follow itself")]
    Itself(u32),
}

/// Every live process in the trees rooted at `roots` (roots first, then
/// descendants in pid order), except this process and what it started: an
/// audit started from inside the tree it follows (a Dask worker's) must not
/// trace itself.
pub fn snapshot_trees(roots: &[u32]) -> Result<Vec<ExistingProcess>, SnapshotError> {
    let myself = std::process::id();
    if roots.contains(&myself) {
        return Err(SnapshotError::Itself(myself));
    }
    // A process that exits between the scan and its reading is left out.
    Ok(tree_pids(roots, Some(myself))?.into_iter().filter_map(read_process).collect())
}

/// The pids of this process's descendants.
pub fn descendants_of_this_process() -> Result<Vec<u32>, SnapshotError> {
    let myself = std::process::id();
    Ok(tree_pids(&[myself], None)?.into_iter().filter(|&pid| pid != myself).collect())
}

/// The pids of the trees rooted at `roots`, roots first, without `excluded`
/// and its descendants.
fn tree_pids(roots: &[u32], excluded: Option<u32>) -> Result<Vec<u32>, SnapshotError> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let all = procfs::process::all_processes().map_err(|err| SnapshotError::Proc(err.to_string()))?;
    let mut alive = BTreeSet::new();
    for process in all.flatten() {
        let Ok(stat) = process.stat() else { continue };
        alive.insert(stat.pid as u32);
        children.entry(stat.ppid as u32).or_default().push(stat.pid as u32);
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for &root in roots {
        if !alive.contains(&root) {
            return Err(SnapshotError::NoSuchProcess(root));
        }
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            if Some(pid) != excluded && seen.insert(pid) {
                order.push(pid);
                stack.extend(children.get(&pid).into_iter().flatten().rev());
            }
        }
    }
    Ok(order)
}

fn read_process(pid: u32) -> Option<ExistingProcess> {
    let process = Process::new(pid as i32).ok()?;
    let stat = process.stat().ok()?;
    let threads = process.tasks().ok()?.flatten().map(|task| task.tid as Tid).collect();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv = cmdline.split(|&byte| byte == 0).filter(|arg| !arg.is_empty()).map(<[u8]>::to_vec).collect();
    let fds: Vec<_> = process.fd().map(|fds| fds.flatten().collect()).unwrap_or_default();
    let io_uring_rings =
        fds.iter().filter(|fd| matches!(&fd.target, FDTarget::AnonInode(kind) if kind == "[io_uring]")).count() as u64;
    let files = fds
        .into_iter()
        .filter_map(|fd| match fd.target {
            FDTarget::Path(path) if path.is_absolute() => {
                Some((fd.fd, path.as_os_str().as_bytes().to_vec(), fd_is_cloexec(pid, fd.fd)))
            }
            _ => None,
        })
        .collect();
    Some(ExistingProcess {
        pid,
        ppid: stat.ppid as u32,
        exe: process.exe().ok().map(|exe| exe.as_os_str().as_bytes().to_vec()),
        argv,
        cwd: process.cwd().map(|cwd| cwd.as_os_str().as_bytes().to_vec()).unwrap_or_else(|_| b"/".to_vec()),
        root: process.root().map(|root| root.as_os_str().as_bytes().to_vec()).unwrap_or_else(|_| b"/".to_vec()),
        other_mount_namespace: mount_namespace(pid) != mount_namespace(std::process::id()),
        threads,
        files,
        io_uring_rings,
    })
}

/// The mount namespace of a process (`mnt:[4026531841]`), if readable.
fn mount_namespace(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

/// Reads the `flags:` line (octal) of /proc/PID/fdinfo/FD.
fn fd_is_cloexec(pid: u32, fd: i32) -> bool {
    let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else { return false };
    info.lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u64::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & O_CLOEXEC != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_a_tree_but_never_this_process() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let stdin = std::fs::File::open(file.path()).expect("open");
        let mut child = std::process::Command::new("sleep").arg("5").stdin(stdin).spawn().expect("sleep");
        // `spawn` returns once the child has left our memory, which can be
        // before the kernel has laid out its new program's arguments (an
        // empty command line read at once after 65 of 1,500 spawns here):
        // wait for them.
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read(&cmdline).is_ok_and(|args| args.is_empty()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let ours = std::process::id();
        let snapshot = snapshot_trees(&[child.id()]).expect("snapshot");
        assert_eq!(snapshot.len(), 1);
        let sleeper = &snapshot[0];
        assert_eq!(
            (sleeper.pid, sleeper.ppid, sleeper.argv.clone()),
            (child.id(), ours, vec![b"sleep".to_vec(), b"5".to_vec()])
        );
        assert!(sleeper.threads.contains(&child.id()));
        let path = file.path().as_os_str().as_bytes();
        assert!(
            sleeper.files.iter().any(|(fd, open, cloexec)| *fd == 0 && open == path && !*cloexec),
            "{:?}",
            sleeper.files
        );
        assert!(descendants_of_this_process().expect("descendants").contains(&child.id()));
        assert!(matches!(snapshot_trees(&[ours]), Err(SnapshotError::Itself(_))));
        child.kill().expect("kill");
        let _ = child.wait();
        assert!(matches!(snapshot_trees(&[u32::MAX - 1]), Err(SnapshotError::NoSuchProcess(_))));
    }
}
