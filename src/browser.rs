//! Browser steps over W3C WebDriver (fantoccini), sharing the run's session.
//!
//! A run opens one WebDriver session (a clean profile, like a new visitor) at
//! its first browser step and always closes it. Before each browser step the
//! run's HTTP cookies go into the browser (Chrome DevTools `Network.setCookies`,
//! so no navigation is needed), and after it the browser's cookies come back
//! into the jar, so API login → browser page → API check is one session.
//!
//! Every WebDriver call is bounded by a timeout: a hung driver fails the run,
//! it never hangs the prober. wayprobe can supervise its own chromedriver: on
//! loopback, in its own process group (so no Chromium is orphaned), with its
//! own temporary directory, health-checked and restarted when it dies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use fantoccini::Locator;
use fantoccini::error::{CmdError, ErrorStatus};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::journey::{
    ActionKind, BrowserExpect, BrowserStep, CaptureSource, Predicate, Step, WaitCondition,
};
use crate::outcome::{Failure, Reason, StepOutcome, StepStatus, Timing};
use crate::run::RunCtx;

/// How to reach a browser.
#[derive(Debug, Clone)]
pub struct BrowserConfig {
    /// A WebDriver endpoint to use (a chromedriver sidecar, a Selenium Grid).
    /// When unset, wayprobe starts and supervises `chromedriver` itself.
    pub webdriver_url: Option<String>,
    /// The chromedriver executable to supervise.
    pub chromedriver: PathBuf,
    /// The Chromium binary (default: chromedriver's choice).
    pub chromium: Option<PathBuf>,
    /// Browser sessions open at once.
    pub max_sessions: usize,
    /// Where failure screenshots are written.
    pub artifacts_dir: PathBuf,
    /// Failure artifacts kept per journey (newest first).
    pub keep_artifacts: usize,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        Self {
            webdriver_url: None,
            chromedriver: PathBuf::from("chromedriver"),
            chromium: None,
            max_sessions: 2,
            artifacts_dir: std::env::temp_dir().join("wayprobe-artifacts"),
            keep_artifacts: 5,
        }
    }
}

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

/// Bound on any single WebDriver housekeeping call (close, screenshot...).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

struct Driver {
    child: tokio::process::Child,
    pgid: i32,
    url: String,
    tmp: PathBuf,
}

impl Driver {
    fn kill(&mut self) {
        // The whole group: chromedriver and every Chromium it started.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.start_kill();
    }

