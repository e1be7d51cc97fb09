//! FHIR R4 in and out. In: a patient's Patient, Observation and Condition resources (a CDS Hooks
//! prefetch) as the coded events a model's feature spec reads. Out: a score as a RiskAssessment.
//!
//! Observations are matched by LOINC code ([`LOINC`]) and converted by their UCUM unit,
//! conditions by ICD-10 code (`ICD10//F03`).
//! The birth date is cut to its month before it becomes an event (as ingest does), and nothing
//! read here is logged.

use carecast_models::clock;
use carecast_models::features::extract::{Event, STATIC};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

/// How a value in one UCUM unit becomes the event's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Convert {
    /// `value * scale + offset`.
    Linear { scale: f64, offset: f64 },
    /// Inhaled oxygen flow: any flow above 0 is "on supplemental oxygen" (1), else 0.
    AnyFlow,
}

const SAME: Convert = Convert::Linear { scale: 1.0, offset: 0.0 };
/// HbA1c: IFCC (mmol/mol) = 10.929 × (NGSP/DCCT % − 2.15), the IFCC–NGSP master equation.
const HBA1C_PERCENT: Convert = Convert::Linear { scale: 10.929, offset: -2.15 * 10.929 };
/// Cholesterol: mg/dL to mmol/L by its molar mass, 386.65 g/mol.
const CHOLESTEROL_MG_DL: Convert = Convert::Linear { scale: 10.0 / 386.65, offset: 0.0 };
/// Temperature: °F to °C.
const FAHRENHEIT: Convert = Convert::Linear { scale: 5.0 / 9.0, offset: -32.0 * 5.0 / 9.0 };

/// A LOINC observation Carecast's feature specs read: the event it becomes and, by UCUM unit
/// code, how its value becomes the event's unit (the unit the feature specs declare). A unit not
/// listed is refused, never guessed. Coded observations (level of consciousness) have no units.
#[derive(Debug, Clone, Copy)]
pub struct Loinc {
    pub code: &'static str,
    pub event: &'static str,
    pub units: &'static [(&'static str, Convert)],
}

/// The LOINC observations Carecast's feature specs read.
pub const LOINC: &[Loinc] = &[
    Loinc { code: "8867-4", event: "VITAL//PULSE", units: &[("/min", SAME)] },
    Loinc { code: "9279-1", event: "VITAL//RESPIRATION_RATE", units: &[("/min", SAME)] },
    Loinc { code: "59408-5", event: "VITAL//SPO2", units: &[("%", SAME)] },
    Loinc { code: "2708-6", event: "VITAL//SPO2", units: &[("%", SAME)] },
    Loinc { code: "8480-6", event: "VITAL//SYSTOLIC_BP", units: &[("mm[Hg]", SAME)] },
    Loinc { code: "8310-5", event: "VITAL//TEMPERATURE", units: &[("Cel", SAME), ("[degF]", FAHRENHEIT)] },
    Loinc { code: "39156-5", event: "VITAL//BMI", units: &[("kg/m2", SAME)] },
    // HbA1c in mmol/mol (IFCC), as UK laboratories report it; in % (NGSP/DCCT) elsewhere.
    Loinc { code: "59261-8", event: "LAB//HBA1C", units: &[("mmol/mol", SAME), ("%", HBA1C_PERCENT)] },
    Loinc { code: "4548-4", event: "LAB//HBA1C", units: &[("%", HBA1C_PERCENT), ("mmol/mol", SAME)] },
    // LDL cholesterol in mmol/L (UK), or in mg/dL (calculated, direct assay).
    Loinc { code: "22748-8", event: "LAB//LDL", units: &[("mmol/L", SAME), ("mg/dL", CHOLESTEROL_MG_DL)] },
    Loinc { code: "13457-7", event: "LAB//LDL", units: &[("mg/dL", CHOLESTEROL_MG_DL), ("mmol/L", SAME)] },
    Loinc { code: "18262-6", event: "LAB//LDL", units: &[("mg/dL", CHOLESTEROL_MG_DL), ("mmol/L", SAME)] },
    // Level of consciousness: Alert is 0, anything else (new confusion, V, P, U) 1.
    Loinc { code: "67775-7", event: "VITAL//ACVPU", units: &[] },
    // Inhaled oxygen flow rate: above 0 is "on supplemental oxygen" (1).
    Loinc { code: "3151-8", event: "VITAL//SUPPLEMENTAL_OXYGEN", units: &[("L/min", Convert::AnyFlow)] },
];
const LOINC_SYSTEM: &str = "http://loinc.org";
const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";
const ICD10_SYSTEMS: &[&str] =
    &["http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-uk", "http://hl7.org/fhir/sid/icd-10-cm"];
