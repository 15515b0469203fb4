//! The mixture-of-Gaussians prior with learned components (PRIORS §3).

use tch::{nn, Tensor};

use super::mixture::DiagMixture;
use crate::error::Result;

/// `p(z) = Σ_k π_k N(z; μ_k, diag σ_k²)`, `π = softmax(logits)`, every parameter learned
/// (PRIORS §3).
///
/// Variables (under the path given to [`MogPrior::new`]): `means` `[K, D]`, `log_sigmas`
/// `[K, D]` (natural log of the standard deviations) and `logits` `[K]`.
///
/// Initialisation (PRIORS §3.2): means `N(0, ½)`, standard deviations `√½`, equal weights, so
/// that the initial mixture has mean 0 and covariance `I` in expectation over the draw of the
/// means, like the standard normal it replaces, while its components differ (equal means would
/// get equal gradients and never separate).
#[derive(Debug)]
pub struct MogPrior {
    means: Tensor,
    log_sigmas: Tensor,
    logits: Tensor,
}

impl MogPrior {
    /// `components` Gaussians over `latent` dimensions, variables under `p`; the means are drawn
    /// from tch's global generator.
    pub fn new(p: &nn::Path, latent: i64, components: i64) -> Result<MogPrior> {
        let half = std::f64::consts::FRAC_1_SQRT_2;
        let means = p.f_var(
            "means",
            &[components, latent],
            nn::Init::Randn {
                mean: 0.0,
                stdev: half,
            },
        )?;
        let log_sigmas = p.f_var(
            "log_sigmas",
            &[components, latent],
            nn::Init::Const(half.ln()),
        )?;
        let logits = p.f_var("logits", &[components], nn::Init::Const(0.0))?;
        Ok(MogPrior {
            means,
            log_sigmas,
            logits,
        })
    }

    /// Components `K`.
    pub fn components(&self) -> i64 {
        self.logits.size()[0]
    }

    /// The mixture with the current parameters (graph to them kept when gradients are on).
    pub fn mixture(&self) -> DiagMixture {
        DiagMixture::new(&self.logits, &self.means, &self.log_sigmas)
    }
}
