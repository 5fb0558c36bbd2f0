//! `vigil replay nsl-kdd FILE --with-feedback`: replays the rows, waits for each row's
//! workflow (WORKFLOW_COMPLETED events, reconciled with the workflow rows in PostgreSQL), and
//! gives the row's own label back as an analyst's verdict through the feedback service: every
//! row as its workflow completes, or with `--budget N` only N rows, picked once every workflow
//! completed, by the review queue or at random.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message as _;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vigil_bus::Bus;
use vigil_config::Config;
use vigil_domain::{
    EventType, FeedbackSubmission, FeedbackType, Severity, TrueLabel, WorkflowExecution,
    WorkflowStatus,
};
use vigil_feedback::review::MAX_LIMIT;
use vigil_feedback::{SubmitError, SubmitReply};
use vigil_ml::LabeledExample;
use vigil_proto::v1;
use vigil_store::Store;

use super::{NslKddArgs, Pick, PublishTally, publish_signals};

/// The subject kind replayed signals are published under (`vigil.ingest.nsl-kdd`).
const INGEST_KIND: &str = "nsl-kdd";
/// Verdicts waiting for the feedback service's answer at once.
const VERDICTS_IN_FLIGHT: usize = 16;
/// How long one verdict waits for the feedback service's answer.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the workflows of rows whose WORKFLOW_COMPLETED arrived are read.
const READ_EVERY: Duration = Duration::from_millis(200);
/// Every this many reads, the workflows of every row still waiting are read too: the record
/// for rows whose event this subscription missed (or replayed earlier, so deduplicated).
const RECONCILE_EVERY: u32 = 5;

/// One replayed row: its event id, and what it really was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) event_id: String,
    /// The data set's label: `true` for an attack.
    pub(super) attack: bool,
    /// The data set's class of an attack (`neptune`, ...).
    pub(super) attack_type: Option<String>,
}

/// A completed workflow of a replayed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Completed {
    pub(super) workflow_id: String,
    /// vigil's verdict (attack from risk level high); `None` when the workflow failed.
    pub(super) verdict: Option<bool>,
}

impl Completed {
    fn of(workflow: &WorkflowExecution) -> Self {
        let verdict = if workflow.status == WorkflowStatus::Success {
            serde_json::from_value::<Severity>(workflow.results["risk_level"].clone())
                .ok()
                .map(|level| TrueLabel::verdict_of(level) == TrueLabel::Attack)
        } else {
            None
        };
        Self {
            workflow_id: workflow.id.clone(),
            verdict,
        }
    }
}

/// The verdict the row's label gives vigil's handling of it: `correct` when vigil's verdict is
/// the label, else `incorrect` with the label (and the attack type of an attack).
pub(super) fn verdict(row: &Row, completed: &Completed, analyst: &str) -> FeedbackSubmission {
    let label = if row.attack {
        TrueLabel::Attack
    } else {
        TrueLabel::Benign
    };
    let correct = completed.verdict == Some(row.attack);
    FeedbackSubmission {
        workflow: completed.workflow_id.clone(),
        action_id: String::new(),
        feedback_type: if correct {
            FeedbackType::Correct
        } else {
            FeedbackType::Incorrect
        },
        label: Some(label),
        attack_type: row.attack_type.clone().filter(|_| row.attack),
        confidence: 1.0,
        correction: Some("the data set's label of the replayed row".to_owned()),
        analyst: analyst.to_owned(),
    }
}

/// What a replay with feedback did.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Summary {
    pub(super) rows: usize,
    pub(super) published: usize,
    pub(super) duplicates: usize,
    pub(super) completed: usize,
    pub(super) failed: usize,
    /// Completed workflows whose verdict matched the row's label.
    pub(super) matched: usize,
    pub(super) correct: usize,
    pub(super) incorrect: usize,
    /// Of the verdicts given, those the service already had (a replay given feedback before).
    pub(super) already_given: usize,
    pub(super) refused: usize,
    pub(super) first_refusal: Option<String>,
    /// What `--pick` chose, and from how many candidates.
    pub(super) picked: Option<String>,
    pub(super) seconds: f64,
}

