//! The SLI metrics: one long-lived registry, encoded as OpenMetrics text.
//!
//! Journey series live in [`JourneyMetrics`] (written after the registry's
//! own metrics) rather than in prometheus-client `Family`s, because each journey needs its own histogram
//! buckets (every latency-SLO threshold is a bucket boundary) and because a
//! reload must remove exactly the series of journeys and steps that
//! disappeared. Recording a run touches only atomics through an
//! `Arc<JourneySeries>` the scheduler task holds: no lookups, no shared
//! locks (the series with exemplars take their own short write lock).
//!
//! The step-duration histogram and the failed-runs counter carry the run's
//! trace id as an OpenMetrics exemplar (`# {trace_id="..."}`), so a graph
//! leads to the run's trace; the classic text format drops them.
//!
//! Labels are bounded: `journey`, `location`, `step`, `result`, `reason`.
//! User labels appear only on `journey_info`.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::exemplar::CounterWithExemplar;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::journey::Journey;
use crate::outcome::{JourneyOutcome, Reason, RunResult, StepStatus};

mod atomic;
use atomic::{AtomicHistogram, ReasonCounters, StepHistogram, TraceId};

/// Buckets of `journey_duration_seconds`, before the SLO thresholds are added.
pub const JOURNEY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
/// Buckets of `journey_step_duration_seconds`.
pub const STEP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of `wayprobe_schedule_lag_seconds`.
const LAG_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`to_prometheus_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Converts our OpenMetrics exposition to the classic Prometheus text format
/// (for scrapers and tools that do not ask for OpenMetrics, like `promtool
/// check metrics`): counter families are named with their `_total` suffix and
/// the `# EOF` / `# UNIT` lines go.
pub fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut c = TextConverter::default();
    c.push(om, &mut out);
    c.finish(&mut out);
    out
}

/// [`to_prometheus_text`] a piece at a time, for a streamed exposition:
/// feed it whole lines in order ([`TextConverter::push`]), then
/// [`TextConverter::finish`]. The only state between lines is a `# HELP`
/// waiting for its `# TYPE` (whose name it takes).
#[derive(Debug, Default)]
pub struct TextConverter {
    help: Option<String>,
}

impl TextConverter {
    /// Converts whole lines of OpenMetrics text, appending to `out`.
    pub fn push(&mut self, lines: &str, out: &mut String) {
        for line in lines.lines() {
            self.line(line, out);
        }
    }

    /// Writes what is still pending (a `# HELP` without a `# TYPE`).
    pub fn finish(&mut self, out: &mut String) {
        if let Some(h) = self.help.take() {
            out.push_str(&h);
            out.push('\n');
        }
    }

    fn line(&mut self, line: &str, out: &mut String) {
        if line.starts_with("# HELP ") {
            self.finish(out);
            self.help = Some(line.to_string());
            return;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "info" => (name.to_string(), "gauge"),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some(h) = self.help.take() {
                let text = h.splitn(4, ' ').nth(3).unwrap_or("");
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            return;
        }
        self.finish(out);
        if line == "# EOF" || line.starts_with("# UNIT ") {
            return;
        }
        out.push_str(without_exemplar(line));
        out.push('\n');
    }
}

/// A `fmt::Write` that hands the exposition on in pieces of whole lines of
/// about [`EXPOSITION_CHUNK`] bytes (converted to the classic text format
/// on the way when asked), so a scrape of 10,000 journeys never holds the
/// whole 40-odd MB text, let alone a converted copy of it.
pub struct ChunkWriter<F: FnMut(String) -> bool> {
    buf: String,
    convert: Option<TextConverter>,
    sink: F,
    /// The sink refused a piece (the scraper went away): stop encoding.
    closed: bool,
}

/// Bytes of exposition handed on at once by [`ChunkWriter`].
pub const EXPOSITION_CHUNK: usize = 64 * 1024;

impl<F: FnMut(String) -> bool> ChunkWriter<F> {
    /// Hands pieces to `sink` (false from it stops the encoding); with
    /// `classic`, in the classic Prometheus text format.
    pub fn new(classic: bool, sink: F) -> Self {
        Self {
            buf: String::with_capacity(EXPOSITION_CHUNK + 4096),
            convert: classic.then(TextConverter::default),
            sink,
            closed: false,
        }
    }

