//! Population summaries for planners: a whole register scored by the one scoring path and
//! summarised by the groups a planner names (deprivation quintile, age band, sex, locality):
//! people and people per risk band, expected cases with a 95% interval, observed cases where
//! outcomes are given, and each clinical factor's burden. Every count passes disclosure control
//! ([`crate::disclosure`]) and no patient key or row reaches a summary.

use crate::batch::{RowError, audit_scores, score_each};
use crate::disclosure::Disclosure;
use crate::staged::Staged;
use crate::table::{feature_columns, read_table, text_column};
use carecast_audit::AuditLog;
use carecast_models::scorer::sigmoid;
use carecast_models::{ModelPackage, RiskBand};
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

#[derive(Debug, Clone)]
pub struct PopulationOptions {
    pub by: Vec<Grouping>,
    /// A column of observed outcomes (1 / 0, true / false; empty: not known).
    pub outcome: Option<String>,
    /// The register's pseudonymous key, checked on every row and never summarised.
    pub key_column: Option<String>,
    pub disclosure: Disclosure,
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
    #[error("{0}")]
    Write(String),
}

/// One group's published figures (`None`: suppressed).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    /// The group's value of each grouping, or `All` on the total row.
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
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub model: String,
    pub version: String,
    pub groupings: Vec<String>,
    pub factors: Vec<String>,
    pub groups: Vec<GroupSummary>,
    pub rows: usize,
    pub scored: usize,
    /// Rows not scored: reported by row number, field and reason, never summarised silently.
    pub refused: Vec<RowError>,
    pub rule: String,
    pub has_outcome: bool,
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
}

