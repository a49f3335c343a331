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
}

/// Every live process in the trees rooted at `roots` (roots first, then
/// descendants in pid order).
pub fn snapshot_trees(roots: &[u32]) -> Result<Vec<ExistingProcess>, SnapshotError> {
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
            if seen.insert(pid) {
                order.push(pid);
                stack.extend(children.get(&pid).into_iter().flatten().rev());
            }
        }
    }
    // A process that exits between the scan and its reading is left out.
    Ok(order.into_iter().filter_map(read_process).collect())
}

fn read_process(pid: u32) -> Option<ExistingProcess> {
    let process = Process::new(pid as i32).ok()?;
    let stat = process.stat().ok()?;
    let threads = process.tasks().ok()?.flatten().map(|task| task.tid as Tid).collect();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv = cmdline.split(|&byte| byte == 0).filter(|arg| !arg.is_empty()).map(<[u8]>::to_vec).collect();
    let files = process
        .fd()
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| match fd.target {
                    FDTarget::Path(path) if path.is_absolute() => {
                        Some((fd.fd, path.as_os_str().as_bytes().to_vec(), fd_is_cloexec(pid, fd.fd)))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
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
    fn snapshots_this_process_and_its_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let ours = std::process::id();
        let snapshot = snapshot_trees(&[ours]).expect("snapshot");
        let me = snapshot.iter().find(|p| p.pid == ours).expect("this process");
        assert!(me.threads.contains(&ours));
        assert_eq!(me.cwd, std::env::current_dir().expect("cwd").as_os_str().as_bytes());
        let path = file.path().as_os_str().as_bytes();
        assert!(me.files.iter().any(|(_, open, cloexec)| open == path && *cloexec), "{:?}", me.files);
        let sleeper = snapshot.iter().find(|p| p.pid == child.id()).expect("the child");
        assert_eq!((sleeper.ppid, sleeper.argv.clone()), (ours, vec![b"sleep".to_vec(), b"5".to_vec()]));
        child.kill().expect("kill");
        let _ = child.wait();
        assert!(matches!(snapshot_trees(&[u32::MAX - 1]), Err(SnapshotError::NoSuchProcess(_))));
    }
}
