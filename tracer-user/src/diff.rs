//! `reprotrace diff A B`: what changed between two audits, semantically —
//! data files added, removed or with other contents (outputs first), then
//! packages added, removed or at another version. Processes, pids, times and
//! statistics are not compared.

use std::collections::BTreeMap;

use crate::{
    manifest::{DataEntry, Manifest},
    software::python::normalize_name,
};

/// One difference, in the order the report prints them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Added { section: &'static str, name: String, detail: String },
    Removed { section: &'static str, name: String, detail: String },
    Changed { section: &'static str, name: String, before: String, after: String },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added { section, name, detail } => write!(f, "+ {section}: {name} {detail}"),
            Change::Removed { section, name, detail } => write!(f, "- {section}: {name} {detail}"),
            Change::Changed { section, name, before, after } => write!(f, "~ {section}: {name} {before} -> {after}"),
        }
    }
}

/// Every difference between `before` and `after`, outputs first. A repeat
/// (`after.repeat_of`) ran the bundle's software, the original's: only its
/// data is compared.
pub fn diff(before: &Manifest, after: &Manifest) -> Vec<Change> {
    let mut changes = Vec::new();
    let files = |entries: &[DataEntry]| -> BTreeMap<String, String> {
        entries.iter().map(|entry| (entry.path.clone(), content_label(entry))).collect()
    };
    compare("output", &files(&before.data.outputs), &files(&after.data.outputs), &mut changes);
    compare("input", &files(&before.data.inputs), &files(&after.data.inputs), &mut changes);
    if after.repeat_of.is_some() {
        return changes;
    }
    let python = |manifest: &Manifest| -> BTreeMap<String, String> {
        manifest.software.python.iter().map(|dist| (normalize_name(&dist.name), dist.version.clone())).collect()
    };
    compare("python", &python(before), &python(after), &mut changes);
    let system = |manifest: &Manifest| -> BTreeMap<String, String> {
        manifest
            .software
            .system_packages
            .iter()
            .map(|package| (format!("{}:{}", package.name, package.architecture), package.version.clone()))
            .collect()
    };
    compare("system package", &system(before), &system(after), &mut changes);
    changes
}

fn compare(
    section: &'static str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    changes: &mut Vec<Change>,
) {
    for (name, old) in before {
        match after.get(name) {
            None => changes.push(Change::Removed { section, name: name.clone(), detail: old.clone() }),
            Some(new) if new != old => {
                changes.push(Change::Changed { section, name: name.clone(), before: old.clone(), after: new.clone() })
            }
            Some(_) => {}
        }
    }
    for (name, new) in after {
        if !before.contains_key(name) {
            changes.push(Change::Added { section, name: name.clone(), detail: new.clone() });
        }
    }
}

/// A data file's contents as the report names them: its hash, else its size.
fn content_label(entry: &DataEntry) -> String {
    match (&entry.sha256, entry.size) {
        (Some(hash), _) => format!("sha256:{}", &hash[..hash.len().min(12)]),
        (None, Some(size)) if entry.over_hash_limit => format!("{size} bytes (not hashed: over the hash limit)"),
        (None, Some(size)) => format!("{size} bytes"),
        (None, None) => "(removed by the run)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{PythonDistribution, Software};

    fn manifest(python: &[(&str, &str)], inputs: &[(&str, &str)]) -> Manifest {
        let mut manifest = Manifest::empty_for_tests();
        manifest.software = Software {
            python: python
                .iter()
                .map(|(name, version)| PythonDistribution {
                    name: name.to_string(),
                    version: version.to_string(),
                    installer: Some("pip".into()),
                    location: "/venv/lib/python3.11/site-packages".into(),
                    editable: false,
                    files_used: 1,
                    files: Vec::new(),
                })
                .collect(),
            ..Software::default()
        };
        manifest.data.inputs = inputs
            .iter()
            .map(|(path, hash)| DataEntry {
                path: path.to_string(),
                size: Some(1),
                mtime: None,
                sha256: Some(hash.repeat(64)),
                changed_during_run: false,
                namespace: None,
                over_hash_limit: false,
            })
            .collect();
        manifest
    }

    #[test]
    fn reports_package_and_content_changes() {
        let before = manifest(&[("NumPy", "2.0.0"), ("six", "1.16.0")], &[("/d/a.csv", "a"), ("/d/b.csv", "b")]);
        let after = manifest(&[("numpy", "2.1.0"), ("idna", "3.7")], &[("/d/a.csv", "c"), ("/d/c.csv", "c")]);
        let report: Vec<String> = diff(&before, &after).iter().map(ToString::to_string).collect();
        assert_eq!(
            report,
            [
                "~ input: /d/a.csv sha256:aaaaaaaaaaaa -> sha256:cccccccccccc",
                "- input: /d/b.csv sha256:bbbbbbbbbbbb",
                "+ input: /d/c.csv sha256:cccccccccccc",
                "~ python: numpy 2.0.0 -> 2.1.0",
                "- python: six 1.16.0",
                "+ python: idna 3.7",
            ]
        );
        assert!(diff(&before, &before).is_empty());
    }
}