    /// Kills the group, waits (briefly) until every member is gone, then
    /// removes the temporary directory they were writing to.
    async fn stop(mut self) {
        self.kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let pgid = nix::unistd::Pid::from_raw(self.pgid);
        let deadline = Instant::now() + Duration::from_secs(3);
        // Signal 0 probes the group: ESRCH once every member is gone.
        while nix::sys::signal::killpg(pgid, None).is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Drop for Driver {
    /// A safety net for exits that skip [`Driver::stop`]: no Chromium may
    /// outlive the prober.
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

struct Inner {
    cfg: BrowserConfig,
    sessions: Arc<Semaphore>,
    driver: Mutex<Option<Driver>>,
    up: AtomicBool,
    gauge: OnceLock<Gauge>,
}

/// A handle to the browser endpoint; cheap to clone.
#[derive(Clone)]
pub struct Browser {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// Chromium leaves a small directory per session in its TMPDIR even after a
/// clean close; a long-running prober removes the ones older than `age`.
fn purge_stale(dir: &Path, age: Duration) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|d| d > age);
        if old {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn driver_ready(url: &str) -> bool {
    let client = reqwest::Client::new();
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.get(format!("{url}/status")).send(),
    )
    .await
    {
        Ok(Ok(r)) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["value"]["ready"].as_bool())
            .unwrap_or(false),
        _ => false,
    }
}

impl Browser {
    /// A browser endpoint; nothing starts until the first browser step.
    pub fn new(cfg: BrowserConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: Arc::new(Semaphore::new(cfg.max_sessions.max(1))),
                cfg,
                driver: Mutex::new(None),
                up: AtomicBool::new(false),
                gauge: OnceLock::new(),
            }),
        }
    }

    /// Reports driver health into `wayprobe_webdriver_up`.
    pub fn set_gauge(&self, g: Gauge) {
        g.set(i64::from(self.inner.up.load(Ordering::Relaxed)));
        let _ = self.inner.gauge.set(g);
    }

    fn set_up(&self, up: bool) {
        self.inner.up.store(up, Ordering::Relaxed);
        if let Some(g) = self.inner.gauge.get() {
            g.set(i64::from(up));
        }
    }

    /// Whether the driver answered its last health check.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &BrowserConfig {
        &self.inner.cfg
    }

    /// The process group of the supervised chromedriver, if running.
    pub async fn driver_pgid(&self) -> Option<i32> {
        self.inner.driver.lock().await.as_ref().map(|d| d.pgid)
    }

    /// Checks the driver (restarting a supervised one that died) and updates
    /// `wayprobe_webdriver_up`.
    pub async fn health_check(&self) -> bool {
        let ok = match &self.inner.cfg.webdriver_url {
            Some(url) => driver_ready(url.trim_end_matches('/')).await,
            None => {
                let mut guard = self.inner.driver.lock().await;
                match guard.as_mut() {
                    None => false,
                    Some(d) => {
                        purge_stale(&d.tmp, Duration::from_secs(3600));
                        matches!(d.child.try_wait(), Ok(None)) && driver_ready(&d.url).await
                    }
                }
            }
        };
        self.set_up(ok);
        ok
    }

    /// Stops a supervised chromedriver and its browsers, and waits (briefly)
    /// until none of them is left.
    pub async fn shutdown(&self) {
        if let Some(d) = self.inner.driver.lock().await.take() {
            d.stop().await;
        }
        self.set_up(false);
    }

    /// The WebDriver URL, starting or restarting the supervised driver as needed.
    async fn endpoint(&self) -> Result<String, Failure> {
        if let Some(url) = &self.inner.cfg.webdriver_url {
            return Ok(url.trim_end_matches('/').to_string());
        }
        let mut guard = self.inner.driver.lock().await;
        if let Some(d) = guard.as_mut() {
            if matches!(d.child.try_wait(), Ok(None)) && driver_ready(&d.url).await {
                self.set_up(true);
                return Ok(d.url.clone());
            }
            tracing::warn!("chromedriver is not answering; restarting it");
        }
        // Stopping the old driver kills its whole process group.
        if let Some(old) = guard.take() {
            old.stop().await;
        }
        let d = self
            .spawn_driver()
            .await
            .inspect_err(|_| self.set_up(false))?;
        let url = d.url.clone();
        *guard = Some(d);
        self.set_up(true);
        Ok(url)
    }

    async fn spawn_driver(&self) -> Result<Driver, Failure> {
        let fail = |m: String| Failure::new(Reason::BrowserSession, m);
        let port = free_port().map_err(|e| fail(format!("no free port for chromedriver: {e}")))?;
        let tmp = std::env::temp_dir().join(format!(
            "wayprobe-chromedriver-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
        let mut cmd = tokio::process::Command::new(&self.inner.cfg.chromedriver);
        cmd.arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            fail(format!(
                "cannot start `{}`: {e} (install chromium-driver, or pass --webdriver-url)",
                self.inner.cfg.chromedriver.display()
            ))
        })?;
        let pgid = child.id().map_or(0, |p| p as i32);
        let mut d = Driver {
            child,
            pgid,
            url: format!("http://127.0.0.1:{port}"),
            tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if driver_ready(&d.url).await {
                tracing::info!(pid = pgid, url = %d.url, "chromedriver started");
                return Ok(d);
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(fail(format!("chromedriver exited at start-up ({status})")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d.kill();
        Err(fail("chromedriver did not become ready within 15s".into()))
    }

    /// Opens a new session (a clean profile), waiting for a free slot.
    async fn open(&self, page_load: Duration) -> Result<Session, Failure> {
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
        Ok(Session {
            client,
            _permit: permit,
        })
    }
}

/// One run's browser session.
pub struct Session {
    client: fantoccini::Client,
    _permit: OwnedSemaphorePermit,
}

impl Session {
    /// Ends the session (bounded; the driver is told even if the run failed).
    pub async fn close(self) {
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.client.close()).await;
    }
}

/// Closes the run's browser session, if one was opened.
pub async fn finish(ctx: &mut RunCtx) {
    if let Some(s) = ctx.browser.take() {
        s.close().await;
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

/// Maps a WebDriver error to a bounded reason.
fn classify(e: &CmdError) -> Reason {
    match e {
        CmdError::Standard(wd) => match wd.error {
            ErrorStatus::NoSuchElement
            | ErrorStatus::StaleElementReference
            | ErrorStatus::ElementNotInteractable
            | ErrorStatus::ElementClickIntercepted
            | ErrorStatus::ElementNotSelectable
            | ErrorStatus::InvalidElementState
            | ErrorStatus::InvalidSelector => Reason::BrowserElement,
            ErrorStatus::Timeout => Reason::Timeout,
            ErrorStatus::JavascriptError | ErrorStatus::ScriptTimeout => Reason::BrowserScript,
            ErrorStatus::InvalidSessionId
            | ErrorStatus::SessionNotCreated
            | ErrorStatus::NoSuchWindow => Reason::BrowserSession,
            _ if wd.message.contains("net::ERR_") => Reason::BrowserNavigation,
            _ => Reason::BrowserSession,
        },
        CmdError::WaitTimeout | CmdError::InvalidArgument(..) => Reason::BrowserElement,
        CmdError::BadUrl(_) => Reason::BrowserNavigation,
        _ => Reason::BrowserSession,
    }
}

fn short(e: &CmdError) -> String {
    let s = match e {
        CmdError::Standard(wd) => wd.message.to_string(),
        other => other.to_string(),
    };
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// Runs `fut` with a deadline; `what` names the action in messages.
async fn bounded<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, CmdError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::new(classify(&e), format!("{what}: {}", short(&e)))),
        Err(_) => Err(Failure::new(
            Reason::Timeout,
            format!(
                "{what}: no answer within {}",
                humantime::format_duration(round(limit))
            ),
        )),
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Polls `check` until it returns Ok, or fails with its last error at the deadline.
async fn poll<F, Fut>(limit: Duration, mut check: F) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let deadline = Instant::now() + limit;
    let mut first = true;
    // What the page last showed: reported if the deadline cuts a check short.
    let mut observed: Option<Failure> = None;
    loop {
        // The first check always gets a full call's time, so a short timeout
        // still reports what the page showed rather than a bare timeout.
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = if first {
            left.max(CALL_TIMEOUT)
        } else {
            left.max(Duration::from_millis(1))
        };
        first = false;
        let last = match tokio::time::timeout(budget, check()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(f)) => f,
            Err(_) => match observed.take() {
                Some(f) => return Err(f),
                None => Failure::new(Reason::Timeout, "the browser did not answer in time"),
            },
        };
        // A dead session will not get better by waiting.
        if last.reason == Reason::BrowserSession || Instant::now() >= deadline {
            return Err(last);
        }
        observed = Some(last);
        tokio::time::sleep(
            Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

fn pred_ok(p: &Predicate, actual: Option<&str>, ctx: &RunCtx, what: &str) -> Result<(), Failure> {
    match crate::assertion::text_predicate(p, actual, &ctx.scope)? {
        Ok(()) => Ok(()),
        Err((exp, act)) => Err(Failure::new(
            Reason::Assertion,
            ctx.redactor
                .apply(&format!("{what}: expected {exp}, got {act}")),
        )
        .expected_actual(ctx.redactor.apply(&exp), ctx.redactor.apply(&act))),
    }
}

async fn find(
    c: &fantoccini::Client,
    sel: &str,
    limit: Duration,
) -> Result<fantoccini::elements::Element, Failure> {
    match tokio::time::timeout(
        limit,
        c.wait()
            .at_most(limit)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(sel)),
    )
    .await
    {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(CmdError::WaitTimeout)) | Err(_) => Err(Failure::new(
            Reason::BrowserElement,
            format!(
                "no element matches `{sel}` after {}",
                humantime::format_duration(round(limit))
            ),
        )),
        Ok(Err(e)) => Err(Failure::new(
            classify(&e),
            format!("finding `{sel}`: {}", short(&e)),
        )),
    }
}

fn key_code(name: &str) -> String {
    match name {
        "Enter" => "\u{E007}".into(),
        "Tab" => "\u{E004}".into(),
        "Escape" => "\u{E00C}".into(),
        "Backspace" => "\u{E003}".into(),
        "Delete" => "\u{E017}".into(),
        "Space" => " ".into(),
        "ArrowLeft" => "\u{E012}".into(),
        "ArrowUp" => "\u{E013}".into(),
        "ArrowRight" => "\u{E014}".into(),
        "ArrowDown" => "\u{E015}".into(),
        "Home" => "\u{E011}".into(),
        "End" => "\u{E010}".into(),
        "PageUp" => "\u{E00E}".into(),
        "PageDown" => "\u{E00F}".into(),
        other => other.to_string(),
    }
}

const NAV_TIMING_JS: &str = "const n = performance.getEntriesByType('navigation')[0]; if (!n || !(n.responseStart > 0)) return null; \
return {dns: n.domainLookupEnd - n.domainLookupStart, connect: n.connectEnd - n.connectStart, \
tls: n.secureConnectionStart > 0 ? n.connectEnd - n.secureConnectionStart : 0, ttfb: n.responseStart - n.requestStart, \
download: n.responseEnd - n.responseStart, dom_ready: n.domContentLoadedEventEnd, load: n.loadEventEnd};";

/// Moves the run's HTTP cookies into the browser (before it navigates).
async fn push_cookies(ctx: &RunCtx, c: &fantoccini::Client) {
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
async fn pull_cookies(ctx: &RunCtx, c: &fantoccini::Client) {
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

/// Saves a screenshot, URL and title of a failure; keeps the newest few.
async fn save_artifacts(
    browser: &Browser,
    ctx: &RunCtx,
    step: &str,
    c: &fantoccini::Client,
    f: &Failure,
) -> Vec<String> {
    let cfg = browser.config();
    let dir = cfg.artifacts_dir.join(&ctx.journey);
    if std::fs::create_dir_all(&dir).is_err() {
        return Vec::new();
    }
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace([':', '.'], "-");
    let base = format!("{stamp}-{step}");
    let mut saved = Vec::new();
    if let Ok(png) = bounded("screenshot", CALL_TIMEOUT, c.screenshot()).await {
        let p = dir.join(format!("{base}.png"));
        if std::fs::write(&p, png).is_ok() {
            saved.push(p.display().to_string());
        }
    }
    let url = bounded("url", CALL_TIMEOUT, c.current_url())
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    let title = bounded("title", CALL_TIMEOUT, c.title())
        .await
        .unwrap_or_default();
    let note = format!(
        "journey: {}\nstep: {step}\nurl: {}\ntitle: {}\nreason: {}\nmessage: {}\n",
        ctx.journey,
        ctx.redactor.apply(&url),
        ctx.redactor.apply(&title),
        f.reason,
        f.message
    );
    let p = dir.join(format!("{base}.txt"));
    if std::fs::write(&p, note).is_ok() {
        saved.push(p.display().to_string());
    }
    prune(&dir, cfg.keep_artifacts);
    saved
}

/// Keeps the newest `keep` failures (each a .png + .txt pair) in `dir`.
fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    let mut stems: Vec<String> = names
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
        .collect();
    stems.dedup();
    if stems.len() <= keep {
        return;
    }
    let old: std::collections::HashSet<&String> = stems[..stems.len() - keep].iter().collect();
    for p in names {
        if p.file_stem()
            .is_some_and(|s| old.contains(&s.to_string_lossy().to_string()))
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs one browser step in the run's session.
pub async fn execute(
    step: &Step,
    b: &BrowserStep,
    ctx: &mut RunCtx,
    browser: Option<&Browser>,
    limit: Duration,
) -> StepOutcome {
    let mut out = StepOutcome {
        status: StepStatus::Passed,
        ..StepOutcome::skipped(&step.name, "browser")
    };
    let Some(browser) = browser else {
        out.status = StepStatus::Failed;
        out.failure = Some(
            Failure::new(Reason::BrowserSession, "no browser configured for this run")
                .at(step.span),
        );
        return out;
    };
    // Keep a little of the step's time to save failure artifacts.
    let reserve = (limit / 4).min(Duration::from_secs(3));
    let deadline = Instant::now() + limit.saturating_sub(reserve);
    if ctx.browser.is_none() {
        match browser.open(limit).await {
            Ok(s) => ctx.browser = Some(s),
            Err(f) => {
                out.status = StepStatus::Failed;
                out.failure = Some(f.at(step.span));
                return out;
            }
        }
    }
    let client = ctx
        .browser
        .as_ref()
        .map(|s| s.client.clone())
        .expect("opened above");
    push_cookies(ctx, &client).await;
    for a in &b.actions {
        let left = deadline.saturating_duration_since(Instant::now());
        let t = a.timeout.map_or(left, |t| t.min(left));
        let started = Instant::now();
        let (label, res) = run_action(
            &a.kind,
            &browser.config().artifacts_dir,
            ctx,
            &client,
            t,
            &mut out,
        )
        .await;
        out.timings.push(Timing {
            name: ctx.redactor.apply(&label),
            ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        if let Err(mut f) = res {
            f.message = ctx.redactor.apply(&f.message);
            f = f.at(a.span);
            let budget = reserve.max(Duration::from_secs(2));
            f.artifacts = tokio::time::timeout(
                budget,
                save_artifacts(browser, ctx, &step.name, &client, &f),
            )
            .await
            .unwrap_or_default();
            if f.reason == Reason::BrowserSession {
                // The session is gone; the next browser step needs a new one.
                if let Some(s) = ctx.browser.take() {
                    drop(s);
                }
            }
            out.status = StepStatus::Failed;
            out.failure = Some(f);
            return out;
        }
    }
    pull_cookies(ctx, &client).await;
    out
}

async fn run_action(
    kind: &ActionKind,
    artifacts: &Path,
    ctx: &mut RunCtx,
    c: &fantoccini::Client,
    t: Duration,
    out: &mut StepOutcome,
) -> (String, Result<(), Failure>) {
    let render = |tmpl: &crate::template::Template, ctx: &RunCtx| -> Result<String, Failure> {
        tmpl.render(&ctx.scope)
            .map(|s| s.into_owned())
            .map_err(|m| Failure::new(Reason::Template, m))
    };
    match kind {
        ActionKind::Goto(u) => {
            let url = match render(u, ctx) {
                Ok(u) => u,
                Err(f) => return ("goto".into(), Err(f)),
            };
            let label = format!("goto {url}");
            // chromedriver stops a hung load itself at the page-load timeout,
            // which keeps the session usable for the failure screenshot.
            let _ = bounded(
                "setting the page-load timeout",
                CALL_TIMEOUT,
                c.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                    Some(Duration::from_secs(10)),
                    Some(t),
                    Some(Duration::ZERO),
                )),
            )
            .await;
            let res = bounded(
                &format!("loading {url}"),
                t + Duration::from_secs(2),
                c.goto(&url),
            )
            .await;
            if res.is_ok()
                && let Ok(Ok(v)) =
                    tokio::time::timeout(CALL_TIMEOUT, c.execute(NAV_TIMING_JS, vec![])).await
                && let Some(o) = v.as_object()
            {
                for (k, v) in o {
                    if let Some(ms) = v.as_f64() {
                        out.timings.push(Timing {
                            name: format!("  {k}"),
                            ms,
                        });
                    }
                }
            }
            if res.is_ok() && out.request.is_none() {
                out.request = Some(ctx.redactor.apply(&format!("GET {url}")));
            }
            (label, res)
        }
        ActionKind::Click(sel) => {
            let res = async {
                let e = find(c, sel, t).await?;
                bounded(&format!("clicking `{sel}`"), t, e.click()).await
            }
            .await;
            (format!("click {sel}"), res)
        }
        ActionKind::Fill { selector, value } => {
            let res = async {
                let v = render(value, ctx)?;
                let e = find(c, selector, t).await?;
                bounded(&format!("clearing `{selector}`"), t, e.clear()).await?;
                bounded(&format!("typing into `{selector}`"), t, e.send_keys(&v)).await
            }
            .await;
            (format!("fill {selector}"), res)
        }
        ActionKind::Select { selector, value } => {
            let res = async {
                let v = render(value, ctx)?;
                let e = find(c, selector, t).await?;
                bounded(
                    &format!("selecting `{v}` in `{selector}`"),
                    t,
                    e.select_by_value(&v),
                )
                .await
            }
            .await;
            (format!("select {selector}"), res)
        }
        ActionKind::Press { selector, key } => {
            let res = async {
                let e = match selector {
                    Some(s) => find(c, s, t).await?,
                    None => bounded("finding the focused element", t, c.active_element()).await?,
                };
                bounded(&format!("pressing {key}"), t, e.send_keys(&key_code(key))).await
            }
            .await;
            (format!("press {key}"), res)
        }
        ActionKind::WaitFor(cond) => {
            let label = match cond {
                WaitCondition::Present(s)
                | WaitCondition::Visible(s)
                | WaitCondition::Text { selector: s, .. } => {
                    format!("wait_for {s}")
                }
                WaitCondition::Url(_) => "wait_for url".into(),
            };
            let res = match cond {
                WaitCondition::Present(s) => find(c, s, t).await.map(|_| ()),
                WaitCondition::Visible(s) => {
                    let s = s.clone();
                    poll(t, || visible(c, &s))
                        .await
                        .map_err(|f| retitle(f, &format!("`{s}` did not become visible")))
                }
                WaitCondition::Text { selector, text } => match render(text, ctx) {
                    Err(f) => Err(f),
                    Ok(want) => {
                        let p = Predicate::Contains(crate::journey::Expected::Text(
                            crate::template::Template::literal(&want),
                        ));
                        poll(t, || async {
                            element_text(c, selector).await.and_then(|got| {
                                pred_ok(&p, got.as_deref(), ctx, &format!("text of `{selector}`"))
                            })
                        })
                        .await
                        .map(|_| ())
                        .map_err(as_element_timeout)
                    }
                },
                WaitCondition::Url(u) => match render(u, ctx) {
                    Err(f) => Err(f),
                    Ok(want) => {
                        poll(t, || async {
                            let cur = bounded("reading the URL", CALL_TIMEOUT, c.current_url())
                                .await?
                                .to_string();
                            if cur.contains(&want) {
                                Ok(())
                            } else {
                                Err(Failure::new(
                                    Reason::Timeout,
                                    format!("URL is `{cur}`, waited for `{want}`"),
                                ))
                            }
                        })
                        .await
                    }
                },
            };
            (label, res)
        }
        ActionKind::Expect(e) => {
            let (label, res) = expect(e, ctx, c, t).await;
            (label, res)
        }
        ActionKind::Capture(caps) => {
            for cap in caps {
                let v = match &cap.source {
                    CaptureSource::Url => bounded("reading the URL", t, c.current_url())
                        .await
                        .map(|u| u.to_string()),
                    CaptureSource::Element { selector, attr } => match find(c, selector, t).await {
                        Err(f) => Err(f),
                        Ok(e) => match attr {
                            Some(a) => {
                                bounded(&format!("reading `{a}` of `{selector}`"), t, e.attr(a))
                                    .await
                                    .and_then(|v| {
                                        v.ok_or_else(|| {
                                            Failure::new(
                                                Reason::Capture,
                                                format!("`{selector}` has no attribute `{a}`"),
                                            )
                                        })
                                    })
                            }
                            None => {
                                bounded(&format!("reading the text of `{selector}`"), t, e.text())
                                    .await
                            }
                        },
                    },
                    _ => Err(Failure::new(
                        Reason::Internal,
                        "unsupported browser capture",
                    )),
                };
                match v {
                    Ok(v) => ctx.set_capture(cap, v),
                    Err(mut f) => {
                        if f.reason == Reason::BrowserElement {
                            f.reason = Reason::Capture;
                        }
                        return (format!("capture {}", cap.name), Err(f.at(cap.span)));
                    }
                }
            }
            ("capture".into(), Ok(()))
        }
        ActionKind::Screenshot(name) => {
            let res = async {
                let png = bounded("screenshot", t, c.screenshot()).await?;
                let dir = artifacts.join(&ctx.journey);
                let _ = std::fs::create_dir_all(&dir);
                let safe: String = name
                    .chars()
                    .map(|ch| {
                        if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                            ch
                        } else {
                            '_'
                        }
                    })
                    .collect();
                std::fs::write(dir.join(format!("{safe}.png")), png).map_err(|e| {
                    Failure::new(Reason::Internal, format!("cannot save screenshot: {e}"))
                })
            }
            .await;
            (format!("screenshot {name}"), res)
        }
    }
}

fn retitle(mut f: Failure, msg: &str) -> Failure {
    if f.reason == Reason::Timeout || f.reason == Reason::Assertion {
        f.reason = Reason::BrowserElement;
        f.message = msg.to_string();
    }
    f
}

fn as_element_timeout(mut f: Failure) -> Failure {
    if f.reason == Reason::Assertion {
        f.reason = Reason::BrowserElement;
    }
    f
}

async fn element_text(c: &fantoccini::Client, sel: &str) -> Result<Option<String>, Failure> {
    match bounded(
        &format!("finding `{sel}`"),
        CALL_TIMEOUT,
        c.find_all(Locator::Css(sel)),
    )
    .await?
    .into_iter()
    .next()
    {
        None => Ok(None),
        Some(e) => bounded(
            &format!("reading the text of `{sel}`"),
            CALL_TIMEOUT,
            e.text(),
        )
        .await
        .map(Some),
    }
}

async fn visible(c: &fantoccini::Client, sel: &str) -> Result<(), Failure> {
    for e in bounded(
        &format!("finding `{sel}`"),
        CALL_TIMEOUT,
        c.find_all(Locator::Css(sel)),
    )
    .await?
    {
        if bounded("visibility", CALL_TIMEOUT, e.is_displayed()).await? {
            return Ok(());
        }
    }
    Err(
        Failure::new(Reason::Assertion, format!("`{sel}` is not visible"))
            .expected_actual("visible", "hidden or absent"),
    )
}

/// Browser assertions wait (up to their timeout) for the page to comply, as
/// pages change after scripts run; the failure is the last observed state.
async fn expect(
    e: &BrowserExpect,
    ctx: &RunCtx,
    c: &fantoccini::Client,
    t: Duration,
) -> (String, Result<(), Failure>) {
    match e {
        BrowserExpect::Text { selector, pred } => (
            format!("expect {selector}"),
            poll(t, || async {
                let got = element_text(c, selector).await?;
                pred_ok(pred, got.as_deref(), ctx, &format!("text of `{selector}`"))
            })
            .await,
        ),
        BrowserExpect::Visible(s) => (
            format!("expect {s} visible"),
            poll(t, || visible(c, s)).await,
        ),
        BrowserExpect::Absent(s) => (
            format!("expect {s} absent"),
            poll(t, || async {
                let n = bounded(
                    &format!("finding `{s}`"),
                    CALL_TIMEOUT,
                    c.find_all(Locator::Css(s)),
                )
                .await?
                .len();
                if n == 0 {
                    Ok(())
                } else {
                    Err(Failure::new(
                        Reason::Assertion,
                        format!("`{s}`: expected absent, got {n} element(s)"),
                    )
                    .expected_actual("absent", format!("{n} element(s)")))
                }
            })
            .await,
        ),
        BrowserExpect::Count { selector, count } => (
            format!("expect {selector} count"),
            poll(t, || async {
                let n = bounded(
                    &format!("finding `{selector}`"),
                    CALL_TIMEOUT,
                    c.find_all(Locator::Css(selector)),
                )
                .await?
                .len() as u64;
                if n == *count {
                    Ok(())
                } else {
                    Err(Failure::new(
                        Reason::Assertion,
                        format!("`{selector}`: expected {count} element(s), got {n}"),
                    )
                    .expected_actual(count.to_string(), n.to_string()))
                }
            })
            .await,
        ),
        BrowserExpect::Attribute {
            selector,
            name,
            pred,
        } => (
            format!("expect {selector}[{name}]"),
            poll(t, || async {
                let got = match bounded(
                    &format!("finding `{selector}`"),
                    CALL_TIMEOUT,
                    c.find_all(Locator::Css(selector)),
                )
                .await?
                .into_iter()
                .next()
                {
                    None => None,
                    Some(el) => {
                        bounded(&format!("reading `{name}`"), CALL_TIMEOUT, el.attr(name)).await?
                    }
                };
                pred_ok(
                    pred,
                    got.as_deref(),
                    ctx,
                    &format!("`{name}` of `{selector}`"),
                )
            })
            .await,
        ),
        BrowserExpect::Url(p) => (
            "expect url".into(),
            poll(t, || async {
                let u = bounded("reading the URL", CALL_TIMEOUT, c.current_url())
                    .await?
                    .to_string();
                pred_ok(p, Some(&u), ctx, "URL")
            })
            .await,
        ),
        BrowserExpect::Title(p) => (
            "expect title".into(),
            poll(t, || async {
                let title = bounded("reading the title", CALL_TIMEOUT, c.title()).await?;
                pred_ok(p, Some(&title), ctx, "title")
            })
            .await,
        ),
    }
}

/// The artifact path for a journey's file, if it is inside the artifacts dir.
pub fn artifact_path(cfg: &BrowserConfig, journey: &str, file: &str) -> Option<PathBuf> {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (ok(journey) && ok(file)).then(|| cfg.artifacts_dir.join(journey).join(file))
}
