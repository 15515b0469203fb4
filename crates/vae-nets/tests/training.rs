//! Gradients and the batch-norm train/eval contract (ORIGINAL §2.1).

mod common;

use common::*;
use tch::{nn, Device, Kind, Tensor};

fn images(batch: i64) -> Tensor {
    Tensor::rand([batch, 1, 28, 28], (Kind::Float, Device::Cpu)).round()
}

/// Bernoulli negative log-likelihood from logits, summed over pixels, mean over the batch
/// (ORIGINAL §9 D9's stable form).
fn rec_loss(logits: &Tensor, x: &Tensor) -> Tensor {
    (logits.softplus() - x * logits)
        .sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
        .mean(Kind::Float)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// A reconstruction loss through a reparameterised sample `z = mu + sigma * eps` reaches every
/// trainable parameter of encoder and decoder with a non-zero gradient.
#[test]
fn every_parameter_gets_a_gradient() {
    tch::manual_seed(11);
    for fam in families() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (enc, dec) = build(&vs, &fam, 16);
        let x = images(8);
        let out = enc.forward_t(&x, true);
        let eps = out.mu.randn_like();
        let z = &out.mu + out.log_sigma.exp() * eps;
        let loss = rec_loss(&dec.forward_t(&z, true), &x);
        loss.backward();
        let vars = vs.variables();
        let mut checked = 0;
        for (name, t) in &vars {
            if !t.requires_grad() {
                continue;
            }
            let g = t.grad();
            assert!(g.defined(), "{}: {name} has no gradient", fam.name);
            let norm = g.abs().sum(Kind::Float).double_value(&[]);
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{}: {name} gradient sum |g| = {norm}",
                fam.name
            );
            checked += 1;
        }
        assert_eq!(checked, vs.trainable_variables().len(), "{}", fam.name);
    }
}

