//! Exact path-dependent TreeSHAP: the Shapley values of a tree's conditional expectation
//! `E[f(x) | x_S]`, where features outside `S` follow the training cover down both branches.
//!
//! Two exact algorithms. The classic one (Lundberg, Erion & Lee 2018, Algorithm 2) walks each
//! tree with a polynomial path state: `O(leaves · depth²)` per tree and row, any depth. The fast
//! one is Linear TreeShap (Yu et al., NeurIPS 2022) with its polynomials held by their values at
//! Gauss–Legendre nodes. A leaf with value `v` whose path has `d` distinct features gives
//! feature `i`
//!
//! `φ_i = v ∫₀¹ (o_i − z_i) Π_{j≠i} (o_j t + z_j (1 − t)) dt`,
//!
//! where `z_j` is the product of the cover fractions of the leaf's conditions on `j` and
//! `o_j ∈ {0, 1}` says whether the row meets all of them. The integrand is a polynomial of degree
//! `d − 1`, so [`NODES`] Gauss–Legendre nodes integrate it exactly for `d ≤ 2 · NODES`
//! ([`MAX_PATH_FEATURES`]). Summed over leaves, the product splits at every node into what lies
//! above it (a prefix product, top-down) and below it (a sum over its leaves, bottom-up), so a
//! row costs two passes over the tree's splits with one vector of [`NODES`] numbers per node:
//! `O(nodes · NODES)`, no tables to fetch, and every factor lies in [0, 1], so nothing grows or
//! cancels with depth (tested at depth 8 with cover fractions of 10⁻¹²). A split whose children
//! are both leaves (half the splits of a full tree) has a closed form in four numbers. A feature
//! split again below itself replaces its factor by the combined one: a ratio, tabulated per such
//! edge when the tree is compiled. Trees with a leaf of more distinct path features take the
//! classic algorithm. Both are checked against brute-force Shapley values in the tests.
//!
//! Tried and measured against this on the benchmark model (`explain_vs_xgboost`): the tables
//! this module used before (each feature's value for every combination of the decisions above
//! a group of leaves) ran 5,500 rows a second but took 28 MB, so one patient waited on memory
//! (385 µs); tabulating subtrees of three splits instead of one split's closed form was slower
//! for the same reason.

use crate::trees::{Column, LEAF, Tree, TreeEnsemble};

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: u32,
    zero_fraction: f64,
    one_fraction: f64,
    pweight: f64,
}

/// Gauss–Legendre nodes per polynomial: one 256-bit vector of `f64`.
pub const NODES: usize = 4;
/// Most distinct features on a leaf's path that [`NODES`] nodes integrate exactly.
pub const MAX_PATH_FEATURES: usize = 2 * NODES;

/// A polynomial's values at the Gauss–Legendre nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(align(32))]
struct Lanes([f64; NODES]);

impl Lanes {
    #[inline(always)]
    fn splat(v: f64) -> Lanes {
        Lanes([v; NODES])
    }
    #[inline(always)]
    fn mul(self, o: Lanes) -> Lanes {
        Lanes(std::array::from_fn(|q| self.0[q] * o.0[q]))
    }
    /// `self * a + b * c`.
    #[inline(always)]
    fn mul_add2(self, a: Lanes, b: Lanes, c: Lanes) -> Lanes {
        Lanes(std::array::from_fn(|q| self.0[q] * a.0[q] + b.0[q] * c.0[q]))
    }
    /// `a` if `pick_a`, else `b`, by bit masks rather than a branch on the row's decision.
    #[inline(always)]
    fn select(pick_a: bool, a: Lanes, b: Lanes) -> Lanes {
        let mask = 0u64.wrapping_sub(u64::from(pick_a));
        Lanes(std::array::from_fn(|q| f64::from_bits(a.0[q].to_bits() & mask | b.0[q].to_bits() & !mask)))
    }
    #[inline(always)]
    fn sub(self, o: Lanes) -> Lanes {
        Lanes(std::array::from_fn(|q| self.0[q] - o.0[q]))
    }
    #[inline(always)]
    fn add_assign(&mut self, o: Lanes) {
        for q in 0..NODES {
            self.0[q] += o.0[q];
        }
    }
    fn sum(self) -> f64 {
        self.0.iter().sum()
    }
}

