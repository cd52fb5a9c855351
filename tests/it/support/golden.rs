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

/// What to do with a golden file.
#[derive(Debug, PartialEq)]
enum Mode {
    Compare,
    Rewrite,
    /// `UPDATE_GOLDEN` set under CI.
    Refuse,
}

/// `UPDATE_GOLDEN`'s value and whether this is CI decide the mode.
fn mode(update: Option<&std::ffi::OsStr>, ci: bool) -> Mode {
    match update {
        Some(_) if ci => Mode::Refuse,
        Some(v) if v == "1" => Mode::Rewrite,
        _ => Mode::Compare,
    }
}

#[test]
fn goldens_rewrite_only_on_update_golden_1_and_never_under_ci() {
    let v = |s: &'static str| Some(std::ffi::OsStr::new(s));
    assert_eq!(mode(None, false), Mode::Compare);
    assert_eq!(mode(v("1"), false), Mode::Rewrite);
    for other in ["0", "", "true", "yes", "2"] {
        assert_eq!(
            mode(v(other), false),
            Mode::Compare,
            "UPDATE_GOLDEN={other}"
        );
    }
    for any in ["1", "0", ""] {
        assert_eq!(
            mode(v(any), true),
            Mode::Refuse,
            "UPDATE_GOLDEN={any} under CI"
        );
    }
    assert_eq!(mode(None, true), Mode::Compare);
}

/// Asserts that `actual` equals the golden file `name`.
pub fn assert_golden(name: &str, actual: &str) {
    let p = path(name);
    match mode(
        std::env::var_os("UPDATE_GOLDEN").as_deref(),
        super::truthy("CI"),
    ) {
        Mode::Refuse => panic!(
            "UPDATE_GOLDEN is set under CI: golden files are refreshed locally and reviewed as diffs"
        ),
        Mode::Rewrite => {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, actual).unwrap();
            return;
        }
        Mode::Compare => {}
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
