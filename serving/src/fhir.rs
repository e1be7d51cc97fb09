//! FHIR R4 in and out. In: a patient's Patient, Observation and Condition resources (a CDS Hooks
//! prefetch) as the coded events a model's feature spec reads. Out: a score as a RiskAssessment.
//!
//! Observations are matched by LOINC code ([`LOINC`]), conditions by ICD-10 code (`ICD10//F03`).
//! The birth date is cut to its month before it becomes an event (as ingest does), and nothing
//! read here is logged.

use carecast_models::features::extract::{Event, STATIC};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

/// The LOINC observations Carecast's feature specs read, and the event code each becomes.
pub const LOINC: &[(&str, &str)] = &[
    ("8867-4", "VITAL//PULSE"),
    ("9279-1", "VITAL//RESPIRATION_RATE"),
    ("59408-5", "VITAL//SPO2"),
    ("2708-6", "VITAL//SPO2"),
    ("8480-6", "VITAL//SYSTOLIC_BP"),
    ("8310-5", "VITAL//TEMPERATURE"),
    ("39156-5", "VITAL//BMI"),
    ("4548-4", "LAB//HBA1C"),
    ("13457-7", "LAB//LDL"),
    ("18262-6", "LAB//LDL"),
    // Level of consciousness: Alert is 0, anything else (new confusion, V, P, U) 1.
    ("67775-7", "VITAL//ACVPU"),
    // Inhaled oxygen flow rate: above 0 is "on supplemental oxygen" (1).
    ("3151-8", "VITAL//SUPPLEMENTAL_OXYGEN"),
];
const LOINC_SYSTEM: &str = "http://loinc.org";
const ICD10_SYSTEMS: &[&str] = &["http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk", "http://hl7.org/fhir/sid/icd-10-cm"];

/// A resource that cannot be read, naming where and why (never the value).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FhirError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FhirError {
    FhirError { field: field.into(), reason: reason.into() }
}

/// One patient's events: codes by id, and the events sorted by time.
#[derive(Debug, Default)]
pub struct PatientEvents {
    pub codes: Vec<String>,
    pub events: Vec<Event>,
}

impl PatientEvents {
    fn push(&mut self, time: i64, code: &str, value: f32) {
        let id = match self.codes.iter().position(|c| c == code) {
            Some(i) => i,
            None => {
                self.codes.push(code.to_string());
                self.codes.len() - 1
            }
        };
        self.events.push(Event { time, code: id as u32, value });
    }
}

/// The resources of a Bundle (a prefetch's search result), checking their type.
pub fn bundle<'a>(name: &str, bundle: &'a Value, resource_type: &str) -> Result<Vec<&'a Value>, FhirError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(err(name, "expected a Bundle"));
    }
    let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let r = e.get("resource").ok_or_else(|| err(format!("{name}.entry[{i}]"), "no resource"))?;
            match r.get("resourceType").and_then(Value::as_str) {
                Some(t) if t == resource_type => Ok(r),
                _ => Err(err(format!("{name}.entry[{i}]"), format!("expected a {resource_type}"))),
            }
        })
        .collect()
}

/// A FHIR dateTime (`2024`, `2024-03`, `2024-03-05` or with a time and zone) in microseconds.
pub fn instant(field: &str, text: &str) -> Result<i64, FhirError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    let padded = match text.len() {
        4 => format!("{text}-01-01"),
        7 => format!("{text}-01"),
        _ => text.to_string(),
    };
    NaiveDate::parse_from_str(&padded, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_micros())
        .map_err(|_| err(field, "not a FHIR date or dateTime"))
}

fn codes(concept: &Value) -> impl Iterator<Item = (&str, &str)> {
    concept.get("coding").and_then(Value::as_array).into_iter().flatten().filter_map(|c| Some((c.get("system")?.as_str()?, c.get("code")?.as_str()?)))
}

