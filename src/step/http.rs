//! The HTTP step: render the request, send it (following redirects ourselves,
//! so they are counted and bounded), read the body up to a limit, check the
//! assertions, then take the captures.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::journey::{Body, HttpStep, JsonTemplate, PartValue, Step};
use crate::outcome::{Exchange, Failure, Reason, Timing};
use crate::redact::Redactor;
use crate::step::context::StepCtx;
pub use crate::step::response::{CookieInfo, Response};
use crate::template::Scope;

/// What an HTTP step produced (the caller adds timing).
#[derive(Debug, Default)]
pub struct HttpResult {
    /// `METHOD URL`, redacted.
    pub request: Option<String>,
    /// Final status.
    pub status: Option<u16>,
    /// Redirects followed.
    pub redirects: u32,
    /// Request/response pairs when verbose.
    pub exchanges: Vec<Exchange>,
    /// The failure, if any.
    pub failure: Option<Failure>,
    /// Where the time went: dns, connect (TCP), tls, ttfb, download; per hop.
    pub timings: Vec<Timing>,
    /// The values captured, redacted for display.
    pub captures: Vec<crate::outcome::Captured>,
}

/// Adds one request's phases: DNS, TCP connect and TLS handshake come from
/// the run's connector (only for a new connection, each its own duration),
/// ttfb is what remains until the headers.
fn record_phases(
    out: &mut HttpResult,
    phases: &crate::step::timing::Phases,
    to_headers: Duration,
    span: Option<&mut crate::trace::RequestSpan>,
) {
    let prefix = if out.redirects == 0 {
        String::new()
    } else {
        format!("redirect {}: ", out.redirects)
    };
    let events = phases.drain();
    // Room for exactly this request's phases, `ttfb` and `download`: the
    // status store keeps each journey's last outcome (a growing Vec would
    // keep room for 4 or 8).
    let seen = ["dns", "connect", "tls"]
        .iter()
        .filter(|n| events.iter().any(|e| e.name == **n))
        .count();
    out.timings.reserve_exact(seen + 2);
    // In the order they happen; a phase that did not happen is left out.
    let mut done = 0.0;
    // At most the three phases above: an array, not an allocation per request.
    let mut ended = [("", 0.0); 3];
    let mut n = 0;
    for name in ["dns", "connect", "tls"] {
        let mut seen = false;
        let ms: f64 = events
            .iter()
            .filter(|e| e.name == name)
            .inspect(|_| seen = true)
            .map(|e| e.ms)
            .sum();
        if seen {
            out.timings.push(Timing::new(format!("{prefix}{name}"), ms));
            done += ms;
            ended[n] = (name, done);
            n += 1;
        }
    }
    out.timings.push(Timing::new(
        format!("{prefix}ttfb"),
        (to_headers.as_secs_f64() * 1000.0 - done).max(0.0),
    ));
    // The same phases as span events, each at the time it ended.
    if let Some(span) = span {
        for &(name, at) in &ended[..n] {
            span.events.push((
                name,
                span.start + Duration::from_secs_f64(at.max(0.0) / 1000.0),
            ));
        }
        span.events.push(("first_byte", span.start + to_headers));
    }
}

/// A rendered body that can be sent more than once (307/308 redirects).
enum Prepared {
    None,
    Bytes { data: Vec<u8>, content_type: String },
    Multipart(Vec<(String, MPart)>),
}

enum MPart {
    Text(String),
    File {
        data: Vec<u8>,
        content_type: String,
        filename: String,
    },
}

