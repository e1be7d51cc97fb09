//! Callers authenticate with bearer JWTs (ES384 here, keys from a JWKS document): scoring needs a
//! clinician, model metadata a researcher, promotion an admin, who may do all; every refusal says why, with
//! UNAUTHENTICATED / PERMISSION_DENIED over gRPC and 401 / 403 over HTTP; the audit names the
//! token's subject.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carecast_audit::AuditLog;
use carecast_models::Registry;
use carecast_proto::v1::{
    self as pb, model_service_client::ModelServiceClient, monitoring_service_client::MonitoringServiceClient,
    scoring_service_client::ScoringServiceClient,
};
use carecast_serving::auth::Authenticator;
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::{feature_columns, read_table, row_values};
use carecast_training::{Algorithm, TaskSpec, train};
use jsonwebtoken::{EncodingKey, Header, encode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// A P-384 signing key: its PKCS#8 document and its public JWK.
pub(crate) fn key(kid: &str) -> (Vec<u8>, serde_json::Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..49]), "y": URL_SAFE_NO_PAD.encode(&point[49..97]),
    });
    (pkcs8.as_ref().to_vec(), jwk)
}

pub(crate) fn token(pkcs8: &[u8], kid: &str, sub: &str, roles: &[&str], aud: &str, expires_in: i64) -> String {
    let claims = serde_json::json!({ "sub": sub, "roles": roles, "iss": "https://idp.trust.nhs.example", "aud": aud, "exp": chrono::Utc::now().timestamp() + expires_in });
    signed(pkcs8, kid, &claims)
}

