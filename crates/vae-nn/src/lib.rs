//! Layers that flowvae's network crates share, on tch.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod batch_norm;
pub mod error;
pub mod normalization;
pub mod weight_norm;

pub use batch_norm::{hold_running_statistics, BatchNorm, BatchNormSettings};
pub use error::{Error, Result};
pub use normalization::Normalization;
pub use weight_norm::{WeightNorm, WeightNormLinear};
