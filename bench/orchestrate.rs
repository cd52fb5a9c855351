//! `bench run`: starts the target, wayprobe, blackbox_exporter and the floor
//! on 127.0.0.1, runs the scenarios one tool after the other, writes JSON
//! lines and prints the table. Only processes it started are stopped, by PID.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procfs;
use crate::stats::{quantile, slope};

/// Every scenario, in the order they run.
const ALL: &[&str] = &[
    "rate50",
    "rate2000",
    "maxrate",
    "journeys10k",
    "cookie",
    "soak",
    "readers",
    "browser",
];

/// Flags of `bench run`.
#[derive(clap::Args)]
pub struct Args {
    /// The wayprobe binary to measure.
    #[arg(long)]
    wayprobe: PathBuf,
    /// The blackbox_exporter binary.
    #[arg(long, default_value = "prometheus-blackbox-exporter")]
    blackbox: PathBuf,
    /// Scenarios to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = ALL.iter().map(|s| s.to_string()))]
    scenarios: Vec<String>,
    /// Seconds of warm-up before each measured window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of the soak window (RSS slope).
    #[arg(long, default_value_t = 60.0)]
    soak: f64,
    /// Rates tried, in order, to find the highest one held.
    #[arg(long, value_delimiter = ',', default_values_t = [1000.0, 2000.0, 5000.0, 10000.0, 15000.0])]
    max_rates: Vec<f64>,
    /// Server delay of the target, ms.
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Where journeys, logs, PIDs and results go.
    #[arg(long, default_value = "bench/out")]
    out: PathBuf,
    /// Measure wayprobe alone, without blackbox_exporter and the floor: for
    /// an hour-long soak, whose peer half would take another hour. The
    /// table then has no ratios.
    #[arg(long)]
    no_peers: bool,
    /// CI smoke run: fails only when something cannot run, never on a figure.
    #[arg(long)]
    smoke: bool,
}

/// Processes this run started; all stopped (by PID) on drop.
#[derive(Default)]
struct Procs {
    children: Vec<(String, Child)>,
    pid_file: PathBuf,
}

impl Procs {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> anyhow::Result<u32> {
        let child = cmd
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id().context("no pid")?;
        self.children.push((name.to_string(), child));
        self.write_pids();
        Ok(pid)
    }

    fn write_pids(&self) {
        let mut s = String::new();
        for (n, c) in &self.children {
            if let Some(p) = c.id() {
                let _ = writeln!(s, "{p} {n}");
            }
        }
        let _ = std::fs::write(&self.pid_file, s);
    }

    fn take(&mut self, pid: u32) -> Option<Child> {
        let i = self
            .children
            .iter()
            .position(|(_, c)| c.id() == Some(pid))?;
        let (_, c) = self.children.swap_remove(i);
        self.write_pids();
        Some(c)
    }

    /// Asks `pid` to stop (SIGTERM: wayprobe then stops its chromedriver),
    /// kills it after 10 s.
    async fn stop(&mut self, pid: u32) {
        let Some(mut c) = self.take(pid) else { return };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }

    /// Waits for `pid` to exit and returns its stdout.
    async fn output(&mut self, pid: u32) -> anyhow::Result<String> {
        let mut c = self.take(pid).context("not started here")?;
        let mut out = String::new();
        if let Some(mut so) = c.stdout.take() {
            so.read_to_string(&mut out).await?;
        }
        let st = c.wait().await?;
        anyhow::ensure!(st.success(), "exited with {st}");
        Ok(out)
    }
}

struct Ctx {
    a: Args,
    exe: PathBuf,
    target: String,
    procs: Procs,
    tck: f64,
    http: reqwest::Client,
    records: Vec<Value>,
    jsonl: PathBuf,
}

pub async fn main(a: Args) -> anyhow::Result<()> {
    tokio::select! {
        r = run(a) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; everything started here was stopped"),
    }
}

