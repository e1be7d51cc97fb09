//! CDS Hooks against a deterioration model trained on synthetic events: discovery lists it (and
//! not the flat models), a `patient-view` request with a synthetic inpatient's vital signs as FHIR
//! Observations gets a card whose fields follow the CDS Hooks and FHIR R4 specifications, and
//! whose probability equals the model's on the same events read straight from the MEDS data;
//! what is not prefetched is queried from the EHR's FHIR server (a real HTTP server standing in
//! for the EHR's) with the call's access token, only when that server is configured, else 412.
//! Discovery and every card are validated against the JSON schema written from HL7's logical
//! models of CDS Hooks (`cds_hooks_schema/`).

use carecast_audit::AuditLog;
use carecast_models::features::extract::{Event, STATIC};
use carecast_models::{Registry, Value as Input, Workspace, load_package};
use carecast_serving::{AppState, ModelStore, fhir, server};
use carecast_training::cohort::event_training_set;
use carecast_training::dataset::Rows;
use carecast_training::ingest::meds::read_meds;
use carecast_training::pipeline::train_set;
use carecast_training::{Algorithm, synth};
use chrono::Datelike;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The CDS Hooks schema `name` (`discovery` or `response`).
fn schema(name: &str) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/server/cds_hooks_schema")
        .join(format!("{name}.schema.json"));
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
}

/// Panics with every violation unless `instance` conforms to the CDS Hooks schema `name`.
fn conforms(name: &str, instance: &Value) {
    let errors: Vec<String> =
        schema(name).iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "not a CDS Hooks 2.0 {name}: {errors:#?}");
}

/// What the stand-in EHR FHIR server holds and what it was asked: each request's path and query,
/// and its Authorization header.
#[derive(Default)]
struct Ehr {
    patient: Option<AsFhir>,
    asked: Vec<(String, Option<String>)>,
}

/// A FHIR server on loopback answering `Patient/{id}`, `Observation?patient=` (in two pages) and
/// `Condition?patient=` for the patient it holds, to the bearer token `ehr-token` only; its base URL.
async fn ehr_fhir_server(ehr: Arc<Mutex<Ehr>>) -> String {
    use axum::extract::{Path, RawQuery, State};
    use axum::http::{HeaderMap, StatusCode, Uri};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let answer = {
        let base = base.clone();
        move |State(ehr): State<Arc<Mutex<Ehr>>>,
              uri: Uri,
              Path(resource): Path<String>,
              RawQuery(query): RawQuery,
              headers: HeaderMap| {
            let base = base.clone();
            async move {
                let authorization = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
                let mut ehr = ehr.lock().unwrap();
                ehr.asked.push((uri.to_string(), authorization.clone()));
                if authorization.as_deref() != Some("Bearer ehr-token") {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let p = ehr.patient.as_ref().unwrap();
                let bundle = |entry: &[Value], next: Option<String>| {
                    let link: Vec<Value> =
                        next.into_iter().map(|url| json!({ "relation": "next", "url": url })).collect();
                    json!({ "resourceType": "Bundle", "type": "searchset", "link": link, "entry": entry })
                };
                let query = query.unwrap_or_default();
                let half = p.observations.len() / 2;
                // Patient cds-2's search pages on to another server.
                let elsewhere = "http://127.0.0.1:9/fhir/Observation?page=2".to_string();
                let body = match resource.as_str() {
                    "Patient/cds-1" | "Patient/cds-2" => p.patient.clone(),
                    "Observation" if query.starts_with("patient=cds-2&") => {
                        bundle(&p.observations[..half], Some(elsewhere))
                    }
                    "Observation" if query.ends_with("&page=2") => bundle(&p.observations[half..], None),
                    "Observation" if query.starts_with("patient=cds-1&") => {
                        bundle(&p.observations[..half], Some(format!("{base}/Observation?{query}&page=2")))
                    }
                    "Condition" if query == "patient=cds-1" || query == "patient=cds-2" => bundle(&p.conditions, None),
                    _ => return (StatusCode::NOT_FOUND, String::new()),
                };
                (StatusCode::OK, body.to_string())
            }
        }
    };
    let app = axum::Router::new().route("/fhir/{*resource}", axum::routing::get(answer)).with_state(ehr);
    let routes = tonic::service::Routes::from(app);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder().accept_http1(true).add_routes(routes).serve_with_incoming(incoming),
    );
    base
}

