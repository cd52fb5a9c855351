//! The `wayprobe` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(wayprobe::cli::main() as u8)
}
