//! The cMADE with `normalization: weight_norm` (NORMALIZATION §1, §3–§5): the data-dependent
//! initialisation's statistics recomputed from the variables and masks alone, for one cMADE and
//! through a whole flow; the Jacobian's autoregressive sparsity; the frozen flow against the live
//! one; gradients; parameter counts and names; and the config's `normalization` with its
//! deprecated alias `batch_norm`.
//!
//! The Jacobian helpers are copies of the minimal logic of `tests/flow.rs`.

use std::sync::{Mutex, MutexGuard};

use tch::{nn, Device, Kind, Tensor};
use vae_flows::cmade::with_data_dependent_init;
use vae_flows::config::Normalization;
use vae_flows::{BatchNormSettings, Cmade, ContextMode, Flow, FlowConfig, MaskOrder, MaskedLinear};

/// libtorch has one global RNG; every test holds this lock while it seeds and draws.
static RNG: Mutex<()> = Mutex::new(());

fn seeded(seed: i64) -> MutexGuard<'static, ()> {
    let guard = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::set_num_threads(1);
    tch::manual_seed(seed);
    guard
}

const BN: BatchNormSettings = BatchNormSettings {
    momentum: 0.001,
    eps: 1e-3,
};

/// `layers` weight-normalized steps of cMADE `[2d, 2d]` with SNF-like context of width `2d`.
fn wn(d: i64, layers: usize) -> FlowConfig {
    FlowConfig {
        layers,
        hidden: vec![2 * d, 2 * d],
        context_size: 2 * d,
        normalization: Normalization::WeightNorm,
        ..Default::default()
    }
}

/// The weight-norm variants every property is checked on.
fn variants(d: i64) -> Vec<(&'static str, FlowConfig)> {
    let base = wn(d, 3);
    vec![
        ("gated, SNF-like context", base.clone()),
        (
            "gated, linear context",
            FlowConfig {
                context: ContextMode::Linear,
                context_size: 5,
                ..base.clone()
            },
        ),
        (
            "gated, no context, one hidden layer",
            FlowConfig {
                hidden: vec![3 * d],
                context_size: 0,
                ..base.clone()
            },
        ),
        (
            "shift-only, SNF-like context",
            FlowConfig {
                shift_only: true,
                ..base
            },
        ),
    ]
}

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn context_for(flow: &Flow, batch: i64, kind: Kind) -> Option<Tensor> {
    flow.context_size()
        .map(|c| randn(&[batch, c], kind) * 0.5 + 0.3)
}

/// Moves every variable away from its initial value.
fn perturb(vs: &nn::VarStore) {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (_, mut v) in vars {
            let new = &v + v.randn_like() * 0.1;
            v.copy_(&new);
        }
    });
}

/// A masked layer's weight from its variables and mask alone, `g · (M ⊙ V) / ‖·‖` with the norm
/// over the masked row and `extra` (the linear context's weight) together; and the context
/// block.
fn recomputed(layer: &MaskedLinear, extra: Option<&Tensor>) -> (Tensor, Option<Tensor>) {
    let norm = layer.weight_norm().expect("weight-normalized");
    let masked = &layer.weight * layer.mask().to_kind(layer.weight.kind());
    let mut squared = masked.square().sum_dim_intlist(1, true, Kind::Float);
    if let Some(e) = extra {
        squared += e.square().sum_dim_intlist(1, true, Kind::Float);
    }
    let scale = &norm.g / squared.clamp_min(1e-30).sqrt();
    (&masked * &scale, extra.map(|e| e * &scale))
}

/// Whether each output unit of `layer` has any input, `[n_out]` bools.
fn has_inputs(layer: &MaskedLinear) -> Vec<bool> {
    let rows = layer
        .mask()
        .to_kind(Kind::Int64)
        .sum_dim_intlist(1, false, Kind::Int64);
    Vec::<i64>::try_from(rows)
        .unwrap()
        .into_iter()
        .map(|n| n > 0)
        .collect()
}

