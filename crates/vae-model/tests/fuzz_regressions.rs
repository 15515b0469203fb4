//! Regression tests for crashes found through the `checkpoint` fuzz target (`fuzz/`): each input
//! that panicked is rebuilt here and must now be refused with an error naming the checkpoint.

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};
use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
use vae_model::{ExperimentConfig, ModelConfig, TrainConfig, Trainer};
use vae_nets::{DecoderConfig, EncoderConfig};

/// A trainer as small as a model of 784 pixels gets, on 4 training images.
fn trainer() -> Trainer {
    let n = 6;
    let all = Split {
        pixels: (0..n * 784).map(|i| (i * 7919 % 256) as u8).collect(),
        labels: vec![1; n],
    };
    let data = Dataset::from_splits(
        DatasetKind::Mnist,
        all.slice(0..4),
        all.slice(4..6),
        SplitConfig { validation: 0 },
    )
    .unwrap();
    let cfg = ExperimentConfig {
        model: ModelConfig {
            latent: 1,
            encoder: EncoderConfig::mlp(vec![]),
            decoder: DecoderConfig::mlp(vec![]),
            flow: None,
            ..Default::default()
        },
        train: TrainConfig {
            batch_size: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    Trainer::new(cfg, data, Device::Cpu).unwrap()
}

/// A checkpoint of `t` with its `adam.step` tensor replaced by `step`, and without its sums (as
/// checkpoints written before checksums existed, which load unverified), so that the loader's
/// own checks are what is tested. The fuzzed file kept its checksum, which covered names and
/// bytes, not shapes; the integrity sum of newer checkpoints covers shapes too.
fn with_step(t: &Trainer, dir: &Path, step: Tensor) -> PathBuf {
    let ck = dir.join("ck.safetensors");
    t.save_checkpoint(&ck).unwrap();
    let mut tensors = Tensor::read_safetensors(&ck).unwrap();
    for (name, tensor) in &mut tensors {
        if name == "adam.step" {
            *tensor = step.shallow_clone();
        }
        if name == "meta.json" {
            let bytes = Vec::<u8>::try_from(&*tensor).unwrap();
            let mut meta: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let m = meta.as_object_mut().unwrap();
            m.remove("checksum");
            m.remove("integrity");
            *tensor = Tensor::from_slice(&serde_json::to_vec(&meta).unwrap());
        }
    }
    let out = dir.join("edited.safetensors");
    Tensor::write_safetensors(&tensors, &out).unwrap();
    out
}

/// The fuzzed file changed `"shape":[1]` of `adam.step` to `"shape":[ ]` (one byte): a 0-dim
/// tensor, on which `int64_value(&[0])` panicked inside `Adam::load_state`. Empty and longer
/// steps, and counts that `Adam::step` cannot use, are refused the same way.
#[test]
fn an_adam_step_that_is_not_one_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer();
    for step in [
        Tensor::from(3i64),
        Tensor::from_slice::<i64>(&[]),
        Tensor::from_slice(&[1i64, 2]),
        Tensor::from_slice(&[-1i64]),
        Tensor::from_slice(&[i64::MAX]),
        Tensor::from_slice(&[f64::NAN]),
    ] {
        let path = with_step(&t, dir.path(), step.shallow_clone());
        let msg = t.load_checkpoint(&path).unwrap_err().to_string();
        let prefix = format!("checkpoint {}: ", path.display());
        assert!(msg.starts_with(&prefix), "{step:?}: {msg}");
        assert!(msg.contains("adam.step"), "{step:?}: {msg}");
    }
    // The shape `[1]` with a usable count still loads.
    let path = with_step(&t, dir.path(), Tensor::from_slice(&[5i64]));
    t.load_checkpoint(&path).unwrap();
}
