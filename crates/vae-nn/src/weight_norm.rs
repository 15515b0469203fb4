//! Weight normalization (Salimans & Kingma 2016) with data-dependent initialisation, as the IAF
//! paper (Kingma et al. 2016) trains its networks: NORMALIZATION §2–§5.
//!
//! Per output unit `i`, the layer computes `y_i = g_i · (v_i · x) / ‖v_i‖ + b_i`: the weight row
//! `w_i = g_i · v_i / ‖v_i‖` has length `|g_i|` whatever `v_i` is, so the gradient step on the
//! direction `v_i` and the one on the scale `g_i` are decoupled. Before training, one batch sets
//! `g` and `b` so that every unit's pre-activation has mean `target_mean` (0 unless the layer
//! stands in for a batch norm with another β, NORMALIZATION §3) and variance 1 on that batch.
//!
//! [`WeightNorm`] holds `g` and `b` and does the arithmetic over any weight blocks that share
//! the units: the dense layer [`WeightNormLinear`] has one block `v`; the cMADE (vae-flows)
//! passes its masked block `M ⊙ V`, plus its context weight for the first layer, so that masks
//! compose with the normalization (NORMALIZATION §4).

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::batch_norm::unused;
use crate::error::{Error, Result};

/// Squared row norms are clamped from below to this before the square root (NORMALIZATION §4):
/// a row that is all zeros (a unit whose mask row is empty, such as the first output of a MADE
/// in its order) then gives the weight row `g · 0 / 1e-15 = 0` with finite gradients, instead of
/// `0 / 0`. No row that has inputs comes near it (Glorot-initialised rows have squared norms of
/// order 1).
pub const MIN_SQUARED_NORM: f64 = 1e-30;

/// ε of the data-dependent initialisation, `g = 1 / √(var + ε)` (NORMALIZATION §3): the value of
/// Salimans & Kingma's code. On a batch where a unit's variance is `var`, the initialised
/// pre-activation has variance `var / (var + ε)`, within 1e-6 of 1 for any `var` above 1e-4.
pub const INIT_EPS: f64 = 1e-10;

/// The gain `g` and bias `b` of a weight-normalized layer with `n_out` output units: variables
/// `weight_g` (`[n_out, 1]`, PyTorch's `weight_norm` layout, init 1) and `bias` (`[n_out]`,
/// init `target_mean`) under the layer's path (NORMALIZATION §2).
///
/// The weight itself (the direction `v`) belongs to the layer; [`apply`](Self::apply) turns
/// blocks of it into the normalized weight, and
/// [`init_from_preactivations`](Self::init_from_preactivations) does the data-dependent
/// initialisation.
#[derive(Debug)]
pub struct WeightNorm {
    /// The gain `g`, `[n_out, 1]` (variable `weight_g`): the length of each unit's weight row.
    pub g: Tensor,
    /// The bias `b`, `[n_out]` (variable `bias`), in the units of the pre-activation.
    pub b: Tensor,
    target_mean: f64,
    /// The `g` variable's full name, for messages.
    name: String,
}

impl WeightNorm {
    /// Creates `weight_g` (`[n_out, 1]`, ones) and `bias` (`[n_out]`, `target_mean`) under `p`,
    /// in that order. `target_mean` is the mean each unit's pre-activation gets from the
    /// data-dependent initialisation (0 for a layer that stands in for a batch norm with β = 0).
    ///
    /// Errors: [`Error::InvalidSetting`] for `n_out < 1` or a non-finite `target_mean`,
    /// [`Error::DuplicateParameter`] when `p` already holds one of the names.
    pub fn new(p: &nn::Path, n_out: i64, target_mean: f64) -> Result<Self> {
        if n_out < 1 {
            return Err(Error::invalid("units", n_out, "at least one output unit"));
        }
        if !target_mean.is_finite() {
            return Err(Error::invalid(
                "target_mean",
                target_mean,
                "a finite pre-activation mean",
            ));
        }
        let g = unused(p, "weight_g")?.f_var("weight_g", &[n_out, 1], Init::Const(1.0))?;
        let b = unused(p, "bias")?.f_var("bias", &[n_out], Init::Const(target_mean))?;
        Ok(WeightNorm {
            g,
            b,
            target_mean,
            name: p.path("weight_g"),
        })
    }

