//! OMOP CDM v5.4 tables (CSV or Parquet, one file per table) as events. Each clinical table's
//! rows become events coded `<vocabulary_id>//<concept_code>` when a `concept` table is present,
//! else `<TABLE>//<concept_id>`; birth and death become `MEDS_BIRTH` and `MEDS_DEATH`, observation
//! periods `OBSERVATION_PERIOD//START` and `//END`. Unreadable rows are counted by file and column.

use super::events::{EventStore, EventStoreBuilder, IngestReport, date_micros};
use carecast_tables::{read_table, text_column};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One clinical table: its concept column, its datetime and date columns, its value column.
struct ClinicalTable {
    name: &'static str,
    prefix: &'static str,
    concept: &'static str,
    datetime: &'static str,
    date: &'static str,
    value: Option<&'static str>,
}

const TABLES: [ClinicalTable; 5] = [
    ClinicalTable {
        name: "visit_occurrence",
        prefix: "VISIT",
        concept: "visit_concept_id",
        datetime: "visit_start_datetime",
        date: "visit_start_date",
        value: None,
    },
    ClinicalTable {
        name: "condition_occurrence",
        prefix: "CONDITION",
        concept: "condition_concept_id",
        datetime: "condition_start_datetime",
        date: "condition_start_date",
        value: None,
    },
    ClinicalTable {
        name: "drug_exposure",
        prefix: "DRUG",
        concept: "drug_concept_id",
        datetime: "drug_exposure_start_datetime",
        date: "drug_exposure_start_date",
        value: None,
    },
    ClinicalTable {
        name: "measurement",
        prefix: "MEASUREMENT",
        concept: "measurement_concept_id",
        datetime: "measurement_datetime",
        date: "measurement_date",
        value: Some("value_as_number"),
    },
    ClinicalTable {
        name: "observation",
        prefix: "OBSERVATION",
        concept: "observation_concept_id",
        datetime: "observation_datetime",
        date: "observation_date",
        value: Some("value_as_number"),
    },
];

/// `<dir>/<table>.csv` or `.parquet`, if present.
fn table_file(dir: &Path, table: &str) -> Option<PathBuf> {
    ["csv", "parquet"].iter().map(|e| dir.join(format!("{table}.{e}"))).find(|p| p.exists())
}

/// Microseconds since the epoch from `YYYY-MM-DD` or `YYYY-MM-DD[ T]HH:MM:SS[.ffffff]`.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let date = chrono::NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()?;
    let time = match s.get(11..) {
        None | Some("") => chrono::NaiveTime::MIN,
        Some(t) => chrono::NaiveTime::parse_from_str(t.trim_end_matches('Z'), "%H:%M:%S%.f").ok()?,
    };
    Some(date.and_time(time).and_utc().timestamp_micros())
}

struct Columns {
    file: String,
    cols: HashMap<String, Vec<Option<String>>>,
    rows: usize,
}

impl Columns {
    fn read(path: &Path, wanted: &[&str], required: &[&str]) -> anyhow::Result<Self> {
        let df = read_table(path)?;
        let file = path.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        let mut cols = HashMap::new();
        for &c in wanted {
            match text_column(&df, c) {
                Ok(v) => {
                    cols.insert(c.to_string(), v);
                }
                Err(_) if !required.contains(&c) => {}
                Err(_) => anyhow::bail!("{file}: required OMOP column `{c}` is absent"),
            }
        }
        Ok(Self { file, cols, rows: df.height() })
    }
    fn get(&self, c: &str, r: usize) -> Option<&str> {
        self.cols.get(c).and_then(|v| v[r].as_deref()).map(str::trim).filter(|s| !s.is_empty())
    }
}

