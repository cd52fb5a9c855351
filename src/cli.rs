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
    /// Run every journey on its schedule and serve metrics and a status page.
    Serve(ServeArgs),
    /// Generate multiwindow, multi-burn-rate Prometheus rules from the SLOs.
    Rules(RulesArgs),
    /// Start the built-in demo shop and probe it with the example journeys.
    Demo(DemoArgs),
    /// Print the JSON Schema of journey files, for editors (YAML language server).
    Schema,
    /// Review SLOs against their history (`slo review`).
    Slo(SloArgs),
    /// A journey report for people: SLIs in words, budget bars, incidents.
    Report(ReportArgs),
}

/// Output format of `wayprobe report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A static, printable HTML page.
    Html,
    /// Markdown, for a chat post or a ticket.
    Markdown,
    /// One JSON document.
    Json,
}

/// `wayprobe report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Which journeys.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Prometheus holding the journeys' series.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: String,
    /// The period: `day`, `week` or `28d`.
    #[arg(long, default_value = "week", value_parser = ["day", "week", "28d"])]
    pub period: String,
    /// End of the period (RFC 3339; default now).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub until: Option<std::time::SystemTime>,
    /// Output format.
    #[arg(long, value_enum, default_value = "html")]
    pub format: ReportFormat,
    /// Write the report here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The rules' shape.
    #[command(flatten)]
    pub shape: RuleShapeArgs,
}

/// `wayprobe slo`.
#[derive(Debug, Args)]
pub struct SloArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SloCommand,
}

/// The `slo` subcommands.
#[derive(Debug, Subcommand)]
pub enum SloCommand {
    /// Achieved SLIs, budget spent, and the pages and tickets a ladder of
    /// objectives would have raised, replayed from Prometheus.
    Review(ReviewArgs),
}

/// The shape of the generated rules: `wayprobe rules` takes these flags, and
/// `report` and `slo review` take the same ones to read the history with the
/// rules that were generated.
#[derive(Debug, Args, Clone)]
pub struct RuleShapeArgs {
    /// The `sloth_service` label and `sloth_id` prefix.
    #[arg(long, default_value = "wayprobe")]
    pub service: String,
    /// Extra label matcher on every input selector, e.g. `job="wayprobe"` (repeatable).
    #[arg(long = "matcher", value_name = "MATCHER")]
    pub matchers: Vec<String>,
    /// Evaluation interval of the SLO and liveness groups (`report` and
    /// `slo review` replay alerts at it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Evaluation interval of the period (30d/28d) groups.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub period_interval: std::time::Duration,
    /// Locations probing each journey: every SLO window counts at least the
    /// runs they should make in it (use the number `check --locations` was given).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub locations: u32,
}

