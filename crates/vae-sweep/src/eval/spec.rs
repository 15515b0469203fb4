//! Eval files (`configs/eval/*.json`): one or a few `vae eval` evaluations of a trained run, each
//! cut into shards.
//!
//! Read as the sweep files are (`crate::file`): serde structs with `deny_unknown_fields` through
//! `serde_path_to_error`, leaf types whose own checks give the messages (`expected an integer >=
//! 1, found 0`), duplicate keys refused, strings without control characters, `null` refused
//! where a value is expected. Checks across keys (a key the method does not take, `replicates`
//! above `k`, `max_rows` below `chains`, two evaluations writing the same files) follow, each
//! naming the key's path (`evals[1].k`).
//!
//! ```json
//! {
//!   "run": "runs/mnist-mlp-iaf-cpu",
//!   "shards": 10,
//!   "jobs": 2,
//!   "slurm": { "cpus_per_task": 4, "time": "1-00:00:00" },
//!   "evals": [
//!     { "method": "ais", "split": "test", "steps": 10000, "chains": 16, "leapfrog": 10 },
//!     { "method": "bdmc", "n": 100, "steps": 10000, "chains": 16, "leapfrog": 10,
//!       "max_rows": 400, "shards": 4 }
//!   ]
//! }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use crate::file::{
    present, type_name, Described, Jobs, List, ListKind, Number, Obj, RawSlurm, Text, UInt,
};
use crate::spec::SlurmSpec;

/// The most shards one evaluation may be cut into.
pub const MAX_SHARDS: u64 = 10_000;

/// What `vae eval` uses when a key is absent, for the checks across keys: `--k`.
const DEFAULT_K: u64 = 1000;
/// `--chains`.
const DEFAULT_CHAINS: u64 = 8;
/// `--max-rows` of AIS and BDMC.
const DEFAULT_AIS_MAX_ROWS: u64 = 3200;

