//! What `carecast train` lets a researcher choose about a fit, checked before any data is read.

use super::calibrate;
use carecast_models::preprocess::Encoding;
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
    /// A non-negative linear stack of the logistic, GBM and MLP models (and the hazard model
    /// where the task has follow-up), weighted on their out-of-fold margins.
    Stack,
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
            Algorithm::Stack => "stack",
        }
    }

    /// Whether a fit weights its rows by `--positive-weight`: the GBM and the networks.
    pub fn weights_rows(self) -> bool {
        matches!(self, Algorithm::Gbm | Algorithm::Mlp | Algorithm::Gru)
    }

    /// Linear models need imputed, standardised columns; trees take values as they are; a stack
    /// holds both, each member reading its own.
    pub fn encoding(self) -> Encoding {
        match self {
            Algorithm::Gbm => Encoding::Native,
            Algorithm::Stack => Encoding::Stacked,
            _ => Encoding::Standardised,
        }
    }

    /// Whether the fit also learns from rows censored within the horizon (time at risk): the
    /// hazard model, and a stack, whose hazard member does.
    pub fn uses_censored_rows(self) -> bool {
        matches!(self, Algorithm::Hazard | Algorithm::Stack)
    }

    /// Whether the fit makes its own map to risk, so no calibration can be laid over it.
    fn calibrates_itself(self) -> bool {
        matches!(self, Algorithm::Hazard | Algorithm::Stack)
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
    #[error(
        "calibration: a {0} model maps to risk in its own fit (a hazard model to the risk by the horizon; a stack's weights and intercept are a logistic calibration of its members' out-of-fold predictions); it takes no second calibration"
    )]
    SelfCalibrated(&'static str),
    #[error("positive-weight: only gbm, mlp and gru weight rows; {0} fits every row alike")]
    UnweightedAlgorithm(&'static str),
}

impl TrainOptions {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !(self.positive_weight.is_finite() && self.positive_weight > 0.0) {
            return Err(OptionsError::PositiveWeight(self.positive_weight));
        }
        if self.algorithm.calibrates_itself() && self.calibration != calibrate::Method::None {
            return Err(OptionsError::SelfCalibrated(self.algorithm.short_name()));
        }
        if self.positive_weight != 1.0 && !self.algorithm.weights_rows() {
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
