//! Numerics on log-weights, in f64: max-shifted log-sum-exp, effective sample size, means with
//! standard errors.

/// `log Σ_i exp(x_i)`, shifted by the maximum (ORIGINAL D17), in f64.
///
/// An empty slice gives `−inf`; so does a slice of `−inf`s. A `+inf` or NaN entry gives `+inf` or
/// NaN; the estimators reject those before calling this.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return if xs.iter().any(|x| x.is_nan()) {
            f64::NAN
        } else {
            max
        };
    }
    max + xs.iter().map(|&x| (x - max).exp()).sum::<f64>().ln()
}

/// `log( (1/n) Σ_i exp(x_i) )`, the log of the mean weight, nats.
pub fn log_mean_exp(xs: &[f64]) -> f64 {
    log_sum_exp(xs) - (xs.len() as f64).ln()
}

/// Effective sample size `(Σ w)² / Σ w²` of the weights `w_i = exp(x_i)`, in `[1, n]` (0 if every
/// weight is zero).
pub fn effective_sample_size(xs: &[f64]) -> f64 {
    let lse = log_sum_exp(xs);
    if lse == f64::NEG_INFINITY {
        return 0.0;
    }
    let doubled: Vec<f64> = xs.iter().map(|x| 2.0 * x).collect();
    (2.0 * lse - log_sum_exp(&doubled)).exp()
}

/// Delta-method standard error of `log_mean_exp(xs)` as an estimate of `log E[w]`, nats.
///
/// With `p̂ = mean(w)`, `Var(log p̂) ≈ Var(w) / (n E[w]²)`. Estimating `Var(w)` by the sample
/// variance (denominator `n − 1`) and `E[w]` by `p̂` gives `(n / ESS − 1) / (n − 1)`. `None` for
/// `n < 2`. It understates the error when the weights are heavy-tailed (then the ESS is small and
/// should be looked at).
pub fn log_mean_exp_stderr(xs: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return None;
    }
    let ess = effective_sample_size(xs);
    if ess <= 0.0 {
        return None;
    }
    Some(((n / ess - 1.0).max(0.0) / (n - 1.0)).sqrt())
}

/// Mean of `xs` and its standard error `s / √n` (sample standard deviation, denominator `n − 1`).
/// The standard error is `None` for fewer than two values.
pub fn mean_and_stderr(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some((var / n).sqrt()))
}

/// Standard error of the mean of independent per-example estimates with standard errors `ses`:
/// `√(Σ se²) / n`. `None` if any is unknown.
pub fn combined_stderr(ses: &[Option<f64>]) -> Option<f64> {
    let n = ses.len() as f64;
    let mut sum = 0.0;
    for se in ses {
        sum += (*se)?.powi(2);
    }
    Some(sum.sqrt() / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_shift_stable() {
        assert_eq!(log_sum_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY; 3]), f64::NEG_INFINITY);
        // Naive exp would overflow (1000) or underflow (−1000) here.
        let big = log_sum_exp(&[1000.0, 1000.0]);
        assert!((big - (1000.0 + 2f64.ln())).abs() < 1e-12);
        let small = log_mean_exp(&[-1000.0, -1000.0, -1000.0]);
        assert!((small + 1000.0).abs() < 1e-12);
        assert!(log_sum_exp(&[0.0, f64::NAN]).is_nan());
    }

    #[test]
    fn ess_and_stderr() {
        assert!((effective_sample_size(&[0.3; 10]) - 10.0).abs() < 1e-9);
        assert!((effective_sample_size(&[0.0, -1e9, -1e9]) - 1.0).abs() < 1e-9);
        assert_eq!(log_mean_exp_stderr(&[0.0]), None);
        // Equal weights: zero error, up to rounding of n / ESS − 1 (~1e-16, square-rooted).
        assert!(log_mean_exp_stderr(&[0.5; 4]).unwrap() < 1e-7);
        // Weights 1 and e: sample variance of w over mean² checks the closed form.
        let xs = [0.0, 1.0];
        let w = [1.0, 1f64.exp()];
        let mean = (w[0] + w[1]) / 2.0;
        let var = ((w[0] - mean).powi(2) + (w[1] - mean).powi(2)) / 1.0;
        let expected = (var / 2.0).sqrt() / mean;
        assert!((log_mean_exp_stderr(&xs).unwrap() - expected).abs() < 1e-12);
        let (m, se) = mean_and_stderr(&[1.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((se.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(mean_and_stderr(&[1.0]).1, None);
        assert_eq!(combined_stderr(&[Some(3.0), Some(4.0)]), Some(2.5));
        assert_eq!(combined_stderr(&[Some(3.0), None]), None);
    }
}
