//! Supervising chromedriver: on loopback, in its own process group (so no
//! Chromium is orphaned), with its own temporary directory, health-checked
//! and restarted when it dies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use crate::outcome::{Failure, Reason};

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
            artifacts_dir: default_artifacts_dir(),
            keep_artifacts: 5,
        }
    }
}

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

pub(super) struct Inner {
    pub(super) cfg: BrowserConfig,
    pub(super) sessions: Arc<Semaphore>,
    driver: Mutex<Option<Driver>>,
    up: AtomicBool,
    gauge: OnceLock<Gauge>,
    /// Whether the loss of trace propagation was said (once per endpoint).
    no_propagation_said: AtomicBool,
}

/// A handle to the browser endpoint; cheap to clone.
#[derive(Clone)]
pub struct Browser {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// The default artifacts directory: private to this user
/// (`$TMPDIR/wayprobe-artifacts-<uid>`, created 0700 on first use), never a
/// directory other users of the machine share.
pub fn default_artifacts_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "wayprobe-artifacts-{}",
        nix::unistd::geteuid().as_raw()
    ))
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

pub(super) async fn driver_ready(url: &str) -> bool {
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
                no_propagation_said: AtomicBool::new(false),
            }),
        }
    }

    /// Reports driver health into `wayprobe_webdriver_up`.
    pub fn set_gauge(&self, g: Gauge) {
        g.set(i64::from(self.inner.up.load(Ordering::Relaxed)));
        let _ = self.inner.gauge.set(g);
    }

    pub(super) fn set_up(&self, up: bool) {
        self.inner.up.store(up, Ordering::Relaxed);
        if let Some(g) = self.inner.gauge.get() {
            g.set(i64::from(up));
        }
    }

    /// Says once, as a warning, that the pages' requests carry no trace
    /// context and why (no DevTools endpoint reachable); later sessions
    /// that lose it too only at debug level.
    pub(super) fn propagation_unavailable(&self, why: &str) {
        if self.inner.no_propagation_said.swap(true, Ordering::Relaxed) {
            tracing::debug!(reason = %why, "browser trace propagation unavailable");
        } else {
            tracing::warn!(
                reason = %why,
                "browser steps' page requests carry no traceparent (said once; HTTP steps are unaffected)"
            );
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
    pub(super) async fn endpoint(&self) -> Result<String, Failure> {
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
}
