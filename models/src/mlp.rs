//! A multilayer perceptron at inference time (trained with burn, run here without it), with its
//! exact integrated-gradients explanation.
//!
//! The network is dense layers with ReLU between them and a linear output: the margin (log-odds).
//! Along the straight path from the background row to the patient's row such a network is
//! piecewise linear: it changes slope only where a hidden unit switches on or off. Integrated
//! gradients (Sundararajan, Taly & Yan 2017) are therefore computed exactly, segment by segment,
//! with no Riemann approximation, and satisfy completeness (contributions add up to the margin
//! minus the background's margin) to rounding error.

use crate::invalid::InvalidModel;
use serde::{Deserialize, Serialize};

/// How far past a breakpoint (as a share of the path) a unit's state is read.
const PROBE: f64 = 1e-10;

/// One dense layer: `out = weights · in + bias`, `weights` row-major `[outputs][inputs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f64>,
    pub bias: Vec<f64>,
}

impl Dense {
    /// `weights · x`, plus the bias when `with_bias` (without it: how a change of input moves the outputs).
    pub(crate) fn apply(&self, x: &[f64], with_bias: bool, out: &mut Vec<f64>) {
        out.clear();
        out.extend(self.weights.chunks(self.inputs).zip(&self.bias).map(|(w, b)| {
            let wx = w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
            if with_bias { b + wx } else { wx }
        }));
    }

    /// Back-propagation: adds `weightsᵀ · grad_out` (the gradient with respect to the inputs) to
    /// `grad_in`.
    pub(crate) fn back(&self, grad_out: &[f64], grad_in: &mut [f64]) {
        for (w, &g) in self.weights.chunks(self.inputs).zip(grad_out) {
            if g != 0.0 {
                grad_in.iter_mut().zip(w).for_each(|(d, wi)| *d += g * wi);
            }
        }
    }

