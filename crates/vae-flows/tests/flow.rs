//! Flow checks of ORIGINAL §3.4 and §10.2: the autoregressive Jacobian of every cMADE, the
//! log-det against an autograd Jacobian, the inverse, the initial near-identity, eval-mode
//! independence from the batch, parameter counts and errors.
//!
//! All flows here are small (D = 8 and D = 64 with hidden widths of 2·D) so the tests run in
//! seconds on a shared 2-core machine.

use std::sync::{Mutex, MutexGuard};

use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use vae_flows::config::Normalization;
use vae_flows::{
    BatchNormSettings, Cmade, ContextMode, ContextPredictor, Error, Flow, FlowConfig, FlowKind,
    IafStep, MaskOrder,
};

/// libtorch has one global RNG (docs/TOOLCHAIN.md §5) and the test harness runs tests on
/// several threads, so every test holds this lock while it seeds and draws: results reproduce
/// whatever the thread count.
static RNG: Mutex<()> = Mutex::new(());

/// Locks the global RNG for the rest of the test and seeds it.
fn seeded(seed: i64) -> MutexGuard<'static, ()> {
    let guard = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The tensors here are tiny: intra-op threads only add spinning on a shared machine.
    tch::set_num_threads(1);
    tch::manual_seed(seed);
    guard
}

const BN: BatchNormSettings = BatchNormSettings {
    momentum: 0.001,
    eps: 1e-3,
};

/// A small config for latent size `d`: `layers` steps of cMADE `[2d, 2d]`, SNF-like context of
/// width `2d`, BN on.
fn small(d: i64, layers: usize) -> FlowConfig {
    FlowConfig {
        layers,
        hidden: vec![2 * d, 2 * d],
        context_size: 2 * d,
        ..Default::default()
    }
}

/// The variants every property is checked on.
fn variants(d: i64, layers: usize) -> Vec<(&'static str, FlowConfig)> {
    let base = small(d, layers);
    vec![
        ("gated, BN, SNF-like context", base.clone()),
        (
            "gated, no BN, linear context",
            FlowConfig {
                normalization: Normalization::None,
                context: ContextMode::Linear,
                context_size: 5,
                ..base.clone()
            },
        ),
        (
            "gated, BN, no context, one hidden layer",
            FlowConfig {
                hidden: vec![2 * d],
                context_size: 0,
                ..base.clone()
            },
        ),
        (
            "shift-only, BN, SNF-like context",
            FlowConfig {
                shift_only: true,
                ..base
            },
        ),
    ]
}

/// Builds `cfg` under `flow` in a fresh VarStore; with `random`, moves every weight, bias, BN
/// affine parameter and BN running statistic away from its initial value. `double` casts the
/// store to f64 after building.
fn build(d: i64, cfg: &FlowConfig, random: bool, double: bool) -> (nn::VarStore, Flow) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(&(vs.root() / "flow"), d, cfg, BN).unwrap();
    if double {
        vs.double();
    }
    if random {
        perturb(&vs);
    }
    (vs, flow)
}

fn perturb(vs: &nn::VarStore) {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut v) in vars {
            let new = if name.ends_with("running_var") {
                v.rand_like() * 1.5 + 0.5
            } else if name.ends_with("running_mean") {
                v.randn_like() * 0.2
            } else {
                &v + v.randn_like() * 0.1
            };
            v.copy_(&new);
        }
    });
}

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

fn context_for(flow: &Flow, batch: i64, kind: Kind) -> Option<Tensor> {
    flow.context_size().map(|c| randn(&[batch, c], kind))
}

/// Per-example Jacobian `J[n, b, a] = ∂y[n, b]/∂z[n, a]` of `f` at `z` (`[B, D]`), `[B, D_out, D]`,
/// one backward pass per output dimension. Each row is the gradient of `Σ_n y[n, b]`, which is the
/// per-example row when examples are independent (eval mode).
fn jacobian(z: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    weighted_jacobian(z, None, f)
}

