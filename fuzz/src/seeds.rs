//! The seed inputs of every fuzz target, written by the `seeds` target into
//! `fuzz/corpus/<target>/seed-*`: small valid inputs (and a few near-valid ones) from which the
//! fuzzer mutates.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use serde_json::{json, Value};
use vae_data::idx::{self, IdxImages};
use vae_flows::{ContextMode, FlowConfig, FlowKind};
use vae_model::{ExperimentConfig, ModelConfig, Trainer};
use vae_nets::{DecoderConfig, EncoderConfig};
use xtask::mnist_pickle::{numpy_style_pickle as pickle, test_split as split};

/// Writes every seed below `corpus`; returns how many files it wrote.
pub fn write_all(corpus: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let mut put = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        n += 1;
        Ok(())
    };
    for (name, bytes) in idx_seeds() {
        put("idx", &name, &bytes)?;
    }
    for (name, bytes) in pickle_seeds() {
        put("mnist_pickle", &name, &bytes)?;
    }
    for (name, bytes) in config_seeds()? {
        put("config", &name, &bytes)?;
    }
    for (name, bytes) in sweep_seeds()? {
        put("sweep", &name, &bytes)?;
    }
    let checkpoints = checkpoint_seeds()?;
    for (name, bytes) in &checkpoints {
        put("checkpoint", name, bytes)?;
        let (header, meta) = checkpoint_parts(bytes)?;
        put("checkpoint_header", name, &header)?;
        put("checkpoint_meta", name, &meta)?;
    }
    for (name, bytes) in sweep_seeds()? {
        put("sweep_plan", &name, &bytes)?;
    }
    Ok(n)
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

fn images(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    idx::encode_images(&IdxImages {
        count,
        rows,
        cols,
        pixels: (0..count * rows * cols)
            .map(|i| (i * 37 % 256) as u8)
            .collect(),
    })
}

/// The `idx` target's two-file layout: the images file's length (u16, little-endian) first.
fn pair(images: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut v = (images.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(images);
    v.extend_from_slice(labels);
    v
}

fn idx_seeds() -> Vec<(String, Vec<u8>)> {
    let labels = idx::encode_labels(&[7, 2, 1]);
    vec![
        ("labels".into(), labels.clone()),
        ("labels-empty".into(), idx::encode_labels(&[])),
        ("images-2x3".into(), images(2, 2, 3)),
        ("images-28x28".into(), images(1, 28, 28)),
        ("images-none".into(), images(0, 28, 28)),
        (
            "pair".into(),
            pair(&images(3, 28, 28)[..16], &idx::encode_labels(&[])),
        ),
        (
            "pair-one".into(),
            pair(&images(1, 28, 28), &idx::encode_labels(&[3])),
        ),
        (
            "pair-empty".into(),
            pair(&images(0, 28, 28), &idx::encode_labels(&[])),
        ),
        ("labels-gz".into(), gzip(&labels)),
        ("images-gz".into(), gzip(&images(1, 2, 3))),
    ]
}

fn pickle_seeds() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "empty-splits".into(),
            pickle(&[split(0, 0), split(0, 0), split(0, 0)]),
        ),
        (
            "one-image-each".into(),
            pickle(&[split(1, 5), split(1, 0), split(1, 7)]),
        ),
        (
            "bad-label".into(),
            pickle(&[split(0, 0), (vec![0.5; 784], vec![12]), split(0, 0)]),
        ),
    ]
}

fn model(encoder: EncoderConfig, decoder: DecoderConfig, flow: Option<FlowConfig>) -> ModelConfig {
    ModelConfig {
        latent: 4,
        encoder,
        decoder,
        flow,
        ..Default::default()
    }
}

fn config_seeds() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("configs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((format!("run-{name}"), std::fs::read(&path)?));
        }
    }
    let smoke = std::fs::read(root().join("configs/smoke.json"))?;
    out.push((
        "run-smoke-set".into(),
        [
            &smoke[..],
            b"\0model.latent=2\0model.flow.hidden=[4,4]\0model.flow.context_size=4\0train.seed=3",
        ]
        .concat(),
    ));
    out.push((
        "run-smoke-noflow".into(),
        [&smoke[..], b"\0model.flow=null\0data.dataset=fashion-mnist"].concat(),
    ));
    let mlp = |h: Vec<i64>| EncoderConfig::mlp(h);
    let dmlp = |h: Vec<i64>| DecoderConfig::mlp(h);
    let flow = FlowConfig {
        layers: 2,
        hidden: vec![8],
        context_size: 8,
        ..Default::default()
    };
    let models = [
        ("tiny", crate::tiny_model()),
        (
            "mlp-flow",
            model(mlp(vec![16]), dmlp(vec![16]), Some(flow.clone())),
        ),
        (
            "linear-context",
            model(
                mlp(vec![8, 8]),
                dmlp(vec![]),
                Some(FlowConfig {
                    context: ContextMode::Linear,
                    context_size: 3,
                    hidden: vec![8, 4],
                    shift_only: true,
                    normalization: vae_flows::config::Normalization::None,
                    ..flow.clone()
                }),
            ),
        ),
        (
            "identity-flow",
            model(
                mlp(vec![]),
                dmlp(vec![4]),
                Some(FlowConfig {
                    kind: FlowKind::Identity,
                    ..flow.clone()
                }),
            ),
        ),
        (
            "gated-conv",
            model(EncoderConfig::GatedConv, DecoderConfig::GatedConv, None),
        ),
        ("resnet", model(EncoderConfig::Resnet, dmlp(vec![8]), None)),
    ];
    for (name, m) in models {
        let cfg = ExperimentConfig {
            model: m,
            ..crate::tiny_experiment()
        };
        out.push((
            format!("experiment-{name}"),
            serde_json::to_vec_pretty(&cfg).expect("a config serializes"),
        ));
    }
    out.push(("experiment-empty".into(), b"{}".to_vec()));
    Ok(out)
}

