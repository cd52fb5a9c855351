//! SLO → Prometheus rules: recording rules, multiwindow multi-burn-rate
//! alerts, a liveness alert, Alertmanager inhibitions, promtool unit tests,
//! and the "can this SLO work?" explanation shown by `wayprobe check`.
//!
//! Pure functions of the validated journeys ([`crate::journey`]) and a
//! [`RulesConfig`]; nothing here runs a journey or touches the network.
//!
//! What is generated, per SLO (`sloth_id = <service>-<journey>-<slo>`):
//!
//! - group `slo-<sloth_id>` (evaluated every [`RulesConfig::interval`]), in
//!   evaluation order: the error ratios `slo:sli_error:ratio_rate<w>` for
//!   5m 30m 1h 2h 6h 1d 3d; `slo:objective:ratio`, `slo:error_budget:ratio`,
//!   `slo:time_period:days`; `slo:current_burn_rate:ratio`; `sloth_slo_info`;
//!   then one alert per tier (page-fast 1h & 5m, page-slow 6h & 30m,
//!   ticket-fast 1d & 2h, ticket-slow 3d & 6h). Keeping ratios and alerts in
//!   one group means an alert never reads a ratio one evaluation stale.
//! - group `slo-period-<sloth_id>` (every [`RulesConfig::period_interval`]):
//!   the event-weighted error ratio over the whole period, the period burn
//!   rate and the remaining error budget. Self-contained (literal budget).
//!
//! and one group `slo-liveness-<service>` with a `JourneyRunsMissing` alert
//! per journey, because every burn-rate ratio is `0/0 = NaN` (never firing)
//! when runs stop arriving; last, the group of the drift alert
//! ([`fingerprint`]), which fires when a prober runs other journeys than
//! these rules were generated from.
//!
//! An SLO with `locations: {total, quorum}` also records each location's
//! ratio (`slo_location:sli_error:ratio_rate<w>` for the page windows); its
//! page tiers fire when at least `quorum` locations burn, and a location
//! burning alone raises a ticket carrying its `location` label.
//!
//! Every count merges the processes probing one journey from one location
//! (shards, HA replicas) with `max without (instance, pod, replica, shard)`,
//! so the rules are the same at any number of shards or replicas.
//!
//! The rules read the metric contract of `wayprobe serve`:
//! `journey_runs_total{journey,location,result}` (result `success|failure`,
//! pre-initialised at 0) and the classic histogram
//! `journey_duration_seconds{journey,location,result,le}` whose buckets include
//! every latency threshold, `le` formatted by [`le_label`]. Series names and
//! labels follow Sloth (`sloth_id`, `sloth_service`, `sloth_slo`,
//! `sloth_window`), so Sloth dashboards work unchanged.
//!
//! Numbers are exact decimals: a 99.95% objective has budget `0.0005`, and
//! the page-fast threshold of a 99.5% SLO is written `0.072` (= 14.4 × 0.005).

mod arith;
mod build;
mod explain;
pub mod fingerprint;
mod model;
mod promtest;
mod sim;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use arith::{BurnTier, Dec, WINDOWS, Window, runs_to_trip};
pub use explain::explain;
pub use model::{Rule, RuleFile, RuleGroup, render};
pub use promtest::emit_tests;

/// One SLO's expressions, shared with the SLO review and report, which
/// evaluate them over history instead of writing them into rules.
pub(crate) use build::{SloSpec, input_selector};

use crate::diag::{Diagnostic, Severity};
use crate::journey::Journey;
#[doc(no_inline)]
pub use crate::journey::slo::le_label;

/// Alert raised when a journey's runs stop arriving.
pub const LIVENESS_ALERT: &str = "JourneyRunsMissing";
/// Alert raised when no journey of the prober reports at all (prober down,
/// not scraped, or its scheduler stuck).
pub const PROBER_ALERT: &str = "WayprobeDown";

