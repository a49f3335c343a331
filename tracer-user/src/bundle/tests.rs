use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::manifest::Manifest;

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A run in `dir`: it read data/in.csv, exec'd bin/tool through a link,
/// made out.txt, and read gone.txt, since removed.
fn fixture(dir: &std::path::Path) -> Manifest {
    std::fs::create_dir_all(dir.join("data")).expect("data");
    std::fs::create_dir_all(dir.join("bin")).expect("bin");
    std::fs::write(dir.join("data/in.csv"), "a,b\n").expect("input");
    std::fs::write(dir.join("bin/tool"), "#!/bin/sh\n").expect("tool");
    std::fs::set_permissions(dir.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink("bin/tool", dir.join("link")).expect("link");
    std::thread::sleep(std::time::Duration::from_millis(30));
    let started = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(std::time::Duration::from_millis(30));
    std::fs::write(dir.join("out.txt"), "made").expect("output");
    std::thread::sleep(std::time::Duration::from_millis(30));
    let finished = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let d = dir.display();
    serde_json::from_value(serde_json::json!({
        "schema": "reprotrace/manifest/v1", "backend": "ebpf", "command": ["x"], "cwd": format!("{d}"), "host": "h",
        "started_at": started, "finished_at": finished, "exit_code": 0, "signal": null,
        "stats": {"events": 1, "lost_events": 0, "untracked_children": 0, "malformed_events": 0,
                  "unresolved_paths": 0, "complete": true, "duration_ms": 1},
        "processes": [],
        "files": [
            {"path": format!("{d}/data/in.csv"), "access": "read", "deleted": false, "pids": [1]},
            {"path": format!("{d}/link"), "access": "exec", "deleted": false, "pids": [1]},
            {"path": format!("{d}/out.txt"), "access": "read_write", "deleted": false, "pids": [1]},
            {"path": format!("{d}/gone.txt"), "access": "read", "deleted": false, "pids": [1]},
            {"path": "/proc/self/status", "access": "read", "deleted": false, "pids": [1]},
        ],
        "software": {"python": [], "interpreters": [], "system_packages": [], "executables": [], "shared_libraries": []},
        "data": {"inputs": [{"path": format!("{d}/data/in.csv"), "size": 4, "mtime": started, "sha256": sha256(b"a,b\n")}],
                 "outputs": []},
        "cells": []
    }))
    .expect("a manifest")
}

#[test]
fn a_bundle_holds_what_the_run_used_and_unpacks_into_a_root() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("run");
    let manifest = fixture(&dir);
    let bundle = scratch.path().join("run.bundle");
    let report = pack(&manifest, &Part::Run, false, &bundle, false).expect("packed");
    assert_eq!((report.files, report.data_bytes), (2, 4), "{report:?}");
    let d = dir.display().to_string();
    assert!(report.left_out.contains(&format!("{d}/out.txt")), "made by the run: {:?}", report.left_out);
    assert!(report.left_out.contains(&format!("{d}/gone.txt")), "gone: {:?}", report.left_out);

    let root = scratch.path().join("repeat/root");
    std::fs::create_dir_all(root.parent().expect("parent")).expect("repeat dir");
    let unpacked = unpack(&bundle, &root).expect("unpacked");
    assert_eq!(unpacked.manifest, manifest);
    let inside = |path: &str| root.join(path.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(inside(&format!("{d}/data/in.csv"))).expect("input"), "a,b\n");
    assert_eq!(std::fs::read_link(inside(&format!("{d}/link"))).expect("link"), std::path::Path::new("bin/tool"));
    let tool = std::fs::metadata(inside(&format!("{d}/bin/tool"))).expect("tool");
    assert_eq!(tool.permissions().mode() & 0o777, 0o755);
    assert!(!inside(&format!("{d}/out.txt")).exists(), "a repeat makes it again");
    assert!(!inside("/proc/self/status").exists());
    assert!(!root.with_extension("objects").exists(), "the staging is gone");
}

