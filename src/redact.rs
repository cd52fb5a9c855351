//! Keeping secrets out of every output.
//!
//! Redaction is by value: whatever a run learned is secret (secret values and
//! captures marked `redact: true`) is replaced by `***` in messages, excerpts,
//! headers and URLs, including its URL-encoded and JSON-escaped forms, so a
//! server that echoes a password back cannot leak it. Sensitive headers are
//! also masked by name.

/// The replacement text.
pub const MASK: &str = "***";

/// Header names whose values are always masked.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// Values to hide, in every encoding they may appear in.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    /// Adds a secret value (and its encoded forms). Very short values (under 3
    /// characters) are masked only exactly, to avoid masking every `a` in a page.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut forms = vec![secret.to_string()];
        let pct: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        forms.push(pct.clone());
        forms.push(pct.replace('+', "%20"));
        let json = serde_json::to_string(secret).unwrap_or_default();
        forms.push(json.trim_matches('"').to_string());
        let html = secret
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        forms.push(html);
        for f in forms {
            if !f.is_empty() && !self.needles.contains(&f) {
                self.needles.push(f);
            }
        }
        // Longest first so a value is never half-masked by a shorter form.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret masked.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        out
    }

    /// A header value for display: masked by name, then by value.
    ///
    /// A sensitive header's value is hidden whole; only a structural prefix
    /// that is not secret stays readable: a known authentication scheme
    /// (`Bearer ***`) or a cookie name (`session=***`). Anything else, such
    /// as a bare API key, shows as `***` whatever its characters.
    pub fn header(&self, name: &str, value: &str) -> String {
        let name = name.to_ascii_lowercase();
        if !SENSITIVE_HEADERS.contains(&name.as_str()) {
            return self.apply(value);
        }
        let kept = match name.as_str() {
            "authorization" | "proxy-authorization" => value
                .split_once(' ')
                .map(|(scheme, _)| scheme)
                .filter(|s| AUTH_SCHEMES.iter().any(|k| k.eq_ignore_ascii_case(s)))
                .map(|s| format!("{s} ")),
            "cookie" | "set-cookie" => value
                .split_once('=')
                .filter(|(n, rest)| is_cookie_name(n) && !rest.trim_start_matches('=').is_empty())
                .map(|(n, _)| format!("{n}=")),
            // x-api-key, x-auth-token: the whole value is the secret.
            _ => None,
        };
        format!("{}{MASK}", kept.unwrap_or_default())
    }
}

/// Authentication schemes shown in front of a masked credential: the IANA
/// HTTP Authentication Scheme Registry plus common unregistered ones. An
/// unknown first word may be part of the secret, so it is masked too.
const AUTH_SCHEMES: &[&str] = &[
    "Basic",
    "Bearer",
    "Concealed",
    "Digest",
    "DPoP",
    "GNAP",
    "HOBA",
    "Mutual",
    "Negotiate",
    "NTLM",
    "OAuth",
    "PrivateToken",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "vapid",
    "AWS4-HMAC-SHA256",
    "Token",
];

/// Whether `n` reads as a cookie name rather than a secret cut at an `=`:
/// a non-empty RFC 6265 token under 40 characters (a longer one is more
/// likely a credential than a name).
fn is_cookie_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 40
        && n.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// The first `max` characters of `text` (on a char boundary), with an
/// ellipsis when cut, and control characters replaced.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_raw_encoded_and_escaped_forms() {
        let mut r = Redactor::default();
        r.add("p@ss word\"x");
        let echoed = "got p@ss word\"x / p%40ss+word%22x / p%40ss%20word%22x / p@ss word\\\"x";
        let out = r.apply(echoed);
        assert!(!out.contains("p@ss"), "{out}");
        assert!(!out.contains("p%40ss"), "{out}");
        assert_eq!(out.matches(MASK).count(), 4, "{out}");
    }

    #[test]
    fn masks_sensitive_headers_by_name() {
        let r = Redactor::default();
        assert_eq!(r.header("Authorization", "Bearer abc"), "Bearer ***");
        assert_eq!(r.header("set-cookie", "session=abc; Path=/"), "session=***");
        assert_eq!(r.header("content-type", "text/html"), "text/html");
    }

    #[test]
    fn empty_secrets_are_not_needles() {
        let mut r = Redactor::default();
        assert!(r.is_empty());
        r.add("");
        assert!(r.is_empty());
        assert_eq!(r.apply("abc"), "abc");
        r.add("b");
        assert!(!r.is_empty());
        assert_eq!(r.apply("abc"), "a***c");
    }

    #[test]
    fn masks_the_whole_value_whatever_its_characters() {
        let r = Redactor::default();
        let b64 = "c2VjcmV0LWtleS0xMjM0NQ==";
        for h in [
            "Authorization",
            "X-Api-Key",
            "x-auth-token",
            "Cookie",
            "Set-Cookie",
        ] {
            assert_eq!(r.header(h, b64), MASK, "{h}");
            assert_eq!(r.header(h, "abc def"), MASK, "{h}: unknown scheme");
        }
        assert_eq!(r.header("X-Api-Key", "session=abc"), MASK);
        assert_eq!(
            r.header("Proxy-Authorization", "basic dXNlcjpwYXNz"),
            "basic ***"
        );
        assert_eq!(r.header("Cookie", "a=1; b=2"), "a=***");
        let name39 = "n".repeat(39);
        assert_eq!(
            r.header("Cookie", &format!("{name39}=v")),
            format!("{name39}=***")
        );
        assert_eq!(r.header("Cookie", &format!("{name39}n=v")), MASK);
        // Not a cookie name: empty, or with a space or separator in it.
        for v in ["=v", "my key=v", "a;b=v", "a\tb=v", "k=", "k=="] {
            assert_eq!(r.header("Cookie", v), MASK, "{v:?}");
        }
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("héllo world", 5), "héllo…");
        assert_eq!(excerpt("ok", 5), "ok");
    }
}
