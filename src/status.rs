//! What `serve` knows about each journey, for the status page and the JSON
//! API, and the one place where a finished run is logged, counted and kept.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Serialize;

use crate::journey::Journey;
use crate::metrics::JourneySeries;
use crate::outcome::{JourneyOutcome, RunResult};

/// How many recent failures are kept per journey.
pub const FAILURE_HISTORY: usize = 10;

/// One remembered failure. Kept compact: up to [`FAILURE_HISTORY`] of
/// them per journey, for thousands of journeys; a step name and message
/// that repeat the newer record's share its text.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    /// When the run started.
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    /// The failing step.
    #[serde(serialize_with = "ser_shared")]
    pub step: Arc<str>,
    /// The bounded reason.
    pub reason: &'static str,
    /// The redacted message.
    #[serde(serialize_with = "ser_shared")]
    pub message: Arc<str>,
    /// A short redacted excerpt of the response body (at most
    /// [`EXCERPT_CHARS`] characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<Box<str>>,
    /// Saved artifacts (browser screenshots), as paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// The run's W3C trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Box<str>>,
    /// The trace in a tracing UI (`--trace-url-template`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<Box<str>>,
}

/// Characters of a response excerpt a [`FailureRecord`] keeps.
pub const EXCERPT_CHARS: usize = 160;

impl FailureRecord {
    /// The failure of `step` in the run `o`; `newer` is the record before
    /// it, whose text it shares when it is the same.
    fn of(
        o: &JourneyOutcome,
        step: &crate::outcome::StepOutcome,
        newer: Option<&FailureRecord>,
    ) -> Self {
        let f = step.failure.as_ref();
        let share = |text: &str, old: Option<&Arc<str>>| match old {
            Some(old) if **old == *text => old.clone(),
            _ => Arc::from(text),
        };
        Self {
            at: o.started_at,
            step: share(&step.name, newer.map(|n| &n.step)),
            reason: f.map_or("", |f| f.reason.as_str()),
            message: share(
                f.map_or("", |f| f.message.as_str()),
                newer.map(|n| &n.message),
            ),
            excerpt: f.and_then(|f| {
                f.excerpt
                    .as_deref()
                    .map(|x| crate::redact::excerpt(x, EXCERPT_CHARS).into_boxed_str())
            }),
            artifacts: f.map(|f| f.artifacts.clone()).unwrap_or_default(),
            trace_id: o.trace_id.as_deref().map(Box::from),
            trace_url: o.trace_url.as_deref().map(Box::from),
        }
    }
}

fn ser_shared<S: serde::Serializer>(t: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t)
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
}

/// The state of one journey. Kept behind an `Arc`: readers share it, and a
/// recorded run changes it in place unless a reader still holds it.
#[derive(Debug, Clone)]
pub struct JourneyStatus {
    /// The journey as loaded.
    pub journey: Arc<Journey>,
    /// The last finished run (shared: a run recorded while a page is being
    /// rendered copies this journey's state without copying its outcome).
    pub last: Option<Arc<JourneyOutcome>>,
    /// Recent failures, newest first.
    pub failures: VecDeque<FailureRecord>,
    /// Runs since start-up.
    pub runs: u64,
    /// Successful runs since start-up.
    pub successes: u64,
    /// Runs that failed their first attempt and passed on a retry.
    pub passed_after_retry: u64,
    /// Attempts of the last run (1 = no retry).
    pub last_attempts: u32,
    /// Runs whose `finally:` (cleanup) steps failed since start-up.
    pub cleanup_failures: u64,
    /// The latest failed `finally:` step (it did not fail its run); boxed,
    /// as most journeys never have one.
    pub last_cleanup_failure: Option<Box<FailureRecord>>,
    /// Per-minute counts behind the SLO views (shared, not copied per
    /// snapshot); made at the first run of a journey with SLOs (the views of
    /// a journey without SLOs are empty whatever was counted).
    pub slo_log: Option<Arc<std::sync::Mutex<crate::slo_view::RunLog>>>,
}

