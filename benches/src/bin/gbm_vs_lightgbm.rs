//! Trains Carecast's GBM and LightGBM on the same synthetic rows with the same settings and thread
//! count, and prints both times from one run, with the evidence that the work was equal: the
//! leaves each grew and each model's training log loss (a ratio is printed only when leaves agree
//! within 2% and losses within 1%). LightGBM runs as its users run it (not `deterministic`), with
//! its col-/row-wise choice made before its clock starts (`lightgbm_fit.py`).
//!
//! `cargo run --release -p carecast-benches --bin gbm_vs_lightgbm -- [rows] [features] [rounds] [threads]`
//! (default 1,000,000 × 50, 100 rounds, 2 threads). LightGBM comes from PyPI (`pip install
//! lightgbm`); it is a peer for this comparison, not a dependency of Carecast.

use carecast_models::tree_predictor::TreePredictor;
use carecast_training::fit::gbm::{Columns, GbmParams, fit};
use carecast_training::rng::Rng;
use std::io::Write;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (rows, features, rounds, threads) = (arg(0, 1_000_000), arg(1, 50), arg(2, 100), arg(3, 2));
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;

    // Standard-normal features, 5% missing; the outcome depends non-linearly on the first ten.
    let mut rng = Rng(42);
    let mut x = vec![vec![0.0f64; rows]; features];
    let mut y = vec![0.0f64; rows];
    for r in 0..rows {
        for col in x.iter_mut() {
            // Values LightGBM reads back as f32 are exactly the ones fitted here.
            col[r] = if rng.unit() < 0.05 { f64::NAN } else { rng.normal(0.0, 1.0) as f32 as f64 };
        }
        let v = |j: usize| if x[j][r].is_nan() { 0.0 } else { x[j][r] };
        let z = -1.0 + v(0) + 0.8 * v(1) * v(2) - 0.6 * v(3).abs()
            + 0.5 * (v(4) > 0.5) as u8 as f64
            + 0.3 * (v(5) + v(6) + v(7) + v(8) + v(9));
        y[r] = f64::from(u8::from(rng.unit() < 1.0 / (1.0 + (-z).exp())));
    }
    let path = std::env::temp_dir().join(format!("carecast-gbm-bench-{}.bin", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for r in 0..rows {
        for col in &x {
            file.write_all(&(col[r] as f32).to_le_bytes())?;
        }
        file.write_all(&(y[r] as f32).to_le_bytes())?;
    }
    file.flush()?;

    // Settings both libraries share: 31 leaves, learning rate 0.1, at least 20 rows per leaf,
    // no L2, 255 bins, a fixed number of rounds (no early stopping).
    let params = GbmParams {
        learning_rate: 0.1,
        max_rounds: rounds,
        max_leaves: 31,
        max_depth: 64,
        min_rows_leaf: 20,
        l2: 0.0,
        ..GbmParams::default()
    };
    let started = Instant::now();
    let model = fit(&Columns { values: &x }, &y, None, params, &[]).ensemble;
    let ours = started.elapsed().as_secs_f64();
    assert_eq!(model.trees.len(), rounds);
    let our_leaves: usize = model.trees.iter().map(|t| t.nodes.iter().filter(|n| n.is_leaf()).count()).sum();
    let row_major: Vec<f64> = (0..rows).flat_map(|r| x.iter().map(move |col| col[r])).collect();
    let mut margins = vec![0.0; rows];
    TreePredictor::new(&model).margins(&row_major, features, &mut margins);
    let our_loss =
        margins.iter().zip(&y).map(|(m, y)| (1.0 + (-m).exp()).ln() + (1.0 - y) * m).sum::<f64>() / rows as f64;

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lightgbm_fit.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args([
            path.display().to_string(),
            rows.to_string(),
            features.to_string(),
            rounds.to_string(),
            threads.to_string(),
        ])
        .output()?;
    std::fs::remove_file(&path).ok();
    println!("{rows} rows x {features} features, {rounds} rounds of 31 leaves, {threads} threads");
    println!("carecast GBM: {ours:.2} s, {our_leaves} leaves, training log loss {our_loss:.5}");
    if output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<&str> = text.split_whitespace().collect();
        anyhow::ensure!(fields.len() == 4, "lightgbm_fit.py printed {text:?}");
        let (theirs, their_leaves, their_loss): (f64, usize, f64) =
            (fields[0].parse()?, fields[1].parse()?, fields[2].parse()?);
        println!(
            "LightGBM:     {theirs:.2} s, {their_leaves} leaves, training log loss {their_loss:.5} ({} histograms)",
            fields[3]
        );
        let leaves_gap = (our_leaves as f64 / their_leaves as f64 - 1.0).abs();
        let loss_gap = (our_loss / their_loss - 1.0).abs();
        anyhow::ensure!(
            leaves_gap <= 0.02 && loss_gap <= 0.01,
            "not equal work: leaves differ by {:.1}%, loss by {:.2}%",
            leaves_gap * 100.0,
            loss_gap * 100.0
        );
        println!("carecast / LightGBM time: {:.2}", ours / theirs);
    } else {
        println!(
            "LightGBM: not run ({})",
            String::from_utf8_lossy(&output.stderr).trim().lines().last().unwrap_or("no output")
        );
    }
    Ok(())
}