/// Reads the OMOP tables in `dir` (`person` is required) into events.
pub fn read_omop(dir: &Path) -> anyhow::Result<(EventStore, IngestReport)> {
    let mut builder = EventStoreBuilder::default();
    let mut report = IngestReport::default();

    let concepts: HashMap<String, String> = match table_file(dir, "concept") {
        Some(path) => {
            let c = Columns::read(
                &path,
                &["concept_id", "vocabulary_id", "concept_code"],
                &["concept_id", "vocabulary_id", "concept_code"],
            )?;
            (0..c.rows)
                .filter_map(|r| {
                    Some((
                        c.get("concept_id", r)?.to_string(),
                        format!("{}//{}", c.get("vocabulary_id", r)?, c.get("concept_code", r)?),
                    ))
                })
                .collect()
        }
        None => HashMap::new(),
    };
    let code =
        |prefix: &str, concept: &str| concepts.get(concept).cloned().unwrap_or_else(|| format!("{prefix}//{concept}"));

    let person_file = table_file(dir, "person")
        .ok_or_else(|| anyhow::anyhow!("{}: no person.csv or person.parquet", dir.display()))?;
    let p = Columns::read(
        &person_file,
        &["person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "birth_datetime"],
        &["person_id", "year_of_birth"],
    )?;
    for r in 0..p.rows {
        report.rows_read += 1;
        let row = r as u64 + 1;
        let Some(Ok(person)) = p.get("person_id", r).map(str::parse::<i64>) else {
            report.drop_row_at(format!("{}: person_id missing or not an integer", p.file), row);
            continue;
        };
        // Dates of birth are held to year and month at most.
        let year = p.get("year_of_birth", r).and_then(|y| y.parse::<i32>().ok());
        let month = p.get("month_of_birth", r).and_then(|m| m.parse::<u32>().ok()).unwrap_or(1);
        match year.and_then(|y| chrono::NaiveDate::from_ymd_opt(y, month, 1)) {
            Some(d) => builder.push(person, Some(date_micros(d)), "MEDS_BIRTH", None),
            None => report
                .drop_row_at(format!("{}: year_of_birth missing or invalid (person kept without birth)", p.file), row),
        }
        if let Some(g) = p.get("gender_concept_id", r) {
            let gender = match g {
                "8507" => "GENDER//M".to_string(),
                "8532" => "GENDER//F".to_string(),
                other => code("GENDER", other),
            };
            builder.push(person, None, &gender, None);
        }
    }

    let mut timed = |table: &str,
                     columns: &[&str],
                     each: &mut dyn FnMut(&Columns, usize, i64, &mut EventStoreBuilder, &mut IngestReport)|
     -> anyhow::Result<()> {
        let Some(path) = table_file(dir, table) else { return Ok(()) };
        let c = Columns::read(&path, columns, &["person_id"])?;
        for r in 0..c.rows {
            report.rows_read += 1;
            match c.get("person_id", r).map(str::parse::<i64>) {
                Some(Ok(person)) => each(&c, r, person, &mut builder, &mut report),
                _ => report.drop_row_at(format!("{}: person_id missing or not an integer", c.file), r as u64 + 1),
            }
        }
        Ok(())
    };

    timed(
        "observation_period",
        &["person_id", "observation_period_start_date", "observation_period_end_date"],
        &mut |c, r, person, b, rep| {
            for (col, event) in [
                ("observation_period_start_date", "OBSERVATION_PERIOD//START"),
                ("observation_period_end_date", "OBSERVATION_PERIOD//END"),
            ] {
                match c.get(col, r).and_then(parse_time) {
                    Some(t) => b.push(person, Some(t), event, None),
                    None => rep.drop_row_at(format!("{}: {col} missing or not a date", c.file), r as u64 + 1),
                }
            }
        },
    )?;
    timed("death", &["person_id", "death_datetime", "death_date"], &mut |c, r, person, b, rep| match c
        .get("death_datetime", r)
        .or_else(|| c.get("death_date", r))
        .and_then(parse_time)
    {
        Some(t) => b.push(person, Some(t), "MEDS_DEATH", None),
        None => rep.drop_row_at(format!("{}: death_date missing or not a date", c.file), r as u64 + 1),
    })?;
    for t in &TABLES {
        let mut cols = vec!["person_id", t.concept, t.datetime, t.date];
        cols.extend(t.value);
        timed(t.name, &cols, &mut |c, r, person, b, rep| {
            let row = r as u64 + 1;
            let Some(concept) = c.get(t.concept, r) else {
                return rep.drop_row_at(format!("{}: {} missing", c.file, t.concept), row);
            };
            let Some(time) = c.get(t.datetime, r).or_else(|| c.get(t.date, r)).and_then(parse_time) else {
                return rep.drop_row_at(format!("{}: {} missing or not a date", c.file, t.date), row);
            };
            let value = match t.value.and_then(|v| c.get(v, r)) {
                None => None,
                Some(v) => match v.parse::<f32>() {
                    Ok(x) => Some(x),
                    Err(_) => {
                        rep.drop_row_at(
                            format!("{}: {} not a number (event kept without it)", c.file, t.value.unwrap_or_default()),
                            row,
                        );
                        None
                    }
                },
            };
            b.push(person, Some(time), &code(t.prefix, concept), value);
        })?;
    }
    let store = builder.build();
    report.events = store.events.len() as u64;
    Ok((store, report))
}