impl RuleShapeArgs {
    /// The generator's configuration for these flags, before
    /// [`RulesConfig::validate`](crate::rules::RulesConfig::validate).
    ///
    /// # Errors
    /// [`RulesError`](crate::rules::RulesError) for a matcher that does not parse.
    pub fn unvalidated_config(
        &self,
    ) -> Result<crate::rules::RulesConfig, crate::rules::RulesError> {
        let matchers = self
            .matchers
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::rules::RulesConfig {
            service: self.service.clone(),
            matchers,
            interval: self.interval,
            period_interval: self.period_interval,
            locations: self.locations,
            ..Default::default()
        })
    }

    /// The generator's configuration for these flags, validated.
    ///
    /// # Errors
    /// [`RulesError`](crate::rules::RulesError) for a matcher that does not
    /// parse or a shape the generator refuses.
    pub fn config(&self) -> Result<crate::rules::RulesConfig, crate::rules::RulesError> {
        let cfg = self.unvalidated_config()?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Output format of `slo review`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewFormat {
    /// For a terminal.
    Text,
    /// One JSON document.
    Json,
}

/// `wayprobe slo review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Which journeys.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Prometheus holding the journeys' series (every location, the whole period).
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Without Prometheus: a running `wayprobe serve` whose in-memory numbers
    /// (this prober, since it started) are shown instead.
    #[arg(long, value_name = "URL", conflicts_with = "prometheus_url")]
    pub serve_url: Option<String>,
    /// How far back alerts are replayed.
    #[arg(long, default_value = "28d", value_parser = humantime::parse_duration)]
    pub since: std::time::Duration,
    /// End of the reviewed period (RFC 3339; default now).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub until: Option<std::time::SystemTime>,
    /// Another objective to compare, e.g. `99.95` (repeatable).
    #[arg(long = "objective", value_name = "PERCENT")]
    pub objectives: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReviewFormat,
    /// The rules' shape.
    #[command(flatten)]
    pub shape: RuleShapeArgs,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` text.
    Text,
    /// One JSON object per line.
    Json,
}

/// `wayprobe serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Journey files or directories (watched for changes).
    #[arg(
        long = "journeys",
        required = true,
        value_name = "PATH",
        env = "WAYPROBE_JOURNEYS",
        value_delimiter = ','
    )]
    pub journeys: Vec<PathBuf>,
    /// Override a journey variable: `--var base_url=https://shop.example.com`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Address for /metrics, the status page and the API.
    #[arg(
        long,
        default_value = "0.0.0.0:9469",
        env = "WAYPROBE_LISTEN",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    pub listen: String,
    /// The `location` label of every series (where this prober runs).
    #[arg(long, default_value = "local", env = "WAYPROBE_LOCATION")]
    pub location: String,
    /// Run only this shard's journeys: `INDEX/COUNT`, e.g. `1/3` (rendezvous
    /// hashing on the journey name; every shard loads the same journeys).
    #[arg(
        long,
        default_value = "0/1",
        env = "WAYPROBE_SHARD",
        value_name = "I/N"
    )]
    pub shard: crate::shard::Shard,
    /// Prometheus evaluating `wayprobe rules`: the status page and the API
    /// then show each SLO's ratios, remaining budget and firing alerts from it.
    #[arg(long, env = "WAYPROBE_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Journey runs in progress at once.
    #[arg(long, default_value_t = 256, env = "WAYPROBE_MAX_CONCURRENT_RUNS", value_parser = at_least_one)]
    pub max_concurrent_runs: usize,
    /// Browser runs in progress at once (each holds a Chromium; default: one per core).
    #[arg(long, env = "WAYPROBE_MAX_BROWSER_SESSIONS", value_parser = at_least_one)]
    pub max_browser_sessions: Option<usize>,
    /// How often the journey files (and the web config with the certificate
    /// files it names) are checked for changes (0s: never).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "WAYPROBE_WATCH_INTERVAL")]
    pub watch_interval: std::time::Duration,
    /// How long runs in flight may finish at shutdown before they are cancelled.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, env = "WAYPROBE_SHUTDOWN_GRACE")]
    pub shutdown_grace: std::time::Duration,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text", env = "WAYPROBE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// HTTP endpoint options (`--web.*`).
    #[command(flatten)]
    pub web: WebArgs,
    /// Browser options.
    #[command(flatten)]
    pub browser: BrowserArgs,
    /// Trace links.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// The `--web.*` flags of `serve`, named as Prometheus and its exporters name them.
#[derive(Debug, Args, Clone)]
pub struct WebArgs {
    /// A web configuration file in the Prometheus exporter-toolkit format:
    /// TLS (`tls_server_config`), client certificates, `basic_auth_users`
    /// (bcrypt), extra `http_server_config.headers`. Re-read on reload.
    #[arg(
        long = "web.config.file",
        value_name = "FILE",
        env = "WAYPROBE_WEB_CONFIG_FILE"
    )]
    pub config_file: Option<PathBuf>,
    /// Serve `POST /-/reload` (off by default, as in Prometheus).
    #[arg(long = "web.enable-lifecycle", env = "WAYPROBE_WEB_ENABLE_LIFECYCLE")]
    pub enable_lifecycle: bool,
    /// Connections held at once (more wait in the listen backlog); at most a
    /// quarter of the open-file limit, the rest being kept for probes.
    #[arg(
        long = "web.max-connections",
        default_value_t = 512,
        env = "WAYPROBE_WEB_MAX_CONNECTIONS"
    )]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (or finish
    /// the TLS handshake, or idle between keep-alive requests).
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = humantime::parse_duration, env = "WAYPROBE_WEB_READ_HEADER_TIMEOUT")]
    pub read_header_timeout: std::time::Duration,
    /// How long a request may take before it is answered 503.
    #[arg(long = "web.request-timeout", default_value = "30s", value_parser = humantime::parse_duration, env = "WAYPROBE_WEB_REQUEST_TIMEOUT")]
    pub request_timeout: std::time::Duration,
}

