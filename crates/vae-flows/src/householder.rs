//! The volume-preserving Householder flow (Tomczak & Welling 2016), amortized (FLOWS §4).

use tch::{nn, Tensor};

use crate::amortize::Amortized;
use crate::error::Result;
use crate::orthogonal::{householder_product, reflect};
use crate::planar::check_latent;

/// One Householder layer of `K` reflections (FLOWS §4):
///
/// ```text
/// H_k    = I − 2 v_k v_kᵀ / ‖v_k‖²
/// z'     = H_K ⋯ H_2 H_1 z
/// logdet = 0                                   (|det H_k| = 1: volume-preserving)
/// ```
///
/// The vectors `v_1 .. v_K` (`[K, D]`) come per example from the context, or are shared
/// learned vectors without one. Variables: `<p>.v.bias` (`[K·D]`) and, with a context,
/// `<p>.v.weight` (`[K·D, C]`).
#[derive(Debug)]
pub struct HouseholderStep {
    latent: i64,
    reflections: i64,
    v: Amortized,
}

impl HouseholderStep {
    /// Builds a layer of `reflections` reflections under `p`; a context of width `context_size`
    /// feeds it when `context_size > 0`. The vectors start `U(−1/√D, 1/√D)`.
    pub fn new(
        p: &nn::Path,
        latent: i64,
        reflections: usize,
        context_size: i64,
    ) -> Result<HouseholderStep> {
        let a = 1.0 / (latent as f64).sqrt();
        let k = reflections as i64;
        Ok(HouseholderStep {
            latent,
            reflections: k,
            v: Amortized::new(
                &(p / "v"),
                k * latent,
                context_size,
                nn::Init::Uniform { lo: -a, up: a },
            )?,
        })
    }

    /// Trainable parameters of one layer: `K·D (C + 1)` (FLOWS §4.3).
    pub fn parameter_count(latent: i64, reflections: usize, context_size: i64) -> i64 {
        Amortized::parameter_count(reflections as i64 * latent, context_size)
    }

    /// The reflection vectors for `batch` examples, `[B, K, D]`.
    pub fn vectors(&self, context: Option<&Tensor>, batch: i64) -> Tensor {
        self.v
            .forward(context, batch)
            .reshape([batch, self.reflections, self.latent])
    }

    /// The layer as a matrix, `Q = H_K ⋯ H_1`, `[B, D, D]` (orthogonal; `z' = Q z`).
    pub fn matrix(&self, context: Option<&Tensor>, batch: i64) -> Tensor {
        // (H_1 ⋯ H_K)ᵀ = H_K ⋯ H_1, every H being symmetric.
        householder_product(&self.vectors(context, batch), self.latent).transpose(1, 2)
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log-det [B])`; the log-det is exactly 0.
    ///
    /// Panics when `z` is not `[B, D]` or the context does not match.
    pub fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> (Tensor, Tensor) {
        let batch = check_latent(z, self.latent);
        let v = self.vectors(context, batch);
        let z_out =
            (0..self.reflections).fold(z.shallow_clone(), |z, k| reflect(&z, &v.select(1, k)));
        (z_out, Tensor::zeros([batch], (z.kind(), z.device())))
    }

    /// The exact inverse (FLOWS §4.2): the same reflections in reverse order, each its own
    /// inverse. Gradients flow through it.
    pub fn inverse(&self, z_out: &Tensor, context: Option<&Tensor>) -> Tensor {
        let batch = check_latent(z_out, self.latent);
        let v = self.vectors(context, batch);
        (0..self.reflections)
            .rev()
            .fold(z_out.shallow_clone(), |z, k| reflect(&z, &v.select(1, k)))
    }
}