/// What is wrong with an eval file, naming the key by its path in the file (`evals[0].steps`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A value of the wrong type or range, an unknown, missing or duplicate key, or keys that
    /// contradict each other: `key` is its path in the file (empty for the top level), `message`
    /// says what was found and what is valid (with the line and column when parsed from text).
    #[error("{}{message}", if key.is_empty() { String::new() } else { format!("`{key}`: ") })]
    Invalid {
        /// Path of the key, e.g. `evals[1].steps`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The text is not JSON.
    #[error("not valid JSON: {error}")]
    NotJson {
        /// serde_json's reason, with line and column.
        error: serde_json::Error,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> FileError {
    FileError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A `vae eval` estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Importance sampling.
    Is,
    /// Annealed importance sampling.
    Ais,
    /// Bidirectional Monte Carlo on simulated data.
    Bdmc,
}

impl Method {
    /// `is`, `ais` or `bdmc`: the `--method` value and the `<method>` of the file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Is => "is",
            Method::Ais => "ais",
            Method::Bdmc => "bdmc",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `evals`: a `vae eval` with its settings. `None` leaves `vae eval`'s default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvalEntry {
    /// `--method`.
    pub method: Option<Method>,
    /// Shards of this evaluation, instead of the file's `shards` (and `--shards`).
    pub shards: Option<usize>,
    /// `--split`: `train`, `validation` or `test` (default `test`).
    pub split: Option<String>,
    /// `--checkpoint`: `best` or `last`.
    pub checkpoint: Option<String>,
    /// `--n`: only the first N images (BDMC: N simulated ones).
    pub n: Option<u64>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--k` (IS).
    pub k: Option<u64>,
    /// `--steps` (AIS, BDMC).
    pub steps: Option<u64>,
    /// `--chains` (AIS, BDMC).
    pub chains: Option<u64>,
    /// `--leapfrog` (AIS, BDMC).
    pub leapfrog: Option<u64>,
    /// `--start`: `prior`, `base` or `posterior` (AIS, BDMC).
    pub start: Option<String>,
    /// `--step-size` (AIS, BDMC).
    pub step_size: Option<f64>,
    /// `--adaptation`: `global`, `per-example`, `per-chain` or `fixed` (AIS, BDMC).
    pub adaptation: Option<String>,
    /// `--target-acceptance` (AIS, BDMC).
    pub target_acceptance: Option<f64>,
    /// `--momentum-refresh` (AIS, BDMC).
    pub momentum_refresh: Option<f64>,
    /// `--max-rows`.
    pub max_rows: Option<u64>,
    /// `--replicates` (IS).
    pub replicates: Option<u64>,
    /// `--check-with-ais` (IS).
    pub check_with_ais: bool,
    /// Further `vae eval` flags, passed on as they are after the others: a sweep file's
    /// `eval.args` (an eval file has no such key).
    pub args: Vec<String>,
}

impl EvalEntry {
    /// The estimator (`is` when an entry built in code leaves it out; a file must name it).
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Is)
    }

    /// The split evaluated: `split`, else `test`.
    pub fn split(&self) -> &str {
        self.split.as_deref().unwrap_or("test")
    }

    /// `<method>-<split>`, e.g. `ais-test`: the evaluation's name in messages and file names.
    pub fn name(&self) -> String {
        format!("{}-{}", self.method(), self.split())
    }

    /// The `vae eval` flags of the settings, `--method` and `--split` first, then the others in
    /// the order of [`EvalEntry`]'s fields; numbers as JSON writes them, which `vae` parses
    /// back exactly.
    pub fn flags(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--method".into(),
            self.method().as_str().into(),
            "--split".into(),
            self.split().into(),
        ];
        let mut push = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(flag.into());
                a.push(v);
            }
        };
        push("--checkpoint", self.checkpoint.clone());
        push("--n", self.n.map(|v| v.to_string()));
        push("--seed", self.seed.map(|v| v.to_string()));
        push("--k", self.k.map(|v| v.to_string()));
        push("--steps", self.steps.map(|v| v.to_string()));
        push("--chains", self.chains.map(|v| v.to_string()));
        push("--leapfrog", self.leapfrog.map(|v| v.to_string()));
        push("--start", self.start.clone());
        push("--step-size", self.step_size.map(|v| v.to_string()));
        push("--adaptation", self.adaptation.clone());
        push(
            "--target-acceptance",
            self.target_acceptance.map(|v| v.to_string()),
        );
        push(
            "--momentum-refresh",
            self.momentum_refresh.map(|v| v.to_string()),
        );
        push("--max-rows", self.max_rows.map(|v| v.to_string()));
        push("--replicates", self.replicates.map(|v| v.to_string()));
        if self.check_with_ais {
            a.push("--check-with-ais".into());
        }
        a.extend(self.args.iter().cloned());
        a
    }

    /// AIS and BDMC: images that share an adapted step size (`max_rows / chains`, as vae-eval's
    /// `AisConfig::examples_per_group`), the unit a shard is cut at. `None` for IS, whose unit
    /// (a model call) can depend on the model.
    pub fn images_per_group(&self) -> Option<u64> {
        match self.method() {
            Method::Is => None,
            Method::Ais | Method::Bdmc => {
                let chains = self.chains.unwrap_or(DEFAULT_CHAINS);
                Some((self.max_rows.unwrap_or(DEFAULT_AIS_MAX_ROWS) / chains).max(1))
            }
        }
    }

    /// A short description for people, e.g. `ais on test, 10000 steps, 16 chains`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} on {}", self.method(), self.split());
        let mut add = |what: String| {
            s += ", ";
            s += &what;
        };
        if let Some(n) = self.n {
            add(format!("{n} images"));
        }
        if let Some(k) = self.k {
            add(format!("k={k}"));
        }
        if let Some(v) = self.steps {
            add(format!("{v} steps"));
        }
        if let Some(v) = self.chains {
            add(format!("{v} chains"));
        }
        if let Some(v) = self.leapfrog {
            add(format!("{v} leapfrog"));
        }
        s
    }
}

/// A parsed, checked eval file.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalFile {
    /// The run folder evaluated, relative to the repository root (or absolute).
    pub run: PathBuf,
    /// Shards per evaluation, unless an entry says otherwise.
    pub shards: usize,
    /// Local backend: shards evaluated at a time when `--jobs` is not given.
    pub jobs: Option<usize>,
    /// `vae eval --device` (default `cpu`).
    pub device: String,
    /// Slurm resources of each array task (the sweep files' `slurm` section).
    pub slurm: SlurmSpec,
    /// The evaluations, in file order.
    pub evals: Vec<EvalEntry>,
}

impl EvalFile {
    /// Reads and checks an eval file.
    pub fn load(path: &Path) -> Result<EvalFile, super::Error> {
        let text = vae_io::read_settings_text(path).map_err(|error| super::Error::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let path = path.to_path_buf();
        Self::parse(&text).map_err(|error| match error {
            FileError::NotJson { error } => super::Error::NotJson { path, error },
            error => super::Error::File { path, error },
        })
    }

    /// Checks an eval file given as JSON text.
    pub fn parse(text: &str) -> Result<EvalFile, FileError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let raw =
            serde_path_to_error::deserialize::<_, Obj<RawEvalFile>>(&mut de).map_err(|e| {
                if e.inner().is_data() {
                    let key = e.path().to_string();
                    invalid(
                        if key == "." { String::new() } else { key },
                        e.into_inner().to_string(),
                    )
                } else {
                    FileError::NotJson {
                        error: e.into_inner(),
                    }
                }
            })?;
        de.end().map_err(|error| FileError::NotJson { error })?;
        Self::from_raw(raw.0)
    }

    /// The checks across keys, after each key's own.
    fn from_raw(raw: RawEvalFile) -> Result<EvalFile, FileError> {
        let run = raw.run.ok_or_else(|| {
            invalid(
                "",
                "missing key `run`: the run folder to evaluate, relative to the repository root",
            )
        })?;
        let shards = raw.shards.ok_or_else(|| {
            invalid(
                "",
                "missing key `shards`: how many shards each evaluation is cut into",
            )
        })?;
        let evals = raw.evals.ok_or_else(|| {
            invalid(
                "",
                "missing key `evals`: the evaluations, e.g. [{\"method\": \"ais\", \"steps\": 1000}]",
            )
        })?;
        let mut out: Vec<EvalEntry> = Vec::new();
        for (i, Obj(e)) in evals.0.into_iter().enumerate() {
            let entry = e.check(i)?;
            if let Some(j) = out.iter().position(|o| o.name() == entry.name()) {
                return Err(invalid(
                    format!("evals[{i}]"),
                    format!(
                        "evaluates {} on the {} split as `evals[{j}]` does: both would write \
                         eval-{}.json in the run folder; put them in two runs' eval files, or \
                         evaluate another split",
                        entry.method(),
                        entry.split(),
                        entry.name()
                    ),
                ));
            }
            out.push(entry);
        }
        let slurm = SlurmSpec::from_raw(raw.slurm);
        Ok(EvalFile {
            run: PathBuf::from(run.0),
            shards: shards.0 as usize,
            jobs: raw.jobs.map(|n| n.0 as usize),
            device: raw.device.map_or_else(|| "cpu".to_string(), |t| t.0),
            slurm,
            evals: out,
        })
    }
}

/// The names a string key accepts, for [`OneOf`].
pub(crate) trait Choices {
    /// The valid values.
    const VALUES: &'static [&'static str];
}

/// `"a", "b" or "c"`.
fn either(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// A string that is one of `C::VALUES`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OneOf<C>(pub String, PhantomData<C>);

impl<'de, C: Choices> Deserialize<'de> for OneOf<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if C::VALUES.contains(&s.as_str()) => Ok(OneOf(s, PhantomData)),
            Value::String(s) => Err(de::Error::custom(format_args!(
                "expected {}, found {s:?}",
                either(C::VALUES)
            ))),
            other => Err(de::Error::custom(format_args!(
                "expected {}, found {}",
                either(C::VALUES),
                type_name(&other)
            ))),
        }
    }
}

macro_rules! choices {
    ($($name:ident => [$($v:literal),*]),* $(,)?) => {
        $(
            #[derive(Debug, Clone, PartialEq)]
            pub(crate) struct $name;
            impl Choices for $name {
                const VALUES: &'static [&'static str] = &[$($v),*];
            }
        )*
    };
}

choices! {
    Methods => ["is", "ais", "bdmc"],
    Splits => ["train", "validation", "test"],
    Checkpoints => ["best", "last"],
    Starts => ["prior", "base", "posterior"],
    Adaptations => ["global", "per-example", "per-chain", "fixed"],
}

/// A number that `ok` accepts; `what` says which, for the message.
macro_rules! bounded {
    ($($(#[$doc:meta])* $name:ident: $ok:expr, $what:literal;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq)]
            pub(crate) struct $name(pub f64);
            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let Number(x) = Number::deserialize(d)?;
                    let ok: fn(f64) -> bool = $ok;
                    if ok(x) {
                        Ok($name(x))
                    } else {
                        Err(de::Error::custom(format_args!("expected {}, found {x}", $what)))
                    }
                }
            }
        )*
    };
}

bounded! {
    /// `step_size`: within vae-eval's default step-size bounds, which `vae eval` keeps.
    StepSize: |x| (1e-4..=0.5).contains(&x), "a number in [0.0001, 0.5] (the HMC step size's bounds)";
    /// `target_acceptance`.
    Acceptance: |x| x > 0.0 && x < 1.0, "a number in (0, 1)";
    /// `momentum_refresh`.
    Refresh: |x| (0.0..1.0).contains(&x), "a number in [0, 1) (0: a full refresh, the original)";
}

/// `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Flag(b)),
            other => Err(de::Error::custom(format_args!(
                "expected true or false, found {}",
                type_name(&other)
            ))),
        }
    }
}

