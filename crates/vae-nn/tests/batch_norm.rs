//! `BatchNorm` and `BatchNormSettings` through the public API: the settings' defaults, checks
//! and JSON form, the variables a layer creates, evaluation mode's independence from the rest
//! of the batch, the folded evaluation mode, and the inputs that panic. (Each path against
//! libtorch's kernel is tested next to the code, in `src/batch_norm.rs`.)

use std::panic::{catch_unwind, AssertUnwindSafe};

use tch::{nn, Device, Kind, Tensor};
use vae_nn::{BatchNorm, BatchNormSettings, Error};

const TF: BatchNormSettings = BatchNormSettings {
    momentum: 0.001,
    eps: 1e-3,
};

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// A layer of `channels` channels (momentum 0.5) whose γ, β and running statistics are far
/// from their initial values: random γ and β, then three training-mode batches of `shape`.
fn trained(vs: &nn::VarStore, shape: &[i64]) -> BatchNorm {
    let settings = BatchNormSettings {
        momentum: 0.5,
        ..TF
    };
    let c = shape[1];
    let bn = BatchNorm::new(&(vs.root() / "bn"), c, 0.0, settings).unwrap();
    tch::no_grad(|| {
        bn.ws
            .shallow_clone()
            .copy_(&(Tensor::rand([c], (Kind::Float, Device::Cpu)) + 0.5));
        bn.bs.shallow_clone().copy_(&randn(&[c]));
        for _ in 0..3 {
            let _ = bn.forward_t(&(randn(shape) * 3.0 + 1.0), true);
        }
    });
    bn
}

#[test]
fn settings_default_to_the_originals_and_are_checked() {
    assert_eq!(BatchNormSettings::default(), TF);
    TF.validate().unwrap();
    BatchNormSettings {
        momentum: 1.0,
        eps: 1e-5,
    }
    .validate()
    .unwrap();
    let momentum_msg = |v: &str| {
        format!("invalid network setting `batch_norm.momentum` = {v}: expected a number in (0, 1] (TF decay 0.999 is momentum 0.001)")
    };
    let eps_msg = |v: &str| {
        format!("invalid network setting `batch_norm.eps` = {v}: expected a finite number > 0 (the original uses 1e-3)")
    };
    let momentum = |momentum| BatchNormSettings { momentum, ..TF };
    let eps = |eps| BatchNormSettings { eps, ..TF };
    let cases = [
        // Momentum 0 would freeze the running statistics at their initial values.
        (momentum(0.0), momentum_msg("0")),
        (momentum(-0.1), momentum_msg("-0.1")),
        (momentum(1.5), momentum_msg("1.5")),
        (momentum(f64::NAN), momentum_msg("NaN")),
        (eps(0.0), eps_msg("0")),
        (eps(-1e-3), eps_msg("-0.001")),
        (eps(f64::INFINITY), eps_msg("inf")),
        (eps(f64::NAN), eps_msg("NaN")),
    ];
    let vs = nn::VarStore::new(Device::Cpu);
    for (settings, msg) in cases {
        let err = settings.validate().unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err:?}");
        assert_eq!(err.to_string(), msg);
        // The constructor checks them too, and creates nothing.
        let err = BatchNorm::new(&(vs.root() / "bn"), 3, 0.0, settings).unwrap_err();
        assert_eq!(err.to_string(), msg);
    }
    let err = BatchNorm::new(&(vs.root() / "bn"), 0, 0.0, TF).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid network setting `channels` = 0: expected at least one channel"
    );
    assert!(vs.variables().is_empty());
}

