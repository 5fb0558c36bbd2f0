//! Conversions between the wire `FeedbackRecord` and the domain's feedback types.
//!
//! One wire message serves two purposes: what an analyst submits on `vigil.feedback.submit`
//! (-> [`FeedbackSubmission`]: `id`, `timestamp` and `superseded_by` are the service's to set
//! and are ignored) and a stored verdict (<-> [`FeedbackRecord`]).

use chrono::{DateTime, Utc};
use vigil_domain::{FeedbackRecord, FeedbackSubmission, FeedbackType, TrueLabel, ValidationError};

use crate::ConversionError;
use crate::v1;

type Result<T, E = ConversionError> = std::result::Result<T, E>;

/// The verdict of a wire enum value; unspecified and unknown values are refused with the
/// accepted ones named.
pub fn feedback_type(value: i32) -> Result<FeedbackType> {
    match v1::FeedbackType::try_from(value) {
        Ok(v1::FeedbackType::Correct) => Ok(FeedbackType::Correct),
        Ok(v1::FeedbackType::Incorrect) => Ok(FeedbackType::Incorrect),
        Ok(v1::FeedbackType::Partial) => Ok(FeedbackType::Partial),
        Ok(v1::FeedbackType::Unspecified) => Err(ValidationError::Invalid {
            field: "feedback_type",
            reason: "no verdict given; expected FEEDBACK_TYPE_CORRECT, FEEDBACK_TYPE_INCORRECT \
                     or FEEDBACK_TYPE_PARTIAL"
                .into(),
        }
        .into()),
        Err(_) => Err(ValidationError::Invalid {
            field: "feedback_type",
            reason: format!(
                "unknown verdict {value}; expected FEEDBACK_TYPE_CORRECT (1), \
                 FEEDBACK_TYPE_INCORRECT (2) or FEEDBACK_TYPE_PARTIAL (3)"
            ),
        }
        .into()),
    }
}

impl From<FeedbackType> for v1::FeedbackType {
    fn from(t: FeedbackType) -> Self {
        match t {
            FeedbackType::Correct => v1::FeedbackType::Correct,
            FeedbackType::Incorrect => v1::FeedbackType::Incorrect,
            FeedbackType::Partial => v1::FeedbackType::Partial,
        }
    }
}

/// The label of a wire enum value; `TRUE_LABEL_UNSPECIFIED` means none was given.
pub fn true_label(value: i32) -> Result<Option<TrueLabel>> {
    match v1::TrueLabel::try_from(value) {
        Ok(v1::TrueLabel::Unspecified) => Ok(None),
        Ok(v1::TrueLabel::Attack) => Ok(Some(TrueLabel::Attack)),
        Ok(v1::TrueLabel::Benign) => Ok(Some(TrueLabel::Benign)),
        Err(_) => Err(ValidationError::Invalid {
            field: "label",
            reason: format!(
                "unknown label {value}; expected TRUE_LABEL_ATTACK (1) or TRUE_LABEL_BENIGN (2)"
            ),
        }
        .into()),
    }
}

impl From<TrueLabel> for v1::TrueLabel {
    fn from(label: TrueLabel) -> Self {
        match label {
            TrueLabel::Attack => v1::TrueLabel::Attack,
            TrueLabel::Benign => v1::TrueLabel::Benign,
        }
    }
}

fn optional_string(value: String) -> Option<String> {
    (!value.trim().is_empty()).then_some(value)
}

fn wire_label(label: Option<TrueLabel>) -> i32 {
    label.map_or(v1::TrueLabel::Unspecified, v1::TrueLabel::from) as i32
}

/// A submission: checked as far as it can be without the workflow (see
/// [`FeedbackSubmission::validate`]). A confidence that is not sent is 1.
impl TryFrom<v1::FeedbackRecord> for FeedbackSubmission {
    type Error = ConversionError;

    fn try_from(w: v1::FeedbackRecord) -> Result<Self> {
        let submission = FeedbackSubmission {
            workflow: w.workflow_execution_id.trim().to_owned(),
            action_id: w.action_id.trim().to_owned(),
            feedback_type: feedback_type(w.feedback_type)?,
            label: true_label(w.label)?,
            attack_type: optional_string(w.attack_type).map(|t| t.trim().to_owned()),
            confidence: w.confidence.unwrap_or(1.0),
            correction: optional_string(w.correction),
            analyst: w.analyst.trim().to_owned(),
        };
        submission.validate()?;
        Ok(submission)
    }
}