#[test]
fn changed_inputs_and_damaged_bundles_are_refused() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("run");
    let manifest = fixture(&dir);
    std::fs::write(dir.join("data/in.csv"), "changed\n").expect("change");
    let bundle = scratch.path().join("run.bundle");
    let refused = pack(&manifest, &Part::Run, false, &bundle, false).expect_err("changed");
    assert!(refused.to_string().contains("data/in.csv"), "{refused}");
    assert!(!bundle.exists());
    pack(&manifest, &Part::Run, true, &bundle, false).expect("--allow-changed");

    let bytes = std::fs::read(&bundle).expect("bundle");
    std::fs::write(&bundle, &bytes[..bytes.len() / 2]).expect("truncate");
    let root = scratch.path().join("root");
    let damaged = unpack(&bundle, &root).expect_err("truncated");
    assert!(matches!(damaged, BundleError::Corrupt(..)), "{damaged}");
    assert!(!root.with_extension("objects").exists(), "the staging is removed on failure too");
    assert!(pack(&manifest, &Part::Cells(vec![7]), true, &bundle, false)
        .expect_err("no such cell")
        .to_string()
        .contains("no cell [7]"));
}

/// A program the run used was upgraded after the audit: not what the run ran.
#[test]
fn software_changed_since_the_audit_is_refused() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("run");
    let manifest = fixture(&dir);
    let bundle = scratch.path().join("run.bundle");
    pack(&manifest, &Part::Run, false, &bundle, false).expect("nothing changed yet");
    // As an upgrade does, later: a new file renamed over the old one. (Birth
    // times come from the kernel's coarse clock, a tick behind; the audit's
    // end is kept to the millisecond.)
    std::thread::sleep(std::time::Duration::from_millis(50));
    std::fs::write(dir.join("bin/tool.new"), "#!/bin/sh\necho 2\n").expect("new version");
    std::fs::rename(dir.join("bin/tool.new"), dir.join("bin/tool")).expect("upgrade");
    let refused = pack(&manifest, &Part::Run, false, &bundle, false).expect_err("changed");
    assert!(refused.to_string().contains("bin/tool (not data"), "{refused}");
    pack(&manifest, &Part::Run, true, &bundle, false).expect("--allow-changed");
}

#[test]
fn only_a_bundle_of_the_whole_run_is_repeatable_and_it_says_so() {
    for part in [Part::Run, Part::Cells(vec![1, 3]), Part::Host("worker-1".into()), Part::DataOnly] {
        assert_eq!(Part::from_label(&part.label()), Some(part.clone()), "the label names the part");
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let manifest = fixture(&scratch.path().join("run"));
    let whole = scratch.path().join("run.bundle");
    pack(&manifest, &Part::Run, false, &whole, false).expect("packed");
    let header = read_header(&whole).expect("header");
    assert!(header.repeatable && header.not_repeatable.is_none() && header.repeat_refusal().is_none());

    let data = scratch.path().join("data.bundle");
    let report = pack(&manifest, &Part::DataOnly, false, &data, false).expect("packed");
    let header = read_header(&data).expect("header");
    assert!(!header.repeatable, "{header:?}");
    assert_eq!(header.not_repeatable, report.not_repeatable);
    assert!(header.repeat_refusal().is_some_and(|reason| reason.contains("without --data-only")), "{header:?}");

    // Bundles of cells packed before bundles said so claim to be repeatable:
    // the part decides.
    let old = Header { format: FORMAT.into(), part: "cells 2".into(), repeatable: true, not_repeatable: None };
    let reason = old.repeat_refusal().expect("refused");
    assert!(reason.contains("notebook cell 2") && reason.contains("without --cell"), "{reason}");
    let unknown = Header { part: "tuesday".into(), ..old };
    assert!(unknown.repeat_refusal().is_some());
}

#[test]
fn setuid_and_setgid_bits_are_never_restored() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("run");
    let manifest = fixture(&dir);
    std::fs::set_permissions(dir.join("bin/tool"), std::fs::Permissions::from_mode(0o6755)).expect("setuid");
    std::fs::set_permissions(dir.join("data"), std::fs::Permissions::from_mode(0o2755)).expect("setgid dir");
    let bundle = scratch.path().join("run.bundle");
    // (The modes changed after the audit: packed as they are now.)
    pack(&manifest, &Part::Run, true, &bundle, false).expect("packed");
    let root = scratch.path().join("repeat/root");
    std::fs::create_dir_all(root.parent().expect("parent")).expect("repeat dir");
    let unpacked = unpack(&bundle, &root).expect("unpacked");
    let tool = format!("{}/bin/tool", dir.display());
    assert_eq!(unpacked.setid_stripped, std::slice::from_ref(&tool), "reported once, files only");
    let mode = |path: &str| std::fs::metadata(root.join(path.trim_start_matches('/'))).expect("made").mode() & 0o7777;
    assert_eq!(mode(&tool), 0o755, "the bits stripped, the rest kept");
    assert_eq!(mode(&format!("{}/data", dir.display())), 0o755);
}
