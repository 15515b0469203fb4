//! A sweep ready to execute ([`Plan`]): its runs, their folders and the `vae` arguments that
//! bring each to completion, and what a run's folder says about it ([`RunState`]).
//!
//! A run's state is read from its folder alone, by the same rule for every backend: finished
//! runs are skipped, runs with a checkpoint resume, and runs that died before their first
//! checkpoint start again.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::eval::{EvalFile, EvalPlan};
use crate::results;
use crate::spec::{EvalSpec, Override, Run, Sweep};

/// What a run's folder says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// No folder, or an empty one.
    Fresh,
    /// Training started but stopped before the first checkpoint: start again.
    Started,
    /// A checkpoint and no results: `vae train --resume`.
    Resumable,
    /// Trained (`results.json`); the evaluation is missing.
    Trained,
    /// Trained and evaluated: nothing to do.
    Complete,
}

/// A sweep ready to execute: its runs, output folder and `vae` binary.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The sweep file's content.
    pub sweep: Sweep,
    /// Its runs.
    pub runs: Vec<Run>,
    /// Output folder (absolute).
    pub out: PathBuf,
    /// The `vae` binary (absolute).
    pub vae: PathBuf,
    /// The repository root: working folder of every `vae` process.
    pub root: PathBuf,
}

impl Plan {
    /// Builds the plan of `file` (absolute paths throughout).
    /// `file` and `out` are taken relative to the current folder; `out` defaults to
    /// `runs/sweeps/<name>` in `root`, and the `vae` binary to `root/target/release/vae` (set
    /// [`Plan::vae`] to use another).
    pub fn new(root: &Path, file: &Path, out: Option<&Path>) -> Result<Plan> {
        let cwd = std::env::current_dir().map_err(|error| Error::CurrentDir { error })?;
        let file = cwd.join(file);
        let sweep = Sweep::load(&file)?;
        let runs = sweep
            .runs()
            .map_err(|error| Error::Spec { path: file, error })?;
        let out = match out {
            Some(o) => cwd.join(o),
            None => root.join("runs/sweeps").join(&sweep.name),
        };
        Ok(Plan {
            sweep,
            runs,
            out,
            vae: root.join("target/release/vae"),
            root: root.to_path_buf(),
        })
    }

    /// The run's `vae` folder.
    pub fn run_dir(&self, run: &Run) -> PathBuf {
        self.out.join(&run.name)
    }

    /// Where the local backend keeps what `vae` printed for the run.
    pub fn log_file(&self, run: &Run) -> PathBuf {
        self.out.join("logs").join(format!("{}.txt", run.name))
    }

    /// The run's state, from its folder.
    pub fn state(&self, run: &Run) -> RunState {
        results::state(&self.run_dir(run), self.sweep.eval.as_ref())
    }

    /// The evaluation each run's training job runs itself: the sweep's, unless it is sharded
    /// (`eval.shards` above 1), which comes after the training stage ([`Plan::sharded_evals`]).
    pub fn job_eval(&self) -> Option<&EvalSpec> {
        self.sweep.eval.as_ref().filter(|e| !e.sharded())
    }

    /// The run's state as its training job sees it: [`Plan::state`], with a sharded evaluation
    /// left out (a trained run is [`RunState::Complete`] for the job).
    pub fn job_state(&self, run: &Run) -> RunState {
        results::state(&self.run_dir(run), self.job_eval())
    }

    /// The sharded evaluation stage, when the sweep's evaluation is sharded: the evaluation of
    /// every run that is trained and not yet evaluated, as one plan of the
    /// [`eval`](crate::eval) engine (the sweep's `vae`, device and Slurm resources; `jobs` for
    /// the local backend's shards at a time).
    pub fn sharded_evals(&self) -> Option<EvalPlan> {
        let e = self.sweep.eval.as_ref().filter(|e| e.sharded())?;
        let file = EvalFile {
            run: self.out.clone(),
            shards: e.shards,
            jobs: self.sweep.jobs,
            device: self.sweep.device.clone(),
            slurm: self.sweep.slurm.clone(),
            evals: vec![e.entry()],
        };
        let runs: Vec<(String, PathBuf)> = self
            .runs
            .iter()
            .filter(|r| self.state(r) == RunState::Trained)
            .map(|r| (r.name.clone(), self.run_dir(r)))
            .collect();
        let mut plan = EvalPlan::for_runs(&self.root, &self.out.join("plan.json"), file, &runs);
        plan.vae = self.vae.clone();
        Some(plan)
    }

