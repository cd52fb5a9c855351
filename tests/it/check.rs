//! `wayprobe check`: one small invalid journey per rule, each with its
//! expected diagnostics as a golden file; valid examples stay valid.

use crate::support::{bin, golden::assert_golden, root};

/// Every fixture under `tests/fixtures/invalid` (a file, or a directory for
/// rules that need several files) renders exactly its golden `.err`.
#[test]
fn each_invalid_fixture_renders_its_golden_diagnostics() {
    let dir = root().join("tests/fixtures/invalid");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 15, "expected a fixture per rule");
    let mut failures = Vec::new();
    for path in entries {
        let rel = path.strip_prefix(root()).unwrap().to_path_buf();
        let stem = rel.file_stem().unwrap().to_string_lossy().to_string();
        let out = bin()
            .current_dir(root())
            .arg("check")
            .arg(&rel)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{stem}: check must exit 2");
        assert!(out.stdout.is_empty(), "{stem}: nothing on stdout");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("--> tests/fixtures/invalid/"),
            "{stem}: no file:line:col\n{stderr}"
        );
        if let Err(e) =
            std::panic::catch_unwind(|| assert_golden(&format!("check/{stem}.err"), &stderr))
        {
            failures.push((stem, e));
        }
    }
    if let Some((stem, e)) = failures.into_iter().next() {
        eprintln!("first mismatch: {stem}");
        std::panic::resume_unwind(e);
    }
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let out = bin()
        .current_dir(root())
        .args(["check", "tests/fixtures/invalid/many-problems.yaml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.matches("-->").count(), 5, "{stderr}");
    assert!(
        stderr.ends_with("error: 5 errors in 1 file of 1\n"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `method`?"));
    assert!(stderr.contains("did you mean `headers`?"));
}

#[test]
fn the_example_journeys_are_valid() {
    let out = bin()
        .current_dir(root())
        .args(["check", "journeys"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The sixth file holds fragments: read, not counted as a journey.
    assert!(stdout.contains("ok: 5 journeys in 6 files"), "{stdout}");
}

#[test]
fn usage_errors_exit_2_and_missing_paths_are_reported() {
    let out = bin().args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["check", "/nonexistent/journeys"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read `/nonexistent/journeys`"));
    let out = bin().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A capture that replaces one of the journey's own variables is legal but
/// rarely meant: `check` passes with a warning that says so, at the capture.
#[test]
fn a_capture_replacing_a_variable_is_a_warning() {
    let dir = crate::http::tempdir();
    std::fs::write(
        dir.join("shadow.yaml"),
        "name: shop\nvars:\n  b: \"http://127.0.0.1:9\"\nsteps:\n  - name: one\n    http: {url: \"{{ b }}/\"}\n    capture:\n      b: {status: true}\n      code: {status: true}\n  - name: two\n    http: {url: \"{{ b }}/echo\"}\n",
    )
    .unwrap();
    let out = bin()
        .current_dir(&dir)
        .args(["check", "-q", "shadow.yaml"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "ok: 1 journey in 1 file, 1 warning\n");
    assert!(
        stderr
            .starts_with("warning: capture `b` replaces the variable `b`\n --> shadow.yaml:8:7\n"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
