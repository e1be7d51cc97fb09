//! The one feature extractor: a patient's time-sorted events and a prediction time in, a feature
//! vector out (NaN where a feature is missing). The events after the prediction time are cut off
//! before anything reads them, so look-ahead is impossible by construction; a property test
//! checks it anyway.

use super::news2::{Observations, news2};
use super::{
    AGE_POSSIBLE, Aggregate, CodePattern, EventFeature, FeatureKind, FeatureSetSpec, MAX_RANK, MICROS_PER_DAY,
    MICROS_PER_HOUR, MICROS_PER_YEAR,
};
use crate::schema::{FeatureKind as InputKind, FeatureSpec};

/// Time of a static fact (MEDS: null time): before everything, so always visible.
pub const STATIC: i64 = i64::MIN;

/// One event of one patient: time in microseconds since the Unix epoch (or [`STATIC`]), code
/// interned in a vocabulary, numeric value (NaN when there is none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub time: i64,
    pub code: u32,
    pub value: f32,
}

impl Event {
    /// A reading as an event holds it, or `None` when it is not a finite `f32`. A value finite
    /// as a double but beyond `f32`'s range would become infinite, and the extractor would then
    /// read the feature as missing rather than refuse it: callers refuse the input instead.
    pub fn value_of(reading: f64) -> Option<f32> {
        Some(reading as f32).filter(|v| v.is_finite())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vital {
    RespirationRate,
    Spo2,
    Oxygen,
    SystolicBp,
    Pulse,
    Consciousness,
    Temperature,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The event counts towards the feature.
    Match,
    /// The event is the birth event of an age feature.
    Birth,
    Vital(Vital),
}

/// A feature spec compiled for extraction; bind it to a code vocabulary to extract.
#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    features: Vec<EventFeature>,
    patterns: Vec<(CodePattern, u16, Role)>,
}

impl FeatureExtractor {
    pub fn new(spec: &FeatureSetSpec) -> Self {
        let mut patterns = Vec::new();
        for (i, f) in spec.features.iter().enumerate() {
            let i = i as u16;
            match &f.kind {
                FeatureKind::Age { birth_code } => patterns.push((CodePattern::new(birth_code), i, Role::Birth)),
                FeatureKind::Present { codes, .. }
                | FeatureKind::Count { codes, .. }
                | FeatureKind::Measurement { codes, .. }
                | FeatureKind::DaysSince { codes } => {
                    patterns.extend(codes.iter().map(|c| (CodePattern::new(c), i, Role::Match)));
                }
                FeatureKind::News2 { codes, .. } => {
                    for (code, vital) in [
                        (&codes.respiration_rate, Vital::RespirationRate),
                        (&codes.spo2, Vital::Spo2),
                        (&codes.supplemental_oxygen, Vital::Oxygen),
                        (&codes.systolic_bp, Vital::SystolicBp),
                        (&codes.pulse, Vital::Pulse),
                        (&codes.consciousness, Vital::Consciousness),
                        (&codes.temperature, Vital::Temperature),
                    ] {
                        patterns.push((CodePattern::new(code), i, Role::Vital(vital)));
                    }
                }
            }
        }
        Self { features: spec.features.clone(), patterns }
    }

    /// The model's input features: all numeric, named, with display names and units.
    pub fn feature_specs(&self) -> Vec<FeatureSpec> {
        self.features
            .iter()
            .map(|f| FeatureSpec {
                name: f.name.clone(),
                kind: InputKind::Numeric,
                display: f.display.clone(),
                unit: f.unit.clone(),
                monotone: f.monotone,
                step: match f.kind {
                    FeatureKind::Measurement { rank, .. } => rank,
                    _ => None,
                },
                factor: f.factor.clone(),
                // An age outside 0-125 years is a corrupt birth or prediction time: refused.
                possible: f.possible.or(matches!(f.kind, FeatureKind::Age { .. }).then_some(AGE_POSSIBLE)),
                plausible: f.plausible,
            })
            .collect()
    }

    pub fn n_features(&self) -> usize {
        self.features.len()
    }

