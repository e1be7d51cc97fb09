//! Cohorts and labels from events: who is predicted for and when, what the outcome is, and which
//! prediction times are censored. An event task spec (TOML) yields MEDS-style labels
//! (`subject_id`, `prediction_time`, `boolean_value`), every exclusion counted.

use crate::dataset::{Baseline, Rows, TaskData, TrainingSet, key_hash};
use crate::fit::Ending;
use crate::ingest::events::EventStore;
use crate::subgroups::{SubgroupSpec, assign_from_codes, assign_from_column, default_subgroups};
use carecast_models::RiskBands;
use carecast_models::features::extract::{ExtractBuffer, FeatureExtractor, STATIC};
use carecast_models::features::{CodePattern, FeatureSetSpec, MICROS_PER_YEAR, Window};
use carecast_models::package::{TaskInfo, sha256_hex};
use carecast_tables::FeatureColumn;
use rayon::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

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
    /// Competing events (e.g. `MEDS_DEATH` for dementia): one of these before the outcome ends
    /// follow-up as a non-case, not censored, and the hazard model becomes cause-specific,
    /// giving the outcome's cumulative incidence. A prediction time after one is left out.
    #[serde(default)]
    pub competing_codes: Vec<String>,
    /// Drop prediction times at which the outcome has already happened.
    #[serde(default = "yes")]
    pub exclude_prior_outcome: bool,
    /// What a predicted probability is the probability of (for the model card); default: the description.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Risk-band thresholds; needed to train a model for the task.
    #[serde(default)]
    pub risk_bands: Option<RiskBands>,
    /// Subgroups for the fairness report, from features or coded attributes (`code_prefix`).
    #[serde(default)]
    pub subgroups: Vec<SubgroupSpec>,
    /// A feature holding an existing score to compare with on the same rows (e.g. NEWS2).
    #[serde(default)]
    pub baseline: Option<String>,
    /// When a new version may replace the one served (`[promotion]`; defaults if absent).
    #[serde(default)]
    pub promotion: crate::gates::PromotionGates,
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

/// Censoring, counted among the exclusions of binary labels.
pub(crate) const CENSORED: &str = "censored: follow-up ends within the horizon without the outcome";

/// A prediction time's follow-up, for time-to-event models: how it ended within the horizon (the
/// outcome, a competing event, or neither), and when, as a share of the horizon (1: observed
/// through it without either).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FollowUp {
    pub subject: i64,
    pub prediction_time: i64,
    pub ending: Ending,
    pub time: f64,
}

impl FollowUp {
    /// Censored: observation ended within the horizon without the outcome or a competing event.
    pub fn censored(&self) -> bool {
        self.ending.censored(self.time)
    }

    /// The binary label: the outcome came within the horizon (a competing event first is a
    /// non-case).
    pub fn outcome(&self) -> bool {
        self.ending == Ending::Outcome
    }
}

/// Labels for every subject; prediction times left out (censored ones included) are counted by reason.
pub fn label(store: &EventStore, spec: &EventTaskSpec) -> anyhow::Result<(Vec<Label>, BTreeMap<String, u64>)> {
    let (follow_ups, mut excluded) = follow_up(store, spec)?;
    let mut labels = Vec::with_capacity(follow_ups.len());
    for f in follow_ups {
        if f.censored() {
            *excluded.entry(CENSORED.into()).or_default() += 1;
        } else {
            labels.push(Label { subject: f.subject, prediction_time: f.prediction_time, value: f.outcome() });
        }
    }
    Ok((labels, excluded))
}

