//! A checkpoint loads for inference without a trainer: [`Vae::load`] gives the trained model's
//! exact function (same ELBO terms, same IS estimate) with frozen variables, and a refused file
//! names what is wrong.

use std::sync::atomic::AtomicBool;

use tch::{Device, Kind, Tensor};
use vae_data::{Dataset, DatasetKind, Split, SplitConfig, SplitKind};
use vae_flows::FlowConfig;
use vae_model::{evaluation_split, Checkpoint, ExperimentConfig, ModelConfig, TrainConfig};
use vae_model::{Trainer, Vae, VaeLatentModel};
use vae_nets::{DecoderConfig, EncoderConfig};

fn data() -> Dataset {
    // 200 training, 50 validation and 50 test images of arbitrary grey levels; deterministic.
    let n = 300;
    let pixels = (0..n * 784)
        .map(|i| ((i * 7919 + i / 784 * 31) % 256) as u8)
        .collect();
    let all = Split {
        pixels,
        labels: vec![0; n],
    };
    Dataset::from_splits(
        DatasetKind::Mnist,
        all.slice(0..250),
        all.slice(250..300),
        SplitConfig { validation: 50 },
    )
    .unwrap()
}

fn cfg() -> ExperimentConfig {
    ExperimentConfig {
        model: ModelConfig {
            latent: 4,
            encoder: EncoderConfig::mlp(vec![32]),
            decoder: DecoderConfig::mlp(vec![32]),
            flow: Some(FlowConfig {
                layers: 2,
                hidden: vec![16],
                context_size: 16,
                ..Default::default()
            }),
            ..Default::default()
        },
        train: TrainConfig {
            epochs: 1,
            batch_size: 50,
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A trainer after one epoch (so BN statistics and weights differ from their initial values),
/// its checkpoint written to `dir`.
fn trained(dir: &std::path::Path) -> (Trainer, std::path::PathBuf) {
    let mut t = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    t.run_epoch(&AtomicBool::new(false), None, |_| {}).unwrap();
    let ck = dir.join("best.safetensors");
    t.save_checkpoint(&ck).unwrap();
    (t, ck)
}

fn images(split: &Split, n: usize) -> Tensor {
    Tensor::from_slice(&split.pixels[..n * 784])
        .to_kind(Kind::Float)
        .view([n as i64, 1, 28, 28])
        / 255.0
}

#[test]
fn a_loaded_vae_is_the_trained_function() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let (trainer, path) = trained(dir.path());
    let loaded = Vae::load(&path, Device::Cpu).unwrap();
    let x = images(trainer.split(SplitKind::Test), 20);
    let eps = Tensor::randn([20, 4], (Kind::Float, Device::Cpu));
    let a = trainer.vae().elbo_terms_with_noise(&x, &eps, false);
    let b = loaded.elbo_terms_with_noise(&x, &eps, false);
    assert!(
        a.rec.equal(&b.rec) && a.kl.equal(&b.kl),
        "ELBO terms differ"
    );
    for (name, var) in loaded.var_store().unwrap().variables() {
        assert!(!var.requires_grad(), "{name} requires grad after load");
    }
    let config = vae_eval::IsConfig {
        num_samples: 50,
        seed: 9,
        ..Default::default()
    };
    let est = |vae: &Vae| {
        let m = VaeLatentModel::new(vae, Device::Cpu);
        vae_eval::importance_sampling(&m, &x, &config, &mut |_, _| {}).unwrap()
    };
    let (ra, rb) = (est(trainer.vae()), est(&loaded));
    assert_eq!(ra.log_px, rb.log_px);
    // IS left to the model sized its calls from the model's activation estimate.
    assert_eq!(
        rb.config.max_rows,
        Some(vae_model::cost::is_max_rows(&cfg().model))
    );
}

#[test]
fn evaluation_splits_are_the_trainers() {
    let t = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    let d = data();
    for which in [SplitKind::Validation, SplitKind::Test] {
        assert_eq!(evaluation_split(&d, &cfg(), which), *t.split(which));
    }
}

#[test]
fn a_checkpoint_tells_its_config_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let (trainer, path) = trained(dir.path());
    let ck = Checkpoint::read(&path).unwrap();
    assert_eq!(ck.config(), trainer.config());
    assert_eq!(ck.state(), trainer.state());
    assert_eq!(ck.state().epochs_done, 1);
}

#[test]
fn refused_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.safetensors");
    let msg = Vae::load(&missing, Device::Cpu).unwrap_err().to_string();
    assert!(
        msg.contains("none.safetensors") && msg.contains("does not exist"),
        "{msg}"
    );

    let (_, path) = trained(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1000; // inside the tensor data, past the header
    bytes[last] ^= 0x40;
    let bad = dir.path().join("flipped.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let msg = Vae::load(&bad, Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("integrity check failed"), "{msg}");

    std::fs::write(&bad, b"not a checkpoint").unwrap();
    let msg = Vae::load(&bad, Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("not a readable safetensors file"), "{msg}");
}

/// A folder or a device given as a checkpoint is refused before any read (a FIFO or a device
/// would block it or never end).
#[test]
fn a_checkpoint_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for path in [dir.path(), std::path::Path::new("/dev/null")] {
        let e = vae_model::Checkpoint::read(path).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{}: {e}", path.display());
    }
}

/// Rewrites the safetensors file `src` into `dst` with `edit` applied to each `(name, dtype,
/// shape, bytes)`.
fn rewrite(
    src: &std::path::Path,
    dst: &std::path::Path,
    edit: impl Fn(&str, &mut safetensors::Dtype, &mut Vec<u8>),
) {
    use safetensors::tensor::{serialize_to_file, TensorView};
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    for (n, dtype, shape, data) in owned.iter_mut() {
        edit(n, dtype, data);
        // meta.json is a byte vector: its length follows an edit.
        if *dtype == safetensors::Dtype::U8 && shape.len() == 1 {
            shape[0] = data.len();
        }
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    serialize_to_file(views, &None, dst).unwrap();
}

/// Everything that is loaded is covered by the checkpoint's integrity sum: an edited training
/// state (the epoch counter in meta.json) or a tensor's dtype changed in the header (same bytes)
/// is refused; the untouched file, rewritten the same way, still loads.
#[test]
fn edited_state_or_dtypes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ck) = trained(dir.path());
    let same = dir.path().join("same.safetensors");
    rewrite(&ck, &same, |_, _, _| {});
    Checkpoint::read(&same).unwrap();
    let edited = dir.path().join("edited.safetensors");
    rewrite(&ck, &edited, |name, _, data| {
        if name == "meta.json" {
            let text = String::from_utf8(data.clone()).unwrap();
            let changed = text.replacen("\"epochs_done\":1", "\"epochs_done\":7", 1);
            assert_ne!(text, changed, "the state names epochs_done: {text}");
            *data = changed.into_bytes();
        }
    });
    let e = Checkpoint::read(&edited).unwrap_err().to_string();
    assert!(e.contains("integrity check failed"), "{e}");
    let retyped = dir.path().join("retyped.safetensors");
    rewrite(&ck, &retyped, |name, dtype, _| {
        if name.starts_with("model.") && *dtype == safetensors::Dtype::F32 {
            *dtype = safetensors::Dtype::I32;
        }
    });
    let e = Checkpoint::read(&retyped).unwrap_err().to_string();
    assert!(e.contains("integrity check failed"), "{e}");
    // A checkpoint from before the integrity sum (its meta.json without it) is still checked by
    // its checksum over the tensors' bytes.
    let old = dir.path().join("old.safetensors");
    rewrite(&ck, &old, |name, _, data| {
        if name == "meta.json" {
            let mut meta: serde_json::Value = serde_json::from_slice(data).unwrap();
            meta.as_object_mut().unwrap().remove("integrity");
            *data = serde_json::to_vec(&meta).unwrap();
        }
    });
    Checkpoint::read(&old).unwrap();
    rewrite(&ck, &old, |name, _, data| {
        if name == "meta.json" {
            let mut meta: serde_json::Value = serde_json::from_slice(data).unwrap();
            meta.as_object_mut().unwrap().remove("integrity");
            *data = serde_json::to_vec(&meta).unwrap();
        } else if name.starts_with("model.") && !data.is_empty() {
            data[0] ^= 0x40;
        }
    });
    let e = Checkpoint::read(&old).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
}
