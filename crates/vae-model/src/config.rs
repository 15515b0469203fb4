//! Model, data and training settings, serde-ready, with the original's defaults (ORIGINAL §7).

use serde::{Deserialize, Serialize};
use vae_data::{Binarization, DatasetKind, SplitConfig};
use vae_flows::FlowConfig;
use vae_nets::{DecoderConfig, EncoderConfig};

use crate::error::{Error, Result};
pub use crate::prior::{PriorConfig, PriorKind};

/// How `log p(x | z)` is computed from the decoder's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Likelihood {
    /// `Σ [x ℓ − softplus(ℓ)]` on logits: exact and stable (fixes ORIGINAL D9). The default.
    Logits,
    /// The original's `−Σ log clip(lik, 1e-10, 1 − 1e-10)` on sigmoid probabilities (ORIGINAL
    /// §4.1): a wrong, saturated pixel costs a flat 23.03 nats and gets no gradient. For fidelity.
    ClippedProbabilities,
}

/// Batch-norm constants used by every BN layer of the encoder, flow and decoder (ORIGINAL §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchNorm {
    /// Running-average momentum; the original's TF decay 0.999 is 0.001. Short runs do better with
    /// 0.01 (the running averages lag badly otherwise).
    pub momentum: f64,
    /// Variance epsilon, 1e-3 in the original.
    pub eps: f64,
}

impl Default for BatchNorm {
    fn default() -> Self {
        BatchNorm {
            momentum: 0.001,
            eps: 1e-3,
        }
    }
}

impl BatchNorm {
    /// The settings as vae-nets takes them.
    pub fn nets(self) -> vae_nets::BatchNormSettings {
        vae_nets::BatchNormSettings {
            momentum: self.momentum,
            eps: self.eps,
        }
    }
    /// The settings as vae-flows takes them.
    pub fn flows(self) -> vae_flows::BatchNormSettings {
        vae_flows::BatchNormSettings {
            momentum: self.momentum,
            eps: self.eps,
        }
    }
}

/// The VAE's architecture. Defaults are the original's run_script.py (ORIGINAL §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Latent units `D` (`num_latent_units`, 64).
    pub latent: i64,
    /// Added to the encoder's log-std output (`approx_post_offset`, −3.0, ORIGINAL §3.1).
    pub log_sigma_offset: f64,
    /// Encoder family (`IAF_ENCODER` = `resnet`).
    pub encoder: EncoderConfig,
    /// Decoder family (`IAF_DECODER` = `resnet`).
    pub decoder: DecoderConfig,
    /// The posterior flow; `null` for none (ORIGINAL §3.4).
    pub flow: Option<FlowConfig>,
    /// BN constants.
    pub batch_norm: BatchNorm,
    /// Bernoulli likelihood form.
    pub likelihood: Likelihood,
    /// The prior `p(z)`: `{"kind": "standard_normal"}` by default, as in the original. Absent
    /// from configs and checkpoints written before priors existed, which therefore load with it,
    /// and left out when writing the default, so that such configs read as before (PRIORS §1.1).
    #[serde(skip_serializing_if = "PriorConfig::is_default")]
    pub prior: PriorConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            latent: 64,
            log_sigma_offset: -3.0,
            encoder: EncoderConfig::Resnet,
            decoder: DecoderConfig::Resnet,
            flow: Some(FlowConfig::default()),
            batch_norm: BatchNorm::default(),
            likelihood: Likelihood::Logits,
            prior: PriorConfig::default(),
        }
    }
}

/// Which data, split and binarization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `mnist` or `fashion-mnist`.
    pub dataset: DatasetKind,
    /// Training images held out for validation (the last ones of the training file). The
    /// original has none (ORIGINAL D1); model selection needs them.
    pub validation: usize,
    /// Binarization of training batches (`dynamic` as in the original, or `static`).
    pub train_binarization: Binarization,
    /// Seed of the fixed binarization of the validation and test sets (ORIGINAL D2). Keep it
    /// at its default to compare numbers across runs on the identical binary test set.
    pub eval_binarization_seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetKind::Mnist,
            validation: 10_000,
            train_binarization: Binarization::Dynamic,
            eval_binarization_seed: 0,
        }
    }
}

impl DataConfig {
    /// How vae-data splits the training file: `validation` images held out.
    pub fn splits(&self) -> SplitConfig {
        SplitConfig {
            validation: self.validation,
        }
    }
}

