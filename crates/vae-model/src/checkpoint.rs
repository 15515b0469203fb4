//! Checkpoint files, apart from the training loop: their layout, version, checksum, atomic
//! writing and all-or-nothing loading, and [`Checkpoint::load_vae`], which gives an
//! inference-ready [`Vae`] with no optimizer, no dataset and no trainer.
//!
//! One safetensors file holds `model.<var>` (weights and BN statistics, named by their
//! `nn::Path`), `adam.m.<var>`, `adam.v.<var>`, `adam.step` and `meta.json` (a `u8` tensor of JSON:
//! format version, CRC-32 of the other tensors, the experiment config and the [`TrainState`]).
//! Python's `safetensors` reads it. Files are serialised in memory and written through
//! `vae_io::write_atomic`, so a crash or a full disk leaves the previous file intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, View};
use tch::{nn, Device, Tensor};

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::trainer::TrainState;
use crate::vae::Vae;

/// Version of the checkpoint layout that [`write()`] writes and [`Checkpoint::read`] reads.
pub const CHECKPOINT_FORMAT: i64 = 1;

/// A checkpoint read from disk and verified: format version and checksum checked, its config
/// and training state parsed. Nothing has been copied into a model yet.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    config: ExperimentConfig,
    state: TrainState,
    checksum: Option<u64>,
}

