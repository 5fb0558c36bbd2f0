//! The review queue: which unjudged workflows an analyst should look at next.
//!
//! A verdict on a signal the model already gets right teaches it nothing. Each candidate (one
//! of the newest `feedback.review_window` successful workflows without a verdict) gets a
//! score in 0-1 from four signals of what vigil recorded, each in 0-1:
//!
//! ```text
//! score = 0.35 uncertainty + 0.25 novelty + 0.25 disagreement + 0.15 impact
//! ```
//!
//! - **uncertainty**: 1 at the ensemble's decision threshold, falling linearly to 0 at a
//!   probability of 0 or 1; 1 when the model abstained; 0.5 without a probability (no
//!   prediction, or one without the ensemble's details).
//! - **novelty**: 1 when the novelty member is at or above the decision threshold while every
//!   supervised member is below it ("never seen this"), 0.5 when it is above and a supervised
//!   member is too; or, when larger, how far the in-domain score is below 0.05
//!   (`(0.05 - in_domain) / 0.05`).
//! - **disagreement**: the spread (max - min) of the supervised members' probabilities; halved
//!   unless the members fall on both sides of the threshold.
//! - **impact**: 1 when remediation actions were taken, 0.5 when alerts were routed, else 0.
//!
//! The list is then spread over patterns (see [`pattern_of`]): picked greedily by priority, where
//! the priority of a candidate is its score times 0.5 for each candidate of its pattern already
//! picked; so the second near-copy of a scan needs twice the score of a new pattern to come
//! before it.
//!
//! **Exploration.** The score cannot see a model's blind spot: a family the model has never
//! been taught, which it calls benign with confidence, gives no uncertainty, no disagreement
//! and no alert. So every second pick comes from an exploration lane (as AI² gives half its
//! daily budget to outliers). Its candidates are those the model calls benign (probability
//! below the threshold, no abstention) with a **rarity** of 0.5 or more, where rarity is the
//! larger of two shares of the benign calls: the share whose novelty-member margin (log-odds
//! over its cutoff) is below this one's, and the share that lies closer to the training data
//! (higher in-domain score). Rarity 0.99 reads "more unusual than 99 % of what the model calls
//! benign".
//!
//! The most unusual rows are poor examples of anything: what a model must learn is the middle
//! of a family it misses, not its edge. So the lane values a candidate by how **typical** it
//! is of the unusual candidates around it (`closeness`: 1 minus its mean distance to its 20
//! nearest among them, by the signals' features; see [`neighbours`]):
//!
//! ```text
//! value = rarity x closeness x decay    a dense group of unusual signals before a lone extreme
//!       + 1 when the nearest judged signal, if no farther than its mean distance to its 20
//!         nearest, was judged an attack
//!       x 0.5 when that signal was judged benign
//! ```
//!
//! where `decay` is the pattern decay, counted over this lane's own picks (a group must not
//! lose its turn because the score took an ordinary signal of its service). The `+ 1` is the follow-up: once an
//! analyst says one of a group is an attack, the lane asks about its neighbours the model still
//! calls benign before anything new, and each verdict on them leads further into the group; a
//! group judged benign is set aside. The lane gives its turn to the score when it has no candidate
//! left.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_domain::{ModelType, PredictionResult, Severity, ThreatSignal, TrueLabel};
use vigil_store::{JudgedSignal, ReviewCandidate};

mod neighbours;

use neighbours::{Neighbourhood, Point, Space, neighbourhoods};

/// Weight of the model's uncertainty in the score.
pub const W_UNCERTAINTY: f64 = 0.35;
/// Weight of novelty (the novelty member, or a signal outside the training data).
pub const W_NOVELTY: f64 = 0.25;
/// Weight of the supervised members' disagreement.
pub const W_DISAGREEMENT: f64 = 0.25;
/// Weight of the impact of what vigil did (remediation, alerts).
pub const W_IMPACT: f64 = 0.15;
/// Each candidate of a pattern already in the list multiplies a candidate's priority by this.
pub const PATTERN_DECAY: f64 = 0.5;
/// In-domain scores below this count as outside the training data.
pub const IN_DOMAIN_FLOOR: f64 = 0.05;
/// Uncertainty when the model gave no probability to measure it by.
pub const UNKNOWN_UNCERTAINTY: f64 = 0.5;
/// Impact of routed alerts (remediation is 1).
pub const ALERT_IMPACT: f64 = 0.5;
/// The categorical field that names a flow's service when it has no port.
const SERVICE: &str = "service";
/// Every this-many-th pick comes from the exploration lane (half of the list, as AI² splits its
/// daily budget between outliers and the model's top scores).
pub const EXPLORE_EVERY: usize = 2;
/// The exploration lane takes only candidates at least this rare (the more unusual half).
pub const EXPLORE_FLOOR: f64 = 0.5;
/// The exploration lane compares at most this many of its rarest candidates with each other
/// (the comparison is quadratic).
pub const EXPLORE_POOL: usize = 2_000;
/// How many nearest unusual candidates make one's neighbourhood (scikit-learn's default for
/// the local outlier factor).
pub const NEIGHBOURS: usize = 20;
/// The newest verdicts the exploration lane follows up.
pub const JUDGED_LEADS: u64 = 500;
/// An unusual candidate whose nearest judged neighbour was judged benign: its value times this
/// (as one more of its kind already judged).
pub const JUDGED_BENIGN: f64 = 0.5;
/// Items a request gets when it names no limit.
pub const DEFAULT_LIMIT: usize = 20;
/// The most items one request may ask for.
pub const MAX_LIMIT: usize = 1_000;

/// Uncertainty at or above which it is named as a reason.
const UNSURE_FROM: f64 = 0.5;
/// A spread of the members at least this wide is named even when they agree on the side.
const WIDE_SPREAD: f64 = 0.3;

