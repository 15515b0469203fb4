//! Sharded evaluations: what `cargo xtask eval` runs. An eval file (`configs/eval/*.json`,
//! [`EvalFile`]) names a trained run and one or a few `vae eval` settings; each evaluation is
//! cut into `N` shards (`vae eval --shard I/N`), run as local processes ([`Backend::Local`]) or as
//! one Slurm array job per evaluation ([`Backend::Slurm`]), and merged with `vae eval-merge`
//! into the run folder's `eval-<method>-<split>.json`, `.csv` (and `.png` for IS), the files one
//! unsharded `vae eval` writes, with the same per-image values.
//!
//! A shard is finished when its summary reads back as the shard it should be
//! ([`ShardState::Done`]): every invocation skips those and evaluates the others, so an
//! interrupted evaluation resumes; a shard that fails is tried once more before the evaluation
//! counts as failed. Each shard's output (`shard-I-of-N.log`) and progress
//! (`shard-I-of-N.progress.json`, which `vae eval` rewrites every few seconds) lie beside its
//! summary, in `RUN/shards/eval-<method>-<split>/`, with `eval-args.json`, the `vae eval` flags
//! the shards were made with: a later invocation with other settings is refused instead of
//! mixing shards of two evaluations.

mod local;
mod plan;
mod slurm;
mod spec;

use std::path::PathBuf;

pub use plan::{EvalPlan, PlannedEval, ShardState};
pub(crate) use spec::ShardCount;
pub use spec::{EvalEntry, EvalFile, FileError, Method, MAX_SHARDS};

use crate::Backend;

/// Everything that can go wrong with a sharded evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The eval file could not be read.
    #[error("reading eval file {}: {error}", path.display())]
    Read {
        /// The eval file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The eval file is not JSON.
    #[error("eval file {} is not valid JSON: {error}", path.display())]
    NotJson {
        /// The eval file.
        path: PathBuf,
        /// serde_json's reason, with line and column.
        error: serde_json::Error,
    },
    /// The eval file is JSON but not a valid eval file.
    #[error("eval file {}: {error}", path.display())]
    File {
        /// The eval file.
        path: PathBuf,
        /// What is wrong, naming the key.
        error: FileError,
    },
    /// The run folder holds no trained run.
    #[error(
        "`run`: {} has no config.json, so it is not a run folder written by `vae train` (train \
         it first, e.g. with `cargo xtask train`)",
        run.display()
    )]
    NoRun {
        /// The run folder.
        run: PathBuf,
    },
    /// The shards already in a folder were made with other settings.
    #[error(
        "{} holds shards made with `vae eval {before}`, and the eval file now asks for `vae eval \
         {now}`: merging them would mix two evaluations; remove the folder to evaluate again \
         with the new settings (or restore the old ones to resume)",
        dir.display()
    )]
    SettingsChanged {
        /// The shards' folder.
        dir: PathBuf,
        /// The flags recorded in its `eval-args.json`.
        before: String,
        /// The flags the eval file gives now.
        now: String,
    },
    /// A `vae eval` of an earlier invocation still works on a shard.
    #[error(
        "shard {shard} is still being evaluated by process {pid} ({cmdline}), left by an \
         earlier `cargo xtask eval`: wait for it to end, or stop it with `kill {pid}`"
    )]
    StillRunning {
        /// The shard, e.g. `2/4 of ais-test`.
        shard: String,
        /// The process id.
        pid: String,
        /// Its command line.
        cmdline: String,
    },
    /// Shards or merges did not finish.
    #[error(
        "{} did not finish: {}; run the same command again to resume (finished shards are kept)",
        if failed.len() == 1 { "1 shard or merge".to_string() } else { format!("{} shards or merges", failed.len()) },
        failed.join("; ")
    )]
    Unfinished {
        /// Each unfinished shard or merge with the reason and its log file.
        failed: Vec<String>,
    },
    /// What the sweep engine's pieces report (I/O, `vae`, Slurm commands).
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

