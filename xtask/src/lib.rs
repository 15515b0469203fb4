//! flowvae's project automation, in Rust instead of shell scripts (rust-analyzer style).
//!
//! The library half holds the pieces worth testing and fuzzing on their own (the MNIST pickle
//! converter, the benchmark tables) and the `sweep` driver over the sweep engine (`vae-sweep`,
//! which holds sweep files, the backends, the summary and its plot); `main.rs` is the command
//! line. This crate links no crate that links libtorch (of the workspace's crates, only `vae-io`
//! and `vae-sweep`): it must run on a fresh machine before libtorch is installed.

pub mod bench;
pub mod bootstrap;
pub mod mnist_pickle;
pub mod sweep;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The repository root (the parent of this crate's folder).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo root")
        .to_path_buf()
}

/// Runs the cargo that runs us, in the repo root so `.cargo/config.toml` applies.
pub fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("starting cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `--vae PATH` of `cargo xtask sweep` and `cargo xtask eval`, made absolute (relative to the
/// current folder), since the runs start elsewhere.
pub fn given_vae(given: &Path) -> Result<PathBuf> {
    Ok(std::env::current_dir()
        .context("reading the current folder")?
        .join(given))
}

/// Before a sweep or a sharded evaluation starts: installs what its runs need (the bootstrap)
/// and builds the release `vae` they run, or, when the user gave one (`given`, from
/// [`given_vae`]), checks that it exists.
pub fn prepare_runs(root: &Path, given: Option<&Path>) -> Result<()> {
    let layout = bootstrap::Layout::new(root.to_path_buf())?;
    bootstrap::run(&layout)?;
    match given {
        None => cargo(root, &["build", "--release", "--quiet", "-p", "vae-cli"]),
        Some(vae) if !vae.is_file() => anyhow::bail!(
            "--vae {}: no such file (build it with `cargo build -p vae-cli`)",
            vae.display()
        ),
        Some(_) => Ok(()),
    }
}
