//! `--web.config.file`: TLS, client certificates, basic auth and extra
//! response headers for `serve`, in the file format of the Prometheus
//! exporter-toolkit, so the file (and a `ServiceMonitor`'s `tlsConfig` and
//! `basicAuth`) that works for node_exporter works here too.
//!
//! The file is read and checked as a whole at start and on each reload; a bad
//! file is refused with a message naming it, and the previous one stays in
//! force.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// Why a web configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file or a file it names cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not match the format (unknown key, wrong type).
    #[error("{}{message}", path.display())]
    Syntax {
        /// The web config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is not usable; `message` says what to write instead.
    #[error("{}: {field}: {message}", path.display())]
    Invalid {
        /// The web config file.
        path: PathBuf,
        /// The offending key, dotted (`tls_server_config.min_version`).
        field: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

/// The file as written (exporter-toolkit's keys; unknown keys are errors).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Headers the exporter-toolkit lets a web config set (others are refused,
/// so a file cannot override what the server must control).
const SETTABLE_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// How a client certificate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// None is asked for.
    None,
    /// Asked for and verified against `client_ca_file` when given.
    VerifyIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerify,
}

/// A checked web configuration, ready to serve with.
pub struct WebConfig {
    /// The TLS server setup, when `tls_server_config` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    users: BTreeMap<String, String>,
    /// The file and the files it names, watched for changes.
    files: Vec<PathBuf>,
    /// SHA-256 of credentials that bcrypt already accepted, so a scrape
    /// every few seconds costs one bcrypt run, not one each time.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("client_auth", &self.client_auth)
            .field("users", &self.users.len())
            .finish()
    }
}

impl Default for WebConfig {
    /// Plain HTTP, no authentication: the behaviour without a file.
    fn default() -> Self {
        Self {
            tls: None,
            client_auth: ClientAuth::None,
            headers: Vec::new(),
            users: BTreeMap::new(),
            files: Vec::new(),
            verified: Mutex::new(HashSet::new()),
        }
    }
}

/// Outcome of checking a request's `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCheck {
    /// No users are configured: nothing to check.
    Open,
    /// A configured user with the right password.
    Authenticated,
    /// Missing, malformed or wrong credentials.
    Refused,
}

impl WebConfig {
    /// Reads and checks `path`. Relative file names inside are resolved
    /// against the file's directory, as the exporter-toolkit does.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| syntax_error(path, &e))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |field: &str, message: String| WebConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        };

        for (user, hash) in &raw.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(
                    &format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash; write the output of `htpasswd -nBC 10 \"\" | tr -d ':\\n'` (starts with `$2y$`)".into(),
                ));
            }
        }

        let mut headers = Vec::new();
        let mut http2 = false;
        if let Some(http) = &raw.http_server_config {
            http2 = http.http2.unwrap_or(false);
            for (k, v) in &http.headers {
                let Some(name) = SETTABLE_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(k)) else {
                    return Err(invalid(
                        &format!("http_server_config.headers.{k}"),
                        format!(
                            "cannot be set; settable headers: {}",
                            SETTABLE_HEADERS.join(", ")
                        ),
                    ));
                };
                let value = HeaderValue::from_str(v).map_err(|_| {
                    invalid(
                        &format!("http_server_config.headers.{k}"),
                        "is not a valid header value (printable ASCII only)".into(),
                    )
                })?;
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    invalid(
                        &format!("http_server_config.headers.{k}"),
                        "is not a header name".into(),
                    )
                })?;
                headers.push((name, value));
            }
        }
        if http2 {
            return Err(invalid(
                "http_server_config.http2",
                "HTTP/2 is not served; remove the key or write `http2: false`".into(),
            ));
        }

        let mut files = vec![path.to_path_buf()];
        if let Some(t) = &raw.tls_server_config {
            for f in [&t.cert_file, &t.key_file, &t.client_ca_file]
                .into_iter()
                .flatten()
            {
                files.push(base.join(f));
            }
        }
        let (tls, client_auth) = match &raw.tls_server_config {
            None => (None, ClientAuth::None),
            Some(t) => {
                let (cfg, ca) = tls_config(t, base, &invalid)?;
                (Some(Arc::new(cfg)), ca)
            }
        };
        Ok(Self {
            tls,
            client_auth,
            headers,
            users: raw.basic_auth_users,
            files,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// A checksum of the file and of the certificate, key and CA files it
    /// names (read through symlinks, as a mounted Secret rotates them), so a
    /// rotated certificate or changed user list is noticed. Reads files:
    /// call it on a blocking thread.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in &self.files {
            f.hash(&mut h);
            std::fs::read(f).ok().hash(&mut h);
        }
        h.finish()
    }

    /// Whether basic auth is required.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// The answer for an `Authorization` header value when it needs no
    /// bcrypt run: open, no (readable) credentials, or credentials already
    /// verified. `None`: only [`WebConfig::check_basic_auth`] can tell.
    /// Cheap (a hash and a lookup), so a scraper whose password was verified
    /// once never waits behind the bcrypt runs of wrong passwords.
    pub fn check_basic_auth_cached(&self, authorization: Option<&str>) -> Option<AuthCheck> {
        if self.users.is_empty() {
            return Some(AuthCheck::Open);
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Some(AuthCheck::Refused);
        };
        let hash = self.users.get(&user)?;
        let key = cache_key(&user, &password, hash);
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
            .then_some(AuthCheck::Authenticated)
    }

    /// Checks an `Authorization` header value. Runs bcrypt (tens of
    /// milliseconds of CPU) unless [`WebConfig::check_basic_auth_cached`]
    /// answers, so call it off latency-sensitive threads.
    pub fn check_basic_auth(&self, authorization: Option<&str>) -> AuthCheck {
        if let Some(answer) = self.check_basic_auth_cached(authorization) {
            return answer;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return AuthCheck::Refused;
        };
        let hash = self.users.get(&user);
        let key = cache_key(&user, &password, hash.map_or("", String::as_str));
        // An unknown user still costs one bcrypt run, so the answer's timing
        // does not tell which user names exist.
        const DUMMY: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DSTpD4pnZyLbzXsrKxSwO";
        let ok = bcrypt::verify(&password, hash.map_or(DUMMY, String::as_str)).unwrap_or(false);
        if ok && hash.is_some() {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: only correct credentials get here, one entry per user
            // and password; a rotated file starts a new cache.
            if cache.len() < 1024 {
                cache.insert(key);
            }
            AuthCheck::Authenticated
        } else {
            AuthCheck::Refused
        }
    }
}

