//! Reading journey files and directories into validated journeys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Journey;
use super::fragment::{self, Fragments};
use super::validate::{self, Validator};
use super::yaml;
use crate::diag::{Diagnostic, Severity, SourceFile, Span};

/// Options applied while loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var NAME=VALUE` overrides, applied to every journey.
    pub vars: BTreeMap<String, String>,
    /// A `--var` no journey declares is a warning, not an error: `serve`'s
    /// reloads, where the flag cannot change and removing the last journey
    /// that used it must not refuse every reload after.
    pub unknown_vars_warn: bool,
}

/// A successfully loaded set of journeys.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The journeys, sorted by name.
    pub journeys: Vec<Journey>,
    /// Warnings that do not stop loading.
    pub warnings: Vec<Diagnostic>,
    /// How many files were read.
    pub files: usize,
}

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// One or more files are invalid; every problem is listed.
    #[error("{} in {files} file{}", summary(diagnostics), if *files == 1 { "" } else { "s" })]
    Invalid {
        /// All errors and warnings, in file order.
        diagnostics: Vec<Diagnostic>,
        /// How many files were read.
        files: usize,
    },
}

impl LoadError {
    /// The diagnostics to print.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            LoadError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

/// A problem inside a fragment is found once per `use:`; show it once,
/// with every using site.
fn merge_uses(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len());
    for d in diags {
        let twin = out.iter_mut().find(|o| {
            !d.notes.is_empty()
                && o.severity == d.severity
                && o.span == d.span
                && o.title == d.title
                && o.label == d.label
                && o.path() == d.path()
        });
        match twin {
            Some(o) => {
                for n in d.notes {
                    if !o.notes.contains(&n) {
                        o.notes.push(n);
                    }
                }
            }
            None => out.push(d),
        }
    }
    out
}

fn summary(diags: &[Diagnostic]) -> String {
    let n = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    format!("{n} error{}", if n == 1 { "" } else { "s" })
}

/// The journey files a path names: the file itself, or the `*.yaml`/`*.yml`
/// files directly inside a directory (hidden entries such as Kubernetes'
/// `..data` are skipped; symlinked files are followed).
pub fn journey_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Diagnostic::io(path, format!("cannot read `{}`: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let rd = std::fs::read_dir(path)
        .map_err(|e| Diagnostic::io(path, format!("cannot list `{}`: {e}", path.display())))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            !name.starts_with('.')
                && (name.ends_with(".yaml") || name.ends_with(".yml"))
                && p.is_file()
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Diagnostic::io(
            path,
            format!("no journey files (*.yaml) in `{}`", path.display()),
        ));
    }
    Ok(files)
}

