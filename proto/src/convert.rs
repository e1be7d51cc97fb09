//! Conversions between the inference core's types and `carecast.v1` messages, as `From` impls:
//! the one place the API's shape meets the model's, used by the server and by clients alike.

use crate::v1::{self as pb, feature_value};
use carecast_models::explain::{Explained, NamedWarning, RankedFactor, RankedFeature};
use carecast_models::package::Metrics;
use carecast_models::preprocess::{FeatureStats, FittedFeature, WarningKind};
use carecast_models::{FeatureKind, ModelPackage, RiskBand, Score, Value};

impl From<RiskBand> for pb::RiskBand {
    fn from(b: RiskBand) -> Self {
        match b {
            RiskBand::Low => pb::RiskBand::Low,
            RiskBand::Moderate => pb::RiskBand::Moderate,
            RiskBand::High => pb::RiskBand::High,
        }
    }
}

impl From<WarningKind> for pb::WarningKind {
    fn from(k: WarningKind) -> Self {
        match k {
            WarningKind::MissingImputed => pb::WarningKind::MissingImputed,
            WarningKind::OutOfTrainingRange => pb::WarningKind::OutOfTrainingRange,
            WarningKind::Implausible => pb::WarningKind::Implausible,
        }
    }
}

impl From<FeatureKind> for pb::FeatureType {
    fn from(k: FeatureKind) -> Self {
        match k {
            FeatureKind::Numeric => pb::FeatureType::Numeric,
            FeatureKind::Categorical => pb::FeatureType::Categorical,
        }
    }
}

/// An input as the API carries it.
impl From<Value<'_>> for pb::FeatureValue {
    fn from(v: Value<'_>) -> Self {
        let value = match v {
            Value::Number(x) => feature_value::Value::Number(x),
            Value::Text(t) => feature_value::Value::Category(t.to_string()),
            Value::Missing => feature_value::Value::Missing(true),
        };
        pb::FeatureValue { value: Some(value) }
    }
}

/// An input as the model reads it; the error says why the message cannot be one (the caller
/// names the field).
impl<'a> TryFrom<&'a pb::FeatureValue> for Value<'a> {
    type Error = &'static str;

    fn try_from(v: &'a pb::FeatureValue) -> Result<Self, Self::Error> {
        match &v.value {
            Some(feature_value::Value::Number(x)) => Ok(Value::Number(*x)),
            Some(feature_value::Value::Category(s)) => Ok(Value::Text(s)),
            Some(feature_value::Value::Missing(true)) => Ok(Value::Missing),
            Some(feature_value::Value::Missing(false)) => {
                Err("`missing` must be true; otherwise send a number or category")
            }
            None => Err("no value set (number, category or missing)"),
        }
    }
}

impl From<RankedFeature<'_>> for pb::Contribution {
    fn from(f: RankedFeature<'_>) -> Self {
        pb::Contribution {
            feature: f.name,
            contribution: f.contribution,
            value: Some(f.value.into()),
            explanation: f.reason,
        }
    }
}

impl From<RankedFactor> for pb::Factor {
    fn from(f: RankedFactor) -> Self {
        pb::Factor { name: f.name, contribution: f.contribution, explanation: f.reason, features: f.features }
    }
}

impl From<NamedWarning> for pb::Warning {
    fn from(w: NamedWarning) -> Self {
        pb::Warning { feature: w.feature, kind: pb::WarningKind::from(w.kind) as i32, message: w.message }
    }
}

impl From<&FittedFeature> for pb::FeatureInfo {
    fn from(f: &FittedFeature) -> Self {
        let (levels, training_min, training_max) = match &f.stats {
            FeatureStats::Numeric { min, max, .. } => (Vec::new(), *min, *max),
            FeatureStats::Categorical { levels, .. } => (levels.clone(), 0.0, 0.0),
        };
        pb::FeatureInfo {
            name: f.spec.name.clone(),
            r#type: pb::FeatureType::from(f.spec.kind) as i32,
            display_name: f.spec.display_name().to_string(),
            unit: f.spec.unit.clone().unwrap_or_default(),
            levels,
            training_min,
            training_max,
        }
    }
}

impl From<&Metrics> for pb::Metrics {
    fn from(x: &Metrics) -> Self {
        pb::Metrics {
            n: x.n,
            prevalence: x.prevalence,
            auroc: x.auroc,
            auroc_ci_lower: x.auroc_ci_lower,
            auroc_ci_upper: x.auroc_ci_upper,
            auprc: x.auprc,
            brier: x.brier,
            calibration_slope: x.calibration_slope,
            calibration_intercept: x.calibration_intercept,
        }
    }
}

impl pb::ScoreResponse {
    /// The response for `score` of `patient_key` by `pkg`, put into words as `explained`.
    pub fn new(pkg: &ModelPackage, patient_key: &str, score: &Score, explained: Explained<'_>) -> Self {
        pb::ScoreResponse {
            model: pkg.manifest.name.clone(),
            model_version: pkg.manifest.version.clone(),
            patient_key: patient_key.to_string(),
            probability: score.probability,
            risk_band: pb::RiskBand::from(score.band) as i32,
            margin: score.margin,
            base_value: score.base_value,
            contributions: explained.features.into_iter().map(Into::into).collect(),
            additivity_error: score.additivity_error,
            warnings: explained.warnings.into_iter().map(Into::into).collect(),
            factors: explained.factors.into_iter().map(Into::into).collect(),
        }
    }
}
