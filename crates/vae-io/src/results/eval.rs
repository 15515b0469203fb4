//! `eval-<method>-<split>.json`: the summary `vae eval` writes, one flat JSON object whose
//! `method` key (`is`, `ais` or `bdmc`) says which estimate's keys follow.
//!
//! The estimator's own config (`settings`) stays a JSON value: it is vae-eval's `IsConfig` or
//! `AisConfig` as that crate serialises it, and vae-io names no other workspace crate. A tool
//! that links vae-eval reads it with `serde_json::from_value`.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::shard::{ShardInfo, ShardTime};
use super::{from_value, nan_if_null, nans_if_null, parse_json, read_text, write_sorted_json};
use crate::error::{Error, Result};

/// What `data` says of a BDMC summary: the images were drawn from the model, not the split.
pub const BDMC_SIMULATED_DATA: &str = "simulated from the model";

/// One point of the IWAE bound: the mean NLL bound from the first `k` of the importance
/// samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IwaePoint {
    /// Samples per image.
    pub k: usize,
    /// Mean `-log p̂_k(x)` over the images, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub nll: f64,
    /// Its standard error over the images (`None` for one image).
    pub nll_stderr: Option<f64>,
}

/// How AIS's HMC moves went, per annealing step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AisTrace {
    /// Mean acceptance rate.
    #[serde(deserialize_with = "nans_if_null")]
    pub acceptance: Vec<f64>,
    /// Mean step size.
    #[serde(deserialize_with = "nans_if_null")]
    pub step_size_mean: Vec<f64>,
    /// Smallest step size.
    #[serde(deserialize_with = "nans_if_null")]
    pub step_size_min: Vec<f64>,
    /// Largest step size.
    #[serde(deserialize_with = "nans_if_null")]
    pub step_size_max: Vec<f64>,
}

/// The keys of an importance-sampling summary (`"method": "is"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsEstimate {
    /// Mean `-log p̂(x)` over the images, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate_nll: f64,
    /// Its standard error over the images (`None` for one image).
    pub stderr: Option<f64>,
    /// The Monte Carlo standard error of the mean from the importance weights (delta method).
    pub mc_stderr: Option<f64>,
    /// The Monte Carlo standard error of the mean from the spread of independent groups of
    /// samples (replicates), which holds where the delta method understates the error.
    #[serde(default)]
    pub mc_stderr_replicates: Option<f64>,
    /// Images whose PSIS k-hat is above 0.5 (slow convergence).
    #[serde(default)]
    pub khat_above_0_5: usize,
    /// Images whose PSIS k-hat is above 0.7 (unreliable).
    #[serde(default)]
    pub khat_above_0_7: usize,
    /// Images with a flag in the CSV (k-hat above 0.7, a small ESS, or below the AIS check).
    #[serde(default)]
    pub flagged: usize,
    /// The AIS check (`--check-with-ais`), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ais_check: Option<AisCheck>,
    /// The estimate with the flagged images re-estimated by a full AIS from the prior
    /// (`--reestimate-flagged`), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reestimated: Option<Reestimate>,
    /// Mean -ELBO of the same samples, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub neg_elbo: f64,
    /// Its standard error over the images.
    pub neg_elbo_stderr: Option<f64>,
    /// The IWAE bound for k = 1, 10, 100, … and the k used.
    pub iwae_curve: Vec<IwaePoint>,
    /// vae-eval's `IsConfig`, as run.
    pub settings: Value,
}

/// A short forward AIS from the prior run beside IS, as an independent lower bound per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AisCheck {
    /// Annealing steps.
    pub steps: usize,
    /// Chains per image.
    pub chains: usize,
    /// Its mean `-log p̂(x)`, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate_nll: f64,
    /// Images where IS fell below it by more than twice their combined standard error.
    pub below: usize,
}

