//! The audit trail: concurrent scores are all recorded once, in one unbroken hash chain that
//! survives reopening; altering, re-hashing, deleting or repeating a record is detected at that
//! record; a record whose write was cut short is cleared; a second writer is refused.

use carecast_serving::audit::{AuditError, AuditLog, AuditRecord, Entry, verify};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

fn record(key: &str) -> AuditRecord<'_> {
    AuditRecord { time: chrono::Utc::now(), caller: "test", patient_key: key, model: "m", model_version: "1", probability: 0.25, risk_band: "low" }
}

/// Rewrites the journal's lines (as someone with write access to the file could), keeping the
/// space after them.
fn edit(path: &std::path::Path, change: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let end = text.rfind('\n').unwrap() + 1;
    let mut lines: Vec<String> = text[..end].lines().map(String::from).collect();
    change(&mut lines);
    std::fs::write(path, format!("{}\n{}", lines.join("\n"), &text[end..])).unwrap();
}

/// Rewrites record `seq` in place.
fn tamper(path: &std::path::Path, seq: usize, change: impl FnOnce(&mut Entry)) {
    edit(path, |lines| {
        let mut entry: Entry = serde_json::from_str(&lines[seq]).unwrap();
        change(&mut entry);
        lines[seq] = serde_json::to_string(&entry).unwrap();
    });
}

fn broken_at(path: &std::path::Path) -> (u64, String) {
    match verify(path) {
        Err(AuditError::Broken { seq, reason }) => (seq, reason),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_scores_form_one_verifiable_chain_and_tampering_is_found() {
    let dir = std::env::temp_dir().join(format!("carecast-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path).unwrap());
    let refused = AuditLog::open(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("in use by another server"), "a second writer is refused: {refused}");

    // 8 tasks × 200 single scores beside a batch of 500 from a blocking thread. Half the tasks
    // announce each score first, as the server does, and now and then announce one that is then
    // refused (never recorded): neither may lose, repeat or hold up a record.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("p{t}-{i}");
                if t % 2 == 0 {
                    let refused = (i % 10 == 0).then(|| log.announce());
                    log.announce().record(&[record(&key)]).await.unwrap();
                    drop(refused);
                } else {
                    log.record(&[record(&key)]).await.unwrap();
                }
            }
        }));
    }
    let batch_log = log.clone();
    let batch = tokio::task::spawn_blocking(move || {
        let keys: Vec<String> = (0..500).map(|i| format!("b{i}")).collect();
        let records: Vec<AuditRecord<'_>> = keys.iter().map(|k| record(k)).collect();
        batch_log.record_all(&records).unwrap();
    });
    for t in tasks {
        t.await.unwrap();
    }
    batch.await.unwrap();
    let entries = log.entries().unwrap();
    assert_eq!(entries.len(), 2100);
    let keys: HashSet<&str> = entries.iter().map(|e| e.patient_key.as_str()).collect();
    assert_eq!(keys.len(), 2100, "each score recorded once");
    let head = log.verify().unwrap().head;
    drop(entries);

    // Reopened after a crash cut a write short (a record never acknowledged, half on disk), the
    // chain continues from its head where that record was.
    drop(Arc::into_inner(log).expect("no other handle"));
    let bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let torn = br#"{"seq":2100,"time":"2026-12-02T10:00:00Z","caller":"te"#;
    assert!(bytes[end..].len() > torn.len() && bytes[end..].iter().all(|&b| b == b' '), "room is kept after the records");
    let mut crashed = bytes.clone();
    crashed[end..end + torn.len()].copy_from_slice(torn);
    std::fs::write(&path, &crashed).unwrap();
    assert_eq!(verify(&path).unwrap().records, 2100, "a line cut short is not a record");
    let log = AuditLog::open(&path).unwrap();
    log.record(&[record("after-restart")]).await.unwrap();
    let last = log.entries().unwrap().pop().unwrap();
    assert_eq!((last.seq, last.prev.as_str(), last.patient_key.as_str()), (2100, head.as_str(), "after-restart"));
    drop(log);
    assert_eq!(verify(&path).unwrap().records, 2101);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(r#""caller":"te""#), "the cut-short record is cleared");
    assert_eq!(text.lines().filter(|l| l.starts_with('{')).count(), 2101, "one JSON line a record");

    // A changed probability: that record no longer matches its hash.
    tamper(&path, 10, |e| e.probability = 0.99);
    let (seq, reason) = broken_at(&path);
    assert!(seq == 10 && reason.contains("altered"), "{seq}: {reason}");
    // Re-hashed to hide the change: the next record no longer links to it.
    tamper(&path, 10, |e| {
        let mut body = e.clone();
        body.hash = String::new();
        e.hash = hex::encode(Sha256::digest(serde_json::to_vec(&body).unwrap()));
    });
    let (seq, reason) = broken_at(&path);
    assert!(seq == 11 && reason.contains("link"), "{seq}: {reason}");
    // A repeated record, then a deleted one: each named.
    edit(&path, |lines| lines.insert(7, lines[6].clone()));
    let (seq, reason) = broken_at(&path);
    assert!(seq == 6 && reason.contains("repeated"), "{seq}: {reason}");
    edit(&path, |lines| {
        lines.remove(7);
        lines.remove(5);
    });
    let (seq, reason) = broken_at(&path);
    assert!(seq == 5 && reason.contains("missing"), "{seq}: {reason}");
    // A line that is no record at all.
    edit(&path, |lines| lines[3] = "not a record".into());
    let (seq, reason) = broken_at(&path);
    assert!(seq == 3 && reason.contains("unreadable"), "{seq}: {reason}");
    std::fs::remove_dir_all(&dir).unwrap();
}