/// Global options of the generator (the per-SLO ones live in the journeys).
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    /// `sloth_service` label and the prefix of every `sloth_id` (default
    /// `wayprobe`). Two installations sharing one Prometheus need different
    /// service names or different equality matchers.
    pub service: String,
    /// Extra label matchers added to every selector of the input metrics,
    /// e.g. `job="wayprobe"`, `namespace=~"probes|probes-canary"`. Equality
    /// matchers (`=`) are also copied as labels onto every generated series and
    /// alert, so two installations never mix.
    pub matchers: Vec<Matcher>,
    /// Evaluation interval of the per-SLO and liveness groups (default 30s).
    pub interval: Duration,
    /// Evaluation interval of the period groups (default 5m).
    pub period_interval: Duration,
    /// Runbook URL template of the `JourneyRunsMissing` alert, if any
    /// (Prometheus template syntax, e.g. `.../{{ $labels.journey }}#no-runs`).
    pub liveness_runbook_url: Option<String>,
    /// Metadata of the `PrometheusRule` object (`--format prometheus-operator`).
    pub operator: OperatorMeta,
    /// Locations probing each journey (default 1). Every SLO window counts at
    /// least the runs `locations` probers make in it, so a window holding
    /// less history than its length (a new journey, a fresh Prometheus, a new
    /// location) never makes one bad run look like a burn. Fewer than the real
    /// number errs on the safe side only in steady state (the count of real
    /// runs is then larger and wins); `wayprobe check --locations` must not
    /// claim more than this. An SLO's own `locations: {total}` overrides it.
    pub locations: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            service: "wayprobe".to_string(),
            matchers: Vec::new(),
            interval: Duration::from_secs(30),
            period_interval: Duration::from_secs(300),
            liveness_runbook_url: None,
            operator: OperatorMeta::default(),
            locations: 1,
        }
    }
}

/// Metadata of the generated `PrometheusRule` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorMeta {
    /// `metadata.name` (default `<service>-slos`, lower-cased).
    pub name: Option<String>,
    /// `metadata.namespace` (omitted by default: the one `kubectl` applies to).
    pub namespace: Option<String>,
    /// `metadata.labels`; kube-prometheus-stack needs `release: <helm release>`.
    pub labels: BTreeMap<String, String>,
}

impl RulesConfig {
    /// Checks the service name, intervals, matchers and operator metadata.
    pub fn validate(&self) -> Result<(), RulesError> {
        if self.service.is_empty()
            || !self
                .service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RulesError::Service(self.service.clone()));
        }
        for (what, d) in [
            ("interval", self.interval),
            ("period interval", self.period_interval),
        ] {
            if d.as_millis() == 0 || d.subsec_nanos() % 1_000_000 != 0 {
                return Err(RulesError::Interval {
                    what,
                    value: format!("{d:?}"),
                });
            }
        }
        if self.locations == 0 || self.locations > 10_000 {
            return Err(RulesError::Locations(self.locations));
        }
        let mut seen = BTreeSet::new();
        for m in &self.matchers {
            if m.op == MatchOp::Eq && !seen.insert(m.name.clone()) {
                return Err(RulesError::Matcher {
                    input: m.to_string(),
                    reason: format!("a second equality matcher on `{}`", m.name),
                });
            }
        }
        let name = self.operator_name();
        if !is_dns_subdomain(&name) {
            return Err(RulesError::Kubernetes {
                what: "metadata name",
                value: name,
            });
        }
        if let Some(ns) = &self.operator.namespace
            && !is_dns_label(ns)
        {
            return Err(RulesError::Kubernetes {
                what: "namespace",
                value: ns.clone(),
            });
        }
        for (k, v) in &self.operator.labels {
            if !is_k8s_label_key(k) {
                return Err(RulesError::Kubernetes {
                    what: "label name",
                    value: k.clone(),
                });
            }
            if !is_k8s_label_value(v) {
                return Err(RulesError::Kubernetes {
                    what: "label value",
                    value: v.clone(),
                });
            }
        }
        Ok(())
    }

    /// `metadata.name` of the `PrometheusRule` object.
    pub fn operator_name(&self) -> String {
        self.operator.name.clone().unwrap_or_else(|| {
            format!(
                "{}-slos",
                self.service.to_ascii_lowercase().replace('_', "-")
            )
        })
    }

    /// Labels of the equality matchers, copied onto generated series and alerts.
    pub fn identity_labels(&self) -> BTreeMap<String, String> {
        self.matchers
            .iter()
            .filter(|m| m.op == MatchOp::Eq && !m.value.is_empty())
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect()
    }

    /// The matchers in output order (sorted, so flag order does not matter).
    fn sorted_matchers(&self) -> Vec<&Matcher> {
        let mut v: Vec<&Matcher> = self.matchers.iter().collect();
        v.sort_by(|a, b| (&a.name, a.op, &a.value).cmp(&(&b.name, b.op, &b.value)));
        v
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_k8s_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_k8s_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_k8s_label_value(name)
}

