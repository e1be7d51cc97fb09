//! Population summaries for planners: a whole register scored by the one scoring path and
//! summarised by the groups a planner names (deprivation quintile, age band, sex, locality):
//! people and people per risk band, expected cases with a 95% interval, observed cases where
//! outcomes are given, and each clinical factor's burden. Every count passes disclosure control
//! ([`crate::disclosure`]) and no patient key or row reaches a summary.

use crate::batch::{audit_scores, score_each, scoring_columns};
use crate::chunks::{Chunks, Source};
use crate::disclosure::Disclosure;
use crate::staged::Staged;
use crate::table::text_column;
use carecast_audit::{AuditLog, BatchRun};
use carecast_models::preprocess::FeatureStats;
use carecast_models::{ModelPackage, RiskBand, Value};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A grouping column holding more distinct values than this is refused: summaries are for
/// areas and bands, and a column this fine is a key or an identifier in disguise.
pub const MAX_GROUPS: usize = 1_000;
/// Up to this many people in a group, the interval of expected cases is the Poisson-binomial's
/// exact quantiles; beyond, its normal approximation (within one case of them there).
const EXACT_UP_TO: usize = 4_000;
/// The bands, in the order the summary's columns list them.
const BANDS: [RiskBand; 3] = [RiskBand::Low, RiskBand::Moderate, RiskBand::High];
/// The total row's label, and a missing value's, in brackets so that no data value reads as them.
const ALL: &str = "(all)";
const MISSING: &str = "(missing)";
/// Burdens are published to this many decimal places of probability.
const BURDEN_DECIMALS: i32 = 4;
/// The risk distribution is published as people per tenth of risk (0-10%, ..., 90-100%).
pub const DISTRIBUTION_BINS: usize = 10;

/// One way of grouping the register: a column's values, or a numeric column cut into bands.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub column: String,
    /// Ascending cut points (`age=65,80`: under 65, 65 to under 80, 80 and over); empty: the
    /// column's own values.
    pub cuts: Vec<f64>,
}

impl std::str::FromStr for Grouping {
    type Err = PopulationError;

    /// `column` or `column=cut,cut,...`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (column, cuts) = s.split_once('=').map_or((s, None), |(c, cuts)| (c, Some(cuts)));
        let bad = |reason: String| PopulationError::Grouping { column: column.to_string(), reason };
        if column.trim().is_empty() {
            return Err(bad("names no column".into()));
        }
        let cuts: Vec<f64> = match cuts {
            None => Vec::new(),
            Some(cuts) => cuts
                .split(',')
                .map(|c| c.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
                .collect::<Option<Vec<f64>>>()
                .ok_or_else(|| bad("cut points must be numbers, e.g. age=65,80".into()))?,
        };
        if cuts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("cut points must rise".into()));
        }
        Ok(Grouping { column: column.trim().to_string(), cuts })
    }
}

impl Grouping {
    /// The band of a numeric value: its place among the bands, and its name.
    fn band(&self, x: f64) -> (usize, String) {
        match self.cuts.iter().position(|&c| x < c) {
            Some(0) => (0, format!("under {}", self.cuts[0])),
            Some(i) => (i, format!("{} to under {}", self.cuts[i - 1], self.cuts[i])),
            None => (self.cuts.len(), format!("{} and over", self.cuts[self.cuts.len() - 1])),
        }
    }
}

/// A stated change to one modifiable input, applied to everyone scored, for a scenario: what
/// the model predicts had the input been so (a model-based association, not a causal effect).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `feature<=x`: recorded values above `x` read as `x` (a blood pressure treated to target).
    AtMost(String, f64),
    /// `feature>=x`: recorded values below `x` read as `x`.
    AtLeast(String, f64),
    /// `feature=value`: everyone's value read as `value`, a number or a category.
    Set(String, String),
}

impl std::str::FromStr for Change {
    type Err = PopulationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |feature: &str, reason: &str| PopulationError::Scenario {
            feature: feature.trim().to_string(),
            reason: reason.to_string(),
        };
        let number = |f: &str, x: &str| {
            x.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| bad(f, "a cap needs a number"))
        };
        if let Some((f, x)) = s.split_once("<=") {
            Ok(Change::AtMost(f.trim().into(), number(f, x)?))
        } else if let Some((f, x)) = s.split_once(">=") {
            Ok(Change::AtLeast(f.trim().into(), number(f, x)?))
        } else if let Some((f, v)) = s.split_once('=').filter(|(_, v)| !v.trim().is_empty()) {
            Ok(Change::Set(f.trim().into(), v.trim().into()))
        } else {
            Err(bad(s, "expected feature<=number, feature>=number or feature=value"))
        }
    }
}

