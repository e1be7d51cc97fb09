//! The in-memory event store: every patient's events, time-sorted and contiguous (static facts
//! first), with codes interned in one vocabulary. The feature extractor reads a patient as a slice.

use carecast_models::features::extract::{Event, STATIC};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default)]
pub struct EventStore {
    /// Subject ids, ascending.
    pub subjects: Vec<i64>,
    /// Patient `i`'s events are `events[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    pub events: Vec<Event>,
    /// Code id → code.
    pub vocabulary: Vec<String>,
}

/// Microseconds since the Unix epoch at midnight (UTC) starting `date`: the time unit of events.
pub fn date_micros(date: chrono::NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_micros()
}

/// Counts of what ingest read and what it left out, by reason.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IngestReport {
    pub rows_read: u64,
    pub events: u64,
    pub dropped: BTreeMap<String, u64>,
    /// For each reason, the first 1-based data row it applied to (where rows are known).
    pub first_row: BTreeMap<String, u64>,
}

impl IngestReport {
    pub fn drop_row(&mut self, reason: impl Into<String>) {
        *self.dropped.entry(reason.into()).or_default() += 1;
    }

    /// Counts a left-out row and remembers the first row number for the reason.
    pub fn drop_row_at(&mut self, reason: impl Into<String>, row: u64) {
        let reason = reason.into();
        self.first_row.entry(reason.clone()).or_insert(row);
        self.drop_row(reason);
    }
}

/// Collects events in any order, then sorts them into an [`EventStore`].
#[derive(Debug, Default)]
pub struct EventStoreBuilder {
    rows: Vec<(i64, Event)>,
    vocabulary: Vec<String>,
    index: HashMap<String, u32>,
}

impl EventStoreBuilder {
    pub fn code_id(&mut self, code: &str) -> u32 {
        if let Some(&id) = self.index.get(code) {
            return id;
        }
        let id = self.vocabulary.len() as u32;
        self.vocabulary.push(code.to_string());
        self.index.insert(code.to_string(), id);
        id
    }

    /// Adds one event; `time` is microseconds since the Unix epoch, `None` for a static fact.
    pub fn push(&mut self, subject: i64, time: Option<i64>, code: &str, value: Option<f32>) {
        let code = self.code_id(code);
        self.rows.push((subject, Event { time: time.unwrap_or(STATIC), code, value: value.unwrap_or(f32::NAN) }));
    }

    pub fn build(mut self) -> EventStore {
        // Stable sort: events at the same time keep their input order.
        self.rows.sort_by_key(|(s, e)| (*s, e.time));
        let mut store = EventStore { vocabulary: self.vocabulary, ..Default::default() };
        for (i, (s, e)) in self.rows.into_iter().enumerate() {
            if store.subjects.last() != Some(&s) {
                store.subjects.push(s);
                store.offsets.push(i);
            }
            store.events.push(e);
        }
        store.offsets.push(store.events.len());
        store
    }
}

impl EventStore {
    pub fn n_patients(&self) -> usize {
        self.subjects.len()
    }

    /// Patient `i`'s events, time-sorted.
    pub fn patient(&self, i: usize) -> &[Event] {
        &self.events[self.offsets[i]..self.offsets[i + 1]]
    }

    pub fn code(&self, id: u32) -> &str {
        &self.vocabulary[id as usize]
    }

    /// Index of a subject id.
    pub fn position(&self, subject: i64) -> Option<usize> {
        self.subjects.binary_search(&subject).ok()
    }

    /// Each code's rest after `prefix`, by code id (`None` where it does not start with it).
    pub fn suffixes(&self, prefix: &str) -> Vec<Option<&str>> {
        self.vocabulary.iter().map(|c| c.strip_prefix(prefix)).collect()
    }

    /// Patient `i`'s coded attribute (deprivation decile, ethnicity) as of `until`: the rest of
    /// the latest code at or before it that has one of `suffixes` (static codes included).
    pub fn coded_attribute<'a>(&self, i: usize, suffixes: &[Option<&'a str>], until: i64) -> Option<&'a str> {
        self.patient(i).iter().take_while(|e| e.time <= until).filter_map(|e| suffixes[e.code as usize]).last()
    }
}
