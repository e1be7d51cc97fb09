//! Shared set-up for the benchmarks: real models trained on the shared SUPPORT data.

use carecast_models::{ModelPackage, Registry, load_package};
use carecast_training::ingest::table::{FeatureColumn, feature_columns, read_table};
use carecast_training::{Algorithm, TaskSpec, train};
use std::path::PathBuf;

/// `../shared/data/<file>` beside the repository.
pub fn shared_data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(file)
}

/// Trains `algorithm` on support2_hospdead into a temporary registry and returns the package with
/// the data's feature columns.
pub fn support2_model(algorithm: Algorithm) -> (ModelPackage, Vec<FeatureColumn>) {
    let dir = std::env::temp_dir().join(format!("carecast-bench-{}-{}", algorithm.short_name(), std::process::id()));
    let registry = Registry::new(&dir);
    let (task, toml) = TaskSpec::load("support2_hospdead").expect("bundled task");
    let report = train(&task, &toml, &shared_data("support2.csv"), &registry, algorithm, None).expect("training");
    let package = load_package(&registry.resolve(&report.name, None).expect("published").1).expect("valid package");
    let df = read_table(&shared_data("support2.csv")).expect("shared data");
    let columns = feature_columns(&df, &package.manifest.features).expect("feature columns");
    std::fs::remove_dir_all(&dir).ok();
    (package, columns)
}
