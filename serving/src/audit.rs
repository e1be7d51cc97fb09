//! The audit trail: every score (when, which caller, which pseudonymous patient, which model
//! version, what probability and band) as a record committed durably before the score is
//! returned, so every score a caller received is on record, a kill -9 included. Kept in an
//! append-only journal file by default ([`crate::audit_journal`]), or in a PostgreSQL table when
//! configured (a connection string, `postgresql://…` or `host=… dbname=…`), which several
//! servers may share.
//!
//! Records are hash-chained: each holds the SHA-256 of the record before it and its own hash over
//! its contents and that link, so changing, deleting or reordering any record breaks the chain
//! ([`verify`], `carecast audit verify`). Hashes are over each record's canonical JSON (RFC
//! 8785), so no change of serializer breaks old records. The chain is unkeyed, so with a signing
//! key the server also appends signed checkpoints ([`crate::audit_checkpoint`]): no record
//! before one can be rewritten without the key ([`verify_trusted`]), and copies of them kept in a
//! second location reveal records cut off the end. In PostgreSQL a trigger also refuses UPDATE,
//! DELETE and TRUNCATE on the table.
//!
//! One writer thread per server owns the store and commits whatever has queued up in one
//! transaction (one fsync for many concurrent scores), then acknowledges each of them. A score
//! being computed is announced first ([`AuditLog::announce`]); the writer holds a commit a
//! little (at most [`HOLD`]) while announced scores are still to come, so that under load many
//! share one fsync while a lone score is committed at once. A score that is refused instead
//! withdraws its announcement with a message, which wakes a holding writer to look again. A
//! journal file has one writer (it holds the file's lock); in PostgreSQL each commit reads the
//! chain's head under a table lock, so writers sharing a table extend one chain.

pub use crate::audit_checkpoint::{Checkpoint, Signer};
use crate::audit_checkpoint::{self as checkpoint};
use crate::audit_journal::Journal;
use crate::audit_postgres::PostgresTrail;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// The link of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most records committed in one transaction.
const MAX_GROUP: usize = 4096;
/// The longest a commit waits for announced scores: a commit's fsync costs the same for one
/// record as for a hundred, so under load this trades at most this much latency for far fewer.
pub const HOLD: Duration = Duration::from_micros(500);

/// Where a trail is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// An append-only journal file.
    File(PathBuf),
    /// A PostgreSQL connection string (URL or key=value form).
    Postgres(String),
}

impl Location {
    /// A PostgreSQL connection string, or else a file path.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") || s.contains("host=") || s.contains("dbname=") {
            Location::Postgres(s.to_string())
        } else {
            Location::File(PathBuf::from(s))
        }
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Self {
        Location::File(p.to_path_buf())
    }
}

impl From<&PathBuf> for Location {
    fn from(p: &PathBuf) -> Self {
        Location::File(p.clone())
    }
}

/// For logs and errors: the file, or PostgreSQL's host and database, never a password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Postgres(conn) => write!(f, "{}", crate::audit_postgres::describe(conn)),
        }
    }
}

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
    /// SHA-256 of this record's contents and `prev`, in canonical JSON (RFC 8785).
    pub hash: String,
    /// On a checkpoint record (no score): the server's signature of its place in the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

impl Entry {
    /// The record, not yet in the chain (the writer numbers and links it). Times are kept to
    /// the microsecond, as PostgreSQL keeps them, so a record hashes the same in either store.
    fn unchained(r: &AuditRecord<'_>) -> Self {
        use chrono::SubsecRound;
        Entry {
            seq: 0,
            time: r.time.trunc_subsecs(6),
            caller: r.caller.into(),
            patient_key: r.patient_key.into(),
            model: r.model.into(),
            model_version: r.model_version.into(),
            probability: r.probability,
            risk_band: r.risk_band.into(),
            prev: String::new(),
            hash: String::new(),
            checkpoint: None,
        }
    }

    /// A checkpoint record to be signed once the writer has placed it in the chain.
    fn checkpoint(time: DateTime<Utc>) -> Self {
        let record = AuditRecord { time, caller: checkpoint::CALLER, patient_key: "", model: "", model_version: "", probability: 0.0, risk_band: "" };
        Entry { checkpoint: Some(Checkpoint { key: String::new(), signature: String::new() }), ..Entry::unchained(&record) }
    }

