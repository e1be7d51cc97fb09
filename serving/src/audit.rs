//! The audit trail: every score (when, which caller, which pseudonymous patient, which model
//! version, what probability and band) as a record in an embedded database (redb), committed
//! durably before the score is returned, so every score a caller received is on record, a kill
//! -9 included.
//!
//! Records are hash-chained: each holds the SHA-256 of the record before it and its own hash over
//! its contents and that link, so changing, deleting or reordering any record breaks the chain
//! ([`verify`], `carecast audit verify`). Cutting records off the end leaves a valid shorter
//! chain: keep the head hash `verify` prints somewhere else to detect that.
//!
//! One writer thread owns the database and commits whatever has queued up in one transaction (one
//! fsync for many concurrent scores), then acknowledges each of them.

use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// The link of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most records committed in one transaction.
const MAX_GROUP: usize = 4096;

/// A score to record, as the scoring code has it.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    pub time: DateTime<Utc>,
    /// Who asked: the authenticated caller, else the peer address, or `batch`.
    pub caller: &'a str,
    pub patient_key: &'a str,
    pub model: &'a str,
    pub model_version: &'a str,
    pub probability: f64,
    pub risk_band: &'a str,
}

/// A record as stored: the score, its place in the chain, and the hashes that chain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub caller: String,
    pub patient_key: String,
    pub model: String,
    pub model_version: String,
    pub probability: f64,
    pub risk_band: String,
    /// The previous record's hash (zeros for the first).
    pub prev: String,
    /// SHA-256 of `prev` and this record's contents.
    pub hash: String,
}

