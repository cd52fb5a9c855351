//! A real HTTP target, in-process on 127.0.0.1:0, that can misbehave on
//! demand: error statuses, slowness, hangs, resets mid-body, invalid JSON,
//! redirect loops, oversized bodies, and TLS with its own CA.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A running target; servers stop when it is dropped.
pub struct Target {
    /// `http://127.0.0.1:PORT` of the well-behaved-or-not HTTP server.
    pub base: String,
    /// A server that accepts connections and never answers.
    pub hang: String,
    /// A server that sends headers and half a body, then closes.
    pub reset: String,
    /// An HTTPS server whose certificate is signed by [`Target::ca_pem`].
    pub tls: String,
    /// The PEM of the CA that signed the TLS server's certificate.
    pub ca_pem: String,
    /// The same HTTPS server, but it starts each TLS handshake only
    /// [`TLS_SLOW`] after accepting the TCP connection.
    pub tls_slow: String,
    hits: Hits,
    basket: Basket,
    /// Locations `/region` fails for (503), by the `x-probe-location` header.
    down: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long [`Target::tls_slow`] waits between TCP accept and TLS handshake.
pub const TLS_SLOW: Duration = Duration::from_millis(200);

/// Items in the one test customer's basket (`/basket`): `POST` adds one,
/// `DELETE /basket/b-1` empties it, so a test can prove a cleanup ran.
type Basket = Arc<std::sync::atomic::AtomicU64>;

/// Requests served by the HTTP server, by path and query (`/late?ms=5`).
type Hits = Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>;

impl Drop for Target {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(serde::Deserialize)]
struct SlowQ {
    ms: u64,
}

#[derive(serde::Deserialize)]
struct ImgQ {
    img: String,
}

fn app(basket: Basket) -> Router {
    use std::sync::atomic::Ordering::SeqCst;
    // Odd requests fail, even ones pass: every retried run passes on its retry.
    let alternate = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (add, empty) = (basket.clone(), basket);
    super::hostile::routes()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/basket",
            post(move || {
                let items = add.fetch_add(1, SeqCst) + 1;
                async move {
                    (
                        StatusCode::CREATED,
                        axum::Json(serde_json::json!({"basket": "b-1", "items": items})),
                    )
                }
            }),
        )
        .route(
            "/basket/{id}",
            axum::routing::delete(move |Path(id): Path<String>| {
                let found = id == "b-1";
                if found {
                    empty.store(0, SeqCst);
                }
                async move {
                    if found {
                        StatusCode::NO_CONTENT
                    } else {
                        StatusCode::NOT_FOUND
                    }
                }
            }),
        )
        .route(
            "/alternate",
            get(move || {
                let n = alternate.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if n.is_multiple_of(2) {
                        (StatusCode::SERVICE_UNAVAILABLE, "odd request: fails")
                    } else {
                        (StatusCode::OK, "even request: passes")
                    }
                }
            }),
        )
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    format!("status {code} body"),
                )
            }),
        )
        .route(
            "/slow",
            get(|Query(q): Query<SlowQ>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                "slow ok"
            }),
        )
        .route(
            "/invalid-json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], "{\"order\": not json") }),
        )
        .route(
            "/json",
            get(|| async {
                axum::Json(serde_json::json!({
                    "status": "confirmed", "count": 3, "items": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
                    "price": 12.5, "ok": true, "none": null,
                    "tags": ["green", "oolong"], "sizes": [250, 500]
                }))
            }),
        )
        .route(
            "/cookie-attrs",
            get(|| async {
                (
                    [(header::SET_COOKIE, "pref=dark; Path=/; Domain=localhost; SameSite=Lax")],
                    "set",
                )
            }),
        )
        .route(
            "/never-loads",
            get(|Query(q): Query<ImgQ>| async move {
                // The page itself arrives, but an image never does: no load event.
                axum::response::Html(format!("<html><head><title>stuck</title></head><body><p id=here>here</p><img src=\"{}\"></body></html>", q.img))
            }),
        )
        .route(
            "/late",
            get(|Query(q): Query<SlowQ>| async move {
                axum::response::Html(format!(
                    "<html><head><title>late</title></head><body><div id=box></div><script>setTimeout(() => {{ const p = document.createElement('p'); p.id = 'late'; p.textContent = 'finally'; document.getElementById('box').appendChild(p); }}, {});</script></body></html>",
                    q.ms
                ))
            }),
        )
        .route(
            "/inspect",
            axum::routing::any(
                |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| async move {
                    let h = |n: header::HeaderName| {
                        headers.get(n).map(|v| String::from_utf8_lossy(v.as_bytes()).to_string()).unwrap_or_default()
                    };
                    let json = serde_json::json!({
                        "method": method.as_str(),
                        "query": uri.query().unwrap_or(""),
                        "content_type": h(header::CONTENT_TYPE),
                        "x_trace": headers.get("x-trace").map(|v| v.to_str().unwrap_or("").to_string()),
                        "body": String::from_utf8_lossy(&body),
                    });
                    (
                        [
                            (header::SET_COOKIE, "flavour=oolong; Path=/; HttpOnly".to_string()),
                            (header::HeaderName::from_static("x-request-id"), "req-42".to_string()),
                        ],
                        axum::Json(json),
                    )
                },
            ),
        )
        .route(
            "/form",
            get(|| async {
                axum::response::Html(
                    "<html><head><title>form</title></head><body><form action=/inspect method=get>\
                     <input id=q name=q><select id=tea name=tea><option value=green>Green</option>\
                     <option value=black>Black</option></select></form></body></html>",
                )
            }),
        )
        .route(
            "/set-cookie",
            get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                let name = q.get("name").cloned().unwrap_or_else(|| "c".into());
                let value = q.get("value").cloned().unwrap_or_default();
                ([(header::SET_COOKIE, format!("{name}={value}; Path=/"))], "set")
            }),
        )
        .route(
            "/link",
            get(|Query(q): Query<std::collections::HashMap<String, String>>| async move {
                // A link and a form to `to`: navigations made by a click.
                let to = q.get("to").cloned().unwrap_or_else(|| "/ok".into());
                axum::response::Html(format!(
                    "<html><head><title>links</title></head><body><a id=go href=\"{to}\">go</a>\
                     <form method=post action=\"{to}\"><button id=send>send</button></form></body></html>"
                ))
            }),
        )
        .route(
            "/page/{code}",
            get(|Path(code): Path<u16>| async move {
                // An HTML error page as shops make them: a head full of
                // assets, navigation, then the message.
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    axum::response::Html(format!(
                        "<!doctype html><html><head><title>Basket | Tea shop</title>\
                         <meta name=viewport content=\"width=device-width\"><link rel=stylesheet href=/s.css>\
                         <script>window.analytics = {{id: 'UA-1'}};</script></head><body>\
                         <nav>Home Teas Basket Account</nav><h1>Basket</h1>\
                         <p class=error>Unavailable: the basket service answered {code}. Out of stock: Oolong.</p>\
                         <footer>© Tea shop</footer></body></html>"
                    )),
                )
            })
            .post(|Path(code): Path<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    axum::response::Html(format!("<html><head><title>posted</title></head><body><p class=error>posted: {code}</p></body></html>")),
                )
            }),
        )
        .route(
            "/redirect-loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/redirect-loop")]) }),
        )
        .route(
            "/redirect-chain/{n}",
            get(|Path(n): Path<u32>| async move {
                let cookie = format!("hop{n}=1; Path=/");
                if n == 0 {
                    ([(header::SET_COOKIE, cookie)], "arrived").into_response()
                } else {
                    (
                        StatusCode::FOUND,
                        [
                            (header::LOCATION, format!("/redirect-chain/{}", n - 1)),
                            (header::SET_COOKIE, cookie),
                        ],
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/big",
            get(|| async {
                // 8 MiB in 64 KiB chunks, no Content-Length: the limit must stop the read.
                let chunks = (0..128).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024])));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/stall",
            get(|| async {
                // Headers and one chunk of the body, then nothing, forever.
                let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]);
                Body::from_stream(futures_util::StreamExt::chain(first, futures_util::stream::pending()))
            }),
        )
        .route(
            "/big-declared",
            get(|| async { vec![b'y'; 5 * 1024 * 1024] }),
        )
        .route(
            "/echo",
            post(|headers: HeaderMap, body: Bytes| async move {
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
                    .unwrap_or_default();
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("you sent: {} with {auth}", String::from_utf8_lossy(&body)),
                )
            }),
        )
        .route(
            "/redirect-to/{code}",
            axum::routing::any(|Path(code): Path<u16>| async move {
                // To the server that says what it received: method and body.
                let code = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
                (code, [(header::LOCATION, "/inspect")])
            }),
        )
        .route(
            "/cookies-sent",
            get(|headers: HeaderMap| async move {
                // The `Cookie` header as received, one per line.
                headers
                    .get_all(header::COOKIE)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
        )
        .route(
            "/sets-elsewhere",
            get(|| async { ([(header::SET_COOKIE, "away=1; Path=/elsewhere")], "set") }),
        )
        .route(
            "/trickle",
            get(|Query(q): Query<SlowQ>| async move {
                // The headers and a first byte at once, the last byte `ms` later.
                let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]);
                let last = futures_util::stream::once(async move {
                    tokio::time::sleep(Duration::from_millis(q.ms)).await;
                    Ok::<_, std::io::Error>(Bytes::from_static(b"y"))
                });
                Body::from_stream(futures_util::StreamExt::chain(first, last))
            }),
        )
}

async fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, format!("http://{addr}"))
}

fn tls_config() -> (Arc<tokio_rustls::rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key =
        tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (Arc::new(cfg), ca.pem())
}

impl Target {
    /// How many requests for `path_and_query` (e.g. `/late?ms=5`) the HTTP
    /// server has received; counted when a request arrives, before its handler.
    /// Requests seen per path and query, for those starting with `prefix`.
    pub fn hits_starting(&self, prefix: &str) -> Vec<(String, u64)> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    /// Requests seen for exactly this path and query.
    pub fn hits(&self, path_and_query: &str) -> u64 {
        self.hits
            .lock()
            .unwrap()
            .get(path_and_query)
            .copied()
            .unwrap_or(0)
    }

    /// Items in the test customer's basket now.
    pub fn basket(&self) -> u64 {
        self.basket.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes `/region` fail (503) for requests whose `x-probe-location`
    /// header is `location`, or pass again.
    pub fn set_location_down(&self, location: &str, down: bool) {
        let mut d = self.down.lock().unwrap();
        if down {
            d.insert(location.to_string());
        } else {
            d.remove(location);
        }
    }

    /// Starts all the servers.
    pub async fn start() -> Target {
        let mut tasks = Vec::new();
        let (l, base) = bind().await;
        let hits = Hits::default();
        let counter = hits.clone();
        let down: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Arc::default();
        let region_down = down.clone();
        let basket = Basket::default();
        let app = app(basket.clone())
            .route(
                "/region",
                get(move |headers: HeaderMap| async move {
                    let at = headers
                        .get("x-probe-location")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if region_down.lock().unwrap().contains(at) {
                        (StatusCode::SERVICE_UNAVAILABLE, "down for this location")
                    } else {
                        (StatusCode::OK, "up")
                    }
                }),
            )
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let key = req
                        .uri()
                        .path_and_query()
                        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
                    *counter.lock().unwrap().entry(key).or_default() += 1;
                    next.run(req)
                },
            ));
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        }));

        let (l, hang) = bind().await;
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s); // never read, never answer, never close
            }
        }));

        let (l, reset) = bind().await;
        tasks.push(tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"partial\": ")
                        .await;
                    let _ = s.flush().await;
                    drop(s);
                });
            }
        }));

        let (cfg, ca_pem) = tls_config();
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let mut tls_urls = Vec::new();
        for delay in [Duration::ZERO, TLS_SLOW] {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tls_urls.push(format!(
                "https://localhost:{}",
                l.local_addr().unwrap().port()
            ));
            let acceptor = acceptor.clone();
            tasks.push(tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut s) = acceptor.accept(s).await {
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure")
                            .await;
                        let _ = s.shutdown().await;
                    }
                });
            }
        }));
        }
        let tls_slow = tls_urls.pop().unwrap();
        let tls = tls_urls.pop().unwrap();
        Target {
            base,
            hang,
            reset,
            tls,
            ca_pem,
            tls_slow,
            hits,
            basket,
            down,
            tasks,
        }
    }
}
