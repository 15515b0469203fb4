//! End-to-end tests of `vae train`: run folder contents read back by vae-io's typed readers,
//! TensorBoard's own reader and Python's safetensors, `metrics.jsonl` agreeing with `train.log`,
//! resumption after `--max-steps` and after Ctrl-C, and config errors.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{model_tensors, python, smoke_command, stderr, tiny_dataset, train_smoke, vae};
use vae_io::results::{EpochMetrics, Progress, TrainResults};
use vae_io::RunDir;

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    train_smoke(data, out, extra)
}

#[test]
fn a_run_writes_everything_and_python_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    let out = train(dir.path(), &run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in [
        "config.json",
        "manifest.json",
        "train.log",
        "metrics.jsonl",
        "results.json",
        "samples.png",
        "reconstructions.png",
    ] {
        assert!(run.join(f).exists(), "{f} is missing");
    }
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("epoch ")).count(),
        2,
        "{log}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["libtorch_version"]
        .as_str()
        .unwrap()
        .starts_with("2.11.0"));
    assert!(manifest["ms_per_step"].as_f64().unwrap() > 0.0);
    // `--threads 1` fixes the count: the governor stays off and says where the time went.
    let governor = &manifest["thread_governor"];
    assert_eq!(governor["adaptive"], serde_json::json!(false), "{manifest}");
    assert_eq!(governor["changes"], serde_json::json!(0), "{manifest}");
    assert!(
        governor["seconds_at_threads"]["1"].as_f64().unwrap() > 0.0,
        "{manifest}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["test"]["images"], 100);
    // The typed reader agrees, and metrics.jsonl has the epochs of train.log.
    let typed = TrainResults::read(&run.join("results.json")).unwrap();
    assert_eq!(typed.test.images, 100);
    assert_eq!(typed.validation.unwrap().images, 200);
    assert_eq!(serde_json::to_value(&typed).unwrap(), results);
    let metrics = RunDir::new(&run).read_metrics().unwrap();
    assert_metrics_agree_with_log(&metrics, &log);
    assert_eq!(typed.best_epoch, Progress::of(&metrics).unwrap().best_epoch);
    let last = metrics.last().unwrap();
    assert_eq!(
        last.validation.unwrap().neg_elbo,
        typed.validation.unwrap().neg_elbo
    );

    // TensorBoard's EventAccumulator: the tags, one value per epoch at steps 1 and 2, and images.
    let script = r#"
import sys, json, struct
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={'images': 0, 'scalars': 0})
ea.Reload()
tags = ea.Tags()
out = {'scalars': {t: [[s.step, s.value] for s in ea.Scalars(t)] for t in tags['scalars']},
       'images': {t: [[i.step] + list(struct.unpack('>II', i.encoded_image_string[16:24]))
                      for i in ea.Images(t)] for t in tags['images']}}
print(json.dumps(out))
"#;
    let tb: serde_json::Value = serde_json::from_str(&python(
        script,
        &[run.join("tensorboard").to_str().unwrap()],
    ))
    .unwrap();
    for tag in [
        "train/neg_elbo",
        "train/rec",
        "train/kl",
        "train/grad_norm",
        "validation/neg_elbo",
        "schedule/warmup",
        "schedule/lr",
    ] {
        let steps: Vec<i64> = tb["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag}"))
            .iter()
            .map(|p| p[0].as_i64().unwrap())
            .collect();
        assert_eq!(steps, [1, 2], "{tag}");
    }
    // The logged -ELBO of epoch 1 is the one in train.log.
    let first = tb["scalars"]["train/neg_elbo"][0][1].as_f64().unwrap();
    let logged: f64 = log
        .lines()
        .find(|l| l.starts_with("epoch    1/"))
        .unwrap()
        .split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert!((first - logged).abs() < 1e-2, "{first} vs {logged}");
    assert_eq!(
        tb["scalars"]["schedule/warmup"][0][1].as_f64().unwrap(),
        0.0
    );
    assert_eq!(
        tb["images"]["samples"],
        serde_json::json!([[1, 302, 302], [2, 302, 302]])
    );
    assert_eq!(
        tb["images"]["reconstructions"][0],
        serde_json::json!([1, 632, 302])
    );

    // Python's safetensors reads the checkpoint with the same names and values.
    let ck = run.join("checkpoints/last.safetensors");
    let script = r#"
