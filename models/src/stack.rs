//! A stacked ensemble: a non-negative linear combination of member models' margins (their
//! log-odds; a plain hazard model's linear predictor), itself on the log-odds scale. Each member reads its own block of the encoded row (the standardised columns
//! for the linear models and networks, the native ones for the trees; see
//! [`crate::preprocess::Encoding::Stacked`]).
//!
//! Because the stack is linear in its members' margins, its explanation is the weighted sum of
//! theirs: with each member's `margin_k = base_k + sum_j phi_kj`, the stack's
//! `intercept + sum_k w_k margin_k = (intercept + sum_k w_k base_k) + sum_j sum_k w_k phi_kj`.
//! Exact members give an exact stack; a network member's integrated-gradient error is carried
//! over, scaled by its weight, and reported with every score as for the network alone.

use crate::estimator::{Compiled, Estimator};
use crate::invalid::InvalidModel;
use crate::preprocess::{Encoding, Preprocessor};
use crate::tree_shap::TreeShapBuffer;
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    pub intercept: f64,
    pub members: Vec<StackMember>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackMember {
    /// What the member is, as the model card names it ("gbm").
    pub name: String,
    /// Non-negative: a member never counts against the others' evidence.
    pub weight: f64,
    /// Which encoding the member was fitted on, and where its block lies in the encoded row.
    pub encoding: Encoding,
    pub columns: Range<usize>,
    pub estimator: Estimator,
}

impl Stack {
    pub fn margin(&self, x: &[f64]) -> f64 {
        self.intercept + self.members.iter().map(|m| m.weight * m.estimator.margin(&x[m.columns.clone()])).sum::<f64>()
    }

    pub fn expected_margin(&self) -> f64 {
        self.intercept + self.members.iter().map(|m| m.weight * m.estimator.expected_margin()).sum::<f64>()
    }

    /// Each member's compiled form, in member order.
    pub(crate) fn compile(&self) -> Vec<Compiled> {
        self.members.iter().map(|m| m.estimator.compile()).collect()
    }

    /// Margins of many rows (row-major, `width` columns each): each member scores its own block
    /// of every row together, so a tree member keeps its block path.
    pub(crate) fn margins(&self, compiled: &[Compiled], x: &[f64], width: usize, out: &mut [f64]) {
        out.fill(self.intercept);
        let mut member_out = vec![0.0; out.len()];
        for (m, c) in self.members.iter().zip(compiled) {
            let block = gather(x, width, &m.columns);
            m.estimator.margins(c, &block, m.columns.len(), &mut member_out);
            out.iter_mut().zip(&member_out).for_each(|(o, v)| *o += m.weight * v);
        }
    }

    /// Column contributions of many rows: each member's contributions to its own block, times
    /// its weight, added up (members of one encoding share a block).
    pub(crate) fn contributions(
        &self,
        compiled: &[Compiled],
        x: &[f64],
        width: usize,
        phi: &mut [f64],
        buf: &mut TreeShapBuffer,
    ) {
        phi.fill(0.0);
        for (m, c) in self.members.iter().zip(compiled) {
            let block = gather(x, width, &m.columns);
            let mut member_phi = vec![0.0; block.len()];
            m.estimator.contributions(c, &block, m.columns.len(), &mut member_phi, buf);
            for (row, member_row) in phi.chunks_mut(width).zip(member_phi.chunks(m.columns.len())) {
                row[m.columns.clone()].iter_mut().zip(member_row).for_each(|(p, v)| *p += m.weight * v);
            }
        }
    }

    /// Structural checks: members read blocks inside the row, are not stacks themselves, and
    /// have finite, non-negative weights.
    pub fn validate(&self, n_columns: usize) -> Result<(), InvalidModel> {
        if self.members.is_empty() {
            return Err(InvalidModel::new("stack", "has no members"));
        }
        if !self.intercept.is_finite() {
            return Err(InvalidModel::new("stack", "has a non-finite intercept"));
        }
        for m in &self.members {
            let what = format!("stack member `{}`", m.name);
            if !(m.weight.is_finite() && m.weight >= 0.0) {
                return Err(InvalidModel::new(what, "needs a finite, non-negative weight"));
            }
            if m.columns.start >= m.columns.end || m.columns.end > n_columns {
                return Err(InvalidModel::new(what, format!("reads columns outside the row of {n_columns}")));
            }
            if matches!(m.estimator, Estimator::Stack(_)) {
                return Err(InvalidModel::new(what, "is itself a stack"));
            }
            m.estimator.validate(m.columns.len()).map_err(|e| e.within(&what))?;
        }
        Ok(())
    }
}

