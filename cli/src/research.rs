//! The researcher's verbs: train, import a model trained elsewhere, evaluate, recalibrate.

use crate::bundled;
use anyhow::Context;
use carecast_models::Registry;
use carecast_serving::ModelStore;
use carecast_training::dataset::Rows;
use carecast_training::fit::calibrate;
use carecast_training::import::{Format, import_model};
use carecast_training::pipeline::{EvaluationData, evaluate_package, recalibrate_package, train_set};
use carecast_training::{Algorithm, TaskSpec, TrainOptions, TrainReport, card, cohort};
use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// Train, evaluate on the task's test split, and publish a model package.
#[derive(Args)]
#[command(after_help = "Examples:
  carecast train --task support2_hospdead --model gbm
  carecast train --task synth_dementia_5y.toml --meds synth/ --features synth_dementia_features.toml --model hazard")]
pub struct Train {
    /// A bundled task (support2_hospdead, support2_dementia) or a task spec TOML file; with
    /// --meds, an event task spec TOML file.
    #[arg(long)]
    task: String,
    /// The task's data (CSV or Parquet); default: the bundled file the task names.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Train on a MEDS dataset (its held_out split is the test split) instead of a flat table.
    #[arg(long, requires = "features", conflicts_with = "data")]
    meds: Option<PathBuf>,
    /// Feature spec TOML for --meds.
    #[arg(long, requires = "meds")]
    features: Option<PathBuf>,
    /// The model to fit.
    #[arg(long, value_enum, default_value = "all")]
    model: ModelChoice,
    /// Calibration fitted on the tuning split (the model is then fitted on the other rows).
    #[arg(long, value_enum, default_value = "none")]
    calibration: calibrate::Method,
    /// GBM, MLP and GRU: weight of each positive row relative to a negative one; use with calibration.
    #[arg(long, default_value_t = 1.0)]
    positive_weight: f64,
    /// Package name; default `<task>-<model>`.
    #[arg(long)]
    name: Option<String>,
}

/// `--model`: one of the library's algorithms, or all of those fitted by default.
#[derive(Clone, Copy)]
enum ModelChoice {
    One(Algorithm),
    All,
}

/// The library's algorithms as they are (names and help from [`Algorithm`]), and `all`.
impl ValueEnum for ModelChoice {
    fn value_variants<'a>() -> &'a [Self] {
        static CHOICES: LazyLock<Vec<ModelChoice>> = LazyLock::new(|| {
            Algorithm::value_variants().iter().map(|&a| ModelChoice::One(a)).chain([ModelChoice::All]).collect()
        });
        &CHOICES
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            ModelChoice::One(a) => a.to_possible_value(),
            ModelChoice::All => Some(PossibleValue::new("all").help("Every model that needs no event sequence")),
        }
    }
}

impl Train {
    /// The fits asked for, checked before any data is read; a custom `--name` fits only one.
    /// With every model, `--positive-weight` weights those that weight rows and the others are
    /// fitted unweighted, as the report says; a single model that cannot weight refuses it.
    fn fits(&self) -> anyhow::Result<Vec<TrainOptions>> {
        let algorithms = match self.model {
            ModelChoice::One(a) => vec![a],
            ModelChoice::All => Algorithm::DEFAULT_SET.to_vec(),
        };
        anyhow::ensure!(self.name.is_none() || algorithms.len() == 1, "--name needs a single --model");
        let every = matches!(self.model, ModelChoice::All);
        let fits: Vec<TrainOptions> = algorithms
            .into_iter()
            .map(|algorithm| TrainOptions {
                algorithm,
                calibration: self.calibration,
                positive_weight: if every && !algorithm.weights_rows() { 1.0 } else { self.positive_weight },
            })
            .collect();
        for options in &fits {
            options.validate().map_err(|e| anyhow::anyhow!("--{e}"))?;
        }
        if every && self.positive_weight != 1.0 {
            let unweighted: Vec<&str> =
                fits.iter().filter(|f| !f.algorithm.weights_rows()).map(|f| f.algorithm.short_name()).collect();
            eprintln!("--positive-weight {}: fitted unweighted: {}", self.positive_weight, unweighted.join(", "));
        }
        Ok(fits)
    }
}

