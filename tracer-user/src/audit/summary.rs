//! The lines an audit prints on stderr when it ends.

use std::path::Path;

use crate::manifest::Manifest;

pub fn print(manifest: &Manifest, output: &Path) {
    let stats = &manifest.stats;
    let outcome = match (&manifest.exit_code, &manifest.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by {signal}"),
        (None, None) => "no exit status".to_string(),
    };
    let cells = if manifest.cells.is_empty() { String::new() } else { format!("{} cells, ", manifest.cells.len()) };
    let dask = match manifest.hosts.len() {
        0 => String::new(),
        hosts => format!(
            "{} Dask tasks on {} workers of {hosts} hosts, ",
            manifest.tasks.len(),
            manifest.hosts.iter().map(|host| host.workers.len()).sum::<usize>()
        ),
    };
    eprintln!(
        "reprotrace: {} audit finished in {:.2} s ({outcome}): {} processes, {cells}{dask}{} files, {} inputs, {} outputs, \
         {} events, {} lost events",
        manifest.backend,
        stats.duration_ms as f64 / 1000.0,
        manifest.processes.len(),
        manifest.files.len(),
        manifest.data.inputs.len(),
        manifest.data.outputs.len(),
        stats.events,
        stats.lost_events,
    );
    if !stats.complete {
        let mut reasons = Vec::new();
        if stats.interrupted {
            reasons.push("the audit was interrupted before the traced processes ended".to_string());
        }
        let counted = [
            (stats.lost_events, "lost events"),
            (stats.untracked_children, "untracked children"),
            (stats.malformed_events, "malformed events"),
        ];
        reasons.extend(counted.iter().filter(|(count, _)| *count > 0).map(|(count, what)| format!("{count} {what}")));
        if stats.truncated_argvs > 0 {
            reasons.push(format!("{} argvs longer than the backend takes", stats.truncated_argvs));
        }
        if stats.ia32_processes > 0 && manifest.backend == "ebpf" {
            reasons.push(format!(
                "{} processes ran 32-bit programs, whose system calls the eBPF backend does not see (use --backend strace)",
                stats.ia32_processes
            ));
        }
        let unaudited =
            manifest.hosts.iter().flat_map(|host| &host.workers).filter(|worker| worker.unaudited.is_some()).count();
        if unaudited > 0 {
            reasons.push(format!("{unaudited} Dask workers not audited"));
        }
        if !stats.missing_work.is_empty() {
            // Each said on its own line among the warnings above.
            reasons.push(format!("{} pieces of Dask work missing (see the warnings)", stats.missing_work.len()));
        }
        if let Some(host) = manifest.hosts.iter().find(|host| !host.stats.complete && host.stats.lost_events == 0) {
            reasons.push(format!("the audit of host {} is incomplete", host.host));
        }
        if stats.unfollowed_privileged > 0 {
            reasons.push(format!(
                "{} processes not followed past a setuid or setgid program they ran (a user's audit does not see \
                 more privileged programs; audit as root to see them)",
                stats.unfollowed_privileged
            ));
        }
        if stats.unseen_io_uring_rings > 0 {
            reasons.push(format!(
                "{} io_uring instances whose requests the {} backend does not see (use the eBPF backend)",
                stats.unseen_io_uring_rings, manifest.backend
            ));
        }
        eprintln!(
            "reprotrace: warning: the manifest may be incomplete: {}{}",
            reasons.join(", "),
            if stats.lost_events > 0 { " (try a larger --ring-buffer-size)" } else { "" },
        );
    }
    let unhashed: Vec<&str> = manifest
        .data
        .inputs
        .iter()
        .chain(&manifest.data.outputs)
        .filter(|entry| entry.over_hash_limit)
        .map(|entry| entry.path.as_str())
        .collect();
    if !unhashed.is_empty() {
        eprintln!(
            "reprotrace: {} data files over the hash limit are recorded by size and mtime only \
             (--hash-limit none hashes them): {}",
            unhashed.len(),
            unhashed.join(", ")
        );
    }
    eprintln!("reprotrace: manifest written to {}", output.display());
}