impl Summary {
    /// vigil's accuracy on the rows whose workflow completed with a verdict.
    fn accuracy(&self) -> Option<f64> {
        let judged = self.completed - self.failed;
        (judged > 0).then(|| self.matched as f64 / judged as f64)
    }

    pub(super) fn print(&self, malformed: usize) {
        println!(
            "replayed {} rows in {:.1} s: published {}, duplicates {}, malformed {malformed}",
            self.rows, self.seconds, self.published, self.duplicates
        );
        let accuracy = self.accuracy().map_or_else(
            || "no verdict to measure".to_owned(),
            |a| {
                format!(
                    "vigil's verdict matched the label on {} of {} (accuracy {a:.4})",
                    self.matched,
                    self.completed - self.failed
                )
            },
        );
        println!(
            "workflows completed: {} ({} failed); {accuracy}",
            self.completed, self.failed
        );
        if let Some(picked) = &self.picked {
            println!("picked: {picked}");
        }
        let mut given = format!(
            "verdicts given: {} (correct {}, incorrect {}",
            self.correct + self.incorrect,
            self.correct,
            self.incorrect
        );
        if self.already_given > 0 {
            given.push_str(&format!("; {} were already stored", self.already_given));
        }
        given.push_str(&format!("), refused {}", self.refused));
        if let Some(why) = &self.first_refusal {
            given.push_str(&format!(" (first: {why})"));
        }
        println!("{given}");
    }

    fn count(&mut self, submission: &FeedbackSubmission, answer: Result<SubmitReply, String>) {
        match answer {
            Ok(reply) if reply.ok => {
                if submission.feedback_type == FeedbackType::Correct {
                    self.correct += 1;
                } else {
                    self.incorrect += 1;
                }
                if reply.outcome == Some(vigil_feedback::SubmitOutcome::Duplicate) {
                    self.already_given += 1;
                }
            }
            Ok(reply) => {
                self.refused += 1;
                self.first_refusal
                    .get_or_insert_with(|| reply.error.unwrap_or_else(|| "no reason".to_owned()));
            }
            Err(why) => {
                self.refused += 1;
                self.first_refusal.get_or_insert(why);
            }
        }
    }
}

/// Sends one verdict; no feedback service at all is an error that ends the replay, any other
/// failure is this verdict's refusal.
async fn submit(
    client: async_nats::Client,
    prefix: String,
    submission: FeedbackSubmission,
) -> anyhow::Result<(FeedbackSubmission, Result<SubmitReply, String>)> {
    match vigil_feedback::submit(&client, &prefix, &submission, SUBMIT_TIMEOUT).await {
        Ok(reply) => Ok((submission, Ok(reply))),
        Err(error @ SubmitError::NoService { .. }) => Err(anyhow::anyhow!(
            "{error}: --with-feedback gives verdicts through the feedback service"
        )),
        Err(error) => Ok((submission, Err(error.to_string()))),
    }
}

/// Replays `examples` and gives verdicts as `args` says; see the module documentation.
pub(super) async fn replay(
    config: &Config,
    examples: &[LabeledExample],
    args: &NslKddArgs,
) -> anyhow::Result<Summary> {
    let bus = Bus::connect(&config.nats, vigil_runtime::topology(config)).await?;
    bus.declare().await?;
    let store = Store::connect_and_migrate(&config.database).await?;
    let result = run(&bus, &store, examples, args).await;
    store.close().await;
    result
}