impl JourneyStatus {
    /// The journey's SLOs as this prober sees them now.
    pub fn slo_views(&self, since: SystemTime) -> Vec<crate::slo_view::SloView> {
        let now = SystemTime::now();
        match &self.slo_log {
            Some(log) => {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .views(&self.journey, now, since)
            }
            None => crate::slo_view::RunLog::default().views(&self.journey, now, since),
        }
    }

    /// `waiting`, `passing`, `slow` (passed, but over a latency SLO's
    /// threshold) or `failing`.
    pub fn state(&self) -> &'static str {
        match &self.last {
            None => "waiting",
            Some(o) if o.result != RunResult::Success => "failing",
            Some(o) if crate::slo_view::is_slow(&self.journey, o) => "slow",
            Some(_) => "passing",
        }
    }
}

/// A reload that was refused.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadError {
    /// When it happened.
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    /// The diagnostics, rendered without colour.
    pub diagnostics: String,
}

/// All journeys' state. Readers take a [`StatusStore::snapshot`] (one `Arc`
/// per journey, no copy of any journey's data) and render from it without
/// holding the lock.
#[derive(Debug)]
pub struct StatusStore {
    /// The `location` label of this prober.
    pub location: String,
    /// When the prober started.
    pub started: SystemTime,
    journeys: RwLock<BTreeMap<String, Arc<JourneyStatus>>>,
    reload_error: RwLock<Option<ReloadError>>,
    shard: RwLock<ShardStatus>,
    /// Bumped by every change readers can see (see [`StatusStore::generation`]).
    generation: AtomicU64,
    /// Bumped by reloads, refused reloads and the shard.
    config_generation: AtomicU64,
}

/// Which state of a [`StatusStore`] a page shows: it is out of date once
/// either number moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    /// Moves with the journeys loaded, a refused reload and the shard.
    pub config: u64,
    /// Moves with those and with every recorded run.
    pub any: u64,
}

/// Which shard this process is, and the journeys it leaves to the others.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    /// `0..count`.
    pub index: u32,
    /// How many shards share the journeys.
    pub count: u32,
    /// Journeys loaded but run by another shard, sorted by name.
    pub skipped: Vec<String>,
}

impl StatusStore {
    /// An empty store.
    pub fn new(location: &str) -> Self {
        Self {
            location: location.to_string(),
            started: SystemTime::now(),
            journeys: RwLock::new(BTreeMap::new()),
            reload_error: RwLock::new(None),
            shard: RwLock::new(ShardStatus {
                index: 0,
                count: 1,
                skipped: Vec::new(),
            }),
            generation: AtomicU64::new(0),
            config_generation: AtomicU64::new(0),
        }
    }

    /// Changes whenever what the status page and API show changes (a run
    /// recorded, journeys reloaded, a reload refused, the shard set): pages
    /// rendered from an older snapshot are out of date. Read it before taking
    /// the snapshot a page renders from.
    pub fn generation(&self) -> Generation {
        Generation {
            config: self.config_generation.load(Ordering::Acquire),
            any: self.generation.load(Ordering::Acquire),
        }
    }

    /// A run was recorded.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The configuration changed (what a reload does must show at once).
    fn reconfigured(&self) {
        self.config_generation.fetch_add(1, Ordering::AcqRel);
        self.changed();
    }

    /// Replaces the journey set, keeping history of journeys that remain.
    pub fn set_journeys(&self, journeys: &[Arc<Journey>]) {
        let mut map = self.journeys.write().unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        for j in journeys {
            let st = match map.remove(&j.name) {
                Some(mut old) => {
                    Arc::make_mut(&mut old).journey = j.clone();
                    old
                }
                None => Arc::new(JourneyStatus {
                    journey: j.clone(),
                    last: None,
                    failures: VecDeque::new(),
                    runs: 0,
                    successes: 0,
                    passed_after_retry: 0,
                    last_attempts: 0,
                    cleanup_failures: 0,
                    last_cleanup_failure: None,
                    slo_log: None,
                }),
            };
            next.insert(j.name.clone(), st);
        }
        *map = next;
        self.reconfigured();
    }

