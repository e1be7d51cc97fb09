//! Evaluation as clinical prediction papers report it (TRIPOD+AI): discrimination (AUROC with a
//! DeLong 95% CI, AUPRC, ROC and PR curves), overall accuracy (Brier, scaled Brier), calibration
//! (slope, intercept, ICI / E50 / E90, the smoothed and the grouped curve), clinical usefulness
//! (net benefit, decision curve, the threshold table at the risk bands), the same by subgroup, and
//! a paired comparison with a baseline score (e.g. NEWS2) on the same rows.

use crate::fit::Ending;
use carecast_models::package::Metrics;
use serde::{Deserialize, Serialize};

/// Mid-ranks (1-based) of `x`, ties sharing their average rank.
fn mid_ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// DeLong's structural components of one score's AUROC: each positive's share of negatives it
/// outranks (V10) and each negative's share of positives that outrank it (V01).
struct DelongComponents {
    auc: f64,
    v10: Vec<f64>,
    v01: Vec<f64>,
}

/// The fast rank form of Sun & Xu (2014); `None` without both classes.
fn delong_components(y: &[bool], score: &[f64]) -> Option<DelongComponents> {
    let pos: Vec<f64> = y.iter().zip(score).filter(|p| *p.0).map(|p| *p.1).collect();
    let neg: Vec<f64> = y.iter().zip(score).filter(|p| !*p.0).map(|p| *p.1).collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
    let r_all = mid_ranks(&all);
    let r_pos = mid_ranks(&pos);
    let r_neg = mid_ranks(&neg);
    let v10: Vec<f64> = (0..pos.len()).map(|i| (r_all[i] - r_pos[i]) / n).collect();
    let v01: Vec<f64> = (0..neg.len()).map(|j| 1.0 - (r_all[pos.len() + j] - r_neg[j]) / m).collect();
    let auc = v10.iter().sum::<f64>() / m;
    Some(DelongComponents { auc, v10, v01 })
}

/// Sample covariance of two equally long series.
fn covariance(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (a.iter().sum::<f64>() / a.len() as f64, b.iter().sum::<f64>() / b.len() as f64);
    a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / (a.len() as f64 - 1.0).max(1.0)
}

/// AUROC and its DeLong standard error (DeLong et al. 1988; the fast rank form of Sun & Xu 2014).
pub fn auroc_delong(y: &[bool], score: &[f64]) -> (f64, f64) {
    match delong_components(y, score) {
        None => (f64::NAN, f64::NAN),
        Some(c) => {
            let var = covariance(&c.v10, &c.v10) / c.v10.len() as f64 + covariance(&c.v01, &c.v01) / c.v01.len() as f64;
            (c.auc, var.sqrt())
        }
    }
}

/// The standard normal's 97.5% quantile (R's `qnorm(0.975)`): the half-width of a 95% interval in
/// standard errors.
pub const Z_975: f64 = 1.959_963_984_540_054;

/// The 95% interval of an AUROC with standard error `se`, within [0, 1].
pub fn auroc_interval(auroc: f64, se: f64) -> [f64; 2] {
    [(auroc - Z_975 * se).max(0.0), (auroc + Z_975 * se).min(1.0)]
}

/// A model's AUROC against a baseline score's on the same rows, with DeLong's paired test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    pub baseline: String,
    pub baseline_auroc: f64,
    pub baseline_auroc_ci: [f64; 2],
    pub model_auroc: f64,
    /// Model minus baseline, with its 95% CI and two-sided p-value.
    pub difference: f64,
    pub difference_ci: [f64; 2],
    pub p_value: f64,
}

