//! `cargo xtask sweep`: grids of `vae train` runs, resumable, run here or on Slurm, summarised.
//!
//! A sweep file ([`spec`]) expands into [`Run`]s, each with a folder under the sweep's output
//! folder whose name comes from its overrides and seed, so a second invocation finds the first's
//! work. A run's state is read from its folder alone ([`RunState`]): finished runs are skipped,
//! runs with a checkpoint resume, and runs that died before their first checkpoint start again.
//! The [`local`] backend and the Slurm backend ([`crate::slurm`]) both drive `vae` by that rule
//! and leave the same folders, from which [`summary`] writes `summary.md`, `summary.csv` and
//! `summary.png`.
//!
//! Output folder layout:
//!
//! ```text
//! runs/sweeps/<name>/
//!   <run>/              one `vae train` run folder per run (config, checkpoints, results, eval)
//!   logs/<run>.txt      what `vae` printed for that run (local backend)
//!   slurm/              the sbatch script, jobs.json and one output file per task (Slurm)
//!   plan.json           the runs and their `--set` arguments
//!   summary.md  summary.csv  summary.png
//! ```

pub mod local;
mod plot;
pub mod spec;
pub mod summary;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use spec::{Axis, EvalSpec, Override, Run, SlurmSpec, Sweep};

/// Where the runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// On this machine, `--jobs` runs at a time
    Local,
    /// As one Slurm array job (sbatch), one task per run
    Slurm,
}

/// Command-line options of `cargo xtask sweep`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The backend.
    pub backend: Backend,
    /// Local: runs at a time (default: the sweep file's `jobs`, else 1). Slurm: most array tasks
    /// at a time (default: no limit).
    pub jobs: Option<usize>,
    /// Local: libtorch threads per run (default: cores / jobs).
    pub threads: Option<usize>,
    /// Print the runs (and the Slurm script) and start nothing.
    pub dry_run: bool,
    /// Output folder (default: `runs/sweeps/<name>` in the repository).
    pub out: Option<PathBuf>,
}

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
    pub fn new(root: &Path, file: &Path, out: Option<&Path>) -> Result<Plan> {
        let cwd = std::env::current_dir().context("reading the current folder")?;
        let sweep = Sweep::load(&cwd.join(file))?;
        let runs = sweep.runs()?;
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
        let dir = self.run_dir(run);
        if dir.join("results.json").is_file() {
            match &self.sweep.eval {
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

    /// `vae eval` arguments, when the sweep evaluates.
    pub fn eval_args(&self, run: &Run) -> Option<Vec<String>> {
        let e = self.sweep.eval.as_ref()?;
        let mut a: Vec<String> = vec![
            "eval".into(),
            "--run".into(),
            self.run_dir(run).to_string_lossy().into_owned(),
            "--method".into(),
            e.method.clone(),
            "--split".into(),
            "test".into(),
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

    /// Fraction of the run done, for progress bars: epochs from `train.log`, the evaluation as
    /// the last tenth when there is one.
    pub fn progress(&self, run: &Run) -> f64 {
        let train_share = if self.sweep.eval.is_some() { 0.9 } else { 1.0 };
        match self.state(run) {
            RunState::Complete => 1.0,
            RunState::Trained => train_share,
            _ => {
                let log = std::fs::read_to_string(self.run_dir(run).join("train.log"))
                    .unwrap_or_default();
                train_share * epoch_fraction(&log)
            }
        }
    }

    /// Records the runs and their arguments in `plan.json`.
    fn write_plan(&self) -> Result<()> {
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

/// Completed fraction from the last `epoch    k/N ...` line of a `train.log`.
pub fn epoch_fraction(log: &str) -> f64 {
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

/// Runs `cargo xtask sweep`.
pub fn run(root: &Path, file: &Path, opts: &Options) -> Result<()> {
    let plan = Plan::new(root, file, opts.out.as_deref())?;
    if opts.jobs == Some(0) {
        bail!("--jobs 0: expected at least 1");
    }
    if opts.threads == Some(0) {
        bail!("--threads 0: expected at least 1");
    }
    if opts.dry_run {
        print!("{}", plan.describe());
        if opts.backend == Backend::Slurm {
            println!(
                "\nsbatch script ({}):\n",
                crate::slurm::script_path(&plan).display()
            );
            print!("{}", crate::slurm::script(&plan, opts.jobs));
        }
        return Ok(());
    }
    let layout = crate::bootstrap::Layout::new(root.to_path_buf())?;
    crate::bootstrap::run(&layout)?;
    crate::cargo(root, &["build", "--release", "--quiet", "-p", "vae-cli"])?;
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    plan.write_plan()?;
    let failed = match opts.backend {
        Backend::Local => {
            let jobs = opts.jobs.or(plan.sweep.jobs).unwrap_or(1);
            local::run(&plan, jobs, opts.threads)?
        }
        Backend::Slurm => crate::slurm::run(&plan, opts.jobs)?,
    };
    let written = summary::write(&plan)?;
    print!("{}", written.settings_table);
    println!("wrote {}", written.files.join(", "));
    if !failed.is_empty() {
        bail!(
            "{} of {} runs did not finish: {}; run the same command again to resume them",
            failed.len(),
            plan.runs.len(),
            failed.join("; ")
        );
    }
    Ok(())
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
        assert_eq!(epoch_fraction(log), 0.75);
        assert_eq!(epoch_fraction(""), 0.0);
    }

    #[test]
    fn run_state_and_arguments_follow_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = crate::project_root();
        let file = root.join("configs/sweeps/smoke.json");
        let plan = Plan::new(&root, &file, Some(tmp.path())).unwrap();
        let run = &plan.runs[1];
        let dir = plan.run_dir(run);
        assert_eq!(plan.state(run), RunState::Fresh);
        std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert_eq!(plan.state(run), RunState::Started);
        std::fs::write(dir.join("checkpoints/last.safetensors"), "").unwrap();
        assert_eq!(plan.state(run), RunState::Resumable);
        std::fs::write(dir.join("results.json"), "{}").unwrap();
        assert_eq!(plan.state(run), RunState::Trained);
        std::fs::write(dir.join("eval-is-test.json"), "{}").unwrap();
        assert_eq!(plan.state(run), RunState::Complete);

        let args = plan.train_args(run, true);
        assert_eq!(args[..3], ["train", "--resume", dir.to_str().unwrap()]);
        assert!(args.contains(&"train.seed=2".to_string()), "{args:?}");
        assert_eq!(args.last().unwrap(), "cpu");
        let eval = plan.eval_args(run).unwrap();
        assert_eq!(eval[..3], ["eval", "--run", dir.to_str().unwrap()]);
        assert!(plan.describe().contains("done"));
    }
}
