//! The PyTorch reference of `cargo xtask bench` (`benches/reference/flowvae_ref.py`) computes the
//! same ELBO as flowvae for the same weights, batch and noise, so the benchmark's ratios compare
//! the same work.
//!
//! For each architecture of the benchmark (MLP, gated conv, ResNet, with and without the cMADE's
//! options), a `Trainer` writes a real checkpoint; flowvae and the reference then evaluate the
//! per-example reconstruction loss and KL with the same `x` and `eps`, in eval mode and then in
//! train mode (batch statistics), in f64 (to 1e-4 nats) and in f32 (to 1e-4 relative).
//!
//! The reference needs an importable torch 2.11.0, which `cargo xtask bench` installs into
//! `<cache>/torch-python` (tests never download), so the test is `#[ignore]`d; `cargo xtask
//! test` runs it where that folder is ready, and `--ignored` runs it by hand (failing without it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{nn, Device, Kind, Tensor};
use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
use vae_model::{ExperimentConfig, ModelConfig, Trainer, Vae};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The folder holding an importable `torch` (FLOWVAE_TORCH_PYTHON, else the bench's install).
fn torch_python() -> Option<PathBuf> {
    let dir = match std::env::var_os("FLOWVAE_TORCH_PYTHON") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("FLOWVAE_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/flowvae"))
                })?;
            cache.join("torch-python")
        }
    };
    // `cargo xtask bench` writes this marker once `import torch` has worked there.
    let version = std::fs::read_to_string(dir.join("torch/version.py")).ok()?;
    (version.contains("__version__ = '2.11.0") && dir.join(".flowvae-importable").exists())
        .then_some(dir)
}

fn model_of(config: &str, edit: impl FnOnce(&mut serde_json::Value)) -> ModelConfig {
    let text = std::fs::read_to_string(root().join("configs").join(config)).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut model = v["model"].take();
    edit(&mut model);
    serde_json::from_value(model).unwrap()
}

/// The benchmark's architectures, with the seed configs' flows narrowed (1920 → 128) so that the
/// test stays small; the layer structure is the same.
fn cases() -> Vec<(&'static str, ModelConfig)> {
    let narrow = |m: &mut serde_json::Value| {
        m["flow"]["hidden"] = serde_json::json!([128, 128]);
        m["flow"]["context_size"] = 128.into();
    };
    vec![
        ("cpu-default", model_of("mnist-mlp-iaf-cpu.json", |_| {})),
        ("seed-mlp", model_of("seed-mnist-mlp.json", narrow)),
        (
            "seed-gatedconv",
            model_of("seed-mnist-gatedconv.json", narrow),
        ),
        ("seed-resnet", model_of("seed-mnist-resnet.json", narrow)),
        (
            "options",
            model_of("mnist-mlp-iaf-cpu.json", |m| {
                m["encoder"]["hidden"] = serde_json::json!([100]);
                m["decoder"]["hidden"] = serde_json::json!([]);
                m["flow"] = serde_json::json!({
                    "layers": 3, "hidden": [64, 32], "batch_norm": false,
                    "context": "linear", "context_size": 16, "shift_only": false
                });
                m["likelihood"] = "clipped_probabilities".into();
            }),
        ),
        (
            "shift-only",
            model_of("mnist-mlp-iaf-cpu.json", |m| {
                m["flow"] = serde_json::json!({
                    "layers": 2, "hidden": [64], "context_size": 0, "shift_only": true
                });
            }),
        ),
    ]
}

