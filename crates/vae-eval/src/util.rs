//! Small helpers shared by the estimators.

use std::sync::{Mutex, MutexGuard};

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

static RNG_LOCK: Mutex<()> = Mutex::new(());

/// Exclusive use of tch's random generator, which is process-wide.
///
/// Every estimator run ([`crate::importance_sampling`], [`crate::ais()`], [`crate::reverse_ais`],
/// [`crate::bdmc()`], [`crate::simulate`], and the `random` constructors of [`crate::analytic`])
/// holds this guard from its `tch::manual_seed` to its last draw, so that runs on different
/// threads cannot interleave their draws and every run reproduces from its seed. Code elsewhere
/// in the process that draws from tch's generator while an estimator runs can still disturb it;
/// take this guard around such code to prevent that. Do not hold it while calling an estimator
/// (that would deadlock).
pub fn rng_guard() -> MutexGuard<'static, ()> {
    // A run that panicked leaves nothing to repair: the next run re-seeds.
    RNG_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Mixes several words into one seed (SplitMix64 finaliser applied in a chain), so that e.g. each
/// example's noise stream depends only on the run seed and the example's index.
pub(crate) fn stream_seed(parts: &[u64]) -> i64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &p in parts {
        h = splitmix(h ^ splitmix(p));
    }
    // torch seeds are 64-bit; the sign is irrelevant.
    h as i64
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Domain tags that keep the random streams of different purposes apart.
pub(crate) const TAG_IS: u64 = 0x15;
pub(crate) const TAG_AIS_FORWARD: u64 = 0xa1;
pub(crate) const TAG_AIS_REVERSE: u64 = 0xa2;
pub(crate) const TAG_SIMULATE: u64 = 0x51;

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
