//! Components 1-4 of vigil: threat assessment, alert routing, remediation and incidents.
//!
//! Decisions are pure functions of their inputs (the signal, the assessment, the settings and
//! whatever the caller read from PostgreSQL, such as the last alert of a threat key or the open
//! incident); the only I/O here is the remediation [`Executor`]s. Persistence and exactly-once
//! belong to the orchestrator, which stores what these functions return under unique keys.
//!
//! - [`ThreatAssessor`]: explainable rule score 0-10, blended with an ML prediction when present.
//! - [`AlertRouter`]: channels per level, grouping of repeats, per-channel token buckets; builds the
//!   [`Alert`](vigil_domain::Alert)s that `vigil-notify` delivers.
//! - [`Remediator`]: safety rails (threshold, allow-list, per-minute cap) in front of an
//!   [`Executor`] (dry-run, nftables, webhook); every action carries its undo.
//! - [`incident`]: threat keys, titles, severity merge, attach-or-open decisions.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod assessment;
mod error;
pub mod incident;
pub mod remediation;
mod routing;

pub use assessment::ThreatAssessor;
pub use error::{Error, Result};
pub use incident::threat_key;
pub use remediation::{
    DryRunExecutor, Executor, NftablesExecutor, PlannedAction, Prepared, PreparedAction,
    RemediationOutcome, RemediationPlan, Remediator, WebhookExecutor, action_id, build_executor,
};
pub use routing::{AlertRouter, PreviousAlert, RoutingDecision, TokenBucket};
