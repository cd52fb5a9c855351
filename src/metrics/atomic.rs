//! Lean, lock-free series for the per-journey collector.
//!
//! A serve process holds a few histograms and a counter per reason for every
//! journey and step; with 10,000 journeys prometheus-client's `Histogram`
//! (a mutex, its own copy of the bounds, a growable bucket vector) and one
//! `Arc` per reason counter were half of the heap (see bench/README.md). Here
//! the bounds are shared by every histogram of the same shape, a histogram is
//! one allocation of atomics, and observing takes no lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

/// A histogram with shared finite upper bounds and an implicit `+Inf`
/// bucket. Clones share their values (as prometheus-client's do), so a reload
/// can hand a series on.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    /// Finite, sorted upper bounds in seconds (shared, not copied).
    bounds: Arc<[f64]>,
    /// One allocation: the sum of observations (as `f64` bits), then the
    /// per-bucket (not cumulative) counts, the last one `+Inf`.
    cells: Arc<[AtomicU64]>,
}

impl AtomicHistogram {
    /// An empty histogram over `bounds` (finite, sorted ascending).
    pub fn new(bounds: Arc<[f64]>) -> Self {
        let cells = std::iter::once(AtomicU64::new(0f64.to_bits()))
            .chain((0..=bounds.len()).map(|_| AtomicU64::new(0)))
            .collect();
        Self { bounds, cells }
    }

    /// Records `v`: the first bucket whose bound is `>= v` (NaN: `+Inf`).
    pub fn observe(&self, v: f64) {
        let i = bucket(&self.bounds, v);
        self.cells[1 + i].fetch_add(1, Ordering::Relaxed);
        add_f64(&self.cells[0], v);
    }

    /// Whether both share one set of values.
    #[cfg(test)]
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cells, &other.cells)
    }
}

/// The bucket prometheus-client's `Histogram` counts `v` in: the first bound
/// `>= v`, else `+Inf` (also for NaN).
fn bucket(bounds: &[f64], v: f64) -> usize {
    bounds.iter().position(|b| *b >= v).unwrap_or(bounds.len())
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
        Some((f64::from_bits(s) + v).to_bits())
    });
}

