//! The gRPC server against real models trained on the shared SUPPORT data: round trips equal the
//! in-process scorer exactly, errors carry the right codes and name the field, corrupt packages are
//! refused while other versions keep serving, and every score is audited.

use carecast_audit::AuditLog;
use carecast_models::{Registry, Workspace, load_package};
use carecast_proto::v1::{
    self as pb, feature_value, model_service_client::ModelServiceClient, scoring_service_client::ScoringServiceClient,
};
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::{feature_columns, read_table, row_values};
use carecast_training::dataset::Rows;
use carecast_training::pipeline::{EvaluationData, recalibrate_package};
use carecast_training::{Algorithm, TaskSpec, train};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tonic::Code;
use tonic::transport::Channel;

fn shared_data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(file)
}

/// One registry with both support2_hospdead models, trained once for all tests in this file.
fn registry() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("carecast-grpc-{}", std::process::id()));
        let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
        for a in [Algorithm::Logistic, Algorithm::Gbm] {
            train(&task, &toml, &shared_data("support2.csv"), &Registry::new(&dir), a, None).unwrap();
        }
        dir
    })
}

struct Server {
    addr: String,
    state: Arc<AppState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(registry_dir: &Path) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let audit = registry_dir.join(format!("audit-{}.jsonl", listener.local_addr().unwrap().port()));
    let state = Arc::new(AppState::new(
        ModelStore::new(Registry::new(registry_dir)),
        AuditLog::open(&audit).unwrap(),
        None,
        carecast_serving::ephemeral_pseudonym_key(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state.clone(), None, async {
        stopped.await.ok();
    }));
    Server { addr, state, _stop: stop }
}

async fn channel(s: &Server) -> Channel {
    Channel::from_shared(s.addr.clone()).unwrap().connect().await.unwrap()
}

async fn scoring(s: &Server) -> ScoringServiceClient<Channel> {
    ScoringServiceClient::connect(s.addr.clone()).await.unwrap()
}

/// Test-split rows of the shared data as requests (all contributions asked for).
fn requests(model: &str, n: usize) -> Vec<(pb::ScoreRequest, usize)> {
    let pkg = load_package(&Registry::new(registry()).resolve(model, None).unwrap().1).unwrap();
    let df = read_table(&shared_data("support2.csv")).unwrap();
    let cols = feature_columns(&df, &pkg.manifest.features).unwrap();
    let split = carecast_tables::text_column(&df, "split").unwrap();
    (0..df.height())
        .filter(|&r| split[r].as_deref() == Some("test"))
        .take(n)
        .map(|r| {
            let features: HashMap<String, pb::FeatureValue> = pkg
                .manifest
                .features
                .iter()
                .zip(row_values(&cols, r).unwrap())
                .map(|(f, v)| (f.name.clone(), pb::FeatureValue::from(v)))
                .collect();
            (
                pb::ScoreRequest {
                    model: model.into(),
                    version: String::new(),
                    patient_key: format!("t-{r}"),
                    features,
                    max_contributions: 0,
                    ..Default::default()
                },
                r,
            )
        })
        .collect()
}

#[tokio::test]
async fn round_trip_equals_the_in_process_scorer() {
    let server = start(registry()).await;
    let mut client = scoring(&server).await;
    let df = read_table(&shared_data("support2.csv")).unwrap();
    for model in ["support2_hospdead-logistic", "support2_hospdead-gbm"] {
        let pkg = load_package(&Registry::new(registry()).resolve(model, None).unwrap().1).unwrap();
        let cols = feature_columns(&df, &pkg.manifest.features).unwrap();
        let mut ws = Workspace::default();
        for (req, r) in requests(model, 40) {
            let got = client.score(req).await.unwrap().into_inner();
            let want = pkg.scorer.score(&row_values(&cols, r).unwrap(), &mut ws).unwrap();
            assert!((got.probability - want.probability).abs() <= 1e-9);
            assert!((got.margin - want.margin).abs() <= 1e-9);
            assert!((got.base_value - want.base_value).abs() <= 1e-9);
            assert_eq!(got.contributions.len(), pkg.manifest.features.len());
            for c in &got.contributions {
                let i = pkg.manifest.features.iter().position(|f| f.name == c.feature).unwrap();
                assert!((c.contribution - want.contributions[i]).abs() <= 1e-9, "{model} {}", c.feature);
                assert!(!c.explanation.is_empty());
            }
            let sum: f64 = got.contributions.iter().map(|c| c.contribution).sum();
            assert!((got.base_value + sum - got.margin).abs() < 1e-9 && got.additivity_error < 1e-9);
            // Clinical factors: here each feature is its own, and they add up to the same.
            let factor_sum: f64 = got.factors.iter().map(|f| f.contribution).sum();
            assert_eq!(got.factors.len(), pkg.manifest.features.len());
            assert!(
                (factor_sum - sum).abs() < 1e-9
                    && got.factors.iter().all(|f| f.features.len() == 1 && f.explanation.contains("risk"))
            );
            assert_eq!(got.warnings.len(), want.warnings.len());
            assert_eq!(got.model_version, "1");
            assert_ne!(got.risk_band, pb::RiskBand::Unspecified as i32);
        }
    }
    let audited = server.state.audit.entries().unwrap();
    assert_eq!(audited.len(), 80, "every score is audited");
    assert!(audited.iter().all(|e| e.patient_key.starts_with("t-") && e.model.starts_with("support2_hospdead-")));
}

#[tokio::test]
async fn bad_requests_get_actionable_errors() {
    let server = start(registry()).await;
    let mut client = scoring(&server).await;
    let (good, _) = requests("support2_hospdead-gbm", 1).remove(0);
    let expect = |res: Result<tonic::Response<pb::ScoreResponse>, tonic::Status>, code: Code, needle: &str| {
        let status = res.expect_err("must be refused");
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(needle), "`{}` lacks `{needle}`", status.message());
    };

