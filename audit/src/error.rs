//! The audit crate's errors: [`AuditError`] for callers, and the [`StoreFault`] a store reports
//! before it is placed at its location.

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail {location}: {fault}")]
    Store { location: String, fault: StoreFault },
    #[error("audit trail broken at record {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error("audit trail is closed")]
    Closed,
    #[error("signing key: {0}")]
    SigningKey(String),
    #[error("outcome ledger {path}: {reason}")]
    Ledger { path: String, reason: String },
}

/// What a store could not do. Cloned to every score waiting on the one commit that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFault {
    /// The operating system refused: what was being done, and its reason.
    #[error("{doing}: {reason}")]
    Io { doing: &'static str, reason: String },
    #[error("in use by another server (one writer per file)")]
    InUse,
    #[error("last record unreadable ({0}); run `carecast audit verify`")]
    UnreadableHead(String),
    /// What reached the disk after a failed write or sync is unknown: the store stops.
    #[error("an earlier write failed ({0}); restart the server to reopen the trail")]
    EarlierWriteFailed(String),
    /// PostgreSQL refused: what was being done, and why (never a row's values).
    #[error("{doing}: {reason}")]
    Postgres { doing: &'static str, reason: String },
    #[error("connection string: {0}")]
    ConnectionString(String),
    #[error(
        "sslmode=require: give sslrootcert=FILE, the CA that signed the server's certificate (it is verified, host name included)"
    )]
    NoRootCertificate,
    #[error("sslrootcert {path}: {reason}")]
    RootCertificate { path: String, reason: String },
    /// A line of the checkpoint copies that is not a copy.
    #[error("{path} line {line}: {reason}")]
    CopyLine { path: String, line: usize, reason: String },
}

impl StoreFault {
    /// Turns an I/O error met while `doing` something into a fault.
    pub(crate) fn io(doing: &'static str) -> impl Fn(std::io::Error) -> StoreFault {
        move |e| StoreFault::Io { doing, reason: e.to_string() }
    }
}

/// A stored record that cannot be read back (damage, or an edit by hand).
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("unreadable: {0}")]
    Record(serde_json::Error),
    #[error("checkpoint unreadable: {0}")]
    Checkpoint(serde_json::Error),
    #[error("batch run unreadable: {0}")]
    BatchRun(serde_json::Error),
}
