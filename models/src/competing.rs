//! Competing risks at inference time: cause-specific discrete-time hazards of the outcome and of
//! a competing event (death, for dementia), turned into the cumulative incidence of the outcome
//! by the horizon (the Aalen–Johansen estimator in discrete time):
//!
//! `F = sum_k S_(k-1) h1_k`, `S_k = S_(k-1) (1 - h1_k - h2_k)`,
//! `h_ck = exp(z_ck) / (1 + exp(z_1k) + exp(z_2k))`, `z_ck = eta_c + a_ck`,
//!
//! where `eta_c` is cause `c`'s linear predictor and `a_ck` its offset in interval `k`: the
//! multinomial logit of the discrete-time competing-risks model, so the hazards never sum past
//! one. (Each `z_c` is the log-odds of cause `c` against neither, which training fits by a
//! logistic regression on the intervals that ended in `c` or in neither: Begg & Gray 1984's
//! individualised regressions.) A patient
//! who dies first can no longer be diagnosed, so `F` is below the risk a model that censors at
//! death reports (`1 - prod_k (1 - h1_k)`), most in the oldest and sickest.
//!
//! The margin is `logit F`. It is not additive in the inputs (both linear predictors meet in
//! the recursion), so contributions are integrated gradients from the training mean along the
//! straight line to the patient: along it both predictors move linearly, so each column's
//! contribution is `(x_j - b_j) (w1_j A1 + w2_j A2)` with `A_c` the integral of
//! `d logit F / d eta_c`, by Gauss–Legendre quadrature until the contributions add up to within
//! [`crate::integrated::COMPLETENESS`]; the error left is reported with every score.

use crate::integrated;
use crate::invalid::InvalidModel;
use serde::{Deserialize, Serialize};

/// One cause's discrete-time hazard: log-odds `intercept + weights . x + interval_offsets[k]`
/// in interval `k` (the first offset is 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseHazard {
    pub intercept: f64,
    pub weights: Vec<f64>,
    pub interval_offsets: Vec<f64>,
}

