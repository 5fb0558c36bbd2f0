//! Layering, validation and redaction of the configuration.

#![allow(clippy::unwrap_used)]

use std::io::Write;

use vigil_config::{Config, Error, LogFormat, Sources};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_design() {
    let c = Config::load(&Sources::default()).expect("defaults are valid");
    assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
    assert_eq!(c.streams.dedup_window_secs, 300);
    assert_eq!(c.streams.work_max_messages, 10_000);
    assert_eq!(c.thresholds.high, 7.0);
    assert_eq!(c, Config::default());
}

#[test]
fn file_then_env_then_flags_each_win_over_the_last() {
    let f = file(
        r#"
        [nats]
        url = "nats://file:4222"
        [thresholds]
        high = 6.0
        [orchestrator]
        max_workflows = 8
        "#,
    );
    let sources = Sources {
        file: Some(f.path().to_owned()),
        env: env(&[
            ("VIGIL_THRESHOLDS__HIGH", "6.5"),
            ("VIGIL_TELEMETRY__LOG_FORMAT", "json"),
            ("VIGIL_CONFIG", "ignored-here"),
            ("VIGIL_DATA_DIR", "/not/a/config/key"),
            ("PATH", "/usr/bin"),
        ]),
        overrides: vec![
            "thresholds.high=6.8".into(),
            "broker.fingerprint_fields=[\"threat_type\"]".into(),
        ],
    };
    let c = Config::load(&sources).expect("loads");
    assert_eq!(c.nats.url, "nats://file:4222", "file value kept");
    assert_eq!(c.orchestrator.max_workflows, 8);
    assert_eq!(c.telemetry.log_format, LogFormat::Json, "env applied");
    assert_eq!(c.thresholds.high, 6.8, "flag beats env beats file");
    assert_eq!(c.broker.fingerprint_fields, vec!["threat_type".to_string()]);
}

#[test]
fn unknown_keys_are_refused_wherever_they_come_from() {
    let f = file("[nats]\nurll = \"x\"\n");
    let err = Config::load(&Sources {
        file: Some(f.path().to_owned()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("nats.urll"), "{err}");
    assert!(
        err.to_string().contains(&f.path().display().to_string()),
        "{err}"
    );

    let err = Config::load(&Sources {
        env: env(&[("VIGIL_BROKER__COLOUR", "red")]),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("broker.colour"), "{err}");
    assert!(err.to_string().contains("VIGIL_BROKER__COLOUR"), "{err}");

    let err = Config::load(&Sources {
        overrides: vec!["thresholds.high".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, Error::BadKey { .. }), "{err}");
}

#[test]
fn invalid_values_are_refused_with_the_key() {
    let err = Config::load(&Sources {
        overrides: vec!["thresholds.high=9.5".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("medium < high < critical"),
        "{err}"
    );

    let err = Config::load(&Sources {
        overrides: vec!["database.url=mysql://x".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("database.url"), "{err}");

    let f = file("[nats\n");
    let err = Config::load(&Sources {
        file: Some(f.path().to_owned()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, Error::Parse { .. }), "{err}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_source() {
    let f = file("[database]\nmax_connections = \"many\"\n");
    let from_file = Sources {
        file: Some(f.path().to_owned()),
        ..Default::default()
    };
    let err = Config::load(&from_file).unwrap_err().to_string();
    assert!(err.contains("database.max_connections"), "{err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");

    let err = Config::load(&Sources {
        env: env(&[("VIGIL_DATABASE__MAX_CONNECTIONS", "abc")]),
        ..from_file.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("database.max_connections"), "{err}");
    assert!(
        err.contains("environment variable VIGIL_DATABASE__MAX_CONNECTIONS"),
        "{err}"
    );

    let err = Config::load(&Sources {
        env: env(&[("VIGIL_DATABASE__MAX_CONNECTIONS", "abc")]),
        overrides: vec!["thresholds.high=high".into()],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    // The first bad value in field order (database before thresholds) is reported with its
    // own source, not with the last source applied.
    assert!(err.contains("VIGIL_DATABASE__MAX_CONNECTIONS"), "{err}");
    let err = Config::load(&Sources {
        env: env(&[("VIGIL_BROKER__FINGERPRINT_FIELDS", "[1, 2]")]),
        ..from_file.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("broker.fingerprint_fields[0]"), "{err}");
    assert!(err.contains("VIGIL_BROKER__FINGERPRINT_FIELDS"), "{err}");

    assert!(matches!(
        Config::load(&Sources {
            overrides: vec!["thresholds.high=high".into()],
            ..Default::default()
        }),
        Err(Error::BadValue { ref key, ref origin, .. })
            if key == "thresholds.high" && origin == "--set thresholds.high"
    ));
}

#[test]
fn dump_redacts_every_secret() {
    let c = Config::load(&Sources {
        env: env(&[
            ("VIGIL_NATS__USER", "vigil"),
            ("VIGIL_NATS__PASSWORD", "hunter2"),
            ("VIGIL_NATS__TOKEN", "tok-secret"),
            ("VIGIL_DATABASE__URL", "postgres://vigil:pgsecret@db/vigil"),
        ]),
        ..Default::default()
    })
    .expect("loads");
    assert_eq!(
        c.nats.password.as_ref().map(|s| s.expose()),
        Some("hunter2")
    );
    let dump = c.dump();
    for secret in ["hunter2", "tok-secret", "pgsecret"] {
        assert!(!dump.contains(secret), "{secret} leaked:\n{dump}");
    }
    assert!(
        dump.contains("postgres://vigil:<redacted>@db/vigil"),
        "{dump}"
    );
    assert!(!format!("{c:?}").contains("hunter2"));
}
