//! Spanned YAML tree → validated [`Journey`], collecting every problem.
//!
//! Each function takes a node, reports what is wrong with it into the shared
//! diagnostics list, and returns `None` only for the part it could not read,
//! so one mistake never hides the next.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde_json_path::JsonPath;

use super::slo::{Alerting, Objective, Period, Slo, SloKind};
use super::yaml::{Node, SKey, SNode};
use super::*;
use crate::diag::{Diagnostic, SourceFile, Span, did_you_mean, one_of};
use crate::template::Template;

pub(super) const JOURNEY_KEYS: &[&str] = &[
    "name",
    "description",
    "interval",
    "timeout",
    "action_timeout",
    "jitter",
    "labels",
    "vars",
    "secrets",
    "tls",
    "trace",
    "steps",
    "finally",
    "slos",
    "liveness",
    "retries",
    "retry_delay",
];
pub(super) const STEP_KEYS: &[&str] = &["name", "timeout", "http", "browser", "expect", "capture"];
const STEP_KINDS: &[&str] = &["http", "browser"];
pub(super) const HTTP_KEYS: &[&str] = &[
    "method",
    "url",
    "query",
    "headers",
    "json",
    "form",
    "multipart",
    "raw",
    "content_type",
    "follow_redirects",
    "max_redirects",
    "max_body",
    "keep_headers_across_origins",
];
/// Upper bounds of what a journey may ask for: beyond them a value is a
/// typo (`300000000000y`), and arithmetic on it could overflow.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest `interval` (and `jitter`).
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Longest journey, step, action or `duration: {under:}` time.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest count (`length`, `count`, `group`...).
pub(super) const MAX_COUNT: u64 = 1_000_000_000;
/// Most redirects a step may follow.
const MAX_REDIRECTS: u64 = 50;
/// Largest `max_body`.
const MAX_BODY: u64 = 1024 * 1024 * 1024;
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
pub(super) const EXPECT_KEYS: &[&str] = &[
    "status", "url", "headers", "cookies", "body", "jsonpath", "duration",
];
pub(super) const TEXT_PREDICATES: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "matches",
    "exists",
];
/// Predicates on a text that is always there (a body, a final URL).
pub(super) const TEXT_ONLY_PREDICATES: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "matches",
];
pub(super) const JSON_PREDICATES: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "matches",
    "exists",
    "lt",
    "le",
    "gt",
    "ge",
    "length",
];
pub(super) const COOKIE_KEYS: &[&str] = &[
    "exists",
    "value",
    "equals",
    "secure",
    "http_only",
    "same_site",
    "path",
    "domain",
];
pub(super) const CAPTURE_SOURCES: &[&str] = &[
    "jsonpath", "css", "regex", "header", "cookie", "status", "url",
];
pub(super) const CAPTURE_KEYS: &[&str] = &[
    "jsonpath", "css", "attr", "regex", "group", "header", "cookie", "status", "url", "redact",
];
pub(super) const SLO_KEYS: &[&str] = &[
    "name",
    "objective",
    "window",
    "threshold",
    "labels",
    "alerting",
    "judge",
    "locations",
];
pub(super) const ALERTING_KEYS: &[&str] = &[
    "name",
    "page",
    "ticket",
    "min_bad_runs_to_page",
    "keep_firing_for",
    "runbook_url",
    "dashboard_url",
    "annotations",
];
/// Labels wayprobe sets itself; user labels may not reuse them.
const RESERVED_LABELS: &[&str] = &["journey", "location", "step", "result", "reason", "le"];

/// Default interval when a journey does not say.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// A map node's entries, after unknown keys were reported.
pub(super) struct Fields<'n> {
    entries: &'n [(SKey, SNode)],
    /// Where the mapping is.
    pub span: Span,
}

impl<'n> Fields<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n SNode> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    fn entries(&self) -> &'n [(SKey, SNode)] {
        self.entries
    }
}

pub(super) struct Validator<'a> {
    pub file: &'a Arc<SourceFile>,
    pub diags: &'a mut Vec<Diagnostic>,
    /// The fragments `use:` steps may name.
    pub fragments: &'a super::fragment::Fragments,
}

