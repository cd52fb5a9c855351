//! The JSON Schema of journey files (`wayprobe schema`,
//! `schema/journey.schema.json`) agrees with validation: over every
//! fixture, the example journeys (which the demo embeds) and the README's
//! journey examples, what `check` accepts the schema accepts, and what
//! `check` rejects for an unknown key or a wrong type the schema rejects.

use std::path::{Path, PathBuf};

use wayprobe::diag::{Diagnostic, Severity, SourceFile};
use wayprobe::journey::yaml::{self, Node, SNode};
use wayprobe::journey::{LoadOptions, load::load_sources, load_paths};

use crate::support::{bin, root};

/// The committed schema file.
fn schema_text() -> String {
    std::fs::read_to_string(root().join("schema/journey.schema.json")).unwrap()
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&schema_text()).unwrap();
    jsonschema::draft7::new(&schema).expect("a valid draft-07 schema")
}

/// A parsed YAML document as the JSON an editor's schema check sees.
fn to_json(n: &SNode) -> serde_json::Value {
    use serde_json::Value;
    match &n.node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s.clone()),
        Node::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// A validation error the schema is expected to catch: a key that does
/// not exist, or a value of the wrong type.
fn structural(d: &Diagnostic) -> bool {
    let t = &d.title;
    t.starts_with("unknown key")
        || t.starts_with("unknown browser action")
        || (t.contains(" must be ") && t.contains(", found "))
}

/// What `check` said about each file of a set loaded together.
struct Verdict {
    path: PathBuf,
    text: String,
    errors: Vec<Diagnostic>,
}

fn verdicts(sources: Vec<std::sync::Arc<SourceFile>>) -> Vec<Verdict> {
    let diags = match load_sources(sources.clone(), &LoadOptions::default(), Vec::new()) {
        Ok(l) => l.warnings,
        Err(e) => e.diagnostics().to_vec(),
    };
    sources
        .iter()
        .map(|s| Verdict {
            path: s.path.clone(),
            text: s.text.clone(),
            errors: diags
                .iter()
                .filter(|d| d.severity == Severity::Error && d.path() == Some(s.path.as_path()))
                .cloned()
                .collect(),
        })
        .collect()
}

