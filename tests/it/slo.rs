//! SLO rules against the real prober: every selector of the generated rules
//! matches series that `serve` exposes, and a real Prometheus evaluating them
//! pages on a checkout outage within the Workbook's bound.

use std::collections::BTreeMap;

use wayprobe::journey::LoadOptions;
use wayprobe::serve::{ServeConfig, Source};

use crate::support::{bin, demo_shop, eventually, get, root, tool};

/// Starts `serve` in-process over `paths`; returns its base URL and a stopper.
async fn serve(
    paths: Vec<std::path::PathBuf>,
    base_url: &str,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let runner = crate::support::shop_runner();
    let mut cfg = ServeConfig::new(
        Source::Paths {
            paths,
            opts: LoadOptions {
                vars: [("base_url".to_string(), base_url.to_string())].into(),
            },
        },
        runner,
    );
    cfg.location = "test".into();
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
    for f in ["account.yaml", "api-login.yaml", "checkout.yaml"] {
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

/// The end-to-end promise: `serve` probes the demo shop every second, a real
/// Prometheus scrapes it and evaluates the generated rules, checkout breaks,
/// and the page-fast alert fires when the Workbook says it must, no earlier
/// and no later.
///
/// The Workbook's page-fast condition is an error ratio above 14.4 × (1 −
/// SLO) over 1h and 5m. Here both windows hold the whole history: `H` healthy
/// runs, then `F` failed ones, so it pages at the first `F` with
/// F / (H + F) > 14.4 × (1 − SLO), i.e. 14.4 × (1 − SLO) × window, the
/// Workbook's detection time, with the window as long as the history. At 99%
/// (0.144) and ~30 healthy runs that is the 6th failed run: a threshold,
/// window or ratio that is off fires at another run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_outage_pages_within_the_workbook_bound() {
    if !tool("prometheus") {
        return;
    }
    let (shop_url, shop) = demo_shop().await;
    let dir = crate::http::tempdir();
    let journeys = dir.join("journeys");
    std::fs::create_dir(&journeys).unwrap();
    std::fs::write(
        journeys.join("buy.yaml"),
        "name: buy\ninterval: 1s\ntimeout: 900ms\nvars: {base_url: \"http://127.0.0.1:9\"}\nsteps:\n  - name: add-to-cart\n    http:\n      method: POST\n      url: \"{{ base_url }}/api/cart\"\n      json: {product_id: sku-1, qty: 1}\n    capture: {cart: {jsonpath: \"$.cart_id\"}}\n  - name: checkout\n    http:\n      method: POST\n      url: \"{{ base_url }}/api/checkout\"\n      json: {cart_id: \"{{ cart }}\"}\n    expect: {status: 200}\nslos:\n  - {name: availability, objective: 99%}\n",
    )
    .unwrap();
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

    let (addr, stop) = serve(vec![journeys.clone()], &shop_url).await;
    let target = addr.trim_start_matches("http://").to_string();
    let prom = crate::support::Prometheus::start(
        &dir,
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: wayprobe\n    static_configs: [{{targets: ['{target}']}}]\n",
            rules.display()
        ),
    )
    .await;
    let query = |q: &'static str| prom.query(q);
    let page = r#"ALERTS{alertname="JourneyErrorBudgetBurn",slo_alert_tier="page-fast",alertstate="firing"}"#;
    // A healthy history first: no page while checkout works.
    eventually(90, "35 successful runs in Prometheus", || async {
        let r = query(r#"journey_runs_total{job="wayprobe",journey="buy",result="success"} >= 35"#)
            .await?;
        (!r.is_empty()).then_some(())
    })
    .await;
    let firing = query(page).await.expect("the ALERTS query runs");
    assert!(firing.is_empty(), "paged while healthy: {firing:?}");
    let ratio = query(r#"slo:sli_error:ratio_rate5m{sloth_slo="buy-availability"}"#)
        .await
        .expect("the ratio query runs");
    assert_eq!(ratio[0]["value"][1], "0", "{ratio:?}");

    shop.set_checkout_failing(true);
    let alert = eventually(120, "the page-fast alert", || async {
        query(page).await.and_then(|r| r.first().cloned())
    })
    .await;
    let labels = &alert["metric"];
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["sloth_severity"], "page");
    assert_eq!(labels["sloth_id"], "wayprobe-buy-availability");
    assert_eq!(labels["journey"], "buy");
    assert_eq!(labels["long_window"], "1h");
    assert_eq!(labels["short_window"], "5m");

    // What Prometheus had scraped when the alert became active.
    let active_at = active_at(&prom, "page-fast").await;
    let samples = |result: &str| {
        let q =
            format!(r#"journey_runs_total{{job="wayprobe",journey="buy",result="{result}"}}[1h]"#);
        let (prom, at) = (&prom, active_at.clone());
        async move {
            let v = prom
                .api("query", &[("query", q.as_str()), ("time", at.as_str())])
                .await;
            let values = v["data"]["result"][0]["values"].as_array().cloned();
            let values = values.unwrap_or_else(|| panic!("no samples of {q}: {v}"));
            let n = |i: usize| values[i][1].as_str().unwrap().parse::<f64>().unwrap();
            (n(0), n(values.len() - 1))
        }
    };
    let (s0, s1) = samples("success").await;
    let (f0, f1) = samples("failure").await;
    let (healthy, failed) = (s1 - s0, f1 - f0);
    let threshold = 14.4 * (1.0 - 0.99);
    // The first failed run at which F / (H + F) exceeds the threshold.
    let first = (1..)
        .map(f64::from)
        .find(|f| f / (healthy + f) > threshold)
        .unwrap();
    eprintln!("paged at failed run {failed} after {healthy} healthy runs; Workbook: run {first}");
    // One scrape and one evaluation may pass between that run and the
    // evaluation that fires, each adding at most one run.
    assert!(
        failed >= first && failed <= first + 2.0,
        "paged at failed run {failed} after {healthy} healthy ones; the Workbook says run {first} \
         (up to 2 more for one scrape and one evaluation)"
    );
    drop(prom);
    let _ = stop.send(());
}

/// `activeAt` (RFC 3339) of the firing `JourneyErrorBudgetBurn` alert of `tier`.
async fn active_at(prom: &crate::support::Prometheus, tier: &str) -> String {
    let v = prom.api("alerts", &[]).await;
    v["data"]["alerts"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|x| {
                x["labels"]["slo_alert_tier"] == tier
                    && x["labels"]["alertname"] == "JourneyErrorBudgetBurn"
            })
        })
        .and_then(|x| x["activeAt"].as_str())
        .unwrap_or_else(|| panic!("no active {tier} alert: {v}"))
        .to_string()
}
