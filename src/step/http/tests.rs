//! Unit tests of the HTTP step: failure classification, redirects, the
//! cookie jar's choices, the `-v` views, credentials and decompression.

use super::*;
use crate::step::timing::ConnectError;

#[test]
fn failures_are_classified_by_phase_then_by_what_the_error_says() {
    let io = |m: &str| std::io::Error::other(m.to_string());
    let reason = |e: &std::io::Error, body| classify(e, body).0;
    // Each phrase alone is enough.
    for m in [
        "certificate",
        "handshake",
        "peer sent",
        "received fatal alert",
        "corrupt message",
    ] {
        assert_eq!(reason(&io(m), false), Reason::Tls, "{m}");
    }
    for m in [
        "connection reset by peer",
        "connection closed before message completed",
        "unexpected EOF",
        "incomplete body",
        "broken pipe",
        "end of file",
    ] {
        assert_eq!(reason(&io(m), false), Reason::Reset, "{m}");
        assert_eq!(reason(&io(m), true), Reason::Reset, "{m}");
    }
    // Nothing known: a broken body read is a reset, anything else internal.
    assert_eq!(reason(&io("no idea"), true), Reason::Reset);
    assert_eq!(
        classify(&io("no idea"), false),
        (Reason::Internal, "request failed: no idea".to_string())
    );
    // The connector names the phase, whatever the text says.
    let refused = ConnectError::Tcp(io("connection refused (reset)"));
    assert_eq!(
        classify(&refused, false),
        (
            Reason::Connect,
            "cannot connect: connection refused (reset)".to_string()
        )
    );
    assert_eq!(
        reason_of(ConnectError::Dns(io("no such host"))),
        Reason::Dns
    );
    assert_eq!(reason_of(ConnectError::Tls(io("closed"))), Reason::Tls);
    assert_eq!(
        reason_of(ConnectError::Proxy("403".into())),
        Reason::Connect
    );
    assert_eq!(reason_of(ConnectError::NoHost), Reason::Protocol);
}

/// hyper's own verdicts, whatever their words: a request whose
/// connection went away before it was sent ("operation was canceled:
/// connection was not ready") is a broken connection.
#[tokio::test]
async fn a_request_canceled_by_hyper_is_a_reset() {
    let (io, _server) = tokio::io::duplex(1024);
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .unwrap();
    drop(conn);
    let req = http::Request::new(http_body_util::Empty::<bytes::Bytes>::new());
    let e = send.send_request(req).await.unwrap_err();
    assert!(e.is_canceled(), "{e:?}");
    assert_eq!(classify(&e, false).0, Reason::Reset, "{e:?}");
}

/// A request hyper refuses to send (here its body fails as it is
/// written: hyper's "user" errors) is `protocol`, not `internal`: the
/// request, not wayprobe, is at fault.
#[tokio::test]
async fn a_request_hyper_refuses_is_protocol() {
    let (io, _server) = tokio::io::duplex(64 * 1024);
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = http_body_util::StreamBody::new(futures_util::stream::iter([Err::<
        hyper::body::Frame<bytes::Bytes>,
        std::io::Error,
    >(
        std::io::Error::other("no body today"),
    )]));
    let req = http::Request::post("/").body(body).unwrap();
    let e = send.send_request(req).await.unwrap_err();
    assert!(e.is_user(), "{e:?}");
    assert_eq!(classify(&e, false).0, Reason::Protocol, "{e:?}");
}

fn reason_of(e: ConnectError) -> Reason {
    classify(&e, false).0
}

#[test]
fn only_redirect_statuses_redirect() {
    for s in [301, 302, 303, 307, 308] {
        assert!(is_redirect(s), "{s}");
    }
    for s in [200, 300, 304, 305, 306, 309, 404] {
        assert!(!is_redirect(s), "{s}");
    }
}

/// A jar after three responses: `https://a.test/` set `sid=root` and
/// `y=app` on `/`, `https://b.test/app` set its own `sid`, and the final
/// `https://a.test/app/page` set `sid=app` and `x=1` on `/app`.
fn jar() -> (reqwest_cookie_store::CookieStoreMutex, url::Url, String) {
    let jar = reqwest_cookie_store::CookieStoreMutex::default();
    let set = |url: &str, cookies: &[&str]| {
        let values: Vec<HeaderValue> = cookies
            .iter()
            .map(|c| HeaderValue::from_str(c).unwrap())
            .collect();
        reqwest::cookie::CookieStore::set_cookies(
            &jar,
            &mut values.iter(),
            &url::Url::parse(url).unwrap(),
        );
    };
    let sid = "sid=app; Path=/app; Secure; HttpOnly; SameSite=Lax";
    set("https://a.test/", &["sid=root; Path=/", "y=app; Path=/"]);
    set("https://b.test/app", &["sid=other; Path=/app"]);
    set("https://a.test/app/page", &[sid, "x=1; Path=/app"]);
    (
        jar,
        url::Url::parse("https://a.test/app/page").unwrap(),
        sid.into(),
    )
}

#[test]
fn cookies_judged_are_the_ones_set_then_the_ones_that_apply() {
    // The jar's order is its hash maps': many jars, so a wrong pick shows.
    for _ in 0..24 {
        let (jar, url, sid) = jar();
        let got = cookies_for(&jar, &url, &[sid]);
        let seen: Vec<(&str, &str, Option<&str>)> = got
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_str(), c.path.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("sid", "app", Some("/app")),
                ("x", "1", Some("/app")),
                ("sid", "root", Some("/")),
                ("y", "app", Some("/")),
            ]
        );
        assert!(got[0].secure && got[0].http_only);
        assert_eq!(got[0].same_site.as_deref(), Some("Lax"));
        assert!(!got[1].secure && !got[1].http_only && got[1].same_site.is_none());
    }
}

