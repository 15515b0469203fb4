//! Trains a small MLP flow-VAE on 5 000 MNIST images for two epochs with the library alone (no
//! CLI), then estimates its NLL on 100 test images by importance sampling.
//!
//! `cargo run --release -p vae-model --example train_tiny` (after `cargo xtask bootstrap`).

use std::sync::atomic::AtomicBool;

use vae_data::{Dataset, DatasetKind, SplitConfig, SplitKind};
use vae_eval::IsConfig;
use vae_flows::FlowConfig;
use vae_model::{
    EpochOutcome, ExperimentConfig, ModelConfig, TrainConfig, Trainer, VaeLatentModel,
};
use vae_nets::{DecoderConfig, EncoderConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut data = Dataset::load_default(DatasetKind::Mnist, SplitConfig::default())?;
    data.train = data.train.slice(0..5_000);
    data.validation = data.validation.slice(0..1_000);
    let mut cfg = ExperimentConfig {
        model: ModelConfig {
            latent: 16,
            encoder: EncoderConfig::mlp(vec![200]),
            decoder: DecoderConfig::mlp(vec![200]),
            flow: Some(FlowConfig {
                layers: 2,
                hidden: vec![64],
                context_size: 64,
                ..Default::default()
            }),
            ..Default::default()
        },
        train: TrainConfig {
            epochs: 2,
            batch_size: 100,
            warmup_epochs: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    cfg.model.batch_norm.momentum = 0.01;
    let mut trainer = Trainer::new(cfg, data, tch::Device::Cpu)?;
    let stop = AtomicBool::new(false);
    while !trainer.is_done() {
        if let EpochOutcome::Completed(r) = trainer.run_epoch(&stop, None, |_| {})? {
            let v = r.validation.expect("validation split");
            println!(
                "epoch {}: train -ELBO {:.2}, validation -ELBO {:.2}",
                r.epoch, r.train_neg_elbo, v.neg_elbo
            );
        }
    }
    let test = trainer.split(SplitKind::Test).slice(0..100);
    let x: Vec<f32> = test.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let x = tch::Tensor::from_slice(&x).view([100, 1, 28, 28]);
    let model = VaeLatentModel::new(trainer.vae(), tch::Device::Cpu);
    let is = vae_eval::importance_sampling(
        &model,
        &x,
        &IsConfig {
            num_samples: 100,
            ..Default::default()
        },
        &mut |_, _| {},
    )?;
    println!(
        "test NLL (IS, k=100, 100 images): {:.2} +- {:.2} nats; -ELBO {:.2}",
        is.nll,
        is.nll_stderr.unwrap_or(f64::NAN),
        is.neg_elbo
    );
    Ok(())
}
