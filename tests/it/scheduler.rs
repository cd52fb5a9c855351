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

/// A probe whose runs take a fixed (virtual) time; it records start and end.
struct SleepProbe {
    took: Duration,
    log: Mutex<Vec<(String, Instant, Instant)>>,
}

impl SleepProbe {
    fn new(took: Duration) -> Arc<Self> {
        Arc::new(Self {
            took,
            log: Mutex::new(Vec::new()),
        })
    }
    fn runs(&self) -> Vec<(String, Instant, Instant)> {
        self.log.lock().unwrap().clone()
    }
}

impl Probe for SleepProbe {
    fn probe(&self, j: Arc<Journey>) -> Pin<Box<dyn Future<Output = JourneyOutcome> + Send + '_>> {
        Box::pin(async move {
            let start = Instant::now();
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
