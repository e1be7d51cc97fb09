//! The stacked ensemble (Wolpert 1992; Breiman 1996's non-negative stacking): the other
//! learners, each with its own search, combined by a non-negative logistic regression on their
//! out-of-fold margins.
//!
//! Out of fold: for each of the five folds by patient key, every member is fitted (its own
//! cross-validation rerun inside, on the other four folds dealt into new folds) without that
//! fold's rows, and predicts them; so no row's own label reaches its stacked prediction. The
//! weights are then fitted on those predictions and the members refitted on every row. The stack
//! is linear in the members' margins, so its explanation is the weighted sum of theirs
//! ([`carecast_models::stack`]): exact where the members' are.

use super::learner::{Checked, Encoded, FitError, FitInput, Learned, Learner, ParamError};
use super::options::Algorithm;
use super::selection::Choice;
use carecast_models::Estimator;
use carecast_models::preprocess::Preprocessor;
use carecast_models::scorer::sigmoid;
use carecast_models::stack::{Stack, StackMember};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Which learners the stack combines, and how each is fitted.
#[derive(Debug, Clone)]
pub struct StackParams {
    pub members: Vec<Algorithm>,
    pub fit_member: FitMember,
}

impl StackParams {
    /// Penalised logistic regression, the GBM and the MLP; and the hazard model where the data
    /// has follow-up.
    pub fn for_data(data: &Encoded, fit_member: FitMember) -> Self {
        let mut members = vec![Algorithm::Logistic, Algorithm::Gbm, Algorithm::Mlp];
        if !data.follow_up.is_empty() {
            members.push(Algorithm::Hazard);
        }
        Self { members, fit_member }
    }
}

/// What the stack chose: each member's weight and out-of-fold AUROC, and the member's own record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackChoice {
    pub intercept: f64,
    /// Rows with an out-of-fold prediction from every member: what the weights were fitted on.
    pub out_of_fold_rows: usize,
    pub members: Vec<StackMemberChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackMemberChoice {
    pub algorithm: Algorithm,
    /// The member's weight on its margin (0: left out of the stack).
    pub weight: f64,
    /// AUROC of the member's out-of-fold predictions: its cross-validated discrimination.
    pub cv_auroc: f64,
    /// How the member's final fit chose its settings.
    pub method: String,
    pub selection: Choice,
}

