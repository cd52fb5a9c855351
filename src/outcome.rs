//! What a run produced: per-step results and the bounded failure reason.
//!
//! A run always yields a [`JourneyOutcome`]; failures are data, not errors.
//! [`Reason`] is the only failure detail that becomes a metric label, so it is
//! a closed enum; free text stays in [`Failure::message`] (already redacted).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::diag::Span;

/// Why a step failed. Fixed set: used as the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The host name did not resolve.
    Dns,
    /// The TCP connection could not be made (refused, unreachable).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// A step or the journey ran out of time.
    Timeout,
    /// The connection broke mid-response (reset, closed early).
    Reset,
    /// The peer spoke invalid HTTP.
    Protocol,
    /// The status code was not the expected one.
    Status,
    /// An assertion on headers, cookies, body, JSON or duration failed.
    Assertion,
    /// A capture found nothing.
    Capture,
    /// The body could not be parsed as JSON or HTML where needed.
    InvalidBody,
    /// The body exceeded `max_body`.
    BodyTooLarge,
    /// Too many redirects (or a redirect loop / bad Location).
    Redirect,
    /// A template could not be rendered (undefined variable at run time).
    Template,
    /// A secret could not be read.
    Secret,
    /// No WebDriver session could be had (driver down, crashed browser).
    BrowserSession,
    /// A page load failed for a cause HTTP steps have no reason for (a
    /// Chromium error such as `ERR_BLOCKED_BY_CLIENT`); network causes get
    /// `dns`, `connect`, `tls`... as in HTTP steps.
    BrowserNavigation,
    /// An element was missing, hidden or not interactable.
    BrowserElement,
    /// A script error in the page or the driver.
    BrowserScript,
    /// A bug or resource problem in wayprobe itself.
    Internal,
}

impl Reason {
    /// Every reason, for pre-declaring metric series and documentation.
    pub const ALL: &'static [Reason] = &[
        Reason::Dns,
        Reason::Connect,
        Reason::Tls,
        Reason::Timeout,
        Reason::Reset,
        Reason::Protocol,
        Reason::Status,
        Reason::Assertion,
        Reason::Capture,
        Reason::InvalidBody,
        Reason::BodyTooLarge,
        Reason::Redirect,
        Reason::Template,
        Reason::Secret,
        Reason::BrowserSession,
        Reason::BrowserNavigation,
        Reason::BrowserElement,
        Reason::BrowserScript,
        Reason::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Reset => "reset",
            Reason::Protocol => "protocol",
            Reason::Status => "status",
            Reason::Assertion => "assertion",
            Reason::Capture => "capture",
            Reason::InvalidBody => "invalid_body",
            Reason::BodyTooLarge => "body_too_large",
            Reason::Redirect => "redirect",
            Reason::Template => "template",
            Reason::Secret => "secret",
            Reason::BrowserSession => "browser_session",
            Reason::BrowserNavigation => "browser_navigation",
            Reason::BrowserElement => "browser_element",
            Reason::BrowserScript => "browser_script",
            Reason::Internal => "internal",
        }
    }
}

impl Reason {
    /// How messages open for a failure of the network or the target before
    /// a response, the same words in HTTP and browser steps; `None` for
    /// other reasons.
    pub fn network_summary(self) -> Option<&'static str> {
        Some(match self {
            Reason::Dns => "DNS lookup failed",
            Reason::Connect => "cannot connect",
            Reason::Tls => "TLS handshake failed",
            Reason::Timeout => "timed out",
            Reason::Reset => "connection broken mid-response",
            Reason::Protocol => "invalid HTTP response",
            Reason::Redirect => "too many redirects",
            _ => return None,
        })
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed step: the reason, a redacted message, and where in the YAML.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The bounded reason.
    pub reason: Reason,
    /// What went wrong, redacted.
    pub message: String,
    /// What was expected (for assertions), redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What came back, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// A short redacted excerpt of the response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    /// Where the failing assertion or step is written.
    #[serde(skip)]
    pub span: Span,
    /// `line:col` of `span`, for reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The file `location` is in when it is not the journey's own: the
    /// fragments file of a step that came from `use:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Artifacts saved for this failure (screenshots...), as paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
}

impl Failure {
    /// A failure with a reason and a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            expected: None,
            actual: None,
            excerpt: None,
            span: Span::default(),
            location: None,
            file: None,
            artifacts: Vec::new(),
        }
    }

    /// Points the failure at a place in the journey file.
    pub fn at(mut self, span: Span) -> Self {
        if !span.is_unknown() {
            self.span = span;
            self.location = Some(format!("{}:{}", span.line, span.col));
        }
        self
    }

    /// Adds expected/actual values.
    pub fn expected_actual(
        mut self,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        self.expected = Some(expected.into());
        self.actual = Some(actual.into());
        self
    }
}

/// State of one step after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It ran and every assertion held.
    Passed,
    /// It ran and failed.
    Failed,
    /// An earlier step failed, so it did not run.
    Skipped,
}

/// One request/response exchange, for `--verbose` (headers redacted).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Exchange {
    /// Method and URL (query values and URL passwords masked).
    pub request: String,
    /// Request headers (sensitive ones masked).
    pub request_headers: Vec<(String, String)>,
    /// Status line.
    pub response: String,
    /// Response headers (sensitive ones masked).
    pub response_headers: Vec<(String, String)>,
    /// Cookies the run's jar sent with the request, `name=***`: a cookie's
    /// value is a credential (a session id), so only its name is shown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_cookies: Vec<String>,
    /// The request body (text, cut), redacted the same way; multipart
    /// fields and files are named, file contents are not shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// Cookies the response set: each `Set-Cookie` as `name=***; attributes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_cookies: Vec<String>,
}

