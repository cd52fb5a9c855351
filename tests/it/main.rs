//! The one integration-test binary. Each module covers one capability.

mod support;
mod http;
mod check;
mod cli;
