//! What outputs show of a run over HTTP: `-v` cookies and request bodies
//! (masked), HTML failure excerpts, where a refused text was found, the URL
//! of a request that could not be made, and durations in one format.

use wayprobe::outcome::Reason;
use wayprobe::run::{RunOptions, Runner};

use crate::support::{free_port, get, journey, run, target::Target};

/// `-v` shows the cookies the jar sent and the response set, by name and
/// attributes with every value masked (a session id is a credential), the
/// request line with query values masked, and the request body; a secret in
/// a body shows as `***`, and so does a credential field, while other values
/// stay readable.
#[tokio::test]
async fn verbose_shows_cookies_and_request_bodies_masked() {
    let t = Target::start().await;
    let secret = "t0k-3n-value";
    let j = journey(
        &format!(
            r#"name: cookies
interval: 1m
secrets: {{token: {{env: WAYPROBE_TEST_TOKEN}}}}
steps:
  - name: set
    http: {{url: "{base}/set-cookie?name=tok&value={{{{ secret.token }}}}"}}
  - name: plain
    http: {{url: "{base}/set-cookie?name=theme&value=dark"}}
  - name: send
    http:
      method: POST
      url: "{base}/inspect"
      json: {{note: visible-note, mine: "{{{{ secret.token }}}}", password: hunter2}}
"#,
            base = t.base
        ),
        &[],
    );
    let runner = Runner::new(RunOptions {
        verbose: true,
        env_overrides: [("WAYPROBE_TEST_TOKEN".to_string(), secret.to_string())].into(),
        ..Default::default()
    });
    let o = runner.run(&j).await;
    let text = wayprobe::report::text(&j, &o, false, true);
    let json = wayprobe::report::json(std::slice::from_ref(&o));
    for out in [&text, &json] {
        assert!(!out.contains(secret), "secret shown:\n{out}");
        assert!(!out.contains("hunter2"), "credential field shown:\n{out}");
        // Cookie values are credentials (a session id), whoever set them.
        assert!(!out.contains("oolong"), "cookie value shown:\n{out}");
        // Query values are masked in the request line as in messages.
        assert!(!out.contains("value=dark"), "query value shown:\n{out}");
    }
    assert!(
        text.contains(&format!("GET {}/set-cookie?name=***&value=***", t.base)),
        "{text}"
    );
    assert_eq!(
        o.steps[1].request.as_deref(),
        Some(format!("GET {}/set-cookie?name=***&value=***", t.base).as_str())
    );
    for shown in [
        // Received.
        "      < (set-cookie) tok=***; Path=/\n",
        "      < (set-cookie) theme=***; Path=/\n",
        "      < (set-cookie) flavour=***; Path=/; HttpOnly\n",
        // Sent by the jar (not among the request's headers).
        "      > (cookie) tok=***\n",
        "      > (cookie) theme=***\n",
        // The body.
        "      > (body) {\"mine\":\"***\",\"note\":\"visible-note\",\"password\":\"***\"}\n",
    ] {
        assert!(text.contains(shown), "`{shown}` missing:\n{text}");
    }
    assert!(json.contains("\"request_cookies\""), "{json}");
    // The exchange itself: the request line, the headers the step sent,
    // the jar's cookies by name, the body.
    let x = &o.steps[2].exchanges[0];
    assert_eq!(x.request, format!("POST {}/inspect", t.base));
    assert!(
        x.request_headers
            .contains(&("content-type".into(), "application/json".into())),
        "{x:#?}"
    );
    let mut cookies = x.request_cookies.clone();
    cookies.sort();
    assert_eq!(cookies, ["theme=***", "tok=***"]);
    assert_eq!(
        x.request_body.as_deref(),
        Some("{\"mine\":\"***\",\"note\":\"visible-note\",\"password\":\"***\"}")
    );
}

/// A 503 HTML page: the excerpt is its title and the text that explains
/// it, not its `<head>` (styles, scripts, meta).
#[tokio::test]
async fn html_failure_excerpts_show_the_title_and_the_visible_text() {
    let t = Target::start().await;
    let j = journey(
        &format!(
            "name: basket\ninterval: 1m\nsteps:\n  - name: basket\n    http: {{url: \"{}/page/503\"}}\n",
            t.base
        ),
        &[],
    );
    let o = run(&j, &[]).await;
    let f = o.failure().expect("a 503 fails");
    assert_eq!(f.reason, Reason::Status);
    assert_eq!(
        f.excerpt.as_deref(),
        Some(
            "title: Basket | Tea shop · text: Home Teas Basket Account Basket Unavailable: the basket \
             service answered 503. Out of stock: Oolong. © Tea shop"
        )
    );
}