async fn run(mut a: Args) -> anyhow::Result<()> {
    if a.smoke {
        a.scenarios = vec!["rate50".into()];
        a.warmup = 1.0;
        a.seconds = 2.0;
    }
    std::fs::create_dir_all(&a.out)?;
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();
    let jsonl = a.out.join(format!("results-{stamp}.jsonl"));
    let mut procs = Procs {
        pid_file: a.out.join("pids"),
        ..Procs::default()
    };
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(&exe);
    cmd.args(["target", "--delay-ms", &a.delay_ms.to_string()])
        .stdout(Stdio::piped());
    let tpid = procs.spawn("target", &mut cmd)?;
    let target = {
        let (_, child) = procs.children.last_mut().context("target")?;
        let so = child.stdout.take().context("target stdout")?;
        let mut line = String::new();
        BufReader::new(so).read_line(&mut line).await?;
        line.trim()
            .strip_prefix("listening ")
            .context("target did not start")?
            .to_string()
    };
    eprintln!(
        "target on {target} (pid {tpid}), server delay {} ms",
        a.delay_ms
    );
    let mut cx = Ctx {
        exe,
        target,
        procs,
        tck: procfs::clk_tck(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        records: Vec::new(),
        jsonl,
        a,
    };
    let scenarios = cx.a.scenarios.clone();
    for s in &scenarios {
        eprintln!("== {s}");
        match s.as_str() {
            "rate50" => rate(&mut cx, "rate50", 50.0).await?,
            "rate2000" => rate(&mut cx, "rate2000", 2000.0).await?,
            "maxrate" => maxrate(&mut cx).await?,
            "journeys10k" => journeys10k(&mut cx).await?,
            "cookie" => cookie(&mut cx).await?,
            "soak" => soak(&mut cx).await?,
            "readers" => readers(&mut cx).await?,
            "browser" => browser(&mut cx).await?,
            other => bail!("unknown scenario `{other}` (known: {})", ALL.join(", ")),
        }
    }
    cx.procs.stop(tpid).await;
    print!("{}", table(&cx.records, cx.a.delay_ms));
    eprintln!("results: {}", cx.jsonl.display());
    if cx.a.smoke {
        for r in &cx.records {
            let steps = r["steps"].as_f64().unwrap_or(0.0);
            if steps <= 0.0 {
                bail!(
                    "smoke: {} completed no step in {}: the bench cannot run",
                    r["tool"],
                    r["scenario"]
                );
            }
        }
    }
    Ok(())
}

impl Ctx {
    fn record(&mut self, mut v: Value) {
        if let Value::Object(m) = &mut v {
            m.retain(|_, x| !x.is_null());
        }
        let line = format!("{v}\n");
        eprint!("  {line}");
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.jsonl)
        {
            let _ = f.write_all(line.as_bytes());
        }
        self.records.push(v);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.target)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A journeys directory of `n` journeys made by `yaml(i)`.
fn journeys_dir(dir: &Path, names: &[String], yaml: impl Fn(&str) -> String) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    for n in names {
        std::fs::write(dir.join(format!("{n}.yaml")), yaml(n))?;
    }
    Ok(())
}

fn http_journey(name: &str, interval: &str, url: &str) -> String {
    format!(
        "name: {name}\ninterval: {interval}\nsteps:\n  - name: get\n    http: {{url: \"{url}\"}}\n    expect: {{status: 200}}\n"
    )
}

/// A running `wayprobe serve`.
struct Serve {
    pid: u32,
    base: String,
}

