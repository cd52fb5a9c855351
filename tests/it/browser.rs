//! Browser steps through real chromedriver and headless Chromium (Debian's
//! `chromium` and `chromium-driver`). Skipped when chromedriver is missing,
//! except under `WAYPROBE_REQUIRE_TOOLS=1` (CI), where that is a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wayprobe::browser::{Browser, BrowserConfig};
use wayprobe::outcome::{Reason, RunResult};
use wayprobe::run::Runner;

use crate::support::{eventually, journey, root, target::Target, tool};

/// Browser tests share two cores: one at a time keeps timings meaningful.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn available() -> bool {
    tool("chromedriver") && tool("chromium")
}

/// The start of most browser tests: skip without a browser, run one at a
/// time, and get a misbehaving target and a runner with a supervised driver.
async fn setup() -> Option<(tokio::sync::MutexGuard<'static, ()>, Target, Rig)> {
    if !available() {
        return None;
    }
    let serial = SERIAL.lock().await;
    Some((serial, Target::start().await, rig("chromedriver")))
}

struct Rig {
    runner: Runner,
    browser: Browser,
    artifacts: std::path::PathBuf,
}

fn rig(chromedriver: &str) -> Rig {
    let artifacts = crate::http::tempdir();
    let browser = Browser::new(BrowserConfig {
        chromedriver: chromedriver.into(),
        artifacts_dir: artifacts.clone(),
        max_sessions: 1,
        ..Default::default()
    });
    let runner = crate::support::shop_runner().with_browser(browser.clone());
    Rig {
        runner,
        browser,
        artifacts,
    }
}

/// Kills chromedriver (`pid`) while `run` is going, and returns the run's
/// outcome, which must come within 30 s.
async fn kill_driver_under(
    pid: i32,
    run: tokio::task::JoinHandle<wayprobe::outcome::JourneyOutcome>,
) -> wayprobe::outcome::JourneyOutcome {
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("no hang")
        .unwrap()
}

