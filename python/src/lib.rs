//! `carecast._carecast`, the Rust half of the `carecast` Python package: the functions the command
//! line calls (load and score a model, train, evaluate, draw a synthetic population, summarise a
//! register), called in process. The Python half (`python/carecast/`) adapts their tables to
//! pandas, polars, pyarrow, `shap` and Spark.

mod arrow;

use anyhow::Context;
use carecast_audit::{AuditLog, BatchRun, Location};
use carecast_models::{ModelPackage, Registry, load_package};
use carecast_tables::batch::{BatchOptions, RowError, score_frame};
use carecast_tables::disclosure::Disclosure;
use carecast_tables::identifiers;
use carecast_tables::population::{Change, Grouping, PopulationOptions, summarise, summarise_source};
use carecast_tables::{TableError, refuse_identifiers};
use carecast_training::cohort::event_training_set;
use carecast_training::dataset::Rows;
use carecast_training::ingest::meds::{SUBJECT, Shards, coded_groupings};
use carecast_training::pipeline::{EvaluationData, evaluate_package, recalibrate_package, train_set};
use carecast_training::{Algorithm, TaskSpec, TrainOptions};
use polars::prelude::*;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

create_exception!(
    _carecast,
    CarecastError,
    PyException,
    "A model, registry, file or audit trail that could not be used."
);
create_exception!(
    _carecast,
    InputError,
    PyValueError,
    "Rows that cannot be scored: `field` names the first one's field, `rows` lists every (row, field, reason)."
);

/// Any failure but refused input, with its whole chain of causes (they name files and fields,
/// never a patient's value).
fn failed(e: impl Into<anyhow::Error>) -> PyErr {
    CarecastError::new_err(format!("{:#}", e.into()))
}

/// A refused row as Python sees it: (row, field, reason).
type Refusal = (usize, String, String);

/// An [`InputError`] carrying `field` (the field at fault) and `rows` (every refused row).
fn input_error(py: Python<'_>, message: String, field: &str, rows: Vec<Refusal>) -> PyErr {
    let err = InputError::new_err(message);
    let value = err.value(py);
    let attached = value.setattr("field", field).and_then(|()| value.setattr("rows", rows));
    attached.err().unwrap_or(err)
}

/// A table refused as a whole (identifiers, a column missing or unreadable): the column in
/// `field` where one is named, and no rows.
fn table_refused(py: Python<'_>, e: &TableError) -> PyErr {
    let field = match e {
        TableError::Column { column, .. } => column.as_str(),
        TableError::Identifiers { .. } | TableError::Read { .. } => "table",
    };
    input_error(py, e.to_string(), field, Vec::new())
}

/// Refused rows, naming the first's field and carrying them all.
fn refused(py: Python<'_>, errors: &[RowError]) -> PyErr {
    let first = &errors[0];
    let more = if errors.len() > 1 { format!(" (and {} more rows refused)", errors.len() - 1) } else { String::new() };
    let rows = errors.iter().map(|e| (e.row, e.field.clone(), e.reason.clone())).collect();
    input_error(py, format!("row {}: `{}`: {}{more}", first.row, first.field, first.reason), &first.field, rows)
}

/// A published model package, loaded and checked, ready to score in this process.
#[pyclass(module = "carecast._carecast", frozen)]
struct Model {
    pkg: Arc<ModelPackage>,
    /// Where each call's scores are audited; opened per call, so that other writers (the command
    /// line, another notebook) can take their turn on a journal between calls.
    audit: Location,
}

#[pymethods]
impl Model {
    #[getter]
    fn name(&self) -> &str {
        &self.pkg.manifest.name
    }

    #[getter]
    fn version(&self) -> &str {
        &self.pkg.manifest.version
    }

