//! Component 3: automatic remediation behind safety rails.
//!
//! [`Remediator`] decides (risk above the threshold, remediation enabled), resolves targets,
//! refuses anything on the allow-list or otherwise protected, and hands the rest to an
//! [`Executor`]. The per-minute cap is shared by every orchestrator replica, so it is counted
//! in PostgreSQL between [`Remediator::prepare`] and [`Remediator::execute`], not here. Every action it returns carries the undo that reverses it; `vigil remediation
//! undo <id>` replays that undo through [`Executor::undo`] (or [`Remediator::undo`]).

mod dry_run;
pub mod nftables;
mod webhook;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use vigil_config::{ExecutorKind, RemediationSettings};
use vigil_domain::{ActionKind, ActionStatus, Assessment, RemediationAction, ThreatSignal};

pub use dry_run::DryRunExecutor;
pub use nftables::NftablesExecutor;
pub use webhook::WebhookExecutor;

use crate::error::{Error, Result};

/// What an executor will apply for an action, and what reverses it; both are stored with the
/// action and replayed later.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedAction {
    pub details: Value,
    pub undo: Value,
}

/// Carries remediations out. Implementations must make `prepare` free of side effects.
#[async_trait]
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// The name stored in `RemediationAction::executor` (`dry-run`, `nftables`, `webhook`).
    fn name(&self) -> &'static str;

    /// Whether an action with a duration ends by itself (an nftables set timeout) or needs its
    /// undo replayed at `expires_at` by whoever sweeps expired actions.
    fn expires_by_itself(&self) -> bool {
        true
    }

    /// Renders the action and its undo, without doing anything; `duration` is `None` for actions
    /// that last until undone.
    fn prepare(
        &self,
        kind: ActionKind,
        target: &str,
        duration: Option<Duration>,
    ) -> Result<PreparedAction>;

    /// Applies a prepared action (its `details`): `Applied`, or `Simulated` when the executor
    /// only records or renders.
    async fn execute(&self, action: &RemediationAction) -> Result<ActionStatus>;

    /// Replays the action's stored `undo`.
    async fn undo(&self, action: &RemediationAction) -> Result<()>;
}

/// Builds the executor of this kind from the settings.
pub fn build_executor(
    kind: ExecutorKind,
    settings: &RemediationSettings,
) -> Result<Arc<dyn Executor>> {
    Ok(match kind {
        ExecutorKind::DryRun => Arc::new(DryRunExecutor::new()),
        ExecutorKind::Nftables => Arc::new(NftablesExecutor::new(settings.nftables.clone())?),
        ExecutorKind::Webhook => {
            let webhook = settings.webhook.as_ref().ok_or_else(|| {
                Error::Settings(vigil_domain::ValidationError::Invalid {
                    field: "soar.remediation.webhook",
                    reason: "the webhook executor needs a [soar.remediation.webhook] section"
                        .into(),
                })
            })?;
            Arc::new(WebhookExecutor::new(webhook.clone())?)
        }
    })
}

fn ensure_executor(action: &RemediationAction, asked: &'static str) -> Result<()> {
    if action.executor != asked {
        return Err(Error::ExecutorMismatch {
            id: action.id.clone(),
            recorded: action.executor.clone(),
            asked,
        });
    }
    Ok(())
}

/// One action the policy wants, before safety checks and execution.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAction {
    pub kind: ActionKind,
    pub target: String,
    /// Why: the rule that chose it.
    pub reason: String,
}

/// The actions for one assessed event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemediationPlan {
    /// Set when nothing is to be done at all (disabled, score not above the threshold).
    pub skipped: Option<String>,
    pub actions: Vec<PlannedAction>,
    /// Actions the rules named but that had no target in the signal.
    pub notes: Vec<String>,
}

/// Everything remediation did for one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemediationOutcome {
    /// Set when nothing was attempted, with the reason.
    pub skipped: Option<String>,
    /// Applied, simulated, refused or failed actions, each with its undo.
    pub actions: Vec<RemediationAction>,
    /// Actions named by the rules that had no target.
    pub notes: Vec<String>,
}

/// Decides and carries out remediations, within the safety rails.
#[derive(Debug)]
pub struct Remediator {
    /// Swapped whole by [`Remediator::reconfigure`] when the live configuration changes.
    settings: RwLock<Arc<RemediationSettings>>,
    executor: Arc<dyn Executor>,
}

/// Addresses that are never a remediation target, whatever the settings.
fn never_a_target(ip: IpAddr) -> Option<&'static str> {
    match ip {
        _ if ip.is_loopback() => Some("loopback"),
        _ if ip.is_unspecified() => Some("unspecified"),
        _ if ip.is_multicast() => Some("multicast"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        _ => None,
    }
}

