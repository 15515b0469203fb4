//! The estimators with a prior other than `N(0, I)`: a linear-Gaussian likelihood under a
//! mixture-of-Gaussians prior ([`MogLinearGaussian`]), whose `log p(x)` is a closed-form mixture.
//!
//! Every tolerance is derived from the estimator's own variance, as in `linear_gaussian.rs`;
//! seeds are fixed, so the outcomes are deterministic.
//!
//! The model: `z ~ Σ_k π_k N(μ_k, diag σ_k²)` with 4 overlapping components in 2 dimensions
//! (means `N(0, 1)`, standard deviations 0.5–1), `x | z ~ N(W z + b, 0.8² I_6)`, `W` and `b`
//! standard normal (seed 1). The prior is not `N(0, I)` but smooth at the likelihood's scale,
//! so the posterior has one mode: with well separated narrow components it has several, and AIS
//! with 32 chains or IS with the Gaussian proposal then need far more work for a sharp test.

use std::cell::Cell;

use tch::{Kind, Tensor};
use vae_eval::analytic::{MogLinearGaussian, Proposal};
use vae_eval::{
    ais, ais_from_prior, bdmc, importance_sampling, simulate, AisConfig, AisResult, HmcConfig,
    IsConfig, JointDensity,
};

/// The moment-matched posterior shifted by 0.3 and widened by 1.3: `scale² = 1.69 > 1/2`, so the
/// importance weights have finite variance (see [`MogLinearGaussian`]).
const SHIFTED: Proposal = Proposal {
    mean_shift: 0.3,
    scale: 1.3,
    full_covariance: true,
};

fn model() -> MogLinearGaussian {
    MogLinearGaussian::random(6, 2, 4, 1.0, 1.0, 0.8, 1, SHIFTED)
}

