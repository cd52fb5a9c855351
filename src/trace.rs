//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): each run is
//! one trace, each step one span, and every HTTP request a step sends to one
//! of the journey's origins carries a `traceparent` naming that step's span,
//! so the target's backend joins the run's trace.

use std::collections::BTreeSet;
use std::time::SystemTime;

use reqwest::header::HeaderValue;

use crate::journey::TraceSettings;

/// Requests (hops) one step records as spans; `max_redirects` is bounded
/// well below this.
const MAX_REQUESTS_PER_STEP: usize = 64;

/// Fills `buf` with random bytes, never all zero (an all-zero id is invalid).
fn random_id<const N: usize>() -> [u8; N] {
    use aws_lc_rs::rand::SecureRandom;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut buf = [0u8; N];
    loop {
        // The system RNG only fails when the OS has no entropy source at all;
        // a time-derived id keeps ids unique enough to find a run then.
        if rng.fill(&mut buf).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes();
            for (b, t) in buf.iter_mut().zip(t.iter().cycle()) {
                *b = *t;
            }
        }
        if buf.iter().any(|b| *b != 0) {
            return buf;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A run's trace id: 32 lower-case hex digits, as in `traceparent`.
pub fn new_trace_id() -> String {
    hex(&random_id::<16>())
}

/// A span id: 16 lower-case hex digits, as in `traceparent`.
pub fn new_span_id() -> String {
    hex(&random_id::<8>())
}

/// One HTTP request a step sent (one per redirect hop): the OpenTelemetry
/// client span whose id its `traceparent` carried. Holds only what may be
/// shown: the URL has no user info and every query value masked, and the
/// run's secrets are masked out of it.
#[derive(Debug, Clone)]
pub struct RequestSpan {
    /// The client span's id (16 hex digits), the parent id in the request's
    /// `traceparent`.
    pub span_id: String,
    /// When the request was sent.
    pub start: SystemTime,
    /// When its response was read, or it failed; `None` while in flight.
    pub end: Option<SystemTime>,
    /// `http.request.method`.
    pub method: String,
    /// `url.full`, masked (see [`masked_url`]).
    pub url_full: String,
    /// `server.address`: the URL's host.
    pub server_address: String,
    /// `server.port`: the URL's port, or its scheme's default.
    pub server_port: Option<u16>,
    /// `http.response.status_code`, once headers came back.
    pub status: Option<u16>,
    /// `error.type`: the bounded failure reason (`dns`, `timeout`...) or the
    /// status code of a 4xx/5xx answer.
    pub error_type: Option<String>,
    /// Phase events (`dns`, `connect`, `tls`, `first_byte`) at the time each ended.
    pub events: Vec<(&'static str, SystemTime)>,
}

/// The URL as spans may show it (OpenTelemetry's `url.full` guidance): no
/// user info, no fragment, every query value replaced by `REDACTED` (keys
/// kept), and then every secret of the run masked.
pub fn masked_url(url: &url::Url, redactor: &crate::redact::Redactor) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut q = u.query_pairs_mut();
        q.clear();
        for k in keys {
            q.append_pair(&k, "REDACTED");
        }
    }
    redactor.apply(u.as_str())
}

/// The trace state of one run: its id, the current step's span and the
/// journey's propagation rule.
#[derive(Debug, Clone)]
pub struct RunTrace {
    /// 32 hex digits.
    pub trace_id: String,
    /// The span of the step being run (16 hex digits), set by `step::run`.
    pub step_span: String,
    /// The client span of the HTTP request being sent, if any: the parent id
    /// its `traceparent` names (browser steps' requests name the step span).
    request_span: Option<String>,
    /// The current step's requests, taken by `step::run` when it ends.
    requests: Vec<RequestSpan>,
    settings: TraceSettings,
    /// Origins (`scheme://host:port`) the run's steps call (their URLs,
    /// before redirects); the default `propagate_to`.
    called: BTreeSet<String>,
}

impl RunTrace {
    /// A new trace for one run of a journey with these settings.
    pub fn new(settings: &TraceSettings) -> Self {
        Self {
            trace_id: new_trace_id(),
            step_span: new_span_id(),
            request_span: None,
            requests: Vec::new(),
            settings: settings.clone(),
            called: BTreeSet::new(),
        }
    }

    /// Starts a new step span and returns its id.
    pub fn start_step(&mut self) -> String {
        self.step_span = new_span_id();
        self.request_span = None;
        self.requests.clear();
        self.step_span.clone()
    }

    /// Starts the client span of an HTTP request to `url` (a step's request
    /// or one redirect hop); [`Self::headers_for`] names it from now on.
    pub fn start_request(
        &mut self,
        method: &str,
        url: &url::Url,
        redactor: &crate::redact::Redactor,
    ) {
        let id = new_span_id();
        self.request_span = Some(id.clone());
        // A step sends a bounded number of requests (max_redirects); still,
        // never let a run's span buffer grow without bound.
        if self.requests.len() >= MAX_REQUESTS_PER_STEP {
            return;
        }
        self.requests.push(RequestSpan {
            span_id: id,
            start: SystemTime::now(),
            end: None,
            method: method.to_string(),
            url_full: masked_url(url, redactor),
            server_address: url.host_str().unwrap_or_default().to_string(),
            server_port: url.port_or_known_default(),
            status: None,
            error_type: None,
            events: Vec::new(),
        });
    }

    /// The request being sent, to note its phases, status and end.
    pub fn request(&mut self) -> Option<&mut RequestSpan> {
        let id = self.request_span.as_deref()?;
        self.requests.iter_mut().rev().find(|r| r.span_id == id)
    }

    /// Takes the step's request spans; one still in flight (the step ran
    /// out of time) ends now with `error_type`.
    pub fn take_requests(&mut self, error_type: Option<&str>) -> Vec<RequestSpan> {
        self.request_span = None;
        let now = SystemTime::now();
        let mut out = std::mem::take(&mut self.requests);
        for r in &mut out {
            if r.end.is_none() {
                r.end = Some(now);
                if r.error_type.is_none() {
                    r.error_type = error_type.map(str::to_string);
                }
            }
        }
        out
    }

    /// Notes an origin a step calls (its URL, before redirects), which the
    /// default propagation rule trusts.
    pub fn called(&mut self, url: &url::Url) {
        // Allocates only for an origin not seen before (each step's URL is
        // noted before the run and again when it is sent).
        if !self.called.iter().any(|o| same_origin(url, o)) {
            self.called.insert(url.origin().ascii_serialization());
        }
    }

    /// The origins requests get trace headers for (`propagate_to`, or the
    /// origins the steps call); none when tracing is off.
    pub fn origins(&self) -> Vec<String> {
        if !self.settings.enabled {
            return Vec::new();
        }
        match &self.settings.propagate_to {
            Some(list) => list.clone(),
            None => self.called.iter().cloned().collect(),
        }
    }

    /// The `traceparent` and `tracestate` values for a request to `url`, or
    /// `None` when tracing is off or the origin is not one the journey
    /// propagates to (third parties never see the run's ids).
    pub fn headers_for(&self, url: &url::Url) -> Option<(HeaderValue, Option<HeaderValue>)> {
        if !self.settings.enabled {
            return None;
        }
        let allowed = match &self.settings.propagate_to {
            Some(list) => list.iter().any(|o| same_origin(url, o)),
            None => self.called.iter().any(|o| same_origin(url, o)),
        };
        if !allowed {
            return None;
        }
        // Sampled: wayprobe decides at the end of the run (failed runs are
        // always kept), so a backend should keep its side too.
        let parent = self.request_span.as_deref().unwrap_or(&self.step_span);
        // Written on the stack: the header value is the only allocation.
        let mut buf = [0u8; 128];
        let n = {
            let mut w = &mut buf[..];
            std::io::Write::write_fmt(&mut w, format_args!("00-{}-{parent}-01", self.trace_id))
                .ok()?;
            128 - w.len()
        };
        let tp = HeaderValue::from_bytes(&buf[..n]).ok()?;
        let ts = self
            .settings
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok());
        Some((tp, ts))
    }
}

