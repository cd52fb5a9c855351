//! `wayprobe serve` end to end: the metric exposition (golden, promtool, a
//! real Prometheus scraping it), the endpoints, the status page, live reload
//! (valid, invalid, removed journey, ConfigMap-style symlink swap), start-up
//! with invalid journeys and graceful shutdown on SIGTERM.

use std::path::Path;
use std::time::{Duration, SystemTime};

use wayprobe::journey::LoadOptions;
use wayprobe::metrics::Metrics;
use wayprobe::outcome::{Failure, JourneyOutcome, Reason, RunResult, StepOutcome, StepStatus};
use wayprobe::run::{RunOptions, Runner};
use wayprobe::serve::{ServeConfig, Source};

use crate::support::{
    bin, eventually, free_port, get, golden::assert_golden, journey, target::Target, tool,
};

const SHOP: &str = "name: shop\ninterval: 30s\ntimeout: 10s\nlabels: {team: web}\nsteps:\n  - name: home\n    http: {url: \"http://127.0.0.1:9/\"}\n  - name: buy\n    http: {url: \"http://127.0.0.1:9/buy\"}\nslos:\n  - {name: latency, objective: 95%, threshold: 750ms}\n  - {name: slow-latency, objective: 99%, threshold: 2s}\n";
const API: &str = "name: api\ninterval: 1m\nsteps:\n  - name: ping\n    http: {url: \"http://127.0.0.1:9/ping\"}\n";

const FRESH: &str = "name: fresh\ninterval: 1m\nsteps:\n  - name: ping\n    http: {url: \"http://127.0.0.1:9/ping\"}\n";

/// The trace id of every run [`outcome`] makes: the exemplars' label.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn outcome(name: &str, steps: &[(&str, u64, Option<Reason>)]) -> JourneyOutcome {
    let mut failed = false;
    let steps: Vec<StepOutcome> = steps
        .iter()
        .map(|(s, ms, reason)| {
            if failed {
                return StepOutcome::skipped(s, "http");
            }
            failed = reason.is_some();
            StepOutcome {
                status: if failed {
                    StepStatus::Failed
                } else {
                    StepStatus::Passed
                },
                duration: Duration::from_millis(*ms),
                failure: reason.map(|r| Failure::new(r, "boom")),
                ..StepOutcome::skipped(s, "http")
            }
        })
        .collect();
    let total = steps.iter().map(|s| s.duration).sum();
    JourneyOutcome {
        attempts: 1,
        journey: name.into(),
        result: if failed {
            RunResult::Failure
        } else {
            RunResult::Success
        },
        started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        duration: total,
        steps,
        finally: Vec::new(),
        trace_id: Some(TRACE_ID.into()),
        trace_url: None,
    }
}

/// The exposition of a small journey set, after a few runs, is exactly the
/// golden file: names, labels, pre-initialised zeros, SLO buckets, `le` form.
#[test]
fn metrics_exposition_golden() {
    let m = Metrics::new("eu-west-1");
    // `fresh` never runs: its last-run gauges are absent, not 0.
    let js = vec![journey(SHOP, &[]), journey(API, &[]), journey(FRESH, &[])];
    let series = m.set_journeys(&js);
    series[0].record(&outcome("shop", &[("home", 120, None), ("buy", 600, None)]));
    series[0].record(&outcome(
        "shop",
        &[("home", 90, None), ("buy", 2500, Some(Reason::Status))],
    ));
    series[0].record(&outcome(
        "shop",
        &[("home", 40, Some(Reason::Timeout)), ("buy", 0, None)],
    ));
    series[1].record(&outcome("api", &[("ping", 30, None)]));
    series[1].skip();
    assert_golden("metrics/exposition.txt", &m.encode());
    assert_golden(
        "metrics/exposition.prom",
        &wayprobe::metrics::to_prometheus_text(&m.encode()),
    );
}

