//! `[soar.assessment]`: how the rule-based assessor scores a signal and blends in the ML score.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use vigil_domain::ValidationError;

use super::{Result, invalid, network_list, require_finite_range};

/// How the rule-based assessor scores a signal (0-10) and blends in the ML prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssessmentSettings {
    /// Points (0-10) a threat type adds; keys are matched case-insensitively, with `-` and spaces
    /// read as `_`. Replaces the built-in table when set.
    pub type_weights: BTreeMap<String, f64>,
    /// Points for a threat type missing from `type_weights`.
    pub default_type_weight: f64,
    /// Destination ports that are high-risk (remote shells, databases, file sharing).
    pub high_risk_ports: Vec<u16>,
    /// Points for a high-risk destination port.
    pub high_risk_port_points: f64,
    /// Points for any other privileged (< 1024) destination port.
    pub privileged_port_points: f64,
    /// Points at sensor confidence 1.0 (scaled linearly).
    pub sensor_confidence_points: f64,
    /// Points when the sensor itself rated the signal critical (high 2/3, medium 1/3, low 0).
    pub sensor_severity_points: f64,
    /// Known-bad addresses and networks (threat-intel indicators), e.g. `203.0.113.0/24`.
    #[serde(with = "network_list")]
    pub known_bad: Vec<IpNet>,
    /// Points when the source or destination matches a known-bad indicator.
    pub indicator_points: f64,
    pub volume: VolumeThresholds,
    /// The largest weight of the ML score in the final score (0 = rules only, 1 = ML only):
    /// the weight used is this times the prediction's coverage (share of the model's inputs
    /// the signal carried) times its confidence. An abstaining model has no weight.
    pub ml_weight: f64,
}

impl Default for AssessmentSettings {
    fn default() -> Self {
        Self {
            type_weights: default_type_weights(),
            default_type_weight: 2.0,
            high_risk_ports: vec![
                21, 22, 23, 25, 135, 137, 138, 139, 445, 1433, 1521, 2375, 3306, 3389, 5432, 5900,
                5985, 5986, 6379, 9200, 11211, 27017,
            ],
            high_risk_port_points: 1.5,
            privileged_port_points: 0.5,
            sensor_confidence_points: 2.5,
            sensor_severity_points: 1.0,
            known_bad: Vec::new(),
            indicator_points: 3.0,
            volume: VolumeThresholds::default(),
            ml_weight: 0.5,
        }
    }
}

fn default_type_weights() -> BTreeMap<String, f64> {
    [
        // generic categories
        ("ransomware", 4.0),
        ("malware", 3.5),
        ("command_and_control", 3.5),
        ("c2", 3.5),
        ("data_exfiltration", 3.5),
        ("exfiltration", 3.5),
        ("exploit", 3.5),
        ("privilege_escalation", 3.5),
        ("lateral_movement", 3.5),
        ("ddos", 3.0),
        ("dos", 3.0),
        ("brute_force", 3.0),
        ("credential_stuffing", 3.0),
        ("sql_injection", 3.0),
        ("web_attack", 2.5),
        ("phishing", 2.5),
        ("suspicious_traffic", 2.5),
        ("anomaly", 2.0),
        ("port_scan", 1.5),
        ("reconnaissance", 1.5),
        ("policy_violation", 1.0),
        ("normal", 0.0),
        // NSL-KDD attack names, by their category (dos, probe, r2l, u2r)
        ("neptune", 3.0),
        ("smurf", 3.0),
        ("back", 3.0),
        ("teardrop", 3.0),
        ("pod", 3.0),
        ("land", 3.0),
        ("satan", 1.5),
        ("ipsweep", 1.5),
        ("nmap", 1.5),
        ("portsweep", 1.5),
        ("guess_passwd", 3.0),
        ("ftp_write", 3.0),
        ("imap", 3.0),
        ("phf", 3.0),
        ("multihop", 3.0),
        ("warezmaster", 3.0),
        ("warezclient", 2.5),
        ("spy", 3.0),
        ("buffer_overflow", 4.0),
        ("loadmodule", 4.0),
        ("perl", 4.0),
        ("rootkit", 4.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl AssessmentSettings {
    /// Points are finite and within 0-10, the ML weight within 0-1.
    pub fn validate(&self) -> Result<()> {
        for (name, weight) in &self.type_weights {
            if name.trim().is_empty() {
                return Err(ValidationError::Empty {
                    field: "soar.assessment.type_weights key",
                });
            }
            if !weight.is_finite() || !(0.0..=10.0).contains(weight) {
                return Err(invalid(
                    "soar.assessment.type_weights",
                    format!("weight of {name:?} must be within 0..=10, got {weight}"),
                ));
            }
        }
        for (field, value) in [
            (
                "soar.assessment.default_type_weight",
                self.default_type_weight,
            ),
            (
                "soar.assessment.high_risk_port_points",
                self.high_risk_port_points,
            ),
            (
                "soar.assessment.privileged_port_points",
                self.privileged_port_points,
            ),
            (
                "soar.assessment.sensor_confidence_points",
                self.sensor_confidence_points,
            ),
            (
                "soar.assessment.sensor_severity_points",
                self.sensor_severity_points,
            ),
            ("soar.assessment.indicator_points", self.indicator_points),
        ] {
            require_finite_range(field, value, 0.0, 10.0)?;
        }
        require_finite_range("soar.assessment.ml_weight", self.ml_weight, 0.0, 1.0)?;
        self.volume.validate()
    }
}

/// Traffic volumes above which a signal counts as anomalous; 0 turns a metric off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeThresholds {
    pub bytes: u64,
    pub packets: u64,
    pub bytes_per_second: f64,
    pub packets_per_second: f64,
    /// Points for each metric above its threshold.
    pub points_per_metric: f64,
    /// Cap on the points all volume metrics add together.
    pub max_points: f64,
}

impl Default for VolumeThresholds {
    fn default() -> Self {
        Self {
            bytes: 50_000_000,
            packets: 100_000,
            bytes_per_second: 10_000_000.0,
            packets_per_second: 10_000.0,
            points_per_metric: 0.75,
            max_points: 2.0,
        }
    }
}

impl VolumeThresholds {
    /// Rates are finite and non-negative, points within 0-10.
    pub fn validate(&self) -> Result<()> {
        require_finite_range(
            "soar.assessment.volume.bytes_per_second",
            self.bytes_per_second,
            0.0,
            f64::MAX,
        )?;
        require_finite_range(
            "soar.assessment.volume.packets_per_second",
            self.packets_per_second,
            0.0,
            f64::MAX,
        )?;
        require_finite_range(
            "soar.assessment.volume.points_per_metric",
            self.points_per_metric,
            0.0,
            10.0,
        )?;
        require_finite_range(
            "soar.assessment.volume.max_points",
            self.max_points,
            0.0,
            10.0,
        )
    }
}
