//! Live input and score drift: every score the server computes counts its inputs and probability
//! into the package's training bins (`carecast_models::drift`), one tally per model version and
//! day. Only counts are kept, never a value. Over the last [`WINDOW_DAYS`] days, each input's PSI,
//! Jensen–Shannon distance and change in missing rate, and the score's, are exported as
//! Prometheus gauges at every scrape (the shipped alert rules, `serving/prometheus/alerts.yml`,
//! fire on them). The tallies are written to the registry
//! ([`Registry::live_dir`], every [`FLUSH`] and at shutdown), where
//! `carecast monitor` reads them by week.

use carecast_models::drift::{Reference, Tally};
use carecast_models::{ModelPackage, Registry, Value};
use chrono::{NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Days of live counts the exported gauges cover, today included.
pub const WINDOW_DAYS: i64 = 7;
/// How often the tallies are written out.
pub const FLUSH: Duration = Duration::from_secs(60);

/// One model version's counts.
struct Live {
    reference: Arc<Reference>,
    days: BTreeMap<NaiveDate, Tally>,
    /// Days counted into since they were last written.
    unwritten: BTreeSet<NaiveDate>,
}

/// The server's live tallies, by model and version.
pub struct LiveDrift {
    registry: Registry,
    /// This server process, in its files' names: replicas, and a restarted server, each write
    /// their own, which `carecast monitor` adds up.
    instance: String,
    live: Mutex<HashMap<(String, String), Live>>,
}

impl LiveDrift {
    pub fn new(registry: Registry) -> Self {
        use ring::rand::SecureRandom;
        let mut id = [0u8; 6];
        ring::rand::SystemRandom::new().fill(&mut id).expect("the system's random source");
        Self { registry, instance: hex(&id), live: Mutex::new(HashMap::new()) }
    }

    /// Counts a scored row (in feature order) of `pkg`, if its package has a training reference.
    pub fn observe(&self, pkg: &ModelPackage, row: &[Value<'_>], probability: f64) {
        let Some(reference) = &pkg.reference else { return };
        let key = (pkg.manifest.name.clone(), pkg.manifest.version.clone());
        let today = Utc::now().date_naive();
        let mut live = self.live.lock().expect("drift counts are never left half-updated");
        let entry = live.entry(key).or_insert_with(|| Live {
            reference: Arc::new(reference.clone()),
            days: BTreeMap::new(),
            unwritten: BTreeSet::new(),
        });
        let reference = entry.reference.clone();
        entry.days.entry(today).or_insert_with(|| Tally::new(&reference)).count(&reference, row, probability);
        entry.unwritten.insert(today);
    }

    /// Sets the drift gauges for every model version counted, over the window ending today, and
    /// forgets days before it (once written).
    pub fn export(&self) {
        let today = Utc::now().date_naive();
        let first = today - chrono::Duration::days(WINDOW_DAYS - 1);
        let mut live = self.live.lock().expect("drift counts are never left half-updated");
        for ((model, version), entry) in live.iter_mut() {
            let unwritten = &entry.unwritten;
            entry.days.retain(|day, _| *day >= first || unwritten.contains(day));
            let mut window = Tally::new(&entry.reference);
            for tally in entry.days.range(first..) {
                window.merge(tally.1).expect("tallies of one reference");
            }
            crate::metrics::drift(model, version, &window.drift(&entry.reference));
        }
    }

    /// Writes every tally counted into since it was last written (each file replaced whole);
    /// a day that could not be written is written again next time.
    pub fn flush(&self) {
        let pending: Vec<((String, String), NaiveDate, Vec<u8>)> = {
            let mut live = self.live.lock().expect("drift counts are never left half-updated");
            live.iter_mut()
                .flat_map(|(key, entry)| {
                    let days = std::mem::take(&mut entry.unwritten);
                    days.into_iter()
                        .map(|day| (key.clone(), day, serde_json::to_vec(&entry.days[&day]).expect("counts serialise")))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for ((model, version), day, bytes) in pending {
            if let Err(e) = self.registry.write_live(&model, &version, day, &self.instance, &bytes) {
                tracing::error!(error = %e, "live drift counts not written; trying again later");
                let mut live = self.live.lock().expect("drift counts are never left half-updated");
                if let Some(entry) = live.get_mut(&(model, version)) {
                    entry.unwritten.insert(day);
                }
            }
        }
    }

    /// Writes the tallies every [`FLUSH`] until the server stops.
    pub async fn keep_writing(self: Arc<Self>) {
        let mut every = tokio::time::interval(FLUSH);
        loop {
            every.tick().await;
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.flush()).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
