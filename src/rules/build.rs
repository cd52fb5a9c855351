//! Rule groups and PromQL for each SLO, and the liveness group.

use std::collections::BTreeMap;
use std::time::Duration;

use super::arith::{BurnTier, Dec, WINDOWS, fmt_ratio, prom_duration, runs_in};
use super::model::{Rule, RuleFile, RuleGroup};
use super::{
    LIVENESS_ALERT, PROBER_ALERT, RulesConfig, is_generated_label, promql_string, sloth_id,
};
use crate::journey::slo::{Judge, SloKind, le_label};
use crate::journey::{Journey, LivenessSeverity, Slo};

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// An exact fraction as a PromQL number expression (`20`, `20 / 3`).
fn literal((n, d): (u128, u128)) -> String {
    if d == 1 {
        n.to_string()
    } else {
        format!("{n} / {d}")
    }
}

/// Target labels that tell apart processes probing the same journeys from
/// one location: shards (`serve --shard`, told apart by the scrape's
/// `instance` and `pod`), high-availability replicas (`replica`), and a
/// `shard` label users may add by relabelling. Counts are merged over them
/// with `max`, so two replicas (or an old and a new shard during a reshard)
/// running the same journey count its runs once.
pub(crate) const PROCESS_LABELS: &str = "instance, pod, replica, shard";

/// `sum(...)` of how much the counters `metric<selector>` went up over
/// `window`, counting only what the samples inside the window show.
///
/// `increase()` extrapolates: on a series only a scrape or two old (a new
/// journey, a fresh Prometheus, a new location) one failed run can count as
/// up to 2.1, enough to trip an alert `check` says one run cannot. So each
/// series counts `last - min_over_time` (exact for a counter without a
/// reset; the gap before the window's first sample is not counted), and only
/// a series that was reset inside the window (prober restart) falls back to
/// `increase()`, which handles resets. Series of processes that probe the
/// same journey from the same location are merged with `max` first (see
/// [`PROCESS_LABELS`]), each process's runs summed over `result` before,
/// so a replica that saw failures the other missed counts its own runs, not
/// the other's successes on top.
pub(crate) fn counted(metric: &str, selector: &str, window: &str) -> String {
    counted_by(metric, selector, window, "")
}

/// [`counted`] kept apart by the labels `by` (`""`: one sum over all).
pub(crate) fn counted_by(metric: &str, selector: &str, window: &str, by: &str) -> String {
    let s = format!("{metric}{selector}");
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" by ({by})")
    };
    format!(
        "sum{by}(\n    max without ({PROCESS_LABELS}) (\n      sum without (result) (\n        ({s} - min_over_time({s}[{window}]))\n        unless (resets({s}[{window}]) > 0)\n        or increase({s}[{window}])\n      )\n    )\n  )"
    )
}

