//! `Vae::data_dependent_init` and the trainer's use of it (NORMALIZATION §3, §6): the encoder's
//! outputs feed the flow and the flow's outputs the decoder, so the decoder's units are
//! standardised on the codes the flow gives; batch norms elsewhere keep their running
//! statistics; a model without weight norm is not touched; and the trainer initialises a fresh
//! run once, reproducibly, refusing one image per batch.

use std::sync::atomic::AtomicBool;

use tch::{nn, Device, Kind, Tensor};
use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
use vae_flows::FlowConfig;
use vae_model::{ExperimentConfig, ModelConfig, TrainConfig, Trainer, Vae};
use vae_nets::{DecoderConfig, EncoderConfig, Normalization};

/// The MLP networks and the cMADEs normalized as given, a flow with SNF-like context (whose
/// predictor has batch norm).
fn model(encoder: Normalization, decoder: Normalization, flow: Normalization) -> ModelConfig {
    ModelConfig {
        latent: 4,
        encoder: EncoderConfig::Mlp {
            hidden: vec![24],
            normalization: encoder,
        },
        decoder: DecoderConfig::Mlp {
            hidden: vec![20, 12],
            normalization: decoder,
        },
        flow: Some(FlowConfig {
            layers: 2,
            hidden: vec![16],
            context_size: 16,
            normalization: flow,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn images(batch: i64) -> Tensor {
    Tensor::rand([batch, 1, 28, 28], (Kind::Float, Device::Cpu)).round()
}

fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = (vs.variables().into_iter())
        .map(|(k, t)| (k, t.copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn changed(before: &[(String, Tensor)], vs: &nn::VarStore) -> Vec<String> {
    let now = vs.variables();
    (before.iter())
        .filter(|(k, t)| (t - &now[k]).abs().max().double_value(&[]) > 0.0)
        .map(|(k, _)| k.clone())
        .collect()
}

/// The decoder's weight-normalized units are standardised on the flow's output for the noise the
/// initialisation drew (the first draw after seeding), and the initialisation changed gains and
/// biases only: the context predictor's and the cMADEs' batch norms kept every statistic.
#[test]
fn the_decoder_is_initialised_on_the_flows_output() {
    let cfg = model(
        Normalization::WeightNorm,
        Normalization::WeightNorm,
        Normalization::BatchNorm,
    );
    let _rng = vae_eval::rng_guard();
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let vae = Vae::new(&vs.root(), &cfg).unwrap();
    assert!(vae.uses_weight_norm());
    let x = images(64);
    let before = snapshot(&vs);
    tch::manual_seed(7);
    vae.data_dependent_init(&x).unwrap();
    for name in changed(&before, &vs) {
        assert!(
            name.ends_with(".weight_g") || name.ends_with(".bias") && !name.contains(".bn"),
            "{name} changed"
        );
    }
    // The same pass again, by hand: encoder, context, z0 with the same noise, flow.
    tch::manual_seed(7);
    let _no_grad = tch::no_grad_guard();
    let (mu, log_sigma, ctx) = vae.encode(&x, true);
    let eps = Tensor::randn(mu.size(), (Kind::Float, Device::Cpu));
    // The flow in training mode: its batch norms use the batch's statistics, as during the
    // initialisation.
    let (zt, _) = vae.flow(&(&mu + log_sigma.exp() * eps), ctx.as_ref(), true);
    let vars = vs.variables();
    let mut h = zt.shallow_clone();
    for k in 1..=2 {
        let path = format!("dec.hidden{k}.dense");
        let v = &vars[&format!("{path}.weight_v")];
        let w = &vars[&format!("{path}.weight_g")] * v
            / v.square().sum_dim_intlist(1, true, Kind::Float).sqrt();
        let pre = Tensor::cat(&[&h, &zt], 1).linear(&w, Some(&vars[&format!("{path}.bias")]));
        let mean = pre.mean_dim(0, false, Kind::Double);
        let var = (&pre - pre.mean_dim(0, true, Kind::Float))
            .square()
            .mean_dim(0, false, Kind::Double);
        assert!(
            mean.abs().max().double_value(&[]) < 1e-4,
            "hidden{k}: {mean}"
        );
        assert!(
            (var - 1.0).abs().max().double_value(&[]) < 1e-4,
            "hidden{k}"
        );
        h = pre.elu();
    }
}

/// A batch-norm model has nothing to initialise: no variable changes and no random number is
/// drawn.
#[test]
fn a_model_without_weight_norm_is_not_touched() {
    let cfg = model(
        Normalization::BatchNorm,
        Normalization::None,
        Normalization::BatchNorm,
    );
    let _rng = vae_eval::rng_guard();
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let vae = Vae::new(&vs.root(), &cfg).unwrap();
    assert!(!vae.uses_weight_norm());
    let x = images(16);
    let before = snapshot(&vs);
    tch::manual_seed(3);
    vae.data_dependent_init(&x).unwrap();
    let after_init = Tensor::randn([4], (Kind::Float, Device::Cpu));
    tch::manual_seed(3);
    let fresh = Tensor::randn([4], (Kind::Float, Device::Cpu));
    assert!(after_init.equal(&fresh), "a random number was drawn");
    assert!(changed(&before, &vs).is_empty());
}

fn data() -> Dataset {
    let n = 300;
    let pixels = (0..n * 784)
        .map(|i| ((i * 7919 + i / 784 * 31) % 256) as u8)
        .collect();
    let all = Split {
        pixels,
        labels: vec![0; n],
    };
    Dataset::from_splits(
        DatasetKind::Mnist,
        all.slice(0..200),
        all.slice(200..300),
        SplitConfig { validation: 100 },
    )
    .unwrap()
}

fn experiment(model: ModelConfig, batch_size: usize) -> ExperimentConfig {
    ExperimentConfig {
        model,
        train: TrainConfig {
            epochs: 1,
            batch_size,
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The trainer initialises a fresh weight-norm run before its first step, the same way in two
/// runs with the same seed, and only once: the second `run_epoch` call does not initialise again
/// (its first step's gains come from the first call's last step).
#[test]
fn the_trainer_initialises_a_fresh_run_once_and_reproducibly() {
    let cfg = experiment(
        model(
            Normalization::WeightNorm,
            Normalization::WeightNorm,
            Normalization::WeightNorm,
        ),
        50,
    );
    let stop = AtomicBool::new(false);
    let mut a = Trainer::new(cfg.clone(), data(), Device::Cpu).unwrap();
    let built = snapshot(a.var_store());
    let _ = a.run_epoch(&stop, Some(1), |_| {}).unwrap();
    let after_one = snapshot(a.var_store());
    let mut b = Trainer::new(cfg, data(), Device::Cpu).unwrap();
    let _ = b.run_epoch(&stop, Some(1), |_| {}).unwrap();
    for ((name, x), (_, y)) in after_one.iter().zip(snapshot(b.var_store())) {
        assert!(x.equal(&y), "{name} differs between two runs of one seed");
    }
    // The initialisation moved the encoder's biases far more than one Adam step (1e-3) could.
    let moved = |name: &str| {
        let i = built.iter().position(|(k, _)| k == name).unwrap();
        (&after_one[i].1 - &built[i].1)
            .abs()
            .max()
            .double_value(&[])
    };
    assert!(moved("enc.hidden1.dense.bias") > 0.05);
    // A second call continues: one more step moves the gains by at most about Adam's step.
    let _ = a.run_epoch(&stop, Some(2), |_| {}).unwrap();
    let after_two = snapshot(a.var_store());
    for ((name, x), (_, y)) in after_one.iter().zip(&after_two) {
        if name.ends_with("weight_g") {
            let d = (x - y).abs().max().double_value(&[]);
            assert!(d < 5e-3, "{name} moved by {d}: initialised again");
        }
    }
}

/// Weight norm without any batch norm still needs two images per batch: its initialisation
/// measures a variance. The refusal names the setting.
#[test]
fn one_image_per_batch_is_refused_with_weight_norm() {
    let mut cfg = model(
        Normalization::WeightNorm,
        Normalization::WeightNorm,
        Normalization::WeightNorm,
    );
    // Without a context the model has no batch norm at all.
    if let Some(flow) = cfg.flow.as_mut() {
        flow.context_size = 0;
    }
    let err = Trainer::new(experiment(cfg.clone(), 1), data(), Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("train.batch_size") && err.contains("weight norm"),
        "{err}"
    );
    assert!(Trainer::new(experiment(cfg, 2), data(), Device::Cpu).is_ok());
}
