//! `carecast synth`: a seeded, deterministic synthetic population for demos, scale tests and
//! planners' examples, shaped like the adult caseload of an English mental-health and community
//! trust, written as a MEDS dataset with each patient's true risk beside it.
//!
//! Dementia: a 5-year follow-up from a fixed index date. Onset follows a piecewise-constant
//! age-specific incidence, multiplied by the relative risks of the modifiable risk factors each
//! patient has. Because the risk factors are recorded in the data and the hazard is known, the
//! true 5-year risk of every patient is known exactly; tests check fitted models against it.
//!
//! Sources of the parameters (rounded; this is a simulation, not an estimate):
//! - Age-specific incidence per 1,000 person-years, in the range reported for England by the
//!   Cognitive Function and Ageing Study II (Matthews et al., Nat Commun 2016; 17.2 per 1,000
//!   person-years over 65), roughly doubling every five years of age.
//! - Relative risks of the Lancet Commission's modifiable risk factors (Livingston et al., Lancet
//!   2024): less education 1.6, hearing loss 1.37, high LDL cholesterol 1.27, depression 2.2,
//!   traumatic brain injury 1.66, physical inactivity 1.17, diabetes 1.73, smoking 1.3,
//!   hypertension 1.2, obesity 1.3, excessive alcohol 1.18, social isolation 1.6, visual loss 1.47.
//! - Prevalences: rounded from the Health Survey for England and QOF registers for adults over 40,
//!   rising with age where the condition does.

use crate::ingest::events::{EventStore, EventStoreBuilder};
use carecast_models::features::{MICROS_PER_DAY, MICROS_PER_YEAR};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Dementia incidence per person-year by age band (lower bound of the band, rate).
const INCIDENCE: [(f64, f64); 8] = [
    (0.0, 0.0002),
    (60.0, 0.001),
    (65.0, 0.003),
    (70.0, 0.006),
    (75.0, 0.013),
    (80.0, 0.025),
    (85.0, 0.045),
    (90.0, 0.075),
];

/// A modifiable risk factor: its code in the record, prevalence at ages 40 and 90 (linear in
/// between) and relative risk of dementia.
struct RiskFactor {
    code: &'static str,
    prevalence_40: f64,
    prevalence_90: f64,
    relative_risk: f64,
}

const RISK_FACTORS: [RiskFactor; 13] = [
    RiskFactor { code: "EDUCATION//NO_QUALIFICATIONS", prevalence_40: 0.10, prevalence_90: 0.40, relative_risk: 1.6 },
    RiskFactor { code: "ICD10//H91", prevalence_40: 0.05, prevalence_90: 0.45, relative_risk: 1.37 },
    RiskFactor { code: "LAB//HIGH_LDL", prevalence_40: 0.25, prevalence_90: 0.35, relative_risk: 1.27 },
    RiskFactor { code: "ICD10//F32", prevalence_40: 0.12, prevalence_90: 0.12, relative_risk: 2.2 },
    RiskFactor { code: "ICD10//S06", prevalence_40: 0.03, prevalence_90: 0.05, relative_risk: 1.66 },
    RiskFactor { code: "LIFESTYLE//PHYSICALLY_INACTIVE", prevalence_40: 0.25, prevalence_90: 0.55, relative_risk: 1.17 },
    RiskFactor { code: "ICD10//E11", prevalence_40: 0.04, prevalence_90: 0.18, relative_risk: 1.73 },
    RiskFactor { code: "ICD10//Z72.0", prevalence_40: 0.18, prevalence_90: 0.07, relative_risk: 1.3 },
    RiskFactor { code: "ICD10//I10", prevalence_40: 0.10, prevalence_90: 0.60, relative_risk: 1.2 },
    RiskFactor { code: "ICD10//E66", prevalence_40: 0.25, prevalence_90: 0.20, relative_risk: 1.3 },
    RiskFactor { code: "ICD10//F10", prevalence_40: 0.06, prevalence_90: 0.03, relative_risk: 1.18 },
    RiskFactor { code: "SOCIAL//LIVES_ALONE", prevalence_40: 0.12, prevalence_90: 0.50, relative_risk: 1.6 },
    RiskFactor { code: "ICD10//H54", prevalence_40: 0.02, prevalence_90: 0.15, relative_risk: 1.47 },
];

