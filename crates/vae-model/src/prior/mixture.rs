//! A mixture of diagonal Gaussians: the density of the `mog` prior and of the VampPrior
//! (PRIORS §3.1, §4.1).

use tch::{Kind, Tensor};
use vae_eval::model::diag_normal_log_density;

use super::LatentPrior;

/// `p(z) = Σ_k π_k N(z; μ_k, diag σ_k²)` with `K` components over `D` dimensions.
///
/// Holds `log π` `[K]`, `μ` `[K, D]` and `log σ` `[K, D]` (natural log of the standard
/// deviations), all in one kind on one device, with whatever autograd graph they carry.
#[derive(Debug)]
pub struct DiagMixture {
    log_weights: Tensor,
    means: Tensor,
    log_sigmas: Tensor,
}

impl DiagMixture {
    /// A mixture from unnormalised log-weights `[K]` (normalised here by a log-softmax), means
    /// `[K, D]` and log standard deviations `[K, D]`.
    ///
    /// Panics if the shapes disagree.
    pub fn new(log_weights: &Tensor, means: &Tensor, log_sigmas: &Tensor) -> DiagMixture {
        let k = log_weights.size();
        assert!(
            k.len() == 1
                && means.dim() == 2
                && means.size()[0] == k[0]
                && log_sigmas.size() == means.size(),
            "mixture shapes: log_weights {k:?}, means {:?}, log_sigmas {:?}",
            means.size(),
            log_sigmas.size()
        );
        DiagMixture {
            log_weights: log_weights.log_softmax(0, log_weights.kind()),
            means: means.shallow_clone(),
            log_sigmas: log_sigmas.shallow_clone(),
        }
    }

    /// Components `K`.
    pub fn components(&self) -> i64 {
        self.means.size()[0]
    }

    /// Normalised log-weights `log π` `[K]`.
    pub fn log_weights(&self) -> &Tensor {
        &self.log_weights
    }

    /// Component means `μ` `[K, D]`.
    pub fn means(&self) -> &Tensor {
        &self.means
    }

    /// Component log standard deviations `log σ` `[K, D]`.
    pub fn log_sigmas(&self) -> &Tensor {
        &self.log_sigmas
    }

    /// The same mixture in `kind` (e.g. f64 for quadrature), detached.
    pub fn to_kind(&self, kind: Kind) -> DiagMixture {
        DiagMixture {
            log_weights: self.log_weights.detach().to_kind(kind),
            means: self.means.detach().to_kind(kind),
            log_sigmas: self.log_sigmas.detach().to_kind(kind),
        }
    }

    /// The same mixture without autograd history: what a fixed model evaluates.
    pub fn detach(&self) -> DiagMixture {
        DiagMixture {
            log_weights: self.log_weights.detach(),
            means: self.means.detach(),
            log_sigmas: self.log_sigmas.detach(),
        }
    }
}

impl LatentPrior for DiagMixture {
    fn latent(&self) -> i64 {
        self.means.size()[1]
    }

    /// `logsumexp_k [log π_k + Σ_d log N(z_d; μ_kd, σ_kd²)]`, nats. Every component is
    /// evaluated against every row, `[..., K, D]` at once: exact in f32 (no expansion of the
    /// square, which would cancel badly for narrow components).
    fn log_prob(&self, z: &Tensor) -> Tensor {
        let per = diag_normal_log_density(&z.unsqueeze(-2), &self.means, &self.log_sigmas);
        (per + &self.log_weights).logsumexp([-1], false)
    }

    /// A component `k ~ Categorical(π)` per draw, then `μ_k + σ_k ⊙ ε`, `ε ~ N(0, I)`.
    fn sample(&self, n: i64) -> Tensor {
        tch::no_grad(|| {
            let k = self.log_weights.exp().multinomial(n, true);
            let mu = self.means.index_select(0, &k);
            let sigma = self.log_sigmas.index_select(0, &k).exp();
            &mu + sigma * mu.randn_like()
        })
    }

    /// `[K, D]` differences, scaled differences and squares, and what the gradient keeps: about
    /// four `K × D` f32 tensors per row.
    fn bytes_per_row(&self) -> u64 {
        16 * (self.components() * (self.latent() + 1)) as u64
    }
}
