//! A minute-by-minute mirror of what Prometheus computes from the generated
//! rules, used to write the expectations of the emitted promtool tests.
//!
//! Inputs are sampled once a minute from counters that start at 0 at minute
//! 0, every window is a whole number of minutes, and Prometheus 2.x range
//! selection is closed (`[t − w, t]`). Under these conditions `rate()` and
//! `increase()` do no extrapolation: `rate = Δcounter × (1 / w)` (Prometheus
//! multiplies by a factor rather than dividing, which matters in the last bit). The ratios are
//! computed with the same float operations, in the same order, as the PromQL,
//! and compared with the threshold literal parsed the same way, so the
//! predicted firing minute is exactly promtool's.

use std::ops::RangeInclusive;

use super::arith::BurnTier;
use super::build::SloSpec;

/// Cumulative good and bad runs at each minute (index = minute).
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    /// Availability: successful runs; latency: successful runs within the threshold.
    pub good: Vec<u64>,
    /// Availability: failed runs; latency: successful runs slower than the threshold.
    pub bad: Vec<u64>,
}

impl Timeline {
    pub fn last_minute(&self) -> u64 {
        self.good.len() as u64 - 1
    }
}

/// Runs every `interval_ms` (run `k` ends at `k × interval_ms`), some bad,
/// possibly stopping.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub interval_ms: u64,
    /// 1-based run numbers of bad runs.
    pub bad: Vec<RangeInclusive<u64>>,
    /// No run after this one (a stalled prober).
    pub last_run: Option<u64>,
}

impl Scenario {
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            bad: Vec::new(),
            last_run: None,
        }
    }

    /// Runs finished by the end of minute `t` (inclusive of a run at exactly `t`).
    pub fn runs_by(&self, minute: u64) -> u64 {
        let n = minute * 60_000 / self.interval_ms;
        self.last_run.map_or(n, |l| n.min(l))
    }

    /// The minute at which run `k` ends, if that is a whole minute.
    pub fn minute_of(&self, run: u64) -> Option<u64> {
        let ms = run * self.interval_ms;
        ms.is_multiple_of(60_000).then_some(ms / 60_000)
    }

    /// Runs between two runs that end on a whole minute.
    pub fn boundary_period(&self) -> u64 {
        60_000 / gcd(self.interval_ms, 60_000)
    }

    /// The first run number `≥ k` that ends on a whole minute.
    pub fn boundary_at_or_after(&self, k: u64) -> u64 {
        let q = self.boundary_period();
        k.div_ceil(q).max(1) * q
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

    /// Samples minutes `0..=minutes`.
    pub fn timeline(&self, minutes: u64) -> Timeline {
        let mut t = Timeline::default();
        for m in 0..=minutes {
            let n = self.runs_by(m);
            let b = self.bad_by(n);
            t.good.push(n - b);
            t.bad.push(b);
        }
        t
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A firing burn-rate alert: its tier and `$value` (the long-window ratio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Firing {
    pub tier: BurnTier,
    pub value: f64,
}

/// Alert states minute by minute.
pub(crate) struct Outcome {
    /// Burn alerts firing at each minute, in tier order.
    pub burn: Vec<Vec<Firing>>,
    /// Whether `JourneyRunsMissing` fires at each minute.
    pub missing: Vec<bool>,
}

/// The mirror of one SLO's rules.
pub(crate) struct Sim<'a> {
    pub spec: &'a SloSpec<'a>,
}

impl Sim<'_> {
    /// The error ratio over `window_secs` at minute `t`; `None` when there is
    /// no sample or it is NaN.
    pub fn ratio(&self, tl: &Timeline, t: u64, window_secs: u64) -> Option<f64> {
        if t == 0 {
            return None;
        }
        let from = t.saturating_sub(window_secs / 60) as usize;
        let t = t as usize;
        let dg = (tl.good[t] - tl.good[from]) as f64;
        let db = (tl.bad[t] - tl.bad[from]) as f64;
        // Prometheus multiplies the delta by `extrapolation factor / range`,
        // the factor being exactly 1 for these aligned windows.
        let k = 1.0 / window_secs as f64;
        let v = if self.spec.is_latency() {
            // (sum(rate(count)) - sum(rate(bucket))) / sum(rate(count))
            let rc = (dg + db) * k;
            let rb = dg * k;
            (rc - rb) / rc
        } else {
            // sum(rate(failure)) / sum(rate(failure) + rate(success))
            let rf = db * k;
            let rs = dg * k;
            rf / (rf + rs)
        };
        (!v.is_nan()).then_some(v)
    }

    fn bad_increase(&self, tl: &Timeline, t: u64, window_secs: u64) -> f64 {
        let from = t.saturating_sub(window_secs / 60) as usize;
        let t = t as usize;
        if self.spec.is_latency() {
            let dc = ((tl.good[t] + tl.bad[t]) - (tl.good[from] + tl.bad[from])) as f64;
            let db = (tl.good[t] - tl.good[from]) as f64;
            dc - db
        } else {
            (tl.bad[t] - tl.bad[from]) as f64
        }
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
        if min > 1 && self.bad_increase(tl, t, tier.long().secs) <= f64::from(min) - 0.5 {
            return None;
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
        let live_min = super::build::liveness_window(self.spec.journey).as_secs() / 60;
        let tiers: Vec<BurnTier> = BurnTier::ALL
            .into_iter()
            .filter(|t| self.spec.tier_enabled(*t))
            .collect();
        // per tier: (firing, keep-firing since, last value)
        let mut state: Vec<(bool, Option<u64>, f64)> = vec![(false, None, 0.0); tiers.len()];
        let mut active_since: Option<u64> = None;
        let mut out = Outcome {
            burn: Vec::new(),
            missing: Vec::new(),
        };
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
            out.burn.push(now);
            let cond = absent || {
                t > 0 && {
                    let from = t.saturating_sub(live_min) as usize;
                    let ti = t as usize;
                    let inc =
                        (tl.good[ti] - tl.good[from]) as f64 + (tl.bad[ti] - tl.bad[from]) as f64;
                    inc < 1.0
                }
            };
            if cond {
                let since = *active_since.get_or_insert(t);
                out.missing.push(t - since >= 5);
            } else {
                active_since = None;
                out.missing.push(false);
            }
        }
        out
    }

    /// Whether `tier` fires at minute `t`.
    pub fn fires(outcome: &Outcome, t: u64, tier: BurnTier) -> bool {
        outcome.burn[t as usize].iter().any(|f| f.tier == tier)
    }
}
