//! Batch scoring for planners: a CSV or Parquet table of any size in, a chunk at a time, one
//! Parquet row per scored patient out (probability, band, top clinical factors), and every
//! refused row reported with its row number, field and reason, while the rest are scored.

use crate::chunks::{Chunks, Source};
use crate::staged::{Parts, Staged};
use crate::table::{FeatureColumn, feature_columns, row_values, text_column};
use carecast_audit::{AuditLog, AuditRecord, BatchRun};
use carecast_models::explain::Ranking;
use carecast_models::{ModelPackage, Score, Value, Workspace, deid};
use indicatif::ProgressBar;
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
    /// Chunks an interrupted run had completed, continued rather than scored again (`--resume`).
    pub resumed: usize,
    pub chunks: usize,
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
/// any output naming them is released (with `--audit-rows`; a run is otherwise recorded once).
pub(crate) fn audit_scores<'a>(
    audit: &AuditLog,
    pkg: &'a ModelPackage,
    caller: &'a str,
    scores: impl Iterator<Item = (Option<&'a str>, f64, &'a str)>,
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
    base_value: f64,
    /// Every feature's, in feature order, with [`BatchOptions::contributions`]; else empty.
    contributions: Vec<f64>,
}

/// How a batch run reads, scores and records a table.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// A column of pseudonymous patient keys, checked on every row and copied to the output.
    pub key_column: Option<String>,
    /// Clinical factors per row, largest first.
    pub top: usize,
    /// Rows read, scored and written at a time: memory grows with this, not with the table.
    pub rows_per_chunk: usize,
    /// Continue an interrupted run of the same output from its last complete chunk.
    pub resume: bool,
    /// Also commit one audit record per scored row (the run itself is always recorded, once).
    pub audit_rows: bool,
    /// Also write the base value and every feature's exact contribution (`contribution_<feature>`,
    /// log-odds): with them each row's margin is their sum, as a SHAP explanation reads it.
    pub contributions: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            key_column: None,
            top: 5,
            rows_per_chunk: crate::chunks::DEFAULT_ROWS,
            resume: false,
            audit_rows: false,
            contributions: false,
        }
    }
}

/// Scores every row of `input` with `pkg` a chunk at a time, so memory is bounded by
/// `options.rows_per_chunk` whatever the table's size: each chunk's scores and refusals are kept
/// as parts beside `output` as it completes (so `options.resume` continues an interrupted run),
/// and only when every chunk is done are they joined into `output` (Parquet) and, when any row
/// was refused, `errors_path` (CSV). The run is audited once (caller `batch`: the input's and
/// output's SHA-256 and the row counts), and each score too with `options.audit_rows`, before
/// either file appears under its name. `progress` is advanced by the rows done.
pub fn score_table(
    pkg: &ModelPackage,
    input: &Path,
    output: &Path,
    errors_path: &Path,
    options: &BatchOptions,
    audit: &AuditLog,
    progress: &ProgressBar,
) -> anyhow::Result<BatchReport> {
    let chunks = Chunks::open(input, options.rows_per_chunk)?;
    score_source(pkg, &chunks, output, errors_path, options, audit, progress)
}

