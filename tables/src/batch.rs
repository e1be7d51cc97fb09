//! Batch scoring for planners: a CSV or Parquet table in, one Parquet row per scored patient out
//! (probability, band, top clinical factors), and every refused row reported with its row number,
//! field and reason, while the rest are scored.

use crate::table::{feature_columns, read_table, row_values, text_column};
use carecast_audit::{AuditLog, AuditRecord};
use carecast_models::explain::Ranking;
use carecast_models::{ModelPackage, Workspace, deid};
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
    let features = &pkg.scorer.preprocessor().features;
    let specs: Vec<_> = features.iter().map(|f| f.spec.clone()).collect();
    let columns = feature_columns(&df, &specs)?;
    let keys = key_column.map(|k| text_column(&df, k)).transpose()?;
    let key_name = key_column.unwrap_or("key");

    let factors = pkg.scorer.factors();
    // Chunks of rows, each scored through the model together (its block paths), in parallel.
    let starts: Vec<usize> = (0..df.height()).step_by(CHUNK).collect();
    let results: Vec<Result<Scored, RowError>> = starts
        .into_par_iter()
        .map_init(Workspace::default, |ws, start| {
            let rows = start..(start + CHUNK).min(df.height());
            let read: Vec<Result<(Option<String>, Vec<_>), RowError>> = rows
                .clone()
                .map(|r| {
                    let fail = |field: &str, reason: &str| RowError {
                        row: r + 1,
                        field: field.to_string(),
                        reason: reason.to_string(),
                    };
                    let key = keys.as_ref().and_then(|k| k[r].clone());
                    if keys.is_some() {
                        match key.as_deref() {
                            None => return Err(fail(key_name, "key missing")),
                            Some(k) => deid::check_patient_key(k).map_err(|reason| fail(key_name, reason))?,
                        }
                    }
                    let values = row_values(&columns, r).map_err(|e| fail(&e.field, &e.reason))?;
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
                    let explained = pkg.scorer.explain(values, &score, Ranking { features: 0, factors: top });
                    let warnings = explained
                        .warnings
                        .iter()
                        .map(|w| format!("{}: {}", w.feature, w.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let top = explained.factors.into_iter().map(|f| (f.name, f.contribution, f.reason)).collect();
                    Ok(Scored {
                        row: r + 1,
                        key: key.clone(),
                        probability: score.probability,
                        margin: score.margin,
                        band: score.band.as_str(),
                        additivity_error: score.additivity_error,
                        top,
                        warnings,
                    })
                })
                .collect::<Vec<_>>()
        })
        .flatten()
        .collect();
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

    let records: Vec<AuditRecord<'_>> = scored
        .iter()
        .map(|s| AuditRecord {
            time: chrono::Utc::now(),
            caller: "batch",
            patient_key: s.key.as_deref().unwrap_or(""),
            model: &m.name,
            model_version: &m.version,
            probability: s.probability,
            risk_band: s.band,
        })
        .collect();
    audit.record_all(&records)?;

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

/// A file written in full and synced under a temporary name beside its final path; renamed into
/// place by [`Staged::commit`], removed if dropped uncommitted.
struct Staged {
    temp: std::path::PathBuf,
    path: std::path::PathBuf,
    committed: bool,
}

impl Staged {
    fn write(path: &Path, write: impl FnOnce(&mut std::fs::File) -> anyhow::Result<()>) -> anyhow::Result<Self> {
        let name = path.file_name().ok_or_else(|| anyhow::anyhow!("{}: not a file path", path.display()))?;
        let temp = path.with_file_name(format!(".{}.{}.partial", name.to_string_lossy(), std::process::id()));
        let staged = Self { temp, path: path.to_path_buf(), committed: false };
        let mut file = std::fs::File::create(&staged.temp).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        write(&mut file)
            .and_then(|()| file.sync_all().map_err(anyhow::Error::from))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(staged)
    }

    fn commit(mut self) -> anyhow::Result<()> {
        std::fs::rename(&self.temp, &self.path).map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
