//! Domain types shared by every vigil crate.
//!
//! These are plain Rust values with no wire format attached: the proto crate converts them to and
//! from protobuf at the edge, the store crate maps them to rows, and the pure logic crates
//! (`vigil-ml`, `vigil-soar`) work only with these.

mod error;
mod event;
mod feedback;
pub mod fingerprint;
mod health;
mod model;
mod severity;
mod signal;
mod soar;
mod workflow;

pub use error::{Result, ValidationError};
pub use event::{ConfigChange, EventType, SecurityEvent};
pub use feedback::{
    ATTACK_FROM, FeedbackRecord, FeedbackSubmission, FeedbackType, MAX_ATTACK_TYPE_CHARS,
    MAX_NOTE_CHARS, TrueLabel,
};
pub use health::{
    ComponentHealth, DependencyStatus, HealthState, Heartbeat, LatencyPercentiles, SystemStatus,
};
pub use model::{
    AbstainReason, Abstention, ModelMetrics, ModelType, ModelVersion, PredictionResult,
};
pub use severity::{RiskThresholds, Severity};
pub use signal::ThreatSignal;
pub use soar::{
    ActionKind, ActionStatus, Alert, AlertStatus, Assessment, Incident, IncidentStatus,
    RemediationAction, RiskFactor,
};
pub use workflow::{StepOutcome, WorkflowExecution, WorkflowStatus, WorkflowStep};
