//! `wayprobe serve`: load journeys, schedule them, serve the endpoints, and
//! reload on SIGHUP, `POST /-/reload` or a change in the journey files.
//!
//! A reload with any invalid journey changes nothing: the last good set keeps
//! running and the diagnostics are logged, shown on the status page and in
//! `wayprobe_config_last_reload_successful 0`.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::journey::{self, Journey, LoadError, LoadOptions};
use crate::metrics::Metrics;
use crate::run::Runner;
use crate::scheduler::{Probe, Scheduler, SchedulerConfig};
use crate::server::{AppState, ReloadRequest};
use crate::status::{Recorder, ReloadError, StatusStore};

/// Where journeys come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Files and directories, watched for changes.
    Paths {
        /// The paths.
        paths: Vec<PathBuf>,
        /// `--var` overrides.
        opts: LoadOptions,
    },
    /// A fixed set (the demo's embedded examples).
    Fixed(Vec<Journey>),
}

impl Source {
    fn load(&self) -> Result<Vec<Journey>, LoadError> {
        match self {
            Source::Paths { paths, opts } => journey::load_paths(paths, opts).map(|l| {
                for w in &l.warnings {
                    tracing::warn!(diagnostic = %w.render(false), "journey warning");
                }
                l.journeys
            }),
            Source::Fixed(j) => Ok(j.clone()),
        }
    }

    /// A checksum of every journey file (names and contents, read through
    /// symlinks, so a Kubernetes ConfigMap's `..data` swap is seen).
    fn checksum(&self) -> Option<u64> {
        let Source::Paths { paths, .. } = self else {
            return None;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for p in paths {
            match journey::load::journey_files(p) {
                Ok(files) => {
                    for f in files {
                        f.hash(&mut h);
                        std::fs::read(&f).ok().hash(&mut h);
                    }
                }
                Err(_) => p.hash(&mut h),
            }
        }
        Some(h.finish())
    }
}

/// Everything `serve` needs.
pub struct ServeConfig {
    /// The journeys.
    pub source: Source,
    /// The `location` label.
    pub location: String,
    /// Scheduler limits.
    pub scheduler: SchedulerConfig,
    /// How often journey files are checked for changes (zero: never).
    pub watch_interval: Duration,
    /// Runs the journeys.
    pub probe: Arc<dyn Probe>,
    /// The browser endpoint (health-checked into `wayprobe_webdriver_up`).
    #[cfg(feature = "browser")]
    pub browser: Option<crate::browser::Browser>,
}

impl ServeConfig {
    /// A config with defaults around `source`, probing with `runner`.
    pub fn new(source: Source, runner: Runner) -> Self {
        Self {
            #[cfg(feature = "browser")]
            browser: runner.browser().cloned(),
            source,
            location: "local".into(),
            scheduler: SchedulerConfig::default(),
            watch_interval: Duration::from_secs(5),
            probe: Arc::new(runner),
        }
    }
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The journeys are invalid at start-up.
    #[error("invalid journeys: {0}")]
    Invalid(#[from] LoadError),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// A handle to ask a running `serve` to reload.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<ReloadRequest>);

impl Reloader {
    /// Reloads and returns a summary, or the rendered diagnostics.
    pub async fn reload(&self) -> Result<String, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "serve has stopped".to_string())?;
        rx.await.map_err(|_| "serve has stopped".to_string())?
    }
}

/// Runs until `shutdown` resolves: schedules the journeys and serves the
/// endpoints on `listener`. Fails only if the journeys are invalid at start.
pub async fn serve(
    cfg: ServeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (tx, rx) = mpsc::channel(8);
    serve_with(cfg, listener, shutdown, tx, rx).await
}

/// Like [`serve`], with a reload channel the caller also holds (SIGHUP, tests).
pub async fn serve_with(
    cfg: ServeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    reload_tx: mpsc::Sender<ReloadRequest>,
    mut reload_rx: mpsc::Receiver<ReloadRequest>,
) -> Result<(), ServeError> {
    let loaded = cfg.source.load()?;
    let metrics = Arc::new(Metrics::new(&cfg.location));
    metrics.set_rules_fingerprint(&loaded);
    let journeys: Vec<Arc<Journey>> = loaded.into_iter().map(Arc::new).collect();
    let status = Arc::new(StatusStore::new(&cfg.location));
    let recorder = Recorder {
        status: status.clone(),
    };
    let mut scheduler =
        Scheduler::new(cfg.probe.clone(), recorder, metrics.clone(), &cfg.scheduler);
    status.set_journeys(&journeys);
    scheduler.apply(&journeys);
    metrics.reloaded(true);
    tracing::info!(journeys = journeys.len(), location = %cfg.location, "journeys loaded");

    let ready = Arc::new(AtomicBool::new(true));
    let stop = CancellationToken::new();
    #[cfg(feature = "browser")]
    let artifacts_dir = cfg
        .browser
        .as_ref()
        .map(|b| b.config().artifacts_dir.clone());
    #[cfg(not(feature = "browser"))]
    let artifacts_dir = None;
    #[cfg(feature = "browser")]
    if let Some(b) = &cfg.browser {
        b.set_gauge(metrics.webdriver_up.clone());
        let b = b.clone();
        let stop = stop.clone();
        // Keeps `wayprobe_webdriver_up` current between browser runs.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(15)) => { b.health_check().await; }
                }
            }
        });
    }
    let state = AppState {
        metrics: metrics.clone(),
        status: status.clone(),
        reload: reload_tx,
        ready: ready.clone(),
        artifacts_dir,
    };
    let server_stop = stop.clone();
    let server = tokio::spawn(crate::server::run(listener, state, async move {
        server_stop.cancelled().await;
    }));

    let mut last_sum = cfg.source.checksum();
    let mut watch = tokio::time::interval(if cfg.watch_interval.is_zero() {
        Duration::from_secs(3600 * 24 * 365)
    } else {
        cfg.watch_interval
    });
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    watch.tick().await;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            req = reload_rx.recv() => {
                let Some(req) = req else { break };
                let res = reload(&cfg.source, &mut scheduler, &metrics, &status);
                last_sum = cfg.source.checksum();
                let _ = req.send(res);
            }
            _ = watch.tick(), if !cfg.watch_interval.is_zero() => {
                let source = cfg.source.clone();
                let sum = tokio::task::spawn_blocking(move || source.checksum()).await.ok().flatten();
                if sum != last_sum {
                    tracing::info!("journey files changed; reloading");
                    let _ = reload(&cfg.source, &mut scheduler, &metrics, &status);
                    last_sum = sum;
                }
            }
        }
    }
    tracing::info!("shutting down: no new runs; waiting for runs in flight");
    ready.store(false, Ordering::Release);
    scheduler.shutdown().await;
    stop.cancel();
    #[cfg(feature = "browser")]
    if let Some(b) = &cfg.browser {
        b.shutdown().await;
    }
    server
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(())
}