/// Waits (up to 10 s) until no process of group `pgid` is left, else fails.
async fn all_exited(pgid: i32, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !group_members(pgid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{when}: {:?}",
            group_members(pgid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Processes still in a process group (chromedriver and its Chromiums).
fn group_members(pgid: i32) -> Vec<String> {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pgid=,pid=,comm="])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|g| g.parse::<i32>().ok())
                == Some(pgid)
        })
        .map(str::to_string)
        .collect()
}

fn example(name: &str, base: &str) -> wayprobe::journey::Journey {
    let text = std::fs::read_to_string(root().join("journeys").join(name)).unwrap();
    journey(&text, &[("base_url", base)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_mixed_journeys_pass_against_the_demo_shop() {
    if !available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (base, _shop) = crate::support::demo_shop().await;
    let r = rig("chromedriver");
    for name in ["shop-browser.yaml", "account-mixed.yaml"] {
        let j = example(name, &base);
        let o = r.runner.run(&j).await;
        assert_eq!(
            o.result,
            RunResult::Success,
            "{}",
            wayprobe::report::text(&j, &o, false, true)
        );
        let b = o.steps.iter().find(|s| s.kind == "browser").unwrap();
        // Each action is timed, and the browser's own Navigation Timing is kept.
        assert!(
            b.timings.iter().any(|t| t.name.starts_with("goto ")),
            "{:?}",
            b.timings
        );
        assert!(
            b.timings.iter().any(|t| t.name.trim() == "ttfb"),
            "{:?}",
            b.timings
        );
        // The first page load's phases, in the order they happen.
        let within = b.timings.iter().find_map(|t| t.within.clone()).unwrap();
        let phases: Vec<&str> = b
            .timings
            .iter()
            .filter(|t| t.within.as_ref() == Some(&within))
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(
            phases,
            [
                "dns",
                "connect",
                "tls",
                "ttfb",
                "download",
                "dom_ready",
                "load"
            ]
        );
    }
    assert!(r.browser.is_up());
    let pgid = r.browser.driver_pgid().await.unwrap();
    r.browser.shutdown().await;
    all_exited(pgid, "after shutdown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_element_fails_in_its_timeout_with_a_screenshot() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let j = journey(
        &format!(
            "name: missing\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: look\n    browser:\n      - goto: \"{}/late?ms=60000\"\n      - click: {{selector: \"#late\", timeout: 2s}}\n",
            t.base
        ),
        &[],
    );
    let t0 = Instant::now();
    let o = r.runner.run(&j).await;
    let took = t0.elapsed();
    let f = o.failure().expect("fails");
    assert_eq!(f.reason, Reason::BrowserElement, "{f:#?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(f.location.as_deref(), Some("8:9"));
    let png = f
        .artifacts
        .iter()
        .find(|a| a.ends_with(".png"))
        .expect("a screenshot");
    let bytes = std::fs::read(png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let note =
        std::fs::read_to_string(f.artifacts.iter().find(|a| a.ends_with(".txt")).unwrap()).unwrap();
    assert!(
        note.contains("url: ") && note.contains("/late?ms=60000") && note.contains("title: late"),
        "{note}"
    );
    assert!(png.starts_with(&r.artifacts.display().to_string()));

    // An element that does come in time passes; an expect auto-waits.
    let j = journey(
        &format!(
            "name: late\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: look\n    browser:\n      - goto: \"{}/late?ms=500\"\n      - expect: {{selector: \"#late\", equals: finally, timeout: 5s}}\n      - expect: {{selector: \"p\", count: 1}}\n      - expect: {{selector: \"#nothing\", absent: true}}\n",
            t.base
        ),
        &[],
    );
    let o = r.runner.run(&j).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    r.browser.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_never_finishes_loading_is_a_timeout() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let j = journey(
        &format!(
            "name: stuck\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: open\n    browser:\n      - goto: \"{}/never-loads?img={}/img.png\"\n        timeout: 4s\n",
            t.base, t.hang
        ),
        &[],
    );
    let t0 = Instant::now();
    let o = r.runner.run(&j).await;
    assert_eq!(
        o.failure().expect("fails").reason,
        Reason::Timeout,
        "{:#?}",
        o.failure()
    );
    assert!(t0.elapsed() < Duration::from_secs(20));
    r.browser.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_chromedriver_fails_that_run_and_the_next_run_recovers() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let waits = |name: &str, ms: u64| {
        journey(
            &format!(
                "name: {name}\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: wait\n    browser:\n      - goto: \"{}/late?ms={ms}\"\n      - wait_for: {{selector: \"#late\", timeout: 20s}}\n",
                t.base
            ),
            &[],
        )
    };
    let j = waits("healthy", 100);
    // The victim's element never appears: its run can only end by the kill.
    let victim = Arc::new(waits("victim", 600_000));
    // Warm up so the driver exists, then kill it while a run waits.
    let o = r.runner.run(&j).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    let old = r.browser.driver_pgid().await.unwrap();
    let runner = r.runner.clone();
    let run = tokio::spawn(async move { runner.run(&victim).await });
    // Chromium has the page: the run is now waiting for the element.
    eventually(20, "Chromium to load the victim's page", || async {
        (t.hits("/late?ms=600000") > 0).then_some(())
    })
    .await;
    let o = kill_driver_under(old, run).await;
    assert_eq!(o.result, RunResult::Failure);
    assert_eq!(
        o.failure().unwrap().reason,
        Reason::BrowserSession,
        "{:#?}",
        o.failure()
    );

    let o = r.runner.run(&j).await;
    assert_eq!(
        o.result,
        RunResult::Success,
        "the next run passes after a restart: {:#?}",
        o.failure()
    );
    let new = r.browser.driver_pgid().await.unwrap();
    assert_ne!(old, new);
    // The dead driver's Chromiums were killed with its group at the restart.
    assert!(
        group_members(old).is_empty(),
        "orphans: {:?}",
        group_members(old)
    );
    r.browser.shutdown().await;
    all_exited(new, "left behind after shutdown").await;
}

#[tokio::test]
async fn no_browser_is_a_failure_never_a_success() {
    let r = rig("/nonexistent/chromedriver");
    let m = wayprobe::metrics::Metrics::new("x");
    r.browser.set_gauge(m.webdriver_up.clone());
    let j = journey(
        "name: nobrowser\ninterval: 1m\ntimeout: 10s\nsteps:\n  - name: open\n    browser:\n      - goto: \"http://127.0.0.1:9/\"\n",
        &[],
    );
    let o = r.runner.run(&j).await;
    let f = o.failure().expect("a failure");
    assert_eq!(f.reason, Reason::BrowserSession);
    assert!(f.message.contains("chromium-driver"), "{}", f.message);
    assert!(!r.browser.health_check().await);
    assert!(m.encode().contains("wayprobe_webdriver_up 0"));
}

/// The status page of `serve`, opened in the same headless browser by a
/// wayprobe browser journey: journeys, states and the latest failure show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_reads_well_in_a_browser() {
    if !available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    for (name, path) in [("healthy", "/ok"), ("broken", "/status/503")] {
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            format!("name: {name}\ninterval: 1s\ntimeout: 500ms\nsteps:\n  - name: get\n    http: {{url: \"{}{path}\"}}\n", t.base),
        )
        .unwrap();
    }
    // A browser journey that fails: its screenshot must be reachable.
    std::fs::write(
        dir.join("clicky.yaml"),
        format!("name: clicky\ninterval: 20s\ntimeout: 15s\nsteps:\n  - name: press\n    browser:\n      - goto: \"{}/late?ms=60000\"\n      - click: {{selector: \"#late\", timeout: 1s}}\n", t.base),
    )
    .unwrap();
    let serve_rig = rig("chromedriver");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status = format!("http://{}", listener.local_addr().unwrap());
    let cfg = wayprobe::serve::ServeConfig::new(
        wayprobe::serve::Source::Paths {
            paths: vec![dir.clone()],
            opts: Default::default(),
        },
        serve_rig.runner.clone(),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(wayprobe::serve::serve(cfg, listener, async move {
        let _ = rx.await;
    }));
    let links = crate::support::eventually(40, "the browser failure's artifacts", || async {
        let api: serde_json::Value = serde_json::from_str(
            &crate::support::get(&format!("{status}/api/v1/journeys"))
                .await
                .1,
        )
        .ok()?;
        let j = api["journeys"]
            .as_array()?
            .iter()
            .find(|j| j["name"] == "clicky")?
            .clone();
        let links: Vec<String> = j["artifacts"]
            .as_array()?
            .iter()
            .filter_map(|l| l.as_str().map(String::from))
            .collect();
        (!links.is_empty()).then_some(links)
    })
    .await;
    // The API has the browser's start-up apart from the step's time.
    let api: serde_json::Value = serde_json::from_str(
        &crate::support::get(&format!("{status}/api/v1/journeys"))
            .await
            .1,
    )
    .unwrap();
    let clicky = api["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "clicky")
        .unwrap();
    assert!(
        clicky["last"]["steps"][0]["browser_start"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{clicky:#}"
    );
    let png = links.iter().find(|l| l.ends_with(".png")).unwrap();
    let r = crate::support::client()
        .get(format!("{status}{png}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(&r.bytes().await.unwrap()[..4], b"\x89PNG");
    assert_eq!(
        crate::support::client()
            .get(format!("{status}/artifacts/clicky/..%2Fsecret.png"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = rig("chromedriver");
    let j = journey(
        &format!(
            r#"name: status-page
interval: 1m
timeout: 30s
steps:
  - name: page
    browser:
      - goto: "{status}/"
      - expect: {{title: {{contains: "2 failing"}}}}
      - expect: {{selector: "tr.journey", count: 3}}
      - expect: {{selector: "tr[data-journey=clicky] a", contains: "screenshot"}}
      - click: "tr[data-journey=clicky] details.timings summary"
      - expect: {{selector: "tr[data-journey=clicky] details.timings", contains: "click #late"}}
      - expect: {{selector: "tr[data-journey=healthy] td.ok", contains: "passing", timeout: 1s}}
      - expect: {{selector: "tr[data-journey=broken] td.fail", contains: "failing"}}
      - expect: {{selector: "tr[data-journey=broken] .why", contains: "step get failed (status)"}}
      - expect: {{selector: "tr[data-journey=broken] .why", contains: "expected 2xx or 3xx"}}
      - expect: {{selector: "tr[data-journey=clicky]", contains: "browser start)"}}
"#
        ),
        &[],
    );
    let o = r.runner.run(&j).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    r.browser.shutdown().await;
    let _ = tx.send(());
    serving.await.unwrap().unwrap();
    assert!(
        !serve_rig.browser.is_up(),
        "serve shut its chromedriver down"
    );
}

/// `fill`, `select`, `press`, `screenshot` and the url capture in a real
/// browser; then a login through the demo shop's own form with a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_are_filled_selected_and_submitted() {
    if !available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let t = Target::start().await;
    let (shop, _s) = crate::support::demo_shop().await;
    let r = rig("chromedriver");
    let j = journey(
        &format!(
            r##"name: form
interval: 1m
timeout: 40s
secrets: {{password: {{env: SHOP_PASSWORD}}}}
steps:
  - name: search
    browser:
      - goto: "{base}/form"
      - fill: {{selector: "#q", value: "oolong"}}
      - select: {{selector: "#tea", value: black}}
      - screenshot: filled-in
      - press: {{selector: "#q", key: Enter}}
      - wait_for: {{url: "q=oolong"}}
      - expect: {{url: {{contains: "tea=black"}}}}
      - capture: {{landed: {{url: true}}}}
  - name: login
    browser:
      - goto: "{shop}/login"
      - fill: {{selector: "#username", value: alice}}
      - fill: {{selector: "#password", value: "{{{{ secret.password }}}}"}}
      - click: "#login-button"
      - expect: {{selector: "body", contains: "Signed in as alice"}}
  - name: check-capture
    http: {{url: "{{{{ landed }}}}"}}
    expect:
      jsonpath: {{"$.query": "q=oolong&tea=black"}}
"##,
            base = t.base
        ),
        &[],
    );
    let o = r.runner.run(&j).await;
    assert_eq!(
        o.result,
        RunResult::Success,
        "{}",
        wayprobe::report::text(&j, &o, false, true)
    );
    let shot = r.artifacts.join("form").join("filled-in.png");
    assert_eq!(
        &std::fs::read(&shot).expect("screenshot saved in --artifacts-dir")[..4],
        b"\x89PNG"
    );
    // The secret typed into the form is in no output.
    let text = format!("{o:?}{}", wayprobe::report::json(std::slice::from_ref(&o)));
    assert!(!text.contains(wayprobe::demo::DemoShop::PASSWORD));
    r.browser.shutdown().await;
}

/// When the page keeps saying the wrong thing, the failure says what it
/// said (an assertion), not that time ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_browser_expect_reports_what_the_page_showed() {
    let Some((_serial, _t, r)) = setup().await else {
        return;
    };
    let (shop_url, shop) = crate::support::demo_shop().await;
    shop.set_checkout_failing(true);
    let j = journey(
        &std::fs::read_to_string(root().join("journeys/shop-browser.yaml")).unwrap(),
        &[("base_url", &shop_url)],
    );
    let o = r.runner.run(&j).await;
    let f = o.failure().expect("checkout is down");
    assert_eq!(f.reason, Reason::Assertion, "{f:#?}");
    assert!(f.message.contains("Checkout failed: 503"), "{}", f.message);
    r.browser.shutdown().await;
}

/// Text in a PNG, read by Debian's `tesseract-ocr`.
fn ocr(png: &std::path::Path) -> String {
    let out = std::process::Command::new("tesseract")
        .arg(png)
        .arg("stdout")
        .output()
        .expect("tesseract runs");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

/// A page that shows a secret: neither the `screenshot` action's image nor
/// the failure screenshot shows it (read back by OCR), and the page is put
/// back as it was for the rest of the journey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_do_not_show_secrets() {
    if !tool("tesseract") {
        return;
    }
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let j = journey(
        &format!(
            r##"name: shows-secret
interval: 1m
timeout: 40s
secrets: {{password: {{env: SHOP_PASSWORD}}}}
steps:
  - name: page
    browser:
      - goto: "{base}/show?text=VISIBLE%20{{{{ secret.password | urlencode }}}}%20TEXT"
      - screenshot: page
      - expect: {{selector: "#shown", contains: "{{{{ secret.password }}}}"}}
  - name: fails
    browser:
      - expect: {{selector: "#nothing-here", visible: true, timeout: 1s}}
"##,
            base = t.base
        ),
        &[],
    );
    let o = r.runner.run(&j).await;
    assert_eq!(
        o.steps[0].status,
        wayprobe::outcome::StepStatus::Passed,
        "{o:#?}"
    );
    let f = o.failure().expect("the second step fails");
    let failure_png = f
        .artifacts
        .iter()
        .find(|a| a.ends_with(".png"))
        .expect("a failure screenshot");
    let secret = wayprobe::demo::DemoShop::PASSWORD;
    for png in [
        r.artifacts.join("shows-secret").join("page.png"),
        std::path::PathBuf::from(failure_png),
    ] {
        let text = ocr(&png);
        // OCR reads the page (so it would read the secret if it were there).
        assert!(
            text.contains("visible"),
            "OCR of {}: {text:?}",
            png.display()
        );
        assert!(
            !text.contains(secret),
            "{} shows the secret: {text:?}",
            png.display()
        );
        assert!(
            !text.contains("wonder"),
            "{} shows the secret: {text:?}",
            png.display()
        );
    }
    r.browser.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_and_attributes_are_templates_rendered_per_run() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    // Vars and a capture of this very step go into selectors and attribute names.
    let j = journey(
        &format!(
            "name: templated\ninterval: 1m\ntimeout: 30s\nvars:\n  el: late\n  word: finally\n  attr: id\nsteps:\n  - name: look\n    browser:\n      - goto: \"{}/late?ms=0\"\n      - expect: {{selector: \"#{{{{ el }}}}\", equals: \"{{{{ word }}}}\"}}\n      - capture:\n          which: {{selector: \"div > p[id={{{{ el }}}}]\", attr: \"{{{{ attr }}}}\"}}\n      - click: \"#box #{{{{ which }}}}\"\n      - expect: {{selector: \"#{{{{ which }}}}\", attr: \"{{{{ attr }}}}\", equals: late}}\n",
            t.base
        ),
        &[],
    );
    let o = r.runner.run(&j).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    let b = &o.steps[0];
    // The capture is in the outcome, for `run`'s output and reports.
    assert_eq!(
        b.captures
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_str()))
            .collect::<Vec<_>>(),
        [("which", "late")]
    );
    // Timings name the rendered selector, not the template.
    assert!(
        b.timings.iter().any(|t| t.name == "click #box #late"),
        "{:?}",
        b.timings
    );

    // A selector that cannot be rendered fails as a template, at its action.
    let j = journey(
        &format!(
            "name: unset\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: look\n    browser:\n      - goto: \"{}/late?ms=0\"\n      - click: \"#{{{{ env.WAYPROBE_SURELY_UNSET_VAR }}}}\"\n",
            t.base
        ),
        &[],
    );
    let o = r.runner.run(&j).await;
    let f = o.failure().expect("fails");
    assert_eq!(f.reason, Reason::Template, "{f:#?}");
    assert_eq!(f.location.as_deref(), Some("8:9"));
    r.browser.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_wait_briefly_by_default_and_say_what_they_awaited() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    // `#late` comes after a minute; the run has 30 s but each action only its wait.
    let run = |extra: &str, action: &str| {
        journey(
            &format!(
                "name: waits\ninterval: 1m\ntimeout: 30s\n{extra}steps:\n  - name: look\n    browser:\n      - goto: \"{}/late?ms=60000\"\n      - {action}\n",
                t.base
            ),
            &[],
        )
    };
    let cases = [
        // The default wait.
        (
            "",
            "click: \"#late\"",
            Reason::BrowserElement,
            "no element matches `#late` after waiting 5s",
        ),
        // The journey's wait.
        (
            "action_timeout: 1s\n",
            "expect: {selector: \"#box\", contains: finally}",
            Reason::Assertion,
            "text of `#box`: expected to contain `finally`, got `` (waited 1s)",
        ),
        // The action's own wait beats the journey's.
        (
            "action_timeout: 1s\n",
            "wait_for: {selector: \"#late\", visible: true, timeout: 2s}",
            Reason::BrowserElement,
            "`#late` did not become visible in 2s",
        ),
    ];
    for (extra, action, reason, want) in cases {
        let o = r.runner.run(&run(extra, action)).await;
        let f = o.failure().expect("fails");
        assert_eq!(f.reason, reason, "{action}: {f:#?}");
        assert!(f.message.contains(want), "{action}: {}", f.message);
    }
    r.browser.shutdown().await;
}

/// `finally:` runs after the browser crashed under a step: the HTTP cleanup
/// still empties the basket, and the run's failure stays the browser's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finally_runs_after_the_browser_crashed() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let j = Arc::new(journey(
        &format!(
            "name: crash-cleanup\ninterval: 1m\ntimeout: 30s\nvars: {{base_url: \"{}\"}}\nsteps:\n  - name: add\n    http: {{method: POST, url: \"{{{{ base_url }}}}/basket\"}}\n    capture: {{basket: {{jsonpath: \"$.basket\"}}}}\n  - name: wait\n    browser:\n      - goto: \"{{{{ base_url }}}}/late?ms=600000\"\n      - wait_for: {{selector: \"#late\", timeout: 20s}}\nfinally:\n  - name: empty-basket\n    http: {{method: DELETE, url: \"{{{{ base_url }}}}/basket/{{{{ basket }}}}\"}}\n",
            t.base
        ),
        &[],
    ));
    let (runner, victim) = (r.runner.clone(), j.clone());
    let run = tokio::spawn(async move { runner.run(&victim).await });
    eventually(20, "Chromium to load the page", || async {
        (t.hits("/late?ms=600000") > 0).then_some(())
    })
    .await;
    assert_eq!(t.basket(), 1);
    let driver = r.browser.driver_pgid().await.unwrap();
    let o = kill_driver_under(driver, run).await;
    assert_eq!(o.result, RunResult::Failure);
    assert_eq!(o.failure().unwrap().reason, Reason::BrowserSession);
    assert_eq!(
        o.finally[0].status,
        wayprobe::outcome::StepStatus::Passed,
        "{:#?}",
        o.finally
    );
    assert_eq!(t.basket(), 0);
    r.browser.shutdown().await;
}

/// The main document's status is recorded on every navigation (`goto`, a
/// clicked link, a submitted form); a 4xx/5xx page fails with `status`
/// (its excerpt the same as an HTTP step's), unless an `expect: {status}`
/// right after the navigating action judges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_page_fails_with_status_as_over_http() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let browser = |name: &str, actions: &str| {
        journey(
            &format!(
                "name: {name}\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: page\n    browser:\n{actions}"
            ),
            &[],
        )
    };
    // goto a 500 page: `status`, not "element not found" later.
    let o = r
        .runner
        .run(&browser(
            "goto-500",
            &format!(
                "      - goto: \"{}/page/500\"\n      - expect: {{selector: \"#basket\", visible: true}}\n",
                t.base
            ),
        ))
        .await;
    let f = o.failure().expect("a 500 page fails");
    assert_eq!(f.reason, Reason::Status, "{f:#?}");
    assert_eq!(o.steps[0].http_status, Some(500));
    assert_eq!(f.location.as_deref(), Some("7:9"), "{f:#?}");
    assert_eq!(
        f.message,
        format!(
            "status 500 from {}/page/500: expected 2xx or 3xx (no `expect: {{status: ...}}` right after this action)",
            t.base
        )
    );
    // The same page over HTTP: the same reason and the same excerpt.
    let http = crate::support::run(
        &journey(
            &format!(
                "name: http-500\ninterval: 1m\nsteps:\n  - name: page\n    http: {{url: \"{}/page/500\"}}\n",
                t.base
            ),
            &[],
        ),
        &[],
    )
    .await;
    let hf = http.failure().expect("fails over HTTP too");
    assert_eq!(hf.reason, f.reason);
    assert_eq!(f.excerpt, hf.excerpt);
    assert!(
        f.excerpt
            .as_deref()
            .is_some_and(|x| x.starts_with("title: Basket | Tea shop · text: ")),
        "{f:#?}"
    );

    // Expected, it passes, and the page can be checked further.
    let o = r
        .runner
        .run(&browser(
            "goto-404",
            &format!(
                "      - goto: \"{}/page/404\"\n      - expect: {{status: 404}}\n      - expect: {{selector: \".error\", contains: \"answered 404\"}}\n",
                t.base
            ),
        ))
        .await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    assert_eq!(o.steps[0].http_status, Some(404));

    // A clicked link and a submitted form are navigations too.
    for (button, code) in [("#go", 503), ("#send", 502)] {
        let o = r
            .runner
            .run(&browser(
                "click",
                &format!(
                    "      - goto: \"{}/link?to=/page/{code}\"\n      - click: \"{button}\"\n",
                    t.base
                ),
            ))
            .await;
        let f = o.failure().expect("the page after the click fails");
        assert_eq!(f.reason, Reason::Status, "{button}: {f:#?}");
        assert_eq!(f.location.as_deref(), Some("8:9"), "{button}: {f:#?}");
        assert_eq!(o.steps[0].http_status, Some(code), "{button}");
    }

    // A wrong status expected is a `status` failure of that expect.
    let o = r
        .runner
        .run(&browser(
            "wrong-expect",
            &format!(
                "      - goto: \"{}/ok\"\n      - expect: {{status: [201, 4xx], timeout: 1s}}\n",
                t.base
            ),
        ))
        .await;
    let f = o.failure().expect("200 is not 201 or 4xx");
    assert_eq!(f.reason, Reason::Status, "{f:#?}");
    assert_eq!(o.steps[0].http_status, Some(200));
    assert!(
        f.message.contains(&format!(
            "status of {}/ok: expected 201 or 4xx, got 200",
            t.base
        )),
        "{}",
        f.message
    );
    r.browser.shutdown().await;
}

/// One cause, one reason: a refused port, an unknown host and an untrusted
/// certificate fail browser steps as they fail HTTP steps, and the browser
/// message names the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_failures_get_the_reasons_of_http_steps() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let refused = format!("http://127.0.0.1:{}/", crate::support::free_port());
    let untrusted = format!("{}/", t.tls);
    let cases = [
        (
            refused.as_str(),
            Reason::Connect,
            "cannot connect: net::ERR_CONNECTION_REFUSED",
        ),
        (
            "http://wayprobe-test.invalid/",
            Reason::Dns,
            "DNS lookup failed: net::ERR_NAME_NOT_RESOLVED",
        ),
        (
            untrusted.as_str(),
            Reason::Tls,
            "TLS handshake failed: net::ERR_CERT_AUTHORITY_INVALID",
        ),
    ];
    for (url, want, says) in cases {
        let http = crate::support::run(
            &journey(
                &format!(
                    "name: h\ninterval: 1m\nsteps:\n  - name: get\n    http: {{url: \"{url}\"}}\n"
                ),
                &[],
            ),
            &[],
        )
        .await;
        assert_eq!(
            http.failure().map(|f| f.reason),
            Some(want),
            "HTTP {url}: {:#?}",
            http.failure()
        );
        let o = r
            .runner
            .run(&journey(
                &format!("name: b\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: open\n    browser:\n      - goto: \"{url}\"\n"),
                &[],
            ))
            .await;
        let f = o.failure().expect("fails");
        assert_eq!(f.reason, want, "browser {url}: {f:#?}");
        assert_eq!(f.message, format!("{says} (GET {url})"), "{url}");
        assert_eq!(o.steps[0].http_status, None, "{url}");
    }
    // A server that accepts and never answers: `timeout`, as over HTTP, in
    // our words, and no status recorded for a page that never came.
    let hung = format!("{}/", t.hang);
    let o = r
        .runner
        .run(&journey(
            &format!("name: b\ninterval: 1m\ntimeout: 6s\nsteps:\n  - name: open\n    browser:\n      - goto: \"{hung}\"\n"),
            &[],
        ))
        .await;
    let f = o.failure().expect("fails");
    assert_eq!(f.reason, Reason::Timeout, "{f:#?}");
    assert!(
        f.message.starts_with("the page did not load within ")
            && f.message.ends_with(&format!("(GET {hung})")),
        "{f:#?}"
    );
    assert_eq!(o.steps[0].http_status, None);
    r.browser.shutdown().await;
}

/// A wrong password answers 401: `status` over HTTP and in the browser
/// (not a timeout waiting for "Signed in"); expecting the 401 passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_status_in_both_kinds_of_step() {
    let Some((_serial, _t, r)) = setup().await else {
        return;
    };
    let (shop, _s) = crate::support::demo_shop().await;
    let http = journey(
        &format!(
            r##"name: http-login
interval: 1m
steps:
  - name: open
    http: {{url: "{shop}/login"}}
    capture:
      csrf: {{css: "#login-form input[name=csrf_token]", attr: value}}
  - name: log-in
    http:
      method: POST
      url: "{shop}/login"
      form: {{csrf_token: "{{{{ csrf }}}}", username: alice, password: wrong}}
"##
        ),
        &[],
    );
    let o = crate::support::run(&http, &[]).await;
    let hf = o.failure().expect("a wrong password fails");
    assert_eq!(hf.reason, Reason::Status, "{hf:#?}");
    let browser = |then: &str| {
        journey(
            &format!(
                "name: browser-login\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: log-in\n    browser:\n      - goto: \"{shop}/login\"\n      - fill: {{selector: \"#username\", value: alice}}\n      - fill: {{selector: \"#password\", value: wrong}}\n      - click: \"#login-button\"\n{then}"
            ),
            &[],
        )
    };
    let o = r
        .runner
        .run(&browser(
            "      - expect: {selector: body, contains: \"Signed in as alice\"}\n",
        ))
        .await;
    let f = o.failure().expect("fails");
    assert_eq!(f.reason, hf.reason, "{f:#?}");
    assert_eq!(o.steps[0].http_status, Some(401));
    // At the click, or at the next action when the form's navigation
    // committed after the click returned.
    assert!(
        matches!(f.location.as_deref(), Some("10:9" | "11:9")),
        "at the click: {f:#?}"
    );
    // The excerpt is the page's message, as over HTTP.
    assert_eq!(f.excerpt, hf.excerpt, "{f:#?}");

    let o = r
        .runner
        .run(&browser(
            "      - expect: {status: 401}\n      - expect: {selector: \"#login-error\", visible: true}\n",
        ))
        .await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    r.browser.shutdown().await;
}

/// Browser start-up is timed on its own (`browser_start`, on the step that
/// opened the session) and kept out of the step's and the journey's SLI
/// durations: the histograms' sums are the outcome's durations without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_start_is_reported_apart_and_kept_out_of_the_slis() {
    let Some((_serial, t, r)) = setup().await else {
        return;
    };
    let j = journey(
        &format!(
            "name: started\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: first\n    browser:\n      - goto: \"{base}/ok\"\n  - name: second\n    browser:\n      - goto: \"{base}/late?ms=0\"\n",
            base = t.base
        ),
        &[],
    );
    let o = r.runner.run(&j).await;
    assert_eq!(o.result, RunResult::Success, "{:#?}", o.failure());
    let start = o.steps[0]
        .browser_start
        .expect("the first step opened the session");
    assert!(start > Duration::ZERO);
    assert_eq!(o.steps[1].browser_start, None, "the session is reused");
    assert_eq!(o.browser_start(), start);
    // Wall time includes it; the SLI duration does not.
    assert_eq!(o.sli_duration(), o.duration - start);
    let m = wayprobe::metrics::Metrics::new("here");
    m.set_journeys(std::slice::from_ref(&j))[0].record(&o);
    let exposition = m.encode();
    let sum = |prefix: &str| -> f64 {
        exposition
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{exposition}"))
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    let step_sum =
        sum(r#"journey_step_duration_seconds_sum{journey="started",location="here",step="first"}"#);
    assert!(
        close(step_sum, o.steps[0].duration.as_secs_f64()),
        "{step_sum} vs {:?}",
        o.steps[0]
    );
    let journey_sum =
        sum(r#"journey_duration_seconds_sum{journey="started",location="here",result="success"}"#);
    assert!(
        close(journey_sum, o.sli_duration().as_secs_f64()),
        "{journey_sum} vs {o:#?}"
    );
    assert!(!close(journey_sum, o.duration.as_secs_f64()));
    // Every output shows it.
    let text = wayprobe::report::text(&j, &o, false, false);
    assert!(
        text.contains(&format!(
            "(+{} browser start)",
            wayprobe::diag::duration(start)
        )),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&wayprobe::report::json(std::slice::from_ref(&o))).unwrap();
    assert!(
        json["journeys"][0]["steps"][0]["browser_start"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        json["journeys"][0]["steps"][1]
            .get("browser_start")
            .is_none()
    );
    // The page load's phases have clean names and say which action they belong to.
    let phases: Vec<_> = o.steps[0]
        .timings
        .iter()
        .filter(|t| t.within.is_some())
        .collect();
    assert!(
        phases.iter().any(|t| t.name == "ttfb"),
        "{:?}",
        o.steps[0].timings
    );
    for p in &phases {
        assert_eq!(p.name.trim(), p.name);
        assert_eq!(p.within.as_deref(), Some(&*format!("goto {}/ok", t.base)));
    }
    r.browser.shutdown().await;
}

/// `expect: {status}` in a browser step is checked like an HTTP step's.
#[test]
fn a_browser_status_expectation_is_validated() {
    use wayprobe::journey::{ActionKind, BrowserExpect, LoadOptions, StepKind, load::load_sources};
    let yaml = |status: &str| {
        format!(
            "name: s\ninterval: 1m\nsteps:\n  - name: page\n    browser:\n      - goto: \"http://127.0.0.1:9/\"\n      - expect: {{status: {status}}}\n"
        )
    };
    let j = journey(&yaml("[200, 4xx]"), &[]);
    let StepKind::Browser(b) = &j.steps[0].kind else {
        panic!("a browser step")
    };
    assert!(matches!(
        &b.actions[1].kind,
        ActionKind::Expect(BrowserExpect::Status(m)) if m.len() == 2
    ));
    for bad in ["999", "[]", "teapot"] {
        let Err(e) = load_sources(
            vec![wayprobe::diag::SourceFile::new("s.yaml", yaml(bad))],
            &LoadOptions::default(),
            Vec::new(),
        ) else {
            panic!("`status: {bad}` accepted")
        };
        let text: String = e.diagnostics().iter().map(|d| d.render(false)).collect();
        assert!(text.contains("s.yaml:7:"), "{bad}: {text}");
    }
}

/// The page's own requests carry the run's trace: the document and its
/// XHR to the journey's origin name the browser step's span; a request the
/// page makes to another origin (here `localhost`, a second origin of the
/// same server) carries nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_requests_to_the_journeys_origin_carry_the_trace() {
    let Some((_serial, _t, rig)) = setup().await else {
        return;
    };
    let page = r#"<!doctype html><html><head><title>traced</title></head><body><p id="out">wait</p>
<script>
Promise.all([
  fetch('/xhr').then(r => r.text()),
  fetch('http://localhost:{port}/other', {mode: 'no-cors'}).catch(() => 'x'),
]).then(() => { document.getElementById('out').textContent = 'done'; });
</script></body></html>"#;
    let (port, seen, server) = traced_site(vec![("/page", page.to_string())]).await;
    let want = run_traced(&rig.runner, &format!("http://127.0.0.1:{port}/page"), "").await;
    assert_eq!(
        traceparent_of(&seen, "/page").as_deref(),
        Some(want.as_str())
    );
    assert_eq!(
        traceparent_of(&seen, "/xhr").as_deref(),
        Some(want.as_str())
    );
    assert_eq!(traceparent_of(&seen, "/other"), None);
    server.abort();
}

/// What a traced site saw: each request's path and `traceparent`.
type TraceSeen = Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A site on 127.0.0.1 serving `pages` (path, HTML; anything else is
/// "ok") and recording the `traceparent` of every request.
async fn traced_site(
    pages: Vec<(&'static str, String)>,
) -> (u16, TraceSeen, tokio::task::JoinHandle<()>) {
    let seen: TraceSeen = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let mut app = axum::Router::new();
    for (path, html) in pages {
        let html = html.replace("{port}", &port.to_string());
        app = app.route(
            path,
            axum::routing::get(move || async move { axum::response::Html(html) }),
        );
    }
    let record = seen.clone();
    let app = app
        .fallback(|| async { "ok" })
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let record = record.clone();
                async move {
                    let tp = req
                        .headers()
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap_or("").to_string());
                    record
                        .lock()
                        .unwrap()
                        .push((req.uri().path().to_string(), tp));
                    next.run(req).await
                }
            },
        ));
    let server = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (port, seen, server)
}

/// Runs a one-step browser journey: `goto: url`, then `actions` (YAML
/// lines), then waits for `#out` to say "done"; it must pass. Returns the
/// `traceparent` naming its step's span.
async fn run_traced(runner: &Runner, url: &str, actions: &str) -> String {
    let j = journey(
        &format!(
            "name: traced-page\ninterval: 1m\ntimeout: 30s\nsteps:\n  - name: page\n    browser:\n      - goto: \"{url}\"\n{actions}      - expect: {{selector: \"#out\", equals: \"done\", timeout: 10s}}\n"
        ),
        &[],
    );
    let o = runner.run(&j).await;
    assert_eq!(o.result, RunResult::Success, "{o:#?}");
    format!(
        "00-{}-{}-01",
        o.trace_id.as_deref().unwrap(),
        o.steps[0].span_id.as_deref().unwrap()
    )
}

/// The `traceparent` `path` was requested with (it must have been).
fn traceparent_of(seen: &TraceSeen, path: &str) -> Option<String> {
    let seen = seen.lock().unwrap().clone();
    seen.iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("{path} not requested: {seen:?}"))
        .1
        .clone()
}

/// Windows the page opens carry the trace too: a `window.open` popup and a
/// `target=_blank` tab opened by a click, their documents and their XHR
/// to the journey's origin name the step's span; their request to another
/// origin (`localhost`) carries nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_the_page_opens_carry_the_trace_to_the_journeys_origin_only() {
    let Some((_serial, _t, rig)) = setup().await else {
        return;
    };
    // Each opened window reports back to its opener once its requests ended.
    let child = |name: &str| {
        format!(
            r#"<!doctype html><html><body><script>
Promise.all([
  fetch('/{name}-xhr').then(r => r.text()),
  fetch('http://localhost:{{port}}/{name}-other', {{mode: 'no-cors'}}).catch(() => 'x'),
]).then(() => {{ window.opener.done('{name}'); }});
</script></body></html>"#
        )
    };
    let opener = r#"<!doctype html><html><head><title>opener</title></head><body>
<p id="out">wait</p><a id="tab" href="/tab" target="_blank" rel="opener">tab</a>
<script>
const got = new Set();
window.done = (name) => { got.add(name); if (got.size == 2) document.getElementById('out').textContent = 'done'; };
window.open('/popup', 'popup', 'width=400,height=300');
</script></body></html>"#
        .to_string();
    let (port, seen, server) = traced_site(vec![
        ("/opener", opener),
        ("/popup", child("popup")),
        ("/tab", child("tab")),
    ])
    .await;
    let opened = format!("http://127.0.0.1:{port}/opener");
    let want = run_traced(&rig.runner, &opened, "      - click: \"#tab\"\n").await;
    for path in ["/opener", "/popup", "/popup-xhr", "/tab", "/tab-xhr"] {
        assert_eq!(
            traceparent_of(&seen, path).as_deref(),
            Some(want.as_str()),
            "{path}: {:?}",
            seen.lock().unwrap()
        );
    }
    for path in ["/popup-other", "/tab-other"] {
        assert_eq!(traceparent_of(&seen, path), None, "{path}");
    }
    server.abort();
}

