//! `vigil feedback submit | list | import`: analysts' verdicts on workflows, through the
//! feedback service (which validates and stores them, and relabels the workflow's training
//! example), and their history from PostgreSQL.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use vigil_domain::{FeedbackRecord, FeedbackSubmission, FeedbackType, TrueLabel};
use vigil_feedback::{SubmitOutcome, SubmitReply};
use vigil_runtime::ConfigArgs;
use vigil_store::Store;

/// Arguments of `vigil feedback`.
#[derive(Debug, clap::Args)]
pub struct FeedbackArgs {
    #[command(subcommand)]
    pub command: FeedbackCommand,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// What `vigil feedback` does.
#[derive(Debug, clap::Subcommand)]
pub enum FeedbackCommand {
    /// Judge a workflow: was vigil's verdict on its signal correct?
    Submit {
        /// The workflow: its id, or the id of the event it processed.
        workflow: String,
        /// correct (vigil's verdict stands), incorrect or partial (give --label).
        verdict: Verdict,
        /// What the signal really was; required for incorrect and partial.
        #[arg(long, value_enum)]
        label: Option<Label>,
        /// The kind of attack (e.g. neptune), with --label attack.
        #[arg(long)]
        attack_type: Option<String>,
        /// How sure you are, 0-1.
        #[arg(long, default_value_t = 1.0)]
        confidence: f64,
        /// A note: what was wrong, what should have happened.
        #[arg(long)]
        note: Option<String>,
        /// The alert or remediation judged (its id); the whole workflow when omitted.
        #[arg(long)]
        action: Option<String>,
        /// Who judges; `$USER` when omitted.
        #[arg(long)]
        analyst: Option<String>,
        /// How long to wait for the feedback service, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        /// Print the service's reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verdicts, newest first, replaced ones included (the history).
    List {
        /// Only the verdicts on this workflow (its id or its event id).
        #[arg(long)]
        workflow: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Submit verdicts from a JSON-lines file, one per line:
    /// `{"workflow":"ID","verdict":"incorrect","label":"benign","confidence":0.9,"note":"...",
    /// "action":"ID","attack_type":"neptune","analyst":"alice"}` (`-` reads standard input).
    /// Bad lines are reported by number; the others are stored.
    Import {
        /// The JSON-lines file.
        file: PathBuf,
        /// Who judged, for lines that do not say; `$USER` when omitted.
        #[arg(long)]
        analyst: Option<String>,
        /// How long to wait for the feedback service per verdict, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
}

/// A verdict on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdict {
    Correct,
    Incorrect,
    Partial,
}

impl From<Verdict> for FeedbackType {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Correct => FeedbackType::Correct,
            Verdict::Incorrect => FeedbackType::Incorrect,
            Verdict::Partial => FeedbackType::Partial,
        }
    }
}

/// A true label on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Label {
    Attack,
    Benign,
}

impl From<Label> for TrueLabel {
    fn from(l: Label) -> Self {
        match l {
            Label::Attack => TrueLabel::Attack,
            Label::Benign => TrueLabel::Benign,
        }
    }
}

/// One line of `vigil feedback import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    #[serde(alias = "workflow_id")]
    workflow: String,
    #[serde(alias = "feedback_type")]
    verdict: String,
    label: Option<String>,
    attack_type: Option<String>,
    confidence: Option<f64>,
    #[serde(alias = "correction")]
    note: Option<String>,
    #[serde(alias = "action_id")]
    action: Option<String>,
    analyst: Option<String>,
}

impl ImportLine {
    fn into_submission(self, analyst: &str) -> anyhow::Result<FeedbackSubmission> {
        let submission = FeedbackSubmission {
            workflow: self.workflow.trim().to_owned(),
            action_id: self.action.unwrap_or_default().trim().to_owned(),
            feedback_type: self.verdict.parse()?,
            label: self.label.as_deref().map(str::parse).transpose()?,
            attack_type: self.attack_type.filter(|t| !t.trim().is_empty()),
            confidence: self.confidence.unwrap_or(1.0),
            correction: self.note.filter(|n| !n.trim().is_empty()),
            analyst: self.analyst.unwrap_or_else(|| analyst.to_owned()),
        };
        submission.validate()?;
        Ok(submission)
    }
}

