//! `carecast synth`: a seeded, deterministic synthetic population for demos, scale tests and
//! planners' examples, shaped like the adult caseload of an English mental-health and community
//! trust, written as a MEDS dataset with each patient's true risk beside it.
//!
//! Dementia: a 5-year follow-up from a fixed index date. Onset follows a piecewise-constant
//! age-specific incidence, multiplied by the relative risks of the modifiable risk factors each
//! patient has. Death competes with it: a patient who dies first can no longer be diagnosed.
//! Mortality is piecewise constant too (Gompertz in age, raised by sex and by some of the same
//! risk factors), and both hazards are constant within each year of follow-up, so the first
//! event is drawn exactly and the true cumulative incidence of dementia by five years (the
//! Aalen–Johansen quantity, death accounted for) is known in closed form for every patient:
//! `sum_y S_y (d_y / t_y) (1 - exp(-t_y))`, with `d_y` the dementia hazard in year `y`, `t_y` it
//! plus mortality and `S_y` the chance of reaching year `y` free of both. Tests check fitted
//! models against it.
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
//! - Mortality: `exp(-10.8 + 0.1 age)` per person-year (about 0.8% a year at 60, 6% at 80 and
//!   16% at 90, as the ONS national life tables for England), 1.4 times for men, and relative
//!   risks of smoking 2.0, diabetes 1.8, excessive alcohol 1.7, depression 1.5, physical
//!   inactivity 1.4, obesity 1.3, living alone 1.3 and hypertension 1.2 (rounded from cohort
//!   studies' all-cause mortality; the risk factors' relative risks rescaled so that their
//!   average at 75 is 1, before the factor for men).
//!
//! Deterioration: some patients have an inpatient stay in the five years before the index date.
//! A stay has a latent severity moving linearly, `s(t) = s0 + m t` (t in days), and a hazard of
//! escalation to critical care or death of `exp(a + b s(t))` per day; observations every four
//! hours or so are noisy functions of `s(t)` chosen so that NEWS2 rises with severity (a severity
//! of 0 reads as normal vital signs, 3 as NEWS2 around 7 or more). With this hazard the risk of
//! deterioration within 24 hours of any observation has a closed form, written as the truth.

use crate::ingest::events::{EventStore, EventStoreBuilder};
use crate::rng::Rng;
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
    RiskFactor {
        code: "LIFESTYLE//PHYSICALLY_INACTIVE",
        prevalence_40: 0.25,
        prevalence_90: 0.55,
        relative_risk: 1.17,
    },
    RiskFactor { code: "ICD10//E11", prevalence_40: 0.04, prevalence_90: 0.18, relative_risk: 1.73 },
    RiskFactor { code: "ICD10//Z72.0", prevalence_40: 0.18, prevalence_90: 0.07, relative_risk: 1.3 },
    RiskFactor { code: "ICD10//I10", prevalence_40: 0.10, prevalence_90: 0.60, relative_risk: 1.2 },
    RiskFactor { code: "ICD10//E66", prevalence_40: 0.25, prevalence_90: 0.20, relative_risk: 1.3 },
    RiskFactor { code: "ICD10//F10", prevalence_40: 0.06, prevalence_90: 0.03, relative_risk: 1.18 },
    RiskFactor { code: "SOCIAL//LIVES_ALONE", prevalence_40: 0.12, prevalence_90: 0.50, relative_risk: 1.6 },
    RiskFactor { code: "ICD10//H54", prevalence_40: 0.02, prevalence_90: 0.15, relative_risk: 1.47 },
];

/// Relative risks of death of the risk factors above that raise mortality (codes as above).
const MORTALITY_RISKS: [(&str, f64); 8] = [
    ("ICD10//Z72.0", 2.0),
    ("ICD10//E11", 1.8),
    ("ICD10//F10", 1.7),
    ("ICD10//F32", 1.5),
    ("LIFESTYLE//PHYSICALLY_INACTIVE", 1.4),
    ("ICD10//E66", 1.3),
    ("SOCIAL//LIVES_ALONE", 1.3),
    ("ICD10//I10", 1.2),
];

