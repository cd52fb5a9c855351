//! Each journey's SLOs as `serve` sees them in-process, for the status page
//! and `/api/v1/journeys`: the SLI over recent windows, runs over a latency
//! threshold (a "slow" state distinct from failing), error budget spent and
//! whether the page tiers' burn condition holds.
//!
//! Computed from this prober's own runs since it started, with the same
//! arithmetic as the generated rules (a window counts at least the runs it
//! should hold), and labelled so: Prometheus, with every location and its
//! whole history, stays the source of truth for alerts.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::journey::Journey;
use crate::journey::slo::Judge;
use crate::outcome::{JourneyOutcome, RunResult};
use crate::rules::{BurnTier, Dec};

/// The longest window kept (page-slow's 6h).
const KEEP: Duration = Duration::from_secs(6 * 3600);
/// Windows shown, and the ones the page tiers read.
const WINDOWS: [(&str, u64); 4] = [("5m", 300), ("30m", 1800), ("1h", 3600), ("6h", 21_600)];

/// Runs of one minute (12 bytes: one is kept per minute of the last 6h for
/// every journey with SLOs).
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Minutes since the Unix epoch.
    minute: u32,
    runs: u32,
    successes: u32,
}

/// Per-minute run counts of one journey over the last 6h, and totals since
/// start. Journeys without SLOs keep only the totals.
#[derive(Debug, Clone, Default)]
pub struct RunLog {
    buckets: VecDeque<Bucket>,
    /// Bad runs of each bucket per SLO (failed runs; or successful runs
    /// over the threshold): `shape.len()` per bucket, in bucket order, so a
    /// bucket needs no allocation of its own.
    bucket_bad: VecDeque<u32>,
    /// Runs since start.
    runs: u64,
    /// Successful runs since start.
    successes: u64,
    /// Bad runs since start, per SLO.
    bad: Vec<u64>,
    /// The SLOs the counts are for (thresholds; `None` = availability).
    shape: Vec<Option<Duration>>,
}

fn shape(j: &Journey) -> Vec<Option<Duration>> {
    j.slos.iter().map(|s| s.threshold()).collect()
}

/// Whether the counts of `shape` are for `j`'s SLOs (no allocation: this
/// runs for every run).
fn same_shape(j: &Journey, shape: &[Option<Duration>]) -> bool {
    j.slos.len() == shape.len() && j.slos.iter().zip(shape).all(|(s, t)| s.threshold() == *t)
}

