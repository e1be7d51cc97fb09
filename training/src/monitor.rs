//! Watching a deployed model (`carecast monitor`): its scores on the audit trail judged against
//! the outcomes that came back (`audit::outcomes`), period by period and version by version:
//! observed against expected cases, calibration intercept and slope, AUROC with DeLong's
//! interval; for periods whose outcomes are not yet due, a label-free estimate of AUROC from the
//! calibrated probabilities (confidence-based performance estimation, as NannyML's CBPE);
//! a risk-adjusted CUSUM for calibration drift (Steiner et al., Biostatistics 2000); and input
//! and score drift from the servers' live tallies (`models::drift`).
//!
//! A score is judged once its outcome came (within the task's horizon after it: an event) or its
//! horizon has passed without one (no event); until then it is pending. Nothing is dropped
//! uncounted: outcomes for keys never scored, outcomes before every score of their patient,
//! outcomes at the very time of a score (which came first cannot be told) and scores of patients
//! who had already had the outcome are each counted and reported.

pub mod report;

use crate::evaluate::{auroc_delong, auroc_interval, calibration, logit};
use crate::rng::Rng;
use carecast_audit::Entry;
use carecast_audit::outcomes::Outcome;
use carecast_models::ModelPackage;
use carecast_models::drift::{Drift, Reference, Tally};
use carecast_models::features::CodePattern;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The periods scores are summarised by, by when they were scored (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

impl Period {
    /// The first day of the period holding `day`.
    pub fn start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Period::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
            Period::Month => day.with_day(1).expect("every month has a first day"),
        }
    }
}

/// The CUSUM's alternative hypotheses: the odds of the outcome multiplied by this (risks
/// underestimated), or divided by it (overestimated).
pub const CUSUM_ODDS_RATIO: f64 = 1.2;
/// The share of simulated histories of a calibrated model allowed to alarm (see [`Cusum`]).
pub const FALSE_ALARM: f64 = 0.01;
/// Simulated histories behind the threshold.
const SIMULATIONS: usize = 1000;

/// What to judge the scores against: checked before any record is read.
#[derive(Debug, Clone)]
pub struct Watch {
    pub model: String,
    /// Outcome codes (a trailing `*` matches a prefix), as the task spec writes them.
    pub codes: Vec<String>,
    /// How long after a score its outcome counts, in microseconds.
    pub horizon_micros: i64,
    pub period: Period,
    /// Scores whose horizon ends after this are pending.
    pub now: DateTime<Utc>,
}

impl Watch {
    /// The package's own outcome codes and horizon (an event task's `task.toml`), unless
    /// given; a flat-table task names neither, so both must then be given.
    pub fn for_package(
        pkg: &ModelPackage,
        codes: Vec<String>,
        horizon: Option<&str>,
        period: Period,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let task: Option<toml::Value> = std::fs::read_to_string(pkg.dir.join(carecast_models::package::TASK))
            .ok()
            .and_then(|t| toml::from_str(&t).ok());
        let field = |name: &str| task.as_ref().and_then(|t| t.get(name)).cloned();
        let codes = if codes.is_empty() {
            field("outcome_codes")
                .and_then(|c| c.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()))
                .unwrap_or_default()
        } else {
            codes
        };
        anyhow::ensure!(
            !codes.is_empty() && codes.iter().all(|c| !c.trim().is_empty() && c != "*"),
            "outcome codes: model `{}`'s task names none (a flat-table task); give the outcome's codes with --outcome-code",
            pkg.manifest.name
        );
        let horizon = match horizon {
            Some(h) => h.to_string(),
            None => field("horizon").and_then(|h| h.as_str().map(str::to_string)).ok_or_else(|| {
                anyhow::anyhow!(
                    "horizon: model `{}`'s task states none (a flat-table task); give it with --horizon (e.g. 30d)",
                    pkg.manifest.name
                )
            })?,
        };
        let horizon_micros = carecast_models::features::Window::try_from(horizon.clone())
            .ok()
            .and_then(|w| w.0)
            .filter(|&h| h > 0)
            .ok_or_else(|| anyhow::anyhow!("horizon `{horizon}`: a duration such as 24h, 30d or 5y"))?;
        Ok(Watch { model: pkg.manifest.name.clone(), codes, horizon_micros, period, now })
    }

    fn horizon(&self) -> Duration {
        Duration::microseconds(self.horizon_micros)
    }
}

