//! Exact path-dependent TreeSHAP: the Shapley values of a tree's conditional expectation
//! `E[f(x) | x_S]`, where features outside `S` follow the training cover down both branches.
//!
//! Two exact algorithms. The classic one (Lundberg, Erion & Lee 2018, Algorithm 2) walks each
//! tree with a polynomial path state: `O(leaves · depth²)` per tree and row. The fast one
//! precomputes what depends on the tree alone, in the spirit of Fast TreeSHAP v2 (Yang 2021). A
//! leaf with value `v` and `d` distinct path features reaches `E[f | x_S]` with weight
//! `Π_j (j∈S ? o_j : z_j)`: the cover fractions `z_j` are fixed, and `o_j ∈ {0, 1}` says whether
//! the row satisfies the leaf's conditions on `j`. Writing the Shapley weights as Beta integrals,
//! the leaf gives feature `i` (with `Z = Π z_j`, `A` the features with `o = 1`):
//! `−v Z H(A)` when `i ∉ A`, and `v (1 − z_i) Z / z_i · H(A \ {i})` when `i ∈ A`, where
//! `H(B) = ∫₀¹ Π_{j∈B} (1 + t (1/z_j − 1)) (1 − t)^{d−1−|B|} dt` depends on the pattern alone.
//! So each leaf keeps `2^d` numbers, tabulated when a package is loaded ([`crate::tree_predictor`]), and a row costs
//! one pass over the nodes (each split decides one pattern bit for the leaves below it) and `d`
//! look-ups per leaf. Trees no deeper than [`MAX_DECISIONS`] go further: the row's decisions at
//! the splits above a group of leaves fix their patterns, so each of the `2^k` combinations of a
//! group's `k ≤ MAX_DECISIONS` deciding splits gets its features' values, summed over the group's
//! leaves, in one table, and a row costs `k` comparisons and one addition per feature per group
//! (one group for our GBM's 8-leaf trees, two for a depth-4 tree, 16 for depth 6). Trees with a
//! leaf of more than [`MAX_TABLE_FEATURES`] distinct path features, or a zero cover fraction, use
//! the classic algorithm. All three are checked against brute-force Shapley values in the tests.

use crate::trees::{LEAF, Tree, TreeEnsemble, goes_left};

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
    patterns: Vec<u32>,
}

impl TreeShapBuffer {
    pub(crate) fn reserve_for_depth(&mut self, depth: usize) {
        let d = depth + 2;
        let needed = d * (d + 1) / 2 + d;
        if self.path.len() < needed {
            self.path.resize(needed, PathElement::default());
        }
    }
}

/// Exact TreeSHAP values of `model` for row `x` by the classic algorithm alone, added into
/// `phi`: the reference the tabulated ones are tested against.
pub fn contributions_classic(model: &TreeEnsemble, x: &[f64], phi: &mut [f64], buf: &mut TreeShapBuffer) {
    buf.reserve_for_depth(model.max_depth());
    for tree in &model.trees {
        tree_shap(tree, x, phi, buf);
    }
}

/// Most distinct features on a leaf's path for which it is tabulated (`2^d` numbers: 8 KB at 10).
pub const MAX_TABLE_FEATURES: usize = 10;
/// Most splits deciding a group of leaves for which every combination of a row's decisions is
/// tabulated (`2^k` combinations, each with the group's distinct features' values: at most
/// 16 KB a group).
pub const MAX_DECISIONS: usize = 8;

/// One tree's precomputed TreeSHAP (see the module docs).
#[derive(Debug, Clone)]
pub enum ShapTable {
    /// A small tree: the row's decisions at its splits (left or right at each) determine every
    /// pattern, so each feature's value is tabulated for every combination of them, and a row
    /// costs one comparison per split and one addition per feature.
    Decisions(DecisionTable),
    /// Per-leaf tables of `H` by pattern.
    Leaves(LeafTables),
}

impl ShapTable {
    /// The fastest exact tabulation of a tree: by decisions when no leaf lies more than
    /// [`MAX_DECISIONS`] splits deep, else by leaf; `None` when a leaf has more than
    /// [`MAX_TABLE_FEATURES`] distinct path features or a zero cover fraction.
    pub fn new(tree: &Tree) -> Option<ShapTable> {
        let leaves = LeafTables::new(tree)?;
        Some(match DecisionTable::new(tree, &leaves) {
            Some(decisions) => ShapTable::Decisions(decisions),
            None => ShapTable::Leaves(leaves),
        })
    }