/// Runs `vigil feedback ...`.
pub fn run(args: FeedbackArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match args.command {
            FeedbackCommand::Submit {
                workflow,
                verdict,
                label,
                attack_type,
                confidence,
                note,
                action,
                analyst,
                timeout_secs,
                json,
            } => {
                let submission = FeedbackSubmission {
                    workflow,
                    action_id: action.unwrap_or_default(),
                    feedback_type: verdict.into(),
                    label: label.map(TrueLabel::from),
                    attack_type,
                    confidence,
                    correction: note,
                    analyst: analyst_or_user(analyst)?,
                };
                let client = vigil_bus::connect(&config.nats).await?;
                let reply = vigil_feedback::submit(
                    &client,
                    &config.nats.prefix,
                    &submission,
                    Duration::from_secs(timeout_secs),
                )
                .await?;
                if json {
                    println!("{}", serde_json::to_string(&reply)?);
                }
                if !reply.ok {
                    bail!(
                        "refused: {}",
                        reply.error.as_deref().unwrap_or("no reason given")
                    );
                }
                if !json {
                    println!("{}", describe(&reply));
                }
                Ok(())
            }
            FeedbackCommand::List {
                workflow,
                limit,
                json,
            } => {
                let store = Store::connect_and_migrate(&config.database).await?;
                let result = list(&store, workflow.as_deref(), limit, json).await;
                store.close().await;
                result
            }
            FeedbackCommand::Import {
                file,
                analyst,
                timeout_secs,
            } => {
                let analyst = analyst_or_user(analyst)?;
                import(&config, &file, &analyst, Duration::from_secs(timeout_secs)).await
            }
        }
    })
}

fn analyst_or_user(analyst: Option<String>) -> anyhow::Result<String> {
    analyst
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .context("give --analyst NAME (USER is not set)")
}

/// One line about an accepted verdict.
fn describe(reply: &SubmitReply) -> String {
    let id = reply.feedback_id.as_deref().unwrap_or("?");
    let workflow = reply.workflow_id.as_deref().unwrap_or("?");
    let label = reply.label.map_or("?", TrueLabel::as_str);
    let system = reply.system_label.map_or("?", TrueLabel::as_str);
    let head = match reply.outcome {
        Some(SubmitOutcome::Duplicate) => {
            format!("already stored as verdict {id} on workflow {workflow}; nothing changed")
        }
        Some(SubmitOutcome::Superseded) => format!(
            "stored verdict {id} on workflow {workflow}; it replaces your verdict {}",
            reply.superseded_id.as_deref().unwrap_or("?")
        ),
        _ => format!("stored verdict {id} on workflow {workflow}"),
    };
    let example = if reply.training_example {
        "its signal is a training example labelled"
    } else {
        "no signal recorded for it, so no training example; label"
    };
    let mut line = format!("{head}: vigil said {system}, {example} {label}");
    if !reply.event_published {
        line.push_str(" (FEEDBACK_RECEIVED not published yet; the service sends it again)");
    }
    line
}

async fn list(store: &Store, workflow: Option<&str>, limit: u64, json: bool) -> anyhow::Result<()> {
    let workflow_id = match workflow {
        Some(w) => Some(
            store
                .feedback()
                .find_workflow(w)
                .await?
                .with_context(|| format!("unknown workflow {w:?}"))?
                .id,
        ),
        None => None,
    };
    let records = store.feedback().list(workflow_id.as_deref(), limit).await?;
    if json {
        for record in &records {
            println!("{}", serde_json::to_string(record)?);
        }
        return Ok(());
    }
    if records.is_empty() {
        println!("no verdicts");
        return Ok(());
    }
    println!(
        "{:<19}  {:<36}  {:<36}  {:<12}  {:<9}  {:<6}  {:>4}  status",
        "submitted", "id", "workflow", "analyst", "verdict", "label", "conf"
    );
    for record in &records {
        println!("{}", list_line(record));
    }
    Ok(())
}