/// [`score_table`] over any [`Source`]: a MEDS dataset's people at a prediction time, say.
pub fn score_source(
    pkg: &ModelPackage,
    chunks: &dyn Source,
    output: &Path,
    errors_path: &Path,
    options: &BatchOptions,
    audit: &AuditLog,
    progress: &ProgressBar,
) -> anyhow::Result<BatchReport> {
    progress.set_length(chunks.rows() as u64);
    let m = &pkg.manifest;
    let run = serde_json::json!({
        "input_sha256": chunks.sha256(),
        "model": m.name,
        "model_version": m.version,
        "key_column": options.key_column,
        "top": options.top,
        "contributions": options.contributions,
        "rows_per_chunk": options.rows_per_chunk,
    });
    let parts = Parts::open(output, &run, options.resume)?;
    let (done, todo): (Vec<usize>, Vec<usize>) = (0..chunks.len()).partition(|&i| parts.is_done(i));
    progress.inc(done.iter().map(|&i| chunks.rows_in(i) as u64).sum());
    // A table refused (identifiers, a column missing) cannot be continued: it must be fixed at
    // source, which makes it another input. Its parts go; a write that failed (a full disk)
    // keeps them, to be continued with `resume`.
    if let Err(refused) = pipeline(pkg, chunks, &parts, &todo, options, progress)? {
        parts.remove()?;
        return Err(refused);
    }

    // The outputs are joined beside their final paths and renamed into place only once the run
    // is audited: a full disk or a missing folder leaves no half-written Parquet, no audit
    // records for scores nobody received, and no error file from an earlier run.
    let mut scored_rows = 0;
    let staged_output = Staged::write(output, |f| {
        let empty = scores_frame(pkg, &[], options, 0)?;
        let mut writer = ParquetWriter::new(f).batched(empty.schema())?;
        for index in 0..chunks.len() {
            scored_rows += parts.append_scored(index, &mut writer)?;
        }
        writer.finish()?;
        Ok(())
    })?;
    let mut errors = Vec::new();
    for index in 0..chunks.len() {
        errors.extend(refusals(&parts.refused(index)?)?);
    }
    let staged_errors = if errors.is_empty() {
        None
    } else {
        let mut df = refused_frame(&errors)?;
        Some(Staged::write(errors_path, |f| CsvWriter::new(f).finish(&mut df).map_err(anyhow::Error::from))?)
    };

    if options.audit_rows {
        for index in 0..chunks.len() {
            let part = parts.scored(index)?;
            let keys = match &options.key_column {
                Some(k) => part.column(k)?.str()?.iter().map(|k| k.map(str::to_string)).collect(),
                None => vec![None; part.height()],
            };
            let probability = part.column("probability")?.f64()?.clone();
            let bands = part.column("risk_band")?.str()?.clone();
            let scores = keys
                .iter()
                .zip(probability.iter())
                .zip(bands.iter())
                .map(|((key, p), band)| (key.as_deref(), p.unwrap_or(f64::NAN), band.unwrap_or("")));
            audit_scores(audit, pkg, "batch", scores)?;
        }
    }
    let rows = chunks.rows();
    audit.record_run(
        "batch",
        &m.name,
        &m.version,
        BatchRun {
            started: chunks.opened(),
            input_sha256: chunks.sha256().to_string(),
            output_sha256: staged_output.sha256()?,
            rows: rows as u64,
            scored: scored_rows as u64,
            refused: errors.len() as u64,
        },
    )?;

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
    parts.remove()?;
    Ok(BatchReport { rows, scored: scored_rows, errors, resumed: done.len(), chunks: chunks.len() })
}

