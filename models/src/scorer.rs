//! Scoring one patient: encode, predict, explain, band. The one code path behind the gRPC
//! server, batch scoring and the evaluation of a freshly trained model.

use crate::bands::{RiskBand, RiskBands};
use crate::calibration::Calibration;
use crate::estimator::{Compiled, Estimator};
use crate::explain::{
    Explained, Factors, NamedWarning, RankedFactor, RankedFeature, Ranking, group_by_feature, ranked,
};
use crate::invalid::InvalidModel;
use crate::preprocess::{Encoding, Preprocessor, Warning, WarningKind};
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
    /// The same, summed by clinical factor (in the order of [`Scorer::factors`]).
    pub factors: Vec<f64>,
    /// |base + sum(contributions) - margin|.
    pub additivity_error: f64,
    pub warnings: Vec<Warning>,
}

/// How many expected inputs a score imputed ([`Scorer::completeness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completeness {
    pub imputed: usize,
    pub expected: usize,
}

impl Completeness {
    /// Half or more of the expected inputs were imputed.
    pub fn is_incomplete(&self) -> bool {
        self.imputed * 2 >= self.expected && self.imputed > 0
    }
}

/// Per-thread scratch space, so scoring a batch allocates little per row.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    encoded: Vec<f64>,
    /// The valid rows' encodings, one after another.
    block: Vec<f64>,
    margins: Vec<f64>,
    phi: Vec<f64>,
    shap: TreeShapBuffer,
}

/// A validated model ready to score.
#[derive(Debug, Clone)]
pub struct Scorer {
    definition: ModelDefinition,
    /// The estimator compiled for scoring and explaining, built once here.
    compiled: Compiled,
    owners: Vec<usize>,
    factors: Factors,
    base_value: f64,
    /// Feature positions by name, for binding a request's named inputs.
    positions: std::collections::HashMap<String, usize>,
}

impl Scorer {
    /// Validates the definition (consistent encoding, estimator shape, bands) before anything is
    /// served with it.
    pub fn new(definition: ModelDefinition) -> Result<Self, InvalidModel> {
        definition.preprocessor.validate()?;
        definition.risk_bands.validate()?;
        let owners = definition.preprocessor.column_owners();
        if owners.is_empty() {
            return Err(InvalidModel::new("features", "encode to no columns"));
        }
        definition.estimator.validate(owners.len())?;
        match &definition.estimator {
            Estimator::Stack(stack) => stack.check_layout(&definition.preprocessor)?,
            // A single model on a stacked row would read the other block's columns as its own.
            _ if definition.preprocessor.encoding == Encoding::Stacked => {
                return Err(InvalidModel::new("preprocessor", "a stacked encoding is for a stack's members alone"));
            }
            _ => {}
        }
        if let Some(c) = &definition.calibration {
            c.validate()?;
        }
        let base_value = definition.estimator.expected_margin();
        if !base_value.is_finite() {
            return Err(InvalidModel::new("estimator", "its base value (the training mean's margin) is not finite"));
        }
        let factors = Factors::of(definition.preprocessor.features.iter().map(|f| &f.spec));
        let compiled = definition.estimator.compile();
        let positions =
            definition.preprocessor.features.iter().enumerate().map(|(i, f)| (f.spec.name.clone(), i)).collect();
        Ok(Self { definition, compiled, owners, factors, base_value, positions })
    }

    /// The clinical factors explanations are grouped into.
    pub fn factors(&self) -> &Factors {
        &self.factors
    }

    pub fn definition(&self) -> &ModelDefinition {
        &self.definition
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.definition.preprocessor
    }

    /// How many of the inputs the model expects of every patient a score had imputed, of how
    /// many: every feature but the older steps of an event sequence (a patient with fewer
    /// observation sets lacks those by nature). A score built mostly from imputed values leans on
    /// the training population, not the patient, and must not read as a plain low risk.
    pub fn completeness(&self, score: &Score) -> Completeness {
        let specs = &self.definition.preprocessor.features;
        let expected = |i: usize| specs[i].spec.step.is_none_or(|s| s == 0);
        let imputed =
            score.warnings.iter().filter(|w| w.kind == WarningKind::MissingImputed && expected(w.feature)).count();
        Completeness { imputed, expected: (0..specs.len()).filter(|&i| expected(i)).count() }
    }

    /// The risk of the training population's expected margin (a score's `base_value`), through
    /// the same calibration as the score: what the contributions explain the difference from.
    pub fn baseline_probability(&self, score: &Score) -> f64 {
        match &self.definition.calibration {
            // Affine calibration: the base value is already on the calibrated scale.
            Some(c) if c.affine_slope().is_none() => sigmoid(c.log_odds(score.base_value)),
            _ => sigmoid(score.base_value),
        }
    }

