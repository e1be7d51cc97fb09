//! Shared set-up for the benchmarks: real models trained on the shared SUPPORT data.

use carecast_models::{ModelPackage, Registry, load_package};
use carecast_tables::{FeatureColumn, feature_columns, read_table};
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

/// The shared benchmark model (`fixtures/xgboost/bench_300x6_50f.json`: 300 trees of depth 6 over
/// 50 standard-normal features `f0..f49`) as production serves it: imported into a package, so
/// that one patient goes through the whole `Scorer` (input checks, encoding, margin, exact
/// explanation) and the server's response with its sentences. The import's input checks are
/// fitted on 2,000 standard-normal rows labelled from XGBoost's own margin.
pub fn bench_package() -> ModelPackage {
    use carecast_models::tree_import::xgboost_json;
    use carecast_training::import::{Format, import_model};
    use carecast_training::rng::Rng;
    use std::fmt::Write;
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/xgboost/bench_300x6_50f.json");
    let model = xgboost_json(&std::fs::read_to_string(&fixture).expect("shared fixtures beside the repository"))
        .expect("valid model");
    let width = model.feature_names.len();
    let dir = std::env::temp_dir().join(format!("carecast-bench-package-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let mut task = String::from(
        "name = \"bench_300x6_50f\"\ndescription = \"Benchmark workload\"\noutcome = \"the benchmark outcome\"\ndata = \"rows.csv\"\n\
         key = \"id\"\nlabel = \"y\"\n[split]\ncolumn = \"split\"\ntrain = \"train\"\ntest = \"test\"\n[risk_bands]\nmoderate = 0.2\nhigh = 0.5\n",
    );
    for name in &model.feature_names {
        write!(task, "[[features]]\nname = \"{name}\"\ntype = \"numeric\"\ndisplay = \"Measure {name}\"\nunit = \"units\"\npossible = [-100.0, 100.0]\n").unwrap();
    }
    let mut csv = format!("id,{},y,split\n", model.feature_names.join(","));
    let mut rng = Rng(11);
    for r in 0..2000 {
        let x: Vec<f64> = (0..width).map(|_| rng.normal(0.0, 1.0) as f32 as f64).collect();
        let p = 1.0 / (1.0 + (-model.ensemble.margin(&x)).exp());
        let values: Vec<String> = x.iter().map(f64::to_string).collect();
        writeln!(
            csv,
            "{r},{},{},{}",
            values.join(","),
            u8::from(rng.unit() < p),
            if r % 4 == 0 { "test" } else { "train" }
        )
        .unwrap();
    }
    std::fs::write(dir.join("rows.csv"), csv).expect("rows written");
    let task = TaskSpec::from_toml(&task).expect("valid task");
    let registry = Registry::new(dir.join("registry"));
    let report =
        import_model(&task, &dir.join("rows.csv"), &registry, &fixture, Format::XgboostJson, None).expect("imported");
    let package = load_package(&registry.resolve(&report.name, None).expect("published").1).expect("valid package");
    std::fs::remove_dir_all(&dir).ok();
    package
}