impl Prepared {
    /// The body as `--verbose` shows it: text redacted and cut; binary
    /// data and files by size only.
    fn shown(&self, r: &Redactor) -> Option<String> {
        let bytes = |data: &[u8], ct: &str| match std::str::from_utf8(data) {
            Ok(t) => shown(r, t),
            Err(_) => format!("({} bytes of {ct})", data.len()),
        };
        match self {
            Prepared::None => None,
            Prepared::Bytes { data, content_type } => Some(bytes(data, content_type)),
            Prepared::Multipart(parts) => Some(
                parts
                    .iter()
                    .map(|(name, p)| match p {
                        MPart::Text(t) => shown(r, &format!("{name}={t}")),
                        MPart::File {
                            data,
                            content_type,
                            filename,
                        } => format!(
                            "{name}=@{} ({} bytes of {content_type})",
                            r.apply(filename),
                            data.len()
                        ),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }

    fn apply(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, Failure> {
        Ok(match self {
            Prepared::None => rb,
            Prepared::Bytes { data, content_type } => rb
                .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                .body(data.clone()),
            Prepared::Multipart(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for (name, p) in parts {
                    form = match p {
                        MPart::Text(t) => form.text(name.clone(), t.clone()),
                        MPart::File {
                            data,
                            content_type,
                            filename,
                        } => {
                            let part = reqwest::multipart::Part::bytes(data.clone())
                                .file_name(filename.clone())
                                .mime_str(content_type)
                                .map_err(|e| {
                                    Failure::new(
                                        Reason::Template,
                                        format!("bad content type `{content_type}`: {e}"),
                                    )
                                })?;
                            form.part(name.clone(), part)
                        }
                    };
                }
                rb.multipart(form)
            }
        })
    }
}

fn render(
    t: &crate::template::Template,
    scope: &Arc<Scope>,
    what: &str,
) -> Result<String, Failure> {
    t.render(scope)
        .map(|s| s.into_owned())
        .map_err(|m| Failure::new(Reason::Template, format!("{what}: {m}")).at(t.span()))
}

fn render_json(j: &JsonTemplate, scope: &Arc<Scope>) -> Result<Value, Failure> {
    Ok(match j {
        JsonTemplate::Null => Value::Null,
        JsonTemplate::Bool(b) => Value::Bool(*b),
        JsonTemplate::Number(n) => Value::Number(n.clone()),
        JsonTemplate::String(t) => Value::String(render(t, scope, "json body")?),
        JsonTemplate::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_json(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        JsonTemplate::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, scope)?)))
                .collect::<Result<_, Failure>>()?,
        ),
    })
}

async fn prepare(body: Option<&Body>, scope: &Arc<Scope>) -> Result<Prepared, Failure> {
    Ok(match body {
        None => Prepared::None,
        Some(Body::Json(j)) => Prepared::Bytes {
            data: serde_json::to_vec(&render_json(j, scope)?).unwrap_or_default(),
            content_type: "application/json".into(),
        },
        Some(Body::Form(fields)) => {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                ser.append_pair(k, &render(v, scope, "form field")?);
            }
            Prepared::Bytes {
                data: ser.finish().into_bytes(),
                content_type: "application/x-www-form-urlencoded".into(),
            }
        }
        Some(Body::Raw {
            content,
            content_type,
        }) => Prepared::Bytes {
            data: render(content, scope, "raw body")?.into_bytes(),
            content_type: render(content_type, scope, "content_type")?,
        },
        Some(Body::Multipart(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                let part = match &p.value {
                    PartValue::Text(t) => MPart::Text(render(t, scope, "multipart field")?),
                    PartValue::File {
                        path,
                        content_type,
                        filename,
                    } => {
                        let data = tokio::fs::read(path).await.map_err(|e| {
                            Failure::new(
                                Reason::Internal,
                                format!("cannot read upload `{}`: {e}", path.display()),
                            )
                        })?;
                        MPart::File {
                            data,
                            content_type: content_type
                                .clone()
                                .unwrap_or_else(|| "application/octet-stream".into()),
                            filename: filename.clone().unwrap_or_else(|| {
                                path.file_name()
                                    .map(|f| f.to_string_lossy().to_string())
                                    .unwrap_or_default()
                            }),
                        }
                    }
                };
                out.push((p.name.clone(), part));
            }
            Prepared::Multipart(out)
        }
    })
}

