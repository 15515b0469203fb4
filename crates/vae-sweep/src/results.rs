//! What a run folder says about its run: the one place that reads `vae`'s output files, all
//! through vae-io's run layout ([`RunDir`]) and typed readers. The run's state comes from which
//! files exist (`config.json`, `checkpoints/last.safetensors`, `results.json`,
//! `eval-<method>-test.json`); progress and training seconds from `metrics.jsonl`
//! ([`Progress`]); the -ELBO from `results.json` ([`vae_io::results::TrainResults`]); the NLL
//! from the evaluation's summary ([`vae_io::results::EvalSummary`]). `train.log` is for people
//! and is never read.
//!
//! Nothing here fails: a missing file leaves its numbers empty, and a malformed one leaves them
//! empty too and is recorded in [`RunResult::unreadable`] with vae-io's message (file, line,
//! key), which the summary shows for that run.

use std::path::Path;

use vae_io::results::Progress;
use vae_io::run_dir::RunDir;

use crate::plan::{Plan, RunState};
use crate::spec::{EvalSpec, Run};

/// The split the sweep evaluates.
pub const EVAL_SPLIT: &str = "test";

/// The state of the run in `dir`, for a sweep that evaluates with `eval` (if any).
pub fn state(dir: &Path, eval: Option<&EvalSpec>) -> RunState {
    let run = RunDir::new(dir);
    if run.results().is_file() {
        match eval {
            Some(e) if !run.eval_summary(&e.method, EVAL_SPLIT).is_file() => RunState::Trained,
            _ => RunState::Complete,
        }
    } else if run.checkpoint("last").is_file() {
        RunState::Resumable
    } else if run.config().exists() {
        RunState::Started
    } else {
        RunState::Fresh
    }
}

/// A result file that exists but could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// The file's name in the run folder (`results.json`).
    pub file: String,
    /// vae-io's message: the file's path, the line and the key, and what is wrong.
    pub message: String,
}

/// What one run's folder holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    /// `done`, `not evaluated`, `unfinished` or `not started`.
    pub status: &'static str,
    /// Epochs trained: the last completed epoch in `metrics.jsonl`.
    pub epochs: Option<u64>,
    /// Epoch of the checkpoint that was best on validation.
    pub best_epoch: Option<u64>,
    /// Validation -ELBO of the best checkpoint, nats.
    pub valid_neg_elbo: Option<f64>,
    /// Test -ELBO of the best checkpoint, nats.
    pub test_neg_elbo: Option<f64>,
    /// Test NLL estimate, nats.
    pub test_nll: Option<f64>,
    /// Its standard error.
    pub test_nll_stderr: Option<f64>,
    /// Test images of the NLL estimate.
    pub nll_images: Option<u64>,
    /// Seconds: every training epoch in `metrics.jsonl` (resumed segments and epochs run again
    /// included) plus the evaluation.
    pub wall_seconds: Option<f64>,
    /// The run's result files that exist but are malformed; their numbers are left empty.
    pub unreadable: Vec<Unreadable>,
}

impl RunResult {
    /// The status for tables: [`RunResult::status`], with the names of any unreadable files.
    pub fn status_text(&self) -> String {
        if self.unreadable.is_empty() {
            return self.status.to_string();
        }
        let files: Vec<&str> = self.unreadable.iter().map(|u| u.file.as_str()).collect();
        format!("{} (unreadable: {})", self.status, files.join(", "))
    }
}

/// A number as the summary shows it: JSON writes a non-finite number as `null`, which vae-io
/// reads back as NaN; such a number is missing here, as it always was.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Reads `path` with `read` if the file exists: `None` when it does not, or when it is
/// malformed, which is then recorded in `unreadable`.
fn read_if_present<T>(
    path: &Path,
    read: impl FnOnce() -> vae_io::Result<T>,
    unreadable: &mut Vec<Unreadable>,
) -> Option<T> {
    if !path.exists() {
        return None;
    }
    match read() {
        Ok(v) => Some(v),
        Err(e) => {
            unreadable.push(Unreadable {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                message: e.to_string(),
            });
            None
        }
    }
}

/// The training progress of `run` from its `metrics.jsonl`: `Ok(None)` before the first epoch
/// has ended (no file yet, or no line).
pub fn read_progress(run: &RunDir) -> vae_io::Result<Option<Progress>> {
    let path = run.metrics();
    if !path.exists() {
        return Ok(None);
    }
    Progress::read(&path)
}

/// Reads one run's folder.
pub fn collect(plan: &Plan, run: &Run) -> RunResult {
    let dir = RunDir::new(plan.run_dir(run));
    let mut unreadable = Vec::new();
    let mut r = RunResult {
        status: match plan.state(run) {
            RunState::Complete => "done",
            RunState::Trained => "not evaluated",
            RunState::Resumable | RunState::Started => "unfinished",
            RunState::Fresh => "not started",
        },
        ..Default::default()
    };
    let progress =
        read_if_present(&dir.metrics(), || read_progress(&dir), &mut unreadable).flatten();
    if let Some(p) = progress {
        r.epochs = Some(p.epochs_done as u64);
    }
    if let Some(res) = read_if_present(&dir.results(), || dir.read_results(), &mut unreadable) {
        r.best_epoch = res.best_epoch.map(|e| e as u64);
        r.valid_neg_elbo = res.validation.and_then(|v| finite(v.neg_elbo));
        r.test_neg_elbo = finite(res.test.neg_elbo);
    }
    let mut eval_seconds = None;
    if let Some(e) = &plan.sweep.eval {
        let path = dir.eval_summary(&e.method, EVAL_SPLIT);
        let read = || dir.read_eval(&e.method, EVAL_SPLIT);
        if let Some(ev) = read_if_present(&path, read, &mut unreadable) {
            r.test_nll = ev.nll().and_then(finite);
            r.test_nll_stderr = ev.nll_stderr().and_then(finite);
            r.nll_images = Some(ev.images as u64);
            eval_seconds = finite(ev.wall_seconds);
        }
    }
    let train_seconds = progress.and_then(|p| finite(p.seconds));
    if train_seconds.is_some() || eval_seconds.is_some() {
        r.wall_seconds = Some(train_seconds.unwrap_or(0.0) + eval_seconds.unwrap_or(0.0));
    }
    r.unreadable = unreadable;
    r
}

