//! Shared test helpers.
#![allow(dead_code)]

pub mod golden;
pub mod target;

use std::collections::BTreeMap;
use std::path::PathBuf;

use wayprobe::diag::SourceFile;
use wayprobe::journey::{Journey, LoadOptions, load::load_sources};
use wayprobe::outcome::JourneyOutcome;
use wayprobe::run::{RunOptions, Runner};

/// Loads one journey from YAML text, with `--var` style overrides.
pub fn journey(yaml: &str, vars: &[(&str, &str)]) -> Journey {
    let opts = LoadOptions {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    match load_sources(vec![SourceFile::new("test.yaml", yaml)], &opts, Vec::new()) {
        Ok(mut l) => l.journeys.remove(0),
        Err(e) => {
            let text: String = e.diagnostics().iter().map(|d| d.render(false)).collect();
            panic!("invalid test journey:\n{text}");
        }
    }
}

/// Runs a journey once with default options (plus env overrides for secrets).
pub async fn run(j: &Journey, env: &[(&str, &str)]) -> JourneyOutcome {
    let runner = Runner::new(RunOptions {
        env_overrides: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    });
    runner.run(j).await
}

/// The `wayprobe` binary built for these tests.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wayprobe"));
    c.env("NO_COLOR", "1");
    c
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces timings like `12ms`, `1.25s` and `(37ms, 5 steps)` by stable text.
pub fn normalize_timings(s: &str) -> String {
    let re = regex::Regex::new(r"\b\d+(\.\d+)?(ms|s)\b").unwrap();
    re.replace_all(s, "<T>").to_string()
}
