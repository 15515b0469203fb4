//! Priors `p(z)` over the latent space, chosen by `model.prior.kind` (PRIORS §1).
//!
//! Every prior is seen through one trait, [`LatentPrior`]: the log-density `log p(z)` (with all
//! normalising constants, differentiable in `z` and in the prior's parameters by autograd) and a
//! sampler. The four kinds:
//!
//! | `kind` | type | density | PRIORS |
//! |---|---|---|---|
//! | `standard_normal` (default) | [`StandardNormal`] | `N(0, I)` | §2 |
//! | `mog` | [`MogPrior`] | `Σ_k π_k N(μ_k, diag σ_k²)`, all learned | §3 |
//! | `vampprior` | [`VampPrior`] | `(1/K) Σ_k q0(z | u_k)`, learned pseudo-inputs `u_k` | §4 |
//! | `flow` | [`FlowPrior`] | a masked autoregressive flow of `N(0, I)` | §5 |
//!
//! A [`Prior`] holds the parameters (under the `prior` path of the VAE's `VarStore`, so that
//! checkpoints save and restore them with the rest). Its [`Prior::density`] resolves it into a
//! [`PriorDensity`], the object that implements [`LatentPrior`]; only the VampPrior needs
//! something from outside for that, the encoder's Gaussian base (PRIORS §4.2), passed as a
//! function of images.

mod flow;
mod mixture;
mod mog;
mod standard_normal;
mod vampprior;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::error::{Error, Result};

pub use flow::{FlowPrior, MadeLayer};
pub use mixture::DiagMixture;
pub use mog::MogPrior;
pub use standard_normal::StandardNormal;
pub use vampprior::{VampPrior, PSEUDO_INPUT_SHAPE};

/// The default number of mixture components of `mog` (PRIORS §3.3).
pub const DEFAULT_COMPONENTS: usize = 10;
/// The default number of VampPrior pseudo-inputs (PRIORS §4.3; the VampPrior paper uses 500).
pub const DEFAULT_PSEUDO_INPUTS: usize = 100;
/// The default number of MADE layers of the flow prior (PRIORS §5.3).
pub const DEFAULT_FLOW_LAYERS: usize = 4;
/// The default hidden widths of each flow-prior MADE, as multiples of the latent size `D`:
/// `[4 D, 4 D]` (PRIORS §5.3).
pub const DEFAULT_FLOW_HIDDEN_PER_LATENT: [i64; 2] = [4, 4];
/// The most `components` or `pseudo_inputs` accepted (PRIORS §1.2).
pub const MAX_COMPONENTS: usize = 1 << 16;
/// The most flow-prior layers accepted.
pub const MAX_FLOW_LAYERS: usize = 64;
/// The most parameters a prior may have, `2^28` (1 GiB in f32): above it the allocation alone
/// would fail, and libtorch aborts instead of naming the setting (PRIORS §1.2).
pub const MAX_PRIOR_PARAMETERS: u64 = 1 << 28;

/// Which prior `p(z)` the VAE uses: `model.prior.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorKind {
    /// `N(0, I)`, the original's prior (PRIORS §2). The default.
    #[default]
    StandardNormal,
    /// A mixture of `components` diagonal Gaussians with learned weights, means and standard
    /// deviations (PRIORS §3).
    Mog,
    /// The VampPrior: the mixture of the encoder's Gaussian base at `pseudo_inputs` learned
    /// images (PRIORS §4).
    #[serde(rename = "vampprior")]
    VampPrior,
    /// A masked autoregressive flow (MAF direction) of `N(0, I)`: `layers` MADEs of widths
    /// `hidden` (PRIORS §5).
    Flow,
}

impl PriorKind {
    /// The name in configs: `standard_normal`, `mog`, `vampprior` or `flow`.
    pub fn name(self) -> &'static str {
        match self {
            PriorKind::StandardNormal => "standard_normal",
            PriorKind::Mog => "mog",
            PriorKind::VampPrior => "vampprior",
            PriorKind::Flow => "flow",
        }
    }
}

