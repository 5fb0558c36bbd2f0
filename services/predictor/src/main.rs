//! `vigil-predictor`: runs the predictor until SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    vigil_runtime::service_main("predictor", vigil_predictor::run)
}
