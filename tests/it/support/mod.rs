//! Shared test helpers.
#![allow(dead_code)]

pub mod golden;
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

/// Whether an external tool is on PATH. Missing: the test skips with a
/// message, unless `WAYPROBE_REQUIRE_TOOLS=1` (CI), where it fails.
pub fn tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var_os("WAYPROBE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!(
                "`{name}` is required (WAYPROBE_REQUIRE_TOOLS=1) but not installed; run ./scripts/test"
            );
        }
        eprintln!("skipping: `{name}` is not installed (./scripts/test installs it)");
    }
    found
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
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

/// Polls `f` every 100ms until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
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
