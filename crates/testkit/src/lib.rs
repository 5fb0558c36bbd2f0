//! One sandbox for vigil's tests, instead of a copy of the plumbing in every crate.
//!
//! - [`Sandbox`]: a unique NATS stream prefix, a fresh migrated PostgreSQL database, a
//!   [`Config`](vigil_config::Config) pointing at both, and [`Sandbox::spawn`] to start any
//!   service in-process through its `run_in`; dropping it deletes the streams and the database.
//! - [`eventually`]: wait on observed state, never on a fixed sleep.
//! - [`TestDatabase`]: a database alone, for tests of the store.
//! - [`nsl_kdd`]: the NSL-KDD fixture files, read once.
//! - [`Receiver`]: an HTTP endpoint on loopback that records what vigil delivers to it.
//! - [`vigil_bin`]: the built `vigil` binary, for tests that run it as a user does.
//! - [`tls::TestPki`]: a CA and certificates it signed, for TLS tests.
//!
//! Servers come from `NATS_URL` (default `nats://127.0.0.1:4222`) and `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). This crate is only ever a dev-dependency.

mod bin;
mod database;
mod effects;
pub mod nsl_kdd;
mod receiver;
mod sandbox;
mod servers;
pub mod tls;
mod wait;

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

pub use bin::{CapturedOutput, announced_http_addr, spawn_capturing, vigil_bin};
pub use database::{DEFAULT_ADMIN_URL, STALE_AFTER, TestDatabase, admin_url};
pub use effects::{EffectCall, EffectReceiver, Hold};
pub use receiver::{ReceivedRequest, Receiver};
pub use sandbox::{
    DEFAULT_NATS_URL, STOP_PATIENCE, Sandbox, Service, count_rows, nats_url, next_message,
    stream_messages, stream_subjects,
};
pub use servers::{NatsServer, TcpProxy, free_port, nats_server_bin};
pub use wait::{Observation, POLL_EVERY, eventually};

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Runs a clean-up future to completion from a helper thread with a runtime of its own: `Drop`
/// cannot await, and clean-up must also work while the test's runtime unwinds from a panic.
/// Failures only print: a clean-up that fails must not hide the test's own outcome.
fn block_on_helper_thread<F, Fut>(what: String, work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let joined = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("vigil-testkit: {what}: no runtime: {err}");
                return;
            }
        };
        if let Err(err) = runtime.block_on(work()) {
            eprintln!("vigil-testkit: {what}: {err:#}");
        }
    })
    .join();
    if joined.is_err() {
        eprintln!("vigil-testkit: a clean-up thread panicked");
    }
}
