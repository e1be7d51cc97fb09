//! L1 (lasso) and elastic-net logistic regression, which linfa does not offer: glmnet's
//! algorithm (Friedman, Hastie & Tibshirani 2010). Each outer step replaces the log-likelihood by
//! its quadratic (IRLS) approximation; coordinate descent with soft-thresholding minimises the
//! penalised approximation. The penalty `lambda * (mix * |b|_1 + (1 - mix) / 2 * |b|_2^2)` is on
//! the mean log-loss over standardised columns; the intercept is not penalised. The penalty is
//! chosen by patient-level cross-validation along a warm-started path of decreasing lambdas.

use super::learner::{Checked, FitError, FitInput, Learned, Learner, ParamError};
use super::logistic::{Design, PenaltyLoss};
use carecast_models::Estimator;
use carecast_models::linear::LinearModel;
use serde::{Deserialize, Serialize};

/// The penalty's mix and the path of lambdas cross-validation walks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElasticNetParams {
    /// Share of the penalty on the L1 norm: 1 is the lasso, 0.5 an equal mix.
    pub l1_share: f64,
    /// Lambdas on the path, from the smallest that keeps every weight at zero down to
    /// `path_ratio` times it, evenly on the log scale.
    pub path_length: usize,
    pub path_ratio: f64,
}

impl ElasticNetParams {
    pub fn lasso() -> Self {
        Self { l1_share: 1.0, ..Self::default() }
    }

    /// The penalty's rules, refusals naming `learner` (the lasso, the elastic net, the hazard model).
    pub fn validate_for(&self, learner: &'static str) -> Result<(), ParamError> {
        let name = |param| ParamError::new(learner, param);
        // Without an L1 part the path has no start: no lambda keeps every weight at zero.
        name("l1_share").unless(self.l1_share > 0.0 && self.l1_share <= 1.0, "must be in (0, 1]")?;
        name("path_length").unless(self.path_length >= 2, "needs at least two lambdas")?;
        name("path_ratio").unless(self.path_ratio > 0.0 && self.path_ratio < 1.0, "must be in (0, 1)")
    }
}

impl Default for ElasticNetParams {
    /// An equal mix of L1 and L2.
    fn default() -> Self {
        Self { l1_share: 0.5, path_length: 40, path_ratio: 1e-3 }
    }
}

impl Learner for ElasticNetParams {
    type Selection = ElasticNetChoice;

    fn validate(&self) -> Result<(), ParamError> {
        self.validate_for(if self.l1_share == 1.0 { "lasso" } else { "elastic net" })
    }

    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<ElasticNetChoice>, FitError> {
        let fitting = input.fitting_rows();
        let (x, y) = input.data.subset(&fitting);
        let (n_folds, folds) = input.cv_folds(&fitting);
        let (model, selection) = fit_cv(&Design { x: &x, n_cols: input.data.n_cols, y: &y }, &folds, n_folds, &params);
        Ok(Learned {
            estimator: Estimator::LogisticRegression(model),
            calibration: None,
            method: format!(
                "{n_folds}-fold cross-validated log-loss along a {}-step lambda path (folds by key)",
                params.path_length
            ),
            selection,
        })
    }
}

/// Coefficients of one fit.
#[derive(Debug, Clone, PartialEq)]
struct Coefficients {
    intercept: f64,
    weights: Vec<f64>,
}

/// The design by columns, for coordinate descent over the given rows.
struct Columns {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
}

impl Columns {
    fn new(design: &Design<'_>, rows: &[usize]) -> Self {
        let x = (0..design.n_cols).map(|j| rows.iter().map(|&r| design.x[r * design.n_cols + j]).collect()).collect();
        Self { x, y: rows.iter().map(|&r| f64::from(u8::from(design.y[r]))).collect() }
    }

