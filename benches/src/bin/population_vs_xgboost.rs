//! A whole register scored with explanations, end to end (reading Parquet, checking and encoding
//! every row, exact TreeSHAP, the top 5 factors, writing Parquet), by `carecast score`'s batch path
//! beside XGBoost's `pred_contribs` on the same model and rows in the same run: the shared
//! XGBoost fixture (support2_hospdead, 120 trees over 26 features) imported into a package, and
//! SUPPORT's rows resampled into a register of any size. Each side runs in its own process and
//! reports its wall time and peak resident memory (VmHWM; ru_maxrss for Python), on 2 threads.
//!
//! `cargo run --release -p carecast-benches --bin population_vs_xgboost -- [rows] [--carecast-only]`
//! (default 1,000,000 rows). XGBoost comes from PyPI (`pip install xgboost pyarrow`) in the
//! Python named by `CARECAST_BENCH_PYTHON` (default `python3`); it is a peer for this
//! comparison, not a dependency of Carecast.

use anyhow::Context;
use carecast_audit::AuditLog;
use carecast_benches::shared_data;
use carecast_models::{Registry, load_package};
use carecast_tables::batch::{self, BatchOptions};
use carecast_training::TaskSpec;
use carecast_training::import::{Format, import_model};
use carecast_training::rng::Rng;
use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The allocator `carecast` itself runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const THREADS: usize = 2;
const TOP: usize = 5;
const MODEL: &str = "imported-xgboost";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--carecast-side") {
        return carecast_side(Path::new(&args[1]));
    }
    let rows: usize = args.iter().find(|a| !a.starts_with("--")).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let carecast_only = args.iter().any(|a| a == "--carecast-only");
    let dir = std::env::temp_dir().join(format!("carecast-population-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fixture = shared_data("../fixtures/xgboost/support2_hospdead.json");
    let (task, _) = TaskSpec::load("support2_hospdead")?;
    import_model(
        &task,
        &shared_data("support2.csv"),
        &Registry::new(dir.join("registry")),
        &fixture,
        Format::XgboostJson,
        Some(MODEL),
    )?;
    let input = dir.join("register.parquet");
    let started = Instant::now();
    register(rows, &input)?;
    let size = std::fs::metadata(&input)?.len();
    println!(
        "register: {rows} SUPPORT rows resampled, {:.0} MB of Parquet (written in {:.1} s)",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // With the allocator settings `carecast score` sets for itself (cli/src/allocator.rs).
    let ours = run(
        Command::new(std::env::current_exe()?)
            .args(["--carecast-side", &dir.display().to_string()])
            .env("MIMALLOC_PURGE_DELAY", "-1")
            .env("MIMALLOC_PURGE_DECOMMITS", "0"),
        &input,
    )?;
    println!(
        "carecast score  {:>7.1} s  {:>9.0} rows/s  peak {:>6.0} MiB",
        ours.0,
        rows as f64 / ours.0,
        ours.1 / 1024.0
    );
    if !carecast_only {
        let python = std::env::var("CARECAST_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("xgboost_population.py");
        let theirs = run(
            Command::new(python).arg(script).args([
                fixture.display().to_string(),
                input.display().to_string(),
                dir.join("xgboost.parquet").display().to_string(),
                TOP.to_string(),
                THREADS.to_string(),
            ]),
            &input,
        )?;
        println!(
            "XGBoost         {:>7.1} s  {:>9.0} rows/s  peak {:>6.0} MiB",
            theirs.0,
            rows as f64 / theirs.0,
            theirs.1 / 1024.0
        );
        println!("carecast / XGBoost: {:.1}x the speed, {:.2}x the memory", theirs.0 / ours.0, ours.1 / theirs.1);
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// SUPPORT's rows drawn with replacement into a register of `rows`, each with its own key, in
/// Parquet with the batch path's row groups.
fn register(rows: usize, path: &Path) -> anyhow::Result<()> {
    let support = carecast_tables::read_table(&shared_data("support2.csv"))?;
    let mut rng = Rng(18);
    let mut file = std::fs::File::create(path)?;
    let mut writer = ParquetWriter::new(&mut file)
        .with_row_group_size(Some(carecast_tables::chunks::DEFAULT_ROWS))
        .batched(support.schema())?;
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(carecast_tables::chunks::DEFAULT_ROWS);
        let picks: Vec<IdxSize> = (0..n).map(|_| rng.below(support.height() as u64) as IdxSize).collect();
        let mut chunk = support.take(&IdxCa::from_vec("".into(), picks))?;
        let keys: Vec<i64> = (done as i64 + 1..=(done + n) as i64).collect();
        chunk.replace("sno", Column::new("sno".into(), keys))?;
        writer.write_batch(&chunk)?;
        done += n;
    }
    writer.finish()?;
    Ok(())
}

/// Runs one side after reading its input once (both sides start with the file in the page
/// cache), and returns the seconds and peak KiB it reports.
fn run(command: &mut Command, input: &Path) -> anyhow::Result<(f64, f64)> {
    std::io::copy(&mut std::fs::File::open(input)?, &mut std::io::sink())?;
    let output = command.output()?;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr).trim());
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next().context("seconds and peak KiB").and_then(|f| Ok(f?));
    Ok((next()?, next()?))
}

/// Carecast's side, in its own process: `carecast score --top 5` as the CLI runs it, on a pool
/// of [`THREADS`]; prints its seconds and peak resident KiB.
fn carecast_side(dir: &Path) -> anyhow::Result<()> {
    rayon::ThreadPoolBuilder::new().num_threads(THREADS).build_global()?;
    let started = Instant::now();
    let pkg = load_package(&Registry::new(dir.join("registry")).resolve(MODEL, None)?.1)?;
    let audit = AuditLog::open(&dir.join("audit.jsonl"))?;
    let options = BatchOptions { key_column: Some("sno".into()), top: TOP, ..Default::default() };
    let output: PathBuf = dir.join("carecast.parquet");
    let report = batch::score_table(
        &pkg,
        &dir.join("register.parquet"),
        &output,
        &dir.join("carecast.errors.csv"),
        &options,
        &audit,
        &indicatif::ProgressBar::hidden(),
    )?;
    anyhow::ensure!(report.scored + report.errors.len() == report.rows, "every row scored or refused");
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).context("VmHWM")?;
    println!("{seconds:.3} {}", peak.trim().trim_end_matches("kB").trim());
    Ok(())
}
