//! `wayprobe slo review`: each SLO's history read back from Prometheus, and
//! what other objectives would have cost.
//!
//! Nothing here computes an SLI its own way: every number is one of the
//! generated rules' own expressions ([`crate::rules::SloSpec`]) evaluated by
//! Prometheus through [`PromReader`], at the rules' evaluation interval
//! (range queries). The error ratios do not depend on the objective, so they
//! are fetched once per SLO; each candidate objective then only changes the
//! alert thresholds, and the alert conditions (`ratio(long) > threshold and
//! ratio(short) > threshold`, the page guard, `keep_firing_for`) are applied
//! to those values exactly as the alert rules compare them (the threshold is
//! the same decimal literal, parsed the same way). The result agrees step by
//! step with what Prometheus evaluating the rules would have fired; the
//! integration test holds it against `promtool test rules`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::journey::slo::Objective;
use crate::journey::{Journey, Slo};
use crate::rules::{BurnTier, Dec, RulesConfig, SloSpec, WINDOWS};
use crate::slo_prom::{PromError, PromReader};

/// Share of a 5-minute window's runs that must fail for the time to count
/// as a real incident (an outage customers noticed, not flakiness).
pub const INCIDENT_RATIO: f64 = 0.5;
/// Objectives every review compares, besides the current one.
pub const LADDER: [&str; 3] = ["99", "99.5", "99.9"];

/// What to review.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// The end of the reviewed period (normally now).
    pub until: SystemTime,
    /// How far back alerts are replayed (`--since`, default 28d).
    pub since: Duration,
    /// Evaluation interval of the SLO groups ([`RulesConfig::interval`]).
    pub step: Duration,
    /// Evaluation interval of the period groups ([`RulesConfig::period_interval`]).
    pub period_step: Duration,
    /// Objectives to compare besides [`LADDER`] and the current one.
    pub extra: Vec<Objective>,
}

/// The whole review.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// Where the numbers come from: `prometheus`.
    pub source: &'static str,
    /// End of the period (RFC 3339).
    pub until: String,
    /// Start of the replayed period (RFC 3339).
    pub from: String,
    /// Seconds between evaluations (the rules' interval).
    pub step_seconds: f64,
    /// One entry per SLO, journeys and SLOs in name order.
    pub slos: Vec<SloReview>,
}

/// One SLO's history and its candidate objectives.
#[derive(Debug, Clone, Serialize)]
pub struct SloReview {
    /// Journey name.
    pub journey: String,
    /// SLO name.
    pub slo: String,
    /// `availability` or `latency`.
    pub kind: &'static str,
    /// The `sloth_id` of its rules.
    pub sloth_id: String,
    /// The current objective in percent (`99.5`).
    pub objective_percent: String,
    /// Compliance period (`30d`).
    pub period: &'static str,
    /// Latency threshold in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_seconds: Option<f64>,
    /// The achieved SLI over the last 1, 7 and 28 days.
    pub achieved: Vec<Achieved>,
    /// Share of the period's error budget spent at `until` under the current
    /// objective, in percent (the rules' period ratio / budget).
    pub budget_spent_percent: Option<f64>,
    /// Real incidents: times when at least half of 5 minutes' runs were bad.
    pub incidents: Vec<Span>,
    /// The ladder of objectives, loosest first.
    pub candidates: Vec<Candidate>,
    /// The tightest objective that paged only during real incidents.
    pub suggestion: Suggestion,
}

/// The SLI over one window ending at `until`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Achieved {
    /// `1d`, `7d` or `28d`.
    pub window: &'static str,
    /// Runs the SLO counts (latency: successful runs).
    pub runs: f64,
    /// Bad runs (failed; latency: slower than the threshold).
    pub bad: f64,
    /// `1 − bad / runs`; `None` without runs.
    pub sli: Option<f64>,
}

/// A time span (RFC 3339 and Unix seconds; `end` is the last step in it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Span {
    /// First evaluation in the span.
    pub start: String,
    /// Last evaluation in the span.
    pub end: String,
    /// `start` in Unix seconds.
    pub start_unix: f64,
    /// `end` in Unix seconds.
    pub end_unix: f64,
}