/// What became of one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The outcome came within the horizon.
    Event,
    /// The horizon passed without it.
    NoEvent,
    /// Neither yet.
    Pending,
    /// The patient had had the outcome before the score (left out, as training leaves out
    /// prediction times after the outcome).
    PriorOutcome,
    /// An outcome at the very time of the score: which came first cannot be told.
    Ambiguous,
}

/// A score from the trail and its verdict.
#[derive(Debug, Clone)]
pub struct Judged {
    pub version: String,
    pub time: DateTime<Utc>,
    pub probability: f64,
    pub verdict: Verdict,
}

/// What became of the outcomes received (those with the model's codes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// In the ledger with one of the model's codes.
    pub outcomes: u64,
    /// Judged at least one score an event.
    pub matched: u64,
    /// For a patient key this model never scored.
    pub unknown_key: u64,
    /// Before every score of their patient.
    pub before_every_score: u64,
    /// At the very time of a score.
    pub at_score_time: u64,
    /// After every score's horizon: a real outcome, too late to judge any score.
    pub after_every_horizon: u64,
    /// In the ledger with other codes (another model's outcomes).
    pub other_codes: u64,
}

/// Judges every score of the watched model on the trail against the outcomes.
pub fn judge(entries: &[Entry], outcomes: &[Outcome], watch: &Watch) -> (Vec<Judged>, OutcomeCounts) {
    let patterns: Vec<CodePattern> = watch.codes.iter().map(|c| CodePattern::new(c)).collect();
    let horizon = watch.horizon();
    let mut counts = OutcomeCounts::default();
    let mut by_key: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for o in outcomes {
        if patterns.iter().any(|p| p.matches(&o.code)) {
            counts.outcomes += 1;
            by_key.entry(o.patient_key.as_str()).or_default().push(o.time);
        } else {
            counts.other_codes += 1;
        }
    }
    by_key.values_mut().for_each(|t| t.sort_unstable());
    let scores: Vec<&Entry> = entries.iter().filter(|e| e.is_score() && e.model == watch.model).collect();
    let mut score_times: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for s in scores.iter().filter(|s| !s.is_shadow()) {
        score_times.entry(s.patient_key.as_str()).or_default().push(s.time);
    }
    let judged = scores
        .iter()
        .map(|s| {
            let times = by_key.get(s.patient_key.as_str()).map_or(&[][..], Vec::as_slice);
            let verdict = if times.contains(&s.time) {
                Verdict::Ambiguous
            } else if times.first().is_some_and(|&t| t < s.time) {
                Verdict::PriorOutcome
            } else if times.iter().any(|&t| t > s.time && t <= s.time + horizon) {
                Verdict::Event
            } else if s.time + horizon <= watch.now {
                Verdict::NoEvent
            } else {
                Verdict::Pending
            };
            // A shadow version's scores are judged as its own series, apart from what was served.
            let version = if s.is_shadow() { format!("{} (shadow)", s.model_version) } else { s.model_version.clone() };
            Judged { version, time: s.time, probability: s.probability, verdict }
        })
        .collect();
    for (key, times) in &by_key {
        let scored = score_times.get(key).map_or(&[][..], Vec::as_slice);
        for &t in times {
            if scored.is_empty() {
                counts.unknown_key += 1;
            } else if scored.contains(&t) {
                counts.at_score_time += 1;
            } else if scored.iter().all(|&s| t < s) {
                counts.before_every_score += 1;
            } else if scored.iter().any(|&s| t > s && t <= s + horizon) {
                counts.matched += 1;
            } else {
                counts.after_every_horizon += 1;
            }
        }
    }
    (judged, counts)
}

/// An estimate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// One model version's scores of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodSummary {
    pub version: String,
    /// The period's first day.
    pub period: NaiveDate,
    pub scores: u64,
    /// Judged: an event or not.
    pub judged: u64,
    pub pending: u64,
    /// Left out: prior outcome or ambiguous.
    pub excluded: u64,
    pub observed: u64,
    /// Sum of the judged scores' probabilities.
    pub expected: f64,
    /// Observed / expected, with Byar's 95% interval for the observed count.
    pub observed_expected: Option<Interval>,
    /// Logistic recalibration of the outcome on the scores' log-odds (1 and 0 are ideal).
    pub calibration_slope: Option<f64>,
    pub calibration_intercept: Option<f64>,
    /// With DeLong's interval; needs judged scores with and without the outcome.
    pub auroc: Option<Interval>,
    /// Estimated from the probabilities alone, assuming the model is calibrated (CBPE): what
    /// can be said before the outcomes are due. Over every score of the period.
    pub estimated_auroc: Option<f64>,
    pub estimated_cases: f64,
}