    pub fn is_checkpoint(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// The hash this record must carry: SHA-256 of its canonical JSON (RFC 8785) with `hash`
    /// left empty, so that no change of serializer can change it.
    fn digest(&self) -> String {
        let body = Entry { hash: String::new(), ..self.clone() };
        hex::encode(Sha256::digest(serde_jcs::to_vec(&body).expect("plain data serialises")))
    }

    /// The hash records written before canonical hashing carry: over serde_json's field order.
    fn legacy_digest(&self) -> String {
        let body = Entry { hash: String::new(), ..self.clone() };
        hex::encode(Sha256::digest(serde_json::to_vec(&body).expect("plain data serialises")))
    }
}

/// Numbers and links `entries` after `head` (the last record's number and hash); returns the
/// new head.
/// Checkpoint records are signed here, once their place is known.
pub(crate) fn chain(head: Option<(u64, String)>, entries: &mut [Entry], signer: Option<&Signer>) -> Option<(u64, String)> {
    let mut head = head;
    for entry in entries {
        let (seq, prev) = match &head {
            Some((seq, hash)) => (seq + 1, hash.as_str()),
            None => (0, GENESIS),
        };
        entry.seq = seq;
        entry.prev = prev.to_string();
        if let (true, Some(signer)) = (entry.is_checkpoint(), signer) {
            signer.sign(entry);
        }
        entry.hash = entry.digest();
        head = Some((entry.seq, entry.hash.clone()));
    }
    head
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail {location}: {reason}")]
    Store { location: String, reason: String },
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

/// What the writer is sent.
enum Message {
    /// Records to commit.
    Job(Job),
    /// An announced score was refused and will not come: a holding commit need not wait for it.
    Withdrawn,
}

/// A store the writer appends to: each call links `entries` after the chain's head ([`chain`],
/// signing checkpoints with `signer`) and commits them durably, all or none.
pub(crate) trait Trail: Send {
    fn append(&mut self, entries: &mut [Entry], signer: Option<&Signer>) -> Result<(), String>;
}

/// How a trail is written beyond its records: the key that signs its checkpoints, and a second
/// location for copies of them.
#[derive(Default)]
pub struct Signing {
    pub signer: Option<Signer>,
    pub copies: Option<PathBuf>,
}

/// Reads a store's records in order: (the key it is stored under, the record or why it is
/// unreadable).
pub(crate) type Records = Vec<(u64, Result<Entry, String>)>;

pub struct AuditLog {
    location: Location,
    messages: Option<mpsc::Sender<Message>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Scores announced and not yet submitted.
    announced: Arc<AtomicUsize>,
}

/// A score on its way to the trail (see [`AuditLog::announce`]): submitting it, or dropping this
/// when the score is refused, ends the announcement.
pub struct Announced<'a> {
    log: &'a AuditLog,
    submitted: bool,
}

impl Announced<'_> {
    /// [`AuditLog::record`] for the announced score.
    pub async fn record(mut self, records: &[AuditRecord<'_>]) -> Result<(), AuditError> {
        self.submitted = true;
        let log = self.log;
        drop(self); // before the job is queued, so the writer never waits on a score it holds
        log.record(records).await
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.log.announced.fetch_sub(1, Ordering::SeqCst);
        if !self.submitted {
            // After the count falls, so a writer woken by this sees the count without it.
            self.log.send(Message::Withdrawn).ok();
        }
    }
}

fn store_error(location: &Location, e: impl std::fmt::Display) -> AuditError {
    AuditError::Store { location: location.to_string(), reason: e.to_string() }
}

impl AuditLog {
    /// Opens (or creates) the trail in a database file and continues its chain.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_at(&Location::from(path))
    }

    /// Opens (or creates) the trail at `location` and continues its chain.
    pub fn open_at(location: &Location) -> Result<Self, AuditError> {
        Self::open_signed(location, Signing::default())
    }

