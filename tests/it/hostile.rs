//! Replayed user bug reports and a hostile target (issue 8): each fault kind
//! against the in-process target. Credentials never leave their origin, a
//! hostile page cannot stall the prober, text is decoded by its charset,
//! integers compare exactly, headers are judged as sent, cookies by the URL
//! they apply to, redaction is structural, TLS failures are in words, and
//! every duration and count in a journey is bounded.

use std::time::{Duration, Instant};

use wayprobe::outcome::{JourneyOutcome, Reason, RunResult};
use wayprobe::run::{RunOptions, Runner};

use crate::support::{eventually, free_port, get, journey, run, target::Target};

const TOKEN: &str = "tok-7c1f0e93";

fn localhost(base: &str) -> String {
    base.replace("127.0.0.1", "localhost")
}

fn report(o: &JourneyOutcome) -> String {
    format!("{o:?}\n{}", wayprobe::report::json(std::slice::from_ref(o)))
}

/// A one-step journey that sends credentials to `url` (which redirects).
fn creds(url: &str, extra: &str) -> String {
    format!(
        r#"name: creds
interval: 1m
timeout: 10s
secrets: {{token: {{env: TOKEN}}}}
steps:
  - name: go
    http:
      url: "{url}"
      headers:
        authorization: "Bearer {{{{ secret.token }}}}"
        cookie: "tenant=x"
        x-api-key: "k-1"
        x-tenant: acme
{extra}"#
    )
}

