//! wayprobe as a container's first process (PID 1).
//!
//! Chromium's helper processes outlive their parent and are reparented to
//! PID 1; a PID 1 that never waits for them leaves about nine zombies per
//! browser run, until the pod hits its PID limit. Reaping with `waitpid(-1)`
//! inside the prober would also steal the exit statuses of the children it
//! waits for itself (chromedriver supervision, tokio's child handles), so
//! wayprobe does what tini does instead: when it starts as PID 1, it stays a
//! tiny init that runs the real wayprobe as its only direct child, forwards
//! signals to it, reaps every orphan, and exits with the child's status.
//! Orphans are reparented to the init, never to the prober, so the prober's
//! own waits are untouched.
//!
//! `WAYPROBE_NO_INIT=1` turns this off (e.g. under an init such as tini, or
//! with `shareProcessNamespace: true`).

use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};

/// Set to `1` to run wayprobe directly even as PID 1.
pub const DISABLE_ENV: &str = "WAYPROBE_NO_INIT";

/// Set by the init in its child's environment: the child unblocks the
/// signals the init blocked (a process inherits its parent's signal mask).
const CHILD_ENV: &str = "WAYPROBE_INIT_CHILD";

/// Signals passed on to the prober (SIGHUP reloads, SIGTERM/SIGINT shut down).
const FORWARDED: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// When this process is PID 1 (and [`DISABLE_ENV`] is not `1`), runs wayprobe
/// as a child under a reaping init and returns the child's exit code (128 +
/// signal number if a signal killed it). Returns `None` otherwise: the caller
/// then runs wayprobe itself. Must be called before any thread is started,
/// because it blocks signals for the whole process.
pub fn supervise_if_pid1() -> Option<i32> {
    if getpid() != Pid::from_raw(1) {
        if std::env::var_os(CHILD_ENV).is_some() {
            // Before any thread or child exists, so all of them inherit it.
            let _ = handled().thread_unblock();
        }
        return None;
    }
    if std::env::var_os(DISABLE_ENV).is_some_and(|v| v == "1") {
        return None;
    }
    Some(supervise())
}

/// The signals the init blocks and waits for.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

fn supervise() -> i32 {
    let set = handled();
    // Blocked signals are queued even for PID 1 (whose default-action signals
    // the kernel otherwise drops), and `sigwait` takes them one at a time.
    if let Err(e) = set.thread_block() {
        eprintln!("error: cannot block signals as PID 1: {e}");
        return 3;
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    // The child inherits the blocked mask; CHILD_ENV tells it to unblock.
    let child = match Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, "1")
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start {}: {e}", exe.display());
            return 3;
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    // The child is reaped below with every other process, never through `child`.
    drop(child);
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(pid) {
                    return code;
                }
            }
            Ok(sig) => {
                let _ = kill(pid, sig);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every exited child; returns the prober's exit code once it exited.
fn reap(prober: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if p == prober => code = Some(c),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == prober => code = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return code,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return code,
        }
    }
}
