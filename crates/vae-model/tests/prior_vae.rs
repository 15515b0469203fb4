//! The configured prior inside the VAE (PRIORS §6): `model.prior` parses and is checked by name,
//! the ELBO's KL uses the prior's full log-density (and a prior equal to `N(0, I)` gives the
//! standard normal's numbers), and the estimators' view of the VAE uses the prior for
//! `log p(z)`, its gradient and its draws.

use tch::{nn, Device, Kind, Tensor};
use vae_eval::{AisConfig, AmortizedProposal, IsConfig, JointDensity};
use vae_model::{
    ExperimentConfig, LatentPrior, ModelConfig, PriorConfig, PriorKind, Vae, VaeLatentModel,
};

/// The tests draw from tch's process-wide generator after seeding it: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// A tiny flow-VAE (latent 4, MLPs of 32, a 2-step IAF) with the prior `prior` (JSON).
fn tiny(prior: serde_json::Value) -> ModelConfig {
    let mut cfg = serde_json::json!({
        "latent": 4,
        "encoder": {"type": "mlp", "hidden": [32]},
        "decoder": {"type": "mlp", "hidden": [32]},
        "flow": {"layers": 2, "hidden": [16], "context_size": 16},
    });
    if !prior.is_null() {
        cfg["prior"] = prior;
    }
    serde_json::from_value(cfg).unwrap()
}

fn v(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Randomises every variable (weights and BN statistics) with a seeded generator, in name order,
/// so that two stores with the same variables get the same values.
fn perturb(vs: &nn::VarStore, seed: i64) {
    tch::manual_seed(seed);
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut t) in vars {
            let noise = t.randn_like();
            if name.ends_with("running_var") {
                t.copy_(&(noise.abs() * 0.5 + 0.5));
            } else if name.starts_with("prior.") && name.ends_with("log_sigmas") {
                t.copy_(&(noise * 0.3 - 0.3));
            } else {
                let scaled = &t * &noise * 0.3 + noise * 0.05;
                let _ = t.g_add_(&scaled);
            }
        }
    });
}

/// Copies every variable that `from` also has into `to` (the priors' own variables stay).
fn copy_shared(from: &nn::VarStore, to: &nn::VarStore) {
    let src = from.variables();
    tch::no_grad(|| {
        for (name, mut t) in to.variables() {
            if let Some(s) = src.get(&name) {
                t.copy_(s);
            }
        }
    });
}

/// A VAE with `prior`, every variable perturbed, and the variables it shares with the standard
/// normal VAE of the same seed equal to that one's.
fn vae_with(prior: serde_json::Value) -> (nn::VarStore, Vae) {
    tch::manual_seed(10);
    let reference = nn::VarStore::new(Device::Cpu);
    let _ = Vae::new(&reference.root(), &tiny(serde_json::Value::Null)).unwrap();
    perturb(&reference, 11);
    let vs = nn::VarStore::new(Device::Cpu);
    let vae = Vae::new(&vs.root(), &tiny(prior)).unwrap();
    perturb(&vs, 12);
    copy_shared(&reference, &vs);
    (vs, vae)
}

fn images(n: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([n, 1, 28, 28], (Kind::Float, Device::Cpu))
        .gt(0.5)
        .to_kind(Kind::Float)
}

fn non_normal_priors() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("mog", serde_json::json!({"kind": "mog", "components": 3})),
        (
            "vampprior",
            serde_json::json!({"kind": "vampprior", "pseudo_inputs": 6}),
        ),
        (
            "flow",
            serde_json::json!({"kind": "flow", "layers": 2, "hidden": [8, 8]}),
        ),
    ]
}