/// A failed `not_contains` says where the text is (line and column), and
/// the excerpt shows the page there.
#[tokio::test]
async fn a_failed_not_contains_says_where_the_text_was_found() {
    let t = Target::start().await;
    let j = journey(
        &format!(
            "name: stock\ninterval: 1m\nsteps:\n  - name: basket\n    http: {{url: \"{}/page/200\"}}\n    expect:\n      body: {{not_contains: [Sold out, \"Out of stock\"]}}\n",
            t.base
        ),
        &[],
    );
    let o = run(&j, &[]).await;
    let f = o.failure().expect("the page says it");
    let (_, body) = get(&format!("{}/page/200", t.base)).await;
    let col = body[..body.find("Out of stock").unwrap()].chars().count() + 1;
    assert_eq!(
        f.message,
        format!(
            "body: expected not to contain `Out of stock`, got it at line 1, column {col} of the body"
        )
    );
    assert_eq!(
        f.actual.as_deref(),
        Some(&*format!("it at line 1, column {col} of the body"))
    );
    assert_eq!(
        f.excerpt.as_deref(),
        Some(
            "title: Basket | Tea shop · text: …the basket service answered 200. Out of stock: Oolong. © Tea shop"
        )
    );
}

/// A request that cannot be made names its method and URL, query values
/// and secrets masked.
#[tokio::test]
async fn a_connection_error_names_the_url() {
    let port = free_port();
    let j = journey(
        &format!(
            "name: down\ninterval: 1m\nsecrets: {{k: {{env: WAYPROBE_TEST_K}}}}\nsteps:\n  - name: get\n    http: {{url: \"http://127.0.0.1:{port}/{{{{ secret.k }}}}/orders?token=abc&page=2\"}}\n"
        ),
        &[],
    );
    let o = run(&j, &[("WAYPROBE_TEST_K", "tenant-7")]).await;
    let f = o.failure().expect("nothing listens");
    assert_eq!(f.reason, Reason::Connect);
    assert!(
        f.message.starts_with("cannot connect: ")
            && f.message.ends_with(&format!(
                " (GET http://127.0.0.1:{port}/***/orders?token=***&page=***)"
            )),
        "{}",
        f.message
    );
}

/// Durations read the same in messages as in run output: `1.5s`, not
/// `1s 500ms`.
#[tokio::test]
async fn durations_in_messages_use_the_one_format() {
    let t = Target::start().await;
    let j = journey(
        &format!(
            "name: slow\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: wait\n    timeout: 1500ms\n    http: {{url: \"{}/slow?ms=5000\"}}\n",
            t.base
        ),
        &[],
    );
    let o = run(&j, &[]).await;
    let f = o.failure().expect("too slow");
    assert_eq!(f.reason, Reason::Timeout);
    // With how far the request got, and which request it was.
    let port = t.base.rsplit(':').next().unwrap();
    assert_eq!(
        f.message,
        format!(
            "step did not finish within 1.5s: connected, no answer yet (GET http://127.0.0.1:{port}/slow?ms=***)"
        )
    );
}

/// A timeout says which phase hung: no answer at all, or headers that came
/// and a body that did not.
#[tokio::test]
async fn a_timeout_says_how_far_the_request_got() {
    let t = Target::start().await;
    for (url, says) in [
        (
            format!("{}/", t.hang),
            format!("connected, no answer yet (GET {}/)", t.hang),
        ),
        (
            format!("{}/stall", t.base),
            format!(
                "status 200 received, the body did not finish (GET {}/stall)",
                t.base
            ),
        ),
    ] {
        let j = journey(
            &format!(
                "name: hung\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: wait\n    timeout: 800ms\n    http: {{url: \"{url}\"}}\n"
            ),
            &[],
        );
        let o = run(&j, &[]).await;
        let f = o.failure().expect("hung");
        assert!(f.message.contains(&says), "{url}: {}", f.message);
    }
}
