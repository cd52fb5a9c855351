//! HTTP steps against a real in-process target that misbehaves on demand:
//! every fault is one failed outcome with the right reason, within the step
//! timeout, never a hang or a panic.

use std::time::{Duration, Instant};

use wayprobe::outcome::{Reason, RunResult, StepStatus};

use crate::support::{journey, run, target::Target};

fn one_step(url: &str, extra: &str) -> String {
    format!(
        "name: t\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: s\n    timeout: 2s\n    http:\n      url: \"{url}\"\n{extra}"
    )
}

/// Runs a journey of these `steps` (YAML list items) and expects it to pass.
async fn steps_pass(steps: &str) -> wayprobe::outcome::JourneyOutcome {
    let yaml = format!("name: t\ninterval: 1m\ntimeout: 10s\nsteps:\n{steps}");
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    o
}

async fn reason_of(yaml: &str) -> (Reason, Duration) {
    let j = journey(yaml, &[]);
    let t0 = Instant::now();
    let o = run(&j, &[]).await;
    let took = t0.elapsed();
    assert_eq!(o.result, RunResult::Failure, "{o:#?}");
    assert_eq!(o.steps[0].status, StepStatus::Failed);
    (o.failure().expect("a failure").reason, took)
}

#[tokio::test]
async fn server_error_is_a_status_failure() {
    let t = Target::start().await;
    let (r, _) = reason_of(&one_step(&format!("{}/status/503", t.base), "")).await;
    assert_eq!(r, Reason::Status);
}

#[tokio::test]
async fn slow_server_times_out_within_the_step_timeout() {
    let t = Target::start().await;
    let (r, took) = reason_of(&one_step(&format!("{}/slow?ms=5000", t.base), "")).await;
    assert_eq!(r, Reason::Timeout);
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test]
async fn hung_server_times_out() {
    let t = Target::start().await;
    let (r, took) = reason_of(&one_step(&format!("{}/", t.hang), "")).await;
    assert_eq!(r, Reason::Timeout);
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test]
async fn reset_mid_body_is_a_reset() {
    let t = Target::start().await;
    let (r, _) = reason_of(&one_step(&format!("{}/x", t.reset), "")).await;
    assert_eq!(r, Reason::Reset);
}

#[tokio::test]
async fn invalid_json_is_an_invalid_body() {
    let t = Target::start().await;
    let extra = "    expect:\n      jsonpath: {\"$.order\": 1}\n";
    let (r, _) = reason_of(&one_step(&format!("{}/invalid-json", t.base), extra)).await;
    assert_eq!(r, Reason::InvalidBody);
    let extra = "    capture:\n      order: {jsonpath: \"$.order\"}\n";
    let (r, _) = reason_of(&one_step(&format!("{}/invalid-json", t.base), extra)).await;
    assert_eq!(r, Reason::InvalidBody);
}

#[tokio::test]
async fn redirect_loop_is_bounded() {
    let t = Target::start().await;
    let j = journey(
        &one_step(
            &format!("{}/redirect-loop", t.base),
            "      max_redirects: 4\n",
        ),
        &[],
    );
    let o = run(&j, &[]).await;
    let s = &o.steps[0];
    assert_eq!(
        s.failure.as_ref().unwrap().reason,
        Reason::Redirect,
        "{s:#?}"
    );
    assert_eq!(s.redirects, 4);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let t = Target::start().await;
    let (r, _) = reason_of(&one_step(&format!("{}/big", t.base), "")).await;
    assert_eq!(r, Reason::BodyTooLarge);
    let (r, _) = reason_of(&one_step(
        &format!("{}/big-declared", t.base),
        "      max_body: 1MiB\n",
    ))
    .await;
    assert_eq!(r, Reason::BodyTooLarge);
}

#[tokio::test]
async fn refused_connection_is_connect() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (r, _) = reason_of(&one_step(&format!("http://127.0.0.1:{port}/"), "")).await;
    assert_eq!(r, Reason::Connect);
}

