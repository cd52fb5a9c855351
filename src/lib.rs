//! wayprobe (being written)
pub mod assertion;
pub mod capture;
pub mod cli;
pub mod demo;
pub mod diag;
pub mod journey;
pub mod outcome;
pub mod redact;
pub mod report;
pub mod run;
pub mod step;
pub mod template;
