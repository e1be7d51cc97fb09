//! Monitoring on data with known drift: the synthetic population's dementia model deployed for
//! 26 weeks, its scores on a real audit trail and its outcomes in the ledger, in three
//! histories: (a) one input's distribution shifted from week 13 (systolic blood pressure read
//! 12 mmHg high, as a miscalibrated device would), (b) outcomes 1.2 times as frequent as
//! predicted from week 13, and (c) nothing changed. The monitor must flag (a) on that input
//! alone, (b) as calibration drift within [`DETECT_WITHIN`] weeks, and raise nothing in (c) nor
//! before week 13. Outcomes are drawn from the model's own probabilities (scaled by 1.2 in (b)),
//! so (c) is exactly the calibrated model the false-alarm rule speaks of.

use super::events_training::{finished, population, registry};
use carecast_audit::outcomes::{Outcome, OutcomeLedger};
use carecast_audit::{AuditLog, AuditRecord};
use carecast_models::drift::{Reference, Tally};
use carecast_models::{ModelPackage, Value, Workspace, load_package};
use carecast_tables::row_values;
use carecast_training::Algorithm;
use carecast_training::cohort::event_training_set;
use carecast_training::dataset::Rows;
use carecast_training::monitor::{self, DayTally, MonitorReport, Period, Sources, Watch};
use carecast_training::pipeline::train_set;
use carecast_training::rng::Rng;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use std::collections::BTreeMap;

const WEEKS: usize = 26;
/// The week the drift starts.
const ONSET: i64 = 13;
/// The calibration drift of (b) must be flagged by the scores of this many weeks after onset.
pub const DETECT_WITHIN: i64 = 8;
const SHIFTED: &str = "systolic_bp_mean";

enum History {
    InputShift,
    MoreOutcomes,
    Unchanged,
}

/// A Monday, the first week's first day.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 8, 0, 0).unwrap()
}

