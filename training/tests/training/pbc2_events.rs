//! pbc2 through the event path reproduces the flat pbc2_death2y task: the same prediction rows and
//! labels as the shared data README defines them, features equal to the visit rows' values, and a
//! lossless MEDS round trip.

use carecast_models::features::extract::FeatureExtractor;
use carecast_models::features::{FeatureSetSpec, MICROS_PER_YEAR};
use carecast_tables::{read_table, text_column};
use carecast_training::cohort::{EventTaskSpec, extract_features, label};
use carecast_training::ingest::flat::{FlatMapping, read_flat};
use carecast_training::ingest::meds::{read_meds, write_meds};
use std::path::PathBuf;

fn shared(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(file)
}

#[test]
fn pbc2_events_reproduce_the_flat_task() {
    let mapping: FlatMapping = toml::from_str(include_str!("../../tasks/pbc2_events.toml")).unwrap();
    let flat = read_flat(&shared("pbc2.csv"), &mapping).unwrap();
    assert_eq!(flat.report.rows_read, 1945);
    assert!(flat.report.dropped.is_empty(), "{:?}", flat.report.dropped);
    assert_eq!(flat.store.n_patients(), 312);
    assert_eq!(flat.splits.len(), 312);

    // MEDS round trip: the same events per patient, codes compared as text.
    let dir = std::env::temp_dir().join(format!("carecast-pbc2-meds-{}", std::process::id()));
    write_meds(&flat.store, &flat.splits, &dir, "pbc2").unwrap();
    let (back, splits, report) = read_meds(&dir).unwrap();
    assert_eq!(splits, flat.splits);
    assert_eq!(report.events, flat.store.events.len() as u64);
    assert_eq!(back.subjects, flat.store.subjects);
    for i in 0..back.n_patients() {
        let a: Vec<_> =
            flat.store.patient(i).iter().map(|e| (e.time, flat.store.code(e.code), e.value.to_bits())).collect();
        let b: Vec<_> = back.patient(i).iter().map(|e| (e.time, back.code(e.code), e.value.to_bits())).collect();
        assert_eq!(a, b, "subject {}", back.subjects[i]);
    }

    // A MEDS dataset whose codes carry identifiers is refused.
    let mut leaky = carecast_training::ingest::events::EventStoreBuilder::default();
    leaky.push(1, None, "NAME//Margaret Jones", None);
    let leaky_dir = dir.join("leaky");
    write_meds(&leaky.build(), &Default::default(), &leaky_dir, "leaky").unwrap();
    let err = read_meds(&leaky_dir).unwrap_err().to_string();
    assert!(err.contains("PersonName") && !err.contains("Margaret"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    // Labels equal the flat definition, computed here independently from the CSV.
    let spec: EventTaskSpec = toml::from_str(include_str!("../../tasks/pbc2_death2y_events.toml")).unwrap();
    let (labels, excluded) = label(&back, &spec).unwrap();
    let df = read_table(&shared("pbc2.csv")).unwrap();
    let col = |c: &str| text_column(&df, c).unwrap();
    let (id, years, year, status) = (col("id"), col("years"), col("year"), col("status"));
    let num = |v: &Option<String>| v.as_deref().unwrap().parse::<f64>().unwrap();
    let origin =
        chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros();
    let mut expected = Vec::new();
    let mut flat_row = std::collections::HashMap::new();
    for r in 0..df.height() {
        let dead = status[r].as_deref() == Some("dead");
        let left = num(&years[r]) - num(&year[r]);
        if !dead && left <= 2.0 {
            continue;
        }
        let t = origin + (num(&year[r]) * MICROS_PER_YEAR).round() as i64;
        let subject: i64 = id[r].as_deref().unwrap().parse().unwrap();
        expected.push((subject, t, dead && left <= 2.0));
        flat_row.insert((subject, t), r);
    }
    let mut got: Vec<(i64, i64, bool)> = labels.iter().map(|l| (l.subject, l.prediction_time, l.value)).collect();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got.len(), 1754);
    assert_eq!(got, expected);
    assert_eq!(excluded.values().sum::<u64>(), 1945 - 1754);
    let prevalence = got.iter().filter(|g| g.2).count() as f64 / got.len() as f64;
    assert!((prevalence - 0.151).abs() < 0.001, "{prevalence}");

    // Features at each label agree with the visit row.
    let features = FeatureSetSpec::from_toml(include_str!("../../tasks/pbc2_features.toml")).unwrap();
    let extractor = FeatureExtractor::new(&features);
    let rows = extract_features(&back, &labels, &extractor);
    let at = |name: &str| features.features.iter().position(|f| f.name == name).unwrap();
    let (age, sex, bili, ascites, edema) = (col("age"), col("sex"), col("serBilir"), col("ascites"), col("edema"));
    for (l, x) in labels.iter().zip(&rows) {
        let r = flat_row[&(l.subject, l.prediction_time)];
        assert!((x[at("age")] - (num(&age[r]) + num(&year[r]))).abs() < 1e-6);
        assert_eq!(x[at("female")], f64::from(u8::from(sex[r].as_deref() == Some("female"))));
        assert_eq!(x[at("ascites")], f64::from(u8::from(ascites[r].as_deref() == Some("Yes"))));
        assert_eq!(x[at("edema_any")], f64::from(u8::from(edema[r].as_deref() != Some("No edema"))));
        assert!((x[at("bilirubin")] - num(&bili[r])).abs() < 1e-5 * num(&bili[r]).max(1.0), "f32 storage");
        assert!(x[at("visits")] >= 1.0);
    }
}