    let mut r = good.clone();
    r.model = "no_such_model".into();
    expect(client.score(r).await, Code::NotFound, "no_such_model");
    let mut r = good.clone();
    r.version = "99".into();
    expect(client.score(r).await, Code::NotFound, "99");
    let mut r = good.clone();
    r.model = "../etc".into();
    expect(client.score(r).await, Code::InvalidArgument, "not valid");
    let mut r = good.clone();
    r.model = "x".repeat(10_000);
    let status = client.score(r).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::NotFound | Code::InvalidArgument) && status.message().chars().count() <= 160,
        "a name is echoed short: {} chars",
        status.message().len()
    );
    let mut r = good.clone();
    r.features.remove("meanbp");
    expect(client.score(r).await, Code::InvalidArgument, "meanbp");
    let mut r = good.clone();
    r.features.insert("hrt".into(), pb::FeatureValue { value: Some(feature_value::Value::Category("fast".into())) });
    expect(client.score(r).await, Code::InvalidArgument, "hrt");
    for bad in [f64::NAN, f64::INFINITY] {
        let mut r = good.clone();
        r.features.insert("temp".into(), pb::FeatureValue { value: Some(feature_value::Value::Number(bad)) });
        expect(client.score(r).await, Code::InvalidArgument, "temp");
    }
    let mut r = good.clone();
    r.features.insert("sex".into(), pb::FeatureValue { value: Some(feature_value::Value::Category("unknown".into())) });
    expect(client.score(r).await, Code::InvalidArgument, "sex");
    let mut r = good.clone();
    r.features.insert("systolic".into(), pb::FeatureValue { value: Some(feature_value::Value::Number(120.0)) });
    expect(client.score(r).await, Code::InvalidArgument, "systolic");
    let mut r = good.clone();
    r.features.insert("age".into(), pb::FeatureValue { value: None });
    expect(client.score(r).await, Code::InvalidArgument, "age");
    let mut r = good.clone();
    r.features.insert("bili".into(), pb::FeatureValue { value: Some(feature_value::Value::Missing(false)) });
    expect(client.score(r).await, Code::InvalidArgument, "bili");
    // A heart rate no patient can have (a unit or typing error) is refused, naming the range.
    let mut r = good.clone();
    r.features.insert("hrt".into(), pb::FeatureValue { value: Some(feature_value::Value::Number(400.0)) });
    expect(
        client.score(r).await,
        Code::InvalidArgument,
        "feature `hrt`: outside the possible range 0 beats/min to 350 beats/min",
    );
    // Bytes that are not protobuf at all: the caller's error, not the server's.
    let mut raw = tonic::client::Grpc::new(channel(&server).await);
    raw.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/carecast.v1.ScoringService/Score");
    let status = raw.unary(tonic::Request::new(vec![0xff_u8, 0xff, 0xff, 0x07]), path, RawCodec).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Every numeric input has a possible range: 1e9 years of education, -1e9 mL of urine.
    for (feature, absurd) in [("edu", 1e9), ("urine", -1e9)] {
        let mut r = good.clone();
        r.features.insert(feature.into(), pb::FeatureValue { value: Some(feature_value::Value::Number(absurd)) });
        expect(
            client.score(r).await,
            Code::InvalidArgument,
            &format!("feature `{feature}`: outside the possible range"),
        );
    }
    let mut r = good.clone();
    r.patient_key = "943 476 5919".into();
    expect(client.score(r).await, Code::InvalidArgument, "patient_key");
    let mut r = good.clone();
    r.patient_key = "9434765919".into();
    expect(client.score(r).await, Code::InvalidArgument, "NHS number");

    // Missing, implausible and out-of-training-range values are scored, with warnings naming
    // the feature.
    let mut r = good.clone();
    r.features.insert("alb".into(), pb::FeatureValue { value: Some(feature_value::Value::Missing(true)) });
    r.features.insert("hrt".into(), pb::FeatureValue { value: Some(feature_value::Value::Number(320.0)) });
    r.max_contributions = 3;
    let resp = client.score(r).await.unwrap().into_inner();
    assert_eq!(resp.contributions.len(), 3);
    assert!(resp.warnings.iter().any(|w| w.feature == "alb" && w.kind == pb::WarningKind::MissingImputed as i32));
    assert!(resp.warnings.iter().any(|w| w.feature == "hrt" && w.kind == pb::WarningKind::OutOfTrainingRange as i32));
    assert!(resp.warnings.iter().any(|w| w.feature == "hrt"
        && w.kind == pb::WarningKind::Implausible as i32
        && w.message.contains("20 beats/min to 220 beats/min")));
    let audit = server.state.audit.entries().unwrap();
    assert_eq!(audit.len(), 1, "refused requests are not scores");
    // The audit holds the score, never the inputs.
    let mut fields: Vec<String> =
        serde_json::to_value(&audit[0]).unwrap().as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(
        fields,
        ["caller", "hash", "model", "model_version", "patient_key", "prev", "probability", "risk_band", "seq", "time"]
    );
    assert_eq!(audit[0].probability, resp.probability);
}