    /// Stores a finished run (taken by value: no copy per run).
    pub fn update(&self, a: crate::attempt::Attempted) {
        let mut map = self.journeys.write().unwrap_or_else(|p| p.into_inner());
        let Some(st) = map.get_mut(&a.outcome.journey) else {
            return;
        };
        // Under the lock: a reader that sees the new generation then
        // snapshots this run.
        self.changed();
        // In place, unless a page being rendered still holds this journey.
        let st = Arc::make_mut(st);
        st.runs += 1;
        st.passed_after_retry += u64::from(a.passed_after_retry());
        st.last_attempts = a.attempts;
        if !st.journey.slos.is_empty() {
            st.slo_log
                .get_or_insert_with(Default::default)
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(&st.journey, &a.outcome, a.first);
        }
        let o = a.outcome;
        if o.result == RunResult::Success {
            st.successes += 1;
        }
        if let Some(step) = o.failed_step() {
            let record = FailureRecord::of(&o, step, st.failures.front());
            // Recycles the oldest slot once full: no reallocation per run.
            if st.failures.len() == FAILURE_HISTORY {
                st.failures.pop_back();
            }
            st.failures.push_front(record);
        }
        if let Some(step) = o.failed_cleanup() {
            st.cleanup_failures += 1;
            let record = FailureRecord::of(&o, step, st.last_cleanup_failure.as_deref());
            st.last_cleanup_failure = Some(Box::new(record));
        }
        let mut o = o;
        // The spans were exported when the run ended; the page and API never
        // show them (a few hundred bytes per journey otherwise kept).
        for step in o.steps.iter_mut().chain(o.finally.iter_mut()) {
            step.telemetry = Default::default();
        }
        // In place when no page holds the previous run: no allocation per run.
        match st.last.as_mut().and_then(Arc::get_mut) {
            Some(last) => *last = o,
            None => st.last = Some(Arc::new(o)),
        }
    }

