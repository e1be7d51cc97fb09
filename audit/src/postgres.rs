//! The audit trail in PostgreSQL: one row per record in `carecast_audit` (in the connection's
//! search path), with the same fields and hashes as the embedded store, so the trust's
//! information-governance team can query it with SQL. A trigger refuses UPDATE, DELETE and
//! TRUNCATE; the hash chain still catches changes made by someone who disables it. Several
//! servers may share the table: each commit locks it, reads the head and extends the chain.
//!
//! The client is `postgres` (pure Rust, synchronous): it runs on the audit writer's own thread,
//! never on the async workers. It speaks TLS (rustls) when the connection string says
//! `sslmode=require` with `sslrootcert=FILE`, verifying the server's certificate and name.

use crate::checkpoint::Signer;
use crate::error::{StoreFault, Unreadable};
use crate::record::Entry;
use crate::trail::{Records, Trail, chain};
use chrono::{DateTime, Utc};
use postgres::{Client, Config, NoTls};

/// Creates the table and its guard if missing; under an advisory lock, as several servers may
/// start at once.
const SCHEMA: &str = r#"
SELECT pg_advisory_xact_lock(7410117);
CREATE TABLE IF NOT EXISTS carecast_audit (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    caller TEXT NOT NULL,
    patient_key TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    risk_band TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
-- A checkpoint record's signature (JSON), null on score records; added to older tables.
ALTER TABLE carecast_audit ADD COLUMN IF NOT EXISTS checkpoint TEXT;
-- A batch run's record (JSON: input and output SHA-256, row counts), null on others.
ALTER TABLE carecast_audit ADD COLUMN IF NOT EXISTS batch TEXT;
CREATE OR REPLACE FUNCTION carecast_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'carecast_audit is append-only: % refused', TG_OP;
END $$;
CREATE OR REPLACE TRIGGER carecast_audit_append_only BEFORE UPDATE OR DELETE ON carecast_audit
    FOR EACH ROW EXECUTE FUNCTION carecast_audit_append_only();
CREATE OR REPLACE TRIGGER carecast_audit_no_truncate BEFORE TRUNCATE ON carecast_audit
    FOR EACH STATEMENT EXECUTE FUNCTION carecast_audit_append_only();
"#;

const COLUMNS: &str =
    "seq, at, caller, patient_key, model, model_version, probability, risk_band, prev, hash, checkpoint, batch";

/// A connection string without libpq's `sslrootcert` (which the Rust client does not parse),
/// and that file: the CA that must have signed the server's certificate.
fn split_root_cert(conn: &str) -> (String, Option<String>) {
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let Some((base, query)) = conn.split_once('?') else { return (conn.to_string(), None) };
        let (mut root, mut kept) = (None, Vec::new());
        for pair in query.split('&') {
            match pair.strip_prefix("sslrootcert=") {
                Some(path) => root = Some(path.to_string()),
                None => kept.push(pair),
            }
        }
        let conn = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        (conn, root)
    } else {
        let (mut root, mut kept) = (None, Vec::new());
        for pair in conn.split_whitespace() {
            match pair.strip_prefix("sslrootcert=") {
                Some(path) => root = Some(path.to_string()),
                None => kept.push(pair),
            }
        }
        (kept.join(" "), root)
    }
}

/// Connects over TLS (rustls, ring) when the string asks for it: `sslmode=require` needs
/// `sslrootcert=FILE`, and the server's certificate must chain to it and name the host;
/// `sslmode=prefer` with a `sslrootcert` does the same. Otherwise plain TCP, as before.
fn connect(conn: &str) -> Result<Client, StoreFault> {
    let (conn, root) = split_root_cert(conn);
    let config: Config = conn.parse().map_err(|e: postgres::Error| StoreFault::ConnectionString(e.to_string()))?;
    use postgres::config::SslMode;
    match root {
        Some(root) if config.get_ssl_mode() != SslMode::Disable => {
            config.connect(tls(&root)?).map_err(pg("connecting"))
        }
        None if config.get_ssl_mode() == SslMode::Require => Err(StoreFault::NoRootCertificate),
        _ => config.connect(NoTls).map_err(pg("connecting")),
    }
}

/// PostgreSQL's refusal while `doing` something. A database error gives its code and message
/// only: its DETAIL may quote the failing row, a patient's key and score among it. Other errors
/// give their causes (a TLS refusal says why: an unknown issuer, a name mismatch).
fn pg(doing: &'static str) -> impl Fn(postgres::Error) -> StoreFault {
    move |e| {
        let reason = match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => {
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    text.push_str(": ");
                    text.push_str(&c.to_string());
                    cause = c.source();
                }
                text
            }
        };
        StoreFault::Postgres { doing, reason }
    }
}

