//! `vigil predict` and `vigil probe --grpc` reach a predictor that serves mutual TLS with the
//! client settings of `orchestrator.predictor_tls`, and are refused without a client
//! certificate. The predictor runs in-process with no model, so its answers (UNAVAILABLE,
//! NOT_SERVING) prove the TLS connection without training anything.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use vigil_predictor::{PredictorServer, ServerOptions};
use vigil_runtime::grpc_tls::ServerTls;
use vigil_telemetry::Metrics;
use vigil_testkit::tls::TestPki;

/// Runs `vigil` off the async runtime's threads, with the CA and, when given, a client
/// certificate of `pki` set through `--set`.
async fn vigil(pki: &TestPki, identity: Option<&str>, args: &[String]) -> Output {
    let mut sets = vec![format!(
        "orchestrator.predictor_tls.ca_file={}",
        quoted(&pki.path("ca.pem"))
    )];
    if let Some(name) = identity {
        sets.push(format!(
            "orchestrator.predictor_tls.cert_file={}",
            quoted(&pki.path(&format!("{name}.pem")))
        ));
        sets.push(format!(
            "orchestrator.predictor_tls.key_file={}",
            quoted(&pki.path(&format!("{name}.key")))
        ));
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command.args(args).env_remove("RUST_LOG");
    for set in sets {
        command.arg("--set").arg(set);
    }
    tokio::task::spawn_blocking(move || command.output().expect("vigil runs"))
        .await
        .unwrap()
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn predict_and_probe_speak_mutual_tls_with_the_configured_certificates() {
    let pki = TestPki::generate();
    let options = ServerOptions {
        tls: ServerTls::load(&pki.server(true), "predictor.tls").unwrap(),
        ..ServerOptions::default()
    };
    let server = PredictorServer::start("127.0.0.1:0", options, None, &Metrics::new())
        .await
        .unwrap();
    // A bare HOST:PORT is asked over https because the TLS keys are set.
    let addr = format!("localhost:{}", server.local_addr().port());
    let predict = |addr: &str| {
        [
            "predict",
            "--signal",
            r#"{"type": "port_scan", "confidence": 0.9}"#,
            "--addr",
            addr,
            "--timeout",
            "5",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let probe = |addr: &str| ["probe", "--grpc", addr].map(str::to_owned).to_vec();

    // With the client certificate: the predictor answers (no model yet).
    let out = vigil(&pki, Some("client"), &predict(&addr)).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the predictor refused: unavailable") && stderr.contains("no model"),
        "{stderr}"
    );
    let out = vigil(&pki, Some("client"), &probe(&addr)).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("NOT_SERVING"), "{stderr}");

    // Without one, or with a stranger's, the TLS handshake refuses them.
    for identity in [None, Some("stranger")] {
        for args in [predict(&addr), probe(&addr)] {
            let out = vigil(&pki, identity, &args).await;
            let stderr = text(&out.stderr);
            assert!(!out.status.success());
            assert!(
                !stderr.contains("unavailable") && !stderr.contains("NOT_SERVING"),
                "{identity:?} {args:?} was answered: {stderr}"
            );
        }
    }

    // TLS keys with an http:// URL are refused before connecting.
    let out = vigil(&pki, Some("client"), &predict(&format!("http://{addr}"))).await;
    let stderr = text(&out.stderr);
    assert!(stderr.contains("https://"), "{stderr}");
    server.stop().await.unwrap();
}
