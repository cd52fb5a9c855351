//! The `wayprobe` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    // As a container's PID 1, run under a reaping init (see wayprobe::init).
    if let Some(code) = wayprobe::init::supervise_if_pid1() {
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    std::process::ExitCode::from(wayprobe::cli::main() as u8)
}
