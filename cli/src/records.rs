//! Records in: ingest de-identified records into MEDS, draw a synthetic population, label a
//! MEDS dataset with an event task.

use anyhow::Context;
use carecast_training::cohort;
use carecast_training::ingest::privacy::Privacy;
use carecast_training::ingest::{flat, meds, omop};
use clap::Args;
use std::path::PathBuf;

/// Read de-identified records (MEDS, OMOP or a flat table with a column mapping), check them,
/// apply pseudonyms, year-and-month birth dates and the opt-out list, and write a MEDS dataset.
#[derive(Args)]
#[command(after_help = "Examples:
  carecast ingest --input ../shared/data/pbc2.csv --mapping pbc2 --output pbc2_meds --key-file pseudonym.key
  carecast ingest --input omop_extract/ --output meds/ --opt-out national_opt_out.txt")]
pub struct Ingest {
    /// A MEDS dataset directory, an OMOP CDM directory (with a person table), or a CSV /
    /// Parquet table with --mapping.
    #[arg(long)]
    input: PathBuf,
    /// Column mapping for a flat table: a bundled one (pbc2) or a TOML file.
    #[arg(long)]
    mapping: Option<String>,
    /// Output MEDS dataset directory.
    #[arg(long)]
    output: PathBuf,
    /// File holding the secret pseudonymisation key; without it, subject ids are kept as they are.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// National data opt-out list: source subject ids, one per line.
    #[arg(long)]
    opt_out: Option<PathBuf>,
}

pub fn ingest(args: Ingest) -> anyhow::Result<()> {
    let input = &args.input;
    let progress = crate::progress::bar("Reading", "steps");
    progress.set_length(3);
    let is_omop = ["person.csv", "person.parquet"].iter().any(|f| input.join(f).exists());
    let (store, splits, mut report) = match &args.mapping {
        Some(m) => {
            let f = flat::read_flat(input, &flat::FlatMapping::load(m)?)?;
            (f.store, f.splits, f.report)
        }
        None if is_omop => {
            let (store, report) = omop::read_omop(input)?;
            (store, Default::default(), report)
        }
        None => meds::read_meds(input)?,
    };
    let key = args.key_file.map(|k| std::fs::read(&k).with_context(|| format!("{}", k.display()))).transpose()?;
    let opt_out = match args.opt_out {
        Some(path) => std::fs::read_to_string(&path)
            .with_context(|| format!("{}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| l.parse::<i64>().with_context(|| format!("{}: `{l}` is not a subject id", path.display())))
            .collect::<anyhow::Result<_>>()?,
        None => Default::default(),
    };
    let pseudonymised = key.is_some();
    progress.inc(1);
    progress.set_message("De-identifying");
    let (store, splits) = Privacy { key, opt_out }.apply(&store, &splits, &mut report)?;
    progress.inc(1);
    progress.set_message("Writing MEDS");
    meds::write_meds(&store, &splits, &args.output, &input.display().to_string())?;
    progress.finish_and_clear();
    println!(
        "{}: {} rows read, {} subjects and {} events written to {}{}",
        input.display(),
        report.rows_read,
        store.n_patients(),
        report.events,
        args.output.display(),
        if pseudonymised { " (pseudonymised)" } else { "" }
    );
    for (reason, n) in &report.dropped {
        let first = report.first_row.get(reason).map(|r| format!(" (first at row {r})")).unwrap_or_default();
        println!("  left out {n}: {reason}{first}");
    }
    Ok(())
}

/// Write a synthetic population (MEDS, with each patient's true risk in truth.parquet).
#[derive(Args)]
#[command(after_help = "Example:
  carecast synth --patients 20000 --seed 42 --output synth")]
pub struct Synth {
    /// How many patients to draw.
    #[arg(long, default_value_t = 50_000)]
    patients: usize,
    /// The random seed: the same seed draws the same population.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output MEDS dataset directory.
    #[arg(long)]
    output: PathBuf,
    /// Patients per MEDS data shard: bounds memory for populations of millions.
    #[arg(long, default_value_t = 250_000)]
    shard_size: usize,
}

pub fn synth(args: Synth) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let progress = crate::progress::bar("Drawing", "patients");
    let (events, onsets, observations, deteriorations) =
        carecast_training::synth::write_population(args.patients, args.seed, args.shard_size, &args.output, &progress)?;
    progress.finish_and_clear();
    println!(
        "{} patients, {events} events, {onsets} dementia onsets within 5 years, {observations} inpatient observations, {deteriorations} deteriorations, written to {} in {:.1?}",
        args.patients,
        args.output.display(),
        started.elapsed()
    );
    Ok(())
}

/// Label a MEDS dataset with an event task spec (TOML), writing MEDS labels (Parquet).
#[derive(Args)]
#[command(after_help = "Example:
  carecast labels --meds synth --task training/tasks/synth_dementia_5y.toml --output labels.parquet")]
pub struct Labels {
    /// The MEDS dataset directory.
    #[arg(long)]
    meds: PathBuf,
    /// The event task spec (TOML): outcome codes, prediction times, horizon.
    #[arg(long)]
    task: PathBuf,
    /// Where the labels go (Parquet).
    #[arg(long)]
    output: PathBuf,
}

pub fn labels(args: Labels) -> anyhow::Result<()> {
    let task = &args.task;
    let spec: cohort::EventTaskSpec =
        toml::from_str(&std::fs::read_to_string(task).with_context(|| format!("{}", task.display()))?)
            .with_context(|| format!("{}", task.display()))?;
    let (store, _, _) = meds::read_meds(&args.meds)?;
    let (labels, excluded) = cohort::label(&store, &spec)?;
    cohort::write_labels(&labels, &args.output)?;
    let positives = labels.iter().filter(|l| l.value).count();
    println!(
        "{}: {} prediction times, {positives} positive, written to {}",
        spec.name,
        labels.len(),
        args.output.display()
    );
    for (reason, n) in &excluded {
        println!("  left out {n}: {reason}");
    }
    Ok(())
}
