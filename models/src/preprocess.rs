//! Preprocessing stored inside the model package: imputation, category encoding, scaling and
//! training-range checks. Training and serving both encode through [`Preprocessor::encode`], so a
//! served score sees exactly the columns the model was fitted on.

use crate::invalid::InvalidModel;
use crate::schema::{FeatureKind, FeatureSpec, InputError, Value};
use serde::{Deserialize, Serialize};

/// How inputs become model columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// For linear models: numeric values median-imputed and standardised, plus a missing
    /// indicator where training data had missing values; categories one-hot.
    Standardised,
    /// For tree ensembles: numeric values as they are, missing as NaN (the trees learned where
    /// missing values go); categories one-hot.
    Native,
    /// For a stack of both kinds: the standardised columns, then the native ones, each member
    /// reading its own block ([`Preprocessor::block`]).
    Stacked,
}

impl Encoding {
    /// The single encodings a row is written in, in order.
    fn blocks(self) -> &'static [Encoding] {
        match self {
            Encoding::Stacked => &[Encoding::Standardised, Encoding::Native],
            Encoding::Standardised => &[Encoding::Standardised],
            Encoding::Native => &[Encoding::Native],
        }
    }
}

/// What training taught the preprocessor about one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedFeature {
    #[serde(flatten)]
    pub spec: FeatureSpec,
    pub stats: FeatureStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureStats {
    Numeric {
        median: f64,
        mean: f64,
        sd: f64,
        min: f64,
        max: f64,
        /// Whether training data had missing values (and so a missing indicator column).
        had_missing: bool,
    },
    Categorical {
        /// Accepted levels, one column each.
        levels: Vec<String>,
        /// Level imputed for a missing value when training had none missing.
        mode: String,
        /// Whether training data had missing values (and so a "missing" column).
        had_missing: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    MissingImputed,
    OutOfTrainingRange,
    /// Possible, but outside the feature's plausible physiological range: check it.
    Implausible,
}

/// Something a clinician should know about how an input was used; never an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// Index of the feature in the model's feature list.
    pub feature: usize,
    pub kind: WarningKind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub encoding: Encoding,
    pub features: Vec<FittedFeature>,
}

impl Preprocessor {
    /// Number of model columns one row encodes to.
    pub fn n_columns(&self) -> usize {
        self.column_owners().len()
    }

    /// For each model column, the index of the feature it came from: how explanations of
    /// one-hot columns and missing indicators are summed back into the feature a clinician knows.
    pub fn column_owners(&self) -> Vec<usize> {
        self.encoding.blocks().iter().flat_map(|&e| self.block_owners(e)).collect()
    }

    /// [`Preprocessor::column_owners`] of one single encoding's block.
    fn block_owners(&self, encoding: Encoding) -> Vec<usize> {
        let mut owners = Vec::new();
        for (i, f) in self.features.iter().enumerate() {
            let width = match &f.stats {
                FeatureStats::Numeric { had_missing, .. } => {
                    1 + usize::from(*had_missing && encoding == Encoding::Standardised)
                }
                FeatureStats::Categorical { levels, had_missing, .. } => levels.len() + usize::from(*had_missing),
            };
            owners.extend(std::iter::repeat_n(i, width));
        }
        owners
    }

    /// Where the columns of single encoding `encoding` lie in this preprocessor's row (all of it
    /// unless stacked); `None` when the row holds no such block.
    pub fn block(&self, encoding: Encoding) -> Option<std::ops::Range<usize>> {
        let mut start = 0;
        for &e in self.encoding.blocks() {
            let width = self.block_owners(e).len();
            if e == encoding {
                return Some(start..start + width);
            }
            start += width;
        }
        None
    }

    /// The same fitted features under another encoding: a stack member's own preprocessor.
    pub fn with_encoding(&self, encoding: Encoding) -> Preprocessor {
        Preprocessor { encoding, features: self.features.clone() }
    }