#[test]
fn verbose_shows_cookie_names_never_values() {
    let (jar, url, _) = jar();
    let r = Redactor::default();
    let mut sent = sent_cookies(&jar, &url, &r);
    sent.sort();
    assert_eq!(sent, ["sid=***", "sid=***", "x=***", "y=***"]);
    assert_eq!(
        set_cookie_shown(&r, "sid=abc123; Path=/; HttpOnly"),
        "sid=***; Path=/; HttpOnly"
    );
    assert_eq!(set_cookie_shown(&r, "sid=abc123"), "sid=***");
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("Bearer abc.def"));
    h.insert("x-trace", HeaderValue::from_static("t-1"));
    assert_eq!(
        headers_of(&h, &r),
        [
            ("authorization".to_string(), "Bearer ***".to_string()),
            ("x-trace".to_string(), "t-1".to_string())
        ]
    );
}

#[test]
fn verbose_shows_request_bodies_text_redacted_and_data_by_size() {
    let mut r = Redactor::default();
    r.add("hunter22");
    let text = Prepared::Bytes {
        data: b"user=bob&pw=hunter22".to_vec(),
        content_type: "application/x-www-form-urlencoded".into(),
    };
    assert_eq!(text.shown(&r).as_deref(), Some("user=bob&pw=***"));
    let data = Prepared::Bytes {
        data: vec![0xff, 0xfe, 0],
        content_type: "application/octet-stream".into(),
    };
    assert_eq!(
        data.shown(&r).as_deref(),
        Some("(3 bytes of application/octet-stream)")
    );
    let form = Prepared::Multipart(vec![
        ("note".into(), MPart::Text("hi".into())),
        (
            "doc".into(),
            MPart::File {
                data: b"abcd".to_vec(),
                content_type: "text/plain".into(),
                filename: "a.txt".into(),
            },
        ),
    ]);
    assert_eq!(
        form.shown(&r).as_deref(),
        Some("note=hi; doc=@a.txt (4 bytes of text/plain)")
    );
    assert_eq!(Prepared::None.shown(&r), None);
}

#[test]
fn credentials_are_headers_by_name_or_by_a_secret_in_them() {
    let mut r = Redactor::default();
    r.add("s3cr3t-value");
    let cred = |n: &'static str, v: &[u8]| {
        is_credential(
            &HeaderName::from_static(n),
            &HeaderValue::from_bytes(v).unwrap(),
            &r,
        )
    };
    assert!(cred("authorization", b"Bearer public"));
    assert!(cred("x-custom", b"token s3cr3t-value"));
    assert!(!cred("x-custom", b"token public"));
    // A value that is not text cannot be checked: treated as a credential.
    assert!(cred("x-custom", b"\xff"));
}

#[test]
fn credentials_follow_a_redirect_only_within_the_origin_or_when_kept() {
    let r = Redactor::default();
    let kept = |from: &str, to: &str| {
        let mut h = vec![
            (
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer t"),
            ),
            (
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_static("k"),
            ),
            (
                HeaderName::from_static("accept"),
                HeaderValue::from_static("text/plain"),
            ),
        ];
        let (from, to) = (url::Url::parse(from).unwrap(), url::Url::parse(to).unwrap());
        strip_credentials(&mut h, &from, &to, &["x-api-key".into()], &r);
        h.iter()
            .map(|(k, _)| k.as_str().to_string())
            .collect::<Vec<_>>()
    };
    let all = ["authorization", "x-api-key", "accept"];
    let listed = ["x-api-key", "accept"];
    assert_eq!(kept("https://a.test/x", "https://a.test/y"), all);
    assert_eq!(kept("https://a.test/", "https://b.test/"), listed);
    assert_eq!(kept("http://a.test/", "http://b.test/"), listed);
    assert_eq!(kept("http://a.test/", "http://a.test:8080/"), listed);
    assert_eq!(kept("http://a.test/", "https://a.test/"), listed);
    // Never to plain HTTP from HTTPS, listed or not.
    assert_eq!(kept("https://a.test/", "http://a.test/"), ["accept"]);
    assert_eq!(kept("https://a.test/", "http://b.test/"), ["accept"]);
}

#[test]
fn bodies_are_decoded_by_their_encoding_within_max_body() {
    use std::io::Write;
    let text = b"hello, decoded world";
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    let deflate = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    // Brotli: one uncompressed meta-block of 20 bytes, then the last (empty) one.
    let br = [&[0x30, 0x01, 0x10][..], text, &[0x03]].concat();
    let max = text.len() as u64;
    for (enc, raw) in [
        ("gzip", &gzip),
        ("x-gzip", &gzip),
        ("deflate", &deflate),
        ("br", &br),
    ] {
        let got =
            decompress(enc, raw.clone().into(), max).unwrap_or_else(|f| panic!("{enc}: {f:?}"));
        assert_eq!(&got[..], text, "{enc}");
        let f = decompress(enc, raw.clone().into(), max - 1).unwrap_err();
        assert_eq!(f.reason, Reason::BodyTooLarge, "{enc}");
    }
    // Other codings are judged as sent.
    assert_eq!(
        &decompress("identity", gzip.clone().into(), 1).unwrap()[..],
        &gzip[..]
    );
    let f = decompress("gzip", text.to_vec().into(), max).unwrap_err();
    assert_eq!(f.reason, Reason::InvalidBody);
}
