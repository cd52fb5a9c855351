//! Judging a response: the implicit status check, the assertions (status
//! first), then the captures. Parsing and matching a body can cost CPU a
//! hostile target chooses (deep HTML, wide JSON), so it runs on the blocking
//! pool, never on the async workers, and the step deadline bounds the wait
//! ([`crate::step::run`]) as well as the HTML parse itself. A small body is
//! judged in place: its parse costs less than the hand-over to the pool.

use std::sync::Arc;

use crate::journey::{Assertion, Capture, Check, HttpStep, Step};
use crate::outcome::{Failure, Reason};
use crate::redact::Redactor;
use crate::step::response::Response;
use crate::step::{capture, excerpt, expect};
use crate::template::Scope;

/// Bodies up to this many bytes are judged on the async worker itself:
/// parsing and matching them takes microseconds, while handing each to the
/// blocking pool wakes a thread (8 % of all CPU at 2,000 steps/s).
const INLINE_BODY: usize = 16 * 1024;

/// Judges `response` (off the async workers unless its body is small);
/// returns the captured values in the order of `step.captures`, or the
/// first failure.
pub async fn judge(
    step: &Step,
    http: &HttpStep,
    response: Response,
    scope: &Arc<Scope>,
    redactor: &Redactor,
) -> Result<Vec<String>, Failure> {
    if response.body.len() <= INLINE_BODY {
        return judge_now(
            &http.expect,
            &step.captures,
            &response,
            scope,
            redactor.clone(),
            step.span,
        );
    }
    let expect = http.expect.clone();
    let captures = step.captures.clone();
    let (scope, redactor, span) = (scope.clone(), redactor.clone(), step.span);
    tokio::task::spawn_blocking(move || {
        judge_now(&expect, &captures, &response, &scope, redactor, span)
    })
    .await
    .unwrap_or_else(|e| {
        Err(Failure::new(
            Reason::Internal,
            format!("judging the response failed: {e}"),
        )
        .at(span))
    })
}

/// The judging itself: pure, synchronous.
pub fn judge_now(
    expect: &[Assertion],
    captures: &[Capture],
    response: &Response,
    scope: &Arc<Scope>,
    mut redactor: Redactor,
    span: crate::diag::Span,
) -> Result<Vec<String>, Failure> {
    // Values meant to be secret are learnt before anything is shown, so no
    // failure of this step can show them; if one cannot be found, nothing of
    // the body is shown at all.
    let mut withhold = false;
    for c in captures.iter().filter(|c| c.redact) {
        match capture::extract(c, response, &redactor) {
            Ok(v) => redactor.add(&v),
            Err(_) => withhold = true,
        }
    }
    let shown = |mut f: Failure| {
        if withhold {
            f.excerpt = None;
        }
        f
    };
    let status = response.status;
    let has_status = expect.iter().any(|a| matches!(a.check, Check::Status(_)));
    if !has_status && !(200..400).contains(&status) {
        let mut f = Failure::new(
            Reason::Status,
            format!("status {status}: expected 2xx or 3xx (no `status` in `expect`)"),
        )
        .expected_actual("2xx or 3xx", status.to_string())
        .at(span);
        if !response.body.is_empty() {
            f.excerpt = Some(excerpt::response(&redactor, response, None));
        }
        return Err(shown(f));
    }
    // Status first, so "500" is reported rather than a body mismatch.
    let ordered = expect
        .iter()
        .filter(|a| matches!(a.check, Check::Status(_)))
        .chain(
            expect
                .iter()
                .filter(|a| !matches!(a.check, Check::Status(_))),
        );
    // Every failing assertion is reported: the first is the failure, the
    // others are named after it.
    let mut failed = ordered.filter_map(|a| expect::check(a, response, scope, &redactor).err());
    if let Some(mut first) = failed.next() {
        let more: Vec<String> = failed
            .map(|f| match f.location {
                Some(at) => format!("{} (at {at})", f.message),
                None => f.message,
            })
            .collect();
        if !more.is_empty() {
            first.message = format!("{}; also failing: {}", first.message, more.join("; "));
        }
        return Err(shown(first));
    }
    let mut values = Vec::with_capacity(captures.len());
    for c in captures {
        let v = capture::extract(c, response, &redactor).map_err(shown)?;
        if c.redact {
            redactor.add(&v);
        }
        values.push(v);
    }
    Ok(values)
}