    /// Checks the shapes against the expected ones and that every weight is finite.
    pub(crate) fn validate(&self, inputs: usize, outputs: usize) -> Result<(), InvalidModel> {
        if self.inputs != inputs
            || self.outputs != outputs
            || self.weights.len() != inputs * outputs
            || self.bias.len() != outputs
        {
            return Err(InvalidModel::new(
                "shape",
                format!("expected {inputs} inputs and {outputs} outputs, found inconsistent shapes"),
            ));
        }
        if self.weights.iter().chain(&self.bias).any(|w| !w.is_finite()) {
            return Err(InvalidModel::new("weights", "not all finite"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    /// Hidden layers (ReLU after each) then the output layer (one unit, no activation).
    pub layers: Vec<Dense>,
    /// Mean encoded row over the training rows: the reference point of explanations.
    pub background: Vec<f64>,
}

impl Mlp {
    pub fn margin(&self, x: &[f64]) -> f64 {
        let (mut a, mut b) = (x.to_vec(), Vec::new());
        for (i, layer) in self.layers.iter().enumerate() {
            layer.apply(&a, true, &mut b);
            if i + 1 < self.layers.len() {
                b.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            std::mem::swap(&mut a, &mut b);
        }
        a[0]
    }

    /// The margin at the background row: the base value of explanations.
    pub fn expected_margin(&self) -> f64 {
        self.margin(&self.background)
    }

    /// Exact integrated gradients from the background to `x`, one value per input column.
    pub fn contributions(&self, x: &[f64], phi: &mut [f64]) {
        phi.fill(0.0);
        let direction: Vec<f64> = x.iter().zip(&self.background).map(|(a, b)| a - b).collect();
        let hidden = self.layers.len() - 1;
        let mut t = 0.0;
        // Guards against a pathological run of breakpoints; each segment moves t forward.
        for _ in 0..100_000 {
            // Pre-activations at t and their rates of change along the path, layer by layer; a
            // unit is on for the segment after t if it is positive, or zero and rising.
            let mut value: Vec<f64> = self.background.iter().zip(&direction).map(|(b, d)| b + t * d).collect();
            let mut slope = direction.clone();
            let mut next = 1.0_f64;
            let mut active: Vec<Vec<bool>> = Vec::with_capacity(hidden);
            let (mut v2, mut s2) = (Vec::new(), Vec::new());
            for layer in &self.layers[..hidden] {
                layer.apply(&value, true, &mut v2);
                layer.apply(&slope, false, &mut s2);
                // Probing just past t decides units sitting on their kink at t (a breakpoint
                // reached with rounding error), so a segment never runs with a stale pattern.
                let on: Vec<bool> = v2.iter().zip(&s2).map(|(&z, &dz)| z + dz * PROBE > 0.0).collect();
                for (&z, &dz) in v2.iter().zip(&s2) {
                    if dz != 0.0 {
                        let crossing = t - z / dz;
                        if crossing > t + PROBE && crossing < next {
                            next = crossing;
                        }
                    }
                }
                value = v2.iter().zip(&on).map(|(&z, &o)| if o { z } else { 0.0 }).collect();
                slope = s2.iter().zip(&on).map(|(&dz, &o)| if o { dz } else { 0.0 }).collect();
                active.push(on);
            }
            // The gradient of the margin for this activation pattern, by back-propagation.
            let output = &self.layers[hidden];
            let mut grad: Vec<f64> = output.weights.clone();
            for (layer, on) in self.layers[..hidden].iter().zip(&active).rev() {
                grad.iter_mut().zip(on).filter(|(_, on)| !**on).for_each(|(g, _)| *g = 0.0);
                let mut below = vec![0.0; layer.inputs];
                layer.back(&grad, &mut below);
                grad = below;
            }
            let length = next - t;
            for ((p, g), d) in phi.iter_mut().zip(&grad).zip(&direction) {
                *p += g * d * length;
            }
            if next >= 1.0 {
                return;
            }
            t = next;
        }
    }

    pub fn validate(&self, n_columns: usize) -> Result<(), InvalidModel> {
        if self.layers.is_empty() || self.background.len() != n_columns {
            return Err(InvalidModel::new(
                "MLP",
                format!("has no layers or a background of {} for {n_columns} columns", self.background.len()),
            ));
        }
        let mut inputs = n_columns;
        for (i, l) in self.layers.iter().enumerate() {
            let outputs = if i + 1 == self.layers.len() { 1 } else { l.outputs };
            l.validate(inputs, outputs).map_err(|e| e.within(format!("MLP layer {i}")))?;
            inputs = l.outputs;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layer(inputs: usize, outputs: usize, w: &[f64]) -> Dense {
        Dense {
            inputs,
            outputs,
            weights: w[..inputs * outputs].to_vec(),
            bias: w[inputs * outputs..inputs * outputs + outputs].to_vec(),
        }
    }

    /// Integrated gradients by a fine midpoint Riemann sum with numerical gradients.
    fn riemann_ig(m: &Mlp, x: &[f64], steps: usize) -> Vec<f64> {
        let mut phi = vec![0.0; x.len()];
        for k in 0..steps {
            let t = (k as f64 + 0.5) / steps as f64;
            let point: Vec<f64> = m.background.iter().zip(x).map(|(b, a)| b + t * (a - b)).collect();
            for j in 0..x.len() {
                let h = 1e-6;
                let (mut up, mut down) = (point.clone(), point.clone());
                up[j] += h;
                down[j] -= h;
                phi[j] += (m.margin(&up) - m.margin(&down)) / (2.0 * h) * (x[j] - m.background[j]) / steps as f64;
            }
        }
        phi
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(60))]
        #[test]
        fn exact_integrated_gradients_are_complete_and_match_the_integral(
            w in proptest::collection::vec(-1.5f64..1.5, 64),
            x in proptest::collection::vec(-2.0f64..2.0, 3),
            bg in proptest::collection::vec(-1.0f64..1.0, 3),
        ) {
            // 3 inputs -> 5 -> 4 -> 1.
            let m = Mlp { layers: vec![layer(3, 5, &w[..20]), layer(5, 4, &w[20..44]), layer(4, 1, &w[44..49])], background: bg };
            prop_assert!(m.validate(3).is_ok());
            let mut phi = vec![0.0; 3];
            m.contributions(&x, &mut phi);
            let completeness = (phi.iter().sum::<f64>() - (m.margin(&x) - m.expected_margin())).abs();
            prop_assert!(completeness < 1e-9, "completeness error {}", completeness);
            let approx = riemann_ig(&m, &x, 20_000);
            for j in 0..3 {
                prop_assert!((phi[j] - approx[j]).abs() < 2e-3, "column {} exact {} riemann {}", j, phi[j], approx[j]);
            }
        }
    }
}
