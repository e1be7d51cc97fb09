//! The one feature extractor: exact values on a hand-built patient, and no look-ahead (a property
//! test: adding or changing events after the prediction time never changes the features).

use carecast_models::InvalidModel;
use carecast_models::features::extract::{Event, ExtractBuffer, FeatureExtractor, STATIC};
use carecast_models::features::{FeatureSetSpec, MICROS_PER_DAY, MICROS_PER_HOUR};
use proptest::prelude::*;

const SPEC: &str = r#"
[[features]]
name = "age"
kind = "age"
unit = "years"

[[features]]
name = "female"
kind = "present"
codes = ["SEX//F"]

[[features]]
name = "dementia_ever"
kind = "present"
codes = ["ICD10//F0*"]

[[features]]
name = "falls_365d"
kind = "count"
codes = ["FALL"]
window = "365d"

[[features]]
name = "sbp_latest_24h"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "latest"
window = "24h"

[[features]]
name = "sbp_min_24h"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "min"
window = "24h"

[[features]]
name = "sbp_mean_all"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "mean"

[[features]]
name = "hba1c_trend"
kind = "measurement"
codes = ["LAB//HBA1C"]
agg = "trend"

[[features]]
name = "sbp_fitted_all"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "fitted"

[[features]]
name = "sbp_sd_24h"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "sd"
window = "24h"

[[features]]
name = "days_since_fall"
kind = "days_since"
codes = ["FALL"]

[[features]]
name = "news2"
kind = "news2"
window = "24h"

[[features]]
name = "sbp_step1_24h"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "latest"
window = "24h"
rank = 1

[[features]]
name = "sbp_step2_24h"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "latest"
window = "24h"
rank = 2

[[features]]
name = "sbp_step2"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "latest"
rank = 2

[[features]]
name = "sbp_hours_step1"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "hours_ago"
rank = 1

[[features]]
name = "sbp_hours_ago"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "hours_ago"
"#;

const VOCAB: [&str; 14] = [
    "MEDS_BIRTH",
    "SEX//F",
    "ICD10//F01.5",
    "ICD10//F03",
    "FALL",
    "VITAL//SYSTOLIC_BP",
    "LAB//HBA1C",
    "VITAL//RESPIRATION_RATE",
    "VITAL//SPO2",
    "VITAL//PULSE",
    "VITAL//TEMPERATURE",
    "VITAL//SUPPLEMENTAL_OXYGEN",
    "VITAL//ACVPU",
    "ICD10//I10",
];

fn code(c: &str) -> u32 {
    VOCAB.iter().position(|v| *v == c).unwrap() as u32
}

fn ev(time: i64, c: &str, value: f32) -> Event {
    Event { time, code: code(c), value }
}

const DAY: i64 = MICROS_PER_DAY;
const T: i64 = 20_000 * DAY; // the prediction time

fn patient() -> Vec<Event> {
    let mut e = vec![
        ev(STATIC, "SEX//F", f32::NAN),
        ev(T - 36525 * DAY / 100 * 80, "MEDS_BIRTH", f32::NAN), // exactly 80 Julian years before T
        ev(T - 900 * DAY, "ICD10//F03", f32::NAN),
        ev(T - 400 * DAY, "FALL", f32::NAN), // outside the 365-day window
        ev(T - 100 * DAY, "FALL", f32::NAN),
        ev(T - 10 * DAY, "FALL", f32::NAN),
        ev(T - 30 * DAY, "VITAL//SYSTOLIC_BP", 150.0), // outside 24 h
        ev(T - 20 * MICROS_PER_HOUR, "VITAL//SYSTOLIC_BP", 95.0),
        ev(T - 2 * MICROS_PER_HOUR, "VITAL//SYSTOLIC_BP", 105.0),
        ev(STATIC, "LAB//HBA1C", 99.0), // undated: no part of the trend
        ev(T - 2 * 365 * DAY, "LAB//HBA1C", 40.0),
        ev(T - 365 * DAY, "LAB//HBA1C", 44.0),
        ev(T - 3 * MICROS_PER_HOUR, "VITAL//RESPIRATION_RATE", 22.0), // 2
        ev(T - 3 * MICROS_PER_HOUR, "VITAL//SPO2", 95.0),             // 1
        ev(T - 3 * MICROS_PER_HOUR, "VITAL//PULSE", 95.0),            // 1
        ev(T - 3 * MICROS_PER_HOUR, "VITAL//TEMPERATURE", 38.5),      // 1
        ev(T, "ICD10//I10", f32::NAN),
    ];
    e.sort_by_key(|e| e.time);
    e
}

