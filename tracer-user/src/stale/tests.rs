use std::collections::HashMap;

use super::*;

/// A file hashed `sha`, of `sha.len()` bytes, modified at one time.
fn hashed(path: &str, sha: &str) -> FileSeen {
    FileSeen {
        path: path.to_string(),
        sha256: Some(sha.to_string()),
        size: Some(sha.len() as u64),
        mtime: Some(MTIME.to_string()),
        over_hash_limit: false,
        task: None,
    }
}

const MTIME: &str = "2026-03-01T09:00:00Z";

fn cell(count: u64, inputs: &[(&str, &str)], outputs: &[(&str, &str)], defines: &[&str], uses: &[&str]) -> CellView {
    let files = |list: &[(&str, &str)]| list.iter().map(|(path, sha)| hashed(path, sha)).collect();
    CellView {
        execution_count: count,
        cell_id: None,
        code_sha256: format!("{count:064}"),
        inputs: files(inputs),
        outputs: files(outputs),
        defines: defines.iter().map(|name| name.to_string()).collect(),
        uses: uses.iter().map(|name| name.to_string()).collect(),
    }
}

fn judge_with(cells: &[CellView], sources: Option<&[Option<String>]>, now: &[(&str, &str)]) -> StaleReport {
    let now: HashMap<String, FileNow> = now
        .iter()
        .map(|(path, sha)| {
            let file = FileNow::Present {
                size: sha.len() as u64,
                mtime: Some(MTIME.to_string()),
                sha256: Some(sha.to_string()),
                over_hash_limit: false,
            };
            (path.to_string(), file)
        })
        .collect();
    judge(cells, sources, LIMIT, &|path| now.get(path).cloned().unwrap_or(FileNow::Gone))
}

const LIMIT: Option<u64> = Some(4 << 30);

fn stale_counts(report: &StaleReport) -> Vec<u64> {
    report.stale.iter().map(|cell| cell.execution_count).collect()
}

#[test]
fn a_changed_input_makes_its_reader_stale_and_what_depends_on_it() {
    let cells = [
        cell(1, &[("/d/raw.csv", "r1")], &[("/d/clean.csv", "c1")], &["df"], &[]),
        cell(2, &[("/d/clean.csv", "c1")], &[], &["model"], &[]),
        cell(3, &[], &[], &["plot"], &["df"]),
        cell(4, &[("/d/other.csv", "o1")], &[], &[], &["model"]),
        cell(5, &[("/d/other.csv", "o1")], &[], &[], &["plot_style"]),
    ];
    let report = judge_with(&cells, None, &[("/d/raw.csv", "r2"), ("/d/clean.csv", "c1"), ("/d/other.csv", "o1")]);
    assert_eq!(stale_counts(&report), [1, 2, 3, 4]);
    assert_eq!(report.stale[0].reasons, ["it read /d/raw.csv, which changed since the run"]);
    assert_eq!(report.stale[1].reasons, ["it read /d/clean.csv, which stale cell [1] wrote"]);
    assert_eq!(report.stale[2].reasons, ["it uses df, which stale cell [1] defines"]);
    assert_eq!(report.stale[3].reasons, ["it uses model, which stale cell [2] defines"]);
    assert!(report.notes.is_empty());
}

#[test]
fn the_runs_own_later_changes_are_a_note_not_staleness() {
    let cells = [cell(1, &[("/d/x.txt", "v1")], &[], &[], &[]), cell(2, &[], &[("/d/x.txt", "v2")], &[], &[])];
    let report = judge_with(&cells, None, &[("/d/x.txt", "v2")]);
    assert!(report.stale.is_empty(), "{report:?}");
    assert_eq!(
        report.notes,
        ["cell [1] read /d/x.txt before cell [2] of the run changed it: a re-run from the top reads what cell [2] wrote"]
    );
    // Changed again after the run: stale.
    let report = judge_with(&cells, None, &[("/d/x.txt", "v3")]);
    assert_eq!(stale_counts(&report), [1]);
    let report = judge_with(&cells, None, &[]);
    assert_eq!(report.stale[0].reasons, ["it read /d/x.txt, which is gone"]);
}

