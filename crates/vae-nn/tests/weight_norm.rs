//! `WeightNorm`, `WeightNormLinear`, `Normalization` and `hold_running_statistics` through the
//! public API (NORMALIZATION §2–§5): the data-dependent initialisation's statistics, gradients
//! against finite differences, the folded layer against the live one, masked weights with empty
//! rows, the variables a layer creates, its errors, and batch norm's held running statistics.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};
use vae_nn::{
    hold_running_statistics, BatchNorm, BatchNormSettings, Error, Normalization, WeightNorm,
    WeightNormLinear,
};

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Per-unit batch mean and biased variance of `y` `[B, n]`, in f64.
fn unit_stats(y: &Tensor) -> (Tensor, Tensor) {
    let y = y.to_kind(Kind::Double);
    let mean = y.mean_dim(0, false, Kind::Double);
    let var = (&y - &mean).square().mean_dim(0, false, Kind::Double);
    (mean, var)
}

/// After the data-dependent initialisation every unit's pre-activation on the init batch has
/// mean `target_mean` and variance 1 to 1e-4, for a batch far from zero mean and unit scale;
/// the returned pre-activations are the layer's output.
#[test]
fn data_init_gives_each_unit_mean_target_and_unit_variance() {
    tch::manual_seed(1);
    for target in [0.0, 3.0] {
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = WeightNormLinear::new(
            &(vs.root() / "fc"),
            20,
            7,
            Init::Uniform { lo: -0.5, up: 0.5 },
            target,
        )
        .unwrap();
        let x = randn(&[64, 20], Kind::Float) * 4.0 + 2.5;
        let returned = layer.data_init(&x).unwrap();
        let y = tch::no_grad(|| layer.forward(&x));
        assert!(max_diff(&returned, &y) < 1e-5, "returned output");
        let (mean, var) = unit_stats(&y);
        assert!(
            max_diff(&mean, &(mean.ones_like() * target)) < 1e-4,
            "target {target}: means {mean}"
        );
        assert!(max_diff(&var, &var.ones_like()) < 1e-4, "variances {var}");
        // The formula: g = 1/std, b = target − mean · g, of the unit-length pre-activations.
        let t = x.linear::<Tensor>(&layer.direction(), None);
        let (mu, sigma2) = unit_stats(&t);
        let g = (sigma2 + 1e-10).rsqrt();
        let g_got = layer.norm.g.to_kind(Kind::Double).view([-1]);
        assert!(max_diff(&g_got, &g) < 1e-5 * g.abs().max().double_value(&[]));
        let b = -(mu * &g) + target;
        assert!(max_diff(&layer.norm.b.to_kind(Kind::Double), &b) < 1e-4);
    }
}

/// The layer's output does not depend on the length of `v`'s rows, only on `g`.
#[test]
fn output_is_invariant_to_the_scale_of_v() {
    tch::manual_seed(2);
    let v = randn(&[5, 6], Kind::Double);
    let g = randn(&[5, 1], Kind::Double);
    let b = randn(&[5], Kind::Double);
    let x = randn(&[3, 6], Kind::Double);
    let a = WeightNormLinear::from_tensors(v.copy(), g.copy(), b.copy(), 0.0);
    let scaled = WeightNormLinear::from_tensors(&v * 17.0, g, b, 0.0);
    assert!(max_diff(&a.forward(&x), &scaled.forward(&x)) < 1e-12);
    // Each row of W has length |g|.
    let lengths = a
        .weight()
        .square()
        .sum_dim_intlist(1, false, Kind::Double)
        .sqrt();
    assert!(max_diff(&lengths, &a.norm.g.abs().view([-1])) < 1e-12);
}

