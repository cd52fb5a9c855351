//! Papercuts of the command line and of run-time names, each pinned: a
//! `--var` nobody reads, counts and plurals, what a run says when an
//! `env.NAME` or a secret is missing, and where the artifacts go.

use wayprobe::outcome::{Reason, RunResult, StepStatus};

use crate::support::{bin, golden::assert_golden, journey, root, run, target::Target};

fn journey_file(dir: &std::path::Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    p
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wayprobe-usage-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const SHOP: &str = "name: shop\nvars:\n  base_url: http://127.0.0.1:1\n  username: alice\nsteps:\n  - name: home\n    http: {url: \"{{ base_url }}/\"}\n";

/// Runs `wayprobe ARGS` in `dir`: exit code, stdout and stderr.
fn wayprobe(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A misspelled `--var` is refused (exit 2) with the name to write, by
/// every command that takes `--var`, before anything runs or binds.
#[test]
fn an_unknown_var_is_a_usage_error_with_did_you_mean() {
    let dir = scratch("var");
    journey_file(&dir, "shop.yaml", SHOP);
    let (code, _, stderr) = wayprobe(
        &dir,
        &[
            "check",
            "shop.yaml",
            "--var",
            "baseurl=https://secret-host.example",
        ],
    );
    assert_eq!(code, Some(2));
    assert_golden("check/unknown-var.err", &stderr);
    assert!(!stderr.contains("secret-host"), "the value is never shown");
    for cmd in [
        &["run", "shop.yaml"][..],
        &["rules", "shop.yaml"],
        &[
            "serve",
            "--journeys",
            "shop.yaml",
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let args: Vec<&str> = cmd.iter().copied().chain(["--var", "baseurl=x"]).collect();
        let (code, _, stderr) = wayprobe(&dir, &args);
        assert_eq!(code, Some(2), "{cmd:?}: {stderr}");
        assert!(
            stderr.contains("did you mean `--var base_url=...`?"),
            "{cmd:?}: {stderr}"
        );
    }
    // Declared and read names pass, and so does a name only a template reads.
    journey_file(
        &dir,
        "bare.yaml",
        "name: bare\nsteps:\n  - name: home\n    http: {url: \"{{ host }}/\"}\n",
    );
    for args in [
        &[
            "check",
            "-q",
            "shop.yaml",
            "--var",
            "username=bob",
            "--var",
            "base_url=http://x",
        ][..],
        &["check", "-q", "bare.yaml", "--var", "host=http://x"],
    ] {
        let (code, _, stderr) = wayprobe(&dir, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
    // What a step captures is set by the run, and `params` only by a
    // fragment's `with:`: neither is a `--var`, nor offered as one.
    journey_file(
        &dir,
        "login.yaml",
        "name: login\nvars:\n  base_url: http://x\nsteps:\n  - name: login\n    http: {url: \"{{ base_url }}/login\"}\n    capture:\n      token: {jsonpath: \"$.token\"}\n  - name: account\n    http: {url: \"{{ base_url }}/a\", headers: {Authorization: \"Bearer {{ token }}\"}}\n",
    );
    for name in ["token", "params", "env", "secret"] {
        let var = format!("{name}=x");
        let (code, _, stderr) = wayprobe(&dir, &["check", "-q", "login.yaml", "--var", &var]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("= the journeys' variables: `base_url`\n"),
            "{name}: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Counts agree with what was read, in the right number.
#[test]
fn summaries_count_files_and_say_one_in_the_singular() {
    let (_, stdout, _) = wayprobe(&root(), &["check", "-q", "journeys/api-login.yaml"]);
    assert_eq!(
        stdout, "ok: 1 journey in 2 files\n",
        "with the fragments file beside it"
    );
    let (_, _, stderr) = wayprobe(&root(), &["check", "/nonexistent/shop.yaml"]);
    assert!(
        stderr.ends_with("error: 1 error in 1 file of 1\n"),
        "{stderr}"
    );
    let (_, _, stderr) = wayprobe(
        &root(),
        &["check", "/nonexistent/shop.yaml", "journeys/checkout.yaml"],
    );
    assert!(
        stderr.ends_with("error: 1 error in 1 file of 3\n"), // with the fragments file checkout.yaml uses,
        "{stderr}"
    );
}

/// The status page counts its journeys in the right number.
#[tokio::test]
async fn the_status_page_says_1_journey() {
    let dir = scratch("page");
    journey_file(&dir, "shop.yaml", SHOP);
    let port = crate::support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = bin()
        .current_dir(&dir)
        .args(["serve", "--journeys", "shop.yaml", "--listen", &listen])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://{listen}/");
    let page = crate::support::eventually(20, "the status page", || async {
        match crate::support::client().get(&url).send().await {
            Ok(r) => r.text().await.ok(),
            Err(_) => None,
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(page.contains("<h1>wayprobe — 1 journey, "), "{page}");
}

/// `run --help` and the README say where screenshots of failed browser
/// steps go by default.
#[test]
fn the_default_artifacts_directory_is_documented() {
    let (_, help, _) = wayprobe(&root(), &["run", "--help"]);
    assert!(help.contains("$TMPDIR/wayprobe-artifacts-<uid>"), "{help}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("`$TMPDIR/wayprobe-artifacts-<uid>`"));
}

/// An unset `env.NAME` is named, and the failure points at the template
/// that reads it, not at the step's name.
#[tokio::test]
async fn an_unset_env_variable_is_named_where_it_is_read() {
    let t = Target::start().await;
    let yaml = format!(
        "name: e\nsteps:\n  - name: home\n    http: {{url: \"{}/ok\"}}\n  - name: api\n    http:\n      url: \"{}/ok\"\n      headers: {{x-key: \"{{{{ env.WAYPROBE_TEST_SURELY_UNSET }}}}\"}}\n",
        t.base, t.base
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Failure);
    assert_eq!(o.steps[0].status, StepStatus::Passed);
    let f = o.steps[1].failure.as_ref().expect("the api step fails");
    assert_eq!(f.reason, Reason::Template);
    assert!(
        f.message
            .contains("environment variable `WAYPROBE_TEST_SURELY_UNSET` (`env.WAYPROBE_TEST_SURELY_UNSET`) is not set"),
        "{}",
        f.message
    );
    assert_eq!(f.location.as_deref(), Some("8:24"), "the header's template");
}

/// An unset secret fails the step that uses it, at the template that
/// reads it; the steps before it run.
#[tokio::test]
async fn an_unset_secret_is_blamed_on_the_step_that_uses_it() {
    let t = Target::start().await;
    let yaml = format!(
        "name: s\nsecrets:\n  password: {{env: WAYPROBE_TEST_UNSET_PASSWORD}}\nsteps:\n  - name: home\n    http: {{url: \"{}/ok\"}}\n  - name: log-in\n    http:\n      method: POST\n      url: \"{}/echo\"\n      form: {{password: \"{{{{ secret.password }}}}\"}}\n  - name: account\n    http: {{url: \"{}/ok\"}}\n",
        t.base, t.base, t.base
    );
    let o = run(&journey(&yaml, &[]), &[]).await;
    assert_eq!(o.result, RunResult::Failure);
    assert_eq!(
        o.steps[0].status,
        StepStatus::Passed,
        "home needs no secret"
    );
    let f = o.steps[1].failure.as_ref().expect("log-in fails");
    assert_eq!(f.reason, Reason::Secret);
    assert_eq!(
        f.message,
        "secret `password`: environment variable `WAYPROBE_TEST_UNSET_PASSWORD` is not set"
    );
    assert_eq!(
        f.location.as_deref(),
        Some("11:24"),
        "the form field's template"
    );
    assert_eq!(o.steps[2].status, StepStatus::Skipped);
    // Set but empty is said as such.
    let o = run(
        &journey(&yaml, &[]),
        &[("WAYPROBE_TEST_UNSET_PASSWORD", "")],
    )
    .await;
    assert_eq!(
        o.steps[1].failure.as_ref().expect("log-in fails").message,
        "secret `password`: environment variable `WAYPROBE_TEST_UNSET_PASSWORD` is empty"
    );
}

/// `report` and `slo review` name the Prometheus or serve they could not
/// read (its password masked) and why.
#[test]
fn unreadable_history_names_the_url_without_its_password() {
    let port = crate::support::free_port();
    let prom = format!("http://reader:s3cr3t-pw@127.0.0.1:{port}/");
    let (code, _, stderr) = wayprobe(
        &root(),
        &[
            "report",
            "journeys",
            "--prometheus-url",
            &prom,
            "--format",
            "json",
        ],
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: reading --prometheus-url http://reader:***@127.0.0.1:{port}/: Prometheus query failed: cannot connect\n"
        )
    );
    let serve = format!("http://127.0.0.1:{port}");
    let (code, _, stderr) = wayprobe(
        &root(),
        &["slo", "review", "journeys", "--serve-url", &serve],
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: cannot read /api/v1/journeys from --serve-url http://127.0.0.1:{port}/: cannot connect\n"
        )
    );
}
