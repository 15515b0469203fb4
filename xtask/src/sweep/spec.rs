//! Sweep files (`configs/sweeps/*.json`): parsing with messages that name the bad key, and the
//! expansion into runs with deterministic folder names.
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

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

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

fn show(v: &Value) -> String {
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
}

impl EvalSpec {
    /// The file `vae eval` writes into the run folder.
    pub fn output(&self) -> String {
        format!("eval-{}-test.json", self.method)
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

const TOP_KEYS: &[&str] = &[
    "name", "base", "set", "variants", "grid", "seeds", "eval", "device", "jobs", "x_key",
    "x_label", "slurm",
];

/// The most runs one sweep may expand into.
pub const MAX_RUNS: usize = 10_000;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<()> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            bail!(
                "unknown key `{at}{k}` (expected one of: {})",
                allowed.join(", ")
            );
        }
    }
    Ok(())
}

fn string(v: &Value, key: &str) -> Result<String> {
    match v {
        // A line break in `name` or a `slurm` value would end its `#SBATCH` or comment line and
        // run the rest as a command in the Slurm script (found by fuzz/ `sweep`).
        Value::String(s) if s.chars().any(char::is_control) => {
            bail!("`{key}`: {s:?} contains a control character such as a line break")
        }
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        other => bail!(
            "`{key}`: expected a non-empty string, found {}",
            type_name(other)
        ),
    }
}

fn uint(v: &Value, key: &str, min: u64) -> Result<u64> {
    match v.as_u64() {
        Some(n) if n >= min => Ok(n),
        _ => bail!("`{key}`: expected an integer >= {min}, found {v}"),
    }
}

fn config_key(k: &str, at: &str) -> Result<()> {
    let ok = !k.is_empty()
        && k.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !ok {
        bail!("`{at}`: `{k}` is not a config key (expected a dotted path like `train.epochs`)");
    }
    Ok(())
}

fn overrides(v: &Value, at: &str) -> Result<Vec<Override>> {
    let Value::Object(m) = v else {
        bail!(
            "`{at}`: expected an object of config keys and values, e.g. {{\"train.epochs\": 10}}, found {}",
            type_name(v)
        );
    };
    m.iter()
        .map(|(k, v)| {
            config_key(k, &format!("{at}.{k}"))?;
            Ok(Override {
                key: k.clone(),
                value: v.clone(),
            })
        })
        .collect()
}

impl Sweep {
    /// Reads and checks a sweep file.
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading sweep file {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("sweep file {} is not valid JSON", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into());
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_value(&value, &stem, dir)
            .with_context(|| format!("sweep file {}", path.display()))
    }

