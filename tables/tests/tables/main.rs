//! carecast-tables' tests, in one binary: batch scoring, chunked reading and resumed runs,
//! population summaries (`batch`), and the planner's report in a real browser (`report`).

mod batch;
mod report;

use carecast_models::{Registry, load_package};
use carecast_training::{Algorithm, TaskSpec, train};
use std::path::PathBuf;

/// The shared SUPPORT table, a working directory named for the test, and a support2_hospdead
/// model trained on the table and published there.
pub fn trained(test: &str, algorithm: Algorithm) -> (PathBuf, PathBuf, carecast_models::ModelPackage) {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let dir = std::env::temp_dir().join(format!("carecast-{test}-{}", std::process::id()));
    let registry = Registry::new(dir.join("registry"));
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let report = train(&task, &toml, &shared, &registry, algorithm, None).unwrap();
    let pkg = load_package(&registry.resolve(&report.name, None).unwrap().1).unwrap();
    (shared, dir, pkg)
}
