//! Honest log-likelihood estimates for latent-variable models: importance sampling, annealed
//! importance sampling with HMC transitions (AIS-HMC, and HAIS with partial momentum refresh), and
//! bidirectional Monte Carlo, all in nats per example.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod ais;
pub mod analytic;
pub mod bdmc;
mod checks;
pub mod error;
pub mod importance;
pub mod model;
pub mod psis;
mod rng;
pub mod schedule;
pub mod stats;
pub mod torchscript;

pub use ais::{
    ais, ais_from_prior, reverse_ais, reverse_ais_from_prior, AisConfig, AisFlag, AisResult,
    AisStart, AisTrace, Direction, HmcConfig, StepSizeAdaptation, AIS_SPREAD_FLAG,
};
pub use bdmc::{bdmc, bdmc_from_prior, simulate, BdmcResult};
pub use error::{Error, Result};
pub use importance::{
    importance_sampling, iwae_sample_counts, rows_within_budget, IsConfig, IsFlag, IsPasses,
    IsResult, IwaePoint, IS_ACTIVATION_BUDGET, IS_MAX_ROWS_CAP, IS_ROWS_UNKNOWN_MODEL, KHAT_FLAG,
};
pub use model::{AmortizedProposal, DataSimulator, JointDensity, LatentModel};
pub use rng::rng_guard;
pub use schedule::{sigmoid_schedule, Schedule};