/// For structure checks in any mode: rows are gradients of `Σ_n w_n y[n, b]` with random weights
/// `w`, so in train mode they also collect the cross-example terms that batch statistics create.
/// (Unweighted sums would vanish: a train-mode BN output sums to `B·β` over the batch.)
fn dependence(z: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let w = z.rand_like().select(1, 0) + 0.5;
    weighted_jacobian(z, Some(&w), f)
}

fn weighted_jacobian(z: &Tensor, w: Option<&Tensor>, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let z = z.detach().set_requires_grad(true);
    let y = f(&z);
    let rows: Vec<Tensor> = (0..y.size()[1])
        .map(|b| {
            let yb = y.select(1, b);
            let yb = match w {
                Some(w) => (yb * w).sum(y.kind()),
                None => yb.sum(y.kind()),
            };
            Tensor::run_backward(&[yb], &[&z], true, false).remove(0)
        })
        .collect();
    Tensor::stack(&rows, 1)
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// Asserts that `j` (`[B, D, D]`, output × input) is exactly zero wherever `order` forbids the
/// dependence (input at or after output), and non-zero for every allowed pair in some example:
/// with hidden widths that are multiples of D the dependence is exact (ORIGINAL §3.4.1).
fn assert_autoregressive(j: &Tensor, order: MaskOrder, what: &str) {
    let d = j.size()[1] as usize;
    // dep[b * d + a] = max over examples of |∂y_b/∂z_a|.
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

#[test]
fn every_cmade_is_autoregressive_in_its_order() {
    let _rng = seeded(1);
    for d in [8, 64] {
        for (name, cfg) in variants(d, 3) {
            let (_vs, flow) = build(d, &cfg, true, true);
            let z = randn(&[4, d], Kind::Double);
            let c = context_for(&flow, 4, Kind::Double);
            for (t, step) in flow.steps().iter().enumerate() {
                assert_eq!(step.order(), MaskOrder::for_layer(t));
                for train in [false, true] {
                    let what = format!("D={d} {name} step {t} train={train}");
                    let made = step.made();
                    let jm = dependence(&z, |z| made.forward_t(z, c.as_ref(), train).0);
                    assert_autoregressive(&jm, step.order(), &format!("{what} m"));
                    if made.has_scale() {
                        let js =
                            dependence(&z, |z| made.forward_t(z, c.as_ref(), train).1.unwrap());
                        assert_autoregressive(&js, step.order(), &format!("{what} s"));
                    }
                }
            }
        }
    }
}

#[test]
fn step_jacobian_is_triangular_with_sigmoid_diagonal() {
    let _rng = seeded(2);
    // §10.2: one IAF layer in eval mode.
    let d = 8;
    let (_vs, flow) = build(d, &small(d, 2), true, true);
    let z = randn(&[5, d], Kind::Double);
    let c = context_for(&flow, 5, Kind::Double);
    for step in flow.steps() {
        let j = jacobian(&z, |z| step.forward_t(z, c.as_ref(), false).0);
        let off_diagonal = &j - j.diagonal(0, 1, 2).diag_embed(0, 1, 2);
        assert_autoregressive(&off_diagonal, step.order(), "dz'/dz off the diagonal");
        let s = step.made().forward_t(&z, c.as_ref(), false).1.unwrap();
        assert!(j
            .diagonal(0, 1, 2)
            .allclose(&s.sigmoid(), 1e-12, 1e-12, false));
        let (_, log_det) = step.forward_t(&z, c.as_ref(), false);
        let expected = s.sigmoid().log().sum_dim_intlist(1, false, None);
        assert!(log_det.allclose(&expected, 1e-10, 1e-10, false));
    }
}

#[test]
fn log_det_matches_autograd_jacobian() {
    let _rng = seeded(3);
    for d in [8, 64] {
        for (name, cfg) in variants(d, 4) {
            let (_vs, flow) = build(d, &cfg, true, true);
            let z = randn(&[3, d], Kind::Double);
            let c = context_for(&flow, 3, Kind::Double);
            let j = jacobian(&z, |z| flow.forward_t(z, c.as_ref(), false).0);
            let (sign, log_abs_det) = Tensor::linalg_slogdet(&j);
            let (_, log_det) = flow.forward_t(&z, c.as_ref(), false);
            assert_eq!(log_det.size(), [3]);
            let err = max_abs(&(&log_det - &log_abs_det));
            assert!(
                err < 1e-4,
                "D={d} {name}: log-det {log_det} vs autograd {log_abs_det}"
            );
            // Triangular with a positive diagonal: the determinant is positive.
            assert!(sign.min().double_value(&[]) > 0.0, "D={d} {name}");
            if cfg.shift_only {
                assert_eq!(max_abs(&log_det), 0.0);
            } else {
                assert!(log_det.max().double_value(&[]) < -1e-3, "D={d} {name}");
            }
        }
    }
}

#[test]
fn log_det_is_finite_for_extreme_gates() {
    let _rng = seeded(4);
    // D10: log σ(s) for very negative s is −s, not −inf.
    let d = 8;
    let cfg = FlowConfig {
        normalization: Normalization::None,
        context_size: 0,
        ..small(d, 1)
    };
    let (vs, flow) = build(d, &cfg, false, false);
    tch::no_grad(|| {
        let mut bias = vs.variables()["flow.step0.made.s.bias"].shallow_clone();
        let _ = bias.fill_(-200.0);
    });
    let z = randn(&[2, d], Kind::Float);
    let (z_out, log_det) = flow.forward_t(&z, None, false);
    assert!(log_det.isfinite().all().int64_value(&[]) == 1, "{log_det}");
    assert!(log_det.max().double_value(&[]) < -1000.0);
    assert!(z_out.isfinite().all().int64_value(&[]) == 1);
}

#[test]
fn inverse_undoes_forward() {
    let _rng = seeded(5);
    for d in [8, 64] {
        for (name, cfg) in variants(d, 4) {
            let (_vs, flow) = build(d, &cfg, true, true);
            let z = randn(&[4, d], Kind::Double);
            let c = context_for(&flow, 4, Kind::Double);
            let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), false);
            // `inverse` plus the forward log-det at the recovered point.
            let (back, log_det_back) = flow.inverse_with_log_det(&z_out, c.as_ref()).unwrap();
            let err = max_abs(&(&back - &z));
            assert!(err < 1e-5, "D={d} {name}: inverse error {err}");
            assert!(max_abs(&(log_det_back - log_det)) < 1e-6);
        }
    }
}

