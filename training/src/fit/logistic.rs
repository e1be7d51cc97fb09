//! L2-regularised logistic regression, fitted by linfa (LBFGS) on the standardised encoding, with
//! the penalty chosen by patient-level cross-validation on the training rows.

use carecast_models::linear::LinearModel;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray016::{Array1, Array2};

/// Penalties tried by cross-validation (linfa's `alpha`: the L2 weight on the summed log-loss).
pub const ALPHA_GRID: [f64; 5] = [0.1, 1.0, 3.0, 10.0, 30.0];

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

    fn subset(&self, rows: &[usize]) -> (Array2<f64>, Array1<bool>) {
        let mut flat = Vec::with_capacity(rows.len() * self.n_cols);
        for &r in rows {
            flat.extend_from_slice(&self.x[r * self.n_cols..(r + 1) * self.n_cols]);
        }
        let x = Array2::from_shape_vec((rows.len(), self.n_cols), flat).expect("shape matches");
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
) -> anyhow::Result<(f64, Vec<f64>, WarmStart)> {
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

/// Chooses the penalty with the lowest cross-validated log-loss; `fold[r]` assigns row `r` a fold.
/// Each fold walks the grid from the strongest penalty down, warm-starting every fit from the
/// previous one (a regularisation path), which is what keeps the weakly penalised fits fast.
pub fn choose_alpha(design: &Design<'_>, fold: &[usize], n_folds: usize) -> anyhow::Result<(f64, Vec<(f64, f64)>)> {
    let mut loss = vec![0.0; ALPHA_GRID.len()];
    for k in 0..n_folds {
        let train: Vec<usize> = (0..design.rows()).filter(|&r| fold[r] != k).collect();
        let valid: Vec<usize> = (0..design.rows()).filter(|&r| fold[r] == k).collect();
        let mut warm = None;
        for (i, &alpha) in ALPHA_GRID.iter().enumerate().rev() {
            let (b, w, raw) = fit_rows(design, &train, alpha, warm.take())?;
            loss[i] += mean_log_loss(design, &valid, b, &w) * valid.len() as f64;
            warm = Some(raw);
        }
    }
    let scores: Vec<(f64, f64)> = ALPHA_GRID.iter().zip(&loss).map(|(&a, &l)| (a, l / design.rows() as f64)).collect();
    let best = scores.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).expect("grid is not empty").0;
    Ok((best, scores))
}

/// Fits on every row; the background for explanations is the mean encoded row.
pub fn fit(design: &Design<'_>, alpha: f64) -> anyhow::Result<LinearModel> {
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
