//! The embedded audit store: an append-only journal file, one record per line as JSON (the
//! fields and hashes of [`Entry`]), readable with `grep`, `jq` or any JSON-lines reader.
//!
//! A commit is one write and one `fdatasync`. The file is kept ahead of its records by a run of
//! spaces written in advance ([`CHUNK`] at a time), so a commit overwrites blocks the file
//! already has and its `fdatasync` flushes those alone, with no change to the file's size or
//! extents to journal. The records end at the last newline: the spaces after it are not a line,
//! and neither is an incomplete last record (a write a crash cut short, before its score could be
//! acknowledged, or damage), which the writer moves to a file beside the journal when it opens
//! it. A complete line is never altered or dropped, so whatever damage a line has shows in
//! `verify`.
//!
//! One writer at a time: it holds an exclusive lock on the file, so a second server pointed at
//! the same file is refused rather than forking the chain. Readers (`verify`) need no lock and
//! may read while the server writes; they see the records up to the last complete line.

use crate::checkpoint::Signer;
use crate::error::{StoreFault, Unreadable};
use crate::record::Entry;
use crate::trail::{Records, Trail, chain};
use std::fs::{File, OpenOptions};
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How far the file is kept ahead of its records: about 13,000 records.
const CHUNK: u64 = 4 << 20;
/// What the space ahead of the records holds.
const FILL: u8 = b' ';
/// How much of the file's end is read at a time when opening it.
const BLOCK: usize = 64 << 10;

pub(crate) struct Journal {
    file: File,
    /// Where the next record goes: just after the last complete line.
    end: u64,
    /// The file's length: records, then fill.
    allocated: u64,
    /// The last record's number and hash (this writer alone appends, under its lock).
    head: Option<(u64, String)>,
    /// Set by a failed write or sync: what reached the disk is then unknown (a failed
    /// `fdatasync` may leave pages marked clean that were never written), so this journal
    /// refuses further commits until it is opened again, which reads what the file holds.
    failed: Option<String>,
}

/// The last two newlines' offsets, the last first, found reading back from the end of `file`.
fn last_newlines(file: &File, len: u64) -> std::io::Result<Vec<u64>> {
    let (mut found, mut upto, mut block) = (Vec::with_capacity(2), len, vec![0u8; BLOCK]);
    while upto > 0 && found.len() < 2 {
        let from = upto.saturating_sub(BLOCK as u64);
        let part = &mut block[..(upto - from) as usize];
        file.read_exact_at(part, from)?;
        let wanted = 2 - found.len();
        found.extend(
            part.iter().enumerate().rev().filter(|&(_, &b)| b == b'\n').take(wanted).map(|(i, _)| from + i as u64),
        );
        upto = from;
    }
    Ok(found)
}

impl Journal {
    /// Opens (or creates) the journal at `path` to append to it, taking its lock; a cut-short
    /// last record is cleared, and the head is read from the last complete one.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreFault> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(StoreFault::io("creating its directory"))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StoreFault::io("opening"))?;
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => StoreFault::InUse,
            std::fs::TryLockError::Error(e) => StoreFault::io("locking")(e),
        })?;
        let len = file.metadata().map_err(StoreFault::io("reading its length"))?.len();
        let newlines = last_newlines(&file, len).map_err(StoreFault::io("reading"))?;
        let end = newlines.first().map_or(0, |&n| n + 1);
        let head = match newlines.first() {
            None => None,
            Some(&last) => {
                let start = newlines.get(1).map_or(0, |&n| n + 1);
                let mut line = vec![0u8; (last - start) as usize];
                file.read_exact_at(&mut line, start).map_err(StoreFault::io("reading"))?;
                let entry: Entry =
                    serde_json::from_slice(&line).map_err(|e| StoreFault::UnreadableHead(e.to_string()))?;
                Some((entry.seq, entry.hash))
            }
        };
        let mut rest = vec![0u8; (len - end) as usize];
        file.read_exact_at(&mut rest, end).map_err(StoreFault::io("reading"))?;
        if let Some(cut) = rest.iter().rposition(|&b| b != FILL) {
            // Most likely a crash during a write, before the score could be acknowledged; but
            // damage to the file looks the same, so the bytes are kept beside it, not discarded.
            let kept = path.with_extension(format!("torn-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")));
            std::fs::write(&kept, &rest[..=cut])
                .and_then(|()| File::open(&kept)?.sync_all())
                .map_err(StoreFault::io("keeping an incomplete last record"))?;
            tracing::warn!(bytes = cut + 1, kept = %kept.display(), "audit journal: an incomplete last record (a write cut short by a crash, or damage) was moved aside");
            file.write_all_at(&vec![FILL; cut + 1], end)
                .and_then(|()| file.sync_data())
                .map_err(StoreFault::io("clearing an incomplete last record"))?;
        }
        Ok(Journal { file, end, allocated: len, head, failed: None })
    }

    /// Makes room for `needed` more bytes of records, `CHUNK` at a time. Nothing is written where
    /// records are, so a failure here costs this commit only.
    fn reserve(&mut self, needed: u64) -> Result<(), StoreFault> {
        if self.end + needed <= self.allocated {
            return Ok(());
        }
        let grow = (self.end + needed - self.allocated).max(CHUNK);
        let extended =
            self.file.write_all_at(&vec![FILL; grow as usize], self.allocated).and_then(|()| self.file.sync_all());
        extended.map_err(StoreFault::io("extending the file"))?;
        self.allocated += grow;
        Ok(())
    }
}

