//! The estimators' random streams: exclusive use of tch's process-wide generator, and seeds
//! derived per purpose and per example so that every run reproduces from its seed.

use std::sync::{Mutex, MutexGuard};

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
