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

use crate::journey::{Capture, Journey, SecretSource};
use crate::outcome::{Failure, JourneyOutcome, Reason, RunResult, StepOutcome, StepStatus};
use crate::redact::Redactor;
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
}

/// Runs journeys. Cheap to clone; holds only shared configuration.
#[derive(Clone)]
pub struct Runner {
    opts: Arc<RunOptions>,
    tls: Arc<crate::tls::TlsCache>,
    #[cfg(feature = "browser")]
    browser: Option<crate::browser::Browser>,
}

/// Per-run state handed to step executors.
pub struct RunCtx {
    /// This run's HTTP client (fresh connections and cookie jar).
    pub client: reqwest::Client,
    /// This run's cookie jar.
    pub jar: Arc<CookieStoreMutex>,
    /// Variables, captures and secrets.
    pub scope: Arc<Scope>,
    /// Masks every secret value in output.
    pub redactor: Redactor,
    /// Keep exchanges for `--verbose`.
    pub verbose: bool,
    /// DNS and connect timings of this run's new connections.
    pub phases: crate::step::timing::Phases,
    /// The journey being run.
    pub journey: String,
    /// The browser session of this run, opened by the first browser step.
    #[cfg(feature = "browser")]
    pub browser: Option<crate::browser::Session>,
}

impl RunCtx {
    /// Stores a captured value, redacting it from now on if asked.
    pub fn set_capture(&mut self, c: &Capture, value: String) {
        if c.redact {
            self.redactor.add(&value);
        }
        Arc::make_mut(&mut self.scope)
            .captures
            .insert(c.name.clone(), value);
    }
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
        }
    }

    /// Adds a WebDriver endpoint for browser steps.
    #[cfg(feature = "browser")]
    pub fn with_browser(mut self, browser: crate::browser::Browser) -> Self {
        self.browser = Some(browser);
        self
    }

    /// The options this runner was made with.
    pub fn options(&self) -> &RunOptions {
        &self.opts
    }

    fn resolve_secrets(&self, journey: &Journey) -> Result<BTreeMap<String, String>, Failure> {
        let mut out = BTreeMap::new();
        for (name, src) in &journey.secrets {
            let value = match src {
                SecretSource::Env(var) => self
                    .opts
                    .env_overrides
                    .get(var)
                    .cloned()
                    .or_else(|| std::env::var(var).ok())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        Failure::new(
                            Reason::Secret,
                            format!("secret `{name}`: environment variable `{var}` is not set"),
                        )
                    })?,
                SecretSource::File(path) => std::fs::read_to_string(path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| {
                        Failure::new(
                            Reason::Secret,
                            format!("secret `{name}`: cannot read `{}`: {e}", path.display()),
                        )
                    })?,
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }

    fn client(
        &self,
        journey: &Journey,
        jar: Arc<CookieStoreMutex>,
        phases: &crate::step::timing::Phases,
    ) -> Result<reqwest::Client, Failure> {
        let tls = self
            .tls
            .config(&journey.tls)
            .map_err(|e| Failure::new(Reason::Tls, e.to_string()))?;
        reqwest::Client::builder()
            .cookie_provider(jar)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .connect_timeout(journey.timeout)
            .tls_backend_preconfigured(tls)
            .dns_resolver(phases.resolver())
            .connector_layer(phases.layer())
            .build()
            .map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("cannot build the HTTP client: {e}"),
                )
            })
    }

    /// Runs `journey` once and returns its outcome. Never fails, never hangs:
    /// every step is bounded by its timeout and by the journey's deadline.
    pub async fn run(&self, journey: &Journey) -> JourneyOutcome {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let deadline = start + journey.timeout;
        let mut steps = Vec::with_capacity(journey.steps.len());

        let setup = self.resolve_secrets(journey).and_then(|secrets| {
            let jar = Arc::new(CookieStoreMutex::new(cookie_store::CookieStore::default()));
            let phases = crate::step::timing::Phases::default();
            let client = self.client(journey, jar.clone(), &phases)?;
            let mut redactor = Redactor::default();
            for v in secrets.values() {
                redactor.add(v);
            }
            Ok(RunCtx {
                client,
                jar,
                scope: Arc::new(Scope {
                    vars: journey.vars.clone(),
                    captures: BTreeMap::new(),
                    secrets,
                }),
                redactor,
                verbose: self.opts.verbose,
                phases,
                journey: journey.name.clone(),
                #[cfg(feature = "browser")]
                browser: None,
            })
        });
        let mut ctx = match setup {
            Ok(ctx) => ctx,
            Err(f) => {
                // Nothing can run without its secrets: fail the first step.
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
                    journey: journey.name.clone(),
                    result: RunResult::Failure,
                    started_at,
                    duration: start.elapsed(),
                    steps,
                };
            }
        };

        let mut failed = false;
        for step in &journey.steps {
            if failed {
                steps.push(StepOutcome::skipped(&step.name, step.kind_name()));
                continue;
            }
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            let step_limit = step.timeout.unwrap_or(journey.timeout);
            let limit = step_limit.min(remaining);
            let t0 = Instant::now();
            let res =
                tokio::time::timeout(limit, crate::step::execute(step, &mut ctx, self, limit))
                    .await;
            let duration = t0.elapsed();
            let outcome = match res {
                Ok(mut o) => {
                    o.duration = duration;
                    o
                }
                Err(_) => {
                    let msg = if limit < step_limit {
                        format!(
                            "journey timeout ({}) reached during this step",
                            humantime::format_duration(journey.timeout)
                        )
                    } else {
                        format!(
                            "step did not finish within {}",
                            humantime::format_duration(round_ms(limit))
                        )
                    };
                    StepOutcome {
                        status: StepStatus::Failed,
                        duration,
                        failure: Some(Failure::new(Reason::Timeout, msg).at(step.span)),
                        ..StepOutcome::skipped(&step.name, step.kind_name())
                    }
                }
            };
            failed = outcome.status == StepStatus::Failed;
            steps.push(outcome);
        }
        #[cfg(feature = "browser")]
        crate::browser::finish(&mut ctx).await;

        JourneyOutcome {
            journey: journey.name.clone(),
            result: if failed {
                RunResult::Failure
            } else {
                RunResult::Success
            },
            started_at,
            duration: start.elapsed(),
            steps,
        }
    }

    /// The browser endpoint, if configured.
    #[cfg(feature = "browser")]
    pub fn browser(&self) -> Option<&crate::browser::Browser> {
        self.browser.as_ref()
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
