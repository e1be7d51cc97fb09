//! `carecast train`: task data → split → preprocessing → fit → evaluation → published package.
//! Rows are encoded for fitting by the same `Preprocessor::encode` the server uses, and the test
//! split is scored through the same `Scorer`, so reported metrics are the served model's.

use crate::evaluate::{evaluate, ici_e50_e90, threshold_row};
use crate::fit::{gbm, logistic, preprocess::fit_preprocessor};
use crate::ingest::table::{FeatureColumn, feature_columns, read_table, row_values, text_column};
use crate::task::TaskSpec;
use carecast_models::package::{Manifest, Metrics, TaskInfo, TrainingData, sha256_hex, write_package};
use carecast_models::preprocess::{Encoding, Preprocessor};
use carecast_models::{Estimator, FeatureSpec, ModelDefinition, Registry, RiskBands, Scorer, Value, Workspace};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Logistic,
    Gbm,
}

impl Algorithm {
    pub fn short_name(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic",
            Algorithm::Gbm => "gbm",
        }
    }
}

/// A task's rows, split and checked, ready to fit.
pub struct TaskData {
    pub columns: Vec<FeatureColumn>,
    pub labels: Vec<bool>,
    /// Stable per-row hash of the key: drives tuning splits and cross-validation folds.
    pub key_hash: Vec<u64>,
    pub train_rows: Vec<usize>,
    pub test_rows: Vec<usize>,
    /// Rows left out, by reason (no row is dropped uncounted).
    pub excluded: BTreeMap<String, usize>,
    pub source: String,
    pub sha256: String,
}

/// Stable hash of a row or subject key.
pub fn key_hash(key: &str) -> u64 {
    let d = Sha256::digest(key.as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Reads the task's table and sorts every row into train, test or a counted exclusion.
pub fn load_task_data(task: &TaskSpec, path: &Path) -> anyhow::Result<TaskData> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let df = read_table(path)?;
    let columns = feature_columns(&df, &task.features)?;
    let keys = text_column(&df, &task.key)?;
    let splits = text_column(&df, &task.split.column)?;
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
    };
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
            (None, _) => *data.excluded.entry(format!("split `{}` neither train nor test", task.split.column)).or_default() += 1,
        }
    }
    anyhow::ensure!(!data.train_rows.is_empty() && !data.test_rows.is_empty(), "task `{}` has an empty train or test split", task.name);
    Ok(data)
}

/// Encodes rows through the model's own preprocessing; rows it refuses are counted, not fitted.
fn encode_rows(pre: &Preprocessor, data: &TaskData, rows: &[usize], excluded: &mut BTreeMap<String, usize>) -> (Vec<Vec<f64>>, Vec<usize>) {
    let mut out = Vec::with_capacity(rows.len());
    let mut kept = Vec::with_capacity(rows.len());
    let (mut buf, mut warnings) = (Vec::new(), Vec::new());
    for &r in rows {
        let values = row_values(&data.columns, r).expect("checked on load");
        match pre.encode(&values, &mut buf, &mut warnings) {
            Ok(()) => {
                out.push(buf.clone());
                kept.push(r);
            }
            Err(e) => *excluded.entry(e.to_string()).or_default() += 1,
        }
        warnings.clear();
    }
    (out, kept)
}

/// What `train` did, for the command line and the package's `metrics.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub name: String,
    pub version: String,
    pub algorithm: Algorithm,
    pub test: Metrics,
    /// Largest |base + sum of contributions - margin| over the test rows.
    pub max_additivity_error: f64,
    pub train_rows: usize,
    pub test_rows: usize,
    pub excluded_rows: BTreeMap<String, usize>,
    /// How hyper-parameters were chosen (cross-validated penalty, early-stopped rounds).
    pub model_selection: serde_json::Value,
}

