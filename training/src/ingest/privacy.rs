//! Making ingested records safe to hold: keyed pseudonyms, coarsened dates of birth, opt-outs.

use super::events::{EventStore, EventStoreBuilder, IngestReport, date_micros};
use carecast_models::deid::hmac_sha256;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What ingest does to make records safe to hold: keyed pseudonyms for subject ids, dates of
/// birth reduced to year and month, and subjects on the national data opt-out list removed.
pub struct Privacy {
    /// Secret key for pseudonyms; `None` keeps source ids (for data already pseudonymised).
    pub key: Option<Vec<u8>>,
    /// Source subject ids that opted out of secondary use of their data.
    pub opt_out: HashSet<i64>,
}

impl Privacy {
    /// A stable pseudonymous id: the first 63 bits of HMAC-SHA256(key, source id).
    pub fn pseudonym(key: &[u8], subject: i64) -> i64 {
        let mac = hmac_sha256(key, subject.to_string().as_bytes());
        (u64::from_be_bytes(mac[..8].try_into().expect("8 bytes")) >> 1) as i64
    }

    /// Applies the policy to a store and its splits, counting what it removed.
    pub fn apply(
        &self,
        store: &EventStore,
        splits: &BTreeMap<i64, String>,
        report: &mut IngestReport,
    ) -> anyhow::Result<(EventStore, BTreeMap<i64, String>)> {
        use carecast_models::features::extract::STATIC;
        use chrono::Datelike;
        let birth: Vec<bool> = store.vocabulary.iter().map(|c| c == "MEDS_BIRTH").collect();
        let mut builder = EventStoreBuilder::default();
        let mut new_splits = BTreeMap::new();
        let mut seen = HashMap::new();
        for i in 0..store.n_patients() {
            let source = store.subjects[i];
            if self.opt_out.contains(&source) {
                *report.dropped.entry("subject on the national data opt-out list (all events)".into()).or_default() +=
                    store.patient(i).len() as u64;
                continue;
            }
            let id = self.key.as_deref().map_or(source, |k| Self::pseudonym(k, source));
            anyhow::ensure!(seen.insert(id, source).is_none(), "pseudonym collision; choose another key");
            if let Some(s) = splits.get(&source) {
                new_splits.insert(id, s.clone());
            }
            for e in store.patient(i) {
                let mut time = e.time;
                if birth[e.code as usize] && time != STATIC {
                    let dt = chrono::DateTime::from_timestamp_micros(time)
                        .ok_or_else(|| anyhow::anyhow!("birth time out of range"))?;
                    let month = chrono::NaiveDate::from_ymd_opt(dt.year(), dt.month(), 1).expect("valid month");
                    time = date_micros(month);
                }
                let value = (!e.value.is_nan()).then_some(e.value);
                builder.push(id, (time != STATIC).then_some(time), store.code(e.code), value);
            }
        }
        let out = builder.build();
        report.events = out.events.len() as u64;
        Ok((out, new_splits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_non_negative() {
        let a = Privacy::pseudonym(b"k1", 42);
        assert_eq!(a, Privacy::pseudonym(b"k1", 42));
        assert_ne!(a, Privacy::pseudonym(b"k2", 42));
        assert_ne!(a, Privacy::pseudonym(b"k1", 43));
        assert!(a >= 0);
    }
}
