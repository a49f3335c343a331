//! Software and data manifests on a real virtual environment, with both backends:
//! the distributions the manifest lists must be exactly those `importlib.metadata`
//! names for the modules the workload imported; `diff` and `export` must rebuild it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use reprotrace_tests::{assert_same_run, audit, data_paths, paths_under, reprotrace_bin, BACKENDS};
use serde_json::Value;

/// Packages from PyPI: one with a C extension (markupsafe), one pure whose import
/// name differs from its distribution name (python-dateutil → dateutil, which
/// pulls in six), one with both (PyYAML → yaml, with its C loader).
const PACKAGES: &[&str] = &["markupsafe==2.1.5", "python-dateutil==2.9.0.post0", "PyYAML==6.0.2"];

const WORKLOAD: &str = r#"
import importlib.metadata, json, os, sys
import markupsafe, dateutil.parser, yaml, localproj

# Things that are never data: configuration, a cache.
with open("/etc/hostname") as f:
    f.read()
os.makedirs(".cache/workload", exist_ok=True)
with open(".cache/workload/state.json", "w") as f:
    f.write("{}")
import helper

with open(sys.argv[1]) as f:
    settings = yaml.safe_load(f)
when = dateutil.parser.parse(settings["when"])
with open(sys.argv[2], "w") as f:
    f.write(markupsafe.escape(f"<{when.year}> {localproj.greeting()}"))

# The oracle: the distributions owning the imported modules' files.
owners = importlib.metadata.packages_distributions()
used = {}
for name, module in list(sys.modules.items()):
    if getattr(module, "__file__", None) is None:
        continue
    for dist_name in owners.get(name.split(".")[0], []):
        dist = importlib.metadata.distribution(dist_name)
        used[dist.metadata["Name"]] = dist.version
with open(sys.argv[3], "w") as f:
    json.dump(used, f)
"#;

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A virtual environment with PACKAGES and an editable local project.
fn make_venv(root: &Path) -> PathBuf {
    let venv = root.join("venv");
    run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv));
    let pip = venv.join("bin/pip");
    run(Command::new(&pip).args(["install", "--quiet", "--disable-pip-version-check"]).args(PACKAGES));
    let project = root.join("proj");
    reprotrace_tests::python_project(&project, "localproj", "0.3.1", "def greeting():\n    return 'hello'\n");
    run(Command::new(&pip).args(["install", "--quiet", "--disable-pip-version-check", "-e"]).arg(&project));
    venv
}

fn python_section(manifest: &Value) -> BTreeMap<String, (String, bool)> {
    manifest["software"]["python"]
        .as_array()
        .expect("software.python")
        .iter()
        .map(|d| {
            let name = d["name"].as_str().expect("name").to_string();
            (name, (d["version"].as_str().expect("version").to_string(), d["editable"].as_bool().expect("editable")))
        })
        .collect()
}

#[test]
fn a_venv_workload_lists_exactly_its_distributions_and_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let venv = make_venv(root);
    std::fs::write(root.join("workload.py"), WORKLOAD).expect("workload");
    std::fs::write(root.join("helper.py"), "VALUE = 1\n").expect("helper module");
    std::fs::write(root.join("settings.yaml"), "when: \"2024-03-05T10:00:00\"\n").expect("settings");
    let python = venv.join("bin/python");

    let mut audits = Vec::new();
    for backend in BACKENDS {
        let _ = std::fs::remove_dir_all(root.join(".cache"));
        let oracle_path = root.join("oracle.json");
        let audit = audit(
            backend,
            root,
            root,
            &[
                python.as_os_str(),
                "workload.py".as_ref(),
                "settings.yaml".as_ref(),
                "page.html".as_ref(),
                oracle_path.as_os_str(),
            ],
        );
        assert!(audit.output.status.success(), "{backend}: {}", audit.stderr());
        let oracle: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(&oracle_path).expect("oracle")).expect("oracle JSON");
        let listed: BTreeMap<String, String> =
            python_section(&audit.manifest).into_iter().map(|(name, (version, _))| (name, version)).collect();
        assert_eq!(listed, oracle, "{backend}: software.python vs importlib.metadata");
        assert_eq!(python_section(&audit.manifest)["localproj"], ("0.3.1".to_string(), true), "{backend}: editable");
        // The files of it the run used, which `export docker` copies: its
        // source, and the hook that makes it importable from the venv.
        let localproj = audit.manifest["software"]["python"]
            .as_array()
            .expect("software.python")
            .iter()
            .find(|d| d["name"] == "localproj")
            .expect("localproj");
        let files: Vec<&str> = localproj["files"].as_array().expect("files").iter().filter_map(Value::as_str).collect();
        let source = root.join("proj/localproj/__init__.py").display().to_string();
        assert!(files.contains(&source.as_str()), "{backend}: {files:?}");
        assert!(files.iter().any(|file| file.contains("/site-packages/__editable__")), "{backend}: {files:?}");
        let interpreters = audit.manifest["software"]["interpreters"].as_array().expect("interpreters");
        assert!(
            interpreters.iter().any(|i| i["path"] == python.to_str().expect("utf-8") && i["version"] == "3.11.2"),
            "{backend}: {interpreters:?}"
        );
        let system: Vec<&str> = audit.manifest["software"]["system_packages"]
            .as_array()
            .expect("system packages")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(system.contains(&"libc6") && system.contains(&"libpython3.11-stdlib"), "{backend}: {system:?}");
        // Data: the scripts, the settings and the output; nothing from the venv,
        // the configuration or the cache.
        assert_eq!(
            data_paths(&audit.manifest, "inputs"),
            paths_under(root, &["helper.py", "settings.yaml", "workload.py"]),
            "{backend}"
        );
        let mut outputs = paths_under(root, &["page.html"]);
        outputs.insert(oracle_path.display().to_string());
        assert_eq!(data_paths(&audit.manifest, "outputs"), outputs, "{backend}");
        audits.push(audit);
    }
    assert_same_run(&audits[0].manifest, &audits[1].manifest);
}

