//! Running a journey once: the same code serves `wayprobe run` and `serve`.
//!
//! A run gets a fresh HTTP client and cookie jar (a new visitor), resolves its
//! secrets, runs the steps in order under the journey's deadline, and always
//! returns a [`JourneyOutcome`]: a dead host, a hung server or a missing
//! secret is a failed step with a reason, never an error or a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest_cookie_store::CookieStoreMutex;

use crate::journey::fragment::Bindings;
use crate::journey::{Journey, SecretSource};
use crate::outcome::{Failure, JourneyOutcome, Reason, RunResult, StepOutcome, StepStatus};
use crate::redact::Redactor;
use crate::step::StepCtx;
use crate::template::Scope;

/// Settings shared by every run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep request/response headers in the outcome (`--verbose`).
    pub verbose: bool,
    /// Values for `{env: NAME}` secrets that take precedence over the process
    /// environment (used by `wayprobe demo` for the demo password).
    pub env_overrides: BTreeMap<String, String>,
    /// Where browser failure artifacts are written.
    pub artifacts_dir: Option<PathBuf>,
    /// `--trace-url-template`: a URL with `{trace_id}`, linked from reports.
    pub trace_url_template: Option<String>,
}

/// Runs journeys. Cheap to clone; holds only shared configuration.
#[derive(Clone)]
pub struct Runner {
    opts: Arc<RunOptions>,
    tls: Arc<crate::tls::TlsCache>,
    #[cfg(feature = "browser")]
    browser: Option<crate::step::browser::Browser>,
    /// Where finished runs' spans go (`--otlp-endpoint`).
    exporter: Option<crate::otel::Exporter>,
}

/// The User-Agent every request carries, so targets can tell probe traffic.
pub const USER_AGENT: &str = concat!("wayprobe/", env!("CARGO_PKG_VERSION"));

impl Runner {
    /// A runner with these options.
    pub fn new(opts: RunOptions) -> Self {
        Self {
            opts: Arc::new(opts),
            tls: Arc::default(),
            #[cfg(feature = "browser")]
            browser: None,
            exporter: None,
        }
    }

