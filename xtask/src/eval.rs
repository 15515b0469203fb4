//! `cargo xtask eval`: a thin driver over the sharded evaluations of the sweep engine
//! (`vae_sweep::eval`). It installs what `vae` needs (the bootstrap), builds the release `vae`
//! unless `--vae` names one, and prints what the engine reports; the eval file, the backends,
//! resumption and the merge live in `vae-sweep`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use vae_sweep::eval::EvalPlan;
use vae_sweep::Backend;

/// Command-line options of `cargo xtask eval`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The backend.
    pub backend: Backend,
    /// Shards per evaluation instead of the file's `shards` (an entry's own `shards` wins).
    pub shards: Option<usize>,
    /// Local: shards at a time (default: the file's `jobs`, else 1). Slurm: most array tasks of
    /// one evaluation at a time (default: no limit).
    pub jobs: Option<usize>,
    /// Local: libtorch threads per shard (default: cores / jobs).
    pub threads: Option<usize>,
    /// Print the shards, commands and Slurm scripts; start nothing.
    pub dry_run: bool,
    /// The `vae` binary, taken as it is (default: `target/release/vae`, built first).
    pub vae: Option<PathBuf>,
}

/// Runs `cargo xtask eval`.
pub fn run(root: &Path, file: &Path, opts: &Options) -> Result<()> {
    let mut plan = EvalPlan::new(root, file, opts.shards)?;
    let engine = vae_sweep::eval::Options {
        backend: opts.backend,
        jobs: opts.jobs,
        threads: opts.threads,
    };
    engine.check()?;
    if let Some(vae) = &opts.vae {
        plan.vae = xtask::given_vae(vae)?;
    }
    if opts.dry_run {
        print!("{}", vae_sweep::eval::dry_run(&plan, &engine));
        return Ok(());
    }
    xtask::prepare_runs(root, opts.vae.is_some().then_some(plan.vae.as_path()))?;
    let report = vae_sweep::eval::execute(&plan, &engine)?;
    for m in &report.merged {
        println!("{}: {}", m.name, m.output.trim().replace('\n', "\n  "));
    }
    Ok(report.finished()?)
}
