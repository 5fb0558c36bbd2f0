//! `vigil-trainer`: runs the trainer until SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    vigil_runtime::service_main("trainer", vigil_trainer::run)
}