/// Whether `s` is a valid Prometheus label name.
pub fn is_label_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Label names the generator sets itself: user labels may not use them.
pub(crate) fn is_generated_label(s: &str) -> bool {
    matches!(
        s,
        "journey"
            | "location"
            | "result"
            | "le"
            | "alertname"
            | "long_window"
            | "short_window"
            | "burn_rate_threshold"
    ) || s.starts_with("sloth_")
        || s.starts_with("slo_")
        || s.starts_with("__")
}

/// How a [`Matcher`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~` (fully anchored regular expression)
    Re,
    /// `!~`
    Nre,
}

impl MatchOp {
    /// The PromQL operator.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// A PromQL label matcher such as `job="wayprobe"` or `namespace=~"probes.*"`.
///
/// Parsed from PromQL syntax (`"…"`, `'…'` or `` `…` `` strings with Go
/// escapes); printed back with canonical escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// The (unescaped) value or regular expression.
    pub value: String,
}

impl Matcher {
    /// Parses `name="value"`, `name!="value"`, `name=~"re"` or `name!~"re"`.
    pub fn parse(input: &str) -> Result<Self, RulesError> {
        let err = |reason: &str| RulesError::Matcher {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let s = input.trim();
        let name_len = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(s.len(), |(i, _)| i);
        let name = &s[..name_len];
        if !is_label_name(name) {
            return Err(err("expected a label name, e.g. `job=\"wayprobe\"`"));
        }
        if name == "journey" || name == "result" || name == "le" || name.starts_with("__") {
            return Err(err("wayprobe sets this label itself"));
        }
        if (is_generated_label(name) && name != "location") || name == "severity" {
            return Err(err(
                "this label name is used by the generated series and alerts",
            ));
        }
        let rest = s[name_len..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::Nre, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::Ne, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Eq, r)
        } else {
            return Err(err("expected `=`, `!=`, `=~` or `!~` after the label name"));
        };
        let value = unquote(rest.trim()).map_err(|e| err(&e))?;
        if matches!(op, MatchOp::Re | MatchOp::Nre)
            && let Err(e) = regex::Regex::new(&format!("^(?:{value})$"))
        {
            return Err(err(&format!("invalid regular expression: {e}")));
        }
        Ok(Self {
            name: name.to_string(),
            op,
            value,
        })
    }

    /// Whether a series whose label is `value` ("" when absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        let re = || {
            regex::Regex::new(&format!("^(?:{})$", self.value))
                .map(|r| r.is_match(value))
                .unwrap_or(false)
        };
        match self.op {
            MatchOp::Eq => self.value == value,
            MatchOp::Ne => self.value != value,
            MatchOp::Re => re(),
            MatchOp::Nre => !re(),
        }
    }
}

impl FromStr for Matcher {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.name,
            self.op.as_str(),
            promql_string(&self.value)
        )
    }
}

