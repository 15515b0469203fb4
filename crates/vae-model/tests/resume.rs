//! Training resumes exactly: 2 epochs in one go equal 1 epoch, a checkpoint, a new trainer and 1
//! more epoch, and a stop in the middle of an epoch resumes at the same step; with batch norm and
//! with weight norm (whose data-dependent initialisation runs on a fresh run only, NORMALIZATION
//! §6).

use std::sync::atomic::AtomicBool;

use tch::Device;
use vae_data::{Dataset, DatasetKind, Split, SplitConfig};
use vae_flows::FlowConfig;
use vae_model::{EpochOutcome, ExperimentConfig, ModelConfig, TrainConfig, Trainer};
use vae_nets::{DecoderConfig, EncoderConfig, Normalization};

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

fn cfg() -> ExperimentConfig {
    cfg_with(Normalization::BatchNorm)
}

/// The test config with every MLP layer and cMADE normalized as `normalization` says.
fn cfg_with(normalization: Normalization) -> ExperimentConfig {
    let mut c = ExperimentConfig {
        model: ModelConfig {
            latent: 4,
            encoder: EncoderConfig::Mlp {
                hidden: vec![32],
                normalization,
            },
            decoder: DecoderConfig::Mlp {
                hidden: vec![32],
                normalization,
            },
            flow: Some(FlowConfig {
                layers: 2,
                hidden: vec![16],
                context_size: 16,
                normalization,
                ..Default::default()
            }),
            ..Default::default()
        },
        train: TrainConfig {
            epochs: 2,
            batch_size: 50,
            warmup_epochs: 1,
            seed: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    c.model.batch_norm.momentum = 0.01;
    c
}

fn steps(t: &mut Trainer, max: Option<u64>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let stop = AtomicBool::new(false);
    let _ = t
        .run_epoch(&stop, max, |s| out.push((s.rec, s.kl)))
        .unwrap();
    out
}

fn weights(t: &Trainer) -> Vec<(String, tch::Tensor)> {
    let mut v: Vec<_> = t.var_store().variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The normalizations the resumption tests run with.
const NORMALIZATIONS: [Normalization; 2] = [Normalization::BatchNorm, Normalization::WeightNorm];

#[test]
fn two_epochs_equal_one_plus_resume_plus_one() {
    for n in NORMALIZATIONS {
        two_epochs_equal_one_plus_resume_plus_one_with(n);
    }
}

fn two_epochs_equal_one_plus_resume_plus_one_with(normalization: Normalization) {
    let cfg = || cfg_with(normalization);
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("last.safetensors");

    let mut straight = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    let mut losses = steps(&mut straight, None);
    losses.extend(steps(&mut straight, None));
    assert_eq!(losses.len(), 12);

    let mut first = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    let mut resumed_losses = steps(&mut first, None);
    first.save_checkpoint(&ck).unwrap();
    // A fresh trainer with a different seed would initialise differently: the checkpoint must
    // override everything that matters.
    let mut second = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    second.load_checkpoint(&ck).unwrap();
    assert_eq!(second.state().epochs_done, 1);
    resumed_losses.extend(steps(&mut second, None));

    for (i, (a, b)) in losses.iter().zip(&resumed_losses).enumerate() {
        assert!(
            (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6,
            "{normalization}, step {i}: {a:?} vs {b:?}"
        );
    }
    for ((name, a), (_, b)) in weights(&straight).iter().zip(weights(&second).iter()) {
        let d = (a - b).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{normalization}: {name} differs by {d}");
    }
    if normalization == Normalization::WeightNorm {
        // The variables are weight norm's (the context predictor keeps its batch norm), and
        // the initialisation set the biases.
        let names: Vec<String> = weights(&straight).into_iter().map(|(k, _)| k).collect();
        let bn: Vec<&String> = names.iter().filter(|k| k.contains(".bn.")).collect();
        assert!(bn.iter().all(|k| k.starts_with("ctx.")), "{bn:?}");
        // Twelve Adam steps move a bias by about 12 · 1e-3; the initialisation by the
        // pre-activations' means.
        let b = &straight.var_store().variables()["enc.hidden1.dense.bias"];
        assert!(b.abs().max().double_value(&[]) > 0.1, "b was initialised");
    }
}

#[test]
fn a_stop_mid_epoch_resumes_at_the_same_step() {
    for n in NORMALIZATIONS {
        a_stop_mid_epoch_resumes_at_the_same_step_with(n, 4);
    }
    // Stopped before its first step: the checkpoint holds g and b as built, and the resumed
    // run initialises them from the first batch as the uninterrupted run did.
    a_stop_mid_epoch_resumes_at_the_same_step_with(Normalization::WeightNorm, 0);
}

fn a_stop_mid_epoch_resumes_at_the_same_step_with(normalization: Normalization, stop_at: u64) {
    let cfg = || cfg_with(normalization);
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("mid.safetensors");
    let mut straight = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    let losses = steps(&mut straight, None);

    let mut part = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    let stop = AtomicBool::new(false);
    let mut got = Vec::new();
    let outcome = part
        .run_epoch(&stop, Some(stop_at), |s| got.push((s.rec, s.kl)))
        .unwrap();
    assert!(matches!(outcome, EpochOutcome::Interrupted));
    assert_eq!(part.state().step_in_epoch, stop_at as usize);
    part.save_checkpoint(&ck).unwrap();
    let mut rest = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    rest.load_checkpoint(&ck).unwrap();
    let outcome = rest
        .run_epoch(&stop, None, |s| got.push((s.rec, s.kl)))
        .unwrap();
    let EpochOutcome::Completed(report) = outcome else {
        panic!("epoch completes")
    };
    assert_eq!(got.len(), 6);
    for (a, b) in losses.iter().zip(&got) {
        assert!(
            (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6,
            "{normalization}, stop at {stop_at}: {a:?} vs {b:?}"
        );
    }
    for ((name, a), (_, b)) in weights(&straight).iter().zip(weights(&rest).iter()) {
        let d = (a - b).abs().max().double_value(&[]);
        assert!(
            d < 1e-6,
            "{normalization}, stop at {stop_at}: {name} differs by {d}"
        );
    }
    // The epoch means include the steps taken before the stop.
    let mean_rec = got.iter().map(|s| s.0).sum::<f64>() / 6.0;
    assert!((report.train_rec - mean_rec).abs() < 1e-9);
}

#[test]
fn schedules_follow_completed_epochs_and_validation_is_reported() {
    let mut c = cfg();
    c.train.epochs = 3;
    c.train.warmup_epochs = 2;
    c.train.lr_decay_epochs = 2;
    let mut t = Trainer::new(c, data(), Device::Cpu).unwrap();
    let stop = AtomicBool::new(false);
    let mut seen = Vec::new();
    while !t.is_done() {
        if let EpochOutcome::Completed(r) = t.run_epoch(&stop, None, |_| {}).unwrap() {
            assert_eq!(r.validation.unwrap().images, 100);
            seen.push((r.warmup, r.lr));
        }
    }
    assert_eq!(seen, [(0.0, 1e-3), (0.5, 1e-3), (1.0, 5e-4)]);
}

#[test]
fn another_architecture_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("a.safetensors");
    Trainer::new(cfg(), data(), Device::Cpu)
        .unwrap()
        .save_checkpoint(&ck)
        .unwrap();
    let mut other = cfg();
    other.model.latent = 8;
    let mut t = Trainer::new(other, data(), Device::Cpu).unwrap();
    let msg = t.load_checkpoint(&ck).unwrap_err().to_string();
    assert!(
        msg.contains("it was written for another architecture"),
        "{msg}"
    );
    assert!(msg.contains("\"latent\":4"), "{msg}");
    // Truncated files say so.
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() / 2]).unwrap();
    let msg = t.load_checkpoint(&ck).unwrap_err().to_string();
    assert!(msg.contains("may be truncated or corrupt"), "{msg}");
}

/// A checkpoint refused half-way (here: its model tensors are fine but an optimizer tensor is
/// missing, in a checkpoint from before checksums) leaves the trainer's weights and optimizer
/// exactly as they were, so that training or a rollback can go on from them.
#[test]
fn a_refused_checkpoint_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    let mut t = Trainer::new(cfg(), data(), Device::Cpu).unwrap();
    steps(&mut t, Some(3));
    t.save_checkpoint(&good).unwrap();
    let mut tensors = tch::Tensor::read_safetensors(&good).unwrap();
    let victim = tensors
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k.starts_with("adam.v."))
        .max()
        .unwrap();
    tensors.retain(|(k, _)| *k != victim);
    for (k, t) in tensors.iter_mut() {
        if k == "meta.json" {
            let mut meta: serde_json::Value =
                serde_json::from_slice(&Vec::<u8>::try_from(&*t).unwrap()).unwrap();
            // Without its sums, so that the missing tensor is what the loader finds.
            let m = meta.as_object_mut().unwrap();
            m.remove("checksum");
            m.remove("integrity");
            *t = tch::Tensor::from_slice(&serde_json::to_vec(&meta).unwrap());
        }
    }
    tch::Tensor::write_safetensors(&tensors, &bad).unwrap();

    steps(&mut t, Some(6)); // the weights move on from the checkpoint's
    let before: Vec<_> = weights(&t)
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    let adam_before: Vec<_> = t
        .adam_state()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    let msg = t.load_checkpoint(&bad).unwrap_err().to_string();
    assert!(msg.contains(&format!("no {victim} tensor")), "{msg}");
    for ((name, now), (_, was)) in weights(&t).iter().zip(&before) {
        assert!(
            now.equal(was),
            "{name} was overwritten by the refused checkpoint"
        );
    }
    for ((name, now), (_, was)) in t.adam_state().iter().zip(&adam_before) {
        assert!(
            now.equal(was),
            "{name} was overwritten by the refused checkpoint"
        );
    }
    // The good one still loads.
    t.load_checkpoint(&good).unwrap();
}