/// One HTTP/1.1 request; the status and the body.
async fn http(address: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: carecast\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A patient as FHIR: Patient, Observation entries, Condition entries, and the events they carry.
struct AsFhir {
    patient: Value,
    observations: Vec<Value>,
    conditions: Vec<Value>,
    carried: Vec<(i64, String, f32)>,
}

/// A synthetic patient's events as FHIR: LOINC Observations timed so that the latest observation
/// set is a minute old, ICD-10 Conditions, birth month and sex; with the events, shifted the same
/// way, of the codes FHIR carries.
fn as_fhir(vocabulary: &[String], events: &[Event], now: i64) -> AsFhir {
    let code = |e: &Event| vocabulary[e.code as usize].as_str();
    // The latest inpatient observation set (the ones with a pulse) was taken a minute ago.
    let last = events.iter().filter(|e| code(e) == "VITAL//PULSE").map(|e| e.time).max().unwrap();
    let shift = now - 60_000_000 - last;
    let at = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t + shift).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let mut patient = json!({ "resourceType": "Patient", "id": "cds-1" });
    let (mut observations, mut conditions, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for e in events {
        let c = code(e);
        if c == "MEDS_BIRTH" {
            // The day is dropped on the way in: the model sees the first of the month.
            let birth = chrono::DateTime::from_timestamp_micros(e.time + shift).unwrap().date_naive();
            patient["birthDate"] = json!(birth.format("%Y-%m-15").to_string());
            let month = birth.with_day(1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros();
            kept.push((month, c.to_string(), e.value));
        } else if c == "SEX//F" || c == "SEX//M" {
            patient["gender"] = json!(if c == "SEX//F" { "female" } else { "male" });
            kept.push((STATIC, c.to_string(), e.value));
        } else if let Some(loinc) = fhir::LOINC.iter().find(|l| l.event == c) {
            if e.time + shift > now || e.value.is_nan() {
                continue;
            }
            // Each value as an EHR sends it: a quantity in its UCUM unit, or coded.
            let value = match (c, loinc.units.first()) {
                ("VITAL//ACVPU", _) => {
                    let code = if e.value > 0.5 { "LA6560-2" } else { "LA9340-6" };
                    ("valueCodeableConcept", json!({ "coding": [{ "system": "http://loinc.org", "code": code }] }))
                }
                ("VITAL//SUPPLEMENTAL_OXYGEN", _) => (
                    "valueQuantity",
                    json!({ "value": e.value * 2.0, "system": "http://unitsofmeasure.org", "code": "L/min" }),
                ),
                (_, Some((unit, _))) => {
                    ("valueQuantity", json!({ "value": e.value, "system": "http://unitsofmeasure.org", "code": unit }))
                }
                (_, None) => unreachable!("{c} has no unit"),
            };
            let mut observation = json!({
                "resourceType": "Observation", "status": "final",
                "code": { "coding": [{ "system": "http://loinc.org", "code": loinc.code }] },
                "effectiveDateTime": at(e.time),
            });
            observation[value.0] = value.1;
            observations.push(json!({ "resource": observation }));
            kept.push((e.time + shift, c.to_string(), e.value));
        } else if let Some(icd) = c.strip_prefix("ICD10//") {
            // An EHR holds nothing dated after now: later diagnoses are the synthetic future.
            if e.time != STATIC && e.time + shift > now {
                continue;
            }
            let onset = if e.time == STATIC { json!(null) } else { json!(at(e.time)) };
            conditions.push(json!({ "resource": {
                "resourceType": "Condition", "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10", "code": icd }] }, "onsetDateTime": onset,
            }}));
            kept.push((if e.time == STATIC { STATIC } else { e.time + shift }, c.to_string(), e.value));
        }
    }
    AsFhir { patient, observations, conditions, carried: kept }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_view_cards_follow_the_specifications_and_score_as_the_model_does() {
    let dir = std::env::temp_dir().join(format!("carecast-cds-{}", std::process::id()));
    synth::write_population(4000, 5, 8_000, &dir.join("meds"), &indicatif::ProgressBar::hidden()).unwrap();
    let registry = Registry::new(dir.join("registry"));
    let task = include_str!("../../../training/tasks/synth_deterioration_24h.toml");
    let features = include_str!("../../../training/tasks/synth_deterioration_features.toml");
    let set = event_training_set(&dir.join("meds"), task, features, Rows::TaskSplit).unwrap();
    let report = train_set(&set, &registry, Algorithm::Logistic, None).unwrap();
    let (task, toml) = carecast_training::TaskSpec::load("support2_hospdead").unwrap();
    let support = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    carecast_training::train(&task, &toml, &support, &registry, Algorithm::Logistic, None).unwrap();

    let ehr = Arc::new(Mutex::new(Ehr::default()));
    let ehr_base = ehr_fhir_server(ehr.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let state = AppState::new(
        ModelStore::new(registry.clone()),
        AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        None,
        carecast_serving::ephemeral_pseudonym_key(),
    );
    let state =
        Arc::new(state.with_fhir_servers(
            carecast_serving::fhir_server::FhirServers::new(std::slice::from_ref(&ehr_base)).unwrap(),
        ));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state.clone(), None, async {
        stopped.await.ok();
    }));

    // Discovery: the event model, with its prefetch; not the flat SUPPORT model.
    let (status, body) = http(&address, "GET", "/cds-services", "").await;
    assert_eq!(status, 200, "{body}");
    let services: Value = serde_json::from_str(&body).unwrap();
    conforms("discovery", &services);
    let services = services["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{services:?}");
    let service = &services[0];
    assert_eq!((service["hook"].as_str(), service["id"].as_str()), (Some("patient-view"), Some(report.name.as_str())));
    assert!(service["title"].is_string() && service["description"].is_string());
    assert!(service["prefetch"]["observations"].as_str().unwrap().contains("{{context.patientId}}"));

    // An inpatient with vital signs.
    let (store, _, _) = read_meds(&dir.join("meds")).unwrap();
    let pulse = store.vocabulary.iter().position(|c| c == "VITAL//PULSE").unwrap() as u32;
    let i =
        (0..store.subjects.len()).find(|&i| store.patient(i).iter().filter(|e| e.code == pulse).count() >= 6).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let AsFhir { patient, observations, conditions, carried: kept } = as_fhir(&store.vocabulary, store.patient(i), now);
    let request = json!({
        "hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": { "userId": "Practitioner/42", "patientId": "cds-1" },
        "prefetch": {
            "patient": patient,
            "observations": { "resourceType": "Bundle", "type": "searchset", "entry": observations },
            "conditions": { "resourceType": "Bundle", "type": "searchset", "entry": conditions },
        },
    });
    let (status, body) = http(&address, "POST", &format!("/cds-services/{}", report.name), &request.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    conforms("response", &response);
    // The schema would have caught the card this service once sent (suggestions without a
    // selectionBehavior), and a summary of 140 characters.
    let mut unselected = response.clone();
    unselected["cards"][0].as_object_mut().unwrap().remove("selectionBehavior");
    let mut long = response.clone();
    long["cards"][0]["summary"] = json!("x".repeat(140));
    assert!(!schema("response").is_valid(&unselected) && !schema("response").is_valid(&long));
    let card = &response["cards"][0];
    let summary = card["summary"].as_str().unwrap();
    assert!(summary.chars().count() < 140 && summary.contains("risk ("), "{summary}");
    let assessment = &card["suggestions"][0]["actions"][0]["resource"];
    assert_eq!(card["suggestions"][0]["actions"][0]["type"], "create");
    assert_eq!(assessment["resourceType"], "RiskAssessment");
    assert_eq!(
        (assessment["status"].as_str(), assessment["subject"]["reference"].as_str()),
        (Some("final"), Some("Patient/cds-1"))
    );
    let prediction = &assessment["prediction"][0];
    let probability = prediction["probabilityDecimal"].as_f64().unwrap();
    let risk = prediction["qualitativeRisk"]["coding"][0]["code"].as_str().unwrap();
    let indicator = card["indicator"].as_str().unwrap();
    assert!(
        matches!((risk, indicator), ("low", "info") | ("moderate", "warning") | ("high", "critical")),
        "{risk} {indicator}"
    );
    assert!(prediction["rationale"].as_str().unwrap().contains("risk"));
    assert!(assessment["method"]["text"].as_str().unwrap().contains(&report.name));
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_micros();
    assert_eq!(time(&prediction["whenPeriod"]["end"]) - time(&prediction["whenPeriod"]["start"]), 24 * 3_600_000_000);
    let detail = card["detail"].as_str().unwrap();
    assert!(detail.contains("Main factors") && detail.contains("\n- "), "{detail}");
    // The vital signs reached the model: NEWS2 (which needs all five) was computed.
    let missing = detail.split("Not recorded, scored as missing:").nth(1).unwrap_or("");
    assert!(!missing.contains("NEWS2"), "{detail}");
    assert_eq!(card["source"]["label"], format!("Carecast {} v{}", report.name, report.version));

    // The same probability from the MEDS events themselves (the codes FHIR carries), extracted at
    // the assessment's time: the FHIR mapping loses nothing the model reads from them.
    let pkg = load_package(&registry.resolve(&report.name, None).unwrap().1).unwrap();
    let want = model_probability(&pkg, &kept, time(&assessment["occurrenceDateTime"]));
    assert!((want.probability - probability).abs() < 1e-12, "{} vs {probability}", want.probability);
    // The audit holds the trust's pseudonym of the EHR's patient id, never the id itself, and
    // not the request's unverified `userId`.
    let pseudonym = state.pseudonyms.pseudonym("fhir", "cds-1");
    let entries = state.audit.entries().unwrap();
    assert!(entries.iter().any(|e| e.patient_key == pseudonym && e.caller == "cds-hooks (unauthenticated demo)"));
    assert!(entries.iter().all(|e| e.patient_key != "cds-1" && !e.caller.contains("Practitioner")));

    // The same events sent over gRPC as raw events: the same score, with the computed values.
    use carecast_proto::v1::{self as pb, scoring_service_client::ScoringServiceClient};
    let mut client = ScoringServiceClient::connect(format!("http://{address}")).await.unwrap();
    let by_events = pb::ScoreRequest {
        model: report.name.clone(),
        patient_key: "grpc-events-1".into(),
        events: kept
            .iter()
            .map(|(t, c, v)| pb::Event {
                code: c.clone(),
                time_micros: (*t != STATIC).then_some(*t),
                value: (!v.is_nan()).then_some(f64::from(*v)),
            })
            .collect(),
        prediction_time_micros: time(&assessment["occurrenceDateTime"]),
        ..Default::default()
    };
    let scored = client.score(by_events.clone()).await.unwrap().into_inner();
    assert_eq!(scored.probability, want.probability);
    let age = scored.contributions.iter().find(|c| c.feature == "age").unwrap();
    assert!(
        matches!(age.value.as_ref().and_then(|v| v.value.clone()), Some(pb::feature_value::Value::Number(a)) if a > 18.0)
    );
    let mut both = by_events.clone();
    both.features.insert("age".into(), pb::FeatureValue { value: Some(pb::feature_value::Value::Number(70.0)) });
    assert!(client.score(both).await.unwrap_err().message().contains("features or events"));
    // Times off the clock are refused, naming the field: a prediction in the year 3000, an event
    // near the earliest representable time (once an age of -292,214 years), a birth in 1800.
    let mut future = by_events.clone();
    future.prediction_time_micros =
        chrono::NaiveDate::from_ymd_opt(3000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros();
    let status = client.score(future).await.unwrap_err();
    assert!(
        status.code() == tonic::Code::InvalidArgument
            && status.message().starts_with("prediction_time_micros:")
            && status.message().contains("clock"),
        "{status:?}"
    );
    for absurd in [i64::MIN + 1, -5_364_662_400_000_000] {
        let mut ancient = by_events.clone();
        ancient.events[0].time_micros = Some(absurd);
        let status = client.score(ancient).await.unwrap_err();
        assert!(
            status.message().starts_with("events[0].time_micros:") && status.message().contains("1900"),
            "{status:?}"
        );
    }
    // A value finite as a double but infinite as the f32 an event holds, or not a number: refused
    // by field, never read as a missing reading.
    for bad in [1e39, f64::NAN, -f64::INFINITY] {
        let mut huge = by_events.clone();
        let at = huge.events.iter().position(|e| e.value.is_some()).unwrap();
        huge.events[at].value = Some(bad);
        let status = client.score(huge).await.unwrap_err();
        assert!(
            status.code() == tonic::Code::InvalidArgument
                && status.message().starts_with(&format!("events[{at}].value:"))
                && status.message().contains("range"),
            "{status:?}"
        );
    }
    let mut flat = by_events;
    flat.model = "support2_hospdead-logistic".into();
    assert!(client.score(flat).await.unwrap_err().message().contains("not trained on events"));

    // Malformed FHIR is refused naming the resource and field, never read as an empty record
    // (an `entry` object or string, or a `code` string, once gave a high-risk patient a Low card).
    let path = format!("/cds-services/{}", report.name);
    let with = |pointer: &str, value: Value| {
        let mut r = request.clone();
        *r.pointer_mut(pointer).unwrap() = value;
        r
    };
    for (body, field) in [
        (with("/prefetch/observations/entry", json!({ "resource": {} })), "prefetch.observations.entry"),
        (with("/prefetch/observations/entry", json!("many")), "prefetch.observations.entry"),
        (with("/prefetch/observations/entry/0/resource/code", json!("8867-4")), "prefetch.observations[0].code"),
        (with("/prefetch/patient/birthDate", json!("1800-01-01")), "prefetch.patient.birthDate"),
        (with("/context/patientId", json!("Margaret Jones")), "context.patientId"),
        (with("/context/patientId", json!("x".repeat(65))), "context.patientId"),
        (with("/context/patientId", json!("..")), "context.patientId"),
        (with("/prefetch/patient", Value::Null), "prefetch.patient"),
    ] {
        let (status, answer) = http(&address, "POST", &path, &body.to_string()).await;
        assert!(status == 400 && answer.contains(field), "{field}: {status} {answer}");
    }
    // An age over 125 is refused as impossible, not scored.
    let (status, answer) =
        http(&address, "POST", &path, &with("/prefetch/patient/birthDate", json!("1900-01-01")).to_string()).await;
    assert!(status == 422 && answer.contains("`age`") && answer.contains("possible range"), "{status} {answer}");

    // An EHR clock a minute ahead: its latest observations are read as taken now, and the card
    // says so; ten minutes ahead is refused, naming the field and the clock.
    let ahead = as_fhir(&store.vocabulary, store.patient(i), now + 120_000_000);
    let mut skewed = with("/prefetch/observations/entry", json!(ahead.observations));
    skewed["prefetch"]["conditions"]["entry"] = json!(ahead.conditions);
    skewed["prefetch"]["patient"] = ahead.patient.clone();
    let (status, body) = http(&address, "POST", &path, &skewed.to_string()).await;
    assert_eq!(status, 200, "{body}");
    conforms("response", &serde_json::from_str(&body).unwrap());
    let card = serde_json::from_str::<Value>(&body).unwrap()["cards"][0].clone();
    let detail = card["detail"].as_str().unwrap();
    assert!(detail.contains("read as taken now"), "{detail}");
    assert!(!detail.split("Not recorded").nth(1).unwrap_or("").contains("NEWS2"), "{detail}");
    let at = time(&card["suggestions"][0]["actions"][0]["resource"]["occurrenceDateTime"]);
    let as_now: Vec<_> =
        ahead.carried.iter().map(|(t, c, v)| (if *t == STATIC { *t } else { (*t).min(at) }, c.clone(), *v)).collect();
    let skewed_probability =
        card["suggestions"][0]["actions"][0]["resource"]["prediction"][0]["probabilityDecimal"].as_f64().unwrap();
    assert!((model_probability(&pkg, &as_now, at).probability - skewed_probability).abs() < 1e-12);
    let far = as_fhir(&store.vocabulary, store.patient(i), now + 660_000_000);
    let (status, body) =
        http(&address, "POST", &path, &with("/prefetch/observations/entry", json!(far.observations)).to_string()).await;
    assert!(status == 400 && body.contains("effective[x]") && body.contains("clock"), "{status} {body}");

    // A patient with nothing recorded but birth and sex: the card says the record is incomplete
    // and lists what is missing, and never shows a plain, reassuring Low.
    let (status, body) =
        http(&address, "POST", &path, &with("/prefetch/observations/entry", json!([])).to_string()).await;
    assert_eq!(status, 200, "{body}");
    conforms("response", &serde_json::from_str(&body).unwrap());
    let card = serde_json::from_str::<Value>(&body).unwrap()["cards"][0].clone();
    let summary = card["summary"].as_str().unwrap();
    assert!(summary.starts_with("Incomplete record (") && summary.chars().count() < 140, "{summary}");
    assert_ne!(card["indicator"], "info");
    let detail = card["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("**Incomplete record:**")
            && detail.contains("Not recorded, scored as missing:")
            && detail.contains("NEWS2"),
        "{detail}"
    );

    // Without the prefetch and without a FHIR server to query: 412. An unknown service: 404. Not
    // patient-view: 400.
    let mut bare = request.clone();
    bare.as_object_mut().unwrap().remove("prefetch");
    let (status, body) = http(&address, "POST", &format!("/cds-services/{}", report.name), &bare.to_string()).await;
    assert!(status == 412 && body.contains("prefetch.patient") && body.contains("fhirServer"), "{status} {body}");
    assert_eq!(http(&address, "POST", "/cds-services/no_such_model", &request.to_string()).await.0, 404);
    let mut other = request.clone();
    other["hook"] = json!("order-select");
    assert_eq!(http(&address, "POST", &format!("/cds-services/{}", report.name), &other.to_string()).await.0, 400);

    // No prefetch, but the EHR's FHIR server and its access token: the service queries it (all
    // three templates, both pages of observations, each with the token) and the card scores the
    // patient as the model does on the same events.
    ehr.lock().unwrap().patient =
        Some(as_fhir(&store.vocabulary, store.patient(i), chrono::Utc::now().timestamp_micros()));
    let mut queried = bare.clone();
    queried["fhirServer"] = json!(ehr_base);
    queried["fhirAuthorization"] = json!({ "access_token": "ehr-token", "token_type": "Bearer", "expires_in": 300, "scope": "user/Patient.read user/Observation.read user/Condition.read", "subject": "carecast" });
    let (status, body) = http(&address, "POST", &path, &queried.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    conforms("response", &response);
    let assessment = &response["cards"][0]["suggestions"][0]["actions"][0]["resource"];
    let probability = assessment["prediction"][0]["probabilityDecimal"].as_f64().unwrap();
    let carried = ehr.lock().unwrap().patient.as_ref().unwrap().carried.clone();
    let want = model_probability(&pkg, &carried, time(&assessment["occurrenceDateTime"]));
    assert!((want.probability - probability).abs() < 1e-12, "{} vs {probability}", want.probability);
    let asked = std::mem::take(&mut ehr.lock().unwrap().asked);
    // The three queries run side by side, so in any order.
    let mut paths: Vec<&str> = asked.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort_unstable();
    let observations = "/fhir/Observation?patient=cds-1&_sort=-date&_count=1000";
    assert_eq!(
        paths,
        ["/fhir/Condition?patient=cds-1", observations, &format!("{observations}&page=2"), "/fhir/Patient/cds-1"]
    );
    assert!(asked.iter().all(|(_, auth)| auth.as_deref() == Some("Bearer ehr-token")));
    // Refused with 412 and nothing scored or audited: a FHIR server not configured (never
    // contacted: the call could name any address), no token, a token the EHR refuses.
    let audited = state.audit.entries().unwrap().len();
    let mut elsewhere = queried.clone();
    elsewhere["fhirServer"] = json!("http://169.254.169.254/latest");
    let mut no_token = queried.clone();
    no_token.as_object_mut().unwrap().remove("fhirAuthorization");
    let mut refused_token = queried.clone();
    refused_token["fhirAuthorization"]["access_token"] = json!("expired");
    for (body, why) in [(elsewhere, "configured"), (no_token, "fhirAuthorization"), (refused_token, "HTTP 401")] {
        let (status, answer) = http(&address, "POST", &path, &body.to_string()).await;
        assert!(status == 412 && answer.contains("prefetch.") && answer.contains(why), "{why}: {status} {answer}");
        assert!(!answer.contains("cds-1"), "the patient's id is not echoed: {answer}");
    }
    // Only the call with the configured server and a token reached it: its queries run side by
    // side and the first refusal cancels the rest, so one to three of them arrive.
    let asked = std::mem::take(&mut ehr.lock().unwrap().asked);
    assert!(
        (1..=3).contains(&asked.len()) && asked.iter().all(|(_, auth)| auth.as_deref() == Some("Bearer expired")),
        "{asked:?}"
    );
    // A search whose next page is on another server: refused, not read as complete.
    let mut paged_away = queried.clone();
    paged_away["context"]["patientId"] = json!("cds-2");
    let (status, answer) = http(&address, "POST", &path, &paged_away.to_string()).await;
    assert!(
        status == 412 && answer.contains("prefetch.observations") && answer.contains("outside"),
        "{status} {answer}"
    );
    // Every prefetch key is required: Conditions neither sent nor fetchable is 412, not "none";
    // `null` (the EHR has no such data) is an empty search.
    let mut no_conditions = request.clone();
    no_conditions["prefetch"].as_object_mut().unwrap().remove("conditions");
    let (status, answer) = http(&address, "POST", &path, &no_conditions.to_string()).await;
    assert!(status == 412 && answer.contains("prefetch.conditions"), "{status} {answer}");
    assert_eq!(state.audit.entries().unwrap().len(), audited);
    no_conditions["prefetch"]["conditions"] = Value::Null;
    let (status, answer) = http(&address, "POST", &path, &no_conditions.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The model's score of `carried` events (time, code, value) read straight from their codes, at `at`.
fn model_probability(
    pkg: &carecast_models::ModelPackage,
    carried: &[(i64, String, f32)],
    at: i64,
) -> carecast_models::Score {
    let inputs = pkg.events.as_ref().unwrap();
    let mut codes: Vec<String> = carried.iter().map(|(_, c, _)| c.clone()).collect();
    codes.sort();
    codes.dedup();
    let mut events: Vec<Event> = carried
        .iter()
        .map(|(t, c, v)| Event { time: *t, code: codes.iter().position(|x| x == c).unwrap() as u32, value: *v })
        .collect();
    events.sort_by_key(|e| e.time);
    let mut x = vec![f64::NAN; inputs.extractor.n_features()];
    inputs.extractor.bind(&codes).extract(&events, at, &mut x, &mut Default::default());
    let row: Vec<Input<'_>> = x.iter().map(|&v| if v.is_nan() { Input::Missing } else { Input::Number(v) }).collect();
    pkg.scorer.score(&row, &mut Workspace::default()).unwrap()
}
