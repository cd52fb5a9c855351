//! The run's trace context on the page's own requests, by request
//! interception over the Chrome DevTools protocol (the session's
//! `goog:chromeOptions.debuggerAddress`, the page target's websocket).
//!
//! Only requests to the journey's origins are paused (`Fetch.enable` with
//! one URL pattern per origin), and each continues with the run's
//! `traceparent` naming the browser step's span, checked again per request
//! with the same rule as HTTP steps ([`crate::trace::RunTrace::headers_for`]);
//! requests to other origins (analytics, CDNs) are never paused and never
//! carry it. `Network.setExtraHTTPHeaders` would send it to every origin.
//!
//! A driver that exposes no DevTools address (a remote grid) costs only
//! the propagation: the session works as before, and a warning says so.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::trace::RunTrace;

/// How long a DevTools command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Patterns the page is intercepted for, at most (the journey's origins).
const MAX_ORIGINS: usize = 64;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One session's DevTools connection and interception state.
pub struct Interceptor {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: Mutex<u64>,
    /// The current step's trace (its span, the run's origins).
    trace: Arc<Mutex<Option<RunTrace>>>,
    /// Origins an intercept was added for.
    intercepted: Mutex<BTreeSet<String>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Interceptor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor").finish_non_exhaustive()
    }
}