/// A PromQL double-quoted string literal: the same escapes as a YAML
/// double-quoted scalar (Go-style `\"`, `\\`, `\n`, `\uXXXX`).
pub(crate) fn promql_string(s: &str) -> String {
    yaml::dq(s)
}

/// Unquotes a PromQL string literal (Go escapes in `"…"` and `'…'`, raw `` `…` ``).
fn unquote(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let q = chars.next().ok_or("expected a quoted value")?;
    if !matches!(q, '"' | '\'' | '`') || s.len() < 2 || !s.ends_with(q) {
        return Err("expected a quoted value, e.g. `\"wayprobe\"`".into());
    }
    let body = &s[1..s.len() - 1];
    if q == '`' {
        return if body.contains('`') {
            Err("unexpected ` inside a raw string".into())
        } else {
            Ok(body.to_string())
        };
    }
    let mut out = String::new();
    let mut it = body.chars();
    while let Some(c) = it.next() {
        if c == q {
            return Err(format!("unescaped {q} inside the value"));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it.next().ok_or("dangling backslash")?;
        let hex = |it: &mut std::str::Chars<'_>, n: usize| -> Result<char, String> {
            let h: String = it.by_ref().take(n).collect();
            u32::from_str_radix(&h, 16)
                .ok()
                .filter(|_| h.len() == n)
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad escape \\{e}{h}"))
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' | '"' | '\'' => out.push(e),
            'x' => out.push(hex(&mut it, 2)?),
            'u' => out.push(hex(&mut it, 4)?),
            'U' => out.push(hex(&mut it, 8)?),
            other => return Err(format!("unknown escape \\{other}")),
        }
    }
    Ok(out)
}

/// Output formats of `wayprobe rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Prometheus rule file (`rule_files:`).
    Prometheus,
    /// A prometheus-operator `PrometheusRule` object.
    PrometheusOperator,
    /// A values file for the Helm chart (`prometheusRule:` with the groups
    /// and their fingerprint), passed to `helm install -f`.
    HelmValues,
}

impl FromStr for Format {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prometheus" => Ok(Format::Prometheus),
            "prometheus-operator" => Ok(Format::PrometheusOperator),
            "helm-values" => Ok(Format::HelmValues),
            other => Err(RulesError::Format(other.to_string())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Prometheus => "prometheus",
            Format::PrometheusOperator => "prometheus-operator",
            Format::HelmValues => "helm-values",
        })
    }
}

/// Why rules cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A `--matcher` is not a valid PromQL label matcher.
    #[error("invalid label matcher `{input}`: {reason}")]
    Matcher {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// The service name cannot be part of a `sloth_id`.
    #[error("invalid service name `{0}`: use letters, digits, `-` and `_` only")]
    Service(String),
    /// An evaluation interval is zero or not whole milliseconds.
    #[error("invalid rule {what} {value}: must be a positive whole number of milliseconds")]
    Interval {
        /// Which interval.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// `--locations` is 0 or absurdly large.
    #[error("invalid number of locations {0}: between 1 and 10000")]
    Locations(u32),
    /// Unknown `--format`.
    #[error(
        "unknown rules format `{0}`: expected `prometheus`, `prometheus-operator` or `helm-values`"
    )]
    Format(String),
    /// Invalid Kubernetes metadata for the `PrometheusRule` object.
    #[error("invalid PrometheusRule {what} `{value}`")]
    Kubernetes {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// Two SLOs get the same `sloth_id`.
    #[error("two SLOs get the same id `{id}` (journeys `{first}` and `{second}`)")]
    DuplicateId {
        /// The id.
        id: String,
        /// Journey of the first one.
        first: String,
        /// Journey of the second one.
        second: String,
    },
    /// Some SLOs cannot produce working rules; the diagnostics say why.
    #[error(
        "{} SLO problem{} generating rules",
        diagnostics.len(),
        if diagnostics.len() == 1 { " prevents" } else { "s prevent" }
    )]
    Invalid {
        /// The errors, pointing into the journey files.
        diagnostics: Vec<Diagnostic>,
    },
}