    /// The package's folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.pkg.dir.clone()
    }

    /// The input features, in the order of a score's contributions.
    #[getter]
    fn features(&self) -> Vec<String> {
        self.pkg.scorer.preprocessor().features.iter().map(|f| f.spec.name.clone()).collect()
    }

    /// The manifest (`manifest.json`) as JSON text.
    #[getter]
    fn manifest_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.pkg.manifest).map_err(failed)
    }

    /// Scores every row of `table`; see `carecast.Model.score`. Returns the scores and the
    /// refused rows (row, field, reason). Any refused row raises [`InputError`] unless
    /// `keep_refused`; scores are audited (one batch run) only when they are returned.
    #[pyo3(signature = (table, key=None, top=5, contributions=true, keep_refused=false))]
    fn score(
        &self,
        py: Python<'_>,
        table: &Bound<'_, PyAny>,
        key: Option<String>,
        top: usize,
        contributions: bool,
        keep_refused: bool,
    ) -> PyResult<(arrow::ArrowTable, Vec<Refusal>)> {
        let started = chrono::Utc::now();
        let df = arrow::import(table)?;
        let options = BatchOptions { key_column: key, top, contributions, ..Default::default() };
        let pkg = &self.pkg;
        // The identifier guard over every column, as for a file, before anything is scored.
        let guarded = py.detach(|| refuse_identifiers(Path::new("table"), &identifiers::scan(&df)));
        let (mut scores, errors) = guarded
            .map_err(anyhow::Error::from)
            .and_then(|()| py.detach(|| score_frame(pkg, &df, 0, &options)))
            .map_err(|e| match e.downcast::<TableError>() {
                // Identifiers, or a column missing or of the wrong kind: the caller's input.
                Ok(table) => table_refused(py, &table),
                Err(other) => failed(other),
            })?;
        if !errors.is_empty() && !keep_refused {
            return Err(refused(py, &errors));
        }
        // An empty table (a Spark job reading the output's columns) releases no score to record.
        if df.height() > 0 {
            let key = options.key_column.as_deref();
            py.detach(|| self.audit_run(&df, key, &mut scores, errors.len(), started)).map_err(failed)?;
        }
        Ok((scores.into(), errors.into_iter().map(|e| (e.row, e.field, e.reason)).collect()))
    }
}

impl Model {
    /// One batch-run record for a call's scores: the input (the columns read: the features and
    /// the key) and the output by SHA-256, and the counts.
    fn audit_run(
        &self,
        input: &DataFrame,
        key: Option<&str>,
        scores: &mut DataFrame,
        refused: usize,
        started: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        let m = &self.pkg.manifest;
        let read = self.pkg.scorer.preprocessor().features.iter().map(|f| f.spec.name.as_str()).chain(key);
        let run = BatchRun {
            started,
            input_sha256: frame_sha256(&mut input.select(read)?)?,
            output_sha256: frame_sha256(scores)?,
            rows: input.height() as u64,
            scored: scores.height() as u64,
            refused: refused as u64,
        };
        Ok(AuditLog::open_at(&self.audit)?.record_run("python", &m.name, &m.version, run)?)
    }
}

/// The SHA-256 of a table written as CSV: what a Python caller's scores are audited against,
/// where there is no file to hash (so the same rows scored from a file by `carecast score`,
/// which hashes the file's bytes, are recorded under another input hash).
fn frame_sha256(df: &mut DataFrame) -> anyhow::Result<String> {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    CsvWriter::new(&mut hashing).finish(df)?;
    Ok(hex::encode(hashing.0.finalize()))
}

/// Loads `model` (its promoted version, or `version`) from the registry folder `registry`.
#[pyfunction]
#[pyo3(signature = (registry, model, version=None, audit=None))]
fn load(registry: PathBuf, model: &str, version: Option<&str>, audit: Option<&str>) -> PyResult<Model> {
    let pkg = resolve(&registry, model, version)?;
    Ok(Model { pkg: Arc::new(pkg), audit: Location::for_registry(&registry, audit) })
}

/// Loads the package in the folder `path` (a copy shipped to a Spark executor, say), auditing
/// to `audit` (a journal path or a PostgreSQL connection string).
#[pyfunction]
fn load_path(path: PathBuf, audit: &str) -> PyResult<Model> {
    let pkg = load_package(&path).map_err(failed)?;
    Ok(Model { pkg: Arc::new(pkg), audit: Location::parse(audit) })
}

/// Reads a name the library spells in snake case (`gbm`, `elastic_net`, `platt`).
fn named<T: serde::de::DeserializeOwned>(what: &str, name: &str) -> PyResult<T> {
    serde_json::from_value(serde_json::Value::String(name.replace('-', "_")))
        .map_err(|_| PyValueError::new_err(format!("{what}: `{name}` is not one of the names it takes")))
}

