//! FHIR observations into events, checked against LOINC's published table (codes, the UCUM
//! units they are reported in, written here from LOINC, not from Carecast's own table) and
//! published clinical equivalences: HbA1c 6.5% is 48 mmol/mol and 7.0% is 53 mmol/mol (IFCC–NGSP
//! master equation, as UK laboratories report them); LDL cholesterol 100 mg/dL is 2.59 mmol/L;
//! 98.6 °F is 37 °C. Malformed resources, unknown units and times off the clock are refused
//! naming the field.

use carecast_serving::fhir;
use serde_json::{Value, json};

const NOW: i64 = 1_796_000_000_000_000; // 2026-11-30T00:53:20Z
const AN_HOUR_AGO: &str = "2026-11-29T23:53:20Z";

fn patient() -> Value {
    json!({ "resourceType": "Patient", "id": "p1", "birthDate": "1950-06-15", "gender": "female" })
}

fn observation(loinc: &str, value: f64, unit: Option<&str>) -> Value {
    let mut q = json!({ "value": value });
    if let Some(u) = unit {
        q["system"] = json!("http://unitsofmeasure.org");
        q["code"] = json!(u);
    }
    json!({
        "resourceType": "Observation", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": loinc }] },
        "effectiveDateTime": AN_HOUR_AGO, "valueQuantity": q,
    })
}

/// The single event an observation becomes: its code and value.
fn one(o: &Value) -> Result<(String, f32), String> {
    let e = fhir::events(&patient(), &[o], &[], NOW).map_err(|e| e.to_string())?;
    let mut valued = e.events.iter().filter(|x| !x.value.is_nan());
    let x = valued.next().ok_or("no valued event")?;
    assert!(valued.next().is_none());
    Ok((e.codes[x.code as usize].clone(), x.value))
}

#[test]
fn loinc_codes_in_their_published_units_become_the_features_units() {
    // (LOINC, long common name per LOINC, UCUM unit, value, event, value in the event's unit)
    let cases: &[(&str, &str, &str, f64, &str, f64)] = &[
        ("8867-4", "Heart rate", "/min", 72.0, "VITAL//PULSE", 72.0),
        ("9279-1", "Respiratory rate", "/min", 18.0, "VITAL//RESPIRATION_RATE", 18.0),
        ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 95.0, "VITAL//SPO2", 95.0),
        ("8480-6", "Systolic blood pressure", "mm[Hg]", 120.0, "VITAL//SYSTOLIC_BP", 120.0),
        ("8310-5", "Body temperature", "Cel", 37.2, "VITAL//TEMPERATURE", 37.2),
        ("8310-5", "Body temperature", "[degF]", 98.6, "VITAL//TEMPERATURE", 37.0),
        ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 27.1, "VITAL//BMI", 27.1),
        ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 6.5, "LAB//HBA1C", 48.0),
        ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 7.0, "LAB//HBA1C", 53.0),
        ("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol", "mmol/mol", 48.0, "LAB//HBA1C", 48.0),
        (
            "13457-7",
            "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
            "mg/dL",
            100.0,
            "LAB//LDL",
            2.59,
        ),
        (
            "18262-6",
            "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
            "mg/dL",
            130.0,
            "LAB//LDL",
            3.36,
        ),
        ("3151-8", "Inhaled oxygen flow rate", "L/min", 2.0, "VITAL//SUPPLEMENTAL_OXYGEN", 1.0),
        ("3151-8", "Inhaled oxygen flow rate", "L/min", 0.0, "VITAL//SUPPLEMENTAL_OXYGEN", 0.0),
    ];
    for &(loinc, name, unit, value, event, want) in cases {
        let (code, got) = one(&observation(loinc, value, Some(unit))).unwrap();
        assert_eq!(code, event, "{loinc} {name}");
        // Published equivalences are rounded: HbA1c to the mmol/mol, LDL to 0.01 mmol/L.
        let tolerance = if event == "LAB//HBA1C" { 0.5 } else { 0.005 };
        assert!((f64::from(got) - want).abs() <= tolerance, "{loinc} {name}: {value} {unit} became {got}, want {want}");
    }
    // An annotation carries no meaning in UCUM; the `unit` text is read when it is a UCUM code.
    assert_eq!(one(&observation("8867-4", 72.0, Some("{beats}/min"))).unwrap(), ("VITAL//PULSE".into(), 72.0));
    let mut text_unit = observation("8310-5", 37.5, None);
    text_unit["valueQuantity"]["unit"] = json!("Cel");
    assert_eq!(one(&text_unit).unwrap(), ("VITAL//TEMPERATURE".into(), 37.5));
}