    /// Wraps given tensors (for tests that need exact values): `g` `[n_out, 1]`, `b` `[n_out]`.
    ///
    /// Panics when the shapes do not agree.
    pub fn from_tensors(g: Tensor, b: Tensor, target_mean: f64) -> Self {
        let n_out = b.size()[0];
        assert!(
            b.dim() == 1 && g.size() == [n_out, 1],
            "WeightNorm: expected g [n_out, 1] and b [n_out], got {:?} and {:?}",
            g.size(),
            b.size()
        );
        WeightNorm {
            g,
            b,
            target_mean,
            name: "weight_g".into(),
        }
    }

    /// Output units `n_out`.
    pub fn n_out(&self) -> i64 {
        self.b.size()[0]
    }

    /// The mean each unit's pre-activation gets from the data-dependent initialisation.
    pub fn target_mean(&self) -> f64 {
        self.target_mean
    }

    /// `‖[B_1 … B_K]_i‖`, `[n_out, 1]`: the length of each output unit's row over all the
    /// blocks `[n_out, n_k]` together, its square clamped below at [`MIN_SQUARED_NORM`].
    ///
    /// Panics on no blocks, or on blocks that are not `[n, ·]` with the same `n`.
    pub fn row_norms(blocks: &[&Tensor]) -> Tensor {
        assert!(!blocks.is_empty(), "WeightNorm: no weight blocks");
        let rows = blocks[0].size()[0];
        let squares = blocks.iter().map(|w| {
            assert!(
                w.dim() == 2 && w.size()[0] == rows,
                "WeightNorm: weight blocks must be [{rows}, ·], got {:?}",
                w.size()
            );
            w.square().sum_dim_intlist(1, true, w.kind())
        });
        let squared = squares.reduce(|a, b| a + b).expect("at least one block");
        squared.clamp_min(MIN_SQUARED_NORM).sqrt()
    }

    /// The unit-length directions `B_k / ‖[B_1 … B_K]‖` (row-wise), each `[n_out, n_k]`: the
    /// weights with `g = 1`, whose pre-activations the data-dependent initialisation measures.
    pub fn directions(blocks: &[&Tensor]) -> Vec<Tensor> {
        let inverse = Self::row_norms(blocks).reciprocal();
        blocks.iter().map(|w| *w * &inverse).collect()
    }

    /// The normalized weight blocks `g · B_k / ‖[B_1 … B_K]‖` (row-wise), each `[n_out, n_k]`,
    /// with gradients to `g` and the blocks. The layer's output is `Σ_k x_k · W_kᵀ + b`.
    ///
    /// Panics when the blocks do not have `n_out` rows.
    pub fn apply(&self, blocks: &[&Tensor]) -> Vec<Tensor> {
        let rows = blocks.first().map(|w| w.size()[0]);
        assert!(
            rows == Some(self.n_out()),
            "WeightNorm: expected weight blocks of {} rows, got {rows:?}",
            self.n_out()
        );
        let scale = &self.g / Self::row_norms(blocks);
        blocks.iter().map(|w| *w * &scale).collect()
    }

    /// [`apply`](Self::apply) computed in f64 from the current values and returned as detached
    /// copies in each block's kind, with a copy of `b`: the plain weights and bias that give the
    /// same function (NORMALIZATION §5). A later update of the layer does not change them.
    pub fn folded(&self, blocks: &[&Tensor]) -> (Vec<Tensor>, Tensor) {
        tch::no_grad(|| {
            let f64 = |t: &Tensor| t.detach().to_kind(Kind::Double);
            let wide: Vec<Tensor> = blocks.iter().map(|w| f64(w)).collect();
            let wide_refs: Vec<&Tensor> = wide.iter().collect();
            let scale = f64(&self.g) / Self::row_norms(&wide_refs);
            let weights = (wide.iter().zip(blocks))
                .map(|(w, original)| (w * &scale).to_kind(original.kind()))
                .collect();
            (weights, self.b.detach().copy())
        })
    }