/// With BN, training mode (batch statistics) and evaluation mode (running averages) give different
/// outputs; training mode moves the running averages, evaluation mode does not. Without BN
/// (gated convolutions) both modes agree exactly.
#[test]
fn train_and_eval_modes() {
    tch::manual_seed(12);
    for fam in families() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (enc, dec) = build(&vs, &fam, 8);
        let x = images(16);
        let _guard = tch::no_grad_guard();
        let snapshot = || -> Vec<(String, Tensor)> {
            let mut v: Vec<_> = vs
                .variables()
                .into_iter()
                .filter(|(n, _)| n.contains("running_"))
                .map(|(n, t)| (n, t.copy()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let before = snapshot();
        let eval = enc.forward_t(&x, false);
        let eval_logits = dec.forward_t(&eval.mu, false);
        assert_eq!(before.len(), snapshot().len());
        for ((n, a), (_, b)) in before.iter().zip(snapshot()) {
            assert!(a.equal(&b), "{}: eval mode changed {n}", fam.name);
        }
        let train = enc.forward_t(&x, true);
        let train_logits = dec.forward_t(&eval.mu, true);
        let d_mu = max_abs_diff(&eval.mu, &train.mu);
        let d_logits = max_abs_diff(&eval_logits, &train_logits);
        if fam.has_bn {
            assert!(d_mu > 1e-3, "{}: mu equal in both modes ({d_mu})", fam.name);
            assert!(d_logits > 1e-3, "{}: logits equal ({d_logits})", fam.name);
            let moved = before
                .iter()
                .zip(snapshot())
                .filter(|((_, a), (_, b))| !a.equal(b))
                .count();
            assert_eq!(
                moved,
                before.len(),
                "{}: some running stats did not move",
                fam.name
            );
        } else {
            assert!(before.is_empty(), "{}", fam.name);
            assert_eq!(d_mu, 0.0, "{}", fam.name);
            assert_eq!(d_logits, 0.0, "{}", fam.name);
        }
    }
}

/// In evaluation mode one example's outputs do not depend on the rest of the batch: encoding
/// image 2 alone, inside a batch, or inside a batch of different images gives the same `mu`,
/// `log_sigma`, `h` and logits. Running averages are first moved away from their initial values
/// by a few training-mode passes so that the check is not trivial.
#[test]
fn eval_mode_is_per_example() {
    tch::manual_seed(13);
    for fam in families() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (enc, dec) = build(&vs, &fam, 8);
        let _guard = tch::no_grad_guard();
        for _ in 0..3 {
            let out = enc.forward_t(&images(16), true);
            let _ = dec.forward_t(&out.mu, true);
        }
        let batch_a = images(6);
        let batch_b = images(9);
        batch_b.narrow(0, 4, 1).copy_(&batch_a.narrow(0, 2, 1));
        let single = batch_a.narrow(0, 2, 1);
        let runs = [(batch_a, 2), (batch_b, 4), (single, 0)];
        let outs: Vec<_> = runs
            .iter()
            .map(|(x, i)| {
                let out = enc.forward_t(x, false);
                let logits = dec.forward_t(&out.mu, false);
                [out.mu, out.log_sigma, out.h, logits.flatten(1, -1)].map(|t| t.narrow(0, *i, 1))
            })
            .collect();
        for other in &outs[1..] {
            for (k, what) in ["mu", "log_sigma", "h", "logits"].iter().enumerate() {
                let d = max_abs_diff(&outs[0][k], &other[k]);
                let scale = outs[0][k].abs().max().double_value(&[]).max(1.0);
                assert!(d <= 1e-5 * scale, "{}: {what} differs by {d}", fam.name);
            }
        }
        // In training mode the same image does get a batch-dependent result (BN families).
        if fam.has_bn {
            let a = enc.forward_t(&runs[0].0, true).mu.narrow(0, 2, 1);
            let b = enc.forward_t(&runs[1].0, true).mu.narrow(0, 4, 1);
            assert!(max_abs_diff(&a, &b) > 1e-4, "{}", fam.name);
        }
    }
}

/// Training mode with a single example would write NaN into the running variance of a dense BN
/// layer (libtorch divides by `n - 1`); it panics with a message instead, and leaves the running
/// statistics intact. Families and parts without dense BN accept it.
#[test]
fn training_mode_with_one_example() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    tch::manual_seed(14);
    for fam in families() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (enc, dec) = build(&vs, &fam, 8);
        let _guard = tch::no_grad_guard();
        let x = images(1);
        let z = Tensor::randn([1, 8], (Kind::Float, Device::Cpu));
        let enc_result = catch_unwind(AssertUnwindSafe(|| enc.forward_t(&x, true)));
        let dec_result = catch_unwind(AssertUnwindSafe(|| dec.forward_t(&z, true)));
        let message = |e: Box<dyn std::any::Any + Send>| {
            e.downcast_ref::<String>().cloned().unwrap_or_default()
        };
        // (encoder panics, decoder panics): the ResNet decoder's BNs are all convolutional.
        let expected = match fam.name {
            "resnet" => (true, false),
            "gated_conv" => (false, false),
            _ => (true, true),
        };
        for (part, result, panics) in [
            ("encoder", enc_result.map(|o| o.mu), expected.0),
            ("decoder", dec_result, expected.1),
        ] {
            match result {
                Ok(t) => {
                    assert!(!panics, "{} {part}: expected a panic", fam.name);
                    assert_eq!(t.size()[0], 1);
                }
                Err(e) => {
                    assert!(panics, "{} {part}: unexpected panic", fam.name);
                    let msg = message(e);
                    assert!(
                        msg.starts_with("BatchNorm in training mode needs more than one value per channel, got shape [1, "),
                        "{msg}"
                    );
                }
            }
        }
        for (name, t) in vs.variables() {
            let finite = t.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{}: {name} is not finite", fam.name);
        }
    }
}
