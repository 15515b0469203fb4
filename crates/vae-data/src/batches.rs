//! Mini-batches as tch tensors, shuffled per epoch and binarized as configured.

use std::borrow::Cow;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::binarize::{self, Binarization, TAG_SHUFFLE};
use crate::dataset::{Split, IMAGE_PIXELS, IMAGE_SIDE};
use crate::error::{Error, Result};

/// How a split is cut into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Images per batch (the original uses 200, ORIGINAL §1.2).
    pub batch_size: usize,
    /// Visit the images in a new seeded order every epoch.
    pub shuffle: bool,
    /// Drop the last, smaller batch (the original's `drop_remainder`).
    pub drop_last: bool,
    /// How grey levels become model inputs.
    pub binarization: Binarization,
}

impl BatchConfig {
    /// Training batches as in the original: 200 images, shuffled, dynamically binarized, and the
    /// incomplete last batch dropped.
    pub fn train(batch_size: usize) -> Self {
        BatchConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            binarization: Binarization::Dynamic,
        }
    }

    /// Evaluation batches: file order, every image once, fixed binarization.
    pub fn eval(batch_size: usize) -> Self {
        BatchConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            binarization: Binarization::Fixed,
        }
    }
}

/// One mini-batch.
#[derive(Debug)]
pub struct Batch {
    /// Model inputs, shape `[B, 1, 28, 28]`, f32 in {0, 1} (or [0, 1] for grey levels).
    pub images: Tensor,
    /// Class labels, shape `[B]`, i64.
    pub labels: Tensor,
    /// Index of each image in its split.
    pub indices: Vec<usize>,
}

/// A split prepared for batching: the source of every epoch's batches.
///
/// With [`Binarization::Fixed`] or [`Binarization::Static`] the binary images are drawn once here,
/// from `seed`, and reused by every epoch.
pub struct Batches<'a> {
    split: Cow<'a, Split>,
    cfg: BatchConfig,
    seed: u64,
    device: Device,
}

impl<'a> Batches<'a> {
    /// Prepares `split` for batching. `seed` decides the shuffles and the Bernoulli draws.
    pub fn new(split: &'a Split, cfg: BatchConfig, seed: u64, device: Device) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(Error::BadBatchConfig {
                field: "batch_size",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if cfg.drop_last && cfg.batch_size > split.len() {
            return Err(Error::BadBatchConfig {
                field: "batch_size",
                value: cfg.batch_size.to_string(),
                expected: "at most the number of images when the last batch is dropped",
            });
        }
        let split = match cfg.binarization {
            Binarization::Fixed | Binarization::Static => {
                Cow::Owned(binarize::binarize_once(split, seed))
            }
            Binarization::Dynamic | Binarization::None => Cow::Borrowed(split),
        };
        Ok(Batches {
            split,
            cfg,
            seed,
            device,
        })
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.split.len();
        if self.cfg.drop_last {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }

    /// Number of images in the split.
    pub fn num_images(&self) -> usize {
        self.split.len()
    }

    /// The batch configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.cfg
    }

    /// The batches of `epoch` (0-based). Skip with `.nth(k)` or `.skip(k)` to resume mid-epoch:
    /// batches are built lazily, so skipped ones cost nothing.
    pub fn epoch(&self, epoch: u64) -> EpochBatches<'_> {
        let mut order: Vec<usize> = (0..self.split.len()).collect();
        if self.cfg.shuffle {
            let mut rng =
                ChaCha8Rng::seed_from_u64(binarize::stream_seed(&[TAG_SHUFFLE, self.seed, epoch]));
            order.shuffle(&mut rng);
        }
        if self.cfg.drop_last {
            order.truncate(self.num_batches() * self.cfg.batch_size);
        }
        EpochBatches {
            source: self,
            order,
            epoch,
            next: 0,
        }
    }

    /// Builds the batch of the given split indices, drawn as at `epoch`.
    pub fn batch_of(&self, indices: &[usize], epoch: u64) -> Batch {
        let mut data = vec![0f32; indices.len() * IMAGE_PIXELS];
        data.par_chunks_mut(IMAGE_PIXELS)
            .zip(indices.par_iter())
            .for_each(|(out, &i)| {
                let pixels = self.split.image(i);
                match self.cfg.binarization {
                    Binarization::Dynamic => binarize::bernoulli_image(
                        pixels,
                        binarize::draw_key(self.seed, epoch, i),
                        out,
                    ),
                    // Fixed and static sets already hold 0 or 255.
                    _ => out
                        .iter_mut()
                        .zip(pixels)
                        .for_each(|(o, &p)| *o = p as f32 / 255.0),
                }
            });
        let b = indices.len() as i64;
        let side = IMAGE_SIDE as i64;
        let images = upload(
            Tensor::from_slice(&data).view([b, 1, side, side]),
            self.device,
        );
        let labels: Vec<i64> = indices
            .iter()
            .map(|&i| self.split.labels[i] as i64)
            .collect();
        let labels = upload(
            Tensor::from_slice(&labels).to_kind(Kind::Int64),
            self.device,
        );
        Batch {
            images,
            labels,
            indices: indices.to_vec(),
        }
    }
}

/// Moves a host tensor to `device`. To a GPU it goes through page-locked memory without
/// waiting: a copy from ordinary memory waits until the GPU has finished all the work queued
/// before it, so every batch would stall the host until the previous training step was done.
/// (libtorch's pinned-memory cache keeps the staging block until the copy has completed.)
fn upload(t: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cuda(_) => t
            .internal_pin_memory(device)
            .to_device_(device, t.kind(), true, false),
        _ => t.to_device(device),
    }
}

/// The batches of one epoch, in order.
pub struct EpochBatches<'s> {
    source: &'s Batches<'s>,
    order: Vec<usize>,
    epoch: u64,
    next: usize,
}

impl Iterator for EpochBatches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let bs = self.source.cfg.batch_size;
        let start = self.next * bs;
        if start >= self.order.len() {
            return None;
        }
        let end = (start + bs).min(self.order.len());
        self.next += 1;
        Some(self.source.batch_of(&self.order[start..end], self.epoch))
    }

    fn nth(&mut self, n: usize) -> Option<Batch> {
        self.next += n;
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self
            .order
            .len()
            .div_ceil(self.source.cfg.batch_size)
            .saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochBatches<'_> {}
