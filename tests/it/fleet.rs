//! More than one prober: shards, high-availability replicas and several
//! locations, proven on the generated rules by the real `promtool` (unit
//! tests over hours of samples), and by real `serve --shard` processes
//! scraped by a real Prometheus (see `sharded_processes_*`).

use std::fmt::Write as _;

use wayprobe::diag::SourceFile;
use wayprobe::journey::Journey;
use wayprobe::journey::load::load_sources;
use wayprobe::rules::{self, Format, RulesConfig};

/// Journeys every 60s (one run per 1m sample) with a 99.5% availability SLO.
fn journeys(names: &[&str], slo_extra: &str) -> Vec<Journey> {
    let sources = names
        .iter()
        .map(|n| {
            SourceFile::new(
                format!("{n}.yaml"),
                format!(
                    "name: {n}\ninterval: 60s\ntimeout: 10s\nsteps:\n  - name: home\n    http: {{url: \"https://shop.example.com/\"}}\nslos:\n  - {{name: availability, objective: 99.5%{slo_extra}}}\n"
                ),
            )
        })
        .collect();
    load_sources(sources, &Default::default(), vec![])
        .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()))
        .journeys
}

/// One process's series of one journey at one location, a sample a minute
/// from minute 0: `runs[m]` = (successes, failures) so far, `None` = not
/// scraped (before start, or after the process stopped: a stale marker first).
struct Feed<'a> {
    journey: &'a str,
    location: &'a str,
    instance: &'a str,
    extra: &'a str,
    /// Minute of the first sample.
    from: usize,
    /// Minute after the last sample (a stale marker then), or `None`: runs on.
    until: Option<usize>,
    /// Minutes (from `from`) whose run fails; every other minute's run passes.
    fails: &'a dyn Fn(usize) -> bool,
}