/// DeLong's test for two correlated AUROCs (both scores on the same rows).
pub fn compare_auroc(y: &[bool], model: &[f64], baseline_name: &str, baseline: &[f64]) -> Option<BaselineComparison> {
    let a = delong_components(y, model)?;
    let b = delong_components(y, baseline)?;
    let (m, n) = (a.v10.len() as f64, a.v01.len() as f64);
    let var =
        |p: &DelongComponents, q: &DelongComponents| covariance(&p.v10, &q.v10) / m + covariance(&p.v01, &q.v01) / n;
    let (var_a, var_b, cov) = (var(&a, &a), var(&b, &b), var(&a, &b));
    let diff = a.auc - b.auc;
    let se = (var_a + var_b - 2.0 * cov).max(0.0).sqrt();
    let z = Z_975;
    Some(BaselineComparison {
        baseline: baseline_name.to_string(),
        baseline_auroc: b.auc,
        baseline_auroc_ci: auroc_interval(b.auc, var_b.sqrt()),
        model_auroc: a.auc,
        difference: diff,
        difference_ci: [diff - z * se, diff + z * se],
        p_value: if se > 0.0 {
            2.0 * normal_upper_tail(diff.abs() / se)
        } else if diff == 0.0 {
            1.0
        } else {
            0.0
        },
    })
}

/// P(Z > z) for a standard normal, via erfc (Numerical Recipes' erfc approximation, |error| < 1.2e-7).
fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// Average precision: the area under the precision-recall step curve (as scikit-learn computes it).
pub fn auprc(y: &[bool], score: &[f64]) -> f64 {
    let total_pos = y.iter().filter(|b| **b).count() as f64;
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        // All rows tied at this threshold enter together.
        let mut j = i;
        while j < idx.len() && score[idx[j]] == score[idx[i]] {
            if y[idx[j]] {
                tp += 1.0
            } else {
                fp += 1.0
            }
            j += 1;
        }
        let recall = tp / total_pos;
        ap += (recall - prev_recall) * tp / (tp + fp);
        prev_recall = recall;
        i = j;
    }
    ap
}

pub fn brier(y: &[bool], p: &[f64]) -> f64 {
    y.iter().zip(p).map(|(&y, &p)| (p - f64::from(u8::from(y))).powi(2)).sum::<f64>() / y.len() as f64
}

/// Logistic recalibration `logit P(y) = a + b * lp` by Newton's method. With `slope` fixed at
/// `Some(1.0)` it fits the intercept alone on the offset `lp` (calibration-in-the-large).
pub(crate) fn logistic_recalibration(y: &[bool], lp: &[f64], slope: Option<f64>) -> (f64, f64) {
    let (mut a, mut b) = (0.0, slope.unwrap_or(1.0));
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&yi, &x) in y.iter().zip(lp) {
            let p = 1.0 / (1.0 + (-(a + b * x)).exp());
            let r = f64::from(u8::from(yi)) - p;
            let w = p * (1.0 - p);
            ga += r;
            gb += r * x;
            haa += w;
            hab += w * x;
            hbb += w * x * x;
        }
        let (da, db) = if slope.is_some() {
            (ga / haa, 0.0)
        } else {
            let det = haa * hbb - hab * hab;
            ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det)
        };
        a += da;
        b += db;
        if da.abs() + db.abs() < 1e-12 {
            break;
        }
    }
    (a, b)
}

/// Calibration slope (1 is ideal; below 1, predictions are too extreme) and calibration
/// intercept with the slope fixed at 1 (0 is ideal; positive, risks are underestimated).
pub fn calibration(y: &[bool], margin: &[f64]) -> (f64, f64) {
    let (_, slope) = logistic_recalibration(y, margin, None);
    let (intercept, _) = logistic_recalibration(y, margin, Some(1.0));
    (slope, intercept)
}

