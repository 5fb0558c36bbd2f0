//! Analyst feedback: a person's verdict on what vigil did with one threat signal, and the true
//! label that verdict gives the signal. Labels for training come from here or from imported
//! data sets, never from vigil's own verdicts.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError, require_in_range, require_non_empty};
use crate::severity::Severity;

/// The risk level from which vigil's verdict on a signal is "attack": high and critical.
pub const ATTACK_FROM: Severity = Severity::High;

/// Longest free-text note (`correction`) an analyst can attach, in characters.
pub const MAX_NOTE_CHARS: usize = 4_096;

/// Longest attack type name, in characters.
pub const MAX_ATTACK_TYPE_CHARS: usize = 128;

/// An analyst's verdict on something vigil did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackType {
    /// vigil got it right: the signal's true label is vigil's own verdict.
    Correct,
    /// vigil got it wrong: the analyst gives the true label.
    Incorrect,
    /// Partly right (e.g. right verdict, wrong severity or response): the analyst gives the
    /// true label, which may or may not be vigil's verdict.
    Partial,
}

impl FeedbackType {
    /// Every verdict.
    pub const ALL: [FeedbackType; 3] = [
        FeedbackType::Correct,
        FeedbackType::Incorrect,
        FeedbackType::Partial,
    ];

    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackType::Correct => "correct",
            FeedbackType::Incorrect => "incorrect",
            FeedbackType::Partial => "partial",
        }
    }
}

impl fmt::Display for FeedbackType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeedbackType {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "correct" => Ok(FeedbackType::Correct),
            "incorrect" => Ok(FeedbackType::Incorrect),
            "partial" => Ok(FeedbackType::Partial),
            other => Err(ValidationError::Invalid {
                field: "feedback_type",
                reason: format!(
                    "unknown verdict {other:?}; expected correct, incorrect or partial"
                ),
            }),
        }
    }
}

/// What a signal really was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrueLabel {
    Attack,
    Benign,
}

impl TrueLabel {
    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            TrueLabel::Attack => "attack",
            TrueLabel::Benign => "benign",
        }
    }

    /// `true` for an attack: the label a training example carries.
    pub fn is_attack(self) -> bool {
        self == TrueLabel::Attack
    }

    /// vigil's own verdict on a signal it rated `level`: attack from [`ATTACK_FROM`] up. This
    /// is what an analyst's `correct` confirms; it is never a label by itself.
    pub fn verdict_of(level: Severity) -> Self {
        if level >= ATTACK_FROM {
            TrueLabel::Attack
        } else {
            TrueLabel::Benign
        }
    }
}

impl fmt::Display for TrueLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrueLabel {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "attack" => Ok(TrueLabel::Attack),
            "benign" => Ok(TrueLabel::Benign),
            other => Err(ValidationError::Invalid {
                field: "label",
                reason: format!("unknown label {other:?}; expected attack or benign"),
            }),
        }
    }
}

/// What an analyst submits: a verdict on a workflow (or one of its actions) and, unless the
/// verdict is `correct`, the true label of its signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackSubmission {
    /// The workflow judged: its id, or the id of the event it processed.
    pub workflow: String,
    /// The alert or remediation judged; empty for the whole workflow.
    pub action_id: String,
    pub feedback_type: FeedbackType,
    /// Required for `incorrect` and `partial`; for `correct` it may be given and must then be
    /// vigil's own verdict.
    pub label: Option<TrueLabel>,
    /// The kind of attack (`neptune`, `portsweep`, ...), only with the label `attack`.
    pub attack_type: Option<String>,
    /// How sure the analyst is, 0-1.
    pub confidence: f64,
    /// Free text: what was wrong, or a note.
    pub correction: Option<String>,
    /// Who judged.
    pub analyst: String,
}

impl FeedbackSubmission {
    /// Everything that can be checked without the workflow: each problem is one error naming
    /// the field and what to do.
    pub fn validate(&self) -> Result<()> {
        require_non_empty("workflow", &self.workflow)?;
        require_non_empty("analyst", &self.analyst)?;
        require_in_range("confidence", self.confidence, 0.0, 1.0)?;
        if self.label.is_none() && self.feedback_type != FeedbackType::Correct {
            return Err(ValidationError::Invalid {
                field: "label",
                reason: format!(
                    "a verdict of {} needs the true label (attack or benign)",
                    self.feedback_type
                ),
            });
        }
        if let Some(attack_type) = &self.attack_type {
            require_non_empty("attack_type", attack_type)?;
            if attack_type.chars().count() > MAX_ATTACK_TYPE_CHARS {
                return Err(ValidationError::Invalid {
                    field: "attack_type",
                    reason: format!("longer than {MAX_ATTACK_TYPE_CHARS} characters"),
                });
            }
            if self.label == Some(TrueLabel::Benign) {
                return Err(ValidationError::Invalid {
                    field: "attack_type",
                    reason: "an attack type goes with the label attack, not benign".into(),
                });
            }
        }
        if let Some(note) = &self.correction
            && note.chars().count() > MAX_NOTE_CHARS
        {
            return Err(ValidationError::Invalid {
                field: "correction",
                reason: format!("longer than {MAX_NOTE_CHARS} characters"),
            });
        }
        Ok(())
    }