/// Scores `input` with `pkg` and summarises it by `options.by`. Every grouping, the outcome
/// column and the rule are checked before any row is scored.
/// Each score is committed to `audit` (caller `population`) before the summary is returned.
pub fn summarise(
    pkg: &ModelPackage,
    input: &Path,
    options: &PopulationOptions,
    audit: &AuditLog,
) -> Result<Summary, PopulationError> {
    options.disclosure.validate()?;
    let df = read_table(input)?;
    let groups = group_labels(&df, options)?;
    let outcome = options.outcome.as_deref().map(|c| outcome_column(&df, c)).transpose()?;
    let keys = options.key_column.as_deref().map(|k| text_column(&df, k)).transpose()?;
    let specs: Vec<_> = pkg.scorer.preprocessor().features.iter().map(|f| f.spec.clone()).collect();
    let columns = feature_columns(&df, &specs)?;

    let factors = pkg.scorer.factors();
    let key_name = options.key_column.as_deref().unwrap_or("key");
    let scored = score_each(pkg, &columns, keys.as_deref(), key_name, |_, key, _, score| {
        // The factors share the difference between this risk and the baseline risk in proportion
        // to their log-odds contributions, so a row's burdens add up to it exactly.
        let (margin, base) = (score.margin, score.base_value);
        let scale =
            if (margin - base).abs() > 1e-12 { (sigmoid(margin) - sigmoid(base)) / (margin - base) } else { 0.0 };
        let burden: Vec<f64> = score.factors.iter().map(|c| c * scale).collect();
        (key.map(str::to_string), score.probability, score.band, burden)
    });
    let audited =
        scored.iter().filter_map(|s| s.as_ref().ok()).map(|(k, p, band, _)| (k.as_deref(), *p, band.as_str()));
    audit_scores(audit, pkg, "population", audited)?;

    // Groups sort by band order (then by name), with `missing` last.
    let mut tallies: BTreeMap<&[Label], Tally> = BTreeMap::new();
    let mut refused = Vec::new();
    for (r, result) in scored.into_iter().enumerate() {
        let tally = tallies.entry(&groups[r]).or_default();
        match result {
            Err(e) => {
                tally.not_scored += 1;
                refused.push(e);
            }
            Ok((_, p, band, burden)) => {
                tally.bands[BANDS.iter().position(|&b| b == band).expect("three bands")] += 1;
                tally.risks.push(p);
                if tally.burden.is_empty() {
                    tally.burden = vec![0.0; burden.len()];
                }
                tally.burden.iter_mut().zip(&burden).for_each(|(t, b)| *t += b);
                match outcome.as_ref().and_then(|o| o[r]) {
                    Some(true) => tally.cases += 1,
                    Some(false) => tally.non_cases += 1,
                    None => {}
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
    let observed = rule.protect(&tallies.iter().map(|t| vec![t.cases, t.non_cases]).collect::<Vec<_>>());

    let mut all = Tally::default();
    let mut rows_out = Vec::with_capacity(labels.len() + 1);
    for (i, (label, t)) in labels.into_iter().zip(&tallies).enumerate() {
        all.risks.extend(&t.risks);
        if all.burden.is_empty() {
            all.burden = vec![0.0; t.burden.len()];
        }
        all.burden.iter_mut().zip(&t.burden).for_each(|(a, b)| *a += b);
        let cells = &people.cells[i];
        rows_out.push(published(label, people.row_totals[i], cells, &observed.cells[i], t, outcome.is_some()));
    }
    let total_cells = &people.column_totals;
    let observed_total = vec![observed.column_totals[0], observed.column_totals[1]];
    let everyone = vec!["All".to_string(); options.by.len()];
    rows_out.push(published(everyone, people.total, total_cells, &observed_total, &all, outcome.is_some()));

    let scored_n = tallies.iter().map(|t| t.risks.len()).sum();
    Ok(Summary {
        model: pkg.manifest.name.clone(),
        version: pkg.manifest.version.clone(),
        groupings: options.by.iter().map(|g| g.column.clone()).collect(),
        factors: factors.names.clone(),
        groups: rows_out,
        rows: df.height(),
        scored: scored_n,
        refused,
        rule: rule.describe(),
        has_outcome: outcome.is_some(),
    })
}

/// A group's figures as published: its statistics only where its count of people is.
fn published(
    group: Vec<String>,
    people: Option<u64>,
    cells: &[Option<u64>],
    observed: &[Option<u64>],
    t: &Tally,
    has_outcome: bool,
) -> GroupSummary {
    let shown = people.is_some() && !t.risks.is_empty();
    GroupSummary {
        group,
        people,
        bands: [cells[0], cells[1], cells[2]],
        not_scored: cells[3],
        expected_cases: shown.then(|| t.risks.iter().sum()),
        expected_interval: shown.then(|| poisson_binomial_interval(&t.risks)),
        observed_cases: if has_outcome && people.is_some() { observed[0] } else { None },
        burden: shown.then(|| t.burden.iter().map(|b| b / t.risks.len() as f64).collect()),
    }
}

/// A row's group in one grouping: its place in sort order and its name.
type Label = (usize, String);

/// Each row's group: its value of each grouping (banded where cut), `missing` when absent.
/// Refuses an unknown column, a cut column that is not numeric, and a column so fine that it
/// would make groups of single people.
fn group_labels(df: &DataFrame, options: &PopulationOptions) -> Result<Vec<Vec<Label>>, PopulationError> {
    let mut labels = vec![Vec::with_capacity(options.by.len()); df.height()];
    for g in &options.by {
        let bad = |reason: String| PopulationError::Grouping { column: g.column.clone(), reason };
        if Some(&g.column) == options.key_column.as_ref() {
            return Err(bad("is the patient key: summaries never group by person".into()));
        }
        let column = df.column(&g.column).map_err(|_| bad("absent from the input".into()))?;
        let missing = || (usize::MAX, "missing".to_string());
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
            ca.iter().map(|x| x.map_or_else(missing, |x| g.band(x))).collect()
        };
        let distinct: std::collections::HashSet<&Label> = values.iter().collect();
        if distinct.len() > MAX_GROUPS {
            return Err(bad(format!(
                "has {} distinct values (at most {MAX_GROUPS}): group by something coarser, or cut a number into bands (column=cut,cut)",
                distinct.len()
            )));
        }
        for (label, v) in labels.iter_mut().zip(values) {
            label.push(v);
        }
    }
    Ok(labels)
}

/// The outcome column as booleans; a value that is not 1 / 0 / true / false refuses it, naming
/// the row, never the value.
fn outcome_column(df: &DataFrame, column: &str) -> Result<Vec<Option<bool>>, PopulationError> {
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
                reason: format!("row {}: expected 1 or 0 (or true / false)", r + 1),
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
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        cols.push(Column::new(
            "expected_cases".into(),
            g.iter().map(|s| s.expected_cases.map(round1)).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "expected_cases_lower_95".into(),
            g.iter().map(|s| s.expected_interval.map(|i| i.0)).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "expected_cases_upper_95".into(),
            g.iter().map(|s| s.expected_interval.map(|i| i.1)).collect::<Vec<_>>(),
        ));
        if self.has_outcome {
            cols.push(Column::new("observed_cases".into(), g.iter().map(|s| s.observed_cases).collect::<Vec<_>>()));
        }
        for (f, factor) in self.factors.iter().enumerate() {
            let values: Vec<Option<f64>> = g.iter().map(|s| s.burden.as_ref().map(|b| b[f])).collect();
            cols.push(Column::new(format!("burden: {factor}").into(), values));
        }
        DataFrame::new(g.len(), cols)
    }

    /// Writes `<output>.parquet`, `<output>.csv` (suppressed counts as `*`) and `<output>.json`
    /// (the model, the groupings, the rows scored and refused, and the disclosure rule), each
    /// renamed into place only once all three are written.
    pub fn write(&self, output: &Path) -> Result<(), PopulationError> {
        let fail = |e: anyhow::Error| PopulationError::Write(e.to_string());
        let mut frame = self.to_frame().map_err(|e| fail(e.into()))?;
        let parquet = Staged::write(&output.with_extension("parquet"), |f| {
            ParquetWriter::new(f).finish(&mut frame).map(drop).map_err(anyhow::Error::from)
        })
        .map_err(fail)?;
        let csv = Staged::write(&output.with_extension("csv"), |f| {
            CsvWriter::new(f).with_null_value("*".into()).finish(&mut frame).map_err(anyhow::Error::from)
        })
        .map_err(fail)?;
        let about = serde_json::json!({
            "model": self.model,
            "model_version": self.version,
            "grouped_by": self.groupings,
            "rows": self.rows,
            "scored": self.scored,
            "not_scored": self.refused.len(),
            "disclosure_control": self.rule,
            "expected_cases": "sum of the scored people's risks; interval: 2.5% and 97.5% quantiles of the Poisson-binomial distribution",
            "burden": "each clinical factor's mean share of the difference between a person's risk and the model's baseline risk, in proportion to its log-odds contribution: a model-based association, not a causal effect",
        });
        let json = Staged::write(&output.with_extension("json"), |f| {
            use std::io::Write;
            f.write_all(serde_json::to_string_pretty(&about)?.as_bytes()).map_err(anyhow::Error::from)
        })
        .map_err(fail)?;
        for staged in [parquet, csv, json] {
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
