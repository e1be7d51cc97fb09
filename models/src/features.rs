//! Features from a patient's events, declared once in a feature spec (TOML, stored in the model
//! package) and computed by one extractor ([`extract::FeatureExtractor`]): for whole cohorts when
//! training and for one patient at request time, so training and serving cannot disagree.

pub mod extract;
pub mod news2;

use crate::invalid::InvalidModel;
use serde::{Deserialize, Serialize};

pub const MICROS_PER_HOUR: i64 = 3_600_000_000;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;
/// A Julian year, for ages.
pub const MICROS_PER_YEAR: f64 = 365.25 * MICROS_PER_DAY as f64;
/// The possible range of an age feature without one of its own, in years.
pub const AGE_POSSIBLE: [f64; 2] = [0.0, 125.0];

/// An event code to match: exact, or a prefix when written with a trailing `*` (`ICD10//F0*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodePattern {
    Exact(String),
    Prefix(String),
}

impl CodePattern {
    pub fn new(code: &str) -> Self {
        match code.strip_suffix('*') {
            Some(p) => CodePattern::Prefix(p.to_string()),
            None => CodePattern::Exact(code.to_string()),
        }
    }

    pub fn matches(&self, code: &str) -> bool {
        match self {
            CodePattern::Exact(c) => c == code,
            CodePattern::Prefix(p) => code.starts_with(p.as_str()),
        }
    }

    /// Which codes of a vocabulary any of `patterns` matches, by code id.
    pub fn mask<S: AsRef<str>>(patterns: &[CodePattern], vocabulary: &[S]) -> Vec<bool> {
        vocabulary.iter().map(|c| patterns.iter().any(|p| p.matches(c.as_ref()))).collect()
    }
}

/// The features of a model, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSetSpec {
    pub features: Vec<EventFeature>,
}