impl std::fmt::Display for PriorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `model.prior`: the prior's kind and the settings of every kind (PRIORS §1.1).
///
/// In JSON, e.g. `{"kind": "mog", "components": 20}`. Every key is optional (a config or a
/// checkpoint without `prior` has the standard normal prior); unknown keys are refused. A setting
/// that the chosen kind does not use is accepted and ignored, and not checked either, so that
/// `--set model.prior.kind=...` alone switches between kinds whatever else the config says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorConfig {
    /// Which prior.
    pub kind: PriorKind,
    /// `mog`: mixture components `K`, 1 to 65536 (default 10).
    pub components: usize,
    /// `vampprior`: pseudo-inputs `K`, 1 to 65536 (default 100; each costs an encoder pass of one
    /// image per training step).
    pub pseudo_inputs: usize,
    /// `flow`: MADE layers, 1 to 64 (default 4); consecutive layers alternate their
    /// autoregressive order.
    pub layers: usize,
    /// `flow`: hidden widths of each MADE, at least one; each consecutive pair of
    /// `[D, hidden…, D]` must divide one another (vae-flows' mask rule). `null` (the default)
    /// means `[4 D, 4 D]`.
    pub hidden: Option<Vec<i64>>,
}

impl Default for PriorConfig {
    fn default() -> Self {
        PriorConfig {
            kind: PriorKind::StandardNormal,
            components: DEFAULT_COMPONENTS,
            pseudo_inputs: DEFAULT_PSEUDO_INPUTS,
            layers: DEFAULT_FLOW_LAYERS,
            hidden: None,
        }
    }
}

impl PriorConfig {
    /// Whether every setting is at its default (the standard normal prior with the default
    /// settings of the other kinds): such a config is left out when written.
    pub fn is_default(&self) -> bool {
        *self == PriorConfig::default()
    }

    /// The flow prior's hidden widths for latent size `latent`: `hidden`, or `[4 D, 4 D]`.
    pub fn flow_hidden(&self, latent: i64) -> Vec<i64> {
        match &self.hidden {
            Some(h) => h.clone(),
            None => DEFAULT_FLOW_HIDDEN_PER_LATENT
                .iter()
                .map(|m| m * latent)
                .collect(),
        }
    }