/// The longest unit or code echoed in an error.
const ECHO: usize = 24;

/// A resource that cannot be read, naming where and why (never a patient's value).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FhirError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FhirError {
    FhirError { field: field.into(), reason: reason.into() }
}

/// A vocabulary term (a unit, a code) fit to quote in an error: short, printable ASCII.
fn quote(term: &str) -> String {
    let clean: String = term.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(ECHO).collect();
    if clean.len() < term.len() { format!("`{clean}…`") } else { format!("`{clean}`") }
}

/// One patient's events: codes by id, and the events sorted by time.
#[derive(Debug, Default)]
pub struct PatientEvents {
    pub codes: Vec<String>,
    pub events: Vec<Event>,
    /// Observations stamped after the server's clock, within the allowed skew, read as now.
    pub read_as_now: usize,
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

fn object<'a>(field: &str, v: &'a Value) -> Result<&'a Map<String, Value>, FhirError> {
    v.as_object().ok_or_else(|| err(field, "expected a JSON object"))
}

/// An optional element of a JSON type; present with another type is an error, not an absence.
fn optional<'a, T>(
    o: &'a Map<String, Value>,
    field: &str,
    key: &str,
    kind: &str,
    get: impl Fn(&'a Value) -> Option<T>,
) -> Result<Option<T>, FhirError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => get(v).map(Some).ok_or_else(|| err(format!("{field}.{key}"), format!("expected {kind}"))),
    }
}

/// The resources of a Bundle (a prefetch's search result), checking their type. An `entry`
/// that is not an array, or an entry that is not an object holding a resource, is refused: read
/// as empty, it would score the patient as if nothing were recorded.
pub fn bundle<'a>(name: &str, bundle: &'a Value, resource_type: &str) -> Result<Vec<&'a Value>, FhirError> {
    let b = object(name, bundle)?;
    if b.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(err(format!("{name}.resourceType"), "expected a Bundle"));
    }
    let entries = optional(b, name, "entry", "an array", Value::as_array)?.map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = format!("{name}.entry[{i}]");
            let r = object(&field, e)?.get("resource").ok_or_else(|| err(&field, "no resource"))?;
            match object(&format!("{field}.resource"), r)?.get("resourceType").and_then(Value::as_str) {
                Some(t) if t == resource_type => Ok(r),
                _ => Err(err(format!("{field}.resource.resourceType"), format!("expected {resource_type}"))),
            }
        })
        .collect()
}

/// Checks a FHIR resource id: 1 to 64 letters, digits, `-` and `.` (FHIR R4 `id`), not dots alone
/// (`..` in a FHIR server's URL would name another path).
pub fn check_id(field: &str, id: &str) -> Result<(), FhirError> {
    let allowed = id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if (1..=64).contains(&id.len()) && allowed && !id.chars().all(|c| c == '.') {
        Ok(())
    } else {
        Err(err(field, "not a FHIR id (1 to 64 letters, digits, `-` and `.`)"))
    }
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

/// The `(system, code)` pairs of a CodeableConcept, refusing any other shape: a `code` sent as
/// a plain string would otherwise match nothing and the observation would vanish unremarked.
fn codings<'a>(field: &str, concept: &'a Value) -> Result<Vec<(&'a str, &'a str)>, FhirError> {
    let c = object(field, concept).map_err(|_| err(field, "expected a CodeableConcept (an object with `coding`)"))?;
    let list =
        optional(c, field, "coding", "an array of Codings", Value::as_array)?.map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for (i, coding) in list.iter().enumerate() {
        let at = format!("{field}.coding[{i}]");
        let coding = object(&at, coding)?;
        let system = optional(coding, &at, "system", "a string", Value::as_str)?;
        let code = optional(coding, &at, "code", "a string", Value::as_str)?;
        if let (Some(s), Some(c)) = (system, code) {
            out.push((s, c));
        }
    }
    Ok(out)
}

