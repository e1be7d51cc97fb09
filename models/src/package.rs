//! The model package: an immutable directory holding a manifest, the model definition, its
//! test-split metrics and the task it was trained for, each file pinned by SHA-256. A package whose
//! files do not match its manifest is refused, so a corrupt or tampered model never scores.

use crate::schema::FeatureSpec;
use crate::scorer::{ModelDefinition, Scorer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "carecast-model-package/1";
pub const MANIFEST: &str = "manifest.json";
pub const MODEL: &str = "model.json";
pub const METRICS: &str = "metrics.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    pub version: String,
    pub task: TaskInfo,
    pub algorithm: String,
    pub features: Vec<FeatureSpec>,
    pub training_data: TrainingData,
    /// SHA-256 (hex) of every other file in the package.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub description: String,
    /// What the probability is the probability of.
    pub outcome: String,
}

/// Which data the model learned from, so a result can be traced to its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    pub source: String,
    pub sha256: String,
    pub train_rows: u64,
    pub train_positives: u64,
}

/// Test-split performance, as written to `metrics.json`. Unknown fields are kept by training's
/// richer report; readers take what they know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub n: u64,
    pub prevalence: f64,
    pub auroc: f64,
    pub auroc_ci_lower: f64,
    pub auroc_ci_upper: f64,
    pub auprc: f64,
    pub brier: f64,
    pub calibration_slope: f64,
    pub calibration_intercept: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid JSON for this file: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: checksum mismatch (manifest {expected}, file {actual}): the package is corrupt or was altered")]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("{dir}: {reason}")]
    Invalid { dir: PathBuf, reason: String },
}

/// A package loaded and verified from disk.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub metrics: Metrics,
    pub scorer: Scorer,
    /// For models trained on events: how a patient's raw events become the model's inputs.
    pub events: Option<EventInputs>,
    /// What the training data's inputs and scores looked like, for drift monitoring (packages
    /// published before `reference.json` have none).
    pub reference: Option<crate::drift::Reference>,
}

/// A package's event feature spec (`features.toml`) and outcome horizon (`task.toml`), read from
/// the checksummed files at load, so a patient's raw events (FHIR resources in CDS Hooks) are
/// turned into features by the one extractor the model was trained with.
#[derive(Debug, Clone)]
pub struct EventInputs {
    pub extractor: crate::features::extract::FeatureExtractor,
    /// How far ahead the outcome is predicted, in microseconds (e.g. 24 hours).
    pub horizon: Option<i64>,
}

impl EventInputs {
    /// One patient's model inputs at `at` (microseconds) from their events (sorted by time;
    /// `code` indexes `codes`): a value, or missing.
    pub fn row<S: AsRef<str>>(
        &self,
        codes: &[S],
        events: &[crate::features::extract::Event],
        at: i64,
    ) -> Vec<crate::Value<'static>> {
        let mut x = vec![f64::NAN; self.extractor.n_features()];
        self.extractor.bind(codes).extract(events, at, &mut x, &mut Default::default());
        x.into_iter().map(|v| if v.is_nan() { crate::Value::Missing } else { crate::Value::Number(v) }).collect()
    }
}

/// An event model's feature spec.
pub const FEATURES: &str = "features.toml";
/// The task spec.
pub const TASK: &str = "task.toml";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 of a file of any size, read a block at a time.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io { path: path.to_path_buf(), source }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("package types serialise");
    bytes.push(b'\n');
    bytes
}

