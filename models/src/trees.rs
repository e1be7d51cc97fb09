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

/// The split rule every walk shares: left when `x < threshold`, or when `x` is missing (NaN) and
/// missing values go left. Bitwise, not short-circuit: the comparison is a coin toss, so a branch
/// would mispredict.
#[inline(always)]
pub(crate) fn goes_left(x: f64, threshold: f64, missing_left: bool) -> bool {
    (x < threshold) | (x.is_nan() & missing_left)
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
            if n.threshold.is_nan() {
                return Err(format!("node {i} has no threshold (NaN)"));
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
    /// The trees in the prediction layout (built on the first prediction).
    #[serde(skip)]
    compiled: OnceLock<Compiled>,
}

/// Equal when the models are: the cached depth and TreeSHAP tables are not part of the model.
impl PartialEq for TreeEnsemble {
    fn eq(&self, other: &Self) -> bool {
        self.base_score == other.base_score && self.trees == other.trees
    }
}

impl TreeEnsemble {
    pub fn new(base_score: f64, trees: Vec<Tree>) -> Self {
        Self { base_score, trees, max_depth: OnceLock::new(), shap_tables: OnceLock::new(), compiled: OnceLock::new() }
    }

    pub fn margin(&self, x: &[f64]) -> f64 {
        let mut out = [0.0];
        self.margins(x, x.len(), &mut out);
        out[0]
    }

    /// Margins of many rows (row-major, `width` columns each) into `out`. Rows go through the
    /// trees in blocks, one tree at a time: the tree stays in cache. Within a block, groups of
    /// rows step down the tree level by level together; their steps are independent, so the
    /// processor overlaps them. Rows short of a group (a lone patient's, say) step down groups
    /// of trees together instead. Either way each row adds its trees' values in tree order.
    pub fn margins(&self, x: &[f64], width: usize, out: &mut [f64]) {
        const BLOCK: usize = 64;
        let compiled = self.compiled.get_or_init(|| Compiled::new(&self.trees));
        out.fill(self.base_score);
        if width == 0 {
            // No columns: every tree is a single leaf (validated), the same for every row.
            out.iter_mut().for_each(|m| *m += compiled.values.iter().sum::<f64>());
            return;
        }
        for (rows, out) in x.chunks(BLOCK * width).zip(out.chunks_mut(BLOCK)) {
            let grouped = out.len() / GROUP * GROUP;
            let ((rows, rest), (out, rest_out)) = (rows.split_at(grouped * width), out.split_at_mut(grouped));
            for &(root, depth) in &compiled.trees {
                for (rows, out) in rows.chunks_exact(GROUP * width).zip(out.chunks_exact_mut(GROUP)) {
                    compiled.walk(root, depth, rows, width, out);
                }
            }
            for (row, out) in rest.chunks_exact(width).zip(rest_out) {
                compiled.walk_trees(row, out);
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

/// The ensemble laid out for prediction: 16-byte nodes, each node's children side by side
/// (right = left + 1), breadth-first per tree; the benchmark's 300 depth-6 trees take 600 KB and
/// stay in L2. A leaf loops to itself, so every row takes exactly the tree's depth in steps:
/// no branch on whether a walk has ended.
#[derive(Debug, Clone)]
struct Compiled {
    splits: Vec<Split>,
    /// Leaf values by node (0 at splits).
    values: Vec<f64>,
    /// Per tree: the root and the depth.
    trees: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, Copy)]
struct Split {
    threshold: f64,
    /// The column; the top bit says missing values go left.
    feature: u32,
    left: u32,
}

const DEFAULT_LEFT: u32 = 1 << 31;

impl Split {
    /// Left when `x < threshold`, or when missing and missing goes left. A leaf has a NaN
    /// threshold, so it always "goes right", to itself (`left` is its own index minus one).
    #[inline(always)]
    fn next(&self, row: &[f64]) -> u32 {
        let left = goes_left(row[(self.feature & !DEFAULT_LEFT) as usize], self.threshold, self.feature & DEFAULT_LEFT != 0);
        self.left.wrapping_add(u32::from(!left))
    }
}

/// Rows stepped down a tree together: enough independent walks to hide a load's latency, few
/// enough to stay in registers.
const GROUP: usize = 8;

impl Compiled {
    /// Adds one tree's leaf values for [`GROUP`] rows into `out`.
    #[inline(always)]
    fn walk(&self, root: u32, depth: u32, rows: &[f64], width: usize, out: &mut [f64]) {
        let mut at = [root; GROUP];
        let rows: [&[f64]; GROUP] = std::array::from_fn(|r| &rows[r * width..(r + 1) * width]);
        for _ in 0..depth {
            for r in 0..GROUP {
                at[r] = self.splits[at[r] as usize].next(rows[r]);
            }
        }
        for (m, &i) in out.iter_mut().zip(&at) {
            *m += self.values[i as usize];
        }
    }

    /// Adds every tree's leaf value for one row into `out`, [`GROUP`] trees stepping down
    /// together for the deepest one's depth (a leaf loops to itself, so the others wait there).
    fn walk_trees(&self, row: &[f64], out: &mut f64) {
        for trees in self.trees.chunks(GROUP) {
            let mut at = [0u32; GROUP];
            for (at, &(root, _)) in at.iter_mut().zip(trees) {
                *at = root;
            }
            let at = &mut at[..trees.len()];
            for _ in 0..trees.iter().map(|&(_, depth)| depth).max().unwrap_or(0) {
                for i in at.iter_mut() {
                    *i = self.splits[*i as usize].next(row);
                }
            }
            for &i in at.iter() {
                *out += self.values[i as usize];
            }
        }
    }

    fn new(trees: &[Tree]) -> Self {
        let mut c = Compiled { splits: Vec::new(), values: Vec::new(), trees: Vec::with_capacity(trees.len()) };
        for tree in trees {
            let root = c.splits.len() as u32;
            c.trees.push((root, tree.max_depth() as u32));
            // Breadth-first: each split's children get the next two free places.
            let mut queue = std::collections::VecDeque::from([(0usize, root)]);
            c.splits.push(Split { threshold: 0.0, feature: 0, left: 0 });
            c.values.push(0.0);
            while let Some((i, at)) = queue.pop_front() {
                let n = &tree.nodes[i];
                c.splits[at as usize] = if n.is_leaf() {
                    c.values[at as usize] = n.value;
                    Split { threshold: f64::NAN, feature: 0, left: at.wrapping_sub(1) }
                } else {
                    let left = c.splits.len() as u32;
                    c.splits.extend([Split { threshold: 0.0, feature: 0, left: 0 }; 2]);
                    c.values.extend([0.0; 2]);
                    queue.extend([(n.left as usize, left), (n.right as usize, left + 1)]);
                    Split { threshold: n.threshold, feature: n.feature | if n.default_left { DEFAULT_LEFT } else { 0 }, left }
                };
            }
        }
        c
    }
}
