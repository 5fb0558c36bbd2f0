//! `vigil-orchestrator`: runs the orchestrator until SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    vigil_runtime::service_main("orchestrator", vigil_orchestrator::run)
}
