//! The connection side of the HTTP server: the accept loop under the
//! connection cap, TLS, the lane a connection is served in (its first
//! request decides), and the guard that drops a client that stops reading.
//! Handlers and routes are in the parent module.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{AppState, ConnInfo, app};
use crate::web::WebConfig;

/// Where a connection is served, decided by the target of its first
/// request and kept for the connection's life.
///
/// Why two lanes: readers of the status page and API cost CPU (parsing,
/// writing hundreds of KB per answer) in proportion to how many there are,
/// and that CPU is the probes' (a late probe is a wrong SLI). Threads at
/// `SCHED_IDLE` run only when no normal thread wants the CPU and are
/// preempted the moment one wakes, so the kernel itself keeps readers out
/// of the probes' way, without a rate to tune. `/metrics` and health stay
/// at normal priority: a scrape or a kubelet probe that starved whenever
/// the probes (or a busy Chromium) kept the cores busy would lose data or
/// restart the pod. The page lane shares only short locks with the probes
/// (the status snapshot; a series while `/metrics` is encoded): a probe
/// that waits on one frees its CPU, so the holder runs unless other work at
/// normal priority wants that CPU too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`: the HTTP
    /// runtime, at normal priority.
    Control,
    /// Everything else (status page, API, reports, artifacts, 404s): the
    /// page lane, at `SCHED_IDLE`.
    Pages,
}

impl Lane {
    /// The lane of a request for `path` (without its query).
    pub(super) fn of_path(path: &str) -> Lane {
        match path {
            "/metrics" | "/-/healthy" | "/-/ready" | "/-/reload" => Lane::Control,
            _ => Lane::Pages,
        }
    }

    /// The lane of a connection whose first request starts with `head`:
    /// its target's path, in origin form or absolute form. Anything
    /// unreadable goes to the page lane (hyper answers it there).
    pub(super) fn of_head(head: &[u8]) -> Lane {
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
        let Ok(target) = std::str::from_utf8(target) else {
            return Lane::Pages;
        };
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target,
        };
        Lane::of_path(path.split(['?', '#']).next().unwrap_or_default())
    }
}

/// The two lanes' routers and the page lane's runtime.
#[derive(Clone)]
struct Lanes {
    control: Router,
    pages: Router,
    pages_rt: tokio::runtime::Handle,
}

/// The page lane's threads' name (`/proc/PID/task/*/comm`).
pub const PAGE_LANE_THREAD: &str = "wayprobe-pages";

/// Blocking threads of the page lane (page renders, bcrypt, artifact files).
const PAGE_LANE_BLOCKING_THREADS: usize = 2;

/// The page lane's runtime: one worker and a few blocking threads, each put
/// at `SCHED_IDLE` as it starts. Shut down (without waiting) when dropped.
struct PageLane(Option<tokio::runtime::Runtime>);

impl PageLane {
    /// The lane and where to spawn on it.
    fn start() -> std::io::Result<(Self, tokio::runtime::Handle)> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(PAGE_LANE_BLOCKING_THREADS)
            .thread_name(PAGE_LANE_THREAD)
            .on_thread_start(lowest_cpu_priority)
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        Ok((Self(Some(rt)), handle))
    }
}