    /// The per-leaf tabulation alone, whatever the tree's size (tests compare the two).
    pub fn by_leaf(tree: &Tree) -> Option<ShapTable> {
        LeafTables::new(tree).map(ShapTable::Leaves)
    }

    /// Adds this tree's Shapley values for the rows of `x` (row-major, `width` columns) into
    /// the rows of `phi`.
    pub fn add_contributions(&self, tree: &Tree, x: &[f64], width: usize, phi: &mut [f64], buf: &mut TreeShapBuffer) {
        match self {
            ShapTable::Decisions(table) => {
                for (row, phi) in x.chunks(width).zip(phi.chunks_mut(width)) {
                    table.add_contributions(row, phi);
                }
            }
            ShapTable::Leaves(table) => table.add_contributions(tree, x, width, phi, &mut buf.patterns),
        }
    }
}

/// A tree's Shapley values for every combination of a row's decisions, by group of leaves: a
/// subtree whose leaves' patterns are decided by at most [`MAX_DECISIONS`] splits (its own and
/// those above it) is one group, and a larger one is split into its two children's. A tree of
/// at most [`MAX_DECISIONS`] splits is one group; a depth-4 tree (15 splits) is two of 8.
#[derive(Debug, Clone)]
pub struct DecisionTable {
    groups: Vec<DecisionGroup>,
}

/// One group of leaves' Shapley values for every combination of the splits that decide them.
#[derive(Debug, Clone)]
struct DecisionGroup {
    /// The deciding splits; bit `j` of a combination says the row goes left at split `j`.
    splits: Vec<Decision>,
    /// The distinct features the group's leaves have values for, ascending.
    features: Vec<u32>,
    /// Per combination, each feature's value (`features.len()` numbers).
    values: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Decision {
    threshold: f64,
    feature: u32,
    default_left: bool,
}

impl DecisionTable {
    /// Tabulates `tree` from its leaf tables, or `None` when a leaf lies more than
    /// [`MAX_DECISIONS`] splits deep.
    fn new(tree: &Tree, leaves: &LeafTables) -> Option<DecisionTable> {
        let mut groups = Vec::new();
        let mut stack = vec![(0usize, Vec::new())];
        while let Some((node, above)) = stack.pop() {
            let within = subtree(tree, node, |n| !n.is_leaf());
            if above.len() + within.len() <= MAX_DECISIONS {
                groups.push(DecisionGroup::new(tree, leaves, node, [above, within].concat()));
            } else if tree.nodes[node].is_leaf() {
                return None;
            } else {
                let n = &tree.nodes[node];
                let mut above = above;
                above.push(node);
                stack.push((n.right as usize, above.clone()));
                stack.push((n.left as usize, above));
            }
        }
        Some(DecisionTable { groups })
    }

