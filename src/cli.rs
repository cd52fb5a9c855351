//! The command line: `check`, `run`, `serve`, `rules`, `demo`.
//!
//! Exit codes, for every command: 0 ok, 1 a journey failed, 2 invalid input
//! or usage, 3 internal error (cannot bind, cannot start).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::diag::{Severity, use_color};
use crate::journey::{self, Journey, LoadError, LoadOptions, Loaded};
use crate::outcome::RunResult;
use crate::run::{RunOptions, Runner};

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything passed.
    Ok = 0,
    /// At least one journey failed.
    JourneyFailed = 1,
    /// Invalid journey files or usage.
    Invalid = 2,
    /// wayprobe itself could not do its job.
    Internal = 3,
}

/// Synthetic journey prober: scripted customer journeys as Prometheus SLIs.
#[derive(Debug, Parser)]
#[command(name = "wayprobe", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate journey files and explain their SLOs.
    Check(CheckArgs),
    /// Run journeys once and print pass/fail.
    Run(RunArgs),
    /// Start the built-in demo shop and probe it with the example journeys.
    Demo(DemoArgs),
}

/// Options shared by commands that load journeys.
#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Journey files or directories of `*.yaml` files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Override a journey variable: `--var base_url=https://shop.example.com`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

/// `wayprobe check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// What to check.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Number of locations probing each journey (for the SLO arithmetic).
    #[arg(long, default_value_t = 1)]
    pub locations: u32,
    /// Print only errors and warnings, not the SLO explanations.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `wayprobe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to run.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub report_junit: Option<PathBuf>,
    /// Write a JSON report here.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Show request and response headers (secrets masked).
    #[arg(long, short)]
    pub verbose: bool,
}

/// `wayprobe demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the demo shop (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub shop_listen: String,
    /// Run the example journeys once, print the results and exit.
    #[arg(long)]
    pub once: bool,
}

/// Runs the CLI and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Invalid
            } else {
                Exit::Ok
            };
            let _ = e.print();
            return code as i32;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Internal as i32;
        }
    };
    let res = rt.block_on(async move {
        match cli.command {
            Command::Check(a) => Ok(check(a)),
            Command::Run(a) => run(a).await,
            Command::Demo(a) => demo(a).await,
        }
    });
    match res {
        Ok(code) => code as i32,
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Internal as i32
        }
    }
}

fn stderr_color() -> bool {
    use_color(std::io::stderr().is_terminal())
}

fn stdout_color() -> bool {
    use_color(std::io::stdout().is_terminal())
}