/// Asserts that each unit of `t` `[B, n]` with inputs has batch mean `mean` and biased batch
/// variance 1 to 1e-4, and each unit without inputs is the constant `mean`.
fn assert_standardised(t: &Tensor, live: &[bool], mean: f64, what: &str) {
    let t = t.to_kind(Kind::Double);
    let mu = Vec::<f64>::try_from(t.mean_dim(0, false, Kind::Double)).unwrap();
    let centred = &t - t.mean_dim(0, true, Kind::Double);
    let var = Vec::<f64>::try_from(centred.square().mean_dim(0, false, Kind::Double)).unwrap();
    assert_eq!(mu.len(), live.len());
    for (i, &has) in live.iter().enumerate() {
        assert!(
            (mu[i] - mean).abs() < 1e-4,
            "{what} unit {i}: mean {}",
            mu[i]
        );
        let want = if has { 1.0 } else { 0.0 };
        assert!(
            (var[i] - want).abs() < 1e-4,
            "{what} unit {i}: variance {}",
            var[i]
        );
    }
}

/// Checks one cMADE's units on the batch `(z, c)` after its initialisation, recomputing every
/// layer from the variables and masks: hidden units and `m` at mean 0, `s` at 3.0, variance 1,
/// units without inputs constant; and `(m, s)` as returned.
fn check_cmade_standardised(
    made: &Cmade,
    z: &Tensor,
    c: Option<&Tensor>,
    linear_context: Option<&Tensor>,
    returned: &(Tensor, Option<Tensor>),
    what: &str,
) {
    let _no_grad = tch::no_grad_guard();
    let layers = made.masked_layers();
    let n = layers.len() - if made.has_scale() { 2 } else { 1 };
    let bias = |l: &MaskedLinear| l.bias.as_ref().unwrap().shallow_clone();
    let (w0, wc) = recomputed(layers[0], linear_context);
    let mut pre = z.linear(&w0, Some(&bias(layers[0])));
    if let (Some(wc), Some(c)) = (&wc, c) {
        pre += c.linear::<Tensor>(wc, None);
    }
    assert_standardised(&pre, &has_inputs(layers[0]), 0.0, &format!("{what} l0"));
    let mut h = pre.elu();
    if let (None, Some(c)) = (linear_context, c) {
        h += c; // SNF-like
    }
    for (i, layer) in layers.iter().enumerate().take(n).skip(1) {
        let pre = h.linear(&recomputed(layer, None).0, Some(&bias(layer)));
        assert_standardised(&pre, &has_inputs(layer), 0.0, &format!("{what} l{i}"));
        h = pre.elu();
    }
    let m = h.linear(&recomputed(layers[n], None).0, Some(&bias(layers[n])));
    assert_standardised(&m, &has_inputs(layers[n]), 0.0, &format!("{what} m"));
    assert!(
        (&m - &returned.0).abs().max().double_value(&[]) < 1e-4,
        "{what}: m returned"
    );
    if made.has_scale() {
        let l = layers[n + 1];
        let s = h.linear(&recomputed(l, None).0, Some(&bias(l)));
        assert_standardised(&s, &has_inputs(l), 3.0, &format!("{what} s"));
        let got = returned.1.as_ref().unwrap();
        assert!(
            (&s - got).abs().max().double_value(&[]) < 1e-4,
            "{what}: s returned"
        );
    }
}

