//! Load on loopback: the gRPC server (in this process, on its own runtime) scoring and fully
//! explaining the synthetic deterioration GBM for 1, 16 and 64 concurrent clients, each on its own
//! connection, sending one request after another for a fixed time. Prints throughput, p50 / p99 /
//! p99.9 latency and the error count per level. Both sides share this machine's cores.
//!
//! `cargo run --release -p carecast-benches --bin load_grpc -- [seconds per level] [patients]`
//! (defaults 10 and 20,000; the model is trained first on a synthetic population of that size).

use carecast_models::{Registry, Value};
use carecast_proto::v1::{self as pb, feature_value, scoring_service_client::ScoringServiceClient};
use carecast_serving::{AppState, AuditLog, ModelStore, server};
use carecast_training::cohort::event_training_set;
use carecast_training::ingest::table::row_values;
use carecast_training::pipeline::{Rows, train_set};
use carecast_training::{Algorithm, synth};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let patients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("carecast-load-{}", std::process::id()));
    synth::write_population(patients, 3, 250_000, &dir.join("meds"))?;
    let task = include_str!("../../../training/tasks/synth_deterioration_24h.toml");
    let features = include_str!("../../../training/tasks/synth_deterioration_features.toml");
    let set = event_training_set(&dir.join("meds"), task, features, Rows::TaskSplit)?;
    let registry = Registry::new(dir.join("registry"));
    let report = train_set(&set, &registry, Algorithm::Gbm, None)?;
    // Held-out observation sets as requests: every feature by name, every contribution asked for.
    let names: Vec<String> = set.features.iter().map(|f| f.name.clone()).collect();
    let requests: Arc<Vec<pb::ScoreRequest>> = Arc::new(
        set.data
            .test_rows
            .iter()
            .take(2000)
            .enumerate()
            .map(|(i, &r)| {
                let features = names
                    .iter()
                    .zip(row_values(&set.data.columns, r).expect("rows were read"))
                    .map(|(n, v)| {
                        let value = match v {
                            Value::Number(x) => feature_value::Value::Number(x),
                            Value::Text(t) => feature_value::Value::Category(t.into()),
                            Value::Missing => feature_value::Value::Missing(true),
                        };
                        (n.clone(), pb::FeatureValue { value: Some(value) })
                    })
                    .collect();
                pb::ScoreRequest { model: report.name.clone(), patient_key: format!("load-{i}"), features, ..Default::default() }
            })
            .collect(),
    );

    let server_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = server_runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(AppState { store: ModelStore::new(registry), audit: AuditLog::open(&dir.join("audit.redb"))?, auth: None });
    server_runtime.spawn(server::serve(listener, state, std::future::pending()));

    let clients_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    println!("synthetic deterioration GBM ({} trees), Score with full explanation, {seconds} s per level", tree_count(&dir, &report.name));
    println!("{:>8} {:>12} {:>9} {:>9} {:>9} {:>7}", "clients", "requests/s", "p50 µs", "p99 µs", "p99.9 µs", "errors");
    for clients in [1usize, 16, 64] {
        let (mut latencies, errors) = clients_runtime.block_on(level(&address, clients, Duration::from_secs(seconds), requests.clone()))?;
        latencies.sort_unstable();
        let at = |q: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * q) as usize).copied().unwrap_or(0);
        let rate = latencies.len() as f64 / seconds as f64;
        println!("{clients:>8} {rate:>12.0} {:>9} {:>9} {:>9} {errors:>7}", at(0.5), at(0.99), at(0.999));
    }
    drop(server_runtime);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn tree_count(dir: &std::path::Path, name: &str) -> usize {
    let pkg = carecast_models::load_package(&Registry::new(dir.join("registry")).resolve(name, None).expect("published").1).expect("loads");
    match pkg.scorer.definition().estimator {
        carecast_models::Estimator::GradientBoostedTrees(ref e) => e.trees.len(),
        _ => 0,
    }
}

/// `clients` connections each sending requests back to back for `length`: every latency in µs,
/// and the errors.
async fn level(address: &str, clients: usize, length: Duration, requests: Arc<Vec<pb::ScoreRequest>>) -> anyhow::Result<(Vec<u64>, usize)> {
    let mut tasks = Vec::new();
    let end = Instant::now() + length;
    for c in 0..clients {
        let mut client = ScoringServiceClient::connect(address.to_string()).await?;
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut i = c * 31;
            while Instant::now() < end {
                let request = requests[i % requests.len()].clone();
                i += 1;
                let started = Instant::now();
                match client.score(request).await {
                    Ok(_) => latencies.push(started.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    Ok((all, errors))
}