/// A recorded time checked against the server's clock, read as now within the allowed skew.
fn as_of(field: &str, time: i64, now: i64, out: &mut PatientEvents) -> Result<i64, FhirError> {
    let (time, moved) = clock::as_of(time, now).map_err(|e| err(field, e.to_string()))?;
    out.read_as_now += usize::from(moved);
    Ok(time)
}

/// The patient's events as of `now`: birth month and sex from `patient`, LOINC-coded
/// observations in their units, ICD-10 conditions. Codes Carecast does not read are skipped (a
/// model reads what its spec names); a malformed resource, an unknown unit or a time outside the
/// clock's window is refused, naming the field.
pub fn events(
    patient: &Value,
    observations: &[&Value],
    conditions: &[&Value],
    now: i64,
) -> Result<PatientEvents, FhirError> {
    let mut out = PatientEvents::default();
    let p = object("patient", patient)?;
    if p.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        return Err(err("patient.resourceType", "expected Patient"));
    }
    if let Some(birth) = optional(p, "patient", "birthDate", "a FHIR date", Value::as_str)? {
        let month = birth.get(..7).ok_or_else(|| err("patient.birthDate", "not a FHIR date"))?;
        let time = instant("patient.birthDate", month)?;
        clock::check(time, now).map_err(|e| err("patient.birthDate", e.to_string()))?;
        out.push(time, "MEDS_BIRTH", f32::NAN);
    }
    match optional(p, "patient", "gender", "a string", Value::as_str)? {
        Some("female") => out.push(STATIC, "SEX//F", f32::NAN),
        Some("male") => out.push(STATIC, "SEX//M", f32::NAN),
        _ => {}
    }
    for (i, o) in observations.iter().enumerate() {
        let field = format!("observations[{i}]");
        let obs = object(&field, o)?;
        if matches!(optional(obs, &field, "status", "a string", Value::as_str)?, Some("entered-in-error" | "cancelled"))
        {
            continue;
        }
        // The observation itself, and each component (a blood-pressure panel's systolic).
        let components =
            optional(obs, &field, "component", "an array", Value::as_array)?.map(Vec::as_slice).unwrap_or_default();
        let parts = std::iter::once((field.clone(), *o))
            .chain(components.iter().enumerate().map(|(j, c)| (format!("{field}.component[{j}]"), c)));
        let mut time = None;
        for (at, part) in parts {
            let part_obj = object(&at, part)?;
            let Some(concept) = part_obj.get("code") else {
                return Err(err(format!("{at}.code"), "required"));
            };
            let coded = codings(&format!("{at}.code"), concept)?;
            let Some(loinc) = coded
                .iter()
                .find_map(|&(s, c)| (s == LOINC_SYSTEM).then(|| LOINC.iter().find(|l| l.code == c)).flatten())
            else {
                continue;
            };
            if part_obj.contains_key("dataAbsentReason") && !part_obj.keys().any(|k| k.starts_with("value")) {
                continue;
            }
            let value = observation_value(&at, loinc, part_obj)?;
            let t = match time {
                Some(t) => t,
                None => {
                    let when = obs
                        .get("effectiveDateTime")
                        .or_else(|| obs.get("effectiveInstant"))
                        .or_else(|| obs.get("effectivePeriod").and_then(|p| p.get("start")));
                    let Some(when) = when.and_then(Value::as_str) else {
                        return Err(err(format!("{field}.effective[x]"), "required, as a dateTime"));
                    };
                    let t = as_of(
                        &format!("{field}.effective[x]"),
                        instant(&format!("{field}.effective[x]"), when)?,
                        now,
                        &mut out,
                    )?;
                    *time.insert(t)
                }
            };
            out.push(t, loinc.event, value);
        }
    }
    for (i, c) in conditions.iter().enumerate() {
        let field = format!("conditions[{i}]");
        let cond = object(&field, c)?;
        let status = match cond.get("verificationStatus") {
            Some(v) => codings(&format!("{field}.verificationStatus"), v)?.first().map(|&(_, c)| c),
            None => None,
        };
        if matches!(status, Some("entered-in-error" | "refuted")) {
            continue;
        }
        let Some(concept) = cond.get("code") else { continue };
        let Some(code) = codings(&format!("{field}.code"), concept)?
            .into_iter()
            .find_map(|(s, code)| ICD10_SYSTEMS.contains(&s).then_some(code))
        else {
            continue;
        };
        let when = match optional(cond, &field, "onsetDateTime", "a dateTime", Value::as_str)? {
            Some(w) => Some(w),
            None => optional(cond, &field, "recordedDate", "a dateTime", Value::as_str)?,
        };
        let time = match when {
            Some(w) => as_of(&format!("{field}.onset[x]"), instant(&format!("{field}.onset[x]"), w)?, now, &mut out)?,
            None => STATIC,
        };
        out.push(time, &format!("ICD10//{code}"), f32::NAN);
    }
    out.events.sort_by_key(|e| e.time);
    Ok(out)
}

