//! The README's quickstart (`carecast demo`) and the individual commands, run as a user would.

use crate::common::carecast;
use std::path::Path;
use std::process::Command;

#[test]
fn demo_and_commands_work_end_to_end() {
    let dir = std::env::temp_dir().join(format!("carecast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let demo = carecast(&dir, &["demo"]);
    assert!(demo.contains("support2_hospdead-logistic v1") && demo.contains("support2_hospdead-gbm v1"), "{demo}");
    assert!(demo.contains("scored 9105 of 9105 rows"), "{demo}");
    assert!(demo.contains("additivity error") && demo.contains(": raises risk"), "{demo}");
    assert!(dir.join("out/support2_hospdead_scores.parquet").exists());
    // Hash-chained audit records: the batch run once (its input and output by SHA-256) and the
    // score over gRPC.
    assert!(demo.contains("2 records, hash chain intact"), "{demo}");
    let verified = carecast(&dir, &["audit", "verify"]);
    assert!(verified.contains("2 records, chain intact; head ") && verified.contains("1 batch run"), "{verified}");

    // Retraining publishes version 2 and promotes it.
    carecast(&dir, &["train", "--task", "support2_hospdead", "--model", "gbm"]);
    let models = carecast(&dir, &["models"]);
    assert!(models.contains("support2_hospdead-gbm: versions 1, 2 (current 2)"), "{models}");
    assert!(carecast(&dir, &["rollback", "--model", "support2_hospdead-gbm"]).contains("rolled back to v1"));
    assert!(carecast(&dir, &["models"]).contains("support2_hospdead-gbm: versions 1, 2 (current 1)"));
    carecast(&dir, &["promote", "--model", "support2_hospdead-gbm", "--version", "2"]);

    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let scored = carecast(
        &dir,
        &[
            "score",
            "--model",
            "support2_hospdead-gbm",
            "--version",
            "1",
            "--input",
            shared.to_str().unwrap(),
            "--output",
            "scores.parquet",
            "--key-column",
            "sno",
        ],
    );
    assert!(scored.contains("v1: scored 9105 of 9105 rows"), "{scored}");
    killed_mid_run_then_resumed(&dir, &shared);

    // The planner's summary of the same register, by disease group and age band, under the
    // default disclosure rule, which the command states.
    let data = shared.to_str().unwrap();
    let model = ["--model", "support2_hospdead-gbm", "--input", data, "--key-column", "sno"];
    let by = ["--by", "dzgroup", "--by", "age=65,80", "--outcome", "hospdead", "--output", "summary"];
    let summarised = carecast(&dir, &[&["population"][..], &model, &by].concat());
    assert!(summarised.contains("9105 people in 24 groups (0 not scored)"), "{summarised}");
    assert!(summarised.contains("counts of 1 to 7 suppressed"), "{summarised}");
    let table = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(table.lines().last().unwrap().starts_with("(all),(all),9105,"), "{table}");
    assert!(table.contains(",*,"), "small cells are suppressed:\n{table}");
    assert!(dir.join("summary.parquet").exists() && dir.join("summary.json").exists());

    // Nothing is served without authentication unless a demo is asked for explicitly.
    let open = Command::new(env!("CARGO_BIN_EXE_carecast"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        !open.status.success()
            && String::from_utf8_lossy(&open.stderr).contains("refusing to serve without authentication")
    );
    let exposed = Command::new(env!("CARGO_BIN_EXE_carecast"))
        .args(["serve", "--addr", "0.0.0.0:0", "--insecure-demo"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        !exposed.status.success()
            && String::from_utf8_lossy(&exposed.stderr).contains("--insecure-demo binds to loopback only")
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_carecast"))
        .args(["train", "--task", "no_such_task"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_task"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `carecast score` killed with SIGKILL part-way through a register five times SUPPORT's size:
/// run again it says so and refuses to start over, and with `--resume` it continues from the
/// chunks already done; every row is then scored once, as the uninterrupted `scores.parquet`
/// scored the same row of SUPPORT.
fn killed_mid_run_then_resumed(dir: &Path, shared: &Path) {
    use carecast_tables::read_table;
    let text = std::fs::read_to_string(shared).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    let body = body.trim_end();
    std::fs::write(dir.join("register.csv"), format!("{header}\n{}\n", [body; 5].join("\n"))).unwrap();
    let args = [
        "score",
        "--model",
        "support2_hospdead-gbm",
        "--version",
        "1",
        "--input",
        "register.csv",
        "--output",
        "register_scores.parquet",
        "--key-column",
        "sno",
        "--rows-per-chunk",
        "1000",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_carecast"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let parts = dir.join(".register_scores.parquet.parts");
    // Complete chunks: `000012.parquet` (not a chunk's refusals, not a file still being written).
    let done = || {
        let names = std::fs::read_dir(&parts).into_iter().flatten().map(|e| e.unwrap().file_name());
        names.filter(|n| n.to_string_lossy().len() == "000000.parquet".len()).count()
    };
    let started = std::time::Instant::now();
    while done() < 3 {
        assert!(started.elapsed().as_secs() < 120, "no chunk written");
        assert!(child.try_wait().unwrap().is_none(), "finished before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dir.join("register_scores.parquet").exists(), "no output under its name until complete");

    let again = Command::new(env!("CARGO_BIN_EXE_carecast")).args(args).current_dir(dir).output().unwrap();
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && said.contains("interrupted run") && said.contains("--resume"), "{said}");
    let resumed = carecast(dir, &[&args[..], &["--resume"]].concat());
    assert!(
        resumed.contains("scored 45525 of 45525 rows") && resumed.contains("continued an interrupted run"),
        "{resumed}"
    );

    let reference = read_table(&dir.join("scores.parquet")).unwrap();
    let reference = reference.column("probability").unwrap().f64().unwrap();
    let out = read_table(&dir.join("register_scores.parquet")).unwrap();
    let rows = out.column("row").unwrap().u64().unwrap();
    let probability = out.column("probability").unwrap().f64().unwrap();
    assert_eq!(out.height(), 45525);
    for (i, (row, p)) in rows.into_no_null_iter().zip(probability.into_no_null_iter()).enumerate() {
        assert_eq!(row, i as u64 + 1, "every row once, in order");
        assert_eq!(p, reference.get(i % 9105).unwrap(), "row {row}");
    }
    assert!(!parts.exists());
}

#[test]
fn ingest_pseudonymises_reduces_birth_dates_and_honours_opt_outs() {
    use carecast_training::ingest::meds::read_meds;
    let dir = std::env::temp_dir().join(format!("carecast-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), b"a secret key held by the trust").unwrap();
    std::fs::write(dir.join("opt_out.txt"), "1\n2\n3\n").unwrap();
    let pbc2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pbc2.csv");
    let out = carecast(
        &dir,
        &[
            "ingest",
            "--input",
            pbc2.to_str().unwrap(),
            "--mapping",
            "pbc2",
            "--output",
            "meds",
            "--key-file",
            "key",
            "--opt-out",
            "opt_out.txt",
        ],
    );
    assert!(out.contains("1945 rows read, 309 subjects") && out.contains("(pseudonymised)"), "{out}");
    assert!(out.contains("opt-out"), "{out}");
    let (store, splits, _) = read_meds(&dir.join("meds")).unwrap();
    assert_eq!(store.n_patients(), 309);
    assert_eq!(splits.len(), 309);
    assert!(store.subjects.iter().all(|&s| s > 312), "source ids replaced by pseudonyms");
    let birth = store.vocabulary.iter().position(|c| c == "MEDS_BIRTH").unwrap() as u32;
    for e in store.events.iter().filter(|e| e.code == birth) {
        let dt = chrono::DateTime::from_timestamp_micros(e.time).unwrap();
        assert_eq!(dt.format("%d %H:%M:%S").to_string(), "01 00:00:00", "birth reduced to year and month");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn synth_then_labels_on_a_fixed_date() {
    use carecast_tables::read_table;
    let dir = std::env::temp_dir().join(format!("carecast-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = carecast(&dir, &["synth", "--patients", "3000", "--seed", "11", "--output", "synth"]);
    assert!(out.contains("3000 patients"), "{out}");
    std::fs::write(
        dir.join("task.toml"),
        "name = \"dementia_5y\"\ndescription = \"Dementia within five years of 1 January 2020\"\nprediction_date = \"2020-01-01\"\noutcome_codes = [\"ICD10//F0*\"]\nhorizon = \"5y\"\ncompeting_codes = [\"MEDS_DEATH\"]\nmin_history = \"1y\"\n",
    )
    .unwrap();
    let out = carecast(&dir, &["labels", "--meds", "synth", "--task", "task.toml", "--output", "labels.parquet"]);
    assert!(out.contains("dementia_5y: 3000 prediction times"), "{out}");
    let labels = read_table(&dir.join("labels.parquet")).unwrap();
    assert_eq!(labels.height(), 3000);
    let truth = read_table(&dir.join("synth/truth.parquet")).unwrap();
    let positives = |df: &polars::prelude::DataFrame, c: &str| df.column(c).unwrap().bool().unwrap().sum().unwrap();
    assert_eq!(positives(&labels, "boolean_value"), positives(&truth, "dementia_within_5y"));

    // A model trained on the events, with the bundled synthetic dementia specs.
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../training/tasks");
    let out = carecast(
        &dir,
        &[
            "train",
            "--meds",
            "synth",
            "--task",
            tasks.join("synth_dementia_5y.toml").to_str().unwrap(),
            "--features",
            tasks.join("synth_dementia_features.toml").to_str().unwrap(),
            "--model",
            "gbm",
        ],
    );
    assert!(out.contains("synth_dementia_5y-gbm v1: test n="), "{out}");

    // Everyone in the dataset scored by it at the index date, in chunks of one data file.
    let score = ["score", "--model", "synth_dementia_5y-gbm", "--meds", "synth", "--output", "dementia.parquet"];
    let out = carecast(&dir, &[&score[..], &["--at", "2020-01-01"]].concat());
    assert!(out.contains("scored 3000 of 3000 rows into dementia.parquet"), "{out}");
    let scores = read_table(&dir.join("dementia.parquet")).unwrap();
    let keys = carecast_tables::text_column(&scores, "subject_id").unwrap();
    let distinct: std::collections::HashSet<_> = keys.iter().flatten().collect();
    assert_eq!((scores.height(), distinct.len()), (3000, 3000));
    let out = carecast(&dir, &["audit", "verify"]);
    assert!(out.contains("1 batch run"), "{out}");
    // Without a prediction time, or with a table too, clap refuses it and names what is wrong.
    let refused = Command::new(env!("CARGO_BIN_EXE_carecast")).args(score).current_dir(&dir).output().unwrap();
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--at <AT>"));

    // Two hundred years of required history excludes everyone, and says why.
    let strict = std::fs::read_to_string(dir.join("task.toml")).unwrap().replace("\"1y\"", "\"200y\"");
    std::fs::write(dir.join("strict.toml"), strict).unwrap();
    let out = carecast(&dir, &["labels", "--meds", "synth", "--task", "strict.toml", "--output", "none.parquet"]);
    assert!(
        out.contains("0 prediction times") && out.contains("left out 3000: less history than the minimum"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