impl<'a> Validator<'a> {
    pub(super) fn error(&mut self, span: Span, title: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(self.file, span, title));
        self.diags.last_mut().expect("just pushed")
    }

    fn warn(&mut self, span: Span, title: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::warning(self.file, span, title));
        self.diags.last_mut().expect("just pushed")
    }

    pub(super) fn type_error(&mut self, n: &SNode, what: &str, expected: &str) {
        // A number of the wrong range is shown as written (`-1`), so the
        // message says what is wrong with it.
        let found = match &n.node {
            Node::Int(i) => format!("`{i}`"),
            Node::Float(f) => format!("`{f}`"),
            other => other.kind().to_string(),
        };
        self.error(n.span, format!("{what} must be {expected}, found {found}"));
    }

    /// A mapping with only `allowed` keys; unknown keys are reported with a hint.
    pub(super) fn map<'n>(
        &mut self,
        n: &'n SNode,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let Node::Map(entries) = &n.node else {
            self.type_error(n, what, "a mapping");
            return None;
        };
        for (k, _) in entries {
            if !allowed.contains(&k.name.as_str()) {
                let hint = match did_you_mean(&k.name, allowed) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of {}", one_of(allowed)),
                };
                self.error(k.span, format!("unknown key `{}` in {what}", k.name))
                    .label = Some(hint);
            }
        }
        Some(Fields {
            entries,
            span: n.span,
        })
    }

    /// Any mapping (keys are user names).
    fn free_map<'n>(&mut self, n: &'n SNode, what: &str) -> Option<&'n [(SKey, SNode)]> {
        match &n.node {
            Node::Map(entries) => Some(entries),
            Node::Null => Some(&[]),
            _ => {
                self.type_error(n, what, "a mapping");
                None
            }
        }
    }

    pub(super) fn string(&mut self, n: &SNode, what: &str) -> Option<String> {
        match &n.node {
            Node::Str(s) => Some(s.clone()),
            _ => {
                self.type_error(n, what, "a string");
                None
            }
        }
    }

    /// Any scalar as text (numbers and booleans are fine in URLs, headers...).
    fn text(&mut self, n: &SNode, what: &str) -> Option<String> {
        match n.node.scalar_text() {
            Some(t) => Some(t),
            None => {
                self.type_error(n, what, "text");
                None
            }
        }
    }

    pub(super) fn bool(&mut self, n: &SNode, what: &str) -> Option<bool> {
        match &n.node {
            Node::Bool(b) => Some(*b),
            _ => {
                self.type_error(n, what, "`true` or `false`");
                None
            }
        }
    }

    /// A whole number from 0 to [`MAX_COUNT`].
    pub(super) fn uint(&mut self, n: &SNode, what: &str) -> Option<u64> {
        self.uint_max(n, what, MAX_COUNT)
    }

    /// A whole number from 0 to `max`.
    pub(super) fn uint_max(&mut self, n: &SNode, what: &str, max: u64) -> Option<u64> {
        match &n.node {
            Node::Int(i) if *i >= 0 && (*i as u64) > max => {
                self.error(
                    n.span,
                    format!("{what}: {i} is more than wayprobe allows ({max})"),
                )
                .label = Some(format!("write at most {max}"));
                None
            }
            Node::Int(i) if *i >= 0 => Some(*i as u64),
            _ => {
                self.type_error(n, what, "a whole number ≥ 0");
                None
            }
        }
    }

    fn number(&mut self, n: &SNode, what: &str) -> Option<Num> {
        match &n.node {
            Node::Int(i) => Some(Num::Int((*i).into())),
            Node::Float(f) => Some(Num::Float(*f)),
            _ => {
                self.type_error(n, what, "a number");
                None
            }
        }
    }

    /// A duration of at most [`MAX_DURATION`] (SLO windows, thresholds...).
    pub(super) fn duration(&mut self, n: &SNode, what: &str) -> Option<Duration> {
        self.duration_max(n, what, MAX_DURATION)
    }

    /// A duration of at most `max`: every duration has a bound, so no later
    /// arithmetic on it (deadlines, phases, windows) can overflow.
    pub(super) fn duration_max(
        &mut self,
        n: &SNode,
        what: &str,
        max: Duration,
    ) -> Option<Duration> {
        let d = self.parse_duration(n, what)?;
        if d > max {
            let text = n.node.scalar_text().unwrap_or_default();
            self.error(
                n.span,
                format!(
                    "{what}: `{}` is longer than wayprobe allows ({})",
                    text.trim(),
                    crate::diag::duration(max)
                ),
            )
            .label = Some(format!("write at most `{}`", crate::diag::duration(max)));
            return None;
        }
        Some(d)
    }

    fn parse_duration(&mut self, n: &SNode, what: &str) -> Option<Duration> {
        let text = match &n.node {
            Node::Str(s) => s.clone(),
            Node::Int(_) | Node::Float(_) => {
                let t = n.node.scalar_text().unwrap_or_default();
                self.error(n.span, format!("{what} needs a unit")).label = Some(format!(
                    "write `{t}s` for seconds or `{t}ms` for milliseconds"
                ));
                return None;
            }
            _ => {
                self.type_error(n, what, "a duration such as `30s`");
                return None;
            }
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(n.span, format!("{what}: `{text}` is not a duration ({e})"))
                    .label = Some("write a number and a unit, e.g. `30s`, `1m30s`, `250ms`".into());
                None
            }
        }
    }

    fn size(&mut self, n: &SNode, what: &str) -> Option<u64> {
        match &n.node {
            Node::Int(i) if *i > 0 => Some(*i as u64),
            Node::Str(s) => match parse_size(s) {
                Some(v) => Some(v),
                None => {
                    self.error(n.span, format!("{what}: `{s}` is not a size"))
                        .label = Some("write bytes or a unit, e.g. `512KiB`, `4MiB`".into());
                    None
                }
            },
            _ => {
                self.type_error(n, what, "a size such as `4MiB`");
                None
            }
        }
    }

    /// A metric-label-safe name: `[a-z0-9_-]+`, at most [`MAX_NAME_LEN`]
    /// characters.
    fn label_safe(&mut self, n: &SNode, what: &str) -> Option<String> {
        let s = self.string(n, what)?;
        if is_label_safe(&s) && s.len() > MAX_NAME_LEN {
            self.error(
                n.span,
                format!(
                    "{what} is {} characters long; wayprobe allows {MAX_NAME_LEN}",
                    s.len()
                ),
            )
            .label = Some(
                "it is a label on every series of the journey: shorten it, e.g. to its first words"
                    .into(),
            );
            None
        } else if is_label_safe(&s) {
            Some(s)
        } else {
            let suggestion = to_label_safe(&s);
            self.error(n.span, format!("{what} `{s}` is not label-safe"))
                .label = Some(format!(
                "use lower-case letters, digits, `-` and `_` only, e.g. `{suggestion}`"
            ));
            None
        }
    }

    pub(super) fn identifier(&mut self, span: Span, name: &str, what: &str) -> bool {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.error(span, format!("{what} `{name}` is not a valid name"))
                .label = Some(format!(
                "use letters, digits and `_`, starting with a letter, e.g. `{}`",
                to_label_safe(name).replace('-', "_")
            ));
        }
        ok
    }

    pub(super) fn regex(&mut self, n: &SNode, what: &str) -> Option<Arc<Regex>> {
        let s = self.string(n, what)?;
        match Regex::new(&s) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or("").trim();
                let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
                self.error(n.span, format!("invalid regex in {what}")).label = Some(last);
                None
            }
        }
    }

    fn jsonpath(&mut self, span: Span, q: &str) -> Option<Arc<JsonPath>> {
        match JsonPath::parse(q) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                let hint = match jsonpath_fix(q) {
                    Some((fixed, why)) => format!("{e}; write `{fixed}` ({why})"),
                    None => format!("{e} (RFC 9535 syntax, e.g. `$.items[0].id`)"),
                };
                self.error(span, format!("invalid JSONPath `{q}`")).label = Some(hint);
                None
            }
        }
    }

    pub(super) fn css(&mut self, n: &SNode) -> Option<(String, Arc<scraper::Selector>)> {
        let s = self.string(n, "a CSS selector")?;
        let sel = self.css_text(n.span, &s, &s)?;
        Some((s, sel))
    }

    /// Parses `probe` as CSS, blaming `shown` (the selector as written) at `span`.
    pub(super) fn css_text(
        &mut self,
        span: Span,
        shown: &str,
        probe: &str,
    ) -> Option<Arc<scraper::Selector>> {
        let s = shown;
        match scraper::Selector::parse(probe) {
            Ok(sel) => Some(Arc::new(sel)),
            Err(e) => {
                // scraper's messages can be multi-line internals; keep the first useful line.
                let detail = e.to_string();
                let detail = detail
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with("Unexpected error occurred"))
                    .unwrap_or("syntax error")
                    .to_string();
                self.error(span, format!("invalid CSS selector `{s}`"))
                    .label = Some(format!(
                    "{detail}; e.g. `input[name=csrf_token]`, `#cart .item`"
                ));
                None
            }
        }
    }
}

/// Names defined so far while walking a journey's steps in order.
pub(super) struct Names {
    pub vars: BTreeSet<String>,
    /// The journey's own `vars:` (and `--var`s): a capture of the same name
    /// would silently replace one.
    pub declared: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    /// capture name → the step that defines it (for "captured later" hints).
    pub later: BTreeMap<String, String>,
    /// Inside a fragment: its name and parameters (`{{ params.NAME }}`).
    pub params: Option<(String, BTreeSet<String>)>,
}

impl Validator<'_> {
    pub(super) fn template(&mut self, n: &SNode, what: &str, names: &Names) -> Option<Template> {
        let text = self.text(n, what)?;
        let t = match Template::parse(&text) {
            Ok(t) => t.at(n.span),
            Err(e) => {
                self.error(n.span, format!("invalid template in {what}"))
                    .label = Some(e);
                return None;
            }
        };
        for r in t.refs() {
            let (head, rest) = r.split_once('.').unwrap_or((r.as_str(), ""));
            match head {
                "env" if rest.is_empty() => {
                    self.error(n.span, "`env` needs a name: `{{ env.NAME }}`");
                }
                "env" => {}
                "params" => match &names.params {
                    None => {
                        self.error(n.span, "`params` exists only inside a fragment")
                            .label = Some("a journey passes values to a fragment with `use:` and `with:`; here, use a variable".into());
                    }
                    Some((_, _)) if rest.is_empty() => {
                        self.error(n.span, "`params` needs a name: `{{ params.NAME }}`");
                    }
                    Some((frag, ps)) if !ps.contains(rest) => {
                        let cands: Vec<&str> = ps.iter().map(String::as_str).collect();
                        let label = match did_you_mean(rest, &cands) {
                            Some(s) => format!("did you mean `params.{s}`?"),
                            None if cands.is_empty() => format!("`{frag}` declares no `params:`"),
                            None => format!("`{frag}` declares {}", one_of(&cands)),
                        };
                        self.error(
                            n.span,
                            format!("unknown parameter `{rest}` of fragment `{frag}`"),
                        )
                        .label = Some(label);
                    }
                    Some(_) => {}
                },
                "secret" => {
                    if rest.is_empty() {
                        self.error(n.span, "`secret` needs a name: `{{ secret.NAME }}`");
                    } else if !names.secrets.contains(rest) {
                        let cands: Vec<&str> = names.secrets.iter().map(String::as_str).collect();
                        let label = match did_you_mean(rest, &cands) {
                            Some(s) => format!("did you mean `secret.{s}`?"),
                            None => format!(
                                "declare it under `secrets:`, e.g. `{rest}: {{env: {}}}`",
                                rest.to_uppercase()
                            ),
                        };
                        self.error(n.span, format!("undefined secret `{rest}`"))
                            .label = Some(label);
                    }
                }
                name if !names.vars.contains(name) => {
                    let cands: Vec<&str> = names.vars.iter().map(String::as_str).collect();
                    let label = if let Some(step) = names.later.get(name) {
                        format!(
                            "`{name}` is captured by a later step (`{step}`); steps run in order"
                        )
                    } else if let Some(s) = did_you_mean(name, &cands) {
                        format!("did you mean `{s}`?")
                    } else {
                        "define it under `vars:`, capture it in an earlier step, or pass `--var NAME=VALUE`".to_string()
                    };
                    self.error(n.span, format!("undefined variable `{name}`"))
                        .label = Some(label);
                }
                _ => {}
            }
        }
        Some(t)
    }
}

