//! Sylvester normalizing flows (van den Berg et al. 2018), amortized as in the paper, with three
//! ways to build `Q` (FLOWS §5).

use tch::{nn, Tensor};

use crate::amortize::Amortized;
use crate::error::Result;
use crate::orthogonal::{householder_product, orthogonalize};
use crate::planar::check_latent;

/// How a Sylvester layer builds its `Q` (`[D, M]`, orthonormal columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SylvesterQ {
    /// `Q` from an amortized `D × M` matrix by [`orthogonalize`], at most `iterations` updates
    /// (FLOWS §5.1).
    Orthogonal {
        /// The most orthogonalization updates.
        iterations: usize,
    },
    /// `Q` = the first `M` columns of `H_1 ⋯ H_K`, `K = reflections` amortized reflections
    /// (FLOWS §5.2).
    Householder {
        /// The number `K` of reflections.
        reflections: usize,
    },
    /// `Q` a fixed permutation, `M = D`: the identity, or the reversal when `reversed`
    /// (odd layers), so that `R` and `R̃` are triangular in alternating orders (FLOWS §5.3).
    Triangular {
        /// Whether `Q` reverses the latent order.
        reversed: bool,
    },
}

#[derive(Debug)]
enum QSource {
    Orthogonal { q: Amortized, iterations: usize },
    Householder { v: Amortized, reflections: i64 },
    Triangular { reversed: bool },
}

/// One Sylvester layer (FLOWS §5):
///
/// ```text
/// z'     = z + Q R tanh(R̃ Qᵀ z + b)              Q [D, M] orthonormal columns, R, R̃ [M, M]
///                                                 upper triangular, b [M]
/// R_mm   = tanh(a_mm),  R̃_mm = tanh(ã_m)          so R_mm R̃_mm ∈ (−1, 1)
/// logdet = Σ_m log(1 + (1 − tanh²((R̃ Qᵀ z + b)_m)) R_mm R̃_mm)      computed with log1p
/// ```
///
/// Per example from the context (or shared without one): the `M × M` matrix `A` (its strict
/// upper triangle is `R`'s, its diagonal gives `R`'s through `tanh`, its strict lower triangle
/// transposed is `R̃`'s), `ã [M]` for `R̃`'s diagonal, `b [M]`, and `Q`'s inputs. Variables:
/// `<p>.{r,r_tilde_diag,b}.{bias,weight}`, and `<p>.q.*` (`[D·M]`, orthogonal) or `<p>.v.*`
/// (`[K·D]`, Householder); the triangular variant has no `Q` variables.
///
/// No inverse (FLOWS §5.5): [`crate::Flow::inverse`] answers
/// [`Error::NoInverse`](crate::Error::NoInverse).
#[derive(Debug)]
pub struct SylvesterStep {
    latent: i64,
    vectors: i64,
    q: QSource,
    r: Amortized,
    r_tilde_diag: Amortized,
    b: Amortized,
}

/// A Sylvester layer's parameters for a batch, from [`SylvesterStep::params`].
#[derive(Debug)]
pub struct SylvesterParams {
    /// `Q`, `[B, D, M]`, orthonormal columns.
    pub q: Tensor,
    /// `R`, `[B, M, M]`, upper triangular, diagonal in `(−1, 1)`.
    pub r: Tensor,
    /// `R̃`, `[B, M, M]`, upper triangular, diagonal in `(−1, 1)`.
    pub r_tilde: Tensor,
    /// `b`, `[B, M]`.
    pub b: Tensor,
}

impl SylvesterStep {
    /// Builds a layer under `p` with `vectors = M` columns in `Q` (ignored by, and `D` for, the
    /// triangular variant; the caller checks `1 ≤ M ≤ D`). A context of width `context_size`
    /// feeds it when `context_size > 0`. `A` and `ã` start `U(−1/√M, 1/√M)`, `b` at 0, `Q`'s
    /// matrix `U(−1, 1)` and its reflection vectors `U(−1/√D, 1/√D)`.
    pub fn new(
        p: &nn::Path,
        latent: i64,
        vectors: usize,
        q: SylvesterQ,
        context_size: i64,
    ) -> Result<SylvesterStep> {
        let m = match q {
            SylvesterQ::Triangular { .. } => latent,
            _ => vectors as i64,
        };
        let uniform = |a: f64| nn::Init::Uniform { lo: -a, up: a };
        let q = match q {
            SylvesterQ::Orthogonal { iterations } => QSource::Orthogonal {
                q: Amortized::new(&(p / "q"), latent * m, context_size, uniform(1.0))?,
                iterations,
            },
            SylvesterQ::Householder { reflections } => QSource::Householder {
                v: Amortized::new(
                    &(p / "v"),
                    reflections as i64 * latent,
                    context_size,
                    uniform(1.0 / (latent as f64).sqrt()),
                )?,
                reflections: reflections as i64,
            },
            SylvesterQ::Triangular { reversed } => QSource::Triangular { reversed },
        };
        let a = 1.0 / (m as f64).sqrt();
        Ok(SylvesterStep {
            latent,
            vectors: m,
            q,
            r: Amortized::new(&(p / "r"), m * m, context_size, uniform(a))?,
            r_tilde_diag: Amortized::new(&(p / "r_tilde_diag"), m, context_size, uniform(a))?,
            b: Amortized::new(&(p / "b"), m, context_size, nn::Init::Const(0.0))?,
        })
    }

