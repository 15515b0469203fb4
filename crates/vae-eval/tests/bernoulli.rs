//! The estimators against a Bernoulli decoder with a 2-dimensional latent, whose `log p(x)` is
//! computed here by dense quadrature.
//!
//! The model: `z ~ N(0, I_2)`, `x_p | z ~ Bernoulli(σ(W z + b)_p)` for 16 pixels, `W` entries
//! `N(0, 1.5²)`, `b` standard normal (seed 3). The gradient in `z` comes from autograd (the
//! trait's default), unlike the linear-Gaussian tests, which use a closed form.

use tch::{Kind, Tensor};
use vae_eval::analytic::BernoulliLogistic;
use vae_eval::{
    ais, bdmc, importance_sampling, simulate, AisConfig, AisResult, HmcConfig, IsConfig,
};

/// Proposal standard deviation 0.75: `0.75² > 1/2`, so the importance weights have finite
/// variance (the posterior is bounded by the prior, see `BernoulliLogistic`).
const PROPOSAL_STD: f64 = 0.75;

fn model() -> BernoulliLogistic {
    BernoulliLogistic::random(16, 2, 1.5, PROPOSAL_STD, 3)
}

/// The tensors here are tiny: one intra-op thread is fastest, and avoids OpenMP threads
/// spinning against each other when the machine is busy.
fn setup() {
    tch::set_num_threads(1);
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt()
}

/// Exact `log p(x)` by the midpoint rule: 400² nodes over `[−8, 8]²` (spacing 0.04, against
/// posterior widths of about 0.3), checked against the rule with half the nodes.
fn exact(model: &BernoulliLogistic, x: &Tensor) -> Vec<f64> {
    let fine = model.log_px_quadrature(x, 8.0, 400).unwrap();
    let coarse = model.log_px_quadrature(x, 8.0, 200).unwrap();
    for (f, c) in fine.iter().zip(&coarse) {
        // The midpoint rule on a smooth, rapidly decaying integrand converges faster than any
        // power of the spacing: halving it changes nothing at 1e-9.
        assert!((f - c).abs() < 1e-9, "quadrature not converged: {f} vs {c}");
    }
    fine
}

fn hmc() -> HmcConfig {
    // As in the linear-Gaussian tests: the original's adaptation with a higher cap, because
    // the prior-like early targets want step sizes above 0.5.
    HmcConfig {
        leapfrog_steps: 5,
        step_size: 0.1,
        step_size_max: 3.0,
        ..HmcConfig::default()
    }
}

/// `|bias| + 3 sd` for the mean AIS error over examples; derivation in
/// `tests/linear_gaussian.rs`, `ais_error_bound`.
fn ais_error_bound(r: &AisResult) -> f64 {
    let lw = r.log_weights.as_ref().expect("record_log_weights");
    let k = lw[0].len() as f64;
    let b = lw.len() as f64;
    let pooled = mean(&lw.iter().map(|w| std(w).powi(2)).collect::<Vec<_>>()) * 1.3;
    let rel = pooled.exp_m1();
    rel / (2.0 * k) + 3.0 * (rel / k).sqrt() / b.sqrt()
}

#[test]
fn quadrature_of_a_one_dimensional_model_matches_a_finer_grid() {
    setup();
    // D = 1 goes through the other branch of the grid code.
    let model = BernoulliLogistic::random(10, 1, 1.5, PROPOSAL_STD, 4);
    let (x, _) = simulate(&model, 4, 1).unwrap();
    let a = model.log_px_quadrature(&x, 8.0, 2000).unwrap();
    let b = model.log_px_quadrature(&x, 10.0, 8000).unwrap();
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() < 1e-9);
    }
    let three = BernoulliLogistic::random(10, 3, 1.5, PROPOSAL_STD, 4);
    let x3 = Tensor::zeros([1, 10], (Kind::Float, tch::Device::Cpu));
    assert!(three.log_px_quadrature(&x3, 8.0, 10).is_err());
}