/// The kind of internal network `ip` belongs to: private (RFC 1918), link-local, shared
/// address space (RFC 6598, carrier-grade NAT) or unique-local (RFC 4193).
fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_private() => Some("private"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V4(v4) if v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]) => {
            Some("shared (carrier-grade NAT)")
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => Some("unique-local"),
        _ => None,
    }
}

/// Namespace of remediation action ids (UUID v5): fixed, so an id never changes.
const ACTION_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5d1f_7a2e_9c44_4f0b_8e61_3b7a_c0de_0001);

/// The id of the action `kind` on `target` for the event `event_id`: the same on every attempt
/// and every redelivery, so an executor's `Idempotency-Key` (and the row) identify the effect,
/// not the attempt.
pub fn action_id(event_id: &str, kind: ActionKind, target: &str) -> String {
    let name = format!("{event_id}\u{1f}{}\u{1f}{target}", kind.as_str());
    uuid::Uuid::new_v5(&ACTION_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// A planned action after the safety checks: see [`Remediator::prepare`].
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Passed the checks: record the intent, then execute.
    Ready(RemediationAction),
    /// Refused or not renderable: record it; the executor is never called.
    Final(RemediationAction),
}

impl Remediator {
    /// A remediator using the executor named in the settings.
    pub fn from_settings(settings: RemediationSettings) -> Result<Self> {
        settings.validate()?;
        let executor = build_executor(settings.executor, &settings)?;
        Ok(Self::new(settings, executor))
    }

    /// A remediator using this executor.
    pub fn new(settings: RemediationSettings, executor: Arc<dyn Executor>) -> Self {
        Self {
            settings: RwLock::new(Arc::new(settings)),
            executor,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<RemediationSettings> {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes new rails (enabled, threshold, allow-list, protected names, cap) from a live
    /// configuration change; the executor stays the one the remediator started with.
    pub fn reconfigure(&self, settings: RemediationSettings) {
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(settings);
    }

    /// The executor actions go to.
    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.executor
    }

    /// Which actions the rules want for this event (pure; no safety checks yet).
    pub fn plan(&self, signal: &ThreatSignal, assessment: &Assessment) -> RemediationPlan {
        let s = self.settings();
        if !s.enabled {
            return RemediationPlan {
                skipped: Some("remediation is disabled".into()),
                ..RemediationPlan::default()
            };
        }
        if assessment.risk_score.is_nan() || assessment.risk_score <= s.threshold {
            return RemediationPlan {
                skipped: Some(format!(
                    "risk {:.2} is not above the remediation threshold {}",
                    assessment.risk_score, s.threshold
                )),
                ..RemediationPlan::default()
            };
        }
        let wanted = normalise(&signal.threat_type);
        let (kinds, rule) = match s
            .actions
            .by_type
            .iter()
            .find(|(k, _)| normalise(k) == wanted)
        {
            Some((k, kinds)) => (kinds.as_slice(), format!("actions.by_type.{k}")),
            None => (s.actions.default.as_slice(), "actions.default".to_owned()),
        };
        let mut plan = RemediationPlan::default();
        for &kind in kinds {
            match target_of(kind, signal) {
                Some(target) => plan.actions.push(PlannedAction {
                    kind,
                    target,
                    reason: format!(
                        "{rule}: {} risk {:.2} > {}",
                        signal.threat_type, assessment.risk_score, s.threshold
                    ),
                }),
                None => plan.notes.push(format!(
                    "{kind} skipped: the signal has no {}",
                    match kind {
                        ActionKind::DisableAccount => "user or account attribute",
                        ActionKind::IsolateHost => "host attribute or source address",
                        _ => "source address",
                    }
                )),
            }
        }
        plan
    }

    /// Why a target must never be acted upon, if it must not.
    pub fn protected(&self, target: &str) -> Option<String> {
        if let Ok(ip) = target.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            let settings = self.settings();
            if let Some(net) = settings.allow_list.iter().find(|n| n.contains(&ip)) {
                return Some(format!("{ip} is on the allow-list ({net})"));
            }
            if let Some(kind) = never_a_target(ip) {
                return Some(format!(
                    "{ip} is a {kind} address; remediation never acts on one"
                ));
            }
            if let Some(kind) = internal(ip)
                && !settings.internal_targets.iter().any(|n| n.contains(&ip))
            {
                return Some(format!(
                    "{ip} is a {kind} address; remediation acts on internal addresses only in \
                     the networks soar.remediation.internal_targets lists"
                ));
            }
        }
        self.settings()
            .protected_names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(target.trim()))
            .map(|n| format!("{n} is a protected name"))
    }

    /// Safety checks, then the executor, for one planned action. Never fails: refusals and
    /// errors come back as `Refused` / `Failed` actions with the reason in `details`. No cap
    /// is counted here: the orchestrator records each action's intent between
    /// [`prepare`](Self::prepare) and [`execute`](Self::execute), under the per-minute cap its
    /// replicas share in PostgreSQL (`Remediations::record_intent` in vigil-store).
    pub async fn carry_out(
        &self,
        event_id: &str,
        planned: &PlannedAction,
        risk_score: f64,
        now: DateTime<Utc>,
    ) -> RemediationAction {
        match self.prepare(event_id, planned, risk_score, now) {
            Prepared::Ready(action) => self.execute(action).await,
            Prepared::Final(action) => action,
        }
    }

    /// The safety checks and the executor's rendering of one planned action, without calling
    /// the executor: a [`Prepared::Ready`] action (status `Pending`, with its details, undo and
    /// expiry) is what to record as the intent and then [`execute`](Self::execute); a
    /// [`Prepared::Final`] one was refused or cannot be rendered, and is only recorded.
    pub fn prepare(
        &self,
        event_id: &str,
        planned: &PlannedAction,
        risk_score: f64,
        now: DateTime<Utc>,
    ) -> Prepared {
        let mut action = RemediationAction {
            id: action_id(event_id, planned.kind, &planned.target),
            event_id: event_id.to_owned(),
            kind: planned.kind,
            target: planned.target.clone(),
            executor: self.executor.name().to_owned(),
            status: ActionStatus::Pending,
            details: json!({ "reason": planned.reason, "risk_score": risk_score }),
            undo: json!({}),
            expires_at: None,
            created_at: now,
        };
        if let Some(why) = self.protected(&planned.target) {
            self.refuse(&mut action, why);
            return Prepared::Final(action);
        }
        let duration = match planned.kind {
            ActionKind::BlockAddress | ActionKind::RateLimit => Some(
                Duration::try_seconds(
                    i64::try_from(self.settings().block_duration_seconds)
                        .unwrap_or(i64::MAX / 1_000),
                )
                .unwrap_or(Duration::MAX),
            ),
            ActionKind::IsolateHost | ActionKind::DisableAccount => None,
        };
        let prepared = match self
            .executor
            .prepare(planned.kind, &planned.target, duration)
        {
            Ok(p) => p,
            Err(e) => {
                action.status = ActionStatus::Failed;
                action.details["error"] = Value::String(e.to_string());
                return Prepared::Final(action);
            }
        };
        merge(&mut action.details, prepared.details);
        action.undo = prepared.undo;
        action.expires_at = duration.and_then(|d| now.checked_add_signed(d));
        Prepared::Ready(action)
    }

    /// Marks a prepared action refused, saying why (a protected target, the cap).
    pub fn refuse(&self, action: &mut RemediationAction, why: String) {
        tracing::warn!(target = %action.target, kind = %action.kind, %why, "remediation refused");
        action.status = ActionStatus::Refused;
        action.details["refused"] = Value::String(why);
    }

    /// Calls the executor for a prepared action (again, after a crash: the action's id is the
    /// executor's idempotency key, so a receiver applies it once) and returns it with the
    /// executor's answer as its status.
    pub async fn execute(&self, mut action: RemediationAction) -> RemediationAction {
        match self.executor.execute(&action).await {
            Ok(status) => {
                action.status = status;
                if let Some(details) = action.details.as_object_mut() {
                    details.remove("error");
                }
            }
            Err(e) => {
                tracing::warn!(target = %action.target, kind = %action.kind, error = %e, "remediation failed");
                action.status = ActionStatus::Failed;
                action.details["error"] = Value::String(e.to_string());
            }
        }
        action
    }

    /// Plans and carries out the remediation of one assessed event (no cap: see
    /// [`carry_out`](Self::carry_out)).
    pub async fn remediate(
        &self,
        event_id: &str,
        signal: &ThreatSignal,
        assessment: &Assessment,
        now: DateTime<Utc>,
    ) -> RemediationOutcome {
        let plan = self.plan(signal, assessment);
        let mut actions = Vec::with_capacity(plan.actions.len());
        for planned in &plan.actions {
            actions.push(
                self.carry_out(event_id, planned, assessment.risk_score, now)
                    .await,
            );
        }
        RemediationOutcome {
            skipped: plan.skipped,
            actions,
            notes: plan.notes,
        }
    }

    /// Undoes an action through the executor that carried it out (built from the settings when
    /// it is not the current one). A refused action has nothing to undo.
    pub async fn undo(&self, action: &RemediationAction) -> Result<()> {
        if action.status == ActionStatus::Refused {
            // Nothing was done, so there is nothing to reverse.
            return Ok(());
        }
        if action.executor == self.executor.name() {
            return self.executor.undo(action).await;
        }
        let kind: ExecutorKind = action.executor.parse()?;
        build_executor(kind, &self.settings())?.undo(action).await
    }
}

fn normalise(threat_type: &str) -> String {
    threat_type
        .trim()
        .to_ascii_lowercase()
        .replace(['-', ' '], "_")
}

fn attribute<'a>(signal: &'a ThreatSignal, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| signal.categorical.get(*n))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

