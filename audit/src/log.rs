//! The writer the scoring code talks to: one thread per trail that commits whatever has queued
//! up in one transaction and then acknowledges each score (see the crate's documentation).

use crate::checkpoint::{self, Signer};
use crate::error::{AuditError, StoreFault};
use crate::journal::Journal;
use crate::location::Location;
use crate::postgres::PostgresTrail;
use crate::record::{AuditRecord, BatchRun, Entry};
use crate::trail::{Records, Trail};
use crate::verify::{Verified, check_chain, read_records};
use chrono::Utc;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Most records committed in one transaction.
const MAX_GROUP: usize = 4096;
/// The longest a commit waits for announced scores: a commit's fsync costs the same for one
/// record as for a hundred, so under load this trades at most this much latency for far fewer.
pub const HOLD: Duration = Duration::from_micros(500);

/// Where an acknowledgement goes: a waiting thread, or an awaiting task.
enum Reply {
    Blocking(mpsc::SyncSender<Result<(), StoreFault>>),
    Async(tokio::sync::oneshot::Sender<Result<(), StoreFault>>),
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

/// How a trail is written beyond its records: the key that signs its checkpoints, and a second
/// location for copies of them.
#[derive(Default)]
pub struct Signing {
    pub signer: Option<Signer>,
    pub copies: Option<PathBuf>,
}

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
            Location::File(path) => Box::new(Journal::open(path).map_err(|e| location.error(e))?),
            Location::Postgres(conn) => Box::new(PostgresTrail::connect(conn).map_err(|e| location.error(e))?),
        };
        let (messages, queue) = mpsc::channel::<Message>();
        let announced = Arc::new(AtomicUsize::new(0));
        let still_to_come = announced.clone();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(trail, queue, &still_to_come, &signing))
            .map_err(|e| location.error(StoreFault::io("starting its writer")(e)))?;
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

    /// Every committed record but checkpoints, in order: scores and batch runs.
    pub fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        crate::verify::entries(self.location.clone())
    }

    fn records(&self) -> Result<Records, AuditError> {
        read_records(&self.location)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn send(&self, message: Message) -> Result<(), AuditError> {
        self.messages.as_ref().ok_or(AuditError::Closed)?.send(message).map_err(|_| AuditError::Closed)
    }

    /// Records scores and returns once they are durably committed; a score whose audit fails
    /// must not be returned.
    pub async fn record(&self, records: &[AuditRecord<'_>]) -> Result<(), AuditError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Message::Job(Job {
            entries: records.iter().map(Entry::unchained).collect(),
            reply: Reply::Async(reply),
        }))?;
        let result = done.await.map_err(|_| AuditError::Closed)?;
        result.map_err(|fault| self.location.error(fault))
    }

    /// Records many scores (batch scoring with a record per row), blocking until they are
    /// committed.
    pub fn record_all<'a>(&self, records: impl IntoIterator<Item = &'a AuditRecord<'a>>) -> Result<(), AuditError> {
        self.commit_blocking(records.into_iter().map(Entry::unchained).collect())
    }

    /// Records a whole batch run as one record (by `caller`, scoring with `model` version
    /// `version`), blocking until it is committed.
    pub fn record_run(&self, caller: &str, model: &str, version: &str, run: BatchRun) -> Result<(), AuditError> {
        self.commit_blocking(vec![Entry::batch_run(caller, model, version, run)])
    }

    fn commit_blocking(&self, entries: Vec<Entry>) -> Result<(), AuditError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Message::Job(Job { entries, reply: Reply::Blocking(reply) }))?;
        let result = done.recv().map_err(|_| AuditError::Closed)?;
        result.map_err(|fault| self.location.error(fault))
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
