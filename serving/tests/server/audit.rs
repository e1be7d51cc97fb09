//! The audit trail: concurrent scores are all recorded once, in one unbroken hash chain that
//! survives reopening; altering, re-hashing or deleting a record is detected at that record.

use carecast_serving::audit::{AuditError, AuditLog, AuditRecord, Entry, verify};
use redb::{Database, ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

fn record(key: &str) -> AuditRecord<'_> {
    AuditRecord { time: chrono::Utc::now(), caller: "test", patient_key: key, model: "m", model_version: "1", probability: 0.25, risk_band: "low" }
}

/// Rewrites record `seq` in place (as someone with write access to the file could).
fn tamper(path: &std::path::Path, seq: u64, change: impl FnOnce(&mut Entry)) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(RECORDS).unwrap();
        let mut entry: Entry = serde_json::from_slice(table.get(seq).unwrap().unwrap().value()).unwrap();
        change(&mut entry);
        table.insert(seq, serde_json::to_vec(&entry).unwrap().as_slice()).unwrap();
    }
    txn.commit().unwrap();
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
    let path = dir.join("audit.redb");
    let log = Arc::new(AuditLog::open(&path).unwrap());

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

    // Reopened, the chain continues from its head.
    drop(Arc::into_inner(log).expect("no other handle"));
    let log = AuditLog::open(&path).unwrap();
    log.record(&[record("after-restart")]).await.unwrap();
    let last = log.entries().unwrap().pop().unwrap();
    assert_eq!((last.seq, last.prev.as_str()), (2100, head.as_str()));
    drop(log);
    assert_eq!(verify(&path).unwrap().records, 2101);

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
    // A deleted record: the gap is named.
    let db = Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(RECORDS).unwrap().remove(5).unwrap();
    txn.commit().unwrap();
    drop(db);
    let (seq, reason) = broken_at(&path);
    assert!(seq == 5 && reason.contains("missing"), "{seq}: {reason}");
    std::fs::remove_dir_all(&dir).unwrap();
}
