//! A discrete-time hazard model for outcomes with censored follow-up (Singer & Willett 1993):
//! each prediction time becomes one row per interval of the horizon the patient was at risk in
//! (the outcome's interval ends it; a row censored within an interval counts if observed for at
//! least half of it), and a penalised logistic regression with one offset per interval gives the
//! hazard. The risk by the horizon, `1 - prod_k (1 - hazard_k)`, is the package's calibration
//! map, so the linear predictor is explained exactly and the risk is what a clinician sees.

use super::elastic_net::{self, ElasticNetParams};
use super::learner::{Checked, FitError, FitInput, Learned, Learner, ParamError};
use super::logistic::Design;
use carecast_models::Estimator;
use carecast_models::calibration::Calibration;
use carecast_models::linear::LinearModel;
use serde::{Deserialize, Serialize};

/// Intervals the horizon is divided into (years of a five-year horizon).
pub const INTERVALS: usize = 5;

/// Person-period rows: (source row, interval, outcome in that interval).
pub fn person_periods(follow_up: &[(f64, bool)]) -> Vec<(usize, usize, bool)> {
    let k = INTERVALS as f64;
    let mut out = Vec::new();
    for (r, &(time, event)) in follow_up.iter().enumerate() {
        for i in 0..INTERVALS {
            let (lo, hi) = (i as f64 / k, (i + 1) as f64 / k);
            if event && time <= hi {
                out.push((r, i, true));
                break;
            }
            if time >= hi {
                out.push((r, i, false));
                continue;
            }
            if time - lo >= (hi - lo) / 2.0 {
                out.push((r, i, false));
            }
            break;
        }
    }
    out
}

/// The hazard model's penalty: an elastic net over the person-period rows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HazardParams {
    pub penalty: ElasticNetParams,
}

impl Learner for HazardParams {
    type Selection = HazardChoice;

    fn validate(&self) -> Result<(), ParamError> {
        self.penalty.validate_for("hazard")
    }

    /// Fits on every encoded row, censored ones included, cross-validating over all five folds:
    /// the risk by the horizon is the model's own calibration, so no fold is kept for another.
    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<HazardChoice>, FitError> {
        let data = input.data;
        if data.follow_up.len() != data.y.len() {
            return Err(FitError::NoFollowUp);
        }
        let periods = person_periods(&data.follow_up);
        let n_cols = data.n_cols;
        let width = n_cols + INTERVALS - 1;
        let mut x = Vec::with_capacity(periods.len() * width);
        for &(r, interval, _) in &periods {
            x.extend_from_slice(&data.x[r * n_cols..(r + 1) * n_cols]);
            x.extend((1..INTERVALS).map(|k| f64::from(u8::from(interval == k))));
        }
        let y: Vec<bool> = periods.iter().map(|p| p.2).collect();
        let folds: Vec<usize> = periods.iter().map(|&(r, _, _)| data.fold(r)).collect();
        let (model, s) = elastic_net::fit_cv(&Design { x: &x, n_cols: width, y: &y }, &folds, 5, &params.penalty);
        let background = (0..n_cols)
            .map(|c| (0..data.y.len()).map(|r| data.x[r * n_cols + c]).sum::<f64>() / data.y.len() as f64)
            .collect();
        let interval_offsets = std::iter::once(0.0).chain(model.weights[n_cols..].iter().copied()).collect();
        Ok(Learned {
            estimator: Estimator::LogisticRegression(LinearModel {
                intercept: model.intercept,
                weights: model.weights[..n_cols].to_vec(),
                background,
            }),
            calibration: Some(Calibration::DiscreteHazard { interval_offsets, logit_offset: 0.0 }),
            method: format!(
                "discrete-time hazard over {INTERVALS} intervals of the horizon: elastic net (L1 share {}) with 5-fold cross-validated lambda (folds by key) on {} person-period rows",
                params.penalty.l1_share,
                periods.len()
            ),
            selection: HazardChoice {
                censored_rows_used: data.follow_up.iter().filter(|(t, e)| !e && *t < 1.0).count(),
                person_period_rows: periods.len(),
                lambda: s.lambda,
                nonzero_weights: s.nonzero_weights,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HazardChoice {
    /// Training rows censored within the horizon that still taught the model (time at risk).
    pub censored_rows_used: usize,
    pub person_period_rows: usize,
    pub lambda: f64,
    pub nonzero_weights: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_periods_follow_each_patient_until_event_or_censoring() {
        // Event in the third interval; observed throughout; censored early in interval 2 (dropped)
        // and late in interval 4 (kept as at risk).
        let rows = person_periods(&[(0.5, true), (1.0, false), (0.22, false), (0.78, false)]);
        let of = |r: usize| rows.iter().filter(|p| p.0 == r).map(|p| (p.1, p.2)).collect::<Vec<_>>();
        assert_eq!(of(0), [(0, false), (1, false), (2, true)]);
        assert_eq!(of(1), (0..5).map(|i| (i, false)).collect::<Vec<_>>());
        assert_eq!(of(2), [(0, false)]);
        assert_eq!(of(3), [(0, false), (1, false), (2, false), (3, false)]);
    }
}
