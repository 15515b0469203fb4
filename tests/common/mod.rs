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

/// `vae eval --run RUN --out OUT --threads 1` plus `extra` (split at spaces).
pub fn eval_run(data: &Path, run: &Path, out: &Path, extra: &str) -> Output {
    let mut args = vec![
        "eval",
        "--run",
        run.to_str().expect("UTF-8 path"),
        "--out",
        out.to_str().expect("UTF-8 path"),
        "--threads",
        "1",
    ];
    args.extend(extra.split_whitespace());
    vae(data, &args)
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a tiny MNIST-shaped dataset of `n_train` training and `n_test` test images into
/// `dir/mnist` (`vae_io::fixture`, shared with xtask's sweep tests).
pub fn tiny_dataset(dir: &Path, n_train: usize, n_test: usize) {
    vae_io::fixture::write_tiny_mnist(dir, n_train, n_test).expect("writing the tiny dataset");
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

/// `f(i, item)` for every item of `items`, two at a time (the project machine's two cores), the
/// results in the items' order.
pub fn two_at_a_time<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(usize, &T) -> R + Sync + Send,
) -> Vec<R> {
    use rayon::prelude::*;
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a pool of two threads for the test")
        .install(|| items.par_iter().enumerate().map(|(i, t)| f(i, t)).collect())
}