impl WebArgs {
    fn options(&self) -> crate::server::ServerOptions {
        crate::server::ServerOptions {
            enable_lifecycle: self.enable_lifecycle,
            max_connections: self.max_connections,
            read_header_timeout: self.read_header_timeout,
            request_timeout: self.request_timeout,
        }
    }
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

/// A listen address `HOST:PORT`; `:PORT` means every interface, as in the
/// Prometheus exporters' `--web.listen-address`. Checked when parsed, so a
/// bad address is a usage error (exit 2), not a failure to start.
fn parse_listen(s: &str) -> Result<String, String> {
    let addr = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(addr),
        _ => Err(format!(
            "`{s}` is not HOST:PORT; write e.g. `:9469`, `127.0.0.1:9469` or `localhost:9469`"
        )),
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

/// A count that must be at least 1 (`0` would run nothing, or everything).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `wayprobe check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// What to check.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Number of locations probing each journey (for the SLO arithmetic).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub locations: u32,
    /// Print only errors and warnings, not the SLO explanations.
    #[arg(long, short)]
    pub quiet: bool,
    /// Show how the journeys fall on N `serve --shard I/N` processes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub shards: Option<u32>,
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
    /// Run at most N journeys at a time (1 = one after another); default: all at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Run only journeys whose name matches this glob (`checkout*`); repeatable.
    #[arg(long = "journey", value_name = "GLOB")]
    pub journeys: Vec<String>,
    /// Browser options.
    #[command(flatten)]
    pub browser: BrowserArgs,
    /// Trace links.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// Where a run's W3C trace id leads.
#[derive(Debug, Args, Clone)]
pub struct TraceArgs {
    /// Link each failed run's trace, e.g.
    /// `https://tempo.example/trace/{trace_id}` (`{trace_id}` is replaced by
    /// the run's 32-hex-digit trace id).
    #[arg(long, env = "WAYPROBE_TRACE_URL_TEMPLATE", value_name = "URL", value_parser = parse_trace_url_template)]
    pub trace_url_template: Option<String>,
    /// Export each run's spans over OTLP to this collector, e.g.
    /// `http://otel-collector:4318` (http/protobuf; `/v1/traces` is
    /// appended) or `http://otel-collector:4317` (grpc). Without it, the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// turn export on; headers (`OTEL_EXPORTER_OTLP_HEADERS`), timeout and
    /// compression come from the standard variables too.
    #[arg(long, env = "WAYPROBE_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The OTLP transport: `http/protobuf` or `grpc`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "http/protobuf", value_name = "PROTOCOL", value_parser = str::parse::<crate::otel::Protocol>)]
    pub otlp_protocol: crate::otel::Protocol,
    /// Share of passing runs whose trace is exported (0 to 1); every failed
    /// run's trace is (the outcome is known when the run ends).
    #[arg(long, env = "WAYPROBE_TRACE_SAMPLE_RATIO", default_value_t = 0.01, value_name = "RATIO", value_parser = parse_ratio)]
    pub trace_sample_ratio: f64,
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a ratio from 0 to 1, e.g. `0.01`")),
    }
}

impl TraceArgs {
    /// Starts the span exporter when an OTLP endpoint is configured.
    fn exporter(
        &self,
        location: &str,
    ) -> Result<Option<(crate::otel::Exporter, crate::otel::ExportTask)>, crate::otel::ExportError>
    {
        let cfg = crate::otel::ExportConfig {
            endpoint: self.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()),
            protocol: self.otlp_protocol,
            sample_ratio: self.trace_sample_ratio,
            location: location.to_string(),
            tls: crate::otel::TlsFiles::from_env(),
            ..Default::default()
        };
        if !cfg.enabled() {
            return Ok(None);
        }
        crate::otel::Exporter::start(&cfg).map(Some)
    }
}

fn parse_trace_url_template(s: &str) -> Result<String, String> {
    if !s.contains("{trace_id}") {
        return Err(
            "the template must contain `{trace_id}`, e.g. `https://tempo.example/trace/{trace_id}`"
                .into(),
        );
    }
    match url::Url::parse(&crate::trace::trace_url(s, &"0".repeat(32))) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(s.to_string()),
        _ => Err("not an http(s) URL, e.g. `https://tempo.example/trace/{trace_id}`".into()),
    }
}

/// Keeps the journeys whose name matches one of `patterns` (all when none);
/// a bad pattern, or a pattern matching nothing, is the user's error.
fn select_journeys(journeys: Vec<Journey>, patterns: &[String]) -> Result<Vec<Journey>, String> {
    if patterns.is_empty() {
        return Ok(journeys);
    }
    let mut globs = Vec::new();
    for p in patterns {
        let g = globset::Glob::new(p)
            .map_err(|e| format!("--journey `{p}` is not a glob: {}", e.kind()))?
            .compile_matcher();
        if !journeys.iter().any(|j| g.is_match(&j.name)) {
            let names: Vec<&str> = journeys.iter().map(|j| j.name.as_str()).collect();
            return Err(format!(
                "--journey `{p}` matches no journey; the journeys are: {}",
                names.join(", ")
            ));
        }
        globs.push(g);
    }
    Ok(journeys
        .into_iter()
        .filter(|j| globs.iter().any(|g| g.is_match(&j.name)))
        .collect())
}

