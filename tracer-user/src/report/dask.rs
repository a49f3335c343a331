//! Dask: the workers' hosts (their workers, and what they used there) and
//! the tasks the run's clients submitted.

use super::{
    data::{files_section, path_list, tables},
    header::incompleteness,
    html::{badge, between, human_duration, middle_cut, plural, shell_line, time_element, title_lines, w, Esc},
    processes::tree,
    software::software,
};
use crate::manifest::{Host, Manifest, Task};

pub(super) fn hosts_section(out: &mut String, manifest: &Manifest) {
    if manifest.hosts.is_empty() {
        return;
    }
    w!(out, "<section id=\"hosts\">\n<h2>Dask hosts <span class=\"count\">{}</span></h2>\n", manifest.hosts.len());
    for (index, host) in manifest.hosts.iter().enumerate() {
        host_entry(out, manifest, index, host);
    }
    out.push_str("</section>\n");
}

fn host_entry(out: &mut String, manifest: &Manifest, index: usize, host: &Host) {
    w!(out, "<section class=\"host\" id=\"host-{index}\">\n<h3>{}", Esc(&host.host));
    let unaudited = host.workers.iter().filter(|worker| worker.unaudited.is_some()).count();
    let reasons = incompleteness(&host.stats, None);
    if unaudited > 0 {
        w!(out, " {}", badge("bad", &format!("{} not audited", plural(unaudited, "worker", "workers"))));
    } else if !host.stats.complete {
        w!(out, " {}", badge("bad", "incomplete"));
    } else {
        w!(out, " {}", badge("ok", "complete"));
    }
    out.push_str("</h3>\n");
    if !reasons.is_empty() {
        out.push_str("<ul class=\"reasons\">");
        for reason in &reasons {
            w!(out, "<li>{}</li>", Esc(reason));
        }
        out.push_str("</ul>\n");
    }
    w!(
        out,
        "<p class=\"muted\">{} · {} · {} · {} events</p>\n",
        plural(host.workers.len(), "worker", "workers"),
        plural(host.processes.len(), "process", "processes"),
        plural(host.files.len(), "path", "paths"),
        super::html::grouped(host.stats.events)
    );
    out.push_str(
        "<table><thead><tr><th>Worker</th><th>Name</th><th>Processes</th><th>Audit</th></tr></thead><tbody>\n",
    );
    for worker in &host.workers {
        let pids: Vec<String> = worker.pids.iter().map(u32::to_string).collect();
        let audit = match &worker.unaudited {
            Some(why) => format!("{} {}", badge("bad", "not audited"), Esc(why)),
            None => badge("ok", "audited"),
        };
        w!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"mono\">{}</td><td>{audit}</td></tr>\n",
            Esc(&worker.address),
            worker.name.as_deref().map(|name| Esc(name).to_string()).unwrap_or_else(|| "–".into()),
            pids.join(" ")
        );
    }
    out.push_str("</tbody></table>\n");
    tables(out, &host.data, None, 4);
    w!(out, "<details class=\"list\"><summary>Software on {}</summary>\n", Esc(&host.host));
    software(out, &host.software, Some(&manifest.software.python), 4);
    out.push_str("</details>\n");
    w!(
        out,
        "<details class=\"list\"><summary>Processes on {} <span class=\"count\">{}</span></summary>\n",
        Esc(&host.host),
        host.processes.len()
    );
    tree(out, &host.processes, &format!("h{index}-p-"), "/");
    out.push_str("</details>\n");
    files_section(out, &host.files, &format!("host-{index}-files"), &format!("Paths used on {}", host.host));
    out.push_str("</section>\n");
}

pub(super) fn tasks_section(out: &mut String, manifest: &Manifest) {
    if manifest.tasks.is_empty() {
        return;
    }
    let tasks = &manifest.tasks;
    w!(out, "<section id=\"tasks\">\n<h2>Dask tasks <span class=\"count\">{}</span></h2>\n", tasks.len());
    let open = if tasks.len() <= 200 { " open" } else { "" };
    w!(out, "<details class=\"list\"{open}><summary>{}</summary>\n", plural(tasks.len(), "task run", "task runs"));
    out.push_str(
        "<table><thead><tr><th>Key</th><th>Where</th><th>Started</th><th class=\"num\">Duration</th><th>Cell</th>\
         <th>Processes</th><th>Reads</th><th>Writes</th></tr></thead><tbody>\n",
    );
    for task in tasks {
        task_row(out, manifest, task);
    }
    out.push_str("</tbody></table>\n</details>\n</section>\n");
}

fn task_row(out: &mut String, manifest: &Manifest, task: &Task) {
    w!(out, "<tr><td><code title=\"{}\">{}</code></td>", Esc(&task.key), Esc(&middle_cut(&task.key, 40)));
    let host = manifest.hosts.iter().position(|host| host.host == task.host);
    let host_link = match host {
        Some(index) => format!("<a href=\"#host-{index}\">{}</a>", Esc(&task.host)),
        None => Esc(&task.host).to_string(),
    };
    let worker = task.worker.as_deref().map(|worker| format!("<br><code>{}</code>", Esc(worker))).unwrap_or_default();
    w!(out, "<td>{host_link}{worker}<br><span class=\"muted\">pid {} thread {}</span></td>", task.pid, task.thread);
    let offset = between(&manifest.started_at, &task.started_at).map(|offset| format!("+{}", human_duration(offset)));
    w!(
        out,
        "<td class=\"nowrap\" title=\"{}\">{}</td>",
        Esc(&task.started_at),
        offset.unwrap_or_else(|| time_element(&task.started_at))
    );
    let duration = task.finished_at.as_deref().and_then(|end| between(&task.started_at, end));
    w!(out, "<td class=\"num\">{}</td>", duration.map(human_duration).unwrap_or_else(|| "unfinished".into()));
    let cell = task.cell.and_then(|count| {
        let index = manifest.cells.iter().position(|cell| cell.execution_count == count)?;
        Some(format!("<a href=\"#cell-{index}\">[{count}]</a>"))
    });
    w!(out, "<td>{}</td>", cell.or_else(|| task.cell.map(|count| format!("[{count}]"))).unwrap_or_else(|| "–".into()));
    out.push_str("<td>");
    for process in &task.processes {
        let exe = process.exe.as_deref().unwrap_or("?");
        w!(
            out,
            "<div><span class=\"mono\">{}</span> <code class=\"argv\" title=\"{}\">{}</code></div>",
            process.pid,
            title_lines(&[exe]),
            Esc(&middle_cut(&shell_line(&process.argv), 60))
        );
    }
    out.push_str("</td><td>");
    path_list(out, &task.data.inputs, &manifest.data);
    out.push_str("</td><td>");
    path_list(out, &task.data.outputs, &manifest.data);
    out.push_str("</td></tr>\n");
}
