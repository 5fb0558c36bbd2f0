//! The `vigil` command: run the services, publish and replay signals, train and evaluate models.

mod commands;

use clap::{Parser, Subcommand};

/// Event-driven security automation that learns.
#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    about = "Security automation that learns: threat signals in, scored workflows, alerts, \
             remediation and incidents out",
    after_help = "Start everything with `vigil up`, then `vigil status`. Every command reads the \
                  same configuration: defaults, then the file named by --config or VIGIL_CONFIG, \
                  then VIGIL_<SECTION>__<KEY> variables, then --set KEY=VALUE."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every vigil service in one process against NATS and PostgreSQL.
    Up(commands::up::UpArgs),
    /// Health of every component and the system, from the health service.
    Status(commands::status::StatusArgs),
    /// Publish threat signals (JSON, or a JSONL file) to the ingest stream.
    Publish(commands::publish::PublishArgs),
    /// Replay a data set as threat signals (stable ids: a second replay is all duplicates).
    Replay(commands::replay::ReplayArgs),
    /// The model registry: list, show, promote, roll back, history, train, import.
    Models(commands::models::ModelsArgs),
    /// Score one signal with the running predictor (gRPC).
    Predict(commands::predict::PredictArgs),
    /// List remediation actions, or undo one.
    Remediation(commands::remediation::RemediationArgs),
    /// The configuration: show it, and get, set or list the keys that change while vigil runs.
    Config(commands::config::ConfigCmdArgs),
    /// Train the ensemble from a labelled data file and write a model artifact.
    Train(commands::train::TrainArgs),
    /// Evaluate a model artifact on a labelled data file.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Analysts' verdicts on workflows: submit, list, import.
    Feedback(commands::feedback::FeedbackArgs),
    /// The unjudged workflows a verdict would teach most about, each with why.
    Review(commands::review::ReviewArgs),
    /// What the verdicts say: accuracy, error rates, frequent mistakes, threshold advice.
    Insights(commands::insights::InsightsArgs),
    /// Five minutes of vigil on NSL-KDD: train, replay, feedback, retrain, and a report.
    Demo(commands::demo::DemoArgs),
    /// Ask a service's HTTP endpoint (/healthz by default); exit 0 on 200 (container health checks).
    Probe(commands::probe::ProbeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => commands::up::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Publish(args) => commands::publish::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Models(args) => commands::models::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Remediation(args) => commands::remediation::run(args),
        Command::Config(args) => commands::config::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Feedback(args) => commands::feedback::run(args),
        Command::Review(args) => commands::review::run(args),
        Command::Insights(args) => commands::insights::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Probe(args) => commands::probe::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
