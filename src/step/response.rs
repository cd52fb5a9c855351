//! A fully read response: status, headers as the server sent them, the body
//! bytes, and lazily decoded views of the body (text, JSON).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// A fully read response, with lazily decoded views of its body.
///
/// Headers are the ones the server sent (a compressed body keeps its
/// `Content-Encoding` and `Content-Length`); the body is the decoded one.
#[derive(Debug)]
pub struct Response {
    /// Final status code.
    pub status: u16,
    /// Final URL (after redirects).
    pub url: String,
    /// Headers with lower-case names, in order, as sent on the wire.
    pub headers: Vec<(String, String)>,
    /// The body, decompressed (at most `max_body` bytes).
    pub body: Bytes,
    /// Time from sending the first request to the end of the body.
    pub elapsed: Duration,
    /// Cookies that apply to the final URL, and those the response set;
    /// the most specific first (chosen by the HTTP executor).
    pub cookies: Vec<CookieInfo>,
    /// When work over the body (HTML parsing) must stop: the step deadline.
    pub deadline: Option<Instant>,
    text: OnceLock<String>,
    json: OnceLock<Result<Value, String>>,
}

/// Elements nested deeper than this are not parsed: HTML parsing costs grow
/// with depth for every element, so a hostile page could burn minutes of
/// CPU. Browsers cap the DOM depth their parser builds at the same 512.
pub const MAX_HTML_DEPTH: usize = 512;

/// Estimated memory a parsed JSON body may take (bytes). A 4 MiB body of
/// small objects parses to hundreds of MiB; this bound fails it instead.
pub const MAX_JSON_MEMORY: usize = 64 * 1024 * 1024;

/// Why the body could not be viewed as HTML.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// Nested deeper than [`MAX_HTML_DEPTH`].
    #[error(
        "the HTML nests elements deeper than {MAX_HTML_DEPTH} levels; wayprobe does not parse it"
    )]
    TooDeep,
    /// The step deadline passed while parsing.
    #[error("the step's time ran out while parsing the HTML")]
    Deadline,
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
            deadline: None,
            text: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The body as text, decoded by the charset the server declared (the
    /// `Content-Type` header, then a byte-order mark, then an HTML `<meta>`),
    /// UTF-8 otherwise; undecodable bytes become U+FFFD.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| {
            let ct = self.header_all("content-type").first().copied();
            let (text, _) = charset::decode(&self.body, ct);
            text
        })
    }

    /// The body parsed as JSON, once, within [`MAX_JSON_MEMORY`] and
    /// serde_json's nesting limit (128).
    pub fn json(&self) -> Result<&Value, String> {
        self.json
            .get_or_init(|| bounded_json::parse(self.text().as_bytes(), MAX_JSON_MEMORY))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The body parsed as an HTML document, bounded in depth
    /// ([`MAX_HTML_DEPTH`]) and by [`Response::deadline`].
    pub fn html(&self) -> Result<scraper::Html, HtmlError> {
        html::parse(self.text(), self.deadline)
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

/// Decoding text by its declared charset.
pub mod charset {
    use std::borrow::Cow;

    use encoding_rs::Encoding;

    /// How far into an HTML document a `<meta charset>` is looked for
    /// (the HTML standard's prescan reads 1024 bytes).
    const META_PRESCAN: usize = 1024;

    /// Decodes `body` by the charset of `content_type`, else its BOM, else
    /// (for HTML) a `<meta>` charset, else UTF-8. Returns the text and the
    /// encoding's name.
    pub fn decode(body: &[u8], content_type: Option<&str>) -> (String, &'static str) {
        let declared = content_type.and_then(label_of);
        let html = content_type.is_none_or(|c| c.to_ascii_lowercase().contains("html"));
        let enc = declared
            .and_then(|l| Encoding::for_label(l.as_bytes()))
            .or_else(|| Encoding::for_bom(body).map(|(e, _)| e))
            .or_else(|| html.then(|| meta_charset(body)).flatten())
            .unwrap_or(encoding_rs::UTF_8);
        // `decode` lets a BOM override the label, as the Encoding standard says.
        let (text, used, _) = enc.decode(body);
        (
            match text {
                Cow::Borrowed(s) => s.to_string(),
                Cow::Owned(s) => s,
            },
            used.name(),
        )
    }

    /// The `charset` parameter of a `Content-Type` value.
    fn label_of(ct: &str) -> Option<String> {
        let m: mime::Mime = ct.trim().parse().ok()?;
        m.get_param(mime::CHARSET).map(|c| c.as_str().to_string())
    }

    /// The charset a `<meta charset=...>` or `<meta http-equiv content=...>`
    /// declares in the first bytes of a document.
    fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
        let head = &body[..body.len().min(META_PRESCAN)];
        let head = String::from_utf8_lossy(head).to_ascii_lowercase();
        let mut rest = head.as_str();
        while let Some(i) = rest.find("<meta") {
            rest = &rest[i + 5..];
            let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
            if let Some(j) = tag.find("charset=") {
                let v = tag[j + 8..].trim_start_matches(['"', '\'', ' ']);
                let end = v
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "-_:.".contains(c)))
                    .unwrap_or(v.len());
                if let Some(e) = Encoding::for_label(&v.as_bytes()[..end]) {
                    // A meta cannot declare UTF-16: the bytes read so far were ASCII.
                    return Some(
                        if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE {
                            encoding_rs::UTF_8
                        } else {
                            e
                        },
                    );
                }
            }
        }
        None
    }
}

