//! `carecast train`: task data → split → preprocessing → fit → evaluation → published package.
//! Rows are encoded for fitting by the same `Preprocessor::encode` the server uses, and the test
//! split is scored through the same `Scorer`, so reported metrics are the served model's.

use crate::card;
use crate::dataset::{Baseline, CompetingEvents, MetricsFile, Rows, TaskData, TrainingSet, TrainingSummary, key_hash};
use crate::evaluate::{Report, SubgroupAssignment, report, time_dependent_auroc};
use crate::fit::selection::{ModelSelection, Recalibration};
pub use crate::fit::{Algorithm, TrainOptions};
use crate::fit::{Encoded, preprocessor_training::fit_preprocessor};
use crate::gates::{PromotionGates, Validation};
use crate::subgroups::{assign_from_column, default_subgroups};
use crate::task::TaskSpec;
use carecast_models::drift::Reference;
use carecast_models::load_package;
use carecast_models::package::{Manifest, Metrics, ModelPackage, TaskInfo, TrainingData, sha256_hex, write_package};
use carecast_models::preprocess::{Encoding, Preprocessor};
use carecast_models::registry::GateReport;
use carecast_models::{
    FeatureKind, FeatureSpec, ModelDefinition, Monotone, Registry, RiskBands, Scorer, Value, Workspace,
};
use carecast_tables::{FeatureColumn, feature_columns, read_table, row_values, text_column};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Reads the task's table and sorts every row into train, test or a counted exclusion.
pub fn load_task_data(task: &TaskSpec, path: &Path, rows: Rows) -> anyhow::Result<TaskData> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let df = read_table(path)?;
    let columns = feature_columns(&df, &task.features)?;
    let keys = text_column(&df, &task.key)?;
    let splits = match rows {
        Rows::TaskSplit => text_column(&df, &task.split.column)?,
        Rows::All => vec![Some(task.split.test.clone()); df.height()],
    };
    let labels = text_column(&df, &task.label)?;
    let mut data = TaskData {
        columns,
        labels: Vec::with_capacity(df.height()),
        key_hash: Vec::with_capacity(df.height()),
        train_rows: Vec::new(),
        test_rows: Vec::new(),
        excluded: BTreeMap::new(),
        source: path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
        sha256: sha256_hex(&bytes),
        subgroups: Vec::new(),
        baseline: None,
        follow_up: Vec::new(),
        censored_rows: Vec::new(),
        competing_codes: Vec::new(),
    };
    // Subgroup and baseline columns may be features or other columns of the table (e.g. sex
    // reported for fairness without being a predictor).
    let column = |name: &str, kind: FeatureKind| -> anyhow::Result<FeatureColumn> {
        match task.features.iter().position(|f| f.name == name) {
            Some(i) => Ok(data.columns[i].clone()),
            None => Ok(FeatureColumn::read(&df, &FeatureSpec::plain(name, kind))?),
        }
    };
    let names: Vec<&str> = task.features.iter().map(|f| f.name.as_str()).collect();
    let specs = if task.subgroups.is_empty() { default_subgroups(&names) } else { task.subgroups.clone() };
    for g in &specs {
        let kind = if g.cuts.is_empty() { FeatureKind::Categorical } else { FeatureKind::Numeric };
        data.subgroups.push(assign_from_column(g, &column(g.feature.as_deref().expect("validated"), kind)?)?);
    }
    if let Some(name) = &task.baseline {
        data.baseline = Some(Baseline::from_column(name, &column(name, FeatureKind::Numeric)?)?);
    }
    for r in 0..df.height() {
        let label = match labels[r].as_deref().map(str::trim) {
            Some("1") | Some("1.0") | Some("true") => Some(true),
            Some("0") | Some("0.0") | Some("false") => Some(false),
            _ => None,
        };
        data.labels.push(label.unwrap_or(false));
        data.key_hash.push(keys[r].as_deref().map_or(0, key_hash));
        let reason = if label.is_none() {
            Some(format!("label `{}` missing or not 0/1", task.label))
        } else if keys[r].is_none() {
            Some(format!("key `{}` missing", task.key))
        } else if let Err(e) = row_values(&data.columns, r) {
            Some(e.to_string())
        } else {
            None
        };
        let split = splits[r].as_deref();
        match (reason, split) {
            (Some(reason), _) => *data.excluded.entry(reason).or_default() += 1,
            (None, Some(s)) if s == task.split.train => data.train_rows.push(r),
            (None, Some(s)) if s == task.split.test => data.test_rows.push(r),
            (None, _) => {
                *data.excluded.entry(format!("split `{}` neither train nor test", task.split.column)).or_default() += 1
            }
        }
    }
    anyhow::ensure!(!data.test_rows.is_empty(), "task `{}`: no rows to evaluate", task.name);
    anyhow::ensure!(rows == Rows::All || !data.train_rows.is_empty(), "task `{}` has an empty train split", task.name);
    Ok(data)
}

