//! wayprobe: a synthetic journey prober.
//!
//! Teams write journeys (YAML files of HTTP and browser steps that script what
//! a customer does); wayprobe validates them, runs them once or on a schedule,
//! exposes what happened as Prometheus SLIs, and turns the SLOs declared next
//! to each journey into multiwindow, multi-burn-rate alerting rules.
//!
//! # Modules
//!
//! Configuration (nothing here runs anything):
//! - [`journey`]: the domain model, and loading it: YAML → spanned tree →
//!   validated [`journey::Journey`], every problem reported at once.
//! - [`diag`]: positioned diagnostics and their one renderer.
//! - [`template`]: `{{ }}` templates, parsed at load time.
//! - [`rules`]: SLOs → Prometheus recording and alerting rules, promtool tests,
//!   and the SLO explanations of `check` (depends only on `journey`).
//!
//! Running:
//! - [`run`]: one run of a journey → [`outcome::JourneyOutcome`]; shared by
//!   `run` and `serve`. A run always returns an outcome.
//! - [`step`]: everything one step needs: its context and deadline, the
//!   response, assertions (`step::expect`), captures, excerpts, and the
//!   executors (`step::http`, and `step::browser` behind the default-on
//!   `browser` feature). Dependencies flow one way: `journey` ← `step` ←
//!   `run` ← `scheduler` ← `serve` ← `cli`.
//! - [`outcome`]: step and run results, and the bounded failure [`outcome::Reason`].
//! - [`redact`]: keeping secret values out of every output.
//! - [`tls`]: one TLS configuration shared by every run's fresh client.
//! - [`trace`]: W3C trace context: one trace per run, one span per step.
//! - [`otel`]: the run's spans, tail-sampled and exported over OTLP.
//!
//! Serving:
//! - [`scheduler`]: owns time (interval, phase, jitter, timeout, skips,
//!   concurrency caps, shutdown).
//! - [`metrics`]: one long-lived registry; [`status`]: what the status page
//!   and API show, and the one place a finished run is logged and counted.
//! - [`server`]: the HTTP endpoints and their limits; [`web`]: TLS, basic
//!   auth and headers from `--web.config.file`; [`serve`]: wiring and live reload.
//! - [`shard`]: which of N `serve --shard I/N` processes runs a journey.
//! - [`init`]: a reaping init when wayprobe is a container's PID 1.
//! - [`slo_review`]: `wayprobe slo review`, each SLO's history replayed
//!   from Prometheus against a ladder of objectives; [`slo_report`]: the
//!   journey report for people (`wayprobe report`, `/report`). Both read
//!   through [`slo_prom`] with the rules' own expressions.
//! - [`cli`]: the command line; [`report`]: terminal, JUnit and JSON output;
//!   [`demo`]: the built-in demo shop.
//!
//! # Data path
//!
//! 1. `journey::load_paths` reads `journeys/*.yaml`, parses each into a
//!    spanned tree and validates it into a `Journey` (fragments files are
//!    read first; `use:` steps expand into their steps, `journey::fragment`).
//! 2. `Scheduler::apply` hands the journeys to one timer task, which spawns
//!    each run when it is due.
//! 3. At each tick, `Runner::run` gives the run its own connections
//!    (`step::timing`) and cookie jar, renders templates, and runs the
//!    steps in order under the deadline.
//! 4. `step::run` sets the step deadline; `step::http::execute` sends the
//!    request (redirects under the origin rules), then `step::judge` checks
//!    assertions and takes captures on the blocking pool; a browser step
//!    drives the run's WebDriver session.
//! 5. The `JourneyOutcome` goes to `status::Recorder::record`, which logs one
//!    line, updates the journey's series (atomics, and a short lock per
//!    exemplar-carrying series) and the status store.
//! 6. `GET /metrics` encodes the registry; Prometheus evaluates the rules
//!    `wayprobe rules` generated from the same journeys.

// `Failure` is returned by value on the cold path (at most once per step), so
// its size does not matter; boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod attempt;
#[cfg(feature = "browser")]
pub use step::browser;
pub use step::{capture, expect as assertion};
pub mod cli;
pub mod demo;
pub mod diag;
pub mod init;
pub mod journey;
pub mod metrics;
pub mod otel;
pub mod outcome;
pub mod redact;
pub mod report;
pub mod rules;
pub mod run;
pub mod scheduler;
pub mod serve;
pub mod server;
pub mod shard;
pub mod slo_prom;
pub mod slo_report;
pub mod slo_review;
pub mod slo_view;
pub mod status;
pub mod step;
pub mod template;
pub mod tls;
pub mod trace;
pub mod web;
