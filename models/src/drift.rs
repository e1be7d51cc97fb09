//! Input and score drift: what a model's inputs and scores looked like in training (the
//! package's [`Reference`], `reference.json`), live inputs counted into the same bins
//! ([`Tally`], counts only: no patient value is kept), and how far apart the two are
//! ([`Tally::drift`]: population stability index and Jensen–Shannon distance per feature, the
//! change in each feature's missing rate, and the same for the score).
//!
//! Numbers are binned at the training deciles (ties merged, so a 0/1 feature has two bins),
//! categories by the levels the model knows plus one bin for any other; every feature also has a
//! bin for missing values, so a feed that stops sending an input shows as drift rather than
//! vanishing from the counts.

use crate::schema::{FeatureKind, Value};
use crate::scorer::{Scorer, Workspace};
use serde::{Deserialize, Serialize};

/// The package file holding the training reference.
pub const REFERENCE: &str = "reference.json";
/// PSI at or above which a feature has shifted enough to act on (the usual rule of thumb:
/// below 0.1 stable, 0.1–0.25 worth watching, 0.25 and over a significant shift).
pub const PSI_ALERT: f64 = 0.25;
/// Live rows below which no drift alert is raised: PSI of a small sample from an unchanged
/// population is biased upwards by about (bins − 1) / rows, 0.05 at 200 rows and 11 bins.
pub const MIN_ROWS: u64 = 200;
/// The share an empty slot on one side is read as in PSI.
const EMPTY_SHARE: f64 = 1e-4;

/// How one input (or the score) is binned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bins {
    /// Inclusive upper edges at the training deciles: slot `i` holds values up to `edges[i]`,
    /// slot `edges.len()` the values above the last edge, and the slot after it missing values.
    Numeric { edges: Vec<f64> },
    /// One slot per level, then one for any other category, then one for missing values.
    Categorical { levels: Vec<String> },
}

impl Bins {
    /// Edges at the deciles of `values` (missing values left out; nearest-rank deciles), ties
    /// merged.
    fn deciles(values: &mut [f64]) -> Self {
        values.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::new();
        if !values.is_empty() {
            for q in 1..10 {
                let e = values[(q * values.len()).div_ceil(10) - 1];
                if edges.last() != Some(&e) {
                    edges.push(e);
                }
            }
        }
        Bins::Numeric { edges }
    }

    /// Slots, the missing slot included.
    pub fn slots(&self) -> usize {
        match self {
            Bins::Numeric { edges } => edges.len() + 2,
            Bins::Categorical { levels } => levels.len() + 2,
        }
    }

    /// The slot a value is counted in. A number sent for a categorical input, or text for a
    /// numeric one (refused by the scorer), counts as "other" / the top bin: counting never fails.
    pub fn slot(&self, value: &Value<'_>) -> usize {
        let missing = self.slots() - 1;
        match (self, value) {
            (_, Value::Missing) => missing,
            (Bins::Numeric { edges }, Value::Number(x)) if x.is_nan() => missing,
            (Bins::Numeric { edges }, Value::Number(x)) => edges.partition_point(|e| e < x),
            (Bins::Numeric { edges }, Value::Text(_)) => edges.len(),
            (Bins::Categorical { levels }, Value::Text(t)) => {
                levels.iter().position(|l| l == t).unwrap_or(levels.len())
            }
            (Bins::Categorical { levels }, Value::Number(_)) => levels.len(),
        }
    }

    /// Each slot in words, for reports: `≤ 62`, `62 to 70`, `> 90`, a level, `other`, `missing`.
    pub fn labels(&self) -> Vec<String> {
        let num = crate::preprocess::fmt_num;
        let mut labels: Vec<String> = match self {
            Bins::Numeric { edges } if edges.is_empty() => vec!["any value".into()],
            Bins::Numeric { edges } => std::iter::once(format!("≤ {}", num(edges[0])))
                .chain(edges.windows(2).map(|w| format!("{} to {}", num(w[0]), num(w[1]))))
                .chain(std::iter::once(format!("> {}", num(edges[edges.len() - 1]))))
                .collect(),
            Bins::Categorical { levels } => levels.iter().cloned().chain(["other".into()]).collect(),
        };
        labels.push("missing".into());
        labels
    }
}

/// One input's (or the score's) training distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub name: String,
    pub bins: Bins,
    /// Training rows in each slot.
    pub counts: Vec<u64>,
}

/// What the training data looked like, kept in the package (`reference.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Training rows summarised.
    pub rows: u64,
    /// One per model input, in the model's feature order.
    pub features: Vec<Histogram>,
    /// The probability the model gave the training rows.
    pub score: Histogram,
}