/// `wayprobe rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Which journeys.
    #[command(flatten)]
    pub load: LoadArgs,
    /// `prometheus` (a rule file), `prometheus-operator` (a PrometheusRule) or
    /// `helm-values` (the `prometheusRule` values of charts/wayprobe).
    #[arg(long, default_value = "prometheus")]
    pub format: String,
    /// The rules' shape.
    #[command(flatten)]
    pub shape: RuleShapeArgs,
    /// Runbook URL template for the JourneyRunsMissing alert.
    #[arg(long, value_name = "URL")]
    pub liveness_runbook_url: Option<String>,
    /// `metadata.name` of the PrometheusRule.
    #[arg(long)]
    pub name: Option<String>,
    /// `metadata.namespace` of the PrometheusRule.
    #[arg(long)]
    pub namespace: Option<String>,
    /// A label on the PrometheusRule, e.g. `release=kube-prometheus-stack` (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub labels: Vec<(String, String)>,
    /// Write the rules here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write promtool unit tests (and the rules they test) into this directory.
    #[arg(long, value_name = "DIR")]
    pub emit_tests: Option<PathBuf>,
    /// Print Alertmanager inhibition rules instead of Prometheus rules.
    #[arg(long)]
    pub inhibit_rules: bool,
}

/// How browser steps reach a browser.
#[derive(Debug, Args, Clone)]
pub struct BrowserArgs {
    /// Use this WebDriver endpoint (a chromedriver sidecar or a Selenium Grid)
    /// instead of starting chromedriver.
    #[arg(long, env = "WAYPROBE_WEBDRIVER_URL", value_name = "URL")]
    pub webdriver_url: Option<String>,
    /// The chromedriver wayprobe starts and supervises.
    #[arg(
        long,
        env = "WAYPROBE_CHROMEDRIVER",
        default_value = "chromedriver",
        value_name = "PATH"
    )]
    pub chromedriver: PathBuf,
    /// The Chromium binary (default: chromedriver's choice).
    #[arg(long, env = "WAYPROBE_CHROMIUM", value_name = "PATH")]
    pub chromium: Option<PathBuf>,
    /// Where screenshots of failed browser steps are saved (default: a
    /// private `$TMPDIR/wayprobe-artifacts-<uid>`, created 0700).
    #[arg(long, env = "WAYPROBE_ARTIFACTS_DIR", value_name = "DIR")]
    pub artifacts_dir: Option<PathBuf>,
}

impl BrowserArgs {
    /// The runner for these options.
    #[allow(unused_variables, unused_mut)]
    pub fn runner(&self, opts: RunOptions, max_sessions: usize) -> Runner {
        let mut runner = Runner::new(opts);
        #[cfg(feature = "browser")]
        {
            let mut cfg = crate::step::browser::BrowserConfig {
                webdriver_url: self.webdriver_url.clone(),
                chromedriver: self.chromedriver.clone(),
                chromium: self.chromium.clone(),
                max_sessions,
                ..Default::default()
            };
            if let Some(d) = &self.artifacts_dir {
                cfg.artifacts_dir = d.clone();
            }
            runner = runner.with_browser(crate::step::browser::Browser::new(cfg));
        }
        runner
    }
}

/// `wayprobe demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the demo shop (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR", value_parser = parse_listen)]
    pub shop_listen: String,
    /// Run the example journeys once, print the results and exit.
    #[arg(long)]
    pub once: bool,
    /// Address of the metrics endpoint and status page.
    #[arg(long, default_value = "127.0.0.1:9469", value_name = "ADDR", value_parser = parse_listen)]
    pub listen: String,
    /// How often the demo runs each journey.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Browser options.
    #[command(flatten)]
    pub browser: BrowserArgs,
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
            Command::Serve(a) => serve(a).await,
            Command::Rules(a) => rules(a),
            Command::Demo(a) => demo(a).await,
            Command::Schema => {
                stdout(journey::schema::JOURNEY_SCHEMA);
                Ok(Exit::Ok)
            }
            Command::Slo(SloArgs {
                command: SloCommand::Review(a),
            }) => slo_review(a).await,
            Command::Report(a) => journey_report(a).await,
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

