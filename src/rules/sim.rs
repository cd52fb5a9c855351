//! A minute-by-minute mirror of what Prometheus computes from the generated
//! rules, used to write the expectations of the emitted promtool tests.
//!
//! Inputs are sampled once a minute, every window is a whole number of
//! minutes, and Prometheus 2.x range selection is closed (`[t − w, t]`).
//! The rules count runs as `last − min_over_time` over the window (no
//! extrapolation, see [`super::build::counted`]), so every count is a whole
//! number and exact in floating point; the floor (runs the window should
//! hold) is the same `n / d` division Prometheus evaluates, and ratios are
//! compared with the threshold literal parsed the same way. The predicted
//! firing minute is therefore exactly promtool's.

use std::ops::RangeInclusive;

use super::arith::BurnTier;
use super::build::SloSpec;

/// Samples at each minute (index = minute) of one journey at one location.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    /// Cumulative good runs. Availability: successful runs; latency:
    /// successful runs within the threshold.
    pub good: Vec<u64>,
    /// Cumulative bad runs. Availability: failed runs; latency: successful
    /// runs slower than the threshold.
    pub bad: Vec<u64>,
    /// `journey_last_run_timestamp_seconds` (whole seconds; 0 = no run yet).
    pub ts: Vec<u64>,
    /// Whether the series are scraped at that minute (false: stale or absent).
    pub present: Vec<bool>,
}

impl Timeline {
    pub fn last_minute(&self) -> u64 {
        self.good.len() as u64 - 1
    }
}

/// Runs every `interval_ms` (run `base + k` ends at `k × interval_ms`), some
/// bad, possibly stopping, possibly with the prober gone.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub interval_ms: u64,
    /// Good runs the counters hold at minute 0 (a Prometheus that starts
    /// while the prober has been running: it never saw them happen).
    pub base: u64,
    /// Run numbers of bad runs (the first run after minute 0 is `base + 1`).
    pub bad: Vec<RangeInclusive<u64>>,
    /// No run after this one (a stuck scheduler: series still scraped).
    pub last_run: Option<u64>,
    /// From this minute on the series are gone (prober down): one stale
    /// marker, then nothing.
    pub dead_from: Option<u64>,
}

impl Scenario {
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms: interval_ms.max(1),
            base: 0,
            bad: Vec::new(),
            last_run: None,
            dead_from: None,
        }
    }

    /// Runs finished by the end of minute `t` (inclusive of a run at exactly `t`).
    pub fn runs_by(&self, minute: u64) -> u64 {
        let n = (u128::from(minute) * 60_000 / u128::from(self.interval_ms)) as u64;
        let n = self.base + n;
        let n = self.last_run.map_or(n, |l| n.min(l));
        match self.dead_from {
            Some(d) if minute >= d => self.runs_by(d.saturating_sub(1)).min(n),
            _ => n,
        }
    }

    /// The minute at which run `k` ends, if that is a whole minute.
    pub fn minute_of(&self, run: u64) -> Option<u64> {
        let ms = u128::from(run.checked_sub(self.base)?) * u128::from(self.interval_ms);
        ms.is_multiple_of(60_000)
            .then(|| u64::try_from(ms / 60_000).ok())
            .flatten()
    }

    /// Runs between two runs that end on a whole minute.
    pub fn boundary_period(&self) -> u64 {
        60_000 / gcd(self.interval_ms, 60_000)
    }

    /// The first run number `≥ k` that ends on a whole minute (after minute 0).
    pub fn boundary_at_or_after(&self, k: u64) -> u64 {
        let q = self.boundary_period();
        let rel = k.saturating_sub(self.base);
        self.base + rel.div_ceil(q).max(1) * q
    }

    fn bad_by(&self, n: u64) -> u64 {
        self.bad
            .iter()
            .map(|r| {
                let end = (*r.end()).min(n);
                if end >= *r.start() {
                    end - r.start() + 1
                } else {
                    0
                }
            })
            .sum()
    }

    /// When run `n` (`n > base`) ended, in whole seconds.
    fn ts_of(&self, n: u64) -> u64 {
        if n <= self.base {
            0
        } else {
            (u128::from(n - self.base) * u128::from(self.interval_ms) / 1000) as u64
        }
    }

    /// Samples minutes `0..=minutes`.
    pub fn timeline(&self, minutes: u64) -> Timeline {
        let mut t = Timeline::default();
        for m in 0..=minutes {
            let n = self.runs_by(m);
            let b = self.bad_by(n);
            t.good.push(n - b);
            t.bad.push(b);
            t.ts.push(self.ts_of(n));
            t.present.push(self.dead_from.is_none_or(|d| m < d));
        }
        t
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// What `counted()` gives for one counter over `[t − w, t]`: `None` when the
/// series has no sample there. For a series gone stale at `t` Prometheus
/// falls back to `increase()`, which extrapolates; the scenarios that get
/// there have no change in the window, where both are 0.
fn counted(vals: &[u64], present: &[bool], t: usize, window_min: u64) -> Option<u64> {
    let from = t.saturating_sub(window_min as usize);
    let first = (from..=t).find(|&i| present[i])?;
    let last = (from..=t).rev().find(|&i| present[i])?;
    if !present[t] && first == last {
        return None;
    }
    let (first, last) = (vals[first], vals[last]);
    Some(last - first)
}

/// A firing burn-rate alert: its tier and `$value` (the long-window ratio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Firing {
    pub tier: BurnTier,
    pub value: f64,
}

