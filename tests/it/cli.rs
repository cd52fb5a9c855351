//! `wayprobe run` and `wayprobe demo` as a user runs them: exit codes, output
//! (golden, with timings normalised) and reports.

use crate::support::{bin, golden::assert_golden, normalize_timings, root, target::Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_each_step_and_points_at_the_failing_assertion() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let junit = dir.join("junit.xml");
    let json = dir.join("report.json");
    let out = bin()
        .current_dir(root())
        .args(["run", "tests/fixtures/run/checkout-broken.yaml", "--var"])
        .arg(format!("base_url={}", t.base))
        .arg("--report-junit")
        .arg(&junit)
        .arg("--report-json")
        .arg(&json)
        .args([
            "--trace-url-template",
            "https://tempo.example/trace/{trace_id}",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The failed run's trace, linked; the same id in every report.
    let id_re = regex::Regex::new(r"[0-9a-f]{32}").unwrap();
    let trace_id = id_re
        .find(&stdout)
        .expect("a trace id")
        .as_str()
        .to_string();
    assert_golden(
        "run/checkout-broken.out",
        &id_re.replace_all(&normalize_timings(&stdout), "<TRACE_ID>"),
    );

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["failed"], 1);
    assert_eq!(
        report["journeys"][0]["steps"][1]["failure"]["reason"],
        "status"
    );
    assert_eq!(report["journeys"][0]["steps"][2]["status"], "skipped");
    // Captures are shown, a `redact: true` one masked everywhere.
    let caps = &report["journeys"][0]["steps"][0]["captures"];
    assert_eq!(caps[0], serde_json::json!({"name": "word", "value": "o"}));
    assert_eq!(caps[1]["name"], "kind");
    assert_ne!(caps[1]["value"], "");
    let raw = std::fs::read_to_string(&json).unwrap();
    assert!(
        !raw.contains("text/plain") && !stdout.contains("text/plain"),
        "{raw}"
    );
    assert_eq!(report["journeys"][0]["trace_id"], trace_id.as_str());
    assert_eq!(
        report["journeys"][0]["trace_url"],
        format!("https://tempo.example/trace/{trace_id}").as_str()
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!(
            "<property name=\"trace_id\" value=\"{trace_id}\"/>"
        )),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<testsuite name=\"checkout-broken\" tests=\"3\" failures=\"1\" skipped=\"1\""
        ),
        "{xml}"
    );
    assert!(xml.contains("<failure type=\"status\""), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_0_when_everything_passes() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let f = dir.join("ok.yaml");
    std::fs::write(
        &f,
        format!(
            "steps:\n  - name: home\n    http: {{url: \"{}/ok\"}}\n",
            t.base
        ),
    )
    .unwrap();
    let out = bin().arg("run").arg(&f).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("PASS ok "), "{stdout}");
    assert!(stdout.contains(", 1 step)"), "{stdout}");
    assert!(stdout.contains("1 journey: 1 passed, 0 failed"));
}

#[test]
fn run_refuses_invalid_journeys_with_exit_2() {
    let out = bin()
        .current_dir(root())
        .args(["run", "tests/fixtures/invalid/unknown-key.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `status`?"));
}

/// A report path that cannot be written is a usage error before any
/// journey runs (the journey here would hit the target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_report_is_refused_before_running() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let yaml = dir.join("j.yaml");
    std::fs::write(
        &yaml,
        format!(
            "name: j\ninterval: 1m\nsteps:\n  - name: s\n    http: {{url: \"{}/ok?report-test\"}}\n",
            t.base
        ),
    )
    .unwrap();
    for flag in ["--report-json", "--report-junit"] {
        let out = bin()
            .arg("run")
            .arg(&yaml)
            .args([flag, "/nonexistent-dir/r.out"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("cannot write the report /nonexistent-dir/r.out"),
            "{stderr}"
        );
    }
    assert_eq!(t.hits("/ok?report-test"), 0, "no journey ran");
}

#[test]
fn demo_probes_the_demo_shop_with_the_examples() {
    let out = bin().arg("demo").arg("--once").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Browser journeys are included when chromedriver is installed.
    let expected = if crate::support::tool("chromedriver") {
        "5 journeys: 5 passed, 0 failed"
    } else {
        "3 journeys: 3 passed, 0 failed"
    };
    assert!(stdout.contains(expected), "{stdout}");
}

/// The shipped HTTP examples pass against the demo shop (from disk, as users
/// edit them); the browser ones are run in `browser.rs`.
#[tokio::test]
async fn example_journeys_pass_against_the_demo_shop() {
    let (base, _shop) = crate::support::demo_shop().await;
    let opts = wayprobe::journey::LoadOptions {
        vars: [("base_url".to_string(), base)].into(),
        ..Default::default()
    };
    let loaded = wayprobe::journey::load_paths(&[root().join("journeys")], &opts).unwrap();
    assert!(loaded.journeys.len() >= 3);
    for j in loaded.journeys.iter().filter(|j| !j.uses_browser()) {
        let o =
            crate::support::run(j, &[("SHOP_PASSWORD", wayprobe::demo::DemoShop::PASSWORD)]).await;
        assert_eq!(
            o.result,
            wayprobe::outcome::RunResult::Success,
            "{}",
            wayprobe::report::text(j, &o, false, false)
        );
    }
}