/// Smoothed calibration curve: Cleveland's LOWESS without robustness iterations (local linear
/// regression of the outcome on the predicted probability, tricube weights over the nearest `span`
/// share of rows), evaluated at every row, as R's `lowess(p, y, iter = 0)` that `rms::val.prob`
/// uses. The basis of ICI, E50 and E90 (Austin & Steyerberg, Stat Med 2019). Not clamped to
/// [0, 1]: a fit that leaves the range is part of the miscalibration the indices measure.
pub fn smoothed_calibration(y: &[bool], p: &[f64], span: f64) -> Vec<f64> {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let xs: Vec<f64> = order.iter().map(|&i| p[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| f64::from(u8::from(y[i]))).collect();
    let k = ((span * n as f64 + 1e-7).floor() as usize).clamp(2.min(n), n);
    // Fit on a grid of at most 200 anchor rows and interpolate: O(n log n + 200 k).
    let anchors: Vec<usize> = if n <= 200 { (0..n).collect() } else { (0..200).map(|g| g * (n - 1) / 199).collect() };
    let fit_at = |j: usize| -> f64 {
        let x0 = xs[j];
        // The k nearest rows in sorted order form a window around j.
        let (mut lo, mut hi) = (j, j);
        while hi - lo + 1 < k {
            let grow_left = hi == n - 1 || (lo > 0 && x0 - xs[lo - 1] <= xs[hi + 1] - x0);
            if grow_left { lo -= 1 } else { hi += 1 }
        }
        // Rows tied with the window's edge are in it too, as in Cleveland's.
        let h = (x0 - xs[lo]).max(xs[hi] - x0);
        while lo > 0 && x0 - xs[lo - 1] <= 0.999 * h {
            lo -= 1;
        }
        while hi + 1 < n && xs[hi + 1] - x0 <= 0.999 * h {
            hi += 1;
        }
        let (mut sw, mut swx, mut swy, mut swxx, mut swxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in lo..=hi {
            // Cleveland's weights: 1 within 0.1% of the bandwidth, 0 beyond 99.9% of it.
            let r = (xs[i] - x0).abs();
            let w = if r <= 0.001 * h {
                1.0
            } else if r <= 0.999 * h {
                (1.0 - (r / h).powi(3)).powi(3)
            } else {
                0.0
            };
            sw += w;
            swx += w * xs[i];
            swy += w * ys[i];
            swxx += w * xs[i] * xs[i];
            swxy += w * xs[i] * ys[i];
        }
        let denom = sw * swxx - swx * swx;
        if denom.abs() < 1e-12 { swy / sw } else { (swy * swxx - swx * swxy + (sw * swxy - swx * swy) * x0) / denom }
    };
    let fitted: Vec<f64> = anchors.iter().map(|&j| fit_at(j)).collect();
    let mut out = vec![0.0; n];
    let mut a = 0;
    for (rank, &i) in order.iter().enumerate() {
        while a + 1 < anchors.len() && anchors[a + 1] <= rank {
            a += 1;
        }
        out[i] = if a + 1 < anchors.len() && anchors[a + 1] > anchors[a] {
            let (j0, j1) = (anchors[a], anchors[a + 1]);
            let (x0, x1) = (xs[j0], xs[j1]);
            let t = if x1 > x0 { (xs[rank] - x0) / (x1 - x0) } else { 0.0 };
            fitted[a] + t.clamp(0.0, 1.0) * (fitted[a + 1] - fitted[a])
        } else {
            fitted[a]
        };
    }
    out
}

/// Integrated calibration index and the median and 90th percentile of |smoothed observed - predicted|.
pub fn ici_e50_e90(y: &[bool], p: &[f64]) -> (f64, f64, f64) {
    let smooth = smoothed_calibration(y, p, 0.75);
    let mut err: Vec<f64> = smooth.iter().zip(p).map(|(o, e)| (o - e).abs()).collect();
    let ici = err.iter().sum::<f64>() / err.len() as f64;
    err.sort_by(f64::total_cmp);
    // Quantiles by linear interpolation between order statistics (R's type 7, numpy's default).
    let q = |f: f64| {
        let h = f * (err.len() - 1) as f64;
        let (lo, hi) = (h.floor() as usize, (h.ceil() as usize).min(err.len() - 1));
        err[lo] + (h - h.floor()) * (err[hi] - err[lo])
    };
    (ici, q(0.5), q(0.9))
}

/// Net benefit of treating patients at or above `threshold` (Vickers & Elkin 2006), beside treating
/// everyone; treating no one is 0.
pub fn net_benefit(y: &[bool], p: &[f64], threshold: f64) -> (f64, f64) {
    let n = y.len() as f64;
    let odds = threshold / (1.0 - threshold);
    let (mut tp, mut fp) = (0.0, 0.0);
    for (&yi, &pi) in y.iter().zip(p) {
        if pi >= threshold {
            if yi { tp += 1.0 } else { fp += 1.0 }
        }
    }
    let prevalence = y.iter().filter(|b| **b).count() as f64 / n;
    (tp / n - fp / n * odds, prevalence - (1.0 - prevalence) * odds)
}

/// Sensitivity, specificity, PPV and NPV when flagging `p >= threshold` (`None` where undefined,
/// e.g. PPV when no one is flagged).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRow {
    pub threshold: f64,
    pub flagged: f64,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub ppv: Option<f64>,
    pub npv: Option<f64>,
    pub net_benefit: f64,
    pub net_benefit_treat_all: f64,
}

pub fn threshold_row(y: &[bool], p: &[f64], threshold: f64) -> ThresholdRow {
    let (mut tp, mut fp, mut tn, mut fn_) = (0.0, 0.0, 0.0, 0.0);
    for (&yi, &pi) in y.iter().zip(p) {
        match (pi >= threshold, yi) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, false) => tn += 1.0,
            (false, true) => fn_ += 1.0,
        }
    }
    let ratio = |a: f64, b: f64| (a + b > 0.0).then(|| a / (a + b));
    let (nb, all) = net_benefit(y, p, threshold);
    ThresholdRow {
        threshold,
        flagged: (tp + fp) / y.len() as f64,
        sensitivity: ratio(tp, fn_),
        specificity: ratio(tn, fp),
        ppv: ratio(tp, fp),
        npv: ratio(tn, fn_),
        net_benefit: nb,
        net_benefit_treat_all: all,
    }
}

