//! SLO rules against the real prober: every selector of the generated rules
//! matches series that `serve` exposes, and a real Prometheus evaluating them
//! pages on a checkout outage within the Workbook's bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wayprobe::journey::LoadOptions;
use wayprobe::serve::{ServeConfig, Source};

use crate::support::{bin, demo_shop, eventually, get, root, tool};

/// Starts `serve` in-process over `paths`; returns its base URL and a stopper.
async fn serve(
    paths: Vec<std::path::PathBuf>,
    base_url: &str,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, paths, base_url, None).await
}

/// [`serve`] on a listener bound by the caller.
async fn serve_on(
    listener: tokio::net::TcpListener,
    paths: Vec<std::path::PathBuf>,
    base_url: &str,
    prometheus_url: Option<&str>,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let runner = crate::support::shop_runner();
    let mut cfg = ServeConfig::new(
        Source::Paths {
            paths,
            opts: LoadOptions {
                vars: [("base_url".to_string(), base_url.to_string())].into(),
                ..LoadOptions::default()
            },
        },
        runner,
    );
    cfg.location = "test".into();
    cfg.prometheus = prometheus_url
        .map(|u| std::sync::Arc::new(wayprobe::slo_prom::PromReader::new(u).unwrap()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wayprobe::serve::serve(cfg, listener, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// A label matcher: name, operator, value.
type LabelMatcher = (String, String, String);

/// `name{a="b",c=~"d"}` selectors of input metrics in a PromQL expression.
fn selectors(expr: &str) -> Vec<(String, Vec<LabelMatcher>)> {
    let re = regex::Regex::new(r#"(journey_[a-z_]+)\{([^}]*)\}"#).unwrap();
    let m = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)""#)
        .unwrap();
    re.captures_iter(expr)
        .map(|c| {
            let matchers = m
                .captures_iter(&c[2])
                .map(|x| (x[1].to_string(), x[2].to_string(), x[3].to_string()))
                .collect();
            (c[1].to_string(), matchers)
        })
        .collect()
}

fn parse_exposition(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let l = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = line[..name_end].to_string();
            let labels = if line.as_bytes()[name_end] == b'{' {
                let end = line.find('}').unwrap();
                l.captures_iter(&line[name_end..end])
                    .map(|c| (c[1].to_string(), c[2].to_string()))
                    .collect()
            } else {
                BTreeMap::new()
            };
            (name, labels)
        })
        .collect()
}

/// Every selector of every generated rule (for the shipped journeys) matches
/// a series a running `serve` exposes: names, labels, pre-initialised
/// failure series and the `le` of every latency threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_selector_matches_what_serve_exposes() {
    let (shop, _) = demo_shop().await;
    let http_only = crate::http::tempdir();
    // `checkout` uses the `login` fragment of `shared-steps.yaml`.
    for f in [
        "account.yaml",
        "api-login.yaml",
        "checkout.yaml",
        "shared-steps.yaml",
    ] {
        std::fs::copy(root().join("journeys").join(f), http_only.join(f)).unwrap();
    }
    let out = bin().args(["rules"]).arg(&http_only).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = String::from_utf8(out.stdout).unwrap();
    let (addr, stop) = serve(vec![http_only.clone()], &shop).await;
    // Before any run: the series the rules read must already exist (at 0).
    let exposed = parse_exposition(&get(&format!("{addr}/metrics")).await.1);
    let mut checked = 0;
    for (name, matchers) in rules.lines().flat_map(selectors) {
        let found = exposed.iter().any(|(n, labels)| {
            n == &name
                && matchers.iter().all(|(k, op, v)| {
                    let have = labels.get(k).map(String::as_str).unwrap_or("");
                    match op.as_str() {
                        "=" => have == v,
                        "!=" => have != v,
                        "=~" => regex::Regex::new(&format!("^(?:{v})$"))
                            .unwrap()
                            .is_match(have),
                        _ => !regex::Regex::new(&format!("^(?:{v})$"))
                            .unwrap()
                            .is_match(have),
                    }
                })
        });
        assert!(found, "no exposed series matches {name}{matchers:?}");
        checked += 1;
    }
    assert!(checked > 50, "only {checked} selectors checked");
    assert!(
        rules.contains(r#"le="2.0""#),
        "the checkout latency SLO reads its bucket"
    );
    let _ = stop.send(());
}

/// What `wayprobe check` predicts for a total outage: "pages after N failed
/// runs (54s)" → the duration.
fn predicted_page(journeys: &std::path::Path) -> Duration {
    let out = bin().arg("check").arg(journeys).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("a single failed run does not page")
            && text.contains("in the first hour")
            && text.contains("a single failed run does not page or open a ticket"),
        "{text}"
    );
    let re = regex::Regex::new(r"a total outage pages after \d+ failed runs \(([^)]+)\)").unwrap();
    let d = re.captures(&text).unwrap_or_else(|| panic!("{text}"))[1].to_string();
    humantime::parse_duration(&d).unwrap()
}

/// The end-to-end promise, against a real Prometheus that starts empty:
/// a new journey whose first run fails raises no alert of any kind (its
/// windows count the runs they should hold, not the few they have); then a
/// total outage pages within `check`'s prediction, give or take one
/// interval, one scrape and one rule evaluation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_journey_does_not_page_on_its_first_failure_but_pages_on_an_outage() {
    if !tool("prometheus") {
        return;
    }
    let (shop_url, shop) = demo_shop().await;
    let dir = crate::http::tempdir();
    let journeys = dir.join("journeys");
    std::fs::create_dir(&journeys).unwrap();
    let interval = Duration::from_secs(3);
    std::fs::write(
        journeys.join("buy.yaml"),
        "name: buy\ninterval: 3s\ntimeout: 2500ms\nvars: {base_url: \"http://127.0.0.1:9\"}\nsteps:\n  - name: add-to-cart\n    http:\n      method: POST\n      url: \"{{ base_url }}/api/cart\"\n      json: {product_id: sku-1, qty: 1}\n    capture: {cart: {jsonpath: \"$.cart_id\"}}\n  - name: checkout\n    http:\n      method: POST\n      url: \"{{ base_url }}/api/checkout\"\n      json: {cart_id: \"{{ cart }}\"}\n    expect: {status: 200}\nslos:\n  - {name: availability, objective: 99.9%}\n",
    )
    .unwrap();
    let predicted = predicted_page(&journeys);
    let rules = dir.join("rules.yaml");
    let out = bin()
        .args([
            "rules",
            "--matcher",
            "job=\"wayprobe\"",
            "--interval",
            "1s",
            "--period-interval",
            "1m",
            "-o",
        ])
        .arg(&rules)
        .arg(&journeys)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus first, scraping an address nobody serves yet; then the
    // prober, whose first run fails slowly (2s), so Prometheus sees its
    // failure counter at 0 before the failure.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let prom = crate::support::Prometheus::start(
        &dir,
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: wayprobe\n    static_configs: [{{targets: ['{target}']}}]\n",
            rules.display()
        ),
    )
    .await;
    // Prometheus applies its targets a few seconds after it is ready.
    eventually(
        30,
        "Prometheus scraping the (not yet served) target",
        || async {
            let r = prom.query(r#"up{job="wayprobe"}"#).await?;
            (!r.is_empty()).then_some(())
        },
    )
    .await;
    shop.set_checkout_failing(true);
    shop.set_checkout_delay(Duration::from_secs(2));
    let (addr, stop) = serve_on(listener, vec![journeys.clone()], &shop_url, Some(&prom.url)).await;
    let failures = eventually(30, "the first failed run", || async {
        let m = get(&format!("{addr}/metrics")).await.1;
        let line = m
            .lines()
            .find(|l| l.starts_with("journey_runs_total{") && l.contains("result=\"failure\""))?
            .to_string();
        let n: f64 = line.rsplit(' ').next()?.parse().ok()?;
        (n >= 1.0).then_some(n)
    })
    .await;
    shop.set_checkout_failing(false);
    shop.set_checkout_delay(Duration::ZERO);
    let query = |q: &'static str| prom.query(q);
    eventually(30, "Prometheus seeing the failure counter go up", || async {
        let r = query(r#"max_over_time(journey_runs_total{job="wayprobe",result="failure"}[5m]) - min_over_time(journey_runs_total{job="wayprobe",result="failure"}[5m]) >= 1"#).await?;
        (!r.is_empty()).then_some(())
    })
    .await;
    let seen = query(r#"journey_runs_total{job="wayprobe",result="failure"}"#)
        .await
        .unwrap();
    let seen: f64 = seen[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        seen <= 2.0,
        "the first run(s) failed, not more: {seen} ({failures} at first sight)"
    );
    // Without the floor the 1h window of a new journey holds a handful of
    // runs, one failure is a ratio of 1/n, and every tier fires within a
    // minute. Now nothing may fire.
    let firing = r#"ALERTS{alertstate="firing"}"#;
    let quiet_until = Instant::now() + Duration::from_secs(90);
    while Instant::now() < quiet_until {
        // A failed query proves nothing: it must not count as "quiet".
        let r = query(firing)
            .await
            .expect("Prometheus answers the ALERTS query");
        assert!(r.is_empty(), "an alert fired after one failed run: {r:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ratio = query(r#"slo:sli_error:ratio_rate1h{sloth_slo="buy-availability"}"#)
        .await
        .unwrap();
    let ratio: f64 = ratio[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        (ratio - seen / 1200.0).abs() < 1e-9,
        "the 1h ratio counts the 1200 runs the window should hold: {ratio}"
    );

    // A total outage now pages within check's prediction, give or take one
    // interval, one scrape and one rule evaluation (plus polling).
    let page = r#"ALERTS{alertname="JourneyErrorBudgetBurn",slo_alert_tier="page-fast",alertstate="firing"}"#;
    shop.set_checkout_failing(true);
    let t0 = Instant::now();
    let slack = interval + Duration::from_secs(1 + 1 + 1);
    let alert = eventually(
        (predicted + slack).as_secs() + 5,
        "the page-fast alert",
        || async { query(page).await.and_then(|r| r.first().cloned()) },
    )
    .await;
    let took = t0.elapsed();
    assert!(
        took + slack >= predicted && took <= predicted + slack,
        "paged after {took:?}; check predicted {predicted:?} (± {slack:?})"
    );
    let labels = &alert["metric"];
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["sloth_severity"], "page");
    assert_eq!(labels["sloth_id"], "wayprobe-buy-availability");
    assert_eq!(labels["journey"], "buy");
    assert_eq!(labels["long_window"], "1h");
    assert_eq!(labels["short_window"], "5m");
    assert!(
        query(r#"ALERTS{alertname=~"JourneyRunsMissing|WayprobeDown"}"#)
            .await
            .expect("Prometheus answers the ALERTS query")
            .is_empty(),
        "the journey runs: no liveness alert"
    );
    // `--prometheus-url`: the API and the status page show the recording
    // rules' numbers and the firing alert, beside the in-process view.
    let v: serde_json::Value =
        serde_json::from_str(&get(&format!("{addr}/api/v1/journeys")).await.1).unwrap();
    assert!(v.get("prometheus_error").is_none(), "{v:#}");
    let slo = &v["journeys"][0]["slos"][0];
    let p = &slo["prometheus"];
    assert_eq!(p["source"], "prometheus", "{slo:#}");
    assert_eq!(p["firing"][0], "page-fast", "{slo:#}");
    assert!(p["error_ratio"]["1h"].as_f64().unwrap() > 0.0144, "{slo:#}");
    assert!(p["budget_remaining"].as_f64().unwrap() <= 1.0, "{slo:#}");
    assert_eq!(
        slo["would_page"], "page-fast",
        "the in-process view agrees: {slo:#}"
    );
    let page = get(&format!("{addr}/")).await.1;
    assert!(page.contains("firing: page-fast"), "{page}");
    drop(prom);
    let _ = stop.send(());
}

/// The first journey of `/api/v1/journeys` once it has `runs` runs.
async fn first_journey_after(addr: &str, runs: u64) -> serde_json::Value {
    eventually(30, &format!("{runs} runs"), || async {
        let v: serde_json::Value =
            serde_json::from_str(&get(&format!("{addr}/api/v1/journeys")).await.1).ok()?;
        let j = v["journeys"][0].clone();
        (j["runs"].as_u64()? >= runs).then_some(j)
    })
    .await
}

/// A journey whose runs pass but exceed its latency SLO's threshold shows as
/// slow (not failing, not passing) on the status page and in the API, with
/// the count of slow runs per window, the budget spent and the burn verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_runs_show_as_slow_with_their_count() {
    let (shop_url, shop) = demo_shop().await;
    shop.set_checkout_delay(Duration::from_millis(300));
    let dir = crate::http::tempdir();
    std::fs::write(
        dir.join("pay.yaml"),
        "name: pay\ninterval: 1s\ntimeout: 900ms\nvars: {base_url: \"http://127.0.0.1:9\"}\nsteps:\n  - name: add-to-cart\n    http:\n      method: POST\n      url: \"{{ base_url }}/api/cart\"\n      json: {product_id: sku-1, qty: 1}\n    capture: {cart: {jsonpath: \"$.cart_id\"}}\n  - name: checkout\n    http:\n      method: POST\n      url: \"{{ base_url }}/api/checkout\"\n      json: {cart_id: \"{{ cart }}\"}\n    expect: {status: 200}\nslos:\n  - {name: availability, objective: 99.5%}\n  - {name: latency, objective: 95%, threshold: 200ms}\n",
    )
    .unwrap();
    let (addr, stop) = serve(vec![dir.clone()], &shop_url).await;
    let api = first_journey_after(&addr, 4).await;
    assert_eq!(api["state"], "slow", "{api:#}");
    let runs = api["runs"].as_u64().unwrap();
    assert_eq!(
        api["successes"].as_u64().unwrap(),
        runs,
        "slow, not failing"
    );
    let latency = &api["slos"][1];
    assert_eq!(latency["name"], "latency");
    assert_eq!(latency["judges"], "final");
    assert!(
        latency["source"]
            .as_str()
            .unwrap()
            .starts_with("in-process since "),
        "{latency:#}"
    );
    let w5 = &latency["windows"][0];
    assert_eq!(w5["window"], "5m");
    let slow = w5["bad"].as_u64().unwrap();
    assert!(slow >= 4 && slow == w5["runs"].as_u64().unwrap(), "{w5:#}");
    assert_eq!(w5["sli"], 0.0, "no run within 200ms");
    assert!(latency["budget_spent_percent"].as_f64().unwrap() > 0.0);
    assert_eq!(api["slos"][0]["windows"][0]["bad"], 0, "none failed");
    let page = get(&format!("{addr}/")).await.1;
    assert!(page.contains("1 slow</span>"), "{page}");
    assert!(page.contains("<td class=slow>slow<br>"), "{page}");
    let re = regex::Regex::new(r"(\d+) of (\d+) slow").unwrap();
    let c = re.captures(&page).unwrap_or_else(|| panic!("{page}"));
    assert_eq!(c[1], c[2], "every run is slow: {page}");
    assert!(c[1].parse::<u64>().unwrap() >= slow);
    let _ = stop.send(());
}

/// A journey with `retries: 1` against an endpoint that fails every other
/// request: every run fails its first attempt and passes its retry. Both
/// views are recorded (first attempts and final results), the status page
/// and the API say how many runs passed only after a retry, and the
/// availability SLO (judging first attempts by default) counts the failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_pass_only_after_a_retry_are_reported() {
    let t = crate::support::target::Target::start().await;
    let dir = crate::http::tempdir();
    std::fs::write(
        dir.join("flaky.yaml"),
        "name: flaky\ninterval: 1s\ntimeout: 300ms\nretries: 1\nretry_delay: 100ms\nvars: {base_url: \"http://127.0.0.1:9\"}\nsteps:\n  - name: get\n    http: {url: \"{{ base_url }}/alternate\"}\nslos:\n  - {name: availability, objective: 99.5%}\n  - {name: after-retries, objective: 99.5%, judge: final}\n",
    )
    .unwrap();
    let (addr, stop) = serve(vec![dir.clone()], &t.base).await;
    let api = first_journey_after(&addr, 3).await;
    let runs = api["runs"].as_u64().unwrap();
    assert_eq!(api["state"], "passing", "{api:#}");
    assert_eq!(api["successes"].as_u64().unwrap(), runs);
    assert_eq!(api["passed_after_retry"].as_u64().unwrap(), runs, "{api:#}");
    assert_eq!(api["last_attempts"], 2);
    let first = &api["slos"][0];
    assert_eq!(first["judges"], "first");
    assert_eq!(
        first["bad_since_start"].as_u64().unwrap(),
        runs,
        "{first:#}"
    );
    let fin = &api["slos"][1];
    assert_eq!(fin["judges"], "final");
    assert_eq!(fin["bad_since_start"], 0, "{fin:#}");
    let metrics = get(&format!("{addr}/metrics")).await.1;
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} in\n{metrics}")) as u64
    };
    let first_failed =
        value(r#"journey_first_attempts_total{journey="flaky",location="test",result="failure"}"#);
    let final_ok = value(r#"journey_runs_total{journey="flaky",location="test",result="success"}"#);
    assert!(first_failed >= runs && final_ok >= runs, "{metrics}");
    assert_eq!(
        value(r#"journey_runs_total{journey="flaky",location="test",result="failure"}"#),
        0
    );
    let page = get(&format!("{addr}/")).await.1;
    assert!(page.contains("passed only after a retry"), "{page}");
    // The rules of the first-attempt SLO read the first attempts.
    let out = bin().args(["rules"]).arg(&dir).output().unwrap();
    let rules = String::from_utf8(out.stdout).unwrap();
    assert!(rules.contains(r#"journey_first_attempts_total{journey="flaky",result="failure"}"#));
    assert!(rules.contains(r#"slo_judges: "final""#), "{rules}");
    let _ = stop.send(());
}
