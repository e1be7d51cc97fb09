//! Tree-model speed on the shared benchmark model (XGBoost, 300 trees of depth 6 over 50
//! features, imported): one row scored, one row explained (exact TreeSHAP), a block of rows
//! scored and explained together, and one patient through the whole `Scorer` with the server's
//! response in words. `explain_vs_xgboost` prints the same figures beside XGBoost's.

use carecast_models::tree_import::xgboost_json;
use carecast_models::tree_predictor::TreePredictor;
use carecast_models::tree_shap::TreeShapBuffer;
use carecast_models::{Value, Workspace};
use carecast_proto::v1 as pb;
use carecast_training::rng::Rng;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn trees(c: &mut Criterion) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/xgboost/bench_300x6_50f.json");
    let model = xgboost_json(&std::fs::read_to_string(path).expect("shared fixtures beside the repository"))
        .expect("valid model");
    let (ensemble, width) = (&model.ensemble, model.feature_names.len());
    // Compiled as a package is when loaded: the prediction layout and the TreeSHAP tables.
    let predictor = TreePredictor::new(ensemble);
    let mut rng = Rng(7);
    let rows = 256;
    let x: Vec<f64> = (0..rows * width).map(|_| rng.normal(0.0, 1.0)).collect();
    let mut buf = TreeShapBuffer::default();
    let mut phi = vec![0.0; rows * width];

    let mut group = c.benchmark_group("trees/bench_300x6_50f");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("predict_one_row", |b| {
        b.iter(|| {
            i = (i + 1) % rows;
            let mut margin = [0.0];
            predictor.margins(black_box(&x[i * width..(i + 1) * width]), width, &mut margin);
            black_box(margin[0])
        })
    });
    group.bench_function("explain_one_row", |b| {
        b.iter(|| {
            i = (i + 1) % rows;
            phi[..width].fill(0.0);
            predictor.contributions(
                ensemble,
                black_box(&x[i * width..(i + 1) * width]),
                width,
                &mut phi[..width],
                &mut buf,
            );
            black_box(phi[0])
        })
    });
    let package = carecast_benches::bench_package();
    let request = pb::ScoreRequest { max_contributions: width as u32, ..Default::default() };
    let mut ws = Workspace::default();
    group.bench_function("score_and_explain_one_patient_through_scorer", |b| {
        b.iter(|| {
            i = (i + 1) % rows;
            let values = model
                .feature_names
                .iter()
                .zip(&x[i * width..(i + 1) * width])
                .map(|(n, v)| (n.as_str(), Value::Number(*v)));
            let row = package.scorer.bind(values).expect("valid row");
            let score = package.scorer.score(&row, &mut ws).expect("scored");
            black_box(carecast_serving::service::score_response(&package, &request, &row, &score))
        })
    });
    group.throughput(Throughput::Elements(rows as u64));
    let mut margins = vec![0.0; rows];
    group.bench_function("predict_256_rows", |b| {
        b.iter(|| {
            predictor.margins(black_box(&x), width, &mut margins);
            black_box(margins[0])
        })
    });
    group.bench_function("explain_256_rows", |b| {
        b.iter(|| {
            phi.fill(0.0);
            predictor.contributions(ensemble, black_box(&x), width, &mut phi, &mut buf);
            black_box(phi[0])
        })
    });
    group.finish();
}

criterion_group!(benches, trees);
criterion_main!(benches);
