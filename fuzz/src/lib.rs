//! Shared pieces of flowvae's fuzz targets (`fuzz_targets/`): the tiny model and trainer that the
//! `checkpoint` target loads into, the size guard that keeps the `config` target from building
//! huge networks, scratch files, the CLI's run config (vae-cli's library target) and the seed
//! writer of the `seeds` target.

use std::path::PathBuf;

use tch::Device;
use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
use vae_flows::FlowConfig;
use vae_model::{ExperimentConfig, ModelConfig, TrainConfig, Trainer};
use vae_nets::{DecoderConfig, EncoderConfig};

/// `vae-cli`'s `RunConfig` and its `--set` parser, from vae-cli's library target.
pub use vae_cli::config as run_config;
pub mod seeds;

/// The architecture of the trainer the `checkpoint` target loads into: as small as a model of
/// 784 pixels gets (a checkpoint of about 50 KB, Adam moments included), with a one-step flow
/// so that flow tensors are in it.
pub fn tiny_model() -> ModelConfig {
    ModelConfig {
        latent: 1,
        encoder: EncoderConfig::mlp(vec![]),
        decoder: DecoderConfig::mlp(vec![]),
        flow: Some(FlowConfig {
            layers: 1,
            hidden: vec![2],
            context_size: 0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// [`tiny_model`] with training settings for a 4-image training set.
pub fn tiny_experiment() -> ExperimentConfig {
    ExperimentConfig {
        model: tiny_model(),
        data: vae_model::DataConfig {
            validation: 2,
            ..Default::default()
        },
        train: TrainConfig {
            epochs: 3,
            batch_size: 2,
            eval_batch_size: 2,
            warmup_epochs: 1,
            seed: 7,
            ..Default::default()
        },
    }
}

/// 6 training (4 train + 2 validation) and 2 test images of arbitrary grey levels.
pub fn tiny_dataset() -> Dataset {
    let n = 8;
    let pixels = (0..n * 784)
        .map(|i| ((i * 7919 + i / 784 * 31) % 256) as u8)
        .collect();
    let all = Split {
        pixels,
        labels: (0..n as u8).collect(),
    };
    Dataset::from_splits(
        DatasetKind::Mnist,
        all.slice(0..6),
        all.slice(6..8),
        SplitConfig { validation: 2 },
    )
    .expect("a valid split")
}

/// A fresh trainer of [`tiny_experiment`] on [`tiny_dataset`], on the CPU.
pub fn tiny_trainer() -> Trainer {
    Trainer::new(tiny_experiment(), tiny_dataset(), Device::Cpu).expect("the tiny config is valid")
}

/// Whether a fuzzed architecture is small enough to build in a fuzz iteration (no OOM, a few
/// milliseconds): latent at most 64, at most 4 layers of at most 256 units in every MLP and
/// cMADE, at most 4 flow layers, a context of at most 256. Values the constructors must reject
/// (zero, negative) pass the guard: those are the point.
pub fn small_enough(m: &ModelConfig) -> bool {
    let widths = |h: &[i64]| h.len() <= 4 && h.iter().all(|&w| w <= 256);
    let encoder = match &m.encoder {
        EncoderConfig::Mlp { hidden, .. } => widths(hidden),
        _ => true,
    };
    let decoder = match &m.decoder {
        DecoderConfig::Mlp { hidden, .. } => widths(hidden),
        _ => true,
    };
    let flow = match &m.flow {
        None => true,
        Some(f) => f.layers <= 4 && widths(&f.hidden) && f.context_size <= 256,
    };
    m.latent <= 64 && encoder && decoder && flow
}

/// Whether the architecture has a convolutional part (ResNet or gated conv), which is slow
/// enough (tens of milliseconds per forward pass) that the `config` target only builds it.
pub fn convolutional(m: &ModelConfig) -> bool {
    !matches!(m.encoder, EncoderConfig::Mlp { .. })
        || !matches!(m.decoder, DecoderConfig::Mlp { .. })
}

/// A per-process scratch file, in `/dev/shm` when it exists (no disk writes per iteration).
pub fn scratch_file(name: &str) -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("flowvae-fuzz-{}-{name}", std::process::id()))
}

/// A per-process scratch folder, created.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = scratch_file(name);
    std::fs::create_dir_all(&dir).expect("creating a scratch folder");
    dir
}

/// A checkpoint of [`tiny_trainer`] taken apart: its tensors without `meta.json`, the part of
/// `meta.json` that the integrity sum covers (`format`, `config`, `state`), and the file's raw
/// bytes. What the `checkpoint_meta` and `checkpoint_header` targets rebuild checkpoints from.
pub struct SeedCheckpoint {
    /// `model.*` and `adam.*` tensors.
    pub tensors: Vec<(String, tch::Tensor)>,
    /// `meta.json` without `checksum` and `integrity`.
    pub covered: serde_json::Value,
    /// The safetensors file as written.
    pub bytes: Vec<u8>,
}

/// [`SeedCheckpoint`] of a fresh [`tiny_trainer`] after one training step (so Adam's moments
/// are not zero).
pub fn seed_checkpoint() -> SeedCheckpoint {
    let mut t = tiny_trainer();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let _ = t.run_epoch(&stop, Some(1), |_| {});
    let path = scratch_file("seed.safetensors");
    t.save_checkpoint(&path).expect("writing the seed checkpoint");
    let bytes = std::fs::read(&path).expect("reading the seed checkpoint back");
    let mut tensors = tch::Tensor::read_safetensors(&path).expect("a valid checkpoint");
    let _ = std::fs::remove_file(&path);
    let meta = tensors
        .iter()
        .position(|(k, _)| k == "meta.json")
        .map(|i| tensors.remove(i).1)
        .expect("a checkpoint has meta.json");
    let meta = Vec::<u8>::try_from(&meta).expect("meta.json is u8");
    let mut covered: serde_json::Value = serde_json::from_slice(&meta).expect("meta.json is JSON");
    if let Some(m) = covered.as_object_mut() {
        m.remove("checksum");
        m.remove("integrity");
    }
    SeedCheckpoint {
        tensors,
        covered,
        bytes,
    }
}

/// What the checkpoint targets check of a checkpoint file at `path` beyond "no panic", with
/// `trainer` as `vae train --resume` would use it: every error names the file; what
/// `load_checkpoint` accepts, `checkpoint_config` accepts too; and a checkpoint that loads can
/// be trained on (at most two steps, then validation) unless its state says the run is done.
pub fn load_and_resume(trainer: &mut Trainer, path: &std::path::Path) {
    let names_file = |msg: String| {
        assert!(
            msg.contains(&*path.to_string_lossy()),
            "error without the file name: {msg}"
        );
    };
    let config = Trainer::checkpoint_config(path);
    if let Err(e) = &config {
        names_file(e.to_string());
    }
    let loaded = trainer.load_checkpoint(path);
    match loaded {
        Err(e) => names_file(e.to_string()),
        Ok(_) => {
            assert!(config.is_ok(), "load_checkpoint accepted what checkpoint_config refused");
            if trainer.is_done() {
                return;
            }
            let max = trainer.state().global_step.saturating_add(2);
            let stop = std::sync::atomic::AtomicBool::new(false);
            let _ = trainer.run_epoch(&stop, Some(max), |_| {});
        }
    }
}
