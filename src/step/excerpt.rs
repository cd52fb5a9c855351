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

/// Where on a page its message usually is, most telling first: error
/// notes (Django's `errornote`/`errorlist`, ARIA alerts), then the main
/// content. A failure excerpt starts at the first that has text.
pub const FOCUS: &[&str] = &[
    "[role=alert]",
    ".errornote",
    ".errorlist",
    ".error",
    ".alert",
    "#error",
    "main",
    "[role=main]",
    "h1",
];

/// A page as failure excerpts show it: its title, and its visible text
/// from `anchor` (the text that explains the failure, or where a refused
/// value was found) when it is on the page, else from its start; redacted,
/// then cut.
pub fn page(redactor: &Redactor, title: &str, text: &str, anchor: Option<&str>) -> String {
    let title = squash(title);
    let text = squash(text);
    let from = anchor
        .map(squash)
        .filter(|a| !a.is_empty())
        .and_then(|a| text.find(&a))
        .unwrap_or(0);
    // A little context before the anchor, starting at a word.
    let start = if from == 0 {
        0
    } else {
        match text[..from].char_indices().rev().nth(40) {
            None => 0,
            Some((back, _)) => text[back..from].find(' ').map_or(back, |i| back + i + 1),
        }
    };
    let lead = if start > 0 { "…" } else { "" };
    let shown = if title.is_empty() {
        format!("text: {lead}{}", &text[start..])
    } else {
        format!("title: {title} · text: {lead}{}", &text[start..])
    };
    shape(redactor, &shown, EXCERPT_CHARS)
}

/// Whitespace runs as one space, trimmed.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The failure excerpt of a response: for HTML, [`page`] (title and
/// visible text from `anchor`, else from the part that explains the page,
/// see [`FOCUS`]), never its `<head>`; other bodies as [`body`].
pub fn response(
    redactor: &Redactor,
    resp: &crate::step::response::Response,
    anchor: Option<&str>,
) -> String {
    let ct = resp.header_all("content-type").first().copied();
    let text = resp.text();
    let looks_html = || {
        let head: String = text.trim_start().chars().take(15).collect();
        let head = head.to_ascii_lowercase();
        head.starts_with("<!doctype html") || head.starts_with("<html")
    };
    let html = match ct {
        Some(ct) => ct.to_ascii_lowercase().contains("html"),
        None => looks_html(),
    };
    if !html {
        return body(redactor, text);
    }
    let Ok(doc) = resp.html() else {
        return body(redactor, text);
    };
    let (title, visible, focus) = visible_text(&doc);
    page(redactor, &title, &visible, anchor.or(focus.as_deref()))
}

/// Elements that do not break a line of text (HTML's phrasing content).
const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "i", "kbd", "label",
    "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
];

/// An HTML document's title, the visible text of its body (no `<head>`,
/// scripts, styles or templates) and the text of its first [`FOCUS`]
/// element that has any.
pub fn visible_text(doc: &scraper::Html) -> (String, String, Option<String>) {
    use scraper::{ElementRef, Node, Selector};
    fn walk(e: ElementRef<'_>, out: &mut String) {
        if matches!(
            e.value().name(),
            "head" | "script" | "style" | "template" | "noscript" | "title"
        ) {
            return;
        }
        for child in e.children() {
            match child.value() {
                Node::Text(t) => {
                    out.push_str(t);
                }
                Node::Element(_) => {
                    if let Some(c) = ElementRef::wrap(child) {
                        // Blocks are apart, inline elements run on, as a
                        // browser's `innerText` has them.
                        let gap = if INLINE.contains(&c.value().name()) {
                            ""
                        } else {
                            " "
                        };
                        out.push_str(gap);
                        walk(c, out);
                        out.push_str(gap);
                    }
                }
                _ => {}
            }
        }
    }
    let title = Selector::parse("title")
        .ok()
        .and_then(|s| doc.select(&s).next())
        .map(|t| t.text().collect::<String>())
        .unwrap_or_default();
    let mut text = String::new();
    walk(doc.root_element(), &mut text);
    let focus = FOCUS.iter().find_map(|sel| {
        let s = Selector::parse(sel).ok()?;
        doc.select(&s).find_map(|e| {
            let mut t = String::new();
            walk(e, &mut t);
            let t = squash(&t);
            (!t.is_empty()).then_some(t)
        })
    });
    (squash(&title), squash(&text), focus)
}

/// A URL as messages show it: a password in it and every query value
/// masked (tokens often travel there), then secrets masked; text that is not
/// a URL is only redacted.
pub fn url(redactor: &Redactor, text: &str) -> String {
    let Ok(mut u) = url::Url::parse(text) else {
        return redactor.apply(text);
    };
    if u.password().is_some() {
        let _ = u.set_password(Some(MASK));
    }
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let masked = names
            .iter()
            .map(|k| {
                let k: String = url::form_urlencoded::byte_serialize(k.as_bytes()).collect();
                format!("{k}={MASK}")
            })
            .collect::<Vec<_>>()
            .join("&");
        u.set_query(Some(&masked));
    }
    redactor.apply(u.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_hide_passwords_query_values_and_secrets() {
        let mut r = Redactor::default();
        r.add("s3cr3t-path");
        assert_eq!(
            url(
                &r,
                "https://bob:hunter2@shop.test/s3cr3t-path/x?token=abc&q=tea#top"
            ),
            "https://bob:***@shop.test/***/x?token=***&q=***#top"
        );
        assert_eq!(url(&r, "http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        assert_eq!(url(&r, "not a url s3cr3t-path"), "not a url ***");
    }

    #[test]
    fn html_excerpts_show_the_title_and_the_text_that_explains_the_page() {
        let html = "<!doctype html><html><head><title>Log in | Shop</title>\
            <style>body{color:red}</style><script>var csrf='x'</script></head>\
            <body><nav>Home Shop Basket Orders Account Help Contact About Press</nav><h1>Log in</h1>\
            <p class=errornote>Please enter a correct username and password.</p>\
            <form><input name=username></form></body></html>";
        let resp = crate::step::response::Response::new(
            401,
            "http://shop.test/login".into(),
            vec![("content-type".into(), "text/html; charset=utf-8".into())],
            bytes::Bytes::from(html),
        );
        let r = Redactor::default();
        assert_eq!(
            response(&r, &resp, None),
            "title: Log in | Shop · text: …Account Help Contact About Press Log in Please enter a correct username and password."
        );
        // Where a refused text was found, rather than the error note.
        assert_eq!(
            response(&r, &resp, Some("Basket")),
            "title: Log in | Shop · text: Home Shop Basket Orders Account Help Contact About Press Log in Please enter a correct username and password."
        );
        assert_eq!(
            page(&r, "t", "a b c", Some("absent")),
            "title: t · text: a b c"
        );
        assert_eq!(page(&r, " ", "a\n b", None), "text: a b");
        // Not HTML: the body as it is.
        let json = crate::step::response::Response::new(
            500,
            "http://shop.test/api".into(),
            vec![("content-type".into(), "application/json".into())],
            bytes::Bytes::from("{\"error\": \"down\"}"),
        );
        assert_eq!(response(&r, &json, None), "{\"error\": \"down\"}");
    }

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
