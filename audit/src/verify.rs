//! Checking a trail: the chain unbroken, every hash its contents', every checkpoint signed.

use crate::checkpoint;
use crate::error::AuditError;
use crate::location::Location;
use crate::record::{Entry, GENESIS};
use crate::trail::Records;
use chrono::{DateTime, Utc};
use std::path::Path;

/// What a verified trail holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Records in the chain, checkpoints included.
    pub records: u64,
    /// The last record's hash: keep it elsewhere to detect records cut off the end later.
    pub head: String,
    /// Signed checkpoints found (each signature checked).
    pub checkpoints: u64,
    /// Batch runs recorded once each (the rest are single scores).
    pub batch_runs: u64,
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

/// Every record at `location` but checkpoints, in order (scores and batch runs), once the whole
/// chain is verified: what is read back (monitoring's judgement of the scores) is what was
/// committed. A server may be writing to it meanwhile.
pub fn entries<L: Into<Location>>(location: L) -> Result<Vec<Entry>, AuditError> {
    let mut all = Vec::new();
    check_chain(read_records(&location.into())?, None, |e| {
        if !e.is_checkpoint() {
            all.push(e);
        }
    })?;
    Ok(all)
}

/// [`verify`], and every checkpoint signed by the `trusted` public key (hex) alone; with the
/// second location's `copies`, every copied checkpoint still in the trail, unchanged (records cut
/// off the end, checkpoints included, are found this way).
pub fn verify_trusted<L: Into<Location>>(
    location: L,
    trusted: &str,
    copies: Option<&Path>,
) -> Result<Verified, AuditError> {
    let location = location.into();
    let mut checkpoints = std::collections::HashMap::new();
    let verified = check_chain(read_records(&location)?, Some(trusted), |e| {
        if e.is_checkpoint() {
            checkpoints.insert(e.seq, e.hash);
        }
    })?;
    if verified.checkpoints == 0 {
        return Err(AuditError::Broken {
            seq: verified.records,
            reason: "no signed checkpoint: nothing in the trail is signed".into(),
        });
    }
    for copy in copies.map(checkpoint::copies).transpose().map_err(|e| location.error(e))?.unwrap_or_default() {
        match checkpoints.get(&copy.seq) {
            Some(hash) if *hash == copy.hash => {}
            Some(_) => {
                return Err(AuditError::Broken {
                    seq: copy.seq,
                    reason: "differs from the checkpoint copied to the second location".into(),
                });
            }
            None => {
                return Err(AuditError::Broken {
                    seq: copy.seq,
                    reason: "a checkpoint copied to the second location is missing: records were cut off the end"
                        .into(),
                });
            }
        }
    }
    Ok(verified)
}

/// Every record at `location` in order.
pub(crate) fn read_records(location: &Location) -> Result<Records, AuditError> {
    match location {
        Location::File(path) => crate::journal::records(path),
        Location::Postgres(conn) => crate::postgres::records(conn),
    }
    .map_err(|e| location.error(e))
}

/// Checks the records in order, handing each checked record to `each`.
/// Each checkpoint's signature is checked once: by the `trusted` key when given, else by the key
/// it names.
pub(crate) fn check_chain(
    records: Records,
    trusted: Option<&str>,
    mut each: impl FnMut(Entry),
) -> Result<Verified, AuditError> {
    let mut prev = GENESIS.to_string();
    let mut expected = 0u64;
    let (mut checkpoints, mut last_checkpoint, mut batch_runs) = (0u64, None, 0u64);
    for (seq, entry) in records {
        let broken = |reason: String| AuditError::Broken { seq, reason };
        if seq > expected {
            return Err(AuditError::Broken { seq: expected, reason: format!("missing (the next record is {seq})") });
        }
        if seq < expected {
            return Err(broken(format!("out of order or repeated: comes after record {}", expected - 1)));
        }
        let entry = entry.map_err(|e| broken(e.to_string()))?;
        if entry.seq != seq {
            return Err(broken(format!("stored under {seq} but numbered {}", entry.seq)));
        }
        if entry.prev != prev {
            return Err(broken("does not link to the record before it".into()));
        }
        // Records written before canonical hashing keep their original hash; checkpoints and batch
        // runs came after.
        if entry.digest() != entry.hash && (!entry.is_score() || entry.legacy_digest() != entry.hash) {
            return Err(broken("contents do not match its hash (altered)".into()));
        }
        if entry.is_checkpoint() {
            checkpoint::check(&entry, trusted).map_err(|reason| broken(reason.into()))?;
            checkpoints += 1;
            last_checkpoint = Some((entry.seq, entry.time));
        }
        batch_runs += u64::from(entry.batch.is_some());
        prev.clone_from(&entry.hash);
        expected += 1;
        each(entry);
    }
    Ok(Verified { records: expected, head: prev, checkpoints, batch_runs, last_checkpoint })
}
