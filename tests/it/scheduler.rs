//! The scheduler on paused tokio time: run counts, skips instead of overlap,
//! timeouts as failures, bounded start spread, and shutdown semantics.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use wayprobe::journey::Journey;
use wayprobe::metrics::Metrics;
use wayprobe::outcome::{JourneyOutcome, RunResult, StepOutcome, StepStatus};
use wayprobe::scheduler::{Probe, Scheduler, SchedulerConfig};
use wayprobe::status::{Recorder, StatusStore};

use crate::support::journey;

/// A probe whose runs take a fixed (virtual) time; it records each start as
/// it happens, and start and end of each run that finished.
struct SleepProbe {
    took: Duration,
    started: Mutex<Vec<(String, Instant)>>,
    log: Mutex<Vec<(String, Instant, Instant)>>,
}

impl SleepProbe {
    fn new(took: Duration) -> Arc<Self> {
        Arc::new(Self {
            took,
            started: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        })
    }
    fn runs(&self) -> Vec<(String, Instant, Instant)> {
        self.log.lock().unwrap().clone()
    }
    /// When `name`'s runs started, finished or not.
    fn started(&self, name: &str) -> Vec<Instant> {
        let started = self.started.lock().unwrap();
        started
            .iter()
            .filter(|r| r.0 == name)
            .map(|r| r.1)
            .collect()
    }
    /// When `name`'s finished runs started.
    fn finished(&self, name: &str) -> Vec<Instant> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|r| r.0 == name).map(|r| r.1).collect()
    }
    /// Waits (in virtual time) for `name`'s first run to start; returns when it did.
    async fn first_start(&self, name: &str) -> Instant {
        loop {
            if let Some(&t) = self.started(name).first() {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Probe for SleepProbe {
    fn probe(&self, j: Arc<Journey>) -> Pin<Box<dyn Future<Output = JourneyOutcome> + Send + '_>> {
        Box::pin(async move {
            let start = Instant::now();
            self.started.lock().unwrap().push((j.name.clone(), start));
            tokio::time::sleep(self.took).await;
            self.log
                .lock()
                .unwrap()
                .push((j.name.clone(), start, Instant::now()));
            JourneyOutcome {
                attempts: 1,
                journey: j.name.clone(),
                result: RunResult::Success,
                started_at: SystemTime::now(),
                duration: self.took,
                steps: j
                    .steps
                    .iter()
                    .map(|s| StepOutcome {
                        status: StepStatus::Passed,
                        duration: self.took,
                        ..StepOutcome::skipped(&s.name, "http")
                    })
                    .collect(),
                finally: Vec::new(),
                trace_id: None,
                trace_url: None,
            }
        })
    }
}

fn j(name: &str, interval: &str, timeout: &str) -> Arc<Journey> {
    Arc::new(journey(
        &format!(
            "name: {name}\ninterval: {interval}\ntimeout: {timeout}\nsteps:\n  - name: s\n    http: {{url: \"http://127.0.0.1:9/\"}}\n"
        ),
        &[],
    ))
}

struct Rig {
    sched: Scheduler,
    metrics: Arc<Metrics>,
    status: Arc<StatusStore>,
}

fn rig(probe: Arc<dyn Probe>, cfg: SchedulerConfig) -> Rig {
    let metrics = Arc::new(Metrics::new("test"));
    let status = Arc::new(StatusStore::new("test"));
    let sched = Scheduler::new(
        probe,
        Recorder {
            status: status.clone(),
        },
        metrics.clone(),
        &cfg,
    );
    Rig {
        sched,
        metrics,
        status,
    }
}

fn metric(m: &Metrics, series: &str) -> f64 {
    let text = m.encode();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(start_paused = true)]
async fn n_intervals_give_n_runs() {
    let probe = SleepProbe::new(Duration::from_millis(100));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    let js = [j("a", "10s", "5s"), j("b", "30s", "5s")];
    r.status.set_journeys(&js);
    r.sched.apply(&js);
    // The first run is within one interval; after that, one per interval.
    tokio::time::sleep(Duration::from_secs(300) + Duration::from_millis(1)).await;
    let runs = probe.runs();
    let a = runs.iter().filter(|(n, _, _)| n == "a").count();
    let b = runs.iter().filter(|(n, _, _)| n == "b").count();
    assert!((29..=30).contains(&a), "a ran {a} times");
    assert!((9..=10).contains(&b), "b ran {b} times");
    let starts: Vec<Instant> = runs
        .iter()
        .filter(|(n, _, _)| n == "a")
        .map(|r| r.1)
        .collect();
    for w in starts.windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_secs(10));
    }
    let done = metric(
        &r.metrics,
        r#"journey_runs_total{journey="a",location="test",result="success"}"#,
    );
    assert_eq!(done as usize, a);
}

