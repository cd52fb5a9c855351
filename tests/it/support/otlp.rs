//! An OTLP trace receiver, over HTTP (`POST /v1/traces`, protobuf) or gRPC
//! (the official `TraceService`), in plain text or TLS (optionally asking
//! for a client certificate), decoding what it gets with the official
//! definitions (`opentelemetry-proto`); it keeps the raw bytes too, so a
//! test can search them for secrets.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
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

/// The OTLP transport served.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// `POST /v1/traces` over HTTP/1.1.
    Http,
    /// `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    Grpc,
}

/// A private CA and a certificate it signed for `localhost`, as PEM.
pub struct Pki {
    /// The CA's certificate: what the client trusts.
    pub ca: String,
    /// The leaf certificate and its key.
    pub cert: String,
    pub key: String,
}

impl Pki {
    /// A new CA with a `localhost` certificate (server or client).
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Pki {
            ca: ca.pem(),
            cert: leaf.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The receiver's TLS: its own certificate, and the CA client
/// certificates must chain to (mutual TLS) if any.
pub struct ServerTls<'a> {
    pub server: &'a Pki,
    pub clients: Option<&'a Pki>,
}

/// A running receiver.
pub struct Receiver {
    /// Its base URL (`http://127.0.0.1:PORT`, or `https://localhost:PORT`
    /// with TLS), for `--otlp-endpoint`.
    pub url: String,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The gRPC side: records each export's protobuf encoding.
struct Grpc {
    bodies: Arc<Mutex<Vec<Bytes>>>,
    mode: Mode,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let body = Bytes::from(req.into_inner().encode_to_vec());
        self.bodies.lock().unwrap().push(body);
        if self.mode == Mode::Hang {
            std::future::pending::<()>().await;
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// A plain-text OTLP/HTTP receiver.
    pub async fn start(mode: Mode) -> Receiver {
        Receiver::serve(mode, Transport::Http, None).await
    }

    /// A receiver over `transport`, with TLS when `tls` is given.
    pub async fn serve(mode: Mode, transport: Transport, tls: Option<ServerTls<'_>>) -> Receiver {
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let task = match transport {
            Transport::Http => Self::http(mode, l, bodies.clone(), tls),
            Transport::Grpc => Self::grpc(mode, l, bodies.clone(), tls),
        };
        Receiver { url, bodies, task }
    }

    fn grpc(
        mode: Mode,
        l: tokio::net::TcpListener,
        bodies: Arc<Mutex<Vec<Bytes>>>,
        tls: Option<ServerTls<'_>>,
    ) -> tokio::task::JoinHandle<()> {
        use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
        let mut server = Server::builder();
        if let Some(t) = tls {
            let mut cfg =
                ServerTlsConfig::new().identity(Identity::from_pem(&t.server.cert, &t.server.key));
            if let Some(c) = t.clients {
                cfg = cfg.client_ca_root(Certificate::from_pem(&c.ca));
            }
            server = server.tls_config(cfg).unwrap();
        }
        let incoming = futures_util::stream::unfold(l, |l| async move {
            let s = l.accept().await.map(|(s, _)| s);
            Some((s, l))
        });
        let svc = TraceServiceServer::new(Grpc { bodies, mode });
        tokio::spawn(async move {
            let _ = server.add_service(svc).serve_with_incoming(incoming).await;
        })
    }

    fn http(
        mode: Mode,
        l: tokio::net::TcpListener,
        bodies: Arc<Mutex<Vec<Bytes>>>,
        tls: Option<ServerTls<'_>>,
    ) -> tokio::task::JoinHandle<()> {
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
        let Some(t) = tls else {
            return tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            });
        };
        assert!(t.clients.is_none(), "mutual TLS is served over gRPC only");
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(t.server));
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust us ends the handshake.
                    let Ok(s) = acceptor.accept(s).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let mut app = app.clone();
                            async move {
                                use tower_service::Service as _;
                                app.call(req.map(axum::body::Body::new)).await
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        })
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

/// A rustls server configuration presenting `pki`'s certificate.
fn server_config(pki: &Pki) -> Arc<tokio_rustls::rustls::ServerConfig> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.key.as_bytes()).unwrap(),
        )
        .unwrap();
    Arc::new(cfg)
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
