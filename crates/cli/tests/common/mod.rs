//! What the CLI's sandbox tests share: running the `vigil` binary against a sandbox.

// Each test file uses what it needs of this module.
#![allow(dead_code)]

use std::process::Output;

use vigil_testkit::Sandbox;

/// Runs `vigil ARGS` against the sandbox's NATS and PostgreSQL.
pub async fn vigil(sandbox: &Sandbox, args: &[&str]) -> Output {
    vigil_with(sandbox, args, &[]).await
}

/// [`vigil`] with more environment variables, set after the sandbox's (so they win).
pub async fn vigil_with(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .envs(sandbox.cli_env())
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("vigil runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
