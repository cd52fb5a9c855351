//! What a step runs with: the run's visitor state (client, cookie jar,
//! variables, captures, redactor) and the one step deadline. Executor-own
//! state (the browser session) lives with its executor ([`crate::step::Executors`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest_cookie_store::CookieStoreMutex;

use crate::journey::Capture;
use crate::outcome::Captured;
use crate::redact::Redactor;
use crate::template::Scope;

/// Per-run state handed to every step of the run, plus the deadline of the
/// step being run (set by [`crate::step::run`], read by every executor).
pub struct StepCtx {
    /// This run's HTTP client (its own connections; cookies are the jar's).
    pub client: crate::step::timing::Client,
    /// This run's cookie jar.
    pub jar: Arc<CookieStoreMutex>,
    /// Variables, captures and secrets.
    pub scope: Arc<Scope>,
    /// Masks every secret value in output.
    pub redactor: Redactor,
    /// Keep exchanges for `--verbose`.
    pub verbose: bool,
    /// DNS, connect and TLS timings of this run's new connections.
    pub phases: crate::step::timing::Phases,
    /// The journey being run.
    pub journey: String,
    /// The run's trace and the current step's span.
    pub trace: crate::trace::RunTrace,
    /// When the current step must have finished: `min(run deadline, step
    /// start + step timeout)`, computed once by [`crate::step::run`].
    pub deadline: Instant,
}

impl StepCtx {
    /// Stores a captured value, redacting it from now on if asked; returns
    /// it as outputs may show it (redacted).
    pub fn set_capture(&mut self, c: &Capture, value: String) -> Captured {
        if c.redact {
            self.redactor.add(&value);
        }
        let shown = Captured {
            name: c.name.clone(),
            value: self.redactor.apply(&value),
        };
        Arc::make_mut(&mut self.scope)
            .captures
            .insert(c.name.clone(), value);
        shown
    }

    /// Time left until the step deadline (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}
