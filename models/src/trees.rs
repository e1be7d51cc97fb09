//! Carecast's compact tree-ensemble representation: what every tree model (our own GBM, and
//! models imported from XGBoost and LightGBM) is scored and explained with at serving time.

use crate::tree_shap::ShapTable;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

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

impl Node {
    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }

    /// The child a row with value `x` for this node's feature goes to.
    #[inline]
    pub fn next(&self, x: f64) -> u32 {
        let left = if x.is_nan() { self.default_left } else { x < self.threshold };
        if left { self.left } else { self.right }
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
    pub fn validate(&self, n_columns: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("empty tree".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_leaf() {
                continue;
            }
            if n.feature as usize >= n_columns {
                return Err(format!("node {i} splits on column {} of {n_columns}", n.feature));
            }
            for c in [n.left, n.right] {
                if c as usize <= i || c as usize >= self.nodes.len() {
                    return Err(format!("node {i} has child {c} out of order"));
                }
            }
        }
        Ok(())
    }
}

/// A sum of trees on the log-odds scale.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeEnsemble {
    pub base_score: f64,
    pub trees: Vec<Tree>,
    /// Deepest tree, computed once: it sizes TreeSHAP's path buffer for every row.
    #[serde(skip)]
    max_depth: OnceLock<usize>,
    /// Per tree, TreeSHAP's precomputed tables (built on the first explanation).
    #[serde(skip)]
    shap_tables: OnceLock<Vec<Option<ShapTable>>>,
}

/// Equal when the models are: the cached depth and TreeSHAP tables are not part of the model.
impl PartialEq for TreeEnsemble {
    fn eq(&self, other: &Self) -> bool {
        self.base_score == other.base_score && self.trees == other.trees
    }
}

impl TreeEnsemble {
    pub fn new(base_score: f64, trees: Vec<Tree>) -> Self {
        Self { base_score, trees, max_depth: OnceLock::new(), shap_tables: OnceLock::new() }
    }

    pub fn margin(&self, x: &[f64]) -> f64 {
        self.base_score + self.trees.iter().map(|t| t.predict(x)).sum::<f64>()
    }

    /// Margins of many rows (row-major, `width` columns each) into `out`. Rows go through the
    /// trees in blocks, one tree at a time: the tree stays in cache, and the block's walks are
    /// independent of each other, so the processor overlaps them (XGBoost's block prediction).
    pub fn margins(&self, x: &[f64], width: usize, out: &mut [f64]) {
        const BLOCK: usize = 64;
        out.fill(self.base_score);
        for (rows, out) in x.chunks(BLOCK * width).zip(out.chunks_mut(BLOCK)) {
            for tree in &self.trees {
                for (row, m) in rows.chunks(width).zip(out.iter_mut()) {
                    *m += tree.predict(row);
                }
            }
        }
    }

    pub fn expected_margin(&self) -> f64 {
        self.base_score + self.trees.iter().map(Tree::expected_value).sum::<f64>()
    }

    pub fn max_depth(&self) -> usize {
        *self.max_depth.get_or_init(|| self.trees.iter().map(Tree::max_depth).max().unwrap_or(0))
    }

    pub(crate) fn shap_tables(&self) -> &[Option<ShapTable>] {
        self.shap_tables.get_or_init(|| self.trees.iter().map(ShapTable::new).collect())
    }
}
