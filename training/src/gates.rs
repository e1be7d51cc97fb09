//! Promotion gates: when a new version of a model may replace the one served. Stated in the
//! task spec (`[promotion]`, defaults below) and checked on the same validation rows for both
//! versions, through the served code path:
//!
//! - `inputs`: the candidate takes every input the served version takes (with the same type),
//!   so no input clinicians' systems send, and the served model relied on, is silently dropped;
//! - `discrimination`: the candidate's AUROC is not below the served version's by more than
//!   `max_auroc_drop`;
//! - `calibration slope` and `calibration intercept`: the candidate's, within their limits.
//!
//! The report is kept in the registry (`models::registry::GateReport`), where every promotion,
//! from the command line or over gRPC, looks for a passing one against the version served now.

use crate::dataset::TaskData;
use crate::pipeline::{evaluate_columns, evaluate_rows};
use carecast_models::registry::{Gate, GateReport};
use carecast_models::{ModelPackage, Scorer};
use serde::{Deserialize, Serialize};

/// A task's promotion gates (`[promotion]` in its spec).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromotionGates {
    /// The most the candidate's AUROC may fall below the served version's.
    pub max_auroc_drop: f64,
    /// The range the candidate's calibration slope must lie in.
    pub calibration_slope: [f64; 2],
    /// The range the candidate's calibration intercept (slope fixed at 1) must lie in.
    pub calibration_intercept: [f64; 2],
}

impl Default for PromotionGates {
    fn default() -> Self {
        Self { max_auroc_drop: 0.02, calibration_slope: [0.8, 1.2], calibration_intercept: [-0.2, 0.2] }
    }
}

impl PromotionGates {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (0.0..=0.5).contains(&self.max_auroc_drop),
            "promotion.max_auroc_drop: between 0 and 0.5 (AUROC points)"
        );
        for (name, [lo, hi]) in
            [("calibration_slope", self.calibration_slope), ("calibration_intercept", self.calibration_intercept)]
        {
            anyhow::ensure!(
                lo.is_finite() && hi.is_finite() && lo <= hi,
                "promotion.{name}: [low, high] with low <= high"
            );
        }
        Ok(())
    }

    /// The gates of a task spec (its `[promotion]` table, else the defaults).
    pub fn of_task(task_toml: &str) -> anyhow::Result<Self> {
        let table: toml::Table = toml::from_str(task_toml)?;
        let gates: Self = match table.get("promotion") {
            Some(t) => t.clone().try_into().map_err(|e| anyhow::anyhow!("task spec [promotion]: {e}"))?,
            None => Self::default(),
        };
        gates.validate()?;
        Ok(gates)
    }
}

/// Where the gates are checked: the data's rows, named and hashed for the report.
pub struct Validation<'a> {
    pub data: &'a TaskData,
    pub rows: &'a [usize],
}

/// Checks `candidate` (version `version`, its scorer over `validation`'s columns) against the
/// served package `current` on the same rows.
pub fn check(
    gates: &PromotionGates,
    candidate: &Scorer,
    version: &str,
    current: &ModelPackage,
    validation: &Validation<'_>,
) -> GateReport {
    let data = validation.data;
    let theirs = &current.scorer.preprocessor().features;
    let ours = &candidate.preprocessor().features;
    // The served version's inputs, found among the candidate's columns by name.
    let mut lacking = Vec::new();
    let mut columns = Vec::new();
    for f in theirs {
        match ours.iter().position(|o| o.spec.name == f.spec.name && o.spec.kind == f.spec.kind) {
            Some(i) => columns.push(data.columns[i].clone()),
            None => lacking.push(format!("`{}`", f.spec.name)),
        }
    }
    let mut report = Vec::new();
    report.push(Gate {
        name: "inputs".into(),
        passed: lacking.is_empty(),
        detail: if lacking.is_empty() {
            format!("takes every input of version {}", current.manifest.version)
        } else {
            format!("lacks {} (inputs of version {})", lacking.join(", "), current.manifest.version)
        },
    });
    // Both versions on the same rows: those each of them scores (a version refusing the hard
    // rows must not look better for it).
    let mut ws = carecast_models::Workspace::default();
    let mut scores = |scorer: &Scorer, columns: &[carecast_tables::FeatureColumn], r: usize| {
        carecast_tables::row_values(columns, r).is_ok_and(|row| scorer.probability(&row, &mut ws).is_ok())
    };
    let rows: Vec<usize> = validation
        .rows
        .iter()
        .copied()
        .filter(|&r| {
            scores(candidate, &data.columns, r) && (!lacking.is_empty() || scores(&current.scorer, &columns, r))
        })
        .collect();
    let ours = evaluate_rows(candidate, data, &rows, &[]).report.metrics;
    let auroc = if lacking.is_empty() {
        let theirs = evaluate_columns(&current.scorer, &columns, data, &rows, &[]).report.metrics;
        Gate {
            name: "discrimination".into(),
            passed: ours.auroc >= theirs.auroc - gates.max_auroc_drop,
            detail: format!(
                "AUROC {:.3} against {:.3} for version {} (at most {} lower)",
                ours.auroc, theirs.auroc, current.manifest.version, gates.max_auroc_drop
            ),
        }
    } else {
        Gate {
            name: "discrimination".into(),
            passed: false,
            detail: "not compared: the served version's inputs are not all the candidate's".into(),
        }
    };
    report.push(auroc);
    let within = |x: f64, [lo, hi]: [f64; 2]| (lo..=hi).contains(&x);
    report.push(Gate {
        name: "calibration slope".into(),
        passed: within(ours.calibration_slope, gates.calibration_slope),
        detail: format!(
            "{:.3} (limits {} to {})",
            ours.calibration_slope, gates.calibration_slope[0], gates.calibration_slope[1]
        ),
    });
    report.push(Gate {
        name: "calibration intercept".into(),
        passed: within(ours.calibration_intercept, gates.calibration_intercept),
        detail: format!(
            "{:.3} (limits {} to {})",
            ours.calibration_intercept, gates.calibration_intercept[0], gates.calibration_intercept[1]
        ),
    });
    GateReport {
        version: version.into(),
        against: current.manifest.version.clone(),
        at: chrono::Utc::now(),
        data: data.source.clone(),
        data_sha256: data.sha256.clone(),
        rows: rows.len() as u64,
        gates: report,
    }
}
