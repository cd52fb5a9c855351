//! TLS configuration shared across runs.
//!
//! Every run has its own HTTP connections and cookie jar (a new visitor), but
//! building a TLS setup loads the system trust store (milliseconds of CPU).
//! Runs therefore share one `rustls::ClientConfig` per distinct journey TLS
//! setting, so connect and handshake time are still measured on every run, at
//! no extra cost.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::journey::TlsSettings;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file `{path}`: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the setup.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

type Key = (bool, Option<(PathBuf, Option<SystemTime>)>);

/// A cache of client TLS configurations, keyed by the journey's settings
/// (and the CA file's modification time, so a rotated CA is picked up).
#[derive(Default)]
pub struct TlsCache {
    configs: Mutex<HashMap<Key, Arc<ClientConfig>>>,
}

impl std::fmt::Debug for TlsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsCache")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsCache {
    /// The configuration for `tls`, built once and shared (no copy per run).
    pub fn config(&self, tls: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
        let ca = tls.ca_file.as_ref().map(|p| {
            let mtime = std::fs::metadata(p).and_then(|m| m.modified()).ok();
            (p.clone(), mtime)
        });
        let key = (tls.verify, ca);
        let mut map = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let cfg = Arc::new(build(tls)?);
        map.insert(key, cfg.clone());
        Ok(cfg)
    }
}

fn build(tls: &TlsSettings) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut cfg = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let verifier = match &tls.ca_file {
            None => rustls_platform_verifier::Verifier::new(provider)?,
            Some(path) => {
                let err = |reason: String| TlsError::CaFile {
                    path: path.clone(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| err(format!("invalid PEM: {e}")))?;
                if certs.is_empty() {
                    return Err(err("no certificate in it".into()));
                }
                rustls_platform_verifier::Verifier::new_with_extra_roots(certs, provider)?
            }
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Described(verifier)))
            .with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A certificate no trusted issuer vouches for, with the names that say
/// whose it is (carried inside `CertificateError::Other`).
#[derive(Debug, thiserror::Error)]
#[error("certificate of `{subject}` issued by `{issuer}` is not trusted")]
pub struct Untrusted {
    /// The certificate's subject (`CN=shop.example, O=...`).
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
}

/// A verifier that names the subject and issuer when it finds no trusted
/// issuer, so the failure can say "self-signed" or "issued by X".
#[derive(Debug)]
struct Described<V>(V);

impl<V: ServerCertVerifier> ServerCertVerifier for Described<V> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as C;
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map_err(|e| match &e {
                rustls::Error::InvalidCertificate(
                    C::UnknownIssuer
                    | C::BadSignature
                    | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
                    | C::UnsupportedSignatureAlgorithmContext { .. }
                    | C::Other(_),
                ) => match x509_parser::parse_x509_certificate(end_entity) {
                    Ok((_, cert)) => rustls::Error::InvalidCertificate(C::Other(
                        rustls::OtherError(Arc::new(Untrusted {
                            subject: cert.subject().to_string(),
                            issuer: cert.issuer().to_string(),
                        })),
                    )),
                    Err(_) => e,
                },
                _ => e,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

/// `tls: {verify: false}`: accept any certificate, still check signatures.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS verification failure in words: what is wrong with the server's
/// certificate, instead of the verifier's internal names (`UnknownIssuer`,
/// `CaUsedAsEndEntity`, raw Unix seconds). `None` when `e` holds no
/// `rustls::Error` (the caller keeps its own message).
pub fn explain(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(r));
        }
        // An io::Error's `source()` skips the error it wraps: look inside.
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn date(t: rustls::pki_types::UnixTime) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs());
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// `DnsName("shop.example")` (how the verifier lists a certificate's
/// names) as `shop.example`.
fn bare_name(p: &str) -> &str {
    match (p.find("(\""), p.rfind("\")")) {
        (Some(a), Some(b)) if b > a + 2 => &p[a + 2..b],
        _ => p,
    }
}

fn explain_rustls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let untrusted = "the certificate is self-signed or issued by an untrusted CA (add the CA with `tls: {ca_file: ...}`)";
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => untrusted.to_string(),
            C::BadSignature
            | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
            | C::UnsupportedSignatureAlgorithmContext { .. } => format!(
                "{untrusted}; its signature does not verify against any trusted issuer"
            ),
            C::Expired => "the certificate has expired".to_string(),
            C::ExpiredContext { not_after, .. } => {
                format!("the certificate expired on {}", date(*not_after))
            }
            C::NotValidYet => "the certificate is not valid yet".to_string(),
            C::NotValidYetContext { not_before, .. } => {
                format!("the certificate is not valid before {}", date(*not_before))
            }
            C::NotValidForName => "the certificate is for another host name".to_string(),
            C::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "the certificate is not valid for `{}`: it names {}",
                expected.to_str(),
                if presented.is_empty() {
                    "no host".to_string()
                } else {
                    presented
                        .iter()
                        .map(|p| format!("`{}`", bare_name(p)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            C::Revoked => "the certificate has been revoked".to_string(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "the certificate is not meant for a TLS server".to_string()
            }
            C::BadEncoding => "the certificate is malformed".to_string(),
            C::Other(o) if o.0.downcast_ref::<Untrusted>().is_some() => {
                let u = o.0.downcast_ref::<Untrusted>().expect("checked");
                if u.subject == u.issuer {
                    format!(
                        "the certificate is self-signed (`{}`) and not trusted; add it with `tls: {{ca_file: ...}}` if it should be",
                        u.subject
                    )
                } else {
                    format!(
                        "the certificate of `{}` is issued by `{}`, an issuer that is not trusted (add its CA with `tls: {{ca_file: ...}}`)",
                        u.subject, u.issuer
                    )
                }
            }
            C::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => {
                "the server presents a CA certificate as its own (a self-signed certificate?); add it with `tls: {ca_file: ...}` if it is trusted".to_string()
            }
            other => format!("the certificate was rejected ({other:?})"),
        },
        rustls::Error::AlertReceived(a) => format!("the server refused the handshake ({a:?})"),
        rustls::Error::NoCertificatesPresented => "the server sent no certificate".to_string(),
        other => format!("TLS error: {other}"),
    }
}
