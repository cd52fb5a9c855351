//! Golden files: compare output with a file under `tests/golden/`, or rewrite
//! it when exactly `UPDATE_GOLDEN=1` is set (then review the diff). Any other
//! value compares; under CI (`CI` truthy, as `.ci/run` sets it) a set
//! `UPDATE_GOLDEN` fails the test, so CI can never pass by rewriting.

use std::path::PathBuf;

/// Path of a golden file.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Asserts that `actual` equals the golden file `name`.
pub fn assert_golden(name: &str, actual: &str) {
    let p = path(name);
    let update = std::env::var_os("UPDATE_GOLDEN");
    if update.is_some() && super::truthy("CI") {
        panic!(
            "UPDATE_GOLDEN is set under CI: golden files are refreshed locally and reviewed as diffs"
        );
    }
    if update.is_some_and(|v| v == "1") {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&p).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1 to create it",
            p.display()
        )
    });
    if expected != actual {
        panic!(
            "\n{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it):\n\
             ---------------------------- expected ----------------------------\n{expected}\n\
             ----------------------------- actual -----------------------------\n{actual}\n\
             ------------------------------------------------------------------\n"
        );
    }
}
