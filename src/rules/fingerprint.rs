//! Drift between the journeys a prober runs and the rules Prometheus holds.
//!
//! Journeys and their generated rules live apart (journey files or a Helm
//! values file on one side, a rule file or `PrometheusRule` on the other), so
//! an SLO edited without regenerating the rules silently alerts on the old
//! objective. Both sides therefore carry a fingerprint of the SLO rules the
//! journeys imply:
//!
//! - `wayprobe serve` exposes it as the gauge [`METRIC`] (one series, no
//!   labels: the fingerprint is the value, so cardinality stays bounded);
//! - `wayprobe rules` writes the fingerprint of the journeys it read into the
//!   group [`GROUP_PREFIX`]`<service>`, whose alert [`ALERT`] fires when a
//!   prober reports another fingerprint for [`DRIFT_FOR`].
//!
//! The fingerprint is the SHA-256 of the rules generated with the default
//! [`RulesConfig`], serialized as JSON, cut to its first 48 bits: an integer
//! below 2^53, so Prometheus' float64 samples and PromQL literals hold it
//! exactly. Generator options (`--service`, `--matcher`, intervals) do not
//! change it, since `serve` cannot know them; journey names, intervals (the
//! liveness alert) and every SLO field do, and so does a new generator version
//! whose rules differ.

use std::collections::BTreeMap;

use super::arith::prom_duration;
use super::model::{Rule, RuleFile, RuleGroup};
use super::{RulesConfig, build};
use crate::journey::Journey;

/// The gauge `wayprobe serve` exposes: the fingerprint of its loaded journeys' rules.
pub const METRIC: &str = "wayprobe_slo_rules_fingerprint";

/// The alert that fires when a prober's fingerprint differs from the rules'.
pub const ALERT: &str = "WayprobeSLORulesOutOfDate";

/// Name prefix of the group holding [`ALERT`]; the service name follows.
pub const GROUP_PREFIX: &str = "wayprobe-slo-rules-fingerprint-";

/// The label on [`ALERT`] that carries the rules' fingerprint (also how
/// [`of_file`] finds it again).
pub const LABEL: &str = "slo_rules_fingerprint";

/// How long the fingerprints must differ before [`ALERT`] fires: a rollout
/// (new journeys first, rules a few minutes later) must not page.
pub const DRIFT_FOR: &str = "30m";

