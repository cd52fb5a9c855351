//! Keeping secrets out of every output.
//!
//! Redaction is by value: whatever a run learned is secret (secret values and
//! captures marked `redact: true`) is replaced by `***` in messages, excerpts,
//! headers and URLs, including its URL-encoded, JSON-escaped, HTML and base64
//! forms, so a server that echoes a password back cannot leak it. Sensitive
//! headers are also masked by name. Text is redacted before it is cut
//! (by the step's excerpt shaping), so a cut never leaves part of a secret.

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

/// Whether a header of this name always carries credentials (its value is
/// masked in output and dropped on a redirect to another origin).
pub fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

/// What separates the words of a secret in its forms (a space, `+` or
/// `%20` in URLs, `&#32;` in HTML).
static WORD_GAP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?:\s|\+|%20|&#32;)+").expect("a valid pattern")
});

/// Any run of whitespace however written (raw, `+`, percent-encoded, as an
/// HTML reference or a JSON escape): a page or header may re-space a secret.
const GAP: &str =
    r"(?:\s|\+|%(?:20|0[9AaDd])|&#(?:32|9|10|13);|&#x(?:20|9|[aAdD]);|&nbsp;|\\[nrt])+";

/// Values to hide, in every encoding they may appear in.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The secret values as given.
    secrets: Vec<String>,
    /// Every form of every secret, longest first.
    needles: Vec<String>,
    /// One matcher over all needles, whitespace-tolerant (see [`Redactor::add`]).
    matcher: Option<regex::Regex>,
}

