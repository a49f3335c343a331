//! `reprotrace show`: a manifest's essentials as tables on the terminal —
//! what ran, what it read and wrote, the software, the cells, the hosts and
//! tasks — so that nobody needs `jq` to see them. Headings are coloured when
//! the output is a terminal.

use std::fmt::Write;

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};

use crate::{
    manifest::{Data, DataEntry, Manifest, Process},
    units::human_size,
};

/// The whole text `show` prints; `color`: ANSI headings.
pub fn render(manifest: &Manifest, color: bool) -> String {
    let mut out = String::new();
    let heading = |out: &mut String, title: &str| {
        let _ = match color {
            true => writeln!(out, "\n\x1b[1;36m{title}\x1b[0m"),
            false => writeln!(out, "\n{title}"),
        };
    };
    let stats = &manifest.stats;
    let outcome = match (&manifest.exit_code, &manifest.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by {signal}"),
        (None, None) => "no exit status".to_string(),
    };
    let _ = writeln!(out, "{}", manifest.command.join(" "));
    let _ = writeln!(
        out,
        "on {} in {}, {} backend, {} → {} ({:.2} s), {outcome}",
        manifest.host,
        manifest.cwd,
        manifest.backend,
        manifest.started_at,
        manifest.finished_at,
        stats.duration_ms as f64 / 1000.0
    );
    let completeness = match stats.complete {
        true => "complete".to_string(),
        false => format!(
            "INCOMPLETE: {} lost events, {} malformed events, {} untracked children, {} truncated argvs, {} unseen io_uring rings{}",
            stats.lost_events,
            stats.malformed_events,
            stats.untracked_children,
            stats.truncated_argvs,
            stats.unseen_io_uring_rings,
            unaudited_workers(manifest)
        ),
    };
    let _ = match (color, stats.complete) {
        (true, false) => writeln!(out, "\x1b[1;31m{completeness}\x1b[0m ({} events)", stats.events),
        _ => writeln!(out, "{completeness} ({} events)", stats.events),
    };
    if stats.unfollowed_privileged > 0 {
        let _ = writeln!(
            out,
            "  not followed: {} processes past a setuid or setgid program they ran",
            stats.unfollowed_privileged
        );
    }
    for missing in &stats.missing_work {
        let _ = writeln!(out, "  missing: {missing}");
    }

    heading(&mut out, &format!("Processes ({})", manifest.processes.len()));
    out.push_str(&processes_table(&manifest.processes).to_string());

    heading(&mut out, &format!("Inputs ({})", manifest.data.inputs.len()));
    out.push_str(&data_table(&manifest.data.inputs).to_string());
    heading(&mut out, &format!("Outputs ({})", manifest.data.outputs.len()));
    out.push_str(&data_table(&manifest.data.outputs).to_string());

    let software = &manifest.software;
    heading(&mut out, &format!("Python distributions ({})", software.python.len()));
    let mut table = new_table(&["name", "version", "installer", "location"]);
    for distribution in &software.python {
        let installer = distribution.installer.as_deref().unwrap_or("-");
        table.add_row([&distribution.name, &distribution.version, installer, &distribution.location]);
    }
    out.push_str(&table.to_string());
    let interpreters: Vec<String> = software
        .interpreters
        .iter()
        .map(|interpreter| format!("{} ({})", interpreter.path, interpreter.version))
        .collect();
    let packages: Vec<String> =
        software.system_packages.iter().map(|package| format!("{}={}", package.name, package.version)).collect();
    let _ = writeln!(out, "\ninterpreters: {}", list_or_none(&interpreters));
    let _ = writeln!(out, "system packages ({}): {}", packages.len(), list_or_none(&packages));
    let _ = writeln!(
        out,
        "executables: {}, shared libraries: {}",
        software.executables.len(),
        software.shared_libraries.len()
    );

    if !manifest.cells.is_empty() {
        heading(&mut out, &format!("Cells ({})", manifest.cells.len()));
        let mut table = new_table(&["cell", "took", "reads", "writes", "defines / uses", "error"]);
        for cell in &manifest.cells {
            let label = match &cell.cell_id {
                Some(id) => format!("[{}] {id}", cell.execution_count),
                None => format!("[{}]", cell.execution_count),
            };
            let names = cell.names.as_ref().map_or_else(
                || "-".to_string(),
                |names| format!("{} / {}", list_or_none(&names.defines), list_or_none(&names.uses)),
            );
            let error =
                cell.error.as_ref().map_or_else(String::new, |error| format!("{}: {}", error.ename, error.evalue));
            table.add_row([
                label,
                took(&cell.started_at, cell.finished_at.as_deref()),
                paths(&cell.data.inputs),
                paths(&cell.data.outputs),
                names,
                error,
            ]);
        }
        out.push_str(&table.to_string());
    }

    if !manifest.hosts.is_empty() {
        heading(&mut out, &format!("Dask hosts ({})", manifest.hosts.len()));
        let mut table = new_table(&["host", "workers", "complete", "Python distributions", "inputs", "outputs"]);
        for host in &manifest.hosts {
            let workers: Vec<String> = host
                .workers
                .iter()
                .map(|worker| {
                    let name = worker.name.clone().unwrap_or_else(|| worker.address.clone());
                    match &worker.unaudited {
                        Some(reason) => format!("{name} (not audited: {reason})"),
                        None => name,
                    }
                })
                .collect();
            table.add_row([
                host.host.clone(),
                workers.join("\n"),
                if host.stats.complete { "yes" } else { "NO" }.to_string(),
                host.software.python.len().to_string(),
                host.data.inputs.len().to_string(),
                host.data.outputs.len().to_string(),
            ]);
        }
        out.push_str(&table.to_string());
        heading(&mut out, &format!("Dask tasks ({})", manifest.tasks.len()));
        let mut table = new_table(&["task", "host", "cell", "took", "reads", "writes"]);
        for task in &manifest.tasks {
            table.add_row([
                task.key.clone(),
                task.host.clone(),
                task.cell.map_or_else(|| "-".to_string(), |cell| format!("[{cell}]")),
                took(&task.started_at, task.finished_at.as_deref()),
                data_paths(&task.data, true),
                data_paths(&task.data, false),
            ]);
        }
        out.push_str(&table.to_string());
    }
    out.push('\n');
    out
}

fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic).set_header(header);
    table
}

fn processes_table(processes: &[Process]) -> Table {
    let mut table = new_table(&["pid", "ppid", "program", "argv", "exit"]);
    for process in processes {
        let exit = match (&process.exit_code, &process.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => signal.clone(),
            (None, None) => "-".to_string(),
        };
        table.add_row([
            process.pid.to_string(),
            process.ppid.map_or_else(|| "-".to_string(), |ppid| ppid.to_string()),
            process.exe.clone().unwrap_or_else(|| "?".to_string()),
            shortened(&process.argv.join(" "), 100),
            exit,
        ]);
    }
    table
}

fn data_table(entries: &[DataEntry]) -> Table {
    let mut table = new_table(&["path", "size", "sha256"]);
    for entry in entries {
        let size = entry.size.map_or_else(|| "gone".to_string(), human_size);
        let sha = match (&entry.sha256, entry.over_hash_limit) {
            (Some(sha), _) => sha.chars().take(12).collect(),
            (None, true) => "(over limit)".to_string(),
            (None, false) => "-".to_string(),
        };
        let path = match entry.changed_during_run {
            true => format!("{} (changed during the run)", entry.path),
            false => entry.path.clone(),
        };
        table.add_row([path, size, sha]);
    }
    table
}

fn paths(entries: &[DataEntry]) -> String {
    entries.iter().map(|entry| entry.path.as_str()).collect::<Vec<_>>().join("\n")
}

fn data_paths(data: &Data, inputs: bool) -> String {
    paths(if inputs { &data.inputs } else { &data.outputs })
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn took(started: &str, finished: Option<&str>) -> String {
    let parse = |text: &str| humantime::parse_rfc3339(text).ok();
    match (parse(started), finished.and_then(parse)) {
        (Some(started), Some(finished)) => {
            format!("{:.2} s", finished.duration_since(started).map_or(0.0, |took| took.as_secs_f64()))
        }
        _ => "unfinished".to_string(),
    }
}

fn unaudited_workers(manifest: &Manifest) -> String {
    let count =
        manifest.hosts.iter().flat_map(|host| &host.workers).filter(|worker| worker.unaudited.is_some()).count();
    match count {
        0 => String::new(),
        count => format!(", {count} Dask workers not audited"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_characters() {
        assert_eq!(shortened("héllo wörld", 5), "héllo…");
        assert_eq!(shortened("short", 10), "short");
    }
}
