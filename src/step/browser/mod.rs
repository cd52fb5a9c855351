//! Browser steps over W3C WebDriver (fantoccini), sharing the run's session.
//!
//! A run opens one WebDriver session (a clean profile, like a new visitor) at
//! its first browser step and always closes it. Before each browser step the
//! run's HTTP cookies go into the browser (Chrome DevTools `Network.setCookies`,
//! so no navigation is needed), and after it the browser's cookies come back
//! into the jar, so API login → browser page → API check is one session.
//!
//! Every WebDriver call is bounded by a timeout: a hung driver fails the run,
//! it never hangs the prober. The parts: [`driver`] (chromedriver
//! supervision), [`session`] (one run's session and its cookies), `actions`
//! (what a step does in the page), [`artifacts`] (failure screenshots).

mod actions;
pub mod artifacts;
mod call;
pub mod driver;
mod intercept;
pub mod session;

use std::time::{Duration, Instant};

use crate::journey::{BrowserStep, Step};
use crate::outcome::{Failure, Reason, StepOutcome, StepStatus, Timing};
use crate::step::context::StepCtx;

pub use artifacts::artifact_path;
pub use driver::{Browser, BrowserConfig};
pub use session::Session;

/// The browser side of one run: the endpoint, and the session the first
/// browser step opens (closed by [`RunBrowser::finish`]).
#[derive(Default)]
pub struct RunBrowser {
    endpoint: Option<Browser>,
    session: Option<Session>,
}

impl RunBrowser {
    /// A run's browser state; no session until a browser step needs one.
    pub fn new(endpoint: Option<Browser>) -> Self {
        Self {
            endpoint,
            session: None,
        }
    }

    /// Closes the run's session, if one was opened (bounded).
    pub async fn finish(&mut self) {
        if let Some(s) = self.session.take() {
            s.close().await;
        }
    }
}

/// Characters of a browser failure message kept (WebDriver errors can be long).
const MESSAGE_CHARS: usize = 400;

/// Runs one browser step in the run's session, within the step deadline.
pub async fn execute(
    step: &Step,
    b: &BrowserStep,
    ctx: &mut StepCtx,
    run: &mut RunBrowser,
) -> StepOutcome {
    let limit = ctx.remaining();
    let mut out = StepOutcome {
        status: StepStatus::Passed,
        ..StepOutcome::skipped(&step.name, "browser")
    };
    let Some(browser) = run.endpoint.clone() else {
        out.status = StepStatus::Failed;
        out.failure = Some(
            Failure::new(Reason::BrowserSession, "no browser configured for this run")
                .at(step.span),
        );
        return out;
    };
    // Keep a little of the step's time to save failure artifacts.
    let reserve = (limit / 4).min(Duration::from_secs(3));
    let deadline = Instant::now() + limit.saturating_sub(reserve);
    if run.session.is_none() {
        match browser.open(limit).await {
            Ok(s) => run.session = Some(s),
            Err(f) => {
                out.status = StepStatus::Failed;
                out.failure = Some(f.at(step.span));
                return out;
            }
        }
    }
    let client = run
        .session
        .as_ref()
        .map(|s| s.client.clone())
        .expect("opened above");
    if let Some(b) = run.session.as_ref().and_then(|s| s.interceptor.as_ref())
        && let Err(e) = b.follow(&ctx.trace).await
    {
        tracing::warn!(journey = %ctx.journey, error = %e, "cannot intercept the page's requests: they carry no traceparent");
    }
    session::push_cookies(ctx, &client).await;
    for a in &b.actions {
        let left = deadline.saturating_duration_since(Instant::now());
        let t = a.timeout.map_or(left, |t| t.min(left));
        let started = Instant::now();
        let (label, res) = actions::run_action(
            &a.kind,
            &browser.config().artifacts_dir,
            ctx,
            &client,
            t,
            &mut out,
        )
        .await;
        out.timings.push(Timing {
            name: ctx.redactor.apply(&label),
            ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        if let Err(mut f) = res {
            f.message = crate::step::excerpt::shape(&ctx.redactor, &f.message, MESSAGE_CHARS);
            f = f.at(a.span);
            let budget = reserve.max(Duration::from_secs(2));
            f.artifacts = tokio::time::timeout(
                budget,
                artifacts::save_artifacts(&browser, ctx, &step.name, &client, &f),
            )
            .await
            .unwrap_or_default();
            if f.reason == Reason::BrowserSession {
                // The session is gone; the next browser step needs a new one.
                if let Some(s) = run.session.take() {
                    drop(s);
                }
            }
            out.status = StepStatus::Failed;
            out.failure = Some(f);
            return out;
        }
    }
    session::pull_cookies(ctx, &client).await;
    out
}
