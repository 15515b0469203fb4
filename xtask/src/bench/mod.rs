//! `cargo xtask bench`: flowvae beside a PyTorch eager implementation of the same models, in one
//! run, written to `BENCHMARKS.md` and `BENCHMARKS.json`.
//!
//! Each figure comes from its own process, so its peak memory is its own: `vae bench --phase P`
//! (hidden subcommand of the release binary) for flowvae, `benches/reference/flowvae_ref.py bench
//! --phase P` for PyTorch, on the checkpoint and batches that `vae bench --phase export` wrote
//! for that config, with the same threads. PyTorch comes from `<cache>/torch-python`, a full
//! `torch==2.11.0` install (about 4 GB with its CUDA wheels, which `import torch` needs even on
//! a CPU) made by pip the first time; the bootstrap's minimal libtorch cannot be imported.
//!
//! `--gpu-kit` instead builds what `scripts/gpu-check.sh` needs on a GPU machine that has no Rust
//! and no network: the `vae` binary with the `cuda` feature, stripped, and gzipped MNIST, in
//! `target/gpu-kit`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::bootstrap::{self, Layout, TORCH_VERSION};

mod condition;
mod render;
pub use condition::{BusyProcess, Condition};
pub use render::{render, render_run};

/// Marker written into the torch install once `import torch` worked there; the ELBO test of
/// the reference (`tests/bench_reference.rs`) looks for it.
pub const IMPORTABLE_MARKER: &str = ".flowvae-importable";
const TORCH_FREE_BYTES: u64 = 8 << 30;

/// What `cargo xtask bench` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Few repeats and images (a few minutes on 2 cores).
    pub quick: bool,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Threads for both implementations [default: the machine's cores].
    pub threads: Option<usize>,
    /// Only the rows whose key contains one of these.
    pub only: Vec<String>,
    /// Rounds per phase, the two implementations alternating [default: 2 quick, 3 full].
    pub rounds: Option<usize>,
    /// Build the GPU kit instead of benchmarking.
    pub gpu_kit: bool,
    /// Rewrite BENCHMARKS.md and .json from the CPU results in BENCHMARKS.json and
    /// benches/gpu-results.json, measuring nothing.
    pub render_only: bool,
}

/// One row of the tables: a config and how much of it to measure.
#[derive(Debug, Clone)]
pub struct Row {
    /// Short name.
    pub key: &'static str,
    /// Table label.
    pub title: &'static str,
    /// Config file, relative to the repo root.
    pub config: &'static str,
    /// Untimed and timed training steps.
    pub train: (usize, usize),
    /// IS test images.
    pub is_images: usize,
    /// AIS test images and schedule points.
    pub ais: (usize, usize),
    /// Target ratio flowvae / PyTorch.
    pub target: f64,
    /// Target ratio of the training step, where it differs (the ResNet step on CUDA).
    pub target_step: f64,
    /// The conditions it is measured under on the CPU; the first one fills the main tables.
    pub conditions: &'static [Condition],
}

/// The main tables' condition: both sides with the same threads, workers sleeping.
const EQUAL_ONLY: &[Condition] = &[Condition::EqualPassive];

