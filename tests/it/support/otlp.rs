//! An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf) decoding what it
//! gets with the official definitions (`opentelemetry-proto`); it keeps the
//! raw bytes too, so a test can search them for secrets.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// How the receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decodes and accepts every export.
    Accept,
    /// Reads the request and never answers (a hung collector).
    Hang,
}

/// A running receiver.
pub struct Receiver {
    /// Its base URL (`http://127.0.0.1:PORT`), for `--otlp-endpoint`.
    pub url: String,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let seen = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(body);
                    if mode == Mode::Hang {
                        std::future::pending::<()>().await;
                    }
                    (
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Receiver { url, bodies, task }
    }

    /// Every request body received, concatenated.
    pub fn raw(&self) -> Vec<u8> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    /// Export requests received.
    pub fn requests(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// Every span received, decoded.
    pub fn spans(&self) -> Vec<Span> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                ExportTraceServiceRequest::decode(b.clone())
                    .expect("an OTLP protobuf export request")
                    .resource_spans
            })
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lower-case hex of an id, as in `traceparent`.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's string attribute.
pub fn attr(s: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}