/// Whether `origin` is `url`'s origin as `url::Origin::ascii_serialization`
/// writes it (`scheme://host`, then `:port` unless it is the scheme's
/// default), compared without building that string for HTTP(S) URLs.
fn same_origin(url: &url::Url, origin: &str) -> bool {
    let (scheme @ ("http" | "https"), Some(host)) = (url.scheme(), url.host_str()) else {
        return url.origin().ascii_serialization() == origin;
    };
    let Some(rest) = origin
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .and_then(|r| r.strip_prefix(host))
    else {
        return false;
    };
    // The url crate leaves out a port that is the scheme's default, as the
    // origin's serialization does.
    match url.port() {
        None => rest.is_empty(),
        Some(p) => {
            let mut buf = [0u8; 6];
            let mut w = &mut buf[..];
            let _ = std::io::Write::write_fmt(&mut w, format_args!(":{p}"));
            let n = 6 - w.len();
            rest.as_bytes() == &buf[..n]
        }
    }
}

/// Whether `s` is a valid W3C `tracestate` value: 1 to 32 comma-separated
/// `key=value` members, keys and values as the specification restricts them.
pub fn valid_tracestate(s: &str) -> bool {
    let members: Vec<&str> = s.split(',').map(str::trim).collect();
    if members.is_empty() || members.len() > 32 {
        return false;
    }
    let mut keys = BTreeSet::new();
    members.iter().all(|m| {
        let Some((k, v)) = m.split_once('=') else {
            return false;
        };
        let key_ok = {
            let (tenant, system) = match k.split_once('@') {
                Some((t, s)) => (Some(t), s),
                None => (None, k),
            };
            let part = |p: &str, max: usize, first_digit: bool| {
                !p.is_empty()
                    && p.len() <= max
                    && p.chars().next().is_some_and(|c| {
                        c.is_ascii_lowercase() || (first_digit && c.is_ascii_digit())
                    })
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-*/".contains(c))
            };
            match tenant {
                Some(t) => part(t, 241, true) && part(system, 14, false),
                None => part(system, 256, false),
            }
        };
        let value_ok = !v.is_empty()
            && v.len() <= 256
            && !v.ends_with(' ')
            && v.chars()
                .all(|c| (' '..='~').contains(&c) && c != ',' && c != '=');
        key_ok && value_ok && keys.insert(k)
    })
}

