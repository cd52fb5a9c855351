//! The one integration-test binary. Each module covers one capability.

mod browser;
mod check;
mod cli;
mod hostile;
mod http;
mod rules;
mod scheduler;
mod serve;
mod serve_safety;
mod slo;
mod support;
mod trace;