impl From<vae_io::Error> for Error {
    fn from(e: vae_io::Error) -> Error {
        Error::Engine(e.into())
    }
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to execute an [`EvalPlan`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The backend.
    pub backend: Backend,
    /// Local: shards evaluated at a time (default: the eval file's `jobs`, else 1). Slurm: most
    /// array tasks of one evaluation running at a time (default: no limit).
    pub jobs: Option<usize>,
    /// Local: libtorch threads per shard (default: cores / jobs). Slurm: the file's
    /// `slurm.cpus_per_task`.
    pub threads: Option<usize>,
}

impl Options {
    /// Refuses `jobs` or `threads` of 0, named as the command-line options.
    pub fn check(&self) -> Result<()> {
        crate::Options {
            backend: self.backend,
            jobs: self.jobs,
            threads: self.threads,
        }
        .check()?;
        Ok(())
    }

    /// Local: shards at a time.
    fn local_jobs(&self, plan: &EvalPlan) -> usize {
        self.jobs.or(plan.file.jobs).unwrap_or(1)
    }

    /// Local: libtorch threads per shard.
    fn local_threads(&self, plan: &EvalPlan) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.threads
            .unwrap_or((cores / self.local_jobs(plan).max(1)).max(1))
    }
}

/// What a dry run prints: each evaluation with its shards' states and `vae` commands, and for
/// Slurm each array job's script.
pub fn dry_run(plan: &EvalPlan, opts: &Options) -> String {
    let threads = match opts.backend {
        Backend::Local => opts.local_threads(plan).to_string(),
        Backend::Slurm => "\"$THREADS\"".to_string(),
    };
    let mut s = plan.describe(&threads);
    if opts.backend == Backend::Slurm {
        for e in &plan.evals {
            s += &format!(
                "\nsbatch script of {} ({}):\n\n",
                e.entry.name(),
                slurm::script_path(e).display()
            );
            s += &slurm::script(plan, e, opts.jobs);
        }
    }
    s
}

/// One merged evaluation.
#[derive(Debug, Clone)]
pub struct Merged {
    /// `<method>-<split>`.
    pub name: String,
    /// The merged summary, `RUN/eval-<method>-<split>.json`.
    pub summary: PathBuf,
    /// What `vae eval-merge` printed (the estimate and the files written).
    pub output: String,
}

/// What [`execute`] did.
#[derive(Debug)]
pub struct Report {
    /// The evaluations merged, in file order.
    pub merged: Vec<Merged>,
    /// The shards and merges that did not finish, each with the reason and its log file.
    pub failed: Vec<String>,
}

impl Report {
    /// `Ok` when every evaluation was merged, else [`Error::Unfinished`].
    pub fn finished(self) -> Result<()> {
        if self.failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Unfinished {
                failed: self.failed,
            })
        }
    }
}

/// Executes a plan: evaluates every unfinished shard with the backend (`plan.vae` must exist),
/// then merges each evaluation whose shards all finished into the run folder. Shards that
/// failed twice, and merges that failed, are listed in the [`Report`].
pub fn execute(plan: &EvalPlan, opts: &Options) -> Result<Report> {
    opts.check()?;
    plan.check_run()?;
    for e in &plan.evals {
        e.check_settings(&plan.file.device)?;
    }
    for e in &plan.evals {
        e.record_settings(&plan.file.device)?;
    }
    let mut failed = match opts.backend {
        Backend::Local => local::run(plan, opts.local_jobs(plan), opts.local_threads(plan))?,
        Backend::Slurm => slurm::run(plan, opts.jobs)?,
    };
    let mut merged = Vec::new();
    for e in &plan.evals {
        if (1..=e.shards).all(|i| e.state(i) == ShardState::Done) {
            match plan.merge(e) {
                Ok(m) => {
                    eprintln!(
                        "xtask: merged the {} shards of {} into {}",
                        e.shards,
                        m.name,
                        m.summary.display()
                    );
                    merged.push(m);
                }
                Err(why) => failed.push(format!("the merge of {}: {why}", e.label)),
            }
        }
    }
    Ok(Report { merged, failed })
}

/// The progress bar of both backends.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "eval [{bar:30}] {percent}% {msg}  {elapsed_precise} elapsed, ETA {eta_precise}",
        )
        .expect("a constant template indicatif accepts: every run of this command draws it")
        .progress_chars("=> "),
    );
    bar
}