#[tokio::test]
async fn models_health_and_reflection() {
    let server = start(registry()).await;
    let mut models = ModelServiceClient::connect(server.addr.clone()).await.unwrap();
    let list = models.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = list.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["support2_hospdead-gbm", "support2_hospdead-logistic"]);
    assert!(list.models.iter().all(|m| m.current_version == "1" && m.task == "support2_hospdead"));

    let info = models
        .get_model(pb::GetModelRequest { name: "support2_hospdead-gbm".into(), version: String::new() })
        .await
        .unwrap()
        .into_inner();
    let pkg = load_package(&Registry::new(registry()).resolve("support2_hospdead-gbm", None).unwrap().1).unwrap();
    let m = info.metrics.unwrap();
    assert_eq!((m.auroc, m.calibration_slope, m.n), (pkg.metrics.auroc, pkg.metrics.calibration_slope, pkg.metrics.n));
    assert_eq!(info.features.len(), 32);
    assert_eq!(info.training_data_sha256, pkg.manifest.training_data.sha256);
    let sex = info.features.iter().find(|f| f.name == "sex").unwrap();
    assert_eq!(sex.levels, ["female", "male"]);
    let status =
        models.get_model(pb::GetModelRequest { name: "nope".into(), version: String::new() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&server).await);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest { service: "carecast.v1.ScoringService".into() })
        .await
        .unwrap();
    assert_eq!(resp.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel(&server).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(services)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let services: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    for s in ["carecast.v1.ScoringService", "carecast.v1.ModelService", "grpc.health.v1.Health"] {
        assert!(services.iter().any(|x| x == s), "{s} missing from {services:?}");
    }
}

