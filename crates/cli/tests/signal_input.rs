//! Signals as people type them into `vigil publish` and `vigil predict`, checked before anything
//! is sent: no NATS and no predictor are needed (the addresses given are closed ports, so a
//! command that tried to connect would say so instead).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output};

/// A port nothing listens on: connecting there fails at once.
const CLOSED: &str = "127.0.0.1:1";

/// The example signal of the seed design, verbatim.
const SEED_SIGNAL: &str = r#"{"id": "threat_12345", "type": "suspicious_traffic", "protocol": "tcp", "port": 8080, "confidence": 0.85}"#;

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("vigil runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn predict(signal: &str) -> Output {
    vigil(&[
        "predict",
        "--signal",
        signal,
        "--addr",
        CLOSED,
        "--timeout",
        "2",
    ])
}

fn publish_file(lines: &[&str]) -> Output {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    let nats_url = format!("nats.url=\"nats://{CLOSED}\"");
    vigil(&[
        "publish",
        "--file",
        file.path().to_str().unwrap(),
        "--set",
        &nats_url,
    ])
}

#[test]
fn predict_accepts_the_seed_designs_signal_and_goes_on_to_call_the_predictor() {
    let out = predict(SEED_SIGNAL);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot reach the predictor"),
        "the signal was accepted, so the next failure is the closed port: {stderr}"
    );
}

#[test]
fn predict_refuses_a_bad_signal_before_connecting_and_names_the_field() {
    let out = predict(r#"{"type": "port_scan", "confidence": 0.5, "severity": "urgent"}"#);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            r#"field "severity": "urgent" is not a severity; expected one of critical, high, medium, low (any case, SEVERITY_ prefix optional)"#
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot reach"), "{stderr}");

    let out = predict(r#"{"type": "port_scan", "confidence": 1.7}"#);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(r#"field "confidence": 1.7 is out of range; expected 0 to 1"#),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot reach"), "{stderr}");
}

#[test]
fn publish_names_line_field_value_and_what_is_expected_and_fails_without_connecting() {
    let out = publish_file(&[
        r#"{"type": "port_scan", "confidence": 0.5, "severity": "urgent"}"#,
        "",
        r#"{"type": "port_scan", "confidence": 1.7}"#,
        r#"{"type": "port_scan", "confidence": 0.5, "colour": "red"}"#,
        r#"{"type": "port_scan", "threatType": "neptune", "confidence": 0.5}"#,
        r#"{"type": "port_scan", "confidence": }"#,
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for expected in [
        r#"line 1: field "severity": "urgent" is not a severity; expected one of critical, high, medium, low (any case, SEVERITY_ prefix optional)"#,
        r#"line 3: field "confidence": 1.7 is out of range; expected 0 to 1"#,
        r#"line 4: unknown field "colour"; expected one of id, threatType (alias type), "#,
        r#"line 5: fields "type" and "threatType" name the same field but disagree ("port_scan" vs "neptune")"#,
        "line 6: invalid JSON: expected value at line 1 column 37",
        "error: no valid signal to publish",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
    assert!(
        !stderr.contains("line 2"),
        "blank lines are skipped: {stderr}"
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "published 0, duplicates 0, refused 5"
    );
}

#[test]
fn publish_accepts_the_seed_designs_signal_and_goes_on_to_connect() {
    let out = publish_file(&[
        SEED_SIGNAL,
        r#"{"type": "port_scan", "confidence": 0.9, "severity": "Critical"}"#,
        r#"{"threatType": "port_scan", "confidence": 0.9, "severity": "severity_low"}"#,
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("line "), "every line is valid: {stderr}");
    assert!(
        !stderr.contains("no valid signal"),
        "it went on to connect: {stderr}"
    );
}