#[test]
fn export_rebuilds_an_environment_that_diff_finds_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let first = root.join("first");
    std::fs::create_dir_all(&first).expect("dir");
    let venv = first.join("venv");
    run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(&PACKAGES[..2]));
    let script =
        "import markupsafe, dateutil.parser\nprint(markupsafe.escape('<ok>'), dateutil.parser.parse('2024-01-02'))\n";
    std::fs::write(root.join("job.py"), script).expect("script");

    let audit_with = |venv: &Path, name: &str| -> PathBuf {
        let manifest = root.join(format!("{name}.json"));
        let output = Command::new(reprotrace_bin())
            .current_dir(root)
            .args(["run", "--quiet", "-o"])
            .arg(&manifest)
            .arg("--")
            .arg(venv.join("bin/python"))
            .arg("job.py")
            .output()
            .expect("reprotrace run");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        manifest
    };
    let before = audit_with(&venv, "before");

    let requirements = root.join("requirements.txt");
    run(Command::new(reprotrace_bin()).args(["export", "requirements"]).arg(&before).arg("-o").arg(&requirements));
    let text = std::fs::read_to_string(&requirements).expect("requirements");
    for pin in ["markupsafe==2.1.5", "python-dateutil==2.9.0.post0", "six=="] {
        assert!(text.contains(pin), "{pin} missing from:\n{text}");
    }
    let second = root.join("second/venv");
    run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&second));
    run(Command::new(second.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements));
    let after = audit_with(&second, "after");

    let diff = Command::new(reprotrace_bin()).arg("diff").arg(&before).arg(&after).output().expect("diff");
    let report = String::from_utf8_lossy(&diff.stdout);
    assert!(!report.contains("python:"), "package changes after a rebuild:\n{report}");
    assert_eq!(diff.status.code(), Some(0), "{report}");

    // A different version is reported, and the exit code says so.
    run(Command::new(second.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "markupsafe==2.1.3",
    ]));
    let changed = audit_with(&second, "changed");
    let diff = Command::new(reprotrace_bin()).arg("diff").arg(&before).arg(&changed).output().expect("diff");
    let report = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(1), "{report}");
    assert!(report.contains("~ python: markupsafe 2.1.5 -> 2.1.3"), "{report}");

    // apt and conda exports name what the run used.
    let apt = Command::new(reprotrace_bin()).args(["export", "apt"]).arg(&before).output().expect("export apt");
    assert!(String::from_utf8_lossy(&apt.stdout).lines().any(|line| line.starts_with("libc6=")));
    let conda = Command::new(reprotrace_bin()).args(["export", "conda"]).arg(&before).output().expect("export conda");
    let conda = String::from_utf8_lossy(&conda.stdout);
    assert!(conda.contains("  - python=3.11.2") && conda.contains("      - markupsafe==2.1.5"), "{conda}");
}

#[test]
fn diff_refuses_a_corrupt_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"schema\": \"reprotrace/manifest/v1\", \"backend\":").expect("write");
    let output = Command::new(reprotrace_bin()).arg("diff").arg(&bad).arg(&bad).output().expect("diff");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
}