/// The Gauss–Legendre rule on [0, 1] with [`NODES`] nodes `t` and weights `w`, and the
/// products the passes use.
#[derive(Debug, Clone, Copy)]
struct Rule {
    t: Lanes,
    one_minus_t: Lanes,
    weights: Lanes,
    weighted_t: Lanes,
    weighted_one_minus_t: Lanes,
}

/// The rule, computed once.
fn rule() -> &'static Rule {
    static RULE: std::sync::LazyLock<Rule> = std::sync::LazyLock::new(|| {
        let rule = crate::integrated::gauss_legendre(NODES);
        let t = Lanes(std::array::from_fn(|q| rule[q].0));
        let weights = Lanes(std::array::from_fn(|q| rule[q].1));
        let one_minus_t = Lanes(std::array::from_fn(|q| 1.0 - t.0[q]));
        Rule { t, one_minus_t, weights, weighted_t: weights.mul(t), weighted_one_minus_t: weights.mul(one_minus_t) }
    });
    &RULE
}

/// Scratch space for explaining rows of one ensemble; reuse it across rows.
#[derive(Debug, Default, Clone)]
pub struct TreeShapBuffer {
    path: Vec<PathElement>,
    nodes: Vec<NodeState>,
    /// Per row and column, the contributions still by node.
    lanes: Vec<Lanes>,
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
/// `phi`: a reference the fast one is tested against.
pub fn contributions_classic(model: &TreeEnsemble, x: &[f64], phi: &mut [f64], buf: &mut TreeShapBuffer) {
    buf.reserve_for_depth(model.max_depth());
    for tree in &model.trees {
        tree_shap(tree, x, phi, &mut buf.path);
    }
}

/// An ensemble compiled for TreeSHAP: each tree's fastest exact form.
#[derive(Debug, Clone)]
pub struct TreeShap {
    forms: Vec<Form>,
    /// The deepest tree taking the classic algorithm.
    classic_depth: usize,
    /// The most nodes in a linear tree.
    most_nodes: usize,
}

/// How one tree is explained.
#[derive(Debug, Clone)]
pub enum Form {
    /// Small trees: tabulated by the row's decisions.
    Decisions(DecisionTable),
    /// Trees whose paths have at most [`MAX_PATH_FEATURES`] distinct features.
    Linear(LinearTree),
    /// The rest: the classic algorithm.
    Classic,
}

impl Form {
    pub fn new(tree: &Tree) -> Form {
        if let Some(table) = DecisionTable::new(tree) {
            return Form::Decisions(table);
        }
        LinearTree::new(tree).map_or(Form::Classic, Form::Linear)
    }
}

impl TreeShap {
    pub fn new(model: &TreeEnsemble) -> TreeShap {
        TreeShap::from_forms(model, model.trees.iter().map(Form::new).collect())
    }

    /// `model` explained tree by tree in the given forms (one per tree; tests compare them).
    pub fn from_forms(model: &TreeEnsemble, forms: Vec<Form>) -> TreeShap {
        assert_eq!(model.trees.len(), forms.len(), "one form per tree");
        let classic_depth = model
            .trees
            .iter()
            .zip(&forms)
            .filter(|(_, f)| matches!(f, Form::Classic))
            .map(|(t, _)| t.max_depth())
            .max()
            .unwrap_or(0);
        let most_nodes = forms.iter().map(|f| if let Form::Linear(t) = f { t.nodes } else { 0 }).max().unwrap_or(0);
        TreeShap { forms, classic_depth, most_nodes }
    }

    /// Exact TreeSHAP values of `model` (the ensemble this was built from) for the rows of `x`
    /// (row-major, `width` columns), added into the rows of `phi`. Rows go through the trees in
    /// blocks, one tree at a time, so that a tree stays in cache across the block.
    pub fn contributions(
        &self,
        model: &TreeEnsemble,
        x: &[f64],
        width: usize,
        phi: &mut [f64],
        buf: &mut TreeShapBuffer,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has the feature `contributions_avx2` is compiled for.
            return unsafe { self.contributions_avx2(model, x, width, phi, buf) };
        }
        self.contributions_inline(model, x, width, phi, buf)
    }

