//! Property tests of the configuration loader: whatever a file, an environment variable, a
//! `--set` flag or the live bucket (which any client allowed on the bus can write) holds, the
//! loader answers a valid configuration or an error with a reason, never a panic.

#![allow(clippy::unwrap_used)]

use std::io::Write;

use proptest::prelude::*;
use vigil_config::{Config, LIVE_KEYS, Sources};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

/// Every key of the configuration, as dotted paths (the leaves of the defaults).
fn keys() -> Vec<String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        if let toml::Value::Table(table) = value {
            for (key, v) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&path, v, out);
            }
        } else {
            out.push(prefix.to_owned());
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &toml::Value::try_from(Config::default()).unwrap(),
        &mut out,
    );
    // Keys that are unset by default, and sections.
    out.extend(
        [
            "predictor.model_file",
            "predictor.tls.cert_file",
            "predictor.tls.client_ca_file",
            "orchestrator.predictor_url",
            "orchestrator.predictor_tls.key_file",
            "nats.tls",
            "soar",
            "thresholds",
        ]
        .map(str::to_owned),
    );
    out
}

#[test]
fn every_key_is_within_the_depth_limit() {
    for key in keys() {
        assert!(key.split('.').count() <= 8, "{key}");
    }
}

/// Values as a person or a program might write them, sensible or not.
fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "nan",
            "inf",
            "-inf",
            "-0.0",
            "1e309",
            "99999999999999999999999",
            "-1",
            "0",
            "true",
            "\"\"",
            "[]",
            "{}",
            "[1, \"a\", true]",
            "{ a = 1 }",
            "\"0 0 3 * * *\"",
            "\"https://p:1\"",
            "1979-05-27T07:32:00Z",
            "[[[[[[[[[[1]]]]]]]]]]",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
        "[a-z0-9 .,:\"\\[\\]{}=-]{0,24}",
    ]
}

fn holds_when_loaded(result: Result<Config, vigil_config::Error>) {
    match result {
        Ok(config) => {
            config.validate().unwrap();
            assert!(!config.dump().is_empty());
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_override_of_any_key_loads_or_is_refused(
        sets in prop::collection::vec((prop::sample::select(keys()), raw_value()), 1..4),
    ) {
        let overrides = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        holds_when_loaded(Config::load(&Sources { overrides, ..Sources::default() }));
    }

    #[test]
    fn any_flag_text_loads_or_is_refused(overrides in prop::collection::vec(any::<String>(), 0..4)) {
        holds_when_loaded(Config::load(&Sources { overrides, ..Sources::default() }));
    }

    #[test]
    fn any_environment_loads_or_is_refused(
        env in prop::collection::vec(
            (prop_oneof![
                prop::sample::select(keys())
                    .prop_map(|k| format!("VIGIL_{}", k.to_ascii_uppercase().replace('.', "__"))),
                "VIGIL_[A-Z_]{0,20}",
            ], raw_value()),
            0..4,
        ),
    ) {
        holds_when_loaded(Config::load(&Sources { env, ..Sources::default() }));
    }

    #[test]
    fn any_file_loads_or_is_refused(text in prop_oneof![
        any::<String>(),
        (prop::sample::select(keys()), raw_value()).prop_map(|(key, value)| {
            // `a.b.c = v` is TOML for the key at that path.
            format!("{key} = {value}\n")
        }),
    ]) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        holds_when_loaded(Config::load(&Sources {
            file: Some(file.path().to_owned()),
            ..Sources::default()
        }));
    }

    #[test]
    fn any_live_entry_merges_or_is_refused(
        entries in prop::collection::vec(
            (prop_oneof![
                prop::sample::select(LIVE_KEYS.iter().map(|k| k.key.to_owned()).collect::<Vec<_>>()),
                any::<String>(),
            ], raw_value()),
            1..4,
        ),
    ) {
        holds_when_loaded(Config::default().with_live(&entries));
    }
}

#[test]
fn deep_keys_and_deep_values_are_refused_not_a_stack_overflow() {
    let deep_key = vec!["a"; 100_000].join(".");
    let deep_value = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases = [
        Sources {
            overrides: vec![format!("{deep_key}=1")],
            ..Sources::default()
        },
        Sources {
            overrides: vec![format!("thresholds.high={deep_value}")],
            ..Sources::default()
        },
        Sources {
            env: vec![(
                format!("VIGIL_{}", vec!["A"; 100_000].join("__")),
                "1".into(),
            )],
            ..Sources::default()
        },
    ];
    for sources in cases {
        let error = Config::load(&sources).unwrap_err().to_string();
        assert!(!error.is_empty());
    }
    let error = Config::load(&Sources {
        overrides: vec![format!("{deep_key}=1")],
        ..Sources::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("at most 8 dot-separated parts") && error.len() < 1_000,
        "{error}"
    );
    let live = Config::default().with_live(&[("thresholds.high", deep_value.as_str())]);
    assert!(live.is_err());
}