    /// `vae train` arguments for a new run (`resume = false`) or a resumed one. The config and
    /// overrides are given on resumption too, so `vae` refuses a folder left by a different
    /// sweep instead of continuing it.
    pub fn train_args(&self, run: &Run, resume: bool) -> Vec<String> {
        let dir = self.run_dir(run).to_string_lossy().into_owned();
        let mut a: Vec<String> = if resume {
            vec!["train".into(), "--resume".into(), dir]
        } else {
            vec!["train".into(), "--out".into(), dir]
        };
        a.push("--config".into());
        a.push(self.sweep.base.to_string_lossy().into_owned());
        for s in run.set_args(&self.sweep) {
            a.push("--set".into());
            a.push(s);
        }
        a.push("--device".into());
        a.push(self.sweep.device.clone());
        a
    }

    /// `vae eval` arguments, when the training jobs evaluate ([`Plan::job_eval`]).
    pub fn eval_args(&self, run: &Run) -> Option<Vec<String>> {
        let e = self.job_eval()?;
        let mut a: Vec<String> = vec![
            "eval".into(),
            "--run".into(),
            self.run_dir(run).to_string_lossy().into_owned(),
            "--method".into(),
            e.method.clone(),
            "--split".into(),
            crate::results::EVAL_SPLIT.into(),
        ];
        if let Some(k) = e.k {
            a.extend(["--k".into(), k.to_string()]);
        }
        if let Some(n) = e.n {
            a.extend(["--n".into(), n.to_string()]);
        }
        a.extend(e.args.iter().cloned());
        a.extend(["--device".into(), self.sweep.device.clone()]);
        Some(a)
    }

    /// Fraction of the run done, for progress bars: epochs from `metrics.jsonl`, the evaluation
    /// as the last tenth when there is one.
    pub fn progress(&self, run: &Run) -> f64 {
        let train_share = if self.sweep.eval.is_some() { 0.9 } else { 1.0 };
        match self.state(run) {
            RunState::Complete => 1.0,
            RunState::Trained => train_share,
            _ => train_share * results::epoch_fraction(&self.run_dir(run)),
        }
    }

