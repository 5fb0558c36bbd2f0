//! Component 1: explainable rule-based threat assessment, blended with the ML prediction.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use vigil_config::AssessmentSettings;
use vigil_domain::{
    Assessment, PredictionResult, RiskFactor, RiskThresholds, Severity, ThreatSignal,
};

const MAX_SCORE: f64 = 10.0;

/// Scores threat signals 0-10 from configurable rules; every point is explained by a
/// [`RiskFactor`], and the factors of an assessment add up to its risk score.
#[derive(Debug, Clone)]
pub struct ThreatAssessor {
    settings: AssessmentSettings,
    type_weights: HashMap<String, f64>,
    thresholds: RiskThresholds,
}

/// Threat types are matched case-insensitively, with `-` and spaces read as `_`.
fn normalise_type(threat_type: &str) -> String {
    threat_type
        .trim()
        .to_ascii_lowercase()
        .replace(['-', ' '], "_")
}

/// Removes floating-point noise so that a score of 7 is not 6.999999999.
fn tidy(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A finite value clamped to `0..=max`; anything not finite counts as 0.
fn sane(x: f64, max: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, max)
    } else {
        0.0
    }
}

fn port_name(port: u16) -> Option<&'static str> {
    Some(match port {
        21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "dns",
        80 => "http",
        135 => "msrpc",
        137..=139 => "netbios",
        443 => "https",
        445 => "smb",
        1433 => "mssql",
        1521 => "oracle",
        2375 => "docker",
        3306 => "mysql",
        3389 => "rdp",
        5432 => "postgresql",
        5900 => "vnc",
        5985 | 5986 => "winrm",
        6379 => "redis",
        9200 => "elasticsearch",
        11211 => "memcached",
        27017 => "mongodb",
        _ => return None,
    })
}

fn describe_port(port: u16) -> String {
    match port_name(port) {
        Some(name) => format!("{port} ({name})"),
        None => port.to_string(),
    }
}

impl ThreatAssessor {
    /// An assessor with these rules and level thresholds.
    pub fn new(settings: AssessmentSettings, thresholds: RiskThresholds) -> Self {
        let type_weights = settings
            .type_weights
            .iter()
            .map(|(k, v)| (normalise_type(k), *v))
            .collect();
        Self {
            settings,
            type_weights,
            thresholds,
        }
    }

    /// The thresholds that turn scores into levels.
    pub fn thresholds(&self) -> RiskThresholds {
        self.thresholds
    }

    /// Assesses a signal now; see [`ThreatAssessor::assess_at`].
    pub fn assess(
        &self,
        signal: &ThreatSignal,
        prediction: Option<&PredictionResult>,
    ) -> Assessment {
        self.assess_at(signal, prediction, Utc::now())
    }