/// Follow-up of every eligible prediction time, censored ones included; ineligible prediction
/// times are counted by reason.
pub fn follow_up(store: &EventStore, spec: &EventTaskSpec) -> anyhow::Result<(Vec<FollowUp>, BTreeMap<String, u64>)> {
    let horizon = spec
        .horizon
        .0
        .ok_or_else(|| anyhow::anyhow!("task `{}`: the horizon must be a length, not `all`", spec.name))?;
    anyhow::ensure!(
        spec.prediction_codes.is_empty() != spec.prediction_date.is_none(),
        "task `{}`: give either prediction_codes or prediction_date",
        spec.name
    );
    let fixed = spec.prediction_date.map(crate::ingest::events::date_micros);
    let min_history = spec.min_history.and_then(|w| w.0).unwrap_or(0);
    let pats = |codes: &[String]| codes.iter().map(|c| CodePattern::new(c)).collect::<Vec<_>>();
    let is_anchor = CodePattern::mask(&pats(&spec.prediction_codes), &store.vocabulary);
    let is_outcome = CodePattern::mask(&pats(&spec.outcome_codes), &store.vocabulary);
    let is_competing = CodePattern::mask(&pats(&spec.competing_codes), &store.vocabulary);
    let is_birth = CodePattern::mask(&[CodePattern::new("MEDS_BIRTH")], &store.vocabulary);
    let mut follow_ups = Vec::new();
    let mut excluded: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..store.n_patients() {
        let events = store.patient(i);
        let Some(last) = events.last().map(|e| e.time) else { continue };
        let birth = events.iter().find(|e| is_birth[e.code as usize]).map(|e| e.time);
        let outcomes: Vec<i64> = events.iter().filter(|e| is_outcome[e.code as usize]).map(|e| e.time).collect();
        let competing: Vec<i64> = events.iter().filter(|e| is_competing[e.code as usize]).map(|e| e.time).collect();
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
            } else if competing.iter().any(|&c| c <= t) {
                Some("competing event at or before the prediction time")
            } else {
                None
            };
            if let Some(reason) = reason {
                *excluded.entry(reason.into()).or_default() += 1;
                continue;
            }
            let share = |until: i64| ((until - t) as f64 / horizon as f64).min(1.0);
            let within = |times: &[i64]| times.iter().copied().find(|&e| e > t && e <= t + horizon);
            let (subject, prediction_time) = (store.subjects[i], t);
            let follow_up = match (within(&outcomes), within(&competing)) {
                // The outcome first (or at the same time as the competing event).
                (Some(o), c) if c.is_none_or(|c| o <= c) => {
                    FollowUp { subject, prediction_time, ending: Ending::Outcome, time: share(o) }
                }
                (_, Some(c)) => FollowUp { subject, prediction_time, ending: Ending::Competing, time: share(c) },
                _ if last > t + horizon => FollowUp { subject, prediction_time, ending: Ending::Neither, time: 1.0 },
                _ => FollowUp { subject, prediction_time, ending: Ending::Neither, time: share(last).min(1.0 - 1e-9) },
            };
            follow_ups.push(follow_up);
        }
    }
    Ok((follow_ups, excluded))
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
    let time = crate::ingest::meds::timestamp_column(
        "prediction_time",
        labels.iter().map(|l| Some(l.prediction_time)).collect(),
    )?;
    let mut df = DataFrame::new(
        labels.len(),
        vec![
            Column::new("subject_id".into(), labels.iter().map(|l| l.subject).collect::<Vec<_>>()),
            time,
            Column::new("boolean_value".into(), labels.iter().map(|l| l.value).collect::<Vec<_>>()),
        ],
    )?;
    ParquetWriter::new(std::fs::File::create(path)?).finish(&mut df)?;
    Ok(())
}

