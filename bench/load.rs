//! Open-loop, fixed-rate load (the floor client and the blackbox_exporter
//! driver) and closed-loop readers, reporting one JSON line on stdout.
//!
//! Open loop: request `i` is due at `start + i/rate` whatever happened to
//! earlier ones, so a slow server shows as lag and backlog, not as a quietly
//! lower rate. Only requests due inside the measured window (after the
//! warm-up) are counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::stats::quantile;

/// What each due request does.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One step: a new connection and one GET of `--path` (the floor).
    Floor,
    /// The 4-step cookie journey over one connection (the floor of `cookie`);
    /// `--rate` counts steps.
    Cookie,
    /// One GET of blackbox_exporter's `/probe` (`--path` holds the query);
    /// reads `probe_success` and `probe_duration_seconds` from the answer.
    Blackbox,
    /// `--concurrency` closed-loop readers of `--path` (comma-separated paths).
    Readers,
}

/// Flags of `bench load`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// `127.0.0.1:PORT` of the server to load.
    #[arg(long)]
    addr: SocketAddr,
    /// Path (and query) to GET.
    #[arg(long, default_value = "/delay")]
    path: String,
    /// Steps per second (open-loop modes).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Concurrent readers (`readers` mode).
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds before the measured window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The target's server delay, subtracted to give the timing error.
    #[arg(long, default_value_t = 50.0)]
    delay_ms: f64,
    /// Requests in flight at most; a due request beyond it is skipped.
    #[arg(long, default_value_t = 8192)]
    max_in_flight: usize,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    /// Start lag of each counted request, ms.
    lag: Vec<f64>,
    /// Reported duration − server delay, ms.
    err: Vec<f64>,
}