/// Every step's report, the outcome, and the trainer's counters for one `run_epoch` call.
fn run_recorded(
    t: &mut Trainer,
    max: Option<u64>,
) -> (Vec<vae_model::StepReport>, &'static str, (u64, u64), u64) {
    let mut out = Vec::new();
    let stop = AtomicBool::new(false);
    let outcome = match t.run_epoch(&stop, max, |s| out.push(*s)).unwrap() {
        EpochOutcome::Completed(_) => "completed",
        EpochOutcome::Interrupted => "interrupted",
        EpochOutcome::Diverged => "diverged",
    };
    let s = t.state();
    (
        out,
        outcome,
        (s.skipped.0, s.skipped.1 as u64),
        s.global_step,
    )
}

/// The CUDA default (skip decided on the device, figures read back every few steps) trains as
/// the per-step path does: same reports, skips, outcomes and weights, through NaN steps, a
/// step limit and a divergence. Run here on the CPU.
#[test]
fn deferred_readback_trains_as_the_per_step_path() {
    tch::set_num_threads(1);
    let mut diverging = cfg();
    diverging.train.max_consecutive_skips = 2;
    // (config, NaN injection (from, count), step limit)
    for (c, nan, max) in [
        (cfg(), (2, 2), None),
        (cfg(), (1, 1), Some(4)),
        (diverging, (1, 5), None),
    ] {
        let mut runs = Vec::new();
        for deferred in [false, true] {
            let mut t = Trainer::new(c.clone(), data(), Device::Cpu).unwrap();
            t.set_deferred_readback(deferred);
            t.inject_nan(nan.0, nan.1);
            let rec = run_recorded(&mut t, max);
            runs.push((rec, weights(&t), t.adam_state()));
        }
        let (((a, oa, sa, ga), wa, adam_a), ((b, ob, sb, gb), wb, adam_b)) = (&runs[0], &runs[1]);
        let case = format!("nan {nan:?}, limit {max:?}");
        assert_eq!((oa, sa, ga), (ob, sb, gb), "{case}");
        assert!(sa.0 >= 1, "{case}: no step was skipped");
        assert_eq!(a.len(), b.len(), "{case}: steps reported");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(
                (x.step_in_epoch, x.skipped),
                (y.step_in_epoch, y.skipped),
                "{case}"
            );
            if !x.skipped {
                let close = |p: f64, q: f64| (p - q).abs() <= 1e-5 * p.abs().max(1.0);
                assert!(
                    close(x.rec, y.rec) && close(x.kl, y.kl) && close(x.grad_norm, y.grad_norm),
                    "{case}: step {} {x:?} vs {y:?}",
                    x.step_in_epoch
                );
            }
        }
        if *oa != "diverged" {
            for ((name, p), (_, q)) in wa.iter().zip(wb).chain(adam_a.iter().zip(adam_b)) {
                let diff = (p - q).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "{case}: {name} differs by {diff}");
            }
        }
    }
}
