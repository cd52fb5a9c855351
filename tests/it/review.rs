//! `wayprobe slo review` (and the journey report) against a real Prometheus
//! whose TSDB holds a known synthetic history, backfilled with
//! `promtool tsdb create-blocks-from openmetrics` under the series names and
//! labels `serve` exports (tests/golden/metrics). The pages each candidate
//! objective would have raised are held against `promtool test rules` over
//! the same series and the rules `wayprobe rules` generates.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Prometheus, bin, tool};

/// Minutes of history (one run a minute, run `k` ends at minute `k`).
pub const MINUTES: u64 = 720;
/// Where the history starts: a whole minute in the past.
pub const T0: &str = "2026-11-02T00:00:00Z";

/// A step failure: which step, and its bounded reason.
#[derive(Clone, Copy)]
pub struct Fail {
    pub step: &'static str,
    pub reason: &'static str,
}

/// The known pattern: what happened to run `k`.
pub fn failure(k: u64) -> Option<Fail> {
    match k {
        // Flaky for 6h: every 20th run times out on the home page.
        60..=419 if k.is_multiple_of(20) => Some(Fail {
            step: "home",
            reason: "timeout",
        }),
        // A real outage: 20 minutes of payment errors.
        480..=499 => Some(Fail {
            step: "pay",
            reason: "status",
        }),
        // A blip: two failed runs in a row.
        30 | 31 => Some(Fail {
            step: "pay",
            reason: "timeout",
        }),
        _ => None,
    }
}

/// Whether successful run `k` was slower than 2s.
pub fn slow(k: u64) -> bool {
    (620..=679).contains(&k) && k % 2 == 1 && failure(k).is_none()
}

