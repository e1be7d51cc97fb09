//! What the trail stores: a score as the scoring code hands it over ([`AuditRecord`]), and as
//! stored ([`Entry`]): numbered, linked to the record before it and hashed over its canonical JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The link of the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Who writes checkpoint records.
pub(crate) const CHECKPOINT_CALLER: &str = "carecast-checkpoint";

/// What a shadow score's caller starts with: a candidate version scoring a request beside the
/// served one, its result never returned (`carecast shadow`). Recorded so that the candidate is
/// judged against outcomes as the served version is, and kept apart from what callers received.
pub const SHADOW_CALLER: &str = "shadow:";

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

/// A batch run (`carecast score`, a population summary) recorded once instead of once per row:
/// which input went in and which output came out, by their SHA-256, and how many rows each way.
/// The caller, model, version and time are the record's own fields; its score fields are empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRun {
    /// When the run started reading its input (the record's time is when it finished).
    pub started: DateTime<Utc>,
    pub input_sha256: String,
    pub output_sha256: String,
    /// Data rows read, rows scored and rows refused (each refusal named in the run's error file).
    pub rows: u64,
    pub scored: u64,
    pub refused: u64,
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
    /// On a batch run's record (no patient, no score): what the run read and wrote. Absent from
    /// score records, so records written before batch records existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchRun>,
}

/// A checkpoint's signature: by which key (Ed25519, 32 bytes in hex) over which place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub key: String,
    pub signature: String,
}

impl Entry {
    /// The record, not yet in the chain (the writer numbers and links it). Times are kept to
    /// the microsecond, as PostgreSQL keeps them, so a record hashes the same in either store.
    pub(crate) fn unchained(r: &AuditRecord<'_>) -> Self {
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
            batch: None,
        }
    }

    /// A batch run's record: by `caller`, with model `model` version `version`, finished now.
    pub(crate) fn batch_run(caller: &str, model: &str, version: &str, run: BatchRun) -> Self {
        let record = AuditRecord {
            time: Utc::now(),
            caller,
            patient_key: "",
            model,
            model_version: version,
            probability: 0.0,
            risk_band: "",
        };
        Entry { batch: Some(run), ..Entry::unchained(&record) }
    }

    /// A checkpoint record to be signed once the writer has placed it in the chain.
    pub(crate) fn checkpoint(time: DateTime<Utc>) -> Self {
        let record = AuditRecord {
            time,
            caller: CHECKPOINT_CALLER,
            patient_key: "",
            model: "",
            model_version: "",
            probability: 0.0,
            risk_band: "",
        };
        Entry {
            checkpoint: Some(Checkpoint { key: String::new(), signature: String::new() }),
            ..Entry::unchained(&record)
        }
    }

    pub fn is_checkpoint(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// A record of one score (neither a checkpoint nor a batch run).
    pub fn is_score(&self) -> bool {
        self.checkpoint.is_none() && self.batch.is_none()
    }

    /// A shadow version's score, never returned to its caller.
    pub fn is_shadow(&self) -> bool {
        self.caller.starts_with(SHADOW_CALLER)
    }

    /// The hash this record must carry: SHA-256 of its canonical JSON (RFC 8785) with `hash`
    /// left empty, so that no change of serializer can change it.
    pub(crate) fn digest(&self) -> String {
        let body = Entry { hash: String::new(), ..self.clone() };
        hex::encode(Sha256::digest(serde_jcs::to_vec(&body).expect("plain data serialises")))
    }

    /// The hash records written before canonical hashing carry: over serde_json's field order.
    pub(crate) fn legacy_digest(&self) -> String {
        let body = Entry { hash: String::new(), ..self.clone() };
        hex::encode(Sha256::digest(serde_json::to_vec(&body).expect("plain data serialises")))
    }
}