/// A shard count: an integer in 1..=[`MAX_SHARDS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ShardCount(pub u64);

impl<'de> Deserialize<'de> for ShardCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v.as_u64() {
            Some(n) if (1..=MAX_SHARDS).contains(&n) => Ok(ShardCount(n)),
            _ => Err(de::Error::custom(format_args!(
                "expected an integer from 1 to {MAX_SHARDS}, found {v}"
            ))),
        }
    }
}

/// `evals`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalList;

impl ListKind for EvalList {
    const EXPECTED: &'static str =
        "a non-empty array of evaluations like {\"method\": \"ais\", \"steps\": 1000}";
    const NON_EMPTY: bool = true;
}

/// The eval file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvalFile {
    #[serde(default, deserialize_with = "present")]
    pub run: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub shards: Option<ShardCount>,
    #[serde(default, deserialize_with = "present")]
    pub jobs: Option<Jobs>,
    #[serde(default, deserialize_with = "present")]
    pub device: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub slurm: Option<Obj<RawSlurm>>,
    #[serde(default, deserialize_with = "present")]
    pub evals: Option<List<Obj<RawEvalEntry>, EvalList>>,
}

impl Described for RawEvalFile {
    const EXPECTED: &'static str = "a JSON object at the top level";
}

/// One entry of `evals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvalEntry {
    #[serde(default, deserialize_with = "present")]
    pub method: Option<OneOf<Methods>>,
    #[serde(default, deserialize_with = "present")]
    pub shards: Option<ShardCount>,
    #[serde(default, deserialize_with = "present")]
    pub split: Option<OneOf<Splits>>,
    #[serde(default, deserialize_with = "present")]
    pub checkpoint: Option<OneOf<Checkpoints>>,
    #[serde(default, deserialize_with = "present")]
    pub n: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub seed: Option<UInt<0>>,
    #[serde(default, deserialize_with = "present")]
    pub k: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub steps: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub chains: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub leapfrog: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub start: Option<OneOf<Starts>>,
    #[serde(default, deserialize_with = "present")]
    pub step_size: Option<StepSize>,
    #[serde(default, deserialize_with = "present")]
    pub adaptation: Option<OneOf<Adaptations>>,
    #[serde(default, deserialize_with = "present")]
    pub target_acceptance: Option<Acceptance>,
    #[serde(default, deserialize_with = "present")]
    pub momentum_refresh: Option<Refresh>,
    #[serde(default, deserialize_with = "present")]
    pub max_rows: Option<UInt<1>>,
    #[serde(default, deserialize_with = "present")]
    pub replicates: Option<UInt<2>>,
    #[serde(default, deserialize_with = "present")]
    pub check_with_ais: Option<Flag>,
}