/// One workflow the queue offers an analyst, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    pub workflow_id: String,
    pub event_id: String,
    /// The signal's threat type (empty when the signal was not recorded).
    pub threat_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    pub risk_level: Severity,
    pub risk_score: f64,
    /// The ensemble's probability that the signal is a threat, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// How much a verdict on it would teach, 0-1 (the documented formula).
    pub score: f64,
    /// The score (or, when `explore`, the exploration lane's value) after the pattern decay.
    pub priority: f64,
    /// Picked by the exploration lane: a signal the model calls benign that is more unusual
    /// than most (see [`rank`]).
    #[serde(default)]
    pub explore: bool,
    /// Picked by the exploration lane because a like signal was judged an attack.
    #[serde(default)]
    pub follow_up: bool,
    /// What it counts as a near-copy of (see [`pattern_of`]).
    pub pattern: String,
    /// Why it was picked, for the analyst.
    pub reasons: Vec<String>,
    pub started_at: DateTime<Utc>,
}

/// A request on the review subject: `{"limit": N}`, or an empty body for the default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// How many items, 1 to [`MAX_LIMIT`]; [`DEFAULT_LIMIT`] when absent.
    #[serde(default)]
    pub limit: Option<i64>,
}

impl ReviewRequest {
    /// Decodes a request body; an empty body asks for the default.
    pub fn decode(body: &[u8]) -> Result<usize, String> {
        let request: ReviewRequest = if body.iter().all(u8::is_ascii_whitespace) {
            ReviewRequest::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| format!("not a review request ({{\"limit\": N}}): {e}"))?
        };
        match request.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("limit must be within 1..={MAX_LIMIT}, got {n}")),
        }
    }
}

/// The reply on the review subject, always JSON: `{"ok":true,"items":[...]}` or
/// `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewReply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Highest priority first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ReviewItem>>,
}

impl ReviewReply {
    /// A refusal, or a failure to answer.
    pub fn refused(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            items: None,
        }
    }

    /// The ranked items.
    pub fn items(items: Vec<ReviewItem>) -> Self {
        Self {
            ok: true,
            error: None,
            items: Some(items),
        }
    }
}

/// What the score reads of one workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub workflow_id: String,
    pub event_id: String,
    pub started_at: DateTime<Utc>,
    pub risk_score: f64,
    pub risk_level: Severity,
    pub prediction: Option<PredictionResult>,
    /// The remediation actions taken, as `kind target`.
    pub remediations: Vec<String>,
    /// The alert channels routed to, as `channel (status)`.
    pub alerts: Vec<String>,
    pub signal: Option<ThreatSignal>,
}

/// The parts of a workflow's `results` the score reads.
#[derive(Deserialize)]
struct RecordedResults {
    risk_score: f64,
    risk_level: Severity,
    /// Read on its own: a prediction another version wrote differently counts as none.
    #[serde(default)]
    prediction: serde_json::Value,
    #[serde(default)]
    alerts: serde_json::Value,
    #[serde(default)]
    remediation: serde_json::Value,
}