async fn slo_review(args: ReviewArgs) -> anyhow::Result<Exit> {
    use crate::journey::slo::Objective;
    let cfg = match args.shape.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let mut extra = Vec::new();
    for o in &args.objectives {
        match Objective::parse(o) {
            Ok(o) => extra.push(o),
            Err(e) => {
                eprintln!("error: --objective: {e}");
                return Ok(Exit::Invalid);
            }
        }
    }
    let loaded = match load(&args.load) {
        Ok(l) => l,
        Err(e) => {
            report_invalid(&e);
            return Ok(Exit::Invalid);
        }
    };
    let journeys = loaded.journeys;
    let Some(url) = &args.prometheus_url else {
        let Some(serve) = &args.serve_url else {
            eprintln!(
                "error: slo review needs history: pass --prometheus-url URL (the Prometheus scraping wayprobe), \
                 or --serve-url URL for what a running `wayprobe serve` has counted since it started"
            );
            return Ok(Exit::Invalid);
        };
        let api = format!("{}/api/v1/journeys?limit=1000", serve.trim_end_matches('/'));
        let v: serde_json::Value = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?
            .get(&api)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                let why = if e.is_timeout() {
                    "no answer within 10s".to_string()
                } else if let Some(s) = e.status() {
                    format!("status {}", s.as_u16())
                } else {
                    "cannot connect".to_string()
                };
                anyhow::anyhow!(
                    "cannot read /api/v1/journeys from --serve-url {}: {why}",
                    shown_url(serve)
                )
            })?
            .json()
            .await
            .map_err(|_| anyhow::anyhow!("--serve-url did not answer like wayprobe serve"))?;
        match args.format {
            ReviewFormat::Text => stdout(&crate::slo_review::render_in_process(&v, &journeys)),
            ReviewFormat::Json => stdout(&format!(
                "{:#}\n",
                serde_json::json!({"source": "serve-in-process", "note": "this prober only, since it started; no history, so no objective ladder", "journeys": v["journeys"]})
            )),
        }
        return Ok(Exit::Ok);
    };
    let reader =
        match crate::slo_prom::PromReader::with_timeout(url, std::time::Duration::from_secs(120)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Exit::Invalid);
            }
        };
    let opts = crate::slo_review::ReviewOptions {
        until: args.until.unwrap_or_else(std::time::SystemTime::now),
        since: args.since,
        step: cfg.interval,
        period_step: cfg.period_interval,
        extra,
    };
    let review = crate::slo_review::review(&reader, &journeys, &cfg, &opts)
        .await
        .with_context(|| format!("reading --prometheus-url {}", shown_url(url)))?;
    match args.format {
        ReviewFormat::Text => stdout(&crate::slo_review::render_text(&review)),
        ReviewFormat::Json => stdout(&format!("{}\n", serde_json::to_string_pretty(&review)?)),
    }
    Ok(Exit::Ok)
}

async fn journey_report(args: ReportArgs) -> anyhow::Result<Exit> {
    use crate::slo_report::{self as rep, Period};
    let cfg = match args.shape.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let period = Period::parse(&args.period).unwrap_or_default();
    let loaded = match load(&args.load) {
        Ok(l) => l,
        Err(e) => {
            report_invalid(&e);
            return Ok(Exit::Invalid);
        }
    };
    let reader = match crate::slo_prom::PromReader::with_timeout(
        &args.prometheus_url,
        std::time::Duration::from_secs(120),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let until = args.until.unwrap_or_else(std::time::SystemTime::now);
    let r = rep::from_prometheus(&reader, &loaded.journeys, &cfg, period, until)
        .await
        .with_context(|| {
            format!(
                "reading --prometheus-url {}",
                shown_url(&args.prometheus_url)
            )
        })?;
    let text = match args.format {
        ReportFormat::Html => rep::render_html(&r, false),
        ReportFormat::Markdown => rep::render_markdown(&r),
        ReportFormat::Json => rep::render_json(&r),
    };
    match &args.output {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => stdout(&text),
    }
    Ok(Exit::Ok)
}

/// A URL from the command line as messages show it: password and query
/// values masked (a Prometheus behind basic auth in the URL).
fn shown_url(url: &str) -> String {
    crate::step::excerpt::url(&crate::redact::Redactor::default(), url)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn stdout(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
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
        ..LoadOptions::default()
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
            stdout(&format!("{line}\n"));
            if let Some(n) = args.shards {
                let a = crate::shard::Assignment::of(
                    loaded
                        .journeys
                        .iter()
                        .map(|j| (j.name.as_str(), j.interval)),
                    n,
                );
                stdout(&a.render());
            }
            Exit::Ok
        }
        Err(e) => {
            report_invalid(&e);
            Exit::Invalid
        }
    }
}

/// SLO explanations for `check`: what the burn-rate alerts can and cannot do
/// at this journey's interval.
fn slo_notes(j: &Journey, locations: u32) -> Vec<crate::diag::Diagnostic> {
    crate::rules::explain(j, locations.max(1))
}