/// The KL keeps the cancelled form for `N(0, I)` and the full constants otherwise: a mixture of
/// one standard normal component, and the flow prior at its initial (identity) values, are
/// `N(0, I)`, and give the standard normal VAE's terms up to f32 rounding.
#[test]
fn a_prior_equal_to_the_standard_normal_gives_its_elbo() {
    let _serial = serial();
    tch::set_num_threads(1);
    let (_vs0, standard) = vae_with(serde_json::Value::Null);
    let x = images(5, 1);
    let eps = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
    let want = standard.elbo_terms_with_noise(&x, &eps, false);
    for prior in [
        serde_json::json!({"kind": "mog", "components": 1}),
        serde_json::json!({"kind": "flow", "layers": 2}),
    ] {
        let (vs, vae) = vae_with(prior.clone());
        // Reset the prior to N(0, I): zero means, log-std and logits; zero MADE heads.
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                let mixture = ["prior.means", "prior.log_sigmas", "prior.logits"];
                let head = name.contains(".m.") || name.contains(".s.");
                if mixture.contains(&name.as_str()) || (name.starts_with("prior.") && head) {
                    let _ = t.zero_();
                }
            }
        });
        let got = vae.elbo_terms_with_noise(&x, &eps, false);
        assert_eq!(v(&got.rec), v(&want.rec), "{prior}");
        // The constants Σ_d ½ ln 2π = 3.68 nats are added to both log q0 and log p: f32 rounding
        // of terms of tens of nats.
        let d = max_abs_diff(&got.kl, &want.kl);
        assert!(d < 1e-4, "{prior}: KL differs by {d}");
    }
}

/// For each other prior, the KL is `log q0(z0) − log |det ∂zT/∂z0| − log p(zT)` with every
/// constant, recomputed here in f64 from the parts.
#[test]
fn the_kl_is_log_q_minus_the_priors_log_density() {
    let _serial = serial();
    tch::set_num_threads(1);
    for (name, prior) in non_normal_priors() {
        let (_vs, vae) = vae_with(prior);
        let x = images(3, 2);
        let eps = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let terms = tch::no_grad(|| vae.elbo_terms_with_noise(&x, &eps, false));
        let (mu, log_sigma, ctx) = tch::no_grad(|| vae.encode(&x, false));
        let z0 = &mu + log_sigma.exp() * &eps;
        let (zt, log_det) = tch::no_grad(|| vae.flow(&z0, ctx.as_ref(), false));
        let log_p = tch::no_grad(|| vae.prior_density().log_prob(&zt));
        let (ls, e, ld, lp) = (v(&log_sigma), v(&eps), v(&log_det), v(&log_p));
        for (b, kl) in v(&terms.kl).iter().enumerate() {
            let log_q0: f64 = (0..4)
                .map(|d| -ls[b * 4 + d] - 0.5 * e[b * 4 + d].powi(2) - 0.5 * LN_2PI)
                .sum();
            let want = log_q0 - ld[b] - lp[b];
            assert!(
                (kl - want).abs() < 1e-4 * want.abs().max(1.0),
                "{name}, example {b}: KL {kl} vs {want}"
            );
        }
        // The prior has gradients in training: every prior variable gets one from the loss.
        let loss = vae.elbo_terms(&x, true).neg_elbo().mean(Kind::Float);
        loss.backward();
        for (var, t) in _vs.variables() {
            if var.starts_with("prior.") {
                assert!(t.grad().defined(), "{name}: {var} has no gradient");
            }
        }
    }
}

