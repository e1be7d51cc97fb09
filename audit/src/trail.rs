//! Chaining records and the stores that keep them: each store (the [`crate::journal`] file or
//! [`crate::postgres`]) implements [`Trail`] and links what it appends with [`chain`].

use crate::checkpoint::Signer;
use crate::error::{StoreFault, Unreadable};
use crate::record::{Entry, GENESIS};

/// Numbers and links `entries` after `head` (the last record's number and hash); returns the
/// new head.
/// Checkpoint records are signed here, once their place is known.
pub(crate) fn chain(
    head: Option<(u64, String)>,
    entries: &mut [Entry],
    signer: Option<&Signer>,
) -> Option<(u64, String)> {
    let mut head = head;
    for entry in entries {
        let (seq, prev) = match &head {
            Some((seq, hash)) => (seq + 1, hash.as_str()),
            None => (0, GENESIS),
        };
        entry.seq = seq;
        entry.prev = prev.to_string();
        if let (true, Some(signer)) = (entry.is_checkpoint(), signer) {
            signer.sign(entry);
        }
        entry.hash = entry.digest();
        head = Some((entry.seq, entry.hash.clone()));
    }
    head
}

/// A store the writer appends to: each call links `entries` after the chain's head ([`chain`],
/// signing checkpoints with `signer`) and commits them durably, all or none.
pub(crate) trait Trail: Send {
    fn append(&mut self, entries: &mut [Entry], signer: Option<&Signer>) -> Result<(), StoreFault>;
}

/// Reads a store's records in order: (the key it is stored under, the record or why it is
/// unreadable).
pub(crate) type Records = Vec<(u64, Result<Entry, Unreadable>)>;