    fn n(&self) -> usize {
        self.y.len()
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn soft_threshold(z: f64, g: f64) -> f64 {
    if z > g {
        z - g
    } else if z < -g {
        z + g
    } else {
        0.0
    }
}

/// Convergence: no coordinate moves the quadratic objective by more than this (glmnet's
/// criterion, `max_j x_j'Wx_j / n * change_j^2`).
const TOLERANCE: f64 = 1e-10;

/// Minimises the penalised mean log-loss from the warm start `c`.
fn fit_lambda(cols: &Columns, lambda: f64, mix: f64, c: &mut Coefficients) {
    let n = cols.n() as f64;
    let p = cols.x.len();
    let mut eta: Vec<f64> =
        (0..cols.n()).map(|i| c.intercept + (0..p).map(|j| c.weights[j] * cols.x[j][i]).sum::<f64>()).collect();
    let (mut w, mut r) = (vec![0.0; cols.n()], vec![0.0; cols.n()]);
    for _outer in 0..100 {
        // Quadratic approximation at the current fit: weights and working residuals.
        for i in 0..cols.n() {
            let mu = sigmoid(eta[i]);
            w[i] = (mu * (1.0 - mu)).max(1e-5);
            r[i] = (cols.y[i] - mu) / w[i];
        }
        let xwx: Vec<f64> = (0..p).map(|j| cols.x[j].iter().zip(&w).map(|(x, w)| w * x * x).sum::<f64>() / n).collect();
        let sum_w = w.iter().sum::<f64>();
        // One coordinate-descent sweep over `coords` (and the intercept); returns the largest move.
        let mut sweep = |coords: &mut dyn Iterator<Item = usize>, c: &mut Coefficients| -> f64 {
            let d0 = w.iter().zip(r.iter()).map(|(w, r)| w * r).sum::<f64>() / sum_w;
            c.intercept += d0;
            r.iter_mut().for_each(|ri| *ri -= d0);
            eta.iter_mut().for_each(|e| *e += d0);
            let mut moved = sum_w / n * d0 * d0;
            for j in coords {
                if xwx[j] == 0.0 {
                    continue;
                }
                let xj = &cols.x[j];
                let grad = xj.iter().zip(&w).zip(r.iter()).map(|((x, w), r)| w * x * r).sum::<f64>() / n;
                let old = c.weights[j];
                let new = soft_threshold(grad + xwx[j] * old, lambda * mix) / (xwx[j] + lambda * (1.0 - mix));
                let d = new - old;
                if d != 0.0 {
                    c.weights[j] = new;
                    for i in 0..cols.n() {
                        r[i] -= d * xj[i];
                        eta[i] += d * xj[i];
                    }
                    moved = moved.max(xwx[j] * d * d);
                }
            }
            moved
        };
        // glmnet's active-set cycling: full sweeps find the active set, cheap sweeps over it
        // converge, and a final full sweep confirms nothing outside it wants to move.
        let mut first = 0.0;
        for round in 0..100 {
            let moved = sweep(&mut (0..p), c);
            if round == 0 {
                first = moved;
            }
            if moved < TOLERANCE {
                break;
            }
            let active: Vec<usize> = (0..p).filter(|&j| c.weights[j] != 0.0).collect();
            for _ in 0..1000 {
                if sweep(&mut active.iter().copied(), c) < TOLERANCE {
                    break;
                }
            }
        }
        if first < TOLERANCE {
            break;
        }
    }
}

/// The largest useful lambda: the smallest at which every weight is zero (for `mix > 0`).
fn lambda_max(cols: &Columns, mix: f64) -> f64 {
    let mean = cols.y.iter().sum::<f64>() / cols.n() as f64;
    let g = cols
        .x
        .iter()
        .map(|x| x.iter().zip(&cols.y).map(|(x, y)| x * (y - mean)).sum::<f64>().abs() / cols.n() as f64)
        .fold(0.0, f64::max);
    g / mix.max(1e-3)
}

fn path(lmax: f64, params: &ElasticNetParams) -> Vec<f64> {
    let steps = (params.path_length - 1) as f64;
    (0..params.path_length).map(|k| lmax * params.path_ratio.powf(k as f64 / steps)).collect()
}

fn start(cols: &Columns) -> Coefficients {
    let mean = (cols.y.iter().sum::<f64>() / cols.n() as f64).clamp(1e-6, 1.0 - 1e-6);
    Coefficients { intercept: (mean / (1.0 - mean)).ln(), weights: vec![0.0; cols.x.len()] }
}

fn mean_log_loss(cols: &Columns, c: &Coefficients) -> f64 {
    (0..cols.n())
        .map(|i| {
            let z = c.intercept + cols.x.iter().zip(&c.weights).map(|(x, w)| x[i] * w).sum::<f64>();
            let s = if cols.y[i] > 0.5 { -z } else { z };
            s.max(0.0) + (-s.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / cols.n() as f64
}

/// Cross-validates lambda over `n_folds` folds (`fold[r]` per row) and refits on every row.
pub(super) fn fit_cv(
    design: &Design<'_>,
    fold: &[usize],
    n_folds: usize,
    params: &ElasticNetParams,
) -> (LinearModel, ElasticNetChoice) {
    let mix = params.l1_share;
    let all_rows: Vec<usize> = (0..design.y.len()).collect();
    let all = Columns::new(design, &all_rows);
    let lambdas = path(lambda_max(&all, mix), params);
    let mut loss = vec![0.0; lambdas.len()];
    for k in 0..n_folds {
        let train: Vec<usize> = all_rows.iter().copied().filter(|&r| fold[r] != k).collect();
        let valid: Vec<usize> = all_rows.iter().copied().filter(|&r| fold[r] == k).collect();
        let (tc, vc) = (Columns::new(design, &train), Columns::new(design, &valid));
        let mut c = start(&tc);
        for (i, &lambda) in lambdas.iter().enumerate() {
            fit_lambda(&tc, lambda, mix, &mut c);
            loss[i] += mean_log_loss(&vc, &c) * vc.n() as f64;
        }
    }
    let best = (0..lambdas.len()).min_by(|&a, &b| loss[a].total_cmp(&loss[b])).expect("path is not empty");
    // Refit down the path to the chosen lambda, warm-starting as in cross-validation.
    let mut c = start(&all);
    for &lambda in &lambdas[..=best] {
        fit_lambda(&all, lambda, mix, &mut c);
    }
    let background = all.x.iter().map(|x| x.iter().sum::<f64>() / all.n() as f64).collect();
    let selection = ElasticNetChoice {
        l1_share: mix,
        lambda: lambdas[best],
        nonzero_weights: c.weights.iter().filter(|w| **w != 0.0).count(),
        cv_log_loss: lambdas
            .iter()
            .zip(&loss)
            .map(|(&penalty, &l)| PenaltyLoss { penalty, log_loss: l / all.n() as f64 })
            .collect(),
    };
    (LinearModel { intercept: c.intercept, weights: c.weights, background }, selection)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElasticNetChoice {
    /// Share of the penalty on the L1 norm (1: the lasso).
    pub l1_share: f64,
    pub lambda: f64,
    pub nonzero_weights: usize,
    pub cv_log_loss: Vec<PenaltyLoss>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Penalised mean log-loss, the objective `fit_lambda` minimises.
    fn objective(cols: &Columns, c: &Coefficients, lambda: f64, mix: f64) -> f64 {
        let l1: f64 = c.weights.iter().map(|w| w.abs()).sum();
        let l2: f64 = c.weights.iter().map(|w| w * w).sum();
        mean_log_loss(cols, c) + lambda * (mix * l1 + (1.0 - mix) / 2.0 * l2)
    }

    #[test]
    fn coordinate_descent_reaches_the_penalised_optimum_and_the_lasso_selects() {
        // y depends on columns 0 and 1; columns 2..6 are noise.
        let mut rng = crate::rng::Rng(11);
        let mut next = || rng.unit();
        let (n, p) = (3000, 6);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let row: Vec<f64> = (0..p).map(|_| next() * 2.0 - 1.0).collect();
            y.push(next() < sigmoid(-0.5 + 2.0 * row[0] - 1.5 * row[1]));
            x.extend(row);
        }
        let design = Design { x: &x, n_cols: p, y: &y };
        let rows: Vec<usize> = (0..n).collect();
        let cols = Columns::new(&design, &rows);
        for (lambda, mix) in [(0.02, 1.0), (0.01, 0.5), (0.05, 0.0)] {
            let mut c = start(&cols);
            fit_lambda(&cols, lambda, mix, &mut c);
            let best = objective(&cols, &c, lambda, mix);
            // No small move of any coefficient lowers the objective: a (sub)gradient optimum.
            for j in 0..=p {
                for step in [1e-4, -1e-4] {
                    let mut moved = c.clone();
                    if j == p {
                        moved.intercept += step
                    } else {
                        moved.weights[j] += step
                    }
                    assert!(
                        objective(&cols, &moved, lambda, mix) >= best - 1e-9,
                        "lambda {lambda} mix {mix} coordinate {j}"
                    );
                }
            }
        }
        let folds: Vec<usize> = (0..n).map(|r| r % 5).collect();
        let (model, selection) = fit_cv(&design, &folds, 5, &ElasticNetParams::lasso());
        assert!(model.weights[0] > 1.0 && model.weights[1] < -0.8, "{:?}", model.weights);
        assert!(selection.nonzero_weights < p, "the lasso zeroes some noise columns: {selection:?}");
    }
}
