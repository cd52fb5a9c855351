//! The HTTP endpoints of `serve`: `/metrics`, health, reload, the JSON API and
//! the status page, and the accept loop that keeps them safe to expose.
//!
//! The accept loop caps connections (past the cap new ones wait in the
//! kernel's backlog, holding none of the process's file descriptors), times
//! out slow headers and TLS handshakes, speaks TLS and checks basic auth as
//! `--web.config.file` says, and runs on its own runtime so that reading the
//! status page never delays a journey. The entry point takes a listener and a
//! shutdown future, so tests bind port 0.
//!
//! Each connection is served in one of two lanes, by its first request (see
//! [`Lane`]): `/metrics`, health and reload on the HTTP runtime at normal
//! priority; the status page, API, reports and artifacts on a runtime whose
//! threads are `SCHED_IDLE`, so readers only ever get the CPU time the probes
//! leave, however many there are.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::metrics::{CONTENT_TYPE, Metrics, TEXT_CONTENT_TYPE};
use crate::outcome::{JourneyOutcome, StepStatus};
use crate::slo_prom::PromSlo;
use crate::status::{FailureRecord, JourneyStatus, StatusStore};
use crate::web::{AuthCheck, WebConfig};

mod conn;
pub mod pages;
use conn::Lane;
pub use conn::{PAGE_LANE_THREAD, run};
use pages::{Page, PageKey, PageKind, PageWriter};

/// A reload request and where to send its result (a summary, or the
/// rendered diagnostics of the refused files).
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// The largest request body accepted (bytes); only `POST /-/reload` reads one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Limits and switches of the HTTP side (the `--web.*` flags).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--web.enable-lifecycle`: serve `POST /-/reload`.
    pub enable_lifecycle: bool,
    /// `--web.max-connections`: connections held at once; more wait in the
    /// listen backlog. Lowered at start to a quarter of the file limit.
    pub max_connections: usize,
    /// `--web.read-header-timeout`: how long a client may take to send a
    /// request's headers (and, with TLS, to finish the handshake), also the
    /// idle time allowed between keep-alive requests.
    pub read_header_timeout: Duration,
    /// `--web.request-timeout`: how long a handler may take before a 503,
    /// and how long a response may wait for a client that stopped reading.
    pub request_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            enable_lifecycle: false,
            max_connections: 512,
            read_header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The web configuration in force, swapped whole on reload.
#[derive(Debug, Default)]
pub struct SharedWeb(RwLock<Arc<WebConfig>>);

impl SharedWeb {
    /// Wraps `web`.
    pub fn new(web: WebConfig) -> Self {
        Self(RwLock::new(Arc::new(web)))
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<WebConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `web` in force for new connections and requests.
    pub fn replace(&self, web: WebConfig) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(web);
    }
}

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
    /// TLS, users and headers from `--web.config.file`.
    pub web: Arc<SharedWeb>,
    /// Limits and switches.
    pub options: ServerOptions,
    /// bcrypt checks and page renders allowed at once (each on a blocking
    /// thread of the HTTP runtime; more wait their turn). The page lane
    /// gets a semaphore of the same size of its own (see [`run`]).
    pub heavy: Arc<Semaphore>,
    /// Reads the SLO recording rules from Prometheus (`--prometheus-url`).
    pub prometheus: Option<Arc<crate::slo_prom::PromReader>>,
    /// The status page and API as rendered, shared by their readers.
    pub pages: Arc<pages::PageCache>,
}

