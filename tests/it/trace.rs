//! W3C trace context (issue 15): each run is one trace, each step's requests
//! carry a `traceparent` naming the step's span, only to the journey's
//! origins, and the ids a real target received are the ones in the outcome.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::routing::get;

use std::time::Duration;

use wayprobe::otel::{ExportConfig, ExportTask, Exporter, Protocol};
use wayprobe::outcome::{JourneyOutcome, RunResult};
use wayprobe::run::{RunOptions, Runner};

use crate::support::otlp::{Mode, Receiver, attr, hex};
use crate::support::{journey, run};

/// What one request received: path, `traceparent`, `tracestate`.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

/// A target that records the trace headers of every request and redirects
/// `/start?to=URL`. Reached as `127.0.0.1` and as `localhost`: two origins.
async fn recorder() -> (u16, Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let app =
        axum::Router::new()
            .route(
                "/start",
                get(|Query(q): Query<To>| async move {
                    (StatusCode::FOUND, [(header::LOCATION, q.to)])
                }),
            )
            .fallback(|| async { "ok" })
            .layer(axum::middleware::from_fn_with_state(
                seen.clone(),
                |State(seen): State<Seen>,
                 req: axum::extract::Request,
                 next: axum::middleware::Next| async move {
                    let h: &HeaderMap = req.headers();
                    let v = |n: &str| h.get(n).map(|v| v.to_str().unwrap_or("").to_string());
                    let uri: &Uri = req.uri();
                    seen.lock().unwrap().push((
                        uri.path().to_string(),
                        v("traceparent"),
                        v("tracestate"),
                    ));
                    next.run(req).await
                },
            ));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (port, seen, task)
}

fn yaml(trace: &str, urls: &[String]) -> String {
    let mut y = format!("name: traced\ninterval: 1m\ntimeout: 10s\n{trace}steps:\n");
    for (i, u) in urls.iter().enumerate() {
        y.push_str(&format!("  - name: s{i}\n    http: {{url: \"{u}\"}}\n"));
    }
    y
}

/// The `traceparent` step `i` of `o` sent with its first request.
fn parent(o: &JourneyOutcome, i: usize) -> String {
    hop(o, i, 0)
}

/// The `traceparent` of request `n` (redirect hop) of step `i`: the id of
/// that request's client span, a child of the step's span.
fn hop(o: &JourneyOutcome, i: usize, n: usize) -> String {
    let requests = &o.steps[i].telemetry.requests;
    assert!(o.steps[i].span_id.is_some());
    format!(
        "00-{}-{}-01",
        o.trace_id.as_deref().unwrap(),
        requests[n].span_id
    )
}

fn got(seen: &Seen, path: &str) -> (Option<String>, Option<String>) {
    let s = seen.lock().unwrap();
    let hit = s.iter().find(|(p, _, _)| p == path);
    let (_, tp, ts) = hit.unwrap_or_else(|| panic!("{path} not requested: {s:?}"));
    (tp.clone(), ts.clone())
}

