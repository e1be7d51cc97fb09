//! Fitting: the preprocessor's statistics, the estimators, and their calibration. [`fit`] takes
//! rows already encoded by the model's own preprocessor and returns everything `model.json` holds
//! besides the preprocessor, with a record of how hyper-parameters were chosen.
//!
//! Splits are by patient key: cross-validation folds are `key_hash % 5`, and the tuning split is
//! fold 0. The linear models' penalties and the GBM's tree shape are chosen by cross-validation
//! over the folds, and the final model is refitted on every training row; the networks early-stop
//! on the tuning split and keep the fit on the other folds. With calibration, fold 0 is kept for
//! the calibration map alone, so the map never sees its own fit's rows.

pub mod calibrate;
pub mod elastic_net;
pub mod gbm;
pub mod gru_training;
pub mod hazard;
pub mod logistic;
pub mod mlp_training;
pub mod network;
pub mod preprocessor_training;

use carecast_models::calibration::Calibration;
use carecast_models::preprocess::{Encoding, Preprocessor};
use carecast_models::{Estimator, FeatureKind, Monotone};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Logistic regression with an L2 penalty (linfa).
    Logistic,
    /// Logistic regression with an L1 penalty (our coordinate descent).
    Lasso,
    /// Logistic regression with an equal mix of L1 and L2 penalties (our coordinate descent).
    ElasticNet,
    /// Histogram gradient-boosted trees (ours).
    Gbm,
    /// A multilayer perceptron (burn), on the standardised encoding.
    Mlp,
    /// A GRU (burn) over the event sequence (features with a `step`), beside the other features.
    Gru,
    /// A discrete-time hazard model: risk by the horizon from censored follow-up (event tasks).
    Hazard,
}

impl Algorithm {
    /// What `carecast train` fits when no model is named: every algorithm that needs neither an
    /// event sequence (the GRU) nor censored follow-up (the hazard model).
    pub const DEFAULT_SET: [Algorithm; 5] =
        [Algorithm::Logistic, Algorithm::Lasso, Algorithm::ElasticNet, Algorithm::Gbm, Algorithm::Mlp];

    pub fn short_name(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic",
            Algorithm::Lasso => "lasso",
            Algorithm::ElasticNet => "elastic_net",
            Algorithm::Gbm => "gbm",
            Algorithm::Mlp => "mlp",
            Algorithm::Gru => "gru",
            Algorithm::Hazard => "hazard",
        }
    }

    /// Linear models need imputed, standardised columns; trees take values as they are.
    pub fn encoding(self) -> Encoding {
        match self {
            Algorithm::Gbm => Encoding::Native,
            _ => Encoding::Standardised,
        }
    }
}

/// Everything `carecast train` lets a researcher choose about a fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainOptions {
    pub algorithm: Algorithm,
    pub calibration: calibrate::Method,
    /// Trees only: weight of a positive row relative to a negative one (1: unweighted).
    pub positive_weight: f64,
}

/// Why a fit's options were refused: checked before any data is read.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error("positive-weight: must be a positive number, not {0}")]
    PositiveWeight(f64),
    #[error("calibration: a hazard model gives risks by the horizon directly; it takes no calibration")]
    HazardCalibration,
}

impl TrainOptions {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !(self.positive_weight.is_finite() && self.positive_weight > 0.0) {
            return Err(OptionsError::PositiveWeight(self.positive_weight));
        }
        if self.algorithm == Algorithm::Hazard && self.calibration != calibrate::Method::None {
            return Err(OptionsError::HazardCalibration);
        }
        Ok(())
    }
}

impl From<Algorithm> for TrainOptions {
    fn from(algorithm: Algorithm) -> Self {
        Self { algorithm, calibration: calibrate::Method::None, positive_weight: 1.0 }
    }
}

/// Training rows after encoding: row-major columns, labels, each row's key hash, and (event
/// tasks) each row's follow-up for time-to-event models.
pub struct Encoded {
    pub x: Vec<f64>,
    pub n_cols: usize,
    pub y: Vec<bool>,
    pub key_hash: Vec<u64>,
    pub follow_up: Vec<(f64, bool)>,
}

impl Encoded {
    fn rows(&self, pick: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..self.y.len()).filter(|&r| pick(r)).collect()
    }

    fn subset(&self, rows: &[usize]) -> (Vec<f64>, Vec<bool>) {
        let x = rows.iter().flat_map(|&r| self.x[r * self.n_cols..(r + 1) * self.n_cols].iter().copied()).collect();
        (x, rows.iter().map(|&r| self.y[r]).collect())
    }

    fn columns(&self, rows: &[usize]) -> (Vec<Vec<f64>>, Vec<f64>) {
        let cols = (0..self.n_cols).map(|c| rows.iter().map(|&r| self.x[r * self.n_cols + c]).collect()).collect();
        (cols, rows.iter().map(|&r| f64::from(u8::from(self.y[r]))).collect())
    }

    fn fold(&self, r: usize) -> usize {
        (self.key_hash[r] % 5) as usize
    }
}

