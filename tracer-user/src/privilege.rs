//! Acting with the invoking user's rights. reprotrace runs as root (under
//! sudo) on behalf of a user: what it reads, hashes and writes for that user
//! (the manifest, the data's hashes, bundles, exports, reports) it reads and
//! writes as that user, so that no path the user controls is followed with
//! root's rights and no root-only file leaks into the user's manifest.
//!
//! The credentials are the calling thread's own (raw `setres[ug]id`, not
//! glibc's process-wide wrappers), and threads it starts meanwhile inherit
//! them: the hashing threads act as the user too, and nothing else changes.

use rustix::{
    process::{getegid, geteuid, getgroups, Gid, Uid},
    thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid},
};

use crate::launch::Credentials;

/// While alive, the calling thread (and the threads it starts) acts as the
/// user; dropping it restores root's rights.
pub struct ActingAs {
    euid: Uid,
    egid: Gid,
    groups: Vec<Gid>,
}

impl ActingAs {
    /// Acts as `owner` from now on (group list, group, then user).
    pub fn user(owner: &Credentials) -> std::io::Result<ActingAs> {
        let saved = ActingAs { euid: geteuid(), egid: getegid(), groups: getgroups()? };
        let groups: Vec<Gid> = owner.groups.iter().map(|&gid| Gid::from_raw(gid)).collect();
        set_thread_groups(&groups)?;
        set_thread_res_gid(None, Some(Gid::from_raw(owner.gid)), None)?;
        // The saved uid stays root's, to come back.
        set_thread_res_uid(None, Some(Uid::from_raw(owner.uid)), None)?;
        Ok(saved)
    }

    /// Acts as `owner` when there is one (under sudo), else changes nothing.
    pub fn maybe(owner: Option<&Credentials>) -> std::io::Result<Option<ActingAs>> {
        owner.map(ActingAs::user).transpose()
    }
}

impl Drop for ActingAs {
    fn drop(&mut self) {
        // Back to root first: only root may set the others back.
        let restored = set_thread_res_uid(None, Some(self.euid), None)
            .and_then(|()| set_thread_res_gid(None, Some(self.egid), None))
            .and_then(|()| set_thread_groups(&self.groups));
        if let Err(err) = restored {
            // Continuing with the user's rights is safe; with mixed ones, not.
            eprintln!("reprotrace: error: could not take back root's rights: {err}");
            std::process::exit(125);
        }
    }
}

/// The uids of task `tid` (real, effective, saved, file system), from
/// `/proc`; `None` when it is gone.
pub fn uids_of(tid: u32) -> Option<[u32; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    let uids: Vec<u32> = uids.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    uids.try_into().ok()
}

/// Whether every uid of task `tid` is `uid`: what ptrace asks of a user
/// tracing a process.
pub fn owned_by(tid: u32, uid: u32) -> bool {
    uids_of(tid).is_some_and(|uids| uids.iter().all(|&task_uid| task_uid == uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_acts_as_the_user_and_comes_back() {
        if !geteuid().is_root() {
            return;
        }
        // nobody/nogroup on Debian.
        let nobody = Credentials { user: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534] };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only").expect("secret");
        std::thread::spawn(move || {
            {
                let _acting = ActingAs::user(&nobody).expect("act as nobody");
                assert_eq!(geteuid().as_raw(), 65534);
                assert!(std::fs::read(&secret).is_err(), "nobody cannot read it");
                // Threads started now act as the user too.
                let secret_again = secret.clone();
                assert!(std::thread::spawn(move || std::fs::read(secret_again).is_err()).join().expect("thread"));
            }
            assert!(geteuid().is_root());
            assert_eq!(std::fs::read(&secret).expect("root reads it"), b"root only");
        })
        .join()
        .expect("thread");
        assert!(geteuid().is_root(), "other threads never changed");
    }
}