/// Trains one model and publishes it: on a flat table (`data`, for a bundled task or a task spec
/// file), or on a MEDS dataset (`meds`, with an event task spec file and its feature spec file
/// `features`); returns its report as JSON text.
#[pyfunction]
#[pyo3(signature = (task, data, meds, features, registry, model, calibration, positive_weight, name=None))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    task: &str,
    data: Option<PathBuf>,
    meds: Option<PathBuf>,
    features: Option<PathBuf>,
    registry: PathBuf,
    model: &str,
    calibration: &str,
    positive_weight: f64,
    name: Option<&str>,
) -> PyResult<String> {
    let options = TrainOptions {
        algorithm: named::<Algorithm>("model", model)?,
        calibration: named("calibration", calibration)?,
        positive_weight,
    };
    options.validate().map_err(|e| PyValueError::new_err(e.to_string()))?;
    let registry = Registry::new(registry);
    py.detach(|| -> anyhow::Result<String> {
        let report = match (data, meds, features) {
            (Some(data), None, None) => {
                let (spec, toml) = TaskSpec::load(task)?;
                carecast_training::train(&spec, &toml, &data, &registry, options, name)?
            }
            (None, Some(meds), Some(features)) => {
                let read = |p: &Path| std::fs::read_to_string(p).with_context(|| p.display().to_string());
                let set = event_training_set(&meds, &read(Path::new(task))?, &read(&features)?, Rows::TaskSplit)?;
                train_set(&set, &registry, options, name)?
            }
            _ => anyhow::bail!("give `data` (a table), or `meds` with `features` (a MEDS dataset)"),
        };
        Ok(serde_json::to_string(&report)?)
    })
    .map_err(failed)
}

/// The evaluation data: a table, or a MEDS dataset.
fn evaluation_data<'a>(data: &'a Option<PathBuf>, meds: &'a Option<PathBuf>) -> PyResult<EvaluationData<'a>> {
    match (data, meds) {
        (Some(d), None) => Ok(EvaluationData::Table(d)),
        (None, Some(m)) => Ok(EvaluationData::Meds(m)),
        _ => Err(PyValueError::new_err("give `data` (a table) or `meds` (a MEDS dataset), not both")),
    }
}

/// Evaluates a published model on `data` or `meds` (its task's test split, or every row);
/// returns the metrics file's JSON text.
#[pyfunction]
#[pyo3(signature = (registry, model, data, meds, version=None, all_rows=false))]
fn evaluate(
    py: Python<'_>,
    registry: PathBuf,
    model: &str,
    data: Option<PathBuf>,
    meds: Option<PathBuf>,
    version: Option<&str>,
    all_rows: bool,
) -> PyResult<String> {
    let pkg = resolve(&registry, model, version)?;
    let source = evaluation_data(&data, &meds)?;
    let rows = if all_rows { Rows::All } else { Rows::TaskSplit };
    py.detach(|| -> anyhow::Result<String> { Ok(serde_json::to_string(&evaluate_package(&pkg, source, rows)?)?) })
        .map_err(failed)
}

/// Recalibrates a model in the large on a new site's `data` or `meds` (every row) and publishes
/// the result, promoted once past its gates on those rows; returns (new version, log-odds shift,
/// its metrics and its promotion, each as JSON text).
#[pyfunction]
#[pyo3(signature = (registry, model, data, meds, version=None))]
fn recalibrate(
    py: Python<'_>,
    registry: PathBuf,
    model: &str,
    data: Option<PathBuf>,
    meds: Option<PathBuf>,
    version: Option<&str>,
) -> PyResult<(String, f64, String, String)> {
    let pkg = resolve(&registry, model, version)?;
    let source = evaluation_data(&data, &meds)?;
    py.detach(|| -> anyhow::Result<_> {
        let r = recalibrate_package(&pkg, source, Rows::All, &Registry::new(&registry))?;
        Ok((r.version, r.shift, serde_json::to_string(&r.metrics)?, serde_json::to_string(&r.promotion)?))
    })
    .map_err(failed)
}

/// A model's package from the registry folder (its promoted version, or `version`).
fn resolve(registry: &Path, model: &str, version: Option<&str>) -> PyResult<ModelPackage> {
    let (_, dir) = Registry::new(registry).resolve(model, version).map_err(failed)?;
    load_package(&dir).map_err(failed)
}

