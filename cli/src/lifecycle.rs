//! Releasing models: list the registry, promote a version, roll back.

use carecast_models::Registry;
use carecast_serving::ModelStore;
use carecast_training::dataset::Rows;
use carecast_training::pipeline::{EvaluationData, check_gates};
use clap::Args;
use std::path::PathBuf;

pub fn list(registry: &Registry) -> anyhow::Result<()> {
    for name in registry.models()? {
        let current = registry.current(&name).unwrap_or_else(|_| "-".into());
        println!("{name}: versions {} (current {current})", registry.versions(&name)?.join(", "));
    }
    Ok(())
}

/// Make a version the one served by default, once it has passed its promotion gates against
/// the version served now (stated in its task spec: AUROC not below the served version's by
/// more than a margin, calibration slope and intercept within limits, every input of the served
/// version kept), checked on validation data given here or recorded when it was trained. Running
/// servers pick it up without a restart (and keep serving the previous one if it fails to load).
#[derive(Args)]
#[command(after_help = "Examples:
  carecast promote --model support2_hospdead-gbm --version 3 --data validation.csv
  carecast promote --model support2_hospdead-gbm --version 3 --force --reason \"CSO approval CR-1234\"")]
pub struct Promote {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
    /// The version to serve.
    #[arg(long)]
    version: String,
    /// Validation data (CSV or Parquet) to check the gates on: the task's test split of it, or
    /// every row with --all-rows. Without it, the gates recorded when the version was trained.
    #[arg(long, conflicts_with = "meds")]
    data: Option<PathBuf>,
    /// A MEDS dataset to check an event model's gates on.
    #[arg(long)]
    meds: Option<PathBuf>,
    /// Check on every row of --data or --meds (another site's or period's data).
    #[arg(long)]
    all_rows: bool,
    /// Promote although the gates were not passed (or not checked); needs --reason, which the
    /// registry's history keeps with the gates failed.
    #[arg(long, requires = "reason")]
    force: bool,
    /// Why the promotion is forced (e.g. the clinical safety officer's approval).
    #[arg(long, requires = "force")]
    reason: Option<String>,
}

pub fn promote(registry: &Registry, args: Promote) -> anyhow::Result<()> {
    let store = ModelStore::new(registry.clone());
    let source = match (&args.data, &args.meds) {
        (Some(d), _) => Some(EvaluationData::Table(d)),
        (None, Some(m)) => Some(EvaluationData::Meds(m)),
        (None, None) => None,
    };
    let served = registry.current(&args.model).ok();
    if let (Some(source), Some(served)) = (source, served.filter(|s| *s != args.version)) {
        let candidate = store.get(&args.model, Some(&args.version))?;
        let current = store.get(&args.model, Some(&served))?;
        let rows = if args.all_rows { Rows::All } else { Rows::TaskSplit };
        let report = check_gates(registry, &candidate, &current, source, rows)?;
        println!("{} v{} against v{served} on {} rows of {}:", args.model, args.version, report.rows, report.data);
        for g in &report.gates {
            println!("  {} {}: {}", if g.passed { "passed" } else { "FAILED" }, g.name, g.detail);
        }
    }
    store.promote(&args.model, &args.version, &cli_user(), args.reason.as_deref().filter(|_| args.force))?;
    match &args.reason {
        Some(reason) if args.force => println!("{}: v{} promoted (forced: {reason})", args.model, args.version),
        _ => println!("{}: v{} promoted", args.model, args.version),
    }
    Ok(())
}

/// Put a candidate version in shadow: running servers score every request for the model's
/// served version with it too, never returning its result. Its agreement with the served
/// version (band changes, mean absolute difference in risk) is counted at /metrics and reported
/// by `carecast monitor`, where its own scores are judged against outcomes beside the served
/// version's.
#[derive(Args)]
#[command(after_help = "Examples:
  carecast shadow --model support2_hospdead-gbm --version 3
  carecast shadow --model support2_hospdead-gbm --off")]
pub struct Shadow {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
    /// The candidate version to score in shadow.
    #[arg(long, required_unless_present = "off", conflicts_with = "off")]
    version: Option<String>,
    /// End the shadow.
    #[arg(long)]
    off: bool,
}

pub fn shadow(registry: &Registry, args: Shadow) -> anyhow::Result<()> {
    match args.version {
        Some(version) => {
            // Loaded and verified first: a package that would be refused is never put in shadow.
            ModelStore::new(registry.clone()).get(&args.model, Some(&version))?;
            registry.start_shadow(&args.model, &version, &cli_user())?;
            let served = registry.current(&args.model)?;
            println!("{}: v{version} scoring in shadow beside v{served}", args.model);
        }
        None => match registry.end_shadow(&args.model, &cli_user())? {
            Some(version) => println!("{}: v{version} no longer in shadow", args.model),
            None => println!("{}: no version was in shadow", args.model),
        },
    }
    Ok(())
}

/// Go back to the version promoted before the current one.
#[derive(Args)]
#[command(after_help = "Example:
  carecast rollback --model support2_hospdead-gbm")]
pub struct Rollback {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
}

pub fn rollback(registry: &Registry, args: Rollback) -> anyhow::Result<()> {
    let version = ModelStore::new(registry.clone()).rollback(&args.model, &cli_user())?;
    println!("{}: rolled back to v{version}", args.model);
    Ok(())
}

/// Who promoted or rolled back from the command line, for the registry's history.
fn cli_user() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}