/// After `Cmade::data_dependent_init` every weight-normalized unit's pre-activation on the
/// init batch has mean 0 (the `s` head 3.0) and variance 1 to 1e-4; units without inputs (the
/// first output in the order, NORMALIZATION §4) are constant at the target mean. Every variant,
/// both orders, a batch far from zero mean and unit scale.
#[test]
fn cmade_units_are_standardised_on_the_init_batch() {
    let _rng = seeded(1);
    let d = 8;
    for (name, cfg) in variants(d) {
        for order in [MaskOrder::Natural, MaskOrder::Reversed] {
            let vs = nn::VarStore::new(Device::Cpu);
            let made = Cmade::new(&(vs.root() / "made"), d, &cfg, order, BN).unwrap();
            assert!(made.is_weight_normalized());
            let z = randn(&[128, d], Kind::Float) * 2.0 + 1.5;
            let c = made
                .context_size()
                .map(|c| randn(&[128, c], Kind::Float) * 0.7 - 0.2);
            let returned = made.data_dependent_init(&z, c.as_ref()).unwrap();
            let linear = vs
                .variables()
                .get("made.ctx.weight")
                .map(Tensor::shallow_clone);
            let what = format!("{name} {order:?}");
            check_cmade_standardised(&made, &z, c.as_ref(), linear.as_ref(), &returned, &what);
            // The forward pass computes the same.
            let (m, s) = made.forward_t(&z, c.as_ref(), true);
            assert!(
                (m - &returned.0).abs().max().double_value(&[]) < 1e-4,
                "{what}"
            );
            if let (Some(s), Some(r)) = (s, &returned.1) {
                assert!((s - r).abs().max().double_value(&[]) < 1e-4, "{what}");
            }
        }
    }
}

/// One training-mode pass of a whole flow inside `with_data_dependent_init` initialises each
/// step's cMADE on that step's own input, the previous steps' output after their
/// initialisation; the pass returns what the initialised flow computes.
#[test]
fn a_flow_initialises_its_steps_in_order() {
    let _rng = seeded(2);
    let d = 8;
    for (name, cfg) in variants(d) {
        let vs = nn::VarStore::new(Device::Cpu);
        let flow = Flow::new(&(vs.root() / "flow"), d, &cfg, BN).unwrap();
        let z0 = randn(&[100, d], Kind::Float) * 1.5 - 0.5;
        let c = context_for(&flow, 100, Kind::Float);
        let (z_init, log_det_init) = tch::no_grad(|| {
            with_data_dependent_init(|| flow.forward_t(&z0, c.as_ref(), true)).unwrap()
        });
        let vars = vs.variables();
        let mut z = z0.shallow_clone();
        for (t, step) in flow.steps().iter().enumerate() {
            let linear = vars
                .get(&format!("flow.step{t}.made.ctx.weight"))
                .map(Tensor::shallow_clone);
            let returned = tch::no_grad(|| step.made().forward_t(&z, c.as_ref(), true));
            let what = format!("{name} step {t}");
            check_cmade_standardised(
                step.made(),
                &z,
                c.as_ref(),
                linear.as_ref(),
                &returned,
                &what,
            );
            z = tch::no_grad(|| step.forward_t(&z, c.as_ref(), true).0);
        }
        assert!(
            (&z - z_init).abs().max().double_value(&[]) < 1e-5,
            "{name}: output"
        );
        let (_, log_det) = tch::no_grad(|| flow.forward_t(&z0, c.as_ref(), true));
        assert!((log_det - log_det_init).abs().max().double_value(&[]) < 1e-4);
        // Initialised like BN (γ = 1, β = 3): the gates start near σ(3), the steps near the
        // identity.
        if !cfg.shift_only {
            let (_, s) = tch::no_grad(|| flow.steps()[0].made().forward_t(&z0, c.as_ref(), true));
            let gate = s.unwrap().sigmoid().mean(Kind::Float).double_value(&[]);
            assert!((gate - 0.9526).abs() < 0.03, "{name}: mean σ(s) = {gate}");
        }
    }
}