    fn add_contributions(&self, row: &[f64], phi: &mut [f64]) {
        for group in &self.groups {
            let mut combination = 0usize;
            for (j, s) in group.splits.iter().enumerate() {
                combination |= usize::from(goes_left(row[s.feature as usize], s.threshold, s.default_left)) << j;
            }
            let m = group.features.len();
            for (&f, &v) in group.features.iter().zip(&group.values[combination * m..combination * m + m]) {
                phi[f as usize] += v;
            }
        }
    }
}

/// The nodes of the subtree at `root` that `keep` keeps, in node order.
fn subtree(tree: &Tree, root: usize, keep: impl Fn(&crate::trees::Node) -> bool) -> Vec<usize> {
    let (mut found, mut stack) = (Vec::new(), vec![root]);
    while let Some(i) = stack.pop() {
        let n = &tree.nodes[i];
        if keep(n) {
            found.push(i);
        }
        if !n.is_leaf() {
            stack.extend([n.left as usize, n.right as usize]);
        }
    }
    found.sort_unstable();
    found
}

impl DecisionGroup {
    /// The leaves under `root`, tabulated over `splits` (every split on their paths).
    fn new(tree: &Tree, leaves: &LeafTables, root: usize, splits: Vec<usize>) -> DecisionGroup {
        let under = subtree(tree, root, |n| n.is_leaf());
        let group: Vec<&LeafEntry> =
            leaves.leaves.iter().filter(|l| under.binary_search(&(l.node as usize)).is_ok()).collect();
        let mut split_of = vec![None; tree.nodes.len()];
        for (j, &i) in splits.iter().enumerate() {
            split_of[i] = Some(j);
        }
        let mut features: Vec<u32> = group.iter().flat_map(|l| leaves.leaf_features(l).iter().copied()).collect();
        features.sort_unstable();
        features.dedup();
        let m = features.len();
        let mut values = vec![0.0; m << splits.len()];
        let mut patterns = vec![0u32; tree.nodes.len()];
        for (combination, out) in values.chunks_mut(m.max(1)).enumerate() {
            // Splits off these leaves' paths decide nothing here.
            leaves.patterns(tree, |i| split_of[i].is_some_and(|j| combination >> j & 1 == 1), &mut patterns);
            for leaf in &group {
                leaves.add_leaf(leaf, patterns[leaf.node as usize], |f, v| {
                    out[features.binary_search(&f).expect("a path feature")] += v;
                });
            }
        }
        let splits = splits
            .iter()
            .map(|&i| {
                let n = &tree.nodes[i];
                Decision { threshold: n.threshold, feature: n.feature, default_left: n.default_left }
            })
            .collect();
        DecisionGroup { splits, features, values }
    }
}

/// One tree's per-leaf tables (see the module docs).
#[derive(Debug, Clone)]
pub struct LeafTables {
    /// Per node: the pattern bit of its feature (its first appearance on the path from the root).
    bit: Vec<u8>,
    leaves: Vec<LeafEntry>,
    /// Every leaf's distinct path features, by pattern bit, one after another.
    features: Vec<u32>,
    /// Every leaf's numbers, one after another: `H` by pattern (`2^d`), then per feature the
    /// factor `v (1 − z_i) Z / z_i` (`d`), then `−v Z`.
    values: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
struct LeafEntry {
    node: u32,
    features_at: u32,
    values_at: u32,
    d: u8,
}

impl LeafTables {
    /// Tabulates a tree, or `None` when a leaf has more than [`MAX_TABLE_FEATURES`] distinct
    /// path features or a zero cover fraction.
    fn new(tree: &Tree) -> Option<LeafTables> {
        let n = tree.nodes.len();
        let mut table = LeafTables { bit: vec![0; n], leaves: Vec::new(), features: Vec::new(), values: Vec::new() };
        // Depth-first, carrying the path's distinct features and their cover fractions.
        let mut stack: Vec<(usize, Vec<(u32, f64)>)> = vec![(0, Vec::new())];
        while let Some((i, path)) = stack.pop() {
            let node = &tree.nodes[i];
            if node.is_leaf() {
                let leaf = LeafTable::new(&path, node.value)?;
                table.leaves.push(LeafEntry {
                    node: i as u32,
                    features_at: table.features.len() as u32,
                    values_at: table.values.len() as u32,
                    d: path.len() as u8,
                });
                table.features.extend(leaf.features);
                table.values.extend(leaf.values);
                continue;
            }
            let bit = path.iter().position(|&(f, _)| f == node.feature).unwrap_or(path.len());
            if bit >= MAX_TABLE_FEATURES {
                return None;
            }
            table.bit[i] = bit as u8;
            for child in [node.left, node.right] {
                let fraction = tree.nodes[child as usize].cover / node.cover;
                let mut path = path.clone();
                match path.get_mut(bit) {
                    Some(entry) => entry.1 *= fraction,
                    None => path.push((node.feature, fraction)),
                }
                stack.push((child as usize, path));
            }
        }
        Some(table)
    }

    /// Each node's pattern, given which splits the row goes left at: its parent's, with the
    /// parent's bit cleared on the branch the row does not take. Children follow their parent,
    /// so one pass in node order.
    fn patterns(&self, tree: &Tree, goes_left: impl Fn(usize) -> bool, patterns: &mut [u32]) {
        patterns[0] = u32::MAX;
        for (i, node) in tree.nodes.iter().enumerate() {
            if node.is_leaf() {
                continue;
            }
            let pattern = patterns[i];
            let cleared = pattern & !(1 << self.bit[i]);
            let left = goes_left(i);
            patterns[node.left as usize] = if left { pattern } else { cleared };
            patterns[node.right as usize] = if left { cleared } else { pattern };
        }
    }