/// A port that answers something other than HTTP (an SSH banner, a
/// status line hyper cannot read) is `protocol`, not `internal` or `reset`:
/// the server is up and speaking, just not HTTP.
#[tokio::test]
async fn an_answer_that_is_not_http_is_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for answer in [
        &b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"[..],
        &b"HTTP/1.1 20x OK\r\nContent-Length: 0\r\n\r\n"[..],
    ] {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf).await;
            c.write_all(answer).await.unwrap();
            // Kept open: the verdict must come from what was said, not an EOF.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let (r, _) = reason_of(&one_step(&format!("http://127.0.0.1:{port}/"), "")).await;
        assert_eq!(r, Reason::Protocol, "{}", String::from_utf8_lossy(answer));
        server.abort();
    }
}

#[tokio::test]
async fn unknown_host_is_dns() {
    // `.invalid` never resolves (RFC 6761): the resolver answers NXDOMAIN.
    let (r, took) = reason_of(&one_step("http://no-such-host.invalid/", "")).await;
    assert_eq!(r, Reason::Dns);
    assert!(took < Duration::from_secs(4));
}

#[tokio::test]
async fn tls_needs_a_trusted_certificate() {
    let t = Target::start().await;
    let (r, _) = reason_of(&one_step(&format!("{}/", t.tls), "")).await;
    assert_eq!(r, Reason::Tls);

    let dir = tempdir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &t.ca_pem).unwrap();
    let yaml = one_step(
        &format!("{}/", t.tls),
        "    expect: {body: {equals: secure}}\n",
    )
    .replace(
        "steps:",
        &format!("tls: {{ca_file: {}}}\nsteps:", ca.display()),
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");

    let yaml =
        one_step(&format!("{}/", t.tls), "").replace("steps:", "tls: {verify: false}\nsteps:");
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
}

#[tokio::test]
async fn redirects_are_followed_counted_and_keep_cookies() {
    let t = Target::start().await;
    let extra = "    expect:\n      body: {equals: arrived}\n      cookies: {hop3: exists, hop1: exists, hop0: {value: {equals: \"1\"}}}\n";
    let o = run(
        &journey(
            &one_step(&format!("{}/redirect-chain/3", t.base), extra),
            &[],
        ),
        &[],
    )
    .await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    assert_eq!(o.steps[0].redirects, 3);
}

#[tokio::test]
async fn json_assertions_and_failures_point_at_the_yaml() {
    let t = Target::start().await;
    let extra = r#"    expect:
      status: [200, 201]
      jsonpath:
        "$.status": confirmed
        "$.count": {ge: 3, lt: 4}
        "$.items": {length: 3}
        "$.items[*].id": {exists: true}
        "$.items[1].id": {matches: "^[a-z]$"}
        "$.price": 12.5
        "$.ok": true
        "$.none": null
        "$.missing": {exists: false}
"#;
    let o = run(
        &journey(&one_step(&format!("{}/json", t.base), extra), &[]),
        &[],
    )
    .await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");

    let extra = "    expect:\n      jsonpath:\n        \"$.status\": shipped\n";
    let o = run(
        &journey(&one_step(&format!("{}/json", t.base), extra), &[]),
        &[],
    )
    .await;
    let f = o.failure().unwrap();
    assert_eq!(f.reason, Reason::Assertion);
    assert_eq!(f.location.as_deref(), Some("11:9"), "{f:#?}");
    assert_eq!(f.expected.as_deref(), Some("to equal `shipped`"));
    assert_eq!(f.actual.as_deref(), Some("\"confirmed\""));
}

#[tokio::test]
async fn captures_that_find_nothing_fail_the_step() {
    let t = Target::start().await;
    let extra = "    capture:\n      id: {jsonpath: \"$.nothing\"}\n";
    let (r, _) = reason_of(&one_step(&format!("{}/json", t.base), extra)).await;
    assert_eq!(r, Reason::Capture);
    let extra = "    capture:\n      id: {regex: \"zzz(\\\\d+)\"}\n";
    let (r, _) = reason_of(&one_step(&format!("{}/ok", t.base), extra)).await;
    assert_eq!(r, Reason::Capture);
}

