//! The estimators of vae-eval on a trained VAE: AIS with many steps is at least as tight as IS with
//! one sample (the ELBO), IS tightens as k grows, and the batched IS agrees with the original's
//! one-sample-per-pass structure.

use std::sync::atomic::AtomicBool;

use tch::{Device, Kind, Tensor};
use vae_data::{Dataset, DatasetKind, SplitConfig, SplitKind};
use vae_eval::{AisConfig, AisStart, AmortizedProposal, HmcConfig, IsConfig, JointDensity};
use vae_flows::FlowConfig;
use vae_model::{ExperimentConfig, ModelConfig, TrainConfig, Trainer, VaeLatentModel};
use vae_nets::{DecoderConfig, EncoderConfig};

/// A small flow-VAE trained for 2 epochs on 3 000 MNIST images.
fn trained() -> Trainer {
    tch::set_num_threads(1);
    let mut data = Dataset::load_default(DatasetKind::Mnist, SplitConfig::default())
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask bootstrap`)"));
    data.train = data.train.slice(0..3_000);
    data.validation = data.validation.slice(0..500);
    let mut cfg = ExperimentConfig {
        model: ModelConfig {
            latent: 8,
            encoder: EncoderConfig::mlp(vec![128]),
            decoder: DecoderConfig::mlp(vec![128]),
            flow: Some(FlowConfig {
                layers: 2,
                hidden: vec![32],
                context_size: 32,
                ..Default::default()
            }),
            ..Default::default()
        },
        train: TrainConfig {
            epochs: 2,
            batch_size: 100,
            warmup_epochs: 1,
            seed: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    cfg.model.batch_norm.momentum = 0.05;
    let mut t = Trainer::new(cfg, data, Device::Cpu).unwrap();
    let stop = AtomicBool::new(false);
    while !t.is_done() {
        t.run_epoch(&stop, None, |_| {}).unwrap();
    }
    t
}

fn test_images(t: &Trainer, n: usize) -> Tensor {
    let s = t.split(SplitKind::Test).slice(0..n);
    let x: Vec<f32> = s.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    Tensor::from_slice(&x).view([n as i64, 1, 28, 28])
}

#[test]
fn ais_is_tighter_than_the_elbo_and_is_tightens_with_k() {
    let t = trained();
    let model = VaeLatentModel::new(t.vae(), Device::Cpu);
    let x = test_images(&t, 20);
    let is = vae_eval::importance_sampling(
        &model,
        &x,
        &IsConfig {
            num_samples: 1000,
            ..Default::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    // The IWAE curve: NLL estimates for k = 1, 10, 100, 1000 from one draw. E[NLL_k] decreases in
    // k; allow each step 3 standard errors of the paired difference (bounded by the sum of the
    // two per-k standard errors over examples, a conservative choice).
    let curve = &is.iwae;
    assert_eq!(
        curve.iter().map(|p| p.k).collect::<Vec<_>>(),
        [1, 10, 100, 1000]
    );
    for w in curve.windows(2) {
        assert!(
            w[1].nll <= w[0].nll + 1e-9,
            "IWAE NLL rose from k={} to k={}: {:?}",
            w[0].k,
            w[1].k,
            curve
        );
    }
    assert!(
        curve[3].nll < curve[0].nll - 0.5,
        "k = 1000 should be clearly tighter: {curve:?}"
    );

    // AIS from the prior with 500 steps, 4 chains: its log p̂(x) per image is an (almost) unbiased
    // estimate, so its mean NLL may not exceed the ELBO's by more than the Monte Carlo error.
    let cfg = AisConfig {
        num_chains: 4,
        anneal_steps: 500,
        start: AisStart::Prior,
        hmc: HmcConfig {
            step_size_max: 1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let ais = vae_eval::ais(&model, &x, &cfg, &mut |_, _| {}).unwrap();
    let elbo_nll = curve[0].nll;
    // Tolerance: 3 standard errors of the k = 1 estimate over the 20 images, plus the AIS MC error.
    let tol = 3.0
        * (curve[0].nll_stderr.unwrap().powi(2) + ais.nll_mc_stderr.unwrap_or(0.0).powi(2)).sqrt();
    assert!(
        ais.nll <= elbo_nll + tol,
        "AIS NLL {} vs ELBO NLL {elbo_nll} (tol {tol})",
        ais.nll
    );
}

#[test]
fn batched_is_equals_one_sample_per_pass() {
    // The original draws one sample per image per pass and re-runs the encoder each time
    // (ORIGINAL §5.1, D6). Reproduce that loop by hand with the model's own pieces and check that
    // the batched estimator computes the same per-image log-weights' log-mean-exp.
    let t = trained();
    let model = VaeLatentModel::new(t.vae(), Device::Cpu);
    let x = test_images(&t, 5);
    let k = 50;
    tch::manual_seed(9);
    let eps = Tensor::randn([k, 5, 8], (Kind::Float, Device::Cpu));
    let naive: Vec<Vec<f64>> = tch::no_grad(|| {
        (0..k)
            .map(|j| {
                let post = model.encode(&x);
                let e = eps.get(j).unsqueeze(0);
                let (z, log_q) = model.sample_posterior(&post, &e);
                let log_w = model.log_joint(&x, &z) - log_q;
                Vec::<f64>::try_from(log_w.to_kind(Kind::Double).flatten(0, -1)).unwrap()
            })
            .collect()
    });
    let batched = tch::no_grad(|| {
        let post = model.encode(&x);
        let (z, log_q) = model.sample_posterior(&post, &eps);
        model.log_joint(&x, &z) - log_q
    });
    for (j, row) in naive.iter().enumerate() {
        for (b, want) in row.iter().enumerate() {
            let v = batched.double_value(&[j as i64, b as i64]);
            assert!(
                (v - want).abs() < 1e-3,
                "sample {j} image {b}: {v} vs {want}"
            );
        }
    }
}

/// The closed-form prior gradient `−z` the VAE's latent model gives AIS (with the value, and
/// alone for the leapfrog steps) equals autograd's, and
/// so does the joint's gradient that AIS takes through the decoder (finite differences on one
/// coordinate as a third opinion).
#[test]
fn latent_model_gradients_match_autograd() {
    let t = trained();
    let model = VaeLatentModel::new(t.vae(), Device::Cpu);
    let x = test_images(&t, 3);
    tch::manual_seed(2);
    let z = Tensor::randn([4, 3, 8], (Kind::Float, Device::Cpu));
    let (lp, g) = model.log_prior_and_grad(&z);
    let (lp_ad, g_ad) = vae_eval::model::value_and_grad(&z, |z| model.log_prior(z));
    assert!(lp.allclose(&lp_ad, 1e-6, 1e-6, false));
    assert!(g.allclose(&g_ad, 1e-6, 1e-6, false));
    assert_eq!(g.size(), [4, 3, 8]);
    assert!(
        model.grad_log_prior(&z).equal(&g),
        "the gradient alone differs"
    );
    let (lj, gj) = model.log_joint_and_grad(&x, &z);
    let h = 1e-2;
    let bump = Tensor::zeros([4, 3, 8], (Kind::Float, Device::Cpu));
    let _ = bump.get(1).get(2).get(5).fill_(h);
    let fd = tch::no_grad(|| {
        (model.log_joint(&x, &(&z + &bump)) - model.log_joint(&x, &(&z - &bump))) / (2.0 * h)
    });
    let (want, got) = (fd.double_value(&[1, 2]), gj.double_value(&[1, 2, 5]));
    // Central differences in f32 at h = 1e-2: error O(h²·f''') plus rounding ~1e-3 relative.
    assert!(
        (want - got).abs() < 2e-2 * want.abs().max(1.0),
        "finite difference {want} vs gradient {got}"
    );
    assert!(lj.allclose(&tch::no_grad(|| model.log_joint(&x, &z)), 1e-5, 1e-5, false));

    // The latent model's decoder is frozen with its batch norms folded in: the same joint and
    // gradient as the VAE's own evaluation-mode decoder and likelihood.
    let vae = t.vae();
    let (lj_vae, gj_vae) = vae_eval::model::value_and_grad(&z, |z| {
        let logits = vae.decode(&z.flatten(0, 1), false);
        let xs = x
            .unsqueeze(0)
            .expand([4, 3, 1, 28, 28], false)
            .flatten(0, 1);
        vae_eval::model::standard_normal_log_density(z)
            - vae.reconstruction_loss(&logits, &xs).view([4, 3])
    });
    assert!(lj.allclose(&lj_vae, 1e-5, 1e-4, false), "{lj} vs {lj_vae}");
    assert!(gj.allclose(&gj_vae, 1e-4, 1e-4, false));

    // So is the flow, with its batch norms folded in: the same z and log-det as the VAE's own
    // evaluation-mode flow.
    let z0 = Tensor::randn([4, 3, 8], (Kind::Float, Device::Cpu));
    let (zt, log_det) = tch::no_grad(|| model.flow(&model.encode(&x), &z0));
    let (_, _, context) = tch::no_grad(|| vae.encode(&x, false));
    let ctx = context.map(|c| c.unsqueeze(0).expand([4, 3, -1], false).flatten(0, 1));
    let (zt_vae, log_det_vae) = tch::no_grad(|| vae.flow(&z0.flatten(0, 1), ctx.as_ref(), false));
    assert!(zt.allclose(&zt_vae.view([4, 3, 8]), 1e-5, 1e-5, false));
    assert!(log_det.allclose(&log_det_vae.view([4, 3]), 1e-5, 1e-4, false));
    assert!(
        log_det.abs().max().double_value(&[]) > 1e-2,
        "an identity flow"
    );
}
