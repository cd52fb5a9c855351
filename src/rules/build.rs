//! Rule groups and PromQL for each SLO, and the liveness group.

use std::collections::BTreeMap;
use std::time::Duration;

use super::arith::{BurnTier, Dec, WINDOWS, fmt_ratio, prom_duration};
use super::model::{Rule, RuleFile, RuleGroup};
use super::{LIVENESS_ALERT, RulesConfig, is_generated_label, promql_string, sloth_id};
use crate::journey::slo::{SloKind, le_label};
use crate::journey::{Journey, Slo};

/// Everything the rules of one SLO are made of, computed once and shared by
/// the generator, the promtool-test emitter and its simulation.
pub(crate) struct SloSpec<'a> {
    pub journey: &'a Journey,
    pub slo: &'a Slo,
    pub cfg: &'a RulesConfig,
    /// `<service>-<journey>-<slo>`.
    pub id: String,
    /// `<journey>-<slo>`.
    pub sloth_slo: String,
    /// `1 − objective`, exact.
    pub budget: Dec,
    /// The bucket bound (`le`) of a latency SLO.
    pub le: Option<String>,
}

impl<'a> SloSpec<'a> {
    pub fn new(journey: &'a Journey, slo: &'a Slo, cfg: &'a RulesConfig) -> Self {
        Self {
            journey,
            slo,
            cfg,
            id: sloth_id(cfg, journey, slo),
            sloth_slo: format!("{}-{}", journey.name, slo.name),
            budget: Dec::budget(&slo.objective),
            le: slo.threshold().map(|t| le_label(t.as_secs_f64())),
        }
    }

    pub fn is_latency(&self) -> bool {
        matches!(self.slo.kind, SloKind::Latency { .. })
    }

    /// A selector on the input metrics: journey, the configured matchers, then `extra`.
    pub fn selector(&self, extra: &[(&str, &str)]) -> String {
        input_selector(self.journey, self.cfg, extra)
    }

    /// Selects this SLO's recorded series.
    pub fn id_selector(&self) -> String {
        let mut parts: Vec<String> = vec![
            format!("sloth_id={}", promql_string(&self.id)),
            format!("sloth_service={}", promql_string(&self.cfg.service)),
            format!("sloth_slo={}", promql_string(&self.sloth_slo)),
        ];
        for (k, v) in self.cfg.identity_labels() {
            parts.push(format!("{k}={}", promql_string(&v)));
        }
        format!("{{{}}}", parts.join(","))
    }

