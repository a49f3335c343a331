//! The published JSON Schema is the one generated from the manifest's types,
//! and reprotrace refuses what that schema refuses.

use std::process::Command;

use reprotrace_tests::{audit, repo_root, reprotrace_bin};
use serde_json::Value;

#[test]
fn the_published_schema_is_generated_from_the_types() {
    let output = Command::new(reprotrace_bin()).arg("schema").output().expect("reprotrace schema");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let generated: Value = serde_json::from_slice(&output.stdout).expect("the schema is JSON");
    let published: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("docs/manifest.schema.json")).expect("schema file"))
            .expect("the published schema is JSON");
    assert!(
        generated == published,
        "docs/manifest.schema.json is out of date: regenerate it with \
         `target/debug/reprotrace schema > docs/manifest.schema.json`"
    );
}

#[test]
fn a_manifest_the_schema_refuses_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut manifest = audit("ebpf", dir.path(), dir.path(), &["/usr/bin/python3", "-c", "import json"]).manifest;
    let good = dir.path().join("good.json");
    std::fs::write(&good, manifest.to_string()).expect("write");
    // An empty version would make `export` write `name==`.
    manifest["software"]["system_packages"][0]["version"] = Value::from("");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, manifest.to_string()).expect("write");
    let output = Command::new(reprotrace_bin()).arg("diff").arg(&good).arg(&bad).output().expect("diff");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(
        stderr.contains("not a valid reprotrace manifest") && stderr.contains("/software/system_packages/0/version"),
        "{stderr}"
    );
    let export = Command::new(reprotrace_bin()).args(["export", "apt"]).arg(&bad).output().expect("export");
    assert_eq!(export.status.code(), Some(125));
    assert!(export.stdout.is_empty(), "nothing exported from a refused manifest");
}
