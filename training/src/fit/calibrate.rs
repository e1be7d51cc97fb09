//! Fitting calibration maps on held-out rows: Platt scaling, isotonic regression, and the
//! intercept shift of recalibration in the large for a new site.

use crate::evaluate::logistic_recalibration;
use carecast_models::calibration::Calibration;

/// Which calibration `carecast train --calibration` fits on the tuning split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The model's own probabilities.
    None,
    /// Platt scaling: a logistic regression of the outcome on the margin (explanations stay exact).
    Platt,
    /// Isotonic regression of the outcome on the margin (explanations on the model's own margin).
    Isotonic,
}

/// Platt scaling: logistic regression of the outcome on the margin.
pub fn platt(y: &[bool], margin: &[f64]) -> Calibration {
    let (intercept, slope) = logistic_recalibration(y, margin, None);
    Calibration::Platt { intercept, slope }
}

/// Isotonic regression by pool-adjacent-violators on rows sorted by margin; tied margins are
/// pooled first, and each final block becomes one knot at its mean margin. Probabilities are kept
/// within [1/2n, 1 - 1/2n]: a risk of exactly 0 or 1 is never a finding from n rows.
pub fn isotonic(y: &[bool], margin: &[f64]) -> Calibration {
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| margin[a].total_cmp(&margin[b]));
    // Blocks of (sum of margins, sum of outcomes, count), merged while they violate monotonicity.
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut block = (0.0, 0.0, 0.0);
        let m0 = margin[idx[i]];
        while i < idx.len() && margin[idx[i]] == m0 {
            block = (block.0 + m0, block.1 + f64::from(u8::from(y[idx[i]])), block.2 + 1.0);
            i += 1;
        }
        blocks.push(block);
        while blocks.len() >= 2 {
            let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            if a.1 / a.2 < b.1 / b.2 {
                break;
            }
            blocks.pop();
            *blocks.last_mut().expect("two blocks") = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
        }
    }
    let floor = 0.5 / y.len() as f64;
    Calibration::Isotonic {
        margins: blocks.iter().map(|b| b.0 / b.2).collect(),
        probabilities: blocks.iter().map(|b| (b.1 / b.2).clamp(floor, 1.0 - floor)).collect(),
        logit_offset: 0.0,
    }
}

/// Recalibration in the large: the shift of log-odds that makes the mean prediction match the
/// observed rate on a new site's rows (`log_odds`: the current calibrated log-odds per row).
pub fn in_the_large(y: &[bool], log_odds: &[f64]) -> f64 {
    logistic_recalibration(y, log_odds, Some(1.0)).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators_and_platt_recovers_a_known_map() {
        let y = [false, true, false, true, true];
        let m = [0.0, 1.0, 2.0, 3.0, 4.0];
        let Calibration::Isotonic { margins, probabilities, .. } = isotonic(&y, &m) else { panic!() };
        // (1: true) and (2: false) violate order and pool to 0.5 at margin 1.5.
        assert_eq!(probabilities, [0.1, 0.5, 0.9], "pooled rates, kept within [1/2n, 1 - 1/2n]");
        assert_eq!(margins, [0.0, 1.5, 3.5]);
        // Outcomes drawn at exactly sigmoid(0.5 + 2 m): Platt finds intercept 0.5 and slope 2.
        let (mut ys, mut ms) = (Vec::new(), Vec::new());
        for k in -30..=30 {
            let z = k as f64 / 20.0;
            let p = 1.0 / (1.0 + (-(0.5 + 2.0 * z)).exp());
            for i in 0..1000 {
                ms.push(z);
                ys.push((i as f64 + 0.5) / 1000.0 < p);
            }
        }
        let Calibration::Platt { intercept, slope } = platt(&ys, &ms) else { panic!() };
        assert!((intercept - 0.5).abs() < 0.01 && (slope - 2.0).abs() < 0.02, "{intercept} {slope}");
        let shifted: Vec<f64> = ms.iter().map(|z| 0.5 + 2.0 * z - 0.3).collect();
        assert!((in_the_large(&ys, &shifted) - 0.3).abs() < 0.01);
    }
}
