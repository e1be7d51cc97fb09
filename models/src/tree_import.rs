//! Tree models trained in Python, brought into Carecast's own [`TreeEnsemble`]: XGBoost's JSON
//! model format and LightGBM's text model format (binary log-loss objectives). Researchers can
//! train with those libraries and serve and explain with Carecast; margins, probabilities and
//! TreeSHAP contributions equal the library's own (checked on the fixtures in the tests).
//!
//! Our trees send a row left when `x < threshold` and NaN to the node's default side. XGBoost
//! compares in `f32` (`(x as f32) < t`), LightGBM in `f64` (`x <= t`); thresholds are moved to the
//! equivalent strict `f64` boundary so that `f64` inputs go the way the library sends them. Nodes
//! are laid out depth-first, so children always follow their parent.

use crate::invalid::InvalidModel;
use crate::trees::{LEAF, Node, Tree, TreeEnsemble};
use serde_json::Value;

/// An imported model: the ensemble and the feature names it was trained on, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub ensemble: TreeEnsemble,
    pub feature_names: Vec<String>,
}

/// Why a model file was refused, naming the part of it at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} model, {place}: {reason}")]
pub struct ImportError {
    pub format: &'static str,
    pub place: String,
    pub reason: String,
}

/// A source node before layout: a split (feature, our strict threshold, default side, children)
/// or a leaf, each with its cover.
enum Source {
    Split { feature: u32, threshold: f64, default_left: bool, left: usize, right: usize, cover: f64 },
    Leaf { value: f64, cover: f64 },
}

/// Lays out a tree depth-first from `root`, so every child follows its parent.
fn layout(nodes: &[Source], root: usize) -> Result<Tree, InvalidModel> {
    let mut out = Vec::with_capacity(nodes.len());
    // (source index, where the parent stored this child's position)
    let mut stack = vec![(root, None::<(usize, bool)>)];
    while let Some((i, parent)) = stack.pop() {
        let at = out.len() as u32;
        if let Some((p, is_left)) = parent {
            let node: &mut Node = &mut out[p];
            if is_left { node.left = at } else { node.right = at }
        }
        if out.len() > nodes.len() {
            return Err(InvalidModel::new("nodes", "form a cycle"));
        }
        match *nodes.get(i).ok_or_else(|| InvalidModel::new(format_args!("child {i}"), "does not exist"))? {
            Source::Leaf { value, cover } => {
                out.push(Node { feature: LEAF, threshold: 0.0, left: 0, right: 0, default_left: false, value, cover });
            }
            Source::Split { feature, threshold, default_left, left, right, cover } => {
                out.push(Node { feature, threshold, left: 0, right: 0, default_left, value: 0.0, cover });
                let me = out.len() - 1;
                stack.push((right, Some((me, false))));
                stack.push((left, Some((me, true))));
            }
        }
    }
    Ok(Tree { nodes: out })
}

