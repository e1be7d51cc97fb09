//! A recurrent model over a patient's event sequence at inference time (a GRU trained with burn,
//! run here without it), with integrated-gradients explanations.
//!
//! The sequence is made of encoded columns: each time step reads the columns of the features that
//! carry that step (`FeatureSpec::step`, oldest step first), and the output layer reads the final
//! hidden state beside the columns of the features without a step (age, time since admission).
//! The cell follows burn's `Gru` with `reset_after` (PyTorch's form):
//! `z = σ(Wz x + Uz h + b)`, `r = σ(Wr x + Ur h + b)`, `n = tanh(Wn x + bn + r ⊙ (Un h + bn'))`,
//! `h' = (1 − z) ⊙ n + z ⊙ h`.
//!
//! Unlike a ReLU network a GRU is smooth, so integrated gradients (from the training mean) have no
//! closed form: they are integrated by quadrature of exact (back-propagated) gradients
//! ([`crate::integrated`]) to within [`COMPLETENESS`]; the remaining error is reported with every
//! score as its additivity error.

use crate::invalid::InvalidModel;
use crate::mlp::Dense;
use serde::{Deserialize, Serialize};

pub use crate::integrated::COMPLETENESS;

/// One gate: how the step's input and the previous hidden state move it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub input: Dense,
    pub hidden: Dense,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gru {
    /// Encoded columns read at each time step, oldest first; every step reads the same channels.
    pub steps: Vec<Vec<usize>>,
    /// Encoded columns the output layer reads beside the final hidden state.
    pub static_columns: Vec<usize>,
    pub update: Gate,
    pub reset: Gate,
    pub candidate: Gate,
    /// One unit over `[final hidden state; static columns]`: the margin (log-odds).
    pub output: Dense,
    /// Mean encoded row over the training rows: the reference point of explanations.
    pub background: Vec<f64>,
}

/// What back-propagation needs from one step of the forward pass.
struct StepTrace {
    input: Vec<f64>,
    previous: Vec<f64>,
    update: Vec<f64>,
    reset: Vec<f64>,
    candidate: Vec<f64>,
    /// `Un h + bn'`, which the reset gate scales.
    recurrent: Vec<f64>,
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

impl Gru {
    fn hidden_size(&self) -> usize {
        self.update.hidden.outputs
    }

    fn run(&self, x: &[f64], mut trace: Option<&mut Vec<StepTrace>>) -> f64 {
        let mut h = vec![0.0; self.hidden_size()];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for columns in &self.steps {
            let input: Vec<f64> = columns.iter().map(|&c| x[c]).collect();
            let gate = |g: &Gate, a: &mut Vec<f64>, b: &mut Vec<f64>| {
                g.input.apply(&input, true, a);
                g.hidden.apply(&h, true, b);
            };
            gate(&self.update, &mut a, &mut b);
            let update: Vec<f64> = a.iter().zip(&b).map(|(p, q)| sigmoid(p + q)).collect();
            gate(&self.reset, &mut a, &mut b);
            let reset: Vec<f64> = a.iter().zip(&b).map(|(p, q)| sigmoid(p + q)).collect();
            gate(&self.candidate, &mut a, &mut b);
            let candidate: Vec<f64> = a.iter().zip(&b).zip(&reset).map(|((p, q), r)| (p + r * q).tanh()).collect();
            let next: Vec<f64> =
                h.iter().zip(&update).zip(&candidate).map(|((h, z), n)| (1.0 - z) * n + z * h).collect();
            let previous = std::mem::replace(&mut h, next);
            if let Some(trace) = trace.as_deref_mut() {
                trace.push(StepTrace { input, previous, update, reset, candidate, recurrent: b.clone() });
            }
        }
        h.extend(self.static_columns.iter().map(|&c| x[c]));
        self.output.apply(&h, true, &mut a);
        a[0]
    }

    pub fn margin(&self, x: &[f64]) -> f64 {
        self.run(x, None)
    }

    /// The margin at the background row: the base value of explanations.
    pub fn expected_margin(&self) -> f64 {
        self.margin(&self.background)
    }

    /// The margin's gradient with respect to every encoded column (zero for columns it does not
    /// read), by back-propagation through time; returns the margin.
    fn gradient(&self, x: &[f64], grad: &mut [f64], trace: &mut Vec<StepTrace>) -> f64 {
        trace.clear();
        let margin = self.run(x, Some(trace));
        grad.fill(0.0);
        let hidden = self.hidden_size();
        let w = &self.output.weights;
        for (&c, &wc) in self.static_columns.iter().zip(&w[hidden..]) {
            grad[c] += wc;
        }
        let mut dh = w[..hidden].to_vec();
        for (s, columns) in trace.iter().zip(&self.steps).rev() {
            let mut dh_previous: Vec<f64> = dh.iter().zip(&s.update).map(|(d, z)| d * z).collect();
            let d_candidate: Vec<f64> =
                (0..hidden).map(|j| dh[j] * (1.0 - s.update[j]) * (1.0 - s.candidate[j] * s.candidate[j])).collect();
            let d_update: Vec<f64> = (0..hidden)
                .map(|j| dh[j] * (s.previous[j] - s.candidate[j]) * s.update[j] * (1.0 - s.update[j]))
                .collect();
            let d_reset: Vec<f64> =
                (0..hidden).map(|j| d_candidate[j] * s.recurrent[j] * s.reset[j] * (1.0 - s.reset[j])).collect();
            let d_recurrent: Vec<f64> = d_candidate.iter().zip(&s.reset).map(|(d, r)| d * r).collect();
            let mut dx = vec![0.0; s.input.len()];
            for (gate, d_input, d_hidden) in [
                (&self.update, &d_update, &d_update),
                (&self.reset, &d_reset, &d_reset),
                (&self.candidate, &d_candidate, &d_recurrent),
            ] {
                gate.input.back(d_input, &mut dx);
                gate.hidden.back(d_hidden, &mut dh_previous);
            }
            for (&c, d) in columns.iter().zip(&dx) {
                grad[c] += d;
            }
            dh = dh_previous;
        }
        margin
    }