fn signed(pkcs8: &[u8], kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn tokens_roles_and_refusals() {
    let dir = std::env::temp_dir().join(format!("carecast-auth-{}", std::process::id()));
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let report = train(&task, &toml, &shared, &Registry::new(dir.join("registry")), Algorithm::Logistic, None).unwrap();
    let (trusted, jwk) = key("k1");
    let (stranger, _) = key("k1");
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let auth = Authenticator::from_jwks(&jwks, "https://idp.trust.nhs.example", "carecast").unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let state = Arc::new(AppState::new(
        ModelStore::new(Registry::new(dir.join("registry"))),
        AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        Some(auth),
        carecast_serving::ephemeral_pseudonym_key(),
    ));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state.clone(), None, async {
        stopped.await.ok();
    }));
    let mut scoring = ScoringServiceClient::connect(format!("http://{address}")).await.unwrap();
    let mut models = ModelServiceClient::connect(format!("http://{address}")).await.unwrap();

    let df = read_table(&shared).unwrap();
    let pkg =
        carecast_models::load_package(&Registry::new(dir.join("registry")).resolve(&report.name, None).unwrap().1)
            .unwrap();
    let columns = feature_columns(&df, &pkg.manifest.features).unwrap();
    let features = pkg
        .manifest
        .features
        .iter()
        .zip(row_values(&columns, 0).unwrap())
        .map(|(f, v)| (f.name.clone(), pb::FeatureValue::from(v)))
        .collect();
    let request =
        pb::ScoreRequest { model: report.name.clone(), patient_key: "auth-1".into(), features, ..Default::default() };
    let refused = |r: Result<tonic::Response<pb::ScoreResponse>, tonic::Status>, code: Code, needle: &str| {
        let status = r.expect_err("must be refused");
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(needle), "`{}` lacks `{needle}`", status.message());
    };

    let clinician = token(&trusted, "k1", "dr-1", &["clinician"], "carecast", 300);
    assert_eq!(scoring.score(bearer(request.clone(), &clinician)).await.unwrap().into_inner().patient_key, "auth-1");
    assert_eq!(state.audit.entries().unwrap()[0].caller, "dr-1", "the audit names the token's subject");
    let admin = token(&trusted, "k1", "ops-1", &["admin"], "carecast", 300);
    scoring.score(bearer(request.clone(), &admin)).await.unwrap();

    refused(scoring.score(request.clone()).await, Code::Unauthenticated, "missing bearer token");
    let researcher = token(&trusted, "k1", "res-1", &["researcher"], "carecast", 300);
    refused(
        scoring.score(bearer(request.clone(), &researcher)).await,
        Code::PermissionDenied,
        "needs the `clinician` role",
    );
    // Outcome feeds have a role of their own: a clinician cannot record outcomes, nor a feed score.
    let mut monitoring = MonitoringServiceClient::connect(format!("http://{address}")).await.unwrap();
    let outcome = pb::RecordOutcomesRequest {
        outcomes: vec![pb::ObservedOutcome {
            patient_key: "auth-1".into(),
            time_micros: chrono::Utc::now().timestamp_micros(),
            code: "DEATH".into(),
        }],
    };
    let status = monitoring.record_outcomes(bearer(outcome.clone(), &clinician)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("needs the `monitor` role"), "{}", status.message());
    let feed = token(&trusted, "k1", "outcome-feed", &["monitor"], "carecast", 300);
    assert_eq!(monitoring.record_outcomes(bearer(outcome, &feed)).await.unwrap().into_inner().added, 1);
    refused(scoring.score(bearer(request.clone(), &feed)).await, Code::PermissionDenied, "needs the `clinician` role");
    refused(
        scoring.score(bearer(request.clone(), &token(&trusted, "k1", "dr-1", &["clinician"], "carecast", -3600))).await,
        Code::Unauthenticated,
        "Expired",
    );
    refused(
        scoring
            .score(bearer(request.clone(), &token(&trusted, "k1", "dr-1", &["clinician"], "another-service", 300)))
            .await,
        Code::Unauthenticated,
        "Audience",
    );
    refused(
        scoring.score(bearer(request.clone(), &token(&stranger, "k1", "dr-1", &["clinician"], "carecast", 300))).await,
        Code::Unauthenticated,
        "Signature",
    );
    // Expiry with a few seconds' leeway, not a minute; `nbf` honoured; lifetimes capped; the
    // subject (written to every audit record) bounded.
    refused(
        scoring.score(bearer(request.clone(), &token(&trusted, "k1", "dr-1", &["clinician"], "carecast", -20))).await,
        Code::Unauthenticated,
        "Expired",
    );
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({ "sub": "dr-1", "roles": ["clinician"], "iss": "https://idp.trust.nhs.example", "aud": "carecast", "exp": now + 300 });
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        signed(&trusted, "k1", &c)
    };
    refused(
        scoring.score(bearer(request.clone(), &claims(serde_json::json!({ "nbf": now + 120 })))).await,
        Code::Unauthenticated,
        "ImmatureSignature",
    );
    refused(
        scoring.score(bearer(request.clone(), &claims(serde_json::json!({ "exp": now + 2 * 86_400 })))).await,
        Code::Unauthenticated,
        "longer than the 3600 s",
    );
    refused(
        scoring
            .score(bearer(request.clone(), &claims(serde_json::json!({ "iat": now - 7200, "exp": now + 60 }))))
            .await,
        Code::Unauthenticated,
        "longer than the 3600 s",
    );
    refused(
        scoring.score(bearer(request.clone(), &claims(serde_json::json!({ "sub": "x".repeat(500) })))).await,
        Code::Unauthenticated,
        "`sub`",
    );
    scoring
        .score(bearer(request.clone(), &claims(serde_json::json!({ "nbf": now - 1, "iat": now - 1 }))))
        .await
        .unwrap();
    let batch = scoring
        .score_batch(bearer(pb::ScoreBatchRequest { requests: vec![request.clone()] }, &clinician))
        .await
        .unwrap_err();
    assert_eq!(batch.code(), Code::PermissionDenied, "batches are for planners");

    assert!(models.list_models(bearer(pb::ListModelsRequest {}, &researcher)).await.is_ok());
    assert_eq!(
        models.list_models(bearer(pb::ListModelsRequest {}, &clinician)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(state.audit.entries().unwrap().len(), 3, "refused calls are not scored");
    // Promotion and roll-back are the admin's alone; the registry's history names who.
    let promote = || pb::PromoteRequest { name: report.name.clone(), version: "1".into(), ..Default::default() };
    for who in [&clinician, &researcher] {
        assert_eq!(models.promote(bearer(promote(), who)).await.unwrap_err().code(), Code::PermissionDenied);
        assert_eq!(
            models.rollback(bearer(pb::RollbackRequest { name: report.name.clone() }, who)).await.unwrap_err().code(),
            Code::PermissionDenied
        );
    }
    assert_eq!(models.promote(promote()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(models.promote(bearer(promote(), &admin)).await.unwrap().into_inner().current_version, "1");
    let history = Registry::new(dir.join("registry")).history(&report.name).unwrap();
    assert_eq!(history.last().unwrap().by.as_deref(), Some("ops-1"));

    // CDS Hooks: the EHR's bearer token too.
    for (authorization, expected) in [(None, "401"), (Some(&researcher), "403")] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let auth_line = authorization.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let http = format!(
            "POST /cds-services/{} HTTP/1.1\r\nHost: carecast\r\n{auth_line}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            report.name
        );
        stream.write_all(http.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with(&format!("HTTP/1.1 {expected}")), "{response}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