impl Span {
    fn new(start: f64, end: f64) -> Self {
        Self {
            start: rfc3339(start),
            end: rfc3339(end),
            start_unix: start,
            end_unix: end,
        }
    }
}

/// Alerts one objective would have raised.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Objective in percent.
    pub objective_percent: String,
    /// Whether it is the SLO's current objective.
    pub current: bool,
    /// Pages: episodes of at least one page tier firing.
    pub pages: usize,
    /// Pages that overlapped no real incident.
    pub pages_outside_incidents: usize,
    /// Tickets: episodes of at least one ticket tier firing.
    pub tickets: usize,
    /// How long the period's error budget was spent (remaining ≤ 0), in seconds.
    pub budget_exhausted_seconds: f64,
    /// Every page and ticket episode.
    pub episodes: Vec<Episode>,
}

/// One alert episode.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// Tiers that fired during it.
    pub tiers: Vec<&'static str>,
    /// When it fired first and last.
    #[serde(flatten)]
    pub span: Span,
    /// Whether it overlapped a real incident (from 5m before it to 30m after).
    pub during_incident: bool,
}

/// The suggested objective and why.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// The objective, `None` when no candidate qualifies or there is no history.
    pub objective_percent: Option<String>,
    /// Why, in a sentence or two.
    pub why: String,
}

fn rfc3339(unix: f64) -> String {
    humantime::format_rfc3339_seconds(
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0)),
    )
    .to_string()
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64)
}

/// Values on a regular grid of steps (`None`: no value at that step).
struct Grid {
    start: f64,
    step: f64,
    values: Vec<Option<f64>>,
}

impl Grid {
    fn new(start: f64, step: f64, n: usize, points: &[(f64, f64)]) -> Self {
        let mut values = vec![None; n];
        for (t, v) in points {
            let i = ((t - start) / step).round();
            if i >= 0.0 && (i as usize) < n {
                values[i as usize] = Some(*v);
            }
        }
        Self {
            start,
            step,
            values,
        }
    }

    fn time(&self, i: usize) -> f64 {
        self.start + self.step * i as f64
    }
}

/// Runs of `true` in `on` as `(first, last)` index pairs.
fn runs_of(on: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = None;
    for (i, x) in on.iter().enumerate() {
        match (x, from) {
            (true, None) => from = Some(i),
            (false, Some(f)) => {
                out.push((f, i - 1));
                from = None;
            }
            _ => {}
        }
    }
    if let Some(f) = from {
        out.push((f, on.len() - 1));
    }
    out
}

/// The ratios one SLO's alerts read, on the review's grid.
struct History {
    /// `slo:sli_error:ratio_rate<w>` per recorded window, in [`WINDOWS`] order.
    ratios: Vec<Grid>,
    /// Bad runs over each page tier's long window (the guard), if guarded.
    guard: Vec<(BurnTier, Grid)>,
    /// The period ratio at the period groups' interval.
    period: Grid,
}

/// Reviews every SLO of `journeys` (in name order).
pub async fn review(
    reader: &PromReader,
    journeys: &[Journey],
    cfg: &RulesConfig,
    opts: &ReviewOptions,
) -> Result<Review, PromError> {
    let step = opts.step.as_secs_f64().max(1.0);
    let pstep = opts.period_step.as_secs_f64().max(1.0);
    let until = (unix(opts.until) / step).floor() * step;
    let start = ((until - opts.since.as_secs_f64()) / step).floor() * step;
    let mut slos = Vec::new();
    let mut sorted: Vec<&Journey> = journeys.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for j in sorted {
        let mut js: Vec<&Slo> = j.slos.iter().collect();
        js.sort_by(|a, b| a.name.cmp(&b.name));
        for slo in js {
            let spec = SloSpec::new(j, slo, cfg);
            slos.push(review_slo(reader, &spec, opts, start, until, step, pstep).await?);
        }
    }
    Ok(Review {
        source: "prometheus",
        until: rfc3339(until),
        from: rfc3339(start),
        step_seconds: step,
        slos,
    })
}