    /// Assesses a signal: the rule score with its factors, blended with the prediction when there
    /// is a usable one (both scores are kept). The output is finite for any signal, even one that
    /// fails validation (non-finite inputs count as 0).
    pub fn assess_at(
        &self,
        signal: &ThreatSignal,
        prediction: Option<&PredictionResult>,
        now: DateTime<Utc>,
    ) -> Assessment {
        let mut factors = Vec::new();
        let mut corroborating = 0u32;
        let s = &self.settings;

        // Threat type.
        let key = normalise_type(&signal.threat_type);
        match self.type_weights.get(&key) {
            Some(w) => {
                corroborating += u32::from(*w > 0.0);
                factors.push(factor(
                    "type_weight",
                    sane(*w, MAX_SCORE),
                    format!("threat type {:?} weighs {w}", signal.threat_type),
                ));
            }
            None => factors.push(factor(
                "type_weight",
                sane(s.default_type_weight, MAX_SCORE),
                format!(
                    "threat type {:?} is not in the table; default weight {}",
                    signal.threat_type, s.default_type_weight
                ),
            )),
        }

        // Destination port.
        if let Some(port) = signal.destination_port {
            if s.high_risk_ports.contains(&port) {
                corroborating += 1;
                factors.push(factor(
                    "port_risk",
                    sane(s.high_risk_port_points, MAX_SCORE),
                    format!("destination port {} is high-risk", describe_port(port)),
                ));
            } else if port < 1024 && s.privileged_port_points > 0.0 {
                factors.push(factor(
                    "port_risk",
                    sane(s.privileged_port_points, MAX_SCORE),
                    format!("destination port {} is privileged", describe_port(port)),
                ));
            }
        }

        // Sensor confidence and severity.
        let sensor_confidence = sane(signal.confidence, 1.0);
        factors.push(factor(
            "sensor_confidence",
            sensor_confidence * sane(s.sensor_confidence_points, MAX_SCORE),
            format!(
                "sensor {:?} is {:.0}% confident",
                signal.sensor,
                sensor_confidence * 100.0
            ),
        ));
        if let Some(level) = signal.severity {
            let share = match level {
                Severity::Low => 0.0,
                Severity::Medium => 1.0 / 3.0,
                Severity::High => 2.0 / 3.0,
                Severity::Critical => 1.0,
            };
            if share > 0.0 {
                corroborating += 1;
                factors.push(factor(
                    "sensor_severity",
                    share * sane(s.sensor_severity_points, MAX_SCORE),
                    format!("the sensor rated it {level}"),
                ));
            }
        }

        // Known-bad indicators.
        let matches: Vec<String> = [
            ("source", signal.source_ip),
            ("destination", signal.destination_ip),
        ]
        .into_iter()
        .filter_map(|(role, ip)| {
            let ip: IpAddr = ip?;
            s.known_bad
                .iter()
                .find(|net| net.contains(&ip))
                .map(|net| format!("{role} {ip} is in known-bad {net}"))
        })
        .collect();
        if !matches.is_empty() {
            corroborating += 1;
            factors.push(factor(
                "indicator_match",
                sane(s.indicator_points, MAX_SCORE),
                matches.join("; "),
            ));
        }

        // Volume anomalies.
        let volume = self.volume_factors(signal);
        corroborating += u32::from(!volume.is_empty());
        factors.extend(volume);

        // Cap at 10 with an explicit factor, so the factors still add up to the score.
        let raw: f64 = factors.iter().map(|f| f.contribution).sum();
        let rule_score = tidy(sane(raw, MAX_SCORE));
        if raw > MAX_SCORE {
            factors.push(factor(
                "score_cap",
                MAX_SCORE - raw,
                format!("rule score capped at 10 (raw {raw:.2})"),
            ));
        }
        let rule_confidence = sensor_confidence
            + (1.0 - sensor_confidence) * (0.1 * f64::from(corroborating)).min(0.5);

        // Blend with the ML prediction, unless the model abstained.
        let mut risk_score = rule_score;
        let mut confidence = rule_confidence;
        let mut ml_score = None;
        if let Some(p) = prediction {
            if let Err(e) = p.validate() {
                factors.push(factor(
                    "ml_prediction",
                    0.0,
                    format!("prediction ignored: {e}"),
                ));
            } else if let Some(abstention) = &p.abstention {
                factors.push(factor(
                    "ml_prediction",
                    0.0,
                    format!(
                        "model {} abstained ({}): {}",
                        p.model_version_id, abstention.reason, abstention.detail
                    ),
                ));
            } else {
                let w = self.ml_weight(p);
                let blended = tidy(sane((1.0 - w) * rule_score + w * p.risk_score, MAX_SCORE));
                factors.push(factor(
                    "ml_prediction",
                    blended - rule_score,
                    format!(
                        "model {} scored {:.2} ({:.0}% confident, {:.0}% of its inputs carried); \
                         blended at weight {w:.3} (ml_weight {} x coverage {:.2} x confidence \
                         {:.2}) with rule score {rule_score:.2}",
                        p.model_version_id,
                        p.risk_score,
                        p.confidence * 100.0,
                        p.coverage * 100.0,
                        s.ml_weight,
                        p.coverage,
                        p.confidence,
                    ),
                ));
                risk_score = blended;
                confidence = (1.0 - w) * rule_confidence + w * p.confidence;
                ml_score = Some(p.risk_score);
            }
        }

        Assessment {
            threat_id: signal.id.clone(),
            risk_score,
            risk_level: self.thresholds.level(risk_score),
            confidence: tidy(sane(confidence, 1.0)),
            rule_score,
            ml_score,
            factors,
            assessed_at: now,
        }
    }

