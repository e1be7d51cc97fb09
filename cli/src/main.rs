//! `carecast`: from de-identified records to explained risk scores, in one command. This file
//! parses the command line and hands each verb to its module, as ripgrep's `crates/core` does;
//! each module checks its arguments into the library's own configuration before anything runs.
//!
//! | module | verbs | for |
//! | --- | --- | --- |
//! | [`research`] | train, import, evaluate, recalibrate | researchers |
//! | [`planning`] | score, population | population-health planners |
//! | [`clinical`] | serve | the EHR and clinicians |
//! | [`audit_trail`] | audit verify, audit keygen | information governance |
//! | [`records`] | ingest, synth, labels | data engineers |
//! | [`lifecycle`] | models, promote, rollback, shadow | whoever releases models |
//! | [`monitoring`] | outcomes, monitor | the clinical safety officer |
//! | [`demo`] | demo | a first look |

mod allocator;
mod audit_trail;
mod bundled;
mod clinical;
mod demo;
mod lifecycle;
mod monitoring;
mod planning;
mod progress;
mod records;
mod research;

use carecast_audit::Location;
use carecast_models::Registry;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// mimalloc: a scored request makes and frees many small allocations on whichever worker thread
/// runs it, which glibc's allocator serves markedly slower under concurrency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "carecast",
    version,
    about = "Explained clinical risk scores: train, evaluate, score and serve.",
    after_help = "Start with `carecast demo`, which trains, scores and serves on the bundled data."
)]
struct Cli {
    /// Model registry directory.
    #[arg(long, global = true, default_value = "registry")]
    registry: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Train(research::Train),
    Import(research::Import),
    Evaluate(research::Evaluate),
    Recalibrate(research::Recalibrate),
    Score(planning::Score),
    Population(planning::Population),
    /// The audit trail of scores.
    Audit {
        #[command(subcommand)]
        action: audit_trail::Action,
    },
    Serve(Box<clinical::Serve>),
    Ingest(records::Ingest),
    Synth(records::Synth),
    Labels(records::Labels),
    /// List the registry's models and versions.
    #[command(after_help = "Example:\n  carecast models --registry registry")]
    Models,
    Promote(lifecycle::Promote),
    Rollback(lifecycle::Rollback),
    Shadow(lifecycle::Shadow),
    Outcomes(monitoring::Outcomes),
    Monitor(monitoring::Monitor),
    /// The whole path on the bundled data: train, batch-score, serve, and score one patient over gRPC.
    #[command(after_help = "Example:\n  carecast demo")]
    Demo,
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  carecast completions bash > /etc/bash_completion.d/carecast")]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let registry = Registry::new(&cli.registry);
    match cli.command {
        Command::Train(args) => research::train(&registry, args),
        Command::Import(args) => research::import(&registry, args),
        Command::Evaluate(args) => research::evaluate(&registry, args),
        Command::Recalibrate(args) => research::recalibrate(&registry, args),
        Command::Score(args) => planning::score(&registry, args),
        Command::Population(args) => planning::population(&registry, args),
        Command::Audit { action } => audit_trail::run(&registry, action),
        Command::Serve(args) => clinical::serve(&registry, *args).await,
        Command::Ingest(args) => records::ingest(args),
        Command::Synth(args) => records::synth(args),
        Command::Labels(args) => records::labels(args),
        Command::Models => lifecycle::list(&registry),
        Command::Promote(args) => lifecycle::promote(&registry, args),
        Command::Rollback(args) => lifecycle::rollback(&registry, args),
        Command::Shadow(args) => lifecycle::shadow(&registry, args),
        Command::Outcomes(args) => monitoring::outcomes(&registry, args),
        Command::Monitor(args) => monitoring::monitor(&registry, args),
        Command::Demo => demo::run(&registry).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "carecast", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The audit trail a command writes or reads: the one given, else `<registry>/audit.jsonl`.
fn audit_location(registry: &Registry, audit: Option<String>) -> Location {
    Location::for_registry(registry.root(), audit.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks (conflicting names, bad defaults, missing groups), and the
    /// promise of the help: every argument explained, every verb with an example.
    #[test]
    fn every_argument_has_help_and_every_verb_an_example() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut verbs = vec![];
        for verb in cli.get_subcommands() {
            match verb.get_subcommands().count() {
                0 => verbs.push(verb.clone()),
                _ => verbs.extend(verb.get_subcommands().cloned()),
            }
        }
        for verb in verbs {
            let name = verb.get_name().to_string();
            assert!(verb.get_about().is_some(), "{name}: no description");
            let example = verb.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(example.contains("Example") && example.contains("carecast "), "{name}: no example in --help");
            for arg in verb.get_arguments().filter(|a| !a.is_global_set() && a.get_id() != "help") {
                assert!(arg.get_help().is_some(), "{name} --{}: no help text", arg.get_id());
            }
        }
    }
}
