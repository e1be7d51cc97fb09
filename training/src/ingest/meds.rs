//! MEDS datasets (Medical Event Data Standard): `data/**/*.parquet` with `subject_id` (int64),
//! `time` (timestamp, null for static facts), `code` (string) and `numeric_value` (float32), plus
//! `metadata/codes.parquet`, `metadata/subject_splits.parquet` and `metadata/dataset.json`.

use super::events::{EventStore, EventStoreBuilder, IngestReport};
use carecast_models::ModelPackage;
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

/// A MEDS dataset's data files (`data/**/*.parquet`), in order.
fn data_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    parquet_files(&root.join("data"), &mut files)
        .map_err(|e| anyhow::anyhow!("{}: {e}", root.join("data").display()))?;
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: no parquet files under data/", root.display());
    Ok(files)
}

/// Adds one MEDS data file's events to `builder`, counting what it read and left out.
fn read_file(file: &Path, builder: &mut EventStoreBuilder, report: &mut IngestReport) -> anyhow::Result<()> {
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
    Ok(())
}

/// Refuses a dataset whose codes carry what looks like a direct identifier (`NAME//…`).
fn refuse_identifying_codes<S: AsRef<str>>(root: &Path, vocabulary: &[S]) -> anyhow::Result<()> {
    let identifiers = carecast_tables::identifiers::scan_codes(vocabulary);
    if !identifiers.is_empty() {
        let kinds: Vec<String> = identifiers.iter().map(|(_, k)| format!("{k:?}")).collect();
        anyhow::bail!(
            "{}: refused: Carecast takes de-identified records only: {} code(s) carry values that look like direct identifiers ({})",
            root.display(),
            identifiers.len(),
            kinds.join(", ")
        );
    }
    Ok(())
}

/// Reads a MEDS dataset into an event store, with each subject's split (if the dataset has splits).
pub fn read_meds(root: &Path) -> anyhow::Result<(EventStore, BTreeMap<i64, String>, IngestReport)> {
    let mut builder = EventStoreBuilder::default();
    let mut report = IngestReport::default();
    for file in &data_files(root)? {
        read_file(file, &mut builder, &mut report)?;
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
    refuse_identifying_codes(root, &store.vocabulary)?;
    Ok((store, splits, report))
}

/// A MEDS dataset as batch scoring reads it for an event model: everyone in it at one prediction
/// time, a data file at a time (MEDS keeps each subject's events in one file), each person's
/// features built from their events before that time by the model's own extractor, the one
/// training and CDS Hooks use. Memory holds one file's events, not the dataset's.
pub struct Shards<'a> {
    root: PathBuf,
    files: Vec<PathBuf>,
    /// Subjects in each file, and how many come before it.
    subjects: Vec<usize>,
    before: Vec<usize>,
    inputs: &'a carecast_models::package::EventInputs,
    features: Vec<String>,
    /// Code prefixes whose latest code's rest each person also gets as a column (named by the
    /// prefix), for a planner to group by: `IMD//DECILE_`.
    attributes: Vec<String>,
    at: i64,
    /// Of each file's name and SHA-256, and the prediction time.
    sha256: String,
    opened: chrono::DateTime<chrono::Utc>,
}