/// Log-odds of a probability, clamped so that 0 and 1 stay finite.
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    (p / (1.0 - p)).ln()
}

/// Every headline metric from labels and predicted probabilities.
pub fn evaluate(y: &[bool], p: &[f64]) -> Metrics {
    let lp: Vec<f64> = p.iter().map(|&p| logit(p)).collect();
    let (auroc, se) = auroc_delong(y, p);
    let [auroc_ci_lower, auroc_ci_upper] = auroc_interval(auroc, se);
    let (calibration_slope, calibration_intercept) = calibration(y, &lp);
    Metrics {
        n: y.len() as u64,
        prevalence: y.iter().filter(|b| **b).count() as f64 / y.len() as f64,
        auroc,
        auroc_ci_lower,
        auroc_ci_upper,
        auprc: auprc(y, p),
        brier: brier(y, p),
        calibration_slope,
        calibration_intercept,
    }
}

/// A point of a curve in the report and the model card's plots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// Keeps at most `max` points, evenly spaced by index, always keeping the first and the last.
fn thin(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max {
        return points;
    }
    (0..max).map(|i| points[i * (points.len() - 1) / (max - 1)]).collect()
}

/// Rows sorted by predicted risk, highest first, grouped into ties: (true positives, false
/// positives) after each group, the basis of the ROC and PR curves.
fn cumulative_counts(y: &[bool], p: &[f64]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let (mut tp, mut fp, mut out) = (0.0, 0.0, Vec::new());
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && p[idx[j]] == p[idx[i]] {
            if y[idx[j]] {
                tp += 1.0
            } else {
                fp += 1.0
            }
            j += 1;
        }
        out.push((tp, fp));
        i = j;
    }
    out
}

/// ROC curve: (1 - specificity, sensitivity) at every distinct threshold, from (0, 0) to (1, 1).
pub fn roc_curve(y: &[bool], p: &[f64], max_points: usize) -> Vec<Point> {
    let pos = y.iter().filter(|b| **b).count() as f64;
    let neg = y.len() as f64 - pos;
    let mut points = vec![Point { x: 0.0, y: 0.0 }];
    points.extend(cumulative_counts(y, p).into_iter().map(|(tp, fp)| Point { x: fp / neg, y: tp / pos }));
    thin(points, max_points)
}