/// A training set from a MEDS dataset, an event task spec and a feature spec (both TOML, stored
/// in the package): labels, features from the one extractor, and the dataset's own splits
/// (`held_out` is the test split; `train` and `tuning` are fitted on).
/// With [`Rows::All`] every labelled row is an evaluation row, whatever its split.
pub fn event_training_set(
    meds: &Path,
    task_toml: &str,
    features_toml: &str,
    which: Rows,
) -> anyhow::Result<TrainingSet> {
    let spec: EventTaskSpec = toml::from_str(task_toml).map_err(|e| anyhow::anyhow!("task spec: {e}"))?;
    let risk_bands = spec
        .risk_bands
        .ok_or_else(|| anyhow::anyhow!("task `{}`: [risk_bands] are needed to train a model", spec.name))?;
    risk_bands.validate()?;
    let features = FeatureSetSpec::from_toml(features_toml).map_err(|e| anyhow::anyhow!("feature spec: {e}"))?;
    let (store, splits, _) = crate::ingest::meds::read_meds(meds)?;
    // Censored prediction times are kept for time-to-event models (training rows only).
    let (follow_ups, excluded) = follow_up(&store, &spec)?;
    let labels: Vec<Label> = follow_ups
        .iter()
        .map(|f| Label { subject: f.subject, prediction_time: f.prediction_time, value: f.outcome() })
        .collect();
    let extractor = FeatureExtractor::new(&features);
    let rows = extract_features(&store, &labels, &extractor);
    let specs = extractor.feature_specs();
    let columns: Vec<FeatureColumn> = specs
        .iter()
        .enumerate()
        .map(|(j, f)| FeatureColumn::from_numbers(&f.name, rows.iter().map(|r| r[j])))
        .collect();
    let column = |name: &str| {
        specs
            .iter()
            .position(|f| f.name == name)
            .map(|j| &columns[j])
            .ok_or_else(|| anyhow::anyhow!("task `{}`: `{name}` is not a feature of the feature spec", spec.name))
    };
    let names: Vec<&str> = specs.iter().map(|f| f.name.as_str()).collect();
    let mut subgroups = Vec::new();
    for g in if spec.subgroups.is_empty() { default_subgroups(&names) } else { spec.subgroups.clone() } {
        subgroups.push(match (&g.feature, &g.code_prefix) {
            (Some(f), None) => assign_from_column(&g, column(f)?)?,
            (None, Some(prefix)) => assign_from_codes(&g, &coded_attribute(&store, &labels, prefix))?,
            _ => anyhow::bail!("subgroup `{}`: give a `feature` or a `code_prefix`", g.name),
        });
    }
    let baseline = spec.baseline.as_deref().map(|b| Baseline::from_column(b, column(b)?)).transpose()?;

    let mut data = TaskData {
        columns,
        labels: labels.iter().map(|l| l.value).collect(),
        key_hash: labels.iter().map(|l| key_hash(&l.subject.to_string())).collect(),
        train_rows: Vec::new(),
        test_rows: Vec::new(),
        excluded: excluded.into_iter().map(|(k, v)| (k, v as usize)).collect(),
        source: meds.file_name().map_or_else(|| meds.display().to_string(), |n| n.to_string_lossy().into_owned()),
        sha256: dataset_fingerprint(meds)?,
        subgroups,
        baseline,
        follow_up: follow_ups.iter().map(|f| (f.time, f.ending)).collect(),
        censored_rows: Vec::new(),
        competing_codes: spec.competing_codes.clone(),
    };
    for (r, (l, f)) in labels.iter().zip(&follow_ups).enumerate() {
        let split = splits.get(&l.subject).map(String::as_str);
        let training = matches!(split, Some("train") | Some("tuning")) && which == Rows::TaskSplit;
        match split {
            _ if f.censored() && training => data.censored_rows.push(r),
            _ if f.censored() => *data.excluded.entry(CENSORED.into()).or_default() += 1,
            _ if which == Rows::All => data.test_rows.push(r),
            Some("held_out") => data.test_rows.push(r),
            Some("train") | Some("tuning") => data.train_rows.push(r),
            _ => *data.excluded.entry("subject has no train / tuning / held_out split".into()).or_default() += 1,
        }
    }
    anyhow::ensure!(!data.test_rows.is_empty(), "task `{}`: no rows to evaluate", spec.name);
    anyhow::ensure!(which == Rows::All || !data.train_rows.is_empty(), "task `{}` has an empty train split", spec.name);
    Ok(TrainingSet {
        task: TaskInfo {
            name: spec.name.clone(),
            description: spec.description.clone(),
            outcome: spec.outcome.clone().unwrap_or(spec.description.clone()),
        },
        features: specs,
        risk_bands,
        promotion: spec.promotion,
        data,
        spec_files: vec![
            ("task.toml", task_toml.as_bytes().to_vec()),
            ("features.toml", features_toml.as_bytes().to_vec()),
        ],
    })
}

/// For each label, the rest of the patient's latest code starting with `prefix` at or before the
/// prediction time (static codes included), e.g. `IMD//DECILE_` → `03`.
fn coded_attribute(store: &EventStore, labels: &[Label], prefix: &str) -> Vec<Option<String>> {
    let suffixes = store.suffixes(prefix);
    labels
        .iter()
        .map(|l| {
            let i = store.position(l.subject).expect("labels come from the store");
            store.coded_attribute(i, &suffixes, l.prediction_time).map(str::to_string)
        })
        .collect()
}

/// SHA-256 over a MEDS dataset's data files (their paths and contents, in path order).
fn dataset_fingerprint(meds: &Path) -> anyhow::Result<String> {
    let data = meds.join("data");
    let mut files = Vec::new();
    crate::ingest::meds::parquet_files(&data, &mut files)?;
    files.sort();
    let mut listing = String::new();
    for f in files {
        let name = f.strip_prefix(&data).unwrap_or(&f).display().to_string();
        listing.push_str(&format!("{name} {}\n", sha256_hex(&std::fs::read(&f)?)));
    }
    Ok(sha256_hex(listing.as_bytes()))
}
