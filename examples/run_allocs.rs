//! Deterministic memory figures for bench/README.md, read under
//! `valgrind --tool=dhat` (no timing, so a busy machine does not move them):
//!
//! - heap held per journey: `N` one-step HTTP journeys as the bench's
//!   `journeys10k` writes them, loaded into the metrics and the status store,
//!   each run once and recorded (what `serve` holds once every journey has
//!   run); compare dhat's "At t-end" between two values of `N`;
//! - allocations per run: `R` more runs of one journey, each recorded as the
//!   scheduler records it; compare dhat's "Total" between two values of `R`.
//!
//! `valgrind --tool=dhat --dhat-out-file=/dev/null \
//!   target/release/examples/run_allocs N R` (see bench/README.md).
//! It exits without dropping anything, so "At t-end" is what was held.

use std::io::{Read, Write};
use std::sync::Arc;

use wayprobe::diag::SourceFile;
use wayprobe::journey::{Journey, LoadOptions, load::load_sources};
use wayprobe::metrics::Metrics;
use wayprobe::run::{RunOptions, Runner};
use wayprobe::status::{Recorder, StatusStore};

/// A loopback target on its own thread, one connection at a time (runs are
/// sequential), with buffers made once: it adds no allocation per run.
fn target() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut head = 0;
            // Answer every request on the connection until the client closes it.
            while let Ok(n) = c.read(&mut buf[head..]) {
                if n == 0 {
                    break;
                }
                head += n;
                if buf[..head].windows(4).any(|w| w == b"\r\n\r\n") {
                    head = 0;
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n",
                    );
                }
            }
        }
    });
    addr
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let r: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let addr = target();
    let url = format!("http://{addr}/delay");
    let sources = (0..n.max(1))
        .map(|i| {
            let name = format!("j{i:05}");
            SourceFile::new(
                format!("{name}.yaml"),
                format!(
                    "name: {name}\ninterval: 60s\nsteps:\n  - name: get\n    http: {{url: \"{url}\"}}\n    expect: {{status: 200}}\n"
                ),
            )
        })
        .collect();
    let loaded = load_sources(sources, &LoadOptions::default(), Vec::new())
        .unwrap_or_else(|_| panic!("the journeys load"));
    // Not `collect()`, which would keep the `Vec<Journey>` buffer for the
    // `Arc`s (as `serve` did before; see bench/README.md).
    let mut journeys: Vec<Arc<Journey>> = Vec::with_capacity(loaded.journeys.len());
    journeys.extend(loaded.journeys.into_iter().map(Arc::new));
    let metrics = Metrics::new("bench");
    let status = Arc::new(StatusStore::new("bench"));
    let series = metrics.set_journeys(&journeys);
    status.set_journeys(&journeys);
    let recorder = Recorder { status };
    let runner = Runner::new(RunOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut failed = 0;
        for (j, s) in journeys.iter().zip(&series) {
            let a = wayprobe::attempt::run(&runner, j).await;
            failed += usize::from(a.outcome.result != wayprobe::outcome::RunResult::Success);
            recorder.record_attempted(s, a);
        }
        for _ in 0..r {
            let a = wayprobe::attempt::run(&runner, &journeys[0]).await;
            failed += usize::from(a.outcome.result != wayprobe::outcome::RunResult::Success);
            recorder.record_attempted(&series[0], a);
        }
        // A scrape, so the exposition is checked to hold every journey.
        let text = metrics.encode();
        let steps = text
            .lines()
            .filter(|l| l.starts_with("journey_step_duration_seconds_count"))
            .count();
        eprintln!(
            "{} journeys, {} extra runs, {failed} failed, {steps} step series",
            journeys.len(),
            r
        );
    });
    // Nothing dropped: dhat's "At t-end" is what the process held.
    std::process::exit(0);
}