impl Trail for Journal {
    fn append(&mut self, entries: &mut [Entry], signer: Option<&Signer>) -> Result<(), StoreFault> {
        if let Some(reason) = &self.failed {
            return Err(StoreFault::EarlierWriteFailed(reason.clone()));
        }
        let head = chain(self.head.clone(), entries, signer);
        let mut lines = Vec::with_capacity(entries.len() * 320);
        for entry in entries.iter() {
            serde_json::to_writer(&mut lines, entry).expect("plain data serialises");
            lines.push(b'\n');
        }
        self.reserve(lines.len() as u64)?;
        if let Err(e) = self.file.write_all_at(&lines, self.end).and_then(|()| self.file.sync_data()) {
            self.failed = Some(e.to_string());
            return Err(StoreFault::io("writing")(e));
        }
        self.end += lines.len() as u64;
        self.head = head;
        Ok(())
    }
}

/// Every complete line of the journal at `path`, in order, under its record number (or, for a
/// line that is not a record, its position).
pub(crate) fn records(path: &Path) -> Result<Records, StoreFault> {
    let mut reader = std::io::BufReader::new(File::open(path).map_err(StoreFault::io("opening"))?);
    let (mut all, mut line) = (Vec::new(), Vec::new());
    loop {
        line.clear();
        reader.read_until(b'\n', &mut line).map_err(StoreFault::io("reading"))?;
        let Some(record) = line.strip_suffix(b"\n") else { return Ok(all) }; // the fill, or nothing
        all.push(match serde_json::from_slice::<Entry>(record) {
            Ok(entry) => (entry.seq, Ok(entry)),
            Err(e) => (all.len() as u64, Err(Unreadable::Record(e))),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups that outgrow the space kept ahead: the file grows and every record stays in one
    /// chain across the boundary and a reopening.
    #[test]
    fn records_past_the_space_kept_ahead_stay_in_one_chain() {
        let path = std::env::temp_dir().join(format!("carecast-journal-{}.jsonl", std::process::id()));
        let entry = |i: usize| Entry {
            seq: 0,
            time: chrono::Utc::now(),
            caller: "test".into(),
            patient_key: format!("p{i}"),
            model: "m".into(),
            model_version: "1".into(),
            probability: 0.5,
            risk_band: "moderate".into(),
            prev: String::new(),
            hash: String::new(),
            checkpoint: None,
            batch: None,
        };
        for round in 0..2 {
            let mut journal = Journal::open(&path).unwrap();
            for group in 0..5 {
                let mut entries: Vec<Entry> = (0..4000).map(|i| entry(round * 20_000 + group * 4000 + i)).collect();
                journal.append(&mut entries, None).unwrap();
            }
            assert!(journal.allocated > CHUNK && journal.end <= journal.allocated);
        }
        let verified = crate::verify(path.as_path()).unwrap();
        assert_eq!(verified.records, 40_000);
        std::fs::remove_file(&path).unwrap();
    }
}