#[test]
fn features_of_a_known_patient() {
    let spec = FeatureSetSpec::from_toml(SPEC).unwrap();
    let extractor = FeatureExtractor::new(&spec);
    let bound = extractor.bind(&VOCAB);
    let mut out = vec![0.0; extractor.n_features()];
    bound.extract(&patient(), T, &mut out, &mut ExtractBuffer::default());
    let at = |name: &str| spec.features.iter().position(|f| f.name == name).unwrap();
    assert!((out[at("age")] - 80.0).abs() < 1e-9, "{}", out[at("age")]);
    assert_eq!(out[at("female")], 1.0);
    assert_eq!(out[at("dementia_ever")], 1.0, "prefix ICD10//F0* matches F03");
    assert_eq!(out[at("falls_365d")], 2.0);
    assert_eq!(out[at("sbp_latest_24h")], 105.0);
    assert_eq!(out[at("sbp_min_24h")], 95.0);
    assert!((out[at("sbp_mean_all")] - (150.0 + 95.0 + 105.0) / 3.0).abs() < 1e-9);
    assert!((out[at("hba1c_trend")] - 4.0 / 365.0).abs() < 1e-9, "{}", out[at("hba1c_trend")]);
    assert!((out[at("days_since_fall")] - 10.0).abs() < 1e-9);
    // The least-squares line through the three readings (days before T), at T, by the centred
    // normal equations (within the readings' range, as it is here); and the two readings' sample
    // SD.
    let (x, y) = ([-30.0, -20.0 / 24.0, -2.0 / 24.0], [150.0, 95.0, 105.0]);
    let (mx, my) = (x.iter().sum::<f64>() / 3.0, y.iter().sum::<f64>() / 3.0);
    let slope =
        (0..3).map(|i| (x[i] - mx) * (y[i] - my)).sum::<f64>() / x.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
    assert!((out[at("sbp_fitted_all")] - (my - slope * mx)).abs() < 1e-9, "{}", out[at("sbp_fitted_all")]);
    assert!((out[at("sbp_sd_24h")] - 50f64.sqrt()).abs() < 1e-9, "{}", out[at("sbp_sd_24h")]);
    // RR 22 (2) + SpO2 95 (1) + air (0) + SBP 105 (1) + pulse 95 (1) + alert (0) + 38.5 °C (1).
    assert_eq!(out[at("news2")], 6.0);
    // The blood-pressure sequence, latest first: 105 (2 h ago), 95 (20 h), 150 (30 days).
    assert_eq!(out[at("sbp_step1_24h")], 95.0);
    assert!(out[at("sbp_step2_24h")].is_nan(), "only two readings in 24 hours");
    assert_eq!(out[at("sbp_step2")], 150.0);
    assert!((out[at("sbp_hours_step1")] - 20.0).abs() < 1e-9);
    assert!((out[at("sbp_hours_ago")] - 2.0).abs() < 1e-9);
    let steps: Vec<Option<u8>> = extractor.feature_specs().iter().map(|f| f.step).collect();
    assert_eq!(steps[at("sbp_step2")], Some(2));
    assert_eq!(steps[at("sbp_hours_ago")], None, "no rank: not a sequence step");

    // 20 days earlier: the fall 10 days before T has not happened yet, and there are no vitals
    // in the 24 hours before, so NEWS2 and the latest blood pressure are missing.
    bound.extract(&patient(), T - 20 * DAY, &mut out, &mut ExtractBuffer::default());
    assert_eq!(out[at("falls_365d")], 1.0);
    assert!(out[at("news2")].is_nan() && out[at("sbp_latest_24h")].is_nan());
    assert!((out[at("age")] - (80.0 - 20.0 / 365.25)).abs() < 1e-9);
}