#[tokio::test]
async fn a_corrupt_promoted_package_is_refused_and_the_previous_version_keeps_serving() {
    // A private copy of the registry: versions 1 and 3 intact, version 2's model file damaged
    // after publication (so it fails its checksums).
    let dir = std::env::temp_dir().join(format!("carecast-corrupt-{}", std::process::id()));
    let src = registry().join("support2_hospdead-gbm");
    let dst = dir.join("support2_hospdead-gbm");
    for v in ["1", "2", "3"] {
        std::fs::create_dir_all(dst.join(v)).unwrap();
        for f in std::fs::read_dir(src.join("1")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dst.join(v).join(f.file_name())).unwrap();
        }
        let manifest = dst.join(v).join("manifest.json");
        let text = std::fs::read_to_string(&manifest).unwrap().replacen(
            "\"version\": \"1\"",
            &format!("\"version\": \"{v}\""),
            1,
        );
        std::fs::write(&manifest, text).unwrap();
    }
    let model = dst.join("2/model.json");
    let text = std::fs::read_to_string(&model).unwrap().replacen("\"value\": 0.0", "\"value\": 9.0", 1);
    std::fs::write(&model, text).unwrap();
    let registry = Registry::new(&dir);
    registry.promote("support2_hospdead-gbm", "1", "test").unwrap();

    let server = start(&dir).await;
    let mut client = scoring(&server).await;
    let (req, _) = requests("support2_hospdead-gbm", 1).remove(0);
    let served = |r: Result<tonic::Response<pb::ScoreResponse>, tonic::Status>| r.unwrap().into_inner().model_version;
    assert_eq!(served(client.score(req.clone()).await), "1");

    // Version 2 promoted while serving: refused, version 1 keeps serving, no restart.
    registry.promote("support2_hospdead-gbm", "2", "test").unwrap();
    assert_eq!(served(client.score(req.clone()).await), "1");
    let mut pinned = req.clone();
    pinned.version = "2".into();
    let status = client.score(pinned).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // The caller learns what failed, not the server's paths, checksums or files.
    let message = status.message();
    assert!(
        message.contains("failed verification") && !message.contains('/') && !message.contains("model.json"),
        "{message}"
    );
    assert!(!message.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() >= 32), "no checksum: {message}");

    // A server starting with the damaged version promoted serves the newest earlier one.
    let fresh = start(&dir).await;
    assert_eq!(served(scoring(&fresh).await.score(req.clone()).await), "1");

    // Repaired in place, version 2 is verified again and served: a refusal is not kept for good.
    std::fs::copy(dst.join("1/model.json"), &model).unwrap();
    assert_eq!(served(client.score(req.clone()).await), "2");

    // A package copied into another version's place is refused.
    std::fs::create_dir_all(dst.join("4")).unwrap();
    for f in std::fs::read_dir(dst.join("1")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join("4").join(f.file_name())).unwrap();
    }
    let mut pinned = req.clone();
    pinned.version = "4".into();
    let status = client.score(pinned).await.unwrap_err();
    assert!(
        status.code() == Code::FailedPrecondition && status.message().contains("version `4` cannot be served"),
        "{}",
        status.message()
    );

    // A good version promoted is picked up by the running server.
    registry.promote("support2_hospdead-gbm", "3", "test").unwrap();
    assert_eq!(served(client.score(req.clone()).await), "3");

    // A `CURRENT` naming a version that does not exist is no outage: the version served keeps
    // serving (a fresh server serves the newest that loads), and the difference is reported.
    std::fs::write(dst.join("CURRENT"), "99\n").unwrap();
    assert_eq!(served(client.score(req.clone()).await), "3");
    assert_eq!(served(scoring(&start(&dir).await).await.score(req).await), "3");
    let metrics = carecast_serving::metrics::handle().render();
    assert!(
        metrics.contains("carecast_model_promoted_refused{model=\"support2_hospdead-gbm\",version=\"99\"} 1"),
        "{metrics}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn streams_and_batches_score_each_request_and_refuse_bad_ones_alone() {
    use pb::score_result::Outcome;
    let server = start(registry()).await;
    let mut client = scoring(&server).await;
    let mut all: Vec<pb::ScoreRequest> = requests("support2_hospdead-gbm", 30).into_iter().map(|(r, _)| r).collect();
    all[3].features.insert("hrt".into(), pb::FeatureValue { value: Some(feature_value::Value::Number(400.0)) });

    let batch = client.score_batch(pb::ScoreBatchRequest { requests: all.clone() }).await.unwrap().into_inner().results;
    assert_eq!(batch.len(), 30);
    for (i, (result, req)) in batch.iter().zip(&all).enumerate() {
        match result.outcome.as_ref().unwrap() {
            Outcome::Score(s) => {
                assert_ne!(i, 3);
                assert_eq!(s, &client.score(req.clone()).await.unwrap().into_inner(), "a batch scores as Score does");
            }
            Outcome::Error(e) => {
                assert_eq!(
                    (i, e.code, e.patient_key.as_str()),
                    (3, Code::InvalidArgument as i32, req.patient_key.as_str())
                );
                assert!(e.message.contains("feature `hrt`"), "{}", e.message);
            }
        }
    }
    let too_many = pb::ScoreBatchRequest { requests: vec![all[0].clone(); carecast_serving::service::MAX_BATCH + 1] };
    let status = client.score_batch(too_many).await.unwrap_err();
    assert!(
        status.code() == Code::InvalidArgument && status.message().contains("at most 1000"),
        "{}",
        status.message()
    );

    // The same requests as a stream: the same results, in order; the bad one does not end it.
    let mut stream = client.score_stream(tokio_stream::iter(all.clone())).await.unwrap().into_inner();
    let mut streamed = Vec::new();
    while let Some(result) = stream.message().await.unwrap() {
        streamed.push(result);
    }
    assert_eq!(streamed, batch);
    // Batch and stream each audited their 29 scores (and the 29 single scores above).
    assert_eq!(server.state.audit.entries().unwrap().len(), 29 * 3);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_leaves_the_server_serving() {
    let server = start(registry()).await;
    let reqs: Vec<pb::ScoreRequest> = requests("support2_hospdead-logistic", 4).into_iter().map(|(r, _)| r).collect();
    let mut leaving = scoring(&server).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut results = leaving.score_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(reqs[0].clone()).await.unwrap();
    let first = results.message().await.unwrap().unwrap();
    tx.send(reqs[1].clone()).await.unwrap();
    tx.send(reqs[2].clone()).await.unwrap();
    drop((results, tx, leaving)); // gone, with requests in flight

    let mut other = scoring(&server).await;
    assert_eq!(other.score(reqs[3].clone()).await.unwrap().into_inner().patient_key, reqs[3].patient_key);
    let audited: Vec<String> = server.state.audit.entries().unwrap().into_iter().map(|e| e.patient_key).collect();
    let Some(pb::score_result::Outcome::Score(first)) = first.outcome else { panic!("scored") };
    assert!(audited.contains(&first.patient_key) && audited.contains(&reqs[3].patient_key));
}

#[tokio::test]
async fn prometheus_metrics_are_served_over_http_on_the_grpc_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(registry()).await;
    let mut client = scoring(&server).await;
    let (good, _) = requests("support2_hospdead-logistic", 1).remove(0);
    client.score(good.clone()).await.unwrap();
    let mut bad = good;
    bad.features.remove("meanbp");
    client.score(bad).await.unwrap_err();

    let mut http = tokio::net::TcpStream::connect(server.addr.trim_start_matches("http://")).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: carecast\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for needle in [
        "carecast_scores_total{model=\"support2_hospdead-logistic\",version=\"1\",band=",
        "carecast_errors_total{rpc=\"Score\",code=\"InvalidArgument\"}",
        "carecast_request_seconds_bucket{rpc=\"Score\",le=\"0.001\"}",
        "carecast_model_serving{model=\"support2_hospdead-logistic\",version=\"1\"} 1",
    ] {
        assert!(text.contains(needle), "no `{needle}` in\n{text}");
    }
}

