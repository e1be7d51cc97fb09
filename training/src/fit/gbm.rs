//! Histogram gradient boosting for binary outcomes (log-loss), grown leaf-wise like LightGBM:
//! quantile bins, a learned default direction for missing values, L2-regularised leaves,
//! histogram subtraction for siblings, early stopping on a tuning split, class weights, and
//! monotone constraints (LightGBM's basic method: a split on a constrained feature must order its
//! children's values, and bounds every leaf below it by their midpoint). It emits Carecast's
//! compact [`TreeEnsemble`], so serving and TreeSHAP never see training structures.

use super::learner::ParamError;
use carecast_models::trees::{LEAF, Node, Tree, TreeEnsemble};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GbmParams {
    pub learning_rate: f64,
    pub max_rounds: usize,
    pub max_leaves: usize,
    pub max_depth: usize,
    pub min_rows_leaf: usize,
    pub min_hessian_leaf: f64,
    pub l2: f64,
    pub max_bins: usize,
    /// Stop after this many rounds without improvement on the tuning rows.
    pub early_stopping_rounds: usize,
    /// Weight of each positive row relative to a negative one (1: unweighted). Weighted models
    /// overestimate risk and need calibration.
    pub positive_weight: f64,
}

impl Default for GbmParams {
    /// Robust defaults for clinical tables of thousands to millions of rows: shallow trees and a
    /// small learning rate, with the number of rounds set by early stopping.
    fn default() -> Self {
        Self {
            learning_rate: 0.03,
            max_rounds: 3000,
            max_leaves: 8,
            max_depth: 4,
            min_rows_leaf: 30,
            min_hessian_leaf: 1e-3,
            l2: 5.0,
            max_bins: 255,
            early_stopping_rounds: 100,
            positive_weight: 1.0,
        }
    }
}

impl GbmParams {
    /// Refuses settings no booster could run with.
    pub fn check(&self) -> Result<(), ParamError> {
        let name = |param| ParamError::new("gbm", param);
        name("learning_rate").unless(self.learning_rate > 0.0 && self.learning_rate <= 1.0, "must be in (0, 1]")?;
        name("max_rounds").unless(self.max_rounds >= 1, "must be at least 1")?;
        name("max_leaves").unless(self.max_leaves >= 2, "a tree needs at least 2 leaves")?;
        name("max_depth").unless(self.max_depth >= 1, "must be at least 1")?;
        name("min_rows_leaf").unless(self.min_rows_leaf >= 1, "must be at least 1")?;
        name("min_hessian_leaf")
            .unless(self.min_hessian_leaf.is_finite() && self.min_hessian_leaf >= 0.0, "must be a number >= 0")?;
        name("l2").unless(self.l2.is_finite() && self.l2 >= 0.0, "must be a number >= 0")?;
        // Bin 255 marks a missing value.
        name("max_bins").unless((2..=255).contains(&self.max_bins), "must be in 2..=255")?;
        name("early_stopping_rounds").unless(self.early_stopping_rounds >= 1, "must be at least 1")?;
        name("positive_weight")
            .unless(self.positive_weight.is_finite() && self.positive_weight > 0.0, "must be a positive number")
    }
}

/// Bin id of a missing value; real bins are `0..cuts.len()+1 <= 255`.
const MISSING: u8 = 255;
const HIST_WIDTH: usize = 256;

/// A column-major matrix: `values[c][r]`, NaN for missing.
pub struct Columns<'a> {
    pub values: &'a [Vec<f64>],
}

impl Columns<'_> {
    fn n_rows(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }
    fn row(&self, r: usize, out: &mut Vec<f64>) {
        out.clear();
        out.extend(self.values.iter().map(|c| c[r]));
    }
}

struct BinnedColumn {
    bins: Vec<u8>,
    cuts: Vec<f64>,
}

