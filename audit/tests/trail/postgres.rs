//! The audit trail in a real PostgreSQL server: two servers sharing the table extend one chain,
//! a refused write is reported without the row, the table refuses UPDATE, DELETE and TRUNCATE,
//! and a change made behind the trigger's back is found by verification at that record; the
//! trail reaches the server over TLS, verified.
//!
//! Needs `CARECAST_TEST_POSTGRES`, a key=value connection string of a role that may create
//! schemas (`.ci/run` installs and starts Debian's PostgreSQL and sets it); without it the test
//! says so and does nothing, except under CI (`CI` set), where it fails. The TLS test also
//! needs `CARECAST_TEST_POSTGRES_CA`, the CA that signed the server's certificate for localhost.

use carecast_audit::{AuditError, AuditLog, AuditRecord, BatchRun, Location, verify};
use std::collections::HashSet;

fn record(key: &str) -> AuditRecord<'_> {
    AuditRecord {
        time: chrono::Utc::now(),
        caller: "pg-test",
        patient_key: key,
        model: "m",
        model_version: "1",
        probability: 0.125,
        risk_band: "low",
    }
}

/// A fresh schema on the test server, and a connection string that works in it.
fn schema(base: &str, name: &str) -> (postgres::Client, String) {
    let mut admin = postgres::Client::connect(base, postgres::NoTls).expect("CARECAST_TEST_POSTGRES: cannot connect");
    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")).unwrap();
    admin.batch_execute(&format!("SET search_path = {name}")).unwrap();
    (admin, format!("{base} options=-csearch_path={name}"))
}

