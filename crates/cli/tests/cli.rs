//! The `vigil` binary as a user runs it: exit codes, line-numbered refusals, redaction, and a
//! train -> evaluate round trip on a slice of NSL-KDD.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use vigil_bus::StreamKind;
use vigil_testkit::{Sandbox, nsl_kdd};

fn vigil(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("vigil runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn data_file() -> PathBuf {
    nsl_kdd::train_20_percent()
}

/// The first `rows` rows of the 20 % file, with a malformed row as line 3.
fn slice_with_a_bad_row(rows: usize) -> tempfile::NamedTempFile {
    let mut out = tempfile::NamedTempFile::new().unwrap();
    for (i, line) in nsl_kdd::lines(rows).into_iter().enumerate() {
        if i == 2 {
            writeln!(out, "0,tcp,http,SF,not-a-number").unwrap();
        }
        writeln!(out, "{line}").unwrap();
    }
    out
}

#[test]
fn config_dump_redacts_secrets_and_refuses_unknown_keys() {
    let out = vigil(
        &["config"],
        &[
            ("VIGIL_NATS__USER", "vigil"),
            ("VIGIL_NATS__PASSWORD", "hunter2"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump = text(&out.stdout);
    assert!(
        dump.contains("<redacted>") && !dump.contains("hunter2"),
        "{dump}"
    );

    let out = vigil(&["config", "--set", "nats.urll=x"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("urll"), "{}", text(&out.stderr));
}

#[test]
fn train_reports_bad_rows_by_line_and_evaluate_reads_the_artifact() {
    let data = slice_with_a_bad_row(1500);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.vigil");
    let out = vigil(
        &[
            "train",
            "--data",
            data.path().to_str().unwrap(),
            "--format",
            "nsl-kdd",
            "--out",
            model.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 3"),
        "the malformed row is named: {}",
        text(&out.stderr)
    );
    assert!(model.exists());

    // --strict refuses the same file.
    let strict = dir.path().join("strict.vigil");
    let out = vigil(
        &[
            "train",
            "--data",
            data.path().to_str().unwrap(),
            "--out",
            strict.to_str().unwrap(),
            "--strict",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );

    let out = vigil(
        &[
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.path().to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in ["accuracy", "precision", "recall", "f1", "auc_roc"] {
        let v = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(report["rows"].as_u64(), Some(1500), "{report}");
    assert!(
        report["accuracy"].as_f64().unwrap() > 0.8,
        "trained on these rows: {report}"
    );
}

#[test]
fn evaluate_refuses_a_file_that_is_not_a_model() {
    let mut fake = tempfile::NamedTempFile::new().unwrap();
    fake.write_all(b"definitely not a model").unwrap();
    let out = vigil(
        &[
            "evaluate",
            "--model",
            fake.path().to_str().unwrap(),
            "--data",
            data_file().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error:") && !err.contains("panicked"),
        "{err}"
    );
}

#[tokio::test]
async fn publish_names_the_bad_line_and_sends_the_rest() {
    let sandbox = Sandbox::start().await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        r#"{{"id":"cli-1","threatType":"port_scan","confidence":0.5}}"#
    )
    .unwrap();
    writeln!(
        file,
        r#"{{"id":"cli-2","threatType":"port_scan","confidence":7}}"#
    )
    .unwrap();
    writeln!(
        file,
        r#"{{"id":"cli-1","threatType":"port_scan","confidence":0.5}}"#
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let env = sandbox.cli_env();
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vigil(&["publish", "--file", &path], &env)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "published 1, duplicates 1, refused 1"
    );
    // What the command said is what reached the ingest stream.
    assert_eq!(sandbox.stream_messages(StreamKind::Ingest).await, 1);
}