const FOLLOW_UP_YEARS: usize = 5;
pub const DEMENTIA_CODE: &str = "ICD10//F03";
pub const FOLLOW_UP_END_CODE: &str = "END_OF_FOLLOWUP";
pub const INDEX_CODE: &str = "CARECAST//INDEX";

/// SplitMix64: small, fast and seedable per patient, so output does not depend on thread count.
struct Rng(u64);

impl Rng {
    fn for_patient(seed: u64, subject: u64) -> Self {
        let mut r = Rng(seed ^ subject.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-300), self.unit());
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn incidence(age: f64) -> f64 {
    INCIDENCE.iter().rev().find(|(lo, _)| age >= *lo).map_or(INCIDENCE[0].1, |b| b.1)
}

fn prevalence(f: &RiskFactor, age: f64) -> f64 {
    let w = ((age - 40.0) / 50.0).clamp(0.0, 1.0);
    f.prevalence_40 + w * (f.prevalence_90 - f.prevalence_40)
}

/// Scales hazards so that the population's average relative risk is 1 (at age 75), keeping the
/// published incidence the population average rather than the risk of someone with no risk factors.
fn hazard_scale() -> f64 {
    1.0 / RISK_FACTORS.iter().map(|f| 1.0 + prevalence(f, 75.0) * (f.relative_risk - 1.0)).product::<f64>()
}

/// One synthetic patient's truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub subject: i64,
    /// True probability of dementia onset within 5 years of the index date.
    pub dementia_risk_5y: f64,
    pub dementia_within_5y: bool,
}

