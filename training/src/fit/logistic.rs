//! L2-regularised logistic regression, fitted by linfa (LBFGS) on the standardised encoding, with
//! the penalty chosen by patient-level cross-validation on the training rows.

use super::learner::{Checked, FitError, FitInput, Learned, Learner, ParamError};
use carecast_models::Estimator;
use carecast_models::linear::LinearModel;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray016::{Array1, Array2, ShapeBuilder};
use serde::{Deserialize, Serialize};

/// The L2 penalties cross-validation chooses among.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticParams {
    /// linfa's `alpha`: the L2 weight on the summed log-loss.
    pub alphas: Vec<f64>,
}

impl Default for LogisticParams {
    fn default() -> Self {
        Self { alphas: vec![0.1, 1.0, 3.0, 10.0, 30.0] }
    }
}

impl Learner for LogisticParams {
    type Selection = LogisticChoice;

    fn validate(&self) -> Result<(), ParamError> {
        let name = |param| ParamError::new("logistic", param);
        name("alphas").unless(!self.alphas.is_empty(), "needs at least one penalty")?;
        name("alphas").unless(self.alphas.iter().all(|a| a.is_finite() && *a > 0.0), "each must be a positive number")
    }

    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<LogisticChoice>, FitError> {
        let fitting = input.fitting_rows();
        let (x, y) = input.data.subset(&fitting);
        let design = Design { x: &x, n_cols: input.data.n_cols, y: &y };
        let (n_folds, folds) = input.cv_folds(&fitting);
        let cv = cross_validate(&design, &folds, n_folds, &params.alphas)?;
        let alpha = cv.iter().min_by(|a, b| a.log_loss.total_cmp(&b.log_loss)).expect("checked: not empty").penalty;
        Ok(Learned {
            estimator: Estimator::LogisticRegression(fit(&design, alpha)?),
            calibration: None,
            method: format!("{n_folds}-fold cross-validated log-loss over the L2 penalty (folds by key)"),
            selection: LogisticChoice { alpha, cv_log_loss: cv },
        })
    }
}

/// A dense row-major design matrix with binary labels.
pub struct Design<'a> {
    pub x: &'a [f64],
    pub n_cols: usize,
    pub y: &'a [bool],
}

impl Design<'_> {
    fn rows(&self) -> usize {
        self.y.len()
    }

    /// The rows as a column-major matrix: linfa's gradient multiplies by the transpose, whose
    /// rows are then contiguous (row-major, that product walked strided columns: four fifths of
    /// the fit's time).
    fn subset(&self, rows: &[usize]) -> (Array2<f64>, Array1<bool>) {
        let mut flat = Vec::with_capacity(rows.len() * self.n_cols);
        for c in 0..self.n_cols {
            flat.extend(rows.iter().map(|&r| self.x[r * self.n_cols + c]));
        }
        let x = Array2::from_shape_vec((rows.len(), self.n_cols).f(), flat).expect("shape matches");
        (x, rows.iter().map(|&r| self.y[r]).collect())
    }
}

/// A fit's coefficients as linfa holds them (weights then intercept, in linfa's label orientation),
/// used to warm-start the next fit on the same rows.
type WarmStart = Array1<f64>;

/// Fits on the given rows; returns intercept and weights for P(label = true), and the warm start.
fn fit_rows(
    design: &Design<'_>,
    rows: &[usize],
    alpha: f64,
    warm: Option<WarmStart>,
) -> Result<(f64, Vec<f64>, WarmStart), FitError> {
    let (x, y) = design.subset(rows);
    let mut params = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(500)
        // The loss is summed over rows: 1e-3 on its gradient is a mean gradient below 1e-6 here.
        .gradient_tolerance(1e-3);
    if let Some(w) = warm {
        params = params.initial_params(w);
    }
    let fitted = params.fit(&Dataset::new(x, y))?;
    let raw: WarmStart = fitted.params().iter().copied().chain([fitted.intercept()]).collect();
    // linfa labels its more frequent class as "positive": turn the coefficients round when that
    // class is `false`, so the model always gives the log-odds of the outcome.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    Ok((sign * fitted.intercept(), fitted.params().iter().map(|w| sign * w).collect(), raw))
}

fn mean_log_loss(design: &Design<'_>, rows: &[usize], intercept: f64, weights: &[f64]) -> f64 {
    let n = design.n_cols;
    rows.iter()
        .map(|&r| {
            let z = intercept + design.x[r * n..(r + 1) * n].iter().zip(weights).map(|(a, b)| a * b).sum::<f64>();
            // log(1 + e^-z) for positives, log(1 + e^z) for negatives, computed stably.
            let s = if design.y[r] { -z } else { z };
            s.max(0.0) + (-s.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / rows.len() as f64
}

/// Each penalty's cross-validated log-loss; `fold[r]` assigns row `r` a fold. Each fold walks the
/// penalties from the strongest down, warm-starting every fit from the previous one (a
/// regularisation path), which is what keeps the weakly penalised fits fast.
fn cross_validate(
    design: &Design<'_>,
    fold: &[usize],
    n_folds: usize,
    alphas: &[f64],
) -> Result<Vec<PenaltyLoss>, FitError> {
    let mut alphas = alphas.to_vec();
    alphas.sort_by(f64::total_cmp);
    let mut loss = vec![0.0; alphas.len()];
    for k in 0..n_folds {
        let train: Vec<usize> = (0..design.rows()).filter(|&r| fold[r] != k).collect();
        let valid: Vec<usize> = (0..design.rows()).filter(|&r| fold[r] == k).collect();
        let mut warm = None;
        for (i, &alpha) in alphas.iter().enumerate().rev() {
            let (b, w, raw) = fit_rows(design, &train, alpha, warm.take())?;
            loss[i] += mean_log_loss(design, &valid, b, &w) * valid.len() as f64;
            warm = Some(raw);
        }
    }
    Ok(alphas
        .iter()
        .zip(&loss)
        .map(|(&penalty, &l)| PenaltyLoss { penalty, log_loss: l / design.rows() as f64 })
        .collect())
}

/// Fits on every row; the background for explanations is the mean encoded row.
fn fit(design: &Design<'_>, alpha: f64) -> Result<LinearModel, FitError> {
    let rows: Vec<usize> = (0..design.rows()).collect();
    let (intercept, weights, _) = fit_rows(design, &rows, alpha, None)?;
    let mut background = vec![0.0; design.n_cols];
    for r in 0..design.rows() {
        for (m, x) in background.iter_mut().zip(&design.x[r * design.n_cols..(r + 1) * design.n_cols]) {
            *m += x;
        }
    }
    background.iter_mut().for_each(|m| *m /= design.rows() as f64);
    Ok(LinearModel { intercept, weights, background })
}

/// A penalty and the held-out log-loss it reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PenaltyLoss {
    pub penalty: f64,
    pub log_loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticChoice {
    /// linfa's `alpha`: the L2 weight on the summed log-loss.
    pub alpha: f64,
    pub cv_log_loss: Vec<PenaltyLoss>,
}
