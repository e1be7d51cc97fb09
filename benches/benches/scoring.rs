//! Scoring speed: one patient scored and fully explained (the clinician's request), and a
//! population scored in parallel (the planner's batch), for the logistic and GBM models.

use carecast_benches::support2_model;
use carecast_models::{Value, Workspace};
use carecast_tables::row_values;
use carecast_training::Algorithm;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use std::hint::black_box;

fn scoring(c: &mut Criterion) {
    for algorithm in [Algorithm::Logistic, Algorithm::Gbm] {
        let (package, columns) = support2_model(algorithm);
        let rows: Vec<Vec<Value<'_>>> = (0..columns[0].len()).filter_map(|r| row_values(&columns, r).ok()).collect();
        let name = algorithm.short_name();

        let mut group = c.benchmark_group(format!("score_and_explain/{name}"));
        group.throughput(Throughput::Elements(1));
        let mut ws = Workspace::default();
        let mut i = 0;
        group.bench_function("one_patient", |b| {
            b.iter(|| {
                i = (i + 1) % rows.len();
                black_box(package.scorer.score(black_box(&rows[i]), &mut ws).expect("valid row"))
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("batch/{name}"));
        group.throughput(Throughput::Elements(rows.len() as u64));
        group.sample_size(10);
        group.bench_function("support2_all_rows_parallel", |b| {
            b.iter(|| {
                rows.par_iter()
                    .map_init(Workspace::default, |ws, row| {
                        package.scorer.score(row, ws).expect("valid row").probability
                    })
                    .sum::<f64>()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, scoring);
criterion_main!(benches);