/// HTML parsing bounded in depth and time.
mod html {
    use std::time::Instant;

    use html5ever::tendril::TendrilSink;

    use super::{HtmlError, MAX_HTML_DEPTH};

    /// Elements that never have content, and those whose end tag may be
    /// left out: neither deepens a document as the scan below counts it.
    const FLAT: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead",
        "tbody", "tfoot", "rt", "rp", "colgroup", "caption", "html", "head", "body", "!doctype",
    ];

    /// The deepest element nesting of `text`, by a linear scan of its tags
    /// (an upper estimate: raw text in `<script>` may count as tags).
    pub(super) fn depth(text: &str) -> usize {
        let b = text.as_bytes();
        let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
        while let Some(off) = memchr(b'<', &b[i..]) {
            i += off + 1;
            if b[i..].starts_with(b"!--") {
                match find(&b[i..], b"-->") {
                    Some(end) => i += end + 3,
                    None => break,
                }
                continue;
            }
            let closing = b.get(i) == Some(&b'/');
            let start = if closing { i + 1 } else { i };
            let len = b[start..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'!' || **c == b'-')
                .count();
            if len == 0 {
                continue;
            }
            let name = text[start..start + len].to_ascii_lowercase();
            if FLAT.contains(&name.as_str()) {
                continue;
            }
            let end = memchr(b'>', &b[start..]).map_or(b.len(), |e| start + e);
            if closing {
                depth = depth.saturating_sub(1);
            } else if end == 0 || b.get(end.wrapping_sub(1)) != Some(&b'/') {
                depth += 1;
                max = max.max(depth);
            }
        }
        max
    }

    fn memchr(c: u8, b: &[u8]) -> Option<usize> {
        b.iter().position(|x| *x == c)
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// Parses `text` in slices, checking the deadline between them.
    pub(super) fn parse(text: &str, deadline: Option<Instant>) -> Result<scraper::Html, HtmlError> {
        if depth(text) > MAX_HTML_DEPTH {
            return Err(HtmlError::TooDeep);
        }
        let mut parser = html5ever::driver::parse_document(
            scraper::HtmlTreeSink::new(scraper::Html::new_document()),
            Default::default(),
        );
        const SLICE: usize = 16 * 1024;
        let mut rest = text;
        while !rest.is_empty() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(HtmlError::Deadline);
            }
            let mut cut = rest.len().min(SLICE);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (head, tail) = rest.split_at(cut);
            parser.process(head.into());
            rest = tail;
        }
        Ok(parser.finish())
    }
}

/// JSON parsing that stops once the parsed tree would take too much memory.
mod bounded_json {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    /// Rough heap cost of one node, beyond its strings: a map's B-tree
    /// leaf is the largest share (about 600 bytes for a small object).
    const VALUE: usize = 32;
    const OBJECT: usize = 600;

    pub(super) fn parse(body: &[u8], budget: usize) -> Result<Value, String> {
        let left = Cell::new(budget);
        let mut de = serde_json::Deserializer::from_slice(body);
        let v = Seed(&left).deserialize(&mut de).map_err(|e| {
            if left.get() == 0 {
                format!(
                    "the JSON would take over {} MiB in memory; wayprobe does not parse it",
                    budget / (1024 * 1024)
                )
            } else {
                e.to_string()
            }
        })?;
        de.end().map_err(|e| e.to_string())?;
        Ok(v)
    }