/// One learner's default fit: what a stack calls for each member (the dispatch in
/// [`super::fit`], passed in so that this module depends on no learner by name).
pub type FitMember = fn(Algorithm, &FitInput<'_>) -> Result<Learned<Choice>, FitError>;

impl Learner for StackParams {
    type Selection = StackChoice;

    fn validate(&self) -> Result<(), ParamError> {
        let param = ParamError::new("stack", "members");
        param.clone().unless(!self.members.is_empty(), "a stack needs at least one member")?;
        param.clone().unless(
            self.members.iter().all(|a| !matches!(a, Algorithm::Stack | Algorithm::Gru)),
            "members are single models on the row's features (not a stack, not the GRU)",
        )?;
        let distinct: std::collections::BTreeSet<_> = self.members.iter().map(|a| a.short_name()).collect();
        param.unless(distinct.len() == self.members.len(), "each learner at most once")
    }

    /// Out-of-fold margins of every member, the weights on them, then every member on all rows.
    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<StackChoice>, FitError> {
        fit_stack(&params, input)
    }
}

/// A member: its learner, its own preprocessor and where its block lies in the stacked row.
type MemberInput = (Algorithm, Preprocessor, Range<usize>);

/// Each member's learner, preprocessor and block.
fn member_inputs(params: &StackParams, pre: &Preprocessor) -> Vec<MemberInput> {
    params
        .members
        .iter()
        .map(|&a| {
            let columns = pre.block(a.encoding()).expect("a stacked row holds every single encoding");
            (a, pre.with_encoding(a.encoding()), columns)
        })
        .collect()
}

/// The rows member `a` learns from among those `pick` keeps: every row for a time-to-event
/// member, else the labelled ones.
fn rows_for(data: &Encoded, a: Algorithm, pick: impl Fn(usize) -> bool) -> Vec<usize> {
    data.rows(|r| pick(r) && (a.uses_censored_rows() || data.labelled(r)))
}

/// Every member's margin for each of the `labelled` rows, each from a fit on the other four
/// folds by key: no row's own label reaches its prediction.
fn out_of_fold(
    params: &StackParams,
    data: &Encoded,
    members: &[MemberInput],
    labelled: &[usize],
) -> Result<Vec<Vec<f64>>, FitError> {
    let mut oof = vec![vec![f64::NAN; labelled.len()]; members.len()];
    for fold in 0..5 {
        let held_out: Vec<usize> = (0..labelled.len()).filter(|&i| data.fold(labelled[i]) == fold).collect();
        for (k, (a, pre, columns)) in members.iter().enumerate() {
            let train = data.select(&rows_for(data, *a, |r| data.fold(r) != fold), columns.clone(), true);
            let learned = (params.fit_member)(*a, &FitInput { pre, data: &train, calibrating: false })?;
            for &i in &held_out {
                let r = labelled[i];
                oof[k][i] = learned.estimator.margin(&data.x[r * data.n_cols..(r + 1) * data.n_cols][columns.clone()]);
            }
        }
    }
    Ok(oof)
}

fn fit_stack(params: &StackParams, input: &FitInput<'_>) -> Result<Learned<StackChoice>, FitError> {
    let data = input.data;
    let labelled = data.rows(|r| data.labelled(r));
    let members = member_inputs(params, input.pre);
    let y: Vec<bool> = labelled.iter().map(|&r| data.y[r]).collect();
    let oof = out_of_fold(params, data, &members, &labelled)?;
    let (intercept, weights) = nonnegative_logistic(&oof, &y).ok_or(FitError::StackWeights)?;
    if weights.iter().all(|&w| w == 0.0) {
        return Err(FitError::UninformativeStack);
    }
    let (mut stacked, mut choices) = (Vec::new(), Vec::new());
    for ((k, (a, pre, columns)), weight) in members.into_iter().enumerate().zip(weights) {
        let all = data.select(&rows_for(data, a, |_| true), columns.clone(), false);
        let learned = (params.fit_member)(a, &FitInput { pre: &pre, data: &all, calibrating: false })?;
        choices.push(StackMemberChoice {
            algorithm: a,
            weight,
            cv_auroc: crate::evaluate::auroc_delong(&y, &oof[k]).0,
            method: learned.method,
            selection: learned.selection,
        });
        if weight > 0.0 {
            stacked.push(StackMember {
                name: a.short_name().to_string(),
                weight,
                encoding: a.encoding(),
                columns,
                estimator: learned.estimator,
            });
        }
    }
    let names: Vec<&str> = params.members.iter().map(|a| a.short_name()).collect();
    Ok(Learned {
        estimator: Estimator::Stack(Stack { intercept, members: stacked }),
        calibration: None,
        method: format!(
            "non-negative logistic stack of {} on their out-of-fold margins (5 folds by key; each member's own selection rerun inside every fold), members then refitted on every row",
            names.join(", ")
        ),
        selection: StackChoice { intercept, out_of_fold_rows: y.len(), members: choices },
    })
}

/// Logistic regression of `y` on the columns `z` with a free intercept and non-negative
/// weights, by projected Newton (Bertsekas 1982): each step is Newton's on the intercept and the
/// weights free to move (positive, or at zero with the likelihood rising as they grow), projected
/// back onto the non-negative weights and halved until the likelihood rises (Armijo), until the
/// projected gradient vanishes: the Karush-Kuhn-Tucker conditions. `None` if it does not converge.
pub(crate) fn nonnegative_logistic(z: &[Vec<f64>], y: &[bool]) -> Option<(f64, Vec<f64>)> {
    let (k, n) = (z.len(), y.len());
    let prevalence = (y.iter().filter(|&&b| b).count() as f64 + 0.5) / (n as f64 + 1.0);
    let mut theta: Vec<f64> = std::iter::once((prevalence / (1.0 - prevalence)).ln()).chain(vec![0.0; k]).collect();
    let col = |v: usize, i: usize| if v == 0 { 1.0 } else { z[v - 1][i] };
    let margin = |theta: &[f64], i: usize| theta[0] + (0..k).map(|j| theta[j + 1] * z[j][i]).sum::<f64>();
    let log_likelihood = |theta: &[f64]| -> f64 {
        (0..n)
            .map(|i| {
                let m = margin(theta, i);
                // log sigmoid(m) or log (1 - sigmoid(m)), stably.
                let s = if y[i] { m } else { -m };
                -(s.max(0.0) - s + (-s.abs()).exp().ln_1p())
            })
            .sum()
    };
    let tolerance = 1e-9 * n as f64;
    for _ in 0..500 {
        let (mut g, mut h) = (vec![0.0; k + 1], vec![0.0; (k + 1) * (k + 1)]);
        for (i, &outcome) in y.iter().enumerate() {
            let p = sigmoid(margin(&theta, i));
            let (r, s) = (f64::from(u8::from(outcome)) - p, p * (1.0 - p));
            for a in 0..=k {
                g[a] += r * col(a, i);
                for c in 0..=k {
                    h[a * (k + 1) + c] += s * col(a, i) * col(c, i);
                }
            }
        }
        // Free: the intercept, positive weights, and zero weights the likelihood would raise.
        let free: Vec<usize> = (0..=k).filter(|&v| v == 0 || theta[v] > 0.0 || g[v] > 0.0).collect();
        let projected_gradient = (0..=k).map(|v| if free.contains(&v) { g[v].abs() } else { 0.0 }).fold(0.0, f64::max);
        if projected_gradient < tolerance {
            return Some((theta[0], theta[1..].to_vec()));
        }
        let m = free.len();
        // A whisper of ridge keeps nearly collinear members (two linear models) solvable.
        let mut hf: Vec<f64> =
            free.iter().flat_map(|&a| free.iter().map(move |&c| (a, c))).map(|(a, c)| h[a * (k + 1) + c]).collect();
        (0..m).for_each(|a| hf[a * m + a] += 1e-9 * n as f64);
        let mut gf: Vec<f64> = free.iter().map(|&v| g[v]).collect();
        let newton = solve(&mut hf, &mut gf, m);
        // Newton's step, projected; should its arc not raise the likelihood (a held weight
        // pulled below zero by its neighbours), the gradient scaled by the Hessian's diagonal.
        let gradient: Vec<f64> = free.iter().map(|&v| g[v] / (h[v * (k + 1) + v] + 1e-9 * n as f64)).collect();
        let before = log_likelihood(&theta);
        let moved = [newton, gradient].into_iter().find_map(|direction| {
            let mut t = 1.0;
            while t > 1e-12 {
                let mut next = theta.clone();
                for (&v, d) in free.iter().zip(&direction) {
                    next[v] = if v == 0 { theta[v] + t * d } else { (theta[v] + t * d).max(0.0) };
                }
                let rise: f64 = (0..=k).map(|v| g[v] * (next[v] - theta[v])).sum();
                if rise > 0.0 && log_likelihood(&next) >= before + 1e-4 * rise {
                    return Some(next);
                }
                t /= 2.0;
            }
            None
        });
        theta = moved?;
    }
    None
}

/// Solves the symmetric positive-definite `h x = g` (`m` by `m`, row-major) by Gaussian
/// elimination with partial pivoting; returns `x`.
fn solve(h: &mut [f64], g: &mut [f64], m: usize) -> Vec<f64> {
    for c in 0..m {
        let p = (c..m).max_by(|&a, &b| h[a * m + c].abs().total_cmp(&h[b * m + c].abs())).expect("rows remain");
        if p != c {
            (0..m).for_each(|j| h.swap(c * m + j, p * m + j));
            g.swap(c, p);
        }
        for r in c + 1..m {
            let f = h[r * m + c] / h[c * m + c];
            (c..m).for_each(|j| h[r * m + j] -= f * h[c * m + j]);
            g[r] -= f * g[c];
        }
    }
    let mut x = vec![0.0; m];
    for r in (0..m).rev() {
        x[r] = (g[r] - (r + 1..m).map(|j| h[r * m + j] * x[j]).sum::<f64>()) / h[r * m + r];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Log-likelihood of `(b, w)`.
    fn log_likelihood(z: &[Vec<f64>], y: &[bool], b: f64, w: &[f64]) -> f64 {
        (0..y.len())
            .map(|i| {
                let p = sigmoid(b + w.iter().zip(z).map(|(w, z)| w * z[i]).sum::<f64>());
                if y[i] { p.ln() } else { (1.0 - p).ln() }
            })
            .sum()
    }

    #[test]
    fn nonnegative_weights_maximise_the_likelihood_among_all_nonnegative_ones() {
        // Three "members": a good score, a noisier copy of it, and one that predicts backwards
        // (an unconstrained fit gives it a negative weight).
        let mut rng = Rng(11);
        let n = 3000;
        let truth: Vec<f64> = (0..n).map(|_| rng.normal(0.0, 1.5)).collect();
        let y: Vec<bool> = truth.iter().map(|t| rng.unit() < sigmoid(t - 1.0)).collect();
        let z = vec![
            truth.iter().map(|t| t + rng.normal(0.0, 0.5)).collect::<Vec<_>>(),
            truth.iter().map(|t| t + rng.normal(0.0, 1.5)).collect(),
            truth.iter().map(|t| -0.3 * t + rng.normal(0.0, 1.0)).collect(),
        ];
        let (b, w) = nonnegative_logistic(&z, &y).expect("converges");
        assert!(w[0] > 0.0 && w[1] >= 0.0 && w[2] == 0.0, "{w:?}");
        let best = log_likelihood(&z, &y, b, &w);
        // Brute force: no non-negative point nearby, on a grid around the fit, does better.
        for db in [-0.02, 0.0, 0.02] {
            for d0 in [-0.02, 0.0, 0.02] {
                for d1 in [-0.02, 0.0, 0.02] {
                    for d2 in [0.0, 0.01, 0.05] {
                        let cand = [w[0] + d0, w[1] + d1, w[2] + d2];
                        if cand.iter().all(|&c| c >= 0.0) {
                            assert!(log_likelihood(&z, &y, b + db, &cand) <= best + 1e-9, "{cand:?} beats {w:?}");
                        }
                    }
                }
            }
        }
        // Karush-Kuhn-Tucker: zero gradient for the intercept and every positive weight, and
        // no gain from raising a weight held at zero.
        let g: Vec<f64> = (0..4)
            .map(|j| {
                (0..n)
                    .map(|i| {
                        let r = f64::from(u8::from(y[i]))
                            - sigmoid(b + w.iter().zip(&z).map(|(w, z)| w * z[i]).sum::<f64>());
                        if j == 0 { r } else { r * z[j - 1][i] }
                    })
                    .sum()
            })
            .collect();
        assert!(g[0].abs() < 1e-6, "{g:?}");
        for j in 0..3 {
            if w[j] > 0.0 { assert!(g[j + 1].abs() < 1e-6, "{g:?}") } else { assert!(g[j + 1] <= 1e-6, "{g:?}") }
        }
    }

    /// `n` rows of two standard normal features, written twice (the standardised block and the
    /// native one, equal here), the outcome driven by both.
    fn stacked_rows(n: usize) -> (Preprocessor, Encoded) {
        use carecast_models::preprocess::{Encoding, FeatureStats, FittedFeature};
        let feature = |name: &str| FittedFeature {
            spec: serde_json::from_value(serde_json::json!({"name": name, "type": "numeric"})).unwrap(),
            stats: FeatureStats::Numeric { median: 0.0, mean: 0.0, sd: 1.0, min: -5.0, max: 5.0, had_missing: false },
        };
        let pre = Preprocessor { encoding: Encoding::Stacked, features: vec![feature("a"), feature("b")] };
        let mut rng = Rng(8);
        let mut data = Encoded { x: Vec::new(), n_cols: 4, y: Vec::new(), key_hash: Vec::new(), follow_up: Vec::new() };
        for r in 0..n {
            let (a, b) = (rng.normal(0.0, 1.0), rng.normal(0.0, 1.0));
            data.x.extend([a, b, a, b]);
            data.y.push(rng.unit() < sigmoid(1.2 * a - 0.8 * b * b));
            data.key_hash.push(r as u64 * 7919 + 13);
        }
        (pre, data)
    }

    #[test]
    fn no_rows_label_reaches_its_own_out_of_fold_prediction() {
        let (pre, mut data) = stacked_rows(1200);
        // No follow-up, so every row is labelled and out-of-fold index `r` is row `r`.
        assert!(data.follow_up.is_empty());
        let params = StackParams {
            members: vec![Algorithm::Logistic, Algorithm::Gbm],
            fit_member: |a, input| super::super::learn_with(a, 1.0, input),
        };
        let (members, every) = (member_inputs(&params, &pre), (0..data.y.len()).collect::<Vec<_>>());
        let before = out_of_fold(&params, &data, &members, &every).unwrap();
        // Flip every label in fold 0: the predictions for fold 0's rows come from fits that
        // never saw those rows, so they stay exactly as they were; every other fold's change.
        for r in 0..data.y.len() {
            if data.fold(r) == 0 {
                data.y[r] = !data.y[r];
            }
        }
        let after = out_of_fold(&params, &data, &members, &every).unwrap();
        for k in 0..2 {
            for r in 0..data.y.len() {
                if data.fold(r) == 0 {
                    assert_eq!(before[k][r].to_bits(), after[k][r].to_bits(), "member {k}, row {r}");
                }
            }
            assert!((0..data.y.len()).any(|r| data.fold(r) != 0 && before[k][r] != after[k][r]), "member {k}");
        }
        // The whole fit: weights on both members, the record naming each with its AUROC.
        let learned =
            StackParams::fit(&params, &FitInput { pre: &pre, data: &stacked_rows(1200).1, calibrating: false })
                .unwrap();
        assert_eq!(learned.selection.members.len(), 2);
        assert!(learned.selection.members.iter().all(|m| m.cv_auroc > 0.6 && m.weight >= 0.0));
        let Estimator::Stack(stack) = &learned.estimator else { panic!("a stack") };
        assert!(stack.validate(4).is_ok() && stack.check_layout(&pre).is_ok());
    }

    #[test]
    fn a_stack_of_one_member_is_logistic_recalibration() {
        let mut rng = Rng(3);
        let z: Vec<f64> = (0..2000).map(|_| rng.normal(0.0, 1.0)).collect();
        let y: Vec<bool> = z.iter().map(|t| rng.unit() < sigmoid(0.5 + 2.0 * t)).collect();
        let (b, w) = nonnegative_logistic(std::slice::from_ref(&z), &y).expect("converges");
        let (a, slope) = crate::evaluate::logistic_recalibration(&y, &z, None);
        assert!((b - a).abs() < 1e-7 && (w[0] - slope).abs() < 1e-7, "{b} {w:?} against {a} {slope}");
    }
}