/// What the estimators see: `log p(z)`, its gradient and the draws come from the configured
/// prior; `log p(x, z) − log p(z)` is the likelihood whatever the prior; and one importance
/// weight is the ELBO's single-sample estimate with the same noise.
#[test]
fn the_latent_model_uses_the_configured_prior() {
    let _serial = serial();
    tch::set_num_threads(1);
    let (_vs0, standard) = vae_with(serde_json::Value::Null);
    let x = images(3, 3);
    let z = Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu));
    let base = VaeLatentModel::new(&standard, Device::Cpu);
    let log_lik = tch::no_grad(|| base.log_joint(&x, &z) - base.log_prior(&z));
    for (name, prior) in non_normal_priors() {
        let (_vs, vae) = vae_with(prior);
        let model = VaeLatentModel::new(&vae, Device::Cpu);
        tch::no_grad(|| {
            let lp = model.log_prior(&z);
            let direct = vae.prior_density().log_prob(&z);
            assert!(max_abs_diff(&lp, &direct) < 1e-5, "{name}: log_prior");
            // Not the standard normal's.
            let sn = vae_eval::model::standard_normal_log_density(&z);
            assert!(max_abs_diff(&lp, &sn) > 0.1, "{name}: prior is N(0, I)?");
            let lik = model.log_joint(&x, &z) - &lp;
            assert!(max_abs_diff(&lik, &log_lik) < 1e-3, "{name}: likelihood");
        });
        // The gradient by autograd, against central differences in f32 with h = 1e-3. With this
        // VAE's narrow VampPrior components (σ ≈ e^{−3}) the log-densities are hundreds of nats and
        // the responsibilities switch within a few σ, so rounding (ε |f| / h ≈ 3e-2 absolute, 1e-4
        // relative to gradients of hundreds) and truncation leave errors of order 1e-3 relative;
        // 1e-2 relative to 1 + |∂| allows for them, while a gradient of any other prior (the
        // standard normal's −z, say) would be off by order 1.
        let (value, grad) = tch::no_grad(|| model.log_prior_and_grad(&z));
        assert!(!grad.requires_grad() && !value.requires_grad());
        let alone = tch::no_grad(|| model.grad_log_prior(&z));
        assert!(max_abs_diff(&alone, &grad) < 1e-6, "{name}: grad_log_prior");
        for d in 0..4 {
            let h = 1e-3;
            let step = Tensor::zeros([4], (Kind::Float, Device::Cpu)).index_fill(
                0,
                &Tensor::from_slice(&[d]),
                h,
            );
            let fd = tch::no_grad(|| {
                (model.log_prior(&(&z + &step)) - model.log_prior(&(&z - &step))) / (2.0 * h)
            });
            let g = grad.select(2, d).to_kind(Kind::Double);
            let err = ((fd.to_kind(Kind::Double) - &g).abs() / (g.abs() + 1.0))
                .max()
                .double_value(&[]);
            assert!(
                err < 1e-2,
                "{name}: ∂/∂z_{d} off by {err} (relative to 1 + |∂|)"
            );
        }
        // Draws: the prior's sampler, on the model's device and kind.
        tch::manual_seed(4);
        let s = tch::no_grad(|| model.sample_prior(500));
        assert_eq!(s.size(), [500, 4]);
        assert_eq!(s.kind(), Kind::Float);
        assert!(v(&s).iter().all(|a| a.is_finite()));
        tch::manual_seed(4);
        let again = tch::no_grad(|| vae.prior_density().sample(500));
        assert_eq!(
            v(&s),
            v(&again),
            "{name}: sample_prior is the prior's sampler"
        );
        // One importance weight with noise eps is the ELBO's estimate with the same eps.
        let eps = Tensor::randn([1, 3, 4], (Kind::Float, Device::Cpu));
        let log_w = tch::no_grad(|| {
            let post = model.encode(&x);
            let (zs, log_q) = model.sample_posterior(&post, &eps);
            model.log_joint(&x, &zs) - log_q
        });
        let elbo = tch::no_grad(|| {
            -vae.elbo_terms_with_noise(&x, &eps.squeeze_dim(0), false)
                .neg_elbo()
        });
        let d = max_abs_diff(&log_w.squeeze_dim(0), &elbo);
        assert!(d < 1e-3, "{name}: log w vs ELBO differ by {d}");
    }
}

/// IS, AIS and BDMC run on a VAE with each prior (short settings) and give finite numbers, AIS
/// starting from the prior's draws.
#[test]
fn the_estimators_run_with_every_prior() {
    let _serial = serial();
    tch::set_num_threads(1);
    let x = images(3, 5);
    for (name, prior) in non_normal_priors() {
        let (_vs, vae) = vae_with(prior);
        let model = VaeLatentModel::new(&vae, Device::Cpu);
        let is = vae_eval::importance_sampling(
            &model,
            &x,
            &IsConfig {
                num_samples: 20,
                ..Default::default()
            },
            &mut |_, _| {},
        )
        .unwrap();
        let ais = AisConfig {
            num_chains: 4,
            anneal_steps: 20,
            ..Default::default()
        };
        let a = vae_eval::ais(&model, &x, &ais, &mut |_, _| {}).unwrap();
        let (xs, zs) = vae_eval::simulate(&model, 3, 1).unwrap();
        let b = vae_eval::bdmc(&model, &xs, &zs, &ais, &mut |_, _| {}).unwrap();
        eprintln!(
            "{name}: IS k=20 NLL {:.2}, AIS NLL {:.2}, BDMC [{:.2}, {:.2}]",
            is.nll, a.nll, b.lower, b.upper
        );
        for n in [is.nll, a.nll, b.lower, b.upper] {
            assert!(n.is_finite(), "{name}: {n}");
        }
    }
}

