//! `results.json`: what a finished `vae train` measured with its best checkpoint.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{nan_if_null, parse_json, read_text, write_sorted_json};
use crate::error::Result;

/// The negative ELBO of one data split: BN in inference mode, one posterior sample per image,
/// fixed binarization (vae-model's `EvalReport`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitElbo {
    /// Mean `rec + kl`, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub neg_elbo: f64,
    /// Mean reconstruction loss `-log p(x|z)`, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub rec: f64,
    /// Mean KL term, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub kl: f64,
    /// Images evaluated.
    pub images: usize,
}

/// `results.json`: the validation and test -ELBO of the checkpoint that was best on
/// validation, written once when training ends. Its presence means the run is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainResults {
    /// The checkpoint evaluated: `best`.
    pub checkpoint: String,
    /// Its epoch (1-based); `None` when no epoch completed.
    pub best_epoch: Option<usize>,
    /// The validation split's -ELBO; `None` without a validation split.
    pub validation: Option<SplitElbo>,
    /// The test split's -ELBO (the test set is evaluated only here, once).
    pub test: SplitElbo,
    /// How the test images were binarized: `fixed`.
    pub test_binarization: String,
}

impl TrainResults {
    /// Writes the file atomically, as pretty JSON with sorted keys.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_sorted_json(path, self)
    }

    /// Reads the file; errors name it and the bad key ([`crate::Error::BadKey`]).
    pub fn read(path: &Path) -> Result<Self> {
        parse_json(path, &read_text(path)?, None)
    }
}
