//! Fitting: the preprocessor's statistics, the estimators, and their calibration. [`fit`] takes
//! rows already encoded by the model's own preprocessor and returns everything `model.json` holds
//! besides the preprocessor, with a record of how hyper-parameters were chosen.
//!
//! Splits are by patient key: cross-validation folds are `key_hash % 5`, and the tuning split is
//! fold 0. The linear models' penalties and the GBM's tree shape are chosen by cross-validation
//! over the folds, and the final model is refitted on every training row; the networks early-stop
//! on the tuning split and keep the fit on the other folds. With calibration, fold 0 is kept for
//! the calibration map alone, so the map never sees its own fit's rows.
//!
//! Modules build one way: [`options`] and [`learner`] (what every learner shares) first, then each
//! learner, then [`selection`] (the records of all of them), then this module, which picks one.
//! The [`stack`] combines the others through this module's dispatch, which it is handed as a
//! function, so it names no learner.

pub mod calibrate;
pub mod elastic_net;
pub mod gbm;
pub mod gbm_search;
pub mod gru_training;
pub mod hazard;
pub mod learner;
pub mod logistic;
pub mod mlp_training;
pub mod network;
pub mod options;
pub mod preprocessor_training;
pub mod selection;
pub mod stack;

pub use learner::{Encoded, Ending, FitError, FitInput, Learned, Learner, ParamError};
pub use options::{Algorithm, OptionsError, TrainOptions};

use carecast_models::Estimator;
use carecast_models::calibration::Calibration;
use carecast_models::preprocess::Preprocessor;
use elastic_net::ElasticNetParams;
use gbm_search::GbmSearch;
use gru_training::GruParams;
use hazard::HazardParams;
use logistic::LogisticParams;
use mlp_training::MlpParams;
use network::Schedule;
use selection::{CalibrationFit, Choice, ModelSelection};
use stack::StackParams;

/// A fitted estimator with its calibration map and how it was chosen.
pub struct Fitted {
    pub estimator: Estimator,
    pub calibration: Option<Calibration>,
    pub selection: ModelSelection,
}

/// Fits the chosen algorithm with its default parameters (and the calibration asked for) on
/// encoded training rows.
pub fn fit(options: &TrainOptions, pre: &Preprocessor, data: &Encoded) -> Result<Fitted, FitError> {
    options.validate()?;
    let input = FitInput { pre, data, calibrating: options.calibration != calibrate::Method::None };
    let learned = learn_with(options.algorithm, options.positive_weight, &input)?;
    let mut selection = ModelSelection::new(learned.method, learned.selection);
    let mut calibration = learned.calibration;
    if input.calibrating {
        let tuning = data.tuning_rows();
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

/// Fits `algorithm` with its default parameters, positive rows weighted by `weight`.
fn learn_with(algorithm: Algorithm, weight: f64, input: &FitInput<'_>) -> Result<Learned<Choice>, FitError> {
    match algorithm {
        Algorithm::Logistic => learn(&LogisticParams::default(), input),
        Algorithm::Lasso => learn(&ElasticNetParams::lasso(), input),
        Algorithm::ElasticNet => learn(&ElasticNetParams::default(), input),
        Algorithm::Gbm => learn(&GbmSearch::weighted(weight), input),
        Algorithm::Mlp => learn(&MlpParams::new(Schedule::weighted(weight)), input),
        Algorithm::Gru => learn(&GruParams::weighted(weight), input),
        Algorithm::Hazard => learn(&HazardParams::default(), input),
        Algorithm::Stack => learn(&StackParams::for_data(input.data, |a, input| learn_with(a, 1.0, input)), input),
    }
}

/// Runs a learner and files its record under its own kind.
fn learn<L: Learner<Selection: Into<Choice>>>(learner: &L, input: &FitInput<'_>) -> Result<Learned<Choice>, FitError> {
    let Learned { estimator, calibration, method, selection } = learner.fit(input)?;
    Ok(Learned { estimator, calibration, method, selection: selection.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use carecast_models::preprocess::{Encoding, FeatureStats, FittedFeature};

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
        assert_eq!(refused(learn(&hazard, &input)), "hazard path_ratio");
        // And the defaults pass.
        assert!(LogisticParams::default().validate().is_ok() && GbmSearch::default().validate().is_ok());
        assert!(MlpParams::new(Schedule::default()).validate().is_ok() && HazardParams::default().validate().is_ok());
        assert!(ElasticNetParams::lasso().validate().is_ok() && GruParams::new(Schedule::default()).validate().is_ok());
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
