//! Ingest speed, in events per second: reading a MEDS dataset (a synthetic population of
//! 100,000 patients written once in set-up) into the event store, guard included.

use carecast_training::ingest::meds::{read_meds, write_meds};
use carecast_training::synth::population;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn ingest(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("carecast-bench-meds-{}", std::process::id()));
    let pop = population(100_000, 42);
    write_meds(&pop.store, &pop.splits, &dir, "bench").expect("writable temp dir");
    let store = pop.store;
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(store.events.len() as u64));
    group.sample_size(10);
    group.bench_function("read_meds_100k_patients", |b| b.iter(|| read_meds(&dir).expect("valid dataset")));
    group.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
