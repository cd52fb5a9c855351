//! The scheduler owns time: when each journey runs, how long a run may take,
//! how many run at once, and what happens at reload and shutdown.
//!
//! One timer task drives every journey: it keeps each journey's next tick in
//! a heap, sleeps until the earliest, and spawns the runs that are due (a
//! journey costs a heap entry and a slot, not a task of its own). A tick that
//! finds the previous run still going is skipped and counted, never
//! overlapped; ticks missed while the machine stalled are dropped. First runs
//! are spread over the interval by a stable offset derived from the journey
//! name, so a thousand journeys with the same interval do not fire in the
//! same millisecond. A reload sends the timer only what changed, so
//! unchanged journeys keep their next tick. Shutdown stops new runs, lets
//! in-flight runs finish within a grace period, then cancels them; a
//! cancelled run is not counted.

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
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
    /// Phase 2 of shutdown: cancel what is still running.
    hard: CancellationToken,
}

/// A scheduled journey as `apply` sees it, keyed by the journey's own name
/// (no copy of it per journey).
struct Entry {
    journey: Arc<Journey>,
    fingerprint: u64,
    /// Where the timer task keeps it.
    slot: u32,
}

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        &self.journey.name
    }
}

// Hashes and compares as the name, as `Borrow<str>` requires.
impl Hash for Entry {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.journey.name.as_str().hash(h);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.journey.name == other.journey.name
    }
}

impl Eq for Entry {}

/// What `apply` tells the timer task, applied in order.
enum Op {
    /// Stops the journey in this slot and cancels its run in flight.
    Remove(u32),
    /// Schedules a journey in `slot` from its stable phase.
    Add {
        slot: u32,
        journey: Arc<Journey>,
        series: Arc<JourneySeries>,
    },
}

/// Runs every journey on its schedule until shut down.
///
/// Dropped without [`shutdown`](Self::shutdown), it stops at once: nothing
/// new starts and runs in flight are cancelled.
pub struct Scheduler {
    shared: Arc<Shared>,
    /// Every run; closed at shutdown.
    tracker: TaskTracker,
    journeys: HashSet<Entry>,
    /// Slots given up by removed journeys, reused before new ones.
    free: Vec<u32>,
    /// Slots handed out so far.
    slots: u32,
    ops: mpsc::UnboundedSender<Vec<Op>>,
    /// The timer task's end of `ops` until the first `apply` starts it
    /// (`new` may be called outside a runtime).
    pending: Option<mpsc::UnboundedReceiver<Vec<Op>>>,
    timer: Option<JoinHandle<()>>,
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
    /// Journeys left running untouched (same next tick, run in flight kept).
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
        let (ops, pending) = mpsc::unbounded_channel();
        Self {
            shared: Arc::new(Shared {
                probe,
                recorder,
                metrics,
                global: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
                browser: Arc::new(Semaphore::new(cfg.max_browser.max(1))),
                stop: CancellationToken::new(),
                hard: CancellationToken::new(),
            }),
            tracker: TaskTracker::new(),
            journeys: HashSet::new(),
            free: Vec::new(),
            slots: 0,
            ops,
            pending: Some(pending),
            timer: None,
            grace: cfg.grace,
        }
    }

    /// Makes the running set match `journeys`. Unchanged journeys keep their
    /// next tick (and so their phase) and their run in flight; changed ones
    /// restart at their stable phase, their run in flight cancelled; removed
    /// ones are cancelled and their series removed. Never waits for the
    /// timer task: it is sent only what changed.
    #[expect(
        clippy::mutable_key_type,
        reason = "an Entry hashes and compares by the journey's name, which never changes"
    )]
    pub fn apply(&mut self, journeys: &[Arc<Journey>]) -> Applied {
        let series = self.shared.metrics.set_journeys(journeys);
        let mut applied = Applied::default();
        let mut ops = Vec::new();
        let mut old = std::mem::take(&mut self.journeys);
        let mut next = HashSet::with_capacity(journeys.len());
        for (j, s) in journeys.iter().zip(series) {
            let fp = fingerprint(j);
            let entry = match old.take(j.name.as_str()) {
                Some(e) if e.fingerprint == fp => {
                    applied.unchanged += 1;
                    e
                }
                changed => {
                    if let Some(e) = changed {
                        self.release(&mut ops, e.slot);
                        applied.changed += 1;
                    } else {
                        applied.added += 1;
                    }
                    let slot = self.free.pop().unwrap_or_else(|| {
                        self.slots += 1;
                        self.slots - 1
                    });
                    ops.push(Op::Add {
                        slot,
                        journey: j.clone(),
                        series: s,
                    });
                    Entry {
                        journey: j.clone(),
                        fingerprint: fp,
                        slot,
                    }
                }
            };
            // The loader refuses a repeated name; should one come anyway,
            // the last one runs, once.
            if let Some(dup) = next.replace(entry) {
                self.release(&mut ops, dup.slot);
            }
        }
        for e in old.drain() {
            self.release(&mut ops, e.slot);
            applied.removed += 1;
        }
        self.journeys = next;
        if !ops.is_empty() {
            if let Some(rx) = self.pending.take() {
                let timer = Timer {
                    shared: self.shared.clone(),
                    tracker: self.tracker.clone(),
                    cells: Vec::new(),
                    due: BinaryHeap::new(),
                    live: 0,
                };
                self.timer = Some(tokio::spawn(timer.run(rx)));
            }
            // Fails only once the timer task has stopped (shutdown).
            let _ = self.ops.send(ops);
        }
        applied
    }

    fn release(&mut self, ops: &mut Vec<Op>, slot: u32) {
        ops.push(Op::Remove(slot));
        self.free.push(slot);
    }

    /// Number of scheduled journeys.
    pub fn len(&self) -> usize {
        self.journeys.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.journeys.is_empty()
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
        }
        // Also ends the timer task, which keeps the runs' cancel handles
        // until now (dropping one cancels its run).
        self.shared.hard.cancel();
        self.tracker.wait().await;
        if let Some(t) = self.timer {
            let _ = t.await;
        }
    }
}

