//! The de-identification guard: Carecast accepts de-identified records only. A table is refused,
//! with a report naming each column, the kind of identifier and the first row, when a column's
//! name says it holds direct identifiers or its values look like NHS numbers, e-mail addresses,
//! full postcodes, telephone numbers, people's names or full dates of birth. The report never
//! repeats the values themselves.

use carecast_models::deid::{
    is_email, is_full_date, is_full_postcode, is_nhs_number, is_person_name, is_uk_phone, ten_digits as ten_digits_of,
};
use polars::prelude::*;
use rayon::prelude::*;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierKind {
    ColumnName,
    NhsNumber,
    Email,
    Postcode,
    Phone,
    PersonName,
    DateOfBirth,
}

impl IdentifierKind {
    fn describe(self) -> &'static str {
        match self {
            IdentifierKind::ColumnName => "its name says it holds direct identifiers",
            IdentifierKind::NhsNumber => "values look like NHS numbers",
            IdentifierKind::Email => "values look like e-mail addresses",
            IdentifierKind::Postcode => "values look like full postcodes (keep the district only)",
            IdentifierKind::Phone => "values look like telephone numbers",
            IdentifierKind::PersonName => "values look like people's names",
            IdentifierKind::DateOfBirth => "values look like full dates of birth (keep year and month only)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub column: String,
    pub kind: IdentifierKind,
    pub matches: u64,
    /// 1-based data row of the first match (0 for a column-name finding).
    pub first_row: usize,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            IdentifierKind::ColumnName => write!(f, "column `{}`: {}", self.column, self.kind.describe()),
            _ => write!(
                f,
                "column `{}`: {} {} (first at row {})",
                self.column,
                self.matches,
                self.kind.describe(),
                self.first_row
            ),
        }
    }
}

/// Column names (lower-case, letters and digits only) that only direct identifiers have.
const IDENTIFYING_NAMES: &[&str] = &["name", "nhsno", "nhsid", "mobile"];
/// Parts of column names (normalised as above) that only direct identifiers' names contain,
/// wherever they stand (`patient_nhs_number`, `home_postcode`, `contact_email`).
const IDENTIFYING_PARTS: &[&str] = &[
    "forename",
    "surname",
    "firstname",
    "lastname",
    "fullname",
    "patientname",
    "givenname",
    "familyname",
    "nhsnumber",
    "chinumber",
    "postcode",
    "address",
    "email",
    "phone",
    "telephone",
];