#[test]
fn unknown_or_missing_units_and_malformed_resources_are_refused_by_field() {
    let refused = |o: Value, field: &str, reason: &str| {
        let e = one(&o).unwrap_err();
        assert!(e.contains(field) && e.contains(reason), "want `{field}` and `{reason}` in: {e}");
    };
    refused(
        observation("4548-4", 6.5, Some("mg/dL")),
        "observations[0].valueQuantity.code",
        "not one Carecast converts",
    );
    refused(observation("8867-4", 72.0, None), "observations[0].valueQuantity.code", "required");
    refused(observation("8310-5", 310.0, Some("K")), "observations[0].valueQuantity.code", "Cel");
    let mut other_system = observation("8867-4", 72.0, Some("/min"));
    other_system["valueQuantity"]["system"] = json!("http://snomed.info/sct");
    refused(other_system, "observations[0].valueQuantity.system", "UCUM");
    let mut text_value = observation("8867-4", 72.0, Some("/min"));
    text_value["valueQuantity"]["value"] = json!("72");
    refused(text_value, "observations[0].valueQuantity.value", "number");
    // Finite as JSON, infinite as the f32 an event holds.
    refused(observation("8867-4", 1e39, Some("/min")), "observations[0].valueQuantity.value", "range");
    let mut string_code = observation("8867-4", 72.0, Some("/min"));
    string_code["code"] = json!("8867-4");
    refused(string_code, "observations[0].code", "CodeableConcept");
    let mut coding_object = observation("8867-4", 72.0, Some("/min"));
    coding_object["code"]["coding"] = json!({ "system": "http://loinc.org", "code": "8867-4" });
    refused(coding_object, "observations[0].code.coding", "array");
    let mut no_time = observation("8867-4", 72.0, Some("/min"));
    no_time.as_object_mut().unwrap().remove("effectiveDateTime");
    refused(no_time, "observations[0].effective[x]", "required");
    // A unit is quoted short and printable, never at length.
    let long = "x".repeat(500);
    let e = one(&observation("8867-4", 72.0, Some(&long))).unwrap_err();
    assert!(e.len() < 300, "{e}");

    // Bundles: `entry` not an array, an entry not an object, an entry of another type.
    for (entry, field) in [
        (json!({ "resource": {} }), "observations.entry"),
        (json!("x"), "observations.entry"),
        (json!(["x"]), "observations.entry[0]"),
    ] {
        let b = json!({ "resourceType": "Bundle", "entry": entry });
        let e = fhir::bundle("observations", &b, "Observation").unwrap_err().to_string();
        assert!(e.starts_with(field), "{e}");
    }
    let b = json!({ "resourceType": "Bundle", "entry": [{ "resource": patient() }] });
    assert!(fhir::bundle("observations", &b, "Observation").unwrap_err().to_string().contains("expected Observation"));
    let empty = json!({ "resourceType": "Bundle", "type": "searchset", "total": 0 });
    assert!(fhir::bundle("observations", &empty, "Observation").unwrap().is_empty());
}

#[test]
fn times_off_the_servers_clock_are_refused_and_a_small_skew_is_read_as_now() {
    let at = |offset_s: i64| chrono::DateTime::from_timestamp_micros(NOW + offset_s * 1_000_000).unwrap().to_rfc3339();
    let mut ahead = observation("8867-4", 72.0, Some("/min"));
    ahead["effectiveDateTime"] = json!(at(90));
    let e = fhir::events(&patient(), &[&ahead], &[], NOW).unwrap();
    assert_eq!(e.read_as_now, 1);
    assert!(e.events.iter().any(|x| x.time == NOW && x.value == 72.0), "a record 90 s ahead is read as now");
    ahead["effectiveDateTime"] = json!(at(600));
    let err = fhir::events(&patient(), &[&ahead], &[], NOW).unwrap_err().to_string();
    assert!(err.starts_with("observations[0].effective[x]") && err.contains("clock"), "{err}");

    let mut old = patient();
    old["birthDate"] = json!("1800-01-01");
    let err = fhir::events(&old, &[], &[], NOW).unwrap_err().to_string();
    assert!(err.starts_with("patient.birthDate") && err.contains("1900"), "{err}");
    old["birthDate"] = json!(19500615);
    assert!(fhir::events(&old, &[], &[], NOW).unwrap_err().to_string().starts_with("patient.birthDate"));
}