#[tokio::test]
async fn shutdown_stops_new_connections_and_drains_the_calls_in_flight() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let audit = registry().join(format!("audit-drain-{}.jsonl", address.port()));
    let state = Arc::new(AppState::new(
        ModelStore::new(Registry::new(registry())),
        AuditLog::open(&audit).unwrap(),
        None,
        carecast_serving::ephemeral_pseudonym_key(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state.clone(), None, async {
        stopped.await.ok();
    }));
    let reqs: Vec<pb::ScoreRequest> = requests("support2_hospdead-gbm", 3).into_iter().map(|(r, _)| r).collect();

    // A ward feed is mid-stream when the server is told to stop.
    let mut feed = ScoringServiceClient::connect(format!("http://{address}")).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut results = feed.score_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(reqs[0].clone()).await.unwrap();
    assert!(results.message().await.unwrap().is_some());
    stop.send(()).unwrap();

    // New connections are refused at once...
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if tokio::net::TcpStream::connect(address).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    refused.await.expect("the port stops accepting after shutdown");
    // ...and the feed, though its client keeps it open and sends more, is read no further: it
    // ends with UNAVAILABLE (reconnect), and the server stops well within its drain bound.
    let _ = tx.send(reqs[1].clone()).await;
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), results.message())
        .await
        .expect("the stream ends on shutdown");
    let status = end.expect_err("ended with a status");
    assert!(status.code() == Code::Unavailable && status.message().contains("shutting down"), "{status:?}");
    tokio::time::timeout(carecast_serving::server::DRAIN + std::time::Duration::from_secs(5), server)
        .await
        .expect("stopped within the drain bound")
        .unwrap()
        .unwrap();
    let audited: Vec<String> = state.audit.entries().unwrap().into_iter().map(|e| e.patient_key).collect();
    assert_eq!(audited, [reqs[0].patient_key.clone()], "the answer sent was audited; nothing was read after the stop");
    drop(tx);
}