#[tokio::test(start_paused = true)]
async fn a_run_longer_than_its_interval_causes_skips_not_overlap() {
    // Each run takes 25s of a 10s interval (the timeout is the scheduler's
    // backstop only; the fake probe ignores it).
    let probe = SleepProbe::new(Duration::from_secs(25));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    let js = [j("slow", "10s", "9s")];
    r.sched.apply(&js);
    tokio::time::sleep(Duration::from_secs(200)).await;
    let runs = probe.runs();
    for w in runs.windows(2) {
        assert!(w[1].1 >= w[0].2, "runs overlapped: {w:?}");
    }
    let skipped = metric(&r.metrics, r#"wayprobe_runs_skipped_total{journey="slow"}"#);
    assert!(skipped >= 5.0, "skipped {skipped}");
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_timeout_is_a_failed_outcome() {
    let probe = SleepProbe::new(Duration::from_secs(3600));
    let mut r = rig(probe, SchedulerConfig::default());
    let js = [j("hung", "1m", "10s")];
    r.status.set_journeys(&js);
    r.sched.apply(&js);
    // The first run starts within one interval (its phase), fails at the
    // 12s backstop; one interval later the next does: 190s holds at least two.
    tokio::time::sleep(Duration::from_secs(190)).await;
    let failures = metric(
        &r.metrics,
        r#"journey_runs_total{journey="hung",location="test",result="failure"}"#,
    );
    assert!(failures >= 2.0, "failures {failures}");
    let st = r.status.snapshot();
    let f = st[0].failures.front().expect("a failure recorded");
    assert_eq!(f.reason, "timeout");
}

#[tokio::test(start_paused = true)]
async fn first_runs_are_spread_within_the_interval() {
    let probe = SleepProbe::new(Duration::from_millis(1));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    let js: Vec<_> = (0..200).map(|i| j(&format!("j{i}"), "1m", "10s")).collect();
    let t0 = Instant::now();
    r.sched.apply(&js);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let runs = probe.runs();
    assert_eq!(
        runs.len(),
        200,
        "every journey ran once in its first interval"
    );
    let mut offsets: Vec<u128> = runs.iter().map(|(_, s, _)| (*s - t0).as_millis()).collect();
    offsets.sort();
    assert!(*offsets.last().unwrap() < 60_000);
    // Spread out: no single second holds more than 5% of the first runs.
    let mut per_second = std::collections::HashMap::new();
    for o in &offsets {
        *per_second.entry(o / 1000).or_insert(0) += 1;
    }
    assert!(per_second.values().all(|&n| n <= 10), "{per_second:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_runs_finish_within_grace_then_cancels_uncounted() {
    // A 5s run with a 10s grace finishes and is counted.
    let probe = SleepProbe::new(Duration::from_secs(5));
    let mut r = rig(
        probe.clone(),
        SchedulerConfig {
            grace: Duration::from_secs(10),
            ..Default::default()
        },
    );
    r.sched.apply(&[j("short", "30s", "20s")]);
    // Wait until the first run is in flight.
    while probe.runs().is_empty() && metric(&r.metrics, "wayprobe_runs_in_flight") == 0.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = Instant::now();
    r.sched.shutdown().await;
    assert!(Instant::now() - t0 <= Duration::from_secs(5));
    let ok = metric(
        &r.metrics,
        r#"journey_runs_total{journey="short",location="test",result="success"}"#,
    );
    assert_eq!(ok, 1.0);

    // A 60s run with a 2s grace is cancelled at the end of the grace, not counted.
    let probe = SleepProbe::new(Duration::from_secs(60));
    let mut r = rig(
        probe.clone(),
        SchedulerConfig {
            grace: Duration::from_secs(2),
            ..Default::default()
        },
    );
    r.sched.apply(&[j("long", "2m", "90s")]);
    while metric(&r.metrics, "wayprobe_runs_in_flight") == 0.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = Instant::now();
    r.sched.shutdown().await;
    assert_eq!(Instant::now() - t0, Duration::from_secs(2));
    let prefix = r#"journey_runs_total{journey="long",location="test",result="#;
    assert_eq!(metric(&r.metrics, &format!("{prefix}\"success\"}}")), 0.0);
    assert_eq!(metric(&r.metrics, &format!("{prefix}\"failure\"}}")), 0.0);
    assert!(probe.runs().is_empty());
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_unchanged_journeys_and_their_phase() {
    let probe = SleepProbe::new(Duration::from_millis(10));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    let a = j("a", "10s", "5s");
    let applied = r.sched.apply(&[a.clone(), j("b", "10s", "5s")]);
    assert_eq!(applied.added, 2);
    tokio::time::sleep(Duration::from_secs(35)).await;
    let before: Vec<Instant> = probe
        .runs()
        .iter()
        .filter(|r| r.0 == "a")
        .map(|r| r.1)
        .collect();
    // Same file for `a`, `b` removed, `c` added.
    let applied = r.sched.apply(&[a, j("c", "10s", "5s")]);
    assert_eq!(
        (applied.unchanged, applied.removed, applied.added),
        (1, 1, 1)
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after: Vec<Instant> = probe
        .runs()
        .iter()
        .filter(|r| r.0 == "a")
        .map(|r| r.1)
        .collect();
    assert_eq!(after.len(), before.len() + 3);
    for w in after.windows(2) {
        assert_eq!(
            w[1] - w[0],
            Duration::from_secs(10),
            "phase kept across reload"
        );
    }
    let text = r.metrics.encode();
    assert!(
        !text.contains("journey=\"b\""),
        "removed journey's series are gone"
    );
    assert!(text.contains("journey=\"c\""));
    assert!(
        metric(
            &r.metrics,
            r#"journey_runs_total{journey="a",location="test",result="success"}"#
        ) >= 6.0
    );
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_journey_keeps_its_phase_and_its_run_when_another_changes() {
    let probe = SleepProbe::new(Duration::from_secs(5));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    let a = j("a", "10s", "9s");
    r.sched.apply(&[a.clone(), j("b", "10s", "9s")]);
    // Reload while `a` has a run in flight; only `b`'s file changed.
    let t = probe.first_start("a").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let applied = r.sched.apply(&[a, j("b", "10s", "8s")]);
    assert_eq!((applied.unchanged, applied.changed), (1, 1));
    // Until t+41: runs started at t, t+10, t+20, t+30 have finished.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let s = Duration::from_secs;
    assert_eq!(
        probe.finished("a"),
        [t, t + s(10), t + s(20), t + s(30)],
        "the run in flight finished and the ticks kept their place"
    );
    assert_eq!(
        metric(
            &r.metrics,
            r#"journey_runs_total{journey="a",location="test",result="success"}"#
        ),
        4.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_changed_journey_has_its_run_cancelled_and_restarts_at_its_phase() {
    let probe = SleepProbe::new(Duration::from_secs(5));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    r.sched.apply(&[j("b", "10s", "9s")]);
    probe.first_start("b").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The reload, with its wall-clock time bracketed: the phase is taken
    // from the wall clock, which paused tokio time does not stop.
    let wall_before = SystemTime::now();
    let t = Instant::now();
    let applied = r.sched.apply(&[j("b", "10s", "8s")]);
    assert_eq!(applied.changed, 1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let wall_after = SystemTime::now();
    tokio::time::sleep(Duration::from_secs(30)).await;

    // The run in flight at the reload (it would have ended at t+4s) never
    // finished and is counted nowhere.
    let finished = probe.finished("b");
    assert!(finished.iter().all(|&s| s > t), "{finished:?} vs {t:?}");
    let prefix = r#"journey_runs_total{journey="b",location="test",result="#;
    let ok = metric(&r.metrics, &format!("{prefix}\"success\"}}"));
    assert_eq!(ok as usize, finished.len());
    assert_eq!(metric(&r.metrics, &format!("{prefix}\"failure\"}}")), 0.0);

    // The first run after the reload is at the journey's stable phase.
    let iv = Duration::from_secs(10);
    let restart = probe.started("b").into_iter().find(|&s| s > t).unwrap();
    let latest = wayprobe::scheduler::first_delay("b", iv, wall_before);
    // How much earlier than `latest` the phase may fall (the wall clock
    // moved on before the timer task took the change), and how much later
    // (timers fire on the millisecond).
    let early = wall_after.duration_since(wall_before).unwrap() + Duration::from_millis(1);
    let late = Duration::from_millis(1);
    let d = (restart - t).as_nanos();
    let off = (latest.as_nanos() + iv.as_nanos() - d) % iv.as_nanos();
    assert!(
        off <= early.as_nanos() || iv.as_nanos() - off <= late.as_nanos(),
        "restarted {:?} after the reload, phase due {latest:?} (within {early:?})",
        restart - t
    );
    let restarts: Vec<Instant> = probe.started("b").into_iter().filter(|&s| s > t).collect();
    assert_eq!(restarts.len(), 3, "{restarts:?}");
    for w in restarts.windows(2) {
        assert_eq!(w[1] - w[0], iv);
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_journeys_with_one_interval_each_run_once_per_interval() {
    let probe = SleepProbe::new(Duration::from_millis(1));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    let js: Vec<_> = (0..1000)
        .map(|i| j(&format!("j{i}"), "100ms", "50ms"))
        .collect();
    let t0 = Instant::now();
    r.sched.apply(&js);
    let iv = Duration::from_millis(100);
    tokio::time::sleep(iv * 5 + Duration::from_millis(10)).await;
    let mut by_name: std::collections::HashMap<String, Vec<Instant>> = Default::default();
    let mut per_ms: std::collections::HashMap<u128, usize> = Default::default();
    for (name, start, _) in probe.runs() {
        if start < t0 + iv * 5 {
            *per_ms.entry((start - t0).as_millis()).or_default() += 1;
            by_name.entry(name).or_default().push(start);
        }
    }
    assert_eq!(by_name.len(), 1000, "every journey ran");
    for (name, starts) in &by_name {
        assert_eq!(
            starts.len(),
            5,
            "{name} ran {} times in 5 intervals",
            starts.len()
        );
        for w in starts.windows(2) {
            assert_eq!(w[1] - w[0], iv, "{name}");
        }
    }
    // The premise: with 1,000 phases in 100 ms, ticks share a millisecond,
    // so one wake-up has to start several runs.
    let most = per_ms.values().max().copied().unwrap_or(0);
    assert!(most >= 5, "at most {most} runs started in one millisecond");
}

#[tokio::test(start_paused = true)]
async fn a_journey_added_due_before_all_others_wakes_the_timer() {
    let probe = SleepProbe::new(Duration::from_millis(1));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    let hour = Duration::from_secs(3600);
    // A journey whose first tick is more than 20 minutes away.
    let late = (0..)
        .map(|i| format!("late{i}"))
        .find(|n| {
            wayprobe::scheduler::first_delay(n, hour, SystemTime::now()) > Duration::from_secs(1200)
        })
        .unwrap();
    let late = j(&late, "1h", "10s");
    r.sched.apply(std::slice::from_ref(&late));
    // The timer task now sleeps until `late`'s tick.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    let applied = r.sched.apply(&[late.clone(), j("soon", "10s", "5s")]);
    assert_eq!((applied.unchanged, applied.added), (1, 1));
    tokio::time::sleep(Duration::from_secs(31)).await;
    let soon: Vec<Instant> = probe
        .started("soon")
        .into_iter()
        .filter(|&s| s < t + Duration::from_secs(30))
        .collect();
    assert_eq!(soon.len(), 3, "{soon:?}");
    assert!(probe.started(&late.name).is_empty());
}

#[tokio::test(start_paused = true)]
async fn ticks_missed_while_the_clock_jumped_are_dropped_not_run_in_a_burst() {
    let probe = SleepProbe::new(Duration::from_millis(1));
    let mut r = rig(probe.clone(), SchedulerConfig::default());
    r.sched.apply(&[j("a", "10s", "5s")]);
    let t = probe.first_start("a").await;
    tokio::time::sleep_until(t + Duration::from_millis(500)).await;
    // A stalled machine: the ticks at t+10, t+20 and t+30 all fall due at once.
    tokio::time::advance(Duration::from_secs(35)).await;
    tokio::time::sleep_until(t + Duration::from_secs(41)).await;
    let s = Duration::from_millis;
    assert_eq!(
        probe.started("a"),
        [t, t + s(35_500), t + s(40_000)],
        "one late run, then back on the phase"
    );
    // Dropped, not skipped: no run was still going when they fell due.
    let skipped = metric(&r.metrics, r#"wayprobe_runs_skipped_total{journey="a"}"#);
    assert_eq!(skipped, 0.0);
}
