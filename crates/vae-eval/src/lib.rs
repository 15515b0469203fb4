//! Honest log-likelihood estimates for latent-variable models: importance sampling, annealed
//! importance sampling with HMC transitions (AIS-HMC, and HAIS with partial momentum refresh), and
//! bidirectional Monte Carlo, all in nats per example.
//!
//! # Brief overview
//!
//! - A model implements the parts its estimator needs: [`JointDensity`] (`log p(x, z)` and its
//!   gradient in `z`, the prior), [`AmortizedProposal`] (a reparameterised `q(z | x)`: a
//!   Gaussian base and a flow with its log-determinant) and [`DataSimulator`] (`x ~ p(x | z)`);
//!   [`LatentModel`] is all three. `vae-model` implements them for the VAE; [`analytic`] holds
//!   reference models whose `log p(x)` is known exactly. The [`model`] module documents the
//!   shape conventions and who handles inference mode and `no_grad`.
//! - [`importance_sampling`] (ORIGINAL §5.1) gives `log p̂(x)` per example, its effective sample
//!   size, the mean NLL with standard errors, the ELBO and the IWAE-bound curve, configured by
//!   [`IsConfig`].
//! - [`ais()`] anneals from the prior, the proposal's Gaussian base, or the full flow posterior
//!   (ORIGINAL §5.2), with the original's adaptive step size and a [`Schedule`], configured by
//!   [`AisConfig`]; it reports the AIS estimate and the original's looser mean-log-weight bound.
//! - [`bdmc()`] brackets `log p(x)` of data drawn by [`simulate`] between forward AIS and
//!   [`reverse_ais`].
//! - [`ais_from_prior`], [`reverse_ais_from_prior`] and [`bdmc_from_prior`] do the same from
//!   the prior for a model that has a [`JointDensity`] only.
//!
//! Every estimator takes a `progress(done, total)` callback, seeds tch's generator from its
//! config (holding [`rng_guard`], so that concurrent runs do not mix their draws), runs under
//! `no_grad`, and returns a serde-serialisable result that carries its config.
//!
//! ```
//! use tch::Tensor;
//! use vae_eval::analytic::{LinearGaussian, Proposal};
//! use vae_eval::{importance_sampling, IsConfig};
//!
//! // z ~ N(0, I_2), x | z ~ N(W z + b, 0.5² I_3), proposal = the exact posterior.
//! let model = LinearGaussian::random(3, 2, 1.0, 0.5, 0, Proposal::EXACT);
//! let x = Tensor::from_slice(&[0.5f32, -1.0, 2.0]).view([1, 3]);
//! let config = IsConfig { num_samples: 10, ..Default::default() };
//! let result = importance_sampling(&model, &x, &config, &mut |_done, _total| {}).unwrap();
//! // With the exact posterior every importance weight is p(x): the estimate is exact.
//! assert!((result.log_px[0] - model.log_px(&x)[0]).abs() < 1e-4);
//! assert!((result.ess[0] - 10.0).abs() < 1e-3);
//! ```

#![deny(missing_docs)]

pub mod ais;
pub mod analytic;
pub mod bdmc;
mod checks;
pub mod error;
pub mod importance;
pub mod model;
mod rng;
pub mod schedule;
pub mod stats;

pub use ais::{
    ais, ais_from_prior, reverse_ais, reverse_ais_from_prior, AisConfig, AisResult, AisStart,
    AisTrace, Direction, HmcConfig, StepSizeAdaptation,
};
pub use bdmc::{bdmc, bdmc_from_prior, simulate, BdmcResult};
pub use error::{Error, Result};
pub use importance::{
    importance_sampling, iwae_sample_counts, rows_within_budget, IsConfig, IsPasses, IsResult,
    IwaePoint, IS_ACTIVATION_BUDGET, IS_MAX_ROWS_CAP, IS_ROWS_UNKNOWN_MODEL,
};
pub use model::{AmortizedProposal, DataSimulator, JointDensity, LatentModel};
pub use rng::rng_guard;
pub use schedule::{sigmoid_schedule, Schedule};
