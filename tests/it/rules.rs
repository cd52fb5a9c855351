//! `wayprobe::rules`: golden rule files in both formats, and the real
//! `promtool` (Prometheus 2.x) checking the rules and running the emitted
//! unit tests, including a mutation that the tests must catch.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use wayprobe::diag::SourceFile;
use wayprobe::journey::Journey;
use wayprobe::journey::load::load_sources;
use wayprobe::rules::{self, Format, Matcher, RuleFile, RulesConfig};

use crate::support::golden::assert_golden;

const CHECKOUT: &str = r#"name: checkout
interval: 30s
timeout: 20s
steps:
  - name: home
    http: {url: "https://shop.example.com/"}
slos:
  - name: availability
    objective: 99.5%
    alerting:
      runbook_url: "https://runbooks.example.com/journeys/{{ $labels.journey }}#availability"
      dashboard_url: "https://grafana.example.com/d/journey-slo?var-sloth_id={{ $labels.sloth_id }}"
  - name: latency
    objective: 95%
    threshold: 2s
    labels: {team: payments}
"#;

const LOGIN: &str = r#"name: login
interval: 10s
timeout: 8s
steps:
  - name: form
    http: {url: "https://shop.example.com/login"}
slos:
  - name: availability
    objective: "99.9"
    window: 28d
    labels: {team: identity}
    alerting:
      min_bad_runs_to_page: 2
      keep_firing_for: 5m
      page: {labels: {routing_key: "identity-oncall"}}
      annotations:
        hint: "Quotes \" and colons: {{ $labels.journey }} # not a comment\nsecond line"
"#;

fn journeys() -> Vec<Journey> {
    let sources = vec![
        SourceFile::new("checkout.yaml", CHECKOUT),
        SourceFile::new("login.yaml", LOGIN),
    ];
    load_sources(sources, &Default::default(), vec![])
        .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()))
        .journeys
}