impl Entry {
    /// The record, not yet in the chain (the writer numbers and links it).
    fn unchained(r: &AuditRecord<'_>) -> Self {
        Entry {
            seq: 0,
            time: r.time,
            caller: r.caller.into(),
            patient_key: r.patient_key.into(),
            model: r.model.into(),
            model_version: r.model_version.into(),
            probability: r.probability,
            risk_band: r.risk_band.into(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    fn chain(&mut self, seq: u64, prev: &str) {
        self.seq = seq;
        self.prev = prev.into();
        self.hash = self.digest();
    }

    /// The hash this record must carry: over its contents with `hash` left empty.
    fn digest(&self) -> String {
        let body = Entry { hash: String::new(), ..self.clone() };
        hex::encode(Sha256::digest(serde_json::to_vec(&body).expect("plain data serialises")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error("audit trail broken at record {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error("audit trail is closed")]
    Closed,
}

/// Where an acknowledgement goes: a waiting thread, or an awaiting task.
enum Reply {
    Blocking(mpsc::SyncSender<Result<(), String>>),
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
}

struct Job {
    entries: Vec<Entry>,
    reply: Reply,
}

pub struct AuditLog {
    path: PathBuf,
    /// Shared with the writer: reads (verification) run beside its commits.
    db: Arc<Database>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> AuditError {
    AuditError::Store { path: path.to_path_buf(), reason: e.to_string() }
}

impl AuditLog {
    /// Opens (or creates) the trail at `path` and continues its chain.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| store_error(path, e))?;
        }
        let db = Arc::new(Database::create(path).map_err(|e| store_error(path, e))?);
        let head = {
            let txn = db.begin_read().map_err(|e| store_error(path, e))?;
            match txn.open_table(RECORDS) {
                Ok(table) => match table.last().map_err(|e| store_error(path, e))? {
                    Some((_, v)) => {
                        let e: Entry = serde_json::from_slice(v.value()).map_err(|e| store_error(path, e))?;
                        Some((e.seq, e.hash))
                    }
                    None => None,
                },
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(store_error(path, e)),
            }
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(&writer_db, head, queue))
            .map_err(|e| store_error(path, e))?;
        Ok(Self { path: path.to_path_buf(), db, jobs: Some(jobs), writer: Some(writer) })
    }

    /// Checks the chain as committed so far (see [`verify`]), while the trail stays in use.
    pub fn verify(&self) -> Result<Verified, AuditError> {
        read_chain(&self.db, &self.path, |_| ())
    }

    /// Every committed record, in order.
    pub fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        let mut all = Vec::new();
        read_chain(&self.db, &self.path, |e| all.push(e))?;
        Ok(all)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn job<'a>(records: impl IntoIterator<Item = &'a AuditRecord<'a>>, reply: Reply) -> Job {
        Job { entries: records.into_iter().map(Entry::unchained).collect(), reply }
    }

    fn send(&self, job: Job) -> Result<(), AuditError> {
        self.jobs.as_ref().ok_or(AuditError::Closed)?.send(job).map_err(|_| AuditError::Closed)
    }

    /// Records scores and returns once they are durably committed; a score whose audit fails
    /// must not be returned.
    pub async fn record(&self, records: &[AuditRecord<'_>]) -> Result<(), AuditError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Self::job(records, Reply::Async(reply)))?;
        let result = done.await.map_err(|_| AuditError::Closed)?;
        result.map_err(|reason| store_error(&self.path, reason))
    }

    /// Records many scores (batch scoring), blocking until they are committed.
    pub fn record_all<'a>(&self, records: impl IntoIterator<Item = &'a AuditRecord<'a>>) -> Result<(), AuditError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Self::job(records, Reply::Blocking(reply)))?;
        let result = done.recv().map_err(|_| AuditError::Closed)?;
        result.map_err(|reason| store_error(&self.path, reason))
    }
}

/// Closing waits for the writer to commit what is queued.
impl Drop for AuditLog {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.writer.take() {
            w.join().ok();
        }
    }
}

fn write_loop(db: &Database, mut head: Option<(u64, String)>, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        let mut pending = jobs[0].entries.len();
        while pending < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => {
                    pending += job.entries.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let result = commit(db, &head, &mut jobs);
        let reply = match result {
            Ok(new_head) => {
                head = new_head;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "audit commit failed");
                Err(e)
            }
        };
        for job in jobs {
            match job.reply {
                Reply::Blocking(tx) => drop(tx.send(reply.clone())),
                Reply::Async(tx) => drop(tx.send(reply.clone())),
            }
        }
    }
}

/// Appends the jobs' records in one durable transaction; returns the new head.
fn commit(db: &Database, head: &Option<(u64, String)>, jobs: &mut [Job]) -> Result<Option<(u64, String)>, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let mut head = head.clone();
    {
        let mut table = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
        for entry in jobs.iter_mut().flat_map(|j| &mut j.entries) {
            match &head {
                Some((seq, hash)) => entry.chain(seq + 1, hash),
                None => entry.chain(0, GENESIS),
            }
            let bytes = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
            table.insert(entry.seq, bytes.as_slice()).map_err(|e| e.to_string())?;
            head = Some((entry.seq, entry.hash.clone()));
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(head)
}

/// What a verified trail holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub records: u64,
    /// The last record's hash: keep it elsewhere to detect records cut off the end later.
    pub head: String,
}

/// Reads the trail at `path` (with no server holding it open) and checks the chain: sequence
/// numbers without gaps, each link equal to the previous hash, each hash equal to its contents'.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let db = Database::open(path).map_err(|e| store_error(path, e))?;
    read_chain(&db, path, |_| ())
}

/// Walks the records in order, checking the chain, handing each checked record to `each`.
fn read_chain(db: &Database, path: &Path, mut each: impl FnMut(Entry)) -> Result<Verified, AuditError> {
    let txn = db.begin_read().map_err(|e| store_error(path, e))?;
    let table = match txn.open_table(RECORDS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Verified { records: 0, head: GENESIS.into() }),
        Err(e) => return Err(store_error(path, e)),
    };
    let mut prev = GENESIS.to_string();
    let mut expected = 0u64;
    for item in table.iter().map_err(|e| store_error(path, e))? {
        let (key, value) = item.map_err(|e| store_error(path, e))?;
        let seq = key.value();
        let broken = |reason: String| AuditError::Broken { seq, reason };
        if seq != expected {
            return Err(AuditError::Broken { seq: expected, reason: format!("missing (the next record is {seq})") });
        }
        let entry: Entry = serde_json::from_slice(value.value()).map_err(|e| broken(format!("unreadable: {e}")))?;
        if entry.seq != seq {
            return Err(broken(format!("stored under {seq} but numbered {}", entry.seq)));
        }
        if entry.prev != prev {
            return Err(broken("does not link to the record before it".into()));
        }
        if entry.digest() != entry.hash {
            return Err(broken("contents do not match its hash (altered)".into()));
        }
        prev.clone_from(&entry.hash);
        expected += 1;
        each(entry);
    }
    Ok(Verified { records: expected, head: prev })
}
