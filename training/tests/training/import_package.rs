//! Models trained in Python reach the registry and are served like trained ones: the shared
//! XGBoost and LightGBM fixtures, imported into the support2 task, give through the full scoring
//! path (package, preprocessor, scorer) the libraries' own probabilities and contributions.

use carecast_models::{Registry, Value, Workspace, load_package};
use carecast_training::TaskSpec;
use carecast_training::import::{Format, import_model};
use std::path::PathBuf;

fn shared(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(path)
}

#[test]
fn imported_models_are_served_as_the_libraries_score_them() {
    let dir = std::env::temp_dir().join(format!("carecast-import-{}", std::process::id()));
    let registry = Registry::new(&dir);
    let (task, _) = TaskSpec::load("support2_hospdead").unwrap();
    let data = shared("data/support2.csv");
    for (file, format, expected) in [
        (
            "fixtures/xgboost/support2_hospdead.json",
            Format::XgboostJson,
            "fixtures/xgboost/support2_hospdead_expected.csv",
        ),
        (
            "fixtures/lightgbm/support2_hospdead.txt",
            Format::LightgbmText,
            "fixtures/lightgbm/support2_hospdead_expected.csv",
        ),
    ] {
        let name = format!("imported-{format:?}").to_lowercase();
        let report = import_model(&task, &data, &registry, &shared(file), format, Some(&name)).unwrap();
        assert!(report.auroc > 0.8 && report.max_additivity_error < 1e-9, "{report:?}");
        let pkg = load_package(&registry.resolve(&name, None).unwrap().1).unwrap();
        let metrics = std::fs::read_to_string(pkg.dir.join("metrics.json")).unwrap();
        assert!(metrics.contains("\"imported\"") && pkg.dir.join("model_card.html").exists());

        // Every fixture row through the served path, by feature name as a caller sends it.
        let text = std::fs::read_to_string(shared(expected)).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}"));
        let mut ws = Workspace::default();
        let mut worst = 0.0f64;
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            let number = |name: &str| cells[col(name)].parse::<f64>().unwrap();
            let named = pkg.manifest.features.iter().map(|f| {
                let cell = cells[col(&f.name)];
                (f.name.as_str(), if cell.is_empty() { Value::Missing } else { Value::Number(cell.parse().unwrap()) })
            });
            let row = pkg.scorer.bind(named).unwrap();
            let score = pkg.scorer.score(&row, &mut ws).unwrap();
            assert!((score.probability - number("expected_probability")).abs() <= 1e-5);
            assert!((score.base_value - number("contrib_bias")).abs() <= 1e-5);
            for (f, phi) in pkg.manifest.features.iter().zip(&score.contributions) {
                worst = worst.max((phi - number(&format!("contrib_{}", f.name))).abs());
            }
        }
        assert!(worst <= 1e-5, "{name}: contribution off by {worst}");
    }

    // A model whose columns the task does not have is refused, naming the column.
    let other = dir.join("other.json");
    let text = std::fs::read_to_string(shared("fixtures/xgboost/support2_hospdead.json")).unwrap();
    std::fs::write(&other, text.replacen("\"meanbp\"", "\"mean_bp_mmhg\"", 1)).unwrap();
    let err = import_model(&task, &data, &registry, &other, Format::XgboostJson, None).unwrap_err().to_string();
    assert!(err.contains("`mean_bp_mmhg`") && err.contains("not a feature"), "{err}");
    // A damaged file is refused and nothing is published.
    std::fs::write(&other, &text[..text.len() / 2]).unwrap();
    let err =
        import_model(&task, &data, &registry, &other, Format::XgboostJson, Some("damaged")).unwrap_err().to_string();
    assert!(err.contains("XGBoost"), "{err}");
    assert!(registry.resolve("damaged", None).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