    /// [`Self::contributions`] with the vectors of Gauss–Legendre nodes one AVX2 register each,
    /// where the processor has it (the baseline x86-64 target splits each into two).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn contributions_avx2(
        &self,
        model: &TreeEnsemble,
        x: &[f64],
        width: usize,
        phi: &mut [f64],
        buf: &mut TreeShapBuffer,
    ) {
        self.contributions_inline(model, x, width, phi, buf)
    }

    #[inline(always)]
    fn contributions_inline(
        &self,
        model: &TreeEnsemble,
        x: &[f64],
        width: usize,
        phi: &mut [f64],
        buf: &mut TreeShapBuffer,
    ) {
        const BLOCK: usize = 64;
        assert_eq!(model.trees.len(), self.forms.len(), "explaining another ensemble than the one compiled");
        if width == 0 {
            return; // no columns, nothing to attribute
        }
        buf.reserve_for_depth(self.classic_depth);
        if buf.nodes.len() < self.most_nodes {
            buf.nodes.resize(self.most_nodes, NodeState::default());
        }
        for (rows, out) in x.chunks(BLOCK * width).zip(phi.chunks_mut(BLOCK * width)) {
            buf.lanes.clear();
            buf.lanes.resize(rows.len(), Lanes::default());
            for (tree, form) in model.trees.iter().zip(&self.forms) {
                let rows_out = rows.chunks(width).zip(out.chunks_mut(width));
                match form {
                    Form::Decisions(table) => rows_out.for_each(|(row, phi)| table.add_contributions(row, phi)),
                    Form::Linear(linear) => {
                        for (row, lanes) in rows.chunks(width).zip(buf.lanes.chunks_mut(width)) {
                            linear.add(row, lanes, &mut buf.nodes);
                        }
                    }
                    Form::Classic => rows_out.for_each(|(row, phi)| tree_shap(tree, row, phi, &mut buf.path)),
                }
            }
            for (phi, lanes) in out.iter_mut().zip(&buf.lanes) {
                *phi += lanes.sum();
            }
        }
    }
}

/// A small tree's Shapley values for every combination of a row's decisions, by group of leaves:
/// a subtree whose leaves' patterns are decided by at most [`MAX_DECISIONS`] splits (its own and
/// those above it) is one group, and a larger one is split into its two children's. A tree of at
/// most [`MAX_DECISIONS`] splits is one group; a depth-4 tree (15 splits) is two of 8. A row costs
/// one comparison per deciding split and one addition per feature per group, faster than
/// [`LinearTree`] while the tables stay small ([`DECISION_TABLE_BYTES`]).
#[derive(Debug, Clone)]
pub struct DecisionTable {
    groups: Vec<DecisionGroup>,
}

/// Most splits deciding a group of leaves for which every combination is tabulated.
pub const MAX_DECISIONS: usize = 8;
/// Largest decision table a tree keeps (a depth-4 tree's is about 20 KB; a depth-6 tree's,
/// 16 groups of 128 combinations, about 95 KB, which for a few hundred trees leaves a lone
/// patient's explanation waiting on memory).
pub const DECISION_TABLE_BYTES: usize = 32 * 1024;

/// One group of leaves' Shapley values for every combination of the splits that decide them.
#[derive(Debug, Clone)]
struct DecisionGroup {
    /// The deciding splits' thresholds and columns; bit `j` of a combination says the row goes
    /// left at split `j`.
    splits: Vec<(f64, Column)>,
    /// The distinct features the group's leaves have values for, ascending.
    features: Vec<u32>,
    /// Per combination, each feature's value (`features.len()` numbers).
    values: Vec<f64>,
}