#[test]
fn a_changed_source_is_stale_and_so_are_its_dependents() {
    let cells = [cell(1, &[], &[], &["x"], &[]), cell(2, &[], &[], &[], &["x"]), cell(3, &[], &[], &[], &[])];
    let sources = [Some("its source changed in the notebook".to_string()), None, None];
    let report = judge_with(&cells, Some(&sources), &[]);
    assert_eq!(stale_counts(&report), [1, 2]);
    assert_eq!(report.stale[0].reasons, ["its source changed in the notebook"]);
}

#[test]
fn sources_are_matched_by_id_or_position() {
    use crate::notebook::NotebookCell;
    let mut with_id = cell(1, &[], &[], &[], &[]);
    with_id.cell_id = Some("a".into());
    let cells = [with_id, cell(2, &[], &[], &[], &[]), cell(3, &[], &[], &[], &[])];
    let notebook = Notebook {
        cells: vec![
            NotebookCell { id: Some("a".into()), source_sha256: format!("{:064}", 1) },
            NotebookCell { id: None, source_sha256: format!("{:064}", 9) },
        ],
    };
    let changed = changed_sources(&cells, &notebook);
    assert_eq!(
        changed,
        [None, Some("its source changed in the notebook".into()), Some("its cell is no longer in the notebook".into())]
    );
}

/// One cell that read `seen`, judged against `now`.
fn judge_one(seen: FileSeen, now: FileNow) -> StaleReport {
    let cells = [CellView { execution_count: 1, inputs: vec![seen], ..CellView::default() }];
    judge(&cells, None, LIMIT, &|_| now.clone())
}

fn over_limit(path: &str, size: u64) -> FileSeen {
    FileSeen {
        path: path.into(),
        sha256: None,
        size: Some(size),
        mtime: Some(MTIME.into()),
        over_hash_limit: true,
        task: None,
    }
}

fn present(size: u64, mtime: &str, sha256: Option<&str>, over_hash_limit: bool) -> FileNow {
    FileNow::Present { size, mtime: Some(mtime.into()), sha256: sha256.map(str::to_string), over_hash_limit }
}

#[test]
fn a_file_the_audit_did_not_hash_is_compared_by_size_and_time() {
    // Unchanged: not stale, and said how it was compared.
    let report = judge_one(over_limit("/d/big", 10), present(10, MTIME, Some("abc"), false));
    assert!(report.stale.is_empty(), "{report:?}");
    assert_eq!(
        report.notes,
        ["/d/big was compared by size and modification time, unchanged: it was over the audit's hash limit"]
    );
    // Another size: changed.
    let report = judge_one(over_limit("/d/big", 10), present(11, MTIME, None, false));
    assert_eq!(stale_counts(&report), [1]);
    assert!(
        report.stale[0].reasons[0]
            .starts_with("it read /d/big, which changed since the run (its size went from 10 to 11 bytes"),
        "{report:?}"
    );
    // The same size, modified since: said as it is.
    let report = judge_one(over_limit("/d/big", 10), present(10, "2026-03-02T00:00:00Z", None, false));
    assert_eq!(stale_counts(&report), [1]);
    assert!(
        report.stale[0].reasons[0]
            .starts_with("it read /d/big, which was modified since the run (it was modified at 2026-03-02T00:00:00Z"),
        "{report:?}"
    );
    assert!(report.stale[0].reasons[0].contains("whether its contents differ cannot be told"), "{report:?}");
}

#[test]
fn a_file_gone_is_stale_whether_or_not_it_was_hashed() {
    let report = judge_one(over_limit("/d/big", 10), FileNow::Gone);
    assert_eq!(report.stale[0].reasons, ["it read /d/big, which is gone"]);
    let unreadable = FileSeen { path: "/d/secret".into(), ..FileSeen::default() };
    let report = judge_one(unreadable, FileNow::Gone);
    assert_eq!(report.stale[0].reasons, ["it read /d/secret, which is gone"]);
}

#[test]
fn what_cannot_be_compared_is_a_note_not_staleness() {
    // Not hashed, and no size or time recorded.
    let report = judge_one(FileSeen { path: "/d/x".into(), ..FileSeen::default() }, present(3, MTIME, None, false));
    assert!(report.stale.is_empty(), "{report:?}");
    assert_eq!(
        report.notes,
        ["cannot tell whether /d/x, which cell [1] read, changed since the run: the audit could not hash it, \
          and the manifest records no size and modification time"]
    );
    let report = judge_one(hashed("/d/x", "abc"), FileNow::Unreachable("Permission denied".into()));
    assert!(report.stale.is_empty(), "{report:?}");
    assert!(report.notes[0].ends_with("it cannot be looked at now: Permission denied"), "{report:?}");
}