pub fn train(registry: &Registry, args: Train) -> anyhow::Result<()> {
    let fits = args.fits()?;
    let name = args.name.as_deref();
    match (&args.meds, &args.features) {
        (Some(meds), Some(features)) => {
            let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("{}", p.display()));
            let set =
                cohort::event_training_set(meds, &read(Path::new(&args.task))?, &read(features)?, Rows::TaskSplit)?;
            each_fit(&fits, |options| train_set(&set, registry, options, name)).map(drop)
        }
        _ => train_flat(registry, &args.task, args.data, &fits, name).map(drop),
    }
}

/// Trains each fit on a flat-table task and prints its report.
pub fn train_flat(
    registry: &Registry,
    task: &str,
    data: Option<PathBuf>,
    fits: &[TrainOptions],
    name: Option<&str>,
) -> anyhow::Result<Vec<TrainReport>> {
    let (spec, toml) = TaskSpec::load(task)?;
    let data = match data {
        Some(d) => d,
        None => bundled::path(&spec.data)?,
    };
    each_fit(fits, |options| carecast_training::train(&spec, &toml, &data, registry, options, name))
}

/// Fits each model in turn, with progress over them, and prints each one's report.
fn each_fit(
    fits: &[TrainOptions],
    mut fit: impl FnMut(TrainOptions) -> anyhow::Result<TrainReport>,
) -> anyhow::Result<Vec<TrainReport>> {
    let progress = crate::progress::bar("Training", "models");
    progress.set_length(fits.len() as u64);
    let reports = fits
        .iter()
        .map(|&options| {
            progress.set_message(format!("Training {}", options.algorithm.short_name()));
            let report = fit(options)?;
            progress.suspend(|| print_report(&report));
            progress.inc(1);
            Ok(report)
        })
        .collect();
    progress.finish_and_clear();
    reports
}

fn print_report(r: &TrainReport) {
    let m = &r.test;
    println!(
        "{} v{}: test n={} prevalence {:.3} | AUROC {:.3} (95% CI {:.3}-{:.3}) AUPRC {:.3} Brier {:.3} | calibration slope {:.2} intercept {:+.2} | max additivity error {:.1e}",
        r.name,
        r.version,
        m.n,
        m.prevalence,
        m.auroc,
        m.auroc_ci_lower,
        m.auroc_ci_upper,
        m.auprc,
        m.brier,
        m.calibration_slope,
        m.calibration_intercept,
        r.max_additivity_error
    );
    for (reason, count) in &r.excluded_rows {
        println!("  excluded {count} row(s): {reason}");
    }
    println!("  {}", r.promotion);
}

/// Import a tree model trained elsewhere (XGBoost JSON or LightGBM text) into a task: its
/// columns matched to the task's features by name, evaluated on the task's test split, and
/// published with its model card, to be served like a trained model.
#[derive(Args)]
#[command(after_help = "Example:
  carecast import --file model.json --format xgboost --task support2_hospdead")]
pub struct Import {
    /// The model file.
    #[arg(long)]
    file: PathBuf,
    /// The library that wrote it.
    #[arg(long, value_enum)]
    format: Format,
    /// A bundled task or a task spec TOML file (outcome, split, risk bands, feature names).
    #[arg(long)]
    task: String,
    /// The task's data (CSV or Parquet); default: the bundled file the task names.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Package name; default `<task>-imported`.
    #[arg(long)]
    name: Option<String>,
}

pub fn import(registry: &Registry, args: Import) -> anyhow::Result<()> {
    let (spec, _) = TaskSpec::load(&args.task)?;
    let data = match args.data {
        Some(d) => d,
        None => bundled::path(&spec.data)?,
    };
    let r = import_model(&spec, &data, registry, &args.file, args.format, args.name.as_deref())?;
    println!(
        "{} v{}: {} trees imported; test AUROC {:.3}; largest additivity error {:.1e}; {}",
        r.name, r.version, r.trees, r.auroc, r.max_additivity_error, r.promotion
    );
    Ok(())
}

/// Evaluate a published model (TRIPOD+AI report: metrics.json and a model card in Markdown and
/// HTML): on its task's test split, or with --all-rows on another site's data.
#[derive(Args)]
#[command(after_help = "Examples:
  carecast evaluate --model support2_hospdead-gbm
  carecast evaluate --model support2_hospdead-gbm --data other_site.csv --all-rows")]