/// Prometheus' SLO numbers by `journey-slo` (`--prometheus-url`): `None`
/// when not configured; the error (bounded text) when it could not be read.
async fn prometheus_slos(
    s: &AppState,
) -> (
    Option<std::collections::BTreeMap<String, PromSlo>>,
    Option<String>,
) {
    let Some(reader) = &s.prometheus else {
        return (None, None);
    };
    match reader.read().await {
        Ok(map) => (Some(map), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// One journey's SLO views (in-process since `since`), with Prometheus'
/// numbers when they were read.
fn slo_views(
    st: &JourneyStatus,
    since: SystemTime,
    prom: Option<&std::collections::BTreeMap<String, PromSlo>>,
) -> Vec<crate::slo_view::SloView> {
    let mut views = st.slo_views(since);
    if let Some(map) = prom {
        for v in &mut views {
            v.prometheus = map.get(&format!("{}-{}", st.journey.name, v.name)).cloned();
        }
    }
    views
}

/// What the connection knows about its client, for the handlers.
#[derive(Debug, Clone, Copy)]
struct ConnInfo {
    /// A client certificate was presented and verified.
    client_cert: bool,
    /// The lane serving the connection.
    lane: Lane,
}

/// Whether the caller proved who it is (basic auth or a verified client
/// certificate); only such callers see reload diagnostics.
#[derive(Debug, Clone, Copy)]
struct Authorised(bool);

/// The router.
pub fn app(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/api/v1/journeys", get(api_journeys))
        .route("/report", get(report_page))
        // Browsers ask for it on every page: an empty answer, not a 404 in
        // the console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/artifacts/{journey}/{file}", get(artifact));
    if state.options.enable_lifecycle {
        r = r.route("/-/reload", post(reload).put(reload));
    }
    r.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(middleware::from_fn(keep_lanes))
        .layer(middleware::from_fn(refuse_large_bodies))
        .with_state(state)
}

/// A request that declares a body over [`MAX_BODY_BYTES`] is answered 413
/// at once, before authentication and without waiting for a body that may
/// never come (`DefaultBodyLimit` would wait for it to arrive first).
async fn refuse_large_bodies(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            format!("request body over {MAX_BODY_BYTES} bytes\n"),
        )
            .into_response();
    }
    next.run(req).await
}

/// A connection of the control lane that asks for a page gets it with
/// `Connection: close`: the client's next connection starts with the page
/// and lands in the page lane, so asking `/metrics` first cannot keep page
/// reads at normal priority.
async fn keep_lanes(req: Request, next: Next) -> Response {
    let misplaced = req
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.lane == Lane::Control)
        && Lane::of_path(req.uri().path()) == Lane::Pages;
    let mut r = next.run(req).await;
    if misplaced {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The soft and hard `RLIMIT_NOFILE` after raising the soft limit to the
/// hard one (probes and clients then share the larger figure).
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok((hard.max(soft), hard))
}

/// The connection cap actually used: `wanted`, but at most a quarter of the
/// file limit, so inbound connections can never take the descriptors the
/// probes need for their own connections.
pub fn inbound_budget(wanted: usize) -> (usize, Option<u64>) {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(s, _)| s);
    let cap = match soft {
        Some(s) => wanted.min(usize::try_from(s / 4).unwrap_or(usize::MAX)),
        None => wanted,
    };
    (cap.max(1), soft)
}

/// A handler that runs past `--web.request-timeout` answers 503.
async fn time_limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(s.options.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

/// Basic auth, when `basic_auth_users` is set: every endpoint except the
/// health checks (which reveal nothing, and which a kubelet cannot
/// authenticate). bcrypt runs on a blocking thread, a few at a time.
async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let web = s.web.current();
    let cert = req
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.client_cert);
    let path = req.uri().path();
    let exempt = path == "/-/healthy" || path == "/-/ready";
    let check = if web.requires_auth() && !exempt {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Verified credentials (a scraper's, after its first scrape) and
        // missing ones are answered here; only the rest queue for bcrypt, so
        // wrong passwords cannot hold up a scrape that has the right one.
        match web.check_basic_auth_cached(auth.as_deref()) {
            Some(answer) => answer,
            None => {
                let Ok(_permit) = s.heavy.acquire().await else {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                };
                let w = web.clone();
                tokio::task::spawn_blocking(move || w.check_basic_auth(auth.as_deref()))
                    .await
                    .unwrap_or(AuthCheck::Refused)
            }
        }
    } else {
        AuthCheck::Open
    };
    if check == AuthCheck::Refused {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"wayprobe\"")],
            "Unauthorized\n",
        )
            .into_response();
    }
    req.extensions_mut()
        .insert(Authorised(check == AuthCheck::Authenticated || cert));
    next.run(req).await
}

