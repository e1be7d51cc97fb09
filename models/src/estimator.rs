//! The fitted estimators a package can hold, behind one interface: margin, expected margin and
//! exact per-column contributions.

use crate::competing::CompetingHazards;
use crate::gru::Gru;
use crate::invalid::InvalidModel;
use crate::linear::LinearModel;
use crate::mlp::Mlp;
use crate::stack::Stack;
use crate::tree_predictor::TreePredictor;
use crate::tree_shap::TreeShapBuffer;
use crate::trees::TreeEnsemble;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum Estimator {
    LogisticRegression(LinearModel),
    GradientBoostedTrees(TreeEnsemble),
    /// Contributions are exact integrated gradients from the training mean (see [`crate::mlp`]).
    Mlp(Mlp),
    /// A GRU over the event sequence; contributions are integrated gradients from the training
    /// mean, complete to within [`crate::gru::COMPLETENESS`] (see [`crate::gru`]).
    Gru(Box<Gru>),
    /// Cause-specific hazards of the outcome and a competing event; the margin is the log-odds
    /// of the outcome's cumulative incidence, explained by integrated gradients (see
    /// [`crate::competing`]).
    CompetingRisks(Box<CompetingHazards>),
    /// A non-negative linear stack of other estimators' margins; contributions are the weighted
    /// sums of theirs (see [`crate::stack`]).
    Stack(Stack),
}

impl Estimator {
    pub fn algorithm(&self) -> &'static str {
        match self {
            Estimator::LogisticRegression(_) => "logistic_regression",
            Estimator::GradientBoostedTrees(_) => "gradient_boosted_trees",
            Estimator::Mlp(_) => "mlp",
            Estimator::Gru(_) => "gru",
            Estimator::CompetingRisks(_) => "competing_risks_hazard",
            Estimator::Stack(_) => "stack",
        }
    }

    /// Log-odds of the outcome.
    pub fn margin(&self, x: &[f64]) -> f64 {
        match self {
            Estimator::LogisticRegression(m) => m.margin(x),
            Estimator::GradientBoostedTrees(m) => m.margin(x),
            Estimator::Mlp(m) => m.margin(x),
            Estimator::Gru(m) => m.margin(x),
            Estimator::CompetingRisks(m) => m.margin(x),
            Estimator::Stack(m) => m.margin(x),
        }
    }

    /// The base value of explanations: the expected margin over the training population.
    pub fn expected_margin(&self) -> f64 {
        match self {
            Estimator::LogisticRegression(m) => m.expected_margin(),
            Estimator::GradientBoostedTrees(m) => m.expected_margin(),
            Estimator::Mlp(m) => m.expected_margin(),
            Estimator::Gru(m) => m.expected_margin(),
            Estimator::CompetingRisks(m) => m.expected_margin(),
            Estimator::Stack(m) => m.expected_margin(),
        }
    }

    /// What this estimator is scored with once its package is loaded: a tree ensemble's
    /// prediction layout and TreeSHAP tables (a stack's, for its tree members); the others score
    /// from their data.
    pub(crate) fn compile(&self) -> Compiled {
        match self {
            Estimator::GradientBoostedTrees(m) => Compiled::Trees(TreePredictor::new(m)),
            Estimator::Stack(m) => Compiled::Stack(m.compile()),
            _ => Compiled::Direct,
        }
    }

    /// Log-odds of many rows (row-major, `width` columns each) into `out`: the tree ensemble's
    /// block path, row by row for the others.
    pub(crate) fn margins(&self, compiled: &Compiled, x: &[f64], width: usize, out: &mut [f64]) {
        match (self, compiled) {
            (_, Compiled::Trees(p)) => p.margins(x, width, out),
            (Estimator::Stack(m), Compiled::Stack(members)) => m.margins(members, x, width, out),
            _ => x.chunks(width).zip(out.iter_mut()).for_each(|(row, m)| *m = self.margin(row)),
        }
    }

    /// Each column's contribution for many rows (row-major, `width` columns each), written into
    /// `phi` (the same shape, overwritten): exact Shapley values for linear and tree models,
    /// integrated gradients for the networks.
    pub(crate) fn contributions(
        &self,
        compiled: &Compiled,
        x: &[f64],
        width: usize,
        phi: &mut [f64],
        buf: &mut TreeShapBuffer,
    ) {
        let per_row = |phi: &mut [f64], explain: &dyn Fn(&[f64], &mut [f64])| {
            x.chunks(width).zip(phi.chunks_mut(width)).for_each(|(row, phi)| explain(row, phi));
        };
        match (self, compiled) {
            (Estimator::LogisticRegression(m), _) => per_row(phi, &|row, phi| m.contributions(row, phi)),
            (Estimator::GradientBoostedTrees(m), Compiled::Trees(p)) => {
                phi.fill(0.0);
                p.contributions(m, x, width, phi, buf);
            }
            (Estimator::Mlp(m), _) => per_row(phi, &|row, phi| m.contributions(row, phi)),
            (Estimator::Gru(m), _) => per_row(phi, &|row, phi| m.contributions(row, phi)),
            (Estimator::CompetingRisks(m), _) => per_row(phi, &|row, phi| m.contributions(row, phi)),
            (Estimator::Stack(m), Compiled::Stack(members)) => m.contributions(members, x, width, phi, buf),
            (Estimator::GradientBoostedTrees(_) | Estimator::Stack(_), _) => {
                unreachable!("compiled by Estimator::compile")
            }
        }
    }

    /// Structural checks against the number of encoded columns.
    pub fn validate(&self, n_columns: usize) -> Result<(), InvalidModel> {
        match self {
            Estimator::LogisticRegression(m) => {
                if m.weights.len() != n_columns || m.background.len() != n_columns {
                    return Err(InvalidModel::new(
                        "logistic model",
                        format!("has {} weights for {n_columns} columns", m.weights.len()),
                    ));
                }
                if !m.intercept.is_finite() || m.weights.iter().any(|w| !w.is_finite()) {
                    return Err(InvalidModel::new("logistic model", "has non-finite coefficients"));
                }
                Ok(())
            }
            Estimator::GradientBoostedTrees(m) => m
                .trees
                .iter()
                .enumerate()
                .try_for_each(|(i, t)| t.validate(n_columns).map_err(|e| e.within(format_args!("tree {i}")))),
            Estimator::Mlp(m) => m.validate(n_columns),
            Estimator::Gru(m) => m.validate(n_columns),
            Estimator::CompetingRisks(m) => m.validate(n_columns),
            Estimator::Stack(m) => m.validate(n_columns),
        }
    }
}

/// An estimator's compiled form, built by [`Estimator::compile`] when a package is loaded and
/// kept beside the model's data, never in it.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    Trees(TreePredictor),
    /// A stack's members, each compiled, in member order.
    Stack(Vec<Compiled>),
    /// Scored from the model's data directly.
    Direct,
}