async fn run(
    bus: &Bus,
    store: &Store,
    examples: &[LabeledExample],
    args: &NslKddArgs,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let prefix = bus.topology().prefix().to_owned();
    // A row repeated in the file is one signal (same id), one workflow and one verdict.
    let mut order = Vec::new();
    let mut rows: HashMap<String, Row> = HashMap::new();
    for example in examples {
        let event_id = example.signal.id.clone();
        if rows.contains_key(&event_id) {
            continue;
        }
        order.push(event_id.clone());
        rows.insert(
            event_id.clone(),
            Row {
                event_id,
                attack: example.label,
                attack_type: example.class_name.clone(),
            },
        );
    }
    let mut waiting: HashSet<String> = rows.keys().cloned().collect();
    let mut completed: HashMap<String, Completed> = HashMap::new();
    let every_row = args.budget.is_none();

    let subject = bus
        .topology()
        .event_subject(EventType::WorkflowCompleted.as_str())?;
    let mut events = bus
        .client()
        .subscribe(subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {subject}"))?;
    // The subscription is known to the server before the first signal goes out.
    bus.client()
        .flush()
        .await
        .context("cannot confirm the workflow_completed subscription")?;

    let bar = ProgressBar::new(rows.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} workflows  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let signals: Vec<v1::ThreatSignal> = examples
        .iter()
        .map(|e| v1::ThreatSignal::from(e.signal.clone()))
        .collect();
    let published = Arc::new(AtomicUsize::new(0));
    let mut publishing = {
        let bus = bus.clone();
        let published = Arc::clone(&published);
        let rate = args.rate;
        tokio::spawn(async move {
            publish_signals(&bus, INGEST_KIND, &signals, rate, move |_| {
                published.fetch_add(1, Ordering::Relaxed);
            })
            .await
        })
    };

    let mut summary = Summary {
        rows: rows.len(),
        ..Summary::default()
    };
    let mut tally: Option<PublishTally> = None;
    let mut signalled: HashSet<String> = HashSet::new();
    let mut to_judge: VecDeque<FeedbackSubmission> = VecDeque::new();
    let mut answers = FuturesUnordered::new();
    let mut reads = tokio::time::interval(READ_EVERY);
    reads.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut read_count = 0u32;
    let patience = Duration::from_secs(args.stall_secs.max(1));
    let mut last_progress = Instant::now();
    loop {
        if tally.is_some() && waiting.is_empty() && to_judge.is_empty() && answers.is_empty() {
            break;
        }
        tokio::select! {
            message = events.next() => {
                let Some(message) = message else {
                    bail!("the subscription to {subject} ended");
                };
                if let Ok(event) = v1::SecurityEvent::decode(message.payload.clone())
                    && waiting.contains(&event.correlation_id)
                {
                    signalled.insert(event.correlation_id);
                }
            }
            joined = &mut publishing, if tally.is_none() => {
                tally = Some(joined.context("the publishing task failed")??);
            }
            _ = reads.tick(), if !waiting.is_empty() => {
                read_count = read_count.wrapping_add(1);
                let ids: Vec<&str> = if read_count.is_multiple_of(RECONCILE_EVERY) {
                    waiting.iter().map(String::as_str).collect()
                } else {
                    signalled.iter().map(String::as_str).collect()
                };
                for workflow in workflows_of(store, &ids).await? {
                    let Some(row) = rows.get(&workflow.event_id) else { continue };
                    if !waiting.remove(&workflow.event_id) {
                        continue;
                    }
                    signalled.remove(&workflow.event_id);
                    last_progress = Instant::now();
                    let done = Completed::of(&workflow);
                    summary.completed += 1;
                    match done.verdict {
                        None => summary.failed += 1,
                        Some(verdict) => {
                            if verdict == row.attack {
                                summary.matched += 1;
                            }
                            if every_row {
                                to_judge.push_back(self::verdict(row, &done, &args.analyst));
                            }
                        }
                    }
                    completed.insert(workflow.event_id.clone(), done);
                }
            }
            answer = answers.next(), if !answers.is_empty() => {
                if let Some(answer) = answer {
                    let (submission, answer) = answer?;
                    summary.count(&submission, answer);
                    last_progress = Instant::now();
                }
            }
        }
        while answers.len() < VERDICTS_IN_FLIGHT
            && let Some(submission) = to_judge.pop_front()
        {
            answers.push(submit(bus.client().clone(), prefix.clone(), submission));
        }
        let sent = published.load(Ordering::Relaxed);
        if sent > 0 && last_progress.elapsed() > patience {
            bar.abandon();
            bail!(
                "no workflow completed and no verdict was answered for {} s: {sent} of {} \
                 signals published, {} workflows completed. Are the broker and orchestrator \
                 running for NATS prefix {prefix:?}?",
                patience.as_secs(),
                examples.len(),
                summary.completed
            );
        }
        if sent == 0 {
            last_progress = Instant::now();
        }
        bar.set_position(summary.completed as u64);
        bar.set_message(format!(
            "published {sent}/{} · verdicts {} · refused {}",
            examples.len(),
            summary.correct + summary.incorrect,
            summary.refused
        ));
    }
    bar.finish_and_clear();
    let tally = tally.context("publishing did not finish")?;
    summary.published = tally.published;
    summary.duplicates = tally.duplicates;

    if let (Some(budget), Some(pick)) = (args.budget, args.pick) {
        let judged: Vec<(&Row, &Completed)> = order
            .iter()
            .filter_map(|id| Some((rows.get(id)?, completed.get(id)?)))
            .filter(|(_, done)| done.verdict.is_some())
            .collect();
        match pick {
            Pick::Random => {
                let chosen = pick_random(judged.len(), budget, args.seed);
                summary.picked = Some(format!(
                    "{} of {} completed workflows at random (seed {})",
                    chosen.len(),
                    judged.len(),
                    args.seed
                ));
                let submissions: Vec<FeedbackSubmission> = chosen
                    .into_iter()
                    .map(|i| verdict(judged[i].0, judged[i].1, &args.analyst))
                    .collect();
                give(bus, &prefix, submissions, &mut summary).await?;
            }
            Pick::Queue => {
                let by_event: HashMap<&str, (&Row, &Completed)> = judged
                    .iter()
                    .map(|(row, done)| (row.event_id.as_str(), (*row, *done)))
                    .collect();
                let page = usize::try_from(args.page).unwrap_or(usize::MAX);
                let chosen = give_from_queue(
                    bus,
                    &prefix,
                    &by_event,
                    (budget, page),
                    &args.analyst,
                    &mut summary,
                )
                .await?;
                summary.picked = Some(format!(
                    "{chosen} of {} completed workflows by the review queue, {page} at a time",
                    judged.len()
                ));
            }
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// `n` distinct positions out of `len` (all when `n >= len`), drawn with `seed`, in order.
pub(super) fn pick_random(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = rand::seq::index::sample(&mut rng, len, n.min(len)).into_vec();
    chosen.sort_unstable();
    chosen
}

/// Gives `submissions`, a few at a time, and counts the answers.
async fn give(
    bus: &Bus,
    prefix: &str,
    submissions: Vec<FeedbackSubmission>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut answers = futures::stream::iter(submissions)
        .map(|s| submit(bus.client().clone(), prefix.to_owned(), s))
        .buffer_unordered(VERDICTS_IN_FLIGHT);
    while let Some(answer) = answers.next().await {
        let (submission, answer) = answer?;
        summary.count(&submission, answer);
    }
    Ok(())
}

/// Asks the review queue for what to judge and judges the replayed rows among its picks, in
/// the queue's order, `page` at a time, until `budget` verdicts are given or a ranking of the
/// queue names none of them. Each page's verdicts are in before the queue is asked again, so
/// each ranking sees them (and leaves the judged workflows out). The queue ranks every
/// workflow without a verdict, so it may name workflows this replay did not make (an earlier
/// replay's, left unjudged): those are passed over, and the queue is asked for its longest list
/// ([`MAX_LIMIT`]) so that they do not use up the page. Returns how many it judged.
async fn give_from_queue(
    bus: &Bus,
    prefix: &str,
    replayed: &HashMap<&str, (&Row, &Completed)>,
    (budget, page): (usize, usize),
    analyst: &str,
    summary: &mut Summary,
) -> anyhow::Result<usize> {
    let mut judged: HashSet<String> = HashSet::new();
    while judged.len() < budget {
        // The feedback service's review queue (`vigil_feedback::review`): its top picks.
        let items = vigil_feedback::review(bus, MAX_LIMIT)
            .await
            .context("asking the review queue (--pick random needs none)")?;
        let this_page = page.min(budget - judged.len());
        let mut verdicts = Vec::new();
        for item in items {
            if verdicts.len() >= this_page {
                break;
            }
            if judged.contains(&item.event_id) {
                continue;
            }
            if let Some((row, done)) = replayed.get(item.event_id.as_str()) {
                judged.insert(item.event_id.clone());
                verdicts.push(verdict(row, done, analyst));
            }
        }
        if verdicts.is_empty() {
            break;
        }
        give(bus, prefix, verdicts, summary).await?;
    }
    Ok(judged.len())
}

async fn workflows_of(store: &Store, ids: &[&str]) -> anyhow::Result<Vec<WorkflowExecution>> {
    let mut workflows = Vec::new();
    for chunk in ids.chunks(2_000) {
        workflows.extend(store.workflows().get_by_event_ids(chunk).await?);
    }
    Ok(workflows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(attack: bool) -> Row {
        Row {
            event_id: "row-1".into(),
            attack,
            attack_type: Some(if attack { "neptune" } else { "normal" }.into()),
        }
    }

    fn done(verdict: Option<bool>) -> Completed {
        Completed {
            workflow_id: "wf-1".into(),
            verdict,
        }
    }

    #[test]
    fn the_verdict_is_correct_only_when_vigil_agreed_with_the_label() {
        let agreed = verdict(&row(true), &done(Some(true)), "replay");
        assert_eq!(agreed.feedback_type, FeedbackType::Correct);
        assert_eq!(agreed.label, Some(TrueLabel::Attack));
        assert_eq!(agreed.attack_type.as_deref(), Some("neptune"));
        assert_eq!(agreed.workflow, "wf-1");
        assert_eq!(agreed.analyst, "replay");
        agreed.validate().unwrap();

        let missed = verdict(&row(true), &done(Some(false)), "replay");
        assert_eq!(missed.feedback_type, FeedbackType::Incorrect);
        assert_eq!(missed.label, Some(TrueLabel::Attack));

        let false_alarm = verdict(&row(false), &done(Some(true)), "replay");
        assert_eq!(false_alarm.feedback_type, FeedbackType::Incorrect);
        assert_eq!(false_alarm.label, Some(TrueLabel::Benign));
        assert_eq!(
            false_alarm.attack_type, None,
            "a benign row has no attack type"
        );
        false_alarm.validate().unwrap();
    }

    #[test]
    fn a_random_pick_is_seeded_distinct_and_never_more_than_there_is() {
        let a = pick_random(100, 10, 7);
        assert_eq!(a.len(), 10);
        assert_eq!(a, pick_random(100, 10, 7));
        assert_ne!(a, pick_random(100, 10, 8));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(pick_random(3, 10, 7), vec![0, 1, 2]);
        assert!(pick_random(0, 10, 7).is_empty());
    }

    #[test]
    fn accuracy_counts_the_workflows_that_reached_a_verdict() {
        let summary = Summary {
            completed: 10,
            failed: 2,
            matched: 6,
            ..Summary::default()
        };
        assert_eq!(summary.accuracy(), Some(0.75));
        assert_eq!(Summary::default().accuracy(), None);
    }
}
