//! Subgroups for fairness reporting: which group (sex, age band, deprivation decile, ethnicity)
//! each row belongs to, from a feature's value or, for event data, from a coded attribute.

use crate::evaluate::SubgroupAssignment;
use carecast_models::Value;
use carecast_models::preprocess::fmt_num;
use carecast_tables::FeatureColumn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One subgroup variable of a task spec (`[[subgroups]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubgroupSpec {
    /// Heading in the report, e.g. "Age band".
    pub name: String,
    /// The feature whose value places a row in a group.
    #[serde(default)]
    pub feature: Option<String>,
    /// Event data only: the group is the rest of the patient's code with this prefix, e.g.
    /// `IMD//DECILE_` gives deprivation deciles `01`..`10`, `SEX//` gives `F` / `M`.
    #[serde(default)]
    pub code_prefix: Option<String>,
    /// For a numeric feature: band edges, e.g. `[50, 65, 80]` gives `<50`, `50 to <65`, `65 to <80`,
    /// `≥80`. Without cuts each distinct value is a group (at most [`MAX_LEVELS`]).
    #[serde(default)]
    pub cuts: Vec<f64>,
}

/// More distinct values than this need `cuts`: a report of hundreds of groups helps no one.
pub const MAX_LEVELS: usize = 30;

/// Subgroups used when a task names none: the usual fairness variables, where the task has a
/// feature of that name.
pub fn default_subgroups(feature_names: &[&str]) -> Vec<SubgroupSpec> {
    let spec = |name: &str, feature: &str, cuts: Vec<f64>| SubgroupSpec {
        name: name.into(),
        feature: Some(feature.into()),
        code_prefix: None,
        cuts,
    };
    let mut out = Vec::new();
    for &f in feature_names {
        match f.to_ascii_lowercase().as_str() {
            "sex" | "gender" => out.push(spec("Sex", f, vec![])),
            "age" => out.push(spec("Age band", f, vec![50.0, 65.0, 80.0])),
            "race" | "ethnicity" => out.push(spec("Ethnicity", f, vec![])),
            "imd" | "imd_decile" | "deprivation" | "deprivation_decile" => {
                out.push(spec("Deprivation decile", f, vec![]))
            }
            _ => {}
        }
    }
    out
}

fn band_labels(cuts: &[f64]) -> Vec<String> {
    let mut labels = vec![format!("<{}", fmt_num(cuts[0]))];
    labels.extend(cuts.windows(2).map(|w| format!("{} to <{}", fmt_num(w[0]), fmt_num(w[1]))));
    labels.push(format!("≥{}", fmt_num(cuts[cuts.len() - 1])));
    labels
}

/// Places each row of `column` in a group of `spec`.
pub fn assign_from_column(spec: &SubgroupSpec, column: &FeatureColumn) -> anyhow::Result<SubgroupAssignment> {
    let values: Vec<Option<Value<'_>>> =
        (0..column.len()).map(|r| column.value(r).ok().filter(|v| *v != Value::Missing)).collect();
    if !spec.cuts.is_empty() {
        anyhow::ensure!(spec.cuts.windows(2).all(|w| w[0] < w[1]), "subgroup `{}`: cuts must increase", spec.name);
        let of_row = values
            .iter()
            .map(|v| match v {
                Some(Value::Number(x)) => Some(spec.cuts.partition_point(|&c| c <= *x)),
                _ => None,
            })
            .collect();
        return Ok(SubgroupAssignment { variable: spec.name.clone(), levels: band_labels(&spec.cuts), of_row });
    }
    // Distinct values: numbers in numeric order, text in alphabetical order.
    let key = |v: &Value<'_>| match v {
        Value::Number(x) => fmt_num(*x),
        Value::Text(s) => s.to_string(),
        Value::Missing => unreachable!("filtered above"),
    };
    let mut numbers: Vec<f64> =
        values.iter().filter_map(|v| if let Some(Value::Number(x)) = v { Some(*x) } else { None }).collect();
    numbers.sort_by(f64::total_cmp);
    numbers.dedup();
    let mut texts: Vec<String> = values
        .iter()
        .flatten()
        .filter(|v| matches!(v, Value::Text(_)))
        .map(key)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Codes that are numbers written as text (a decile read as a category) sort as numbers.
    texts.sort_by_key(|t| (t.parse::<f64>().map_or(i64::MAX, |x| (x * 1e6) as i64), t.clone()));
    let mut levels: Vec<String> = numbers.iter().map(|&x| fmt_num(x)).collect();
    levels.dedup();
    levels.extend(texts);
    anyhow::ensure!(
        levels.len() <= MAX_LEVELS,
        "subgroup `{}`: {} distinct values; give `cuts`",
        spec.name,
        levels.len()
    );
    let of_row = values.iter().map(|v| v.as_ref().and_then(|v| levels.iter().position(|l| *l == key(v)))).collect();
    Ok(SubgroupAssignment { variable: spec.name.clone(), levels, of_row })
}

/// Groups from coded attributes: `codes[r]` is row `r`'s code under the prefix, if any.
pub fn assign_from_codes(spec: &SubgroupSpec, codes: &[Option<String>]) -> anyhow::Result<SubgroupAssignment> {
    let levels: Vec<String> = codes.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    anyhow::ensure!(levels.len() <= MAX_LEVELS, "subgroup `{}`: {} distinct codes", spec.name, levels.len());
    let of_row = codes.iter().map(|c| c.as_ref().and_then(|c| levels.binary_search(c).ok())).collect();
    Ok(SubgroupAssignment { variable: spec.name.clone(), levels, of_row })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands_and_distinct_levels() {
        let age = FeatureColumn::from_numbers("age", [30.0, 50.0, 64.9, 65.0, 91.0, f64::NAN]);
        let spec = SubgroupSpec {
            name: "Age band".into(),
            feature: Some("age".into()),
            code_prefix: None,
            cuts: vec![50.0, 65.0, 80.0],
        };
        let a = assign_from_column(&spec, &age).unwrap();
        assert_eq!(a.levels, ["<50", "50 to <65", "65 to <80", "≥80"]);
        assert_eq!(a.of_row, [Some(0), Some(1), Some(1), Some(2), Some(3), None]);
        let decile = FeatureColumn::from_numbers("imd", [10.0, 2.0, 2.0, 1.0]);
        let spec = SubgroupSpec { cuts: vec![], ..spec };
        let a = assign_from_column(&spec, &decile).unwrap();
        assert_eq!(a.levels, ["1", "2", "10"], "numeric order, not text order");
        assert_eq!(a.of_row, [Some(2), Some(1), Some(1), Some(0)]);
        let many = FeatureColumn::from_numbers("x", (0..100).map(f64::from));
        assert!(assign_from_column(&spec, &many).unwrap_err().to_string().contains("give `cuts`"));
    }
}