/// `<service>-<journey>-<slo>`, the `sloth_id`.
pub fn sloth_id(cfg: &RulesConfig, journey: &Journey, slo: &crate::journey::Slo) -> String {
    format!("{}-{}-{}", cfg.service, journey.name, slo.name)
}

/// Checks everything [`generate`] assumes: the config, unique `sloth_id`s,
/// and the SLO errors of [`explain`] (bucket mismatches, label names).
pub fn validate(journeys: &[Journey], cfg: &RulesConfig) -> Result<(), RulesError> {
    cfg.validate()?;
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    let mut errors = Vec::new();
    for j in journeys {
        for slo in &j.slos {
            let id = sloth_id(cfg, j, slo);
            if let Some(first) = ids.insert(id.clone(), &j.name) {
                return Err(RulesError::DuplicateId {
                    id,
                    first: first.to_string(),
                    second: j.name.clone(),
                });
            }
        }
        errors.extend(
            explain(j, 1)
                .into_iter()
                .filter(|d| d.severity == Severity::Error),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RulesError::Invalid {
            diagnostics: errors,
        })
    }
}

/// Builds the rule file for every SLO of `journeys` (see the module docs).
/// Deterministic: journeys and SLOs are sorted by name. Call [`validate`] first.
pub fn generate(journeys: &[Journey], cfg: &RulesConfig) -> RuleFile {
    let mut file = build::generate(journeys, cfg);
    fingerprint::append_group(&mut file, journeys, cfg);
    file
}

/// Alertmanager `inhibit_rules` (YAML) for the generated alerts: a firing
/// page-fast silences the slower tiers of the same SLO, a page silences the
/// tickets of the same SLO, `JourneyRunsMissing` silences every burn
/// alert of that journey (they are blind anyway), and `WayprobeDown`
/// silences the `JourneyRunsMissing` alerts it explains.
pub fn inhibition_rules(cfg: &RulesConfig) -> String {
    use std::fmt::Write as _;
    let svc = format!("sloth_service={}", promql_string(&cfg.service));
    let mut id_equal = vec!["sloth_id".to_string()];
    let mut journey_equal = vec!["journey".to_string()];
    for k in cfg.identity_labels().into_keys() {
        id_equal.push(k.clone());
        journey_equal.push(k);
    }
    let burn = "slo_alert_tier=~\".+\"".to_string();
    let mut service_equal = vec!["sloth_service".to_string()];
    service_equal.extend(cfg.identity_labels().into_keys());
    type Inhibit<'a> = (&'a str, Vec<String>, Vec<String>, &'a [String]);
    let rules: [Inhibit<'_>; 4] = [
        (
            "A fast page already covers the slower tiers of the same SLO.",
            vec![svc.clone(), "slo_alert_tier=\"page-fast\"".into()],
            vec![
                svc.clone(),
                "slo_alert_tier=~\"page-slow|ticket-fast|ticket-slow\"".into(),
            ],
            &id_equal,
        ),
        (
            "A page already covers the tickets of the same SLO.",
            vec![svc.clone(), burn.clone(), "sloth_severity=\"page\"".into()],
            vec![
                svc.clone(),
                burn.clone(),
                "sloth_severity=\"ticket\"".into(),
            ],
            &id_equal,
        ),
        (
            "Without runs every burn-rate ratio is empty: the missing-runs alert is the one to act on.",
            vec![svc.clone(), format!("alertname=\"{LIVENESS_ALERT}\"")],
            vec![svc.clone(), burn],
            &journey_equal,
        ),
        (
            "A prober that reports nothing explains every journey's missing runs.",
            vec![svc.clone(), format!("alertname=\"{PROBER_ALERT}\"")],
            vec![svc, format!("alertname=\"{LIVENESS_ALERT}\"")],
            &service_equal,
        ),
    ];
    let mut out = String::new();
    yaml::write_comment(
        &mut out,
        "",
        &model::header(
            "Alertmanager inhibit_rules for wayprobe's SLO alerts: merge the list into\n\
             the `inhibit_rules` of alertmanager.yml (matcher syntax of Alertmanager >= 0.22).",
        ),
    );
    let _ = writeln!(out, "inhibit_rules:");
    for (why, source, target, equal) in rules {
        let _ = writeln!(out, "  # {why}");
        let _ = writeln!(out, "  - source_matchers:");
        for m in &source {
            let _ = writeln!(out, "      - {}", yaml::sq(m));
        }
        let _ = writeln!(out, "    target_matchers:");
        for m in &target {
            let _ = writeln!(out, "      - {}", yaml::sq(m));
        }
        let _ = writeln!(out, "    equal: [{}]", equal.join(", "));
    }
    out
}