/// Writes a package into `dir` (which must exist and be empty): the model, the metrics report
/// (a superset of [`Metrics`]) and any extra files (e.g. the task spec), then the manifest with
/// every file's SHA-256.
pub fn write_package(
    dir: &Path,
    mut manifest: Manifest,
    model: &ModelDefinition,
    metrics: &impl Serialize,
    extra_files: &[(&str, Vec<u8>)],
) -> Result<(), PackageError> {
    manifest.format = FORMAT.to_string();
    manifest.files.clear();
    let mut files: Vec<(&str, Vec<u8>)> = vec![(MODEL, to_json(model)), (METRICS, to_json(metrics))];
    files.extend(extra_files.iter().cloned());
    for (name, bytes) in &files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io_err(&path))?;
        manifest.files.insert(name.to_string(), sha256_hex(bytes));
    }
    let path = dir.join(MANIFEST);
    std::fs::write(&path, to_json(&manifest)).map_err(io_err(&path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, PackageError> {
    serde_json::from_slice(bytes).map_err(|source| PackageError::Json { path: path.to_path_buf(), source })
}

/// Loads a package, verifying every checksum and the model's internal consistency.
pub fn load_package(dir: &Path) -> Result<ModelPackage, PackageError> {
    let invalid = |reason: String| PackageError::Invalid { dir: dir.to_path_buf(), reason };
    let path = dir.join(MANIFEST);
    let manifest: Manifest = read_json(&path, &std::fs::read(&path).map_err(io_err(&path))?)?;
    if manifest.format != FORMAT {
        return Err(invalid(format!("unsupported package format `{}` (expected `{FORMAT}`)", manifest.format)));
    }
    for required in [MODEL, METRICS] {
        if !manifest.files.contains_key(required) {
            return Err(invalid(format!("manifest lists no `{required}`")));
        }
    }
    let mut contents = BTreeMap::new();
    for (name, expected) in &manifest.files {
        if name.contains('/') || name.contains("..") {
            return Err(invalid(format!("file name `{name}` escapes the package")));
        }
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let actual = sha256_hex(&bytes);
        if &actual != expected {
            return Err(PackageError::Checksum { path, expected: expected.clone(), actual });
        }
        contents.insert(name.as_str(), bytes);
    }
    let model: ModelDefinition = read_json(&dir.join(MODEL), &contents[MODEL])?;
    let metrics: Metrics = read_json(&dir.join(METRICS), &contents[METRICS])?;
    let declared: Vec<&FeatureSpec> = manifest.features.iter().collect();
    let fitted: Vec<&FeatureSpec> = model.preprocessor.features.iter().map(|f| &f.spec).collect();
    if declared != fitted {
        return Err(invalid("manifest features differ from the model's features".into()));
    }
    if manifest.algorithm != model.estimator.algorithm() {
        return Err(invalid("manifest algorithm differs from the model's".into()));
    }
    let scorer = Scorer::new(model).map_err(|e| invalid(e.to_string()))?;
    let events = match contents.get(FEATURES) {
        None => None,
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| invalid(format!("{FEATURES} is not UTF-8")))?;
            let spec =
                crate::features::FeatureSetSpec::from_toml(text).map_err(|e| invalid(format!("{FEATURES}: {e}")))?;
            let extractor = crate::features::extract::FeatureExtractor::new(&spec);
            let names = |specs: Vec<&FeatureSpec>| specs.into_iter().map(|f| f.name.clone()).collect::<Vec<_>>();
            if names(extractor.feature_specs().iter().collect()) != names(declared) {
                return Err(invalid(format!("{FEATURES} declares other features than the model's")));
            }
            let horizon = contents
                .get(TASK)
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|t| toml::from_str::<toml::Value>(t).ok())
                .and_then(|t| t.get("horizon").and_then(|h| h.as_str()).map(str::to_string))
                .and_then(|h| crate::features::Window::try_from(h).ok())
                .and_then(|w| w.0);
            Some(EventInputs { extractor, horizon })
        }
    };
    let reference = match contents.get(crate::drift::REFERENCE) {
        None => None,
        Some(bytes) => {
            let reference: crate::drift::Reference = read_json(&dir.join(crate::drift::REFERENCE), bytes)?;
            if !reference.fits(&scorer) {
                return Err(invalid(format!("{} does not describe the model's inputs", crate::drift::REFERENCE)));
            }
            Some(reference)
        }
    };
    Ok(ModelPackage { dir: dir.to_path_buf(), manifest, metrics, scorer, events, reference })
}