impl Candidate {
    /// A stored candidate, or why its results cannot be read.
    pub fn from_stored(stored: ReviewCandidate) -> Result<Self, String> {
        let results: RecordedResults = serde_json::from_value(stored.results)
            .map_err(|e| format!("workflow {}: unreadable results: {e}", stored.id))?;
        let remediations = results
            .remediation
            .get("actions")
            .and_then(|a| a.as_array())
            .map(|actions| {
                actions
                    .iter()
                    .map(|a| {
                        let field =
                            |name: &str| a.get(name).and_then(|v| v.as_str()).unwrap_or("?");
                        format!("{} {}", field("kind"), field("target"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let alerts = results
            .alerts
            .get("channels")
            .and_then(|c| c.as_array())
            .map(|channels| {
                channels
                    .iter()
                    .map(|c| {
                        let field =
                            |name: &str| c.get(name).and_then(|v| v.as_str()).unwrap_or("?");
                        format!("{} ({})", field("channel"), field("status"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            workflow_id: stored.id,
            event_id: stored.event_id,
            started_at: stored.started_at,
            risk_score: results.risk_score,
            risk_level: results.risk_level,
            prediction: serde_json::from_value(results.prediction).ok(),
            remediations,
            alerts,
            signal: stored.signal,
        })
    }
}

/// The four parts of a candidate's score, each 0-1, and the reasons they give.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreParts {
    pub uncertainty: f64,
    pub novelty: f64,
    pub disagreement: f64,
    pub impact: f64,
    pub reasons: Vec<String>,
}

impl ScoreParts {
    /// The weighted sum, 0-1.
    pub fn score(&self) -> f64 {
        W_UNCERTAINTY * self.uncertainty
            + W_NOVELTY * self.novelty
            + W_DISAGREEMENT * self.disagreement
            + W_IMPACT * self.impact
    }
}

/// The ensemble's details, when the prediction carries them (older rows do not).
fn detailed(prediction: &PredictionResult) -> Option<f64> {
    let t = prediction.decision_threshold;
    (t > 0.0 && t < 1.0 && !prediction.member_probabilities.is_empty()).then_some(t)
}

/// Scores one candidate (see the module documentation for the formula).
pub fn score_parts(candidate: &Candidate) -> ScoreParts {
    let mut reasons = Vec::new();
    let prediction = candidate.prediction.as_ref();
    let threshold = prediction.and_then(detailed);

    let uncertainty = match (prediction, threshold) {
        (None, _) => {
            reasons.push("no model prediction: the rules alone scored it".to_owned());
            UNKNOWN_UNCERTAINTY
        }
        (Some(p), _) if p.abstention.is_some() => {
            let detail = p.abstention.as_ref().map_or("", |a| a.detail.as_str());
            reasons.push(format!("the model abstained: {detail}"));
            1.0
        }
        (Some(_), None) => {
            reasons.push("the prediction carries no probability to judge it by".to_owned());
            UNKNOWN_UNCERTAINTY
        }
        (Some(p), Some(t)) => {
            let probability = p.probability.clamp(0.0, 1.0);
            let u = if probability >= t {
                1.0 - (probability - t) / (1.0 - t)
            } else {
                1.0 - (t - probability) / t
            }
            .clamp(0.0, 1.0);
            if u >= UNSURE_FROM {
                reasons.push(format!(
                    "the model is unsure: probability {probability:.2}, threshold {t:.2}"
                ));
            }
            u
        }
    };

    let supervised: Vec<(ModelType, f64)> = prediction
        .map(|p| {
            p.member_probabilities
                .iter()
                .filter(|(member, _)| **member != ModelType::Ensemble)
                .map(|(member, probability)| (*member, *probability))
                .collect()
        })
        .unwrap_or_default();

    let novelty = match (prediction, threshold) {
        (Some(p), Some(t)) => {
            let highest = supervised.iter().map(|(_, p)| *p).fold(f64::NAN, f64::max);
            let member: f64 = if p.novelty >= t {
                if highest < t {
                    reasons.push(format!(
                        "never seen this: the novelty member says {:.2} (threshold {t:.2}), \
                         the supervised members at most {highest:.2}",
                        p.novelty
                    ));
                    1.0
                } else {
                    reasons.push(format!(
                        "unusual: the novelty member says {:.2} (threshold {t:.2})",
                        p.novelty
                    ));
                    0.5
                }
            } else {
                0.0
            };
            let outside = ((IN_DOMAIN_FLOOR - p.in_domain) / IN_DOMAIN_FLOOR).clamp(0.0, 1.0);
            if outside > 0.0 {
                reasons.push(format!(
                    "outside the training data: in-domain {:.3} (below {IN_DOMAIN_FLOOR})",
                    p.in_domain
                ));
            }
            member.max(outside)
        }
        _ => 0.0,
    };

    let disagreement = match threshold {
        Some(t) if supervised.len() >= 2 => {
            let highest = supervised.iter().map(|(_, p)| *p).fold(f64::MIN, f64::max);
            let lowest = supervised.iter().map(|(_, p)| *p).fold(f64::MAX, f64::min);
            let spread = (highest - lowest).clamp(0.0, 1.0);
            let split = highest >= t && lowest < t;
            let mut named = supervised.clone();
            named.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let named = named
                .iter()
                .map(|(member, p)| format!("{member} {p:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            if split {
                reasons.push(format!("members disagree: {named}"));
                spread
            } else {
                if spread >= WIDE_SPREAD {
                    reasons.push(format!("members differ widely: {named}"));
                }
                spread / 2.0
            }
        }
        _ => 0.0,
    };

    let impact = if !candidate.remediations.is_empty() {
        reasons.push(format!(
            "remediated: {}",
            named_list(&candidate.remediations)
        ));
        1.0
    } else if !candidate.alerts.is_empty() {
        reasons.push(format!("alerted: {}", named_list(&candidate.alerts)));
        ALERT_IMPACT
    } else {
        0.0
    };

    ScoreParts {
        uncertainty,
        novelty,
        disagreement,
        impact,
        reasons,
    }
}

/// Up to three names, then how many more.
fn named_list(names: &[String]) -> String {
    const NAMED: usize = 3;
    let mut list = names
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        list.push_str(&format!(" and {} more", names.len() - NAMED));
    }
    list
}

/// What a candidate counts as a near-copy of: the threat type, protocol, destination port
/// and source network (/24 for IPv4, /48 for IPv6) of its signal, e.g.
/// `port_scan tcp/22 from 203.0.113.0/24`. A signal without a port names its service instead
/// when it carries one (flow records such as NSL-KDD's: `network_connection tcp/ftp_data from
/// -`), so flows of different services are not one pattern. A missing field is `-`. Workflows
/// recorded without their signal share one pattern.
pub fn pattern_of(signal: Option<&ThreatSignal>) -> String {
    let Some(signal) = signal else {
        return "(signal not recorded)".to_owned();
    };
    let protocol = signal.protocol.as_deref().unwrap_or("-");
    let port = match (signal.destination_port, signal.categorical.get(SERVICE)) {
        (Some(port), _) => port.to_string(),
        (None, Some(service)) if !service.is_empty() => service.clone(),
        (None, _) => "-".to_owned(),
    };
    let source = match signal.source_ip {
        Some(IpAddr::V4(ip)) => {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Some(IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        None => "-".to_owned(),
    };
    format!("{} {protocol}/{port} from {source}", signal.threat_type)
}

/// A scored candidate.
struct Scored {
    candidate: Candidate,
    score: f64,
    reasons: Vec<String>,
    pattern: usize,
}

/// The model's probability, threshold and novelty when it called the signal benign without
/// abstaining: the candidates the exploration lane looks among.
fn called_benign(candidate: &Candidate) -> Option<(f64, f64, &PredictionResult)> {
    let p = candidate.prediction.as_ref()?;
    let t = detailed(p)?;
    (p.abstention.is_none() && p.probability < t).then_some((p.probability, t, p))
}

/// The novelty member's margin over its cutoff in nats (log-odds of its probability minus
/// those of the threshold, where its cutoff sits): larger is more unusual.
fn novelty_margin(novelty: f64, threshold: f64) -> f64 {
    let logit = |x: f64| {
        let x = x.clamp(1e-12, 1.0 - 1e-12);
        (x / (1.0 - x)).ln()
    };
    logit(novelty) - logit(threshold)
}

/// Share of `sorted` (ascending) strictly below `value`, 0-1.
fn share_below(sorted: &[f64], value: f64) -> f64 {
    sorted.partition_point(|v| *v < value) as f64 / sorted.len().max(1) as f64
}

/// The rarity of each candidate the model calls benign (see the module documentation), with
/// the reason to give when the exploration lane picks it.
fn rarities(candidates: &[Candidate]) -> Vec<Option<(f64, String)>> {
    let mut margins = Vec::new();
    let mut distances = Vec::new();
    for (_, t, p) in candidates.iter().filter_map(called_benign) {
        margins.push(novelty_margin(p.novelty, t));
        distances.push(-p.in_domain);
    }
    margins.sort_by(f64::total_cmp);
    distances.sort_by(f64::total_cmp);
    let eligible = margins.len();
    candidates
        .iter()
        .map(|candidate| {
            let (probability, t, p) = called_benign(candidate)?;
            let by_novelty = share_below(&margins, novelty_margin(p.novelty, t));
            let by_domain = share_below(&distances, -p.in_domain);
            let (rarity, measure) = if by_novelty >= by_domain {
                (by_novelty, format!("the novelty member ({:.3})", p.novelty))
            } else {
                (
                    by_domain,
                    format!(
                        "its distance from the training data (in-domain {:.3})",
                        p.in_domain
                    ),
                )
            };
            Some((
                rarity,
                format!(
                    "explore: the model calls it benign (probability {probability:.2}, \
                     threshold {t:.2}), yet by {measure} it is more unusual than {:.1} % of the \
                     {eligible} candidates it calls benign",
                    rarity * 100.0
                ),
            ))
        })
        .collect()
}

/// The nearest judged signal no farther from an unusual candidate than its nearest unusual
/// neighbours are on average.
#[derive(Debug, Clone)]
struct Lead {
    event_id: String,
    attack: bool,
    distance: f64,
}

/// What the exploration lane knows of one candidate it may take.
struct Unusual {
    rarity: f64,
    why: String,
    hood: Neighbourhood,
    lead: Option<Lead>,
}

/// The exploration lane's candidates: the [`EXPLORE_POOL`] rarest of those the model calls
/// benign with a rarity of at least [`EXPLORE_FLOOR`] and a recorded signal, each with its
/// [`NEIGHBOURS`] nearest among them and its [`Lead`].
/// Indexed like `candidates`; `None` for a candidate the lane cannot take.
fn unusual(candidates: &[Candidate], judged: &[JudgedSignal]) -> Vec<Option<Unusual>> {
    let mut rarity = rarities(candidates);
    let mut members: Vec<usize> = (0..candidates.len())
        .filter(|i| {
            candidates[*i].signal.is_some()
                && rarity[*i]
                    .as_ref()
                    .is_some_and(|(r, _)| *r >= EXPLORE_FLOOR)
        })
        .collect();
    let rarity_of = |i: &usize| rarity[*i].as_ref().map_or(0.0, |(r, _)| *r);
    members.sort_by(|a, b| rarity_of(b).total_cmp(&rarity_of(a)).then(a.cmp(b)));
    members.truncate(EXPLORE_POOL);

    let signals: Vec<&ThreatSignal> = members
        .iter()
        .filter_map(|i| candidates[*i].signal.as_ref())
        .collect();
    let space = Space::fit(&signals);
    let points: Vec<Point> = signals.iter().map(|s| space.point(s)).collect();
    let hoods = neighbourhoods(&space, &points, NEIGHBOURS);
    let judged_points: Vec<(Point, &JudgedSignal)> =
        judged.iter().map(|j| (space.point(&j.signal), j)).collect();

    let mut lane: Vec<Option<Unusual>> = (0..candidates.len()).map(|_| None).collect();
    for ((index, point), hood) in members.into_iter().zip(&points).zip(hoods) {
        // As near as its neighbours are on average; without neighbours, nothing is near.
        let reach = if hood.nearest.is_empty() {
            -1.0
        } else {
            1.0 - hood.closeness
        };
        let lead = judged_points
            .iter()
            .map(|(at, j)| (space.distance(point, at), *j))
            .filter(|(distance, _)| *distance <= reach)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(distance, j)| Lead {
                event_id: j.event_id.clone(),
                attack: j.label == TrueLabel::Attack,
                distance,
            });
        if let Some((rarity, why)) = rarity[index].take() {
            lane[index] = Some(Unusual {
                rarity,
                why,
                hood,
                lead,
            });
        }
    }
    lane
}

impl Unusual {
    /// The lane's priority of this candidate after `decay`, the pattern decay, which applies to
    /// all but a follow-up's 1 (see [`rank`]).
    fn priority(&self, decay: f64) -> f64 {
        let typical = self.rarity * self.hood.closeness * decay;
        match &self.lead {
            Some(lead) if lead.attack => 1.0 + typical,
            Some(_) => typical * JUDGED_BENIGN,
            None => typical,
        }
    }

    /// Why the lane took it, first reason first.
    fn reasons(&self) -> Vec<String> {
        let neighbours = self.hood.nearest.len();
        let mut reasons = Vec::new();
        if let Some(lead) = self.lead.as_ref().filter(|l| l.attack) {
            reasons.push(format!(
                "explore, follow-up: like event {} (distance {:.3}), which an analyst judged an \
                 attack",
                lead.event_id, lead.distance
            ));
        }
        reasons.push(self.why.clone());
        reasons.push(format!(
            "typical of the unusual signals around it: mean distance {:.3} to its {neighbours} \
             nearest",
            1.0 - self.hood.closeness
        ));
        if let Some(lead) = self.lead.as_ref().filter(|l| !l.attack) {
            reasons.push(format!(
                "an analyst judged a like one benign (event {}, distance {:.3}): priority x \
                 {JUDGED_BENIGN}",
                lead.event_id, lead.distance
            ));
        }
        reasons
    }
}

/// The best `limit` candidates in the order an analyst should judge them; `judged` holds the
/// newest verdicts with their signals, which the exploration lane follows up.
///
/// Picks alternate between two lanes. Even positions (the first, third, ...) take the
/// candidate with the highest **priority** = score x [`PATTERN_DECAY`]^(candidates of its
/// pattern already picked). Odd positions take the exploration lane's best (see the module
/// documentation): among the candidates [`unusual`] finds, the highest rarity x closeness x the
/// same decay counted over this lane's picks, plus 1 when its [`Lead`] was judged an attack (a follow-up, before anything
/// new), times [`JUDGED_BENIGN`] when it was judged benign; the lane's turn goes to the score
/// when it has none left. Ties go to the
/// higher score (value), then the newer workflow, then the smaller id.
pub fn rank(candidates: Vec<Candidate>, judged: &[JudgedSignal], limit: usize) -> Vec<ReviewItem> {
    let mut lane = unusual(&candidates, judged);
    let mut pattern_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut pattern_names = Vec::new();
    let mut pool: Vec<Option<Scored>> = candidates
        .into_iter()
        .map(|candidate| {
            let parts = score_parts(&candidate);
            let name = pattern_of(candidate.signal.as_ref());
            let next = pattern_ids.len();
            let pattern = *pattern_ids.entry(name.clone()).or_insert(next);
            if pattern == pattern_names.len() {
                pattern_names.push(name);
            }
            Some(Scored {
                score: parts.score(),
                reasons: parts.reasons,
                pattern,
                candidate,
            })
        })
        .collect();
    // Picks of each pattern: by both lanes (the score's decay), by the exploration lane (its own).
    let mut picked_of = vec![0_i32; pattern_names.len()];
    let mut explored_of = vec![0_i32; pattern_names.len()];

    let mut items = Vec::with_capacity(limit.min(pool.len()));
    while items.len() < limit {
        let explore = items.len() % EXPLORE_EVERY == EXPLORE_EVERY - 1;
        let best = |lane_explore: bool| {
            let mut best: Option<(usize, f64, f64)> = None;
            for (index, entry) in pool.iter().enumerate() {
                let Some(entry) = entry else { continue };
                let (value, priority) = if lane_explore {
                    let decay = PATTERN_DECAY.powi(explored_of[entry.pattern]);
                    match &lane[index] {
                        Some(unusual) => (unusual.priority(1.0), unusual.priority(decay)),
                        None => continue,
                    }
                } else {
                    let decay = PATTERN_DECAY.powi(picked_of[entry.pattern]);
                    (entry.score, entry.score * decay)
                };
                let better = match best {
                    None => true,
                    Some((current, best_priority, best_value)) => {
                        let other = pool[current].as_ref().map(|c| &c.candidate);
                        priority
                            .total_cmp(&best_priority)
                            .then(value.total_cmp(&best_value))
                            .then_with(|| match other {
                                Some(other) => entry
                                    .candidate
                                    .started_at
                                    .cmp(&other.started_at)
                                    .then(other.workflow_id.cmp(&entry.candidate.workflow_id)),
                                None => Ordering::Greater,
                            })
                            == Ordering::Greater
                    }
                };
                if better {
                    best = Some((index, priority, value));
                }
            }
            best
        };
        let (lane_explore, chosen) = match (explore, explore.then(|| best(true)).flatten()) {
            (true, Some(chosen)) => (true, chosen),
            _ => match best(false) {
                Some(chosen) => (false, chosen),
                None => break,
            },
        };
        let (index, priority, _) = chosen;
        let Some(next) = pool[index].take() else {
            break;
        };
        let unusual = lane[index].take();
        let pattern = next.pattern;
        let mut reasons = next.reasons;
        if lane_explore && let Some(unusual) = &unusual {
            reasons.splice(0..0, unusual.reasons());
        }
        let picked = if lane_explore {
            explored_of[pattern]
        } else {
            picked_of[pattern]
        };
        if picked > 0 {
            let by = if lane_explore { " by this lane" } else { "" };
            reasons.push(format!(
                "{picked} of its pattern already listed above{by}: priority x {}",
                PATTERN_DECAY.powi(picked)
            ));
        }
        let signal = next.candidate.signal.as_ref();
        items.push(ReviewItem {
            workflow_id: next.candidate.workflow_id.clone(),
            event_id: next.candidate.event_id.clone(),
            threat_type: signal.map(|s| s.threat_type.clone()).unwrap_or_default(),
            source_ip: signal.and_then(|s| s.source_ip).map(|ip| ip.to_string()),
            risk_level: next.candidate.risk_level,
            risk_score: next.candidate.risk_score,
            probability: next
                .candidate
                .prediction
                .as_ref()
                .filter(|p| detailed(p).is_some())
                .map(|p| p.probability),
            score: next.score,
            priority,
            explore: lane_explore,
            follow_up: lane_explore
                && unusual
                    .as_ref()
                    .and_then(|u| u.lead.as_ref())
                    .is_some_and(|l| l.attack),
            pattern: pattern_names[pattern].clone(),
            reasons,
            started_at: next.candidate.started_at,
        });
        picked_of[pattern] += 1;
        if lane_explore {
            explored_of[pattern] += 1;
        }
    }
    items
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use vigil_domain::{AbstainReason, Abstention};

    fn prediction(probability: f64, members: [f64; 3], novelty: f64) -> PredictionResult {
        PredictionResult {
            threat_id: "t".into(),
            risk_score: probability * 10.0,
            risk_level: Severity::Medium,
            confidence: 0.8,
            model_version_id: "m".into(),
            features_used: BTreeMap::new(),
            prediction_time_ms: 1.0,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            coverage: 1.0,
            missing_inputs: Vec::new(),
            in_domain: 0.5,
            probability,
            decision_threshold: 0.5,
            member_probabilities: [
                (ModelType::RandomForest, members[0]),
                (ModelType::Xgboost, members[1]),
                (ModelType::NeuralNetwork, members[2]),
            ]
            .into(),
            novelty,
            abstention: None,
        }
    }

    fn candidate(id: &str, prediction: Option<PredictionResult>) -> Candidate {
        let mut signal = ThreatSignal::new("port_scan", 0.5, DateTime::<Utc>::UNIX_EPOCH);
        signal.protocol = Some("tcp".into());
        signal.destination_port = Some(22);
        signal.source_ip = Some("203.0.113.7".parse().unwrap());
        Candidate {
            workflow_id: id.into(),
            event_id: format!("evt-{id}"),
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            risk_score: 5.0,
            risk_level: Severity::Medium,
            prediction,
            remediations: Vec::new(),
            alerts: Vec::new(),
            signal: Some(signal),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn uncertainty_peaks_at_the_threshold_and_falls_to_zero_at_the_ends() {
        let at =
            |p: f64| score_parts(&candidate("a", Some(prediction(p, [p; 3], 0.0)))).uncertainty;
        assert!(close(at(0.5), 1.0));
        assert!(close(at(0.75), 0.5));
        assert!(close(at(0.25), 0.5));
        assert!(close(at(1.0), 0.0));
        assert!(close(at(0.0), 0.0));
        let reasons = score_parts(&candidate("a", Some(prediction(0.55, [0.55; 3], 0.0)))).reasons;
        assert_eq!(
            reasons,
            ["the model is unsure: probability 0.55, threshold 0.50"]
        );
    }

    #[test]
    fn an_abstention_is_most_uncertain_and_a_missing_prediction_half() {
        let mut p = prediction(0.99, [0.99; 3], 0.0);
        p.abstention = Some(Abstention {
            reason: AbstainReason::LowCoverage,
            detail: "the signal carried 20% of the model's inputs".into(),
        });
        let parts = score_parts(&candidate("a", Some(p)));
        assert!(close(parts.uncertainty, 1.0));
        assert!(parts.reasons[0].starts_with("the model abstained: the signal carried 20%"));
        let parts = score_parts(&candidate("a", None));
        assert!(close(parts.uncertainty, UNKNOWN_UNCERTAINTY));
        assert!(close(parts.score(), W_UNCERTAINTY * 0.5));
        assert_eq!(
            parts.reasons,
            ["no model prediction: the rules alone scored it"]
        );
    }

    #[test]
    fn the_novelty_member_alone_above_the_threshold_is_never_seen() {
        let parts = score_parts(&candidate(
            "a",
            Some(prediction(0.1, [0.1, 0.1, 0.1], 0.97)),
        ));
        assert!(close(parts.novelty, 1.0));
        assert!(
            parts.reasons.iter().any(|r| r.starts_with(
                "never seen this: the novelty member \
                                                        says 0.97 (threshold 0.50), the \
                                                        supervised members at most 0.10"
            )),
            "{:?}",
            parts.reasons
        );
        // Novel, but the supervised members call it a threat too: half.
        let parts = score_parts(&candidate("a", Some(prediction(0.9, [0.9; 3], 0.97))));
        assert!(close(parts.novelty, 0.5));
        // Far outside the training data.
        let mut p = prediction(0.1, [0.1; 3], 0.0);
        p.in_domain = 0.01;
        let parts = score_parts(&candidate("a", Some(p)));
        assert!(close(parts.novelty, 0.8));
        assert!(parts.reasons.iter().any(|r| r.contains("in-domain 0.010")));
    }

    #[test]
    fn members_on_both_sides_of_the_threshold_disagree_by_their_spread() {
        let parts = score_parts(&candidate(
            "a",
            Some(prediction(0.5, [0.12, 0.91, 0.40], 0.0)),
        ));
        assert!(close(parts.disagreement, 0.79));
        assert!(
            parts.reasons.contains(
                &"members disagree: xgboost 0.91, neural_network 0.40, random_forest 0.12"
                    .to_owned()
            ),
            "{:?}",
            parts.reasons
        );
        // Same side: half the spread.
        let parts = score_parts(&candidate("a", Some(prediction(0.8, [0.6, 1.0, 0.8], 0.0))));
        assert!(close(parts.disagreement, 0.2));
    }

    #[test]
    fn remediation_outweighs_alerts_and_the_formula_adds_up() {
        let mut c = candidate("a", Some(prediction(1.0, [1.0; 3], 0.0)));
        assert!(
            close(score_parts(&c).score(), 0.0),
            "confident, agreed, nothing done"
        );
        assert!(score_parts(&c).reasons.is_empty());
        c.alerts = vec!["slack (delivered)".into()];
        assert!(close(score_parts(&c).score(), W_IMPACT * ALERT_IMPACT));
        c.remediations = vec!["block_address 203.0.113.7".into()];
        let parts = score_parts(&c);
        assert!(close(parts.score(), W_IMPACT));
        assert_eq!(parts.reasons, ["remediated: block_address 203.0.113.7"]);

        // All four at once.
        let mut c = candidate("b", Some(prediction(0.5, [0.05, 0.95, 0.3], 0.8)));
        c.alerts = vec!["pagerduty (delivered)".into()];
        let parts = score_parts(&c);
        // uncertainty 1, novelty 0.5 (a member is above), spread 0.9 split, alerts 0.5.
        assert!(close(
            parts.score(),
            0.35 + 0.25 * 0.5 + 0.25 * 0.9 + 0.15 * 0.5
        ));
    }

    #[test]
    fn patterns_group_by_type_protocol_port_and_source_network() {
        let c = candidate("a", None);
        assert_eq!(
            pattern_of(c.signal.as_ref()),
            "port_scan tcp/22 from 203.0.113.0/24"
        );
        let mut s = c.signal.clone().unwrap();
        s.source_ip = Some("2001:db8:1:2::9".parse().unwrap());
        s.protocol = None;
        assert_eq!(pattern_of(Some(&s)), "port_scan -/22 from 2001:db8:1::/48");
        // A flow record names its service when it has no port.
        s.destination_port = None;
        s.protocol = Some("tcp".into());
        s.source_ip = None;
        assert_eq!(pattern_of(Some(&s)), "port_scan tcp/- from -");
        s.categorical.insert("service".into(), "ftp_data".into());
        assert_eq!(pattern_of(Some(&s)), "port_scan tcp/ftp_data from -");
        s.destination_port = Some(20);
        assert_eq!(pattern_of(Some(&s)), "port_scan tcp/20 from -");
        assert_eq!(pattern_of(None), "(signal not recorded)");
    }

    #[test]
    fn near_copies_of_one_pattern_decay_so_other_patterns_come_first() {
        // Five copies of one scan, each very uncertain, and two other patterns.
        let mut candidates: Vec<Candidate> = (0..5)
            .map(|i| candidate(&format!("scan-{i}"), Some(prediction(0.5, [0.5; 3], 0.0))))
            .collect();
        let mut other = candidate("other", Some(prediction(0.7, [0.7; 3], 0.0)));
        other.signal.as_mut().unwrap().destination_port = Some(443);
        let mut third = candidate("third", Some(prediction(0.8, [0.8; 3], 0.0)));
        third.signal.as_mut().unwrap().threat_type = "brute_force".into();
        candidates.push(other);
        candidates.push(third);

        let ranked = rank(candidates, &[], 4);
        let ids: Vec<&str> = ranked.iter().map(|i| i.workflow_id.as_str()).collect();
        // Scores: each scan 0.35, other 0.35 x 0.6 = 0.21, third 0.35 x 0.4 = 0.14. Priorities:
        // scan #1 0.35, other 0.21, scan #2 0.175, third 0.14, scan #3 0.0875.
        assert_eq!(ids, ["scan-0", "other", "scan-1", "third"]);
        assert!(close(ranked[2].priority, 0.175));
        assert!(close(ranked[2].score, 0.35));
        assert!(
            ranked[2]
                .reasons
                .last()
                .unwrap()
                .starts_with("1 of its pattern already listed above")
        );
        assert_eq!(rank(Vec::new(), &[], 5), Vec::new());
        assert_eq!(rank(vec![candidate("x", None)], &[], 0), Vec::new());
    }

    #[test]
    fn every_second_pick_explores_what_the_model_calls_benign_by_rarity() {
        // Three unsure calls (p = t: not benign), three confident benign calls whose novelty
        // member says 0.001, 0.01, 0.3 (threshold 0.5), and one benign call far from the
        // training data. All of one pattern.
        let mut candidates: Vec<Candidate> = (0..3)
            .map(|i| candidate(&format!("unsure-{i}"), Some(prediction(0.5, [0.5; 3], 0.0))))
            .collect();
        for (id, novelty) in [("quiet", 0.001), ("odd", 0.01), ("odder", 0.3)] {
            candidates.push(candidate(id, Some(prediction(0.01, [0.01; 3], novelty))));
        }
        let mut far = prediction(0.01, [0.01; 3], 0.0001);
        far.in_domain = 0.0;
        candidates.push(candidate("far", Some(far)));

        let ranked = rank(candidates, &[], 5);
        let ids: Vec<&str> = ranked.iter().map(|i| i.workflow_id.as_str()).collect();
        // Benign calls: 4. Novelty margins rank far < quiet < odd < odder: odder is above 3 of
        // 4 (0.75); far is farther from the training data than the 3 others (0.75). They tie
        // on priority, rarity and start, so the smaller id ("far") comes first; odder follows
        // at the next exploring position.
        assert_eq!(ids, ["unsure-0", "far", "unsure-1", "odder", "unsure-2"]);
        assert_eq!(
            ranked.iter().map(|i| i.explore).collect::<Vec<_>>(),
            [false, true, false, true, false]
        );
        // The lane's decay counts its own picks: far is its first.
        assert!(close(ranked[1].priority, 0.75));
        assert!(
            ranked[3].reasons[0].starts_with(
                "explore: the model calls it benign (probability 0.01, threshold 0.50), yet by \
                 the novelty member (0.300) it is more unusual than 75.0 % of the 4 candidates"
            ),
            "{:?}",
            ranked[3].reasons
        );
        assert!(
            ranked[1].reasons[0].contains("its distance from the training data (in-domain 0.000)"),
            "{:?}",
            ranked[1].reasons
        );

        // Nothing the model calls benign: every pick is by score, as before.
        let unsure: Vec<Candidate> = (0..3)
            .map(|i| candidate(&format!("u-{i}"), Some(prediction(0.6, [0.6; 3], 0.0))))
            .collect();
        assert!(rank(unsure, &[], 3).iter().all(|i| !i.explore));
    }

    /// A flow the model calls benign (probability 0.01) with the novelty member at `novelty`.
    fn flow(id: &str, novelty: f64, bytes: u64, rate: f64, service: &str) -> Candidate {
        let mut c = candidate(id, Some(prediction(0.01, [0.01; 3], novelty)));
        let signal = c.signal.as_mut().unwrap();
        signal.threat_type = "network_connection".into();
        signal.destination_port = None;
        signal.source_ip = None;
        signal.bytes = bytes;
        signal.numeric.insert("rate".into(), rate);
        signal.categorical.insert("service".into(), service.into());
        signal.categorical.insert("flag".into(), "SF".into());
        c
    }

    /// 30 ordinary benign calls (rarity 0), and 4 calls at the threshold (one pattern) for the
    /// score's lane to take.
    fn ordinary_and_unsure() -> Vec<Candidate> {
        let mut candidates: Vec<Candidate> = (0..30)
            .map(|i| flow(&format!("ordinary-{i:02}"), 0.001, 500 + i, 0.2, "http"))
            .collect();
        for i in 0..4 {
            candidates.push(candidate(
                &format!("unsure-{i}"),
                Some(prediction(0.5, [0.5; 3], 0.0)),
            ));
        }
        candidates
    }

    /// The ordinary and unsure ones, a group of 8 alike unusual ones (`group-0..8`, ftp
    /// data, novelty 0.1), and a lone signal unlike anything (`lone`, telnet, novelty 0.4: the
    /// rarest).
    fn ordinary_group_and_lone() -> Vec<Candidate> {
        let mut candidates = ordinary_and_unsure();
        for i in 0..8 {
            candidates.push(flow(
                &format!("group-{i}"),
                0.1,
                100 + i,
                0.5 + i as f64 / 100.0,
                "ftp_data",
            ));
        }
        let mut lone = flow("lone", 0.4, 99_999, 0.99, "telnet");
        lone.signal
            .as_mut()
            .unwrap()
            .categorical
            .insert("flag".into(), "REJ".into());
        candidates.push(lone);
        candidates
    }

    #[test]
    fn the_lane_asks_about_the_middle_of_an_unusual_group_before_a_lone_extreme() {
        let ranked = rank(ordinary_group_and_lone(), &[], 4);
        let explored: Vec<&str> = ranked
            .iter()
            .filter(|i| i.explore)
            .map(|i| i.workflow_id.as_str())
            .collect();
        // The group's rarity (30 of 39 benign calls below it, 0.77) is below the lone one's
        // (38 of 39, 0.97), but each member is close to the 7 others and the lone one to
        // nothing: a member of the group comes first. The next member of the group is of the
        // same pattern, halved: the lone one next.
        assert!(explored[0].starts_with("group-"), "{ranked:#?}");
        assert_eq!(explored[1], "lone", "{ranked:#?}");
        assert!(
            ranked
                .iter()
                .all(|i| i.explore || i.workflow_id.starts_with("unsure-"))
        );
        let first = &ranked[1];
        assert!(!first.follow_up);
        assert!(first.reasons[0].starts_with("explore: the model calls it benign"));
        assert!(
            first.reasons[1].starts_with("typical of the unusual signals around it"),
            "{:?}",
            first.reasons
        );
        let lone = &ranked[3];
        assert!(lone.priority < first.priority / (30.0 / 39.0) * (38.0 / 39.0));
    }

    /// Two groups of 12 alike unusual benign calls, unlike each other: `a-*` (ftp data,
    /// novelty 0.2, the rarer) and `b-*` (telnet, novelty 0.1).
    fn two_groups() -> Vec<Candidate> {
        let mut candidates = ordinary_and_unsure();
        for i in 0..12 {
            let rate = i as f64 / 100.0;
            candidates.push(flow(
                &format!("a-{i:02}"),
                0.2,
                100 + i,
                0.1 + rate,
                "ftp_data",
            ));
            candidates.push(flow(
                &format!("b-{i:02}"),
                0.1,
                9_000 + i,
                0.8 + rate,
                "telnet",
            ));
        }
        candidates
    }

    fn judged(id: &str, label: TrueLabel, like: &Candidate) -> JudgedSignal {
        JudgedSignal {
            event_id: id.into(),
            label,
            signal: like.signal.clone().unwrap(),
        }
    }

    fn explored(ranked: &[ReviewItem]) -> Vec<&str> {
        ranked
            .iter()
            .filter(|i| i.explore)
            .map(|i| i.workflow_id.as_str())
            .collect()
    }

    #[test]
    fn a_group_judged_an_attack_is_followed_up_and_one_judged_benign_set_aside() {
        let candidates = two_groups();
        let a_like = candidates.iter().find(|c| c.workflow_id == "a-05").unwrap();
        let b_like = candidates.iter().find(|c| c.workflow_id == "b-05").unwrap();

        // No verdicts: the rarer group first, then the other (the pattern decay).
        let fresh = rank(candidates.clone(), &[], 4);
        let picks = explored(&fresh);
        assert!(
            picks[0].starts_with("a-") && picks[1].starts_with("b-"),
            "{fresh:#?}"
        );

        // A verdict of attack on one like b-05: the lane stays in group b, every pick a
        // follow-up, in spite of the pattern decay and group a's rarity.
        let attack = judged("evt-earlier", TrueLabel::Attack, b_like);
        let followed = rank(candidates.clone(), std::slice::from_ref(&attack), 8);
        let picks = explored(&followed);
        assert_eq!(picks.len(), 4);
        assert!(picks.iter().all(|id| id.starts_with("b-")), "{followed:#?}");
        assert!(followed.iter().filter(|i| i.explore).all(|i| i.follow_up));
        assert!(
            followed[1].reasons[0].starts_with("explore, follow-up: like event evt-earlier"),
            "{:?}",
            followed[1].reasons
        );

        // A verdict of benign on one like a-05 sets group a aside: group b comes first.
        let benign = judged("evt-earlier", TrueLabel::Benign, a_like);
        let aside = rank(candidates, &[benign], 2);
        assert!(explored(&aside)[0].starts_with("b-"), "{aside:#?}");
        assert!(!aside[1].follow_up);
    }

    #[test]
    fn requests_take_a_limit_within_range() {
        assert_eq!(ReviewRequest::decode(b""), Ok(DEFAULT_LIMIT));
        assert_eq!(ReviewRequest::decode(b"{}"), Ok(DEFAULT_LIMIT));
        assert_eq!(ReviewRequest::decode(br#"{"limit":5}"#), Ok(5));
        for bad in [r#"{"limit":0}"#, r#"{"limit":1001}"#, r#"{"limit":-3}"#] {
            let error = ReviewRequest::decode(bad.as_bytes()).unwrap_err();
            assert!(error.contains("limit must be within 1..=1000"), "{error}");
        }
        let error = ReviewRequest::decode(b"{limit").unwrap_err();
        assert!(error.starts_with("not a review request"), "{error}");
        assert!(ReviewRequest::decode(br#"{"limt":5}"#).is_err());
    }
}