#[tokio::test]
async fn each_step_sends_its_span_to_the_journeys_origins_only() {
    let (port, seen, task) = recorder().await;
    let ip = format!("http://127.0.0.1:{port}");
    let lh = format!("http://localhost:{port}");
    // Default: the origins the steps call. Step 1 redirects to an origin no
    // step names, which gets nothing.
    let j = journey(
        &yaml(
            "trace: {tracestate: \"shop=probe\"}\n",
            &[format!("{ip}/a"), format!("{ip}/start?to={lh}/third-party")],
        ),
        &[],
    );
    let o = run(&j, &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    let id = o.trace_id.clone().unwrap();
    assert_eq!(id.len(), 32);
    assert_ne!(o.steps[0].span_id, o.steps[1].span_id);
    assert_eq!(
        got(&seen, "/a"),
        (Some(parent(&o, 0)), Some("shop=probe".into()))
    );
    assert_eq!(got(&seen, "/start").0, Some(parent(&o, 1)));
    assert_eq!(got(&seen, "/third-party"), (None, None));
    // The JSON report carries the same ids.
    let report: serde_json::Value =
        serde_json::from_str(&wayprobe::report::json(std::slice::from_ref(&o))).unwrap();
    assert_eq!(report["journeys"][0]["trace_id"], id.as_str());
    assert_eq!(
        report["journeys"][0]["steps"][1]["span_id"],
        o.steps[1].span_id.as_deref().unwrap()
    );

    // A redirect to an origin a later step calls is the journey's own.
    let later = journey(
        &yaml(
            "",
            &[format!("{ip}/start?to={lh}/later"), format!("{lh}/d")],
        ),
        &[],
    );
    let lo = run(&later, &[]).await;
    assert_eq!(lo.result, RunResult::Success, "{lo:#?}");
    assert_eq!(got(&seen, "/later").0, Some(hop(&lo, 0, 1)));
    assert_eq!(got(&seen, "/d").0, Some(parent(&lo, 1)));

    // Another run is another trace.
    seen.lock().unwrap().clear();
    let again = run(&j, &[]).await;
    assert_ne!(again.trace_id, o.trace_id);
    assert_eq!(got(&seen, "/a").0, Some(parent(&again, 0)));

    // An explicit list: only those origins, even against a step's own URL.
    seen.lock().unwrap().clear();
    let j = journey(
        &yaml(
            &format!("trace: {{propagate_to: [\"{lh}\"]}}\n"),
            &[format!("{ip}/b"), format!("{ip}/start?to={lh}/listed")],
        ),
        &[],
    );
    let o = run(&j, &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    assert_eq!(got(&seen, "/b"), (None, None));
    assert_eq!(got(&seen, "/listed"), (Some(hop(&o, 1, 1)), None));

    // `trace: false`: nothing, though the run still has its id.
    seen.lock().unwrap().clear();
    let j = journey(&yaml("trace: false\n", &[format!("{ip}/c")]), &[]);
    let o = run(&j, &[]).await;
    assert!(o.trace_id.is_some());
    assert_eq!(got(&seen, "/c"), (None, None));
    task.abort();
}

fn exporter(url: &str, ratio: f64, queue_runs: usize) -> (Exporter, ExportTask) {
    Exporter::start(&ExportConfig {
        endpoint: Some(url.to_string()),
        sample_ratio: ratio,
        queue_runs,
        location: "test".into(),
        export_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .unwrap()
}

fn runner(e: &Exporter, env: &[(&str, &str)]) -> Runner {
    Runner::new(RunOptions {
        env_overrides: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
    .with_exporter(e.clone())
}

/// The spans of a journey reach a real OTLP receiver: one trace whose ids
/// are the ones the target received, each request's client span under its
/// step's span under the run's, a failed step's span in error with its
/// reason, phases as events, and no secret anywhere in the bytes. Passing
/// runs are sampled (here: none), failed ones always kept.
#[tokio::test]
async fn spans_reach_a_collector_with_the_ids_the_target_received() {
    let (port, seen, task) = recorder().await;
    let rx = Receiver::start(Mode::Accept).await;
    let (e, export) = exporter(&rx.url, 0.0, 64);
    let secret = "Sup3r-s3cret-t0ken";
    let ip = format!("http://127.0.0.1:{port}");
    let y = format!(
        r#"name: traced
interval: 1m
timeout: 10s
secrets: {{token: {{env: OTLP_TOKEN}}}}
steps:
  - name: login
    http:
      method: POST
      url: "{ip}/login?user=ann&token={{{{ secret.token }}}}"
      headers: {{authorization: "Bearer {{{{ secret.token }}}}"}}
      form: {{password: "{{{{ secret.token }}}}"}}
  - name: pay
    http: {{url: "{ip}/pay"}}
    expect: {{status: 201}}
"#
    );
    let failing = journey(&y, &[]);
    let passing = journey(&yaml("", &[format!("{ip}/fine")]), &[]);
    let r = runner(&e, &[("OTLP_TOKEN", secret)]);
    let ok = r.run(&passing).await;
    assert_eq!(ok.result, RunResult::Success, "{ok:#?}");
    let o = r.run(&failing).await;
    assert_eq!(o.result, RunResult::Failure, "{o:#?}");
    drop((r, e));
    export.finish(Duration::from_secs(10)).await;

    let spans = rx.spans();
    let trace = o.trace_id.clone().unwrap();
    // Exact tail sampling at ratio 0: only the failed run's trace.
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == trace),
        "{spans:#?}"
    );
    let by_id = |id: &str| spans.iter().find(|s| hex(&s.span_id) == id);
    let root = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(root.name, "journey traced");
    assert_eq!(attr(root, "wayprobe.journey").as_deref(), Some("traced"));
    assert_eq!(attr(root, "wayprobe.location").as_deref(), Some("test"));
    assert_eq!(attr(root, "wayprobe.result").as_deref(), Some("failure"));
    assert_eq!(attr(root, "wayprobe.reason").as_deref(), Some("status"));

    for (i, path) in [(0, "/login"), (1, "/pay")] {
        // What the target received names a client span the receiver got...
        let tp = got(&seen, path).0.unwrap();
        let (_, rest) = tp.split_once('-').unwrap();
        let (tid, rest) = rest.split_once('-').unwrap();
        let (sid, _) = rest.split_once('-').unwrap();
        assert_eq!(tid, trace);
        let client = by_id(sid).unwrap_or_else(|| panic!("span {sid} not exported"));
        assert_eq!(client.kind, 3, "SPAN_KIND_CLIENT");
        // ...whose parent is the step's span, whose parent is the run's.
        let step = by_id(&hex(&client.parent_span_id)).unwrap();
        assert_eq!(Some(hex(&step.span_id)), o.steps[i].span_id);
        assert_eq!(step.name, o.steps[i].name);
        assert_eq!(step.parent_span_id, root.span_id);
        assert_eq!(attr(step, "wayprobe.step.kind").as_deref(), Some("http"));
        assert_eq!(
            attr(client, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(attr(client, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr(client, "server.port"), Some(port.to_string()));
        let names: Vec<&str> = client.events.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"first_byte"), "{names:?}");
        if i == 0 {
            assert_eq!(attr(client, "http.request.method").as_deref(), Some("POST"));
            assert!(names.contains(&"connect"), "a new connection: {names:?}");
            assert_eq!(
                attr(client, "url.full").as_deref(),
                Some(format!("{ip}/login?user=REDACTED&token=REDACTED").as_str())
            );
            assert_eq!(attr(step, "wayprobe.result").as_deref(), Some("passed"));
        } else {
            // The failed step: error status with its reason.
            let status = step.status.as_ref().unwrap();
            assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
            assert_eq!(status.message, "status");
            assert_eq!(attr(step, "wayprobe.reason").as_deref(), Some("status"));
            assert_eq!(attr(step, "wayprobe.result").as_deref(), Some("failed"));
        }
    }
    assert_eq!(spans.len(), 5, "root, 2 steps, 2 requests: {spans:#?}");
    // The target got the secret in the header, query and body; the
    // collector never does, in any form.
    let raw = rx.raw();
    for form in [
        secret.to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        base64_of(secret),
    ] {
        assert!(
            !raw.windows(form.len()).any(|w| w == form.as_bytes()),
            "`{form}` was exported"
        );
    }
    task.abort();
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A hung or absent collector costs spans, counted, never a run: every run
/// passes and finishes while the export task is stuck, the queue holds at
/// most its cap, and the rest are counted as dropped.
#[tokio::test]
async fn a_hung_or_down_collector_drops_counted_spans_not_runs() {
    let (port, _seen, task) = recorder().await;
    let j = journey(&yaml("", &[format!("http://127.0.0.1:{port}/x")]), &[]);
    let hung = Receiver::start(Mode::Hang).await;
    // Down: a port nothing listens on any more.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for (url, protocol) in [
        (hung.url.clone(), Protocol::HttpProtobuf),
        (down.clone(), Protocol::HttpProtobuf),
        (down, Protocol::Grpc),
    ] {
        let (e, export) = Exporter::start(&ExportConfig {
            endpoint: Some(url.clone()),
            protocol,
            sample_ratio: 1.0,
            queue_runs: 2,
            export_timeout: Duration::from_secs(1),
            ..Default::default()
        })
        .unwrap();
        let r = runner(&e, &[]);
        let runs = 12;
        for _ in 0..runs {
            let o = r.run(&j).await;
            assert_eq!(o.result, RunResult::Success, "{url}: {o:#?}");
        }
        let counters = e.counters().clone();
        drop((r, e));
        export.finish(Duration::from_secs(20)).await;
        // Three spans a run: the root, the step and its request.
        let total = runs * 3;
        assert_eq!(counters.exported.get(), 0, "{url}");
        // Everything is accounted for: dropped at the full queue, or in a
        // batch the collector never took.
        assert_eq!(counters.dropped.get(), total, "{url}");
    }
    // The hung collector saw at most the queue's worth plus one batch.
    assert!(hung.requests() >= 1);
    task.abort();
}

/// Runs `j` `runs` times through an exporter of `cfg` and returns the
/// exporter's counters once its queue is drained; every run must pass.
async fn export_runs(
    cfg: ExportConfig,
    j: &wayprobe::journey::Journey,
    runs: usize,
) -> wayprobe::otel::ExportCounters {
    let (e, export) = Exporter::start(&cfg).unwrap();
    let r = runner(&e, &[]);
    for _ in 0..runs {
        let o = r.run(j).await;
        assert_eq!(o.result, RunResult::Success, "{cfg:?}: {o:#?}");
    }
    let counters = e.counters().clone();
    drop((r, e));
    export.finish(Duration::from_secs(20)).await;
    counters
}

/// A collector behind TLS with a private CA, over gRPC and http/protobuf:
/// trusting its CA (`OTEL_EXPORTER_OTLP_CERTIFICATE`), the spans arrive;
/// not trusting it (the system's roots, or another CA), the handshake
/// fails and the spans are counted as dropped while every run passes. A
/// gRPC collector asking for a client certificate gets the spans only
/// with `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `_CLIENT_KEY`.
#[tokio::test]
async fn spans_reach_a_tls_collector_that_is_trusted() {
    use crate::support::otlp::{Pki, ServerTls, Transport};
    use wayprobe::otel::TlsFiles;
    let (port, _seen, task) = recorder().await;
    let j = journey(&yaml("", &[format!("http://127.0.0.1:{port}/x")]), &[]);
    let dir = crate::http::tempdir();
    let file = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let server = Pki::new();
    let ca = file("ca.pem", &server.ca);
    let other_ca = file("other-ca.pem", &Pki::new().ca);
    let cfg = |url: &str, protocol: Protocol, tls: TlsFiles| ExportConfig {
        endpoint: Some(url.to_string()),
        protocol,
        sample_ratio: 1.0,
        queue_runs: 8,
        location: "test".into(),
        export_timeout: Duration::from_secs(5),
        tls,
    };
    let trusting = |ca: &std::path::Path| TlsFiles {
        ca: Some(ca.to_path_buf()),
        ..Default::default()
    };
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let transport = match protocol {
            Protocol::Grpc => Transport::Grpc,
            Protocol::HttpProtobuf => Transport::Http,
        };
        let tls = || {
            Some(ServerTls {
                server: &server,
                clients: None,
            })
        };
        let rx = Receiver::serve(Mode::Accept, transport, tls()).await;
        assert!(rx.url.starts_with("https://"), "{}", rx.url);
        let c = export_runs(cfg(&rx.url, protocol, trusting(&ca)), &j, 2).await;
        let spans = rx.spans();
        // Two runs of three spans: the root, the step, its request.
        assert_eq!(spans.len(), 6, "{protocol:?}: {spans:#?}");
        assert_eq!((c.exported.get(), c.dropped.get()), (6, 0), "{protocol:?}");
        // The system's roots, then another CA: no export, runs unharmed.
        for untrusted in [TlsFiles::default(), trusting(&other_ca)] {
            let rx = Receiver::serve(Mode::Accept, transport, tls()).await;
            let c = export_runs(cfg(&rx.url, protocol, untrusted.clone()), &j, 2).await;
            assert_eq!(
                (c.exported.get(), c.dropped.get()),
                (0, 6),
                "{protocol:?} {untrusted:?}"
            );
            assert_eq!(rx.requests(), 0, "{protocol:?} {untrusted:?}");
        }
    }
    // Mutual TLS over gRPC.
    let client = Pki::new();
    let rx = Receiver::serve(
        Mode::Accept,
        Transport::Grpc,
        Some(ServerTls {
            server: &server,
            clients: Some(&client),
        }),
    )
    .await;
    let c = export_runs(cfg(&rx.url, Protocol::Grpc, trusting(&ca)), &j, 1).await;
    assert_eq!(
        (c.exported.get(), c.dropped.get()),
        (0, 3),
        "no client cert"
    );
    let with_cert = TlsFiles {
        ca: Some(ca.clone()),
        client_cert: Some(file("client.pem", &client.cert)),
        client_key: Some(file("client-key.pem", &client.key)),
    };
    let c = export_runs(cfg(&rx.url, Protocol::Grpc, with_cert), &j, 1).await;
    assert_eq!((c.exported.get(), c.dropped.get()), (3, 0), "client cert");
    assert_eq!(rx.spans().len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
    task.abort();
}

/// The value of the series `name` (exact, labels included) in `text`, or
/// the sum of the series starting with `name` when it ends in `{`.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && (name.ends_with('{') || l[name.len()..].starts_with(' '))
        })
        // The value ends the sample, before any exemplar (` # {...} v t`).
        .filter_map(|l| {
            l.split(" # ")
                .next()?
                .rsplit(' ')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// What one scheduled prober did in the window.
struct Scheduled {
    /// Its metrics, encoded after shutdown.
    text: String,
    /// The exporter's counters after its queue drained (none: no collector).
    counters: Option<wayprobe::otel::ExportCounters>,
    /// Whether the dropped counter rose while journeys were running.
    dropped_while_running: bool,
    /// The most runs seen waiting in the export queue.
    max_queued: usize,
}

/// How many runs may wait for export in the schedule test.
const QUEUE_RUNS: usize = 2;

/// `serve`'s scheduler running `j` for `window` (real time) with the spans
/// exported to `collector` (URL and protocol), or no exporter at all.
async fn schedule(
    j: Arc<wayprobe::journey::Journey>,
    collector: Option<(String, Protocol)>,
    window: Duration,
) -> Scheduled {
    use wayprobe::scheduler::{Scheduler, SchedulerConfig};
    let mut metrics = wayprobe::metrics::Metrics::new("test");
    let mut runner = Runner::new(RunOptions::default());
    let mut export = None;
    if let Some((url, protocol)) = collector {
        let (e, task) = Exporter::start(&ExportConfig {
            endpoint: Some(url),
            protocol,
            sample_ratio: 1.0,
            queue_runs: QUEUE_RUNS,
            // A blocked run would lag by this much, or be skipped.
            export_timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .unwrap();
        metrics.register_trace_export(e.counters());
        runner = runner.with_exporter(e.clone());
        export = Some((e, task));
    }
    let metrics = Arc::new(metrics);
    let status = Arc::new(wayprobe::status::StatusStore::new("test"));
    status.set_journeys(std::slice::from_ref(&j));
    let mut sched = Scheduler::new(
        Arc::new(runner),
        wayprobe::status::Recorder { status },
        metrics.clone(),
        &SchedulerConfig::default(),
    );
    sched.apply(&[j]);
    let until = tokio::time::Instant::now() + window;
    let mut max_queued = 0;
    while tokio::time::Instant::now() < until {
        if let Some((e, _)) = &export {
            max_queued = max_queued.max(e.queued_runs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dropped_while_running = export
        .as_ref()
        .is_some_and(|(e, _)| e.counters().dropped.get() > 0);
    sched.shutdown().await;
    let counters = match export {
        None => None,
        Some((e, task)) => {
            let c = e.counters().clone();
            drop(e);
            task.finish(Duration::from_secs(30)).await;
            Some(c)
        }
    };
    Scheduled {
        text: metrics.encode(),
        counters,
        dropped_while_running,
        max_queued,
    }
}

/// A collector that is down, or that takes the connection and never
/// answers, over either protocol, leaves the schedule as it is with no
/// collector at all: as many slots (runs and skips), no skip or failure
/// but the few a loaded machine may cause (an export the runs waited for
/// would skip most slots), every start within 1 s of its time by
/// `wayprobe_schedule_lag_seconds`. The export queue fills to its cap and
/// no further (memory stays bounded), the drop counter rises while
/// journeys run, and every span is accounted for in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_hung_collector_keeps_the_schedule() {
    use crate::support::otlp::Transport;
    let (port, _seen, task) = recorder().await;
    let j = Arc::new(journey(
        &format!(
            "name: lagged\ninterval: 500ms\ntimeout: 450ms\nsteps:\n  - name: s\n    http: {{url: \"http://127.0.0.1:{port}/x\"}}\n"
        ),
        &[],
    ));
    let hung_http = Receiver::serve(Mode::Hang, Transport::Http, None).await;
    let hung_grpc = Receiver::serve(Mode::Hang, Transport::Grpc, None).await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let window = Duration::from_secs(5);
    let scenarios = [
        ("no collector", None),
        ("down, http", Some((down.clone(), Protocol::HttpProtobuf))),
        ("down, grpc", Some((down, Protocol::Grpc))),
        (
            "hung, http",
            Some((hung_http.url.clone(), Protocol::HttpProtobuf)),
        ),
        ("hung, grpc", Some((hung_grpc.url.clone(), Protocol::Grpc))),
    ];
    // Side by side, so they share the machine's load alike.
    let results = futures_util::future::join_all(
        scenarios
            .iter()
            .map(|(_, c)| schedule(j.clone(), c.clone(), window)),
    )
    .await;
    let runs = |s: &Scheduled| series(&s.text, "journey_runs_total{");
    let skipped = |s: &Scheduled| series(&s.text, "wayprobe_runs_skipped_total{");
    // The schedule's slots in the window, each run or skipped: one per
    // 500 ms, the first within the first interval.
    let slots = |s: &Scheduled| runs(s) + skipped(s);
    let baseline = slots(&results[0]);
    assert!(baseline >= 9.0, "{}", results[0].text);
    for ((what, collector), s) in scenarios.iter().zip(&results) {
        let t = &s.text;
        let n = runs(s);
        assert!(
            (slots(s) - baseline).abs() <= 1.0,
            "{what}: {} slots, {baseline} without a collector: {t}",
            slots(s)
        );
        // A run waiting on its export (2 s) would skip three slots in
        // four; a loaded machine may cost one or two (a run past 500 ms).
        assert!(skipped(s) <= 2.0, "{what}: {t}");
        // Failed runs, if any, only by the load (a run past its timeout).
        let failed = series(t, "journey_step_failures_total{");
        assert_eq!(
            failed,
            series(
                t,
                r#"journey_step_failures_total{journey="lagged",location="test",step="s",reason="timeout"}"#
            ),
            "{what}: {t}"
        );
        assert!(failed <= 2.0, "{what}: {t}");
        let lags = series(t, "wayprobe_schedule_lag_seconds_count");
        assert_eq!(lags, n, "{what}: one lag per run: {t}");
        assert_eq!(
            series(t, r#"wayprobe_schedule_lag_seconds_bucket{le="1.0"}"#),
            lags,
            "{what}: every run started within 1 s of its time: {t}"
        );
        let Some(c) = &s.counters else {
            assert!(collector.is_none());
            continue;
        };
        assert!(
            s.dropped_while_running,
            "{what}: nothing dropped while running"
        );
        assert!(
            s.max_queued <= QUEUE_RUNS,
            "{what}: {} queued",
            s.max_queued
        );
        if what.starts_with("hung") {
            // It fills, then drops instead of growing.
            assert_eq!(s.max_queued, QUEUE_RUNS, "{what}");
        }
        assert_eq!(c.exported.get(), 0, "{what}");
        // Three spans a passing run (root, step, request), two or three a
        // timed-out one: all dropped, counted.
        let d = c.dropped.get() as f64;
        assert!(
            3.0 * n - failed <= d && d <= 3.0 * n,
            "{what}: {d} dropped of {n} runs"
        );
        assert_eq!(
            series(t, "wayprobe_trace_spans_dropped_total"),
            c.dropped.get() as f64,
            "{what}: {t}"
        );
    }
    task.abort();
}
