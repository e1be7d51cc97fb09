//! Issue 2's quality bars on the real SUPPORT data (`../shared/data`, test split): both models reach
//! AUROC >= 0.895 with calibration slope in [0.85, 1.15], explanations add up on every test row, and
//! the published package reloads with verified checksums.

use carecast_models::{Registry, load_package};
use carecast_training::{Algorithm, TaskSpec, train};
use std::path::PathBuf;

fn shared_data(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(file);
    assert!(p.exists(), "{} not found: tests read the shared data sets beside the repository", p.display());
    p
}

#[test]
fn both_models_meet_the_quality_bars_on_support2_hospdead() {
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let dir = std::env::temp_dir().join(format!("carecast-quality-{}", std::process::id()));
    let registry = Registry::new(&dir);
    for algorithm in [Algorithm::Logistic, Algorithm::Gbm] {
        let started = std::time::Instant::now();
        let report = train(&task, &toml, &shared_data("support2.csv"), &registry, algorithm, None).unwrap();
        let m = &report.test;
        eprintln!(
            "{:?} ({:.1?}): AUROC {:.4} ({:.4}-{:.4}) AUPRC {:.4} Brier {:.4} slope {:.3} intercept {:.3} | {}",
            algorithm, started.elapsed(), m.auroc, m.auroc_ci_lower, m.auroc_ci_upper, m.auprc, m.brier,
            m.calibration_slope, m.calibration_intercept, report.model_selection
        );
        assert_eq!(m.n as usize, report.test_rows, "every test row is scored");
        assert!(m.auroc >= 0.895, "{algorithm:?} AUROC {}", m.auroc);
        assert!((0.85..=1.15).contains(&m.calibration_slope), "{algorithm:?} slope {}", m.calibration_slope);
        assert!(m.auroc_ci_lower < m.auroc && m.auroc < m.auroc_ci_upper);
        assert!(report.max_additivity_error < 1e-9, "additivity {}", report.max_additivity_error);

        let (_, dir) = registry.resolve(&report.name, None).unwrap();
        let package = load_package(&dir).unwrap();
        assert_eq!(package.metrics, report.test);
        assert_eq!(package.manifest.version, report.version);
        assert_eq!(package.manifest.features.len(), 32);
        let full: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
        eprintln!("  ICI {:.4} E50 {:.4} E90 {:.4} scaled Brier {:.3}", full["ici"], full["e50"], full["e90"], full["scaled_brier"]);
        assert!(full["ici"].as_f64().unwrap() < 0.05, "well calibrated models have a small ICI");
        let bands = full["risk_band_thresholds"].as_array().unwrap();
        assert_eq!(bands.len(), 2);
        assert!(bands[0]["sensitivity"].as_f64().unwrap() > bands[1]["sensitivity"].as_f64().unwrap(), "a lower threshold flags more");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
