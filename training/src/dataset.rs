//! The shapes training's stages hand each other: a task's rows ready to fit ([`TaskData`]), what
//! a model is trained for and from ([`TrainingSet`]), and what evaluation writes
//! ([`MetricsFile`]). Every stage imports these from here; none imports another stage for them.

use crate::evaluate::{Report, SubgroupAssignment};
use carecast_models::package::TaskInfo;
use carecast_models::{FeatureSpec, RiskBands, Value};
use carecast_tables::FeatureColumn;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

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
    /// Each row's group for every subgroup variable of the fairness report.
    pub subgroups: Vec<SubgroupAssignment>,
    /// An existing score to compare with on the same rows (e.g. NEWS2), one value per row.
    pub baseline: Option<Baseline>,
    /// Event data: per row, when the outcome or a competing event came or observation ended
    /// (share of the horizon), and which. Empty for flat tables.
    pub follow_up: Vec<(f64, crate::fit::Ending)>,
    /// Training rows censored within the horizon: used by time-to-event models only.
    pub censored_rows: Vec<usize>,
    /// Event data: the codes of events that compete with the outcome (e.g. `MEDS_DEATH`).
    pub competing_codes: Vec<String>,
}

/// An existing score (higher = riskier) evaluated beside the model.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub name: String,
    pub score: Vec<f64>,
}

impl Baseline {
    /// The baseline from a numeric column; a missing value ranks lowest (nothing recorded, no alert).
    pub fn from_column(name: &str, column: &FeatureColumn) -> anyhow::Result<Self> {
        let score = (0..column.len())
            .map(|r| match column.value(r) {
                Ok(Value::Number(x)) => Ok(x),
                Ok(Value::Missing) => Ok(f64::NEG_INFINITY),
                Ok(Value::Text(_)) => Err(anyhow::anyhow!("baseline `{name}`: must be numeric")),
                Err(e) => Err(anyhow::anyhow!("baseline: {e}")),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { name: name.to_string(), score })
    }
}

/// Stable hash of a row or subject key.
pub fn key_hash(key: &str) -> u64 {
    let d = Sha256::digest(key.as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Which rows are evaluated: the task's own split, or every row (a new site's data, for external
/// validation, need not have a split column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    TaskSplit,
    All,
}

/// What a model is trained for and from, whatever shape the records came in: the flat path and
/// the event path both end here, so fitting, evaluation and publishing are one implementation.
pub struct TrainingSet {
    pub task: TaskInfo,
    pub features: Vec<FeatureSpec>,
    pub risk_bands: RiskBands,
    /// When a new version may replace the one served.
    pub promotion: crate::gates::PromotionGates,
    pub data: TaskData,
    /// The specs that define the task and its features, stored verbatim in the package.
    pub spec_files: Vec<(&'static str, Vec<u8>)>,
}

/// `metrics.json`: the test-split report with how the model was chosen and which rows were left out.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MetricsFile {
    pub split: String,
    #[serde(flatten)]
    pub report: Report,
    pub max_additivity_error: f64,
    /// Distinct patients among the evaluated rows.
    pub evaluated_patients: u64,
    pub model_selection: crate::fit::selection::Recorded,
    pub excluded_rows: BTreeMap<String, usize>,
    pub training: TrainingSummary,
}

/// Who and what the model was trained on, recorded at training time for the card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingSummary {
    pub train_rows: u64,
    pub train_events: u64,
    /// Columns the estimator sees after encoding (one-hot levels, missing indicators).
    pub encoded_columns: u64,
    /// Share of training rows with each feature missing, in feature order.
    pub missing_share: Vec<f64>,
    /// How missing values are handled by this model.
    pub missing_handling: String,
    /// Monotone constraints in force, by feature name.
    #[serde(default)]
    pub monotone: Vec<String>,
    /// Events that compete with the outcome, where the task names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub competing_events: Option<CompetingEvents>,
}

/// How a task's competing events were handled: which codes, and how many training rows ended
/// in one before the outcome (counted as non-cases, not censored).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CompetingEvents {
    pub codes: Vec<String>,
    pub train_rows_ended: u64,
}
