//! Evaluation as clinical prediction papers report it: discrimination (AUROC with a DeLong 95%
//! CI, AUPRC), overall accuracy (Brier) and calibration (slope and intercept on the logit scale).

use carecast_models::package::Metrics;

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

/// AUROC and its DeLong standard error (DeLong et al. 1988; the fast rank form of Sun & Xu 2014).
pub fn auroc_delong(y: &[bool], score: &[f64]) -> (f64, f64) {
    let pos: Vec<f64> = y.iter().zip(score).filter(|p| *p.0).map(|p| *p.1).collect();
    let neg: Vec<f64> = y.iter().zip(score).filter(|p| !*p.0).map(|p| *p.1).collect();
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    if pos.is_empty() || neg.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
    let r_all = mid_ranks(&all);
    let r_pos = mid_ranks(&pos);
    let r_neg = mid_ranks(&neg);
    let v10: Vec<f64> = (0..pos.len()).map(|i| (r_all[i] - r_pos[i]) / n).collect();
    let v01: Vec<f64> = (0..neg.len()).map(|j| 1.0 - (r_all[pos.len() + j] - r_neg[j]) / m).collect();
    let auc = v10.iter().sum::<f64>() / m;
    let var = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0)
    };
    (auc, (var(&v10) / m + var(&v01) / n).sqrt())
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
            if y[idx[j]] { tp += 1.0 } else { fp += 1.0 }
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
fn logistic_recalibration(y: &[bool], lp: &[f64], slope: Option<f64>) -> (f64, f64) {
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

/// Smoothed calibration curve: LOWESS-style local linear regression of the outcome on the predicted
/// probability (tricube weights over the nearest `span` share of rows), evaluated at every row.
/// The basis of ICI, E50 and E90 (Austin & Steyerberg, Stat Med 2019).
pub fn smoothed_calibration(y: &[bool], p: &[f64], span: f64) -> Vec<f64> {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let xs: Vec<f64> = order.iter().map(|&i| p[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| f64::from(u8::from(y[i]))).collect();
    let k = ((span * n as f64).ceil() as usize).clamp(2.min(n), n);
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
        let h = (x0 - xs[lo]).max(xs[hi] - x0).max(1e-12) * 1.000_001;
        let (mut sw, mut swx, mut swy, mut swxx, mut swxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in lo..=hi {
            let w = (1.0 - ((xs[i] - x0).abs() / h).powi(3)).powi(3);
            sw += w;
            swx += w * xs[i];
            swy += w * ys[i];
            swxx += w * xs[i] * xs[i];
            swxy += w * xs[i] * ys[i];
        }
        let denom = sw * swxx - swx * swx;
        let fitted = if denom.abs() < 1e-12 { swy / sw } else { (swy * swxx - swx * swxy + (sw * swxy - swx * swy) * x0) / denom };
        fitted.clamp(0.0, 1.0)
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
    let q = |f: f64| err[((f * (err.len() - 1) as f64).round() as usize).min(err.len() - 1)];
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

/// Sensitivity, specificity, PPV and NPV when flagging `p >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ThresholdRow {
    pub threshold: f64,
    pub flagged: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub ppv: f64,
    pub npv: f64,
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
    let ratio = |a: f64, b: f64| if a + b > 0.0 { a / (a + b) } else { f64::NAN };
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

/// Every headline metric from labels and margins (log-odds).
pub fn evaluate(y: &[bool], margin: &[f64]) -> Metrics {
    let p: Vec<f64> = margin.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect();
    let (auroc, se) = auroc_delong(y, margin);
    let (calibration_slope, calibration_intercept) = calibration(y, margin);
    Metrics {
        n: y.len() as u64,
        prevalence: y.iter().filter(|b| **b).count() as f64 / y.len() as f64,
        auroc,
        auroc_ci_lower: (auroc - 1.959_964 * se).max(0.0),
        auroc_ci_upper: (auroc + 1.959_964 * se).min(1.0),
        auprc: auprc(y, &p),
        brier: brier(y, &p),
        calibration_slope,
        calibration_intercept,
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
                    wins += if s[i] > s[j] { 1.0 } else if s[i] == s[j] { 0.5 } else { 0.0 };
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
        assert_eq!((row.sensitivity, row.specificity, row.ppv), (0.5, 2.0 / 3.0, 0.5));
        assert!((row.npv - 2.0 / 3.0).abs() < 1e-12 && (row.flagged - 0.4).abs() < 1e-12);
        // TP 1, FP 1 of 5 at odds 1: 1/5 - 1/5 = 0; treat all: 0.4 - 0.6 = -0.2.
        assert!(row.net_benefit.abs() < 1e-12 && (row.net_benefit_treat_all + 0.2).abs() < 1e-12);
    }

    #[test]
    fn average_precision_of_a_perfect_ranking_is_one() {
        let y = [true, true, false, false];
        assert!((auprc(&y, &[0.9, 0.8, 0.2, 0.1]) - 1.0).abs() < 1e-12);
        assert!((auprc(&y, &[0.1, 0.2, 0.8, 0.9]) - (0.5 * 1.0 / 3.0 + 0.5 * 0.5)).abs() < 1e-12);
    }
}
