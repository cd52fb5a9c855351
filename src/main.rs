//! The `wayprobe` binary: everything lives in the library.

// jemalloc, not glibc's malloc: with 10,000 journeys `serve` holds about 8 MB
// less (glibc's per-thread arenas keep freed runs' pages), and a run's small
// allocations cost less CPU (bench/README.md, "Latest results").
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // As a container's PID 1, run under a reaping init (see wayprobe::init).
    if let Some(code) = wayprobe::init::supervise_if_pid1() {
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    std::process::ExitCode::from(wayprobe::cli::main() as u8)
}
