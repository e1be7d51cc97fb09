//! Models trained outside Carecast (XGBoost JSON, LightGBM text) brought into a task, so that
//! researchers who train in Python serve with Carecast: the model's columns are matched to the
//! task's features by name, the model is evaluated on the task's test split through the served
//! code path, and it is published like a trained model, with its card.

use crate::dataset::{Rows, TrainingSet};
use crate::fit::selection::{ImportedModel, ModelSelection};
use crate::pipeline::{evaluate_and_publish, load_task_data, training_summary};
use crate::task::TaskSpec;
use carecast_models::package::TaskInfo;
use carecast_models::preprocess::Encoding;
use carecast_models::tree_import::{Imported, lightgbm_text, xgboost_json};
use carecast_models::{Estimator, FeatureKind, ModelDefinition, Registry};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The formats a model can be imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// XGBoost's JSON model (`Booster.save_model("model.json")`).
    #[cfg_attr(feature = "clap", value(name = "xgboost"))]
    XgboostJson,
    /// LightGBM's text model (`Booster.save_model("model.txt")`).
    #[cfg_attr(feature = "clap", value(name = "lightgbm"))]
    LightgbmText,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::XgboostJson => "XGBoost JSON",
            Format::LightgbmText => "LightGBM text",
        }
    }
}

/// What an import published.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub name: String,
    pub version: String,
    pub promotion: crate::pipeline::Promotion,
    pub auroc: f64,
    pub max_additivity_error: f64,
    pub trees: usize,
}

/// The task feature a model column names: the same name, or the name with `.` and other
/// punctuation as `_` (LightGBM rewrites them so).
fn task_feature(task: &TaskSpec, column: &str) -> Option<usize> {
    let plain = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    task.features
        .iter()
        .position(|f| f.name == column)
        .or_else(|| task.features.iter().position(|f| plain(&f.name) == column))
}

/// Imports `model_file` into `task` (data at `data_path`) and publishes it as `name` (default
/// `<task>-imported`). The package's features are the model's columns, in its order, with the
/// task's display names and units; the task's training split only fits the input checks
/// (ranges, missing shares), since the model was fitted elsewhere.
pub fn import_model(
    task: &TaskSpec,
    data_path: &Path,
    registry: &Registry,
    model_file: &Path,
    format: Format,
    name: Option<&str>,
) -> anyhow::Result<ImportReport> {
    let bytes = std::fs::read(model_file).map_err(|e| anyhow::anyhow!("{}: {e}", model_file.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", model_file.display()))?;
    let Imported { ensemble, feature_names } = match format {
        Format::XgboostJson => xgboost_json(text)?,
        Format::LightgbmText => lightgbm_text(text)?,
    };
    let mut features = Vec::with_capacity(feature_names.len());
    for column in &feature_names {
        let i = task_feature(task, column)
            .ok_or_else(|| anyhow::anyhow!("model column `{column}`: not a feature of task `{}`", task.name))?;
        let spec = &task.features[i];
        anyhow::ensure!(
            spec.kind == FeatureKind::Numeric,
            "model column `{column}`: task feature `{}` is categorical; imported models take numeric features",
            spec.name
        );
        features.push(spec.clone());
    }
    let task = TaskSpec { features, ..task.clone() };
    let data = load_task_data(&task, data_path, Rows::TaskSplit)?;
    let preprocessor = crate::fit::preprocessor_training::fit_preprocessor(
        &task.features,
        &data.columns,
        &data.train_rows,
        Encoding::Native,
    )?;
    let trees = ensemble.trees.len();
    let definition = ModelDefinition {
        preprocessor,
        estimator: Estimator::GradientBoostedTrees(ensemble),
        risk_bands: task.risk_bands,
        calibration: None,
    };
    let selection = ModelSelection::new(
        "none here: fitted outside Carecast; the training split fitted only the input checks".into(),
        ImportedModel {
            format: format.name().into(),
            file: model_file.file_name().map(|f| f.to_string_lossy().into_owned()),
            sha256: hex::encode(Sha256::digest(&bytes)),
            trees,
        },
    );
    let training = training_summary(&definition.preprocessor, &data, false);
    let set = TrainingSet {
        task: TaskInfo {
            name: task.name.clone(),
            description: task.description.clone(),
            outcome: task.outcome.clone(),
        },
        features: task.features.clone(),
        risk_bands: task.risk_bands,
        promotion: task.promotion,
        spec_files: vec![("task.toml", toml::to_string(&task)?.into_bytes())],
        data,
    };
    let name = name.map_or_else(|| format!("{}-imported", task.name), str::to_string);
    let excluded: BTreeMap<String, usize> = set.data.excluded.clone();
    let published = evaluate_and_publish(&set, registry, &definition, &name, selection, excluded, training)?;
    Ok(ImportReport {
        name,
        version: published.version,
        promotion: published.promotion,
        auroc: published.test.auroc,
        max_additivity_error: published.max_additivity_error,
        trees,
    })
}
