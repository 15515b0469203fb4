//! Elementwise root finding for the numerical inverses of the planar and NAF flows (FLOWS §2.3,
//! §6.4): bisection on a bracket, then safeguarded Newton steps.

use tch::{Kind, Tensor};

/// Bisection halvings before the Newton steps. They halve the bracket in `asinh` space, so a
/// bracket as wide as `±1e300` still ends below `1e-27` there (near 0, `asinh x ≈ x`; far
/// out, a relative width).
pub(crate) const BISECTIONS: usize = 100;
/// Safeguarded Newton steps after the bisection; each keeps the bracket and falls back to its
/// midpoint when the step would leave it.
pub(crate) const NEWTON_STEPS: usize = 6;

/// Solves `g(x) = target` elementwise for a `g` increasing in each element, given brackets with
/// `g(lo) ≤ target ≤ g(hi)`. `g` returns `(g(x), g'(x))`, both shaped as `x`. Callers run it
/// under `tch::no_grad`.
///
/// Two bisections find the left end of `{g ≥ target}` and the right end of `{g ≤ target}`;
/// they coincide unless `g` is flat to rounding around the root (a saturated transformer),
/// and then the point of that interval nearest 0 is taken, so that an ill-determined latent
/// stays moderate instead of running to the end of the bracket. Newton steps polish the
/// result, each kept inside the bracket (else the bracket's midpoint).
///
/// The bracket is first clipped to `±1e300` (f64) or `±1e30` (other kinds), so an infinite end
/// (a transformer slope that underflowed) cannot turn the midpoints into NaN.
pub(crate) fn solve_increasing(
    g: impl Fn(&Tensor) -> (Tensor, Tensor),
    target: &Tensor,
    lo: &Tensor,
    hi: &Tensor,
) -> Tensor {
    let limit = if lo.kind() == Kind::Double {
        1e300
    } else {
        1e30
    };
    let mid = |a: &Tensor, b: &Tensor| ((a.asinh() + b.asinh()) * 0.5).sinh();
    let (lo, hi) = (lo.clamp(-limit, limit), hi.clamp(-limit, limit));
    // Left end: g(left_hi) ≥ target > g(left_lo); right end: g(right_lo) ≤ target < g(right_hi).
    let (mut left_lo, mut left_hi) = (lo.shallow_clone(), hi.shallow_clone());
    let (mut right_lo, mut right_hi) = (lo, hi);
    for _ in 0..BISECTIONS {
        let m = mid(&left_lo, &left_hi);
        let above = g(&m).0.ge_tensor(target);
        left_hi = m.where_self(&above, &left_hi);
        left_lo = left_lo.where_self(&above, &m);
        let m = mid(&right_lo, &right_hi);
        let below = g(&m).0.le_tensor(target);
        right_lo = m.where_self(&below, &right_lo);
        right_hi = right_hi.where_self(&below, &m);
    }
    let (a, b) = (left_hi.minimum(&right_lo), left_hi.maximum(&right_lo));
    let mut x = a.clamp_min(0.0).minimum(&b);
    let (mut lo, mut hi) = (left_lo, right_hi);
    for _ in 0..NEWTON_STEPS {
        let (gx, dg) = g(&x);
        let residual = gx - target;
        hi = x.where_self(&residual.gt(0.0), &hi);
        lo = x.where_self(&residual.lt(0.0), &lo);
        let step = &x - &residual / dg;
        let inside = step.gt_tensor(&lo).logical_and(&step.lt_tensor(&hi));
        let next = step.where_self(&inside, &mid(&lo, &hi));
        x = x.where_self(&residual.eq(0.0), &next);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn solves_a_monotone_cubic() {
        let target = Tensor::from_slice(&[-30.0f64, 0.0, 2.0, 1e3]);
        let g = |x: &Tensor| (x * x * x + x, x * x * 3.0 + 1.0);
        let lo = Tensor::full([4], -100.0, (Kind::Double, Device::Cpu));
        let hi = Tensor::full([4], 100.0, (Kind::Double, Device::Cpu));
        let x = solve_increasing(g, &target, &lo, &hi);
        let err = (g(&x).0 - &target).abs().max().double_value(&[]);
        assert!(err < 1e-9, "{err}");
    }
}