impl CauseHazard {
    fn linear_predictor(&self, x: &[f64]) -> f64 {
        self.intercept + crate::linear::dot(&self.weights, x)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompetingHazards {
    pub outcome: CauseHazard,
    /// The competing event's hazard, over the same intervals.
    pub competing: CauseHazard,
    /// Mean of each encoded column over the training rows: where explanations start.
    pub background: Vec<f64>,
}

impl CompetingHazards {
    /// The outcome's cumulative incidence by the horizon for linear predictors `(eta1, eta2)`,
    /// with its derivatives in each (forward through the recursion).
    pub fn incidence(&self, eta1: f64, eta2: f64) -> (f64, f64, f64) {
        // Free of both events so far, and its derivatives in eta1 and eta2.
        let (mut s, mut s1, mut s2) = (1.0, 0.0, 0.0);
        let (mut f, mut f1, mut f2) = (0.0, 0.0, 0.0);
        for (a1, a2) in self.outcome.interval_offsets.iter().zip(&self.competing.interval_offsets) {
            let (z1, z2) = (eta1 + a1, eta2 + a2);
            // The softmax over (neither, outcome, competing), shifted by its largest term.
            let top = z1.max(z2).max(0.0);
            let (e0, e1, e2) = ((-top).exp(), (z1 - top).exp(), (z2 - top).exp());
            let total = e0 + e1 + e2;
            let (q, h1, h2) = (e0 / total, e1 / total, e2 / total);
            f += s * h1;
            f1 += s1 * h1 + s * h1 * (1.0 - h1);
            f2 += s2 * h1 - s * h1 * h2;
            (s, s1, s2) = (s * q, s1 * q - s * q * h1, s2 * q - s * q * h2);
        }
        (f, f1, f2)
    }

    /// Log-odds of the cumulative incidence, with its derivatives in `eta1` and `eta2`. The
    /// linear predictors are held within ±700, where every hazard is already 0 or 1, so an
    /// absurd input (a feature without a possible range) cannot overflow them into NaN.
    fn log_odds(&self, x: &[f64]) -> (f64, f64, f64) {
        let eta = |h: &CauseHazard| h.linear_predictor(x).clamp(-700.0, 700.0);
        let (f, f1, f2) = self.incidence(eta(&self.outcome), eta(&self.competing));
        let f = f.clamp(1e-300, 1.0 - 1e-16);
        let scale = 1.0 / (f * (1.0 - f));
        ((f / (1.0 - f)).ln(), f1 * scale, f2 * scale)
    }

    /// Log-odds of the outcome by the horizon, the competing event accounted for.
    pub fn margin(&self, x: &[f64]) -> f64 {
        self.log_odds(x).0
    }

    /// The margin at the training mean: the base value of integrated gradients.
    pub fn expected_margin(&self) -> f64 {
        self.margin(&self.background)
    }

    /// Integrated gradients from the background to `x`, one value per encoded column.
    pub fn contributions(&self, x: &[f64], phi: &mut [f64]) {
        let target = self.margin(x) - self.expected_margin();
        integrated::gradients(&self.background, x, target, phi, |point, grad| {
            let (_, g1, g2) = self.log_odds(point);
            for ((g, w1), w2) in grad.iter_mut().zip(&self.outcome.weights).zip(&self.competing.weights) {
                *g = g1 * w1 + g2 * w2;
            }
        });
    }

    pub fn validate(&self, n_columns: usize) -> Result<(), InvalidModel> {
        for (name, h) in [("outcome", &self.outcome), ("competing event", &self.competing)] {
            let part = format!("{name} hazard");
            if h.weights.len() != n_columns {
                return Err(InvalidModel::new(
                    part,
                    format!("has {} weights for {n_columns} columns", h.weights.len()),
                ));
            }
            if h.interval_offsets.is_empty() || h.interval_offsets.len() != self.outcome.interval_offsets.len() {
                return Err(InvalidModel::new(part, "needs one offset per interval, as many as the outcome's"));
            }
            if !h.intercept.is_finite() || h.weights.iter().chain(&h.interval_offsets).any(|w| !w.is_finite()) {
                return Err(InvalidModel::new(part, "has non-finite coefficients"));
            }
        }
        if self.background.len() != n_columns {
            return Err(InvalidModel::new("competing risks background", format!("needs {n_columns} column means")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(a1: Vec<f64>, a2: Vec<f64>) -> CompetingHazards {
        let hazard = |intercept, weights, interval_offsets| CauseHazard { intercept, weights, interval_offsets };
        CompetingHazards {
            outcome: hazard(-3.0, vec![0.8, -0.4, 0.0], a1),
            competing: hazard(-2.5, vec![0.3, 0.0, 1.1], a2),
            background: vec![0.1, -0.2, 0.3],
        }
    }

    #[test]
    fn incidence_equals_enumerating_every_path_through_the_intervals() {
        // Brute force: each interval ends in the outcome, the competing event or neither (with
        // the multinomial logit's probabilities); a path's probability is the product along it;
        // F sums the paths whose first event is the outcome.
        let m = model(vec![0.0, 0.3, 0.5, 0.6], vec![0.0, 0.4, 0.9, 1.3]);
        for (eta1, eta2) in [(-3.0, -2.5), (-1.0, 0.5), (0.7, -4.0), (2.0, 3.0)] {
            let k = m.outcome.interval_offsets.len();
            let mut brute = 0.0;
            for path in 0..3usize.pow(k as u32) {
                let codes: Vec<usize> = (0..k).map(|i| path / 3usize.pow(i as u32) % 3).collect();
                let Some(first) = codes.iter().position(|&c| c != 0) else { continue };
                // Each path once: nothing happens after its first event.
                if codes[first + 1..].iter().any(|&c| c != 0) || codes[first] != 1 {
                    continue;
                }
                let h = |i: usize| {
                    let (e1, e2) =
                        ((eta1 + m.outcome.interval_offsets[i]).exp(), (eta2 + m.competing.interval_offsets[i]).exp());
                    (e1 / (1.0 + e1 + e2), e2 / (1.0 + e1 + e2))
                };
                brute += (0..first).map(|i| 1.0 - h(i).0 - h(i).1).product::<f64>() * h(first).0;
            }
            let (f, f1, f2) = m.incidence(eta1, eta2);
            assert!((f - brute).abs() < 1e-14, "{f} against {brute}");
            // Derivatives against central differences.
            let e = 1e-6;
            let d1 = (m.incidence(eta1 + e, eta2).0 - m.incidence(eta1 - e, eta2).0) / (2.0 * e);
            let d2 = (m.incidence(eta1, eta2 + e).0 - m.incidence(eta1, eta2 - e).0) / (2.0 * e);
            assert!((f1 - d1).abs() < 1e-8 && (f2 - d2).abs() < 1e-8, "{f1} {d1} {f2} {d2}");
        }
    }

    #[test]
    fn without_a_competing_event_the_incidence_is_the_plain_risk() {
        let m = model(vec![0.0, 0.2, 0.4], vec![-800.0; 3]);
        let (f, _, _) = m.incidence(-2.0, 0.0);
        let plain =
            1.0 - (0..3).map(|k| 1.0 - crate::scorer::sigmoid(-2.0 + m.outcome.interval_offsets[k])).product::<f64>();
        assert!((f - plain).abs() < 1e-15);
        // And a competing event lowers it.
        let competing = model(vec![0.0, 0.2, 0.4], vec![-1.0; 3]);
        assert!(competing.incidence(-2.0, 0.0).0 < f);
    }

    #[test]
    fn explanations_add_up_to_the_margin() {
        let m = model(vec![0.0, 0.3, 0.5], vec![0.0, 0.4, 0.9]);
        for x in [[2.0, 1.5, -1.0], [-3.0, 0.0, 4.0], [0.1, -0.2, 0.3]] {
            let mut phi = vec![0.0; 3];
            m.contributions(&x, &mut phi);
            let error = (m.expected_margin() + phi.iter().sum::<f64>() - m.margin(&x)).abs();
            assert!(error <= integrated::COMPLETENESS, "{error}");
            // The second column lowers the outcome's hazard and the third raises death's: both
            // lower the incidence as they rise.
            for j in [1, 2] {
                assert!(phi[j] * (x[j] - m.background[j]) <= 0.0, "column {j}: {}", phi[j]);
            }
        }
        // An absurd input saturates rather than overflows.
        assert!(m.margin(&[1e300, -1e300, 1e300]).is_finite());
        // At the background nothing is explained.
        let mut phi = vec![1.0; 3];
        m.contributions(&m.background.clone(), &mut phi);
        assert!(phi.iter().all(|p| p.abs() < 1e-15));
    }
}