fn config() -> RulesConfig {
    let mut cfg = RulesConfig {
        matchers: vec![
            Matcher::parse(r#"job="wayprobe""#).unwrap(),
            Matcher::parse(r#"namespace=~"probes|probes-canary""#).unwrap(),
        ],
        liveness_runbook_url: Some(
            "https://runbooks.example.com/journeys/{{ $labels.journey }}#no-runs".into(),
        ),
        ..Default::default()
    };
    cfg.operator.namespace = Some("monitoring".into());
    cfg.operator
        .labels
        .insert("release".into(), "kube-prometheus-stack".into());
    cfg
}

/// `promtool`, or `None` when it does not run (the test skips, or fails
/// under `WAYPROBE_REQUIRE_TOOLS`, like every tool-dependent test).
fn promtool() -> Option<PathBuf> {
    crate::support::tool("promtool").then(|| PathBuf::from("promtool"))
}

/// A fresh directory under the target dir.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rules-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs promtool in `dir`; returns (success, stdout + stderr).
pub(crate) fn run(promtool: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn rules_match_the_golden_files_in_both_formats() {
    let js = journeys();
    let cfg = config();
    rules::validate(&js, &cfg).unwrap();
    let file = rules::generate(&js, &cfg);
    let prom = rules::render(&file, Format::Prometheus, &cfg);
    let op = rules::render(&file, Format::PrometheusOperator, &cfg);
    assert_golden("rules/prometheus.yaml", &prom);
    assert_golden("rules/prometheus-operator.yaml", &op);
    assert_golden("rules/inhibit-rules.yaml", &rules::inhibition_rules(&cfg));
    // deterministic: the journeys' order does not matter
    let mut rev = js.clone();
    rev.reverse();
    assert_eq!(
        rules::render(&rules::generate(&rev, &cfg), Format::Prometheus, &cfg),
        prom
    );
    // exact decimals
    assert!(prom.contains("> 0.072)"), "99.5% page-fast threshold");
    assert!(
        prom.contains("> 0.01344)"),
        "99.9%/28d page-fast: 13.44 x 0.001"
    );
    assert!(prom.contains("burn_rate_threshold: \"0.9333\""));
}

#[test]
fn rendered_yaml_reads_back_as_the_same_rules() {
    #[derive(serde::Deserialize)]
    struct PrometheusRule {
        #[serde(rename = "apiVersion")]
        api_version: String,
        kind: String,
        metadata: Value,
        spec: RuleFile,
    }
    let js = journeys();
    let cfg = config();
    let file = rules::generate(&js, &cfg);
    let prom: RuleFile =
        serde_saphyr::from_str(&rules::render(&file, Format::Prometheus, &cfg)).unwrap();
    assert_eq!(prom, file, "quotes, colons, # and newlines survive");
    let op: PrometheusRule =
        serde_saphyr::from_str(&rules::render(&file, Format::PrometheusOperator, &cfg)).unwrap();
    assert_eq!(
        (op.api_version.as_str(), op.kind.as_str()),
        ("monitoring.coreos.com/v1", "PrometheusRule")
    );
    assert_eq!(op.metadata["name"], "wayprobe-slos");
    assert_eq!(op.metadata["namespace"], "monitoring");
    assert_eq!(op.metadata["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(op.spec, file);
    let hint = &file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .find(|r| r.annotations.contains_key("hint"))
        .unwrap()
        .annotations["hint"];
    assert_eq!(
        hint,
        "Quotes \" and colons: {{ $labels.journey }} # not a comment\nsecond line"
    );
}

#[test]
fn promtool_checks_the_rules() {
    let Some(promtool) = promtool() else { return };
    let js = journeys();
    let cfg = config();
    let file = rules::generate(&js, &cfg);
    let dir = temp_dir("check");
    std::fs::write(
        dir.join("rules.yaml"),
        rules::render(&file, Format::Prometheus, &cfg),
    )
    .unwrap();
    let (ok, out) = run(
        &promtool,
        &dir,
        &["check", "rules", "--lint=all", "--lint-fatal", "rules.yaml"],
    );
    assert!(ok, "promtool check rules failed:\n{out}");
    let want = format!("SUCCESS: {} rules found", file.rule_count());
    assert!(out.contains(&want), "expected `{want}`:\n{out}");
    eprintln!("{out}");
}

/// Writes the emitted tests of both journeys and runs each test file.
#[test]
fn promtool_passes_the_emitted_tests() {
    let Some(promtool) = promtool() else { return };
    let files = rules::emit_tests(&journeys(), &config());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "wayprobe-checkout-availability.rules.yaml",
            "wayprobe-checkout-availability.test.yaml",
            "wayprobe-checkout-latency.rules.yaml",
            "wayprobe-checkout-latency.test.yaml",
            "wayprobe-login-availability.rules.yaml",
            "wayprobe-login-availability.test.yaml",
        ]
    );
    let (_, checkout) = &files[1];
    assert_golden("rules/wayprobe-checkout-availability.test.yaml", checkout);
    let dir = temp_dir("emitted");
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let results: Vec<(String, bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .filter(|(n, _)| n.ends_with(".test.yaml"))
            .map(|(n, _)| {
                let (promtool, dir) = (&promtool, &dir);
                s.spawn(move || {
                    let (ok, out) = run(promtool, dir, &["test", "rules", n]);
                    (n.clone(), ok, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (name, ok, out) in &results {
        eprintln!("{name}: {}", out.trim());
        assert!(ok, "promtool test rules {name} failed:\n{out}");
    }
}

/// Keeps only the test groups whose name contains `pick`; JSON is YAML.
fn only_groups(test_yaml: &str, pick: &str) -> (Value, String) {
    let mut v: Value = serde_saphyr::from_str(test_yaml).unwrap();
    let tests = v["tests"].as_array_mut().unwrap();
    tests.retain(|t| t["name"].as_str().unwrap().contains(pick));
    assert_eq!(tests.len(), 1, "one group named like `{pick}`");
    let text = serde_json::to_string_pretty(&v).unwrap();
    (v, text)
}

#[test]
fn promtool_catches_a_mutated_threshold_and_a_shifted_minute() {
    let Some(promtool) = promtool() else { return };
    let files = rules::emit_tests(&journeys(), &config());
    let get = |n: &str| {
        files
            .iter()
            .find(|(f, _)| f == n)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    let rules_yaml = get("wayprobe-checkout-availability.rules.yaml");
    let test_yaml = get("wayprobe-checkout-availability.test.yaml");
    let dir = temp_dir("mutants");

    // 1. The page-fast threshold 14.4 x 0.005 = 0.072 lowered to 13 x 0.005:
    //    8 failed runs of 120 (6.7%) now page, which the "one run before" group forbids.
    assert_eq!(rules_yaml.matches("> 0.072)").count(), 2);
    std::fs::write(
        dir.join("mutant.rules.yaml"),
        rules_yaml.replace("> 0.072)", "> 0.065)"),
    )
    .unwrap();
    let (_, one_before) = only_groups(&test_yaml, "does not fire at failed run #8");
    let one_before = one_before.replace(
        "wayprobe-checkout-availability.rules.yaml",
        "mutant.rules.yaml",
    );
    std::fs::write(dir.join("threshold.test.yaml"), &one_before).unwrap();
    // ... and the same group passes against the real rules
    std::fs::write(
        dir.join("wayprobe-checkout-availability.rules.yaml"),
        &rules_yaml,
    )
    .unwrap();
    let (_, control) = only_groups(&test_yaml, "does not fire at failed run #8");
    std::fs::write(dir.join("control.test.yaml"), &control).unwrap();

    // 2. The firing check of the outage moved one minute earlier.
    let (mut main, _) = only_groups(&test_yaml, "a new journey in a hard outage");
    let checks = main["tests"][0]["alert_rule_test"].as_array_mut().unwrap();
    let firing = checks
        .iter_mut()
        .find(|c| {
            c["exp_alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["exp_labels"]["slo_alert_tier"] == "page-fast")
            })
        })
        .expect("a page-fast firing check");
    let minute: u64 = firing["eval_time"]
        .as_str()
        .unwrap()
        .trim_end_matches('m')
        .parse()
        .unwrap();
    firing["eval_time"] = Value::String(format!("{}m", minute - 1));
    std::fs::write(
        dir.join("shifted.test.yaml"),
        serde_json::to_string_pretty(&main).unwrap(),
    )
    .unwrap();

    let (ok, out) = run(&promtool, &dir, &["test", "rules", "control.test.yaml"]);
    assert!(ok, "the unmutated group must pass:\n{out}");
    let (ok, out) = run(&promtool, &dir, &["test", "rules", "threshold.test.yaml"]);
    assert!(!ok, "a lowered threshold must fail the tests:\n{out}");
    assert!(out.contains("page-fast"), "{out}");
    eprintln!("mutated threshold, promtool says:\n{out}");
    let (ok, out) = run(&promtool, &dir, &["test", "rules", "shifted.test.yaml"]);
    assert!(
        !ok,
        "a firing minute shifted by one must fail the tests:\n{out}"
    );
    eprintln!("shifted firing minute, promtool says:\n{out}");
}

/// A wider matrix of intervals, objectives and alerting options (and a
/// journey without SLOs), each emitted test file run by promtool.
#[test]
fn emitted_tests_hold_for_many_shapes() {
    let Some(promtool) = promtool() else { return };
    let shapes = [
        ("a45s", "45s", "{name: availability, objective: 99.5%}"),
        (
            "b90s",
            "90s",
            "{name: availability, objective: 99%, alerting: {min_bad_runs_to_page: 3}}",
        ),
        (
            "c2m",
            "2m",
            "{name: latency, objective: 99.9%, threshold: 250ms, alerting: {keep_firing_for: 10m}}",
        ),
        (
            "d7s",
            "7s",
            "{name: availability, objective: 99.95%, window: 28d}",
        ),
        ("e60s", "60s", "{name: availability, objective: 99.9%}"),
        (
            "f30s",
            "30s",
            "{name: availability, objective: 99%, alerting: {page: false}}",
        ),
        (
            "g15s",
            "15s",
            "{name: latency, objective: 95%, threshold: 1500ms, alerting: {annotations: {x: \"{{ if gt $value 0.5 }}big{{ end }}\"}}}",
        ),
        ("h10m", "10m", "{name: availability, objective: 99.5%}"),
        (
            "i30s",
            "30s",
            "{name: availability, objective: 80%, alerting: {ticket: false}}",
        ),
        (
            "j20s",
            "20s",
            "{name: latency, objective: 99%, threshold: 2s, alerting: {min_bad_runs_to_page: 5, keep_firing_for: 3m}}",
        ),
    ];
    let mut sources: Vec<_> = shapes
        .iter()
        .map(|(name, interval, slo)| {
            SourceFile::new(
                format!("{name}.yaml"),
                format!(
                    "name: {name}\ninterval: {interval}\ntimeout: 5s\nsteps:\n  - name: home\n    http: {{url: \"https://shop.example.com/\"}}\nslos:\n  - {slo}\n"
                ),
            )
        })
        .collect();
    sources.push(SourceFile::new(
        "k-no-slo.yaml",
        "name: k-no-slo\ninterval: 90s\nliveness: {after: 5m, severity: page}\nsteps:\n  - name: home\n    http: {url: \"https://shop.example.com/\"}\n",
    ));
    let js = load_sources(sources, &Default::default(), vec![])
        .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()))
        .journeys;
    let cfg = RulesConfig {
        service: "matrix".into(),
        matchers: vec![
            Matcher::parse(r#"job=~"wayprobe(-canary)?""#).unwrap(),
            Matcher::parse(r#"env!="dev""#).unwrap(),
        ],
        ..Default::default()
    };
    let files = rules::emit_tests(&js, &cfg);
    let dir = temp_dir("matrix");
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let tests: Vec<&String> = files
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".test.yaml"))
        .collect();
    assert_eq!(tests.len(), shapes.len() + 1);
    let live = files
        .iter()
        .find(|(n, _)| n == "matrix-k-no-slo-liveness.test.yaml")
        .map(|(_, t)| t)
        .expect("a liveness test for the journey without SLOs");
    assert!(live.contains("severity: \"critical\""), "{live}");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(name) = tests.get(i) else { break };
                    let (ok, out) = run(&promtool, &dir, &["test", "rules", name]);
                    eprintln!("{name}: {}", if ok { "SUCCESS" } else { "FAILED" });
                    if !ok {
                        failures.lock().unwrap().push(format!("{name}:\n{out}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The rules for the shipped example journeys, generated by the CLI, are a
/// golden file that promtool accepts.
#[test]
fn example_journeys_rules_golden_and_promtool_check() {
    let out = crate::support::bin()
        .current_dir(crate::support::root())
        .args(["rules", "journeys", "--matcher", "job=\"wayprobe\""])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = String::from_utf8(out.stdout).unwrap();
    crate::support::golden::assert_golden("rules/examples.yaml", &rules);
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = temp_dir("examples");
    std::fs::write(dir.join("examples.yaml"), &rules).unwrap();
    let (ok, text) = run(&promtool, &dir, &["check", "rules", "examples.yaml"]);
    assert!(ok, "promtool check rules:\n{text}");
}

/// An SLO with `locations:` gets no emitted test (one location cannot show
/// a quorum page), and `--emit-tests` says so instead of leaving it out
/// silently.
#[test]
fn emit_tests_names_the_slos_it_leaves_out() {
    let dir = temp_dir("quorum-tests");
    let yaml = dir.join("j.yaml");
    std::fs::write(
        &yaml,
        "name: buy\ninterval: 1m\nsteps:\n  - name: s\n    http: {url: \"http://127.0.0.1:9/\"}\nslos:\n  - {name: availability, objective: 99.9%, locations: {total: 3, quorum: 2}}\n  - {name: plain, objective: 99%}\n",
    )
    .unwrap();
    let out = crate::support::bin()
        .args(["rules", "-o", "/dev/null", "--emit-tests"])
        .arg(dir.join("tests"))
        .arg(&yaml)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("note: no test emitted for `availability` of `buy`"),
        "{stderr}"
    );
    assert!(!stderr.contains("`plain`"), "{stderr}");
}

/// promtool unit tests emitted for the shipped example journeys pass.
#[test]
fn example_journeys_emitted_tests_pass_promtool() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = temp_dir("examples-tests");
    let out = crate::support::bin()
        .current_dir(crate::support::root())
        .args(["rules", "journeys", "-o", "/dev/null", "--emit-tests"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tests: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".test.yaml"))
        .collect();
    tests.sort();
    assert_eq!(tests.len(), 7, "one test file per example SLO: {tests:?}");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let (ok, text) = run(&promtool, &dir, &args);
    assert!(ok, "promtool test rules:\n{text}");
}
