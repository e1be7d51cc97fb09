//! A discrete-time hazard model for outcomes with censored follow-up (Singer & Willett 1993):
//! each prediction time becomes one row per interval of the horizon the patient was at risk in
//! (the outcome's interval ends it; a row censored within an interval counts if observed for at
//! least half of it), and a penalised logistic regression with one offset per interval gives the
//! hazard. The risk by the horizon, `1 - prod_k (1 - hazard_k)`, is the package's calibration
//! map, so the linear predictor is explained exactly and the risk is what a clinician sees.
//!
//! Where the task names competing events (death, for dementia), each cause gets its own
//! log-odds against neither, fitted on the person-period rows that ended in it or in neither,
//! and the package gives the outcome's cumulative incidence by the horizon from the multinomial
//! logit of both ([`carecast_models::competing`]): a patient who dies first is a non-case, not
//! censored.

use super::elastic_net::{self, ElasticNetChoice, ElasticNetParams};
use super::learner::{
    Checked, Encoded, Ending, FitError, FitInput, Learned, Learner, MIN_COMPETING_EVENTS, ParamError,
};
use super::logistic::Design;
use carecast_models::Estimator;
use carecast_models::calibration::Calibration;
use carecast_models::competing::{CauseHazard, CompetingHazards};
use carecast_models::linear::LinearModel;
use serde::{Deserialize, Serialize};

/// Intervals the horizon is divided into (years of a five-year horizon).
pub const INTERVALS: usize = 5;