/// Encodes rows through the model's own preprocessing; rows it refuses are counted, not fitted.
fn encode_rows(pre: &Preprocessor, data: &TaskData, rows: &[usize], excluded: &mut BTreeMap<String, usize>) -> Encoded {
    let mut out = Encoded {
        x: Vec::with_capacity(rows.len() * pre.n_columns()),
        n_cols: pre.n_columns(),
        y: Vec::new(),
        key_hash: Vec::new(),
        follow_up: Vec::new(),
    };
    let (mut buf, mut warnings) = (Vec::new(), Vec::new());
    for &r in rows {
        let values = row_values(&data.columns, r).expect("checked on load");
        match pre.encode(&values, &mut buf, &mut warnings) {
            Ok(()) => {
                out.x.extend_from_slice(&buf);
                out.y.push(data.labels[r]);
                out.key_hash.push(data.key_hash[r]);
                if let Some(&f) = data.follow_up.get(r) {
                    out.follow_up.push(f);
                }
            }
            Err(e) => *excluded.entry(e.to_string()).or_default() += 1,
        }
        warnings.clear();
    }
    out
}

/// What `train` did, for the command line and the package's `metrics.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub name: String,
    pub version: String,
    pub options: TrainOptions,
    pub test: Metrics,
    /// Largest |base + sum of contributions - margin| over the test rows.
    pub max_additivity_error: f64,
    pub train_rows: usize,
    pub test_rows: usize,
    pub excluded_rows: BTreeMap<String, usize>,
    /// How hyper-parameters were chosen (cross-validated penalty, early-stopped rounds).
    pub model_selection: ModelSelection,
    /// Whether the new version is served: the first is; a later one once past its gates.
    pub promotion: Promotion,
}

/// A model evaluated on a set of rows through the served code path.
pub struct Evaluation {
    pub report: Report,
    /// Largest |base + sum of contributions - margin| over the rows.
    pub max_additivity_error: f64,
    /// Rows the model refused (e.g. a category unseen in training), which cannot be scored.
    pub refused: usize,
    /// Distinct patients among the evaluated rows (fewer than rows when patients repeat).
    pub patients: u64,
}

/// Scores `rows` of `data` through the served code path and evaluates them at `thresholds`, by
/// subgroup, and against the data's baseline score.
pub fn evaluate_rows(scorer: &Scorer, data: &TaskData, rows: &[usize], thresholds: &[f64]) -> Evaluation {
    evaluate_columns(scorer, &data.columns, data, rows, thresholds)
}

