//! Batch scoring for planners: a CSV or Parquet table in, one Parquet row per scored patient out
//! (probability, band, top clinical factors), and every refused row reported with its row number,
//! field and reason, while the rest are scored.

use crate::staged::Staged;
use crate::table::{FeatureColumn, feature_columns, read_table, row_values, text_column};
use carecast_audit::{AuditLog, AuditRecord};
use carecast_models::explain::Ranking;
use carecast_models::{ModelPackage, Score, Value, Workspace, deid};
use polars::prelude::*;
use rayon::prelude::*;
use std::path::Path;

/// Rows scored through the model together.
const CHUNK: usize = 256;

/// A row that was not scored.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// 1-based data row (the header is not counted).
    pub row: usize,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct BatchReport {
    pub rows: usize,
    pub scored: usize,
    pub errors: Vec<RowError>,
}

/// A key column's text, one entry per row (missing as `None`).
type Keys = Vec<Option<String>>;

/// What [`score_each`] reads of a table: the model's feature columns, and the key column's text
/// when one is named.
pub(crate) fn scoring_columns(
    df: &DataFrame,
    pkg: &ModelPackage,
    key_column: Option<&str>,
) -> Result<(Vec<FeatureColumn>, Option<Keys>), crate::TableError> {
    let specs: Vec<_> = pkg.scorer.preprocessor().features.iter().map(|f| f.spec.clone()).collect();
    let columns = feature_columns(df, &specs)?;
    let keys = key_column.map(|k| text_column(df, k)).transpose()?;
    Ok((columns, keys))
}

/// A row read for scoring: its key, if the table has one, and its values in feature order.
type Keyed<'a> = (Option<&'a str>, Vec<Value<'a>>);