#[test]
fn settings_json() {
    let json = serde_json::to_string(&TF).unwrap();
    assert_eq!(json, r#"{"momentum":0.001,"eps":0.001}"#);
    assert_eq!(
        serde_json::from_str::<BatchNormSettings>(&json).unwrap(),
        TF
    );
    assert_eq!(serde_json::from_str::<BatchNormSettings>("{}").unwrap(), TF);
    assert_eq!(
        serde_json::from_str::<BatchNormSettings>(r#"{"eps":1e-5}"#).unwrap(),
        BatchNormSettings { eps: 1e-5, ..TF }
    );
    let err = serde_json::from_str::<BatchNormSettings>(r#"{"decay":0.999}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `decay`"), "{err}");
    // Deserialising does not validate; validate() does.
    let bad: BatchNormSettings = serde_json::from_str(r#"{"momentum":0}"#).unwrap();
    assert!(bad.validate().is_err());
}

/// PyTorch's names under the layer's path (checkpoint keys), γ and β trainable in that order,
/// the buffers not, with their initial values; a second layer under the same path is refused.
#[test]
fn variables_and_their_names() {
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = BatchNorm::new(&(vs.root() / "enc" / "bn"), 5, 3.0, TF).unwrap();
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "enc.bn.bias",
            "enc.bn.running_mean",
            "enc.bn.running_var",
            "enc.bn.weight"
        ]
    );
    let trainable = vs.trainable_variables();
    assert_eq!(trainable.len(), 2);
    assert!(trainable[0].equal(&bn.ws) && trainable[1].equal(&bn.bs));
    for (t, value, grad) in [
        (&bn.ws, 1.0, true),
        (&bn.bs, 3.0, true),
        (&bn.running_mean, 0.0, false),
        (&bn.running_var, 1.0, false),
    ] {
        assert_eq!(t.size(), [5]);
        assert_eq!(t.requires_grad(), grad);
        assert!(t.equal(&Tensor::full([5], value, (Kind::Float, Device::Cpu))));
    }
    assert_eq!(bn.settings(), TF);
    let err = BatchNorm::new(&(vs.root() / "enc" / "bn"), 5, 0.0, TF).unwrap_err();
    assert!(matches!(err, Error::DuplicateParameter { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "parameter `enc.bn.weight` already exists in the variable store: build each layer under its own path segment"
    );
    assert_eq!(vs.variables().len(), 4);
}

/// In evaluation mode an example's output does not depend on the rest of its batch, and the
/// running statistics do not move; in training mode it does depend on it.
#[test]
fn evaluation_mode_is_independent_of_the_batch() {
    for shape in [[40, 6].as_slice(), &[200, 300], &[6, 4, 5, 5]] {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = trained(&vs, shape);
        let (rm, rv) = (bn.running_mean.copy(), bn.running_var.copy());
        let x = randn(shape) * 2.0 - 1.0;
        let other = x.narrow(0, 3, shape[0] - 3) * 5.0 + 7.0;
        let y = bn.forward_t(&x, false).narrow(0, 0, 3);
        for rest in [x.narrow(0, 3, shape[0] - 3), other] {
            let mixed = Tensor::cat(&[x.narrow(0, 0, 3), rest], 0);
            let y2 = bn.forward_t(&mixed, false).narrow(0, 0, 3);
            assert_eq!(max_diff(&y, &y2), 0.0, "{shape:?}");
            // Alone, one example at a time.
            let y1 = bn.forward_t(&x.narrow(0, 1, 1), false);
            assert_eq!(max_diff(&y.narrow(0, 1, 1), &y1), 0.0, "{shape:?}");
        }
        assert!(bn.running_mean.equal(&rm) && bn.running_var.equal(&rv));
        let changed = Tensor::cat(&[x.narrow(0, 0, 3), x.narrow(0, 3, shape[0] - 3) * 5.0], 0);
        let t1 = bn.forward_t(&x, true).narrow(0, 0, 3);
        let t2 = bn.forward_t(&changed, true).narrow(0, 0, 3);
        assert!(
            max_diff(&t1, &t2) > 1e-3,
            "{shape:?}: training mode ignores the batch"
        );
    }
}

/// `x · scale + shift` with `eval_affine`'s `[C]` tensors is evaluation mode, also folded into
/// a dense layer before it (`W' = diag(scale) W`, `b' = scale · b + shift`); the tensors are
/// detached copies that later updates leave alone.
#[test]
fn eval_affine_is_evaluation_mode() {
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = trained(&vs, &[50, 8]);
    let (scale, shift) = bn.eval_affine();
    assert_eq!((scale.size(), shift.size()), (vec![8], vec![8]));
    assert!(!scale.requires_grad() && !shift.requires_grad());
    assert_eq!(scale.kind(), Kind::Float);
    let (w, b) = (randn(&[8, 5]), randn(&[8]));
    let h = randn(&[20, 5]);
    let expected = bn.forward_t(&h.linear(&w, Some(&b)), false);
    let folded = h.linear(&(&w * scale.unsqueeze(1)), Some(&(&b * &scale + &shift)));
    assert!(max_diff(&folded, &expected) < 1e-5);
    let before = scale.copy();
    let _ = bn.forward_t(&randn(&[50, 8]), true);
    assert!(scale.equal(&before));
    let x = randn(&[4, 8]);
    assert!(max_diff(&(&x * &scale + &shift), &bn.forward_t(&x, false)) > 1e-6);
}

/// Training mode with one value per channel would write NaN into the running variance; it
/// panics instead and leaves the statistics alone (evaluation mode accepts one example). A
/// rank other than 2 or 4, or another channel count, panics in both modes.
#[test]
fn bad_inputs_panic_with_the_shape() {
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = BatchNorm::new(&(vs.root() / "bn"), 3, 0.0, TF).unwrap();
    let message = |x: Tensor, train: bool| {
        let e = catch_unwind(AssertUnwindSafe(|| bn.forward_t(&x, train))).unwrap_err();
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    for shape in [[1, 3].as_slice(), &[1, 3, 1, 1]] {
        let msg = message(randn(shape), true);
        assert!(
            msg.starts_with(&format!(
                "BatchNorm in training mode needs more than one value per channel, got shape {shape:?}"
            )),
            "{msg}"
        );
        assert_eq!(bn.forward_t(&randn(shape), false).size(), shape);
    }
    assert!(bn
        .running_mean
        .equal(&Tensor::zeros([3], (Kind::Float, Device::Cpu))));
    assert!(bn
        .running_var
        .equal(&Tensor::ones([3], (Kind::Float, Device::Cpu))));
    for train in [false, true] {
        assert_eq!(
            message(randn(&[4, 3, 5]), train),
            "BatchNorm input: expected [B, C] or [B, C, H, W], got shape [4, 3, 5]"
        );
        assert_eq!(
            message(randn(&[4, 1]), train),
            "BatchNorm input: expected 3 channels (dimension 1), got shape [4, 1]"
        );
    }
    // [B, 1, H, W] images with H·W > 1 have several values per channel.
    let bn1 = BatchNorm::new(&(vs.root() / "bn1"), 1, 0.0, TF).unwrap();
    assert_eq!(
        bn1.forward_t(&randn(&[1, 1, 2, 2]), true).size(),
        [1, 1, 2, 2]
    );
}
