//! Logistic regression at inference time, with its exact explanation.

use serde::{Deserialize, Serialize};

/// A linear model on the log-odds scale over encoded columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub intercept: f64,
    pub weights: Vec<f64>,
    /// Mean of each encoded column over the training rows: the reference point of explanations.
    pub background: Vec<f64>,
}

impl LinearModel {
    pub fn margin(&self, x: &[f64]) -> f64 {
        self.intercept + dot(&self.weights, x)
    }

    /// The margin of the average training patient.
    pub fn expected_margin(&self) -> f64 {
        self.intercept + dot(&self.weights, &self.background)
    }

    /// Linear SHAP with independent features: `w_j (x_j - E[x_j])`, the exact Shapley values of a
    /// linear model. Writes one value per column into `phi`.
    pub fn contributions(&self, x: &[f64], phi: &mut [f64]) {
        for ((p, (w, m)), xj) in phi.iter_mut().zip(self.weights.iter().zip(&self.background)).zip(x) {
            *p = w * (xj - m);
        }
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