/// The policy of the HTML pages: no scripts, no framing, nothing loaded
/// from elsewhere, no referrer leaking journey names.
const HTML_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `X-Content-Type-Options` on every response, the framing, CSP and referrer
/// headers on HTML, then the web config's own headers (which win).
async fn security_headers(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HTML_CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    for (k, v) in &s.web.current().headers {
        h.insert(k.clone(), v.clone());
    }
    r
}

async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    // Encoding is the only work on the scrape path. Prometheus asks for
    // OpenMetrics; other clients get the classic text format.
    let wants_om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    // Streamed in pieces of whole lines, encoded on a blocking thread of
    // the HTTP runtime: memory per scrape stays at a few pieces however many
    // journeys there are (10,000 make about 44 MB of text), and a scraper
    // that stops reading holds up nothing the probes need (see
    // encode_streamed). A scraper that goes away stops the encoding.
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4);
    let metrics = s.metrics.clone();
    tokio::task::spawn_blocking(move || metrics.encode_streamed(!wants_om, &tx));
    let body =
        axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|piece| (Ok::<_, std::convert::Infallible>(piece), rx))
        }));
    let content_type = if wants_om {
        CONTENT_TYPE
    } else {
        TEXT_CONTENT_TYPE
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
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

/// Why a reload request looks like a browser sent it on another site's
/// behalf (a form post or a no-CORS fetch), if it does.
fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
        && site != "none"
    {
        return Some("a cross-site browser request");
    }
    if let Some(origin) = get(header::ORIGIN) {
        let host = get(header::HOST).unwrap_or("");
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Some("an `Origin` other than this server");
        }
    }
    // What an HTML form (or a "simple" fetch) can send without a CORS
    // preflight; tools send no body or JSON.
    if let Some(ct) = get(header::CONTENT_TYPE) {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            ct.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        ) {
            return Some("a form content type");
        }
    }
    None
}

async fn reload(
    State(s): State<AppState>,
    authorised: Option<axum::Extension<Authorised>>,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> Response {
    if let Some(why) = cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            format!("reload refused: {why}; send a plain `curl -X POST` instead\n"),
        )
            .into_response();
    }
    let (tx, rx) = oneshot::channel();
    if s.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(msg)) => (StatusCode::OK, format!("{msg}\n")).into_response(),
        // File paths and source lines only to a caller who proved who it is.
        Ok(Err(diags)) if authorised.is_some_and(|a| a.0.0) => {
            (StatusCode::UNPROCESSABLE_ENTITY, diags).into_response()
        }
        Ok(Err(_)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload refused; the previous configuration keeps running. The diagnostics are in \
             wayprobe's log and on the status page; they are returned here only to a caller \
             who authenticated (basic auth or a client certificate of --web.config.file).\n",
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

/// Filtering and paging of the status page and the API: `?state=failing`,
/// `?q=checkout` (part of the name), `?offset=200&limit=100`.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

/// The states `?state=` filters on, as [`JourneyStatus::state`] names them.
const STATES: &[&str] = &["failing", "passing", "slow", "waiting"];

/// The list query, or a 400 saying what is wrong with it in our words (JSON
/// for the API, text for the page): a state that no journey can be in
/// would show an empty list, as if all were well.
fn checked(raw: Option<&str>, json: bool) -> Result<ListQuery, Response> {
    why_refused(raw).map_err(|why| bad_query(&why, json))
}

/// Parses `?state=&q=&offset=&limit=` (other keys are ignored), naming
/// every problem at once, each with what to write instead.
fn why_refused(raw: Option<&str>) -> Result<ListQuery, String> {
    let mut q = ListQuery::default();
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let field: &'static str = match k.as_ref() {
            "state" => "state",
            "q" => "q",
            "offset" => "offset",
            "limit" => "limit",
            _ => continue,
        };
        if !seen.insert(field) {
            problems.push(format!("`{field}` is given more than once: give it once"));
            continue;
        }
        let number = |what: &str| -> Result<usize, String> {
            v.trim().parse::<usize>().map_err(|_| {
                format!("`{field}` must be {what}, e.g. `?offset=0&limit=100`, not `{v}`")
            })
        };
        match field {
            "state" if v.is_empty() || STATES.contains(&v.as_ref()) => {
                q.state = Some(v.into_owned())
            }
            "state" => problems.push(format!(
                "unknown state `{v}`: write one of {}",
                STATES.join(", ")
            )),
            "q" => q.q = Some(v.into_owned()),
            "offset" => match number("a whole number ≥ 0") {
                Ok(n) => q.offset = Some(n),
                Err(e) => problems.push(e),
            },
            _ => match number(&format!("a whole number from 1 to {MAX_PAGE}")) {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => q.limit = Some(n),
                Ok(_) => problems.push(format!(
                    "`limit` must be from 1 to {MAX_PAGE}, e.g. `?limit=100`, not `{v}`"
                )),
                Err(e) => problems.push(e),
            },
        }
    }
    if problems.is_empty() {
        Ok(q)
    } else {
        Err(problems.join("; "))
    }
}

