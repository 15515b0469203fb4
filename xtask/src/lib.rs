//! flowvae's project automation, in Rust instead of shell scripts (rust-analyzer style).
//!
//! The library half holds the pieces worth testing and fuzzing on their own (the MNIST pickle
//! converter); `main.rs` is the command line. This crate links no libtorch and no workspace crate:
//! it must run on a fresh machine before libtorch is installed.

pub mod bootstrap;
pub mod mnist_pickle;

use std::path::PathBuf;

/// The repository root (the parent of this crate's folder).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo root")
        .to_path_buf()
}