/// What a test's grid tells about DevTools in a new session's capabilities.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cdp {
    /// `se:cdp`: the browser's real DevTools websocket, as Selenium Grid 4
    /// proxies it; no `debuggerAddress` (a grid's would not be reachable).
    Real,
    /// `se:cdp` to a port nothing listens on.
    Dead,
    /// Neither.
    None,
}

/// A stand-in for a Selenium Grid in front of a real chromedriver: every
/// WebDriver request goes through, and a new session's capabilities say
/// how to reach DevTools as `cdp` says.
async fn grid(driver: String, cdp: Cdp) -> (String, tokio::task::JoinHandle<()>) {
    let client = crate::support::client();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, driver) = (client.clone(), driver.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 24).await.unwrap();
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let resp = client
                .request(parts.method.clone(), format!("{driver}{pq}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let mut bytes = resp.bytes().await.unwrap().to_vec();
            if parts.method == axum::http::Method::POST && parts.uri.path() == "/session" {
                let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let caps = &mut v["value"]["capabilities"];
                let address = caps["goog:chromeOptions"]
                    .as_object_mut()
                    .and_then(|o| o.remove("debuggerAddress"))
                    .and_then(|a| a.as_str().map(str::to_string))
                    .expect("chromedriver names its DevTools address");
                match cdp {
                    Cdp::Real => {
                        let version: serde_json::Value = crate::support::client()
                            .get(format!("http://{address}/json/version"))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        caps["se:cdp"] = version["webSocketDebuggerUrl"].clone();
                    }
                    Cdp::Dead => {
                        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                        let port = l.local_addr().unwrap().port();
                        caps["se:cdp"] =
                            format!("ws://127.0.0.1:{port}/devtools/browser/gone").into();
                    }
                    Cdp::None => {}
                }
                bytes = serde_json::to_vec(&v).unwrap();
            }
            (status, [("content-type", "application/json")], bytes)
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, task)
}

