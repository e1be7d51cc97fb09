//! `carecast`: from de-identified records to explained risk scores, in one command.

use anyhow::Context;
use carecast_audit::AuditLog;
use carecast_audit::Location;
use carecast_models::Registry;
use carecast_proto::v1 as pb;
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::batch;
use carecast_tables::{feature_columns, read_table, row_values, text_column};
use carecast_training::fit::calibrate;
use carecast_training::{Algorithm, TaskSpec, TrainOptions, TrainReport, train};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// mimalloc: a scored request makes and frees many small allocations on whichever worker thread
/// runs it, which glibc's allocator serves markedly slower under concurrency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "carecast", version, about = "Explained clinical risk scores: train, evaluate, score and serve.")]
struct Cli {
    /// Model registry directory.
    #[arg(long, global = true, default_value = "registry")]
    registry: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelChoice {
    /// L2-penalised logistic regression.
    Logistic,
    /// L1-penalised logistic regression.
    Lasso,
    /// Logistic regression with half L1, half L2 penalty.
    ElasticNet,
    /// Gradient-boosted trees.
    Gbm,
    /// A multilayer perceptron (burn, CPU).
    Mlp,
    /// A GRU (burn, CPU) over the event sequence: features with a `rank` (event tasks, --meds).
    Gru,
    /// A discrete-time hazard model for censored follow-up (event tasks, --meds).
    Hazard,
    /// Every model above but the GRU and the hazard model.
    All,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain (a running server may go on writing to it): every record present,
    /// linked to the one before and unaltered. Prints the count and the head hash; keep the head
    /// elsewhere to detect records cut off the end later.
    Verify {
        /// A journal file, or a PostgreSQL connection string; default `<registry>/audit.jsonl`.
        #[arg(long, env = "CARECAST_AUDIT")]
        audit: Option<String>,
        /// The server's public signing key (hex, as `audit keygen` prints): every checkpoint must
        /// be signed by it, and at least one must exist.
        #[arg(long)]
        public_key: Option<String>,
        /// The second location's copies of the checkpoints (`serve --audit-checkpoints`): each
        /// must still be in the trail, unchanged.
        #[arg(long, requires = "public_key")]
        checkpoints: Option<PathBuf>,
    },
    /// Make an Ed25519 key for signing the trail's checkpoints: writes the private key (PKCS#8,
    /// readable by its owner only) and prints the public key to verify with.
    Keygen {
        /// Where to write the private key; it must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ImportFormat {
    /// XGBoost's JSON model (`Booster.save_model("model.json")`).
    Xgboost,
    /// LightGBM's text model (`Booster.save_model("model.txt")`).
    Lightgbm,
}

#[derive(Clone, Copy, ValueEnum)]
enum CalibrationChoice {
    None,
    Platt,
    Isotonic,
}

#[derive(Subcommand)]
enum Command {
    /// Train, evaluate on the task's test split, and publish a model package.
    Train {
        /// A bundled task (support2_hospdead, support2_dementia) or a task spec TOML file; with
        /// --meds, an event task spec TOML file.
        #[arg(long)]
        task: String,
        /// The task's data (CSV or Parquet); default: the bundled file the task names.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Train on a MEDS dataset (its held_out split is the test split) instead of a flat table.
        #[arg(long, requires = "features", conflicts_with = "data")]
        meds: Option<PathBuf>,
        /// Feature spec TOML for --meds.
        #[arg(long, requires = "meds")]
        features: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "all")]
        model: ModelChoice,
        /// Calibration fitted on the tuning split (the model is then fitted on the other rows).
        #[arg(long, value_enum, default_value = "none")]
        calibration: CalibrationChoice,
        /// Trees: weight of each positive row relative to a negative one; use with calibration.
        #[arg(long, default_value_t = 1.0)]
        positive_weight: f64,
        /// Package name; default `<task>-<model>`.
        #[arg(long)]
        name: Option<String>,
    },
    /// Import a tree model trained elsewhere (XGBoost JSON or LightGBM text) into a task: its
    /// columns matched to the task's features by name, evaluated on the task's test split, and
    /// published with its model card, to be served like a trained model.
    Import {
        /// The model file.
        #[arg(long)]
        file: PathBuf,
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// A bundled task or a task spec TOML file (outcome, split, risk bands, feature names).
        #[arg(long)]
        task: String,
        /// The task's data (CSV or Parquet); default: the bundled file the task names.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Package name; default `<task>-imported`.
        #[arg(long)]
        name: Option<String>,
    },
    /// Evaluate a published model (TRIPOD+AI report: metrics.json and a model card in Markdown and
    /// HTML): on its task's test split, or with --all-rows on another site's data.
    Evaluate {
        #[arg(long)]
        model: String,
        /// Default: the promoted version.
        #[arg(long)]
        version: Option<String>,
        /// The task's table (flat tasks); default: the bundled file the task names.
        #[arg(long, conflicts_with = "meds")]
        data: Option<PathBuf>,
        /// A MEDS dataset (event tasks).
        #[arg(long)]
        meds: Option<PathBuf>,
        /// Evaluate every row, ignoring the split (external validation on a new site's data).
        #[arg(long)]
        all_rows: bool,
        /// Output directory; default `evaluation/<model>-v<version>`.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Recalibrate a model in the large for a new site: shift its log-odds so that its mean risk
    /// matches the site's observed rate, and publish (and promote) the result as a new version.
    Recalibrate {
        #[arg(long)]
        model: String,
        /// Default: the promoted version.
        #[arg(long)]
        version: Option<String>,
        /// The site's table (flat tasks); every row is used.
        #[arg(long, conflicts_with = "meds", required_unless_present = "meds")]
        data: Option<PathBuf>,
        /// The site's MEDS dataset (event tasks); every labelled row is used.
        #[arg(long)]
        meds: Option<PathBuf>,
    },
    /// Score a CSV or Parquet table into Parquet, with explanations.
    Score {
        #[arg(long)]
        model: String,
        /// Default: the promoted version.
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Where refused rows are reported; default `<output>.errors.csv`.
        #[arg(long)]
        errors: Option<PathBuf>,
        /// Column with a pseudonymous patient key, copied to the output and the audit trail.
        #[arg(long)]
        key_column: Option<String>,
        /// Contributions per row, largest first.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Audit trail: an append-only journal file, or a PostgreSQL connection string
        /// (`postgresql://user:password@host/db`: set CARECAST_AUDIT to keep the password off the
        /// command line); default `<registry>/audit.jsonl`.
        #[arg(long, env = "CARECAST_AUDIT")]
        audit: Option<String>,
    },
    /// The audit trail of scores.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Serve carecast.v1 gRPC (with health and reflection) on one port.
    Serve {
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// Audit trail: an append-only journal file, or a PostgreSQL connection string
        /// (`postgresql://user:password@host/db`: set CARECAST_AUDIT to keep the password off the
        /// command line); default `<registry>/audit.jsonl`.
        #[arg(long, env = "CARECAST_AUDIT")]
        audit: Option<String>,
        /// JWKS file with the keys that sign callers' bearer tokens (RS384 or ES384).
        #[arg(long, requires_all = ["issuer", "audience"], conflicts_with = "insecure_demo")]
        jwks: Option<PathBuf>,
        /// The `iss` tokens must carry.
        #[arg(long, requires = "jwks")]
        issuer: Option<String>,
        /// The `aud` tokens must carry.
        #[arg(long, requires = "jwks")]
        audience: Option<String>,
        /// The key that signs the audit trail's checkpoints (PKCS#8, from `carecast audit
        /// keygen`): without it records could be rewritten, hashes and all, by whoever can write
        /// the trail.
        #[arg(long, env = "CARECAST_AUDIT_SIGNING_KEY")]
        audit_signing_key: Option<PathBuf>,
        /// A second location (another volume, a shipped log) for copies of the signed checkpoints,
        /// against which `audit verify --checkpoints` finds records cut off the end.
        #[arg(long, requires = "audit_signing_key")]
        audit_checkpoints: Option<PathBuf>,
        /// The longest lifetime a bearer token may have, in seconds (from `iat`, and from now to `exp`).
        #[arg(long, requires = "jwks", default_value_t = carecast_serving::auth::DEFAULT_MAX_LIFETIME_SECONDS)]
        max_token_lifetime: i64,
        /// The trust's secret key (a file of at least 32 bytes) that turns EHR patient ids from
        /// CDS Hooks into the audit trail's pseudonyms; the same key always gives the same pseudonym.
        #[arg(long, env = "CARECAST_PSEUDONYM_KEY_FILE", conflicts_with = "insecure_demo")]
        pseudonym_key_file: Option<PathBuf>,
        /// An EHR FHIR server (base URL, https) that CDS Hooks calls without prefetch may be
        /// completed from, with the access token the call carries; repeat for several. Calls
        /// naming any other `fhirServer` are answered 412.
        #[arg(long = "fhir-server", value_name = "URL")]
        fhir_servers: Vec<String>,
        /// Serve without authenticating callers, on loopback only: a local demo, never with real
        /// patients (pseudonyms from a random key that dies with the process).
        #[arg(long)]
        insecure_demo: bool,
        /// TLS: the server's certificate chain (PEM, leaf first). Without TLS the server binds
        /// to loopback only (behind a TLS-terminating proxy).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS: the server's private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Mutual TLS: the CA bundle (PEM) that clinical systems' client certificates must chain
        /// to; clients without one are refused in the handshake.
        #[arg(long, requires = "tls_cert")]
        client_ca: Option<PathBuf>,
    },
    /// Read de-identified records (MEDS, or a flat table with a column mapping), check them, apply
    /// pseudonyms, year-and-month birth dates and the opt-out list, and write a MEDS dataset.
    Ingest {
        /// A MEDS dataset directory, an OMOP CDM directory (with a person table), or a CSV /
        /// Parquet table with --mapping.
        #[arg(long)]
        input: PathBuf,
        /// Column mapping for a flat table: a bundled one (pbc2) or a TOML file.
        #[arg(long)]
        mapping: Option<String>,
        /// Output MEDS dataset directory.
        #[arg(long)]
        output: PathBuf,
        /// File holding the secret pseudonymisation key; without it, subject ids are kept as they are.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// National data opt-out list: source subject ids, one per line.
        #[arg(long)]
        opt_out: Option<PathBuf>,
    },
    /// Write a synthetic population (MEDS, with each patient's true risk in truth.parquet).
    Synth {
        #[arg(long, default_value_t = 50_000)]
        patients: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        output: PathBuf,
        /// Patients per MEDS data shard: bounds memory for populations of millions.
        #[arg(long, default_value_t = 250_000)]
        shard_size: usize,
    },
    /// Label a MEDS dataset with an event task spec (TOML), writing MEDS labels (Parquet).
    Labels {
        #[arg(long)]
        meds: PathBuf,
        #[arg(long)]
        task: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// List the registry's models and versions.
    Models,
    /// Make a version the one served by default; running servers pick it up without a restart
    /// (and keep serving the previous one if it fails to load).
    Promote {
        #[arg(long)]
        model: String,
        #[arg(long)]
        version: String,
    },
    /// Go back to the version promoted before the current one.
    Rollback {
        #[arg(long)]
        model: String,
    },
    /// The whole path on the bundled data: train, batch-score, serve, and score one patient over gRPC.
    Demo,
}

/// The bundled copy of a task's data file: `data/` under the working directory, else the checkout's.
fn bundled_data(file: &str) -> anyhow::Result<PathBuf> {
    let candidates =
        [PathBuf::from("data").join(file), Path::new(env!("CARGO_MANIFEST_DIR")).join("../data").join(file)];
    candidates.into_iter().find(|p| p.exists()).with_context(|| format!("bundled data `{file}` not found; pass --data"))
}

fn print_report(r: &TrainReport) {
    let m = &r.test;
    println!(
        "{} v{}: test n={} prevalence {:.3} | AUROC {:.3} (95% CI {:.3}-{:.3}) AUPRC {:.3} Brier {:.3} | calibration slope {:.2} intercept {:+.2} | max additivity error {:.1e}",
        r.name,
        r.version,
        m.n,
        m.prevalence,
        m.auroc,
        m.auroc_ci_lower,
        m.auroc_ci_upper,
        m.auprc,
        m.brier,
        m.calibration_slope,
        m.calibration_intercept,
        r.max_additivity_error
    );
    for (reason, count) in &r.excluded_rows {
        println!("  excluded {count} row(s): {reason}");
    }
}

/// The fits `--model`, `--calibration` and `--positive-weight` ask for; a custom `--name` fits only one.
fn fits(
    model: ModelChoice,
    calibration: CalibrationChoice,
    positive_weight: f64,
    name: Option<&str>,
) -> anyhow::Result<Vec<TrainOptions>> {
    let chosen = match model {
        ModelChoice::Logistic => vec![Algorithm::Logistic],
        ModelChoice::Lasso => vec![Algorithm::Lasso],
        ModelChoice::ElasticNet => vec![Algorithm::ElasticNet],
        ModelChoice::Gbm => vec![Algorithm::Gbm],
        ModelChoice::Mlp => vec![Algorithm::Mlp],
        ModelChoice::Gru => vec![Algorithm::Gru],
        ModelChoice::Hazard => vec![Algorithm::Hazard],
        ModelChoice::All => {
            vec![Algorithm::Logistic, Algorithm::Lasso, Algorithm::ElasticNet, Algorithm::Gbm, Algorithm::Mlp]
        }
    };
    anyhow::ensure!(name.is_none() || chosen.len() == 1, "--name needs a single --model");
    anyhow::ensure!(
        positive_weight.is_finite() && positive_weight > 0.0,
        "--positive-weight must be a positive number"
    );
    let calibration = match calibration {
        CalibrationChoice::None => calibrate::Method::None,
        CalibrationChoice::Platt => calibrate::Method::Platt,
        CalibrationChoice::Isotonic => calibrate::Method::Isotonic,
    };
    Ok(chosen.into_iter().map(|algorithm| TrainOptions { algorithm, calibration, positive_weight }).collect())
}

fn train_command(
    registry: &Registry,
    task: &str,
    data: Option<PathBuf>,
    fits: &[TrainOptions],
    name: Option<&str>,
) -> anyhow::Result<Vec<TrainReport>> {
    let (spec, toml) = TaskSpec::load(task)?;
    let data = match data {
        Some(d) => d,
        None => bundled_data(&spec.data)?,
    };
    fits.iter()
        .map(|&options| {
            let report = train(&spec, &toml, &data, registry, options, name)?;
            print_report(&report);
            Ok(report)
        })
        .collect()
}

fn audit_location(registry: &Registry, audit: Option<String>) -> Location {
    audit.map_or_else(|| Location::File(registry.root().join("audit.jsonl")), |a| Location::parse(&a))
}

fn print_score(r: &pb::ScoreResponse) {
    let band =
        pb::RiskBand::try_from(r.risk_band).map_or("unknown", |b| b.as_str_name().trim_start_matches("RISK_BAND_"));
    println!(
        "{} v{} for patient {}: probability {:.3} ({band})",
        r.model, r.model_version, r.patient_key, r.probability
    );
    println!("  starts from the average patient at {:.3} log-odds; clinical factors (log-odds):", r.base_value);
    for f in &r.factors {
        println!("  {:+.3}  {}", f.contribution, f.explanation);
    }
    println!("  additivity error {:.1e}", r.additivity_error);
    for w in &r.warnings {
        println!("  warning: {}: {}", w.feature, w.message);
    }
}

/// A gRPC request for one row of a table, every feature named.
fn request_for_row(
    model: &str,
    features: &[carecast_models::FeatureSpec],
    path: &Path,
    row: usize,
    key_column: &str,
) -> anyhow::Result<pb::ScoreRequest> {
    let df = read_table(path)?;
    let columns = feature_columns(&df, features)?;
    let key = text_column(&df, key_column)?[row].clone().context("row has no key")?;
    let values = row_values(&columns, row)?;
    let features = features.iter().zip(values).map(|(f, v)| (f.name.clone(), pb::FeatureValue::from(v))).collect();
    Ok(pb::ScoreRequest {
        model: model.to_string(),
        version: String::new(),
        patient_key: format!("support2-{key}"),
        features,
        max_contributions: 5,
        ..Default::default()
    })
}

async fn demo(registry: &Registry) -> anyhow::Result<()> {
    println!("== 1. Train on the bundled SUPPORT data (support2_hospdead: in-hospital death)");
    let fits: Vec<TrainOptions> = [Algorithm::Logistic, Algorithm::Gbm].into_iter().map(TrainOptions::from).collect();
    let reports = train_command(registry, "support2_hospdead", None, &fits, None)?;
    let gbm = reports.last().expect("two models trained");

    println!("\n== 2. Batch-score every patient in the file with {}", gbm.name);
    let data = bundled_data("support2.csv")?;
    let store = ModelStore::new(registry.clone());
    let pkg = store.get(&gbm.name, None)?;
    std::fs::create_dir_all("out")?;
    let audit = AuditLog::open_at(&audit_location(registry, None))?;
    let output = PathBuf::from("out/support2_hospdead_scores.parquet");
    let report = batch::score_table(
        &pkg,
        &data,
        &output,
        Path::new("out/support2_hospdead_scores.errors.csv"),
        Some("sno"),
        3,
        &audit,
    )?;
    println!(
        "scored {} of {} rows into {} ({} refused)",
        report.scored,
        report.rows,
        output.display(),
        report.errors.len()
    );

    println!("\n== 3. Serve over gRPC and score one patient");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState::new(store, audit, None, carecast_serving::ephemeral_pseudonym_key())); // the demo's own loopback server
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state, None, async {
        stopped.await.ok();
    }));
    let mut client = pb::scoring_service_client::ScoringServiceClient::connect(format!("http://{addr}")).await?;
    let features: Vec<_> = pkg.manifest.features.clone();
    let request = request_for_row(&gbm.name, &features, &data, 1, "sno")?;
    let response = client.score(request).await?.into_inner();
    print_score(&response);
    stop.send(()).ok();
    server.await??;
    let trail = audit_location(registry, None);
    let verified = carecast_audit::verify(trail.clone())?;
    println!("\nAudit trail {trail}: {} records, hash chain intact", verified.records);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let registry = Registry::new(&cli.registry);
    match cli.command {
        Command::Train {
            task,
            meds: Some(meds),
            features: Some(features),
            model,
            calibration,
            positive_weight,
            name,
            ..
        } => {
            let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("{}", p.display()));
            let set = carecast_training::cohort::event_training_set(
                &meds,
                &read(Path::new(&task))?,
                &read(&features)?,
                carecast_training::dataset::Rows::TaskSplit,
            )?;
            for options in fits(model, calibration, positive_weight, name.as_deref())? {
                print_report(&carecast_training::pipeline::train_set(&set, &registry, options, name.as_deref())?);
            }
        }
        Command::Train { task, data, model, calibration, positive_weight, name, .. } => {
            train_command(
                &registry,
                &task,
                data,
                &fits(model, calibration, positive_weight, name.as_deref())?,
                name.as_deref(),
            )?;
        }
        Command::Import { file, format, task, data, name } => {
            use carecast_training::import::{Format, import_model};
            let (spec, _) = TaskSpec::load(&task)?;
            let data = match data {
                Some(d) => d,
                None => bundled_data(&spec.data)?,
            };
            let format = match format {
                ImportFormat::Xgboost => Format::XgboostJson,
                ImportFormat::Lightgbm => Format::LightgbmText,
            };
            let r = import_model(&spec, &data, &registry, &file, format, name.as_deref())?;
            println!(
                "{} v{}: {} trees imported; test AUROC {:.3}; largest additivity error {:.1e}",
                r.name, r.version, r.trees, r.auroc, r.max_additivity_error
            );
        }
        Command::Evaluate { model, version, data, meds, all_rows, output } => {
            use carecast_training::{card, pipeline};
            let pkg = ModelStore::new(registry.clone()).get(&model, version.as_deref())?;
            let rows = if all_rows {
                carecast_training::dataset::Rows::All
            } else {
                carecast_training::dataset::Rows::TaskSplit
            };
            let table;
            let source = match &meds {
                Some(m) => pipeline::EvaluationData::Meds(m),
                None => {
                    table = match data {
                        Some(d) => d,
                        None => bundled_data(
                            &TaskSpec::from_toml(&std::fs::read_to_string(pkg.dir.join("task.toml"))?)?.data,
                        )?,
                    };
                    pipeline::EvaluationData::Table(&table)
                }
            };
            let metrics = pipeline::evaluate_package(&pkg, source, rows)?;
            let out = output.unwrap_or_else(|| {
                PathBuf::from("evaluation").join(format!("{}-v{}", pkg.manifest.name, pkg.manifest.version))
            });
            std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
            std::fs::write(out.join("metrics.json"), serde_json::to_vec_pretty(&metrics)?)?;
            std::fs::write(out.join(card::MARKDOWN), card::markdown(&pkg.manifest, &metrics))?;
            std::fs::write(out.join(card::HTML), card::html(&pkg.manifest, &metrics))?;
            let m = &metrics.report.metrics;
            println!(
                "{} v{} on {}: n={} AUROC {:.3} ({:.3}-{:.3}) Brier {:.4} slope {:.2} intercept {:+.2} ICI {:.4}; report in {}",
                pkg.manifest.name,
                pkg.manifest.version,
                metrics.split,
                m.n,
                m.auroc,
                m.auroc_ci_lower,
                m.auroc_ci_upper,
                m.brier,
                m.calibration_slope,
                m.calibration_intercept,
                metrics.report.ici,
                out.display()
            );
        }
        Command::Recalibrate { model, version, data, meds } => {
            use carecast_training::dataset::Rows;
            use carecast_training::pipeline::{EvaluationData, recalibrate_package};
            let pkg = ModelStore::new(registry.clone()).get(&model, version.as_deref())?;
            let source = match (&data, &meds) {
                (Some(d), _) => EvaluationData::Table(d),
                (None, Some(m)) => EvaluationData::Meds(m),
                (None, None) => anyhow::bail!("give --data or --meds"),
            };
            let r = recalibrate_package(&pkg, source, Rows::All, &registry)?;
            println!(
                "{} v{} shifted by {:+.3} log-odds on {} rows: published and promoted as v{}",
                pkg.manifest.name, pkg.manifest.version, r.shift, r.metrics.report.metrics.n, r.version
            );
        }
        Command::Score { model, version, input, output, errors, key_column, top, audit } => {
            let store = ModelStore::new(registry.clone());
            let pkg = store.get(&model, version.as_deref())?;
            let errors = errors.unwrap_or_else(|| output.with_extension("errors.csv"));
            let audit = AuditLog::open_at(&audit_location(&registry, audit))?;
            let report = batch::score_table(&pkg, &input, &output, &errors, key_column.as_deref(), top, &audit)?;
            println!(
                "{} v{}: scored {} of {} rows into {}",
                pkg.manifest.name,
                pkg.manifest.version,
                report.scored,
                report.rows,
                output.display()
            );
            if !report.errors.is_empty() {
                println!("{} row(s) refused; see {}", report.errors.len(), errors.display());
            }
        }
        Command::Audit { action: AuditAction::Verify { audit, public_key, checkpoints } } => {
            let trail = audit_location(&registry, audit);
            let verified = match &public_key {
                Some(key) => carecast_audit::verify_trusted(trail.clone(), key.trim(), checkpoints.as_deref())?,
                None => carecast_audit::verify(trail.clone())?,
            };
            println!("{trail}: {} records, chain intact; head {}", verified.records, verified.head);
            match (verified.last_checkpoint, &public_key) {
                (Some((seq, at)), Some(_)) => println!(
                    "{} signed checkpoints, by the trusted key; the last at record {seq} ({at}) covers every record before it",
                    verified.checkpoints
                ),
                (Some((seq, at)), None) => println!(
                    "{} checkpoints, each signed by the key it names; the last at record {seq} ({at}); give --public-key to check the key",
                    verified.checkpoints
                ),
                (None, _) => println!("no signed checkpoints: start the server with --audit-signing-key"),
            }
        }
        Command::Audit { action: AuditAction::Keygen { out } } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let (document, public) = carecast_audit::Signer::generate().map_err(anyhow::Error::msg)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("{}", out.display()))?;
            file.write_all(&document)?;
            file.sync_all()?;
            println!("signing key written to {} (keep it secret); public key:\n{public}", out.display());
        }
        Command::Serve {
            addr,
            audit,
            audit_signing_key,
            audit_checkpoints,
            jwks,
            issuer,
            audience,
            max_token_lifetime,
            pseudonym_key_file,
            fhir_servers,
            insecure_demo,
            tls_cert,
            tls_key,
            client_ca,
        } => {
            let auth = match (jwks, insecure_demo) {
                (Some(jwks), _) => {
                    let text = std::fs::read_to_string(&jwks).with_context(|| format!("{}", jwks.display()))?;
                    let (issuer, audience) =
                        (issuer.expect("required with --jwks"), audience.expect("required with --jwks"));
                    let auth = carecast_serving::auth::Authenticator::from_jwks(&text, &issuer, &audience)
                        .map_err(anyhow::Error::msg)?;
                    Some(auth.with_max_lifetime(max_token_lifetime))
                }
                (None, true) => {
                    tracing::warn!("serving WITHOUT authentication (--insecure-demo): a local demo only");
                    None
                }
                (None, false) => anyhow::bail!(
                    "refusing to serve without authentication: give --jwks FILE --issuer ISS --audience AUD, or --insecure-demo for a local demo"
                ),
            };
            let pseudonyms = match (pseudonym_key_file, insecure_demo) {
                (Some(path), _) => carecast_models::deid::PseudonymKey::from_file(&path).map_err(anyhow::Error::msg)?,
                (None, true) => carecast_serving::ephemeral_pseudonym_key(),
                (None, false) => anyhow::bail!(
                    "refusing to serve without the trust's pseudonym key: give --pseudonym-key-file FILE (or CARECAST_PSEUDONYM_KEY_FILE)"
                ),
            };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(
                    carecast_serving::tls::Tls::from_files(&cert, &key, client_ca.as_deref())
                        .map_err(anyhow::Error::msg)?,
                ),
                _ => None,
            };
            let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
            let local = listener.local_addr()?;
            if insecure_demo && !local.ip().is_loopback() {
                anyhow::bail!(
                    "refusing to serve without authentication on {local}: --insecure-demo binds to loopback only"
                );
            }
            if tls.is_none() && !local.ip().is_loopback() {
                anyhow::bail!(
                    "refusing to serve health data in plain text on {local}: give --tls-cert and --tls-key (and --client-ca for mutual TLS), or bind to loopback behind a TLS-terminating proxy"
                );
            }
            let store = ModelStore::new(registry.clone());
            let loaded = store.preload()?;
            let signer = audit_signing_key
                .as_deref()
                .map(carecast_audit::Signer::from_file)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if signer.is_none() {
                tracing::warn!(
                    "the audit trail's checkpoints are not signed (no --audit-signing-key): its records could be rewritten undetected by whoever can write it"
                );
            }
            let signing = carecast_audit::Signing { signer, copies: audit_checkpoints };
            let audit = AuditLog::open_signed(&audit_location(&registry, audit), signing)?;
            let transport = match &tls {
                Some(t) if t.mutual() => "mutual TLS",
                Some(_) => "TLS",
                None => "plain text",
            };
            tracing::info!(addr = %local, transport, models = loaded, audit = %audit.location(), "carecast serving");
            let shutdown = async {
                let mut terminate =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("shutting down: no new connections; draining in-flight requests");
            };
            let fhir_servers =
                carecast_serving::fhir_server::FhirServers::new(&fhir_servers).map_err(anyhow::Error::msg)?;
            let state = AppState::new(store, audit, auth, pseudonyms).with_fhir_servers(fhir_servers);
            server::serve(listener, Arc::new(state), tls, shutdown).await?;
            tracing::info!("drained; stopped");
        }
        Command::Ingest { input, mapping, output, key_file, opt_out } => {
            use carecast_training::ingest::{flat, meds, omop, privacy::Privacy};
            let is_omop = ["person.csv", "person.parquet"].iter().any(|f| input.join(f).exists());
            let (store, splits, mut report) = match &mapping {
                Some(m) => {
                    let f = flat::read_flat(&input, &flat::FlatMapping::load(m)?)?;
                    (f.store, f.splits, f.report)
                }
                None if is_omop => {
                    let (store, report) = omop::read_omop(&input)?;
                    (store, Default::default(), report)
                }
                None => meds::read_meds(&input)?,
            };
            let key = key_file.map(|k| std::fs::read(&k).with_context(|| format!("{}", k.display()))).transpose()?;
            let opt_out = match opt_out {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("{}", path.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| l.parse::<i64>().with_context(|| format!("{}: `{l}` is not a subject id", path.display())))
                    .collect::<anyhow::Result<_>>()?,
                None => Default::default(),
            };
            let pseudonymised = key.is_some();
            let (store, splits) = Privacy { key, opt_out }.apply(&store, &splits, &mut report)?;
            meds::write_meds(&store, &splits, &output, &input.display().to_string())?;
            println!(
                "{}: {} rows read, {} subjects and {} events written to {}{}",
                input.display(),
                report.rows_read,
                store.n_patients(),
                report.events,
                output.display(),
                if pseudonymised { " (pseudonymised)" } else { "" }
            );
            for (reason, n) in &report.dropped {
                let first = report.first_row.get(reason).map(|r| format!(" (first at row {r})")).unwrap_or_default();
                println!("  left out {n}: {reason}{first}");
            }
        }
        Command::Synth { patients, seed, output, shard_size } => {
            let started = std::time::Instant::now();
            let (events, onsets, observations, deteriorations) =
                carecast_training::synth::write_population(patients, seed, shard_size, &output)?;
            println!(
                "{patients} patients, {events} events, {onsets} dementia onsets within 5 years, {observations} inpatient observations, {deteriorations} deteriorations, written to {} in {:.1?}",
                output.display(),
                started.elapsed()
            );
        }
        Command::Labels { meds, task, output } => {
            use carecast_training::cohort;
            let spec: cohort::EventTaskSpec =
                toml::from_str(&std::fs::read_to_string(&task).with_context(|| format!("{}", task.display()))?)
                    .with_context(|| format!("{}", task.display()))?;
            let (store, _, _) = carecast_training::ingest::meds::read_meds(&meds)?;
            let (labels, excluded) = cohort::label(&store, &spec)?;
            cohort::write_labels(&labels, &output)?;
            let positives = labels.iter().filter(|l| l.value).count();
            println!(
                "{}: {} prediction times, {positives} positive, written to {}",
                spec.name,
                labels.len(),
                output.display()
            );
            for (reason, n) in &excluded {
                println!("  left out {n}: {reason}");
            }
        }
        Command::Models => {
            for name in registry.models()? {
                let current = registry.current(&name).unwrap_or_else(|_| "-".into());
                println!("{name}: versions {} (current {current})", registry.versions(&name)?.join(", "));
            }
        }
        Command::Promote { model, version } => {
            ModelStore::new(registry.clone()).promote(&model, &version, &cli_user())?;
            println!("{model}: v{version} promoted");
        }
        Command::Rollback { model } => {
            let version = ModelStore::new(registry.clone()).rollback(&model, &cli_user())?;
            println!("{model}: rolled back to v{version}");
        }
        Command::Demo => demo(&registry).await?,
    }
    Ok(())
}

/// Who promoted or rolled back from the command line, for the registry's history.
fn cli_user() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}
