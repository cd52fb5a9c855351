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
        let child = bin()
            .args(["serve", "--journeys"])
            .arg(journeys)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--shard",
                shard,
                "--location",
                "test",
                "--watch-interval",
                "0s",
            ])
            .args([
                "--var",
                &format!("base_url={base}"),
                "--var",
                &format!("who={who}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wayprobe serve starts");
        let url = format!("http://127.0.0.1:{port}");
        Serve { child, url }
    }

    async fn ready(&self) {
        eventually(30, &format!("{} ready", self.url), || async {
            let r = reqwest::get(format!("{}/-/ready", self.url)).await.ok()?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_processes_run_each_journey_once_and_agree_with_one_process() {
    if !tool("prometheus") {
        return;
    }
    let target = Target::start().await;
    let dir = crate::http::tempdir();
    let journeys = dir.join("journeys");
    std::fs::create_dir(&journeys).unwrap();
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
