//! The synthetic population: deterministic for a seed, labelled through the event path, and its
//! written true risks agree with the outcomes it simulated.

use carecast_models::features::FeatureSetSpec;
use carecast_models::features::extract::FeatureExtractor;
use carecast_training::cohort::extract_features;
use carecast_training::cohort::{EventTaskSpec, label};
use carecast_training::evaluate::auroc_delong;
use carecast_training::ingest::meds::{read_meds, write_meds};
use carecast_training::synth::{self, population};

#[test]
fn same_seed_same_population_and_other_seed_differs() {
    // Values compare by bits: a missing value is NaN.
    let bits = |s: &carecast_training::ingest::events::EventStore| {
        s.events.iter().map(|e| (e.time, e.code, e.value.to_bits())).collect::<Vec<_>>()
    };
    let (a, b, c) = (population(3000, 7), population(3000, 7), population(3000, 8));
    assert!(
        bits(&a.store) == bits(&b.store)
            && a.store.vocabulary == b.store.vocabulary
            && a.splits == b.splits
            && a.truth == b.truth
            && a.deterioration == b.deterioration,
        "same seed, different population"
    );
    assert!(a.truth != c.truth && bits(&a.store) != bits(&c.store), "another seed, same population");
}

#[test]
fn sharded_output_is_the_same_population() {
    let dir = std::env::temp_dir().join(format!("carecast-synth-shards-{}", std::process::id()));
    let (events, ..) = synth::write_population(2500, 3, 1000, &dir, &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(std::fs::read_dir(dir.join("data")).unwrap().count(), 3);
    let (sharded, splits, _) = read_meds(&dir).unwrap();
    let whole = population(2500, 3);
    assert_eq!(events, whole.store.events.len() as u64);
    assert_eq!(splits, whole.splits);
    assert_eq!(sharded.subjects, whole.store.subjects);
    for i in 0..sharded.n_patients() {
        let a: Vec<_> = sharded.patient(i).iter().map(|e| (e.time, sharded.code(e.code), e.value.to_bits())).collect();
        let b: Vec<_> =
            whole.store.patient(i).iter().map(|e| (e.time, whole.store.code(e.code), e.value.to_bits())).collect();
        assert_eq!(a, b, "subject {}", sharded.subjects[i]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn true_risks_agree_with_simulated_outcomes() {
    let n = 60_000;
    let pop = population(n, 2026);
    let (store, splits, truth) = (&pop.store, &pop.splits, &pop.truth);
    assert_eq!(store.n_patients(), n);
    let share = |s: &str| splits.values().filter(|v| *v == s).count() as f64 / n as f64;
    assert!((share("train") - 0.7).abs() < 0.01 && (share("held_out") - 0.15).abs() < 0.01);

    // Observed onsets match the mean true risk overall and in each age band, within 4 SE.
    let birth = store.vocabulary.iter().position(|c| c == "MEDS_BIRTH").unwrap() as u32;
    let index = synth::index_time();
    let mut bands = [(0.0, 0.0, 0.0); 4];
    for (i, t) in truth.iter().enumerate() {
        let b = store.patient(i).iter().find(|e| e.code == birth).unwrap().time;
        let age = (index - b) as f64 / carecast_models::features::MICROS_PER_YEAR;
        let band = match age {
            a if a < 65.0 => 0,
            a if a < 75.0 => 1,
            a if a < 85.0 => 2,
            _ => 3,
        };
        bands[band].0 += 1.0;
        bands[band].1 += t.dementia_risk_5y;
        bands[band].2 += f64::from(u8::from(t.dementia_within_5y));
    }
    let mut last = 0.0;
    for (k, (count, risk, events)) in bands.iter().enumerate() {
        let p = risk / count;
        let se = (p * (1.0 - p) / count).sqrt();
        assert!((events / count - p).abs() < 4.0 * se, "band {k}: observed {} expected {p}", events / count);
        assert!(p > last, "risk rises with age");
        last = p;
    }
    let overall = truth.iter().map(|t| t.dementia_risk_5y).sum::<f64>() / n as f64;
    assert!((0.03..0.15).contains(&overall), "5-year risk {overall}");
    // Death competes: the cumulative incidence is below the risk had no one died, by most in the
    // oldest (the probability of dying first), and deaths rise with age as in a life table.
    assert!(truth.iter().all(|t| t.dementia_risk_5y <= t.dementia_risk_5y_ignoring_death));
    let mut deaths = [(0.0, 0.0); 4];
    for (i, t) in truth.iter().enumerate() {
        let b = store.patient(i).iter().find(|e| e.code == birth).unwrap().time;
        let age = (index - b) as f64 / carecast_models::features::MICROS_PER_YEAR;
        let band = [65.0, 75.0, 85.0].iter().filter(|&&c| age >= c).count();
        deaths[band].0 += 1.0;
        deaths[band].1 += f64::from(u8::from(t.died_within_5y));
    }
    let died: Vec<f64> = deaths.iter().map(|(n, d)| d / n).collect();
    assert!(died.windows(2).all(|w| w[0] < w[1]), "deaths rise with age: {died:?}");
    assert!((0.02..0.1).contains(&died[0]) && (0.3..0.8).contains(&died[3]), "five-year deaths {died:?}");

    // Labels through the event path equal the simulated outcomes, and the MEDS output passes ingest.
    let dir = std::env::temp_dir().join(format!("carecast-synth-{}", std::process::id()));
    let small = 2000;
    let pop = population(small, 5);
    let truth = pop.truth;
    write_meds(&pop.store, &pop.splits, &dir, "synth").unwrap();
    let (store, _, _) = read_meds(&dir).unwrap();
    let spec: EventTaskSpec = toml::from_str(
        "name = \"dementia_5y\"\ndescription = \"Dementia within 5 years\"\nprediction_codes = [\"CARECAST//INDEX\"]\noutcome_codes = [\"ICD10//F0*\"]\nhorizon = \"5y\"\ncompeting_codes = [\"MEDS_DEATH\"]\n",
    )
    .unwrap();
    let (labels, excluded) = label(&store, &spec).unwrap();
    assert!(excluded.is_empty(), "{excluded:?}");
    assert_eq!(labels.len(), small);
    for (l, t) in labels.iter().zip(&truth) {
        assert_eq!((l.subject, l.value), (t.subject, t.dementia_within_5y));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deterioration_truth_agrees_with_outcomes_and_news2_discriminates() {
    let pop = population(40_000, 99);
    let d = &pop.deterioration;
    assert!(d.len() > 50_000, "{} observations", d.len());
    let expected = d.iter().map(|t| t.risk_24h).sum::<f64>() / d.len() as f64;
    let observed = d.iter().filter(|t| t.deteriorated_within_24h).count() as f64 / d.len() as f64;
    // Observations within a stay share one outcome, so allow 3% on top of binomial noise.
    let se = (expected * (1.0 - expected) / d.len() as f64).sqrt();
    assert!((observed - expected).abs() < 0.03 * expected + 4.0 * se, "observed {observed} expected {expected}");
    assert!((0.01..0.2).contains(&expected), "24-hour risk {expected}");

    // Labels through the event path equal the simulation at every observation.
    let spec: EventTaskSpec = toml::from_str(
        "name = \"deterioration_24h\"\ndescription = \"Escalation or death within 24 hours\"\nprediction_codes = [\"VITAL//PULSE\"]\noutcome_codes = [\"OUTCOME//DETERIORATION\"]\nhorizon = \"24h\"\n",
    )
    .unwrap();
    let (labels, excluded) = label(&pop.store, &spec).unwrap();
    assert!(excluded.is_empty(), "{excluded:?}");
    let mut want: Vec<(i64, i64, bool)> = d.iter().map(|t| (t.subject, t.time, t.deteriorated_within_24h)).collect();
    let mut got: Vec<(i64, i64, bool)> = labels.iter().map(|l| (l.subject, l.prediction_time, l.value)).collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);

    // NEWS2 from the one extractor rises with the true risk and discriminates the outcome.
    let news2 =
        FeatureSetSpec::from_toml("[[features]]\nname = \"news2\"\nkind = \"news2\"\nwindow = \"1h\"\n").unwrap();
    let rows = extract_features(&pop.store, &labels, &FeatureExtractor::new(&news2));
    let score: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    assert!(score.iter().all(|s| !s.is_nan()), "every observation set has all vital signs");
    let y: Vec<bool> = labels.iter().map(|l| l.value).collect();
    let (auc, _) = auroc_delong(&y, &score);
    let truth_by_key: std::collections::HashMap<(i64, i64), f64> =
        d.iter().map(|t| ((t.subject, t.time), t.risk_24h)).collect();
    let risk: Vec<f64> = labels.iter().map(|l| truth_by_key[&(l.subject, l.prediction_time)]).collect();
    let (truth_auc, _) = auroc_delong(&y, &risk);
    eprintln!(
        "{} observations: 24-hour deterioration observed {observed:.4}, expected {expected:.4}; AUROC NEWS2 {auc:.3}, true risk {truth_auc:.3}",
        d.len()
    );
    assert!(auc > 0.7, "NEWS2 AUROC {auc}");
    assert!(truth_auc > auc, "the true risk ({truth_auc}) must beat NEWS2 ({auc}): there is room for a model");
}
