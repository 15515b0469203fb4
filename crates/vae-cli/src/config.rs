//! The run config a user edits: JSON composed of the library configs, with `--set` overrides.
//!
//! Unknown keys are rejected at every level; a bad value gets a message naming the file, the key,
//! the value and what would be valid.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use vae_model::{DataConfig, ExperimentConfig, ModelConfig, TrainConfig};

/// How often a run writes checkpoints and pictures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Write `checkpoints/last.safetensors` every this many epochs (and at the end).
    pub checkpoint_every: usize,
    /// Write `samples.png` and `reconstructions.png` every this many epochs (and at the end).
    pub images_every: usize,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            checkpoint_every: 10,
            images_every: 10,
        }
    }
}

/// The final evaluation a run asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinalEvalConfig {
    /// Importance samples per test image for the NLL (`num_is_samples_nll`, 1000).
    pub is_samples: i64,
}

impl Default for FinalEvalConfig {
    fn default() -> Self {
        FinalEvalConfig { is_samples: 1000 }
    }
}

/// A whole run: what `vae train --config` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name; the default output folder is `runs/<name>`.
    pub name: String,
    /// Data settings.
    #[serde(default)]
    pub data: DataConfig,
    /// Architecture.
    #[serde(default)]
    pub model: ModelConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// Checkpoint and picture cadence.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Final evaluation.
    #[serde(default)]
    pub eval: FinalEvalConfig,
}

impl RunConfig {
    /// The part the trainer takes.
    pub fn experiment(&self) -> ExperimentConfig {
        ExperimentConfig {
            data: self.data.clone(),
            model: self.model.clone(),
            train: self.train.clone(),
        }
    }