#[test]
fn a_file_now_over_the_limit_is_compared_by_size_and_time_and_the_limit_is_said() {
    let report = judge_one(hashed("/d/x", "abc"), present(3, MTIME, None, true));
    assert!(report.stale.is_empty(), "{report:?}");
    assert_eq!(
        report.notes,
        ["/d/x was compared by size and modification time, unchanged: it is over the hash limit (4.0 GiB, \
          --hash-limit none hashes it)"]
    );
}

#[test]
fn file_now_hashes_up_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.bin");
    std::fs::write(&path, b"0123456789").expect("write");
    let display = path.to_str().expect("utf-8");
    let FileNow::Present { size, mtime, sha256, over_hash_limit } = file_now(display, Some(10)) else {
        panic!("the file is there")
    };
    assert_eq!((size, over_hash_limit), (10, false));
    assert_eq!(sha256.as_deref(), Some("84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882"));
    assert!(mtime.is_some_and(|mtime| mtime.ends_with('Z') && !mtime.contains('.')), "to the second");
    let FileNow::Present { sha256, over_hash_limit, .. } = file_now(display, Some(9)) else { panic!("there") };
    assert_eq!((sha256, over_hash_limit), (None, true), "not hashed over the limit");
    assert_eq!(file_now(&format!("{display}.gone"), None), FileNow::Gone);
}

#[test]
fn the_dask_tasks_a_cell_submitted_read_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let station = dir.path().join("station.csv");
    std::fs::write(&station, "year,t\n2001,10.5\n").expect("station");
    let station_path = station.to_str().expect("utf-8");
    let FileNow::Present { size, mtime, sha256, .. } = file_now(station_path, None) else { panic!("there") };
    let entry = serde_json::json!({"path": station_path, "size": size, "mtime": mtime, "sha256": sha256});
    let cell = |count: u64, second: u64, defines: &[&str], uses: &[&str]| {
        serde_json::json!({"index": count - 1, "execution_count": count, "cell_id": null, "code_sha256": "0".repeat(64),
            "started_at": format!("2026-03-01T09:00:{second:02}.000Z"),
            "finished_at": format!("2026-03-01T09:00:{:02}.000Z", second + 5),
            "data": {"inputs": [], "outputs": []}, "software": {"python": []}, "pids": [1],
            "names": {"defines": defines, "deletes": [], "uses": uses, "truncated": false}})
    };
    let task = |key: &str, count: u64| {
        serde_json::json!({"key": key, "host": "worker-a", "worker": "tcp://10.0.0.2:1", "pid": 10, "thread": 11,
            "started_at": "2026-03-01T09:00:12.000Z", "finished_at": "2026-03-01T09:00:13.000Z", "cell": count,
            "processes": [], "software": {"python": []}, "data": {"inputs": [entry], "outputs": []}})
    };
    let mut manifest = serde_json::to_value(Manifest::empty_for_tests()).expect("JSON");
    manifest["cells"] = serde_json::json!([
        cell(1, 0, &["client"], &[]),
        cell(2, 10, &["trends"], &["client"]),
        cell(3, 20, &[], &["trends"]),
        cell(4, 30, &[], &[])
    ]);
    // Two tasks of cell [2] read the same file.
    manifest["tasks"] = serde_json::json!([task("fit-0", 2), task("fit-1", 2)]);
    let manifest: Manifest = serde_json::from_value(manifest).expect("a manifest");
    let current = |path: &str| file_now(path, LIMIT);

    let report = stale_cells(&manifest, None, LIMIT, &current);
    assert!(report.stale.is_empty() && report.notes.is_empty(), "{report:?}");

    std::fs::write(&station, "year,t\n2001,11.5\n").expect("station changes");
    let report = stale_cells(&manifest, None, LIMIT, &current);
    assert_eq!(stale_counts(&report), [2, 3], "{report:?}");
    assert_eq!(
        report.stale[0].reasons,
        [format!("its Dask task fit-0 on worker-a read {station_path}, which changed since the run")],
        "one reason for the file, however many of its tasks read it"
    );
    assert_eq!(report.stale[1].reasons, ["it uses trends, which stale cell [2] defines"]);
}
