//! `--emit-tests`: promtool unit tests for each SLO, written by the same code
//! that writes the rules, with every expectation computed by [`super::sim`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::arith::{BurnTier, humanize_percentage, runs_to_trip};
use super::build::{SloSpec, liveness_by, single_slo_file, sorted};
use super::sim::{Firing, Outcome, Scenario, Sim, Timeline};
use super::{
    Format, LIVENESS_ALERT, MatchOp, Matcher, RulesConfig, model, promql_string, render, yaml,
};
use crate::journey::Journey;

/// Healthy history before the outage (the 1d window is full when it starts).
const HISTORY_MIN: u64 = 1440;
/// When the isolated bad run happens.
const ISOLATED_MIN: u64 = 720;
/// How long the outage lasts after the alert under test fired.
const OUTAGE_TAIL_MIN: u64 = 30;
/// Longest outage searched for a firing alert.
const MAX_OUTAGE_MIN: u64 = 720;

/// Writes promtool unit tests for every SLO of `journeys`: for each SLO a
/// `<sloth_id>.rules.yaml` (its two groups and its journey's liveness alert,
/// exactly as [`super::generate`] writes them) and a `<sloth_id>.test.yaml`
/// that checks them with `promtool test rules`:
///
/// - 24h of healthy runs with one isolated bad run at 12h, then a hard outage
///   (every run bad) phased so that the bad run that must trip the fastest
///   enabled tier ends on a whole minute: the alert must not fire one sample
///   before and must fire at that minute; after recovery it must reset;
/// - for journeys running more than once a minute, a second outage phased
///   one run earlier, which must not fire (the "one run before" check);
/// - a stalled prober raises `JourneyRunsMissing` and no burn alert;
/// - absent series raise `JourneyRunsMissing`.
///
/// Inputs follow the journey's own interval: counters go up once per run and
/// are sampled once a minute (several runs per sample below 1m). Expected
/// firing times come from a float-exact mirror of the rules for Prometheus
/// 2.x (closed range selection); Prometheus 3 selects ranges left-open.
/// Returns `(file name, YAML)` pairs, sorted.
pub fn emit_tests(journeys: &[Journey], cfg: &RulesConfig) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (j, slos) in sorted(journeys) {
        for slo in slos {
            let spec = SloSpec::new(j, slo, cfg);
            let rules_name = format!("{}.rules.yaml", spec.id);
            let mut rules = String::new();
            yaml::write_comment(
                &mut rules,
                "",
                &format!(
                    "The rule groups of SLO `{}` exactly as `wayprobe rules` writes them\n(plus the liveness alert of journey `{}`), for {}.test.yaml.",
                    spec.id, j.name, spec.id
                ),
            );
            rules.push_str(&render(
                &single_slo_file(j, slo, cfg),
                Format::Prometheus,
                cfg,
            ));
            let test = TestFile::build(&spec, &rules_name).render();
            files.push((rules_name, rules));
            files.push((format!("{}.test.yaml", spec.id), test));
        }
    }
    files.sort();
    files
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
/// `{{ .Labels.x }}` and `{{ $value | humanizePercentage }}`.
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
        let mut groups = vec![];
        let (main, before) = b.outage_groups();
        groups.push(main);
        groups.extend(before);
        groups.push(b.stall_group());
        groups.push(b.absent_group());
        let mut header = model::header(&format!("promtool unit tests for SLO `{}`.", spec.id));
        let _ = write!(
            header,
            "\nRun: promtool test rules {id}.test.yaml   (Prometheus 2.x promtool)\n\
             The journey runs every {every}; inputs are its counters sampled once a\n\
             minute, like a 1m scrape. Expected alerts come from wayprobe's float-exact\n\
             model of these rules under Prometheus 2.x (closed range selection).",
            id = spec.id,
            every = super::arith::prom_duration(spec.journey.interval),
        );
        if !b.unmatched.is_empty() {
            let _ = write!(
                header,
                "\nWARNING: no input label value was found for matcher(s) {}; these tests\nwill fail until the input series are edited to match.",
                b.unmatched.join(", ")
            );
        }
        if !b.annotations_ok {
            header.push_str(
                "\nSome annotation templates cannot be predicted here, so alerts are checked\nthrough the ALERTS series (labels only) instead of alert_rule_test.",
            );
        }
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