    /// A leaf's distinct path features.
    fn leaf_features(&self, leaf: &LeafEntry) -> &[u32] {
        &self.features[leaf.features_at as usize..leaf.features_at as usize + usize::from(leaf.d)]
    }

    /// Hands `add` each of the leaf's features and its Shapley value under `pattern`.
    #[inline(always)]
    fn add_leaf(&self, leaf: &LeafEntry, pattern: u32, mut add: impl FnMut(u32, f64)) {
        let d = usize::from(leaf.d);
        let features = &self.features[leaf.features_at as usize..leaf.features_at as usize + d];
        let values = &self.values[leaf.values_at as usize..leaf.values_at as usize + (1 << d) + d + 1];
        let (h, rest) = values.split_at(1 << d);
        let (inside, outside) = rest.split_at(d);
        let pattern = (pattern & ((1u32 << d) - 1)) as usize;
        let out = outside[0] * h[pattern];
        for (k, (&f, &c)) in features.iter().zip(inside).enumerate() {
            // Both candidates are computed and one is picked by index, not by a branch on the
            // row's (unpredictable) pattern.
            let candidates = [out, c * h[pattern & !(1 << k)]];
            add(f, candidates[pattern >> k & 1]);
        }
    }

    /// Leaf by leaf, then row by row: consecutive additions go to different rows, so they do
    /// not wait on each other.
    fn add_contributions(&self, tree: &Tree, x: &[f64], width: usize, phi: &mut [f64], patterns: &mut Vec<u32>) {
        let (n, rows) = (tree.nodes.len(), x.len() / width);
        patterns.resize(n * rows, 0);
        for (row, p) in x.chunks(width).zip(patterns.chunks_mut(n)) {
            self.patterns(tree, |i| tree.nodes[i].goes_left(row[tree.nodes[i].feature as usize]), p);
        }
        for leaf in &self.leaves {
            for (p, phi) in patterns.chunks(n).zip(phi.chunks_mut(width)) {
                self.add_leaf(leaf, p[leaf.node as usize], |f, v| phi[f as usize] += v);
            }
        }
    }
}

/// One leaf's numbers (see [`LeafTables::values`]), before they join the tree's flat arrays.
struct LeafTable {
    features: Vec<u32>,
    values: Vec<f64>,
}

impl LeafTable {
    /// Tabulates a leaf with value `v` from its path's `(feature, z)`; `None` if a `z` is 0.
    fn new(path: &[(u32, f64)], v: f64) -> Option<LeafTable> {
        let d = path.len();
        if path.iter().any(|&(_, z)| z <= 0.0 || !z.is_finite()) {
            return None;
        }
        let factorial = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
        let product: f64 = path.iter().map(|&(_, z)| z).product();
        let mut values = Vec::with_capacity((1 << d) + d + 1);
        let mut poly = Vec::with_capacity(d + 1);
        for pattern in 0..1usize << d {
            let size = pattern.count_ones() as usize;
            if size == d {
                values.push(0.0); // never read: some feature is outside every pattern used
                continue;
            }
            // Π_{j∈B} (1 + a_j t), then ∫ t^k (1 − t)^m dt = k! m! / (k + m + 1)!.
            poly.clear();
            poly.push(1.0);
            for (_, &(_, z)) in path.iter().enumerate().filter(|&(j, _)| pattern >> j & 1 == 1) {
                let a = 1.0 / z - 1.0;
                poly.push(0.0);
                for k in (1..poly.len()).rev() {
                    poly[k] += a * poly[k - 1];
                }
            }
            let m = d - 1 - size;
            values.push(
                poly.iter().enumerate().map(|(k, e)| e * factorial(k) * factorial(m) / factorial(k + m + 1)).sum(),
            );
        }
        values.extend(path.iter().map(|&(_, z)| v * (1.0 - z) * product / z));
        values.push(-v * product);
        Some(LeafTable { features: path.iter().map(|&(f, _)| f).collect(), values })
    }
}

pub(crate) fn tree_shap(tree: &Tree, x: &[f64], phi: &mut [f64], buf: &mut TreeShapBuffer) {
    let path = &mut buf.path[..];
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
    path[depth] =
        PathElement { feature, zero_fraction: zero, one_fraction: one, pweight: if depth == 0 { 1.0 } else { 0.0 } };
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
