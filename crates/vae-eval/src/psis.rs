//! The Pareto-smoothed importance sampling diagnostic k-hat: the shape of a generalized Pareto
//! distribution fitted to the largest importance weights.
//!
//! Vehtari, Simpson, Gelman, Yao and Gabry, "Pareto smoothed importance sampling", Journal of
//! Machine Learning Research 25(72):1–58, 2024 (arXiv:1507.02646). The fit is Zhang and
//! Stephens' empirical-Bayes estimate, "A new and efficient estimation method for the
//! generalized Pareto distribution", Technometrics 51(3):316–325, 2009, with the weakly
//! informative prior on `k` of Vehtari et al. (appendix C).

/// The PSIS shape estimate k-hat of the importance weights `w_i = exp(log_weights[i])`, computed
/// as arviz 0.20's `psislw(log_weights, reff=1)` computes it (Vehtari et al., "Pareto smoothed
/// importance sampling", JMLR 2024).
///
/// The log-weights are shifted by their maximum. The tail is the `M = ⌈min(n/5, 3√n)⌉` largest;
/// its exceedances `w − u` over the threshold `u`, the `(M+1)`-th largest weight (at least the
/// smallest normal f64), are fitted by Zhang and Stephens' empirical-Bayes method (2009) on a
/// grid of `30 + ⌊√m⌋` values of `b` for `m` exceedances, and the estimate is pulled towards 0.5
/// by a weakly informative prior worth ten observations: `k = (m·k̂ + 10·0.5)/(m + 10)`. Weights
/// tied with the threshold are not in the tail, so `m ≤ M`.
///
/// Reading it (Vehtari et al. §3): below 0.5 the weights have finite variance and the plain IS
/// estimate converges at the usual rate; between 0.5 and 0.7 it converges slowly but usably;
/// above 0.7 the estimate is unreliable (with `n` samples the threshold is `1 − 1/log₁₀ n`, 0.67
/// for `n = 1000`).
///
/// `None` where arviz gives no k-hat:
/// - fewer than two log-weights (arviz raises an index error); any NaN or `+inf`; every weight
///   zero (all `−inf`);
/// - four or fewer weights strictly above the threshold (arviz returns `inf`, "not enough tail
///   samples"): always for `n ≤ 20`, and when the weights are all equal or tied in the tail;
/// - a non-finite fit (exceedances that round to zero; arviz gives NaN).
pub fn pareto_khat(log_weights: &[f64]) -> Option<f64> {
    let n = log_weights.len();
    if n < 2
        || log_weights
            .iter()
            .any(|x| x.is_nan() || *x == f64::INFINITY)
    {
        return None;
    }
    let max = log_weights
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return None;
    }
    let nf = n as f64;
    let tail = (nf / 5.0).min(3.0 * nf.sqrt()).ceil() as usize;
    let mut x: Vec<f64> = log_weights.iter().map(|w| w - max).collect();
    // The (M+1)-th largest of n is at ascending index n − M − 1 (M < n for n ≥ 2).
    let at = n - tail - 1;
    let (_, &mut threshold, above) = x.select_nth_unstable_by(at, f64::total_cmp);
    let cutoff = threshold.max(f64::MIN_POSITIVE.ln());
    let mut tail_x: Vec<f64> = above.iter().copied().filter(|&v| v > cutoff).collect();
    if tail_x.len() <= 4 {
        return None;
    }
    tail_x.sort_unstable_by(f64::total_cmp);
    let exp_cutoff = cutoff.exp();
    let exceedances: Vec<f64> = tail_x.iter().map(|v| v.exp() - exp_cutoff).collect();
    let k = gpd_fit_shape(&exceedances);
    k.is_finite().then_some(k)
}

