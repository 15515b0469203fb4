//! Layers that flowvae's network crates share, on tch.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod batch_norm;
pub mod error;

pub use batch_norm::{BatchNorm, BatchNormSettings};
pub use error::{Error, Result};
