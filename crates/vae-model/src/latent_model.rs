//! The VAE as vae-eval's [`LatentModel`](vae_eval::LatentModel): what the estimators (IS, AIS, BDMC) evaluate.
//!
//! Every method runs the networks in inference mode (BN with running statistics), so one
//! example's numbers do not depend on the rest of its chunk.

use tch::{Device, Kind, Tensor};
use vae_eval::model::{
    standard_normal_log_density, AmortizedProposal, DataSimulator, JointDensity,
};
use vae_flows::FrozenFlow;
use vae_nets::FrozenDecoder;

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
/// for the MLP decoder and the IAF flow): make a new one after training the VAE further.
#[derive(Debug)]
pub struct VaeLatentModel<'a> {
    vae: &'a Vae,
    decoder: Box<dyn FrozenDecoder + 'a>,
    flow: Option<FrozenFlow<'a>>,
    device: Device,
}

impl<'a> VaeLatentModel<'a> {
    /// Wraps `vae`, whose variables live on `device`.
    pub fn new(vae: &'a Vae, device: Device) -> Self {
        VaeLatentModel {
            vae,
            decoder: vae.freeze_decoder(),
            flow: vae.freeze_flow(),
            device,
        }
    }
}

impl JointDensity for VaeLatentModel<'_> {
    fn latent_dim(&self) -> i64 {
        self.vae.latent()
    }

    fn activation_bytes_per_row(&self) -> Option<u64> {
        Some(crate::cost::is_bytes_per_row(self.vae.config()))
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
        (standard_normal_log_density(z) - rec.view([s, b])).to_kind(z.kind())
    }

    /// The standard normal prior's density and its gradient `−z` in closed form: AIS needs it
    /// at every leapfrog step, where autograd's dozen small kernels cost more than the decoder
    /// of a small model on a GPU.
    fn log_prior_and_grad(&self, z: &Tensor) -> (Tensor, Tensor) {
        (standard_normal_log_density(z), -z)
    }

    fn grad_log_prior(&self, z: &Tensor) -> Tensor {
        -z
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
