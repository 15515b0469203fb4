//! The pieces of a sharded evaluation: `vae eval --shard I/N` evaluates the `I`-th of `N`
//! contiguous slices of the images and writes an [`EvalSummary`](super::EvalSummary) with a
//! [`ShardInfo`] (and the usual per-image CSV, indexed by the image's place in the whole
//! evaluation); `vae eval-merge` checks that the shards belong together and writes the summary
//! an unsharded run would have written, with a [`ShardTime`] per shard. While a shard runs it
//! keeps a [`ShardProgress`] file beside its summary, for a driver's progress bar.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{nan_if_null, parse_json, read_text, write_sorted_json};
use crate::error::Result;

/// Which slice of which evaluation a shard summary holds, and what the merge needs that the
/// summary and CSV do not carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// `I`, from 1 to [`count`](Self::count).
    pub index: usize,
    /// `N`, the number of shards.
    pub count: usize,
    /// The index, in the whole evaluation, of the shard's first image.
    pub first_image: usize,
    /// Images in the whole evaluation.
    pub total_images: usize,
    /// The run folder evaluated, as given to `vae eval --run`.
    pub run: String,
    /// The run's name (its config's `name`), for the merged plot's title.
    pub run_name: String,
    /// The checksum stored in the evaluated checkpoint (`None` for a checkpoint written before
    /// checksums existed): two shards of one evaluation read the same checkpoint file.
    pub checkpoint_checksum: Option<u64>,
    /// IS only: `log p̂_k(x)` of each point `k` of the IWAE curve (outer) for each image of the
    /// shard (inner), nats, so that the merged curve's means and standard errors are those of
    /// an unsharded run. Empty for AIS and BDMC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iwae_log_px: Vec<Vec<f64>>,
}

/// One shard's part of a merged evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardTime {
    /// `I`.
    pub index: usize,
    /// Its images.
    pub images: usize,
    /// Its seconds of estimation.
    #[serde(deserialize_with = "nan_if_null")]
    pub wall_seconds: f64,
}

/// How far a running shard has come: `<summary>.progress.json`, rewritten atomically every few
/// seconds while it runs, left behind when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardProgress {
    /// Units of work done (the estimator's own: samples or annealing steps).
    pub done: u64,
    /// Units of work in all.
    pub total: u64,
    /// Seconds since the shard started estimating.
    #[serde(deserialize_with = "nan_if_null")]
    pub seconds: f64,
}

impl ShardProgress {
    /// The progress file of the shard whose summary goes to `summary`:
    /// `<summary without .json>.progress.json`.
    pub fn path_for(summary: &Path) -> std::path::PathBuf {
        summary.with_extension("progress.json")
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_sorted_json(path, self)
    }

    /// Reads the file; errors name it and the bad key.
    pub fn read(path: &Path) -> Result<Self> {
        parse_json(path, &read_text(path)?, None)
    }
}