fn normalise(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

#[derive(Default, Clone)]
struct Tally {
    matches: u64,
    first_row: usize,
}

impl Tally {
    fn hit(&mut self, row: usize) {
        if self.matches == 0 {
            self.first_row = row + 1;
        }
        self.matches += 1;
    }
}

/// What one column's values have shown so far.
#[derive(Default, Clone)]
struct ColumnTally {
    /// Its name alone says it holds identifiers.
    named: bool,
    nhs: Tally,
    ten_digits: u64,
    /// E-mail, postcode, telephone, person's name, date of birth.
    shapes: [Tally; 5],
    non_null: u64,
}

const SHAPES: [IdentifierKind; 5] = [
    IdentifierKind::Email,
    IdentifierKind::Postcode,
    IdentifierKind::Phone,
    IdentifierKind::PersonName,
    IdentifierKind::DateOfBirth,
];

/// Every identifier-like column of `df`.
pub fn scan(df: &DataFrame) -> Vec<Finding> {
    let mut scanner = Scanner::default();
    scanner.add(df, 0);
    scanner.findings()
}

/// The guard over a table read in chunks: each chunk is added with its first row, and the
/// findings are the whole table's, since some rules count across a column (random 10-digit
/// values pass the NHS number check one time in eleven; a column of NHS numbers every time).
#[derive(Default)]
pub struct Scanner {
    columns: Vec<(String, ColumnTally)>,
}

impl Scanner {
    /// Checks the rows of `df`, whose first row is data row `first_row` (0-based) of the table.
    pub fn add(&mut self, df: &DataFrame, first_row: usize) {
        let places: Vec<usize> = df.columns().iter().map(|col| self.place(col.name())).collect();
        // Each column is checked on its own, so the columns are checked in parallel.
        let checked: Vec<ColumnTally> = df
            .columns()
            .par_iter()
            .zip(&places)
            .map(|(col, &i)| {
                let mut tally = self.columns[i].1.clone();
                if !tally.named {
                    check_values(col, &normalise(col.name()), first_row, &mut tally);
                }
                tally
            })
            .collect();
        for (i, tally) in places.into_iter().zip(checked) {
            self.columns[i].1 = tally;
        }
    }

    /// The tally of column `name`, added (with what its name says) when first seen.
    fn place(&mut self, name: &str) -> usize {
        if let Some(i) = self.columns.iter().position(|(n, _)| n == name) {
            return i;
        }
        let norm = normalise(name);
        let named = IDENTIFYING_NAMES.contains(&norm.as_str()) || IDENTIFYING_PARTS.iter().any(|p| norm.contains(p));
        self.columns.push((name.to_string(), ColumnTally { named, ..Default::default() }));
        self.columns.len() - 1
    }

    /// The columns found to hold identifiers, in the table's order.
    pub fn findings(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (name, t) in &self.columns {
            if t.named {
                findings.push(Finding {
                    column: name.clone(),
                    kind: IdentifierKind::ColumnName,
                    matches: 0,
                    first_row: 0,
                });
                continue;
            }
            // Random 10-digit ids pass the modulus-11 check about one time in eleven; a column of
            // NHS numbers passes every time.
            if t.nhs.matches > 0 && t.nhs.matches * 2 >= t.ten_digits {
                findings.push(Finding {
                    column: name.clone(),
                    kind: IdentifierKind::NhsNumber,
                    matches: t.nhs.matches,
                    first_row: t.nhs.first_row,
                });
            }
            for (kind, shape) in SHAPES.into_iter().zip(&t.shapes) {
                // Exact shapes (e-mail, postcode, date of birth) count from one value; fuzzier ones
                // (telephone, name) from three values or 5% of the column.
                let enough = match kind {
                    IdentifierKind::Phone | IdentifierKind::PersonName => {
                        shape.matches >= 3 || (shape.matches > 0 && shape.matches * 20 >= t.non_null)
                    }
                    _ => shape.matches > 0,
                };
                if enough {
                    findings.push(Finding {
                        column: name.clone(),
                        kind,
                        matches: shape.matches,
                        first_row: shape.first_row,
                    });
                }
            }
        }
        findings
    }
}

/// Distinct values remembered per column and chunk: beyond, values are checked as they come.
const REMEMBERED: usize = 1 << 16;
/// What a value was found to be: ten digits, an NHS number, then each of [`SHAPES`].
const TEN_DIGITS: u8 = 1;
const NHS: u8 = 2;

/// What `v` looks like, as [`TEN_DIGITS`] and [`NHS`] and a bit per shape from bit 2.
fn classify(v: &str, birth_column: bool) -> u8 {
    let v = v.trim();
    let mut found = 0;
    if ten_digits_of(v).is_some() {
        found |= TEN_DIGITS;
        if is_nhs_number(v) {
            found |= NHS;
        }
    }
    let shapes = [is_email(v), is_full_postcode(v), is_uk_phone(v), is_person_name(v), birth_column && is_full_date(v)];
    for (k, hit) in shapes.into_iter().enumerate() {
        found |= u8::from(hit) << (k + 2);
    }
    found
}

impl ColumnTally {
    fn add(&mut self, row: usize, found: u8) {
        self.non_null += 1;
        if found & TEN_DIGITS != 0 {
            self.ten_digits += 1;
        }
        if found & NHS != 0 {
            self.nhs.hit(row);
        }
        for (k, shape) in self.shapes.iter_mut().enumerate() {
            if found & (1 << (k + 2)) != 0 {
                shape.hit(row);
            }
        }
    }
}

/// What each distinct value of a column was found to be ([`classify`]), for at most
/// [`REMEMBERED`] values.
struct Memo<K>(PlHashMap<K, u8>);

impl<K> Default for Memo<K> {
    fn default() -> Self {
        Self(PlHashMap::default())
    }
}

impl<K: std::hash::Hash + Eq> Memo<K> {
    fn found(&mut self, key: K, classify: impl FnOnce() -> u8) -> u8 {
        if let Some(&found) = self.0.get(&key) {
            return found;
        }
        let found = classify();
        if self.0.len() < REMEMBERED {
            self.0.insert(key, found);
        }
        found
    }
}

/// Adds one column's values (rows numbered from `first_row`) to its tally. A value repeated
/// down a column (an age, a band, a laboratory value to one decimal) is classified once.
fn check_values(col: &Column, norm: &str, first_row: usize, t: &mut ColumnTally) {
    let birth_column = norm.contains("birth") || norm == "dob";
    // Cells are checked where they lie: text in place, numbers through one reused buffer (a
    // float column of NHS numbers is what a table tool writes when one is missing), dates as
    // dates: a full date in a birth column is a date of birth of whatever type.
    let series = col.as_materialized_series();
    match series.dtype() {
        DataType::String => {
            let Ok(ca) = series.str() else { return };
            let mut seen = Memo::default();
            for (r, v) in ca.iter().enumerate().filter_map(|(r, v)| Some((r, v?))) {
                t.add(first_row + r, seen.found(v, || classify(v, birth_column)));
            }
        }
        dt if dt.is_integer() || dt.is_float() => {
            let integer = dt.is_integer();
            let Ok(numbers) = series.cast(if integer { &DataType::Int64 } else { &DataType::Float64 }) else { return };
            let values: Box<dyn Iterator<Item = Option<(u64, f64)>>> = if integer {
                let Ok(ca) = numbers.i64() else { return };
                Box::new(ca.iter().map(|x| x.map(|x| (x as u64, x as f64))))
            } else {
                let Ok(ca) = numbers.f64() else { return };
                Box::new(ca.iter().map(|x| x.map(|x| (x.to_bits(), x))))
            };
            let (mut seen, mut buf) = (Memo::default(), String::new());
            for (r, (bits, x)) in values.enumerate().filter_map(|(r, v)| Some((r, v?))) {
                let found = seen.found(bits, || {
                    buf.clear();
                    if integer {
                        write!(buf, "{}", bits as i64)
                    } else if x.fract() == 0.0 && x.abs() < 1e15 {
                        write!(buf, "{x:.0}")
                    } else {
                        write!(buf, "{x}")
                    }
                    .expect("writing to a String");
                    classify(&buf, birth_column)
                });
                t.add(first_row + r, found);
            }
        }
        DataType::Date | DataType::Datetime(..) => {
            // Reduced to year and month (the first of the month), a birth date is kept.
            let Ok(dates) = series.cast(&DataType::Date) else { return };
            let Ok(ca) = dates.date() else { return };
            for (r, days) in ca.physical().iter().enumerate().filter_map(|(r, d)| Some((r, d?))) {
                let day =
                    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0).map(|d| chrono::Datelike::day(&d));
                if birth_column && day != Some(1) {
                    t.shapes[4].hit(first_row + r);
                }
            }
        }
        _ => {}
    }
}

/// Codes whose value part (after the last `//`) looks like a direct identifier, e.g.
/// `NAME//John Smith`, with the kind found. Checked once per distinct code.
pub fn scan_codes<S: AsRef<str>>(vocabulary: &[S]) -> Vec<(usize, IdentifierKind)> {
    vocabulary
        .iter()
        .enumerate()
        .filter_map(|(i, code)| {
            let value = code.as_ref().rsplit("//").next().unwrap_or_default().trim();
            let kind = if is_nhs_number(value) {
                IdentifierKind::NhsNumber
            } else if is_email(value) {
                IdentifierKind::Email
            } else if is_full_postcode(value) {
                IdentifierKind::Postcode
            } else if is_uk_phone(value) {
                IdentifierKind::Phone
            } else if is_person_name(value) {
                IdentifierKind::PersonName
            } else {
                return None;
            };
            Some((i, kind))
        })
        .collect()
}