/// The DevTools form of a header.
fn header(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// A `Fetch.enable` pattern for every request to `origin`
/// (`scheme://host[:port]`, serialized as URLs are: no default port).
fn pattern(origin: &str) -> Value {
    json!({"urlPattern": format!("{origin}/*"), "requestStage": "Request"})
}

/// The headers a paused request continues with: its own, plus the run's
/// trace headers when its origin is one of the journey's and the page did
/// not set a `traceparent` itself. `None`: continue unchanged.
fn continued_headers(trace: Option<&RunTrace>, request: &Value) -> Option<Vec<Value>> {
    let url = url::Url::parse(request["url"].as_str()?).ok()?;
    let (tp, ts) = trace?.headers_for(&url)?;
    let mut headers: Vec<Value> = request["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| header(k, v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let has = |headers: &[Value], n: &str| {
        headers.iter().any(|h| {
            h["name"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(n))
        })
    };
    if has(&headers, "traceparent") {
        return None;
    }
    let own_state = has(&headers, "tracestate");
    headers.push(header("traceparent", tp.to_str().ok()?));
    if let Some(ts) = ts.as_ref().and_then(|t| t.to_str().ok())
        && !own_state
    {
        headers.push(header("tracestate", ts));
    }
    Some(headers)
}

impl Interceptor {
    /// Connects to the page of the browser whose DevTools listen at
    /// `address` (`host:port`). Errors: no page, no connection.
    pub async fn connect(address: &str) -> Result<Self, String> {
        let list = async {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| e.to_string())?
                .get(format!("http://{address}/json/list"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json::<Value>()
                .await
                .map_err(|e| e.to_string())
        };
        let list = tokio::time::timeout(COMMAND_TIMEOUT, list)
            .await
            .map_err(|_| "listing the pages took over 5s".to_string())??;
        let ws_url = list
            .as_array()
            .and_then(|l| l.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or("the browser has no page to attach to")?
            .to_string();
        let (ws, _) = tokio::time::timeout(
            COMMAND_TIMEOUT,
            tokio_tungstenite::connect_async(ws_url.as_str()),
        )
        .await
        .map_err(|_| "connecting took over 5s".to_string())?
        .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let trace: Arc<Mutex<Option<RunTrace>>> = Arc::default();
        let reader = {
            let (pending, trace, out) = (pending.clone(), trace.clone(), out.clone());
            // Ids of the reader's own continueRequest commands (answers not
            // awaited), apart from `command`'s; DevTools ids are 32-bit.
            let mut id = 1u64 << 30;
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        continue;
                    };
                    if let Some(n) = v["id"].as_u64() {
                        let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
                        if let Some(w) = waiter {
                            let _ = w.send(v);
                        }
                        continue;
                    }
                    if v["method"] != "Fetch.requestPaused" {
                        continue;
                    }
                    let request = &v["params"]["request"];
                    let Some(rid) = v["params"]["requestId"].as_str() else {
                        continue;
                    };
                    // Every paused request is continued, with or without headers.
                    let headers = {
                        let t = trace.lock().unwrap_or_else(|p| p.into_inner());
                        continued_headers(t.as_ref(), request)
                    };
                    let mut params = json!({"requestId": rid});
                    if let Some(h) = headers {
                        params["headers"] = Value::Array(h);
                    }
                    id += 1;
                    let cmd =
                        json!({"id": id, "method": "Fetch.continueRequest", "params": params});
                    let _ = out.send(Message::text(cmd.to_string()));
                }
            })
        };
        Ok(Self {
            out,
            pending,
            next_id: Mutex::new(0),
            trace,
            intercepted: Mutex::new(BTreeSet::new()),
            tasks: vec![writer, reader],
        })
    }

    /// Sends a command and waits (bounded) for its answer.
    async fn command(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let cmd = json!({"id": id, "method": method, "params": params});
        self.out
            .send(Message::text(cmd.to_string()))
            .map_err(|_| "the DevTools connection is closed".to_string())?;
        let v = tokio::time::timeout(COMMAND_TIMEOUT, rx)
            .await
            .map_err(|_| format!("`{method}` got no answer within 5s"))?
            .map_err(|_| "the DevTools connection is closed".to_string())?;
        if let Some(e) = v.get("error") {
            return Err(format!(
                "`{method}`: {}",
                e["message"].as_str().unwrap_or("failed")
            ));
        }
        Ok(v)
    }

    /// Follows the step about to run: its span names the page's requests
    /// from now on, and every origin the run propagates to is intercepted
    /// (new ones are added before the step's first navigation).
    pub async fn follow(&self, trace: &RunTrace) -> Result<(), String> {
        *self.trace.lock().unwrap_or_else(|p| p.into_inner()) = Some(trace.clone());
        let mut origins = trace.origins();
        origins.truncate(MAX_ORIGINS);
        let known = {
            let done = self.intercepted.lock().unwrap_or_else(|p| p.into_inner());
            origins.iter().all(|o| done.contains(o))
        };
        if known {
            return Ok(());
        }
        // `Fetch.enable` replaces the patterns: send them all.
        let patterns: Vec<Value> = origins.iter().map(|o| pattern(o)).collect();
        self.command("Fetch.enable", json!({"patterns": patterns}))
            .await?;
        self.intercepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(origins);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::TraceSettings;

    #[test]
    fn only_the_journeys_origins_get_the_header_once() {
        let mut t = RunTrace::new(&TraceSettings {
            enabled: true,
            propagate_to: None,
            tracestate: Some("shop=probe".into()),
        });
        t.called(&url::Url::parse("http://127.0.0.1:8080/shop").unwrap());
        let span = t.start_step();
        let req = |url: &str, headers: Value| json!({"url": url, "headers": headers});
        let h = continued_headers(
            Some(&t),
            &req("http://127.0.0.1:8080/api", json!({"accept": "*/*"})),
        )
        .unwrap();
        assert_eq!(h[0], header("accept", "*/*"));
        assert_eq!(
            h[1],
            header("traceparent", &format!("00-{}-{span}-01", t.trace_id))
        );
        assert_eq!(h[2], header("tracestate", "shop=probe"));
        assert!(continued_headers(Some(&t), &req("http://localhost:8080/x", json!({}))).is_none());
        assert!(continued_headers(None, &req("http://127.0.0.1:8080/x", json!({}))).is_none());
        // A page that sets its own traceparent keeps it.
        assert!(
            continued_headers(
                Some(&t),
                &req("http://127.0.0.1:8080/x", json!({"TraceParent": "x"}))
            )
            .is_none()
        );
        assert_eq!(
            pattern("http://127.0.0.1:8080"),
            json!({"urlPattern": "http://127.0.0.1:8080/*", "requestStage": "Request"})
        );
    }
}
