//! `metrics.jsonl`: one JSON object per completed training epoch, what `train.log` shows for
//! people, for tools.
//!
//! The writer rewrites the whole file through [`crate::write_atomic`] after every epoch
//! ([`EpochMetrics::append`]), so a crash or a kill never leaves a half line: a reader sees
//! the file before the epoch or after it. [`EpochMetrics::read_all`] therefore parses every
//! line and reports a bad one (file, line, key) instead of skipping it. Lines are in the order
//! the epochs completed: an epoch that runs again (after a divergence rolled back to an older
//! checkpoint, or a resume from a checkpoint older than the last logged epoch) has a line each
//! time, as in `train.log`. A run trained before this file existed, then resumed, has lines
//! only for the epochs after the resume.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{nan_if_null, parse_json, read_text, SplitElbo};
use crate::error::{Error, Result};

/// One completed epoch: one line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochMetrics {
    /// The epoch, 1-based.
    pub epoch: usize,
    /// The epochs the run is asked for (`train.epochs`; a resume may raise it).
    pub epochs: usize,
    /// Optimizer steps taken since the start of the run, at the end of this epoch.
    pub global_step: u64,
    /// Mean train -ELBO (`rec + kl`, unweighted by warm-up, BN in training mode), nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_neg_elbo: f64,
    /// Mean train reconstruction loss, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_rec: f64,
    /// Mean train KL, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_kl: f64,
    /// KL warm-up factor of the epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub warmup: f64,
    /// Learning rate of the epoch.
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Mean gradient norm over the epoch's steps.
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    /// The validation split's -ELBO after the epoch; `None` without a validation split.
    pub validation: Option<SplitElbo>,
    /// Whether this epoch is the best so far by validation -ELBO, so `checkpoints/best` holds
    /// it (`*` in `train.log`; always true without validation).
    pub best: bool,
    /// Steps of the epoch skipped because the loss or a gradient was not finite.
    pub skipped: usize,
    /// Wall-clock seconds of the epoch, validation included.
    #[serde(deserialize_with = "nan_if_null")]
    pub seconds: f64,
    /// When the epoch ended, RFC 3339 UTC.
    pub end_time: String,
}

impl EpochMetrics {
    /// The validation -ELBO, if the run has a validation split.
    pub fn valid_neg_elbo(&self) -> Option<f64> {
        self.validation.map(|v| v.neg_elbo)
    }

    /// This epoch as one line of JSON, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("EpochMetrics has string keys only")
    }

    /// Adds this epoch's line to the file at `path` (made if missing) by rewriting the file
    /// atomically with the line at its end.
    pub fn append(&self, path: &Path) -> Result<()> {
        let mut text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n'); // not ours; keep our line whole all the same
        }
        text.push_str(&self.to_line());
        text.push('\n');
        crate::write_atomic(path, text.as_bytes())
    }

    /// Reads every line of the file (blank lines aside), in order. Errors name the file, the
    /// line and the key ([`crate::Error::BadKey`]); a missing file is [`crate::Error::Io`].
    pub fn read_all(path: &Path) -> Result<Vec<EpochMetrics>> {
        read_text(path)?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| parse_json(path, l, Some(i + 1)))
            .collect()
    }
}

/// How far a run's training has come, from its `metrics.jsonl` lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The last completed epoch (the last line's `epoch`).
    pub epochs_done: usize,
    /// The epochs the run is asked for (the last line's `epochs`).
    pub epochs_total: usize,
    /// Epochs run, one per line: more than `epochs_done` when epochs ran again.
    pub epochs_run: usize,
    /// Seconds of all the epochs run.
    pub seconds: f64,
    /// The epoch of the last line marked best: the one `checkpoints/best` holds.
    pub best_epoch: Option<usize>,
}

impl Progress {
    /// The progress that `lines` record; `None` before the first epoch ends.
    pub fn of(lines: &[EpochMetrics]) -> Option<Progress> {
        let last = lines.last()?;
        Some(Progress {
            epochs_done: last.epoch,
            epochs_total: last.epochs,
            epochs_run: lines.len(),
            seconds: lines.iter().map(|m| m.seconds).sum(),
            best_epoch: lines.iter().rev().find(|m| m.best).map(|m| m.epoch),
        })
    }

    /// Reads `metrics.jsonl` ([`EpochMetrics::read_all`]) and gives its progress.
    pub fn read(path: &Path) -> Result<Option<Progress>> {
        Ok(Progress::of(&EpochMetrics::read_all(path)?))
    }

    /// Mean seconds per epoch run.
    pub fn seconds_per_epoch(&self) -> f64 {
        self.seconds / self.epochs_run as f64
    }

    /// The fraction of the asked-for epochs done, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.epochs_total == 0 {
            return 1.0;
        }
        (self.epochs_done as f64 / self.epochs_total as f64).min(1.0)
    }
}
