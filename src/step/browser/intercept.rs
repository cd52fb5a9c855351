//! The run's trace context on the page's own requests, by request
//! interception over the Chrome DevTools protocol, on a connection to the
//! browser (a Selenium Grid's `se:cdp` websocket, or the one behind
//! chromedriver's `goog:chromeOptions.debuggerAddress`).
//!
//! The connection auto-attaches to every page of the browser (flattened
//! sessions, `Target.setAutoAttach`): the first one and each window or tab
//! the page opens (`window.open`, `target=_blank`), which waits for the
//! debugger until its interception is on, so even its first request is
//! seen. Only requests to the journey's origins are paused (`Fetch.enable`
//! with one URL pattern per origin), and each continues with the run's
//! `traceparent` naming the browser step's span, checked again per request
//! with the same rule as HTTP steps ([`crate::trace::RunTrace::headers_for`]);
//! requests to other origins (analytics, CDNs) are never paused and never
//! carry it. `Network.setExtraHTTPHeaders` would send it to every origin.
//!
//! A driver that exposes no reachable DevTools endpoint costs only the
//! propagation: the session works as before, and a warning says why.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// What the connection's reader and the step share.
#[derive(Default)]
struct State {
    /// The current step's trace (its span, the run's origins).
    trace: Option<RunTrace>,
    /// The `Fetch.enable` patterns of the origins intercepted so far.
    patterns: Vec<Value>,
    /// Attached page sessions, by target id.
    pages: BTreeMap<String, String>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// One session's DevTools connection and interception state.
pub struct Interceptor {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: Mutex<u64>,
    state: Shared,
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

/// The browser's DevTools websocket behind chromedriver's
/// `debuggerAddress` (`host:port`), from its `/json/version`.
async fn browser_websocket(address: &str) -> Result<String, String> {
    let version = async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?
            .get(format!("http://{address}/json/version"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json::<Value>()
            .await
            .map_err(|e| e.to_string())
    };
    let v = tokio::time::timeout(COMMAND_TIMEOUT, version)
        .await
        .map_err(|_| "asking the browser for its DevTools address took over 5s".to_string())??;
    v["webSocketDebuggerUrl"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the browser names no DevTools websocket".to_string())
}

/// Attaches to the DevTools of a new WebDriver session: the `se:cdp`
/// websocket a Selenium Grid (4) proxies, else the browser behind
/// chromedriver's `goog:chromeOptions.debuggerAddress` (reachable only when
/// chromedriver runs beside wayprobe). Errors: why the page's requests
/// cannot carry the run's trace context.
pub async fn attach(caps: Option<&serde_json::Map<String, Value>>) -> Result<Interceptor, String> {
    let caps = caps.ok_or("the WebDriver session has no capabilities")?;
    if let Some(ws) = caps.get("se:cdp").and_then(Value::as_str) {
        return Interceptor::connect(ws)
            .await
            .map_err(|e| format!("cannot attach to the grid's DevTools (se:cdp): {e}"));
    }
    let address = caps
        .get("goog:chromeOptions")
        .and_then(|o| o["debuggerAddress"].as_str())
        .ok_or("the WebDriver session names no DevTools endpoint (no se:cdp, no goog:chromeOptions.debuggerAddress)")?;
    let ws = browser_websocket(address)
        .await
        .map_err(|e| format!("cannot reach the browser's DevTools at {address}: {e}"))?;
    Interceptor::connect(&ws)
        .await
        .map_err(|e| format!("cannot attach to the browser's DevTools at {address}: {e}"))
}

/// A command the reader sends without waiting for its answer.
fn fire(
    out: &mpsc::UnboundedSender<Message>,
    id: &mut u64,
    session: &str,
    method: &str,
    params: Value,
) {
    *id += 1;
    let cmd = json!({"id": *id, "sessionId": session, "method": method, "params": params});
    let _ = out.send(Message::text(cmd.to_string()));
}

/// Handles one event of the connection (not an answer to a command).
fn on_event(v: &Value, state: &Shared, out: &mpsc::UnboundedSender<Message>, id: &mut u64) {
    let p = &v["params"];
    match v["method"].as_str() {
        Some("Target.attachedToTarget") => {
            let Some(session) = p["sessionId"].as_str() else {
                return;
            };
            let info = &p["targetInfo"];
            if info["type"] == "page" {
                let mut st = lock(state);
                if let Some(t) = info["targetId"].as_str() {
                    st.pages.insert(t.to_string(), session.to_string());
                }
                // Interception first: DevTools runs a session's commands in order.
                if !st.patterns.is_empty() {
                    fire(
                        out,
                        id,
                        session,
                        "Fetch.enable",
                        json!({"patterns": st.patterns}),
                    );
                }
            }
            // Anything new (a popup, a service worker) waits for this.
            if p["waitingForDebugger"] == true {
                fire(
                    out,
                    id,
                    session,
                    "Runtime.runIfWaitingForDebugger",
                    json!({}),
                );
            }
        }
        Some("Target.detachedFromTarget") => {
            if let Some(t) = p["targetId"].as_str() {
                lock(state).pages.remove(t);
            }
        }
        Some("Fetch.requestPaused") => {
            let (Some(session), Some(rid)) = (v["sessionId"].as_str(), p["requestId"].as_str())
            else {
                return;
            };
            // Every paused request is continued, with or without headers.
            let headers = continued_headers(lock(state).trace.as_ref(), &p["request"]);
            let mut params = json!({"requestId": rid});
            if let Some(h) = headers {
                params["headers"] = Value::Array(h);
            }
            fire(out, id, session, "Fetch.continueRequest", params);
        }
        _ => {}
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
    /// Connects to the browser's DevTools websocket and attaches to its
    /// pages, present and future. Errors: no connection, or a browser
    /// that refuses to auto-attach.
    pub async fn connect(ws_url: &str) -> Result<Self, String> {
        let (ws, _) =
            tokio::time::timeout(COMMAND_TIMEOUT, tokio_tungstenite::connect_async(ws_url))
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
        let state: Shared = Arc::default();
        let reader = {
            let (pending, state, out) = (pending.clone(), state.clone(), out.clone());
            // Ids of the reader's own commands (answers not awaited), apart
            // from `command`'s; DevTools ids are 32-bit.
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
                    on_event(&v, &state, &out, &mut id);
                }
            })
        };
        let me = Self {
            out,
            pending,
            next_id: Mutex::new(0),
            state,
            intercepted: Mutex::new(BTreeSet::new()),
            tasks: vec![writer, reader],
        };
        // New pages wait until their interception is on (see `on_event`).
        me.command(
            None,
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
        )
        .await?;
        // The pages already open, where auto-attach did not report them.
        let targets = me.command(None, "Target.getTargets", json!({})).await?;
        for t in targets["result"]["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(target) = t["targetId"].as_str() else {
                continue;
            };
            if t["type"] != "page" || lock(&me.state).pages.contains_key(target) {
                continue;
            }
            me.command(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await?;
        }
        if lock(&me.state).pages.is_empty() {
            return Err("the browser has no page to attach to".into());
        }
        Ok(me)
    }

    /// Sends a command (to the browser, or to a page's session) and waits
    /// (bounded) for its answer.
    async fn command(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
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
        let mut cmd = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            cmd["sessionId"] = json!(s);
        }
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

    /// Follows the step about to run: its span names the pages' requests
    /// from now on, and every origin the run propagates to is intercepted
    /// in every open page (new ones are added before the step's first
    /// navigation; pages opened later get them when they attach).
    pub async fn follow(&self, trace: &RunTrace) -> Result<(), String> {
        let mut origins = trace.origins();
        origins.truncate(MAX_ORIGINS);
        let known = {
            let done = self.intercepted.lock().unwrap_or_else(|p| p.into_inner());
            origins.iter().all(|o| done.contains(o))
        };
        // `Fetch.enable` replaces the patterns: send them all.
        let patterns: Vec<Value> = origins.iter().map(|o| pattern(o)).collect();
        let sessions: Vec<String> = {
            let mut st = lock(&self.state);
            st.trace = Some(trace.clone());
            if known {
                return Ok(());
            }
            st.patterns = patterns.clone();
            st.pages.values().cloned().collect()
        };
        let mut enabled = false;
        let mut last = Ok(());
        for s in &sessions {
            match self
                .command(Some(s), "Fetch.enable", json!({"patterns": patterns}))
                .await
            {
                Ok(_) => enabled = true,
                // A window that closed meanwhile.
                Err(e) => last = Err(e),
            }
        }
        if !enabled {
            return last.and(Err("no page is open".into()));
        }
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
