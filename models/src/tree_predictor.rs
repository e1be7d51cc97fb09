//! A tree ensemble compiled for scoring and explaining, built once when a package is loaded and
//! kept apart from the model's data (as XGBoost's `src/predictor` consumes its `GBTreeModel`):
//! the prediction layout below, and each tree's TreeSHAP form ([`crate::tree_shap`]).

use crate::tree_shap::{TreeShap, TreeShapBuffer};
use crate::trees::{Column, Tree, TreeEnsemble};

/// An ensemble's compiled forms. Explaining consumes the ensemble it was built from.
#[derive(Debug, Clone)]
pub struct TreePredictor {
    base_score: f64,
    layout: Layout,
    shap: TreeShap,
}

impl TreePredictor {
    pub fn new(model: &TreeEnsemble) -> Self {
        Self { base_score: model.base_score, layout: Layout::new(&model.trees), shap: TreeShap::new(model) }
    }

    /// Margins of many rows (row-major, `width` columns each) into `out`. Rows go through the
    /// trees in blocks, one tree at a time: the tree stays in cache. Within a block, groups of
    /// rows step down the tree level by level together; their steps are independent, so the
    /// processor overlaps them. Rows short of a group (a lone patient's, say) step down groups
    /// of trees together instead. Either way each row adds its trees' values in tree order.
    pub fn margins(&self, x: &[f64], width: usize, out: &mut [f64]) {
        const BLOCK: usize = 64;
        let layout = &self.layout;
        out.fill(self.base_score);
        if width == 0 {
            // No columns: every tree is a single leaf (validated), the same for every row.
            out.iter_mut().for_each(|m| *m += layout.values.iter().sum::<f64>());
            return;
        }
        for (rows, out) in x.chunks(BLOCK * width).zip(out.chunks_mut(BLOCK)) {
            let grouped = out.len() / GROUP * GROUP;
            let ((rows, rest), (out, rest_out)) = (rows.split_at(grouped * width), out.split_at_mut(grouped));
            for &(root, depth) in &layout.trees {
                for (rows, out) in rows.chunks_exact(GROUP * width).zip(out.chunks_exact_mut(GROUP)) {
                    layout.walk(root, depth, rows, width, out);
                }
            }
            for (row, out) in rest.chunks_exact(width).zip(rest_out) {
                layout.walk_trees(row, out);
            }
        }
    }

    /// Exact TreeSHAP values of `model` (the ensemble this was built from) for many rows
    /// (row-major, `width` columns each), added into `phi` (the same shape); each row's sum to
    /// `margin(x) - expected_margin()`.
    pub fn contributions(
        &self,
        model: &TreeEnsemble,
        x: &[f64],
        width: usize,
        phi: &mut [f64],
        buf: &mut TreeShapBuffer,
    ) {
        self.shap.contributions(model, x, width, phi, buf);
    }
}

/// The ensemble laid out for prediction: 16-byte nodes, each node's children side by side
/// (right = left + 1), breadth-first per tree; the benchmark's 300 depth-6 trees take 600 KB and
/// stay in L2. A leaf loops to itself, so every row takes exactly the tree's depth in steps:
/// no branch on whether a walk has ended.
#[derive(Debug, Clone)]
struct Layout {
    splits: Vec<Split>,
    /// Leaf values by node (0 at splits).
    values: Vec<f64>,
    /// Per tree: the root and the depth.
    trees: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, Copy)]
struct Split {
    threshold: f64,
    column: Column,
    left: u32,
}

impl Split {
    /// Left when `x < threshold`, or when missing and missing goes left. A leaf has a NaN
    /// threshold, so it always "goes right", to itself (`left` is its own index minus one).
    #[inline(always)]
    fn next(&self, row: &[f64]) -> u32 {
        self.left.wrapping_add(u32::from(!self.column.goes_left(row, self.threshold)))
    }
}

/// Rows stepped down a tree together: enough independent walks to hide a load's latency, few
/// enough to stay in registers.
const GROUP: usize = 8;

impl Layout {
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
        let mut c = Layout { splits: Vec::new(), values: Vec::new(), trees: Vec::with_capacity(trees.len()) };
        for tree in trees {
            let root = c.splits.len() as u32;
            c.trees.push((root, tree.max_depth() as u32));
            // Breadth-first: each split's children get the next two free places.
            let mut queue = std::collections::VecDeque::from([(0usize, root)]);
            c.splits.push(Split { threshold: 0.0, column: Column::default(), left: 0 });
            c.values.push(0.0);
            while let Some((i, at)) = queue.pop_front() {
                let n = &tree.nodes[i];
                c.splits[at as usize] = if n.is_leaf() {
                    c.values[at as usize] = n.value;
                    Split { threshold: f64::NAN, column: Column::default(), left: at.wrapping_sub(1) }
                } else {
                    let left = c.splits.len() as u32;
                    c.splits.extend([Split { threshold: 0.0, column: Column::default(), left: 0 }; 2]);
                    c.values.extend([0.0; 2]);
                    queue.extend([(n.left as usize, left), (n.right as usize, left + 1)]);
                    Split { threshold: n.threshold, column: Column::of(n), left }
                };
            }
        }
        c
    }
}
