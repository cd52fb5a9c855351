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
    pub fn header(&self, name: &str, value: &str) -> String {
        if SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            // Keep the cookie/scheme name, hide the value: `session=***`.
            match value.split_once(['=', ' ']) {
                Some((head, _)) if !head.is_empty() && head.len() < 40 => {
                    let sep = if value.as_bytes()[head.len()] == b'=' {
                        "="
                    } else {
                        " "
                    };
                    format!("{head}{sep}{MASK}")
                }
                _ => MASK.to_string(),
            }
        } else {
            self.apply(value)
        }
    }
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
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("héllo world", 5), "héllo…");
        assert_eq!(excerpt("ok", 5), "ok");
    }
}
