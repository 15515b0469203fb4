//! Datasets for flow-VAEs: MNIST and Fashion-MNIST from IDX files, fixed train / validation / test
//! splits, reproducible binarization and mini-batches as tch tensors.
//!
//! # Brief overview
//!
//! - [`idx`] parses IDX files (raw or gzipped) with typed errors and no panics (vae-io's parser
//!   with this crate's [`Error`]).
//! - [`Dataset::load`] reads a dataset from the data folder ([`default_data_dir`], filled by
//!   `cargo xtask bootstrap`) and splits it as a [`SplitConfig`] says: 50k / 10k / 10k by default.
//! - [`Binarization`] says how grey levels become binary inputs: `dynamic`, `fixed`, `static` or
//!   `none`; every draw is keyed by a seed, so runs reproduce.
//! - [`Batches`] cuts a [`Split`] into [`Batch`]es of `[B, 1, 28, 28]` f32 tensors on a tch device,
//!   shuffled per epoch.
//! - [`image_grid`] tiles images into a [`GreyImage`] that can be saved as PNG (both from vae-io).
//!
//! ```
//! use vae_data::{Batches, BatchConfig, Split};
//! // Two 28x28 images, all white and all black.
//! let split = Split { pixels: [vec![255u8; 784], vec![0u8; 784]].concat(), labels: vec![1, 0] };
//! let batches = Batches::new(&split, BatchConfig::train(2), 42, tch::Device::Cpu).unwrap();
//! let batch = batches.epoch(0).next().unwrap();
//! assert_eq!(batch.images.size(), [2, 1, 28, 28]);
//! // White pixels binarize to 1 with probability 1, black ones to 0.
//! assert_eq!(batch.images.sum(tch::Kind::Float).double_value(&[]), 784.0);
//! ```

pub mod batches;
pub mod binarize;
pub mod dataset;
pub mod error;
pub mod grid;
pub mod idx;

pub use batches::{Batch, BatchConfig, Batches, EpochBatches};
pub use binarize::Binarization;
pub use dataset::{
    default_data_dir, Dataset, DatasetKind, Split, SplitConfig, SplitKind, IMAGE_PIXELS, IMAGE_SIDE,
};
pub use error::{Error, Result};
pub use grid::{image_grid, GreyImage};