/// The IS estimate with its flagged images' `log p̂(x)` replaced by a full AIS from the prior.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reestimate {
    /// Images re-estimated (those flagged by IS or by the AIS check).
    pub images: usize,
    /// Annealing steps of the AIS.
    pub steps: usize,
    /// Chains per image.
    pub chains: usize,
    /// Mean `-log p̂(x)` over all the images, IS for the unflagged and AIS for the flagged,
    /// nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate_nll: f64,
    /// Its standard error over the images (`None` for one image).
    pub stderr: Option<f64>,
    /// Its Monte Carlo error from replicates: IS's groups for the unflagged images, AIS's
    /// chains for the flagged (`None` where either has none).
    pub mc_stderr_replicates: Option<f64>,
    /// Re-estimated images whose AIS estimate is itself flagged (its chains disagree).
    pub ais_flagged: usize,
}

/// The keys of an AIS summary (`"method": "ais"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AisEstimate {
    /// Mean `-log p̂(x)` (log-mean-exp of the chains' weights) over the images, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub estimate_nll: f64,
    /// Its standard error over the images.
    pub stderr: Option<f64>,
    /// The Monte Carlo standard error of the mean from the chains' weights (delta method).
    pub mc_stderr: Option<f64>,
    /// The Monte Carlo standard error of the mean from the spread of the chains (replicates).
    #[serde(default)]
    pub mc_stderr_replicates: Option<f64>,
    /// Images with a flag in the CSV (chains that disagree by more than a nat, or a small ESS).
    #[serde(default)]
    pub flagged: usize,
    /// The original's looser number: mean over the images of the chains' mean log-weight.
    #[serde(deserialize_with = "nan_if_null")]
    pub nll_mean_log_weight: f64,
    /// The HMC moves' acceptance and step sizes.
    pub trace: AisTrace,
    /// vae-eval's `AisConfig`, as run.
    pub settings: Value,
}

/// The keys of a BDMC summary (`"method": "bdmc"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdmcEstimate {
    /// Mean forward-AIS lower bound on `log p(x)`, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub lower_bound_log_px: f64,
    /// Mean reverse-AIS upper bound on `log p(x)`, nats.
    #[serde(deserialize_with = "nan_if_null")]
    pub upper_bound_log_px: f64,
    /// `upper - lower`.
    #[serde(deserialize_with = "nan_if_null")]
    pub gap: f64,
    /// Its standard error over the images.
    pub gap_stderr: Option<f64>,
    /// vae-eval's `AisConfig` of the forward chains, as run.
    pub settings: Value,
    /// Where the images came from: [`BDMC_SIMULATED_DATA`].
    pub data: String,
}

/// The method-specific part of an [`EvalSummary`], tagged by `method` in the file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Estimate {
    /// Importance sampling.
    Is(IsEstimate),
    /// Annealed importance sampling.
    Ais(AisEstimate),
    /// Bidirectional Monte Carlo on simulated data.
    Bdmc(BdmcEstimate),
}

/// `eval-<method>-<split>.json`: the keys every method writes, and its estimate's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalSummary {
    /// The split evaluated: `test`, `validation` or `train`.
    pub split: String,
    /// Images evaluated.
    pub images: usize,
    /// The checkpoint evaluated: `best` or `last`.
    pub checkpoint: String,
    /// Seconds of the estimation.
    pub wall_seconds: f64,
    /// `wall_seconds` per image, in milliseconds.
    pub ms_per_image: f64,
    /// `method` and the method's keys.
    #[serde(flatten)]
    pub estimate: Estimate,
    /// A shard's summary (`vae eval --shard I/N`): which slice it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// A merged summary (`vae eval-merge`): the shards it came from, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<ShardTime>>,
}

/// The keys of [`EvalSummary`] outside the estimate.
#[derive(Deserialize)]
struct Common {
    split: String,
    images: usize,
    checkpoint: String,
    #[serde(deserialize_with = "nan_if_null")]
    wall_seconds: f64,
    #[serde(deserialize_with = "nan_if_null")]
    ms_per_image: f64,
    #[serde(default)]
    shard: Option<ShardInfo>,
    #[serde(default)]
    shards: Option<Vec<ShardTime>>,
}