/// Outside `with_data_dependent_init` a training-mode pass leaves `g` and `b` alone; an init
/// batch of one example is an error from the scope, and a nested scope runs in the outer one.
#[test]
fn initialisation_happens_only_inside_the_scope() {
    let _rng = seeded(3);
    let d = 8;
    let vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(&(vs.root() / "flow"), d, &wn(d, 2), BN).unwrap();
    let snapshot = || -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, t.copy()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = snapshot();
    let z = randn(&[16, d], Kind::Float);
    let c = context_for(&flow, 16, Kind::Float);
    let _ = flow.forward_t(&z, c.as_ref(), true);
    for ((name, a), (_, b)) in before.iter().zip(snapshot()) {
        assert_eq!(max_abs(&(a - b)), 0.0, "{name} moved outside the scope");
    }
    let err = with_data_dependent_init(|| {
        let one = z.narrow(0, 0, 1);
        let c1 = c.as_ref().map(|c| c.narrow(0, 0, 1));
        tch::no_grad(|| flow.forward_t(&one, c1.as_ref(), true))
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("needs a batch of at least 2 examples"),
        "{err}"
    );
    for ((name, a), (_, b)) in before.iter().zip(snapshot()) {
        assert_eq!(
            max_abs(&(a - b)),
            0.0,
            "{name} moved by a failed initialisation"
        );
    }
    let nested = with_data_dependent_init(|| {
        with_data_dependent_init(|| tch::no_grad(|| flow.forward_t(&z, c.as_ref(), true)))
    });
    assert!(nested.unwrap().is_ok());
    let gains_moved = (before.iter().zip(snapshot()))
        .filter(|((name, a), (_, b))| name.ends_with("weight_g") && max_abs(&(a - b)) > 0.0)
        .count();
    assert_eq!(
        gains_moved, 8,
        "every gain set by the nested scope (2 steps × 4 layers)"
    );
}

/// Per-example Jacobian rows of `f` at `z`: gradients of `Σ_n w_n y[n, b]` (random positive
/// weights `w`, so that train-mode terms across examples would show), `[B, D_out, D]`.
fn dependence(z: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let w = z.rand_like().select(1, 0) + 0.5;
    weighted_jacobian(z, &w, f)
}

/// [`dependence`] with the example weights `w` `[B]` given.
fn weighted_jacobian(z: &Tensor, w: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let z = z.detach().set_requires_grad(true);
    let y = f(&z);
    let rows: Vec<Tensor> = (0..y.size()[1])
        .map(|b| {
            let yb = (y.select(1, b) * w).sum(y.kind());
            Tensor::run_backward(&[yb], &[&z], true, false).remove(0)
        })
        .collect();
    Tensor::stack(&rows, 1)
}

/// `j` (`[B, D, D]`) is exactly zero wherever `order` forbids the dependence and non-zero for
/// every allowed pair in some example.
fn assert_autoregressive(j: &Tensor, order: MaskOrder, what: &str) {
    let d = j.size()[1] as usize;
    let dep = Vec::<f64>::try_from(
        j.abs()
            .amax([0].as_slice(), false)
            .to_kind(Kind::Double)
            .flatten(0, -1),
    )
    .unwrap();
    for b in 0..d {
        for a in 0..d {
            let v = dep[b * d + a];
            if order.allows(a, b) {
                assert!(
                    v > 0.0,
                    "{what}: output {b} does not depend on allowed input {a}"
                );
            } else {
                assert!(v == 0.0, "{what}: output {b} depends on input {a} by {v}");
            }
        }
    }
}

/// A weight-normalized cMADE is autoregressive, exactly: after its initialisation and after
/// every variable moved, in training and evaluation mode, for both heads and every variant;
/// and each step's Jacobian is triangular.
#[test]
fn weight_normalized_cmade_is_autoregressive() {
    let _rng = seeded(4);
    let d = 8;
    for (name, cfg) in variants(d) {
        let vs = nn::VarStore::new(Device::Cpu);
        let flow = Flow::new(&(vs.root() / "flow"), d, &cfg, BN).unwrap();
        let z = randn(&[32, d], Kind::Float);
        let c = context_for(&flow, 32, Kind::Float);
        let _ = tch::no_grad(|| with_data_dependent_init(|| flow.forward_t(&z, c.as_ref(), true)))
            .unwrap();
        for moved in [false, true] {
            if moved {
                perturb(&vs);
            }
            for (t, step) in flow.steps().iter().enumerate() {
                for train in [false, true] {
                    let what = format!("{name}, step {t}, moved {moved}, train {train}");
                    let made = step.made();
                    let j = dependence(&z, |z| made.forward_t(z, c.as_ref(), train).0);
                    assert_autoregressive(&j, step.order(), &format!("{what}: m"));
                    if made.has_scale() {
                        let j = dependence(&z, |z| made.forward_t(z, c.as_ref(), train).1.unwrap());
                        assert_autoregressive(&j, step.order(), &format!("{what}: s"));
                    }
                    // z' = g ⊙ z + (1 − g) ⊙ m: only the diagonal is added.
                    let j = dependence(&z, |z| step.forward_t(z, c.as_ref(), train).0);
                    let eye = Tensor::eye(d, (Kind::Float, Device::Cpu));
                    let off = &j * (eye.ones_like() - &eye);
                    assert_autoregressive(&off, step.order(), &format!("{what}: step"));
                }
            }
        }
    }
}

/// The frozen flow (weight norm folded into plain weights, NORMALIZATION §5) is the live flow
/// in evaluation mode: outputs, log-dets and Jacobians in f64, for every variant with moved
/// variables; and it keeps the values it was frozen with.
#[test]
fn frozen_flow_is_the_live_flow() {
    let _rng = seeded(5);
    let d = 8;
    for (name, cfg) in variants(d) {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let flow = Flow::new(&(vs.root() / "flow"), d, &cfg, BN).unwrap();
        vs.double();
        let z = randn(&[20, d], Kind::Double) * 1.5;
        let c = context_for(&flow, 20, Kind::Double);
        let _ = tch::no_grad(|| with_data_dependent_init(|| flow.forward_t(&z, c.as_ref(), true)))
            .unwrap();
        perturb(&vs);
        let frozen = flow.freeze();
        let (live, live_ld) = flow.forward_t(&z, c.as_ref(), false);
        let (cold, cold_ld) = frozen.forward(&z, c.as_ref());
        assert!(max_abs(&(&live - &cold)) < 1e-12, "{name}: outputs");
        assert!(max_abs(&(&live_ld - &cold_ld)) < 1e-12, "{name}: log-dets");
        let w = z.ones_like().select(1, 0);
        let j_live = weighted_jacobian(&z, &w, |z| flow.forward_t(z, c.as_ref(), false).0);
        let j_cold = weighted_jacobian(&z, &w, |z| frozen.forward(z, c.as_ref()).0);
        assert!(max_abs(&(j_live - j_cold)) < 1e-10, "{name}: Jacobians");
        // Training mode is the same function (no batch statistics).
        let (train, _) = flow.forward_t(&z, c.as_ref(), true);
        assert!(max_abs(&(&train - &live)) < 1e-12, "{name}: training mode");
        perturb(&vs);
        assert!(
            max_abs(&(frozen.forward(&z, c.as_ref()).0 - &cold)) == 0.0,
            "{name}: kept"
        );
    }
}

/// Gradients through a weight-normalized cMADE are finite everywhere (units without inputs
/// included), zero on masked-out entries of `V` and on the `g` of units without inputs, and
/// reach `g` and `b` of every layer.
#[test]
fn gradients_are_finite_and_respect_the_mask() {
    let _rng = seeded(6);
    let d = 8;
    let vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(&(vs.root() / "flow"), d, &wn(d, 2), BN).unwrap();
    let z = randn(&[16, d], Kind::Float);
    let c = context_for(&flow, 16, Kind::Float);
    let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), true);
    (z_out.square().sum(Kind::Float) - log_det.sum(Kind::Float)).backward();
    for step in flow.steps() {
        for layer in step.made().masked_layers() {
            let gv = layer.weight.grad();
            assert!(gv.isfinite().all().int64_value(&[]) == 1);
            let outside = gv.masked_select(&layer.mask().logical_not());
            assert!(
                outside.numel() == 0 || max_abs(&outside) == 0.0,
                "masked-out gradient"
            );
            let norm = layer.weight_norm().unwrap();
            let gg = norm.g.grad();
            assert!(gg.isfinite().all().int64_value(&[]) == 1);
            assert!(max_abs(&gg) > 0.0 && max_abs(&norm.b.grad()) > 0.0);
            let gg = Vec::<f32>::try_from(gg.view([-1])).unwrap();
            for (i, has) in has_inputs(layer).iter().enumerate() {
                assert!(
                    *has || gg[i] == 0.0,
                    "unit {i} without inputs: g gradient {}",
                    gg[i]
                );
            }
        }
    }
}