fn rules(args: RulesArgs) -> anyhow::Result<Exit> {
    use crate::rules::{Format, RulesError};
    let usage = |e: RulesError| {
        eprintln!("error: {e}");
        Ok(Exit::Invalid)
    };
    let format: Format = match args.format.parse() {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let mut cfg = match args.shape.unvalidated_config() {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    cfg.liveness_runbook_url = args.liveness_runbook_url.clone();
    cfg.operator.name = args.name.clone();
    cfg.operator.namespace = args.namespace.clone();
    cfg.operator.labels = args.labels.iter().cloned().collect();
    let loaded = match load(&args.load) {
        Ok(l) => l,
        Err(e) => {
            report_invalid(&e);
            return Ok(Exit::Invalid);
        }
    };
    match crate::rules::validate(&loaded.journeys, &cfg) {
        Ok(()) => {}
        Err(RulesError::Invalid { diagnostics }) => {
            print_diagnostics(&diagnostics, true);
            eprintln!(
                "error: {}",
                plural(count(&diagnostics, Severity::Error), "error")
            );
            return Ok(Exit::Invalid);
        }
        Err(e) => return usage(e),
    }
    let text = if args.inhibit_rules {
        crate::rules::inhibition_rules(&cfg)
    } else {
        crate::rules::render(
            &crate::rules::generate(&loaded.journeys, &cfg),
            format,
            &cfg,
        )
    };
    match &args.output {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => stdout(&text),
    }
    if let Some(dir) = &args.emit_tests {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let files = crate::rules::emit_tests(&loaded.journeys, &cfg);
        for (name, body) in &files {
            std::fs::write(dir.join(name), body).with_context(|| format!("cannot write {name}"))?;
        }
        eprintln!(
            "wrote {} files to {}; run: (cd {} && promtool test rules *.test.yaml)",
            files.len(),
            dir.display(),
            dir.display()
        );
        // Their scenarios feed one location; a quorum needs several.
        for j in &loaded.journeys {
            for slo in j.slos.iter().filter(|s| s.locations.is_some()) {
                eprintln!(
                    "note: no test emitted for `{}` of `{}`: its page needs a quorum of locations (`locations:`), which the emitted scenarios of one location cannot show",
                    slo.name, j.name
                );
            }
        }
    }
    Ok(Exit::Ok)
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
    let errors = plural(count(diagnostics, Severity::Error), "error");
    // Errors of the command line (`--var`) are in no file.
    if files_with_errors == 0 {
        eprintln!("error: {errors}");
    } else {
        eprintln!(
            "error: {errors} in {} of {}",
            plural(files_with_errors, "file"),
            *files
        );
    }
}

/// Runs every journey once, concurrently, and prints the outcomes in name order.
pub async fn run_journeys(
    journeys: &[Journey],
    runner: &Runner,
    jobs: Option<u32>,
) -> Vec<crate::outcome::JourneyOutcome> {
    // Browser journeys wait for a free browser *before* their clock starts,
    // so a queue of them does not eat into their timeouts; so do all
    // journeys for a job slot under `--jobs`.
    let browsers = std::sync::Arc::new(tokio::sync::Semaphore::new(default_browser_sessions()));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(
        jobs.map_or(journeys.len().max(1), |n| n as usize),
    ));
    let futs = journeys.iter().map(|j| {
        let runner = runner.clone();
        let j = j.clone();
        let browsers = browsers.clone();
        let slots = slots.clone();
        // Backstop: the runner bounds each step, this bounds the whole run.
        async move {
            let _job = slots.acquire_owned().await.ok();
            let _slot = if j.uses_browser() {
                browsers.acquire_owned().await.ok()
            } else {
                None
            };
            let limit = crate::attempt::backstop(&j);
            let started = std::time::SystemTime::now();
            match tokio::time::timeout(limit, crate::attempt::run(&runner, &j)).await {
                Ok(a) => a.outcome,
                Err(_) => crate::run::timed_out(&j, started, limit),
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
    let journeys = match select_journeys(loaded.journeys, &args.journeys) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    // A report that cannot be written is refused before any journey runs
    // (opening it creates or truncates it; it is written at the end).
    for p in [&args.report_junit, &args.report_json]
        .into_iter()
        .flatten()
    {
        if let Err(e) = std::fs::File::create(p) {
            eprintln!("error: cannot write the report {}: {e}", p.display());
            return Ok(Exit::Invalid);
        }
    }
    let mut runner = args.browser.runner(
        RunOptions {
            verbose: args.verbose,
            trace_url_template: args.trace.trace_url_template.clone(),
            ..Default::default()
        },
        default_browser_sessions(),
    );
    let export = match args.trace.exporter("local") {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let mut export_counters = None;
    let export_task = export.map(|(e, task)| {
        export_counters = Some(e.counters().clone());
        runner = runner.clone().with_exporter(e);
        task
    });
    let outcomes = run_journeys(&journeys, &runner, args.jobs).await;
    // The spans go out before the process does (bounded: a collector that
    // is down costs at most this).
    drop(runner);
    const EXPORT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
    let export_finished = match export_task {
        Some(task) => task.finish(EXPORT_LIMIT).await,
        None => true,
    };
    print_outcomes(&journeys, &outcomes, args.verbose);
    // `run` logs nothing else: say it here, once, when spans were lost
    // (counted as dropped, or still waiting on a collector that never
    // answered when the export was cut off).
    if !export_finished {
        eprintln!(
            "warning: the OTLP collector did not take this run's spans within {}; the spans not yet exported were dropped",
            crate::diag::duration(EXPORT_LIMIT)
        );
    } else if let Some(c) = export_counters
        && c.dropped.get() > 0
    {
        eprintln!(
            "warning: {} of {} spans were not exported (the OTLP collector is down, refused them or did not answer in time)",
            c.dropped.get(),
            c.dropped.get() + c.exported.get()
        );
    }
    let refs: Vec<&Journey> = journeys.iter().collect();
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
        "journeys/account-mixed.yaml",
        include_str!("../journeys/account-mixed.yaml"),
    ),
    (
        "journeys/api-login.yaml",
        include_str!("../journeys/api-login.yaml"),
    ),
    (
        "journeys/checkout.yaml",
        include_str!("../journeys/checkout.yaml"),
    ),
    (
        "journeys/shop-browser.yaml",
        include_str!("../journeys/shop-browser.yaml"),
    ),
    (
        "journeys/shared-steps.yaml",
        include_str!("../journeys/shared-steps.yaml"),
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
        ..LoadOptions::default()
    };
    journey::load::load_sources(sources, &opts, Vec::new())
}

/// One browser session per core: beyond that, measured latencies are the
/// prober's CPU contention rather than the target's.
fn default_browser_sessions() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Whether browser steps can run here: a WebDriver URL, or chromedriver on PATH.
fn browser_available(b: &BrowserArgs) -> bool {
    if !cfg!(feature = "browser") {
        return false;
    }
    if b.webdriver_url.is_some() {
        return true;
    }
    if b.chromedriver.components().count() > 1 {
        return b.chromedriver.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&b.chromedriver).is_file()))
}

/// Dependencies whose debug and trace lines carry what a journey sends or
/// receives (cookie values, page text, WebDriver commands with typed
/// passwords, headers and frames): capped at `info` whatever `RUST_LOG`
/// says, since secrets never reach a log. wayprobe's own lines mask them.
pub const QUIET_DEPENDENCIES: &[&str] = &[
    "cookie_store",
    "fantoccini",
    "h2",
    "html5ever",
    "hyper",
    "hyper_util",
    "markup5ever",
    "reqwest",
    "rustls",
    "tonic",
    "tower",
    "webdriver",
];

/// The log filter: `RUST_LOG` (default `info`), with
/// [`QUIET_DEPENDENCIES`] capped at `info`.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for target in QUIET_DEPENDENCIES {
        if let Ok(d) = format!("{target}=info").parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Sets up logging to stderr: one line per event, text or JSON.
pub fn init_logging(format: LogFormat) {
    let filter = log_filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(stderr_color()).try_init(),
    };
}

/// Resolves on SIGTERM or SIGINT; SIGHUP sends a reload request.
async fn signals(reload: tokio::sync::mpsc::Sender<crate::server::ReloadRequest>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let (tx, rx) = tokio::sync::oneshot::channel();
                if reload.send(tx).await.is_ok() {
                    tokio::spawn(async move { let _ = rx.await; });
                }
            }
        }
    }
    tracing::info!("signal received");
}