/// Log lines written while the test's thread-local subscriber is set.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Behind a remote WebDriver endpoint (a grid), DevTools come from the
/// session's `se:cdp` websocket, and the page's requests carry the trace.
/// When no DevTools endpoint is reachable (a dead `se:cdp`, or none), the
/// runs still pass, without the header, and one warning says why.
#[tokio::test]
async fn a_grids_se_cdp_carries_the_trace_and_its_absence_costs_only_that() {
    if !available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let driver_url = format!("http://127.0.0.1:{port}");
    eventually(15, "chromedriver to listen", || async move {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let page = r#"<!doctype html><html><body><p id="out">wait</p><script>
fetch('/xhr').then(() => { document.getElementById('out').textContent = 'done'; });
</script></body></html>"#;
    let (site, seen, server) = traced_site(vec![("/page", page.to_string())]).await;
    let url = format!("http://127.0.0.1:{site}/page");
    for cdp in [Cdp::Real, Cdp::Dead, Cdp::None] {
        let (grid_url, grid_task) = grid(driver_url.clone(), cdp).await;
        let browser = Browser::new(BrowserConfig {
            webdriver_url: Some(grid_url),
            max_sessions: 1,
            artifacts_dir: crate::http::tempdir(),
            ..Default::default()
        });
        let runner = crate::support::shop_runner().with_browser(browser.clone());
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        for _ in 0..2 {
            seen.lock().unwrap().clear();
            let want = run_traced(&runner, &url, "").await;
            let got = (
                traceparent_of(&seen, "/page"),
                traceparent_of(&seen, "/xhr"),
            );
            if cdp == Cdp::Real {
                assert_eq!(got, (Some(want.clone()), Some(want)), "{cdp:?}");
            } else {
                assert_eq!(got, (None, None), "{cdp:?}");
            }
        }
        drop(guard);
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let warnings: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("traceparent"))
            .collect();
        match cdp {
            Cdp::Real => assert!(warnings.is_empty(), "{logs}"),
            Cdp::Dead => {
                assert_eq!(warnings.len(), 1, "said once: {logs}");
                assert!(warnings[0].contains("se:cdp"), "{logs}");
            }
            Cdp::None => {
                assert_eq!(warnings.len(), 1, "said once: {logs}");
                assert!(warnings[0].contains("no DevTools endpoint"), "{logs}");
            }
        }
        grid_task.abort();
    }
    server.abort();
    let _ = driver.kill();
    let _ = driver.wait();
}
