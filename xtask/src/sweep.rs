//! `cargo xtask sweep`: a thin driver over the sweep engine (`vae-sweep`). It installs what the
//! runs need (the bootstrap), builds the release `vae` they run unless `--vae` names one, and
//! prints what the engine reports; planning, the backends and the summary live in `vae-sweep`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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
        plan.vae = std::env::current_dir()
            .context("reading the current folder")?
            .join(vae);
    }
    if opts.dry_run {
        print!("{}", vae_sweep::dry_run(&plan, &engine));
        return Ok(());
    }
    let layout = crate::bootstrap::Layout::new(root.to_path_buf())?;
    crate::bootstrap::run(&layout)?;
    if opts.vae.is_none() {
        crate::cargo(root, &["build", "--release", "--quiet", "-p", "vae-cli"])?;
    } else if !plan.vae.is_file() {
        bail!(
            "--vae {}: no such file (build it with `cargo build -p vae-cli`)",
            plan.vae.display()
        );
    }
    let report = vae_sweep::execute(&plan, &engine)?;
    print!("{}", report.summary.settings_table);
    println!("wrote {}", report.summary.files.join(", "));
    Ok(report.finished()?)
}