/// Person-period rows for `cause` (the outcome, or the competing event): (source row, interval,
/// `cause` in that interval). A row is at risk in each interval until its follow-up ends; an
/// interval in which an event came is its last, and one censored within it counts if observed
/// for half of it. An interval that ended in the other cause is left out: the logistic
/// regression on the intervals ending in `cause` or in neither estimates the multinomial logit
/// of `cause` against neither (Begg & Gray 1984), which the package's hazards are made of
/// ([`carecast_models::competing`]). Without competing events this is the plain hazard's rows.
pub fn person_periods(follow_up: &[(f64, Ending)], cause: Ending) -> Vec<(usize, usize, bool)> {
    let k = INTERVALS as f64;
    let mut out = Vec::new();
    for (r, &(time, ending)) in follow_up.iter().enumerate() {
        for i in 0..INTERVALS {
            let (lo, hi) = (i as f64 / k, (i + 1) as f64 / k);
            if ending != Ending::Neither && time <= hi {
                if ending == cause {
                    out.push((r, i, true));
                }
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
    /// Where a competing event ended some follow-up, a second hazard is fitted for it and the
    /// model gives the outcome's cumulative incidence.
    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<HazardChoice>, FitError> {
        let data = input.data;
        if data.follow_up.len() != data.y.len() {
            return Err(FitError::NoFollowUp);
        }
        let n_cols = data.n_cols;
        let background: Vec<f64> = (0..n_cols)
            .map(|c| (0..data.y.len()).map(|r| data.x[r * n_cols + c]).sum::<f64>() / data.y.len() as f64)
            .collect();
        let outcome = fit_cause(&params.penalty, data, Ending::Outcome);
        let censored_rows_used = data.follow_up.iter().filter(|(t, e)| e.censored(*t)).count();
        let competing_events = data.follow_up.iter().filter(|(_, e)| *e == Ending::Competing).count();
        let choice = |c: &CauseFit| CauseChoice {
            person_period_rows: c.person_period_rows,
            lambda: c.selection.lambda,
            nonzero_weights: c.selection.nonzero_weights,
        };
        let penalty = format!(
            "elastic net (L1 share {}) with 5-fold cross-validated lambda (folds by key)",
            params.penalty.l1_share
        );
        if (1..MIN_COMPETING_EVENTS).contains(&competing_events) {
            return Err(FitError::TooFewCompetingEvents(competing_events));
        }
        if competing_events == 0 {
            return Ok(Learned {
                estimator: Estimator::LogisticRegression(LinearModel {
                    intercept: outcome.hazard.intercept,
                    weights: outcome.hazard.weights.clone(),
                    background,
                }),
                calibration: Some(Calibration::DiscreteHazard {
                    interval_offsets: outcome.hazard.interval_offsets.clone(),
                    logit_offset: 0.0,
                }),
                method: format!(
                    "discrete-time hazard over {INTERVALS} intervals of the horizon: {penalty} on {} person-period rows",
                    outcome.person_period_rows
                ),
                selection: HazardChoice {
                    censored_rows_used,
                    person_period_rows: outcome.person_period_rows,
                    lambda: outcome.selection.lambda,
                    nonzero_weights: outcome.selection.nonzero_weights,
                    competing: None,
                },
            });
        }
        let competing = fit_cause(&params.penalty, data, Ending::Competing);
        Ok(Learned {
            method: format!(
                "cause-specific discrete-time hazards of the outcome and of the competing event over {INTERVALS} intervals of the horizon, each by {penalty} ({} and {} person-period rows), combined into the outcome's cumulative incidence by the horizon (Aalen-Johansen in discrete time)",
                outcome.person_period_rows, competing.person_period_rows
            ),
            selection: HazardChoice {
                censored_rows_used,
                person_period_rows: outcome.person_period_rows,
                lambda: outcome.selection.lambda,
                nonzero_weights: outcome.selection.nonzero_weights,
                competing: Some(CompetingChoice { events: competing_events, hazard: choice(&competing) }),
            },
            estimator: Estimator::CompetingRisks(Box::new(CompetingHazards {
                outcome: outcome.hazard,
                competing: competing.hazard,
                background,
            })),
            calibration: None,
        })
    }
}

/// One cause's fitted hazard and how its penalty was chosen.
struct CauseFit {
    hazard: CauseHazard,
    person_period_rows: usize,
    selection: ElasticNetChoice,
}

/// The penalised logistic regression of `cause` on the person-period rows, with one offset per
/// interval.
fn fit_cause(penalty: &ElasticNetParams, data: &Encoded, cause: Ending) -> CauseFit {
    let periods = person_periods(&data.follow_up, cause);
    let n_cols = data.n_cols;
    let width = n_cols + INTERVALS - 1;
    let mut x = Vec::with_capacity(periods.len() * width);
    for &(r, interval, _) in &periods {
        x.extend_from_slice(&data.x[r * n_cols..(r + 1) * n_cols]);
        x.extend((1..INTERVALS).map(|k| f64::from(u8::from(interval == k))));
    }
    let y: Vec<bool> = periods.iter().map(|p| p.2).collect();
    let folds: Vec<usize> = periods.iter().map(|&(r, _, _)| data.fold(r)).collect();
    let (model, selection) = elastic_net::fit_cv(&Design { x: &x, n_cols: width, y: &y }, &folds, 5, penalty);
    CauseFit {
        hazard: CauseHazard {
            intercept: model.intercept,
            weights: model.weights[..n_cols].to_vec(),
            interval_offsets: std::iter::once(0.0).chain(model.weights[n_cols..].iter().copied()).collect(),
        },
        person_period_rows: periods.len(),
        selection,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HazardChoice {
    /// Training rows censored within the horizon that still taught the model (time at risk).
    pub censored_rows_used: usize,
    pub person_period_rows: usize,
    pub lambda: f64,
    pub nonzero_weights: usize,
    /// The competing event's hazard, where the task names competing events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub competing: Option<CompetingChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompetingChoice {
    /// Training rows whose follow-up a competing event ended.
    pub events: usize,
    pub hazard: CauseChoice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseChoice {
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
        let rows = person_periods(
            &[(0.5, Ending::Outcome), (1.0, Ending::Neither), (0.22, Ending::Neither), (0.78, Ending::Neither)],
            Ending::Outcome,
        );
        let of = |r: usize| rows.iter().filter(|p| p.0 == r).map(|p| (p.1, p.2)).collect::<Vec<_>>();
        assert_eq!(of(0), [(0, false), (1, false), (2, true)]);
        assert_eq!(of(1), (0..5).map(|i| (i, false)).collect::<Vec<_>>());
        assert_eq!(of(2), [(0, false)]);
        assert_eq!(of(3), [(0, false), (1, false), (2, false), (3, false)]);
        // A competing event in the second interval ends follow-up there: left out of the
        // outcome's rows (neither the outcome nor neither) and a one for its own.
        let follow_up = [(0.3, Ending::Competing)];
        assert_eq!(person_periods(&follow_up, Ending::Outcome), [(0, 0, false)]);
        assert_eq!(person_periods(&follow_up, Ending::Competing), [(0, 0, false), (0, 1, true)]);
    }
}