const FOLLOW_UP_YEARS: usize = 5;
pub const DEMENTIA_CODE: &str = "ICD10//F03";
/// MEDS' own code for a death.
pub const DEATH_CODE: &str = "MEDS_DEATH";
pub const FOLLOW_UP_END_CODE: &str = "END_OF_FOLLOWUP";
pub const INDEX_CODE: &str = "CARECAST//INDEX";
pub const ADMISSION_CODE: &str = "VISIT//INPATIENT_ADMISSION";
pub const DISCHARGE_CODE: &str = "VISIT//INPATIENT_DISCHARGE";
pub const DETERIORATION_CODE: &str = "OUTCOME//DETERIORATION";

/// Deterioration hazard per day at severity `s`: `exp(A + B s)`; 1% a day at severity 0.
const HAZARD_A: f64 = -4.6;
const HAZARD_B: f64 = 1.1;

/// Cumulative hazard from day `t1` to day `t2` of a stay with severity `s0 + m t`.
fn cumulative_hazard(s0: f64, m: f64, t1: f64, t2: f64) -> f64 {
    let base = (HAZARD_A + HAZARD_B * s0).exp();
    let k = HAZARD_B * m;
    if k.abs() < 1e-9 { base * (t2 - t1) } else { base * ((k * t2).exp() - (k * t1).exp()) / k }
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

/// The same for mortality: its relative risks averaged over the population at 75.
fn mortality_scale() -> f64 {
    1.0 / MORTALITY_RISKS
        .iter()
        .map(|(code, rr)| {
            let f = RISK_FACTORS.iter().find(|f| f.code == *code).expect("a risk factor above");
            1.0 + prevalence(f, 75.0) * (rr - 1.0)
        })
        .product::<f64>()
}

/// Deaths per person-year at `age` for someone of average relative risk.
fn mortality(age: f64) -> f64 {
    (-10.8 + 0.1 * age).exp()
}

/// Scales for the two hazards, computed once per population.
#[derive(Clone, Copy)]
struct Scales {
    dementia: f64,
    death: f64,
}

/// The first event of piecewise-constant hazards (`rates[y]` per year in year `y`) after year
/// `from`, drawn exactly: its year and its time in years; `None` if none comes within the years.
fn first_event(rng: &mut Rng, rates: &[f64], from: f64) -> Option<(usize, f64)> {
    let mut start = from;
    for (y, &rate) in rates.iter().enumerate().skip(from as usize) {
        let length = (y + 1) as f64 - start;
        // P(event within what is left of year y) = 1 - exp(-rate * length); inverted at `u`.
        let u = rng.unit();
        if rate > 0.0 && u < -(-rate * length).exp_m1() {
            // Rounding may carry the time onto the year's end; it stays in year y.
            return Some((y, (start + -(-u).ln_1p() / rate).min((y + 1) as f64 - 1e-9)));
        }
        start = (y + 1) as f64;
    }
    None
}

/// The truth at one inpatient observation: the exact probability of deterioration within 24 hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeteriorationTruth {
    pub subject: i64,
    /// Microseconds since the Unix epoch: the observation (prediction) time.
    pub time: i64,
    pub risk_24h: f64,
    pub deteriorated_within_24h: bool,
}

/// One synthetic patient's truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub subject: i64,
    /// True probability of a dementia diagnosis within 5 years of the index date, death first
    /// accounted for (the cumulative incidence).
    pub dementia_risk_5y: f64,
    /// The same had no one died: `1 - exp(-cumulative dementia hazard)`, what a model that
    /// censors at death estimates; above the cumulative incidence, most in the oldest.
    pub dementia_risk_5y_ignoring_death: f64,
    pub dementia_within_5y: bool,
    pub died_within_5y: bool,
}

