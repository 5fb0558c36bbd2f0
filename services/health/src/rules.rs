//! The health rules of docs/health.md, as pure functions of what the health service heard
//! (heartbeats) and saw (streams, dead letters, the model registry), at a given time.
//!
//! Nothing here does I/O or reads a clock: every function takes `now`, so the rules are tested
//! as they are written.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use vigil_config::HealthSettings;
use vigil_domain::{DependencyStatus, HealthState, Heartbeat, LatencyPercentiles};

use crate::report::{ComponentReport, InstanceReport, InstanceStatus};

/// The dependency a predictor reports its model under; judged by the model rule, not the
/// dependency rule.
pub const MODEL_DEPENDENCY: &str = "model";

/// What the heartbeats of one instance said.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub instance: String,
    pub version: String,
    pub ready: bool,
    pub uptime_ms: u64,
    pub interval_ms: u64,
    /// When the health service heard it last (its own clock, not the sender's).
    pub last_seen: DateTime<Utc>,
    /// When the instance started: its first heartbeat's arrival less the uptime it reported.
    /// Two replicas started together both started before either's last heartbeat, whichever
    /// of them happened to beat first; a replacement started after the instance it replaced.
    pub started: DateTime<Utc>,
    pub dependencies: BTreeMap<String, DependencyStatus>,
    /// Recent beats: when heard, operations, errors, latency.
    pub beats: VecDeque<BeatRecord>,
}

/// One heartbeat's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeatRecord {
    pub at: DateTime<Utc>,
    pub operations: u64,
    pub errors: u64,
    pub latency: Option<LatencyPercentiles>,
}

impl InstanceRecord {
    /// When this instance counts as missing: `missing_after_beats` of its own intervals
    /// after its last heartbeat.
    pub fn missing_at(&self, settings: &HealthSettings) -> DateTime<Utc> {
        let interval = if self.interval_ms == 0 {
            settings.heartbeat_interval_ms
        } else {
            self.interval_ms
        };
        let ms = interval.saturating_mul(u64::from(settings.missing_after_beats));
        self.last_seen
            .checked_add_signed(millis(ms))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Alive or missing at `now`.
    pub fn status(&self, settings: &HealthSettings, now: DateTime<Utc>) -> InstanceStatus {
        if now > self.missing_at(settings) {
            InstanceStatus::Missing
        } else {
            InstanceStatus::Alive
        }
    }
}

/// Every instance heard from, by component (service name) and instance id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    components: BTreeMap<String, BTreeMap<String, InstanceRecord>>,
}

impl Registry {
    /// Takes in one heartbeat, heard at `now`.
    pub fn observe(&mut self, beat: &Heartbeat, now: DateTime<Utc>, settings: &HealthSettings) {
        let instances = self.components.entry(beat.service.clone()).or_default();
        let record = instances
            .entry(beat.instance.clone())
            .or_insert_with(|| InstanceRecord {
                instance: beat.instance.clone(),
                version: String::new(),
                ready: false,
                uptime_ms: 0,
                interval_ms: 0,
                last_seen: now,
                started: now
                    .checked_sub_signed(millis(beat.uptime_ms))
                    .unwrap_or(now),
                dependencies: BTreeMap::new(),
                beats: VecDeque::new(),
            });
        record.version.clone_from(&beat.version);
        record.ready = beat.ready;
        record.uptime_ms = beat.uptime_ms;
        record.interval_ms = beat.interval_ms;
        record.last_seen = now;
        record.dependencies.clone_from(&beat.dependencies);
        record.beats.push_back(BeatRecord {
            at: now,
            operations: beat.operations,
            errors: beat.errors,
            latency: beat.latency,
        });
        let window = window(settings);
        while record.beats.front().is_some_and(|b| now - b.at > window) {
            record.beats.pop_front();
        }
    }