impl Reference {
    /// The reference of `scorer`'s training rows (each in feature order); rows the model
    /// refuses are left out. Categorical inputs are binned by the levels the model was fitted on.
    pub fn of<'a>(scorer: &Scorer, rows: impl IntoIterator<Item = Vec<Value<'a>>>) -> Self {
        let features = &scorer.preprocessor().features;
        let mut ws = Workspace::default();
        let mut kept: Vec<Vec<Value<'a>>> = Vec::new();
        let mut scores = Vec::new();
        for row in rows {
            if let Ok(probability) = scorer.probability(&row, &mut ws) {
                scores.push(probability);
                kept.push(row);
            }
        }
        let histograms = features
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let bins = match (&f.spec.kind, &f.stats) {
                    (FeatureKind::Categorical, crate::preprocess::FeatureStats::Categorical { levels, .. }) => {
                        Bins::Categorical { levels: levels.clone() }
                    }
                    _ => Bins::deciles(
                        &mut kept
                            .iter()
                            .filter_map(|r| if let Value::Number(x) = r[i] { Some(x) } else { None })
                            .collect::<Vec<_>>(),
                    ),
                };
                Histogram::count(&f.spec.name, bins, kept.iter().map(|r| r[i]))
            })
            .collect();
        let score_bins = Bins::deciles(&mut scores.clone());
        Reference {
            rows: kept.len() as u64,
            features: histograms,
            score: Histogram::count("score", score_bins, scores.iter().map(|&p| Value::Number(p))),
        }
    }

    /// The same reference for a model whose probabilities are this one's mapped by `f`, an
    /// increasing function (a recalibration): the score's bins keep their rows, their edges move.
    pub fn with_scores_mapped(&self, f: impl Fn(f64) -> f64) -> Self {
        let mut mapped = self.clone();
        if let Bins::Numeric { edges } = &mut mapped.score.bins {
            edges.iter_mut().for_each(|e| *e = f(*e));
        }
        mapped
    }

    /// Whether the reference fits `scorer`: one histogram per input, by name and in order.
    pub fn fits(&self, scorer: &Scorer) -> bool {
        let names = scorer.preprocessor().features.iter().map(|f| f.spec.name.as_str());
        self.features.len() == scorer.preprocessor().features.len()
            && self.features.iter().map(|h| h.name.as_str()).eq(names)
            && self.features.iter().chain([&self.score]).all(|h| h.counts.len() == h.bins.slots())
    }
}

impl Histogram {
    fn count<'a>(name: &str, bins: Bins, values: impl Iterator<Item = Value<'a>>) -> Self {
        let mut counts = vec![0; bins.slots()];
        values.for_each(|v| counts[bins.slot(&v)] += 1);
        Histogram { name: name.into(), bins, counts }
    }
}

/// Live rows counted into a reference's bins: counts only, so it can be kept, merged across
/// servers and days, and written out without holding any patient's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub rows: u64,
    /// Per input, per slot (as the reference's).
    pub features: Vec<Vec<u64>>,
    pub score: Vec<u64>,
}

/// How far one input (or the score) has moved from training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub name: String,
    /// Population stability index: Σ (live − train) · ln(live / train) over the slots' shares,
    /// a share of 0 on one side only read as 1 in 10,000 so that it stays finite (a category
    /// training never saw, at 5% of live rows, adds 0.31: an alert on its own).
    pub psi: f64,
    /// Jensen–Shannon distance (base 2, so 0 to 1): the square root of the divergence.
    pub js_distance: f64,
    /// Share of rows missing the input, in training and live.
    pub missing_train: f64,
    pub missing_live: f64,
}

/// A tally compared with its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub rows: u64,
    pub features: Vec<FeatureDrift>,
    pub score: FeatureDrift,
}

impl Drift {
    /// The inputs (and `score`) whose PSI reaches [`PSI_ALERT`], if there are at least
    /// [`MIN_ROWS`] live rows; otherwise none.
    pub fn alerts(&self) -> Vec<&FeatureDrift> {
        if self.rows < MIN_ROWS {
            return Vec::new();
        }
        self.features.iter().chain([&self.score]).filter(|f| f.psi >= PSI_ALERT).collect()
    }
}

impl Tally {
    /// An empty tally in `reference`'s bins.
    pub fn new(reference: &Reference) -> Self {
        Tally {
            rows: 0,
            features: reference.features.iter().map(|h| vec![0; h.counts.len()]).collect(),
            score: vec![0; reference.score.counts.len()],
        }
    }

