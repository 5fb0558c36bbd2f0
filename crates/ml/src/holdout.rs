//! Which rows a model is scored on: the hold-out rule, recorded in every artifact so that a
//! later training run can tell whether the rows it holds out were kept from this model too.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How a training run chose the rows it held out to score its models on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HoldoutRule {
    /// A seeded, stratified shuffle of the whole data set (`vigil train`): which rows are held
    /// out depends on every other row, so another data set or seed holds out other rows.
    Random {
        /// The share of the rows held out.
        share: f64,
        seed: u64,
    },
    /// A row is held out when its own identity hashes below the share (see [`HashHoldout`]):
    /// the same row lands on the same side in every run with the same rule, whatever else is
    /// in the data.
    Hash(HashHoldout),
}

impl HoldoutRule {
    /// One line for reports: `hash of source_ref (salt 42) below 0.15`.
    pub fn describe(&self) -> String {
        match self {
            HoldoutRule::Random { share, seed } => {
                format!("random stratified {share} of the rows (seed {seed})")
            }
            HoldoutRule::Hash(rule) => rule.describe(),
        }
    }
}

/// The deterministic hold-out: a row is held out iff the first 8 bytes of
/// SHA-256(`"<salt>:<key value>"`), read as a big-endian integer and divided by 2^64, are below
/// `share`. Not stratified: the class mix of the hold-out is what the hash gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashHoldout {
    /// What identifies a row (`source_ref` in the trainer).
    pub key: String,
    /// The share of rows held out, 0-1.
    pub share: f64,
    /// Mixed into the hash: another salt holds out other rows.
    pub salt: u64,
}

impl HashHoldout {
    /// A rule holding out `share` of the rows identified by `key`, salted with `salt`.
    pub fn new(key: impl Into<String>, share: f64, salt: u64) -> Self {
        Self {
            key: key.into(),
            share,
            salt,
        }
    }

    /// Where `key_value` falls in 0-1 (uniform over distinct values, fixed for a salt).
    pub fn position(&self, key_value: &str) -> f64 {
        let digest = Sha256::digest(format!("{}:{key_value}", self.salt).as_bytes());
        let head = u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"));
        // The top 53 bits, so the quotient is exact in an f64 and strictly below 1.
        (head >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the row identified by `key_value` is held out.
    pub fn holds_out(&self, key_value: &str) -> bool {
        self.position(key_value) < self.share
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "SHA-256 of {} (salt {}) below {}",
            self.key, self.salt, self.share
        )
    }
}

/// The hold-out a model was scored on: the rule and how many rows it held out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    pub rule: HoldoutRule,
    /// Rows held out (after cleaning).
    pub rows: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_always_on_the_same_side_and_the_share_is_kept() {
        let rule = HashHoldout::new("source_ref", 0.15, 42);
        let keys: Vec<String> = (0..20_000).map(|i| format!("nsl-kdd-{i}")).collect();
        let first: Vec<bool> = keys.iter().map(|k| rule.holds_out(k)).collect();
        let again: Vec<bool> = keys.iter().map(|k| rule.holds_out(k)).collect();
        assert_eq!(first, again);
        let share = first.iter().filter(|h| **h).count() as f64 / keys.len() as f64;
        assert!((share - 0.15).abs() < 0.01, "held out {share}");
        // Another salt holds out other rows, about as many.
        let other = HashHoldout::new("source_ref", 0.15, 7);
        let moved = keys
            .iter()
            .zip(&first)
            .filter(|(k, held)| other.holds_out(k) != **held)
            .count();
        assert!(moved > 4_000, "only {moved} rows changed side");
    }

    #[test]
    fn the_position_is_the_documented_hash() {
        // SHA-256("42:row-1") = 804dff730de07d71..., SHA-256("42:row-2") = 32ae1a56cad21644...
        // (sha256sum): written down so that a change of the hash, which would move every row
        // to another side and make every production model look better than it is, fails here.
        let rule = HashHoldout::new("source_ref", 0.5, 42);
        assert_eq!(
            rule.position("row-1"),
            (0x804d_ff73_0de0_7d71_u64 >> 11) as f64 / (1u64 << 53) as f64
        );
        assert!(!rule.holds_out("row-1"), "0.5012 is not below 0.5");
        assert!(rule.holds_out("row-2"), "0.1980 is below 0.5");
        assert!((0.0..1.0).contains(&rule.position("")));
        assert!(!HashHoldout::new("k", 0.0, 1).holds_out("anything"));
        assert!(HashHoldout::new("k", 1.0, 1).holds_out("anything"));
    }

    #[test]
    fn rules_round_trip_as_json() {
        for rule in [
            HoldoutRule::Hash(HashHoldout::new("source_ref", 0.15, 42)),
            HoldoutRule::Random {
                share: 0.15,
                seed: 42,
            },
        ] {
            let json = serde_json::to_value(&rule).unwrap_or_default();
            assert!(json["kind"].is_string(), "{json}");
            let back: HoldoutRule = serde_json::from_value(json).unwrap_or_else(|_| rule.clone());
            assert_eq!(back, rule);
        }
    }
}
