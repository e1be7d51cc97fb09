//! CDS Hooks 2.0 on the server's own port, for risk flags inside the EHR. Discovery
//! (`GET /cds-services`) lists a `patient-view` service for each model trained on events;
//! `POST /cds-services/{model}` scores the patient the clinician has open from the FHIR R4
//! resources the EHR prefetched (Patient, Observations, Conditions), through the model's own
//! feature spec and the one extractor, and answers with one card: the risk band as its indicator,
//! the top clinical factors in Markdown, and a FHIR RiskAssessment to record. Every score is
//! audited before it is returned. What the EHR did not prefetch is queried from its FHIR server
//! with the access token it sent, when that server is one the trust configured
//! (`crate::fhir_server`); otherwise, or when the query fails, HTTP 412. 401 / 403 for a missing
//! or invalid bearer token, or one without the clinician role.

use crate::auth::Role;
use crate::fhir;
use crate::fhir_server::FetchError;
use crate::service::{AppState, ShadowScore, Unaudited};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use carecast_audit::{AuditRecord, SHADOW_CALLER};
use carecast_models::explain::{NamedWarning, Ranking};
use carecast_models::{Completeness, ModelPackage, Score, Workspace};
use serde_json::{Value, json};
use std::sync::Arc;

/// What each service asks the EHR to send with the request.
const PREFETCH: &[(&str, &str)] = &[
    ("patient", "Patient/{{context.patientId}}"),
    ("observations", "Observation?patient={{context.patientId}}&_sort=-date&_count=1000"),
    ("conditions", "Condition?patient={{context.patientId}}"),
];
/// Longest card summary the specification allows ("<140 characters").
const SUMMARY: usize = 139;
/// Clinical factors listed in a card.
const FACTORS: usize = 5;

pub fn routes(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/cds-services", axum::routing::get(discovery))
        .route("/cds-services/{id}", axum::routing::post(patient_view))
        .with_state(state)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn discovery(State(state): State<Arc<AppState>>) -> Response {
    let prefetch: serde_json::Map<String, Value> = PREFETCH.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let models = state.store.registry().models().unwrap_or_default();
    let services: Vec<Value> = models
        .iter()
        .filter_map(|m| state.store.get(m, None).ok())
        .filter(|pkg| pkg.events.is_some())
        .map(|pkg| {
            json!({
                "hook": "patient-view",
                "id": pkg.manifest.name,
                "title": format!("Carecast: {}", pkg.manifest.task.description),
                "description": format!("Risk of {}, with the clinical factors behind it (model {}).", pkg.manifest.task.outcome, pkg.manifest.name),
                "prefetch": prefetch,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "services": services }))
}

/// A refusal: the HTTP status and a message naming the field.
type Refusal = (StatusCode, String);

fn bad(reason: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, reason.into())
}

async fn patient_view(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    // The EHR's bearer token, as for gRPC: a clinician's call.
    let authorized = match &state.auth {
        None => Ok(None),
        Some(auth) => auth.check_headers(&headers, Role::Clinician).map(Some).map_err(Refusal::from),
    };
    let request = match authorized.and_then(|subject| service(&state, &id).map(|pkg| (subject, pkg))) {
        Ok((subject, pkg)) => read_request(&state, &body).await.map(|call| (subject, pkg, call)),
        Err(refusal) => Err(refusal),
    };
    // Announced once authenticated and every input is at hand, as for gRPC: a refused caller,
    // or a call waiting on its FHIR server, never holds a commit.
    let scored = request.and_then(|(subject, pkg, call)| {
        let announced = state.audit.announce();
        card(&state, &pkg, &call, subject).map(|scored| (scored, announced))
    });
    let result = match scored {
        Ok(((card, record), announced)) => match state.commit(announced, &record.records()).await {
            Ok(()) => Ok(card),
            Err(Unaudited) => {
                Err((StatusCode::SERVICE_UNAVAILABLE, "audit trail unavailable; score withheld".to_string()))
            }
        },
        Err(refusal) => Err(refusal),
    };
    crate::metrics::answered("CdsHooks", started.elapsed().as_secs_f64());
    match result {
        Ok(card) => json_response(StatusCode::OK, &card),
        Err((status, message)) => {
            crate::metrics::refused_http("CdsHooks", status.as_u16());
            json_response(status, &json!({ "error": message }))
        }
    }
}

/// The audit record of a card's score, owned until it is written.
struct Audited {
    caller: String,
    patient: String,
    model: String,
    version: String,
    probability: f64,
    band: &'static str,
    /// The shadow version's score of the same call, recorded under [`SHADOW_CALLER`].
    shadow: Option<(String, ShadowScore)>,
}

impl Audited {
    fn records(&self) -> Vec<AuditRecord<'_>> {
        let time = chrono::Utc::now();
        let served = AuditRecord {
            time,
            caller: &self.caller,
            patient_key: &self.patient,
            model: &self.model,
            model_version: &self.version,
            probability: self.probability,
            risk_band: self.band,
        };
        let shadow = self.shadow.as_ref().map(|(caller, s)| AuditRecord {
            caller,
            model_version: &s.version,
            probability: s.probability,
            risk_band: s.band,
            ..served.clone()
        });
        std::iter::once(served).chain(shadow).collect()
    }
}