/// Maps an error of sending a request or reading its body to a reason and a
/// short message (not yet redacted; the caller names the URL). The phase
/// that failed to connect is known exactly (the run's connector says it);
/// the rest is read from the error chain.
pub fn classify(e: &(dyn std::error::Error + 'static), reading_body: bool) -> (Reason, String) {
    use crate::step::timing::ConnectError;
    let mut chain: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    let mut cur = e.source();
    while let Some(s) = cur {
        chain.push(s);
        cur = s.source();
    }
    let detail = chain.last().map(|c| c.to_string()).unwrap_or_default();
    let all = chain
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .to_ascii_lowercase();
    let connect = chain.iter().find_map(|c| c.downcast_ref::<ConnectError>());
    let hyper_err = chain.iter().find_map(|c| c.downcast_ref::<hyper::Error>());
    let reason = match connect {
        Some(ConnectError::Dns(_)) => Reason::Dns,
        Some(ConnectError::Tls(_)) => Reason::Tls,
        Some(ConnectError::Tcp(_) | ConnectError::Proxy(_)) => Reason::Connect,
        Some(ConnectError::NoHost) => Reason::Protocol,
        None if all.contains("certificate")
            || all.contains("handshake")
            || all.contains("peer sent")
            || all.contains("received fatal alert")
            || all.contains("corrupt message") =>
        {
            Reason::Tls
        }
        None if all.contains("reset")
            || all.contains("closed before")
            || all.contains("unexpected eof")
            || all.contains("incomplete")
            || all.contains("broken pipe")
            || all.contains("end of file")
            || hyper_err.is_some_and(|h| h.is_incomplete_message() || h.is_canceled()) =>
        {
            Reason::Reset
        }
        None if hyper_err.is_some_and(|h| h.is_parse() || h.is_parse_status() || h.is_user()) => {
            Reason::Protocol
        }
        None if reading_body => Reason::Reset,
        None => Reason::Internal,
    };
    let what = reason.network_summary().unwrap_or("request failed");
    let detail = match reason {
        Reason::Tls => crate::tls::explain(e).unwrap_or(detail),
        _ => detail,
    };
    (reason, format!("{what}: {detail}"))
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The cookies `expect: cookies:` and `capture: cookie:` judge: those the
/// final response set (as stored, on its host), then those the jar would send
/// to the final URL, most specific path first, so a same-named cookie of
/// another host or path never stands in for the one that applies.
fn cookies_for(
    jar: &reqwest_cookie_store::CookieStoreMutex,
    url: &url::Url,
    set_cookies: &[String],
) -> Vec<CookieInfo> {
    let store = match jar.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    let info = |c: &cookie_store::Cookie<'_>| CookieInfo {
        name: c.name().to_string(),
        value: c.value().to_string(),
        secure: c.secure().unwrap_or(false),
        http_only: c.http_only().unwrap_or(false),
        same_site: c.same_site().map(|s| s.to_string()),
        path: c.path().map(str::to_string),
        domain: c.domain().map(str::to_string),
    };
    let mut out: Vec<CookieInfo> = Vec::new();
    for raw in set_cookies {
        let Ok(set) = cookie_store::RawCookie::parse(raw.as_str()) else {
            continue;
        };
        let stored = store.iter_unexpired().find(|c| {
            c.name() == set.name()
                && c.domain.matches(url)
                && set.path().is_none_or(|p| String::from(&c.path) == p)
        });
        if let Some(c) = stored {
            out.push(info(c));
        }
    }
    let mut applying = store.matches(url);
    // Longest path first (RFC 6265 §5.4 order); ties by name and value, so
    // the jar's hash order never decides.
    applying.sort_by(|a, b| {
        let len = |c: &cookie_store::Cookie<'_>| String::from(&c.path).len();
        len(b)
            .cmp(&len(a))
            .then_with(|| a.name().cmp(b.name()))
            .then_with(|| a.value().cmp(b.value()))
    });
    for c in applying {
        if !out
            .iter()
            .any(|o| o.name == c.name() && o.path.as_deref() == c.path() && o.value == c.value())
        {
            out.push(info(c));
        }
    }
    out
}

/// Characters of a cookie or request body `--verbose` shows.
const VERBOSE_CHARS: usize = 1000;

/// A cookie or body for `--verbose`: secrets and credential fields masked,
/// as every output is, then cut.
fn shown(r: &Redactor, text: &str) -> String {
    crate::step::excerpt::shape(r, text, VERBOSE_CHARS)
}

/// The cookies the run's jar sends to `url` (added after the step's headers
/// are listed, so they are not among them), for `--verbose`.
fn sent_cookies(
    jar: &reqwest_cookie_store::CookieStoreMutex,
    url: &url::Url,
    r: &Redactor,
) -> Vec<String> {
    let store = match jar.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    store
        .get_request_values(url)
        .map(|(name, _)| shown(r, &format!("{name}={}", crate::redact::MASK)))
        .collect()
}

/// A `Set-Cookie` value for `--verbose`: the cookie's name and attributes,
/// never its value (a session id is a credential, as the `Cookie` and
/// `Set-Cookie` headers are masked by name).
fn set_cookie_shown(r: &Redactor, header: &str) -> String {
    let (pair, attrs) = header
        .split_once(';')
        .map_or((header, None), |(p, a)| (p, Some(a)));
    let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
    let masked = match attrs {
        Some(a) => format!("{name}={};{a}", crate::redact::MASK),
        None => format!("{name}={}", crate::redact::MASK),
    };
    shown(r, &masked)
}

fn headers_of(h: &reqwest::header::HeaderMap, r: &Redactor) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes());
            (k.as_str().to_string(), r.header(k.as_str(), &v))
        })
        .collect()
}

