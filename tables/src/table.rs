//! Flat tables (CSV or Parquet, one row per patient or per visit) read with polars and turned
//! into typed feature cells. Training and batch scoring both read through here, so a column is
//! interpreted the same way in both.

use carecast_models::{FeatureKind, FeatureSpec, InputError, Value};
use polars::prelude::*;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: refused: Carecast takes de-identified records only:\n  {}", findings.join("\n  "))]
    Identifiers { path: String, findings: Vec<String> },
    #[error("column `{column}`: {reason}")]
    Column { column: String, reason: String },
}

/// Reads a `.csv` (header row; empty cells and `NA` are missing) or `.parquet` file, refusing it
/// when any column looks like direct identifiers (see [`crate::identifiers`]).
pub fn read_table(path: &Path) -> Result<DataFrame, TableError> {
    let df = read_any(path)?;
    refuse_identifiers(path, &crate::identifiers::scan(&df))?;
    Ok(df)
}

/// Refuses the table at `path` when the guard found identifiers in it, naming each column.
pub fn refuse_identifiers(path: &Path, findings: &[crate::identifiers::Finding]) -> Result<(), TableError> {
    if findings.is_empty() {
        return Ok(());
    }
    Err(TableError::Identifiers {
        path: path.display().to_string(),
        findings: findings.iter().map(ToString::to_string).collect(),
    })
}

/// A column of times as microseconds since the Unix epoch (UTC): a date-time or date column, or
/// text in RFC 3339 (`2026-03-01T09:30:00Z`), `2026-03-01 09:30:00` (UTC) or `2026-03-01`
/// (midnight UTC). A missing or unreadable value is `None`.
pub fn time_column(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, TableError> {
    let column = df
        .column(name)
        .map_err(|_| TableError::Column { column: name.into(), reason: "absent from the input".into() })?;
    let fail = |e: PolarsError| TableError::Column { column: name.into(), reason: e.to_string() };
    let series = column.as_materialized_series();
    if series.dtype() == &DataType::String {
        let parse = |t: &str| -> Option<i64> {
            let t = t.trim();
            if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
                return Some(d.timestamp_micros());
            }
            for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
                if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, format) {
                    return Some(d.and_utc().timestamp_micros());
                }
            }
            let day = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
            Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
        };
        return Ok(series.str().map_err(fail)?.iter().map(|v| v.and_then(parse)).collect());
    }
    let micros = series
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .and_then(|s| s.cast(&DataType::Int64))
        .map_err(|e| TableError::Column { column: name.into(), reason: format!("not a date-time column ({e})") })?;
    Ok(micros.i64().map_err(fail)?.iter().collect())
}

fn read_any(path: &Path) -> Result<DataFrame, TableError> {
    let fail = |reason: String| TableError::Read { path: path.display().to_string(), reason };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(None)
            .map_parse_options(|o| o.with_null_values(Some(null_values())))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| {
                let bytes = std::fs::read(path).unwrap_or_default();
                fail(match std::str::from_utf8(&bytes) {
                    Err(bad) => not_utf8(&bytes, bad.valid_up_to(), 0),
                    Ok(_) => e.to_string(),
                })
            }),
        "parquet" | "pq" => {
            let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
            ParquetReader::new(file).finish().map_err(|e| fail(e.to_string()))
        }
        _ => Err(fail("expected a .csv or .parquet file".into())),
    }
}

/// The cells a CSV file leaves missing: empty, or `NA` (as R writes them).
pub(crate) fn null_values() -> NullValues {
    NullValues::AllColumns(vec!["".into(), "NA".into()])
}

/// Where CSV text (header first) stops being UTF-8 at byte `bad`: the data row (1-based, counted
/// from `first_row`) and the column's name, never the bytes.
pub(crate) fn not_utf8(bytes: &[u8], bad: usize, first_row: usize) -> String {
    let line_start = bytes[..bad].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let row = bytes[..line_start].iter().filter(|&&b| b == b'\n').count();
    let column = bytes[line_start..bad].iter().filter(|&&b| b == b',').count();
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let header = String::from_utf8_lossy(&bytes[..header_end]);
    let name = header.trim_end_matches('\r').split(',').nth(column).unwrap_or("?");
    if row == 0 {
        "the header row is not UTF-8 text: save the file as UTF-8".to_string()
    } else {
        format!("row {}, column `{name}`: not UTF-8 text (save the file as UTF-8)", first_row + row)
    }
}

/// One cell of a feature column. Text is interned per column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Missing,
    Number(f64),
    Text(u32),
    Bad(&'static str),
}