fn target_of(kind: ActionKind, signal: &ThreatSignal) -> Option<String> {
    match kind {
        ActionKind::BlockAddress | ActionKind::RateLimit => {
            signal.source_ip.map(|ip| ip.to_string())
        }
        ActionKind::IsolateHost => attribute(signal, &["host", "hostname"])
            .map(str::to_owned)
            .or_else(|| signal.source_ip.map(|ip| ip.to_string())),
        ActionKind::DisableAccount => {
            attribute(signal, &["user", "account", "username"]).map(str::to_owned)
        }
    }
}

fn merge(into: &mut Value, from: Value) {
    match (into.as_object_mut(), from) {
        (Some(dst), Value::Object(src)) => dst.extend(src),
        (_, other) => into["executor"] = other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(secs)
    }

    fn signal(source: &str) -> ThreatSignal {
        let mut s = ThreatSignal::new("brute_force", 0.9, at(0));
        s.source_ip = Some(source.parse().unwrap());
        s.categorical.insert("user".into(), "alice".into());
        s
    }

    fn assessment(score: f64) -> Assessment {
        Assessment {
            threat_id: "t".into(),
            risk_score: score,
            risk_level: vigil_domain::RiskThresholds::default().level(score),
            confidence: 0.9,
            rule_score: score,
            ml_score: None,
            factors: Vec::new(),
            assessed_at: at(0),
        }
    }

    fn remediator(settings: RemediationSettings) -> (Remediator, Arc<DryRunExecutor>) {
        let dry = Arc::new(DryRunExecutor::new());
        (Remediator::new(settings, dry.clone()), dry)
    }

    #[tokio::test]
    async fn only_scores_above_the_threshold_of_an_enabled_remediator_act() {
        let (r, dry) = remediator(RemediationSettings::default());
        let out = r
            .remediate("e", &signal("203.0.113.7"), &assessment(7.0), at(0))
            .await;
        assert!(
            out.skipped.as_deref().unwrap().contains("not above"),
            "{out:?}"
        );
        assert!(out.actions.is_empty());

        let out = r
            .remediate("e", &signal("203.0.113.7"), &assessment(7.01), at(0))
            .await;
        assert_eq!(out.skipped, None);
        let kinds: Vec<ActionKind> = out.actions.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [ActionKind::BlockAddress, ActionKind::DisableAccount]
        );
        let block = &out.actions[0];
        assert_eq!(block.status, ActionStatus::Simulated);
        assert_eq!(block.target, "203.0.113.7");
        assert_eq!(block.executor, "dry-run");
        assert_eq!(block.expires_at, Some(at(3_600)));
        assert!(
            block.details["reason"]
                .as_str()
                .unwrap()
                .contains("by_type.brute_force")
        );
        assert!(
            block.undo["would"]
                .as_str()
                .unwrap()
                .contains("unblock 203.0.113.7"),
            "{}",
            block.undo
        );
        assert_eq!(out.actions[1].target, "alice");
        assert_eq!(out.actions[1].expires_at, None);
        assert_eq!(dry.records().len(), 2);

        let disabled = RemediationSettings {
            enabled: false,
            ..RemediationSettings::default()
        };
        let (r, _) = remediator(disabled);
        let out = r
            .remediate("e", &signal("203.0.113.7"), &assessment(10.0), at(0))
            .await;
        assert_eq!(out.skipped.as_deref(), Some("remediation is disabled"));
    }

    #[tokio::test]
    async fn an_allow_listed_address_is_never_blocked() {
        let mut settings = RemediationSettings::default();
        settings.allow_list.push("10.0.0.0/8".parse().unwrap());
        settings.protected_names.push("Administrator".into());
        let (r, dry) = remediator(settings);
        let mut s = signal("10.1.2.3");
        s.categorical.insert("user".into(), "administrator".into());
        let out = r.remediate("e", &s, &assessment(9.9), at(0)).await;
        assert_eq!(out.actions.len(), 2);
        for a in &out.actions {
            assert_eq!(a.status, ActionStatus::Refused, "{a:?}");
        }
        assert_eq!(
            out.actions[0].details["refused"],
            "10.1.2.3 is on the allow-list (10.0.0.0/8)"
        );
        assert!(
            out.actions[1].details["refused"]
                .as_str()
                .unwrap()
                .contains("protected")
        );
        assert!(dry.records().is_empty(), "the executor was never called");

        // Loopback is on the default allow-list.
        let out = r
            .remediate("e", &signal("127.0.0.1"), &assessment(9.9), at(0))
            .await;
        assert_eq!(out.actions[0].status, ActionStatus::Refused);
    }

    #[tokio::test]
    async fn internal_and_reserved_addresses_are_refused_unless_listed() {
        let (r, dry) = remediator(RemediationSettings::default());
        for (target, kind) in [
            ("10.1.2.3", "private"),
            ("192.168.1.20", "private"),
            ("172.20.0.9", "private"),
            ("169.254.10.1", "link-local"),
            ("100.64.3.2", "shared"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:10.9.8.7", "private"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("0.0.0.0", "unspecified"),
        ] {
            let why = r
                .protected(target)
                .unwrap_or_else(|| panic!("{target} allowed"));
            assert!(why.contains(kind), "{target}: {why}");
        }
        assert!(r.protected("203.0.113.7").is_none(), "a public address");
        let out = r
            .remediate("e", &signal("10.1.2.3"), &assessment(9.9), at(0))
            .await;
        let block = out
            .actions
            .iter()
            .find(|a| a.target == "10.1.2.3")
            .expect("a block of the source is planned");
        assert_eq!(block.status, ActionStatus::Refused);
        assert!(
            dry.records().iter().all(|r| !r.contains("10.1.2.3")),
            "the executor never saw the internal address: {:?}",
            dry.records()
        );

        // An operator who isolates internal hosts lists their network.
        let settings = RemediationSettings {
            internal_targets: vec!["10.1.0.0/16".parse().unwrap()],
            ..RemediationSettings::default()
        };
        let (r, _) = remediator(settings);
        assert!(r.protected("10.1.2.3").is_none());
        assert!(
            r.protected("10.2.0.1").is_some(),
            "outside the listed network"
        );
        assert!(r.protected("224.0.0.1").is_some(), "never, even if listed");
    }

    #[tokio::test]
    async fn missing_targets_and_unsupported_actions_are_reported() {
        let settings = RemediationSettings {
            executor: ExecutorKind::Nftables,
            ..RemediationSettings::default()
        };
        let r = Remediator::from_settings(settings).unwrap();
        let mut s = signal("203.0.113.7");
        s.categorical.clear();
        s.threat_type = "credential-stuffing".into();
        let out = r.remediate("e", &s, &assessment(8.0), at(0)).await;
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].status, ActionStatus::Simulated);
        assert!(
            out.notes[0].contains("disable_account skipped"),
            "{:?}",
            out.notes
        );

        s.categorical.insert("account".into(), "bob".into());
        let out = r.remediate("e", &s, &assessment(8.0), at(0)).await;
        let disable = &out.actions[1];
        assert_eq!(disable.status, ActionStatus::Failed);
        assert!(
            disable.details["error"]
                .as_str()
                .unwrap()
                .contains("cannot disable_account"),
            "{disable:?}"
        );
    }

    #[tokio::test]
    async fn undo_goes_to_the_executor_that_acted() {
        let (r, dry) = remediator(RemediationSettings::default());
        let out = r
            .remediate("e", &signal("203.0.113.7"), &assessment(9.0), at(0))
            .await;
        r.undo(&out.actions[0]).await.unwrap();
        assert!(
            dry.records()
                .last()
                .unwrap()
                .contains("unblock 203.0.113.7")
        );

        // An nftables action that was only rendered undoes as a no-op through a fresh executor.
        let nft = NftablesExecutor::new(vigil_config::NftablesSettings::default()).unwrap();
        let prepared = nft
            .prepare(
                ActionKind::BlockAddress,
                "203.0.113.8",
                Some(Duration::seconds(60)),
            )
            .unwrap();
        let mut action = out.actions[0].clone();
        action.executor = "nftables".into();
        action.status = ActionStatus::Simulated;
        action.details = prepared.details;
        action.undo = prepared.undo;
        r.undo(&action).await.unwrap();

        action.executor = "carrier-pigeon".into();
        assert!(r.undo(&action).await.is_err());
    }
}