    fn hand_on(&mut self, upto: usize) {
        let rest = self.buf.split_off(upto);
        let piece = std::mem::replace(&mut self.buf, rest);
        let piece = match &mut self.convert {
            Some(c) => {
                let mut out = String::with_capacity(piece.len());
                c.push(&piece, &mut out);
                out
            }
            None => piece,
        };
        if !piece.is_empty() && !(self.sink)(piece) {
            self.closed = true;
        }
    }

    /// Hands on the rest; false if the sink went away at any point.
    pub fn finish(mut self) -> bool {
        let n = self.buf.len();
        self.hand_on(n);
        if let Some(mut c) = self.convert.take() {
            let mut out = String::new();
            c.finish(&mut out);
            if !out.is_empty() && !(self.sink)(out) {
                self.closed = true;
            }
        }
        !self.closed
    }
}

impl<F: FnMut(String) -> bool> std::fmt::Write for ChunkWriter<F> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.closed {
            return Err(std::fmt::Error);
        }
        self.buf.push_str(s);
        if self.buf.len() >= EXPOSITION_CHUNK
            && let Some(i) = self.buf.rfind('\n')
        {
            self.hand_on(i + 1);
        }
        if self.closed {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// A sample line without its OpenMetrics exemplar (the classic text format
/// has none). Exemplars here only ever hold `trace_id`, so the marker cannot
/// be mistaken for text inside a label value.
fn without_exemplar(line: &str) -> &str {
    match line.rfind(" # {trace_id=\"") {
        Some(i) if !line.starts_with('#') => &line[..i],
        _ => line,
    }
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Bucket boundaries of a journey's duration histogram: defaults plus its
/// latency-SLO thresholds, sorted and de-duplicated.
pub fn journey_buckets(j: &Journey) -> Vec<f64> {
    let mut b: Vec<f64> = JOURNEY_BUCKETS.to_vec();
    for t in j.latency_thresholds() {
        if !b.iter().any(|x| (x - t).abs() < 1e-9) {
            b.push(t);
        }
    }
    b.sort_by(|a, b| a.total_cmp(b));
    b
}

/// [`journey_buckets`], shared: journeys without a latency SLO (most) all
/// get one copy of [`JOURNEY_BUCKETS`].
fn shared_journey_buckets(j: &Journey) -> Arc<[f64]> {
    static DEFAULT: std::sync::LazyLock<Arc<[f64]>> =
        std::sync::LazyLock::new(|| Arc::from(JOURNEY_BUCKETS));
    let b = journey_buckets(j);
    if *b == **DEFAULT {
        DEFAULT.clone()
    } else {
        b.into()
    }
}

/// `last_success` of a journey that has not finished a run yet. Before its
/// first run a journey has no last result, so `journey_last_success` is
/// absent rather than 0 (the Prometheus convention for an unknown value: no
/// sample), and an alert on `journey_last_success == 0` does not fire at
/// start-up. (`journey_last_run_timestamp_seconds` stays at 0 until then:
/// the liveness rules read 0 as "no run yet".)
const NOT_RUN: i64 = -1;

/// Series of one step.
#[derive(Debug)]
pub struct StepSeries {
    name: String,
    /// With the run's trace id as exemplar.
    duration: StepHistogram,
    /// One counter per reason; only reasons that occurred (non-zero) are exposed.
    failures: ReasonCounters,
}

impl StepSeries {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            duration: StepHistogram::default(),
            failures: ReasonCounters::new(Reason::ALL.len()),
        }
    }

    fn share(&self) -> Self {
        Self {
            name: self.name.clone(),
            duration: self.duration.clone(),
            failures: self.failures.clone(),
        }
    }
}

/// The plain counters and gauges of one journey, in one allocation (shared
/// by the series sets a reload hands them on to). Encoded as
/// prometheus-client's `ConstCounter`/`ConstGauge`, which write what its
/// `Counter`/`Gauge` write.
#[derive(Debug)]
struct JourneyCells {
    runs_ok: AtomicU64,
    /// First attempts by result (see [`result_index`]).
    first: [AtomicU64; 2],
    skipped: AtomicU64,
    /// `f64` bits of the Unix time the last run finished.
    last_run: AtomicU64,
    /// 1, 0, or [`NOT_RUN`].
    last_success: AtomicI64,
}

impl Default for JourneyCells {
    fn default() -> Self {
        Self {
            runs_ok: AtomicU64::new(0),
            first: Default::default(),
            skipped: AtomicU64::new(0),
            last_run: AtomicU64::new(0f64.to_bits()),
            // Absent until the first run (see `NOT_RUN`).
            last_success: AtomicI64::new(NOT_RUN),
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Every series of one journey at this location.
#[derive(Debug)]
pub struct JourneySeries {
    name: String,
    labels: Vec<(String, String)>,
    buckets: Arc<[f64]>,
    cells: Arc<JourneyCells>,
    runs_failed: CounterWithExemplar<TraceId>,
    duration: [AtomicHistogram; 2],
    steps: Vec<StepSeries>,
    /// Failures of `finally:` steps by reason (kept apart: they never
    /// change the run's result or its SLIs).
    finally: Vec<(String, ReasonCounters)>,
}

fn result_index(r: RunResult) -> usize {
    match r {
        RunResult::Success => 0,
        RunResult::Failure => 1,
    }
}

const RESULTS: [&str; 2] = ["success", "failure"];

impl JourneySeries {
    fn new(j: &Journey) -> Self {
        let buckets = shared_journey_buckets(j);
        Self {
            name: j.name.clone(),
            labels: j
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cells: Arc::default(),
            runs_failed: CounterWithExemplar::default(),
            duration: [
                AtomicHistogram::new(buckets.clone()),
                AtomicHistogram::new(buckets.clone()),
            ],
            buckets,
            steps: j.steps.iter().map(|s| StepSeries::new(&s.name)).collect(),
            finally: j
                .finally
                .iter()
                .map(|s| (s.name.clone(), ReasonCounters::new(Reason::ALL.len())))
                .collect(),
        }
    }

    /// Whether the journey has finished a run since the prober started.
    fn has_run(&self) -> bool {
        self.cells.last_success.load(Ordering::Relaxed) != NOT_RUN
    }

    /// A series set for `j` that keeps every value of `old` that still applies:
    /// runs, gauges, and the histograms of steps that still exist.
    fn reuse(j: &Journey, old: &JourneySeries) -> Self {
        let mut new = Self::new(j);
        new.cells = old.cells.clone();
        new.runs_failed = old.runs_failed.clone();
        if new.buckets == old.buckets {
            new.duration = old.duration.clone();
        }
        for s in &mut new.steps {
            if let Some(o) = old.steps.iter().find(|o| o.name == s.name) {
                *s = o.share();
            }
        }
        for (name, c) in &mut new.finally {
            if let Some((_, o)) = old.finally.iter().find(|(o, _)| o == name) {
                *c = o.clone();
            }
        }
        new
    }

    /// Records a finished run.
    pub fn record(&self, o: &JourneyOutcome) {
        let i = result_index(o.result);
        let ended = o.started_at.checked_add(o.duration);
        let trace_id = o.trace_id.as_deref().and_then(TraceId::new);
        match o.result {
            RunResult::Success => inc(&self.cells.runs_ok),
            RunResult::Failure => {
                self.runs_failed.inc_by(1, trace_id, ended);
            }
        }
        // Without browser start-up: SLIs measure the target, not the prober.
        self.duration[i].observe(o.sli_duration().as_secs_f64());
        for (series, step) in self.steps.iter().zip(&o.steps) {
            if step.status == StepStatus::Skipped {
                continue;
            }
            series
                .duration
                .observe(step.duration.as_secs_f64(), trace_id, ended);
            if let Some(f) = &step.failure {
                let idx = Reason::ALL.iter().position(|r| *r == f.reason).unwrap_or(0);
                series.failures.inc(idx);
            }
        }
        for ((_, counters), step) in self.finally.iter().zip(&o.finally) {
            if let Some(f) = &step.failure {
                let idx = Reason::ALL.iter().position(|r| *r == f.reason).unwrap_or(0);
                counters.inc(idx);
            }
        }
        let ts = ended
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        self.cells.last_run.store(ts.to_bits(), Ordering::Relaxed);
        self.cells
            .last_success
            .store(i64::from(o.result == RunResult::Success), Ordering::Relaxed);
    }

    /// Counts the first attempt of a run (its result before any retry).
    pub fn record_first(&self, r: RunResult) {
        inc(&self.cells.first[result_index(r)]);
    }

    /// Counts a tick skipped because the previous run was still going.
    pub fn skip(&self) {
        inc(&self.cells.skipped);
    }
}

/// The series of every journey, encoded after the registry's own metrics.
#[derive(Debug)]
pub struct JourneyMetrics {
    location: String,
    journeys: RwLock<BTreeMap<String, Arc<JourneySeries>>>,
}

impl JourneyMetrics {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<JourneySeries>>> {
        self.journeys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes every journey family, in the order the exposition has always
    /// had: those before the step histograms through prometheus-client,
    /// the step histograms (which carry exemplars prometheus-client cannot
    /// be given from outside) directly, then the rest through
    /// prometheus-client again, all from one copy of the series handles
    /// (not the lock: a streamed scrape to a slow reader must never hold up
    /// a reload).
    fn encode_to(&self, w: &mut impl std::fmt::Write) -> std::fmt::Result {
        let snap = Arc::new(Snapshot {
            journeys: self.read().values().cloned().collect(),
            location: self.location.clone(),
        });
        let part = |before: bool| {
            let mut r = Registry::default();
            r.register_collector(Box::new(Families {
                snap: snap.clone(),
                before,
            }));
            r
        };
        prometheus_client::encoding::text::encode_registry(w, &part(true))?;
        snap.encode_step_durations(w)?;
        prometheus_client::encoding::text::encode_registry(w, &part(false))
    }
}

/// The journeys' series handles at one scrape.
#[derive(Debug)]
struct Snapshot {
    journeys: Vec<Arc<JourneySeries>>,
    location: String,
}

/// Half of the journey families of one scrape: those before the step
/// histograms (`before`) or those after them.
#[derive(Debug)]
struct Families {
    snap: Arc<Snapshot>,
    before: bool,
}

/// Writes one metric family: its descriptor, then the samples `body` adds.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    body: impl FnOnce(&mut prometheus_client::encoding::MetricEncoder<'_>) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut f = encoder.encode_descriptor(name, help, None, kind)?;
    body(&mut f)
}

fn journey_labels<'a>(s: &'a JourneySeries, loc: &'a str) -> [(&'static str, &'a str); 2] {
    [("journey", s.name.as_str()), ("location", loc)]
}

const STEP_DURATION: &str = "journey_step_duration_seconds";

impl Snapshot {
    /// `journey_step_duration_seconds`, as prometheus-client would write it.
    fn encode_step_durations(&self, w: &mut impl std::fmt::Write) -> std::fmt::Result {
        writeln!(
            w,
            "# HELP {STEP_DURATION} Wall time of journey steps that ran.\n# TYPE {STEP_DURATION} histogram"
        )?;
        let mut labels = String::new();
        for s in &self.journeys {
            for st in &s.steps {
                labels.clear();
                for (k, v) in [
                    ("journey", s.name.as_str()),
                    ("location", self.location.as_str()),
                    ("step", st.name.as_str()),
                ] {
                    if !labels.is_empty() {
                        labels.push(',');
                    }
                    labels.push_str(k);
                    labels.push_str("=\"");
                    atomic::write_label_value(&mut labels, v)?;
                    labels.push('"');
                }
                st.duration.write_text(w, STEP_DURATION, &labels)?;
            }
        }
        Ok(())
    }
}

type Encoder<'a, 'b> = &'a mut prometheus_client::encoding::MetricEncoder<'b>;

impl Families {
    fn before_steps(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let journeys = &self.snap.journeys;
        let loc = self.snap.location.as_str();
        // The per-result families: one series per journey and result.
        let per_result = |f: Encoder<'_, '_>,
                          pick: &dyn Fn(
            &JourneySeries,
            usize,
            prometheus_client::encoding::MetricEncoder<'_>,
        ) -> std::fmt::Result|
         -> std::fmt::Result {
            for s in journeys.iter() {
                for (i, r) in RESULTS.iter().enumerate() {
                    let labels = [
                        ("journey", s.name.as_str()),
                        ("location", loc),
                        ("result", r),
                    ];
                    pick(s, i, f.encode_family(&labels.as_slice())?)?;
                }
            }
            Ok(())
        };
        family(
            encoder,
            "journey_runs",
            "Finished journey runs by result.",
            MetricType::Counter,
            |f| {
                per_result(f, &|s, i, e| {
                    if i == 0 {
                        ConstCounter::new(load(&s.cells.runs_ok)).encode(e)
                    } else {
                        s.runs_failed.encode(e)
                    }
                })
            },
        )?;
        family(
            encoder,
            "journey_first_attempts",
            "First attempts of journey runs by result (before retries; without retries, the run).",
            MetricType::Counter,
            |f| {
                per_result(f, &|s, i, e| {
                    ConstCounter::new(load(&s.cells.first[i])).encode(e)
                })
            },
        )?;
        family(
            encoder,
            "journey_duration_seconds",
            "Wall time of whole journey runs.",
            MetricType::Histogram,
            |f| per_result(f, &|s, i, e| s.duration[i].encode(e)),
        )
    }

    fn after_steps(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let journeys = &self.snap.journeys;
        let loc = self.snap.location.as_str();
        family(
            encoder,
            "journey_step_failures",
            "Failed steps by bounded reason.",
            MetricType::Counter,
            |f| {
                for s in journeys.iter() {
                    for st in &s.steps {
                        // Only reasons that occurred: steps x reasons would be too many series.
                        for (reason, n) in Reason::ALL.iter().zip(st.failures.values()) {
                            if n > 0 {
                                let labels = [
                                    ("journey", s.name.as_str()),
                                    ("location", loc),
                                    ("step", st.name.as_str()),
                                    ("reason", reason.as_str()),
                                ];
                                ConstCounter::new(n)
                                    .encode(f.encode_family(&labels.as_slice())?)?;
                            }
                        }
                    }
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "journey_finally_step_failures",
            "Failed `finally:` (cleanup) steps by bounded reason; they do not change the run's result.",
            MetricType::Counter,
            |f| {
                for s in journeys {
                    for (step, counters) in &s.finally {
                        for (reason, n) in Reason::ALL.iter().zip(counters.values()) {
                            if n > 0 {
                                let labels = [
                                    ("journey", s.name.as_str()),
                                    ("location", loc),
                                    ("step", step.as_str()),
                                    ("reason", reason.as_str()),
                                ];
                                ConstCounter::new(n)
                                    .encode(f.encode_family(&labels.as_slice())?)?;
                            }
                        }
                    }
                }
                Ok(())
            },
        )?;
        // Per-journey gauges: one series per journey (`ran`: only journeys
        // that have finished a run, see `NOT_RUN`).
        let per_journey = |f: Encoder<'_, '_>,
                           ran: bool,
                           pick: &dyn Fn(
            &JourneySeries,
            prometheus_client::encoding::MetricEncoder<'_>,
        ) -> std::fmt::Result|
         -> std::fmt::Result {
            for s in journeys.iter().filter(|s| !ran || s.has_run()) {
                pick(s, f.encode_family(&journey_labels(s, loc).as_slice())?)?;
            }
            Ok(())
        };
        family(
            encoder,
            "journey_last_run_timestamp_seconds",
            "Unix time the last run of the journey finished.",
            MetricType::Gauge,
            |f| {
                per_journey(f, false, &|s, e| {
                    ConstGauge::new(f64::from_bits(load(&s.cells.last_run))).encode(e)
                })
            },
        )?;
        family(
            encoder,
            "journey_last_success",
            "Whether the last run of the journey succeeded (1) or failed (0); absent before its first run.",
            MetricType::Gauge,
            |f| {
                per_journey(f, true, &|s, e| {
                    ConstGauge::new(s.cells.last_success.load(Ordering::Relaxed)).encode(e)
                })
            },
        )?;
        family(
            encoder,
            "journey_info",
            "Journey metadata; user labels live only here.",
            MetricType::Gauge,
            |f| {
                let one = ConstGauge::new(1i64);
                for s in journeys.iter() {
                    let mut labels: Vec<(&str, &str)> = journey_labels(s, loc).to_vec();
                    labels.extend(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    one.encode(f.encode_family(&labels.as_slice())?)?;
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "wayprobe_runs_skipped",
            "Scheduled runs skipped because the previous run was still going.",
            MetricType::Counter,
            |f| {
                for s in journeys.iter() {
                    let labels = [("journey", s.name.as_str())];
                    ConstCounter::new(load(&s.cells.skipped))
                        .encode(f.encode_family(&labels.as_slice())?)?;
                }
                Ok(())
            },
        )
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.before {
            self.before_steps(&mut encoder)
        } else {
            self.after_steps(&mut encoder)
        }
    }
}

/// The prober's registry and its metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    journeys: Arc<JourneyMetrics>,
    /// `wayprobe_journeys_loaded`.
    pub loaded: Gauge,
    /// `wayprobe_config_last_reload_successful`.
    pub reload_ok: Gauge,
    /// `wayprobe_config_last_reload_success_timestamp_seconds`.
    pub reload_ts: F64Gauge,
    /// `wayprobe_schedule_lag_seconds`.
    pub lag: Histogram,
    /// `wayprobe_runs_in_flight`.
    pub in_flight: Gauge,
    /// `wayprobe_webdriver_up`.
    pub webdriver_up: Gauge,
    /// `wayprobe_slo_rules_fingerprint` (see [`crate::rules::fingerprint`]).
    pub slo_rules_fingerprint: Gauge,
}

impl Metrics {
    /// A registry for probes run at `location`.
    pub fn new(location: &str) -> Self {
        let mut registry = Registry::default();
        let journeys = Arc::new(JourneyMetrics {
            location: location.to_string(),
            journeys: RwLock::new(BTreeMap::new()),
        });
        let build = Gauge::<i64>::default();
        build.set(1);
        let info =
            prometheus_client::metrics::family::Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![(
            "version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )])
        .set(1);
        registry.register("wayprobe_build_info", "wayprobe version", info);
        let loaded = Gauge::default();
        registry.register(
            "wayprobe_journeys_loaded",
            "Journeys currently scheduled",
            loaded.clone(),
        );
        let reload_ok = Gauge::default();
        registry.register(
            "wayprobe_config_last_reload_successful",
            "Whether the last journey (re)load succeeded",
            reload_ok.clone(),
        );
        let reload_ts = F64Gauge::default();
        registry.register(
            "wayprobe_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful journey (re)load",
            reload_ts.clone(),
        );
        let lag = Histogram::new(LAG_BUCKETS.iter().copied());
        registry.register(
            "wayprobe_schedule_lag_seconds",
            "How late runs start after their scheduled time",
            lag.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "wayprobe_runs_in_flight",
            "Journey runs in progress",
            in_flight.clone(),
        );
        let webdriver_up = Gauge::default();
        registry.register(
            "wayprobe_webdriver_up",
            "Whether a WebDriver endpoint answers (1) or not (0)",
            webdriver_up.clone(),
        );
        let slo_rules_fingerprint = Gauge::default();
        registry.register(
            crate::rules::fingerprint::METRIC,
            "Fingerprint of the SLO rules the loaded journeys imply; the rules made by `wayprobe rules` alert when theirs differs",
            slo_rules_fingerprint.clone(),
        );
        Self {
            registry,
            journeys,
            loaded,
            reload_ok,
            reload_ts,
            lag,
            in_flight,
            webdriver_up,
            slo_rules_fingerprint,
        }
    }

    /// Registers the span exporter's counters:
    /// `wayprobe_trace_spans_exported_total` and
    /// `wayprobe_trace_spans_dropped_total` (queue full, collector down,
    /// refusing or too slow).
    pub fn register_trace_export(&mut self, c: &crate::otel::ExportCounters) {
        self.registry.register(
            "wayprobe_trace_spans_exported",
            "Spans the OTLP collector accepted",
            c.exported.clone(),
        );
        self.registry.register(
            "wayprobe_trace_spans_dropped",
            "Spans not exported: queue full, collector unreachable, refusing or too slow",
            c.dropped.clone(),
        );
    }

    /// Makes the series match `journeys`: series of journeys and steps that
    /// disappeared are removed, new ones start at 0, the rest keep their values.
    /// Returns each journey's series handle, in the same order.
    pub fn set_journeys<J: Borrow<Journey>>(&self, journeys: &[J]) -> Vec<Arc<JourneySeries>> {
        let mut map = self
            .journeys
            .journeys
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        let mut handles = Vec::with_capacity(journeys.len());
        for j in journeys {
            let j: &Journey = j.borrow();
            let series = match map.get(&j.name) {
                Some(old) if same_shape(j, old) => old.clone(),
                Some(old) => Arc::new(JourneySeries::reuse(j, old)),
                None => Arc::new(JourneySeries::new(j)),
            };
            next.insert(j.name.clone(), series.clone());
            handles.push(series);
        }
        *map = next;
        self.loaded.set(journeys.len() as i64);
        handles
    }

    /// The current series of a journey.
    pub fn series(&self, journey: &str) -> Option<Arc<JourneySeries>> {
        self.journeys.read().get(journey).cloned()
    }

    /// Sets `wayprobe_slo_rules_fingerprint` from the journeys just loaded.
    pub fn set_rules_fingerprint(&self, journeys: &[Journey]) {
        // Below 2^48 (see crate::rules::fingerprint), so it fits an i64.
        let fp = crate::rules::fingerprint::fingerprint(journeys);
        self.slo_rules_fingerprint.set(fp as i64);
    }

    /// Marks a (re)load as successful or not.
    pub fn reloaded(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.reload_ts.set(now);
        }
    }

    /// The OpenMetrics exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        if self.encode_to(&mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Writes the OpenMetrics exposition to `w` (a [`ChunkWriter`] streams
    /// it); fails only when `w` does.
    pub fn encode_to(&self, w: &mut impl std::fmt::Write) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(w, &self.registry)?;
        // The journeys' families come last, as a registered collector's would.
        self.journeys.encode_to(w)?;
        prometheus_client::encoding::text::encode_eof(w)
    }

    /// Streams the exposition (the classic text format with `classic`) to
    /// `tx` in pieces of about [`EXPOSITION_CHUNK`] bytes, waiting for the
    /// scraper to take each one, so a scrape holds a few pieces however
    /// many journeys there are. Returns false when the receiver went away.
    ///
    /// Waiting is safe because the encoder holds nothing a probe records
    /// with while it waits: the journeys' series are read through copied
    /// handles, their counters and histograms are atomics (a prometheus-client
    /// histogram would hold its lock across the wait and stall the probes of
    /// that step for as long as the scraper does not read).
    pub fn encode_streamed(&self, classic: bool, tx: &tokio::sync::mpsc::Sender<String>) -> bool {
        let mut w = ChunkWriter::new(classic, |piece| tx.blocking_send(piece).is_ok());
        self.encode_to(&mut w).is_ok() && w.finish()
    }
}

fn same_shape(j: &Journey, s: &JourneySeries) -> bool {
    *s.buckets == *journey_buckets(j)
        && s.steps.len() == j.steps.len()
        && s.steps.iter().zip(&j.steps).all(|(a, b)| a.name == b.name)
        && s.finally.len() == j.finally.len()
        && s.finally
            .iter()
            .zip(&j.finally)
            .all(|((a, _), b)| *a == b.name)
        && s.labels.len() == j.labels.len()
        && s.labels
            .iter()
            .zip(&j.labels)
            .all(|((a, b), (c, d))| a == c && b == d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::journey::{LoadOptions, load::load_sources};
    use crate::outcome::{Failure, StepOutcome};
    use std::time::{Duration, SystemTime};

    fn journeys(n: usize) -> Vec<Journey> {
        let sources = (0..n)
            .map(|i| {
                SourceFile::new(
                    format!("j{i}.yaml"),
                    format!("name: j{i}\nsteps:\n  - name: s\n    http: {{url: \"http://127.0.0.1:9/\"}}\n"),
                )
            })
            .collect();
        load_sources(sources, &LoadOptions::default(), Vec::new())
            .unwrap_or_else(|_| panic!("valid journeys"))
            .journeys
    }

    fn failed_run(journey: &str) -> JourneyOutcome {
        JourneyOutcome {
            attempts: 1,
            journey: journey.into(),
            result: RunResult::Failure,
            started_at: SystemTime::now(),
            duration: Duration::from_millis(5),
            steps: vec![StepOutcome {
                status: StepStatus::Failed,
                failure: Some(Failure::new(Reason::Status, "boom")),
                ..StepOutcome::skipped("s", "http")
            }],
            finally: Vec::new(),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            trace_url: None,
        }
    }

    /// A scraper that stops reading holds nothing the probes need: while its
    /// scrape is stuck, every journey's run is recorded and a reload swaps
    /// the series (with the encoder waiting on the scraper under the
    /// registry's locks, both would wait for it).
    #[test]
    fn a_stalled_scrape_never_holds_up_recording_or_reloading() {
        let metrics = Arc::new(Metrics::new("test"));
        let js = journeys(300);
        let series = metrics.set_journeys(&js);
        for (s, j) in series.iter().zip(&js) {
            s.record(&failed_run(&j.name));
        }
        // The scraper reads until the step histograms begin, then stops:
        // the encoder is then among them (each one behind its lock).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
        let m = metrics.clone();
        let encoder = std::thread::spawn(move || m.encode_streamed(true, &tx));
        let mut text = String::new();
        while !text.contains("journey_step_duration_seconds_bucket") {
            text.push_str(&rx.blocking_recv().expect("the step histograms"));
        }
        let (done_tx, done) = std::sync::mpsc::channel();
        let m = metrics.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                for (s, j) in series.iter().zip(&js) {
                    s.record(&failed_run(&j.name));
                }
                m.set_journeys(&js);
            }
            let _ = done_tx.send(());
        });
        // A bound for a hang, not a timing: the work above takes milliseconds.
        assert!(
            done.recv_timeout(Duration::from_secs(60)).is_ok(),
            "recording or reloading waited for a stalled scraper"
        );
        // The exposition is whole once the scraper reads again.
        while let Some(piece) = rx.blocking_recv() {
            text.push_str(&piece);
        }
        assert!(encoder.join().unwrap());
        assert!(text.len() > 4 * EXPOSITION_CHUNK, "{} bytes", text.len());
        assert!(
            text.contains("journey_runs_total{journey=\"j299\""),
            "{text:.300}"
        );
    }
}
