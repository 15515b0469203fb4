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

/// The files `vae train` writes into a run folder, which nothing else may overwrite.
const RUN_FILES: [&str; 7] = [
    CONFIG,
    MANIFEST,
    TRAIN_LOG,
    METRICS,
    RESULTS,
    SAMPLES,
    RECONSTRUCTIONS,
];

/// Whether `dir` holds a run: its `config.json` and `checkpoints/`.
pub fn is_run_folder(dir: &Path) -> bool {
    dir.join(CONFIG).is_file() && dir.join(CHECKPOINTS).is_dir()
}

/// Why a result file (a summary, CSV or picture) must not be written at `path`, or `None` when it
/// may: it exists and is not a regular file (a folder, a device, a FIFO; a symbolic link counts
/// as what it points to), or it is one of a run's own files (`config.json`, `results.json`,
/// `samples.png`, ...), or it lies in a run's `checkpoints/` or `tensorboard/` folder. flowvae
/// often runs as root, so a mistyped `--out` must not replace a device node or ruin a run.
pub fn output_conflict(path: &Path) -> Option<String> {
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            let kind = if meta.is_dir() {
                "a folder"
            } else {
                "not a regular file (a device, FIFO or socket)"
            };
            return Some(format!("{} exists and is {kind}", path.display()));
        }
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if RUN_FILES.contains(&name) && is_run_folder(parent) {
        return Some(format!(
            "{} is the run's own {name}: write results under another name (e.g. \
             eval-<method>-<split>.json)",
            path.display()
        ));
    }
    for ancestor in parent.ancestors() {
        let folder = ancestor.file_name().and_then(|n| n.to_str());
        if let (Some(f @ (CHECKPOINTS | TENSORBOARD)), Some(run)) = (folder, ancestor.parent()) {
            let run = if run.as_os_str().is_empty() {
                Path::new(".")
            } else {
                run
            };
            if is_run_folder(run) {
                return Some(format!(
                    "{} is inside the {f}/ folder of the run {}, which only `vae train` writes",
                    path.display(),
                    run.display()
                ));
            }
        }
    }
    None
}

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
    fn outputs_never_replace_a_runs_files_or_non_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join(CHECKPOINTS)).unwrap();
        std::fs::create_dir_all(run.join(TENSORBOARD)).unwrap();
        std::fs::write(run.join(CONFIG), "{}").unwrap();
        std::fs::write(run.join("eval-is-test.json"), "{}").unwrap();
        // A run's own eval outputs, new files beside it and elsewhere: fine.
        assert_eq!(output_conflict(&run.join("eval-is-test.json")), None);
        assert_eq!(output_conflict(&run.join("eval-is-test.png")), None);
        assert_eq!(output_conflict(&dir.path().join("any.json")), None);
        // A run's own files, whether they exist yet or not.
        for name in [CONFIG, RESULTS, SAMPLES, METRICS] {
            let why = output_conflict(&run.join(name)).expect(name);
            assert!(why.contains(&format!("the run's own {name}")), "{why}");
        }
        // The same names outside a run are just names.
        assert_eq!(output_conflict(&dir.path().join(CONFIG)), None);
        let why = output_conflict(&run.join(CHECKPOINTS).join("best.json")).unwrap();
        assert!(why.contains("inside the checkpoints/ folder"), "{why}");
        let why = output_conflict(&run.join(TENSORBOARD).join("x/y.csv")).unwrap();
        assert!(why.contains("inside the tensorboard/ folder"), "{why}");
        let why = output_conflict(&run).unwrap();
        assert!(why.contains("is a folder"), "{why}");
        let why = output_conflict(Path::new("/dev/null")).unwrap();
        assert!(why.contains("not a regular file"), "{why}");
    }

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
