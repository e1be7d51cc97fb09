//! Promotion gates on the shared SUPPORT data: a retrained version replaces the served one only
//! past the gates its task spec states, each named when it fails, and the figures a gate
//! compares are the ones an independent evaluation of each version gives on the same rows.

use carecast_models::registry::RegistryError;
use carecast_models::{Registry, load_package};
use carecast_training::dataset::Rows;
use carecast_training::pipeline::{EvaluationData, Promotion, evaluate_package, train};
use carecast_training::{Algorithm, TaskSpec};
use std::path::PathBuf;

const MODEL: &str = "support2-gated";

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv")
}

#[test]
fn a_new_version_is_served_only_past_its_gates() {
    let dir = std::env::temp_dir().join(format!("carecast-gates-{}", std::process::id()));
    let registry = Registry::new(&dir);
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let data = shared_data();
    let first = train(&task, &toml, &data, &registry, Algorithm::Logistic, Some(MODEL)).unwrap();
    assert!(matches!(first.promotion, Promotion::First));

    // Retrained without mean blood pressure: the served version's input is gone. Published,
    // not served, and the report says which input and that discrimination was not compared.
    let without: String = toml
        .split("[[features]]")
        .filter(|f| !f.contains("name = \"meanbp\""))
        .collect::<Vec<_>>()
        .join("[[features]]");
    let lacking = TaskSpec::from_toml(&without).unwrap();
    let second = train(&lacking, &without, &data, &registry, Algorithm::Logistic, Some(MODEL)).unwrap();
    let Promotion::Held(report) = &second.promotion else { panic!("{:?}", second.promotion) };
    assert_eq!(report.against, "1");
    let failed = report.failed();
    assert!(failed[0].starts_with("inputs: lacks `meanbp`"), "{failed:?}");
    assert!(failed[1].starts_with("discrimination: not compared"), "{failed:?}");
    assert_eq!(registry.current(MODEL).unwrap(), "1", "version 1 keeps serving");

    // The gradient-boosted trees on every input: compared with version 1 on the same test rows,
    // with the AUROCs that evaluating each version on its own gives.
    let third = train(&task, &toml, &data, &registry, Algorithm::Gbm, Some(MODEL)).unwrap();
    let report = match &third.promotion {
        Promotion::Promoted(r) | Promotion::Held(r) => r.clone(),
        Promotion::First => panic!("not the first version"),
    };
    let evaluated = |v: &str| {
        let pkg = load_package(&registry.resolve(MODEL, Some(v)).unwrap().1).unwrap();
        evaluate_package(&pkg, EvaluationData::Table(&data), Rows::TaskSplit).unwrap().report.metrics
    };
    let (ours, theirs) = (evaluated("3"), evaluated("1"));
    let discrimination = report.gates.iter().find(|g| g.name == "discrimination").unwrap();
    assert!(
        discrimination
            .detail
            .starts_with(&format!("AUROC {:.3} against {:.3} for version 1", ours.auroc, theirs.auroc)),
        "{discrimination:?}"
    );
    assert_eq!(discrimination.passed, ours.auroc >= theirs.auroc - 0.02);
    let slope = report.gates.iter().find(|g| g.name == "calibration slope").unwrap();
    assert!(slope.detail.starts_with(&format!("{:.3} (limits 0.8 to 1.2)", ours.calibration_slope)), "{slope:?}");
    assert_eq!(matches!(third.promotion, Promotion::Promoted(_)), report.passed());
    eprintln!("gbm against logistic: {:?}", report.gates);

    // A task stating tighter calibration limits holds a version that misses them.
    let strict = format!("{toml}\n[promotion]\ncalibration_slope = [0.999, 1.001]\nmax_auroc_drop = 0.5\n");
    let strict_task = TaskSpec::from_toml(&strict).unwrap();
    let fourth = train(&strict_task, &strict, &data, &registry, Algorithm::Logistic, Some(MODEL)).unwrap();
    let Promotion::Held(report) = &fourth.promotion else { panic!("{:?}", fourth.promotion) };
    assert_eq!(report.failed().len(), 1, "{:?}", report.failed());
    assert!(report.failed()[0].starts_with("calibration slope: "), "{:?}", report.failed());
    let err = TaskSpec::from_toml(&format!("{toml}\n[promotion]\ncalibration_slop = [0.9, 1.1]\n")).unwrap_err();
    assert!(err.to_string().contains("calibration_slop"), "a misspelt gate is refused: {err}");

    // Promoting a held version is refused, naming the gates; forced with a reason, it is served
    // and the history keeps the reason and the gates it failed.
    let served = registry.current(MODEL).unwrap();
    let refused = registry.promote_gated(MODEL, &fourth.version, "test", None).unwrap_err();
    assert!(
        matches!(&refused, RegistryError::GatesNotPassed { failed, .. } if failed[0].starts_with("calibration slope"))
    );
    assert!(refused.to_string().contains("force the promotion with a reason"), "{refused}");
    // Its gates were checked against the version then served; served is still that one.
    assert_eq!(report.against, served);
    registry.promote_gated(MODEL, &fourth.version, "test", Some("trial of the strict spec")).unwrap();
    let last = registry.history(MODEL).unwrap().pop().unwrap();
    let forced = last.forced.unwrap();
    assert_eq!(forced.reason, "trial of the strict spec");
    assert!(forced.failed_gates[0].starts_with("calibration slope"), "{forced:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