    /// The weight of the ML score in the final score: `ml_weight`, scaled by the share of the
    /// model's inputs the signal carried and by the model's calibrated confidence, so a model
    /// that saw little of what it reads, or is unsure, has less say than one that saw all of
    /// it and is sure.
    fn ml_weight(&self, p: &PredictionResult) -> f64 {
        sane(self.settings.ml_weight, 1.0) * sane(p.coverage, 1.0) * sane(p.confidence, 1.0)
    }

    fn volume_factors(&self, signal: &ThreatSignal) -> Vec<RiskFactor> {
        let v = &self.settings.volume;
        let duration = signal.duration_seconds;
        let timed = duration.is_finite() && duration > 0.0;
        // u64 -> f64 loses precision only above 2^53 bytes, which does not change a comparison
        // against a threshold.
        let bytes = signal.bytes as f64;
        let packets = signal.packets as f64;
        let checks = [
            ("bytes", bytes, v.bytes as f64, true),
            ("packets", packets, v.packets as f64, true),
            (
                "bytes per second",
                bytes / duration,
                v.bytes_per_second,
                timed,
            ),
            (
                "packets per second",
                packets / duration,
                v.packets_per_second,
                timed,
            ),
        ];
        let mut budget = sane(v.max_points, MAX_SCORE);
        let per_metric = sane(v.points_per_metric, MAX_SCORE);
        let mut out = Vec::new();
        for (metric, value, threshold, applicable) in checks {
            if !applicable || threshold <= 0.0 || value.is_nan() || value <= threshold {
                continue;
            }
            let points = per_metric.min(budget);
            budget -= points;
            let capped = if points < per_metric {
                format!(" (volume points capped at {})", v.max_points)
            } else {
                String::new()
            };
            out.push(factor(
                "volume_anomaly",
                points,
                format!("{metric} {value:.0} above threshold {threshold:.0}{capped}"),
            ));
        }
        out
    }
}

