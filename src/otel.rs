//! OpenTelemetry spans of each run, exported over OTLP.
//!
//! A run is one trace: a root span (journey, location, result, reason), a
//! child per step (name, kind, result, reason; browser navigations and
//! actions as events), and under an HTTP step one client span per request
//! with the semantic-convention attributes and its phases as events. The
//! span ids are the ones the requests' `traceparent` carried
//! ([`crate::trace`]), so the target's backend spans hang under them.
//!
//! Sampling is exact tail sampling: the prober knows the outcome when the
//! run ends, so every failed run is kept and a passing run is kept when its
//! trace id falls within `--trace-sample-ratio` (decided from the id, as
//! OpenTelemetry's `TraceIdRatioBased` sampler does).
//!
//! Export never slows a run: a finished run's spans go into a bounded queue
//! ([`ExportConfig::queue_runs`]) that one task drains in batches through the
//! OpenTelemetry SDK's OTLP exporter. A full queue, an unreachable or a
//! hanging collector drop spans: counted in
//! `wayprobe_trace_spans_dropped_total`, and logged at most once a minute.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::outcome::{JourneyOutcome, RunResult, StepOutcome, StepStatus};

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `http/protobuf`: POST to `<endpoint>/v1/traces` (the default, as in
    /// the OpenTelemetry specification).
    #[default]
    HttpProtobuf,
    /// `grpc`: the collector's gRPC service (port 4317 by convention).
    Grpc,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            "http/json" => {
                Err("`http/json` is not supported; write `http/protobuf` or `grpc`".into())
            }
            _ => Err(format!(
                "unknown OTLP protocol `{s}`; write `http/protobuf` or `grpc`"
            )),
        }
    }
}

/// How and where spans are exported.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The collector's base URL (`http://collector:4318` for
    /// `http/protobuf`, where `/v1/traces` is appended, or
    /// `http://collector:4317` for `grpc`). `None`: the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// variables, read by the SDK. Headers (`OTEL_EXPORTER_OTLP_HEADERS`),
    /// timeout and compression also come from the standard variables.
    pub endpoint: Option<String>,
    /// The transport.
    pub protocol: Protocol,
    /// Share of passing runs whose trace is kept, 0 to 1; failed runs are
    /// always kept.
    pub sample_ratio: f64,
    /// Runs whose spans may wait for export; more are dropped (and counted).
    pub queue_runs: usize,
    /// The prober's `location`, on every root span.
    pub location: String,
    /// How long one export may take before its spans count as dropped.
    pub export_timeout: Duration,
    /// TLS files for an `https://` collector ([`TlsFiles::from_env`]).
    pub tls: TlsFiles,
}

/// PEM files for the TLS connection to the collector, named as the
/// OpenTelemetry specification's exporter variables name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) the collector's certificate must chain to
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`). Given, they are the
    /// only roots trusted, as in the other SDKs; otherwise the system's.
    pub ca: Option<PathBuf>,
    /// The client certificate chain for mutual TLS
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE`).
    pub client_cert: Option<PathBuf>,
    /// Its private key (`OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY`).
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    /// The files the standard variables name; the `_TRACES_` variant of
    /// each wins over the general one, and an empty value counts as unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| {
            [
                format!("OTEL_EXPORTER_OTLP_TRACES_{name}"),
                format!("OTEL_EXPORTER_OTLP_{name}"),
            ]
            .iter()
            .find_map(|k| get(k).filter(|v| !v.trim().is_empty()))
            .map(PathBuf::from)
        };
        Self {
            ca: var("CERTIFICATE"),
            client_cert: var("CLIENT_CERTIFICATE"),
            client_key: var("CLIENT_KEY"),
        }
    }

    /// Reads and checks the files. Errors: unreadable, not PEM of the
    /// right kind, or a client certificate without its key (or the reverse).
    fn load(&self) -> Result<TlsPem, ExportError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |var: &'static str, p: &Path| {
            std::fs::read(p).map_err(|e| ExportError::Tls {
                var,
                path: p.to_path_buf(),
                why: e.to_string(),
            })
        };
        let bad = |var: &'static str, p: &Path, what: &str| ExportError::Tls {
            var,
            path: p.to_path_buf(),
            why: format!("no PEM {what} in it"),
        };
        let certs = |var: &'static str, p: &Path| {
            let pem = read(var, p)?;
            let n = CertificateDer::pem_slice_iter(&pem)
                .take_while(Result::is_ok)
                .count();
            if n == 0 {
                return Err(bad(var, p, "certificate"));
            }
            Ok(pem)
        };
        let ca = match &self.ca {
            Some(p) => Some(certs("OTEL_EXPORTER_OTLP_CERTIFICATE", p)?),
            None => None,
        };
        let identity = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let cert = certs("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", c)?;
                let key = read("OTEL_EXPORTER_OTLP_CLIENT_KEY", k)?;
                if PrivateKeyDer::from_pem_slice(&key).is_err() {
                    return Err(bad("OTEL_EXPORTER_OTLP_CLIENT_KEY", k, "private key"));
                }
                Some((cert, key))
            }
            (Some(_), None) => return Err(ExportError::TlsPair("OTEL_EXPORTER_OTLP_CLIENT_KEY")),
            (None, Some(_)) => {
                return Err(ExportError::TlsPair(
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                ));
            }
        };
        Ok(TlsPem { ca, identity })
    }
}