fn sweep_seeds() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("configs/sweeps"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut v: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            v["base"] = json!("base.json");
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((
                format!("file-{name}"),
                serde_json::to_vec_pretty(&v).expect("JSON"),
            ));
        }
    }
    let seeds = [
        (
            "grid",
            json!({
                "base": "base.json",
                "grid": {"model.latent": [8, 16], "data.dataset": ["mnist", "fashion-mnist"]},
                "x_key": "model.latent",
                "eval": {"method": "ais", "n": 10, "args": ["--steps", "5"]},
            }),
        ),
        (
            "variants-unlabelled",
            json!({
                "name": "v",
                "base": "base.json",
                "set": {"train.epochs": 1},
                "variants": [
                    {"set": {"model.flow": null}},
                    {"set": {"model.flow.layers": 2, "train.learning_rate": 0.0005}}
                ],
                "seeds": [0, 18446744073709551615u64],
                "device": "cuda",
                "x_label": "layers",
                "slurm": {"partition": "cpu", "gpus": 1, "extra": ["--account=ml"]}
            }),
        ),
        ("minimal", json!({"base": "base.json"})),
    ];
    for (name, v) in seeds {
        out.push((
            format!("spec-{name}"),
            serde_json::to_vec(&v).expect("JSON"),
        ));
    }
    Ok(out)
}

fn checkpoint_seeds() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let dir = crate::scratch_dir("seeds");
    let file = dir.join("ck.safetensors");
    let save = |t: &Trainer| -> std::io::Result<Vec<u8>> {
        t.save_checkpoint(&file).map_err(std::io::Error::other)?;
        std::fs::read(&file)
    };
    let mut out = Vec::new();
    let mut t = crate::tiny_trainer();
    out.push(("fresh".into(), save(&t)?));
    let stop = AtomicBool::new(false);
    t.run_epoch(&stop, None, |_| {})
        .map_err(std::io::Error::other)?;
    out.push(("one-epoch".into(), save(&t)?));
    // Stopped in the middle of the second epoch: a partial epoch in the state.
    let at = t.state().global_step + 1;
    t.run_epoch(&stop, Some(at), |_| {})
        .map_err(std::io::Error::other)?;
    out.push(("mid-epoch".into(), save(&t)?));
    // Another architecture: loads as a config, refused by the trainer.
    let other = ExperimentConfig {
        model: ModelConfig {
            flow: None,
            ..crate::tiny_model()
        },
        ..crate::tiny_experiment()
    };
    let t = Trainer::new(other, crate::tiny_dataset(), tch::Device::Cpu)
        .map_err(std::io::Error::other)?;
    out.push(("other-architecture".into(), save(&t)?));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// A checkpoint's safetensors header (the `checkpoint_header` target's input) and the covered
/// part of its `meta.json` (the `checkpoint_meta` target's input).
fn checkpoint_parts(bytes: &[u8]) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let bad = |what: &str| std::io::Error::other(format!("seed checkpoint: {what}"));
    let n = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| bad("short"))?) as usize;
    let header = bytes.get(8..8 + n).ok_or_else(|| bad("header"))?.to_vec();
    let file = crate::scratch_file("parts.safetensors");
    std::fs::write(&file, bytes)?;
    let tensors = tch::Tensor::read_safetensors(&file).map_err(std::io::Error::other)?;
    let _ = std::fs::remove_file(&file);
    let meta = tensors
        .iter()
        .find(|(k, _)| k == "meta.json")
        .ok_or_else(|| bad("no meta.json"))?;
    let meta = Vec::<u8>::try_from(&meta.1).map_err(std::io::Error::other)?;
    let mut covered: Value = serde_json::from_slice(&meta)?;
    if let Some(m) = covered.as_object_mut() {
        m.remove("checksum");
        m.remove("integrity");
    }
    Ok((header, serde_json::to_vec(&covered)?))
}
