//! The bench target: answers after a fixed server delay, on loopback.
//!
//! `/delay` is the one-step journey; `/login` sets a session cookie that
//! `/cart`, `/checkout` and `/account` require (the 4-step cookie journey);
//! `/page` is a small HTML page for browser journeys.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Flags of `bench target`.
#[derive(clap::Args)]
pub struct Args {
    /// Server delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Where to listen (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

const COOKIE: &str = "sid=bench-session";

pub async fn main(a: Args) -> anyhow::Result<()> {
    let delay = Duration::from_millis(a.delay_ms);
    let app = Router::new()
        .route("/delay", get(delayed))
        .route("/login", get(login))
        .route("/cart", get(member))
        .route("/checkout", get(member))
        .route("/account", get(member))
        .route("/page", get(page))
        .with_state(delay);
    // A deep accept queue: at 10,000 new connections/s the default 1024 can
    // overflow, and a dropped SYN costs the prober a 1 s retransmit that is
    // the target's fault, not the prober's.
    let addr: std::net::SocketAddr = a.listen.parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(8192)?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn delayed(State(d): State<Duration>) -> &'static str {
    tokio::time::sleep(d).await;
    "ok\n"
}

async fn login(State(d): State<Duration>) -> Response {
    tokio::time::sleep(d).await;
    (
        [(header::SET_COOKIE, format!("{COOKIE}; Path=/; HttpOnly"))],
        "welcome\n",
    )
        .into_response()
}

async fn member(State(d): State<Duration>, h: HeaderMap) -> Response {
    tokio::time::sleep(d).await;
    let ok = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|c| c.trim() == COOKIE));
    if ok {
        "member\n".into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "log in first\n").into_response()
    }
}

async fn page(State(d): State<Duration>) -> Response {
    tokio::time::sleep(d).await;
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><html><head><title>Bench page</title></head>\
         <body><h1 id=\"state\">ready</h1></body></html>",
    )
        .into_response()
}