/// The contents of [`TlsFiles`], checked.
struct TlsPem {
    ca: Option<Vec<u8>>,
    /// Certificate chain and key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsPem {
    /// The http/protobuf client's TLS settings.
    fn http(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, ExportError> {
        let build = |e: reqwest::Error| ExportError::Build(e.to_string());
        if let Some(ca) = &self.ca {
            b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(ca).map_err(build)?);
        }
        if let Some((cert, key)) = &self.identity {
            b = b.identity(
                reqwest::Identity::from_pem(&[cert.as_slice(), key].concat()).map_err(build)?,
            );
        }
        Ok(b)
    }

    /// The gRPC channel's TLS settings (for an `https://` endpoint).
    fn grpc(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut c = ClientTlsConfig::new();
        c = match &self.ca {
            Some(ca) => c.ca_certificate(Certificate::from_pem(ca)),
            None => c.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: Protocol::HttpProtobuf,
            sample_ratio: 0.01,
            queue_runs: 1024,
            location: "local".into(),
            export_timeout: Duration::from_secs(10),
            tls: TlsFiles::default(),
        }
    }
}

impl ExportConfig {
    /// Whether spans are exported at all: an endpoint was given, or one of
    /// the standard endpoint variables is set.
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some() || env_endpoint(|k| std::env::var(k).ok()).is_some()
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The endpoint is not an http(s) URL.
    #[error("invalid OTLP endpoint `{0}`: write an http(s) URL such as `http://collector:4318`")]
    Endpoint(String),
    /// The SDK refused the configuration (bad variable, header...).
    #[error("cannot build the OTLP exporter: {0}")]
    Build(String),
    /// A TLS file cannot be used.
    #[error("{var}: cannot use `{}`: {why}", path.display())]
    Tls {
        /// The variable that names it (the general form).
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (unreadable, no certificate or key in it).
        why: String,
    },
    /// Half of a client certificate and key pair.
    #[error("mutual TLS needs both the client certificate and its key: set {0} too")]
    TlsPair(&'static str),
}

/// The exporter's own counters (registered by `serve` under
/// `wayprobe_trace_spans_*_total`).
#[derive(Debug, Clone, Default)]
pub struct ExportCounters {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans dropped: queue full, collector unreachable, refused or too slow.
    pub dropped: Counter,
}

/// Hands finished runs' spans to the export task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Exporter {
    tx: mpsc::Sender<Vec<SpanData>>,
    counters: ExportCounters,
    ratio_bound: u64,
    location: Arc<str>,
    warn: Arc<RateLimitedWarn>,
    scope: InstrumentationScope,
}

/// The http/protobuf exporter's client: the reqwest wayprobe already uses,
/// so the SDK brings no second HTTP stack.
#[derive(Debug, Clone)]
struct OtlpHttpClient(reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let resp = self
            .0
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        let mut out = http::Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        Ok(out.body(resp.bytes().await?)?)
    }
}

/// The endpoint the standard variables name, the traces one first.
fn env_endpoint(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|k| get(k).filter(|v| !v.trim().is_empty()))
}

