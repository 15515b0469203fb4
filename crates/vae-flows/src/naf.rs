//! The neural autoregressive flow (Huang et al. 2018) with the deep sigmoidal transformer and a
//! conditional MADE conditioner (FLOWS §6).

use tch::{nn, Tensor};

use crate::config::{ContextMode, FlowConfig};
use crate::error::Result;
use crate::layers::{glorot, MaskedLinear};
use crate::mask::{made_masks, Mask, MaskOrder};
use crate::planar::check_latent;
use crate::root::solve_increasing;

/// Below this pre-activation `log softplus(x)` is taken as `x` (the error is `e^x / 2 < 5e-14`),
/// so that `log a` stays finite where `softplus` underflows.
const LOG_SOFTPLUS_LINEAR_BELOW: f64 = -30.0;

/// How the context enters the conditioner's first hidden layer, as in the cMADE (ORIGINAL
/// §3.4.2).
#[derive(Debug)]
enum Context {
    None,
    SnfLike { size: i64 },
    Linear { weight: Tensor, size: i64 },
}

/// One NAF layer (FLOWS §6): per latent `d`, in the layer's [`MaskOrder`],
///
/// ```text
/// (â_d, b_d, ŵ_d) = MADE(z_<d, c)                 K values each (K = naf_units)
/// a = softplus(â) > 0,  w = softmax(ŵ)            (w_j > 0, Σ_j w_j = 1)
/// z'_d   = σ⁻¹( Σ_j w_j σ(a_j z_d + b_j) )
/// logdet = Σ_d log ∂z'_d/∂z_d,
/// ∂z'_d/∂z_d = Σ_j w_j a_j σ(u_j) σ(−u_j) / (s (1 − s)),  u_j = a_j z_d + b_j,  s = Σ_j w_j σ(u_j)
/// ```
///
/// every sum taken as a log-sum-exp of `log w_j + log σ(±u_j) (+ log a_j)`, so nothing
/// overflows or cancels. The Jacobian is triangular in the layer's order with a positive
/// diagonal.
///
/// The conditioner is a MADE with the flow's `hidden` widths and masks (ORIGINAL §3.4.1), ELU
/// activations, a bias on every masked layer and no batch norm; the context enters as the
/// cMADE's does (`context`: SNF-like or linear). Its output layer has `3·K·D` units, unit
/// `d·3K + j` masked as latent `d`. Variables: `<p>.made.l{i}.{weight,bias}`,
/// `<p>.made.ctx.weight` (linear context), `<p>.made.out.{weight,bias}`.
#[derive(Debug)]
pub struct NafStep {
    latent: i64,
    units: i64,
    order: MaskOrder,
    hidden: Vec<MaskedLinear>,
    context: Context,
    out: MaskedLinear,
}

/// A NAF layer's transformer parameters, each `[B, D, K]`, from [`NafStep::conditioner`].
#[derive(Debug)]
pub struct NafParams {
    /// `â`, with `a = softplus(â)`.
    pub a_hat: Tensor,
    /// `b`.
    pub b: Tensor,
    /// `ŵ`, with `w = softmax(ŵ)` over the last dimension.
    pub w_hat: Tensor,
}

impl NafStep {
    /// Builds the layer for latent size `latent` under `p / "made"` with the `hidden`,
    /// `context`, `context_size` and `naf_units` settings of `cfg` (which the caller has
    /// validated) and the masks of `order`. Masked weights are Glorot uniform, biases 0.
    ///
    /// Errors: [`crate::Error::Indivisible`] and [`crate::Error::NotAutoregressive`] for
    /// widths that give no valid masks, [`crate::Error::Tch`] when variables cannot be made.
    pub fn new(p: &nn::Path, latent: i64, cfg: &FlowConfig, order: MaskOrder) -> Result<NafStep> {
        let p = p / "made";
        let masks = made_masks(&cfg.units(latent), order)?;
        let (last, hidden_masks) = masks.split_last().expect("made_masks gives >= 2 masks");
        let hidden = (hidden_masks.iter().enumerate())
            .map(|(l, mask)| MaskedLinear::new(&(&p / format!("l{l}")), mask, Some(0.0)))
            .collect::<Result<Vec<_>>>()?;
        let h1 = cfg.hidden[0];
        let context = match (cfg.context_size, cfg.context) {
            (0, _) => Context::None,
            (size, ContextMode::SnfLike) => Context::SnfLike { size },
            (size, ContextMode::Linear) => Context::Linear {
                weight: (&p / "ctx").f_var("weight", &[h1, size], glorot(size, h1))?,
                size,
            },
        };
        let units = cfg.naf_units as i64;
        let out = MaskedLinear::new(
            &(&p / "out"),
            &repeat_outputs(last, 3 * cfg.naf_units)?,
            Some(0.0),
        )?;
        Ok(NafStep {
            latent,
            units,
            order,
            hidden,
            context,
            out,
        })
    }

    /// Trainable parameters of one layer (FLOWS §6.5): every masked weight in full plus its
    /// bias, for widths `[D, h_1, .., h_L]` and an output layer of `3·K·D` units, plus
    /// `C · h_1` for a linear context.
    pub fn parameter_count(cfg: &FlowConfig, latent: i64) -> i64 {
        let mut widths: Vec<i64> = vec![latent];
        widths.extend(&cfg.hidden);
        widths.push(3 * cfg.naf_units as i64 * latent);
        let mut n: i64 = widths.windows(2).map(|p| p[0] * p[1] + p[1]).sum();
        if cfg.context == ContextMode::Linear && cfg.context_size > 0 {
            n += cfg.context_size * cfg.hidden[0];
        }
        n
    }