/// An observation's value in its event's unit.
fn observation_value(field: &str, loinc: &Loinc, o: &Map<String, Value>) -> Result<f32, FhirError> {
    if let Some(q) = o.get("valueQuantity") {
        let q = object(&format!("{field}.valueQuantity"), q)?;
        let value = q
            .get("value")
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
            .ok_or_else(|| err(format!("{field}.valueQuantity.value"), "required, a number"))?;
        let (unit_field, unit) = ucum_unit(field, q)?;
        let Some(&(_, convert)) = loinc.units.iter().find(|(u, _)| *u == unit) else {
            let known: Vec<&str> = loinc.units.iter().map(|(u, _)| *u).collect();
            return Err(err(
                unit_field,
                format!(
                    "unit {} is not one Carecast converts for LOINC {} (UCUM: {})",
                    quote(&unit),
                    loinc.code,
                    known.join(", ")
                ),
            ));
        };
        return match convert {
            Convert::Linear { scale, offset } => Event::value_of(value * scale + offset)
                .ok_or_else(|| err(format!("{field}.valueQuantity.value"), "beyond the range of a measurement")),
            Convert::AnyFlow => Ok(f32::from(u8::from(value > 0.0))),
        };
    }
    match o.get("valueCodeableConcept") {
        Some(concept) if loinc.event == "VITAL//ACVPU" => {
            let coded = codings(&format!("{field}.valueCodeableConcept"), concept)?;
            let alert = coded.iter().any(|(_, c)| c.eq_ignore_ascii_case("A") || *c == "LA9340-6")
                || concept
                    .get("text")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.to_ascii_lowercase().starts_with("alert"));
            Ok(if alert { 0.0 } else { 1.0 })
        }
        _ => Err(err(format!("{field}.value[x]"), "required: a valueQuantity with a UCUM unit")),
    }
}

/// A Quantity's UCUM unit code: `code` (with `system` UCUM, or none), else the `unit` text when it
/// is a UCUM code itself. Annotations in braces (`{beats}/min`) carry no meaning in UCUM.
fn ucum_unit(field: &str, q: &Map<String, Value>) -> Result<(String, String), FhirError> {
    let field = format!("{field}.valueQuantity");
    let system = optional(q, &field, "system", "a string", Value::as_str)?;
    let code = optional(q, &field, "code", "a string", Value::as_str)?;
    let (unit_field, unit) = match (system, code) {
        (Some(s), Some(_)) if s != UCUM_SYSTEM => {
            return Err(err(format!("{field}.system"), format!("expected {UCUM_SYSTEM} (UCUM)")));
        }
        (_, Some(c)) => (format!("{field}.code"), c),
        (_, None) => match optional(q, &field, "unit", "a string", Value::as_str)? {
            Some(u) => (format!("{field}.unit"), u),
            None => {
                return Err(err(
                    format!("{field}.code"),
                    "required: the value's UCUM unit (e.g. `/min`, `mm[Hg]`, `Cel`)",
                ));
            }
        },
    };
    let mut plain = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for ch in unit.trim().chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(ch),
            _ => {}
        }
    }
    Ok((unit_field, plain))
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
