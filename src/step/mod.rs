//! Step executors: one function per step kind, chosen by a `match`.

pub mod http;

use std::time::Duration;

use crate::journey::{Step, StepKind};
use crate::outcome::{Failure, Reason, StepOutcome, StepStatus};
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
                timings: Vec::new(),
            }
        }
        StepKind::Browser(_) => StepOutcome {
            status: StepStatus::Failed,
            failure: Some(
                Failure::new(
                    Reason::BrowserSession,
                    "this build of wayprobe has no browser support (built without the `browser` feature)",
                )
                .at(step.span),
            ),
            ..StepOutcome::skipped(&step.name, "browser")
        },
    }
}