/// A journey as the timer task keeps it.
struct Slot {
    journey: Arc<Journey>,
    series: Arc<JourneySeries>,
    jitter: Jitter,
    /// The last run's handle. Dropping it cancels the run; the run dropping
    /// its end when it finishes closes it, so it is the in-flight flag too.
    run: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Cell {
    /// Bumped each time the slot is given a journey, so heap entries of its
    /// previous journey are recognised as stale.
    generation: u32,
    slot: Option<Slot>,
}

/// The one task that drives every journey's ticks.
struct Timer {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cells: Vec<Cell>,
    /// Each live slot's next tick as (when, slot, generation), earliest
    /// first, plus stale entries of slots since emptied or reused.
    due: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Occupied slots (each has exactly one current entry in `due`).
    live: usize,
}

impl Timer {
    async fn run(mut self, mut ops: mpsc::UnboundedReceiver<Vec<Op>>) {
        let stop = self.shared.stop.clone();
        let stopped = stop.cancelled();
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(stopped, sleep);
        loop {
            // Sleeps until the earliest tick only: no polling, and no wake-up
            // at all while nothing is scheduled.
            let next = self.due.peek().map(|Reverse((at, _, _))| *at);
            if let Some(at) = next
                && sleep.deadline() != at
            {
                sleep.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                o = ops.recv() => match o {
                    Some(o) => self.apply(o),
                    // The scheduler was dropped without a shutdown.
                    None => return,
                },
                _ = &mut sleep, if next.is_some() => {
                    // The timer wheel fires at millisecond resolution: never
                    // earlier than the deadline, but be sure of it.
                    self.fire(Instant::now().max(sleep.deadline()));
                }
            }
        }
        // Runs in flight may finish within the grace period; dropping the
        // slots now would cancel them.
        self.shared.hard.cancelled().await;
    }

