//! The planners' verbs: score a whole table, every row explained and audited; and summarise a
//! whole register by the groups a planner names, under disclosure control.

use crate::{audit_location, progress};
use carecast_audit::AuditLog;
use carecast_models::{ModelPackage, Registry};
use carecast_serving::ModelStore;
use carecast_tables::batch::{self, BatchOptions};
use carecast_tables::chunks::{Chunks, Source};
use carecast_tables::disclosure::{Disclosure, shown};
use carecast_tables::population::{Change, Grouping, PopulationOptions, summarise_source};
use carecast_training::ingest::meds::{SUBJECT, Shards, coded_groupings};
use clap::Args;
use std::path::PathBuf;

/// Score a CSV or Parquet table, or everyone in a MEDS dataset at a prediction time, into
/// Parquet, with explanations.
#[derive(Args)]
#[command(after_help = "Examples:
  carecast score --model support2_hospdead-gbm --input data/support2.csv --output scores.parquet --key-column sno
  carecast score --model synth_dementia_5y-logistic --meds synth --at 2026-12-01 --output dementia.parquet

Reads and writes a chunk of rows at a time, so any size of table fits in memory; an interrupted
run keeps its complete chunks beside the output and continues with --resume. The run is audited
once (input and output SHA-256, rows scored and refused); --audit-rows audits each score too.")]
pub struct Score {
    #[command(flatten)]
    table: Table,
    #[command(flatten)]
    register: Register,
    /// Where the scores go (Parquet): written beside it and renamed into place when complete.
    #[arg(long)]
    output: PathBuf,
    /// Where refused rows are reported; default `<output>.errors.csv`.
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Contributions per row, largest first.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Also write each row's base value and every feature's exact contribution (log-odds,
    /// `contribution_<feature>`), which add up to its margin.
    #[arg(long)]
    contributions: bool,
    /// Rows read, scored and written at a time: memory grows with this, not with the table.
    #[arg(long, default_value_t = carecast_tables::chunks::DEFAULT_ROWS)]
    rows_per_chunk: usize,
    /// Continue an interrupted run of the same input, model and options into the same output,
    /// from its last complete chunk.
    #[arg(long)]
    resume: bool,
}

/// What both verbs read: a table, or everyone in a MEDS dataset at a prediction time.
#[derive(Args)]
struct Register {
    /// The table to read (CSV or Parquet), one row per patient, a column per feature.
    #[arg(long, required_unless_present = "meds", conflicts_with_all = ["meds", "at"])]
    input: Option<PathBuf>,
    /// A MEDS dataset, for an event-trained model: everyone in it, their features built from
    /// their events before --at by the model's own extractor, a data file at a time (keyed by
    /// `subject_id`).
    #[arg(long, requires = "at", conflicts_with = "key_column")]
    meds: Option<PathBuf>,
    /// The prediction time for --meds: a date (UTC midnight at its start).
    #[arg(long, requires = "meds")]
    at: Option<chrono::NaiveDate>,
}

/// A register opened for a model: its chunks, and the key column a MEDS dataset's people are
/// keyed by.
struct Read<'a> {
    source: Box<dyn Source + 'a>,
    key_column: Option<&'static str>,
}

impl Register {
    /// Opens the table through the identifier guard, or the MEDS dataset with its files checked
    /// and, for each of `by` that is not one of the model's inputs, everyone's coded attribute.
    fn open<'a>(&self, pkg: &'a ModelPackage, rows_per_chunk: usize, by: &[Grouping]) -> anyhow::Result<Read<'a>> {
        match (&self.input, &self.meds, self.at) {
            (Some(input), ..) => Ok(Read { source: Box::new(Chunks::open(input, rows_per_chunk)?), key_column: None }),
            (None, Some(meds), Some(at)) => {
                let attributes = coded_groupings(pkg, by);
                Ok(Read { source: Box::new(Shards::open(meds, pkg, at, &attributes)?), key_column: Some(SUBJECT) })
            }
            _ => unreachable!("clap requires --input, or --meds with --at"),
        }
    }
}

/// The model and the table both verbs score, and the audit trail the scores go to.
#[derive(Args)]
struct Table {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
    /// Default: the promoted version.
    #[arg(long)]
    version: Option<String>,
    /// Column with a pseudonymous patient key, checked on every row and kept in the audit trail
    /// (and in batch scores; never in a summary).
    #[arg(long)]
    key_column: Option<String>,
    /// Audit trail: an append-only journal file, or a PostgreSQL connection string
    /// (`postgresql://user:password@host/db`: set CARECAST_AUDIT to keep the password off the
    /// command line); default `<registry>/audit.jsonl`.
    #[arg(long, env = "CARECAST_AUDIT")]
    audit: Option<String>,
    /// Also audit every row's score (key, probability, band); the run itself is always audited
    /// once (input and output SHA-256, rows scored and refused).
    #[arg(long)]
    audit_rows: bool,
}

impl Table {
    fn open(self, registry: &Registry) -> anyhow::Result<Opened> {
        let pkg = ModelStore::new(registry.clone()).get(&self.model, self.version.as_deref())?;
        let audit = AuditLog::open_at(&audit_location(registry, self.audit))?;
        Ok(Opened { pkg, audit, key_column: self.key_column, audit_rows: self.audit_rows })
    }
}

