//! TLS and mutual TLS of the predictor's gRPC port, with certificates each test makes: a client
//! that trusts the CA is served, a plaintext client and a client that trusts someone else are
//! refused; with a client CA, only clients presenting a certificate that CA signed are served.

#![allow(clippy::unwrap_used)]

use tonic::transport::Channel;
use vigil_config::{GrpcClientTlsSettings, GrpcServerTlsSettings};
use vigil_predictor::{PredictorServer, ServerOptions};
use vigil_proto::inference::ServerLiveRequest;
use vigil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vigil_runtime::grpc_tls::{ServerTls, predictor_endpoint};
use vigil_telemetry::Metrics;
use vigil_testkit::tls::TestPki;

async fn start(tls: &GrpcServerTlsSettings) -> PredictorServer {
    let options = ServerOptions {
        tls: ServerTls::load(tls, "predictor.tls").unwrap(),
        ..ServerOptions::default()
    };
    PredictorServer::start("127.0.0.1:0", options, None, &Metrics::new())
        .await
        .unwrap()
}

/// `ServerLive` through a fresh connection; the error (with its causes) when refused.
async fn live(url: &str, tls: &GrpcClientTlsSettings) -> Result<bool, String> {
    let channel: Channel = predictor_endpoint(url, tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| vigil_runtime::grpc_tls::error_chain(&e))?;
    GrpcInferenceServiceClient::new(channel)
        .server_live(ServerLiveRequest {})
        .await
        .map(|r| r.into_inner().live)
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_is_served_and_plaintext_is_refused() {
    let pki = TestPki::generate();
    let server = start(&pki.server(false)).await;
    let port = server.local_addr().port();
    let https = format!("https://localhost:{port}");

    assert_eq!(live(&https, &pki.client(None)).await, Ok(true));
    // The certificate names 127.0.0.1 too.
    let by_ip = format!("https://127.0.0.1:{port}");
    assert_eq!(live(&by_ip, &pki.client(None)).await, Ok(true));

    let plaintext = live(
        &format!("http://127.0.0.1:{port}"),
        &GrpcClientTlsSettings::default(),
    )
    .await;
    assert!(plaintext.is_err(), "plaintext was served: {plaintext:?}");

    // A client that trusts another CA does not accept the server's certificate.
    let wrong_ca = GrpcClientTlsSettings {
        ca_file: Some(pki.path("other-ca.pem")),
        ..GrpcClientTlsSettings::default()
    };
    let refused = live(&https, &wrong_ca).await.unwrap_err();
    assert!(
        refused.to_ascii_lowercase().contains("certificate"),
        "{refused}"
    );

    // The refusals did not stop the server.
    assert_eq!(live(&https, &pki.client(None)).await, Ok(true));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_it_signed_are_served() {
    let pki = TestPki::generate();
    let server = start(&pki.server(true)).await;
    let https = format!("https://localhost:{}", server.local_addr().port());

    let anonymous = live(&https, &pki.client(None)).await;
    assert!(anonymous.is_err(), "served without a client certificate");
    let stranger = live(&https, &pki.client(Some("stranger"))).await;
    assert!(stranger.is_err(), "served a certificate of another CA");
    assert_eq!(live(&https, &pki.client(Some("client"))).await, Ok(true));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_tls_settings_are_refused_at_load_with_the_key_and_the_path() {
    let pki = TestPki::generate();
    let load = |tls: GrpcServerTlsSettings| {
        ServerTls::load(&tls, "predictor.tls")
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };

    let missing = load(GrpcServerTlsSettings {
        cert_file: Some(pki.path("nowhere.pem")),
        ..pki.server(false)
    });
    assert!(
        missing.contains("predictor.tls.cert_file") && missing.contains("nowhere.pem"),
        "{missing}"
    );

    let key_as_cert = load(GrpcServerTlsSettings {
        cert_file: Some(pki.path("server.key")),
        ..pki.server(false)
    });
    assert!(
        key_as_cert.contains("predictor.tls.cert_file") && key_as_cert.contains("no certificate"),
        "{key_as_cert}"
    );

    let cert_as_key = load(GrpcServerTlsSettings {
        key_file: Some(pki.path("server.pem")),
        ..pki.server(false)
    });
    assert!(
        cert_as_key.contains("predictor.tls.key_file") && cert_as_key.contains("no private key"),
        "{cert_as_key}"
    );

    // The key of another certificate.
    let mismatched = load(GrpcServerTlsSettings {
        key_file: Some(pki.path("client.key")),
        ..pki.server(false)
    });
    assert!(mismatched.contains("predictor.tls"), "{mismatched}");

    let no_key = load(GrpcServerTlsSettings {
        key_file: None,
        ..pki.server(false)
    });
    assert!(no_key.contains("predictor.tls.key_file"), "{no_key}");

    // A client asked for TLS cannot be pointed at an http:// URL.
    let plaintext = predictor_endpoint("http://127.0.0.1:1", &pki.client(None))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(plaintext.contains("https://"), "{plaintext}");
}
