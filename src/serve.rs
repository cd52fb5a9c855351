//! `wayprobe serve`: load journeys, schedule them, serve the endpoints, and
//! reload on SIGHUP, `POST /-/reload` or a change in the journey files.
//!
//! A reload with any invalid journey (or an invalid `--web.config.file`)
//! changes nothing: the last good set keeps running and the diagnostics are
//! logged, shown on the status page and in
//! `wayprobe_config_last_reload_successful 0`. Files are read on a blocking
//! thread, and the endpoints run on their own runtime, so neither a reload
//! nor a crowd of readers delays a journey.

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
use crate::server::{AppState, ReloadRequest, ServerOptions, SharedWeb};
use crate::status::{Recorder, ReloadError, StatusStore};
use crate::web::{WebConfig, WebConfigError};

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
    /// Loads the journeys. At a reload (`reload`), a `--var` no journey
    /// declares any more is a warning: the flag cannot change while serving.
    fn load(&self, reload: bool) -> Result<Vec<Journey>, LoadError> {
        match self {
            Source::Paths { paths, opts } => {
                let reloading;
                let opts = if reload {
                    reloading = LoadOptions {
                        unknown_vars_warn: true,
                        ..opts.clone()
                    };
                    &reloading
                } else {
                    opts
                };
                journey::load_paths(paths, opts).map(|l| {
                    for w in &l.warnings {
                        tracing::warn!(diagnostic = %w.render(false), "journey warning");
                    }
                    l.journeys
                })
            }
            Source::Fixed(j) => Ok(j.clone()),
        }
    }

    /// A fingerprint of every journey and fragments file: its name and, read through
    /// symlinks (so a Kubernetes ConfigMap's `..data` swap is seen), its
    /// device, inode, size, mtime and ctime. Only metadata: reading every
    /// file on every tick was a third of all CPU at 10,000 journeys. An
    /// editor's in-place write changes mtime and ctime, an atomic rename or
    /// a ConfigMap swap the inode; a file that cannot be stat'ed counts as
    /// missing.
    fn checksum(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let Source::Paths { paths, .. } = self else {
            return None;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for p in paths {
            match journey::load::watched_files(p) {
                Ok(files) => {
                    for f in files {
                        f.hash(&mut h);
                        std::fs::metadata(&f)
                            .ok()
                            .map(|m| {
                                (
                                    m.dev(),
                                    m.ino(),
                                    m.size(),
                                    m.mtime(),
                                    m.mtime_nsec(),
                                    m.ctime(),
                                    m.ctime_nsec(),
                                )
                            })
                            .hash(&mut h);
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
    /// Which journeys this process runs (`--shard I/N`; all by default).
    pub shard: crate::shard::Shard,
    /// Scheduler limits.
    pub scheduler: SchedulerConfig,
    /// How often journey files are checked for changes (zero: never).
    pub watch_interval: Duration,
    /// Runs the journeys.
    pub probe: Arc<dyn Probe>,
    /// `--web.config.file`: TLS, basic auth and headers (re-read on reload).
    pub web_config_file: Option<PathBuf>,
    /// Connection limits, timeouts and `--web.enable-lifecycle`.
    pub server: ServerOptions,
    /// Where the status page and API read the SLO recording rules from.
    pub prometheus: Option<Arc<crate::slo_prom::PromReader>>,
    /// The browser endpoint (health-checked into `wayprobe_webdriver_up`).
    #[cfg(feature = "browser")]
    pub browser: Option<crate::step::browser::Browser>,
    /// The span exporter's counters, registered when spans are exported.
    pub trace_export: Option<crate::otel::ExportCounters>,
    /// The status page and API as rendered, shared by their readers (one
    /// render per status generation and query; its counter shows how many).
    pub pages: Arc<crate::server::pages::PageCache>,
}

impl ServeConfig {
    /// A config with defaults around `source`, probing with `runner`.
    pub fn new(source: Source, runner: Runner) -> Self {
        Self {
            #[cfg(feature = "browser")]
            browser: runner.browser().cloned(),
            trace_export: runner.exporter().map(|e| e.counters().clone()),
            source,
            location: "local".into(),
            shard: crate::shard::Shard::ALL,
            scheduler: SchedulerConfig::default(),
            watch_interval: Duration::from_secs(5),
            probe: Arc::new(runner),
            web_config_file: None,
            server: ServerOptions::default(),
            prometheus: None,
            pages: Arc::default(),
        }
    }
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The journeys are invalid at start-up.
    #[error("invalid journeys: {0}")]
    Invalid(#[from] LoadError),
    /// `--web.config.file` is invalid at start-up.
    #[error("invalid web config: {0}")]
    Web(#[from] WebConfigError),
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
    let loaded = cfg.source.load(false)?;
    let web = Arc::new(SharedWeb::new(match &cfg.web_config_file {
        Some(p) => WebConfig::load(p)?,
        None => WebConfig::default(),
    }));
    let mut metrics = Metrics::new(&cfg.location);
    if let Some(c) = &cfg.trace_export {
        metrics.register_trace_export(c);
    }
    let metrics = Arc::new(metrics);
    // The fingerprint is of every journey: the rules are generated from all of them.
    metrics.set_rules_fingerprint(&loaded);
    let status = Arc::new(StatusStore::new(&cfg.location));
    let journeys = own_share(cfg.shard, loaded, &status);
    let recorder = Recorder {
        status: status.clone(),
    };
    let mut scheduler =
        Scheduler::new(cfg.probe.clone(), recorder, metrics.clone(), &cfg.scheduler);
    status.set_journeys(&journeys);
    scheduler.apply(&journeys);
    metrics.reloaded(true);
    tracing::info!(journeys = journeys.len(), location = %cfg.location, shard = %cfg.shard, "journeys loaded");

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
    let (max_connections, file_limit) = crate::server::inbound_budget(cfg.server.max_connections);
    if max_connections < cfg.server.max_connections {
        tracing::warn!(
            max_connections,
            file_limit,
            "connection cap lowered to a quarter of the file limit, keeping the rest for probes"
        );
    }
    {
        let w = web.current();
        tracing::info!(
            tls = w.tls.is_some(),
            basic_auth = w.requires_auth(),
            client_auth = ?w.client_auth,
            lifecycle = cfg.server.enable_lifecycle,
            max_connections,
            "HTTP endpoints configured"
        );
    }
    let state = AppState {
        metrics: metrics.clone(),
        status: status.clone(),
        reload: reload_tx,
        ready: ready.clone(),
        artifacts_dir,
        web: web.clone(),
        options: ServerOptions {
            max_connections,
            ..cfg.server.clone()
        },
        heavy: Arc::new(tokio::sync::Semaphore::new(HTTP_HEAVY_AT_ONCE)),
        prometheus: cfg.prometheus.clone(),
        pages: cfg.pages.clone(),
    };
    let server = spawn_http(listener, state, stop.clone())?;

    let mut last_sum = cfg.source.checksum();
    let mut last_web_sum = web.current().fingerprint();
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
                let res = reload(&cfg, &web, &mut scheduler, &metrics, &status).await;
                let source = cfg.source.clone();
                last_sum = tokio::task::spawn_blocking(move || source.checksum()).await.ok().flatten();
                let _ = req.send(res);
            }
            _ = watch.tick(), if !cfg.watch_interval.is_zero() => {
                let source = cfg.source.clone();
                let w = web.current();
                let (sum, web_sum) = tokio::task::spawn_blocking(move || (source.checksum(), w.fingerprint()))
                    .await
                    .unwrap_or((last_sum, last_web_sum));
                if sum != last_sum || web_sum != last_web_sum {
                    tracing::info!("journey or web config files changed; reloading");
                    let _ = reload(&cfg, &web, &mut scheduler, &metrics, &status).await;
                    last_sum = sum;
                    // What is in force now (a refused file is retried only once it changes again).
                    last_web_sum = web_sum;
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
        .map_err(|_| std::io::Error::other("the HTTP thread stopped"))??;
    Ok(())
}

/// The journeys `shard` runs; the names of the others go to the status store.
fn own_share(
    shard: crate::shard::Shard,
    all: Vec<Journey>,
    status: &StatusStore,
) -> Vec<Arc<Journey>> {
    let (mine, others): (Vec<Journey>, Vec<Journey>) =
        all.into_iter().partition(|j| shard.owns(&j.name));
    status.set_shard(shard, others.into_iter().map(|j| j.name).collect());
    // Not `collect()`: it would reuse `mine`'s buffer (a whole `Journey` per
    // slot, 6 MB at 10,000 journeys) for the 8-byte `Arc`s, kept for good.
    let mut out = Vec::with_capacity(mine.len());
    out.extend(mine.into_iter().map(Arc::new));
    out
}

/// Blocking threads of the HTTP runtime (bcrypt, page rendering, files).
const HTTP_BLOCKING_THREADS: usize = 2;

/// bcrypt checks and page renders at once, in each lane: one, so that
/// however many clients (or wrong passwords) arrive, the endpoints keep
/// their work to a thread or two and the rest stays with the probes.
const HTTP_HEAVY_AT_ONCE: usize = 1;

/// Runs the endpoints on a runtime of their own (one worker, a few blocking
/// threads), so that TLS handshakes, bcrypt and rendering pages for many
/// readers never take a worker that runs journeys. The status page and API
/// are served from there on the page lane's threads at `SCHED_IDLE` (see
/// `server::run`). Resolves when it stops.
fn spawn_http(
    listener: tokio::net::TcpListener,
    state: AppState,
    stop: CancellationToken,
) -> std::io::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    let listener = listener.into_std()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wayprobe-http".into())
        .spawn(move || {
            let res = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(HTTP_BLOCKING_THREADS)
                .thread_name("wayprobe-http")
                .enable_all()
                .build()
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        crate::server::run(listener, state, async move {
                            stop.cancelled().await;
                        })
                        .await
                    })
                });
            let _ = tx.send(res);
        })?;
    Ok(rx)
}

/// Re-reads the web config and the journeys (on a blocking thread) and puts
/// both in force, or neither.
async fn reload(
    cfg: &ServeConfig,
    web: &SharedWeb,
    scheduler: &mut Scheduler,
    metrics: &Metrics,
    status: &StatusStore,
) -> Result<String, String> {
    let source = cfg.source.clone();
    let web_file = cfg.web_config_file.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let w = web_file.as_deref().map(WebConfig::load).transpose();
        (w, source.load(true))
    })
    .await;
    let (new_web, journeys) = match loaded {
        Ok(x) => x,
        Err(e) => return Err(format!("reload failed: {e}\n")),
    };
    let new_web = match new_web {
        Ok(w) => w,
        Err(e) => {
            let text = format!("{e}\n");
            tracing::error!(error = %e, "reload refused: invalid web config; the previous configuration keeps running");
            metrics.reloaded(false);
            status.set_reload_error(Some(ReloadError {
                at: SystemTime::now(),
                diagnostics: text.clone(),
            }));
            return Err(text);
        }
    };
    match journeys {
        Ok(js) => {
            if let Some(w) = new_web {
                web.replace(w);
            }
            metrics.set_rules_fingerprint(&js);
            let js = own_share(cfg.shard, js, status);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The watch reads metadata only: an in-place edit of the same size, a
    /// new file and a removed one all change the fingerprint; nothing
    /// changing keeps it.
    #[test]
    fn the_watch_fingerprint_sees_edits_without_reading_files() {
        let dir = std::env::temp_dir().join(format!("wayprobe-watch-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.yaml");
        std::fs::write(&a, "name: a\n").unwrap();
        let src = Source::Paths {
            paths: vec![dir.clone()],
            opts: LoadOptions::default(),
        };
        let first = src.checksum();
        assert!(first.is_some());
        assert_eq!(src.checksum(), first, "nothing changed");
        // Past the file system's timestamp granularity (a jiffy at worst).
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&a, "name: b\n").unwrap();
        let edited = src.checksum();
        assert_ne!(edited, first, "same-size edit in place");
        std::fs::write(dir.join("b.yaml"), "name: c\n").unwrap();
        let added = src.checksum();
        assert_ne!(added, edited, "a new file");
        std::fs::remove_file(dir.join("b.yaml")).unwrap();
        assert_ne!(src.checksum(), added, "a removed file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