/// One GET over a fresh connection (or `conn` when given); returns the
/// status, the body and any `Set-Cookie`.
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
    cookie: Option<&str>,
) -> anyhow::Result<(u16, Bytes, Option<String>)> {
    let mut req = Request::get(path).header("host", "127.0.0.1");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = sender.send_request(req.body(Empty::new())?).await?;
    let status = resp.status().as_u16();
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string());
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body, set))
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One floor step: connect, GET, read the body; its duration in ms
/// (connection set-up included, as in a probe's first step).
async fn floor_step(addr: SocketAddr, path: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut s = connect(addr).await?;
    let (status, _, _) = get(&mut s, path, None).await?;
    anyhow::ensure!(status == 200, "status {status}");
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The floor's 4-step cookie journey: one connection, the session cookie
/// from step 1 sent on steps 2–4. Durations of each step in ms.
async fn cookie_journey(addr: SocketAddr) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(4);
    let t = Instant::now();
    let mut s = connect(addr).await?;
    let (status, _, set) = get(&mut s, "/login", None).await?;
    anyhow::ensure!(status == 200, "login status {status}");
    out.push(t.elapsed().as_secs_f64() * 1e3);
    let cookie = set.ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    for p in ["/cart", "/checkout", "/account"] {
        let t = Instant::now();
        let (status, _, _) = get(&mut s, p, Some(&cookie)).await?;
        anyhow::ensure!(status == 200, "{p} status {status}");
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

/// One `/probe` of blackbox_exporter: its own `probe_duration_seconds`, in
/// ms, when `probe_success` is 1.
async fn blackbox_probe(addr: SocketAddr, path: &str) -> anyhow::Result<f64> {
    let mut s = connect(addr).await?;
    let (status, body, _) = get(&mut s, path, None).await?;
    anyhow::ensure!(status == 200, "status {status}");
    let text = std::str::from_utf8(&body)?;
    let value = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    anyhow::ensure!(value("probe_success") == Some(1.0), "probe failed");
    value("probe_duration_seconds")
        .map(|s| s * 1e3)
        .ok_or_else(|| anyhow::anyhow!("no probe_duration_seconds"))
}

pub async fn main(a: Args) -> anyhow::Result<()> {
    if a.mode == Mode::Readers {
        return readers(a).await;
    }
    let a = Arc::new(a);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let steps_per_item = if a.mode == Mode::Cookie { 4.0 } else { 1.0 };
    let item_rate = a.rate / steps_per_item;
    let start = Instant::now();
    let window = start + Duration::from_secs_f64(a.warmup);
    let total = ((a.warmup + a.seconds) * item_rate).round() as u64;
    let mut skipped = 0u64;
    let mut i = 0u64;
    while i < total {
        let due = start + Duration::from_secs_f64(i as f64 / item_rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        i += 1;
        let counted = due >= window;
        if in_flight.load(Ordering::Relaxed) >= a.max_in_flight {
            skipped += u64::from(counted);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (a, tally, in_flight) = (a.clone(), tally.clone(), in_flight.clone());
        tokio::spawn(async move {
            let lag = due.elapsed().as_secs_f64() * 1e3;
            let res = match a.mode {
                Mode::Floor => floor_step(a.addr, &a.path).await.map(|d| vec![d]),
                Mode::Cookie => cookie_journey(a.addr).await,
                Mode::Blackbox => blackbox_probe(a.addr, &a.path).await.map(|d| vec![d]),
                Mode::Readers => unreachable!(),
            };
            if counted {
                let mut t = tally.lock().unwrap();
                t.lag.push(lag);
                match res {
                    Ok(ds) => {
                        t.ok += ds.len() as u64;
                        t.err.extend(ds.into_iter().map(|d| d - a.delay_ms));
                    }
                    Err(_) => t.failed += 1,
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let end = Instant::now();
    // Let the last ones finish (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut t = std::mem::take(&mut *tally.lock().unwrap());
    let measured = (end - window).as_secs_f64().max(1e-9);
    let out = json!({
        "requested_rate": a.rate,
        "steps": t.ok,
        "failed": t.failed,
        "skipped": skipped,
        "rate": t.ok as f64 / measured,
        "lag_p99_ms": quantile(&mut t.lag, 0.99),
        "err_p50_ms": quantile(&mut t.err, 0.5),
        "err_p99_ms": quantile(&mut t.err, 0.99),
        "err_max_ms": quantile(&mut t.err, 1.0),
        "samples": t.err.len(),
    });
    println!("{out}");
    Ok(())
}

/// Closed-loop readers: each fetches the paths in turn over a kept-alive
/// connection, as browsers and dashboards do, for warm-up + window seconds.
async fn readers(a: Args) -> anyhow::Result<()> {
    let paths: Arc<Vec<String>> = Arc::new(a.path.split(',').map(str::to_string).collect());
    let start = Instant::now();
    let window = start + Duration::from_secs_f64(a.warmup);
    let end = window + Duration::from_secs_f64(a.seconds);
    let tally = Arc::new(Mutex::new((0u64, 0u64, Vec::<f64>::new())));
    let mut tasks = Vec::new();
    for r in 0..a.concurrency {
        let (paths, tally) = (paths.clone(), tally.clone());
        let addr = a.addr;
        tasks.push(tokio::spawn(async move {
            let mut sender = None;
            let mut k = r;
            while Instant::now() < end {
                let path = &paths[k % paths.len()];
                k += 1;
                let t = Instant::now();
                let res = async {
                    if sender.is_none() {
                        sender = Some(connect(addr).await?);
                    }
                    let s = sender.as_mut().expect("just set");
                    let (status, _, _) = get(s, path, None).await?;
                    anyhow::ensure!(status == 200, "status {status}");
                    Ok(())
                };
                let res = tokio::time::timeout(Duration::from_secs(30), res).await;
                let ok = matches!(res, Ok(Ok(())));
                if !ok {
                    sender = None;
                }
                if t >= window {
                    let mut g = tally.lock().unwrap();
                    if ok {
                        g.0 += 1;
                        g.2.push(t.elapsed().as_secs_f64() * 1e3);
                    } else {
                        g.1 += 1;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut g = std::mem::take(&mut *tally.lock().unwrap());
    let out = json!({
        "reads": g.0,
        "failed": g.1,
        "rate": g.0 as f64 / a.seconds,
        "latency_p50_ms": quantile(&mut g.2, 0.5),
        "latency_p99_ms": quantile(&mut g.2, 0.99),
    });
    println!("{out}");
    Ok(())
}
