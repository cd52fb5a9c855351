//! `serve --shard I/N` with real parts: `wayprobe serve` processes over one
//! journeys directory against the in-process target, one real Prometheus
//! scraping them and evaluating the generated rules.
//!
//! What takes minutes of Prometheus time (a dead shard's liveness alert
//! firing after its `for:`, pages and location tickets) is proven on the same
//! rules by promtool in `fleet.rs`; here Prometheus evaluates for seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Stdio};

use wayprobe::shard::owner;

use crate::support::target::Target;
use crate::support::{bin, eventually, free_port, get, tool};

/// A `wayprobe serve` process, killed on drop.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    async fn start(journeys: &Path, port: u16, shard: &str, who: &str, base: &str) -> Serve {
        let s = Self::spawn(journeys, port, shard, who, base);
        s.ready().await;
        s
    }

    /// Starts the process without waiting for it.
    fn spawn(journeys: &Path, port: u16, shard: &str, who: &str, base: &str) -> Serve {
        Self::spawn_with(
            journeys,
            port,
            &[
                "--shard",
                shard,
                "--location",
                "test",
                "--var",
                &format!("who={who}"),
            ],
            base,
        )
    }

    /// Starts `serve` with `args` besides the journeys, address and target.
    fn spawn_with(journeys: &Path, port: u16, args: &[&str], base: &str) -> Serve {
        let child = bin()
            .args(["serve", "--journeys"])
            .arg(journeys)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--watch-interval",
                "0s",
                "--var",
                &format!("base_url={base}"),
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wayprobe serve starts");
        let url = format!("http://127.0.0.1:{port}");
        Serve { child, url }
    }

    async fn ready(&self) {
        eventually(30, &format!("{} ready", self.url), || async {
            let r = crate::support::client()
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }
}

const JOURNEYS: usize = 30;

fn name(i: usize) -> String {
    format!("j{i:02}")
}

/// Every third journey fails (HTTP 500), the rest pass.
fn failing(i: usize) -> bool {
    i.is_multiple_of(3)
}

fn write_journeys(dir: &Path) {
    for i in 0..JOURNEYS {
        let code = if failing(i) { 500 } else { 200 };
        std::fs::write(
            dir.join(format!("{}.yaml", name(i))),
            format!(
                "name: {n}\ninterval: 1s\ntimeout: 900ms\nvars: {{base_url: \"http://127.0.0.1:9\", who: none}}\nsteps:\n  - name: get\n    http: {{url: \"{{{{ base_url }}}}/status/{code}?j={n}&by={{{{ who }}}}\"}}\nslos:\n  - {{name: availability, objective: 99.5%}}\n",
                n = name(i)
            ),
        )
        .unwrap();
    }
}

/// Which `who`s requested each journey so far (the target's request log).
fn runners(target: &Target, whos: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    (0..JOURNEYS)
        .map(|i| {
            let code = if failing(i) { 500 } else { 200 };
            let by = whos
                .iter()
                .filter(|w| target.hits(&format!("/status/{code}?j={}&by={w}", name(i))) > 0)
                .map(|w| w.to_string())
                .collect();
            (name(i), by)
        })
        .collect()
}

/// `{journey: value}` of an instant query's vector.
async fn by_journey(prom: &crate::support::Prometheus, q: &str) -> Option<BTreeMap<String, f64>> {
    let r = prom.query(q).await?;
    Some(
        r.iter()
            .map(|s| {
                (
                    s["metric"]["journey"].as_str().unwrap_or("").to_string(),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect(),
    )
}

fn rules(dir: &Path, journeys: &Path, service: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{service}.rules.yaml"));
    let o = bin()
        .args(["rules", "--service", service, "--matcher"])
        .arg(format!("job=\"{service}\""))
        .args(["--interval", "1s", "--period-interval", "1m", "-o"])
        .arg(&out)
        .arg(journeys)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The target, a temporary directory and its empty `journeys` directory;
/// `None` when Prometheus is missing (the test skips).
async fn setup() -> Option<(Target, std::path::PathBuf, std::path::PathBuf)> {
    if !tool("prometheus") {
        return None;
    }
    let target = Target::start().await;
    let dir = crate::http::tempdir();
    let journeys = dir.join("journeys");
    std::fs::create_dir(&journeys).unwrap();
    Some((target, dir, journeys))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_processes_run_each_journey_once_and_agree_with_one_process() {
    let Some((target, dir, journeys)) = setup().await else {
        return;
    };
    write_journeys(&journeys);

    // `check --shards 3` tells the same assignment the processes use.
    let o = bin()
        .args(["check", "--quiet", "--shards", "3"])
        .arg(&journeys)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{text}");
    for s in 0..3u32 {
        let n = (0..JOURNEYS).filter(|&i| owner(&name(i), 3) == s).count();
        let rps = format!("{:.3} runs/s", n as f64);
        assert!(
            text.contains(&format!("shard {s}/3: {n:>5} journeys, {rps}")),
            "shard {s} has {n} journeys:\n{text}"
        );
    }
    assert!(text.contains("balance: the busiest shard makes"), "{text}");

    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let sharded: Vec<String> = ports[..4]
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    let prom = crate::support::Prometheus::start(
        &dir,
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}', '{}']\nscrape_configs:\n  - job_name: sharded\n    static_configs: [{{targets: [{}]}}]\n  - job_name: single\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            rules(&dir, &journeys, "sharded").display(),
            rules(&dir, &journeys, "single").display(),
            sharded.join(", "),
            ports[4],
        ),
    )
    .await;
    // All four start at once, so their SLIs cover the same runs.
    let mut shards = Vec::new();
    for (s, port) in ports[..3].iter().enumerate() {
        shards.push(Some(Serve::spawn(
            &journeys,
            *port,
            &format!("{s}/3"),
            &s.to_string(),
            &target.base,
        )));
    }
    let single = Serve::spawn(&journeys, ports[4], "0/1", "all", &target.base);
    for s in shards.iter().flatten().chain([&single]) {
        s.ready().await;
    }

    // Each journey is run by exactly one shard, the one rendezvous hashing names.
    let whos = ["0", "1", "2"];
    let seen = eventually(30, "every journey run", || async {
        let r = runners(&target, &whos);
        r.values().all(|by| !by.is_empty()).then_some(r)
    })
    .await;
    for (j, by) in &seen {
        let want = owner(j, 3).to_string();
        assert_eq!(
            by,
            &BTreeSet::from([want]),
            "journey {j} was run by shards {by:?}"
        );
    }
    eventually(
        30,
        "the unsharded process running every journey",
        || async {
            runners(&target, &["all"])
                .values()
                .all(|by| by.len() == 1)
                .then_some(())
        },
    )
    .await;

    // Status page and API of shard 0 say what it runs and skips.
    let mine: BTreeSet<String> = (0..JOURNEYS)
        .map(name)
        .filter(|j| owner(j, 3) == 0)
        .collect();
    let shard0 = shards[0].as_ref().unwrap().url.clone();
    let api: serde_json::Value =
        serde_json::from_str(&get(&format!("{shard0}/api/v1/journeys")).await.1).unwrap();
    assert_eq!(api["shard"]["index"], 0);
    assert_eq!(api["shard"]["count"], 3);
    let listed: BTreeSet<String> = api["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, mine);
    let skipped: BTreeSet<String> = api["shard"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap().to_string())
        .collect();
    assert_eq!(skipped.len() + mine.len(), JOURNEYS);
    assert!(skipped.is_disjoint(&mine));
    let page = get(&format!("{shard0}/")).await.1;
    assert!(
        page.contains(&format!(
            "Shard <code>0/3</code>: runs {} journeys; {} skipped",
            mine.len(),
            skipped.len()
        )),
        "{page}"
    );

    // The recorded SLIs of the three shards equal those of the single
    // process, to within the few runs their start and scrape phases differ
    // by (of the 300 runs the 5m window expects), and never count more
    // failed runs than the target served 500s to the owning shard.
    let q = |svc: &str| format!("slo:sli_error:ratio_rate5m{{sloth_service=\"{svc}\"}}");
    let (a, b) = eventually(30, "SLIs of all 30 journeys, both ways", || async {
        let a = by_journey(&prom, &q("sharded")).await?;
        let b = by_journey(&prom, &q("single")).await?;
        let ready = |m: &BTreeMap<String, f64>| {
            m.len() == JOURNEYS
                && (0..JOURNEYS)
                    .filter(|&i| failing(i))
                    .all(|i| m[&name(i)] >= 5.0 / 300.0)
        };
        (ready(&a) && ready(&b)).then_some((a, b))
    })
    .await;
    // (A passing journey's run may time out on a loaded machine: that is a
    // real failure, counted alike whichever process sees it.)
    for i in 0..JOURNEYS {
        let j = name(i);
        assert!(
            (a[&j] - b[&j]).abs() <= 4.0 / 300.0,
            "{j}: sharded {} vs single {}",
            a[&j],
            b[&j]
        );
    }
    for i in (0..JOURNEYS).filter(|&i| failing(i)) {
        let j = name(i);
        let served = target.hits(&format!("/status/500?j={j}&by={}", owner(&j, 3)));
        assert!(
            (a[&j] * 300.0).round() as u64 <= served,
            "{j}: the rules count {} failed runs, the shard made {served}",
            a[&j] * 300.0
        );
    }
    let passing = |m: &BTreeMap<String, f64>| m.values().filter(|&&v| v < 3.0 / 300.0).count();
    assert!(passing(&a) >= 20 && passing(&b) >= 20, "{a:?} {b:?}");

    // Shard 1 stops: exactly its journeys go missing (pending: the alert
    // fires after its `for:`, which fleet.rs proves), nothing else.
    let theirs: BTreeSet<String> = (0..JOURNEYS)
        .map(name)
        .filter(|j| owner(j, 3) == 1)
        .collect();
    shards[1] = None;
    let missing = r#"ALERTS{alertname="JourneyRunsMissing",sloth_service="sharded"}"#;
    let pending = eventually(30, "the stopped shard's journeys missing", || async {
        let m: BTreeSet<String> = by_journey(&prom, missing).await?.into_keys().collect();
        (m == theirs).then_some(m)
    })
    .await;
    assert_eq!(pending, theirs);
    let others = prom
        .query(r#"ALERTS{alertname!="JourneyRunsMissing"}"#)
        .await
        .expect("Prometheus answers");
    assert!(others.is_empty(), "only the missing journeys: {others:?}");

    // Reshard 3 -> 4: the stopped shard returns as 1/4 beside a new 3/4
    // (0/3 and 2/3 still run, as in a rolling update): nothing stays missing,
    // nothing fires.
    let _one = Serve::start(&journeys, ports[1], "1/4", "1", &target.base).await;
    let _three = Serve::start(&journeys, ports[3], "3/4", "3", &target.base).await;
    eventually(30, "no journey missing after the reshard", || async {
        prom.query(missing).await?.is_empty().then_some(())
    })
    .await;
    let firing = prom
        .query(r#"ALERTS{alertstate="firing"}"#)
        .await
        .expect("Prometheus answers");
    assert!(firing.is_empty(), "{firing:?}");
    drop(single);
    drop(prom);
}

/// What `wayprobe check` predicts for a total outage: "pages after N failed
/// runs (5.5s)" → the duration.
fn predicted_page(journeys: &Path) -> std::time::Duration {
    let out = bin().arg("check").arg(journeys).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("the page fires only when at least 2 of the 2 locations burn"),
        "check explains the quorum: {text}"
    );
    let re = regex::Regex::new(r"a total outage pages after \d+ failed runs \(([^)]+)\)").unwrap();
    let d = re.captures(&text).unwrap_or_else(|| panic!("{text}"))[1].to_string();
    humantime::parse_duration(&d).unwrap()
}

/// Two locations against a target that fails for one of them (by the
/// `x-probe-location` header its runs send): that location's ticket fires
/// and the page does not; then both fail and the page fires within
/// `check`'s prediction (99.99% makes that a few seconds: the Workbook's
/// bound is 0.0001 x 14.4 x 1h = 5.2s, whatever the interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_location_tickets_and_both_page() {
    let Some((target, dir, journeys)) = setup().await else {
        return;
    };
    std::fs::write(
        journeys.join("region.yaml"),
        "name: region\ninterval: 1s\ntimeout: 900ms\nvars: {base_url: \"http://127.0.0.1:9\", at: none}\nsteps:\n  - name: get\n    http:\n      url: \"{{ base_url }}/region\"\n      headers: {x-probe-location: \"{{ at }}\"}\nslos:\n  - {name: availability, objective: 99.99%, locations: {total: 2, quorum: 2}}\n",
    )
    .unwrap();
    let predicted = predicted_page(&journeys);
    let ports = [free_port(), free_port()];
    let prom = crate::support::Prometheus::start(
        &dir,
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: wayprobe\n    static_configs: [{{targets: ['127.0.0.1:{}', '127.0.0.1:{}']}}]\n",
            rules(&dir, &journeys, "wayprobe").display(),
            ports[0],
            ports[1],
        ),
    )
    .await;
    target.set_location_down("ap", true);
    let procs: Vec<Serve> = [("eu", ports[0]), ("ap", ports[1])]
        .iter()
        .map(|(at, port)| {
            Serve::spawn_with(
                &journeys,
                *port,
                &[
                    "--location",
                    at,
                    "--var",
                    &format!("at={at}"),
                    "--prometheus-url",
                    &prom.url,
                ],
                &target.base,
            )
        })
        .collect();
    for p in &procs {
        p.ready().await;
    }
    let alerts = |q: &'static str| prom.query(q);
    let ticket = r#"ALERTS{alertstate="firing",slo_alert_tier="location-fast"}"#;
    let page = r#"ALERTS{alertstate="firing",sloth_severity="page"}"#;
    let fired = eventually(60, "the ap location ticket", || async {
        let r = alerts(ticket).await?;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["metric"]["location"], "ap");
    assert_eq!(fired[0]["metric"]["sloth_severity"], "ticket");
    assert_eq!(fired[0]["metric"]["severity"], "warning");
    let eu = by_journey(
        &prom,
        r#"slo_location:sli_error:ratio_rate5m{location="eu"}"#,
    )
    .await
    .unwrap();
    assert_eq!(eu["region"], 0.0, "eu sees no failure");
    assert!(
        alerts(page).await.expect("Prometheus answers").is_empty(),
        "one location alone does not page"
    );
    // eu's status page and API show ap's state, read from Prometheus.
    let api: serde_json::Value =
        serde_json::from_str(&get(&format!("{}/api/v1/journeys", procs[0].url)).await.1).unwrap();
    let p = &api["journeys"][0]["slos"][0]["prometheus"];
    assert_eq!(p["locations_firing"], serde_json::json!(["ap"]), "{api:#}");
    assert!(p["locations"]["ap"].as_f64().unwrap() > 0.0, "{p:#}");
    assert_eq!(p["locations"]["eu"].as_f64(), Some(0.0), "{p:#}");
    let html = get(&format!("{}/", procs[0].url)).await.1;
    assert!(html.contains("(location ticket firing)"), "{html}");

    // Both down: the page fires within check's prediction, give or take one
    // interval, one scrape and one evaluation (plus polling), and the
    // location tickets give way to it.
    target.set_location_down("eu", true);
    let t0 = std::time::Instant::now();
    let slack = std::time::Duration::from_secs(1 + 1 + 1 + 1);
    let paged = eventually((predicted + slack).as_secs() + 5, "the page", || async {
        let r = alerts(page).await?;
        r.iter()
            .any(|a| a["metric"]["slo_alert_tier"] == "page-fast")
            .then_some(r)
    })
    .await;
    let took = t0.elapsed();
    assert!(
        took <= predicted + slack,
        "paged after {took:?}; check predicted {predicted:?} (+ {slack:?})"
    );
    assert!(
        paged.iter().all(|a| a["metric"].get("location").is_none()),
        "{paged:?}"
    );
    eventually(
        10,
        "the location tickets giving way to the page",
        || async { alerts(ticket).await?.is_empty().then_some(()) },
    )
    .await;
    drop(procs);
    drop(prom);
}