#[tokio::test]
async fn admins_promote_and_roll_back_over_grpc_and_a_damaged_version_is_never_promoted() {
    // A private registry: version 1 as trained, 2 and 3 recalibrations of it (as a new site
    // would publish them), version 3 damaged after publication.
    let dir = std::env::temp_dir().join(format!("carecast-admin-{}", std::process::id()));
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let registry = Registry::new(&dir);
    train(&task, &toml, &shared_data("support2.csv"), &registry, Algorithm::Gbm, None).unwrap();
    let model = "support2_hospdead-gbm";
    let trained = load_package(&dir.join(model).join("1")).unwrap();
    for _ in 0..2 {
        let site = EvaluationData::Table(&shared_data("support2.csv"));
        recalibrate_package(&trained, site, Rows::TaskSplit, &registry).unwrap();
    }
    let damaged = dir.join(model).join("3/model.json");
    let text = std::fs::read_to_string(&damaged).unwrap().replacen("\"value\": 0.0", "\"value\": 9.0", 1);
    std::fs::write(&damaged, text).unwrap();
    registry.promote(model, "1", "test").unwrap();

    let server = start(&dir).await;
    let mut admin = ModelServiceClient::new(channel(&server).await);
    let mut client = scoring(&server).await;
    let (mut req, _) = requests(model, 1).remove(0);
    req.model = model.into();
    let served = async |client: &mut ScoringServiceClient<Channel>| {
        client.score(req.clone()).await.unwrap().into_inner().model_version
    };
    assert_eq!(served(&mut client).await, "1");

    let promoted = admin
        .promote(pb::PromoteRequest { name: model.into(), version: "2".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(promoted.current_version, "2");
    assert_eq!(served(&mut client).await, "2", "the running server follows the promotion");

    let status = admin
        .promote(pb::PromoteRequest { name: model.into(), version: "3".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    // The caller learns what failed, not the server's paths, checksums or files.
    let message = status.message();
    assert!(
        message.contains("failed verification") && !message.contains('/') && !message.contains("model.json"),
        "{message}"
    );
    assert!(!message.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() >= 32), "no checksum: {message}");
    assert_eq!(registry.current(model).unwrap(), "2", "a version that fails its checksums is not promoted");
    assert_eq!(served(&mut client).await, "2");
    let status = admin
        .promote(pb::PromoteRequest { name: model.into(), version: "9".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = admin
        .promote(pb::PromoteRequest { name: model.into(), version: String::new(), ..Default::default() })
        .await
        .unwrap_err();
    assert!(status.code() == Code::InvalidArgument && status.message().starts_with("version"), "{status:?}");

    let rolled = admin.rollback(pb::RollbackRequest { name: model.into() }).await.unwrap().into_inner();
    assert_eq!(rolled.current_version, "1");
    assert_eq!(served(&mut client).await, "1");
    // The history says who did what (in demo mode, the caller is the peer address).
    let history = registry.history(model).unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.action.as_str(), last.version.as_str()), ("rolled back", "1"));
    assert!(last.by.as_deref().is_some_and(|by| by.starts_with("127.0.0.1:")), "{last:?}");
    // Rolling back again would go to version 3 (promoted at publication, before version 1 was):
    // damaged, so refused, and version 1 keeps serving.
    let status = admin.rollback(pb::RollbackRequest { name: model.into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(registry.current(model).unwrap(), "1");
    assert_eq!(served(&mut client).await, "1");

    // Promotion gates: version 2 passed them against version 1 when it was published (the
    // report kept in the registry). Without that report it is refused, naming why and what to
    // do; forced, it needs a reason, which the history keeps.
    let report = registry.gates(model, "2", "1").unwrap().expect("checked when version 2 was published");
    assert!(report.passed() && report.gates.iter().any(|g| g.name == "discrimination"), "{report:?}");
    std::fs::remove_file(dir.join(model).join("gates/2-against-1.json")).unwrap();
    let promote = |force: bool, reason: &str| pb::PromoteRequest {
        name: model.into(),
        version: "2".into(),
        force,
        reason: reason.into(),
    };
    let status = admin.promote(promote(false, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("has not passed its promotion gates against version `1`: not checked"),
        "{status:?}"
    );
    let status = admin.promote(promote(true, " ")).await.unwrap_err();
    assert!(status.code() == Code::InvalidArgument && status.message().starts_with("reason"), "{status:?}");
    assert_eq!(registry.current(model).unwrap(), "1");
    admin.promote(promote(true, "CSO approval CR-1234")).await.unwrap();
    assert_eq!(served(&mut client).await, "2");
    let last = registry.history(model).unwrap().pop().unwrap();
    let forced = last.forced.expect("a forced promotion is recorded as one");
    assert_eq!((last.version.as_str(), forced.reason.as_str()), ("2", "CSO approval CR-1234"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Sends its bytes as they are (a malformed request), reads a `ScoreResponse`.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::ScoreResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::ScoreResponse>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}