/// Cut points between distinct values, at most `max_bins - 1` of them, placed at quantiles.
/// A value `v` lands in bin `#{cuts <= v}`, so "bin <= b" is exactly "v < cuts[b]".
fn cut_points(values: &[f64], max_bins: usize) -> Vec<f64> {
    let mut xs: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    xs.sort_by(f64::total_cmp);
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for x in xs.iter().copied() {
        match distinct.last_mut() {
            Some((v, c)) if *v == x => *c += 1,
            _ => distinct.push((x, 1)),
        }
    }
    let midpoint = |a: f64, b: f64| a + (b - a) / 2.0;
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| midpoint(w[0].0, w[1].0)).collect();
    }
    let per_bin = xs.len() as f64 / max_bins as f64;
    let mut cuts = Vec::new();
    let mut acc = 0usize;
    for i in 0..distinct.len() - 1 {
        acc += distinct[i].1;
        if acc as f64 >= per_bin * (cuts.len() + 1) as f64 && cuts.len() < max_bins - 1 {
            cuts.push(midpoint(distinct[i].0, distinct[i + 1].0));
        }
    }
    cuts
}

/// Cut points come from at most this many rows, evenly spaced (as LightGBM samples 200,000):
/// quantiles from a large sample are as good as from all rows, at a fraction of the sorting.
const BIN_SAMPLE: usize = 200_000;

fn bin_column(values: &[f64], max_bins: usize) -> BinnedColumn {
    let step = values.len().div_ceil(BIN_SAMPLE).max(1);
    let cuts = if step == 1 {
        cut_points(values, max_bins.min(255))
    } else {
        cut_points(&values.iter().step_by(step).copied().collect::<Vec<_>>(), max_bins.min(255))
    };
    let bins =
        values.iter().map(|&v| if v.is_nan() { MISSING } else { cuts.partition_point(|&c| c <= v) as u8 }).collect();
    BinnedColumn { bins, cuts }
}

#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    g: f64,
    h: f64,
    n: f64,
}

impl Stat {
    fn add(&mut self, o: Stat) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }
    fn minus(self, o: Stat) -> Stat {
        Stat { g: self.g - o.g, h: self.h - o.h, n: self.n - o.n }
    }
}

/// One row's gradient and hessian as the histograms read them: 8 bytes, so that a leaf's
/// gradients stream through the cache (LightGBM's `score_t`); bins still sum in f64.
#[derive(Debug, Clone, Copy, Default)]
struct Gradient {
    g: f32,
    h: f32,
}

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    missing_left: bool,
    left: Stat,
    /// The children's (bounded) values, which set their bounds under a monotone split.
    left_value: f64,
    right_value: f64,
}

/// Range a leaf's raw value must stay in so that monotone constraints above it hold.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    lo: f64,
    hi: f64,
}

const UNBOUNDED: Bounds = Bounds { lo: f64::NEG_INFINITY, hi: f64::INFINITY };

/// A leaf being grown: its rows are `rows[start..start + len]` of the tree's row order.
struct Leaf {
    node: usize,
    start: usize,
    len: usize,
    hist: Vec<Stat>,
    total: Stat,
    depth: usize,
    bounds: Bounds,
    best: Option<Split>,
}

/// What a fit returns besides the model: how many rounds it kept and the tuning curve's minimum.
#[derive(Debug, Clone, PartialEq)]
pub struct GbmFit {
    pub ensemble: TreeEnsemble,
    pub rounds: usize,
    pub best_tuning_log_loss: Option<f64>,
}

/// Buffers a fit reuses across trees (fresh ones per tree cost the kernel's page zeroing):
/// the row order, in which every leaf is a contiguous range (LightGBM's data partition), a
/// scratch buffer for splitting a range, a leaf's gradients gathered into its row order, and
/// histograms of leaves already split.
struct Workspace {
    rows: Vec<u32>,
    scratch: Vec<u32>,
    ordered: Vec<Gradient>,
    spare_histograms: Vec<Vec<Stat>>,
}

/// Rows per parallel task when partitioning or gathering; fixed, so results never depend on
/// how the work was scheduled.
const CHUNK: usize = 1 << 14;

struct Booster<'a> {
    params: GbmParams,
    cols: Vec<BinnedColumn>,
    /// Per column: +1 risk may only rise with the value, -1 only fall, 0 free.
    monotone: &'a [i8],
}

