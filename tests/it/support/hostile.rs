//! Hostile and tricky routes for the in-process target (merged into
//! `target::app`): redirects to other origins, deep HTML, wide JSON, a
//! Latin-1 page, a big integer, a gzip response, same-named cookies on two
//! hosts, pages that show a secret; and an HTTPS server with a self-signed
//! certificate that redirects to plain HTTP.

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Html;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

#[derive(serde::Deserialize)]
struct N {
    n: usize,
    #[serde(default = "one")]
    repeat: usize,
}

fn one() -> usize {
    1
}

#[derive(serde::Deserialize)]
struct Text {
    text: String,
    #[serde(default)]
    pad: usize,
    #[serde(default)]
    enc: String,
}

/// `text` as a page might show it: base64 (alone or in `user:text`),
/// re-wrapped, or with spaces as character references.
fn encode(text: &str, enc: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    match enc {
        "b64" => b64.encode(text),
        "b64user" => b64.encode(format!("alice:{text}")),
        "wrap" => text.replace(' ', "\n    "),
        "entity" => text.replace(' ', "&#32;"),
        "dec" => text.chars().map(|c| format!("&#{};", c as u32)).collect(),
        _ => text.to_string(),
    }
}

/// The routes.
pub fn routes() -> Router {
    Router::new()
        // 302 to wherever `to` says.
        .route(
            "/start",
            get(|Query(q): Query<To>| async move { (StatusCode::FOUND, [(header::LOCATION, q.to)]) }),
        )
        // What credentials arrived.
        .route(
            "/landing",
            get(|h: HeaderMap| async move {
                let v = |n: &str| h.get(n).map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
                axum::Json(serde_json::json!({
                    "authorization": v("authorization"),
                    "proxy_authorization": v("proxy-authorization"),
                    "cookie": v("cookie"),
                    "x_api_key": v("x-api-key"),
                    "x_tenant": v("x-tenant"),
                }))
            }),
        )
        // `n` nested divs (a `<p class=x>` at the bottom), `repeat` times.
        .route(
            "/deep",
            get(|Query(q): Query<N>| async move {
                let one = format!("{}<p class=x>found</p>{}", "<div>".repeat(q.n), "</div>".repeat(q.n));
                Html(format!("<html><body>{}</body></html>", one.repeat(q.repeat)))
            }),
        )
        // A JSON array of `n` small objects.
        .route(
            "/wide",
            get(|Query(q): Query<N>| async move {
                let items = vec![r#"{"a":{"x":1}}"#; q.n].join(",");
                ([(header::CONTENT_TYPE, "application/json")], format!("[{items}]"))
            }),
        )
        .route(
            "/latin1",
            get(|| async {
                let mut body = b"<html><body><p id=w>Caf".to_vec();
                body.push(0xe9);
                body.extend_from_slice(b"</p></body></html>");
                ([(header::CONTENT_TYPE, "text/html; charset=iso-8859-1")], body)
            }),
        )
        .route(
            "/bigint",
            get(|| async {
                ([(header::CONTENT_TYPE, "application/json")], r#"{"order_id": 9007199254740993}"#)
            }),
        )
        .route(
            "/gzip",
            get(|| async {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(b"{\"packed\": true}").unwrap();
                let gz = e.finish().unwrap();
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    gz,
                )
            }),
        )
        // The identity provider's cookie (asked on 127.0.0.1).
        .route(
            "/idp/login",
            get(|| async { ([(header::SET_COOKIE, "session=idp-1; Path=/")], "idp") }),
        )
        // The app's cookie (asked on localhost), then its deletion.
        .route(
            "/app/login",
            get(|| async { ([(header::SET_COOKIE, "session=app-1; Path=/app")], "app") }),
        )
        .route(
            "/app/logout",
            get(|| async { ([(header::SET_COOKIE, "session=; Path=/app; Max-Age=0")], "bye") }),
        )
        .route("/app/home", get(|| async { "home" }))
        // A page that shows `text`, after `pad` characters of filler.
        .route(
            "/show",
            get(|Query(q): Query<Text>| async move {
                Html(format!(
                    "<html><body style=\"margin:40px;background:#fff\">{}<h1 id=shown style=\"font:64px monospace;color:#000\">{}</h1></body></html>",
                    "x".repeat(q.pad),
                    html_escape(&q.text)
                ))
            }),
        )
        // A body of `pad` filler characters, then `text`, then more.
        .route(
            "/pad",
            get(|Query(q): Query<Text>| async move {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{}{} and the rest of the page", "x".repeat(q.pad), encode(&q.text, &q.enc)),
                )
            }),
        )
        // An OAuth-style token response.
        .route(
            "/token",
            get(|| async {
                axum::Json(serde_json::json!({
                    "access_token": "at-5f2e9c1d7b", "id_token": "eyJhbGciOi.payload.sig",
                    "refresh_token": "rt-88a1", "token_type": "Bearer"
                }))
            }),
        )
        .route("/healthy", get(|| async { "ok" }))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An HTTPS server with a self-signed certificate (for `localhost`) that
/// answers every request with a 302 to `to`; returns its base URL.
pub async fn https_redirector(to: String, tasks: &mut Vec<tokio::task::JoinHandle<()>>) -> String {
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    https_server(params, to, tasks).await.0
}

/// An HTTPS server with a self-signed certificate made from `params` that
/// answers every request with a 302 to `to`; returns its base URL
/// (`https://localhost:PORT`) and the certificate's PEM.
pub async fn https_server(
    params: rcgen::CertificateParams,
    to: String,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der =
        tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://localhost:{}", l.local_addr().unwrap().port());
    let pem = cert.pem();
    tasks.push(tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(s).await {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    }));
    (base, pem)
}
