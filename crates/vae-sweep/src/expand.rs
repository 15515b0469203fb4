//! The expansion of a sweep into runs: variants × grid points × seeds, each with a folder name
//! made from its overrides (stable, so a second invocation finds the first's work), its setting
//! and its place on the plot's x axis.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::SpecError;
use crate::spec::{show, Axis, Override, Run, Sweep};

impl Sweep {
    /// Every run, in order: variants outermost, then grid axes in key order, seeds innermost.
    pub fn runs(&self) -> Result<Vec<Run>, SpecError> {
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
                return Err(SpecError::SharedFolder {
                    first,
                    second: r.index,
                    name: r.name.clone(),
                });
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::{json, Value};

    use super::*;
    use crate::spec::MAX_RUNS;

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/sweeps")
    }

    fn parse(v: Value) -> Result<Sweep, SpecError> {
        Sweep::from_value(&v, "test", &dir())
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
}
