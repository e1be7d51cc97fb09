//! Where a trail is kept: a journal file or a PostgreSQL table.

use crate::error::{AuditError, StoreFault};
use std::path::{Path, PathBuf};

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
        if s.starts_with("postgres://")
            || s.starts_with("postgresql://")
            || s.contains("host=")
            || s.contains("dbname=")
        {
            Location::Postgres(s.to_string())
        } else {
            Location::File(PathBuf::from(s))
        }
    }

    /// The trail a command given a model registry at `root` uses: `given` (read by
    /// [`Location::parse`]), else the registry's own journal, `<root>/audit.jsonl`.
    pub fn for_registry(root: &Path, given: Option<&str>) -> Self {
        given.map_or_else(|| Location::File(root.join("audit.jsonl")), Location::parse)
    }

    /// A store's fault, placed here.
    pub(crate) fn error(&self, fault: StoreFault) -> AuditError {
        AuditError::Store { location: self.to_string(), fault }
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
            Location::Postgres(conn) => write!(f, "{}", crate::postgres::describe(conn)),
        }
    }
}