    /// Forgets missing instances that were replaced (a new instance of their service started
    /// after their last heartbeat) or have been silent longer than
    /// `health.forget_after_secs`. Returns the forgotten `(component, instance)` pairs.
    pub fn forget(
        &mut self,
        settings: &HealthSettings,
        now: DateTime<Utc>,
    ) -> Vec<(String, String)> {
        let forget_after = secs(settings.forget_after_secs);
        let mut forgotten = Vec::new();
        for (component, instances) in &mut self.components {
            let newest_start = instances.values().map(|r| r.started).max();
            instances.retain(|id, record| {
                let missing = record.status(settings, now) == InstanceStatus::Missing;
                let replaced = newest_start.is_some_and(|start| start > record.last_seen);
                let stale = now - record.last_seen > forget_after;
                let keep = !(missing && (replaced || stale));
                if !keep {
                    forgotten.push((component.clone(), id.clone()));
                }
                keep
            });
        }
        forgotten
    }

    /// The components heard from.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.components.keys().map(String::as_str)
    }

    /// The instances of one component.
    pub fn instances(&self, component: &str) -> Vec<&InstanceRecord> {
        self.components
            .get(component)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }
}

fn window(settings: &HealthSettings) -> Duration {
    secs(settings.window_secs)
}

/// `n` seconds, saturating at the longest duration chrono represents.
pub fn secs(n: u64) -> Duration {
    i64::try_from(n)
        .ok()
        .and_then(Duration::try_seconds)
        .unwrap_or(Duration::MAX)
}

/// `n` milliseconds, saturating likewise.
pub fn millis(n: u64) -> Duration {
    i64::try_from(n)
        .ok()
        .and_then(Duration::try_milliseconds)
        .unwrap_or(Duration::MAX)
}

/// A stream a component consumes: how much waits and for how long.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueFacts {
    pub depth: u64,
    pub oldest_age_secs: Option<f64>,
}

/// What the health service saw besides heartbeats, per component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The backlog of the stream each consumer reads (`broker`: ingest, `orchestrator`: work).
    pub queues: BTreeMap<String, QueueFacts>,
    /// Dead letters within the window, by the component whose stream they came from.
    pub dead_letters: BTreeMap<String, u64>,
    /// Whether the registry has a production ensemble; `None` when it could not be asked.
    pub production_model: Option<bool>,
}

