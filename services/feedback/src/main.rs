//! `vigil-feedback`: runs the feedback service until SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    vigil_runtime::service_main("feedback", vigil_feedback::run)
}