/// The smallest `f64` boundary `b` with `(x as f32) < t` ⇔ `x < b` for every `f64` `x` (the
/// midpoint between `t` and the `f32` below it; a value exactly on it rounds to even).
fn strict_boundary_of_f32(t: f32) -> f64 {
    // An infinite threshold (every value left) becomes f64::MAX: JSON holds no infinity.
    ((f64::from(t.next_down()) + f64::from(t)) / 2.0).min(f64::MAX)
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// Reads an XGBoost JSON model (`Booster.save_model("model.json")`, objective `binary:logistic`
/// or `binary:logitraw`, numeric splits).
pub fn xgboost_json(text: &str) -> Result<Imported, ImportError> {
    let err = |place: &str, reason: String| ImportError { format: "XGBoost", place: place.to_string(), reason };
    let json: Value = serde_json::from_str(text).map_err(|e| err("file", format!("not JSON: {e}")))?;
    let learner = &json["learner"];
    let objective = learner["objective"]["name"].as_str().unwrap_or_default();
    if !matches!(objective, "binary:logistic" | "binary:logitraw") {
        return Err(err("learner.objective", format!("`{objective}` is not a binary log-loss objective")));
    }
    let mut feature_names: Vec<String> = learner["feature_names"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| err("learner.feature_names", "not a list of names".into()))
                })
                .collect()
        })
        .transpose()?
        .unwrap_or_default();
    if feature_names.is_empty() {
        // Trained without names: XGBoost calls the columns f0, f1, ...
        let n: usize = learner["learner_model_param"]["num_feature"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err("learner_model_param.num_feature", "missing".into()))?;
        feature_names = (0..n).map(|i| format!("f{i}")).collect();
    }
    // Saved as a string, in newer versions as a one-element list: "[3E-1]".
    let base = learner["learner_model_param"]["base_score"].as_str().unwrap_or_default();
    let base: f64 = base
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| err("learner_model_param.base_score", format!("`{base}` is not a number")))?;
    let base_score = if objective == "binary:logistic" {
        if !(base > 0.0 && base < 1.0) {
            return Err(err("learner_model_param.base_score", format!("{base} is not a probability")));
        }
        logit(f64::from(base as f32))
    } else {
        base
    };
    let model = &learner["gradient_booster"]["model"];
    let trees = model["trees"]
        .as_array()
        .ok_or_else(|| err("gradient_booster.model.trees", "missing (only gbtree models are supported)".into()))?;
    let trees = trees
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let place = format!("tree {k}");
            let ints = |name: &str| -> Result<Vec<i64>, ImportError> {
                t[name]
                    .as_array()
                    .ok_or_else(|| err(&place, format!("no `{name}`")))?
                    .iter()
                    .map(|v| v.as_i64().ok_or_else(|| err(&place, format!("`{name}` is not integers"))))
                    .collect()
            };
            let floats = |name: &str| -> Result<Vec<f64>, ImportError> {
                t[name]
                    .as_array()
                    .ok_or_else(|| err(&place, format!("no `{name}`")))?
                    .iter()
                    .map(|v| v.as_f64().ok_or_else(|| err(&place, format!("`{name}` is not numbers"))))
                    .collect()
            };
            let (left, right, feature, default_left) =
                (ints("left_children")?, ints("right_children")?, ints("split_indices")?, ints("default_left")?);
            let (condition, cover) = (floats("split_conditions")?, floats("sum_hessian")?);
            let split_type = ints("split_type").unwrap_or_default();
            let n = left.len();
            if [right.len(), feature.len(), default_left.len(), condition.len(), cover.len()].iter().any(|&l| l != n) {
                return Err(err(&place, "node arrays differ in length".into()));
            }
            if split_type.iter().any(|&s| s != 0) {
                return Err(err(&place, "categorical splits are not supported".into()));
            }
            let nodes = (0..n)
                .map(|i| {
                    if left[i] < 0 {
                        return Ok(Source::Leaf { value: condition[i], cover: cover[i] });
                    }
                    let f = u32::try_from(feature[i])
                        .ok()
                        .filter(|&f| (f as usize) < feature_names.len())
                        .ok_or_else(|| err(&place, format!("node {i} splits on feature {}", feature[i])))?;
                    Ok(Source::Split {
                        feature: f,
                        threshold: strict_boundary_of_f32(condition[i] as f32),
                        default_left: default_left[i] != 0,
                        left: left[i] as usize,
                        right: right[i] as usize,
                        cover: cover[i],
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            layout(&nodes, 0).map_err(|e| err(&place, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Imported { ensemble: TreeEnsemble::new(base_score, trees), feature_names })
}

/// Reads a LightGBM text model (`Booster.save_model("model.txt")`, objective `binary`, numeric
/// splits). A `sigmoid` other than 1 scales the leaf values, so the margin stays the log-odds.
pub fn lightgbm_text(text: &str) -> Result<Imported, ImportError> {
    let err = |place: &str, reason: String| ImportError { format: "LightGBM", place: place.to_string(), reason };
    let mut blocks = text.split("\nTree=");
    let header = blocks.next().unwrap_or_default();
    let field = |block: &str, key: &str| {
        block
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::trim)
            .map(str::to_string)
    };
    let objective = field(header, "objective").ok_or_else(|| err("header", "no objective".into()))?;
    let mut parts = objective.split_whitespace();
    if parts.next() != Some("binary") {
        return Err(err("header.objective", format!("`{objective}` is not the binary objective")));
    }
    let sigmoid: f64 = parts
        .find_map(|p| p.strip_prefix("sigmoid:"))
        .map_or(Ok(1.0), str::parse)
        .map_err(|_| err("header.objective", format!("bad sigmoid in `{objective}`")))?;
    let feature_names: Vec<String> = field(header, "feature_names")
        .ok_or_else(|| err("header", "no feature_names".into()))?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut trees = Vec::new();
    for block in blocks {
        // The block ends where the trees end (`end of trees`) or the next tree begins.
        let block = block.split("end of trees").next().unwrap_or_default();
        let k = block.lines().next().unwrap_or_default().trim().to_string();
        let place = format!("Tree={k}");
        let list = |key: &str| -> Result<Vec<f64>, ImportError> {
            field(block, key)
                .unwrap_or_default()
                .split_whitespace()
                .map(|v| v.parse::<f64>().map_err(|_| err(&place, format!("`{key}` holds `{v}`"))))
                .collect()
        };
        let leaf_value = list("leaf_value")?;
        let leaf_count = list("leaf_count")?;
        let num_leaves = leaf_value.len();
        if num_leaves == 0 || leaf_count.len() != num_leaves {
            return Err(err(&place, "no leaf values, or leaf counts of another length".into()));
        }
        let (features, thresholds, decisions) = (list("split_feature")?, list("threshold")?, list("decision_type")?);
        let (left, right, internal_count) = (list("left_child")?, list("right_child")?, list("internal_count")?);
        let n_splits = num_leaves - 1;
        if [features.len(), thresholds.len(), decisions.len(), left.len(), right.len(), internal_count.len()]
            .iter()
            .any(|&l| l != n_splits)
        {
            return Err(err(&place, "split arrays differ in length from num_leaves - 1".into()));
        }
        // Sources: splits 0..n_splits, then leaves; a child `c < 0` is leaf `!c`.
        let child = |c: f64| if c < 0.0 { n_splits + (!(c as i64)) as usize } else { c as usize };
        let mut nodes = Vec::with_capacity(2 * num_leaves);
        for i in 0..n_splits {
            let decision = decisions[i] as u8;
            if decision & 1 != 0 {
                return Err(err(&place, format!("split {i} is categorical (not supported)")));
            }
            let default_left = decision & 2 != 0;
            let threshold = thresholds[i];
            let default_left = match (decision >> 2) & 3 {
                // No missing type: NaN is read as 0 and compared.
                0 => 0.0 <= threshold,
                // NaN: missing values go the default way.
                2 => default_left,
                // Zero: zeros and NaN go the default way, which only fits our trees when it is
                // where zero would go anyway.
                _ if default_left == (0.0 <= threshold) => default_left,
                _ => {
                    return Err(err(
                        &place,
                        format!("split {i} sends zeros against their threshold (missing type Zero)"),
                    ));
                }
            };
            let feature = features[i] as u32;
            if feature as usize >= feature_names.len() {
                return Err(err(&place, format!("split {i} uses feature {feature}")));
            }
            if threshold.is_nan() {
                return Err(err(&place, format!("split {i} has no threshold (NaN)")));
            }
            // `x <= t` is `x < next_up(t)`. LightGBM writes `inf` for "every value goes left";
            // as `x < f64::MAX` it routes every finite value the same except f64::MAX itself, and
            // a package must hold finite numbers (JSON has no infinity).
            let strict = threshold.next_up().min(f64::MAX);
            nodes.push(Source::Split {
                feature,
                threshold: strict,
                default_left,
                left: child(left[i]),
                right: child(right[i]),
                cover: internal_count[i],
            });
        }
        nodes.extend(leaf_value.iter().zip(&leaf_count).map(|(&v, &c)| Source::Leaf { value: v * sigmoid, cover: c }));
        trees.push(layout(&nodes, 0).map_err(|e| err(&place, e.to_string()))?);
    }
    if trees.is_empty() {
        return Err(err("file", "no trees".into()));
    }
    Ok(Imported { ensemble: TreeEnsemble::new(0.0, trees), feature_names })
}
