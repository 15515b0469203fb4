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