struct Builder<'a> {
    spec: &'a SloSpec<'a>,
    sim: Sim<'a>,
    /// Labels every input series carries (besides journey/result/le).
    input_labels: BTreeMap<String, String>,
    unmatched: Vec<String>,
    /// Whether every annotation template can be predicted.
    annotations_ok: bool,
    interval_ms: u64,
    bad: &'static str,
}

impl<'a> Builder<'a> {
    fn new(spec: &'a SloSpec<'a>) -> Self {
        let mut input_labels = BTreeMap::from([
            ("instance".to_string(), "wayprobe-test".to_string()),
            ("location".to_string(), "test".to_string()),
        ]);
        let mut unmatched = Vec::new();
        for m in &spec.cfg.matchers {
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
        let mut b = Self {
            spec,
            sim: Sim { spec },
            input_labels,
            unmatched,
            annotations_ok: true,
            interval_ms: (spec.journey.interval.as_millis() as u64).max(1),
            bad: if spec.is_latency() { "slow" } else { "failed" },
        };
        b.annotations_ok = BurnTier::ALL.into_iter().all(|t| {
            b.burn_alert(&Firing {
                tier: t,
                value: 0.5,
            })
            .is_some()
        }) && b.missing_alert().is_some();
        b
    }

    fn series_name(&self, metric: &str, extra: &[(&str, &str)]) -> String {
        let mut l = self.input_labels.clone();
        l.insert("journey".into(), self.spec.journey.name.clone());
        for (k, v) in extra {
            l.insert((*k).into(), (*v).into());
        }
        let body: Vec<String> = l
            .iter()
            .map(|(k, v)| format!("{k}={}", promql_string(v)))
            .collect();
        format!("{metric}{{{}}}", body.join(","))
    }

    /// The input series of a timeline, as promtool `values` strings.
    fn input_series(&self, tl: &Timeline) -> Vec<(String, String)> {
        let zero = vec![0; tl.good.len()];
        let all: Vec<u64> = tl.good.iter().zip(&tl.bad).map(|(g, b)| g + b).collect();
        if self.spec.is_latency() {
            let le = self.spec.le.clone().unwrap_or_default();
            vec![
                (
                    self.series_name("journey_runs_total", &[("result", "success")]),
                    values(&all),
                ),
                (
                    self.series_name("journey_runs_total", &[("result", "failure")]),
                    values(&zero),
                ),
                (
                    self.series_name("journey_duration_seconds_count", &[("result", "success")]),
                    values(&all),
                ),
                (
                    self.series_name(
                        "journey_duration_seconds_bucket",
                        &[("result", "success"), ("le", &le)],
                    ),
                    values(&tl.good),
                ),
            ]
        } else {
            vec![
                (
                    self.series_name("journey_runs_total", &[("result", "success")]),
                    values(&tl.good),
                ),
                (
                    self.series_name("journey_runs_total", &[("result", "failure")]),
                    values(&tl.bad),
                ),
            ]
        }
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

    fn missing_alert(&self) -> Option<ExpAlert> {
        let rule = super::build::liveness_rule(self.spec.journey, self.spec.cfg);
        let mut labels = self.spec.cfg.identity_labels();
        labels.insert("journey".into(), self.spec.journey.name.clone());
        debug_assert_eq!(labels.len(), liveness_by(self.spec.cfg).len());
        labels.extend(rule.labels);
        let mut annotations = BTreeMap::new();
        for (k, t) in rule.annotations {
            annotations.insert(k, expand(&t, &labels, 0.0)?);
        }
        Some(ExpAlert {
            labels,
            annotations,
        })
    }

    fn check(&self, outcome: &Outcome, minute: u64, liveness: bool, comment: String) -> AlertCheck {
        let (alertname, alerts) = if liveness {
            let alerts = if outcome.missing[minute as usize] {
                vec![
                    self.missing_alert()
                        .unwrap_or_else(|| self.labels_only(self.missing_labels())),
                ]
            } else {
                vec![]
            };
            (LIVENESS_ALERT.to_string(), alerts)
        } else {
            let alerts = outcome.burn[minute as usize]
                .iter()
                .map(|f| {
                    self.burn_alert(f).unwrap_or_else(|| {
                        let mut l = self.spec.base_labels();
                        l.extend(self.spec.alert_labels(f.tier));
                        self.labels_only(l)
                    })
                })
                .collect();
            (self.spec.slo.alerting.name.clone(), alerts)
        };
        AlertCheck {
            minute,
            alertname,
            comment,
            alerts,
        }
    }

    fn missing_labels(&self) -> BTreeMap<String, String> {
        let rule = super::build::liveness_rule(self.spec.journey, self.spec.cfg);
        let mut labels = self.spec.cfg.identity_labels();
        labels.insert("journey".into(), self.spec.journey.name.clone());
        labels.extend(rule.labels);
        labels
    }

    fn labels_only(&self, labels: BTreeMap<String, String>) -> ExpAlert {
        ExpAlert {
            labels,
            annotations: BTreeMap::new(),
        }
    }

    /// Puts alert checks into the group: as `alert_rule_test`, or through the
    /// `ALERTS` series when annotations cannot be predicted.
    fn add_checks(&self, g: &mut Group, checks: Vec<AlertCheck>) {
        if self.annotations_ok {
            g.alerts.extend(checks);
            return;
        }
        for c in checks {
            let sel = format!(
                "ALERTS{{alertname={},alertstate=\"firing\",journey={}}}",
                promql_string(&c.alertname),
                promql_string(&self.spec.journey.name)
            );
            let expr = if c.alertname == LIVENESS_ALERT {
                sel
            } else {
                format!(
                    "ALERTS{{alertname={},alertstate=\"firing\",sloth_id={}}}",
                    promql_string(&c.alertname),
                    promql_string(&self.spec.id)
                )
            };
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

    /// The fastest enabled tier that can fire.
    fn target(&self) -> Option<BurnTier> {
        BurnTier::ALL
            .into_iter()
            .find(|t| self.spec.tier_enabled(*t) && !self.spec.threshold(*t).ge_one())
    }

    /// A scenario: isolated bad run at 12h, then `j` bad runs phased so that
    /// the `j`-th ends on a whole minute, the outage going on to `end` (a minute).
    fn outage(&self, j: u64) -> (Scenario, u64, u64) {
        let mut s = Scenario::new(self.interval_ms);
        let iso = s.boundary_at_or_after(s.runs_by(ISOLATED_MIN).max(1));
        let base = s.runs_by(HISTORY_MIN);
        let kf = s.boundary_at_or_after(base + j);
        let k0 = kf + 1 - j;
        s.bad = vec![iso..=iso, k0..=kf];
        let m = s.minute_of(kf).expect("a boundary run");
        (s, iso, m)
    }

    fn first_firing_j(&self, tier: BurnTier) -> Option<u64> {
        let max_j = (MAX_OUTAGE_MIN * 60_000 / self.interval_ms).max(1);
        let fires = |j: u64| {
            let (s, _, m) = self.outage(j);
            let tl = s.timeline(m);
            let o = self.sim.run(&tl, false);
            Sim::fires(&o, m, tier)
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
        let long = runs_to_trip(thr, tier.long().secs, i, 1);
        let short = runs_to_trip(thr, tier.short().secs, i, 1);
        long.max(short)
            .max(u128::from(self.spec.min_bad_runs(tier)))
            .min(u128::from(u64::MAX)) as u64
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
        let (mut s, iso, m) = self.outage(j);
        let end = m + OUTAGE_TAIL_MIN;
        let k_end = s.runs_by(end);
        s.bad[1] = *s.bad[1].start()..=k_end;
        let horizon = end + 6 * 60;
        let tl = s.timeline(horizon);
        let o = self.sim.run(&tl, false);
        let iso_min = s.minute_of(iso).expect("boundary run");
        let reset = (end + 1..=horizon).find(|&t| !Sim::fires(&o, t, tier));
        let last = reset.unwrap_or(end);
        let tl = s.timeline(last);
        let outcome = self.sim.run(&tl, false);
        let thr = spec.threshold(tier);
        let estimate = self.estimate(tier);
        let k0 = *s.bad[1].start();
        let start_min = k0 * self.interval_ms / 60_000;
        let mut g = Group {
            name: format!(
                "{}: an isolated {bad} run, then a hard outage: {} fires at {bad} run #{j} (minute {m})",
                spec.id,
                tier.name()
            ),
            comment: format!(
                "{line}\n{id}: {pct}% over {period}, budget {budget}. {tier} fires when the {long} and {short}\n\
                 ratios exceed {factor} x {budget} = {thr}. Every run is bad from run #{k0} (about minute\n\
                 {start_min}) to minute {end}; {bad} run #{j} of the outage ends at minute {m}.\n\
                 explain's arithmetic: {estimate} {bad} runs{agree}.\n\
                 The 1d and 3d windows hold only this simulated history, so ticket tiers\n\
                 react sooner here than in a Prometheus with weeks of data.\n{line}",
                line = "-".repeat(75),
                id = spec.id,
                pct = spec.slo.objective.percent(),
                period = spec.slo.window.as_str(),
                budget = spec.budget,
                tier = tier.name(),
                long = tier.long().name,
                short = tier.short().name,
                factor = tier.factor(spec.slo.window),
                agree = if estimate == j {
                    " (agrees)"
                } else {
                    " (the simulation of the sampled inputs differs; it wins)"
                },
            ),
            series: self.input_series(&tl),
            alerts: vec![],
            exprs: vec![],
        };
        let state = |t: u64| state(&outcome, t);
        let outage_bad = |t: u64| s.runs_by(t).saturating_sub(k0 - 1);
        let mut checks = vec![
            self.check(
                &outcome,
                iso_min,
                false,
                format!(
                    "isolated {bad} run #{iso} at minute {iso_min}: {}",
                    state(iso_min)
                ),
            ),
            self.check(
                &outcome,
                iso_min + 1,
                false,
                format!("a minute later: {}", state(iso_min + 1)),
            ),
            self.check(
                &outcome,
                m - 1,
                false,
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
                false,
                format!("{bad} run #{j} of the outage: {}", state(m)),
            ),
            self.check(
                &outcome,
                m,
                true,
                "the journey is running: no missing-runs alert".into(),
            ),
        ];
        if let Some(r) = reset {
            checks.push(self.check(
                &outcome,
                r - 1,
                false,
                format!(
                    "all runs good again after minute {end}; {} minutes later: {}",
                    r - 1 - end,
                    state(r - 1)
                ),
            ));
            checks.push(self.check(
                &outcome,
                r,
                false,
                format!("a minute later {} has reset: {}", tier.name(), state(r)),
            ));
        }
        self.add_checks(&mut g, checks);
        g.exprs.extend(self.recorded(
            &format!("slo:sli_error:ratio_rate{}", tier.long().name),
            tier.long().name,
            m,
            self.sim.ratio(&tl, m, tier.long().secs),
            format!(
                "the {} error ratio when {} fires",
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
        g.exprs.extend(
            self.recorded(
                "slo:period_error_budget_remaining:ratio",
                period.as_str(),
                end,
                self.sim
                    .ratio(&tl, end, u64::from(period.days()) * 86_400)
                    .map(|v| 1.0 - v / spec.budget.to_f64()),
                format!("remaining {} error budget when the outage ends (only the simulated history counts)", period.as_str()),
            ),
        );
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
        let (mut s, _, m1) = self.outage(j - 1);
        let end = m1 + 1;
        s.bad[1] = *s.bad[1].start()..=s.runs_by(end);
        let tl = s.timeline(end);
        let outcome = self.sim.run(&tl, false);
        let mut g = Group {
            name: format!(
                "{}: {} does not fire at {bad} run #{} of a hard outage",
                self.spec.id,
                tier.name(),
                j - 1
            ),
            comment: format!(
                "The same outage phased one run earlier: {bad} run #{} ends on minute {m1}.",
                j - 1
            ),
            series: self.input_series(&tl),
            alerts: vec![],
            exprs: vec![],
        };
        let k0 = *s.bad[1].start();
        let n = |t: u64| s.runs_by(t).saturating_sub(k0 - 1);
        let checks = vec![
            self.check(
                &outcome,
                m1,
                false,
                format!("{} {bad} runs: {}", n(m1), state(&outcome, m1)),
            ),
            self.check(
                &outcome,
                end,
                false,
                format!(
                    "a minute later, {} {bad} runs: {}",
                    n(end),
                    state(&outcome, end)
                ),
            ),
        ];
        self.add_checks(&mut g, checks);
        Some(g)
    }

    fn no_alert_group(&self) -> Group {
        let mut s = Scenario::new(self.interval_ms);
        let base = s.runs_by(HISTORY_MIN);
        let end = HISTORY_MIN + 120;
        s.bad = vec![base + 1..=s.runs_by(end)];
        let tl = s.timeline(end);
        let outcome = self.sim.run(&tl, false);
        let mut g = Group {
            name: format!("{}: no enabled alert tier can fire", self.spec.id),
            comment: "Every enabled tier has factor x budget >= 1 (or none is enabled): a 2h hard\noutage raises no burn-rate alert. `wayprobe check` warns about this.".into(),
            series: self.input_series(&tl),
            alerts: vec![],
            exprs: vec![],
        };
        let checks = [HISTORY_MIN + 60, end]
            .into_iter()
            .map(|t| self.check(&outcome, t, false, format!("minute {t} of the outage")))
            .collect();
        self.add_checks(&mut g, checks);
        g
    }

    fn stall_group(&self) -> Group {
        let mut s = Scenario::new(self.interval_ms);
        let stall = 60;
        s.last_run = Some(s.runs_by(stall));
        let live = super::build::liveness_window(self.spec.journey).as_secs() / 60;
        let horizon = stall + live + 30;
        let tl = s.timeline(horizon);
        let outcome = self.sim.run(&tl, false);
        let fire = (stall + 1..=horizon).find(|&t| outcome.missing[t as usize]);
        let mut g = Group {
            name: format!(
                "{}: a stalled prober raises {LIVENESS_ALERT}, not a burn alert",
                self.spec.id
            ),
            comment: format!(
                "Runs stop after minute {stall}: counters stay flat, every ratio becomes 0/0 = NaN.\n\
                 {LIVENESS_ALERT} fires after its {live}m window plus `for: 5m`."
            ),
            series: self.input_series(&tl),
            alerts: vec![],
            exprs: vec![],
        };
        let mut checks = Vec::new();
        if let Some(f) = fire {
            checks.push(self.check(&outcome, f - 1, true, "still pending".into()));
            checks.push(self.check(&outcome, f, true, "firing".into()));
            checks.push(self.check(
                &outcome,
                f,
                false,
                "no burn-rate alert: the ratios are NaN".into(),
            ));
        }
        self.add_checks(&mut g, checks);
        g
    }

    fn absent_group(&self) -> Group {
        let tl = Timeline {
            good: vec![0; 11],
            bad: vec![0; 11],
        };
        let outcome = self.sim.run(&tl, true);
        let other = format!("{}-other", self.spec.journey.name);
        let mut name = self.input_labels.clone();
        name.insert("journey".into(), other);
        name.insert("result".into(), "success".into());
        let mut g = Group {
            name: format!("{}: absent series raise {LIVENESS_ALERT}", self.spec.id),
            comment: "Only another journey reports (the journey is not deployed, or the matchers are wrong).".into(),
            series: vec![(series_text("journey_runs_total", &name), "0+1x10".into())],
            alerts: vec![],
            exprs: vec![],
        };
        let checks = vec![
            self.check(&outcome, 4, true, "pending".into()),
            self.check(&outcome, 5, true, "firing through absent()".into()),
        ];
        self.add_checks(&mut g, checks);
        g
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
                    assert_eq!(
                        found,
                        Some(b.estimate(BurnTier::PageFast)),
                        "{obj}% every {interval}, {window}, {kind}"
                    );
                }
            }
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
