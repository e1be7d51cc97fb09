//! Explanations are exact: TreeSHAP and linear SHAP equal brute-force Shapley values (all 2^M
//! coalitions) on random small models and rows, missing values included, and add up to the margin.
//! The networks' integrated gradients are not Shapley values in general: they equal brute force
//! where the two coincide (networks additive in their inputs), and keep efficiency, dummy and
//! symmetry on any network.

use carecast_models::gru::{Gate, Gru};
use carecast_models::linear::LinearModel;
use carecast_models::mlp::{Dense, Mlp};
use carecast_models::tree_predictor::TreePredictor;
use carecast_models::tree_shap::{
    DecisionTable, Form, LinearTree, MAX_PATH_FEATURES, TreeShap, TreeShapBuffer, contributions_classic,
};
use carecast_models::trees::{LEAF, Node, Tree, TreeEnsemble};
use proptest::prelude::*;

/// SplitMix64: a tiny seeded generator so each proptest case is one reproducible seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random tree of depth at most `depth` whose child covers sum to the parent's, as in training.
fn random_tree(rng: &mut Rng, n_features: usize, depth: usize) -> Tree {
    random_tree_shared(rng, n_features, depth, |rng| 0.1 + 0.8 * rng.unit())
}

/// A random tree whose left children take `share` of their parent's cover.
fn random_tree_shared(rng: &mut Rng, n_features: usize, depth: usize, share: fn(&mut Rng) -> f64) -> Tree {
    fn grow(
        rng: &mut Rng,
        nodes: &mut Vec<Node>,
        n_features: usize,
        depth: usize,
        cover: f64,
        share: fn(&mut Rng) -> f64,
    ) -> u32 {
        let id = nodes.len();
        nodes.push(Node { feature: LEAF, threshold: 0.0, left: 0, right: 0, default_left: false, value: 0.0, cover });
        if depth == 0 || rng.unit() < 0.15 {
            nodes[id].value = rng.unit() * 4.0 - 2.0;
        } else {
            let s = share(rng);
            let left = grow(rng, nodes, n_features, depth - 1, cover * s, share);
            let right = grow(rng, nodes, n_features, depth - 1, cover * (1.0 - s), share);
            nodes[id] = Node {
                feature: rng.below(n_features) as u32,
                threshold: rng.unit() * 2.0 - 1.0,
                left,
                right,
                default_left: rng.unit() < 0.5,
                value: 0.0,
                cover,
            };
        }
        id as u32
    }
    let mut nodes = Vec::new();
    grow(rng, &mut nodes, n_features, depth, 100.0, share);
    Tree { nodes }
}

/// E[f(x) | x_S] under path-dependent weighting: features outside S follow the covers.
fn conditional_expectation(tree: &Tree, node: usize, x: &[f64], in_s: &[bool]) -> f64 {
    let n = &tree.nodes[node];
    if n.is_leaf() {
        return n.value;
    }
    if in_s[n.feature as usize] {
        conditional_expectation(tree, n.next(x[n.feature as usize]) as usize, x, in_s)
    } else {
        let (l, r) = (n.left as usize, n.right as usize);
        (tree.nodes[l].cover * conditional_expectation(tree, l, x, in_s)
            + tree.nodes[r].cover * conditional_expectation(tree, r, x, in_s))
            / n.cover
    }
}

/// Shapley values by enumerating every coalition.
fn brute_force_shapley(m: usize, value: impl Fn(&[bool]) -> f64) -> Vec<f64> {
    let fact = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
    let mut phi = vec![0.0; m];
    for mask in 0u32..(1 << m) {
        let in_s: Vec<bool> = (0..m).map(|j| mask >> j & 1 == 1).collect();
        let size = in_s.iter().filter(|b| **b).count();
        let v_s = value(&in_s);
        for i in 0..m {
            if in_s[i] {
                continue;
            }
            let mut with_i = in_s.clone();
            with_i[i] = true;
            let w = fact(size) * fact(m - size - 1) / fact(m);
            phi[i] += w * (value(&with_i) - v_s);
        }
    }
    phi
}

