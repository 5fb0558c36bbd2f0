//! `vigil-health`: runs the health service until SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    vigil_runtime::service_main("health", vigil_health::run)
}