/// The parameter-count formula matches the built flows for every normalization and variant
/// (weight norm counts `g` and `b` where BN counts γ and β; `none` one bias per unit), and the
/// variables have weight norm's names: `l{i}.weight_v`, `l{i}.weight_g` `[n, 1]`, `l{i}.bias`,
/// `m.*`, `s.*`, no `bn*`.
#[test]
fn parameter_counts_and_names_for_every_normalization() {
    let _rng = seeded(7);
    let trainable = |vs: &nn::VarStore| -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    };
    for d in [8, 16] {
        for (name, cfg) in variants(d) {
            let mut counts = Vec::new();
            for norm in [
                Normalization::BatchNorm,
                Normalization::WeightNorm,
                Normalization::None,
            ] {
                let cfg = FlowConfig {
                    normalization: norm,
                    ..cfg.clone()
                };
                let vs = nn::VarStore::new(Device::Cpu);
                Flow::new(&(vs.root() / "flow"), d, &cfg, BN).unwrap();
                assert_eq!(
                    trainable(&vs),
                    cfg.parameter_count(d),
                    "D={d} {name} {norm}"
                );
                counts.push(cfg.parameters_per_layer(d));
            }
            assert_eq!(
                counts[0], counts[1],
                "{name}: weight norm counts as batch norm"
            );
            assert!(counts[2] < counts[0], "{name}: none has one per unit");
        }
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = FlowConfig {
        context: ContextMode::Linear,
        context_size: 5,
        ..wn(8, 1)
    };
    Flow::new(&(vs.root() / "flow"), 8, &cfg, BN).unwrap();
    let vars = vs.variables();
    let shape = |k: &str| vars.get(k).unwrap_or_else(|| panic!("no {k}")).size();
    assert_eq!(shape("flow.step0.made.l0.weight_v"), [16, 8]);
    assert_eq!(shape("flow.step0.made.l0.weight_g"), [16, 1]);
    assert_eq!(shape("flow.step0.made.l1.bias"), [16]);
    assert_eq!(shape("flow.step0.made.ctx.weight"), [16, 5]);
    assert_eq!(shape("flow.step0.made.m.weight_v"), [8, 16]);
    assert_eq!(shape("flow.step0.made.s.weight_g"), [8, 1]);
    let s_bias = &vars["flow.step0.made.s.bias"];
    assert_eq!(max_abs(&(s_bias - 3.0)), 0.0, "s starts at BN_s's β");
    assert!(!vars.keys().any(|k| k.contains("bn")));
}

