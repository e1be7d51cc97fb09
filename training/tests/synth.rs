//! The synthetic population: deterministic for a seed, labelled through the event path, and its
//! written true risks agree with the outcomes it simulated.

use carecast_training::cohort::{EventTaskSpec, label};
use carecast_training::ingest::meds::{read_meds, write_meds};
use carecast_training::synth::{self, population};

#[test]
fn same_seed_same_population_and_other_seed_differs() {
    // Values compare by bits: a missing value is NaN.
    let bits = |s: &carecast_training::ingest::events::EventStore| {
        s.events.iter().map(|e| (e.time, e.code, e.value.to_bits())).collect::<Vec<_>>()
    };
    let (a, sa, ta) = population(3000, 7);
    let (b, sb, tb) = population(3000, 7);
    assert!(bits(&a) == bits(&b) && a.vocabulary == b.vocabulary && sa == sb && ta == tb, "same seed, different population");
    let (c, _, tc) = population(3000, 8);
    assert!(ta != tc && bits(&a) != bits(&c), "another seed, same population");
}

#[test]
fn true_risks_agree_with_simulated_outcomes() {
    let n = 60_000;
    let (store, splits, truth) = population(n, 2026);
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
        let band = match age { a if a < 65.0 => 0, a if a < 75.0 => 1, a if a < 85.0 => 2, _ => 3 };
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

    // Labels through the event path equal the simulated outcomes, and the MEDS output passes ingest.
    let dir = std::env::temp_dir().join(format!("carecast-synth-{}", std::process::id()));
    let small = 2000;
    let (store, splits, truth) = population(small, 5);
    write_meds(&store, &splits, &dir, "synth").unwrap();
    let (store, _, _) = read_meds(&dir).unwrap();
    let spec: EventTaskSpec = toml::from_str(
        "name = \"dementia_5y\"\ndescription = \"Dementia within 5 years\"\nprediction_codes = [\"CARECAST//INDEX\"]\noutcome_codes = [\"ICD10//F0*\"]\nhorizon = \"5y\"\n",
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