impl Booster<'_> {
    /// Every feature's histogram over `rows` (`None`: all rows, in order), one feature per task.
    fn histogram(&self, rows: Option<&[u32]>, grad: &[Gradient], ws: &mut Workspace) -> Vec<Stat> {
        let mut hist = ws.spare_histograms.pop().unwrap_or_else(|| vec![Stat::default(); self.cols.len() * HIST_WIDTH]);
        // A subset's gradients are gathered once into row order, so that every feature's pass
        // reads them sequentially (LightGBM's ordered gradients).
        let ordered: &[Gradient] = match rows {
            None => grad,
            Some(rows) => {
                let ordered = &mut ws.ordered[..rows.len()];
                ordered.par_chunks_mut(CHUNK).zip(rows.par_chunks(CHUNK)).for_each(|(out, rows)| {
                    for (o, &r) in out.iter_mut().zip(rows) {
                        *o = grad[r as usize];
                    }
                });
                ordered
            }
        };
        let build = |(f, h): (usize, &mut [Stat])| {
            let bins = &self.cols[f].bins;
            // Sums in 16-byte bins with the counts in their own lane: less memory traffic per
            // row than 24-byte bins.
            let mut sums = [[0.0f64; 2]; HIST_WIDTH];
            let mut counts = [0u32; HIST_WIDTH];
            let mut add = |bin: u8, g: &Gradient| {
                let s = &mut sums[bin as usize];
                s[0] += f64::from(g.g);
                s[1] += f64::from(g.h);
                counts[bin as usize] += 1;
            };
            match rows {
                None => bins.iter().zip(ordered).for_each(|(&b, g)| add(b, g)),
                Some(rows) => rows.iter().zip(ordered).for_each(|(&r, g)| add(bins[r as usize], g)),
            }
            for ((out, s), &n) in h.iter_mut().zip(&sums).zip(&counts) {
                *out = Stat { g: s[0], h: s[1], n: f64::from(n) };
            }
        };
        if ordered.len() * self.cols.len() > 200_000 {
            hist.par_chunks_mut(HIST_WIDTH).enumerate().for_each(build);
        } else {
            hist.chunks_mut(HIST_WIDTH).enumerate().for_each(build);
        }
        hist
    }

    /// The leaf's optimal raw value, held within its bounds.
    fn value(&self, s: Stat, b: Bounds) -> f64 {
        (-s.g / (s.h + self.params.l2)).clamp(b.lo, b.hi)
    }

    /// Loss reduction of a leaf at value `w` (times -2): `g^2 / (h + l2)` at the optimum.
    fn score(&self, s: Stat, w: f64) -> f64 {
        -(2.0 * s.g * w + (s.h + self.params.l2) * w * w)
    }

    /// The best split of a leaf: each feature's best found in parallel, then the first of the
    /// highest gain in feature order, so ties break the same way on any number of threads.
    fn best_split(&self, hist: &[Stat], total: Stat, bounds: Bounds) -> Option<Split> {
        let parent = self.score(total, self.value(total, bounds));
        let per_feature: Vec<Option<Split>> = (0..self.cols.len())
            .into_par_iter()
            .map(|f| self.best_split_on(f, &hist[f * HIST_WIDTH..(f + 1) * HIST_WIDTH], total, bounds, parent))
            .collect();
        per_feature
            .into_iter()
            .flatten()
            .fold(None, |best: Option<Split>, s| if best.is_none_or(|b| s.gain > b.gain) { Some(s) } else { best })
    }

    fn best_split_on(&self, f: usize, h: &[Stat], total: Stat, bounds: Bounds, parent: f64) -> Option<Split> {
        let p = &self.params;
        let ok = |s: Stat| s.n >= p.min_rows_leaf as f64 && s.h >= p.min_hessian_leaf;
        let missing = h[MISSING as usize];
        // Try missing values on each side; without missing values in training, send them to
        // the larger side, which generalises best.
        let sides: &[bool] = if missing.n > 0.0 { &[false, true] } else { &[false] };
        let mut best: Option<Split> = None;
        let mut acc = Stat::default();
        for (b, &bin) in h.iter().enumerate().take(self.cols[f].cuts.len()) {
            acc.add(bin);
            for &missing_left in sides {
                let left = if missing_left {
                    Stat { g: acc.g + missing.g, h: acc.h + missing.h, n: acc.n + missing.n }
                } else {
                    acc
                };
                let right = total.minus(left);
                if !ok(left) || !ok(right) {
                    continue;
                }
                let (wl, wr) = (self.value(left, bounds), self.value(right, bounds));
                if (self.monotone[f] > 0 && wl > wr) || (self.monotone[f] < 0 && wl < wr) {
                    continue;
                }
                let gain = self.score(left, wl) + self.score(right, wr) - parent;
                if gain > 1e-9 && best.is_none_or(|s| gain > s.gain) {
                    let missing_left = if missing.n > 0.0 { missing_left } else { left.n >= right.n };
                    best =
                        Some(Split { gain, feature: f, bin: b, missing_left, left, left_value: wl, right_value: wr });
                }
            }
        }
        best
    }

    /// Children's bounds after splitting a leaf with bounds `b`: a monotone split puts the
    /// midpoint of the children's values between everything below each of them.
    fn child_bounds(&self, s: &Split, b: Bounds) -> (Bounds, Bounds) {
        let mid = (s.left_value + s.right_value) / 2.0;
        match self.monotone[s.feature] {
            1 => (Bounds { hi: mid, ..b }, Bounds { lo: mid, ..b }),
            -1 => (Bounds { lo: mid, ..b }, Bounds { hi: mid, ..b }),
            _ => (b, b),
        }
    }

    /// Reorders `rows` stably into those the split sends left, then right: each chunk is split
    /// into `scratch` in parallel (lefts from the front, rights from the back), then copied to
    /// its place; returns how many went left.
    fn partition(&self, s: &Split, rows: &mut [u32], scratch: &mut [u32]) -> usize {
        let bins = &self.cols[s.feature].bins;
        let goes_left = |r: u32| match bins[r as usize] {
            MISSING => s.missing_left,
            b => usize::from(b) <= s.bin,
        };
        let scratch = &mut scratch[..rows.len()];
        let lefts: Vec<usize> = rows
            .par_chunks(CHUNK)
            .zip(scratch.par_chunks_mut(CHUNK))
            .map(|(rows, out)| {
                let (mut l, mut r) = (0, out.len());
                for &row in rows {
                    if goes_left(row) {
                        out[l] = row;
                        l += 1;
                    } else {
                        r -= 1;
                        out[r] = row;
                    }
                }
                l
            })
            .collect();
        let n_left = lefts.iter().sum();
        let (mut left_out, mut right_out) = rows.split_at_mut(n_left);
        let mut tasks = Vec::with_capacity(lefts.len());
        for (chunk, &l) in scratch.chunks(CHUNK).zip(&lefts) {
            let (to_left, rest) = std::mem::take(&mut left_out).split_at_mut(l);
            left_out = rest;
            let (to_right, rest) = std::mem::take(&mut right_out).split_at_mut(chunk.len() - l);
            right_out = rest;
            tasks.push((chunk, to_left, to_right));
        }
        tasks.into_par_iter().for_each(|(chunk, to_left, to_right)| {
            let (lefts, rights) = chunk.split_at(to_left.len());
            to_left.copy_from_slice(lefts);
            to_right.iter_mut().zip(rights.iter().rev()).for_each(|(o, &r)| *o = r);
        });
        n_left
    }

    /// Grows one tree on the gradients; adds its outputs to `margin` for the training rows.
    fn grow(&self, grad: &[Gradient], margin: &mut [f64], ws: &mut Workspace) -> Tree {
        let p = &self.params;
        for (i, r) in ws.rows.iter_mut().enumerate() {
            *r = i as u32;
        }
        let hist = self.histogram(None, grad, ws);
        // Every feature's bins (missing included) hold every row once, so the first one's sum is
        // the total.
        let total = hist.iter().take(HIST_WIDTH).fold(Stat::default(), |mut a, &s| {
            a.add(s);
            a
        });
        let mut nodes = vec![Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            default_left: false,
            value: 0.0,
            cover: total.n,
        }];
        let root = Leaf {
            node: 0,
            start: 0,
            len: grad.len(),
            best: self.best_split(&hist, total, UNBOUNDED),
            hist,
            total,
            depth: 0,
            bounds: UNBOUNDED,
        };
        let mut leaves = vec![root];
        let mut done: Vec<Leaf> = Vec::new();
        while leaves.len() + done.len() < p.max_leaves {
            let Some(i) = (0..leaves.len())
                .filter(|&i| leaves[i].best.is_some())
                .max_by(|&a, &b| leaves[a].best.unwrap().gain.total_cmp(&leaves[b].best.unwrap().gain))
            else {
                break;
            };
            let mut leaf = leaves.swap_remove(i);
            let s = leaf.best.expect("chosen for its split");
            let mut rows = std::mem::take(&mut ws.rows);
            let n_left = self.partition(&s, &mut rows[leaf.start..leaf.start + leaf.len], &mut ws.scratch);
            // Build the smaller child's histogram; the larger is the parent's minus it, in place.
            let small_is_left = 2 * n_left <= leaf.len;
            let small_rows = if small_is_left {
                leaf.start..leaf.start + n_left
            } else {
                leaf.start + n_left..leaf.start + leaf.len
            };
            let small = self.histogram(Some(&rows[small_rows]), grad, ws);
            ws.rows = rows;
            let mut large = std::mem::take(&mut leaf.hist);
            large.iter_mut().zip(&small).for_each(|(p, s)| *p = p.minus(*s));
            let (left_hist, right_hist) = if small_is_left { (small, large) } else { (large, small) };

            let (l, r) = (nodes.len(), nodes.len() + 1);
            nodes[leaf.node] = Node {
                feature: s.feature as u32,
                threshold: self.cols[s.feature].cuts[s.bin],
                left: l as u32,
                right: r as u32,
                default_left: s.missing_left,
                value: 0.0,
                cover: leaf.total.n,
            };
            let depth = leaf.depth + 1;
            let (left_bounds, right_bounds) = self.child_bounds(&s, leaf.bounds);
            let children = [
                (leaf.start, n_left, left_hist, s.left, left_bounds),
                (leaf.start + n_left, leaf.len - n_left, right_hist, leaf.total.minus(s.left), right_bounds),
            ];
            for (start, len, hist, total, bounds) in children {
                let node = nodes.len();
                nodes.push(Node {
                    feature: LEAF,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    default_left: false,
                    value: 0.0,
                    cover: total.n,
                });
                let best = if depth < p.max_depth { self.best_split(&hist, total, bounds) } else { None };
                let child = Leaf { node, start, len, hist, total, depth, bounds, best };
                if child.best.is_some() { leaves.push(child) } else { done.push(child) }
            }
        }
        for leaf in leaves.into_iter().chain(done) {
            let v = self.value(leaf.total, leaf.bounds) * p.learning_rate;
            nodes[leaf.node].value = v;
            for &r in &ws.rows[leaf.start..leaf.start + leaf.len] {
                margin[r as usize] += v;
            }
            ws.spare_histograms.push(leaf.hist);
        }
        Tree { nodes }
    }
}

