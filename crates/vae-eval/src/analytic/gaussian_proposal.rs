//! The deliberately imperfect Gaussian proposal that [`LinearGaussian`](super::LinearGaussian) and
//! [`MogLinearGaussian`](super::MogLinearGaussian) share: a Gaussian around a posterior mean with
//! a posterior covariance `S`, shifted and scaled by a [`Proposal`], either through an affine flow
//! (`full_covariance`) or as a diagonal base with the identity flow.

use tch::{Device, Kind, Tensor};

use super::{LinearGaussianPosterior, Proposal};

/// The proposal's parts on the model's device, from `S` and the [`Proposal`].
#[derive(Debug)]
pub(crate) struct GaussianProposal {
    proposal: Proposal,
    /// `scale · chol(S)`, `[D, D]`, f32 on the model's device.
    flow_matrix: Tensor,
    /// `log |det flow_matrix|`.
    flow_log_det: f64,
    /// The diagonal base's `log_sigma`, `[D]`, f32 on the model's device.
    diag_log_sigma: Tensor,
}

impl GaussianProposal {
    /// From `post_cov` (`S`, `[D, D]`, f64, CPU, symmetric positive definite), on `device`.
    pub(crate) fn new(post_cov: &Tensor, proposal: Proposal, device: Device) -> Self {
        let flow64 = post_cov.linalg_cholesky(false) * proposal.scale;
        let flow_log_det = flow64
            .diagonal(0, 0, 1)
            .log()
            .sum(Kind::Double)
            .double_value(&[]);
        let diag_log_sigma = (post_cov.diagonal(0, 0, 1).sqrt() * proposal.scale).log();
        let on = |t: &Tensor| t.to_kind(Kind::Float).to_device(device);
        GaussianProposal {
            proposal,
            flow_matrix: on(&flow64),
            flow_log_det,
            diag_log_sigma: on(&diag_log_sigma),
        }
    }

    /// The proposal settings.
    pub(crate) fn settings(&self) -> Proposal {
        self.proposal
    }

    /// `AmortizedProposal::encode` from the posterior mean `[B, D]` (f64, CPU): the mean plus
    /// `mean_shift`, f32 on `device`.
    pub(crate) fn encode(&self, posterior_mean: Tensor, device: Device) -> LinearGaussianPosterior {
        let mean = posterior_mean + self.proposal.mean_shift;
        LinearGaussianPosterior {
            mean: mean.to_kind(Kind::Float).to_device(device),
        }
    }

    /// `AmortizedProposal::base`: `N(0, I)` before the affine flow, else the diagonal Gaussian.
    pub(crate) fn base(&self, posterior: &LinearGaussianPosterior) -> (Tensor, Tensor) {
        let mean = &posterior.mean;
        if self.proposal.full_covariance {
            (mean.zeros_like(), mean.zeros_like())
        } else {
            (mean.shallow_clone(), self.diag_log_sigma.expand_as(mean))
        }
    }

    /// `AmortizedProposal::flow`: `z = flow_matrix · z0 + mean` with its constant log-det, or the
    /// identity.
    pub(crate) fn flow(
        &self,
        posterior: &LinearGaussianPosterior,
        z0: &Tensor,
    ) -> (Tensor, Tensor) {
        let size = z0.size();
        let rows = &size[..size.len() - 1];
        if self.proposal.full_covariance {
            let z = z0.matmul(&self.flow_matrix.tr()) + &posterior.mean;
            let log_det = Tensor::full(rows, self.flow_log_det, (z0.kind(), z0.device()));
            (z, log_det)
        } else {
            (
                z0.shallow_clone(),
                Tensor::zeros(rows, (z0.kind(), z0.device())),
            )
        }
    }
}
