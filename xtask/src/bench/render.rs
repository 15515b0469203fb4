//! BENCHMARKS.md from a run's JSON: the tables, their verdicts and the reproduction notes.

use serde_json::Value;

use super::Condition;

pub(super) fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

pub(super) fn gib(v: &Value) -> String {
    v.as_f64()
        .map(|b| format!("{:.2}", b / (1u64 << 30) as f64))
        .unwrap_or_else(|| "–".into())
}

pub(super) fn mem(v: &Value) -> String {
    let rss = gib(&v["peak_rss_bytes"]);
    match v["gpu_memory_mib"].as_f64() {
        Some(m) => format!("{rss} + GPU {:.2}", m / 1024.0),
        None => rss,
    }
}

pub(super) fn verdict(r: Option<f64>, target: f64) -> String {
    match r {
        Some(x) if x <= target => format!("**{x:.2}** ✓"),
        Some(x) => format!("**{x:.2}** ✗"),
        None => "–".into(),
    }
}

/// The ratio with its verdict and, when several rounds measured it, their range.
pub(super) fn ratio_cell(o: &Value, target: f64) -> String {
    let mut cell = verdict(o["ratio"].as_f64(), target);
    let rounds: Vec<f64> = o["ratio_rounds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if rounds.len() > 1 {
        let lo = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        cell += &format!(" [{lo:.2}–{hi:.2}]");
    }
    cell
}