#[test]
fn identical_readings_vary_by_exactly_nothing() {
    // Eleven systolic pressures of 141.3 in 24 h: a sum of squares less the squared sum loses
    // the difference to rounding and reports 1.7e-6; the spread of equal readings is 0.
    let spec = FeatureSetSpec::from_toml(SPEC).unwrap();
    let extractor = FeatureExtractor::new(&spec);
    let events: Vec<Event> =
        (0..11).map(|h| ev(T - (22 - 2 * h) * MICROS_PER_HOUR, "VITAL//SYSTOLIC_BP", 141.3)).collect();
    let mut out = vec![0.0; extractor.n_features()];
    extractor.bind(&VOCAB).extract(&events, T, &mut out, &mut ExtractBuffer::default());
    let at = |name: &str| spec.features.iter().position(|f| f.name == name).unwrap();
    assert_eq!(out[at("sbp_sd_24h")], 0.0);
    assert_eq!(out[at("sbp_mean_all")], f64::from(141.3f32));
}

#[test]
fn specs_are_validated() {
    let dup = format!("{SPEC}\n[[features]]\nname = \"age\"\nkind = \"age\"\n");
    let refused = |toml: &str| FeatureSetSpec::from_toml(toml).unwrap_err();
    assert_eq!(refused(&dup), InvalidModel::new("feature `age`", "declared twice"));
    let bad_window = SPEC.replace("window = \"365d\"", "window = \"365 days\"");
    let err = refused(&bad_window);
    assert!(err.part == "syntax" && err.reason.contains("window `365 days`"), "{err}");
    let no_codes = "[[features]]\nname = \"x\"\nkind = \"count\"\ncodes = []\n";
    assert_eq!(refused(no_codes), InvalidModel::new("feature `x`", "no codes"));
    let deep = "[[features]]\nname = \"x\"\nkind = \"measurement\"\ncodes = [\"A\"]\nagg = \"latest\"\nrank = 8\n";
    assert!(refused(deep).reason.contains("rank 8"));
    let mean = deep.replace("rank = 8", "rank = 1").replace("latest", "mean");
    assert!(refused(&mean).reason.contains("agg must be"));
}

fn arb_events(max: usize) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            prop_oneof![Just(STATIC), (T - 800 * DAY)..(T + 200 * DAY)],
            0..VOCAB.len() as u32,
            prop_oneof![Just(f32::NAN), 0.0f32..200.0],
        ),
        0..max,
    )
    .prop_map(|v| v.into_iter().map(|(time, code, value)| Event { time, code, value }).collect())
}

fn extract_at(events: &[Event], t: i64) -> Vec<u64> {
    let spec = FeatureSetSpec::from_toml(SPEC).unwrap();
    let extractor = FeatureExtractor::new(&spec);
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.time);
    let mut out = vec![0.0; extractor.n_features()];
    extractor.bind(&VOCAB).extract(&sorted, t, &mut out, &mut ExtractBuffer::default());
    out.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_look_ahead(history in arb_events(60), future in arb_events(30), t_offset in -300i64..100) {
        let t = T + t_offset * DAY;
        let before = extract_at(&history, t);
        // Add events after t, and change every event already after t.
        let mut changed: Vec<Event> = history
            .iter()
            .map(|e| if e.time > t { Event { code: (e.code + 1) % VOCAB.len() as u32, value: e.value * 2.0 + 1.0, ..*e } } else { *e })
            .collect();
        changed.extend(future.into_iter().map(|e| Event { time: t + 1 + e.time.rem_euclid(300 * DAY), ..e }));
        prop_assert_eq!(before, extract_at(&changed, t));
    }
}