fn minute(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl RunLog {
    /// Counts a finished run of `j` (whose SLOs may have changed at a reload:
    /// then the counts start again).
    /// `first` is the first attempt's result, which SLOs judging the first
    /// attempt count.
    pub fn record(&mut self, j: &Journey, o: &JourneyOutcome, first: RunResult) {
        if !same_shape(j, &self.shape) {
            let shape = shape(j);
            *self = RunLog {
                bad: vec![0; shape.len()],
                shape,
                ..Default::default()
            };
        }
        let ok = o.result == RunResult::Success;
        let first_ok = first == RunResult::Success;
        self.runs += 1;
        self.successes += u64::from(ok);
        let n = self.shape.len();
        if n == 0 {
            // No SLO reads the windows.
            return;
        }
        let m = minute(o.started_at + o.duration);
        if self.buckets.back().is_none_or(|b| u64::from(b.minute) < m) {
            self.buckets.push_back(Bucket {
                minute: u32::try_from(m).unwrap_or(u32::MAX),
                ..Default::default()
            });
            self.bucket_bad.extend(std::iter::repeat_n(0, n));
        }
        let b = self.buckets.back_mut().expect("just pushed");
        b.runs += 1;
        b.successes += u32::from(ok);
        let base = self.bucket_bad.len() - n;
        for (i, (t, slo)) in self.shape.iter().zip(&j.slos).enumerate() {
            let x = match (t, slo.judges()) {
                (None, Judge::First) => u32::from(!first_ok),
                (None, Judge::Final) => u32::from(!ok),
                (Some(t), _) => u32::from(ok && o.sli_duration() > *t),
            };
            self.bucket_bad[base + i] += x;
            self.bad[i] += u64::from(x);
        }
        let oldest = m.saturating_sub(KEEP.as_secs() / 60);
        while self
            .buckets
            .front()
            .is_some_and(|b| u64::from(b.minute) < oldest)
        {
            self.buckets.pop_front();
            self.bucket_bad.drain(..n);
        }
    }

    /// `(total, bad)` of SLO `i` over the last `secs` (whole minutes).
    fn window(&self, i: usize, latency: bool, now: SystemTime, secs: u64) -> (u64, u64) {
        let from = minute(now).saturating_sub(secs / 60);
        let n = self.shape.len();
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| u64::from(b.minute) >= from)
            .fold((0, 0), |(t, bad), (k, b)| {
                let total = if latency { b.successes } else { b.runs };
                (
                    t + u64::from(total),
                    bad + u64::from(self.bucket_bad[k * n + i]),
                )
            })
    }

    /// The SLO views of `j` at `now`, counted since `since`.
    pub fn views(&self, j: &Journey, now: SystemTime, since: SystemTime) -> Vec<SloView> {
        if !same_shape(j, &self.shape) {
            return RunLog::default().views_of(j, now, since);
        }
        self.views_of(j, now, since)
    }

    fn views_of(&self, j: &Journey, now: SystemTime, since: SystemTime) -> Vec<SloView> {
        j.slos
            .iter()
            .enumerate()
            .map(|(i, slo)| {
                let latency = slo.threshold().is_some();
                let budget = Dec::budget(&slo.objective);
                let expected = |secs: u64| secs as f64 / j.interval.as_secs_f64().max(1e-3);
                let counts = |secs: u64| {
                    if self.shape.is_empty() {
                        (0, 0)
                    } else {
                        self.window(i, latency, now, secs)
                    }
                };
                let windows: Vec<WindowView> = WINDOWS
                    .iter()
                    .map(|(name, secs)| {
                        let (total, bad) = counts(*secs);
                        WindowView {
                            window: name,
                            runs: total,
                            bad,
                            sli: (total > 0).then(|| 1.0 - bad as f64 / total as f64),
                            error_ratio: bad as f64 / (total as f64).max(expected(*secs)),
                        }
                    })
                    .collect();
                let ratio = |name: &str| {
                    windows
                        .iter()
                        .find(|w| w.window == name)
                        .map_or(0.0, |w| w.error_ratio)
                };
                let would_page = BurnTier::ALL
                    .into_iter()
                    .filter(|t| t.is_page() && slo.alerting.page.enabled)
                    .find(|t| {
                        let thr = t.threshold(slo.window, budget).to_f64();
                        ratio(t.long().name) > thr && ratio(t.short().name) > thr
                    })
                    .map(|t| t.name());
                let period = f64::from(slo.window.days()) * 86_400.0;
                let allowed = budget.to_f64() * expected(period as u64);
                let (bad_total, runs_total) = if self.shape.is_empty() {
                    (0, 0)
                } else if latency {
                    (self.bad[i], self.successes)
                } else {
                    (self.bad[i], self.runs)
                };
                SloView {
                    name: slo.name.clone(),
                    kind: slo.kind_name(),
                    objective_percent: slo.objective.percent(),
                    threshold_seconds: slo.threshold().map(|t| t.as_secs_f64()),
                    judges: slo.judges().as_str(),
                    source: format!(
                        "in-process since {}",
                        humantime::format_rfc3339_seconds(since)
                    ),
                    windows,
                    runs_since_start: runs_total,
                    bad_since_start: bad_total,
                    budget_spent_percent: 100.0 * bad_total as f64 / allowed.max(1e-9),
                    would_page,
                    prometheus: None,
                }
            })
            .collect()
    }
}

/// The SLI of one window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    /// `5m`, `30m`, `1h` or `6h`.
    pub window: &'static str,
    /// Runs the SLO counts in it (latency: successful runs).
    pub runs: u64,
    /// Bad runs (failed; latency: slower than the threshold).
    pub bad: u64,
    /// Good runs / runs, `None` without runs.
    pub sli: Option<f64>,
    /// Bad runs / max(runs, runs the window should hold): what the rules compare.
    pub error_ratio: f64,
}

/// One SLO of a journey as this prober sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SloView {
    /// SLO name.
    pub name: String,
    /// `availability` or `latency`.
    pub kind: &'static str,
    /// The objective, in percent (`99.5`).
    pub objective_percent: String,
    /// Latency threshold in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_seconds: Option<f64>,
    /// Which attempt the SLO judges: `first` or `final` (after retries).
    pub judges: &'static str,
    /// Where the numbers come from: `in-process since <start>`.
    pub source: String,
    /// The SLI over recent windows.
    pub windows: Vec<WindowView>,
    /// Runs counted since the prober started.
    pub runs_since_start: u64,
    /// Bad runs since start (latency: runs over the threshold).
    pub bad_since_start: u64,
    /// Share of the period's error budget the bad runs since start spent,
    /// in percent (this prober's runs only).
    pub budget_spent_percent: f64,
    /// The page tier whose burn condition holds now, if any.
    pub would_page: Option<&'static str>,
    /// The same SLO from the recording rules in Prometheus
    /// (`serve --prometheus-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<crate::slo_prom::PromSlo>,
}

/// Whether the last run passed but was slower than a latency SLO allows.
pub fn is_slow(j: &Journey, last: &JourneyOutcome) -> bool {
    last.result == RunResult::Success
        && j.slos
            .iter()
            .filter_map(|s| s.threshold())
            .any(|t| last.sli_duration() > t)
}