/// A fitted estimator with its calibration map and how it was chosen.
pub struct Fitted {
    pub estimator: Estimator,
    pub calibration: Option<Calibration>,
    pub selection: serde_json::Value,
}

/// Per encoded column: +1 / -1 where the owning numeric feature is constrained, else 0.
pub fn monotone_columns(pre: &Preprocessor) -> Vec<i8> {
    pre.column_owners()
        .iter()
        .map(|&f| {
            let spec = &pre.features[f].spec;
            match (spec.kind, spec.monotone) {
                (FeatureKind::Numeric, Some(Monotone::Increasing)) => 1,
                (FeatureKind::Numeric, Some(Monotone::Decreasing)) => -1,
                _ => 0,
            }
        })
        .collect()
}

/// Fits the chosen estimator (and calibration) on encoded training rows.
pub fn fit(options: &TrainOptions, pre: &Preprocessor, data: &Encoded) -> anyhow::Result<Fitted> {
    options.validate()?;
    if options.algorithm == Algorithm::Hazard {
        let (model, calibration, selection) = hazard::fit(data)?;
        return Ok(Fitted {
            estimator: Estimator::LogisticRegression(model),
            calibration: Some(calibration),
            selection,
        });
    }
    let calibrating = options.calibration != calibrate::Method::None;
    let tuning = data.rows(|r| data.fold(r) == 0);
    let fitting = if calibrating { data.rows(|r| data.fold(r) != 0) } else { data.rows(|_| true) };
    let (estimator, mut selection) = match options.algorithm {
        Algorithm::Gbm => fit_gbm(options, pre, data, &fitting, calibrating),
        Algorithm::Hazard => unreachable!("fitted above"),
        Algorithm::Mlp | Algorithm::Gru => {
            let schedule = network::Schedule { positive_weight: options.positive_weight, ..Default::default() };
            let (x, y) = data.subset(&data.rows(|r| data.fold(r) != 0));
            let (tx, ty) = data.subset(&tuning);
            let (estimator, best_epoch, tuning_log_loss, params) = if options.algorithm == Algorithm::Mlp {
                let params = mlp_training::MlpParams::new(schedule);
                let fitted = mlp_training::fit(&x, &y, &tx, &ty, data.n_cols, params);
                (Estimator::Mlp(fitted.model), fitted.best_epoch, fitted.tuning_log_loss, json!(params))
            } else {
                let params = gru_training::GruParams::new(schedule);
                let fitted = gru_training::fit(&x, &y, &tx, &ty, data.n_cols, &gru_training::Layout::of(pre)?, params);
                (Estimator::Gru(Box::new(fitted.model)), fitted.best_epoch, fitted.tuning_log_loss, json!(params))
            };
            let selection = json!({
                "method": "early stopping on a 20% tuning split of the training rows (by key); the network fitted on the other 80% is kept",
                "best_epoch": best_epoch,
                "tuning_log_loss": tuning_log_loss,
                "params": params,
            });
            (estimator, selection)
        }
        linear => {
            let (x, y) = data.subset(&fitting);
            let design = logistic::Design { x: &x, n_cols: data.n_cols, y: &y };
            let folds: Vec<usize> = fitting.iter().map(|&r| data.fold(r)).collect();
            let (n_folds, folds) = if calibrating { (4, folds.iter().map(|f| f - 1).collect()) } else { (5, folds) };
            match linear {
                Algorithm::Logistic => {
                    let (alpha, cv) = logistic::choose_alpha(&design, &folds, n_folds)?;
                    let selection = json!({
                        "method": format!("{n_folds}-fold cross-validated log-loss over the L2 penalty (folds by key)"),
                        "alpha": alpha,
                        "cv_log_loss": cv.iter().map(|(a, l)| json!({"alpha": a, "log_loss": l})).collect::<Vec<_>>(),
                    });
                    (Estimator::LogisticRegression(logistic::fit(&design, alpha)?), selection)
                }
                _ => {
                    let mix = if linear == Algorithm::Lasso { 1.0 } else { 0.5 };
                    let (model, s) = elastic_net::fit_cv(&design, &folds, n_folds, mix);
                    let selection = json!({
                        "method": format!("{n_folds}-fold cross-validated log-loss along a {}-step lambda path (folds by key)", s.cv_log_loss.len()),
                        "l1_share": s.mix,
                        "lambda": s.lambda,
                        "nonzero_weights": s.nonzero_weights,
                        "cv_log_loss": s.cv_log_loss.iter().map(|(l, v)| json!({"lambda": l, "log_loss": v})).collect::<Vec<_>>(),
                    });
                    (Estimator::LogisticRegression(model), selection)
                }
            }
        }
    };
    let calibration = if calibrating {
        let (x, y) = data.subset(&tuning);
        let margins: Vec<f64> = x.chunks(data.n_cols).map(|row| estimator.margin(row)).collect();
        let map = match options.calibration {
            calibrate::Method::Platt => calibrate::platt(&y, &margins),
            calibrate::Method::Isotonic => calibrate::isotonic(&y, &margins),
            calibrate::Method::None => unreachable!("calibrating"),
        };
        selection["calibration"] = json!({"method": options.calibration, "fitted_on": "tuning split (fold 0 by key), not used to fit the model", "rows": tuning.len()});
        Some(map)
    } else {
        None
    };
    Ok(Fitted { estimator, calibration, selection })
}