/// Precision-recall curve: (recall, precision) at every distinct threshold.
pub fn pr_curve(y: &[bool], p: &[f64], max_points: usize) -> Vec<Point> {
    let pos = y.iter().filter(|b| **b).count() as f64;
    let points = cumulative_counts(y, p).into_iter().map(|(tp, fp)| Point { x: tp / pos, y: tp / (tp + fp) }).collect();
    thin(points, max_points)
}

/// Observed against predicted risk in groups of equal size (tenths of predicted risk by default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationGroup {
    pub n: u64,
    pub mean_predicted: f64,
    pub observed: f64,
}

pub fn calibration_groups(y: &[bool], p: &[f64], groups: usize) -> Vec<CalibrationGroup> {
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let groups = groups.min(y.len()).max(1);
    (0..groups)
        .map(|g| {
            let rows = &idx[g * idx.len() / groups..(g + 1) * idx.len() / groups];
            let n = rows.len() as f64;
            CalibrationGroup {
                n: rows.len() as u64,
                mean_predicted: rows.iter().map(|&i| p[i]).sum::<f64>() / n,
                observed: rows.iter().filter(|&&i| y[i]).count() as f64 / n,
            }
        })
        .collect()
}

/// The smoothed calibration curve as (predicted, observed) points, in order of predicted risk.
pub fn calibration_curve(y: &[bool], p: &[f64], max_points: usize) -> Vec<Point> {
    let smooth = smoothed_calibration(y, p, 0.75);
    let mut points: Vec<Point> = p.iter().zip(&smooth).map(|(&x, &y)| Point { x, y: y.clamp(0.0, 1.0) }).collect();
    points.sort_by(|a, b| a.x.total_cmp(&b.x));
    thin(points, max_points)
}

/// Net benefit of the model, of treating everyone, at one threshold probability (treating no one is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecisionPoint {
    pub threshold: f64,
    pub model: f64,
    pub treat_all: f64,
}

/// The decision curve over threshold probabilities 1%, 2%, ... up to `max_threshold`.
pub fn decision_curve(y: &[bool], p: &[f64], max_threshold: f64) -> Vec<DecisionPoint> {
    (1..)
        .map(|k| k as f64 / 100.0)
        .take_while(|&t| t <= max_threshold + 1e-9)
        .map(|t| {
            let (model, treat_all) = net_benefit(y, p, t);
            DecisionPoint { threshold: t, model, treat_all }
        })
        .collect()
}

/// Which subgroup each evaluated row belongs to for one variable (e.g. sex, age band).
#[derive(Debug, Clone, PartialEq)]
pub struct SubgroupAssignment {
    pub variable: String,
    /// Levels in display order.
    pub levels: Vec<String>,
    /// Index into `levels` for each row; `None` when unknown for that row.
    pub of_row: Vec<Option<usize>>,
}

/// The headline metrics within one subgroup; discrimination and calibration slope only where the
/// subgroup has enough of both outcomes to estimate them (10 each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupResult {
    pub variable: String,
    pub level: String,
    pub n: u64,
    pub events: u64,
    pub observed: f64,
    pub mean_predicted: f64,
    pub auroc: Option<f64>,
    pub auroc_ci: Option<[f64; 2]>,
    pub brier: f64,
    pub calibration_slope: Option<f64>,
    pub calibration_intercept: Option<f64>,
}

/// Smallest count of each outcome for a subgroup's AUROC and calibration to be reported.
const MIN_OUTCOMES_PER_CLASS: u64 = 10;