/// The benchmark rows for a mode and device (the CPU's heavy rows measure little in quick mode).
pub fn rows(quick: bool, cuda: bool) -> Vec<Row> {
    fn choose<T>(quick: bool, cuda: bool, q: T, f: T, c: T) -> T {
        if cuda {
            c
        } else if quick {
            q
        } else {
            f
        }
    }
    vec![
        Row {
            key: "cpu-default",
            title: "CPU default (MLP 2×500, IAF 2×[320, 320], D = 32)",
            config: "configs/mnist-mlp-iaf-cpu.json",
            train: choose(quick, cuda, (2, 10), (3, 30), (5, 30)),
            is_images: choose(quick, cuda, 20, 100, 100),
            ais: choose(quick, cuda, (10, 51), (50, 101), (50, 51)),
            target: 0.85,
            target_step: 0.85,
            conditions: &Condition::ALL,
        },
        Row {
            key: "seed-mlp",
            title: "original MLP (3×1000, IAF 8×[1920, 1920], D = 64)",
            config: "configs/seed-mnist-mlp.json",
            train: choose(quick, cuda, (1, 4), (2, 10), (5, 30)),
            is_images: choose(quick, cuda, 2, 10, 100),
            ais: choose(quick, cuda, (4, 21), (20, 51), (50, 51)),
            target: 1.0,
            target_step: 1.0,
            conditions: &Condition::ALL,
        },
        Row {
            key: "seed-gatedconv",
            title: "original gated conv (IAF 8×[1920, 1920])",
            config: "configs/seed-mnist-gatedconv.json",
            train: choose(quick, cuda, (1, 2), (1, 5), (5, 30)),
            is_images: choose(quick, cuda, 1, 4, 100),
            ais: choose(quick, cuda, (1, 6), (2, 11), (50, 51)),
            target: 1.0,
            target_step: 1.0,
            conditions: EQUAL_ONLY,
        },
        Row {
            key: "seed-resnet",
            title: "original ResNet (IAF 8×[1920, 1920], 36M parameters)",
            config: "configs/seed-mnist-resnet.json",
            train: choose(quick, cuda, (1, 2), (1, 5), (5, 30)),
            is_images: choose(quick, cuda, 1, 4, 100),
            ais: choose(quick, cuda, (1, 6), (2, 11), (50, 51)),
            target: 1.0,
            target_step: if cuda { 0.8 } else { 1.0 },
            conditions: EQUAL_ONLY,
        },
    ]
}