/// The verdict on one component, with its report.
pub fn judge_component(
    component: &str,
    instances: &[&InstanceRecord],
    facts: &Facts,
    settings: &HealthSettings,
    listening_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> ComponentReport {
    let required = settings.required.iter().any(|r| r == component);
    let mut verdict = Verdict::default();

    // Instances: alive, missing, never heard from.
    let (alive, missing): (Vec<&InstanceRecord>, Vec<&InstanceRecord>) = instances
        .iter()
        .copied()
        .partition(|r| r.status(settings, now) == InstanceStatus::Alive);
    let lost = if required {
        HealthState::Critical
    } else {
        HealthState::Degraded
    };
    if instances.is_empty() {
        // Right after the health service starts nobody has had the time to beat yet.
        let grace = millis(
            settings
                .heartbeat_interval_ms
                .saturating_mul(u64::from(settings.missing_after_beats)),
        );
        if now - listening_since > grace {
            verdict.add(lost, "no instance has sent a heartbeat".to_owned());
        }
    } else if alive.is_empty() {
        let last = missing.iter().map(|r| r.last_seen).max().unwrap_or(now);
        verdict.add(
            lost,
            format!(
                "all {} instance(s) missing, last heartbeat {} s ago",
                missing.len(),
                (now - last).num_seconds()
            ),
        );
    } else if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|r| {
                format!(
                    "{} (last heartbeat {} s ago)",
                    r.instance,
                    (now - r.last_seen).num_seconds()
                )
            })
            .collect();
        verdict.add(
            HealthState::Degraded,
            format!(
                "{} of {} instances missing: {}",
                missing.len(),
                instances.len(),
                names.join(", ")
            ),
        );
    }

    // Dependencies as the alive instances see them.
    let mut failing: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for record in &alive {
        for (name, status) in &record.dependencies {
            if !status.ok && name != MODEL_DEPENDENCY {
                failing
                    .entry(name.as_str())
                    .or_default()
                    .push((record.instance.as_str(), status.detail.as_str()));
            }
        }
    }
    for (dependency, seen_by) in failing {
        let everywhere = seen_by.len() == alive.len();
        let (instance, detail) = seen_by[0];
        let state = if everywhere {
            HealthState::Critical
        } else {
            HealthState::Degraded
        };
        verdict.add(
            state,
            format!(
                "{dependency} unreachable from {} of {} instances ({instance}: {detail})",
                seen_by.len(),
                alive.len()
            ),
        );
    }

    // Error rate and latency within the window.
    let window_start = now
        .checked_sub_signed(window(settings))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let recent = || {
        instances
            .iter()
            .flat_map(|r| r.beats.iter())
            .filter(move |b| b.at >= window_start)
    };
    let operations: u64 = recent().map(|b| b.operations).sum();
    let errors: u64 = recent().map(|b| b.errors).sum();
    let error_rate = (operations > 0).then(|| errors as f64 / operations as f64);
    if let Some(rate) = error_rate
        && operations >= settings.min_operations.max(1)
    {
        let state = if rate >= settings.error_rate_critical {
            Some(HealthState::Critical)
        } else if rate >= settings.error_rate_degraded {
            Some(HealthState::Degraded)
        } else {
            None
        };
        if let Some(state) = state {
            verdict.add(
                state,
                format!(
                    "{errors} of {operations} operations failed in the last {} s ({:.1} %)",
                    settings.window_secs,
                    rate * 100.0
                ),
            );
        }
    }
    let latency = alive
        .iter()
        .flat_map(|r| r.beats.iter())
        .filter(|b| b.at >= window_start)
        .filter_map(|b| b.latency)
        .reduce(|a, b| LatencyPercentiles {
            p50_ms: a.p50_ms.max(b.p50_ms),
            p95_ms: a.p95_ms.max(b.p95_ms),
            p99_ms: a.p99_ms.max(b.p99_ms),
        });
    if let (Some(latency), Some(limit)) = (latency, settings.p99_latency_ms.get(component))
        && latency.p99_ms > *limit
    {
        verdict.add(
            HealthState::Degraded,
            format!("p99 latency {:.1} ms is above {limit} ms", latency.p99_ms),
        );
    }

    // The backlog of the stream it consumes.
    if let Some(queue) = facts.queues.get(component) {
        let depth_state = if queue.depth >= settings.queue_depth_critical {
            Some(HealthState::Critical)
        } else if queue.depth >= settings.queue_depth_degraded {
            Some(HealthState::Degraded)
        } else {
            None
        };
        if let Some(state) = depth_state {
            verdict.add(state, format!("{} messages waiting", queue.depth));
        }
        if let Some(age) = queue.oldest_age_secs {
            let age_state = if age >= settings.oldest_message_critical_secs as f64 {
                Some(HealthState::Critical)
            } else if age >= settings.oldest_message_degraded_secs as f64 {
                Some(HealthState::Degraded)
            } else {
                None
            };
            if let Some(state) = age_state {
                verdict.add(
                    state,
                    format!("the oldest waiting message is {age:.0} s old"),
                );
            }
        }
    }

    // Dead letters from the stream it consumes.
    if let Some(&dead) = facts.dead_letters.get(component) {
        let state = if settings.dead_letters_critical > 0 && dead >= settings.dead_letters_critical
        {
            Some(HealthState::Critical)
        } else if settings.dead_letters_degraded > 0 && dead >= settings.dead_letters_degraded {
            Some(HealthState::Degraded)
        } else {
            None
        };
        if let Some(state) = state {
            verdict.add(
                state,
                format!(
                    "{dead} dead letter(s) in the last {} s",
                    settings.dead_letter_window_secs
                ),
            );
        }
    }

    // The model.
    if component == "predictor" && settings.require_production_model {
        if facts.production_model == Some(false) {
            verdict.add(
                HealthState::Degraded,
                "the registry has no production model".to_owned(),
            );
        } else if let Some(record) = alive
            .iter()
            .find(|r| r.dependencies.get(MODEL_DEPENDENCY).is_some_and(|m| !m.ok))
        {
            verdict.add(
                HealthState::Degraded,
                format!("instance {} has no model loaded", record.instance),
            );
        }
    }

    ComponentReport {
        state: verdict.state,
        reasons: verdict.reasons,
        required,
        alive: alive.len(),
        missing: missing.len(),
        operations,
        errors,
        error_rate,
        latency_ms: latency,
        instances: instances
            .iter()
            .map(|r| InstanceReport {
                instance: r.instance.clone(),
                status: r.status(settings, now),
                version: r.version.clone(),
                ready: r.ready,
                uptime_secs: r.uptime_ms as f64 / 1_000.0,
                last_seen: r.last_seen,
                // A beat heard while the report was being made is "just now".
                last_seen_secs_ago: (now - r.last_seen).num_milliseconds().max(0) as f64 / 1_000.0,
                dependencies: r.dependencies.clone(),
            })
            .collect(),
    }
}