/// Liveness alert states minute by minute.
#[derive(Debug, Clone, Default)]
pub(crate) struct Liveness {
    /// `missing="runs"` firing, with `$value` (seconds since the last run).
    pub runs: Vec<Option<f64>>,
    /// `missing="series"` firing.
    pub series: Vec<bool>,
}

impl Liveness {
    /// Mirrors the journey's (or, with the prober's `after`, the prober's)
    /// two liveness rules over a timeline.
    pub fn run(tl: &Timeline, after_secs: u64, absent: bool) -> Self {
        let mut out = Liveness::default();
        let mut since: Option<u64> = None;
        for t in 0..=tl.last_minute() {
            let i = t as usize;
            let present = tl.present[i] && !absent;
            let age = (present && tl.ts[i] > 0)
                .then(|| (t * 60) as f64 - tl.ts[i] as f64)
                .filter(|a| *a > after_secs as f64);
            out.runs.push(age);
            if present {
                since = None;
                out.series.push(false);
            } else {
                let s = *since.get_or_insert(t);
                out.series.push((t - s) * 60 >= after_secs);
            }
        }
        out
    }
}

/// Alert states minute by minute.
pub(crate) struct Outcome {
    /// Burn alerts firing at each minute, in tier order.
    pub burn: Vec<Vec<Firing>>,
    /// The journey's liveness alerts.
    pub live: Liveness,
}

/// The mirror of one SLO's rules.
pub(crate) struct Sim<'a> {
    pub spec: &'a SloSpec<'a>,
}

impl Sim<'_> {
    /// `(bad, total)` runs counted over `window_secs` at minute `t`, as the
    /// rules count them; `None` when there is no series.
    fn counts(&self, tl: &Timeline, t: u64, window_secs: u64) -> Option<(f64, f64)> {
        let t = t as usize;
        let w = window_secs / 60;
        let g = counted(&tl.good, &tl.present, t, w)?;
        let b = counted(&tl.bad, &tl.present, t, w)?;
        // Availability: failures over sum(success + failure).
        // Latency: count - bucket over count, count = good + bad.
        Some((b as f64, (g + b) as f64))
    }

    /// The error ratio over `window_secs` at minute `t`; `None` without series.
    pub fn ratio(&self, tl: &Timeline, t: u64, window_secs: u64) -> Option<f64> {
        let (bad, total) = self.counts(tl, t, window_secs)?;
        let (n, d) = self.spec.expected_runs(window_secs);
        let floor = n as f64 / d as f64;
        let v = bad / total.max(floor);
        (!v.is_nan()).then_some(v)
    }

    /// The tier's condition at minute `t`: `Some($value)` when it holds.
    pub fn condition(&self, tl: &Timeline, t: u64, tier: BurnTier) -> Option<f64> {
        let thr = self.spec.threshold(tier).to_f64();
        let long = self.ratio(tl, t, tier.long().secs)?;
        let short = self.ratio(tl, t, tier.short().secs)?;
        if !(long > thr && short > thr) {
            return None;
        }
        let min = self.spec.min_bad_runs(tier);
        if min > 1 {
            let (bad, _) = self.counts(tl, t, tier.long().secs)?;
            if bad <= f64::from(min) - 0.5 {
                return None;
            }
        }
        Some(long)
    }

    /// Runs every enabled alert over the timeline (`absent`: no input series at all).
    pub fn run(&self, tl: &Timeline, absent: bool) -> Outcome {
        let keep_ms = self
            .spec
            .slo
            .alerting
            .keep_firing_for
            .map_or(0, |d| d.as_millis() as u64);
        let tiers: Vec<BurnTier> = BurnTier::ALL
            .into_iter()
            .filter(|t| self.spec.tier_enabled(*t))
            .collect();
        // per tier: (firing, keep-firing since, last value)
        let mut state: Vec<(bool, Option<u64>, f64)> = vec![(false, None, 0.0); tiers.len()];
        let mut burn = Vec::new();
        for t in 0..=tl.last_minute() {
            let mut now = Vec::new();
            for (i, tier) in tiers.iter().enumerate() {
                let s = &mut state[i];
                if absent {
                    *s = (false, None, 0.0);
                } else if let Some(v) = self.condition(tl, t, *tier) {
                    *s = (true, None, v);
                } else if s.0 {
                    let since = *s.1.get_or_insert(t);
                    if (t - since) * 60_000 >= keep_ms {
                        *s = (false, None, s.2);
                    }
                }
                if s.0 {
                    now.push(Firing {
                        tier: *tier,
                        value: s.2,
                    });
                }
            }
            burn.push(now);
        }
        let after = super::build::liveness_after(self.spec.journey).as_secs();
        Outcome {
            burn,
            live: Liveness::run(tl, after, absent),
        }
    }

    /// Whether `tier` fires at minute `t`.
    pub fn fires(outcome: &Outcome, t: u64, tier: BurnTier) -> bool {
        outcome.burn[t as usize].iter().any(|f| f.tier == tier)
    }

    /// Whether any burn-rate alert fires at minute `t`.
    pub fn any_burn(outcome: &Outcome, t: u64) -> bool {
        !outcome.burn[t as usize].is_empty()
    }
}
