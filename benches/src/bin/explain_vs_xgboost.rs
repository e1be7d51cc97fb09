//! Exact TreeSHAP and prediction speed on the shared benchmark model (XGBoost, 300 trees of depth
//! 6 over 50 features, imported), beside XGBoost's own `pred_contribs` and `inplace_predict` on
//! the same rows in the same run, one thread each, both warmed (Carecast's SHAP tables and
//! XGBoost's first call made before the clock starts); then Carecast on every core; then one
//! patient at a time (p50 / p99) through the whole `Scorer` as the server runs it (input checks,
//! encoding, margin, exact explanation, ranked contributions and factors with their sentences),
//! and the ensemble's margin and TreeSHAP alone beside it.
//!
//! `cargo run --release -p carecast-benches --bin explain_vs_xgboost -- [rows]` (default
//! 200,000). XGBoost comes from PyPI (`pip install xgboost`); it is a peer for this comparison,
//! not a dependency of Carecast.

use carecast_models::tree_import::xgboost_json;
use carecast_models::tree_predictor::TreePredictor;
use carecast_models::tree_shap::TreeShapBuffer;
use carecast_models::{Value, Workspace};
use carecast_proto::v1 as pb;
use carecast_training::rng::Rng;
use rayon::prelude::*;
use std::io::Write;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let rows: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let model_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/xgboost/bench_300x6_50f.json");
    let model = xgboost_json(&std::fs::read_to_string(&model_path)?)?;
    let (ensemble, width) = (&model.ensemble, model.feature_names.len());
    // Compiled as a package is when loaded: the prediction layout and the TreeSHAP tables.
    let predictor = TreePredictor::new(ensemble);
    // Standard-normal inputs, as the model was trained on; f32 so both sides read the same values.
    let mut rng = Rng(7);
    let x: Vec<f64> = (0..rows * width).map(|_| rng.normal(0.0, 1.0) as f32 as f64).collect();
    // Both libraries explain the same rows (XGBoost's pred_contribs is the slower, so this sets
    // the run's length).
    let explain_rows = rows.min(5_000);

    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (predict, explain) = one_thread.install(|| {
        let mut margins = vec![0.0; rows];
        let started = Instant::now();
        predictor.margins(&x, width, &mut margins);
        let predict = rows as f64 / started.elapsed().as_secs_f64();
        std::hint::black_box(&margins);
        let (mut phi, mut buf) = (vec![0.0; explain_rows * width], TreeShapBuffer::default());
        let started = Instant::now();
        predictor.contributions(ensemble, &x[..explain_rows * width], width, &mut phi, &mut buf);
        std::hint::black_box(&phi);
        (predict, explain_rows as f64 / started.elapsed().as_secs_f64())
    });
    let threads = rayon::current_num_threads();
    let started = Instant::now();
    let explained: usize = x[..explain_rows * width]
        .par_chunks(256 * width)
        .map_init(
            || (vec![0.0; 256 * width], TreeShapBuffer::default()),
            |(phi, buf), rows| {
                phi.fill(0.0);
                predictor.contributions(ensemble, rows, width, phi, buf);
                rows.len() / width
            },
        )
        .sum();
    let explain_all = explained as f64 / started.elapsed().as_secs_f64();
    let mut margins = vec![0.0; rows];
    let started = Instant::now();
    margins
        .par_chunks_mut(1024)
        .zip(x.par_chunks(1024 * width))
        .for_each(|(out, rows)| predictor.margins(rows, width, out));
    let predict_all = rows as f64 / started.elapsed().as_secs_f64();
    std::hint::black_box(&margins);
    // One patient at a time, as the server scores a request: inputs by name bound and checked,
    // encoded, scored, every contribution explained, ranked and put in words.
    let package = carecast_benches::bench_package();
    let request = pb::ScoreRequest { max_contributions: width as u32, ..Default::default() };
    let names = &model.feature_names;
    let mut ws = Workspace::default();
    let scorer_latencies = percentiles(x.chunks(width).take(5_000).map(|r| {
        let started = Instant::now();
        let row =
            package.scorer.bind(names.iter().zip(r).map(|(n, v)| (n.as_str(), Value::Number(*v)))).expect("valid row");
        let score = package.scorer.score(&row, &mut ws).expect("scored");
        let response = carecast_serving::service::score_response(&package, &request, &row, &score);
        std::hint::black_box(response);
        started.elapsed().as_secs_f64() * 1e6
    }));
    // The same rows at the ensemble alone: margin, probability and every contribution.
    let (mut phi, mut buf) = (vec![0.0; width], TreeShapBuffer::default());
    let ensemble_latencies = percentiles(x.chunks(width).take(5_000).map(|r| {
        let started = Instant::now();
        let mut margin = [0.0];
        predictor.margins(r, width, &mut margin);
        let p = 1.0 / (1.0 + (-margin[0]).exp());
        phi.fill(0.0);
        predictor.contributions(ensemble, r, width, &mut phi, &mut buf);
        std::hint::black_box((p, &phi));
        started.elapsed().as_secs_f64() * 1e6
    }));

    let path = std::env::temp_dir().join(format!("carecast-xgb-bench-{}.bin", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for v in &x {
        file.write_all(&(*v as f32).to_le_bytes())?;
    }
    file.flush()?;
    drop(file);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("xgboost_explain.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args([
            model_path.display().to_string(),
            path.display().to_string(),
            rows.to_string(),
            width.to_string(),
            explain_rows.to_string(),
        ])
        .output()?;
    std::fs::remove_file(&path).ok();

    println!("bench_300x6_50f: 300 trees of depth 6, 50 features; {rows} rows ({explain_rows} explained)");
    println!("one thread      carecast TreeSHAP {explain:>12.0} rows/s   predict {predict:>12.0} rows/s");
    if output.status.success() {
        let theirs: Vec<f64> =
            String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
        println!(
            "one thread      XGBoost  pred_contribs {:>9.0} rows/s   inplace_predict {:>4.0} rows/s",
            theirs[0], theirs[1]
        );
        println!("carecast / XGBoost: explain {:.1}x, predict {:.2}x", explain / theirs[0], predict / theirs[1]);
    } else {
        println!(
            "XGBoost: not run ({})",
            String::from_utf8_lossy(&output.stderr).trim().lines().last().unwrap_or("no output")
        );
    }
    println!(
        "{threads} threads       carecast TreeSHAP {explain_all:>12.0} rows/s   predict {predict_all:>12.0} rows/s"
    );
    println!(
        "one patient through the Scorer, full explanation in words: p50 {:.1} µs, p99 {:.1} µs",
        scorer_latencies.0, scorer_latencies.1
    );
    println!(
        "one patient at the ensemble alone, margin + TreeSHAP:      p50 {:.1} µs, p99 {:.1} µs",
        ensemble_latencies.0, ensemble_latencies.1
    );
    Ok(())
}

/// The median and 99th percentile of `latencies`.
fn percentiles(latencies: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut sorted: Vec<f64> = latencies.collect();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}
