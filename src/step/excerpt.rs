//! The one place output is shaped: every excerpt of a body or value that
//! reaches a message, report or page goes through [`shape`], which redacts
//! first (secret values, then values of well-known credential fields) and
//! truncates after, so a cut never leaves part of a secret behind.

use std::sync::LazyLock;

use regex::Regex;

use crate::redact::{MASK, Redactor, excerpt};

/// Characters of body shown in failure excerpts.
pub const EXCERPT_CHARS: usize = 240;

/// Field names whose values are credentials wherever they appear (OAuth 2.0
/// and OpenID Connect token responses, login forms, API keys).
const CREDENTIAL_FIELDS: &str = "access_token|id_token|refresh_token|client_secret|password|passwd|passphrase|api_key|apikey|api-key|secret|token|authorization|private_key|session_token|assertion|code_verifier";

/// `"field": "value"` in JSON (escaped quotes inside the value included).
static JSON_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)("(?:{CREDENTIAL_FIELDS})"\s*:\s*)"(?:[^"\\]|\\.)*""#
    ))
    .expect("a valid pattern")
});

/// `field=value` in forms, query strings and cookies.
static FORM_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)(^|[?&;\s"'])((?:{CREDENTIAL_FIELDS})=)[^&;\s"'<>]+"#
    ))
    .expect("a valid pattern")
});

/// `name="password" ... value="..."` in HTML inputs.
static HTML_INPUT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)(<input\b[^>]*\bname\s*=\s*["']?(?:{CREDENTIAL_FIELDS})["']?[^>]*\bvalue\s*=\s*)("[^"]*"|'[^']*'|[^\s>]+)"#
    ))
    .expect("a valid pattern")
});

/// Masks the values of well-known credential fields in JSON, forms and
/// HTML inputs, whatever the value.
pub fn scrub_fields(text: &str) -> String {
    let t = JSON_FIELD.replace_all(text, format!("${{1}}\"{MASK}\""));
    let t = FORM_FIELD.replace_all(&t, format!("${{1}}${{2}}{MASK}"));
    HTML_INPUT
        .replace_all(&t, format!("${{1}}\"{MASK}\""))
        .into_owned()
}

/// `text` redacted (secret values, then credential fields), then cut to
/// `max` characters.
pub fn shape(redactor: &Redactor, text: &str, max: usize) -> String {
    excerpt(&scrub_fields(&redactor.apply(text)), max)
}

/// The failure excerpt of a response body.
pub fn body(redactor: &Redactor, text: &str) -> String {
    shape(redactor, text, EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_before_cutting() {
        let mut r = Redactor::default();
        r.add("SECRETVALUE123");
        // The secret straddles the cut: nothing of it may show.
        let text = format!("{}SECRETVALUE123 tail", "x".repeat(EXCERPT_CHARS - 5));
        let out = body(&r, &text);
        assert_eq!(out, format!("{}*** t…", "x".repeat(EXCERPT_CHARS - 5)));
        // Fields are scrubbed before the cut too.
        assert_eq!(
            shape(&r, "a SECRETVALUE123 password=pw", 12),
            "a *** passwo…"
        );
    }

    #[test]
    fn scrubs_credential_fields() {
        let out = scrub_fields(
            r#"{"access_token": "eyJ\"abc", "id_token":"x.y.z", "user": "bob"} a=1&password=hunter2&b=2 <input type=hidden name="api_key" value="k-123">"#,
        );
        assert!(!out.contains("eyJ"), "{out}");
        assert!(!out.contains("x.y.z"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("k-123"), "{out}");
        assert!(out.contains(r#""user": "bob""#), "{out}");
        assert!(out.contains("a=1&password=***&b=2"), "{out}");
    }
}