#[test]
fn prior_configs_parse_and_bad_ones_are_refused_by_name() {
    let _serial = serial();
    // No `prior` key: the standard normal, and the default is not written back.
    let m: ModelConfig = serde_json::from_value(serde_json::json!({"latent": 8})).unwrap();
    assert_eq!(m.prior, PriorConfig::default());
    assert_eq!(m.prior.kind, PriorKind::StandardNormal);
    let text = serde_json::to_string(&ModelConfig::default()).unwrap();
    assert!(!text.contains("prior"), "{text}");
    // Every kind parses, with its settings; a non-default prior is written and read back.
    for (json, kind) in [
        (r#"{"kind": "standard_normal"}"#, PriorKind::StandardNormal),
        (r#"{"kind": "mog", "components": 3}"#, PriorKind::Mog),
        (
            r#"{"kind": "vampprior", "pseudo_inputs": 7}"#,
            PriorKind::VampPrior,
        ),
        (
            r#"{"kind": "flow", "layers": 2, "hidden": [16, 16]}"#,
            PriorKind::Flow,
        ),
    ] {
        let p: PriorConfig = serde_json::from_str(json).unwrap();
        assert_eq!(p.kind, kind);
        assert_eq!(p.kind.to_string(), json.split('"').nth(3).unwrap());
        let mut m = ModelConfig {
            latent: 8,
            prior: p.clone(),
            ..Default::default()
        };
        m.flow = None;
        let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        ExperimentConfig {
            model: m,
            ..Default::default()
        }
        .validate()
        .unwrap();
    }
    let p: PriorConfig = serde_json::from_str(r#"{"kind": "mog"}"#).unwrap();
    assert_eq!(p.components, 10);
    assert_eq!(p.flow_hidden(8), [32, 32]);
    // Unknown kinds and keys are refused, listing what is valid.
    let err = serde_json::from_str::<PriorConfig>(r#"{"kind": "gaussian"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown variant `gaussian`")
            && err.contains("`standard_normal`, `mog`, `vampprior`, `flow`"),
        "{err}"
    );
    let err = serde_json::from_str::<PriorConfig>(r#"{"kind": "mog", "component": 3}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown field `component`") && err.contains("`components`"),
        "{err}"
    );
    // Bad settings name the field, the value and what is valid.
    let check = |prior: serde_json::Value, latent: i64, field: &str, value: &str| {
        let mut cfg = ExperimentConfig::default();
        cfg.model.latent = latent;
        cfg.model.prior = serde_json::from_value(prior.clone()).unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{field}` = {value}")) && err.contains("expected"),
            "{prior}: {err}"
        );
        // Vae::new refuses it too, with the same message.
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = tiny(prior.clone());
        m.latent = latent;
        let err2 = Vae::new(&vs.root(), &m).unwrap_err().to_string();
        assert_eq!(err2, err, "{prior}");
    };
    check(
        serde_json::json!({"kind": "mog", "components": 0}),
        4,
        "model.prior.components",
        "0",
    );
    check(
        serde_json::json!({"kind": "vampprior", "pseudo_inputs": 0}),
        4,
        "model.prior.pseudo_inputs",
        "0",
    );
    check(
        serde_json::json!({"kind": "vampprior", "pseudo_inputs": 100000}),
        4,
        "model.prior.pseudo_inputs",
        "100000",
    );
    check(
        serde_json::json!({"kind": "flow", "layers": 0}),
        4,
        "model.prior.layers",
        "0",
    );
    check(
        serde_json::json!({"kind": "flow", "hidden": []}),
        4,
        "model.prior.hidden",
        "[]",
    );
    check(
        serde_json::json!({"kind": "flow", "hidden": [6]}),
        4,
        "model.prior.hidden",
        "[6]",
    );
    check(
        serde_json::json!({"kind": "mog", "components": 60000}),
        4096,
        "model.prior.components",
        "60000",
    );
    // Settings the kind does not use are ignored, unchecked.
    let mut cfg = ExperimentConfig::default();
    cfg.model.prior = serde_json::from_value(
        serde_json::json!({"kind": "mog", "pseudo_inputs": 0, "layers": 0, "hidden": [3]}),
    )
    .unwrap();
    cfg.validate().unwrap();
}