#[test]
fn inverse_undoes_forward_in_f32() {
    // In f32 the error grows as 1/σ(s) per layer: at initialisation (gates ≈ 0.8-0.95) it is
    // about 1e-6; with perturbed weights and gates down to 0.25 errors near 1e-4 were seen, so
    // that case is checked loosely and the tight check is the f64 one above.
    let _rng = seeded(6);
    let d = 64;
    for (name, cfg) in variants(d, 4) {
        for (random, tolerance) in [(false, 1e-5), (true, 1e-3)] {
            let (_vs, flow) = build(d, &cfg, random, false);
            let z = randn(&[4, d], Kind::Float);
            let c = context_for(&flow, 4, Kind::Float);
            let (z_out, _) = flow.forward_t(&z, c.as_ref(), false);
            let err = max_abs(&(flow.inverse(&z_out, c.as_ref()).unwrap() - &z));
            assert!(
                err < tolerance,
                "{name} random={random}: f32 inverse error {err}"
            );
        }
    }
}

#[test]
fn gated_steps_start_near_identity() {
    let _rng = seeded(7);
    let d = 64;
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    for (batch_norm, init) in [(true, 3.0), (false, 2.0)] {
        let cfg = FlowConfig {
            normalization: if batch_norm {
                Normalization::BatchNorm
            } else {
                Normalization::None
            },
            context_size: 0,
            ..small(d, 4)
        };
        let (_vs, flow) = build(d, &cfg, false, false);
        let z = randn(&[256, d], Kind::Float);
        for (t, step) in flow.steps().iter().enumerate() {
            let (_, s) = step.made().forward_t(&z, None, false);
            let gate = s.unwrap().sigmoid().mean(Kind::Float).double_value(&[]);
            assert!(
                (gate - sig(init)).abs() < 0.02,
                "BN={batch_norm} step {t}: mean σ(s) = {gate}, σ({init}) = {}",
                sig(init)
            );
            if batch_norm {
                // In train mode the batch mean of s is exactly the BN β, 3.0.
                let (_, s) = step.made().forward_t(&z, None, true);
                let mean = s.unwrap().mean_dim(0, false, Kind::Float);
                assert!(max_abs(&(mean - 3.0)) < 1e-4);
            }
        }
        let (z_out, log_det) = flow.forward_t(&z, None, false);
        let step_log_det = log_det.mean(Kind::Float).double_value(&[]) / (4.0 * d as f64);
        assert!(
            (step_log_det - sig(init).ln()).abs() < 0.03,
            "{step_log_det}"
        );
        // Four gates of ≈ g move z by about 1 − g⁴ of its size (0.18 with BN, 0.40 without).
        let bound = 1.5 * (1.0 - sig(init).powi(4));
        let moved = (z_out - &z).abs().mean(Kind::Float).double_value(&[]);
        let size = z.abs().mean(Kind::Float).double_value(&[]);
        assert!(
            moved < bound * size,
            "BN={batch_norm}: mean |z' − z| = {moved}, mean |z| = {size}"
        );
    }
}