/// The fingerprint of the SLO rules `journeys` imply (see the module docs).
/// Independent of the order of `journeys`.
pub fn fingerprint(journeys: &[Journey]) -> u64 {
    // The rules' JSON is hashed as it is written, one rule at a time, never
    // held: at 10,000 journeys the rule file is about 40 MB of strings, and
    // a transient that size at every (re)load set `serve`'s RSS.
    let mut sha = Sha256(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256));
    {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut sha);
        // Serializing plain strings, maps and vectors into a hash cannot fail.
        let _ = write_json(&mut w, journeys, &RulesConfig::default());
        let _ = std::io::Write::flush(&mut w);
    }
    let digest = sha.0.finish();
    digest.as_ref()[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Writes `serde_json::to_writer(&build::generate(journeys, cfg))`, byte for
/// byte, from [`build::generate_each`]'s pieces.
fn write_json(
    w: &mut impl std::io::Write,
    journeys: &[Journey],
    cfg: &RulesConfig,
) -> std::io::Result<()> {
    w.write_all(b"{\"groups\":[")?;
    let (mut groups, mut rules, mut liveness) = (0usize, 0usize, false);
    let mut res = Ok(());
    build::generate_each(journeys, cfg, |p| {
        if res.is_err() {
            return;
        }
        res = (|| -> std::io::Result<()> {
            let comma = |n: &mut usize| {
                *n += 1;
                if *n > 1 { &b","[..] } else { &b""[..] }
            };
            match p {
                build::Piece::Group(g) => {
                    w.write_all(comma(&mut groups))?;
                    serde_json::to_writer(&mut *w, &g)?;
                }
                build::Piece::LivenessHead(g) => {
                    w.write_all(comma(&mut groups))?;
                    // `{"name":...,"rules":[]}` less its closing `]}`.
                    let head = serde_json::to_vec(&g)?;
                    w.write_all(head.strip_suffix(b"]}").unwrap_or(&head))?;
                    liveness = true;
                }
                build::Piece::LivenessRule(r) => {
                    w.write_all(comma(&mut rules))?;
                    serde_json::to_writer(&mut *w, &r)?;
                }
            }
            Ok(())
        })();
    });
    res?;
    if liveness {
        w.write_all(b"]}")?;
    }
    w.write_all(b"]}")
}

/// Feeds what is written to a SHA-256.
struct Sha256(aws_lc_rs::digest::Context);

impl std::io::Write for Sha256 {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The fingerprint carried by a rule file made by [`crate::rules::generate`], if any.
pub fn of_file(file: &RuleFile) -> Option<&str> {
    file.groups
        .iter()
        .filter(|g| g.name.starts_with(GROUP_PREFIX))
        .flat_map(|g| &g.rules)
        .find_map(|r| r.labels.get(LABEL).map(String::as_str))
}

/// Appends the drift group to `file` (the hook in [`crate::rules::generate`]):
/// nothing when there are no journeys.
pub(super) fn append_group(file: &mut RuleFile, journeys: &[Journey], cfg: &RulesConfig) {
    if journeys.is_empty() {
        return;
    }
    let fp = fingerprint(journeys);
    let parts: Vec<String> = cfg
        .sorted_matchers()
        .iter()
        .map(|m| m.to_string())
        .collect();
    let selector = if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    };
    let mut labels = BTreeMap::new();
    labels.insert(LABEL.to_string(), fp.to_string());
    labels.insert("severity".to_string(), "warning".to_string());
    labels.insert("sloth_service".to_string(), cfg.service.clone());
    labels.extend(cfg.identity_labels());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".to_string(),
        "The SLO rules in Prometheus were generated from other journeys than {{ $labels.instance }} runs".to_string(),
    );
    annotations.insert(
        "description".to_string(),
        format!(
            "These rules were generated from journeys whose SLO rules have fingerprint {fp}; the prober reports {{{{ $value | printf \"%.0f\" }}}} ({METRIC}). An SLO, journey or interval changed without regenerating the rules, so burn-rate alerts use stale objectives. Run `wayprobe rules` on the journeys the prober loads and apply its output."
        ),
    );
    file.groups.push(RuleGroup {
        name: format!("{GROUP_PREFIX}{}", cfg.service),
        interval: Some(prom_duration(cfg.interval)),
        rules: vec![Rule {
            record: None,
            alert: Some(ALERT.to_string()),
            expr: format!("{METRIC}{selector} != {fp}"),
            for_: Some(DRIFT_FOR.to_string()),
            keep_firing_for: None,
            labels,
            annotations,
        }],
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{generate, test_journey};

    /// The streamed JSON is exactly the generated file's, with SLO groups,
    /// with none, and with no journey at all.
    #[test]
    fn streamed_json_is_the_generated_files() {
        let a = test_journey("a", "30s", "  - {name: availability, objective: 99.5%}\n");
        let b = test_journey(
            "b",
            "10s",
            "  - {name: latency, objective: 95%, threshold: 250ms}\n  - {name: availability, objective: 99%}\n",
        );
        let none = test_journey("c", "30s", "  []\n");
        let cfg = RulesConfig::default();
        for js in [vec![a, b, none.clone()], vec![none], vec![]] {
            let mut streamed = Vec::new();
            write_json(&mut streamed, &js, &cfg).unwrap();
            let whole = serde_json::to_vec(&build::generate(&js, &cfg)).unwrap();
            assert_eq!(String::from_utf8(streamed), String::from_utf8(whole));
        }
    }

    #[test]
    fn fingerprint_follows_slos_and_intervals_not_order_or_options() {
        let a = test_journey("a", "30s", "  - {name: availability, objective: 99.5%}\n");
        let b = test_journey("b", "10s", "  - {name: availability, objective: 99%}\n");
        let fp = fingerprint(&[a.clone(), b.clone()]);
        assert!(fp < 1 << 48, "exact in a float64");
        assert_eq!(fp, fingerprint(&[b.clone(), a.clone()]));
        let a_obj = test_journey("a", "30s", "  - {name: availability, objective: 99.9%}\n");
        assert_ne!(fp, fingerprint(&[a_obj, b.clone()]), "objective");
        let a_int = test_journey("a", "1m", "  - {name: availability, objective: 99.5%}\n");
        assert_ne!(fp, fingerprint(&[a_int, b.clone()]), "interval");
        assert_ne!(fp, fingerprint(std::slice::from_ref(&a)), "a journey fewer");

        let cfg = RulesConfig {
            service: "shop".into(),
            matchers: vec!["job=\"wayprobe\"".parse().unwrap()],
            ..Default::default()
        };
        let file = generate(&[a.clone(), b.clone()], &cfg);
        assert_eq!(of_file(&file), Some(fp.to_string().as_str()));
        let g = file.groups.last().unwrap();
        assert_eq!(g.name, "wayprobe-slo-rules-fingerprint-shop");
        assert_eq!(
            g.rules[0].expr,
            format!("wayprobe_slo_rules_fingerprint{{job=\"wayprobe\"}} != {fp}")
        );
        assert_eq!(g.rules[0].labels["job"], "wayprobe");
        assert!(generate(&[], &cfg).groups.is_empty());
    }
}