impl DecisionTable {
    /// Tabulates `tree`, or `None` when a leaf lies more than [`MAX_DECISIONS`] splits deep, a
    /// cover fraction is not finite, or the table would pass [`DECISION_TABLE_BYTES`].
    pub fn new(tree: &Tree) -> Option<DecisionTable> {
        let mut parent = vec![None; tree.nodes.len()];
        for (i, n) in tree.nodes.iter().enumerate().filter(|(_, n)| !n.is_leaf()) {
            parent[n.left as usize] = Some((i, true));
            parent[n.right as usize] = Some((i, false));
        }
        // The groups' roots and deciding splits first: a group's features are its splits' (each
        // split lies on some leaf's path), so the table's size is known before anything is
        // tabulated, and a tree too large is refused cheaply.
        let (mut roots, mut bytes) = (Vec::new(), 0);
        let mut stack = vec![(0usize, Vec::new())];
        while let Some((node, above)) = stack.pop() {
            let within = subtree(tree, node, |n| !n.is_leaf());
            if above.len() + within.len() <= MAX_DECISIONS {
                let splits = [above, within].concat();
                let mut features: Vec<u32> = splits.iter().map(|&i| tree.nodes[i].feature).collect();
                features.sort_unstable();
                features.dedup();
                bytes += (features.len() << splits.len()) * size_of::<f64>();
                if bytes > DECISION_TABLE_BYTES {
                    return None;
                }
                roots.push((node, splits, features));
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
        let groups = roots
            .into_iter()
            .map(|(root, splits, features)| DecisionGroup::new(tree, &parent, root, splits, features))
            .collect::<Option<_>>()?;
        Some(DecisionTable { groups })
    }

    fn add_contributions(&self, row: &[f64], phi: &mut [f64]) {
        for group in &self.groups {
            let mut combination = 0usize;
            for (j, &(threshold, column)) in group.splits.iter().enumerate() {
                combination |= usize::from(column.goes_left(row, threshold)) << j;
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
    /// The leaves under `root`, tabulated over `splits` (every split on their paths; `parent`
    /// gives each node's parent and whether it is its left child) for `features` (theirs,
    /// ascending), each leaf's values by the integral in the module docs.
    fn new(
        tree: &Tree,
        parent: &[Option<(usize, bool)>],
        root: usize,
        splits: Vec<usize>,
        features: Vec<u32>,
    ) -> Option<DecisionGroup> {
        let Rule { t, weights, .. } = rule();
        // Per leaf: its value and its path's edges as (deciding split, goes left, fraction).
        let mut leaves = Vec::new();
        for leaf in subtree(tree, root, |n| n.is_leaf()) {
            let mut edges = Vec::new();
            let mut node = leaf;
            while let Some((p, left)) = parent[node] {
                let z = tree.nodes[node].cover / tree.nodes[p].cover;
                if !z.is_finite() {
                    return None;
                }
                // A node with two parents (a malformed tree) may lead outside the group.
                edges.push((splits.iter().position(|&s| s == p)?, left, z));
                node = p;
            }
            leaves.push((tree.nodes[leaf].value, edges));
        }
        let m = features.len();
        let mut values = vec![0.0; m << splits.len()];
        let mut path: Vec<(u32, f64, bool)> = Vec::new();
        for (combination, out) in values.chunks_mut(m.max(1)).enumerate() {
            for (value, edges) in &leaves {
                // The leaf's distinct features: combined fraction, and whether the row meets
                // every condition on each.
                path.clear();
                for &(j, left, z) in edges {
                    let (feature, met) = (tree.nodes[splits[j]].feature, (combination >> j & 1 == 1) == left);
                    match path.iter_mut().find(|(f, _, _)| *f == feature) {
                        Some(entry) => (entry.1, entry.2) = (entry.1 * z, entry.2 && met),
                        None => path.push((feature, z, met)),
                    }
                }
                for (i, &(feature, z_i, o_i)) in path.iter().enumerate() {
                    let phi: f64 = (0..NODES)
                        .map(|q| {
                            let others: f64 = path
                                .iter()
                                .enumerate()
                                .filter(|&(k, _)| k != i)
                                .map(|(_, &(_, z, o))| f64::from(u8::from(o)) * t.0[q] + z * (1.0 - t.0[q]))
                                .product();
                            weights.0[q] * others
                        })
                        .sum();
                    out[features.binary_search(&feature).expect("a path feature")] +=
                        value * (f64::from(u8::from(o_i)) - z_i) * phi;
                }
            }
        }
        let splits = splits.iter().map(|&i| (tree.nodes[i].threshold, Column::of(&tree.nodes[i]))).collect();
        Some(DecisionGroup { splits, features, values })
    }
}

/// One tree compiled for Linear TreeShap (see the module docs). Its upper splits are kept level
/// by level, so that one forward pass meets parents before children and one backward pass
/// children before parents, and consecutive splits rarely wait on each other (11,200 rows a
/// second on the benchmark model against 9,900 in depth-first order). Between the two come the frontier: the twigs (splits whose
/// children are both leaves), tabulated by the row's decision there, and the leaves below upper
/// splits. Each kind has its own loop, so no pass branches on what a node is.
#[derive(Debug, Clone)]
pub struct LinearTree {
    splits: Vec<Split>,
    twigs: Vec<Twig>,
    /// Twigs splitting a feature of their path again, tabulated.
    repeat_twigs: Vec<RepeatTwig>,
    /// Leaves below upper splits: the node and its `below` (its value times the weights).
    leaves: Vec<(u32, Lanes)>,
    /// Factors of the upper edges that split a feature already on their path, given that the
    /// row met the earlier conditions on it (when it did not, the factor is the fraction alone).
    repeats: Vec<Repeat>,
    /// Nodes with a state while a row is explained: the upper splits and the frontier.
    nodes: usize,
    rule: &'static Rule,
}

/// An upper split.
#[derive(Debug, Clone, Copy)]
struct Split {
    threshold: f64,
    /// Cover fractions of the left and right children.
    z: [f64; 2],
    column: Column,
    /// The position of the feature among its path's distinct features.
    slot: u8,
    /// Per child: 1 + its edge's index in [`LinearTree::repeats`], or 0 for a first split on the
    /// feature.
    repeat: [u16; 2],
    /// Its own node and its children's.
    node: u32,
    children: [u32; 2],
}

/// A split whose children are both leaves, on a feature new to its path. With leaf values
/// `v`, the row's side `o` and `A = z_L v_L + z_R v_R`, its `below` is `w (v_o t + A (1 − t))`
/// and its contributions' factor `w (v_o − A)`.
#[derive(Debug, Clone, Copy)]
struct Twig {
    threshold: f64,
    column: Column,
    node: u32,
    values: [f64; 2],
    a: f64,
}

/// A split whose children are both leaves, on a feature already on its path, tabulated by
/// combination of the row's decision there (bit 0: left) and whether the row met that
/// feature's conditions above (bit 1).
#[derive(Debug, Clone, Copy)]
struct RepeatTwig {
    threshold: f64,
    column: Column,
    node: u32,
    /// The path slot of its feature.
    slot: u8,
    /// Per combination, its `below` and its contributions' factor.
    table: [[Lanes; 2]; 4],
}

/// An edge re-splitting a feature, by whether the row meets its condition: the factor that
/// replaces the feature's earlier one in the prefix product, and the factor its contributions
/// change by.
#[derive(Debug, Clone, Copy)]
struct Repeat {
    factor: [Lanes; 2],
    change: [Lanes; 2],
}

/// Per node while a row is explained.
#[derive(Debug, Clone, Copy, Default)]
struct NodeState {
    /// The product of the factors above the node.
    above: Lanes,
    /// Below a split of a feature already on the path: the edge's factor in the prefix
    /// product, and its contributions' factor (a first split's are recomputed on the way back).
    factor: Lanes,
    change: Lanes,
    /// The weighted sum of the leaves below, each times the factors between.
    below: Lanes,
    /// Per path slot, whether the row has met every condition on that feature so far.
    met: u32,
    /// At a split, whether the row goes left.
    left: bool,
}

/// A path's distinct features, each with the product of its conditions' cover fractions.
type Path = Vec<(u32, f64)>;

impl LinearTree {
    /// Compiles `tree`, or `None` when a leaf has more than [`MAX_PATH_FEATURES`] distinct path
    /// features or a cover fraction is not finite.
    pub fn new(tree: &Tree) -> Option<LinearTree> {
        let mut linear = LinearTree {
            splits: Vec::new(),
            twigs: Vec::new(),
            repeat_twigs: Vec::new(),
            leaves: Vec::new(),
            repeats: Vec::new(),
            nodes: 0,
            rule: rule(),
        };
        linear.compile(tree, 0, &Vec::new())?;
        // Level by level (see the type's docs); compiled depth first, parents come first.
        let mut depth = vec![0u32; linear.nodes];
        for s in &linear.splits {
            for c in s.children {
                depth[c as usize] = depth[s.node as usize] + 1;
            }
        }
        linear.splits.sort_by_key(|s| depth[s.node as usize]);
        Some(linear)
    }

    /// Compiles node `i` (with `path` above it) and its subtree; returns its node.
    fn compile(&mut self, tree: &Tree, i: usize, path: &Path) -> Option<u32> {
        let node = &tree.nodes[i];
        let at = u32::try_from(self.nodes).ok()?;
        self.nodes += 1;
        if node.is_leaf() {
            self.leaves.push((at, self.rule.weights.mul(Lanes::splat(node.value))));
            return Some(at);
        }
        let slot = path.iter().position(|&(f, _)| f == node.feature).unwrap_or(path.len());
        if slot >= MAX_PATH_FEATURES {
            return None;
        }
        let n = &tree.nodes;
        let z = [node.left, node.right].map(|c| n[c as usize].cover / node.cover);
        if z.iter().any(|z| !z.is_finite()) {
            return None;
        }
        let before = path.get(slot).map(|&(_, y)| y);
        if n[node.left as usize].is_leaf() && n[node.right as usize].is_leaf() {
            let values = [node.left, node.right].map(|c| n[c as usize].value);
            let Some(y) = before else {
                let a = z[0] * values[0] + z[1] * values[1];
                self.twigs.push(Twig { threshold: node.threshold, column: Column::of(node), node: at, values, a });
                return Some(at);
            };
            let table = std::array::from_fn(|combination| {
                let (left, met_before) = (combination & 1 == 1, combination >> 1 == 1);
                let (mut below, mut change) = (Lanes::default(), Lanes::default());
                for (side, o) in [left, !left].into_iter().enumerate() {
                    let (f, c) = self.edge(o, met_before, z[side], Some(&self.repeat(y, z[side])));
                    let value = self.rule.weights.mul(Lanes::splat(values[side]));
                    below = f.mul_add2(value, below, Lanes::splat(1.0));
                    change = c.mul_add2(value, change, Lanes::splat(1.0));
                }
                [below, change]
            });
            self.repeat_twigs.push(RepeatTwig {
                threshold: node.threshold,
                column: Column::of(node),
                node: at,
                slot: slot as u8,
                table,
            });
            return Some(at);
        }
        let mut repeat = [0u16; 2];
        if let Some(y) = before {
            for (r, &z) in repeat.iter_mut().zip(&z) {
                let factors = self.repeat(y, z);
                self.repeats.push(factors);
                *r = u16::try_from(self.repeats.len()).ok()?;
            }
        }
        let split = self.splits.len();
        self.splits.push(Split {
            threshold: node.threshold,
            z,
            column: Column::of(node),
            slot: slot as u8,
            repeat,
            node: at,
            children: [0; 2],
        });
        for (side, child) in [node.left, node.right].into_iter().enumerate() {
            let mut path = path.clone();
            match path.get_mut(slot) {
                Some(entry) => entry.1 *= z[side],
                None => path.push((node.feature, z[side])),
            }
            self.splits[split].children[side] = self.compile(tree, child as usize, &path)?;
        }
        Some(at)
    }

    /// `g(o, z) = o t + z (1 − t)` at the nodes: an edge's factor in the prefix product, `o`
    /// whether the row meets its conditions and `z` their combined cover fraction.
    #[inline(always)]
    fn g(&self, o: f64, z: f64) -> Lanes {
        Lanes::splat(o).mul_add2(self.rule.t, Lanes::splat(z), self.rule.one_minus_t)
    }

    /// The factors of an edge with cover fraction `z` re-splitting a feature whose earlier
    /// conditions on the path, all met, have combined fraction `y`: with `g(o, z) = o t + z (1 −
    /// t)`, the prefix product's factor changes from `g(1, y)` to `g(o, y z)`, and each leaf
    /// below has its contribution factor `(o − y z) / g(o, y z)` in place of `(1 − y) / g(1, y)`.
    fn repeat(&self, y: f64, z: f64) -> Repeat {
        let before = self.g(1.0, y);
        let by_o = |o: f64| {
            let now = self.g(o, y * z);
            let factor = Lanes(std::array::from_fn(|q| now.0[q] / before.0[q]));
            // factor × ((o − y z) / now − (1 − y) / before), without dividing by `now` (0 when
            // o = 0 and y z = 0).
            let change = Lanes(std::array::from_fn(|q| ((o - y * z) - (1.0 - y) * factor.0[q]) / before.0[q]));
            (factor, change)
        };
        let ((f0, c0), (f1, c1)) = (by_o(0.0), by_o(1.0));
        Repeat { factor: [f0, f1], change: [c0, c1] }
    }

    /// An edge's factor in the prefix product and its contributions' factor, given whether the
    /// row meets its condition (`o`) and every earlier one on its feature (`met_before`). A first
    /// split on a feature gives `g(o, z)` and `o − z`; a repeat (`repeat`) whose earlier
    /// conditions the row failed leaves the feature's factor at 0 whatever `o` is, so the
    /// product takes the fraction alone and the contributions do not change.
    #[inline(always)]
    fn edge(&self, o: bool, met_before: bool, z: f64, repeat: Option<&Repeat>) -> (Lanes, Lanes) {
        match repeat {
            None => {
                let o = f64::from(u8::from(o));
                (self.g(o, z), Lanes::splat(o - z))
            }
            Some(_) if !met_before => (Lanes::splat(z), Lanes::default()),
            Some(r) => (r.factor[usize::from(o)], r.change[usize::from(o)]),
        }
    }

    /// Adds the row's contributions, per column still by Gauss–Legendre node, into `lanes`.
    #[inline(always)]
    fn add(&self, row: &[f64], lanes: &mut [Lanes], nodes: &mut [NodeState]) {
        let nodes = &mut nodes[..self.nodes];
        nodes[0].above = Lanes::splat(1.0);
        nodes[0].met = u32::MAX;
        for s in &self.splits {
            let left = s.column.goes_left(row, s.threshold);
            let node = &mut nodes[s.node as usize];
            node.left = left;
            let (above, met) = (node.above, node.met);
            let met_before = met >> s.slot & 1 == 1;
            for (side, o) in [left, !left].into_iter().enumerate() {
                let node = &mut nodes[s.children[side] as usize];
                let factor = match s.repeat[side] {
                    0 => self.g(f64::from(u8::from(o)), s.z[side]),
                    r => {
                        let repeat = Some(&self.repeats[usize::from(r) - 1]);
                        (node.factor, node.change) = self.edge(o, met_before, s.z[side], repeat);
                        node.factor
                    }
                };
                node.above = above.mul(factor);
                node.met = if o { met } else { met & !(1 << s.slot) };
            }
        }
        for t in &self.twigs {
            let node = &mut nodes[t.node as usize];
            let left = t.column.goes_left(row, t.threshold);
            let v = t.values[usize::from(!left)];
            node.below =
                Lanes::splat(v).mul_add2(self.rule.weighted_t, Lanes::splat(t.a), self.rule.weighted_one_minus_t);
            lanes[t.column.index()].add_assign(node.above.mul(self.rule.weights.mul(Lanes::splat(v - t.a))));
        }
        for t in &self.repeat_twigs {
            let node = &mut nodes[t.node as usize];
            let left = t.column.goes_left(row, t.threshold);
            let [below, change] = t.table[usize::from(left) | ((node.met >> t.slot & 1) as usize) << 1];
            node.below = below;
            lanes[t.column.index()].add_assign(node.above.mul(change));
        }
        for &(node, below) in &self.leaves {
            nodes[node as usize].below = below;
        }
        for s in self.splits.iter().rev() {
            let [l, r] = s.children.map(|c| &nodes[c as usize]);
            let (below, change) = if s.repeat == [0; 2] {
                // `g(o, z) = o t + z (1 − t)` and `o − z` on both sides, `o` one on the row's:
                // with `Z = z_L below_L + z_R below_R`, the change is `below_o − Z` and the
                // below `Z + t · change`.
                let z = Lanes::splat(s.z[0]).mul_add2(l.below, Lanes::splat(s.z[1]), r.below);
                let chosen = Lanes::select(nodes[s.node as usize].left, l.below, r.below);
                let change = chosen.sub(z);
                (self.rule.t.mul_add2(change, z, Lanes::splat(1.0)), change)
            } else {
                (l.factor.mul_add2(l.below, r.factor, r.below), l.change.mul_add2(l.below, r.change, r.below))
            };
            let node = &mut nodes[s.node as usize];
            lanes[s.column.index()].add_assign(node.above.mul(change));
            node.below = below;
        }
    }
}

/// One tree's classic TreeSHAP values for row `x`, added into `phi`; `path` is sized by
/// [`TreeShapBuffer::reserve_for_depth`].
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