/// The history's report: every cohort member scored once in one of the 26 weeks, through a
/// real audit trail, outcomes drawn and appended to a real ledger (with bad rows beside them),
/// live inputs counted into the package's reference bins by day.
fn history(pkg: &ModelPackage, rows: &[Vec<Value<'static>>], history: History, dir: &std::path::Path) -> MonitorReport {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let reference: &Reference = pkg.reference.as_ref().unwrap();
    let shifted = pkg.scorer.feature_index(SHIFTED).unwrap();
    let mut ws = Workspace::default();
    let mut rng = Rng(2024);
    let mut days: BTreeMap<NaiveDate, Tally> = BTreeMap::new();
    let (mut scores, mut outcomes) = (Vec::new(), Vec::new());
    for (i, row) in rows.iter().enumerate() {
        let week = (i % WEEKS) as i64;
        let time = start() + Duration::weeks(week) + Duration::minutes((i / WEEKS) as i64);
        let mut row = row.clone();
        if matches!(history, History::InputShift)
            && week >= ONSET
            && let Value::Number(x) = row[shifted]
        {
            row[shifted] = Value::Number(x + 12.0);
        }
        let p = pkg.scorer.score(&row, &mut ws).unwrap().probability;
        days.entry(time.date_naive()).or_insert_with(|| Tally::new(reference)).count(reference, &row, p);
        let key = format!("p{i:06}");
        let risk = if matches!(history, History::MoreOutcomes) && week >= ONSET { (1.2 * p).min(1.0) } else { p };
        if rng.unit() < risk {
            outcomes.push(Outcome {
                patient_key: key.clone(),
                time: time + Duration::days(400),
                code: "ICD10//F03".into(),
            });
        }
        scores.push((key, time, p));
    }
    let audit = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
    let records: Vec<AuditRecord<'_>> = scores
        .iter()
        .map(|(key, time, p)| AuditRecord {
            time: *time,
            caller: "monitoring-test",
            patient_key: key,
            model: &pkg.manifest.name,
            model_version: &pkg.manifest.version,
            probability: *p,
            risk_band: "low",
        })
        .collect();
    audit.record_all(&records).unwrap();
    // Bad rows beside the good: two keys never scored, one outcome before its patient's score,
    // one at the very time of a score, another model's outcome code, and every outcome sent twice.
    let bad = [
        Outcome { patient_key: "never-scored-1".into(), time: start(), code: "ICD10//F01".into() },
        Outcome { patient_key: "never-scored-2".into(), time: start(), code: "ICD10//F01".into() },
        Outcome { patient_key: "p000001".into(), time: scores[1].1 - Duration::days(30), code: "ICD10//F00".into() },
        Outcome { patient_key: "p000002".into(), time: scores[2].1, code: "ICD10//F00".into() },
        Outcome {
            patient_key: "p000003".into(),
            time: scores[3].1 + Duration::days(1),
            code: "NEWS2//ESCALATION".into(),
        },
    ];
    let ledger = OutcomeLedger::for_registry(dir);
    let first = ledger.append(&[outcomes.as_slice(), &bad].concat()).unwrap();
    assert_eq!(first.duplicates, 0);
    let again = ledger.append(&outcomes).unwrap();
    assert_eq!((again.added, again.duplicates), (0, outcomes.len() as u64), "each outcome kept once");
    let stored: Vec<Outcome> = ledger.read().unwrap().into_iter().map(|r| r.outcome).collect();
    let entries = carecast_audit::entries(dir.join("audit.jsonl").as_path()).unwrap();
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let watch = Watch::for_package(pkg, Vec::new(), None, Period::Week, now).unwrap();
    let tallies: Vec<DayTally> =
        days.into_iter().map(|(day, tally)| DayTally { version: pkg.manifest.version.clone(), day, tally }).collect();
    let references = BTreeMap::from([(pkg.manifest.version.clone(), reference.clone())]);
    let report = monitor::run(
        &watch,
        &Sources { entries: &entries, outcomes: &stored, tallies: &tallies, references: &references },
    )
    .unwrap();
    // Bad input counted, not dropped. Patient 1's and 2's scores are left out (an outcome
    // before, or at, the score), so if they drew an outcome of their own it is counted with them.
    let o = &report.outcomes;
    assert_eq!(o.unknown_key, 2);
    assert_eq!(o.other_codes, 1);
    assert_eq!(o.at_score_time, 1);
    assert!(o.before_every_score >= 1);
    assert_eq!(o.outcomes, o.matched + o.unknown_key + o.before_every_score + o.at_score_time + o.after_every_horizon);
    assert_eq!((report.verdicts.prior_outcome, report.verdicts.ambiguous), (1, 1));
    assert_eq!(report.verdicts.pending, 0, "every horizon passed by 2030");
    assert_eq!(report.verdicts.scores, rows.len() as u64);
    assert_eq!(report.periods.len(), WEEKS);
    let html = monitor::report::html(&report);
    assert!(!html.contains("<script") && html.matches("<svg").count() >= 5, "four charts and the drift chart");
    std::fs::write(dir.join("monitor.html"), &html).unwrap();
    report
}

fn week(period: NaiveDate) -> i64 {
    (period - start().date_naive()).num_weeks()
}

#[test]
fn the_monitor_flags_known_drift_and_raises_nothing_without_it() {
    let dir = population();
    let registry = registry("monitoring");
    let task = include_str!("../../tasks/synth_dementia_5y.toml");
    let features = include_str!("../../tasks/synth_dementia_features.toml");
    let set = event_training_set(&dir.join("meds"), task, features, Rows::TaskSplit).unwrap();
    train_set(&set, &registry, Algorithm::Logistic, None).unwrap();
    let pkg = load_package(&registry.resolve("synth_dementia_5y-logistic", None).unwrap().1).unwrap();

    // The package's reference: the training rows, binned at their deciles.
    let reference = pkg.reference.as_ref().expect("every trained package has its training reference");
    assert_eq!(reference.rows, set.data.train_rows.len() as u64);
    assert!(reference.features.iter().all(|h| h.counts.iter().sum::<u64>() == reference.rows));
    let sbp = reference.features.iter().find(|h| h.name == SHIFTED).unwrap();
    assert!(sbp.bins.slots() >= 9, "a measurement has about ten bins and a missing one");

    let rows: Vec<Vec<Value<'static>>> = set
        .data
        .train_rows
        .iter()
        .chain(&set.data.test_rows)
        .map(|&r| row_values(&set.data.columns, r).unwrap().into_iter().map(owned).collect())
        .collect();
    assert!(rows.len() > 15_000);

    // (c) Nothing changed: no alert of any kind over the 26 weeks.
    let unchanged = history(&pkg, &rows, History::Unchanged, &dir.join("monitor-unchanged"));
    assert!(unchanged.alerts.is_empty(), "false alarms: {:?}", unchanged.alerts);
    let c = &unchanged.cusum[0];
    eprintln!(
        "unchanged: CUSUM threshold {:.2}, highest {:.2}",
        c.threshold,
        c.periods.iter().map(|p| p.upper.max(p.lower)).fold(0.0, f64::max)
    );
    // CBPE's label-free estimate against the AUROC the outcomes give, week by week.
    for p in &unchanged.periods {
        let auroc = p.auroc.unwrap();
        let estimate = p.estimated_auroc.unwrap();
        assert!(
            estimate >= auroc.lower - 0.02 && estimate <= auroc.upper + 0.02,
            "week {}: {estimate} against {auroc:?}",
            p.period
        );
    }

    // (a) One input shifted from week 13: flagged on that input, in every week from then, and
    // on no other input and in no week before.
    let shifted = history(&pkg, &rows, History::InputShift, &dir.join("monitor-input-shift"));
    let inputs: Vec<_> = shifted.alerts.iter().filter(|a| a.kind == "input drift").collect();
    assert!(inputs.iter().all(|a| a.message.contains(&format!("input `{SHIFTED}`"))), "{inputs:?}");
    let weeks: Vec<i64> = inputs.iter().map(|a| week(a.period)).collect();
    assert_eq!(weeks, (ONSET..WEEKS as i64).collect::<Vec<_>>());
    assert!(!shifted.alerts.iter().any(|a| a.kind == "calibration"), "outcomes follow the model: {:?}", shifted.alerts);
    for d in &shifted.drift {
        let psi = d.drift.features.iter().find(|f| f.name == SHIFTED).unwrap().psi;
        eprintln!("week {:>2}: {SHIFTED} PSI {psi:.3}, score PSI {:.3}", week(d.period), d.drift.score.psi);
    }

    // (b) Outcomes 1.2 times the predicted risk from week 13: a calibration alarm, "more
    // outcomes than predicted", within DETECT_WITHIN weeks, never before; no drift alert.
    let more = history(&pkg, &rows, History::MoreOutcomes, &dir.join("monitor-more-outcomes"));
    let alarms: Vec<_> = more.alerts.iter().filter(|a| a.kind == "calibration").collect();
    assert_eq!(alarms.len(), 1, "{:?}", more.alerts);
    let at = week(alarms[0].period);
    eprintln!("O/E 1.2 from week {ONSET}: calibration alarm in week {at}");
    assert!((ONSET..ONSET + DETECT_WITHIN).contains(&at), "alarm in week {at}");
    assert!(alarms[0].message.contains("more outcomes than predicted"));
    assert!(more.alerts.iter().all(|a| a.kind == "calibration"));
    // Observed over expected after the onset, pooled, within three Poisson standard errors of 1.2.
    let after = more.periods.iter().filter(|p| week(p.period) >= ONSET);
    let (observed, expected) = after.fold((0.0, 0.0), |(o, e), p| (o + p.observed as f64, e + p.expected));
    let ratio = observed / expected;
    assert!((ratio - 1.2).abs() < 3.0 * observed.sqrt() / expected, "O/E after onset {ratio} ({observed} outcomes)");
    let prom = monitor::report::prometheus(&more);
    assert!(
        prom.contains(&format!(
            "carecast_calibration_alarm{{model=\"synth_dementia_5y-logistic\",version=\"{}\"}} 1",
            pkg.manifest.version
        )),
        "{prom}"
    );
    finished();
}

fn owned(v: Value<'_>) -> Value<'static> {
    match v {
        Value::Missing => Value::Missing,
        Value::Number(x) => Value::Number(x),
        Value::Text(t) => Value::Text(Box::leak(t.to_string().into_boxed_str())),
    }
}