/// A 400 for a bad list query: JSON for the API, text for the page.
fn bad_query(why: &str, json: bool) -> Response {
    if json {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response()
    } else {
        (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
    }
}

/// One page of journeys: (matching in total, the page).
fn page<'a>(
    snap: &'a [Arc<JourneyStatus>],
    q: &ListQuery,
    default_limit: usize,
) -> (usize, usize, usize, Vec<&'a JourneyStatus>) {
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(default_limit).clamp(1, MAX_PAGE);
    let matching = snap.iter().filter(|st| {
        q.state
            .as_deref()
            .is_none_or(|s| s.is_empty() || s == st.state())
            && q.q.as_deref().is_none_or(|n| st.journey.name.contains(n))
    });
    let total = matching.clone().count();
    let rows = matching.skip(offset).take(limit).map(|a| &**a).collect();
    (total, offset, limit, rows)
}

impl ListQuery {
    /// The cache key of this query on `kind` (default page size
    /// `default_limit`), and the query as rendered: defaults applied, so
    /// that every request with the same key gets the same body.
    fn normalise(self, kind: PageKind, default_limit: usize) -> (PageKey, ListQuery) {
        let offset = self.offset.unwrap_or(0);
        let limit = self.limit.unwrap_or(default_limit).clamp(1, MAX_PAGE);
        let key = PageKey {
            kind,
            state: self.state.clone(),
            q: self.q.clone(),
            offset,
            limit,
        };
        let q = ListQuery {
            offset: Some(offset),
            limit: Some(limit),
            ..self
        };
        (key, q)
    }
}

/// The most journeys one page of the status page or API shows.
const MAX_PAGE: usize = 10_000;

/// The page for `q` on `kind`: shared when another reader's render of the
/// same status generation still serves (see [`pages::PageCacheOptions`]),
/// else rendered by `render_page` from a fresh snapshot, off the probes' workers.
async fn shared_page<F>(
    s: &AppState,
    kind: PageKind,
    q: ListQuery,
    default_limit: usize,
    render_page: F,
) -> Option<Page>
where
    F: FnOnce(
            &StatusStore,
            &[Arc<JourneyStatus>],
            &ListQuery,
            Option<&std::collections::BTreeMap<String, PromSlo>>,
            Option<String>,
        ) -> Page
        + Send
        + 'static,
{
    let (key, q) = q.normalise(kind, default_limit);
    // Read before the snapshot: the body is at least this new.
    let generation = s.status.generation();
    s.pages
        .get_or_render(key, generation, std::time::Instant::now(), || async {
            let (prom, prometheus_error) = prometheus_slos(s).await;
            let snap = s.status.snapshot();
            let status = s.status.clone();
            render(s, move || {
                render_page(&status, &snap, &q, prom.as_ref(), prometheus_error)
            })
            .await
        })
        .await
}

/// A shared page as a response: its pieces streamed, with its length.
fn page_response(page: Option<Page>, content_type: &'static str) -> Response {
    let Some(page) = page else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let len = page.len();
    let pieces = futures_util::stream::iter(
        (0..page.pieces().len())
            .map(move |i| Ok::<_, std::convert::Infallible>(page.pieces()[i].clone())),
    );
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
        ],
        axum::body::Body::from_stream(pieces),
    )
        .into_response()
}