/// Fits the estimator on the training rows.
fn fit_estimator(algorithm: Algorithm, pre: &Preprocessor, data: &TaskData, excluded: &mut BTreeMap<String, usize>) -> anyhow::Result<(Estimator, serde_json::Value)> {
    let (x, rows) = encode_rows(pre, data, &data.train_rows, excluded);
    let n_cols = pre.n_columns();
    match algorithm {
        Algorithm::Logistic => {
            let flat: Vec<f64> = x.concat();
            let y: Vec<bool> = rows.iter().map(|&r| data.labels[r]).collect();
            let design = logistic::Design { x: &flat, n_cols, y: &y };
            let folds: Vec<usize> = rows.iter().map(|&r| (data.key_hash[r] % 5) as usize).collect();
            let (alpha, cv) = logistic::choose_alpha(&design, &folds, 5)?;
            let model = logistic::fit(&design, alpha)?;
            let selection = serde_json::json!({
                "method": "5-fold cross-validated log-loss over the L2 penalty (folds by key)",
                "alpha": alpha,
                "cv_log_loss": cv.iter().map(|(a, l)| serde_json::json!({"alpha": a, "log_loss": l})).collect::<Vec<_>>(),
            });
            Ok((Estimator::LogisticRegression(model), selection))
        }
        Algorithm::Gbm => {
            let params = gbm::GbmParams::default();
            // Early stopping on a 20% tuning split by key finds the number of rounds; the final
            // model is then refitted on every training row with that many rounds.
            let is_tuning: Vec<bool> = rows.iter().map(|&r| data.key_hash[r].is_multiple_of(5)).collect();
            let column_major = |pick: bool| -> (Vec<Vec<f64>>, Vec<f64>) {
                let idx: Vec<usize> = (0..rows.len()).filter(|&i| is_tuning[i] == pick).collect();
                let cols = (0..n_cols).map(|c| idx.iter().map(|&i| x[i][c]).collect()).collect();
                (cols, idx.iter().map(|&i| f64::from(u8::from(data.labels[rows[i]]))).collect())
            };
            let (fit_x, fit_y) = column_major(false);
            let (tune_x, tune_y) = column_major(true);
            let tuned = gbm::fit(
                &gbm::Columns { values: &fit_x },
                &fit_y,
                Some((&gbm::Columns { values: &tune_x }, &tune_y)),
                params,
            );
            let all_x: Vec<Vec<f64>> = (0..n_cols).map(|c| x.iter().map(|row| row[c]).collect()).collect();
            let all_y: Vec<f64> = rows.iter().map(|&r| f64::from(u8::from(data.labels[r]))).collect();
            // More rows support proportionally more rounds at the same learning rate.
            let rounds = (tuned.rounds as f64 * rows.len() as f64 / fit_y.len() as f64).round() as usize;
            let final_fit = gbm::fit(&gbm::Columns { values: &all_x }, &all_y, None, gbm::GbmParams { max_rounds: rounds, ..params });
            let selection = serde_json::json!({
                "method": "early stopping on a 20% tuning split of the training rows (by key), then refit on all training rows with rounds scaled by the row ratio",
                "tuned_rounds": tuned.rounds,
                "final_rounds": rounds,
                "tuning_log_loss": tuned.best_tuning_log_loss,
                "params": params,
            });
            Ok((Estimator::GradientBoostedTrees(final_fit.ensemble), selection))
        }
    }
}

/// Test-split results: headline metrics, the largest additivity error, and the labels with their
/// predicted probabilities for the fuller report.
struct TestResults {
    metrics: Metrics,
    max_additivity_error: f64,
    y: Vec<bool>,
    p: Vec<f64>,
}

/// Scores the test rows through the served code path.
fn evaluate_on_test(scorer: &Scorer, data: &TaskData) -> TestResults {
    let mut ws = Workspace::default();
    let (mut y, mut margins, mut max_err) = (Vec::new(), Vec::new(), 0.0f64);
    for &r in &data.test_rows {
        let values: Vec<Value<'_>> = row_values(&data.columns, r).expect("checked on load");
        // A test row the model refuses (e.g. a category unseen in training) cannot be scored.
        if let Ok(score) = scorer.score(&values, &mut ws) {
            y.push(data.labels[r]);
            margins.push(score.margin);
            max_err = max_err.max(score.additivity_error);
        }
    }
    let p = margins.iter().map(|&z| carecast_models::scorer::sigmoid(z)).collect();
    TestResults { metrics: evaluate(&y, &margins), max_additivity_error: max_err, y, p }
}

