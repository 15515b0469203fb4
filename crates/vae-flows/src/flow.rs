//! The whole flow: a stack of layers, each of its own kind (FLOWS §1): IAF steps with
//! alternating order, identity layers, and the planar, radial, Householder, Sylvester and NAF
//! layers.

use tch::{nn, Tensor};

use crate::cmade::{checked_masks, Cmade, CmadeParams};
use crate::config::{BatchNormSettings, FlowConfig, FlowKind};
use crate::error::{Error, Result};
use crate::iaf::IafStep;
use crate::mask::MaskOrder;
use crate::step::{FlowLayer, Layer};

/// The posterior flow `z0 → zT` (ORIGINAL §2, §3.4; FLOWS §1): `layers` layers, layer `t` of
/// kind [`FlowConfig::layer_kinds`]`[t]`, all fed the same context.
///
/// IAF and NAF layers use [`MaskOrder::for_layer`]`(t)` (natural, reversed, natural, …; the
/// latent is never permuted), triangular Sylvester layers the matching permutation, so a pure
/// IAF stack is the original's. Variables live under `p / "step{t}"`: with
/// `p = vs.root() / "flow"` an IAF step's keys read `flow.step3.made.l0.weight`, a planar
/// layer's `flow.step0.u.bias`.
#[derive(Debug)]
pub struct Flow {
    latent: i64,
    /// The IAF steps in forward order (the layers refer to them by index).
    iaf: Vec<IafStep>,
    layers: Vec<Layer>,
    kinds: Vec<FlowKind>,
    context_size: Option<i64>,
}

