//! The masked linear layer and the Glorot initialiser shared by the cMADE and the context
//! predictor.

use tch::{nn, Kind, Tensor};
use vae_nn::WeightNorm;

use crate::error::Result;
use crate::mask::Mask;

/// Glorot/Xavier uniform, `U(−a, a)` with `a = sqrt(6 / (fan_in + fan_out))` (ORIGINAL §2.2).
pub(crate) fn glorot(fan_in: i64, fan_out: i64) -> nn::Init {
    let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -a, up: a }
}

/// A dense layer whose weight is multiplied by a fixed 0/1 mask on every forward pass:
/// `y = x · (M ⊙ W) + b`, computed as tch's `x.linear(W ⊙ Mᵀ, b)`; or, weight-normalized, the
/// masked weight normalized per output row, `y = x · (g · (M ⊙ V) / ‖M ⊙ V‖) + b`
/// (NORMALIZATION §4).
///
/// **Invariant:** the stored `weight` is the full, unmasked `[n_out, n_in]` matrix (Glorot
/// initialised on the full matrix, ORIGINAL §2.2, and counted in full by §3.3); the mask is
/// applied in every forward, so masked-out entries never influence the output whatever an
/// optimizer (Adam, weight decay) does to them, and their gradient is exactly zero. With weight
/// norm the same holds for `V`, and the row norms are taken of `M ⊙ V`, so masked-out entries do
/// not shrink a unit's weight either. The mask is not a variable of the `VarStore`: checkpoints
/// hold only the weights, and the mask is rebuilt from the config.
#[derive(Debug)]
pub struct MaskedLinear {
    /// The full weight, `[n_out, n_in]`; trainable. Weight-normalized, the direction `V`
    /// (variable `weight_v`), whose masked rows' lengths do not matter.
    pub weight: Tensor,
    /// The bias, `[n_out]`, when the layer has one (cMADE without BN; weight norm's `b`).
    pub bias: Option<Tensor>,
    /// The mask in weight layout, `[n_out, n_in]`, [`Kind::Bool`].
    mask: Tensor,
    /// Weight norm's gain `g` and bias `b` (the same tensor as [`bias`](Self::bias)), when the
    /// layer is weight-normalized.
    weight_norm: Option<WeightNorm>,
}

impl MaskedLinear {
    /// Creates `p.weight` (Glorot uniform) and, when `bias_init` is set, `p.bias` (constant).
    /// `mask` has the spec's `(n_in, n_out)` layout.
    pub fn new(p: &nn::Path, mask: &Mask, bias_init: Option<f64>) -> Result<MaskedLinear> {
        let (n_in, n_out) = (mask.n_in() as i64, mask.n_out() as i64);
        let weight = p.f_var("weight", &[n_out, n_in], glorot(n_in, n_out))?;
        let bias = bias_init
            .map(|b| p.f_var("bias", &[n_out], nn::Init::Const(b)))
            .transpose()?;
        Ok(MaskedLinear {
            weight,
            bias,
            mask: mask_tensor(mask, p.device())?,
            weight_norm: None,
        })
    }

    /// A weight-normalized masked layer (NORMALIZATION §4): creates `p.weight_v` (`V`, Glorot
    /// uniform on the full matrix, the same draws as [`new`](Self::new)'s `weight`),
    /// `p.weight_g` (`g`, `[n_out, 1]`, ones) and `p.bias` (`b`, `[n_out]`, `target_mean`).
    /// `target_mean` is each unit's pre-activation mean after the data-dependent
    /// initialisation (the β of the batch norm the layer stands in for).
    pub fn weight_normalized(p: &nn::Path, mask: &Mask, target_mean: f64) -> Result<MaskedLinear> {
        let (n_in, n_out) = (mask.n_in() as i64, mask.n_out() as i64);
        let weight = p.f_var("weight_v", &[n_out, n_in], glorot(n_in, n_out))?;
        let norm = WeightNorm::new(p, n_out, target_mean)?;
        Ok(MaskedLinear {
            weight,
            bias: Some(norm.b.shallow_clone()),
            mask: mask_tensor(mask, p.device())?,
            weight_norm: Some(norm),
        })
    }

    /// Wraps existing tensors (for tests that need exact weights). `weight` is `[n_out, n_in]`,
    /// `mask` has the spec's `(n_in, n_out)` layout.
    ///
    /// Returns [`crate::Error::InvalidConfig`] when the shapes disagree.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, mask: &Mask) -> Result<MaskedLinear> {
        let expected = [mask.n_out() as i64, mask.n_in() as i64];
        if weight.size() != expected {
            return Err(crate::Error::InvalidConfig {
                field: "weight",
                value: format!("shape {:?}", weight.size()),
                expected: "[n_out, n_in] matching the mask",
            });
        }
        if let Some(b) = &bias {
            if b.size() != [expected[0]] {
                return Err(crate::Error::InvalidConfig {
                    field: "bias",
                    value: format!("shape {:?}", b.size()),
                    expected: "[n_out] matching the mask",
                });
            }
        }
        let mask = mask_tensor(mask, weight.device())?;
        Ok(MaskedLinear {
            weight,
            bias,
            mask,
            weight_norm: None,
        })
    }

    /// The mask in weight layout, `[n_out, n_in]`, [`Kind::Bool`].
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// Weight norm's `g` and `b`, when the layer is weight-normalized.
    pub fn weight_norm(&self) -> Option<&WeightNorm> {
        self.weight_norm.as_ref()
    }

    /// `M ⊙ W` in weight layout, `[n_out, n_in]` (`M ⊙ V` when weight-normalized).
    pub fn masked_weight(&self) -> Tensor {
        if self.mask.device() == self.weight.device() {
            &self.weight * &self.mask
        } else {
            // The VarStore was moved after construction.
            &self.weight * self.mask.to_device(self.weight.device())
        }
    }

    /// The weight a forward pass multiplies by, `[n_out, n_in]`: `M ⊙ W`, or weight-normalized
    /// `g · (M ⊙ V) / ‖M ⊙ V‖` row-wise (NORMALIZATION §4); zero wherever the mask is.
    pub fn layer_weight(&self) -> Tensor {
        let masked = self.masked_weight();
        match &self.weight_norm {
            Some(norm) => norm.apply(&[&masked]).remove(0),
            None => masked,
        }
    }

    /// `x [B, n_in] → [B, n_out]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.layer_weight(), self.bias.as_ref())
    }
}

/// The mask as a `[n_out, n_in]` bool tensor on `device`.
fn mask_tensor(mask: &Mask, device: tch::Device) -> Result<Tensor> {
    let t = mask.transposed();
    Ok(Tensor::f_from_slice(t.as_slice())?
        .f_reshape([t.n_in() as i64, t.n_out() as i64])?
        .f_to_kind(Kind::Bool)?
        .f_to_device(device)?)
}