#[derive(Debug, Default)]
struct Verdict {
    state: HealthState,
    reasons: Vec<String>,
}

impl Verdict {
    fn add(&mut self, state: HealthState, reason: String) {
        self.state = self.state.max(state);
        self.reasons.push(reason);
    }
}

/// Every component: those heard from and those expected; judged at `now`.
pub fn judge_all(
    registry: &Registry,
    facts: &Facts,
    settings: &HealthSettings,
    listening_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BTreeMap<String, ComponentReport> {
    let names: BTreeSet<&str> = registry
        .components()
        .chain(settings.expected.iter().map(String::as_str))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let instances = registry.instances(name);
            (
                name.to_owned(),
                judge_component(name, &instances, facts, settings, listening_since, now),
            )
        })
        .collect()
}

/// The overall state (the worst component's) and a one-line reason.
pub fn overall(components: &BTreeMap<String, ComponentReport>) -> (HealthState, String) {
    let state = components
        .values()
        .map(|c| c.state)
        .max()
        .unwrap_or(HealthState::Healthy);
    if state == HealthState::Healthy {
        let alive: usize = components.values().map(|c| c.alive).sum();
        return (
            state,
            format!(
                "all {} components healthy ({alive} instances)",
                components.len()
            ),
        );
    }
    let troubled: Vec<String> = components
        .iter()
        .filter(|(_, c)| c.state != HealthState::Healthy)
        .map(|(name, c)| {
            format!(
                "{name} {} ({})",
                c.state,
                c.reasons.first().map(String::as_str).unwrap_or("no reason")
            )
        })
        .collect();
    (state, troubled.join("; "))
}