/// What to write instead of a JSONPath query that does not parse, when the
/// mistake is a common one: no leading `$` (`items[0].sku`), or a member
/// name that dot notation cannot hold (`$.headers.X-Api-Key`).
fn jsonpath_fix(q: &str) -> Option<(String, String)> {
    let mut why = Vec::new();
    let rooted = if q.starts_with('$') {
        q.to_string()
    } else {
        why.push("a query starts with `$`");
        if q.starts_with(['.', '[']) {
            format!("${q}")
        } else {
            format!("$.{q}")
        }
    };
    // Rewrite `.name` segments outside brackets and quotes as `['name']`
    // when the name is not an RFC 9535 member-name shorthand.
    let shorthand = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let mut out = String::with_capacity(rooted.len() + 8);
    let mut bracketed = false;
    let (mut depth, mut quote) = (0usize, None::<char>);
    let chars: Vec<char> = rooted.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(qc), _) if c == qc => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') if depth > 0 => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.saturating_sub(1),
            (None, '.') if depth == 0 && chars.get(i + 1).is_some_and(|n| *n != '.') => {
                let end = (i + 1..chars.len())
                    .find(|&j| matches!(chars[j], '.' | '['))
                    .unwrap_or(chars.len());
                let name: String = chars[i + 1..end].iter().collect();
                if !name.is_empty() && name != "*" && !shorthand(&name) {
                    out.push_str(&format!(
                        "['{}']",
                        name.replace('\\', "\\\\").replace('\'', "\\'")
                    ));
                    bracketed = true;
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    if bracketed {
        why.push("names with characters other than letters, digits and `_` go in brackets");
    }
    (!why.is_empty() && JsonPath::parse(&out).is_ok()).then(|| (out, why.join("; ")))
}

/// The longest journey or step name: they are label values on every series
/// (and in alert names' annotations), so a paragraph would bloat each one.
pub(super) const MAX_NAME_LEN: usize = 128;

pub(super) fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn to_label_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "name".into() } else { out }
}

/// Parses `4096`, `512KiB`, `4MiB`, `10MB`, `1GiB`.
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let idx = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(idx);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1024,
        "mb" => 1_000_000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

/// Validates one parsed file. `vars` are `--var` overrides.
pub(super) fn journey(
    v: &mut Validator<'_>,
    root: &SNode,
    overrides: &BTreeMap<String, String>,
) -> Option<(Journey, Span)> {
    if matches!(root.node, Node::Null) {
        v.error(Span::new(1, 1, 1), "the file is empty").label =
            Some("a journey needs at least `steps:`".into());
        return None;
    }
    let f = v.map(root, "a journey", JOURNEY_KEYS)?;
    let errors_before = v
        .diags
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .count();

    // name: explicit, or the file stem.
    let (name, name_span) = match f.get("name") {
        Some(n) => (v.label_safe(n, "journey name"), n.span),
        None => {
            let stem = v
                .file
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            if is_label_safe(&stem) {
                (Some(stem), Span::new(1, 1, 1))
            } else {
                v.error(
                    Span::new(1, 1, 1),
                    format!("the file name `{stem}` is not a label-safe journey name"),
                )
                .label = Some(format!(
                    "add `name: {}` or rename the file",
                    to_label_safe(&stem)
                ));
                (None, Span::new(1, 1, 1))
            }
        }
    };
    let description = f
        .get("description")
        .and_then(|n| v.string(n, "description"));
    let interval = f
        .get("interval")
        .and_then(|n| v.duration_max(n, "interval", MAX_INTERVAL))
        .unwrap_or(DEFAULT_INTERVAL);
    if interval < Duration::from_millis(100)
        && let Some(n) = f.get("interval")
    {
        v.error(n.span, "interval must be at least 100ms");
    }
    let timeout = match f.get("timeout") {
        Some(n) => {
            let t = v.duration_max(n, "timeout", MAX_TIMEOUT);
            if let Some(t) = t {
                if t >= interval {
                    v.error(n.span, format!(
                        "timeout ({}) must be shorter than the interval ({})",
                        crate::diag::duration(t),
                        crate::diag::duration(interval)
                    ))
                    .label = Some("a run must end before the next one starts; lower `timeout` or raise `interval`".into());
                } else if t.is_zero() {
                    v.error(n.span, "timeout must be above 0").label =
                        Some("write how long a run may take, e.g. `10s`".into());
                }
            }
            t.unwrap_or(interval)
        }
        None => Duration::from_secs(30).min(interval.mul_f64(0.8)),
    };
    let action_timeout = f
        .get("action_timeout")
        .and_then(|n| v.duration_max(n, "action_timeout", MAX_TIMEOUT))
        .unwrap_or(super::DEFAULT_ACTION_TIMEOUT);
    let jitter = f
        .get("jitter")
        .and_then(|n| v.duration_max(n, "jitter", MAX_INTERVAL))
        .unwrap_or_default();
    if jitter >= interval
        && let Some(n) = f.get("jitter")
    {
        v.error(n.span, "jitter must be shorter than the interval");
    }

    let mut labels = BTreeMap::new();
    if let Some(n) = f.get("labels")
        && let Some(entries) = v.free_map(n, "labels")
    {
        for (k, val) in entries {
            let ok_name = k
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.name.starts_with("__");
            if !ok_name {
                v.error(
                    k.span,
                    format!(
                        "label name `{}` is not a valid Prometheus label name",
                        k.name
                    ),
                )
                .label = Some("use letters, digits and `_`, e.g. `team`".into());
            } else if RESERVED_LABELS.contains(&k.name.as_str()) {
                v.error(
                    k.span,
                    format!("label `{}` is set by wayprobe itself", k.name),
                )
                .label = Some("choose another name, e.g. `team` or `tier`".into());
            }
            if let Some(t) = v.text(val, "a label value") {
                labels.insert(k.name.clone(), t);
            }
        }
    }

    let mut vars = BTreeMap::new();
    if let Some(n) = f.get("vars")
        && let Some(entries) = v.free_map(n, "vars")
    {
        for (k, val) in entries {
            v.identifier(k.span, &k.name, "variable");
            if matches!(k.name.as_str(), "env" | "secret" | "params")
                || crate::template::FUNCTIONS.contains(&k.name.as_str())
            {
                v.error(k.span, format!("`{}` is a reserved name", k.name));
            }
            if let Some(t) = v.text(val, "a variable value") {
                vars.insert(k.name.clone(), t);
            }
        }
    }
    for (k, val) in overrides {
        vars.insert(k.clone(), val.clone());
    }

    let base_dir = v
        .file
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut secrets = BTreeMap::new();
    if let Some(n) = f.get("secrets")
        && let Some(entries) = v.free_map(n, "secrets")
    {
        for (k, val) in entries {
            v.identifier(k.span, &k.name, "secret");
            if let Some(src) = secret_source(v, val, &base_dir) {
                secrets.insert(k.name.clone(), src);
            }
        }
    }

    let tls = f
        .get("tls")
        .map(|n| tls(v, n, &base_dir))
        .unwrap_or_default();
    let trace = f.get("trace").map(|n| trace(v, n)).unwrap_or_default();

    let mut names = Names {
        vars: vars.keys().cloned().collect(),
        declared: vars.keys().cloned().collect(),
        secrets: secrets.keys().cloned().collect(),
        later: BTreeMap::new(),
        params: None,
    };
    let mut steps = Vec::new();
    match f.get("steps") {
        None => {
            v.error(f.span, "a journey needs `steps:`")
                .label = Some("add a list of steps, e.g. `steps: [{name: home, http: {url: \"https://example.com/\"}}]`".into());
        }
        Some(n) => match &n.node {
            Node::Seq(items) if items.is_empty() => {
                v.error(
                    n.span,
                    "`steps` is empty; a journey needs at least one step",
                );
            }
            Node::Seq(items) => {
                steps = step_list(v, items, &mut names, &base_dir, None);
            }
            _ => v.type_error(n, "`steps`", "a list of steps"),
        },
    }

    // `finally:` runs after the steps, whatever happened: it sees the
    // captures of every step (a capture the run did not reach is undefined
    // at run time, and that finally step fails).
    let mut finally = Vec::new();
    if let Some(n) = f.get("finally") {
        match &n.node {
            Node::Seq(items) => finally = step_list(v, items, &mut names, &base_dir, None),
            Node::Null => {}
            _ => v.type_error(n, "`finally`", "a list of steps"),
        }
    }
    unique_step_names(v, &steps, &finally);

    super::browser::default_waits(&mut steps, action_timeout);
    super::browser::default_waits(&mut finally, action_timeout);

    let mut slos = Vec::new();
    if let Some(n) = f.get("slos") {
        match &n.node {
            Node::Seq(items) => {
                let mut seen = BTreeSet::new();
                for item in items {
                    if let Some(s) = slo(v, item, timeout) {
                        if !seen.insert(s.name.clone()) {
                            v.error(s.span, format!("duplicate SLO name `{}`", s.name));
                        }
                        slos.push(s);
                    }
                }
            }
            Node::Null => {}
            _ => v.type_error(n, "`slos`", "a list"),
        }
    }

    let liveness = f
        .get("liveness")
        .map(|n| liveness(v, n, interval))
        .unwrap_or_default();
    let mut retries = Retries::default();
    if let Some(n) = f.get("retries")
        && let Some(c) = v.uint(n, "`retries`")
    {
        if c > 5 {
            v.error(n.span, format!("`retries: {c}` is too many")).label =
                Some("at most 5; a journey that needs more is failing".into());
        } else {
            retries.count = c as u32;
        }
    }
    if let Some(n) = f.get("retry_delay")
        && let Some(d) = v.duration(n, "`retry_delay`")
    {
        if d >= interval {
            v.error(n.span, "`retry_delay` must be shorter than the interval")
                .label = Some("retries happen only before the next scheduled run".into());
        } else {
            retries.delay = d;
        }
    }

    let errors_after = v
        .diags
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .count();
    if errors_after > errors_before {
        return None;
    }
    Some((
        Journey {
            name: name?,
            description,
            interval,
            timeout,
            jitter,
            labels,
            vars,
            secrets,
            tls,
            trace,
            steps,
            finally,
            slos,
            liveness,
            retries,
            source: v.file.clone(),
        },
        name_span,
    ))
}

