//! The ELBO that `Vae` assembles equals the formula of ORIGINAL §4, recomputed here in f64 from
//! the networks' raw outputs.

use tch::{nn, Device, Kind, Tensor};
use vae_flows::FlowConfig;
use vae_model::{Likelihood, ModelConfig, Vae};
use vae_nets::{DecoderConfig, EncoderConfig};

fn tiny(flow: bool, likelihood: Likelihood) -> ModelConfig {
    ModelConfig {
        latent: 4,
        encoder: EncoderConfig::mlp(vec![32]),
        decoder: DecoderConfig::mlp(vec![32]),
        flow: flow.then(|| FlowConfig {
            layers: 2,
            hidden: vec![16],
            context_size: 16,
            ..Default::default()
        }),
        likelihood,
        ..Default::default()
    }
}

fn v(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Randomises every variable (weights and BN statistics), so the test does not run at init.
fn perturb(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            // Relative noise keeps activations in a sane range; an additive part moves the zeros
            // (biases, BN shifts, running means) too.
            let noise = t.randn_like();
            if name.ends_with("running_var") {
                t.copy_(&(noise.abs() * 0.5 + 0.5));
            } else {
                let scaled = &t * &noise * 0.3 + noise * 0.05;
                let _ = t.g_add_(&scaled);
            }
        }
    });
}

fn check(flow: bool) {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let vae = Vae::new(&vs.root(), &tiny(flow, Likelihood::Logits)).unwrap();
    perturb(&vs);
    let x = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu))
        .gt(0.5)
        .to_kind(Kind::Float);
    let eps = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
    let terms = vae.elbo_terms_with_noise(&x, &eps, false);

    // Recompute from the parts: encoder, flow, decoder outputs, then §4.1/§4.2 by hand.
    let (mu, log_sigma, ctx) = vae.encode(&x, false);
    let z0 = &mu + log_sigma.exp() * &eps;
    let (zt, log_det) = vae.flow(&z0, ctx.as_ref(), false);
    let logits = v(&vae.decode(&zt, false));
    let (xs, mu, ls, eps, zt, log_det) =
        (v(&x), v(&mu), v(&log_sigma), v(&eps), v(&zt), v(&log_det));
    for b in 0..3 {
        let rec: f64 = (0..784)
            .map(|i| {
                let (l, xi) = (logits[b * 784 + i], xs[b * 784 + i]);
                // −log Bernoulli(x | σ(l)) = softplus(l) − x l, softplus computed stably.
                l.max(0.0) + (-l.abs()).exp().ln_1p() - xi * l
            })
            .sum();
        let kl: f64 = (0..4)
            .map(|d| {
                let k = b * 4 + d;
                let z0 = mu[k] + ls[k].exp() * eps[k];
                let log_q0 = -ls[k] - (z0 - mu[k]).powi(2) / (2.0 * (2.0 * ls[k]).exp());
                let log_p = -zt[k].powi(2) / 2.0;
                log_q0 - log_p
            })
            .sum::<f64>()
            - log_det[b];
        let (got_rec, got_kl) = (v(&terms.rec)[b], v(&terms.kl)[b]);
        assert!(
            (got_rec - rec).abs() < 1e-3 * rec.abs().max(1.0),
            "rec {got_rec} vs {rec}"
        );
        assert!(
            (got_kl - kl).abs() < 1e-4 * kl.abs().max(1.0),
            "kl {got_kl} vs {kl}"
        );
    }
    if flow {
        assert!(
            log_det.iter().any(|&l| l.abs() > 1e-3),
            "a perturbed flow has a non-zero log-det"
        );
    }
}

#[test]
fn elbo_matches_the_formula_without_flow() {
    check(false);
}

#[test]
fn elbo_matches_the_formula_with_flow() {
    check(true);
}

#[test]
fn clipped_likelihood_agrees_with_logits_away_from_saturation() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let exact = Vae::new(&vs.root(), &tiny(false, Likelihood::Logits)).unwrap();
    let vs2 = nn::VarStore::new(Device::Cpu);
    let clipped = Vae::new(&vs2.root(), &tiny(false, Likelihood::ClippedProbabilities)).unwrap();
    let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu))
        .gt(0.5)
        .to_kind(Kind::Float);
    let logits = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    let a = exact.reconstruction_loss(&logits, &x);
    let b = clipped.reconstruction_loss(&logits, &x);
    assert!((a - b).abs().max().double_value(&[]) < 1e-3);
    // Saturated and wrong: the clipped form pays 23.03 nats per pixel, the exact form 100.
    let wrong = Tensor::full([1, 1, 28, 28], -100.0, (Kind::Float, Device::Cpu));
    let ones = Tensor::ones([1, 1, 28, 28], (Kind::Float, Device::Cpu));
    let c = clipped
        .reconstruction_loss(&wrong, &ones)
        .double_value(&[0]);
    assert!((c - 784.0 * 1e10f64.ln()).abs() < 0.5, "{c}");
    let e = exact.reconstruction_loss(&wrong, &ones).double_value(&[0]);
    assert!((e - 78_400.0).abs() < 1.0, "{e}");
}
