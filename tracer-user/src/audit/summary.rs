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
    eprintln!(
        "reprotrace: {} audit finished in {:.2} s ({outcome}): {} processes, {cells}{} files, {} inputs, {} outputs, \
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
        eprintln!(
            "reprotrace: warning: the manifest may be incomplete: {} lost events, {} untracked children, \
             {} malformed events{}",
            stats.lost_events,
            stats.untracked_children,
            stats.malformed_events,
            if stats.lost_events > 0 { " (try a larger --ring-buffer-size)" } else { "" },
        );
    }
    eprintln!("reprotrace: manifest written to {}", output.display());
}