/// Gradients of `Σ w ⊙ y` with respect to `v`, `g`, `b` and `x` equal central differences
/// (f64, step 1e-6) to 1e-7 relative.
#[test]
fn gradients_match_finite_differences() {
    tch::manual_seed(3);
    let kind = Kind::Double;
    let v = randn(&[3, 4], kind).set_requires_grad(true);
    let g = (randn(&[3, 1], kind) + 1.5).set_requires_grad(true);
    let b = randn(&[3], kind).set_requires_grad(true);
    let x = randn(&[5, 4], kind).set_requires_grad(true);
    let w = randn(&[5, 3], kind);
    let loss = |v: &Tensor, g: &Tensor, b: &Tensor, x: &Tensor| {
        let layer = WeightNormLinear::from_tensors(
            v.shallow_clone(),
            g.shallow_clone(),
            b.shallow_clone(),
            0.0,
        );
        (layer.forward(x) * &w).sum(kind)
    };
    let grads = Tensor::run_backward(&[loss(&v, &g, &b, &x)], &[&v, &g, &b, &x], false, false);
    let h = 1e-6;
    let params = [&v, &g, &b, &x];
    for (which, grad) in grads.iter().enumerate() {
        let base = params[which].detach();
        let flat = base.view([-1]);
        let numel = flat.size()[0];
        let mut numeric = Vec::with_capacity(numel as usize);
        for i in 0..numel {
            let at = |delta: f64| {
                let moved = flat.copy();
                let _ = moved.get(i).fill_(flat.double_value(&[i]) + delta);
                let moved = moved.view(base.size().as_slice());
                let mut args: Vec<Tensor> = params.iter().map(|p| p.detach()).collect();
                args[which] = moved;
                loss(&args[0], &args[1], &args[2], &args[3]).double_value(&[])
            };
            numeric.push((at(h) - at(-h)) / (2.0 * h));
        }
        let numeric = Tensor::from_slice(&numeric).view(base.size().as_slice());
        let scale = numeric.abs().max().double_value(&[]).max(1.0);
        let d = max_diff(grad, &numeric);
        assert!(
            d < 1e-7 * scale,
            "parameter {which}: gradient differs by {d}"
        );
    }
}

/// The folded weight and bias give the live layer's output (f32 to 1e-6 relative, f64 to
/// 1e-12), are detached, and keep their values when the layer changes.
#[test]
fn folded_layer_is_the_live_layer() {
    tch::manual_seed(4);
    for (kind, tolerance) in [(Kind::Float, 1e-5), (Kind::Double, 1e-12)] {
        let v = randn(&[6, 9], kind);
        let g = randn(&[6, 1], kind) * 3.0;
        let b = randn(&[6], kind);
        let layer = WeightNormLinear::from_tensors(v, g, b, 0.0);
        let x = randn(&[11, 9], kind);
        let (w, bias) = layer.folded();
        assert_eq!((w.kind(), bias.kind()), (kind, kind));
        assert!(!w.requires_grad());
        let live = layer.forward(&x);
        let folded = x.linear(&w, Some(&bias));
        let d = max_diff(&live, &folded);
        assert!(
            d < tolerance * live.abs().max().double_value(&[]),
            "{kind:?}: {d}"
        );
        tch::no_grad(|| {
            let _ = layer.norm.g.shallow_clone().fill_(0.0);
            let _ = layer.norm.b.shallow_clone().fill_(0.0);
        });
        assert!(max_diff(&x.linear(&w, Some(&bias)), &folded) == 0.0);
    }
}

