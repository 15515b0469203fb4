//! `cargo xtask sweep`: a thin driver over the sweep engine (`vae-sweep`). It installs what the
//! runs need (the bootstrap), builds the release `vae` they run unless `--vae` names one, and
//! prints what the engine reports; planning, the backends and the summary live in `vae-sweep`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use vae_sweep::{Backend, Plan};

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
    /// The `vae` binary the runs use, taken as it is (default: `target/release/vae`, built
    /// first). The sweep tests pass the debug one (`cargo build -p vae-cli`).
    pub vae: Option<PathBuf>,
}

/// Runs `cargo xtask sweep`.
pub fn run(root: &Path, file: &Path, opts: &Options) -> Result<()> {
    let mut plan = Plan::new(root, file, opts.out.as_deref())?;
    let engine = vae_sweep::Options {
        backend: opts.backend,
        jobs: opts.jobs,
        threads: opts.threads,
    };
    engine.check()?;
    if let Some(vae) = &opts.vae {
        plan.vae = crate::given_vae(vae)?;
    }
    // Also for a dry run: the runs' configs are checked by the `vae` they would run.
    crate::prepare_runs(root, opts.vae.is_some().then_some(plan.vae.as_path()))?;
    if opts.dry_run {
        print!("{}", vae_sweep::dry_run(&plan, &engine));
        vae_sweep::validate::validate(&plan)?;
        println!("all {} runs' configs are valid", plan.runs.len());
        return Ok(());
    }
    let report = vae_sweep::execute(&plan, &engine)?;
    print!("{}", report.summary.settings_table);
    println!("wrote {}", report.summary.files.join(", "));
    Ok(report.finished()?)
}
