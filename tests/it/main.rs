//! The one integration-test binary. Each module covers one capability.

#[cfg(feature = "browser")]
mod browser;
mod check;
mod cli;
mod drift;
mod expect;
mod hostile;
mod http;
#[cfg(feature = "browser")]
mod pid1;
mod review;
mod rules;
mod scheduler;
mod serve;
mod serve_safety;
mod slo;
mod support;
mod trace;
