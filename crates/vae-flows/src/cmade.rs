//! The conditional MADE of one flow step (ORIGINAL §3.4.2), with batch norm, weight norm or
//! neither after its masked layers (NORMALIZATION §4).

use std::cell::RefCell;

use tch::nn;
use tch::Tensor;
use vae_nn::{hold_running_statistics, BatchNorm, Normalization, WeightNorm};

use crate::config::{BatchNormSettings, ContextMode, FlowConfig};
use crate::error::{Error, Result};
use crate::layers::{glorot, MaskedLinear};
use crate::mask::{made_masks, Mask, MaskOrder};

/// β init of the `s`-output BN, so that `s ≈ 3` and `σ(s) ≈ 0.953` at the start (§3.4.2).
pub const S_BN_BETA_INIT: f64 = 3.0;
/// Init of the `s`-output bias when the cMADE has no BN, so that `σ(s) ≈ 0.881` (§2.2, §3.4.2).
pub const S_BIAS_INIT: f64 = 2.0;

thread_local! {
    /// `Some` inside [`with_data_dependent_init`] on this thread, holding the first error.
    static DATA_INIT: RefCell<Option<Option<Error>>> = const { RefCell::new(None) };
}

/// Runs `f` with data-dependent initialisation on (NORMALIZATION §3): every weight-normalized
/// cMADE that runs a training-mode forward pass on this thread inside `f` first sets its `g`
/// and `b` from that pass's inputs ([`Cmade::data_dependent_init`]), then computes the pass
/// with them. One training-mode pass of a whole [`crate::Flow`] inside `f` thus initialises
/// its cMADEs in network order, each on the output of the layers before it (whatever their
/// kinds) after their own initialisation. Batch norms inside `f` normalise by batch statistics
/// without moving their running averages ([`hold_running_statistics`]); cMADEs with batch norm
/// or none have nothing to set.
///
/// Returns `f`'s value, or the first initialisation error (too small a batch, non-finite
/// pre-activations): the pass that hit it carries on with the layer as it was. A nested call
/// runs its `f` in the outer scope, whose call returns any error.
pub fn with_data_dependent_init<T>(f: impl FnOnce() -> T) -> Result<T> {
    if data_init_active() {
        return Ok(hold_running_statistics(f));
    }
    /// Ends the scope when `f` returns or panics.
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            DATA_INIT.with(|d| d.borrow_mut().take());
        }
    }
    DATA_INIT.with(|d| *d.borrow_mut() = Some(None));
    let scope = Scope;
    let value = hold_running_statistics(f);
    let error = DATA_INIT.with(|d| d.borrow_mut().take().flatten());
    drop(scope);
    match error {
        Some(e) => Err(e),
        None => Ok(value),
    }
}

/// Whether [`with_data_dependent_init`] is active on this thread.
fn data_init_active() -> bool {
    DATA_INIT.with(|d| d.borrow().is_some())
}

/// Keeps `e` as the scope's error unless it already has one.
fn record_data_init_error(e: Error) {
    DATA_INIT.with(|d| {
        if let Some(slot) = d.borrow_mut().as_mut() {
            slot.get_or_insert(e);
        }
    });
}

/// What one cMADE forward pass multiplies by: per masked layer (hidden layers, `m`, `s`) the
/// weight `[n_out, n_in]` and bias, and the linear context's weight; see
/// [`Cmade::live_params`] and [`Cmade::folded_params`].
#[derive(Debug)]
pub(crate) struct CmadeParams {
    weights: Vec<Tensor>,
    biases: Vec<Option<Tensor>>,
    context_weight: Option<Tensor>,
    /// The batch norms are folded into the weights and biases: skip them.
    bn_folded: bool,
}

/// How the context enters the first hidden layer.
#[derive(Debug)]
enum Context {
    None,
    /// Added after the first BN + ELU, unprojected (§3.4.2 (a)).
    SnfLike {
        size: i64,
    },
    /// `W_c c` added before the first BN; `weight` is `[hidden[0], size]`, no bias (§3.4.2 (b)).
    Linear {
        weight: Tensor,
        size: i64,
    },
}