async fn start_serve(
    cx: &mut Ctx,
    name: &str,
    dir: &Path,
    extra: &[&str],
) -> anyhow::Result<Serve> {
    let port = free_port()?;
    let log = std::fs::File::create(cx.a.out.join(format!("wayprobe-{name}.log")))?;
    let mut cmd = Command::new(&cx.a.wayprobe);
    cmd.arg("serve")
        .arg("--journeys")
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        // 10,000 steps/s of 50 ms each keep 500 runs in flight.
        .args(["--max-concurrent-runs", "8192", "--location", "bench"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log);
    let pid = cx.procs.spawn(&format!("wayprobe-{name}"), &mut cmd)?;
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        if let Ok(r) = cx.http.get(format!("{base}/-/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(180) || procfs::rss_bytes(pid).is_none() {
            cx.procs.stop(pid).await;
            bail!(
                "wayprobe did not become ready; see {}/wayprobe-{name}.log",
                cx.a.out.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("  wayprobe ready in {:.1}s", t.elapsed().as_secs_f64());
    Ok(Serve { pid, base })
}

/// What a `/metrics` scrape says, summed over journeys.
#[derive(Default, Clone)]
struct Scrape {
    steps: f64,
    runs: f64,
    failures: f64,
    skipped: f64,
    /// `le` → cumulative count of `wayprobe_schedule_lag_seconds`.
    lag: Vec<(f64, f64)>,
    /// `wayprobe_schedule_lag_seconds_sum` and `_count`.
    lag_sum: f64,
    lag_count: f64,
    at: Option<Instant>,
    /// Wall time of the scrape (request to the body's last byte), ms.
    ms: f64,
    /// Size of the exposition, bytes.
    bytes: usize,
}

async fn scrape(cx: &Ctx, base: &str) -> anyhow::Result<Scrape> {
    let t = Instant::now();
    let text = cx
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut s = Scrape {
        at: Some(Instant::now()),
        ms: t.elapsed().as_secs_f64() * 1e3,
        bytes: text.len(),
        ..Scrape::default()
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        match name {
            "journey_step_duration_seconds_count" => s.steps += v,
            "journey_runs_total" => {
                s.runs += v;
                if series.contains("result=\"failure\"") {
                    s.failures += v;
                }
            }
            "wayprobe_runs_skipped_total" => s.skipped += v,
            "wayprobe_schedule_lag_seconds_sum" => s.lag_sum += v,
            "wayprobe_schedule_lag_seconds_count" => s.lag_count += v,
            "wayprobe_schedule_lag_seconds_bucket" => {
                let le = series
                    .split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("+Inf");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                s.lag.push((le, v));
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Smallest bucket bound (ms) under which 99 % of the window's lags fall,
/// and the share at or under 5 ms.
fn lag_p99(a: &Scrape, b: &Scrape) -> (Option<f64>, Option<f64>) {
    let delta: Vec<(f64, f64)> = b
        .lag
        .iter()
        .map(|(le, v)| {
            (
                *le,
                v - a.lag.iter().find(|x| x.0 == *le).map_or(0.0, |x| x.1),
            )
        })
        .collect();
    let total = delta
        .iter()
        .find(|x| x.0.is_infinite())
        .map_or(0.0, |x| x.1);
    if total <= 0.0 {
        return (None, None);
    }
    let p99 = delta
        .iter()
        .find(|(_, c)| *c >= 0.99 * total)
        .map(|(le, _)| le * 1e3);
    let le5 = delta
        .iter()
        .find(|x| (x.0 - 0.005).abs() < 1e-12)
        .map(|x| x.1 / total);
    (p99, le5)
}

/// Step durations (ms) of every journey's last run, from the JSON API.
async fn last_steps(
    cx: &Ctx,
    base: &str,
    seen: &mut std::collections::HashSet<String>,
) -> anyhow::Result<Vec<(String, f64)>> {
    let v: Value = cx
        .http
        .get(format!("{base}/api/v1/journeys"))
        .send()
        .await?
        .json()
        .await?;
    let mut out = Vec::new();
    for j in v["journeys"].as_array().into_iter().flatten() {
        let last = &j["last"];
        let key = format!("{} {}", j["name"], last["started_at"]);
        if last.is_null() || !seen.insert(key) {
            continue;
        }
        for s in last["steps"].as_array().into_iter().flatten() {
            if s["status"] == "passed"
                && let Some(d) = s["duration"].as_f64()
            {
                out.push((s["name"].as_str().unwrap_or("").to_string(), d * 1e3));
            }
        }
    }
    Ok(out)
}

/// Measures a running wayprobe for one window.
struct WayprobeWindow {
    requested: f64,
    /// Poll the API every second (few journeys) instead of once at the end.
    poll_api: bool,
    /// Count the CPU of chromedriver and Chromium too.
    tree: bool,
    /// Sample RSS every this many seconds (soak).
    rss_every: Option<f64>,
    /// Seconds; `None`: the default window.
    seconds: Option<f64>,
    /// Time a `/metrics` scrape every this many seconds (as Prometheus would).
    scrape_every: Option<f64>,
}

async fn measure_wayprobe(cx: &mut Ctx, s: &Serve, w: WayprobeWindow) -> anyhow::Result<Value> {
    tokio::time::sleep(Duration::from_secs_f64(cx.a.warmup)).await;
    let seconds = w.seconds.unwrap_or(cx.a.seconds);
    let m0 = scrape(cx, &s.base).await?;
    let c0 = procfs::mark(s.pid, w.tree);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut seen = std::collections::HashSet::new();
    let mut durations = Vec::new();
    let mut rss = Vec::new();
    let mut peak_rss = 0u64;
    let mut next_rss = t0;
    let mut next_scrape = t0;
    let mut scrapes: Vec<f64> = Vec::new();
    let mut scrape_bytes = m0.bytes;
    while Instant::now() < end {
        if let Some(every) = w.scrape_every
            && Instant::now() >= next_scrape
        {
            let m = scrape(cx, &s.base).await?;
            scrapes.push(m.ms);
            scrape_bytes = m.bytes;
            next_scrape += Duration::from_secs_f64(every);
        }
        let r = if w.tree {
            procfs::tree_mem(s.pid)
        } else {
            procfs::rss_bytes(s.pid).unwrap_or(0)
        };
        peak_rss = peak_rss.max(r);
        if Instant::now() >= next_rss {
            rss.push((t0.elapsed().as_secs_f64(), r as f64 / 1048576.0));
            next_rss += Duration::from_secs_f64(w.rss_every.unwrap_or(1.0));
        }
        if w.poll_api {
            durations.extend(last_steps(cx, &s.base, &mut seen).await?);
        }
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
    let c1 = procfs::mark(s.pid, w.tree);
    let rss_end = if w.tree {
        procfs::tree_mem(s.pid)
    } else {
        procfs::rss_bytes(s.pid).unwrap_or(0)
    };
    let m1 = scrape(cx, &s.base).await?;
    durations.extend(last_steps(cx, &s.base, &mut seen).await?);
    let (cpu, wall) = c1.since(&c0, cx.tck);
    let scrape_wall = (m1.at.zip(m0.at).map(|(b, a)| (b - a).as_secs_f64())).unwrap_or(wall);
    let steps = m1.steps - m0.steps;
    let step_rate = steps / scrape_wall;
    let runs = m1.runs - m0.runs;
    let (lag_p99_ms, lag_le5) = lag_p99(&m0, &m1);
    let lags = m1.lag_count - m0.lag_count;
    let lag_mean_ms = (lags > 0.0).then(|| (m1.lag_sum - m0.lag_sum) / lags * 1e3);
    let mut err: Vec<f64> = durations
        .iter()
        .map(|(_, d)| d - cx.a.delay_ms as f64)
        .collect();
    let skipped = m1.skipped - m0.skipped;
    let failed = m1.failures - m0.failures;
    let held = step_rate >= 0.97 * w.requested
        && lag_p99_ms.is_some_and(|l| l <= 5.0)
        && skipped == 0.0
        && failed == 0.0;
    Ok(json!({
        "tool": "wayprobe",
        "requested_rate": w.requested,
        "rate": step_rate,
        "steps": steps,
        "runs": runs,
        "failed": failed,
        "skipped": skipped,
        "cpu_s": cpu,
        "cpu_ms_per_step": (steps > 0.0).then(|| cpu * 1e3 / (step_rate * wall)),
        "cpu_ms_per_run": (runs > 0.0).then(|| cpu * 1e3 / (runs / scrape_wall * wall)),
        "lag_p99_ms": lag_p99_ms,
        "lag_le_5ms_share": lag_le5,
        "lag_mean_ms": lag_mean_ms,
        "scrape_p50_ms": quantile(&mut scrapes, 0.5),
        "scrape_max_ms": quantile(&mut scrapes, 1.0),
        "scrapes": scrapes.len(),
        "scrape_mb": scrape_bytes as f64 / 1048576.0,
        "err_p50_ms": quantile(&mut err, 0.5),
        "err_p99_ms": quantile(&mut err, 0.99),
        "err_max_ms": quantile(&mut err, 1.0),
        "samples": err.len(),
        "rss_mb": rss_end as f64 / 1048576.0,
        // With `tree`: PSS of wayprobe, chromedriver and Chromium.
        "peak_rss_mb": peak_rss as f64 / 1048576.0,
        // From the second sample: the first still holds start-up's peak
        // (loading, the rules fingerprint), which the allocator gives back
        // within minutes; a leak shows in the samples after it.
        "rss_slope_mb_per_h": w.rss_every.and_then(|_| slope(rss.get(1..).unwrap_or_default())).map(|s| s * 3600.0),
        // The samples behind the slope, as [seconds into the window, MB].
        "rss_samples_mb": if w.rss_every.is_some() { json!(rss) } else { Value::Null },
        "held": held,
        "durations_ms": if w.tree { json!(durations.iter().map(|d| d.1).collect::<Vec<_>>()) } else { Value::Null },
    }))
}

/// Runs `bench load` (floor or blackbox driver) for one window; with
/// `measured`, CPU and RSS are those of that process (blackbox_exporter),
/// otherwise of the load process itself (the floor).
/// One `bench load` window.
struct Load<'a> {
    mode: &'a str,
    addr: &'a str,
    path: &'a str,
    rate: f64,
    /// The process whose CPU and RSS count (None: the load process).
    measured: Option<u32>,
    seconds: f64,
    rss_every: Option<f64>,
}

async fn run_load(cx: &mut Ctx, l: Load<'_>) -> anyhow::Result<Value> {
    let Load {
        mode,
        addr,
        path,
        rate,
        measured,
        seconds,
        rss_every,
    } = l;
    let mut cmd = Command::new(&cx.exe);
    cmd.args(["load", "--mode", mode, "--addr", addr, "--path", path])
        .args(["--rate", &rate.to_string()])
        .args([
            "--warmup",
            &cx.a.warmup.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--delay-ms", &cx.a.delay_ms.to_string()])
        .stdout(Stdio::piped());
    let lpid = cx.procs.spawn(&format!("load-{mode}"), &mut cmd)?;
    let pid = measured.unwrap_or(lpid);
    tokio::time::sleep(Duration::from_secs_f64(cx.a.warmup)).await;
    let c0 = procfs::mark(pid, false);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(seconds);
    let mut rss = Vec::new();
    let mut peak = 0u64;
    while Instant::now() < end {
        let r = procfs::rss_bytes(pid).unwrap_or(0);
        peak = peak.max(r);
        rss.push((t0.elapsed().as_secs_f64(), r as f64 / 1048576.0));
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs_f64(rss_every.unwrap_or(1.0)))).await;
    }
    let c1 = procfs::mark(pid, false);
    let rss_end = procfs::rss_bytes(pid).unwrap_or(0);
    let out = cx
        .procs
        .output(lpid)
        .await
        .with_context(|| format!("load {mode}"))?;
    let mut v: Value =
        serde_json::from_str(out.trim()).with_context(|| format!("load {mode} said {out:?}"))?;
    let (cpu, wall) = c1.since(&c0, cx.tck);
    let steps = v["steps"].as_f64().unwrap_or(0.0);
    let step_rate = v["rate"].as_f64().unwrap_or(0.0);
    let held = step_rate >= 0.97 * rate
        && v["lag_p99_ms"].as_f64().is_some_and(|l| l <= 5.0)
        && v["skipped"].as_f64() == Some(0.0)
        && v["failed"].as_f64() == Some(0.0);
    let m = v.as_object_mut().context("load output")?;
    m.insert("cpu_s".into(), json!(cpu));
    m.insert(
        "cpu_ms_per_step".into(),
        json!((steps > 0.0).then(|| cpu * 1e3 / (step_rate * wall))),
    );
    m.insert("rss_mb".into(), json!(rss_end as f64 / 1048576.0));
    m.insert("peak_rss_mb".into(), json!(peak as f64 / 1048576.0));
    if rss_every.is_some() {
        m.insert(
            "rss_slope_mb_per_h".into(),
            json!(slope(&rss).map(|s| s * 3600.0)),
        );
    }
    m.insert("held".into(), json!(held));
    Ok(v)
}

async fn start_blackbox(cx: &mut Ctx, name: &str) -> anyhow::Result<(u32, String)> {
    let port = free_port()?;
    let cfg = cx.a.out.join("blackbox.yml");
    std::fs::write(
        &cfg,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      valid_status_codes: [200]\n",
    )?;
    let log = std::fs::File::create(cx.a.out.join(format!("blackbox-{name}.log")))?;
    let mut cmd = Command::new(&cx.a.blackbox);
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log);
    let pid = cx.procs.spawn(&format!("blackbox-{name}"), &mut cmd)?;
    let addr = format!("127.0.0.1:{port}");
    let t = Instant::now();
    while cx
        .http
        .get(format!("http://{addr}/-/healthy"))
        .send()
        .await
        .is_err()
    {
        if t.elapsed() > Duration::from_secs(30) {
            bail!(
                "blackbox_exporter did not start; see its log in {}",
                cx.a.out.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((pid, addr))
}

/// blackbox_exporter probing `path` of the target at `rate` through /probe.
async fn blackbox_at(
    cx: &mut Ctx,
    name: &str,
    rate: f64,
    seconds: f64,
    rss_every: Option<f64>,
) -> anyhow::Result<Value> {
    let (pid, addr) = start_blackbox(cx, name).await?;
    let probe = format!("/probe?module=http_2xx&target={}", cx.url("/delay"));
    let r = run_load(
        cx,
        Load {
            mode: "blackbox",
            addr: &addr,
            path: &probe,
            rate,
            measured: Some(pid),
            seconds,
            rss_every,
        },
    )
    .await;
    cx.procs.stop(pid).await;
    let mut v = r?;
    v["tool"] = json!("blackbox_exporter");
    Ok(v)
}

async fn floor_at(cx: &mut Ctx, mode: &str, rate: f64, seconds: f64) -> anyhow::Result<Value> {
    let target = cx.target.clone();
    let mut v = run_load(
        cx,
        Load {
            mode,
            addr: &target,
            path: "/delay",
            rate,
            measured: None,
            seconds,
            rss_every: None,
        },
    )
    .await?;
    v["tool"] = json!("floor");
    Ok(v)
}

/// wayprobe at `rate` one-step journeys per second: `rate` journeys at a
/// 1 s interval (above 10,000/s: 500 ms).
async fn wayprobe_at(
    cx: &mut Ctx,
    name: &str,
    rate: f64,
    w: WayprobeWindow,
) -> anyhow::Result<Value> {
    let (n, interval) = if rate > 10_000.0 {
        ((rate / 2.0) as usize, "500ms")
    } else {
        (rate as usize, "1s")
    };
    let names: Vec<String> = (0..n).map(|i| format!("j{i:05}")).collect();
    let dir = cx.a.out.join(format!("journeys-{name}"));
    let url = cx.url("/delay");
    journeys_dir(&dir, &names, |j| http_journey(j, interval, &url))?;
    let s = start_serve(cx, name, &dir, &[]).await?;
    let r = measure_wayprobe(cx, &s, w).await;
    cx.procs.stop(s.pid).await;
    let mut v = r?;
    v["journeys"] = json!(n);
    Ok(v)
}

fn window(requested: f64) -> WayprobeWindow {
    WayprobeWindow {
        requested,
        poll_api: false,
        tree: false,
        rss_every: None,
        seconds: None,
        scrape_every: None,
    }
}

fn tag(mut v: Value, scenario: &str) -> Value {
    v["scenario"] = json!(scenario);
    v
}

async fn rate(cx: &mut Ctx, name: &str, r: f64) -> anyhow::Result<()> {
    let secs = cx.a.seconds;
    let v = wayprobe_at(
        cx,
        name,
        r,
        WayprobeWindow {
            poll_api: r <= 100.0,
            ..window(r)
        },
    )
    .await?;
    cx.record(tag(v, name));
    if cx.a.no_peers {
        return Ok(());
    }
    let v = blackbox_at(cx, name, r, secs, None).await?;
    cx.record(tag(v, name));
    let v = floor_at(cx, "floor", r, secs).await?;
    cx.record(tag(v, name));
    Ok(())
}

async fn maxrate(cx: &mut Ctx) -> anyhow::Result<()> {
    let secs = (cx.a.seconds / 2.0).max(3.0);
    let tools = if cx.a.no_peers {
        &["wayprobe"][..]
    } else {
        &["wayprobe", "blackbox_exporter", "floor"][..]
    };
    for &tool in tools {
        let mut best = 0.0;
        for &r in &cx.a.max_rates.clone() {
            let v = match tool {
                "wayprobe" => {
                    wayprobe_at(
                        cx,
                        "maxrate",
                        r,
                        WayprobeWindow {
                            seconds: Some(secs),
                            ..window(r)
                        },
                    )
                    .await?
                }
                "blackbox_exporter" => blackbox_at(cx, "maxrate", r, secs, None).await?,
                _ => floor_at(cx, "floor", r, secs).await?,
            };
            let held = v["held"].as_bool() == Some(true);
            cx.record(tag(v, "maxrate-step"));
            if !held {
                break;
            }
            best = r;
        }
        cx.record(json!({"scenario": "maxrate", "tool": tool, "max_rate_held": best}));
    }
    Ok(())
}

async fn journeys10k(cx: &mut Ctx) -> anyhow::Result<()> {
    let n = 10_000;
    let names: Vec<String> = (0..n).map(|i| format!("j{i:05}")).collect();
    let dir = cx.a.out.join("journeys-10k");
    let url = cx.url("/delay");
    journeys_dir(&dir, &names, |j| http_journey(j, "60s", &url))?;
    let s = start_serve(cx, "journeys10k", &dir, &[]).await?;
    let r = measure_wayprobe(cx, &s, window(n as f64 / 60.0)).await;
    cx.procs.stop(s.pid).await;
    let mut v = r?;
    v["journeys"] = json!(n);
    cx.record(tag(v, "journeys10k"));
    Ok(())
}

async fn cookie(cx: &mut Ctx) -> anyhow::Result<()> {
    // 100 journeys of 4 steps at 1 s: 400 steps/s.
    let n = 100;
    let names: Vec<String> = (0..n).map(|i| format!("c{i:03}")).collect();
    let dir = cx.a.out.join("journeys-cookie");
    let base = cx.url("");
    journeys_dir(&dir, &names, |j| {
        let mut y = format!("name: {j}\ninterval: 1s\nsteps:\n");
        for p in ["login", "cart", "checkout", "account"] {
            let _ = write!(
                y,
                "  - name: {p}\n    http: {{url: \"{base}/{p}\"}}\n    expect: {{status: 200}}\n"
            );
        }
        y
    })?;
    let s = start_serve(cx, "cookie", &dir, &[]).await?;
    let r = measure_wayprobe(cx, &s, window(4.0 * n as f64)).await;
    cx.procs.stop(s.pid).await;
    cx.record(tag(r?, "cookie"));
    if cx.a.no_peers {
        return Ok(());
    }
    let secs = cx.a.seconds;
    let v = floor_at(cx, "cookie", 4.0 * n as f64, secs).await?;
    cx.record(tag(v, "cookie"));
    Ok(())
}

/// The goal's memory figure over time: the 10,000 one-step journeys of
/// `journeys10k` (60 s interval, 167 steps/s, so an hour is 600,000 runs),
/// RSS sampled twelve times; blackbox_exporter at the same rate beside it.
async fn soak(cx: &mut Ctx) -> anyhow::Result<()> {
    let (n, r) = (10_000usize, 10_000.0 / 60.0);
    let secs = cx.a.soak;
    let every = (secs / 12.0).max(1.0);
    let names: Vec<String> = (0..n).map(|i| format!("j{i:05}")).collect();
    let dir = cx.a.out.join("journeys-soak");
    let url = cx.url("/delay");
    journeys_dir(&dir, &names, |j| http_journey(j, "60s", &url))?;
    let s = start_serve(cx, "soak", &dir, &[]).await?;
    // Every journey has run before the first sample, so the slope is the
    // hour's, not the start-up's (the status store filling).
    tokio::time::sleep(Duration::from_secs(60)).await;
    let w = WayprobeWindow {
        rss_every: Some(every),
        seconds: Some(secs),
        ..window(r)
    };
    let v = measure_wayprobe(cx, &s, w).await;
    cx.procs.stop(s.pid).await;
    let mut v = v?;
    v["journeys"] = json!(n);
    cx.record(tag(v, "soak"));
    if cx.a.no_peers {
        return Ok(());
    }
    let v = blackbox_at(cx, "soak", r, secs, Some(every)).await?;
    cx.record(tag(v, "soak"));
    Ok(())
}

/// Issue 10's check: `n` journeys against the target, idle and then under
/// 200 closed-loop readers of the status page and the API; schedule lag,
/// `/metrics` scrape time (one every 2 s, as a busy Prometheus would) and
/// RSS side by side. The target is no visible change in lag. Intervals keep
/// the probe rate near 200 steps/s at both sizes (2,000 at 10 s, 10,000 at
/// 60 s), so the comparison is the readers', not the machine's limit.
async fn readers(cx: &mut Ctx) -> anyhow::Result<()> {
    for (n, interval) in [(2_000usize, 10.0f64), (10_000, 60.0)] {
        let names: Vec<String> = (0..n).map(|i| format!("r{i:05}")).collect();
        let dir = cx.a.out.join(format!("journeys-readers{n}"));
        let url = cx.url("/delay");
        journeys_dir(&dir, &names, |j| {
            http_journey(j, &format!("{interval}s"), &url)
        })?;
        let mut idle: Option<Value> = None;
        for with_readers in [false, true] {
            let s = start_serve(cx, &format!("readers{n}"), &dir, &[]).await?;
            // A 10,000-journey start spreads first runs over a whole
            // interval; wait a full one so both windows see steady state.
            tokio::time::sleep(Duration::from_secs_f64(interval.min(30.0))).await;
            let reader = if with_readers {
                let addr = s.base.trim_start_matches("http://").to_string();
                let mut cmd = Command::new(&cx.exe);
                cmd.args([
                    "load",
                    "--mode",
                    "readers",
                    "--addr",
                    &addr,
                    "--path",
                    "/,/api/v1/journeys",
                ])
                .args(["--concurrency", "200", "--warmup", &cx.a.warmup.to_string()])
                .args(["--seconds", &cx.a.seconds.to_string()])
                .stdout(Stdio::piped());
                Some(cx.procs.spawn("readers", &mut cmd)?)
            } else {
                None
            };
            let r = measure_wayprobe(
                cx,
                &s,
                WayprobeWindow {
                    scrape_every: Some(2.0),
                    ..window(n as f64 / interval)
                },
            )
            .await;
            let rd = match reader {
                Some(p) => Some(cx.procs.output(p).await),
                None => None,
            };
            cx.procs.stop(s.pid).await;
            let mut v = r?;
            v["journeys"] = json!(n);
            v["readers"] = json!(if with_readers { 200 } else { 0 });
            if let Some(rd) = rd {
                let rd: Value = serde_json::from_str(rd?.trim())?;
                v["reads_per_s"] = rd["rate"].clone();
                v["read_p99_ms"] = rd["latency_p99_ms"].clone();
                v["reads_failed"] = rd["failed"].clone();
            }
            if let Some(i) = &idle {
                let d = |k: &str| v[k].as_f64().zip(i[k].as_f64()).map(|(a, b)| a - b);
                let (p99, mean) = (d("lag_p99_ms"), d("lag_mean_ms"));
                let scrape = v["scrape_p50_ms"]
                    .as_f64()
                    .zip(i["scrape_p50_ms"].as_f64())
                    .filter(|(_, b)| *b > 0.0)
                    .map(|(a, b)| a / b);
                v["lag_p99_change_ms"] = json!(p99);
                v["lag_mean_change_ms"] = json!(mean);
                v["scrape_p50_ratio"] = json!(scrape);
            }
            let tag_name = if with_readers {
                format!("readers{n}")
            } else {
                format!("readers{n}-idle")
            };
            let v = tag(v, &tag_name);
            if !with_readers {
                idle = Some(v.clone());
            }
            cx.record(v);
        }
    }
    Ok(())
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Names of `n` browser journeys whose stable phases within `interval` fall
/// within 50 ms of each other, so their runs overlap (concurrent sessions).
fn aligned_names(n: usize, interval: Duration) -> Vec<String> {
    let epoch = SystemTime::UNIX_EPOCH;
    let phase =
        |s: &str| interval.saturating_sub(wayprobe::scheduler::first_delay(s, interval, epoch));
    let want = phase("b0");
    let mut out = vec!["b0".to_string()];
    let mut k = 1;
    while out.len() < n {
        let name = format!("b{k}");
        let p = phase(&name);
        if p.abs_diff(want) < Duration::from_millis(50) {
            out.push(name);
        }
        k += 1;
    }
    out
}

async fn browser(cx: &mut Ctx) -> anyhow::Result<()> {
    if !on_path("chromium") || !on_path("chromedriver") {
        cx.record(json!({"scenario": "browser", "tool": "wayprobe", "skipped": "chromium or chromedriver not on PATH"}));
        return Ok(());
    }
    let url = cx.url("/page");
    // Chromium start-up takes seconds on a busy machine: 10 s apart, 9 s to finish.
    let secs = cx.a.seconds.max(20.0);
    let mut base = None;
    for n in [1usize, 2, 4] {
        let names = aligned_names(n, Duration::from_secs(10));
        let dir = cx.a.out.join(format!("journeys-browser{n}"));
        journeys_dir(&dir, &names, |j| {
            format!(
                "name: {j}\ninterval: 10s\ntimeout: 9s\nsteps:\n  - name: page\n    browser:\n      - goto: \"{url}\"\n      - expect: {{selector: \"#state\", contains: \"ready\"}}\n"
            )
        })?;
        let s = start_serve(
            cx,
            &format!("browser{n}"),
            &dir,
            &["--max-browser-sessions", &n.to_string()],
        )
        .await?;
        let idle = procfs::tree_mem(s.pid) as f64 / 1048576.0;
        let r = measure_wayprobe(
            cx,
            &s,
            WayprobeWindow {
                poll_api: true,
                tree: true,
                seconds: Some(secs),
                ..window(n as f64 / 10.0)
            },
        )
        .await;
        cx.procs.stop(s.pid).await;
        let mut v = r?;
        let mut d: Vec<f64> = v["durations_ms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        v["sessions"] = json!(n);
        let p50 = quantile(&mut d, 0.5);
        if n == 1 {
            base = p50;
        }
        v["step_p50_ms"] = json!(p50);
        v["step_inflation"] = json!(p50.zip(base).map(|(a, b)| a / b));
        v["mem_per_session_mb"] =
            json!((v["peak_rss_mb"].as_f64().unwrap_or(0.0) - idle) / n as f64);
        if let Value::Object(m) = &mut v {
            m.remove("durations_ms");
        }
        cx.record(tag(v, &format!("browser{n}")));
    }
    Ok(())
}

// ---- the table ----

fn find<'a>(rs: &'a [Value], scenario: &str, tool: &str) -> Option<&'a Value> {
    rs.iter()
        .find(|r| r["scenario"] == scenario && r["tool"] == tool)
}

fn num(r: Option<&Value>, k: &str) -> Option<f64> {
    r.and_then(|r| r[k].as_f64())
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// Goal check: `Some(true)` met, `Some(false)` not met.
fn mark(v: Option<f64>, goal: &dyn Fn(f64) -> bool) -> &'static str {
    match v.map(goal) {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "–",
    }
}

type Goal = (&'static str, Box<dyn Fn(f64) -> bool>);

/// The table: one row per figure, the three tools side by side, the ratios
/// wayprobe/blackbox and wayprobe/floor, and the goal.
pub fn table(rs: &[Value], delay_ms: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| scenario | figure | wayprobe | blackbox_exporter | floor | wayprobe ÷ blackbox | wayprobe ÷ floor | goal | |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let mut row = |scenario: &str, label: &str, key: &str, goal: Option<Goal>| {
        let w = num(find(rs, scenario, "wayprobe"), key);
        let b = num(find(rs, scenario, "blackbox_exporter"), key);
        let f = num(find(rs, scenario, "floor"), key);
        if w.is_none() && b.is_none() && f.is_none() {
            return;
        }
        let (g, m) = match &goal {
            Some((text, check)) => (*text, mark(w, check.as_ref())),
            None => ("", ""),
        };
        let _ = writeln!(
            out,
            "| {scenario} | {label} | {} | {} | {} | {} | {} | {g} | {m} |",
            fmt(w),
            fmt(b),
            fmt(f),
            ratio(w, b),
            ratio(w, f)
        );
    };
    row(
        "rate50",
        "CPU ms/step at 50/s",
        "cpu_ms_per_step",
        Some(("≤ 0.15", Box::new(|x| x <= 0.15))),
    );
    row("rate50", "steps/s held", "rate", None);
    row(
        "rate50",
        "timing error p99 ms",
        "err_p99_ms",
        Some(("≤ 5", Box::new(|x| x <= 5.0))),
    );
    row(
        "rate2000",
        "CPU ms/step at 2,000/s",
        "cpu_ms_per_step",
        Some(("≤ 0.1", Box::new(|x| x <= 0.1))),
    );
    row("rate2000", "steps/s held", "rate", None);
    row(
        "rate2000",
        "lag p99 ms (≤ bucket)",
        "lag_p99_ms",
        Some(("≤ 5", Box::new(|x| x <= 5.0))),
    );
    row("rate2000", "timing error p50 ms", "err_p50_ms", None);
    row(
        "rate2000",
        "timing error p99 ms",
        "err_p99_ms",
        Some(("≤ 5", Box::new(|x| x <= 5.0))),
    );
    row("rate2000", "RSS MB", "rss_mb", None);
    row(
        "maxrate",
        "highest steps/s held (lag p99 ≤ 5 ms, none skipped; 0: not even the first rung)",
        "max_rate_held",
        Some(("≥ 10,000", Box::new(|x| x >= 10_000.0))),
    );
    row(
        "journeys10k",
        "RSS MB, 10,000 journeys at 60 s",
        "rss_mb",
        Some(("≤ 64", Box::new(|x| x <= 64.0))),
    );
    row("journeys10k", "CPU ms/step", "cpu_ms_per_step", None);
    row(
        "journeys10k",
        "lag p99 ms (≤ bucket)",
        "lag_p99_ms",
        Some(("≤ 5", Box::new(|x| x <= 5.0))),
    );
    row(
        "cookie",
        "CPU ms/step, 4-step cookie journey",
        "cpu_ms_per_step",
        None,
    );
    row(
        "cookie",
        "timing error p99 ms",
        "err_p99_ms",
        Some(("≤ 5", Box::new(|x| x <= 5.0))),
    );
    row("soak", "RSS MB at the end", "rss_mb", None);
    row(
        "soak",
        "RSS slope MB/h over the soak (start-up growth dominates a short one)",
        "rss_slope_mb_per_h",
        Some(("flat", Box::new(|x| x.abs() <= 5.0))),
    );
    for n in [2_000, 10_000] {
        let idle = format!("readers{n}-idle");
        let busy = format!("readers{n}");
        let j = if n == 2_000 {
            "2,000 journeys at 10 s"
        } else {
            "10,000 journeys at 60 s"
        };
        row(
            &idle,
            &format!("lag p99 ms (≤ bucket), {j}, idle"),
            "lag_p99_ms",
            None,
        );
        row(
            &busy,
            "lag p99 ms (≤ bucket), + 200 readers",
            "lag_p99_ms",
            None,
        );
        row(
            &busy,
            "lag p99 change ms (readers − idle)",
            "lag_p99_change_ms",
            Some(("0 (same bucket)", Box::new(|x| x <= 0.0))),
        );
        row(&idle, "lag mean ms, idle", "lag_mean_ms", None);
        row(&busy, "lag mean ms, + 200 readers", "lag_mean_ms", None);
        row(&idle, "/metrics scrape p50 ms, idle", "scrape_p50_ms", None);
        row(
            &busy,
            "/metrics scrape p50 ms, + 200 readers",
            "scrape_p50_ms",
            None,
        );
        row(&idle, "/metrics size MB", "scrape_mb", None);
        row(&idle, "RSS MB, idle", "rss_mb", None);
        row(&busy, "RSS MB, + 200 readers", "rss_mb", None);
        row(&busy, "reads/s (status page + API)", "reads_per_s", None);
        row(&busy, "read latency p99 ms", "read_p99_ms", None);
        row(
            &busy,
            "timing error p99 ms, + 200 readers",
            "err_p99_ms",
            None,
        );
    }
    for n in [1, 2, 4] {
        let sc = format!("browser{n}");
        row(
            &sc,
            "CPU ms/run (wayprobe + chromedriver + Chromium)",
            "cpu_ms_per_run",
            None,
        );
        row(
            &sc,
            "memory MB/session (PSS, peak − idle)",
            "mem_per_session_mb",
            None,
        );
        row(&sc, "browser step p50 ms", "step_p50_ms", None);
        row(&sc, "step time ÷ 1 session", "step_inflation", None);
        row(&sc, "failed runs", "failed", None);
    }
    if let Some(why) = find(rs, "browser1", "wayprobe").and_then(|r| r["skipped"].as_str()) {
        let _ = writeln!(out, "| browser | skipped: {why} | | | | | | | |");
    }
    let _ = writeln!(
        out,
        "\nTiming error = reported step duration − {delay_ms} ms server delay; connection set-up (TCP connect on loopback) is included for all three (each step/probe opens a new connection; steps 2–4 of the cookie journey reuse it). blackbox_exporter's figure is its probe_duration_seconds. Lag: wayprobe's wayprobe_schedule_lag_seconds (a bucket bound); blackbox/floor: the driver's start lag (exact)."
    );
    out
}
