//! The VampPrior: a mixture of the encoder's Gaussian base at learned pseudo-inputs (PRIORS §4).

use tch::{nn, Tensor};

use super::mixture::DiagMixture;
use super::BaseEncoder;
use crate::error::Result;

/// The shape of one pseudo-input, `[1, 28, 28]`: an image as the encoder takes it.
pub const PSEUDO_INPUT_SHAPE: [i64; 3] = [1, 28, 28];

/// `p(z) = (1/K) Σ_k q0(z | u_k)`, with `q0(z | x) = N(z; mu(x), diag sigma(x)²)` the encoder's
/// Gaussian base and `u_k` `K` learned images (PRIORS §4).
///
/// Variable (under the path given to [`VampPrior::new`]): `pseudo_inputs` `[K, 1, 28, 28]`,
/// unconstrained; the images are `u = σ(pseudo_inputs)`, in `(0, 1)` like pixel intensities
/// (PRIORS §4.1). Initialised `N(0, 1)`, so that the images start as different grey noise around
/// 0.5 (PRIORS §4.3).
///
/// Only the Gaussian base enters, not the posterior flow (PRIORS §4.2): the base density is
/// closed-form, so `log p(z)` costs one pass of the encoder over the pseudo-inputs for any number
/// of `z`, whereas `q(z | u_k)` through the IAF would need the flow's inverse (`D` passes) for
/// every `z` and `k`.
#[derive(Debug)]
pub struct VampPrior {
    raw: Tensor,
}

impl VampPrior {
    /// `pseudo_inputs` pseudo-inputs under `p`, drawn from tch's global generator. (The latent
    /// size is the encoder's.)
    pub fn new(p: &nn::Path, pseudo_inputs: i64) -> Result<VampPrior> {
        let mut shape = vec![pseudo_inputs];
        shape.extend(PSEUDO_INPUT_SHAPE);
        let raw = p.f_var(
            "pseudo_inputs",
            &shape,
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        Ok(VampPrior { raw })
    }

    /// Pseudo-inputs `K`.
    pub fn len(&self) -> i64 {
        self.raw.size()[0]
    }

    /// Always false: a VampPrior has at least one pseudo-input.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pseudo-input images `σ(pseudo_inputs)`, `[K, 1, 28, 28]`, in `(0, 1)`.
    pub fn pseudo_inputs(&self) -> Tensor {
        self.raw.sigmoid()
    }

    /// The mixture `(1/K) Σ_k N(mu(u_k), diag sigma(u_k)²)` with `(mu, log_sigma) =
    /// encoder(u)`, `u` the pseudo-input images (one call on all `K`). The graph to the
    /// pseudo-inputs and the encoder's weights is kept when gradients are on.
    ///
    /// Panics if `encoder` returns anything but two `[K, D]` tensors.
    pub fn mixture(&self, encoder: BaseEncoder<'_>) -> DiagMixture {
        let u = self.pseudo_inputs();
        let (mu, log_sigma) = encoder(&u);
        let log_weights = Tensor::zeros([mu.size()[0]], (mu.kind(), mu.device()));
        DiagMixture::new(&log_weights, &mu, &log_sigma)
    }
}