impl FeatureSetSpec {
    /// Parses and validates a spec: unique names, at least one code per code-based feature.
    pub fn from_toml(text: &str) -> Result<Self, InvalidModel> {
        let spec: Self = toml::from_str(text).map_err(|e| InvalidModel::new("syntax", e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for f in &spec.features {
            if !seen.insert(f.name.as_str()) {
                return Err(InvalidModel::new(format_args!("feature `{}`", f.name), "declared twice"));
            }
            let limits = crate::schema::FeatureSpec {
                possible: f.possible,
                plausible: f.plausible,
                ..crate::schema::FeatureSpec::plain(&f.name, crate::schema::FeatureKind::Numeric)
            };
            limits.validate_limits()?;
            let codes = match &f.kind {
                FeatureKind::Present { codes, .. }
                | FeatureKind::Count { codes, .. }
                | FeatureKind::Measurement { codes, .. }
                | FeatureKind::DaysSince { codes } => Some(codes),
                FeatureKind::Age { .. } | FeatureKind::News2 { .. } => None,
            };
            if codes.is_some_and(|c| c.is_empty()) {
                return Err(InvalidModel::new(format_args!("feature `{}`", f.name), "no codes"));
            }
            if let FeatureKind::Measurement { agg, rank: Some(rank), .. } = &f.kind {
                if *rank > MAX_RANK {
                    return Err(InvalidModel::new(
                        format_args!("feature `{}`", f.name),
                        format!("rank {rank} is beyond the oldest step kept ({MAX_RANK})"),
                    ));
                }
                if !matches!(agg, Aggregate::Latest | Aggregate::HoursAgo) {
                    return Err(InvalidModel::new(
                        format_args!("feature `{}`", f.name),
                        "a rank picks one event, so agg must be `latest` or `hours_ago`",
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// One feature: a name a clinician knows and how to compute it from events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFeature {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// See [`crate::schema::FeatureSpec::monotone`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monotone: Option<crate::schema::Monotone>,
    /// See [`crate::schema::FeatureSpec::factor`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<String>,
    /// See [`crate::schema::FeatureSpec::possible`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub possible: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plausible: Option<[f64; 2]>,
    #[serde(flatten)]
    pub kind: FeatureKind,
}

/// How a feature is computed. Codes match exactly, or by prefix when they end in `*`
/// (e.g. `ICD10//F0*`). Only events at or before the prediction time are ever seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// Years from the birth event to the prediction time.
    Age {
        #[serde(default = "default_birth_code")]
        birth_code: String,
    },
    /// 1 when a matching event lies in the window, else 0 (static facts count in window `all`).
    Present {
        codes: Vec<String>,
        #[serde(default)]
        window: Window,
    },
    /// How many matching events lie in the window.
    Count {
        codes: Vec<String>,
        #[serde(default)]
        window: Window,
    },
    /// An aggregate of the numeric values of matching events in the window; missing if none.
    /// With a `rank`, one step of the event sequence a recurrent model reads: `latest` or
    /// `hours_ago` of the rank-th most recent valued event before the latest (0: the latest
    /// itself; at most [`MAX_RANK`]).
    Measurement {
        codes: Vec<String>,
        agg: Aggregate,
        #[serde(default)]
        window: Window,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rank: Option<u8>,
    },
    /// Days from the latest matching event to the prediction time; missing if none.
    DaysSince { codes: Vec<String> },
    /// NEWS2 from the latest observations in the window; missing unless respiration rate, SpO2,
    /// systolic BP, pulse and temperature are all there (no oxygen record reads as air, no
    /// consciousness record as alert).
    News2 {
        #[serde(default = "one_day")]
        window: Window,
        #[serde(default)]
        codes: News2Codes,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Latest,
    Min,
    Max,
    Mean,
    /// Least-squares slope of timed values against time, per day; missing with fewer than two
    /// times.
    Trend,
    /// The least-squares line's value at the prediction time: the current level, smoothed over
    /// the window's timed readings (a noisy latest reading moves it by a share, not wholly), kept
    /// within their range; missing with fewer than two times.
    Fitted,
    /// Sample standard deviation of the values (variability); missing with fewer than two.
    Sd,
    /// Hours from the latest timed, valued event to the prediction time (with `rank`: when
    /// that step was observed).
    HoursAgo,
}

/// The oldest step of an event sequence a feature can read (ranks 0..=7).
pub const MAX_RANK: u8 = 7;

/// The event codes NEWS2 reads. Oxygen and consciousness are recorded as numbers: 1 = on
/// supplemental oxygen, 1 = new confusion / voice / pain / unresponsive (0 = air, 0 = alert).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct News2Codes {
    pub respiration_rate: String,
    pub spo2: String,
    pub supplemental_oxygen: String,
    pub systolic_bp: String,
    pub pulse: String,
    pub consciousness: String,
    pub temperature: String,
}

impl Default for News2Codes {
    fn default() -> Self {
        Self {
            respiration_rate: "VITAL//RESPIRATION_RATE".into(),
            spo2: "VITAL//SPO2".into(),
            supplemental_oxygen: "VITAL//SUPPLEMENTAL_OXYGEN".into(),
            systolic_bp: "VITAL//SYSTOLIC_BP".into(),
            pulse: "VITAL//PULSE".into(),
            consciousness: "VITAL//ACVPU".into(),
            temperature: "VITAL//TEMPERATURE".into(),
        }
    }
}

fn default_birth_code() -> String {
    "MEDS_BIRTH".into()
}

fn one_day() -> Window {
    Window(Some(MICROS_PER_DAY))
}

/// A look-back window ending at the prediction time: `all`, or a length such as `30m`, `24h`,
/// `365d`, `5y`. `None` is all history, static facts included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window(pub Option<i64>);

impl TryFrom<String> for Window {
    type Error = InvalidModel;
    fn try_from(s: String) -> Result<Self, InvalidModel> {
        if s == "all" {
            return Ok(Window(None));
        }
        let bad = || {
            InvalidModel::new(
                format_args!("window `{s}`"),
                "expected `all` or a number with m, h, d or y (e.g. `24h`, `365d`)",
            )
        };
        let (num, unit) = s.split_at(s.len().checked_sub(1).ok_or_else(bad)?);
        let n: i64 = num.parse().map_err(|_| bad())?;
        let per = match unit {
            "m" => 60_000_000,
            "h" => MICROS_PER_HOUR,
            "d" => MICROS_PER_DAY,
            "y" => MICROS_PER_YEAR as i64,
            _ => return Err(bad()),
        };
        if n <= 0 {
            return Err(bad());
        }
        Ok(Window(Some(n * per)))
    }
}

impl From<Window> for String {
    fn from(w: Window) -> String {
        match w.0 {
            None => "all".into(),
            Some(us) if us % MICROS_PER_DAY == 0 => format!("{}d", us / MICROS_PER_DAY),
            Some(us) if us % MICROS_PER_HOUR == 0 => format!("{}h", us / MICROS_PER_HOUR),
            Some(us) => format!("{}m", us / 60_000_000),
        }
    }
}