/// Masked blocks (NORMALIZATION §4): a unit with an empty mask row gets a zero weight row and
/// finite gradients; masked-out entries get exactly zero gradient; the blocks of one unit are
/// normalised together; and the data-dependent initialisation leaves a unit without inputs at
/// `g = 1` with its pre-activation at the target mean.
#[test]
fn masked_blocks_compose_with_the_normalization() {
    tch::manual_seed(5);
    let kind = Kind::Double;
    // Row 0 empty, row 1 one input, row 2 all inputs.
    let mask = Tensor::from_slice(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
        .view([3, 3])
        .to_kind(kind);
    let v = randn(&[3, 3], kind).set_requires_grad(true);
    let extra = randn(&[3, 2], kind).set_requires_grad(true);
    let norm = WeightNorm::from_tensors(
        (randn(&[3, 1], kind) + 2.0).set_requires_grad(true),
        Tensor::zeros([3], (kind, Device::Cpu)),
        0.0,
    );
    let masked = &v * &mask;
    let w = norm.apply(&[&masked]).remove(0);
    assert!(w.isfinite().all().int64_value(&[]) == 1);
    assert!(w.get(0).abs().max().double_value(&[]) == 0.0, "empty row");
    let x = randn(&[4, 3], kind);
    let grads = Tensor::run_backward(
        &[(x.linear(&w, Some(&norm.b)) * randn(&[4, 3], kind)).sum(kind)],
        &[&v, &norm.g],
        false,
        false,
    );
    for g in &grads {
        assert!(
            g.isfinite().all().int64_value(&[]) == 1,
            "non-finite gradient {g}"
        );
    }
    let masked_out = grads[0].masked_select(&mask.eq(0.0));
    assert!(masked_out.abs().max().double_value(&[]) == 0.0);
    // Two blocks: each unit's row over both has length |g|.
    let both = norm.apply(&[&masked, &extra]);
    let lengths = (both[0].square().sum_dim_intlist(1, false, kind)
        + both[1].square().sum_dim_intlist(1, false, kind))
    .sqrt();
    assert!(max_diff(&lengths, &norm.g.abs().view([-1])) < 1e-12);

    // The initialisation: the empty unit is constant (0), the others vary.
    let norm = WeightNorm::from_tensors(
        Tensor::ones([3, 1], (kind, Device::Cpu)),
        Tensor::zeros([3], (kind, Device::Cpu)),
        3.0,
    );
    let x = randn(&[32, 3], kind) * 2.0 + 1.0;
    let t = x.linear::<Tensor>(&WeightNorm::directions(&[&masked.detach()]).remove(0), None);
    let y = norm.init_from_preactivations(&t).unwrap();
    assert_eq!(
        norm.g.double_value(&[0, 0]),
        1.0,
        "g of the unit without inputs"
    );
    assert_eq!(norm.b.double_value(&[0]), 3.0);
    let (mean, var) = unit_stats(&y);
    assert!(max_diff(&mean, &(mean.ones_like() * 3.0)) < 1e-10);
    assert_eq!(var.double_value(&[0]), 0.0);
    assert!(
        max_diff(
            &var.narrow(0, 1, 2),
            &Tensor::ones([2], (kind, Device::Cpu))
        ) < 1e-8
    );
}

/// Variables: `weight_v` `[out, in]` from the given init, `weight_g` `[out, 1]` ones, `bias`
/// `[out]` at the target mean, all trainable; a taken name is refused before anything is created.
#[test]
fn variables_and_their_initial_values() {
    tch::manual_seed(6);
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = WeightNormLinear::new(
        &(vs.root() / "fc"),
        10,
        4,
        Init::Uniform { lo: -0.3, up: 0.3 },
        3.0,
    )
    .unwrap();
    let vars = vs.variables();
    assert_eq!(vars.len(), 3);
    assert_eq!(vars["fc.weight_v"].size(), [4, 10]);
    assert_eq!(vars["fc.weight_g"].size(), [4, 1]);
    assert_eq!(vars["fc.bias"].size(), [4]);
    assert_eq!(vs.trainable_variables().len(), 3);
    assert!(layer.v.abs().max().double_value(&[]) <= 0.3);
    assert_eq!(max_diff(&layer.norm.g, &layer.norm.g.ones_like()), 0.0);
    assert_eq!(
        max_diff(&layer.norm.b, &(layer.norm.b.ones_like() * 3.0)),
        0.0
    );
    assert_eq!((layer.n_in(), layer.n_out()), (10, 4));

    let err = WeightNormLinear::new(&(vs.root() / "fc"), 10, 4, Init::Const(0.0), 0.0).unwrap_err();
    assert!(matches!(err, Error::DuplicateParameter { ref path } if path == "fc.weight_g"));
    let other = vs.root() / "other";
    let _ = other.var("bias", &[4], Init::Const(0.0));
    let err = WeightNormLinear::new(&other, 10, 4, Init::Const(0.0), 0.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter `other.bias` already exists in the variable store: build each layer under its own path segment"
    );
    assert!(
        !vs.variables().contains_key("other.weight_v"),
        "nothing created"
    );
    for (input, output, field) in [(0, 3, "inputs"), (3, 0, "units")] {
        let err = WeightNormLinear::new(&(vs.root() / "bad"), input, output, Init::Const(0.0), 0.0)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidSetting { field: f, .. } if f == field),
            "{err}"
        );
    }
}

