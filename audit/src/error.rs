//! The audit crate's one error type.

use crate::location::Location;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit trail {location}: {reason}")]
    Store { location: String, reason: String },
    #[error("audit trail broken at record {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error("audit trail is closed")]
    Closed,
}

pub(crate) fn store_error(location: &Location, e: impl std::fmt::Display) -> AuditError {
    AuditError::Store { location: location.to_string(), reason: e.to_string() }
}