async fn serve_source(
    cfg: crate::serve::ServeConfig,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<Exit> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let shutdown = signals(tx.clone());
    match crate::serve::serve_with(cfg, listener, shutdown, tx, rx).await {
        Ok(()) => Ok(Exit::Ok),
        Err(crate::serve::ServeError::Invalid(e)) => {
            report_invalid(&e);
            Ok(Exit::Invalid)
        }
        Err(crate::serve::ServeError::Web(e)) => {
            eprintln!("error: invalid --web.config.file: {e}");
            Ok(Exit::Invalid)
        }
        Err(e) => Err(e.into()),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<Exit> {
    init_logging(args.log_format);
    let opts = LoadOptions {
        vars: args.vars.iter().cloned().collect(),
        ..LoadOptions::default()
    };
    let prometheus = match args
        .prometheus_url
        .as_deref()
        .map(crate::slo_prom::PromReader::new)
    {
        None => None,
        Some(Ok(r)) => Some(std::sync::Arc::new(r)),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    // Invalid journeys at start-up: the same diagnostics as `check`, exit 2.
    if let Err(e) = journey::load_paths(&args.journeys, &opts) {
        report_invalid(&e);
        return Ok(Exit::Invalid);
    }
    // Before binding: a bad web config is a usage error (exit 2), like bad journeys.
    if let Some(p) = &args.web.config_file
        && let Err(e) = crate::web::WebConfig::load(p)
    {
        eprintln!("error: invalid --web.config.file: {e}");
        return Ok(Exit::Invalid);
    }
    // Probes and clients share the open-file limit: take all the kernel allows.
    match crate::server::raise_nofile_limit() {
        Ok((soft, hard)) => tracing::info!(open_files = soft, hard_limit = hard, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /api/v1/journeys and the status page");
    let browser_sessions = args
        .max_browser_sessions
        .unwrap_or_else(default_browser_sessions);
    let mut runner = args.browser.runner(
        RunOptions {
            trace_url_template: args.trace.trace_url_template.clone(),
            ..Default::default()
        },
        browser_sessions,
    );
    match args.trace.exporter(&args.location) {
        Ok(None) => {}
        // The task lives as long as the process; each run's spans go to it.
        Ok(Some((e, _task))) => runner = runner.with_exporter(e),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    }
    let mut cfg = crate::serve::ServeConfig::new(
        crate::serve::Source::Paths {
            paths: args.journeys,
            opts,
        },
        runner,
    );
    cfg.location = args.location;
    cfg.shard = args.shard;
    cfg.scheduler = crate::scheduler::SchedulerConfig {
        max_concurrent: args.max_concurrent_runs,
        max_browser: browser_sessions,
        grace: args.shutdown_grace,
    };
    cfg.watch_interval = args.watch_interval;
    cfg.web_config_file = args.web.config_file.clone();
    cfg.server = args.web.options();
    cfg.prometheus = prometheus;
    serve_source(cfg, listener).await
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
    let mut loaded = match example_journeys(&base_url) {
        Ok(l) => l,
        Err(e) => {
            report_invalid(&e);
            return Ok(Exit::Internal);
        }
    };
    let runner = args.browser.runner(
        RunOptions {
            env_overrides: BTreeMap::from([(
                "SHOP_PASSWORD".to_string(),
                crate::demo::DemoShop::PASSWORD.to_string(),
            )]),
            ..Default::default()
        },
        default_browser_sessions(),
    );
    // The demo works without a browser: browser journeys are left out, with a note.
    if !browser_available(&args.browser) {
        let before = loaded.journeys.len();
        loaded.journeys.retain(|j| !j.uses_browser());
        if loaded.journeys.len() < before {
            eprintln!(
                "note: {} browser journeys left out: no chromedriver found (install Debian's chromium and chromium-driver)\n",
                before - loaded.journeys.len()
            );
        }
    }
    if args.once {
        stdout(&format!(
            "demo shop: {base_url}/ (user alice, password {})\n\n",
            crate::demo::DemoShop::PASSWORD
        ));
        let outcomes = run_journeys(&loaded.journeys, &runner, None).await;
        print_outcomes(&loaded.journeys, &outcomes, false);
        let _ = stop_tx.send(());
        let _ = server.await;
        return Ok(if outcomes.iter().all(|o| o.result == RunResult::Success) {
            Exit::Ok
        } else {
            Exit::JourneyFailed
        });
    }
    init_logging(args.log_format);
    let probe_listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (choose another with --listen)",
                args.listen
            )
        })?;
    let paddr = probe_listener.local_addr()?;
    for j in &mut loaded.journeys {
        // A browser session takes a second or two to start on a small machine.
        j.interval = if j.uses_browser() {
            args.interval.max(std::time::Duration::from_secs(15))
        } else {
            args.interval
        };
        j.timeout = j.timeout.min(j.interval.mul_f64(0.8));
    }
    stdout(&format!(
        "wayprobe demo\n\n  status page   http://{paddr}/\n  metrics       http://{paddr}/metrics\n  journeys API  http://{paddr}/api/v1/journeys\n  demo shop     {base_url}/  (user alice, password {})\n\n\
         The example journeys run every {}. Break checkout with\n  curl -X POST '{base_url}/-/demo/checkout?fail=true'\nand heal it with ?fail=false. Ctrl-C stops.\n\n",
        crate::demo::DemoShop::PASSWORD,
        crate::diag::duration(args.interval)
    ));
    let mut cfg =
        crate::serve::ServeConfig::new(crate::serve::Source::Fixed(loaded.journeys), runner);
    cfg.location = "demo".into();
    cfg.watch_interval = std::time::Duration::ZERO;
    let res = serve_source(cfg, probe_listener).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    res
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_addresses_are_host_and_port() {
        assert_eq!(parse_listen(":9469").unwrap(), "0.0.0.0:9469");
        assert_eq!(parse_listen("localhost:9469").unwrap(), "localhost:9469");
        assert_eq!(parse_listen("[::1]:9469").unwrap(), "[::1]:9469");
        for bad in ["localhost", "9469", ":", "host:99999", ":http"] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("is not HOST:PORT"), "{bad}: {e}");
        }
    }
}