/// Whether a header carries credentials: by name (`Authorization`,
/// `Proxy-Authorization`, a hand-written `Cookie`, API-key headers), or
/// because its value holds a secret of the run.
fn is_credential(name: &HeaderName, value: &HeaderValue, redactor: &Redactor) -> bool {
    crate::redact::is_sensitive_header(name.as_str())
        || value.to_str().map_or(true, |v| redactor.apply(v) != v)
}

/// The redirect policy for credentials, as curl, reqwest and the Fetch
/// standard apply it: when a redirect changes scheme, host or port, headers
/// that carry credentials are dropped (for the rest of the step), unless the
/// step lists them in `keep_headers_across_origins`; and they never follow a
/// redirect from HTTPS to plain HTTP, listed or not. The run's cookie jar
/// sends its own cookies by their domain and path rules.
fn strip_credentials(
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    from: &url::Url,
    to: &url::Url,
    keep: &[String],
    redactor: &Redactor,
) {
    if from.origin() == to.origin() {
        return;
    }
    let downgrade = from.scheme() == "https" && to.scheme() == "http";
    headers.retain(|(k, v)| {
        !is_credential(k, v, redactor) || (!downgrade && keep.iter().any(|n| n == k.as_str()))
    });
}

/// Decodes a body by its `Content-Encoding` (gzip, deflate, br), reading at
/// most `max` decoded bytes, so a compression bomb fails with
/// `body_too_large`. Other codings are judged as sent.
fn decompress(encoding: &str, raw: bytes::Bytes, max: u64) -> Result<bytes::Bytes, Failure> {
    use std::io::Read;
    let reader: Box<dyn Read> = match encoding {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&raw[..])),
        "br" => Box::new(brotli_decompressor::Decompressor::new(&raw[..], 64 * 1024)),
        _ => return Ok(raw),
    };
    let mut out = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| {
            Failure::new(
                Reason::InvalidBody,
                format!("the {encoding} body cannot be decoded: {e}"),
            )
        })?;
    if out.len() as u64 > max {
        return Err(Failure::new(
            Reason::BodyTooLarge,
            format!("decoded body exceeds max_body ({max} bytes); stopped decoding"),
        ));
    }
    Ok(out.into())
}

/// Ends the client span of the request being sent: its status, if headers
/// came back, and its `error.type`, if it failed.
fn end_request(ctx: &mut StepCtx, status: Option<u16>, error_type: Option<String>) {
    if let Some(r) = ctx.trace.request() {
        r.end = Some(SystemTime::now());
        r.status = status.or(r.status);
        r.error_type = error_type.or(r.error_type.take());
    }
}