import sys, json
from safetensors.numpy import load_file
t = load_file(sys.argv[1])
print(json.dumps({k: [float(v.astype('float64').sum()), list(v.shape)] for k, v in t.items() if not k.startswith('meta')}))
"#;
    let py: serde_json::Value =
        serde_json::from_str(&python(script, &[ck.to_str().unwrap()])).unwrap();
    let ours = model_tensors(&ck);
    assert!(ours.len() > 20);
    for (name, t) in &ours {
        let sum = t
            .to_kind(tch::Kind::Double)
            .sum(tch::Kind::Double)
            .double_value(&[]);
        let theirs = py[name][0]
            .as_f64()
            .unwrap_or_else(|| panic!("python lacks {name}"));
        assert!(
            (sum - theirs).abs() <= 1e-6 * sum.abs().max(1.0),
            "{name}: {sum} vs {theirs}"
        );
        assert_eq!(py[name][1], serde_json::json!(t.size()), "{name}");
    }
}

/// Each `metrics.jsonl` line is the `train.log` epoch line of the same position, number for
/// number at the log's precision.
fn assert_metrics_agree_with_log(metrics: &[EpochMetrics], log: &str) {
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(metrics.len(), lines.len(), "{log}");
    let close = |a: f64, b: &str, tol: f64| {
        let b: f64 = b.parse().unwrap_or_else(|_| panic!("`{b}` in {log}"));
        assert!((a - b).abs() <= tol, "{a} vs {b} in {log}");
    };
    for (m, line) in metrics.iter().zip(lines) {
        // epoch    1/2  train -elbo  210.577 rec  182.621 kl  27.956  warmup 0.000 lr 1.00e-3
        //   valid -elbo  158.437 *  4.7 s
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(w[1], format!("{}/{}", m.epoch, m.epochs), "{line}");
        close(m.train_neg_elbo, w[4], 5e-4);
        close(m.train_rec, w[6], 5e-4);
        close(m.train_kl, w[8], 5e-4);
        close(m.warmup, w[10], 5e-4);
        close(m.lr, w[12], 5e-3 * m.lr);
        close(m.valid_neg_elbo().unwrap(), w[15], 5e-4);
        assert_eq!(w[16] == "*", m.best, "{line}");
        let s = if m.best { 17 } else { 16 };
        close(m.seconds, w[s], 0.05 + 1e-9);
        assert_eq!(w[s + 1..], ["s"], "{line}");
        assert_eq!(m.skipped, 0);
        assert!(m.train_neg_elbo.is_finite() && m.grad_norm > 0.0);
    }
}

