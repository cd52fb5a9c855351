//! Where an HTTP step's time went: DNS, connect (TCP and TLS), time to first
//! byte and download, like curl's `-w` timings.
//!
//! reqwest has no timing breakdown, but it lets a client time its own DNS
//! lookups (a resolver) and the making of each new connection (a connector
//! layer). A run's client records those events here; the HTTP step drains
//! them after each request. Reused connections record nothing, as it should.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::outcome::Timing;

/// Timing events of one run's connections.
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

    /// A DNS resolver that times each lookup (the system resolver underneath).
    pub fn resolver(&self) -> Arc<TimedResolver> {
        Arc::new(TimedResolver(self.clone()))
    }

    /// A connector layer that times each new connection (DNS + TCP + TLS).
    pub fn layer(&self) -> TimingLayer {
        TimingLayer(self.clone())
    }
}

/// See [`Phases::resolver`].
#[derive(Debug)]
pub struct TimedResolver(Phases);

impl reqwest::dns::Resolve for TimedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let phases = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let t = Instant::now();
            let r = tokio::net::lookup_host((host.as_str(), 0)).await;
            phases.push("dns", t);
            let addrs: Vec<SocketAddr> = r?.collect();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// See [`Phases::layer`].
#[derive(Debug, Clone)]
pub struct TimingLayer(Phases);

impl<S> tower_layer::Layer<S> for TimingLayer {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            phases: self.0.clone(),
        }
    }
}

/// A connector service that records how long each connection took.
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    phases: Phases,
}

impl<S, Req> tower_service::Service<Req> for Timed<S>
where
    S: tower_service::Service<Req>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let phases = self.phases.clone();
        let t = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            if r.is_ok() {
                phases.push("connect", t);
            }
            r
        })
    }
}
