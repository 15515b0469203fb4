//! Data-dependent initialisation of a VAE's weight-normalized layers from one batch of images
//! (NORMALIZATION §3, §6): the encoder's outputs feed the flow's cMADEs, the flow's outputs the
//! decoder, so that every layer is initialised on the inputs it will see.

use tch::{Kind, Tensor};
use vae_data::binarize::stream_seed;
use vae_flows::cmade::with_data_dependent_init;
use vae_nets::Normalization;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::vae::Vae;

/// Domain tag of the seed of the initialisation's noise (see `initialise_for_training`).
const TAG_DATA_INIT: u64 = 0xd1a7;

/// Whether any network of `cfg` is weight-normalized (NORMALIZATION §1): the MLP encoder or
/// decoder, or the flow's cMADEs (`cmade_normalization`, whose conflicts `validate` reports; a
/// conflicting flow counts as not weight-normalized here).
pub fn uses_weight_norm(cfg: &ModelConfig) -> bool {
    let weight_norm = Some(Normalization::WeightNorm);
    cfg.encoder.normalization() == weight_norm
        || cfg.decoder.normalization() == weight_norm
        || cfg
            .flow
            .as_ref()
            .is_some_and(|f| f.cmade_normalization().ok() == weight_norm)
}

impl Vae {
    /// Whether any of this VAE's networks is weight-normalized ([`uses_weight_norm`] of its
    /// config): whether [`data_dependent_init`](Self::data_dependent_init) has anything to set.
    pub fn uses_weight_norm(&self) -> bool {
        uses_weight_norm(self.config())
    }

    /// Data-dependent initialisation on the images `x` `[B, 1, 28, 28]`, `B ≥ 2`
    /// (NORMALIZATION §3): sets the gain `g` and bias `b` of every weight-normalized layer so
    /// that its units' pre-activations have mean 0 (the cMADE's `s` head 3.0) and variance 1 on
    /// the batch, layer by layer in network order:
    ///
    /// 1. the encoder on `x` (`mu`, `log_sigma`, `h` after its initialisation);
    /// 2. the context predictor on `h` (training mode);
    /// 3. `z0 = mu + exp(log_sigma) · ε`, `ε ~ N(0, I)` `[B, D]` from tch's global generator;
    /// 4. one training-mode pass of the flow on `z0` and the context, every weight-normalized
    ///    cMADE initialising on its own input ([`with_data_dependent_init`]);
    /// 5. the decoder on the flow's output `zT`.
    ///
    /// Batch norms elsewhere in the model use the batch's statistics without moving their
    /// running averages (`vae_nn::hold_running_statistics`); nothing but `g` and `b` changes,
    /// and no gradients are recorded. Without
    /// a weight-normalized layer ([`uses_weight_norm`](Self::uses_weight_norm) false) it returns
    /// at once, drawing nothing. Calling it again on the same batch and noise sets the same
    /// values. A library user calls it once, before the first step of a fresh model;
    /// [`Trainer`](crate::Trainer) does, seeded from `train.seed` (NORMALIZATION §6).
    ///
    /// Errors: [`Error::Nets`](crate::Error::Nets) or [`Error::Flows`](crate::Error::Flows) carrying the layer's error when the batch has
    /// one image or gives non-finite pre-activations. Panics when `x` is not
    /// `[B, 1, 28, 28]`.
    pub fn data_dependent_init(&self, x: &Tensor) -> Result<()> {
        if !self.uses_weight_norm() {
            return Ok(());
        }
        // The whole pass inside the flow's scope, which also holds every batch norm's running
        // statistics; the encoder and decoder initialise themselves, the cMADEs during the
        // flow's training-mode pass.
        let pass = || -> Result<()> {
            let out = self.encoder.data_dependent_init(x)?;
            let context = self.context.as_ref().map(|c| c.forward_t(&out.h, true));
            let eps = Tensor::randn(out.mu.size(), (Kind::Float, out.mu.device()));
            let z0 = &out.mu + out.log_sigma.exp() * eps;
            let zt = match &self.flow {
                Some(flow) => flow.forward_t(&z0, context.as_ref(), true).0,
                None => z0,
            };
            let _logits = self.decoder.data_dependent_init(&zt)?;
            Ok(())
        };
        tch::no_grad(|| with_data_dependent_init(pass))?
    }
}

/// What [`Trainer`](crate::Trainer) runs before the first step of a fresh run (NORMALIZATION
/// §6): [`Vae::data_dependent_init`] on that step's batch `x`, with tch's generator seeded
/// from `seed` (the run's `train.seed`) for the noise, under vae-eval's RNG lock so that no
/// other thread draws in between. Reproducible given the seed and the batch; the step re-seeds
/// the generator itself afterwards. Does nothing (and takes no lock) for a model without weight
/// norm.
pub(crate) fn initialise_for_training(vae: &Vae, x: &Tensor, seed: u64) -> Result<()> {
    if !vae.uses_weight_norm() {
        return Ok(());
    }
    let _rng = vae_eval::rng_guard();
    tch::manual_seed(stream_seed(&[TAG_DATA_INIT, seed]) as i64);
    vae.data_dependent_init(x)
}
