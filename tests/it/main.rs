//! The one integration-test binary. Each module covers one capability.

mod browser;
mod check;
mod cli;
mod hostile;
mod http;
mod rules;
mod scheduler;
mod serve;
mod slo;
mod support;