/// The components whose state differs from `before` (a component new to `after` counts as
/// changed from healthy, one gone from it is not reported).
pub fn changes(
    before: &BTreeMap<String, HealthState>,
    after: &BTreeMap<String, ComponentReport>,
) -> Vec<(String, HealthState, HealthState)> {
    after
        .iter()
        .filter_map(|(name, report)| {
            let previous = before.get(name).copied().unwrap_or(HealthState::Healthy);
            (previous != report.state).then(|| (name.clone(), previous, report.state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            heartbeat_interval_ms: 1_000,
            min_operations: 10,
            ..HealthSettings::default()
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    fn beat(service: &str, instance: &str) -> Heartbeat {
        Heartbeat {
            service: service.into(),
            instance: instance.into(),
            timestamp: t(0),
            version: "0.1.0".into(),
            ready: true,
            uptime_ms: 1_000,
            interval_ms: 1_000,
            operations: 0,
            errors: 0,
            latency: None,
            dependencies: BTreeMap::from([(
                "nats".to_owned(),
                DependencyStatus {
                    ok: true,
                    detail: String::new(),
                },
            )]),
        }
    }

    fn judge(registry: &Registry, facts: &Facts, component: &str, now: i64) -> ComponentReport {
        let s = settings();
        judge_component(
            component,
            &registry.instances(component),
            facts,
            &s,
            t(-100),
            t(now),
        )
    }

    #[test]
    fn an_instance_is_missing_after_three_of_its_intervals() {
        let s = settings();
        let mut registry = Registry::default();
        registry.observe(&beat("broker", "a"), t(0), &s);
        let record = registry.instances("broker")[0].clone();
        assert_eq!(record.status(&s, t(3)), InstanceStatus::Alive);
        assert_eq!(record.status(&s, t(4)), InstanceStatus::Missing);
        let mut slow = beat("broker", "b");
        slow.interval_ms = 10_000;
        registry.observe(&slow, t(0), &s);
        let record = registry.instances("broker")[1].clone();
        assert_eq!(
            record.status(&s, t(29)),
            InstanceStatus::Alive,
            "its own interval counts"
        );
    }

    #[test]
    fn one_replica_of_three_down_is_degraded_all_down_is_critical_when_required() {
        let s = settings();
        let mut registry = Registry::default();
        for id in ["a", "b", "c"] {
            registry.observe(&beat("broker", id), t(0), &s);
        }
        registry.observe(&beat("broker", "a"), t(5), &s);
        registry.observe(&beat("broker", "b"), t(5), &s);
        let facts = Facts::default();
        assert_eq!(
            judge(&registry, &facts, "broker", 2).state,
            HealthState::Healthy
        );
        let one_down = judge(&registry, &facts, "broker", 6);
        assert_eq!(one_down.state, HealthState::Degraded);
        assert_eq!((one_down.alive, one_down.missing), (2, 1));
        assert!(
            one_down.reasons[0].contains("1 of 3 instances missing: c"),
            "{one_down:?}"
        );

        let all_down = judge(&registry, &facts, "broker", 20);
        assert_eq!(all_down.state, HealthState::Critical, "broker is required");
        assert!(
            all_down.reasons[0].contains("all 3 instance(s) missing"),
            "{all_down:?}"
        );

        registry.observe(&beat("trainer", "t"), t(0), &s);
        assert_eq!(
            judge(&registry, &facts, "trainer", 20).state,
            HealthState::Degraded,
            "the trainer is not required"
        );
    }

    #[test]
    fn a_replacement_or_time_forgets_a_missing_instance() {
        let s = HealthSettings {
            forget_after_secs: 60,
            ..settings()
        };
        let mut registry = Registry::default();
        registry.observe(&beat("broker", "old"), t(0), &s);
        registry.observe(&beat("broker", "other"), t(0), &s);
        // `old` stops; a new instance starts after its last beat.
        registry.observe(&beat("broker", "other"), t(10), &s);
        registry.observe(&beat("broker", "new"), t(10), &s);
        assert_eq!(
            registry.forget(&s, t(10)),
            [("broker".to_owned(), "old".to_owned())]
        );
        assert_eq!(
            judge(&registry, &Facts::default(), "broker", 10).state,
            HealthState::Healthy
        );

        // Without a replacement, a missing instance is remembered for forget_after_secs.
        registry.observe(&beat("broker", "other"), t(100), &s);
        registry.observe(&beat("broker", "new"), t(100), &s);
        registry.observe(&beat("broker", "other"), t(150), &s);
        assert!(registry.forget(&s, t(150)).is_empty());
        assert_eq!(
            judge(&registry, &Facts::default(), "broker", 150).state,
            HealthState::Degraded
        );
        assert_eq!(registry.forget(&s, t(161)).len(), 1);
    }

    #[test]
    fn a_replica_started_with_the_missing_one_is_not_its_replacement() {
        let s = settings();
        let mut registry = Registry::default();
        // Both started at t(0); `first` beat at once, `second` was first heard at t(2) after a
        // slower start, and `first` died before its next beat.
        let first = Heartbeat {
            uptime_ms: 100,
            ..beat("broker", "first")
        };
        let second = Heartbeat {
            uptime_ms: 2_000,
            ..beat("broker", "second")
        };
        registry.observe(&first, t(0), &s);
        registry.observe(&second, t(2), &s);
        for at in [3, 4, 5, 6, 7] {
            registry.observe(&second, t(at), &s);
        }
        assert!(registry.forget(&s, t(7)).is_empty(), "forgot a crash");
        let report = judge(&registry, &Facts::default(), "broker", 7);
        assert_eq!(report.state, HealthState::Degraded);
        assert_eq!((report.alive, report.missing), (1, 1));
    }

    #[test]
    fn a_component_never_heard_from_is_judged_only_after_the_grace_period() {
        let s = settings();
        let registry = Registry::default();
        let started = t(0);
        let early = judge_component("orchestrator", &[], &Facts::default(), &s, started, t(2));
        assert_eq!(early.state, HealthState::Healthy);
        let late = judge_component("orchestrator", &[], &Facts::default(), &s, started, t(10));
        assert_eq!(late.state, HealthState::Critical);
        assert!(late.reasons[0].contains("no instance"), "{late:?}");
        let all = judge_all(&registry, &Facts::default(), &s, started, t(10));
        assert_eq!(all.len(), 6, "every expected component is reported");
        assert_eq!(all["feedback"].state, HealthState::Degraded);
    }

    #[test]
    fn error_rate_is_judged_over_the_window_with_enough_operations() {
        let s = settings();
        let mut registry = Registry::default();
        let mut b = beat("orchestrator", "a");
        b.operations = 5;
        b.errors = 5;
        registry.observe(&b, t(0), &s);
        let facts = Facts::default();
        assert_eq!(
            judge(&registry, &facts, "orchestrator", 0).state,
            HealthState::Healthy,
            "five operations are too few to judge"
        );
        b.operations = 100;
        b.errors = 10;
        registry.observe(&b, t(1), &s);
        let report = judge(&registry, &facts, "orchestrator", 1);
        assert_eq!(report.state, HealthState::Degraded, "{report:?}");
        assert_eq!((report.operations, report.errors), (105, 15));
        b.errors = 90;
        registry.observe(&b, t(2), &s);
        assert_eq!(
            judge(&registry, &facts, "orchestrator", 2).state,
            HealthState::Critical
        );
        // A minute later the failures have left the window.
        b.errors = 0;
        registry.observe(&b, t(70), &s);
        assert_eq!(
            judge(&registry, &facts, "orchestrator", 70).state,
            HealthState::Healthy
        );
    }

    #[test]
    fn slow_operations_degrade_a_component_with_a_latency_rule() {
        let s = settings();
        let mut registry = Registry::default();
        let mut b = beat("predictor", "p");
        b.operations = 100;
        b.latency = Some(LatencyPercentiles {
            p50_ms: 1.0,
            p95_ms: 50.0,
            p99_ms: 250.0,
        });
        registry.observe(&b, t(0), &s);
        let facts = Facts {
            production_model: Some(true),
            ..Facts::default()
        };
        let report = judge(&registry, &facts, "predictor", 0);
        assert_eq!(report.state, HealthState::Degraded);
        assert!(
            report.reasons[0].contains("p99 latency 250.0 ms"),
            "{report:?}"
        );
        let mut t2 = b.clone();
        t2.service = "trainer".into();
        registry.observe(&t2, t(0), &s);
        assert_eq!(
            judge(&registry, &facts, "trainer", 0).state,
            HealthState::Healthy,
            "no latency rule for the trainer"
        );
    }

    #[test]
    fn a_dependency_down_everywhere_is_critical_somewhere_degraded() {
        let s = settings();
        let mut registry = Registry::default();
        let mut down = beat("orchestrator", "a");
        down.dependencies.insert(
            "postgres".into(),
            DependencyStatus {
                ok: false,
                detail: "connection refused".into(),
            },
        );
        registry.observe(&down, t(0), &s);
        let report = judge(&registry, &Facts::default(), "orchestrator", 0);
        assert_eq!(report.state, HealthState::Critical);
        assert!(
            report.reasons[0].contains("postgres unreachable from 1 of 1"),
            "{report:?}"
        );
        registry.observe(&beat("orchestrator", "b"), t(0), &s);
        assert_eq!(
            judge(&registry, &Facts::default(), "orchestrator", 0).state,
            HealthState::Degraded
        );
    }

    #[test]
    fn backlog_dead_letters_and_the_model_are_judged() {
        let s = settings();
        let mut registry = Registry::default();
        registry.observe(&beat("orchestrator", "o"), t(0), &s);
        registry.observe(&beat("broker", "b"), t(0), &s);
        registry.observe(&beat("predictor", "p"), t(0), &s);
        let mut facts = Facts {
            production_model: Some(true),
            ..Facts::default()
        };
        for component in ["orchestrator", "broker", "predictor"] {
            assert_eq!(
                judge(&registry, &facts, component, 0).state,
                HealthState::Healthy
            );
        }

        facts.queues.insert(
            "orchestrator".into(),
            QueueFacts {
                depth: 6_000,
                oldest_age_secs: Some(5.0),
            },
        );
        assert_eq!(
            judge(&registry, &facts, "orchestrator", 0).state,
            HealthState::Degraded
        );
        facts.queues.insert(
            "orchestrator".into(),
            QueueFacts {
                depth: 10,
                oldest_age_secs: Some(700.0),
            },
        );
        let old = judge(&registry, &facts, "orchestrator", 0);
        assert_eq!(old.state, HealthState::Critical);
        assert!(old.reasons[0].contains("700 s old"), "{old:?}");

        facts.dead_letters.insert("broker".into(), 3);
        assert_eq!(
            judge(&registry, &facts, "broker", 0).state,
            HealthState::Healthy,
            "a few dead letters are in the report, not an alarm"
        );
        facts.dead_letters.insert("broker".into(), 12);
        let dead = judge(&registry, &facts, "broker", 0);
        assert_eq!(dead.state, HealthState::Degraded);
        assert!(dead.reasons[0].contains("12 dead letter(s)"), "{dead:?}");
        facts.dead_letters.insert("broker".into(), 100);
        assert_eq!(
            judge(&registry, &facts, "broker", 0).state,
            HealthState::Critical
        );

        facts.production_model = Some(false);
        let no_model = judge(&registry, &facts, "predictor", 0);
        assert_eq!(no_model.state, HealthState::Degraded);
        assert!(
            no_model.reasons[0].contains("no production model"),
            "{no_model:?}"
        );
        let relaxed = HealthSettings {
            require_production_model: false,
            ..settings()
        };
        let ignored = judge_component(
            "predictor",
            &registry.instances("predictor"),
            &facts,
            &relaxed,
            t(-100),
            t(0),
        );
        assert_eq!(ignored.state, HealthState::Healthy);
    }

    #[test]
    fn the_overall_state_is_the_worst_and_changes_are_reported() {
        let s = settings();
        let mut registry = Registry::default();
        for component in [
            "broker",
            "orchestrator",
            "predictor",
            "trainer",
            "feedback",
            "health",
        ] {
            registry.observe(&beat(component, "x"), t(0), &s);
        }
        let facts = Facts {
            production_model: Some(true),
            ..Facts::default()
        };
        let all = judge_all(&registry, &facts, &s, t(-100), t(0));
        let (state, reason) = overall(&all);
        assert_eq!(state, HealthState::Healthy);
        assert_eq!(reason, "all 6 components healthy (6 instances)");
        let before: BTreeMap<String, HealthState> =
            all.iter().map(|(n, c)| (n.clone(), c.state)).collect();

        registry.observe(&beat("broker", "x"), t(10), &s);
        registry.observe(&beat("orchestrator", "x"), t(10), &s);
        registry.observe(&beat("predictor", "x"), t(10), &s);
        registry.observe(&beat("feedback", "x"), t(10), &s);
        registry.observe(&beat("health", "x"), t(10), &s);
        let later = judge_all(&registry, &facts, &s, t(-100), t(10));
        let (state, reason) = overall(&later);
        assert_eq!(state, HealthState::Degraded);
        assert!(
            reason.starts_with("trainer degraded (all 1 instance(s) missing"),
            "{reason}"
        );
        assert_eq!(
            changes(&before, &later),
            [(
                "trainer".to_owned(),
                HealthState::Healthy,
                HealthState::Degraded
            )]
        );
    }
}