/// The patient's events: birth month and sex from `patient`, LOINC-coded observations, ICD-10
/// conditions. Unknown codes are skipped (a model reads what its spec names).
pub fn events(patient: &Value, observations: &[&Value], conditions: &[&Value]) -> Result<PatientEvents, FhirError> {
    let mut out = PatientEvents::default();
    if patient.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        return Err(err("patient", "expected a Patient"));
    }
    if let Some(birth) = patient.get("birthDate").and_then(Value::as_str) {
        let month = birth.get(..7).ok_or_else(|| err("patient.birthDate", "not a FHIR date"))?;
        out.push(instant("patient.birthDate", month)?, "MEDS_BIRTH", f32::NAN);
    }
    match patient.get("gender").and_then(Value::as_str) {
        Some("female") => out.push(STATIC, "SEX//F", f32::NAN),
        Some("male") => out.push(STATIC, "SEX//M", f32::NAN),
        _ => {}
    }
    for (i, o) in observations.iter().enumerate() {
        let field = format!("observations[{i}]");
        if matches!(o.get("status").and_then(Value::as_str), Some("entered-in-error" | "cancelled")) {
            continue;
        }
        let when = o.get("effectiveDateTime").or_else(|| o.get("effectiveInstant")).or_else(|| o.pointer("/effectivePeriod/start"));
        let Some(when) = when.and_then(Value::as_str) else { return Err(err(format!("{field}.effective[x]"), "required")) };
        let time = instant(&format!("{field}.effective[x]"), when)?;
        // The observation itself, and each component (a blood-pressure panel's systolic).
        let parts = std::iter::once(*o).chain(o.get("component").and_then(Value::as_array).into_iter().flatten());
        for part in parts {
            let Some(code) = part.get("code").into_iter().flat_map(codes).find_map(|(s, c)| {
                (s == LOINC_SYSTEM).then(|| LOINC.iter().find(|(l, _)| *l == c).map(|(_, ours)| *ours)).flatten()
            }) else {
                continue;
            };
            let value = observation_value(code, part).ok_or_else(|| err(format!("{field}.value[x]"), "no numeric value"))?;
            out.push(time, code, value);
        }
    }
    for (i, c) in conditions.iter().enumerate() {
        let field = format!("conditions[{i}]");
        let status = c.pointer("/verificationStatus/coding/0/code").and_then(Value::as_str);
        if matches!(status, Some("entered-in-error" | "refuted")) {
            continue;
        }
        let Some(code) = c.get("code").into_iter().flat_map(codes).find_map(|(s, code)| ICD10_SYSTEMS.contains(&s).then_some(code)) else {
            continue;
        };
        let when = c.get("onsetDateTime").or_else(|| c.get("recordedDate")).and_then(Value::as_str);
        let time = when.map(|w| instant(&format!("{field}.onset[x]"), w)).transpose()?.unwrap_or(STATIC);
        out.push(time, &format!("ICD10//{code}"), f32::NAN);
    }
    out.events.sort_by_key(|e| e.time);
    Ok(out)
}

fn observation_value(code: &str, o: &Value) -> Option<f32> {
    if let Some(v) = o.pointer("/valueQuantity/value").and_then(Value::as_f64) {
        return Some(match code {
            "VITAL//SUPPLEMENTAL_OXYGEN" => f32::from(u8::from(v > 0.0)),
            _ => v as f32,
        });
    }
    let concept = o.get("valueCodeableConcept")?;
    (code == "VITAL//ACVPU").then(|| {
        let alert = codes(concept).any(|(_, c)| c.eq_ignore_ascii_case("A") || c == "LA9340-6")
            || concept.get("text").and_then(Value::as_str).is_some_and(|t| t.to_ascii_lowercase().starts_with("alert"));
        if alert { 0.0 } else { 1.0 }
    })
}

/// The FHIR R4 qualitative risk code of a band.
pub fn qualitative_risk(band: &str) -> &'static str {
    match band {
        "high" => "high",
        "moderate" => "moderate",
        _ => "low",
    }
}

/// What a RiskAssessment says about one score.
pub struct Assessment<'a> {
    pub patient: &'a str,
    pub model: &'a str,
    pub version: &'a str,
    pub algorithm: &'a str,
    pub outcome: &'a str,
    pub probability: f64,
    pub band: &'a str,
    pub at: DateTime<Utc>,
    pub horizon: Option<i64>,
    pub rationale: String,
}

/// A FHIR R4 RiskAssessment (final) for the score.
pub fn risk_assessment(a: &Assessment<'_>) -> Value {
    let mut prediction = json!({
        "outcome": { "text": a.outcome },
        "probabilityDecimal": a.probability,
        "qualitativeRisk": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/risk-probability",
            "code": qualitative_risk(a.band),
        }]},
        "rationale": a.rationale,
    });
    if let Some(h) = a.horizon {
        let end = a.at + chrono::Duration::microseconds(h);
        prediction["whenPeriod"] = json!({ "start": a.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "end": end.to_rfc3339_opts(chrono::SecondsFormat::Micros, true) });
    }
    json!({
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": { "reference": format!("Patient/{}", a.patient) },
        "occurrenceDateTime": a.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "method": { "text": format!("Carecast {} v{} ({})", a.model, a.version, a.algorithm) },
        "prediction": [prediction],
    })
}