/// Tree shapes the GBM search tries (leaves, depth): stumps-like to moderately deep. The learning
/// rate stays small and the number of rounds is found by early stopping in each fold.
const GBM_SHAPES: [(usize, usize); 3] = [(4, 2), (8, 4), (16, 6)];

/// Patient-level cross-validation over [`GBM_SHAPES`]: each shape is fitted on all folds but one
/// and early-stopped on the one left out; the shape with the lowest mean held-out log-loss wins,
/// and the final model is fitted on every fitting row (all training rows, or without calibration's
/// tuning fold) with the folds' mean best rounds scaled by the row ratio.
fn fit_gbm(
    options: &TrainOptions,
    pre: &Preprocessor,
    data: &Encoded,
    fitting: &[usize],
    calibrating: bool,
) -> (Estimator, serde_json::Value) {
    use rayon::prelude::*;
    let base = gbm::GbmParams { positive_weight: options.positive_weight, ..Default::default() };
    let monotone = monotone_columns(pre);
    // With calibration, fold 0 is kept for the calibration map and the search uses folds 1-4.
    let folds: Vec<usize> = if calibrating { (1..5).collect() } else { (0..5).collect() };
    let runs: Vec<(usize, usize, gbm::GbmFit, usize)> = GBM_SHAPES
        .iter()
        .flat_map(|&shape| folds.iter().map(move |&k| (shape, k)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|((leaves, depth), k)| {
            let (fit_x, fit_y) = data.columns(&data.rows(|r| folds.contains(&data.fold(r)) && data.fold(r) != k));
            let (tune_x, tune_y) = data.columns(&data.rows(|r| data.fold(r) == k));
            let params = gbm::GbmParams { max_leaves: leaves, max_depth: depth, ..base };
            let fitted = gbm::fit(
                &gbm::Columns { values: &fit_x },
                &fit_y,
                Some((&gbm::Columns { values: &tune_x }, &tune_y)),
                params,
                &monotone,
            );
            (leaves, depth, fitted, fit_y.len())
        })
        .collect();
    // Per shape: held-out log-loss averaged over folds (weighted by rows), and rounds per row.
    let summary: Vec<((usize, usize), f64, f64)> = GBM_SHAPES
        .iter()
        .map(|&(leaves, depth)| {
            let mine: Vec<_> = runs.iter().filter(|r| (r.0, r.1) == (leaves, depth)).collect();
            let held_out = |n_fit: usize| (fitting.len() - n_fit) as f64;
            let loss =
                mine.iter().map(|r| r.2.best_tuning_log_loss.unwrap_or(f64::INFINITY) * held_out(r.3)).sum::<f64>()
                    / mine.iter().map(|r| held_out(r.3)).sum::<f64>();
            let rounds_per_row = mine.iter().map(|r| r.2.rounds as f64 / r.3 as f64).sum::<f64>() / mine.len() as f64;
            ((leaves, depth), loss, rounds_per_row)
        })
        .collect();
    let &((leaves, depth), loss, rounds_per_row) =
        summary.iter().fold(&summary[0], |best, s| if s.1 < best.1 { s } else { best });
    // More rows support proportionally more rounds at the same learning rate.
    let rounds = ((rounds_per_row * fitting.len() as f64).round() as usize).max(1);
    let params = gbm::GbmParams { max_leaves: leaves, max_depth: depth, max_rounds: rounds, ..base };
    let (all_x, all_y) = data.columns(fitting);
    let final_fit = gbm::fit(&gbm::Columns { values: &all_x }, &all_y, None, params, &monotone);
    let selection = json!({
        "method": format!("{}-fold cross-validation by key over tree shapes (leaves, depth), each fold early-stopped on its held-out rows; refit on {} with the folds' mean rounds scaled by the row ratio", folds.len(), if calibrating { "the rows outside the calibration fold" } else { "all training rows" }),
        "cv_log_loss": summary.iter().map(|((l, d), loss, _)| json!({"leaves": l, "depth": d, "log_loss": loss})).collect::<Vec<_>>(),
        "chosen": {"leaves": leaves, "depth": depth, "cv_log_loss": loss},
        "final_rounds": rounds,
        "params": params,
        "monotone_columns": monotone.iter().filter(|m| **m != 0).count(),
    });
    (Estimator::GradientBoostedTrees(final_fit.ensemble), selection)
}