/// `<base>/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` is resolved.
fn traces_url(base: &str) -> Result<String, ExportError> {
    let u = url::Url::parse(base).map_err(|_| ExportError::Endpoint(base.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(ExportError::Endpoint(base.to_string()));
    }
    Ok(format!("{}/v1/traces", base.trim_end_matches('/')))
}

impl Exporter {
    /// Builds the OTLP exporter and starts its export task on the current
    /// Tokio runtime. Errors: a bad endpoint or a configuration the SDK
    /// refuses.
    pub fn start(cfg: &ExportConfig) -> Result<(Self, ExportTask), ExportError> {
        let build = |e: opentelemetry_otlp::ExporterBuildError| ExportError::Build(e.to_string());
        let tls = cfg.tls.load()?;
        let mut exporter = match cfg.protocol {
            Protocol::HttpProtobuf => {
                let client = tls
                    .http(
                        reqwest::Client::builder()
                            .user_agent(crate::run::USER_AGENT)
                            .timeout(cfg.export_timeout),
                    )?
                    .build()
                    .map_err(|e| ExportError::Build(e.to_string()))?;
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(OtlpHttpClient(client))
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                if let Some(e) = &cfg.endpoint {
                    b = b.with_endpoint(traces_url(e)?);
                }
                b.build().map_err(build)?
            }
            Protocol::Grpc => {
                use opentelemetry_otlp::WithTonicConfig as _;
                // Resolved here (as the SDK would) to know whether it is TLS.
                let endpoint = cfg
                    .endpoint
                    .clone()
                    .or_else(|| env_endpoint(|k| std::env::var(k).ok()))
                    .unwrap_or_else(|| "http://localhost:4317".into());
                let https = url::Url::parse(&endpoint)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                    .ok_or_else(|| ExportError::Endpoint(endpoint.clone()))?
                    .scheme()
                    == "https";
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                    .with_endpoint(endpoint);
                if https {
                    b = b.with_tls_config(tls.grpc());
                }
                b.build().map_err(build)?
            }
        };
        exporter.set_resource(
            &opentelemetry_sdk::Resource::builder()
                .with_service_name("wayprobe")
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let (tx, rx) = mpsc::channel(cfg.queue_runs.max(1));
        let counters = ExportCounters::default();
        let warn = Arc::new(RateLimitedWarn::default());
        let task = tokio::spawn(export_loop(
            exporter,
            rx,
            counters.clone(),
            warn.clone(),
            cfg.export_timeout,
        ));
        let ratio = cfg.sample_ratio.clamp(0.0, 1.0);
        Ok((
            Self {
                tx,
                counters,
                ratio_bound: ratio_bound(ratio),
                location: cfg.location.as_str().into(),
                warn,
                scope: InstrumentationScope::builder("wayprobe")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            },
            ExportTask(task),
        ))
    }

    /// The exporter's counters.
    pub fn counters(&self) -> &ExportCounters {
        &self.counters
    }

    /// Runs whose spans wait in the queue now; never more than
    /// [`ExportConfig::queue_runs`], whatever the collector does.
    pub fn queued_runs(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Whether the run's trace is kept: always when it failed, otherwise
    /// when its trace id falls within the sample ratio.
    pub fn keeps(&self, o: &JourneyOutcome) -> bool {
        o.result == RunResult::Failure
            || o.trace_id
                .as_deref()
                .is_some_and(|id| sampled(id, self.ratio_bound))
    }

    /// Queues the spans of a finished run if it is kept; never waits. A
    /// full queue drops them (counted, logged at most once a minute).
    pub fn offer(&self, o: &JourneyOutcome) {
        if !self.keeps(o) {
            return;
        }
        let spans = spans(o, &self.location, &self.scope);
        if spans.is_empty() {
            return;
        }
        let n = spans.len() as u64;
        if self.tx.try_send(spans).is_err() {
            self.counters.dropped.inc_by(n);
            self.warn
                .warn(n, "trace export queue full (collector slow or down)");
        }
    }
}

/// The export task; [`ExportTask::finish`] waits for the queue to drain.
#[derive(Debug)]
pub struct ExportTask(tokio::task::JoinHandle<()>);

impl ExportTask {
    /// Waits up to `limit` for every queued span to be exported (once every
    /// [`Exporter`] clone is dropped), as `wayprobe run` does before exiting.
    /// Returns whether it did; `false`: the export was cut off at `limit`
    /// and the spans not yet exported are lost.
    pub async fn finish(self, limit: Duration) -> bool {
        let abort = self.0.abort_handle();
        if tokio::time::timeout(limit, self.0).await.is_err() {
            abort.abort();
            tracing::warn!(
                "trace export did not finish in time; the rest of the spans are dropped"
            );
            return false;
        }
        true
    }
}

/// `ratio` of the u64 range: a trace id whose low 8 bytes are below it is sampled.
fn ratio_bound(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio * u64::MAX as f64) as u64
    }
}

/// The `TraceIdRatioBased` decision over the id's low 64 bits.
fn sampled(trace_id: &str, bound: u64) -> bool {
    if bound == u64::MAX {
        return true;
    }
    trace_id
        .get(16..32)
        .and_then(|low| u64::from_str_radix(low, 16).ok())
        .is_some_and(|x| x < bound)
}

/// At most one warning a minute; the ones in between are summed into the next.
#[derive(Debug, Default)]
struct RateLimitedWarn {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedWarn {
    fn warn(&self, spans: u64, what: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
            self.suppressed.fetch_add(spans, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let earlier = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            dropped_spans = spans + earlier,
            "{what}; spans dropped (counted in wayprobe_trace_spans_dropped_total)"
        );
    }
}

/// Spans sent per export call.
const MAX_BATCH: usize = 512;

async fn export_loop(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<Vec<SpanData>>,
    counters: ExportCounters,
    warn: Arc<RateLimitedWarn>,
    timeout: Duration,
) {
    while let Some(mut batch) = rx.recv().await {
        // Whatever else is already waiting joins this batch.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(mut more) => batch.append(&mut more),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        // The exporter has its own timeout; this one also bounds a
        // collector that accepts the connection and never answers.
        match tokio::time::timeout(timeout, exporter.export(batch)).await {
            Ok(Ok(())) => {
                counters.exported.inc_by(n);
            }
            Ok(Err(e)) => {
                counters.dropped.inc_by(n);
                warn.warn(n, &format!("trace export failed: {e}"));
            }
            Err(_) => {
                counters.dropped.inc_by(n);
                warn.warn(n, "trace export timed out");
            }
        }
    }
}

fn kv(k: &'static str, v: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(k, v)
}

/// One span before it becomes the SDK's [`SpanData`].
struct Draft {
    ctx: SpanContext,
    parent: SpanId,
    kind: SpanKind,
    name: String,
    times: (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    events: Vec<opentelemetry::trace::Event>,
    status: Status,
}

impl Draft {
    fn finish(self, scope: &InstrumentationScope) -> SpanData {
        let mut events = SpanEvents::default();
        events.events = self.events;
        SpanData {
            span_context: self.ctx,
            parent_span_id: self.parent,
            parent_span_is_remote: false,
            span_kind: self.kind,
            name: Cow::Owned(self.name),
            start_time: self.times.0,
            end_time: self.times.1.max(self.times.0),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: self.status,
            instrumentation_scope: scope.clone(),
        }
    }
}

fn error(reason: &str) -> Status {
    Status::Error {
        description: Cow::Owned(reason.to_string()),
    }
}

fn context(trace: TraceId, id: SpanId) -> SpanContext {
    SpanContext::new(trace, id, TraceFlags::SAMPLED, false, TraceState::NONE)
}

/// The spans of one run: root, one per step that ran, one per request.
/// Only bounded values and masked URLs: no failure message, header or body
/// (a secret could be in them).
pub fn spans(o: &JourneyOutcome, location: &str, scope: &InstrumentationScope) -> Vec<SpanData> {
    let Some(trace) = o
        .trace_id
        .as_deref()
        .and_then(|t| TraceId::from_hex(t).ok())
    else {
        return Vec::new();
    };
    let root_id = SpanId::from_hex(&crate::trace::new_span_id()).unwrap_or(SpanId::INVALID);
    let reason = o.failure().map(|f| f.reason.as_str());
    let mut attrs = vec![
        kv("wayprobe.journey", o.journey.clone()),
        kv("wayprobe.location", location.to_string()),
        kv("wayprobe.result", o.result.as_str()),
    ];
    if let Some(r) = reason {
        attrs.push(kv("wayprobe.reason", r));
    }
    if o.attempts > 1 {
        attrs.push(kv("wayprobe.attempts", i64::from(o.attempts)));
    }
    let mut out = vec![
        Draft {
            ctx: context(trace, root_id),
            parent: SpanId::INVALID,
            kind: SpanKind::Internal,
            name: format!("journey {}", o.journey),
            times: (o.started_at, o.started_at + o.duration),
            attributes: attrs,
            events: Vec::new(),
            status: reason.map_or(Status::Ok, error),
        }
        .finish(scope),
    ];
    // Cleanup steps are part of the run's trace too (they do not change its result).
    for s in o.steps.iter().chain(&o.finally) {
        step_spans(trace, root_id, s, scope, &mut out);
    }
    out
}

fn step_spans(
    trace: TraceId,
    root: SpanId,
    s: &StepOutcome,
    scope: &InstrumentationScope,
    out: &mut Vec<SpanData>,
) {
    let (Some(id), Some(start)) = (
        s.span_id.as_deref().and_then(|i| SpanId::from_hex(i).ok()),
        s.telemetry.started_at,
    ) else {
        return;
    };
    let reason = s.failure.as_ref().map(|f| f.reason.as_str());
    let result = match s.status {
        StepStatus::Passed => "passed",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
    };
    let mut attrs = vec![
        kv("wayprobe.step", s.name.clone()),
        kv("wayprobe.step.kind", s.kind),
        kv("wayprobe.result", result),
    ];
    if let Some(r) = reason {
        attrs.push(kv("wayprobe.reason", r));
    }
    // A browser step's main document status (the last page it loaded).
    if s.kind == "browser"
        && let Some(code) = s.http_status
    {
        attrs.push(kv("http.response.status_code", i64::from(code)));
    }
    // Browser navigations and actions, each at the time it ended (they run
    // one after another). Their labels are already redacted.
    let mut events = Vec::new();
    if s.kind == "browser" {
        let mut at = start;
        for t in &s.timings {
            at += Duration::from_secs_f64(t.ms.max(0.0) / 1000.0);
            events.push(opentelemetry::trace::Event::new(
                t.name.clone(),
                at,
                vec![kv("wayprobe.duration_ms", t.ms)],
                0,
            ));
        }
    }
    out.push(
        Draft {
            ctx: context(trace, id),
            parent: root,
            kind: SpanKind::Internal,
            name: s.name.clone(),
            times: (start, start + s.duration),
            attributes: attrs,
            events,
            status: reason.map_or(Status::Unset, error),
        }
        .finish(scope),
    );
    for r in &s.telemetry.requests {
        let Ok(rid) = SpanId::from_hex(&r.span_id) else {
            continue;
        };
        let mut attrs = vec![
            kv("http.request.method", r.method.clone()),
            kv("url.full", r.url_full.clone()),
            kv("server.address", r.server_address.clone()),
        ];
        if let Some(p) = r.server_port {
            attrs.push(kv("server.port", i64::from(p)));
        }
        if let Some(st) = r.status {
            attrs.push(kv("http.response.status_code", i64::from(st)));
        }
        if let Some(e) = &r.error_type {
            attrs.push(kv("error.type", e.clone()));
        }
        let events = r
            .events
            .iter()
            .map(|(n, t)| opentelemetry::trace::Event::new(*n, *t, Vec::new(), 0))
            .collect();
        out.push(
            Draft {
                ctx: context(trace, rid),
                parent: id,
                kind: SpanKind::Client,
                name: r.method.clone(),
                times: (r.start, r.end.unwrap_or(r.start)),
                attributes: attrs,
                events,
                status: r.error_type.as_deref().map_or(Status::Unset, error),
            }
            .finish(scope),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_the_ratio_of_trace_ids() {
        let b = ratio_bound(0.25);
        let kept = (0..4000)
            .filter(|_| sampled(&crate::trace::new_trace_id(), b))
            .count();
        // 1000 expected; the bounds are ten standard deviations wide.
        assert!((730..1270).contains(&kept), "{kept}");
        assert!(!sampled(&crate::trace::new_trace_id(), ratio_bound(0.0)));
        assert!(sampled(&crate::trace::new_trace_id(), ratio_bound(1.0)));
        assert!(sampled(&format!("{}{}", "f".repeat(16), "0".repeat(16)), b));
        assert!(!sampled(
            &format!("{}{}", "0".repeat(16), "f".repeat(16)),
            b
        ));
    }

    /// A browser step's span carries the main document's status; a
    /// `finally:` step gets its span under the run's root too.
    #[test]
    fn browser_status_and_cleanup_steps_are_in_the_spans() {
        use crate::outcome::{JourneyOutcome, RunResult, StepOutcome};
        let at = SystemTime::now();
        let step = |name: &str, kind: &'static str, status: Option<u16>| {
            let mut s = StepOutcome::skipped(name, kind);
            s.span_id = Some(crate::trace::new_span_id());
            s.telemetry.started_at = Some(at);
            s.http_status = status;
            s
        };
        let o = JourneyOutcome {
            journey: "shop".into(),
            result: RunResult::Success,
            started_at: at,
            duration: Duration::from_millis(5),
            attempts: 1,
            steps: vec![step("page", "browser", Some(503))],
            finally: vec![step("empty-basket", "http", None)],
            trace_id: Some(crate::trace::new_trace_id()),
            trace_url: None,
        };
        let spans = spans(&o, "eu", &InstrumentationScope::builder("t").build());
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["journey shop", "page", "empty-basket"]);
        let status = |i: usize| {
            spans[i]
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "http.response.status_code")
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(status(1).as_deref(), Some("503"));
        assert_eq!(status(2), None);
    }

    /// The `_TRACES_` variables win over the general ones; empty is unset.
    #[test]
    fn tls_files_come_from_the_standard_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let t = TlsFiles::from_lookup(env(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/all/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces/ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/all/cert.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", " "),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/all/key.pem"),
        ]));
        assert_eq!(
            t,
            TlsFiles {
                ca: Some("/traces/ca.pem".into()),
                client_cert: Some("/all/cert.pem".into()),
                client_key: Some("/all/key.pem".into()),
            }
        );
        assert_eq!(TlsFiles::from_lookup(env(&[])), TlsFiles::default());
        assert_eq!(
            env_endpoint(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
            ]))
            .as_deref(),
            Some("http://a:4317")
        );
    }

    /// Unusable TLS files are refused at start, naming the variable and file.
    #[test]
    fn bad_tls_files_are_refused_with_their_variable() {
        let dir = std::env::temp_dir().join(format!("wayprobe-otel-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let missing = dir.join("missing.pem");
        let msg = |t: TlsFiles| t.load().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg(TlsFiles {
                ca: Some(junk.clone()),
                ..Default::default()
            }),
            format!(
                "OTEL_EXPORTER_OTLP_CERTIFICATE: cannot use `{}`: no PEM certificate in it",
                junk.display()
            )
        );
        assert!(
            msg(TlsFiles {
                ca: Some(missing.clone()),
                ..Default::default()
            })
            .starts_with(&format!(
                "OTEL_EXPORTER_OTLP_CERTIFICATE: cannot use `{}`: ",
                missing.display()
            ))
        );
        assert_eq!(
            msg(TlsFiles {
                client_cert: Some(junk.clone()),
                ..Default::default()
            }),
            "mutual TLS needs both the client certificate and its key: set OTEL_EXPORTER_OTLP_CLIENT_KEY too"
        );
        assert!(TlsFiles::default().load().is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn protocols_and_endpoints() {
        assert_eq!("grpc".parse(), Ok(Protocol::Grpc));
        assert_eq!("http/protobuf".parse(), Ok(Protocol::HttpProtobuf));
        assert!(
            "http/json"
                .parse::<Protocol>()
                .unwrap_err()
                .contains("http/protobuf")
        );
        assert_eq!(
            traces_url("http://c:4318/").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c/otlp").unwrap(),
            "https://c/otlp/v1/traces"
        );
        assert!(traces_url("c:4318").is_err());
        assert!(traces_url("ftp://c").is_err());
    }
}
