//! Tearing a cluster down, from its [`State`] alone: every process in its
//! namespaces or in a process group it started is stopped (SIGTERM, then
//! SIGKILL), daemons last, then its namespaces are deleted, which takes the
//! veths and the bridge with them.

use std::{
    collections::{BTreeMap, HashSet},
    process::Child,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::{
    net,
    process::{self, POLL},
    state::{Kind, State},
};

/// How long processes get to exit after SIGTERM (a nanny closes its worker;
/// a daemon detaches its programs) before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(15);
/// How long SIGKILLed processes get to be gone.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Finds the cluster's processes.
struct Census<'a> {
    state: &'a State,
    /// The cluster's namespaces that `ip netns` still has.
    namespaces: HashSet<(u64, u64)>,
}

impl Census<'_> {
    /// Running processes of the cluster, with their process group: those in
    /// its network namespaces (which covers what callers started there with
    /// `command_on`), and those in a process group the cluster started.
    fn running(&self) -> BTreeMap<u32, u32> {
        let me = std::process::id();
        process::all_pids()
            .into_iter()
            .filter(|&pid| pid != me)
            .filter_map(|pid| {
                let stat = process::stat(pid)?;
                if matches!(stat.state, 'Z' | 'X' | 'x') {
                    return None;
                }
                let in_namespace = process::netns_of(pid).is_some_and(|id| self.namespaces.contains(&id));
                (in_namespace || self.ours_as_group(stat.pgid)).then_some((pid, stat.pgid))
            })
            .collect()
    }

    /// Whether `pgid` is the group of a process the cluster started, whose
    /// leader is still that very process (same start time). A group whose
    /// leader is gone is not trusted (its number may be someone else's by
    /// now); its members in the cluster's namespaces are found by those.
    fn ours_as_group(&self, pgid: u32) -> bool {
        self.state.processes.iter().any(|record| {
            record.pid == pgid && process::stat(pgid).is_some_and(|leader| leader.start_time == record.start_time)
        })
    }

    /// Whether a process (with its group) is, or was started by, a process of that kind.
    fn is(&self, kind: Kind, pid: u32, pgid: u32) -> bool {
        self.state.processes.iter().any(|record| record.kind == kind && (record.pid == pid || record.pid == pgid))
    }
}

/// Reaps the children of ours that have exited, so they leave no zombies.
fn reap(children: &mut Vec<Child>) {
    children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
}

/// Signals the processes `select` picks with SIGTERM, and SIGKILL when they
/// outlast [`TERM_GRACE`]; returns those still running after [`KILL_GRACE`].
fn stop(census: &Census, children: &mut Vec<Child>, select: impl Fn(u32, u32) -> bool) -> BTreeMap<u32, u32> {
    let targets = || census.running().into_iter().filter(|&(pid, pgid)| select(pid, pgid)).collect::<BTreeMap<_, _>>();
    for (signal, grace) in [(libc::SIGTERM, TERM_GRACE), (libc::SIGKILL, KILL_GRACE)] {
        let mut signalled = HashSet::new();
        let deadline = Instant::now() + grace;
        loop {
            reap(children);
            let left = targets();
            if left.is_empty() {
                return left;
            }
            // Newcomers too (a nanny restarting its worker).
            for &pid in left.keys() {
                if signalled.insert(pid) {
                    process::signal(pid, signal);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(POLL);
        }
    }
    reap(children);
    targets()
}

/// Stops every process of the cluster and deletes its namespaces. Goes on
/// after a failure, so that as much as possible is gone, and reports every
/// failure at the end.
pub(crate) fn teardown(state: &State, children: &mut Vec<Child>) -> Result<()> {
    let census =
        Census { state, namespaces: state.namespaces.iter().filter_map(|name| net::namespace_id(name)).collect() };
    let mut problems = Vec::new();
    // Workers and whatever else runs on the hosts first, while the scheduler
    // is there to say goodbye to (a worker without a nanny takes long to
    // close without it) and the daemons still serve their audits; then the
    // scheduler; then the daemons.
    stop(&census, children, |pid, pgid| !census.is(Kind::Daemon, pid, pgid) && !census.is(Kind::Scheduler, pid, pgid));
    stop(&census, children, |pid, pgid| !census.is(Kind::Daemon, pid, pgid));
    let left = stop(&census, children, |_, _| true);
    if !left.is_empty() {
        let listed: Vec<String> = left.keys().map(|&pid| format!("{pid} ({})", process::comm(pid))).collect();
        problems.push(format!(
            "processes survived SIGKILL (stuck in the kernel?): {}; look at `cat /proc/PID/stack`",
            listed.join(", ")
        ));
    }
    // Hosts before the switch: a host's namespace takes its veth pair along.
    for name in state.namespaces.iter().rev() {
        if let Err(err) = net::delete_namespace(name) {
            problems.push(format!("cannot delete network namespace {name}: {err:#}; try `ip netns delete {name}`"));
        }
    }
    match net::list_namespaces() {
        Ok(names) => {
            let left: Vec<&String> = names.iter().filter(|name| state.namespaces.contains(name)).collect();
            if !left.is_empty() {
                problems.push(format!("network namespaces are still there: {left:?}"));
            }
        }
        Err(err) => problems.push(format!("cannot list the network namespaces: {err:#}")),
    }
    if !problems.is_empty() {
        bail!("tearing down cluster {} left things behind:\n  {}", state.prefix, problems.join("\n  "));
    }
    Ok(())
}