/// A verb's model loaded, its audit trail open, and the table it reads.
struct Opened {
    pkg: std::sync::Arc<carecast_models::ModelPackage>,
    audit: AuditLog,
    key_column: Option<String>,
    audit_rows: bool,
}

/// Summarise a whole register by groups (risk bands, expected cases, factor burden), with small
/// numbers suppressed.
#[derive(Args)]
#[command(after_help = "Example:
  carecast population --model support2_hospdead-gbm --input data/support2.csv \\
      --by dzgroup --by age=65,80 --outcome hospdead --scenario 'meanbp>=70' --output summary

  carecast population --model synth_dementia_5y-gbm --meds synth --at 2026-12-01 --by age=65,75,85 --output runs/q4

Writes summary.parquet, summary.csv (suppressed counts as *), summary.json (the model, the
total row's protected counts, the scenario and the disclosure rule) and the report summary.html.")]
pub struct Population {
    #[command(flatten)]
    table: Table,
    #[command(flatten)]
    register: Register,
    /// A column to group by, or a numeric column cut into bands (`age=65,80`: under 65, 65 to
    /// under 80, 80 and over); repeat for a cross-classification.
    #[arg(long, required = true)]
    by: Vec<Grouping>,
    /// A column of observed outcomes (1 / 0, true / false; empty when not known), counted per group.
    #[arg(long)]
    outcome: Option<String>,
    /// Where the summary goes: `<output>.parquet`, `.csv` and `.json`.
    #[arg(long)]
    output: PathBuf,
    /// Counts from 1 to this are suppressed (NHS England's statistical disclosure guidance: 7).
    #[arg(long, default_value_t = Disclosure::default().suppress_up_to)]
    suppress_up_to: u64,
    /// Counts are rounded to the nearest multiple of this (1: unrounded).
    #[arg(long, default_value_t = Disclosure::default().round_to)]
    round_to: u64,
    /// A change to a modifiable input for a scenario (`meanbp<=100`, `age>=50`, `diabetes=0`);
    /// repeat for several: each group's expected cases are also given with the changes made (a
    /// model-based association, not a causal effect).
    #[arg(long)]
    scenario: Vec<Change>,
}

pub fn population(registry: &Registry, args: Population) -> anyhow::Result<()> {
    crate::allocator::keep_freed_memory();
    let Opened { pkg, audit, key_column, audit_rows } = args.table.open(registry)?;
    let read = args.register.open(&pkg, carecast_tables::chunks::DEFAULT_ROWS, &args.by)?;
    let options = PopulationOptions {
        by: args.by,
        outcome: args.outcome,
        key_column: read.key_column.map(str::to_string).or(key_column),
        disclosure: Disclosure { suppress_up_to: args.suppress_up_to, round_to: args.round_to },
        scenario: args.scenario,
        audit_rows,
    };
    let summary = summarise_source(&pkg, &*read.source, &options)?;
    summary.publish(&args.output, &pkg, &audit)?;
    // What is printed is what is published: the total row's protected counts.
    let total = summary.groups.last().expect("the total row");
    println!(
        "{} v{}: {} people in {} groups ({} not scored); {}.parquet, .csv, .json and .html (the report) written",
        summary.model,
        summary.version,
        shown(total.people),
        summary.groups.len() - 1,
        shown(total.not_scored),
        args.output.display()
    );
    if summary.not_scored > 0 {
        println!(
            "Rows not scored are counted per group as not_scored: `carecast score` names each row's field and reason."
        );
    }
    println!("Disclosure control: {}.", summary.rule);
    Ok(())
}

pub fn score(registry: &Registry, args: Score) -> anyhow::Result<()> {
    crate::allocator::keep_freed_memory();
    let Opened { pkg, audit, key_column, audit_rows } = args.table.open(registry)?;
    let errors = args.errors.unwrap_or_else(|| args.output.with_extension("errors.csv"));
    let read = args.register.open(&pkg, args.rows_per_chunk, &[])?;
    let options = BatchOptions {
        key_column: read.key_column.map(str::to_string).or(key_column),
        top: args.top,
        rows_per_chunk: args.rows_per_chunk,
        resume: args.resume,
        audit_rows,
        contributions: args.contributions,
    };
    let progress = progress::bar("Scoring", "people");
    let report = batch::score_source(&pkg, &*read.source, &args.output, &errors, &options, &audit, &progress)?;
    progress.finish_and_clear();
    println!(
        "{} v{}: scored {} of {} rows into {}",
        pkg.manifest.name,
        pkg.manifest.version,
        report.scored,
        report.rows,
        args.output.display()
    );
    if report.resumed > 0 {
        println!("continued an interrupted run: {} of {} chunks were already done", report.resumed, report.chunks);
    }
    if !report.errors.is_empty() {
        println!("{} row(s) refused; see {}", report.errors.len(), errors.display());
    }
    println!("Audited once as a batch run (input and output SHA-256, rows scored and refused).");
    Ok(())
}
