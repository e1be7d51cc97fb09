//! Flat tables (one row per patient, or per visit as in pbc2) turned into events by a declared
//! column mapping, so they flow through the same cohort, label and feature code as MEDS data.

use super::events::{EventStore, EventStoreBuilder, IngestReport, date_micros};
use carecast_models::features::MICROS_PER_YEAR;
use carecast_tables::{read_table, text_column};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// How a flat table's columns become events (TOML).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatMapping {
    /// Integer subject id column.
    pub subject: String,
    /// Calendar date the table's relative times count from (tables without dates get pseudo-dates).
    pub origin: chrono::NaiveDate,
    /// Column with each row's time after the origin, in years; without it every row is at the origin.
    pub time_years: Option<String>,
    /// Column with the subject's age in years at the origin: gives the `MEDS_BIRTH` event.
    pub age_at_origin: Option<String>,
    /// Code written at every row's time (e.g. `PBC//VISIT`): the anchor of per-row predictions.
    pub row_code: Option<String>,
    /// Text columns that are static facts: code `<column>//<value>`, once per subject.
    #[serde(default)]
    pub static_columns: Vec<String>,
    /// Numeric columns: code `<column>` with the cell as its value, at the row's time.
    #[serde(default)]
    pub numeric: Vec<String>,
    /// Text columns: code `<column>//<value>` at the row's time.
    #[serde(default)]
    pub categorical: Vec<String>,
    /// End of follow-up, once per subject.
    pub end: Option<EndOfFollowUp>,
    /// Column with the subject's split, kept beside the events; `test` becomes MEDS's `held_out`.
    pub split: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndOfFollowUp {
    /// Column with the end of follow-up, in years after the origin.
    pub time_years: String,
    /// Column with the subject's status at the end.
    pub status: String,
    /// Status value → event code (e.g. `dead` → `MEDS_DEATH`).
    pub codes: BTreeMap<String, String>,
    /// Code for any other status (e.g. still alive at the end of follow-up).
    #[serde(default = "end_of_follow_up")]
    pub otherwise: String,
}

/// Mappings bundled with Carecast, by name.
const BUILTIN: &[(&str, &str)] = &[("pbc2", include_str!("../../tasks/pbc2_events.toml"))];

impl FlatMapping {
    /// A bundled mapping by name, or a mapping file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<Self> {
        let text = match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            Some((_, t)) => t.to_string(),
            None => std::fs::read_to_string(name_or_path).map_err(|e| {
                anyhow::anyhow!("mapping `{name_or_path}`: not bundled (pbc2) nor a readable file: {e}")
            })?,
        };
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("mapping `{name_or_path}`: {e}"))
    }
}

fn end_of_follow_up() -> String {
    "END_OF_FOLLOWUP".into()
}

fn years_to_micros(origin_us: i64, years: f64) -> i64 {
    origin_us + (years * MICROS_PER_YEAR).round() as i64
}

/// Events read from a flat table, with each subject's split where the mapping names one.
pub struct FlatEvents {
    pub store: EventStore,
    pub splits: BTreeMap<i64, String>,
    pub report: IngestReport,
}

/// Reads a flat table into events; cells that cannot be read are counted, never silently lost.
pub fn read_flat(path: &Path, mapping: &FlatMapping) -> anyhow::Result<FlatEvents> {
    let df = read_table(path)?;
    let col = |name: &str| text_column(&df, name).map_err(anyhow::Error::from);
    let origin = date_micros(mapping.origin);
    let subjects = col(&mapping.subject)?;
    let times = mapping.time_years.as_deref().map(col).transpose()?;
    let ages = mapping.age_at_origin.as_deref().map(col).transpose()?;
    let statics: Vec<(String, Vec<Option<String>>)> =
        mapping.static_columns.iter().map(|c| Ok((c.clone(), col(c)?))).collect::<anyhow::Result<_>>()?;
    let numerics: Vec<(String, Vec<Option<String>>)> =
        mapping.numeric.iter().map(|c| Ok((c.clone(), col(c)?))).collect::<anyhow::Result<_>>()?;
    let cats: Vec<(String, Vec<Option<String>>)> =
        mapping.categorical.iter().map(|c| Ok((c.clone(), col(c)?))).collect::<anyhow::Result<_>>()?;
    let split_col = mapping.split.as_deref().map(col).transpose()?;
    let mut splits = BTreeMap::new();
    let end = match &mapping.end {
        Some(e) => Some((e, col(&e.time_years)?, col(&e.status)?)),
        None => None,
    };

    let mut builder = EventStoreBuilder::default();
    let mut report = IngestReport::default();
    let mut seen = HashSet::new();
    let number = |cell: &Option<String>| cell.as_deref().map(str::parse::<f64>);
    for r in 0..df.height() {
        report.rows_read += 1;
        let Some(Ok(subject)) = subjects[r].as_deref().map(str::parse::<i64>) else {
            report.drop_row(format!("`{}` missing or not an integer", mapping.subject));
            continue;
        };
        let time = match times.as_ref().map(|t| number(&t[r])) {
            None => origin,
            Some(Some(Ok(y))) if y.is_finite() => years_to_micros(origin, y),
            Some(_) => {
                report.drop_row(format!(
                    "`{}` missing or not a number",
                    mapping.time_years.as_deref().unwrap_or_default()
                ));
                continue;
            }
        };
        if let Some(Some(split)) = split_col.as_ref().map(|c| &c[r]) {
            splits.insert(subject, if split == "test" { "held_out".to_string() } else { split.clone() });
        }
        if seen.insert(subject) {
            if let Some(Some(Ok(age))) = ages.as_ref().map(|a| number(&a[r])) {
                builder.push(subject, Some(years_to_micros(origin, -age)), "MEDS_BIRTH", None);
            }
            for (name, values) in &statics {
                if let Some(v) = &values[r] {
                    builder.push(subject, None, &format!("{name}//{v}"), None);
                }
            }
            if let Some((e, t, s)) = &end {
                match (number(&t[r]), &s[r]) {
                    (Some(Ok(y)), Some(status)) => {
                        let code = e.codes.get(status).unwrap_or(&e.otherwise);
                        builder.push(subject, Some(years_to_micros(origin, y)), code, None);
                    }
                    _ => report.drop_row("end of follow-up time or status missing (subject kept without it)"),
                }
            }
        }
        if let Some(code) = &mapping.row_code {
            builder.push(subject, Some(time), code, None);
        }
        for (name, values) in &numerics {
            match number(&values[r]) {
                Some(Ok(v)) => builder.push(subject, Some(time), name, Some(v as f32)),
                Some(Err(_)) => report.drop_row(format!("`{name}` not a number (cell skipped)")),
                None => {}
            }
        }
        for (name, values) in &cats {
            if let Some(v) = &values[r] {
                builder.push(subject, Some(time), &format!("{name}//{v}"), None);
            }
        }
    }
    let store = builder.build();
    report.events = store.events.len() as u64;
    Ok(FlatEvents { store, splits, report })
}