/// Runs a render on a blocking thread of the HTTP runtime, a few at once.
async fn render<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _permit = s.heavy.acquire().await.ok()?;
    tokio::task::spawn_blocking(f).await.ok()
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
    /// Runs whose `finally:` steps failed (their result stands).
    cleanup_failures: u64,
    /// The latest failed `finally:` step.
    last_cleanup_failure: Option<&'a FailureRecord>,
    /// Links to the latest failure's screenshots and notes.
    artifacts: Vec<String>,
}

#[derive(Serialize)]
struct Api<'a> {
    location: &'a str,
    /// This process's shard (`--shard I/N`) and the journeys other shards run.
    shard: crate::status::ShardStatus,
    /// Why Prometheus' SLO numbers are missing (`--prometheus-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    prometheus_error: Option<String>,
    reload_error: Option<crate::status::ReloadError>,
    /// Journeys matching the filter, over all pages.
    total: usize,
    offset: usize,
    limit: usize,
    /// The `offset` of the next page, if there is one.
    next_offset: Option<usize>,
    journeys: Vec<ApiJourney<'a>>,
}

/// `/api/v1/journeys`: every journey's state, at most 1,000 per page.
async fn api_journeys(
    State(s): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let q = match checked(q.as_deref(), true) {
        Ok(q) => q,
        Err(refused) => return refused,
    };
    let page = shared_page(&s, PageKind::Api, q, 1000, render_api).await;
    page_response(page, "application/json")
}

/// The JSON of `/api/v1/journeys` for one page, written in pieces.
fn render_api(
    status: &StatusStore,
    snap: &[Arc<JourneyStatus>],
    q: &ListQuery,
    prom: Option<&std::collections::BTreeMap<String, PromSlo>>,
    prometheus_error: Option<String>,
) -> Page {
    let (total, offset, limit, rows) = page(snap, q, 1000);
    let api = Api {
        location: &status.location,
        shard: status.shard(),
        prometheus_error,
        reload_error: status.reload_error(),
        total,
        offset,
        limit,
        next_offset: (offset + rows.len() < total).then_some(offset + rows.len()),
        journeys: rows
            .into_iter()
            .map(|st| ApiJourney {
                name: &st.journey.name,
                description: st.journey.description.as_deref(),
                file: st.journey.source.path.display().to_string(),
                location: &status.location,
                interval_seconds: st.journey.interval.as_secs_f64(),
                timeout_seconds: st.journey.timeout.as_secs_f64(),
                labels: &st.journey.labels,
                runs: st.runs,
                successes: st.successes,
                state: st.state(),
                passed_after_retry: st.passed_after_retry,
                last_attempts: st.last_attempts,
                slos: slo_views(st, status.started, prom),
                last: st.last.as_deref(),
                recent_failures: st.failures.iter().collect(),
                cleanup_failures: st.cleanup_failures,
                last_cleanup_failure: st.last_cleanup_failure.as_deref(),
                artifacts: st
                    .failures
                    .front()
                    .map(|f| artifact_links(&f.artifacts))
                    .unwrap_or_default(),
            })
            .collect(),
    };
    let mut w = PageWriter::new();
    // Writing to memory cannot fail, and every field serialises.
    let _ = serde_json::to_writer(&mut w, &api);
    w.finish()
}

/// Query of `/report`.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    /// `day`, `week` (default) or `28d`.
    period: Option<String>,
    /// `html` (default), `markdown` or `json`.
    format: Option<String>,
    /// End of the period (RFC 3339; default now).
    until: Option<String>,
}