/// A conditional MADE: maps `z [B, D]` (and a context `[B, C]`) to the shift `m [B, D]` and the
/// gate pre-activation `s [B, D]`, with output `b` depending only on the latents before `b` in its
/// [`MaskOrder`] (ORIGINAL §3.4.2).
///
/// ```text
/// h  = ELU([BN]((M0 ⊙ W0) z [+ W_c c]))  [+ c]      first hidden layer, context per mode
/// h  = ELU([BN]((Ml ⊙ Wl) h))                       l = 1 .. len(hidden) - 1
/// m  = [BN_m]((ML ⊙ Wm) h)                          BN_m: γ = 1, β = 0
/// s  = BN_s((ML ⊙ Ws) h)                            BN_s: γ = 1, β init 3.0
/// s  = (ML ⊙ Ws) h + b_s                            without BN: b_s init 2.0
/// ```
///
/// With BN on, masked layers have no bias (BN's β takes its place, §2.1); with BN off, every
/// masked layer has a bias initialised to 0, except `s` (2.0). In shift-only mode the `s` head is
/// not built. Variables live under the given path: `l{i}.weight` (`l{i}.bias` without BN),
/// `bn{i}.*`, `ctx.weight` (linear context only), `m.weight`, `bn_m.*`, `s.weight`, `bn_s.*`
/// (or `m.bias`, `s.bias` without BN).
///
/// With weight norm (NORMALIZATION §4) every `[BN]((M ⊙ W) ·)` is `g · ((M ⊙ V) ·) / ‖M ⊙ V‖ + b`
/// per output unit, the norm taken of the masked row; with a linear context the first layer's
/// norm is taken over its masked row and its context row together, so that `W_c c` is
/// normalised with `(M0 ⊙ V0) z` as the batch norm normalises their sum. The data-dependent
/// initialisation ([`data_dependent_init`](Self::data_dependent_init)) centres every unit at 0,
/// and `s` at 3.0 as `BN_s` does. Variables: `l{i}.weight_v`, `l{i}.weight_g`, `l{i}.bias`,
/// likewise `m.*` and `s.*`, and `ctx.weight`; no `bn*`.
#[derive(Debug)]
pub struct Cmade {
    order: MaskOrder,
    latent: i64,
    hidden: Vec<MaskedLinear>,
    hidden_bn: Vec<Option<BatchNorm>>,
    context: Context,
    m: MaskedLinear,
    m_bn: Option<BatchNorm>,
    s: Option<(MaskedLinear, Option<BatchNorm>)>,
}

impl Cmade {
    /// Builds a cMADE for latent size `latent` with the widths, BN, context and shift-only
    /// settings of `cfg` (its `kind` and `layers` are not used) and the masks of `order`.
    ///
    /// Errors: [`Error::InvalidConfig`], [`Error::SnfContextSize`], [`Error::Indivisible`],
    /// [`Error::NotAutoregressive`]; never panics on bad settings.
    pub fn new(
        p: &nn::Path,
        latent: i64,
        cfg: &FlowConfig,
        order: MaskOrder,
        bn: BatchNormSettings,
    ) -> Result<Cmade> {
        let masks = checked_masks(latent, cfg, order, bn)?;
        Cmade::from_masks(p, latent, &masks, order, cfg, bn)
    }