fn factor(name: &str, contribution: f64, detail: String) -> RiskFactor {
    RiskFactor {
        name: name.to_owned(),
        contribution: tidy(contribution),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn assessor() -> ThreatAssessor {
        ThreatAssessor::new(AssessmentSettings::default(), RiskThresholds::default())
    }

    fn signal(threat_type: &str, confidence: f64) -> ThreatSignal {
        let mut s = ThreatSignal::new(threat_type, confidence, DateTime::<Utc>::UNIX_EPOCH);
        s.id = "threat-1".into();
        s.sensor = "test".into();
        s
    }

    fn sum(a: &Assessment) -> f64 {
        a.factors.iter().map(|f| f.contribution).sum()
    }

    fn prediction(score: f64, confidence: f64) -> PredictionResult {
        PredictionResult {
            threat_id: "threat-1".into(),
            risk_score: score,
            risk_level: RiskThresholds::default().level(score),
            confidence,
            model_version_id: "ensemble-v3".into(),
            features_used: BTreeMap::new(),
            prediction_time_ms: 0.2,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            coverage: 1.0,
            missing_inputs: Vec::new(),
            in_domain: 1.0,
            probability: 0.5,
            decision_threshold: 0.1,
            member_probabilities: BTreeMap::new(),
            novelty: 0.0,
            abstention: None,
        }
    }

    #[test]
    fn factors_explain_and_add_up_to_the_score() {
        let mut s = signal("brute_force", 0.8);
        s.destination_port = Some(22);
        s.severity = Some(Severity::High);
        let a = assessor().assess(&s, None);
        a.validate().unwrap();
        let names: Vec<&str> = a.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "type_weight",
                "port_risk",
                "sensor_confidence",
                "sensor_severity"
            ]
        );
        // 3.0 (brute_force) + 1.5 (ssh) + 0.8 * 2.5 + 2/3 * 1.0
        assert!((a.risk_score - 7.166667).abs() < 1e-5, "{}", a.risk_score);
        assert!((sum(&a) - a.risk_score).abs() < 1e-5);
        assert!(
            a.factors[1].detail.contains("22 (ssh)"),
            "{:?}",
            a.factors[1]
        );
        assert_eq!(a.risk_level, Severity::High);
        assert_eq!(a.rule_score, a.risk_score);
        assert_eq!(a.ml_score, None);
        assert_eq!(a.threat_id, "threat-1");
    }

    #[test]
    fn a_known_bad_indicator_raises_the_score() {
        let settings = AssessmentSettings {
            known_bad: vec!["203.0.113.0/24".parse().unwrap()],
            ..AssessmentSettings::default()
        };
        let assessor = ThreatAssessor::new(settings, RiskThresholds::default());
        let mut s = signal("port_scan", 0.5);
        s.source_ip = Some("198.51.100.1".parse().unwrap());
        let clean = assessor.assess(&s, None);
        s.source_ip = Some("203.0.113.7".parse().unwrap());
        let bad = assessor.assess(&s, None);
        assert!((bad.risk_score - clean.risk_score - 3.0).abs() < 1e-9);
        let m = bad
            .factors
            .iter()
            .find(|f| f.name == "indicator_match")
            .unwrap();
        assert!(
            m.detail.contains("203.0.113.7") && m.detail.contains("203.0.113.0/24"),
            "{}",
            m.detail
        );
        assert!(clean.factors.iter().all(|f| f.name != "indicator_match"));
        assert!(bad.confidence > clean.confidence);
    }

    #[test]
    fn volume_anomalies_are_capped_and_explained() {
        let mut s = signal("suspicious_traffic", 0.5);
        s.bytes = 500_000_000;
        s.packets = 5_000_000;
        s.duration_seconds = 1.0;
        let a = assessor().assess(&s, None);
        let volume: Vec<&RiskFactor> = a
            .factors
            .iter()
            .filter(|f| f.name == "volume_anomaly")
            .collect();
        // Every anomaly is named; the points stop at the cap: 0.75 + 0.75 + 0.5 + 0.
        assert_eq!(volume.len(), 4, "{volume:?}");
        let points: Vec<f64> = volume.iter().map(|f| f.contribution).collect();
        assert_eq!(points, [0.75, 0.75, 0.5, 0.0]);
        assert_eq!(volume[0].detail, "bytes 500000000 above threshold 50000000");
        assert!(
            volume[3].detail.contains("capped at 2"),
            "{}",
            volume[3].detail
        );
        // Without a duration, no rate is computed (and nothing divides by zero).
        s.duration_seconds = 0.0;
        s.bytes = 1;
        s.packets = 1;
        let a = assessor().assess(&s, None);
        assert!(a.factors.iter().all(|f| f.name != "volume_anomaly"));
    }

    #[test]
    fn scores_above_ten_are_capped_with_a_factor() {
        let settings = AssessmentSettings {
            known_bad: vec!["203.0.113.0/24".parse().unwrap()],
            ..AssessmentSettings::default()
        };
        let assessor = ThreatAssessor::new(settings, RiskThresholds::default());
        let mut s = signal("ransomware", 1.0);
        s.source_ip = Some("203.0.113.7".parse().unwrap());
        s.destination_port = Some(445);
        s.severity = Some(Severity::Critical);
        s.bytes = u64::MAX;
        let a = assessor.assess(&s, None);
        assert_eq!(a.risk_score, 10.0);
        assert_eq!(a.risk_level, Severity::Critical);
        assert!(
            a.factors
                .iter()
                .any(|f| f.name == "score_cap" && f.contribution < 0.0)
        );
        assert!((sum(&a) - 10.0).abs() < 1e-5);
    }

    #[test]
    fn blending_with_the_ml_prediction_records_both_scores() {
        let settings = AssessmentSettings {
            ml_weight: 0.25,
            ..AssessmentSettings::default()
        };
        let assessor = ThreatAssessor::new(settings, RiskThresholds::default());
        let s = signal("port_scan", 0.4); // 1.5 + 1.0 = 2.5
        let a = assessor.assess(&s, Some(&prediction(9.5, 1.0)));
        a.validate().unwrap();
        assert!((a.rule_score - 2.5).abs() < 1e-9);
        assert_eq!(a.ml_score, Some(9.5));
        assert!((a.risk_score - (0.75 * 2.5 + 0.25 * 9.5)).abs() < 1e-9);
        assert_eq!(a.risk_level, Severity::Medium);
        let ml = a
            .factors
            .iter()
            .find(|f| f.name == "ml_prediction")
            .unwrap();
        assert!(ml.detail.contains("ensemble-v3"), "{}", ml.detail);
        assert!((sum(&a) - a.risk_score).abs() < 1e-5);
        assert!(a.confidence > 0.4 && a.confidence < 1.0);

        // An unusable prediction is ignored, with the reason recorded.
        let a = assessor.assess(&s, Some(&prediction(f64::NAN, 0.9)));
        assert_eq!(a.ml_score, None);
        assert!((a.risk_score - 2.5).abs() < 1e-9);
        assert!(
            a.factors
                .iter()
                .any(|f| f.name == "ml_prediction" && f.detail.contains("ignored"))
        );
    }

    #[test]
    fn the_ml_weight_follows_coverage_and_confidence() {
        let assessor = assessor(); // ml_weight 0.5
        let s = signal("port_scan", 0.4); // rule score 2.5
        let blend = |coverage: f64, confidence: f64| {
            let mut p = prediction(9.5, confidence);
            p.coverage = coverage;
            let a = assessor.assess(&s, Some(&p));
            assert!((sum(&a) - a.risk_score).abs() < 1e-5);
            a.risk_score
        };
        let full = blend(1.0, 1.0);
        assert!((full - (0.5 * 2.5 + 0.5 * 9.5)).abs() < 1e-9, "{full}");
        // Half the inputs, or a model half as sure: half the say.
        assert!((blend(0.5, 1.0) - (0.75 * 2.5 + 0.25 * 9.5)).abs() < 1e-9);
        assert!((blend(1.0, 0.5) - (0.75 * 2.5 + 0.25 * 9.5)).abs() < 1e-9);
        // A model that saw nothing of what it reads, or cannot tell, has no say.
        assert!((blend(0.0, 1.0) - 2.5).abs() < 1e-9);
        assert!((blend(1.0, 0.0) - 2.5).abs() < 1e-9);
        assert!(blend(0.9, 0.9) < full && blend(0.9, 0.9) > 2.5);
    }

    #[test]
    fn an_abstaining_model_has_no_say_and_the_reason_is_recorded() {
        let s = signal("normal", 0.1);
        let rules = assessor().assess(&s, None);
        let p = PredictionResult {
            coverage: 0.03,
            missing_inputs: vec!["count".into(), "srv_count".into()],
            ..prediction(9.99, 0.99)
        }
        .abstain_below(0.5);
        let a = assessor().assess(&s, Some(&p));
        a.validate().unwrap();
        assert_eq!(a.ml_score, None);
        assert_eq!(a.risk_score, rules.risk_score);
        assert_eq!(a.risk_level, rules.risk_level);
        let ml = a
            .factors
            .iter()
            .find(|f| f.name == "ml_prediction")
            .expect("the abstention is explained");
        assert_eq!(ml.contribution, 0.0);
        assert!(
            ml.detail.contains("abstained (low_coverage)"),
            "{}",
            ml.detail
        );
        assert!(ml.detail.contains("count, srv_count"), "{}", ml.detail);
    }

    #[test]
    fn levels_follow_the_thresholds_exactly() {
        let mut settings = AssessmentSettings {
            type_weights: BTreeMap::new(),
            sensor_confidence_points: 0.0,
            ..AssessmentSettings::default()
        };
        for (points, level) in [
            (9.0, Severity::Critical),
            (8.999, Severity::High),
            (7.0, Severity::High),
            (6.999, Severity::Medium),
            (4.0, Severity::Medium),
            (3.999, Severity::Low),
        ] {
            settings.default_type_weight = points;
            let a = ThreatAssessor::new(settings.clone(), RiskThresholds::default())
                .assess(&signal("whatever", 0.5), None);
            assert_eq!(a.risk_score, points);
            assert_eq!(a.risk_level, level, "score {points}");
        }
        // Summed factors land exactly on a threshold despite floating-point noise:
        // 3.0 (brute_force) + 1.5 (ssh) + 0.6 * 2.5 + 1.0 (critical) = 7.0.
        let mut s = signal("brute_force", 0.6);
        s.destination_port = Some(22);
        s.severity = Some(Severity::Critical);
        let a = assessor().assess(&s, None);
        assert_eq!(a.risk_score, 7.0);
        assert_eq!(a.risk_level, Severity::High);
    }

    #[test]
    fn output_is_finite_for_any_valid_signal() {
        // A deterministic pseudo-random sweep over extreme but valid signals.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let types = [
            "ddos",
            "port_scan",
            "Brute-Force",
            "",
            "unknown thing",
            "neptune",
        ];
        let settings = AssessmentSettings {
            known_bad: vec!["0.0.0.0/1".parse().unwrap(), "::/1".parse().unwrap()],
            ..AssessmentSettings::default()
        };
        let assessor = ThreatAssessor::new(settings, RiskThresholds::default());
        for i in 0..5_000u64 {
            let r = next();
            let mut s = signal(types[(r % 6) as usize], (r % 1001) as f64 / 1000.0);
            s.bytes = if i % 7 == 0 {
                u64::MAX
            } else {
                next() % 1_000_000_000
            };
            s.packets = if i % 11 == 0 {
                u64::MAX
            } else {
                next() % 10_000_000
            };
            s.duration_seconds = match i % 5 {
                0 => 0.0,
                1 => f64::MIN_POSITIVE,
                2 => 1e300,
                _ => (next() % 10_000) as f64 / 10.0,
            };
            s.destination_port = Some((next() % 65_536) as u16);
            s.source_ip = Some(IpAddr::from((next() as u32).to_be_bytes()));
            s.destination_ip = Some(IpAddr::from(u128::from(next()).to_be_bytes()));
            s.severity = [None, Some(Severity::Low), Some(Severity::Critical)][(r % 3) as usize];
            let p = (i % 2 == 0).then(|| prediction((next() % 1001) as f64 / 100.0, 0.5));
            let a = assessor.assess(&s, p.as_ref());
            assert!(
                a.risk_score.is_finite() && (0.0..=10.0).contains(&a.risk_score),
                "{a:?}"
            );
            assert!(
                a.confidence.is_finite() && (0.0..=1.0).contains(&a.confidence),
                "{a:?}"
            );
            assert!(
                a.factors.iter().all(|f| f.contribution.is_finite()),
                "{a:?}"
            );
            assert!((sum(&a) - a.risk_score).abs() < 1e-4, "{a:?}");
            assert_eq!(a.risk_level, RiskThresholds::default().level(a.risk_score));
        }
        // Even a signal that fails validation yields finite numbers.
        let mut s = signal("ddos", f64::NAN);
        s.duration_seconds = f64::INFINITY;
        let a = assessor.assess(&s, None);
        assert!(a.risk_score.is_finite() && a.confidence.is_finite());
    }
}
