//! A run's folder: resolved config, manifest, log file and atomic writes.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// The project's one atomic writer (temporary file, fsync, rename, fsync of the folder) and its
/// pretty-JSON form; their errors name the file.
pub use vae_io::{write_atomic, write_json};

/// The files of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// `config.json`: the resolved config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `manifest.json`: versions, seeds, device, timings.
    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.json")
    }
    /// `train.log`.
    pub fn log(&self) -> PathBuf {
        self.root.join("train.log")
    }
    /// `results.json`.
    pub fn results(&self) -> PathBuf {
        self.root.join("results.json")
    }
    /// `checkpoints/<which>.safetensors`.
    pub fn checkpoint(&self, which: &str) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("{which}.safetensors"))
    }
    /// TensorBoard event folder.
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join("tensorboard")
    }

    /// Appends one line to `train.log`.
    pub fn log_line(&self, line: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .with_context(|| format!("opening {}", self.log().display()))?;
        writeln!(f, "{line}").with_context(|| format!("writing {}", self.log().display()))
    }
}

/// The current git commit of the working folder, or "unknown".
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
