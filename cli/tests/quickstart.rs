//! The README's quickstart (`carecast demo`) and the individual commands, run as a user would.

use std::path::Path;
use std::process::Command;

fn carecast(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_carecast")).args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "carecast {args:?} failed:\n{text}");
    text
}

#[test]
fn demo_and_commands_work_end_to_end() {
    let dir = std::env::temp_dir().join(format!("carecast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let demo = carecast(&dir, &["demo"]);
    assert!(demo.contains("support2_hospdead-logistic v1") && demo.contains("support2_hospdead-gbm v1"), "{demo}");
    assert!(demo.contains("scored 9105 of 9105 rows"), "{demo}");
    assert!(demo.contains("additivity error") && demo.contains(": raises risk"), "{demo}");
    assert!(dir.join("out/support2_hospdead_scores.parquet").exists());
    // One audit line per score: 9,105 batch scores and one over gRPC.
    let audit = std::fs::read_to_string(dir.join("registry/audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 9105 + 1);

    // Retraining publishes version 2 and promotes it.
    carecast(&dir, &["train", "--task", "support2_hospdead", "--model", "gbm"]);
    let models = carecast(&dir, &["models"]);
    assert!(models.contains("support2_hospdead-gbm: versions 1, 2 (current 2)"), "{models}");

    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let scored = carecast(&dir, &[
        "score", "--model", "support2_hospdead-gbm", "--version", "1", "--input", shared.to_str().unwrap(),
        "--output", "scores.parquet", "--key-column", "sno",
    ]);
    assert!(scored.contains("v1: scored 9105 of 9105 rows"), "{scored}");

    let bad = Command::new(env!("CARGO_BIN_EXE_carecast")).args(["train", "--task", "no_such_task"]).current_dir(&dir).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_task"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ingest_pseudonymises_reduces_birth_dates_and_honours_opt_outs() {
    use carecast_training::ingest::meds::read_meds;
    let dir = std::env::temp_dir().join(format!("carecast-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), b"a secret key held by the trust").unwrap();
    std::fs::write(dir.join("opt_out.txt"), "1\n2\n3\n").unwrap();
    let pbc2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pbc2.csv");
    let out = carecast(&dir, &[
        "ingest", "--input", pbc2.to_str().unwrap(), "--mapping", "pbc2", "--output", "meds",
        "--key-file", "key", "--opt-out", "opt_out.txt",
    ]);
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