    /// Resolves every pattern against a vocabulary once (code id = index), so extraction does a
    /// table look-up per event instead of string matching.
    pub fn bind<S: AsRef<str>>(&self, vocabulary: &[S]) -> BoundExtractor<'_> {
        let mut offsets = Vec::with_capacity(vocabulary.len() + 1);
        let mut roles = Vec::new();
        offsets.push(0u32);
        for code in vocabulary {
            let code = code.as_ref();
            roles.extend(self.patterns.iter().filter(|(p, _, _)| p.matches(code)).map(|&(_, f, r)| (f, r)));
            offsets.push(roles.len() as u32);
        }
        BoundExtractor { extractor: self, offsets, roles }
    }
}

/// Per-feature running state while scanning one patient's events.
#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u32,
    values: u32,
    timed_values: u32,
    /// Running mean and sum of squared deviations from it (Welford): identical readings give a
    /// standard deviation of exactly 0, where a sum of squares loses it to cancellation.
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    last_time: i64,
    last_value: f64,
    // Least-squares sums for trends over the timed values (a static value has no time), with
    // time in days before the prediction time.
    sy: f64,
    sx: f64,
    sxx: f64,
    sxy: f64,
    vitals: [(i64, f64); 7],
    /// The latest timed, valued events, a ring indexed by `values % RECENT`.
    recent: [(i64, f64); RECENT],
}

const RECENT: usize = MAX_RANK as usize + 1;

const EMPTY: Acc = Acc {
    count: 0,
    values: 0,
    timed_values: 0,
    mean: 0.0,
    m2: 0.0,
    min: f64::INFINITY,
    max: f64::NEG_INFINITY,
    last_time: STATIC,
    last_value: f64::NAN,
    sy: 0.0,
    sx: 0.0,
    sxx: 0.0,
    sxy: 0.0,
    vitals: [(STATIC, f64::NAN); 7],
    recent: [(STATIC, f64::NAN); RECENT],
};

/// Scratch state for [`BoundExtractor::extract`]; reuse it across patients.
#[derive(Debug, Default, Clone)]
pub struct ExtractBuffer {
    acc: Vec<Acc>,
    window_start: Vec<i64>,
}

/// A feature extractor bound to a vocabulary.
#[derive(Debug, Clone)]
pub struct BoundExtractor<'a> {
    extractor: &'a FeatureExtractor,
    offsets: Vec<u32>,
    roles: Vec<(u16, Role)>,
}

impl BoundExtractor<'_> {
    /// Computes the features at `prediction_time` from `events` (sorted by time) into `out`.
    pub fn extract(&self, events: &[Event], prediction_time: i64, out: &mut [f64], buf: &mut ExtractBuffer) {
        let features = &self.extractor.features;
        debug_assert!(events.windows(2).all(|w| w[0].time <= w[1].time), "events must be sorted by time");
        let t = prediction_time;
        // No look-ahead: nothing after the prediction time is ever read.
        let visible = &events[..events.partition_point(|e| e.time <= t)];

        buf.acc.clear();
        buf.acc.resize(features.len(), EMPTY);
        buf.window_start.clear();
        buf.window_start.extend(features.iter().map(|f| match &f.kind {
            FeatureKind::Present { window, .. }
            | FeatureKind::Count { window, .. }
            | FeatureKind::Measurement { window, .. }
            | FeatureKind::News2 { window, .. } => window.0.map_or(STATIC, |w| t.saturating_sub(w)),
            FeatureKind::Age { .. } | FeatureKind::DaysSince { .. } => STATIC,
        }));

        for e in visible {
            let Some(range) = self.offsets.get(e.code as usize..e.code as usize + 2) else { continue };
            for &(f, role) in &self.roles[range[0] as usize..range[1] as usize] {
                let f = f as usize;
                if e.time < buf.window_start[f] {
                    continue;
                }
                let a = &mut buf.acc[f];
                let v = f64::from(e.value);
                match role {
                    Role::Birth => a.last_time = e.time,
                    Role::Vital(vital) => {
                        if !v.is_nan() && e.time >= a.vitals[vital as usize].0 {
                            a.vitals[vital as usize] = (e.time, v);
                        }
                    }
                    Role::Match => {
                        a.count += 1;
                        if e.time != STATIC && e.time >= a.last_time {
                            a.last_time = e.time;
                        }
                        if !v.is_nan() {
                            a.values += 1;
                            let delta = v - a.mean;
                            a.mean += delta / f64::from(a.values);
                            a.m2 += delta * (v - a.mean);
                            a.min = a.min.min(v);
                            a.max = a.max.max(v);
                            if e.time >= a.last_time || a.values == 1 {
                                a.last_value = v;
                            }
                            if e.time != STATIC {
                                a.recent[a.timed_values as usize % RECENT] = (e.time, v);
                                a.timed_values += 1;
                                let x = e.time.saturating_sub(t) as f64 / MICROS_PER_DAY as f64;
                                a.sy += v;
                                a.sx += x;
                                a.sxx += x * x;
                                a.sxy += x * v;
                            }
                        }
                    }
                }
            }
        }

        for ((f, a), o) in features.iter().zip(&buf.acc).zip(out.iter_mut()) {
            *o = finish(&f.kind, a, t);
        }
    }
}