/// Byar's approximation to the exact Poisson interval of `observed`, over `expected`.
fn observed_expected(observed: u64, expected: f64) -> Option<Interval> {
    if expected <= 0.0 {
        return None;
    }
    let (o, z) = (observed as f64, crate::evaluate::Z_975);
    let lower = if observed == 0 { 0.0 } else { o * (1.0 - 1.0 / (9.0 * o) - z / (3.0 * o.sqrt())).powi(3) };
    let o1 = o + 1.0;
    let upper = o1 * (1.0 - 1.0 / (9.0 * o1) + z / (3.0 * o1.sqrt())).powi(3);
    Some(Interval { estimate: o / expected, lower: lower / expected, upper: upper / expected })
}

/// The AUROC a calibrated model would show on these probabilities: over every pair, the chance
/// the one with the outcome scores higher (ties count half), each pair weighted by the
/// probability that exactly its first member has the outcome. O(n log n).
pub fn expected_auroc(p: &[f64]) -> Option<f64> {
    let mut sorted = p.to_vec();
    sorted.sort_by(f64::total_cmp);
    let total_negative: f64 = sorted.iter().map(|p| 1.0 - p).sum();
    let (mut numerator, mut denominator, mut below) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let j = i + sorted[i..].iter().take_while(|&&q| q == sorted[i]).count();
        let tie_negative: f64 = sorted[i..j].iter().map(|p| 1.0 - p).sum();
        for &pi in &sorted[i..j] {
            // Pairs with every lower score, and half of those tied (itself left out).
            numerator += pi * (below + 0.5 * (tie_negative - (1.0 - pi)));
            denominator += pi * (total_negative - (1.0 - pi));
        }
        below += tie_negative;
        i = j;
    }
    (denominator > 0.0).then(|| numerator / denominator)
}

/// Summarises the judged scores by version and period.
pub fn summarise(judged: &[Judged], period: Period) -> Vec<PeriodSummary> {
    let mut groups: BTreeMap<(String, NaiveDate), Vec<&Judged>> = BTreeMap::new();
    for j in judged {
        groups.entry((j.version.clone(), period.start(j.time.date_naive()))).or_default().push(j);
    }
    groups
        .into_iter()
        .map(|((version, period), scores)| {
            let count = |v: Verdict| scores.iter().filter(|j| j.verdict == v).count() as u64;
            let known: Vec<&&Judged> =
                scores.iter().filter(|j| matches!(j.verdict, Verdict::Event | Verdict::NoEvent)).collect();
            let y: Vec<bool> = known.iter().map(|j| j.verdict == Verdict::Event).collect();
            let p: Vec<f64> = known.iter().map(|j| j.probability).collect();
            let observed = y.iter().filter(|&&e| e).count() as u64;
            let expected: f64 = p.iter().sum();
            let both = observed > 0 && (observed as usize) < y.len();
            let (slope, intercept) = if both {
                let (s, i) = calibration(&y, &p.iter().map(|&p| logit(p)).collect::<Vec<_>>());
                (Some(s), Some(i))
            } else {
                (None, None)
            };
            let auroc = both.then(|| {
                let (auc, se) = auroc_delong(&y, &p);
                let [lower, upper] = auroc_interval(auc, se);
                Interval { estimate: auc, lower, upper }
            });
            let all: Vec<f64> = scores
                .iter()
                .filter(|j| !matches!(j.verdict, Verdict::PriorOutcome | Verdict::Ambiguous))
                .map(|j| j.probability)
                .collect();
            PeriodSummary {
                version,
                period,
                scores: scores.len() as u64,
                judged: y.len() as u64,
                pending: count(Verdict::Pending),
                excluded: count(Verdict::PriorOutcome) + count(Verdict::Ambiguous),
                observed,
                expected,
                observed_expected: observed_expected(observed, expected),
                calibration_slope: slope,
                calibration_intercept: intercept,
                auroc,
                estimated_auroc: expected_auroc(&all),
                estimated_cases: all.iter().sum(),
            }
        })
        .collect()
}

