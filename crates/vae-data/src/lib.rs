//! Datasets for flow-VAEs: MNIST and Fashion-MNIST from IDX files, fixed train / validation / test
//! splits, reproducible binarization and mini-batches as tch tensors.
#![doc = include_str!("../README.md")]

pub mod array_file;
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
