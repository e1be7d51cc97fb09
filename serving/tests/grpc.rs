//! The gRPC server against real models trained on the shared SUPPORT data: round trips equal the
//! in-process scorer exactly, errors carry the right codes and name the field, corrupt packages are
//! refused while other versions keep serving, and every score is audited.

use carecast_models::{Registry, Value, Workspace, load_package};
use carecast_proto::v1::{self as pb, feature_value, model_service_client::ModelServiceClient, scoring_service_client::ScoringServiceClient};
use carecast_serving::{AppState, AuditLog, ModelStore, server};
use carecast_training::ingest::table::{feature_columns, read_table, row_values};
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
    audit: PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(registry_dir: &Path) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let audit = registry_dir.join(format!("audit-{}.jsonl", listener.local_addr().unwrap().port()));
    let state = Arc::new(AppState { store: ModelStore::new(Registry::new(registry_dir)), audit: AuditLog::open(&audit).unwrap() });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state, async { stopped.await.ok(); }));
    Server { addr, audit, _stop: stop }
}

async fn channel(s: &Server) -> Channel {
    Channel::from_shared(s.addr.clone()).unwrap().connect().await.unwrap()
}

async fn scoring(s: &Server) -> ScoringServiceClient<Channel> {
    ScoringServiceClient::connect(s.addr.clone()).await.unwrap()
}

fn to_pb(v: Value<'_>) -> pb::FeatureValue {
    pb::FeatureValue {
        value: Some(match v {
            Value::Number(x) => feature_value::Value::Number(x),
            Value::Text(t) => feature_value::Value::Category(t.to_string()),
            Value::Missing => feature_value::Value::Missing(true),
        }),
    }
}

/// Test-split rows of the shared data as requests (all contributions asked for).
fn requests(model: &str, n: usize) -> Vec<(pb::ScoreRequest, usize)> {
    let pkg = load_package(&Registry::new(registry()).resolve(model, None).unwrap().1).unwrap();
    let df = read_table(&shared_data("support2.csv")).unwrap();
    let cols = feature_columns(&df, &pkg.manifest.features).unwrap();
    let split = carecast_training::ingest::table::text_column(&df, "split").unwrap();
    (0..df.height())
        .filter(|&r| split[r].as_deref() == Some("test"))
        .take(n)
        .map(|r| {
            let features: HashMap<String, pb::FeatureValue> = pkg
                .manifest
                .features
                .iter()
                .zip(row_values(&cols, r).unwrap())
                .map(|(f, v)| (f.name.clone(), to_pb(v)))
                .collect();
            (pb::ScoreRequest { model: model.into(), version: String::new(), patient_key: format!("t-{r}"), features, max_contributions: 0 }, r)
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
            assert!((factor_sum - sum).abs() < 1e-9 && got.factors.iter().all(|f| f.features.len() == 1 && f.explanation.contains("risk")));
            assert_eq!(got.warnings.len(), want.warnings.len());
            assert_eq!(got.model_version, "1");
            assert_ne!(got.risk_band, pb::RiskBand::Unspecified as i32);
        }
    }
    let audited = std::fs::read_to_string(&server.audit).unwrap().lines().count();
    assert_eq!(audited, 80, "every score is audited");
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
    let mut r = good.clone();
    r.patient_key = "943 476 5919".into();
    expect(client.score(r).await, Code::InvalidArgument, "patient_key");
    let mut r = good.clone();
    r.patient_key = "9434765919".into();
    expect(client.score(r).await, Code::InvalidArgument, "NHS number");

    // Missing and out-of-range values are scored, with warnings naming the feature.
    let mut r = good.clone();
    r.features.insert("alb".into(), pb::FeatureValue { value: Some(feature_value::Value::Missing(true)) });
    r.features.insert("hrt".into(), pb::FeatureValue { value: Some(feature_value::Value::Number(400.0)) });
    r.max_contributions = 3;
    let resp = client.score(r).await.unwrap().into_inner();
    assert_eq!(resp.contributions.len(), 3);
    assert!(resp.warnings.iter().any(|w| w.feature == "alb" && w.kind == pb::WarningKind::MissingImputed as i32));
    assert!(resp.warnings.iter().any(|w| w.feature == "hrt" && w.kind == pb::WarningKind::OutOfTrainingRange as i32));
    let audit = std::fs::read_to_string(&server.audit).unwrap();
    assert_eq!(audit.lines().count(), 1, "refused requests are not scores");
    assert!(!audit.contains("400"), "the audit holds the score, not the inputs");
}

