//! Explanations a clinician reads: exact column contributions summed back into the features
//! they came from, ranked, and put into words.

use crate::preprocess::fmt_num;
use crate::schema::{FeatureSpec, Value};

/// Sums column contributions into per-feature contributions (`owners[c]` is column `c`'s feature).
/// Shapley values are additive, so the grouped values still add up to the margin.
pub fn group_by_feature(phi: &[f64], owners: &[usize], n_features: usize) -> Vec<f64> {
    let mut out = vec![0.0; n_features];
    for (p, &f) in phi.iter().zip(owners) {
        out[f] += p;
    }
    out
}

/// Feature indices by decreasing magnitude of contribution, ties by feature order; at most `k`
/// (all when `k` is 0).
pub fn ranked(contributions: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..contributions.len()).collect();
    idx.sort_by(|&a, &b| contributions[b].abs().total_cmp(&contributions[a].abs()).then(a.cmp(&b)));
    if k > 0 {
        idx.truncate(k);
    }
    idx
}

/// One line, e.g. `Mean blood pressure 52 mmHg: raises risk`.
pub fn reason(spec: &FeatureSpec, value: &Value<'_>, contribution: f64) -> String {
    let shown = match value {
        Value::Number(x) => match &spec.unit {
            Some(u) => format!("{} {u}", fmt_num(*x)),
            None => fmt_num(*x),
        },
        Value::Text(t) => (*t).to_string(),
        Value::Missing => "not recorded".to_string(),
    };
    let effect = if contribution.abs() < 1e-3 {
        "little effect on risk"
    } else if contribution > 0.0 {
        "raises risk"
    } else {
        "lowers risk"
    };
    format!("{} {shown}: {effect}", spec.display_name())
}
