//! A fully read response: status, headers as the server sent them, the body
//! bytes, and lazily decoded views of the body (text, JSON).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

/// A cookie as seen in the run's jar after a response.
#[derive(Debug, Clone)]
pub struct CookieInfo {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// `Secure` attribute.
    pub secure: bool,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `SameSite` attribute, as written by the server.
    pub same_site: Option<String>,
    /// `Path` attribute.
    pub path: Option<String>,
    /// `Domain` attribute.
    pub domain: Option<String>,
}

/// A fully read response, with lazily parsed views of its body.
#[derive(Debug)]
pub struct Response {
    /// Final status code.
    pub status: u16,
    /// Final URL (after redirects).
    pub url: String,
    /// Headers with lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// The body (at most `max_body` bytes).
    pub body: Bytes,
    /// Time from sending the first request to the end of the body.
    pub elapsed: Duration,
    /// Cookies in the jar after the response.
    pub cookies: Vec<CookieInfo>,
    text: OnceLock<String>,
    json: OnceLock<Result<Value, String>>,
}

impl Response {
    /// Builds a response from its parts (also used by tests).
    pub fn new(status: u16, url: String, headers: Vec<(String, String)>, body: Bytes) -> Self {
        Self {
            status,
            url,
            headers,
            body,
            elapsed: Duration::ZERO,
            cookies: Vec::new(),
            text: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> &str {
        self.text
            .get_or_init(|| String::from_utf8_lossy(&self.body).into_owned())
    }

    /// The body parsed as JSON, once.
    pub fn json(&self) -> Result<&Value, String> {
        self.json
            .get_or_init(|| serde_json::from_slice(&self.body).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// All values of a header (name in lower case).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