pub fn subgroup_results(y: &[bool], p: &[f64], assignment: &SubgroupAssignment) -> Vec<SubgroupResult> {
    (0..assignment.levels.len())
        .filter_map(|level| {
            let rows: Vec<usize> = (0..y.len()).filter(|&r| assignment.of_row[r] == Some(level)).collect();
            if rows.is_empty() {
                return None;
            }
            let ys: Vec<bool> = rows.iter().map(|&r| y[r]).collect();
            let ps: Vec<f64> = rows.iter().map(|&r| p[r]).collect();
            let n = rows.len() as u64;
            let events = ys.iter().filter(|b| **b).count() as u64;
            let enough = events >= MIN_OUTCOMES_PER_CLASS && n - events >= MIN_OUTCOMES_PER_CLASS;
            let m = enough.then(|| evaluate(&ys, &ps));
            Some(SubgroupResult {
                variable: assignment.variable.clone(),
                level: assignment.levels[level].clone(),
                n,
                events,
                observed: events as f64 / n as f64,
                mean_predicted: ps.iter().sum::<f64>() / n as f64,
                auroc: m.as_ref().map(|m| m.auroc),
                auroc_ci: m.as_ref().map(|m| [m.auroc_ci_lower, m.auroc_ci_upper]),
                brier: brier(&ys, &ps),
                calibration_slope: m.as_ref().map(|m| m.calibration_slope),
                calibration_intercept: m.as_ref().map(|m| m.calibration_intercept),
            })
        })
        .collect()
}

/// The full evaluation of one model on one set of rows: `metrics.json` and the model card's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(flatten)]
    pub metrics: Metrics,
    /// 1 - Brier / Brier of predicting the prevalence for everyone.
    pub scaled_brier: f64,
    pub ici: f64,
    pub e50: f64,
    pub e90: f64,
    pub calibration_curve: Vec<Point>,
    pub calibration_groups: Vec<CalibrationGroup>,
    pub roc_curve: Vec<Point>,
    pub pr_curve: Vec<Point>,
    pub decision_curve: Vec<DecisionPoint>,
    pub risk_band_thresholds: Vec<ThresholdRow>,
    pub subgroups: Vec<SubgroupResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineComparison>,
    /// Event data: discrimination at times within the horizon (empty for tables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_dependent_auroc: Vec<TimeDependentAuroc>,
}

/// Discrimination at a time within the horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeDependentAuroc {
    /// When, as a share of the horizon (1: the horizon itself).
    pub at: f64,
    pub cases: u64,
    pub controls: u64,
    /// With DeLong's 95% interval; none without both cases and controls.
    pub auroc: Option<f64>,
    pub auroc_ci: Option<[f64; 2]>,
}

/// AUROC of the score `p` at `at` (a share of the horizon): cases had the outcome by then,
/// controls had not and were still followed or had a competing event first (the
/// cumulative/dynamic definition with competing events among the controls, Blanche, Dartigues
/// & Jacqmin-Gadda 2013); a row censored before `at` is left out.
pub fn time_dependent_auroc(follow_up: &[(f64, Ending)], p: &[f64], at: f64) -> TimeDependentAuroc {
    let (mut y, mut score) = (Vec::new(), Vec::new());
    for (&(time, ending), &p) in follow_up.iter().zip(p) {
        let case = ending == Ending::Outcome && time <= at;
        if case || ending != Ending::Neither || time >= at {
            y.push(case);
            score.push(p);
        }
    }
    let cases = y.iter().filter(|&&c| c).count() as u64;
    let controls = y.len() as u64 - cases;
    let (auroc, auroc_ci) = if cases > 0 && controls > 0 {
        let (auc, se) = auroc_delong(&y, &score);
        (Some(auc), Some(auroc_interval(auc, se)))
    } else {
        (None, None)
    };
    TimeDependentAuroc { at, cases, controls, auroc, auroc_ci }
}