fn yaml_files(p: &Path) -> Vec<PathBuf> {
    if p.is_file() {
        return vec![p.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    out.sort();
    out
}

fn read(files: &[PathBuf]) -> Vec<std::sync::Arc<SourceFile>> {
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(root()).unwrap_or(f);
            SourceFile::new(root().join(rel), std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

/// The sets `check` is given: the example journeys as one directory, and
/// each fixture under `tests/fixtures/*/` (a file, or a directory of files
/// that go together).
fn units() -> Vec<Vec<PathBuf>> {
    let is_yaml = |p: &Path| p.extension().is_some_and(|x| x == "yaml" || x == "yml");
    let mut units = vec![yaml_files(&root().join("journeys"))];
    let sorted = |dir: &Path| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    for group in sorted(&root().join("tests/fixtures")) {
        if !group.is_dir() {
            continue;
        }
        for e in sorted(&group) {
            if e.is_dir() {
                units.push(yaml_files(&e));
            } else if is_yaml(&e) {
                units.push(vec![e]);
            }
        }
    }
    units.retain(|u| !u.is_empty());
    units
}

/// Every ```yaml block of the README, with the line its text starts on.
fn readme_blocks() -> Vec<(usize, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        match &mut block {
            None if line.trim_start().starts_with("```yaml") => {
                block = Some((i + 2, String::new()))
            }
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(block.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The README's fragments files (a block whose top level is `fragments:`):
/// its journey examples that `use:` a fragment are checked beside them.
fn readme_fragments() -> Vec<std::sync::Arc<SourceFile>> {
    readme_blocks()
        .into_iter()
        .filter(|(_, text)| {
            text.lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .is_some_and(|l| l.starts_with("fragments:"))
        })
        .map(|(line, text)| SourceFile::new(root().join(format!("readme-line-{line}.yaml")), text))
        .collect()
}

/// The README's journey examples, each ```yaml block that is a journey or a
/// part of one (a list of steps, `slos:`, `liveness:`), made whole the same
/// way: parts get a `base_url` and one step, so `check` can judge them.
pub fn readme_journeys() -> Vec<(usize, String)> {
    const JOURNEY_PARTS: &[&str] = &["name", "steps", "slos", "liveness", "vars", "finally"];
    let blocks = readme_blocks();
    let step = "steps:\n  - {name: home, http: {url: \"http://127.0.0.1:1/\"}}\n";
    let vars = "vars: {base_url: \"http://127.0.0.1:1\"}\n";
    blocks
        .into_iter()
        .filter_map(|(line, text)| {
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
            let key = first.split(':').next().unwrap_or("");
            let has = |k: &str| text.lines().any(|l| l.starts_with(&format!("{k}:")));
            if first.trim_start().starts_with("- ") {
                Some((line, format!("{vars}steps:\n{text}")))
            } else if !JOURNEY_PARTS.contains(&key) {
                None
            } else if has("steps") {
                Some((line, text))
            } else {
                Some((line, format!("{text}{step}")))
            }
        })
        .collect()
}

fn readme_sources() -> Vec<std::sync::Arc<SourceFile>> {
    readme_journeys()
        .into_iter()
        .map(|(line, text)| SourceFile::new(root().join(format!("readme-line-{line}.yaml")), text))
        .collect()
}

#[test]
fn wayprobe_schema_prints_the_committed_schema() {
    let out = bin().arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), schema_text());
    let schema: serde_json::Value = serde_json::from_str(&schema_text()).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::meta::validate(&schema).expect("the schema is itself valid draft-07");
}

#[test]
fn the_schema_agrees_with_check_over_every_fixture_and_example() {
    let schema = validator();
    let mut verdicts_all: Vec<Verdict> = units()
        .into_iter()
        .flat_map(|u| verdicts(read(&u)))
        .collect();
    verdicts_all.extend(readme_sources().into_iter().flat_map(|s| {
        let mut set = vec![s];
        set.extend(readme_fragments());
        verdicts(set)
    }));
    // The journeys the demo embeds, as it loads them.
    let embedded = wayprobe::cli::EXAMPLES
        .iter()
        .map(|(p, t)| SourceFile::new(root().join(format!("embedded/{p}")), *t))
        .collect();
    verdicts_all.extend(verdicts(embedded));
    let (mut accepted, mut rejected) = (0, 0);
    let mut problems = Vec::new();
    for v in &verdicts_all {
        let Ok(doc) = yaml::parse(&v.text) else {
            continue; // not YAML at all: no schema can say more
        };
        let doc = to_json(&doc);
        let schema_errors: Vec<String> = schema
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        let name = v
            .path
            .strip_prefix(root())
            .unwrap_or(&v.path)
            .display()
            .to_string();
        if v.errors.is_empty() {
            accepted += 1;
            if !schema_errors.is_empty() {
                problems.push(format!(
                    "{name}: check accepts it, the schema does not: {schema_errors:#?}"
                ));
            }
        } else if let Some(d) = v.errors.iter().find(|d| structural(d)) {
            rejected += 1;
            if schema_errors.is_empty() {
                problems.push(format!(
                    "{name}: check rejects it (`{}` at {}), the schema accepts it",
                    d.title,
                    d.location().unwrap_or_default()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Not vacuous: the examples, the run fixtures and the README examples
    // are valid; unknown-key, wrong-type and unknown-step-kind are not.
    assert!(accepted >= 8, "only {accepted} valid files seen");
    assert!(
        rejected >= 3,
        "only {rejected} structurally invalid fixtures seen"
    );
}

#[test]
fn the_readme_journey_examples_pass_check() {
    let examples = readme_journeys();
    assert!(
        examples.len() >= 4,
        "the README's annotated example and its parts are found: {examples:?}"
    );
    assert!(
        !readme_fragments().is_empty(),
        "the README's fragments example is found"
    );
    for s in readme_sources() {
        let mut set = vec![s];
        set.extend(readme_fragments());
        let v = verdicts(set);
        let rendered: String = v
            .iter()
            .flat_map(|f| &f.errors)
            .map(|d| d.render(false))
            .collect();
        assert!(rendered.is_empty(), "{}:\n{rendered}", v[0].path.display());
    }
    // The example directory, as `check` sees it from the command line.
    assert!(load_paths(&[root().join("journeys")], &LoadOptions::default()).is_ok());
}