fn setup() {
    tch::set_num_threads(1);
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation.
fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt()
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

/// HMC settings as in `linear_gaussian.rs`: the original's adaptation with a step-size cap of
/// 3, since near `β = 0` the chains see the wide prior.
fn hmc() -> HmcConfig {
    HmcConfig {
        leapfrog_steps: 5,
        step_size: 0.1,
        step_size_max: 3.0,
        ..HmcConfig::default()
    }
}

/// The error bound for the mean over `B` examples of AIS `log p̂(x) − log p(x)`, from the
/// log-weights' variance (derived in `linear_gaussian.rs`): with `σ²` the pooled variance of the
/// `K` log-weights per example, inflated by 1.3 for its own estimation error, the bias is
/// `≈ (e^{σ²} − 1) / (2K)` and the standard deviation of the mean `≈ √((e^{σ²} − 1) / K) / √B`.
/// Returns `|bias| + 3 sd`.
fn ais_error_bound(r: &AisResult) -> f64 {
    let lw = r.log_weights.as_ref().expect("record_log_weights");
    let k = lw[0].len() as f64;
    let b = lw.len() as f64;
    let pooled = mean(&lw.iter().map(|w| std(w).powi(2)).collect::<Vec<_>>()) * 1.3;
    let rel = pooled.exp_m1();
    rel / (2.0 * k) + 3.0 * (rel / k).sqrt() / b.sqrt()
}

/// The closed form is the integral it claims to be: 2-D quadrature of `p(z) p(x | z)` agrees.
#[test]
fn the_closed_form_is_the_integral() {
    setup();
    let model = model();
    let (x, _) = simulate(&model, 8, 1).unwrap();
    let exact = model.log_px(&x);
    // The integrand decays like the prior: components within |μ| + 9σ < 12 of the origin, so
    // truncation costs below e^{−40}; the spacing 0.02 is a twenty-fifth of the narrowest
    // component's standard deviation (0.5), where the midpoint rule's error is far below 1e-9.
    let (_, means, log_sigmas) = model.prior_parameters();
    let reach = (means.abs() + log_sigmas.exp() * 9.0)
        .max()
        .double_value(&[]);
    assert!(reach < 12.0, "reach {reach}");
    let quad = model.log_px_quadrature(&x, 12.0, 1200).unwrap();
    for (q, e) in quad.iter().zip(&exact) {
        assert!((q - e).abs() < 1e-6, "quadrature {q} vs closed form {e}");
    }
}

/// The model's prior draws have the mixture's mean and covariance: each coordinate's sample mean
/// is within 4 standard errors (σ̂/√N) of `Σ π μ`.
#[test]
fn prior_draws_have_the_mixtures_moments() {
    setup();
    let model = model();
    let n = 100_000;
    let z = {
        let _g = vae_eval::rng_guard();
        tch::manual_seed(11);
        model.sample_prior(n)
    };
    assert_eq!(z.size(), [n, 2]);
    let (lw, means, _) = model.prior_parameters();
    let m = lw.exp().matmul(&means);
    let z = z.to_kind(Kind::Double);
    let sample_mean = z.mean_dim(0, false, Kind::Double);
    let se = z.std_dim(0, true, false) / (n as f64).sqrt();
    let dev = ((sample_mean - m) / se).abs().max().double_value(&[]);
    assert!(dev < 4.0, "{dev} standard errors");
}

#[test]
fn is_with_large_k_is_within_3_standard_errors() {
    setup();
    let model = model();
    let (x, _) = simulate(&model, 16, 2).unwrap();
    let exact = model.log_px(&x);
    let config = IsConfig {
        num_samples: 20_000,
        seed: 3,
        ..IsConfig::default()
    };
    let r = importance_sampling(&model, &x, &config, &mut no_progress()).unwrap();
    // The weights have finite variance, so the delta method applies once the ESS is large.
    assert!(r.ess.iter().all(|&e| e > 500.0), "ess {:?}", r.ess);
    // Each log p̂(x) has Monte Carlo sd se_x and bias ≈ −se_x²/2; examples use independent
    // noise, so the mean error has sd nll_mc_stderr = √(Σ se_x²)/B.
    let se = r.nll_mc_stderr.unwrap();
    let bias = mean(
        &r.log_px_stderr
            .iter()
            .map(|s| s.unwrap().powi(2) / 2.0)
            .collect::<Vec<_>>(),
    );
    let err = -r.nll - mean(&exact);
    eprintln!("IS k=20000, MoG prior: error {err:+.5}, se {se:.5}, bias {bias:.2e}");
    assert!(
        err.abs() <= 3.0 * se + bias,
        "error {err} vs 3 se = {}",
        3.0 * se
    );
    assert!(se < 0.01, "the test should be sharp: se {se}");
    // Per example too: |error| within 4 of its own standard errors on every one of the 16.
    for ((l, e), s) in r.log_px.iter().zip(&exact).zip(&r.log_px_stderr) {
        let s = s.unwrap();
        assert!((l - e).abs() < 4.0 * s + s * s, "{l} vs {e}, se {s}");
    }
}

/// The model seen through its density alone, counting the prior calls, so that the test sees
/// AIS start from the mixture's sampler and differentiate the mixture's density (the trait's
/// default `log_prior_and_grad` and `grad_log_prior` run autograd through `log_prior`).
struct Counting<'a> {
    model: &'a MogLinearGaussian,
    samples: Cell<usize>,
    densities: Cell<usize>,
}

impl JointDensity for Counting<'_> {
    fn latent_dim(&self) -> i64 {
        self.model.latent_dim()
    }
    fn device(&self) -> tch::Device {
        self.model.device()
    }
    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
        self.model.log_joint(x, z)
    }
    fn log_prior(&self, z: &Tensor) -> Tensor {
        self.densities.set(self.densities.get() + 1);
        self.model.log_prior(z)
    }
    fn sample_prior(&self, n: i64) -> Tensor {
        self.samples.set(self.samples.get() + 1);
        self.model.sample_prior(n)
    }
}

