//! wayprobe (being written)
// `Failure` is returned by value on the cold path (at most once per step), so
// its size does not matter; boxing it would only add noise.
#![allow(clippy::result_large_err)]
pub mod assertion;
#[cfg(feature = "browser")]
pub mod browser;
pub mod capture;
pub mod cli;
pub mod demo;
pub mod diag;
pub mod journey;
pub mod metrics;
pub mod outcome;
pub mod redact;
pub mod report;
pub mod rules;
pub mod run;
pub mod scheduler;
pub mod serve;
pub mod server;
pub mod status;
pub mod step;
pub mod template;
pub mod tls;