/// A risk-adjusted CUSUM of one version's judged scores, in the order they were scored: each
/// adds its log-likelihood ratio for the odds of the outcome being [`CUSUM_ODDS_RATIO`] times
/// (upper chart) or 1 / that (lower chart) what the model says, floored at 0. The threshold is
/// set by simulation: outcomes drawn from the scores' own probabilities (a calibrated model)
/// [`SIMULATIONS`] times, it is the level that at most [`FALSE_ALARM`] of those histories
/// reach on either chart. So over the span monitored, a calibrated model alarms with
/// probability about 1%, whatever its case mix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cusum {
    pub version: String,
    pub threshold: f64,
    /// Each period's highest value of each chart.
    pub periods: Vec<CusumPeriod>,
    /// The first alarm: when, and which way.
    pub alarm: Option<Alarm>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CusumPeriod {
    pub period: NaiveDate,
    pub upper: f64,
    pub lower: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    /// The period of the score that crossed the threshold.
    pub period: NaiveDate,
    /// `more outcomes than predicted` or `fewer outcomes than predicted`.
    pub direction: String,
}

/// The two charts' weights for one score: (upper, lower).
fn weights(p: f64, event: bool) -> (f64, f64) {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let w = |r: f64| if event { r.ln() } else { 0.0 } - (1.0 - p + r * p).ln();
    (w(CUSUM_ODDS_RATIO), w(1.0 / CUSUM_ODDS_RATIO))
}

/// The CUSUM of each version's judged scores.
pub fn cusum(judged: &[Judged], period: Period) -> Vec<Cusum> {
    let mut by_version: BTreeMap<&str, Vec<&Judged>> = BTreeMap::new();
    for j in judged.iter().filter(|j| matches!(j.verdict, Verdict::Event | Verdict::NoEvent)) {
        by_version.entry(&j.version).or_default().push(j);
    }
    by_version
        .into_iter()
        .map(|(version, mut scores)| {
            scores.sort_by_key(|j| j.time);
            let p: Vec<f64> = scores.iter().map(|j| j.probability).collect();
            let threshold = threshold(&p);
            let (mut up, mut down) = (0.0f64, 0.0f64);
            let mut periods: Vec<CusumPeriod> = Vec::new();
            let mut alarm = None;
            for j in scores {
                let (wu, wd) = weights(j.probability, j.verdict == Verdict::Event);
                up = (up + wu).max(0.0);
                down = (down + wd).max(0.0);
                let start = period.start(j.time.date_naive());
                match periods.last_mut() {
                    Some(last) if last.period == start => {
                        last.upper = last.upper.max(up);
                        last.lower = last.lower.max(down);
                    }
                    _ => periods.push(CusumPeriod { period: start, upper: up, lower: down }),
                }
                if alarm.is_none() && up.max(down) > threshold {
                    let direction =
                        if up > threshold { "more outcomes than predicted" } else { "fewer outcomes than predicted" };
                    alarm = Some(Alarm { period: start, direction: direction.into() });
                }
            }
            Cusum { version: version.to_string(), threshold, periods, alarm }
        })
        .collect()
}

/// The level that at most [`FALSE_ALARM`] of [`SIMULATIONS`] histories of a calibrated model
/// reach, for scores `p` in order. Seeded by the scores, so a report is reproducible.
fn threshold(p: &[f64]) -> f64 {
    let seed = p.iter().fold(p.len() as u64, |h, x| h.rotate_left(5) ^ x.to_bits());
    let mut highest: Vec<f64> = (0..SIMULATIONS)
        .map(|s| {
            let mut rng = Rng::for_patient(seed, s as u64);
            let (mut up, mut down, mut top) = (0.0f64, 0.0f64, 0.0f64);
            for &pi in p {
                let (wu, wd) = weights(pi, rng.unit() < pi);
                up = (up + wu).max(0.0);
                down = (down + wd).max(0.0);
                top = top.max(up).max(down);
            }
            top
        })
        .collect();
    highest.sort_by(f64::total_cmp);
    highest[((1.0 - FALSE_ALARM) * SIMULATIONS as f64).ceil() as usize - 1]
}

/// One version's live input drift in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodDrift {
    pub version: String,
    pub period: NaiveDate,
    pub drift: Drift,
}