impl Stack {
    /// Each member reads the block of its own encoding in `pre`'s rows, and only trees read the
    /// native block (which holds missing values as NaN, which only trees route).
    pub fn check_layout(&self, pre: &Preprocessor) -> Result<(), InvalidModel> {
        for m in &self.members {
            let trees = matches!(m.estimator, Estimator::GradientBoostedTrees(_));
            if trees != (m.encoding == Encoding::Native) {
                return Err(InvalidModel::new(
                    format_args!("stack member `{}`", m.name),
                    "trees read the native block and every other model the standardised one",
                ));
            }
            if pre.block(m.encoding) != Some(m.columns.clone()) {
                return Err(InvalidModel::new(
                    format_args!("stack member `{}`", m.name),
                    format!("reads columns {:?}, not its encoding's block of the preprocessed row", m.columns),
                ));
            }
        }
        Ok(())
    }
}

/// The `columns` block of every row of `x` (row-major, `width` columns each), rows kept in order.
fn gather(x: &[f64], width: usize, columns: &Range<usize>) -> Vec<f64> {
    x.chunks(width).flat_map(|row| row[columns.clone()].iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::LinearModel;
    use crate::preprocess::{FeatureStats, FittedFeature};

    #[test]
    fn a_member_reading_another_block_or_a_nested_stack_is_refused() {
        let feature = FittedFeature {
            spec: serde_json::from_value(serde_json::json!({"name": "a", "type": "numeric"})).unwrap(),
            stats: FeatureStats::Numeric { median: 0.0, mean: 0.0, sd: 1.0, min: -1.0, max: 1.0, had_missing: true },
        };
        // Standardised: the value and its missing indicator (columns 0..2); native: column 2.
        let pre = Preprocessor { encoding: Encoding::Stacked, features: vec![feature] };
        assert_eq!((pre.block(Encoding::Standardised), pre.block(Encoding::Native)), (Some(0..2), Some(2..3)));
        let linear = |n: usize| {
            Estimator::LogisticRegression(LinearModel {
                intercept: 0.0,
                weights: vec![1.0; n],
                background: vec![0.0; n],
            })
        };
        let member = |encoding, columns: Range<usize>| StackMember {
            name: "logistic".into(),
            weight: 1.0,
            encoding,
            estimator: linear(columns.len()),
            columns,
        };
        let stack = |members| Stack { intercept: 0.0, members };
        assert!(stack(vec![member(Encoding::Standardised, 0..2)]).check_layout(&pre).is_ok());
        let wrong = stack(vec![member(Encoding::Standardised, 1..3)]);
        assert!(wrong.validate(3).is_ok(), "well formed on its own");
        assert!(wrong.check_layout(&pre).unwrap_err().to_string().contains("not its encoding's block"));
        let outside = stack(vec![member(Encoding::Native, 2..4)]);
        assert!(outside.validate(3).unwrap_err().to_string().contains("outside the row"));
        let native = stack(vec![member(Encoding::Native, 2..3)]);
        assert!(native.check_layout(&pre).unwrap_err().to_string().contains("trees read the native block"));
        let negative = stack(vec![StackMember { weight: -0.5, ..member(Encoding::Standardised, 0..2) }]);
        assert!(negative.validate(3).unwrap_err().to_string().contains("non-negative"));
        let nested = StackMember {
            estimator: Estimator::Stack(stack(vec![member(Encoding::Standardised, 0..2)])),
            ..member(Encoding::Standardised, 0..2)
        };
        assert!(stack(vec![nested]).validate(3).unwrap_err().to_string().contains("itself a stack"));
    }
}
