//! The scheduler owns time: when each journey runs, how long a run may take,
//! how many run at once, and what happens at reload and shutdown.
//!
//! One lightweight task per journey sleeps until its next tick; a tick that
//! finds the previous run still going is skipped and counted, never
//! overlapped. First runs are spread over the interval by a stable offset
//! derived from the journey name, so a thousand journeys with the same
//! interval do not fire in the same millisecond. Shutdown stops new runs,
//! lets in-flight runs finish within a grace period, then cancels them; a
//! cancelled run is not counted.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::journey::Journey;
use crate::metrics::{JourneySeries, Metrics};
use crate::outcome::JourneyOutcome;
use crate::run::Runner;
use crate::status::Recorder;

/// Something that runs a journey once (the [`Runner`] in production).
pub trait Probe: Send + Sync + 'static {
    /// Runs `journey` and returns its outcome.
    fn probe(
        &self,
        journey: Arc<Journey>,
    ) -> Pin<Box<dyn Future<Output = JourneyOutcome> + Send + '_>>;
}

impl Probe for Runner {
    fn probe(
        &self,
        journey: Arc<Journey>,
    ) -> Pin<Box<dyn Future<Output = JourneyOutcome> + Send + '_>> {
        Box::pin(async move { self.run(&journey).await })
    }
}

/// Limits and timings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Runs in progress at once, over all journeys.
    pub max_concurrent: usize,
    /// Browser runs in progress at once (each holds a Chromium).
    pub max_browser: usize,
    /// How long in-flight runs may finish after shutdown begins.
    pub grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 256,
            max_browser: 2,
            grace: Duration::from_secs(10),
        }
    }
}

struct Shared {
    probe: Arc<dyn Probe>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    global: Arc<Semaphore>,
    browser: Arc<Semaphore>,
    /// Phase 1 of shutdown: start nothing new.
    stop: CancellationToken,
}

struct Task {
    fingerprint: u64,
    /// Cancels this journey's loop and its in-flight run (reload, shutdown).
    cancel: CancellationToken,
}

/// Runs every journey on its schedule until shut down.
pub struct Scheduler {
    shared: Arc<Shared>,
    /// Phase 2 of shutdown: cancel what is still running.
    hard: CancellationToken,
    tracker: TaskTracker,
    tasks: HashMap<String, Task>,
    grace: Duration,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Journeys started for the first time.
    pub added: usize,
    /// Journeys whose file changed (restarted, counters kept).
    pub changed: usize,
    /// Journeys stopped and their series removed.
    pub removed: usize,
    /// Journeys left running untouched.
    pub unchanged: usize,
}

fn fingerprint(j: &Journey) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    j.source.text.hash(&mut h);
    // A changed fragments file changes the journeys that use it.
    for s in j.steps.iter().chain(&j.finally) {
        for u in std::iter::successors(s.fragment.as_deref(), |u| u.parent.as_deref()) {
            u.file.text.hash(&mut h);
        }
    }
    j.vars.hash(&mut h);
    j.interval.hash(&mut h);
    j.timeout.hash(&mut h);
    h.finish()
}

/// FNV-1a: stable across processes and versions (unlike `DefaultHasher`).
fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Delay before a journey's first run: its stable phase within the interval,
/// measured on the wall clock, so restarts and replicas keep the same phase.
pub fn first_delay(name: &str, interval: Duration, now: SystemTime) -> Duration {
    let iv = interval.as_millis().max(1) as u64;
    let phase = stable_hash(name) % iv;
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis((phase + iv - now_ms % iv) % iv)
}

/// A small PRNG for jitter (splitmix64): no shared state, no locks.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Duration::from_nanos(z % (max.as_nanos() as u64 + 1))
    }
}

impl Scheduler {
    /// A scheduler with nothing scheduled yet.
    pub fn new(
        probe: Arc<dyn Probe>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        cfg: &SchedulerConfig,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                probe,
                recorder,
                metrics,
                global: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
                browser: Arc::new(Semaphore::new(cfg.max_browser.max(1))),
                stop: CancellationToken::new(),
            }),
            hard: CancellationToken::new(),
            tracker: TaskTracker::new(),
            tasks: HashMap::new(),
            grace: cfg.grace,
        }
    }

    /// Makes the running set match `journeys`. Unchanged journeys keep their
    /// task (and so their phase); changed ones restart at their stable phase;
    /// removed ones are cancelled and their series removed.
    pub fn apply(&mut self, journeys: &[Arc<Journey>]) -> Applied {
        let series = self.shared.metrics.set_journeys(journeys);
        let mut applied = Applied::default();
        let mut next = HashMap::with_capacity(journeys.len());
        for (j, s) in journeys.iter().zip(series) {
            let fp = fingerprint(j);
            match self.tasks.remove(&j.name) {
                Some(t) if t.fingerprint == fp => {
                    applied.unchanged += 1;
                    next.insert(j.name.clone(), t);
                    continue;
                }
                Some(t) => {
                    t.cancel.cancel();
                    applied.changed += 1;
                }
                None => applied.added += 1,
            }
            let cancel = self.hard.child_token();
            self.tracker.spawn(journey_loop(
                self.shared.clone(),
                j.clone(),
                s,
                cancel.clone(),
            ));
            next.insert(
                j.name.clone(),
                Task {
                    fingerprint: fp,
                    cancel,
                },
            );
        }
        for (_, t) in self.tasks.drain() {
            t.cancel.cancel();
            applied.removed += 1;
        }
        self.tasks = next;
        applied
    }

    /// Number of scheduled journeys.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops starting runs, waits up to the grace period for in-flight runs,
    /// then cancels whatever is left (not counted as failures).
    pub async fn shutdown(self) {
        self.shared.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_s = self.grace.as_secs_f64(),
                "cancelling runs still in flight after the grace period"
            );
            self.hard.cancel();
            self.tracker.wait().await;
        }
    }
}

