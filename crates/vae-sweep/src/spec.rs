//! Sweep files (`configs/sweeps/*.json`): parsing with messages that name the bad key, and the
//! expansion into runs with deterministic folder names.
//!
//! The file is read with serde (the structs of `file.rs`, which refuse unknown and duplicate
//! keys) through `serde_path_to_error`, so every message names the key's path in the file
//! (`` `variants[1].sett`: unknown field `sett`, expected one of `label`, `x`, `set` ``), then
//! checked as a whole (keys set in two places, the number of runs, folder names) by [`Sweep`].
//!
//! ```json
//! {
//!   "name": "iaf-depth",
//!   "base": "../mnist-mlp-iaf-cpu.json",
//!   "set": { "train.epochs": 100 },
//!   "variants": [
//!     { "label": "iaf0", "x": 0, "set": { "model.flow": null } },
//!     { "label": "iaf2", "x": 2, "set": { "model.flow.layers": 2 } }
//!   ],
//!   "grid": { "train.warmup_epochs": [0, 10] },
//!   "seeds": [0, 1],
//!   "eval": { "method": "is", "k": 1000 },
//!   "jobs": 2,
//!   "x_label": "IAF layers",
//!   "slurm": { "partition": "cpu", "cpus_per_task": 4, "mem": "8G", "time": "1-00:00:00" }
//! }
//! ```
//!
//! Runs are every variant times every grid point times every seed; each becomes `vae train
//! --config BASE --set KEY=VALUE...` with the common `set` first, then the variant's, the grid
//! point's and `train.seed`. JSON objects have no order, so grid keys (and the keys of each `set`)
//! are taken in alphabetical order; values keep the order of their arrays.
//!
//! The plot's x axis is the variants' `x` when every variant has one, else the grid key named by
//! `x_key`, else the first grid key whose values are all numbers, else one position per setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, SpecError};
use crate::file::{Obj, RawEval, RawSlurm, RawSweep, RawVariant};

pub use crate::expand::folder_name;

/// One `--set key=value` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted config path, e.g. `model.flow.layers`.
    pub key: String,
    /// The JSON value.
    pub value: Value,
}

impl Override {
    /// The `--set` argument: the value as compact JSON, which `vae` parses back exactly.
    pub fn arg(&self) -> String {
        format!("{}={}", self.key, self.value)
    }

    /// `key=value` for people: strings without quotes.
    pub fn display(&self) -> String {
        format!("{}={}", self.key, show(&self.value))
    }
}

pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One entry of `variants`.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Short name used in folder names and tables.
    pub label: Option<String>,
    /// Where the variant sits on the plot's x axis.
    pub x: Option<f64>,
    /// Its overrides.
    pub set: Vec<Override>,
}

/// The evaluation run after training.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSpec {
    /// `is` or `ais`.
    pub method: String,
    /// IS: importance samples per image.
    pub k: Option<u64>,
    /// Evaluate only the first N test images.
    pub n: Option<u64>,
    /// Further `vae eval` arguments, e.g. `["--steps", "500"]`.
    pub args: Vec<String>,
    /// Shards: 1 (the default) evaluates each run in its training job; above 1, every trained
    /// run is evaluated after the training stage as that many `vae eval --shard I/N` (the
    /// [`eval`](crate::eval) engine, on the sweep's backend) and merged into its folder.
    pub shards: usize,
}

impl EvalSpec {
    /// The file `vae eval` writes into the run folder (vae-io's
    /// [`RunDir::eval_summary`](vae_io::run_dir::RunDir::eval_summary) of the test split).
    pub fn output(&self) -> String {
        vae_io::run_dir::RunDir::new("")
            .eval_summary(&self.method, crate::results::EVAL_SPLIT)
            .display()
            .to_string()
    }

    /// Whether the evaluation runs sharded, after the training stage, instead of in each run's
    /// training job.
    pub fn sharded(&self) -> bool {
        self.shards > 1
    }

