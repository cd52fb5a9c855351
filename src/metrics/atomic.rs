//! Lean, lock-free series for the per-journey collector.
//!
//! A serve process holds a few histograms and a counter per reason for every
//! journey and step; with 10,000 journeys prometheus-client's `Histogram`
//! (a mutex, its own copy of the bounds, a growable bucket vector) and one
//! `Arc` per reason counter were half of the heap (see bench/README.md). Here
//! the bounds are shared by every histogram of the same shape, a histogram is
//! one allocation of atomics, and observing takes no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A histogram with shared finite upper bounds and an implicit `+Inf`
/// bucket. Clones share their values (as prometheus-client's do), so a reload
/// can hand a series on.
#[derive(Debug, Clone)]
pub struct AtomicHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Finite, sorted upper bounds in seconds (shared, not copied).
    bounds: Arc<[f64]>,
    /// Sum of observations, as `f64` bits.
    sum: AtomicU64,
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    counts: Box<[AtomicU64]>,
}

impl AtomicHistogram {
    /// An empty histogram over `bounds` (finite, sorted ascending).
    pub fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner {
            bounds,
            sum: AtomicU64::new(0f64.to_bits()),
            counts,
        }))
    }

    /// Records `v`: the first bucket whose bound is `>= v` (NaN: `+Inf`).
    pub fn observe(&self, v: f64) {
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| *b >= v)
            .unwrap_or(self.0.bounds.len());
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .0
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((f64::from_bits(s) + v).to_bits())
            });
    }

    /// Whether both share one set of values.
    #[cfg(test)]
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut count = 0;
        let buckets: Vec<(f64, u64)> = self
            .0
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                count += n;
                (self.0.bounds.get(i).copied().unwrap_or(f64::INFINITY), n)
            })
            .collect();
        let sum = f64::from_bits(self.0.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One counter per failure reason of a step, in one shared allocation.
#[derive(Debug, Clone)]
pub struct ReasonCounters(Arc<[AtomicU64]>);

impl ReasonCounters {
    /// `n` counters at zero.
    pub fn new(n: usize) -> Self {
        Self((0..n).map(|_| AtomicU64::new(0)).collect())
    }

    /// Adds one to counter `i`.
    pub fn inc(&self, i: usize) {
        if let Some(c) = self.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Each counter's value, in order.
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn text(h: impl EncodeMetric + std::fmt::Debug + Send + Sync + 'static) -> String {
        let mut r = Registry::default();
        r.register("d_seconds", "d", h);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        s
    }

    #[test]
    fn encodes_exactly_like_prometheus_client() {
        let bounds = [0.005, 0.05, 0.1, 1.0];
        let ours = AtomicHistogram::new(Arc::from(bounds.as_slice()));
        let theirs = Histogram::new(bounds);
        for v in [0.001, 0.005, 0.0500001, 0.07, 3.0, f64::NAN, 0.2] {
            ours.observe(v);
            theirs.observe(v);
        }
        // NaN makes the sum NaN in both; compare without it too.
        assert_eq!(text(ours), text(theirs));
        let ours = AtomicHistogram::new(Arc::from(bounds.as_slice()));
        let theirs = Histogram::new(bounds);
        for v in [0.001, 0.005, 0.0500001, 0.07, 3.0, 0.2] {
            ours.observe(v);
            theirs.observe(v);
        }
        assert_eq!(text(ours), text(theirs));
    }

    #[test]
    fn clones_share_values_and_reasons_count() {
        let h = AtomicHistogram::new(Arc::from([1.0].as_slice()));
        let c = h.clone();
        c.observe(0.5);
        assert!(h.same(&c));
        assert!(text(h).contains("d_seconds_count 1"));
        let r = ReasonCounters::new(3);
        let shared = r.clone();
        shared.inc(1);
        shared.inc(1);
        r.inc(7); // out of range: ignored, never a panic
        assert_eq!(r.values().collect::<Vec<_>>(), vec![0, 2, 0]);
    }
}
