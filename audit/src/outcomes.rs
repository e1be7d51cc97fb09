//! Observed outcomes, as they come back (`carecast outcomes`): which pseudonymous patient had
//! which outcome code when. Kept beside the audit trail in an append-only ledger
//! (`<registry>/outcomes.jsonl`, one JSON line each, with when it was received), so that the
//! scores on the trail can be judged against what happened. An outcome already in the ledger
//! (same patient, code and time) is counted as a duplicate and not written again.

use crate::error::{AuditError, StoreFault};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// One observed outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Outcome {
    pub patient_key: String,
    pub time: DateTime<Utc>,
    pub code: String,
}

/// Which part of an outcome was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeField {
    Key,
    Time,
    Code,
}

/// Why an outcome was refused (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: OutcomeField,
    pub reason: String,
}

impl Outcome {
    /// An outcome from its parts as a feed sends them, checked: a pseudonymous key (no direct
    /// identifier), a real time (after 1900, not ahead of `now` beyond clock skew; both in
    /// microseconds) and a code. `None` is a missing part.
    pub fn checked(key: Option<&str>, time: Option<i64>, code: Option<&str>, now: i64) -> Result<Self, Refusal> {
        let refuse = |field, reason: String| Refusal { field, reason };
        let key = key.ok_or_else(|| refuse(OutcomeField::Key, "missing".into()))?;
        carecast_models::deid::check_patient_key(key).map_err(|r| refuse(OutcomeField::Key, r.into()))?;
        let time = time.ok_or_else(|| {
            refuse(OutcomeField::Time, "missing or not a date-time (e.g. 2026-03-01T09:30:00Z)".into())
        })?;
        carecast_models::clock::check(time, now).map_err(|e| refuse(OutcomeField::Time, e.to_string()))?;
        let code = code
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| refuse(OutcomeField::Code, "missing".into()))?;
        Ok(Outcome {
            patient_key: key.to_string(),
            time: DateTime::from_timestamp_micros(time).expect("checked to be a real time"),
            code: code.to_string(),
        })
    }
}

/// An outcome as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub received: DateTime<Utc>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub added: u64,
    /// Already in the ledger, or given twice in this append.
    pub duplicates: u64,
}

pub struct OutcomeLedger {
    path: PathBuf,
}

impl OutcomeLedger {
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The ledger of a model registry at `root`: `<root>/outcomes.jsonl`.
    pub fn for_registry(root: &Path) -> Self {
        Self::at(root.join("outcomes.jsonl"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fault(&self, reason: impl ToString) -> AuditError {
        AuditError::Ledger { path: self.path.display().to_string(), reason: reason.to_string() }
    }

    /// Every outcome received so far, oldest first (none if the ledger does not exist yet).
    pub fn read(&self) -> Result<Vec<Recorded>, AuditError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.fault(StoreFault::io("opening the outcome ledger")(e))),
        };
        let mut all = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| self.fault(StoreFault::io("reading the outcome ledger")(e)))?;
            if line.trim().is_empty() {
                continue;
            }
            let recorded = serde_json::from_str(&line)
                .map_err(|e| self.fault(format!("line {}: not an outcome record ({e})", i + 1)))?;
            all.push(recorded);
        }
        Ok(all)
    }

    /// Appends the outcomes not already in the ledger, durably (under an exclusive lock on the
    /// file, so two appends at once cannot both add one outcome).
    pub fn append(&self, outcomes: &[Outcome]) -> Result<Appended, AuditError> {
        let io = |doing| move |e| self.fault(StoreFault::io(doing)(e));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating the outcome ledger's directory"))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io("opening the outcome ledger"))?;
        file.lock().map_err(io("locking the outcome ledger"))?;
        let mut seen: HashSet<Outcome> = self.read()?.into_iter().map(|r| r.outcome).collect();
        let received = Utc::now();
        let mut result = Appended::default();
        let mut lines = Vec::new();
        for outcome in outcomes {
            if seen.insert(outcome.clone()) {
                let recorded = Recorded { outcome: outcome.clone(), received };
                serde_json::to_writer(&mut lines, &recorded).expect("plain data serialises");
                lines.push(b'\n');
                result.added += 1;
            } else {
                result.duplicates += 1;
            }
        }
        // A write that fails part-way is cut back off, so no torn line is left to break every
        // later read.
        let length = file.metadata().map_err(io("reading the outcome ledger's length"))?.len();
        let written = file.write_all(&lines).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = file.set_len(length);
            return Err(io("appending to the outcome ledger")(e));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_is_kept_once_however_often_it_is_sent() {
        let dir = std::env::temp_dir().join(format!("carecast-outcomes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ledger = OutcomeLedger::for_registry(&dir);
        assert!(ledger.read().unwrap().is_empty());
        let o = |k: &str, s: i64| Outcome {
            patient_key: k.into(),
            time: DateTime::from_timestamp(s, 0).unwrap(),
            code: "DEMENTIA".into(),
        };
        assert_eq!(ledger.append(&[o("a", 1), o("b", 2), o("a", 1)]).unwrap(), Appended { added: 2, duplicates: 1 });
        assert_eq!(ledger.append(&[o("b", 2), o("b", 3)]).unwrap(), Appended { added: 1, duplicates: 1 });
        let kept: Vec<Outcome> = ledger.read().unwrap().into_iter().map(|r| r.outcome).collect();
        assert_eq!(kept, [o("a", 1), o("b", 2), o("b", 3)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