/// One day's live counts of one version (as a server writes them, `models::Registry::live_dir`).
#[derive(Debug, Clone)]
pub struct DayTally {
    pub version: String,
    pub day: NaiveDate,
    pub tally: Tally,
}

/// The live tallies added up by version and period and compared with the
/// version's training reference. A version without a reference, or a tally in other bins than
/// its reference's, is refused by name.
pub fn drift_by_period(
    tallies: &[DayTally],
    references: &BTreeMap<String, Reference>,
    period: Period,
) -> anyhow::Result<Vec<PeriodDrift>> {
    let mut sums: BTreeMap<(String, NaiveDate), Tally> = BTreeMap::new();
    for DayTally { version, day, tally } in tallies {
        let reference = references.get(version).ok_or_else(|| {
            anyhow::anyhow!("live counts of version {version}: its package has no training reference")
        })?;
        anyhow::ensure!(tally.fits(reference), "live counts of version {version} ({day}): not in its reference's bins");
        sums.entry((version.clone(), period.start(*day)))
            .or_insert_with(|| Tally::new(reference))
            .merge(tally)
            .expect("checked to fit");
    }
    Ok(sums
        .into_iter()
        .map(|((version, period), tally)| {
            let drift = tally.drift(&references[&version]);
            PeriodDrift { version, period, drift }
        })
        .collect())
}

/// How a shadow version's scores compared with the served version's on the same requests, in
/// one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub served: String,
    pub shadow: String,
    pub period: NaiveDate,
    /// Requests both scored.
    pub pairs: u64,
    /// Pairs whose risk band differs, and of those, where the shadow's is higher.
    pub band_changes: u64,
    pub shadow_band_higher: u64,
    /// Mean |shadow's probability − served's|.
    pub mean_abs_difference: f64,
}

/// Pairs each shadow score with the served score of the same request (same patient, time and
/// caller) and summarises them by period.
pub fn agreement(entries: &[Entry], model: &str, period: Period) -> Vec<Agreement> {
    let scores = entries.iter().filter(|e| e.is_score() && e.model == model);
    let served: HashMap<(&str, DateTime<Utc>, &str), &Entry> = scores
        .clone()
        .filter(|e| !e.is_shadow())
        .map(|e| ((e.patient_key.as_str(), e.time, e.caller.as_str()), e))
        .collect();
    let rank = |band: &str| ["low", "moderate", "high"].iter().position(|b| *b == band);
    let mut groups: BTreeMap<(String, String, NaiveDate), Agreement> = BTreeMap::new();
    for shadow in scores.filter(|e| e.is_shadow()) {
        let caller = &shadow.caller[carecast_audit::SHADOW_CALLER.len()..];
        let Some(s) = served.get(&(shadow.patient_key.as_str(), shadow.time, caller)) else { continue };
        let start = period.start(shadow.time.date_naive());
        let a =
            groups.entry((s.model_version.clone(), shadow.model_version.clone(), start)).or_insert_with(|| Agreement {
                served: s.model_version.clone(),
                shadow: shadow.model_version.clone(),
                period: start,
                pairs: 0,
                band_changes: 0,
                shadow_band_higher: 0,
                mean_abs_difference: 0.0,
            });
        a.pairs += 1;
        a.mean_abs_difference += (shadow.probability - s.probability).abs();
        if shadow.risk_band != s.risk_band {
            a.band_changes += 1;
            if rank(&shadow.risk_band) > rank(&s.risk_band) {
                a.shadow_band_higher += 1;
            }
        }
    }
    groups
        .into_values()
        .map(|mut a| {
            a.mean_abs_difference /= a.pairs as f64;
            a
        })
        .collect()
}

/// The served scores by verdict (shadow scores are judged apart, as their own versions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdicts {
    pub scores: u64,
    pub events: u64,
    pub no_events: u64,
    pub pending: u64,
    pub prior_outcome: u64,
    pub ambiguous: u64,
}

/// Something the clinical safety officer must look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `calibration`, `input drift` or `score drift`.
    pub kind: String,
    pub version: String,
    pub period: NaiveDate,
    pub message: String,
}