const COMMON_KEYS: [&str; 7] = [
    "split",
    "images",
    "checkpoint",
    "wall_seconds",
    "ms_per_image",
    "shard",
    "shards",
];

impl EvalSummary {
    /// `is`, `ais` or `bdmc`: the `method` key, and the `<method>` of the file name.
    pub fn method(&self) -> &'static str {
        match self.estimate {
            Estimate::Is(_) => "is",
            Estimate::Ais(_) => "ais",
            Estimate::Bdmc(_) => "bdmc",
        }
    }

    /// The NLL estimate, nats (IS and AIS; a BDMC summary has bounds instead).
    pub fn nll(&self) -> Option<f64> {
        match &self.estimate {
            Estimate::Is(e) => Some(e.estimate_nll),
            Estimate::Ais(e) => Some(e.estimate_nll),
            Estimate::Bdmc(_) => None,
        }
    }

    /// The NLL estimate's standard error over the images (IS and AIS, more than one image).
    pub fn nll_stderr(&self) -> Option<f64> {
        match &self.estimate {
            Estimate::Is(e) => e.stderr,
            Estimate::Ais(e) => e.stderr,
            Estimate::Bdmc(_) => None,
        }
    }

    /// The estimator's config as run (`settings`).
    pub fn settings(&self) -> &Value {
        match &self.estimate {
            Estimate::Is(e) => &e.settings,
            Estimate::Ais(e) => &e.settings,
            Estimate::Bdmc(e) => &e.settings,
        }
    }

    /// Writes the file atomically, as pretty JSON with sorted keys.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_sorted_json(path, self)
    }

    /// Reads the file; errors name it and the bad key ([`Error::BadKey`]).
    pub fn read(path: &Path) -> Result<Self> {
        let value: Value = parse_json(path, &read_text(path)?, None)?;
        Self::from_json(path, value)
    }

    /// The summary a parsed JSON value holds; errors name `path` and the key.
    fn from_json(path: &Path, value: Value) -> Result<Self> {
        let bad = |key: &str, reason: String| Error::BadKey {
            path: path.to_path_buf(),
            line: None,
            column: None,
            key: key.to_string(),
            reason,
        };
        let Value::Object(mut rest) = value else {
            return Err(bad(
                "(the top level)",
                format!("expected an object, found {value}"),
            ));
        };
        let method = match rest.remove("method") {
            Some(Value::String(m)) => m,
            Some(other) => return Err(bad("method", format!("expected a string, found {other}"))),
            None => return Err(bad("method", "missing field `method`".into())),
        };
        let common: Map<String, Value> = COMMON_KEYS
            .iter()
            .filter_map(|k| rest.remove_entry(*k))
            .collect();
        let common: Common = from_value(path, Value::Object(common))?;
        let rest = Value::Object(rest);
        let estimate = match method.as_str() {
            "is" => Estimate::Is(from_value(path, rest)?),
            "ais" => Estimate::Ais(from_value(path, rest)?),
            "bdmc" => Estimate::Bdmc(from_value(path, rest)?),
            other => {
                return Err(bad(
                    "method",
                    format!("unknown method `{other}`, expected `is`, `ais` or `bdmc`"),
                ))
            }
        };
        Ok(EvalSummary {
            split: common.split,
            images: common.images,
            checkpoint: common.checkpoint,
            wall_seconds: common.wall_seconds,
            ms_per_image: common.ms_per_image,
            estimate,
            shard: common.shard,
            shards: common.shards,
        })
    }
}

impl<'de> Deserialize<'de> for EvalSummary {
    /// The same checks as [`EvalSummary::read`], for a summary inside another document.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        EvalSummary::from_json(Path::new("(summary)"), value).map_err(|e| match e {
            Error::BadKey { key, reason, .. } => {
                serde::de::Error::custom(format!("key `{key}`: {reason}"))
            }
            other => serde::de::Error::custom(other),
        })
    }
}
