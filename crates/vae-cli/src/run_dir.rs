//! A run's folder: resolved config, manifest, log file and atomic writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `data` to `path` through a temporary file in the same folder, fsync and rename, so a
/// crash or a full disk never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).expect("serializable");
    text.push(b'\n');
    write_atomic(path, &text)
}

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