    #[derive(Clone, Copy)]
    struct Seed<'a>(&'a Cell<usize>);

    impl Seed<'_> {
        fn spend<E: serde::de::Error>(self, n: usize) -> Result<(), E> {
            match self.0.get().checked_sub(n) {
                Some(l) => {
                    self.0.set(l);
                    Ok(())
                }
                None => {
                    self.0.set(0);
                    Err(E::custom("memory budget exceeded"))
                }
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
            self.spend(VALUE)?;
            Ok(Value::Bool(b))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Value, E> {
            self.spend(VALUE)?;
            Ok(Value::from(n))
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Value, E> {
            self.spend(VALUE)?;
            Ok(Value::from(n))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
            self.spend(VALUE)?;
            Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
            self.spend(VALUE + s.len())?;
            Ok(Value::String(s.to_string()))
        }
        fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Value, E> {
            self.spend(VALUE + s.len())?;
            Ok(Value::String(s))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
            self.spend(VALUE)?;
            Ok(Value::Null)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
            self.visit_unit()
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            self.spend::<A::Error>(VALUE)?;
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(self)? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            self.spend::<A::Error>(OBJECT)?;
            let mut out = Map::new();
            while let Some(k) = map.next_key::<String>()? {
                self.spend::<A::Error>(k.len())?;
                let v = map.next_value_seed(self)?;
                out.insert(k, v);
            }
            if out.is_empty() {
                // An empty object allocates nothing: give the estimate back.
                self.0.set(self.0.get() + OBJECT);
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_not_siblings() {
        assert_eq!(html::depth("<div><div><p>a<p>b</div></div>"), 2);
        assert_eq!(html::depth(&"<div></div>".repeat(10_000)), 1);
        assert_eq!(html::depth(&"<div>".repeat(600)), 600);
        assert_eq!(html::depth("<!-- <div><div> --><br/><img src=x>"), 0);
    }

    #[test]
    fn deep_html_is_refused_and_normal_html_parses() {
        let deep = format!("{}x", "<div>".repeat(MAX_HTML_DEPTH + 1));
        assert!(matches!(html::parse(&deep, None), Err(HtmlError::TooDeep)));
        let ok = html::parse("<ul><li>a<li>b</ul>", None).expect("parses");
        let sel = scraper::Selector::parse("li").unwrap();
        assert_eq!(ok.select(&sel).count(), 2);
    }

    #[test]
    fn json_within_budget_parses_and_beyond_fails() {
        let v = bounded_json::parse(br#"{"a": [1, 2, {"b": "c"}], "d": {}}"#, 1 << 20).unwrap();
        assert_eq!(v["a"][2]["b"], "c");
        let wide = format!("[{}]", vec![r#"{"x":1}"#; 10_000].join(","));
        let e = bounded_json::parse(wide.as_bytes(), 1 << 20).unwrap_err();
        assert!(e.contains("in memory"), "{e}");
    }

    #[test]
    fn text_follows_the_declared_charset() {
        let latin1 = b"Caf\xe9".to_vec();
        let (t, enc) = charset::decode(&latin1, Some("text/html; charset=iso-8859-1"));
        assert_eq!((t.as_str(), enc), ("Café", "windows-1252"));
        let meta = b"<html><head><meta charset=\"windows-1252\"></head>Caf\xe9".to_vec();
        assert!(
            charset::decode(&meta, Some("text/html"))
                .0
                .ends_with("Café")
        );
        let bom = b"\xef\xbb\xbfCaf\xc3\xa9".to_vec();
        assert_eq!(charset::decode(&bom, None).0, "Café");
        assert_eq!(
            charset::decode("Café".as_bytes(), Some("application/json")).0,
            "Café"
        );
    }

    #[test]
    fn a_meta_charset_is_read_whole_and_never_utf_16() {
        let equiv =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-2\">\xb1";
        assert_eq!(
            charset::decode(equiv, Some("text/html")),
            (
                "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-2\">ą"
                    .into(),
                "ISO-8859-2"
            )
        );
        // The bytes before the meta were read as ASCII: a UTF-16 label means UTF-8.
        for label in ["utf-16", "utf-16le", "utf-16be"] {
            let page = format!("<meta charset=\"{label}\">Café");
            assert_eq!(
                charset::decode(page.as_bytes(), None),
                (page.clone(), "UTF-8"),
                "{label}"
            );
        }
    }

    #[test]
    fn response_views_follow_the_headers_and_body() {
        let r = Response::new(
            200,
            "http://t/".into(),
            vec![
                (
                    "content-type".into(),
                    "application/json; charset=iso-8859-1".into(),
                ),
                ("set-cookie".into(), "a=1".into()),
                ("x-other".into(), "z".into()),
                ("set-cookie".into(), "b=2".into()),
            ],
            Bytes::from_static(b"{\"name\": \"Caf\xe9\"}"),
        );
        assert_eq!(r.text(), "{\"name\": \"Café\"}");
        assert_eq!(r.json().unwrap(), &serde_json::json!({"name": "Café"}));
        assert_eq!(r.header_all("set-cookie"), ["a=1", "b=2"]);
        assert!(r.header_all("x-missing").is_empty());
    }

    #[test]
    fn depth_skips_comments_and_self_closed_tags_and_reads_whole_names() {
        assert_eq!(html::depth("<div><!--<div><b>--><span>x</span></div>"), 2);
        assert_eq!(html::depth("<div><!-- never closed <div><div>"), 1);
        assert_eq!(html::depth("<div/><svg><path/><path/></svg>"), 1);
        // Custom elements whose names begin like a void element's still nest.
        assert_eq!(html::depth("<br-x><td-y><p-z>"), 3);
    }

    #[test]
    fn html_parses_to_the_depth_limit_and_stops_at_the_deadline() {
        let div = scraper::Selector::parse("div").unwrap();
        let at_limit = format!("{}x", "<div>".repeat(MAX_HTML_DEPTH));
        let mut r = Response::new(200, "http://t/".into(), vec![], at_limit.into());
        r.deadline = Some(Instant::now() + Duration::from_secs(3600));
        let doc = r.html().expect("as deep as allowed");
        assert_eq!(doc.select(&div).count(), MAX_HTML_DEPTH);
        // A deadline already passed when parsing starts.
        r.deadline = Some(Instant::now());
        assert!(matches!(r.html(), Err(HtmlError::Deadline)));
        let deep = format!("{}x", "<div>".repeat(MAX_HTML_DEPTH + 1));
        let r = Response::new(200, "http://t/".into(), vec![], deep.into());
        assert!(matches!(r.html(), Err(HtmlError::TooDeep)));
        // A character across the 16 KiB slice boundary is fed whole.
        let a = "a".repeat(16 * 1024 - 4);
        let doc = html::parse(&format!("<p>{a}é</p><p>b</p>"), None).unwrap();
        let p = scraper::Selector::parse("p").unwrap();
        let texts: Vec<String> = doc.select(&p).map(|e| e.text().collect()).collect();
        assert_eq!(texts, [format!("{a}é"), "b".to_string()]);
    }

    #[test]
    fn json_values_keep_their_kind() {
        let body = br#"{"t": true, "f": false, "i": -3, "u": 7, "x": 1.5, "n": null,
            "s": "a\"b", "a": [], "o": {}}"#;
        assert_eq!(
            bounded_json::parse(body, 1 << 20).unwrap(),
            serde_json::json!({"t": true, "f": false, "i": -3, "u": 7, "x": 1.5, "n": null,
                "s": "a\"b", "a": [], "o": {}})
        );
    }

    #[test]
    fn json_memory_is_estimated_value_by_value() {
        let over = |body: &str, budget| {
            bounded_json::parse(body.as_bytes(), budget)
                .map(drop)
                .map_err(|e| assert!(e.contains("in memory"), "{e}"))
                .is_err()
        };
        // A string: 32 bytes and its length.
        let s = format!("\"{}\"", "x".repeat(100));
        assert!(!over(&s, 132) && over(&s, 131));
        // null: 32 bytes.
        assert!(!over("null", 32) && over("null", 31));
        // An empty object gives its estimate back: a thousand fit in one's.
        let empties = format!("[{}]", vec!["{}"; 1000].join(","));
        assert!(!over(&empties, 32 + 600) && over(&empties, 32 + 599));
    }

    #[test]
    fn json_memory_is_bounded_at_64_mib() {
        let big = format!("\"{}\"", "x".repeat(2 << 20));
        let r = Response::new(200, "http://t/".into(), vec![], big.into());
        assert_eq!(r.json().unwrap().as_str().map(str::len), Some(2 << 20));
        // 110,000 small objects: about 70 MB parsed.
        let wide = format!("[{}]", vec![r#"{"x":1}"#; 110_000].join(","));
        let r = Response::new(200, "http://t/".into(), vec![], wide.into());
        assert_eq!(
            r.json().unwrap_err(),
            "the JSON would take over 64 MiB in memory; wayprobe does not parse it"
        );
    }
}
