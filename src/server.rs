//! The HTTP endpoints of `serve`: `/metrics`, health, reload, the JSON API and
//! the status page. The entry point takes a listener and a shutdown future,
//! so tests bind port 0.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{CONTENT_TYPE, Metrics, TEXT_CONTENT_TYPE};
use crate::outcome::{JourneyOutcome, StepStatus};
use crate::status::{FailureRecord, StatusStore};

/// A reload request and where to send its result (a summary, or the
/// rendered diagnostics of the refused files).
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// Journey state.
    pub status: Arc<StatusStore>,
    /// Where reload requests go.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Journeys loaded and the scheduler running.
    pub ready: Arc<AtomicBool>,
    /// Where browser failure artifacts are, served under `/artifacts/`.
    pub artifacts_dir: Option<std::path::PathBuf>,
    /// Reads the SLO recording rules from Prometheus (`--prometheus-url`).
    pub prometheus: Option<Arc<crate::slo_prom::PromReader>>,
}

/// The SLO views of every journey, with Prometheus' numbers when configured;
/// the error (bounded text) when Prometheus could not be read.
async fn slo_views(
    s: &AppState,
    snap: &[crate::status::JourneyStatus],
) -> (Vec<Vec<crate::slo_view::SloView>>, Option<String>) {
    let mut views: Vec<Vec<crate::slo_view::SloView>> = snap
        .iter()
        .map(|st| st.slo_views(s.status.started))
        .collect();
    let Some(reader) = &s.prometheus else {
        return (views, None);
    };
    match reader.read().await {
        Ok(map) => {
            for (st, vs) in snap.iter().zip(&mut views) {
                for v in vs {
                    v.prometheus = map.get(&format!("{}-{}", st.journey.name, v.name)).cloned();
                }
            }
            (views, None)
        }
        Err(e) => (views, Some(e.to_string())),
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .route("/api/v1/journeys", get(api_journeys))
        .route("/artifacts/{journey}/{file}", get(artifact))
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    // Encoding is the only work on the scrape path. Prometheus asks for
    // OpenMetrics; other clients get the classic text format.
    let wants_om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = s.metrics.encode();
    if wants_om {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            crate::metrics::to_prometheus_text(&body),
        )
            .into_response()
    }
}