fn tls(root: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreFault> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    use rustls::{ClientConfig, RootCertStore, crypto::ring};
    let refused = |reason: String| StoreFault::RootCertificate { path: root.to_string(), reason };
    let pem = std::fs::read(root).map_err(|e| refused(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.map_err(|e| refused(e.to_string()))?).map_err(|e| refused(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(refused("no PEM certificate found".into()));
    }
    let config = ClientConfig::builder_with_provider(std::sync::Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The server, database and user a connection string names, for logs: never its password.
pub(crate) fn describe(conn: &str) -> String {
    let Ok(config) = split_root_cert(conn).0.parse::<Config>() else {
        return "PostgreSQL (unreadable connection string)".into();
    };
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgresql://{}@{host}:{port}/{}", config.get_user().unwrap_or(""), config.get_dbname().unwrap_or(""))
}

pub(crate) struct PostgresTrail {
    conn: String,
    client: Client,
}

impl PostgresTrail {
    /// Connects and makes sure the table exists.
    pub(crate) fn connect(conn: &str) -> Result<Self, StoreFault> {
        // The client blocks on a runtime of its own: set up on a plain thread, as the caller may
        // be an async worker (it is then used and dropped on the audit writer's thread).
        let client = std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = connect(conn)?;
                let mut txn = client.transaction().map_err(pg("creating carecast_audit"))?;
                txn.batch_execute(SCHEMA).map_err(pg("creating carecast_audit"))?;
                txn.commit().map_err(pg("creating carecast_audit"))?;
                Ok::<_, StoreFault>(client)
            })
            .join()
            .expect("connect thread")
        })?;
        Ok(Self { conn: conn.to_string(), client })
    }
}

impl Trail for PostgresTrail {
    fn append(&mut self, entries: &mut [Entry], signer: Option<&Signer>) -> Result<(), StoreFault> {
        if self.client.is_closed() {
            self.client = connect(&self.conn)?; // the server restarted: nothing was acknowledged since
        }
        let mut txn = self.client.transaction().map_err(pg("appending"))?;
        txn.batch_execute("LOCK TABLE carecast_audit IN EXCLUSIVE MODE").map_err(pg("locking carecast_audit"))?;
        let head = txn
            .query_opt("SELECT seq, hash FROM carecast_audit ORDER BY seq DESC LIMIT 1", &[])
            .map_err(pg("reading the chain's head"))?
            .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, String>(1)));
        chain(head, entries, signer);
        // One statement for the whole group: columns as arrays, unnested into rows.
        let seq: Vec<i64> = entries.iter().map(|e| e.seq as i64).collect();
        let at: Vec<DateTime<Utc>> = entries.iter().map(|e| e.time).collect();
        let text = |f: fn(&Entry) -> &String| entries.iter().map(f).collect::<Vec<&String>>();
        let probability: Vec<f64> = entries.iter().map(|e| e.probability).collect();
        let json = |f: fn(&Entry) -> Option<String>| entries.iter().map(f).collect::<Vec<Option<String>>>();
        let checkpoint = json(|e| e.checkpoint.as_ref().map(|c| serde_json::to_string(c).expect("plain data")));
        let batch = json(|e| e.batch.as_ref().map(|b| serde_json::to_string(b).expect("plain data")));
        txn.execute(
            &format!(
                "INSERT INTO carecast_audit ({COLUMNS}) SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::float8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])"
            ),
            &[
                &seq,
                &at,
                &text(|e| &e.caller),
                &text(|e| &e.patient_key),
                &text(|e| &e.model),
                &text(|e| &e.model_version),
                &probability,
                &text(|e| &e.risk_band),
                &text(|e| &e.prev),
                &text(|e| &e.hash),
                &checkpoint,
                &batch,
            ],
        )
        .map_err(pg("appending"))?;
        txn.commit().map_err(pg("committing"))
    }
}

/// Every row in order, read on a plain thread (see [`PostgresTrail::connect`]).
pub(crate) fn records(conn: &str) -> Result<Records, StoreFault> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut client = connect(conn)?;
            let rows = client
                .query(&format!("SELECT {COLUMNS} FROM carecast_audit ORDER BY seq"), &[])
                .map_err(pg("reading"))?;
            Ok(rows
                .iter()
                .map(|row| {
                    let seq = row.get::<_, i64>(0) as u64;
                    let entry = Entry {
                        seq,
                        time: row.get(1),
                        caller: row.get(2),
                        patient_key: row.get(3),
                        model: row.get(4),
                        model_version: row.get(5),
                        probability: row.get(6),
                        risk_band: row.get(7),
                        prev: row.get(8),
                        hash: row.get(9),
                        checkpoint: None,
                        batch: None,
                    };
                    let checkpoint = row.get::<_, Option<String>>(10).map(|c| serde_json::from_str(&c));
                    let batch = row.get::<_, Option<String>>(11).map(|b| serde_json::from_str(&b));
                    match (checkpoint.transpose(), batch.transpose()) {
                        (Ok(checkpoint), Ok(batch)) => (seq, Ok(Entry { checkpoint, batch, ..entry })),
                        (Err(e), _) => (seq, Err(Unreadable::Checkpoint(e))),
                        (_, Err(e)) => (seq, Err(Unreadable::BatchRun(e))),
                    }
                })
                .collect())
        })
        .join()
        .expect("audit read thread")
    })
}
