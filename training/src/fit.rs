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
pub mod gbm_search;
pub mod gru_training;
pub mod hazard;
pub mod logistic;
pub mod mlp_training;
pub mod network;
pub mod preprocessor_training;
pub mod selection;

use carecast_models::calibration::Calibration;
use carecast_models::preprocess::{Encoding, Preprocessor};
use carecast_models::{Estimator, FeatureKind, Monotone};
use elastic_net::ElasticNetParams;
use gbm_search::GbmSearch;
use gru_training::GruParams;
use hazard::HazardParams;
use logistic::LogisticParams;
use mlp_training::MlpParams;
use network::Schedule;
use selection::{CalibrationFit, Choice, ModelSelection};
use serde::{Deserialize, Serialize};

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
    /// The GBM and the networks: weight of a positive row relative to a negative one (1: unweighted).
    pub positive_weight: f64,
}

/// Why a fit's options were refused: checked before any data is read.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error("positive-weight: must be a positive number, not {0}")]
    PositiveWeight(f64),
    #[error("calibration: a hazard model gives risks by the horizon directly; it takes no calibration")]
    HazardCalibration,
    #[error("positive-weight: only gbm, mlp and gru weight rows; {0} fits every row alike")]
    UnweightedAlgorithm(&'static str),
}

impl TrainOptions {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !(self.positive_weight.is_finite() && self.positive_weight > 0.0) {
            return Err(OptionsError::PositiveWeight(self.positive_weight));
        }
        if self.algorithm == Algorithm::Hazard && self.calibration != calibrate::Method::None {
            return Err(OptionsError::HazardCalibration);
        }
        let weighted = matches!(self.algorithm, Algorithm::Gbm | Algorithm::Mlp | Algorithm::Gru);
        if self.positive_weight != 1.0 && !weighted {
            return Err(OptionsError::UnweightedAlgorithm(self.algorithm.short_name()));
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

/// A parameter a learner refused, by name, before any row was read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{learner} parameter `{param}`: {reason}")]
pub struct ParamError {
    pub learner: &'static str,
    pub param: &'static str,
    pub reason: String,
}

impl ParamError {
    pub fn new(learner: &'static str, param: &'static str) -> Self {
        Self { learner, param, reason: String::new() }
    }

    /// `Ok` where `holds`; otherwise this parameter, refused for `reason`.
    pub fn unless(self, holds: bool, reason: &str) -> Result<(), ParamError> {
        if holds { Ok(()) } else { Err(Self { reason: reason.into(), ..self }) }
    }
}

/// Why a fit could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("a time-to-event model needs follow-up times: train it on an event task (--meds), not a flat table")]
    NoFollowUp,
    #[error(transparent)]
    Sequence(#[from] gru_training::LayoutError),
    #[error("logistic regression (linfa): {0}")]
    Linfa(#[from] linfa_logistic::error::Error),
}

/// What every learner fits on: the encoded rows, their folds, and whether fold 0 is kept back.
pub struct FitInput<'a> {
    pub pre: &'a Preprocessor,
    pub data: &'a Encoded,
    /// Fold 0 is kept for a calibration map fitted afterwards, never seen by the fit.
    pub calibrating: bool,
}

impl FitInput<'_> {
    /// Rows the final model is fitted on: every row, or folds 1-4 when calibrating.
    fn fitting_rows(&self) -> Vec<usize> {
        self.data.rows(|r| !self.calibrating || self.data.fold(r) != 0)
    }

    /// Cross-validation over the fitting rows: the number of folds and each row's fold.
    fn cv_folds(&self, fitting: &[usize]) -> (usize, Vec<usize>) {
        let folds = fitting.iter().map(|&r| self.data.fold(r));
        if self.calibrating { (4, folds.map(|f| f - 1).collect()) } else { (5, folds.collect()) }
    }
}

/// What a learner made: the estimator, a map of its own from margin to risk (the hazard model's
/// risk by the horizon), the method in words and the typed record of what it chose.
pub struct Learned<S> {
    pub estimator: Estimator,
    pub calibration: Option<Calibration>,
    pub method: String,
    pub selection: S,
}

/// One interface over every algorithm: checked parameters in, an estimator and a typed record of
/// the selection made out. Parameters are checked before any row is read (as linfa's
/// `ParamGuard`), so a bad setting fails in a moment, not after an hour of cross-validation.
pub trait Learner {
    /// What the learner's search chose, kept in `metrics.json`.
    type Selection: Into<Choice>;

