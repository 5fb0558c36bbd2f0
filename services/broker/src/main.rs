//! `vigil-broker`: runs the broker until SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    vigil_runtime::service_main("broker", vigil_broker::run)
}
