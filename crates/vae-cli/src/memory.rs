//! The memory this machine has free, and the refusal of work that cannot fit in it: training
//! runs (vae-model's estimate from the config) and evaluation buffers (`eval_cmd`).

use anyhow::{bail, Result};

/// `MemAvailable` of `/proc/meminfo`, bytes; `None` where it cannot be read (not Linux).
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes in GiB, for messages.
pub fn gib(bytes: f64) -> f64 {
    bytes / (1u64 << 30) as f64
}

/// Refuses a training run whose estimated peak memory ([`vae_model::memory::train_bytes`])
/// exceeds the memory available, with both figures and the settings that drive the estimate.
/// Nothing is refused where the available memory cannot be read.
pub fn check_training(cfg: &vae_model::ExperimentConfig) -> Result<()> {
    let Some(free) = available() else {
        return Ok(());
    };
    let need = vae_model::memory::train_bytes(cfg);
    if need > free as f64 {
        bail!(
            "this run needs about {:.1} GiB of memory (estimated from model.encoder, \
             model.decoder, model.flow widths and train.batch_size = {}), more than the {:.1} GiB \
             available here; use narrower layers or a smaller batch",
            gib(need),
            cfg.train.batch_size,
            gib(free as f64)
        );
    }
    Ok(())
}

/// Refuses to build a checkpoint's model whose weights alone
/// ([`vae_model::memory::model_bytes`]) exceed the memory available: `path` and the estimate in
/// the message. Nothing is refused where the available memory cannot be read.
pub fn check_model(model: &vae_model::ModelConfig, path: &std::path::Path) -> Result<()> {
    let Some(free) = available() else {
        return Ok(());
    };
    let need = vae_model::memory::model_bytes(model);
    if need > free as f64 {
        bail!(
            "checkpoint {}: its model needs about {:.1} GiB of memory for its weights alone, more \
             than the {:.1} GiB available here",
            path.display(),
            gib(need),
            gib(free as f64)
        );
    }
    Ok(())
}