/// promtool `input_series` for `feeds` over `minutes` minutes.
fn series(feeds: &[Feed<'_>], minutes: usize) -> String {
    let mut out = String::new();
    for f in feeds {
        let end = f.until.unwrap_or(minutes + 1).min(minutes + 1);
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let (mut s, mut b) = (0u64, 0u64);
        let mut ts = Vec::new();
        for m in 0..=minutes {
            if m < f.from || m > end {
                for v in [&mut ok, &mut bad, &mut ts] {
                    v.push("_".to_string());
                }
                continue;
            }
            if m == end {
                for v in [&mut ok, &mut bad, &mut ts] {
                    v.push("stale".to_string());
                }
                continue;
            }
            // the run of minute m has finished by its sample (none at the first)
            if m > f.from {
                if (f.fails)(m) {
                    b += 1;
                } else {
                    s += 1;
                }
            }
            ok.push(s.to_string());
            bad.push(b.to_string());
            ts.push(if m > f.from {
                (m * 60).to_string()
            } else {
                "0".into()
            });
        }
        let labels = format!(
            "journey=\"{}\",location=\"{}\",instance=\"{}\"{}",
            f.journey, f.location, f.instance, f.extra
        );
        for (metric, result, vals) in [
            ("journey_runs_total", ",result=\"success\"", &ok),
            ("journey_runs_total", ",result=\"failure\"", &bad),
            ("journey_last_run_timestamp_seconds", "", &ts),
        ] {
            let _ = writeln!(
                out,
                "      - series: '{metric}{{{labels}{result}}}'\n        values: '{}'",
                vals.join(" ")
            );
        }
    }
    out
}

/// A promtool check that the firing alerts, counted by `by`, are exactly `want`
/// (`(labels in PromQL text, count)`).
fn firing(minute: usize, by: &str, want: &[(&str, u32)]) -> String {
    let mut out = format!(
        "      - expr: 'count by ({by}) (ALERTS{{alertstate=\"firing\"}})'\n        eval_time: {minute}m\n        exp_samples:"
    );
    if want.is_empty() {
        out.push_str(" []\n");
        return out;
    }
    out.push('\n');
    for (labels, n) in want {
        let _ = writeln!(
            out,
            "          - labels: '{{{labels}}}'\n            value: {n}"
        );
    }
    out
}

fn sample(minute: usize, expr: &str, labels: &str, value: &str) -> String {
    format!(
        "      - expr: '{expr}'\n        eval_time: {minute}m\n        exp_samples:\n          - labels: '{labels}'\n            value: {value}\n"
    )
}

/// Writes the rules of `js` and a test file of `tests` (each `(name,
/// minutes, input_series, promql_expr_test)`), runs `promtool test rules`.
fn promtool_test(name: &str, js: &[Journey], tests: &[(&str, usize, String, String)]) {
    if !crate::support::tool("promtool") {
        return;
    }
    let cfg = RulesConfig::default();
    rules::validate(js, &cfg).unwrap();
    let dir = crate::rules::temp_dir(&format!("fleet-{name}"));
    std::fs::write(
        dir.join("rules.yaml"),
        rules::render(&rules::generate(js, &cfg), Format::Prometheus, &cfg),
    )
    .unwrap();
    let mut t = String::from("rule_files: [rules.yaml]\nevaluation_interval: 1m\ntests:\n");
    for (name, _, input, exprs) in tests {
        let _ = write!(
            t,
            "  - name: '{name}'\n    interval: 1m\n    input_series:\n{input}    promql_expr_test:\n{exprs}"
        );
    }
    std::fs::write(dir.join("fleet.test.yaml"), &t).unwrap();
    let (ok, text) = crate::rules::run(
        std::path::Path::new("promtool"),
        &dir,
        &["test", "rules", "fleet.test.yaml"],
    );
    assert!(
        ok,
        "promtool test rules failed in {}:\n{text}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const NEVER: &dyn Fn(usize) -> bool = &|_| false;

#[test]
fn a_dead_shard_raises_liveness_for_exactly_its_journeys_and_no_page() {
    let js = journeys(&["a", "b", "c", "d"], "");
    // shard 0 runs a and b, shard 1 runs c and d and dies at minute 90
    let feed = |journey, instance, until| Feed {
        journey,
        location: "eu",
        instance,
        extra: "",
        from: 0,
        until,
        fails: NEVER,
    };
    let input = series(
        &[
            feed("a", "shard-0:9469", None),
            feed("b", "shard-0:9469", None),
            feed("c", "shard-1:9469", Some(90)),
            feed("d", "shard-1:9469", Some(90)),
        ],
        130,
    );
    let mut exprs = firing(89, "alertname", &[]);
    // `missing="series"` waits `for: 3m` once the series are gone
    exprs += &firing(92, "alertname", &[]);
    let missing = [
        (
            "alertname=\"JourneyRunsMissing\",journey=\"c\",missing=\"series\"",
            1,
        ),
        (
            "alertname=\"JourneyRunsMissing\",journey=\"d\",missing=\"series\"",
            1,
        ),
    ];
    for m in [94, 110, 130] {
        exprs += &firing(m, "alertname, journey, missing", &missing);
        // never a page for the burn: the dead shard's ratios are empty, not bad
        exprs += &firing(
            m,
            "alertname, slo_alert_tier",
            &[("alertname=\"JourneyRunsMissing\"", 2)],
        );
    }
    promtool_test(
        "dead-shard",
        &js,
        &[("shard 1 of 2 dies", 130, input, exprs)],
    );
}

#[test]
fn a_reshard_moves_journeys_without_any_alert() {
    let js = journeys(&["a", "b", "c"], "");
    // 3 -> 4 shards, rolled out one pod at a time: journey c moves from
    // shard-2 to the new shard-3 (which starts first), then shard-2 restarts;
    // b stays on shard-1, which restarts (a counter reset) as 1/4.
    let c_old: &dyn Fn(usize) -> bool = &|m| m % 29 == 0 || m == 92;
    let c_new: &dyn Fn(usize) -> bool = &|m| m == 92;
    let input = series(
        &[
            Feed {
                journey: "a",
                location: "eu",
                instance: "shard-0",
                extra: "",
                from: 0,
                until: None,
                fails: NEVER,
            },
            Feed {
                journey: "b",
                location: "eu",
                instance: "shard-1",
                extra: "",
                from: 0,
                until: Some(100),
                fails: NEVER,
            },
            Feed {
                journey: "b",
                location: "eu",
                instance: "shard-1-restarted",
                extra: "",
                from: 101,
                until: None,
                fails: NEVER,
            },
            Feed {
                journey: "c",
                location: "eu",
                instance: "shard-2",
                extra: "",
                from: 0,
                until: Some(95),
                fails: c_old,
            },
            Feed {
                journey: "c",
                location: "eu",
                instance: "shard-3",
                extra: "",
                from: 90,
                until: None,
                fails: c_new,
            },
        ],
        240,
    );
    let mut exprs = String::new();
    for m in [60, 91, 93, 96, 99, 102, 105, 120, 150, 200, 240] {
        exprs += &firing(m, "alertname", &[]);
    }
    // while both ran c (minutes 90-95) each run counted once: both saw the
    // failed run of minute 92, so the 5m ratio at 94 is 1 bad of 5 runs
    // (summing the two processes would say 2 of 9)
    exprs += &sli(94, "5m", "c", "0.2");
    promtool_test("reshard", &js, &[("3 -> 4 shards", 240, input, exprs)]);
}

/// The recorded SLI of one journey in `input` at `minute`.
fn sli(minute: usize, window: &str, journey: &str, value: &str) -> String {
    sample(
        minute,
        &format!("slo:sli_error:ratio_rate{window}{{journey=\"{journey}\"}}"),
        &format!(
            "slo:sli_error:ratio_rate{window}{{journey=\"{journey}\",slo_kind=\"availability\",sloth_id=\"wayprobe-{journey}-availability\",sloth_service=\"wayprobe\",sloth_slo=\"{journey}-availability\",sloth_window=\"{window}\"}}"
        ),
        value,
    )
}

#[test]
fn two_replicas_at_one_location_count_each_run_once() {
    // `single` is probed by one process; `ha` by two replicas that see the
    // same outage (5 failed runs from minute 61) and one replica that also
    // saw it while the other missed it: the SLI is the single process's.
    let js = journeys(&["single", "ha", "split"], "");
    let outage: &dyn Fn(usize) -> bool = &|m| (61..=65).contains(&m);
    let f = |journey, instance, extra, fails| Feed {
        journey,
        location: "eu",
        instance,
        extra,
        from: 0,
        until: None,
        fails,
    };
    let input = series(
        &[
            f("single", "p-0", "", outage),
            f("ha", "p-0", ",replica=\"a\"", outage),
            f("ha", "p-1", ",replica=\"b\"", outage),
            f("split", "p-0", ",replica=\"a\"", outage),
            f("split", "p-1", ",replica=\"b\"", NEVER),
        ],
        120,
    );
    let five_of_sixty = format!("{}", 5.0_f64 / 60.0);
    let mut exprs = String::new();
    for j in ["single", "ha", "split"] {
        exprs += &sli(120, "1h", j, &five_of_sixty);
        exprs += &sli(65, "5m", j, "1");
    }
    // the page fires alike for all three (5 bad of 60 > 0.072 at minute 65)
    exprs += &firing(64, "alertname", &[]);
    exprs += &firing(
        65,
        "journey, slo_alert_tier",
        &[
            ("journey=\"ha\",slo_alert_tier=\"page-fast\"", 1),
            ("journey=\"single\",slo_alert_tier=\"page-fast\"", 1),
            ("journey=\"split\",slo_alert_tier=\"page-fast\"", 1),
        ],
    );
    promtool_test("ha", &js, &[("two replicas", 120, input, exprs)]);
}

#[test]
fn one_failing_location_tickets_and_a_quorum_pages() {
    let js = journeys(&["shop"], ", locations: {total: 3, quorum: 2}");
    let from60: &dyn Fn(usize) -> bool = &|m| m > 60;
    let loc = |location, fails| Feed {
        journey: "shop",
        location,
        instance: "p",
        extra: "",
        from: 0,
        until: None,
        fails,
    };
    // `check`'s arithmetic: a hard outage of one location trips the page-fast
    // windows after this many of its runs (per location, 60 runs an hour)
    let thr = rules::BurnTier::PageFast.threshold(
        js[0].slos[0].window,
        rules::Dec::budget(&js[0].slos[0].objective),
    );
    let trip = rules::runs_to_trip(thr, 3600, js[0].interval, 1) as usize;
    assert_eq!(trip, 5);
    let at = 60 + trip;

    let one = series(&[loc("eu", NEVER), loc("us", NEVER), loc("ap", from60)], 90);
    let mut exprs = firing(at - 1, "alertname", &[]);
    let ticket = [(
        "alertname=\"JourneyErrorBudgetBurn\",location=\"ap\",slo_alert_tier=\"location-fast\",sloth_severity=\"ticket\"",
        1,
    )];
    exprs += &firing(
        at,
        "alertname, location, slo_alert_tier, sloth_severity",
        &ticket,
    );
    // 11 bad runs of the 360 a location makes in 6h trip the slow tier too
    let both = [
        ticket[0],
        (
            "alertname=\"JourneyErrorBudgetBurn\",location=\"ap\",slo_alert_tier=\"location-slow\",sloth_severity=\"ticket\"",
            1,
        ),
    ];
    exprs += &firing(
        90,
        "alertname, location, slo_alert_tier, sloth_severity",
        &both,
    );

    let two = series(
        &[loc("eu", from60), loc("us", NEVER), loc("ap", from60)],
        90,
    );
    let mut exprs2 = firing(at - 1, "alertname", &[]);
    let page = [(
        "alertname=\"JourneyErrorBudgetBurn\",slo_alert_tier=\"page-fast\",sloth_severity=\"page\"",
        1,
    )];
    exprs2 += &firing(
        at,
        "alertname, location, slo_alert_tier, sloth_severity",
        &page,
    );
    let pages = [
        page[0],
        (
            "alertname=\"JourneyErrorBudgetBurn\",slo_alert_tier=\"page-slow\",sloth_severity=\"page\"",
            1,
        ),
    ];
    exprs2 += &firing(
        90,
        "alertname, location, slo_alert_tier, sloth_severity",
        &pages,
    );
    promtool_test(
        "quorum",
        &js,
        &[
            ("one location of three fails", 90, one, exprs),
            ("two locations of three fail", 90, two, exprs2),
        ],
    );
}
