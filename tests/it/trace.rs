//! W3C trace context (issue 15): each run is one trace, each step's requests
//! carry a `traceparent` naming the step's span, only to the journey's
//! origins, and the ids a real target received are the ones in the outcome.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::routing::get;

use wayprobe::outcome::{JourneyOutcome, RunResult};

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

/// The `traceparent` step `i` of `o` sent.
fn parent(o: &JourneyOutcome, i: usize) -> String {
    format!(
        "00-{}-{}-01",
        o.trace_id.as_deref().unwrap(),
        o.steps[i].span_id.as_deref().unwrap()
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
    assert_eq!(got(&seen, "/later").0, Some(parent(&lo, 0)));
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
    assert_eq!(got(&seen, "/listed"), (Some(parent(&o, 1)), None));

    // `trace: false`: nothing, though the run still has its id.
    seen.lock().unwrap().clear();
    let j = journey(&yaml("trace: false\n", &[format!("{ip}/c")]), &[]);
    let o = run(&j, &[]).await;
    assert!(o.trace_id.is_some());
    assert_eq!(got(&seen, "/c"), (None, None));
    task.abort();
}