/// [`evaluate_rows`] with the model's inputs read from `columns` (in its feature order) rather
/// than the data's own: another version's inputs among the same rows.
pub(crate) fn evaluate_columns(
    scorer: &Scorer,
    columns: &[FeatureColumn],
    data: &TaskData,
    rows: &[usize],
    thresholds: &[f64],
) -> Evaluation {
    // Every row explained as served, on every core: explanations by integrated gradients (the
    // GRU's) cost more than the fit on test sets of thousands.
    let scored: Vec<Option<(f64, f64)>> = rows
        .par_iter()
        .map_init(Workspace::default, |ws, &r| {
            let values: Vec<Value<'_>> = row_values(columns, r).expect("checked on load");
            scorer.score(&values, ws).ok().map(|score| (score.probability, score.additivity_error))
        })
        .collect();
    let (mut kept, mut y, mut p, mut max_err) = (Vec::new(), Vec::new(), Vec::new(), 0.0f64);
    for (&r, score) in rows.iter().zip(scored) {
        if let Some((probability, additivity_error)) = score {
            kept.push(r);
            y.push(data.labels[r]);
            p.push(probability);
            max_err = max_err.max(additivity_error);
        }
    }
    let subgroups: Vec<SubgroupAssignment> = data
        .subgroups
        .iter()
        .map(|a| SubgroupAssignment { of_row: kept.iter().map(|&r| a.of_row[r]).collect(), ..a.clone() })
        .collect();
    let baseline: Option<Vec<f64>> = data.baseline.as_ref().map(|b| kept.iter().map(|&r| b.score[r]).collect());
    let baseline = data.baseline.as_ref().zip(baseline.as_deref()).map(|(b, s)| (b.name.as_str(), s));
    let patients = kept.iter().map(|&r| data.key_hash[r]).collect::<std::collections::HashSet<_>>().len() as u64;
    let mut report = report(&y, &p, thresholds, &subgroups, baseline);
    // Event data: discrimination at the end of each of the hazard model's intervals.
    if !data.follow_up.is_empty() {
        let follow_up: Vec<_> = kept.iter().map(|&r| data.follow_up[r]).collect();
        let intervals = crate::fit::hazard::INTERVALS;
        report.time_dependent_auroc =
            (1..=intervals).map(|k| time_dependent_auroc(&follow_up, &p, k as f64 / intervals as f64)).collect();
    }
    Evaluation { report, max_additivity_error: max_err, refused: rows.len() - kept.len(), patients }
}

/// How each encoding handles missing values, in the model card's words.
fn missing_handling(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Standardised => {
            "Missing numeric values are replaced by the training median, with a missing-indicator column wherever training data had missing values (and always for the steps of an event sequence); a missing category has its own column."
        }
        Encoding::Native => {
            "Missing values are kept missing: each tree split learned from the training data which way missing values go."
        }
        Encoding::Stacked => {
            "The stack's tree member keeps missing values missing (each split learned which way they go); its other members replace a missing numeric value by the training median, with a missing-indicator column wherever training data had missing values; a missing category has its own column."
        }
    }
}

/// What the model was fitted from; `constrained` says the features' monotone constraints were
/// imposed in fitting (our GBM), so the card may state them.
pub(crate) fn training_summary(pre: &Preprocessor, data: &TaskData, constrained: bool) -> TrainingSummary {
    let n = data.train_rows.len().max(1) as f64;
    TrainingSummary {
        train_rows: data.train_rows.len() as u64,
        train_events: data.train_rows.iter().filter(|&&r| data.labels[r]).count() as u64,
        encoded_columns: pre.n_columns() as u64,
        missing_share: data
            .columns
            .iter()
            .map(|c| data.train_rows.iter().filter(|&&r| matches!(c.value(r), Ok(Value::Missing))).count() as f64 / n)
            .collect(),
        missing_handling: missing_handling(pre.encoding).to_string(),
        monotone: if constrained {
            pre.features
                .iter()
                .filter_map(|f| {
                    let direction = match f.spec.monotone? {
                        Monotone::Increasing => "risk never falls as it rises",
                        Monotone::Decreasing => "risk never rises as it rises",
                    };
                    Some(format!("{} ({direction})", f.spec.display_name()))
                })
                .collect()
        } else {
            Vec::new()
        },
        competing_events: (!data.competing_codes.is_empty()).then(|| CompetingEvents {
            codes: data.competing_codes.clone(),
            train_rows_ended: data
                .train_rows
                .iter()
                .filter(|&&r| data.follow_up.get(r).is_some_and(|f| f.1 == crate::fit::Ending::Competing))
                .count() as u64,
        }),
    }
}