/// Draws a synthetic population into a MEDS dataset; returns (events, dementia onsets,
/// inpatient observations, deteriorations).
#[pyfunction]
fn synth(
    py: Python<'_>,
    output: PathBuf,
    patients: usize,
    seed: u64,
    shard_size: usize,
) -> PyResult<(u64, u64, u64, u64)> {
    py.detach(|| {
        carecast_training::synth::write_population(
            patients,
            seed,
            shard_size,
            &output,
            &indicatif::ProgressBar::hidden(),
        )
    })
    .map_err(failed)
}

/// Summarises the register in the file `input` (or everyone in the MEDS dataset `input` at the
/// date `at`) by `by` (the command line's `--by` forms), publishes the summary and report beside
/// `output` (audited) and returns the summary table.
#[pyfunction]
#[pyo3(signature = (model, input, by, output, at=None, key=None, outcome=None, scenario=vec![], suppress_up_to=None, round_to=None))]
#[allow(clippy::too_many_arguments)]
fn population(
    py: Python<'_>,
    model: &Model,
    input: PathBuf,
    by: Vec<String>,
    output: PathBuf,
    at: Option<&str>,
    key: Option<String>,
    outcome: Option<String>,
    scenario: Vec<String>,
    suppress_up_to: Option<u64>,
    round_to: Option<u64>,
) -> PyResult<arrow::ArrowTable> {
    let parse = |what: &str, text: &str, e: String| PyValueError::new_err(format!("{what} `{text}`: {e}"));
    let by =
        by.iter().map(|b| b.parse::<Grouping>().map_err(|e| parse("by", b, e.to_string()))).collect::<PyResult<_>>()?;
    let scenario = scenario
        .iter()
        .map(|c| c.parse::<Change>().map_err(|e| parse("scenario", c, e.to_string())))
        .collect::<PyResult<_>>()?;
    let default = Disclosure::default();
    let options = PopulationOptions {
        by,
        outcome,
        key_column: key,
        disclosure: Disclosure {
            suppress_up_to: suppress_up_to.unwrap_or(default.suppress_up_to),
            round_to: round_to.unwrap_or(default.round_to),
        },
        scenario,
        audit_rows: false,
    };
    let at = at
        .map(|a| a.parse::<chrono::NaiveDate>())
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("at: a date as YYYY-MM-DD ({e})")))?;
    let frame = py.detach(|| -> anyhow::Result<DataFrame> {
        let summary = match at {
            None => summarise(&model.pkg, &input, &options)?,
            Some(at) => {
                let shards = Shards::open(&input, &model.pkg, at, &coded_groupings(&model.pkg, &options.by))?;
                summarise_source(
                    &model.pkg,
                    &shards,
                    &PopulationOptions { key_column: Some(SUBJECT.into()), ..options },
                )?
            }
        };
        let audit = AuditLog::open_at(&model.audit)?;
        summary.publish(&output, &model.pkg, &audit)?;
        Ok(summary.to_frame()?)
    });
    frame.map(Into::into).map_err(|e| match e.downcast::<carecast_tables::population::PopulationError>() {
        Ok(p) => PyValueError::new_err(p.to_string()),
        Err(other) => failed(other.context(input.display().to_string())),
    })
}

/// Whether `audit` names a PostgreSQL database (one chain that many writers share) rather than
/// a journal file (one writer at a time), read as everywhere else it is given.
#[pyfunction]
fn audit_is_database(audit: &str) -> bool {
    matches!(Location::parse(audit), Location::Postgres(_))
}

/// The gRPC API's descriptors (`proto/carecast/v1/carecast.proto`, compiled when this module
/// was built), from which `carecast.Client` makes its messages and calls.
#[pyfunction]
fn descriptor_set(py: Python<'_>) -> Bound<'_, pyo3::types::PyBytes> {
    pyo3::types::PyBytes::new(py, carecast_proto::v1::FILE_DESCRIPTOR_SET)
}

#[pymodule]
fn _carecast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CarecastError", m.py().get_type::<CarecastError>())?;
    m.add("InputError", m.py().get_type::<InputError>())?;
    m.add_class::<Model>()?;
    m.add_class::<arrow::ArrowTable>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(load_path, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(recalibrate, m)?)?;
    m.add_function(wrap_pyfunction!(synth, m)?)?;
    m.add_function(wrap_pyfunction!(population, m)?)?;
    m.add_function(wrap_pyfunction!(descriptor_set, m)?)?;
    m.add_function(wrap_pyfunction!(audit_is_database, m)?)?;
    Ok(())
}
