//! The GBM as a learner: patient-level cross-validation over tree shapes, each fold
//! early-stopped on the fold it leaves out, then one final fit on every fitting row.

use super::gbm::{self, Columns, GbmParams};
use super::learner::{Checked, FitError, FitInput, Learned, Learner, ParamError};
use carecast_models::preprocess::Preprocessor;
use carecast_models::{Estimator, FeatureKind, Monotone};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The tree shapes tried and the settings every fit shares.
#[derive(Debug, Clone, PartialEq)]
pub struct GbmSearch {
    /// (leaves, depth) pairs, from stump-like to moderately deep.
    pub shapes: Vec<(usize, usize)>,
    /// Everything else, shared by every fold's fit and the final one; the learning rate stays
    /// small and the number of rounds is found by early stopping in each fold.
    pub base: GbmParams,
}

impl GbmSearch {
    /// The default search, with positive rows weighted by `positive_weight`.
    pub fn weighted(positive_weight: f64) -> Self {
        Self { base: GbmParams { positive_weight, ..GbmParams::default() }, ..Self::default() }
    }
}

impl Default for GbmSearch {
    fn default() -> Self {
        Self { shapes: vec![(4, 2), (8, 4), (16, 6)], base: GbmParams::default() }
    }
}

impl Learner for GbmSearch {
    type Selection = GbmChoice;

    fn validate(&self) -> Result<(), ParamError> {
        ParamError::new("gbm", "shapes").unless(!self.shapes.is_empty(), "needs at least one (leaves, depth)")?;
        self.shapes
            .iter()
            .try_for_each(|&(max_leaves, max_depth)| GbmParams { max_leaves, max_depth, ..self.base }.check())
    }

    /// Each shape is fitted on all folds but one and early-stopped on the one left out; the shape
    /// with the lowest mean held-out log-loss wins, and the final model is fitted on every fitting
    /// row with the folds' mean best rounds scaled by the row ratio.
    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<GbmChoice>, FitError> {
        let data = input.data;
        let monotone = monotone_columns(input.pre);
        let fitting = input.fitting_rows();
        let folds = input.cv_fold_ids();
        let runs: Vec<((usize, usize), gbm::GbmFit, usize)> = params
            .shapes
            .iter()
            .flat_map(|&shape| folds.iter().map(move |&k| (shape, k)))
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|((max_leaves, max_depth), k)| {
                let (fit_x, fit_y) = data.columns(&data.rows(|r| folds.contains(&data.fold(r)) && data.fold(r) != k));
                let (tune_x, tune_y) = data.columns(&data.rows(|r| data.fold(r) == k));
                let params = GbmParams { max_leaves, max_depth, ..params.base };
                let tuning = Some((&Columns { values: &tune_x }, tune_y.as_slice()));
                let fitted = gbm::fit(&Columns { values: &fit_x }, &fit_y, tuning, params, &monotone);
                ((max_leaves, max_depth), fitted, fit_y.len())
            })
            .collect();
        // Per shape: held-out log-loss averaged over folds (weighted by rows), and rounds per row.
        let held_out = |n_fit: usize| (fitting.len() - n_fit) as f64;
        let summary: Vec<(ShapeLoss, f64)> = params
            .shapes
            .iter()
            .map(|&(leaves, depth)| {
                let mine: Vec<_> = runs.iter().filter(|r| r.0 == (leaves, depth)).collect();
                let log_loss =
                    mine.iter().map(|r| r.1.best_tuning_log_loss.unwrap_or(f64::INFINITY) * held_out(r.2)).sum::<f64>()
                        / mine.iter().map(|r| held_out(r.2)).sum::<f64>();
                let rounds_per_row =
                    mine.iter().map(|r| r.1.rounds as f64 / r.2 as f64).sum::<f64>() / mine.len() as f64;
                (ShapeLoss { leaves, depth, log_loss }, rounds_per_row)
            })
            .collect();
        let &(chosen, rounds_per_row) =
            summary.iter().fold(&summary[0], |best, s| if s.0.log_loss < best.0.log_loss { s } else { best });
        // More rows support proportionally more rounds at the same learning rate.
        let final_rounds = ((rounds_per_row * fitting.len() as f64).round() as usize).max(1);
        let params =
            GbmParams { max_leaves: chosen.leaves, max_depth: chosen.depth, max_rounds: final_rounds, ..params.base };
        let (all_x, all_y) = data.columns(&fitting);
        let final_fit = gbm::fit(&Columns { values: &all_x }, &all_y, None, params, &monotone);
        Ok(Learned {
            estimator: Estimator::GradientBoostedTrees(final_fit.ensemble),
            calibration: None,
            method: format!(
                "{}-fold cross-validation by key over tree shapes (leaves, depth), each fold early-stopped on its held-out rows; refit on {} with the folds' mean rounds scaled by the row ratio",
                folds.len(),
                if input.calibrating { "the rows outside the calibration fold" } else { "all training rows" }
            ),
            selection: GbmChoice {
                cv_log_loss: summary.iter().map(|s| s.0).collect(),
                chosen,
                final_rounds,
                params,
                monotone_columns: monotone.iter().filter(|m| **m != 0).count(),
            },
        })
    }
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

/// A tree shape and its held-out log-loss, averaged over folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShapeLoss {
    pub leaves: usize,
    pub depth: usize,
    pub log_loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbmChoice {
    pub cv_log_loss: Vec<ShapeLoss>,
    pub chosen: ShapeLoss,
    pub final_rounds: usize,
    /// The parameters of the final fit.
    pub params: GbmParams,
    /// Encoded columns under a monotone constraint.
    pub monotone_columns: usize,
}
