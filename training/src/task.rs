//! Task specs for flat tables: which rows, which label, which features, which split. A spec is
//! TOML, validated on load and stored inside every model package trained from it.

use crate::subgroups::SubgroupSpec;
use carecast_models::{FeatureSpec, RiskBands};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub description: String,
    /// What a predicted probability is the probability of.
    pub outcome: String,
    /// File name of the task's data (looked up in the bundled data directory by default).
    pub data: String,
    /// Column holding the (pseudonymous) row key; it drives the deterministic tuning split.
    pub key: String,
    /// Binary label column: 1 (or true) for the outcome, 0 (or false) otherwise.
    pub label: String,
    pub split: SplitSpec,
    /// Columns that must never be features: they leak the outcome or are other models' outputs.
    #[serde(default)]
    pub forbidden: Vec<String>,
    pub risk_bands: RiskBands,
    pub features: Vec<FeatureSpec>,
    /// Subgroups for the fairness report; default: sex, age band and ethnicity where present.
    #[serde(default)]
    pub subgroups: Vec<SubgroupSpec>,
    /// A column holding an existing score to compare with on the same rows (higher = riskier).
    #[serde(default)]
    pub baseline: Option<String>,
    /// When a new version may replace the one served (`[promotion]`; defaults if absent).
    #[serde(default)]
    pub promotion: crate::gates::PromotionGates,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub column: String,
    pub train: String,
    pub test: String,
}

/// Tasks bundled with Carecast, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("support2_hospdead", include_str!("../tasks/support2_hospdead.toml")),
    ("support2_dementia", include_str!("../tasks/support2_dementia.toml")),
];

impl TaskSpec {
    /// Parses and validates a spec.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let spec: TaskSpec = toml::from_str(text)?;
        spec.validate()?;
        Ok(spec)
    }

    /// A bundled task by name, or a spec file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<(Self, String)> {
        let text = match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            Some((_, text)) => text.to_string(),
            None => std::fs::read_to_string(Path::new(name_or_path)).map_err(|e| {
                let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                anyhow::anyhow!(
                    "task `{name_or_path}`: not a bundled task ({}) nor a readable file: {e}",
                    known.join(", ")
                )
            })?,
        };
        let spec = Self::from_toml(&text).map_err(|e| anyhow::anyhow!("task `{name_or_path}`: {e}"))?;
        Ok((spec, text))
    }

    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.features.is_empty(), "no features");
        let mut seen = HashSet::new();
        let forbidden: HashSet<&str> = self.forbidden.iter().map(String::as_str).collect();
        for f in &self.features {
            anyhow::ensure!(seen.insert(f.name.as_str()), "feature `{}` listed twice", f.name);
            f.validate_limits()?;
            anyhow::ensure!(!forbidden.contains(f.name.as_str()), "feature `{}` is forbidden for this task", f.name);
            for special in [&self.label, &self.key, &self.split.column] {
                anyhow::ensure!(&f.name != special, "feature `{}` is the task's label, key or split column", f.name);
            }
        }
        for g in &self.subgroups {
            anyhow::ensure!(
                g.feature.is_some() && g.code_prefix.is_none(),
                "subgroup `{}`: a flat task's subgroup names a `feature` (a column)",
                g.name
            );
        }
        Ok(self.risk_bands.validate()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a possible range a numeric input of 1e9 (a typing error, a wrong unit) would be
    /// scored; every bundled task and event feature spec declares one for each value it reads.
    #[test]
    fn bundled_specs_give_every_measured_value_a_possible_range() {
        for name in TaskSpec::builtin_names() {
            let (spec, _) = TaskSpec::load(name).unwrap();
            for f in spec.features.iter().filter(|f| f.kind == carecast_models::FeatureKind::Numeric) {
                assert!(f.possible.is_some(), "task `{name}`: feature `{}` has no possible range", f.name);
            }
        }
        use carecast_models::features::{Aggregate, FeatureKind, FeatureSetSpec};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks");
        let mut specs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with("_features.toml") {
                continue;
            }
            specs += 1;
            let spec = FeatureSetSpec::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for f in &spec.features {
                // Values as recorded (not slopes, fitted lines, spreads, counts or intervals)
                // need their limits.
                let recorded = matches!(&f.kind, FeatureKind::Measurement { agg, .. } if matches!(agg, Aggregate::Latest | Aggregate::Min | Aggregate::Max | Aggregate::Mean));
                assert!(
                    !recorded || f.possible.is_some(),
                    "{}: feature `{}` has no possible range",
                    path.display(),
                    f.name
                );
            }
        }
        assert!(specs >= 4, "found {specs} feature specs");
    }

    #[test]
    fn bundled_tasks_load_and_exclude_leaking_columns() {
        for name in TaskSpec::builtin_names() {
            let (spec, _) = TaskSpec::load(name).unwrap();
            assert!(spec.features.iter().all(|f| f.name != spec.label));
        }
        let (hosp, text) = TaskSpec::load("support2_hospdead").unwrap();
        assert_eq!(hosp.features.len(), 32);
        let leaky = text.replacen("name = \"age\"", "name = \"surv2m\"", 1);
        let err = TaskSpec::from_toml(&leaky).unwrap_err().to_string();
        assert!(err.contains("surv2m") && err.contains("forbidden"), "{err}");
    }
}