/// Evaluates predicted probabilities `p` against labels `y`, at the given risk-band thresholds,
/// by subgroup, and against a baseline score on the same rows when one is given.
pub fn report(
    y: &[bool],
    p: &[f64],
    thresholds: &[f64],
    subgroups: &[SubgroupAssignment],
    baseline: Option<(&str, &[f64])>,
) -> Report {
    let metrics = evaluate(y, p);
    let (ici, e50, e90) = ici_e50_e90(y, p);
    let max_threshold = thresholds.iter().copied().fold(0.5_f64, f64::max).min(0.99);
    Report {
        scaled_brier: 1.0 - metrics.brier / (metrics.prevalence * (1.0 - metrics.prevalence)),
        metrics,
        ici,
        e50,
        e90,
        calibration_curve: calibration_curve(y, p, 100),
        calibration_groups: calibration_groups(y, p, 10),
        roc_curve: roc_curve(y, p, 200),
        pr_curve: pr_curve(y, p, 200),
        decision_curve: decision_curve(y, p, max_threshold),
        risk_band_thresholds: thresholds.iter().map(|&t| threshold_row(y, p, t)).collect(),
        subgroups: subgroups.iter().flat_map(|s| subgroup_results(y, p, s)).collect(),
        baseline: baseline.and_then(|(name, score)| compare_auroc(y, p, name, score)),
        time_dependent_auroc: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_matches_pairwise_counting_with_ties() {
        let y = [true, false, true, false, false, true, false, true];
        let s = [0.9, 0.1, 0.4, 0.4, 0.35, 0.8, 0.7, 0.4];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..y.len() {
            for j in 0..y.len() {
                if y[i] && !y[j] {
                    pairs += 1.0;
                    wins += if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let (auc, se) = auroc_delong(&y, &s);
        assert!((auc - wins / pairs).abs() < 1e-12);
        assert!(se > 0.0 && se < 0.5);
    }

    #[test]
    fn perfectly_calibrated_margins_have_unit_slope_and_zero_intercept() {
        // Outcomes drawn deterministically at exactly the predicted rates.
        let mut y = Vec::new();
        let mut lp = Vec::new();
        for k in -20..=20 {
            let z = k as f64 / 8.0;
            let p = 1.0 / (1.0 + (-z).exp());
            for i in 0..1000 {
                lp.push(z);
                y.push((i as f64 + 0.5) / 1000.0 < p);
            }
        }
        let (slope, intercept) = calibration(&y, &lp);
        assert!((slope - 1.0).abs() < 0.01, "slope {slope}");
        assert!(intercept.abs() < 0.01, "intercept {intercept}");
        // Doubling the margins makes predictions too extreme: slope near 0.5.
        let doubled: Vec<f64> = lp.iter().map(|z| 2.0 * z).collect();
        assert!((calibration(&y, &doubled).0 - 0.5).abs() < 0.01);
    }

    #[test]
    fn calibration_indices_are_small_when_calibrated_and_large_when_not() {
        // Outcomes at exactly the predicted rates: ICI near 0. Predictions halved: ICI near the gap.
        let (mut y, mut p) = (Vec::new(), Vec::new());
        for k in 1..=19 {
            let pk = k as f64 / 20.0;
            for i in 0..400 {
                p.push(pk);
                y.push((i as f64 + 0.5) / 400.0 < pk);
            }
        }
        let (ici, e50, e90) = ici_e50_e90(&y, &p);
        assert!(ici < 0.01 && e50 < 0.01 && e90 < 0.02, "{ici} {e50} {e90}");
        let halved: Vec<f64> = p.iter().map(|x| x / 2.0).collect();
        let (ici, _, _) = ici_e50_e90(&y, &halved);
        assert!((ici - 0.25).abs() < 0.02, "mean gap is 0.25, ICI {ici}");
    }

    #[test]
    fn net_benefit_and_threshold_table_by_hand() {
        let y = [true, true, false, false, false];
        let p = [0.9, 0.4, 0.6, 0.1, 0.2];
        let row = threshold_row(&y, &p, 0.5);
        assert_eq!((row.sensitivity, row.specificity, row.ppv), (Some(0.5), Some(2.0 / 3.0), Some(0.5)));
        assert!((row.npv.unwrap() - 2.0 / 3.0).abs() < 1e-12 && (row.flagged - 0.4).abs() < 1e-12);
        assert_eq!(threshold_row(&y, &p, 0.95).ppv, None, "no one flagged: PPV undefined");
        // TP 1, FP 1 of 5 at odds 1: 1/5 - 1/5 = 0; treat all: 0.4 - 0.6 = -0.2.
        assert!(row.net_benefit.abs() < 1e-12 && (row.net_benefit_treat_all + 0.2).abs() < 1e-12);
    }

    #[test]
    fn average_precision_of_a_perfect_ranking_is_one() {
        let y = [true, true, false, false];
        assert!((auprc(&y, &[0.9, 0.8, 0.2, 0.1]) - 1.0).abs() < 1e-12);
        assert!((auprc(&y, &[0.1, 0.2, 0.8, 0.9]) - (0.5 * 1.0 / 3.0 + 0.5 * 0.5)).abs() < 1e-12);
    }

    #[test]
    fn paired_delong_agrees_with_the_unpaired_figures_and_detects_a_better_score() {
        // A score and a noisier copy of it: the difference is positive and significant, and each
        // AUROC equals the unpaired computation.
        let mut rng = crate::rng::Rng(7);
        let mut next = || rng.unit();
        let (mut y, mut good, mut noisy) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3000 {
            let z = next() * 4.0 - 2.0;
            y.push(next() < 1.0 / (1.0 + (-2.0 * z).exp()));
            good.push(z);
            noisy.push(z + 3.0 * (next() - 0.5));
        }
        let c = compare_auroc(&y, &good, "noisy", &noisy).unwrap();
        assert!((c.model_auroc - auroc_delong(&y, &good).0).abs() < 1e-12);
        assert!((c.baseline_auroc - auroc_delong(&y, &noisy).0).abs() < 1e-12);
        assert!(c.difference > 0.0 && c.difference_ci[0] > 0.0 && c.p_value < 0.001, "{c:?}");
        // A score against itself: no difference.
        let same = compare_auroc(&y, &good, "same", &good).unwrap();
        assert!(same.difference.abs() < 1e-12 && same.p_value > 0.99);
        assert!((normal_upper_tail(1.959_964) - 0.025).abs() < 1e-6);
    }

    #[test]
    fn curves_run_corner_to_corner_and_subgroups_partition_the_rows() {
        let y = [true, false, true, false, false, true, false, true, false, false];
        let p = [0.9, 0.1, 0.4, 0.4, 0.35, 0.8, 0.7, 0.4, 0.2, 0.05];
        let roc = roc_curve(&y, &p, 200);
        assert_eq!(roc.first(), Some(&Point { x: 0.0, y: 0.0 }));
        assert_eq!(roc.last(), Some(&Point { x: 1.0, y: 1.0 }));
        // Trapezoids under the ROC curve give the AUROC.
        let area: f64 = roc.windows(2).map(|w| (w[1].x - w[0].x) * (w[1].y + w[0].y) / 2.0).sum();
        assert!((area - auroc_delong(&y, &p).0).abs() < 1e-12);
        assert_eq!(pr_curve(&y, &p, 200).last().unwrap().x, 1.0);
        let groups = calibration_groups(&y, &p, 5);
        assert_eq!(groups.iter().map(|g| g.n).sum::<u64>(), 10);
        assert!(groups.windows(2).all(|w| w[0].mean_predicted <= w[1].mean_predicted));
        let by = SubgroupAssignment {
            variable: "half".into(),
            levels: vec!["a".into(), "b".into()],
            of_row: (0..10).map(|r| Some(r % 2)).collect(),
        };
        let subs = subgroup_results(&y, &p, &by);
        assert_eq!(subs.iter().map(|s| s.n).sum::<u64>(), 10);
        assert!(subs.iter().all(|s| s.auroc.is_none()), "too few outcomes for a subgroup AUROC");
        let dc = decision_curve(&y, &p, 0.5);
        assert_eq!(dc.len(), 50);
        assert_eq!(dc[49].model, net_benefit(&y, &p, 0.5).0);
    }
}