/// `cargo xtask bench`.
pub fn run(root: &Path, layout: &Layout, opts: &Options) -> Result<()> {
    let start = Instant::now();
    if opts.render_only {
        let path = root.join("BENCHMARKS.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let all: Value = serde_json::from_str(&text)?;
        return write_results(root, &all["cpu"]);
    }
    check_only(&opts.only)?;
    bootstrap::run(layout)?;
    if opts.gpu_kit {
        return gpu_kit(root, layout);
    }
    let torch = ensure_torch_python(layout)?;
    crate::cargo(root, &["build", "--release", "--quiet", "-p", "vae-cli"])?;
    let vae = root.join("target/release/vae");
    let threads = opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let cuda = opts.device.starts_with("cuda");
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let runner = Runner {
        root,
        vae: &vae,
        torch: &torch,
        device: &opts.device,
        threads,
    };

    let matmul_size = if cuda { "8192" } else { "2048" };
    let mm = &["--matmul-size", matmul_size][..];
    let matmul = json!({
        "flowvae": runner.flowvae(&work, Condition::EqualPassive, "matmul", None, "configs/smoke.json", mm),
        "pytorch": runner.pytorch(&work, Condition::EqualPassive, "matmul", None, &work, mm),
    });
    let rounds = opts.rounds.unwrap_or(if opts.quick { 2 } else { 3 }).max(1);
    let mut out_rows = Vec::new();
    for row in rows(opts.quick, cuda) {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| selects(o, row.key)) {
            continue;
        }
        let dir = work.join(row.key);
        std::fs::create_dir_all(&dir)?;
        let (warm, steps) = row.train;
        let (ais_images, ais_steps) = row.ais;
        let images = row.is_images.max(ais_images).to_string();
        let (warm_s, steps_s) = (warm.to_string(), steps.to_string());
        let train_args = ["--warmup", &warm_s, "--steps", &steps_s, "--batch", "200"];
        let ck = match runner.export(&dir, row.config, &train_args, &images) {
            Ok(ck) => ck,
            Err(error) => {
                out_rows.push(
                    json!({"key": row.key, "title": row.title, "config": row.config,
                    "target": row.target, "error": error}),
                );
                continue;
            }
        };
        let is_images = row.is_images.to_string();
        let (ais_images_s, ais_steps_s) = (ais_images.to_string(), ais_steps.to_string());
        let phase_args = [
            ("train", train_args.to_vec()),
            ("is", vec!["--images", &is_images, "--k", "1000"]),
            (
                "ais",
                vec![
                    "--images",
                    &ais_images_s,
                    "--anneal-steps",
                    &ais_steps_s,
                    "--chains",
                    "8",
                    "--leapfrog",
                    "10",
                ],
            ),
        ];
        let conditions = if cuda { EQUAL_ONLY } else { row.conditions };
        let mut r = json!({"key": row.key, "title": row.title, "config": row.config,
            "target": row.target, "target_step": row.target_step});
        for (i, &cond) in conditions.iter().enumerate() {
            // The main tables' logs stay where they were; the others get a folder each.
            let cond_dir = if i == 0 {
                dir.clone()
            } else {
                dir.join(cond.key())
            };
            std::fs::create_dir_all(&cond_dir)?;
            let _busy = cond.busy().then(BusyProcess::start).transpose()?;
            let mut phases = serde_json::Map::new();
            for (phase, args) in &phase_args {
                let ours_args = [&args[..], &["--checkpoint", &ck]].concat();
                let tag = |round: usize| (rounds > 1).then_some(round);
                let ours_run = |round| {
                    runner.flowvae(&cond_dir, cond, phase, tag(round), row.config, &ours_args)
                };
                // Rounds alternate which implementation runs first, so that a change in the
                // machine's load during the phase weighs on both sides alike. flowvae runs
                // first in round 1: the reference uses the same IS chunks, which flowvae sizes.
                let mut ours = vec![ours_run(1)];
                let mut ref_args: Vec<&str> = args.clone();
                let rows_s = ours[0]["max_rows"].as_u64().unwrap_or(20_000).to_string();
                if *phase == "is" {
                    ref_args.extend(["--max-rows", rows_s.as_str()]);
                }
                let theirs_run =
                    |round| runner.pytorch(&cond_dir, cond, phase, tag(round), &dir, &ref_args);
                let mut theirs = vec![theirs_run(1)];
                for round in 2..=rounds {
                    if round % 2 == 1 {
                        ours.push(ours_run(round));
                        theirs.push(theirs_run(round));
                    } else {
                        theirs.push(theirs_run(round));
                        ours.push(ours_run(round));
                    }
                }
                let (ours, theirs) = combine_rounds(phase, ours, theirs);
                phases.insert(
                    phase.to_string(),
                    json!({"flowvae": ours, "pytorch": theirs}),
                );
            }
            if i == 0 {
                for (k, v) in phases {
                    r[k] = v;
                }
            } else {
                r["conditions"][cond.key()] = phases.into();
            }
        }
        out_rows.push(r);
    }
    let command = format!(
        "cargo xtask bench{}{}",
        if opts.quick { " --quick" } else { "" },
        if cuda {
            format!(" --device {}", opts.device)
        } else {
            String::new()
        }
    );
    let device_name = matmul["flowvae"]["device_name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut result = json!({
        "generated": utc_now(),
        "command": command,
        "quick": opts.quick,
        "device": opts.device,
        "device_name": device_name,
        "threads": threads,
        "wall_seconds": start.elapsed().as_secs_f64(),
        "matmul": matmul,
        "rows": out_rows,
    });
    if !opts.only.is_empty() {
        // `--only` re-measures some rows: the others keep their figures from the last run
        // rather than vanishing from BENCHMARKS.md.
        let previous = std::fs::read_to_string(root.join("BENCHMARKS.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let order: Vec<&str> = rows(opts.quick, cuda).iter().map(|r| r.key).collect();
        if let Some((field, was, now)) = previous
            .as_ref()
            .and_then(|p| setup_difference(&p["cpu"], &result))
        {
            eprintln!(
                "xtask: the last BENCHMARKS.json has {field} {was}, this run {now}: its rows \
                 are not kept, and BENCHMARKS.md shows only the --only rows (run the whole \
                 bench for a full table)"
            );
        }
        result = merge_rows(previous.as_ref().map(|p| &p["cpu"]), result, &order);
    }
    write_results(root, &result)?;
    eprintln!(
        "xtask: wrote BENCHMARKS.md and BENCHMARKS.json ({:.1} min)",
        start.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// One config's training step measured now, flowvae then PyTorch, each with its own defaults
/// at batch size `batch` (one process each: 3 untimed steps, 30 timed), for `cargo xtask train` to show beside the
/// run's own step time: `(flowvae, PyTorch)` as `vae bench` and the reference write them, or
/// `None` when no importable torch is installed. Logs go to `target/bench/train-speed/`.
pub fn step_side_by_side(
    root: &Path,
    layout: &Layout,
    config: &str,
    batch: usize,
) -> Result<Option<(Value, Value)>> {
    let Some(torch) = torch_python_ready(layout) else {
        return Ok(None);
    };
    let vae = root.join("target/release/vae");
    let dir = root.join("target/bench/train-speed");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let runner = Runner {
        root,
        vae: &vae,
        torch: &torch,
        device: "cpu",
        threads: 1,
    };
    let batch = batch.to_string();
    let train_args = ["--warmup", "3", "--steps", "30", "--batch", &batch];
    let ck = runner
        .export(&dir, config, &train_args, "1")
        .map_err(|err| anyhow::anyhow!("exporting {config} for the speed comparison: {err}"))?;
    let cond = Condition::DefaultsQuiet;
    let ours = runner.flowvae(
        &dir,
        cond,
        "train",
        None,
        config,
        &[&train_args[..], &["--checkpoint", &ck]].concat(),
    );
    let theirs = runner.pytorch(&dir, cond, "train", None, &dir, &train_args);
    Ok(Some((ours, theirs)))
}

/// Whether `--only <only>` selects the row `key`: any part of the key matches.
fn selects(only: &str, key: &str) -> bool {
    key.contains(only)
}

/// Refuses a `--only` value that selects no row (a typo would otherwise re-measure nothing and
/// rewrite BENCHMARKS.md from the old rows).
fn check_only(only: &[String]) -> Result<()> {
    let keys: Vec<&str> = rows(false, false).iter().map(|r| r.key).collect();
    for o in only {
        ensure!(
            keys.iter().any(|k| selects(o, k)),
            "--only {o:?} matches no benchmark row; the rows are {}",
            keys.join(", ")
        );
    }
    Ok(())
}

/// The first of device, processor, threads and mode in which two runs differ, as
/// `(field, previous, now)`: ratios measured on another processor (this workplace's machines
/// are not all alike) do not belong in one table.
fn setup_difference(previous: &Value, run: &Value) -> Option<(&'static str, String, String)> {
    ["device", "device_name", "threads", "quick"]
        .into_iter()
        .find(|k| previous[*k] != run[*k])
        .map(|k| (k, previous[k].to_string(), run[k].to_string()))
}

/// `run`'s rows in the order of `order`, each row missing from `run` taken from `previous` (the
/// last BENCHMARKS.json's run) when that was measured on the same device and processor with the
/// same threads and mode. Every row records when, by which command and against which matmul
/// peak it was measured (`measured`, `command`, `matmul_peak`), so that a merged table can say
/// which rows came from another run.
fn merge_rows(previous: Option<&Value>, mut run: Value, order: &[&str]) -> Value {
    let stamp = |row: &mut Value, from: &Value| {
        for (field, source) in [
            ("measured", &from["generated"]),
            ("command", &from["command"]),
            (
                "matmul_peak",
                &from["matmul"]["flowvae"]["peak_gflops_per_s"],
            ),
        ] {
            if row[field].is_null() {
                row[field] = source.clone();
            }
        }
    };
    let fresh: Vec<Value> = run["rows"].as_array().cloned().unwrap_or_default();
    let old: Vec<Value> = previous
        .filter(|p| setup_difference(p, &run).is_none())
        .and_then(|p| {
            let mut rows = p["rows"].as_array().cloned()?;
            rows.iter_mut().for_each(|r| stamp(r, p));
            Some(rows)
        })
        .unwrap_or_default();
    let by_key = |rows: &[Value], key: &str| rows.iter().find(|r| r["key"] == key).cloned();
    let merged: Vec<Value> = order
        .iter()
        .filter_map(|key| {
            by_key(&fresh, key)
                .map(|mut r| {
                    stamp(&mut r, &run);
                    r
                })
                .or_else(|| by_key(&old, key))
        })
        .collect();
    run["rows"] = Value::Array(merged);
    run
}

/// Writes BENCHMARKS.json and BENCHMARKS.md from a CPU run and, when present,
/// benches/gpu-results.json (the output of scripts/gpu-check.sh).
fn write_results(root: &Path, result: &Value) -> Result<()> {
    let gpu_path = root.join("benches/gpu-results.json");
    let gpu: Option<Value> = std::fs::read_to_string(&gpu_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut all = json!({"cpu": result});
    if let Some(g) = &gpu {
        all["gpu"] = g.clone();
    }
    vae_io::write_json(&root.join("BENCHMARKS.json"), &all)?;
    let md = render(result, gpu.as_ref());
    Ok(vae_io::write_atomic(
        &root.join("BENCHMARKS.md"),
        md.as_bytes(),
    )?)
}

/// Runs the two implementations' phases, each in its own process with a log.
struct Runner<'a> {
    root: &'a Path,
    vae: &'a Path,
    torch: &'a Path,
    device: &'a str,
    threads: usize,
}

impl Runner<'_> {
    /// `vae bench --phase P` under `cond`; `round` names its files `flowvae-P-rN`.
    fn flowvae(
        &self,
        dir: &Path,
        cond: Condition,
        phase: &str,
        round: Option<usize>,
        config: &str,
        args: &[&str],
    ) -> Value {
        let name = run_name("flowvae", phase, round);
        let out = dir.join(format!("{name}.json"));
        let mut cmd = Command::new(self.vae);
        cmd.args(["bench", "--phase", phase, "--config", config])
            .args(["--device", self.device])
            .args(args)
            .arg("--out")
            .arg(&out);
        cond.apply(&mut cmd, self.threads);
        self.run(cmd, dir, &name, &out)
    }

    /// `vae bench --phase export` of `config` into `dir`: the initial checkpoint and the
    /// batches of `train_args`' steps and `images` test images that both implementations then
    /// read. The checkpoint's path, or the error the export reported.
    fn export(
        &self,
        dir: &Path,
        config: &str,
        train_args: &[&str],
        images: &str,
    ) -> std::result::Result<String, Value> {
        let export_dir = dir.to_string_lossy().into_owned();
        let args = [train_args, &["--images", images, "--export", &export_dir]].concat();
        let out = self.flowvae(dir, Condition::EqualPassive, "export", None, config, &args);
        match out.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(dir.join("model.safetensors").to_string_lossy().into_owned()),
        }
    }

    /// `flowvae_ref.py bench --phase P` under `cond`; `round` names its files `pytorch-P-rN`.
    fn pytorch(
        &self,
        dir: &Path,
        cond: Condition,
        phase: &str,
        round: Option<usize>,
        workdir: &Path,
        args: &[&str],
    ) -> Value {
        let name = run_name("pytorch", phase, round);
        let out = dir.join(format!("{name}.json"));
        let python = std::env::var_os("FLOWVAE_PYTHON").unwrap_or_else(|| "python3".into());
        let mut cmd = Command::new(python);
        cmd.arg(self.root.join("benches/reference/flowvae_ref.py"))
            .args(["bench", "--phase", phase])
            .arg("--workdir")
            .arg(workdir)
            .args(["--device", self.device])
            .args(args)
            .arg("--out")
            .arg(&out)
            .env("PYTHONPATH", self.torch);
        cond.apply(&mut cmd, self.threads);
        self.run(cmd, dir, &name, &out)
    }

    /// Runs `cmd`, its output to `<dir>/<name>.log`; the JSON it wrote, or `{"error": ...}`.
    fn run(&self, mut cmd: Command, dir: &Path, name: &str, out: &Path) -> Value {
        let t = Instant::now();
        eprint!("xtask: bench {} {name} ... ", dir_name(dir));
        let _ = std::fs::remove_file(out);
        let log = dir.join(format!("{name}.log"));
        let status = std::fs::File::create(&log).and_then(|f| {
            let f2 = f.try_clone()?;
            cmd.current_dir(self.root).stdout(f).stderr(f2).status()
        });
        let secs = t.elapsed().as_secs_f64();
        let result = match status {
            Ok(s) if s.success() => std::fs::read_to_string(out)
                .map_err(|e| format!("reading {}: {e}", out.display()))
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())),
            Ok(s) => Err(format!("{name} failed ({s}); see {}", log.display())),
            Err(e) => Err(format!("{name} did not start: {e}")),
        };
        match result {
            Ok(v) => {
                eprintln!("{secs:.1} s");
                v
            }
            Err(e) => {
                eprintln!("FAILED: {e}");
                json!({ "error": e })
            }
        }
    }
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The figure each phase compares.
fn figure(v: &Value, phase: &str) -> Option<f64> {
    let key = match phase {
        "train" => "median_ms",
        "is" => "ms_per_image",
        _ => "ms_per_image_per_100_steps",
    };
    v.get(key)?.as_f64()
}

