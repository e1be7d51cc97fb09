//! Issue 4's quality bars on the shared real data (`../shared/data`, test split), the evaluation
//! report and model card every package carries, re-evaluation of a published package, and
//! reproducible training (the same command twice gives byte-identical packages).

use carecast_models::{Registry, load_package};
use carecast_training::cohort::event_training_set;
use carecast_training::dataset::{MetricsFile, Rows};
use carecast_training::fit::calibrate::Method;
use carecast_training::fit::selection::Choice;
use carecast_training::ingest::flat::{FlatMapping, read_flat};
use carecast_training::ingest::meds::write_meds;
use carecast_training::pipeline::{EvaluationData, evaluate_package, recalibrate_package, train_set};
use carecast_training::{Algorithm, TaskSpec, TrainOptions, train};
use std::path::{Path, PathBuf};

fn shared_data(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(file);
    assert!(p.exists(), "{} not found: tests read the shared data sets beside the repository", p.display());
    p
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("carecast-{name}-{}", std::process::id()))
}

fn metrics_file(dir: &Path) -> MetricsFile {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

/// Best-peer AUROC minus 0.005, and calibration slope within [0.9, 1.1].
fn assert_bars(task: &str, m: &carecast_models::package::Metrics, best_peer: f64) {
    eprintln!(
        "{task}: AUROC {:.4} ({:.4}-{:.4}) AUPRC {:.4} Brier {:.4} slope {:.3} intercept {:+.3}",
        m.auroc, m.auroc_ci_lower, m.auroc_ci_upper, m.auprc, m.brier, m.calibration_slope, m.calibration_intercept
    );
    assert!(m.auroc >= best_peer - 0.005, "{task}: AUROC {} below the best peer's {best_peer} - 0.005", m.auroc);
    assert!((0.9..=1.1).contains(&m.calibration_slope), "{task}: calibration slope {}", m.calibration_slope);
}

#[test]
fn support2_hospdead_meets_the_bars_with_a_full_report_and_model_card() {
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let dir = temp("hospdead");
    let registry = Registry::new(&dir);
    let mut aurocs = Vec::new();
    for algorithm in [Algorithm::Logistic, Algorithm::Gbm, Algorithm::Mlp, Algorithm::Stack] {
        let report = train(&task, &toml, &shared_data("support2.csv"), &registry, algorithm, None).unwrap();
        let m = &report.test;
        aurocs.push(m.auroc);
        assert_eq!(m.n as usize, report.test_rows, "every test row is scored");
        assert_bars(&report.name, m, 0.903);
        assert!(m.calibration_intercept.abs() <= 0.1, "intercept {}", m.calibration_intercept);
        assert!(report.max_additivity_error < 1e-9, "additivity {}", report.max_additivity_error);

        let (_, pkg_dir) = registry.resolve(&report.name, None).unwrap();
        let package = load_package(&pkg_dir).unwrap();
        assert_eq!(package.metrics, report.test);
        let full = metrics_file(&pkg_dir);
        let r = &full.report;
        assert!(r.ici < 0.05 && r.e50 <= r.e90, "ICI {} E50 {} E90 {}", r.ici, r.e50, r.e90);
        assert_eq!(r.risk_band_thresholds.len(), 2);
        assert!(
            r.risk_band_thresholds[0].sensitivity > r.risk_band_thresholds[1].sensitivity,
            "a lower threshold flags more"
        );
        // Curves: ROC from corner to corner, decision curve above treat-none somewhere useful.
        assert_eq!((r.roc_curve[0].x, r.roc_curve.last().unwrap().y), (0.0, 1.0));
        assert!(r.decision_curve.iter().any(|d| d.model > d.treat_all.max(0.0)));
        // Subgroups by default: sex, age band and ethnicity, covering every test row once each.
        for variable in ["Sex", "Age band", "Ethnicity"] {
            let n: u64 = r.subgroups.iter().filter(|g| g.variable == variable).map(|g| g.n).sum();
            assert!(n > 0 && n <= m.n, "{variable}: {n}");
        }
        assert_eq!(r.subgroups.iter().filter(|g| g.variable == "Sex").map(|g| g.n).sum::<u64>(), m.n);
        assert_eq!(full.training.missing_share.len(), 32);

        // The model card, under the package's checksums, in both forms, with TRIPOD+AI's sections.
        let md = std::fs::read_to_string(pkg_dir.join("model_card.md")).unwrap();
        let html = std::fs::read_to_string(pkg_dir.join("model_card.html")).unwrap();
        assert!(
            package.manifest.files.contains_key("model_card.md")
                && package.manifest.files.contains_key("model_card.html")
        );
        for section in [
            "Intended use",
            "Data",
            "Outcome",
            "Predictors",
            "Sample size",
            "Missing data",
            "Model",
            "Performance",
            "Fairness",
            "Limitations",
        ] {
            assert!(md.contains(&format!("## {section}")), "card lacks {section}");
            assert!(html.contains(&format!("<h2>{section}")), "HTML card lacks {section}");
        }
        assert!(md.contains(&format!("{:.3}", m.auroc)));
        assert_eq!(html.matches("<svg").count(), 4, "ROC, PR, calibration and decision curve plots");
        assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains(" href="), "self-contained");

        // Re-evaluating the published package on its test split gives the same report; on every
        // row of the file (a new site's data needs no split column) it scores them all.
        let again =
            evaluate_package(&package, EvaluationData::Table(&shared_data("support2.csv")), Rows::TaskSplit).unwrap();
        assert_eq!(again.report, full.report);
        let all = evaluate_package(&package, EvaluationData::Table(&shared_data("support2.csv")), Rows::All).unwrap();
        assert_eq!(all.report.metrics.n, 9105);

        // The stack's card names each member with its weight and cross-validated AUROC, as its
        // record holds them.
        if algorithm == Algorithm::Stack {
            let Choice::Stack(stack) = &report.model_selection.choice else { panic!("a stack's record") };
            for member in &stack.members {
                let row =
                    format!("| {} | {:.3} | {:.3} |", member.algorithm.short_name(), member.weight, member.cv_auroc);
                assert!(md.contains(&row), "card lacks {row}");
                assert!(member.cv_auroc > 0.85 && member.weight >= 0.0);
            }
            assert!(stack.members.iter().filter(|m| m.weight > 0.0).count() >= 2, "a stack of more than one");
        }
    }
    // The stack (last) against the single models fitted above on the same rows.
    let (stack, singles) = aurocs.split_last().unwrap();
    assert!(singles.iter().all(|a| stack >= a), "stack AUROC {stack} against {singles:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn support2_dementia_meets_the_discrimination_and_slope_bars() {
    let (task, toml) = TaskSpec::load("support2_dementia").unwrap();
    let dir = temp("dementia");
    let report =
        train(&task, &toml, &shared_data("support2.csv"), &Registry::new(&dir), Algorithm::ElasticNet, None).unwrap();
    assert_bars("support2_dementia elastic net", &report.test, 0.909);

    // Discrimination and calibration in the age bands published dementia models report, each
    // band's rows and dementia cases counted here from the data file's test split.
    let pkg_dir = Registry::new(&dir).resolve(&report.name, None).unwrap().1;
    let full = metrics_file(&pkg_dir);
    let band = "Age band as dementia models report (60-79, 80+)";
    let rows = carecast_tables::read_table(&shared_data("support2.csv")).unwrap();
    let (age, split, dementia) =
        (rows.column("age").unwrap(), rows.column("split").unwrap(), rows.column("dementia").unwrap());
    for (level, lo, hi) in [("60 to <80", 60.0, 80.0), ("≥80", 80.0, f64::INFINITY)] {
        let in_band: Vec<usize> = (0..rows.height())
            .filter(|&r| split.str().unwrap().get(r) == Some("test"))
            .filter(|&r| age.f64().unwrap().get(r).is_some_and(|a| (lo..hi).contains(&a)))
            .collect();
        let cases = in_band.iter().filter(|&&r| dementia.i64().unwrap().get(r) == Some(1)).count();
        let g = full.report.subgroups.iter().find(|g| g.variable == band && g.level == level).unwrap();
        eprintln!(
            "support2_dementia, age {level}: {} rows, {} cases, AUROC {:?}, slope {:?}, intercept {:?}",
            g.n, g.events, g.auroc, g.calibration_slope, g.calibration_intercept
        );
        assert_eq!((g.n as usize, g.events as usize), (in_band.len(), cases), "{level}");
        assert!(g.auroc.is_some() && g.calibration_slope.is_some(), "{level}: enough cases to report");
    }
    let card = std::fs::read_to_string(pkg_dir.join("model_card.md")).unwrap();
    assert!(card.contains(&format!("| {band} | 60 to <80 |")) && card.contains(&format!("| {band} | ≥80 |")));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// pbc2 as events (the flat mapping bundled with Carecast), written as MEDS.
fn pbc2_meds(dir: &Path) -> PathBuf {
    let mapping: FlatMapping = toml::from_str(include_str!("../../tasks/pbc2_events.toml")).unwrap();
    let flat = read_flat(&shared_data("pbc2.csv"), &mapping).unwrap();
    let meds = dir.join("meds");
    write_meds(&flat.store, &flat.splits, &meds, "pbc2").unwrap();
    meds
}

#[test]
fn pbc2_death2y_meets_the_bars_and_training_is_reproducible() {
    let dir = temp("pbc2-bars");
    let meds = pbc2_meds(&dir);
    let task = include_str!("../../tasks/pbc2_death2y_events.toml");
    let features = include_str!("../../tasks/pbc2_features.toml");
    let set = event_training_set(&meds, task, features, Rows::TaskSplit).unwrap();
    assert_eq!(set.data.test_rows.len() + set.data.train_rows.len(), 1754, "the task's rows");
    let report = train_set(&set, &Registry::new(dir.join("a")), Algorithm::Logistic, None).unwrap();
    assert_bars("pbc2_death2y logistic", &report.test, 0.894);
    assert!(!set.data.censored_rows.is_empty(), "pbc2 has visits censored within two years");

    // The discrete-time hazard model also learns from the censored visits, and gives the risk by
    // the horizon with exact explanations of its linear predictor.
    let hazard = train_set(&set, &Registry::new(dir.join("hazard")), Algorithm::Hazard, None).unwrap();
    assert_bars("pbc2_death2y hazard", &hazard.test, 0.894);
    let Choice::Hazard(choice) = &hazard.model_selection.choice else {
        panic!("a hazard model records a hazard choice")
    };
    assert_eq!(choice.censored_rows_used, set.data.censored_rows.len());
    assert!(hazard.max_additivity_error < 1e-9);
    assert!(!hazard.excluded_rows.keys().any(|k| k.contains("kept for time-to-event")), "{:?}", hazard.excluded_rows);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("hazard/pbc2_death2y-hazard/1/model.json")).unwrap()).unwrap();
    assert_eq!(model["calibration"]["method"], "discrete_hazard");

    // The same command twice: byte-identical packages (no wall-clock time inside a package), for
    // every model kind a flat or event task trains (the GRU's twice is in events_training).
    for algorithm in [
        Algorithm::Logistic,
        Algorithm::Lasso,
        Algorithm::ElasticNet,
        Algorithm::Gbm,
        Algorithm::Mlp,
        Algorithm::Hazard,
    ] {
        let first = train_set(&set, &Registry::new(dir.join("twice-1")), algorithm, None).unwrap();
        let second = train_set(&set, &Registry::new(dir.join("twice-2")), algorithm, None).unwrap();
        let package = |root: &str, r: &carecast_training::TrainReport| dir.join(root).join(&r.name).join(&r.version);
        let (a, b) = (package("twice-1", &first), package("twice-2", &second));
        let mut files: Vec<_> = std::fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
        files.sort();
        assert!(files.len() >= 7, "{files:?}");
        for f in files {
            assert_eq!(
                std::fs::read(a.join(&f)).unwrap(),
                std::fs::read(b.join(&f)).unwrap(),
                "{algorithm:?}: {f:?} differs"
            );
        }
    }
    // Sex subgroups come from coded attributes; visits repeat patients, and the card says so.
    let full = metrics_file(&dir.join("a/pbc2_death2y-logistic/1"));
    let sexes: Vec<&str> =
        full.report.subgroups.iter().filter(|g| g.variable == "Sex").map(|g| g.level.as_str()).collect();
    assert_eq!(sexes, ["female", "male"]);
    assert!(full.evaluated_patients > 50 && full.evaluated_patients < full.report.metrics.n / 2);
    assert!(
        std::fs::read_to_string(dir.join("a/pbc2_death2y-logistic/1/model_card.md")).unwrap().contains("too narrow")
    );

    // Recalibration in the large for a "new site" (here the test split): the mean prediction
    // moves to the observed rate, the ranking (AUROC) is untouched, and a new version is promoted.
    let registry = Registry::new(dir.join("a"));
    let package = load_package(&dir.join("a/pbc2_death2y-logistic/1")).unwrap();
    let site = EvaluationData::Meds(&meds);
    let r = recalibrate_package(&package, site, Rows::TaskSplit, &registry).unwrap();
    let m = &r.metrics.report.metrics;
    eprintln!(
        "recalibrated by {:+.3} log-odds: intercept {:+.4} (was {:+.4})",
        r.shift, m.calibration_intercept, full.report.metrics.calibration_intercept
    );
    assert!(m.calibration_intercept.abs() < 1e-3 && (r.shift - full.report.metrics.calibration_intercept).abs() < 1e-6);
    assert!((m.auroc - full.report.metrics.auroc).abs() < 1e-12);
    assert_eq!(registry.current("pbc2_death2y-logistic").unwrap(), r.version);
    let recalibrated = load_package(&registry.resolve("pbc2_death2y-logistic", None).unwrap().1).unwrap();
    assert!(r.metrics.max_additivity_error < 1e-9, "explanations stay exact on the shifted scale");
    assert_eq!(recalibrated.manifest.training_data, package.manifest.training_data);

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn calibration_on_the_tuning_split_undoes_class_weighting() {
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let dir = temp("calibration");
    let registry = Registry::new(&dir);
    // Class weights 3:1 overstate risk; Platt or isotonic calibration on the tuning split undoes
    // most of it, and explanations stay exact.
    let mut intercepts = Vec::new();
    for method in [Method::None, Method::Platt, Method::Isotonic] {
        let options = TrainOptions { algorithm: Algorithm::Gbm, calibration: method, positive_weight: 3.0 };
        let report = train(
            &task,
            &toml,
            &shared_data("support2.csv"),
            &registry,
            options,
            Some(&format!("weighted-{method:?}").to_lowercase()),
        )
        .unwrap();
        let m = &report.test;
        eprintln!(
            "GBM weighted 3:1, calibration {method:?}: AUROC {:.3} slope {:.2} intercept {:+.2}",
            m.auroc, m.calibration_slope, m.calibration_intercept
        );
        assert!(report.max_additivity_error < 1e-9);
        assert!(m.auroc > 0.89);
        if method != Method::None {
            assert!((0.9..=1.1).contains(&m.calibration_slope), "slope {}", m.calibration_slope);
        }
        intercepts.push(m.calibration_intercept);
    }
    assert!(intercepts[0] < -0.5, "weighting overstates risk: {intercepts:?}");
    // A fifth of the training rows calibrate, so the correction carries their sampling error.
    assert!(intercepts[1].abs() < 0.3 && intercepts[2].abs() < 0.3, "calibration restores it: {intercepts:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
