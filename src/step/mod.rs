//! Everything one step needs, and nothing about runs or schedules: its
//! context and deadline ([`context`]), the response ([`response`]), the
//! assertions ([`expect`]) and captures ([`capture`]) judged over it, the one
//! place output is shaped ([`excerpt`]), and one executor per step kind
//! ([`http`], and `browser` behind the default-on `browser` feature).
//!
//! Dependencies flow one way: `journey` ← `step` ← `run`.

#[cfg(feature = "browser")]
pub mod browser;
pub mod capture;
pub mod context;
pub mod excerpt;
pub mod expect;
pub mod http;
pub mod judge;
pub mod response;
pub mod timing;

use std::time::{Duration, Instant};

pub use context::StepCtx;

/// State a run keeps for executors across its steps (today: the browser
/// session), so the step context holds nothing executor-specific.
#[derive(Default)]
pub struct Executors {
    /// The run's browser endpoint and session.
    #[cfg(feature = "browser")]
    pub browser: browser::RunBrowser,
}

impl Executors {
    /// Ends what the run opened (its browser session), bounded.
    pub async fn finish(&mut self) {
        #[cfg(feature = "browser")]
        self.browser.finish().await;
    }
}

use crate::journey::{Step, StepKind};
use crate::outcome::{Failure, Reason, StepOutcome, StepStatus};

/// Runs one step under its deadline, the only place a step's deadline is
/// decided: `min(run_deadline, now + step timeout)`, where the step timeout
/// defaults to `journey_timeout`. A step that overruns fails with
/// [`Reason::Timeout`]; the outcome carries the step's duration.
pub async fn run(
    step: &Step,
    ctx: &mut StepCtx,
    ex: &mut Executors,
    run_deadline: Instant,
    journey_timeout: Duration,
) -> StepOutcome {
    let t0 = Instant::now();
    let started_at = std::time::SystemTime::now();
    let step_limit = step.timeout.unwrap_or(journey_timeout);
    let own = t0.checked_add(step_limit).unwrap_or(run_deadline);
    ctx.deadline = own.min(run_deadline);
    let span_id = Some(ctx.trace.start_step());
    if let Some(f) = unavailable_secret(step, ctx) {
        return StepOutcome {
            status: StepStatus::Failed,
            failure: Some(f),
            span_id,
            ..StepOutcome::skipped(&step.name, step.kind_name())
        };
    }
    let res = tokio::time::timeout_at(ctx.deadline.into(), execute(step, ctx, ex)).await;
    let duration = t0.elapsed();
    let timed_out = res.is_err().then_some(Reason::Timeout.as_str());
    let telemetry = crate::outcome::StepTelemetry {
        started_at: Some(started_at),
        requests: ctx.trace.take_requests(timed_out),
    };
    match res {
        Ok(mut o) => {
            // Browser start-up is the prober's time, reported on its own.
            o.duration = duration.saturating_sub(o.browser_start.unwrap_or_default());
            o.span_id = span_id;
            o.telemetry = telemetry;
            o
        }
        Err(_) => {
            let msg = if run_deadline < own {
                format!(
                    "journey timeout ({}) reached during this step",
                    crate::diag::duration(journey_timeout)
                )
            } else {
                format!(
                    "step did not finish within {}",
                    crate::diag::duration(round_ms(step_limit))
                )
            };
            // The phases a request in flight finished (drained at its
            // headers, so only a request still waiting for them has any).
            let reached: Vec<String> = ctx.phases.drain().into_iter().map(|t| t.name).collect();
            let msg = match telemetry.requests.last() {
                Some(r) => format!(
                    "{msg}: {} ({} {})",
                    how_far(r, &reached),
                    r.method,
                    // Messages mask query values as `***`, spans as OTel says.
                    r.url_full.replace("=REDACTED", "=***")
                ),
                None => msg,
            };
            StepOutcome {
                status: StepStatus::Failed,
                duration,
                failure: Some(Failure::new(Reason::Timeout, msg).at(step.span)),
                span_id,
                telemetry,
                ..StepOutcome::skipped(&step.name, step.kind_name())
            }
        }
    }
}

/// A secret the run could not read fails the step that first uses it,
/// pointing at the template that reads it (steps before it run as usual).
fn unavailable_secret(step: &Step, ctx: &StepCtx) -> Option<Failure> {
    if ctx.scope.unavailable.is_empty() {
        return None;
    }
    step.templates().into_iter().find_map(|t| {
        t.refs().iter().find_map(|r| {
            let name = r.strip_prefix("secret.")?;
            let why = ctx.scope.unavailable.get(name)?;
            Some(
                Failure::new(Reason::Secret, format!("secret `{name}`: {why}"))
                    .at(step.span)
                    .at(t.span()),
            )
        })
    })
}

/// How far a request got before its step ran out of time, from the phase
/// events it reached: the hung phase is what the person paged looks at.
fn how_far(r: &crate::trace::RequestSpan, reached: &[String]) -> String {
    if let Some(code) = r.status {
        return format!("status {code} received, the body did not finish");
    }
    let https = r.url_full.starts_with("https:");
    let last = r
        .events
        .last()
        .map(|(name, _)| *name)
        .or_else(|| reached.last().map(String::as_str));
    match last {
        Some("first_byte") => "the answer started but did not finish".into(),
        Some("tls") => "connected (TLS done), no answer yet".into(),
        Some("connect") if https => "connected, the TLS handshake did not finish".into(),
        Some("connect") => "connected, no answer yet".into(),
        Some("dns") => "resolved, could not connect yet".into(),
        _ => "not connected yet".into(),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Runs one step (bounded by [`run`], which sets the deadline and duration).
pub async fn execute(step: &Step, ctx: &mut StepCtx, ex: &mut Executors) -> StepOutcome {
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
                browser_start: None,
                request: r.request,
                http_status: r.status,
                redirects: r.redirects,
                failure: r.failure,
                exchanges: r.exchanges,
                timings: r.timings,
                span_id: None,
                captures: r.captures,
                telemetry: Default::default(),
            }
        }
        #[cfg(feature = "browser")]
        StepKind::Browser(b) => browser::execute(step, b, ctx, &mut ex.browser).await,
        #[cfg(not(feature = "browser"))]
        StepKind::Browser(_) => {
            let _ = ex;
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