#[tokio::test]
async fn models_health_and_reflection() {
    let server = start(registry()).await;
    let mut models = ModelServiceClient::connect(server.addr.clone()).await.unwrap();
    let list = models.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = list.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["support2_hospdead-gbm", "support2_hospdead-logistic"]);
    assert!(list.models.iter().all(|m| m.current_version == "1" && m.task == "support2_hospdead"));

    let info = models.get_model(pb::GetModelRequest { name: "support2_hospdead-gbm".into(), version: String::new() }).await.unwrap().into_inner();
    let pkg = load_package(&Registry::new(registry()).resolve("support2_hospdead-gbm", None).unwrap().1).unwrap();
    let m = info.metrics.unwrap();
    assert_eq!((m.auroc, m.calibration_slope, m.n), (pkg.metrics.auroc, pkg.metrics.calibration_slope, pkg.metrics.n));
    assert_eq!(info.features.len(), 32);
    assert_eq!(info.training_data_sha256, pkg.manifest.training_data.sha256);
    let sex = info.features.iter().find(|f| f.name == "sex").unwrap();
    assert_eq!(sex.levels, ["female", "male"]);
    let status = models.get_model(pb::GetModelRequest { name: "nope".into(), version: String::new() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&server).await);
    let resp = health.check(tonic_health::pb::HealthCheckRequest { service: "carecast.v1.ScoringService".into() }).await.unwrap();
    assert_eq!(resp.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest, server_reflection_response::MessageResponse};
    let mut reflection = ServerReflectionClient::new(channel(&server).await);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(services)) = stream.message().await.unwrap().unwrap().message_response else {
        panic!("expected a service list")
    };
    let services: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    for s in ["carecast.v1.ScoringService", "carecast.v1.ModelService", "grpc.health.v1.Health"] {
        assert!(services.iter().any(|x| x == s), "{s} missing from {services:?}");
    }
}

#[tokio::test]
async fn a_corrupt_package_is_refused_and_other_versions_keep_serving() {
    // A private copy of the registry, with a second GBM version whose model file is then damaged.
    let dir = std::env::temp_dir().join(format!("carecast-corrupt-{}", std::process::id()));
    let src = registry().join("support2_hospdead-gbm");
    let dst = dir.join("support2_hospdead-gbm");
    for v in ["1", "2"] {
        std::fs::create_dir_all(dst.join(v)).unwrap();
        for f in std::fs::read_dir(src.join("1")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dst.join(v).join(f.file_name())).unwrap();
        }
    }
    let model = dst.join("2/model.json");
    let text = std::fs::read_to_string(&model).unwrap().replacen("\"value\": 0.0", "\"value\": 9.0", 1);
    std::fs::write(&model, text).unwrap();
    Registry::new(&dir).promote("support2_hospdead-gbm", "2").unwrap();

    let server = start(&dir).await;
    let mut client = scoring(&server).await;
    let (req, _) = requests("support2_hospdead-gbm", 1).remove(0);
    let status = client.score(req.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("checksum"), "{}", status.message());
    let mut pinned = req;
    pinned.version = "1".into();
    assert_eq!(client.score(pinned).await.unwrap().into_inner().model_version, "1");
    std::fs::remove_dir_all(&dir).unwrap();
}
