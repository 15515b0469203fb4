//! TensorBoard logging that never stops a run. tensorboard-rs panics on any I/O error (its
//! folder cannot be made, a write fails in its writer thread, then every later call), so the
//! folder is checked before the writer is made, and each call runs under `catch_unwind`: the
//! first failure turns TensorBoard off with a warning, and training goes on; `train.log`,
//! `metrics.jsonl` and the checkpoints are the record that matters.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tensorboard_rs::summary_writer::SummaryWriter;
use vae_model::EpochReport;

/// A run's TensorBoard writer, or nothing once it has failed.
pub struct Board {
    writer: Option<SummaryWriter>,
    dir: PathBuf,
}

impl Board {
    /// Opens the event files in `dir` (made if missing). Errors when `dir` cannot be made or
    /// written: before training starts, so nothing is lost.
    pub fn open(dir: &Path) -> Result<Board> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the TensorBoard folder {}", dir.display()))?;
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"")
            .with_context(|| format!("the TensorBoard folder {} is not writable", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        let writer = catch_unwind(|| SummaryWriter::new(dir)).map_err(|_| {
            anyhow::anyhow!(
                "opening TensorBoard event files in {} failed",
                dir.display()
            )
        })?;
        Ok(Board {
            writer: Some(writer),
            dir: dir.to_path_buf(),
        })
    }

    /// Runs `f` on the writer; a panic inside turns TensorBoard off with a warning.
    fn with(&mut self, f: impl FnOnce(&mut SummaryWriter)) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| f(w))).is_err() {
            eprintln!(
                "warning: writing TensorBoard events in {} failed; TensorBoard logging is off \
                 for the rest of this run (train.log and metrics.jsonl go on)",
                self.dir.display()
            );
            // Dropping a failed writer may panic again (its thread is gone).
            let w = self.writer.take();
            let _ = catch_unwind(AssertUnwindSafe(move || drop(w)));
        }
    }

    /// An epoch's scalars, at its epoch number.
    pub fn epoch(&mut self, r: &EpochReport) {
        self.with(|tb| {
            let step = r.epoch;
            tb.add_scalar("train/neg_elbo", r.train_neg_elbo as f32, step);
            tb.add_scalar("train/rec", r.train_rec as f32, step);
            tb.add_scalar("train/kl", r.train_kl as f32, step);
            tb.add_scalar("train/grad_norm", r.grad_norm as f32, step);
            tb.add_scalar("schedule/warmup", r.warmup as f32, step);
            tb.add_scalar("schedule/lr", r.lr as f32, step);
            if let Some(v) = r.validation {
                tb.add_scalar("validation/neg_elbo", v.neg_elbo as f32, step);
                tb.add_scalar("validation/rec", v.rec as f32, step);
                tb.add_scalar("validation/kl", v.kl as f32, step);
            }
        });
    }

    /// An RGB image (`rgb` bytes of shape `dim` = `[3, H, W]`) at `step`.
    pub fn image(&mut self, tag: &str, rgb: &[u8], dim: &[usize], step: usize) {
        self.with(|tb| tb.add_image(tag, rgb, dim, step));
    }

    /// Flushes the event files.
    pub fn flush(&mut self) {
        self.with(|tb| tb.flush());
    }
}