    /// Refuses parameters no fit could use, naming the parameter.
    fn check(&self) -> Result<(), ParamError>;

    /// Fits with parameters [`Learner::check`] accepted.
    fn fit_checked(&self, input: &FitInput<'_>) -> Result<Learned<Self::Selection>, FitError>;

    /// Checks the parameters, then fits.
    fn fit(&self, input: &FitInput<'_>) -> Result<Learned<Self::Selection>, FitError> {
        self.check()?;
        self.fit_checked(input)
    }
}

/// A fitted estimator with its calibration map and how it was chosen.
pub struct Fitted {
    pub estimator: Estimator,
    pub calibration: Option<Calibration>,
    pub selection: ModelSelection,
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

/// Fits the chosen algorithm with its default parameters (and the calibration asked for) on
/// encoded training rows.
pub fn fit(options: &TrainOptions, pre: &Preprocessor, data: &Encoded) -> Result<Fitted, FitError> {
    options.validate()?;
    let input = FitInput { pre, data, calibrating: options.calibration != calibrate::Method::None };
    let weight = options.positive_weight;
    let learned = match options.algorithm {
        Algorithm::Logistic => learn(&LogisticParams::default(), &input),
        Algorithm::Lasso => learn(&ElasticNetParams::lasso(), &input),
        Algorithm::ElasticNet => learn(&ElasticNetParams::default(), &input),
        Algorithm::Gbm => learn(&GbmSearch::weighted(weight), &input),
        Algorithm::Mlp => learn(&MlpParams::new(Schedule::weighted(weight)), &input),
        Algorithm::Gru => learn(&GruParams::new(Schedule::weighted(weight)), &input),
        Algorithm::Hazard => learn(&HazardParams::default(), &input),
    }?;
    let mut selection = ModelSelection::new(learned.method, learned.selection);
    let mut calibration = learned.calibration;
    if input.calibrating {
        let tuning = data.rows(|r| data.fold(r) == 0);
        let (x, y) = data.subset(&tuning);
        let margins: Vec<f64> = x.chunks(data.n_cols).map(|row| learned.estimator.margin(row)).collect();
        calibration = Some(match options.calibration {
            calibrate::Method::Platt => calibrate::platt(&y, &margins),
            calibrate::Method::Isotonic => calibrate::isotonic(&y, &margins),
            calibrate::Method::None => unreachable!("calibrating"),
        });
        selection.calibration = Some(CalibrationFit {
            method: options.calibration,
            fitted_on: "tuning split (fold 0 by key), not used to fit the model".into(),
            rows: tuning.len(),
        });
    }
    Ok(Fitted { estimator: learned.estimator, calibration, selection })
}

/// Runs a learner and files its record under its own kind.
fn learn<L: Learner>(learner: &L, input: &FitInput<'_>) -> Result<Learned<Choice>, FitError> {
    let Learned { estimator, calibration, method, selection } = learner.fit(input)?;
    Ok(Learned { estimator, calibration, method, selection: selection.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use carecast_models::preprocess::{FeatureStats, FittedFeature};

    /// `n` rows of two standardised columns, the outcome driven by the first.
    fn rows(n: usize) -> Encoded {
        let mut rng = Rng(5);
        let mut data = Encoded { x: Vec::new(), n_cols: 2, y: Vec::new(), key_hash: Vec::new(), follow_up: Vec::new() };
        for r in 0..n {
            let (a, b) = (rng.normal(0.0, 1.0), rng.normal(0.0, 1.0));
            data.x.extend([a, b]);
            data.y.push(rng.unit() < 1.0 / (1.0 + (-(1.5 * a - 1.0)).exp()));
            data.key_hash.push(r as u64 * 7919);
        }
        data
    }

    /// Two standard normal features, encoded as they are.
    fn preprocessor() -> Preprocessor {
        let feature = |name: &str| FittedFeature {
            spec: serde_json::from_value(serde_json::json!({"name": name, "type": "numeric"})).unwrap(),
            stats: FeatureStats::Numeric { median: 0.0, mean: 0.0, sd: 1.0, min: -5.0, max: 5.0, had_missing: false },
        };
        Preprocessor { encoding: Encoding::Standardised, features: vec![feature("a"), feature("b")] }
    }

    #[test]
    fn a_bad_parameter_is_refused_by_name_before_any_row_is_read() {
        let pre = preprocessor();
        // No rows at all: any learner that reached the data would fail another way or panic.
        let empty = Encoded { x: vec![], n_cols: 2, y: vec![], key_hash: vec![], follow_up: vec![] };
        let input = FitInput { pre: &pre, data: &empty, calibrating: false };
        let refused = |result: Result<Learned<Choice>, FitError>| match result {
            Err(FitError::Params(e)) => format!("{} {}", e.learner, e.param),
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("fitted with a bad parameter"),
        };
        assert_eq!(refused(learn(&LogisticParams { alphas: vec![1.0, -1.0] }, &input)), "logistic alphas");
        assert_eq!(
            refused(learn(&ElasticNetParams { l1_share: 0.0, ..Default::default() }, &input)),
            "elastic net l1_share"
        );
        let gbm = GbmSearch { shapes: vec![(8, 4), (1, 3)], ..Default::default() };
        assert_eq!(refused(learn(&gbm, &input)), "gbm max_leaves");
        let nan_weight = GbmSearch::weighted(f64::NAN);
        assert_eq!(refused(learn(&nan_weight, &input)), "gbm positive_weight");
        let mlp = MlpParams { hidden: [32, 0], ..MlpParams::new(Schedule::default()) };
        assert_eq!(refused(learn(&mlp, &input)), "mlp hidden");
        let gru = GruParams::new(Schedule { batch_size: 0, ..Schedule::default() });
        assert_eq!(refused(learn(&gru, &input)), "gru batch_size");
        let hazard = HazardParams { penalty: ElasticNetParams { path_ratio: 1.5, ..Default::default() } };
        assert_eq!(refused(learn(&hazard, &input)), "elastic net path_ratio");
        // And the defaults pass.
        assert!(LogisticParams::default().check().is_ok() && GbmSearch::default().check().is_ok());
        assert!(MlpParams::new(Schedule::default()).check().is_ok() && HazardParams::default().check().is_ok());
    }

    #[test]
    fn a_weight_the_algorithm_would_ignore_is_refused() {
        let options =
            |algorithm| TrainOptions { algorithm, calibration: calibrate::Method::None, positive_weight: 3.0 };
        assert_eq!(options(Algorithm::Lasso).validate(), Err(OptionsError::UnweightedAlgorithm("lasso")));
        assert!(options(Algorithm::Gbm).validate().is_ok());
    }

    #[test]
    fn the_record_names_the_penalty_cross_validation_chose() {
        let (pre, data) = (preprocessor(), rows(1500));
        for calibration in [calibrate::Method::None, calibrate::Method::Platt] {
            let options = TrainOptions { algorithm: Algorithm::Logistic, calibration, positive_weight: 1.0 };
            let fitted = fit(&options, &pre, &data).unwrap();
            let Choice::Logistic(choice) = &fitted.selection.choice else { panic!("{:?}", fitted.selection) };
            let grid = LogisticParams::default().alphas;
            assert_eq!(choice.cv_log_loss.iter().map(|c| c.penalty).collect::<Vec<_>>(), grid);
            let lowest = choice.cv_log_loss.iter().min_by(|a, b| a.log_loss.total_cmp(&b.log_loss)).unwrap();
            assert_eq!(choice.alpha, lowest.penalty);
            let folds = if calibration == calibrate::Method::None { "5-fold" } else { "4-fold" };
            assert!(fitted.selection.method.starts_with(folds), "{}", fitted.selection.method);
            // The calibration map saw only fold 0, and says so.
            let held_out = data.key_hash.iter().filter(|k| *k % 5 == 0).count();
            assert_eq!(
                fitted.selection.calibration.as_ref().map(|c| c.rows),
                (calibration != calibrate::Method::None).then_some(held_out)
            );
            assert_eq!(fitted.calibration.is_some(), calibration != calibrate::Method::None);
        }
    }
}