/// `file:line:col: message`, the project's form for a position in a file.
fn syntax_error(path: &Path, e: &serde_saphyr::Error) -> WebConfigError {
    let text = e.without_snippet().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let message = match e.location() {
        Some(l) => {
            let prefix = format!("line {} column {}: ", l.line(), l.column());
            let suffix = format!(" at line {}, column {}", l.line(), l.column());
            let text = text.strip_prefix(&prefix).unwrap_or(text);
            let text = text.strip_suffix(&suffix).unwrap_or(text);
            format!(":{}:{}: {text}", l.line(), l.column())
        }
        None => format!(": {text}"),
    };
    WebConfigError::Syntax {
        path: path.to_path_buf(),
        message,
    }
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [user, password, hash] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `Basic base64(user:password)` → (user, password).
fn parse_basic(v: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn tls_version(
    v: &str,
    field: &str,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<&'static rustls::SupportedProtocolVersion, WebConfigError> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(invalid(
            field,
            format!("`{v}` is obsolete and not supported; write `TLS12` or `TLS13`"),
        )),
        _ => Err(invalid(
            field,
            format!("`{v}` is not a TLS version; write `TLS12` or `TLS13`"),
        )),
    }
}

fn tls_config(
    t: &RawTls,
    base: &Path,
    invalid: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<(rustls::ServerConfig, ClientAuth), WebConfigError> {
    let f = "tls_server_config";
    // Knobs of Go's TLS stack that rustls fixes to safe choices: refused
    // rather than silently ignored.
    for (set, key) in [
        (t.cipher_suites.is_some(), "cipher_suites"),
        (t.curve_preferences.is_some(), "curve_preferences"),
        (t.client_allowed_sans.is_some(), "client_allowed_sans"),
    ] {
        if set {
            return Err(invalid(
                &format!("{f}.{key}"),
                "is not supported (rustls uses its own safe defaults); remove the key".into(),
            ));
        }
    }
    // Go itself ignores this one since 1.18; accepted for compatibility.
    let _ = t.prefer_server_cipher_suites;
    let read = |key: &str, p: &PathBuf| -> Result<(PathBuf, Vec<u8>), WebConfigError> {
        let full = base.join(p);
        std::fs::read(&full)
            .map(|b| (full.clone(), b))
            .map_err(|e| {
                invalid(
                    &format!("{f}.{key}"),
                    format!("cannot read `{}`: {e}", full.display()),
                )
            })
    };
    let (Some(cert_file), Some(key_file)) = (&t.cert_file, &t.key_file) else {
        return Err(invalid(
            f,
            "needs both `cert_file` and `key_file` (PEM files)".into(),
        ));
    };
    let min = match &t.min_version {
        Some(v) => tls_version(v, &format!("{f}.min_version"), invalid)?,
        None => &rustls::version::TLS12,
    };
    let max = match &t.max_version {
        Some(v) => tls_version(v, &format!("{f}.max_version"), invalid)?,
        None => &rustls::version::TLS13,
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                let n = |x: &rustls::SupportedProtocolVersion| u16::from(x.version);
                n(v) >= n(min) && n(v) <= n(max)
            })
            .collect();
    if versions.is_empty() {
        return Err(invalid(
            &format!("{f}.min_version"),
            "is above `max_version`".into(),
        ));
    }

    let client_auth = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" => ClientAuth::None,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        other @ ("RequestClientCert" | "RequireAnyClientCert") => {
            return Err(invalid(
                &format!("{f}.client_auth_type"),
                format!(
                    "`{other}` accepts unverified certificates and is not supported; write `RequireAndVerifyClientCert` or `VerifyClientCertIfGiven` with `client_ca_file`"
                ),
            ));
        }
        other => {
            return Err(invalid(
                &format!("{f}.client_auth_type"),
                format!(
                    "`{other}` is not a client auth type; write `NoClientCert`, `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`"
                ),
            ));
        }
    };
    // Every certificate of a PEM file named by `key`; at least one.
    let read_certs =
        |key: &str, p: &PathBuf| -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
            let (path, pem) = read(key, p)?;
            let field = format!("{f}.{key}");
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(&field, format!("`{}`: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(invalid(
                    &field,
                    format!("`{}` holds no PEM certificate", path.display()),
                ));
            }
            Ok(certs)
        };
    let certs = read_certs("cert_file", cert_file)?;
    let (key_path, key_pem) = read("key_file", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(
            &format!("{f}.key_file"),
            format!("`{}` holds no PEM private key: {e}", key_path.display()),
        )
    })?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid(f, e.to_string()))?;
    let builder = match (client_auth, &t.client_ca_file) {
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (ClientAuth::None, Some(_)) => {
            return Err(invalid(
                &format!("{f}.client_ca_file"),
                "is set but `client_auth_type` is not; write `client_auth_type: RequireAndVerifyClientCert`".into(),
            ));
        }
        (_, None) => {
            return Err(invalid(
                &format!("{f}.client_ca_file"),
                "is needed to verify client certificates; name the CA's PEM file".into(),
            ));
        }
        (mode, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs("client_ca_file", ca)? {
                roots
                    .add(c)
                    .map_err(|e| invalid(&format!("{f}.client_ca_file"), e.to_string()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if mode == ClientAuth::VerifyIfGiven {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v
                .build()
                .map_err(|e| invalid(&format!("{f}.client_ca_file"), e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(
            &format!("{f}.key_file"),
            format!("does not match `cert_file`: {e}"),
        )
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((cfg, client_auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wayprobe-web-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn err(dir: &Path, yaml: &str) -> String {
        let p = write(dir, "web.yml", yaml);
        WebConfig::load(&p)
            .unwrap_err()
            .to_string()
            .replace(&dir.display().to_string(), "DIR")
    }

    #[test]
    fn bad_files_are_refused_with_what_to_write() {
        let d = tempdir("bad");
        let cases = [
            (
                "basic_auth_users: {alice: secret}\n",
                "basic_auth_users.alice: is not a bcrypt hash",
            ),
            (
                "tls_server_config: {cert_file: a.pem}\n",
                "needs both `cert_file` and `key_file`",
            ),
            (
                "tls_server_config: {cert_file: a.pem, key_file: b.pem}\n",
                "tls_server_config.cert_file: cannot read `DIR/a.pem`",
            ),
            (
                "http_server_config: {headers: {Server: x}}\n",
                "http_server_config.headers.Server: cannot be set",
            ),
            ("basic_auth_user: {}\n", "basic_auth_user"),
        ];
        for (yaml, want) in cases {
            let e = err(&d, yaml);
            assert!(e.contains(want), "{yaml}: {e}");
            assert!(e.starts_with("DIR/web.yml"), "{e}");
        }
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_caches_only_successes() {
        let d = tempdir("auth");
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let p = write(
            &d,
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        );
        let w = WebConfig::load(&p).unwrap();
        use base64::Engine as _;
        let h = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert_eq!(w.check_basic_auth(None), AuthCheck::Refused);
        // What needs no bcrypt is answered without it; the rest is not.
        assert_eq!(w.check_basic_auth_cached(None), Some(AuthCheck::Refused));
        assert_eq!(w.check_basic_auth_cached(Some(&h("prom", "s3cret"))), None);
        assert_eq!(w.check_basic_auth_cached(Some(&h("nobody", "x"))), None);
        assert_eq!(
            WebConfig::default().check_basic_auth_cached(Some(&h("prom", "x"))),
            Some(AuthCheck::Open)
        );
        assert_eq!(
            w.check_basic_auth(Some(&h("prom", "wrong"))),
            AuthCheck::Refused
        );
        assert_eq!(
            w.check_basic_auth(Some(&h("nobody", "s3cret"))),
            AuthCheck::Refused
        );
        assert_eq!(
            w.check_basic_auth(Some(&h("prom", "s3cret"))),
            AuthCheck::Authenticated
        );
        assert_eq!(w.verified.lock().unwrap().len(), 1);
        // Verified once, then answered from the cache: a scraper never
        // queues behind the bcrypt runs of wrong passwords.
        assert_eq!(
            w.check_basic_auth_cached(Some(&h("prom", "s3cret"))),
            Some(AuthCheck::Authenticated)
        );
        assert_eq!(w.check_basic_auth_cached(Some(&h("prom", "wrong"))), None);
        assert_eq!(
            w.check_basic_auth(Some(&h("prom", "s3cret"))),
            AuthCheck::Authenticated
        );
        assert_eq!(
            w.check_basic_auth(Some(&h("prom", "s3cret "))),
            AuthCheck::Refused
        );
        assert!(!format!("{w:?}").contains("$2"), "no hashes in Debug");
        assert_eq!(WebConfig::default().check_basic_auth(None), AuthCheck::Open);
    }
}