    /// Data-dependent initialisation (NORMALIZATION §3) from `t`, `[B, n_out]`: each unit's
    /// pre-activation on the init batch with unit-length weight rows (from
    /// [`directions`](Self::directions), in any units). Sets, per unit with batch mean `μ` and
    /// biased batch variance `σ²` (over the `B` rows, as batch norm normalises),
    ///
    /// ```text
    /// g = 1 / √(σ² + ε),   b = target_mean − μ · g        (ε = INIT_EPS)
    /// ```
    ///
    /// so that `g · t + b` has mean `target_mean` and variance 1 on this batch; a unit whose
    /// pre-activation is constant on the batch (`σ² = 0`: no inputs, or inputs that do not vary)
    /// keeps `g = 1` and gets `b = target_mean − μ`. Returns `g · t + b`, `[B, n_out]`, detached,
    /// in `t`'s kind: the layer's pre-activation after the initialisation. Statistics in f64;
    /// no gradients are recorded.
    ///
    /// Errors: [`Error::InitBatch`] for fewer than two rows (no variance to measure),
    /// [`Error::NonFiniteInit`] when `t` has a NaN or infinity. Panics when `t` is not
    /// `[B, n_out]`.
    pub fn init_from_preactivations(&self, t: &Tensor) -> Result<Tensor> {
        let size = t.size();
        assert!(
            size.len() == 2 && size[1] == self.n_out(),
            "WeightNorm: expected pre-activations [B, {}], got {size:?}",
            self.n_out()
        );
        if size[0] < 2 {
            return Err(Error::InitBatch {
                layer: self.name.clone(),
                examples: size[0],
            });
        }
        tch::no_grad(|| {
            let t64 = t.detach().to_kind(Kind::Double);
            let mean = t64.mean_dim(0, false, Kind::Double);
            let var = (&t64 - &mean).square().mean_dim(0, false, Kind::Double);
            if t64.isfinite().all().int64_value(&[]) == 0 {
                return Err(Error::NonFiniteInit {
                    layer: self.name.clone(),
                });
            }
            let varies = var.gt(0.0);
            let g = (&var + INIT_EPS)
                .rsqrt()
                .where_self(&varies, &var.ones_like());
            let b = -(&mean * &g) + self.target_mean;
            let (mut g_var, mut b_var) = (self.g.shallow_clone(), self.b.shallow_clone());
            g_var.copy_(&g.view([-1, 1]).to_kind(g_var.kind()));
            b_var.copy_(&b.to_kind(b_var.kind()));
            Ok((t64 * g.unsqueeze(0) + b.unsqueeze(0)).to_kind(t.kind()))
        })
    }
}

/// A weight-normalized dense layer `y = x · Wᵀ + b`, `W = g · v / ‖v‖` row-wise
/// (NORMALIZATION §2): variables `weight_v` (`v`, `[out, in]`), `weight_g` (`g`, `[out, 1]`)
/// and `bias` (`b`, `[out]`) under its path, PyTorch's `weight_norm` names and layouts.
///
/// `y` is `[B, out]` for `x` `[B, in]`. A masked layer composes the same way by normalising
/// `M ⊙ V` through [`WeightNorm::apply`] (vae-flows' cMADE, NORMALIZATION §4).
#[derive(Debug)]
pub struct WeightNormLinear {
    /// The direction `v`, `[out, in]` (variable `weight_v`); only its row directions matter.
    pub v: Tensor,
    /// The gain and bias.
    pub norm: WeightNorm,
}