async fn journey_loop(
    shared: Arc<Shared>,
    j: Arc<Journey>,
    series: Arc<JourneySeries>,
    cancel: CancellationToken,
) {
    let in_flight = Arc::new(AtomicBool::new(false));
    let mut jitter = Jitter(stable_hash(&j.name) ^ 0x5DEE_CE66);
    let mut next = Instant::now()
        + first_delay(&j.name, j.interval, SystemTime::now())
        + jitter.next(j.jitter);
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(next) => {}
        }
        let scheduled = next;
        next = scheduled + j.interval;
        let now = Instant::now();
        if next <= now {
            // We fell behind (a stalled machine): drop the missed ticks.
            let behind = now - next;
            let missed = behind.as_nanos() / j.interval.as_nanos().max(1) + 1;
            next += j.interval * missed as u32;
        }
        next += jitter.next(j.jitter);
        if in_flight.swap(true, Ordering::AcqRel) {
            series.skip();
            tracing::debug!(journey = %j.name, "previous run still going; tick skipped");
            continue;
        }
        tracker.spawn(run_once(
            shared.clone(),
            j.clone(),
            series.clone(),
            cancel.clone(),
            in_flight.clone(),
            scheduled,
        ));
    }
    tracker.close();
    tracker.wait().await;
}

struct FlightGuard {
    flag: Arc<AtomicBool>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
    }
}

async fn run_once(
    shared: Arc<Shared>,
    j: Arc<Journey>,
    series: Arc<JourneySeries>,
    cancel: CancellationToken,
    in_flight: Arc<AtomicBool>,
    scheduled: Instant,
) {
    let _flight = FlightGuard { flag: in_flight };
    let permit = tokio::select! {
        biased;
        _ = cancel.cancelled() => return,
        _ = shared.stop.cancelled() => return,
        p = shared.global.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
    };
    let _browser = if j.uses_browser() {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = shared.stop.cancelled() => return,
            p = shared.browser.clone().acquire_owned() => match p { Ok(p) => Some(p), Err(_) => return },
        }
    } else {
        None
    };
    shared.metrics.lag.observe(
        Instant::now()
            .saturating_duration_since(scheduled)
            .as_secs_f64(),
    );
    shared.metrics.in_flight.inc();
    // The runner bounds every step; this backstop bounds the whole run even
    // if a step misbehaves, so a hung run becomes a failure, not a stuck task.
    let backstop = crate::attempt::backstop(&j);
    let started = SystemTime::now();
    let attempts = crate::attempt::with_retries(&j, || shared.probe.probe(j.clone()));
    let res = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        r = tokio::time::timeout(backstop, attempts) => Some(r),
    };
    shared.metrics.in_flight.dec();
    drop(permit);
    match res {
        None => tracing::debug!(journey = %j.name, "run cancelled; not counted"),
        Some(Ok(a)) => shared.recorder.record_attempted(&series, a),
        Some(Err(_)) => {
            let o = crate::run::timed_out(&j, started, backstop);
            shared.recorder.record(&series, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_delay_is_stable_and_within_the_interval() {
        let iv = Duration::from_secs(30);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let a = first_delay("checkout", iv, now);
        assert_eq!(a, first_delay("checkout", iv, now));
        assert!(a < iv);
        // One second later, the same phase is one second closer.
        let b = first_delay("checkout", iv, now + Duration::from_secs(1));
        assert_eq!((a + iv - b).as_millis() % iv.as_millis(), 1000);
    }

    #[test]
    fn phases_spread_over_the_interval() {
        let iv = Duration::from_secs(60);
        let now = SystemTime::UNIX_EPOCH;
        let mut buckets = [0usize; 10];
        for i in 0..1000 {
            let d = first_delay(&format!("journey-{i}"), iv, now);
            buckets[(d.as_millis() * 10 / iv.as_millis()) as usize] += 1;
        }
        // Roughly uniform: no tenth of the interval holds more than twice its share.
        assert!(buckets.iter().all(|&n| n > 50 && n < 200), "{buckets:?}");
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let mut j = Jitter(42);
        let max = Duration::from_millis(500);
        for _ in 0..1000 {
            assert!(j.next(max) <= max);
        }
        assert_eq!(j.next(Duration::ZERO), Duration::ZERO);
    }
}
