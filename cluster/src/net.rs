//! The simulated network: one "switch" namespace holding a bridge, and one
//! namespace per host joined to it by a veth pair (`eth0` in the host, `vN`
//! in the switch). Addresses live only inside those namespaces; nothing is
//! added to the root namespace, and there is no default route.

use std::{
    collections::BTreeSet, fs, net::Ipv4Addr, os::unix::fs::MetadataExt, path::PathBuf, process::Command, sync::Mutex,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::process::run_quick;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// `ip` commands are quick; this only bounds a hung one.
const IP_LIMIT: Duration = Duration::from_secs(20);
/// The bridge in the switch namespace.
const BRIDGE: &str = "br0";
/// The interface of a host inside its namespace.
pub(crate) const HOST_INTERFACE: &str = "eth0";

/// Runs `ip ARGS…`, which must succeed.
fn ip(args: &[&str]) -> Result<String> {
    run_quick(Command::new("ip").args(args), IP_LIMIT)
        .with_context(|| format!("`ip {}` failed (is iproute2 installed, and are we root?)", args.join(" ")))
}

/// The file `ip netns` bind-mounts a namespace on.
pub(crate) fn namespace_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether `ip netns` has a namespace of that name.
pub(crate) fn namespace_exists(name: &str) -> bool {
    namespace_path(name).exists()
}

/// The namespace's identity as `/proc/PID/ns/net` shows it (device, inode),
/// while `ip netns` still has it.
pub(crate) fn namespace_id(name: &str) -> Option<(u64, u64)> {
    let meta = fs::metadata(namespace_path(name)).ok()?;
    // A name whose bind mount is gone is a plain file of /run's tmpfs: its
    // inode would match no process, but say so plainly.
    (meta.dev() != fs::metadata(NETNS_DIR).ok()?.dev()).then(|| (meta.dev(), meta.ino()))
}

/// The names `ip netns list` shows.
pub(crate) fn list_namespaces() -> Result<Vec<String>> {
    let listing = ip(&["netns", "list"])?;
    // Lines are `NAME` or `NAME (id: N)`.
    Ok(listing.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_string).collect())
}

/// Creates an empty network namespace.
pub(crate) fn add_namespace(name: &str) -> Result<()> {
    ip(&["netns", "add", name]).map(drop)
}

/// Deletes a namespace if `ip netns` has it.
pub(crate) fn delete_namespace(name: &str) -> Result<()> {
    if namespace_exists(name) {
        ip(&["netns", "delete", name])?;
    }
    Ok(())
}

/// Makes `switch` a switch: loopback up, and a bridge that is up.
pub(crate) fn make_switch(switch: &str) -> Result<()> {
    ip(&["-n", switch, "link", "set", "lo", "up"])?;
    ip(&["-n", switch, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", switch, "link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// Joins namespace `host` to the switch through a veth pair (`port` on the
/// bridge, `eth0` in the host) and gives the host `address`/24.
pub(crate) fn plug(switch: &str, port: &str, host: &str, address: Ipv4Addr) -> Result<()> {
    // Created in the switch namespace with its peer straight in the host's:
    // neither end ever exists in the root namespace.
    ip(&["-n", switch, "link", "add", port, "type", "veth", "peer", "name", HOST_INTERFACE, "netns", host])?;
    ip(&["-n", switch, "link", "set", port, "master", BRIDGE])?;
    ip(&["-n", switch, "link", "set", port, "up"])?;
    ip(&["-n", host, "link", "set", "lo", "up"])?;
    ip(&["-n", host, "addr", "add", &format!("{address}/24"), "dev", HOST_INTERFACE])?;
    ip(&["-n", host, "link", "set", HOST_INTERFACE, "up"])?;
    Ok(())
}

/// Subnets 10.233.N.0/24 taken by clusters of this process.
static LEASED: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

/// A 10.233.N.0/24 subnet held for one cluster of this process; given back
/// when dropped.
#[derive(Debug)]
pub(crate) struct Lease(u8);

impl Lease {
    /// Address `10.233.N.host`.
    pub(crate) fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 233, self.0, host)
    }

    /// `10.233.N.0/24`.
    pub(crate) fn subnet(&self) -> String {
        format!("{}/24", self.address(0))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        LEASED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.0);
    }
}

/// Picks a 10.233.N.0/24 that no cluster of this process holds and no
/// existing namespace has an address in, starting the search at `seed`.
///
/// Clusters of different processes could still pick the same N at the same
/// moment; that is harmless (each cluster has a switch of its own, so the
/// networks never meet), only confusing to read.
pub(crate) fn lease_subnet(seed: u32) -> Result<Lease> {
    let mut used = BTreeSet::new();
    for namespace in list_namespaces()? {
        // A namespace may vanish meanwhile: skip it.
        let Ok(addresses) = ip(&["-n", &namespace, "-4", "-o", "addr", "show"]) else { continue };
        for word in addresses.split_whitespace() {
            let mut octets = word.split(['.', '/']);
            if let (Some("10"), Some("233"), Some(third)) = (octets.next(), octets.next(), octets.next()) {
                if let Ok(third) = third.parse::<u8>() {
                    used.insert(third);
                }
            }
        }
    }
    let mut leased = LEASED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for step in 0..254 {
        let n = ((seed % 254 + step) % 254 + 1) as u8;
        if !used.contains(&n) && !leased.contains(&n) {
            leased.insert(n);
            return Ok(Lease(n));
        }
    }
    bail!(
        "every subnet 10.233.1-254.0/24 is in use by a network namespace: `ip netns list` shows them; stale \
         clusters go with `cargo xtask cluster down --state DIR` or `ip netns delete NAME`"
    )
}
