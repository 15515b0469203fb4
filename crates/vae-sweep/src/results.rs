//! What a run folder says about its run: the one place that reads `vae`'s output files
//! (`config.json`, `checkpoints/last.safetensors`, `results.json`, `eval-<method>-test.json`,
//! `train.log`) for the run's state, the summary and the progress bars. Nothing here fails: a
//! missing or unreadable file leaves its numbers empty.

use std::path::Path;

use serde_json::Value;

use crate::plan::{Plan, RunState};
use crate::spec::{EvalSpec, Run};

/// The state of the run in `dir`, for a sweep that evaluates with `eval` (if any).
pub fn state(dir: &Path, eval: Option<&EvalSpec>) -> RunState {
    if dir.join("results.json").is_file() {
        match eval {
            Some(e) if !dir.join(e.output()).is_file() => RunState::Trained,
            _ => RunState::Complete,
        }
    } else if dir.join("checkpoints/last.safetensors").is_file() {
        RunState::Resumable
    } else if dir.join("config.json").exists() {
        RunState::Started
    } else {
        RunState::Fresh
    }
}

/// What one run's folder holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    /// `done`, `not evaluated`, `unfinished` or `not started`.
    pub status: &'static str,
    /// Epochs trained (from `train.log`).
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
    /// Seconds: every training epoch in `train.log` (resumed segments included) plus the
    /// evaluation.
    pub wall_seconds: Option<f64>,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Reads one run's folder.
pub fn collect(plan: &Plan, run: &Run) -> RunResult {
    let dir = plan.run_dir(run);
    let state = plan.state(run);
    let mut r = RunResult {
        status: match state {
            RunState::Complete => "done",
            RunState::Trained => "not evaluated",
            RunState::Resumable | RunState::Started => "unfinished",
            RunState::Fresh => "not started",
        },
        ..Default::default()
    };
    let log = std::fs::read_to_string(dir.join("train.log")).unwrap_or_default();
    let mut train_seconds = None;
    for line in log.lines().filter(|l| l.starts_with("epoch ")) {
        let mut words = line.split_whitespace();
        let epoch = words
            .nth(1)
            .and_then(|w| w.split_once('/'))
            .and_then(|(k, _)| k.parse::<u64>().ok());
        if epoch.is_some() {
            r.epochs = epoch;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if let [.., secs, "s"] = tokens[..] {
            if let Ok(s) = secs.parse::<f64>() {
                *train_seconds.get_or_insert(0.0) += s;
            }
        }
    }
    if let Some(res) = read_json(&dir.join("results.json")) {
        r.best_epoch = res["best_epoch"].as_u64();
        r.valid_neg_elbo = res["validation"]["neg_elbo"].as_f64();
        r.test_neg_elbo = res["test"]["neg_elbo"].as_f64();
    }
    let mut eval_seconds = None;
    if let Some(e) = &plan.sweep.eval {
        if let Some(ev) = read_json(&dir.join(e.output())) {
            r.test_nll = ev["estimate_nll"].as_f64();
            r.test_nll_stderr = ev["stderr"].as_f64();
            r.nll_images = ev["images"].as_u64();
            eval_seconds = ev["wall_seconds"].as_f64();
        }
    }
    if train_seconds.is_some() || eval_seconds.is_some() {
        r.wall_seconds = Some(train_seconds.unwrap_or(0.0) + eval_seconds.unwrap_or(0.0));
    }
    r
}

/// Completed fraction of the training in `dir`, from its `train.log` (0 without one).
pub fn epoch_fraction(dir: &Path) -> f64 {
    epoch_fraction_of_log(&std::fs::read_to_string(dir.join("train.log")).unwrap_or_default())
}

/// Completed fraction from the last `epoch    k/N ...` line of a `train.log`.
pub fn epoch_fraction_of_log(log: &str) -> f64 {
    log.lines()
        .rev()
        .find_map(|l| {
            let rest = l.strip_prefix("epoch")?.trim_start();
            let (k, n) = rest.split_whitespace().next()?.split_once('/')?;
            let (k, n) = (k.parse::<f64>().ok()?, n.parse::<f64>().ok()?);
            (n > 0.0).then(|| (k / n).min(1.0))
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_fraction_reads_the_last_epoch_line() {
        let log = "2026-11-26T06:35:29Z starting run x\n\
                   epoch    1/4  train -elbo  199.516 rec ... 15.0 s\n\
                   epoch    3/4  train -elbo  162.328 rec ... 14.5 s\n\
                   stopped at epoch 4 step 3\n";
        assert_eq!(epoch_fraction_of_log(log), 0.75);
        assert_eq!(epoch_fraction_of_log(""), 0.0);
    }
}
