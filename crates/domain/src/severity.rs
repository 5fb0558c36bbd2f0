use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError, require_in_range};

/// How bad a threat is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// All levels, most urgent first (the order the orchestrator drains them in).
    pub const BY_URGENCY: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// Lowercase name, as used in subjects (`vigil.work.<level>`) and config keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(ValidationError::Invalid {
                field: "severity",
                reason: format!("unknown level {other:?}; expected low, medium, high or critical"),
            }),
        }
    }
}

/// Score thresholds (0-10) that turn a risk score into a [`Severity`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskThresholds {
    pub critical: f64,
    pub high: f64,
    pub medium: f64,
}

impl Default for RiskThresholds {
    fn default() -> Self {
        Self {
            critical: 9.0,
            high: 7.0,
            medium: 4.0,
        }
    }
}

impl RiskThresholds {
    /// The level of a 0-10 risk score: critical >= `critical`, high >= `high`, and so on.
    pub fn level(&self, score: f64) -> Severity {
        if score >= self.critical {
            Severity::Critical
        } else if score >= self.high {
            Severity::High
        } else if score >= self.medium {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// Thresholds must lie in 0-10 and be strictly increasing medium < high < critical.
    pub fn validate(&self) -> Result<()> {
        require_in_range("thresholds.medium", self.medium, 0.0, 10.0)?;
        require_in_range("thresholds.high", self.high, 0.0, 10.0)?;
        require_in_range("thresholds.critical", self.critical, 0.0, 10.0)?;
        if !(self.medium < self.high && self.high < self.critical) {
            return Err(ValidationError::Invalid {
                field: "thresholds",
                reason: format!(
                    "must satisfy medium < high < critical, got {} / {} / {}",
                    self.medium, self.high, self.critical
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_match_the_seed_design() {
        let t = RiskThresholds::default();
        assert_eq!(t.level(9.0), Severity::Critical);
        assert_eq!(t.level(8.99), Severity::High);
        assert_eq!(t.level(7.0), Severity::High);
        assert_eq!(t.level(4.0), Severity::Medium);
        assert_eq!(t.level(3.9), Severity::Low);
    }

    #[test]
    fn thresholds_out_of_order_are_refused() {
        let t = RiskThresholds {
            critical: 5.0,
            high: 7.0,
            medium: 4.0,
        };
        assert!(t.validate().is_err());
    }

    #[test]
    fn severity_parses_case_insensitively_and_orders() {
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("urgent".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High);
    }
}
