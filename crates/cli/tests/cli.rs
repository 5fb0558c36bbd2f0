//! The `vigil` binary as a user runs it: exit codes, line-numbered refusals, redaction, and a
//! train -> evaluate round trip on a slice of NSL-KDD.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Output};

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
    std::env::var("VIGIL_DATA_DIR")
        .map_or_else(
            |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nsl-kdd"),
            PathBuf::from,
        )
        .join("KDDTrain+_20Percent.txt")
}

/// The first `rows` rows of the 20 % file, with a malformed row as line 3.
fn slice_with_a_bad_row(rows: usize) -> tempfile::NamedTempFile {
    let file = std::fs::File::open(data_file()).unwrap();
    let mut out = tempfile::NamedTempFile::new().unwrap();
    for (i, line) in std::io::BufReader::new(file).lines().take(rows).enumerate() {
        if i == 2 {
            writeln!(out, "0,tcp,http,SF,not-a-number").unwrap();
        }
        writeln!(out, "{}", line.unwrap()).unwrap();
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

#[test]
fn publish_names_the_bad_line_and_sends_the_rest() {
    let prefix = format!("tc{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
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
    let set_prefix = format!("nats.prefix=\"{prefix}\"");
    let mut args = vec![
        "publish",
        "--file",
        file.path().to_str().unwrap(),
        "--set",
        &set_prefix,
    ];
    let nats_url;
    if let Ok(url) = std::env::var("NATS_URL") {
        nats_url = format!("nats.url=\"{url}\"");
        args.extend(["--set", &nats_url]);
    }
    let out = vigil(&args, &[]);
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
    remove_streams(&args);
}

/// Deletes the streams the command declared under its test prefix (the `--set` arguments say
/// where), leaving the shared NATS server as it was.
fn remove_streams(args: &[&str]) {
    let overrides = args
        .windows(2)
        .filter(|w| w[0] == "--set")
        .map(|w| w[1].to_owned())
        .collect();
    let config = vigil_config::Config::load(&vigil_config::Sources {
        overrides,
        ..Default::default()
    })
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bus = vigil_bus::Bus::connect(&config.nats, vigil_runtime::topology(&config))
            .await
            .unwrap();
        bus.topology().delete(bus.jetstream()).await.unwrap();
    });
}