    /// Labels on every recorded series of the SLO (alerts inherit them).
    pub fn base_labels(&self) -> BTreeMap<String, String> {
        let mut l: BTreeMap<String, String> = self
            .slo
            .labels
            .iter()
            .filter(|(k, _)| !is_generated_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.extend(self.cfg.identity_labels());
        l.insert("journey".into(), self.journey.name.clone());
        l.insert("slo_kind".into(), self.slo.kind_name().into());
        l.insert("sloth_id".into(), self.id.clone());
        l.insert("sloth_service".into(), self.cfg.service.clone());
        l.insert("sloth_slo".into(), self.sloth_slo.clone());
        l
    }

    /// The error ratio over `window` (a PromQL duration).
    pub fn ratio_expr(&self, window: &str) -> String {
        match &self.le {
            None => format!(
                "(sum(rate(journey_runs_total{}[{window}])) or vector(0))\n/\nsum(rate(journey_runs_total{}[{window}]))",
                self.selector(&[("result", "failure")]),
                self.selector(&[]),
            ),
            Some(le) => {
                let count = self.selector(&[("result", "success")]);
                let bucket = self.selector(&[("result", "success"), ("le", le)]);
                format!(
                    "(\n  sum(rate(journey_duration_seconds_count{count}[{window}]))\n  -\n  sum(rate(journey_duration_seconds_bucket{bucket}[{window}]))\n)\n/\nsum(rate(journey_duration_seconds_count{count}[{window}]))"
                )
            }
        }
    }

    /// Bad runs over `window`, for the minimum-bad-runs guard.
    pub fn bad_runs_expr(&self, window: &str) -> String {
        match &self.le {
            None => format!(
                "sum(increase(journey_runs_total{}[{window}]))",
                self.selector(&[("result", "failure")])
            ),
            Some(le) => format!(
                "(sum(increase(journey_duration_seconds_count{}[{window}])) - sum(increase(journey_duration_seconds_bucket{}[{window}])))",
                self.selector(&[("result", "success")]),
                self.selector(&[("result", "success"), ("le", le)]),
            ),
        }
    }

    pub fn tier_enabled(&self, tier: BurnTier) -> bool {
        if tier.is_page() {
            self.slo.alerting.page.enabled
        } else {
            self.slo.alerting.ticket.enabled
        }
    }

    pub fn threshold(&self, tier: BurnTier) -> Dec {
        tier.threshold(self.slo.window, self.budget)
    }

    /// The guard's minimum for a tier (1 = no guard).
    pub fn min_bad_runs(&self, tier: BurnTier) -> u32 {
        if tier.is_page() {
            self.slo.alerting.min_bad_runs_to_page.max(1)
        } else {
            1
        }
    }

    /// Static labels of a tier's alert rule.
    pub fn alert_labels(&self, tier: BurnTier) -> BTreeMap<String, String> {
        let t = if tier.is_page() {
            &self.slo.alerting.page
        } else {
            &self.slo.alerting.ticket
        };
        let identity = self.cfg.identity_labels();
        let mut l: BTreeMap<String, String> = t
            .labels
            .iter()
            .filter(|(k, _)| !is_generated_label(k) && !identity.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.insert("sloth_id".into(), self.id.clone());
        l.insert("slo_kind".into(), self.slo.kind_name().into());
        l.insert("sloth_severity".into(), tier.severity().into());
        l.insert("slo_alert_tier".into(), tier.name().into());
        l.insert("long_window".into(), tier.long().name.into());
        l.insert("short_window".into(), tier.short().name.into());
        l.insert(
            "burn_rate_threshold".into(),
            tier.factor(self.slo.window).to_string(),
        );
        l
    }

    /// What a bad run is, for people.
    pub fn bad_runs_phrase(&self) -> String {
        match self.slo.threshold() {
            None => "failed runs".to_string(),
            Some(t) => format!("successful runs slower than {}", prom_duration(t)),
        }
    }

    /// Annotation templates of a tier's alert.
    pub fn annotations(&self, tier: BurnTier) -> BTreeMap<String, String> {
        let a = &self.slo.alerting;
        let factor = tier.factor(self.slo.window);
        let (fnum, fden) = factor.parts();
        let period_hours = u128::from(self.slo.window.days()) * 24;
        let hours = fmt_ratio(period_hours * fden, fnum, 1);
        let mut m = BTreeMap::new();
        m.insert(
            "summary".to_string(),
            format!(
                "{{{{ $labels.journey }}}} journey {} SLO ({}%) is burning its error budget {factor}x too fast",
                self.slo.kind_name(),
                self.slo.objective.percent(),
            ),
        );
        let ratio_what = match self.le {
            None => "The share of failed runs".to_string(),
            Some(_) => format!("The share of {}", self.bad_runs_phrase()),
        };
        m.insert(
            "description".to_string(),
            format!(
                "{ratio_what} over the last {long} is {{{{ $value | humanizePercentage }}}} (threshold {factor} x {budget} budget = {thr}), and the last {short} confirm it is still happening. At this rate the {period} error budget is gone in {hours}h or less.",
                long = tier.long().name,
                short = tier.short().name,
                budget = self.budget,
                thr = self.threshold(tier),
                period = self.slo.window.as_str(),
            ),
        );
        if let Some(u) = &a.runbook_url {
            m.insert("runbook_url".into(), u.clone());
        }
        if let Some(u) = &a.dashboard_url {
            m.insert("dashboard_url".into(), u.clone());
        }
        for (k, v) in &a.annotations {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    /// The alert rule of one tier.
    pub fn alert_rule(&self, tier: BurnTier) -> Rule {
        let thr = self.threshold(tier);
        let id = self.id_selector();
        let mut expr = format!(
            "(\n  max without (sloth_window) (slo:sli_error:ratio_rate{long}{id} > {thr})\n  and\n  max without (sloth_window) (slo:sli_error:ratio_rate{short}{id} > {thr})\n)",
            long = tier.long().name,
            short = tier.short().name,
        );
        let min = self.min_bad_runs(tier);
        if min > 1 {
            expr.push_str(&format!(
                "\nand on ()\n({} > {}.5)",
                self.bad_runs_expr(tier.long().name),
                min - 1
            ));
        }
        Rule {
            record: None,
            alert: Some(self.slo.alerting.name.clone()),
            expr,
            for_: None,
            keep_firing_for: self.slo.alerting.keep_firing_for.map(prom_duration),
            labels: self.alert_labels(tier),
            annotations: self.annotations(tier),
        }
    }

    /// Group `slo-<id>`: ratios → constants → burn rate → info → alerts.
    pub fn main_group(&self) -> RuleGroup {
        let base = self.base_labels();
        let mut rules = Vec::new();
        for w in WINDOWS {
            let mut l = base.clone();
            l.insert("sloth_window".into(), w.name.into());
            rules.push(Rule::record(
                &format!("slo:sli_error:ratio_rate{}", w.name),
                self.ratio_expr(w.name),
                l,
            ));
        }
        rules.push(Rule::record(
            "slo:objective:ratio",
            format!("vector({})", self.slo.objective.ratio()),
            base.clone(),
        ));
        rules.push(Rule::record(
            "slo:error_budget:ratio",
            format!("vector({})", self.budget),
            base.clone(),
        ));
        rules.push(Rule::record(
            "slo:time_period:days",
            format!("vector({})", self.slo.window.days()),
            base.clone(),
        ));
        rules.push(Rule::record(
            "slo:current_burn_rate:ratio",
            format!(
                "slo:sli_error:ratio_rate5m{} / {}",
                self.id_selector(),
                self.budget
            ),
            base.clone(),
        ));
        let mut info = base;
        info.insert("sloth_mode".into(), "wayprobe".into());
        info.insert("sloth_objective".into(), self.slo.objective.percent());
        info.insert("sloth_spec".into(), "wayprobe/v1".into());
        info.insert("sloth_version".into(), env!("CARGO_PKG_VERSION").into());
        rules.push(Rule::record("sloth_slo_info", "vector(1)".into(), info));
        for tier in BurnTier::ALL {
            if self.tier_enabled(tier) {
                rules.push(self.alert_rule(tier));
            }
        }
        RuleGroup {
            name: format!("slo-{}", self.id),
            interval: Some(prom_duration(self.cfg.interval)),
            rules,
        }
    }

    /// Group `slo-period-<id>`: event-weighted ratio over the period, burn, remaining budget.
    pub fn period_group(&self) -> RuleGroup {
        let base = self.base_labels();
        let period = self.slo.window.as_str();
        let mut l = base.clone();
        l.insert("sloth_window".into(), period.into());
        let id = self.id_selector();
        RuleGroup {
            name: format!("slo-period-{}", self.id),
            interval: Some(prom_duration(self.cfg.period_interval)),
            rules: vec![
                Rule::record(
                    &format!("slo:sli_error:ratio_rate{period}"),
                    self.ratio_expr(period),
                    l,
                ),
                Rule::record(
                    "slo:period_burn_rate:ratio",
                    format!("slo:sli_error:ratio_rate{period}{id} / {}", self.budget),
                    base.clone(),
                ),
                Rule::record(
                    "slo:period_error_budget_remaining:ratio",
                    format!("1 - slo:period_burn_rate:ratio{id}"),
                    base,
                ),
            ],
        }
    }
}

/// `{journey="…",<matchers>,<extra>}` on the input metrics.
pub(crate) fn input_selector(
    journey: &Journey,
    cfg: &RulesConfig,
    extra: &[(&str, &str)],
) -> String {
    let mut parts = vec![format!("journey={}", promql_string(&journey.name))];
    parts.extend(cfg.sorted_matchers().iter().map(|m| m.to_string()));
    parts.extend(
        extra
            .iter()
            .map(|(k, v)| format!("{k}={}", promql_string(v))),
    );
    format!("{{{}}}", parts.join(","))
}

/// The liveness window: `max(10m, 5 × interval)`, rounded up to whole minutes.
pub(crate) fn liveness_window(journey: &Journey) -> Duration {
    let five = journey.interval.saturating_mul(5);
    let secs = five.as_secs() + u64::from(five.subsec_nanos() > 0);
    Duration::from_secs(secs.max(600).div_ceil(60) * 60)
}

/// Labels the liveness alert's result carries besides the static ones.
pub(crate) fn liveness_by(cfg: &RulesConfig) -> Vec<String> {
    let mut by = vec!["journey".to_string()];
    by.extend(cfg.identity_labels().into_keys());
    by
}

/// The `JourneyRunsMissing` alert of one journey.
pub(crate) fn liveness_rule(journey: &Journey, cfg: &RulesConfig) -> Rule {
    let sel = input_selector(journey, cfg, &[]);
    let w = prom_duration(liveness_window(journey));
    let mut labels = BTreeMap::new();
    labels.insert("journey".to_string(), journey.name.clone());
    labels.insert("severity".to_string(), "warning".to_string());
    labels.insert("sloth_service".to_string(), cfg.service.clone());
    labels.insert("sloth_severity".to_string(), "ticket".to_string());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".to_string(),
        format!("No finished {{{{ $labels.journey }}}} journey runs in the last {w}: its SLO burn-rate alerts are blind"),
    );
    annotations.insert(
        "description".to_string(),
        format!(
            "wayprobe has reported no finished run of this journey for {w} (it runs every {}), or its series are absent (prober down, journey removed, wrong label matchers). Without runs every burn-rate ratio is 0/0 = NaN and cannot fire.",
            prom_duration(journey.interval)
        ),
    );
    if let Some(u) = &cfg.liveness_runbook_url {
        annotations.insert("runbook_url".to_string(), u.clone());
    }
    Rule {
        record: None,
        alert: Some(LIVENESS_ALERT.to_string()),
        expr: format!(
            "(sum by ({}) (increase(journey_runs_total{sel}[{w}])) < 1)\nor\nabsent(journey_runs_total{sel})",
            liveness_by(cfg).join(", ")
        ),
        for_: Some("5m".to_string()),
        keep_firing_for: None,
        labels,
        annotations,
    }
}

/// The liveness group for the journeys given (one alert each).
pub(crate) fn liveness_group(journeys: &[&Journey], cfg: &RulesConfig) -> RuleGroup {
    RuleGroup {
        name: format!("slo-liveness-{}", cfg.service),
        interval: Some(prom_duration(cfg.interval)),
        rules: journeys.iter().map(|j| liveness_rule(j, cfg)).collect(),
    }
}

/// Journeys with SLOs sorted by name, each with its SLOs sorted by name.
pub(crate) fn sorted(journeys: &[Journey]) -> Vec<(&Journey, Vec<&Slo>)> {
    let mut js: Vec<&Journey> = journeys.iter().filter(|j| !j.slos.is_empty()).collect();
    js.sort_by(|a, b| a.name.cmp(&b.name));
    js.into_iter()
        .map(|j| {
            let mut slos: Vec<&Slo> = j.slos.iter().collect();
            slos.sort_by(|a, b| a.name.cmp(&b.name));
            (j, slos)
        })
        .collect()
}

/// The two groups of one SLO followed by the liveness group of its journey only.
pub(crate) fn single_slo_file(journey: &Journey, slo: &Slo, cfg: &RulesConfig) -> RuleFile {
    let spec = SloSpec::new(journey, slo, cfg);
    RuleFile {
        groups: vec![
            spec.main_group(),
            spec.period_group(),
            liveness_group(&[journey], cfg),
        ],
    }
}

pub(crate) fn generate(journeys: &[Journey], cfg: &RulesConfig) -> RuleFile {
    let mut groups = Vec::new();
    let sorted = sorted(journeys);
    for (j, slos) in &sorted {
        for slo in slos {
            let spec = SloSpec::new(j, slo, cfg);
            groups.push(spec.main_group());
            groups.push(spec.period_group());
        }
    }
    if !sorted.is_empty() {
        let js: Vec<&Journey> = sorted.iter().map(|(j, _)| *j).collect();
        groups.push(liveness_group(&js, cfg));
    }
    RuleFile { groups }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Format, render, test_journey};

    #[test]
    fn one_slo_files_hold_exactly_the_generated_groups() {
        let a = test_journey(
            "b-shop",
            "30s",
            "  - {name: latency, objective: 95%, threshold: 250ms}\n  - {name: availability, objective: 99.95%}\n",
        );
        let b = test_journey(
            "a-login",
            "10s",
            "  - {name: availability, objective: 99.9%}\n",
        );
        let none = test_journey("c-none", "30s", "  []\n");
        let cfg = RulesConfig::default();
        let all = generate(&[a.clone(), b.clone(), none], &cfg);
        let names: Vec<&str> = all.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "slo-wayprobe-a-login-availability",
                "slo-period-wayprobe-a-login-availability",
                "slo-wayprobe-b-shop-availability",
                "slo-period-wayprobe-b-shop-availability",
                "slo-wayprobe-b-shop-latency",
                "slo-period-wayprobe-b-shop-latency",
                "slo-liveness-wayprobe",
            ]
        );
        assert_eq!(
            all.groups[6].rules.len(),
            2,
            "one liveness alert per journey with SLOs"
        );
        let one = single_slo_file(&a, &a.slos[0], &cfg);
        assert_eq!(one.groups[0], all.groups[4]);
        assert_eq!(one.groups[1], all.groups[5]);
        assert_eq!(one.groups[2].rules, [all.groups[6].rules[1].clone()]);
        // 7 ratios, 3 constants, burn rate, info, 4 alerts
        assert_eq!(all.groups[0].rules.len(), 16);
        let text = render(&all, Format::Prometheus, &cfg);
        assert!(
            text.contains("expr: vector(0.0005)"),
            "99.95% keeps an exact budget"
        );
        assert!(text.contains("le=\"0.25\""));
        assert!(text.contains("> 0.0072)"), "14.4 x 0.0005");
        assert_eq!(
            render(&RuleFile::default(), Format::Prometheus, &cfg)
                .lines()
                .last(),
            Some("groups: []")
        );
    }

