//! docs/configuration.md against the configuration types, so the page cannot drift from the
//! code: every key of the defaults is documented with its default and its environment variable,
//! every documented key is one vigil accepts, and the keys said to be live are the live ones.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use vigil_config::{Config, Error, Sources};

/// One row of a key table: `| `key` | `default` | `VIGIL_...` | live | what |`.
#[derive(Debug)]
struct Row {
    key: String,
    default: String,
    env: String,
    live: String,
}

fn rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
        if cells.len() < 5 || !cells[0].starts_with("| `") {
            continue;
        }
        let code = |cell: &str| {
            cell.trim_start_matches('|')
                .trim()
                .trim_matches('`')
                .to_owned()
        };
        rows.push(Row {
            key: code(cells[0]),
            default: code(cells[1]),
            env: code(cells[2]),
            live: cells[3].to_owned(),
        });
    }
    assert!(
        rows.len() > 50,
        "key tables in docs/configuration.md: {}",
        rows.len()
    );
    rows
}

/// Every leaf of the default configuration as TOML, by dotted path; arrays are leaves.
fn default_leaves() -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match value {
            toml::Value::Table(table) => {
                for (key, v) in table {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_owned(), leaf.clone());
            }
        }
    }
    let mut leaves = BTreeMap::new();
    walk(
        "",
        &toml::Value::try_from(Config::default()).unwrap(),
        &mut leaves,
    );
    leaves
}

fn parse_value(text: &str) -> Option<toml::Value> {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
}

/// The variable that sets `key`; the loader reads only names with `__`, so a top-level key has
/// none.
fn env_name(key: &str) -> String {
    if key.contains('.') {
        format!("VIGIL_{}", key.to_ascii_uppercase().replace('.', "__"))
    } else {
        "none".to_owned()
    }
}

#[test]
fn every_default_key_is_documented_with_its_default_and_variable() {
    let rows = rows();
    let by_key: BTreeMap<&str, &Row> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut undocumented = Vec::new();
    for (key, value) in default_leaves() {
        // A row may document a whole map (`type_weights`), its default an inline table.
        let row = by_key.get(key.as_str()).copied().or_else(|| {
            rows.iter()
                .find(|r| key.starts_with(&format!("{}.", r.key)) && r.default.starts_with('{'))
        });
        let Some(row) = row else {
            undocumented.push(key);
            continue;
        };
        if row.key == key {
            assert_eq!(
                parse_value(&row.default).as_ref(),
                Some(&value),
                "{key}: documented default `{}`, the code's is `{value}`",
                row.default
            );
        }
    }
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/configuration.md: {undocumented:?}"
    );
}

#[test]
fn every_documented_key_is_one_vigil_accepts_with_its_variable() {
    let leaves = default_leaves();
    for row in rows() {
        assert_eq!(row.env, env_name(&row.key), "{}", row.key);
        let live = if vigil_config::live_key(&row.key).is_some() {
            "yes"
        } else {
            "no"
        };
        assert_eq!(
            row.live, live,
            "{}: live per vigil_config::LIVE_KEYS",
            row.key
        );
        if leaves.contains_key(&row.key)
            || leaves
                .keys()
                .any(|k| k.starts_with(&format!("{}.", row.key)))
        {
            continue;
        }
        // A key unset by default: setting it may be refused for its value or what it lacks
        // beside it, but never as an unknown key.
        assert_eq!(row.default, "unset", "{}: not in the defaults", row.key);
        let result = Config::load(&Sources {
            env: vec![(row.env.clone(), "\"x\"".into())],
            ..Default::default()
        });
        if let Err(error) = result {
            let unknown =
                matches!(&error, Error::BadKey { reason, .. } if reason.contains("unknown field"));
            assert!(!unknown, "{}: {error}", row.key);
        }
    }
}
