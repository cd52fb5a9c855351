//! The one integration-test binary. Each module covers one capability.

mod browser;
mod check;
mod cli;
mod drift;
mod http;
mod pid1;
mod rules;
mod scheduler;
mod serve;
mod slo;
mod support;