impl Change {
    fn feature(&self) -> &str {
        match self {
            Change::AtMost(f, _) | Change::AtLeast(f, _) | Change::Set(f, _) => f,
        }
    }

    /// The feature's place in the model's inputs and the change as it applies to a value, once
    /// the change is known to be one the model can score: a feature it has, a number for a
    /// number within its possible range, a category it was trained on.
    fn check(&self, pkg: &ModelPackage) -> Result<(usize, Adjust<'_>), PopulationError> {
        let bad = |reason: String| PopulationError::Scenario { feature: self.feature().into(), reason };
        let features = &pkg.scorer.preprocessor().features;
        let i = features
            .iter()
            .position(|f| f.spec.name == self.feature())
            .ok_or_else(|| bad("not an input of this model".into()))?;
        let within = |x: f64| match features[i].spec.possible {
            Some([lo, hi]) if !(lo..=hi).contains(&x) => Err(bad(format!("outside the possible range {lo} to {hi}"))),
            _ => Ok(()),
        };
        let adjust = match (self, &features[i].stats) {
            (Change::AtMost(_, x), FeatureStats::Numeric { .. }) => within(*x).map(|()| Adjust::AtMost(*x))?,
            (Change::AtLeast(_, x), FeatureStats::Numeric { .. }) => within(*x).map(|()| Adjust::AtLeast(*x))?,
            (Change::Set(_, v), FeatureStats::Numeric { .. }) => {
                let x =
                    v.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| bad("expected a number".into()))?;
                within(x).map(|()| Adjust::Set(Value::Number(x)))?
            }
            (Change::Set(_, v), FeatureStats::Categorical { levels, .. }) if !levels.contains(v) => {
                return Err(bad(format!("not a category the model knows ({})", levels.join(", "))));
            }
            // A category stays text, even one that reads as a number (a level `1`).
            (Change::Set(_, v), FeatureStats::Categorical { .. }) => Adjust::Set(Value::Text(v)),
            (_, FeatureStats::Categorical { .. }) => return Err(bad("a cap needs a numeric input".into())),
        };
        Ok((i, adjust))
    }

    fn describe(&self) -> String {
        match self {
            Change::AtMost(f, x) => format!("{f} at most {x}"),
            Change::AtLeast(f, x) => format!("{f} at least {x}"),
            Change::Set(f, v) => format!("{f} set to {v}"),
        }
    }
}

/// A checked [`Change`] as it applies to one value, its number or category resolved once.
#[derive(Debug, Clone, Copy)]
enum Adjust<'a> {
    AtMost(f64),
    AtLeast(f64),
    Set(Value<'a>),
}