/// A feature's column, typed for the feature's kind.
#[derive(Debug, Clone)]
pub struct FeatureColumn {
    name: String,
    cells: Vec<Cell>,
    dictionary: Vec<String>,
}

impl FeatureColumn {
    /// Reads the column for `spec` from `df`: numbers for numeric features (text cells that do
    /// not parse are marked bad), text for categorical ones (numbers are written as text).
    pub fn read(df: &DataFrame, spec: &FeatureSpec) -> Result<Self, TableError> {
        let col_err = |reason: String| TableError::Column { column: spec.name.clone(), reason };
        let column =
            df.column(&spec.name).map_err(|_| col_err("required by the model but absent from the input".into()))?;
        let series = column.as_materialized_series();
        let mut dictionary: Vec<String> = Vec::new();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: &str| -> Cell {
            let next = index.len() as u32;
            let id = *index.entry(s.to_string()).or_insert_with(|| {
                dictionary.push(s.to_string());
                next
            });
            Cell::Text(id)
        };
        let dtype = series.dtype().clone();
        let cells: Vec<Cell> = match (spec.kind, &dtype) {
            (_, DataType::String) => {
                let ca = series.str().map_err(|e| col_err(e.to_string()))?;
                ca.iter()
                    .map(|v| match v.map(str::trim) {
                        None | Some("") => Cell::Missing,
                        Some(s) => match spec.kind {
                            FeatureKind::Numeric => {
                                s.parse::<f64>().map_or(Cell::Bad("expected a number"), Cell::Number)
                            }
                            FeatureKind::Categorical => intern(s),
                        },
                    })
                    .collect()
            }
            (_, dt) if dt.is_primitive_numeric() || dt.is_bool() => {
                let cast = series.cast(&DataType::Float64).map_err(|e| col_err(e.to_string()))?;
                let ca = cast.f64().map_err(|e| col_err(e.to_string()))?;
                ca.iter()
                    .map(|v| match (v, spec.kind) {
                        (None, _) => Cell::Missing,
                        (Some(x), FeatureKind::Numeric) => Cell::Number(x),
                        (Some(x), FeatureKind::Categorical) => {
                            if x.fract() == 0.0 && x.abs() < 1e15 {
                                intern(&format!("{}", x as i64))
                            } else {
                                intern(&x.to_string())
                            }
                        }
                    })
                    .collect()
            }
            // A column with no value at all (a table of a few rows, all unrecorded here).
            (_, DataType::Null) => vec![Cell::Missing; series.len()],
            (_, dt) => return Err(col_err(format!("unsupported column type {dt}"))),
        };
        Ok(Self { name: spec.name.clone(), cells, dictionary })
    }

    /// A numeric column from computed values (NaN = missing), e.g. features extracted from events.
    pub fn from_numbers(name: &str, values: impl IntoIterator<Item = f64>) -> Self {
        let cells = values.into_iter().map(|x| if x.is_nan() { Cell::Missing } else { Cell::Number(x) }).collect();
        Self { name: name.to_string(), cells, dictionary: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The value in row `r`, or why the cell cannot be used.
    pub fn value(&self, r: usize) -> Result<Value<'_>, InputError> {
        match self.cells[r] {
            Cell::Missing => Ok(Value::Missing),
            Cell::Number(x) => Ok(Value::Number(x)),
            Cell::Text(id) => Ok(Value::Text(&self.dictionary[id as usize])),
            Cell::Bad(reason) => Err(InputError::new(&self.name, reason)),
        }
    }
}

/// Reads every feature's column; fails on the first feature the table lacks.
pub fn feature_columns(df: &DataFrame, specs: &[FeatureSpec]) -> Result<Vec<FeatureColumn>, TableError> {
    specs.iter().map(|s| FeatureColumn::read(df, s)).collect()
}

/// Row `r` across the feature columns, in feature order.
pub fn row_values(columns: &[FeatureColumn], r: usize) -> Result<Vec<Value<'_>>, InputError> {
    columns.iter().map(|c| c.value(r)).collect()
}

/// A column as text, one entry per row (missing as `None`): keys, splits and labels.
pub fn text_column(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, TableError> {
    let column = df
        .column(name)
        .map_err(|_| TableError::Column { column: name.into(), reason: "absent from the input".into() })?;
    let cast = column
        .as_materialized_series()
        .cast(&DataType::String)
        .map_err(|e| TableError::Column { column: name.into(), reason: e.to_string() })?;
    let ca = cast.str().map_err(|e| TableError::Column { column: name.into(), reason: e.to_string() })?;
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}