/// A patient-view call with every input the card is built from at hand.
struct Call {
    /// The EHR's id of the patient, checked to be a FHIR id.
    patient: String,
    resources: Value,
    observations: Value,
    conditions: Value,
}

/// The call's inputs: what the EHR prefetched, and what it did not queried from its FHIR server,
/// the queries side by side. Each prefetch key is required: sent (`null` is the EHR saying it
/// has no such data), or fetched; otherwise 412, never a card built without it.
async fn read_request(state: &AppState, body: &[u8]) -> Result<Call, Refusal> {
    let request: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request body: not JSON ({e})")))?;
    if request.get("hook").and_then(Value::as_str) != Some("patient-view") {
        return Err(bad("hook: this service answers `patient-view`"));
    }
    let patient = request
        .pointer("/context/patientId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("context.patientId: required"))?;
    fhir::check_id("context.patientId", patient).map_err(|e| bad(e.to_string()))?;
    let (resources, observations, conditions) = tokio::try_join!(
        input(state, &request, patient, "patient"),
        input(state, &request, patient, "observations"),
        input(state, &request, patient, "conditions"),
    )?;
    Ok(Call { patient: patient.to_string(), resources, observations, conditions })
}

/// One prefetch key's resource: as sent, else queried by its template (with the checked patient
/// id in it) from the request's `fhirServer` when that is one this service may query.
async fn input(state: &AppState, request: &Value, patient: &str, key: &str) -> Result<Value, Refusal> {
    let unmet = |why: String| (StatusCode::PRECONDITION_FAILED, format!("prefetch.{key}: not prefetched, and {why}"));
    match request.get("prefetch").and_then(|p| p.get(key)) {
        Some(Value::Null) if key == "patient" => return Err(bad("prefetch.patient: null; the patient is required")),
        // CDS Hooks: a search with nothing to return is sent as `null`.
        Some(Value::Null) => return Ok(json!({ "resourceType": "Bundle", "type": "searchset", "entry": [] })),
        Some(sent) => return Ok(sent.clone()),
        None => {}
    }
    let no_server = || unmet("no `fhirServer` this service is configured to query".to_string());
    let servers = state.fhir_servers.as_ref().ok_or_else(no_server)?;
    let template = PREFETCH.iter().find(|(k, _)| *k == key).map(|(_, t)| *t).expect("a PREFETCH key");
    servers.fetch(request, &template.replace("{{context.patientId}}", patient)).await.map_err(|e| match e {
        FetchError::NotAllowed => no_server(),
        e => unmet(e.to_string()),
    })
}

/// The service's model: one trained on events.
fn service(state: &AppState, id: &str) -> Result<Arc<ModelPackage>, Refusal> {
    let pkg = state.store.get(id, None).map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    match pkg.events {
        Some(_) => Ok(pkg),
        None => Err((StatusCode::NOT_FOUND, format!("model `{id}` is not trained on events; it has no CDS service"))),
    }
}

fn card(
    state: &AppState,
    pkg: &ModelPackage,
    call: &Call,
    subject: Option<String>,
) -> Result<(Value, Audited), Refusal> {
    let patient = call.patient.as_str();
    let inputs = pkg.events.as_ref().expect("a service's model is trained on events");
    let fhir_error = |e: fhir::FhirError| bad(format!("prefetch.{e}"));
    let observations = fhir::bundle("observations", &call.observations, "Observation").map_err(fhir_error)?;
    let conditions = fhir::bundle("conditions", &call.conditions, "Condition").map_err(fhir_error)?;
    // The model's features now, from the patient's events, by the extractor it was trained with.
    let now = chrono::Utc::now();
    let events =
        fhir::events(&call.resources, &observations, &conditions, now.timestamp_micros()).map_err(fhir_error)?;
    let row = inputs.row(&events.codes, &events.events, now.timestamp_micros());
    let mut ws = Workspace::default();
    let score = pkg.scorer.score(&row, &mut ws).map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    state.drift.observe(pkg, &row, score.probability);
    let shadow_row = |p: &ModelPackage| match &p.events {
        Some(inputs) => Ok(inputs.row(&events.codes, &events.events, now.timestamp_micros())),
        None => Err("the shadow version is not trained on events".to_string()),
    };
    let shadow = state.shadow(pkg, &score, shadow_row, &mut ws);
    let completeness = pkg.scorer.completeness(&score);

    let band = score.band.as_str();
    let explained = pkg.scorer.explain(&row, &score, Ranking { features: 0, factors: FACTORS });
    let top: Vec<String> = explained.factors.iter().map(|f| format!("{} ({:+.2})", f.reason, f.contribution)).collect();
    let assessment = fhir::risk_assessment(&fhir::Assessment {
        patient,
        model: &pkg.manifest.name,
        version: &pkg.manifest.version,
        algorithm: &pkg.manifest.algorithm,
        outcome: &pkg.manifest.task.outcome,
        probability: score.probability,
        band,
        at: now,
        horizon: inputs.horizon,
        rationale: top.join("; "),
    });
    let indicator = match (band, completeness.is_incomplete()) {
        ("high", _) => "critical",
        ("moderate", _) | (_, true) => "warning",
        _ => "info",
    };
    let card = json!({ "cards": [{
        "summary": summary(pkg, score.probability, band, completeness),
        "indicator": indicator,
        "detail": detail(pkg, &score, &top, &explained.warnings, completeness, events.read_as_now),
        "source": { "label": format!("Carecast {} v{}", pkg.manifest.name, pkg.manifest.version) },
        // Required by CDS Hooks 2.0 whenever a card has suggestions.
        "selectionBehavior": "at-most-one",
        "suggestions": [{
            "label": "Record this risk assessment",
            "actions": [{ "type": "create", "description": "A FHIR RiskAssessment of this score", "resource": assessment }],
        }],
    }]});
    // The caller is the authenticated token's subject (bounded by the authenticator), never the
    // request's own unverified `context.userId`; the EHR's patient id reaches the audit only as
    // the trust's keyed pseudonym.
    let caller = subject.unwrap_or_else(|| "cds-hooks (unauthenticated demo)".to_string());
    let patient = state.pseudonyms.pseudonym("fhir", patient);
    let audited = Audited {
        patient,
        model: pkg.manifest.name.clone(),
        version: pkg.manifest.version.clone(),
        probability: score.probability,
        shadow: shadow.map(|s| (format!("{SHADOW_CALLER}{caller}"), s)),
        caller,
        band,
    };
    Ok((card, audited))
}

fn percent(p: f64) -> String {
    if p < 0.01 { "<1%".into() } else { format!("{:.0}%", p * 100.0) }
}

/// One line under the specification's 140 characters: band, probability and outcome, said to
/// be from an incomplete record when most expected inputs were imputed.
fn summary(pkg: &ModelPackage, probability: f64, band: &str, completeness: Completeness) -> String {
    let mut band = band.to_string();
    band[..1].make_ascii_uppercase();
    let line = if completeness.is_incomplete() {
        let Completeness { imputed, expected } = completeness;
        format!(
            "Incomplete record ({imputed} of {expected} inputs missing): {band} risk ({}): {}",
            percent(probability),
            pkg.manifest.task.outcome
        )
    } else {
        format!("{band} risk ({}): {}", percent(probability), pkg.manifest.task.outcome)
    };
    if line.chars().count() <= SUMMARY {
        return line;
    }
    let mut cut: String = line.chars().take(SUMMARY - 1).collect();
    cut.push('…');
    cut
}

/// The card's Markdown: an incomplete record first, then the probability, the main factors,
/// values to check, inputs not recorded and records read as now.
fn detail(
    pkg: &ModelPackage,
    score: &Score,
    top: &[String],
    warnings: &[NamedWarning],
    completeness: Completeness,
    read_as_now: usize,
) -> String {
    let (probability, band) = (score.probability, score.band.as_str());
    let mut md = String::new();
    if completeness.is_incomplete() {
        md.push_str(&format!(
            "**Incomplete record:** {} of the {} inputs this model expects were not recorded, so this estimate leans on the \
             training population and cannot rule risk out. Record the missing observations and reassess.\n\n",
            completeness.imputed, completeness.expected
        ));
    }
    md.push_str(&format!(
        "**{}** probability of {} (risk band **{band}**; model {} v{}).\n\nMain factors (contribution to the log-odds):\n",
        percent(probability),
        pkg.manifest.task.outcome,
        pkg.manifest.name,
        pkg.manifest.version
    ));
    for t in top {
        md.push_str(&format!("- {t}\n"));
    }
    use carecast_models::preprocess::WarningKind;
    let (missing, checks): (Vec<&NamedWarning>, Vec<_>) =
        warnings.iter().partition(|w| w.kind == WarningKind::MissingImputed);
    if !checks.is_empty() {
        md.push_str("\nCheck:\n");
        for w in checks {
            md.push_str(&format!("- {}: {}\n", w.display_name, w.message));
        }
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|w| w.display_name.as_str()).collect();
        md.push_str(&format!("\nNot recorded, scored as missing: {}.\n", names.join(", ")));
    }
    if read_as_now > 0 {
        md.push_str(&format!(
            "\n{read_as_now} record(s) were time-stamped after this server's clock (within the {} minutes allowed for clock skew) and were read as taken now.\n",
            carecast_models::clock::CLOCK_SKEW_MICROS / 60_000_000
        ));
    }
    md
}