    /// Counts one scored row (in feature order) and its probability.
    pub fn count(&mut self, reference: &Reference, row: &[Value<'_>], probability: f64) {
        self.rows += 1;
        for ((counts, h), v) in self.features.iter_mut().zip(&reference.features).zip(row) {
            counts[h.bins.slot(v)] += 1;
        }
        self.score[reference.score.bins.slot(&Value::Number(probability))] += 1;
    }

    /// Adds another tally of the same reference (another day, another server).
    pub fn merge(&mut self, other: &Tally) -> Result<(), crate::InvalidModel> {
        let shape = |t: &Tally| (t.score.len(), t.features.iter().map(Vec::len).collect::<Vec<_>>());
        if shape(self) != shape(other) {
            return Err(crate::InvalidModel::new("tally", "counted in other bins than this one"));
        }
        self.rows += other.rows;
        let pairs = self.features.iter_mut().zip(&other.features).chain([(&mut self.score, &other.score)]);
        for (mine, theirs) in pairs {
            mine.iter_mut().zip(theirs).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }

    /// Whether this tally has `reference`'s bins.
    pub fn fits(&self, reference: &Reference) -> bool {
        self.features.len() == reference.features.len()
            && self.features.iter().zip(&reference.features).all(|(c, h)| c.len() == h.counts.len())
            && self.score.len() == reference.score.counts.len()
    }

    /// How far these rows are from the reference, input by input.
    pub fn drift(&self, reference: &Reference) -> Drift {
        Drift {
            rows: self.rows,
            features: reference.features.iter().zip(&self.features).map(|(h, live)| compare(h, live)).collect(),
            score: compare(&reference.score, &self.score),
        }
    }
}

fn compare(reference: &Histogram, live: &[u64]) -> FeatureDrift {
    let share = |counts: &[u64]| -> Vec<f64> {
        let total = counts.iter().sum::<u64>() as f64;
        counts.iter().map(|&c| if total > 0.0 { c as f64 / total } else { 0.0 }).collect()
    };
    let (train, now) = (share(&reference.counts), share(live));
    let psi = train
        .iter()
        .zip(&now)
        .filter(|(e, a)| **e > 0.0 || **a > 0.0)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(EMPTY_SHARE), a.max(EMPTY_SHARE));
            (a - e) * (a / e).ln()
        })
        .sum::<f64>();
    let kl_to_mid = |p: &[f64], q: &[f64]| -> f64 {
        p.iter().zip(q).filter(|(a, _)| **a > 0.0).map(|(&a, &b)| a * (2.0 * a / (a + b)).log2()).sum()
    };
    let js = (0.5 * kl_to_mid(&train, &now) + 0.5 * kl_to_mid(&now, &train)).max(0.0).sqrt();
    let last = live.len() - 1;
    FeatureDrift {
        name: reference.name.clone(),
        psi: if live.iter().sum::<u64>() == 0 { 0.0 } else { psi },
        js_distance: js,
        missing_train: train[last],
        missing_live: now[last],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(edges: &[f64]) -> Bins {
        Bins::Numeric { edges: edges.to_vec() }
    }

    #[test]
    fn values_on_an_edge_fall_in_the_bin_below_it_and_missing_has_its_own() {
        let b = numeric(&[0.0, 1.0]);
        let slots: Vec<usize> =
            [-1.0, 0.0, 0.5, 1.0, 7.0, f64::NAN].iter().map(|&x| b.slot(&Value::Number(x))).collect();
        assert_eq!(slots, [0, 0, 1, 1, 2, 3]);
        assert_eq!(b.slot(&Value::Missing), 3);
        assert_eq!(b.labels(), ["≤ 0", "0 to 1", "> 1", "missing"]);
        let c = Bins::Categorical { levels: vec!["a".into(), "b".into()] };
        assert_eq!([c.slot(&Value::Text("b")), c.slot(&Value::Text("z")), c.slot(&Value::Missing)], [1, 2, 3]);
    }

    #[test]
    fn deciles_of_a_binary_feature_merge_to_two_edges() {
        let mut v: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i >= 70))).collect();
        assert_eq!(Bins::deciles(&mut v), numeric(&[0.0, 1.0]));
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let Bins::Numeric { edges } = Bins::deciles(&mut v) else { unreachable!() };
        assert_eq!(edges, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]);
    }

    #[test]
    fn psi_and_js_match_their_definitions_worked_by_hand() {
        let reference = Histogram { name: "x".into(), bins: numeric(&[0.0]), counts: vec![50, 50, 0] };
        let d = compare(&reference, &[20, 70, 10]);
        // Shares train (0.5, 0.5, 0), live (0.2, 0.7, 0.1); the empty training slot read as 1e-4.
        let (e, a): ([f64; 3], [f64; 3]) = ([0.5, 0.5, 1e-4], [0.2, 0.7, 0.1]);
        let psi: f64 = (0..3).map(|i| (a[i] - e[i]) * (a[i] / e[i]).ln()).sum();
        assert!((d.psi - psi).abs() < 1e-15, "{} vs {psi}", d.psi);
        // JS divergence, base 2, against the mixture m.
        let (p, q) = ([0.5, 0.5, 0.0], [0.2, 0.7, 0.1]);
        let m = [0.35, 0.6, 0.05];
        let term = |x: f64, m: f64| if x > 0.0 { x * (x / m).log2() } else { 0.0 };
        let jsd: f64 = (0..3).map(|i| 0.5 * term(p[i], m[i]) + 0.5 * term(q[i], m[i])).sum();
        assert!((d.js_distance - jsd.sqrt()).abs() < 1e-15);
        assert_eq!((d.missing_train, d.missing_live), (0.0, 0.1));
        let same = compare(&reference, &[5, 5, 0]);
        assert!(same.psi.abs() < 1e-15 && same.js_distance == 0.0);
    }
}