    /// Records the runs and their arguments in `plan.json`.
    pub fn write_plan(&self) -> Result<()> {
        let runs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "index": r.index, "name": r.name, "setting": r.setting_label,
                    "seed": r.seed, "set": r.set_args(&self.sweep),
                })
            })
            .collect();
        let plan = serde_json::json!({
            "name": self.sweep.name, "base": self.sweep.base, "device": self.sweep.device,
            "eval": self.eval_args_template(), "runs": runs,
        });
        Ok(vae_io::write_json(&self.out.join("plan.json"), &plan)?)
    }

    fn eval_args_template(&self) -> Option<String> {
        let e = self.sweep.eval.as_ref()?;
        Some(e.describe())
    }

    /// The plan for people: one line per run with its state.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "sweep {}: {} runs of {} -> {}\n",
            self.sweep.name,
            self.runs.len(),
            self.sweep.base.display(),
            self.out.display()
        );
        if !self.sweep.set.is_empty() {
            let common: Vec<String> = self.sweep.set.iter().map(Override::display).collect();
            s += &format!("  every run: {}\n", common.join(" "));
        }
        if let Some(e) = &self.sweep.eval {
            s += &format!("  then: test NLL by {}\n", e.describe());
            if e.sharded() {
                s += &format!(
                    "  (in {} shards per run after the training stage: `vae eval --shard I/{}`, \
                     then `vae eval-merge` into the run folder)\n",
                    e.shards, e.shards
                );
            }
        }
        let width = self.runs.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in &self.runs {
            let state = match self.state(r) {
                RunState::Fresh => "new",
                RunState::Started => "restart (no checkpoint)",
                RunState::Resumable => "resume",
                RunState::Trained => "evaluate",
                RunState::Complete => "done",
            };
            let sets: Vec<String> = r
                .overrides
                .iter()
                .map(Override::display)
                .chain(r.seed.map(|s| format!("train.seed={s}")))
                .collect();
            s += &format!(
                "  [{:>3}] {:<width$}  {:<24} {}\n",
                r.index,
                r.name,
                state,
                sets.join(" ")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{epoch, eval_is, train_results};
    use vae_io::run_dir::RunDir;

    #[test]
    fn run_state_and_arguments_follow_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let file = root.join("configs/sweeps/smoke.json");
        let plan = Plan::new(&root, &file, Some(tmp.path())).unwrap();
        let run = &plan.runs[1];
        let dir = plan.run_dir(run);
        let files = RunDir::new(&dir);
        assert_eq!(plan.state(run), RunState::Fresh);
        assert_eq!(plan.progress(run), 0.0);
        std::fs::create_dir_all(files.checkpoints()).unwrap();
        std::fs::write(files.config(), "{}").unwrap();
        assert_eq!(plan.state(run), RunState::Started);
        std::fs::write(files.checkpoint("last"), "").unwrap();
        assert_eq!(plan.state(run), RunState::Resumable);
        assert_eq!(plan.progress(run), 0.0);
        epoch(1, 2, 1.0, true).append(&files.metrics()).unwrap();
        assert_eq!(plan.progress(run), 0.45);
        train_results(1, 110.0, 105.0)
            .write(&files.results())
            .unwrap();
        assert_eq!(plan.state(run), RunState::Trained);
        assert_eq!(plan.progress(run), 0.9);
        eval_is(100.0, 0.5, 200, 1.0)
            .write(&files.eval_summary("is", "test"))
            .unwrap();
        assert_eq!(plan.state(run), RunState::Complete);
        assert_eq!(plan.progress(run), 1.0);

        let args = plan.train_args(run, true);
        assert_eq!(args[..3], ["train", "--resume", dir.to_str().unwrap()]);
        assert!(args.contains(&"train.seed=2".to_string()), "{args:?}");
        assert_eq!(args.last().unwrap(), "cpu");
        let eval = plan.eval_args(run).unwrap();
        assert_eq!(eval[..3], ["eval", "--run", dir.to_str().unwrap()]);
        assert!(plan.describe().contains("done"));
    }

    #[test]
    fn a_sharded_evaluation_leaves_the_jobs_and_follows_the_training_stage() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let file = tmp.path().join("sharded.json");
        let sweep = serde_json::json!({
            "base": root.join("configs/smoke.json"),
            "seeds": [1, 2],
            "eval": {"method": "is", "k": 10, "n": 20, "shards": 2},
        });
        std::fs::write(&file, sweep.to_string()).unwrap();
        let mut plan = Plan::new(&root, &file, Some(&tmp.path().join("out"))).unwrap();
        plan.vae = tmp.path().join("vae");
        let run = &plan.runs[0];
        assert_eq!(plan.eval_args(run), None);
        assert!(!crate::slurm::script(&plan, None).contains("eval"));
        assert!(plan.describe().contains("in 2 shards per run"));
        assert!(plan.sharded_evals().unwrap().evals.is_empty());

        let files = RunDir::new(plan.run_dir(run));
        std::fs::create_dir_all(files.checkpoints()).unwrap();
        std::fs::write(files.config(), "{}").unwrap();
        train_results(1, 110.0, 105.0)
            .write(&files.results())
            .unwrap();
        assert_eq!(plan.state(run), RunState::Trained);
        assert_eq!(plan.job_state(run), RunState::Complete);
        let evals = plan.sharded_evals().unwrap();
        assert_eq!(evals.vae, plan.vae);
        assert_eq!(evals.evals.len(), 1);
        let e = &evals.evals[0];
        assert_eq!((e.shards, &e.run), (2, &plan.run_dir(run)));
        assert_eq!(e.shard_name(1), "1/2 of seed=1: is-test");
        let dir = plan.run_dir(run).display().to_string();
        assert_eq!(
            evals.shard_args(e, "1", "3").join(" "),
            format!(
                "eval --run {dir} --method is --split test --n 20 --k 10 --device cpu \
                 --shard 1/2 --threads 3"
            )
        );
        assert_eq!(
            evals.merge_args(e).last().map(String::as_str),
            Some(dir.as_str())
        );

        eval_is(100.0, 0.5, 200, 1.0)
            .write(&files.eval_summary("is", "test"))
            .unwrap();
        assert_eq!(plan.state(run), RunState::Complete);
        assert!(plan.sharded_evals().unwrap().evals.is_empty());
    }
}
