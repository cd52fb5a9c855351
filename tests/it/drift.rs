//! Drift between journeys and rules, end to end: the fingerprint `wayprobe
//! serve` exposes for the example journeys is the one `wayprobe rules` writes
//! into its rules, and real `promtool` shows the drift alert firing only when a
//! prober reports another fingerprint for long enough.

use std::process::{Command, Stdio};

use crate::support::{bin, eventually, free_port, root, tool};

/// The fingerprint in a `wayprobe rules` output (the alert's label).
fn rules_fingerprint(rules: &str) -> String {
    rules
        .lines()
        .find_map(|l| l.trim().strip_prefix("slo_rules_fingerprint: "))
        .expect("the rules carry a fingerprint")
        .trim_matches('"')
        .to_string()
}

fn rules_for(args: &[&str]) -> String {
    let out = bin()
        .arg("rules")
        .arg(root().join("journeys"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn serve_exposes_the_fingerprint_the_rules_carry() {
    let rules = rules_for(&["--matcher", "job=\"wayprobe\""]);
    let fp = rules_fingerprint(&rules);
    // The other formats carry the same one; options do not change it.
    let values = rules_for(&["--format", "helm-values", "--service", "shop"]);
    assert!(
        values.contains(&format!("  fingerprint: \"{fp}\"\n")),
        "{values}"
    );
    // What the chart consumes, reviewed as a diff.
    let chart_values = rules_for(&[
        "--format",
        "helm-values",
        "--label",
        "release=kube-prometheus-stack",
        "--namespace",
        "monitoring",
    ]);
    crate::support::golden::assert_golden("rules/helm-values.yaml", &chart_values);

    let port = free_port();
    let mut serve = bin()
        .args(["serve", "--watch-interval", "0s"])
        .arg(format!("--journeys={}", root().join("journeys").display()))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let served = eventually(20, "serve's fingerprint", || async {
        let m = crate::support::text(&url).await?;
        m.lines()
            .find_map(|l| l.strip_prefix("wayprobe_slo_rules_fingerprint "))
            .map(str::to_string)
    })
    .await;
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(served, fp);

    if !tool("promtool") {
        return;
    }
    let dir = crate::http::tempdir();
    std::fs::write(dir.join("rules.yaml"), &rules).unwrap();
    // Same fingerprint for an hour: silent. Another one: fires after `for`.
    let test = format!(
        r#"rule_files: [rules.yaml]
evaluation_interval: 30s
tests:
  - interval: 1m
    input_series:
      - series: 'wayprobe_slo_rules_fingerprint{{job="wayprobe",instance="a:9469"}}'
        values: '{fp}x60'
      - series: 'wayprobe_slo_rules_fingerprint{{job="wayprobe",instance="b:9469"}}'
        values: '12345x60'
    alert_rule_test:
      - eval_time: 29m
        alertname: WayprobeSLORulesOutOfDate
        exp_alerts: []
      - eval_time: 31m
        alertname: WayprobeSLORulesOutOfDate
        exp_alerts:
          - exp_labels:
              instance: b:9469
              job: wayprobe
              severity: warning
              slo_rules_fingerprint: "{fp}"
              sloth_service: wayprobe
            exp_annotations:
              summary: "The SLO rules in Prometheus were generated from other journeys than b:9469 runs"
              description: "These rules were generated from journeys whose SLO rules have fingerprint {fp}; the prober reports 12345 (wayprobe_slo_rules_fingerprint). An SLO, journey or interval changed without regenerating the rules, so burn-rate alerts use stale objectives. Run `wayprobe rules` on the journeys the prober loads and apply its output."
"#
    );
    std::fs::write(dir.join("drift.test.yaml"), test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "drift.test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
