//! Training on events: a synthetic MEDS dataset, an event task spec and a feature spec give a
//! published package that holds both specs, checksummed, and whose model ranks the true risks.

use carecast_models::{Registry, load_package};
use carecast_training::cohort::event_training_set;
use carecast_training::pipeline::train_set;
use carecast_training::{Algorithm, synth};

#[test]
fn a_dementia_model_trained_on_synthetic_events_keeps_its_specs() {
    let dir = std::env::temp_dir().join(format!("carecast-events-training-{}", std::process::id()));
    synth::write_population(20_000, 17, 8_000, &dir.join("meds")).unwrap();
    let task = include_str!("../tasks/synth_dementia_5y.toml");
    let features = include_str!("../tasks/synth_dementia_features.toml");
    let set = event_training_set(&dir.join("meds"), task, features).unwrap();
    assert!(set.data.test_rows.len() > 2000 && set.data.train_rows.len() > 15_000);
    let registry = Registry::new(dir.join("registry"));
    let report = train_set(&set, &registry, Algorithm::Gbm, None).unwrap();
    eprintln!("synth_dementia_5y GBM: AUROC {:.3}, slope {:.2}", report.test.auroc, report.test.calibration_slope);
    assert!(report.test.auroc > 0.75, "AUROC {}", report.test.auroc);
    assert!(report.max_additivity_error < 1e-9);

    let pkg = load_package(&registry.resolve("synth_dementia_5y-gbm", None).unwrap().1).unwrap();
    assert!(pkg.manifest.files.contains_key("features.toml") && pkg.manifest.files.contains_key("task.toml"));
    assert_eq!(std::fs::read_to_string(pkg.dir.join("features.toml")).unwrap(), features);
    let names: Vec<&str> = pkg.manifest.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names[..3], ["age", "female", "no_qualifications"]);
    assert_eq!(pkg.manifest.task.outcome, "a dementia diagnosis within five years");

    // A task spec without risk bands cannot train a model, and says so.
    let no_bands = task.split("[risk_bands]").next().unwrap();
    let err = event_training_set(&dir.join("meds"), no_bands, features).err().unwrap().to_string();
    assert!(err.contains("risk_bands"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