    /// The autoregressive direction of this layer.
    pub fn order(&self) -> MaskOrder {
        self.order
    }

    /// `K`, the sigmoid units per latent.
    pub fn units(&self) -> i64 {
        self.units
    }

    /// The context width the conditioner consumes, `None` when it takes no context.
    pub fn context_size(&self) -> Option<i64> {
        match self.context {
            Context::None => None,
            Context::SnfLike { size } | Context::Linear { size, .. } => Some(size),
        }
    }

    /// The conditioner: `z [B, D]`, `context [B, C]` → the transformer parameters of every
    /// latent, each `[B, D, K]`; those of latent `d` depend only on the latents before `d` in
    /// the layer's order.
    ///
    /// Panics when `z` is not `[B, D]` or the context is missing, unexpected or not `[B, C]`.
    pub fn conditioner(&self, z: &Tensor, context: Option<&Tensor>) -> NafParams {
        let batch = check_latent(z, self.latent);
        let context = match (self.context_size(), context) {
            (None, None) => None,
            (Some(c), Some(t)) => {
                assert!(
                    t.size() == [batch, c],
                    "NAF expects a context of shape [{batch}, {c}], got {:?}",
                    t.size()
                );
                Some(t)
            }
            (Some(c), None) => {
                panic!("this NAF was built with context_size {c} but got no context")
            }
            (None, Some(t)) => panic!(
                "this NAF was built without a context but got one of shape {:?}",
                t.size()
            ),
        };
        let mut h = self.hidden[0].forward(z);
        if let (Context::Linear { weight, .. }, Some(c)) = (&self.context, context) {
            h += c.linear::<Tensor>(weight, None);
        }
        h = h.elu();
        if let (Context::SnfLike { .. }, Some(c)) = (&self.context, context) {
            h += c;
        }
        for layer in &self.hidden[1..] {
            h = layer.forward(&h).elu();
        }
        let k = self.units;
        let out = self.out.forward(&h).reshape([batch, self.latent, 3 * k]);
        NafParams {
            a_hat: out.narrow(2, 0, k),
            b: out.narrow(2, k, k),
            w_hat: out.narrow(2, 2 * k, k),
        }
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log|det ∂z'/∂z| [B])`, nats.
    ///
    /// Panics as [`conditioner`](Self::conditioner) does.
    pub fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> (Tensor, Tensor) {
        let p = self.conditioner(z, context);
        let (z_out, log_dz) = dsf(z, &p);
        (z_out, log_dz.sum_dim_intlist(1, false, None))
    }

    /// The inverse (FLOWS §6.4): `D` passes, each computing the transformer parameters from
    /// the current estimate and inverting every latent's transformer by root finding. The
    /// transformer is increasing, and `x ∈ [min_j (z'_d − b_j)/a_j, max_j (z'_d − b_j)/a_j]`
    /// (there every `σ(a_j x + b_j)` lies on the same side of `σ(z'_d)`), which brackets the
    /// root. After pass `k` the first `k` latents in the layer's order are exact. Cost: `D`
    /// conditioner passes and `D × 106` transformer evaluations. Runs without gradients.
    pub fn inverse(&self, z_out: &Tensor, context: Option<&Tensor>) -> Tensor {
        check_latent(z_out, self.latent);
        tch::no_grad(|| {
            let mut z = z_out.zeros_like();
            for _ in 0..self.latent {
                let p = self.conditioner(&z, context);
                let a = p.a_hat.softplus();
                let bound = (z_out.unsqueeze(2) - &p.b) / a;
                let g = |x: &Tensor| {
                    let (y, log_dy) = dsf(x, &p);
                    (y, log_dy.exp())
                };
                z = solve_increasing(
                    g,
                    z_out,
                    &bound.amin([2].as_slice(), false),
                    &bound.amax([2].as_slice(), false),
                );
            }
            z
        })
    }
}

/// The deep sigmoidal transformer, elementwise: `x [B, D]` and parameters `[B, D, K]` →
/// `(y [B, D], log ∂y/∂x [B, D])` (FLOWS §6.2).
pub(crate) fn dsf(x: &Tensor, p: &NafParams) -> (Tensor, Tensor) {
    let a = p.a_hat.softplus();
    let u = a * x.unsqueeze(2) + &p.b;
    let log_w = p.w_hat.log_softmax(2, None);
    let log_pos = u.log_sigmoid();
    let log_neg = (-&u).log_sigmoid();
    let log_s = (&log_w + &log_pos).logsumexp([2], false);
    let log_1ms = (&log_w + &log_neg).logsumexp([2], false);
    let y = &log_s - &log_1ms;
    let log_dy = (log_w + log_softplus(&p.a_hat) + log_pos + log_neg).logsumexp([2], false)
        - log_s
        - log_1ms;
    (y, log_dy)
}

/// `log(softplus(x))`, finite for every finite `x`.
fn log_softplus(x: &Tensor) -> Tensor {
    let linear = x.lt(LOG_SOFTPLUS_LINEAR_BELOW);
    let safe = x.clamp_min(LOG_SOFTPLUS_LINEAR_BELOW).softplus().log();
    x.where_self(&linear, &safe)
}

/// The last MADE mask `(h_L, D)` widened to `(h_L, n·D)`: output `d·n + j` is masked as
/// latent `d`.
fn repeat_outputs(last: &Mask, n: usize) -> Result<Mask> {
    let (rows, d) = (last.n_in(), last.n_out());
    let mut bits = Vec::with_capacity(rows * d * n);
    for i in 0..rows {
        for out in 0..d {
            bits.extend(std::iter::repeat_n(last.get(i, out), n));
        }
    }
    Mask::from_rows(rows, d * n, bits)
}
