//! The estimators on models given as TorchScript modules (`vae_eval::torchscript`), against exact
//! `log p(x)`: the fixtures in `tests/fixtures/torchscript/` were made by `make_fixtures.py` there
//! (PyTorch 2.11), with their answers: a linear-Gaussian model (closed form) and a Bernoulli
//! decoder with a 2-dimensional latent (dense quadrature). No Python runs here.

use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use vae_eval::torchscript::TorchScriptModel;
use vae_eval::{
    ais_from_prior, bdmc, importance_sampling, AisConfig, Error, HmcConfig, IsConfig, JointDensity,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torchscript")
        .join(name)
}

fn answers(model: &str) -> (Tensor, Vec<f64>) {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixture("answers.json")).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(v[model]["x"].clone()).unwrap();
    let log_px: Vec<f64> = serde_json::from_value(v[model]["log_px"].clone()).unwrap();
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let x = Tensor::from_slice(&flat)
        .view([rows.len() as i64, -1])
        .to_kind(Kind::Float);
    (x, log_px)
}

fn load(name: &str, x: &Tensor) -> TorchScriptModel {
    TorchScriptModel::load(&fixture(name), Device::Cpu, None, &x.narrow(0, 0, 2)).unwrap()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn hmc() -> HmcConfig {
    HmcConfig {
        leapfrog_steps: 5,
        step_size: 0.1,
        step_size_max: 3.0,
        ..HmcConfig::default()
    }
}

/// IS with the module's `propose`: the mean `log p̂(x)` over 64 examples is within 3 of its
/// Monte Carlo errors (the replicate-based one, k = 1000 in 10 groups) of the exact mean. The
/// Jensen bias, `−(k/ESS − 1)/(2k)` per example, is below 0.001 nats for these proposals
/// (scale 1.3, and std 0.75 against posterior widths near 0.5), a tenth of the error bar.
fn is_within_3_se(name: &str, model: &str) {
    tch::set_num_threads(1);
    let (x, exact) = answers(model);
    let m = load(name, &x);
    assert_eq!(m.latent_dim(), 2);
    let config = IsConfig {
        num_samples: 1000,
        seed: 1,
        ..IsConfig::default()
    };
    let r = importance_sampling(&m, &x, &config, &mut |_, _| {}).unwrap();
    let err = mean(&r.log_px) - mean(&exact);
    let se = r.nll_mc_stderr_replicates.unwrap();
    eprintln!("{name}: IS error {err:+.4}, Monte Carlo se {se:.4}");
    assert!(err.abs() < 3.0 * se, "{name}: IS off by {err} > 3 x {se}");
}

#[test]
fn is_on_a_linear_gaussian_module_is_within_3_standard_errors() {
    is_within_3_se("linear_gaussian.pt", "linear_gaussian");
}

#[test]
fn is_on_a_bernoulli_module_is_within_3_standard_errors() {
    is_within_3_se("bernoulli.pt", "bernoulli");
}

/// AIS from the module's prior (its own `log_prior` and `sample_prior`), 16 chains of 500 steps:
/// the mean over 64 examples is within 0.05 nats of the quadrature value, and BDMC on data the
/// module simulates brackets `log p(x)` (lower ≤ upper within 3 standard errors of the gap)
/// with a gap below 0.1 nats.
#[test]
fn ais_and_bdmc_on_a_bernoulli_module() {
    tch::set_num_threads(1);
    let (x, exact) = answers("bernoulli");
    let m = load("bernoulli.pt", &x);
    assert_eq!(m.has_prior(), (true, true));
    let config = AisConfig {
        num_chains: 16,
        anneal_steps: 500,
        hmc: hmc(),
        seed: 2,
        ..AisConfig::default()
    };
    let a = ais_from_prior(&m, &x, &config, &mut |_, _| {}).unwrap();
    let err = mean(&a.log_px) - mean(&exact);
    eprintln!("AIS error {err:+.4}");
    assert!(err.abs() < 0.05, "AIS off by {err}");
    let (xs, zs) = vae_eval::simulate(&m, 16, 3).unwrap();
    let b = bdmc(&m, &xs, &zs, &config, &mut |_, _| {}).unwrap();
    eprintln!("BDMC: [{:.4}, {:.4}], gap {:.4}", b.lower, b.upper, b.gap);
    // The bounds are stochastic: lower ≤ upper up to 3 standard errors of their gap.
    let se = b.gap_stderr.unwrap();
    assert!(b.gap > -3.0 * se && b.gap < 0.1, "gap {} (se {se})", b.gap);
    assert!(m.take_failure().is_none());
}

/// The gradient in `z` through the loaded module (libtorch autograd) equals central finite
/// differences in f64 of its `log_joint`; the module computes in f32, so the difference quotient
/// with h = 1e-2 carries rounding of about 1e-5 / 1e-2 = 1e-3 and a truncation error of h²/6
/// times the third derivative (order 1 here): the tolerance is 5e-3 relative.
#[test]
fn gradient_through_the_module_matches_finite_differences() {
    tch::set_num_threads(1);
    let (x, _) = answers("bernoulli");
    let m = load("bernoulli.pt", &x);
    let xb = x.narrow(0, 0, 4);
    let z = Tensor::randn([3, 4, 2], (Kind::Float, Device::Cpu));
    let (_, grad) = m.log_joint_and_grad(&xb, &z);
    let h = 1e-2;
    for d in 0..2 {
        let dz = Tensor::zeros([3, 4, 2], (Kind::Float, Device::Cpu));
        let _ = dz.narrow(2, d, 1).fill_(h);
        let fd = (m.log_joint(&xb, &(&z + &dz)) - m.log_joint(&xb, &(&z - &dz))) / (2.0 * h);
        let g = grad.narrow(2, d, 1).squeeze_dim(2);
        let diff = (&fd - &g).abs().max().double_value(&[]);
        let scale = g.abs().max().double_value(&[]).max(1.0);
        assert!(
            diff < 5e-3 * scale,
            "dimension {d}: {diff} vs scale {scale}"
        );
    }
}

/// A module that breaks the interface is refused at load with the method and what was wrong.
#[test]
fn broken_modules_are_refused_with_the_method_and_the_reason() {
    let (x, _) = answers("linear_gaussian");
    let probe = x.narrow(0, 0, 2);
    let refused = |name: &str, method: &str, want: &str| {
        let e = TorchScriptModel::load(&fixture(name), Device::Cpu, None, &probe).unwrap_err();
        let Error::Module { method: m, .. } = &e else {
            panic!("{name}: {e}")
        };
        let msg = e.to_string();
        eprintln!("{msg}");
        assert_eq!(m, method, "{name}: {msg}");
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(
            msg.contains(name),
            "{name}: the message names the file: {msg}"
        );
    };
    refused(
        "broken_not_torchscript.pt",
        "(loading)",
        "not a TorchScript module",
    );
    refused(
        "broken_newer_version.pt",
        "(loading)",
        "Attempted to read a PyTorch file with version 99",
    );
    refused(
        "broken_no_log_likelihood.pt",
        "log_likelihood",
        "has no `log_likelihood",
    );
    refused(
        "broken_wrong_shape.pt",
        "log_likelihood",
        "expected [2] (one value per row)",
    );
    refused(
        "broken_wrong_dtype.pt",
        "log_likelihood",
        "expected a floating-point one",
    );
    refused("broken_nan.pt", "log_likelihood", "NaN");
    refused("no_such_file.pt", "(loading)", "not a TorchScript module");
    // A latent size that disagrees with the module's.
    let e = TorchScriptModel::load(&fixture("linear_gaussian.pt"), Device::Cpu, Some(3), &probe)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--latent-dim says the latent size is 3, propose says 2"),
        "{e}"
    );
    // No `sample_data`: the model says so, and simulating records the reason.
    let m = load("linear_gaussian.pt", &x);
    assert!(!m.has_sample_data() && m.has_propose());
    assert_eq!(m.has_prior(), (false, false));
}

/// With `propose_from_noise`, IS hands the module the noise it draws for each example from
/// `(seed, index)`: the estimates do not depend on how the examples are chunked (`max_rows`),
/// exactly as for a native model. (The Bernoulli module has only `propose`, which draws its own.)
#[test]
fn propose_from_noise_makes_is_independent_of_chunking() {
    tch::set_num_threads(1);
    let (x, _) = answers("linear_gaussian");
    let m = load("linear_gaussian.pt", &x);
    let run = |max_rows: usize| {
        let config = IsConfig {
            num_samples: 200,
            max_rows: Some(max_rows),
            seed: 4,
            ..IsConfig::default()
        };
        importance_sampling(&m, &x, &config, &mut |_, _| {}).unwrap()
    };
    let (a, b) = (run(200), run(3200));
    for (p, q) in a.log_px.iter().zip(&b.log_px) {
        assert!((p - q).abs() < 1e-5, "{p} vs {q}");
    }
}