/// `/metrics` streams the exposition in pieces of whole lines: joined, the
/// pieces are exactly the one-piece text, in both formats, and a scraper
/// that goes away stops the encoding.
#[test]
fn the_streamed_exposition_is_the_same_text_in_pieces() {
    use wayprobe::metrics::{ChunkWriter, EXPOSITION_CHUNK};
    let m = Metrics::new("eu-west-1");
    let js: Vec<_> = (0..300)
        .map(|i| {
            journey(
                &format!("name: j{i:03}\nsteps:\n  - name: get\n    http: {{url: \"http://127.0.0.1:9/\"}}\n"),
                &[],
            )
        })
        .collect();
    let series = m.set_journeys(&js);
    series[7].record(&outcome("j007", &[("get", 30, Some(Reason::Status))]));
    let whole = m.encode();
    assert!(whole.len() > 2 * EXPOSITION_CHUNK, "{} bytes", whole.len());
    for classic in [false, true] {
        let mut pieces = Vec::new();
        let mut w = ChunkWriter::new(classic, |p| {
            pieces.push(p);
            true
        });
        m.encode_to(&mut w).unwrap();
        assert!(w.finish());
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.ends_with('\n')));
        let want = if classic {
            wayprobe::metrics::to_prometheus_text(&whole)
        } else {
            whole.clone()
        };
        assert_eq!(pieces.concat(), want, "classic: {classic}");
    }
    let mut handed = 0;
    let mut w = ChunkWriter::new(false, |_| {
        handed += 1;
        false
    });
    assert!(
        m.encode_to(&mut w).is_err(),
        "a gone scraper stops the encoding"
    );
    drop(w);
    assert_eq!(handed, 1);
}

#[test]
fn promtool_accepts_the_exposition() {
    if !tool("promtool") {
        return;
    }
    let mut m = Metrics::new("local");
    // With span export on, its counters too.
    let counters = wayprobe::otel::ExportCounters::default();
    counters.dropped.inc_by(3);
    m.register_trace_export(&counters);
    let series = m.set_journeys(&[journey(SHOP, &[])]);
    series[0].record(&outcome(
        "shop",
        &[("home", 120, Some(Reason::Connect)), ("buy", 0, None)],
    ));
    let text = wayprobe::metrics::to_prometheus_text(&m.encode());
    assert!(
        text.contains("\nwayprobe_trace_spans_dropped_total 3\n"),
        "{text}"
    );
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n---\n{text}"
    );
}

#[test]
fn reload_removes_only_disappearing_series() {
    let m = Metrics::new("x");
    let s = m.set_journeys(&[journey(SHOP, &[]), journey(API, &[])]);
    s[0].record(&outcome("shop", &[("home", 10, None), ("buy", 10, None)]));
    // `api` removed, `shop` loses its `buy` step.
    let shop2 = SHOP.replace(
        "  - name: buy\n    http: {url: \"http://127.0.0.1:9/buy\"}\n",
        "",
    );
    m.set_journeys(&[journey(&shop2, &[])]);
    let text = m.encode();
    assert!(!text.contains("journey=\"api\""), "{text}");
    assert!(!text.contains("step=\"buy\""), "{text}");
    assert!(
        text.contains(r#"journey_runs_total{journey="shop",location="x",result="success"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"journey_step_duration_seconds_count{journey="shop",location="x",step="home"} 1"#
        ),
        "{text}"
    );
}

/// A `serve` running in-process on port 0 over a journey directory.
pub(crate) struct Running {
    pub(crate) base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), wayprobe::serve::ServeError>>,
}

impl Running {
    /// `watch`: how often the journey files are checked (zero: never).
    /// `POST /-/reload` is enabled.
    pub(crate) async fn start(dir: &Path, target: &Target, watch: Duration) -> Running {
        Self::start_with(dir, target, watch, |c| c.server.enable_lifecycle = true).await
    }

    /// Like [`Running::start`], with `configure` applied to the config
    /// (`base` is `https://` when it sets a web config file).
    pub(crate) async fn start_with(
        dir: &Path,
        target: &Target,
        watch: Duration,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut cfg = ServeConfig::new(
            Source::Paths {
                paths: vec![dir.to_path_buf()],
                opts: LoadOptions {
                    vars: [("base_url".to_string(), target.base.clone())].into(),
                    ..LoadOptions::default()
                },
            },
            Runner::new(RunOptions::default()),
        );
        cfg.watch_interval = watch;
        cfg.location = "test".into();
        configure(&mut cfg);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(wayprobe::serve::serve(cfg, listener, async move {
            let _ = rx.await;
        }));
        Running {
            base,
            stop: Some(tx),
            task,
        }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("serve stops")
            .unwrap()
            .unwrap();
    }