#[test]
fn ais_from_the_mixture_prior_converges_to_the_exact_value() {
    setup();
    let model = model();
    let (x, _) = simulate(&model, 32, 2).unwrap();
    let exact = mean(&model.log_px(&x));
    let config = AisConfig {
        num_chains: 32,
        anneal_steps: 1000,
        hmc: hmc(),
        record_log_weights: true,
        seed: 7,
        max_rows: 2048, // one group: one sample_prior call
        ..AisConfig::default()
    };
    let counting = Counting {
        model: &model,
        samples: Cell::new(0),
        densities: Cell::new(0),
    };
    let r = ais_from_prior(&counting, &x, &config, &mut no_progress()).unwrap();
    // One draw of all chains' starts from the mixture, and the mixture's density (value and
    // gradient) at the start and after every leapfrog step: (N − 2) moves × L steps + 1.
    assert_eq!(counting.samples.get(), 1);
    assert_eq!(counting.densities.get(), 998 * 5 + 1);
    // The full model runs the same computation (same defaults for the prior's gradient).
    let full = ais(&model, &x, &config, &mut no_progress()).unwrap();
    assert_eq!(full.log_px, r.log_px);
    let err = -r.nll - exact;
    let bound = ais_error_bound(&r);
    eprintln!("AIS from the MoG prior, N=1000: error {err:+.4}, bound {bound:.4}");
    assert!(bound < 0.05, "derived error bound {bound}");
    assert!(err.abs() < bound, "error {err} vs bound {bound}");
    assert!(r.nll_mean_log_weight >= r.nll);
}

#[test]
fn bdmc_brackets_the_exact_value() {
    setup();
    let model = model();
    // simulate draws z from the mixture (the model's sample_prior): exact posterior samples.
    let (x, z) = simulate(&model, 32, 2).unwrap();
    let exact: Vec<f64> = model.log_px(&x);
    let exact_mean = mean(&exact);
    let config = |anneal_steps| AisConfig {
        num_chains: 8,
        anneal_steps,
        hmc: hmc(),
        seed: 10,
        ..AisConfig::default()
    };
    let short = bdmc(&model, &x, &z, &config(3), &mut no_progress()).unwrap();
    let long = bdmc(&model, &x, &z, &config(200), &mut no_progress()).unwrap();
    for (name, b) in [("N = 3", &short), ("N = 200", &long)] {
        // Each bound may cross the exact mean only by noise, whose sd is estimated from the
        // spread of the per-example errors (the exact values are known) over √B, B = 32.
        let errs = |v: &[f64]| v.iter().zip(&exact).map(|(a, e)| a - e).collect::<Vec<_>>();
        let (lo, hi) = (errs(&b.forward.log_px), errs(&b.reverse.log_px));
        let (sd_lo, sd_hi) = (std(&lo) / 32f64.sqrt(), std(&hi) / 32f64.sqrt());
        eprintln!(
            "BDMC {name}: {:.4} (sd {sd_lo:.4}) <= {exact_mean:.4} <= {:.4} (sd {sd_hi:.4}), gap {:.4}",
            b.lower, b.upper, b.gap
        );
        assert!(
            b.lower <= exact_mean + 3.0 * sd_lo,
            "{name}: lower {}",
            b.lower
        );
        assert!(
            b.upper >= exact_mean - 3.0 * sd_hi,
            "{name}: upper {}",
            b.upper
        );
    }
    // One HMC move leaves a gap of more than a nat; 200 steps close most of it, to within its
    // own noise plus 0.1 nat.
    assert!(short.gap > 1.0, "short gap {}", short.gap);
    assert!(
        long.gap < short.gap / 4.0,
        "gaps {} -> {}",
        short.gap,
        long.gap
    );
    assert!(
        long.gap.abs() < 3.0 * long.gap_stderr.unwrap() + 0.1,
        "gap {}",
        long.gap
    );
}