struct Patient {
    events: Vec<(Option<i64>, &'static str, Option<f32>)>,
    dynamic: Vec<(Option<i64>, String)>,
    truth: Truth,
    deterioration: Vec<DeteriorationTruth>,
}

/// An inpatient stay starting at `admit`: observations every ~4 hours until discharge or
/// deterioration, with the exact 24-hour risk at each observation.
fn inpatient_stay(
    rng: &mut Rng,
    subject: i64,
    admit: i64,
    age: f64,
    events: &mut Vec<(Option<i64>, &'static str, Option<f32>)>,
) -> Vec<DeteriorationTruth> {
    let day = MICROS_PER_DAY as f64;
    let s0 = rng.normal(0.3 + 0.02 * (age - 60.0), 0.8).max(-1.0);
    let m = rng.normal(0.0, 0.35);
    let length = 1.0 + rng.unit() * 9.0;
    // Draw the deterioration time by inverting the cumulative hazard at an Exp(1) draw.
    let e = -rng.unit().max(1e-300).ln();
    let (base, k) = ((HAZARD_A + HAZARD_B * s0).exp(), HAZARD_B * m);
    let onset = if k.abs() < 1e-9 {
        Some(e / base)
    } else {
        let arg = 1.0 + e * k / base;
        (arg > 0.0).then(|| arg.ln() / k)
    };
    let event = onset.filter(|&t| t < length);
    let end = event.unwrap_or(length);
    events.push((Some(admit), ADMISSION_CODE, None));
    let mut truth = Vec::new();
    let mut t = rng.unit() * 0.1;
    while t < end {
        let s = s0 + m * t;
        let time = admit + (t * day) as i64;
        let vitals = [
            ("VITAL//RESPIRATION_RATE", (16.0 + 3.5 * s + rng.normal(0.0, 2.0)).round().max(6.0)),
            ("VITAL//SPO2", (97.0 - 2.2 * s + rng.normal(0.0, 1.0)).round().clamp(70.0, 100.0)),
            ("VITAL//SUPPLEMENTAL_OXYGEN", f64::from(u8::from(s + rng.normal(0.0, 0.5) > 2.0))),
            ("VITAL//SYSTOLIC_BP", (125.0 - 11.0 * s + rng.normal(0.0, 10.0)).round().max(50.0)),
            ("VITAL//PULSE", (78.0 + 11.0 * s + rng.normal(0.0, 8.0)).round().max(30.0)),
            ("VITAL//ACVPU", f64::from(u8::from(s + rng.normal(0.0, 0.5) > 3.0))),
            ("VITAL//TEMPERATURE", ((37.0 + 0.35 * s + rng.normal(0.0, 0.35)) * 10.0).round() / 10.0),
        ];
        for (code, v) in vitals {
            events.push((Some(time), code, Some(v as f32)));
        }
        // No deterioration is recorded after the planned discharge, so the risk runs to it at most.
        let risk_24h = 1.0 - (-cumulative_hazard(s0, m, t, (t + 1.0).min(length))).exp();
        let deteriorated_within_24h = event.is_some_and(|te| te > t && te <= t + 1.0);
        truth.push(DeteriorationTruth { subject, time, risk_24h, deteriorated_within_24h });
        t += (3.0 + 2.0 * rng.unit()) / 24.0;
    }
    let end_time = admit + (end * day) as i64;
    events.push((Some(end_time), if event.is_some() { DETERIORATION_CODE } else { DISCHARGE_CODE }, None));
    truth
}

/// Generates one patient deterministically from (seed, subject).
fn patient(seed: u64, subject: i64, index: i64, scales: Scales) -> Patient {
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
    for (on, drug, p) in [
        (hypertension, "DRUG//ANTIHYPERTENSIVE", 0.75),
        (diabetes, "DRUG//METFORMIN", 0.8),
        (high_ldl, "DRUG//STATIN", 0.5),
    ] {
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
    // An inpatient stay in the five years before the index date for about one in six patients,
    // more often with age; it ends at least ten days before the index date.
    let mut deterioration = Vec::new();
    if rng.unit() < 0.08 + 0.003 * (age - 40.0) {
        let admit = history + (rng.unit() * (index - history - 10 * MICROS_PER_DAY) as f64) as i64;
        deterioration = inpatient_stay(&mut rng, subject, admit, age, &mut events);
    }
    events.push((Some(index), INDEX_CODE, None));

    // Dementia and death over 5 years of follow-up: the first of the two is drawn from their
    // summed hazard, and is dementia with the dementia hazard's share of it; after dementia,
    // death still comes at its own rate.
    let mortality_rr = scales.death
        * if female { 1.0 } else { 1.4 }
        * MORTALITY_RISKS
            .iter()
            .filter(|(code, _)| RISK_FACTORS.iter().zip(&has).any(|(f, &h)| h && f.code == *code))
            .map(|(_, rr)| rr)
            .product::<f64>();
    let dementia: Vec<f64> =
        (0..FOLLOW_UP_YEARS).map(|y| incidence(age + y as f64) * scales.dementia * relative_risk).collect();
    let death: Vec<f64> = (0..FOLLOW_UP_YEARS).map(|y| mortality(age + y as f64) * mortality_rr).collect();
    let both: Vec<f64> = dementia.iter().zip(&death).map(|(a, b)| a + b).collect();
    let (onset, died) = match first_event(&mut rng, &both, 0.0) {
        Some((y, t)) if rng.unit() < dementia[y] / both[y] => (Some(t), first_event(&mut rng, &death, t).map(|e| e.1)),
        Some((_, t)) => (None, Some(t)),
        None => (None, None),
    };
    let at = |years: f64| index + (years * MICROS_PER_YEAR) as i64;
    if let Some(t) = onset {
        events.push((Some(at(t)), DEMENTIA_CODE, None));
    }
    match died {
        Some(t) => events.push((Some(at(t)), DEATH_CODE, None)),
        // Follow-up ends a day after the 5 years, so a patient without either is a known negative.
        None => events.push((Some(at(FOLLOW_UP_YEARS as f64) + MICROS_PER_DAY), FOLLOW_UP_END_CODE, None)),
    }
    // The true cumulative incidence: free of both events into each year, times dementia's share
    // of the year's events.
    let (mut free, mut incidence_5y) = (1.0, 0.0);
    for (d, t) in dementia.iter().zip(&both) {
        incidence_5y += free * d / t * -(-t).exp_m1();
        free *= (-t).exp();
    }
    Patient {
        events,
        dynamic,
        truth: Truth {
            subject,
            dementia_risk_5y: incidence_5y,
            dementia_risk_5y_ignoring_death: -(-dementia.iter().sum::<f64>()).exp_m1(),
            dementia_within_5y: onset.is_some(),
            died_within_5y: died.is_some(),
        },
        deterioration,
    }
}

/// The index date of every synthetic patient: 1 January 2020.
pub fn index_time() -> i64 {
    crate::ingest::events::date_micros(chrono::NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid date"))
}

/// A synthetic population: events, splits (70 / 15 / 15 train / tuning / held_out by subject),
/// each patient's dementia truth and the truth at every inpatient observation.
pub struct Population {
    pub store: EventStore,
    pub splits: BTreeMap<i64, String>,
    pub truth: Vec<Truth>,
    pub deterioration: Vec<DeteriorationTruth>,
}

/// A population of `n` patients (subjects 1 to `n`) from `seed`.
pub fn population(n: usize, seed: u64) -> Population {
    population_range(1, n, seed)
}

/// Subjects `first .. first + n` of the population from `seed`. Every patient depends only on
/// the seed and their subject id, so a population generated in ranges (shards) is the same
/// population.
pub fn population_range(first: i64, n: usize, seed: u64) -> Population {
    let index = index_time();
    let scales = Scales { dementia: hazard_scale(), death: mortality_scale() };
    let patients: Vec<Patient> =
        (first..first + n as i64).into_par_iter().map(|s| patient(seed, s, index, scales)).collect();
    let mut builder = EventStoreBuilder::default();
    let mut splits = BTreeMap::new();
    let mut truth = Vec::with_capacity(n);
    let mut deterioration = Vec::new();
    for p in patients {
        let s = p.truth.subject;
        for (t, code, v) in p.events {
            builder.push(s, t, code, v);
        }
        for (t, code) in p.dynamic {
            builder.push(s, t, &code, None);
        }
        let u = Rng::for_patient(seed ^ 0x5EED, s as u64).unit();
        splits.insert(
            s,
            if u < 0.7 {
                "train"
            } else if u < 0.85 {
                "tuning"
            } else {
                "held_out"
            }
            .to_string(),
        );
        truth.push(p.truth);
        deterioration.extend(p.deterioration);
    }
    Population { store: builder.build(), splits, truth, deterioration }
}

/// Writes `carecast synth` output to `dir` a shard of `shard_size` patients at a time, so memory
/// stays bounded however large the population: MEDS data shards and metadata, `truth.parquet`
/// and `deterioration_truth.parquet`. Returns (events, dementia onsets, inpatient observations,
/// deteriorations).
pub fn write_population(
    n: usize,
    seed: u64,
    shard_size: usize,
    dir: &std::path::Path,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, u64, u64, u64)> {
    progress.set_length(n as u64);
    let mut vocabulary = std::collections::BTreeSet::new();
    let mut splits = BTreeMap::new();
    let (mut truth, mut deterioration) = (Vec::with_capacity(n), Vec::new());
    let (mut events, mut deteriorations) = (0u64, 0u64);
    let mut first = 1i64;
    let shard_size = shard_size.max(1);
    for (k, start) in (0..n).step_by(shard_size).enumerate() {
        let size = shard_size.min(n - start);
        let pop = population_range(first, size, seed);
        crate::ingest::meds::write_shard(&pop.store, dir, &k.to_string())?;
        events += pop.store.events.len() as u64;
        deteriorations +=
            pop.store.events.iter().filter(|e| pop.store.code(e.code) == DETERIORATION_CODE).count() as u64;
        vocabulary.extend(pop.store.vocabulary.iter().cloned());
        splits.extend(pop.splits);
        truth.extend(pop.truth);
        deterioration.extend(pop.deterioration);
        first += size as i64;
        progress.inc(size as u64);
    }
    let vocabulary: Vec<String> = vocabulary.into_iter().collect();
    crate::ingest::meds::write_metadata(&vocabulary, &splits, dir, "carecast-synth")?;
    write_truth(&truth, &deterioration, dir)?;
    let onsets = truth.iter().filter(|t| t.dementia_within_5y).count() as u64;
    Ok((events, onsets, deterioration.len() as u64, deteriorations))
}

/// Writes the truth beside a synthetic MEDS dataset: `truth.parquet` (dementia's cumulative
/// incidence, death accounted for, and the risk ignoring death, per patient) and
/// `deterioration_truth.parquet` (per inpatient observation).
pub fn write_truth(truth: &[Truth], deterioration: &[DeteriorationTruth], dir: &std::path::Path) -> anyhow::Result<()> {
    use polars::prelude::*;
    let mut df = DataFrame::new(
        truth.len(),
        vec![
            Column::new("subject_id".into(), truth.iter().map(|t| t.subject).collect::<Vec<_>>()),
            Column::new("dementia_risk_5y".into(), truth.iter().map(|t| t.dementia_risk_5y).collect::<Vec<_>>()),
            Column::new(
                "dementia_risk_5y_ignoring_death".into(),
                truth.iter().map(|t| t.dementia_risk_5y_ignoring_death).collect::<Vec<_>>(),
            ),
            Column::new("dementia_within_5y".into(), truth.iter().map(|t| t.dementia_within_5y).collect::<Vec<_>>()),
            Column::new("died_within_5y".into(), truth.iter().map(|t| t.died_within_5y).collect::<Vec<_>>()),
        ],
    )?;
    ParquetWriter::new(std::fs::File::create(dir.join("truth.parquet"))?).finish(&mut df)?;
    let d = deterioration;
    let time = crate::ingest::meds::timestamp_column("prediction_time", d.iter().map(|t| Some(t.time)).collect())?;
    let mut df = DataFrame::new(
        d.len(),
        vec![
            Column::new("subject_id".into(), d.iter().map(|t| t.subject).collect::<Vec<_>>()),
            time,
            Column::new("risk_24h".into(), d.iter().map(|t| t.risk_24h).collect::<Vec<_>>()),
            Column::new(
                "deteriorated_within_24h".into(),
                d.iter().map(|t| t.deteriorated_within_24h).collect::<Vec<_>>(),
            ),
        ],
    )?;
    ParquetWriter::new(std::fs::File::create(dir.join("deterioration_truth.parquet"))?).finish(&mut df)?;
    Ok(())
}
