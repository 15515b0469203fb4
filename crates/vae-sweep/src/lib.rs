//! flowvae's sweep engine, without libtorch: the engine of `cargo xtask sweep`.
#![doc = include_str!("../README.md")]

pub mod error;
pub mod eval;
mod expand;
mod file;
pub mod local;
pub mod plan;
mod plot;
pub mod results;
pub mod slurm;
pub mod spec;
pub mod summary;
#[cfg(test)]
mod testing;
pub mod validate;

pub use error::{Error, Result, SpecError};
pub use plan::{Plan, RunState};
pub use spec::{Axis, EvalSpec, Override, Run, SlurmSpec, Sweep, Variant};

/// Where the runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// On this machine, `jobs` runs at a time ([`local`]).
    Local,
    /// As one Slurm array job (sbatch), one task per run ([`slurm`]).
    Slurm,
}

/// How to execute a plan: the backend and its parallelism.
#[derive(Debug, Clone)]
pub struct Options {
    /// The backend.
    pub backend: Backend,
    /// Local: runs at a time (default: the sweep file's `jobs`, else 1). Slurm: most array tasks
    /// at a time (default: no limit).
    pub jobs: Option<usize>,
    /// Local: libtorch threads per run (default: cores / jobs).
    pub threads: Option<usize>,
}

impl Options {
    /// Refuses `jobs` or `threads` of 0 ([`Error::Zero`], named as the command-line options
    /// `--jobs` and `--threads`).
    pub fn check(&self) -> Result<()> {
        if self.jobs == Some(0) {
            return Err(Error::Zero { option: "--jobs" });
        }
        if self.threads == Some(0) {
            return Err(Error::Zero {
                option: "--threads",
            });
        }
        Ok(())
    }
}

/// What a dry run prints: one line per run with its state, and for Slurm the sbatch script.
pub fn dry_run(plan: &Plan, opts: &Options) -> String {
    let mut s = plan.describe();
    if opts.backend == Backend::Slurm {
        s += &format!(
            "\nsbatch script ({}):\n\n",
            slurm::script_path(plan).display()
        );
        s += &slurm::script(plan, opts.jobs);
    }
    s
}

/// What [`execute`] did.
#[derive(Debug)]
pub struct Report {
    /// The runs that did not finish, each with the reason.
    pub failed: Vec<String>,
    /// The sweep's number of runs.
    pub total: usize,
    /// The summary files written and the settings table.
    pub summary: summary::Written,
}

impl Report {
    /// `Ok` when every run finished, else [`Error::Unfinished`] listing the others.
    pub fn finished(self) -> Result<()> {
        if self.failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Unfinished {
                failed: self.failed,
                total: self.total,
            })
        }
    }
}

/// Executes a plan: checks every run's config ([`validate::validate`]), writes `plan.json`, brings every unfinished run to completion with the
/// backend (`plan.vae` must exist), evaluates the trained runs with the [`eval`] engine when the
/// evaluation is sharded ([`Plan::sharded_evals`]), and writes the summary, also when runs
/// failed (the [`Report`] lists them).
pub fn execute(plan: &Plan, opts: &Options) -> Result<Report> {
    opts.check()?;
    validate::validate(plan)?;
    std::fs::create_dir_all(&plan.out).map_err(Error::io("creating", &plan.out))?;
    plan.write_plan()?;
    let mut failed = match opts.backend {
        Backend::Local => {
            let jobs = opts.jobs.or(plan.sweep.jobs).unwrap_or(1);
            local::run(plan, jobs, opts.threads)?
        }
        Backend::Slurm => slurm::run(plan, opts.jobs)?,
    };
    if let Some(evals) = plan.sharded_evals() {
        failed.extend(sharded_eval_stage(plan, &evals, opts));
    }
    let summary = summary::write(plan)?;
    for p in &summary.problems {
        eprintln!("xtask: unreadable result file of {p}");
    }
    Ok(Report {
        failed,
        total: plan.runs.len(),
        summary,
    })
}

/// The sharded evaluation stage: every trained, unevaluated run's evaluation through the
/// [`eval`] engine on the sweep's backend (finished shards and merged evaluations are skipped,
/// a failed shard is tried once more). Returns the runs left unevaluated, each with the reason.
fn sharded_eval_stage(plan: &Plan, evals: &eval::EvalPlan, opts: &Options) -> Vec<String> {
    if evals.evals.is_empty() {
        return Vec::new();
    }
    eprintln!(
        "xtask: sweep {}: evaluating {} trained run(s) in {} shards each",
        plan.sweep.name,
        evals.evals.len(),
        evals.file.shards
    );
    let eval_opts = eval::Options {
        backend: opts.backend,
        jobs: match opts.backend {
            Backend::Local => Some(opts.jobs.or(plan.sweep.jobs).unwrap_or(1)),
            Backend::Slurm => opts.jobs,
        },
        threads: opts.threads,
    };
    let reasons = match eval::execute(evals, &eval_opts) {
        Ok(report) => report.failed,
        Err(e) => vec![e.to_string()],
    };
    let mut failed = Vec::new();
    for r in &plan.runs {
        let evaluated = evals.evals.iter().any(|e| e.run == plan.run_dir(r));
        if evaluated && plan.state(r) != RunState::Complete {
            let prefix = format!(" of {}: ", r.name);
            let mine: Vec<&str> = reasons
                .iter()
                .filter(|w| w.contains(&prefix))
                .map(String::as_str)
                .collect();
            let why = if mine.is_empty() {
                reasons.join("; ")
            } else {
                mine.join("; ")
            };
            failed.push(format!(
                "{} (its sharded evaluation did not finish: {why})",
                r.name
            ));
        }
    }
    failed
}