async fn review_slo(
    reader: &PromReader,
    spec: &SloSpec<'_>,
    opts: &ReviewOptions,
    start: f64,
    until: f64,
    step: f64,
    pstep: f64,
) -> Result<SloReview, PromError> {
    let slo = spec.slo;
    let n = ((until - start) / step).round() as usize + 1;
    let mut ratios = Vec::new();
    for w in WINDOWS {
        let pts = reader
            .range(&spec.ratio_expr(w.name, w.secs), start, until, step)
            .await?;
        ratios.push(Grid::new(start, step, n, &pts));
    }
    let mut guard = Vec::new();
    for tier in BurnTier::ALL {
        if spec.tier_enabled(tier) && spec.min_bad_runs(tier) > 1 {
            let pts = reader
                .range(&spec.bad_runs_expr(tier.long().name), start, until, step)
                .await?;
            guard.push((tier, Grid::new(start, step, n, &pts)));
        }
    }
    let period_secs = u64::from(slo.window.days()) * 86_400;
    let pstart = (start / pstep).ceil() * pstep;
    let pn = ((until - pstart) / pstep).floor().max(-1.0) as i64 + 1;
    let pts = reader
        .range(
            &spec.ratio_expr(slo.window.as_str(), period_secs),
            pstart,
            until,
            pstep,
        )
        .await?;
    let history = History {
        ratios,
        guard,
        period: Grid::new(pstart, pstep, pn.max(0) as usize, &pts),
    };
    let mut achieved = Vec::new();
    for (name, days) in [("1d", 1u64), ("7d", 7), ("28d", 28)] {
        let w = format!("{days}d");
        let total = reader.value_at(&spec.total_runs_expr(&w), until).await?;
        let bad = reader.value_at(&spec.bad_runs_expr(&w), until).await?;
        let (runs, bad) = (total.unwrap_or(0.0), bad.unwrap_or(0.0));
        achieved.push(Achieved {
            window: name,
            runs,
            bad,
            sli: (runs > 0.0).then(|| 1.0 - bad / runs),
        });
    }
    let budget = spec.budget.to_f64();
    let spent = reader
        .value_at(&spec.ratio_expr(slo.window.as_str(), period_secs), until)
        .await?
        .map(|r| r / budget * 100.0);
    Ok(judge(spec, opts, &history, achieved, spent))
}

