//! A run's HTTP connections and where their time went: DNS, TCP connect, TLS
//! handshake, time to first byte and download, like curl's `-w` timings.
//!
//! Each run is a new visitor with its own connections, so each run gets its
//! own small hyper client (its own pool: the steps of one run reuse a
//! connection, runs never share one) over [`Connector`], which opens every
//! connection itself in timed phases. What is expensive to build (the rustls
//! configuration with its trust store, the proxy settings) is built once and
//! shared by every run. Reused connections record nothing, as it should.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::outcome::Timing;

/// Timing events of one run's connections (`dns`, `connect`, `tls`, each its
/// own duration).
#[derive(Debug, Clone, Default)]
pub struct Phases(Arc<Mutex<Vec<Timing>>>);

impl Phases {
    fn push(&self, name: &str, since: Instant) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A run makes a handful of connections; never let this grow unbounded.
        if v.len() < 256 {
            v.push(Timing::new(name, since.elapsed().as_secs_f64() * 1000.0));
        }
    }

    /// Takes the events recorded since the last call.
    pub fn drain(&self) -> Vec<Timing> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The proxies of the process environment (`HTTPS_PROXY`, `HTTP_PROXY`,
/// `ALL_PROXY`, `NO_PROXY`, as curl reads them), read once.
fn proxies() -> &'static Matcher {
    static PROXIES: OnceLock<Matcher> = OnceLock::new();
    PROXIES.get_or_init(Matcher::from_env)
}

/// The `Proxy-Authorization` a plain-HTTP request sent through an
/// environment proxy carries (HTTPS requests authenticate in the tunnel's
/// `CONNECT` instead).
pub fn proxy_auth(dst: &http::Uri) -> Option<http::HeaderValue> {
    if dst.scheme_str() != Some("http") {
        return None;
    }
    proxies().intercept(dst)?.basic_auth().cloned()
}

/// How long an address may stay unanswered before the next one is tried.
const FALLBACK: std::time::Duration = std::time::Duration::from_millis(300);

/// Why a connection could not be opened, by phase.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL has no host.
    #[error("the URL has no host")]
    NoHost,
    /// The name did not resolve.
    #[error("dns error")]
    Dns(#[source] std::io::Error),
    /// No address accepted a TCP connection.
    #[error("tcp connect error")]
    Tcp(#[source] std::io::Error),
    /// The proxy refused the tunnel.
    #[error("proxy CONNECT: {0}")]
    Proxy(String),
    /// The TLS handshake failed.
    #[error("tls handshake error")]
    Tls(#[source] std::io::Error),
}

/// Opens a run's connections in timed phases: DNS (names only, not IP
/// literals), TCP connect, TLS handshake (HTTPS only), through the
/// environment's proxy if it names one.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<ClientConfig>,
    phases: Phases,
}

impl Connector {
    /// A connector over the shared `tls` configuration, recording into `phases`.
    pub fn new(tls: Arc<ClientConfig>, phases: Phases) -> Self {
        Self { tls, phases }
    }

    async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let t = Instant::now();
                let r = tokio::net::lookup_host((host, port)).await;
                self.phases.push("dns", t);
                r.map_err(ConnectError::Dns)?.collect()
            }
        };
        // Happy Eyeballs (RFC 8305), simplified as reqwest's connector does
        // it: the next address is tried when the previous one fails or has
        // not answered within 300 ms, so a black-holed IPv6 address does
        // not cost the whole step.
        let t = Instant::now();
        let mut last = None;
        let mut rest = addrs.into_iter();
        let mut pending = futures_util::stream::FuturesUnordered::new();
        loop {
            if pending.is_empty() {
                match rest.next() {
                    Some(a) => pending.push(TcpStream::connect(a)),
                    None => break,
                }
            }
            tokio::select! {
                Some(r) = futures_util::StreamExt::next(&mut pending) => match r {
                    Ok(s) => {
                        self.phases.push("connect", t);
                        // Requests are small and written whole: no Nagle delay.
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = Some(e),
                },
                () = tokio::time::sleep(FALLBACK), if rest.len() > 0 => {
                    if let Some(a) = rest.next() {
                        pending.push(TcpStream::connect(a));
                    }
                }
            }
        }
        Err(ConnectError::Tcp(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host")
        })))
    }

    async fn open(self, dst: http::Uri) -> Result<Conn, ConnectError> {
        let https = dst.scheme_str() == Some("https");
        let host = dst
            .host()
            .ok_or(ConnectError::NoHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = dst.port_u16().unwrap_or(if https { 443 } else { 80 });
        let proxy = proxies().intercept(&dst);
        let (tcp, proxied) = match &proxy {
            None => (self.tcp(&host, port).await?, false),
            Some(p) => {
                let (ph, pp) = (
                    p.uri().host().unwrap_or_default(),
                    p.uri().port_u16().unwrap_or(80),
                );
                let mut s = self.tcp(ph.trim_matches(['[', ']']), pp).await?;
                if https {
                    tunnel(&mut s, &host, port, p.basic_auth()).await?;
                }
                (s, !https)
            }
        };
        if !https {
            return Ok(Conn {
                io: TokioIo::new(Stream::Plain(tcp)),
                h2: false,
                proxied,
            });
        }
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| ConnectError::Tls(std::io::Error::other(e)))?;
        let t = Instant::now();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(ConnectError::Tls)?;
        self.phases.push("tls", t);
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Conn {
            io: TokioIo::new(Stream::Tls(Box::new(tls))),
            h2,
            proxied: false,
        })
    }
}

/// Asks an HTTP proxy for a tunnel to `host:port` (RFC 9110 `CONNECT`).
async fn tunnel(
    s: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&http::HeaderValue>,
) -> Result<(), ConnectError> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = auth.and_then(|a| a.to_str().ok()) {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    let io = |e: std::io::Error| ConnectError::Proxy(e.to_string());
    s.write_all(req.as_bytes()).await.map_err(io)?;
    // Read the proxy's answer head byte by byte, so no byte of the tunnel
    // (the server's TLS) is taken; bounded at 8 KiB.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(ConnectError::Proxy("answer head over 8 KiB".into()));
        }
        let b = s.read_u8().await.map_err(io)?;
        head.push(b);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(ConnectError::Proxy(format!(
            "the proxy answered `{status}`"
        )))
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        Box::pin(self.clone().open(dst))
    }
}

/// A plain or TLS stream (both `Unpin`, so no projection is needed).
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One connection of a run, as hyper's client takes it.
pub struct Conn {
    io: TokioIo<Stream>,
    h2: bool,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        let c = Connected::new().proxy(self.proxied);
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A run's HTTP client: its own pool of connections over a [`Connector`].
pub type Client = hyper_util::client::legacy::Client<Connector, reqwest::Body>;

/// A new visitor's client: no connection yet, the shared TLS setup.
pub fn client(tls: Arc<ClientConfig>, phases: Phases) -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build(Connector::new(tls, phases))
}
