//! Retries of a failed run (`retries: N`, `retry_delay`): the loop shared by
//! the scheduler and `wayprobe run`. Each attempt is a whole run of the
//! journey; the first attempt's result is kept beside the final outcome, so
//! a retry never hides a failure from the numbers.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::journey::Journey;
use crate::outcome::{JourneyOutcome, RunResult};
use crate::run::Runner;

/// A run with its retries.
#[derive(Debug, Clone)]
pub struct Attempted {
    /// The last attempt's outcome (the run's final result).
    pub outcome: JourneyOutcome,
    /// The first attempt's result.
    pub first: RunResult,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
}

impl Attempted {
    /// A run without retries.
    pub fn once(outcome: JourneyOutcome) -> Self {
        Self {
            first: outcome.result,
            outcome,
            attempts: 1,
        }
    }

    /// Whether the run passed only after a retry.
    pub fn passed_after_retry(&self) -> bool {
        self.first == RunResult::Failure && self.outcome.result == RunResult::Success
    }
}

/// How long a run with its retries may take: the interval when it retries
/// (a retry starts only if it can end before the next scheduled run),
/// otherwise the timeout.
pub fn budget(j: &Journey) -> Duration {
    if j.retries.count == 0 {
        j.timeout
    } else {
        j.interval.max(j.timeout)
    }
}

/// How long a caller waits for a run and its retries before it records
/// [`crate::run::timed_out`]: [`budget`] plus a grace. The runner bounds every
/// step itself; this only catches a run that misbehaves. The one place the
/// whole-run backstop is decided (the scheduler and `wayprobe run` use it).
pub fn backstop(j: &Journey) -> Duration {
    // Every attempt may add its `finally:` budget.
    let cleanups = j.finally_budget().saturating_mul(j.retries.count + 1);
    budget(j)
        .saturating_add(cleanups)
        .saturating_add(crate::run::RUN_GRACE)
}

/// Runs `attempt` once, then again after `retry_delay` while it fails, at most
/// `retries` times and only while the retry can end within [`budget`].
pub async fn with_retries<F, Fut>(j: &Journey, mut attempt: F) -> Attempted
where
    F: FnMut() -> Fut,
    Fut: Future<Output = JourneyOutcome>,
{
    let start = Instant::now();
    let budget = budget(j);
    let mut a = Attempted::once(attempt().await);
    while a.outcome.result == RunResult::Failure
        && a.attempts <= j.retries.count
        && start.elapsed() + j.retries.delay + j.timeout <= budget
    {
        tokio::time::sleep(j.retries.delay).await;
        a.outcome = attempt().await;
        a.attempts += 1;
    }
    a.outcome.attempts = a.attempts;
    a
}

/// [`with_retries`] over [`Runner::run`].
pub async fn run(runner: &Runner, j: &Journey) -> Attempted {
    with_retries(j, || runner.run(j)).await
}