    /// Opens the trail at `location`, writing signed checkpoints as `signing` says.
    pub fn open_signed(location: &Location, signing: Signing) -> Result<Self, AuditError> {
        let trail: Box<dyn Trail> = match location {
            Location::File(path) => Box::new(Journal::open(path).map_err(|e| store_error(location, e))?),
            Location::Postgres(conn) => Box::new(PostgresTrail::connect(conn).map_err(|e| store_error(location, e))?),
        };
        let (messages, queue) = mpsc::channel::<Message>();
        let announced = Arc::new(AtomicUsize::new(0));
        let still_to_come = announced.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(trail, queue, &still_to_come, &signing))
            .map_err(|e| store_error(location, e))?;
        Ok(Self { location: location.clone(), messages: Some(messages), writer: Some(writer), announced })
    }

    /// Announces a score about to be computed and recorded, so that a commit starting meanwhile
    /// may wait for it (at most [`HOLD`]) and share its fsync.
    pub fn announce(&self) -> Announced<'_> {
        self.announced.fetch_add(1, Ordering::SeqCst);
        Announced { log: self, submitted: false }
    }

    /// Checks the chain as committed so far (see [`verify`]), while the trail stays in use.
    pub fn verify(&self) -> Result<Verified, AuditError> {
        check_chain(self.records()?, None, |_| ())
    }

    /// Every committed score record, in order (checkpoints left out).
    pub fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        let mut all = Vec::new();
        check_chain(self.records()?, None, |e| {
            if !e.is_checkpoint() {
                all.push(e);
            }
        })?;
        Ok(all)
    }

    fn records(&self) -> Result<Records, AuditError> {
        read_records(&self.location)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn job<'a>(records: impl IntoIterator<Item = &'a AuditRecord<'a>>, reply: Reply) -> Job {
        Job { entries: records.into_iter().map(Entry::unchained).collect(), reply }
    }

    fn send(&self, message: Message) -> Result<(), AuditError> {
        self.messages.as_ref().ok_or(AuditError::Closed)?.send(message).map_err(|_| AuditError::Closed)
    }

    /// Records scores and returns once they are durably committed; a score whose audit fails
    /// must not be returned.
    pub async fn record(&self, records: &[AuditRecord<'_>]) -> Result<(), AuditError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Message::Job(Self::job(records, Reply::Async(reply))))?;
        let result = done.await.map_err(|_| AuditError::Closed)?;
        result.map_err(|reason| store_error(&self.location, reason))
    }

    /// Records many scores (batch scoring), blocking until they are committed.
    pub fn record_all<'a>(&self, records: impl IntoIterator<Item = &'a AuditRecord<'a>>) -> Result<(), AuditError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Message::Job(Self::job(records, Reply::Blocking(reply))))?;
        let result = done.recv().map_err(|_| AuditError::Closed)?;
        result.map_err(|reason| store_error(&self.location, reason))
    }
}

/// Closing waits for the writer to commit what is queued.
impl Drop for AuditLog {
    fn drop(&mut self) {
        self.messages.take();
        if let Some(w) = self.writer.take() {
            w.join().ok();
        }
    }
}

fn write_loop(mut trail: Box<dyn Trail>, queue: mpsc::Receiver<Message>, announced: &AtomicUsize, signing: &Signing) {
    // Records since the last checkpoint, and when the oldest of them was committed.
    let (mut unsigned, mut since) = (0u64, Instant::now());
    loop {
        let due = signing.signer.is_some() && unsigned > 0;
        let message = if due {
            match queue.recv_timeout(checkpoint::INTERVAL.saturating_sub(since.elapsed())) {
                Ok(message) => Some(message),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    write_checkpoint(trail.as_mut(), signing, &mut unsigned);
                    return;
                }
            }
        } else {
            match queue.recv() {
                Ok(message) => Some(message),
                Err(_) => return,
            }
        };
        let Some(message) = message else {
            write_checkpoint(trail.as_mut(), signing, &mut unsigned);
            continue;
        };
        let Message::Job(first) = message else { continue };
        let hold_until = Instant::now() + HOLD;
        let mut pending = first.entries.len();
        let mut jobs = vec![first];
        // What has queued up, then whatever announced scores arrive before the hold ends.
        while pending < MAX_GROUP {
            let next = match queue.try_recv() {
                Ok(message) => message,
                Err(_) if announced.load(Ordering::SeqCst) == 0 => break,
                Err(_) => match queue.recv_timeout(hold_until.saturating_duration_since(Instant::now())) {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            if let Message::Job(job) = next {
                pending += job.entries.len();
                jobs.push(job);
            }
        }
        let mut entries: Vec<Entry> = jobs.iter_mut().flat_map(|j| j.entries.drain(..)).collect();
        let reply = trail.append(&mut entries, None);
        match &reply {
            Ok(()) => {
                if unsigned == 0 {
                    since = Instant::now();
                }
                unsigned += entries.len() as u64;
            }
            Err(e) => tracing::error!(error = %e, "audit commit failed"),
        }
        for job in jobs {
            match job.reply {
                Reply::Blocking(tx) => drop(tx.send(reply.clone())),
                Reply::Async(tx) => drop(tx.send(reply.clone())),
            }
        }
        if signing.signer.is_some() && unsigned >= checkpoint::EVERY {
            write_checkpoint(trail.as_mut(), signing, &mut unsigned);
        }
    }
}

/// Appends a signed checkpoint covering every record so far (after the scores it covers were
/// acknowledged: a checkpoint never delays a score), and copies it to the second location.
fn write_checkpoint(trail: &mut dyn Trail, signing: &Signing, unsigned: &mut u64) {
    let Some(signer) = &signing.signer else { return };
    if *unsigned == 0 {
        return;
    }
    let mut entries = [Entry::checkpoint(Utc::now())];
    match trail.append(&mut entries, Some(signer)) {
        Ok(()) => {
            *unsigned = 0;
            if let Some(path) = &signing.copies
                && let Err(e) = checkpoint::copy_to(path, &entries[0])
            {
                tracing::error!(error = %e, copies = %path.display(), "audit checkpoint not copied to the second location");
            }
        }
        Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
    }
}

/// What a verified trail holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Records in the chain, checkpoints included.
    pub records: u64,
    /// The last record's hash: keep it elsewhere to detect records cut off the end later.
    pub head: String,
    /// Signed checkpoints found (each signature checked).
    pub checkpoints: u64,
    /// The last checkpoint: its number and time; every record before it is covered by its
    /// signature.
    pub last_checkpoint: Option<(u64, DateTime<Utc>)>,
}