    /// Builds from masks already made by [`made_masks`] for `cfg.units(latent)` and `order`
    /// (lets a flow share one set of masks per order). The settings must be valid.
    pub(crate) fn from_masks(
        p: &nn::Path,
        latent: i64,
        masks: &[Mask],
        order: MaskOrder,
        cfg: &FlowConfig,
        bn: BatchNormSettings,
    ) -> Result<Cmade> {
        let (last, hidden_masks) = masks.split_last().expect("made_masks gives >= 2 masks");
        let normalization = cfg.cmade_normalization()?;
        let batch_norm = normalization == Normalization::BatchNorm;
        // A masked layer under `p / name`: no bias before a batch norm, a weight-normalized one
        // whose units start at `mean`, or a plain one with its bias at `mean`.
        let masked = |name: String, mask: &Mask, mean: f64| match normalization {
            Normalization::BatchNorm => MaskedLinear::new(&(p / name), mask, None),
            Normalization::WeightNorm => MaskedLinear::weight_normalized(&(p / name), mask, mean),
            Normalization::None => MaskedLinear::new(&(p / name), mask, Some(mean)),
        };
        let bn_layer = |name: String, n: usize, beta: f64| -> Result<Option<BatchNorm>> {
            let layer = batch_norm.then(|| BatchNorm::new(&(p / name), n as i64, beta, bn));
            Ok(layer.transpose()?)
        };
        let mut hidden = Vec::with_capacity(hidden_masks.len());
        let mut hidden_bn = Vec::with_capacity(hidden_masks.len());
        for (l, mask) in hidden_masks.iter().enumerate() {
            hidden.push(masked(format!("l{l}"), mask, 0.0)?);
            hidden_bn.push(bn_layer(format!("bn{l}"), mask.n_out(), 0.0)?);
        }
        let h1 = cfg.hidden[0];
        let context = match (cfg.context_size, cfg.context) {
            (0, _) => Context::None,
            (size, ContextMode::SnfLike) => Context::SnfLike { size },
            (size, ContextMode::Linear) => Context::Linear {
                weight: (p / "ctx").f_var("weight", &[h1, size], glorot(size, h1))?,
                size,
            },
        };
        let m = masked("m".into(), last, 0.0)?;
        let m_bn = bn_layer("bn_m".into(), last.n_out(), 0.0)?;
        let s = if cfg.shift_only {
            None
        } else {
            // Weight norm starts `s` where BN_s does (β = 3.0), no normalization at 2.0.
            let s_mean = match normalization {
                Normalization::None => S_BIAS_INIT,
                _ => S_BN_BETA_INIT,
            };
            let s = masked("s".into(), last, s_mean)?;
            Some((s, bn_layer("bn_s".into(), last.n_out(), S_BN_BETA_INIT)?))
        };
        Ok(Cmade {
            order,
            latent,
            hidden,
            hidden_bn,
            context,
            m,
            m_bn,
            s,
        })
    }

    /// The autoregressive direction of this cMADE's masks.
    pub fn order(&self) -> MaskOrder {
        self.order
    }

    /// The latent size `D`.
    pub fn latent(&self) -> i64 {
        self.latent
    }

    /// The context width this cMADE consumes, `None` when it takes no context.
    pub fn context_size(&self) -> Option<i64> {
        match self.context {
            Context::None => None,
            Context::SnfLike { size } | Context::Linear { size, .. } => Some(size),
        }
    }

    /// Whether the `s` head exists (`false` in shift-only mode).
    pub fn has_scale(&self) -> bool {
        self.s.is_some()
    }

    /// The masked layers in order: the hidden layers, then the `m` head and the `s` head (if
    /// built).
    pub fn masked_layers(&self) -> Vec<&MaskedLinear> {
        let mut v: Vec<&MaskedLinear> = self.hidden.iter().collect();
        v.push(&self.m);
        if let Some((s, _)) = &self.s {
            v.push(s);
        }
        v
    }

    /// Whether the masked layers are weight-normalized (NORMALIZATION §4).
    pub fn is_weight_normalized(&self) -> bool {
        self.m.weight_norm().is_some()
    }

    /// The linear context's weight `W_c`, `[hidden[0], C]`, if the cMADE has one.
    fn context_weight(&self) -> Option<&Tensor> {
        match &self.context {
            Context::Linear { weight, .. } => Some(weight),
            _ => None,
        }
    }

