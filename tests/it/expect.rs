//! What a step's `expect:` judges, what templates render and what `-v`
//! hides, through journey files against the in-process target. Each check is
//! run both where it holds and where it must not, and a failure is pinned to
//! its expected and actual text.

use wayprobe::outcome::{Reason, RunResult};

use crate::support::{bin, journey, run, target::Target};

/// The verdict of one step `GET {base}{path}` with `expect:` lines (indented
/// under `expect:`): `Ok` when the run passed, else the failure's reason,
/// expected and actual text.
async fn verdict(base: &str, path: &str, expect: &str) -> Result<(), (Reason, String, String)> {
    let expect: String = expect.lines().map(|l| format!("      {l}\n")).collect();
    let yaml = format!(
        "name: t\ninterval: 1m\ntimeout: 10s\nvars: {{three: \"3\"}}\nsteps:\n  - name: s\n    http: {{url: \"{base}{path}\"}}\n    expect:\n{expect}"
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    match o.result {
        RunResult::Success => Ok(()),
        _ => {
            let f = o.failure().expect("a failed run has a failure");
            Err((
                f.reason,
                f.expected.clone().unwrap_or_default(),
                f.actual.clone().unwrap_or_default(),
            ))
        }
    }
}

/// Runs every case against `path` and lists the ones whose verdict differs.
async fn check_all(base: &str, path: &str, cases: &[(&str, Option<(&str, &str)>)]) {
    let mut wrong = Vec::new();
    for (expect, want) in cases {
        let got = verdict(base, path, expect).await;
        let want = match want {
            None => Ok(()),
            Some((e, a)) => Err((Reason::Assertion, e.to_string(), a.to_string())),
        };
        if got != want {
            wrong.push(format!("{expect}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// `/json` is `{"status": "confirmed", "count": 3, "items": [{"id": "a"},
/// {"id": "b"}, {"id": "c"}], "price": 12.5, "ok": true, "none": null,
/// "tags": ["green", "oolong"], "sizes": [250, 500]}`.
#[tokio::test]
async fn jsonpath_equality_needs_exactly_one_equal_value() {
    let t = Target::start().await;
    check_all(
        &t.base,
        "/json",
        &[
            // A query that matches nothing is not equal to anything...
            (
                r#"jsonpath: {"$.state": confirmed}"#,
                Some(("a value", "no match")),
            ),
            (
                r#"jsonpath: {"$.state": {equals: confirmed}}"#,
                Some(("a value", "no match")),
            ),
            // ... so it is "not equal" to everything.
            (r#"jsonpath: {"$.state": {not_equals: confirmed}}"#, None),
            (r#"jsonpath: {"$.status": {not_equals: shipped}}"#, None),
            (
                r#"jsonpath: {"$.status": {not_equals: confirmed}}"#,
                Some(("not to equal `confirmed`", "\"confirmed\"")),
            ),
            (
                r#"jsonpath: {"$.items[*].id": a}"#,
                Some(("exactly one value", "3 values")),
            ),
            // Types: numbers, booleans and null compare as JSON; a template
            // renders to text, which matches the number or boolean it spells.
            (r#"jsonpath: {"$.price": 12.5}"#, None),
            (
                r#"jsonpath: {"$.price": 12}"#,
                Some(("to equal `12`", "12.5")),
            ),
            (r#"jsonpath: {"$.count": "{{ three }}"}"#, None),
            (r#"jsonpath: {"$.count": "4"}"#, Some(("to equal `4`", "3"))),
            (r#"jsonpath: {"$.ok": true}"#, None),
            (
                r#"jsonpath: {"$.ok": false}"#,
                Some(("to equal `false`", "true")),
            ),
            (r#"jsonpath: {"$.ok": "true"}"#, None),
            (
                r#"jsonpath: {"$.ok": "false"}"#,
                Some(("to equal `false`", "true")),
            ),
            (r#"jsonpath: {"$.none": null}"#, None),
            (
                r#"jsonpath: {"$.ok": null}"#,
                Some(("to equal `null`", "true")),
            ),
            (
                r#"jsonpath: {"$.none": "null"}"#,
                Some(("to equal `null`", "null")),
            ),
            (
                r#"jsonpath: {"$.status": 3}"#,
                Some(("to equal `3`", "\"confirmed\"")),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn jsonpath_comparisons_hold_at_their_boundary() {
    let t = Target::start().await;
    check_all(
        &t.base,
        "/json",
        &[
            (r#"jsonpath: {"$.count": {le: 3}}"#, None),
            (
                r#"jsonpath: {"$.count": {le: 2.5}}"#,
                Some(("a number ≤ 2.5", "3")),
            ),
            (r#"jsonpath: {"$.count": {ge: 3}}"#, None),
            (
                r#"jsonpath: {"$.count": {ge: 3.5}}"#,
                Some(("a number ≥ 3.5", "3")),
            ),
            (
                r#"jsonpath: {"$.count": {lt: 3}}"#,
                Some(("a number < 3", "3")),
            ),
            (r#"jsonpath: {"$.count": {lt: 3.5}}"#, None),
            (
                r#"jsonpath: {"$.count": {gt: 3}}"#,
                Some(("a number > 3", "3")),
            ),
            (r#"jsonpath: {"$.count": {gt: 2.5}}"#, None),
            (r#"jsonpath: {"$.price": {gt: 12, lt: 13}}"#, None),
            // Whole numbers print as such, however large.
            (
                r#"jsonpath: {"$.count": {gt: 1e19}}"#,
                Some(("a number > 10000000000000000000", "3")),
            ),
            // Not a number, or no value at all: never in range.
            (
                r#"jsonpath: {"$.status": {lt: 3}}"#,
                Some(("a number < 3", "\"confirmed\"")),
            ),
            (
                r#"jsonpath: {"$.state": {ge: 0}}"#,
                Some(("a value", "no match")),
            ),
        ],
    )
    .await;
}

/// `exists` and `length` on a JSONPath query, both ways; `not_equals` on
/// several values is no more a pass than `equals` on them.
#[tokio::test]
async fn jsonpath_exists_and_length_count_what_the_query_selects() {
    let t = Target::start().await;
    check_all(
        &t.base,
        "/json",
        &[
            (r#"jsonpath: {"$.status": {exists: true}}"#, None),
            (
                r#"jsonpath: {"$.state": {exists: true}}"#,
                Some(("to exist", "no match")),
            ),
            (r#"jsonpath: {"$.state": {exists: false}}"#, None),
            (
                r#"jsonpath: {"$.items[*].id": {exists: false}}"#,
                Some(("no match", "3 value(s)")),
            ),
            (
                r#"jsonpath: {"$.items[*].id": {not_equals: z}}"#,
                Some(("exactly one value", "3 values")),
            ),
            // One node: an array's items, an object's keys, a string's
            // characters; several nodes: how many.
            (r#"jsonpath: {"$.items": {length: 3}}"#, None),
            (
                r#"jsonpath: {"$.items": {length: 2}}"#,
                Some(("length 2", "length 3")),
            ),
            (r#"jsonpath: {"$": {length: 8}}"#, None),
            (r#"jsonpath: {"$.status": {length: 9}}"#, None),
            (r#"jsonpath: {"$.items[*].id": {length: 3}}"#, None),
            (
                r#"jsonpath: {"$.state": {length: 1}}"#,
                Some(("length 1", "length 0")),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn contains_looks_into_arrays_objects_and_strings() {
    let t = Target::start().await;
    check_all(
        &t.base,
        "/json",
        &[
            // Arrays: an element equal to the value, not a substring of one.
            (r#"jsonpath: {"$.tags": {contains: green}}"#, None),
            (
                r#"jsonpath: {"$.tags": {contains: gre}}"#,
                Some(("to contain `gre`", "[\"green\",\"oolong\"]")),
            ),
            (r#"jsonpath: {"$.tags": {not_contains: black}}"#, None),
            (
                r#"jsonpath: {"$.tags": {not_contains: oolong}}"#,
                Some(("not to contain `oolong`", "[\"green\",\"oolong\"]")),
            ),
            (r#"jsonpath: {"$.sizes": {contains: 500}}"#, None),
            (
                r#"jsonpath: {"$.sizes": {contains: 50}}"#,
                Some(("to contain `50`", "[250,500]")),
            ),
            // Objects: a key. Strings: a substring. Anything else: never.
            (r#"jsonpath: {"$.items[0]": {contains: id}}"#, None),
            (
                r#"jsonpath: {"$.items[0]": {contains: a}}"#,
                Some(("to contain `a`", "{\"id\":\"a\"}")),
            ),
            (r#"jsonpath: {"$.status": {contains: firm}}"#, None),
            (
                r#"jsonpath: {"$.status": {not_contains: firm}}"#,
                Some(("not to contain `firm`", "\"confirmed\"")),
            ),
            (
                r#"jsonpath: {"$.count": {contains: 3}}"#,
                Some(("to contain `3`", "3")),
            ),
            (r#"jsonpath: {"$.count": {not_contains: 3}}"#, None),
            (
                r#"jsonpath: {"$.state": {not_contains: x}}"#,
                Some(("a value", "no match")),
            ),
        ],
    )
    .await;
}

/// `/inspect` sets `flavour=oolong; Path=/; HttpOnly`; `/cookie-attrs` sets
/// `pref=dark; Path=/; Domain=localhost; SameSite=Lax`.
#[tokio::test]
async fn cookie_attribute_checks_fail_when_the_attribute_differs() {
    let t = Target::start().await;
    check_all(
        &t.base,
        "/inspect",
        &[
            (
                "cookies: {flavour: {secure: false, http_only: true, path: /}}",
                None,
            ),
            (
                "cookies: {flavour: {secure: true}}",
                Some(("secure=true", "secure=false")),
            ),
            (
                "cookies: {flavour: {http_only: false}}",
                Some(("http_only=false", "http_only=true")),
            ),
            (
                "cookies: {flavour: {path: /tea}}",
                Some(("path=/tea", "path=/")),
            ),
            (
                "cookies: {flavour: {same_site: lax}}",
                Some(("same_site=Lax", "same_site=unset")),
            ),
            (
                "cookies: {flavour: {domain: example.com}}",
                Some(("domain=example.com", "domain=unset")),
            ),
            ("cookies: {flavour: {value: oolong}}", None),
            (
                "cookies: {flavour: {value: sencha}}",
                Some(("to equal `sencha`", "`oolong`")),
            ),
            (
                "cookies: {flavour: {exists: false}}",
                Some(("to be absent", "set")),
            ),
            ("cookies: {nope: {exists: false}}", None),
            (
                "cookies: {nope: {exists: true}}",
                Some(("to be set", "not in the cookie jar")),
            ),
            (
                "cookies: {nope: {secure: false}}",
                Some(("secure=false", "not in the cookie jar")),
            ),
        ],
    )
    .await;
    let local = t.base.replace("127.0.0.1", "localhost");
    check_all(
        &local,
        "/cookie-attrs",
        &[
            ("cookies: {pref: {same_site: lax, domain: localhost}}", None),
            (
                "cookies: {pref: {same_site: Lax, domain: .localhost}}",
                None,
            ),
            (
                "cookies: {pref: {same_site: strict}}",
                Some(("same_site=Strict", "same_site=Lax")),
            ),
            (
                "cookies: {pref: {domain: example.com}}",
                Some(("domain=example.com", "domain=localhost")),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn header_and_body_predicates_hold_and_fail() {
    let t = Target::start().await;
    check_all(
        &t.base,
        "/inspect",
        &[
            ("headers: {x-request-id: req-42}", None),
            ("headers: {x-request-id: {not_equals: req-43}}", None),
            (
                "headers: {x-request-id: {not_equals: req-42}}",
                Some(("not to equal `req-42`", "`req-42`")),
            ),
            (
                "headers: {x-request-id: {not_contains: 42}}",
                Some(("not to contain `42`", "`req-42`")),
            ),
            ("headers: {x-request-id: {starts_with: req}}", None),
            (
                "headers: {x-request-id: {starts_with: eq}}",
                Some(("to start with `eq`", "`req-42`")),
            ),
            (
                "headers: {x-missing: {exists: true}}",
                Some(("to exist", "absent")),
            ),
            (
                "headers: {x-request-id: {exists: false}}",
                Some(("to be absent", "`req-42`")),
            ),
            ("headers: {x-missing: {not_equals: x}}", None),
            ("body: {not_contains: oolong}", None),
            (
                "body: {not_contains: GET}",
                // Where the refused text is (`{"body":"",...,"method":"GET"`).
                Some((
                    "not to contain `GET`",
                    "it at line 1, column 40 of the body",
                )),
            ),
        ],
    )
    .await;
    // `status` is its own reason.
    let r = verdict(&t.base, "/status/503", "status: 200").await;
    assert_eq!(r, Err((Reason::Status, "200".into(), "503".into())));
    let r = verdict(&t.base, "/ok", "status: [201, 204]").await;
    assert_eq!(r, Err((Reason::Status, "201 or 204".into(), "200".into())));
}

/// `{{ env.NAME }}` renders the variable's value into the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_templates_render_the_variable_set() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let f = dir.join("env.yaml");
    std::fs::write(
        &f,
        format!(
            "steps:\n  - name: s\n    http:\n      url: \"{}/inspect\"\n      headers: {{x-trace: \"tea={{{{ env.WAYPROBE_TEST_TEA }}}}\"}}\n    expect:\n      jsonpath: {{\"$.x_trace\": \"tea=sencha & milk\"}}\n",
            t.base
        ),
    )
    .unwrap();
    let out = bin()
        .arg("run")
        .arg(&f)
        .env("WAYPROBE_TEST_TEA", "sencha & milk")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // Unset, the same journey fails on the template, not on the assertion.
    let out = bin()
        .arg("run")
        .arg(&f)
        .env_remove("WAYPROBE_TEST_TEA")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("reason: template"), "{stdout}");
}

/// `wayprobe run -v` prints request headers; a sensitive header's value is
/// hidden whole whatever its characters: padded base64 (`=` inside), a
/// value with 40+ characters before its first `=` or space, an unknown
/// scheme, from a literal or from `{{ env.X }}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_output_hides_sensitive_header_values_whole() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let f = dir.join("keys.yaml");
    let long = "k".repeat(45);
    std::fs::write(
        &f,
        format!(
            r#"steps:
  - name: s
    http:
      url: "{}/inspect"
      headers:
        authorization: "{{{{ env.WAYPROBE_TEST_KEY }}}}"
        x-api-key: "c2VjcmV0LWtleS0xMjM0NQ=="
        x-auth-token: "{long}=tail {long} x"
        proxy-authorization: "Bearer abc.def.ghi"
        cookie: "session=s3ss10n; theme=dark"
"#,
            t.base
        ),
    )
    .unwrap();
    let out = bin()
        .args(["run", "-v"])
        .arg(&f)
        .env("WAYPROBE_TEST_KEY", "c2VjcmV0LWtleS0xMjM0NQ==")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for leak in ["c2VjcmV0", "kkkk", "tail", "abc.def", "s3ss10n", "theme"] {
        assert!(!stdout.contains(leak), "`{leak}` shown:\n{stdout}");
    }
    for shown in [
        "authorization: ***",
        "x-api-key: ***",
        "x-auth-token: ***",
        "proxy-authorization: Bearer ***",
        "cookie: session=***",
    ] {
        assert!(stdout.contains(shown), "`{shown}` missing:\n{stdout}");
    }
}

/// Template functions, `{# #}` comments and `{% %}` blocks go through the
/// engine; an undefined name is a `template` failure that names it.
#[tokio::test]
async fn templates_render_functions_comments_and_blocks() {
    let t = Target::start().await;
    let url = format!(
        "{}/inspect?ts={{{{ timestamp() }}}}&ms={{{{ timestamp_ms() }}}}&id={{{{ uuid() }}}}&c=a{{# gone #}}b&b={{% if three == '3' %}}yes{{% endif %}}",
        t.base
    );
    let r = verdict(
        &url,
        "",
        r#"jsonpath: {"$.query": {matches: "^ts=1[0-9]{9}&ms=1[0-9]{12}&id=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}&c=ab&b=yes$"}}"#,
    )
    .await;
    assert_eq!(r, Ok(()));
    let yaml = format!(
        "name: t\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: s\n    http: {{url: \"{}/ok?x={{{{ env.WAYPROBE_SURELY_UNSET }}}}\"}}\n",
        t.base
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    let f = o.failure().expect("fails");
    assert_eq!(f.reason, Reason::Template);
    assert_eq!(
        f.message,
        "url: environment variable `WAYPROBE_SURELY_UNSET` (`env.WAYPROBE_SURELY_UNSET`) is not set"
    );
    // At the template that reads it, not at the step's name.
    assert_eq!(f.location.as_deref(), Some("6:17"));
}

/// The first failure of a one-step journey whose step is `step` (YAML lines
/// of the step after its name, indented by 4).
async fn first_failure(step: &str) -> wayprobe::outcome::Failure {
    let yaml = format!("name: t\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: s\n{step}");
    let o = run(&journey(&yaml, &[]), &[]).await;
    o.failure().expect("the step fails").clone()
}

/// A failed body check shows the actual body inline only up to 60
/// characters (quotes included); longer ones are in the excerpt only. A
/// response without a body has no excerpt.
#[tokio::test]
async fn failure_text_shows_short_bodies_inline_and_empty_ones_not_at_all() {
    let t = Target::start().await;
    // `/echo` answers 500 with `you sent: {body} with ` (16 characters + body).
    let echo = |body: &str| {
        format!(
            "    http: {{method: POST, url: \"{}/echo\", raw: \"{body}\"}}\n    expect: {{status: 500, body: {{equals: nope}}}}\n",
            t.base
        )
    };
    let b42 = "x".repeat(42);
    let f = first_failure(&echo(&b42)).await;
    assert_eq!(
        f.actual.as_deref(),
        Some(format!("`you sent: {b42} with `").as_str()),
        "58 characters of body, 60 with quotes: inline"
    );
    let b43 = "x".repeat(43);
    let f = first_failure(&echo(&b43)).await;
    assert_eq!(f.actual.as_deref(), Some("a body that does not"));
    assert_eq!(
        f.excerpt.as_deref(),
        Some(format!("you sent: {b43} with ").as_str())
    );
    // A 302 without a body: the status failure has no excerpt.
    let f = first_failure(&format!(
        "    http: {{url: \"{}/redirect-loop\", follow_redirects: false}}\n    expect: {{status: 200}}\n",
        t.base
    ))
    .await;
    assert_eq!(f.reason, Reason::Status);
    assert_eq!(f.excerpt, None);
}

/// A refused text is located by line and column, the column counted in
/// characters (`é` is one), in the body as received.
#[tokio::test]
async fn a_refused_text_is_found_by_line_and_character_column() {
    let t = Target::start().await;
    // `/echo` answers 500 with `you sent: {body} with `.
    let f = first_failure(&format!(
        "    http: {{method: POST, url: \"{}/echo\", raw: \"é\\néxGET\"}}\n    expect: {{status: 500, body: {{not_contains: GET}}}}\n",
        t.base
    ))
    .await;
    assert_eq!(f.reason, Reason::Assertion);
    assert_eq!(
        f.actual.as_deref(),
        Some("it at line 2, column 3 of the body")
    );
}

/// `duration: {under: D}` holds for a quick answer and fails for a slower one.
#[tokio::test]
async fn duration_under_holds_and_fails() {
    let t = Target::start().await;
    assert_eq!(
        verdict(&t.base, "/ok", "duration: {under: 10s}").await,
        Ok(())
    );
    // The server sleeps 300 ms: the response cannot come in under 100 ms.
    let f = first_failure(&format!(
        "    http: {{url: \"{}/slow?ms=300\"}}\n    expect: {{duration: {{under: 100ms}}}}\n",
        t.base
    ))
    .await;
    assert_eq!(f.reason, Reason::Assertion);
    assert_eq!(f.expected.as_deref(), Some("under 100ms"));
}

/// A capture that finds nothing shows the body it searched, if any.
#[tokio::test]
async fn a_failed_capture_shows_the_body_it_searched() {
    let t = Target::start().await;
    let f = first_failure(&format!(
        "    http: {{url: \"{}/ok\"}}\n    capture: {{id: {{regex: \"id=(\\\\d+)\"}}}}\n",
        t.base
    ))
    .await;
    assert_eq!(f.reason, Reason::Capture);
    assert_eq!(f.message, "capture `id`: /id=(\\d+)/ matched nothing");
    assert_eq!(f.excerpt.as_deref(), Some("ok"));
    let f = first_failure(&format!(
        "    http: {{url: \"{}/redirect-loop\", follow_redirects: false}}\n    capture: {{id: {{header: x-id}}}}\n",
        t.base
    ))
    .await;
    assert_eq!(f.reason, Reason::Capture);
    assert_eq!(f.message, "capture `id`: no `x-id` header");
    assert_eq!(f.excerpt, None);
}

/// A failure's body excerpt: up to 240 characters, an ellipsis only when
/// cut, control characters shown as spaces but newlines kept.
#[tokio::test]
async fn body_excerpts_are_bounded_and_printable() {
    let t = Target::start().await;
    // `/echo` answers 500 with `you sent: {body} with ` (16 characters + body).
    let excerpt_of = |pad: usize| {
        let step = format!(
            "    http: {{method: POST, url: \"{}/echo\", raw: \"a\\tb\\nc\\u0007{}\"}}\n    expect: {{status: 200}}\n",
            t.base,
            "x".repeat(pad)
        );
        async move { first_failure(&step).await.excerpt.unwrap() }
    };
    // 16 + 6 + 218 = 240 characters: whole, no ellipsis (the bell is a space).
    let e = excerpt_of(218).await;
    assert_eq!(e, format!("you sent: a b\nc {} with ", "x".repeat(218)));
    // One more: cut at 240 (the last space goes), with an ellipsis.
    let e = excerpt_of(219).await;
    assert_eq!(e, format!("you sent: a b\nc {} with…", "x".repeat(219)));
}

/// A JSONPath capture gives strings raw and other values as JSON text.
#[tokio::test]
async fn jsonpath_captures_carry_their_text_to_the_next_step() {
    let t = Target::start().await;
    let yaml = format!(
        "name: t\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: read\n    http: {{url: \"{b}/json\"}}\n    capture:\n      n: {{jsonpath: \"$.count\"}}\n      s: {{jsonpath: \"$.status\"}}\n      ok: {{jsonpath: \"$.ok\"}}\n  - name: use\n    http: {{url: \"{b}/inspect?n={{{{ n }}}}&s={{{{ s }}}}&ok={{{{ ok }}}}\"}}\n    expect:\n      jsonpath: {{\"$.query\": \"n=3&s=confirmed&ok=true\"}}\n",
        b = t.base
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
}