impl WeightNormLinear {
    /// Creates `weight_v` (`[output, input]`, from `v_init`), then `weight_g` (ones) and `bias`
    /// (`target_mean`) under `p`. With the same `v_init`, `v` takes the same random draws as a
    /// plain layer's `weight` would.
    ///
    /// Errors as [`WeightNorm::new`], and [`Error::InvalidSetting`] for `input < 1`.
    pub fn new(
        p: &nn::Path,
        input: i64,
        output: i64,
        v_init: Init,
        target_mean: f64,
    ) -> Result<Self> {
        if input < 1 {
            return Err(Error::invalid("inputs", input, "at least one input"));
        }
        if output < 1 {
            return Err(Error::invalid("units", output, "at least one output unit"));
        }
        if p.get("weight_g").is_some() || p.get("bias").is_some() {
            // Refused before `weight_v` is created, so that a failed call creates nothing.
            let taken = if p.get("weight_g").is_some() {
                "weight_g"
            } else {
                "bias"
            };
            return Err(Error::DuplicateParameter {
                path: p.path(taken),
            });
        }
        let v = unused(p, "weight_v")?.f_var("weight_v", &[output, input], v_init)?;
        Ok(WeightNormLinear {
            v,
            norm: WeightNorm::new(p, output, target_mean)?,
        })
    }

    /// Wraps given tensors: `v` `[out, in]`, `g` `[out, 1]`, `b` `[out]`. Panics when the
    /// shapes disagree.
    pub fn from_tensors(v: Tensor, g: Tensor, b: Tensor, target_mean: f64) -> Self {
        let norm = WeightNorm::from_tensors(g, b, target_mean);
        assert!(
            v.dim() == 2 && v.size()[0] == norm.n_out(),
            "WeightNormLinear: expected v [{}, in], got {:?}",
            norm.n_out(),
            v.size()
        );
        WeightNormLinear { v, norm }
    }

    /// Inputs `in`.
    pub fn n_in(&self) -> i64 {
        self.v.size()[1]
    }

    /// Output units `out`.
    pub fn n_out(&self) -> i64 {
        self.v.size()[0]
    }

    /// The weight `W = g · v / ‖v‖`, `[out, in]`, with gradients to `g` and `v`.
    pub fn weight(&self) -> Tensor {
        self.norm.apply(&[&self.v]).remove(0)
    }

    /// The unit-length rows `v / ‖v‖`, `[out, in]`.
    pub fn direction(&self) -> Tensor {
        WeightNorm::directions(&[&self.v]).remove(0)
    }

    /// `x` `[B, in]` → `[B, out]`. Panics when `x` is not `[B, in]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.check_input(x);
        x.linear(&self.weight(), Some(&self.norm.b))
    }

    /// Data-dependent initialisation on the batch `x` `[B, in]` ([`WeightNorm::init_from_preactivations`]
    /// of `x · (v / ‖v‖)ᵀ`); returns the layer's output on `x` after it, `[B, out]`, detached.
    ///
    /// Errors and panics as [`WeightNorm::init_from_preactivations`] and
    /// [`forward`](Self::forward).
    pub fn data_init(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x);
        let t = tch::no_grad(|| x.linear::<Tensor>(&self.direction(), None));
        self.norm.init_from_preactivations(&t)
    }

    /// The plain weight `[out, in]` and bias `[out]` of the same function, detached copies
    /// computed in f64 ([`WeightNorm::folded`]): what an evaluation-mode copy multiplies by.
    pub fn folded(&self) -> (Tensor, Tensor) {
        let (mut w, b) = self.norm.folded(&[&self.v]);
        (w.remove(0), b)
    }

    fn check_input(&self, x: &Tensor) {
        let size = x.size();
        assert!(
            size.len() == 2 && size[1] == self.n_in(),
            "WeightNormLinear: expected x of shape [B, {}], got {size:?}",
            self.n_in()
        );
    }
}