fn random_row(rng: &mut Rng, m: usize) -> Vec<f64> {
    (0..m).map(|_| if rng.unit() < 0.15 { f64::NAN } else { rng.unit() * 2.4 - 1.2 }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tree_shap_equals_brute_force(seed in any::<u64>(), m in 1usize..7, depth in 1usize..6, n_trees in 1usize..4) {
        let mut rng = Rng(seed);
        let base_score = rng.unit() - 0.5;
        let ensemble = TreeEnsemble::new(base_score, (0..n_trees).map(|_| random_tree(&mut rng, m, depth)).collect());
        let x = random_row(&mut rng, m);
        let mut phi = vec![0.0; m];
        TreePredictor::new(&ensemble).contributions(&ensemble, &x, m, &mut phi, &mut TreeShapBuffer::default());

        let expected = brute_force_shapley(m, |in_s| {
            ensemble.base_score + ensemble.trees.iter().map(|t| conditional_expectation(t, 0, &x, in_s)).sum::<f64>()
        });
        // Every algorithm on every tree: the decision tables, Linear TreeShap (at most
        // MAX_PATH_FEATURES distinct features on a path) and the classic one. A tree of depth 4
        // or less always fits its decision table (at most two groups of 2^8 combinations); a
        // deeper one may pass DECISION_TABLE_BYTES and is then left to the other forms.
        let by = |forms: Vec<Form>| {
            let mut phi = vec![0.0; m];
            TreeShap::from_forms(&ensemble, forms).contributions(&ensemble, &x, m, &mut phi, &mut TreeShapBuffer::default());
            phi
        };
        let decisions: Option<Vec<Form>> = ensemble.trees.iter().map(|t| DecisionTable::new(t).map(Form::Decisions)).collect();
        prop_assert!(depth > 4 || decisions.is_some(), "a tree of depth {depth} has no decision table");
        let linear = ensemble.trees.iter().map(|t| LinearTree::new(t).map(Form::Linear).expect("a path has at most 6 features")).collect();
        let mut classic = vec![0.0; m];
        contributions_classic(&ensemble, &x, &mut classic, &mut TreeShapBuffer::default());
        let mut forms = vec![("chosen", phi.clone()), ("linear", by(linear)), ("classic", classic)];
        forms.extend(decisions.map(|d| ("decisions", by(d))));
        for j in 0..m {
            for (name, got) in &forms {
                prop_assert!((got[j] - expected[j]).abs() < 1e-9, "feature {j}: {name} {} brute force {}", got[j], expected[j]);
            }
        }
        let additivity = ensemble.expected_margin() + phi.iter().sum::<f64>() - ensemble.margin(&x);
        prop_assert!(additivity.abs() < 1e-9, "additivity error {additivity}");
    }

    #[test]
    fn linear_shap_equals_brute_force(seed in any::<u64>(), m in 1usize..8) {
        let mut rng = Rng(seed);
        let model = LinearModel {
            intercept: rng.unit() - 0.5,
            weights: (0..m).map(|_| rng.unit() * 4.0 - 2.0).collect(),
            background: (0..m).map(|_| rng.unit()).collect(),
        };
        let x: Vec<f64> = (0..m).map(|_| rng.unit() * 3.0 - 1.5).collect();
        let mut phi = vec![0.0; m];
        model.contributions(&x, &mut phi);
        // Interventional value of a coalition: features outside S take their training mean.
        let expected = brute_force_shapley(m, |in_s| {
            let z: Vec<f64> = (0..m).map(|j| if in_s[j] { x[j] } else { model.background[j] }).collect();
            model.margin(&z)
        });
        for j in 0..m {
            prop_assert!((phi[j] - expected[j]).abs() < 1e-9);
        }
        let additivity = model.expected_margin() + phi.iter().sum::<f64>() - model.margin(&x);
        prop_assert!(additivity.abs() < 1e-9);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// The prediction layout (breadth-first, fixed-depth walks in groups) scores every row as a
    /// plain walk of each node tree does: unbalanced trees, single leaves, missing values, values
    /// on a threshold, and row counts that leave part-filled groups and blocks.
    #[test]
    fn block_prediction_equals_walking_each_tree(seed in any::<u64>(), m in 1usize..6, depth in 0usize..7, rows in 1usize..150) {
        let mut rng = Rng(seed);
        let ensemble = TreeEnsemble::new(rng.unit(), (0..5).map(|_| random_tree(&mut rng, m, depth)).collect());
        let thresholds: Vec<f64> = ensemble.trees.iter().flat_map(|t| &t.nodes).filter(|n| !n.is_leaf()).map(|n| n.threshold).collect();
        let x: Vec<f64> = (0..rows * m)
            .map(|_| if !thresholds.is_empty() && rng.unit() < 0.2 { thresholds[rng.below(thresholds.len())] } else { random_row(&mut rng, 1)[0] })
            .collect();
        let mut block = vec![0.0; rows];
        TreePredictor::new(&ensemble).margins(&x, m, &mut block);
        for (row, &got) in x.chunks(m).zip(&block) {
            let walked = ensemble.margin(row);
            prop_assert!((got - walked).abs() < 1e-12, "block {got} vs walk {walked}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(50))]

    /// Linear TreeShap over blocks of rows, its node states reused from row to row and tree to
    /// tree, equals the classic algorithm (itself checked against brute force above) row by row.
    #[test]
    fn linear_tree_shap_over_many_rows_equals_classic(seed in any::<u64>(), m in 1usize..8, depth in 1usize..7) {
        let mut rng = Rng(seed);
        let ensemble = TreeEnsemble::new(0.0, (0..4).map(|_| random_tree(&mut rng, m, depth)).collect());
        let forms = ensemble.trees.iter().map(|t| LinearTree::new(t).map_or(Form::Classic, Form::Linear)).collect();
        let rows = 150;
        let x: Vec<f64> = (0..rows).flat_map(|_| random_row(&mut rng, m)).collect();
        let mut phi = vec![0.0; rows * m];
        TreeShap::from_forms(&ensemble, forms).contributions(&ensemble, &x, m, &mut phi, &mut TreeShapBuffer::default());
        for (row, got) in x.chunks(m).zip(phi.chunks(m)) {
            let mut want = vec![0.0; m];
            contributions_classic(&ensemble, row, &mut want, &mut TreeShapBuffer::default());
            for j in 0..m {
                prop_assert!((got[j] - want[j]).abs() < 1e-9, "feature {j}: {} vs {}", got[j], want[j]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20))]

    #[test]
    fn trees_too_deep_to_tabulate_fall_back_exactly(seed in any::<u64>()) {
        // Depth 12 over 12 features: leaves with more than MAX_PATH_FEATURES distinct path
        // features, so some trees take the classic algorithm; the sum is still exact.
        let (m, mut rng) = (12, Rng(seed));
        let ensemble = TreeEnsemble::new(0.0, (0..2).map(|_| random_tree(&mut rng, m, 12)).collect());
        prop_assume!(ensemble.trees.iter().any(|t| LinearTree::new(t).is_none()));
        let x = random_row(&mut rng, m);
        let mut phi = vec![0.0; m];
        TreePredictor::new(&ensemble).contributions(&ensemble, &x, m, &mut phi, &mut TreeShapBuffer::default());
        let expected = brute_force_shapley(m, |in_s| ensemble.trees.iter().map(|t| conditional_expectation(t, 0, &x, in_s)).sum::<f64>());
        for j in 0..m {
            prop_assert!((phi[j] - expected[j]).abs() < 1e-9, "feature {j}: {} vs {}", phi[j], expected[j]);
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(30))]

    /// Linear TreeShap at the edge of its range: depth 8 over 8 features (up to
    /// MAX_PATH_FEATURES distinct features on a path, most features split again below
    /// themselves), covers split as unevenly as 1 in 10^12, and values on the thresholds.
    #[test]
    fn linear_tree_shap_is_exact_at_full_depth_and_extreme_covers(seed in any::<u64>()) {
        let (m, mut rng) = (8, Rng(seed));
        let extreme = |rng: &mut Rng| match rng.below(4) {
            0 => 1e-12,
            1 => 1e-5,
            2 => 1.0 - 1e-5,
            _ => rng.unit(),
        };
        let ensemble = TreeEnsemble::new(0.0, (0..2).map(|_| random_tree_shared(&mut rng, m, 8, extreme)).collect());
        prop_assume!(ensemble.trees.iter().all(|t| t.nodes.len() > 1 && LinearTree::new(t).is_some()));
        let thresholds: Vec<f64> = ensemble.trees.iter().flat_map(|t| &t.nodes).filter(|n| !n.is_leaf()).map(|n| n.threshold).collect();
        let x: Vec<f64> = (0..m).map(|j| if j % 3 == 0 { thresholds[rng.below(thresholds.len())] } else { random_row(&mut rng, 1)[0] }).collect();
        let forms = ensemble.trees.iter().map(|t| Form::Linear(LinearTree::new(t).expect("compiled"))).collect();
        let mut phi = vec![0.0; m];
        TreeShap::from_forms(&ensemble, forms).contributions(&ensemble, &x, m, &mut phi, &mut TreeShapBuffer::default());
        let expected = brute_force_shapley(m, |in_s| ensemble.trees.iter().map(|t| conditional_expectation(t, 0, &x, in_s)).sum::<f64>());
        for j in 0..m {
            prop_assert!((phi[j] - expected[j]).abs() < 1e-9, "feature {j}: {} vs {}", phi[j], expected[j]);
        }
    }
}

/// Node `i` of a full binary tree of `depth` in breadth-first order, over 12 features, halving
/// its cover of 2^depth at each split.
fn full_node(rng: &mut Rng, i: usize, depth: usize) -> Node {
    let level = (usize::BITS - 1 - (i + 1).leading_zeros()) as usize;
    let cover = (1u64 << (depth - level)) as f64;
    if level == depth {
        return Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            default_left: false,
            value: rng.unit(),
            cover,
        };
    }
    let (left, right) = (2 * i as u32 + 1, 2 * i as u32 + 2);
    Node { feature: rng.below(12) as u32, threshold: rng.unit(), left, right, default_left: false, value: 0.0, cover }
}

/// The most distinct features on any root-to-leaf path of `tree`.
fn path_features(tree: &Tree, i: usize, above: &mut Vec<u32>) -> usize {
    let n = &tree.nodes[i];
    if n.is_leaf() {
        return above.len();
    }
    let new = !above.contains(&n.feature);
    if new {
        above.push(n.feature);
    }
    let most = path_features(tree, n.left as usize, above).max(path_features(tree, n.right as usize, above));
    if new {
        above.pop();
    }
    most
}

/// Small trees are tabulated by decisions; larger ones take Linear TreeShap exactly when their
/// paths have at most MAX_PATH_FEATURES distinct features, and the classic algorithm otherwise.
#[test]
fn trees_take_linear_tree_shap_up_to_its_path_features() {
    let mut rng = Rng(3);
    let seven_splits = Tree { nodes: (0..15).map(|i| full_node(&mut rng, i, 3)).collect() };
    assert!(matches!(Form::new(&seven_splits), Form::Decisions(_)));
    let depth_six = Tree { nodes: (0..127).map(|i| full_node(&mut rng, i, 6)).collect() };
    assert!(matches!(Form::new(&depth_six), Form::Linear(_)), "a depth-6 tree's decision table is too large");
    let mut rng = Rng(11);
    let (mut linear, mut classic) = (0, 0);
    for k in 0..400 {
        let tree = random_tree(&mut rng, 12, if k % 2 == 0 { 6 } else { 12 });
        let fits = path_features(&tree, 0, &mut Vec::new()) <= MAX_PATH_FEATURES;
        assert_eq!(LinearTree::new(&tree).is_some(), fits);
        if fits { linear += 1 } else { classic += 1 }
    }
    assert!(linear > 20 && classic > 20, "{linear} linear, {classic} classic");
}

#[test]
fn repeated_feature_on_a_path_is_handled() {
    // Root and its left child split on the same feature: the unwind step must run.
    let leaf = |v: f64, c: f64| Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        right: 0,
        default_left: false,
        value: v,
        cover: c,
    };
    let split = |f: u32, t: f64, l: u32, r: u32, c: f64| Node {
        feature: f,
        threshold: t,
        left: l,
        right: r,
        default_left: true,
        value: 0.0,
        cover: c,
    };
    let tree = Tree {
        nodes: vec![
            split(0, 0.5, 1, 2, 10.0),
            split(0, -0.5, 3, 4, 6.0),
            split(1, 0.0, 5, 6, 4.0),
            leaf(-1.0, 2.0),
            leaf(0.5, 4.0),
            leaf(2.0, 1.0),
            leaf(-0.5, 3.0),
        ],
    };
    let ensemble = TreeEnsemble::new(0.0, vec![tree]);
    let predictor = TreePredictor::new(&ensemble);
    for x in [[0.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [f64::NAN, f64::NAN]] {
        let mut phi = vec![0.0; 2];
        predictor.contributions(&ensemble, &x, 2, &mut phi, &mut TreeShapBuffer::default());
        let expected = brute_force_shapley(2, |s| conditional_expectation(&ensemble.trees[0], 0, &x, s));
        assert!(
            (phi[0] - expected[0]).abs() < 1e-12 && (phi[1] - expected[1]).abs() < 1e-12,
            "{x:?}: {phi:?} vs {expected:?}"
        );
    }
}

/// A dense layer from a generator, weights in [-1.5, 1.5).
fn random_dense(rng: &mut Rng, inputs: usize, outputs: usize) -> Dense {
    let mut w = || rng.unit() * 3.0 - 1.5;
    Dense {
        inputs,
        outputs,
        weights: (0..inputs * outputs).map(|_| w()).collect(),
        bias: (0..outputs).map(|_| w()).collect(),
    }
}

/// The margin of `model` at `x` with the columns outside the coalition at the background.
fn at_coalition(background: &[f64], x: &[f64], in_s: &[bool], margin: impl Fn(&[f64]) -> f64) -> f64 {
    let z: Vec<f64> = (0..x.len()).map(|j| if in_s[j] { x[j] } else { background[j] }).collect();
    margin(&z)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Integrated gradients are the exact (baseline) Shapley values when the network is a sum of
    /// one function per input: each column's hidden units see that column alone, in both layers.
    #[test]
    fn mlp_integrated_gradients_equal_brute_force_on_additive_networks(seed in any::<u64>(), m in 1usize..6) {
        let mut rng = Rng(seed);
        let (units, hidden) = (3, 3 * m);
        let mut first = random_dense(&mut rng, m, hidden);
        let mut second = random_dense(&mut rng, hidden, hidden);
        for u in 0..hidden {
            for j in 0..m {
                if u / units != j { first.weights[u * m + j] = 0.0; }
            }
            for v in 0..hidden {
                if u / units != v / units { second.weights[u * hidden + v] = 0.0; }
            }
        }
        let model = Mlp { layers: vec![first, second, random_dense(&mut rng, hidden, 1)], background: (0..m).map(|_| rng.unit() * 2.0 - 1.0).collect() };
        let x: Vec<f64> = (0..m).map(|_| rng.unit() * 4.0 - 2.0).collect();
        let mut phi = vec![0.0; m];
        model.contributions(&x, &mut phi);
        let expected = brute_force_shapley(m, |s| at_coalition(&model.background, &x, s, |z| model.margin(z)));
        for j in 0..m {
            prop_assert!((phi[j] - expected[j]).abs() < 1e-9, "column {j}: IG {} brute force {}", phi[j], expected[j]);
        }
    }

    /// On any network, integrated gradients keep the Shapley axioms they share with it: they add
    /// up (efficiency), a column the network ignores gets nothing (dummy), and two columns it
    /// treats alike, at equal values, get the same (symmetry).
    #[test]
    fn mlp_integrated_gradients_keep_efficiency_dummy_and_symmetry(seed in any::<u64>(), m in 3usize..7) {
        let mut rng = Rng(seed);
        let mut first = random_dense(&mut rng, m, 6);
        for u in 0..6 {
            first.weights[u * m] = 0.0; // column 0 is ignored
            first.weights[u * m + 2] = first.weights[u * m + 1]; // columns 1 and 2 are alike
        }
        let mut background: Vec<f64> = (0..m).map(|_| rng.unit() * 2.0 - 1.0).collect();
        background[2] = background[1];
        let model = Mlp { layers: vec![first, random_dense(&mut rng, 6, 5), random_dense(&mut rng, 5, 1)], background };
        let mut x: Vec<f64> = (0..m).map(|_| rng.unit() * 4.0 - 2.0).collect();
        x[2] = x[1];
        let mut phi = vec![0.0; m];
        model.contributions(&x, &mut phi);
        let efficiency = (model.expected_margin() + phi.iter().sum::<f64>() - model.margin(&x)).abs();
        prop_assert!(efficiency < 1e-9, "additivity error {efficiency}");
        prop_assert!(phi[0].abs() < 1e-12, "dummy column got {}", phi[0]);
        prop_assert!((phi[1] - phi[2]).abs() < 1e-9, "symmetric columns: {} vs {}", phi[1], phi[2]);
    }

    /// The GRU's quadrature-integrated gradients equal brute-force Shapley values where the two
    /// coincide: one step of one channel (a smooth, non-linear function of it) beside static
    /// columns the output reads linearly.
    #[test]
    fn gru_integrated_gradients_equal_brute_force_on_additive_networks(seed in any::<u64>(), statics in 1usize..4) {
        let mut rng = Rng(seed);
        let hidden = 4;
        let gate = |rng: &mut Rng| Gate { input: random_dense(rng, 1, hidden), hidden: random_dense(rng, hidden, hidden) };
        let (update, reset, candidate) = (gate(&mut rng), gate(&mut rng), gate(&mut rng));
        let m = 1 + statics;
        let model = Gru {
            steps: vec![vec![0]],
            static_columns: (1..m).collect(),
            update,
            reset,
            candidate,
            output: random_dense(&mut rng, hidden + statics, 1),
            background: (0..m).map(|_| rng.unit() * 2.0 - 1.0).collect(),
        };
        let x: Vec<f64> = (0..m).map(|_| rng.unit() * 4.0 - 2.0).collect();
        let mut phi = vec![0.0; m];
        model.contributions(&x, &mut phi);
        let expected = brute_force_shapley(m, |s| at_coalition(&model.background, &x, s, |z| model.margin(z)));
        for j in 0..m {
            prop_assert!((phi[j] - expected[j]).abs() < 1e-8, "column {j}: IG {} brute force {}", phi[j], expected[j]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// A stack of two linear members (sharing the standardised block) and a tree ensemble (on
    /// the native block) explains each feature by the weighted sum of its members' Shapley
    /// values: brute force over the features, each coalition valued by every member at once.
    #[test]
    fn stack_contributions_equal_brute_force(seed in any::<u64>(), m in 1usize..6, depth in 1usize..5) {
        use carecast_models::preprocess::{Encoding, FeatureStats, FittedFeature, Preprocessor};
        use carecast_models::stack::{Stack, StackMember};
        use carecast_models::{Estimator, ModelDefinition, RiskBands, Scorer, Value, Workspace};
        let mut rng = Rng(seed);
        let features = (0..m)
            .map(|j| FittedFeature {
                spec: serde_json::from_value(serde_json::json!({"name": format!("f{j}"), "type": "numeric"})).unwrap(),
                // Mean 0 and SD 1: the standardised column is the value itself.
                stats: FeatureStats::Numeric { median: 0.0, mean: 0.0, sd: 1.0, min: -2.0, max: 2.0, had_missing: false },
            })
            .collect();
        let pre = Preprocessor { encoding: Encoding::Stacked, features };
        let linear = LinearModel {
            intercept: rng.unit() - 0.5,
            weights: (0..m).map(|_| rng.unit() * 4.0 - 2.0).collect(),
            background: (0..m).map(|_| rng.unit() - 0.5).collect(),
        };
        let other = LinearModel {
            intercept: rng.unit() - 0.5,
            weights: (0..m).map(|_| rng.unit() * 4.0 - 2.0).collect(),
            background: linear.background.clone(),
        };
        let trees = TreeEnsemble::new(rng.unit() - 0.5, (0..2).map(|_| random_tree(&mut rng, m, depth)).collect());
        let (w_linear, w_other, w_trees, intercept) = (rng.unit() * 2.0, rng.unit(), rng.unit() * 2.0, rng.unit() - 0.5);
        let member = |name: &str, weight, encoding, estimator| StackMember {
            name: name.into(),
            weight,
            encoding,
            columns: pre.block(encoding).unwrap(),
            estimator,
        };
        let stack = Stack {
            intercept,
            members: vec![
                member("logistic", w_linear, Encoding::Standardised, Estimator::LogisticRegression(linear.clone())),
                member("lasso", w_other, Encoding::Standardised, Estimator::LogisticRegression(other.clone())),
                member("gbm", w_trees, Encoding::Native, Estimator::GradientBoostedTrees(trees.clone())),
            ],
        };
        let scorer = Scorer::new(ModelDefinition {
            preprocessor: pre,
            estimator: Estimator::Stack(stack),
            risk_bands: RiskBands { moderate: 0.1, high: 0.3 },
            calibration: None,
        })
        .unwrap();
        let x: Vec<f64> = (0..m).map(|_| rng.unit() * 3.0 - 1.5).collect();
        let row: Vec<Value<'_>> = x.iter().map(|&v| Value::Number(v)).collect();
        let score = scorer.score(&row, &mut Workspace::default()).unwrap();
        let expected = brute_force_shapley(m, |in_s| {
            let z: Vec<f64> = (0..m).map(|j| if in_s[j] { x[j] } else { linear.background[j] }).collect();
            let tree_value = trees.base_score + trees.trees.iter().map(|t| conditional_expectation(t, 0, &x, in_s)).sum::<f64>();
            intercept + w_linear * linear.margin(&z) + w_other * other.margin(&z) + w_trees * tree_value
        });
        for (j, (got, want)) in score.contributions.iter().zip(&expected).enumerate() {
            prop_assert!((got - want).abs() < 1e-9, "feature {j}: {got} vs {want}");
        }
        let margin = intercept + w_linear * linear.margin(&x) + w_other * other.margin(&x) + w_trees * trees.margin(&x);
        prop_assert!((score.margin - margin).abs() < 1e-12);
        prop_assert!(score.additivity_error < 1e-9, "additivity error {}", score.additivity_error);
        // The probability alone, without an explanation, is the score's.
        prop_assert_eq!(scorer.probability(&row, &mut Workspace::default()).unwrap(), score.probability);
    }
}
