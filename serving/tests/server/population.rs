//! Planners read published population runs over HTTP: `/population` lists the runs a directory
//! holds (only whole ones: a summary with its report), `/population/<run>` is the report as
//! published, sent so that no script could run; clinicians and researchers are refused, and a
//! run's name is never a way out of the directory.

use crate::auth::{key, token};
use carecast_audit::AuditLog;
use carecast_models::{Registry, load_package};
use carecast_serving::auth::Authenticator;
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::disclosure::Disclosure;
use carecast_tables::population::{PopulationOptions, summarise};
use carecast_training::{Algorithm, TaskSpec, train};
use std::path::PathBuf;
use std::sync::Arc;

#[tokio::test]
async fn planners_read_published_population_reports_and_no_one_else_does() {
    let dir = std::env::temp_dir().join(format!("carecast-population-{}", std::process::id()));
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let registry = Registry::new(dir.join("registry"));
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let trained = train(&task, &toml, &shared, &registry, Algorithm::Logistic, None).unwrap();
    let pkg = load_package(&registry.resolve(&trained.name, None).unwrap().1).unwrap();

    // One run published as a planner publishes it, beside files that are not runs.
    let runs = dir.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let options = PopulationOptions {
        by: vec!["dzclass".parse().unwrap()],
        outcome: None,
        key_column: Some("sno".into()),
        disclosure: Disclosure::default(),
        scenario: Vec::new(),
        audit_rows: false,
    };
    let audit = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
    summarise(&pkg, &shared, &options).unwrap().publish(&runs.join("q4-by-class"), &pkg, &audit).unwrap();
    std::fs::write(runs.join("notes.json"), r#"{"model": "m"}"#).unwrap();
    std::fs::write(runs.join(".half-written.json"), "{").unwrap();
    let published = std::fs::read_to_string(runs.join("q4-by-class.html")).unwrap();

    let (signing, jwk) = key("k1");
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let auth = Authenticator::from_jwks(&jwks, "https://idp.trust.nhs.example", "carecast").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state =
        AppState::new(ModelStore::new(registry), audit, Some(auth), carecast_serving::ephemeral_pseudonym_key())
            .with_population(runs.clone());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, Arc::new(state), None, async {
        stopped.await.ok();
    }));

    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            (status, headers, response.text().await.unwrap())
        }
    };
    let planner = token(&signing, "k1", "analyst-1", &["planner"], "carecast", 300);
    let (status, headers, index) = get("/population", Some(&planner)).await;
    assert_eq!(status, 200, "{index}");
    assert!(index.contains("<a href=\"/population/q4-by-class\">q4-by-class</a>"), "{index}");
    assert!(index.contains(&pkg.manifest.name) && index.contains("dzclass"), "{index}");
    assert!(!index.contains("notes") && !index.contains("half-written"), "only whole runs are listed: {index}");
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));

    let (status, headers, report) = get("/population/q4-by-class", Some(&planner)).await;
    assert_eq!((status, report.as_str()), (200, published.as_str()), "the report as published");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(!headers["content-security-policy"].to_str().unwrap().contains("script-src"), "no script may run");
    let admin = token(&signing, "k1", "ops-1", &["admin"], "carecast", 300);
    assert_eq!(get("/population/q4-by-class", Some(&admin)).await.0, 200);

    for who in ["clinician", "researcher"] {
        let other = token(&signing, "k1", "someone", &[who], "carecast", 300);
        let (status, _, body) = get("/population/q4-by-class", Some(&other)).await;
        assert_eq!(status, 403, "{who}");
        assert!(body.contains("planner"), "{body}");
    }
    assert_eq!(get("/population", None).await.0, 401);
    for path in ["/population/notes", "/population/..%2Fregistry", "/population/%2E%2E", "/population/q4-by-class.html"]
    {
        let (status, _, body) = get(path, Some(&planner)).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