impl Checkpoint {
    /// Reads `path` and checks its format version and checksum (checkpoints written before
    /// checksums existed carry none and load unverified).
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let err = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        match vae_io::require_regular_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(err(format!("{e}; a checkpoint is a .safetensors file")))
            }
            Err(_) => return Err(err("the file does not exist".into())),
            Ok(()) => {}
        }
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| {
                err(format!(
                    "not a readable safetensors file ({e}); it may be truncated or corrupt"
                ))
            })?
            .into_iter()
            .collect();
        let meta = tensors
            .get("meta.json")
            .ok_or_else(|| err("no meta.json tensor: not a flowvae checkpoint".into()))?;
        let bytes = Vec::<u8>::try_from(meta).map_err(|e| err(format!("meta.json: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| err(format!("meta.json is not JSON: {e}")))?;
        let format = v.get("format").and_then(|f| f.as_i64());
        if format != Some(CHECKPOINT_FORMAT) {
            return Err(err(format!(
                "format version {format:?}, this flowvae reads version {CHECKPOINT_FORMAT}"
            )));
        }
        let config =
            serde_json::from_value(v["config"].clone()).map_err(|e| err(format!("config: {e}")))?;
        let state =
            serde_json::from_value(v["state"].clone()).map_err(|e| err(format!("state: {e}")))?;
        let checksum = v.get("checksum").and_then(|c| c.as_u64());
        // Everything that is loaded: every tensor's name, dtype, shape and bytes, and meta.json
        // (format, config, training state). Checkpoints written before it carry only `checksum`.
        if let Some(stored) = v.get("integrity").and_then(|c| c.as_u64()) {
            let mut named: Vec<(&str, &Tensor)> = tensors
                .iter()
                .filter(|(k, _)| k.as_str() != "meta.json")
                .map(|(k, t)| (k.as_str(), t))
                .collect();
            named.sort_by(|a, b| a.0.cmp(b.0));
            let mut covered = v.clone();
            if let Some(m) = covered.as_object_mut() {
                m.remove("checksum");
                m.remove("integrity");
            }
            let covered = serde_json::to_vec(&covered).map_err(|e| err(e.to_string()))?;
            let sum = integrity(
                named
                    .iter()
                    .map(|(k, t)| HostTensor::of(k, t).map(|h| (*k, h.dtype, h.shape, h.data))),
                &covered,
            )
            .map_err(err)?;
            if stored != sum as u64 {
                return Err(err(format!(
                    "integrity check failed (stored {stored}, computed {sum}): its tensors, \
                     their dtypes or shapes, its config or its training state were changed \
                     or are corrupt; use the other checkpoint of the run (best or last) or an \
                     older copy"
                )));
            }
        }
        if let Some(stored) = checksum {
            let mut named: Vec<(&str, &Tensor)> = tensors
                .iter()
                .filter(|(k, _)| k.as_str() != "meta.json")
                .map(|(k, t)| (k.as_str(), t))
                .collect();
            named.sort_by(|a, b| a.0.cmp(b.0));
            // One tensor's host copy at a time, so the check holds no second copy of the file.
            let sum = crc(named
                .iter()
                .map(|(k, t)| HostTensor::of(k, t).map(|h| (*k, h.data))))
            .map_err(err)?;
            if stored != sum as u64 {
                return Err(err(format!(
                    "checksum mismatch (stored {stored}, computed {sum}): the tensors are \
                     corrupt; use the other checkpoint of the run (best or last) or an older copy"
                )));
            }
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
            config,
            state,
            checksum,
        })
    }

    /// The checksum stored in the file and verified by [`read`](Self::read) (`None` for a
    /// checkpoint written before checksums existed): it identifies the weights, e.g. to check
    /// that the shards of one evaluation read the same checkpoint.
    pub fn checksum(&self) -> Option<u64> {
        self.checksum
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The experiment config it was written with (its `model` describes the weights).
    pub fn config(&self) -> &ExperimentConfig {
        &self.config
    }

    /// Where training stood when it was written.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Every tensor by name (`model.*`, `adam.*`, `meta.json`).
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// Pairs every variable of `vs` with its `model.<name>` tensor, checking the architecture,
    /// every name and every shape first, so that a refused checkpoint copies nothing.
    fn model_pairs(&self, vs: &nn::VarStore, model: &crate::ModelConfig) -> Result<Vec<Pair<'_>>> {
        if self.config.model != *model {
            return Err(self.error(format!(
                "it was written for another architecture (model config {}), this run has {}",
                serde_json::to_string(&self.config.model).unwrap_or_default(),
                serde_json::to_string(model).unwrap_or_default()
            )));
        }
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut pairs = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let key = format!("model.{name}");
            let t = self
                .tensors
                .get(&key)
                .ok_or_else(|| self.error(format!("no tensor {key}")))?;
            if t.size() != var.size() {
                return Err(self.error(format!(
                    "{key} has shape {:?}, the model has {:?}",
                    t.size(),
                    var.size()
                )));
            }
            pairs.push(Pair { var, saved: t });
        }
        Ok(pairs)
    }

    /// Checks that the checkpoint fits `vs` (built from `model`) and returns the copy to make;
    /// [`Restore::apply`] copies the weights and BN statistics. Callers that restore more
    /// (the optimizer) check that too before applying anything.
    pub fn restore_model<'a>(
        &'a self,
        vs: &nn::VarStore,
        model: &crate::ModelConfig,
    ) -> Result<Restore<'a>> {
        Ok(Restore {
            pairs: self.model_pairs(vs, model)?,
        })
    }

    /// The checkpoint's VAE on `device`, with its weights and BN statistics, for inference:
    /// its variables do not require gradients, and no optimizer state or data is loaded.
    pub fn load_vae(&self, device: Device) -> Result<Vae> {
        let mut vs = nn::VarStore::new(device);
        let vae = Vae::new(&vs.root(), &self.config.model)?;
        self.restore_model(&vs, &self.config.model)?.apply();
        vs.freeze();
        Ok(vae.owning(vs))
    }

    fn error(&self, reason: String) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            reason,
        }
    }
}

/// One variable and the saved tensor that will be copied into it.
#[derive(Debug)]
struct Pair<'a> {
    var: Tensor,
    saved: &'a Tensor,
}

/// A checked copy of a checkpoint's model tensors into a model's variables
/// ([`Checkpoint::restore_model`]).
#[derive(Debug)]
pub struct Restore<'a> {
    pairs: Vec<Pair<'a>>,
}

impl Restore<'_> {
    /// Copies every saved tensor into its variable (on the variable's device and dtype).
    pub fn apply(self) {
        tch::no_grad(|| {
            for Pair { mut var, saved } in self.pairs {
                var.copy_(&saved.to_device(var.device()).to_kind(var.kind()));
            }
        });
    }
}

/// Writes `model.<var>` for every variable of `vs`, the optimizer tensors `optimizer` (named as
/// they should be stored, e.g. `adam.m.<var>`), `config` and `state` into one safetensors file
/// at `path`, atomically.
pub fn write(
    path: &Path,
    vs: &nn::VarStore,
    optimizer: Vec<(String, Tensor)>,
    config: &ExperimentConfig,
    state: &TrainState,
) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (format!("model.{k}"), t))
        .chain(optimizer)
        .collect();
    let covered = serde_json::json!({
        "format": CHECKPOINT_FORMAT,
        "config": config,
        "state": state,
    });
    write_sealed(path, tensors, covered)
}

