//! Feature extraction speed, in events per second on one core: the one extractor over a cohort
//! of synthetic patients with a realistic mix of diagnoses, labs and vitals (issue 3's target is
//! 5 million events per second per core).

use carecast_models::features::FeatureSetSpec;
use carecast_models::features::extract::{ExtractBuffer, FeatureExtractor};
use carecast_training::ingest::events::EventStoreBuilder;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const SPEC: &str = include_str!("../../training/tasks/pbc2_features.toml");
const VITALS: &str = r#"
[[features]]
name = "news2"
kind = "news2"
window = "24h"

[[features]]
name = "sbp_mean_30d"
kind = "measurement"
codes = ["VITAL//SYSTOLIC_BP"]
agg = "mean"
window = "30d"

[[features]]
name = "falls_365d"
kind = "count"
codes = ["FALL"]
window = "365d"

[[features]]
name = "dementia_codes"
kind = "present"
codes = ["ICD10//F0*"]
"#;

fn extraction(c: &mut Criterion) {
    let spec = FeatureSetSpec::from_toml(&format!("{SPEC}\n{VITALS}")).expect("valid spec");
    let codes = [
        "serBilir",
        "albumin",
        "serChol",
        "platelets",
        "PBC//VISIT",
        "VITAL//SYSTOLIC_BP",
        "VITAL//PULSE",
        "VITAL//SPO2",
        "VITAL//RESPIRATION_RATE",
        "VITAL//TEMPERATURE",
        "FALL",
        "ICD10//F03",
        "ICD10//I10",
        "ICD10//E11",
        "DRUG//METFORMIN",
        "OTHER//A",
        "OTHER//B",
        "OTHER//C",
    ];
    let (patients, per_patient) = (5_000i64, 400i64);
    let mut builder = EventStoreBuilder::default();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for p in 0..patients {
        builder.push(p, Some(-60 * 365 * 86_400_000_000), "MEDS_BIRTH", None);
        builder.push(p, None, "sex//female", None);
        for k in 0..per_patient {
            let code = codes[(next() % codes.len() as u64) as usize];
            let value = (next() % 2 == 0).then_some((next() % 200) as f32);
            builder.push(p, Some(k * 6 * 3_600_000_000), code, value);
        }
    }
    let store = builder.build();
    let extractor = FeatureExtractor::new(&spec);
    let bound = extractor.bind(&store.vocabulary);
    let t = per_patient * 6 * 3_600_000_000; // after every event: all of them are read
    let mut out = vec![0.0; extractor.n_features()];
    let mut buf = ExtractBuffer::default();

    let mut group = c.benchmark_group("extract");
    group.throughput(Throughput::Elements(store.events.len() as u64));
    group.sample_size(10);
    group.bench_function("one_core_all_patients", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for i in 0..store.n_patients() {
                bound.extract(store.patient(i), t, &mut out, &mut buf);
                acc += out[0];
            }
            black_box(acc)
        })
    });
    group.finish();
}

criterion_group!(benches, extraction);
criterion_main!(benches);