fn run_name(side: &str, phase: &str, round: Option<usize>) -> String {
    match round {
        Some(r) => format!("{side}-{phase}-r{r}"),
        None => format!("{side}-{phase}"),
    }
}

/// The median of `v` (the lower one of an even count), or `None` when empty.
fn lower_median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len().saturating_sub(1) / 2).copied()
}

/// The median of `v` (the mean of the middle two of an even count), or `None` when empty.
fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some(0.5 * (s[n / 2 - 1] + s[n / 2])),
    }
}

/// One phase's rounds → one result per implementation: the round with the median figure (its
/// memory and other fields come with it; the lower one of an even count), plus
/// `figure_rounds`; flowvae's also gets `ratio`, the median of the rounds' ratios (each
/// round's flowvae figure over the same round's PyTorch figure), and `ratio_rounds`. A failed round is left out; when every round failed,
/// the first round's error stands.
fn combine_rounds(phase: &str, ours: Vec<Value>, theirs: Vec<Value>) -> (Value, Value) {
    let pick = |runs: &[Value]| -> (Value, Vec<f64>) {
        let figures: Vec<f64> = runs.iter().filter_map(|v| figure(v, phase)).collect();
        let chosen = lower_median(&figures)
            .and_then(|m| runs.iter().find(|v| figure(v, phase) == Some(m)))
            .or(runs.first())
            .cloned()
            .unwrap_or(Value::Null);
        (chosen, figures)
    };
    let ratios: Vec<f64> = ours
        .iter()
        .zip(&theirs)
        .filter_map(|(o, t)| Some(figure(o, phase)? / figure(t, phase)?))
        .collect();
    let ((mut o, of), (mut t, tf)) = (pick(&ours), pick(&theirs));
    if o.is_object() {
        o["figure_rounds"] = of.into();
        o["ratio"] = median(&ratios).into();
        o["ratio_rounds"] = ratios.into();
    }
    if t.is_object() {
        t["figure_rounds"] = tf.into();
    }
    (o, t)
}