impl Drop for PageLane {
    fn drop(&mut self) {
        // Dropping a runtime may not block inside another runtime.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Puts the calling thread at `SCHED_IDLE` (Linux; `sched(7)`: "for running
/// very low priority background jobs"). Where it is refused (a seccomp
/// profile, another OS) the page lane runs at normal priority, as the whole
/// HTTP side did before, and says so once.
fn lowest_cpu_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        };
        static WARNED: AtomicBool = AtomicBool::new(false);
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let res = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
        // The policy is what counts: the crate also resets the nice value
        // (ignored under SCHED_IDLE), which a niced process may not do.
        if thread_schedule_policy().ok() != Some(idle) && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = ?res.err(),
                "status page and API threads run at normal CPU priority: SCHED_IDLE was refused"
            );
        }
    }
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, holding at
/// most `state.options.max_connections` connections (see [`inbound_budget`]).
/// Connections are accepted here and served on this runtime or on the page
/// lane's, which `run` starts and stops (see [`Lane`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let opts = state.options.clone();
    let web = state.web.clone();
    let (page_lane, pages_rt) = PageLane::start()?;
    // The page lane's own bcrypt and render permits: a render the kernel
    // holds back must never make a scrape's password check wait.
    let heavy = Arc::new(Semaphore::new(state.heavy.available_permits().max(1)));
    let lanes = Lanes {
        control: app(state.clone()),
        pages: app(AppState { heavy, ..state }),
        pages_rt,
    };
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let conns = tokio_util::task::TaskTracker::new();
    let stop = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: past the cap, clients wait in the backlog.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (lanes, stop, web) = (lanes.clone(), stop.clone(), web.current());
        let timeouts = (opts.read_header_timeout, opts.request_timeout);
        conns.spawn(async move {
            connection(tcp, web, lanes, timeouts, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    stop.cancel();
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), conns.wait()).await;
    drop(page_lane);
    Ok(())
}

/// A stream whose writes fail once they have made no progress for `limit`:
/// a client that stops reading its response cannot hold a connection slot.
/// (Slow headers are hyper's header-read timeout; slow handlers and bodies
/// the request timeout.)
pub(super) struct StallGuard<I> {
    io: I,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<I> StallGuard<I> {
    pub(super) fn new(io: I, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
        }
    }

    /// Passes `r` on, starting the clock when a write cannot proceed.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallGuard<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallGuard<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    web: Arc<WebConfig>,
    lanes: Lanes,
    timeouts: (Duration, Duration),
    stop: CancellationToken,
) {
    let (header_timeout, write_stall) = timeouts;
    let tcp = StallGuard::new(tcp, write_stall);
    match &web.tls {
        None => dispatch(tcp, false, lanes, header_timeout, stop).await,
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            dispatch(tls, client_cert, lanes, header_timeout, stop).await
        }
    }
}

/// Reads the first request's head (within the header timeout, as hyper
/// would have), then serves the connection, that head first, in its lane.
async fn dispatch<I>(
    mut io: I,
    client_cert: bool,
    lanes: Lanes,
    header_timeout: Duration,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head = tokio::select! {
        r = tokio::time::timeout(header_timeout, read_head(&mut io)) => match r {
            Ok(Ok(head)) if !head.is_empty() => head.freeze(),
            _ => return,
        },
        // Shutting down: nothing was asked yet, so nothing is cut off.
        _ = stop.cancelled() => return,
    };
    let lane = Lane::of_head(&head);
    let info = ConnInfo { client_cert, lane };
    let (r, w) = tokio::io::split(io);
    let io = tokio::io::join(std::io::Cursor::new(head).chain(r), w);
    match lane {
        Lane::Control => serve_io(io, info, lanes.control, header_timeout, stop).await,
        Lane::Pages => {
            // The socket stays registered with this runtime's reactor (a
            // cheap wake-up); reads, writes and handlers run on the lane.
            let served = serve_io(io, info, lanes.pages, header_timeout, stop);
            let _ = lanes.pages_rt.spawn(served).await;
        }
    }
}

/// The bytes of a request head as hyper may buffer them.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Reads until the first request's head is complete (a blank line), the
/// client stops sending, or [`MAX_HEAD_BYTES`] (hyper then refuses it).
pub(super) async fn read_head<I: AsyncRead + Unpin>(
    io: &mut I,
) -> std::io::Result<bytes::BytesMut> {
    let mut buf = bytes::BytesMut::with_capacity(1024);
    loop {
        let from = buf.len().saturating_sub(2);
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(4096);
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(buf);
        }
        let tail = &buf[from..];
        let ended =
            tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
        if ended || buf.len() >= MAX_HEAD_BYTES {
            return Ok(buf);
        }
    }
}

async fn serve_io<I>(
    io: I,
    info: ConnInfo,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower_service::Service as _;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info);
        let mut r = router.clone();
        async move { r.call(req.map(axum::body::Body::new)).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}
