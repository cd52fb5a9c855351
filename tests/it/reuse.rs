//! Reuse and cleanup: fragments (`use:` of steps defined once in a
//! fragments file) and `finally:` steps that run whatever happened.

use std::sync::Arc;
use std::time::Duration;

use wayprobe::diag::SourceFile;
use wayprobe::journey::{LoadOptions, load::load_sources};
use wayprobe::outcome::{Reason, RunResult, StepStatus};

use crate::support::{bin, eventually, get, journey, root, run, target::Target};

/// The journey `j.yaml` (`name: j`, then `rest`) loaded with the fragments
/// file `frags`, pointed at `t`.
fn with_fragments(frags: Arc<SourceFile>, rest: &str, t: &Target) -> wayprobe::journey::Journey {
    let j = SourceFile::new(
        "j.yaml",
        format!("name: j\nvars: {{base_url: \"http://127.0.0.1:9\"}}\n{rest}"),
    );
    let opts = LoadOptions {
        vars: [("base_url".to_string(), t.base.clone())].into(),
        ..Default::default()
    };
    let mut loaded = load_sources(vec![frags, j], &opts, Vec::new()).unwrap();
    // Two files, one journey: the fragments file is not one.
    assert_eq!((loaded.journeys.len(), loaded.files), (1, 2));
    loaded.journeys.remove(0)
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_used_by_two_journeys_runs_in_each_with_its_own_params() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let json = dir.join("report.json");
    let out = bin()
        .current_dir(root())
        .args(["run", "tests/fixtures/fragments", "--var"])
        .arg(format!("base_url={}", t.base))
        .arg("--report-json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    // bob's payment fails (500); the fragments file is no journey.
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("2 journeys: 1 passed, 1 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("finally:"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let (alice, bob) = (&report["journeys"][0], &report["journeys"][1]);
    assert_eq!(alice["journey"], "alice-buys");
    assert_eq!(alice["result"], "success");
    // Expanded steps are named `<use>-<step>`: bounded, stable `step` labels.
    assert_eq!(names(&alice["steps"]), ["fill-basket-add", "pay"]);
    assert_eq!(names(&bob["steps"]), ["fill-basket-add", "more-add", "pay"]);
    assert_eq!(bob["result"], "failure");
    assert_eq!(bob["steps"][2]["failure"]["reason"], "status");
    // Each use got its own parameters (and the default where none was given).
    assert_eq!(t.hits("/basket?who=alice&items=1"), 1);
    assert_eq!(t.hits("/basket?who=bob&items=2"), 1);
    assert_eq!(t.hits("/basket?who=bob&items=1"), 1);
    // Both cleanups ran, the failed journey's too, with the captured basket id.
    assert_eq!(names(&bob["finally"]), ["empty-basket-empty"]);
    assert_eq!(bob["finally"][0]["status"], "passed");
    assert_eq!(alice["finally"][0]["status"], "passed");
    assert_eq!(t.basket(), 0);

    // `check` of one journey file sees the fragments next to it.
    let out = bin()
        .current_dir(root())
        .args(["check", "-q", "tests/fixtures/fragments/alice.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ok: 1 journey in 2 files\n"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failing_fragment_step_points_into_the_fragment_and_at_its_use() {
    let t = Target::start().await;
    let frags = SourceFile::new(
        "frags.yaml",
        "fragments:\n  probe:\n    params: [code]\n    steps:\n      - name: get\n        http: {url: \"{{ base_url }}/status/{{ params.code }}\"}\n",
    );
    let j = &with_fragments(frags, "steps:\n  - use: probe\n    with: {code: 503}\n", &t);
    let o = run(j, &[]).await;
    assert_eq!(o.steps[0].name, "probe-get");
    assert_eq!(o.steps[0].http_status, Some(503));
    let text = wayprobe::report::text(j, &o, false, false);
    assert!(text.contains("--> frags.yaml:5:9"), "{text}");
    // The JSON report says which file the failure's `location` is in.
    let f = serde_json::to_value(o.steps[0].failure.as_ref().unwrap()).unwrap();
    assert_eq!(
        (&f["file"], &f["location"]),
        (&"frags.yaml".into(), &"5:9".into())
    );
    assert!(text.contains("in `use: probe` at j.yaml:4:5"), "{text}");
}

#[tokio::test]
async fn finally_runs_after_a_failing_step_with_the_captures_made_before() {
    let t = Target::start().await;
    let j = journey(
        r#"
name: cleanup
vars: {base_url: "http://127.0.0.1:9"}
steps:
  - name: add
    http: {method: POST, url: "{{ base_url }}/basket"}
    expect: {status: 201}
    capture: {basket: {jsonpath: "$.basket"}}
  - name: broken
    http: {url: "{{ base_url }}/status/500"}
  - name: never
    http: {url: "{{ base_url }}/ok"}
finally:
  - name: empty-basket
    http: {method: DELETE, url: "{{ base_url }}/basket/{{ basket }}"}
    expect: {status: 204}
"#,
        &[("base_url", &t.base)],
    );
    let o = run(&j, &[]).await;
    assert_eq!(o.result, RunResult::Failure);
    assert_eq!(o.steps[1].failure.as_ref().unwrap().reason, Reason::Status);
    assert_eq!(o.steps[2].status, StepStatus::Skipped);
    assert_eq!(t.hits("/ok"), 0);
    // The target proves it: the basket the run filled is empty again.
    assert_eq!(t.hits("/basket"), 1);
    assert_eq!(o.finally[0].status, StepStatus::Passed, "{:?}", o.finally);
    assert_eq!(t.basket(), 0);
    assert!(o.failed_cleanup().is_none());
}

#[tokio::test]
async fn a_failing_finally_step_leaves_the_run_passed_but_reported() {
    let t = Target::start().await;
    let j = journey(
        r#"
name: cleanup-fails
vars: {base_url: "http://127.0.0.1:9"}
steps:
  - name: home
    http: {url: "{{ base_url }}/ok"}
finally:
  - name: release
    http: {url: "{{ base_url }}/status/503"}
  - name: after-release
    http: {url: "{{ base_url }}/ok?after"}
"#,
        &[("base_url", &t.base)],
    );
    let o = run(&j, &[]).await;
    assert_eq!(o.result, RunResult::Success);
    let c = o.failed_cleanup().expect("a failed cleanup");
    assert_eq!(c.name, "release");
    assert_eq!(c.failure.as_ref().unwrap().reason, Reason::Status);
    assert_eq!(o.finally[1].status, StepStatus::Skipped);
    assert_eq!(t.hits("/ok?after"), 0);
    assert!(o.failure().is_none(), "the run's own failure stays empty");

    // Run output and the JSON report say so apart from the result.
    let text = wayprobe::report::text(&j, &o, false, false);
    assert!(text.starts_with("PASS cleanup-fails"), "{text}");
    assert!(
        text.contains("cleanup failed: `finally:` step `release` failed"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&wayprobe::report::json(std::slice::from_ref(&o))).unwrap();
    assert_eq!(json["passed"], 1);
    assert_eq!(json["journeys"][0]["finally"][0]["status"], "failed");
    assert_eq!(
        json["journeys"][0]["finally"][0]["failure"]["reason"],
        "status"
    );

    // Metrics: a success, and the cleanup's failure on its own bounded series.
    let m = wayprobe::metrics::Metrics::new("here");
    m.set_journeys(std::slice::from_ref(&j));
    m.series("cleanup-fails").unwrap().record(&o);
    let text = m.encode();
    assert!(
        text.contains(
            "journey_runs_total{journey=\"cleanup-fails\",location=\"here\",result=\"success\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("journey_finally_step_failures_total{journey=\"cleanup-fails\",location=\"here\",step=\"release\",reason=\"status\"} 1"),
        "{text}"
    );
    assert!(!text.contains("journey_step_failures_total{"), "{text}");

    // The status store (page and API): passing, with the cleanup counted.
    let store = wayprobe::status::StatusStore::new("here");
    store.set_journeys(&[Arc::new(j.clone())]);
    store.update(wayprobe::attempt::Attempted::once(o));
    let st = &store.snapshot()[0];
    assert_eq!(st.state(), "passing");
    assert_eq!(st.cleanup_failures, 1);
    assert_eq!(&*st.last_cleanup_failure.as_ref().unwrap().step, "release");
}

#[tokio::test]
async fn a_run_timeout_still_runs_finally_within_its_own_bounded_budget() {
    let t = Target::start().await;
    let j = journey(
        r#"
name: timed-out
interval: 1m
timeout: 1s
vars: {base_url: "http://127.0.0.1:9"}
steps:
  - name: add
    http: {method: POST, url: "{{ base_url }}/basket"}
    capture: {basket: {jsonpath: "$.basket"}}
  - name: slow
    http: {url: "{{ base_url }}/slow?ms=30000"}
finally:
  - name: empty-basket
    http: {method: DELETE, url: "{{ base_url }}/basket/{{ basket }}"}
  - name: hung-cleanup
    http: {url: "{{ base_url }}/slow?ms=60000"}
"#,
        &[("base_url", &t.base)],
    );
    let o = run(&j, &[]).await;
    assert_eq!(o.result, RunResult::Failure);
    assert_eq!(o.steps[1].failure.as_ref().unwrap().reason, Reason::Timeout);
    assert_eq!(o.finally[0].status, StepStatus::Passed, "{:?}", o.finally);
    assert_eq!(t.basket(), 0);
    // A hung cleanup ends with the budget, and says which budget.
    let f = o.finally[1].failure.as_ref().unwrap();
    assert_eq!(f.reason, Reason::Timeout);
    assert!(
        f.message.contains("`finally:` budget (1s)"),
        "{}",
        f.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_when_a_fragments_file_changes() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let frag = |path: &str, step: &str| {
        format!(
            "fragments:\n  ping:\n    steps:\n      - name: {step}\n        http: {{url: \"{{{{ base_url }}}}{path}\"}}\n"
        )
    };
    std::fs::write(dir.join("steps.yaml"), frag("/ok?v=1", "get")).unwrap();
    std::fs::write(
        dir.join("uses.yaml"),
        "name: uses\ninterval: 500ms\ntimeout: 400ms\nvars: {base_url: \"http://127.0.0.1:9\"}\nsteps:\n  - use: ping\n",
    )
    .unwrap();
    let s = crate::serve::Running::start(&dir, &t, Duration::from_millis(200)).await;
    s.wait_for_runs("uses", 1).await;
    let (_, api) = get(&format!("{}/api/v1/journeys", s.base)).await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["total"], 1, "a fragments file is not a journey");
    assert!(t.hits("/ok?v=1") >= 1);

    std::fs::write(dir.join("steps.yaml"), frag("/ok?v=2", "fetch")).unwrap();
    let base = s.base.clone();
    eventually(20, "the changed fragment is used", || async {
        let (_, m) = get(&format!("{base}/metrics")).await;
        (m.contains("step=\"ping-fetch\"") && !m.contains("step=\"ping-get\"")).then_some(())
    })
    .await;
    eventually(20, "a run with the new fragment", || async {
        (t.hits("/ok?v=2") >= 1).then_some(())
    })
    .await;
    s.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn nested_fragments_pass_params_down_and_render_each_use_once() {
    let t = Target::start().await;
    let frags = SourceFile::new(
        "frags.yaml",
        r#"fragments:
  visit:
    params: [id]
    steps:
      - name: first
        http: {url: "{{ base_url }}/ok?id={{ params.id }}"}
      - name: again
        http: {url: "{{ base_url }}/ok?id={{ params.id }}"}
  shop:
    params: {who: {default: alice}}
    steps:
      - use: visit
        with: {id: "{{ params.who }}-{{ uuid() }}"}
"#,
    );
    let j = &with_fragments(
        frags,
        "steps:\n  - use: shop\nfinally:\n  - use: visit\n    name: bye\n    with: {id: bye}\n",
        &t,
    );
    let o = run(j, &[]).await;
    assert_eq!(o.result, RunResult::Success, "{:?}", o.failure());
    let names: Vec<&str> = o.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["shop-visit-first", "shop-visit-again"]);
    assert_eq!(o.finally[1].name, "bye-again");
    assert_eq!(t.hits("/ok?id=bye"), 2);
    // The outer default reached the inner use, and `uuid()` was rendered
    // once for both steps of the use.
    // (Outputs mask query values, so the target's log says what was sent.)
    let seen = t.hits_starting("/ok?id=alice-");
    assert_eq!(seen.len(), 1, "one id for both steps: {seen:?}");
    assert_eq!(seen[0].1, 2, "{seen:?}");
}

/// A `with:` value that reads a secret that cannot be read fails like a
/// step reading it directly: reason `secret`, at the value, in the journey's
/// file; the steps before it ran, and so does the cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_secret_passed_to_a_fragment_is_a_secret_failure() {
    let t = Target::start().await;
    let frags = SourceFile::new(
        "frags.yaml",
        "fragments:\n  login:\n    params: [password]\n    steps:\n      - name: post\n        http: {url: \"{{ base_url }}/ok?pw={{ params.password }}\"}\n",
    );
    let j = with_fragments(
        frags,
        "secrets: {pw: {env: WAYPROBE_SURELY_UNSET_PW}}\nsteps:\n  - name: home\n    http: {url: \"{{ base_url }}/ok?home\"}\n  - use: login\n    with: {password: \"{{ secret.pw }}\"}\nfinally:\n  - name: bye\n    http: {url: \"{{ base_url }}/ok?bye\"}\n",
        &t,
    );
    let o = run(&j, &[]).await;
    let f = o.failure().expect("fails");
    assert_eq!(f.reason, wayprobe::outcome::Reason::Secret, "{f:#?}");
    assert!(f.message.contains("secret `pw`"), "{f:#?}");
    assert_eq!(f.file.as_deref(), Some("j.yaml"), "{f:#?}");
    assert_eq!(f.location.as_deref(), Some("8:22"), "{f:#?}");
    assert_eq!(t.hits("/ok?home"), 1);
    assert_eq!(t.hits("/ok?bye"), 1);
}