/// What a model is trained for and from, whatever shape the records came in: the flat path and
/// the event path both end here, so fitting, evaluation and publishing are one implementation.
pub struct TrainingSet {
    pub task: TaskInfo,
    pub features: Vec<FeatureSpec>,
    pub risk_bands: RiskBands,
    pub data: TaskData,
    /// The specs that define the task and its features, stored verbatim in the package.
    pub spec_files: Vec<(&'static str, Vec<u8>)>,
}

/// Trains, evaluates and publishes one model for a flat-table task; returns the report.
pub fn train(
    task: &TaskSpec,
    task_toml: &str,
    data_path: &Path,
    registry: &Registry,
    algorithm: Algorithm,
    name: Option<&str>,
) -> anyhow::Result<TrainReport> {
    let set = TrainingSet {
        task: TaskInfo { name: task.name.clone(), description: task.description.clone(), outcome: task.outcome.clone() },
        features: task.features.clone(),
        risk_bands: task.risk_bands,
        data: load_task_data(task, data_path)?,
        spec_files: vec![("task.toml", task_toml.as_bytes().to_vec())],
    };
    train_set(&set, registry, algorithm, name)
}

/// Trains, evaluates and publishes one model from a training set; returns the report.
pub fn train_set(set: &TrainingSet, registry: &Registry, algorithm: Algorithm, name: Option<&str>) -> anyhow::Result<TrainReport> {
    let data = &set.data;
    let mut excluded = data.excluded.clone();
    let encoding = match algorithm {
        Algorithm::Logistic => Encoding::Standardised,
        Algorithm::Gbm => Encoding::Native,
    };
    let preprocessor = fit_preprocessor(&set.features, &data.columns, &data.train_rows, encoding)?;
    let (estimator, model_selection) = fit_estimator(algorithm, &preprocessor, data, &mut excluded)?;
    let definition = ModelDefinition { preprocessor, estimator, risk_bands: set.risk_bands };
    let scorer = Scorer::new(definition.clone()).map_err(anyhow::Error::msg)?;
    let results = evaluate_on_test(&scorer, data);
    let (test, max_additivity_error) = (results.metrics.clone(), results.max_additivity_error);

    let name = name.map_or_else(|| format!("{}-{}", set.task.name, algorithm.short_name()), str::to_string);
    let mut report = TrainReport {
        name: name.clone(),
        version: String::new(),
        algorithm,
        test,
        max_additivity_error,
        train_rows: data.train_rows.len(),
        test_rows: data.test_rows.len(),
        excluded_rows: excluded,
        model_selection,
    };
    let train_positives = data.train_rows.iter().filter(|&&r| data.labels[r]).count() as u64;
    let version = registry.publish(&name, |dir, version| -> anyhow::Result<()> {
        let manifest = Manifest {
            format: String::new(),
            name: name.clone(),
            version: version.to_string(),
            created: chrono::Utc::now(),
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
        let mut metrics_file = serde_json::to_value(&report.test)?;
        metrics_file["split"] = "test".into();
        metrics_file["max_additivity_error"] = max_additivity_error.into();
        metrics_file["model_selection"] = report.model_selection.clone();
        metrics_file["excluded_rows"] = serde_json::to_value(&report.excluded_rows)?;
        let (ici, e50, e90) = ici_e50_e90(&results.y, &results.p);
        let m = &report.test;
        metrics_file["scaled_brier"] = (1.0 - m.brier / (m.prevalence * (1.0 - m.prevalence))).into();
        metrics_file["ici"] = ici.into();
        metrics_file["e50"] = e50.into();
        metrics_file["e90"] = e90.into();
        let rows: Vec<_> = [set.risk_bands.moderate, set.risk_bands.high].iter().map(|&t| threshold_row(&results.y, &results.p, t)).collect();
        metrics_file["risk_band_thresholds"] = serde_json::to_value(rows)?;
        write_package(dir, manifest, &definition, &metrics_file, &set.spec_files)?;
        Ok(())
    })?;
    report.version = version;
    Ok(report)
}
