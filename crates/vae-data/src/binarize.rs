//! Binarization of grey levels into Bernoulli draws, reproducible from a seed.
//!
//! Grey level `p = pixel / 255` as in the original (ORIGINAL §1.3), and `x = 1` with probability `p`.
//! Every draw is keyed by `(seed, epoch, image index)` rather than by a running RNG, so the result
//! does not depend on the batch size, the order of batches, the number of threads or whether a
//! run was resumed in the middle of an epoch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::{Split, IMAGE_PIXELS};

/// How grey images become the binary inputs of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binarization {
    /// Fresh Bernoulli draws for every image at every epoch (the original's training data).
    Dynamic,
    /// Drawn once from a recorded seed and reused at every evaluation: the default for validation
    /// and test, so that every number is measured on the same binary images (fixes ORIGINAL D2).
    Fixed,
    /// Binarized once when loaded and then kept: a statically binarized training set.
    Static,
    /// No binarization: grey levels `pixel / 255`.
    None,
}

impl std::str::FromStr for Binarization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dynamic" => Ok(Binarization::Dynamic),
            "fixed" => Ok(Binarization::Fixed),
            "static" => Ok(Binarization::Static),
            "none" => Ok(Binarization::None),
            other => Err(format!(
                "unknown binarization `{other}`: expected dynamic, fixed, static or none"
            )),
        }
    }
}

/// Domain tags keep the RNG streams of different purposes apart.
pub(crate) const TAG_BINARIZE: u64 = 0xb1;
pub(crate) const TAG_SHUFFLE: u64 = 0x5f;
/// The epoch value used for draws that happen once (fixed and static binarization).
pub(crate) const ONCE: u64 = u64::MAX;

/// Mixes several words into one RNG seed (SplitMix64 finaliser applied in a chain).
pub fn stream_seed(parts: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &p in parts {
        h = splitmix(h ^ splitmix(p));
    }
    h
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes Bernoulli(`pixel / 255`) draws, as 0.0 or 1.0, for one image into `out`.
///
/// `key` identifies the draw; the same key always gives the same image.
pub fn bernoulli_image(pixels: &[u8], key: u64, out: &mut [f32]) {
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    for (o, &p) in out.iter_mut().zip(pixels) {
        let u: f32 = rng.gen();
        *o = if u < p as f32 / 255.0 { 1.0 } else { 0.0 };
    }
}

/// The key of image `index` drawn at `epoch` under `seed`.
pub fn draw_key(seed: u64, epoch: u64, index: usize) -> u64 {
    stream_seed(&[TAG_BINARIZE, seed, epoch, index as u64])
}

/// A binarized copy of `split` (pixels 0 or 255), drawn once from `seed`, in parallel.
///
/// Image `i` depends only on `(seed, i)`: this is how [`Binarization::Fixed`] and
/// [`Binarization::Static`] sets are made.
pub fn binarize_once(split: &Split, seed: u64) -> Split {
    let mut pixels = vec![0u8; split.pixels.len()];
    pixels
        .par_chunks_mut(IMAGE_PIXELS)
        .enumerate()
        .for_each(|(i, out)| {
            let mut buf = [0f32; IMAGE_PIXELS];
            bernoulli_image(split.image(i), draw_key(seed, ONCE, i), &mut buf);
            for (o, b) in out.iter_mut().zip(buf) {
                *o = if b > 0.5 { 255 } else { 0 };
            }
        });
    Split {
        pixels,
        labels: split.labels.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_are_deterministic() {
        let mut out = [0.5f32; 4];
        bernoulli_image(&[0, 255, 0, 255], 7, &mut out);
        assert_eq!(out, [0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn keys_differ_by_every_part() {
        let base = draw_key(1, 2, 3);
        assert_ne!(base, draw_key(0, 2, 3));
        assert_ne!(base, draw_key(1, 3, 3));
        assert_ne!(base, draw_key(1, 2, 4));
        assert_eq!(base, draw_key(1, 2, 3));
    }

    #[test]
    fn draw_frequency_matches_probability() {
        // 784 pixels at p = 128/255 over 200 keys: 156 800 Bernoulli draws.
        let pixels = [128u8; IMAGE_PIXELS];
        let mut buf = [0f32; IMAGE_PIXELS];
        let mut ones = 0.0f64;
        let keys = 200;
        for k in 0..keys {
            bernoulli_image(&pixels, draw_key(9, 0, k), &mut buf);
            ones += buf.iter().map(|&b| b as f64).sum::<f64>();
        }
        let n = (keys * IMAGE_PIXELS) as f64;
        let p = 128.0 / 255.0;
        let se = (p * (1.0 - p) / n).sqrt();
        assert!(
            (ones / n - p).abs() < 4.0 * se,
            "frequency {} vs {p} (se {se})",
            ones / n
        );
    }
}