/// Validates a list of steps (`steps:`, `finally:` or a fragment's), in
/// order, expanding `use:` steps. `inside` is the fragment use the list
/// belongs to; its steps get the use's name prefix.
pub(super) fn step_list(
    v: &mut Validator<'_>,
    items: &[SNode],
    names: &mut Names,
    base: &Path,
    inside: Option<&Arc<super::fragment::FragmentUse>>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    // Captures of all steps, for "captured by a later step" hints.
    for item in items {
        if let Node::Map(e) = &item.node {
            let sname = e
                .iter()
                .find(|(k, _)| k.name == "name")
                .and_then(|(_, v)| v.node.scalar_text())
                .unwrap_or_default();
            if let Some((_, Node::Map(caps))) = e
                .iter()
                .find(|(k, _)| k.name == "capture")
                .map(|(k, v)| (k, &v.node))
            {
                for (ck, _) in caps {
                    names.later.entry(ck.name.clone()).or_insert(sname.clone());
                }
            }
        }
    }
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    for item in items {
        if super::fragment::is_use(item) {
            steps.extend(super::fragment::expand(v, item, names, base, inside));
            continue;
        }
        // Duplicates are reported even when the step has other errors.
        if let Node::Map(e) = &item.node
            && let Some((_, nn)) = e.iter().find(|(k, _)| k.name == "name")
            && let Node::Str(sname) = &nn.node
        {
            if let Some(prev) = seen.get(sname) {
                let prev_line = prev.line;
                v.error(nn.span, format!("duplicate step name `{sname}`"))
                    .label = Some(format!(
                    "already used on line {prev_line}; step names become the `step` label and must be unique"
                ));
            } else {
                seen.insert(sname.clone(), nn.span);
            }
        }
        if let Some(mut step) = step(v, item, names, base) {
            if let Some(u) = inside {
                step.name = format!("{}{}", u.prefix, step.name);
                step.fragment = Some(u.clone());
            }
            steps.push(step);
        }
    }
    steps
}

/// Step names are the `step` label: unique across `steps:`, `finally:` and
/// the steps `use:` expanded into (duplicates within one written list were
/// reported where they are written).
fn unique_step_names(v: &mut Validator<'_>, steps: &[Step], finally: &[Step]) {
    let mut seen: BTreeMap<&str, (bool, &Step)> = BTreeMap::new();
    // One error per `use:`, not one per step it expanded into.
    let mut blamed: std::collections::HashSet<Span> = std::collections::HashSet::new();
    for (in_finally, s) in steps
        .iter()
        .map(|s| (false, s))
        .chain(finally.iter().map(|s| (true, s)))
    {
        let Some((prev_finally, prev)) = seen.get(s.name.as_str()).copied() else {
            seen.insert(&s.name, (in_finally, s));
            continue;
        };
        let same_list = match (&s.fragment, &prev.fragment) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if prev_finally == in_finally && same_list {
            continue;
        }
        // Blame the place written in this journey: the step, or its `use:`.
        let span = |s: &Step| {
            s.fragment
                .as_ref()
                .map_or(s.span, |u| u.outermost().used_at)
        };
        let what = match &s.fragment {
            Some(u) => format!("step `{}` (from `use: {}`)", s.name, u.outermost().fragment),
            None => format!("step `{}`", s.name),
        };
        let hint = if s.fragment.is_some() || prev.fragment.is_some() {
            "give the `use:` a `name:` to prefix its steps differently"
        } else {
            "step names become the `step` label and must be unique"
        };
        if !blamed.insert(span(s)) {
            continue;
        }
        v.error(span(s), format!("duplicate step name: {what}"))
            .label = Some(format!(
            "already a step on line {}; {hint}",
            span(prev).line
        ));
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn secret_source(v: &mut Validator<'_>, n: &SNode, base: &Path) -> Option<SecretSource> {
    let f = v.map(n, "a secret", &["env", "file"])?;
    match (f.get("env"), f.get("file")) {
        (Some(e), None) => v.string(e, "`env`").map(SecretSource::Env),
        (None, Some(p)) => v
            .string(p, "`file`")
            .map(|p| SecretSource::File(resolve(base, &p))),
        _ => {
            v.error(n.span, "a secret needs exactly one of `env` or `file`")
                .label = Some(
                "e.g. `{env: SHOP_PASSWORD}` or `{file: /var/run/secrets/shop/password}`".into(),
            );
            None
        }
    }
}

fn tls(v: &mut Validator<'_>, n: &SNode, base: &Path) -> TlsSettings {
    let mut t = TlsSettings::default();
    let Some(f) = v.map(n, "`tls`", &["verify", "ca_file"]) else {
        return t;
    };
    if let Some(b) = f.get("verify").and_then(|n| v.bool(n, "`verify`")) {
        t.verify = b;
    }
    if let Some(n) = f.get("ca_file")
        && let Some(p) = v.string(n, "`ca_file`")
    {
        let path = resolve(base, &p);
        // The same reading the runs do, so a file every run would refuse
        // (a key, a half-copied PEM) is refused here, not paged on.
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        match std::fs::read(&path) {
            Err(e) => {
                v.error(
                    n.span,
                    format!("CA file `{}` cannot be read: {e}", path.display()),
                );
            }
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if !certs.is_empty() => {}
                Ok(_) => {
                    v.error(
                        n.span,
                        format!("CA file `{}` holds no certificate", path.display()),
                    )
                    .label = Some(
                        "give the PEM of the CA (`-----BEGIN CERTIFICATE-----`), not a key".into(),
                    );
                }
                Err(e) => {
                    v.error(
                        n.span,
                        format!("CA file `{}` is not valid PEM: {e}", path.display()),
                    )
                    .label = Some("give the PEM of the CA (`-----BEGIN CERTIFICATE-----`)".into());
                }
            },
        }
        t.ca_file = Some(path);
    }
    t
}

/// `trace: false`, `trace: true`, or `trace: {propagate_to: [origins], tracestate: "k=v"}`.
fn trace(v: &mut Validator<'_>, n: &SNode) -> TraceSettings {
    let mut t = TraceSettings::default();
    if let Node::Bool(b) = &n.node {
        t.enabled = *b;
        return t;
    }
    let Some(f) = v.map(n, "`trace`", &["propagate_to", "tracestate"]) else {
        return t;
    };
    if let Some(n) = f.get("propagate_to") {
        match &n.node {
            Node::Seq(items) => {
                let mut origins = Vec::new();
                for item in items {
                    if let Some(o) = v
                        .string(item, "an origin")
                        .and_then(|s| origin(v, item, &s))
                    {
                        origins.push(o);
                    }
                }
                t.propagate_to = Some(origins);
            }
            _ => v.type_error(n, "`propagate_to`", "a list of origins"),
        }
    }
    if let Some(n) = f.get("tracestate")
        && let Some(s) = v.string(n, "`tracestate`")
    {
        if crate::trace::valid_tracestate(&s) {
            t.tracestate = Some(s);
        } else {
            v.error(n.span, "`tracestate` is not a valid W3C tracestate")
                .label = Some(
                "write comma-separated `key=value` members, keys in lower case, e.g. `shop=probe`"
                    .into(),
            );
        }
    }
    t
}

/// An origin as `url::Origin` serializes it (`https://host[:port]`), from a
/// URL that is nothing more than an origin.
fn origin(v: &mut Validator<'_>, n: &SNode, s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.path() == "/"
            && u.query().is_none()
            && u.fragment().is_none()
    });
    match url {
        Some(u) => Some(u.origin().ascii_serialization()),
        None => {
            v.error(n.span, format!("`{s}` is not an origin")).label = Some(
                "write scheme, host and optional port only, e.g. `https://shop.example.com`".into(),
            );
            None
        }
    }
}

