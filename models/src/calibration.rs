//! Calibration: the map from an estimator's margin to the probability a clinician is shown, fitted
//! on rows the estimator did not learn from, and shifted for a new site (recalibration in the
//! large) without refitting the model.

use crate::invalid::InvalidModel;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibration {
    /// `logit p = intercept + slope * margin` (Platt 1999). Affine in the margin, so explanations
    /// stay exact on the calibrated log-odds: every contribution is multiplied by `slope`.
    Platt { intercept: f64, slope: f64 },
    /// Isotonic regression of the outcome on the margin (pool-adjacent-violators): a
    /// non-decreasing curve through `(margins[i], probabilities[i])`, linear between knots and flat
    /// beyond them, then shifted by `logit_offset` on the log-odds scale. Explanations stay on the
    /// estimator's margin, which the curve only reorders monotonically.
    Isotonic { margins: Vec<f64>, probabilities: Vec<f64>, logit_offset: f64 },
    /// A discrete-time hazard model's risk by the horizon: the margin is the log-odds hazard in
    /// the first interval, `interval_offsets[k]` shifts it for interval `k`, and
    /// `risk = 1 - prod_k (1 - sigmoid(margin + interval_offsets[k]))`, then shifted by
    /// `logit_offset`. Monotone in the margin; explanations stay on the margin (log-odds hazard).
    DiscreteHazard { interval_offsets: Vec<f64>, logit_offset: f64 },
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

impl Calibration {
    /// Calibrated log-odds for an estimator margin.
    pub fn log_odds(&self, margin: f64) -> f64 {
        match self {
            Calibration::Platt { intercept, slope } => intercept + slope * margin,
            Calibration::Isotonic { margins, probabilities, logit_offset } => {
                let i = margins.partition_point(|&m| m <= margin);
                let p = if i == 0 {
                    probabilities[0]
                } else if i == margins.len() {
                    probabilities[i - 1]
                } else {
                    let t = (margin - margins[i - 1]) / (margins[i] - margins[i - 1]);
                    probabilities[i - 1] + t * (probabilities[i] - probabilities[i - 1])
                };
                logit(p) + logit_offset
            }
            Calibration::DiscreteHazard { interval_offsets, logit_offset } => {
                // log of survival through every interval, summed stably: log(1 - sigmoid(z)) = -softplus(z).
                let log_survival: f64 = interval_offsets.iter().map(|d| -softplus(margin + d)).sum();
                // logit(1 - S) = log(1 - S) - log(S), with log(1 - S) = ln(-expm1(log S)).
                let risk_log_odds = (-log_survival.exp_m1()).max(1e-300).ln() - log_survival;
                risk_log_odds + logit_offset
            }
        }
    }

    /// Where explanations can follow the calibration exactly: the slope multiplying every
    /// contribution and the margin (`None` for a non-linear map).
    pub fn affine_slope(&self) -> Option<f64> {
        match self {
            Calibration::Platt { slope, .. } => Some(*slope),
            Calibration::Isotonic { .. } | Calibration::DiscreteHazard { .. } => None,
        }
    }

    /// The same calibration shifted by `delta` log-odds: recalibration in the large.
    pub fn shifted(&self, delta: f64) -> Self {
        match self {
            Calibration::Platt { intercept, slope } => {
                Calibration::Platt { intercept: intercept + delta, slope: *slope }
            }
            Calibration::Isotonic { margins, probabilities, logit_offset } => Calibration::Isotonic {
                margins: margins.clone(),
                probabilities: probabilities.clone(),
                logit_offset: logit_offset + delta,
            },
            Calibration::DiscreteHazard { interval_offsets, logit_offset } => Calibration::DiscreteHazard {
                interval_offsets: interval_offsets.clone(),
                logit_offset: logit_offset + delta,
            },
        }
    }

    pub fn validate(&self) -> Result<(), InvalidModel> {
        match self {
            Calibration::Platt { intercept, slope } => {
                if !intercept.is_finite() || !slope.is_finite() || *slope <= 0.0 {
                    return Err(InvalidModel::new(
                        "Platt calibration",
                        "needs a finite intercept and a positive slope",
                    ));
                }
            }
            Calibration::Isotonic { margins, probabilities, logit_offset } => {
                let ok = !margins.is_empty()
                    && margins.len() == probabilities.len()
                    && margins.windows(2).all(|w| w[0] < w[1])
                    && probabilities.windows(2).all(|w| w[0] <= w[1])
                    && probabilities.iter().all(|p| (0.0..=1.0).contains(p))
                    && logit_offset.is_finite();
                if !ok {
                    return Err(InvalidModel::new(
                        "isotonic calibration",
                        "needs increasing margins and non-decreasing probabilities in [0, 1]",
                    ));
                }
            }
            Calibration::DiscreteHazard { interval_offsets, logit_offset } => {
                if interval_offsets.is_empty()
                    || interval_offsets.iter().any(|d| !d.is_finite())
                    || !logit_offset.is_finite()
                {
                    return Err(InvalidModel::new(
                        "discrete-time hazard",
                        "needs finite offsets for at least one interval",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_hazard_gives_the_risk_of_an_event_in_any_interval() {
        let c = Calibration::DiscreteHazard { interval_offsets: vec![0.0, 0.4, -0.3], logit_offset: 0.0 };
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        for margin in [-6.0, -2.0, 0.0, 1.5] {
            let survival: f64 = [0.0, 0.4, -0.3].iter().map(|d| 1.0 - sig(margin + d)).product();
            let risk = sig(c.log_odds(margin));
            assert!((risk - (1.0 - survival)).abs() < 1e-12, "margin {margin}: {risk} vs {}", 1.0 - survival);
        }
        // Rare hazards stay accurate (no cancellation in 1 - S): the risk is the sum of the hazards.
        let hazards: f64 = [0.0, 0.4, -0.3].iter().map(|d| sig(-30.0 + d)).sum();
        assert!((sig(c.log_odds(-30.0)) / hazards - 1.0).abs() < 1e-9);
    }

    #[test]
    fn isotonic_interpolates_and_is_flat_beyond_its_knots() {
        let c = Calibration::Isotonic {
            margins: vec![-1.0, 0.0, 2.0],
            probabilities: vec![0.1, 0.2, 0.6],
            logit_offset: 0.0,
        };
        let p = |m: f64| 1.0 / (1.0 + (-c.log_odds(m)).exp());
        assert!((p(-5.0) - 0.1).abs() < 1e-12 && (p(9.0) - 0.6).abs() < 1e-12);
        assert!((p(1.0) - 0.4).abs() < 1e-12);
        let shifted = c.shifted(0.5);
        assert!((shifted.log_odds(1.0) - c.log_odds(1.0) - 0.5).abs() < 1e-12);
        assert!(c.validate().is_ok());
        let bad = Calibration::Isotonic { margins: vec![0.0, 0.0], probabilities: vec![0.1, 0.2], logit_offset: 0.0 };
        assert!(bad.validate().is_err());
    }
}