/// A saved failure artifact (screenshot or note); names are checked so no
/// path outside the artifacts directory can be read.
async fn artifact(
    State(s): State<AppState>,
    axum::extract::Path((journey, file)): axum::extract::Path<(String, String)>,
) -> Response {
    let safe = |x: &str| {
        !x.is_empty()
            && !x.starts_with('.')
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let Some(dir) = s
        .artifacts_dir
        .as_ref()
        .filter(|_| safe(&journey) && safe(&file))
    else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let kind = if file.ends_with(".png") {
        "image/png"
    } else if file.ends_with(".txt") {
        "text/plain; charset=utf-8"
    } else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    match tokio::fs::read(dir.join(&journey).join(&file)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// `/artifacts/...` links for the artifact paths of a failure.
fn artifact_links(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| {
            let p = std::path::Path::new(p);
            let file = p.file_name()?.to_str()?;
            let journey = p.parent()?.file_name()?.to_str()?;
            Some(format!("/artifacts/{journey}/{file}"))
        })
        .collect()
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn reload(State(s): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(msg)) => (StatusCode::OK, format!("{msg}\n")).into_response(),
        Ok(Err(diags)) => (StatusCode::UNPROCESSABLE_ENTITY, diags).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

#[derive(Serialize)]
struct ApiJourney<'a> {
    name: &'a str,
    description: Option<&'a str>,
    file: String,
    location: &'a str,
    interval_seconds: f64,
    timeout_seconds: f64,
    labels: &'a std::collections::BTreeMap<String, String>,
    runs: u64,
    successes: u64,
    /// `waiting`, `passing`, `slow` or `failing`.
    state: &'static str,
    /// Runs whose first attempt failed and a retry passed.
    passed_after_retry: u64,
    /// Attempts of the last run.
    last_attempts: u32,
    /// Each SLO as this prober sees it (in-process since start).
    slos: Vec<crate::slo_view::SloView>,
    last: Option<&'a JourneyOutcome>,
    recent_failures: Vec<&'a FailureRecord>,
    /// Links to the latest failure's screenshots and notes.
    artifacts: Vec<String>,
}

#[derive(Serialize)]
struct Api<'a> {
    location: &'a str,
    /// Why Prometheus' SLO numbers are missing (`--prometheus-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    prometheus_error: Option<String>,
    reload_error: Option<crate::status::ReloadError>,
    journeys: Vec<ApiJourney<'a>>,
}

async fn api_journeys(State(s): State<AppState>) -> Response {
    let snap = s.status.snapshot();
    let (mut views, prometheus_error) = slo_views(&s, &snap).await;
    let api = Api {
        location: &s.status.location,
        prometheus_error,
        reload_error: s.status.reload_error(),
        journeys: snap
            .iter()
            .enumerate()
            .map(|(i, st)| ApiJourney {
                name: &st.journey.name,
                description: st.journey.description.as_deref(),
                file: st.journey.source.path.display().to_string(),
                location: &s.status.location,
                interval_seconds: st.journey.interval.as_secs_f64(),
                timeout_seconds: st.journey.timeout.as_secs_f64(),
                labels: &st.journey.labels,
                runs: st.runs,
                successes: st.successes,
                state: st.state(),
                passed_after_retry: st.passed_after_retry,
                last_attempts: st.last_attempts,
                slos: std::mem::take(&mut views[i]),
                last: st.last.as_ref(),
                recent_failures: st.failures.iter().collect(),
                artifacts: st
                    .failures
                    .front()
                    .map(|f| artifact_links(&f.artifacts))
                    .unwrap_or_default(),
            })
            .collect(),
    };
    axum::Json(serde_json::to_value(&api).unwrap_or_default()).into_response()
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(t: SystemTime) -> String {
    match SystemTime::now().duration_since(t) {
        Ok(d) if d.as_secs() < 90 => format!("{}s ago", d.as_secs()),
        Ok(d) if d.as_secs() < 5400 => format!("{}m ago", d.as_secs() / 60),
        Ok(d) => format!("{}h ago", d.as_secs() / 3600),
        Err(_) => "just now".into(),
    }
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;width:100%;margin-bottom:1em}\
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
.ok{color:#137333;font-weight:600}.slow{color:#b26a00;font-weight:600}.fail{color:#b3261e;font-weight:600}.wait{color:#777}\
.steps{font-size:.9em;color:#444}.why{background:#fdecea;padding:.4em .6em;border-radius:4px;white-space:pre-wrap}\
.err{background:#fdecea;border:1px solid #b3261e;padding:.6em;white-space:pre-wrap;font-family:monospace}\
code{background:#f3f3f3;padding:0 .2em}";

async fn status_page(State(s): State<AppState>) -> Html<String> {
    let snap = s.status.snapshot();
    let (views, prometheus_error) = slo_views(&s, &snap).await;
    let failing = snap.iter().filter(|st| st.state() == "failing").count();
    let slow = snap.iter().filter(|st| st.state() == "slow").count();
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=10>\
         <title>wayprobe: {failing} failing</title><style>{STYLE}</style></head><body>\
         <h1>wayprobe — {} journeys, <span class={}>{failing} failing</span>, <span class={}>{slow} slow</span></h1>\
         <p>Location <code>{}</code>. This page refreshes every 10 s. \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/journeys\">/api/v1/journeys</a></p>",
        snap.len(),
        if failing > 0 { "fail" } else { "ok" },
        if slow > 0 { "slow" } else { "ok" },
        esc(&s.status.location)
    );
    if let Some(e) = s.status.reload_error() {
        let _ = write!(
            h,
            "<h2 class=fail>Last reload refused ({}) — the previous journeys keep running</h2><div class=err id=reload-error>{}</div>",
            ago(e.at),
            esc(&e.diagnostics)
        );
    }
    if let Some(e) = prometheus_error {
        let _ = write!(h, "<p class=fail id=prometheus-error>{}</p>", esc(&e));
    }
    h.push_str("<table id=journeys><tr><th>Journey</th><th>State</th><th>Last run</th><th>Steps</th><th>SLOs</th><th>Latest failure</th></tr>");
    for (st, views) in snap.iter().zip(&views) {
        let j = &st.journey;
        let state = st.state();
        let class = match state {
            "waiting" => "wait",
            "passing" => "ok",
            "slow" => "slow",
            _ => "fail",
        };
        let _ = write!(
            h,
            "<tr class=journey data-journey=\"{}\"><td><b>{}</b><br><span class=steps>every {} · {}</span></td><td class={class}>{state}<br><span class=steps>{}/{} ok</span>",
            esc(&j.name),
            esc(&j.name),
            humantime::format_duration(j.interval),
            esc(j.description.as_deref().unwrap_or("")),
            st.successes,
            st.runs
        );
        if st.passed_after_retry > 0 {
            // Retries must not hide failures: say how many passes needed one.
            let _ = write!(
                h,
                "<br><span class=slow>{} passed only after a retry</span>",
                st.passed_after_retry
            );
        }
        h.push_str("</td>");
        match &st.last {
            None => h.push_str("<td>—</td><td>—</td>"),
            Some(o) => {
                let _ = write!(
                    h,
                    "<td>{}<br><span class=steps>{}</span></td><td class=steps>",
                    ago(o.started_at),
                    ms(o.duration)
                );
                for step in &o.steps {
                    let mark = match step.status {
                        StepStatus::Passed => "✓",
                        StepStatus::Failed => "✗",
                        StepStatus::Skipped => "–",
                    };
                    let t = if step.status == StepStatus::Skipped {
                        "skipped".into()
                    } else {
                        ms(step.duration)
                    };
                    let _ = write!(h, "{mark} {} {}<br>", esc(&step.name), t);
                    // HTTP phases, or each browser action and the page's Navigation Timing.
                    if !step.timings.is_empty() {
                        h.push_str("<details class=timings><summary>timings</summary>");
                        for t in &step.timings {
                            let _ = write!(h, "{} {:.0} ms<br>", esc(&t.name), t.ms);
                        }
                        h.push_str("</details>");
                    }
                }
                h.push_str("</td>");
            }
        }
        let slos = crate::slo_view::render_html(views);
        if !slos.is_empty() {
            h.push_str("<td>");
            h.push_str(&slos);
            h.push_str("</td>");
        } else {
            h.push_str("<td>—</td>");
        }
        match st.failures.front() {
            None => h.push_str("<td>none</td></tr>"),
            Some(f) => {
                let mut links = String::new();
                for l in artifact_links(&f.artifacts) {
                    let name = if l.ends_with(".png") {
                        "screenshot"
                    } else {
                        "page url and title"
                    };
                    let _ = write!(links, "<br><a href=\"{}\">{name}</a>", esc(&l));
                }
                let excerpt = f
                    .excerpt
                    .as_deref()
                    .map(|x| format!("\nresponse: <code>{}</code>", esc(x)))
                    .unwrap_or_default();
                let _ = write!(
                    h,
                    "<td><div class=why>{} — step <b>{}</b> failed ({}):\n{}{excerpt}</div>{links}</td></tr>",
                    ago(f.at),
                    esc(&f.step),
                    esc(&f.reason),
                    esc(&f.message)
                );
            }
        }
    }
    h.push_str("</table></body></html>\n");
    Html(h)
}