    /// Checks the settings the chosen kind uses, for latent size `latent` (≥ 1), naming the field
    /// (`model.prior.components`, …), its value and what would be valid.
    pub fn validate(&self, latent: i64) -> Result<()> {
        let d = latent.max(1) as u64;
        match self.kind {
            PriorKind::StandardNormal => Ok(()),
            PriorKind::Mog => {
                let k = self.components;
                if !(1..=MAX_COMPONENTS).contains(&k) {
                    return Err(Error::bad(
                        "model.prior.components",
                        k,
                        "an integer from 1 to 65536",
                    ));
                }
                // Means, log-std and a logit per component.
                if k as u64 * (2 * d + 1) > MAX_PRIOR_PARAMETERS {
                    return Err(Error::bad(
                        "model.prior.components",
                        k,
                        "at most 2^28 / (2 model.latent + 1) components (the prior's parameters \
                         must fit in 2^28 numbers)",
                    ));
                }
                Ok(())
            }
            PriorKind::VampPrior => {
                let k = self.pseudo_inputs;
                if !(1..=MAX_COMPONENTS).contains(&k) {
                    return Err(Error::bad(
                        "model.prior.pseudo_inputs",
                        k,
                        "an integer from 1 to 65536",
                    ));
                }
                Ok(())
            }
            PriorKind::Flow => {
                if !(1..=MAX_FLOW_LAYERS).contains(&self.layers) {
                    return Err(Error::bad(
                        "model.prior.layers",
                        self.layers,
                        "an integer from 1 to 64",
                    ));
                }
                let hidden = self.flow_hidden(latent);
                let shown = || format!("{hidden:?}");
                if hidden.is_empty() {
                    return Err(Error::bad(
                        "model.prior.hidden",
                        shown(),
                        "at least one hidden width (or null for [4 D, 4 D])",
                    ));
                }
                if hidden.iter().any(|&w| !(1..=1 << 20).contains(&w)) {
                    return Err(Error::bad(
                        "model.prior.hidden",
                        shown(),
                        "widths from 1 to 2^20",
                    ));
                }
                let mut widths = vec![latent];
                widths.extend(&hidden);
                widths.push(latent);
                // Per MADE: the masked layers, and the second head.
                let per_layer: u64 = widths
                    .windows(2)
                    .map(|w| (w[0] * w[1] + w[1]) as u64)
                    .sum::<u64>()
                    + (widths[widths.len() - 2] as u64 + 1) * d;
                if per_layer.saturating_mul(self.layers as u64) > MAX_PRIOR_PARAMETERS {
                    return Err(Error::bad(
                        "model.prior.hidden",
                        shown(),
                        "widths whose MADEs together have at most 2^28 parameters",
                    ));
                }
                let units: Vec<usize> = widths.iter().map(|&w| w as usize).collect();
                for order in [
                    vae_flows::MaskOrder::Natural,
                    vae_flows::MaskOrder::Reversed,
                ] {
                    if let Err(e) = vae_flows::made_masks(&units, order) {
                        return Err(Error::bad(
                            "model.prior.hidden",
                            shown(),
                            &format!(
                                "widths such that each consecutive pair of [latent, hidden.., \
                                 latent] = {units:?} divides one another, e.g. [4 D, 4 D] with \
                                 D = model.latent = {latent} ({e})"
                            ),
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// A prior `p(z)` over `D`-dimensional latents: its log-density and a sampler (PRIORS §1).
///
/// Both work in the prior's floating-point kind on its device. Implementations are
/// deterministic functions of their parameters (no batch norm, no dropout), so the estimators,
/// which call them without a training flag, see the same density as training did.
pub trait LatentPrior {
    /// The latent size `D`.
    fn latent(&self) -> i64;

    /// `log p(z)` for `z` `[..., D]`: returns `[...]`, nats, with every normalising constant
    /// (`½ ln 2π` terms included). Differentiable by autograd in `z` and in the parameters the
    /// density was made from.
    fn log_prob(&self, z: &Tensor) -> Tensor;

    /// `n` independent draws `[n, D]`, from tch's global generator, without gradient.
    fn sample(&self, n: i64) -> Tensor;

    /// Bytes of intermediate tensors one row of [`log_prob`](Self::log_prob) holds at its peak
    /// (f32, with what autograd keeps for the gradient in `z`): what importance sampling adds to
    /// the decoder's per-row memory when it sizes its calls. Default 0.
    fn bytes_per_row(&self) -> u64 {
        0
    }
}

/// The prior's parameters, one variant per [`PriorKind`] (PRIORS §1).
#[derive(Debug)]
pub enum Prior {
    /// `N(0, I)`, no parameters.
    StandardNormal(StandardNormal),
    /// A learned mixture of Gaussians.
    Mog(MogPrior),
    /// Learned pseudo-inputs, through the encoder.
    VampPrior(VampPrior),
    /// A masked autoregressive flow.
    Flow(FlowPrior),
}

/// What the VampPrior needs from the VAE: the encoder's Gaussian base `(mu, log_sigma)`, each
/// `[K, D]`, for images `[K, 1, 28, 28]` in the prior's kind, in evaluation mode (PRIORS §4.2).
pub type BaseEncoder<'a> = &'a dyn Fn(&Tensor) -> (Tensor, Tensor);

impl Prior {
    /// Creates the prior `cfg` describes for latent size `latent`, its variables under `p` (the
    /// VAE passes `root / "prior"`), in `p`'s kind on `p`'s device. Draws its initial values from
    /// tch's global generator (nothing for the standard normal, so that a VAE with it draws
    /// exactly what it did before priors existed).
    ///
    /// Errors: [`Error::BadConfig`] naming the `model.prior.*` field, as [`PriorConfig::validate`].
    pub fn new(p: &nn::Path, latent: i64, cfg: &PriorConfig) -> Result<Prior> {
        cfg.validate(latent)?;
        Ok(match cfg.kind {
            PriorKind::StandardNormal => {
                Prior::StandardNormal(StandardNormal::new(latent, p.kind(), p.device()))
            }
            PriorKind::Mog => Prior::Mog(MogPrior::new(p, latent, cfg.components as i64)?),
            PriorKind::VampPrior => Prior::VampPrior(VampPrior::new(p, cfg.pseudo_inputs as i64)?),
            PriorKind::Flow => Prior::Flow(FlowPrior::new(
                p,
                latent,
                cfg.layers,
                &cfg.flow_hidden(latent),
            )?),
        })
    }

    /// Which kind this is.
    pub fn kind(&self) -> PriorKind {
        match self {
            Prior::StandardNormal(_) => PriorKind::StandardNormal,
            Prior::Mog(_) => PriorKind::Mog,
            Prior::VampPrior(_) => PriorKind::VampPrior,
            Prior::Flow(_) => PriorKind::Flow,
        }
    }

    /// The density with the current parameters. `encoder` is called (once) by the VampPrior
    /// only, on its pseudo-inputs; the other kinds ignore it. The result keeps the autograd
    /// graph back to the parameters when gradients are on (training); make it under
    /// [`tch::no_grad`] for a fixed model (evaluation).
    pub fn density(&self, encoder: BaseEncoder<'_>) -> PriorDensity<'_> {
        match self {
            Prior::StandardNormal(s) => PriorDensity::StandardNormal(*s),
            Prior::Mog(m) => PriorDensity::Mixture(m.mixture()),
            Prior::VampPrior(v) => PriorDensity::Mixture(v.mixture(encoder)),
            Prior::Flow(f) => PriorDensity::Flow(f),
        }
    }
}

/// A prior resolved into a density: what implements [`LatentPrior`] (PRIORS §1).
#[derive(Debug)]
pub enum PriorDensity<'a> {
    /// `N(0, I)`.
    StandardNormal(StandardNormal),
    /// A mixture of diagonal Gaussians: the `mog` prior, or the VampPrior's components.
    Mixture(DiagMixture),
    /// The flow prior, with its live parameters.
    Flow(&'a FlowPrior),
}

impl PriorDensity<'_> {
    /// Whether this is the standard normal, whose log-density and gradient have closed forms
    /// that the VAE uses directly.
    pub fn is_standard_normal(&self) -> bool {
        matches!(self, PriorDensity::StandardNormal(_))
    }
}

impl LatentPrior for PriorDensity<'_> {
    fn latent(&self) -> i64 {
        match self {
            PriorDensity::StandardNormal(s) => s.latent(),
            PriorDensity::Mixture(m) => m.latent(),
            PriorDensity::Flow(f) => f.latent(),
        }
    }

    fn log_prob(&self, z: &Tensor) -> Tensor {
        match self {
            PriorDensity::StandardNormal(s) => s.log_prob(z),
            PriorDensity::Mixture(m) => m.log_prob(z),
            PriorDensity::Flow(f) => f.log_prob(z),
        }
    }

    fn sample(&self, n: i64) -> Tensor {
        match self {
            PriorDensity::StandardNormal(s) => s.sample(n),
            PriorDensity::Mixture(m) => m.sample(n),
            PriorDensity::Flow(f) => f.sample(n),
        }
    }

    fn bytes_per_row(&self) -> u64 {
        match self {
            PriorDensity::StandardNormal(s) => s.bytes_per_row(),
            PriorDensity::Mixture(m) => m.bytes_per_row(),
            PriorDensity::Flow(f) => f.bytes_per_row(),
        }
    }
}