/// Scores every row of the feature columns in chunks through the model's block paths, in
/// parallel, checking each row's pseudonymous key when a key column is given; `adjust` may change
/// a row's values before it is scored (a planner's scenario), and `keep` turns a row's score into
/// what the caller keeps (0-based row, key, values, score). Rows that cannot be scored come back
/// as errors naming the field, in row order with the rest.
pub(crate) fn score_each<'c, T: Send>(
    pkg: &ModelPackage,
    columns: &'c [FeatureColumn],
    keys: Option<&'c [Option<String>]>,
    key_name: &str,
    adjust: impl Fn(&mut [Value<'c>]) + Sync,
    keep: impl Fn(usize, Option<&str>, &[Value<'c>], &Score) -> T + Sync,
) -> Vec<Result<T, RowError>> {
    let height = columns.first().map_or(0, FeatureColumn::len);
    let starts: Vec<usize> = (0..height).step_by(CHUNK).collect();
    starts
        .into_par_iter()
        .map_init(Workspace::default, |ws, start| {
            let rows = start..(start + CHUNK).min(height);
            let read: Vec<Result<Keyed<'c>, RowError>> = rows
                .clone()
                .map(|r| {
                    let fail = |field: &str, reason: &str| RowError {
                        row: r + 1,
                        field: field.to_string(),
                        reason: reason.to_string(),
                    };
                    let key = keys.and_then(|k| k[r].as_deref());
                    if keys.is_some() {
                        match key {
                            None => return Err(fail(key_name, "key missing")),
                            Some(k) => deid::check_patient_key(k).map_err(|reason| fail(key_name, reason))?,
                        }
                    }
                    let mut values = row_values(columns, r).map_err(|e| fail(&e.field, &e.reason))?;
                    adjust(&mut values);
                    Ok((key, values))
                })
                .collect();
            let valid: Vec<&[_]> = read.iter().filter_map(|r| r.as_ref().ok()).map(|(_, v)| v.as_slice()).collect();
            let mut scores = pkg.scorer.score_rows(&valid, ws).into_iter();
            rows.zip(read.iter())
                .map(|(r, read)| {
                    let (key, values) = read.as_ref().map_err(Clone::clone)?;
                    let score = scores.next().expect("one score per valid row");
                    let score = score.map_err(|e| RowError { row: r + 1, field: e.field, reason: e.reason })?;
                    Ok(keep(r, *key, values, &score))
                })
                .collect::<Vec<_>>()
        })
        .flatten()
        .collect()
}

/// Commits one audit record per score of a table (key, probability, band) by `caller`, before
/// any output naming them is released.
pub(crate) fn audit_scores<'a>(
    audit: &AuditLog,
    pkg: &'a ModelPackage,
    caller: &'a str,
    scores: impl Iterator<Item = (Option<&'a str>, f64, &'static str)>,
) -> Result<(), carecast_audit::AuditError> {
    let m = &pkg.manifest;
    let records: Vec<AuditRecord<'_>> = scores
        .map(|(key, probability, risk_band)| AuditRecord {
            time: chrono::Utc::now(),
            caller,
            patient_key: key.unwrap_or(""),
            model: &m.name,
            model_version: &m.version,
            probability,
            risk_band,
        })
        .collect();
    audit.record_all(&records)
}

struct Scored {
    row: usize,
    key: Option<String>,
    probability: f64,
    margin: f64,
    band: &'static str,
    additivity_error: f64,
    /// (clinical factor, contribution, explanation), largest first.
    top: Vec<(String, f64, String)>,
    warnings: String,
}

/// Scores every row of `input` with `pkg`; writes `output` (Parquet) and, when any row was
/// refused, `errors_path` (CSV). `key_column` names a pseudonymous key copied to the output and audit.
pub fn score_table(
    pkg: &ModelPackage,
    input: &Path,
    output: &Path,
    errors_path: &Path,
    key_column: Option<&str>,
    top: usize,
    audit: &AuditLog,
) -> anyhow::Result<BatchReport> {
    let df = read_table(input)?;
    let (columns, keys) = scoring_columns(&df, pkg, key_column)?;
    let key_name = key_column.unwrap_or("key");

    let factors = pkg.scorer.factors();
    let results = score_each(
        pkg,
        &columns,
        keys.as_deref(),
        key_name,
        |_| {},
        |r, key, values, score| {
            let explained = pkg.scorer.explain(values, score, Ranking { features: 0, factors: top });
            let warnings = explained
                .warnings
                .iter()
                .map(|w| format!("{}: {}", w.feature, w.message))
                .collect::<Vec<_>>()
                .join("; ");
            Scored {
                row: r + 1,
                key: key.map(str::to_string),
                probability: score.probability,
                margin: score.margin,
                band: score.band.as_str(),
                additivity_error: score.additivity_error,
                top: explained.factors.into_iter().map(|f| (f.name, f.contribution, f.reason)).collect(),
                warnings,
            }
        },
    );
    let mut scored = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(s) => scored.push(s),
            Err(e) => errors.push(e),
        }
    }

    // The outputs are written beside their final paths and renamed into place only once the
    // scores are audited: a full disk or a missing folder leaves no half-written Parquet, no
    // audit records for scores nobody received, and no error file from an earlier run.
    let m = &pkg.manifest;
    let n = scored.len();
    let mut cols: Vec<Column> =
        vec![Column::new("row".into(), scored.iter().map(|s| s.row as u64).collect::<Vec<_>>())];
    if keys.is_some() {
        cols.push(Column::new(key_name.into(), scored.iter().map(|s| s.key.clone()).collect::<Vec<_>>()));
    }
    cols.extend([
        Column::new("model".into(), vec![m.name.as_str(); n]),
        Column::new("model_version".into(), vec![m.version.as_str(); n]),
        Column::new("probability".into(), scored.iter().map(|s| s.probability).collect::<Vec<_>>()),
        Column::new("risk_band".into(), scored.iter().map(|s| s.band).collect::<Vec<_>>()),
        Column::new("margin".into(), scored.iter().map(|s| s.margin).collect::<Vec<_>>()),
        Column::new("additivity_error".into(), scored.iter().map(|s| s.additivity_error).collect::<Vec<_>>()),
    ]);
    for k in 0..top.min(factors.names.len()) {
        let names: Vec<Option<&str>> = scored.iter().map(|s| s.top.get(k).map(|t| t.0.as_str())).collect();
        let values: Vec<Option<f64>> = scored.iter().map(|s| s.top.get(k).map(|t| t.1)).collect();
        let words: Vec<Option<&str>> = scored.iter().map(|s| s.top.get(k).map(|t| t.2.as_str())).collect();
        cols.push(Column::new(format!("factor_{}", k + 1).into(), names));
        cols.push(Column::new(format!("factor_{}_contribution", k + 1).into(), values));
        cols.push(Column::new(format!("factor_{}_explanation", k + 1).into(), words));
    }
    cols.push(Column::new("warnings".into(), scored.iter().map(|s| s.warnings.as_str()).collect::<Vec<_>>()));
    let mut out = DataFrame::new(n, cols)?;
    let staged_output =
        Staged::write(output, |f| ParquetWriter::new(f).finish(&mut out).map(drop).map_err(anyhow::Error::from))?;
    let staged_errors = if errors.is_empty() {
        None
    } else {
        let mut err_df = DataFrame::new(
            errors.len(),
            vec![
                Column::new("row".into(), errors.iter().map(|e| e.row as u64).collect::<Vec<_>>()),
                Column::new("field".into(), errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>()),
                Column::new("reason".into(), errors.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>()),
            ],
        )?;
        Some(Staged::write(errors_path, |f| CsvWriter::new(f).finish(&mut err_df).map_err(anyhow::Error::from))?)
    };

    audit_scores(audit, pkg, "batch", scored.iter().map(|s| (s.key.as_deref(), s.probability, s.band)))?;

    staged_output.commit()?;
    match staged_errors {
        Some(staged) => staged.commit()?,
        None => match std::fs::remove_file(errors_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                anyhow::bail!("{}: stale error file not removed: {e}", errors_path.display())
            }
            _ => {}
        },
    }
    Ok(BatchReport { rows: df.height(), scored: n, errors })
}
