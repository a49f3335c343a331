use std::collections::HashMap;

use super::*;

fn cell(count: u64, inputs: &[(&str, &str)], outputs: &[(&str, &str)], defines: &[&str], uses: &[&str]) -> CellView {
    let files =
        |list: &[(&str, &str)]| list.iter().map(|(path, sha)| (path.to_string(), Some(sha.to_string()))).collect();
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
    let now: HashMap<String, String> = now.iter().map(|(path, sha)| (path.to_string(), sha.to_string())).collect();
    judge(cells, sources, &|path| now.get(path).cloned())
}

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
