//! The linear-Gaussian observation model that [`LinearGaussian`](super::LinearGaussian) and
//! [`MogLinearGaussian`](super::MogLinearGaussian) share, `x | z ~ N(W z + b, σ² I_P)`, and the
//! Gaussian log-density their closed forms evaluate.

use tch::{Device, Kind, Tensor};

use crate::model::LN_2PI;

/// `log N(x; W z + b, σ² I)` for `x` `[B, P]` and `z` `[..., B, D]` (`w` `[P, D]`, `b` `[P]`):
/// `[..., B]`, nats, in `z`'s kind.
pub(crate) fn log_likelihood(w: &Tensor, b: &Tensor, sigma: f64, x: &Tensor, z: &Tensor) -> Tensor {
    let p = w.size()[0] as f64;
    let s2 = sigma * sigma;
    let r = x - z.matmul(&w.tr()) - b;
    r.square().sum_dim_intlist(-1, false, Kind::Float) * (-0.5 / s2) - 0.5 * p * (LN_2PI + s2.ln())
}

/// A draw of `x ~ N(W z + b, σ² I)` for `z` `[..., D]`: `[..., P]`.
pub(crate) fn sample(w: &Tensor, b: &Tensor, sigma: f64, z: &Tensor) -> Tensor {
    let mean = z.matmul(&w.tr()) + b;
    &mean + mean.randn_like() * sigma
}

/// `log N(x; mean, cov)` for `x` `[B, P]` (any kind and device; computed in f64 on the CPU),
/// `mean` `[P]` and `cov` `[P, P]` (f64, CPU, positive definite): `[B]`, f64, nats.
pub(crate) fn gaussian_log_density(x: &Tensor, mean: &Tensor, cov: &Tensor) -> Tensor {
    let p = cov.size()[0];
    let chol = cov.linalg_cholesky(false);
    let r = x.to_kind(Kind::Double).to_device(Device::Cpu) - mean; // [B, P]
                                                                   // Solve L u = rᵀ: the Mahalanobis term is |u|².
    let u = Tensor::linalg_solve_triangular(&chol, &r.tr(), false, true, false);
    let maha = u.square().sum_dim_intlist(0, false, Kind::Double);
    let log_det = chol.diagonal(0, 0, 1).log().sum(Kind::Double) * 2.0;
    (maha + log_det + LN_2PI * p as f64) * -0.5
}