/// `(upper bound, count)` per bucket as prometheus-client's encoder takes
/// them, and the total count.
fn buckets(bounds: &[f64], counts: &[AtomicU64]) -> (Vec<(f64, u64)>, u64) {
    let mut count = 0;
    let b = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let n = c.load(Ordering::Relaxed);
            count += n;
            (bounds.get(i).copied().unwrap_or(f64::INFINITY), n)
        })
        .collect();
    (b, count)
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (buckets, count) = buckets(&self.bounds, &self.cells[1..]);
        let sum = f64::from_bits(self.cells[0].load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A run's W3C trace id held inline (no allocation per exemplar): up to 32
/// bytes, which every id wayprobe makes is (32 hex digits). Encodes as the
/// exemplar label set `{trace_id="..."}`.
#[derive(Debug, Clone, Copy)]
pub struct TraceId {
    len: u8,
    id: [u8; 32],
}

impl TraceId {
    /// `id`, if it fits (32 bytes at most); a longer one gets no exemplar.
    pub fn new(id: &str) -> Option<Self> {
        let b = id.as_bytes();
        let mut t = Self {
            len: u8::try_from(b.len()).ok().filter(|n| *n <= 32)?,
            id: [0; 32],
        };
        t.id[..b.len()].copy_from_slice(b);
        Some(t)
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        // A whole `&str` was copied, so this is always valid UTF-8.
        std::str::from_utf8(&self.id[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl EncodeLabelSet for TraceId {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelSet::encode(&[("trace_id", self.as_str())], encoder)
    }
}

/// Buckets of a [`StepHistogram`] (its bounds are [`super::STEP_BUCKETS`]).
const STEP_CELLS: usize = super::STEP_BUCKETS.len() + 1;

/// The step-duration histogram with the OpenMetrics exemplar of each bucket
/// (the trace id of the last run observed in it), in one allocation: the
/// bounds are the static [`super::STEP_BUCKETS`], counts are atomics, and the
/// exemplars are a short list (one per bucket that got one) under their own
/// lock. prometheus-client's `HistogramWithExemplars` held two locks, a copy
/// of the bounds, a map and two allocations per exemplar; its `Exemplar`
/// cannot be made outside that crate, so [`StepHistogram::write_text`]
/// writes the series the way its encoder does (a unit test compares them).
#[derive(Debug, Clone)]
pub struct StepHistogram(Arc<StepInner>);

#[derive(Debug)]
struct StepInner {
    /// Sum of observations, as `f64` bits.
    sum: AtomicU64,
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    counts: [AtomicU64; STEP_CELLS],
    /// At most one per bucket, in the order buckets first got one.
    exemplars: Mutex<Vec<StepExemplar>>,
}

#[derive(Debug, Clone, Copy)]
struct StepExemplar {
    bucket: u8,
    trace_id: TraceId,
    value: f64,
    /// Seconds since the Unix epoch; NaN when the observation had no time.
    at: f64,
}

impl Default for StepHistogram {
    fn default() -> Self {
        Self(Arc::new(StepInner {
            sum: AtomicU64::new(0f64.to_bits()),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            exemplars: Mutex::new(Vec::new()),
        }))
    }
}

impl StepHistogram {
    /// Records `v` (seconds), with the run's trace id as the bucket's
    /// exemplar when there is one, stamped `at`.
    pub fn observe(&self, v: f64, trace_id: Option<TraceId>, at: Option<SystemTime>) {
        let i = bucket(super::STEP_BUCKETS, v);
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        add_f64(&self.0.sum, v);
        let Some(trace_id) = trace_id else { return };
        let e = StepExemplar {
            bucket: i as u8,
            trace_id,
            value: v,
            at: at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(f64::NAN, |d| d.as_secs_f64()),
        };
        let mut ex = self.0.exemplars.lock().unwrap_or_else(|p| p.into_inner());
        match ex.iter_mut().find(|x| x.bucket == e.bucket) {
            Some(slot) => *slot = e,
            None => {
                // Most steps land in one or two buckets: grow by one.
                ex.reserve_exact(1);
                ex.push(e);
            }
        }
    }

    /// Writes the series' `_sum`, `_count` and `_bucket` lines of family
    /// `name`, each with `labels` (already encoded: `k="v",...`), exactly
    /// as prometheus-client encodes a `HistogramWithExemplars`.
    pub fn write_text(&self, w: &mut dyn Write, name: &str, labels: &str) -> std::fmt::Result {
        // Copies, so no lock is held while a slow scraper reads.
        let mut exemplars = [None; STEP_CELLS];
        for e in self
            .0
            .exemplars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            exemplars[usize::from(e.bucket)] = Some(*e);
        }
        let counts: [u64; STEP_CELLS] =
            std::array::from_fn(|i| self.0.counts[i].load(Ordering::Relaxed));
        let sum = f64::from_bits(self.0.sum.load(Ordering::Relaxed));
        let mut f = dtoa::Buffer::new();
        writeln!(w, "{name}_sum{{{labels}}} {}", f.format(sum))?;
        writeln!(w, "{name}_count{{{labels}}} {}", counts.iter().sum::<u64>())?;
        let mut cumulative = 0;
        for (i, (n, e)) in counts.iter().zip(exemplars).enumerate() {
            cumulative += n;
            let le = match super::STEP_BUCKETS.get(i) {
                Some(b) => f.format(*b),
                None => "+Inf",
            };
            write!(w, "{name}_bucket{{le=\"{le}\",{labels}}} {cumulative}")?;
            if let Some(e) = e {
                w.write_str(" # {trace_id=\"")?;
                write_label_value(w, e.trace_id.as_str())?;
                write!(w, "\"}} {}", f.format(e.value))?;
                if !e.at.is_nan() {
                    write!(w, " {}", f.format(e.at))?;
                }
            }
            w.write_str("\n")?;
        }
        Ok(())
    }
}

/// A label value escaped as prometheus-client escapes it (`\\`, `\"`, `\n`).
pub fn write_label_value(w: &mut dyn Write, v: &str) -> std::fmt::Result {
    let mut last = 0;
    for (i, b) in v.bytes().enumerate() {
        let esc = match b {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            b'\n' => "\\n",
            _ => continue,
        };
        w.write_str(&v[last..i])?;
        w.write_str(esc)?;
        last = i + 1;
    }
    w.write_str(&v[last..])
}

/// One counter per failure reason of a step, shared by clones. The counters
/// are allocated at the first failure: most steps never fail, and 19
/// counters each for 10,000 steps were 1.5 MB of zeros.
#[derive(Debug, Clone)]
pub struct ReasonCounters {
    n: usize,
    cells: Arc<OnceLock<Box<[AtomicU64]>>>,
}

impl ReasonCounters {
    /// `n` counters at zero.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            cells: Arc::default(),
        }
    }

    /// Adds one to counter `i`.
    pub fn inc(&self, i: usize) {
        if i >= self.n {
            return;
        }
        let cells = self
            .cells
            .get_or_init(|| (0..self.n).map(|_| AtomicU64::new(0)).collect());
        cells[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Each counter's value, in order.
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        let cells = self.cells.get();
        (0..self.n).map(move |i| cells.map_or(0, |c| c[i].load(Ordering::Relaxed)))
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

    /// The step histogram writes its series exactly as prometheus-client
    /// encodes a `HistogramWithExemplars` with the same observations:
    /// exemplars in several buckets (the last one per bucket wins), one
    /// without a time, one in `+Inf`, and label values that need escaping.
    #[test]
    fn step_histogram_writes_exactly_like_prometheus_client() {
        use prometheus_client::metrics::exemplar::HistogramWithExemplars;
        use prometheus_client::metrics::family::Family;
        use std::time::Duration;
        let at = |ms: u64| Some(UNIX_EPOCH + Duration::from_millis(ms));
        let obs = [
            (
                0.001,
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                at(1_800_000_000_040),
            ),
            (0.07, Some("00f067aa0ba902b7a3ce929d0e0e4736"), None),
            (0.0700001, Some("a\"b\\c"), at(1_800_000_001_123)),
            (3.0, None, at(1_800_000_002_000)),
            (
                120.0,
                Some("ffffffffffffffffffffffffffffffff"),
                at(1_800_000_003_500),
            ),
            (
                0.002,
                Some("0123456789abcdef0123456789abcdef"),
                at(1_800_000_004_000),
            ),
        ];
        let ours = StepHistogram::default();
        type Theirs = Family<Vec<(String, String)>, HistogramWithExemplars<TraceId>>;
        let theirs: Theirs = Family::new_with_constructor(|| {
            HistogramWithExemplars::new(super::super::STEP_BUCKETS.iter().copied())
        });
        let labels: Vec<(String, String)> =
            [("journey", "j\"1\n"), ("location", "l"), ("step", "s\\")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        for (v, id, t) in obs {
            let id = id.and_then(TraceId::new);
            ours.observe(v, id, t);
            theirs.get_or_create(&labels).observe(v, id, t);
        }
        let mut r = Registry::default();
        r.register("d", "d", theirs);
        let mut want = String::new();
        prometheus_client::encoding::text::encode(&mut want, &r).unwrap();
        let want: String = want
            .lines()
            .filter(|l| l.starts_with("d_"))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut enc = String::new();
        for (k, v) in &labels {
            if !enc.is_empty() {
                enc.push(',');
            }
            enc.push_str(k);
            enc.push_str("=\"");
            write_label_value(&mut enc, v).unwrap();
            enc.push('"');
        }
        let mut got = String::new();
        ours.write_text(&mut got, "d", &enc).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.matches(" # {trace_id=").count(), 3, "{got}");
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
