//! The planar flow (Rezende & Mohamed 2015), amortized (FLOWS §2).

use tch::{nn, Tensor};

use crate::amortize::Amortized;
use crate::error::Result;
use crate::root::solve_increasing;

/// `‖w‖²` is floored here before dividing, so that `w = 0` gives a finite `û` (FLOWS §2.1).
const W_SQ_MIN: f64 = 1e-12;

/// One planar layer (FLOWS §2):
///
/// ```text
/// z'     = z + û tanh(wᵀz + b)
/// û      = u + (m(wᵀu) − wᵀu) w / ‖w‖²,   m(x) = −1 + softplus(x)       so wᵀû = m(wᵀu) > −1
/// logdet = log(1 + (1 − tanh²(wᵀz + b)) wᵀû)                           computed with log1p
/// ```
///
/// `u`, `w` (`[D]` each) and `b` (a scalar) come per example from the context
/// (`W c + bias`), or are shared learned vectors without a context. Variables:
/// `<p>.{u,w,b}.bias` and, with a context, `<p>.{u,w,b}.weight` (`[D, C]`, `[D, C]`, `[1, C]`).
#[derive(Debug)]
pub struct PlanarStep {
    latent: i64,
    u: Amortized,
    w: Amortized,
    b: Amortized,
}

/// A planar layer's parameters for a batch, from [`PlanarStep::params`].
#[derive(Debug)]
pub struct PlanarParams {
    /// The constrained `û`, `[B, D]`.
    pub u_hat: Tensor,
    /// `w`, `[B, D]`.
    pub w: Tensor,
    /// `b`, `[B]`.
    pub b: Tensor,
    /// `wᵀû = m(wᵀu) > −1`, `[B]`, from its closed form (equal to `(w ⊙ û).sum(1)` to
    /// rounding).
    pub wu_hat: Tensor,
}

impl PlanarStep {
    /// Builds the layer for latent size `latent` under `p`; a context of width `context_size`
    /// feeds it when `context_size > 0`. `u` and `w` start `U(−1/√D, 1/√D)`, `b` at 0.
    pub fn new(p: &nn::Path, latent: i64, context_size: i64) -> Result<PlanarStep> {
        let a = 1.0 / (latent as f64).sqrt();
        let init = nn::Init::Uniform { lo: -a, up: a };
        Ok(PlanarStep {
            latent,
            u: Amortized::new(&(p / "u"), latent, context_size, init)?,
            w: Amortized::new(&(p / "w"), latent, context_size, init)?,
            b: Amortized::new(&(p / "b"), 1, context_size, nn::Init::Const(0.0))?,
        })
    }

    /// Trainable parameters of one layer: `(2D + 1)(C + 1)` (FLOWS §2.4).
    pub fn parameter_count(latent: i64, context_size: i64) -> i64 {
        Amortized::parameter_count(2 * latent + 1, context_size)
    }

    /// The parameters for `batch` examples with contexts `context [B, C]` (`None` without a
    /// context), `û` already constrained.
    pub fn params(&self, context: Option<&Tensor>, batch: i64) -> PlanarParams {
        let u = self.u.forward(context, batch);
        let w = self.w.forward(context, batch);
        let b = self.b.forward(context, batch).squeeze_dim(1);
        let wu = (&w * &u).sum_dim_intlist(1, false, None);
        let w_sq = (&w * &w).sum_dim_intlist(1, false, None);
        let m = wu.softplus() - 1.0;
        // (m − wᵀu) / ‖w‖², with the floor; wᵀû = wᵀu + that · ‖w‖².
        let coef = (&m - &wu) / w_sq.clamp_min(W_SQ_MIN);
        let u_hat = u + coef.unsqueeze(1) * &w;
        // Exactly m where ‖w‖² is above the floor (no rounding below −1), else its value.
        let floored = &wu + coef * &w_sq;
        let wu_hat = m.where_self(&w_sq.ge(W_SQ_MIN), &floored);
        PlanarParams {
            u_hat,
            w,
            b,
            wu_hat,
        }
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log|det ∂z'/∂z| [B])`, nats.
    ///
    /// Panics when `z` is not `[B, D]` or the context does not match.
    pub fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> (Tensor, Tensor) {
        let batch = check_latent(z, self.latent);
        let p = self.params(context, batch);
        let t = ((&p.w * z).sum_dim_intlist(1, false, None) + &p.b).tanh();
        let z_out = z + &p.u_hat * t.unsqueeze(1);
        // h' = 1 − tanh² ∈ [0, 1] and wᵀû > −1, so the argument stays above −1.
        let log_det = ((-t.square() + 1.0) * &p.wu_hat).log1p();
        (z_out, log_det)
    }

    /// The inverse (FLOWS §2.3): `z` with `forward(z, context).0 == z_out`. With `α = wᵀz`,
    /// `wᵀz' = α + wᵀû tanh(α + b)` is strictly increasing in `α` (its derivative is
    /// `1 + (1 − tanh²) wᵀû > 0`), so `α` is found by root finding on
    /// `[wᵀz' − |wᵀû|, wᵀz' + |wᵀû|]`, and `z = z' − û tanh(α + b)`. Runs without gradients.
    pub fn inverse(&self, z_out: &Tensor, context: Option<&Tensor>) -> Tensor {
        let batch = check_latent(z_out, self.latent);
        tch::no_grad(|| {
            let p = self.params(context, batch);
            let target = (&p.w * z_out).sum_dim_intlist(1, false, None);
            let c = &p.wu_hat;
            let g = |alpha: &Tensor| {
                let t = (alpha + &p.b).tanh();
                (alpha + c * &t, (-t.square() + 1.0) * c + 1.0)
            };
            let spread = c.abs();
            let alpha = solve_increasing(g, &target, &(&target - &spread), &(&target + &spread));
            z_out - &p.u_hat * (alpha + &p.b).tanh().unsqueeze(1)
        })
    }
}

/// Checks `z` is `[B, latent]` and returns `B`; panics with both shapes otherwise.
pub(crate) fn check_latent(z: &Tensor, latent: i64) -> i64 {
    let size = z.size();
    assert!(
        size.len() == 2 && size[1] == latent,
        "flow expects z of shape [batch, {latent}], got {size:?}"
    );
    size[0]
}