/// Timing of one browser action or page load, or one phase of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// What was timed (`goto /shop`, `click #checkout`, `dns`...): a clean
    /// name, never padded for display.
    pub name: String,
    /// Milliseconds.
    pub ms: f64,
    /// The action this is a phase of (the page load of `goto /shop` has
    /// `dns`, `connect`... from the browser's Navigation Timing); outputs
    /// show it nested under that action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
}

impl Timing {
    /// A top-level timing.
    pub fn new(name: impl Into<String>, ms: f64) -> Self {
        Self {
            name: name.into(),
            ms,
            within: None,
        }
    }
}

/// A value a step captured into a variable, as outputs show it.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    /// The variable's name.
    pub name: String,
    /// The value, redacted: masked whole when the capture has `redact: true`,
    /// and wherever a secret's value appears in it.
    pub value: String,
}

/// The result of one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    /// Step name.
    pub name: String,
    /// `http` or `browser`.
    pub kind: &'static str,
    /// Passed, failed or skipped.
    pub status: StepStatus,
    /// Time the step spent on the target: its wall time less
    /// `browser_start`. This is what `journey_step_duration_seconds` observes.
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Time to get the run's browser session, when this step opened it
    /// (waiting for a free browser slot, starting chromedriver if needed,
    /// starting Chromium): reported on its own and kept out of `duration`
    /// and of every SLI, as it is the prober's time, not the target's.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_secs"
    )]
    pub browser_start: Option<Duration>,
    /// `METHOD URL` of the (first) request, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Final HTTP status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Redirects followed.
    #[serde(skip_serializing_if = "is_zero")]
    pub redirects: u32,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Request/response details (only with `--verbose`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<Exchange>,
    /// Action and navigation timings (browser steps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timings: Vec<Timing>,
    /// The step's span id (16 hex digits): the parent of its requests'
    /// client spans (whose ids their `traceparent` carries) and the parent id
    /// in the `traceparent` of a browser step's requests; none for a step
    /// that did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Values captured by this step, in the order they were taken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<Captured>,
    /// What the step's spans need beyond the above (never serialized).
    #[serde(skip)]
    pub telemetry: StepTelemetry,
}

/// When a step started and the client spans of its HTTP requests, for the
/// run's exported trace ([`crate::otel`]).
#[derive(Debug, Clone, Default)]
pub struct StepTelemetry {
    /// When the step started; `None` for a step that did not run.
    pub started_at: Option<SystemTime>,
    /// One client span per request sent (redirect hops included).
    pub requests: Vec<crate::trace::RequestSpan>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6)
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_secs(d, s),
        None => s.serialize_none(),
    }
}

impl StepOutcome {
    /// A step that did not run because an earlier one failed.
    pub fn skipped(name: &str, kind: &'static str) -> Self {
        Self {
            name: name.to_string(),
            kind,
            status: StepStatus::Skipped,
            duration: Duration::ZERO,
            browser_start: None,
            request: None,
            http_status: None,
            redirects: 0,
            failure: None,
            exchanges: Vec::new(),
            timings: Vec::new(),
            span_id: None,
            captures: Vec::new(),
            telemetry: StepTelemetry::default(),
        }
    }
}

/// Whether a run succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Every step passed.
    Success,
    /// A step failed or the run timed out.
    Failure,
}

impl RunResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
        }
    }
}

fn is_first_attempt(n: &u32) -> bool {
    *n <= 1
}

/// The outcome of one journey run.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyOutcome {
    /// Journey name.
    pub journey: String,
    /// Success or failure.
    pub result: RunResult,
    /// When the run started.
    #[serde(serialize_with = "ser_time")]
    pub started_at: SystemTime,
    /// Wall time of the whole run, browser start-up included (see
    /// [`JourneyOutcome::sli_duration`]).
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Attempts made (1: no retry). A run that needed a retry (`retries:`)
    /// says so in every report, so a retry never hides the first failure;
    /// `duration` and `steps` are the last attempt's.
    #[serde(skip_serializing_if = "is_first_attempt")]
    pub attempts: u32,
    /// Every step, in order (skipped ones included).
    pub steps: Vec<StepOutcome>,
    /// The `finally:` steps, run after `steps` whatever happened; their
    /// failures are reported here and never change `result` or `duration`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<StepOutcome>,
    /// The run's W3C trace id (32 hex digits); none when the backstop
    /// stopped the run before it reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The trace in a tracing UI, from `--trace-url-template`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
}

impl JourneyOutcome {
    /// The first failed step, if any.
    pub fn failed_step(&self) -> Option<&StepOutcome> {
        self.steps.iter().find(|s| s.status == StepStatus::Failed)
    }

    /// The failure that decided the run.
    pub fn failure(&self) -> Option<&Failure> {
        self.failed_step().and_then(|s| s.failure.as_ref())
    }

    /// The failed `finally:` step, if any (it does not fail the run).
    pub fn failed_cleanup(&self) -> Option<&StepOutcome> {
        self.finally.iter().find(|s| s.status == StepStatus::Failed)
    }

    /// Time spent getting browser sessions in this run (see
    /// [`StepOutcome::browser_start`]).
    pub fn browser_start(&self) -> Duration {
        self.steps.iter().filter_map(|s| s.browser_start).sum()
    }

    /// The run's duration as SLIs see it: its wall time less browser
    /// start-up (`journey_duration_seconds`, latency SLOs).
    pub fn sli_duration(&self) -> Duration {
        self.duration.saturating_sub(self.browser_start())
    }
}
