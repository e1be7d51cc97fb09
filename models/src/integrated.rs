//! Integrated gradients by quadrature (Sundararajan et al. 2017), for smooth models without a
//! closed form (the GRU, the competing-risks incidence): Gauss–Legendre quadrature of exact
//! gradients along the straight line from the training mean to the patient, doubling the nodes
//! until the contributions add up to the margin minus the background's margin to within
//! [`COMPLETENESS`]. Whatever error is left is reported with every score as its additivity error.

/// Target for |Σ contributions − (margin − background margin)|.
pub const COMPLETENESS: f64 = 1e-9;
const FIRST_NODES: usize = 16;
const MAX_NODES: usize = 256;

/// Integrated gradients from `background` to `x` into `phi`, one value per column, for a model
/// whose margin rises by `target` along the way; `gradient(point, grad)` writes the margin's
/// gradient at `point`.
pub(crate) fn gradients(
    background: &[f64],
    x: &[f64],
    target: f64,
    phi: &mut [f64],
    mut gradient: impl FnMut(&[f64], &mut [f64]),
) {
    let direction: Vec<f64> = x.iter().zip(background).map(|(a, b)| a - b).collect();
    let (mut grad, mut point) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let mut nodes = FIRST_NODES;
    loop {
        phi.fill(0.0);
        for (t, weight) in gauss_legendre(nodes) {
            for ((p, b), d) in point.iter_mut().zip(background).zip(&direction) {
                *p = b + t * d;
            }
            gradient(&point, &mut grad);
            for ((p, g), d) in phi.iter_mut().zip(&grad).zip(&direction) {
                *p += weight * g * d;
            }
        }
        if (phi.iter().sum::<f64>() - target).abs() <= COMPLETENESS || nodes >= MAX_NODES {
            return;
        }
        nodes *= 2;
    }
}

/// Gauss–Legendre nodes and weights on [0, 1] (Newton's method on the Legendre polynomial):
/// exact for polynomials of degree < 2n, and converging fast on smooth integrands.
pub(crate) fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            let mut derivative = 1.0;
            for _ in 0..100 {
                let (mut p0, mut p1) = (1.0, x);
                for k in 2..=n {
                    let k = k as f64;
                    (p0, p1) = (p1, ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k);
                }
                derivative = n as f64 * (x * p1 - p0) / (x * x - 1.0);
                let dx = p1 / derivative;
                x -= dx;
                if dx.abs() < 1e-15 {
                    break;
                }
            }
            let weight = 2.0 / ((1.0 - x * x) * derivative * derivative);
            ((1.0 - x) / 2.0, weight / 2.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in [1, 4, 16, 64] {
            let rule = gauss_legendre(n);
            assert!((rule.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-13);
            let degree = 2 * n - 1;
            let integral = rule.iter().map(|(t, w)| w * t.powi(degree as i32)).sum::<f64>();
            assert!((integral - 1.0 / (degree as f64 + 1.0)).abs() < 1e-12, "n {n}: {integral}");
        }
    }
}