impl<'a> Adjust<'a> {
    /// The value read for `value` under the change; a missing value stays missing under a cap.
    fn apply(self, value: Value<'a>) -> Value<'a> {
        match (self, value) {
            (Adjust::AtMost(cap), Value::Number(x)) => Value::Number(x.min(cap)),
            (Adjust::AtLeast(floor), Value::Number(x)) => Value::Number(x.max(floor)),
            (Adjust::Set(v), _) => v,
            (_, other) => other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PopulationOptions {
    pub by: Vec<Grouping>,
    /// A column of observed outcomes (1 / 0, true / false; empty: not known).
    pub outcome: Option<String>,
    /// The register's pseudonymous key, checked on every row and never summarised.
    pub key_column: Option<String>,
    pub disclosure: Disclosure,
    /// Changes to modifiable inputs: each group's expected cases are also given with them.
    pub scenario: Vec<Change>,
    /// Keep each scored row's key, risk and band, to audit a record per row when published (the
    /// run itself is always audited once).
    pub audit_rows: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PopulationError {
    #[error("--by `{column}`: {reason}")]
    Grouping { column: String, reason: String },
    #[error("--outcome `{column}`: {reason}")]
    Outcome { column: String, reason: String },
    #[error(transparent)]
    Rule(#[from] crate::disclosure::RuleError),
    #[error(transparent)]
    Table(#[from] crate::TableError),
    #[error(transparent)]
    Audit(#[from] carecast_audit::AuditError),
    #[error("--scenario `{feature}`: {reason}")]
    Scenario { feature: String, reason: String },
    #[error("--by: name at least one grouping")]
    NoGrouping,
    #[error("the register has no rows")]
    Empty,
    #[error("{0}")]
    Write(String),
}

/// One group's published figures (`None`: suppressed).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    /// The group's value of each grouping (`(missing)` where absent), or `(all)` on the total row.
    pub group: Vec<String>,
    /// People on the register in the group, scored or not.
    pub people: Option<u64>,
    /// People per risk band (low, moderate, high).
    pub bands: [Option<u64>; 3],
    /// People whose rows could not be scored (see the batch report for why).
    pub not_scored: Option<u64>,
    /// Sum of the scored people's risks, and its 95% interval.
    pub expected_cases: Option<f64>,
    pub expected_interval: Option<(u64, u64)>,
    /// Cases observed among people with a recorded outcome, when outcomes are given.
    pub observed_cases: Option<u64>,
    /// Each clinical factor's mean contribution to risk on the probability scale.
    pub burden: Option<Vec<f64>>,
    /// Expected cases under the scenario, when one is given.
    pub scenario_cases: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub model: String,
    pub version: String,
    /// What the model predicts, in the words of its manifest.
    pub outcome: String,
    pub groupings: Vec<String>,
    pub factors: Vec<String>,
    /// One row per group, and last the total row.
    pub groups: Vec<GroupSummary>,
    /// Rows not scored, exactly, for the one who ran the summary (published only protected, as
    /// each group's `not_scored`); `carecast score` names each one's field and reason.
    pub not_scored: usize,
    pub rule: String,
    pub has_outcome: bool,
    /// The scenario's changes in words (empty: none).
    pub scenario: Vec<String>,
    /// Scored people per tenth of risk ([`DISTRIBUTION_BINS`]), protected as one table.
    pub distribution: Vec<Option<u64>>,
    /// Each scored row's key, risk and band, for the audit trail, when the summary is to be
    /// published with a record per row (`PopulationOptions::audit_rows`).
    audited: Option<Vec<(Option<String>, f64, &'static str)>>,
    /// Rows scored.
    scored: usize,
    /// When reading the register began (the report's date, and the run's audit record's).
    pub started: chrono::DateTime<chrono::Utc>,
    /// The register's SHA-256 and rows, for the run's audit record.
    input_sha256: String,
    rows: usize,
}

/// What a group accumulates before disclosure control.
#[derive(Default)]
struct Tally {
    bands: [u64; 3],
    not_scored: u64,
    risks: Vec<f64>,
    cases: u64,
    non_cases: u64,
    burden: Vec<f64>,
    /// The sum of risks under the scenario.
    scenario_risk: f64,
}

impl Tally {
    fn add_burden(&mut self, burden: &[f64]) {
        if self.burden.is_empty() {
            self.burden = vec![0.0; burden.len()];
        }
        self.burden.iter_mut().zip(burden).for_each(|(t, b)| *t += b);
    }

    fn add_score(&mut self, p: f64, band: RiskBand, burden: &[f64], outcome: Option<bool>) {
        let b = match band {
            RiskBand::Low => 0,
            RiskBand::Moderate => 1,
            RiskBand::High => 2,
        };
        self.bands[b] += 1;
        self.risks.push(p);
        self.add_burden(burden);
        match outcome {
            Some(true) => self.cases += 1,
            Some(false) => self.non_cases += 1,
            None => {}
        }
    }

    /// Adds another group's risks and burdens (the total row's statistics; its counts come from
    /// the protected table's margins).
    fn merge(&mut self, other: &Tally) {
        self.risks.extend(&other.risks);
        self.add_burden(&other.burden);
        self.scenario_risk += other.scenario_risk;
    }
}

/// Scores `input` (CSV or Parquet) with `pkg` and summarises it by `options.by`, a chunk at a
/// time (see [`summarise_source`]); the whole table passes the identifier guard first.
pub fn summarise(pkg: &ModelPackage, input: &Path, options: &PopulationOptions) -> Result<Summary, PopulationError> {
    options.disclosure.validate()?;
    let chunks = Chunks::open(input, crate::chunks::DEFAULT_ROWS)?;
    summarise_source(pkg, &chunks, options)
}

/// Summarises any [`crate::chunks::Source`] (a table, or a MEDS dataset's people at a
/// prediction time) in two passes over its chunks, so memory holds a chunk and the groups'
/// tallies, not the register. The first pass checks, before any row is scored, every grouping
/// (present, numeric where cut, not the key, not so fine that groups would be people), the
/// outcome column and the model's input columns; the second scores and tallies. The scores are
/// audited only when the summary is published ([`Summary::publish`]).
pub fn summarise_source(
    pkg: &ModelPackage,
    chunks: &dyn Source,
    options: &PopulationOptions,
) -> Result<Summary, PopulationError> {
    options.disclosure.validate()?;
    if options.by.is_empty() {
        return Err(PopulationError::NoGrouping);
    }
    let rows = chunks.rows();
    if rows == 0 {
        return Err(PopulationError::Empty);
    }
    let changes: Vec<(usize, Adjust<'_>)> = options.scenario.iter().map(|c| c.check(pkg)).collect::<Result<_, _>>()?;

    let mut distinct: Vec<std::collections::HashSet<Label>> = vec![Default::default(); options.by.len()];
    let mut combinations: std::collections::HashSet<Vec<Label>> = Default::default();
    for index in 0..chunks.len() {
        let chunk = chunks.read(index)?;
        let groups = group_labels(&chunk.df, options)?;
        if let Some(column) = &options.outcome {
            outcome_column(&chunk.df, column, chunk.first_row)?;
        }
        scoring_columns(&chunk.df, pkg, options.key_column.as_deref())?;
        for labels in groups {
            for ((seen, label), g) in distinct.iter_mut().zip(&labels).zip(&options.by) {
                if seen.insert(label.clone()) && seen.len() > MAX_GROUPS {
                    return Err(PopulationError::Grouping {
                        column: g.column.clone(),
                        reason: format!(
                            "has more than {MAX_GROUPS} distinct values: group by something coarser, or cut a number into bands (column=cut,cut)"
                        ),
                    });
                }
            }
            combinations.insert(labels);
        }
    }
    // Crossed, the groupings must still leave groups of several people on average: finer, they
    // would list people one by one (in bands whose counts are suppressed, but listed).
    let most = (rows / (options.disclosure.suppress_up_to as usize + 1)).max(1);
    if combinations.len() > most {
        let names: Vec<&str> = options.by.iter().map(|g| g.column.as_str()).collect();
        return Err(PopulationError::Grouping {
            column: names.join("` by `"),
            reason: format!(
                "make {} groups of {rows} rows, more than one per {} people: group by something coarser",
                combinations.len(),
                options.disclosure.suppress_up_to + 1
            ),
        });
    }
    drop(combinations);

    // Groups sort by band order (then by name), with `(missing)` last.
    let mut tallies: BTreeMap<Vec<Label>, Tally> = BTreeMap::new();
    let mut audited = options.audit_rows.then(Vec::new);
    let (mut scored_rows, mut not_scored) = (0, 0);
    let mut distribution = vec![0u64; DISTRIBUTION_BINS];
    let key_name = options.key_column.as_deref().unwrap_or("key");
    for index in 0..chunks.len() {
        let chunk = chunks.read(index)?;
        let groups = group_labels(&chunk.df, options)?;
        let outcome = options.outcome.as_deref().map(|c| outcome_column(&chunk.df, c, chunk.first_row)).transpose()?;
        let (columns, keys) = scoring_columns(&chunk.df, pkg, options.key_column.as_deref())?;
        let scenario = (!changes.is_empty()).then(|| {
            score_each(
                pkg,
                &columns,
                keys.as_deref(),
                key_name,
                |values| {
                    for &(i, adjust) in &changes {
                        values[i] = adjust.apply(values[i]);
                    }
                },
                |_, _, _, score| score.probability,
            )
        });
        let scored = score_each(
            pkg,
            &columns,
            keys.as_deref(),
            key_name,
            |_| {},
            |_, key, _, score| {
                // The factors share the difference between this risk and the baseline risk in
                // proportion to their log-odds contributions, so a row's burdens add up to it exactly.
                let (p, p0) = (score.probability, pkg.scorer.baseline_probability(score));
                let gap = score.margin - score.base_value;
                let scale = if gap.abs() > 1e-12 { (p - p0) / gap } else { p * (1.0 - p) };
                let burden: Vec<f64> = score.factors.iter().map(|c| c * scale).collect();
                (key.map(str::to_string), p, score.band, burden)
            },
        );
        for ((r, result), label) in scored.into_iter().enumerate().zip(groups) {
            let tally = tallies.entry(label).or_default();
            match result {
                Err(_) => {
                    tally.not_scored += 1;
                    not_scored += 1;
                }
                Ok((key, p, band, burden)) => {
                    tally.add_score(p, band, &burden, outcome.as_ref().and_then(|o| o[r]));
                    distribution[((p * DISTRIBUTION_BINS as f64) as usize).min(DISTRIBUTION_BINS - 1)] += 1;
                    scored_rows += 1;
                    if let Some(audited) = &mut audited {
                        audited.push((key, p, band.as_str()));
                    }
                    if let Some(scenario) = &scenario {
                        // Checked changes leave a scorable row scorable; a row that is not would
                        // be a scenario built from dropped inputs, so it stops the summary.
                        let p = scenario[r].as_ref().map_err(|e| PopulationError::Scenario {
                            feature: e.field.clone(),
                            reason: format!(
                                "row {} could not be scored under the scenario: {}",
                                chunk.first_row + e.row,
                                e.reason
                            ),
                        })?;
                        tally.scenario_risk += p;
                    }
                }
            }
        }
    }
    let rule = &options.disclosure;
    let labels: Vec<Vec<String>> = tallies.keys().map(|l| l.iter().map(|(_, name)| name.clone()).collect()).collect();
    let tallies: Vec<Tally> = tallies.into_values().collect();
    // People per band and not scored, by group: the counts whose totals are the group's people.
    let people = rule
        .protect(&tallies.iter().map(|t| t.bands.iter().copied().chain([t.not_scored]).collect()).collect::<Vec<_>>());
    // Cases and non-cases, with the groups whose people are suppressed suppressed here too.
    let hidden: Vec<bool> = people.row_totals.iter().map(Option::is_none).collect();
    let observed = rule.protect_with(&tallies.iter().map(|t| vec![t.cases, t.non_cases]).collect::<Vec<_>>(), &hidden);

    let has_outcome = options.outcome.is_some();
    let has_scenario = !changes.is_empty();
    let mut all = Tally::default();
    let mut rows_out = Vec::with_capacity(labels.len() + 1);
    for (i, (label, t)) in labels.into_iter().zip(&tallies).enumerate() {
        all.merge(t);
        rows_out.push(published(
            label,
            people.row_totals[i],
            &people.cells[i],
            observed.cells[i][0],
            t,
            has_outcome,
            has_scenario,
        ));
    }
    let everyone = vec![ALL.to_string(); options.by.len()];
    let observed_all = observed.column_totals[0];
    rows_out.push(published(
        everyone,
        people.total,
        &people.column_totals,
        observed_all,
        &all,
        has_outcome,
        has_scenario,
    ));

    Ok(Summary {
        model: pkg.manifest.name.clone(),
        version: pkg.manifest.version.clone(),
        outcome: pkg.manifest.task.outcome.clone(),
        groupings: options.by.iter().map(|g| g.column.clone()).collect(),
        factors: pkg.scorer.factors().names.clone(),
        groups: rows_out,
        not_scored,
        rule: rule.describe(),
        has_outcome,
        scenario: options.scenario.iter().map(Change::describe).collect(),
        distribution: rule.protect(&[distribution]).cells.swap_remove(0),
        audited,
        scored: scored_rows,
        started: chunks.opened(),
        input_sha256: chunks.sha256().to_string(),
        rows,
    })
}

/// A group's figures as published: its statistics only where its count of people is, expected
/// cases in whole cases and burdens to [`BURDEN_DECIMALS`] (finer, they would give back the
/// group's exact count: expected cases over mean risk).
fn published(
    group: Vec<String>,
    people: Option<u64>,
    cells: &[Option<u64>],
    observed: Option<u64>,
    t: &Tally,
    has_outcome: bool,
    has_scenario: bool,
) -> GroupSummary {
    let shown = people.is_some() && !t.risks.is_empty();
    let scale = 10f64.powi(BURDEN_DECIMALS);
    GroupSummary {
        group,
        people,
        bands: [cells[0], cells[1], cells[2]],
        not_scored: cells[3],
        expected_cases: shown.then(|| t.risks.iter().sum::<f64>().round()),
        expected_interval: shown.then(|| poisson_binomial_interval(&t.risks)),
        observed_cases: observed.filter(|_| has_outcome),
        burden: shown.then(|| t.burden.iter().map(|b| (b / t.risks.len() as f64 * scale).round() / scale).collect()),
        scenario_cases: (shown && has_scenario).then_some(t.scenario_risk.round()),
    }
}

/// A row's group in one grouping: its place in sort order and its name.
type Label = (usize, String);

/// Each row's group: its value of each grouping (banded where cut), `(missing)` when absent.
/// Refuses an unknown column, the key, and a cut column that is not numeric (how fine the groups
/// are is checked over the whole register, by the caller).
fn group_labels(df: &DataFrame, options: &PopulationOptions) -> Result<Vec<Vec<Label>>, PopulationError> {
    let mut labels = vec![Vec::with_capacity(options.by.len()); df.height()];
    for g in &options.by {
        let bad = |reason: String| PopulationError::Grouping { column: g.column.clone(), reason };
        if Some(&g.column) == options.key_column.as_ref() {
            return Err(bad("is the patient key: summaries never group by person".into()));
        }
        let column = df.column(&g.column).map_err(|_| bad("absent from the input".into()))?;
        let missing = || (usize::MAX, MISSING.to_string());
        let values: Vec<Label> = if g.cuts.is_empty() {
            text_column(df, &g.column)?.into_iter().map(|v| v.map_or_else(missing, |v| (0, v))).collect()
        } else {
            let numbers = column
                .as_materialized_series()
                .cast(&DataType::Float64)
                .ok()
                .filter(|_| column.dtype().is_primitive_numeric())
                .ok_or_else(|| bad("cut points need a numeric column".into()))?;
            let ca = numbers.f64().map_err(|e| bad(e.to_string()))?;
            ca.iter().map(|x| x.filter(|x| !x.is_nan()).map_or_else(missing, |x| g.band(x))).collect()
        };
        for (label, v) in labels.iter_mut().zip(values) {
            label.push(v);
        }
    }
    Ok(labels)
}

/// The outcome column as booleans; a value that is not 1 / 0 / true / false refuses it, naming
/// the row, never the value.
fn outcome_column(df: &DataFrame, column: &str, first_row: usize) -> Result<Vec<Option<bool>>, PopulationError> {
    let values = text_column(df, column)
        .map_err(|_| PopulationError::Outcome { column: column.into(), reason: "absent from the input".into() })?;
    values
        .iter()
        .enumerate()
        .map(|(r, v)| match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some("1" | "1.0" | "true" | "True" | "TRUE") => Ok(Some(true)),
            Some("0" | "0.0" | "false" | "False" | "FALSE") => Ok(Some(false)),
            Some(_) => Err(PopulationError::Outcome {
                column: column.into(),
                reason: format!("row {}: expected 1 or 0 (or true / false)", first_row + r + 1),
            }),
        })
        .collect()
}

/// The 95% interval of a sum of independent Bernoulli outcomes with these risks: the 2.5% and
/// 97.5% quantiles of the Poisson-binomial distribution, exact up to [`EXACT_UP_TO`] people,
/// else from its normal approximation with continuity correction.
pub fn poisson_binomial_interval(risks: &[f64]) -> (u64, u64) {
    if risks.len() <= EXACT_UP_TO {
        let pmf = poisson_binomial_pmf(risks);
        let quantile = |q: f64| {
            let mut cdf = 0.0;
            pmf.iter()
                .position(|&p| {
                    cdf += p;
                    cdf >= q - 1e-12
                })
                .unwrap_or(risks.len()) as u64
        };
        (quantile(0.025), quantile(0.975))
    } else {
        let mean: f64 = risks.iter().sum();
        let sd = risks.iter().map(|p| p * (1.0 - p)).sum::<f64>().sqrt();
        let z = 1.959_963_984_540_054;
        let lower = (mean - z * sd - 0.5).ceil().max(0.0) as u64;
        let upper = ((mean + z * sd + 0.5).floor() as u64).min(risks.len() as u64);
        (lower, upper)
    }
}

/// P(exactly k cases), k = 0..=n, by adding one person at a time.
fn poisson_binomial_pmf(risks: &[f64]) -> Vec<f64> {
    let mut pmf = vec![0.0; risks.len() + 1];
    pmf[0] = 1.0;
    for (n, &p) in risks.iter().enumerate() {
        for k in (1..=n + 1).rev() {
            pmf[k] = pmf[k] * (1.0 - p) + pmf[k - 1] * p;
        }
        pmf[0] *= 1.0 - p;
    }
    pmf
}

impl Summary {
    /// The summary as a table: one row per group and a last row for everyone.
    pub fn to_frame(&self) -> PolarsResult<DataFrame> {
        let g = &self.groups;
        let mut cols: Vec<Column> = Vec::new();
        for (i, name) in self.groupings.iter().enumerate() {
            cols.push(Column::new(name.into(), g.iter().map(|s| s.group[i].as_str()).collect::<Vec<_>>()));
        }
        cols.push(Column::new("people".into(), g.iter().map(|s| s.people).collect::<Vec<_>>()));
        for (b, band) in BANDS.iter().enumerate() {
            let name = format!("people_{}_risk", band.as_str());
            cols.push(Column::new(name.into(), g.iter().map(|s| s.bands[b]).collect::<Vec<_>>()));
        }
        cols.push(Column::new("not_scored".into(), g.iter().map(|s| s.not_scored).collect::<Vec<_>>()));
        cols.push(Column::new("expected_cases".into(), g.iter().map(|s| s.expected_cases).collect::<Vec<_>>()));
        cols.push(Column::new(
            "cases_lower_95".into(),
            g.iter().map(|s| s.expected_interval.map(|i| i.0)).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "cases_upper_95".into(),
            g.iter().map(|s| s.expected_interval.map(|i| i.1)).collect::<Vec<_>>(),
        ));
        if self.has_outcome {
            cols.push(Column::new("observed_cases".into(), g.iter().map(|s| s.observed_cases).collect::<Vec<_>>()));
        }
        if !self.scenario.is_empty() {
            let after: Vec<Option<f64>> = g.iter().map(|s| s.scenario_cases).collect();
            let change: Vec<Option<f64>> = g.iter().map(|s| Some(s.scenario_cases? - s.expected_cases?)).collect();
            cols.push(Column::new("expected_cases_scenario".into(), after));
            cols.push(Column::new("scenario_change_in_expected_cases".into(), change));
        }
        for (f, factor) in self.factors.iter().enumerate() {
            let values: Vec<Option<f64>> = g.iter().map(|s| s.burden.as_ref().map(|b| b[f])).collect();
            cols.push(Column::new(format!("burden: {factor}").into(), values));
        }
        DataFrame::new(g.len(), cols)
    }

    /// Publishes the summary: writes `<output>.parquet`, `<output>.csv` (suppressed counts as
    /// `*`), `<output>.json` (the model, the groupings, the total row's protected counts, the
    /// risk distribution, the disclosure rule) and the report `<output>.html` beside their final names, records the run in `audit` (caller
    /// `population`: the register's and the Parquet summary's SHA-256, rows scored and not), and
    /// each scored row too with `PopulationOptions::audit_rows`, and only then renames the four into place.
    pub fn publish(&self, output: &Path, pkg: &ModelPackage, audit: &AuditLog) -> Result<(), PopulationError> {
        let fail = |e: anyhow::Error| PopulationError::Write(e.to_string());
        let named = |ext: &str| {
            let name = output.file_name().map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
            output.with_file_name(format!("{name}.{ext}"))
        };
        let mut frame = self.to_frame().map_err(|e| fail(e.into()))?;
        let parquet = Staged::write(&named("parquet"), |f| {
            ParquetWriter::new(f).finish(&mut frame).map(drop).map_err(anyhow::Error::from)
        })
        .map_err(fail)?;
        let csv = Staged::write(&named("csv"), |f| {
            CsvWriter::new(f).with_null_value("*".into()).finish(&mut frame).map_err(anyhow::Error::from)
        })
        .map_err(fail)?;
        let total = self.groups.last().expect("the total row");
        let about = serde_json::json!({
            "model": self.model,
            "model_version": self.version,
            "grouped_by": self.groupings,
            "register_read": self.started.format("%Y-%m-%d %H:%M UTC").to_string(),
            "people": total.people,
            "not_scored": total.not_scored,
            "disclosure_control": self.rule,
            "suppressed": "*: suppressed, or nothing to show (no one scored in the group)",
            "expected_cases": "sum of the scored people's risks, in whole cases; lower and upper: the 2.5% and 97.5% quantiles of the number of cases (Poisson-binomial)",
            "risk_distribution": {
                "bins": (0..DISTRIBUTION_BINS).map(|i| format!("{}-{}%", i * 10, (i + 1) * 10)).collect::<Vec<_>>(),
                "people": self.distribution,
            },
            "scenario": self.scenario,
            "scenario_meaning": "expected cases had the scenario's inputs been so, as the model predicts: a model-based association, not the effect of an intervention",
            "burden": "each clinical factor's mean share of the difference between a person's risk and the model's baseline risk, in proportion to its log-odds contribution: a model-based association, not a causal effect",
        });
        let json = Staged::write(&named("json"), |f| {
            use std::io::Write;
            f.write_all(serde_json::to_string_pretty(&about)?.as_bytes()).map_err(anyhow::Error::from)
        })
        .map_err(fail)?;
        let report = Staged::write(&named("html"), |f| {
            use std::io::Write;
            f.write_all(crate::report::render(self).as_bytes()).map_err(anyhow::Error::from)
        })
        .map_err(fail)?;
        if let Some(audited) = &self.audited {
            let scores = audited.iter().map(|(key, p, band)| (key.as_deref(), *p, *band));
            audit_scores(audit, pkg, "population", scores)?;
        }
        let run = BatchRun {
            started: self.started,
            input_sha256: self.input_sha256.clone(),
            output_sha256: parquet.sha256().map_err(fail)?,
            rows: self.rows as u64,
            scored: self.scored as u64,
            refused: self.not_scored as u64,
        };
        audit.record_run("population", &self.model, &self.version, run)?;
        for staged in [parquet, csv, json, report] {
            staged.commit().map_err(fail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distribution of the number of cases by enumerating every combination of outcomes.
    fn brute_force_pmf(risks: &[f64]) -> Vec<f64> {
        let mut pmf = vec![0.0; risks.len() + 1];
        for outcomes in 0u32..(1 << risks.len()) {
            let p: f64 =
                risks.iter().enumerate().map(|(i, &p)| if outcomes >> i & 1 == 1 { p } else { 1.0 - p }).product();
            pmf[outcomes.count_ones() as usize] += p;
        }
        pmf
    }

    #[test]
    fn poisson_binomial_equals_enumeration_and_its_approximation_the_exact_quantiles() {
        let risks = [0.02, 0.9, 0.35, 0.5, 0.11, 0.77, 0.05, 0.6, 0.43, 0.99, 0.01, 0.28, 0.5, 0.66];
        for (a, b) in poisson_binomial_pmf(&risks).iter().zip(brute_force_pmf(&risks)) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
        // Just past the exact range, the approximation lands within one case of the quantiles.
        let many: Vec<f64> = (0..EXACT_UP_TO + 1).map(|i| ((i * 7919) % 1000) as f64 / 4000.0).collect();
        let pmf = poisson_binomial_pmf(&many);
        let mut cdf = 0.0;
        let cum: Vec<f64> = pmf
            .iter()
            .map(|p| {
                cdf += p;
                cdf
            })
            .collect();
        let exact = (
            cum.iter().position(|&c| c >= 0.025).unwrap() as u64,
            cum.iter().position(|&c| c >= 0.975).unwrap() as u64,
        );
        let approx = poisson_binomial_interval(&many);
        assert!(exact.0.abs_diff(approx.0) <= 1 && exact.1.abs_diff(approx.1) <= 1, "{exact:?} vs {approx:?}");
    }

    #[test]
    fn groupings_are_parsed_and_checked() {
        let g: Grouping = "age=65,80".parse().unwrap();
        let names = [40.0, 65.0, 90.0].map(|x| g.band(x).1);
        assert_eq!(names, ["under 65", "65 to under 80", "80 and over"]);
        assert!("age=80,65".parse::<Grouping>().unwrap_err().to_string().contains("rise"));
        assert!("age=sixty".parse::<Grouping>().unwrap_err().to_string().starts_with("--by `age`"));
    }
}