fn list_line(r: &FeedbackRecord) -> String {
    let status = match &r.superseded_by {
        Some(by) => format!("superseded by {by}"),
        None => "current".to_owned(),
    };
    let mut line = format!(
        "{:<19}  {:<36}  {:<36}  {:<12}  {:<9}  {:<6}  {:>4.2}  {status}",
        r.timestamp.format("%Y-%m-%d %H:%M:%S"),
        r.id,
        r.workflow_execution_id,
        r.analyst,
        r.feedback_type.as_str(),
        r.label.map_or("-", TrueLabel::as_str),
        r.confidence,
    );
    if !r.action_id.is_empty() {
        line.push_str(&format!("  action {}", r.action_id));
    }
    if let Some(t) = &r.attack_type {
        line.push_str(&format!("  attack {t}"));
    }
    if let Some(note) = &r.correction {
        line.push_str(&format!("  note: {note}"));
    }
    line
}

async fn import(
    config: &vigil_config::Config,
    file: &Path,
    analyst: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let lines: Vec<String> = if file.as_os_str() == "-" {
        std::io::stdin().lock().lines().collect::<Result<_, _>>()?
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        std::io::BufReader::new(f)
            .lines()
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {}", file.display()))?
    };
    // Every line is checked first, so mistakes show with their number before anything is sent.
    let mut submissions = Vec::new();
    let mut refused = 0usize;
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<ImportLine>(line)
            .map_err(anyhow::Error::from)
            .and_then(|l| l.into_submission(analyst));
        match parsed {
            Ok(submission) => submissions.push((index + 1, submission)),
            Err(error) => {
                refused += 1;
                eprintln!("line {}: {error:#}", index + 1);
            }
        }
    }
    let (mut stored, mut duplicates, mut superseded) = (0usize, 0usize, 0usize);
    if !submissions.is_empty() {
        let client = vigil_bus::connect(&config.nats).await?;
        for (number, submission) in &submissions {
            let reply =
                vigil_feedback::submit(&client, &config.nats.prefix, submission, timeout).await?;
            match (reply.ok, reply.outcome) {
                (true, Some(SubmitOutcome::Duplicate)) => duplicates += 1,
                (true, Some(SubmitOutcome::Superseded)) => superseded += 1,
                (true, _) => stored += 1,
                (false, _) => {
                    refused += 1;
                    eprintln!(
                        "line {number}: {}",
                        reply.error.as_deref().unwrap_or("refused")
                    );
                }
            }
        }
    }
    println!(
        "stored {stored}, superseding {superseded}, duplicates {duplicates}, refused {refused}"
    );
    if refused > 0 && stored + superseded + duplicates == 0 {
        bail!("no verdict in {} was accepted", file.display());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        feedback: FeedbackArgs,
    }

    #[test]
    fn submit_parses_with_its_flags() {
        let cli = Cli::try_parse_from([
            "feedback",
            "submit",
            "wf-1",
            "incorrect",
            "--label",
            "benign",
            "--confidence",
            "0.8",
            "--analyst",
            "alice",
        ])
        .unwrap();
        match cli.feedback.command {
            FeedbackCommand::Submit {
                verdict,
                label,
                confidence,
                analyst,
                ..
            } => {
                assert_eq!(verdict, Verdict::Incorrect);
                assert_eq!(label, Some(Label::Benign));
                assert_eq!(confidence, 0.8);
                assert_eq!(analyst.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["feedback", "submit", "wf-1", "maybe"]).is_err());
    }

    #[test]
    fn import_lines_name_what_is_wrong() {
        let parse = |line: &str| {
            serde_json::from_str::<ImportLine>(line)
                .map_err(anyhow::Error::from)
                .and_then(|l| l.into_submission("bob"))
        };
        let ok = parse(r#"{"workflow":"wf-1","verdict":"incorrect","label":"benign"}"#).unwrap();
        assert_eq!(ok.analyst, "bob");
        assert_eq!(ok.confidence, 1.0);
        for (line, expected) in [
            (
                r#"{"workflow":"wf-1","verdict":"incorrect"}"#,
                "needs the true label",
            ),
            (r#"{"workflow":"wf-1","verdict":"sure"}"#, "unknown verdict"),
            (
                r#"{"workflow":"wf-1","verdict":"correct","confidence":2}"#,
                "confidence",
            ),
            (
                r#"{"workflow":"wf-1","verdict":"correct","lable":"x"}"#,
                "lable",
            ),
            ("not json", "expected"),
        ] {
            let error = format!("{:#}", parse(line).unwrap_err());
            assert!(error.contains(expected), "{line}: {error}");
        }
    }
}
