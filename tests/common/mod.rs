//! Helpers shared by the end-to-end tests: running `vae`, and tiny MNIST-shaped datasets.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `vae` binary with `FLOWVAE_DATA` pointing at `data`.
pub fn vae(data: &Path, args: &[&str]) -> Output {
    command(data, args).output().expect("the vae binary runs")
}

/// The `vae` command, not started.
pub fn command(data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vae"));
    c.args(args).env("FLOWVAE_DATA", data);
    c
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes an MNIST-shaped dataset of `n_train` training and `n_test` test images. Image `i` is a
/// blob whose position depends on its label `i % 10`, so there is something to learn.
pub fn tiny_dataset(dir: &Path, n_train: usize, n_test: usize) {
    let d = dir.join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    let idx = |dims: &[u32], data: Vec<u8>| {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        dims.iter()
            .for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
        out.extend(data);
        out
    };
    let image = |i: usize| -> Vec<u8> {
        let label = i % 10;
        let (cy, cx) = (6 + (label / 5) * 14, 3 + (label % 5) * 5);
        (0..784)
            .map(|p| {
                let (y, x) = (p / 28, p % 28);
                let d2 = (y as i64 - cy as i64).pow(2) + (x as i64 - cx as i64).pow(2);
                if d2 < 16 {
                    200 + (i % 50) as u8
                } else {
                    (i * 7 + p) as u8 % 8
                }
            })
            .collect()
    };
    let images = |r: std::ops::Range<usize>| r.flat_map(image).collect::<Vec<u8>>();
    let labels = |r: std::ops::Range<usize>| r.map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    let (t, e) = (n_train as u32, n_test as u32);
    std::fs::write(
        d.join("train-images-idx3-ubyte"),
        idx(&[t, 28, 28], images(0..n_train)),
    )
    .unwrap();
    std::fs::write(
        d.join("train-labels-idx1-ubyte"),
        idx(&[t], labels(0..n_train)),
    )
    .unwrap();
    let test = n_train..n_train + n_test;
    std::fs::write(
        d.join("t10k-images-idx3-ubyte"),
        idx(&[e, 28, 28], images(test.clone())),
    )
    .unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx(&[e], labels(test))).unwrap();
}

/// The repository's `configs/` folder.
pub fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// The Python test tools installed by `cargo xtask bootstrap`.
pub fn python_tools() -> PathBuf {
    let cache = std::env::var_os("FLOWVAE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/flowvae")
        });
    let dir = cache.join("python-tools");
    assert!(
        dir.join("tensorboard").exists(),
        "{} is missing: run `cargo xtask bootstrap`",
        dir.display()
    );
    dir
}

/// Runs a Python snippet with the test tools on its path; returns its standard output.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", python_tools())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vae train` of configs/smoke.json into `out` on the dataset in `data`, with 200 validation
/// images and one thread, plus `extra` arguments; not started.
pub fn smoke_command(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let cfg = configs().join("smoke.json");
    let mut c = command(
        data,
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    c.args(["--set", "data.validation=200", "--threads", "1"])
        .args(extra);
    c
}

/// Runs [`smoke_command`] to the end.
pub fn train_smoke(data: &Path, out: &Path, extra: &[&str]) -> Output {
    smoke_command(data, out, extra)
        .output()
        .expect("the vae binary runs")
}

/// The `model.*` and `adam.*` tensors of a checkpoint, sorted by name.
pub fn model_tensors(ck: &Path) -> Vec<(String, tch::Tensor)> {
    let mut t: Vec<_> = tch::Tensor::read_safetensors(ck)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("model.") || k.starts_with("adam."))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}
