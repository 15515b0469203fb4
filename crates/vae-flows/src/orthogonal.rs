//! Orthogonal matrices for the Householder and Sylvester flows: Householder reflections and
//! their products (FLOWS §4, §5.2), and iterative orthogonalization (FLOWS §5.1). Everything is
//! batched: one matrix per example.

use tch::{Kind, Tensor};

/// The most iterations [`orthogonalize`] runs when a flow does not say
/// ([`crate::FlowConfig::orthogonal_iterations`]'s default).
pub const DEFAULT_ORTHOGONAL_ITERATIONS: usize = 100;

/// The Householder reflection `H = I − 2 v vᵀ / ‖v‖²` of `v [B, D]` applied to `x`, which is
/// `[B, D]` (one vector per example) or `[B, D, M]` (M columns per example). `H` is symmetric
/// and orthogonal, `H H = I`, `det H = −1`.
///
/// Panics when the shapes do not match.
pub fn reflect(x: &Tensor, v: &Tensor) -> Tensor {
    let v_sq = (v * v).sum_dim_intlist(-1, true, None);
    match x.dim() {
        2 => {
            let vx = (v * x).sum_dim_intlist(-1, true, None);
            x - v * (vx * 2.0 / v_sq)
        }
        3 => {
            // vᵀX: [B, 1, M].
            let vx = v.unsqueeze(1).matmul(x);
            x - v.unsqueeze(2).matmul(&vx) * (v_sq.unsqueeze(2).reciprocal() * 2.0)
        }
        n => panic!("reflect expects x of rank 2 or 3, got rank {n}"),
    }
}

/// The first `columns` columns of `H_1 H_2 ⋯ H_K`, `[B, D, columns]`, for reflection vectors
/// `v [B, K, D]` (`v[:, k]` defines `H_{k+1}`): orthonormal columns for any non-zero vectors.
/// Computed by reflecting the first `columns` columns of the identity, `H_K` first.
pub fn householder_product(v: &Tensor, columns: i64) -> Tensor {
    let size = v.size();
    assert!(
        size.len() == 3,
        "householder_product expects v [B, K, D], got {size:?}"
    );
    let (batch, k, d) = (size[0], size[1], size[2]);
    let mut q = Tensor::eye_m(d, columns, (v.kind(), v.device()))
        .unsqueeze(0)
        .expand([batch, d, columns], false);
    for i in (0..k).rev() {
        q = reflect(&q, &v.select(1, i));
    }
    q
}

/// `max |QᵀQ − I|` per example, `[B]`, for `q [B, D, M]`.
pub fn orthogonality_error(q: &Tensor) -> Tensor {
    let m = q.size()[2];
    let eye = Tensor::eye(m, (q.kind(), q.device()));
    (q.transpose(1, 2).matmul(q) - eye)
        .abs()
        .amax([1, 2].as_slice(), false)
}

/// The tolerance at which [`orthogonalize`] stops: `max |QᵀQ − I| ≤ 1e-12` in f64, `1e-5` in
/// lower precision (f32 rounding leaves about `1e-6`).
pub fn orthogonality_tolerance(kind: Kind) -> f64 {
    if kind == Kind::Double {
        1e-12
    } else {
        1e-5
    }
}

/// Makes the columns of `q [B, D, M]` (`M ≤ D`, full column rank) orthonormal by the iteration
/// of FLOWS §5.1 (Björck–Bowie, as in the Sylvester-flow paper):
///
/// ```text
/// Q_0     = Q / ‖Q‖_F                               per example, so every singular value ≤ 1
/// Q_{k+1} = Q_k (I + ½ (I − Q_kᵀ Q_k))
/// ```
///
/// which drives every singular value to 1 (quadratically once close) and keeps the column
/// space. It stops once `max |QᵀQ − I|` over the batch is at most
/// [`orthogonality_tolerance`], or after `max_iterations` updates. Checking the tolerance reads
/// one number back from the device per iteration. Gradients flow through every iteration.
pub fn orthogonalize(q: &Tensor, max_iterations: usize) -> Tensor {
    let size = q.size();
    assert!(
        size.len() == 3,
        "orthogonalize expects q [B, D, M], got {size:?}"
    );
    let m = size[2];
    let eye = Tensor::eye(m, (q.kind(), q.device()));
    let tolerance = orthogonality_tolerance(q.kind());
    let norm = q
        .square()
        .sum_dim_intlist([1, 2].as_slice(), true, None)
        .sqrt()
        .clamp_min(1e-30);
    let mut q = q / norm;
    for _ in 0..max_iterations {
        let gram = q.transpose(1, 2).matmul(&q);
        let err = tch::no_grad(|| (&gram - &eye).abs().max().double_value(&[]));
        if err <= tolerance {
            break;
        }
        q = q.matmul(&(&eye * 1.5 - gram * 0.5));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn reflections_are_orthogonal_involutions() {
        tch::manual_seed(3);
        let v = Tensor::randn([4, 3, 5], (Kind::Double, Device::Cpu));
        let q = householder_product(&v, 5);
        assert!(orthogonality_error(&q).max().double_value(&[]) < 1e-12);
        let x = Tensor::randn([4, 5], (Kind::Double, Device::Cpu));
        let v0 = v.select(1, 0);
        let back = reflect(&reflect(&x, &v0), &v0);
        assert!((back - &x).abs().max().double_value(&[]) < 1e-12);
        // Vector and matrix forms agree.
        let cols = reflect(&x.unsqueeze(2), &v0).squeeze_dim(2);
        assert!((cols - reflect(&x, &v0)).abs().max().double_value(&[]) < 1e-12);
    }

    #[test]
    fn orthogonalize_converges_and_keeps_the_column_space() {
        tch::manual_seed(4);
        let a = Tensor::randn([3, 6, 4], (Kind::Double, Device::Cpu));
        let q = orthogonalize(&a, DEFAULT_ORTHOGONAL_ITERATIONS);
        assert!(orthogonality_error(&q).max().double_value(&[]) <= 1e-12);
        // Q Qᵀ a = a: the columns of a lie in Q's span.
        let proj = q.matmul(&q.transpose(1, 2)).matmul(&a);
        assert!((proj - &a).abs().max().double_value(&[]) < 1e-9);
    }
}