/// Trains, evaluates and publishes one model for a flat-table task; returns the report.
pub fn train(
    task: &TaskSpec,
    task_toml: &str,
    data_path: &Path,
    registry: &Registry,
    options: impl Into<TrainOptions>,
    name: Option<&str>,
) -> anyhow::Result<TrainReport> {
    let set = TrainingSet {
        task: TaskInfo {
            name: task.name.clone(),
            description: task.description.clone(),
            outcome: task.outcome.clone(),
        },
        features: task.features.clone(),
        risk_bands: task.risk_bands,
        promotion: task.promotion,
        data: load_task_data(task, data_path, Rows::TaskSplit)?,
        spec_files: vec![("task.toml", task_toml.as_bytes().to_vec())],
    };
    train_set(&set, registry, options, name)
}

/// Trains, evaluates and publishes one model from a training set; returns the report.
pub fn train_set(
    set: &TrainingSet,
    registry: &Registry,
    options: impl Into<TrainOptions>,
    name: Option<&str>,
) -> anyhow::Result<TrainReport> {
    let options: TrainOptions = options.into();
    let algorithm = options.algorithm;
    let data = &set.data;
    let mut excluded = data.excluded.clone();
    let preprocessor = fit_preprocessor(&set.features, &data.columns, &data.train_rows, algorithm.encoding())?;
    // Time-to-event models also learn from training rows censored within the horizon.
    let rows = if algorithm.uses_censored_rows() {
        [data.train_rows.as_slice(), &data.censored_rows].concat()
    } else {
        if !data.censored_rows.is_empty() {
            *excluded.entry(format!("{} (kept for time-to-event models)", crate::cohort::CENSORED)).or_default() +=
                data.censored_rows.len();
        }
        data.train_rows.clone()
    };
    let encoded = encode_rows(&preprocessor, data, &rows, &mut excluded);
    let fitted = crate::fit::fit(&options, &preprocessor, &encoded)?;
    let definition = ModelDefinition {
        preprocessor,
        estimator: fitted.estimator,
        risk_bands: set.risk_bands,
        calibration: fitted.calibration,
    };
    let name = name.map_or_else(|| format!("{}-{}", set.task.name, algorithm.short_name()), str::to_string);
    let training = training_summary(&definition.preprocessor, data, algorithm == Algorithm::Gbm);
    let published =
        evaluate_and_publish(set, registry, &definition, &name, fitted.selection.clone(), excluded.clone(), training)?;
    Ok(TrainReport {
        name,
        version: published.version,
        options,
        test: published.test,
        max_additivity_error: published.max_additivity_error,
        train_rows: data.train_rows.len(),
        test_rows: data.test_rows.len(),
        excluded_rows: excluded,
        model_selection: fitted.selection,
        promotion: published.promotion,
    })
}

/// A model published: its version, how it did on the test split, and whether it is served.
pub(crate) struct Published {
    pub version: String,
    pub test: Metrics,
    pub max_additivity_error: f64,
    pub promotion: Promotion,
}

/// What became of a newly published version.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", content = "gates", rename_all = "snake_case")]
pub enum Promotion {
    /// The model's first version: served at once.
    First,
    /// Passed its gates against the version served, and promoted.
    Promoted(GateReport),
    /// Did not pass them: published, not served (the report names the gates failed).
    Held(GateReport),
}

impl std::fmt::Display for Promotion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Promotion::First => write!(f, "promoted (the model's first version)"),
            Promotion::Promoted(r) => write!(f, "promoted: passed its gates against version {}", r.against),
            Promotion::Held(r) => {
                write!(f, "not promoted: version {} keeps serving; failed gates: {}", r.against, r.failed().join("; "))
            }
        }
    }
}

