//! Shadow deployment: with a candidate version in shadow, every request for the served version
//! is scored by both; callers receive the served version's result alone, both scores are
//! audited (the shadow's under its own caller mark), agreement is counted at `/metrics` as the
//! in-process scorers give it, and a shadow that cannot score a request never fails it.

use carecast_audit::AuditLog;
use carecast_models::{Registry, Workspace, load_package};
use carecast_proto::v1::{self as pb, scoring_service_client::ScoringServiceClient};
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::{feature_columns, read_table, row_values, text_column};
use carecast_training::monitor::{Period, agreement};
use carecast_training::{Algorithm, TaskSpec, train};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

const MODEL: &str = "support2-shadowed";
const SENT: usize = 50;

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv")
}

async fn metrics(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: carecast\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).await.unwrap();
    text
}

/// The value of the metric line starting with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[tokio::test]
async fn a_shadow_version_scores_beside_the_served_one_and_is_never_returned() {
    let dir = std::env::temp_dir().join(format!("carecast-shadow-{}", std::process::id()));
    let registry = Registry::new(&dir);
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    train(&task, &toml, &shared_data(), &registry, Algorithm::Logistic, Some(MODEL)).unwrap();
    train(&task, &toml, &shared_data(), &registry, Algorithm::Gbm, Some(MODEL)).unwrap();
    // Version 3 lacks an input the requests carry: it cannot score them.
    let without: String = toml
        .split("[[features]]")
        .filter(|f| !f.contains("name = \"meanbp\""))
        .collect::<Vec<_>>()
        .join("[[features]]");
    train(
        &TaskSpec::from_toml(&without).unwrap(),
        &without,
        &shared_data(),
        &registry,
        Algorithm::Logistic,
        Some(MODEL),
    )
    .unwrap();
    registry.promote(MODEL, "1", "test").unwrap();
    registry.start_shadow(MODEL, "2", "test").unwrap();
    let load = |v: &str| load_package(&registry.resolve(MODEL, Some(v)).unwrap().1).unwrap();
    let (v1, v2) = (load("1"), load("2"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(AppState::new(
        ModelStore::new(registry.clone()),
        AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        None,
        carecast_serving::ephemeral_pseudonym_key(),
    ));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state.clone(), None, async {
        stopped.await.ok();
    }));
    let mut client = ScoringServiceClient::connect(format!("http://{addr}")).await.unwrap();

    let df = read_table(&shared_data()).unwrap();
    let cols = feature_columns(&df, &v1.manifest.features).unwrap();
    let split = text_column(&df, "split").unwrap();
    let rows: Vec<usize> = (0..df.height()).filter(|&r| split[r].as_deref() == Some("test")).take(SENT).collect();
    let request = |r: usize, version: &str| {
        let features: HashMap<String, pb::FeatureValue> = v1
            .manifest
            .features
            .iter()
            .zip(row_values(&cols, r).unwrap())
            .map(|(f, v)| (f.name.clone(), pb::FeatureValue::from(v)))
            .collect();
        pb::ScoreRequest {
            model: MODEL.into(),
            version: version.into(),
            patient_key: format!("s-{r}"),
            features,
            ..Default::default()
        }
    };
    let (mut ws, mut changes, mut difference) = (Workspace::default(), 0u64, 0.0);
    for &r in &rows {
        let response = client.score(request(r, "")).await.unwrap().into_inner();
        let values = row_values(&cols, r).unwrap();
        let (served, candidate) =
            (v1.scorer.score(&values, &mut ws).unwrap(), v2.scorer.score(&values, &mut ws).unwrap());
        assert_eq!(
            (response.model_version.as_str(), response.probability),
            ("1", served.probability),
            "callers get v1"
        );
        changes += u64::from(served.band != candidate.band);
        difference += (served.probability - candidate.probability).abs();
    }
    // Both scores audited, the shadow's as v2 under its caller mark, equal to v2's own scorer.
    let entries = state.audit.entries().unwrap();
    assert_eq!(entries.len(), 2 * SENT);
    let shadows: Vec<_> = entries.iter().filter(|e| e.is_shadow()).collect();
    assert_eq!(shadows.len(), SENT);
    for (e, &r) in shadows.iter().zip(&rows) {
        let p = v2.scorer.score(&row_values(&cols, r).unwrap(), &mut ws).unwrap().probability;
        assert_eq!((e.model_version.as_str(), e.probability, e.patient_key.as_str()), ("2", p, &*format!("s-{r}")));
    }
    // Agreement at /metrics and in the monitor, as the two scorers give it in process.
    let text = metrics(&addr).await;
    let labels = format!("{{model=\"{MODEL}\",version=\"1\",shadow=\"2\"");
    assert_eq!(value(&text, &format!("carecast_shadow_scores_total{labels}")), SENT as f64);
    assert!((value(&text, &format!("carecast_shadow_abs_difference_sum{labels}")) - difference).abs() < 1e-9);
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with(&format!("carecast_shadow_band_changes_total{labels}")))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted, changes as f64);
    let agreed = agreement(&entries, MODEL, Period::Week);
    assert_eq!(agreed.iter().map(|a| a.pairs).sum::<u64>(), SENT as u64);
    assert_eq!(agreed.iter().map(|a| a.band_changes).sum::<u64>(), changes);
    let mean = agreed.iter().map(|a| a.mean_abs_difference * a.pairs as f64).sum::<f64>() / SENT as f64;
    assert!((mean - difference / SENT as f64).abs() < 1e-12);

    // A request for a named version is not shadowed; nor is any once the shadow ends.
    client.score(request(rows[0], "1")).await.unwrap();
    registry.end_shadow(MODEL, "test").unwrap();
    client.score(request(rows[1], "")).await.unwrap();
    assert_eq!(state.audit.entries().unwrap().len(), 2 * SENT + 2);

    // A shadow that cannot score the request (version 3 lacks `meanbp`): the caller is answered
    // by version 1 as ever, and the failure is counted.
    registry.start_shadow(MODEL, "3", "test").unwrap();
    let response = client.score(request(rows[2], "")).await.unwrap().into_inner();
    assert_eq!(response.model_version, "1");
    let text = metrics(&addr).await;
    assert_eq!(
        value(&text, &format!("carecast_shadow_errors_total{{model=\"{MODEL}\",version=\"1\",shadow=\"3\"")),
        1.0
    );
    assert_eq!(state.audit.entries().unwrap().len(), 2 * SENT + 3, "the served score alone");
    std::fs::remove_dir_all(&dir).unwrap();
}
