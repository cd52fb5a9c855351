//! CPU and memory of processes, from `/proc` (Linux only, like the bench).

use std::time::Instant;

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`).
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fields after the `(comm)` of `/proc/PID/stat`; index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime+stime of `pid` in ticks; with `children`, plus what its reaped
/// children used (cutime+cstime).
pub fn cpu_ticks(pid: u32, children: bool) -> Option<u64> {
    let f = stat_fields(pid)?;
    let own = f.get(11)? + f.get(12)?;
    Some(if children {
        own + f.get(13)? + f.get(14)?
    } else {
        own
    })
}

/// Resident set size of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `pid` and every live descendant.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(f) = stat_fields(p)
                && let Some(&pp) = f.get(1)
            {
                parent.push((p, pp as u32));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// A CPU reading of one process (or its whole tree) at one instant.
#[derive(Clone, Copy)]
pub struct CpuMark {
    ticks: u64,
    at: Instant,
}

/// Reads the CPU of `pid` (with `tree`, of it and all its descendants,
/// reaped ones included).
pub fn mark(pid: u32, whole_tree: bool) -> CpuMark {
    let ticks = if whole_tree {
        tree(pid)
            .into_iter()
            .filter_map(|p| cpu_ticks(p, true))
            .sum()
    } else {
        cpu_ticks(pid, false).unwrap_or(0)
    };
    CpuMark {
        ticks,
        at: Instant::now(),
    }
}

impl CpuMark {
    /// CPU seconds used since `earlier`, and the wall seconds between them.
    pub fn since(&self, earlier: &CpuMark, tck: f64) -> (f64, f64) {
        (
            self.ticks.saturating_sub(earlier.ticks) as f64 / tck,
            (self.at - earlier.at).as_secs_f64(),
        )
    }
}

/// Proportional set size of `pid` in bytes (`smaps_rollup` Pss): shared
/// pages split between the processes sharing them, so a tree's sum does not
/// count Chromium's shared libraries once per process as RSS would.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Pss:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory of `pid` and its descendants (PSS), in bytes.
pub fn tree_mem(pid: u32) -> u64 {
    tree(pid).into_iter().filter_map(pss_bytes).sum()
}