    fn apply(&mut self, ops: Vec<Op>) {
        let now = Instant::now();
        let wall = SystemTime::now();
        // Grown once, to size: doubling would leave up to half unused.
        let (adds, top) = ops.iter().fold((0, 0), |(n, top), op| match op {
            Op::Add { slot, .. } => (n + 1, top.max(*slot as usize + 1)),
            Op::Remove(_) => (n, top),
        });
        if self.cells.len() < top {
            self.cells.reserve_exact(top - self.cells.len());
            self.cells.resize_with(top, Cell::default);
        }
        self.due.reserve_exact(adds);
        for op in ops {
            match op {
                Op::Remove(i) => {
                    // Dropping the slot drops its run's handle: the run is cancelled.
                    if self.cells[i as usize].slot.take().is_some() {
                        self.live -= 1;
                    }
                }
                Op::Add {
                    slot,
                    journey,
                    series,
                } => {
                    let cell = &mut self.cells[slot as usize];
                    cell.generation = cell.generation.wrapping_add(1);
                    let mut jitter = Jitter(stable_hash(&journey.name) ^ 0x5DEE_CE66);
                    let first = now
                        + first_delay(&journey.name, journey.interval, wall)
                        + jitter.next(journey.jitter);
                    self.due.push(Reverse((first, slot, cell.generation)));
                    let old = cell.slot.replace(Slot {
                        journey,
                        series,
                        jitter,
                        run: None,
                    });
                    if old.is_none() {
                        self.live += 1;
                    }
                }
            }
        }
        // A reload that changed most journeys leaves about as many stale
        // entries as live ones: drop them now rather than over an interval.
        if self.due.len() > 2 * self.live + 64 {
            let cells = &self.cells;
            self.due.retain(|Reverse((_, i, g))| {
                let c = &cells[*i as usize];
                c.generation == *g && c.slot.is_some()
            });
            self.due.shrink_to(2 * self.live);
        }
    }

    /// Handles every tick due by `now`: all of them, however many share the
    /// millisecond.
    fn fire(&mut self, now: Instant) {
        while let Some(&Reverse((at, i, g))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            let cell = &mut self.cells[i as usize];
            if cell.generation != g {
                continue;
            }
            let Some(slot) = cell.slot.as_mut() else {
                continue;
            };
            let j = &slot.journey;
            // Validation keeps intervals at 100 ms or more; a zero one must
            // still not spin here.
            let iv = j.interval.max(Duration::from_millis(1));
            let mut next = at + iv;
            if next <= now {
                // We fell behind (a stalled machine): drop the missed ticks.
                let behind = now - next;
                let missed = behind.as_nanos() / iv.as_nanos() + 1;
                next += iv * missed as u32;
            }
            next += slot.jitter.next(j.jitter);
            self.due.push(Reverse((next, i, g)));
            if slot.run.as_ref().is_some_and(|r| !r.is_closed()) {
                slot.series.skip();
                tracing::debug!(journey = %j.name, "previous run still going; tick skipped");
                continue;
            }
            let (handle, cancel) = oneshot::channel();
            slot.run = Some(handle);
            self.tracker.spawn(run_once(
                self.shared.clone(),
                j.clone(),
                slot.series.clone(),
                cancel,
                at,
            ));
        }
    }
}

async fn run_once(
    shared: Arc<Shared>,
    j: Arc<Journey>,
    series: Arc<JourneySeries>,
    cancel: oneshot::Receiver<()>,
    scheduled: Instant,
) {
    // Done when the timer drops this run's handle (the journey changed or
    // was removed) or the grace period is over. Dropped last, when the run
    // is over, which tells the timer so.
    let cancelled = async {
        tokio::select! {
            _ = cancel => {}
            _ = shared.hard.cancelled() => {}
        }
    };
    tokio::pin!(cancelled);
    let permit = tokio::select! {
        biased;
        _ = &mut cancelled => return,
        _ = shared.stop.cancelled() => return,
        p = shared.global.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
    };
    let _browser = if j.uses_browser() {
        tokio::select! {
            biased;
            _ = &mut cancelled => return,
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
        _ = &mut cancelled => None,
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
