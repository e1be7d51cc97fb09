//! Signed checkpoints of the audit trail. The hash chain alone is unkeyed: whoever can write the
//! trail can alter a record and recompute every hash after it. So the server holds an Ed25519
//! signing key and, every [`EVERY`] records or [`INTERVAL`] (and on shutdown), appends a
//! checkpoint record whose signature covers its place in the chain (its number and the hash of
//! the record before it), so no record before it can be changed, removed or reordered without
//! the key. A copy of each checkpoint can also go to a second location (a file on another volume
//! or a log shipper), against which `verify` finds records cut off the end.

use crate::error::{AuditError, StoreFault};
use crate::record::{Checkpoint, Entry};
use chrono::{DateTime, Utc};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Records between checkpoints.
pub const EVERY: u64 = 1000;
/// Longest time between a record and the checkpoint that covers it.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// What a checkpoint signs, in canonical JSON (RFC 8785): its number, the hash of the record
/// before it, and its time.
fn signed_message(seq: u64, prev: &str, time: &DateTime<Utc>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Signed<'a> {
        seq: u64,
        prev: &'a str,
        time: &'a DateTime<Utc>,
    }
    serde_jcs::to_vec(&Signed { seq, prev, time }).expect("plain data serialises")
}

/// The server's signing key.
pub struct Signer {
    pair: Ed25519KeyPair,
    public: String,
}

impl Signer {
    /// From a PKCS#8 document (DER, or PEM `PRIVATE KEY`), as `carecast audit keygen` writes.
    pub fn from_pkcs8(document: &[u8]) -> Result<Self, AuditError> {
        let der = match std::str::from_utf8(document) {
            Ok(text) if text.contains("-----BEGIN") => {
                use rustls::pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
                PrivatePkcs8KeyDer::from_pem_slice(document)
                    .map_err(|e| AuditError::SigningKey(e.to_string()))?
                    .secret_pkcs8_der()
                    .to_vec()
            }
            _ => document.to_vec(),
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| AuditError::SigningKey(format!("not an Ed25519 PKCS#8 key ({e})")))?;
        let public = hex::encode(pair.public_key().as_ref());
        Ok(Self { pair, public })
    }

    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        Self::from_pkcs8(&std::fs::read(path).map_err(|e| AuditError::SigningKey(format!("{}: {e}", path.display())))?)
    }

    /// A new key: its PKCS#8 document (DER) and public key (hex).
    pub fn generate() -> Result<(Vec<u8>, String), AuditError> {
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|e| AuditError::SigningKey(format!("generating one: {e}")))?;
        let public = Self::from_pkcs8(document.as_ref())?.public;
        Ok((document.as_ref().to_vec(), public))
    }

    /// The public key, hex: give it to whoever verifies the trail.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// Signs a checkpoint record once its place in the chain (`seq`, `prev`) is known.
    pub fn sign(&self, entry: &mut Entry) {
        let signature = self.pair.sign(&signed_message(entry.seq, &entry.prev, &entry.time));
        entry.checkpoint = Some(Checkpoint { key: self.public.clone(), signature: hex::encode(signature.as_ref()) });
    }
}

/// Checks a checkpoint record's signature, by the key it names or, when given, by the trusted
/// key alone.
pub(crate) fn check(entry: &Entry, trusted: Option<&str>) -> Result<(), &'static str> {
    let c = entry.checkpoint.as_ref().ok_or("not a checkpoint")?;
    if let Some(key) = trusted
        && !c.key.eq_ignore_ascii_case(key)
    {
        return Err("checkpoint signed by another key than the trusted one");
    }
    let key = hex::decode(&c.key).map_err(|_| "checkpoint key is not hex")?;
    let signature = hex::decode(&c.signature).map_err(|_| "checkpoint signature is not hex")?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(&signed_message(entry.seq, &entry.prev, &entry.time), &signature)
        .map_err(|_| "checkpoint signature does not verify (altered, or not signed by this key)")
}

/// A checkpoint as copied to the second location: one JSON line each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copy {
    pub seq: u64,
    pub hash: String,
    pub time: DateTime<Utc>,
}

/// Appends a copy of a committed checkpoint to `path`, synced.
pub(crate) fn copy_to(path: &Path, entry: &Entry) -> Result<(), StoreFault> {
    use std::io::Write;
    let mut line = serde_json::to_vec(&Copy { seq: entry.seq, hash: entry.hash.clone(), time: entry.time })
        .expect("plain data serialises");
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(StoreFault::io("opening the copies"))?;
    file.write_all(&line).and_then(|()| file.sync_data()).map_err(StoreFault::io("writing the copies"))
}

/// The copies kept at `path`, in order.
pub fn copies(path: &Path) -> Result<Vec<Copy>, StoreFault> {
    let text = std::fs::read_to_string(path).map_err(StoreFault::io("reading the checkpoint copies"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| StoreFault::CopyLine {
                path: path.display().to_string(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}