    /// Exports each run's spans (tail-sampled) through `exporter`.
    pub fn with_exporter(mut self, exporter: crate::otel::Exporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// The span exporter, if any.
    pub fn exporter(&self) -> Option<&crate::otel::Exporter> {
        self.exporter.as_ref()
    }

    /// Adds a WebDriver endpoint for browser steps.
    #[cfg(feature = "browser")]
    pub fn with_browser(mut self, browser: crate::step::browser::Browser) -> Self {
        self.browser = Some(browser);
        self
    }

    /// The options this runner was made with.
    pub fn options(&self) -> &RunOptions {
        &self.opts
    }

    /// Reads every secret of the journey: the values, and for each secret
    /// that cannot be read, why. A missing secret fails the step that first
    /// uses it (see [`crate::step::run`]), not the whole run up front.
    fn resolve_secrets(
        &self,
        journey: &Journey,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut values = BTreeMap::new();
        let mut unavailable = BTreeMap::new();
        for (name, src) in &journey.secrets {
            let value = match src {
                SecretSource::Env(var) => self
                    .opts
                    .env_overrides
                    .get(var)
                    .cloned()
                    .or_else(|| std::env::var(var).ok())
                    .ok_or_else(|| format!("environment variable `{var}` is not set"))
                    .and_then(|v| {
                        // An empty secret would mask nothing and send nothing.
                        if v.is_empty() {
                            Err(format!("environment variable `{var}` is empty"))
                        } else {
                            Ok(v)
                        }
                    }),
                SecretSource::File(path) => std::fs::read_to_string(path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| format!("cannot read `{}`: {e}", path.display())),
            };
            match value {
                Ok(v) => values.insert(name.clone(), v),
                Err(why) => unavailable.insert(name.clone(), why),
            };
        }
        (values, unavailable)
    }

    /// A new visitor's HTTP client: its own connections (none yet) over the
    /// TLS configuration shared by every run with the same `tls:` settings.
    fn client(
        &self,
        journey: &Journey,
        phases: &crate::step::timing::Phases,
    ) -> Result<crate::step::timing::Client, Failure> {
        let tls = self
            .tls
            .config(&journey.tls)
            .map_err(|e| Failure::new(Reason::Tls, e.to_string()))?;
        Ok(crate::step::timing::client(tls, phases.clone()))
    }

    /// Runs `journey` once and returns its outcome. Never fails, never hangs:
    /// every step is bounded by its timeout and by the journey's deadline.
    /// The run's spans are handed to the exporter (never waiting for it).
    pub async fn run(&self, journey: &Journey) -> JourneyOutcome {
        let o = self.run_steps(journey).await;
        if let Some(e) = &self.exporter {
            e.offer(&o);
        }
        o
    }

    async fn run_steps(&self, journey: &Journey) -> JourneyOutcome {
        let started_at = SystemTime::now();
        let start = Instant::now();
        // Validation bounds the timeout; saturate anyway so no journey can panic here.
        let deadline = start.checked_add(journey.timeout).unwrap_or(start);
        let mut steps = Vec::with_capacity(journey.steps.len());
        let trace = crate::trace::RunTrace::new(&journey.trace);
        let trace_id = Some(trace.trace_id.clone());
        let trace_url = self
            .opts
            .trace_url_template
            .as_deref()
            .map(|t| crate::trace::trace_url(t, &trace.trace_id));

        let (secrets, unavailable) = self.resolve_secrets(journey);
        let setup = (|| -> Result<StepCtx, Failure> {
            let jar = Arc::new(CookieStoreMutex::new(cookie_store::CookieStore::default()));
            let phases = crate::step::timing::Phases::default();
            let client = self.client(journey, &phases)?;
            let mut redactor = Redactor::default();
            for v in secrets.values() {
                redactor.add(v);
            }
            Ok(StepCtx {
                client,
                jar,
                scope: Arc::new(Scope {
                    vars: journey.vars.clone(),
                    captures: BTreeMap::new(),
                    secrets,
                    params: BTreeMap::new(),
                    unavailable,
                }),
                redactor,
                verbose: self.opts.verbose,
                phases,
                journey: journey.name.clone(),
                trace,
                deadline,
            })
        })();
        let mut ctx = match setup {
            Ok(ctx) => ctx,
            Err(f) => {
                // Nothing can run without an HTTP client: fail the first step.
                for (i, s) in journey.steps.iter().enumerate() {
                    if i == 0 {
                        steps.push(StepOutcome {
                            status: StepStatus::Failed,
                            failure: Some(f.clone().at(s.span)),
                            ..StepOutcome::skipped(&s.name, s.kind_name())
                        });
                    } else {
                        steps.push(StepOutcome::skipped(&s.name, s.kind_name()));
                    }
                }
                return JourneyOutcome {
                    attempts: 1,
                    journey: journey.name.clone(),
                    result: RunResult::Failure,
                    started_at,
                    duration: start.elapsed(),
                    steps,
                    // Cleanup without the secrets cannot log in either.
                    finally: skipped(&journey.finally),
                    trace_id,
                    trace_url,
                };
            }
        };

        // The default `propagate_to`: every origin the steps' URLs name, as
        // far as they render before the run (a URL built from a capture
        // joins when its step runs).
        for s in &journey.steps {
            let urls: Vec<&crate::template::Template> = match &s.kind {
                crate::journey::StepKind::Http(h) => vec![&h.url],
                // A browser step's page loads: the page's own requests to
                // these origins carry the trace too.
                crate::journey::StepKind::Browser(b) => b
                    .actions
                    .iter()
                    .filter_map(|a| match &a.kind {
                        crate::journey::ActionKind::Goto(t) => Some(t),
                        _ => None,
                    })
                    .collect(),
            };
            for t in urls {
                if let Ok(u) = t.render(&ctx.scope)
                    && let Ok(u) = url::Url::parse(&u)
                {
                    ctx.trace.called(&u);
                }
            }
        }
        let mut ex = crate::step::Executors {
            #[cfg(feature = "browser")]
            browser: crate::step::browser::RunBrowser::new(self.browser.clone()),
        };
        let mut bindings = Bindings::default();
        let mut failed = false;
        for step in &journey.steps {
            if failed {
                steps.push(StepOutcome::skipped(&step.name, step.kind_name()));
                continue;
            }
            let outcome = run_step(
                step,
                &mut ctx,
                &mut ex,
                &mut bindings,
                deadline,
                journey.timeout,
            )
            .await;
            failed = outcome.status == StepStatus::Failed;
            steps.push(outcome);
        }
        // The run's result and duration (the SLIs) end here: `finally:`
        // cleans up after them and cannot change them.
        let duration = start.elapsed();

        // `finally:` runs whatever happened, with its own bounded budget
        // after the run's deadline, in order until one fails.
        let budget = journey.finally_budget();
        let finally_deadline = deadline.checked_add(budget).unwrap_or(deadline);
        let mut finally = Vec::with_capacity(journey.finally.len());
        let mut cleanup_failed = false;
        for step in &journey.finally {
            if cleanup_failed {
                finally.push(StepOutcome::skipped(&step.name, step.kind_name()));
                continue;
            }
            let mut outcome = run_step(
                step,
                &mut ctx,
                &mut ex,
                &mut bindings,
                finally_deadline,
                budget,
            )
            .await;
            if let Some(f) = outcome.failure.as_mut()
                && f.reason == Reason::Timeout
                && f.message.starts_with("journey timeout")
            {
                f.message = format!(
                    "the `finally:` budget ({}) ran out during this step",
                    humantime::format_duration(budget)
                );
            }
            cleanup_failed = outcome.status == StepStatus::Failed;
            finally.push(outcome);
        }
        ex.finish().await;

        JourneyOutcome {
            attempts: 1,
            journey: journey.name.clone(),
            result: if failed {
                RunResult::Failure
            } else {
                RunResult::Success
            },
            started_at,
            duration,
            steps,
            finally,
            trace_id,
            trace_url,
        }
    }

    /// The browser endpoint, if configured.
    #[cfg(feature = "browser")]
    pub fn browser(&self) -> Option<&crate::step::browser::Browser> {
        self.browser.as_ref()
    }
}

/// Runs one step after binding the `params` of the fragment it comes from.
async fn run_step(
    step: &crate::journey::Step,
    ctx: &mut StepCtx,
    ex: &mut crate::step::Executors,
    bindings: &mut Bindings,
    deadline: Instant,
    timeout: Duration,
) -> StepOutcome {
    let mut outcome = match bindings.enter(step.fragment.as_ref(), &mut ctx.scope) {
        Ok(()) => crate::step::run(step, ctx, ex, deadline, timeout).await,
        Err(e) => {
            let reason = if e.secret.is_some() {
                Reason::Secret
            } else {
                Reason::Template
            };
            let mut f = Failure::new(reason, ctx.redactor.apply(&e.message)).at(e.span);
            // The value is written at the `use:`, not in the fragment.
            f.file = Some(e.file.path.display().to_string());
            return StepOutcome {
                status: StepStatus::Failed,
                failure: Some(f),
                ..StepOutcome::skipped(&step.name, step.kind_name())
            };
        }
    };
    if let (Some(u), Some(f)) = (&step.fragment, outcome.failure.as_mut()) {
        f.file = Some(u.file.path.display().to_string());
    }
    outcome
}

fn skipped(steps: &[crate::journey::Step]) -> Vec<StepOutcome> {
    steps
        .iter()
        .map(|s| StepOutcome::skipped(&s.name, s.kind_name()))
        .collect()
}

/// The grace a caller adds to a run's own budget before it gives up on it:
/// closing a browser session is bounded by 5 s, and a little more for the outcome.
pub const RUN_GRACE: Duration = Duration::from_secs(6);

/// The outcome of a run the backstop had to stop.
pub fn timed_out(j: &Journey, started: SystemTime, after: Duration) -> JourneyOutcome {
    let steps = j
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                StepOutcome {
                    status: StepStatus::Failed,
                    failure: Some(
                        Failure::new(
                            Reason::Timeout,
                            format!(
                                "the run did not finish within {}",
                                crate::diag::duration(after)
                            ),
                        )
                        .at(s.span),
                    ),
                    ..StepOutcome::skipped(&s.name, s.kind_name())
                }
            } else {
                StepOutcome::skipped(&s.name, s.kind_name())
            }
        })
        .collect();
    JourneyOutcome {
        attempts: 1,
        journey: j.name.clone(),
        result: RunResult::Failure,
        started_at: started,
        duration: after,
        steps,
        finally: skipped(&j.finally),
        trace_id: None,
        trace_url: None,
    }
}