    /// Reads `path`, applies `key=value` overrides, and checks every value.
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
        // Regular files of at most 1 MiB: a FIFO would block the read, a device never end it.
        let text = vae_io::read_settings_text(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        // Strict: a key given twice is refused rather than the last one taken.
        let value = vae_io::strict_json::parse(&text)
            .with_context(|| format!("config {} is not valid JSON", path.display()))?;
        Self::from_value(value, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// Builds a config from JSON plus overrides.
    pub fn from_value(mut value: serde_json::Value, overrides: &[String]) -> Result<RunConfig> {
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        // The key's path in the message (`train.epochs: invalid type: string "ten", ...`).
        let cfg: RunConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("`{path}`: {}", e.into_inner())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values the libraries would otherwise reject later (or not at all).
    pub fn validate(&self) -> Result<()> {
        // The name becomes the folder runs/NAME: it must stay inside runs/.
        let n = &self.name;
        if n.is_empty()
            || n == "."
            || n == ".."
            || n.len() > 100
            || n.contains(['/', '\\'])
            || n.chars().any(char::is_control)
        {
            bail!(
                "invalid config value `name` = {n:?}: expected a folder name of 1 to 100 \
                 characters, not `.` or `..`, without `/`, `\\` or control characters"
            );
        }
        if self.logging.checkpoint_every == 0 {
            bail!("invalid config value `logging.checkpoint_every` = 0: expected an integer >= 1");
        }
        if self.logging.images_every == 0 {
            bail!("invalid config value `logging.images_every` = 0: expected an integer >= 1");
        }
        if self.eval.is_samples < 1 {
            bail!(
                "invalid config value `eval.is_samples` = {}: expected an integer >= 1",
                self.eval.is_samples
            );
        }
        self.experiment().validate()?;
        Ok(())
    }
}

/// The deepest `--set` key accepted (the config's deepest key has 4 levels).
const MAX_KEY_DEPTH: usize = 8;

/// Applies one `a.b.c=value` override; `value` is JSON when it parses, else a string.
fn apply_override(root: &mut serde_json::Value, spec: &str) -> Result<()> {
    let Some((key, raw)) = spec.split_once('=') else {
        bail!("--set {spec:?}: expected key=value, e.g. --set train.epochs=10");
    };
    let value = match vae_io::strict_json::parse(raw) {
        Ok(v) => v,
        Err(e) if e.is_duplicate_key() => bail!("--set {key}: {e}"),
        Err(_) => serde_json::Value::String(raw.to_string()),
    };
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    // No config key is deeper; thousands of levels would overflow the stack when the nested
    // objects are read or dropped.
    if parts.len() > MAX_KEY_DEPTH {
        bail!(
            "--set {}...: {} levels deep; config keys have at most {MAX_KEY_DEPTH}",
            &key[..key.len().min(40)],
            parts.len()
        );
    }
    for (i, part) in parts.iter().enumerate() {
        let obj = match node {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => {
                *node = serde_json::Value::Object(Default::default());
                node.as_object_mut().expect("just made an object")
            }
            _ => bail!("--set {key}: `{}` is not an object", parts[..i].join(".")),
        };
        if i + 1 == parts.len() {
            obj.insert(part.to_string(), value);
            return Ok(());
        }
        node = obj
            .entry(part.to_string())
            .or_insert(serde_json::Value::Null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({"name": "t", "train": {"epochs": 3}})
    }

    #[test]
    fn overrides_set_nested_values() {
        let cfg = RunConfig::from_value(
            base(),
            &["train.epochs=7".into(), "model.flow.layers=2".into()],
        )
        .unwrap();
        assert_eq!(cfg.train.epochs, 7);
        assert_eq!(cfg.model.flow.unwrap().layers, 2);
        let cfg = RunConfig::from_value(base(), &["model.flow=null".into()]).unwrap();
        assert!(cfg.model.flow.is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = RunConfig::from_value(base(), &["train.epoch=7".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
        let err = RunConfig::from_value(base(), &["train.batch_size=0".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid config value `train.batch_size` = 0: expected an integer >= 1"
        );
        let err = RunConfig::from_value(base(), &["train.learning_rate=-1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`train.learning_rate` = -1"), "{err}");
        let err = RunConfig::from_value(base(), &["data.dataset=cifar".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown variant `cifar`, expected `mnist` or `fashion-mnist`"),
            "{err}"
        );
        for bad in ["..", ".", "a\\b", "a/b", ""] {
            let err =
                RunConfig::from_value(base(), &[format!("name=\"{}\"", bad.replace('\\', "\\\\"))])
                    .unwrap_err()
                    .to_string();
            assert!(
                err.contains("invalid config value `name`"),
                "{bad:?}: {err}"
            );
        }
        let err = RunConfig::from_value(base(), &["nokey".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected key=value"), "{err}");
        // A type error names its key.
        let err = RunConfig::from_value(base(), &["train.epochs=\"ten\"".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`train.epochs`: invalid type: string \"ten\""),
            "{err}"
        );
        // Impossible settings are refused at load time, not when they fail later.
        let err = RunConfig::from_value(base(), &["train.epochs=0".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`train.epochs` = 0"), "{err}");
        let err = RunConfig::from_value(base(), &["model.latent=99999999999".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`model.latent` = 99999999999"), "{err}");
        // A key thousands of levels deep is refused, not a stack overflow.
        let deep = format!("a{}=1", ".a".repeat(20_000));
        let err = RunConfig::from_value(base(), &[deep])
            .unwrap_err()
            .to_string();
        assert!(err.contains("20001 levels deep"), "{err}");
    }

    /// Every config the repository ships loads, and a training step of it gives every variable
    /// a gradient: Adam's flat buffers (one `cat` for the gradients, one update for all
    /// variables) bind only then, and fall back to one variable at a time, much slower on a
    /// GPU, if a variable is never reached.
    #[test]
    fn every_shipped_config_loads_and_trains_every_variable() {
        use std::sync::atomic::AtomicBool;
        use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
        use vae_model::Trainer;

        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        assert!(paths.len() >= 5, "{paths:?}");
        for path in paths {
            let cfg = RunConfig::load(&path, &["train.batch_size=10".into()]).unwrap();
            // 40 training and 10 validation images of arbitrary grey levels (the last 10 again
            // as the test set); the trainer takes the split from the dataset, not the config.
            let n = 50;
            let pixels = (0..n * 784).map(|i| ((i * 7919 + i / 784 * 31) % 256) as u8);
            let all = Split {
                pixels: pixels.collect(),
                labels: vec![0; n],
            };
            let data = Dataset::from_splits(
                DatasetKind::Mnist,
                all.slice(0..n),
                all.slice(40..n),
                SplitConfig { validation: 10 },
            )
            .unwrap();
            let mut trainer = Trainer::new(cfg.experiment(), data, tch::Device::Cpu).unwrap();
            let _ = trainer
                .run_epoch(&AtomicBool::new(false), Some(2), |_| {})
                .unwrap();
            let vars = trainer.var_store().trainable_variables();
            let without = vars.iter().filter(|v| !v.grad().defined()).count();
            assert_eq!(
                without,
                0,
                "{}: {without} of {} variables without a gradient",
                path.display(),
                vars.len()
            );
        }
    }
}
