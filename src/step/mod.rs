//! Step executors: one function per step kind, chosen by a `match`.

pub mod http;
pub mod timing;

use std::time::Duration;

use crate::journey::{Step, StepKind};
#[cfg(not(feature = "browser"))]
use crate::outcome::{Failure, Reason};
use crate::outcome::{StepOutcome, StepStatus};
use crate::run::{RunCtx, Runner};

/// Runs one step (the caller bounds it with a timeout and sets the duration).
pub async fn execute(
    step: &Step,
    ctx: &mut RunCtx,
    runner: &Runner,
    limit: Duration,
) -> StepOutcome {
    let _ = (runner, limit);
    match &step.kind {
        StepKind::Http(h) => {
            let r = http::execute(step, h, ctx).await;
            StepOutcome {
                name: step.name.clone(),
                kind: "http",
                status: if r.failure.is_some() {
                    StepStatus::Failed
                } else {
                    StepStatus::Passed
                },
                duration: Duration::ZERO,
                request: r.request,
                http_status: r.status,
                redirects: r.redirects,
                failure: r.failure,
                exchanges: r.exchanges,
                timings: r.timings,
            }
        }
        #[cfg(feature = "browser")]
        StepKind::Browser(b) => {
            crate::browser::execute(step, b, ctx, runner.browser(), limit).await
        }
        #[cfg(not(feature = "browser"))]
        StepKind::Browser(_) => {
            let _ = (runner, limit);
            StepOutcome {
            status: StepStatus::Failed,
            failure: Some(
                Failure::new(
                    Reason::BrowserSession,
                    "this build of wayprobe has no browser support (built without the `browser` feature)",
                )
                .at(step.span),
            ),
            ..StepOutcome::skipped(&step.name, "browser")
            }
        }
    }
}
