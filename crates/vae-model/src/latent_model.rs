//! The VAE as vae-eval's [`LatentModel`](vae_eval::LatentModel): what the estimators (IS, AIS, BDMC) evaluate.
//!
//! Every method runs the networks in inference mode (BN with running statistics), so one
//! example's numbers do not depend on the rest of its chunk.
//!
//! The prior is the VAE's configured one (PRIORS §6.2): `log_joint`, `log_prior`, its gradient
//! and `sample_prior` all use it, so importance sampling, AIS (whose chains start from
//! `sample_prior` and follow `∇ log p(z)`) and BDMC (whose simulated data start there too)
//! estimate the likelihood of the model that was trained.

use tch::{Device, Kind, Tensor};
use vae_eval::model::{
    standard_normal_log_density, value_and_grad, AmortizedProposal, DataSimulator, JointDensity,
};
use vae_flows::FrozenFlow;
use vae_nets::FrozenDecoder;

use crate::prior::{LatentPrior, PriorDensity};
use crate::vae::Vae;

/// What [`AmortizedProposal::encode`] keeps per batch: `mu`, `log_sigma` `[B, D]` and the flow context
/// `[B, C]` when the flow has one.
#[derive(Debug)]
pub struct VaePosterior {
    mu: Tensor,
    log_sigma: Tensor,
    context: Option<Tensor>,
}

/// Flattens `[S, B, ...]` to `[S * B, ...]`.
fn flat(t: &Tensor) -> Tensor {
    t.flatten(0, 1)
}

/// Repeats a per-example tensor `[B, ...]` for `s` samples: `[S * B, ...]`, sample-major.
fn tile(t: &Tensor, s: i64) -> Tensor {
    let mut size = t.size();
    size.insert(0, s);
    t.unsqueeze(0).expand(&size, false).flatten(0, 1)
}

/// A VAE viewed as a latent-variable model on a device.
///
/// The decoder and the flow are frozen when the model is made ([`Vae::freeze_decoder`],
/// [`Vae::freeze_flow`]: copies with their batch norms folded into the layers before them,
/// for the MLP decoder and the IAF flow): make a new one after training the VAE further. So is
/// the prior's density: a mixture's components (the VampPrior's pseudo-inputs through the
/// encoder, once) are computed when the model is made, without gradient.
#[derive(Debug)]
pub struct VaeLatentModel<'a> {
    vae: &'a Vae,
    decoder: Box<dyn FrozenDecoder + 'a>,
    flow: Option<FrozenFlow<'a>>,
    prior: PriorDensity<'a>,
    device: Device,
}

impl<'a> VaeLatentModel<'a> {
    /// Wraps `vae`, whose variables live on `device`.
    pub fn new(vae: &'a Vae, device: Device) -> Self {
        let prior = tch::no_grad(|| match vae.prior_density() {
            PriorDensity::Mixture(m) => PriorDensity::Mixture(m.detach()),
            other => other,
        });
        VaeLatentModel {
            vae,
            decoder: vae.freeze_decoder(),
            flow: vae.freeze_flow(),
            prior,
            device,
        }
    }

    /// The prior the estimators see.
    pub fn prior(&self) -> &PriorDensity<'a> {
        &self.prior
    }
}

impl JointDensity for VaeLatentModel<'_> {
    fn latent_dim(&self) -> i64 {
        self.vae.latent()
    }

    fn activation_bytes_per_row(&self) -> Option<u64> {
        Some(crate::cost::is_bytes_per_row(self.vae.config()) + self.prior.bytes_per_row())
    }

    fn device(&self) -> Device {
        self.device
    }

    fn kind(&self) -> Kind {
        Kind::Float
    }

    fn log_joint(&self, x: &Tensor, z: &Tensor) -> Tensor {
        let (s, b) = (z.size()[0], z.size()[1]);
        let logits = self.decoder.forward(&flat(z));
        let rec = self.vae.reconstruction_loss(&logits, &tile(x, s));
        (self.log_prior(z) - rec.view([s, b])).to_kind(z.kind())
    }

    /// `log p(z)` of the configured prior, `[..., D]` to `[...]`, nats.
    fn log_prior(&self, z: &Tensor) -> Tensor {
        if self.prior.is_standard_normal() {
            standard_normal_log_density(z)
        } else {
            self.prior.log_prob(z)
        }
    }

    /// For the standard normal prior, the density and its gradient `−z` in closed form: AIS
    /// needs it at every leapfrog step, where autograd's dozen small kernels cost more than the
    /// decoder of a small model on a GPU. Any other prior by autograd through its `log_prob`.
    fn log_prior_and_grad(&self, z: &Tensor) -> (Tensor, Tensor) {
        if self.prior.is_standard_normal() {
            (standard_normal_log_density(z), -z)
        } else {
            value_and_grad(z, |z| self.prior.log_prob(z))
        }
    }

    fn grad_log_prior(&self, z: &Tensor) -> Tensor {
        if self.prior.is_standard_normal() {
            -z
        } else {
            self.log_prior_and_grad(z).1
        }
    }

    /// `n` draws of the configured prior's sampler, `[n, D]`, on the model's device.
    fn sample_prior(&self, n: i64) -> Tensor {
        if self.prior.is_standard_normal() {
            Tensor::randn([n, self.vae.latent()], (self.kind(), self.device))
        } else {
            self.prior.sample(n).to_device(self.device)
        }
    }
}

impl AmortizedProposal for VaeLatentModel<'_> {
    type Posterior = VaePosterior;

    fn encode(&self, x: &Tensor) -> VaePosterior {
        let (mu, log_sigma, context) = self.vae.encode(x, false);
        VaePosterior {
            mu,
            log_sigma,
            context,
        }
    }

    fn base(&self, posterior: &VaePosterior) -> (Tensor, Tensor) {
        (
            posterior.mu.shallow_clone(),
            posterior.log_sigma.shallow_clone(),
        )
    }

    fn flow(&self, posterior: &VaePosterior, z0: &Tensor) -> (Tensor, Tensor) {
        let (s, b, d) = (z0.size()[0], z0.size()[1], z0.size()[2]);
        let ctx = posterior.context.as_ref().map(|c| tile(c, s));
        let (z, log_det) = match &self.flow {
            Some(flow) => flow.forward(&flat(z0), ctx.as_ref()),
            None => self.vae.flow(&flat(z0), ctx.as_ref(), false),
        };
        (z.view([s, b, d]), log_det.view([s, b]))
    }
}

impl DataSimulator for VaeLatentModel<'_> {
    fn sample_data(&self, z: &Tensor) -> Tensor {
        self.decoder.forward(z).sigmoid().bernoulli()
    }
}