/// Journeys for unit tests.
#[cfg(test)]
pub(crate) fn test_journey(name: &str, interval: &str, slos: &str) -> Journey {
    use crate::diag::SourceFile;
    use crate::journey::load::{LoadOptions, load_sources};
    let text = format!(
        "name: {name}\ninterval: {interval}\ntimeout: 5s\nsteps:\n  - name: home\n    http: {{url: \"https://shop.example.com/\"}}\nslos:\n{slos}"
    );
    let loaded = load_sources(
        vec![SourceFile::new(format!("{name}.yaml"), text)],
        &LoadOptions::default(),
        vec![],
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()));
    loaded.journeys.into_iter().next().expect("one journey")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_and_print() {
        let m = Matcher::parse(r#"job="wayprobe""#).unwrap();
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("job", MatchOp::Eq, "wayprobe")
        );
        assert_eq!(m.to_string(), r#"job="wayprobe""#);
        let m = Matcher::parse(r#" namespace =~ 'probes|probes-\'x\'' "#).unwrap();
        assert_eq!(m.value, "probes|probes-'x'");
        assert_eq!(m.to_string(), r#"namespace=~"probes|probes-'x'""#);
        let m = Matcher::parse(r#"env!~`dev.*\d`"#).unwrap();
        assert_eq!(m.to_string(), r#"env!~"dev.*\\d""#);
        assert!(m.matches("prod") && !m.matches("dev1"));
        let m = Matcher::parse(r#"x!="a\"b\n""#).unwrap();
        assert_eq!(m.value, "a\"b\n");
        assert_eq!(m.to_string(), r#"x!="a\"b\n""#);
        for bad in [
            "job",
            "job=wayprobe",
            "job=\"x",
            "1job=\"x\"",
            "journey=\"x\"",
            "sloth_id=\"x\"",
            "ns=~\"(\"",
            "job==\"x\"",
            "job=\"a\\q\"",
            "job=\"a\" extra",
        ] {
            assert!(Matcher::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    /// `liveness`, `retries`, `retry_delay` and `judge` are read, and bad
    /// values are errors that point at them and say what to write.
    #[test]
    fn liveness_retries_and_judge_are_validated() {
        use crate::diag::SourceFile;
        use crate::journey::load::{LoadOptions, load_sources};
        let load = |extra: &str, judge: &str| {
            let text = format!(
                "name: j\ninterval: 30s\ntimeout: 5s\n{extra}steps:\n  - name: home\n    http: {{url: \"https://shop.example.com/\"}}\nslos:\n  - {{name: availability, objective: 99%{judge}}}\n"
            );
            load_sources(
                vec![SourceFile::new("j.yaml", text)],
                &LoadOptions::default(),
                vec![],
            )
        };
        let j = load(
            "liveness: {after: 4m, severity: ticket}\nretries: 2\nretry_delay: 3s\n",
            ", judge: final",
        )
        .unwrap()
        .journeys
        .remove(0);
        assert_eq!(j.liveness.after, Some(Duration::from_secs(240)));
        assert_eq!(
            j.liveness.severity,
            Some(crate::journey::LivenessSeverity::Ticket)
        );
        assert_eq!(
            (j.retries.count, j.retries.delay),
            (2, Duration::from_secs(3))
        );
        assert_eq!(j.slos[0].judge, crate::journey::slo::Judge::Final);
        for (extra, judge, want) in [
            (
                "liveness: {after: 20s}\n",
                "",
                "must be longer than the interval",
            ),
            (
                "liveness: {severity: loud}\n",
                "",
                "unknown liveness severity `loud`",
            ),
            ("retries: 9\n", "", "`retries: 9` is too many"),
            (
                "retry_delay: 1m\n",
                "",
                "`retry_delay` must be shorter than the interval",
            ),
            ("", ", judge: last", "unknown `judge` value `last`"),
        ] {
            let e = load(extra, judge).unwrap_err();
            let titles: Vec<String> = e.diagnostics().iter().map(|d| d.title.clone()).collect();
            assert!(
                titles.iter().any(|t| t.contains(want)),
                "{extra}{judge}: {titles:?}"
            );
        }
    }

    #[test]
    fn config_validation() {
        assert!(RulesConfig::default().validate().is_ok());
        let mut c = RulesConfig {
            service: "my shop".into(),
            ..Default::default()
        };
        assert!(matches!(c.validate(), Err(RulesError::Service(_))));
        c.service = "Shop_1".into();
        assert_eq!(c.operator_name(), "shop-1-slos");
        assert!(c.validate().is_ok());
        c.operator.namespace = Some("Probes".into());
        assert!(matches!(c.validate(), Err(RulesError::Kubernetes { .. })));
        c.operator.namespace = Some("probes".into());
        c.operator
            .labels
            .insert("release".into(), "kube-prometheus-stack".into());
        c.operator
            .labels
            .insert("app.kubernetes.io/part-of".into(), "wayprobe".into());
        assert!(c.validate().is_ok());
        c.operator.labels.insert("bad key!".into(), "x".into());
        assert!(c.validate().is_err());
        let c = RulesConfig {
            interval: Duration::ZERO,
            ..Default::default()
        };
        assert!(matches!(c.validate(), Err(RulesError::Interval { .. })));
        assert_eq!(
            "prometheus-operator".parse::<Format>().unwrap(),
            Format::PrometheusOperator
        );
        assert!("json".parse::<Format>().is_err());
    }

    #[test]
    fn inhibition_rules_parse_back() {
        #[derive(serde::Deserialize)]
        struct Am {
            inhibit_rules: Vec<Inhibit>,
        }
        #[derive(serde::Deserialize)]
        struct Inhibit {
            source_matchers: Vec<String>,
            target_matchers: Vec<String>,
            equal: Vec<String>,
        }
        let cfg = RulesConfig {
            matchers: vec![Matcher::parse(r#"namespace="probes""#).unwrap()],
            ..Default::default()
        };
        let text = inhibition_rules(&cfg);
        let am: Am = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(am.inhibit_rules.len(), 4);
        assert_eq!(am.inhibit_rules[3].equal, ["sloth_service", "namespace"]);
        let first = &am.inhibit_rules[0];
        assert_eq!(
            first.source_matchers,
            [
                r#"sloth_service="wayprobe""#,
                r#"slo_alert_tier="page-fast""#
            ]
        );
        assert_eq!(
            first.target_matchers[1],
            r#"slo_alert_tier=~"page-slow|ticket-fast|ticket-slow""#
        );
        assert_eq!(first.equal, ["sloth_id", "namespace"]);
        assert_eq!(
            am.inhibit_rules[2].source_matchers[1],
            r#"alertname="JourneyRunsMissing""#
        );
        assert_eq!(am.inhibit_rules[2].equal, ["journey", "namespace"]);
    }
}