/// One example has no variance, a NaN has no statistics: both are typed errors naming the layer,
/// and neither changes `g` or `b`.
#[test]
fn init_errors_name_the_layer() {
    let vs = nn::VarStore::new(Device::Cpu);
    let layer =
        WeightNormLinear::new(&(vs.root() / "enc" / "fc"), 3, 2, Init::Const(0.5), 0.0).unwrap();
    let err = layer.data_init(&randn(&[1, 3], Kind::Float)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data-dependent initialisation of `enc.fc.weight_g` needs a batch of at least 2 \
         examples to measure each unit's variance, got 1"
    );
    let x = randn(&[4, 3], Kind::Float);
    let _ = x.get(2).get(1).fill_(f64::NAN);
    let err = layer.data_init(&x).unwrap_err();
    assert!(matches!(err, Error::NonFiniteInit { ref layer } if layer == "enc.fc.weight_g"));
    assert_eq!(max_diff(&layer.norm.g, &layer.norm.g.ones_like()), 0.0);
    assert_eq!(layer.norm.b.abs().max().double_value(&[]), 0.0);
}

/// Inside `hold_running_statistics` a training-mode batch norm gives its usual training-mode
/// output but leaves its running statistics alone; outside (also after a panic inside) they
/// move again.
#[test]
fn held_batch_norm_normalises_without_updating_its_running_statistics() {
    tch::manual_seed(7);
    let settings = BatchNormSettings {
        momentum: 0.5,
        eps: 1e-3,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = BatchNorm::new(&(vs.root() / "bn"), 5, 0.2, settings).unwrap();
    let shadow_vs = nn::VarStore::new(Device::Cpu);
    let shadow = BatchNorm::new(&(shadow_vs.root() / "bn"), 5, 0.2, settings).unwrap();
    for shape in [[16_i64, 5], [400, 5], [200, 5]] {
        let x = randn(&shape, Kind::Float) * 3.0 + 1.0;
        let held = hold_running_statistics(|| hold_running_statistics(|| bn.forward_t(&x, true)));
        let usual = shadow.forward_t(&x, true);
        assert!(max_diff(&held, &usual) < 1e-5, "{shape:?}");
        assert_eq!(
            max_diff(&bn.running_mean, &bn.running_mean.zeros_like()),
            0.0
        );
        assert_eq!(max_diff(&bn.running_var, &bn.running_var.ones_like()), 0.0);
    }
    let x = randn(&[8, 5], Kind::Float) + 4.0;
    let inside = catch_unwind(AssertUnwindSafe(|| {
        hold_running_statistics::<()>(|| panic!("inside"))
    }));
    assert!(inside.is_err());
    let _ = bn.forward_t(&x, true);
    assert!(
        bn.running_mean.abs().max().double_value(&[]) > 1.0,
        "updates again"
    );
}

/// `normalization` in JSON: three snake-case names, batch norm by default, others refused.
#[test]
fn normalization_names() {
    for (n, json) in [
        (Normalization::BatchNorm, "\"batch_norm\""),
        (Normalization::WeightNorm, "\"weight_norm\""),
        (Normalization::None, "\"none\""),
    ] {
        assert_eq!(serde_json::to_string(&n).unwrap(), json);
        assert_eq!(serde_json::from_str::<Normalization>(json).unwrap(), n);
        assert_eq!(format!("\"{n}\""), json);
    }
    assert_eq!(Normalization::default(), Normalization::BatchNorm);
    let err = serde_json::from_str::<Normalization>("\"layer_norm\"").unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `layer_norm`"),
        "{err}"
    );
    assert_eq!(Normalization::None.parameters_per_unit(), 1);
    assert_eq!(Normalization::WeightNorm.parameters_per_unit(), 2);
}