#[test]
fn bn_and_bias_init_follow_the_spec() {
    let _rng = seeded(8);
    let d = 8;
    let (vs, _) = build(d, &small(d, 1), false, false);
    let v = vs.variables();
    let constant = |name: &str, value: f64| {
        let t = &v[name];
        assert!(
            max_abs(&(t - value)) == 0.0,
            "{name} should be {value}: {t}"
        );
    };
    constant("flow.step0.made.bn_s.bias", 3.0);
    constant("flow.step0.made.bn_s.weight", 1.0);
    constant("flow.step0.made.bn_m.bias", 0.0);
    constant("flow.step0.made.bn_m.weight", 1.0);
    constant("flow.step0.made.bn0.weight", 1.0);
    constant("flow.step0.made.bn1.running_var", 1.0);
    assert!(!v.contains_key("flow.step0.made.l0.bias"));
    // Glorot uniform on the full matrix: bound sqrt(6 / (8 + 16)) = 0.5.
    let w = &v["flow.step0.made.l0.weight"];
    assert_eq!(w.size(), [16, 8]);
    assert!(max_abs(w) <= 0.5 && max_abs(w) > 0.4);

    let cfg = FlowConfig {
        normalization: Normalization::None,
        ..small(d, 1)
    };
    let (vs, _) = build(d, &cfg, false, false);
    let v = vs.variables();
    assert!(max_abs(&(&v["flow.step0.made.s.bias"] - 2.0)) == 0.0);
    assert!(max_abs(&v["flow.step0.made.m.bias"]) == 0.0);
    assert!(max_abs(&v["flow.step0.made.l1.bias"]) == 0.0);
    assert!(!v.keys().any(|k| k.contains("bn")));
}

#[test]
fn eval_mode_is_per_example() {
    let _rng = seeded(9);
    let d = 64;
    for (name, cfg) in variants(d, 3) {
        let (_vs, flow) = build(d, &cfg, true, false);
        let c_size = flow.context_size();
        let x = randn(&[1, d], Kind::Float);
        let cx = c_size.map(|c| randn(&[1, c], Kind::Float));
        let run = |others: i64, train: bool| {
            let z = Tensor::cat(&[x.shallow_clone(), randn(&[others, d], Kind::Float)], 0);
            let c = c_size.map(|c| {
                Tensor::cat(
                    &[
                        cx.as_ref().unwrap().shallow_clone(),
                        randn(&[others, c], Kind::Float),
                    ],
                    0,
                )
            });
            let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), train);
            (z_out.get(0), log_det.get(0))
        };
        let (a, la) = run(7, false);
        let (b, lb) = run(2, false);
        let (one, l1) = run(0, false);
        for (o, l) in [(&b, &lb), (&one, &l1)] {
            assert!(a.allclose(o, 1e-5, 1e-6, false), "{name}");
            assert!(la.allclose(l, 1e-5, 1e-5, false), "{name}");
        }
        // With BN, train mode uses batch statistics, so the example depends on its batch (D11);
        // assert the current behaviour.
        let (ta, _) = run(7, true);
        let (tb, _) = run(2, true);
        assert_eq!(
            ta.allclose(&tb, 1e-5, 1e-6, false),
            cfg.normalization != Normalization::BatchNorm,
            "{name}: train mode"
        );
    }
}