pub struct Evaluate {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
    /// Default: the promoted version.
    #[arg(long)]
    version: Option<String>,
    /// The task's table (flat tasks); default: the bundled file the task names.
    #[arg(long, conflicts_with = "meds")]
    data: Option<PathBuf>,
    /// A MEDS dataset (event tasks).
    #[arg(long)]
    meds: Option<PathBuf>,
    /// Evaluate every row, ignoring the split (external validation on a new site's data).
    #[arg(long)]
    all_rows: bool,
    /// Output directory; default `evaluation/<model>-v<version>`.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn evaluate(registry: &Registry, args: Evaluate) -> anyhow::Result<()> {
    let pkg = ModelStore::new(registry.clone()).get(&args.model, args.version.as_deref())?;
    let rows = if args.all_rows { Rows::All } else { Rows::TaskSplit };
    let table;
    let source = match &args.meds {
        Some(m) => EvaluationData::Meds(m),
        None => {
            table = match args.data {
                Some(d) => d,
                None => {
                    bundled::path(&TaskSpec::from_toml(&std::fs::read_to_string(pkg.dir.join("task.toml"))?)?.data)?
                }
            };
            EvaluationData::Table(&table)
        }
    };
    let metrics = evaluate_package(&pkg, source, rows)?;
    let out = args.output.unwrap_or_else(|| {
        PathBuf::from("evaluation").join(format!("{}-v{}", pkg.manifest.name, pkg.manifest.version))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
    std::fs::write(out.join("metrics.json"), serde_json::to_vec_pretty(&metrics)?)?;
    std::fs::write(out.join(card::MARKDOWN), card::markdown(&pkg.manifest, &metrics))?;
    std::fs::write(out.join(card::HTML), card::html(&pkg.manifest, &metrics))?;
    let m = &metrics.report.metrics;
    println!(
        "{} v{} on {}: n={} AUROC {:.3} ({:.3}-{:.3}) Brier {:.4} slope {:.2} intercept {:+.2} ICI {:.4}; report in {}",
        pkg.manifest.name,
        pkg.manifest.version,
        metrics.split,
        m.n,
        m.auroc,
        m.auroc_ci_lower,
        m.auroc_ci_upper,
        m.brier,
        m.calibration_slope,
        m.calibration_intercept,
        metrics.report.ici,
        out.display()
    );
    Ok(())
}

/// Recalibrate a model in the large for a new site: shift its log-odds so that its mean risk
/// matches the site's observed rate, and publish the result as a new version, promoted once it
/// passes its gates on the site's rows.
#[derive(Args)]
#[command(after_help = "Example:
  carecast recalibrate --model support2_hospdead-gbm --data new_site.csv")]
pub struct Recalibrate {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
    /// Default: the promoted version.
    #[arg(long)]
    version: Option<String>,
    /// The site's table (flat tasks); every row is used.
    #[arg(long, conflicts_with = "meds", required_unless_present = "meds")]
    data: Option<PathBuf>,
    /// The site's MEDS dataset (event tasks); every labelled row is used.
    #[arg(long)]
    meds: Option<PathBuf>,
}

pub fn recalibrate(registry: &Registry, args: Recalibrate) -> anyhow::Result<()> {
    let pkg = ModelStore::new(registry.clone()).get(&args.model, args.version.as_deref())?;
    let source = match (&args.data, &args.meds) {
        (Some(d), _) => EvaluationData::Table(d),
        (None, Some(m)) => EvaluationData::Meds(m),
        (None, None) => anyhow::bail!("give --data or --meds"),
    };
    let r = recalibrate_package(&pkg, source, Rows::All, registry)?;
    println!(
        "{} v{} shifted by {:+.3} log-odds on {} rows: published as v{}, {}",
        pkg.manifest.name, pkg.manifest.version, r.shift, r.metrics.report.metrics.n, r.version, r.promotion
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        train: Train,
    }

    fn fits(args: &str) -> anyhow::Result<Vec<TrainOptions>> {
        Command::try_parse_from(format!("train --task t {args}").split_whitespace())?.train.fits()
    }

    #[test]
    fn a_positive_weight_weights_the_models_that_can_and_a_single_one_that_cannot_refuses_it() {
        let every = fits("--positive-weight 3").unwrap();
        assert_eq!(every.len(), Algorithm::DEFAULT_SET.len());
        for f in &every {
            let expected = if f.algorithm.weights_rows() { 3.0 } else { 1.0 };
            assert_eq!(f.positive_weight, expected, "{:?}", f.algorithm);
        }
        let refused = fits("--model lasso --positive-weight 3").unwrap_err().to_string();
        assert!(refused.starts_with("--positive-weight:") && refused.contains("lasso"), "{refused}");
        assert!(fits("--positive-weight=-1").unwrap_err().to_string().starts_with("--positive-weight:"));
    }
}