/// Adam's constants (TF defaults, ORIGINAL §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamConfig {
    /// First-moment decay, 0.9.
    pub beta1: f64,
    /// Second-moment decay, 0.999.
    pub beta2: f64,
    /// Added to `sqrt(v)` (TF places it on the un-bias-corrected `sqrt(v)`), 1e-8.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Optimisation and schedule settings (ORIGINAL §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Training epochs (2500).
    pub epochs: usize,
    /// Images per training step (200).
    pub batch_size: usize,
    /// Images per evaluation forward pass (no effect on results).
    pub eval_batch_size: usize,
    /// Length of the linear KL warm-up in epochs (200); 0 disables it.
    pub warmup_epochs: usize,
    /// Adam learning rate (1e-3).
    pub learning_rate: f64,
    /// The learning rate is multiplied by `lr_decay_factor` every this many epochs (800).
    pub lr_decay_epochs: usize,
    /// Multiplicative decay (0.5).
    pub lr_decay_factor: f64,
    /// Adam's constants.
    pub adam: AdamConfig,
    /// Seed of everything random: initialisation, data order, binarization, ε.
    pub seed: u64,
    /// A step whose loss or gradient is not finite is skipped; after this many in a row the
    /// trainer asks to roll back to the last good checkpoint with the learning rate halved.
    pub max_consecutive_skips: usize,
    /// After this many rollbacks a run stops with a report instead of rolling back again.
    pub max_rollbacks: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 2500,
            batch_size: 200,
            eval_batch_size: 500,
            warmup_epochs: 200,
            learning_rate: 1e-3,
            lr_decay_epochs: 800,
            lr_decay_factor: 0.5,
            adam: AdamConfig::default(),
            seed: 0,
            max_consecutive_skips: 10,
            max_rollbacks: 3,
        }
    }
}

/// Everything the [`crate::Trainer`] needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// Data settings.
    pub data: DataConfig,
    /// Architecture.
    pub model: ModelConfig,
    /// Optimisation.
    pub train: TrainConfig,
}

/// The largest `model.latent` accepted.
pub const MAX_LATENT: i64 = 1 << 16;

fn positive(field: &str, v: f64, expected: &str) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(Error::bad(field, v, expected))
    }
}

impl ExperimentConfig {
    /// Checks the values no network constructor checks (those report their own errors).
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs == 0 {
            return Err(Error::bad("train.epochs", 0, "an integer >= 1"));
        }
        if t.batch_size == 0 {
            return Err(Error::bad("train.batch_size", 0, "an integer >= 1"));
        }
        if t.eval_batch_size == 0 {
            return Err(Error::bad("train.eval_batch_size", 0, "an integer >= 1"));
        }
        positive(
            "train.learning_rate",
            t.learning_rate,
            "a finite number > 0",
        )?;
        if t.max_consecutive_skips == 0 {
            return Err(Error::bad(
                "train.max_consecutive_skips",
                0,
                "an integer >= 1",
            ));
        }
        if t.lr_decay_epochs == 0 {
            return Err(Error::bad("train.lr_decay_epochs", 0, "an integer >= 1"));
        }
        if !(t.lr_decay_factor > 0.0 && t.lr_decay_factor <= 1.0) {
            return Err(Error::bad(
                "train.lr_decay_factor",
                t.lr_decay_factor,
                "a number in (0, 1]",
            ));
        }
        for (f, v) in [
            ("train.adam.beta1", t.adam.beta1),
            ("train.adam.beta2", t.adam.beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::bad(f, v, "a number in [0, 1)"));
            }
        }
        if !(t.adam.eps >= 0.0 && t.adam.eps.is_finite()) {
            return Err(Error::bad(
                "train.adam.eps",
                t.adam.eps,
                "a finite number >= 0",
            ));
        }
        // Above this the weights alone outgrow any machine's memory, and libtorch aborts on the
        // allocation instead of saying which setting asked for it.
        if !(1..=MAX_LATENT).contains(&self.model.latent) {
            return Err(Error::bad(
                "model.latent",
                self.model.latent,
                "an integer from 1 to 65536",
            ));
        }
        if !self.model.log_sigma_offset.is_finite() {
            return Err(Error::bad(
                "model.log_sigma_offset",
                self.model.log_sigma_offset,
                "a finite number",
            ));
        }
        self.model.prior.validate(self.model.latent)?;
        if self.data.train_binarization == Binarization::Fixed {
            return Err(Error::bad(
                "data.train_binarization",
                "fixed",
                "dynamic, static or none (fixed is for evaluation sets)",
            ));
        }
        Ok(())
    }
}