/// Zhang and Stephens' empirical-Bayes estimate of the generalized Pareto shape `k` of the
/// ascending, positive `exceedances`, with the prior of Vehtari et al. (arviz's `_gpdfit`, whose
/// steps and order this follows so that degenerate inputs give what it gives).
fn gpd_fit_shape(exceedances: &[f64]) -> f64 {
    const PRIOR_BS: f64 = 3.0;
    const PRIOR_K: f64 = 10.0;
    let x = exceedances;
    let n = x.len();
    let nf = n as f64;
    let m = 30 + nf.sqrt() as usize;
    // The sample quartile x[⌊n/4 + 0.5⌋ − 1] and the maximum set the grid's scale.
    let quartile = x[(nf / 4.0 + 0.5) as usize - 1];
    let largest = x[n - 1];
    let b: Vec<f64> = (1..=m)
        .map(|j| {
            let g = 1.0 - (m as f64 / (j as f64 - 0.5)).sqrt();
            g / (PRIOR_BS * quartile) + 1.0 / largest
        })
        .collect();
    let mean_log1p = |bj: f64| x.iter().map(|&xi| (-bj * xi).ln_1p()).sum::<f64>() / nf;
    let k: Vec<f64> = b.iter().map(|&bj| mean_log1p(bj)).collect();
    // The profile log-likelihood of each grid point, and its posterior weight
    // 1 / Σ_j exp(L_j − L_i) under a uniform prior on the grid.
    let len_scale: Vec<f64> = (b.iter().zip(&k))
        .map(|(&bj, &kj)| nf * ((-(bj / kj)).ln() - kj - 1.0))
        .collect();
    let weights: Vec<f64> = len_scale
        .iter()
        .map(|li| 1.0 / len_scale.iter().map(|lj| (lj - li).exp()).sum::<f64>())
        .collect();
    // Drop negligible weights (NaN ones too), then normalise.
    let kept: Vec<(f64, f64)> = (b.iter().zip(&weights))
        .filter(|(_, &w)| w >= 10.0 * f64::EPSILON)
        .map(|(&bj, &w)| (bj, w))
        .collect();
    let total: f64 = kept.iter().map(|(_, w)| w).sum();
    let b_post: f64 = kept.iter().map(|(bj, w)| bj * (w / total)).sum();
    let k_post = mean_log1p(b_post);
    (nf * k_post + PRIOR_K * 0.5) / (nf + PRIOR_K)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_inputs_give_none() {
        assert_eq!(pareto_khat(&[]), None);
        assert_eq!(pareto_khat(&[0.0]), None);
        assert_eq!(pareto_khat(&[0.0; 1000]), None);
        assert_eq!(pareto_khat(&[f64::NEG_INFINITY; 50]), None);
        let ramp: Vec<f64> = (0..20).map(|i| i as f64 / 10.0).collect();
        assert_eq!(pareto_khat(&ramp), None, "n = 20: a tail of 4");
        let ramp: Vec<f64> = (0..21).map(|i| i as f64 / 10.0).collect();
        assert!(pareto_khat(&ramp).is_some(), "n = 21: a tail of 5");
        let mut bad = vec![0.0; 100];
        bad[3] = f64::NAN;
        assert_eq!(pareto_khat(&bad), None);
        bad[3] = f64::INFINITY;
        assert_eq!(pareto_khat(&bad), None);
        // Zero weights are allowed: they sit below the threshold.
        let mut some_zero: Vec<f64> = (0..100).map(|i| (i as f64).sqrt()).collect();
        some_zero[0] = f64::NEG_INFINITY;
        assert!(pareto_khat(&some_zero).is_some());
    }

    /// Exponential exceedances have shape 0, uniform ones −1: the fit lands near them (pulled
    /// towards 0.5 by the prior, by 10/(m + 10) of the distance).
    #[test]
    fn known_shapes() {
        let n = 100_000;
        // Log-weights whose weights' upper tail is exactly exponential: quantiles of Exp(1).
        let expo: Vec<f64> = (0..n)
            .map(|i| (-(1.0 - (i as f64 + 0.5) / n as f64).ln()).ln())
            .collect();
        let k = pareto_khat(&expo).unwrap();
        assert!(k.abs() < 0.05, "exponential tail: {k}");
        // Pareto with shape 0.5: quantiles (1 − p)^(−0.5).
        let pareto: Vec<f64> = (0..n)
            .map(|i| -0.5 * (1.0 - (i as f64 + 0.5) / n as f64).ln())
            .collect();
        let k = pareto_khat(&pareto).unwrap();
        assert!((k - 0.5).abs() < 0.05, "Pareto 0.5 tail: {k}");
    }
}