/// Loads journeys, printing every diagnostic; `None` means invalid.
fn load(args: &LoadArgs) -> Result<Loaded, LoadError> {
    let opts = LoadOptions {
        vars: args.vars.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    journey::load_paths(&args.paths, &opts)
}

fn print_diagnostics(diags: &[crate::diag::Diagnostic], quiet: bool) {
    let color = stderr_color();
    let mut err = std::io::stderr().lock();
    for d in diags {
        if quiet && d.severity == Severity::Note {
            continue;
        }
        let _ = writeln!(err, "{}", d.render(color));
    }
}

fn count(diags: &[crate::diag::Diagnostic], sev: Severity) -> usize {
    diags.iter().filter(|d| d.severity == sev).count()
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `wayprobe check`: every problem in every file, then a summary.
pub fn check(args: CheckArgs) -> Exit {
    match load(&args.load) {
        Ok(loaded) => {
            let mut diags = loaded.warnings.clone();
            for j in &loaded.journeys {
                diags.extend(slo_notes(j, args.locations));
            }
            let errors = count(&diags, Severity::Error);
            print_diagnostics(&diags, args.quiet);
            let warnings = count(&diags, Severity::Warning);
            if errors > 0 {
                eprintln!(
                    "error: {} in {}",
                    plural(errors, "error"),
                    plural(loaded.files, "file")
                );
                return Exit::Invalid;
            }
            let mut line = format!(
                "ok: {} in {}",
                plural(loaded.journeys.len(), "journey"),
                plural(loaded.files, "file")
            );
            if warnings > 0 {
                line.push_str(&format!(", {}", plural(warnings, "warning")));
            }
            println!("{line}");
            Exit::Ok
        }
        Err(e) => {
            report_invalid(&e);
            Exit::Invalid
        }
    }
}

/// SLO explanations for `check` (filled in by the rules module).
fn slo_notes(j: &Journey, locations: u32) -> Vec<crate::diag::Diagnostic> {
    let _ = (j, locations);
    Vec::new()
}

fn report_invalid(e: &LoadError) {
    let LoadError::Invalid { diagnostics, files } = e;
    print_diagnostics(diagnostics, false);
    let files_with_errors = {
        let mut paths: Vec<_> = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .filter_map(|d| d.path().map(|p| p.to_path_buf()))
            .collect();
        paths.sort();
        paths.dedup();
        paths.len()
    };
    eprintln!(
        "error: {} in {} of {}",
        plural(count(diagnostics, Severity::Error), "error"),
        plural(files_with_errors, "file"),
        *files
    );
}

/// Runs every journey once, concurrently, and prints the outcomes in name order.
pub async fn run_journeys(
    journeys: &[Journey],
    runner: &Runner,
) -> Vec<crate::outcome::JourneyOutcome> {
    let futs = journeys.iter().map(|j| {
        let runner = runner.clone();
        let j = j.clone();
        // Backstop: the runner bounds each step, this bounds the whole run.
        async move {
            let limit = j.timeout + std::time::Duration::from_secs(5);
            let name = j.name.clone();
            match tokio::time::timeout(limit, runner.run(&j)).await {
                Ok(o) => o,
                Err(_) => crate::outcome::JourneyOutcome {
                    journey: name,
                    result: RunResult::Failure,
                    started_at: std::time::SystemTime::now(),
                    duration: limit,
                    steps: Vec::new(),
                },
            }
        }
    });
    futures_util::future::join_all(futs).await
}

async fn run(args: RunArgs) -> anyhow::Result<Exit> {
    let loaded = match load(&args.load) {
        Ok(l) => l,
        Err(e) => {
            report_invalid(&e);
            return Ok(Exit::Invalid);
        }
    };
    print_diagnostics(&loaded.warnings, true);
    let runner = Runner::new(RunOptions {
        verbose: args.verbose,
        ..Default::default()
    });
    let outcomes = run_journeys(&loaded.journeys, &runner).await;
    print_outcomes(&loaded.journeys, &outcomes, args.verbose);
    let refs: Vec<&Journey> = loaded.journeys.iter().collect();
    if let Some(p) = &args.report_junit {
        std::fs::write(p, crate::report::junit(&refs, &outcomes))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &args.report_json {
        std::fs::write(p, crate::report::json(&outcomes))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(if outcomes.iter().all(|o| o.result == RunResult::Success) {
        Exit::Ok
    } else {
        Exit::JourneyFailed
    })
}

fn print_outcomes(
    journeys: &[Journey],
    outcomes: &[crate::outcome::JourneyOutcome],
    verbose: bool,
) {
    let color = stdout_color();
    let mut out = std::io::stdout().lock();
    for (j, o) in journeys.iter().zip(outcomes) {
        let _ = writeln!(out, "{}", crate::report::text(j, o, color, verbose));
    }
    let _ = writeln!(out, "{}", crate::report::summary(outcomes, color));
}

/// The example journeys, embedded so `wayprobe demo` works from anywhere.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "journeys/account.yaml",
        include_str!("../journeys/account.yaml"),
    ),
    (
        "journeys/api-login.yaml",
        include_str!("../journeys/api-login.yaml"),
    ),
    (
        "journeys/checkout.yaml",
        include_str!("../journeys/checkout.yaml"),
    ),
];

/// Loads the embedded example journeys pointed at `base_url`.
pub fn example_journeys(base_url: &str) -> Result<Loaded, LoadError> {
    let sources = EXAMPLES
        .iter()
        .map(|(p, t)| crate::diag::SourceFile::new(*p, *t))
        .collect();
    let opts = LoadOptions {
        vars: BTreeMap::from([("base_url".to_string(), base_url.to_string())]),
    };
    journey::load::load_sources(sources, &opts, Vec::new())
}

async fn demo(args: DemoArgs) -> anyhow::Result<Exit> {
    let listener = tokio::net::TcpListener::bind(&args.shop_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.shop_listen))?;
    let addr = listener.local_addr()?;
    let shop = crate::demo::DemoShop::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::demo::serve(listener, shop, async move {
        let _ = stop_rx.await;
    }));
    let base_url = format!("http://{addr}");
    println!(
        "demo shop: {base_url}/ (user alice, password {})\n",
        crate::demo::DemoShop::PASSWORD
    );
    let loaded = match example_journeys(&base_url) {
        Ok(l) => l,
        Err(e) => {
            report_invalid(&e);
            return Ok(Exit::Internal);
        }
    };
    let runner = Runner::new(RunOptions {
        env_overrides: BTreeMap::from([(
            "SHOP_PASSWORD".to_string(),
            crate::demo::DemoShop::PASSWORD.to_string(),
        )]),
        ..Default::default()
    });
    let outcomes = run_journeys(&loaded.journeys, &runner).await;
    print_outcomes(&loaded.journeys, &outcomes, false);
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(if outcomes.iter().all(|o| o.result == RunResult::Success) {
        Exit::Ok
    } else {
        Exit::JourneyFailed
    })
}