fn finish(kind: &FeatureKind, a: &Acc, t: i64) -> f64 {
    // Saturating: a corrupt time gives an absurd value the feature's limits refuse, never a wrap.
    let days_before = |time: i64| t.saturating_sub(time) as f64 / MICROS_PER_DAY as f64;
    match kind {
        FeatureKind::Age { .. } => {
            if a.last_time == STATIC {
                f64::NAN
            } else {
                t.saturating_sub(a.last_time) as f64 / MICROS_PER_YEAR
            }
        }
        FeatureKind::Present { .. } => f64::from(u8::from(a.count > 0)),
        FeatureKind::Count { .. } => f64::from(a.count),
        FeatureKind::DaysSince { .. } => {
            if a.count == 0 || a.last_time == STATIC {
                f64::NAN
            } else {
                days_before(a.last_time)
            }
        }
        FeatureKind::Measurement { agg, rank, .. } if rank.is_some() || *agg == Aggregate::HoursAgo => {
            // Events arrive in time order, so the ring's newest entry is the latest.
            let Some(back) = a.timed_values.checked_sub(u32::from(rank.unwrap_or(0)) + 1) else { return f64::NAN };
            let (time, value) = a.recent[back as usize % RECENT];
            match agg {
                Aggregate::HoursAgo => t.saturating_sub(time) as f64 / MICROS_PER_HOUR as f64,
                _ => value,
            }
        }
        FeatureKind::Measurement { agg, .. } => {
            if a.values == 0 {
                return f64::NAN;
            }
            let n = f64::from(a.values);
            match agg {
                Aggregate::Latest => a.last_value,
                Aggregate::Min => a.min,
                Aggregate::Max => a.max,
                Aggregate::Mean => a.mean,
                Aggregate::Trend | Aggregate::Fitted => {
                    let n = f64::from(a.timed_values);
                    let denom = n * a.sxx - a.sx * a.sx;
                    if a.timed_values < 2 || denom.abs() < 1e-12 {
                        return f64::NAN;
                    }
                    let slope = (n * a.sxy - a.sx * a.sy) / denom;
                    // Time is in days before the prediction time, so the intercept is the line's
                    // value now; kept within the readings' range, so that two close readings
                    // long ago cannot extrapolate to an absurd level.
                    if *agg == Aggregate::Trend { slope } else { ((a.sy - slope * a.sx) / n).clamp(a.min, a.max) }
                }
                Aggregate::Sd if a.values < 2 => f64::NAN,
                Aggregate::Sd => (a.m2 / (n - 1.0)).sqrt(),
                Aggregate::HoursAgo => unreachable!("read from the ring above"),
            }
        }
        FeatureKind::News2 { .. } => {
            let v = |k: Vital| a.vitals[k as usize].1;
            let required = [Vital::RespirationRate, Vital::Spo2, Vital::SystolicBp, Vital::Pulse, Vital::Temperature];
            if required.iter().any(|&k| v(k).is_nan()) {
                return f64::NAN;
            }
            f64::from(news2(&Observations {
                respiration_rate: v(Vital::RespirationRate),
                spo2: v(Vital::Spo2),
                on_oxygen: v(Vital::Oxygen) > 0.5,
                systolic_bp: v(Vital::SystolicBp),
                pulse: v(Vital::Pulse),
                cvpu: v(Vital::Consciousness) > 0.5,
                temperature: v(Vital::Temperature),
            }))
        }
    }
}
