//! The side-by-side benchmark of bench/README.md: one binary with four roles,
//! each run as its own process so `/proc` charges CPU to the right party.
//!
//! - `target`: the loopback HTTP server every prober probes (fixed delay).
//! - `load`: an open-loop, fixed-rate driver. In `floor` mode it is the floor
//!   itself (a bare tokio + hyper client, one connection per step, like a
//!   probe); in `blackbox` mode it asks blackbox_exporter's `/probe` at the
//!   rate Prometheus would; `readers` mode is closed-loop status/API readers.
//! - `run`: the orchestrator: starts everything on 127.0.0.1, records PIDs,
//!   runs the scenarios, stops only what it started, prints the table.

mod load;
mod orchestrate;
mod procfs;
mod stats;
mod target;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "wayprobe side by side with blackbox_exporter and a bare hyper floor")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The loopback target (prints `listening ADDR` on stdout).
    Target(target::Args),
    /// A fixed-rate load driver / the floor client (prints one JSON line).
    Load(load::Args),
    /// Runs the scenarios and prints the table.
    Run(orchestrate::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Target(a) => rt.block_on(target::main(a)),
        Cmd::Load(a) => rt.block_on(load::main(a)),
        Cmd::Run(a) => rt.block_on(orchestrate::main(a)),
    }
}