/// Every file loading `path` reads: [`journey_files`], and for a single
/// file also the fragments files next to it (`*.yaml` whose top level is
/// `fragments:`), so `check journeys/one.yaml` sees the fragments it uses.
/// `serve` watches the same files.
pub fn watched_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut files = journey_files(path)?;
    if path.is_dir() {
        return Ok(files);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(siblings) = journey_files(dir) {
        let mut seen: std::collections::HashSet<PathBuf> =
            files.iter().map(|f| file_key(f)).collect();
        for f in siblings {
            let is_fragments = std::fs::read_to_string(&f)
                .is_ok_and(|t| t.lines().any(|l| l.starts_with("fragments:")));
            if is_fragments && seen.insert(file_key(&f)) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

/// What makes two paths the same file (`journeys/a.yaml` and
/// `./journeys/../journeys/a.yaml`): its canonical path, or the path as
/// given when it cannot be resolved. Computed once per file, so loading
/// 10,000 files costs 10,000 look-ups, not one per pair.
fn file_key(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Loads every journey under `paths`, reporting all problems at once.
pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let mut diags = Vec::new();
    let mut sources: Vec<std::sync::Arc<SourceFile>> = Vec::new();
    let mut seen: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for p in paths {
        match watched_files(p) {
            Ok(files) => {
                for f in files {
                    if !seen.insert(file_key(&f)) {
                        continue;
                    }
                    match std::fs::read_to_string(&f) {
                        Ok(text) => sources.push(SourceFile::new(f, text)),
                        Err(e) => diags.push(Diagnostic::io(
                            &f,
                            format!("cannot read `{}`: {e}", f.display()),
                        )),
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
    load_sources(sources, opts, diags)
}

/// Gives back the spare capacity validation left in a journey's lists.
/// `serve` keeps every journey for its whole life: a one-step journey with
/// `status: 200` held four assertion slots (864 bytes) where one is used,
/// which at 10,000 journeys is megabytes of nothing.
fn compact(j: &mut Journey) {
    j.steps.shrink_to_fit();
    j.slos.shrink_to_fit();
    for s in &mut j.steps {
        s.captures.shrink_to_fit();
        if let crate::journey::StepKind::Http(h) = &mut s.kind {
            h.query.shrink_to_fit();
            h.headers.shrink_to_fit();
            h.keep_headers.shrink_to_fit();
            h.expect.shrink_to_fit();
            for a in &mut h.expect {
                if let crate::journey::Check::Status(m) = &mut a.check {
                    m.shrink_to_fit();
                }
            }
        }
    }
}

/// Loads journeys from in-memory files (used by tests and embedded examples).
pub fn load_sources(
    sources: Vec<std::sync::Arc<SourceFile>>,
    opts: &LoadOptions,
    mut diags: Vec<Diagnostic>,
) -> Result<Loaded, LoadError> {
    // Paths that could not be read count among the files (`1 error in 1 file of 1`).
    let files = sources.len()
        + diags
            .iter()
            .filter(|d| d.file.is_none() && d.path.is_some())
            .count();
    let mut journeys: Vec<(Journey, Span)> = Vec::new();
    let mut parsed = Vec::new();
    let mut declared = std::collections::BTreeSet::new();
    for src in &sources {
        match yaml::parse(&src.text) {
            Ok(r) => parsed.push((src, r)),
            Err(e) => {
                diags.push(
                    Diagnostic::error(src, e.span, format!("invalid YAML: {}", e.message))
                        .with_label(e.help.as_deref().unwrap_or("fix the YAML syntax here")),
                );
            }
        }
    }
    // Fragments first: any journey may use any fragment of the set.
    let mut fragments = Fragments::new();
    let mut fragment_files = Vec::new();
    let none = Fragments::new();
    for (src, root) in &parsed {
        if fragment::is_fragments_file(root) {
            let mut v = Validator {
                file: src,
                diags: &mut diags,
                fragments: &none,
            };
            fragment::define(&mut v, root, &mut fragments);
            fragment_files.push(src.path.clone());
        }
    }
    for (src, root) in &parsed {
        if fragment::is_fragments_file(root) {
            continue;
        }
        declared.extend(declared_vars(root));
        let mut v = Validator {
            file: src,
            diags: &mut diags,
            fragments: &fragments,
        };
        if let Some(j) = validate::journey(&mut v, root, &opts.vars) {
            journeys.push(j);
        }
    }
    let mut diags = merge_uses(diags);
    if journeys.is_empty()
        && !diags.iter().any(|d| d.severity == Severity::Error)
        && let Some(first) = fragment_files.first()
    {
        diags.push(
            Diagnostic::io(first, "no journeys: the files hold only fragments")
                .with_note("a fragments file defines steps for journeys to `use:`; add a journey file next to it"),
        );
    }
    // Journey names are metric labels: unique across the whole set.
    let mut seen: BTreeMap<String, std::sync::Arc<SourceFile>> = BTreeMap::new();
    for (j, span) in &journeys {
        if let Some(first) = seen.get(&j.name) {
            diags.push(
                Diagnostic::error(
                    &j.source,
                    *span,
                    format!("duplicate journey name `{}`", j.name),
                )
                .with_label(format!("also the name of `{}`", first.path.display())),
            );
        } else {
            seen.insert(j.name.clone(), j.source.clone());
        }
    }
    if !diags.iter().any(|d| d.severity == Severity::Error) {
        let js: Vec<&Journey> = journeys.iter().map(|(j, _)| j).collect();
        let unknown = unknown_overrides(&opts.vars, &declared, &js);
        diags.extend(unknown.into_iter().map(|mut d| {
            if opts.unknown_vars_warn {
                d.severity = Severity::Warning;
                d.notes.push(
                    "the flag is kept and has no effect until a journey declares the variable again"
                        .to_string(),
                );
            }
            d
        }));
    }
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(LoadError::Invalid {
            diagnostics: diags,
            files,
        });
    }
    let mut journeys: Vec<Journey> = journeys
        .into_iter()
        .map(|(mut j, _)| {
            compact(&mut j);
            j
        })
        .collect();
    journeys.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Loaded {
        journeys,
        warnings: diags,
        files,
    })
}

/// The names under a file's top-level `vars:`.
fn declared_vars(root: &yaml::SNode) -> Vec<String> {
    use yaml::Node;
    let Node::Map(entries) = &root.node else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|(k, _)| k.name == "vars")
        .flat_map(|(_, v)| match &v.node {
            Node::Map(vars) => vars.iter().map(|(k, _)| k.name.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// A `--var NAME=VALUE` that no journey declares or reads would change
/// nothing (a typo such as `baseurl`, and the run probes the default URL):
/// it is an error, with the nearest name. Its value is never shown.
fn unknown_overrides(
    overrides: &BTreeMap<String, String>,
    declared: &std::collections::BTreeSet<String>,
    journeys: &[&Journey],
) -> Vec<Diagnostic> {
    let mut known = declared.clone();
    for j in journeys {
        // A name a step captures is set by the run, not by `--var`.
        let captured: std::collections::BTreeSet<&str> = j
            .steps
            .iter()
            .chain(&j.finally)
            .flat_map(super::Step::capture_names)
            .collect();
        for s in j.steps.iter().chain(&j.finally) {
            for t in s.templates() {
                for r in t.refs() {
                    let head = r.split('.').next().unwrap_or(r);
                    if !captured.contains(head) {
                        known.insert(head.to_string());
                    }
                }
            }
        }
    }
    // Reserved names a template reads but no `--var` can set.
    for reserved in ["env", "secret", "params"] {
        known.remove(reserved);
    }
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    overrides
        .keys()
        .filter(|k| !known.contains(*k))
        .map(|k| {
            let hint = match crate::diag::did_you_mean(k, &names) {
                Some(s) => format!("did you mean `--var {s}=...`?"),
                None if names.is_empty() => "the journeys have no variables".to_string(),
                None => format!(
                    "the journeys' variables: {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            Diagnostic {
                severity: Severity::Error,
                title: format!("`--var {k}=...`: no journey has a variable `{k}`"),
                file: None,
                path: None,
                span: Span::default(),
                label: Some(hint),
                notes: Vec::new(),
            }
        })
        .collect()
}