/// Everything computed from the fetched history (no I/O: unit-tested).
fn judge(
    spec: &SloSpec<'_>,
    opts: &ReviewOptions,
    h: &History,
    achieved: Vec<Achieved>,
    budget_spent_percent: Option<f64>,
) -> SloReview {
    let slo = spec.slo;
    let five = &h.ratios[0];
    let hot: Vec<bool> = five
        .values
        .iter()
        .map(|v| v.is_some_and(|r| r >= INCIDENT_RATIO))
        .collect();
    let incidents: Vec<Span> = runs_of(&hot)
        .into_iter()
        .map(|(a, b)| Span::new(five.time(a), five.time(b)))
        .collect();
    // An episode that overlaps an incident, widened by the 5 minutes the
    // detecting window lags before it and the slowest page's short window
    // after it (the windows still hold it).
    let (before, after) = (
        BurnTier::PageFast.short().secs as f64,
        BurnTier::PageSlow.short().secs as f64,
    );
    let during = |a: f64, b: f64| {
        incidents
            .iter()
            .any(|i| a <= i.end_unix + after && b >= i.start_unix - before)
    };
    let mut objectives: Vec<Objective> = LADDER
        .iter()
        .filter_map(|o| Objective::parse(o).ok())
        .chain(opts.extra.iter().copied())
        .chain(std::iter::once(slo.objective))
        .collect();
    let key = |o: &Objective| o.percent().parse::<f64>().unwrap_or(0.0);
    objectives.sort_by(|a, b| key(a).total_cmp(&key(b)));
    objectives.dedup_by(|a, b| a.percent() == b.percent());
    let keep = slo
        .alerting
        .keep_firing_for
        .map_or(0, |d| (d.as_secs_f64() / five.step).ceil() as usize);
    let candidates: Vec<Candidate> = objectives
        .iter()
        .map(|o| {
            let budget = Dec::budget(o);
            let mut firing: Vec<(BurnTier, Vec<bool>)> = Vec::new();
            for tier in BurnTier::ALL.into_iter().filter(|t| spec.tier_enabled(*t)) {
                let thr = tier.threshold(slo.window, budget).to_f64();
                let grid = |w: &str| {
                    let i = WINDOWS.iter().position(|x| x.name == w).expect("window");
                    &h.ratios[i]
                };
                let (long, short) = (grid(tier.long().name), grid(tier.short().name));
                let min = spec.min_bad_runs(tier);
                let g = h.guard.iter().find(|(t, _)| *t == tier).map(|(_, g)| g);
                let mut on: Vec<bool> = (0..long.values.len())
                    .map(|i| {
                        let above = |g: &Grid| g.values[i].is_some_and(|r| r > thr);
                        above(long)
                            && above(short)
                            && (min <= 1
                                || g.is_some_and(|g| {
                                    g.values[i].is_some_and(|b| b > f64::from(min) - 0.5)
                                }))
                    })
                    .collect();
                // keep_firing_for: an alert stays firing that long after its
                // condition stops holding.
                let mut left = 0;
                for x in on.iter_mut() {
                    if *x {
                        left = keep;
                    } else if left > 0 {
                        *x = true;
                        left -= 1;
                    }
                }
                firing.push((tier, on));
            }
            let mut episodes = Vec::new();
            for sev in ["page", "ticket"] {
                let tiers: Vec<&(BurnTier, Vec<bool>)> =
                    firing.iter().filter(|(t, _)| t.severity() == sev).collect();
                let any: Vec<bool> = (0..five.values.len())
                    .map(|i| tiers.iter().any(|(_, on)| on[i]))
                    .collect();
                for (a, b) in runs_of(&any) {
                    let (start, end) = (five.time(a), five.time(b));
                    episodes.push(Episode {
                        severity: sev,
                        tiers: tiers
                            .iter()
                            .filter(|(_, on)| on[a..=b].iter().any(|x| *x))
                            .map(|(t, _)| t.name())
                            .collect(),
                        span: Span::new(start, end),
                        during_incident: during(start, end),
                    });
                }
            }
            episodes.sort_by(|a, b| a.span.start_unix.total_cmp(&b.span.start_unix));
            let b = budget.to_f64();
            let exhausted = h
                .period
                .values
                .iter()
                .filter(|v| v.is_some_and(|r| 1.0 - r / b <= 0.0))
                .count() as f64
                * h.period.step;
            let pages = episodes.iter().filter(|e| e.severity == "page");
            Candidate {
                objective_percent: o.percent(),
                current: o.percent() == slo.objective.percent(),
                pages: pages.clone().count(),
                pages_outside_incidents: pages.filter(|e| !e.during_incident).count(),
                tickets: episodes.iter().filter(|e| e.severity == "ticket").count(),
                budget_exhausted_seconds: exhausted,
                episodes,
            }
        })
        .collect();
    let suggestion = suggest(
        &candidates,
        &incidents,
        five.values.iter().any(Option::is_some),
    );
    SloReview {
        journey: spec.journey.name.clone(),
        slo: slo.name.clone(),
        kind: slo.kind_name(),
        sloth_id: spec.id.clone(),
        objective_percent: slo.objective.percent(),
        period: slo.window.as_str(),
        threshold_seconds: slo.threshold().map(|t| t.as_secs_f64()),
        achieved,
        budget_spent_percent,
        incidents,
        candidates,
        suggestion,
    }
}