/// Reads the trail at `location` (a server may be writing to it) and checks the chain:
/// sequence numbers in order without gaps, each link equal to the previous hash, each hash equal
/// to its contents', each checkpoint's signature by the key it names.
pub fn verify<L: Into<Location>>(location: L) -> Result<Verified, AuditError> {
    check_chain(read_records(&location.into())?, None, |_| ())
}

/// [`verify`], and every checkpoint signed by the `trusted` public key (hex) alone; with the
/// second location's `copies`, every copied checkpoint still in the trail, unchanged (records cut
/// off the end, checkpoints included, are found this way).
pub fn verify_trusted<L: Into<Location>>(location: L, trusted: &str, copies: Option<&Path>) -> Result<Verified, AuditError> {
    let location = location.into();
    let mut checkpoints = std::collections::HashMap::new();
    let verified = check_chain(read_records(&location)?, Some(trusted), |e| {
        if e.is_checkpoint() {
            checkpoints.insert(e.seq, e.hash);
        }
    })?;
    if verified.checkpoints == 0 {
        return Err(AuditError::Broken { seq: verified.records, reason: "no signed checkpoint: nothing in the trail is signed".into() });
    }
    for copy in copies.map(checkpoint::copies).transpose().map_err(|e| store_error(&location, e))?.unwrap_or_default() {
        match checkpoints.get(&copy.seq) {
            Some(hash) if *hash == copy.hash => {}
            Some(_) => return Err(AuditError::Broken { seq: copy.seq, reason: "differs from the checkpoint copied to the second location".into() }),
            None => {
                return Err(AuditError::Broken { seq: copy.seq, reason: "a checkpoint copied to the second location is missing: records were cut off the end".into() });
            }
        }
    }
    Ok(verified)
}

/// Every record at `location` in order.
fn read_records(location: &Location) -> Result<Records, AuditError> {
    match location {
        Location::File(path) => crate::audit_journal::records(path),
        Location::Postgres(conn) => crate::audit_postgres::records(conn),
    }
    .map_err(|e| store_error(location, e))
}

/// Checks the records in order, handing each checked record to `each`.
/// Each checkpoint's signature is checked once: by the `trusted` key when given, else by the key
/// it names.
fn check_chain(records: Records, trusted: Option<&str>, mut each: impl FnMut(Entry)) -> Result<Verified, AuditError> {
    let mut prev = GENESIS.to_string();
    let mut expected = 0u64;
    let (mut checkpoints, mut last_checkpoint) = (0u64, None);
    for (seq, entry) in records {
        let broken = |reason: String| AuditError::Broken { seq, reason };
        if seq > expected {
            return Err(AuditError::Broken { seq: expected, reason: format!("missing (the next record is {seq})") });
        }
        if seq < expected {
            return Err(broken(format!("out of order or repeated: comes after record {}", expected - 1)));
        }
        let entry = entry.map_err(broken)?;
        if entry.seq != seq {
            return Err(broken(format!("stored under {seq} but numbered {}", entry.seq)));
        }
        if entry.prev != prev {
            return Err(broken("does not link to the record before it".into()));
        }
        // Records written before canonical hashing keep their original hash; checkpoints came after.
        if entry.digest() != entry.hash && (entry.is_checkpoint() || entry.legacy_digest() != entry.hash) {
            return Err(broken("contents do not match its hash (altered)".into()));
        }
        if entry.is_checkpoint() {
            checkpoint::check(&entry, trusted).map_err(broken)?;
            checkpoints += 1;
            last_checkpoint = Some((entry.seq, entry.time));
        }
        prev.clone_from(&entry.hash);
        expected += 1;
        each(entry);
    }
    Ok(Verified { records: expected, head: prev, checkpoints, last_checkpoint })
}