    async fn metrics(&self) -> String {
        get(&format!("{}/metrics", self.base)).await.1
    }

    pub(crate) async fn wait_for_runs(&self, journey: &str, n: u64) {
        let needle = format!(
            "journey_runs_total{{journey=\"{journey}\",location=\"test\",result=\"success\"}} "
        );
        eventually(20, &format!("{n} runs of {journey}"), || async {
            let m = self.metrics().await;
            let v: u64 = m
                .lines()
                .find(|l| l.starts_with(&needle))?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            (v >= n).then_some(())
        })
        .await
    }

    async fn reload(&self) -> (u16, String) {
        let r = crate::support::client()
            .post(format!("{}/-/reload", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

pub(crate) fn quick(name: &str, path: &str) -> String {
    format!(
        "name: {name}\ninterval: 500ms\ntimeout: 400ms\nlabels: {{team: web}}\nvars: {{base_url: \"http://127.0.0.1:9\"}}\nsteps:\n  - name: get\n    http: {{url: \"{{{{ base_url }}}}{path}\"}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_status_page_and_reload() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    // `ok` alone requests `/ok?from=ok`: the target counts its runs too.
    std::fs::write(dir.join("ok.yaml"), quick("ok", "/ok?from=ok")).unwrap();
    std::fs::write(dir.join("broken.yaml"), quick("broken", "/status/503")).unwrap();
    // Only POST /-/reload reloads here, so each reload's summary is exact.
    let s = Running::start_with(&dir, &t, Duration::ZERO, |c| {
        c.server.enable_lifecycle = true;
        c.probe = std::sync::Arc::new(Runner::new(RunOptions {
            trace_url_template: Some("https://tempo.example/trace/{trace_id}".into()),
            ..Default::default()
        }));
    })
    .await;

    assert_eq!(get(&format!("{}/-/healthy", s.base)).await.0, 200);
    assert_eq!(get(&format!("{}/-/ready", s.base)).await.0, 200);
    s.wait_for_runs("ok", 2).await;

    // Prometheus gets OpenMetrics when it asks for it.
    let r = crate::support::client()
        .get(format!("{}/metrics", s.base))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let om = r.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"));
    // ...with the failed runs' trace ids as exemplars, which the classic
    // format, having none, leaves out.
    assert!(om.contains(" # {trace_id=\""), "{om}");
    let (_, text) = get(&format!("{}/metrics", s.base)).await;
    assert!(
        text.contains("journey_runs_total") && !text.contains(" # {"),
        "{text}"
    );

    // The JSON API explains the failure, with per-step results.
    let api: serde_json::Value =
        serde_json::from_str(&get(&format!("{}/api/v1/journeys", s.base)).await.1).unwrap();
    let broken = api["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "broken")
        .unwrap();
    assert_eq!(broken["interval_seconds"], 0.5);
    assert_eq!(broken["last"]["result"], "failure");
    assert_eq!(broken["last"]["steps"][0]["failure"]["reason"], "status");
    assert_eq!(broken["recent_failures"][0]["reason"], "status");
    // ...and names the failed run's trace, linked.
    let trace_id = broken["last"]["trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace_id.len(), 32);
    let link = format!("https://tempo.example/trace/{trace_id}");
    assert_eq!(broken["last"]["trace_url"], link.as_str());
    assert_eq!(broken["recent_failures"][0]["trace_id"], trace_id.as_str());

    // The status page lists every journey with its state and the failure.
    let (code, page) = get(&format!("{}/", s.base)).await;
    assert_eq!(code, 200);
    assert!(page.contains("data-journey=\"ok\""));
    assert!(
        page.contains("passing") && page.contains("failing"),
        "{page}"
    );
    assert!(page.contains("step <b>get</b> failed (status)"), "{page}");
    assert!(
        page.contains("<a href=\"https://tempo.example/trace/"),
        "{page}"
    );
    assert!(page.contains("http-equiv=refresh"));

    // A valid reload: a new journey appears, the old keep their counters.
    let before = s.metrics().await;
    std::fs::write(dir.join("new.yaml"), quick("new", "/ok")).unwrap();
    let (code, msg) = s.reload().await;
    assert_eq!(code, 200, "{msg}");
    assert!(msg.contains("1 added"), "{msg}");
    s.wait_for_runs("new", 1).await;
    // Counters kept: every run of `ok` the target served is counted, but for
    // the one that may be in flight. A counter reset at the reload would have
    // lost the runs before it (at least 2), even if it has counted as many since.
    assert!(count(&before, "ok") >= 2);
    let served = t.hits("/ok?from=ok");
    let m = s.metrics().await;
    let recorded = count(&m, "ok") + count_result(&m, "ok", "failure");
    assert!(
        recorded + 1 >= served,
        "counters kept: {recorded} runs of `ok` counted, {served} served"
    );

    // An invalid reload changes nothing and says why, with file:line:col.
    std::fs::write(
        dir.join("bad.yaml"),
        "name: bad\nsteps:\n  - name: x\n    http: {url: \"http://x/\", methd: GET}\n",
    )
    .unwrap();
    let (code, msg) = s.reload().await;
    assert_eq!(code, 422);
    // Diagnostics go only to authenticated callers (tests/it/serve_safety.rs);
    // here, where no one is, they are on the status page and in the log.
    assert!(
        msg.contains("reload refused") && !msg.contains("bad.yaml"),
        "{msg}"
    );
    let m = s.metrics().await;
    assert!(
        m.contains("wayprobe_config_last_reload_successful 0"),
        "{m}"
    );
    assert!(m.contains("wayprobe_journeys_loaded 3"));
    let runs = count(&m, "new");
    s.wait_for_runs("new", runs + 2).await; // the last good set keeps running
    let page = get(&format!("{}/", s.base)).await.1;
    assert!(
        page.contains("id=reload-error") && page.contains("bad.yaml:4:30"),
        "{page}"
    );

    // Fixing it and removing a journey: its series go, the rest stay.
    std::fs::remove_file(dir.join("bad.yaml")).unwrap();
    std::fs::remove_file(dir.join("broken.yaml")).unwrap();
    let (code, msg) = s.reload().await;
    assert_eq!(code, 200, "{msg}");
    let m = s.metrics().await;
    assert!(!m.contains("journey=\"broken\""), "{m}");
    assert!(m.contains("wayprobe_config_last_reload_successful 1"));
    assert!(
        !get(&format!("{}/", s.base))
            .await
            .1
            .contains("id=reload-error")
    );
    s.stop().await;
}

fn count(metrics: &str, journey: &str) -> u64 {
    count_result(metrics, journey, "success")
}

/// `journey_runs_total` of `journey` with `result` (0 when absent).
fn count_result(metrics: &str, journey: &str, result: &str) -> u64 {
    let needle = format!(
        "journey_runs_total{{journey=\"{journey}\",location=\"test\",result=\"{result}\"}} "
    );
    metrics
        .lines()
        .find(|l| l.starts_with(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kubernetes updates a ConfigMap volume by pointing `..data` at a new
/// directory; files are symlinks through it. The watcher must notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_is_detected() {
    use std::os::unix::fs::symlink;
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let v1 = dir.join("..2026_11_21_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("probe.yaml"), quick("probe", "/ok")).unwrap();
    symlink("..2026_11_21_v1", dir.join("..data")).unwrap();
    symlink("..data/probe.yaml", dir.join("probe.yaml")).unwrap();
    let s = Running::start(&dir, &t, Duration::from_millis(200)).await;
    s.wait_for_runs("probe", 1).await;

    let v2 = dir.join("..2026_11_21_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("probe.yaml"), quick("probe", "/ok")).unwrap();
    std::fs::write(v2.join("extra.yaml"), quick("extra", "/ok")).unwrap();
    symlink("..data/extra.yaml", dir.join("extra.yaml")).unwrap_or(());
    // Atomic swap, as the kubelet does it: a new link renamed over `..data`.
    symlink("..2026_11_21_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    s.wait_for_runs("extra", 1).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_serve() {
    if !tool("prometheus") {
        return;
    }
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let journeys = dir.join("journeys");
    std::fs::create_dir(&journeys).unwrap();
    std::fs::write(journeys.join("ok.yaml"), quick("ok", "/ok")).unwrap();
    std::fs::write(journeys.join("broken.yaml"), quick("broken", "/status/503")).unwrap();
    // Every run's spans go to a real OTLP receiver.
    let otlp = crate::support::otlp::Receiver::start(crate::support::otlp::Mode::Accept).await;
    let (exporter, _export) = wayprobe::otel::Exporter::start(&wayprobe::otel::ExportConfig {
        endpoint: Some(otlp.url.clone()),
        location: "test".into(),
        ..Default::default()
    })
    .unwrap();
    let s = Running::start_with(&journeys, &t, Duration::ZERO, |c| {
        c.trace_export = Some(exporter.counters().clone());
        c.probe = std::sync::Arc::new(Runner::new(RunOptions::default()).with_exporter(exporter));
    })
    .await;
    let target = s.base.trim_start_matches("http://").to_string();
    let prom = crate::support::Prometheus::start_with(
        &dir,
        &format!("global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: wayprobe\n    static_configs: [{{targets: ['{target}']}}]\n"),
        &["--enable-feature=exemplar-storage"],
    )
    .await;
    let v = eventually(60, "Prometheus to have journey_runs_total", || async {
        prom.query(r#"journey_runs_total{job="wayprobe",result="success"} > 0"#)
            .await?
            .first()
            .cloned()
    })
    .await;
    assert_eq!(v["metric"]["journey"], "ok");
    assert_eq!(v["metric"]["location"], "test");
    // The scrape was OpenMetrics-negotiated and healthy.
    let up = prom.query("up").await.unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up:?}\n{}", prom.log());

    // Exemplars: the step-duration histogram leads to the trace of a run
    // serve recorded (one of the failures it still lists).
    let api: serde_json::Value =
        serde_json::from_str(&get(&format!("{}/api/v1/journeys", s.base)).await.1).unwrap();
    let recorded: Vec<String> = api["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["name"] == "broken")
        .flat_map(|j| j["recent_failures"].as_array().unwrap().clone())
        .map(|f| f["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!recorded.is_empty(), "{api}");
    let found = eventually(60, "an exemplar with a recorded trace id", || async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let url = format!(
            "{}/api/v1/query_exemplars?query={}&start={}&end={}",
            prom.url,
            url::form_urlencoded::byte_serialize(
                br#"journey_step_duration_seconds_bucket{journey="broken"}"#
            )
            .collect::<String>(),
            now - 600,
            now + 60
        );
        let v: serde_json::Value = serde_json::from_str(&crate::support::text(&url).await?).ok()?;
        v["data"]
            .as_array()?
            .iter()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .map(|e| e["labels"]["trace_id"].as_str().unwrap_or("").to_string())
            .find(|t| recorded.contains(t))
    })
    .await;
    assert_eq!(found.len(), 32);
    // ...the trace the collector received.
    eventually(30, "the exemplar's trace at the collector", || async {
        otlp.spans()
            .iter()
            .any(|sp| crate::support::otlp::hex(&sp.trace_id) == found)
            .then_some(())
    })
    .await;
    let m = s.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("wayprobe_trace_spans_exported_total ") && !l.ends_with(" 0")),
        "{m}"
    );
    s.stop().await;
}

#[test]
fn startup_with_invalid_journeys_exits_2_like_check() {
    let root = crate::support::root();
    let serve = bin()
        .current_dir(&root)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--journeys",
            "tests/fixtures/invalid/unknown-key.yaml",
        ])
        .output()
        .unwrap();
    let check = bin()
        .current_dir(&root)
        .args(["check", "tests/fixtures/invalid/unknown-key.yaml"])
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&serve.stderr),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn cannot_bind_exits_3() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let out = bin()
        .current_dir(crate::support::root())
        .args(["serve", "--journeys", "journeys", "--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    // A 300 ms response under a 900 ms timeout: a loaded CI machine must not
    // turn the run this test inspects into a timeout.
    let yaml = quick("ok", "/slow?ms=300").replace(
        "interval: 500ms\ntimeout: 400ms",
        "interval: 1s\ntimeout: 900ms",
    );
    std::fs::write(dir.join("ok.yaml"), yaml).unwrap();
    let port = free_port();
    let mut child = bin()
        .args(["serve", "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--journeys")
        .arg(&dir)
        .args(["--var", &format!("base_url={}", t.base)])
        // A passing run is logged at debug.
        .env("RUST_LOG", "info,wayprobe=debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(20, "serve to be ready", || async {
        let r = crate::support::client()
            .get(format!("http://127.0.0.1:{port}/-/ready"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    // The first run starts within one interval: at SIGTERM it is done or in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let s = child.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (s, err)
    });
    let (status, logs) = tokio::time::timeout(Duration::from_secs(15), status)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{logs}");
    // One JSON line per finished run (a passing one at debug), with the
    // contract's fields.
    let line = logs
        .lines()
        .find(|l| l.contains("\"run finished\""))
        .expect(&logs);
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["journey"], "ok");
    assert_eq!(v["result"], "success");
    assert!(v["duration_ms"].as_u64().is_some());
    assert!(logs.contains("shutting down"));
}

/// `--var base_url=...` is checked against the journeys at start; once the
/// last journey that declares `base_url` is removed, a reload still applies
/// (the flag cannot change while serving) and says why in a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_journey_a_var_sets_still_reloads() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    std::fs::write(dir.join("uses.yaml"), quick("uses", "/ok")).unwrap();
    std::fs::write(
        dir.join("plain.yaml"),
        format!(
            "name: plain\ninterval: 500ms\ntimeout: 400ms\nsteps:\n  - name: get\n    http: {{url: \"{}/ok\"}}\n",
            t.base
        ),
    )
    .unwrap();
    let s = Running::start(&dir, &t, Duration::ZERO).await;
    s.wait_for_runs("uses", 1).await;
    std::fs::remove_file(dir.join("uses.yaml")).unwrap();
    let (code, body) = s.reload().await;
    assert_eq!(code, 200, "{body}");
    eventually(10, "`uses` to leave /metrics", || async {
        let m = s.metrics().await;
        (!m.contains("journey=\"uses\"")).then_some(())
    })
    .await;
    let before = runs_of(&s.metrics().await, "plain");
    s.wait_for_runs("plain", before + 2).await;
    s.stop().await;
}

fn runs_of(metrics: &str, journey: &str) -> u64 {
    let needle = format!(
        "journey_runs_total{{journey=\"{journey}\",location=\"test\",result=\"success\"}} "
    );
    metrics
        .lines()
        .find(|l| l.starts_with(&needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    std::fs::write(dir.join("one.yaml"), quick("one", "/ok")).unwrap();
    let port = free_port();
    let mut child = bin()
        .args(["serve", "--watch-interval", "0s", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--journeys")
        .arg(&dir)
        .args(["--var", &format!("base_url={}", t.base)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let names = |port: u16| async move {
        let body =
            crate::support::text(&format!("http://127.0.0.1:{port}/api/v1/journeys")).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(
            v["journeys"]
                .as_array()?
                .iter()
                .filter_map(|j| j["name"].as_str().map(String::from))
                .collect::<Vec<_>>(),
        )
    };
    eventually(20, "serve to list `one`", || async {
        names(port).await.filter(|n| n == &["one"])
    })
    .await;
    // A second serve over the same files with the default watch interval:
    // once it has noticed `two.yaml`, a watching serve would have too.
    let control_port = free_port();
    let _control = KillOnDrop(
        bin()
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{control_port}"))
            .arg("--journeys")
            .arg(&dir)
            .args(["--var", &format!("base_url={}", t.base)])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(20, "the control serve to list `one`", || async {
        names(control_port).await.filter(|n| n == &["one"])
    })
    .await;
    std::fs::write(dir.join("two.yaml"), quick("two", "/ok")).unwrap();
    eventually(30, "the watching control serve to load `two`", || async {
        names(control_port).await.filter(|n| n.len() == 2)
    })
    .await;
    // File watching is off: only the signal can make it reload.
    assert_eq!(names(port).await.unwrap(), ["one"]);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    eventually(10, "SIGHUP to load `two`", || async {
        names(port).await.filter(|n| n.len() == 2)
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Readers of the status page and API share one render per status snapshot
/// and query (issue 10: 200 readers must not mean 200 renders and 200
/// bodies in memory): concurrent readers of a page get the same bytes, a
/// different page or filter gets its own body, unknown parameters do not
/// make another page, and a reload (a new snapshot) is rendered anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_a_page_share_one_render_per_snapshot() {
    use futures_util::future::join_all;
    use wayprobe::server::pages::{PageCache, PageCacheOptions};
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    // A day's interval: a run (itself a new snapshot) lands in the few
    // seconds of this test about once in ten thousand.
    let daily = |name: &str| quick(name, "/ok").replace("interval: 500ms", "interval: 24h");
    std::fs::write(dir.join("a.yaml"), daily("a")).unwrap();
    std::fs::write(dir.join("b.yaml"), daily("b")).unwrap();
    // Shared only within a snapshot here, however slow the machine.
    let pages = std::sync::Arc::new(PageCache::new(PageCacheOptions {
        share_for: Duration::ZERO,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    }));
    let s = Running::start_with(&dir, &t, Duration::ZERO, |c| {
        c.server.enable_lifecycle = true;
        c.pages = pages.clone();
    })
    .await;
    let base = s.base.clone();
    let read = |path: &'static str, n: usize| {
        let base = base.clone();
        async move {
            let url = format!("{base}{path}");
            let got = join_all((0..n).map(|_| get(&url))).await;
            assert!(got.iter().all(|(code, _)| *code == 200), "{got:?}");
            let bodies: Vec<String> = got.into_iter().map(|(_, b)| b).collect();
            assert!(
                bodies.iter().all(|b| *b == bodies[0]),
                "{path}: every reader gets the same body"
            );
            bodies[0].clone()
        }
    };
    let names = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    };
    let renders = || pages.renders();

    let r0 = renders();
    let api = read("/api/v1/journeys", 40).await;
    assert_eq!(names(&api), ["a", "b"]);
    assert_eq!(renders() - r0, 1, "40 readers of the API, one render");
    let page = read("/", 40).await;
    assert!(page.contains("data-journey=\"b\""), "{page}");
    assert_eq!(renders() - r0, 2, "40 readers of the page, one render");

    // Another page or filter is its own body, never another query's.
    let first = read("/api/v1/journeys?limit=1", 5).await;
    assert_eq!(names(&first), ["a"]);
    let second = read("/api/v1/journeys?offset=1&limit=1", 5).await;
    assert_eq!(names(&second), ["b"]);
    let failing = read("/api/v1/journeys?state=failing", 5).await;
    assert!(names(&failing).is_empty(), "{failing}");
    let html = read("/?q=b", 5).await;
    assert!(html.contains("data-journey=\"b\"") && !html.contains("data-journey=\"a\""));
    assert_eq!(renders() - r0, 6);
    // The same query spelled with defaults or extra parameters is the same page.
    assert_eq!(
        read("/api/v1/journeys?limit=1&offset=0&utm=x", 5).await,
        first
    );
    assert_eq!(read("/api/v1/journeys?limit=1000", 5).await, api);
    assert_eq!(renders() - r0, 6);

    // A reload is a new snapshot: the next readers get it, rendered once.
    std::fs::write(dir.join("c.yaml"), daily("c")).unwrap();
    assert_eq!(s.reload().await.0, 200);
    let api = read("/api/v1/journeys", 20).await;
    assert_eq!(names(&api), ["a", "b", "c"]);
    assert_eq!(renders() - r0, 7);
    s.stop().await;
}
