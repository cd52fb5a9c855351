//! Shared test helpers.
#![allow(dead_code)]

pub mod golden;
pub mod hostile;
pub mod otlp;
pub mod target;

use std::collections::BTreeMap;
use std::path::PathBuf;

use wayprobe::diag::SourceFile;
use wayprobe::journey::{Journey, LoadOptions, load::load_sources};
use wayprobe::outcome::JourneyOutcome;
use wayprobe::run::{RunOptions, Runner};

/// Loads one journey from YAML text, with `--var` style overrides.
pub fn journey(yaml: &str, vars: &[(&str, &str)]) -> Journey {
    let opts = LoadOptions {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    match load_sources(vec![SourceFile::new("test.yaml", yaml)], &opts, Vec::new()) {
        Ok(mut l) => l.journeys.remove(0),
        Err(e) => {
            let text: String = e.diagnostics().iter().map(|d| d.render(false)).collect();
            panic!("invalid test journey:\n{text}");
        }
    }
}

/// Runs a journey once with default options (plus env overrides for secrets).
pub async fn run(j: &Journey, env: &[(&str, &str)]) -> JourneyOutcome {
    let runner = Runner::new(RunOptions {
        env_overrides: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    });
    runner.run(j).await
}

/// The `wayprobe` binary built for these tests.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_wayprobe"));
    c.env("NO_COLOR", "1");
    c
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces timings like `12ms`, `1.25s` and `(37ms, 5 steps)` by stable text.
pub fn normalize_timings(s: &str) -> String {
    let re = regex::Regex::new(r"\b\d+(\.\d+)?(ms|s)\b").unwrap();
    re.replace_all(s, "<T>").to_string()
}

/// Whether `WAYPROBE_REQUIRE_TOOLS` is set to a truthy value (anything but
/// empty, `0`, `false`, `no` or `off`, in any case). CI sets it (`.ci/run`):
/// then a missing tool fails the test instead of skipping it.
pub fn tools_required() -> bool {
    truthy("WAYPROBE_REQUIRE_TOOLS")
}

/// Whether the environment variable `name` is set to a truthy value.
pub fn truthy(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !matches!(v.as_str(), "" | "0" | "false" | "no" | "off")
    })
}

/// Whether an external tool runs: present only when `NAME --version` starts
/// and exits 0 (a file of that name is not enough). Missing: the test skips
/// (see [`skip`]), unless [`tools_required`], where it fails.
pub fn tool(name: &str) -> bool {
    static SEEN: std::sync::Mutex<BTreeMap<String, bool>> = std::sync::Mutex::new(BTreeMap::new());
    let runs = *SEEN
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_insert_with(|| runs(name.as_ref()));
    if !runs {
        if tools_required() {
            panic!(
                "`{name}` is required (WAYPROBE_REQUIRE_TOOLS is set) but `{name} --version` \
                 does not run; ./scripts/test installs it"
            );
        }
        skip(&format!(
            "`{name} --version` does not run (./scripts/test installs it)"
        ));
    }
    runs
}

/// Whether `program --version` starts and exits 0.
fn runs(program: &std::ffi::OsStr) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_tool_is_present_only_when_it_runs() {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::http::tempdir();
    let script = |name: &str, body: &str, mode: u32| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let ok = script("ok", "#!/bin/sh\nexit 0\n", 0o755);
    let not_executable = script("plain", "#!/bin/sh\nexit 0\n", 0o644);
    let broken = script("broken", "#!/bin/sh\nexit 127\n", 0o755);
    assert!(runs(ok.as_os_str()));
    assert!(!runs(not_executable.as_os_str()));
    assert!(!runs(broken.as_os_str()));
    assert!(!runs(dir.join("absent").as_os_str()));
}