    /// A snapshot of every journey, sorted by name: shared, not copied.
    pub fn snapshot(&self) -> Vec<Arc<JourneyStatus>> {
        self.journeys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Records this process's shard and the journeys it skips.
    pub fn set_shard(&self, shard: crate::shard::Shard, mut skipped: Vec<String>) {
        skipped.sort();
        *self.shard.write().unwrap_or_else(|p| p.into_inner()) = ShardStatus {
            index: shard.index,
            count: shard.count,
            skipped,
        };
        self.reconfigured();
    }

    /// This process's shard and the journeys it skips.
    pub fn shard(&self) -> ShardStatus {
        self.shard.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records (or clears) the last refused reload.
    pub fn set_reload_error(&self, e: Option<ReloadError>) {
        *self.reload_error.write().unwrap_or_else(|p| p.into_inner()) = e;
        self.reconfigured();
    }

    /// The last refused reload, if the current set is not the newest files.
    pub fn reload_error(&self) -> Option<ReloadError> {
        self.reload_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Logs, counts and keeps a finished run: the one place that does it.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Status for the page and the API.
    pub status: Arc<StatusStore>,
}

impl Recorder {
    /// Handles a finished run without retries.
    pub fn record(&self, series: &JourneySeries, o: JourneyOutcome) {
        self.record_attempted(series, crate::attempt::Attempted::once(o));
    }

    /// Handles a finished run and its retries: one log line, its series
    /// (first attempt and final result), and the status store.
    pub fn record_attempted(&self, series: &JourneySeries, a: crate::attempt::Attempted) {
        series.record_first(a.first);
        let o = &a.outcome;
        series.record(o);
        let attempts = a.attempts;
        let duration_ms = (o.duration.as_secs_f64() * 1000.0).round() as u64;
        match o.failed_step() {
            // A passing run is the metrics' business: at `info` it would be
            // a line per run (167 a second at 10,000 journeys) and 2-3 % of
            // the CPU at 2,000 steps/s. Failures stay at `warn`.
            None => tracing::debug!(
                journey = %o.journey,
                location = %self.status.location,
                result = o.result.as_str(),
                duration_ms,
                attempts,
                "run finished"
            ),
            Some(step) => {
                let f = step.failure.as_ref();
                tracing::warn!(
                    journey = %o.journey,
                    location = %self.status.location,
                    result = o.result.as_str(),
                    duration_ms,
                    attempts,
                    step = %step.name,
                    reason = f.map_or("", |f| f.reason.as_str()),
                    message = f.map_or("", |f| f.message.as_str()),
                    "run finished"
                );
            }
        }
        if let Some(step) = o.failed_cleanup() {
            let f = step.failure.as_ref();
            tracing::warn!(
                journey = %o.journey,
                location = %self.status.location,
                step = %step.name,
                reason = f.map_or("", |f| f.reason.as_str()),
                message = f.map_or("", |f| f.message.as_str()),
                "cleanup (finally) step failed; the run's result stands"
            );
        }
        self.status.update(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::journey::{LoadOptions, load::load_sources};
    use crate::outcome::{Failure, Reason, StepOutcome, StepStatus};
    use std::time::Duration;

    fn store() -> StatusStore {
        let yaml = "name: a\nsteps:\n  - name: s\n    http: {url: \"http://127.0.0.1:9/\"}\n";
        let l = load_sources(
            vec![SourceFile::new("a.yaml", yaml)],
            &LoadOptions::default(),
            Vec::new(),
        )
        .unwrap_or_else(|_| panic!("valid journey"));
        let s = StatusStore::new("test");
        s.set_journeys(&[Arc::new(l.journeys[0].clone())]);
        s
    }

    fn run(ok: bool) -> JourneyOutcome {
        JourneyOutcome {
            attempts: 1,
            journey: "a".into(),
            result: if ok {
                RunResult::Success
            } else {
                RunResult::Failure
            },
            started_at: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(5),
            steps: vec![StepOutcome {
                status: if ok {
                    StepStatus::Passed
                } else {
                    StepStatus::Failed
                },
                failure: (!ok).then(|| Failure::new(Reason::Status, "boom")),
                ..StepOutcome::skipped("s", "http")
            }],
            finally: Vec::new(),
            trace_id: None,
            trace_url: None,
        }
    }

    /// Readers share each journey's state instead of copying it; a run
    /// recorded while a reader holds a snapshot leaves that snapshot as it
    /// was and shows in the next one.
    #[test]
    fn snapshots_share_state_and_stay_consistent() {
        let s = store();
        let a = s.snapshot();
        let b = s.snapshot();
        assert!(Arc::ptr_eq(&a[0], &b[0]), "no copy per reader");
        s.update(crate::attempt::Attempted::once(run(false)));
        assert_eq!((a[0].runs, a[0].failures.len()), (0, 0));
        let c = s.snapshot();
        assert_eq!((c[0].runs, c[0].failures.len()), (1, 1));
        drop((a, b, c));
        // With no reader left, a run changes the state in place.
        let before = Arc::as_ptr(&s.snapshot()[0]);
        s.update(crate::attempt::Attempted::once(run(true)));
        let after = s.snapshot();
        assert_eq!(Arc::as_ptr(&after[0]), before);
        assert_eq!((after[0].runs, after[0].successes), (2, 1));
    }

    /// Every change a page shows moves the generation (pages rendered before
    /// it are out of date), a change of configuration its `config` part;
    /// reading moves neither.
    #[test]
    fn every_visible_change_moves_the_generation() {
        let s = store();
        let mut last = s.generation();
        let mut moved = |what: &str, config: bool| {
            let g = s.generation();
            assert!(g.any > last.any, "{what} left the generation at {g:?}");
            assert_eq!(g.config > last.config, config, "{what}: {g:?}");
            last = g;
        };
        s.update(crate::attempt::Attempted::once(run(true)));
        moved("a finished run", false);
        s.set_reload_error(None);
        moved("a reload error", true);
        s.set_shard(crate::shard::Shard::ALL, Vec::new());
        moved("the shard", true);
        let journeys: Vec<Arc<Journey>> = s.snapshot().iter().map(|j| j.journey.clone()).collect();
        s.set_journeys(&journeys);
        moved("a reload", true);
        let g = s.generation();
        let _ = (s.snapshot(), s.shard(), s.reload_error());
        assert_eq!(s.generation(), g);
    }
}