    /// The evaluation as the [`eval`](crate::eval) engine's entry: the same `vae eval` flags as
    /// [`Plan::eval_args`](crate::Plan::eval_args), in its order.
    pub fn entry(&self) -> crate::eval::EvalEntry {
        crate::eval::EvalEntry {
            method: Some(if self.method == "ais" {
                crate::eval::Method::Ais
            } else {
                crate::eval::Method::Is
            }),
            shards: Some(self.shards),
            split: Some(crate::results::EVAL_SPLIT.to_string()),
            k: self.k,
            n: self.n,
            args: self.args.clone(),
            ..Default::default()
        }
    }

    /// Short description for tables and plots, e.g. `IS, k=1000`.
    pub fn describe(&self) -> String {
        let mut s = self.method.to_uppercase();
        if let Some(k) = self.k {
            s += &format!(", k={k}");
        }
        if let Some(n) = self.n {
            s += &format!(", {n} images");
        }
        s
    }
}

/// Slurm resources; the command line can override none of them except `--jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSpec {
    /// `--partition` (the cluster's default when absent).
    pub partition: Option<String>,
    /// `--cpus-per-task`, also the run's libtorch threads.
    pub cpus_per_task: u64,
    /// `--mem`, e.g. `4G`.
    pub mem: Option<String>,
    /// `--time`, e.g. `02:00:00`.
    pub time: Option<String>,
    /// `--gres=gpu:N` when above 0.
    pub gpus: u64,
    /// Further `#SBATCH` options, e.g. `--account=ml`.
    pub extra: Vec<String>,
}

impl SlurmSpec {
    /// The checked `slurm` section of a sweep or eval file; the defaults where it is absent.
    pub(crate) fn from_raw(raw: Option<Obj<RawSlurm>>) -> SlurmSpec {
        let Some(Obj(RawSlurm {
            partition,
            cpus_per_task,
            mem,
            time,
            gpus,
            extra,
        })) = raw
        else {
            return SlurmSpec::default();
        };
        SlurmSpec {
            partition: partition.map(|t| t.0),
            cpus_per_task: cpus_per_task.map_or(1, |n| n.0),
            mem: mem.map(|t| t.0),
            time: time.map(|t| t.0),
            gpus: gpus.map_or(0, |n| n.0),
            extra: extra.map_or_else(Vec::new, |e| e.0.into_iter().map(|o| o.0).collect()),
        }
    }
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            partition: None,
            cpus_per_task: 1,
            mem: None,
            time: None,
            gpus: 0,
            extra: Vec::new(),
        }
    }
}

/// A parsed, checked sweep file.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// Name (default: the file stem); the default output folder is `runs/sweeps/<name>`.
    pub name: String,
    /// The base run config, resolved against the sweep file's folder.
    pub base: PathBuf,
    /// Overrides every run gets.
    pub set: Vec<Override>,
    /// Variants (one with no overrides when the file lists none).
    pub variants: Vec<Variant>,
    /// Grid axes, by key in alphabetical order.
    pub grid: Vec<(String, Vec<Value>)>,
    /// Seeds (`train.seed`); `None` keeps the base config's seed.
    pub seeds: Option<Vec<u64>>,
    /// Evaluation after training.
    pub eval: Option<EvalSpec>,
    /// `vae --device`.
    pub device: String,
    /// Local backend: runs at a time when `--jobs` is not given.
    pub jobs: Option<usize>,
    /// The grid key on the plot's x axis.
    pub x_key: Option<String>,
    /// Label of the plot's x axis.
    pub x_label: Option<String>,
    /// Slurm resources.
    pub slurm: SlurmSpec,
}

/// How runs are laid out on the plot's x axis.
#[derive(Debug, Clone, PartialEq)]
pub enum Axis {
    /// A number per run: from the variants' `x`, or from the first numeric grid key.
    Numeric {
        /// Axis label.
        label: String,
    },
    /// One position per setting, labelled by it.
    Categorical {
        /// Label per position.
        labels: Vec<String>,
    },
}

/// One training run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Position in the sweep (the Slurm array index).
    pub index: usize,
    /// Folder name under the sweep's output folder.
    pub name: String,
    /// Index of the run's setting (all it overrides but the seed).
    pub setting: usize,
    /// The setting for people, e.g. `iaf2, train.warmup_epochs=10`.
    pub setting_label: String,
    /// The swept overrides: the variant's, then the grid point's (not the common ones).
    pub overrides: Vec<Override>,
    /// `train.seed`, when the sweep lists seeds.
    pub seed: Option<u64>,
    /// Position on the plot's x axis.
    pub x: f64,
    /// Plot series (the swept values not on the x axis); empty for a single series.
    pub series: String,
}