    /// Checks a sweep given as JSON; `base` is resolved against `dir`.
    pub fn from_value(value: &Value, default_name: &str, dir: &Path) -> Result<Sweep> {
        let Value::Object(top) = value else {
            bail!("expected a JSON object at the top level");
        };
        check_keys(top, TOP_KEYS, "")?;
        let name = match top.get("name") {
            Some(v) => string(v, "name")?,
            None => default_name.to_string(),
        };
        if name.contains('/') || name.starts_with('.') {
            bail!("`name`: {name:?} must not contain `/` or start with `.`");
        }
        let base = match top.get("base") {
            Some(v) => dir.join(string(v, "base")?),
            None => bail!("missing key `base`: the run config every run starts from"),
        };
        if !base.is_file() {
            bail!("`base`: {} does not exist", base.display());
        }
        let base = std::fs::canonicalize(&base)
            .with_context(|| format!("`base`: resolving {}", base.display()))?;
        let set = match top.get("set") {
            Some(v) => overrides(v, "set")?,
            None => Vec::new(),
        };
        let variants = match top.get("variants") {
            None => vec![Variant {
                label: None,
                x: None,
                set: Vec::new(),
            }],
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .enumerate()
                .map(|(i, v)| variant(v, &format!("variants[{i}]")))
                .collect::<Result<_>>()?,
            Some(other) => bail!(
                "`variants`: expected a non-empty array of {{\"label\", \"x\", \"set\"}} objects, found {}",
                if other.as_array().is_some() { "an empty array" } else { type_name(other) }
            ),
        };
        let grid = match top.get("grid") {
            None => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    let at = format!("grid.{k}");
                    config_key(k, &at)?;
                    match v {
                        Value::Array(a) if !a.is_empty() => Ok((k.clone(), a.clone())),
                        _ => bail!("`{at}`: expected a non-empty array of values"),
                    }
                })
                .collect::<Result<_>>()?,
            Some(other) => bail!(
                "`grid`: expected an object mapping config keys to arrays of values, found {}",
                type_name(other)
            ),
        };
        let seeds = match top.get("seeds") {
            None => None,
            Some(Value::Array(a)) if !a.is_empty() => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| uint(v, &format!("seeds[{i}]"), 0))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(_) => bail!("`seeds`: expected a non-empty array of integers"),
        };
        if let Some(s) = &seeds {
            let mut sorted = s.clone();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                bail!("`seeds`: seed {} is listed twice", w[0]);
            }
        }
        let eval = match top.get("eval") {
            None | Some(Value::Null) => None,
            Some(v) => Some(eval_spec(v)?),
        };
        let jobs = top
            .get("jobs")
            .map(|v| uint(v, "jobs", 1).map(|n| n as usize))
            .transpose()?;
        let device = match top.get("device") {
            Some(v) => string(v, "device")?,
            None => "cpu".into(),
        };
        let x_key = top.get("x_key").map(|v| string(v, "x_key")).transpose()?;
        if let Some(k) = &x_key {
            match grid.iter().find(|(g, _)| g == k) {
                Some((_, values)) if values.iter().all(Value::is_number) => {}
                Some(_) => bail!("`x_key`: the values of `grid.{k}` are not all numbers"),
                None => bail!("`x_key`: `{k}` is not a key of `grid`"),
            }
        }
        let x_label = top
            .get("x_label")
            .map(|v| string(v, "x_label"))
            .transpose()?;
        let slurm = match top.get("slurm") {
            None => SlurmSpec::default(),
            Some(v) => slurm_spec(v)?,
        };
        let sweep = Sweep {
            name,
            base,
            set,
            variants,
            grid,
            seeds,
            eval,
            device,
            jobs,
            x_key,
            x_label,
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
    fn check_run_count(&self) -> Result<()> {
        let factors = std::iter::once(("variants", self.variants.len()))
            .chain(self.grid.iter().map(|(k, v)| (k.as_str(), v.len())))
            .chain(self.seeds.as_ref().map(|s| ("seeds", s.len())));
        let mut total: usize = 1;
        let mut parts = Vec::new();
        for (what, n) in factors {
            parts.push(format!("{n} ({what})"));
            total = total.saturating_mul(n);
        }
        if total > MAX_RUNS {
            bail!(
                "the sweep has {} runs: {}, more than the {MAX_RUNS} a sweep may hold; split it \
                 into several sweep files",
                if total == usize::MAX {
                    "too many".to_string()
                } else {
                    total.to_string()
                },
                parts.join(" x ")
            );
        }
        Ok(())
    }

    /// A key may be set in one place only: common `set`, the variants, the grid, or `seeds`.
    fn check_conflicts(&self) -> Result<()> {
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
                    bail!("`{place}`: `{k}` is also set in `{other}`; set each key in one place")
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
                    bail!(
                        "`{ob}`: `{b}` lies inside `{a}`, which `{oa}` sets; set them in one place"
                    );
                }
            }
        }
        Ok(())
    }

    /// Every run, in order: variants outermost, then grid axes in file order, seeds innermost.
    pub fn runs(&self) -> Result<Vec<Run>> {
        let axis = self.axis_source();
        let short = short_keys(self);
        let mut points: Vec<Vec<(usize, &Value)>> = vec![Vec::new()];
        for (a, (_, values)) in self.grid.iter().enumerate() {
            points = points
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.push((a, v));
                        q
                    })
                })
                .collect();
        }
        let seeds: Vec<Option<u64>> = match &self.seeds {
            Some(s) => s.iter().map(|&s| Some(s)).collect(),
            None => vec![None],
        };
        let mut runs = Vec::new();
        let mut setting = 0;
        for variant in &self.variants {
            for point in &points {
                let mut overrides = variant.set.clone();
                let mut parts = Vec::new();
                let mut series = Vec::new();
                let vpart = match &variant.label {
                    Some(l) => l.clone(),
                    None => variant
                        .set
                        .iter()
                        .map(|o| format!("{}={}", short[&o.key], show(&o.value)))
                        .collect::<Vec<_>>()
                        .join(","),
                };
                if !vpart.is_empty() {
                    parts.push(vpart.clone());
                    if !matches!(axis, AxisSource::Variants) && self.variants.len() > 1 {
                        series.push(vpart);
                    }
                }
                let mut x = None;
                for &(a, v) in point {
                    let key = &self.grid[a].0;
                    overrides.push(Override {
                        key: key.clone(),
                        value: v.clone(),
                    });
                    let part = format!("{}={}", short[key], show(v));
                    parts.push(part.clone());
                    if axis == AxisSource::Grid(a) {
                        x = v.as_f64();
                    } else if self.grid[a].1.len() > 1 {
                        series.push(part);
                    }
                }
                let x = match axis {
                    AxisSource::Variants => variant.x.expect("checked: every variant has x"),
                    AxisSource::Grid(_) => x.expect("checked: the axis key is numeric"),
                    AxisSource::Settings => setting as f64,
                };
                let setting_label = if parts.is_empty() {
                    "base".to_string()
                } else {
                    parts.join(", ")
                };
                for seed in &seeds {
                    let mut name_parts = parts.clone();
                    if let Some(s) = seed {
                        name_parts.push(format!("seed={s}"));
                    }
                    let raw = if name_parts.is_empty() {
                        "run".to_string()
                    } else {
                        name_parts.join(",")
                    };
                    runs.push(Run {
                        index: runs.len(),
                        name: folder_name(&raw),
                        setting,
                        setting_label: setting_label.clone(),
                        overrides: overrides.clone(),
                        seed: *seed,
                        x,
                        series: series.join(", "),
                    });
                }
                setting += 1;
            }
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &runs {
            if let Some(&first) = seen.get(r.name.as_str()) {
                bail!(
                    "runs {first} and {} would share the folder `{}`: give the variants distinct labels or values",
                    r.index,
                    r.name
                );
            }
            seen.insert(&r.name, r.index);
        }
        Ok(runs)
    }

    fn axis_source(&self) -> AxisSource {
        if self.variants.len() > 1 && self.variants.iter().all(|v| v.x.is_some()) {
            return AxisSource::Variants;
        }
        if let Some(k) = &self.x_key {
            if let Some(a) = self.grid.iter().position(|(g, _)| g == k) {
                return AxisSource::Grid(a);
            }
        }
        for (a, (_, values)) in self.grid.iter().enumerate() {
            if values.len() > 1 && values.iter().all(Value::is_number) {
                return AxisSource::Grid(a);
            }
        }
        AxisSource::Settings
    }

    /// The plot's x axis.
    pub fn axis(&self, runs: &[Run]) -> Axis {
        match self.axis_source() {
            AxisSource::Variants => Axis::Numeric {
                label: self.x_label.clone().unwrap_or_else(|| "variant".into()),
            },
            AxisSource::Grid(a) => Axis::Numeric {
                label: self
                    .x_label
                    .clone()
                    .unwrap_or_else(|| self.grid[a].0.clone()),
            },
            AxisSource::Settings => {
                let mut labels: Vec<String> = Vec::new();
                for r in runs {
                    if labels.len() == r.setting {
                        labels.push(r.setting_label.clone());
                    }
                }
                Axis::Categorical { labels }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AxisSource {
    Variants,
    Grid(usize),
    Settings,
}

/// For folder names: each swept key by its last segment when that is unambiguous.
fn short_keys(s: &Sweep) -> BTreeMap<String, String> {
    let mut keys: Vec<&str> = s.grid.iter().map(|(k, _)| k.as_str()).collect();
    for v in &s.variants {
        keys.extend(v.set.iter().map(|o| o.key.as_str()));
    }
    keys.sort_unstable();
    keys.dedup();
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    keys.iter()
        .map(|k| {
            let clash = keys.iter().any(|o| o != k && last(o) == last(k));
            let short = if clash { k.to_string() } else { last(k) };
            (k.to_string(), short)
        })
        .collect()
}

/// A safe folder name: `[A-Za-z0-9._=,+-]` kept, anything else `_`; long names end in a hash.
pub fn folder_name(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=,+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = if clean.starts_with('.') {
        format!("_{clean}")
    } else {
        clean
    };
    if clean.len() <= 100 {
        return clean;
    }
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}-{:016x}", &clean[..80], hash)
}

fn variant(v: &Value, at: &str) -> Result<Variant> {
    let Value::Object(m) = v else {
        bail!(
            "`{at}`: expected an object like {{\"label\": \"iaf2\", \"x\": 2, \"set\": {{\"model.flow.layers\": 2}}}}, found {}",
            type_name(v)
        );
    };
    check_keys(m, &["label", "x", "set"], &format!("{at}."))?;
    let label = m
        .get("label")
        .map(|l| string(l, &format!("{at}.label")))
        .transpose()?;
    let x = match m.get("x") {
        None => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => bail!("`{at}.x`: expected a number, found {}", type_name(other)),
    };
    let set = match m.get("set") {
        Some(s) => overrides(s, &format!("{at}.set"))?,
        None => bail!("`{at}`: missing key `set` (the variant's overrides)"),
    };
    Ok(Variant { label, x, set })
}

fn eval_spec(v: &Value) -> Result<EvalSpec> {
    let Value::Object(m) = v else {
        bail!(
            "`eval`: expected an object like {{\"method\": \"is\", \"k\": 1000}} or null, found {}",
            type_name(v)
        );
    };
    check_keys(m, &["method", "k", "n", "args"], "eval.")?;
    let method = match m.get("method") {
        Some(v) => string(v, "eval.method")?,
        None => "is".into(),
    };
    if method != "is" && method != "ais" {
        bail!("`eval.method`: expected \"is\" or \"ais\" (a test NLL estimate), found {method:?}");
    }
    let k = m.get("k").map(|v| uint(v, "eval.k", 1)).transpose()?;
    if k.is_some() && method != "is" {
        bail!("`eval.k`: only the \"is\" method takes k; give AIS settings in `eval.args`");
    }
    let n = m.get("n").map(|v| uint(v, "eval.n", 1)).transpose()?;
    let args = match m.get("args") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, &format!("eval.args[{i}]")))
            .collect::<Result<_>>()?,
        Some(other) => bail!(
            "`eval.args`: expected an array of strings, found {}",
            type_name(other)
        ),
    };
    Ok(EvalSpec { method, k, n, args })
}

