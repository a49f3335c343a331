//! The index against hand-made site directories and a real venv.

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    process::Command,
    time::{Duration, SystemTime},
};

use serde::Deserialize;

use super::{
    editable::{file_url_path, finder_mapping},
    interpreter::{is_python_executable_name, major_minor},
    metadata::{csv_first_field, header, text_lines},
    *,
};

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().expect("parent")).expect("create directories");
    fs::write(path, contents).expect("write");
}

fn bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

/// A `.dist-info` with METADATA (whose body repeats `Name:`, which must not count) and RECORD.
fn dist_info(site: &Path, dir_name: &str, name: &str, version: &str, record: &str) -> PathBuf {
    let dir = site.join(dir_name);
    write(&dir.join("METADATA"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: body\n"));
    write(&dir.join("RECORD"), record);
    dir
}

fn owner_of(index: &mut PythonIndex, path: &Path) -> Option<(String, String)> {
    index.owner(&bytes(path)).map(|dist| (dist.name.clone(), dist.version.clone()))
}

fn named(name: &str, version: &str) -> Option<(String, String)> {
    Some((name.to_owned(), version.to_owned()))
}

#[test]
fn record_entries_are_unquoted_and_folded() {
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = temp.path().join("env");
    let site = prefix.join("lib/python3.11/site-packages");
    let record = [
        "demo/__init__.py,sha256=abc,10",
        "\"demo/odd,name.py\",sha256=abc,10",
        "\"demo/say \"\"hi\"\".py\",,",
        "demo/mod.py,,",
        "demo//./sub/../plain.py,,",
        "../../../bin/demo,,",
        "demo-1.0.dist-info/RECORD,,",
    ]
    .join("\r\n");
    let dir = dist_info(&site, "demo-1.0.dist-info", "Demo", "1.0", &record);
    write(&dir.join("INSTALLER"), "uv\n");
    let mut index = PythonIndex::new();
    // A script outside the site directory: found through its prefix.
    let script = index.owner(&bytes(&prefix.join("bin/demo"))).expect("script owner").clone();
    assert_eq!(
        script,
        Distribution {
            name: "Demo".into(),
            version: "1.0".into(),
            installer: Some("uv".into()),
            location: bytes(&site),
            editable: false,
        }
    );
    for listed in ["demo/__init__.py", "demo/odd,name.py", "demo/say \"hi\".py", "demo/plain.py"] {
        assert_eq!(owner_of(&mut index, &site.join(listed)), named("Demo", "1.0"), "{listed}");
    }
    assert_eq!(owner_of(&mut index, &site.join("demo-1.0.dist-info/RECORD")), named("Demo", "1.0"));
    // Bytecode no list names belongs to the owner of its source.
    for cached in ["mod.cpython-311.pyc", "mod.cpython-311.opt-1.pyc", "mod.pypy39.opt-2.pyc"] {
        assert_eq!(owner_of(&mut index, &site.join("demo/__pycache__").join(cached)), named("Demo", "1.0"));
    }
    for unowned in [
        "demo/__pycache__/mod.cpython-311.opt-.pyc",
        "demo/__pycache__/mod.cpython-311.opt-!.pyc",
        "demo/__pycache__/x.mod.cpython-311.pyc",
        "demo/untracked.py",
        "demo",
    ] {
        assert_eq!(owner_of(&mut index, &site.join(unowned)), None, "{unowned}");
    }
    assert!(index.problems().is_empty(), "{:?}", index.problems());
}

#[test]
fn egg_info_lists_and_evidence() {
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = temp.path();
    let site = prefix.join("lib/python3.11/site-packages");
    let old = site.join("old-2.0.egg-info");
    write(&old.join("PKG-INFO"), "Metadata-Version: 1.1\nName: old\nVersion: 2.0\n");
    write(
        &old.join("installed-files.txt"),
        "../old/__init__.py\n../old/__pycache__/__init__.cpython-311.pyc\n../../../../bin/old\n",
    );
    write(&old.join("SOURCES.txt"), "setup.py\nold/ignored.py\n");
    let sources = site.join("Src_Only-3.0-py3.11.egg-info");
    write(&sources.join("PKG-INFO"), "Name: src-only\nVersion: 3.0\n");
    write(&sources.join("SOURCES.txt"), "src_only/__init__.py\nshared.py\nsetup.py\n");
    let wheel = dist_info(&site, "wheel_dist-1.0.dist-info", "wheel-dist", "1.0", "shared.py,,\n");
    // Older than the egg-info: the kind of list decides, not the time.
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    fs::File::open(wheel).expect("open").set_modified(an_hour_ago).expect("set mtime");
    write(
        &site.join("distutils_thing-0.5-py3.11.egg-info"),
        "Metadata-Version: 1.0\nName: distutils-thing\nVersion: 0.5\n",
    );
    let mut index = PythonIndex::new();
    assert_eq!(owner_of(&mut index, &prefix.join("bin/old")), named("old", "2.0"));
    assert_eq!(owner_of(&mut index, &site.join("old/__init__.py")), named("old", "2.0"));
    assert_eq!(owner_of(&mut index, &site.join("old/ignored.py")), None, "installed-files.txt comes first");
    assert_eq!(owner_of(&mut index, &site.join("src_only/__init__.py")), named("src-only", "3.0"));
    assert_eq!(owner_of(&mut index, &site.join("shared.py")), named("wheel-dist", "1.0"), "RECORD beats SOURCES.txt");
    assert!(index.problems().is_empty(), "{:?}", index.problems());
}

#[test]
fn a_directorys_files_are_owned_as_the_tables_found_so_far_list_them() {
    // Asked a directory at a time, the tables that list something in it are
    // found once: a table found later (another site directory's) is asked too.
    let temp = tempfile::tempdir().expect("tempdir");
    let shared = temp.path().join("shared");
    let sites: Vec<PathBuf> =
        (1..=2).map(|number| temp.path().join(format!("env{number}/lib/python3.11/site-packages"))).collect();
    for (number, site) in (1..=2).zip(&sites) {
        let record = format!("../../../../shared/f{number}.py,,\n../../../../shared/sub/g{number}.py,,\n");
        dist_info(site, &format!("dist{number}-1.0.dist-info"), &format!("dist{number}"), "1.0", &record);
    }
    let mut index = PythonIndex::new();
    index.discover(&bytes(&sites[0].join("x.py")));
    assert_eq!(owner_of(&mut index, &shared.join("sub/g2.py")), None, "not listed yet");
    for name in ["f0.py", "f1.py", "f2.py", "f3.py"] {
        let expected = (name == "f1.py").then(|| ("dist1".to_owned(), "1.0".to_owned()));
        assert_eq!(owner_of(&mut index, &shared.join(name)), expected, "{name}, one table found");
    }
    index.discover(&bytes(&sites[1].join("x.py")));
    for (name, expected) in [("f1.py", named("dist1", "1.0")), ("f2.py", named("dist2", "1.0")), ("f3.py", None)] {
        assert_eq!(owner_of(&mut index, &shared.join(name)), expected, "{name}, both tables found");
    }
    assert_eq!(owner_of(&mut index, &shared.join("sub/g2.py")), named("dist2", "1.0"));
    assert_eq!(owner_of(&mut index, &shared.join("sub/g1.py")), named("dist1", "1.0"));
}

#[test]
fn the_last_writer_of_a_shared_file_owns_it() {
    let temp = tempfile::tempdir().expect("tempdir");
    let site = temp.path().join("site-packages");
    let older = dist_info(&site, "older-1.0.dist-info", "older", "1.0", "shared/x.py,,\n");
    let newer = dist_info(&site, "newer-1.0.dist-info", "newer", "1.0", "shared/x.py,,\n");
    let now = SystemTime::now();
    for (dir, age) in [(older, 60), (newer, 0)] {
        let dir = fs::File::open(dir).expect("open");
        dir.set_modified(now - Duration::from_secs(age)).expect("set mtime");
    }
    let mut index = PythonIndex::new();
    assert_eq!(owner_of(&mut index, &site.join("shared/x.py")), named("newer", "1.0"));
}

#[test]
fn the_last_writer_owns_a_file_listed_from_several_site_directories_whichever_is_scanned_first() {
    // More site directories than an index keeps tables apart: the last
    // ones scanned are merged.
    let temp = tempfile::tempdir().expect("tempdir");
    let ages = [50, 40, 0, 30, 20, 10];
    let sites: Vec<PathBuf> =
        (0..ages.len()).map(|number| temp.path().join(format!("env{number}/lib/python3.11/site-packages"))).collect();
    let now = SystemTime::now();
    for (number, (site, age)) in sites.iter().zip(ages).enumerate() {
        let name = format!("dist{number}");
        let record = format!("../../../../shared/tool,,\nown{number}.py,,\n");
        let dir = dist_info(site, &format!("{name}-1.0.dist-info"), &name, "1.0", &record);
        fs::File::open(dir).and_then(|dir| dir.set_modified(now - Duration::from_secs(age))).expect("set mtime");
    }
    let tool = temp.path().join("shared/tool");
    for first in 0..sites.len() {
        let mut index = PythonIndex::new();
        for site in sites.iter().cycle().skip(first).take(sites.len()) {
            index.discover(&bytes(&site.join("x.py")));
        }
        assert_eq!(owner_of(&mut index, &tool), named("dist2", "1.0"), "the newest metadata wins");
        for (number, site) in sites.iter().enumerate() {
            let own = site.join(format!("own{number}.py"));
            assert_eq!(owner_of(&mut index, &own), named(&format!("dist{number}"), "1.0"));
        }
    }
}

#[test]
fn a_warm_up_scan_is_reused_until_its_directory_changes() {
    let temp = tempfile::tempdir().expect("tempdir");
    let site = temp.path().join("site-packages");
    dist_info(&site, "first-1.0.dist-info", "first", "1.0", "first/__init__.py,,\n");
    let mut warm = PythonIndex::warm_up(None);
    warm.discover(&bytes(&site.join("first/__init__.py")));
    // The final index takes what the warm-up read (a list rewritten in
    // place, which no installer does, is not read again)…
    let record = site.join("first-1.0.dist-info/RECORD");
    let stamp = fs::metadata(&record).and_then(|meta| meta.modified()).expect("mtime");
    fs::write(&record, "elsewhere.py,,\n").expect("rewrite");
    fs::File::options().write(true).open(&record).and_then(|file| file.set_modified(stamp)).expect("mtime");
    let mut index = PythonIndex::reusing(warm);
    assert_eq!(owner_of(&mut index, &site.join("first/__init__.py")), named("first", "1.0"));
    assert_eq!(owner_of(&mut index, &site.join("elsewhere.py")), None);
    fs::write(&record, "first/__init__.py,,\n").expect("restore");

    // …unless the run installed something after the warm-up looked.
    let mut warm = PythonIndex::warm_up(None);
    warm.discover(&bytes(&site.join("first/__init__.py")));
    dist_info(&site, "second-2.0.dist-info", "second", "2.0", "second.py,,\n");
    let mut index = PythonIndex::reusing(warm);
    assert_eq!(owner_of(&mut index, &site.join("second.py")), named("second", "2.0"));
    assert_eq!(owner_of(&mut index, &site.join("first/__init__.py")), named("first", "1.0"));
}

/// An audit's index as the software index's thread builds it: warmed up on
/// `path`, asked about it, its new scans left in `cache`.
fn audit_with_cache(cache: &Path, path: &Path) -> (PythonIndex, Option<(String, String)>) {
    let mut warm = PythonIndex::warm_up(Some(cache.to_path_buf()));
    warm.discover(&bytes(path));
    let mut index = PythonIndex::reusing(warm);
    let owner = owner_of(&mut index, path);
    index.save_scans();
    (index, owner)
}

#[test]
fn a_scan_cached_on_disk_serves_later_audits_until_what_it_read_changes() {
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = temp.path().join("cache");
    let site = temp.path().join("env/lib/python3.11/site-packages");
    let module = site.join("first/__init__.py");
    dist_info(&site, "first-1.0.dist-info", "first", "1.0", "first/__init__.py,,\n");
    let cached_scan = |site: &Path| {
        let mut disk = scan_cache::ScanCache::open(Some(cache.clone()));
        disk.found(&bytes(site), &directory_stamp(&bytes(site)).expect("stamp")).is_some()
    };

    let (_, owner) = audit_with_cache(&cache, &module);
    assert_eq!(owner, named("first", "1.0"));
    assert!(cached_scan(&site), "the first audit leaves its scan");
    let (_, owner) = audit_with_cache(&cache, &module);
    assert_eq!(owner, named("first", "1.0"), "the next one answers from it as from the files");

    // An owner damaged in place names no distribution; nothing panics. The
    // scan's table lists one path, then its entry: offset, length, owner.
    let file = cache.join("python-scans-v4.bin");
    let whole = fs::read(&file).expect("cache");
    let path = bytes(&module);
    let listed = whole.windows(path.len()).rposition(|window| window == path.as_slice()).expect("listed");
    let owner = listed + path.len() + 4 + 8;
    let mut damaged = whole.clone();
    damaged[owner..owner + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&file, &damaged).expect("damage");
    assert_eq!(audit_with_cache(&cache, &module).1, None);
    fs::write(&file, &whole).expect("repair");

    // A list rewritten in place (the directory's stamp kept) is read again.
    let record = site.join("first-1.0.dist-info/RECORD");
    let stamp = fs::metadata(&record).and_then(|meta| meta.modified()).expect("mtime");
    fs::write(&record, "elsewhere.py,,\n").expect("rewrite");
    fs::File::options().write(true).open(&record).and_then(|file| file.set_modified(stamp)).expect("mtime");
    assert!(!cached_scan(&site), "what the scan read has changed");
    let (mut index, owner) = audit_with_cache(&cache, &module);
    assert_eq!(owner, None);
    assert_eq!(owner_of(&mut index, &site.join("elsewhere.py")), named("first", "1.0"));

    // A damaged cache (its table cut short) is ignored, never trusted, and
    // written anew.
    let whole = fs::read(&file).expect("cache");
    fs::write(&file, &whole[..40]).expect("damage");
    assert!(!cached_scan(&site));
    let (mut index, _) = audit_with_cache(&cache, &module);
    assert_eq!(owner_of(&mut index, &site.join("elsewhere.py")), named("first", "1.0"));
    assert!(cached_scan(&site));
}

#[test]
fn a_scan_that_had_problems_is_not_cached_and_they_are_reported_again() {
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = temp.path().join("cache");
    let site = temp.path().join("site-packages");
    let dir = dist_info(&site, "edit-1.0.dist-info", "edit", "1.0", "edit.py,,\n");
    write(&dir.join("direct_url.json"), "{not json");
    for _ in 0..2 {
        let (index, owner) = audit_with_cache(&cache, &site.join("edit.py"));
        assert_eq!(owner, named("edit", "1.0"));
        assert!(matches!(index.problems(), [PythonError::Json { .. }]), "{:?}", index.problems());
    }
    let mut disk = scan_cache::ScanCache::open(Some(cache));
    assert!(disk.found(&bytes(&site), &directory_stamp(&bytes(&site)).expect("stamp")).is_none());
}

#[test]
fn namespace_packages_are_owned_per_file() {
    let temp = tempfile::tempdir().expect("tempdir");
    let site = temp.path().join("dist-packages");
    dist_info(&site, "ns_a-1.0.dist-info", "ns.a", "1.0", "ns/a/__init__.py,,\n");
    dist_info(&site, "NS.B-2.0.dist-info", "NS.B", "2.0", "ns/b/__init__.py,,\n");
    let mut index = PythonIndex::new();
    assert_eq!(owner_of(&mut index, &site.join("ns/a/__init__.py")), named("ns.a", "1.0"));
    assert_eq!(owner_of(&mut index, &site.join("ns/b/__init__.py")), named("NS.B", "2.0"));
    assert_eq!(owner_of(&mut index, &site.join("ns")), None);
    assert_eq!(owner_of(&mut index, &site.join("ns/c.py")), None);
}

/// Debian's `.egg-info` directories list no files: a namespace package's
/// distributions each own their part of it, as their names say.
#[test]
fn debian_namespace_packages_are_owned_per_part() {
    let temp = tempfile::tempdir().expect("tempdir");
    let site = temp.path().join("dist-packages");
    for (dir, name) in
        [("lazr.uri-1.0.6.egg-info", "lazr.uri"), ("lazr.restfulclient-0.14.5.egg-info", "lazr.restfulclient")]
    {
        let version = if name == "lazr.uri" { "1.0.6" } else { "0.14.5" };
        write(&site.join(dir).join("PKG-INFO"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"));
        write(&site.join(dir).join("top_level.txt"), "lazr\n");
        write(&site.join(dir).join("namespace_packages.txt"), "lazr\n");
    }
    write(&site.join("lazr/uri/__init__.py"), "");
    write(&site.join("lazr/restfulclient/__init__.py"), "");
    let mut index = PythonIndex::new();
    assert_eq!(owner_of(&mut index, &site.join("lazr/uri/__init__.py")), named("lazr.uri", "1.0.6"));
    assert_eq!(
        owner_of(&mut index, &site.join("lazr/restfulclient/__init__.py")),
        named("lazr.restfulclient", "0.14.5")
    );
}

#[test]
fn names_normalise_as_pep_503_says() {
    assert_eq!(normalize_name("Foo__Bar.-baz"), "foo-bar-baz");
    assert_eq!(normalize_name("lazr.restfulclient"), "lazr-restfulclient");
    assert_eq!(normalize_name("PyYAML"), "pyyaml");
}

#[test]
fn conda_packages_own_their_files_and_dist_info_wins_inside_site_packages() {
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = temp.path().join("conda env");
    let site = prefix.join("lib/python3.11/site-packages");
    write(
        &prefix.join("conda-meta/zlib-1.3-h0.json"),
        r#"{"name": "zlib", "version": "1.3", "build": "h0", "files": ["lib/libz.so.1", "include/zlib.h"]}"#,
    );
    write(
        &prefix.join("conda-meta/numpy-1.26.4-py311.json"),
        r#"{"name": "numpy", "version": "1.26.4", "files": ["lib/python3.11/site-packages/numpy/__init__.py", "bin/f2py"]}"#,
    );
    write(&prefix.join("conda-meta/history"), "not json");
    let numpy = dist_info(&site, "numpy-1.26.4.dist-info", "numpy", "1.26.4", "numpy/__init__.py,,\n");
    write(&numpy.join("INSTALLER"), "conda");
    let mut index = PythonIndex::new();
    let zlib = index.owner(&bytes(&prefix.join("lib/libz.so.1"))).expect("zlib").clone();
    assert_eq!(
        zlib,
        Distribution {
            name: "zlib".into(),
            version: "1.3".into(),
            installer: Some("conda".into()),
            location: bytes(&prefix),
            editable: false,
        }
    );
    let numpy_init = index.owner(&bytes(&site.join("numpy/__init__.py"))).expect("numpy").clone();
    assert_eq!(numpy_init.location, bytes(&site), "the dist-info, not the conda record");
    assert_eq!(numpy_init.installer.as_deref(), Some("conda"));
    assert_eq!(index.owner(&bytes(&prefix.join("bin/f2py"))).map(|dist| dist.location.clone()), Some(bytes(&prefix)));
    assert!(index.problems().is_empty(), "{:?}", index.problems());
}

#[test]
fn editable_installs_own_their_import_roots() {
    let temp = tempfile::tempdir().expect("tempdir");
    let base = temp.path();
    // The venv lives inside the flat project, whose url is the only root it gives.
    let flat = base.join("flat");
    let venv = flat.join(".venv");
    write(&venv.join("pyvenv.cfg"), "home = /usr/bin\n");
    let site = venv.join("lib/python3.11/site-packages");
    // A src layout: `.pth` path line, project directory with a space.
    let src_project = base.join("my proj");
    let src = dist_info(&site, "src_proj-0.1.dist-info", "src-proj", "0.1", "__editable__.src_proj-0.1.pth,,\n");
    write(
        &src.join("direct_url.json"),
        r#"{"dir_info": {"editable": true}, "url": "file:///PROJECT"}"#
            .replace("/PROJECT", &format!("{}/my%20proj", base.display())),
    );
    write(
        &site.join("__editable__.src_proj-0.1.pth"),
        format!("# comment\nimport os\n{}/src\n", src_project.display()),
    );
    // A flat layout through setuptools' finder: a package and a module.
    let finder_project = base.join("fin");
    let record = "__editable__.fin-0.3.pth,,\n__editable___fin_0_3_finder.py,,\n";
    let fin = dist_info(&site, "fin-0.3.dist-info", "fin", "0.3", record);
    write(
        &fin.join("direct_url.json"),
        format!(r#"{{"dir_info": {{"editable": true}}, "url": "file://{}"}}"#, finder_project.display()),
    );
    write(
        &site.join("__editable__.fin-0.3.pth"),
        "import __editable___fin_0_3_finder; __editable___fin_0_3_finder.install()",
    );
    let mapping = format!(
        "MAPPING: dict[str, str] = {{'finmod': '{0}/finmod', 'finpkg': '{0}/finpkg'}}\n",
        finder_project.display()
    );
    write(&site.join("__editable___fin_0_3_finder.py"), format!("import sys\n{mapping}NAMESPACES = {{}}\n"));
    let flat_dist = dist_info(&site, "flat-0.2.dist-info", "flat", "0.2", "");
    write(
        &flat_dist.join("direct_url.json"),
        format!(r#"{{"dir_info": {{"editable": true}}, "url": "file://{}"}}"#, flat.display()),
    );
    // Not editable: a local directory install.
    let local = dist_info(&site, "local-1.0.dist-info", "local", "1.0", "local.py,,\n");
    write(
        &local.join("direct_url.json"),
        format!(r#"{{"dir_info": {{}}, "url": "file://{}"}}"#, base.join("local").display()),
    );
    let broken = dist_info(&site, "broken-1.0.dist-info", "broken", "1.0", "");
    write(&broken.join("direct_url.json"), "{not json");

    let mut index = PythonIndex::new();
    // The integrator discovers every used path first; Python reads the site directory's .pth files at start-up.
    index.discover(&bytes(&site.join("__editable__.fin-0.3.pth")));
    let edpkg = index.owner(&bytes(&src_project.join("src/edpkg/__init__.py"))).expect("src layout").clone();
    assert_eq!((edpkg.name.as_str(), edpkg.editable, edpkg.location), ("src-proj", true, bytes(&site)));
    assert_eq!(
        owner_of(&mut index, &src_project.join("src/edpkg/__pycache__/__init__.cpython-311.pyc")),
        named("src-proj", "0.1")
    );
    assert_eq!(owner_of(&mut index, &src_project.join("pyproject.toml")), None, "outside the import root");
    assert_eq!(owner_of(&mut index, &src_project.join("src/edpkg/table.csv")), None, "code only on sys.path");
    assert_eq!(owner_of(&mut index, &finder_project.join("finpkg/sub/a.py")), named("fin", "0.3"));
    assert_eq!(owner_of(&mut index, &finder_project.join("finpkg/data.json")), named("fin", "0.3"), "package data");
    assert_eq!(owner_of(&mut index, &finder_project.join("finmod.py")), named("fin", "0.3"));
    assert_eq!(owner_of(&mut index, &finder_project.join("__pycache__/finmod.cpython-311.pyc")), named("fin", "0.3"));
    assert_eq!(owner_of(&mut index, &finder_project.join("setup.py")), None);
    assert_eq!(owner_of(&mut index, &flat.join("analysis.py")), named("flat", "0.2"), "code in the url directory");
    assert_eq!(owner_of(&mut index, &flat.join("ext.cpython-311-x86_64-linux-gnu.so")), named("flat", "0.2"));
    assert_eq!(owner_of(&mut index, &flat.join("data/input.csv")), None, "the run's data stays data");
    assert_eq!(owner_of(&mut index, &venv.join("bin/python")), None, "an environment inside a root");
    assert_eq!(owner_of(&mut index, &site.join("untracked.py")), None);
    assert_eq!(owner_of(&mut index, &base.join("local/local.py")), None);
    assert_eq!(index.owner(&bytes(&site.join("local.py"))).map(|dist| dist.editable), Some(false));
    assert!(matches!(index.problems(), [PythonError::Json { .. }]), "{:?}", index.problems());
}

#[test]
fn develop_installs_and_eggs_own_the_directory_they_add() {
    let temp = tempfile::tempdir().expect("tempdir");
    let site = temp.path().join("venv/lib/python3.11/site-packages");
    let project = temp.path().join("legacy");
    write(&project.join("Leg_Proj.egg-info/PKG-INFO"), "Metadata-Version: 2.1\nName: Leg-Proj\nVersion: 0.3\n");
    // Sorts before Leg-Proj: only the egg-link's name keeps it out.
    write(&project.join("A_Stale.egg-info/PKG-INFO"), "Name: A-Stale\nVersion: 9\n");
    write(&site.join("Leg-Proj.egg-link"), format!("{}\n.", project.display()));
    let egg = site.join("Egg-1.0-py3.11.egg");
    write(&egg.join("EGG-INFO/PKG-INFO"), "Name: Egg\nVersion: 1.0\n");
    let easy_install = format!("import sys; sys.__plen = len(sys.path)\n{}\n./Egg-1.0-py3.11.egg\n", project.display());
    write(&site.join("easy-install.pth"), easy_install);
    let mut index = PythonIndex::new();
    index.discover(&bytes(&site.join("easy-install.pth")));
    let legacy = index.owner(&bytes(&project.join("legpkg/__init__.py"))).expect("develop install").clone();
    assert_eq!(
        legacy,
        Distribution {
            name: "Leg-Proj".into(),
            version: "0.3".into(),
            installer: None,
            location: bytes(&project),
            editable: true,
        }
    );
    assert_eq!(owner_of(&mut index, &project.join("setup.cfg")), None, "code only on sys.path");
    let egg_module = index.owner(&bytes(&egg.join("egg/__init__.py"))).expect("egg").clone();
    assert_eq!((egg_module.name.as_str(), egg_module.editable), ("Egg", false));
    assert_eq!(owner_of(&mut index, &egg.join("egg/data.txt")), named("Egg", "1.0"), "an egg is all package");
}

#[test]
fn standard_libraries_and_interpreters() {
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = fs::canonicalize(temp.path()).expect("canonical").join("opt/py");
    // No patchlevel.h: the version string compiled into the executable tells.
    write(&prefix.join("bin/python3.11"), b"\x7fELF\0\x003.11.0 is old\x003.11.4\0rest");
    write(&prefix.join("lib/python3.11/os.py"), "");
    let mut index = PythonIndex::new();
    let stdlib = index.stdlib_interpreter(&bytes(&prefix.join("lib/python3.11/lib-dynload/_ssl.so"))).cloned();
    let expected = Interpreter {
        path: bytes(&prefix.join("bin/python3.11")),
        version: "3.11.4".into(),
        prefix: bytes(&prefix),
        base_prefix: bytes(&prefix),
    };
    assert_eq!(stdlib.as_ref(), Some(&expected));
    assert!(index.stdlib_interpreter(&bytes(&prefix.join("lib/python3.11/site-packages/six.py"))).is_none());
    assert!(index.stdlib_interpreter(&bytes(&prefix.join("lib/python3.12/os.py"))).is_none());
    assert_eq!(index.interpreters(), std::slice::from_ref(&expected));

    std::os::unix::fs::symlink("python3.11", prefix.join("bin/python3")).expect("symlink");
    let exec_path = bytes(&prefix.join("bin/python3"));
    assert_eq!(interpreter_for_executable(&exec_path), Some(Interpreter { path: exec_path, ..expected.clone() }));
    write(
        &prefix.join("include/python3.11/patchlevel.h"),
        "#define PY_MINOR_VERSION 11\n#define PY_VERSION \"3.11.5\"\n",
    );
    assert_eq!(interpreter_for_executable(&expected.path).map(|found| found.version), Some("3.11.5".into()));

    let venv = prefix.join("venvs/v");
    write(&venv.join("pyvenv.cfg"), format!("home = {}/bin\nversion_info = 3.11.5.final.0\n", prefix.display()));
    std::os::unix::fs::symlink(prefix.join("bin/python3.11"), venv.join("python")).expect("symlink");
    let venv_python = bytes(&venv.join("python"));
    let found = interpreter_for_executable(&venv_python);
    let expected_venv =
        Interpreter { path: venv_python, version: "3.11.5".into(), prefix: bytes(&venv), base_prefix: bytes(&prefix) };
    assert_eq!(found, Some(expected_venv));
    assert_eq!(interpreter_for_executable(&bytes(&prefix.join("bin/python3.11-config"))), None);
}

#[test]
fn csv_and_lines_follow_python() {
    let lines: Vec<&[u8]> = text_lines(b"a\r\nb\rc\x0cd\xe2\x80\xa8e\xc2\x85f\xc3\xa9\n\n").collect();
    assert_eq!(lines, [&b"a"[..], b"b", b"c", b"d", b"e", b"f\xc3\xa9", b""]);
    assert_eq!(&*csv_first_field(b"a,b"), b"a");
    assert_eq!(&*csv_first_field(b"\"a,\"\"b\"\"\"x,y"), b"a,\"b\"x");
    assert_eq!(&*csv_first_field(b" \"a\",b"), b" \"a\"");
    assert_eq!(&*csv_first_field(b"\"open"), b"open");
}

#[test]
fn small_parsers() {
    let finder = br#"MAPPING = {'a': '/p/caf\xe9', "b": '/p/\udce9 it\'s'}"#;
    assert_eq!(finder_mapping(finder), [b"/p/caf\xc3\xa9".to_vec(), b"/p/\xe9 it's".to_vec()]);
    assert_eq!(file_url_path("file://localhost/a%20b/./c%2"), Some(b"/a b/c%2".to_vec()));
    assert_eq!(file_url_path("https://example.com/x"), None);
    let head = b"Name: first\n folded\nVersion:1.0\nName: second\nnot a header\nInstaller: x\n";
    assert_eq!(header(head, b"name").as_deref(), Some("first\n folded"));
    assert_eq!(header(head, b"Version").as_deref(), Some("1.0"));
    assert_eq!(header(head, b"Installer"), None);
    assert_eq!(major_minor(b"python3.13t"), Some("3.13"));
    assert_eq!(major_minor(b"python3"), None);
    assert!(is_python_executable_name(b"python3.11") && is_python_executable_name(b"python"));
    assert!(!is_python_executable_name(b"python3-config") && !is_python_executable_name(b"pip"));
    assert_eq!(stdlib_location(b"/usr/lib64/python3.11/json/x.py").map(|found| found.0), Some(&b"/usr"[..]));
}

/// The venv's Python describes itself and its distributions (the oracle).
const ORACLE: &str = r#"
import importlib, importlib.metadata as md, importlib.util, json, os, platform, sys
modules = []
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    modules.append({"name": name, "file": module.__file__, "cached": importlib.util.cache_from_source(module.__file__),
                    "dists": md.packages_distributions().get(name, [])})
dists = [{"name": d.metadata["Name"], "version": d.version,
          "files": [os.path.normpath(str(d.locate_file(f))) for f in d.files or []]} for d in md.distributions()]
print(json.dumps({"dists": dists, "modules": modules, "prefix": sys.prefix, "base_prefix": sys.base_prefix,
                  "version": platform.python_version(), "os": os.__file__}))
"#;

#[derive(Deserialize)]
struct Oracle {
    dists: Vec<OracleDist>,
    modules: Vec<OracleModule>,
    prefix: String,
    base_prefix: String,
    version: String,
    os: String,
}

#[derive(Deserialize)]
struct OracleDist {
    name: String,
    version: String,
    files: Vec<String>,
}

#[derive(Deserialize)]
struct OracleModule {
    name: String,
    file: String,
    cached: String,
    dists: Vec<String>,
}

fn run(command: &mut Command) -> Vec<u8> {
    let output = command.output().expect("run");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// A real venv (pip and setuptools from ensurepip, offline) with PEP 660
/// and legacy editable installs; every answer is checked against
/// `importlib.metadata` in that venv. The PEP 660 build needs `wheel`,
/// which Debian's python3-wheel provides through the system site.
#[test]
fn a_real_venv_agrees_with_importlib_metadata() {
    let temp = tempfile::tempdir().expect("tempdir");
    let base = temp.path();
    let venv = base.join("venv");
    run(Command::new("/usr/bin/python3").args(["-m", "venv", "--system-site-packages"]).arg(&venv));
    write(&base.join("proj/pyproject.toml"), "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n[project]\nname = \"Ed_Proj\"\nversion = \"0.1\"\n");
    write(&base.join("proj/src/edpkg/__init__.py"), "");
    write(&base.join("flat/pyproject.toml"), "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n[project]\nname = \"flatproj\"\nversion = \"0.2\"\n[tool.setuptools]\npackages = [\"flatpkg\"]\npy-modules = [\"flatmod\"]\n");
    write(&base.join("flat/flatpkg/__init__.py"), "");
    write(&base.join("flat/flatmod.py"), "");
    write(
        &base.join("legacy/setup.py"),
        "from setuptools import setup\nsetup(name='Leg-Proj', version='0.3', packages=['legpkg'])\n",
    );
    write(&base.join("legacy/legpkg/__init__.py"), "");
    let python = venv.join("bin/python");
    let pip = |arguments: &[&str]| {
        let mut command = Command::new(&python);
        command.args(["-m", "pip", "install", "-q", "--no-index", "--no-build-isolation"]).args(arguments);
        run(command.current_dir(base).env("PIP_DISABLE_PIP_VERSION_CHECK", "1"));
    };
    pip(&["-e", "./proj", "-e", "./flat"]);
    pip(&["--no-use-pep517", "-e", "./legacy"]);
    let modules = ["edpkg", "flatpkg", "flatmod", "legpkg"];
    let oracle: Oracle =
        serde_json::from_slice(&run(Command::new(&python).arg("-c").arg(ORACLE).args(modules))).expect("oracle JSON");

    let mut index = PythonIndex::new();
    // Every path first, as the integrator does: start-up reads the site directory.
    index.discover(&bytes(&venv.join("lib/python3.11/site-packages/distutils-precedence.pth")));
    let mut expected: HashMap<Vec<u8>, BTreeSet<(String, String)>> = HashMap::new();
    for dist in &oracle.dists {
        for file in &dist.files {
            expected.entry(file.as_bytes().to_vec()).or_default().insert((dist.name.clone(), dist.version.clone()));
        }
    }
    // Recall: every file importlib lists is owned by (one of) its distributions.
    assert!(expected.len() > 1000, "pip and setuptools list over a thousand files");
    for (file, owners) in &expected {
        let found = owner_of(&mut index, os_path(file)).expect("an owner");
        assert!(owners.contains(&found), "{}: {found:?} not in {owners:?}", String::from_utf8_lossy(file));
    }
    // Precision: no other file of the venv has an owner, but bytecode of a listed source.
    let mut directories = vec![venv.clone()];
    while let Some(directory) = directories.pop() {
        for entry in fs::read_dir(&directory).expect("read_dir").flatten() {
            let path = bytes(&entry.path());
            if entry.file_type().expect("file type").is_dir() {
                directories.push(entry.path());
            } else if !expected.contains_key(&path) {
                if let Some(found) = owner_of(&mut index, &entry.path()) {
                    let source = bytecode_source(&path).and_then(|source| expected.get(&source));
                    assert!(
                        source.is_some_and(|owners| owners.contains(&found)),
                        "{}: {found:?}",
                        entry.path().display()
                    );
                }
            }
        }
    }
    // Editable and develop installs: the module files and their bytecode.
    for module in &oracle.modules {
        let expected_dists: Vec<String> = module.dists.iter().map(|name| normalize_name(name)).collect();
        for file in [&module.file, &module.cached] {
            let found = index.owner(file.as_bytes()).unwrap_or_else(|| panic!("{} has no owner", module.name)).clone();
            assert!(found.editable, "{found:?}");
            assert!(expected_dists.contains(&normalize_name(&found.name)), "{file}: {found:?} vs {expected_dists:?}");
        }
    }
    assert_eq!(owner_of(&mut index, &base.join("proj/pyproject.toml")), None);
    assert!(index.problems().is_empty(), "{:?}", index.problems());

    // Interpreters: the venv's and the system's, as Python sees itself.
    let venv_python = bytes(&python);
    let expected_venv = Interpreter {
        path: venv_python.clone(),
        version: oracle.version.clone(),
        prefix: oracle.prefix.into_bytes(),
        base_prefix: oracle.base_prefix.clone().into_bytes(),
    };
    assert_eq!(interpreter_for_executable(&venv_python), Some(expected_venv));
    let stdlib = index.stdlib_interpreter(oracle.os.as_bytes()).expect("os.py is the standard library's");
    assert_eq!((stdlib.prefix.clone(), stdlib.version.clone()), (oracle.base_prefix.into_bytes(), oracle.version));
    let system = run(Command::new("/usr/bin/python3")
        .args(["-c", "import platform, sys; print(platform.python_version(), sys.prefix)"]));
    let system = String::from_utf8(system).expect("UTF-8");
    let (version, prefix) = system.trim().split_once(' ').expect("version and prefix");
    let expected_system = Interpreter {
        path: b"/usr/bin/python3".to_vec(),
        version: version.into(),
        prefix: prefix.as_bytes().to_vec(),
        base_prefix: prefix.as_bytes().to_vec(),
    };
    assert_eq!(interpreter_for_executable(b"/usr/bin/python3"), Some(expected_system));
}