#[test]
fn is_with_large_k_is_within_3_standard_errors() {
    setup();
    let model = model();
    let (x, _) = simulate(&model, 16, 2).unwrap();
    let exact = exact(&model, &x);
    let config = IsConfig {
        num_samples: 20_000,
        seed: 3,
        ..IsConfig::default()
    };
    let r = importance_sampling(&model, &x, &config, &mut |_, _| {}).unwrap();
    assert!(r.ess.iter().all(|&e| e > 1000.0), "ess {:?}", r.ess);
    // As in the linear-Gaussian test: mean error sd = nll_mc_stderr, bias ≈ −mean se²/2.
    let se = r.nll_mc_stderr.unwrap();
    let bias = mean(
        &r.log_px_stderr
            .iter()
            .map(|s| s.unwrap().powi(2) / 2.0)
            .collect::<Vec<_>>(),
    );
    let err = -r.nll - mean(&exact);
    eprintln!(
        "IS k=20000: error {err:+.5}, se {se:.5}; curve {:?}",
        r.iwae.iter().map(|p| p.nll).collect::<Vec<_>>()
    );
    assert!(
        err.abs() <= 3.0 * se + bias,
        "error {err} vs 3 se = {}",
        3.0 * se
    );
    assert!(se < 0.01, "se {se}");
    // The IWAE curve falls where its expected gaps dominate the noise. Here ρ = Var(w)/p² ≈
    // k/ESS − 1 is a few, so E[nll_k] − NLL ≈ ρ/(2k) gives gaps ≥ 0.1 nats for k = 1 → 10 → 100,
    // against noise below 0.02 (sd √(ρ/k)/√B at k = 100, B = 16); from k = 1000 on the gaps
    // (≈ 0.005 ρ) are below the noise, so only the first three points are compared (the
    // linear-Gaussian test resolves the later ones with 256 examples).
    for w in r.iwae[..3].windows(2) {
        assert!(w[1].nll < w[0].nll - 0.05, "{:?}", r.iwae);
    }
    assert!(r.neg_elbo >= r.nll);
}

#[test]
fn ais_from_the_prior_converges_without_touching_parameter_gradients() {
    setup();
    // W tracks gradients, as a trained decoder's weights would.
    let base = model();
    let w = {
        let _rng = vae_eval::rng_guard();
        tch::manual_seed(3);
        let w = Tensor::randn([16, 2], (Kind::Float, tch::Device::Cpu)) * 1.5;
        let b = Tensor::randn([16], (Kind::Float, tch::Device::Cpu));
        (w.set_requires_grad(true), b)
    };
    let model = BernoulliLogistic::new(&w.0, &w.1, PROPOSAL_STD);
    // Same parameters as model(): random() draws W then b from the same seed.
    let (x, _) = simulate(&base, 32, 2).unwrap();
    let exact = exact(&base, &x);
    let config = AisConfig {
        num_chains: 32,
        anneal_steps: 1000,
        hmc: hmc(),
        record_log_weights: true,
        seed: 4,
        ..AisConfig::default()
    };
    let r = ais(&model, &x, &config, &mut |_, _| {}).unwrap();
    // Only gradients in z were computed: the parameters' .grad stays undefined.
    assert!(!w.0.grad().defined());
    let err = -r.nll - mean(&exact);
    let bound = ais_error_bound(&r);
    let a = &r.trace.acceptance;
    let late = mean(&a[a.len() / 2..]);
    eprintln!("AIS prior N=1000: error {err:+.4}, bound {bound:.4}, acceptance {late:.3}");
    assert!(bound < 0.05, "derived error bound {bound}");
    assert!(err.abs() < bound, "error {err} vs bound {bound}");
    assert!(r.nll_mean_log_weight >= r.nll);
    // The adaptive step size holds the acceptance at 0.65 ± 0.05 (derivation in
    // tests/linear_gaussian.rs, ais_from_the_prior_converges_to_the_exact_value).
    assert!((late - 0.65).abs() < 0.05, "acceptance {late}");
}

#[test]
fn bdmc_brackets_the_exact_value_and_the_gap_shrinks() {
    setup();
    let model = model();
    let (x, z) = simulate(&model, 32, 5).unwrap();
    let exact = exact(&model, &x);
    let exact_mean = mean(&exact);
    let config = |anneal_steps| AisConfig {
        num_chains: 8,
        anneal_steps,
        hmc: hmc(),
        seed: 6,
        ..AisConfig::default()
    };
    let short = bdmc(&model, &x, &z, &config(3), &mut |_, _| {}).unwrap();
    let long = bdmc(&model, &x, &z, &config(100), &mut |_, _| {}).unwrap();
    for b in [&short, &long] {
        // Noise of each mean bound: spread of the per-example errors over √B (derivation in
        // tests/linear_gaussian.rs).
        let errs = |v: &[f64]| v.iter().zip(&exact).map(|(a, e)| a - e).collect::<Vec<_>>();
        let sd_lo = std(&errs(&b.forward.log_px)) / 32f64.sqrt();
        let sd_hi = std(&errs(&b.reverse.log_px)) / 32f64.sqrt();
        eprintln!(
            "BDMC: {:.4} (sd {sd_lo:.4}) <= {exact_mean:.4} <= {:.4} (sd {sd_hi:.4}), gap {:.4}",
            b.lower, b.upper, b.gap
        );
        assert!(
            b.lower <= exact_mean + 3.0 * sd_lo,
            "lower {} vs {exact_mean}",
            b.lower
        );
        assert!(
            b.upper >= exact_mean - 3.0 * sd_hi,
            "upper {} vs {exact_mean}",
            b.upper
        );
    }
    // One HMC move: the upper bound is more than a nat off (about 8 sd), so it brackets strictly.
    assert!(exact_mean < short.upper);
    assert!(short.gap > 0.5, "short gap {}", short.gap);
    assert!(
        long.gap < short.gap / 4.0,
        "gaps {} -> {}",
        short.gap,
        long.gap
    );
}