/// The SLO table of one journey for the status page (HTML).
pub fn render_html(views: &[SloView]) -> String {
    let esc = crate::server::esc;
    let mut h = String::new();
    if views.is_empty() {
        return h;
    }
    h.push_str("<table class=slos><tr><th>SLO</th><th>5m</th><th>1h</th><th>6h</th><th>budget spent</th><th>burn</th></tr>");
    for v in views {
        let what = match v.threshold_seconds {
            Some(t) => format!(
                "{}% within {}",
                v.objective_percent,
                crate::diag::millis(t * 1000.0)
            ),
            None => format!("{}% succeed", v.objective_percent),
        };
        let bad = if v.kind == "latency" {
            "slow"
        } else {
            "failed"
        };
        let _ = write!(
            h,
            "<tr class=slo data-slo=\"{}\"><td>{} <span class=steps>{}</span></td>",
            esc(&v.name),
            esc(&v.name),
            esc(&what)
        );
        for w in v.windows.iter().filter(|w| w.window != "30m") {
            let sli = w
                .sli
                .map_or("—".to_string(), |s| format!("{:.2}%", s * 100.0));
            let class = if w.bad > 0 { "fail" } else { "ok" };
            let _ = write!(
                h,
                "<td>{sli}<br><span class={class}>{} of {} {bad}</span></td>",
                w.bad, w.runs
            );
        }
        let _ = write!(
            h,
            "<td>{:.2}%<br><span class=steps>{} {bad} since start</span></td><td class={}>{}</td></tr>",
            v.budget_spent_percent,
            v.bad_since_start,
            if v.would_page.is_some() { "fail" } else { "ok" },
            v.would_page
                .map_or("no page".to_string(), |t| format!("would page ({t})"))
        );
    }
    h.push_str("</table>");
    for v in views {
        if let Some(p) = &v.prometheus {
            let ratios: Vec<String> = p
                .error_ratio
                .iter()
                .map(|(w, r)| format!("{w} {:.3}%", r * 100.0))
                .collect();
            let _ = write!(
                h,
                "<p class=\"steps prom\" data-slo=\"{}\">Prometheus, {}: error ratio {}; budget remaining {}; {}</p>",
                esc(&v.name),
                esc(&v.name),
                esc(&ratios.join(", ")),
                p.budget_remaining
                    .map_or("unknown".to_string(), |b| format!("{:.2}%", b * 100.0)),
                if p.firing.is_empty() {
                    "no burn alert firing".to_string()
                } else {
                    format!(
                        "<span class=fail>firing: {}</span>",
                        esc(&p.firing.join(", "))
                    )
                }
            );
            if !p.locations.is_empty() {
                // Every location's own state, from the per-location recording rules.
                let each: Vec<String> = p
                    .locations
                    .iter()
                    .map(|(l, r)| {
                        let ticket = if p.locations_firing.contains(l) {
                            " <span class=fail>(location ticket firing)</span>"
                        } else {
                            ""
                        };
                        format!("{} 1h {:.3}%{ticket}", esc(l), r * 100.0)
                    })
                    .collect();
                let _ = write!(
                    h,
                    "<p class=\"steps prom-locations\" data-slo=\"{}\">Locations: {}</p>",
                    esc(&v.name),
                    each.join(", ")
                );
            }
        }
    }
    let _ = write!(
        h,
        "<p class=steps>SLO table {}, this location only; alerts come from Prometheus.</p>",
        esc(&views[0].source)
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::JourneyOutcome;

    fn run(at: SystemTime, ok: bool, ms: u64) -> JourneyOutcome {
        JourneyOutcome {
            attempts: 1,
            journey: "j".into(),
            result: if ok {
                RunResult::Success
            } else {
                RunResult::Failure
            },
            started_at: at,
            duration: Duration::from_millis(ms),
            steps: vec![],
            finally: vec![],
            trace_id: None,
            trace_url: None,
        }
    }

    #[test]
    fn windows_budget_and_slow_runs() {
        let j = crate::rules::test_journey(
            "j",
            "10s",
            "  - {name: availability, objective: 99.5%}\n  - {name: latency, objective: 95%, threshold: 2s}\n",
        );
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 * 60);
        let mut log = RunLog::default();
        // 30 runs in 5 minutes: 21 over 2s, 2 failed
        for k in 0..30u64 {
            let at = t0 + Duration::from_secs(k * 10);
            let o = run(at, k % 15 != 0, if k < 21 { 3000 } else { 100 });
            let first = o.result;
            log.record(&j, &o, first);
        }
        let now = t0 + Duration::from_secs(300);
        let v = log.views(&j, now, t0);
        assert_eq!(v[0].windows[0].runs, 30);
        assert_eq!(v[0].windows[0].bad, 2);
        assert_eq!(v[1].windows[0].bad, 19, "21 slow runs, 2 of them failed");
        assert_eq!(v[1].windows[0].runs, 28);
        // 2 failures of 360 runs the hour should hold: 0.0056 < 0.072
        assert_eq!(v[0].would_page, None);
        assert_eq!(
            v[1].would_page, None,
            "19 of the 360 runs the hour should hold"
        );
        assert!((v[0].budget_spent_percent - 100.0 * 2.0 / 1296.0).abs() < 1e-9);
        let html = render_html(&v);
        assert!(html.contains("19 of 28 slow"), "{html}");
        assert!(v[0].source.starts_with("in-process since "));
        assert!(is_slow(&j, &run(now, true, 2500)));
        assert!(!is_slow(&j, &run(now, false, 2500)));
    }
}