fn step(v: &mut Validator<'_>, n: &SNode, names: &mut Names, base: &Path) -> Option<Step> {
    let f = v.map(n, "a step", STEP_KEYS)?;
    let name = match f.get("name") {
        Some(nn) => v.label_safe(nn, "step name"),
        None => {
            v.error(n.span, "a step needs a `name`").label = Some(
                "the name becomes the `step` label in metrics, e.g. `name: open-login`".into(),
            );
            None
        }
    };
    let timeout = f
        .get("timeout")
        .and_then(|n| v.duration_max(n, "step timeout", MAX_TIMEOUT));
    let kinds: Vec<&str> = STEP_KINDS.iter().copied().filter(|k| f.has(k)).collect();
    // A typo'd kind (`htpp`) was already reported with a hint; don't pile on.
    let has_unknown = f
        .entries()
        .iter()
        .any(|(k, _)| !STEP_KEYS.contains(&k.name.as_str()));
    let kind = match kinds.as_slice() {
        [] if has_unknown => None,
        [] => {
            v.error(n.span, "a step needs `http:` or `browser:`").label =
                Some("e.g. `http: {url: \"{{ base_url }}/\"}`".into());
            None
        }
        [_, _] => {
            v.error(n.span, "a step has either `http:` or `browser:`, not both")
                .label = Some("split it into two steps".into());
            None
        }
        ["http"] => {
            let h = f.get("http").expect("checked");
            http_step(v, h, f.get("expect"), names, base).map(|h| StepKind::Http(Box::new(h)))
        }
        _ => {
            if let Some(e) = f.get("expect") {
                v.error(e.span, "`expect:` belongs to HTTP steps").label =
                    Some("in a browser step, add `- expect: {...}` actions to the list".into());
            }
            let b = f.get("browser").expect("checked");
            super::browser::browser_step(v, b, names).map(StepKind::Browser)
        }
    };
    let captures = match f.get("capture") {
        Some(c) => captures(v, c),
        None => Vec::new(),
    };
    // Captures become visible to the following steps only.
    let mut captured: Vec<&Capture> = captures.iter().collect();
    if let Some(StepKind::Browser(b)) = kind.as_ref() {
        for a in &b.actions {
            if let ActionKind::Capture(cs) = &a.kind {
                captured.extend(cs);
            }
        }
    }
    for c in captured {
        if names.declared.contains(&c.name) {
            v.warn(
                c.span,
                format!("capture `{}` replaces the variable `{}`", c.name, c.name),
            )
            .label = Some(format!(
                "the steps after this one read the captured value; rename the capture (e.g. `{}_captured`) to keep both",
                c.name
            ));
        }
        names.vars.insert(c.name.clone());
    }
    kind.as_ref()?;
    Some(Step {
        name: name?,
        span: n.span,
        timeout,
        kind: kind?,
        captures,
        fragment: None,
    })
}

fn http_step(
    v: &mut Validator<'_>,
    n: &SNode,
    expect: Option<&SNode>,
    names: &Names,
    base: &Path,
) -> Option<HttpStep> {
    let f = v.map(n, "`http`", HTTP_KEYS)?;
    // A bad method is reported and the rest of the step still checked:
    // every problem at once.
    let method = match f.get("method") {
        Some(m) => match v.string(m, "`method`") {
            None => None,
            Some(s) => {
                let up = s.to_ascii_uppercase();
                if METHODS.contains(&up.as_str()) {
                    Some(up)
                } else {
                    let label = match did_you_mean(&up, METHODS) {
                        Some(x) => format!("did you mean `{x}`?"),
                        None => format!("expected one of {}", one_of(METHODS)),
                    };
                    v.error(m.span, format!("unknown HTTP method `{s}`")).label = Some(label);
                    None
                }
            }
        },
        None => Some("GET".into()),
    };
    let url = match f.get("url") {
        Some(u) => {
            let t = v.template(u, "`url`", names);
            if let Some(t) = &t
                && t.refs().is_empty()
                && !t.source().contains("{{")
            {
                match url::Url::parse(t.source()) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                    Ok(parsed) => {
                        v.error(
                            u.span,
                            format!("unsupported URL scheme `{}`", parsed.scheme()),
                        )
                        .label = Some("use an `http://` or `https://` URL".into());
                    }
                    Err(e) => {
                        v.error(u.span, format!("invalid URL `{}`: {e}", t.source()))
                            .label =
                            Some("write a full URL, e.g. `https://shop.example.com/login`".into());
                    }
                }
            }
            t
        }
        None => {
            v.error(n.span, "an HTTP step needs a `url`").label =
                Some("e.g. `url: \"{{ base_url }}/login\"`".into());
            None
        }
    };
    let query = f
        .get("query")
        .map(|q| pairs(v, q, "`query`", names))
        .unwrap_or_default();
    let headers =
        f.get("headers")
            .map(|h| {
                if let Some(entries) = v.free_map(h, "`headers`") {
                    for (k, _) in entries {
                        if k.name.is_empty()
                            || !k.name.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                            })
                        {
                            v.error(k.span, format!("`{}` is not a valid header name", k.name));
                        }
                    }
                }
                pairs(v, h, "`headers`", names)
            })
            .unwrap_or_default();

    let body_kinds: Vec<&str> = ["json", "form", "multipart", "raw"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    if body_kinds.len() > 1 {
        let second = f
            .entries()
            .iter()
            .filter(|(k, _)| body_kinds.contains(&k.name.as_str()))
            .nth(1)
            .map_or(n.span, |(k, _)| k.span);
        v.error(
            second,
            format!("a request has one body, found {}", one_of(&body_kinds)),
        )
        .label = Some("keep one of them".into());
    }
    let body = match body_kinds.first().copied() {
        Some("json") => json_template(v, f.get("json").expect("checked"), names).map(Body::Json),
        Some("form") => Some(Body::Form(pairs(
            v,
            f.get("form").expect("checked"),
            "`form`",
            names,
        ))),
        Some("multipart") => {
            multipart(v, f.get("multipart").expect("checked"), names, base).map(Body::Multipart)
        }
        Some(_) => {
            let content = v.template(f.get("raw").expect("checked"), "`raw`", names);
            let ct = match f.get("content_type") {
                Some(c) => v.template(c, "`content_type`", names),
                None => Some(Template::literal("text/plain; charset=utf-8")),
            };
            Some(Body::Raw {
                content: content?,
                content_type: ct?,
            })
        }
        None => None,
    };
    if f.has("content_type") && !f.has("raw") {
        let c = f.get("content_type").expect("checked");
        v.error(c.span, "`content_type` goes with a `raw` body")
            .label = Some("for JSON or form bodies the content type is set for you; use `headers:` to override it".into());
    }
    let follow_redirects = f
        .get("follow_redirects")
        .and_then(|b| v.bool(b, "`follow_redirects`"))
        .unwrap_or(true);
    let max_redirects = f
        .get("max_redirects")
        .and_then(|b| v.uint_max(b, "`max_redirects`", MAX_REDIRECTS))
        .map(|x| x as u32)
        .unwrap_or(DEFAULT_MAX_REDIRECTS);
    let max_body = f
        .get("max_body")
        .and_then(|b| v.size(b, "`max_body`"))
        .filter(|b| {
            *b <= MAX_BODY || {
                let n = f.get("max_body").expect("read above");
                v.error(n.span, "`max_body` is larger than wayprobe allows (1GiB)")
                    .label = Some("write at most `1GiB`".into());
                false
            }
        })
        .unwrap_or(DEFAULT_MAX_BODY);
    let keep_headers = f
        .get("keep_headers_across_origins")
        .map(|k| keep_headers(v, k, &headers))
        .unwrap_or_default();
    let expect = match expect {
        Some(e) => assertions(v, e, names),
        None => Vec::new(),
    };
    Some(HttpStep {
        method: method?,
        url: url?,
        query,
        headers,
        body,
        follow_redirects,
        max_redirects,
        max_body,
        keep_headers,
        expect,
    })
}

