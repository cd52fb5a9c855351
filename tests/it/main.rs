//! The one integration-test binary. Each module covers one capability.

mod check;
mod cli;
mod http;
mod support;
