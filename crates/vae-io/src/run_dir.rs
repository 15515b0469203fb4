//! A run's folder: the name of every file `vae train` and `vae eval` write into it, and typed
//! readers of its result files ([`crate::results`]).
//!
//! ```text
//! runs/NAME/
//!   config.json                       the resolved config
//!   manifest.json                     versions, seeds, device, times
//!   train.log                         one line per epoch, for people
//!   metrics.jsonl                     one EpochMetrics per epoch, for tools
//!   results.json                      TrainResults: -ELBO of the best checkpoint
//!   checkpoints/{best,last}.safetensors
//!   tensorboard/
//!   samples.png, reconstructions.png
//!   eval-<method>-<split>.{json,csv,png}   EvalSummary, per-image rows, IWAE curve (IS)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::results::{EpochMetrics, EvalSummary, TrainResults};

/// `config.json`.
pub const CONFIG: &str = "config.json";
/// `manifest.json`.
pub const MANIFEST: &str = "manifest.json";
/// `train.log`.
pub const TRAIN_LOG: &str = "train.log";
/// `metrics.jsonl`.
pub const METRICS: &str = "metrics.jsonl";
/// `results.json`: written once training has finished and the test set was evaluated.
pub const RESULTS: &str = "results.json";
/// `checkpoints`.
pub const CHECKPOINTS: &str = "checkpoints";
/// `tensorboard`.
pub const TENSORBOARD: &str = "tensorboard";
/// `samples.png`.
pub const SAMPLES: &str = "samples.png";
/// `reconstructions.png`.
pub const RECONSTRUCTIONS: &str = "reconstructions.png";

/// The files of one run, by name; nothing is read or made until asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// The run in `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }
    /// `config.json`: the resolved config.
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG)
    }
    /// `manifest.json`: versions, seeds, device, timings.
    pub fn manifest(&self) -> PathBuf {
        self.root.join(MANIFEST)
    }
    /// `train.log`: one line per epoch and the run's events, for people.
    pub fn log(&self) -> PathBuf {
        self.root.join(TRAIN_LOG)
    }
    /// `metrics.jsonl`: one [`EpochMetrics`] line per completed epoch, for tools.
    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS)
    }
    /// `results.json`: the [`TrainResults`] of a finished run.
    pub fn results(&self) -> PathBuf {
        self.root.join(RESULTS)
    }
    /// The `checkpoints` folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(CHECKPOINTS)
    }
    /// `checkpoints/<which>.safetensors` (`best` or `last`).
    pub fn checkpoint(&self, which: &str) -> PathBuf {
        self.checkpoints().join(format!("{which}.safetensors"))
    }
    /// The TensorBoard event folder.
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join(TENSORBOARD)
    }
    /// `samples.png`: 100 prior samples.
    pub fn samples(&self) -> PathBuf {
        self.root.join(SAMPLES)
    }
    /// `reconstructions.png`: test inputs beside their reconstructions.
    pub fn reconstructions(&self) -> PathBuf {
        self.root.join(RECONSTRUCTIONS)
    }
    /// `eval-<method>-<split>.json`, the [`EvalSummary`] `vae eval` writes by default; its
    /// per-image CSV and (IS) IWAE-curve PNG have the same name with `.csv` and `.png`
    /// ([`Path::with_extension`]).
    pub fn eval_summary(&self, method: &str, split: &str) -> PathBuf {
        self.root.join(format!("eval-{method}-{split}.json"))
    }
    /// `shards/eval-<method>-<split>/shard-I-of-N.json`, the shard summary `vae eval --shard
    /// I/N` writes by default (its CSV beside it, as [`eval_summary`](Self::eval_summary)'s).
    pub fn eval_shard(&self, method: &str, split: &str, index: usize, count: usize) -> PathBuf {
        self.root
            .join("shards")
            .join(format!("eval-{method}-{split}"))
            .join(format!("shard-{index}-of-{count}.json"))
    }

    /// Reads `results.json` ([`TrainResults::read`]).
    pub fn read_results(&self) -> Result<TrainResults> {
        TrainResults::read(&self.results())
    }
    /// Reads `metrics.jsonl` ([`EpochMetrics::read_all`]).
    pub fn read_metrics(&self) -> Result<Vec<EpochMetrics>> {
        EpochMetrics::read_all(&self.metrics())
    }
    /// Reads `eval-<method>-<split>.json` ([`EvalSummary::read`]).
    pub fn read_eval(&self, method: &str, split: &str) -> Result<EvalSummary> {
        EvalSummary::read(&self.eval_summary(method, split))
    }

    /// Appends one line to `train.log` (created if missing). Not atomic: a line is one
    /// `write` of an append-only file, and the log is for people; tools read `metrics.jsonl`.
    pub fn log_line(&self, line: &str) -> Result<()> {
        append_line(&self.log(), line)
    }
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let fail = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    f.write_all(format!("{line}\n").as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let r = RunDir::new("runs/a");
        assert_eq!(r.metrics(), Path::new("runs/a/metrics.jsonl"));
        assert_eq!(
            r.checkpoint("best"),
            Path::new("runs/a/checkpoints/best.safetensors")
        );
        assert_eq!(
            r.eval_summary("is", "test"),
            Path::new("runs/a/eval-is-test.json")
        );
        assert_eq!(
            r.eval_summary("is", "test").with_extension("csv"),
            Path::new("runs/a/eval-is-test.csv")
        );
    }

    #[test]
    fn log_lines_append_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = RunDir::new(dir.path());
        r.log_line("one").unwrap();
        r.log_line("two").unwrap();
        assert_eq!(std::fs::read_to_string(r.log()).unwrap(), "one\ntwo\n");
        let missing = RunDir::new(dir.path().join("no/such"));
        let msg = missing.log_line("x").unwrap_err().to_string();
        assert!(msg.contains("no/such/train.log"), "{msg}");
        let msg = missing.read_results().unwrap_err().to_string();
        assert!(msg.contains("no/such/results.json"), "{msg}");
    }
}