fn log_loss(y: &[f64], margin: &[f64]) -> f64 {
    y.iter()
        .zip(margin)
        .map(|(&y, &z)| {
            let s = if y > 0.5 { -z } else { z };
            s.max(0.0) + (-s.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / y.len() as f64
}

/// Fits on `x`/`y` (labels 0/1) under per-column `monotone` constraints (+1, -1 or 0; empty:
/// none). With `tuning` rows, stops once their log-loss has not improved for
/// `early_stopping_rounds` and keeps the best round; without, runs `max_rounds`.
pub fn fit(
    x: &Columns<'_>,
    y: &[f64],
    tuning: Option<(&Columns<'_>, &[f64])>,
    params: GbmParams,
    monotone: &[i8],
) -> GbmFit {
    let n = x.n_rows();
    assert_eq!(n, y.len());
    let free = vec![0i8; x.values.len()];
    let monotone = if monotone.is_empty() { &free } else { monotone };
    assert_eq!(monotone.len(), x.values.len(), "one constraint per column");
    let w = params.positive_weight;
    let positives = y.iter().sum::<f64>();
    let prevalence = (w * positives / (w * positives + n as f64 - positives)).clamp(1e-6, 1.0 - 1e-6);
    let base_score = (prevalence / (1.0 - prevalence)).ln();
    let booster =
        Booster { params, cols: x.values.par_iter().map(|c| bin_column(c, params.max_bins)).collect(), monotone };
    let mut margin = vec![base_score; n];
    let mut grad = vec![Gradient::default(); n];
    let mut workspace = Workspace {
        rows: vec![0; n],
        scratch: vec![0; n],
        ordered: vec![Gradient::default(); n],
        spare_histograms: Vec::new(),
    };
    let mut trees = Vec::new();
    let mut tuning_margin = tuning.map(|(t, _)| vec![base_score; t.n_rows()]);
    let mut best = (f64::INFINITY, 0usize);
    let mut row = Vec::new();
    for round in 0..params.max_rounds {
        grad.par_iter_mut().zip(margin.par_iter()).zip(y.par_iter()).for_each(|((g, &z), &yi)| {
            let p = 1.0 / (1.0 + (-z).exp());
            let weight = if yi > 0.5 { w } else { 1.0 };
            *g = Gradient { g: (weight * (p - yi)) as f32, h: (weight * (p * (1.0 - p))).max(1e-16) as f32 };
        });
        let tree = booster.grow(&grad, &mut margin, &mut workspace);
        if let (Some((tx, ty)), Some(tm)) = (tuning, tuning_margin.as_mut()) {
            for (r, m) in tm.iter_mut().enumerate() {
                tx.row(r, &mut row);
                *m += tree.predict(&row);
            }
            let loss = log_loss(ty, tm);
            if loss < best.0 - 1e-12 {
                best = (loss, round + 1);
            } else if round + 1 - best.1 >= params.early_stopping_rounds {
                trees.push(tree);
                break;
            }
        }
        trees.push(tree);
    }
    let rounds = if tuning.is_some() { best.1.max(1) } else { trees.len() };
    trees.truncate(rounds);
    GbmFit { ensemble: TreeEnsemble::new(base_score, trees), rounds, best_tuning_log_loss: tuning.map(|_| best.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_agree_with_the_tree_threshold_rule() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 * 0.5).chain([f64::NAN]).collect();
        let col = bin_column(&values, 16);
        assert!(col.cuts.len() <= 15 && !col.cuts.is_empty());
        for (&v, &b) in values.iter().zip(&col.bins) {
            if v.is_nan() {
                assert_eq!(b, MISSING);
                continue;
            }
            for (k, &cut) in col.cuts.iter().enumerate() {
                assert_eq!((b as usize) <= k, v < cut, "value {v} bin {b} cut {k}={cut}");
            }
        }
    }

    #[test]
    fn partition_is_stable_across_chunks() {
        let n = 3 * CHUNK + 123;
        let values = (0..n).map(|i| ((i * 7919) % 10) as f64).collect::<Vec<_>>();
        let booster = Booster { params: GbmParams::default(), cols: vec![bin_column(&values, 255)], monotone: &[0] };
        let split = Split {
            gain: 1.0,
            feature: 0,
            bin: 3,
            missing_left: false,
            left: Stat::default(),
            left_value: 0.0,
            right_value: 0.0,
        };
        // Every other row, so the partition sees a leaf's sparse, ascending rows.
        let mut rows: Vec<u32> = (0..n as u32).step_by(2).collect();
        let mut scratch = vec![0; n];
        let expected: (Vec<u32>, Vec<u32>) = rows.iter().partition(|&&r| values[r as usize] <= 3.0);
        let n_left = booster.partition(&split, &mut rows, &mut scratch);
        assert_eq!(n_left, expected.0.len());
        assert_eq!(rows[..n_left], expected.0[..]);
        assert_eq!(rows[n_left..], expected.1[..]);
    }

    #[test]
    fn one_thread_or_two_grow_the_same_trees() {
        let n = 40_000;
        let mut rng = crate::rng::Rng(11);
        let values: Vec<Vec<f64>> = (0..6)
            .map(|_| (0..n).map(|_| if rng.unit() < 0.05 { f64::NAN } else { rng.normal(0.0, 1.0) }).collect())
            .collect();
        let y: Vec<f64> = (0..n)
            .map(|r| f64::from(u8::from(values[0][r].max(0.0) + values[1][r].abs() > 1.0 + rng.unit())))
            .collect();
        let params =
            GbmParams { max_rounds: 20, max_leaves: 31, max_depth: 8, learning_rate: 0.1, ..Default::default() };
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| fit(&Columns { values: &values }, &y, None, params, &[]).ensemble)
        };
        assert_eq!(on(1), on(2));
    }

    #[test]
    fn learns_a_step_and_routes_missing_values() {
        // y = 1 exactly when x0 > 0 or x0 is missing; x1 is noise.
        let n = 2000;
        let x0: Vec<f64> = (0..n).map(|i| if i % 10 == 0 { f64::NAN } else { (i as f64 / n as f64) - 0.5 }).collect();
        let x1: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64).collect();
        let y: Vec<f64> = x0.iter().map(|&v| if v.is_nan() || v > 0.0 { 1.0 } else { 0.0 }).collect();
        let values = vec![x0, x1];
        let fit = fit(
            &Columns { values: &values },
            &y,
            None,
            GbmParams { max_rounds: 200, learning_rate: 0.2, ..Default::default() },
            &[],
        );
        let m = &fit.ensemble;
        assert!(m.margin(&[0.3, 5.0]) > 2.0);
        assert!(m.margin(&[-0.3, 5.0]) < -2.0);
        assert!(m.margin(&[f64::NAN, 5.0]) > 2.0, "missing follows the learned default");
        assert!(m.trees.iter().all(|t| t.validate(2).is_ok()));
    }

    #[test]
    fn monotone_constraints_hold_everywhere_though_the_data_dips() {
        // Risk rises with x0 overall but with a dip in the middle; x1 interacts. Constrained to
        // increase in x0, every model prediction must be non-decreasing in x0 for any x1.
        let n = 6000;
        let mut rng = crate::rng::Rng(5);
        let mut next = || rng.unit();
        let (mut x0, mut x1, mut y) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (a, b) = (next() * 4.0 - 2.0, next() * 2.0 - 1.0);
            let z = 1.2 * a - 1.5 * (-(a * a) * 4.0).exp() + b * a;
            x0.push(if next() < 0.05 { f64::NAN } else { a });
            x1.push(b);
            y.push(f64::from(u8::from(next() < 1.0 / (1.0 + (-z).exp()))));
        }
        let values = vec![x0, x1];
        let params = GbmParams { max_rounds: 150, learning_rate: 0.1, min_rows_leaf: 20, ..Default::default() };
        let constrained = fit(&Columns { values: &values }, &y, None, params, &[1, 0]).ensemble;
        let free = fit(&Columns { values: &values }, &y, None, params, &[]).ensemble;
        let grid: Vec<f64> = (0..=400).map(|k| -2.2 + 4.4 * k as f64 / 400.0).collect();
        let mut free_violates = false;
        for b in [-1.0, -0.5, 0.0, 0.3, 0.9] {
            let c: Vec<f64> = grid.iter().map(|&a| constrained.margin(&[a, b])).collect();
            assert!(c.windows(2).all(|w| w[1] >= w[0] - 1e-12), "x1 = {b}");
            let f: Vec<f64> = grid.iter().map(|&a| free.margin(&[a, b])).collect();
            free_violates |= f.windows(2).any(|w| w[1] < w[0] - 1e-9);
        }
        assert!(free_violates, "the data has a dip, so the unconstrained model is not monotone");
    }

    #[test]
    fn positive_weights_raise_predicted_risk() {
        let values = vec![(0..2000).map(|i| (i % 100) as f64).collect::<Vec<_>>()];
        let y: Vec<f64> = (0..2000).map(|i| f64::from(u8::from(i % 100 > 80 && i % 3 == 0))).collect();
        let params = GbmParams { max_rounds: 50, learning_rate: 0.1, ..Default::default() };
        let plain = fit(&Columns { values: &values }, &y, None, params, &[]).ensemble;
        let weighted =
            fit(&Columns { values: &values }, &y, None, GbmParams { positive_weight: 5.0, ..params }, &[]).ensemble;
        assert!(weighted.margin(&[90.0]) > plain.margin(&[90.0]) + 1.0);
    }
}