/// Everything `carecast monitor` reports for one model (`monitor.json`; the HTML report and
/// the Prometheus file are drawn from it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorReport {
    pub model: String,
    pub now: DateTime<Utc>,
    pub outcome_codes: Vec<String>,
    pub horizon_days: f64,
    pub period: Period,
    pub verdicts: Verdicts,
    pub outcomes: OutcomeCounts,
    pub periods: Vec<PeriodSummary>,
    pub cusum: Vec<Cusum>,
    pub drift: Vec<PeriodDrift>,
    /// A shadow version's agreement with the served one, by period.
    pub shadow: Vec<Agreement>,
    pub alerts: Vec<Alert>,
}

/// What a report is drawn from: the trail's records, the outcome ledger, the servers' live
/// tallies and each version's training reference.
pub struct Sources<'a> {
    pub entries: &'a [Entry],
    pub outcomes: &'a [Outcome],
    pub tallies: &'a [DayTally],
    pub references: &'a BTreeMap<String, Reference>,
}

/// Judges, summarises and checks one model: the report `carecast monitor` writes.
pub fn run(watch: &Watch, sources: &Sources<'_>) -> anyhow::Result<MonitorReport> {
    let (judged, outcomes) = judge(sources.entries, sources.outcomes, watch);
    let served = |j: &&Judged| !j.version.ends_with("(shadow)");
    let count = |v: Verdict| judged.iter().filter(served).filter(|j| j.verdict == v).count() as u64;
    let verdicts = Verdicts {
        scores: judged.iter().filter(served).count() as u64,
        events: count(Verdict::Event),
        no_events: count(Verdict::NoEvent),
        pending: count(Verdict::Pending),
        prior_outcome: count(Verdict::PriorOutcome),
        ambiguous: count(Verdict::Ambiguous),
    };
    let periods = summarise(&judged, watch.period);
    let cusum = cusum(&judged, watch.period);
    let drift = drift_by_period(sources.tallies, sources.references, watch.period)?;
    let mut alerts: Vec<Alert> = cusum
        .iter()
        .filter_map(|c| {
            let alarm = c.alarm.as_ref()?;
            Some(Alert {
                kind: "calibration".into(),
                version: c.version.clone(),
                period: alarm.period,
                message: format!(
                    "calibration drift: {} (the risk-adjusted CUSUM crossed its threshold, {:.2})",
                    alarm.direction, c.threshold
                ),
            })
        })
        .collect();
    for d in &drift {
        for f in d.drift.alerts() {
            let score = std::ptr::eq(f, &d.drift.score);
            alerts.push(Alert {
                kind: if score { "score drift" } else { "input drift" }.into(),
                version: d.version.clone(),
                period: d.period,
                message: format!(
                    "{} has shifted from training: PSI {:.2}, Jensen-Shannon distance {:.2}, missing {:.1}% (training {:.1}%), {} scores",
                    if score { "the score".to_string() } else { format!("input `{}`", f.name) },
                    f.psi,
                    f.js_distance,
                    100.0 * f.missing_live,
                    100.0 * f.missing_train,
                    d.drift.rows
                ),
            });
        }
    }
    alerts.sort_by(|a, b| (a.period, &a.version, &a.kind).cmp(&(b.period, &b.version, &b.kind)));
    Ok(MonitorReport {
        model: watch.model.clone(),
        now: watch.now,
        outcome_codes: watch.codes.clone(),
        horizon_days: watch.horizon_micros as f64 / 86_400e6,
        period: watch.period,
        verdicts,
        outcomes,
        periods,
        cusum,
        drift,
        shadow: agreement(sources.entries, &watch.model, watch.period),
        alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_auroc_is_the_pair_weighted_sum_done_by_brute_force() {
        let mut rng = Rng(7);
        let p: Vec<f64> = (0..300).map(|i| if i % 7 == 0 { 0.25 } else { rng.unit() * 0.6 }).collect();
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &a) in p.iter().enumerate() {
            for (j, &b) in p.iter().enumerate() {
                if i != j {
                    let w = a * (1.0 - b);
                    den += w;
                    num += w * if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((expected_auroc(&p).unwrap() - num / den).abs() < 1e-12);
    }

    #[test]
    fn byar_interval_is_close_to_the_exact_poisson_interval() {
        // Exact (Garwood) 95% limits for 10 events: 4.7954 and 18.3904 (chi-square quantiles / 2).
        let i = observed_expected(10, 10.0).unwrap();
        assert!((i.lower - 0.47954).abs() < 0.002 && (i.upper - 1.83904).abs() < 0.002, "{i:?}");
    }
}
