//! Learns the preprocessor's statistics (medians, scales, ranges, category levels) from the
//! training rows only, so nothing about the test rows leaks into the model.

use carecast_models::preprocess::{Encoding, FeatureStats, FittedFeature, Preprocessor};
use carecast_models::{FeatureKind, FeatureSpec, Value};
use carecast_tables::FeatureColumn;
use std::collections::BTreeMap;

pub fn fit_preprocessor(
    specs: &[FeatureSpec],
    columns: &[FeatureColumn],
    train_rows: &[usize],
    encoding: Encoding,
) -> anyhow::Result<Preprocessor> {
    let features = specs
        .iter()
        .zip(columns)
        .map(|(spec, col)| {
            let values = train_rows.iter().map(|&r| col.value(r).expect("bad cells are excluded before fitting"));
            let stats = match spec.kind {
                // A step of an event sequence always gets a missing indicator, so that every
                // step of the sequence has the same channels.
                FeatureKind::Numeric => numeric_stats(&spec.name, values, spec.step.is_some())?,
                FeatureKind::Categorical => categorical_stats(&spec.name, values)?,
            };
            Ok(FittedFeature { spec: spec.clone(), stats })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Preprocessor { encoding, features })
}

fn numeric_stats<'a>(
    name: &str,
    values: impl Iterator<Item = Value<'a>>,
    indicator: bool,
) -> anyhow::Result<FeatureStats> {
    let mut xs = Vec::new();
    let mut had_missing = indicator;
    for v in values {
        match v {
            Value::Number(x) if x.is_finite() => xs.push(x),
            Value::Missing => had_missing = true,
            _ => anyhow::bail!("feature `{name}`: non-numeric or non-finite value in training data"),
        }
    }
    anyhow::ensure!(!xs.is_empty(), "feature `{name}`: no recorded values in the training rows");
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 };
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    // A constant feature carries no information; a unit scale keeps the encoding finite.
    let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
    Ok(FeatureStats::Numeric { median, mean, sd, min: xs[0], max: xs[n - 1], had_missing })
}

fn categorical_stats<'a>(name: &str, values: impl Iterator<Item = Value<'a>>) -> anyhow::Result<FeatureStats> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut had_missing = false;
    for v in values {
        match v {
            Value::Text(t) => *counts.entry(t.to_string()).or_default() += 1,
            Value::Missing => had_missing = true,
            Value::Number(_) => anyhow::bail!("feature `{name}`: number in a categorical column"),
        }
    }
    anyhow::ensure!(!counts.is_empty(), "feature `{name}`: no recorded values in the training rows");
    // Sorted levels and a first-wins mode keep the encoding deterministic.
    let mode =
        counts.iter().fold(("", 0), |best, (k, &c)| if c > best.1 { (k.as_str(), c) } else { best }).0.to_string();
    Ok(FeatureStats::Categorical { levels: counts.into_keys().collect(), mode, had_missing })
}
