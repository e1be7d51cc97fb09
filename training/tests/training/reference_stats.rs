//! DeLong's AUROC standard error and paired test, and the smoothed-calibration indices (ICI, E50,
//! E90), checked against R: pROC 1.18 (Robin et al. 2011) for DeLong, and base R's `lowess`
//! (Cleveland's own Fortran, no robustness iterations, as `rms::val.prob` uses) for calibration.
//!
//! The data are real: the SUPPORT in-hospital deaths of the 300 rows the shared fixtures carry,
//! scored by two models fitted elsewhere (XGBoost and LightGBM), so the two scores are paired and
//! correlated as in a model-against-baseline comparison. A third, deliberately miscalibrated score
//! (each probability squared) gives the calibration indices something large to measure.
//!
//! R is a test dependency (`.ci/run` installs Debian's `r-cran-proc`): without `Rscript` the test
//! says so and passes, except under CI (`CI` set), where it fails.

use carecast_training::evaluate::{auroc_delong, compare_auroc, ici_e50_e90};
use polars::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

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

/// R's figures for the same inputs, one `name value` per line.
const R_SCRIPT: &str = r#"
suppressMessages(library(pROC))
d <- read.csv(commandArgs(trailingOnly = TRUE)[1])
r1 <- roc(d$y, d$p1, levels = c(0, 1), direction = "<", quiet = TRUE)
r2 <- roc(d$y, d$p2, levels = c(0, 1), direction = "<", quiet = TRUE)
t <- roc.test(r1, r2, method = "delong", paired = TRUE)
out <- c(auc1 = as.numeric(auc(r1)), se1 = sqrt(var(r1, method = "delong")),
         auc2 = as.numeric(auc(r2)), se2 = sqrt(var(r2, method = "delong")),
         z = unname(t$statistic), p = t$p.value)
for (name in c("p1", "p3")) {
  fit <- lowess(d[[name]], d$y, f = 0.75, iter = 0, delta = 0)
  err <- abs(fit$y - fit$x)
  out[paste0("ici_", name)] <- mean(err)
  out[paste0("e50_", name)] <- quantile(err, 0.5, type = 7)
  out[paste0("e90_", name)] <- quantile(err, 0.9, type = 7)
}
for (k in names(out)) cat(k, sprintf("%.17g", out[[k]]), "\n")
"#;

#[test]
fn delong_and_calibration_indices_agree_with_proc_and_r_lowess() {
    if Command::new("Rscript").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "CI is set but Rscript is missing: .ci/run installs r-cran-proc for this test"
        );
        eprintln!("Rscript not found: skipping the comparison with pROC and R's lowess");
        return;
    }
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
    assert!(y.iter().filter(|d| **d).count() > 30, "enough deaths for a meaningful comparison");

    let dir = std::env::temp_dir().join(format!("carecast-reference-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("y,p1,p2,p3\n");
    for i in 0..y.len() {
        csv += &format!("{},{:e},{:e},{:e}\n", u8::from(y[i]), p1[i], p2[i], p3[i]);
    }
    std::fs::write(dir.join("scores.csv"), csv).unwrap();
    std::fs::write(dir.join("reference.R"), R_SCRIPT).unwrap();
    let out = Command::new("Rscript").arg(dir.join("reference.R")).arg(dir.join("scores.csv")).output().unwrap();
    assert!(out.status.success(), "Rscript failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: HashMap<String, f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.trim().parse().unwrap())))
        .collect();
    std::fs::remove_dir_all(&dir).ok();

    let close = |what: &str, ours: f64, theirs: f64, tol: f64| {
        eprintln!("{what}: Carecast {ours:.10} R {theirs:.10}");
        assert!((ours - theirs).abs() <= tol, "{what}: Carecast {ours} against R's {theirs} (tolerance {tol})");
    };
    // DeLong: the same algebra, so agreement to rounding; the p-value through an erfc
    // approximation good to about 1e-7.
    let (auc1, se1) = auroc_delong(&y, &p1);
    let (auc2, se2) = auroc_delong(&y, &p2);
    close("AUROC, XGBoost", auc1, r["auc1"], 1e-12);
    close("DeLong SE, XGBoost", se1, r["se1"], 1e-12);
    close("AUROC, LightGBM", auc2, r["auc2"], 1e-12);
    close("DeLong SE, LightGBM", se2, r["se2"], 1e-12);
    let c = compare_auroc(&y, &p1, "LightGBM", &p2).unwrap();
    let z = c.difference / ((c.difference_ci[1] - c.difference_ci[0]) / (2.0 * 1.959_964));
    close("paired DeLong z", z, r["z"], 1e-6);
    close("paired DeLong p", c.p_value, r["p"], 2e-7);
    assert!(r["p"] > 1e-4 && r["p"] < 0.9999, "the p-value is neither 0 nor 1, so the check means something");

    // Calibration: Carecast fits on a grid of 200 anchor rows and interpolates (R fits at every
    // row); the indices agree to a tenth of a percentage point or better (E90, on the steep
    // miscalibrated curve, is the most sensitive to the interpolation).
    for (name, p) in [("p1", &p1), ("p3", &p3)] {
        let (ici, e50, e90) = ici_e50_e90(&y, p);
        close(&format!("ICI {name}"), ici, r[&format!("ici_{name}")], 5e-4);
        close(&format!("E50 {name}"), e50, r[&format!("e50_{name}")], 5e-4);
        close(&format!("E90 {name}"), e90, r[&format!("e90_{name}")], 1.5e-3);
    }
    assert!(r["ici_p3"] > 2.0 * r["ici_p1"], "the miscalibrated score is measured as such");
}
