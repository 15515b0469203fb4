//! The whole flow: a stack of IAF steps with alternating order, or identity layers.

use tch::{nn, Tensor};

use crate::cmade::{checked_masks, Cmade, CmadeParams};
use crate::config::{BatchNormSettings, FlowConfig, FlowKind};
use crate::error::{Error, Result};
use crate::iaf::IafStep;
use crate::mask::MaskOrder;

#[derive(Debug)]
enum Layers {
    Iaf(Vec<IafStep>),
    Identity(usize),
}

/// The posterior flow `z0 → zT` (ORIGINAL §2, §3.4): `layers` [`IafStep`]s, step `t` using
/// [`MaskOrder::for_layer`]`(t)` (natural, reversed, natural, …; the latent is never permuted), each
/// with its own cMADE and the same context; or `layers` identity layers.
///
/// Variables live under `p / "step{t}" / "made"`, so with `p = vs.root() / "flow"` the keys read
/// `flow.step3.made.l0.weight`.
#[derive(Debug)]
pub struct Flow {
    latent: i64,
    layers: Layers,
    context_size: Option<i64>,
}

impl Flow {
    /// Builds the flow for latent size `latent`.
    ///
    /// Errors (never panics on bad settings): [`Error::InvalidConfig`] for a non-positive latent
    /// size, zero layers, empty or non-positive hidden widths, a negative context size or bad BN
    /// settings; [`Error::SnfContextSize`] when SNF-like context has `context_size != hidden[0]`;
    /// [`Error::Indivisible`] and [`Error::NotAutoregressive`] for widths that give no valid
    /// masks.
    ///
    /// The identity flow builds no variables and consumes no context, whatever `context_size`
    /// says (fixes D21: the caller builds no context predictor when
    /// [`context_size`](Self::context_size) is `None`).
    pub fn new(p: &nn::Path, latent: i64, cfg: &FlowConfig, bn: BatchNormSettings) -> Result<Flow> {
        if latent <= 0 {
            return Err(Error::InvalidConfig {
                field: "latent",
                value: latent.to_string(),
                expected: "a positive latent size",
            });
        }
        cfg.validate()?;
        bn.validate()?;
        let layers = match cfg.kind {
            FlowKind::Identity => Layers::Identity(cfg.layers),
            FlowKind::Iaf => {
                // Both orders' masks once, shared by all steps.
                let natural = checked_masks(latent, cfg, MaskOrder::Natural, bn)?;
                let reversed = checked_masks(latent, cfg, MaskOrder::Reversed, bn)?;
                let steps = (0..cfg.layers)
                    .map(|t| {
                        let order = MaskOrder::for_layer(t);
                        let masks = match order {
                            MaskOrder::Natural => &natural,
                            MaskOrder::Reversed => &reversed,
                        };
                        let made = Cmade::from_masks(
                            &(p / format!("step{t}") / "made"),
                            latent,
                            masks,
                            order,
                            cfg,
                            bn,
                        )?;
                        Ok(IafStep::from_cmade(made))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Layers::Iaf(steps)
            }
        };
        Ok(Flow {
            latent,
            layers,
            context_size: cfg.uses_context().then_some(cfg.context_size),
        })
    }

    /// The latent size `D`.
    pub fn latent(&self) -> i64 {
        self.latent
    }

    /// The context width every step consumes, `None` when no layer consumes a context (no
    /// context configured, or the identity flow).
    pub fn context_size(&self) -> Option<i64> {
        self.context_size
    }

    /// The IAF steps, in forward order (empty for the identity flow).
    pub fn steps(&self) -> &[IafStep] {
        match &self.layers {
            Layers::Iaf(steps) => steps,
            Layers::Identity(_) => &[],
        }
    }

    /// Number of layers (IAF steps or identity layers).
    pub fn num_layers(&self) -> usize {
        match &self.layers {
            Layers::Iaf(steps) => steps.len(),
            Layers::Identity(n) => *n,
        }
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log|det ∂z'/∂z| [B])`: the log-det in nats,
    /// summed over dimensions and layers (the original keeps `[B, D]` and sums in the KL, §3.4;
    /// the sum is the same).
    ///
    /// Pass `context` exactly when [`context_size`](Self::context_size) is `Some` (the identity
    /// flow ignores it). `train` switches every BN between batch statistics (updating the running
    /// averages) and running statistics. Only eval mode is per-example. The identity flow
    /// returns `z` itself (a shallow clone) and zeros.
    ///
    /// Panics when `z` is not `[B, D]` or the context does not match, with both shapes.
    pub fn forward_t(&self, z: &Tensor, context: Option<&Tensor>, train: bool) -> (Tensor, Tensor) {
        self.compose(z, |_, step, z| step.forward_t(z, context, train))
    }

    /// The evaluation-mode flow `forward_t(·, ·, false)` with the current parameters and each
    /// cMADE's batch norms folded into its masked layers (ORIGINAL §3.4.2 places a BN after every
    /// masked layer; in evaluation mode each is an affine map per unit): one `addmm` per layer
    /// where there were a product and a batch-norm kernel, and the masks applied once, not per
    /// call. For code that runs a fixed model many times (IS: `k` samples per image). The copy
    /// does not follow later training.
    pub fn freeze(&self) -> FrozenFlow<'_> {
        FrozenFlow {
            flow: self,
            params: (self.steps().iter())
                .map(|step| step.made().folded_params())
                .collect(),
        }
    }

    /// Runs the steps in order through `step_forward(t, step, z)`, summing the log-dets.
    fn compose(
        &self,
        z: &Tensor,
        step_forward: impl Fn(usize, &IafStep, &Tensor) -> (Tensor, Tensor),
    ) -> (Tensor, Tensor) {
        let size = z.size();
        assert!(
            size.len() == 2 && size[1] == self.latent,
            "flow expects z of shape [batch, {}], got {size:?}",
            self.latent
        );
        let mut log_det = Tensor::zeros([size[0]], (z.kind(), z.device()));
        let mut z = z.shallow_clone();
        for (t, step) in self.steps().iter().enumerate() {
            let (z_next, step_log_det) = step_forward(t, step, &z);
            z = z_next;
            log_det += step_log_det;
        }
        (z, log_det)
    }

    /// The inverse in eval mode: `z` with `forward_t(z, context, false).0 == z_out`, `[B, D]`.
    ///
    /// Layers run in reverse order, each by [`IafStep::inverse`]'s sequential fixed-point pass.
    /// Cost: `layers × D` cMADE evaluations, i.e. about `D` times a forward pass (512 cMADE
    /// passes for the defaults), batched over examples. Gradients flow unless the caller wraps
    /// it in `tch::no_grad`.
    pub fn inverse(&self, z_out: &Tensor, context: Option<&Tensor>) -> Tensor {
        let size = z_out.size();
        assert!(
            size.len() == 2 && size[1] == self.latent,
            "flow expects z of shape [batch, {}], got {size:?}",
            self.latent
        );
        self.steps()
            .iter()
            .rev()
            .fold(z_out.shallow_clone(), |z, step| step.inverse(&z, context))
    }

    /// The inverse and the forward log-det at the recovered point, in eval mode:
    /// `(z [B, D], log|det ∂z_out/∂z| [B])`. With it, `log q(z_out) = log q0(z) − log_det`.
    pub fn inverse_with_log_det(
        &self,
        z_out: &Tensor,
        context: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let z = self.inverse(z_out, context);
        let (_, log_det) = self.forward_t(&z, context, false);
        (z, log_det)
    }
}

/// A [`Flow`] in evaluation mode with its batch norms folded, from [`Flow::freeze`].
#[derive(Debug)]
pub struct FrozenFlow<'a> {
    flow: &'a Flow,
    /// Each step's folded cMADE parameters.
    params: Vec<CmadeParams>,
}

impl FrozenFlow<'_> {
    /// As [`Flow::forward_t`]`(z, context, false)` at the time of freezing, to rounding (the
    /// folded batch norms reorder the arithmetic): `z [B, D]`, `context [B, C]` →
    /// `(z' [B, D], log|det ∂z'/∂z| [B])`, nats. Gradients flow to `z` and `context` only.
    /// Panics as `forward_t` does.
    pub fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> (Tensor, Tensor) {
        self.flow.compose(z, |t, step, z| {
            step.forward_with(&self.params[t], z, context, false)
        })
    }
}
