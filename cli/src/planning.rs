//! The planner's verb: score a whole table, every row explained and audited.

use crate::audit_location;
use carecast_audit::AuditLog;
use carecast_models::Registry;
use carecast_serving::ModelStore;
use carecast_tables::batch;
use clap::Args;
use std::path::PathBuf;

/// Score a CSV or Parquet table into Parquet, with explanations.
#[derive(Args)]
#[command(after_help = "Example:
  carecast score --model support2_hospdead-gbm --input data/support2.csv --output scores.parquet --key-column sno")]
pub struct Score {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
    /// Default: the promoted version.
    #[arg(long)]
    version: Option<String>,
    /// The table to score (CSV or Parquet), one row per patient, a column per feature.
    #[arg(long)]
    input: PathBuf,
    /// Where the scores go (Parquet): written beside it and renamed into place when complete.
    #[arg(long)]
    output: PathBuf,
    /// Where refused rows are reported; default `<output>.errors.csv`.
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Column with a pseudonymous patient key, copied to the output and the audit trail.
    #[arg(long)]
    key_column: Option<String>,
    /// Contributions per row, largest first.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Audit trail: an append-only journal file, or a PostgreSQL connection string
    /// (`postgresql://user:password@host/db`: set CARECAST_AUDIT to keep the password off the
    /// command line); default `<registry>/audit.jsonl`.
    #[arg(long, env = "CARECAST_AUDIT")]
    audit: Option<String>,
}

pub fn score(registry: &Registry, args: Score) -> anyhow::Result<()> {
    let pkg = ModelStore::new(registry.clone()).get(&args.model, args.version.as_deref())?;
    let errors = args.errors.unwrap_or_else(|| args.output.with_extension("errors.csv"));
    let audit = AuditLog::open_at(&audit_location(registry, args.audit))?;
    let report =
        batch::score_table(&pkg, &args.input, &args.output, &errors, args.key_column.as_deref(), args.top, &audit)?;
    println!(
        "{} v{}: scored {} of {} rows into {}",
        pkg.manifest.name,
        pkg.manifest.version,
        report.scored,
        report.rows,
        args.output.display()
    );
    if !report.errors.is_empty() {
        println!("{} row(s) refused; see {}", report.errors.len(), errors.display());
    }
    Ok(())
}
