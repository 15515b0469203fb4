//! The flow-VAE of the original (ORIGINAL §2): a [`Vae`] composed from a vae-nets encoder and
//! decoder and a vae-flows IAF posterior, its ELBO, a resumable [`Adam`], the warm-up and
//! learning-rate [`schedule`]s, and a [`Trainer`] a library user can drive without the CLI.
#![doc = include_str!("../README.md")]

pub mod adam;
pub mod checkpoint;
pub mod config;
pub mod cost;
pub mod data_init;
pub mod error;
pub mod latent_model;
pub mod memory;
pub mod prior;
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
pub use prior::{LatentPrior, Prior, PriorConfig, PriorDensity, PriorKind};
pub use splits::{evaluation_split, training_split};
pub use trainer::{EpochOutcome, EpochReport, EvalReport, StepReport, TrainState, Trainer};
pub use vae::{ElboTerms, Vae};