    /// Trainable parameters of one layer with `M = vectors` (FLOWS §5.4):
    /// `(M² + 2M)(C + 1)` plus `D·M (C + 1)` (orthogonal), `K·D (C + 1)` (Householder) or 0
    /// (triangular, where `M = D`).
    pub fn parameter_count(latent: i64, vectors: usize, q: SylvesterQ, context_size: i64) -> i64 {
        let m = match q {
            SylvesterQ::Triangular { .. } => latent,
            _ => vectors as i64,
        };
        let q_inputs = match q {
            SylvesterQ::Orthogonal { .. } => latent * m,
            SylvesterQ::Householder { reflections } => reflections as i64 * latent,
            SylvesterQ::Triangular { .. } => 0,
        };
        Amortized::parameter_count(m * m + 2 * m + q_inputs, context_size)
    }

    /// `M`, the number of columns of `Q`.
    pub fn vectors(&self) -> i64 {
        self.vectors
    }

    /// `Q` for `batch` examples, `[B, D, M]`.
    pub fn q(&self, context: Option<&Tensor>, batch: i64) -> Tensor {
        let (d, m) = (self.latent, self.vectors);
        match &self.q {
            QSource::Orthogonal { q, iterations } => orthogonalize(
                &q.forward(context, batch).reshape([batch, d, m]),
                *iterations,
            ),
            QSource::Householder { v, reflections } => householder_product(
                &v.forward(context, batch).reshape([batch, *reflections, d]),
                m,
            ),
            QSource::Triangular { reversed } => {
                let kind = self.b.kind();
                let eye = Tensor::eye(d, (kind, self.b.device()));
                let eye = if *reversed { eye.flip([1]) } else { eye };
                eye.unsqueeze(0).expand([batch, d, d], false)
            }
        }
    }

    /// All parameters for `batch` examples, `R` and `R̃` with their constrained diagonals.
    pub fn params(&self, context: Option<&Tensor>, batch: i64) -> SylvesterParams {
        let m = self.vectors;
        let a = self.r.forward(context, batch).reshape([batch, m, m]);
        let r = a.triu(1) + a.diagonal(0, 1, 2).tanh().diag_embed(0, 1, 2);
        let r_tilde = a.transpose(1, 2).triu(1)
            + self
                .r_tilde_diag
                .forward(context, batch)
                .tanh()
                .diag_embed(0, 1, 2);
        SylvesterParams {
            q: self.q(context, batch),
            r,
            r_tilde,
            b: self.b.forward(context, batch),
        }
    }

    /// `Qᵀ x` (`transpose`, `x [B, D]` → `[B, M]`) or `Q x` (`[B, M]` → `[B, D]`); a
    /// permutation needs no product.
    fn apply_q(&self, q: &Tensor, x: &Tensor, transpose: bool) -> Tensor {
        match &self.q {
            QSource::Triangular { reversed: false } => x.shallow_clone(),
            QSource::Triangular { reversed: true } => x.flip([1]),
            _ => {
                let q = if transpose {
                    q.transpose(1, 2)
                } else {
                    q.shallow_clone()
                };
                q.matmul(&x.unsqueeze(2)).squeeze_dim(2)
            }
        }
    }

    /// `z [B, D]`, `context [B, C]` → `(z' [B, D], log|det ∂z'/∂z| [B])`, nats.
    ///
    /// Panics when `z` is not `[B, D]` or the context does not match.
    pub fn forward(&self, z: &Tensor, context: Option<&Tensor>) -> (Tensor, Tensor) {
        let batch = check_latent(z, self.latent);
        let p = self.params(context, batch);
        let qt_z = self.apply_q(&p.q, z, true);
        let pre = p.r_tilde.matmul(&qt_z.unsqueeze(2)).squeeze_dim(2) + &p.b;
        let h = pre.tanh();
        let z_out = z + self.apply_q(&p.q, &p.r.matmul(&h.unsqueeze(2)).squeeze_dim(2), false);
        let diag = p.r.diagonal(0, 1, 2) * p.r_tilde.diagonal(0, 1, 2);
        let log_det = ((-h.square() + 1.0) * diag)
            .log1p()
            .sum_dim_intlist(1, false, None);
        (z_out, log_det)
    }
}