    /// Integrated gradients from the background to `x`, one value per encoded column.
    pub fn contributions(&self, x: &[f64], phi: &mut [f64]) {
        let target = self.margin(x) - self.expected_margin();
        let mut trace = Vec::new();
        crate::integrated::gradients(&self.background, x, target, phi, |point, grad| {
            self.gradient(point, grad, &mut trace);
        });
    }

    pub fn validate(&self, n_columns: usize) -> Result<(), InvalidModel> {
        let hidden = self.hidden_size();
        let channels = self.steps.first().map_or(0, Vec::len);
        if self.steps.is_empty() || self.steps.iter().any(|s| s.len() != channels) {
            return Err(InvalidModel::new("GRU steps", "needs at least one step, each with the same channels"));
        }
        if self.steps.iter().flatten().chain(&self.static_columns).any(|&c| c >= n_columns)
            || self.background.len() != n_columns
        {
            return Err(InvalidModel::new("GRU columns", format!("reads columns beyond the {n_columns} encoded ones")));
        }
        for (name, g) in [("update", &self.update), ("reset", &self.reset), ("candidate", &self.candidate)] {
            for (part, d, inputs) in [("input", &g.input, channels), ("hidden", &g.hidden, hidden)] {
                d.validate(inputs, hidden).map_err(|e| e.within(format!("GRU {name} gate, {part} weights")))?;
            }
        }
        self.output.validate(hidden + self.static_columns.len(), 1).map_err(|e| e.within("GRU output layer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dense(inputs: usize, outputs: usize, w: &mut impl Iterator<Item = f64>) -> Dense {
        Dense { inputs, outputs, weights: w.take(inputs * outputs).collect(), bias: w.take(outputs).collect() }
    }

    /// 2 channels over 3 steps (columns interleaved with 2 static ones), 4 hidden units.
    fn model(weights: &[f64], background: Vec<f64>) -> Gru {
        let mut w = weights.iter().copied().cycle();
        let mut gate = || Gate { input: dense(2, 4, &mut w), hidden: dense(4, 4, &mut w) };
        let (update, reset, candidate) = (gate(), gate(), gate());
        Gru {
            steps: vec![vec![0, 1], vec![3, 4], vec![6, 7]],
            static_columns: vec![2, 5],
            update,
            reset,
            candidate,
            output: dense(6, 1, &mut w),
            background,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn gradients_match_finite_differences_and_explanations_are_complete(
            w in proptest::collection::vec(-1.5f64..1.5, 97),
            x in proptest::collection::vec(-2.0f64..2.0, 9),
            bg in proptest::collection::vec(-1.0f64..1.0, 9),
        ) {
            let m = model(&w, bg);
            prop_assert!(m.validate(9).is_ok());
            let (mut grad, mut trace) = (vec![0.0; 9], Vec::new());
            let margin = m.gradient(&x, &mut grad, &mut trace);
            prop_assert!((margin - m.margin(&x)).abs() < 1e-12);
            for c in 0..9 {
                let h = 1e-6;
                let (mut up, mut down) = (x.clone(), x.clone());
                up[c] += h;
                down[c] -= h;
                let numeric = (m.margin(&up) - m.margin(&down)) / (2.0 * h);
                prop_assert!((grad[c] - numeric).abs() < 1e-6, "column {}: {} vs {}", c, grad[c], numeric);
            }
            prop_assert_eq!(grad[8], 0.0, "a column the model does not read");
            let mut phi = vec![0.0; 9];
            m.contributions(&x, &mut phi);
            let completeness = (phi.iter().sum::<f64>() - (m.margin(&x) - m.expected_margin())).abs();
            prop_assert!(completeness <= COMPLETENESS, "completeness error {}", completeness);
            // Against a fine midpoint rule on the same (checked) gradients.
            let steps = 4000;
            let mut riemann = [0.0; 9];
            for k in 0..steps {
                let t = (k as f64 + 0.5) / steps as f64;
                let point: Vec<f64> = m.background.iter().zip(&x).map(|(b, a)| b + t * (a - b)).collect();
                m.gradient(&point, &mut grad, &mut trace);
                for c in 0..9 {
                    riemann[c] += grad[c] * (x[c] - m.background[c]) / steps as f64;
                }
            }
            for c in 0..9 {
                prop_assert!((phi[c] - riemann[c]).abs() < 1e-5, "column {}: {} vs {}", c, phi[c], riemann[c]);
            }
        }
    }
}
