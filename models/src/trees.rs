//! Carecast's tree-ensemble model data: what every tree model (our own GBM, and models imported
//! from XGBoost and LightGBM) is stored as in a package. Plain data: the forms it is scored and
//! explained with are compiled from it when a package is loaded ([`crate::tree_predictor`]).

use crate::invalid::InvalidModel;
use serde::{Deserialize, Serialize};

/// Marks a leaf in [`Node::feature`].
pub const LEAF: u32 = u32::MAX;

/// One node, split or leaf. A row goes left when `x[feature] < threshold`, and to the learned
/// default side when the value is missing (NaN).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub threshold: f64,
    pub left: u32,
    pub right: u32,
    pub default_left: bool,
    /// Leaf output on the margin scale (0 for split nodes).
    pub value: f64,
    /// Training rows that reached this node: the weights of path-dependent TreeSHAP.
    pub cover: f64,
}

/// The split rule every walk shares: left when `x < threshold`, or when `x` is missing (NaN) and
/// missing values go left. Bitwise, not short-circuit: the comparison is a coin toss, so a branch
/// would mispredict.
#[inline(always)]
pub(crate) fn goes_left(x: f64, threshold: f64, missing_left: bool) -> bool {
    (x < threshold) | (x.is_nan() & missing_left)
}

/// A split's column with its missing-value direction in one word (the top bit: missing goes
/// left), as the compiled forms store it so that a split stays small.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Column(u32);

impl Column {
    const MISSING_LEFT: u32 = 1 << 31;

    /// `node`'s column and direction.
    pub(crate) fn of(node: &Node) -> Column {
        Column(node.feature | if node.default_left { Self::MISSING_LEFT } else { 0 })
    }

    #[inline(always)]
    pub(crate) fn index(self) -> usize {
        (self.0 & !Self::MISSING_LEFT) as usize
    }

    /// Whether `row` goes left at a split on this column at `threshold` ([`goes_left`]).
    #[inline(always)]
    pub(crate) fn goes_left(self, row: &[f64], threshold: f64) -> bool {
        goes_left(row[self.index()], threshold, self.0 & Self::MISSING_LEFT != 0)
    }
}

impl Node {
    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }

    /// Whether a row with value `x` for this node's feature goes left.
    #[inline]
    pub fn goes_left(&self, x: f64) -> bool {
        goes_left(x, self.threshold, self.default_left)
    }

    /// The child a row with value `x` for this node's feature goes to.
    #[inline]
    pub fn next(&self, x: f64) -> u32 {
        if self.goes_left(x) { self.left } else { self.right }
    }
}

/// A tree as a flat node array; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.is_leaf() {
                return n.value;
            }
            i = n.next(x[n.feature as usize]) as usize;
        }
    }

    /// Cover-weighted mean leaf value: the tree's output for the average training row.
    pub fn expected_value(&self) -> f64 {
        let root = self.nodes[0].cover;
        self.nodes.iter().filter(|n| n.is_leaf()).map(|n| n.value * n.cover / root).sum()
    }

    /// Longest root-to-leaf path, in splits.
    pub fn max_depth(&self) -> usize {
        fn depth(t: &Tree, i: usize) -> usize {
            let n = &t.nodes[i];
            if n.is_leaf() { 0 } else { 1 + depth(t, n.left as usize).max(depth(t, n.right as usize)) }
        }
        depth(self, 0)
    }

    /// Checks the structure a package must satisfy before it is served: children in range and
    /// after their parent (so there are no cycles), split features within `n_columns`.
    pub fn validate(&self, n_columns: usize) -> Result<(), InvalidModel> {
        if self.nodes.is_empty() {
            return Err(InvalidModel::new("nodes", "a tree needs at least one"));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_leaf() {
                continue;
            }
            if n.feature as usize >= n_columns {
                return Err(InvalidModel::new(
                    format!("node {i}"),
                    format!("splits on column {} of {n_columns}", n.feature),
                ));
            }
            if n.threshold.is_nan() {
                return Err(InvalidModel::new(format!("node {i}"), "has no threshold (NaN)"));
            }
            for c in [n.left, n.right] {
                if c as usize <= i || c as usize >= self.nodes.len() {
                    return Err(InvalidModel::new(format!("node {i}"), format!("has child {c} out of order")));
                }
            }
        }
        Ok(())
    }
}

/// A sum of trees on the log-odds scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    pub base_score: f64,
    pub trees: Vec<Tree>,
}

impl TreeEnsemble {
    pub fn new(base_score: f64, trees: Vec<Tree>) -> Self {
        Self { base_score, trees }
    }

    /// One row's margin by walking each tree's nodes: the model's definition, which the compiled
    /// predictor must equal (see [`crate::tree_predictor::TreePredictor::margins`]).
    pub fn margin(&self, x: &[f64]) -> f64 {
        self.trees.iter().fold(self.base_score, |margin, t| margin + t.predict(x))
    }

    pub fn expected_margin(&self) -> f64 {
        self.base_score + self.trees.iter().map(Tree::expected_value).sum::<f64>()
    }

    /// The deepest tree's depth.
    pub fn max_depth(&self) -> usize {
        self.trees.iter().map(Tree::max_depth).max().unwrap_or(0)
    }
}