impl<'a> Shards<'a> {
    /// Opens the dataset at `root` to score `pkg` (an event model) for everyone at the start of
    /// `at` (UTC). Reads every file's subjects and codes first, so that before anything is scored
    /// it refuses a subject found in two files (their features would be built from half their
    /// events) and codes that carry identifiers. The SHA-256 that names the input in a run's
    /// audit record is of each file's name and SHA-256, and the prediction time. Each of
    /// `attributes` (a code prefix, such as `IMD//DECILE_`) becomes a column of the rest of each
    /// person's latest code with it before `at`; one that no code in the dataset starts with is
    /// refused.
    pub fn open(
        root: &Path,
        pkg: &'a ModelPackage,
        at: chrono::NaiveDate,
        attributes: &[String],
    ) -> anyhow::Result<Self> {
        let opened = chrono::Utc::now();
        let inputs = pkg.events.as_ref().ok_or_else(|| {
            anyhow::anyhow!("model `{}` reads a table, not events: score it with --input TABLE", pkg.manifest.name)
        })?;
        let files = data_files(root)?;
        let (mut subjects, mut before) = (Vec::with_capacity(files.len()), Vec::with_capacity(files.len()));
        let mut seen = std::collections::HashSet::new();
        let mut codes = std::collections::BTreeSet::new();
        let mut identity = String::new();
        for file in &files {
            let name = file.strip_prefix(root).unwrap_or(file).display().to_string();
            let df = ParquetReader::new(std::fs::File::open(file)?)
                .with_columns(Some(vec!["subject_id".into(), "code".into()]))
                .finish()
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let ids = cast(column(&df, file, "subject_id")?, file, &DataType::Int64)?.unique()?;
            before.push(seen.len());
            let mut here = 0;
            for id in ids.i64()?.iter().flatten() {
                anyhow::ensure!(
                    seen.insert(id),
                    "{}: {name} holds a subject also in an earlier data file; MEDS keeps each subject's events in one file, and a person's features from half their events would be wrong",
                    root.display()
                );
                here += 1;
            }
            subjects.push(here);
            let code = cast(column(&df, file, "code")?, file, &DataType::String)?.unique()?;
            codes.extend(code.str()?.iter().flatten().map(str::to_string));
            let sha =
                carecast_models::package::sha256_file(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            identity += &format!("{name}\t{sha}\n");
        }
        refuse_identifying_codes(root, &codes.iter().cloned().collect::<Vec<_>>())?;
        for prefix in attributes {
            anyhow::ensure!(
                codes.iter().any(|c| c.starts_with(prefix.as_str())),
                "`{prefix}`: neither an input of model `{}` nor the start of any code in {} (a coded attribute is named by its code prefix, e.g. IMD//DECILE_)",
                pkg.manifest.name,
                root.display()
            );
        }
        identity += &format!("at\t{at}\n");
        let features = pkg.manifest.features.iter().map(|f| f.name.clone()).collect();
        let at = super::events::date_micros(at);
        let sha256 = carecast_models::package::sha256_hex(identity.as_bytes());
        let attributes = attributes.to_vec();
        Ok(Self { root: root.to_path_buf(), files, subjects, before, inputs, features, attributes, at, sha256, opened })
    }

    /// The features of everyone in data file `index`, keyed by `subject_id`.
    fn features(&self, index: usize) -> anyhow::Result<DataFrame> {
        let mut builder = EventStoreBuilder::default();
        read_file(&self.files[index], &mut builder, &mut IngestReport::default())?;
        let store = builder.build();
        let rows: Vec<Vec<carecast_models::Value<'static>>> =
            (0..store.n_patients()).map(|p| self.inputs.row(&store.vocabulary, store.patient(p), self.at)).collect();
        let mut columns =
            vec![Column::new(SUBJECT.into(), store.subjects.iter().map(ToString::to_string).collect::<Vec<_>>())];
        for (f, name) in self.features.iter().enumerate() {
            let values: Vec<Option<f64>> = rows
                .iter()
                .map(|row| match row[f] {
                    carecast_models::Value::Number(x) => Some(x),
                    _ => None,
                })
                .collect();
            columns.push(Column::new(name.into(), values));
        }
        for prefix in &self.attributes {
            let suffixes = store.suffixes(prefix);
            let values: Vec<Option<&str>> =
                (0..store.n_patients()).map(|p| store.coded_attribute(p, &suffixes, self.at - 1)).collect();
            columns.push(Column::new(prefix.into(), values));
        }
        Ok(DataFrame::new(store.n_patients(), columns)?)
    }
}

/// The groupings of a planner's summary that are not inputs of `pkg`: over a MEDS dataset, each
/// is a coded attribute named by its code prefix ([`Shards::open`]'s `attributes`).
pub fn coded_groupings(pkg: &ModelPackage, by: &[carecast_tables::population::Grouping]) -> Vec<String> {
    let input = |c: &String| pkg.manifest.features.iter().any(|f| &f.name == c);
    by.iter().map(|g| g.column.clone()).filter(|c| !input(c)).collect()
}

/// The key column of a MEDS dataset's scores.
pub const SUBJECT: &str = "subject_id";

impl carecast_tables::chunks::Source for Shards<'_> {
    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn opened(&self) -> chrono::DateTime<chrono::Utc> {
        self.opened
    }

    fn len(&self) -> usize {
        self.files.len()
    }

    fn rows_in(&self, index: usize) -> usize {
        self.subjects[index]
    }

    fn read(&self, index: usize) -> Result<carecast_tables::chunks::Chunk, carecast_tables::TableError> {
        let df = self.features(index).map_err(|e| carecast_tables::TableError::Read {
            path: self.root.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(carecast_tables::chunks::Chunk { first_row: self.before[index], df })
    }
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
