//! Explanations a clinician reads: exact column contributions summed back into the features
//! they came from (one-hot columns and missing indicators), then into clinical factors (a vital
//! sign's readings over time), ranked, and put into words. Shapley values are additive, so
//! every grouping still adds up to the margin.

use crate::preprocess::{WarningKind, push_num};
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

/// A score put into words: its largest feature contributions and clinical factors, each with
/// its sentence, and its warnings by feature. Built by [`crate::Scorer::explain`], the one place
/// a score is put into words for gRPC, CDS Hooks, batch scoring and Python alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained<'a> {
    /// Features by decreasing |contribution|, ties in feature order.
    pub features: Vec<RankedFeature<'a>>,
    /// Clinical factors by decreasing |contribution|, ties in factor order.
    pub factors: Vec<RankedFactor>,
    pub warnings: Vec<NamedWarning>,
}

/// One feature's part in a score.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedFeature<'a> {
    /// The feature's name in the API.
    pub name: String,
    /// The value as sent.
    pub value: Value<'a>,
    /// On the log-odds scale of the score's margin.
    pub contribution: f64,
    /// E.g. `Mean blood pressure 52 mmHg: raises risk`.
    pub reason: String,
}

/// One clinical factor's part in a score.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedFactor {
    pub name: String,
    /// The sum of its features' contributions.
    pub contribution: f64,
    /// E.g. `Systolic BP (latest set) 82 mmHg and 5 related inputs: raises risk`.
    pub reason: String,
    /// Its features' names in the API, the one its reason quotes first.
    pub features: Vec<String>,
}

/// A warning about one input, by the feature's API name and the name a clinician reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedWarning {
    pub feature: String,
    pub display_name: String,
    pub kind: WarningKind,
    pub message: String,
}

/// How much of a score to put into words: at most this many features and factors (`usize::MAX`
/// for all, 0 for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranking {
    pub features: usize,
    pub factors: usize,
}

/// Clinical factors: features a clinician thinks of as one, by the specs' `factor`; a feature
/// without one is its own factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    pub names: Vec<String>,
    /// Each factor's features, in feature order: the first is the one its reason quotes (for a
    /// sequence, declare the latest reading first).
    pub members: Vec<Vec<usize>>,
}

impl Factors {
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a FeatureSpec>) -> Self {
        let mut factors = Factors { names: Vec::new(), members: Vec::new() };
        for (i, spec) in specs.into_iter().enumerate() {
            let shared = spec.factor.as_ref().and_then(|f| factors.names.iter().position(|n| n == f));
            match shared {
                Some(k) => factors.members[k].push(i),
                None => {
                    factors.names.push(spec.factor.clone().unwrap_or_else(|| spec.display_name().to_string()));
                    factors.members.push(vec![i]);
                }
            }
        }
        factors
    }

    /// Each factor's contribution: the sum of its features'.
    pub fn contributions(&self, per_feature: &[f64]) -> Vec<f64> {
        self.members.iter().map(|m| m.iter().map(|&i| per_feature[i]).sum()).collect()
    }

    /// One line for factor `k`, quoting its first feature's value, e.g. `Systolic BP (latest
    /// set) 82 mmHg and 5 related inputs: raises risk`.
    pub fn reason(&self, k: usize, specs: &[&FeatureSpec], row: &[Value<'_>], contribution: f64) -> String {
        use std::fmt::Write;
        let members = &self.members[k];
        let lead = members[0];
        let mut line = shown(specs[lead], &row[lead]);
        match members.len() - 1 {
            0 => {}
            1 => line.push_str(" and 1 related input"),
            n => write!(line, " and {n} related inputs").expect("writing to a String cannot fail"),
        }
        line.push_str(": ");
        line.push_str(effect(contribution));
        line
    }
}

/// One line for one feature, e.g. `Mean blood pressure 52 mmHg: raises risk`.
pub fn reason(spec: &FeatureSpec, value: &Value<'_>, contribution: f64) -> String {
    let mut line = shown(spec, value);
    line.push_str(": ");
    line.push_str(effect(contribution));
    line
}

/// The feature's display name and value with its unit, in one allocation (a score's explanation
/// has a line per feature).
fn shown(spec: &FeatureSpec, value: &Value<'_>) -> String {
    let mut line = String::with_capacity(64);
    line.push_str(spec.display_name());
    line.push(' ');
    match value {
        Value::Number(x) => {
            push_num(&mut line, *x);
            if let Some(u) = &spec.unit {
                line.push(' ');
                line.push_str(u);
            }
        }
        Value::Text(t) => line.push_str(t),
        Value::Missing => line.push_str("not recorded"),
    }
    line
}

fn effect(contribution: f64) -> &'static str {
    if contribution.abs() < 1e-3 {
        "little effect on risk"
    } else if contribution > 0.0 {
        "raises risk"
    } else {
        "lowers risk"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::FeatureKind;

    #[test]
    fn features_sharing_a_factor_are_explained_together() {
        let mut specs: Vec<FeatureSpec> =
            ["sbp_0", "age", "sbp_1", "sbp_min"].iter().map(|n| FeatureSpec::plain(n, FeatureKind::Numeric)).collect();
        for s in [0, 2, 3] {
            specs[s].factor = Some("Systolic BP".into());
        }
        specs[0].display = Some("Systolic BP (latest set)".into());
        specs[0].unit = Some("mmHg".into());
        let factors = Factors::of(&specs);
        assert_eq!(factors.names, ["Systolic BP", "age"]);
        assert_eq!(factors.members, [vec![0, 2, 3], vec![1]]);
        let per_feature = [0.25, -0.5, 0.125, 0.0625];
        let grouped = factors.contributions(&per_feature);
        assert_eq!(grouped, [0.4375, -0.5]);
        assert_eq!(grouped.iter().sum::<f64>(), per_feature.iter().sum::<f64>());
        let row = [Value::Number(82.0), Value::Number(70.0), Value::Missing, Value::Number(80.0)];
        let refs: Vec<&FeatureSpec> = specs.iter().collect();
        assert_eq!(
            factors.reason(0, &refs, &row, grouped[0]),
            "Systolic BP (latest set) 82 mmHg and 2 related inputs: raises risk"
        );
        assert_eq!(factors.reason(1, &refs, &row, grouped[1]), "age 70: lowers risk");
    }
}