    /// The blocks weight norm normalizes together for masked layer `i` (in
    /// [`masked_layers`](Self::masked_layers) order): `M ⊙ V`, and for the first layer with a
    /// linear context `W_c` too (NORMALIZATION §4).
    fn weight_blocks(&self, i: usize, layer: &MaskedLinear) -> Vec<Tensor> {
        let mut blocks = vec![layer.masked_weight()];
        if let (0, Some(w)) = (i, self.context_weight()) {
            blocks.push(w.shallow_clone());
        }
        blocks
    }

    /// The parameters of a forward pass as they are: `M ⊙ W` of every masked layer (in
    /// [`masked_layers`](Self::masked_layers) order), their biases and the context weight,
    /// with the batch norms applied separately; weight-normalized, `g · (M ⊙ V) / ‖·‖` and
    /// `g · W_c / ‖·‖` (NORMALIZATION §4). Computed once per [`forward_t`](Self::forward_t); the
    /// inverse reuses them across its `D` passes.
    pub(crate) fn live_params(&self) -> CmadeParams {
        let layers = self.masked_layers();
        let biases = layers
            .iter()
            .map(|l| l.bias.as_ref().map(Tensor::shallow_clone))
            .collect();
        if !self.is_weight_normalized() {
            return CmadeParams {
                weights: layers.iter().map(|l| l.masked_weight()).collect(),
                biases,
                context_weight: self.context_weight().map(Tensor::shallow_clone),
                bn_folded: false,
            };
        }
        let mut context_weight = None;
        let mut weights = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let norm = layer
                .weight_norm()
                .expect("every masked layer is weight-normalized");
            let blocks = self.weight_blocks(i, layer);
            let mut normalized = norm.apply(&blocks.iter().collect::<Vec<_>>());
            if normalized.len() > 1 {
                context_weight = normalized.pop();
            }
            weights.push(normalized.remove(0));
        }
        CmadeParams {
            weights,
            biases,
            context_weight,
            bn_folded: false,
        }
    }

    /// The parameters of an evaluation-mode forward pass with every batch norm folded into the
    /// masked layer before it: `W' = diag(scale) · (M ⊙ W)`, `b' = scale · b + shift` (and the
    /// linear context's weight scaled as the first layer's, since its BN normalises their sum),
    /// from [`BatchNorm::eval_affine`]. Detached copies of the current values; zero where
    /// the mask is, so the Jacobian keeps its structure.
    ///
    /// Weight-normalized, the plain weights `g · (M ⊙ V) / ‖·‖` (and `g · W_c / ‖·‖`) computed in
    /// f64 and the biases `b` (NORMALIZATION §5), detached copies, also zero where the mask is.
    pub(crate) fn folded_params(&self) -> CmadeParams {
        if self.is_weight_normalized() {
            return self.folded_weight_norm();
        }
        tch::no_grad(|| {
            let live = self.live_params();
            let mut norms: Vec<Option<&BatchNorm>> =
                self.hidden_bn.iter().map(Option::as_ref).collect();
            norms.push(self.m_bn.as_ref());
            if let Some((_, s_bn)) = &self.s {
                norms.push(s_bn.as_ref());
            }
            let affine: Vec<Option<(Tensor, Tensor)>> = norms
                .iter()
                .map(|bn| bn.map(BatchNorm::eval_affine))
                .collect();
            let fold_weight = |w: &Tensor, a: &Option<(Tensor, Tensor)>| match a {
                Some((scale, _)) => w * scale.unsqueeze(1),
                None => w.copy(),
            };
            let weights = (live.weights.iter().zip(&affine))
                .map(|(w, a)| fold_weight(w, a))
                .collect();
            let biases = (live.biases.iter().zip(&affine))
                .map(|(b, a)| match (b, a) {
                    (Some(b), Some((scale, shift))) => Some(b * scale + shift),
                    (None, Some((_, shift))) => Some(shift.shallow_clone()),
                    (b, None) => b.as_ref().map(Tensor::copy),
                })
                .collect();
            let context_weight = live
                .context_weight
                .as_ref()
                .map(|w| fold_weight(w, &affine[0]));
            CmadeParams {
                weights,
                biases,
                context_weight,
                bn_folded: true,
            }
        })
    }

    /// [`folded_params`](Self::folded_params) of a weight-normalized cMADE.
    fn folded_weight_norm(&self) -> CmadeParams {
        let layers = self.masked_layers();
        let mut context_weight = None;
        let mut weights = Vec::with_capacity(layers.len());
        let mut biases = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let norm = layer
                .weight_norm()
                .expect("every masked layer is weight-normalized");
            let blocks = self.weight_blocks(i, layer);
            let (mut folded, b) = norm.folded(&blocks.iter().collect::<Vec<_>>());
            if folded.len() > 1 {
                context_weight = folded.pop();
            }
            weights.push(folded.remove(0));
            biases.push(Some(b));
        }
        CmadeParams {
            weights,
            biases,
            context_weight,
            bn_folded: true,
        }
    }

    /// Data-dependent initialisation of a weight-normalized cMADE on the batch `z` `[B, D]`
    /// (and `context` `[B, C]`), NORMALIZATION §3–§4: layer by layer in order, each on the
    /// previous layers' outputs after their own initialisation, sets `g` and `b` so that every
    /// unit's pre-activation has mean 0 (`s`: 3.0, where `BN_s` puts it) and variance 1 on the
    /// batch; a unit without inputs (an empty mask row) keeps `g = 1`. Returns `(m, s)` after
    /// it, detached, as [`forward_t`](Self::forward_t) in training mode gives them. Without
    /// weight norm there is nothing to set: it returns the training-mode output, the batch
    /// norms' running statistics held. No gradients are recorded.
    ///
    /// Errors: [`Error::Layer`] with vae-nn's error for fewer than two examples or non-finite
    /// pre-activations. Panics as [`forward_t`](Self::forward_t) on shapes.
    pub fn data_dependent_init(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        if !self.is_weight_normalized() {
            return Ok(tch::no_grad(|| {
                hold_running_statistics(|| self.forward_t(z, context, true))
            }));
        }
        let size = z.size();
        assert!(
            size.len() == 2 && size[1] == self.latent,
            "cMADE expects z of shape [batch, {}], got {size:?}",
            self.latent
        );
        let context = self.check_context(context, size[0]);
        tch::no_grad(|| {
            let layers = self.masked_layers();
            // Layer `i` on its inputs: the unit-length pre-activations, then g and b from them.
            let init = |i: usize, inputs: &[&Tensor]| -> Result<Tensor> {
                let layer = layers[i];
                let norm = layer
                    .weight_norm()
                    .expect("every masked layer is weight-normalized");
                let blocks = self.weight_blocks(i, layer);
                let directions = WeightNorm::directions(&blocks.iter().collect::<Vec<_>>());
                let t = (inputs.iter().zip(&directions))
                    .map(|(x, d)| x.linear::<Tensor>(d, None))
                    .reduce(|a, b| a + b)
                    .expect("at least one block");
                Ok(norm.init_from_preactivations(&t)?)
            };
            let first_inputs: Vec<&Tensor> = match (self.context_weight(), context) {
                (Some(_), Some(c)) => vec![z, c],
                _ => vec![z],
            };
            let mut h = init(0, &first_inputs)?.elu();
            if let (Context::SnfLike { .. }, Some(c)) = (&self.context, context) {
                h += c;
            }
            let n = self.hidden.len();
            for i in 1..n {
                h = init(i, &[&h])?.elu();
            }
            let m = init(n, &[&h])?;
            let s = match self.s {
                Some(_) => Some(init(n + 1, &[&h])?),
                None => None,
            };
            Ok((m, s))
        })
    }

    /// `z [B, D]`, `context [B, C]` → `(m [B, D], s [B, D])`, `s` being `None` in shift-only mode.
    ///
    /// `train` selects batch statistics (and running-average updates) or running statistics in
    /// every BN. Only in eval mode is each example's output independent of the rest of the batch.
    ///
    /// Panics when `z` is not `[B, D]`, or when `context` is missing, unexpected or not `[B, C]`.
    pub fn forward_t(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, Option<Tensor>) {
        self.forward_with(&self.live_params(), z, context, train)
    }

    /// [`forward_t`](Self::forward_t) with precomputed parameters:
    /// [`live_params`](Self::live_params), or [`folded_params`](Self::folded_params) in
    /// evaluation mode.
    ///
    /// Inside [`with_data_dependent_init`], a weight-normalized cMADE in training mode first
    /// initialises itself on `z` and `context` and then uses its new parameters, not `params`.
    ///
    /// Panics on folded parameters with `train` (their batch norms are gone).
    pub(crate) fn forward_with(
        &self,
        params: &CmadeParams,
        z: &Tensor,
        context: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, Option<Tensor>) {
        assert!(
            !(train && params.bn_folded),
            "folded cMADE parameters are for evaluation mode only"
        );
        let initialised;
        let params = if train && self.is_weight_normalized() && data_init_active() {
            if let Err(e) = self.data_dependent_init(z, context) {
                record_data_init_error(e);
            }
            initialised = self.live_params();
            &initialised
        } else {
            params
        };
        let size = z.size();
        assert!(
            size.len() == 2 && size[1] == self.latent,
            "cMADE expects z of shape [batch, {}], got {size:?}",
            self.latent
        );
        let context = self.check_context(context, size[0]);
        let bn = |x: Tensor, bn: &Option<BatchNorm>| match bn {
            Some(bn) if !params.bn_folded => bn.forward_t(&x, train),
            _ => x,
        };
        let n = self.hidden.len();
        let linear = |x: &Tensor, i: usize| x.linear(&params.weights[i], params.biases[i].as_ref());
        let mut h = linear(z, 0);
        if let (Some(weight), Some(c)) = (&params.context_weight, context) {
            h += c.linear::<Tensor>(weight, None);
        }
        h = bn(h, &self.hidden_bn[0]).elu();
        if let (Context::SnfLike { .. }, Some(c)) = (&self.context, context) {
            h += c;
        }
        for (i, layer_bn) in self.hidden_bn.iter().enumerate().skip(1) {
            h = bn(linear(&h, i), layer_bn).elu();
        }
        let m = bn(linear(&h, n), &self.m_bn);
        let s = self.s.as_ref().map(|(_, s_bn)| bn(linear(&h, n + 1), s_bn));
        (m, s)
    }

    fn check_context<'a>(&self, context: Option<&'a Tensor>, batch: i64) -> Option<&'a Tensor> {
        match (self.context_size(), context) {
            (None, None) => None,
            (Some(c), Some(t)) => {
                assert!(
                    t.size() == [batch, c],
                    "cMADE expects a context of shape [{batch}, {c}], got {:?}",
                    t.size()
                );
                Some(t)
            }
            (Some(c), None) => {
                panic!("this cMADE was built with context_size {c} but got no context")
            }
            (None, Some(t)) => panic!(
                "this cMADE was built without a context but got one of shape {:?}",
                t.size()
            ),
        }
    }
}

/// Validates everything that [`Cmade::new`] needs and returns the masks.
pub(crate) fn checked_masks(
    latent: i64,
    cfg: &FlowConfig,
    order: MaskOrder,
    bn: BatchNormSettings,
) -> Result<Vec<Mask>> {
    if latent <= 0 {
        return Err(Error::InvalidConfig {
            field: "latent",
            value: latent.to_string(),
            expected: "a positive latent size",
        });
    }
    let mut cfg = cfg.clone();
    // A lone cMADE ignores the flow-level fields.
    cfg.kind = crate::FlowKind::Iaf;
    cfg.layers = cfg.layers.max(1);
    cfg.validate()?;
    bn.validate()?;
    made_masks(&cfg.units(latent), order)
}
