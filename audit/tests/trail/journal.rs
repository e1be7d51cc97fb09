//! The audit trail: concurrent scores are all recorded once, in one unbroken hash chain that
//! survives reopening; altering, re-hashing, deleting or repeating a record is detected at that
//! record; a record whose write was cut short is moved aside; a second writer is refused. With a
//! signing key, checkpoints make a rewritten chain and records cut off the end detectable, and
//! hashes are over the records' canonical JSON (RFC 8785).

use carecast_audit::{AuditError, AuditLog, AuditRecord, Entry, Location, Signer, Signing, verify, verify_trusted};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

fn record(key: &str) -> AuditRecord<'_> {
    AuditRecord {
        time: chrono::Utc::now(),
        caller: "test",
        patient_key: key,
        model: "m",
        model_version: "1",
        probability: 0.25,
        risk_band: "low",
    }
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
    assert!(
        bytes[end..].len() > torn.len() && bytes[end..].iter().all(|&b| b == b' '),
        "room is kept after the records"
    );
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
    assert!(!text.contains(r#""caller":"te""#), "the cut-short record is cleared from the journal");
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(kept.len(), 1, "and kept beside it: {kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), torn, "byte for byte");
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

/// An attacker with write access to the trail but not the key: alters a record and recomputes
/// every hash after it, re-signing the checkpoints with a key of their own. The unkeyed chain
/// then verifies; the trusted key does not. Records cut off the end, checkpoints included, are
/// found against the copies kept in a second location.
#[test]
fn signed_checkpoints_catch_a_rewritten_chain_and_a_cut_tail() {
    let dir = std::env::temp_dir().join(format!("carecast-audit-signed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (path, copies) = (dir.join("audit.jsonl"), dir.join("checkpoints.jsonl"));
    let (document, public) = Signer::generate().unwrap();
    let signing = Signing { signer: Some(Signer::from_pkcs8(&document).unwrap()), copies: Some(copies.clone()) };
    let log = AuditLog::open_signed(&Location::from(&path), signing).unwrap();
    let keys: Vec<String> = (0..2500).map(|i| format!("s{i}")).collect();
    for chunk in keys.chunks(250) {
        log.record_all(&chunk.iter().map(|k| record(k)).collect::<Vec<_>>()).unwrap();
    }
    assert_eq!(log.entries().unwrap().len(), 2500, "entries are the scores alone");
    drop(log); // closing signs what the last checkpoint did not cover

    let verified = verify_trusted(&path, &public, Some(&copies)).unwrap();
    assert_eq!((verified.records, verified.checkpoints), (2503, 3));
    assert_eq!(verified.last_checkpoint.unwrap().0, 2502, "the last record is a checkpoint covering all before it");
    assert_eq!(carecast_audit::checkpoint::copies(&copies).unwrap().len(), 3);

    // Each record's hash is SHA-256 of its canonical JSON: keys sorted, no spaces (here built by
    // serde_json's sorted map, independently of the JCS serializer the trail uses; for these
    // records' numbers the two agree, though RFC 8785 writes 0.0 as `0`, serde_json as `0.0`).
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines().filter(|l| l.starts_with('{')).take(3) {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        let hash = value["hash"].as_str().unwrap().to_string();
        value["hash"] = serde_json::json!("");
        assert_eq!(hex::encode(Sha256::digest(serde_json::to_vec(&value).unwrap())), hash);
    }

    // The rewrite: record 10's probability changed, every later hash recomputed, checkpoints
    // re-signed with the attacker's own key.
    let (forged, _) = Signer::generate().unwrap();
    let attacker = Signer::from_pkcs8(&forged).unwrap();
    let rewritten = dir.join("rewritten.jsonl");
    let mut entries: Vec<Entry> =
        text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    entries[10].probability = 0.99;
    let mut out = String::new();
    let mut prev = entries[9].hash.clone();
    for e in entries.iter_mut().skip(10) {
        e.prev = prev.clone();
        if e.is_checkpoint() {
            attacker.sign(e);
        }
        e.hash = String::new();
        e.hash = hex::encode(Sha256::digest(serde_jcs::to_vec(&*e).unwrap()));
        prev = e.hash.clone();
    }
    for e in &entries {
        out.push_str(&serde_json::to_string(e).unwrap());
        out.push('\n');
    }
    std::fs::write(&rewritten, &out).unwrap();
    let fooled = verify(&rewritten);
    assert!(fooled.is_ok(), "the unkeyed chain is fooled: {fooled:?}");
    match verify_trusted(&rewritten, &public, None) {
        Err(AuditError::Broken { seq, reason }) => {
            assert!(seq == 1000 && reason.contains("another key"), "{seq}: {reason}")
        }
        other => panic!("the trusted key must refuse the rewrite: {other:?}"),
    }

    // The tail cut off after record 1500: the chain that is left is valid, but the copies
    // name checkpoints it no longer has.
    let cut = dir.join("cut.jsonl");
    std::fs::write(
        &cut,
        text.lines().filter(|l| l.starts_with('{')).take(1500).map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    assert!(verify(&cut).is_ok());
    match verify_trusted(&cut, &public, Some(&copies)) {
        Err(AuditError::Broken { seq, reason }) => {
            assert!(seq == 2001 && reason.contains("cut off the end"), "{seq}: {reason}")
        }
        other => panic!("the cut must be found: {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
