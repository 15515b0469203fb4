//! The flow-VAE of the original (ORIGINAL §2): a [`Vae`] composed from a vae-nets encoder and
//! decoder and a vae-flows IAF posterior, its ELBO, a resumable [`Adam`], the warm-up and
//! learning-rate [`schedule`]s, and a [`Trainer`] a library user can drive without the CLI.
//!
//! # Brief overview
//!
//! - [`ExperimentConfig`] = [`DataConfig`] + [`ModelConfig`] + [`TrainConfig`], serde-ready with
//!   the original's defaults; unknown keys are rejected.
//! - [`Vae::elbo_terms`] gives the per-example reconstruction loss and single-sample KL (§4).
//! - [`Trainer::run_epoch`] trains; [`Trainer::evaluate`] gives a split's negative ELBO;
//!   [`Trainer::save_checkpoint`] / [`Trainer::load_checkpoint`] resume exactly.
//! - [`Vae::load`] (or [`Checkpoint::read`] then [`Checkpoint::load_vae`]) gives a trained VAE
//!   for inference without a trainer, an optimizer or a dataset.
//! - [`VaeLatentModel`] implements vae-eval's `LatentModel`, so IS, AIS and BDMC run on it.
//!
//! ```
//! use vae_model::{ModelConfig, Vae};
//! use vae_nets::{DecoderConfig, EncoderConfig};
//! let cfg = ModelConfig {
//!     latent: 4,
//!     encoder: EncoderConfig::Mlp { hidden: vec![16] },
//!     decoder: DecoderConfig::Mlp { hidden: vec![16] },
//!     flow: None,
//!     ..Default::default()
//! };
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let vae = Vae::new(&vs.root(), &cfg).unwrap();
//! let x = tch::Tensor::zeros([3, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
//! let terms = vae.elbo_terms(&x, false);
//! assert_eq!(terms.rec.size(), [3]);
//! ```

pub mod adam;
pub mod checkpoint;
pub mod config;
pub mod cost;
pub mod error;
pub mod latent_model;
pub mod schedule;
pub mod splits;
pub mod trainer;
pub mod vae;

pub use adam::Adam;
pub use checkpoint::{Checkpoint, CHECKPOINT_FORMAT};
pub use config::{
    AdamConfig, BatchNorm, DataConfig, ExperimentConfig, Likelihood, ModelConfig, TrainConfig,
};
pub use error::{Error, Result};
pub use latent_model::{VaeLatentModel, VaePosterior};
pub use splits::{evaluation_split, training_split};
pub use trainer::{EpochOutcome, EpochReport, EvalReport, StepReport, TrainState, Trainer};
pub use vae::{ElboTerms, Vae};