/// An HTTP-only build (`--no-default-features`; ./scripts/test runs this test
/// in one) loads a journey with a browser step and records that step as a
/// `browser_session` failure after the HTTP step ran: no crash, no hang.
#[cfg(not(feature = "browser"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_only_build_fails_a_browser_step_with_browser_session() {
    let t = Target::start().await;
    let (code, stdout, report) = run_one(&format!(
        "steps:\n  - name: home\n    http: {{url: \"{}/ok\"}}\n  - name: look\n    browser:\n      - goto: \"{}/form\"\n",
        t.base, t.base
    ));
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("no browser support"), "{stdout}");
    let steps = &report["journeys"][0]["steps"];
    assert_eq!(steps[0]["status"], "passed", "{report}");
    assert_eq!(steps[1]["status"], "failed", "{report}");
    assert_eq!(steps[1]["failure"]["reason"], "browser_session", "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_chooses_journeys_by_glob_and_runs_them_one_at_a_time() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    for name in ["buy-a", "buy-b", "browse"] {
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            format!(
                "steps:\n  - name: slow\n    http: {{url: \"{}/slow?ms=300\"}}\n",
                t.base
            ),
        )
        .unwrap();
    }
    let json = dir.join("report.json");
    let out = bin()
        .arg("run")
        .arg(&dir)
        .args(["--journey", "buy-*", "--jobs", "1", "--report-json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("PASS buy-a") && stdout.contains("PASS buy-b"),
        "{stdout}"
    );
    assert!(!stdout.contains("browse"), "{stdout}");
    // One at a time: each run starts after the one before has ended.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let mut spans: Vec<(std::time::SystemTime, f64)> = report["journeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                humantime::parse_rfc3339(j["started_at"].as_str().unwrap()).unwrap(),
                j["duration"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(spans.len(), 2);
    spans.sort_by_key(|s| s.0);
    let first_end = spans[0].0 + std::time::Duration::from_secs_f64(spans[0].1);
    // started_at has millisecond precision.
    assert!(
        spans[1].0 + std::time::Duration::from_millis(1) >= first_end,
        "{spans:?}"
    );

    // A glob that matches nothing, or is not a glob, is the user's error.
    for (pat, want) in [
        ("chekout*", "matches no journey; the journeys are: "),
        ("buy-[", "is not a glob"),
    ] {
        let out = bin()
            .arg("run")
            .arg(&dir)
            .args(["--journey", pat])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
    }
    let out = bin()
        .arg("run")
        .arg(&dir)
        .args(["--jobs", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_listen_address_without_a_port_is_a_usage_error() {
    let out = bin()
        .current_dir(root())
        .args(["serve", "--journeys", "journeys", "--listen", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`localhost` is not HOST:PORT; write e.g. `:9469`"),
        "{stderr}"
    );
}

/// A run that passed only on its retry says so in `run`'s output and JSON
/// report: a retry never hides the first failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_says_when_a_pass_needed_a_retry() {
    let t = Target::start().await;
    let (code, stdout, report) = run_one(&format!(
        "name: flaky\ninterval: 10s\ntimeout: 2s\nretries: 2\nretry_delay: 100ms\nsteps:\n  - name: get\n    http: {{url: \"{}/alternate\"}}\n",
        t.base
    ));
    // The target fails every other request, starting with the first.
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.starts_with("PASS flaky") && stdout.contains("2 attempts: the first failed"),
        "{stdout}"
    );
    assert_eq!(report["journeys"][0]["attempts"], 2, "{report}");
}

/// `wayprobe run` on one journey file written from `yaml`: its exit code,
/// stdout and JSON report.
fn run_one(yaml: &str) -> (Option<i32>, String, serde_json::Value) {
    let dir = crate::http::tempdir();
    let f = dir.join("journey.yaml");
    std::fs::write(&f, yaml).unwrap();
    let json = dir.join("report.json");
    let out = bin()
        .arg("run")
        .arg(&f)
        .arg("--report-json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (out.status.code(), stdout, report)
}

/// A new directory with `journey.yaml`: one step that fails (`503`).
fn failing_journey(t: &Target) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = crate::http::tempdir();
    let f = dir.join("journey.yaml");
    std::fs::write(
        &f,
        format!(
            "name: down\ninterval: 10s\ntimeout: 5s\nsteps:\n  - name: get\n    http: {{url: \"{}/status/503\"}}\n",
            t.base
        ),
    )
    .unwrap();
    (dir, f)
}

/// `run` reaches a TLS collector (gRPC and http/protobuf) trusting the CA
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` names, and a CA file it cannot use is
/// refused at start (exit 2), naming the variable and the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exports_to_a_tls_collector_the_standard_variables_name() {
    use crate::support::otlp::{Mode, Pki, Receiver, ServerTls, Transport};
    let t = Target::start().await;
    let (dir, f) = failing_journey(&t);
    let pki = Pki::new();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca).unwrap();
    for (transport, protocol) in [
        (Transport::Grpc, "grpc"),
        (Transport::Http, "http/protobuf"),
    ] {
        let tls = ServerTls {
            server: &pki,
            clients: None,
        };
        let rx = Receiver::serve(Mode::Accept, transport, Some(tls)).await;
        let mut cmd = bin();
        cmd.arg("run")
            .arg(&f)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.url)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &ca);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{protocol}: {stderr}");
        assert!(!stderr.contains("not exported"), "{protocol}: {stderr}");
        assert_eq!(rx.spans().len(), 3, "{protocol}");
    }
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let out = bin()
        .arg("run")
        .arg(&f)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://localhost:4318")
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &junk)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: OTEL_EXPORTER_OTLP_CERTIFICATE: cannot use `{}`: no PEM certificate in it\n",
            junk.display()
        )
    );
}

/// `run` exports a failed run's spans to the collector the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` names, before it exits, and prints the
/// same trace id; a bad `--otlp-protocol` or ratio is a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exports_a_failed_runs_spans_before_it_exits() {
    use crate::support::otlp::{Mode, Receiver, hex};
    let t = Target::start().await;
    let rx = Receiver::start(Mode::Accept).await;
    let (dir, f) = failing_journey(&t);
    let json = dir.join("report.json");
    let mut cmd = bin();
    cmd.arg("run")
        .arg(&f)
        .arg("--report-json")
        .arg(&json)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.url);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let id = report["journeys"][0]["trace_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stdout.contains(&format!("trace: {id}")), "{stdout}");
    let spans = rx.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(spans.iter().all(|s| hex(&s.trace_id) == id));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not exported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A collector that is down: the run still reports, and says the spans
    // were lost (once, at the end).
    let mut cmd = bin();
    cmd.arg("run").arg(&f).env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{}", crate::support::free_port()),
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with("warning: 3 of 3 spans were not exported (the OTLP collector is down, refused them or did not answer in time)\n"),
        "{stderr}"
    );

    // A gRPC collector that accepts and never answers: whichever limit
    // cuts the export first (the exporter's or run's own), the run says so.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = bin();
    cmd.arg("run")
        .arg(&f)
        .args(["--otlp-protocol", "grpc", "--otlp-endpoint"])
        .arg(format!("http://{}", hung.local_addr().unwrap()));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    drop(hung);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("warning: ")
            && (last.contains("spans were not exported")
                || last.contains("did not take this run's spans")),
        "{stderr}"
    );

    for (flag, value, says) in [
        (
            "--otlp-protocol",
            "http/json",
            "write `http/protobuf` or `grpc`",
        ),
        ("--trace-sample-ratio", "5", "not a ratio from 0 to 1"),
    ] {
        let out = bin().args(["run", "x.yaml", flag, value]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// `RUST_LOG=trace` shows wayprobe's own lines and its dependencies' up
/// to `info` only: their debug lines carry cookie values and headers (the
/// cookie jar logs every `Set-Cookie` it stores), which are credentials.
#[tokio::test]
async fn rust_log_trace_writes_no_cookie_or_secret() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    std::fs::create_dir(dir.join("journeys")).unwrap();
    std::fs::write(
        dir.join("journeys/j.yaml"),
        format!(
            r#"name: j
interval: 1s
secrets: {{pw: {{env: LOG_PW}}}}
steps:
  - name: session
    http: {{url: "{base}/set-cookie?name=sess&value=c00kieVALUE"}}
  - name: login
    http:
      method: POST
      url: "{base}/echo"
      headers: {{x-api-key: "{{{{ secret.pw }}}}"}}
      raw: "{{{{ secret.pw }}}}"
    expect: {{status: 500}}
"#,
            base = t.base
        ),
    )
    .unwrap();
    let port = crate::support::free_port();
    let log = dir.join("serve.log");
    let mut child = bin()
        .current_dir(&dir)
        .args(["serve", "--journeys", "journeys", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "trace")
        .env("LOG_PW", "hunter2SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let needle = "journey_runs_total{journey=\"j\",location=\"local\",result=\"success\"} ";
    crate::support::eventually(30, "two passing runs of j", || async {
        let m = crate::support::text(&format!("http://127.0.0.1:{port}/metrics")).await?;
        let n: u64 = m
            .lines()
            .find(|l| l.starts_with(needle))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()?;
        (n >= 2).then_some(())
    })
    .await;
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("DEBUG run finished"), "{logs}");
    assert!(
        !logs.contains("c00kieVALUE"),
        "a cookie value was logged:\n{logs}"
    );
    assert!(
        !logs.contains("hunter2SECRET"),
        "the secret was logged:\n{logs}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
