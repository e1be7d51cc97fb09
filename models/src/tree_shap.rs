//! Exact path-dependent TreeSHAP (Lundberg, Erion & Lee 2018, Algorithm 2): the Shapley values of
//! a tree's conditional expectation `E[f(x) | x_S]`, where features outside `S` follow the
//! training cover down both branches. Polynomial time, exact; checked against brute-force Shapley
//! values in the tests.

use crate::trees::{LEAF, Tree, TreeEnsemble};

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: u32,
    zero_fraction: f64,
    one_fraction: f64,
    pweight: f64,
}

/// Scratch space for explaining rows of one ensemble; reuse it across rows.
#[derive(Debug, Default, Clone)]
pub struct TreeShapBuffer {
    path: Vec<PathElement>,
}

impl TreeShapBuffer {
    fn reserve_for_depth(&mut self, depth: usize) {
        let d = depth + 2;
        let needed = d * (d + 1) / 2 + d;
        if self.path.len() < needed {
            self.path.resize(needed, PathElement::default());
        }
    }
}

impl TreeEnsemble {
    /// Adds each column's exact TreeSHAP value for row `x` into `phi` (one slot per column).
    /// The values sum to `margin(x) - expected_margin()`.
    pub fn contributions(&self, x: &[f64], phi: &mut [f64], buf: &mut TreeShapBuffer) {
        buf.reserve_for_depth(self.max_depth());
        for tree in &self.trees {
            tree_shap(tree, x, phi, &mut buf.path);
        }
    }
}

fn tree_shap(tree: &Tree, x: &[f64], phi: &mut [f64], path: &mut [PathElement]) {
    recurse(tree, x, phi, path, 0, 0, 0, 1.0, 1.0, LEAF);
}

#[allow(clippy::too_many_arguments)]
fn recurse(
    tree: &Tree,
    x: &[f64],
    phi: &mut [f64],
    buf: &mut [PathElement],
    node: usize,
    parent_offset: usize,
    mut depth: usize,
    parent_zero: f64,
    parent_one: f64,
    parent_feature: u32,
) {
    // This call's copy of the unique path starts right after the parent's.
    let offset = parent_offset + depth + 1;
    buf.copy_within(parent_offset..parent_offset + depth + 1, offset);
    let path = &mut buf[offset..];
    extend_path(path, depth, parent_zero, parent_one, parent_feature);

    let n = &tree.nodes[node];
    if n.is_leaf() {
        for i in 1..=depth {
            let w = unwound_path_sum(path, depth, i);
            let el = path[i];
            phi[el.feature as usize] += w * (el.one_fraction - el.zero_fraction) * n.value;
        }
        return;
    }

    let hot = n.next(x[n.feature as usize]) as usize;
    let cold = if hot == n.left as usize { n.right as usize } else { n.left as usize };
    let hot_zero = tree.nodes[hot].cover / n.cover;
    let cold_zero = tree.nodes[cold].cover / n.cover;
    let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);

    // A feature split on again further down: undo its earlier entry and carry its fractions.
    if let Some(k) = (0..=depth).find(|&k| path[k].feature == n.feature) {
        incoming_zero = path[k].zero_fraction;
        incoming_one = path[k].one_fraction;
        unwind_path(path, depth, k);
        depth -= 1;
    }
    recurse(tree, x, phi, buf, hot, offset, depth + 1, hot_zero * incoming_zero, incoming_one, n.feature);
    recurse(tree, x, phi, buf, cold, offset, depth + 1, cold_zero * incoming_zero, 0.0, n.feature);
}

fn extend_path(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: u32) {
    path[depth] = PathElement {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        pweight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].pweight += one * path[i].pweight * (i + 1) as f64 / d1;
        path[i].pweight = zero * path[i].pweight * (depth - i) as f64 / d1;
    }
}

fn unwind_path(path: &mut [PathElement], depth: usize, index: usize) {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let d1 = (depth + 1) as f64;
    let mut next_one_portion = path[depth].pweight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = next_one_portion * d1 / ((i + 1) as f64 * one);
            next_one_portion = tmp - path[i].pweight * zero * (depth - i) as f64 / d1;
        } else {
            path[i].pweight = path[i].pweight * d1 / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

fn unwound_path_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let d1 = (depth + 1) as f64;
    let mut next_one_portion = path[depth].pweight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next_one_portion * d1 / ((i + 1) as f64 * one);
            total += tmp;
            next_one_portion = path[i].pweight - tmp * zero * (depth - i) as f64 / d1;
        } else if zero != 0.0 {
            total += path[i].pweight / zero / ((depth - i) as f64 / d1);
        }
    }
    total
}