/// Writes `tensors` and a `meta.json` made of `covered` (an object: `format`, `config`, `state`,
/// whatever their values) plus its `checksum` and `integrity` sums, as [`write()`] does, into
/// one safetensors file at `path`, atomically. For tools and fuzzers that need a checkpoint
/// whose metadata is arbitrary but whose sums are right, so that [`Checkpoint::read`] gets past
/// them to the values themselves.
pub fn write_sealed(
    path: &Path,
    mut tensors: Vec<(String, Tensor)>,
    covered: serde_json::Value,
) -> Result<()> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let fail = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    // Each tensor is copied to the host once: the checksum and the file use the same bytes.
    let mut hosts = tensors
        .iter()
        .map(|(name, t)| Ok((name.as_str(), HostTensor::of(name, t)?)))
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(fail)?;
    // What `integrity` covers of meta.json: the object without the two sums, serialised as
    // the reader re-serialises what it parsed.
    let covered_bytes =
        serde_json::to_vec(&covered).map_err(|e| fail(format!("serialising meta.json: {e}")))?;
    let integrity_sum = integrity(
        hosts
            .iter()
            .map(|(name, h)| Ok((*name, h.dtype, h.shape.clone(), h.data.as_slice()))),
        &covered_bytes,
    )
    .map_err(fail)?;
    let mut meta = covered;
    let checksum =
        crc(hosts.iter().map(|(name, h)| Ok((*name, h.data.as_slice())))).map_err(fail)?;
    match meta.as_object_mut() {
        Some(m) => {
            m.insert("checksum".into(), checksum.into());
            m.insert("integrity".into(), integrity_sum.into());
        }
        None => return Err(fail("meta.json must be a JSON object".into())),
    }
    let meta =
        serde_json::to_vec(&meta).map_err(|e| fail(format!("serialising meta.json: {e}")))?;
    hosts.push((
        "meta.json",
        HostTensor {
            dtype: Dtype::U8,
            shape: vec![meta.len()],
            data: meta,
        },
    ));
    let bytes = safetensors::tensor::serialize(hosts, &None)
        .map_err(|e| fail(format!("safetensors: {e}")))?;
    vae_io::write_atomic(path, &bytes).map_err(Error::from)
}

/// A tensor's bytes on the host, as safetensors serialises them.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl HostTensor {
    /// `t`'s bytes, copied to the host and made contiguous; `name` goes into the error.
    fn of(name: &str, t: &Tensor) -> std::result::Result<HostTensor, String> {
        let t = t.to_device(Device::Cpu).contiguous();
        let dtype = Dtype::try_from(t.kind()).map_err(|e| format!("tensor {name}: {e}"))?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        Ok(HostTensor { dtype, shape, data })
    }
}

impl View for HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// CRC-32 over the names and raw bytes of a checkpoint's tensors, in the order given (sorted
/// by name); the first failed host copy is the error.
/// CRC-32 over each tensor's name, dtype, shape and bytes, in the order given (sorted by name),
/// then `meta`: what [`Checkpoint::read`] checks as `integrity`.
fn integrity<'a, B: AsRef<[u8]>>(
    tensors: impl Iterator<Item = std::result::Result<(&'a str, Dtype, Vec<usize>, B), String>>,
    meta: &[u8],
) -> std::result::Result<u32, String> {
    let mut h = crc32fast::Hasher::new();
    for item in tensors {
        let (name, dtype, shape, data) = item?;
        h.update(name.as_bytes());
        h.update(format!("{dtype:?}").as_bytes());
        for d in shape {
            h.update(&(d as u64).to_le_bytes());
        }
        h.update(data.as_ref());
    }
    h.update(meta);
    Ok(h.finalize())
}

fn crc<'a, B: AsRef<[u8]>>(
    tensors: impl Iterator<Item = std::result::Result<(&'a str, B), String>>,
) -> std::result::Result<u32, String> {
    let mut h = crc32fast::Hasher::new();
    for item in tensors {
        let (name, bytes) = item?;
        h.update(name.as_bytes());
        h.update(bytes.as_ref());
    }
    Ok(h.finalize())
}
