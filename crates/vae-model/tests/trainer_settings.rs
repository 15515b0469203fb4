//! Training settings that the model cannot train with are refused when the trainer is built,
//! naming the setting, instead of failing (or panicking) at the first step.

use tch::Device;
use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
use vae_model::{ExperimentConfig, ModelConfig, TrainConfig, Trainer};
use vae_nets::{DecoderConfig, EncoderConfig};

fn data() -> Dataset {
    let all = Split {
        pixels: vec![128; 6 * 784],
        labels: vec![0; 6],
    };
    let split = SplitConfig { validation: 2 };
    Dataset::from_splits(DatasetKind::Mnist, all.slice(0..4), all.slice(4..6), split).unwrap()
}

fn config(encoder: EncoderConfig, decoder: DecoderConfig, batch_size: usize) -> ExperimentConfig {
    ExperimentConfig {
        model: ModelConfig {
            latent: 2,
            encoder,
            decoder,
            flow: None,
            ..Default::default()
        },
        train: TrainConfig {
            batch_size,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn one_image_per_batch_is_refused_only_with_batch_norm() {
    // The MLP networks have batch norm: one image per batch has no variance to normalise by.
    let mlp = config(EncoderConfig::mlp(vec![8]), DecoderConfig::mlp(vec![8]), 1);
    let msg = Trainer::new(mlp.clone(), data(), Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("train.batch_size") && msg.contains("at least 2"),
        "{msg}"
    );
    let two = ExperimentConfig {
        train: TrainConfig {
            batch_size: 2,
            ..mlp.train
        },
        ..mlp
    };
    assert!(Trainer::new(two, data(), Device::Cpu).is_ok());
    // The gated-conv networks have none: one image per batch trains.
    let gated = config(EncoderConfig::GatedConv, DecoderConfig::GatedConv, 1);
    assert!(Trainer::new(gated, data(), Device::Cpu).is_ok());
}