#[test]
fn a_shared_postgresql_trail_is_one_chain_append_only_and_tampering_is_found() {
    let Ok(base) = std::env::var("CARECAST_TEST_POSTGRES") else {
        // In CI the database is part of the run: its absence is a failure, not a skip.
        assert!(
            std::env::var("CI").is_err(),
            "CI is set but CARECAST_TEST_POSTGRES is not: .ci/run starts PostgreSQL for this test"
        );
        eprintln!("SKIPPED: set CARECAST_TEST_POSTGRES to a PostgreSQL connection string (.ci/run does)");
        return;
    };
    let name = format!("carecast_audit_test_{}", std::process::id());
    let (mut admin, conn) = schema(&base, &name);
    let location = Location::parse(&conn);
    assert!(matches!(location, Location::Postgres(_)));

    // Two servers on one table, four threads each, writing at once.
    let logs = [AuditLog::open_at(&location).unwrap(), AuditLog::open_at(&location).unwrap()];
    std::thread::scope(|s| {
        for (l, log) in logs.iter().enumerate() {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..50 {
                        let keys: Vec<String> = (0..3).map(|j| format!("s{l}-t{t}-{i}-{j}")).collect();
                        let records: Vec<AuditRecord<'_>> = keys.iter().map(|k| record(k)).collect();
                        log.record_all(&records).unwrap();
                    }
                });
            }
        }
    });
    // And from async code, as the server records.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(logs[1].record(&[record("async-1")])).unwrap();
    let entries = logs[0].entries().unwrap();
    assert_eq!(entries.len(), 2 * 4 * 50 * 3 + 1);
    let keys: HashSet<&str> = entries.iter().map(|e| e.patient_key.as_str()).collect();
    assert_eq!(keys.len(), entries.len(), "each score recorded once");
    let verified = verify(location.clone()).unwrap();
    assert_eq!(
        (verified.records, verified.head.as_str()),
        (entries.len() as u64, entries.last().unwrap().hash.as_str())
    );
    drop(logs);

    // Reopened, the chain continues.
    let log = AuditLog::open_at(&location).unwrap();
    log.record_all(&[record("after-restart")]).unwrap();
    let last = log.entries().unwrap().pop().unwrap();
    assert_eq!((last.seq, last.prev.as_str()), (entries.len() as u64, verified.head.as_str()));
    // A batch run is one record whose run details survive the round trip and are chained.
    let run = BatchRun {
        started: chrono::Utc::now(),
        input_sha256: "a".repeat(64),
        output_sha256: "b".repeat(64),
        rows: 1_000_000,
        scored: 999_998,
        refused: 2,
    };
    log.record_run("pg-test", "m", "1", run.clone()).unwrap();
    let stored = log.entries().unwrap().pop().unwrap();
    assert_eq!(stored.batch.as_ref(), Some(&run));
    assert_eq!(verify(location.clone()).unwrap().batch_runs, 1);
    let batch_seq = stored.seq;

    // A refused write says why without the row (PostgreSQL's DETAIL would quote it, patient key
    // and score included), and nothing of it is kept.
    admin.batch_execute("ALTER TABLE carecast_audit ADD CONSTRAINT no_new_rows CHECK (seq < 0) NOT VALID").unwrap();
    let refused = log.record_all(&[record("pt-7f3a-secret")]).unwrap_err().to_string();
    assert!(refused.contains("no_new_rows") && !refused.contains("pt-7f3a-secret"), "{refused}");
    admin.batch_execute("ALTER TABLE carecast_audit DROP CONSTRAINT no_new_rows").unwrap();
    drop(log);

    // The table refuses changes...
    for sql in [
        "UPDATE carecast_audit SET probability = 0.9 WHERE seq = 10",
        "DELETE FROM carecast_audit WHERE seq = 10",
        "TRUNCATE carecast_audit",
    ] {
        let err = admin.batch_execute(sql).expect_err(sql);
        let message = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
        assert!(message.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(verify(location.clone()).unwrap().records, entries.len() as u64 + 2);
    // ...and a change made behind the trigger's back breaks the chain at that record: a batch
    // run's counts are covered by its hash as a score's probability is.
    let recount = |from: &str, to: &str| {
        format!("UPDATE carecast_audit SET batch = replace(batch, '{from}', '{to}') WHERE seq = {batch_seq}")
    };
    admin.batch_execute("ALTER TABLE carecast_audit DISABLE TRIGGER USER").unwrap();
    admin.batch_execute(&recount("999998", "999999")).unwrap();
    match verify(location.clone()) {
        Err(AuditError::Broken { seq, reason }) => {
            assert!(seq == batch_seq && reason.contains("altered"), "{seq}: {reason}")
        }
        other => panic!("expected a break at the batch run, got {other:?}"),
    }
    admin.batch_execute(&recount("999999", "999998")).unwrap();
    admin.batch_execute("UPDATE carecast_audit SET probability = 0.9 WHERE seq = 10").unwrap();
    match verify(location.clone()) {
        Err(AuditError::Broken { seq: 10, reason }) => assert!(reason.contains("altered"), "{reason}"),
        other => panic!("expected a break at 10, got {other:?}"),
    }
    admin
        .batch_execute(
            "UPDATE carecast_audit SET probability = 0.125 WHERE seq = 10; DELETE FROM carecast_audit WHERE seq = 20",
        )
        .unwrap();
    match verify(location.clone()) {
        Err(AuditError::Broken { seq: 20, reason }) => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("expected a gap at 20, got {other:?}"),
    }
    admin.batch_execute(&format!("DROP SCHEMA {name} CASCADE")).unwrap();
}

/// `sslmode=require` with the CA: the trail's connection is encrypted (as the server itself
/// reports) and verified; a server certificate from another CA, or no CA given, is refused.
#[test]
fn the_trail_reaches_postgresql_over_verified_tls() {
    let (Ok(base), Ok(ca)) = (std::env::var("CARECAST_TEST_POSTGRES"), std::env::var("CARECAST_TEST_POSTGRES_CA"))
    else {
        assert!(std::env::var("CI").is_err(), "CI is set but CARECAST_TEST_POSTGRES(_CA) is not: .ci/run sets both");
        eprintln!("SKIPPED: set CARECAST_TEST_POSTGRES and CARECAST_TEST_POSTGRES_CA (.ci/run does)");
        return;
    };
    let name = format!("carecast_audit_tls_{}", std::process::id());
    let (mut admin, conn) = schema(&base, &name);
    // The certificate names localhost.
    let conn = conn.replace("host=127.0.0.1", "host=localhost");
    let application = format!("carecast_tls_{}", std::process::id());
    let tls = Location::parse(&format!("{conn} sslmode=require sslrootcert={ca} application_name={application}"));
    let log = AuditLog::open_at(&tls).unwrap();
    log.record_all(&[record("over-tls")]).unwrap();
    assert_eq!(log.entries().unwrap().len(), 1);
    let row = admin
        .query_one("SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1", &[&application])
        .unwrap();
    let (connections, encrypted): (i64, bool) = (row.get(0), row.get(1));
    assert!(connections >= 1 && encrypted, "the server sees {connections} connection(s), encrypted: {encrypted}");
    drop(log);

    let mut stranger = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    stranger.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = stranger.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    let other = std::env::temp_dir().join(format!("carecast-other-ca-{}.pem", std::process::id()));
    std::fs::write(&other, other_ca.pem()).unwrap();
    let refused =
        AuditLog::open_at(&Location::parse(&format!("{conn} sslmode=require sslrootcert={}", other.display())))
            .err()
            .expect("another CA's trust refuses the server");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    let unverified =
        AuditLog::open_at(&Location::parse(&format!("{conn} sslmode=require"))).err().expect("no CA, no connection");
    assert!(unverified.to_string().contains("sslrootcert"), "{unverified}");
    std::fs::remove_file(&other).ok();
    admin.batch_execute(&format!("DROP SCHEMA {name} CASCADE")).unwrap();
}

#[test]
fn connection_strings_are_told_apart_from_files_and_never_shown_with_their_password() {
    let url = Location::parse("postgresql://auditor:s3cret@db.trust.example:5433/audit");
    assert_eq!(url.to_string(), "postgresql://auditor@db.trust.example:5433/audit");
    let kv = Location::parse("host=10.0.0.5 user=auditor password=s3cret dbname=audit");
    assert_eq!(kv.to_string(), "postgresql://auditor@10.0.0.5:5432/audit");
    assert_eq!(Location::parse("registry/audit.jsonl"), Location::File("registry/audit.jsonl".into()));
    // Refused connections name the server, not the password.
    let refused = AuditLog::open_at(&Location::parse(
        "host=127.0.0.1 port=1 user=auditor password=s3cret dbname=audit connect_timeout=2",
    ))
    .err()
    .expect("nothing listens on port 1");
    let message = refused.to_string();
    assert!(message.contains("postgresql://auditor@127.0.0.1:1/audit") && !message.contains("s3cret"), "{message}");
}