/// `<cache>/torch-python` when it holds a torch 2.11.0 that imported there (FLOWVAE_TORCH_PYTHON
/// names another such folder), else `None`: what the PyTorch reference and its test need.
pub fn torch_python_ready(layout: &Layout) -> Option<PathBuf> {
    let dir = std::env::var_os("FLOWVAE_TORCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| layout.cache.join("torch-python"));
    (version_ok(&dir) && dir.join(IMPORTABLE_MARKER).exists()).then_some(dir)
}

/// Whether `dir` holds torch 2.11.0's files (not yet whether it imports).
fn version_ok(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("torch/version.py"))
        .map(|v| v.contains(&format!("__version__ = '{TORCH_VERSION}")))
        .unwrap_or(false)
}

/// Installs a full, importable torch 2.11.0 into `<cache>/torch-python` (once).
pub fn ensure_torch_python(layout: &Layout) -> Result<PathBuf> {
    let dir = layout.cache.join("torch-python");
    if let Some(ready) = torch_python_ready(layout).filter(|d| *d == dir) {
        return Ok(ready);
    }
    let python = bootstrap::python()?;
    if let Some(free) = free_bytes(&layout.cache) {
        ensure!(
            free >= TORCH_FREE_BYTES,
            "installing torch {TORCH_VERSION} for the PyTorch reference needs about 8 GB free in \
             {}, {:.1} GB are: free some space or set FLOWVAE_CACHE",
            layout.cache.display(),
            free as f64 / 1e9
        );
    }
    let t = Instant::now();
    eprintln!(
        "xtask: installing torch {TORCH_VERSION} with its dependencies into {} for the PyTorch \
         reference (pip, about 4 GB; once)",
        dir.display()
    );
    std::fs::create_dir_all(&layout.cache)?;
    bootstrap::pip_install_target(
        &python,
        &dir,
        &["--no-input"],
        &[format!("torch=={TORCH_VERSION}")],
        |partial| {
            ensure!(
                version_ok(partial),
                "pip did not install torch {TORCH_VERSION} into {}",
                partial.display()
            );
            Ok(())
        },
    )?;
    let check = Command::new(&python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .env("PYTHONPATH", &dir)
        .output()
        .context("running python3 to check the torch install")?;
    let printed = String::from_utf8_lossy(&check.stdout);
    if !check.status.success() || !printed.starts_with(TORCH_VERSION) {
        bail!(
            "`import torch` from {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    vae_io::write_atomic(&dir.join(IMPORTABLE_MARKER), printed.as_bytes())?;
    eprintln!("xtask:   done in {:.0} s", t.elapsed().as_secs_f64());
    Ok(dir)
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        probe = probe.parent()?.to_path_buf();
    }
    let out = Command::new("df").arg("-Pk").arg(&probe).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Builds `target/gpu-kit`: the stripped `vae` binary with libtorch's CUDA library linked, and
/// gzipped MNIST, for `scripts/gpu-check.sh` (the GPU machine has no Rust and no network).
pub fn gpu_kit(root: &Path, layout: &Layout) -> Result<()> {
    let kit = root.join("target/gpu-kit");
    std::fs::create_dir_all(kit.join("data/mnist"))?;
    crate::cargo(
        root,
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "vae-cli",
            "--features",
            "cuda",
        ],
    )?;
    let built = root.join("target/release/vae");
    let bin = kit.join("vae");
    std::fs::copy(&built, &bin)
        .with_context(|| format!("copying {} to {}", built.display(), bin.display()))?;
    let status = Command::new("strip").arg(&bin).status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("xtask: strip failed or is missing; the kit's binary keeps its symbols");
    }
    // The plain binary again, so `target/release/vae` starts on this machine.
    crate::cargo(root, &["build", "--release", "--quiet", "-p", "vae-cli"])?;
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let src = layout.data().join("mnist").join(f);
        let data = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &data)?;
        vae_io::write_atomic(&kit.join(format!("data/mnist/{f}.gz")), &gz.finish()?)?;
    }
    eprintln!(
        "xtask: wrote {} (vae with --features cuda, stripped; MNIST gzipped); on the GPU machine \
         run scripts/gpu-check.sh with it (`carry`: target/gpu-kit)",
        kit.display()
    );
    Ok(())
}

