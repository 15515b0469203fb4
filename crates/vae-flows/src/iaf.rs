//! One IAF step: the gated update or the shift-only update (ORIGINAL §3.4.3).

use tch::{nn, Tensor};

use crate::cmade::{Cmade, CmadeParams};
use crate::config::{BatchNormSettings, FlowConfig};
use crate::error::Result;
use crate::mask::MaskOrder;

/// One inverse autoregressive flow step around its own [`Cmade`] (ORIGINAL §3.4.3).
///
/// Gated (default):
///
/// ```text
/// (m, s) = cMADE(z, c);  g = σ(s)
/// z'     = g ⊙ z + (1 − g) ⊙ m
/// logdet = Σ_d log σ(s_d)          computed as −softplus(−s), finite for any s (fixes D10)
/// ```
///
/// Shift-only: `z' = z + m`, log-det 0; the `s` head does not exist.
///
/// Because `m_b` and `s_b` depend only on the latents before `b` in the step's [`MaskOrder`], the
/// Jacobian `∂z'/∂z` is triangular with diagonal `σ(s)` (with BN statistics fixed, i.e. in eval
/// mode; in train mode the batch statistics couple examples and the original, like this code,
/// uses the per-example formula anyway, §3.4.3 note / D11).
#[derive(Debug)]
pub struct IafStep {
    made: Cmade,
}

impl IafStep {
    /// Builds the step's cMADE under `p / "made"`, so variables read `<p>.made.l0.weight`.
    /// `cfg.shift_only` selects the variant; see [`Cmade::new`] for the errors.
    pub fn new(
        p: &nn::Path,
        latent: i64,
        cfg: &FlowConfig,
        order: MaskOrder,
        bn: BatchNormSettings,
    ) -> Result<IafStep> {
        Ok(IafStep {
            made: Cmade::new(&(p / "made"), latent, cfg, order, bn)?,
        })
    }

    /// Wraps an existing cMADE; the step is shift-only exactly when the cMADE has no `s` head.
    pub fn from_cmade(made: Cmade) -> IafStep {
        IafStep { made }
    }

    /// The step's cMADE.
    pub fn made(&self) -> &Cmade {
        &self.made
    }

    /// The autoregressive direction of this step.
    pub fn order(&self) -> MaskOrder {
        self.made.order()
    }

    /// Whether this is the shift-only variant.
    pub fn shift_only(&self) -> bool {
        !self.made.has_scale()
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log|det ∂z'/∂z| [B], nats)`.
    ///
    /// Panics on shape or context mismatches, see [`Cmade::forward_t`].
    pub fn forward_t(&self, z: &Tensor, context: Option<&Tensor>, train: bool) -> (Tensor, Tensor) {
        self.forward_with(&self.made.live_params(), z, context, train)
    }

    /// [`forward_t`](Self::forward_t) with the cMADE's parameters given.
    pub(crate) fn forward_with(
        &self,
        params: &CmadeParams,
        z: &Tensor,
        context: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, Tensor) {
        let (m, s) = self.made.forward_with(params, z, context, train);
        match s {
            Some(s) => {
                // 1 − σ(s) = σ(−s), without cancellation when σ(s) ≈ 1.
                let z_out = s.sigmoid() * z + (-&s).sigmoid() * m;
                let log_det = -(-&s).softplus().sum_dim_intlist(-1, false, None);
                (z_out, log_det)
            }
            None => {
                let log_det = Tensor::zeros([z.size()[0]], (z.kind(), z.device()));
                (z + m, log_det)
            }
        }
    }

    /// The inverse in eval mode: finds `z` with `forward_t(z, context, false).0 == z_out`.
    ///
    /// Sequential fixed-point pass: starting from `z = z_out`, repeat `D` times
    /// `z ← (z_out − σ(−s(z)) ⊙ m(z)) / σ(s(z))` (shift-only: `z ← z_out − m(z)`). After pass
    /// `k` the first `k` latents in the step's order are exact, so `D` passes give the exact
    /// inverse (ORIGINAL D4). Cost: `D` cMADE evaluations, i.e. `D` times a forward pass,
    /// batched over examples. Gradients flow through it unless the caller wraps it in
    /// `tch::no_grad`; since every pass is exact the autograd result is the derivative of the
    /// inverse.
    pub fn inverse(&self, z_out: &Tensor, context: Option<&Tensor>) -> Tensor {
        let params = self.made.live_params();
        let mut z = z_out.shallow_clone();
        for _ in 0..self.made.latent() {
            let (m, s) = self.made.forward_with(&params, &z, context, false);
            z = match s {
                Some(s) => (z_out - (-&s).sigmoid() * m) / s.sigmoid(),
                None => z_out - m,
            };
        }
        z
    }
}