#[test]
fn masked_weights_stay_masked_under_adam() {
    let _rng = seeded(10);
    let d = 8;
    let cfg = small(d, 2);
    let vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(&(vs.root() / "flow"), d, &cfg, BN).unwrap();
    let mut opt = nn::Adam::default().wd(1e-2).build(&vs, 1e-2).unwrap();
    for _ in 0..20 {
        let z = randn(&[16, d], Kind::Float);
        let c = context_for(&flow, 16, Kind::Float);
        let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), true);
        let loss =
            (z_out.square().sum_dim_intlist(1, false, None) * 0.5 - log_det).mean(Kind::Float);
        opt.backward_step(&loss);
    }
    let z = randn(&[4, d], Kind::Float);
    let c = context_for(&flow, 4, Kind::Float);
    for step in flow.steps() {
        for train in [false, true] {
            let j = dependence(&z, |z| {
                step.made().forward_t(z, c.as_ref(), train).1.unwrap()
            });
            assert_autoregressive(&j, step.order(), "after Adam");
        }
    }
}

#[test]
fn parameter_counts_match_the_spec() {
    let _rng = seeded(11);
    let cfg = FlowConfig::default();
    assert_eq!(cfg.parameters_per_layer(64), 4_062_976);
    assert_eq!(cfg.parameter_count(64), 32_503_808);
    assert_eq!(ContextPredictor::parameter_count(450, 1920), 867_840);

    // One default layer, allocated: its trainable parameters are the count above.
    let vs = nn::VarStore::new(Device::Cpu);
    let one = FlowConfig {
        layers: 1,
        ..Default::default()
    };
    let flow = Flow::new(&(vs.root() / "flow"), 64, &one, BN).unwrap();
    assert_eq!(flow.context_size(), Some(1920));
    assert_eq!(trainable(&vs), 4_062_976);
    let names = vs.variables();
    for key in [
        "flow.step0.made.l0.weight",
        "flow.step0.made.l1.weight",
        "flow.step0.made.bn1.running_mean",
        "flow.step0.made.m.weight",
        "flow.step0.made.s.weight",
        "flow.step0.made.bn_s.bias",
    ] {
        assert!(names.contains_key(key), "missing {key}");
    }
    assert!(
        !names.keys().any(|k| k.contains("__")),
        "renamed duplicates"
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let ctx = ContextPredictor::new(&(vs.root() / "ctx"), 450, 1920, BN).unwrap();
    assert_eq!(trainable(&vs), 867_840);
    let h = randn(&[4, 450], Kind::Float);
    assert_eq!(ctx.forward_t(&h, true).size(), [4, 1920]);
    assert_eq!(ctx.forward_t(&h, false).size(), [4, 1920]);
    assert!(vs.variables().contains_key("ctx.fc.weight"));
    assert!(vs.variables().contains_key("ctx.bn.running_var"));
}

#[test]
fn parameter_count_formula_matches_built_flows() {
    let _rng = seeded(12);
    for d in [8, 64] {
        for (name, cfg) in variants(d, 3) {
            let (vs, _) = build(d, &cfg, false, false);
            assert_eq!(trainable(&vs), cfg.parameter_count(d), "D={d} {name}");
        }
    }
}

fn trainable(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

#[test]
fn step_paths_alternate_orders() {
    let _rng = seeded(13);
    let (vs, flow) = build(8, &small(8, 3), false, false);
    assert_eq!(flow.num_layers(), 3);
    let orders: Vec<_> = flow.steps().iter().map(IafStep::order).collect();
    assert_eq!(
        orders,
        [MaskOrder::Natural, MaskOrder::Reversed, MaskOrder::Natural]
    );
    assert!(vs.variables().contains_key("flow.step2.made.bn_m.weight"));
}

#[test]
fn identity_flow_is_the_identity_and_consumes_no_context() {
    let _rng = seeded(14);
    let cfg = FlowConfig {
        kind: FlowKind::Identity,
        ..Default::default()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(&(vs.root() / "flow"), 64, &cfg, BN).unwrap();
    assert_eq!(flow.context_size(), None); // D21
    assert_eq!(flow.num_layers(), 8);
    assert_eq!(vs.variables().len(), 0);
    assert_eq!(cfg.parameter_count(64), 0);
    let z = randn(&[3, 64], Kind::Float);
    let (z_out, log_det) = flow.forward_t(&z, None, true);
    assert!(z_out.equal(&z));
    assert!(log_det.equal(&Tensor::zeros([3], (Kind::Float, Device::Cpu))));
    assert!(flow.inverse(&z, None).unwrap().equal(&z));
}

#[test]
fn invalid_settings_are_errors_not_panics() {
    let _rng = seeded(15);
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root() / "flow";
    let d = 64;
    let try_cfg = |cfg: FlowConfig| Flow::new(&p, d, &cfg, BN).map(|_| ()).unwrap_err();

    // [64, 100, 64]: divisibility, both widths named.
    let err = try_cfg(FlowConfig {
        hidden: vec![100],
        context_size: 100,
        ..small(d, 2)
    });
    assert!(
        matches!(
            err,
            Error::Indivisible {
                n_in: 64,
                n_out: 100,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("64") && err.to_string().contains("100"));

    // SNF-like context must match the first hidden width.
    let err = try_cfg(FlowConfig {
        context_size: 100,
        ..small(d, 2)
    });
    assert!(matches!(
        err,
        Error::SnfContextSize {
            context_size: 100,
            first_hidden: 128
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("100") && msg.contains("128"), "{msg}");
    // ... but any size works with linear context.
    let ok = FlowConfig {
        context: ContextMode::Linear,
        context_size: 100,
        ..small(d, 1)
    };
    assert_eq!(
        Flow::new(&(vs.root() / "ok"), d, &ok, BN)
            .unwrap()
            .context_size(),
        Some(100)
    );

    let field = |err: Error| match err {
        Error::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert_eq!(
        field(try_cfg(FlowConfig {
            layers: 0,
            ..small(d, 1)
        })),
        "layers"
    );
    assert_eq!(
        field(try_cfg(FlowConfig {
            hidden: vec![],
            ..small(d, 1)
        })),
        "hidden"
    );
    assert_eq!(
        field(try_cfg(FlowConfig {
            hidden: vec![128, -128],
            ..small(d, 1)
        })),
        "hidden"
    );
    assert_eq!(
        field(try_cfg(FlowConfig {
            context_size: -1,
            ..small(d, 1)
        })),
        "context_size"
    );
    assert_eq!(
        field(Flow::new(&p, 0, &small(d, 1), BN).map(|_| ()).unwrap_err()),
        "latent"
    );
    let bad_bn = BatchNormSettings { eps: 0.0, ..BN };
    assert_eq!(
        field(
            Flow::new(&p, d, &small(d, 1), bad_bn)
                .map(|_| ())
                .unwrap_err()
        ),
        "batch_norm.eps"
    );
    let bad_bn = BatchNormSettings {
        momentum: 1.5,
        ..BN
    };
    assert_eq!(
        field(
            ContextPredictor::new(&p, 450, 1920, bad_bn)
                .map(|_| ())
                .unwrap_err()
        ),
        "batch_norm.momentum"
    );
    assert_eq!(
        field(
            ContextPredictor::new(&p, 450, 0, BN)
                .map(|_| ())
                .unwrap_err()
        ),
        "context_size"
    );
    assert_eq!(
        field(
            ContextPredictor::new(&p, -3, 10, BN)
                .map(|_| ())
                .unwrap_err()
        ),
        "in_features"
    );

    // Pairwise divisible but not autoregressive.
    let err = try_cfg(FlowConfig {
        hidden: vec![32, 64],
        context_size: 0,
        ..small(d, 1)
    });
    assert!(matches!(err, Error::NotAutoregressive { .. }), "{err:?}");

    // The lone building blocks validate the same way.
    let err = Cmade::new(
        &p,
        d,
        &FlowConfig {
            hidden: vec![100],
            ..small(d, 1)
        },
        MaskOrder::Natural,
        BN,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Indivisible { .. } | Error::SnfContextSize { .. }
    ));
    let err = IafStep::new(
        &p,
        d,
        &FlowConfig {
            context_size: 7,
            ..small(d, 1)
        },
        MaskOrder::Reversed,
        BN,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(matches!(
        err,
        Error::SnfContextSize {
            context_size: 7,
            ..
        }
    ));
}

/// The frozen flow (batch norms folded into the masked layers, `Flow::freeze`) is the flow in
/// evaluation mode: the same outputs, log-dets and whole Jacobians (so the same triangular
/// structure) in f64, for every variant and for BN with a linear context (whose weight folds
/// with the first layer's); and it keeps the values it was frozen with.
#[test]
fn frozen_flow_is_the_flow_in_evaluation_mode() {
    let _rng = seeded(12);
    let d = 8;
    let mut cases = variants(d, 3);
    cases.push((
        "gated, BN, linear context",
        FlowConfig {
            context: ContextMode::Linear,
            context_size: 5,
            ..small(d, 3)
        },
    ));
    for (name, cfg) in cases {
        let (vs, flow) = build(d, &cfg, true, true);
        let frozen = flow.freeze();
        let z = randn(&[4, d], Kind::Double);
        let c = context_for(&flow, 4, Kind::Double);
        let (y_ref, ld_ref) = flow.forward_t(&z, c.as_ref(), false);
        let (y, ld) = frozen.forward(&z, c.as_ref());
        assert!(max_abs(&(&y - &y_ref)) < 1e-10, "{name}: outputs");
        assert!(max_abs(&(&ld - &ld_ref)) < 1e-10, "{name}: log-dets");
        let j_ref = jacobian(&z, |z| flow.forward_t(z, c.as_ref(), false).0);
        let j = jacobian(&z, |z| frozen.forward(z, c.as_ref()).0);
        assert!(max_abs(&(&j - &j_ref)) < 1e-10, "{name}: Jacobians");
        assert!(max_abs(&j_ref) > 0.1, "{name}: a trivial Jacobian");
        if let Some(c) = &c {
            // Gradients with respect to the context too.
            let grad_c = |f: &dyn Fn(&Tensor) -> Tensor| {
                let c = c.detach().set_requires_grad(true);
                let out = f(&c).sum(Kind::Double);
                Tensor::run_backward(&[out], &[&c], false, false)[0].copy()
            };
            // Outputs and log-det together: the shift-only log-det is a constant 0.
            let w = randn(&[4, d], Kind::Double);
            let loss = |(y, ld): (Tensor, Tensor)| (y * &w).sum_dim_intlist(-1, false, None) + ld;
            let g_ref = grad_c(&|c| loss(flow.forward_t(&z, Some(c), false)));
            let g = grad_c(&|c| loss(frozen.forward(&z, Some(c))));
            assert!(max_abs(&(&g - &g_ref)) < 1e-10, "{name}: context gradients");
        }
        perturb(&vs);
        let (y_later, _) = frozen.forward(&z, c.as_ref());
        assert!(max_abs(&(&y_later - &y)) < 1e-12, "{name}: the copy moved");
        let (y_live, _) = flow.forward_t(&z, c.as_ref(), false);
        assert!(
            max_abs(&(&y_live - &y)) > 1e-3,
            "{name}: the live flow did not"
        );
    }
}