    /// The true label this verdict gives a signal vigil judged `system`: vigil's own verdict
    /// for `correct`, the analyst's label otherwise. A `correct` whose label contradicts
    /// vigil's verdict is refused: it is an `incorrect`.
    pub fn true_label(&self, system: TrueLabel) -> Result<TrueLabel> {
        match (self.feedback_type, self.label) {
            (FeedbackType::Correct, None) => Ok(system),
            (FeedbackType::Correct, Some(label)) if label == system => Ok(label),
            (FeedbackType::Correct, Some(label)) => Err(ValidationError::Invalid {
                field: "label",
                reason: format!(
                    "the verdict is correct but the label {label} contradicts the workflow's \
                     own verdict {system}; submit incorrect with the label {label}"
                ),
            }),
            (_, Some(label)) => Ok(label),
            (other, None) => Err(ValidationError::Invalid {
                field: "label",
                reason: format!("a verdict of {other} needs the true label (attack or benign)"),
            }),
        }
    }
}

/// A stored verdict: feedback from an analyst, as the seed design's `FeedbackRecord`, with the
/// true label it gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub id: String,
    pub workflow_execution_id: String,
    pub action_id: String,
    pub feedback_type: FeedbackType,
    /// 0-1.
    pub confidence: f64,
    pub correction: Option<String>,
    pub analyst: String,
    /// When the service accepted it.
    pub timestamp: DateTime<Utc>,
    /// The signal's true label by this verdict (for `correct`, vigil's own verdict).
    pub label: Option<TrueLabel>,
    pub attack_type: Option<String>,
    /// The later verdict of the same analyst on the same workflow and action that replaced it.
    pub superseded_by: Option<String>,
}

impl FeedbackRecord {
    /// Ids present, confidence in 0-1, an attack type only with the label attack.
    pub fn validate(&self) -> Result<()> {
        require_non_empty("id", &self.id)?;
        require_non_empty("workflow_execution_id", &self.workflow_execution_id)?;
        require_non_empty("analyst", &self.analyst)?;
        require_in_range("confidence", self.confidence, 0.0, 1.0)?;
        if self.attack_type.is_some() && self.label != Some(TrueLabel::Attack) {
            return Err(ValidationError::Invalid {
                field: "attack_type",
                reason: "an attack type goes with the label attack".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(feedback_type: FeedbackType, label: Option<TrueLabel>) -> FeedbackSubmission {
        FeedbackSubmission {
            workflow: "wf-1".into(),
            action_id: String::new(),
            feedback_type,
            label,
            attack_type: None,
            confidence: 0.9,
            correction: None,
            analyst: "alice".into(),
        }
    }

    #[test]
    fn correct_confirms_vigils_verdict_and_the_others_need_a_label() {
        let correct = submission(FeedbackType::Correct, None);
        assert!(correct.validate().is_ok());
        assert_eq!(correct.true_label(TrueLabel::Attack), Ok(TrueLabel::Attack));
        assert_eq!(correct.true_label(TrueLabel::Benign), Ok(TrueLabel::Benign));

        let contradiction = submission(FeedbackType::Correct, Some(TrueLabel::Benign));
        let error = contradiction
            .true_label(TrueLabel::Attack)
            .expect_err("contradicts");
        assert!(error.to_string().contains("submit incorrect"), "{error}");

        for verdict in [FeedbackType::Incorrect, FeedbackType::Partial] {
            let error = submission(verdict, None).validate().expect_err("no label");
            assert!(
                error.to_string().contains("needs the true label"),
                "{error}"
            );
            let labelled = submission(verdict, Some(TrueLabel::Benign));
            assert!(labelled.validate().is_ok());
            assert_eq!(
                labelled.true_label(TrueLabel::Attack),
                Ok(TrueLabel::Benign)
            );
        }
    }

    #[test]
    fn bad_confidence_and_misplaced_attack_types_are_refused() {
        for bad in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
            let s = FeedbackSubmission {
                confidence: bad,
                ..submission(FeedbackType::Correct, None)
            };
            let error = s.validate().expect_err("bad confidence");
            assert!(error.to_string().contains("confidence"), "{error}");
        }
        let s = FeedbackSubmission {
            attack_type: Some("neptune".into()),
            ..submission(FeedbackType::Incorrect, Some(TrueLabel::Benign))
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn vigils_verdict_is_attack_from_high() {
        assert_eq!(TrueLabel::verdict_of(Severity::Medium), TrueLabel::Benign);
        assert_eq!(TrueLabel::verdict_of(Severity::High), TrueLabel::Attack);
        assert_eq!(TrueLabel::verdict_of(Severity::Critical), TrueLabel::Attack);
    }

    #[test]
    fn names_round_trip() {
        for t in FeedbackType::ALL {
            assert_eq!(t.as_str().parse::<FeedbackType>(), Ok(t));
        }
        for l in [TrueLabel::Attack, TrueLabel::Benign] {
            assert_eq!(l.as_str().parse::<TrueLabel>(), Ok(l));
        }
        assert!("maybe".parse::<FeedbackType>().is_err());
        assert!("evil".parse::<TrueLabel>().is_err());
    }
}