/// Completed fraction of the training in `dir`, from its `metrics.jsonl`: 0 before the first
/// epoch has ended, and for a file that cannot be read (the summary reports it).
pub fn epoch_fraction(dir: &Path) -> f64 {
    match read_progress(&RunDir::new(dir)) {
        Ok(Some(p)) => p.fraction(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{epoch, eval_is, train_results};
    use vae_io::results::EpochMetrics;

    #[test]
    fn epoch_fraction_reads_the_last_line_of_metrics_jsonl() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path());
        // No metrics.jsonl yet: nothing done.
        assert_eq!(epoch_fraction(tmp.path()), 0.0);
        for m in [epoch(1, 4, 15.0, true), epoch(3, 4, 14.5, false)] {
            m.append(&run.metrics()).unwrap();
        }
        assert_eq!(epoch_fraction(tmp.path()), 0.75);
        let p = read_progress(&run).unwrap().unwrap();
        assert_eq!((p.epochs_done, p.seconds, p.best_epoch), (3, 29.5, Some(1)));
        std::fs::write(run.metrics(), "").unwrap();
        assert_eq!(read_progress(&run).unwrap(), None);
        assert_eq!(epoch_fraction(tmp.path()), 0.0);
    }

    #[test]
    fn malformed_files_are_reported_with_their_key_and_leave_numbers_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let plan = Plan::new(
            &root,
            &root.join("configs/sweeps/smoke.json"),
            Some(tmp.path()),
        )
        .unwrap();
        let run = &plan.runs[0];
        let dir = RunDir::new(plan.run_dir(run));
        std::fs::create_dir_all(&dir.root).unwrap();
        for m in [epoch(1, 2, 1.5, true), epoch(2, 2, 2.5, true)] {
            m.append(&dir.metrics()).unwrap();
        }
        train_results(2, 110.0, 105.0)
            .write(&dir.results())
            .unwrap();
        // The evaluation's summary without its `estimate_nll` key.
        let mut ev = serde_json::to_value(eval_is(100.0, 0.5, 100, 1.0)).unwrap();
        ev.as_object_mut().unwrap().remove("estimate_nll");
        std::fs::write(dir.eval_summary("is", "test"), ev.to_string()).unwrap();
        let r = collect(&plan, run);
        assert_eq!(r.status, "done");
        assert_eq!((r.epochs, r.best_epoch), (Some(2), Some(2)));
        assert_eq!(r.test_neg_elbo, Some(105.0));
        assert_eq!((r.test_nll, r.nll_images), (None, None));
        // Training seconds only: the evaluation's are unknown.
        assert_eq!(r.wall_seconds, Some(4.0));
        assert_eq!(r.unreadable.len(), 1, "{:?}", r.unreadable);
        assert_eq!(r.unreadable[0].file, "eval-is-test.json");
        let msg = &r.unreadable[0].message;
        assert!(
            msg.contains("eval-is-test.json") && msg.contains("`estimate_nll`"),
            "{msg}"
        );
        assert_eq!(r.status_text(), "done (unreadable: eval-is-test.json)");

        // A bad line of metrics.jsonl and a results.json of the wrong type.
        let mut bad = serde_json::to_value(epoch(3, 4, 1.0, false)).unwrap();
        bad["epoch"] = "three".into();
        std::fs::write(
            dir.metrics(),
            format!("{}\n{bad}\n", epoch(1, 4, 1.0, true).to_line()),
        )
        .unwrap();
        let mut res = serde_json::to_value(train_results(2, 110.0, 105.0)).unwrap();
        res["test"]["neg_elbo"] = "x".into();
        std::fs::write(dir.results(), res.to_string()).unwrap();
        let r = collect(&plan, run);
        assert_eq!(
            (r.epochs, r.best_epoch, r.test_neg_elbo),
            (None, None, None)
        );
        let files: Vec<&str> = r.unreadable.iter().map(|u| u.file.as_str()).collect();
        assert_eq!(
            files,
            ["metrics.jsonl", "results.json", "eval-is-test.json"]
        );
        let msg = &r.unreadable[0].message;
        assert!(
            msg.contains("metrics.jsonl:2") && msg.contains("`epoch`"),
            "{msg}"
        );
        let msg = &r.unreadable[1].message;
        assert!(msg.contains("`test.neg_elbo`"), "{msg}");
        // What the progress bar shows for an unreadable file.
        assert_eq!(epoch_fraction(&dir.root), 0.0);
        assert!(EpochMetrics::read_all(&dir.metrics()).is_err());
    }
}
