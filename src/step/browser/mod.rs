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

use crate::journey::{ActionKind, BrowserExpect, BrowserStep, Step};
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
    /// The time origin of the last document seen, so a navigation (by
    /// `goto`, a click, a submitted form) is noticed once.
    document: Option<f64>,
}

impl RunBrowser {
    /// A run's browser state; no session until a browser step needs one.
    pub fn new(endpoint: Option<Browser>) -> Self {
        Self {
            endpoint,
            session: None,
            document: None,
        }
    }

    /// Closes the run's session, if one was opened (bounded).
    pub async fn finish(&mut self) {
        if let Some(s) = self.session.take() {
            s.close().await;
        }
    }
}

/// After an action: if the browser is on a new document, records its
/// status (the step's `http_status`) and returns its verdict: a 4xx/5xx
/// page fails with `status`, a browser error page with the reason of its
/// network error, as in HTTP steps. `None`: still the same document.
async fn landed(
    run: &mut RunBrowser,
    client: &fantoccini::Client,
    kind: &ActionKind,
    ctx: &StepCtx,
    out: &mut StepOutcome,
) -> Option<Result<(), Failure>> {
    let doc = actions::document(client).await.ok()?;
    if run.document == Some(doc.origin) {
        return None;
    }
    run.document = Some(doc.origin);
    let url = crate::step::excerpt::url(&ctx.redactor, &doc.url);
    if let Some(code) = &doc.error {
        let reason = call::net_reason(code);
        let what = reason.network_summary().unwrap_or("the page did not load");
        // An error page's own URL says nothing; a `goto` knows where it went.
        let wanted = match kind {
            ActionKind::Goto(u) => u.render(&ctx.scope).ok().map(|u| u.into_owned()),
            _ => None,
        };
        let whence = match wanted {
            Some(u) => format!("GET {}", crate::step::excerpt::url(&ctx.redactor, &u)),
            None => "the browser shows its error page".into(),
        };
        return Some(Err(Failure::new(
            reason,
            format!("{what}: net::{code} ({whence})"),
        )));
    }
    let status = doc.status?;
    out.http_status = Some(status);
    if status < 400 {
        return Some(Ok(()));
    }
    let mut f = Failure::new(
        Reason::Status,
        format!(
            "status {status} from {url}: expected 2xx or 3xx (no `expect: {{status: ...}}` right after this action)"
        ),
    )
    .expected_actual("2xx or 3xx", status.to_string());
    f.excerpt = actions::page_excerpt(client, ctx).await;
    Some(Err(f))
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
        // The prober's own time, not the target's: kept apart (see
        // `StepOutcome::browser_start`).
        let started = Instant::now();
        let opened = browser.open(limit).await;
        out.browser_start = Some(started.elapsed());
        run.document = None;
        match opened {
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
    // Whether the last action landed on a new document (see the end).
    let mut loaded = false;
    for (i, a) in b.actions.iter().enumerate() {
        let seen = run.document;
        let left = deadline.saturating_duration_since(Instant::now());
        let t = a.timeout.map_or(left, |t| t.min(left));
        let started = Instant::now();
        // The action's timing goes before the page-load phases it records.
        let first = out.timings.len();
        let (label, res) = actions::run_action(
            &a.kind,
            &browser.config().artifacts_dir,
            ctx,
            &client,
            t,
            &mut out,
        )
        .await;
        out.timings.insert(
            first,
            Timing::new(
                ctx.redactor.apply(&label),
                started.elapsed().as_secs_f64() * 1000.0,
            ),
        );
        // An `expect: {status: ...}` right after this action judges the
        // status of the page it lands on; so does this action if it is one
        // (a form's navigation may commit only after the click returned).
        let judges_status =
            |k: &ActionKind| matches!(k, ActionKind::Expect(BrowserExpect::Status(_)));
        let status_expected =
            judges_status(&a.kind) || b.actions.get(i + 1).is_some_and(|n| judges_status(&n.kind));
        // Only an action that can load a page (or one that failed, where
        // the page may explain why) costs a look at the document.
        let navigates = matches!(
            a.kind,
            ActionKind::Goto(_)
                | ActionKind::Click(_)
                | ActionKind::Press { .. }
                | ActionKind::Select { .. }
                | ActionKind::WaitFor(_)
        ) || judges_status(&a.kind);
        let page = if navigates || res.is_err() {
            landed(run, &client, &a.kind, ctx, &mut out).await
        } else {
            None
        };
        loaded = run.document != seen;
        let res = match (res, page) {
            (res, None) => res,
            // A failed page load already says why, and has no status
            // (what the browser shows instead is not the page asked for).
            (Err(f), _) if matches!(a.kind, ActionKind::Goto(_)) => {
                out.http_status = None;
                Err(f)
            }
            // The page it landed on explains the failure better than
            // what the action saw there ("element not found").
            (Err(f), Some(page)) => Err(page.err().unwrap_or(f)),
            (Ok(()), Some(Err(f))) if f.reason == Reason::Status && status_expected => Ok(()),
            (Ok(()), Some(page)) => page,
        };
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
    // A click, key press or select that ends the step may start a page load
    // that commits only after it returned (a form post): look again, briefly,
    // so that page's status is judged by this step and not lost to the next
    // step's `goto`. Stops at the first new document; at most SETTLE.
    if let Some(last) = b.actions.last()
        && !loaded
        && matches!(
            last.kind,
            ActionKind::Click(_) | ActionKind::Press { .. } | ActionKind::Select { .. }
        )
    {
        let until = (Instant::now() + SETTLE).min(deadline);
        loop {
            let before = run.document;
            let page = landed(run, &client, &last.kind, ctx, &mut out).await;
            if let Some(Err(mut f)) = page {
                f.message = crate::step::excerpt::shape(&ctx.redactor, &f.message, MESSAGE_CHARS);
                f = f.at(last.span);
                out.status = StepStatus::Failed;
                out.failure = Some(f);
                return out;
            }
            if run.document != before || Instant::now() + SETTLE_POLL > until {
                break;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
    session::pull_cookies(ctx, &client).await;
    out
}

/// How long a step that ends with a click waits for a page load the click
/// may have started (see the end of [`execute`]).
const SETTLE: Duration = Duration::from_millis(500);
/// How often it looks meanwhile.
const SETTLE_POLL: Duration = Duration::from_millis(100);