/// Recorded per-location error ratios of an SLO with `locations:`.
pub(crate) const LOCATION_RATIO: &str = "slo_location:sli_error:ratio_rate";

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

    /// The counter an availability SLO reads: the first attempts of a
    /// retried journey when the SLO judges them, else the runs.
    pub fn runs_metric(&self) -> &'static str {
        if self.journey.retries.count > 0 && self.slo.judges() == Judge::First {
            "journey_first_attempts_total"
        } else {
            "journey_runs_total"
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

    /// Locations probing the journey: the SLO's `locations.total`, else
    /// [`RulesConfig::locations`].
    pub fn locations(&self) -> u32 {
        self.slo
            .locations
            .map_or(self.cfg.locations, |l| l.total)
            .max(1)
    }

    /// Runs the window should hold at the journey's interval from
    /// [`Self::locations`] locations, as the exact fraction `(num, den)`.
    pub fn expected_runs(&self, window_secs: u64) -> (u128, u128) {
        self.expected_runs_from(window_secs, self.locations())
    }

    fn expected_runs_from(&self, window_secs: u64, locations: u32) -> (u128, u128) {
        let (n, d) = runs_in(window_secs, self.journey.interval, locations);
        let g = gcd(n, d);
        (n / g, d / g)
    }

    /// [`Self::expected_runs`] as a PromQL number expression (`20`, `20 / 3`).
    pub fn expected_literal(&self, window_secs: u64) -> String {
        literal(self.expected_runs(window_secs))
    }

    /// The error ratio of each location over `window` (for `locations:`):
    /// the ratio of [`Self::ratio_expr`], kept apart by `location`, each
    /// location's runs never below one location's expected runs.
    pub fn location_ratio_expr(&self, window: &str, window_secs: u64) -> String {
        let floor = literal(self.expected_runs_from(window_secs, 1));
        let c = |metric: &str, extra: &[(&str, &str)]| {
            counted_by(metric, &self.selector(extra), window, "location")
        };
        match &self.le {
            None => {
                let total = c(self.runs_metric(), &[]);
                format!(
                    "(\n  {}\n  or\n  0 * {total}\n)\n/\nclamp_min(\n  {total},\n  {floor}\n)",
                    c(self.runs_metric(), &[("result", "failure")]),
                )
            }
            Some(le) => {
                let count = c("journey_duration_seconds_count", &[("result", "success")]);
                let bucket = c(
                    "journey_duration_seconds_bucket",
                    &[("result", "success"), ("le", le)],
                );
                format!("(\n  {count}\n  -\n  {bucket}\n)\n/\nclamp_min(\n  {count},\n  {floor}\n)")
            }
        }
    }

    /// The locations burning over both windows of `tier`, one series each
    /// (labels: the SLO's, and `location`).
    fn burning_locations(&self, tier: BurnTier) -> String {
        let thr = self.threshold(tier);
        let id = self.id_selector();
        format!(
            "(\n    max without (sloth_window) ({LOCATION_RATIO}{long}{id} > {thr})\n    and\n    max without (sloth_window) ({LOCATION_RATIO}{short}{id} > {thr})\n  )",
            long = tier.long().name,
            short = tier.short().name,
        )
    }

    /// A page tier's condition under `locations:`: at least `quorum`
    /// locations burn (`$value` = how many).
    fn quorum_expr(&self, tier: BurnTier, quorum: u32) -> String {
        format!(
            "count without (location) (\n  {}\n) >= {quorum}",
            self.burning_locations(tier)
        )
    }

    /// The ticket of one location burning at a page tier's rate while fewer
    /// than `quorum` locations do (`$value` = that location's long-window ratio).
    pub fn location_ticket_rule(&self, tier: BurnTier) -> Option<Rule> {
        let l = self.slo.locations?;
        if l.quorum <= 1 || !tier.is_page() || !self.tier_enabled(tier) {
            return None;
        }
        let expr = format!(
            "max without (sloth_window) ({LOCATION_RATIO}{long}{id})\nand\n{burning}\nunless on ()\n(\n  count(\n  {burning}\n  ) >= {q}\n)",
            long = tier.long().name,
            id = self.id_selector(),
            burning = self.burning_locations(tier),
            q = l.quorum,
        );
        let identity = self.cfg.identity_labels();
        let mut labels: BTreeMap<String, String> = self
            .slo
            .alerting
            .ticket
            .labels
            .iter()
            .filter(|(k, _)| !is_generated_label(k) && !identity.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let page = self.alert_labels(tier);
        for k in [
            "sloth_id",
            "slo_kind",
            "long_window",
            "short_window",
            "burn_rate_threshold",
        ] {
            labels.insert(k.to_string(), page[k].clone());
        }
        labels.insert("sloth_severity".into(), "ticket".into());
        labels.insert(
            "slo_alert_tier".into(),
            format!("location-{}", tier.name().trim_start_matches("page-")),
        );
        let factor = tier.factor(self.slo.window);
        let mut annotations = self.annotations(tier);
        annotations.insert(
            "summary".into(),
            format!(
                "{{{{ $labels.journey }}}} journey {} SLO ({}%) is burning {factor}x too fast from location {{{{ $labels.location }}}} only",
                self.slo.kind_name(),
                self.slo.objective.percent(),
            ),
        );
        annotations.insert(
            "description".into(),
            format!(
                "Seen from {{{{ $labels.location }}}}, the share of {} over the last {long} is {{{{ $value | humanizePercentage }}}} (threshold {thr}), confirmed over the last {short}; fewer than {q} of the {total} locations see it, so this looks like that location's network or region, not the service. It pages once {q} locations burn.",
                self.bad_runs_phrase(),
                long = tier.long().name,
                short = tier.short().name,
                thr = self.threshold(tier),
                q = l.quorum,
                total = l.total,
            ),
        );
        Some(Rule {
            record: None,
            alert: Some(self.slo.alerting.name.clone()),
            expr,
            for_: None,
            keep_firing_for: self.slo.alerting.keep_firing_for.map(prom_duration),
            labels,
            annotations,
        })
    }

    /// The error ratio over `window` (a PromQL duration): bad runs over the
    /// runs in the window, the latter never below the runs the window should
    /// hold (see [`counted`]).
    pub fn ratio_expr(&self, window: &str, window_secs: u64) -> String {
        let floor = self.expected_literal(window_secs);
        match &self.le {
            None => format!(
                "(\n  {}\n  or vector(0)\n)\n/\nclamp_min(\n  {},\n  {floor}\n)",
                counted(
                    self.runs_metric(),
                    &self.selector(&[("result", "failure")]),
                    window
                ),
                counted(self.runs_metric(), &self.selector(&[]), window),
            ),
            Some(le) => {
                let count = counted(
                    "journey_duration_seconds_count",
                    &self.selector(&[("result", "success")]),
                    window,
                );
                let bucket = counted(
                    "journey_duration_seconds_bucket",
                    &self.selector(&[("result", "success"), ("le", le)]),
                    window,
                );
                format!("(\n  {count}\n  -\n  {bucket}\n)\n/\nclamp_min(\n  {count},\n  {floor}\n)")
            }
        }
    }

    /// Runs the SLO counts over `window` (latency: successful runs), with
    /// the rules' own counting (no floor).
    pub fn total_runs_expr(&self, window: &str) -> String {
        match &self.le {
            None => counted(self.runs_metric(), &self.selector(&[]), window),
            Some(_) => counted(
                "journey_duration_seconds_count",
                &self.selector(&[("result", "success")]),
                window,
            ),
        }
    }

    /// Bad runs over `window`, for the minimum-bad-runs guard.
    pub fn bad_runs_expr(&self, window: &str) -> String {
        match &self.le {
            None => counted(
                self.runs_metric(),
                &self.selector(&[("result", "failure")]),
                window,
            ),
            Some(le) => format!(
                "(\n  {}\n  -\n  {}\n)",
                counted(
                    "journey_duration_seconds_count",
                    &self.selector(&[("result", "success")]),
                    window
                ),
                counted(
                    "journey_duration_seconds_bucket",
                    &self.selector(&[("result", "success"), ("le", le)]),
                    window
                ),
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
        let hours = self.budget_hours(tier);
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
        let quorum = self.slo.locations.filter(|_| tier.is_page());
        let mut expr = if let Some(l) = quorum {
            self.quorum_expr(tier, l.quorum)
        } else {
            format!(
                "(\n  max without (sloth_window) (slo:sli_error:ratio_rate{long}{id} > {thr})\n  and\n  max without (sloth_window) (slo:sli_error:ratio_rate{short}{id} > {thr})\n)",
                long = tier.long().name,
                short = tier.short().name,
            )
        };
        let min = self.min_bad_runs(tier);
        if min > 1 {
            expr.push_str(&format!(
                "\nand on ()\n({} > {}.5)",
                self.bad_runs_expr(tier.long().name),
                min - 1
            ));
        }
        let mut annotations = self.annotations(tier);
        if let Some(l) = quorum {
            annotations.insert(
                "description".into(),
                format!(
                    "{{{{ $value }}}} of the {total} locations see the share of {bad} over the last {long} above {thr} ({factor} x {budget} budget), confirmed over the last {short}: at least the quorum of {q} locations burn, so the journey itself is failing. At this rate the {period} error budget is gone in {hours}h or less.",
                    total = l.total,
                    bad = self.bad_runs_phrase(),
                    long = tier.long().name,
                    short = tier.short().name,
                    factor = tier.factor(self.slo.window),
                    budget = self.budget,
                    q = l.quorum,
                    period = self.slo.window.as_str(),
                    hours = self.budget_hours(tier),
                ),
            );
        }
        Rule {
            record: None,
            alert: Some(self.slo.alerting.name.clone()),
            expr,
            for_: None,
            keep_firing_for: self.slo.alerting.keep_firing_for.map(prom_duration),
            labels: self.alert_labels(tier),
            annotations,
        }
    }

    /// Hours until the period's budget is gone at a tier's burn rate.
    fn budget_hours(&self, tier: BurnTier) -> String {
        let (fnum, fden) = tier.factor(self.slo.window).parts();
        let period_hours = u128::from(self.slo.window.days()) * 24;
        fmt_ratio(period_hours * fden, fnum, 1)
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
                self.ratio_expr(w.name, w.secs),
                l,
            ));
        }
        if self.slo.locations.is_some() {
            for w in WINDOWS.iter().filter(|w| {
                BurnTier::ALL
                    .iter()
                    .any(|t| t.is_page() && (t.long().name == w.name || t.short().name == w.name))
            }) {
                let mut l = base.clone();
                l.insert("sloth_window".into(), w.name.into());
                rules.push(Rule::record(
                    &format!("{LOCATION_RATIO}{}", w.name),
                    self.location_ratio_expr(w.name, w.secs),
                    l,
                ));
            }
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
        info.insert("slo_judges".into(), self.slo.judges().as_str().into());
        rules.push(Rule::record("sloth_slo_info", "vector(1)".into(), info));
        for tier in BurnTier::ALL {
            if self.tier_enabled(tier) {
                rules.push(self.alert_rule(tier));
            }
        }
        for tier in BurnTier::ALL {
            rules.extend(self.location_ticket_rule(tier));
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
                    self.ratio_expr(period, u64::from(self.slo.window.days()) * 86_400),
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

/// How long a journey may go without a finished run before
/// `JourneyRunsMissing` fires: `liveness.after`, by default
/// [`Liveness::DEFAULT_INTERVALS`](crate::journey::Liveness::DEFAULT_INTERVALS)
/// intervals but at least 2m, in whole seconds (rounded up).
pub(crate) fn liveness_after(journey: &Journey) -> Duration {
    use crate::journey::Liveness;
    let d = journey.liveness.after.unwrap_or_else(|| {
        journey
            .interval
            .saturating_mul(Liveness::DEFAULT_INTERVALS)
            .max(Liveness::MIN_AFTER)
    });
    Duration::from_secs(d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)))
}

/// Whether some SLO of the journey has a page tier that can fire.
pub(crate) fn has_paging_slo(journey: &Journey, cfg: &RulesConfig) -> bool {
    journey.slos.iter().any(|slo| {
        let spec = SloSpec::new(journey, slo, cfg);
        BurnTier::ALL
            .into_iter()
            .any(|t| t.is_page() && spec.tier_enabled(t) && !spec.threshold(t).ge_one())
    })
}

/// Whether the journey's liveness alert pages (`liveness.severity`, by
/// default: when one of its SLOs pages, since a journey nobody probes cannot
/// page on its outage either).
pub(crate) fn liveness_pages(journey: &Journey, cfg: &RulesConfig) -> bool {
    match journey.liveness.severity {
        Some(LivenessSeverity::Page) => true,
        Some(LivenessSeverity::Ticket) => false,
        None => has_paging_slo(journey, cfg),
    }
}

fn severity_labels(pages: bool) -> [(String, String); 2] {
    let (sev, sloth) = if pages {
        ("critical", "page")
    } else {
        ("warning", "ticket")
    };
    [
        ("severity".to_string(), sev.to_string()),
        ("sloth_severity".to_string(), sloth.to_string()),
    ]
}

/// Labels the liveness alert's result carries besides the static ones.
pub(crate) fn liveness_by(cfg: &RulesConfig) -> Vec<String> {
    let mut by = vec!["journey".to_string()];
    by.extend(cfg.identity_labels().into_keys());
    by
}

/// The two `JourneyRunsMissing` alerts of one journey: `missing="runs"`
/// (the prober reports, but no run has finished for `after`; `$value` is the
/// time since the last one) and `missing="series"` (the journey's series are
/// gone, i.e. the prober is down or not scraped, for `after`).
pub(crate) fn liveness_rules(journey: &Journey, cfg: &RulesConfig) -> [Rule; 2] {
    let sel = input_selector(journey, cfg, &[]);
    let after = liveness_after(journey);
    let w = prom_duration(after);
    let every = prom_duration(journey.interval);
    let pages = liveness_pages(journey, cfg);
    let mut labels = BTreeMap::from(severity_labels(pages));
    labels.insert("journey".to_string(), journey.name.clone());
    labels.insert("sloth_service".to_string(), cfg.service.clone());
    let mut annotations = BTreeMap::new();
    if let Some(u) = &cfg.liveness_runbook_url {
        annotations.insert("runbook_url".to_string(), u.clone());
    }
    let blind = if journey.slos.is_empty() {
        "Nobody sees whether it works."
    } else {
        "Its SLO burn-rate alerts are blind: they only count runs that happen."
    };
    missing_rules(
        LIVENESS_ALERT,
        format!(
            "time() - max by ({}) (journey_last_run_timestamp_seconds{sel} > 0) > {}",
            liveness_by(cfg).join(", "),
            after.as_secs()
        ),
        &sel,
        &w,
        (labels, annotations),
        [
            "No run of the {{ $labels.journey }} journey has finished for {{ $value | humanizeDuration }}".to_string(),
            format!(
                "wayprobe still reports, but its last finished run of this journey (due every {every}) is {{{{ $value | humanizeDuration }}}} old; this alert fires after {w}. {blind}"
            ),
            format!("The {{{{ $labels.journey }}}} journey has not been probed for {w} or more: its series are gone"),
            format!(
                "Prometheus has had no series of this journey for {w} (prober down or not scraped, journey removed, or wrong label matchers); its last run is older still. {blind}"
            ),
        ],
    )
}

/// A `missing="runs"` alert on `runs_expr` (no `for:`, `$value` is the age
/// of the last run) and a `missing="series"` alert on `absent(…)` with
/// `for: <after>`; `text` = their summaries and descriptions.
fn missing_rules(
    alert: &str,
    runs_expr: String,
    sel: &str,
    after: &str,
    (labels, annotations): (BTreeMap<String, String>, BTreeMap<String, String>),
    text: [String; 4],
) -> [Rule; 2] {
    let [runs_summary, runs_desc, series_summary, series_desc] = text;
    let rule = |missing: &str, expr: String, for_: Option<String>, summary, description| {
        let mut l = labels.clone();
        l.insert("missing".to_string(), missing.to_string());
        let mut a = annotations.clone();
        a.insert("summary".to_string(), summary);
        a.insert("description".to_string(), description);
        Rule {
            record: None,
            alert: Some(alert.to_string()),
            expr,
            for_,
            keep_firing_for: None,
            labels: l,
            annotations: a,
        }
    };
    [
        rule("runs", runs_expr, None, runs_summary, runs_desc),
        rule(
            "series",
            format!("absent(journey_last_run_timestamp_seconds{sel})"),
            Some(after.to_string()),
            series_summary,
            series_desc,
        ),
    ]
}

/// How long the whole prober may go without reporting any finished run
/// before `WayprobeDown` fires: the shortest `after` of its journeys.
pub(crate) fn prober_after(journeys: &[&Journey]) -> Duration {
    journeys
        .iter()
        .map(|j| liveness_after(j))
        .min()
        .unwrap_or(crate::journey::Liveness::MIN_AFTER)
}

/// The two `WayprobeDown` alerts: no journey series at all (`missing="series"`)
/// or no run of any journey (`missing="runs"`) for [`prober_after`]. They page
/// when one of the journeys' liveness alerts pages.
pub(crate) fn prober_rules(journeys: &[&Journey], cfg: &RulesConfig) -> [Rule; 2] {
    let mut parts: Vec<String> = cfg
        .sorted_matchers()
        .iter()
        .map(|m| m.to_string())
        .collect();
    if parts.is_empty() {
        // `absent()` needs a matcher; this one matches every series.
        parts.push("journey!=\"\"".to_string());
    }
    let sel = format!("{{{}}}", parts.join(","));
    let after = prober_after(journeys);
    let w = prom_duration(after);
    let pages = journeys.iter().any(|j| liveness_pages(j, cfg));
    let mut labels = BTreeMap::from(severity_labels(pages));
    labels.insert("sloth_service".to_string(), cfg.service.clone());
    labels.extend(cfg.identity_labels());
    // No runbook: `--liveness-runbook-url` is written per journey.
    let annotations: BTreeMap<String, String> = BTreeMap::new();
    let by: Vec<String> = cfg.identity_labels().into_keys().collect();
    let by = if by.is_empty() {
        String::new()
    } else {
        format!(" by ({})", by.join(", "))
    };
    missing_rules(
        PROBER_ALERT,
        format!(
            "time() - max{by} (journey_last_run_timestamp_seconds{sel} > 0) > {}",
            after.as_secs()
        ),
        &sel,
        &w,
        (labels, annotations),
        [
            "wayprobe has finished no journey run for {{ $value | humanizeDuration }}".to_string(),
            format!(
                "wayprobe is scraped but none of its journeys has finished a run for {{{{ $value | humanizeDuration }}}} (fires after {w}): its scheduler or its browser is stuck. Nothing is being probed."
            ),
            format!("wayprobe has not been scraped for {w} or more"),
            format!(
                "Prometheus has had no journey series from wayprobe for {w}: the prober is down, or the scrape or its label matchers are wrong. Nothing is being probed, so no SLO alert can fire."
            ),
        ],
    )
}

/// The liveness group: the prober's alerts, then each journey's.
pub(crate) fn liveness_group(journeys: &[&Journey], cfg: &RulesConfig) -> RuleGroup {
    let mut g = liveness_head(cfg);
    g.rules = prober_rules(journeys, cfg).into();
    for j in journeys {
        g.rules.extend(liveness_rules(j, cfg));
    }
    g
}

/// The liveness group without its rules.
fn liveness_head(cfg: &RulesConfig) -> RuleGroup {
    RuleGroup {
        name: format!("slo-liveness-{}", cfg.service),
        interval: Some(prom_duration(cfg.interval)),
        rules: Vec::new(),
    }
}

/// Every journey sorted by name, each with its SLOs sorted by name.
pub(crate) fn sorted(journeys: &[Journey]) -> Vec<(&Journey, Vec<&Slo>)> {
    let mut js: Vec<&Journey> = journeys.iter().collect();
    js.sort_by(|a, b| a.name.cmp(&b.name));
    js.into_iter()
        .map(|j| {
            let mut slos: Vec<&Slo> = j.slos.iter().collect();
            slos.sort_by(|a, b| a.name.cmp(&b.name));
            (j, slos)
        })
        .collect()
}

/// The two groups of one SLO (none for `slo: None`) followed by the liveness
/// group of its journey only.
pub(crate) fn single_journey_file(
    journey: &Journey,
    slo: Option<&Slo>,
    cfg: &RulesConfig,
) -> RuleFile {
    let mut groups = Vec::new();
    if let Some(slo) = slo {
        let spec = SloSpec::new(journey, slo, cfg);
        groups.push(spec.main_group());
        groups.push(spec.period_group());
    }
    groups.push(liveness_group(&[journey], cfg));
    RuleFile { groups }
}

pub(crate) fn generate(journeys: &[Journey], cfg: &RulesConfig) -> RuleFile {
    let mut groups: Vec<RuleGroup> = Vec::new();
    generate_each(journeys, cfg, |p| match p {
        Piece::Group(g) | Piece::LivenessHead(g) => groups.push(g),
        Piece::LivenessRule(r) => {
            if let Some(g) = groups.last_mut() {
                g.rules.push(r);
            }
        }
    });
    RuleFile { groups }
}

/// One piece of what [`generate`] makes, in order.
pub(crate) enum Piece {
    /// A whole group (the SLOs' groups).
    Group(RuleGroup),
    /// The liveness group (last) without its rules, which follow.
    LivenessHead(RuleGroup),
    /// One rule of the liveness group.
    LivenessRule(Rule),
}

/// [`generate`] one piece at a time, so a caller that only serializes (the
/// fingerprint) never holds the whole file: at 10,000 journeys the liveness
/// group alone is about 40 MB.
pub(crate) fn generate_each(journeys: &[Journey], cfg: &RulesConfig, mut f: impl FnMut(Piece)) {
    let sorted = sorted(journeys);
    for (j, slos) in &sorted {
        for slo in slos {
            let spec = SloSpec::new(j, slo, cfg);
            f(Piece::Group(spec.main_group()));
            f(Piece::Group(spec.period_group()));
        }
    }
    if !sorted.is_empty() {
        let js: Vec<&Journey> = sorted.iter().map(|(j, _)| *j).collect();
        f(Piece::LivenessHead(liveness_head(cfg)));
        for r in prober_rules(&js, cfg) {
            f(Piece::LivenessRule(r));
        }
        for j in &js {
            for r in liveness_rules(j, cfg) {
                f(Piece::LivenessRule(r));
            }
        }
    }
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
            2 + 3 * 2,
            "two prober alerts, then two liveness alerts per journey, SLOs or not"
        );
        let one = single_journey_file(&a, Some(&a.slos[0]), &cfg);
        assert_eq!(one.groups[0], all.groups[4]);
        assert_eq!(one.groups[1], all.groups[5]);
        assert_eq!(one.groups[2].rules[2..], all.groups[6].rules[4..6]);
        // a journey without SLOs still gets its liveness alerts, as a ticket
        let only = generate(&[test_journey("c-none", "30s", "  []\n")], &cfg);
        assert_eq!(only.groups.len(), 1);
        let names: Vec<(&str, &str, &str)> = only.groups[0]
            .rules
            .iter()
            .map(|r| {
                (
                    r.alert.as_deref().unwrap(),
                    r.labels["missing"].as_str(),
                    r.labels["severity"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("WayprobeDown", "runs", "warning"),
                ("WayprobeDown", "series", "warning"),
                ("JourneyRunsMissing", "runs", "warning"),
                ("JourneyRunsMissing", "series", "warning"),
            ]
        );
        // with a paging SLO it pages, and so does the prober alert
        assert_eq!(all.groups[6].rules[0].labels["severity"], "critical");
        assert_eq!(all.groups[6].rules[2].labels["severity"], "critical");
        assert_eq!(all.groups[6].rules[6].labels["severity"], "warning");
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
    fn liveness_after_defaults_and_overrides() {
        let w = |i: &str| {
            prom_duration(liveness_after(&test_journey(
                "j",
                i,
                "  - {name: availability, objective: 99%}\n",
            )))
        };
        assert_eq!(w("10s"), "2m");
        assert_eq!(w("45s"), "2m15s");
        assert_eq!(w("2m"), "6m");
        assert_eq!(w("1m1s"), "3m3s");
        let mut j = test_journey("j", "30s", "  - {name: availability, objective: 99%}\n");
        let cfg = RulesConfig::default();
        assert!(liveness_pages(&j, &cfg));
        j.liveness.after = Some(Duration::from_secs(300));
        j.liveness.severity = Some(LivenessSeverity::Ticket);
        assert_eq!(prom_duration(liveness_after(&j)), "5m");
        assert!(!liveness_pages(&j, &cfg));
        let r = liveness_rules(&j, &cfg);
        assert!(r[0].expr.ends_with("> 0) > 300"), "{}", r[0].expr);
        assert_eq!(r[1].for_.as_deref(), Some("5m"));
        // a journey whose only page tier cannot fire (90%: 14.4 x 0.1 >= 1, 6 x 0.1 < 1) still pages
        let j = test_journey(
            "j",
            "30s",
            "  - {name: availability, objective: 90%, alerting: {page: true}}\n",
        );
        assert!(liveness_pages(&j, &cfg));
        let j = test_journey("j", "30s", "  - {name: availability, objective: 80%}\n");
        assert!(!liveness_pages(&j, &cfg), "no page tier of 80% can fire");
    }

    #[test]
    fn windows_count_at_least_the_runs_they_should_hold() {
        let j = test_journey("j", "45s", "  - {name: availability, objective: 99.5%}\n");
        let mut cfg = RulesConfig::default();
        let spec = SloSpec::new(&j, &j.slos[0], &cfg);
        assert_eq!(spec.expected_literal(300), "20 / 3");
        assert_eq!(spec.expected_literal(3600), "80");
        let e = spec.ratio_expr("5m", 300);
        assert!(e.ends_with("clamp_min(\n  sum(\n    max without (instance, pod, replica, shard) (\n      sum without (result) (\n        (journey_runs_total{journey=\"j\"} - min_over_time(journey_runs_total{journey=\"j\"}[5m]))\n        unless (resets(journey_runs_total{journey=\"j\"}[5m]) > 0)\n        or increase(journey_runs_total{journey=\"j\"}[5m])\n      )\n    )\n  ),\n  20 / 3\n)"), "{e}");
        cfg.locations = 3;
        let spec = SloSpec::new(&j, &j.slos[0], &cfg);
        assert_eq!(spec.expected_literal(300), "20");
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
            alerts[0]
                .expr
                .ends_with("[1h])\n      )\n    )\n  ) > 2.5)"),
            "{}",
            alerts[0].expr
        );
        assert_eq!(alerts[0].keep_firing_for.as_deref(), Some("2m"));
        assert_eq!(alerts[0].labels["severity"], "sev1");
        assert_eq!(alerts[0].labels["team"], "x");
        assert_eq!(alerts[1].labels["slo_alert_tier"], "page-slow");
    }

    #[test]
    fn a_quorum_pages_on_burning_locations_and_one_location_tickets() {
        let j = test_journey(
            "j",
            "30s",
            "  - {name: availability, objective: 99.5%, locations: {total: 3, quorum: 2}}\n",
        );
        let cfg = RulesConfig::default();
        let spec = SloSpec::new(&j, &j.slos[0], &cfg);
        assert_eq!(spec.expected_literal(300), "30", "3 locations x 10 runs");
        let g = spec.main_group();
        let per_location: Vec<&str> = g
            .rules
            .iter()
            .filter_map(|r| r.record.as_deref())
            .filter(|r| r.starts_with(LOCATION_RATIO))
            .collect();
        assert_eq!(
            per_location,
            [
                "slo_location:sli_error:ratio_rate5m",
                "slo_location:sli_error:ratio_rate30m",
                "slo_location:sli_error:ratio_rate1h",
                "slo_location:sli_error:ratio_rate6h",
            ]
        );
        let loc5m = g
            .rules
            .iter()
            .find(|r| r.record.as_deref() == Some("slo_location:sli_error:ratio_rate5m"))
            .unwrap();
        assert!(loc5m.expr.contains("sum by (location)("), "{}", loc5m.expr);
        assert!(
            loc5m.expr.ends_with(",\n  10\n)"),
            "one location's floor: {}",
            loc5m.expr
        );
        let alerts: Vec<&Rule> = g.rules.iter().filter(|r| r.alert.is_some()).collect();
        let tiers: Vec<(&str, &str)> = alerts
            .iter()
            .map(|r| {
                (
                    r.labels["slo_alert_tier"].as_str(),
                    r.labels["sloth_severity"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            tiers,
            [
                ("page-fast", "page"),
                ("page-slow", "page"),
                ("ticket-fast", "ticket"),
                ("ticket-slow", "ticket"),
                ("location-fast", "ticket"),
                ("location-slow", "ticket"),
            ]
        );
        assert!(
            alerts[0].expr.starts_with("count without (location) ("),
            "{}",
            alerts[0].expr
        );
        assert!(alerts[0].expr.ends_with(") >= 2"), "{}", alerts[0].expr);
        assert!(
            !alerts[2].expr.contains("location"),
            "tickets stay on the aggregate"
        );
        assert!(
            alerts[4].expr.contains("unless on ()"),
            "{}",
            alerts[4].expr
        );
        assert_eq!(alerts[4].labels["severity"], "warning");
        assert!(alerts[4].annotations["summary"].contains("{{ $labels.location }}"));
        // a quorum of 1: any location pages, no separate ticket
        let j = test_journey(
            "j",
            "30s",
            "  - {name: availability, objective: 99.5%, locations: {total: 2, quorum: 1}}\n",
        );
        let g = SloSpec::new(&j, &j.slos[0], &cfg).main_group();
        assert_eq!(g.rules.iter().filter(|r| r.alert.is_some()).count(), 4);
    }

    #[test]
    fn slo_locations_are_validated() {
        use crate::diag::SourceFile;
        use crate::journey::load::{LoadOptions, load_sources};
        use crate::journey::slo::Locations;
        let load = |l: &str| {
            load_sources(
                vec![SourceFile::new(
                    "j.yaml",
                    format!(
                        "name: j\nsteps:\n  - name: home\n    http: {{url: \"https://shop.example.com/\"}}\nslos:\n  - {{name: availability, objective: 99%, locations: {l}}}\n"
                    ),
                )],
                &LoadOptions::default(),
                vec![],
            )
        };
        let j = load("{total: 3}").unwrap().journeys.remove(0);
        assert_eq!(
            j.slos[0].locations,
            Some(Locations {
                total: 3,
                quorum: 2
            }),
            "a majority by default"
        );
        for (bad, msg) in [
            (
                "{total: 2, quorum: 3}",
                "error: `quorum` must be from 1 to `total` (2)\n --> j.yaml:6:72",
            ),
            ("{quorum: 1}", "`locations` needs a `total`"),
            ("{total: 0}", "`total` must be at least 1"),
            ("{total: 2, quorom: 1}", "quorom"),
        ] {
            let e = load(bad).unwrap_err();
            let text: String = e.diagnostics().iter().map(|d| d.render(false)).collect();
            assert!(text.contains(msg), "{bad}: {text}");
        }
    }
}