/// `/report`: the journey report for people (see [`crate::slo_report`]):
/// from Prometheus with `--prometheus-url`, else this prober's memory.
async fn report_page(State(s): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    use crate::slo_report::{self as rep, Period};
    let period = match q.period.as_deref().map(Period::parse) {
        None => Period::Week,
        Some(Some(p)) => p,
        Some(None) => {
            return (StatusCode::BAD_REQUEST, "period must be day, week or 28d\n").into_response();
        }
    };
    let format = q.format.as_deref().unwrap_or("html");
    if !matches!(format, "html" | "markdown" | "json") {
        return (
            StatusCode::BAD_REQUEST,
            "format must be html, markdown or json\n",
        )
            .into_response();
    }
    let until = match q.until.as_deref().map(humantime::parse_rfc3339_weak) {
        None => SystemTime::now(),
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                "until must be an RFC 3339 time, e.g. 2026-11-02T00:00:00Z\n",
            )
                .into_response();
        }
    };
    let snap = s.status.snapshot();
    let report = match &s.prometheus {
        Some(reader) => {
            let journeys: Vec<crate::journey::Journey> =
                snap.iter().map(|st| (*st.journey).clone()).collect();
            let reader = match reader.timeout(Duration::from_secs(60)) {
                Ok(r) => r,
                Err(e) => return (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
            };
            let cfg = crate::rules::RulesConfig::default();
            match rep::from_prometheus(&reader, &journeys, &cfg, period, until).await {
                Ok(mut r) => {
                    let failures: Vec<rep::KnownFailure> = snap
                        .iter()
                        .flat_map(|st| {
                            st.failures.iter().map(|f| rep::KnownFailure {
                                journey: st.journey.name.clone(),
                                at: f
                                    .at
                                    .duration_since(SystemTime::UNIX_EPOCH)
                                    .map_or(0.0, |d| d.as_secs_f64()),
                                links: artifact_links(&f.artifacts)
                                    .into_iter()
                                    .chain(f.trace_url.as_deref().map(String::from))
                                    .collect(),
                            })
                        })
                        .collect();
                    rep::attach_links(&mut r, &failures);
                    r
                }
                Err(e) => return (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
            }
        }
        None => {
            let started = s.status.started;
            let rows: Vec<(crate::journey::Journey, Vec<crate::slo_view::SloView>)> = snap
                .iter()
                .map(|st| ((*st.journey).clone(), st.slo_views(started)))
                .collect();
            rep::from_views(&rows, started, SystemTime::now())
        }
    };
    match format {
        "json" => (
            [(header::CONTENT_TYPE, "application/json")],
            rep::render_json(&report),
        )
            .into_response(),
        "markdown" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            rep::render_markdown(&report),
        )
            .into_response(),
        _ => Html(rep::render_html(&report, true)).into_response(),
    }
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

use crate::diag::duration as ms;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;width:100%;margin-bottom:1em}\
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
.ok{color:#137333;font-weight:600}.slow{color:#b26a00;font-weight:600}.fail{color:#b3261e;font-weight:600}.wait{color:#777}\
.steps{font-size:.9em;color:#444}.why{background:#fdecea;padding:.4em .6em;border-radius:4px;white-space:pre-wrap}\
.err{background:#fdecea;border:1px solid #b3261e;padding:.6em;white-space:pre-wrap;font-family:monospace}\
code{background:#f3f3f3;padding:0 .2em}";

async fn status_page(
    State(s): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let q = match checked(q.as_deref(), false) {
        Ok(q) => q,
        Err(refused) => return refused,
    };
    let page = shared_page(&s, PageKind::Status, q, 100, render_status_page).await;
    page_response(page, "text/html; charset=utf-8")
}

/// Appends `?…` to `/` for a page of the status page.
fn page_link(q: &ListQuery, offset: usize, limit: usize) -> String {
    let mut url = format!("/?offset={offset}&limit={limit}");
    for (k, v) in [("state", &q.state), ("q", &q.q)] {
        if let Some(v) = v {
            let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            let _ = write!(url, "&{k}={v}");
        }
    }
    url
}

/// The status page: a summary of all journeys, then one page of them
/// (100 by default).
fn render_status_page(
    status: &StatusStore,
    snap: &[Arc<JourneyStatus>],
    q: &ListQuery,
    prom: Option<&std::collections::BTreeMap<String, PromSlo>>,
    prometheus_error: Option<String>,
) -> Page {
    let failing = snap.iter().filter(|st| st.state() == "failing").count();
    let slow = snap.iter().filter(|st| st.state() == "slow").count();
    let mut h = PageWriter::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=10>\
         <title>wayprobe: {failing} failing</title><style>{STYLE}</style></head><body>\
         <h1>wayprobe — {} journey{}, <span class={}>{failing} failing</span>, <span class={}>{slow} slow</span></h1>\
         <p>Location <code>{}</code>. This page refreshes every 10 s. \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/journeys\">/api/v1/journeys</a></p>",
        snap.len(),
        if snap.len() == 1 { "" } else { "s" },
        if failing > 0 { "fail" } else { "ok" },
        if slow > 0 { "slow" } else { "ok" },
        esc(&status.location)
    );
    let shard = status.shard();
    if shard.count > 1 {
        let _ = write!(
            h,
            "<div id=shard>Shard <code>{}/{}</code>: runs {} journeys; {} skipped (run by the other shards)",
            shard.index,
            shard.count,
            snap.len(),
            shard.skipped.len()
        );
        if !shard.skipped.is_empty() {
            let names: Vec<String> = shard.skipped.iter().map(|n| esc(n)).collect();
            let _ = write!(
                h,
                "<details><summary>skipped journeys</summary><span id=skipped>{}</span></details>",
                names.join(", ")
            );
        }
        h.push_str("</div>");
    }
    if let Some(e) = status.reload_error() {
        let _ = write!(
            h,
            "<h2 class=fail>Last reload refused ({}) — the previous journeys keep running</h2><div class=err id=reload-error>{}</div>",
            ago(e.at),
            esc(&e.diagnostics)
        );
    }
    let (total, offset, limit, rows) = page(snap, q, 100);
    let _ = write!(
        h,
        "<p id=paging>Showing {}–{} of {total}{}. Filter: <a href=\"/?state=failing\">failing</a> · <a href=\"/?state=slow\">slow</a> · \
         <a href=\"/?state=waiting\">waiting</a> · <a href=\"/\">all</a>",
        if rows.is_empty() { 0 } else { offset + 1 },
        offset + rows.len(),
        if q.state.is_some() || q.q.is_some() {
            " matching"
        } else {
            ""
        }
    );
    if offset > 0 {
        let _ = write!(
            h,
            " · <a rel=prev href=\"{}\">previous</a>",
            esc(&page_link(q, offset.saturating_sub(limit), limit))
        );
    }
    if offset + rows.len() < total {
        let _ = write!(
            h,
            " · <a rel=next href=\"{}\">next</a>",
            esc(&page_link(q, offset + rows.len(), limit))
        );
    }
    h.push_str("</p>");
    if let Some(e) = prometheus_error {
        let _ = write!(h, "<p class=fail id=prometheus-error>{}</p>", esc(&e));
    }
    h.push_str("<table id=journeys><tr><th>Journey</th><th>State</th><th>Last run</th><th>Steps</th><th>SLOs</th><th>Latest failure</th></tr>");
    for st in rows {
        let views = slo_views(st, status.started, prom);
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
            crate::diag::duration(j.interval),
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
        if let Some(c) = &st.last_cleanup_failure {
            // Cleanup does not change the result, but must not go unseen.
            let _ = write!(
                h,
                "<br><span class=slow title=\"{}\">{} cleanup{} failed (latest: {}, {})</span>",
                esc(&c.message),
                st.cleanup_failures,
                if st.cleanup_failures == 1 { "" } else { "s" },
                esc(&c.step),
                esc(c.reason)
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
                for (i, step) in o.steps.iter().chain(&o.finally).enumerate() {
                    if i == o.steps.len() {
                        h.push_str("<i>finally:</i><br>");
                    }
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
                    let _ = write!(h, "{mark} {} {}", esc(&step.name), t);
                    // Start-up is the prober's time, shown apart from the step's.
                    if let Some(b) = step.browser_start {
                        let _ = write!(h, " <span class=steps>(+{} browser start)</span>", ms(b));
                    }
                    h.push_str("<br>");
                    // HTTP phases, or each browser action and the page's Navigation Timing.
                    if !step.timings.is_empty() {
                        h.push_str("<details class=timings><summary>timings</summary>");
                        for t in &step.timings {
                            // A page load's phases sit under their action.
                            let indent = if t.within.is_some() { "&emsp;" } else { "" };
                            let _ = write!(
                                h,
                                "{indent}{} {}<br>",
                                esc(&t.name),
                                crate::diag::millis(t.ms)
                            );
                        }
                        h.push_str("</details>");
                    }
                }
                h.push_str("</td>");
            }
        }
        let slos = crate::slo_view::render_html(&views);
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
                match (&f.trace_url, &f.trace_id) {
                    (Some(u), _) => {
                        let _ = write!(links, "<br><a href=\"{}\">trace</a>", esc(u));
                    }
                    (None, Some(id)) => {
                        let _ = write!(links, "<br>trace <code>{}</code>", esc(id));
                    }
                    _ => {}
                }
                let _ = write!(
                    h,
                    "<td><div class=why>{} — step <b>{}</b> failed ({}):\n{}{excerpt}</div>{links}</td></tr>",
                    ago(f.at),
                    esc(&f.step),
                    esc(f.reason),
                    esc(&f.message)
                );
            }
        }
    }
    h.push_str("</table></body></html>\n");
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::conn::{StallGuard, read_head};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client that stops reading cannot keep a write (and so its
    /// connection slot) waiting for ever; one that reads is not cut off.
    #[tokio::test(start_paused = true)]
    async fn a_write_stalled_past_the_limit_fails() {
        let (server, client) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(server, Duration::from_secs(30));
        let body = vec![b'x'; 1024];
        let err = guarded.write_all(&body).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

        let (server, mut client2) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(server, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            // Slow, but never stalled for 30 s.
            while got.len() < 1024 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = client2.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got.len()
        });
        guarded.write_all(&body).await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap(), 1024);
        // Held to here: the first write timed out, it was not refused.
        drop(client);
    }

    /// Scrapes, health and reload keep the control lane; everything else,
    /// unreadable heads included, goes to the page lane.
    #[test]
    fn a_connection_s_lane_is_its_first_target_s() {
        for (head, lane) in [
            ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Lane::Control),
            ("GET /metrics?x=1 HTTP/1.1\r\n", Lane::Control),
            ("GET /-/healthy HTTP/1.1\r\n", Lane::Control),
            ("GET /-/ready HTTP/1.0\n\n", Lane::Control),
            ("POST /-/reload HTTP/1.1\r\n", Lane::Control),
            (
                "GET http://127.0.0.1:9469/metrics HTTP/1.1\r\n",
                Lane::Control,
            ),
            ("GET / HTTP/1.1\r\n", Lane::Pages),
            ("GET /api/v1/journeys?limit=5 HTTP/1.1\r\n", Lane::Pages),
            ("GET /report HTTP/1.1\r\n", Lane::Pages),
            ("GET /metricsx HTTP/1.1\r\n", Lane::Pages),
            ("GET /metrics/ HTTP/1.1\r\n", Lane::Pages),
            ("GET http://h HTTP/1.1\r\n", Lane::Pages),
            ("\u{16}\u{3}\u{1}", Lane::Pages),
            ("", Lane::Pages),
        ] {
            assert_eq!(Lane::of_head(head.as_bytes()), lane, "{head:?}");
        }
    }

    /// The head is read to its blank line, however it arrives, and no
    /// further: the client has sent its request and waits for the answer.
    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_read_without_waiting_for_more() {
        for pieces in [
            &["GET / HTTP/1.1\r\nHo", "st: x\r", "\n\r", "\n"][..],
            &["GET / HTTP/1.0\n", "\n"][..],
            &["GET / HTTP/1.1\r\n\r\nGET /next"][..],
        ] {
            let whole = pieces.concat();
            let (mut server, mut client) = tokio::io::duplex(1024);
            let writer = tokio::spawn(async move {
                for p in pieces {
                    client.write_all(p.as_bytes()).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // Returned, so the connection stays open until joined.
                client
            });
            let head = tokio::time::timeout(Duration::from_secs(60), read_head(&mut server))
                .await
                .expect("the head ends at its blank line")
                .unwrap();
            assert_eq!(&head[..], whole.as_bytes());
            drop(writer.await.unwrap());
        }
        // A client that stops sending ends the read with what it sent.
        let (mut server, mut client) = tokio::io::duplex(1024);
        client.write_all(b"GET / HT").await.unwrap();
        drop(client);
        assert_eq!(&read_head(&mut server).await.unwrap()[..], b"GET / HT");
    }
}
