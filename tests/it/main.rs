//! The one integration-test binary. Each module covers one capability.

#[cfg(feature = "browser")]
mod browser;
mod check;
mod cli;
mod drift;
mod expect;
mod fleet;
mod hostile;
mod http;
mod output;
#[cfg(feature = "browser")]
mod pid1;
mod reuse;
mod review;
mod rules;
mod scheduler;
mod schema;
mod serve;
mod serve_safety;
mod shards;
mod slo;
mod support;
mod trace;
mod usage;