/// After publishing `version` of `name`: checks its gates against the version served, on
/// `validation`, keeps the report, and promotes the new version if they passed.
pub(crate) fn gate_and_promote(
    registry: &Registry,
    name: &str,
    version: &str,
    scorer: &Scorer,
    gates: &PromotionGates,
    validation: &Validation<'_>,
) -> anyhow::Result<Promotion> {
    let current = registry.current(name)?;
    if current == version {
        return Ok(Promotion::First);
    }
    let served = load_package(&registry.resolve(name, Some(&current))?.1)
        .map_err(|e| anyhow::anyhow!("version {version} published but not promoted: the served version {current} cannot be read to check its gates against ({e})"))?;
    let report = crate::gates::check(gates, scorer, version, &served, validation);
    registry.record_gates(name, &report)?;
    Ok(if report.passed() {
        registry.promote_gated(name, version, "carecast (gates passed)", None)?;
        Promotion::Promoted(report)
    } else {
        Promotion::Held(report)
    })
}

/// Evaluates a model on the set's test split through the served code path, and publishes it
/// (the next version of `name`) with its metrics and model card: how both trained and imported
/// models reach the registry.
pub(crate) fn evaluate_and_publish(
    set: &TrainingSet,
    registry: &Registry,
    definition: &ModelDefinition,
    name: &str,
    model_selection: ModelSelection,
    excluded_rows: BTreeMap<String, usize>,
    training: TrainingSummary,
) -> anyhow::Result<Published> {
    let data = &set.data;
    let scorer = Scorer::new(definition.clone())?;
    let evaluation = evaluate_rows(&scorer, data, &data.test_rows, &[set.risk_bands.moderate, set.risk_bands.high]);
    let (test, max_additivity_error) = (evaluation.report.metrics.clone(), evaluation.max_additivity_error);
    let train_positives = data.train_rows.iter().filter(|&&r| data.labels[r]).count() as u64;
    let manifest = Manifest {
        format: carecast_models::package::FORMAT.into(),
        name: name.to_string(),
        version: String::new(),
        task: set.task.clone(),
        algorithm: definition.estimator.algorithm().to_string(),
        features: set.features.clone(),
        training_data: TrainingData {
            source: data.source.clone(),
            sha256: data.sha256.clone(),
            train_rows: data.train_rows.len() as u64,
            train_positives,
        },
        files: BTreeMap::new(),
    };
    let metrics_file = MetricsFile {
        split: "test".into(),
        report: evaluation.report,
        max_additivity_error,
        evaluated_patients: evaluation.patients,
        model_selection: model_selection.into(),
        excluded_rows,
        training,
    };
    let reference =
        Reference::of(&scorer, data.train_rows.iter().map(|&r| row_values(&data.columns, r).expect("checked on load")));
    let mut files = set.spec_files.clone();
    files.push((carecast_models::drift::REFERENCE, json_file(&reference)));
    let version = publish(registry, manifest, definition, &metrics_file, &files)?;
    let validation = Validation { data, rows: &data.test_rows };
    let promotion = gate_and_promote(registry, name, &version, &scorer, &set.promotion, &validation)?;
    Ok(Published { version, test, max_additivity_error, promotion })
}

/// A package file's JSON, as the package's own files are written.
fn json_file(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("plain data serialises");
    bytes.push(b'\n');
    bytes
}

/// Publishes a package (the next version of `manifest.name`) with its model card.
fn publish(
    registry: &Registry,
    manifest: Manifest,
    definition: &ModelDefinition,
    metrics: &MetricsFile,
    spec_files: &[(&str, Vec<u8>)],
) -> anyhow::Result<String> {
    registry.publish(&manifest.name.clone(), |dir, version| -> anyhow::Result<()> {
        let manifest = Manifest { version: version.to_string(), ..manifest };
        let mut files = spec_files.to_vec();
        files.push((card::MARKDOWN, card::markdown(&manifest, metrics).into_bytes()));
        files.push((card::HTML, card::html(&manifest, metrics).into_bytes()));
        write_package(dir, manifest, definition, metrics, &files)?;
        Ok(())
    })
}

