//! The input vocabulary: which features a model takes, of what type, and the values callers send.

use crate::invalid::InvalidModel;
use serde::{Deserialize, Serialize};

/// A feature as a clinician and a caller know it: one named input, before any encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
    /// Name shown in explanations, e.g. "Mean blood pressure".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Unit of a numeric feature, e.g. "mmHg".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A direction the risk must never go against as this (numeric) feature grows, where it is
    /// clinically required (e.g. risk never falls with age); tree models are fitted under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monotone: Option<Monotone>,
    /// Position in an event sequence (0: the latest observation, 1: the one before, ...): the
    /// features with a step are the time steps a recurrent model reads, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u8>,
    /// The clinical factor this feature belongs to, as a clinician names it (e.g. "Systolic
    /// BP"): features sharing one (a vital sign's readings over time, its minimum and maximum)
    /// are explained together. Without one, a feature is its own factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<String>,
    /// Physiological limits of a numeric feature, in its unit: outside `possible` a value cannot
    /// be real (a unit mix-up, a typing error) and is refused; outside `plausible` it is scored
    /// with a warning to check it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub possible: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plausible: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monotone {
    Increasing,
    Decreasing,
}

impl FeatureSpec {
    /// A feature with no display name, unit or constraint.
    pub fn plain(name: &str, kind: FeatureKind) -> Self {
        Self {
            name: name.into(),
            kind,
            display: None,
            unit: None,
            monotone: None,
            step: None,
            factor: None,
            possible: None,
            plausible: None,
        }
    }

    pub fn display_name(&self) -> &str {
        self.display.as_deref().unwrap_or(&self.name)
    }

    /// Checks the limits: numeric features only, each range ordered, the plausible range inside
    /// the possible one.
    pub fn validate_limits(&self) -> Result<(), InvalidModel> {
        let refused = |reason| Err(InvalidModel::new(format_args!("feature `{}`", self.name), reason));
        let ordered = |r: Option<[f64; 2]>| r.is_none_or(|[lo, hi]| lo.is_finite() && hi.is_finite() && lo < hi);
        if (self.possible.is_some() || self.plausible.is_some()) && self.kind != FeatureKind::Numeric {
            return refused("physiological limits apply to numeric features only");
        }
        if !ordered(self.possible) || !ordered(self.plausible) {
            return refused("a limit range must be two finite numbers, low then high");
        }
        if let (Some([lo, hi]), Some([plo, phi])) = (self.possible, self.plausible)
            && (plo < lo || phi > hi)
        {
            return refused("the plausible range must lie within the possible one");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// One value as a caller sends it. Text is borrowed so that batch scoring allocates nothing per cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

/// Why an input was refused, naming the field: the message a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("feature `{field}`: {reason}")]
pub struct InputError {
    pub field: String,
    pub reason: String,
}

impl InputError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physiological_limits_must_be_ordered_nested_and_numeric() {
        let limited = |possible, plausible| FeatureSpec {
            possible,
            plausible,
            ..FeatureSpec::plain("hrt", FeatureKind::Numeric)
        };
        assert!(limited(Some([0.0, 350.0]), Some([20.0, 220.0])).validate_limits().is_ok());
        assert!(limited(None, Some([20.0, 220.0])).validate_limits().is_ok());
        for (possible, plausible, needle) in [
            (Some([350.0, 0.0]), None, "low then high"),
            (Some([0.0, f64::INFINITY]), None, "finite"),
            (Some([0.0, 200.0]), Some([20.0, 220.0]), "within the possible"),
        ] {
            let err = limited(possible, plausible).validate_limits().unwrap_err();
            assert!(err.part == "feature `hrt`" && err.reason.contains(needle), "{err}");
        }
        let category =
            FeatureSpec { possible: Some([0.0, 1.0]), ..FeatureSpec::plain("sex", FeatureKind::Categorical) };
        assert!(category.validate_limits().unwrap_err().reason.contains("numeric features only"));
    }
}