fn suggest(candidates: &[Candidate], incidents: &[Span], has_history: bool) -> Suggestion {
    if !has_history {
        return Suggestion {
            objective_percent: None,
            why: "no runs in the reviewed period: nothing to judge an objective by".into(),
        };
    }
    let first_outside = |c: &Candidate| {
        c.episodes
            .iter()
            .find(|e| e.severity == "page" && !e.during_incident)
            .map_or(String::new(), |e| e.span.start.clone())
    };
    let incidents_phrase = match incidents.len() {
        0 => "there was no real incident".to_string(),
        1 => "1 real incident".to_string(),
        n => format!("{n} real incidents"),
    };
    let best = candidates
        .iter()
        .rposition(|c| c.pages_outside_incidents == 0);
    match best {
        None => {
            let loosest = &candidates[0];
            Suggestion {
                objective_percent: None,
                why: format!(
                    "even {}% paged {} time(s) outside real incidents (first at {}): fix the flaky failures, or probe more often, before tightening alerts",
                    loosest.objective_percent,
                    loosest.pages_outside_incidents,
                    first_outside(loosest)
                ),
            }
        }
        Some(i) => {
            let c = &candidates[i];
            let mut why = format!(
                "{}% is the tightest objective whose pages all came during real incidents ({} page(s); {})",
                c.objective_percent, c.pages, incidents_phrase
            );
            if let Some(next) = candidates.get(i + 1) {
                let _ = write!(
                    why,
                    "; {}% would have paged {} time(s) outside them, first at {}",
                    next.objective_percent,
                    next.pages_outside_incidents,
                    first_outside(next)
                );
            }
            if c.budget_exhausted_seconds > 0.0 {
                let _ = write!(
                    why,
                    "; its error budget would have been spent for {}",
                    human_secs(c.budget_exhausted_seconds)
                );
            }
            why.push('.');
            Suggestion {
                objective_percent: Some(c.objective_percent.clone()),
                why,
            }
        }
    }
}

/// `1h 5m`, `0s`: a duration in whole seconds for people.
fn human_secs(secs: f64) -> String {
    humantime::format_duration(Duration::from_secs(secs.max(0.0) as u64)).to_string()
}