/// Formats a number of milliseconds for a table.
/// `YYYY-MM-DD HH:MM UTC` from the system clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::render::ratio_cell;
    use super::*;

    /// The ratio pairs each round's two figures, the shown figures are the median round's,
    /// and a failed round is left out.
    #[test]
    fn rounds_give_the_median_of_paired_ratios() {
        let t = |ms: f64, rss: u64| json!({"median_ms": ms, "peak_rss_bytes": rss});
        let ours = vec![
            t(10.0, 1),
            json!({"error": "killed"}),
            t(30.0, 3),
            t(12.0, 2),
        ];
        let theirs = vec![t(20.0, 1), t(21.0, 2), t(30.0, 3), t(10.0, 4)];
        let (o, p) = combine_rounds("train", ours.clone(), theirs.clone());
        // Ratios of rounds 1, 3, 4: 0.5, 1.0, 1.2; median 1.0.
        assert_eq!(o["ratio_rounds"], json!([0.5, 1.0, 1.2]));
        assert_eq!(o["ratio"], json!(1.0));
        // Two rounds: the mean of the two ratios, not the smaller one.
        let (o2, _) = combine_rounds("train", ours[2..].to_vec(), theirs[2..].to_vec());
        assert_eq!(o2["ratio"], json!(1.1));
        assert_eq!(
            (o["median_ms"].clone(), o["peak_rss_bytes"].clone()),
            (json!(12.0), json!(2))
        );
        assert_eq!(o["figure_rounds"], json!([10.0, 30.0, 12.0]));
        // PyTorch: figures 10, 20, 21, 30: the lower median is 20 (round 1).
        assert_eq!(p["median_ms"], json!(20.0));
        assert_eq!(p["peak_rss_bytes"], json!(1));
        let (o, _) = combine_rounds("is", vec![json!({"error": "a"})], vec![json!({})]);
        assert_eq!(o["error"], json!("a"));
        assert_eq!(o["ratio"], Value::Null);
        let cell = ratio_cell(
            &json!({"ratio": 0.9, "ratio_rounds": [0.95, 0.9, 0.8]}),
            0.85,
        );
        assert_eq!(cell, "**0.90** ✗ [0.80–0.95]");
        assert_eq!(
            ratio_cell(&json!({"ratio": 0.8, "ratio_rounds": [0.8]}), 0.85),
            "**0.80** ✓"
        );
    }

    /// `--only` replaces its rows and keeps the others, in the table's order, saying where
    /// each came from; a previous run on another setup contributes nothing.
    #[test]
    fn only_runs_merge_into_the_previous_table() {
        let row = |key: &str, ms: f64| json!({"key": key, "title": key, "train": {"flowvae": {"median_ms": ms}}});
        let previous = json!({
            "device": "cpu", "device_name": "EPYC", "threads": 2, "quick": false,
            "generated": "old", "command": "full",
            "matmul": {"flowvae": {"peak_gflops_per_s": 150.0}},
            "rows": [row("a", 1.0), row("b", 2.0), row("c", 3.0)],
        });
        let run = json!({
            "device": "cpu", "device_name": "EPYC", "threads": 2, "quick": false,
            "generated": "new", "command": "only b",
            "matmul": {"flowvae": {"peak_gflops_per_s": 160.0}},
            "rows": [row("b", 20.0)],
        });
        let merged = merge_rows(Some(&previous), run.clone(), &["a", "b", "c", "d"]);
        let rows = merged["rows"].as_array().unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(rows[1]["train"]["flowvae"]["median_ms"], json!(20.0));
        assert_eq!(
            (&rows[1]["measured"], &rows[1]["matmul_peak"]),
            (&json!("new"), &json!(160.0))
        );
        assert_eq!(
            (&rows[0]["measured"], &rows[0]["command"]),
            (&json!("old"), &json!("full"))
        );
        assert_eq!(rows[2]["matmul_peak"], json!(150.0));
        let md = render_run(&merged);
        assert!(md.contains("Rows kept from earlier runs"), "{md}");
        assert!(
            md.contains("a (measured old by `full`, matmul peak then 150 GFLOP/s); c ("),
            "{md}"
        );
        assert!(!md.contains("b (measured"), "{md}");

        for (field, value) in [("threads", json!(16)), ("device_name", json!("Xeon"))] {
            let mut other = previous.clone();
            other[field] = value;
            assert_eq!(setup_difference(&other, &run).unwrap().0, field);
            let alone = merge_rows(Some(&other), run.clone(), &["a", "b", "c"]);
            assert_eq!(alone["rows"].as_array().unwrap().len(), 1, "{field}");
            assert!(!render_run(&alone).contains("Rows kept"));
        }
        assert!(setup_difference(&previous, &run).is_none());
        assert_eq!(
            merge_rows(None, run, &["b"])["rows"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn only_must_select_a_row() {
        assert!(check_only(&[]).is_ok());
        assert!(check_only(&["seed".into(), "cpu-default".into()]).is_ok());
        let err = check_only(&["resnt".into()]).unwrap_err().to_string();
        assert!(
            err.contains("\"resnt\"") && err.contains("seed-resnet"),
            "{err}"
        );
    }

    #[test]
    fn utc_dates() {
        let s = utc_now();
        assert!(s.ends_with(" UTC") && s.len() == 20, "{s}");
    }

    #[test]
    fn quick_rows_are_light() {
        let quick = rows(true, false);
        let full = rows(false, false);
        assert_eq!(quick.len(), 4);
        for (q, f) in quick.iter().zip(&full) {
            assert!(
                q.train.1 <= f.train.1 && q.is_images <= f.is_images,
                "{}",
                q.key
            );
        }
        assert_eq!(rows(false, true)[3].target_step, 0.8);
        assert_eq!(rows(false, true)[3].target, 1.0);
    }
}
