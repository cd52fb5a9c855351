//! The one integration-test binary. Each module covers one capability.

mod check;
mod cli;
mod http;
mod scheduler;
mod serve;
mod support;