#[tokio::test]
async fn runtime_template_and_secret_problems_are_failures() {
    let t = Target::start().await;
    let (r, _) = reason_of(&one_step(
        &format!("{}/ok?x={{{{ env.WAYPROBE_SURELY_UNSET }}}}", t.base),
        "",
    ))
    .await;
    assert_eq!(r, Reason::Template);
    let yaml = one_step(&format!("{}/ok?p={{{{ secret.pw }}}}", t.base), "").replace(
        "steps:",
        "secrets: {pw: {env: WAYPROBE_SURELY_UNSET_TOO}}\nsteps:",
    );
    let (r, _) = reason_of(&yaml).await;
    assert_eq!(r, Reason::Secret);
    // A URL whose scheme is known only when the run renders it (a secret's,
    // masked in the message).
    let yaml = one_step("{{ secret.to }}/x", "")
        .replace("steps:", "secrets: {to: {env: WAYPROBE_TEST_TO}}\nsteps:");
    let o = run(
        &journey(&yaml, &[]),
        &[("WAYPROBE_TEST_TO", "ftp://127.0.0.1")],
    )
    .await;
    let f = o.failure().expect("not an HTTP URL");
    assert_eq!(f.reason, Reason::Template);
    assert!(
        f.message
            .contains("unsupported URL scheme `ftp` in `***/x`"),
        "{f:#?}"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_any_output() {
    let t = Target::start().await;
    let secret = "s3cr3t p@ss/word";
    let yaml = format!(
        r#"name: leaky
interval: 1m
timeout: 10s
secrets: {{pw: {{env: LEAKY_PW}}}}
steps:
  - name: login
    http:
      method: POST
      url: "{}/echo"
      headers: {{authorization: "Basic {{{{ secret.pw }}}}"}}
      form: {{user: alice, password: "{{{{ secret.pw }}}}"}}
    expect:
      body: {{contains: "{{{{ secret.pw }}}} nope"}}
"#,
        t.base
    );
    let j = journey(&yaml, &[]);
    let runner = wayprobe::run::Runner::new(wayprobe::run::RunOptions {
        verbose: true,
        env_overrides: [("LEAKY_PW".to_string(), secret.to_string())].into(),
        ..Default::default()
    });
    let o = runner.run(&j).await;
    assert_eq!(o.result, RunResult::Failure);
    let f = o.failure().unwrap();
    assert!(f.excerpt.as_deref().unwrap_or("").contains("***"), "{f:#?}");
    let outputs = [
        format!("{o:?}"),
        wayprobe::report::json(std::slice::from_ref(&o)),
        wayprobe::report::junit(&[&j], std::slice::from_ref(&o)),
        wayprobe::report::text(&j, &o, false, true),
    ];
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    for out in outputs {
        assert!(!out.contains(secret), "secret leaked:\n{out}");
        assert!(!out.contains(&encoded), "encoded secret leaked:\n{out}");
        assert!(!out.contains("p@ss"), "part of the secret leaked:\n{out}");
    }
}

/// A fresh temporary directory under the target dir.
pub fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wayprobe-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn steps_report_where_their_time_went() {
    let t = Target::start().await;
    let base = t.base.replace("127.0.0.1", "localhost");
    let yaml = format!(
        "name: t\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: first\n    http: {{url: \"{base}/slow?ms=50\"}}\n  - name: second\n    http: {{url: \"{base}/ok\"}}\n"
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    let names = |i: usize| {
        o.steps[i]
            .timings
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
    };
    // A new visitor: the first request resolves and connects.
    assert_eq!(names(0), ["dns", "connect", "ttfb", "download"]);
    let ttfb = o.steps[0]
        .timings
        .iter()
        .find(|t| t.name == "ttfb")
        .unwrap()
        .ms;
    assert!(ttfb >= 50.0, "the server's 50ms are in ttfb: {ttfb}");
    // The second reuses the connection: no DNS, no connect.
    assert_eq!(names(1), ["ttfb", "download"]);
    // ttfb is what is left of the wait for the headers once DNS and connect
    // are taken out: the phases are disjoint and fit in the step.
    for s in &o.steps {
        let sum: f64 = s.timings.iter().map(|t| t.ms).sum();
        assert!(
            sum <= s.duration.as_secs_f64() * 1000.0 + 1.0,
            "phases add up to at most the step: {s:#?}"
        );
    }
}

/// The download phase is the time from the headers to the body's last
/// byte: the server's wait between its two bytes is in it, and it fits in
/// the step.
#[tokio::test]
async fn download_is_the_time_the_body_took() {
    let t = Target::start().await;
    let o = run(
        &journey(&one_step(&format!("{}/trickle?ms=100", t.base), ""), &[]),
        &[],
    )
    .await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    let step = &o.steps[0];
    let download = step
        .timings
        .iter()
        .find(|t| t.name == "download")
        .unwrap()
        .ms;
    assert!(
        download >= 100.0,
        "the server's 100ms are in download: {step:#?}"
    );
    assert!(
        download <= step.duration.as_secs_f64() * 1000.0,
        "download fits in the step: {step:#?}"
    );
}

/// Redirects change the method as browsers do: 303 always, and 301/302
/// after a POST (or PUT...), become a GET without the body; 307 and 308
/// resend the method and the body.
#[tokio::test]
async fn redirects_change_the_method_as_browsers_do() {
    let t = Target::start().await;
    let mut steps = String::new();
    for (code, method, arrives, body) in [
        (303, "POST", "GET", ""),
        (302, "POST", "GET", ""),
        (301, "PUT", "GET", ""),
        (307, "POST", "POST", "{\\\"a\\\":1}"),
        (308, "PUT", "PUT", "{\\\"a\\\":1}"),
    ] {
        steps += &format!(
            "  - name: to-{code}-{}\n    http: {{method: {method}, url: \"{}/redirect-to/{code}\", json: {{a: 1}}}}\n    expect: {{jsonpath: {{\"$.method\": {arrives}, \"$.body\": \"{body}\"}}}}\n",
            method.to_lowercase(),
            t.base
        );
    }
    let o = steps_pass(&steps).await;
    assert!(o.steps.iter().all(|s| s.redirects == 1), "{o:#?}");
}

/// Each request's client span ends with its status, and is in error,
/// named by its status code, only for a 4xx or 5xx answer (OpenTelemetry's
/// HTTP client convention); a request that got no answer is in error by
/// its reason.
#[tokio::test]
async fn client_spans_are_in_error_for_4xx_5xx_and_no_answer() {
    let t = Target::start().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = format!(
        r#"name: t
interval: 1m
steps:
  - name: fine
    http: {{url: "{base}/ok"}}
  - name: moved
    http: {{url: "{base}/redirect-to/302", follow_redirects: false}}
    expect: {{status: 302}}
  - name: missing
    http: {{url: "{base}/status/404"}}
    expect: {{status: 404}}
  - name: broken
    http: {{url: "{base}/status/503"}}
    expect: {{status: 503}}
  - name: refused
    http: {{url: "http://127.0.0.1:{port}/"}}
"#,
        base = t.base
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    let spans: Vec<(Option<u16>, Option<&str>)> = o
        .steps
        .iter()
        .flat_map(|s| &s.telemetry.requests)
        .map(|r| (r.status, r.error_type.as_deref()))
        .collect();
    assert_eq!(
        spans,
        [
            (Some(200), None),
            (Some(302), None),
            (Some(404), Some("404")),
            (Some(503), Some("503")),
            (None, Some("connect")),
        ],
        "{o:#?}"
    );
}

/// The jar's cookies go with every request, unless the step writes its
/// own `Cookie` header, which is then sent as written.
#[tokio::test]
async fn the_jar_sends_its_cookies_unless_the_step_writes_its_own() {
    let t = Target::start().await;
    steps_pass(&format!(
        r#"  - name: set
    http: {{url: "{base}/set-cookie?name=tok&value=v1"}}
  - name: jar
    http: {{url: "{base}/cookies-sent"}}
    expect: {{body: {{equals: "tok=v1"}}}}
  - name: own
    http: {{url: "{base}/cookies-sent", headers: {{cookie: "mine=1"}}}}
    expect: {{body: {{equals: "mine=1"}}}}
"#,
        base = t.base
    ))
    .await;
}

/// A step judges the cookies its response set, even one for another path
/// than the step's URL; a later step judges only those that apply to its URL.
#[tokio::test]
async fn a_cookie_set_for_another_path_is_judged_by_the_step_that_set_it() {
    let t = Target::start().await;
    steps_pass(&format!(
        r#"  - name: set
    http: {{url: "{base}/sets-elsewhere"}}
    expect: {{cookies: {{away: {{value: "1", path: /elsewhere}}}}}}
  - name: later
    http: {{url: "{base}/ok"}}
    expect: {{cookies: {{away: absent}}}}
"#,
        base = t.base
    ))
    .await;
}

/// `max_body` is the most a step reads: a body of exactly that size
/// passes, one byte more fails, whether its length is declared (refused
/// before reading) or streamed (reading stops there).
#[tokio::test]
async fn max_body_is_the_largest_body_read() {
    let t = Target::start().await;
    // 5 MiB with a Content-Length; 8 MiB in chunks without one.
    for (path, size) in [("big-declared", 5 << 20), ("big", 8 << 20)] {
        let url = format!("{}/{path}", t.base);
        let o = run(
            &journey(&one_step(&url, &format!("      max_body: {size}\n")), &[]),
            &[],
        )
        .await;
        assert_eq!(o.result, RunResult::Success, "{path}: {:#?}", o.failure());
        let j = journey(
            &one_step(&url, &format!("      max_body: {}\n", size - 1)),
            &[],
        );
        let f = run(&j, &[])
            .await
            .failure()
            .cloned()
            .expect("one byte too many");
        assert_eq!(f.reason, Reason::BodyTooLarge);
        let said = if path == "big" {
            format!(
                "body exceeds max_body ({} bytes); stopped reading",
                size - 1
            )
        } else {
            format!("body of {size} bytes exceeds max_body ({} bytes)", size - 1)
        };
        assert!(f.message.contains(&said), "{path}: {}", f.message);
    }
}

/// HTTPS: the TLS handshake is a phase of its own, after the TCP connect
/// and not inside it (the server waits before its handshake, so that wait
/// is TLS time); plain HTTP has no TLS phase (above).
#[tokio::test]
async fn tls_handshake_is_its_own_phase() {
    let t = Target::start().await;
    let dir = tempdir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &t.ca_pem).unwrap();
    let yaml = one_step(&format!("{}/", t.tls_slow), "").replace(
        "steps:",
        &format!("tls: {{ca_file: {}}}\nsteps:", ca.display()),
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    let step = &o.steps[0];
    let names: Vec<&str> = step.timings.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["dns", "connect", "tls", "ttfb", "download"]);
    let ms = |n: &str| step.timings.iter().find(|t| t.name == n).unwrap().ms;
    let slow = crate::support::target::TLS_SLOW.as_secs_f64() * 1000.0;
    assert!(
        ms("tls") >= slow,
        "the server's wait is TLS time: {step:#?}"
    );
    // The phases are disjoint parts of the step: were the handshake still
    // inside `connect`, the wait would be counted twice and the phases
    // would add up to more than the step took.
    let sum: f64 = step.timings.iter().map(|t| t.ms).sum();
    assert!(
        sum <= step.duration.as_secs_f64() * 1000.0 + 1.0,
        "phases add up to at most the step: {step:#?}"
    );
    // The request's client span has the same phases as events, in order.
    let events = &step.telemetry.requests[0].events;
    let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["dns", "connect", "tls", "first_byte"]);
    assert!(events.windows(2).all(|w| w[0].1 <= w[1].1), "{events:?}");
}

/// Request building (query, headers, multipart with a file, raw bodies) and
/// the header, cookie, status and url captures, against a server that says
/// what it received.
#[tokio::test]
async fn requests_are_built_as_written_and_captures_read_every_source() {
    let t = Target::start().await;
    let dir = tempdir();
    std::fs::write(dir.join("receipt.txt"), "paid in full").unwrap();
    let file = dir.join("receipt.txt");
    let yaml = format!(
        r#"name: build
interval: 1m
timeout: 10s
vars: {{base_url: "{base}", q: "green tea & honey"}}
steps:
  - name: query-and-headers
    http:
      url: "{{{{ base_url }}}}/inspect"
      query: {{search: "{{{{ q }}}}", page: 2}}
      headers: {{x-trace: "abc-{{{{ q | urlencode }}}}"}}
    expect:
      status: 200
      headers: {{x-request-id: {{matches: "^req-\\d+$"}}, content-type: {{contains: json}}, x-missing: {{exists: false}}}}
      cookies: {{flavour: {{value: oolong, http_only: true, path: /}}}}
      jsonpath:
        "$.method": GET
        "$.query": "search=green+tea+%26+honey&page=2"
        "$.x_trace": "abc-green%20tea%20%26%20honey"
    capture:
      request_id: {{header: x-request-id}}
      flavour: {{cookie: flavour}}
      code: {{status: true}}
      where: {{url: true}}
  - name: multipart
    http:
      method: POST
      url: "{{{{ base_url }}}}/inspect"
      multipart:
        note: "{{{{ request_id }}}} {{{{ flavour }}}} {{{{ code }}}}"
        receipt: {{file: {file}, content_type: text/plain}}
    expect:
      jsonpath:
        "$.content_type": {{starts_with: multipart/form-data}}
        "$.body": {{matches: "(?s)req-42 oolong 200.*filename=\"receipt.txt\".*paid in full"}}
    capture:
      body: {{jsonpath: "$.body"}}
  - name: raw
    http:
      method: PUT
      url: "{{{{ where }}}}"
      raw: "<order id='1'/>"
      content_type: application/xml
    expect:
      jsonpath: {{"$.method": PUT, "$.content_type": application/xml, "$.body": "<order id='1'/>"}}
"#,
        base = t.base,
        file = file.display()
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
}

#[tokio::test]
async fn the_final_url_lists_of_texts_and_every_failing_assertion() {
    let t = Target::start().await;
    // Two redirects end at /redirect-chain/0, whose body is "arrived".
    let url = format!("{}/redirect-chain/2", t.base);
    let j = journey(
        &one_step(
            &url,
            "    expect:\n      url: {contains: \"/redirect-chain/0\", not_contains: [\"chain/1\", \"chain/2\"]}\n",
        ),
        &[],
    );
    let o = run(&j, &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");

    // Each failing check is reported, the first as the failure, the others after it.
    let j = journey(
        &one_step(
            &url,
            "    expect:\n      url: {equals: \"{{ base }}/elsewhere\"}\n      body:\n        not_contains: [\"zzz-absent\", \"yyy-absent\"]\n        contains: [\"zzz-absent\", \"yyy-absent\"]\n",
        )
        .replace("{{ base }}", &t.base),
        &[],
    );
    let o = run(&j, &[]).await;
    let f = o.failure().expect("fails");
    assert_eq!(f.reason, Reason::Assertion, "{f:#?}");
    assert!(
        f.message.starts_with("final URL: expected")
            && f.message.contains("/elsewhere")
            && f.message.contains("also failing: ")
            && f.message.matches("body: expected").count() == 2
            && f.message.contains("zzz-absent")
            && f.message.contains("yyy-absent")
            && f.message.contains("(at 13:20)"),
        "{}",
        f.message
    );
    assert_eq!(f.location.as_deref(), Some("10:13"), "{f:#?}");
}

/// A forward proxy on loopback, as curl and Squid speak it: an absolute-form
/// request is forwarded (origin-form to the target), `CONNECT host:port`
/// opens a tunnel. It records each request line it was asked.
async fn forward_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if client.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let end = line == "\r\n";
                    head.push(line);
                    if end {
                        break;
                    }
                }
                let request_line = head[0].trim_end().to_string();
                log.lock().unwrap().push(request_line.clone());
                let mut parts = request_line.split(' ');
                let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
                if method == "CONNECT" {
                    let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                    client
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                } else {
                    let uri: http::Uri = target.parse().unwrap();
                    let mut upstream =
                        tokio::net::TcpStream::connect(uri.authority().unwrap().as_str())
                            .await
                            .unwrap();
                    let mut out = format!(
                        "{method} {} HTTP/1.1\r\n",
                        uri.path_and_query().map_or("/", |p| p.as_str())
                    );
                    for h in &head[1..] {
                        if !h.to_ascii_lowercase().starts_with("proxy-") {
                            out.push_str(h);
                        }
                    }
                    upstream.write_all(out.as_bytes()).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (url, seen)
}

/// The environment's proxy carries every request, as curl's variables say:
/// plain HTTP in absolute form through `HTTP_PROXY`, HTTPS through a
/// `CONNECT` tunnel of `HTTPS_PROXY` (TLS end to end, the target's own
/// certificate), and `NO_PROXY` hosts directly.
#[tokio::test]
async fn requests_go_through_the_environments_proxy() {
    let t = Target::start().await;
    let (proxy, seen) = forward_proxy().await;
    let dir = tempdir();
    std::fs::write(dir.join("ca.pem"), &t.ca_pem).unwrap();
    let tls_authority = t.tls.trim_start_matches("https://").to_string();
    std::fs::write(
        dir.join("proxied.yaml"),
        format!(
            "name: proxied\ntls: {{ca_file: ca.pem}}\nsteps:\n  - name: plain\n    http: {{url: \"{}/ok\"}}\n  - name: secure\n    http: {{url: \"{}/ok\"}}\n",
            t.base, t.tls
        ),
    )
    .unwrap();
    let run_with = |no_proxy: &str| {
        let mut cmd = crate::support::bin();
        cmd.current_dir(&dir).args(["run", "proxied.yaml"]);
        for v in [
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("HTTP_PROXY", &proxy)
            .env("HTTPS_PROXY", &proxy)
            .env("NO_PROXY", no_proxy);
        cmd
    };
    let mut cmd = run_with("");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            format!("GET {}/ok HTTP/1.1", t.base),
            format!("CONNECT {tls_authority} HTTP/1.1"),
        ]
    );
    // Bypassed: the proxy is asked nothing more.
    let mut cmd = run_with("127.0.0.1,localhost");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let asked = seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A password in the step's URL is hidden wherever it shows up again: the
/// client sends it as `Authorization: Basic base64(user:pw)`, and a server
/// that echoes that header (here in a 500's body, which the failure
/// excerpt shows) must not print it, in any form.
#[tokio::test]
async fn a_password_in_the_url_is_hidden_when_the_server_echoes_it() {
    let t = Target::start().await;
    let url = t.base.replace("http://", "http://user:hunter2pw@");
    let o = run(
        &journey(
            &format!(
                "name: t\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: echo\n    http: {{method: POST, url: \"{url}/echo\", raw: hello}}\n"
            ),
            &[],
        ),
        &[],
    )
    .await;
    assert_eq!(o.result, RunResult::Failure, "{o:#?}");
    let shown = format!("{o:?}");
    assert!(shown.contains("you sent: hello with Basic"), "{shown}");
    for leak in ["hunter2pw", "dXNlcjpodW50ZXIycHc"] {
        assert!(!shown.contains(leak), "{leak} shown: {shown}");
    }
}
