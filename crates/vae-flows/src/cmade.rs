//! The conditional MADE of one flow step (ORIGINAL §3.4.2).

use tch::nn;
use tch::Tensor;
use vae_nn::BatchNorm;

use crate::config::{BatchNormSettings, ContextMode, FlowConfig};
use crate::error::{Error, Result};
use crate::layers::{glorot, MaskedLinear};
use crate::mask::{made_masks, Mask, MaskOrder};

/// β init of the `s`-output BN, so that `s ≈ 3` and `σ(s) ≈ 0.953` at the start (§3.4.2).
pub const S_BN_BETA_INIT: f64 = 3.0;
/// Init of the `s`-output bias when the cMADE has no BN, so that `σ(s) ≈ 0.881` (§2.2, §3.4.2).
pub const S_BIAS_INIT: f64 = 2.0;

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
        let bias_init = if cfg.batch_norm { None } else { Some(0.0) };
        let bn_layer = |name: String, n: usize, beta: f64| -> Result<Option<BatchNorm>> {
            let layer = cfg
                .batch_norm
                .then(|| BatchNorm::new(&(p / name), n as i64, beta, bn));
            Ok(layer.transpose()?)
        };
        let mut hidden = Vec::with_capacity(hidden_masks.len());
        let mut hidden_bn = Vec::with_capacity(hidden_masks.len());
        for (l, mask) in hidden_masks.iter().enumerate() {
            hidden.push(MaskedLinear::new(&(p / format!("l{l}")), mask, bias_init)?);
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
        let m = MaskedLinear::new(&(p / "m"), last, bias_init)?;
        let m_bn = bn_layer("bn_m".into(), last.n_out(), 0.0)?;
        let s = if cfg.shift_only {
            None
        } else {
            let s_bias = if cfg.batch_norm {
                None
            } else {
                Some(S_BIAS_INIT)
            };
            let s = MaskedLinear::new(&(p / "s"), last, s_bias)?;
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

    /// The parameters of a forward pass as they are: `M ⊙ W` of every masked layer (in
    /// [`masked_layers`](Self::masked_layers) order), their biases and the context weight,
    /// with the batch norms applied separately. Computed once per
    /// [`forward_t`](Self::forward_t); the inverse reuses them across its `D` passes.
    pub(crate) fn live_params(&self) -> CmadeParams {
        let layers = self.masked_layers();
        CmadeParams {
            weights: layers.iter().map(|l| l.masked_weight()).collect(),
            biases: layers
                .iter()
                .map(|l| l.bias.as_ref().map(Tensor::shallow_clone))
                .collect(),
            context_weight: match &self.context {
                Context::Linear { weight, .. } => Some(weight.shallow_clone()),
                _ => None,
            },
            bn_folded: false,
        }
    }

    /// The parameters of an evaluation-mode forward pass with every batch norm folded into the
    /// masked layer before it: `W' = diag(scale) · (M ⊙ W)`, `b' = scale · b + shift` (and the
    /// linear context's weight scaled as the first layer's, since its BN normalises their sum),
    /// from [`BatchNorm::eval_affine`]. Detached copies of the current values; zero where
    /// the mask is, so the Jacobian keeps its structure.
    pub(crate) fn folded_params(&self) -> CmadeParams {
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
