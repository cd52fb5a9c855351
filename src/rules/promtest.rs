//! `--emit-tests`: promtool unit tests for each SLO and each journey's
//! liveness, written by the same code that writes the rules, with every
//! expectation computed by [`super::sim`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::arith::{BurnTier, humanize_duration, humanize_percentage, prom_duration, runs_to_trip};
use super::build::{
    SloSpec, liveness_after, liveness_by, liveness_rules, prober_rules, single_journey_file, sorted,
};
use super::sim::{Firing, Liveness, Outcome, Scenario, Sim, Timeline};
use super::{
    Format, LIVENESS_ALERT, MatchOp, Matcher, PROBER_ALERT, RulesConfig, model, promql_string,
    render, yaml,
};
use crate::journey::Journey;

/// How long the outage lasts after the alert under test fired.
const OUTAGE_TAIL_MIN: u64 = 10;
/// Longest outage searched for a firing alert.
const MAX_OUTAGE_MIN: u64 = 720;
/// Longest simulated (and emitted) timeline: a scenario that would need more
/// is left out, with a comment, so no interval makes the tests run away.
const MAX_TIMELINE_MIN: u64 = 1_500;
/// How long the "one bad run" scenarios watch: past the 1h page window.
const WATCH_MIN: u64 = 70;
/// When the prober stops in the liveness scenarios.
const STOP_MIN: u64 = 10;

/// Writes promtool unit tests: for every SLO a `<sloth_id>.rules.yaml` (its
/// two groups and its journey's liveness group, exactly as
/// [`super::generate`] writes them) and a `<sloth_id>.test.yaml`; for every
/// journey without SLOs a `<service>-<journey>-liveness.{rules,test}.yaml`.
///
/// The scenarios start from an empty Prometheus, as a new journey does:
///
/// - a new journey whose first run fails, then passes: no alert of any tier
///   (unless `check` says one bad run pages);
/// - a Prometheus that starts while the prober has long been running, then
///   one bad run: no alert;
/// - a new journey in a hard outage, phased so that the bad run that must
///   trip the fastest enabled tier ends on a whole minute: not firing one
///   sample before, firing at that minute, reset after recovery; for
///   journeys running more than once a minute, the same outage phased one
///   run earlier must not fire;
/// - a stuck scheduler (series scraped, no runs) and a dead prober (series
///   gone) raise `JourneyRunsMissing` and `WayprobeDown` at the stated time
///   and severity, and no burn alert;
/// - absent series raise `JourneyRunsMissing`.
///
/// SLOs with `locations: {total, quorum}` are left out (their journey's
/// liveness tests stay): their page needs several locations' series.
///
/// Inputs are sampled once a minute, like a 1m scrape; timelines are at
/// most a day long, so the tests take seconds. Expected firing times come
/// from a float-exact mirror of the rules for Prometheus 2.x (closed range
/// selection). Returns `(file name, YAML)` pairs, sorted.
pub fn emit_tests(journeys: &[Journey], cfg: &RulesConfig) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (j, slos) in sorted(journeys) {
        let mut write = |id: String, slo: Option<&crate::journey::Slo>, test: String| {
            let rules_name = rules_file_name(&id);
            let mut rules = String::new();
            yaml::write_comment(
                &mut rules,
                "",
                &format!(
                    "The rule groups of `{id}` exactly as `wayprobe rules` writes them\n(with the liveness group of journey `{}` only), for {id}.test.yaml.",
                    j.name
                ),
            );
            rules.push_str(&render(
                &single_journey_file(j, slo, cfg),
                Format::Prometheus,
                cfg,
            ));
            files.push((rules_name, rules));
            files.push((format!("{id}.test.yaml"), test));
        };
        // The scenarios feed one location; an SLO with `locations:` pages
        // only when several burn, so its tests are the fleet scenarios of
        // tests/it/fleet.rs (promtool over several locations and shards).
        let slos: Vec<_> = slos.into_iter().filter(|s| s.locations.is_none()).collect();
        if slos.is_empty() {
            let live = LiveBuilder::new(j, cfg);
            let id = format!("{}-{}-liveness", cfg.service, j.name);
            let test = live.test_file(&id, &rules_file_name(&id)).render();
            write(id, None, test);
        }
        for slo in slos {
            let spec = SloSpec::new(j, slo, cfg);
            let test = TestFile::build(&spec, &rules_file_name(&spec.id)).render();
            write(spec.id.clone(), Some(slo), test);
        }
    }
    files.sort();
    files
}

fn rules_file_name(id: &str) -> String {
    format!("{id}.rules.yaml")
}

/// An expected alert (labels without `alertname`).
struct ExpAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

struct AlertCheck {
    minute: u64,
    alertname: String,
    comment: String,
    alerts: Vec<ExpAlert>,
    /// Matchers that pick this alert's `ALERTS` series (annotation-less fallback).
    selector: String,
}

struct ExprCheck {
    minute: u64,
    comment: String,
    expr: String,
    /// `(series in PromQL text, value)`.
    samples: Vec<(String, f64)>,
}

struct Group {
    name: String,
    comment: String,
    series: Vec<(String, String)>,
    alerts: Vec<AlertCheck>,
    exprs: Vec<ExprCheck>,
}

struct TestFile {
    header: String,
    rules_name: String,
    groups: Vec<Group>,
}

