//! `carecast demo`: the whole path on the bundled data, with nothing to install.

use crate::{audit_location, bundled, research};
use anyhow::Context;
use carecast_audit::AuditLog;
use carecast_models::{FeatureSpec, Registry};
use carecast_proto::v1 as pb;
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::{batch, feature_columns, read_table, row_values, text_column};
use carecast_training::{Algorithm, TrainOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub async fn run(registry: &Registry) -> anyhow::Result<()> {
    println!("== 1. Train on the bundled SUPPORT data (support2_hospdead: in-hospital death)");
    let fits: Vec<TrainOptions> = [Algorithm::Logistic, Algorithm::Gbm].into_iter().map(TrainOptions::from).collect();
    let reports = research::train_flat(registry, "support2_hospdead", None, &fits, None)?;
    let gbm = reports.last().expect("two models trained");

    println!("\n== 2. Batch-score every patient in the file with {}", gbm.name);
    let data = bundled::path("support2.csv")?;
    let store = ModelStore::new(registry.clone());
    let pkg = store.get(&gbm.name, None)?;
    std::fs::create_dir_all("out")?;
    let audit = AuditLog::open_at(&audit_location(registry, None))?;
    let output = PathBuf::from("out/support2_hospdead_scores.parquet");
    let errors = Path::new("out/support2_hospdead_scores.errors.csv");
    let options = batch::BatchOptions { key_column: Some("sno".into()), top: 3, ..Default::default() };
    let progress = crate::progress::bar("Scoring", "rows");
    let report = batch::score_table(&pkg, &data, &output, errors, &options, &audit, &progress)?;
    progress.finish_and_clear();
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
    // The demo's own loopback server, for this process alone.
    let state = Arc::new(AppState::new(store, audit, None, carecast_serving::ephemeral_pseudonym_key()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state, None, async {
        stopped.await.ok();
    }));
    let mut client = pb::scoring_service_client::ScoringServiceClient::connect(format!("http://{addr}")).await?;
    let request = request_for_row(&gbm.name, &pkg.manifest.features, &data, 1, "sno")?;
    let response = client.score(request).await?.into_inner();
    print_score(&response);
    stop.send(()).ok();
    server.await??;
    let trail = audit_location(registry, None);
    let verified = carecast_audit::verify(trail.clone())?;
    println!("\nAudit trail {trail}: {} records, hash chain intact", verified.records);
    Ok(())
}

/// A gRPC request for one row of a table, every feature named.
fn request_for_row(
    model: &str,
    features: &[FeatureSpec],
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
        patient_key: format!("support2-{key}"),
        features,
        max_contributions: 5,
        ..Default::default()
    })
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
