//! The page's header: the command, where and when it ran, how it ended, and
//! whether its audit is complete (and if not, why).

use std::time::Duration;

use super::{
    html::{badge, esc, grouped, human_duration, human_size, path_code, plural, shell_line, time_element, w, Esc},
    processes::exit_badge,
};
use crate::manifest::{Manifest, Stats};

/// Why an audit with these statistics may miss facts, one sentence each.
/// `backend` is the audit's, when known (32-bit programs escape eBPF only).
pub(super) fn incompleteness(stats: &Stats, backend: Option<&str>) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut count = |value: u64, what: &str| {
        if value > 0 {
            reasons.push(format!("{} {what}", grouped(value)));
        }
    };
    count(
        stats.lost_events,
        "events lost: the kernel's ring buffer was full, or it had no memory to keep a call's state",
    );
    count(
        stats.untracked_children,
        "processes not followed: the kernel's table of traced tasks was full, or it had no memory",
    );
    count(stats.malformed_events, "malformed events: not decoded, parsed or attributed");
    count(stats.truncated_argvs, "argument lists longer than the backend takes whole");
    if backend != Some("strace") {
        count(stats.ia32_processes, "32-bit processes, whose system calls the eBPF backend does not see");
    }
    count(stats.unseen_io_uring_rings, "io_uring instances whose file operations the backend cannot see");
    count(stats.unfollowed_privileged, "processes not followed past a setuid or setgid program (a user's audit)");
    reasons.extend(stats.missing_work.iter().cloned());
    reasons
}

/// The header section.
pub(super) fn header(out: &mut String, manifest: &Manifest) {
    out.push_str("<header id=\"top\">\n<h1>reprotrace report</h1>\n");
    w!(out, "<pre class=\"command\"><code>$ {}</code></pre>\n", Esc(&shell_line(&manifest.command)));
    let stats = &manifest.stats;
    let wall = super::html::between(&manifest.started_at, &manifest.finished_at);
    let mut facts: Vec<(&str, String)> = vec![
        ("Host", esc(&manifest.host)),
        ("Backend", esc(&manifest.backend)),
        ("Directory", path_code(&manifest.cwd, 60)),
        ("Started", time_element(&manifest.started_at)),
        ("Finished", time_element(&manifest.finished_at)),
        (
            "Duration",
            format!(
                "<span title=\"audited for {} ms; {} between start and finish\">{}</span>",
                stats.duration_ms,
                wall.map(human_duration).unwrap_or_else(|| "?".into()),
                human_duration(Duration::from_millis(stats.duration_ms))
            ),
        ),
        ("Exit", exit_badge(manifest.exit_code, manifest.signal.as_deref())),
        ("Events", grouped(stats.events)),
    ];
    if stats.peak_rss_kib > 0 {
        facts.push(("reprotrace's peak memory", human_size(stats.peak_rss_kib.saturating_mul(1024))));
    }
    if let Some(worker) = &manifest.dask_worker {
        let name = worker.name.as_deref().map(|name| format!(" ({})", esc(name))).unwrap_or_default();
        facts.push(("Dask worker", format!("<code>{}</code>{name}", Esc(&worker.address))));
    }
    out.push_str("<dl class=\"facts\">\n");
    for (name, value) in facts {
        w!(out, "<div><dt>{name}</dt><dd>{value}</dd></div>\n");
    }
    out.push_str("</dl>\n");
    completeness(out, manifest);
    summary(out, manifest);
    out.push_str("</header>\n");
}

/// Whether the audit saw everything, and if not what says it did not.
fn completeness(out: &mut String, manifest: &Manifest) {
    let stats = &manifest.stats;
    let mut reasons = incompleteness(stats, Some(&manifest.backend));
    for host in &manifest.hosts {
        let mut unaudited = false;
        for worker in &host.workers {
            if let Some(why) = &worker.unaudited {
                reasons.push(format!("Dask worker {} on {} was not audited: {why}", worker.address, host.host));
                unaudited = true;
            }
        }
        let counted = incompleteness(&host.stats, None);
        reasons.extend(counted.iter().map(|reason| format!("on host {}: {reason}", host.host)));
        if !host.stats.complete && !unaudited && counted.is_empty() {
            reasons.push(format!("the audit of host {} was cut short", host.host));
        }
    }
    let mut notes = Vec::new();
    if stats.unresolved_paths > 0 {
        notes.push(format!(
            "{} left out: relative to descriptors inherited from outside the traced tree",
            plural(stats.unresolved_paths as usize, "path", "paths")
        ));
    }
    if stats.complete {
        out.push_str(
            "<div class=\"status ok\"><span class=\"badge ok\">complete</span> \
             Nothing says the audit missed what the run did.",
        );
    } else {
        out.push_str("<div class=\"status bad\"><span class=\"badge bad\">incomplete</span> Facts may be missing");
        if stats.interrupted || reasons.is_empty() {
            reasons.insert(0, "the audit was interrupted before the traced processes ended".into());
        }
        out.push_str(":\n<ul>");
        for reason in &reasons {
            w!(out, "<li>{}</li>", Esc(reason));
        }
        out.push_str("</ul>");
    }
    for note in notes {
        w!(out, "<p class=\"muted\">{}</p>", Esc(&note));
    }
    out.push_str("</div>\n");
}

/// What the run used, counted.
fn summary(out: &mut String, manifest: &Manifest) {
    let changed = manifest.data.inputs.iter().filter(|input| input.changed_during_run).count();
    let mut parts = vec![
        plural(manifest.processes.len(), "process", "processes"),
        plural(manifest.data.inputs.len(), "data input", "data inputs"),
        plural(manifest.data.outputs.len(), "data output", "data outputs"),
        plural(manifest.software.python.len(), "Python distribution", "Python distributions"),
        plural(manifest.software.system_packages.len(), "system package", "system packages"),
    ];
    if !manifest.cells.is_empty() {
        parts.push(plural(manifest.cells.len(), "notebook cell", "notebook cells"));
    }
    if !manifest.tasks.is_empty() {
        parts.push(plural(manifest.tasks.len(), "Dask task", "Dask tasks"));
    }
    if !manifest.hosts.is_empty() {
        parts.push(plural(manifest.hosts.len(), "worker host", "worker hosts"));
    }
    w!(out, "<p class=\"summary\">{}.", Esc(&parts.join(" · ")));
    if changed > 0 {
        w!(out, " {}", badge("warn", &format!("{} changed during the run", plural(changed, "input", "inputs"))));
    }
    out.push_str("</p>\n");
}
