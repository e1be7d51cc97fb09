//! Cohorts and labels from events: who is predicted for and when, what the outcome is, and which
//! prediction times are censored. An event task spec (TOML) yields MEDS-style labels
//! (`subject_id`, `prediction_time`, `boolean_value`), every exclusion counted.

use crate::ingest::events::EventStore;
use carecast_models::features::extract::{ExtractBuffer, FeatureExtractor, STATIC};
use carecast_models::features::{CodePattern, MICROS_PER_YEAR, Window};
use rayon::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTaskSpec {
    pub name: String,
    pub description: String,
    /// A prediction time at every distinct time of an event with one of these codes ...
    #[serde(default)]
    pub prediction_codes: Vec<String>,
    /// ... or one fixed prediction date for everyone, as a string (`"2020-01-01"`), e.g. a screen.
    #[serde(default)]
    pub prediction_date: Option<chrono::NaiveDate>,
    /// Minimum history: the first event must lie at least this long before the prediction time.
    #[serde(default)]
    pub min_history: Option<Window>,
    #[serde(default)]
    pub min_age: Option<f64>,
    #[serde(default)]
    pub max_age: Option<f64>,
    /// The outcome: any of these codes within `horizon` after the prediction time.
    pub outcome_codes: Vec<String>,
    pub horizon: Window,
    /// Drop prediction times at which the outcome has already happened.
    #[serde(default = "yes")]
    pub exclude_prior_outcome: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub subject: i64,
    /// Microseconds since the Unix epoch.
    pub prediction_time: i64,
    pub value: bool,
}

/// Labels for every subject; prediction times left out are counted by reason.
pub fn label(store: &EventStore, spec: &EventTaskSpec) -> anyhow::Result<(Vec<Label>, BTreeMap<String, u64>)> {
    let horizon = spec.horizon.0.ok_or_else(|| anyhow::anyhow!("task `{}`: the horizon must be a length, not `all`", spec.name))?;
    anyhow::ensure!(
        spec.prediction_codes.is_empty() != spec.prediction_date.is_none(),
        "task `{}`: give either prediction_codes or prediction_date",
        spec.name
    );
    let fixed = spec.prediction_date.map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros());
    let min_history = spec.min_history.and_then(|w| w.0).unwrap_or(0);
    let pats = |codes: &[String]| codes.iter().map(|c| CodePattern::new(c)).collect::<Vec<_>>();
    let is_anchor = CodePattern::mask(&pats(&spec.prediction_codes), &store.vocabulary);
    let is_outcome = CodePattern::mask(&pats(&spec.outcome_codes), &store.vocabulary);
    let is_birth = CodePattern::mask(&[CodePattern::new("MEDS_BIRTH")], &store.vocabulary);
    let mut labels = Vec::new();
    let mut excluded: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..store.n_patients() {
        let events = store.patient(i);
        let Some(last) = events.last().map(|e| e.time) else { continue };
        let birth = events.iter().find(|e| is_birth[e.code as usize]).map(|e| e.time);
        let outcomes: Vec<i64> = events.iter().filter(|e| is_outcome[e.code as usize]).map(|e| e.time).collect();
        let first = events.iter().map(|e| e.time).find(|&t| t != STATIC);
        let mut times: Vec<i64> = match fixed {
            Some(t) => vec![t],
            None => events.iter().filter(|e| is_anchor[e.code as usize]).map(|e| e.time).collect(),
        };
        times.dedup();
        for t in times {
            let age = birth.map(|b| (t - b) as f64 / MICROS_PER_YEAR);
            let reason = if (spec.min_age.is_some() || spec.max_age.is_some()) && age.is_none() {
                Some("no birth event for the age criteria")
            } else if spec.min_age.is_some_and(|m| age.unwrap() < m) || spec.max_age.is_some_and(|m| age.unwrap() > m) {
                Some("outside the age range")
            } else if first.is_none_or(|f| t - f < min_history) {
                Some("less history than the minimum")
            } else if spec.exclude_prior_outcome && outcomes.iter().any(|&o| o <= t) {
                Some("outcome at or before the prediction time")
            } else {
                None
            };
            if let Some(reason) = reason {
                *excluded.entry(reason.into()).or_default() += 1;
                continue;
            }
            let positive = outcomes.iter().any(|&o| o > t && o <= t + horizon);
            if positive || last > t + horizon {
                labels.push(Label { subject: store.subjects[i], prediction_time: t, value: positive });
            } else {
                *excluded.entry("censored: follow-up ends within the horizon without the outcome".into()).or_default() += 1;
            }
        }
    }
    Ok((labels, excluded))
}

/// Feature rows for every label, extracted in parallel with the one extractor.
pub fn extract_features(store: &EventStore, labels: &[Label], extractor: &FeatureExtractor) -> Vec<Vec<f64>> {
    let bound = extractor.bind(&store.vocabulary);
    labels
        .par_iter()
        .map_init(ExtractBuffer::default, |buf, l| {
            let i = store.position(l.subject).expect("labels come from the store");
            let mut row = vec![0.0; extractor.n_features()];
            bound.extract(store.patient(i), l.prediction_time, &mut row, buf);
            row
        })
        .collect()
}

/// Writes labels as MEDS label Parquet: `subject_id`, `prediction_time`, `boolean_value`.
pub fn write_labels(labels: &[Label], path: &std::path::Path) -> anyhow::Result<()> {
    use polars::prelude::*;
    let time = Series::new("prediction_time".into(), labels.iter().map(|l| l.prediction_time).collect::<Vec<_>>())
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?;
    let mut df = DataFrame::new(labels.len(), vec![
        Column::new("subject_id".into(), labels.iter().map(|l| l.subject).collect::<Vec<_>>()),
        time.into(),
        Column::new("boolean_value".into(), labels.iter().map(|l| l.value).collect::<Vec<_>>()),
    ])?;
    ParquetWriter::new(std::fs::File::create(path)?).finish(&mut df)?;
    Ok(())
}
