//! The audit trail: one JSON line per score (when, which model version, which pseudonymous
//! patient, what probability and band), appended and flushed before the score is returned, so
//! every score a caller received is on record.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    pub time: chrono::DateTime<chrono::Utc>,
    /// Where the score went: the peer address, or `batch` for batch scoring.
    pub caller: &'a str,
    pub patient_key: &'a str,
    pub model: &'a str,
    pub model_version: &'a str,
    pub probability: f64,
    pub risk_band: &'a str,
}

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and flushes one record; a score whose audit fails must not be returned.
    pub fn record(&self, record: &AuditRecord<'_>) -> std::io::Result<()> {
        self.record_all(std::iter::once(record))
    }

    /// Appends many records with one flush (batch scoring).
    pub fn record_all<'a, R: std::borrow::Borrow<AuditRecord<'a>>>(&self, records: impl IntoIterator<Item = R>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r.borrow()).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let mut file = self.file.lock().expect("audit lock");
        file.write_all(&buf)?;
        file.flush()
    }
}
