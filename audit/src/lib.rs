//! The audit trail: every score (when, which caller, which pseudonymous patient, which model
//! version, what probability and band) as a record committed durably before the score is
//! returned, so every score a caller received is on record, a kill -9 included. Kept in an
//! append-only journal file by default ([`journal`]), or in a PostgreSQL table when
//! configured (a connection string, `postgresql://…` or `host=… dbname=…`), which several
//! servers may share.
//!
//! Records are hash-chained: each holds the SHA-256 of the record before it and its own hash over
//! its contents and that link, so changing, deleting or reordering any record breaks the chain
//! ([`verify`], `carecast audit verify`). Hashes are over each record's canonical JSON (RFC
//! 8785), so no change of serializer breaks old records. The chain is unkeyed, so with a signing
//! key the server also appends signed checkpoints ([`checkpoint`]): no record
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
//!
//! Modules, each using only those above it: [`error`] (what can go wrong), [`record`] (what is
//! stored and how it is hashed), [`checkpoint`] (signing), [`trail`] (chaining, and the trait each
//! store implements), the two stores [`journal`] and [`postgres`], [`location`] (which store),
//! [`verify`], and [`log`] (the writer the scoring code talks to). Beside the trail, [`outcomes`]
//! keeps the outcomes that come back, against which its scores are judged.

pub mod checkpoint;
mod error;
mod journal;
mod location;
mod log;
pub mod outcomes;
mod postgres;
mod record;
mod trail;
mod verify;

pub use checkpoint::Signer;
pub use error::{AuditError, StoreFault, Unreadable};
pub use location::Location;
pub use log::{Announced, AuditLog, HOLD, Signing};
pub use record::{AuditRecord, BatchRun, Checkpoint, Entry, SHADOW_CALLER};
pub use verify::{Verified, entries, verify, verify_trusted};