pub fn t0() -> u64 {
    humantime::parse_rfc3339(T0)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const LABELS: &str = r#"instance="wayprobe:9469",job="wayprobe",journey="shop",location="test""#;

/// Every input series as `(series, value at each minute 0..=MINUTES)`.
pub fn series() -> Vec<(String, Vec<f64>)> {
    let mut fail = vec![0.0];
    let mut ok = vec![0.0];
    let mut fast = vec![0.0];
    let mut dur_sum = vec![0.0];
    // Step durations: home 0.2s, pay 0.3s (2.8s in the slow hour); a
    // failed run stops at its failing step.
    let mut step_sum: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("home", vec![0.0], vec![0.0]),
        ("pay", vec![0.0], vec![0.0]),
    ];
    let mut step_fail: Vec<((&str, &str), Vec<f64>)> =
        [("home", "timeout"), ("pay", "status"), ("pay", "timeout")]
            .into_iter()
            .map(|k| (k, vec![0.0]))
            .collect();
    for k in 1..=MINUTES {
        let f = failure(k);
        fail.push(fail[k as usize - 1] + f64::from(f.is_some()));
        ok.push(ok[k as usize - 1] + f64::from(f.is_none()));
        fast.push(fast[k as usize - 1] + f64::from(f.is_none() && !slow(k)));
        dur_sum.push(dur_sum[k as usize - 1] + if slow(k) { 3.0 } else { 0.5 });
        for (step, sum, count) in step_sum.iter_mut() {
            let ran = *step == "home" || f.is_none_or(|f| f.step == "pay");
            let d = match (*step, slow(k)) {
                ("home", _) => 0.2,
                (_, true) => 2.8,
                _ => 0.3,
            };
            let (ls, lc) = (sum[k as usize - 1], count[k as usize - 1]);
            sum.push(if ran { ls + d } else { ls });
            count.push(if ran { lc + 1.0 } else { lc });
        }
        for ((step, reason), v) in step_fail.iter_mut() {
            let hit = f.is_some_and(|f| f.step == *step && f.reason == *reason);
            v.push(v[k as usize - 1] + f64::from(hit));
        }
    }
    let mut out = vec![
        (
            format!(r#"journey_runs_total{{{LABELS},result="failure"}}"#),
            fail,
        ),
        (
            format!(r#"journey_runs_total{{{LABELS},result="success"}}"#),
            ok.clone(),
        ),
        (
            format!(r#"journey_duration_seconds_bucket{{{LABELS},result="success",le="2.0"}}"#),
            fast,
        ),
        (
            format!(r#"journey_duration_seconds_bucket{{{LABELS},result="success",le="+Inf"}}"#),
            ok.clone(),
        ),
        (
            format!(r#"journey_duration_seconds_count{{{LABELS},result="success"}}"#),
            ok,
        ),
        (
            format!(r#"journey_duration_seconds_sum{{{LABELS},result="success"}}"#),
            dur_sum,
        ),
    ];
    for (step, sum, count) in step_sum {
        out.push((
            format!(r#"journey_step_duration_seconds_sum{{{LABELS},step="{step}"}}"#),
            sum,
        ));
        out.push((
            format!(r#"journey_step_duration_seconds_count{{{LABELS},step="{step}"}}"#),
            count,
        ));
    }
    for ((step, reason), v) in step_fail {
        out.push((
            format!(r#"journey_step_failures_total{{{LABELS},step="{step}",reason="{reason}"}}"#),
            v,
        ));
    }
    out
}

/// The history as OpenMetrics text with timestamps, for `promtool tsdb
/// create-blocks-from openmetrics`.
fn openmetrics() -> String {
    let t0 = t0();
    let mut out = String::new();
    let mut typed = BTreeSet::new();
    for (s, values) in series() {
        let family = s.split('{').next().unwrap();
        let (fam, ty) = if let Some(f) = family.strip_suffix("_total") {
            (f, "counter")
        } else if let Some(f) = family
            .strip_suffix("_bucket")
            .or_else(|| family.strip_suffix("_count"))
            .or_else(|| family.strip_suffix("_sum"))
        {
            (f, "histogram")
        } else {
            (family, "gauge")
        };
        if typed.insert(fam.to_string()) {
            let _ = writeln!(out, "# TYPE {fam} {ty}");
        }
        for (m, v) in values.iter().enumerate() {
            let _ = writeln!(out, "{s} {v} {}", t0 + 60 * m as u64);
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A journey file for the `shop` journey with these SLOs.
pub fn journey_yaml(slos: &str) -> String {
    format!(
        "name: shop\ninterval: 60s\ntimeout: 30s\nsteps:\n  - name: home\n    http: {{url: \"https://shop.example.com/\"}}\n  - name: pay\n    http: {{url: \"https://shop.example.com/pay\"}}\nslos:\n{slos}"
    )
}

const SLOS: &str = "  - {name: availability, objective: 99.5%}\n  - {name: latency, objective: 95%, threshold: 2s}\n";

/// A Prometheus whose TSDB holds [`series`]; `None` when a tool is missing.
pub async fn history_prometheus(dir: &Path) -> Option<Prometheus> {
    if !tool("promtool") || !tool("prometheus") {
        return None;
    }
    let om = dir.join("history.om");
    std::fs::write(&om, openmetrics()).unwrap();
    // `Prometheus::start_with` may retry on data-1 and data-2.
    for attempt in 0..3 {
        let data = dir.join(format!("data-{attempt}"));
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backfill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = "global:\n  scrape_interval: 1m\n";
    Some(Prometheus::start_with(dir, config, &["--storage.tsdb.retention.time=100y"]).await)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn until() -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t0() + 60 * MINUTES),
    )
    .to_string()
}

/// Runs `wayprobe slo review` over the history; its output.
fn review_as(journeys: &Path, url: &str, format: &str) -> String {
    let out = bin()
        .args(["slo", "review"])
        .arg(journeys)
        .args(["--prometheus-url", url, "--since", "12h", "--until"])
        .arg(until())
        .args(["--interval", "1m", "--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slo review failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// [`review_as`] JSON.
fn review(journeys: &Path, url: &str) -> serde_json::Value {
    serde_json::from_str(&review_as(journeys, url, "json")).unwrap()
}

fn slo<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slo"] == name)
        .unwrap_or_else(|| panic!("no SLO {name} in {r:#}"))
}

/// The counts of one window ending at the last minute: `(runs, bad)`.
fn counts(window_min: u64, latency: bool) -> (f64, f64) {
    let from = MINUTES.saturating_sub(window_min) + 1;
    let (mut runs, mut bad) = (0.0, 0.0);
    for k in from.max(1)..=MINUTES {
        let failed = failure(k).is_some();
        if latency {
            runs += f64::from(!failed);
            bad += f64::from(slow(k));
        } else {
            runs += 1.0;
            bad += f64::from(failed);
        }
    }
    (runs, bad)
}

#[tokio::test]
async fn review_replays_the_rules_as_promtool_does() {
    let dir = crate::http::tempdir();
    let Some(prom) = history_prometheus(&dir).await else {
        return;
    };
    let journeys = write(&dir, "shop.yaml", &journey_yaml(SLOS));
    let r = review(&journeys, &prom.url);
    assert_eq!(r["source"], "prometheus");

    // The exact achieved SLI (12h of history: every window holds all runs).
    for (name, latency) in [("availability", false), ("latency", true)] {
        let s = slo(&r, name);
        for (i, (w, minutes)) in [("1d", 1440), ("7d", 7 * 1440), ("28d", 28 * 1440)]
            .into_iter()
            .enumerate()
        {
            let (runs, bad) = counts(minutes, latency);
            let a = &s["achieved"][i];
            assert_eq!(a["window"], w);
            assert_eq!(a["runs"].as_f64(), Some(runs), "{name} {w}: {a}");
            assert_eq!(a["bad"].as_f64(), Some(bad), "{name} {w}: {a}");
            // Exact counts; the ratio to the last bit but one (serde_json's
            // default float parsing may round the printed value 1 ulp off).
            let sli = a["sli"].as_f64().unwrap();
            assert!(
                (sli - (1.0 - bad / runs)).abs() <= 2.0 * f64::EPSILON,
                "{name} {w}: {a}"
            );
        }
    }
    let avail = slo(&r, "availability");
    let (_, bad) = counts(MINUTES, false);
    // The period ratio counts at least the 30d's 43200 runs.
    let spent = avail["budget_spent_percent"].as_f64().unwrap();
    assert!(
        (spent - bad / 43200.0 / 0.005 * 100.0).abs() < 1e-12,
        "{spent}"
    );
    // The outage: from the 3rd failed run of five (minute 482) to the last
    // 5 minutes holding three (minute 501).
    let at = |m: u64| t0() as f64 + 60.0 * m as f64;
    assert_eq!(avail["incidents"].as_array().unwrap().len(), 1, "{avail:#}");
    assert_eq!(avail["incidents"][0]["start_unix"].as_f64(), Some(at(482)));
    assert_eq!(avail["incidents"][0]["end_unix"].as_f64(), Some(at(501)));

    // The flaky hours page at 99.5% but not at 99%, where the only page is
    // the outage's: 99% is the suggestion.
    let cand = |o: &str| {
        avail["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["objective_percent"] == o)
            .unwrap()
            .clone()
    };
    assert_eq!(cand("99")["pages"], 1, "{avail:#}");
    assert_eq!(cand("99")["pages_outside_incidents"], 0, "{avail:#}");
    assert_eq!(cand("99.5")["current"], true);
    let flaky_page = cand("99.5")["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["severity"] == "page" && e["during_incident"] == false)
        .cloned()
        .unwrap_or_else(|| panic!("99.5% pages on the flaky hours: {avail:#}"));
    let t = flaky_page["start_unix"].as_f64().unwrap();
    assert!(t > at(60) && t < at(420), "{flaky_page}");
    assert_eq!(avail["suggestion"]["objective_percent"], "99", "{avail:#}");
    let text = review_as(&journeys, &prom.url, "text");
    assert!(
        text.contains("shop / availability: 99.5% of runs succeed over 30d"),
        "{text}"
    );
    assert!(
        text.contains("  suggestion: 99%: 99% is the tightest objective"),
        "{text}"
    );
    assert!(text.contains("  99.5% *"), "{text}");

    // promtool over the same series, with the rules of every candidate
    // objective (one SLO each), counts the same pages and tickets.
    let mut ladder = String::new();
    let mut expected = Vec::new();
    for (name, kind) in [("availability", ""), ("latency", ", threshold: 2s")] {
        for c in slo(&r, name)["candidates"].as_array().unwrap() {
            let o = c["objective_percent"].as_str().unwrap();
            let id = format!("{}{}", &name[..1], o.replace('.', "_"));
            let _ = writeln!(ladder, "  - {{name: {id}, objective: {o}%{kind}}}");
            for sev in ["page", "ticket"] {
                let n = c[format!("{sev}s")].as_u64().unwrap();
                expected.push((format!("wayprobe-shop-{id}"), sev, n));
            }
        }
    }
    let ladder_file = write(&dir, "ladder.yaml", &journey_yaml(&ladder));
    let rules = bin()
        .arg("rules")
        .arg(&ladder_file)
        .args(["--interval", "1m", "-o"])
        .arg(dir.join("ladder.rules.yaml"))
        .output()
        .unwrap();
    assert!(
        rules.status.success(),
        "{}",
        String::from_utf8_lossy(&rules.stderr)
    );
    let mut test = "rule_files: [ladder.rules.yaml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n".to_string();
    for (s, values) in series() {
        let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let _ = writeln!(
            test,
            "      - series: '{s}'\n        values: '{}'",
            v.join(" ")
        );
    }
    test.push_str("    promql_expr_test:\n");
    for (id, sev, n) in &expected {
        // Rising edges of "some alert of this severity fires", each 1.
        let sel =
            format!("ALERTS{{alertstate=\"firing\",sloth_id=\"{id}\",sloth_severity=\"{sev}\"}}");
        let _ = writeln!(
            test,
            "      - expr: 'sum_over_time(clamp_max(count({sel}) unless count({sel} offset 1m), 1)[{MINUTES}m:1m]) or vector(0)'\n        eval_time: {MINUTES}m\n        exp_samples:\n          - labels: '{{}}'\n            value: {n}"
        );
    }
    write(&dir, "ladder.test.yaml", &test);
    // The period groups only record the budget, which no alert reads:
    // leaving them out halves promtool's work.
    let rules = std::fs::read_to_string(dir.join("ladder.rules.yaml")).unwrap();
    let (head, groups) = rules.split_once("groups:\n").unwrap();
    let mut parts: Vec<String> = Vec::new();
    for line in groups.split_inclusive('\n') {
        if line.starts_with("- name: ") || parts.is_empty() {
            parts.push(String::new());
        }
        parts.last_mut().unwrap().push_str(line);
    }
    let kept: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|g| !g.starts_with("- name: slo-period-"))
        .collect();
    assert!(kept.len() >= 8, "{rules}");
    write(
        &dir,
        "ladder.rules.yaml",
        &format!("{head}groups:\n{}", kept.concat()),
    );
    let out = Command::new("promtool")
        .current_dir(&dir)
        .args(["test", "rules", "ladder.test.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool disagrees with slo review:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `wayprobe report` over the history (the rules' default interval).
fn report(journeys: &Path, url: &str, format: &str) -> String {
    let out = bin()
        .arg("report")
        .arg(journeys)
        .args(["--prometheus-url", url, "--period", "day", "--until"])
        .arg(until())
        .args(["--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The journey report over the same history: the outage and the flaky
/// hours as incidents at their times with their step and reason, in
/// Markdown and JSON (golden files), and the same report served by `serve`
/// at `/report` under the status page's security headers.
#[tokio::test]
async fn the_report_shows_the_incidents_at_their_times() {
    let dir = crate::http::tempdir();
    let Some(prom) = history_prometheus(&dir).await else {
        return;
    };
    let journeys = write(&dir, "shop.yaml", &journey_yaml(SLOS));
    let json = report(&journeys, &prom.url, "json");
    crate::support::golden::assert_golden("report/shop-day.json", &json);
    let md = report(&journeys, &prom.url, "markdown");
    crate::support::golden::assert_golden("report/shop-day.md", &md);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let shop = &v["journeys"][0];
    let incidents = shop["incidents"].as_array().unwrap();
    let at = |m: u64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t0() + 60 * m),
        )
        .to_string()
    };
    // The outage (runs 480..=499 fail at `pay` with `status`) pages within it.
    let outage = incidents
        .iter()
        .find(|i| i["slo"] == "availability" && i["severity"] == "page" && i["reason"] == "status")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(outage["step"], "pay");
    let start = outage["start"].as_str().unwrap();
    assert!(
        start >= at(480).as_str() && start <= at(499).as_str(),
        "{outage}"
    );
    // The flaky hours (every 20th run of 60..=419 times out at `home`).
    let flaky = incidents
        .iter()
        .find(|i| i["slo"] == "availability" && i["reason"] == "timeout" && i["step"] == "home")
        .unwrap_or_else(|| panic!("{json}"));
    let start = flaky["start"].as_str().unwrap();
    assert!(
        start > at(60).as_str() && start < at(420).as_str(),
        "{flaky}"
    );
    assert_eq!(shop["slowest_step"]["step"], "pay", "{json}");

    // `serve --prometheus-url` serves the same report.
    let port = crate::support::free_port();
    let mut child = bin()
        .args(["serve", "--journeys"])
        .arg(&journeys)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--prometheus-url",
            &prom.url,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let served = crate::support::eventually(30, "serve's /report", || async {
        let r = crate::support::client()
            .get(format!(
                "{base}/report?period=day&format=json&until={}",
                until()
            ))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await;
    let html = crate::support::client()
        .get(format!("{base}/report?period=day&until={}", until()))
        .send()
        .await
        .unwrap();
    let headers = html.headers().clone();
    let page = html.text().await.unwrap();
    let bad = crate::support::client()
        .get(format!("{base}/report?period=year"))
        .send()
        .await
        .unwrap();
    #[cfg(feature = "browser")]
    let browser = read_in_browser(&format!("{base}/report?period=day&until={}", until())).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(served, json, "serve's /report and `wayprobe report` agree");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"),
        "{headers:?}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("class=incident"), "{page}");
    assert!(page.contains("worked for"), "{page}");
    assert_eq!(bad.status(), 400);
    #[cfg(feature = "browser")]
    if let Some((texts, severe)) = browser {
        assert!(severe.is_empty(), "console errors: {severe:?}");
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(
            texts[0].contains("shop worked for 94.44% of checks"),
            "{texts:?}"
        );
        assert!(texts[2].contains("status"), "{texts:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The browser log, through chromedriver's log endpoint (not in W3C
/// WebDriver, so not in fantoccini).
#[cfg(feature = "browser")]
#[derive(Debug)]
struct BrowserLog;

#[cfg(feature = "browser")]
impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Reads `url` in headless Chromium with JavaScript off: the texts of the
/// availability sentence and of each incident row, and the console's
/// SEVERE entries. `None` when there is no browser (a skip).
#[cfg(feature = "browser")]
async fn read_in_browser(url: &str) -> Option<(Vec<String>, Vec<String>)> {
    use fantoccini::Locator;
    if !tool("chromedriver") || !tool("chromium") {
        return None;
    }
    let _serial = crate::browser::SERIAL.lock().await;
    let port = crate::support::free_port();
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wd = format!("http://127.0.0.1:{port}");
    crate::support::eventually(20, "chromedriver", || async {
        crate::support::client()
            .get(format!("{wd}/status"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--blink-settings=scriptEnabled=false"
        ]},
    });
    let mut b =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    b.capabilities(caps.as_object().cloned().unwrap());
    let c = b.connect(&wd).await.expect("a browser session");
    c.goto(url).await.unwrap();
    let mut texts = vec![
        c.find(Locator::Css("p.slo[data-slo=availability]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    ];
    for row in c.find_all(Locator::Css("tr.incident")).await.unwrap() {
        texts.push(row.text().await.unwrap());
    }
    let log = c.issue_cmd(BrowserLog).await.unwrap();
    let severe: Vec<String> = log
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].to_string())
        .collect();
    let _ = c.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
    Some((texts, severe))
}

/// Without Prometheus: `slo review --serve-url` and `/report` show what a
/// running `serve` counted since it started, and say so; with neither URL,
/// `slo review` is a usage error that names both.
#[tokio::test]
async fn without_prometheus_the_in_process_numbers_are_labelled() {
    let t = crate::support::target::Target::start().await;
    let dir = crate::http::tempdir();
    let journeys = write(
        &dir,
        "ok.yaml",
        &format!(
            "name: ok\ninterval: 1s\ntimeout: 900ms\nsteps:\n  - name: get\n    http: {{url: \"{}/ok\"}}\nslos:\n  - {{name: availability, objective: 99%}}\n",
            t.base
        ),
    );
    let none = bin()
        .args(["slo", "review"])
        .arg(&journeys)
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.contains("--prometheus-url") && err.contains("--serve-url"),
        "{err}"
    );
    let port = crate::support::free_port();
    let mut child = bin()
        .args(["serve", "--journeys"])
        .arg(&journeys)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let text = crate::support::eventually(30, "two runs counted", || async {
        let out = bin()
            .args(["slo", "review"])
            .arg(&journeys)
            .args(["--serve-url", &base])
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.contains("of 0 runs") && !text.contains("of 1 runs"))
            .then_some(text)
    })
    .await;
    let report = crate::support::client()
        .get(format!("{base}/report?format=markdown"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("from a running serve's memory"), "{text}");
    assert!(text.contains("ok / availability: objective 99%"), "{text}");
    assert!(text.contains("since start: 0 of "), "{text}");
    assert!(
        report.contains("Numbers from this prober's memory since"),
        "{report}"
    );
    assert!(
        report.contains("ok worked for 100% of checks since this prober started (target 99%)"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
