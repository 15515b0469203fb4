//! Training with a learned prior resumes exactly, as with the standard normal one (resume.rs):
//! the prior's variables are checkpointed with the rest (under `model.prior.*`) and Adam's
//! moments for them too.

use std::sync::atomic::AtomicBool;

use tch::Device;
use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
use vae_model::{ExperimentConfig, Trainer};

fn data() -> Dataset {
    // 300 training, 100 validation and 100 test images of arbitrary grey levels; deterministic.
    let n = 500;
    let pixels = (0..n * 784)
        .map(|i| ((i * 7919 + i / 784 * 31) % 256) as u8)
        .collect();
    let all = Split {
        pixels,
        labels: vec![0; n],
    };
    Dataset::from_splits(
        DatasetKind::Mnist,
        all.slice(0..400),
        all.slice(400..500),
        SplitConfig { validation: 100 },
    )
    .unwrap()
}

/// resume.rs's tiny flow-VAE with the prior `prior`.
fn cfg(prior: serde_json::Value) -> ExperimentConfig {
    serde_json::from_value(serde_json::json!({
        "model": {
            "latent": 4,
            "encoder": {"type": "mlp", "hidden": [32]},
            "decoder": {"type": "mlp", "hidden": [32]},
            "flow": {"layers": 2, "hidden": [16], "context_size": 16},
            "batch_norm": {"momentum": 0.01},
            "prior": prior,
        },
        "train": {"epochs": 2, "batch_size": 50, "warmup_epochs": 1, "seed": 3},
    }))
    .unwrap()
}

fn steps(t: &mut Trainer) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let stop = AtomicBool::new(false);
    let _ = t
        .run_epoch(&stop, None, |s| out.push((s.rec, s.kl)))
        .unwrap();
    out
}

fn weights(t: &Trainer) -> Vec<(String, tch::Tensor)> {
    let mut v: Vec<_> = t.var_store().variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn every_prior_resumes_exactly() {
    tch::set_num_threads(1);
    for prior in [
        serde_json::json!({"kind": "mog", "components": 3}),
        serde_json::json!({"kind": "vampprior", "pseudo_inputs": 10}),
        serde_json::json!({"kind": "flow", "layers": 2, "hidden": [8]}),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("last.safetensors");
        let c = cfg(prior.clone());

        let mut straight = Trainer::new(c.clone(), data(), Device::Cpu).unwrap();
        let mut losses = steps(&mut straight);
        losses.extend(steps(&mut straight));
        assert_eq!(losses.len(), 12);

        let mut first = Trainer::new(c.clone(), data(), Device::Cpu).unwrap();
        let mut resumed = steps(&mut first);
        first.save_checkpoint(&ck).unwrap();
        let saved = vae_model::Checkpoint::read(&ck).unwrap();
        let prior_tensors = saved
            .tensors()
            .keys()
            .filter(|k| k.starts_with("model.prior."))
            .count();
        assert!(
            prior_tensors > 0,
            "{prior}: no prior tensor in the checkpoint"
        );
        assert!(
            saved
                .tensors()
                .keys()
                .any(|k| k.starts_with("adam.m.prior.")),
            "{prior}: no Adam moment for the prior"
        );
        let mut second = Trainer::new(c, data(), Device::Cpu).unwrap();
        second.load_checkpoint(&ck).unwrap();
        resumed.extend(steps(&mut second));

        for (i, (a, b)) in losses.iter().zip(&resumed).enumerate() {
            assert!(
                (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6,
                "{prior}, step {i}: {a:?} vs {b:?}"
            );
        }
        for ((name, a), (_, b)) in weights(&straight).iter().zip(weights(&second).iter()) {
            let d = (a - b).abs().max().double_value(&[]);
            assert!(d < 1e-6, "{prior}: {name} differs by {d}");
        }
        // The prior's parameters moved in training (they are trained, not just stored).
        let init = Trainer::new(cfg(prior.clone()), data(), Device::Cpu).unwrap();
        let moved = weights(&init)
            .iter()
            .zip(weights(&straight).iter())
            .filter(|((n, _), _)| n.starts_with("prior."))
            .any(|((_, a), (_, b))| (a - b).abs().max().double_value(&[]) > 1e-4);
        assert!(moved, "{prior}: the prior did not train");
    }
}
