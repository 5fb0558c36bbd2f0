//! The `vigil` command: run the services, publish and replay signals, train and evaluate models.

mod commands;

use clap::{Parser, Subcommand};

/// Event-driven security automation that learns.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train the ensemble from a labelled data file and write a model artifact.
    Train(commands::train::TrainArgs),
    /// Evaluate a model artifact on a labelled data file.
    Evaluate(commands::evaluate::EvaluateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