/// Expands the template forms tests can predict: `{{ $labels.x }}`,
/// `{{ .Labels.x }}`, `{{ $value | humanizePercentage }}` and
/// `{{ $value | humanizeDuration }}`.
fn expand(template: &str, labels: &BTreeMap<String, String>, value: f64) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let action = &after[..end];
        if action.starts_with('-') || action.ends_with('-') {
            return None;
        }
        let action: Vec<&str> = action.split_whitespace().collect();
        match action.as_slice() {
            [v] => {
                let name = v
                    .strip_prefix("$labels.")
                    .or_else(|| v.strip_prefix(".Labels."))?;
                out.push_str(labels.get(name)?);
            }
            ["$value" | ".Value", "|", "humanizePercentage"]
            | ["humanizePercentage", "$value" | ".Value"] => {
                out.push_str(&humanize_percentage(value));
            }
            ["$value" | ".Value", "|", "humanizeDuration"]
            | ["humanizeDuration", "$value" | ".Value"] => {
                out.push_str(&humanize_duration(value));
            }
            _ => return None,
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// A label value that satisfies `m`, or `None` when none was found.
/// `Some("")` means "leave the label out".
fn example_value(m: &Matcher) -> Option<String> {
    let mut candidates: Vec<String> = vec![String::new()];
    match m.op {
        MatchOp::Eq => candidates.insert(0, m.value.clone()),
        MatchOp::Re => candidates.extend(regex_examples(&m.value)),
        MatchOp::Ne | MatchOp::Nre => {}
    }
    candidates.extend(["wayprobe", "wayprobe-test", "x", "0"].map(String::from));
    candidates.into_iter().find(|c| m.matches(c))
}

/// Strings a simple regular expression probably matches: each top-level
/// alternative with escapes resolved, optional parts dropped, `.` as `x`,
/// classes as their first character. Callers verify them.
fn regex_examples(re: &str) -> Vec<String> {
    let mut alts = vec![String::new()];
    let mut depth = 0;
    let mut class = false;
    let mut prev_escape = false;
    for c in re.chars() {
        let last = alts.last_mut().expect("one");
        if prev_escape {
            prev_escape = false;
            last.push('\\');
            last.push(c);
            continue;
        }
        match c {
            '\\' => prev_escape = true,
            '[' if !class => {
                class = true;
                last.push(c);
            }
            ']' if class => {
                class = false;
                last.push(c);
            }
            '(' if !class => {
                depth += 1;
                last.push(c);
            }
            ')' if !class => {
                depth -= 1;
                last.push(c);
            }
            '|' if !class && depth == 0 => alts.push(String::new()),
            c => last.push(c),
        }
    }
    alts.iter().map(|a| sketch(a)).collect()
}

fn sketch(alt: &str) -> String {
    let chars: Vec<char> = alt.chars().collect();
    let mut out = String::new();
    let mut atom_start = 0;
    let mut groups: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '^' | '$' => {}
            '(' => {
                groups.push(out.len());
                if chars.get(i + 1) == Some(&'?') {
                    // (?:  (?P<name>  (?i)
                    while i < chars.len() && chars[i] != ':' && chars[i] != ')' {
                        i += 1;
                    }
                    if chars.get(i) == Some(&')') {
                        groups.pop();
                    }
                }
            }
            ')' => atom_start = groups.pop().unwrap_or(0),
            '|' => {
                // keep the group's first alternative: skip to its closing paren
                let mut depth = 0;
                while i + 1 < chars.len() {
                    i += 1;
                    match chars[i] {
                        '\\' => i += 1,
                        '(' => depth += 1,
                        ')' if depth == 0 => {
                            i -= 1;
                            break;
                        }
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
            }
            '*' | '?' => out.truncate(atom_start),
            '+' => {}
            '{' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .map_or(chars.len(), |p| i + p);
                let spec: String = chars[i + 1..close.min(chars.len())].iter().collect();
                let n: usize = spec
                    .split(',')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1);
                let atom: String = out[atom_start..].to_string();
                out.truncate(atom_start);
                out.push_str(&atom.repeat(n));
                i = close;
            }
            '\\' if i + 1 < chars.len() => {
                atom_start = out.len();
                i += 1;
                out.push(match chars[i] {
                    'd' => '0',
                    'w' => 'a',
                    's' => ' ',
                    other => other,
                });
            }
            '.' => {
                atom_start = out.len();
                out.push('x');
            }
            '[' => {
                atom_start = out.len();
                let negated = chars.get(i + 1) == Some(&'^');
                let first = chars
                    .get(i + 1 + usize::from(negated))
                    .copied()
                    .unwrap_or('x');
                out.push(if negated { '~' } else { first });
                i += 1 + usize::from(negated);
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
            }
            c => {
                atom_start = out.len();
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

impl TestFile {
    fn build(spec: &SloSpec<'_>, rules_name: &str) -> Self {
        let b = Builder::new(spec);
        let mut groups = vec![b.one_bad_run_group(false), b.one_bad_run_group(true)];
        let (main, before) = b.outage_groups();
        groups.push(main);
        groups.extend(before);
        groups.extend(b.live_groups());
        let mut header = model::header(&format!("promtool unit tests for SLO `{}`.", spec.id));
        let _ = write!(
            header,
            "\nRun: promtool test rules {id}.test.yaml   (Prometheus 2.x promtool)\n\
             The journey runs every {every}; inputs are its counters sampled once a\n\
             minute, like a 1m scrape, from an empty Prometheus. Expected alerts come\n\
             from wayprobe's float-exact model of these rules under Prometheus 2.x\n\
             (closed range selection).",
            id = spec.id,
            every = prom_duration(spec.journey.interval),
        );
        b.live.notes(&mut header);
        Self {
            header,
            rules_name: rules_name.to_string(),
            groups,
        }
    }
    fn render(&self) -> String {
        let mut out = String::new();
        yaml::write_comment(&mut out, "", &self.header);
        let _ = writeln!(out, "rule_files:\n  - {}", yaml::name(&self.rules_name));
        let _ = writeln!(out, "evaluation_interval: 1m\ntests:");
        for g in &self.groups {
            yaml::write_comment(&mut out, "  ", &g.comment);
            let _ = writeln!(out, "  - name: {}", yaml::dq(&g.name));
            let _ = writeln!(out, "    interval: 1m");
            let _ = writeln!(out, "    input_series:");
            if g.series.is_empty() {
                out.truncate(out.len() - 1);
                out.push_str(" []\n");
            }
            for (s, v) in &g.series {
                let _ = writeln!(out, "      - series: {}", yaml::sq(s));
                let _ = writeln!(out, "        values: {}", yaml::sq(v));
            }
            if !g.alerts.is_empty() {
                let _ = writeln!(out, "    alert_rule_test:");
            }
            for c in &g.alerts {
                yaml::write_comment(&mut out, "      ", &c.comment);
                let _ = writeln!(out, "      - eval_time: {}m", c.minute);
                let _ = writeln!(out, "        alertname: {}", yaml::name(&c.alertname));
                if c.alerts.is_empty() {
                    let _ = writeln!(out, "        exp_alerts: []");
                    continue;
                }
                let _ = writeln!(out, "        exp_alerts:");
                for a in &c.alerts {
                    let _ = writeln!(out, "          - exp_labels:");
                    for (k, v) in &a.labels {
                        let _ = writeln!(out, "              {}: {}", yaml::key(k), yaml::dq(v));
                    }
                    if !a.annotations.is_empty() {
                        let _ = writeln!(out, "            exp_annotations:");
                        for (k, v) in &a.annotations {
                            let _ =
                                writeln!(out, "              {}: {}", yaml::key(k), yaml::dq(v));
                        }
                    }
                }
            }
            if !g.exprs.is_empty() {
                let _ = writeln!(out, "    promql_expr_test:");
            }
            for e in &g.exprs {
                yaml::write_comment(&mut out, "      ", &e.comment);
                let _ = writeln!(out, "      - expr: {}", yaml::sq(&e.expr));
                let _ = writeln!(out, "        eval_time: {}m", e.minute);
                if e.samples.is_empty() {
                    let _ = writeln!(out, "        exp_samples: []");
                    continue;
                }
                let _ = writeln!(out, "        exp_samples:");
                for (labels, value) in &e.samples {
                    let _ = writeln!(out, "          - labels: {}", yaml::sq(labels));
                    let _ = writeln!(out, "            value: {value}");
                }
            }
        }
        out
    }
}

/// Input series and liveness expectations, shared by the SLO tests and the
/// liveness-only tests of journeys without SLOs.
struct LiveBuilder<'a> {
    journey: &'a Journey,
    cfg: &'a RulesConfig,
    /// Labels every input series carries (besides journey/result/le).
    input_labels: BTreeMap<String, String>,
    unmatched: Vec<String>,
    /// Whether every annotation template can be predicted.
    annotations_ok: bool,
    interval_ms: u64,
    /// `liveness_after` in seconds.
    after: u64,
}

/// A liveness scenario: its group, timeline, whether the series are absent,
/// and the minutes at which burn alerts must be silent.
struct LiveCase {
    group: Group,
    tl: Timeline,
    absent: bool,
    quiet_at: Vec<u64>,
}

impl<'a> LiveBuilder<'a> {
    fn new(journey: &'a Journey, cfg: &'a RulesConfig) -> Self {
        let mut input_labels = BTreeMap::from([
            ("instance".to_string(), "wayprobe-test".to_string()),
            ("location".to_string(), "test".to_string()),
        ]);
        let mut unmatched = Vec::new();
        for m in &cfg.matchers {
            let current = input_labels.get(&m.name).cloned().unwrap_or_default();
            if m.matches(&current) {
                continue;
            }
            match example_value(m) {
                Some(v) if v.is_empty() => {
                    input_labels.remove(&m.name);
                }
                Some(v) => {
                    input_labels.insert(m.name.clone(), v);
                }
                None => unmatched.push(format!("`{m}`")),
            }
        }
        // Several locations run a journey `locations` times per interval;
        // the tests feed that rate through one series.
        let interval_ms = u64::try_from(journey.interval.as_millis())
            .unwrap_or(u64::MAX)
            .div_ceil(u64::from(cfg.locations.max(1)))
            .max(1);
        let mut b = Self {
            journey,
            cfg,
            input_labels,
            unmatched,
            annotations_ok: true,
            interval_ms,
            after: liveness_after(journey).as_secs(),
        };
        b.annotations_ok = [true, false].into_iter().all(|prober| {
            b.live_alert(prober, true, 90.0).is_some() && b.live_alert(prober, false, 0.0).is_some()
        });
        b
    }

    fn after_min(&self) -> u64 {
        self.after.div_ceil(60)
    }

    /// Whether the liveness scenarios fit in [`MAX_TIMELINE_MIN`].
    fn fits(&self) -> bool {
        STOP_MIN + self.after_min() + 5 <= MAX_TIMELINE_MIN
    }

    fn notes(&self, header: &mut String) {
        if !self.unmatched.is_empty() {
            let _ = write!(
                header,
                "\nWARNING: no input label value was found for matcher(s) {}; these tests\nwill fail until the input series are edited to match.",
                self.unmatched.join(", ")
            );
        }
        if !self.annotations_ok {
            header.push_str(
                "\nSome annotation templates cannot be predicted here, so alerts are checked\nthrough the ALERTS series (labels only) instead of alert_rule_test.",
            );
        }
        if !self.fits() {
            let _ = write!(
                header,
                "\nThe liveness alerts fire after {}: too long to simulate here, so their\nscenarios are left out.",
                prom_duration(std::time::Duration::from_secs(self.after))
            );
        }
    }

    fn series_name(&self, metric: &str, journey: &str, extra: &[(&str, &str)]) -> String {
        let mut l = self.input_labels.clone();
        l.insert("journey".into(), journey.to_string());
        for (k, v) in extra {
            l.insert((*k).into(), (*v).into());
        }
        series_text(metric, &l)
    }

    /// The input series of a timeline, as promtool `values` strings; `le` for
    /// a latency SLO's histogram.
    fn input_series(&self, tl: &Timeline, le: Option<&str>) -> Vec<(String, String)> {
        self.input_series_of(tl, le, "journey_runs_total")
    }

    /// [`Self::input_series`] with the availability counter named `runs`
    /// (`journey_first_attempts_total` for SLOs judging first attempts).
    fn input_series_of(
        &self,
        tl: &Timeline,
        le: Option<&str>,
        runs: &str,
    ) -> Vec<(String, String)> {
        let j = self.journey.name.as_str();
        let zero = vec![0; tl.good.len()];
        let all: Vec<u64> = tl.good.iter().zip(&tl.bad).map(|(g, b)| g + b).collect();
        let v = |vals: &[u64]| values_present(vals, &tl.present);
        let mut out = Vec::new();
        match le {
            Some(le) => {
                out.push((
                    self.series_name("journey_runs_total", j, &[("result", "success")]),
                    v(&all),
                ));
                out.push((
                    self.series_name("journey_runs_total", j, &[("result", "failure")]),
                    v(&zero),
                ));
                out.push((
                    self.series_name(
                        "journey_duration_seconds_count",
                        j,
                        &[("result", "success")],
                    ),
                    v(&all),
                ));
                out.push((
                    self.series_name(
                        "journey_duration_seconds_bucket",
                        j,
                        &[("result", "success"), ("le", le)],
                    ),
                    v(&tl.good),
                ));
            }
            None => {
                out.push((
                    self.series_name(runs, j, &[("result", "success")]),
                    v(&tl.good),
                ));
                out.push((
                    self.series_name(runs, j, &[("result", "failure")]),
                    v(&tl.bad),
                ));
            }
        }
        out.push((
            self.series_name("journey_last_run_timestamp_seconds", j, &[]),
            v(&tl.ts),
        ));
        out
    }

    /// The expected `JourneyRunsMissing` (or, `prober`, `WayprobeDown`) alert:
    /// `runs` = the `missing="runs"` one with `$value` = `value`.
    fn live_alert(&self, prober: bool, runs: bool, value: f64) -> Option<ExpAlert> {
        let rule = if prober {
            prober_rules(&[self.journey], self.cfg)
        } else {
            liveness_rules(self.journey, self.cfg)
        };
        let rule = &rule[if runs { 0 } else { 1 }];
        let mut labels = self.cfg.identity_labels();
        if !prober {
            labels.insert("journey".into(), self.journey.name.clone());
            debug_assert_eq!(labels.len(), liveness_by(self.cfg).len());
        }
        labels.extend(rule.labels.clone());
        let mut annotations = BTreeMap::new();
        for (k, t) in &rule.annotations {
            annotations.insert(k.clone(), expand(t, &labels, value)?);
        }
        Some(ExpAlert {
            labels,
            annotations,
        })
    }

    /// Checks of both liveness alerts at minute `t`.
    fn live_checks(&self, live: &Liveness, t: u64, comment: &str) -> Vec<AlertCheck> {
        [false, true]
            .into_iter()
            .map(|prober| {
                let mut alerts = Vec::new();
                if let Some(age) = live.runs[t as usize] {
                    alerts.extend(self.expect(self.live_alert(prober, true, age), || {
                        self.live_labels(prober, true)
                    }));
                }
                if live.series[t as usize] {
                    alerts.extend(self.expect(self.live_alert(prober, false, 0.0), || {
                        self.live_labels(prober, false)
                    }));
                }
                let name = if prober { PROBER_ALERT } else { LIVENESS_ALERT };
                AlertCheck {
                    minute: t,
                    alertname: name.to_string(),
                    comment: format!("{name}: {comment}"),
                    alerts,
                    selector: if prober {
                        format!("sloth_service={}", promql_string(&self.cfg.service))
                    } else {
                        format!("journey={}", promql_string(&self.journey.name))
                    },
                }
            })
            .collect()
    }

    fn expect(
        &self,
        a: Option<ExpAlert>,
        labels: impl Fn() -> BTreeMap<String, String>,
    ) -> Option<ExpAlert> {
        Some(a.unwrap_or_else(|| ExpAlert {
            labels: labels(),
            annotations: BTreeMap::new(),
        }))
    }

    fn live_labels(&self, prober: bool, runs: bool) -> BTreeMap<String, String> {
        let rule = if prober {
            prober_rules(&[self.journey], self.cfg)
        } else {
            liveness_rules(self.journey, self.cfg)
        };
        let mut labels = self.cfg.identity_labels();
        if !prober {
            labels.insert("journey".into(), self.journey.name.clone());
        }
        labels.extend(rule[if runs { 0 } else { 1 }].labels.clone());
        labels
    }

    /// Puts alert checks into the group: as `alert_rule_test`, or through the
    /// `ALERTS` series when annotations cannot be predicted.
    fn add_checks(&self, g: &mut Group, checks: Vec<AlertCheck>) {
        if self.annotations_ok {
            g.alerts.extend(checks);
            return;
        }
        for c in checks {
            let expr = format!(
                "ALERTS{{alertname={},alertstate=\"firing\",{}}}",
                promql_string(&c.alertname),
                c.selector
            );
            let samples = c
                .alerts
                .iter()
                .map(|a| {
                    let mut l = a.labels.clone();
                    l.insert("alertname".into(), c.alertname.clone());
                    l.insert("alertstate".into(), "firing".into());
                    (series_text("ALERTS", &l), 1.0)
                })
                .collect();
            g.exprs.push(ExprCheck {
                minute: c.minute,
                comment: c.comment,
                expr,
                samples,
            });
        }
    }

    fn severity(&self) -> String {
        let l = self.live_labels(false, true);
        format!("severity {}", l.get("severity").map_or("?", String::as_str))
    }

    /// The stuck-scheduler, dead-prober and absent-series scenarios.
    fn cases(&self, le: Option<&str>) -> Vec<LiveCase> {
        if !self.fits() {
            return Vec::new();
        }
        let after = prom_duration(std::time::Duration::from_secs(self.after));
        let id = format!("{}-{}", self.cfg.service, self.journey.name);
        let mut out = Vec::new();
        // A stuck scheduler: series still scraped, no run finishes.
        let mut s = Scenario::new(self.interval_ms);
        s.last_run = Some(s.runs_by(STOP_MIN));
        let horizon = STOP_MIN + self.after_min() + 3;
        let tl = s.timeline(horizon);
        let live = Liveness::run(&tl, self.after, false);
        if let Some(f) = (1..=horizon).find(|&t| live.runs[t as usize].is_some()) {
            let last_ts = tl.ts[horizon as usize];
            let g = Group::new(
                format!(
                    "{id}: a stuck scheduler raises {LIVENESS_ALERT} and {PROBER_ALERT} after {after}"
                ),
                format!(
                    "Runs stop after minute {STOP_MIN} (the last one ends at {last_ts}s) while the prober is still\n\
                     scraped: {LIVENESS_ALERT}{{missing=\"runs\"}} fires once the last run is more than {after}\n\
                     old, at minute {f}, with its {}.",
                    self.severity()
                ),
                self.input_series(&tl, le),
            );
            out.push(self.case(
                g,
                tl,
                live,
                f,
                ["not yet", "firing, $value = time since the last run"],
            ));
        }
        // A dead prober: series gone.
        let mut s = Scenario::new(self.interval_ms);
        s.dead_from = Some(STOP_MIN);
        let tl = s.timeline(horizon);
        let live = Liveness::run(&tl, self.after, false);
        if let Some(f) = (1..=horizon).find(|&t| live.series[t as usize]) {
            let g = Group::new(
                format!(
                    "{id}: a dead prober raises {LIVENESS_ALERT} and {PROBER_ALERT} after {after}"
                ),
                format!(
                    "The prober dies at minute {STOP_MIN}: its series go stale, every burn-rate ratio is empty,\n\
                     and the missing=\"series\" alerts fire after `for: {after}`, at minute {f}, with its {}.",
                    self.severity()
                ),
                self.input_series(&tl, le),
            );
            out.push(self.case(g, tl, live, f, ["pending", "firing"]));
        }
        // Absent series: only another journey reports.
        let n = self.after_min() + 2;
        let tl = Timeline {
            good: vec![0; n as usize + 1],
            bad: vec![0; n as usize + 1],
            ts: vec![0; n as usize + 1],
            present: vec![false; n as usize + 1],
        };
        let live = Liveness::run(&tl, self.after, true);
        if let Some(f) = (0..=n).find(|&t| live.series[t as usize]) {
            let other = format!("{}-other", self.journey.name);
            let mut g = Group::new(
                format!("{id}: absent series raise {LIVENESS_ALERT}"),
                "Only another journey reports (the journey is not deployed, or the matchers are wrong).".into(),
                vec![
                    (
                        self.series_name("journey_runs_total", &other, &[("result", "success")]),
                        format!("0+1x{n}"),
                    ),
                    (
                        self.series_name("journey_last_run_timestamp_seconds", &other, &[]),
                        format!("0+60x{n}"),
                    ),
                ],
            );
            let mut checks = self.live_checks(&live, f.saturating_sub(1), "pending");
            let firing = self.live_checks(&live, f, "firing through absent()");
            checks.push(firing.into_iter().next().expect("journey check"));
            self.add_checks(&mut g, checks);
            out.push(LiveCase {
                group: g,
                tl,
                absent: true,
                quiet_at: vec![],
            });
        }
        out
    }

    /// A scenario whose liveness alerts fire at minute `f` (not at `f − 1`).
    fn case(
        &self,
        mut g: Group,
        tl: Timeline,
        live: Liveness,
        f: u64,
        says: [&str; 2],
    ) -> LiveCase {
        let mut checks = self.live_checks(&live, f - 1, says[0]);
        checks.extend(self.live_checks(&live, f, says[1]));
        self.add_checks(&mut g, checks);
        LiveCase {
            group: g,
            tl,
            absent: false,
            quiet_at: vec![f],
        }
    }

    /// The liveness-only test file of a journey without SLOs.
    fn test_file(&self, id: &str, rules_name: &str) -> TestFile {
        let mut header = model::header(&format!(
            "promtool unit tests for the liveness alerts of journey `{}` (no SLOs).",
            self.journey.name
        ));
        let _ = write!(
            header,
            "\nRun: promtool test rules {id}.test.yaml   (Prometheus 2.x promtool)\nThe journey runs every {}; inputs are sampled once a minute.",
            prom_duration(self.journey.interval)
        );
        self.notes(&mut header);
        TestFile {
            header,
            rules_name: rules_name.to_string(),
            groups: self.cases(None).into_iter().map(|c| c.group).collect(),
        }
    }
}

impl Group {
    fn new(name: String, comment: String, series: Vec<(String, String)>) -> Self {
        Self {
            name,
            comment,
            series,
            alerts: vec![],
            exprs: vec![],
        }
    }
}

struct Builder<'a> {
    spec: &'a SloSpec<'a>,
    sim: Sim<'a>,
    live: LiveBuilder<'a>,
    bad: &'static str,
}

impl<'a> Builder<'a> {
    fn new(spec: &'a SloSpec<'a>) -> Self {
        let mut b = Self {
            spec,
            sim: Sim { spec },
            live: LiveBuilder::new(spec.journey, spec.cfg),
            bad: if spec.is_latency() { "slow" } else { "failed" },
        };
        let burn_ok = BurnTier::ALL.into_iter().all(|t| {
            b.burn_alert(&Firing {
                tier: t,
                value: 0.5,
            })
            .is_some()
        });
        b.live.annotations_ok &= burn_ok;
        b
    }

    fn input_series(&self, tl: &Timeline) -> Vec<(String, String)> {
        self.live
            .input_series_of(tl, self.spec.le.as_deref(), self.spec.runs_metric())
    }

    fn burn_alert(&self, f: &Firing) -> Option<ExpAlert> {
        let mut labels = self.spec.base_labels();
        labels.extend(self.spec.alert_labels(f.tier));
        let mut annotations = BTreeMap::new();
        for (k, t) in self.spec.annotations(f.tier) {
            annotations.insert(k, expand(&t, &labels, f.value)?);
        }
        Some(ExpAlert {
            labels,
            annotations,
        })
    }

    /// The burn-rate alerts expected at minute `t`.
    fn check(&self, outcome: &Outcome, minute: u64, comment: String) -> AlertCheck {
        let alerts = outcome.burn[minute as usize]
            .iter()
            .map(|f| {
                self.burn_alert(f).unwrap_or_else(|| {
                    let mut l = self.spec.base_labels();
                    l.extend(self.spec.alert_labels(f.tier));
                    ExpAlert {
                        labels: l,
                        annotations: BTreeMap::new(),
                    }
                })
            })
            .collect();
        AlertCheck {
            minute,
            alertname: self.spec.slo.alerting.name.clone(),
            comment,
            alerts,
            selector: format!("sloth_id={}", promql_string(&self.spec.id)),
        }
    }

    fn recorded(
        &self,
        metric: &str,
        window: &str,
        minute: u64,
        value: Option<f64>,
        comment: String,
    ) -> Option<ExprCheck> {
        let value = value?;
        let mut l = self.spec.base_labels();
        l.insert("sloth_window".into(), window.into());
        Some(ExprCheck {
            minute,
            comment,
            expr: format!("{metric}{}", self.spec.id_selector()),
            samples: vec![(series_text(metric, &l), value)],
        })
    }

    /// What `check` says about one bad run.
    #[cfg(test)]
    fn single_pages(&self) -> bool {
        BurnTier::ALL.into_iter().any(|t| {
            self.spec.tier_enabled(t) && !self.spec.threshold(t).ge_one() && self.estimate(t) <= 1
        })
    }

    /// One bad run in a new journey (`restart`: in a Prometheus that starts
    /// while the prober has long been running), then good runs for 70 minutes.
    fn one_bad_run_group(&self, restart: bool) -> Group {
        let bad = self.bad;
        let mut s = Scenario::new(self.live.interval_ms);
        if restart {
            s.base = 5_000;
        }
        let k = s.base + 1 + u64::from(restart);
        s.bad = vec![k..=k];
        let visible = (0..=MAX_TIMELINE_MIN).find(|&t| s.runs_by(t) >= k);
        let (what, title) = if restart {
            (
                format!(
                    "Prometheus starts empty at minute 0 while the prober has already made {} runs;\nrun #{k} ({bad}) is the second it sees",
                    s.base
                ),
                format!("{}: a fresh Prometheus, then one {bad} run: ", self.spec.id),
            )
        } else {
            (
                format!("A new journey: its first run is a {bad} run, every later run is good"),
                format!(
                    "{}: a new journey whose first run is a {bad} run: ",
                    self.spec.id
                ),
            )
        };
        let Some(v) = visible.filter(|v| v + WATCH_MIN <= MAX_TIMELINE_MIN) else {
            return Group::new(
                format!("{title}(interval too long to simulate)"),
                "The journey runs too rarely for this scenario to fit in the simulated timeline."
                    .into(),
                vec![],
            );
        };
        let end = v + WATCH_MIN;
        let tl = s.timeline(end);
        let outcome = self.sim.run(&tl, false);
        let fired = (0..=end).any(|t| Sim::any_burn(&outcome, t));
        let verdict = if fired {
            "it pages, as `wayprobe check` warns"
        } else {
            "no alert of any tier"
        };
        let mut g = Group::new(
            format!("{title}{verdict}"),
            format!(
                "{what} (sampled at minute {v}).\nEvery window counts at least the runs it should hold, so one {bad} run\nweighs what `wayprobe check` says: {verdict}."
            ),
            self.input_series(&tl),
        );
        let mut minutes: Vec<u64> = (v..=v + 5).collect();
        minutes.extend((v + 10..=end).step_by(10));
        minutes.push(end);
        minutes.dedup();
        let mut checks: Vec<AlertCheck> = minutes
            .iter()
            .map(|&t| self.check(&outcome, t, format!("minute {t}: {}", state(&outcome, t))))
            .collect();
        checks.extend(
            self.live
                .live_checks(&outcome.live, v, "the journey is running"),
        );
        self.live.add_checks(&mut g, checks);
        g
    }

    /// The fastest enabled tier that can fire.
    fn target(&self) -> Option<BurnTier> {
        BurnTier::ALL
            .into_iter()
            .find(|t| self.spec.tier_enabled(*t) && !self.spec.threshold(*t).ge_one())
    }

    /// A new journey whose runs are all bad from run `k0`, phased so that the
    /// `j`-th bad run ends on a whole minute; `None` when that minute is
    /// beyond the simulated timeline.
    fn outage(&self, j: u64) -> Option<(Scenario, u64)> {
        let mut s = Scenario::new(self.live.interval_ms);
        let kf = s.boundary_at_or_after(j);
        let k0 = kf + 1 - j;
        s.bad = vec![k0..=kf];
        let m = s.minute_of(kf)?;
        (m + OUTAGE_TAIL_MIN <= MAX_TIMELINE_MIN).then_some((s, m))
    }

    fn first_firing_j(&self, tier: BurnTier) -> Option<u64> {
        let max_j = (MAX_OUTAGE_MIN * 60_000 / self.live.interval_ms).max(1);
        let fires = |j: u64| {
            self.outage(j).is_some_and(|(s, m)| {
                let tl = s.timeline(m);
                let o = self.sim.run(&tl, false);
                Sim::fires(&o, m, tier)
            })
        };
        // The smallest firing j, galloping from explain's estimate and then
        // bisecting (more bad runs never make an alert stop firing).
        let estimate = self.estimate(tier).clamp(1, max_j);
        let (mut lo, mut hi) = if fires(estimate) {
            let mut step = 1;
            let mut hi = estimate;
            loop {
                let lo = hi.saturating_sub(step);
                if lo == 0 || !fires(lo) {
                    break (lo, hi);
                }
                hi = lo;
                step *= 2;
            }
        } else {
            let mut step = 1;
            let mut lo = estimate;
            loop {
                if lo == max_j {
                    return None;
                }
                let hi = (lo + step).min(max_j);
                if fires(hi) {
                    break (lo, hi);
                }
                lo = hi;
                step *= 2;
            }
        };
        // invariant: lo does not fire (or is 0), hi fires
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fires(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    /// `explain`'s arithmetic: bad runs a total outage needs to trip `tier`.
    fn estimate(&self, tier: BurnTier) -> u64 {
        let thr = self.spec.threshold(tier);
        let i = self.spec.journey.interval;
        let loc = self.spec.cfg.locations;
        let long = runs_to_trip(thr, tier.long().secs, i, loc);
        let short = runs_to_trip(thr, tier.short().secs, i, loc);
        long.max(short)
            .max(u128::from(self.spec.min_bad_runs(tier)))
            .min(u128::from(u64::MAX)) as u64
    }

    /// The Workbook's bound for a hard outage to trip `tier`, in seconds:
    /// `(1 − SLO) × factor × long window`.
    fn workbook_bound(&self, tier: BurnTier) -> f64 {
        self.spec.threshold(tier).to_f64() * tier.long().secs as f64
    }

    fn outage_groups(&self) -> (Group, Option<Group>) {
        let spec = self.spec;
        let bad = self.bad;
        let Some((tier, j)) = self
            .target()
            .and_then(|t| self.first_firing_j(t).map(|j| (t, j)))
        else {
            return (self.no_alert_group(), None);
        };
        let (mut s, m) = self.outage(j).expect("first_firing_j found it");
        let k0 = *s.bad[0].start();
        let end = m + OUTAGE_TAIL_MIN;
        s.bad[0] = k0..=s.runs_by(end);
        let horizon = (end + tier.short().secs / 60 + 10).min(MAX_TIMELINE_MIN);
        let tl = s.timeline(horizon);
        let o = self.sim.run(&tl, false);
        let reset = (end + 1..=horizon).find(|&t| !Sim::fires(&o, t, tier));
        let last = reset.unwrap_or(end);
        let tl = s.timeline(last);
        let outcome = self.sim.run(&tl, false);
        let thr = spec.threshold(tier);
        let estimate = self.estimate(tier);
        let bound = self.workbook_bound(tier);
        let start_ms = u128::from(k0 - 1) * u128::from(self.live.interval_ms);
        let mut g = Group::new(
            format!(
                "{}: a new journey in a hard outage: {} fires at {bad} run #{j} (minute {m})",
                spec.id,
                tier.name()
            ),
            format!(
                "{line}\n{id}: {pct}% over {period}, budget {budget}. {tier} fires when the {long} and {short}\n\
                 ratios exceed {factor} x {budget} = {thr}. A new journey: every run is bad from run #{k0}\n\
                 (starting at {start}s) to minute {end}; {bad} run #{j} of the outage ends at minute {m}.\n\
                 explain's arithmetic: {estimate} {bad} runs{agree}. Workbook bound: {thr} x {long} =\n\
                 {bound}s after the outage starts; minute {m} is {late}s after it.\n{line}",
                line = "-".repeat(75),
                id = spec.id,
                pct = spec.slo.objective.percent(),
                period = spec.slo.window.as_str(),
                budget = spec.budget,
                tier = tier.name(),
                long = tier.long().name,
                short = tier.short().name,
                factor = tier.factor(spec.slo.window),
                start = start_ms / 1000,
                agree = if estimate == j {
                    " (agrees)"
                } else {
                    " (the simulation of the sampled inputs differs; it wins)"
                },
                bound = super::arith::go_g4(bound),
                late = (u128::from(m) * 60_000).saturating_sub(start_ms) / 1000,
            ),
            self.input_series(&tl),
        );
        let state = |t: u64| state(&outcome, t);
        let outage_bad = |t: u64| s.runs_by(t).saturating_sub(k0 - 1);
        let mut checks = vec![
            self.check(
                &outcome,
                m - 1,
                format!(
                    "one {} before, {} {bad} runs into the outage: {}",
                    if outage_bad(m - 1) + 1 == j {
                        "run"
                    } else {
                        "sample"
                    },
                    outage_bad(m - 1),
                    state(m - 1)
                ),
            ),
            self.check(
                &outcome,
                m,
                format!("{bad} run #{j} of the outage: {}", state(m)),
            ),
        ];
        if let Some(r) = reset {
            checks.push(self.check(
                &outcome,
                r - 1,
                format!(
                    "all runs good again after minute {end}; {} minutes later: {}",
                    r - 1 - end,
                    state(r - 1)
                ),
            ));
            checks.push(self.check(
                &outcome,
                r,
                format!("a minute later {} has reset: {}", tier.name(), state(r)),
            ));
        }
        checks.extend(
            self.live
                .live_checks(&outcome.live, m, "the journey is running"),
        );
        self.live.add_checks(&mut g, checks);
        g.exprs.extend(self.recorded(
            &format!("slo:sli_error:ratio_rate{}", tier.long().name),
            tier.long().name,
            m,
            self.sim.ratio(&tl, m, tier.long().secs),
            format!(
                "the {} error ratio when {} fires (bad runs over the runs the window should hold)",
                tier.long().name,
                tier.name()
            ),
        ));
        g.exprs.extend(
            self.recorded(
                "slo:current_burn_rate:ratio",
                "5m",
                m,
                self.sim
                    .ratio(&tl, m, 300)
                    .map(|v| v / spec.budget.to_f64()),
                "current burn rate (5m ratio / budget)".into(),
            ),
        );
        let period = spec.slo.window;
        g.exprs.extend(self.recorded(
            "slo:period_error_budget_remaining:ratio",
            period.as_str(),
            end,
            self.sim
                .ratio(&tl, end, u64::from(period.days()) * 86_400)
                .map(|v| 1.0 - v / spec.budget.to_f64()),
            format!(
                "remaining {} error budget when the outage ends (bad runs over the period's runs)",
                period.as_str()
            ),
        ));
        let before = self.one_run_before_group(tier, j, &s, m);
        (g, before)
    }

    /// For journeys running more often than the samples: an outage phased so
    /// that bad run `j − 1` ends on a whole minute, where the tier must not fire.
    fn one_run_before_group(
        &self,
        tier: BurnTier,
        j: u64,
        main: &Scenario,
        m: u64,
    ) -> Option<Group> {
        if j < 2 || main.runs_by(m.saturating_sub(1)) + 1 == main.runs_by(m) {
            return None;
        }
        let bad = self.bad;
        let (mut s, m1) = self.outage(j - 1)?;
        let end = m1 + 1;
        let k0 = *s.bad[0].start();
        s.bad[0] = k0..=s.runs_by(end);
        let tl = s.timeline(end);
        let outcome = self.sim.run(&tl, false);
        let mut g = Group::new(
            format!(
                "{}: {} does not fire at {bad} run #{} of a hard outage",
                self.spec.id,
                tier.name(),
                j - 1
            ),
            format!(
                "The same outage phased one run earlier: {bad} run #{} ends on minute {m1}.",
                j - 1
            ),
            self.input_series(&tl),
        );
        let n = |t: u64| s.runs_by(t).saturating_sub(k0 - 1);
        let checks = vec![
            self.check(
                &outcome,
                m1,
                format!("{} {bad} runs: {}", n(m1), state(&outcome, m1)),
            ),
            self.check(
                &outcome,
                end,
                format!(
                    "a minute later, {} {bad} runs: {}",
                    n(end),
                    state(&outcome, end)
                ),
            ),
        ];
        self.live.add_checks(&mut g, checks);
        Some(g)
    }

    fn no_alert_group(&self) -> Group {
        let mut s = Scenario::new(self.live.interval_ms);
        let end = 120;
        s.bad = vec![1..=s.runs_by(end).max(1)];
        let tl = s.timeline(end);
        let outcome = self.sim.run(&tl, false);
        let mut g = Group::new(
            format!("{}: no enabled alert tier can fire", self.spec.id),
            "Every enabled tier has factor x budget >= 1 (or none is enabled): a 2h hard\noutage of a new journey raises no burn-rate alert. `wayprobe check` warns about this.".into(),
            self.input_series(&tl),
        );
        let checks = [60, end]
            .into_iter()
            .map(|t| self.check(&outcome, t, format!("minute {t} of the outage")))
            .collect();
        self.live.add_checks(&mut g, checks);
        g
    }

    /// The liveness scenarios, with "no burn-rate alert" checks added.
    fn live_groups(&self) -> Vec<Group> {
        self.live
            .cases(self.spec.le.as_deref())
            .into_iter()
            .map(|mut c| {
                let outcome = self.sim.run(&c.tl, c.absent);
                let checks = c
                    .quiet_at
                    .iter()
                    .map(|&t| {
                        self.check(
                            &outcome,
                            t,
                            "no burn-rate alert: no runs, nothing to count".into(),
                        )
                    })
                    .collect();
                self.live.add_checks(&mut c.group, checks);
                c.group
            })
            .collect()
    }
}

/// What fires at minute `t`, for comments.
fn state(outcome: &Outcome, t: u64) -> String {
    let names: Vec<&str> = outcome.burn[t as usize]
        .iter()
        .map(|f| f.tier.name())
        .collect();
    if names.is_empty() {
        "no burn-rate alert".to_string()
    } else {
        format!("firing {}", names.join(", "))
    }
}

/// `metric{a="1",b="2"}` with sorted labels.
fn series_text(metric: &str, labels: &BTreeMap<String, String>) -> String {
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", promql_string(v)))
        .collect();
    format!("{metric}{{{}}}", body.join(","))
}

/// [`values`] of the minutes a series is scraped, then `stale` once it is
/// gone (it never comes back in these scenarios); `_` while it has not appeared.
fn values_present(v: &[u64], present: &[bool]) -> String {
    let Some(first) = present.iter().position(|p| *p) else {
        return String::new();
    };
    let last = present.iter().rposition(|p| *p).expect("one is present");
    let mut out: Vec<String> = vec!["_".to_string(); first];
    out.push(values(&v[first..=last]));
    if last + 1 < present.len() {
        out.push("stale".to_string());
    }
    out.join(" ")
}

/// promtool's expanding notation for a cumulative series (`0+1x1440 1440+0x59 ...`).
fn values(v: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        if i + 1 == v.len() {
            parts.push(v[i].to_string());
            break;
        }
        let d = v[i + 1] as i128 - v[i] as i128;
        let mut n = 1;
        while i + n + 1 < v.len() && v[i + n + 1] as i128 - v[i + n] as i128 == d {
            n += 1;
        }
        if n == 1 && i + 2 < v.len() {
            // a single step: write the value alone unless it starts a run
            parts.push(v[i].to_string());
            i += 1;
            continue;
        }
        let sign = if d < 0 { '-' } else { '+' };
        parts.push(format!("{}{sign}{}x{n}", v[i], d.abs()));
        i += n + 1;
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_values(s: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for p in s.split_whitespace() {
            if let Some((a, rest)) = p.split_once('+').or_else(|| p.split_once('-')) {
                let neg = p.contains('-');
                let (b, n) = rest.split_once('x').unwrap();
                let (a, b, n): (i64, i64, i64) =
                    (a.parse().unwrap(), b.parse().unwrap(), n.parse().unwrap());
                for k in 0..=n {
                    out.push((a + if neg { -b * k } else { b * k }) as u64);
                }
            } else {
                out.push(p.parse().unwrap());
            }
        }
        out
    }

    #[test]
    fn values_round_trip() {
        for v in [
            vec![0, 1, 2, 3, 3, 3, 4, 6, 8, 9],
            vec![0],
            vec![0, 5],
            vec![0, 1, 1, 2, 3, 3, 4, 5, 5],
            (0..2000).map(|i| i * 3 / 4).collect::<Vec<u64>>(),
        ] {
            let s = values(&v);
            assert_eq!(expand_values(&s), v, "{s}");
        }
        assert_eq!(values(&[0, 1, 2, 3, 3, 3]), "0+1x3 3+0x1");
    }

    /// The firing run found by simulating the sampled inputs is explain's
    /// number for the whole §1.6 table, at 30d and 28d.
    #[test]
    fn simulation_agrees_with_the_arithmetic() {
        let cfg = RulesConfig::default();
        for (obj, interval) in [
            ("99", "10s"),
            ("99", "30s"),
            ("99", "60s"),
            ("99.5", "10s"),
            ("99.5", "30s"),
            ("99.5", "60s"),
            ("99.9", "10s"),
            ("99.9", "30s"),
            ("99.9", "60s"),
            ("99.95", "15s"),
            ("95", "20s"),
        ] {
            for window in ["30d", "28d"] {
                for kind in ["availability", "latency, threshold: 1s"] {
                    let j = crate::rules::test_journey(
                        "j",
                        interval,
                        &format!("  - {{name: {kind}, objective: \"{obj}\", window: {window}}}\n"),
                    );
                    let spec = SloSpec::new(&j, &j.slos[0], &cfg);
                    let b = Builder::new(&spec);
                    let found = b.first_firing_j(BurnTier::PageFast);
                    let what = format!("{obj}% every {interval}, {window}, {kind}");
                    assert_eq!(found, Some(b.estimate(BurnTier::PageFast)), "{what}");
                    // a new journey's total outage pages within the Workbook
                    // bound plus one interval and one (1m) sample
                    let (s, m) = b.outage(found.unwrap()).unwrap();
                    let start = (*s.bad[0].start() - 1) as f64 * j.interval.as_secs_f64();
                    let late = m as f64 * 60.0 - start;
                    let bound =
                        b.workbook_bound(BurnTier::PageFast) + j.interval.as_secs_f64() + 60.0;
                    assert!(
                        late <= bound,
                        "{what}: pages {late}s after the outage starts, bound {bound}s"
                    );
                    // one bad run of a new journey, or in a fresh Prometheus,
                    // alerts exactly when `check` says it does
                    for restart in [false, true] {
                        let g = b.one_bad_run_group(restart);
                        let fired = g.name.ends_with("it pages, as `wayprobe check` warns");
                        assert_eq!(
                            fired,
                            b.single_pages(),
                            "{what}, restart {restart}: {}",
                            g.name
                        );
                    }
                }
            }
        }
    }

    /// No interval makes `--emit-tests` panic or simulate without bound.
    #[test]
    fn huge_intervals_do_not_run_away() {
        let cfg = RulesConfig::default();
        for interval in ["100years", "500000000000years", "59999ms", "1h1ms"] {
            let mut j = crate::rules::test_journey(
                "j",
                "1m",
                "  - {name: availability, objective: 99.5%}\n  - {name: latency, objective: 95%, threshold: 1s}\n",
            );
            j.interval = humantime::parse_duration(interval).unwrap();
            let files = emit_tests(std::slice::from_ref(&j), &cfg);
            assert_eq!(files.len(), 4, "{interval}");
            let longest = files.iter().map(|(_, t)| t.len()).max().unwrap();
            assert!(longest < 2_000_000, "{interval}: {longest} bytes");
        }
    }

    #[test]
    fn emitted_tests_are_deterministic() {
        let j =
            crate::rules::test_journey("j", "45s", "  - {name: availability, objective: 99.5%}\n");
        let cfg = RulesConfig::default();
        let a = emit_tests(std::slice::from_ref(&j), &cfg);
        assert_eq!(a, emit_tests(&[j], &cfg));
        assert_eq!(a.len(), 2);
        assert!(
            a[1].1
                .contains("rule_files:\n  - wayprobe-j-availability.rules.yaml\n")
        );
    }

    #[test]
    fn templates() {
        let l = BTreeMap::from([("journey".to_string(), "checkout".to_string())]);
        assert_eq!(
            expand(
                "{{ $labels.journey }} at {{ $value | humanizePercentage }}!",
                &l,
                5.0 / 60.0
            )
            .as_deref(),
            Some("checkout at 8.333%!")
        );
        assert_eq!(
            expand("{{.Labels.journey}}", &l, 0.0).as_deref(),
            Some("checkout")
        );
        assert_eq!(expand("{{ $labels.nope }}", &l, 0.0), None);
        assert_eq!(expand("{{ if true }}x{{ end }}", &l, 0.0), None);
        assert_eq!(expand("a }} b", &l, 0.0).as_deref(), Some("a }} b"));
    }

    #[test]
    fn regex_example_values() {
        let ex = |s: &str| example_value(&Matcher::parse(s).unwrap());
        assert_eq!(
            ex(r#"ns=~"probes|probes-canary""#).as_deref(),
            Some("probes")
        );
        assert_eq!(ex(r#"job=~"wayprobe.*""#).as_deref(), Some("wayprobe"));
        assert_eq!(
            ex(r#"job=~`way(probe|x)+-\d{2}`"#).as_deref(),
            Some("wayprobe-00")
        );
        assert_eq!(ex(r#"env=~"[a-z]+""#).as_deref(), Some("a"));
        assert_eq!(ex(r#"env!~"dev.*""#).as_deref(), Some(""));
        assert_eq!(ex(r#"env!="""#).as_deref(), Some("wayprobe"));
        assert_eq!(ex(r#"env!~".*""#), None);
    }
}