#[test]
fn max_steps_then_resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let straight = dir.path().join("straight");
    assert!(train(dir.path(), &straight, &[]).status.success());

    let split = dir.path().join("split");
    let out = train(dir.path(), &split, &["--max-steps", "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped at epoch 2 step 3"),
        "{}",
        stderr(&out)
    );
    assert!(!split.join("results.json").exists());
    // Stopped in epoch 2: one completed epoch on record.
    let p = Progress::read(&split.join("metrics.jsonl"))
        .unwrap()
        .unwrap();
    assert_eq!((p.epochs_done, p.epochs_total, p.epochs_run), (1, 2, 1));
    let out = vae(
        dir.path(),
        &[
            "train",
            "--resume",
            split.to_str().unwrap(),
            "--threads",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let a = model_tensors(&straight.join("checkpoints/last.safetensors"));
    let b = model_tensors(&split.join("checkpoints/last.safetensors"));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let d = (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        assert!(d < 1e-6, "{name} differs by {d}");
    }
    let results = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p.join("results.json")).unwrap()).unwrap()
    };
    assert_eq!(results(&straight)["test"], results(&split)["test"]);
    // The resumed run's metrics.jsonl continues where it stopped: the same epochs with the same
    // numbers as the uninterrupted run's, the mean gradient norm included. Only the times differ.
    let untimed = |dir: &Path| -> Vec<EpochMetrics> {
        let metrics = RunDir::new(dir).read_metrics().unwrap();
        let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
        assert_metrics_agree_with_log(&metrics, &log);
        metrics
            .into_iter()
            .map(|m| EpochMetrics {
                seconds: 0.0,
                end_time: String::new(),
                ..m
            })
            .collect()
    };
    let (a, b) = (untimed(&straight), untimed(&split));
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
    assert_eq!(b[1].global_step, 12);
}

/// Without `--threads` the thread count follows the machine's load (the governor is on
/// wherever `/proc/stat` lists exactly the cores this process may use, as on Linux machines
/// and VMs without a CPU restriction); `OMP_NUM_THREADS` hands the choice back to the user.
#[test]
fn the_thread_governor_is_on_by_default_and_off_under_omp_num_threads() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 400, 100);
    let cores = std::thread::available_parallelism().unwrap().get();
    let listed = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    let cfg = common::configs().join("smoke.json");
    for (omp, adaptive) in [(None, cores > 1 && listed == cores), (Some("1"), false)] {
        let run = dir.path().join(format!("run-{omp:?}"));
        let mut cmd = common::command(
            dir.path(),
            &[
                "train",
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                run.to_str().unwrap(),
            ],
        );
        cmd.args(["--set", "data.validation=100", "--max-steps", "3"]);
        cmd.env_remove("OMP_NUM_THREADS");
        if let Some(n) = omp {
            cmd.env("OMP_NUM_THREADS", n);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(
            manifest["thread_governor"]["adaptive"],
            serde_json::json!(adaptive),
            "OMP_NUM_THREADS={omp:?}: {manifest}"
        );
    }
}

#[test]
fn ctrl_c_checkpoints_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let run = dir.path().join("run");
    let child = smoke_command(dir.path(), &run, &["--set", "train.epochs=1000"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first completed epoch, then interrupt.
    let start = Instant::now();
    while !std::fs::read_to_string(run.join("train.log"))
        .unwrap_or_default()
        .contains("epoch    1/")
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch finished in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("continue with: vae train --resume"), "{log}");
    assert!(run.join("checkpoints/last.safetensors").exists());
}

#[test]
fn config_errors_name_the_key_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path(), 800, 100);
    let out = train(
        dir.path(),
        &dir.path().join("r"),
        &["--set", "train.batch_sise=10"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown field `batch_sise`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("smoke.json"), "{}", stderr(&out));
    let out = train(
        dir.path(),
        &dir.path().join("r"),
        &["--set", "model.flow.hidden=[30]"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("30"), "{}", stderr(&out));
    let out = train(dir.path(), &dir.path().join("r"), &["--device", "cuda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no CUDA device is available"),
        "{}",
        stderr(&out)
    );
    // Resuming with another architecture is refused and names the difference.
    let run = dir.path().join("ok");
    assert!(train(dir.path(), &run, &["--max-steps", "2"])
        .status
        .success());
    // --out with --resume was silently ignored: now refused.
    let out = vae(
        dir.path(),
        &[
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--out",
            "elsewhere",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
    let out = vae(
        dir.path(),
        &[
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--set",
            "model.latent=16",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("model.latent: 8 -> 16"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = vae(
        dir.path(),
        &[
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--set",
            "model.latent=16",
            "--force",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("another architecture"),
        "{}",
        stderr(&out)
    );
}