    /// Encodes one row, given in feature order, into `out` (cleared first). Refuses values of the
    /// wrong type, non-finite numbers and unknown categories, naming the feature; reports
    /// imputation and out-of-range values as warnings.
    pub fn encode(&self, row: &[Value<'_>], out: &mut Vec<f64>, warnings: &mut Vec<Warning>) -> Result<(), InputError> {
        debug_assert_eq!(row.len(), self.features.len());
        out.clear();
        for (k, &block) in self.encoding.blocks().iter().enumerate() {
            // A stacked row is checked, and warned about, once: on its first block.
            let warned = if k == 0 { Some(&mut *warnings) } else { None };
            self.encode_block(block, row, out, warned)?;
        }
        Ok(())
    }

    /// Appends one single encoding of `row` to `out`, pushing warnings where asked.
    fn encode_block(
        &self,
        encoding: Encoding,
        row: &[Value<'_>],
        out: &mut Vec<f64>,
        mut warnings: Option<&mut Vec<Warning>>,
    ) -> Result<(), InputError> {
        let mut warn = |w: Warning| {
            if let Some(ws) = warnings.as_deref_mut() {
                ws.push(w)
            }
        };
        for (i, (f, value)) in self.features.iter().zip(row).enumerate() {
            match &f.stats {
                FeatureStats::Numeric { median, mean, sd, min, max, had_missing } => {
                    let x = match *value {
                        Value::Number(x) if x.is_finite() => Some(x),
                        Value::Number(_) => {
                            return Err(InputError::new(
                                &f.spec.name,
                                "NaN or infinite; send `missing` for a value not recorded",
                            ));
                        }
                        Value::Missing => None,
                        Value::Text(_) => {
                            return Err(InputError::new(&f.spec.name, "expected a number, got text"));
                        }
                    };
                    let unit = f.spec.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
                    // The message names the range, never the value (errors can reach logs).
                    let outside = |range: Option<[f64; 2]>| {
                        x.zip(range).filter(|&(x, [lo, hi])| x < lo || x > hi).map(|(_, r)| r)
                    };
                    if let Some([lo, hi]) = outside(f.spec.possible) {
                        return Err(InputError::new(
                            &f.spec.name,
                            format!(
                                "outside the possible range {}{unit} to {}{unit}: check the value and its unit",
                                fmt_num(lo),
                                fmt_num(hi)
                            ),
                        ));
                    }
                    if let Some([lo, hi]) = outside(f.spec.plausible) {
                        warn(Warning {
                            feature: i,
                            kind: WarningKind::Implausible,
                            message: format!(
                                "outside the plausible range {}{unit} to {}{unit}: check it",
                                fmt_num(lo),
                                fmt_num(hi)
                            ),
                        });
                    }
                    match x {
                        Some(x) if x < *min || x > *max => warn(Warning {
                            feature: i,
                            kind: WarningKind::OutOfTrainingRange,
                            message: format!(
                                "outside the training range {}{unit} to {}{unit}: the model extrapolates",
                                fmt_num(*min),
                                fmt_num(*max)
                            ),
                        }),
                        Some(_) => {}
                        None => warn(Warning {
                            feature: i,
                            kind: WarningKind::MissingImputed,
                            message: match self.encoding {
                                Encoding::Standardised => {
                                    format!("not recorded: imputed with the training median {}{unit}", fmt_num(*median))
                                }
                                Encoding::Native => {
                                    "not recorded: scored as missing, as learned in training".to_string()
                                }
                                Encoding::Stacked => format!(
                                    "not recorded: the model's trees score it as missing, as learned in training; its other members impute the training median {}{unit}",
                                    fmt_num(*median)
                                ),
                            },
                        }),
                    }
                    match encoding {
                        Encoding::Standardised => {
                            out.push((x.unwrap_or(*median) - mean) / sd);
                            if *had_missing {
                                out.push(if x.is_none() { 1.0 } else { 0.0 });
                            }
                        }
                        Encoding::Native => out.push(x.unwrap_or(f64::NAN)),
                        Encoding::Stacked => unreachable!("a block is a single encoding"),
                    }
                }
                FeatureStats::Categorical { levels, mode, had_missing } => {
                    let level = match *value {
                        Value::Text(t) => Some(levels.iter().position(|l| l == t).ok_or_else(|| {
                            InputError::new(
                                &f.spec.name,
                                format!("unknown category; expected one of: {}", levels.join(", ")),
                            )
                        })?),
                        Value::Missing => None,
                        Value::Number(_) => {
                            return Err(InputError::new(
                                &f.spec.name,
                                format!("expected a category, got a number; one of: {}", levels.join(", ")),
                            ));
                        }
                    };
                    let start = out.len();
                    out.extend(std::iter::repeat_n(0.0, levels.len() + usize::from(*had_missing)));
                    match level {
                        Some(k) => out[start + k] = 1.0,
                        None if *had_missing => {
                            out[start + levels.len()] = 1.0;
                            warn(Warning {
                                feature: i,
                                kind: WarningKind::MissingImputed,
                                message: "not recorded: scored as missing, as learned in training".into(),
                            });
                        }
                        None => {
                            let k = levels.iter().position(|l| l == mode).unwrap_or(0);
                            out[start + k] = 1.0;
                            warn(Warning {
                                feature: i,
                                kind: WarningKind::MissingImputed,
                                message: format!("not recorded: imputed with the most common category `{mode}`"),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks that the declared kinds agree with the fitted statistics (a package consistency check).
    pub fn validate(&self) -> Result<(), InvalidModel> {
        if self.features.is_empty() {
            return Err(InvalidModel::new("features", "a model needs at least one"));
        }
        for f in &self.features {
            f.spec.validate_limits()?;
            let ok = matches!(
                (&f.spec.kind, &f.stats),
                (FeatureKind::Numeric, FeatureStats::Numeric { .. })
                    | (FeatureKind::Categorical, FeatureStats::Categorical { .. })
            );
            if !ok {
                return Err(InvalidModel::new(
                    format_args!("feature `{}`", f.spec.name),
                    "declared type disagrees with its fitted encoding",
                ));
            }
            if let FeatureStats::Numeric { sd, .. } = &f.stats
                && !(sd.is_finite() && *sd > 0.0)
            {
                return Err(InvalidModel::new(format_args!("feature `{}`", f.spec.name), "scale must be positive"));
            }
        }
        Ok(())
    }
}

/// Formats a number for a clinician: whole from 100, one decimal from 10, else two, trailing
/// zeros dropped (`82`, `37.5`, `0.25`).
pub fn fmt_num(x: f64) -> String {
    let mut s = String::new();
    push_num(&mut s, x);
    s
}

/// [`fmt_num`] appended to `out`: a score's explanation formats a number per feature, so this
/// rounds `x · 10^places` directly (the same digits as `format!("{x:.places$}")`, which rounds the
/// exact binary value half to even) and leaves only values within rounding error of a tie, and
/// non-finite or huge ones, to `format!` and its arbitrary-precision path.
pub fn push_num(out: &mut String, x: f64) {
    use std::fmt::Write;
    let places: usize = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let unit = [1u64, 10, 100][places];
    let scaled = x.abs() * unit as f64; // within half an ulp of the exact product
    let from_tie = (scaled - scaled.floor() - 0.5).abs();
    // NaN, infinities and huge values are left to format! (a NaN compares as not less).
    let in_range = scaled.partial_cmp(&1e15) == Some(std::cmp::Ordering::Less);
    if !in_range || from_tie <= scaled * f64::EPSILON + f64::MIN_POSITIVE {
        let start = out.len();
        write!(out, "{x:.places$}").expect("writing to a String cannot fail");
        if out[start..].contains('.') {
            let kept = out.trim_end_matches('0').trim_end_matches('.').len();
            out.truncate(kept);
        }
        return;
    }
    let rounded = scaled.round() as u64;
    if x.is_sign_negative() {
        out.push('-'); // as format! does, "-0" included
    }
    write!(out, "{}", rounded / unit).expect("writing to a String cannot fail");
    let mut fraction = rounded % unit;
    if fraction != 0 {
        out.push('.');
        let mut width = places;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            width -= 1;
        }
        write!(out, "{fraction:0width$}").expect("writing to a String cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_num;
    use proptest::prelude::*;

    /// The definition: `format!` at the number's precision, trailing zeros dropped.
    fn by_format(x: f64) -> String {
        let places = if x.abs() >= 100.0 {
            0
        } else if x.abs() >= 10.0 {
            1
        } else {
            2
        };
        let s = format!("{x:.places$}");
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    }

    #[test]
    fn ties_signs_and_extremes_format_as_format_does() {
        let mut cases = vec![
            0.0,
            -0.0,
            0.005,
            0.015,
            0.125,
            2.5,
            -2.5,
            9.995,
            9.999,
            10.05,
            10.25,
            99.95,
            99.96,
            100.5,
            101.5,
            -0.001,
            1e-300,
            5e-324,
            1e15,
            1e16,
            123_456_789.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN,
        ];
        // Ties and near-ties of every precision, on fine grids.
        for k in 0..4000 {
            let k = f64::from(k);
            cases.extend([k / 8.0, k / 200.0, -k / 20.0, 10.0 + k * 0.005, 100.0 + k * 0.5, k * 0.001 + 1e-9]);
        }
        for x in cases {
            assert_eq!(fmt_num(x), by_format(x), "{x:e}");
        }
    }

    proptest! {
        #[test]
        fn any_number_formats_as_format_does(x in any::<f64>(), thousandths in -2_000_000i64..2_000_000) {
            prop_assert_eq!(fmt_num(x), by_format(x));
            let clinical = thousandths as f64 / 1000.0;
            prop_assert_eq!(fmt_num(clinical), by_format(clinical));
        }
    }
}
