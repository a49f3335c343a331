//! The process tree: each process under its parent, with its command line,
//! program, exit, and what else the manifest says of it.

use std::collections::{HashMap, HashSet};

use super::html::{badge, badge_titled, file_name, middle_cut, path_code, plural, shell_word, title_lines, w, Esc};
use crate::manifest::{Manifest, Process};

/// Command lines longer than this are cut (the whole one is in the title).
const ARGV_SHOWN: usize = 300;
/// Trees larger than this open only their first levels.
const OPEN_ALL_UP_TO: usize = 80;

/// How a process ended.
pub(super) fn exit_badge(code: Option<i32>, signal: Option<&str>) -> String {
    match (code, signal) {
        (_, Some(signal)) => badge("bad", &format!("killed by {signal}")),
        (Some(0), None) => badge("ok", "exit 0"),
        (Some(code), None) => badge("bad", &format!("exit {code}")),
        (None, None) => badge("muted", "still running"),
    }
}

pub(super) fn section(out: &mut String, manifest: &Manifest) {
    w!(
        out,
        "<section id=\"processes\">\n<h2>Processes <span class=\"count\">{}</span></h2>\n",
        manifest.processes.len()
    );
    tree(out, &manifest.processes, "p-", &manifest.cwd);
    out.push_str("</section>\n");
}

/// The processes nested by parent. `anchor` prefixes each process's id
/// (`p-1234`); `cwd` is the directory the run started in (a process shows its
/// own only when it differs from its parent's).
pub(super) fn tree(out: &mut String, processes: &[Process], anchor: &str, cwd: &str) {
    if processes.is_empty() {
        out.push_str("<p class=\"empty\">No process.</p>\n");
        return;
    }
    // A reused pid's first record is the parent its children name.
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    for (index, process) in processes.iter().enumerate() {
        by_pid.entry(process.pid).or_insert(index);
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); processes.len()];
    let mut parent: Vec<Option<usize>> = vec![None; processes.len()];
    let mut roots = Vec::new();
    for (index, process) in processes.iter().enumerate() {
        match process.ppid.and_then(|ppid| by_pid.get(&ppid)).copied().filter(|&parent| parent != index) {
            Some(found) => {
                children[found].push(index);
                parent[index] = Some(found);
            }
            None => roots.push(index),
        }
    }
    let open_all = processes.len() <= OPEN_ALL_UP_TO;
    let mut anchored: HashSet<u32> = HashSet::new();
    let mut visited = vec![false; processes.len()];
    enum Step {
        Open(usize, usize),
        Close,
    }
    out.push_str("<ul class=\"tree\">\n");
    // Iterative, so a deep chain of processes cannot exhaust the stack; the
    // processes no root leads to (a cycle of reused pids) come last.
    let mut pending: Vec<usize> = roots;
    pending.reverse();
    let mut stack: Vec<Step> = Vec::new();
    loop {
        let step = match stack.pop() {
            Some(step) => step,
            None => match pending.pop().or_else(|| visited.iter().position(|seen| !seen)) {
                Some(next) => Step::Open(next, 0),
                None => break,
            },
        };
        let (index, depth) = match step {
            Step::Close => {
                out.push_str("</ul></details></li>\n");
                continue;
            }
            Step::Open(index, depth) => (index, depth),
        };
        if visited[index] {
            continue;
        }
        visited[index] = true;
        let process = &processes[index];
        let id = if anchored.insert(process.pid) { format!(" id=\"{anchor}{}\"", process.pid) } else { String::new() };
        let parent_cwd = parent[index].map_or(cwd, |parent| processes[parent].cwd.as_str());
        let kids: Vec<usize> = children[index].iter().copied().filter(|&child| !visited[child]).collect();
        if kids.is_empty() {
            w!(out, "<li{id}><div class=\"proc\">");
            line(out, process, parent_cwd);
            out.push_str("</div></li>\n");
        } else {
            let open = if open_all || depth < 2 { " open" } else { "" };
            w!(out, "<li{id}><details{open}><summary class=\"proc\">");
            line(out, process, parent_cwd);
            w!(out, " <span class=\"muted\">({})</span></summary><ul>\n", plural(kids.len(), "child", "children"));
            stack.push(Step::Close);
            stack.extend(kids.iter().rev().map(|&child| Step::Open(child, depth + 1)));
        }
    }
    out.push_str("</ul>\n");
}

/// One process: pid, command line, how it ended, and its particulars.
fn line(out: &mut String, process: &Process, parent_cwd: &str) {
    w!(out, "<span class=\"pid\">{}</span>", process.pid);
    let words: Vec<String> = process.argv.iter().map(|arg| shell_word(arg)).collect();
    let exe = process.exe.as_deref().unwrap_or("unknown program");
    let (first, rest) = match words.split_first() {
        Some((first, rest)) => (first.clone(), rest.join(" ")),
        None => (file_name(exe).to_string(), String::new()),
    };
    let whole = words.join(" ");
    let title = title_lines(&[exe, &middle_cut(&whole, 8000)]);
    w!(out, "<code class=\"argv\" title=\"{title}\"><b>{}</b>", Esc(&middle_cut(&first, ARGV_SHOWN)));
    if !rest.is_empty() {
        let room = ARGV_SHOWN.saturating_sub(first.chars().count()).max(40);
        w!(out, " {}", Esc(&middle_cut(&rest, room)));
    }
    out.push_str("</code> ");
    if let Some(exe) = &process.exe {
        let named = process.argv.first().map(|arg| file_name(arg));
        if named != Some(file_name(exe)) {
            w!(out, "<span class=\"where\">{}</span> ", path_code(exe, 50));
        }
    }
    out.push_str(&exit_badge(process.exit_code, process.signal.as_deref()));
    if !process.interpreters.is_empty() {
        let chain: Vec<&str> = process.interpreters.iter().map(String::as_str).collect();
        w!(out, " {}", badge_titled("info", &format!("script run by {}", file_name(chain[0])), &[chain.join(" → ")]));
    }
    if process.cell_hook {
        w!(out, " {}", badge_titled("info", "cell hook", &["reprotrace's notebook cell hook ran in this kernel"]));
    }
    if process.pre_existing {
        w!(out, " {}", badge_titled("muted", "attached", &["running before the audit attached to it"]));
    }
    if process.argv_truncated {
        w!(out, " {}", badge_titled("warn", "argv truncated", &["the backend could not take its whole argv"]));
    }
    if let Some(namespace) = process.namespace {
        let title = format!("its program and directory are in the mount namespace of pid {namespace}");
        w!(out, " {}", badge_titled("muted", &format!("namespace of {namespace}"), &[title]));
    }
    if !process.failed_execs.is_empty() {
        let mut list: Vec<String> =
            process.failed_execs.iter().map(|failed| format!("{}: {}", failed.path, failed.error)).collect();
        let text = plural(process.failed_execs.len(), "failed exec", "failed execs");
        list.truncate(200);
        w!(out, " {}", badge_titled("muted", &text, &list));
    }
    if process.cwd != parent_cwd {
        w!(out, " <span class=\"where\">in {}</span>", path_code(&process.cwd, 60));
    }
}