/// `keep_headers_across_origins: [authorization]`: names of the step's own
/// headers that may follow a redirect to another origin.
fn keep_headers(v: &mut Validator<'_>, n: &SNode, headers: &[(String, Template)]) -> Vec<String> {
    let what = "`keep_headers_across_origins`";
    let Node::Seq(items) = &n.node else {
        v.type_error(n, what, "a list of header names, e.g. `[authorization]`");
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in items {
        let Some(name) = v.string(i, what) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(&name)) {
            v.error(
                i.span,
                format!("{what}: this step sends no `{name}` header"),
            )
            .label = Some("list headers from this step's `headers:`".into());
            continue;
        }
        out.push(name);
    }
    out
}

fn pairs(v: &mut Validator<'_>, n: &SNode, what: &str, names: &Names) -> Vec<(String, Template)> {
    let Some(entries) = v.free_map(n, what) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|(k, val)| Some((k.name.clone(), v.template(val, what, names)?)))
        .collect()
}

fn json_template(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Option<JsonTemplate> {
    Some(match &n.node {
        Node::Null => JsonTemplate::Null,
        Node::Bool(b) => JsonTemplate::Bool(*b),
        Node::Int(i) => JsonTemplate::Number((*i).into()),
        Node::Float(f) => JsonTemplate::Number(serde_json::Number::from_f64(*f)?),
        Node::Str(_) => JsonTemplate::String(v.template(n, "`json`", names)?),
        Node::Seq(items) => JsonTemplate::Array(
            items
                .iter()
                .filter_map(|i| json_template(v, i, names))
                .collect(),
        ),
        Node::Map(entries) => JsonTemplate::Object(
            entries
                .iter()
                .filter_map(|(k, val)| Some((k.name.clone(), json_template(v, val, names)?)))
                .collect(),
        ),
    })
}

fn multipart(v: &mut Validator<'_>, n: &SNode, names: &Names, base: &Path) -> Option<Vec<Part>> {
    let entries = v.free_map(n, "`multipart`")?;
    let mut parts = Vec::new();
    for (k, val) in entries {
        let value = match &val.node {
            Node::Map(_) => {
                let Some(pf) = v.map(
                    val,
                    "a multipart file",
                    &["file", "content_type", "filename"],
                ) else {
                    continue;
                };
                let Some(path) = pf.get("file").and_then(|p| v.string(p, "`file`")) else {
                    v.error(val.span, "a file part needs `file: PATH`");
                    continue;
                };
                PartValue::File {
                    path: resolve(base, &path),
                    content_type: pf
                        .get("content_type")
                        .and_then(|c| v.string(c, "`content_type`")),
                    filename: pf.get("filename").and_then(|c| v.string(c, "`filename`")),
                }
            }
            _ => match v.template(val, "a multipart field", names) {
                Some(t) => PartValue::Text(t),
                None => continue,
            },
        };
        parts.push(Part {
            name: k.name.clone(),
            value,
        });
    }
    Some(parts)
}

fn expected(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Option<Expected> {
    Some(match &n.node {
        Node::Null => Expected::Null,
        Node::Bool(b) => Expected::Bool(*b),
        Node::Int(i) => Expected::Number(Num::Int((*i).into())),
        Node::Float(f) => Expected::Number(Num::Float(*f)),
        Node::Str(_) => Expected::Text(v.template(n, "an expected value", names)?),
        _ => {
            v.type_error(n, "an expected value", "a single value");
            return None;
        }
    })
}

/// `{contains: x, matches: y}` → predicates; a scalar means `equals`.
pub(super) fn predicates(
    v: &mut Validator<'_>,
    n: &SNode,
    what: &str,
    allowed: &[&str],
    names: &Names,
) -> Vec<(Span, Predicate)> {
    if !matches!(n.node, Node::Map(_)) {
        return expected(v, n, names)
            .map(|e| vec![(n.span, Predicate::Equals(e))])
            .unwrap_or_default();
    }
    let Some(f) = v.map(n, what, allowed) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in f.entries() {
        // `contains: [a, b]` is one assertion per item, each failing on its own.
        if let ("contains" | "not_contains", Node::Seq(items)) = (k.name.as_str(), &val.node) {
            if items.is_empty() {
                v.error(val.span, format!("`{}` lists nothing", k.name))
                    .label = Some("give one value or a list of values".into());
            }
            for item in items {
                if let Some(e) = expected(v, item, names) {
                    let p = if k.name == "contains" {
                        Predicate::Contains(e)
                    } else {
                        Predicate::NotContains(e)
                    };
                    out.push((item.span, p));
                }
            }
            continue;
        }
        let p = match k.name.as_str() {
            "equals" => expected(v, val, names).map(Predicate::Equals),
            "not_equals" => expected(v, val, names).map(Predicate::NotEquals),
            "contains" => expected(v, val, names).map(Predicate::Contains),
            "not_contains" => expected(v, val, names).map(Predicate::NotContains),
            "starts_with" => v
                .template(val, "`starts_with`", names)
                .map(Predicate::StartsWith),
            "matches" => v.regex(val, "`matches`").map(Predicate::Matches),
            "exists" => v.bool(val, "`exists`").map(Predicate::Exists),
            "lt" => v.number(val, "`lt`").map(Predicate::Lt),
            "le" => v.number(val, "`le`").map(Predicate::Le),
            "gt" => v.number(val, "`gt`").map(Predicate::Gt),
            "ge" => v.number(val, "`ge`").map(Predicate::Ge),
            "length" => v.uint(val, "`length`").map(Predicate::Length),
            _ => None, // already reported as unknown
        };
        if let Some(p) = p {
            out.push((k.span, p));
        }
    }
    if out.is_empty() && f.entries().is_empty() {
        v.error(n.span, format!("{what} is empty")).label =
            Some(format!("add one of {}", one_of(allowed)));
    }
    out
}

pub(super) fn status_matches(v: &mut Validator<'_>, n: &SNode) -> Vec<StatusMatch> {
    let one = |v: &mut Validator<'_>, n: &SNode| -> Option<StatusMatch> {
        match &n.node {
            Node::Int(i) if (100..=599).contains(i) => Some(StatusMatch::Code(*i as u16)),
            Node::Str(s)
                if s.len() == 3
                    && s.ends_with("xx")
                    && s.as_bytes()[0].is_ascii_digit()
                    && (b'1'..=b'5').contains(&s.as_bytes()[0]) =>
            {
                Some(StatusMatch::Class(u16::from(s.as_bytes()[0] - b'0')))
            }
            _ => {
                v.error(
                    n.span,
                    format!(
                        "`{}` is not a status",
                        n.node.scalar_text().unwrap_or_else(|| n.node.kind().into())
                    ),
                )
                .label =
                    Some("write a code (`200`), a class (`2xx`) or a list (`[200, 204]`)".into());
                None
            }
        }
    };
    match &n.node {
        Node::Seq(items) => items.iter().filter_map(|i| one(v, i)).collect(),
        _ => one(v, n).into_iter().collect(),
    }
}

fn assertions(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Vec<Assertion> {
    let Some(f) = v.map(n, "`expect`", EXPECT_KEYS) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in f.entries() {
        match k.name.as_str() {
            "status" => {
                let m = status_matches(v, val);
                if !m.is_empty() {
                    out.push(Assertion {
                        span: val.span,
                        check: Check::Status(m),
                    });
                }
            }
            "headers" => {
                let Some(entries) = v.free_map(val, "`headers`") else {
                    continue;
                };
                for (hk, hv) in entries {
                    for (span, pred) in
                        predicates(v, hv, "a header assertion", TEXT_PREDICATES, names)
                    {
                        let span = if matches!(hv.node, Node::Map(_)) {
                            span
                        } else {
                            hk.span
                        };
                        out.push(Assertion {
                            span,
                            check: Check::Header {
                                name: hk.name.to_ascii_lowercase(),
                                pred,
                            },
                        });
                    }
                }
            }
            "cookies" => {
                let Some(entries) = v.free_map(val, "`cookies`") else {
                    continue;
                };
                for (ck, cv) in entries {
                    for (span, pred) in cookie_predicates(v, cv, names) {
                        out.push(Assertion {
                            span: if span.is_unknown() { ck.span } else { span },
                            check: Check::Cookie {
                                name: ck.name.clone(),
                                pred,
                            },
                        });
                    }
                }
            }
            "url" => {
                for (span, pred) in
                    predicates(v, val, "a URL assertion", TEXT_ONLY_PREDICATES, names)
                {
                    out.push(Assertion {
                        span,
                        check: Check::Url(pred),
                    });
                }
            }
            "body" => {
                if !matches!(val.node, Node::Map(_)) {
                    v.error(val.span, "`body` takes predicates").label =
                        Some("e.g. `body: {contains: \"Log in\"}`".into());
                    continue;
                }
                for (span, pred) in
                    predicates(v, val, "a body assertion", TEXT_ONLY_PREDICATES, names)
                {
                    out.push(Assertion {
                        span,
                        check: Check::Body(pred),
                    });
                }
            }
            "jsonpath" => {
                let Some(entries) = v.free_map(val, "`jsonpath`") else {
                    continue;
                };
                for (qk, qv) in entries {
                    let Some(path) = v.jsonpath(qk.span, &qk.name) else {
                        continue;
                    };
                    for (span, pred) in
                        predicates(v, qv, "a JSONPath assertion", JSON_PREDICATES, names)
                    {
                        let span = if matches!(qv.node, Node::Map(_)) {
                            span
                        } else {
                            qk.span
                        };
                        out.push(Assertion {
                            span,
                            check: Check::JsonPath {
                                query: qk.name.clone(),
                                path: path.clone(),
                                pred,
                            },
                        });
                    }
                }
            }
            "duration" => {
                let Some(df) = v.map(val, "`duration`", &["under"]) else {
                    continue;
                };
                match df.get("under") {
                    Some(u) => {
                        if let Some(d) = v.duration_max(u, "`under`", MAX_TIMEOUT) {
                            out.push(Assertion {
                                span: u.span,
                                check: Check::DurationUnder(d),
                            });
                        }
                    }
                    None => {
                        v.error(val.span, "`duration` needs `under`").label =
                            Some("e.g. `duration: {under: 2s}`".into());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn cookie_predicates(
    v: &mut Validator<'_>,
    n: &SNode,
    names: &Names,
) -> Vec<(Span, CookiePredicate)> {
    match &n.node {
        Node::Str(s) if s == "exists" => return vec![(n.span, CookiePredicate::Exists(true))],
        Node::Str(s) if s == "absent" => return vec![(n.span, CookiePredicate::Exists(false))],
        Node::Map(_) => {}
        _ => {
            v.error(
                n.span,
                "a cookie assertion is `exists`, `absent` or a mapping",
            )
            .label = Some(
                "e.g. `session: exists` or `session: {http_only: true, same_site: Lax}`".into(),
            );
            return Vec::new();
        }
    }
    let Some(f) = v.map(n, "a cookie assertion", COOKIE_KEYS) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in f.entries() {
        let p = match k.name.as_str() {
            "exists" => v.bool(val, "`exists`").map(CookiePredicate::Exists),
            "value" => {
                let ps = predicates(v, val, "a cookie value", TEXT_PREDICATES, names);
                out.extend(ps.into_iter().map(|(s, p)| (s, CookiePredicate::Value(p))));
                None
            }
            "equals" => {
                expected(v, val, names).map(|e| CookiePredicate::Value(Predicate::Equals(e)))
            }
            "secure" => v.bool(val, "`secure`").map(CookiePredicate::Secure),
            "http_only" => v.bool(val, "`http_only`").map(CookiePredicate::HttpOnly),
            "same_site" => {
                let s = v.string(val, "`same_site`");
                match s.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("strict") => Some(CookiePredicate::SameSite("Strict".into())),
                    Some("lax") => Some(CookiePredicate::SameSite("Lax".into())),
                    Some("none") => Some(CookiePredicate::SameSite("None".into())),
                    Some(_) => {
                        v.error(val.span, "`same_site` is `Strict`, `Lax` or `None`");
                        None
                    }
                    None => None,
                }
            }
            "path" => v.string(val, "`path`").map(CookiePredicate::Path),
            "domain" => v.string(val, "`domain`").map(CookiePredicate::Domain),
            _ => None,
        };
        if let Some(p) = p {
            out.push((k.span, p));
        }
    }
    out
}

pub(super) fn captures(v: &mut Validator<'_>, n: &SNode) -> Vec<Capture> {
    let Some(entries) = v.free_map(n, "`capture`") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in entries {
        if !v.identifier(k.span, &k.name, "capture") {
            continue;
        }
        let Some(f) = v.map(val, "a capture", CAPTURE_KEYS) else {
            continue;
        };
        let sources: Vec<&str> = CAPTURE_SOURCES
            .iter()
            .copied()
            .filter(|s| f.has(s))
            .collect();
        let redact = f
            .get("redact")
            .and_then(|r| v.bool(r, "`redact`"))
            .unwrap_or(false);
        let source = match sources.as_slice() {
            [] => {
                v.error(val.span, format!("capture `{}` needs a source", k.name))
                    .label = Some(format!("one of {}", one_of(CAPTURE_SOURCES)));
                None
            }
            [one] => {
                let sn = f.get(one).expect("checked");
                if f.has("attr") && *one != "css" {
                    v.error(
                        f.get("attr").expect("checked").span,
                        "`attr` goes with `css`",
                    );
                }
                if f.has("group") && *one != "regex" {
                    v.error(
                        f.get("group").expect("checked").span,
                        "`group` goes with `regex`",
                    );
                }
                match *one {
                    "jsonpath" => v.string(sn, "`jsonpath`").and_then(|q| {
                        let path = v.jsonpath(sn.span, &q)?;
                        Some(CaptureSource::JsonPath { query: q, path })
                    }),
                    "css" => v.css(sn).map(|(selector, compiled)| CaptureSource::Css {
                        selector,
                        compiled,
                        attr: f.get("attr").and_then(|a| v.string(a, "`attr`")),
                    }),
                    "regex" => v.regex(sn, "`regex`").and_then(|regex| {
                        let group = f
                            .get("group")
                            .and_then(|g| v.uint(g, "`group`"))
                            .unwrap_or(if regex.captures_len() > 1 { 1 } else { 0 })
                            as usize;
                        if group >= regex.captures_len() {
                            v.error(sn.span, format!("the regex has no group {group}"))
                                .label = Some(
                                "add a group with `( )`, or set `group: 0` for the whole match"
                                    .into(),
                            );
                            return None;
                        }
                        Some(CaptureSource::Regex { regex, group })
                    }),
                    "header" => v
                        .string(sn, "`header`")
                        .map(|h| CaptureSource::Header(h.to_ascii_lowercase())),
                    "cookie" => v.string(sn, "`cookie`").map(CaptureSource::Cookie),
                    "status" => {
                        v.bool(sn, "`status`");
                        Some(CaptureSource::Status)
                    }
                    _ => {
                        v.bool(sn, "`url`");
                        Some(CaptureSource::Url)
                    }
                }
            }
            _ => {
                v.error(
                    val.span,
                    format!(
                        "capture `{}` has more than one source ({})",
                        k.name,
                        one_of(&sources)
                    ),
                );
                None
            }
        };
        if let Some(source) = source {
            out.push(Capture {
                name: k.name.clone(),
                span: k.span,
                source,
                redact,
            });
        }
    }
    out
}

fn slo(v: &mut Validator<'_>, n: &SNode, journey_timeout: Duration) -> Option<Slo> {
    let f = v.map(n, "an SLO", SLO_KEYS)?;
    let name = match f.get("name") {
        Some(nn) => v.label_safe(nn, "SLO name"),
        None => {
            v.error(n.span, "an SLO needs a `name`").label =
                Some("e.g. `name: availability`".into());
            None
        }
    };
    let objective = match f.get("objective") {
        Some(o) => {
            let text = match &o.node {
                Node::Str(s) => Some(s.clone()),
                Node::Int(_) | Node::Float(_) => o.node.scalar_text(),
                _ => {
                    v.type_error(o, "`objective`", "a percentage such as `99.5%`");
                    None
                }
            };
            text.and_then(|t| match Objective::parse(&t) {
                Ok(obj) => Some(obj),
                Err(e) => {
                    v.error(o.span, e).label =
                        Some("write a percentage between 0 and 100, e.g. `99.5%`".into());
                    None
                }
            })
        }
        None => {
            v.error(n.span, "an SLO needs an `objective`").label =
                Some("e.g. `objective: 99.5%`".into());
            None
        }
    };
    let window = match f.get("window") {
        Some(w) => v
            .duration(w, "`window`")
            .and_then(|d| match Period::from_duration(d) {
                Some(p) => Some(p),
                None => {
                    v.error(w.span, "the SLO window must be `30d` or `28d`")
                        .label = Some(
                        "the burn-rate windows and factors are defined for these two periods"
                            .into(),
                    );
                    None
                }
            }),
        None => Some(Period::Days30),
    };
    let kind = match f.get("threshold") {
        Some(t) => v.duration(t, "`threshold`").and_then(|d| {
            if d.is_zero() {
                v.error(t.span, "a latency threshold must be above 0");
                return None;
            }
            if d.as_nanos() % 1_000_000 != 0 {
                v.error(
                    t.span,
                    "a latency threshold must be a whole number of milliseconds",
                )
                .label = Some(
                    "it becomes a histogram bucket boundary (`le`), e.g. `250ms`, `2s`".into(),
                );
                return None;
            }
            if d >= journey_timeout {
                v.warn(
                    t.span,
                    "the latency threshold is not below the journey timeout",
                )
                .label = Some(
                    "runs slower than the timeout fail; this SLO can never see a slow success"
                        .into(),
                );
            }
            Some(SloKind::Latency { threshold: d })
        }),
        None => {
            if name.as_deref().is_some_and(|s| s.contains("latency")) {
                v.error(n.span, "a latency SLO needs a `threshold`").label = Some(
                    "e.g. `threshold: 2s`; without it the SLO counts failed runs (availability)"
                        .into(),
                );
                None
            } else {
                Some(SloKind::Availability)
            }
        }
    };
    let mut labels = BTreeMap::new();
    if let Some(l) = f.get("labels")
        && let Some(entries) = v.free_map(l, "SLO labels")
    {
        for (k, val) in entries {
            if let Some(t) = v.text(val, "a label value") {
                labels.insert(k.name.clone(), t);
            }
        }
    }
    let alerting = f
        .get("alerting")
        .map(|a| alerting(v, a))
        .unwrap_or_default();
    let mut judge = super::slo::Judge::default();
    if let Some(jn) = f.get("judge")
        && let Some(text) = v.string(jn, "`judge`")
    {
        match text.as_str() {
            "first" => judge = super::slo::Judge::First,
            "final" => judge = super::slo::Judge::Final,
            other => {
                v.error(jn.span, format!("unknown `judge` value `{other}`"))
                    .label = Some(
                    "write `first` (the first attempt, the default) or `final` (after retries)"
                        .into(),
                );
            }
        }
    }
    let locations = f.get("locations").and_then(|l| slo_locations(v, l));
    Some(Slo {
        name: name?,
        span: n.span,
        kind: kind?,
        objective: objective?,
        window: window?,
        labels,
        alerting,
        judge,
        locations,
    })
}

/// `locations: {total: 3, quorum: 2}` of an SLO.
fn slo_locations(v: &mut Validator<'_>, n: &SNode) -> Option<super::slo::Locations> {
    let f = v.map(n, "`locations`", &["total", "quorum"])?;
    let Some(t) = f.get("total") else {
        v.error(n.span, "`locations` needs a `total`").label = Some(
            "the number of locations probing the journey, e.g. `{total: 3, quorum: 2}`".into(),
        );
        return None;
    };
    let total = v.uint_max(t, "`total`", 1000)?;
    if total == 0 {
        v.error(t.span, "`total` must be at least 1").label =
            Some("the number of `serve --location` deployments probing the journey".into());
        return None;
    }
    let quorum = match f.get("quorum") {
        Some(q) => {
            let quorum = v.uint(q, "`quorum`")?;
            if quorum == 0 || quorum > total {
                v.error(
                    q.span,
                    format!("`quorum` must be from 1 to `total` ({total})"),
                )
                .label = Some(
                    "how many locations must burn budget at once to page, e.g. a majority".into(),
                );
                return None;
            }
            quorum
        }
        None => total / 2 + 1,
    };
    Some(super::slo::Locations {
        total: total as u32,
        quorum: quorum as u32,
    })
}

/// `liveness: {after: 2m, severity: page|ticket}`.
fn liveness(v: &mut Validator<'_>, n: &SNode, interval: Duration) -> Liveness {
    let mut l = Liveness::default();
    let Some(f) = v.map(n, "`liveness`", &["after", "severity"]) else {
        return l;
    };
    if let Some(a) = f.get("after")
        && let Some(d) = v.duration(a, "`after`")
    {
        if d <= interval || d < Duration::from_secs(60) {
            v.error(
                a.span,
                format!(
                    "`after` ({}) must be longer than the interval ({}) and at least 1m",
                    crate::diag::duration(d),
                    crate::diag::duration(interval)
                ),
            )
            .label = Some(
                "a run is due every interval, and Prometheus needs a scrape or two to see it; e.g. `after: 3m`"
                    .into(),
            );
        } else {
            l.after = Some(d);
        }
    }
    if let Some(s) = f.get("severity")
        && let Some(text) = v.string(s, "`severity`")
    {
        match text.as_str() {
            "page" => l.severity = Some(LivenessSeverity::Page),
            "ticket" => l.severity = Some(LivenessSeverity::Ticket),
            other => {
                v.error(s.span, format!("unknown liveness severity `{other}`"))
                    .label = Some("write `page` or `ticket`".into());
            }
        }
    }
    l
}

fn alerting(v: &mut Validator<'_>, n: &SNode) -> Alerting {
    let mut a = Alerting::default();
    let Some(f) = v.map(n, "`alerting`", ALERTING_KEYS) else {
        return a;
    };
    if let Some(x) = f.get("name").and_then(|x| v.string(x, "alert `name`")) {
        let ok = x
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            a.name = x;
        } else {
            v.error(
                f.get("name").expect("checked").span,
                format!("`{x}` is not a valid alert name"),
            );
        }
    }
    for (key, tier) in [("page", &mut a.page), ("ticket", &mut a.ticket)] {
        if let Some(t) = f.get(key) {
            match &t.node {
                Node::Bool(b) => tier.enabled = *b,
                _ => {
                    if let Some(tf) = v.map(t, &format!("`{key}`"), &["enabled", "labels"]) {
                        if let Some(b) = tf.get("enabled").and_then(|b| v.bool(b, "`enabled`")) {
                            tier.enabled = b;
                        }
                        if let Some(l) = tf.get("labels")
                            && let Some(entries) = v.free_map(l, "tier labels")
                        {
                            for (k, val) in entries {
                                if let Some(t) = v.text(val, "a label value") {
                                    tier.labels.insert(k.name.clone(), t);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(m) = f
        .get("min_bad_runs_to_page")
        .and_then(|m| v.uint(m, "`min_bad_runs_to_page`"))
    {
        a.min_bad_runs_to_page = m.clamp(1, 1000) as u32;
    }
    a.keep_firing_for = f
        .get("keep_firing_for")
        .and_then(|k| v.duration(k, "`keep_firing_for`"));
    a.runbook_url = f
        .get("runbook_url")
        .and_then(|k| v.string(k, "`runbook_url`"));
    a.dashboard_url = f
        .get("dashboard_url")
        .and_then(|k| v.string(k, "`dashboard_url`"));
    if let Some(l) = f.get("annotations")
        && let Some(entries) = v.free_map(l, "`annotations`")
    {
        for (k, val) in entries {
            if let Some(t) = v.text(val, "an annotation") {
                a.annotations.insert(k.name.clone(), t);
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Some(4 * 1024 * 1024));
        assert_eq!(parse_size("512KiB"), Some(512 * 1024));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn jsonpath_mistakes_get_what_to_write() {
        let fix = |q: &str| jsonpath_fix(q).map(|(f, _)| f);
        assert_eq!(
            fix("$.headers.X-Api-Key").as_deref(),
            Some("$.headers['X-Api-Key']")
        );
        assert_eq!(fix("products[0].sku").as_deref(), Some("$.products[0].sku"));
        assert_eq!(fix("[0].id").as_deref(), Some("$[0].id"));
        assert_eq!(
            fix("data.user name").as_deref(),
            Some("$.data['user name']")
        );
        assert_eq!(fix("$.a['b.c'].d-e").as_deref(), Some("$.a['b.c']['d-e']"));
        // Nothing to suggest for other mistakes, or for valid queries.
        assert_eq!(fix("$.items[?@.id in [1,2]]"), None);
        assert_eq!(fix("$.items[0]"), None);
    }

    #[test]
    fn label_safety() {
        assert!(is_label_safe("open-login_2"));
        assert!(!is_label_safe("Open Login"));
        assert_eq!(to_label_safe("Open Login"), "open-login");
    }
}
