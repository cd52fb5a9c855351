//! The one integration-test binary. Each module covers one capability.

#[cfg(feature = "browser")]
mod browser;
mod check;
mod cli;
mod expect;
mod http;
mod rules;
mod scheduler;
mod serve;
mod slo;
mod support;
