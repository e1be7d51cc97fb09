//! MEDS datasets (Medical Event Data Standard): `data/**/*.parquet` with `subject_id` (int64),
//! `time` (timestamp, null for static facts), `code` (string) and `numeric_value` (float32), plus
//! `metadata/codes.parquet`, `metadata/subject_splits.parquet` and `metadata/dataset.json`.

use super::events::{EventStore, EventStoreBuilder, IngestReport};
use carecast_models::features::extract::STATIC;
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every `.parquet` file under `dir`, recursively (MEDS shards may be nested).
pub(crate) fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            parquet_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

fn column<'a>(df: &'a DataFrame, file: &Path, name: &str) -> anyhow::Result<&'a Column> {
    df.column(name).map_err(|_| anyhow::anyhow!("{}: no column `{name}` (MEDS requires it)", file.display()))
}

fn cast(col: &Column, file: &Path, dtype: &DataType) -> anyhow::Result<Series> {
    col.as_materialized_series()
        .cast(dtype)
        .map_err(|e| anyhow::anyhow!("{}: column `{}` cannot be read as {dtype}: {e}", file.display(), col.name()))
}

/// Reads a MEDS dataset into an event store, with each subject's split (if the dataset has splits).
pub fn read_meds(root: &Path) -> anyhow::Result<(EventStore, BTreeMap<i64, String>, IngestReport)> {
    let mut files = Vec::new();
    parquet_files(&root.join("data"), &mut files)
        .map_err(|e| anyhow::anyhow!("{}: {e}", root.join("data").display()))?;
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: no parquet files under data/", root.display());
    let mut builder = EventStoreBuilder::default();
    let mut report = IngestReport::default();
    for file in &files {
        let df = ParquetReader::new(std::fs::File::open(file)?)
            .finish()
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let subject = cast(column(&df, file, "subject_id")?, file, &DataType::Int64)?;
        let time = cast(column(&df, file, "time")?, file, &DataType::Datetime(TimeUnit::Microseconds, None))?;
        let time = time.cast(&DataType::Int64)?;
        let code = cast(column(&df, file, "code")?, file, &DataType::String)?;
        let value = cast(column(&df, file, "numeric_value")?, file, &DataType::Float32)?;
        let rows = subject.i64()?.iter().zip(time.i64()?.iter()).zip(code.str()?.iter()).zip(value.f32()?.iter());
        for (((s, t), c), v) in rows {
            report.rows_read += 1;
            match (s, c) {
                (None, _) => report.drop_row("subject_id is null"),
                (_, None) => report.drop_row("code is null"),
                (Some(s), Some(c)) => {
                    builder.push(s, t, c, v);
                    report.events += 1;
                }
            }
        }
    }
    let mut splits = BTreeMap::new();
    let split_file = root.join("metadata/subject_splits.parquet");
    if split_file.exists() {
        let df = ParquetReader::new(std::fs::File::open(&split_file)?).finish()?;
        let s = cast(column(&df, &split_file, "subject_id")?, &split_file, &DataType::Int64)?;
        let p = cast(column(&df, &split_file, "split")?, &split_file, &DataType::String)?;
        for (s, p) in s.i64()?.iter().zip(p.str()?.iter()) {
            if let (Some(s), Some(p)) = (s, p) {
                splits.insert(s, p.to_string());
            }
        }
    }
    let store = builder.build();
    let identifiers = carecast_tables::identifiers::scan_codes(&store.vocabulary);
    if !identifiers.is_empty() {
        let kinds: Vec<String> = identifiers.iter().map(|(_, k)| format!("{k:?}")).collect();
        anyhow::bail!(
            "{}: refused: Carecast takes de-identified records only: {} code(s) carry values that look like direct identifiers ({})",
            root.display(),
            identifiers.len(),
            kinds.join(", ")
        );
    }
    Ok((store, splits, report))
}

/// Writes an event store as a MEDS dataset (one data shard) with its codes and splits.
pub fn write_meds(
    store: &EventStore,
    splits: &BTreeMap<i64, String>,
    root: &Path,
    dataset_name: &str,
) -> anyhow::Result<()> {
    write_shard(store, root, "0")?;
    write_metadata(&store.vocabulary, splits, root, dataset_name)
}

/// A MEDS timestamp column (microseconds, no time zone) from microseconds since the epoch.
pub fn timestamp_column(name: &str, micros: Vec<Option<i64>>) -> PolarsResult<Column> {
    Ok(Series::new(name.into(), micros).cast(&DataType::Datetime(TimeUnit::Microseconds, None))?.into())
}

/// Writes one data shard, `data/<shard>.parquet`; a dataset too large for memory is written a
/// shard of subjects at a time.
pub fn write_shard(store: &EventStore, root: &Path, shard: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("data"))?;
    let n = store.events.len();
    let mut subject = Vec::with_capacity(n);
    for i in 0..store.n_patients() {
        subject.extend(std::iter::repeat_n(store.subjects[i], store.patient(i).len()));
    }
    let time: Vec<Option<i64>> = store.events.iter().map(|e| (e.time != STATIC).then_some(e.time)).collect();
    let code: Vec<&str> = store.events.iter().map(|e| store.code(e.code)).collect();
    let value: Vec<Option<f32>> = store.events.iter().map(|e| (!e.value.is_nan()).then_some(e.value)).collect();
    let time = timestamp_column("time", time)?;
    let mut data = DataFrame::new(
        n,
        vec![
            Column::new("subject_id".into(), subject),
            time,
            Column::new("code".into(), code),
            Column::new("numeric_value".into(), value),
        ],
    )?;
    ParquetWriter::new(std::fs::File::create(root.join(format!("data/{shard}.parquet")))?).finish(&mut data)?;
    Ok(())
}

/// Writes `metadata/`: the codes, the subjects' splits and `dataset.json`.
pub fn write_metadata(
    vocabulary: &[String],
    splits: &BTreeMap<i64, String>,
    root: &Path,
    dataset_name: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("metadata"))?;
    let mut codes = DataFrame::new(
        vocabulary.len(),
        vec![
            Column::new("code".into(), vocabulary.to_vec()),
            Column::new("description".into(), vec![None::<&str>; vocabulary.len()]),
        ],
    )?;
    ParquetWriter::new(std::fs::File::create(root.join("metadata/codes.parquet"))?).finish(&mut codes)?;

    let mut split_df = DataFrame::new(
        splits.len(),
        vec![
            Column::new("subject_id".into(), splits.keys().copied().collect::<Vec<i64>>()),
            Column::new("split".into(), splits.values().map(String::as_str).collect::<Vec<_>>()),
        ],
    )?;
    ParquetWriter::new(std::fs::File::create(root.join("metadata/subject_splits.parquet"))?).finish(&mut split_df)?;
    let meta = serde_json::json!({ "dataset_name": dataset_name, "dataset_version": "1", "etl_name": "carecast", "etl_version": env!("CARGO_PKG_VERSION"), "meds_version": "0.3.3" });
    std::fs::write(root.join("metadata/dataset.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}