/// Runs the journey; its `expect:` judges what the landing page received.
async fn landed(yaml: &str) {
    let j = journey(yaml, &[]);
    let o = run(&j, &[("TOKEN", TOKEN)]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
}

#[tokio::test]
async fn credentials_do_not_follow_redirects_to_other_origins() {
    let t = Target::start().await;
    let other = Target::start().await;
    let expect_dropped = "    expect:\n      jsonpath:\n        \"$.authorization\": null\n        \"$.cookie\": null\n        \"$.x_api_key\": null\n        \"$.x_tenant\": acme\n";
    // Another host (localhost -> 127.0.0.1), another port.
    for to in [
        format!("{}/landing", t.base),
        format!("{}/landing", other.base),
    ] {
        let url = format!("{}/start?to={to}", localhost(&t.base));
        landed(&creds(&url, expect_dropped)).await;
    }
    // The same origin keeps them.
    let same = "    expect:\n      jsonpath:\n        \"$.authorization\": \"Bearer {{ secret.token }}\"\n        \"$.cookie\": \"tenant=x\"\n";
    let url = format!("{}/start?to={}/landing", t.base, t.base);
    landed(&creds(&url, same)).await;
    // Kept across origins only when the journey says so.
    let keep = format!(
        "      keep_headers_across_origins: [authorization]\n{}",
        "    expect:\n      jsonpath:\n        \"$.authorization\": \"Bearer {{ secret.token }}\"\n        \"$.cookie\": null\n"
    );
    let url = format!("{}/start?to={}/landing", localhost(&t.base), t.base);
    landed(&creds(&url, &keep)).await;
    // Never from HTTPS down to plain HTTP, listed or not.
    let mut tasks = Vec::new();
    let https =
        crate::support::hostile::https_redirector(format!("{}/landing", t.base), &mut tasks).await;
    let down = format!("      keep_headers_across_origins: [authorization]\n{expect_dropped}");
    let yaml =
        creds(&format!("{https}/x"), &down).replace("steps:", "tls: {verify: false}\nsteps:");
    landed(&yaml).await;
    for h in tasks {
        h.abort();
    }
    // `check` refuses a header the step does not send.
    let bad = creds(
        &format!("{}/landing", t.base),
        "      keep_headers_across_origins: [x-nope]\n",
    );
    let text = invalid(&bad);
    assert!(text.contains("sends no `x-nope` header"), "{text}");
}

fn one_step(url: &str, extra: &str) -> String {
    format!(
        "name: t\ninterval: 1m\ntimeout: 20s\nsteps:\n  - name: s\n    timeout: 3s\n    http:\n      url: \"{url}\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_bounded() {
    let t = Target::start().await;
    // 20,000 nested elements: refused at once, not parsed for seconds.
    let css = "    capture:\n      x: {css: \"div div p.x\"}\n";
    let o = run(
        &journey(&one_step(&format!("{}/deep?n=20000", t.base), css), &[]),
        &[],
    )
    .await;
    let f = o.failure().expect("refused");
    assert_eq!(f.reason, Reason::InvalidBody, "{f:#?}");
    assert!(f.message.contains("deeper than 512"), "{}", f.message);
    // Within the depth limit but costly: the step deadline stops it.
    let o = run(
        &journey(
            &one_step(&format!("{}/deep?n=500&repeat=300", t.base), css),
            &[],
        ),
        &[],
    )
    .await;
    let f = o.failure().expect("timed out");
    assert_eq!(f.reason, Reason::Timeout, "{f:#?}");
    // A normal page parses.
    let ok = format!("{css}    expect:\n      body: {{contains: found}}\n");
    let o = run(
        &journey(
            &one_step(&format!("{}/deep?n=20&repeat=3", t.base), &ok),
            &[],
        ),
        &[],
    )
    .await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    // A wide JSON body whose tree would take hundreds of MiB is refused.
    let q = "    expect:\n      jsonpath: {\"$..x\": {length: 1000}}\n";
    let o = run(
        &journey(&one_step(&format!("{}/wide?n=200000", t.base), q), &[]),
        &[],
    )
    .await;
    let f = o.failure().expect("refused");
    assert_eq!(f.reason, Reason::InvalidBody, "{f:#?}");
    assert!(f.message.contains("in memory"), "{}", f.message);
    let o = run(
        &journey(&one_step(&format!("{}/wide?n=1000", t.base), q), &[]),
        &[],
    )
    .await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
}

#[tokio::test]
async fn text_is_decoded_by_the_declared_charset() {
    let t = Target::start().await;
    let yaml = format!(
        r##"name: latin
interval: 1m
steps:
  - name: page
    http: {{url: "{b}/latin1"}}
    expect:
      body: {{contains: "Café"}}
    capture:
      word: {{css: "#w"}}
  - name: next
    http: {{url: "{b}/inspect", query: {{w: "{{{{ word }}}}"}}}}
    expect:
      jsonpath: {{"$.query": "w=Caf%C3%A9"}}
"##,
        b = t.base
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    // A failed assertion's excerpt shows the decoded text too.
    let o = run(
        &journey(
            &one_step(
                &format!("{}/latin1", t.base),
                "    expect:\n      body: {contains: Tea}\n",
            ),
            &[],
        ),
        &[],
    )
    .await;
    let ex = o.failure().unwrap().excerpt.clone().unwrap();
    assert!(ex.contains("Café"), "{ex}");
}

#[tokio::test]
async fn large_integers_compare_exactly() {
    let t = Target::start().await;
    let url = format!("{}/bigint", t.base);
    let o = run(
        &journey(
            &one_step(
                &url,
                "    expect:\n      jsonpath: {\"$.order_id\": 9007199254740992}\n",
            ),
            &[],
        ),
        &[],
    )
    .await;
    let f = o.failure().expect("not equal");
    assert_eq!(f.expected.as_deref(), Some("to equal `9007199254740992`"));
    assert_eq!(f.actual.as_deref(), Some("9007199254740993"));
    for ok in [
        "{\"$.order_id\": 9007199254740993}",
        "{\"$.order_id\": {not_equals: 9007199254740992}}",
        "{\"$.order_id\": {gt: 9007199254740992, lt: 9007199254740994}}",
    ] {
        let o = run(
            &journey(
                &one_step(&url, &format!("    expect:\n      jsonpath: {ok}\n")),
                &[],
            ),
            &[],
        )
        .await;
        assert_eq!(o.result, RunResult::Success, "{ok}: {o:#?}");
    }
}

#[tokio::test]
async fn headers_are_judged_as_sent_and_bodies_decoded() {
    let t = Target::start().await;
    let yaml = one_step(
        &format!("{}/gzip", t.base),
        "    expect:\n      headers: {content-encoding: gzip, content-length: {exists: true}}\n      jsonpath: {\"$.packed\": true}\n",
    );
    let j = journey(&yaml, &[]);
    let runner = Runner::new(RunOptions {
        verbose: true,
        ..Default::default()
    });
    let o = runner.run(&j).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    let shown = &o.steps[0].exchanges[0].response_headers;
    assert!(
        shown
            .iter()
            .any(|(k, v)| k == "content-encoding" && v == "gzip"),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|(k, _)| k == "content-length"),
        "{shown:?}"
    );
}

#[tokio::test]
async fn cookie_assertions_judge_the_cookies_of_the_final_url() {
    let t = Target::start().await;
    let app = localhost(&t.base);
    let yaml = format!(
        r#"name: cookies
interval: 1m
steps:
  - name: idp
    http: {{url: "{idp}/idp/login"}}
    expect:
      cookies: {{session: {{value: idp-1}}}}
  - name: app
    http: {{url: "{app}/app/login"}}
    expect:
      cookies: {{session: {{value: app-1, path: /app}}}}
  - name: home
    http: {{url: "{app}/app/home"}}
    expect:
      cookies: {{session: {{value: app-1}}}}
  - name: logout
    http: {{url: "{app}/app/logout"}}
    expect:
      cookies: {{session: absent}}
  - name: back-at-idp
    http: {{url: "{idp}/healthy"}}
    expect:
      cookies: {{session: {{value: idp-1}}}}
"#,
        idp = t.base
    );
    let j = journey(&yaml, &[]);
    // The jar is a hash map: judge many runs, so no lucky order passes.
    for _ in 0..8 {
        let o = run(&j, &[]).await;
        assert_eq!(o.result, RunResult::Success, "{o:#?}");
    }
}

#[tokio::test]
async fn redaction_is_structural() {
    use base64::Engine as _;
    let t = Target::start().await;
    let secret = "correct horse battery staple";
    let yaml = |url: &str, extra: &str| {
        format!(
            "name: r\ninterval: 1m\nsecrets: {{pw: {{env: PW}}}}\nsteps:\n  - name: s\n    http:\n      url: \"{url}\"\n      headers: {{authorization: \"Basic {{{{ secret.pw }}}}\", x-pass: \"{{{{ secret.pw }}}}\"}}\n{extra}"
        )
    };
    let verbose = Runner::new(RunOptions {
        verbose: true,
        env_overrides: [("PW".to_string(), secret.to_string())].into(),
        ..Default::default()
    });
    let b64 = base64::engine::general_purpose::STANDARD;
    // The target shows the secret at the excerpt's edge, re-wrapped, as
    // base64 (alone and inside `user:secret`) and as HTML references.'s edge, with spaces, base64-encoded inside a larger value.
    for (pad, enc) in [
        (230, ""),
        (0, "wrap"),
        (10, "b64user"),
        (10, "b64"),
        (10, "entity"),
        (10, "dec"),
    ] {
        let url = format!(
            "{}/pad?pad={pad}&enc={enc}&text={{{{ secret.pw | urlencode }}}}",
            t.base
        );
        let o = verbose.run(&journey(&yaml(&url, ""), &[])).await;
        assert_eq!(o.failure().unwrap().reason, Reason::Status);
        let out = report(&o);
        for leak in [
            "correct",
            "horse",
            "staple",
            "&#104;&#111;",
            &b64.encode(secret)[..12],
            "Y29ycmVjdCBob3Jz",
        ] {
            assert!(!out.contains(leak), "{leak} leaked for {enc:?}: {out}");
        }
        assert!(out.contains("***"), "{out}");
    }
    // A failed `redact: true` capture shows nothing of the body; values of
    // credential fields are masked in excerpts whatever the secret list.
    let cap = "    capture:\n      tok: {regex: \"token_type\\\": \\\"(Nope)\", redact: true}\n";
    let o = verbose
        .run(&journey(&yaml(&format!("{}/token", t.base), cap), &[]))
        .await;
    assert_eq!(o.failure().unwrap().reason, Reason::Capture, "{o:#?}");
    assert!(!report(&o).contains("at-5f2e9c1d7b"), "{}", report(&o));
    let status = "    expect: {status: 201}\n";
    let o = verbose
        .run(&journey(&yaml(&format!("{}/token", t.base), status), &[]))
        .await;
    let ex = o.failure().unwrap().excerpt.clone().unwrap();
    for leak in ["at-5f2e9c1d7b", "eyJhbGciOi", "rt-88a1"] {
        assert!(!ex.contains(leak), "{ex}");
    }
    assert!(ex.contains("Bearer"), "{ex}");
}

#[tokio::test]
async fn tls_failures_are_said_in_words() {
    let t = Target::start().await;
    let mut tasks = Vec::new();
    let https =
        crate::support::hostile::https_redirector(format!("{}/ok", t.base), &mut tasks).await;
    let o = run(&journey(&one_step(&format!("{https}/"), ""), &[]), &[]).await;
    let f = o.failure().expect("untrusted");
    assert_eq!(f.reason, Reason::Tls);
    assert!(
        f.message
            .contains("self-signed (`CN=rcgen self signed cert`)"),
        "{}",
        f.message
    );
    for internal in ["UnknownIssuer", "Context", "Other(", "CaUsedAsEndEntity"] {
        assert!(!f.message.contains(internal), "{}", f.message);
    }
    // Trusted (the certificate itself as `ca_file`) but expired, or for
    // another name: said with the date, with the names it has.
    let dir = crate::http::tempdir();
    let mut expired = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    expired.not_before = rcgen::date_time_ymd(2019, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2020, 2, 3);
    let other = rcgen::CertificateParams::new(vec![
        "shop.example".to_string(),
        "www.shop.example".to_string(),
    ])
    .unwrap();
    for (i, (params, says)) in [
        (expired, "expired on 2020-02-03"),
        (
            other,
            "not valid for `localhost`: it names `shop.example`, `www.shop.example`",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (base, pem) =
            crate::support::hostile::https_server(params, format!("{}/ok", t.base), &mut tasks)
                .await;
        let ca = dir.join(format!("ca{i}.pem"));
        std::fs::write(&ca, pem).unwrap();
        let yaml = one_step(&format!("{base}/"), "").replace(
            "steps:",
            &format!("tls: {{ca_file: {}}}\nsteps:", ca.display()),
        );
        let o = run(&journey(&yaml, &[]), &[]).await;
        let f = o.failure().expect("rejected");
        assert_eq!(f.reason, Reason::Tls, "{f:#?}");
        assert!(f.message.contains(says), "{}", f.message);
    }
    for h in tasks {
        h.abort();
    }
}

#[test]
fn every_duration_and_count_is_bounded() {
    for (field, bad, says) in [
        (
            "interval: 300000000000y",
            "interval",
            "longer than wayprobe allows",
        ),
        ("interval: 400d", "interval", "longer than wayprobe allows"),
        ("timeout: 2h", "timeout", "longer than wayprobe allows"),
    ] {
        let yaml = format!(
            "name: b\n{field}\nsteps:\n  - name: s\n    http: {{url: \"http://127.0.0.1:9/\"}}\n"
        );
        let text = invalid(&yaml);
        assert!(text.contains(says) && text.contains(bad), "{text}");
        assert!(text.contains("t.yaml:2:"), "{text}");
    }
    for (step, says) in [
        ("    timeout: 9999h\n", "step timeout"),
        ("      max_redirects: 1000\n", "`max_redirects`"),
        ("      max_body: 100GiB\n", "`max_body`"),
        ("    expect: {duration: {under: 5000000h}}\n", "`under`"),
        ("    expect: {body: {length: 99999999999999}}\n", "`length`"),
    ] {
        let (http_extra, step_extra) = if step.starts_with("      ") {
            (step, "")
        } else {
            ("", step)
        };
        let yaml = format!(
            "name: b\ninterval: 1m\nsteps:\n  - name: s\n{step_extra}    http:\n      url: \"http://127.0.0.1:9/\"\n{http_extra}"
        );
        let text = invalid(&yaml);
        assert!(
            text.contains(says) && text.contains("allows"),
            "{yaml}\n{text}"
        );
    }
}

fn invalid(yaml: &str) -> String {
    let e = wayprobe::journey::load::load_sources(
        vec![wayprobe::diag::SourceFile::new("t.yaml", yaml)],
        &Default::default(),
        Vec::new(),
    )
    .err()
    .unwrap_or_else(|| panic!("accepted:\n{yaml}"));
    e.diagnostics().iter().map(|d| d.render(false)).collect()
}

/// `serve` with one hostile journey (a costly page, every second) and
/// healthy ones: the healthy journeys keep their schedule and `/metrics`
/// answers promptly, because body work runs off the async workers and
/// stops at the step deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_target_does_not_stall_serve() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    std::fs::write(
        dir.join("hostile.yaml"),
        "name: hostile\ninterval: 1s\ntimeout: 900ms\nsteps:\n  - name: deep\n    http: {url: \"{{ base_url }}/deep?n=500&repeat=300\"}\n    capture:\n      x: {css: \"div div p.x\"}\n",
    )
    .unwrap();
    for i in 0..3 {
        std::fs::write(
            dir.join(format!("ok{i}.yaml")),
            format!("name: ok{i}\ninterval: 500ms\ntimeout: 400ms\nsteps:\n  - name: get\n    http: {{url: \"{{{{ base_url }}}}/healthy\"}}\n"),
        )
        .unwrap();
    }
    let port = free_port();
    let mut child = crate::support::bin()
        // One async worker: body work done on it would stop every journey
        // and the scrape, however many cores the machine has.
        .env("TOKIO_WORKER_THREADS", "1")
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--journeys",
        ])
        .arg(&dir)
        .args(["--var", &format!("base_url={}", t.base)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    eventually(20, "serve to be ready", || async {
        let r = crate::support::client()
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    // Let the hostile journey run a few times.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut slowest = Duration::ZERO;
    let mut body = String::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        body = get(&format!("{base}/metrics")).await.1;
        slowest = slowest.max(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{body}"))
    };
    let runs = |j: &str, r: &str| -> f64 {
        let key =
            format!("journey_runs_total{{journey=\"{j}\",location=\"local\",result=\"{r}\"}}");
        body.lines()
            .find(|l| l.starts_with(&key))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    if std::env::var_os("OLDWAY").is_none() {
        assert!(runs("hostile", "failure") >= 2.0, "{body}");
    }
    for i in 0..3 {
        // About 12 runs each in 6 s; a stalled prober manages one or two.
        assert!(runs(&format!("ok{i}"), "success") >= 6.0, "{body}");
    }
    let mean_lag =
        value("wayprobe_schedule_lag_seconds_sum") / value("wayprobe_schedule_lag_seconds_count");
    // Bounds far above a healthy prober's (milliseconds) and far below a
    // stalled one's (seconds of lag, a minute per scrape).
    assert!(mean_lag < 0.5, "mean schedule lag {mean_lag}s\n{body}");
    assert!(
        slowest < Duration::from_secs(2),
        "slowest /metrics took {slowest:?}"
    );
}