fn slurm_spec(v: &Value) -> Result<SlurmSpec> {
    let Value::Object(m) = v else {
        bail!("`slurm`: expected an object, found {}", type_name(v));
    };
    check_keys(
        m,
        &["partition", "cpus_per_task", "mem", "time", "gpus", "extra"],
        "slurm.",
    )?;
    let opt = |k: &str| -> Result<Option<String>> {
        m.get(k)
            .map(|v| string(v, &format!("slurm.{k}")))
            .transpose()
    };
    let mut s = SlurmSpec {
        partition: opt("partition")?,
        mem: opt("mem")?,
        time: opt("time")?,
        ..Default::default()
    };
    if let Some(v) = m.get("cpus_per_task") {
        s.cpus_per_task = uint(v, "slurm.cpus_per_task", 1)?;
    }
    if let Some(v) = m.get("gpus") {
        s.gpus = uint(v, "slurm.gpus", 0)?;
    }
    match m.get("extra") {
        None => {}
        Some(Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                let e = string(v, &format!("slurm.extra[{i}]"))?;
                if !e.starts_with('-') || e.contains('\n') {
                    bail!("`slurm.extra[{i}]`: expected an sbatch option like \"--account=ml\", found {e:?}");
                }
                s.extra.push(e);
            }
        }
        Some(other) => bail!(
            "`slurm.extra`: expected an array of sbatch options, found {}",
            type_name(other)
        ),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir() -> PathBuf {
        crate::project_root().join("configs/sweeps")
    }

    fn parse(v: Value) -> Result<Sweep> {
        Sweep::from_value(&v, "test", &dir())
    }

    fn err(v: Value) -> String {
        format!("{:#}", parse(v).unwrap_err())
    }

    #[test]
    fn grid_variants_and_seeds_expand_in_order_with_stable_names() {
        let s = parse(json!({
            "base": "../smoke.json",
            "set": {"train.epochs": 1},
            "variants": [
                {"label": "iaf0", "x": 0, "set": {"model.flow": null}},
                {"label": "iaf2", "x": 2, "set": {"model.flow.layers": 2}}
            ],
            "grid": {"train.warmup_epochs": [0, 1]},
            "seeds": [3, 4]
        }))
        .unwrap();
        let runs = s.runs().unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "iaf0,warmup_epochs=0,seed=3",
                "iaf0,warmup_epochs=0,seed=4",
                "iaf0,warmup_epochs=1,seed=3",
                "iaf0,warmup_epochs=1,seed=4",
                "iaf2,warmup_epochs=0,seed=3",
                "iaf2,warmup_epochs=0,seed=4",
                "iaf2,warmup_epochs=1,seed=3",
                "iaf2,warmup_epochs=1,seed=4",
            ]
        );
        let settings: Vec<usize> = runs.iter().map(|r| r.setting).collect();
        assert_eq!(settings, [0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(
            runs[5].set_args(&s),
            [
                "train.epochs=1",
                "model.flow.layers=2",
                "train.warmup_epochs=0",
                "train.seed=4"
            ]
        );
        assert_eq!(runs[1].set_args(&s)[1], "model.flow=null");
        // x comes from the variants; the grid key becomes the series.
        assert_eq!(runs[6].x, 2.0);
        assert_eq!(runs[6].series, "warmup_epochs=1");
        assert_eq!(
            s.axis(&runs),
            Axis::Numeric {
                label: "variant".into()
            }
        );
        // Parsing again gives the same names: re-runs find their folders.
        assert_eq!(parse_again(&s), runs);
    }

    fn parse_again(s: &Sweep) -> Vec<Run> {
        s.clone().runs().unwrap()
    }

    #[test]
    fn a_numeric_grid_key_is_the_x_axis_and_strings_are_set_as_json() {
        let s = parse(json!({
            "base": "../smoke.json",
            "grid": {"model.latent": [8, 16], "data.dataset": ["mnist", "fashion-mnist"]},
        }))
        .unwrap();
        let runs = s.runs().unwrap();
        assert_eq!(runs.len(), 4);
        // Grid keys in alphabetical order (JSON objects have none), values in file order.
        assert_eq!(runs[0].name, "dataset=mnist,latent=8");
        assert_eq!(
            runs[0].set_args(&s),
            ["data.dataset=\"mnist\"", "model.latent=8"]
        );
        assert_eq!(runs[3].x, 16.0);
        assert_eq!(runs[3].series, "dataset=fashion-mnist");
        assert_eq!(runs[3].seed, None);
        assert_eq!(
            s.axis(&runs),
            Axis::Numeric {
                label: "model.latent".into()
            }
        );
        // Seeds only: one categorical setting.
        let s = parse(json!({"base": "../smoke.json", "seeds": [0, 1, 2]})).unwrap();
        let runs = s.runs().unwrap();
        assert_eq!(runs[2].name, "seed=2");
        assert_eq!(
            s.axis(&runs),
            Axis::Categorical {
                labels: vec!["base".into()]
            }
        );
    }

    #[test]
    fn bad_files_name_the_key() {
        for (file, expected) in [
            (
                json!({"base": "../smoke.json", "gird": {}}),
                "unknown key `gird`",
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
                "unknown key `eval.kk`",
            ),
            (
                json!({"base": "../smoke.json", "variants": [{"x": 1}]}),
                "`variants[0]`: missing key `set`",
            ),
            (
                json!({"base": "../smoke.json", "variants": [{"set": {}, "lable": "a"}]}),
                "unknown key `variants[0].lable`",
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
                "unknown key `slurm.partion`",
            ),
            (
                json!({"base": "../smoke.json", "jobs": 0}),
                "`jobs`: expected an integer >= 1, found 0",
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

    #[test]
    fn a_sweep_may_hold_exactly_max_runs() {
        let s = parse(json!({"base": "../smoke.json", "grid": {
            "model.latent": (1..=100).collect::<Vec<_>>(),
            "train.epochs": (1..=100).collect::<Vec<_>>(),
        }}))
        .unwrap();
        assert_eq!(s.runs().unwrap().len(), MAX_RUNS);
    }

    #[test]
    fn folder_names_are_safe_and_bounded() {
        assert_eq!(folder_name("a b/c,x=1"), "a_b_c,x=1");
        assert_eq!(folder_name(".hidden"), "_.hidden");
        let long = "k=".repeat(80);
        let f = folder_name(&long);
        assert_eq!(f.len(), 97);
        assert_eq!(f, folder_name(&long));
        assert_ne!(f, folder_name(&(long + "x")));
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