fn pct(x: f64) -> String {
    let s = format!("{:.3}", x * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// The review as text for a terminal.
pub fn render_text(r: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "SLO review from Prometheus, {} to {} (alerts replayed every {}s)",
        r.from, r.until, r.step_seconds
    );
    for s in &r.slos {
        let what = match s.threshold_seconds {
            Some(t) => format!("{}% of successful runs within {t}s", s.objective_percent),
            None => format!("{}% of runs succeed", s.objective_percent),
        };
        let _ = writeln!(out, "\n{} / {}: {what} over {}", s.journey, s.slo, s.period);
        let bad = if s.kind == "latency" {
            "slow"
        } else {
            "failed"
        };
        for a in &s.achieved {
            let _ = writeln!(
                out,
                "  achieved {:>3}: {:<9} ({} of {} runs {bad})",
                a.window,
                a.sli.map_or("no runs".to_string(), pct),
                a.bad,
                a.runs
            );
        }
        if let Some(b) = s.budget_spent_percent {
            let _ = writeln!(
                out,
                "  budget spent at {}%: {b:.1}% of the {} budget",
                s.objective_percent, s.period
            );
        }
        if s.incidents.is_empty() {
            let _ = writeln!(out, "  real incidents: none");
        }
        for i in &s.incidents {
            let _ = writeln!(out, "  real incident: {} to {}", i.start, i.end);
        }
        let _ = writeln!(
            out,
            "  {:<10} {:>5} {:>18} {:>7}  budget spent for",
            "objective", "pages", "outside incidents", "tickets"
        );
        for c in &s.candidates {
            let _ = writeln!(
                out,
                "  {:<10} {:>5} {:>18} {:>7}  {}",
                format!(
                    "{}%{}",
                    c.objective_percent,
                    if c.current { " *" } else { "" }
                ),
                c.pages,
                c.pages_outside_incidents,
                c.tickets,
                human_secs(c.budget_exhausted_seconds)
            );
        }
        let _ = writeln!(
            out,
            "  suggestion: {}{}",
            s.suggestion
                .objective_percent
                .as_ref()
                .map_or(String::new(), |o| format!("{o}%: ")),
            s.suggestion.why
        );
    }
    let _ = writeln!(
        out,
        "\n* current objective. A real incident: at least half of 5 minutes' runs bad."
    );
    out
}

/// What `serve` knows without Prometheus: each SLO over its recent windows
/// and since it started, read from `/api/v1/journeys`, labelled as such.
/// No candidate objectives: replaying alerts needs the period's history.
pub fn render_in_process(api: &serde_json::Value, journeys: &[Journey]) -> String {
    let mut out = String::from(
        "SLO review from a running serve's memory (this prober only, since it started; \
         no history, so no objective ladder: pass --prometheus-url for that)\n",
    );
    let wanted = |name: &str| journeys.is_empty() || journeys.iter().any(|j| j.name == name);
    for j in api["journeys"].as_array().into_iter().flatten() {
        let name = j["name"].as_str().unwrap_or_default();
        if !wanted(name) {
            continue;
        }
        for s in j["slos"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "\n{name} / {}: objective {}% ({})",
                s["name"].as_str().unwrap_or_default(),
                s["objective_percent"].as_str().unwrap_or_default(),
                s["source"].as_str().unwrap_or("in-process"),
            );
            for w in s["windows"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  last {:>3}: {:<9} ({} of {} runs bad)",
                    w["window"].as_str().unwrap_or_default(),
                    w["sli"].as_f64().map_or("no runs".to_string(), pct),
                    w["bad"],
                    w["runs"]
                );
            }
            let _ = writeln!(
                out,
                "  since start: {} of {} runs bad, {:.1}% of the period's budget spent{}",
                s["bad_since_start"],
                s["runs_since_start"],
                s["budget_spent_percent"].as_f64().unwrap_or(0.0),
                s["would_page"]
                    .as_str()
                    .map_or(String::new(), |t| format!("; would page now ({t})"))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(vals: &[Option<f64>]) -> Grid {
        Grid {
            start: 0.0,
            step: 60.0,
            values: vals.to_vec(),
        }
    }

    #[test]
    fn runs_and_episodes() {
        assert_eq!(
            runs_of(&[false, true, true, false, true]),
            vec![(1, 2), (4, 4)]
        );
        assert!(runs_of(&[false, false]).is_empty());
        let j =
            crate::rules::test_journey("j", "60s", "  - {name: availability, objective: 99.5%}\n");
        let cfg = RulesConfig::default();
        let spec = SloSpec::new(&j, &j.slos[0], &cfg);
        // A hard outage at steps 2..=4, then one isolated burn at step 45,
        // past the outage's grace of 30m (no incident: the 5m ratio stays
        // under a half).
        let n = 50;
        let mut ratios = Vec::new();
        for w in WINDOWS {
            let v: Vec<Option<f64>> = (0..n)
                .map(|i| {
                    Some(match (w.name, i) {
                        ("5m", 2..=4) => 1.0,
                        ("5m", 45) => 0.4,
                        (_, 2..=4) => 0.5,
                        (_, 45) => 0.2,
                        _ => 0.0,
                    })
                })
                .collect();
            ratios.push(grid(&v));
        }
        let h = History {
            ratios,
            guard: vec![],
            period: grid(&[Some(0.001), Some(0.006)]),
        };
        let opts = ReviewOptions {
            until: SystemTime::UNIX_EPOCH,
            since: Duration::from_secs(600),
            step: Duration::from_secs(60),
            period_step: Duration::from_secs(60),
            extra: vec![],
        };
        let r = judge(&spec, &opts, &h, vec![], None);
        assert_eq!(r.incidents, vec![Span::new(120.0, 240.0)]);
        let c: Vec<(&str, usize, usize, usize)> = r
            .candidates
            .iter()
            .map(|c| {
                (
                    c.objective_percent.as_str(),
                    c.pages,
                    c.pages_outside_incidents,
                    c.tickets,
                )
            })
            .collect();
        // 99%: thresholds 0.144 (page-fast) and 0.06 (page-slow): both episodes page.
        assert_eq!(
            c,
            vec![("99", 2, 1, 2), ("99.5", 2, 1, 2), ("99.9", 2, 1, 2)]
        );
        assert_eq!(r.suggestion.objective_percent, None, "{}", r.suggestion.why);
        // 99.5%: budget 0.005, the second period value spends it
        assert_eq!(r.candidates[1].budget_exhausted_seconds, 60.0);
        assert!(r.candidates[1].current);
    }
}
