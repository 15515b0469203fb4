//! The radial flow (Rezende & Mohamed 2015), amortized (FLOWS §3).

use tch::{nn, Tensor};

use crate::amortize::Amortized;
use crate::error::Result;
use crate::planar::check_latent;

/// One radial layer (FLOWS §3):
///
/// ```text
/// r      = ‖z − z0‖,  h = 1 / (α + r)
/// z'     = z + β h (z − z0)
/// α      = softplus(α̂) > 0,  β = −α + softplus(β̂) > −α
/// logdet = (D − 1) log(1 + β h) + log(1 + β α h²)                       computed with log1p
/// ```
///
/// `z0 [D]`, `α̂` and `β̂` come per example from the context, or are shared learned values
/// without one. Variables: `<p>.{z0,alpha,beta}.bias` and, with a context,
/// `<p>.{z0,alpha,beta}.weight`.
#[derive(Debug)]
pub struct RadialStep {
    latent: i64,
    z0: Amortized,
    alpha: Amortized,
    beta: Amortized,
}

/// A radial layer's parameters for a batch, from [`RadialStep::params`].
#[derive(Debug)]
pub struct RadialParams {
    /// The centre `z0`, `[B, D]`.
    pub z0: Tensor,
    /// `α > 0`, `[B]`.
    pub alpha: Tensor,
    /// `β > −α`, `[B]`.
    pub beta: Tensor,
}

impl RadialStep {
    /// Builds the layer under `p`; a context of width `context_size` feeds it when
    /// `context_size > 0`. `z0` starts `U(−1/√D, 1/√D)`, `α̂` and `β̂` at 0 (so `α = ln 2`, and
    /// `β = 0` without a context: the identity).
    pub fn new(p: &nn::Path, latent: i64, context_size: i64) -> Result<RadialStep> {
        let a = 1.0 / (latent as f64).sqrt();
        Ok(RadialStep {
            latent,
            z0: Amortized::new(
                &(p / "z0"),
                latent,
                context_size,
                nn::Init::Uniform { lo: -a, up: a },
            )?,
            alpha: Amortized::new(&(p / "alpha"), 1, context_size, nn::Init::Const(0.0))?,
            beta: Amortized::new(&(p / "beta"), 1, context_size, nn::Init::Const(0.0))?,
        })
    }

    /// Trainable parameters of one layer: `(D + 2)(C + 1)` (FLOWS §3.4).
    pub fn parameter_count(latent: i64, context_size: i64) -> i64 {
        Amortized::parameter_count(latent + 2, context_size)
    }

    /// The constrained parameters for `batch` examples.
    pub fn params(&self, context: Option<&Tensor>, batch: i64) -> RadialParams {
        let alpha = self.alpha.forward(context, batch).squeeze_dim(1).softplus();
        let beta = self.beta.forward(context, batch).squeeze_dim(1).softplus() - &alpha;
        RadialParams {
            z0: self.z0.forward(context, batch),
            alpha,
            beta,
        }
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log|det ∂z'/∂z| [B])`, nats.
    ///
    /// Panics when `z` is not `[B, D]` or the context does not match.
    pub fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> (Tensor, Tensor) {
        let batch = check_latent(z, self.latent);
        let p = self.params(context, batch);
        let diff = z - &p.z0;
        let r = diff.square().sum_dim_intlist(1, false, None).sqrt();
        let h = (&p.alpha + r).reciprocal();
        let beta_h = &p.beta * &h;
        let z_out = z + beta_h.unsqueeze(1) * diff;
        let log_det =
            beta_h.log1p() * (self.latent - 1) as f64 + (&p.beta * &p.alpha * h.square()).log1p();
        (z_out, log_det)
    }

    /// The closed-form inverse (FLOWS §3.3): `z' − z0` is `z − z0` scaled by `1 + β h > 0`, so
    /// the direction is kept and `r = ‖z − z0‖` is the non-negative root of
    /// `r² + (α + β − r') r − α r' = 0`, `r' = ‖z' − z0‖`; then `z = z0 + (z' − z0) / (1 + β h(r))`.
    /// Gradients flow through it.
    pub fn inverse(&self, z_out: &Tensor, context: Option<&Tensor>) -> Tensor {
        let batch = check_latent(z_out, self.latent);
        let p = self.params(context, batch);
        let diff = z_out - &p.z0;
        let r_out = diff.square().sum_dim_intlist(1, false, None).sqrt();
        let k = &p.alpha + &p.beta - &r_out;
        let disc = (k.square() + &p.alpha * &r_out * 4.0).sqrt();
        // The root without cancellation for either sign of k.
        let r =
            ((&disc - &k) * 0.5).where_self(&k.lt(0.0), &(&p.alpha * &r_out * 2.0 / (&k + &disc)));
        let scale = &p.beta / (&p.alpha + r) + 1.0;
        &p.z0 + diff / scale.unsqueeze(1)
    }
}
