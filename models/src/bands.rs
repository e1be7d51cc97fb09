//! Risk bands: the clinical reading of a probability, with thresholds stored in the package.

use crate::invalid::InvalidModel;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    Low,
    Moderate,
    High,
}

impl RiskBand {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskBand::Low => "low",
            RiskBand::Moderate => "moderate",
            RiskBand::High => "high",
        }
    }
}

/// Probability thresholds: moderate from `moderate`, high from `high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskBands {
    pub moderate: f64,
    pub high: f64,
}

impl RiskBands {
    pub fn band(&self, probability: f64) -> RiskBand {
        if probability >= self.high {
            RiskBand::High
        } else if probability >= self.moderate {
            RiskBand::Moderate
        } else {
            RiskBand::Low
        }
    }

    pub fn validate(&self) -> Result<(), InvalidModel> {
        if 0.0 < self.moderate && self.moderate < self.high && self.high < 1.0 {
            Ok(())
        } else {
            Err(InvalidModel::new(
                "risk bands",
                format!("need 0 < moderate < high < 1, got {} and {}", self.moderate, self.high),
            ))
        }
    }
}