fn split(n: usize, seed: u8) -> Split {
    let pixels = (0..n * 784)
        .map(|i| ((i * 37 + seed as usize * 11) % 256) as u8)
        .collect();
    Split {
        pixels,
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

/// A checkpoint written by flowvae's own trainer, seeded initial weights.
fn write_checkpoint(model: &ModelConfig, path: &Path) {
    let mut cfg = ExperimentConfig {
        model: model.clone(),
        ..Default::default()
    };
    cfg.data.validation = 0;
    cfg.train.batch_size = 4;
    let data = Dataset::from_splits(
        DatasetKind::Mnist,
        split(8, 1),
        split(4, 2),
        SplitConfig { validation: 0 },
    )
    .unwrap();
    let trainer = Trainer::new(cfg, data, Device::Cpu).unwrap();
    trainer.save_checkpoint(path).unwrap();
}

/// flowvae's rec and kl (eval, then train mode) for the checkpoint's weights, in `kind`.
fn flowvae_terms(
    model: &ModelConfig,
    checkpoint: &Path,
    x: &Tensor,
    eps: &Tensor,
    kind: Kind,
) -> HashMap<String, Tensor> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let vae = Vae::new(&vs.root(), model).unwrap();
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(checkpoint)
        .unwrap()
        .into_iter()
        .collect();
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            var.copy_(&saved[&format!("model.{name}")]);
        }
    });
    if kind == Kind::Double {
        vs.double();
    }
    let mut out = HashMap::new();
    tch::no_grad(|| {
        for (mode, train) in [("eval", false), ("train", true)] {
            let t = vae.elbo_terms_with_noise(&x.to_kind(kind), &eps.to_kind(kind), train);
            out.insert(format!("rec_{mode}"), t.rec.to_kind(Kind::Double));
            out.insert(format!("kl_{mode}"), t.kl.to_kind(Kind::Double));
        }
    });
    out
}

fn reference_terms(
    torch: &Path,
    checkpoint: &Path,
    inputs: &Path,
    out: &Path,
    double: bool,
) -> HashMap<String, Tensor> {
    let script = root().join("benches/reference/flowvae_ref.py");
    let mut cmd = Command::new(std::env::var("FLOWVAE_PYTHON").unwrap_or("python3".into()));
    cmd.arg(&script)
        .arg("elbo")
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--inputs")
        .arg(inputs)
        .arg("--out")
        .arg(out)
        .env("PYTHONPATH", torch)
        .env("OMP_NUM_THREADS", "2");
    if double {
        cmd.arg("--double");
    }
    let o = cmd.output().expect("python3 runs");
    assert!(
        o.status.success(),
        "the reference failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Tensor::read_safetensors(out)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.to_kind(Kind::Double)))
        .collect()
}

#[test]
#[ignore = "needs an importable torch 2.11.0 in <cache>/torch-python (`cargo xtask bench` \
            installs it; FLOWVAE_TORCH_PYTHON overrides); `cargo xtask test` runs it where it is"]
fn reference_gives_flowvaes_elbo() {
    let torch = torch_python().expect(
        "no importable torch 2.11.0 in <cache>/torch-python: run `cargo xtask bench` once to \
         install it, or set FLOWVAE_TORCH_PYTHON",
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, model) in cases() {
        let ck = dir.path().join(format!("{name}.safetensors"));
        write_checkpoint(&model, &ck);
        tch::manual_seed(7);
        let b = 6;
        let x = Tensor::rand([b, 1, 28, 28], (Kind::Double, Device::Cpu))
            .gt(0.7)
            .to_kind(Kind::Double);
        let eps = Tensor::randn([b, model.latent], (Kind::Double, Device::Cpu));
        let inputs = dir.path().join(format!("{name}.in.safetensors"));
        Tensor::write_safetensors(
            &[("x", x.shallow_clone()), ("eps", eps.shallow_clone())],
            &inputs,
        )
        .unwrap();
        for (kind, double) in [(Kind::Double, true), (Kind::Float, false)] {
            let ours = flowvae_terms(&model, &ck, &x, &eps, kind);
            let out = dir.path().join(format!("{name}.{double}.out.safetensors"));
            let theirs = reference_terms(&torch, &ck, &inputs, &out, double);
            for (key, a) in &ours {
                let r = &theirs[key];
                assert_eq!(a.size(), r.size(), "{name} {key}");
                let diff = (a - r).abs().max().double_value(&[]);
                let scale = a.abs().max().double_value(&[]).max(1.0);
                let (tol, what) = if double {
                    (1e-4, "nats")
                } else {
                    (1e-4 * scale, "nats (1e-4 relative)")
                };
                assert!(
                    diff <= tol,
                    "{name} {key} {kind:?}: flowvae and the reference differ by {diff} {what}\n\
                     flowvae   {a}\nreference {r}"
                );
                println!(
                    "{name:14} {key:9} {kind:?}: max |diff| = {diff:.2e} (values ~{scale:.1})"
                );
            }
        }
    }
}
