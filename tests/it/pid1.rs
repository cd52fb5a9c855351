//! wayprobe as PID 1 of its own PID namespace (what a container gives it):
//! browser runs must leave no zombie processes. Runs the real binary under
//! `unshare --pid --fork` (root) with real chromedriver and Chromium against
//! the demo shop. Skipped when unshare or the browser is missing, or when
//! PID namespaces cannot be created, except under `WAYPROBE_REQUIRE_TOOLS=1`.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{demo_shop, free_port, get, tool};

/// Three of these run side by side (two browser sessions at once), so 50
/// runs take one to two minutes.
const JOURNEY: &str = "interval: 4s
timeout: 3900ms
vars:
  base_url: http://127.0.0.1:1
steps:
  - name: shop
    browser:
      - goto: \"{{ base_url }}/shop\"
      - expect: {title: {contains: \"Shop\"}}
";

/// `wayprobe serve` as PID 1 of a new PID namespace, killed (with the whole
/// namespace) on drop.
struct Pid1 {
    unshare: Child,
    metrics: String,
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        // --kill-child: the namespace's init, and so every process in it, dies too.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

impl Pid1 {
    fn start(dir: &std::path::Path, base: &str, init: bool) -> Pid1 {
        let port = free_port();
        let wayprobe = env!("CARGO_BIN_EXE_wayprobe");
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"])
            .arg(wayprobe)
            .args([
                "serve",
                "--watch-interval",
                "0s",
                "--max-browser-sessions",
                "2",
            ])
            .arg(format!("--journeys={}", dir.display()))
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--var=base_url={base}"))
            .arg(format!(
                "--artifacts-dir={}",
                dir.join("artifacts").display()
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap());
        if !init {
            cmd.env("WAYPROBE_NO_INIT", "1");
        }
        Pid1 {
            unshare: cmd.spawn().expect("unshare starts"),
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// (passed, finished) runs of the test journeys.
    async fn runs(&self) -> Option<(u64, u64)> {
        let r = crate::support::client()
            .get(&self.metrics)
            .send()
            .await
            .ok()?;
        let m = r.text().await.ok()?;
        let (mut ok, mut all) = (0, 0);
        for l in m
            .lines()
            .filter(|l| l.starts_with("journey_runs_total{journey=\"pid1-"))
        {
            let n: u64 = l.rsplit(' ').next()?.parse().ok()?;
            all += n;
            if l.contains("result=\"success\"") {
                ok += n;
            }
        }
        Some((ok, all))
    }

    /// Waits for `n` finished browser runs, at least `passed` of them passed.
    /// Every run starts a Chromium, also one that times out on a loaded
    /// machine, so all of them count towards the zombie bar.
    async fn wait_for_runs(&self, n: u64, passed: u64, dir: &std::path::Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60 + n * 5);
        loop {
            if self
                .runs()
                .await
                .is_some_and(|(ok, all)| all >= n && ok >= passed)
            {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "fewer than {n} browser runs ({passed} passed) finished; serve log:\n{}",
                    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Zombies among the namespace's processes; the minimum of a few samples,
    /// so a helper that exited a moment ago and is being reaped does not count.
    async fn zombies(&self) -> usize {
        let mut least = usize::MAX;
        for _ in 0..5 {
            least = least.min(zombies_under(self.unshare.id()));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        least
    }
}

/// The host pid of the namespace's PID 1 (the child of `unshare`).
fn ns_init(unshare: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Counts processes in state Z below `root` (by parent links in /proc).
fn zombies_under(root: u32) -> usize {
    let mut children: HashMap<u32, Vec<(u32, char)>> = HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = tail.split_whitespace();
        let (Some(state), Some(ppid)) = (f.next(), f.next()) else {
            continue;
        };
        let (Ok(pid), Ok(ppid)) = (
            head.split(" (").next().unwrap_or("").trim().parse::<u32>(),
            ppid.parse::<u32>(),
        ) else {
            continue;
        };
        children
            .entry(ppid)
            .or_default()
            .push((pid, state.chars().next().unwrap_or('?')));
    }
    let mut stack = vec![root];
    let mut zombies = 0;
    while let Some(p) = stack.pop() {
        for &(c, state) in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if state == 'Z' {
                zombies += 1;
            }
            stack.push(c);
        }
    }
    zombies
}

/// A directory with the three test journeys.
fn journeys() -> std::path::PathBuf {
    let dir = crate::http::tempdir();
    for n in ["a", "b", "c"] {
        std::fs::write(dir.join(format!("pid1-{n}.yaml")), JOURNEY).unwrap();
    }
    dir
}

/// Whether this machine lets us create PID namespaces (root, no seccomp ban).
fn pid_namespaces() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("WAYPROBE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!(
                "`unshare --pid --fork` fails (WAYPROBE_REQUIRE_TOOLS=1): run the tests as root"
            );
        }
        eprintln!("skipped: cannot create a PID namespace (needs root)");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid1_fifty_browser_runs_leave_no_zombie() {
    if !(tool("unshare") && tool("chromedriver") && tool("chromium") && pid_namespaces()) {
        return;
    }
    let _serial = crate::browser::SERIAL.lock().await;
    let (base, _shop) = demo_shop().await;
    assert_eq!(get(&format!("{base}/shop")).await.0, 200);

    // Control: without the init, the same runs do leave zombies, so the
    // count below can fail.
    let bare_dir = journeys();
    let bare = Pid1::start(&bare_dir, &base, false);
    bare.wait_for_runs(3, 1, &bare_dir).await;
    let leaked = bare.zombies().await;
    drop(bare);
    assert!(leaked > 0, "a bare PID 1 leaves zombies after browser runs");

    let dir = journeys();
    let init = Pid1::start(&dir, &base, true);
    init.wait_for_runs(50, 10, &dir).await;
    assert_eq!(
        init.zombies().await,
        0,
        "zombies after 50 browser runs as PID 1"
    );
}

#[tokio::test]
async fn as_pid1_sigterm_reaches_serve_and_its_exit_code_comes_back() {
    if !(tool("unshare") && pid_namespaces()) {
        return;
    }
    let dir = crate::http::tempdir();
    std::fs::write(
        dir.join("quick.yaml"),
        "name: quick\ninterval: 1s\ntimeout: 500ms\nsteps:\n  - name: s\n    http: {url: \"{{ base_url }}/\"}\n",
    )
    .unwrap();
    let mut p = Pid1::start(&dir, "http://127.0.0.1:1", true);
    let ready = p.metrics.replace("/metrics", "/-/ready");
    crate::support::eventually(30, "serve ready", || async {
        let r = crate::support::client().get(&ready).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let init = ns_init(p.unshare.id()).expect("the namespace's init");
    // The init's own process is wayprobe too, one level above the prober.
    let comm = std::fs::read_to_string(format!("/proc/{init}/comm")).unwrap();
    assert_eq!(comm.trim(), "wayprobe");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let s = p.unshare.wait();
        (s, p)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(
        log.contains("shutting down"),
        "SIGTERM was not forwarded:\n{log}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "serve's exit code through the init:\n{log}"
    );
}