impl Redactor {
    /// Adds a secret value and its usual encodings: URL (`%20` and `+`),
    /// JSON-escaped, HTML entities (named, decimal, hexadecimal) and base64
    /// (standard and URL-safe, also where the secret sits inside a larger
    /// encoded value, as in `Basic` credentials). Whitespace inside a secret
    /// matches any whitespace run, so a value re-wrapped or re-spaced by a
    /// page or a header is still masked whole.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() || self.secrets.iter().any(|s| s == secret) {
            return;
        }
        self.secrets.push(secret.to_string());
        let mut forms = vec![secret.to_string()];
        let pct: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        forms.push(pct.replace('+', "%20"));
        // Jinja's `urlencode` filter keeps `/` as it is (a path-safe form).
        forms.push(pct.replace('+', "%20").replace("%2F", "/"));
        forms.push(pct);
        let json = serde_json::to_string(secret).unwrap_or_default();
        forms.push(json.trim_matches('"').to_string());
        forms.extend(html_forms(secret));
        forms.extend(base64_forms(secret.as_bytes()));
        for f in forms {
            if !f.is_empty() && !self.needles.contains(&f) {
                self.needles.push(f);
            }
        }
        // Longest first so a value is never half-masked by a shorter form.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let pattern = self
            .needles
            .iter()
            .map(|n| {
                // A separator at either end stays (as a gap): dropping it
                // would leave that character of the secret shown, e.g. the
                // `+` or `/` that ends a base64 fragment.
                let words: Vec<String> = WORD_GAP.split(n).map(regex::escape).collect();
                // A secret of separators only is matched as written.
                if words.iter().all(|w| w.is_empty()) {
                    regex::escape(n)
                } else {
                    words.join(GAP)
                }
            })
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("|");
        // Only literals and `\s+` go in: the pattern always compiles; the
        // size limit is raised for many long secrets.
        self.matcher = regex::RegexBuilder::new(&pattern)
            .size_limit(64 << 20)
            .build()
            .ok();
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// The secret values as added (for masking them in a page before a
    /// screenshot; never for output).
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `text` with every secret masked.
    pub fn apply(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(text, MASK).into_owned(),
            None => {
                let mut out = text.to_string();
                for n in &self.needles {
                    if out.contains(n.as_str()) {
                        out = out.replace(n.as_str(), MASK);
                    }
                }
                out
            }
        }
    }

    /// A header value for display: masked by value, then by name.
    ///
    /// A sensitive header's value is hidden whole; only a structural prefix
    /// that is not secret stays readable: a known authentication scheme
    /// (`Bearer ***`) or a cookie name (`session=***`). Anything else, such
    /// as a bare API key, shows as `***` whatever its characters.
    pub fn header(&self, name: &str, value: &str) -> String {
        let name = name.to_ascii_lowercase();
        if !is_sensitive_header(&name) {
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

/// HTML forms of a secret: `&`, `<`, `>`, `"` and `'` escaped by name or
/// number, and every character as a decimal or hexadecimal reference.
fn html_forms(secret: &str) -> Vec<String> {
    let named = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut out = Vec::new();
    for (dq, sq) in [
        ("&quot;", "&#39;"),
        ("&#34;", "&#x27;"),
        ("&quot;", "&apos;"),
    ] {
        out.push(named.replace('"', dq).replace('\'', sq));
    }
    out.push(secret.chars().map(|c| format!("&#{};", c as u32)).collect());
    out.push(
        secret
            .chars()
            .map(|c| format!("&#x{:x};", c as u32))
            .collect(),
    );
    out
}

/// Base64 forms of a secret: whole (padded or not), and the part of its
/// encoding that does not depend on what precedes or follows it when it is
/// encoded inside a larger value (three alignments), in both alphabets.
fn base64_forms(secret: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let mut out = Vec::new();
    for engine in [&STANDARD, &URL_SAFE] {
        let whole = engine.encode(secret);
        out.push(whole.trim_end_matches('=').to_string());
        out.push(whole);
        for pad in 0..3usize {
            let mut buf = vec![0u8; pad];
            buf.extend_from_slice(secret);
            let enc = engine.encode(&buf);
            // Characters made only of the secret's bits.
            let start = (pad * 8).div_ceil(6);
            let end = ((pad + secret.len()) * 8) / 6;
            if end > start && end - start >= 6 {
                out.push(enc[start..end].to_string());
            }
        }
    }
    out
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

    /// The template filter `urlencode` (Jinja's) keeps `/`: that form is a
    /// secret too, e.g. in a URL's userinfo.
    #[test]
    fn masks_the_urlencode_filters_form() {
        let mut r = Redactor::default();
        r.add("p@ss w0rd/+&");
        let t = crate::template::Template::parse("{{ 'p@ss w0rd/+&' | urlencode }}").unwrap();
        let shown = t.render(&Default::default()).unwrap();
        assert_ne!(shown, "p@ss w0rd/+&");
        let out = r.apply(&format!("http://bob:{shown}@127.0.0.1/"));
        assert_eq!(out, "http://bob:***@127.0.0.1/", "{shown}");
    }

    #[test]
    fn masks_whole_values_with_spaces_entities_and_base64() {
        let mut r = Redactor::default();
        r.add("correct horse battery staple");
        let out = r.apply("pw: correct  horse\n battery staple.");
        assert_eq!(out, "pw: ***.");
        assert_eq!(r.header("x-pass", "correct horse battery staple"), MASK);
        assert_eq!(
            r.header("authorization", "Basic correct horse battery staple"),
            "Basic ***"
        );
        let mut r = Redactor::default();
        r.add("s3cr3t'<x>");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        for shown in [
            "s3cr3t&#39;&lt;x&gt;".to_string(),
            "s3cr3t&#x27;&lt;x&gt;".to_string(),
            "&#115;&#51;&#99;&#114;&#51;&#116;&#39;&#60;&#120;&#62;".to_string(),
            b64.encode("s3cr3t'<x>"),
            b64.encode("alice:s3cr3t'<x>"),
            b64.encode("al:s3cr3t'<x>"),
            b64.encode("a:s3cr3t'<x>"),
        ] {
            let out = r.apply(&format!("[{shown}]"));
            assert!(out.contains(MASK), "{shown} -> {out}");
            assert!(!out.contains("s3cr3t"), "{shown} -> {out}");
        }
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
        // Exactly `max` characters: nothing cut, no ellipsis.
        assert_eq!(excerpt("héllo", 5), "héllo");
        // Control characters become spaces; line breaks stay.
        assert_eq!(excerpt("a\tb\nc\u{7}d\r", 10), "a b\nc d ");
    }

    /// Every secret is kept and masked, not only the first; the values are
    /// given back as added (the browser masks them in a page before a
    /// screenshot), each once.
    #[test]
    fn every_secret_is_masked_and_kept_once() {
        let mut r = Redactor::default();
        for s in ["alpha-1", "beta-22", "alpha-1", ""] {
            r.add(s);
        }
        assert_eq!(r.secrets(), ["alpha-1", "beta-22"]);
        assert_eq!(r.apply("alpha-1 beta-22 gamma"), "*** *** gamma");
    }

    /// Base64 credentials that hold a secret after a prefix of any length
    /// (`user:` in `Basic`), in both alphabets: every character made only of
    /// the secret's bits is masked, and only those (the characters that mix
    /// in the prefix or what follows stay); aligned on a 3-byte group, the
    /// secret's own encoding is masked whole, padding included.
    #[test]
    fn masks_a_secret_inside_base64_at_every_alignment() {
        let mut r = Redactor::default();
        r.add("s3cr3t'<x>");
        for (shown, want) in [
            ("czNjcjN0Jzx4Pg==", "***"),
            ("czNjcjN0Jzx4PiE=", "***iE="),
            ("Ym86czNjcjN0Jzx4PiE=", "Ym86***iE="),
            ("YWxpY2U6czNjcjN0Jzx4Pg==", "YWxpY2U6***"),
            ("Ym9iOnMzY3IzdCc8eD4=", "Ym9iOn***4="),
            ("Ym9iOnMzY3IzdCc8eD4h", "Ym9iOn***4h"),
            ("YjpzM2NyM3QnPHg+IQ==", "Yjp***IQ=="),
            ("YjpzM2NyM3QnPHg-IQ==", "Yjp***IQ=="),
            ("Ym9iYjpzM2NyM3QnPHg-", "Ym9iYjp***"),
        ] {
            assert_eq!(r.apply(&format!("Basic {shown}")), format!("Basic {want}"));
        }
        // A short secret's base64 fragments are too short to tell from
        // other text: only its whole encoding is masked (`B3` and `wd` are
        // its fragments after one and two bytes).
        let mut r = Redactor::default();
        r.add("pw");
        assert_eq!(r.apply("cHat B3 wd cHc= cHc"), "cHat B3 wd *** ***");
    }
}
