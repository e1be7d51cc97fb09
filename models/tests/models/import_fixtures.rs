//! Models imported from XGBoost and LightGBM score and explain exactly as the libraries do: on
//! every row of the shared fixtures (`../shared/fixtures`, saved with each library's own
//! margins, probabilities and TreeSHAP contributions), missing values included.

use carecast_models::tree_import::{Imported, lightgbm_text, xgboost_json};
use carecast_models::tree_predictor::TreePredictor;
use carecast_models::tree_shap::TreeShapBuffer;
use std::path::PathBuf;

const TOLERANCE: f64 = 1e-5;

fn fixture(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures").join(path);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (tests read the shared fixtures beside the repository)", p.display()))
}

/// A CSV of numbers with a header (no quoting in the fixtures); empty cells are NaN.
fn table(text: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(str::to_string).collect();
    let rows = lines
        .map(|l| l.split(',').map(|v| if v.is_empty() { f64::NAN } else { v.parse().unwrap() }).collect())
        .collect();
    (header, rows)
}

/// Checks the trees' structure, then margins, probabilities, the base value and every
/// contribution against the library's.
fn check_against_library(model: &Imported, expected: &str) {
    assert!(model.ensemble.trees.iter().all(|t| t.validate(model.feature_names.len()).is_ok()));
    let (header, rows) = table(expected);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    // LightGBM writes `.` in feature names as `_`; the fixture keeps the data's names.
    let data_name = |model_name: &str| {
        header
            .iter()
            .find(|h| h.replace('.', "_") == model_name.replace('.', "_") && !h.starts_with("contrib_"))
            .unwrap()
            .clone()
    };
    let features: Vec<usize> = model.feature_names.iter().map(|n| col(&data_name(n))).collect();
    let contribs: Vec<usize> = model.feature_names.iter().map(|n| col(&format!("contrib_{}", data_name(n)))).collect();
    let (margin_at, p_at, bias_at) = (col("expected_margin"), col("expected_probability"), col("contrib_bias"));
    let ensemble = &model.ensemble;
    // As a loaded package scores and explains: through the compiled predictor.
    let predictor = TreePredictor::new(ensemble);
    let mut buf = TreeShapBuffer::default();
    let (mut worst_margin, mut worst_contribution, mut missing_cells) = (0.0f64, 0.0f64, 0);
    for row in &rows {
        let x: Vec<f64> = features.iter().map(|&c| row[c]).collect();
        missing_cells += x.iter().filter(|v| v.is_nan()).count();
        let mut margin = [0.0];
        predictor.margins(&x, x.len(), &mut margin);
        let margin = margin[0];
        worst_margin = worst_margin.max((margin - row[margin_at]).abs());
        let p = 1.0 / (1.0 + (-margin).exp());
        assert!((p - row[p_at]).abs() <= TOLERANCE, "probability {p} vs {}", row[p_at]);
        let mut phi = vec![0.0; x.len()];
        predictor.contributions(ensemble, &x, x.len(), &mut phi, &mut buf);
        for (j, &c) in contribs.iter().enumerate() {
            worst_contribution = worst_contribution.max((phi[j] - row[c]).abs());
        }
        assert!(
            (ensemble.expected_margin() - row[bias_at]).abs() <= TOLERANCE,
            "base value {} vs {}",
            ensemble.expected_margin(),
            row[bias_at]
        );
    }
    eprintln!(
        "{} rows, {missing_cells} missing cells: max |Δ margin| {worst_margin:.1e}, max |Δ contribution| {worst_contribution:.1e}",
        rows.len()
    );
    assert!(missing_cells > 0, "the fixture exercises missing values");
    assert!(worst_margin <= TOLERANCE, "margin off by {worst_margin}");
    assert!(worst_contribution <= TOLERANCE, "contribution off by {worst_contribution}");
}

#[test]
fn xgboost_model_scores_and_explains_as_xgboost_does() {
    let model = xgboost_json(&fixture("xgboost/support2_hospdead.json")).unwrap();
    assert_eq!(model.ensemble.trees.len(), 120);
    check_against_library(&model, &fixture("xgboost/support2_hospdead_expected.csv"));
}

#[test]
fn lightgbm_model_scores_and_explains_as_lightgbm_does() {
    let model = lightgbm_text(&fixture("lightgbm/support2_hospdead.txt")).unwrap();
    assert_eq!(model.ensemble.trees.len(), 120);
    check_against_library(&model, &fixture("lightgbm/support2_hospdead_expected.csv"));
}

#[test]
fn benchmark_model_margins_match_xgboost_one_row_or_in_blocks() {
    let model = xgboost_json(&fixture("xgboost/bench_300x6_50f.json")).unwrap();
    assert_eq!((model.ensemble.trees.len(), model.ensemble.max_depth()), (300, 6));
    let (header, rows) = table(&fixture("xgboost/bench_300x6_50f_rows.csv"));
    let margin_at = header.iter().position(|h| h == "expected_margin").unwrap();
    let features: Vec<usize> =
        model.feature_names.iter().map(|n| header.iter().position(|h| h == n).unwrap()).collect();
    let x: Vec<f64> = rows.iter().flat_map(|row| features.iter().map(|&c| row[c])).collect();
    let mut batch = vec![0.0; rows.len()];
    TreePredictor::new(&model.ensemble).margins(&x, features.len(), &mut batch);
    for ((row, x), &from_batch) in rows.iter().zip(x.chunks(features.len())).zip(&batch) {
        let margin = model.ensemble.margin(x);
        assert!((margin - row[margin_at]).abs() <= TOLERANCE);
        assert!((from_batch - margin).abs() <= 1e-12, "block prediction {from_batch} vs one row {margin}");
    }
}

#[test]
fn bad_model_files_are_refused_naming_the_place() {
    let e = xgboost_json("{\"learner\": {\"objective\": {\"name\": \"reg:squarederror\"}}}").unwrap_err();
    assert!(e.to_string().contains("learner.objective") && e.to_string().contains("reg:squarederror"), "{e}");
    let text = fixture("xgboost/support2_hospdead.json").replacen("\"split_indices\":[6,", "\"split_indices\":[99,", 1);
    let e = xgboost_json(&text).unwrap_err();
    assert!(e.to_string().contains("tree 0") && e.to_string().contains("feature 99"), "{e}");
    let text = fixture("lightgbm/support2_hospdead.txt").replacen("decision_type=10 8", "decision_type=11 8", 1);
    let e = lightgbm_text(&text).unwrap_err();
    assert!(e.to_string().contains("Tree=0") && e.to_string().contains("categorical"), "{e}");
    assert!(
        lightgbm_text("objective=regression\nfeature_names=a\n")
            .unwrap_err()
            .to_string()
            .contains("not the binary objective")
    );
}
