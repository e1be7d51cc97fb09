//! Scoring one patient: encode, predict, explain, band. The one code path behind the gRPC
//! server, batch scoring and the evaluation of a freshly trained model.

use crate::bands::{RiskBand, RiskBands};
use crate::calibration::Calibration;
use crate::estimator::Estimator;
use crate::explain::group_by_feature;
use crate::preprocess::{Preprocessor, Warning};
use crate::schema::{InputError, Value};
use crate::tree_shap::TreeShapBuffer;
use serde::{Deserialize, Serialize};

/// Everything needed to turn inputs into an explained score: `model.json` of a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDefinition {
    pub preprocessor: Preprocessor,
    pub estimator: Estimator,
    pub risk_bands: RiskBands,
    /// Map from the estimator's margin to the reported probability; none: the logistic function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// An explained score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub probability: f64,
    /// The log-odds the contributions add up to: calibrated where calibration is affine (Platt),
    /// else the estimator's own margin (isotonic calibration only reorders it monotonically).
    pub margin: f64,
    pub band: RiskBand,
    /// Expected margin over the training population (log-odds, on the scale of `margin`).
    pub base_value: f64,
    /// Exact contribution of each feature, in feature order (log-odds, on the scale of `margin`).
    pub contributions: Vec<f64>,
    /// |base + sum(contributions) - margin|.
    pub additivity_error: f64,
    pub warnings: Vec<Warning>,
}

/// Per-thread scratch space, so scoring a batch allocates little per row.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    encoded: Vec<f64>,
    phi: Vec<f64>,
    shap: TreeShapBuffer,
}

/// A validated model ready to score.
#[derive(Debug, Clone)]
pub struct Scorer {
    definition: ModelDefinition,
    owners: Vec<usize>,
    base_value: f64,
}

impl Scorer {
    /// Validates the definition (consistent encoding, estimator shape, bands) before anything is
    /// served with it.
    pub fn new(definition: ModelDefinition) -> Result<Self, String> {
        definition.preprocessor.validate()?;
        definition.risk_bands.validate()?;
        let owners = definition.preprocessor.column_owners();
        definition.estimator.validate(owners.len())?;
        if let Some(c) = &definition.calibration {
            c.validate()?;
        }
        let base_value = definition.estimator.expected_margin();
        Ok(Self { definition, owners, base_value })
    }

    pub fn definition(&self) -> &ModelDefinition {
        &self.definition
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.definition.preprocessor
    }

    /// Puts named values into feature order. Every feature must be present (send `missing` for a
    /// value not recorded) and no unknown name is accepted, so a misspelt field cannot silently
    /// become an imputed value.
    pub fn bind<'a>(
        &self,
        named: impl IntoIterator<Item = (&'a str, Value<'a>)>,
    ) -> Result<Vec<Value<'a>>, InputError> {
        let features = &self.definition.preprocessor.features;
        let mut row: Vec<Option<Value<'a>>> = vec![None; features.len()];
        for (name, value) in named {
            let i = self.definition.preprocessor.feature_index(name).ok_or_else(|| {
                InputError::new(name, "unknown feature for this model")
            })?;
            if row[i].replace(value).is_some() {
                return Err(InputError::new(name, "given more than once"));
            }
        }
        row.into_iter()
            .zip(features)
            .map(|(v, f)| {
                v.ok_or_else(|| {
                    InputError::new(&f.spec.name, "required feature is absent; send `missing` if it was not recorded")
                })
            })
            .collect()
    }

    /// Scores and explains one row given in feature order.
    pub fn score(&self, row: &[Value<'_>], ws: &mut Workspace) -> Result<Score, InputError> {
        let pre = &self.definition.preprocessor;
        if row.len() != pre.features.len() {
            return Err(InputError::new(
                "features",
                format!("expected {} values, got {}", pre.features.len(), row.len()),
            ));
        }
        let mut warnings = Vec::new();
        pre.encode(row, &mut ws.encoded, &mut warnings)?;
        let est = &self.definition.estimator;
        let mut margin = est.margin(&ws.encoded);
        ws.phi.resize(self.owners.len(), 0.0);
        est.contributions(&ws.encoded, &mut ws.phi, &mut ws.shap);
        let mut contributions = group_by_feature(&ws.phi, &self.owners, pre.features.len());
        let mut base_value = self.base_value;
        let probability = match &self.definition.calibration {
            None => sigmoid(margin),
            Some(c) => {
                let p = sigmoid(c.log_odds(margin));
                if let Some(slope) = c.affine_slope() {
                    // Exact on the calibrated scale: every term of base + sum(phi) = margin scales.
                    contributions.iter_mut().for_each(|phi| *phi *= slope);
                    base_value = c.log_odds(base_value);
                    margin = c.log_odds(margin);
                }
                p
            }
        };
        let additivity_error = (base_value + contributions.iter().sum::<f64>() - margin).abs();
        Ok(Score {
            probability,
            margin,
            band: self.definition.risk_bands.band(probability),
            base_value,
            contributions,
            additivity_error,
            warnings,
        })
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
