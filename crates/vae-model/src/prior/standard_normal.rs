//! The standard normal prior `N(0, I)` (PRIORS §2).

use tch::{Device, Kind, Tensor};
use vae_eval::model::standard_normal_log_density;

use super::LatentPrior;

/// `p(z) = N(z; 0, I_D)`: no parameters; the original's prior and the default (PRIORS §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardNormal {
    latent: i64,
    kind: Kind,
    device: Device,
}

impl StandardNormal {
    /// The standard normal over `latent` dimensions, sampling in `kind` on `device`.
    pub fn new(latent: i64, kind: Kind, device: Device) -> Self {
        StandardNormal {
            latent,
            kind,
            device,
        }
    }
}

impl LatentPrior for StandardNormal {
    fn latent(&self) -> i64 {
        self.latent
    }

    /// `Σ_d (−z_d²/2 − ½ ln 2π)`, nats.
    fn log_prob(&self, z: &Tensor) -> Tensor {
        standard_normal_log_density(z)
    }

    fn sample(&self, n: i64) -> Tensor {
        Tensor::randn([n, self.latent], (self.kind, self.device))
    }
}