struct Patient {
    events: Vec<(Option<i64>, &'static str, Option<f32>)>,
    dynamic: Vec<(Option<i64>, String)>,
    truth: Truth,
}

/// Generates one patient deterministically from (seed, subject).
fn patient(seed: u64, subject: i64, index: i64, scale: f64) -> Patient {
    let mut rng = Rng::for_patient(seed, subject as u64);
    let mut events: Vec<(Option<i64>, &'static str, Option<f32>)> = Vec::new();
    let mut dynamic = Vec::new();
    // Age at index: adults 40-100, weighted to older people as a community trust's caseload is.
    let age = 40.0 + 60.0 * rng.unit().powf(0.7);
    let female = rng.unit() < 0.55;
    let birth = index - (age * MICROS_PER_YEAR) as i64;
    dynamic.push((Some(birth), "MEDS_BIRTH".to_string()));
    events.push((None, if female { "SEX//F" } else { "SEX//M" }, None));
    let decile = 1 + rng.below(10);
    dynamic.push((None, format!("IMD//DECILE_{decile:02}")));
    dynamic.push((None, format!("AREA//SITE_{:03}", 1 + rng.below(160))));
    // Deprivation raises the prevalence of risk factors: 1.25x in decile 1 (most deprived), 0.75x in 10.
    let deprivation = 1.0 + 0.5 * (10 - decile) as f64 / 9.0 - 0.25;

    let history = index - 5 * 365 * MICROS_PER_DAY;
    let when = |rng: &mut Rng| history + (rng.unit() * (index - history) as f64) as i64;
    let mut relative_risk = 1.0;
    let mut has = [false; RISK_FACTORS.len()];
    for (k, f) in RISK_FACTORS.iter().enumerate() {
        if rng.unit() < (prevalence(f, age) * deprivation).min(0.95) {
            has[k] = true;
            relative_risk *= f.relative_risk;
            let t = if f.code.starts_with("EDUCATION") { None } else { Some(when(&mut rng)) };
            events.push((t, f.code, None));
        }
    }
    // Measurements consistent with the recorded conditions.
    let [_, _, high_ldl, _, _, _, diabetes, _, hypertension, obesity, ..] = has;
    for _ in 0..2 + rng.below(4) {
        let sbp = rng.normal(if hypertension { 148.0 } else { 126.0 }, 12.0);
        events.push((Some(when(&mut rng)), "VITAL//SYSTOLIC_BP", Some(sbp.round() as f32)));
    }
    for _ in 0..1 + rng.below(2) {
        let bmi = rng.normal(if obesity { 33.5 } else { 25.5 }, 2.5);
        events.push((Some(when(&mut rng)), "VITAL//BMI", Some((bmi * 10.0).round() as f32 / 10.0)));
    }
    for _ in 0..usize::from(diabetes) * 3 + rng.below(2) as usize {
        let hba1c = rng.normal(if diabetes { 58.0 } else { 37.0 }, 5.0);
        events.push((Some(when(&mut rng)), "LAB//HBA1C", Some(hba1c.round() as f32)));
    }
    let ldl = rng.normal(if high_ldl { 4.3 } else { 2.9 }, 0.4);
    events.push((Some(when(&mut rng)), "LAB//LDL", Some((ldl * 10.0).round() as f32 / 10.0)));
    for (on, drug, p) in [(hypertension, "DRUG//ANTIHYPERTENSIVE", 0.75), (diabetes, "DRUG//METFORMIN", 0.8), (high_ldl, "DRUG//STATIN", 0.5)] {
        if on && rng.unit() < p {
            for _ in 0..3 {
                events.push((Some(when(&mut rng)), drug, None));
            }
        }
    }
    // Falls: about 1 in 3 people over 65 fall each year (NICE CG161).
    let falls_rate = if age >= 65.0 { 0.33 + 0.01 * (age - 65.0) } else { 0.05 };
    for _ in 0..5 {
        if rng.unit() < falls_rate {
            events.push((Some(when(&mut rng)), "EVENT//FALL", None));
        }
    }
    events.push((Some(index), INDEX_CODE, None));

    // Dementia onset over 5 years of follow-up; the true risk is 1 - exp(-cumulative hazard).
    let scale_rr = scale * relative_risk;
    let mut cumulative = 0.0;
    let mut onset = None;
    for year in 0..FOLLOW_UP_YEARS {
        let h = incidence(age + year as f64) * scale_rr;
        cumulative += h;
        if onset.is_none() && rng.unit() < 1.0 - (-h).exp() {
            onset = Some(index + ((year as f64 + rng.unit()) * MICROS_PER_YEAR) as i64);
        }
    }
    if let Some(t) = onset {
        events.push((Some(t), DEMENTIA_CODE, None));
    }
    // Follow-up ends a day after the 5 years, so a patient without onset is a known negative.
    events.push((Some(index + (FOLLOW_UP_YEARS as f64 * MICROS_PER_YEAR) as i64 + MICROS_PER_DAY), FOLLOW_UP_END_CODE, None));
    Patient {
        events,
        dynamic,
        truth: Truth { subject, dementia_risk_5y: 1.0 - (-cumulative).exp(), dementia_within_5y: onset.is_some() },
    }
}

/// The index date of every synthetic patient: 1 January 2020.
pub fn index_time() -> i64 {
    chrono::NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid date").and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros()
}

/// A population of `n` patients from `seed`: events, splits (70 / 15 / 15 train / tuning /
/// held_out by subject) and each patient's truth.
pub fn population(n: usize, seed: u64) -> (EventStore, BTreeMap<i64, String>, Vec<Truth>) {
    let index = index_time();
    let scale = hazard_scale();
    let patients: Vec<Patient> = (0..n as i64).into_par_iter().map(|s| patient(seed, s + 1, index, scale)).collect();
    let mut builder = EventStoreBuilder::default();
    let mut splits = BTreeMap::new();
    let mut truth = Vec::with_capacity(n);
    for p in patients {
        let s = p.truth.subject;
        for (t, code, v) in p.events {
            builder.push(s, t, code, v);
        }
        for (t, code) in p.dynamic {
            builder.push(s, t, &code, None);
        }
        let u = Rng::for_patient(seed ^ 0x5EED, s as u64).unit();
        splits.insert(s, if u < 0.7 { "train" } else if u < 0.85 { "tuning" } else { "held_out" }.to_string());
        truth.push(p.truth);
    }
    (builder.build(), splits, truth)
}

/// Writes the truth beside a synthetic MEDS dataset (`truth.parquet`).
pub fn write_truth(truth: &[Truth], path: &std::path::Path) -> anyhow::Result<()> {
    use polars::prelude::*;
    let mut df = DataFrame::new(truth.len(), vec![
        Column::new("subject_id".into(), truth.iter().map(|t| t.subject).collect::<Vec<_>>()),
        Column::new("dementia_risk_5y".into(), truth.iter().map(|t| t.dementia_risk_5y).collect::<Vec<_>>()),
        Column::new("dementia_within_5y".into(), truth.iter().map(|t| t.dementia_within_5y).collect::<Vec<_>>()),
    ])?;
    ParquetWriter::new(std::fs::File::create(path)?).finish(&mut df)?;
    Ok(())
}
