//! Evaluation metrics checked against independent implementations: R's pROC 1.18 (Robin et al.
//! 2011) for AUROC, DeLong's standard error, interval and paired test; scikit-learn for AUROC;
//! statsmodels for calibration slope and intercept (binomial GLMs) and its LOWESS beside base R's
//! `lowess` (Cleveland's own Fortran, no robustness iterations, as `rms::val.prob` uses) for ICI,
//! E50 and E90; dcurves (the Python port of Vickers' decision curve analysis) for net benefit.
//!
//! The data are real: the SUPPORT in-hospital deaths of the 300 rows the shared fixtures carry,
//! scored by two models fitted elsewhere (XGBoost and LightGBM), so the two scores are paired and
//! correlated as in a model-against-baseline comparison. A third, deliberately miscalibrated score
//! (each probability squared) gives the calibration indices something large to measure.
//!
//! The references' figures are in `tests/fixtures/reference_metrics/reference.json`, written by
//! `make_reference.py` beside it (which names the versions it ran), so this test needs none of
//! those tools.

use carecast_training::evaluate::{
    Z_975, auroc_delong, auroc_interval, calibration, compare_auroc, ici_e50_e90, logit, net_benefit,
};
use polars::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

fn shared(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(file);
    assert!(p.exists(), "{} not found: tests read the shared data beside the repository", p.display());
    p
}

fn read_csv(path: PathBuf) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path))
        .unwrap()
        .finish()
        .unwrap()
}

fn f64_column(df: &DataFrame, name: &str) -> Vec<f64> {
    let s = df.column(name).unwrap().cast(&DataType::Float64).unwrap();
    s.f64().unwrap().into_no_null_iter().collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
}

#[test]
fn metrics_agree_with_proc_sklearn_statsmodels_r_lowess_and_dcurves() {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference_metrics/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let support = read_csv(shared("data/support2.csv"));
    let died: HashMap<i64, bool> = f64_column(&support, "sno")
        .into_iter()
        .zip(f64_column(&support, "hospdead"))
        .map(|(sno, d)| (sno as i64, d == 1.0))
        .collect();
    let xgb = read_csv(shared("fixtures/xgboost/support2_hospdead_expected.csv"));
    let lgb = read_csv(shared("fixtures/lightgbm/support2_hospdead_expected.csv"));
    let sno = f64_column(&xgb, "sno");
    assert_eq!(sno, f64_column(&lgb, "sno"), "the two fixtures score the same rows in the same order");
    let y: Vec<bool> = sno.iter().map(|s| died[&(*s as i64)]).collect();
    let p1 = f64_column(&xgb, "expected_probability");
    let p2 = f64_column(&lgb, "expected_probability");
    let p3: Vec<f64> = p1.iter().map(|p| p * p).collect();
    assert_eq!(reference["rows"].as_u64(), Some(y.len() as u64), "the fixture was made from these rows");
    assert_eq!(reference["deaths"].as_u64(), Some(y.iter().filter(|d| **d).count() as u64));

    let close = |what: &str, ours: f64, theirs: f64, tol: f64| {
        eprintln!("{what}: Carecast {ours:.12} reference {theirs:.12}");
        assert!((ours - theirs).abs() <= tol, "{what}: Carecast {ours} against {theirs} (tolerance {tol})");
    };
    let thresholds = numbers(&reference["thresholds"]);
    for (name, p) in [("p1", &p1), ("p2", &p2), ("p3", &p3)] {
        let r = &reference["scores"][name];
        let figure = |key: &str| r[key].as_f64().unwrap_or_else(|| panic!("{name}: {key} in the fixture"));
        // DeLong: the same algebra, so agreement to rounding.
        let (auc, se) = auroc_delong(&y, p);
        close(&format!("AUROC {name}, pROC"), auc, figure("auroc_proc"), 1e-12);
        close(&format!("AUROC {name}, scikit-learn"), auc, figure("auroc_sklearn"), 1e-12);
        close(&format!("DeLong SE {name}, pROC"), se, figure("delong_se_proc"), 1e-12);
        let [lower, upper] = auroc_interval(auc, se);
        let ci = numbers(&r["delong_ci_proc"]);
        close(&format!("DeLong 95% CI lower {name}, pROC"), lower, ci[0], 1e-12);
        close(&format!("DeLong 95% CI upper {name}, pROC"), upper, ci[1], 1e-12);
        // Calibration slope and intercept: both Newton's method to convergence.
        let margins: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
        let (slope, intercept) = calibration(&y, &margins);
        close(&format!("calibration slope {name}, statsmodels"), slope, figure("calibration_slope_statsmodels"), 1e-8);
        close(
            &format!("calibration intercept {name}, statsmodels"),
            intercept,
            figure("calibration_intercept_statsmodels"),
            1e-8,
        );
        // Net benefit: counts, so exact but for rounding.
        let theirs = numbers(&r["net_benefit_dcurves"]);
        let all = numbers(&reference["net_benefit_treat_all_dcurves"]);
        for (k, &t) in thresholds.iter().enumerate() {
            let (model, treat_all) = net_benefit(&y, p, t);
            close(&format!("net benefit {name} at {t}, dcurves"), model, theirs[k], 1e-12);
            close(&format!("net benefit of treating all at {t}, dcurves"), treat_all, all[k], 1e-12);
        }
        // Calibration indices: Carecast fits on a grid of 200 anchor rows and interpolates (R and
        // statsmodels fit at every row); they agree to a tenth of a percentage point or better
        // (E90, on the steep miscalibrated curve, is the most sensitive to the interpolation).
        if let Some(statsmodels) = r.get("ici_e50_e90_statsmodels") {
            let ours = ici_e50_e90(&y, p);
            for (source, theirs) in
                [("statsmodels", numbers(statsmodels)), ("R lowess", numbers(&r["ici_e50_e90_r_lowess"]))]
            {
                close(&format!("ICI {name}, {source}"), ours.0, theirs[0], 5e-4);
                close(&format!("E50 {name}, {source}"), ours.1, theirs[1], 5e-4);
                close(&format!("E90 {name}, {source}"), ours.2, theirs[2], 1.5e-3);
            }
        }
    }
    let ici = |name: &str| numbers(&reference["scores"][name]["ici_e50_e90_r_lowess"])[0];
    assert!(ici("p3") > 2.0 * ici("p1"), "the miscalibrated score is measured as such");
    let slope = |name: &str| reference["scores"][name]["calibration_slope_statsmodels"].as_f64().unwrap();
    assert!((slope("p1") - slope("p3")).abs() > 0.1, "the slopes differ, so the check means something");

    // The paired test: the z statistic to rounding, the p-value through an erfc approximation
    // good to about 1e-7.
    let paired = &reference["paired_delong_p1_vs_p2_proc"];
    let c = compare_auroc(&y, &p1, "LightGBM", &p2).unwrap();
    let z = c.difference / ((c.difference_ci[1] - c.difference_ci[0]) / (2.0 * Z_975));
    close("paired DeLong z, pROC", z, paired["z"].as_f64().unwrap(), 1e-9);
    close("paired DeLong p, pROC", c.p_value, paired["p"].as_f64().unwrap(), 2e-7);
    assert!(paired["p"].as_f64().unwrap() < 0.9999, "the p-value is not 1, so the check means something");
}
