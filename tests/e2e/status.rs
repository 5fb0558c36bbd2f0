//! `vigil up` runs all six services, and `vigil status` shows them healthy; a second Ctrl-C
//! during the shutdown exits at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::{PATIENCE, Up};
use vigil_testkit::{Sandbox, eventually};

fn sets() -> Vec<String> {
    vec![
        "health.heartbeat_interval_ms=200".to_string(),
        // No model is trained here; the predictor would be degraded for want of one.
        "health.require_production_model=false".to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_up_runs_six_healthy_components_and_vigil_status_says_so() {
    let sandbox = Sandbox::start().await;
    let mut up = Up::start(&sandbox, &sets()).await;
    let cli = up.cli.clone();

    let report: serde_json::Value = eventually(PATIENCE, "six healthy components", || async {
        let out = cli.run(&["status", "--json"]).await;
        if !out.status.success() {
            return Err(common::text(&out.stderr));
        }
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let components = report["components"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let all_alive = components.len() == 6
            && components
                .values()
                .all(|c| c["alive"] == 1 && c["state"] == "healthy");
        if report["state"] == "healthy" && all_alive {
            Ok(report)
        } else {
            Err(format!("{} {}", report["state"], report["reason"]))
        }
    })
    .await;
    up.assert_running();
    // One process: every component reports the same instance.
    let instances: std::collections::BTreeSet<&str> = report["components"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["instances"][0]["instance"].as_str().unwrap())
        .collect();
    assert_eq!(instances.len(), 1, "{instances:?}");

    // The same status on /status of the process's HTTP server.
    let served: serde_json::Value = reqwest::get(format!("http://{}/status", up.http))
        .await
        .expect("GET /status")
        .json()
        .await
        .expect("a status as JSON");
    assert_eq!(
        served["components"].as_object().unwrap().len(),
        6,
        "{served}"
    );

    let table = cli.ok(&["status"]).await;
    assert!(
        table.starts_with("vigil is HEALTHY: all 6 components healthy"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_during_shutdown_exits_at_once() {
    let sandbox = Sandbox::start().await;
    let mut up = Up::start(&sandbox, &sets()).await;
    // A request that never finishes arriving keeps the HTTP server, and so the shutdown,
    // waiting: a slow drain without depending on the machine's speed.
    let mut stuck = std::net::TcpStream::connect(up.http).expect("connect to the HTTP server");
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: vigil\r\n")
        .expect("send half a request");

    up.interrupt();
    eventually(PATIENCE, "vigil up to begin its shutdown", || {
        std::future::ready(up.printed("Ctrl-C again to exit at once"))
    })
    .await;
    up.assert_running();

    up.interrupt();
    let status = up.exited().await;
    assert_eq!(status.code(), Some(130), "{}", up.output());
    assert!(up.output().contains("exiting at once"), "{}", up.output());
    drop(stuck);
}