/// Reads, scores and writes the chunks `todo` as a pipeline: one thread reads the next chunk and
/// another writes the last one's part while the scoring pool scores this one, so reading and
/// writing (each on one core) overlap the scoring instead of leaving the pool idle. Memory
/// holds at most four chunks: one read ahead, one being scored, one queued and one being
/// written. `Ok(Err(_))`: the input was refused (nothing written for it is kept); `Err(_)`: a
/// part could not be written.
fn pipeline(
    pkg: &ModelPackage,
    chunks: &dyn Source,
    parts: &Parts,
    todo: &[usize],
    options: &BatchOptions,
    progress: &ProgressBar,
) -> anyhow::Result<anyhow::Result<()>> {
    std::thread::scope(|scope| {
        let (read_tx, read_rx) = std::sync::mpsc::sync_channel(1);
        let (write_tx, write_rx) = std::sync::mpsc::sync_channel::<(usize, DataFrame, DataFrame)>(1);
        scope.spawn(move || {
            for &index in todo {
                if read_tx.send((index, chunks.read(index))).is_err() {
                    break;
                }
            }
        });
        let writer = scope.spawn(move || -> anyhow::Result<()> {
            for (index, mut scored, mut refused) in write_rx {
                parts.write(index, &mut scored, &mut refused)?;
                progress.inc(chunks.rows_in(index) as u64);
            }
            Ok(())
        });
        let mut outcome = Ok(());
        for (index, chunk) in read_rx {
            let scored = chunk.map_err(anyhow::Error::from).and_then(|c| score_frame(pkg, &c.df, c.first_row, options));
            match scored.and_then(|(scored, refused)| Ok((scored, refused_frame(&refused)?))) {
                // A closed channel means the writer failed: its error is returned below.
                Ok((scored, refused)) => {
                    if write_tx.send((index, scored, refused)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        drop(write_tx);
        writer.join().map_err(|_| anyhow::anyhow!("the part writer panicked"))??;
        Ok(outcome)
    })
}

/// Where an interrupted run of `output` keeps its complete chunks, when one left any.
pub fn interrupted(output: &Path) -> Option<std::path::PathBuf> {
    let dir = Parts::dir(output);
    dir.exists().then_some(dir)
}

/// Scores every row of `df` (an in-memory table, or one chunk of a larger one whose first row is
/// `first_row` of the whole, 0-based) into the output's columns, and names each refused row's
/// field and reason, rows numbered in the whole table from 1. The one scoring of a table behind
/// `carecast score`, Python and Spark.
pub fn score_frame(
    pkg: &ModelPackage,
    df: &DataFrame,
    first_row: usize,
    options: &BatchOptions,
) -> anyhow::Result<(DataFrame, Vec<RowError>)> {
    let (columns, keys) = scoring_columns(df, pkg, options.key_column.as_deref())?;
    let key_name = options.key_column.as_deref().unwrap_or("key");
    let results = score_each(
        pkg,
        &columns,
        keys.as_deref(),
        key_name,
        |_| {},
        |r, key, values, score| {
            let explained = pkg.scorer.explain(values, score, Ranking { features: 0, factors: options.top });
            let warnings = explained
                .warnings
                .iter()
                .map(|w| format!("{}: {}", w.feature, w.message))
                .collect::<Vec<_>>()
                .join("; ");
            Scored {
                row: first_row + r + 1,
                key: key.map(str::to_string),
                probability: score.probability,
                margin: score.margin,
                band: score.band.as_str(),
                additivity_error: score.additivity_error,
                top: explained.factors.into_iter().map(|f| (f.name, f.contribution, f.reason)).collect(),
                warnings,
                base_value: score.base_value,
                contributions: if options.contributions { score.contributions.clone() } else { Vec::new() },
            }
        },
    );
    let mut scored = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(s) => scored.push(s),
            Err(e) => errors.push(RowError { row: first_row + e.row, ..e }),
        }
    }
    Ok((scores_frame(pkg, &scored, options, scored.len())?, errors))
}

/// The output's columns for `scored` (`n` rows).
fn scores_frame(pkg: &ModelPackage, scored: &[Scored], options: &BatchOptions, n: usize) -> PolarsResult<DataFrame> {
    let m = &pkg.manifest;
    let mut cols: Vec<Column> =
        vec![Column::new("row".into(), scored.iter().map(|s| s.row as u64).collect::<Vec<_>>())];
    if let Some(key_name) = &options.key_column {
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
    for k in 0..options.top.min(pkg.scorer.factors().names.len()) {
        let names: Vec<Option<&str>> = scored.iter().map(|s| s.top.get(k).map(|t| t.0.as_str())).collect();
        let values: Vec<Option<f64>> = scored.iter().map(|s| s.top.get(k).map(|t| t.1)).collect();
        let words: Vec<Option<&str>> = scored.iter().map(|s| s.top.get(k).map(|t| t.2.as_str())).collect();
        cols.push(Column::new(format!("factor_{}", k + 1).into(), names));
        cols.push(Column::new(format!("factor_{}_contribution", k + 1).into(), values));
        cols.push(Column::new(format!("factor_{}_explanation", k + 1).into(), words));
    }
    cols.push(Column::new("warnings".into(), scored.iter().map(|s| s.warnings.as_str()).collect::<Vec<_>>()));
    if options.contributions {
        cols.push(Column::new("base_value".into(), scored.iter().map(|s| s.base_value).collect::<Vec<_>>()));
        for (i, feature) in pkg.scorer.preprocessor().features.iter().enumerate() {
            let values: Vec<f64> = scored.iter().map(|s| s.contributions[i]).collect();
            cols.push(Column::new(format!("contribution_{}", feature.spec.name).into(), values));
        }
    }
    DataFrame::new(n, cols)
}

/// Refused rows as a table: row, field, reason.
fn refused_frame(errors: &[RowError]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        errors.len(),
        vec![
            Column::new("row".into(), errors.iter().map(|e| e.row as u64).collect::<Vec<_>>()),
            Column::new("field".into(), errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>()),
            Column::new("reason".into(), errors.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>()),
        ],
    )
}

/// The refused rows a part kept.
fn refusals(df: &DataFrame) -> PolarsResult<Vec<RowError>> {
    let rows = df.column("row")?.u64()?;
    let fields = df.column("field")?.str()?;
    let reasons = df.column("reason")?.str()?;
    Ok(rows
        .iter()
        .zip(fields.iter())
        .zip(reasons.iter())
        .map(|((row, field), reason)| RowError {
            row: row.unwrap_or_default() as usize,
            field: field.unwrap_or_default().into(),
            reason: reason.unwrap_or_default().into(),
        })
        .collect())
}