impl From<FeedbackSubmission> for v1::FeedbackRecord {
    fn from(d: FeedbackSubmission) -> Self {
        Self {
            id: String::new(),
            workflow_execution_id: d.workflow,
            action_id: d.action_id,
            feedback_type: v1::FeedbackType::from(d.feedback_type) as i32,
            confidence: Some(d.confidence),
            correction: d.correction.unwrap_or_default(),
            analyst: d.analyst,
            timestamp: None,
            label: wire_label(d.label),
            attack_type: d.attack_type.unwrap_or_default(),
            superseded_by: String::new(),
        }
    }
}

/// A stored verdict: id and timestamp are required.
impl TryFrom<v1::FeedbackRecord> for FeedbackRecord {
    type Error = ConversionError;

    fn try_from(w: v1::FeedbackRecord) -> Result<Self> {
        let timestamp = w
            .timestamp
            .ok_or(ConversionError::Missing { field: "timestamp" })?;
        let timestamp = DateTime::<Utc>::try_from(timestamp)
            .map_err(|_| ConversionError::BadTimestamp { field: "timestamp" })?;
        let record = FeedbackRecord {
            id: w.id,
            workflow_execution_id: w.workflow_execution_id,
            action_id: w.action_id,
            feedback_type: feedback_type(w.feedback_type)?,
            confidence: w.confidence.unwrap_or(1.0),
            correction: optional_string(w.correction),
            analyst: w.analyst,
            timestamp,
            label: true_label(w.label)?,
            attack_type: optional_string(w.attack_type),
            superseded_by: optional_string(w.superseded_by),
        };
        record.validate()?;
        Ok(record)
    }
}

impl From<FeedbackRecord> for v1::FeedbackRecord {
    fn from(d: FeedbackRecord) -> Self {
        Self {
            id: d.id,
            workflow_execution_id: d.workflow_execution_id,
            action_id: d.action_id,
            feedback_type: v1::FeedbackType::from(d.feedback_type) as i32,
            confidence: Some(d.confidence),
            correction: d.correction.unwrap_or_default(),
            analyst: d.analyst,
            timestamp: Some(d.timestamp.into()),
            label: wire_label(d.label),
            attack_type: d.attack_type.unwrap_or_default(),
            superseded_by: d.superseded_by.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> v1::FeedbackRecord {
        v1::FeedbackRecord {
            workflow_execution_id: " wf-1 ".into(),
            feedback_type: v1::FeedbackType::Incorrect as i32,
            label: v1::TrueLabel::Benign as i32,
            analyst: "alice".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_submission_without_confidence_is_sure_and_ids_are_trimmed() {
        let s = FeedbackSubmission::try_from(wire()).expect("valid");
        assert_eq!(s.workflow, "wf-1");
        assert_eq!(s.confidence, 1.0);
        assert_eq!(s.label, Some(TrueLabel::Benign));
        let back = FeedbackSubmission::try_from(v1::FeedbackRecord::from(s.clone()));
        assert_eq!(back, Ok(s));
    }

    /// Breaks one field of a valid submission.
    type Breakage = fn(&mut v1::FeedbackRecord);

    #[test]
    fn every_refusal_names_its_field() {
        let cases: [(Breakage, &str); 6] = [
            (|w| w.feedback_type = 9, "unknown verdict 9"),
            (|w| w.feedback_type = 0, "no verdict given"),
            (|w| w.confidence = Some(f64::NAN), "confidence"),
            (|w| w.confidence = Some(1.5), "confidence"),
            (|w| w.label = 0, "needs the true label"),
            (|w| w.label = 7, "unknown label 7"),
        ];
        for (breaks, expected) in cases {
            let mut w = wire();
            breaks(&mut w);
            let error = FeedbackSubmission::try_from(w).expect_err(expected);
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn stored_records_round_trip() {
        let record = FeedbackRecord {
            id: "fb-1".into(),
            workflow_execution_id: "wf-1".into(),
            action_id: "rm-1".into(),
            feedback_type: FeedbackType::Partial,
            confidence: 0.95,
            correction: Some("should be medium".into()),
            analyst: "alice".into(),
            timestamp: DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
            label: Some(TrueLabel::Attack),
            attack_type: Some("neptune".into()),
            superseded_by: Some("fb-2".into()),
        };
        let wire = v1::FeedbackRecord::from(record.clone());
        assert_eq!(FeedbackRecord::try_from(wire), Ok(record));
    }
}