/// Where a package is evaluated: a flat table for a flat task, a MEDS dataset for an event task.
pub enum EvaluationData<'a> {
    Table(&'a Path),
    Meds(&'a Path),
}

/// A package's own task, read back from its spec files, on the given data.
struct PackageTask {
    data: TaskData,
    bands: RiskBands,
    trained: MetricsFile,
    spec_files: Vec<(&'static str, Vec<u8>)>,
}

impl PackageTask {
    /// The promotion gates its task spec states.
    fn gates(&self) -> anyhow::Result<PromotionGates> {
        let (_, toml) = self.spec_files.iter().find(|(name, _)| *name == "task.toml").expect("every task has its spec");
        PromotionGates::of_task(&String::from_utf8_lossy(toml))
    }
}

/// Checks a published version's promotion gates against the version served (`served`), on
/// its task's rows of `source` (the test split, or every row), and keeps the report in
/// `registry`, where a promotion looks for it.
pub fn check_gates(
    registry: &Registry,
    candidate: &ModelPackage,
    served: &ModelPackage,
    source: EvaluationData<'_>,
    rows: Rows,
) -> anyhow::Result<GateReport> {
    let task = package_task(candidate, source, rows)?;
    let validation = Validation { data: &task.data, rows: &task.data.test_rows };
    let report =
        crate::gates::check(&task.gates()?, &candidate.scorer, &candidate.manifest.version, served, &validation);
    registry.record_gates(&candidate.manifest.name, &report)?;
    Ok(report)
}

fn package_task(pkg: &ModelPackage, source: EvaluationData<'_>, rows: Rows) -> anyhow::Result<PackageTask> {
    let read = |name: &str| {
        std::fs::read_to_string(pkg.dir.join(name))
            .map_err(|e| anyhow::anyhow!("package {}: {name}: {e}", pkg.dir.display()))
    };
    let trained: MetricsFile = serde_json::from_str(&read(carecast_models::package::METRICS)?).map_err(|e| {
        anyhow::anyhow!("package {}: metrics.json predates the evaluation report ({e}); retrain it", pkg.dir.display())
    })?;
    let task_toml = read("task.toml")?;
    Ok(match source {
        EvaluationData::Table(path) => {
            let task = TaskSpec::from_toml(&task_toml)?;
            let spec_files = vec![("task.toml", task_toml.into_bytes())];
            PackageTask { data: load_task_data(&task, path, rows)?, bands: task.risk_bands, trained, spec_files }
        }
        EvaluationData::Meds(meds) => {
            let set = crate::cohort::event_training_set(meds, &task_toml, &read("features.toml")?, rows)?;
            PackageTask { data: set.data, bands: set.risk_bands, trained, spec_files: set.spec_files }
        }
    })
}

fn evaluated_metrics(scorer: &Scorer, task: &PackageTask, rows: Rows) -> MetricsFile {
    let data = &task.data;
    let evaluation = evaluate_rows(scorer, data, &data.test_rows, &[task.bands.moderate, task.bands.high]);
    let mut excluded_rows = data.excluded.clone();
    if evaluation.refused > 0 {
        excluded_rows.insert("refused by the model (e.g. a category unseen in training)".into(), evaluation.refused);
    }
    MetricsFile {
        split: match rows {
            Rows::TaskSplit => "test".into(),
            Rows::All => format!("all rows of {}", data.source),
        },
        report: evaluation.report,
        max_additivity_error: evaluation.max_additivity_error,
        evaluated_patients: evaluation.patients,
        model_selection: task.trained.model_selection.clone(),
        excluded_rows,
        training: task.trained.training.clone(),
    }
}

/// Re-evaluates a published package through the served code path: on its task's test split, or
/// on every row of another site's data (external validation). Returns the new `metrics.json`
/// (keeping the package's training summary and model selection) for the card.
pub fn evaluate_package(pkg: &ModelPackage, source: EvaluationData<'_>, rows: Rows) -> anyhow::Result<MetricsFile> {
    Ok(evaluated_metrics(&pkg.scorer, &package_task(pkg, source, rows)?, rows))
}

/// What recalibration did: the new version and the log-odds shift applied.
#[derive(Debug, Clone)]
pub struct Recalibrated {
    pub version: String,
    /// Whether it is served: once past its gates on the site's rows.
    pub promotion: Promotion,
    pub shift: f64,
    pub metrics: MetricsFile,
}

/// Recalibration in the large for a new site: shifts the package's log-odds so that its mean
/// prediction matches the outcome rate on the site's rows, leaving discrimination and every
/// explanation's ranking untouched, and publishes the result as the next version of the model.
/// The metrics stored are on the same rows, so they show calibration-in-the-large near zero by
/// construction; validate on later data from the site.
pub fn recalibrate_package(
    pkg: &ModelPackage,
    source: EvaluationData<'_>,
    rows: Rows,
    registry: &Registry,
) -> anyhow::Result<Recalibrated> {
    let task = package_task(pkg, source, rows)?;
    let data = &task.data;
    let mut ws = Workspace::default();
    let (mut y, mut log_odds) = (Vec::new(), Vec::new());
    for &r in &data.test_rows {
        let values = row_values(&data.columns, r).expect("checked on load");
        if let Ok(score) = pkg.scorer.score(&values, &mut ws) {
            y.push(data.labels[r]);
            log_odds.push(crate::evaluate::logit(score.probability));
        }
    }
    anyhow::ensure!(
        y.iter().any(|&b| b) && y.iter().any(|&b| !b),
        "recalibration needs rows with and without the outcome"
    );
    let shift = crate::fit::calibrate::in_the_large(&y, &log_odds);
    let mut definition = pkg.scorer.definition().clone();
    definition.calibration = Some(match &definition.calibration {
        None => carecast_models::calibration::Calibration::Platt { intercept: shift, slope: 1.0 },
        Some(c) => c.shifted(shift),
    });
    let scorer = Scorer::new(definition.clone())?;
    let mut metrics = evaluated_metrics(&scorer, &task, rows);
    metrics.model_selection.recalibrated(Recalibration {
        from_version: pkg.manifest.version.clone(),
        log_odds_shift: shift,
        data: data.source.clone(),
        data_sha256: data.sha256.clone(),
        rows: y.len(),
    });
    let mut files = task.spec_files.clone();
    if let Some(reference) = &pkg.reference {
        // The new probability at the margin where the old model gave `p` (both increasing in it).
        let probability = |c: &Option<carecast_models::calibration::Calibration>, margin: f64| {
            carecast_models::scorer::sigmoid(c.as_ref().map_or(margin, |c| c.log_odds(margin)))
        };
        let (old, new) = (&pkg.scorer.definition().calibration, &definition.calibration);
        let mapped = |p: f64| {
            let (mut lo, mut hi) = (-60.0, 60.0);
            for _ in 0..100 {
                let mid = 0.5 * (lo + hi);
                if probability(old, mid) < p { lo = mid } else { hi = mid }
            }
            probability(new, 0.5 * (lo + hi))
        };
        files.push((carecast_models::drift::REFERENCE, json_file(&reference.with_scores_mapped(mapped))));
    }
    let version = publish(registry, pkg.manifest.clone(), &definition, &metrics, &files)?;
    let validation = Validation { data, rows: &data.test_rows };
    let promotion = gate_and_promote(registry, &pkg.manifest.name, &version, &scorer, &task.gates()?, &validation)?;
    Ok(Recalibrated { version, shift, metrics, promotion })
}