    #[test]
    fn liveness_windows() {
        let w = |i: &str| {
            prom_duration(liveness_window(&test_journey(
                "j",
                i,
                "  - {name: availability, objective: 99%}\n",
            )))
        };
        assert_eq!(w("10s"), "10m");
        assert_eq!(w("2m"), "10m");
        assert_eq!(w("3m"), "15m");
        assert_eq!(w("150s"), "13m");
    }

    #[test]
    fn disabled_tiers_and_guard() {
        let j = test_journey(
            "j",
            "30s",
            "  - {name: availability, objective: 99%, alerting: {ticket: false, min_bad_runs_to_page: 3, keep_firing_for: 2m, page: {labels: {severity: sev1, team: x}}}}\n",
        );
        let cfg = RulesConfig::default();
        let g = SloSpec::new(&j, &j.slos[0], &cfg).main_group();
        let alerts: Vec<&Rule> = g.rules.iter().filter(|r| r.alert.is_some()).collect();
        assert_eq!(alerts.len(), 2);
        assert!(
            alerts[0].expr.ends_with("[1h])) > 2.5)"),
            "{}",
            alerts[0].expr
        );
        assert_eq!(alerts[0].keep_firing_for.as_deref(), Some("2m"));
        assert_eq!(alerts[0].labels["severity"], "sev1");
        assert_eq!(alerts[0].labels["team"], "x");
        assert_eq!(alerts[1].labels["slo_alert_tier"], "page-slow");
    }
}