/// Renders `--trace-url-template` for a trace id (`{trace_id}` replaced).
pub fn trace_url(template: &str, trace_id: &str) -> String {
    template.replace("{trace_id}", trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(propagate_to: Option<Vec<&str>>) -> TraceSettings {
        TraceSettings {
            enabled: true,
            propagate_to: propagate_to.map(|l| l.into_iter().map(String::from).collect()),
            tracestate: Some("shop=probe".into()),
        }
    }

    /// The allocation-free comparison agrees with the url crate's origin
    /// serialization, default ports, IPv6, user info and other schemes included.
    #[test]
    fn same_origin_is_the_url_crates_origin() {
        let urls = [
            "https://shop.example/cart",
            "https://shop.example:443/pay",
            "https://shop.example:8443/pay",
            "http://shop.example:80/",
            "http://127.0.0.1:8080/x?q=1",
            "http://[::1]:9/",
            "https://user:pw@shop.example/",
            "ws://shop.example/socket",
            "file:///etc/hosts",
            "http://xn--bcher-kva.example/",
        ];
        let origins = [
            "https://shop.example",
            "https://shop.example:443",
            "https://shop.example:8443",
            "https://shop.example:844",
            "https://shop.example:84430",
            "http://shop.example",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:808",
            "http://[::1]:9",
            "ws://shop.example",
            "null",
            "http://xn--bcher-kva.example",
            "https://shop.example.evil",
        ];
        for u in urls {
            let u = url::Url::parse(u).unwrap();
            for o in origins {
                assert_eq!(
                    same_origin(&u, o),
                    u.origin().ascii_serialization() == o,
                    "{u} vs {o}"
                );
            }
        }
    }

    #[test]
    fn ids_are_hex_of_the_w3c_length_and_differ() {
        let (a, b) = (new_trace_id(), new_trace_id());
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert_eq!(new_span_id().len(), 16);
    }

    #[test]
    fn headers_go_only_to_listed_or_called_origins() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let mut t = RunTrace::new(&settings(None));
        assert!(t.headers_for(&u("https://shop.example/")).is_none());
        t.called(&u("https://shop.example/cart"));
        let span = t.start_step();
        let (tp, ts) = t.headers_for(&u("https://shop.example:443/pay")).unwrap();
        assert_eq!(tp, format!("00-{}-{span}-01", t.trace_id).as_str());
        assert_eq!(ts.unwrap(), "shop=probe");
        assert!(t.headers_for(&u("http://shop.example/")).is_none());
        assert!(t.headers_for(&u("https://cdn.example/")).is_none());

        let t = RunTrace::new(&settings(Some(vec!["https://api.example"])));
        assert!(t.headers_for(&u("https://api.example/x")).is_some());
        assert!(t.headers_for(&u("https://shop.example/")).is_none());

        let off = RunTrace::new(&TraceSettings {
            enabled: false,
            ..settings(None)
        });
        assert!(off.headers_for(&u("https://api.example/")).is_none());
    }

    #[test]
    fn tracestate_follows_the_w3c_grammar() {
        for ok in [
            "shop=probe",
            "a=1,b@tenant-sys=x y",
            "t61rcwkgmz@fw=00f067aa0ba902b7",
        ] {
            assert!(valid_tracestate(ok), "{ok}");
        }
        for bad in [
            "", "Shop=1", "a", "a=", "a=1,a=2", "a=b,c", "a=x,", "a=\u{e9}",
        ] {
            assert!(!valid_tracestate(bad), "{bad}");
        }
    }
}