/// `normalization` in JSON; the deprecated `batch_norm` keeps its meaning (`false` = none);
/// both together must agree, and the error names both; read configs are canonical (equal
/// settings compare and serialise equal, `batch_norm` is never written); unknown keys are
/// still refused.
#[test]
fn normalization_and_the_deprecated_batch_norm_in_json() {
    let read = |json: &str| serde_json::from_str::<FlowConfig>(json);
    let norm = |json: &str| read(json).unwrap().cmade_normalization().unwrap();
    assert_eq!(norm("{}"), Normalization::BatchNorm);
    assert_eq!(norm(r#"{"batch_norm": true}"#), Normalization::BatchNorm);
    assert_eq!(norm(r#"{"batch_norm": false}"#), Normalization::None);
    assert_eq!(
        norm(r#"{"normalization": "weight_norm"}"#),
        Normalization::WeightNorm
    );
    assert_eq!(
        norm(r#"{"normalization": "none", "batch_norm": false}"#),
        Normalization::None
    );
    assert_eq!(
        norm(r#"{"normalization": "batch_norm", "batch_norm": true}"#),
        Normalization::BatchNorm
    );
    // Canonical: the same settings, the same config and the same JSON.
    assert_eq!(
        read(r#"{"batch_norm": true}"#).unwrap(),
        FlowConfig::default()
    );
    assert_eq!(
        read(r#"{"normalization": "batch_norm"}"#).unwrap(),
        FlowConfig::default()
    );
    assert_eq!(
        read(r#"{"batch_norm": false}"#).unwrap(),
        read(r#"{"normalization": "none"}"#).unwrap()
    );
    let json = serde_json::to_value(FlowConfig::default()).unwrap();
    assert!(
        json.get("batch_norm").is_none() && json.get("normalization").is_none(),
        "{json}"
    );
    for n in [Normalization::WeightNorm, Normalization::None] {
        let cfg = FlowConfig {
            normalization: n,
            layers: 3,
            ..Default::default()
        };
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(
            text.contains(&format!("\"normalization\":\"{n}\"")),
            "{text}"
        );
        assert_eq!(read(&text).unwrap(), cfg);
    }
    // A config built with the alias is written canonically and reads back the same.
    let alias = FlowConfig {
        batch_norm: Some(false),
        ..Default::default()
    };
    assert_eq!(alias.cmade_normalization().unwrap(), Normalization::None);
    assert_eq!(
        alias.canonical().unwrap(),
        FlowConfig {
            normalization: Normalization::None,
            ..Default::default()
        }
    );
    let text = serde_json::to_string(&alias).unwrap();
    assert!(
        text.contains("\"normalization\":\"none\"") && !text.contains("batch_norm"),
        "{text}"
    );
    assert_eq!(
        read(&text).unwrap().cmade_normalization().unwrap(),
        Normalization::None
    );

    for (json, value) in [
        (
            r#"{"batch_norm": false, "normalization": "weight_norm"}"#,
            "false with `normalization` = weight_norm",
        ),
        (
            r#"{"normalization": "batch_norm", "batch_norm": false}"#,
            "false with `normalization` = batch_norm",
        ),
        (
            r#"{"batch_norm": true, "normalization": "none"}"#,
            "true with `normalization` = none",
        ),
        (
            r#"{"batch_norm": true, "normalization": "weight_norm"}"#,
            "true with `normalization` = weight_norm",
        ),
    ] {
        let err = read(json).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "invalid flow setting `batch_norm` = {value}: one of them: `batch_norm` is the \
                 deprecated alias of `normalization` (true = batch_norm, false = none); remove \
                 `batch_norm` (or set it to null)"
            )),
            "{json}: {err}"
        );
    }
    // Built in code: the alias decides while `normalization` is at its default; `false` with
    // another normalization is refused by validate (and by Flow::new) naming both.
    let built = FlowConfig {
        batch_norm: Some(false),
        normalization: Normalization::WeightNorm,
        ..Default::default()
    };
    let err = built.validate().unwrap_err().to_string();
    assert!(
        err.contains("`batch_norm` = false with `normalization` = weight_norm"),
        "{err}"
    );
    let vs = nn::VarStore::new(Device::Cpu);
    assert!(Flow::new(&vs.root(), 8, &built, BN).is_err());
    assert!(read(r#"{"normalisation": "none"}"#)
        .unwrap_err()
        .to_string()
        .contains("unknown field"));
    assert!(read(r#"{"normalization": "layer_norm"}"#)
        .unwrap_err()
        .to_string()
        .contains("unknown variant"));
    assert!(read(r#"{"batch_norm": "false"}"#).is_err());
}