/// The Markdown tables of one run (CPU or GPU).
pub fn render_run(run: &Value) -> String {
    let mut s = String::new();
    let peak = run["matmul"]["flowvae"]["peak_gflops_per_s"].as_f64();
    let quick = run["quick"].as_bool().unwrap_or(false);
    s += &format!(
        "Device: {} ({}); the main tables give both implementations {} threads and \
         `OMP_WAIT_POLICY=passive`. Measured {}; command `{}`{}.\n\n",
        run["device_name"].as_str().unwrap_or("?"),
        run["device"].as_str().unwrap_or("?"),
        run["threads"],
        run["generated"].as_str().unwrap_or("?"),
        run["command"].as_str().unwrap_or("?"),
        if quick {
            " (quick: few repeats and images on the heavy rows, see the `n` columns)"
        } else {
            ""
        }
    );
    s += &format!(
        "libtorch f32 matmul peak in the same run: {:.0} GFLOP/s (flowvae/tch), {:.0} GFLOP/s \
         (PyTorch), size {}.\n\n",
        peak.unwrap_or(f64::NAN),
        run["matmul"]["pytorch"]["peak_gflops_per_s"]
            .as_f64()
            .unwrap_or(f64::NAN),
        run["matmul"]["flowvae"]["size"]
    );
    let rows = run["rows"].as_array().cloned().unwrap_or_default();
    let earlier: Vec<String> = rows
        .iter()
        .filter(|r| !r["measured"].is_null() && r["measured"] != run["generated"])
        .map(|r| {
            format!(
                "{} (measured {} by `{}`, matmul peak then {:.0} GFLOP/s)",
                r["title"].as_str().unwrap_or("?"),
                r["measured"].as_str().unwrap_or("?"),
                r["command"].as_str().unwrap_or("?"),
                r["matmul_peak"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    if !earlier.is_empty() {
        s += &format!(
            "Rows kept from earlier runs (this run re-measured only the others): {}.\n\n",
            earlier.join("; ")
        );
    }
    s += "### Training step, batch 200 (binarization, forward, backward, gradient norm, Adam)\n\n";
    s += "| Config | parameters | n | flowvae ms | PyTorch ms | ratio (target) | flowvae GFLOP/s (% of peak) | PyTorch GFLOP/s | peak memory GiB flowvae / PyTorch |\n";
    s += "|---|---:|---:|---:|---:|---|---:|---:|---|\n";
    for r in &rows {
        let (o, t) = (&r["train"]["flowvae"], &r["train"]["pytorch"]);
        let target = r["target_step"]
            .as_f64()
            .or(r["target"].as_f64())
            .unwrap_or(1.0);
        let flops = o["flops_per_step"].as_f64();
        let g = |v: &Value| Some(flops? / v["median_ms"].as_f64()? / 1e6);
        // A row kept from an earlier run is compared with the peak of its own run.
        let peak = r["matmul_peak"].as_f64().or(peak);
        s += &format!(
            "| {} | {:.1} M | {} | {} | {} | {} (≤ {target}) | {} | {} | {} / {} |\n",
            r["title"].as_str().unwrap_or("?"),
            o["parameters"].as_f64().unwrap_or(f64::NAN) / 1e6,
            o["steps"]
                .as_u64()
                .or(o["step_ms"].as_array().map(|v| v.len() as u64))
                .unwrap_or(0),
            ms(o["median_ms"].as_f64()),
            ms(t["median_ms"].as_f64()),
            ratio_cell(o, target),
            match (g(o), peak) {
                (Some(x), Some(p)) => format!("{x:.1} ({:.0} %)", 100.0 * x / p),
                _ => "–".into(),
            },
            g(t).map_or("–".into(), |x| format!("{x:.1}")),
            mem(o),
            mem(t),
        );
    }
    // Other builds measured in the same run (`alt:NAME`, e.g. flowvae before a change).
    for r in &rows {
        if let Some(phases) = r["train"].as_object() {
            for (k, v) in phases.iter().filter(|(k, _)| k.starts_with("alt:")) {
                s += &format!(
                    "\n{} with the build `{}`: {} ms, ratio {}.\n",
                    r["title"].as_str().unwrap_or("?"),
                    &k[4..],
                    ms(v["median_ms"].as_f64()),
                    v["ratio"]
                        .as_f64()
                        .map_or("–".into(), |x| format!("{x:.2}")),
                );
            }
        }
    }
    s += "\n### Importance sampling, k = 1000: ms per test image\n\n";
    s += "| Config | n images | rows per call | flowvae | PyTorch | ratio (target) | peak memory GiB flowvae / PyTorch |\n";
    s += "|---|---:|---:|---:|---:|---|---|\n";
    for r in &rows {
        let (o, t) = (&r["is"]["flowvae"], &r["is"]["pytorch"]);
        let target = r["target"].as_f64().unwrap_or(1.0);
        s += &format!(
            "| {} | {} | {} | {} | {} | {} (≤ {target}) | {} / {} |\n",
            r["title"].as_str().unwrap_or("?"),
            o["images"],
            o["max_rows"],
            ms(o["ms_per_image"].as_f64()),
            ms(t["ms_per_image"].as_f64()),
            ratio_cell(o, target),
            mem(o),
            mem(t),
        );
    }
    s += "\n### AIS from the prior, 8 chains, 10 leapfrog steps: ms per test image per 100 annealing steps\n\n";
    s += "| Config | n images × schedule points | flowvae | PyTorch | ratio (target) | AIS / pure gradient cost flowvae (≤ 1.2) | same, PyTorch | peak memory GiB flowvae / PyTorch |\n";
    s += "|---|---|---:|---:|---|---|---:|---|\n";
    for r in &rows {
        let (o, t) = (&r["ais"]["flowvae"], &r["ais"]["pytorch"]);
        let target = r["target"].as_f64().unwrap_or(1.0);
        s += &format!(
            "| {} | {} × {} | {} | {} | {} (≤ {target}) | {} | {} | {} / {} |\n",
            r["title"].as_str().unwrap_or("?"),
            o["images"],
            o["anneal_steps"],
            ms(o["ms_per_image_per_100_steps"].as_f64()),
            ms(t["ms_per_image_per_100_steps"].as_f64()),
            ratio_cell(o, target),
            verdict(o["overhead_ratio"].as_f64(), 1.2),
            t["overhead_ratio"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.2}")),
            mem(o),
            mem(t),
        );
    }
    s += &render_conditions(&rows);
    let errors: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            let key = r["key"].as_str().unwrap_or("?").to_string();
            let mut e = Vec::new();
            if let Some(err) = r["error"].as_str() {
                e.push(format!("- {key}: {err}"));
            }
            for phase in ["train", "is", "ais"] {
                for side in ["flowvae", "pytorch"] {
                    if let Some(err) = r[phase][side]["error"].as_str() {
                        e.push(format!("- {key} {phase} {side}: {err}"));
                    }
                    for (cond, phases) in r["conditions"].as_object().into_iter().flatten() {
                        if let Some(err) = phases[phase][side]["error"].as_str() {
                            e.push(format!("- {key} {cond} {phase} {side}: {err}"));
                        }
                    }
                }
            }
            e
        })
        .collect();
    if !errors.is_empty() {
        s += "\nFailed measurements:\n\n";
        s += &errors.join("\n");
        s += "\n";
    }
    s
}

/// The figure each phase compares, and the words for its unit.
const PHASE_FIGURES: [(&str, &str, &str); 3] = [
    ("train", "median_ms", "training step, ms"),
    ("is", "ms_per_image", "IS k = 1000, ms per image"),
    (
        "ais",
        "ms_per_image_per_100_steps",
        "AIS, ms per image per 100 steps",
    ),
];

/// Threads as a cell: a fixed count, or where the thread governor spent its time.
fn threads_cell(v: &Value) -> String {
    let spent: Vec<String> = v["thread_governor"]["seconds_at_threads"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(n, s)| Some(format!("{n}: {:.1} s", s.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    if v["thread_governor"]["adaptive"].as_bool() == Some(true) && !spent.is_empty() {
        format!("adaptive ({})", spent.join(", "))
    } else {
        v["threads"].as_u64().map_or("–".into(), |n| n.to_string())
    }
}

/// The table of the rows measured under more conditions than the main tables': each side's
/// defaults on a quiet machine and beside a busy process, and both at libgomp's default.
fn render_conditions(rows: &[Value]) -> String {
    let mut lines = Vec::new();
    for r in rows {
        let Some(conds) = r["conditions"].as_object() else {
            continue;
        };
        for (phase, figure, what) in PHASE_FIGURES {
            for (key, phases) in conds {
                let Some(cond) = Condition::ALL.iter().find(|c| c.key() == key) else {
                    continue;
                };
                let (o, t) = (&phases[phase]["flowvae"], &phases[phase]["pytorch"]);
                let target = if phase == "train" {
                    r["target_step"].as_f64().or(r["target"].as_f64())
                } else {
                    r["target"].as_f64()
                }
                .unwrap_or(1.0);
                let target = cond.target(target);
                lines.push(format!(
                    "| {} | {what} | {} | {} | {} | {} | {} | {} (≤ {target}) |\n",
                    r["title"].as_str().unwrap_or("?"),
                    cond.label(),
                    ms(o[figure].as_f64()),
                    threads_cell(o),
                    ms(t[figure].as_f64()),
                    threads_cell(t),
                    ratio_cell(o, target),
                ));
            }
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n### As users run each side\n\n\
         Each side's defaults: no thread count given and none of the threading variables set \
         (`OMP_*`, `GOMP_SPINCOUNT`, `MKL_*`, `MALLOC_CONF`), as a user runs PyTorch or `vae`; \
         the busy process is `yes > /dev/null`, started before both implementations' rounds \
         and stopped after them. \"libgomp default\" leaves `OMP_WAIT_POLICY` unset for \
         both, with the main tables' thread count. The defaults rows must reach ≤ 0.85 \
         (every config here), the equal-setting rows ≤ 1. flowvae's threads are \"adaptive\" when its \
         thread governor chose them (README, \"CPU threads\"), with the seconds spent at each \
         count in the median round.\n\n\
         | Config | phase | condition | flowvae | flowvae threads | PyTorch | PyTorch threads | ratio (target) |\n\
         |---|---|---|---:|---|---:|---|---|\n",
    );
    for l in lines {
        s += &l;
    }
    s
}

/// The whole `BENCHMARKS.md`.
pub fn render(cpu: &Value, gpu: Option<&Value>) -> String {
    let mut s = String::from(
        "# Benchmarks\n\n\
         flowvae (Rust, tch 0.24 over libtorch 2.11.0) beside a PyTorch 2.11.0 eager \
         implementation of the same models (`benches/reference/flowvae_ref.py`), measured in \
         the same run, on the same initial weights (a flowvae checkpoint loaded into the \
         reference), the same batches and the same threads. **ratio = flowvae / PyTorch**: below \
         1, flowvae is faster. Targets: ≤ 0.85 on the CPU default, ≤ 1.0 on the other rows, \
         ≤ 0.8 for the ResNet step on CUDA; AIS within 1.2× of its pure gradient cost \
         ((schedule points − 2) × leapfrog + 1 gradients of log p(x, z), each timed alone at the \
         same shape). The reference computes the same ELBO as flowvae to 1e-4 nats \
         (`tests/bench_reference.rs`).\n\n\
         Times are medians over up to 5 timed repeats of several steps each (training: each \
         repeat's time per step) or one timed run after an untimed warm-up at the timed run's \
         shapes (IS, AIS: a full chunk and the last one; one AIS move on all the images). \
         `cargo xtask bench` runs each phase in rounds (3, or 2 with `--quick`; one process per \
         implementation per round; `scripts/gpu-check.sh` runs one), flowvae first in odd rounds and PyTorch first in even ones; a table shows the \
         median round's figures, and the ratio is the median of the rounds' ratios, with their \
         range in brackets: this 2-core machine is shared, and a ratio from one pair of \
         processes moved by ±20 % between runs. GFLOP/s \
         counts 3 × 2 × the multiply-adds of the matrix products and convolutions of a forward \
         pass (`crates/vae-cli/src/cost.rs`). Peak memory is the process's peak RSS (VmHWM), \
         and on CUDA the GPU memory that nvidia-smi shows for it (the caching allocator's \
         reservation, which holds its peak). IS sizes its chunks from a 2 GiB activation \
         budget (`vae eval --max-rows` overrides it).\n\n## CPU\n\n",
    );
    s += &render_run(cpu);
    if let Some(g) = gpu {
        s += "\n## CUDA\n\nFrom `scripts/gpu-check.sh` on a lent GPU machine (its output is \
              `benches/gpu-results.json`).\n\n";
        if let Some(note) = g["note"].as_str() {
            s += &format!("{note}.\n\n");
        }
        s += &render_run(&g["bench"]);
        // Earlier runs on other machines of the same kind, as `earlier_runs`: [{label, bench}].
        let earlier: Vec<(&str, &Value)> = g["earlier_runs"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|r| (r["label"].as_str().unwrap_or("earlier run"), &r["bench"]))
                    .collect()
            })
            .unwrap_or_default();
        for (label, run) in earlier {
            let Some(rows) = run["rows"].as_array() else {
                continue;
            };
            for (phase, figure, what) in [
                ("train", "median_ms", "Training step (ms"),
                ("is", "ms_per_image", "IS (ms per image"),
            ] {
                let parts: Vec<String> = rows
                    .iter()
                    .filter(|r| r[phase].is_object())
                    .map(|r| {
                        let t = &r[phase];
                        let alts: Vec<String> = t
                            .as_object()
                            .map(|o| {
                                o.iter()
                                    .filter(|(k, _)| k.starts_with("alt:"))
                                    .map(|(k, v)| format!("{} {}", &k[4..], ms(v[figure].as_f64())))
                                    .collect()
                            })
                            .unwrap_or_default();
                        format!(
                            "{} {} / {}{}",
                            r["key"].as_str().unwrap_or("?"),
                            ms(t["flowvae"][figure].as_f64()),
                            ms(t["pytorch"][figure].as_f64()),
                            if alts.is_empty() {
                                String::new()
                            } else {
                                format!(" / {}", alts.join(", "))
                            }
                        )
                    })
                    .collect();
                if !parts.is_empty() {
                    s += &format!(
                        "\n{what}, flowvae / PyTorch / other builds) in {label}: {}.\n",
                        parts.join("; ")
                    );
                }
            }
        }
        if let Some(extra) = g.get("train_and_eval") {
            s += &format!(
                "\nOne epoch of `configs/seed-mnist-resnet.json` on CUDA, then IS (k = 1000) on \
                 500 test images: `{}`\n",
                serde_json::to_string(extra).unwrap_or_default()
            );
        }
    }
    s += "\n## Reproduce\n\n```sh\n\
          cargo xtask bench --quick     # a few minutes on 2 cores: few repeats, 2 rounds\n\
          cargo xtask bench             # more repeats and images, 3 rounds, four conditions on two rows: about 35 minutes\n\
          cargo xtask bench --only cpu-default --rounds 5   # one row again, more rounds; the others are kept\n\
          cargo xtask bench --gpu-kit   # builds target/gpu-kit for scripts/gpu-check.sh\n\
          scripts/gpu-check.sh          # on a GPU machine with torch 2.11 (no Rust needed there)\n\
          ```\n\n\
          The first `cargo xtask bench` installs torch 2.11.0 with its dependencies into \
          `~/.cache/flowvae/torch-python` (pip, about 4 GB). Raw numbers: `BENCHMARKS.json`; per-phase \
          logs: `target/bench/<config>/`.\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_ratios_and_failures() {
        let run = json!({
            "device": "cpu", "device_name": "Test CPU", "threads": 2, "quick": true,
            "generated": "2026-01-01 00:00 UTC", "command": "cargo xtask bench --quick",
            "matmul": {"flowvae": {"peak_gflops_per_s": 100.0, "size": 2048},
                       "pytorch": {"peak_gflops_per_s": 99.0}},
            "rows": [{
                "key": "cpu-default", "title": "CPU default", "target": 0.85,
                "train": {"flowvae": {"median_ms": 8.0, "step_ms": [8.0, 8.0], "ratio": 0.8,
                                      "flops_per_step": 4e8, "parameters": 2e6,
                                      "peak_rss_bytes": 1073741824u64},
                          "pytorch": {"median_ms": 10.0}},
                "is": {"flowvae": {"error": "boom"}, "pytorch": {"ms_per_image": 3.0}},
                "ais": {"flowvae": {"ms_per_image_per_100_steps": 12.0, "ratio": 1.2,
                                    "overhead_ratio": 1.1, "images": 2, "anneal_steps": 11},
                        "pytorch": {"ms_per_image_per_100_steps": 10.0}}
            }]
        });
        let md = render_run(&run);
        assert!(
            md.contains("| 8.00 | 10.0 | **0.80** ✓ (≤ 0.85) | 50.0 (50 %) | 40.0 |"),
            "{md}"
        );
        assert!(md.contains("**1.20** ✗ (≤ 0.85) | **1.10** ✓"), "{md}");
        assert!(md.contains("- cpu-default is flowvae: boom"), "{md}");
        assert!(md.contains("1.00 / –"), "{md}");
    }

    #[test]
    fn conditions_get_their_own_table_with_the_defaults_targets() {
        let fig = |ms: f64| json!({"median_ms": ms});
        let row = json!({
            "key": "cpu-default", "title": "CPU default", "target": 0.85, "target_step": 0.85,
            "conditions": {
                "defaults-busy": {
                    "train": {
                        "flowvae": {"median_ms": 30.0, "ratio": 0.5, "ratio_rounds": [0.5],
                                    "threads": 1,
                                    "thread_governor": {"adaptive": true, "changes": 1,
                                        "seconds_at_threads": {"1": 9.5, "2": 0.5}}},
                        "pytorch": {"median_ms": 60.0, "threads": 2}
                    },
                    "is": {"flowvae": {"error": "boom"}, "pytorch": fig(1.0)}
                },
                "equal-spin": {
                    "train": {"flowvae": {"median_ms": 20.0, "ratio": 0.95, "threads": 2},
                              "pytorch": {"median_ms": 21.0, "threads": 2}}
                }
            }
        });
        let md = render_conditions(std::slice::from_ref(&row));
        assert!(
            md.contains("| CPU default | training step, ms | each side's defaults, one busy process | 30.0 | adaptive (1: 9.5 s, 2: 0.5 s) | 60.0 | 2 | **0.50** ✓ (≤ 0.85) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| both libgomp default, same threads | 20.0 | 2 | 21.0 | 2 | **0.95** ✓ (≤ 1) |"
            ),
            "{md}"
        );
        assert!(render_conditions(&[json!({"key": "x"})]).is_empty());
        let run = json!({"rows": [row], "matmul": {}});
        assert!(
            render_run(&run).contains("- cpu-default defaults-busy is flowvae: boom"),
            "{}",
            render_run(&run)
        );
    }
}
