//! One run's WebDriver session: opening it (a clean profile), closing it,
//! and moving cookies between the run's jar and the browser.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::call::{CALL_TIMEOUT, bounded};
use super::driver::{Browser, driver_ready};
use crate::outcome::{Failure, Reason};
use crate::step::context::StepCtx;

/// Chromium flags that work headless, as root, in containers, offline.
const CHROME_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1280,800",
];

impl Browser {
    /// Opens a new session (a clean profile), waiting for a free slot.
    pub(super) async fn open(&self, page_load: Duration) -> Result<Session, Failure> {
        let permit = self
            .inner
            .sessions
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Failure::new(Reason::BrowserSession, "browser is shutting down"))?;
        let url = self.endpoint().await?;
        let mut opts = json!({"args": CHROME_ARGS});
        if let Some(bin) = &self.inner.cfg.chromium {
            opts["binary"] = json!(bin);
        }
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": page_load.as_millis() as u64, "script": 10_000, "implicit": 0},
            "goog:chromeOptions": opts,
        });
        let caps = caps.as_object().cloned().unwrap_or_default();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = fantoccini::ClientBuilder::new(connector);
        builder.capabilities(caps);
        let connect = builder.connect(&url);
        let client = match tokio::time::timeout(Duration::from_secs(30), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.set_up(driver_ready(&url).await);
                return Err(Failure::new(
                    Reason::BrowserSession,
                    format!("cannot open a browser session: {e}"),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    Reason::BrowserSession,
                    "opening a browser session took over 30s",
                ));
            }
        };
        // Without DevTools the session works; only the page's requests go
        // without the run's trace context.
        let interceptor = match super::intercept::attach(client.capabilities()).await {
            Ok(i) => Some(i),
            Err(why) => {
                self.propagation_unavailable(&why);
                None
            }
        };
        Ok(Session {
            client,
            interceptor,
            _permit: permit,
        })
    }
}

/// One run's browser session.
pub struct Session {
    pub(super) client: fantoccini::Client,
    /// Puts the run's trace context on the page's requests to the journey's origins.
    pub(super) interceptor: Option<super::intercept::Interceptor>,
    _permit: OwnedSemaphorePermit,
}

impl Session {
    /// Ends the session (bounded; the driver is told even if the run failed).
    pub async fn close(self) {
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.close()).await;
    }
}

/// A raw Chrome DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"cmd": self.cmd, "params": self.params}).to_string()),
        )
    }
}

/// Moves the run's HTTP cookies into the browser (before it navigates).
pub(super) async fn push_cookies(ctx: &StepCtx, c: &fantoccini::Client) {
    let cookies: Vec<Value> = {
        let store = match ctx.jar.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        store
            .iter_unexpired()
            .filter_map(|ck| {
                let domain = ck.domain().map(str::to_string).or_else(|| match &ck.domain {
                    cookie_store::CookieDomain::HostOnly(h) | cookie_store::CookieDomain::Suffix(h) => Some(h.clone()),
                    _ => None,
                })?;
                let host = domain.trim_start_matches('.');
                let scheme = if ck.secure().unwrap_or(false) { "https" } else { "http" };
                let path: String = ck.path().map(str::to_string).unwrap_or_else(|| String::from(&ck.path));
                let mut v = json!({
                    "name": ck.name(), "value": ck.value(),
                    "url": format!("{scheme}://{host}{}", if path.is_empty() { "/" } else { path.as_str() }),
                    "path": if path.is_empty() { "/".to_string() } else { path.clone() },
                    "secure": ck.secure().unwrap_or(false), "httpOnly": ck.http_only().unwrap_or(false),
                });
                if let Some(ss) = ck.same_site() {
                    v["sameSite"] = json!(ss.to_string());
                }
                Some(v)
            })
            .collect()
    };
    if cookies.is_empty() {
        return;
    }
    let cmd = Cdp {
        cmd: "Network.setCookies",
        params: json!({"cookies": cookies}),
    };
    if let Err(e) = bounded("setting cookies", CALL_TIMEOUT, c.issue_cmd(cmd)).await {
        tracing::debug!(journey = %ctx.journey, error = %e.message, "could not copy cookies into the browser");
    }
}

/// Moves the browser's cookies back into the run's jar (after the step).
pub(super) async fn pull_cookies(ctx: &StepCtx, c: &fantoccini::Client) {
    let cmd = Cdp {
        cmd: "Network.getAllCookies",
        params: json!({}),
    };
    let Ok(v) = bounded("reading cookies", CALL_TIMEOUT, c.issue_cmd(cmd)).await else {
        return;
    };
    let Some(list) = v["cookies"].as_array() else {
        return;
    };
    let mut store = match ctx.jar.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    for ck in list {
        let (Some(name), Some(value), Some(domain)) = (
            ck["name"].as_str(),
            ck["value"].as_str(),
            ck["domain"].as_str(),
        ) else {
            continue;
        };
        let path = ck["path"].as_str().unwrap_or("/");
        let secure = ck["secure"].as_bool().unwrap_or(false);
        let host = domain.trim_start_matches('.');
        let mut raw = format!("{name}={value}; Path={path}");
        if domain.starts_with('.') {
            raw.push_str(&format!("; Domain={host}"));
        }
        if secure {
            raw.push_str("; Secure");
        }
        if ck["httpOnly"].as_bool().unwrap_or(false) {
            raw.push_str("; HttpOnly");
        }
        let scheme = if secure { "https" } else { "http" };
        if let (Ok(cookie), Ok(url)) = (
            cookie_store::RawCookie::parse(raw),
            url::Url::parse(&format!("{scheme}://{host}{path}")),
        ) {
            let _ = store.insert_raw(&cookie, &url);
        }
    }
}