/// reqwest builds the requests (bodies, forms, multipart); each run's own
/// client sends them. The builder is made once and never sends anything.
fn request_builder() -> Result<&'static reqwest::Client, Failure> {
    static BUILDER: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    BUILDER
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Failure::new(
                Reason::Internal,
                format!("cannot build the HTTP request builder: {e}"),
            )
        })
}

/// Runs one HTTP step. Assertions are checked before captures, so a wrong
/// status is reported as such rather than as a missing capture.
pub async fn execute(step: &Step, http: &HttpStep, ctx: &mut StepCtx) -> HttpResult {
    let mut out = HttpResult::default();
    let started = Instant::now();
    let mut redactor = ctx.redactor.clone();
    // A failure that knows its place (a template) keeps it; others are the step's.
    let failure = |f: Failure| {
        if f.span.is_unknown() {
            f.at(step.span)
        } else {
            f
        }
    };

    let url = match render(&http.url, &ctx.scope, "url") {
        Ok(u) => u,
        Err(f) => {
            out.failure = Some(failure(f));
            return out;
        }
    };
    let mut url = match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(u) => {
            out.failure = Some(failure(Failure::new(
                Reason::Template,
                redactor.apply(&format!(
                    "unsupported URL scheme `{}` in `{url}`",
                    u.scheme()
                )),
            )));
            return out;
        }
        Err(e) => {
            out.failure = Some(failure(Failure::new(
                Reason::Template,
                redactor.apply(&format!("invalid URL `{url}`: {e}")),
            )));
            return out;
        }
    };
    // A password in the URL (`https://user:pw@host/`) is a secret of the
    // run from here on: the request line hides it, and so must every
    // output that shows it again, such as a server echoing the
    // `Authorization: Basic` header the client made of it.
    if let Some(pw) = url.password() {
        let pw = percent_encoding::percent_decode_str(pw).decode_utf8_lossy();
        ctx.redactor.add(&pw);
        redactor = ctx.redactor.clone();
    }
    if !http.query.is_empty() {
        let mut pairs = Vec::new();
        for (k, v) in &http.query {
            match render(v, &ctx.scope, "query") {
                Ok(v) => pairs.push((k.clone(), v)),
                Err(f) => {
                    out.failure = Some(failure(f));
                    return out;
                }
            }
        }
        url.query_pairs_mut().extend_pairs(pairs);
    }
    ctx.trace.called(&url);
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (k, v) in &http.headers {
        let value = match render(v, &ctx.scope, "header") {
            Ok(v) => v,
            Err(f) => {
                out.failure = Some(failure(f));
                return out;
            }
        };
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.push((n, v));
            }
            _ => {
                out.failure = Some(failure(Failure::new(
                    Reason::Template,
                    format!("header `{k}` has an invalid value"),
                )));
                return out;
            }
        }
    }
    let body = match prepare(http.body.as_ref(), &ctx.scope).await {
        Ok(b) => b,
        Err(f) => {
            out.failure = Some(failure(f));
            return out;
        }
    };

    let mut method =
        reqwest::Method::from_bytes(http.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    // Query values and URL passwords masked, as in every message.
    out.request = Some(format!(
        "{method} {}",
        crate::step::excerpt::url(&redactor, url.as_str())
    ));
    let builder = match request_builder() {
        Ok(b) => b,
        Err(f) => {
            out.failure = Some(failure(f));
            return out;
        }
    };
    let mut send_body = true;
    let resp = loop {
        // Each hop is a request of its own: its own client span and traceparent.
        ctx.trace.start_request(method.as_str(), &url, &redactor);
        let mut rb = builder.request(method.clone(), url.clone());
        for (k, v) in &headers {
            rb = rb.header(k, v);
        }
        // Per hop: a redirect to an origin the journey does not list gets none.
        // A `traceparent` the step writes itself is left alone.
        if !headers.iter().any(|(k, _)| k == "traceparent")
            && let Some((tp, ts)) = ctx.trace.headers_for(&url)
        {
            rb = rb.header("traceparent", tp);
            if let Some(ts) = ts {
                rb = rb.header("tracestate", ts);
            }
        }
        if send_body {
            rb = match body.apply(rb) {
                Ok(rb) => rb,
                Err(f) => {
                    out.failure = Some(failure(f));
                    return out;
                }
            };
        }
        // Built by reqwest, sent by the run's own client as an `http::Request`.
        let mut req = match rb
            .build()
            .and_then(http::Request::<reqwest::Body>::try_from)
        {
            Ok(r) => r,
            Err(e) => {
                out.failure = Some(failure(Failure::new(
                    Reason::Template,
                    redactor.apply(&format!("cannot build request: {e}")),
                )));
                return out;
            }
        };
        let mut exchange = ctx.verbose.then(|| Exchange {
            // Query values and URL passwords masked, as in every message.
            request: format!(
                "{} {}",
                req.method(),
                crate::step::excerpt::url(&redactor, url.as_str())
            ),
            request_headers: headers_of(req.headers(), &redactor),
            request_cookies: sent_cookies(&ctx.jar, &url, &redactor),
            request_body: send_body.then(|| body.shown(&redactor)).flatten(),
            ..Default::default()
        });
        // What every request carries unless the step writes its own, and the
        // run's cookies (after the exchange above, which lists them apart).
        let h = req.headers_mut();
        for (k, v) in [
            (reqwest::header::ACCEPT, "*/*"),
            (reqwest::header::USER_AGENT, crate::run::USER_AGENT),
            (reqwest::header::ACCEPT_ENCODING, "gzip, deflate, br"),
        ] {
            h.entry(k).or_insert(HeaderValue::from_static(v));
        }
        if !h.contains_key(reqwest::header::COOKIE)
            && let Some(c) = reqwest::cookie::CookieStore::cookies(&*ctx.jar, &url)
        {
            h.insert(reqwest::header::COOKIE, c);
        }
        if let Some(a) = crate::step::timing::proxy_auth(req.uri()) {
            req.headers_mut()
                .entry(reqwest::header::PROXY_AUTHORIZATION)
                .or_insert(a);
        }
        let sent = Instant::now();
        let resp = match ctx.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                // A failed connection's phases belong to no later request.
                ctx.phases.drain();
                let (reason, msg) = classify(&e, false);
                end_request(ctx, None, Some(reason.as_str().to_string()));
                // Which request failed: a run reaches many hosts.
                let msg = format!(
                    "{msg} ({method} {})",
                    crate::step::excerpt::url(&redactor, url.as_str())
                );
                out.failure = Some(failure(Failure::new(reason, redactor.apply(&msg))));
                return out;
            }
        };
        record_phases(&mut out, &ctx.phases, sent.elapsed(), ctx.trace.request());
        // Every answer's cookies go into the run's jar, redirects' too.
        reqwest::cookie::CookieStore::set_cookies(
            &*ctx.jar,
            &mut resp.headers().get_all(reqwest::header::SET_COOKIE).iter(),
            &url,
        );
        let status = resp.status().as_u16();
        // OpenTelemetry's HTTP client convention: a 4xx/5xx answer is an
        // error of the request, named by its status code.
        end_request(
            ctx,
            Some(status),
            (status >= 400).then(|| status.to_string()),
        );
        if let Some(x) = exchange.as_mut() {
            x.response = format!("{:?} {}", resp.version(), resp.status());
            x.response_headers = headers_of(resp.headers(), &redactor);
            x.response_cookies = resp
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .map(|v| set_cookie_shown(&redactor, &String::from_utf8_lossy(v.as_bytes())))
                .collect();
        }
        out.exchanges.extend(exchange);
        if http.follow_redirects && is_redirect(status) {
            let Some(loc) = resp.headers().get(reqwest::header::LOCATION) else {
                break resp;
            };
            if out.redirects >= http.max_redirects {
                out.status = Some(status);
                out.failure = Some(failure(Failure::new(
                    Reason::Redirect,
                    redactor.apply(&format!(
                        "more than {} redirects (last: {status} to `{}`)",
                        http.max_redirects,
                        String::from_utf8_lossy(loc.as_bytes())
                    )),
                )));
                return out;
            }
            let next = std::str::from_utf8(loc.as_bytes())
                .ok()
                .and_then(|l| url.join(l).ok());
            let Some(next) = next.filter(|u| matches!(u.scheme(), "http" | "https")) else {
                out.status = Some(status);
                out.failure = Some(failure(Failure::new(
                    Reason::Redirect,
                    "redirect to an invalid Location".to_string(),
                )));
                return out;
            };
            // 303 always, and 301/302 after a POST, become GET without a body, as browsers do.
            if status == 303
                || (matches!(status, 301 | 302)
                    && method != reqwest::Method::GET
                    && method != reqwest::Method::HEAD)
            {
                method = reqwest::Method::GET;
                send_body = false;
            }
            strip_credentials(&mut headers, &url, &next, &http.keep_headers, &redactor);
            url = next;
            out.redirects += 1;
            continue;
        }
        break resp;
    };

    let (parts, mut incoming) = resp.into_parts();
    let status = parts.status.as_u16();
    out.status = Some(status);
    let final_url = url;
    let resp_headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if let Some(len) = hyper::body::Body::size_hint(&incoming).exact()
        && len > http.max_body
    {
        out.failure = Some(failure(Failure::new(
            Reason::BodyTooLarge,
            format!(
                "body of {len} bytes exceeds max_body ({} bytes)",
                http.max_body
            ),
        )));
        return out;
    }
    let mut buf = BytesMut::new();
    let reading = Instant::now();
    loop {
        match http_body_util::BodyExt::frame(&mut incoming).await {
            Some(Ok(frame)) => {
                // Trailers carry no body bytes.
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                if (buf.len() + chunk.len()) as u64 > http.max_body {
                    out.failure = Some(failure(Failure::new(
                        Reason::BodyTooLarge,
                        format!(
                            "body exceeds max_body ({} bytes); stopped reading",
                            http.max_body
                        ),
                    )));
                    return out;
                }
                buf.extend_from_slice(&chunk);
            }
            None => {
                out.timings.push(Timing::new(
                    "download",
                    reading.elapsed().as_secs_f64() * 1000.0,
                ));
                if let Some(r) = ctx.trace.request() {
                    r.end = Some(SystemTime::now());
                }
                break;
            }
            Some(Err(e)) => {
                let (reason, msg) = classify(&e, true);
                end_request(ctx, Some(status), Some(reason.as_str().to_string()));
                out.failure = Some(failure(Failure::new(
                    reason,
                    redactor.apply(&format!("while reading the body: {msg}")),
                )));
                return out;
            }
        }
    }
    let encoding = parts
        .headers
        .get(reqwest::header::CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        });
    let raw = buf.freeze();
    let max = http.max_body;
    let body = match encoding {
        None => Ok(raw),
        Some(enc) => tokio::task::spawn_blocking(move || decompress(&enc, raw, max))
            .await
            .unwrap_or_else(|e| {
                Err(Failure::new(
                    Reason::Internal,
                    format!("decompressing failed: {e}"),
                ))
            }),
    };
    let body = match body {
        Ok(b) => b,
        Err(f) => {
            out.failure = Some(failure(f));
            return out;
        }
    };
    let set_cookies: Vec<String> = resp_headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect();
    let mut response = Response::new(status, final_url.to_string(), resp_headers, body);
    response.elapsed = started.elapsed();
    response.cookies = cookies_for(&ctx.jar, &final_url, &set_cookies);
    response.deadline = Some(ctx.deadline);
    match crate::step::judge::judge(step, http, response, &ctx.scope, &redactor).await {
        Ok(values) => {
            for (c, v) in step.captures.iter().zip(values) {
                out.captures.push(ctx.set_capture(c, v));
            }
        }
        Err(f) => out.failure = Some(f),
    }
    out
}

#[cfg(test)]
mod tests;