fn reload(
    source: &Source,
    scheduler: &mut Scheduler,
    metrics: &Metrics,
    status: &StatusStore,
) -> Result<String, String> {
    match source.load() {
        Ok(js) => {
            metrics.set_rules_fingerprint(&js);
            let js: Vec<Arc<Journey>> = js.into_iter().map(Arc::new).collect();
            status.set_journeys(&js);
            let a = scheduler.apply(&js);
            metrics.reloaded(true);
            status.set_reload_error(None);
            let msg = format!(
                "reloaded {} journeys: {} added, {} changed, {} removed, {} unchanged",
                js.len(),
                a.added,
                a.changed,
                a.removed,
                a.unchanged
            );
            tracing::info!(
                added = a.added,
                changed = a.changed,
                removed = a.removed,
                unchanged = a.unchanged,
                "reloaded"
            );
            Ok(msg)
        }
        Err(e) => {
            let text: String = e
                .diagnostics()
                .iter()
                .map(|d| d.render(false) + "\n")
                .collect();
            for d in e.diagnostics() {
                tracing::error!(
                    location = d.location().unwrap_or_default(),
                    diagnostic = %d.render(false),
                    "reload refused; the previous journeys keep running"
                );
            }
            metrics.reloaded(false);
            status.set_reload_error(Some(ReloadError {
                at: SystemTime::now(),
                diagnostics: text.clone(),
            }));
            Err(text)
        }
    }
}