impl Flow {
    /// Builds the flow for latent size `latent`.
    ///
    /// Errors (never panics on bad settings): [`Error::InvalidConfig`] for a non-positive latent
    /// size, zero layers, empty or non-positive hidden widths (IAF, NAF), a negative context
    /// size, bad BN settings or a kind-specific setting out of range (naming the field);
    /// [`Error::LayersMismatch`] for a `kind` list without `layers` entries;
    /// [`Error::LatentSetting`] for `sylvester_vectors > latent`; [`Error::SnfContextSize`]
    /// when SNF-like context has `context_size != hidden[0]` (IAF, NAF);
    /// [`Error::Indivisible`] and [`Error::NotAutoregressive`] for widths that give no valid
    /// masks.
    ///
    /// Identity layers build no variables and consume no context; a flow of identity layers
    /// only consumes none, whatever `context_size` says (fixes D21: the caller builds no context
    /// predictor when [`context_size`](Self::context_size) is `None`).
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
        let kinds = cfg.layer_kinds();
        let uses_iaf = kinds.contains(&FlowKind::Iaf);
        // Both orders' masks once, shared by all IAF steps.
        let masks = |order| -> Result<_> {
            Ok(if uses_iaf {
                checked_masks(latent, cfg, order, bn)?
            } else {
                Vec::new()
            })
        };
        let (natural, reversed) = (masks(MaskOrder::Natural)?, masks(MaskOrder::Reversed)?);
        let mut iaf = Vec::new();
        let mut layers = Vec::with_capacity(kinds.len());
        for (t, kind) in kinds.iter().enumerate() {
            let step = p / format!("step{t}");
            let layer = if *kind == FlowKind::Iaf {
                let order = MaskOrder::for_layer(t);
                let masks = match order {
                    MaskOrder::Natural => &natural,
                    MaskOrder::Reversed => &reversed,
                };
                let made = Cmade::from_masks(&(&step / "made"), latent, masks, order, cfg, bn)?;
                iaf.push(IafStep::from_cmade(made));
                Layer::Iaf(iaf.len() - 1)
            } else {
                Layer::build(&step, t, kind, latent, cfg)?
            };
            layers.push(layer);
        }
        Ok(Flow {
            latent,
            iaf,
            layers,
            kinds,
            context_size: cfg.uses_context().then_some(cfg.context_size),
        })
    }

    /// The latent size `D`.
    pub fn latent(&self) -> i64 {
        self.latent
    }

    /// The context width every layer consumes, `None` when no layer consumes a context (no
    /// context configured, or identity layers only).
    pub fn context_size(&self) -> Option<i64> {
        self.context_size
    }

    /// The IAF steps, in forward order (empty when no layer is an IAF step); all layers of
    /// any kind are in [`layers`](Self::layers).
    pub fn steps(&self) -> &[IafStep] {
        &self.iaf
    }

    /// Every layer in forward order, borrowed.
    pub fn layers(&self) -> Vec<FlowLayer<'_>> {
        (self.layers.iter())
            .map(|layer| match layer {
                Layer::Iaf(i) => FlowLayer::Iaf(&self.iaf[*i]),
                Layer::Identity => FlowLayer::Identity,
                Layer::Planar(s) => FlowLayer::Planar(s),
                Layer::Radial(s) => FlowLayer::Radial(s),
                Layer::Householder(s) => FlowLayer::Householder(s),
                Layer::Sylvester(s) => FlowLayer::Sylvester(s),
                Layer::Naf(s) => FlowLayer::Naf(s),
            })
            .collect()
    }

    /// The kind of every layer, in forward order (single kinds).
    pub fn layer_kinds(&self) -> &[FlowKind] {
        &self.kinds
    }

    /// Number of layers (of every kind, identity layers included).
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log|det ∂z'/∂z| [B])`: the log-det in nats,
    /// summed over dimensions and layers (the original keeps `[B, D]` and sums in the KL, §3.4;
    /// the sum is the same).
    ///
    /// Pass `context` exactly when [`context_size`](Self::context_size) is `Some` (identity
    /// layers ignore it). `train` switches every IAF batch norm between batch statistics
    /// (updating the running averages) and running statistics; the other kinds have no batch
    /// norm. Only eval mode is per-example. A flow of identity layers returns `z` itself (a
    /// shallow clone) and zeros.
    ///
    /// Panics when `z` is not `[B, D]` or the context does not match, with both shapes.
    pub fn forward_t(&self, z: &Tensor, context: Option<&Tensor>, train: bool) -> (Tensor, Tensor) {
        self.compose(z, context, train, None)
    }

    /// The evaluation-mode flow `forward_t(·, ·, false)` with the current parameters and each
    /// IAF cMADE's batch norms folded into its masked layers (ORIGINAL §3.4.2 places a BN after
    /// every masked layer; in evaluation mode each is an affine map per unit): one `addmm` per
    /// layer where there were a product and a batch-norm kernel, and the masks applied once, not
    /// per call. Layers of other kinds have no batch norm and run their live forward pass. For
    /// code that runs a fixed model many times (IS: `k` samples per image). The folded copy
    /// does not follow later training.
    pub fn freeze(&self) -> FrozenFlow<'_> {
        FrozenFlow {
            flow: self,
            params: (self.iaf.iter())
                .map(|step| step.made().folded_params())
                .collect(),
        }
    }

    /// Runs the layers in order, summing the log-dets; IAF steps with `folded` parameters
    /// (evaluation mode) when given.
    fn compose(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        train: bool,
        folded: Option<&[CmadeParams]>,
    ) -> (Tensor, Tensor) {
        let batch = crate::planar::check_latent(z, self.latent);
        let mut log_det = Tensor::zeros([batch], (z.kind(), z.device()));
        let mut z = z.shallow_clone();
        for layer in &self.layers {
            let (z_next, layer_log_det) = match layer {
                Layer::Iaf(i) => {
                    let step = &self.iaf[*i];
                    match folded {
                        Some(params) => step.forward_with(&params[*i], &z, context, false),
                        None => step.forward_t(&z, context, train),
                    }
                }
                other => other
                    .forward(&z, context)
                    .expect("only IAF layers are run by the flow itself"),
            };
            z = z_next;
            log_det += layer_log_det;
        }
        (z, log_det)
    }

    /// Whether [`inverse`](Self::inverse) is available: no layer is a Sylvester layer.
    pub fn has_inverse(&self) -> bool {
        self.kinds.iter().all(FlowKind::has_inverse)
    }

    /// The inverse in eval mode: `z` with `forward_t(z, context, false).0 == z_out`, `[B, D]`
    /// (FLOWS §1.5).
    ///
    /// Layers run in reverse order. IAF steps by [`IafStep::inverse`]'s sequential fixed-point
    /// pass (`D` cMADE evaluations each, about `D` times a forward pass: 512 cMADE passes for the
    /// defaults), exact; Householder layers exactly and radial layers in closed form; planar and
    /// NAF layers by root finding (FLOWS §2.3, §6.4), to rounding and without gradients.
    /// Batched over examples. Gradients flow through the IAF, radial and Householder inverses
    /// unless the caller wraps the call in `tch::no_grad`.
    ///
    /// Returns [`Error::NoInverse`] (naming the first such layer) when a layer is a Sylvester
    /// layer, before computing anything. Panics when `z_out` is not `[B, D]`.
    pub fn inverse(&self, z_out: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        crate::planar::check_latent(z_out, self.latent);
        if let Some(layer) = self.kinds.iter().position(|k| !k.has_inverse()) {
            return Err(Error::NoInverse {
                layer,
                kind: self.kinds[layer].clone(),
            });
        }
        let mut z = z_out.shallow_clone();
        for layer in self.layers.iter().rev() {
            z = match layer {
                Layer::Iaf(i) => self.iaf[*i].inverse(&z, context),
                other => other
                    .inverse(&z, context)
                    .expect("checked above: every non-IAF layer has an inverse"),
            };
        }
        Ok(z)
    }

    /// The inverse and the forward log-det at the recovered point, in eval mode:
    /// `(z [B, D], log|det ∂z_out/∂z| [B])`. With it, `log q(z_out) = log q0(z) − log_det`.
    /// Errors as [`inverse`](Self::inverse).
    pub fn inverse_with_log_det(
        &self,
        z_out: &Tensor,
        context: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let z = self.inverse(z_out, context)?;
        let (_, log_det) = self.forward_t(&z, context, false);
        Ok((z, log_det))
    }
}

/// A [`Flow`] in evaluation mode with its IAF batch norms folded, from [`Flow::freeze`].
#[derive(Debug)]
pub struct FrozenFlow<'a> {
    flow: &'a Flow,
    /// Each IAF step's folded cMADE parameters.
    params: Vec<CmadeParams>,
}

impl FrozenFlow<'_> {
    /// As [`Flow::forward_t`]`(z, context, false)` at the time of freezing, to rounding (the
    /// folded batch norms reorder the arithmetic): `z [B, D]`, `context [B, C]` →
    /// `(z' [B, D], log|det ∂z'/∂z| [B])`, nats. Gradients flow to `z` and `context`, and to the
    /// parameters of the layers that are not IAF steps (they run live). Panics as `forward_t`
    /// does.
    pub fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> (Tensor, Tensor) {
        self.flow.compose(z, context, false, Some(&self.params))
    }
}
