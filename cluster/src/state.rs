//! The state file, `<state_dir>/cluster.json`: every namespace and process a
//! cluster started, so that another process can tear it down.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The state file's name inside the state directory.
pub(crate) const STATE_FILE: &str = "cluster.json";
/// Bumped when the file's meaning changes.
const FORMAT: u32 = 1;

/// What a cluster started, as written to the state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct State {
    pub format: u32,
    /// Every namespace name starts with `<prefix>-`.
    pub prefix: String,
    pub subnet: String,
    pub scheduler_address: String,
    /// In creation order (the switch first); deleted in reverse.
    pub namespaces: Vec<String>,
    /// The spec's hosts, then the scheduler and manager hosts.
    pub hosts: Vec<HostRecord>,
    /// In start order.
    pub processes: Vec<ProcRecord>,
}

/// One simulated host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HostRecord {
    /// Also its hostname.
    pub name: String,
    pub namespace: String,
    pub address: Ipv4Addr,
    pub daemon_socket: Option<PathBuf>,
}

/// What a started process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Daemon,
    Scheduler,
    Worker,
}

/// One process the cluster started (the top of its process group).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ProcRecord {
    pub kind: Kind,
    /// The worker's name; the host's name for a daemon; "scheduler".
    pub name: String,
    pub host: String,
    pub pid: u32,
    /// From `/proc/PID/stat`: tells the process from a later one with its pid.
    pub start_time: u64,
    pub log: PathBuf,
}

impl State {
    pub(crate) fn new(prefix: String, subnet: String, scheduler_address: String) -> State {
        State {
            format: FORMAT,
            prefix,
            subnet,
            scheduler_address,
            namespaces: Vec::new(),
            hosts: Vec::new(),
            processes: Vec::new(),
        }
    }

    /// Writes the state file (whole, by rename: a reader never sees half).
    pub(crate) fn save(&self, state_dir: &Path) -> Result<()> {
        let path = state_dir.join(STATE_FILE);
        let partial = state_dir.join(format!("{STATE_FILE}.partial"));
        let text = serde_json::to_string_pretty(self).context("serializing the cluster state")?;
        fs::write(&partial, text).with_context(|| format!("cannot write {}", partial.display()))?;
        fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads the state file, if there is one.
    pub(crate) fn load(state_dir: &Path) -> Result<Option<State>> {
        let path = state_dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a cluster state file (delete it if nothing runs)", path.display()))?;
        anyhow::ensure!(
            state.format == FORMAT,
            "{} has format {}, this build reads {FORMAT}: tear it down with the build that wrote it",
            path.display(),
            state.format
        );
        Ok(Some(state))
    }
}
