//! What a fit chose and why, as typed records: each learner returns its own, defined beside it
//! (the penalty and its cross-validation curve, the tree shape and rounds, the early-stopped
//! epoch); `metrics.json` keeps them under `model_selection`, tagged by learner, for the card and
//! for later audits.

use super::calibrate;
use super::elastic_net::ElasticNetChoice;
use super::gbm_search::GbmChoice;
use super::gru_training::GruParams;
use super::hazard::HazardChoice;
use super::logistic::LogisticChoice;
use super::mlp_training::MlpParams;
use super::network::NetworkChoice;
use super::stack::StackChoice;
use serde::{Deserialize, Serialize};

/// How a model's settings were chosen, with what was fitted after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSelection {
    /// The method in words, as the model card quotes it.
    pub method: String,
    #[serde(flatten)]
    pub choice: Choice,
    /// The calibration map fitted on held-out rows, if one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationFit>,
    /// A later shift of the log-odds to a site's event rate (`carecast recalibrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalibration_in_the_large: Option<Recalibration>,
}

/// Each learner's record, tagged by `learner` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "learner", rename_all = "snake_case")]
pub enum Choice {
    Logistic(LogisticChoice),
    /// The lasso and the elastic net: one coordinate descent, two penalty mixes.
    ElasticNet(ElasticNetChoice),
    Gbm(GbmChoice),
    Mlp(NetworkChoice<MlpParams>),
    Gru(NetworkChoice<GruParams>),
    Hazard(HazardChoice),
    Stack(StackChoice),
    /// Fitted outside Carecast: nothing was chosen here.
    Imported(ImportedModel),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedModel {
    /// The exporter's format, in words ("XGBoost JSON", "LightGBM text").
    pub format: String,
    pub file: Option<String>,
    pub sha256: String,
    pub trees: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFit {
    pub method: calibrate::Method,
    /// Which rows the map saw: never the rows the model was fitted on.
    pub fitted_on: String,
    pub rows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recalibration {
    pub from_version: String,
    pub log_odds_shift: f64,
    /// The site's data: its name and SHA-256, never its rows.
    pub data: String,
    pub data_sha256: String,
    pub rows: usize,
}

/// `model_selection` as `metrics.json` holds it. A package published before the typed record (or
/// one whose record holds a number JSON cannot, written as `null`) keeps what it wrote, read
/// as it is rather than refused, so it can still be evaluated, recalibrated and carded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Recorded {
    Typed(Box<ModelSelection>),
    Earlier(serde_json::Value),
}

impl Recorded {
    /// The method in words, for the card.
    pub fn method(&self) -> &str {
        match self {
            Recorded::Typed(s) => &s.method,
            Recorded::Earlier(v) => v.get("method").and_then(|m| m.as_str()).unwrap_or("fixed settings"),
        }
    }

    /// Notes a recalibration in the large, keeping everything recorded before it.
    pub fn recalibrated(&mut self, recalibration: Recalibration) {
        match self {
            Recorded::Typed(s) => s.recalibration_in_the_large = Some(recalibration),
            Recorded::Earlier(v) => {
                let note = serde_json::to_value(recalibration).expect("plain data serialises");
                match v.as_object_mut() {
                    Some(fields) => drop(fields.insert("recalibration_in_the_large".into(), note)),
                    None => *v = serde_json::json!({"earlier": v.take(), "recalibration_in_the_large": note}),
                }
            }
        }
    }
}

impl From<ModelSelection> for Recorded {
    fn from(selection: ModelSelection) -> Self {
        Recorded::Typed(Box::new(selection))
    }
}

impl ModelSelection {
    /// A record with nothing fitted after the model.
    pub fn new(method: String, choice: impl Into<Choice>) -> Self {
        Self { method, choice: choice.into(), calibration: None, recalibration_in_the_large: None }
    }
}

macro_rules! into_choice {
    ($($record:ty => $variant:ident),* $(,)?) => {
        $(impl From<$record> for Choice {
            fn from(record: $record) -> Self {
                Choice::$variant(record)
            }
        })*
    };
}

into_choice! {
    LogisticChoice => Logistic,
    ElasticNetChoice => ElasticNet,
    GbmChoice => Gbm,
    NetworkChoice<MlpParams> => Mlp,
    NetworkChoice<GruParams> => Gru,
    HazardChoice => Hazard,
    StackChoice => Stack,
    ImportedModel => Imported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_reads_back_as_written_with_its_learner_named() {
        let mut selection = ModelSelection::new(
            "5-fold cross-validated log-loss".into(),
            ElasticNetChoice {
                l1_share: 1.0,
                lambda: 0.01,
                nonzero_weights: 3,
                cv_log_loss: vec![crate::fit::logistic::PenaltyLoss { penalty: 0.01, log_loss: 0.4 }],
            },
        );
        selection.calibration =
            Some(CalibrationFit { method: calibrate::Method::Platt, fitted_on: "fold 0".into(), rows: 10 });
        let json = serde_json::to_value(&selection).unwrap();
        assert_eq!(json["learner"], "elastic_net");
        assert_eq!(json["lambda"], 0.01);
        assert_eq!(json["calibration"]["method"], "platt");
        assert_eq!(serde_json::from_value::<ModelSelection>(json).unwrap(), selection);
    }

    #[test]
    fn a_record_written_before_the_typed_one_or_with_a_null_number_is_kept_as_written() {
        let earlier = r#"{"method": "5-fold cross-validated log-loss", "alpha": 1.0, "cv_log_loss": [{"alpha": 1.0, "log_loss": 0.4}]}"#;
        let mut recorded: Recorded = serde_json::from_str(earlier).unwrap();
        assert!(matches!(recorded, Recorded::Earlier(_)));
        assert_eq!(recorded.method(), "5-fold cross-validated log-loss");
        let shift = Recalibration {
            from_version: "3".into(),
            log_odds_shift: 0.2,
            data: "site.csv".into(),
            data_sha256: "ab".into(),
            rows: 10,
        };
        recorded.recalibrated(shift.clone());
        let json = serde_json::to_value(&recorded).unwrap();
        assert_eq!(json["alpha"], 1.0);
        assert_eq!(json["recalibration_in_the_large"]["log_odds_shift"], 0.2);
        // A loss that is not a number is written as null: the record reads back whole, untyped.
        let typed = ModelSelection::new(
            "m".into(),
            LogisticChoice {
                alpha: 1.0,
                cv_log_loss: vec![crate::fit::logistic::PenaltyLoss { penalty: 1.0, log_loss: f64::NAN }],
            },
        );
        let back: Recorded = serde_json::from_str(&serde_json::to_string(&Recorded::from(typed)).unwrap()).unwrap();
        assert!(matches!(&back, Recorded::Earlier(v) if v["cv_log_loss"][0]["log_loss"].is_null()));
        assert_eq!(back.method(), "m");
    }

    #[test]
    fn an_unknown_learner_is_refused_by_name() {
        let err = serde_json::from_str::<ModelSelection>(r#"{"method": "m", "learner": "oracle"}"#).unwrap_err();
        assert!(err.to_string().contains("oracle"), "{err}");
    }
}