impl Described for RawEvalEntry {
    const EXPECTED: &'static str =
        "an object like {\"method\": \"ais\", \"steps\": 1000, \"chains\": 16}";
}

impl RawEvalEntry {
    /// The checks across the entry's keys; `i` is its place in `evals`.
    fn check(self, i: usize) -> Result<EvalEntry, FileError> {
        let key = |k: &str| format!("evals[{i}].{k}");
        let method = match self.method.as_ref().map(|m| m.0.as_str()) {
            Some("is") => Method::Is,
            Some("ais") => Method::Ais,
            Some("bdmc") => Method::Bdmc,
            _ => {
                return Err(invalid(
                    format!("evals[{i}]"),
                    "missing key `method`: \"is\", \"ais\" or \"bdmc\"",
                ))
            }
        };
        let is_only = [
            ("k", self.k.is_some()),
            ("replicates", self.replicates.is_some()),
            ("check_with_ais", self.check_with_ais.is_some()),
        ];
        let ais_only = [
            ("steps", self.steps.is_some()),
            ("chains", self.chains.is_some()),
            ("leapfrog", self.leapfrog.is_some()),
            ("start", self.start.is_some()),
            ("step_size", self.step_size.is_some()),
            ("adaptation", self.adaptation.is_some()),
            ("target_acceptance", self.target_acceptance.is_some()),
            ("momentum_refresh", self.momentum_refresh.is_some()),
        ];
        if method != Method::Is {
            if let Some((k, _)) = is_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key(k),
                    format!("only the \"is\" method takes {k}, not \"{method}\""),
                ));
            }
        } else if let Some((k, _)) = ais_only.iter().find(|(_, set)| *set) {
            return Err(invalid(
                key(k),
                format!("only the \"ais\" and \"bdmc\" methods take {k}, not \"is\""),
            ));
        }
        let entry = EvalEntry {
            method: Some(method),
            shards: self.shards.map(|s| s.0 as usize),
            split: self.split.map(|s| s.0),
            checkpoint: self.checkpoint.map(|s| s.0),
            n: self.n.map(|v| v.0),
            seed: self.seed.map(|v| v.0),
            k: self.k.map(|v| v.0),
            steps: self.steps.map(|v| v.0),
            chains: self.chains.map(|v| v.0),
            leapfrog: self.leapfrog.map(|v| v.0),
            start: self.start.map(|s| s.0),
            step_size: self.step_size.map(|v| v.0),
            adaptation: self.adaptation.map(|s| s.0),
            target_acceptance: self.target_acceptance.map(|v| v.0),
            momentum_refresh: self.momentum_refresh.map(|v| v.0),
            max_rows: self.max_rows.map(|v| v.0),
            replicates: self.replicates.map(|v| v.0),
            check_with_ais: self.check_with_ais.is_some_and(|f| f.0),
            args: Vec::new(),
        };
        if let Some(r) = entry.replicates {
            let k = entry.k.unwrap_or(DEFAULT_K);
            if r > k {
                return Err(invalid(
                    key("replicates"),
                    format!("expected an integer from 2 to k ({k}), found {r}"),
                ));
            }
        }
        if method != Method::Is {
            let chains = entry.chains.unwrap_or(DEFAULT_CHAINS);
            if let Some(rows) = entry.max_rows.filter(|&r| r < chains) {
                return Err(invalid(
                    key("max_rows"),
                    format!(
                        "expected an integer >= chains ({chains}): a model call holds at least \
                         one image's chains, found {rows}"
                    ),
                ));
            }
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        EvalFile::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn flags_follow_the_keys() {
        let f = EvalFile::parse(
            r#"{"run": "runs/x", "shards": 4, "evals": [
                {"method": "ais", "steps": 100, "chains": 4, "leapfrog": 2, "start": "base",
                 "step_size": 0.05, "adaptation": "per-chain", "target_acceptance": 0.7,
                 "momentum_refresh": 0.5, "max_rows": 40, "seed": 3, "n": 12,
                 "checkpoint": "last", "split": "validation", "shards": 2},
                {"method": "is", "k": 500, "replicates": 5, "check_with_ais": true}
            ]}"#,
        )
        .unwrap();
        assert_eq!(f.shards, 4);
        assert_eq!(f.device, "cpu");
        assert_eq!(f.slurm, SlurmSpec::default());
        let ais = &f.evals[0];
        assert_eq!(ais.name(), "ais-validation");
        assert_eq!(ais.shards, Some(2));
        assert_eq!(ais.images_per_group(), Some(10));
        assert_eq!(
            ais.flags().join(" "),
            "--method ais --split validation --checkpoint last --n 12 --seed 3 --steps 100 \
             --chains 4 --leapfrog 2 --start base --step-size 0.05 --adaptation per-chain \
             --target-acceptance 0.7 --momentum-refresh 0.5 --max-rows 40"
        );
        assert_eq!(
            f.evals[1].flags().join(" "),
            "--method is --split test --k 500 --replicates 5 --check-with-ais"
        );
        assert_eq!(f.evals[1].images_per_group(), None);
    }

    #[test]
    fn bad_files_name_the_key() {
        let mut wrong = Vec::new();
        let base = r#""run": "runs/x", "shards": 4"#;
        for (file, expected) in [
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "stpes": 10}}]}}"#),
             "`evals[0].stpes`: unknown field `stpes`, expected one of `method`, `shards`, `split`"),
            (format!(r#"{{{base}, "evals": [{{"method": "mcmc"}}]}}"#),
             "`evals[0].method`: expected \"is\", \"ais\" or \"bdmc\", found \"mcmc\" at line 1"),
            (format!(r#"{{{base}, "evals": [{{"method": 3}}]}}"#),
             "`evals[0].method`: expected \"is\", \"ais\" or \"bdmc\", found a number"),
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "steps": 0}}]}}"#),
             "`evals[0].steps`: expected an integer >= 1, found 0"),
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "step_size": 2}}]}}"#),
             "`evals[0].step_size`: expected a number in [0.0001, 0.5] (the HMC step size's bounds), found 2"),
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "target_acceptance": 1}}]}}"#),
             "`evals[0].target_acceptance`: expected a number in (0, 1), found 1"),
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "momentum_refresh": -0.5}}]}}"#),
             "`evals[0].momentum_refresh`: expected a number in [0, 1)"),
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "adaptation": "per_chain"}}]}}"#),
             "`evals[0].adaptation`: expected \"global\", \"per-example\", \"per-chain\" or \"fixed\", found \"per_chain\""),
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "start": "posterior "}}]}}"#),
             "`evals[0].start`: expected \"prior\", \"base\" or \"posterior\""),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "split": "valid"}}]}}"#),
             "`evals[0].split`: expected \"train\", \"validation\" or \"test\", found \"valid\""),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "checkpoint": "first"}}]}}"#),
             "`evals[0].checkpoint`: expected \"best\" or \"last\", found \"first\""),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "k": "100"}}]}}"#),
             "`evals[0].k`: expected an integer >= 1, found \"100\""),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "check_with_ais": 1}}]}}"#),
             "`evals[0].check_with_ais`: expected true or false, found a number"),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "replicates": 1}}]}}"#),
             "`evals[0].replicates`: expected an integer >= 2, found 1"),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "k": 100, "replicates": 200}}]}}"#),
             "`evals[0].replicates`: expected an integer from 2 to k (100), found 200"),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "seed": -1}}]}}"#),
             "`evals[0].seed`: expected an integer >= 0, found -1"),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "n": null}}]}}"#),
             "`evals[0].n`: expected an integer >= 1, found null"),
            (format!(r#"{{{base}, "evals": [{{"method": "ais", "k": 10}}]}}"#),
             "`evals[0].k`: only the \"is\" method takes k, not \"ais\""),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "steps": 10}}]}}"#),
             "`evals[0].steps`: only the \"ais\" and \"bdmc\" methods take steps, not \"is\""),
            (format!(r#"{{{base}, "evals": [{{"method": "bdmc", "chains": 16, "max_rows": 8}}]}}"#),
             "`evals[0].max_rows`: expected an integer >= chains (16): a model call holds at least one image's chains, found 8"),
            (format!(r#"{{{base}, "evals": [{{"steps": 10}}]}}"#),
             "`evals[0]`: missing key `method`"),
            (format!(r#"{{{base}, "evals": [{{"method": "is"}}, {{"method": "ais"}}, {{"method": "is", "k": 5}}]}}"#),
             "`evals[2]`: evaluates is on the test split as `evals[0]` does"),
            (format!(r#"{{{base}, "evals": []}}"#), "`evals`: expected a non-empty array of evaluations"),
            (format!(r#"{{{base}, "evals": {{"method": "is"}}}}"#), "`evals`: expected a non-empty array of evaluations like {\"method\": \"ais\", \"steps\": 1000}, found an object"),
            (format!(r#"{{{base}, "evals": ["is"]}}"#), "`evals[0]`: expected an object like {\"method\": \"ais\""),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "method": "ais"}}]}}"#), "`evals[0]`: duplicate field `method`"),
            (format!(r#"{{{base}, "evals": [{{"method": "is", "shards": 0}}]}}"#), "`evals[0].shards`: expected an integer from 1 to 10000, found 0"),
            (r#"{"run": "runs/x", "shards": 10001, "evals": [{"method": "is"}]}"#.into(), "`shards`: expected an integer from 1 to 10000, found 10001"),
            (r#"{"run": "runs/x", "shards": 2, "jobs": 0, "evals": [{"method": "is"}]}"#.into(), "`jobs`: expected an integer from 1 to 256, found 0"),
            (r#"{"run": "runs/x", "shards": 2, "slurm": {"cpus": 2}, "evals": [{"method": "is"}]}"#.into(), "`slurm.cpus`: unknown field `cpus`, expected one of `partition`"),
            (r#"{"run": "runs/x", "shards": 2, "slurm": {"extra": ["x"]}, "evals": [{"method": "is"}]}"#.into(), "`slurm.extra[0]`: expected an sbatch option"),
            (r#"{"run": "runs/x\ny", "shards": 2, "evals": [{"method": "is"}]}"#.into(), "`run`: \"runs/x\\ny\" contains a control character"),
            (r#"{"run": "runs/x", "shards": 2, "evals": [{"method": "is"}], "run": "y"}"#.into(), "duplicate field `run`"),
            (r#"{"shards": 2, "evals": [{"method": "is"}]}"#.into(), "missing key `run`"),
            (r#"{"run": "runs/x", "evals": [{"method": "is"}]}"#.into(), "missing key `shards`"),
            (r#"{"run": "runs/x", "shards": 2}"#.into(), "missing key `evals`"),
            (r#"{"run": "runs/x", "shards": 2, "eval": []}"#.into(), "`eval`: unknown field `eval`, expected one of `run`, `shards`, `jobs`, `device`, `slurm`, `evals`"),
            (r#"[]"#.into(), "expected a JSON object at the top level, found an array"),
            (r#"{"run": "#.into(), "not valid JSON: EOF while parsing"),
        ] {
            let e = err(&file);
            if !e.contains(expected) {
                wrong.push(format!("{file}\n  got:  {e}\n  want: {expected}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_shipped_eval_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                EvalFile::load(&p).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 2, "{seen} eval files in {}", dir.display());
    }
}
