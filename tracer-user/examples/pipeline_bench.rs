//! Times reprotrace's post-processing of a 100k-event audit: feeding events
//! through the tracker, identifying software (dpkg and Python indexes),
//! classifying and hashing data, and writing the manifest.
//!
//! The events name real files: the Python standard library and Debian's Python
//! packages (software), and 20,000 data files created for the run (inputs read,
//! outputs written), so every stage does its real work.
//!
//! Run with `cargo xtask bench pipeline` (release build).

use std::{
    os::unix::ffi::OsStrExt,
    path::Path,
    time::{Instant, SystemTime},
};

use reprotrace::{
    classify::Rules,
    event::{abi, ArgvView, Event, Fact, AT_FDCWD},
    manifest::{Manifest, Stats, SCHEMA_ID},
    pipeline::Pipeline,
    software::IndexBuilder,
};

const ROOT: u32 = 1000;
const DATA_FILES: usize = 20_000;

fn files_under(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            files_under(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path().as_os_str().as_bytes().to_vec());
        }
    }
}

fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let mut data = Vec::with_capacity(DATA_FILES);
    for index in 0..DATA_FILES {
        let path = work.path().join(format!("d{}/f{index}.csv", index % 100));
        std::fs::create_dir_all(path.parent().expect("parent"))?;
        std::fs::write(&path, vec![b'x'; 4096])?;
        data.push(path.as_os_str().as_bytes().to_vec());
    }
    let mut software = Vec::new();
    files_under(Path::new("/usr/lib/python3.11"), &mut software);
    files_under(Path::new("/usr/lib/python3/dist-packages"), &mut software);

    let mut events = Vec::new();
    let mut push = |tid: u32, fact: Fact| events.push(Event { tid, fact });
    push(
        ROOT,
        Fact::Exec {
            dirfd: AT_FDCWD,
            path: b"/usr/bin/python3".to_vec(),
            flags: 0,
            argv: vec![b"python3".to_vec()],
            argv_truncated: false,
            argv_view: ArgvView::Loaded,
            requested_by: ROOT,
        },
    );
    for worker in 0..8u32 {
        push(
            ROOT,
            Fact::Fork { child: ROOT + 1 + worker, flags: abi::CLONE_THREAD | abi::CLONE_FILES | abi::CLONE_FS },
        );
    }
    let open_close = |tid: u32, path: &[u8], flags: u64, events: &mut Vec<Event>| {
        events.push(Event { tid, fact: Fact::Open { dirfd: AT_FDCWD, path: path.to_vec(), flags, fd: 3 } });
        events.push(Event { tid, fact: Fact::Close { first: 3, last: 3 } });
    };
    let mut round = 0;
    while events.len() < 100_000 {
        for (index, path) in software.iter().enumerate() {
            open_close(ROOT + 1 + (index % 8) as u32, path, abi::O_CLOEXEC, &mut events);
        }
        for (index, path) in data.iter().enumerate() {
            let flags = if index % 2 == 0 || round > 0 { 0 } else { abi::O_WRONLY | abi::O_CREAT | abi::O_TRUNC };
            open_close(ROOT + 1 + (index % 8) as u32, path, flags, &mut events);
        }
        round += 1;
    }
    let count = events.len();

    let started_at = SystemTime::now();
    let clock = Instant::now();
    // As an audit does it: the index is built while the events arrive.
    let index = IndexBuilder::start(None);
    let mut pipeline = Pipeline::new(ROOT, Some(1), work.path().as_os_str().as_bytes().to_vec());
    pipeline.warm_up_software(index.sink());
    for event in &events {
        pipeline.feed(event);
    }
    let fed = clock.elapsed();
    let output = pipeline.finish(&Rules::default(), started_at, index, "bench", None)?;
    let finished = clock.elapsed();
    let manifest = Manifest {
        schema: SCHEMA_ID.into(),
        backend: "ebpf".into(),
        command: vec!["python3".into()],
        cwd: "/".into(),
        host: "bench".into(),
        os: None,
        platform: None,
        environment: Default::default(),
        redaction: None,
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: "2026-01-01T00:00:01Z".into(),
        exit_code: Some(0),
        signal: None,
        stats: Stats { events: output.events, complete: true, ..Stats::default() },
        processes: output.sections.processes,
        files: output.sections.files,
        software: output.sections.software,
        data: output.sections.data,
        cells: output.sections.cells,
        dask_worker: None,
        tasks: output.sections.tasks,
        hosts: Vec::new(),
        repeat_of: None,
        missing_lookups: Vec::new(),
    };
    manifest.write_atomically(&work.path().join("manifest.json"))?;
    let total = clock.elapsed();
    println!(
        "pipeline: {count} events ({} files, {} inputs, {} outputs, {} Python distributions, {} system packages)",
        manifest.files.len(),
        manifest.data.inputs.len(),
        manifest.data.outputs.len(),
        manifest.software.python.len(),
        manifest.software.system_packages.len(),
    );
    println!(
        "pipeline: feed {:.0} ms, software + data + hashing {:.0} ms, manifest written {:.0} ms: total {:.0} ms (target < 1000 ms)",
        fed.as_secs_f64() * 1e3,
        (finished - fed).as_secs_f64() * 1e3,
        (total - finished).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
    );
    Ok(())
}