    /// Puts a score of `row` into words: its largest feature contributions and clinical factors
    /// with their sentences, and its warnings named.
    pub fn explain<'a>(&self, row: &[Value<'a>], score: &Score, ranking: Ranking) -> Explained<'a> {
        let specs: Vec<_> = self.definition.preprocessor.features.iter().map(|f| &f.spec).collect();
        let top = |contributions: &[f64], k: usize| {
            if k == 0 { Vec::new() } else { ranked(contributions, 0).into_iter().take(k).collect() }
        };
        let features = top(&score.contributions, ranking.features)
            .into_iter()
            .map(|i| RankedFeature {
                name: specs[i].name.clone(),
                value: row[i],
                contribution: score.contributions[i],
                reason: crate::explain::reason(specs[i], &row[i], score.contributions[i]),
            })
            .collect();
        let factors = top(&score.factors, ranking.factors)
            .into_iter()
            .map(|k| RankedFactor {
                name: self.factors.names[k].clone(),
                contribution: score.factors[k],
                reason: self.factors.reason(k, &specs, row, score.factors[k]),
                features: self.factors.members[k].iter().map(|&i| specs[i].name.clone()).collect(),
            })
            .collect();
        let warnings = score
            .warnings
            .iter()
            .map(|w| NamedWarning {
                feature: specs[w.feature].name.clone(),
                display_name: specs[w.feature].display_name().to_string(),
                kind: w.kind,
                message: w.message.clone(),
            })
            .collect();
        Explained { features, factors, warnings }
    }

    /// A feature's position in the model's feature order, by name.
    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
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
            let i = self.feature_index(name).ok_or_else(|| InputError::new(name, "unknown feature for this model"))?;
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
        let mut scores = self.score_rows(&[row], ws);
        scores.pop().expect("one result per row")
    }

    /// The probability of one row given in feature order, without its explanation: for uses
    /// that read the score alone (the drift reference over the training rows), where an
    /// explanation by integrated gradients would cost many times the score.
    pub fn probability(&self, row: &[Value<'_>], ws: &mut Workspace) -> Result<f64, InputError> {
        self.encode(row, &mut ws.encoded, &mut Vec::new())?;
        ws.margins.resize(1, 0.0);
        self.definition.estimator.margins(&self.compiled, &ws.encoded, self.owners.len(), &mut ws.margins);
        Ok(self.probability_of(ws.margins[0]))
    }

    /// Encodes one row given in feature order, refusing one of the wrong length.
    fn encode(&self, row: &[Value<'_>], out: &mut Vec<f64>, warnings: &mut Vec<Warning>) -> Result<(), InputError> {
        let pre = &self.definition.preprocessor;
        if row.len() != pre.features.len() {
            return Err(InputError::new(
                "features",
                format!("expected {} values, got {}", pre.features.len(), row.len()),
            ));
        }
        pre.encode(row, out, warnings)
    }

    /// The reported probability of an estimator's margin: through the calibration map if any.
    fn probability_of(&self, margin: f64) -> f64 {
        match &self.definition.calibration {
            None => sigmoid(margin),
            Some(c) => sigmoid(c.log_odds(margin)),
        }
    }

    /// Scores and explains rows given in feature order, one result per row: a refused row gets
    /// its error and the rest are scored. The valid rows go through the estimator together, so
    /// a tree ensemble takes its block paths (trees stay in cache across the rows).
    pub fn score_rows(&self, rows: &[&[Value<'_>]], ws: &mut Workspace) -> Vec<Result<Score, InputError>> {
        let width = self.owners.len(); // not 0 (validated)
        ws.block.clear();
        let mut encoded: Vec<Result<Vec<Warning>, InputError>> = rows
            .iter()
            .map(|row| {
                let mut warnings = Vec::new();
                self.encode(row, &mut ws.encoded, &mut warnings)?;
                ws.block.extend_from_slice(&ws.encoded);
                Ok(warnings)
            })
            .collect();
        let n = ws.block.len() / width;
        let est = &self.definition.estimator;
        ws.margins.resize(n, 0.0);
        est.margins(&self.compiled, &ws.block, width, &mut ws.margins);
        ws.phi.resize(n * width, 0.0);
        est.contributions(&self.compiled, &ws.block, width, &mut ws.phi, &mut ws.shap);
        let mut valid = ws.margins.iter().zip(ws.phi.chunks(width));
        encoded
            .drain(..)
            .map(|warnings| {
                let warnings = warnings?;
                let (&margin, phi) = valid.next().expect("one margin per valid row");
                Ok(self.finish(margin, phi, warnings))
            })
            .collect()
    }

    /// A row's score from its margin and column contributions: grouped by feature and factor,
    /// calibrated, banded.
    fn finish(&self, mut margin: f64, phi: &[f64], warnings: Vec<Warning>) -> Score {
        let mut contributions = group_by_feature(phi, &self.owners, self.preprocessor().features.len());
        let mut base_value = self.base_value;
        let probability = self.probability_of(margin);
        if let Some((c, slope)) = self.definition.calibration.as_ref().and_then(|c| Some((c, c.affine_slope()?))) {
            // Exact on the calibrated scale: every term of base + sum(phi) = margin scales.
            contributions.iter_mut().for_each(|phi| *phi *= slope);
            base_value = c.log_odds(base_value);
            margin = c.log_odds(margin);
        }
        let additivity_error = (base_value + contributions.iter().sum::<f64>() - margin).abs();
        Score {
            probability,
            margin,
            band: self.definition.risk_bands.band(probability),
            base_value,
            factors: self.factors.contributions(&contributions),
            contributions,
            additivity_error,
            warnings,
        }
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