/// Records that the current test skips its checks: a line on stderr, and one
/// line `SKIPPED <test>: <why>` in the file named by `WAYPROBE_SKIP_LOG`
/// (set by ./scripts/test, whose closing summary counts and lists them).
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    eprintln!("skipping {test}: {why}");
    if let Some(log) = std::env::var_os("WAYPROBE_SKIP_LOG").filter(|v| !v.is_empty()) {
        use std::io::Write;
        // One write per line: tests in parallel threads append whole lines.
        let line = format!("SKIPPED {test}: {why}\n");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot append to WAYPROBE_SKIP_LOG {log:?}: {e}"));
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `url` and return (status, body).
pub async fn get(url: &str) -> (u16, String) {
    let r = crate::support::client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

/// How long any one request of a test may take, connecting included: a
/// server that accepts and never answers fails the test with the URL, never
/// hangs the suite (nothing in a test waits without a bound).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A fresh HTTP client for a test (pools die with each test's runtime):
/// bounded by [`REQUEST_TIMEOUT`], and never through the environment's proxy,
/// since every test server is on loopback.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(std::time::Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("a test HTTP client")
}

/// The body of `GET url`, or `None` when the request or its body failed
/// (for polling with [`eventually`]).
pub async fn text(url: &str) -> Option<String> {
    client().get(url).send().await.ok()?.text().await.ok()
}

/// Polls `f` every 100ms until it returns Some, or panics after `secs`.
/// Each attempt is bounded by what is left of `secs`, so one attempt that
/// never ends fails the wait instead of hanging it.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let left = deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(std::time::Duration::from_secs(1));
        match tokio::time::timeout(left, f()).await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(_) => panic!("timed out after {secs}s waiting for {what} (an attempt never ended)"),
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Starts the demo shop on 127.0.0.1:0; returns its base URL and its handle.
pub async fn demo_shop() -> (String, wayprobe::demo::DemoShop) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let shop = wayprobe::demo::DemoShop::new();
    tokio::spawn(wayprobe::demo::serve(
        l,
        shop.clone(),
        std::future::pending(),
    ));
    (base, shop)
}

/// A runner that knows the demo shop's password (the `SHOP_PASSWORD` secret).
pub fn shop_runner() -> Runner {
    Runner::new(RunOptions {
        env_overrides: [(
            "SHOP_PASSWORD".to_string(),
            wayprobe::demo::DemoShop::PASSWORD.to_string(),
        )]
        .into(),
        ..Default::default()
    })
}

/// A real Prometheus server for a test, killed on drop.
pub struct Prometheus {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML) in `dir` and waits until it is
    /// ready. Retries on a new port if another process took the chosen one.
    pub async fn start(dir: &std::path::Path, config: &str) -> Prometheus {
        Self::start_with(dir, config, &[]).await
    }

    /// Like [`Prometheus::start`], with extra command-line flags
    /// (`--enable-feature=exemplar-storage`).
    pub async fn start_with(dir: &std::path::Path, config: &str, flags: &[&str]) -> Prometheus {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.join(format!("prometheus-{attempt}.log"));
            let child = std::process::Command::new("prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(flags)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("prometheus starts");
            let mut p = Prometheus {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = p.child.try_wait() {
                    break;
                }
                // Briefly, and Prometheus' own answer: the chosen port may
                // have gone to another test's server (one that never
                // answers, or a wayprobe that is ready too) while this
                // Prometheus failed to bind it and is exiting.
                if let Ok(r) = crate::support::client()
                    .get(format!("{}/-/ready", p.url))
                    .timeout(std::time::Duration::from_secs(2))
                    .send()
                    .await
                    && r.status() == 200
                    && r.text().await.is_ok_and(|t| t.contains("Prometheus"))
                {
                    return p;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            last_log = p.log();
        }
        panic!("prometheus did not become ready:\n{last_log}");
    }

    /// What Prometheus logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON answer of `GET /api/v1/{path}?{params}`; panics when there is none.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let url = format!("{}/api/v1/{path}", self.url);
        let r = crate::support::client()
            .get(&url)
            .query(params)
            .send()
            .await;
        let body = r
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .text()
            .await
            .unwrap();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
    }

    /// The result vector of an instant query (`None` if the query failed).
    pub async fn query(&self, q: &str) -> Option<Vec<serde_json::Value>> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.url,
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        let body = crate::support::text(&url).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].as_array().cloned()
    }
}