impl Run {
    /// Every `--set` argument of the run: the sweep's common ones, the swept ones, the seed.
    pub fn set_args(&self, sweep: &Sweep) -> Vec<String> {
        let mut v: Vec<String> = sweep.set.iter().map(Override::arg).collect();
        v.extend(self.overrides.iter().map(Override::arg));
        if let Some(s) = self.seed {
            v.push(format!("train.seed={s}"));
        }
        v
    }
}

/// The most runs one sweep may expand into.
pub const MAX_RUNS: usize = 10_000;

/// A `serde_path_to_error` error as a [`SpecError`] naming the key.
fn invalid(e: serde_path_to_error::Error<serde_json::Error>) -> SpecError {
    let key = e.path().to_string();
    SpecError::Invalid {
        key: if key == "." { String::new() } else { key },
        message: e.into_inner().to_string(),
    }
}

fn overrides(set: Option<crate::file::Overrides>) -> Vec<Override> {
    set.unwrap_or_default()
        .0
        .into_iter()
        .map(|(key, value)| Override { key, value })
        .collect()
}

impl Sweep {
    /// Reads and checks a sweep file; the default name is the file's stem, and `base` is
    /// resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Sweep, Error> {
        let text = vae_io::read_settings_text(path).map_err(|error| Error::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into());
        let dir = path.parent().unwrap_or(Path::new("."));
        let path = path.to_path_buf();
        Self::parse(&text, &stem, dir).map_err(|error| match error {
            SpecError::NotJson { error } => Error::NotJson { path, error },
            error => Error::Spec { path, error },
        })
    }

    /// Checks a sweep given as JSON text, what [`Sweep::load`] does after reading the file;
    /// `base` is resolved against `dir`.
    pub fn parse(text: &str, default_name: &str, dir: &Path) -> Result<Sweep, SpecError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = serde_path_to_error::deserialize::<_, Obj<RawSweep>>(&mut de).map_err(|e| {
            if e.inner().is_data() {
                invalid(e)
            } else {
                SpecError::NotJson {
                    error: e.into_inner(),
                }
            }
        })?;
        de.end().map_err(|error| SpecError::NotJson { error })?;
        Self::from_raw(raw.0, default_name, dir)
    }

    /// Checks a sweep given as a JSON value; `base` is resolved against `dir`. (A value has no
    /// duplicate keys left to refuse: parse text with [`Sweep::parse`] for that.)
    pub fn from_value(value: &Value, default_name: &str, dir: &Path) -> Result<Sweep, SpecError> {
        let raw = serde_path_to_error::deserialize::<_, Obj<RawSweep>>(value).map_err(invalid)?;
        Self::from_raw(raw.0, default_name, dir)
    }

    /// The checks of the whole file, after each key's own.
    fn from_raw(raw: RawSweep, default_name: &str, dir: &Path) -> Result<Sweep, SpecError> {
        let name = raw.name.map_or_else(|| default_name.to_string(), |t| t.0);
        if name.contains('/') || name.starts_with('.') {
            return Err(SpecError::BadName { name });
        }
        let base = dir.join(raw.base.ok_or(SpecError::MissingBase)?.0);
        if !base.is_file() {
            return Err(SpecError::BaseNotFound { path: base });
        }
        let base = std::fs::canonicalize(&base)
            .map_err(|error| SpecError::BaseUnresolved { path: base, error })?;
        let set = overrides(raw.set);
        let variants = match raw.variants {
            None => vec![Variant {
                label: None,
                x: None,
                set: Vec::new(),
            }],
            Some(list) => list
                .0
                .into_iter()
                .enumerate()
                .map(|(index, Obj(RawVariant { label, x, set }))| {
                    Ok(Variant {
                        label: label.map(|l| l.0),
                        x: x.map(|x| x.0),
                        set: overrides(Some(set.ok_or(SpecError::MissingVariantSet { index })?)),
                    })
                })
                .collect::<Result<_, SpecError>>()?,
        };
        let grid: Vec<(String, Vec<Value>)> = raw.grid.unwrap_or_default().0.into_iter().collect();
        let seeds: Option<Vec<u64>> = raw.seeds.map(|s| s.0.into_iter().map(|u| u.0).collect());
        if let Some(s) = &seeds {
            let mut sorted = s.clone();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(SpecError::SeedTwice { seed: w[0] });
            }
        }
        let eval = match raw.eval {
            None => None,
            Some(Obj(RawEval {
                method,
                k,
                n,
                args,
                shards,
            })) => {
                let method = method.map_or_else(|| "is".to_string(), |m| m.0);
                if k.is_some() && method != "is" {
                    return Err(SpecError::KWithoutIs);
                }
                Some(EvalSpec {
                    method,
                    k: k.map(|k| k.0),
                    n: n.map(|n| n.0),
                    args: args.map_or_else(Vec::new, |a| a.0.into_iter().map(|t| t.0).collect()),
                    shards: shards.map_or(1, |s| s.0 as usize),
                })
            }
        };
        let x_key = raw.x_key.map(|t| t.0);
        if let Some(k) = &x_key {
            match grid.iter().find(|(g, _)| g == k) {
                Some((_, values)) if values.iter().all(Value::is_number) => {}
                Some(_) => return Err(SpecError::XKeyNotNumeric { key: k.clone() }),
                None => return Err(SpecError::XKeyNotInGrid { key: k.clone() }),
            }
        }
        let slurm = SlurmSpec::from_raw(raw.slurm);
        let sweep = Sweep {
            name,
            base,
            set,
            variants,
            grid,
            seeds,
            eval,
            device: raw.device.map_or_else(|| "cpu".to_string(), |t| t.0),
            jobs: raw.jobs.map(|n| n.0 as usize),
            x_key,
            x_label: raw.x_label.map(|t| t.0),
            slurm,
        };
        sweep.check_conflicts()?;
        sweep.check_run_count()?;
        sweep.runs()?;
        Ok(sweep)
    }

    /// The number of runs (variants × grid points × seeds) is at most [`MAX_RUNS`], checked
    /// before expanding them: a few short lists in a 4 KB file multiply into billions of runs,
    /// which would exhaust memory before any message.
    fn check_run_count(&self) -> Result<(), SpecError> {
        let factors: Vec<(String, usize)> =
            std::iter::once(("variants".to_string(), self.variants.len()))
                .chain(self.grid.iter().map(|(k, v)| (k.clone(), v.len())))
                .chain(self.seeds.as_ref().map(|s| ("seeds".to_string(), s.len())))
                .collect();
        let total = factors
            .iter()
            .try_fold(1usize, |total, (_, n)| total.checked_mul(*n));
        if total.is_none_or(|t| t > MAX_RUNS) {
            return Err(SpecError::TooManyRuns {
                runs: total,
                factors,
                max: MAX_RUNS,
            });
        }
        Ok(())
    }

    /// A key may be set in one place only: common `set`, the variants, the grid, or `seeds`.
    fn check_conflicts(&self) -> Result<(), SpecError> {
        let mut owner: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut claims: Vec<(&'static str, &str)> = Vec::new();
        claims.extend(self.set.iter().map(|o| ("set", o.key.as_str())));
        for v in &self.variants {
            claims.extend(v.set.iter().map(|o| ("variants", o.key.as_str())));
        }
        claims.extend(self.grid.iter().map(|(k, _)| ("grid", k.as_str())));
        if self.seeds.is_some() {
            claims.push(("seeds", "train.seed"));
        }
        for (place, k) in claims {
            match owner.get(k) {
                Some(&other) if other != place => {
                    return Err(SpecError::SetTwice {
                        place,
                        key: k.to_string(),
                        other,
                    })
                }
                _ => {
                    owner.insert(k.to_string(), place);
                }
            }
        }
        // A key inside another that is set elsewhere (model.flow.layers in the grid, model.flow
        // in `set`) would be overwritten, or overwrite, depending on order; variants may mix
        // them, each variant on its own.
        for (a, oa) in &owner {
            for (b, ob) in &owner {
                if b.starts_with(&format!("{a}.")) && oa != ob {
                    return Err(SpecError::SetInside {
                        place: ob,
                        key: b.clone(),
                        outer: a.clone(),
                        outer_place: oa,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/sweeps")
    }

    fn parse(v: Value) -> Result<Sweep, SpecError> {
        Sweep::from_value(&v, "test", &dir())
    }

    fn err(v: Value) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn bad_files_name_the_key() {
        for (file, expected) in [
            (
                json!({"base": "../smoke.json", "gird": {}}),
                "`gird`: unknown field `gird`, expected one of `name`, `base`, `set`",
            ),
            (json!({}), "missing key `base`"),
            (json!({"base": "../nope.json"}), "`base`: "),
            (
                json!({"base": "../smoke.json", "grid": {"model.latent": []}}),
                "`grid.model.latent`: expected a non-empty array",
            ),
            (
                json!({"base": "../smoke.json", "grid": {"model latent": [1]}}),
                "`grid.model latent`: `model latent` is not a config key",
            ),
            (
                json!({"base": "../smoke.json", "seeds": [1, "2"]}),
                "`seeds[1]`: expected an integer >= 0, found \"2\"",
            ),
            (
                json!({"base": "../smoke.json", "seeds": [1, 1]}),
                "seed 1 is listed twice",
            ),
            (
                json!({"base": "../smoke.json", "eval": {"method": "bdmc"}}),
                "`eval.method`",
            ),
            (
                json!({"base": "../smoke.json", "eval": {"method": "is", "k": 0}}),
                "`eval.k`: expected an integer >= 1",
            ),
            (
                json!({"base": "../smoke.json", "eval": {"kk": 3}}),
                "`eval.kk`: unknown field `kk`, expected one of `method`, `k`, `n`, `args`",
            ),
            (
                json!({"base": "../smoke.json", "variants": [{"x": 1}]}),
                "`variants[0]`: missing key `set`",
            ),
            (
                json!({"base": "../smoke.json", "variants": [{"set": {}, "lable": "a"}]}),
                "`variants[0].lable`: unknown field `lable`, expected one of `label`, `x`, `set`",
            ),
            (
                json!({"base": "../smoke.json", "variants": [{"set": {}, "x": "2"}]}),
                "`variants[0].x`: expected a number",
            ),
            (
                json!({"base": "../smoke.json", "variants": []}),
                "`variants`: expected a non-empty array",
            ),
            (
                json!({"base": "../smoke.json", "slurm": {"cpus_per_task": 0}}),
                "`slurm.cpus_per_task`: expected an integer >= 1",
            ),
            (
                json!({"base": "../smoke.json", "slurm": {"extra": ["account=x"]}}),
                "`slurm.extra[0]`",
            ),
            (
                json!({"base": "../smoke.json", "slurm": {"partion": "x"}}),
                "`slurm.partion`: unknown field `partion`, expected one of `partition`",
            ),
            (
                json!({"base": "../smoke.json", "jobs": 0}),
                "`jobs`: expected an integer from 1 to 256, found 0",
            ),
            (
                json!({"base": "../smoke.json", "x_key": "model.latent"}),
                "`x_key`: `model.latent` is not a key of `grid`",
            ),
            (
                json!({"base": "../smoke.json", "grid": {"data.dataset": ["mnist"]}, "x_key": "data.dataset"}),
                "`x_key`: the values of `grid.data.dataset` are not all numbers",
            ),
            (
                json!({"base": "../smoke.json", "set": {"train.seed": 1}, "seeds": [1]}),
                "`seeds`: `train.seed` is also set in `set`",
            ),
            (
                json!({"base": "../smoke.json", "set": {"model.flow": null}, "grid": {"model.flow.layers": [1, 2]}}),
                "`grid`: `model.flow.layers` lies inside `model.flow`",
            ),
            (
                json!({"base": "../smoke.json", "variants": [{"set": {"model.latent": 2}}, {"set": {"model.latent": 2}}]}),
                "would share the folder `latent=2`",
            ),
            (
                json!({"base": "../smoke.json", "grid": {"model.latent": (1..=101).collect::<Vec<_>>(), "train.epochs": (1..=100).collect::<Vec<_>>()}}),
                "the sweep has 10100 runs: 1 (variants) x 101 (model.latent) x 100 (train.epochs), more than the 10000",
            ),
            (
                json!({"base": "../smoke.json", "grid": {"a.a": (0..9).collect::<Vec<_>>(), "a.b": (0..9).collect::<Vec<_>>(), "a.c": (0..9).collect::<Vec<_>>(), "a.d": (0..9).collect::<Vec<_>>(), "a.e": (0..9).collect::<Vec<_>>()}, "seeds": (0..9).collect::<Vec<_>>()}),
                "the sweep has 531441 runs",
            ),
        ] {
            let e = err(file.clone());
            assert!(e.contains(expected), "{file}: {e}");
        }
    }

    /// Text as `Sweep::load` reads it: serde's checks (unknown, duplicate and missing keys,
    /// types) name the key's path and the line and column; what is not JSON says so.
    #[test]
    fn text_errors_name_the_path_line_and_column() {
        let mut wrong = Vec::new();
        let text = |t: &str| Sweep::parse(t, "test", &dir()).unwrap_err().to_string();
        for (file, expected) in [
            (
                r#"{"base": "../smoke.json", "variants": [{"set": {}}, {"sett": {}}]}"#,
                "`variants[1].sett`: unknown field `sett`, expected one of `label`, `x`, `set` at line 1 column 59",
            ),
            (
                r#"{"base": "../smoke.json", "base": "../smoke.json"}"#,
                "duplicate field `base` at line 1 column 32",
            ),
            (
                r#"{"base": "../smoke.json", "eval": {"k": 1, "k": 2}}"#,
                "`eval`: duplicate field `k`",
            ),
            (
                r#"{"base": "../smoke.json", "set": {"train.epochs": 1, "train.epochs": 2}}"#,
                "`set`: the key `train.epochs` is given twice",
            ),
            (
                r#"{"base": "../smoke.json", "grid": {"model.latent": [1], "model.latent": [2]}}"#,
                "`grid`: the key `model.latent` is given twice",
            ),
            (
                r#"{"base": "../smoke.json", "variants": [{"set": {"model.flow": null, "model.flow": 1}}]}"#,
                "`variants[0].set`: the key `model.flow` is given twice",
            ),
            (
                "{\"base\": \"../smoke.json\",\n \"seeds\": [1, \"two\"]}",
                "`seeds[1]`: expected an integer >= 0, found \"two\" at line 2 column 20",
            ),
            (r#"[{"base": "../smoke.json"}]"#, "expected a JSON object at the top level, found an array"),
            (
                r#"{"base": "../smoke.json", "variants": [[{"set": {}}]]}"#,
                "`variants[0]`: expected an object like {\"label\": \"iaf2\"",
            ),
            (
                r#"{"base": "../smoke.json", "set": [["train.epochs", 1]]}"#,
                "`set`: expected an object of config keys and values, e.g. {\"train.epochs\": 10}, found an array",
            ),
            (
                r#"{"base": "../smoke.json", "grid": {"model.latent": 8}}"#,
                "`grid.model.latent`: expected a non-empty array of values, found a number",
            ),
            (r#"{"base": "../smoke.json", "seeds": 3}"#, "`seeds`: expected a non-empty array of integers, found a number"),
            (r#"{"base": "../smoke.json", "name": null}"#, "`name`: expected a non-empty string, found null"),
            (r#"{"base": "../smoke.json", "name": ""}"#, "`name`: expected a non-empty string, found a string"),
            (r#"{"base": "../smoke.json", "name": "a/b"}"#, "`name`: \"a/b\" must not contain `/`"),
            (r#"{"base": "../smoke.json", "eval": "is"}"#, "`eval`: expected an object like {\"method\": \"is\", \"k\": 1000} or null, found a string"),
            (r#"{"base": "../smoke.json", "eval": {"method": "ais", "k": 5}}"#, "`eval.k`: only the \"is\" method takes k"),
            (r#"{"base": "../smoke.json", "eval": {"args": "--steps"}}"#, "`eval.args`: expected an array of strings, found a string"),
            (r#"{"base": "../smoke.json", "eval": {"shards": 0}}"#, "`eval.shards`: expected an integer from 1 to 10000, found 0"),
            (r#"{"base": "../smoke.json", "eval": {"shards": "two"}}"#, "`eval.shards`: expected an integer from 1 to 10000, found \"two\""),
            (r#"{"base": "../smoke.json", "eval": {"shards": 1.5}}"#, "`eval.shards`: expected an integer from 1 to 10000, found 1.5"),
            (r#"{"base": "../smoke.json", "slurm": []}"#, "`slurm`: expected an object, found an array"),
            (r#"{"base": "../smoke.json", "slurm": {"gpus": -1}}"#, "`slurm.gpus`: expected an integer >= 0, found -1"),
            (r#"{"base": "../smoke.json", "jobs": 1.5}"#, "`jobs`: expected an integer from 1 to 256, found 1.5"),
            (r#"{"base": "../smoke.json", "jobs": 100000}"#, "`jobs`: expected an integer from 1 to 256, found 100000"),
            (r#"{"base": "../smoke.json", "slurm": {"partition": "cpu gpu"}}"#, "`slurm.partition`: \"cpu gpu\" contains a space"),
            (r#"{"base": "../smoke.json", "slurm": {"extra": ["--account=a b"]}}"#, "`slurm.extra[0]`: \"--account=a b\" contains a space"),
            (r#"{"base": "../smoke.json", "variants": {}}"#, "`variants`: expected a non-empty array of {\"label\", \"x\", \"set\"} objects, found an object"),
            (r#"{"base": "../smoke.json", "grid": {}} x"#, "not valid JSON: trailing characters at line 1 column 39"),
            (r#"{"base": "../smoke.json", "#, "not valid JSON: EOF while parsing"),
        ] {
            let e = text(file);
            if !e.contains(expected) {
                wrong.push(format!("{file}: {e}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        // `"eval": null` is no evaluation, as no `eval` is.
        let s = Sweep::parse(r#"{"base": "../smoke.json", "eval": null}"#, "t", &dir()).unwrap();
        assert_eq!(s.eval, None);
        // `shards` defaults to 1, the evaluation in each run's job.
        let s = Sweep::parse(r#"{"base": "../smoke.json", "eval": {}}"#, "t", &dir()).unwrap();
        assert_eq!(
            s.eval.as_ref().map(|e| (e.shards, e.sharded())),
            Some((1, false))
        );
        let s = Sweep::parse(
            r#"{"base": "../smoke.json", "eval": {"k": 10, "n": 20, "args": ["--seed", "3"], "shards": 2}}"#,
            "t",
            &dir(),
        )
        .unwrap();
        let e = s.eval.unwrap();
        assert!(e.sharded());
        assert_eq!(
            e.entry().flags().join(" "),
            "--method is --split test --n 20 --k 10 --seed 3"
        );
    }

    #[test]
    fn a_file_error_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("bad.json");
        std::fs::write(&file, "{\"base\": \"base.json\", \"gird\": {}}").unwrap();
        std::fs::write(tmp.path().join("base.json"), "{}").unwrap();
        let e = Sweep::load(&file).unwrap_err();
        assert!(matches!(e, Error::Spec { ref path, .. } if path == &file));
        assert_eq!(
            e.to_string(),
            format!(
                "sweep file {}: `gird`: unknown field `gird`, expected one of `name`, `base`, \
                 `set`, `variants`, `grid`, `seeds`, `eval`, `device`, `jobs`, `x_key`, `x_label`, \
                 `slurm` at line 1 column 28",
                file.display()
            )
        );
        std::fs::write(&file, "{\"base\": ").unwrap();
        let e = Sweep::load(&file).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "sweep file {} is not valid JSON: EOF",
                file.display()
            )),
            "{e}"
        );
        let e = Sweep::load(&tmp.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("reading sweep file "), "{e}");
    }

    #[test]
    fn the_shipped_sweep_files_parse() {
        for (file, runs) in [
            ("smoke.json", 4),
            ("iaf-depth.json", 4),
            ("seed-resnet-seeds.json", 3),
        ] {
            let s = Sweep::load(&dir().join(file)).unwrap();
            assert_eq!(s.runs().unwrap().len(), runs, "{file}");
        }
    }
}
