//! Checks of the estimators' inputs and outputs, and the read-back of tensors into host vectors.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Copies a tensor of any shape, kind and device into a flat row-major `Vec<f64>`.
pub(crate) fn to_vec_f64(t: &Tensor) -> Result<Vec<f64>> {
    let flat = t
        .f_to_kind(Kind::Double)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?
        .f_reshape([-1])?;
    Ok(Vec::<f64>::try_from(&flat)?)
}

/// Checks that a tensor has exactly the expected shape.
pub(crate) fn check_shape(what: &'static str, t: &Tensor, expected: &[i64]) -> Result<()> {
    let got = t.size();
    if got != expected {
        return Err(Error::Shape {
            what,
            expected: format!("{expected:?}"),
            got,
        });
    }
    Ok(())
}

/// The number of examples in `x` (its leading dimension), which must be at least 1.
pub(crate) fn num_examples(x: &Tensor) -> Result<usize> {
    let size = x.size();
    match size.first() {
        Some(&b) if b > 0 => Ok(b as usize),
        _ => Err(Error::Shape {
            what: "x",
            expected: "[B, ...] with B >= 1".into(),
            got: size,
        }),
    }
}

/// Rejects NaN and `+inf` log-weights, laid out `[S, B]` row-major (example `b` at `s * B + b`).
pub(crate) fn check_finite(
    what: &'static str,
    values: &[f64],
    b: usize,
    offset: usize,
) -> Result<()> {
    let bad: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_nan() || **v == f64::INFINITY)
        .map(|(i, _)| i)
        .collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(Error::NonFinite {
            what,
            count: bad.len(),
            example: offset + i % b,
        }),
    }
}
