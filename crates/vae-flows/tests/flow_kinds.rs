//! The posterior flow kinds of docs/FLOWS.md (planar, radial, Householder, the three Sylvester
//! flows, NAF) next to the IAF and identity layers: log-dets against autograd Jacobians in f64,
//! triangular Jacobians of the autoregressive kinds, inverses, orthogonal `Q`s, the planar
//! constraint, parameter counts, mixed stacks and the config schema.
//!
//! Everything is small (D = 5 or 8, batches of 3 or 4) so the file runs in seconds.

use std::sync::{Mutex, MutexGuard};

use tch::nn;
use tch::{Device, Kind, Tensor};
use vae_flows::orthogonal::orthogonality_error;
use vae_flows::{
    BatchNormSettings, ContextMode, Error, Flow, FlowConfig, FlowKind, FlowLayer, MaskOrder,
};

/// libtorch has one global RNG (docs/TOOLCHAIN.md §5): every test holds this lock while it
/// seeds and draws.
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

const D: i64 = 5;

/// A small config of `kind` for latent `d`: 3 layers (or the list's length), MADE `[2d]` with
/// SNF-like context of width `2d` when `context`, and the kind settings set away from their
/// defaults (M = 3 orthonormal vectors, 2 and 3 reflections, 3 NAF units).
fn cfg(d: i64, kind: FlowKind, context: bool) -> FlowConfig {
    let layers = match &kind {
        FlowKind::PerLayer(kinds) => kinds.len(),
        _ => 3,
    };
    FlowConfig {
        kind,
        layers,
        hidden: vec![2 * d],
        context_size: if context { 2 * d } else { 0 },
        householder_reflections: 2,
        sylvester_vectors: Some(3),
        sylvester_reflections: 3,
        naf_units: 3,
        ..Default::default()
    }
}

fn mixed() -> FlowKind {
    FlowKind::PerLayer(vec![
        FlowKind::Naf,
        FlowKind::Planar,
        FlowKind::Iaf,
        FlowKind::Householder,
        FlowKind::Radial,
        FlowKind::SylvesterTriangular,
        FlowKind::Identity,
        FlowKind::SylvesterOrthogonal,
        FlowKind::SylvesterHouseholder,
        FlowKind::Iaf,
    ])
}

/// Every single kind and the mixed stack.
fn all_kinds() -> Vec<FlowKind> {
    let mut kinds = FlowKind::SINGLE.to_vec();
    kinds.push(mixed());
    kinds
}

/// Builds `cfg` in a fresh store, casts it to f64 when `double`, and moves every variable (and
/// BN running statistic) away from its initial value by `noise`.
fn build(d: i64, cfg: &FlowConfig, double: bool, noise: f64) -> (nn::VarStore, Flow) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(&(vs.root() / "flow"), d, cfg, BN).unwrap();
    if double {
        vs.double();
    }
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut v) in vars {
            let new = if name.ends_with("running_var") {
                v.rand_like() * 1.5 + 0.5
            } else if name.ends_with("running_mean") {
                v.randn_like() * 0.2
            } else {
                &v + v.randn_like() * noise
            };
            v.copy_(&new);
        }
    });
    (vs, flow)
}

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

fn context_for(flow: &Flow, batch: i64, kind: Kind) -> Option<Tensor> {
    flow.context_size().map(|c| randn(&[batch, c], kind))
}

/// Per-example Jacobian `J[n, b, a] = ∂y[n, b]/∂z[n, a]`, `[B, D, D]`, one backward pass per
/// output; valid because examples are independent (no train-mode BN).
fn jacobian(z: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let z = z.detach().set_requires_grad(true);
    let y = f(&z);
    let rows: Vec<Tensor> = (0..y.size()[1])
        .map(|b| {
            let yb = y.select(1, b).sum(y.kind());
            Tensor::run_backward(&[yb], &[&z], true, false).remove(0)
        })
        .collect();
    Tensor::stack(&rows, 1)
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn trainable(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

#[test]
fn log_det_matches_the_autograd_jacobian_for_every_kind() {
    let _rng = seeded(1);
    for kind in all_kinds() {
        for context in [true, false] {
            let cfg = cfg(D, kind.clone(), context);
            let (_vs, flow) = build(D, &cfg, true, 0.3);
            let z = randn(&[4, D], Kind::Double);
            let c = context_for(&flow, 4, Kind::Double);
            let (_, log_det) = flow.forward_t(&z, c.as_ref(), false);
            assert_eq!(log_det.size(), [4]);
            let j = jacobian(&z, |z| flow.forward_t(z, c.as_ref(), false).0);
            let (_, autograd) = Tensor::linalg_slogdet(&j);
            let err = max_abs(&(&log_det - &autograd));
            assert!(
                err < 1e-8,
                "{kind} context={context}: log-det {log_det:?} vs autograd {autograd:?}, error \
                 {err:e}"
            );
        }
    }
}

/// `∂y_b/∂z_a` is exactly 0 for every input `a` after output `b` in the layer's order, and the
/// diagonal is positive (NAF) or `σ(s)` (IAF, positive): a triangular Jacobian.
#[test]
fn autoregressive_layers_have_triangular_jacobians() {
    let _rng = seeded(2);
    for kind in [FlowKind::Naf, FlowKind::Iaf] {
        for context in [true, false] {
            let cfg = cfg(D, kind.clone(), context);
            let (_vs, flow) = build(D, &cfg, true, 0.3);
            let z = randn(&[4, D], Kind::Double);
            let c = context_for(&flow, 4, Kind::Double);
            for (t, layer) in flow.layers().into_iter().enumerate() {
                let (j, order) = match layer {
                    FlowLayer::Naf(s) => (jacobian(&z, |z| s.forward(z, c.as_ref()).0), s.order()),
                    FlowLayer::Iaf(s) => (
                        jacobian(&z, |z| s.forward_t(z, c.as_ref(), false).0),
                        s.order(),
                    ),
                    other => panic!("{kind}: unexpected layer {other:?}"),
                };
                assert_eq!(order, MaskOrder::for_layer(t));
                let j = Vec::<f64>::try_from(j.flatten(0, -1)).unwrap();
                let d = D as usize;
                let mut below = 0.0f64;
                for n in 0..4 {
                    for b in 0..d {
                        for a in 0..d {
                            let v = j[(n * d + b) * d + a];
                            if a == b {
                                assert!(v > 0.0, "{kind} layer {t}: diagonal {v}");
                            } else if order.allows(a, b) {
                                below = below.max(v.abs());
                            } else {
                                assert!(
                                    v == 0.0,
                                    "{kind} layer {t}: output {b} depends on input {a} by {v}"
                                );
                            }
                        }
                    }
                }
                assert!(
                    below > 0.0,
                    "{kind} layer {t}: no dependence on earlier latents"
                );
            }
        }
    }
}

#[test]
fn invertible_kinds_round_trip_and_sylvester_says_it_has_no_inverse() {
    let _rng = seeded(3);
    let invertible = FlowKind::PerLayer(vec![
        FlowKind::Naf,
        FlowKind::Planar,
        FlowKind::Iaf,
        FlowKind::Householder,
        FlowKind::Radial,
        FlowKind::Identity,
    ]);
    let mut kinds = FlowKind::SINGLE.to_vec();
    kinds.push(invertible);
    for kind in kinds {
        for context in [true, false] {
            let cfg = cfg(D, kind.clone(), context);
            let (_vs, flow) = build(D, &cfg, true, 0.3);
            let z = randn(&[4, D], Kind::Double) * 1.5;
            let c = context_for(&flow, 4, Kind::Double);
            let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), false);
            match flow.inverse_with_log_det(&z_out, c.as_ref()) {
                Ok((back, log_det_back)) => {
                    assert!(flow.has_inverse());
                    let err = max_abs(&(back - &z));
                    assert!(
                        err < 1e-6,
                        "{kind} context={context}: inverse error {err:e}"
                    );
                    assert!(max_abs(&(log_det_back - &log_det)) < 1e-6, "{kind}");
                }
                Err(Error::NoInverse { layer, kind: k }) => {
                    assert!(kind.is_sylvester(), "{kind} has an inverse");
                    assert!(!flow.has_inverse());
                    assert_eq!((layer, k), (0, kind.clone()));
                }
                Err(e) => panic!("{kind}: {e}"),
            }
        }
    }
    // In a mixed stack the first Sylvester layer is named.
    let (_vs, flow) = build(D, &cfg(D, mixed(), true), true, 0.3);
    let z = randn(&[2, D], Kind::Double);
    let c = context_for(&flow, 2, Kind::Double);
    let err = flow.inverse(&z, c.as_ref()).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NoInverse {
                layer: 5,
                kind: FlowKind::SylvesterTriangular
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("layer 5") && msg.contains("sylvester_triangular"),
        "{msg}"
    );
}

/// Strong transforms (large weights, wide inputs): the inverse still solves `f(z) = z'` (where
/// `f` flattens out, `z` itself is ill-determined, so the check is on `f(inverse(z'))`).
#[test]
fn planar_naf_and_radial_inverses_hold_for_strong_transforms() {
    let _rng = seeded(4);
    for kind in [FlowKind::Planar, FlowKind::Naf, FlowKind::Radial] {
        let cfg = cfg(D, kind.clone(), true);
        let (_vs, flow) = build(D, &cfg, true, 1.5);
        let z = randn(&[8, D], Kind::Double) * 3.0;
        let c = context_for(&flow, 8, Kind::Double).map(|c| c * 2.0);
        for layer in flow.layers() {
            let forward = |z: &Tensor| match layer {
                FlowLayer::Planar(s) => s.forward(z, c.as_ref()).0,
                FlowLayer::Naf(s) => s.forward(z, c.as_ref()).0,
                FlowLayer::Radial(s) => s.forward(z, c.as_ref()).0,
                other => panic!("unexpected layer {other:?}"),
            };
            let inverse = |z: &Tensor| match layer {
                FlowLayer::Planar(s) => s.inverse(z, c.as_ref()),
                FlowLayer::Naf(s) => s.inverse(z, c.as_ref()),
                FlowLayer::Radial(s) => s.inverse(z, c.as_ref()),
                other => panic!("unexpected layer {other:?}"),
            };
            let z_out = forward(&z);
            let again = forward(&inverse(&z_out));
            let err = max_abs(&((again - &z_out) / (z_out.abs() + 1.0)));
            assert!(err < 1e-9, "{kind}: relative residual {err:e}");
            assert!(z_out.isfinite().all().int64_value(&[]) == 1, "{kind}");
        }
    }
}

#[test]
fn sylvester_and_householder_q_are_orthogonal() {
    let _rng = seeded(5);
    for (kind, vectors) in [
        (FlowKind::SylvesterOrthogonal, Some(3)),
        (FlowKind::SylvesterOrthogonal, None),
        (FlowKind::SylvesterHouseholder, Some(2)),
        (FlowKind::SylvesterHouseholder, None),
        (FlowKind::SylvesterTriangular, None),
        (FlowKind::Householder, None),
    ] {
        for context in [true, false] {
            let cfg = FlowConfig {
                sylvester_vectors: vectors,
                ..cfg(D, kind.clone(), context)
            };
            let (_vs, flow) = build(D, &cfg, true, 0.5);
            let c = flow
                .context_size()
                .map(|w| randn(&[16, w], Kind::Double) * 3.0);
            for (t, layer) in flow.layers().into_iter().enumerate() {
                let q = match layer {
                    FlowLayer::Sylvester(s) => {
                        let q = s.q(c.as_ref(), 16);
                        let m = match kind {
                            FlowKind::SylvesterTriangular => D,
                            _ => vectors.map_or(D, |m| m as i64),
                        };
                        assert_eq!(q.size(), [16, D, m]);
                        assert_eq!(s.vectors(), m);
                        if kind == FlowKind::SylvesterTriangular {
                            // A permutation: identity on even layers, reversal on odd ones.
                            let eye = Tensor::eye(D, (Kind::Double, Device::Cpu));
                            let want = if t % 2 == 0 { eye } else { eye.flip([1]) };
                            assert!(q.select(0, 3).equal(&want), "layer {t}");
                        }
                        q
                    }
                    FlowLayer::Householder(s) => s.matrix(c.as_ref(), 16),
                    other => panic!("unexpected layer {other:?}"),
                };
                let err = orthogonality_error(&q).max().double_value(&[]);
                assert!(
                    err <= 1e-5,
                    "{kind} M={vectors:?} layer {t}: |QᵀQ − I| = {err:e}"
                );
            }
        }
    }
}

#[test]
fn householder_flows_have_log_det_exactly_zero() {
    let _rng = seeded(6);
    for (kind, double) in [(Kind::Float, false), (Kind::Double, true)] {
        for context in [true, false] {
            let cfg = cfg(D, FlowKind::Householder, context);
            let (_vs, flow) = build(D, &cfg, double, 0.5);
            let z = randn(&[4, D], kind);
            let c = context_for(&flow, 4, kind);
            let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), true);
            assert!(log_det.equal(&Tensor::zeros([4], (kind, Device::Cpu))));
            // Reflections keep the norm.
            let norms = |t: &Tensor| t.square().sum_dim_intlist(1, false, None);
            let tol = if double { 1e-12 } else { 1e-4 };
            assert!(max_abs(&(norms(&z_out) - norms(&z))) < tol);
        }
    }
}

/// `wᵀû = m(wᵀu) > −1` for random (also large) `u`, `w`, from the head and from its closed form.
#[test]
fn planar_constraint_keeps_w_dot_u_hat_above_minus_one() {
    let _rng = seeded(7);
    let mut lowest = f64::INFINITY;
    for context in [true, false] {
        for trial in 0..20 {
            let cfg = cfg(D, FlowKind::Planar, context);
            let (_vs, flow) = build(D, &cfg, true, 3.0);
            let c = flow
                .context_size()
                .map(|w| randn(&[32, w], Kind::Double) * (1.0 + trial as f64));
            for layer in flow.layers() {
                let FlowLayer::Planar(s) = layer else {
                    panic!("unexpected layer {layer:?}")
                };
                let p = s.params(c.as_ref(), 32);
                // The closed form is the constraint itself; the product of the vectors equals it
                // to rounding (relative to the sizes involved).
                let closed = p.wu_hat.min().double_value(&[]);
                assert!(closed >= -1.0, "m(wᵀu) = {closed}");
                let wu_hat = (&p.w * &p.u_hat).sum_dim_intlist(1, false, None);
                let scale = (&p.w * &p.w).sum_dim_intlist(1, false, None).sqrt()
                    * (&p.u_hat * &p.u_hat).sum_dim_intlist(1, false, None).sqrt()
                    + 1.0;
                assert!(max_abs(&((&wu_hat - &p.wu_hat) / &scale)) < 1e-12);
                let min = wu_hat.min().double_value(&[]);
                assert!(
                    min >= -1.0 - 1e-12 * scale.max().double_value(&[]),
                    "wᵀû = {min}"
                );
                lowest = lowest.min(min);
            }
        }
    }
    // The draws reach the constrained region.
    assert!(lowest < -0.5, "lowest wᵀû {lowest}");
}

#[test]
fn parameter_count_formula_matches_built_flows() {
    let _rng = seeded(8);
    for d in [5, 8] {
        for kind in all_kinds() {
            for context in [true, false] {
                let mut cfgs = vec![cfg(d, kind.clone(), context)];
                // Defaults (M = D), a linear context and a two-layer MADE.
                cfgs.push(FlowConfig {
                    sylvester_vectors: None,
                    ..cfg(d, kind.clone(), context)
                });
                cfgs.push(FlowConfig {
                    context: ContextMode::Linear,
                    context_size: if context { 7 } else { 0 },
                    hidden: vec![2 * d, 4 * d],
                    normalization: vae_flows::config::Normalization::None,
                    ..cfg(d, kind.clone(), context)
                });
                for cfg in cfgs {
                    let vs = nn::VarStore::new(Device::Cpu);
                    let flow = Flow::new(&(vs.root() / "flow"), d, &cfg, BN).unwrap();
                    assert_eq!(
                        trainable(&vs),
                        cfg.parameter_count(d),
                        "D={d} {kind} context={}",
                        cfg.context_size
                    );
                    let per_layer: Vec<i64> = (cfg.layer_kinds().iter())
                        .map(|k| cfg.layer_parameters(k, d))
                        .collect();
                    assert_eq!(per_layer.iter().sum::<i64>(), cfg.parameter_count(d));
                    assert_eq!(
                        per_layer.iter().copied().max().unwrap_or(0),
                        cfg.parameters_per_layer(d)
                    );
                    // The context predictor is built exactly when a layer takes the context.
                    let takes_context = cfg.context_size > 0 && kind != FlowKind::Identity;
                    assert_eq!(cfg.uses_context(), takes_context, "{kind}");
                    assert_eq!(
                        flow.context_size(),
                        takes_context.then_some(cfg.context_size)
                    );
                    assert!(cfg.forward_macs(d) >= 0.0 && cfg.largest_activation(d) >= 0);
                    // The memory estimate of the non-IAF layers counts the same parameters.
                    let iaf = cfg.iaf_layers() as i64 * cfg.layer_parameters(&FlowKind::Iaf, d);
                    let (other, acts) = cfg.other_layers_memory(d);
                    assert_eq!(other, (cfg.parameter_count(d) - iaf) as f64, "{kind}");
                    assert!(acts >= 0.0);
                }
            }
        }
    }
    // Hand counts, D = 4, C = 6.
    let hand = |kind: FlowKind| FlowConfig {
        kind,
        layers: 1,
        context_size: 6,
        hidden: vec![8],
        householder_reflections: 2,
        sylvester_vectors: Some(3),
        sylvester_reflections: 2,
        naf_units: 2,
        ..Default::default()
    };
    let count = |kind: FlowKind| hand(kind).parameter_count(4);
    assert_eq!(count(FlowKind::Planar), 9 * 7);
    assert_eq!(count(FlowKind::Radial), 6 * 7);
    assert_eq!(count(FlowKind::Householder), 8 * 7);
    assert_eq!(count(FlowKind::SylvesterOrthogonal), (9 + 6 + 12) * 7);
    assert_eq!(count(FlowKind::SylvesterHouseholder), (9 + 6 + 8) * 7);
    assert_eq!(count(FlowKind::SylvesterTriangular), (16 + 8) * 7);
    // MADE 4 → 8 → 24 with biases; SNF-like context adds nothing.
    assert_eq!(count(FlowKind::Naf), 4 * 8 + 8 + 8 * 24 + 24);
    assert_eq!(count(FlowKind::Identity), 0);
}

/// Mixed stacks keep the IAF's variable paths (old checkpoints load) and give each layer its
/// own kind and order.
#[test]
fn mixed_stacks_name_variables_per_layer() {
    let _rng = seeded(9);
    let cfg = cfg(D, mixed(), true);
    let vs = nn::VarStore::new(Device::Cpu);
    let flow = Flow::new(&(vs.root() / "flow"), D, &cfg, BN).unwrap();
    assert_eq!(flow.num_layers(), 10);
    assert_eq!(flow.steps().len(), 2);
    assert_eq!(flow.layer_kinds(), cfg.layer_kinds().as_slice());
    assert_eq!(flow.steps()[0].order(), MaskOrder::for_layer(2));
    let vars = vs.variables();
    for key in [
        "flow.step0.made.l0.weight",
        "flow.step0.made.out.bias",
        "flow.step1.u.weight",
        "flow.step1.w.bias",
        "flow.step1.b.bias",
        "flow.step2.made.l0.weight",
        "flow.step2.made.bn_s.bias",
        "flow.step3.v.weight",
        "flow.step4.z0.bias",
        "flow.step4.alpha.weight",
        "flow.step5.r.weight",
        "flow.step5.r_tilde_diag.bias",
        "flow.step7.q.weight",
        "flow.step8.v.bias",
        "flow.step9.made.m.weight",
    ] {
        assert!(vars.contains_key(key), "{key} missing from {:?}", {
            let mut k: Vec<_> = vars.keys().collect();
            k.sort();
            k
        });
    }
    assert!(!vars.keys().any(|k| k.starts_with("flow.step6.")));
    assert!(!vars.keys().any(|k| k.starts_with("flow.step5.q")));
}

/// The frozen flow folds the IAF batch norms and runs the other layers live: the same numbers
/// as the evaluation-mode flow.
#[test]
fn frozen_mixed_flow_is_the_flow_in_evaluation_mode() {
    let _rng = seeded(10);
    let (_vs, flow) = build(D, &cfg(D, mixed(), true), true, 0.3);
    let z = randn(&[4, D], Kind::Double);
    let c = context_for(&flow, 4, Kind::Double);
    let (want, want_ld) = flow.forward_t(&z, c.as_ref(), false);
    let (got, got_ld) = flow.freeze().forward(&z, c.as_ref());
    assert!(max_abs(&(got - want)) < 1e-10);
    assert!(max_abs(&(got_ld - want_ld)) < 1e-10);
}

/// Each kind of the smoke config (D = 8, 2 layers, MADE [32], SNF-like context 32) runs in
/// train mode in f32, gives finite values, and passes gradients to every trainable variable.
#[test]
fn every_kind_trains_from_the_smoke_settings() {
    let _rng = seeded(11);
    for kind in all_kinds() {
        let layers = match &kind {
            FlowKind::PerLayer(kinds) => kinds.len(),
            _ => 2,
        };
        let cfg = FlowConfig {
            kind: kind.clone(),
            layers,
            hidden: vec![32],
            context_size: 32,
            ..Default::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let flow = Flow::new(&(vs.root() / "flow"), 8, &cfg, BN).unwrap();
        let z = randn(&[16, 8], Kind::Float) * 2.0;
        let c = context_for(&flow, 16, Kind::Float);
        let (z_out, log_det) = flow.forward_t(&z, c.as_ref(), true);
        let loss = (z_out.square().sum(Kind::Float) * 0.5 - log_det.sum(Kind::Float)) / 16.0;
        assert!(loss.double_value(&[]).is_finite(), "{kind}");
        if kind == FlowKind::Identity {
            assert_eq!(vs.variables().len(), 0);
            continue;
        }
        loss.backward();
        for (name, v) in vs.variables() {
            if !v.requires_grad() {
                continue;
            }
            let g = v.grad();
            assert!(g.defined(), "{kind}: {name} got no gradient");
            assert!(
                g.isfinite().all().int64_value(&[]) == 1,
                "{kind}: {name} gradient not finite"
            );
        }
    }
}

#[test]
fn kinds_parse_from_json_with_clear_errors() {
    for k in FlowKind::SINGLE {
        let json = format!(r#"{{"kind": "{}"}}"#, k.name());
        let cfg: FlowConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(cfg.kind, k);
        cfg.validate().unwrap();
        // Round trip.
        let back: FlowConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }
    let cfg: FlowConfig = serde_json::from_str(
        r#"{"kind": ["naf", "sylvester_orthogonal", "householder"], "layers": 3,
            "naf_units": 4, "sylvester_vectors": 2, "orthogonal_iterations": 30,
            "householder_reflections": 3, "sylvester_reflections": 5}"#,
    )
    .unwrap();
    assert_eq!(
        cfg.kind,
        FlowKind::PerLayer(vec![
            FlowKind::Naf,
            FlowKind::SylvesterOrthogonal,
            FlowKind::Householder
        ])
    );
    assert_eq!(
        (
            cfg.naf_units,
            cfg.sylvester_vectors,
            cfg.orthogonal_iterations,
            cfg.householder_reflections,
            cfg.sylvester_reflections
        ),
        (4, Some(2), 30, 3, 5)
    );
    cfg.validate().unwrap();
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(
        json.contains(r#""kind":["naf","sylvester_orthogonal","householder"]"#),
        "{json}"
    );

    // Unknown kinds name the value and the valid ones.
    let err = serde_json::from_str::<FlowConfig>(r#"{"kind": "planer"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`planer`") && err.contains("kind"), "{err}");
    for k in FlowKind::SINGLE {
        assert!(err.contains(k.name()), "{err}");
    }
    let err = serde_json::from_str::<FlowConfig>(r#"{"kind": ["naf", "maf"], "layers": 2}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`maf`") && err.contains("sylvester_householder"),
        "{err}"
    );
    assert!(serde_json::from_str::<FlowConfig>(r#"{"naf_unit": 3}"#).is_err());

    // A list must have `layers` entries.
    let err = FlowConfig {
        kind: FlowKind::PerLayer(vec![FlowKind::Naf, FlowKind::Planar]),
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LayersMismatch {
                layers: 8,
                kinds: 2
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`layers` = 8") && msg.contains("2 kinds"),
        "{msg}"
    );
    for bad in [
        FlowKind::PerLayer(vec![]),
        FlowKind::PerLayer(vec![FlowKind::PerLayer(vec![FlowKind::Naf])]),
    ] {
        let err = FlowConfig {
            kind: bad,
            layers: 1,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { field: "kind", .. }),
            "{err:?}"
        );
    }
}

#[test]
fn kind_settings_are_checked_when_used_and_ignored_otherwise() {
    let _rng = seeded(12);
    let field = |err: Error| match err {
        Error::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let base = |kind: FlowKind| FlowConfig {
        kind,
        layers: 2,
        hidden: vec![16],
        context_size: 16,
        ..Default::default()
    };
    let cases: Vec<(FlowKind, FlowConfig, &str)> = vec![
        (
            FlowKind::Householder,
            FlowConfig {
                householder_reflections: 0,
                ..base(FlowKind::Householder)
            },
            "householder_reflections",
        ),
        (
            FlowKind::SylvesterOrthogonal,
            FlowConfig {
                sylvester_vectors: Some(0),
                ..base(FlowKind::SylvesterOrthogonal)
            },
            "sylvester_vectors",
        ),
        (
            FlowKind::SylvesterOrthogonal,
            FlowConfig {
                orthogonal_iterations: 0,
                ..base(FlowKind::SylvesterOrthogonal)
            },
            "orthogonal_iterations",
        ),
        (
            FlowKind::SylvesterHouseholder,
            FlowConfig {
                sylvester_reflections: 0,
                ..base(FlowKind::SylvesterHouseholder)
            },
            "sylvester_reflections",
        ),
        (
            FlowKind::Naf,
            FlowConfig {
                naf_units: 0,
                ..base(FlowKind::Naf)
            },
            "naf_units",
        ),
        (
            FlowKind::Naf,
            FlowConfig {
                hidden: vec![],
                ..base(FlowKind::Naf)
            },
            "hidden",
        ),
        (
            FlowKind::Planar,
            FlowConfig {
                layers: 0,
                ..base(FlowKind::Planar)
            },
            "layers",
        ),
    ];
    for (kind, bad, want) in cases {
        let err = bad.validate().unwrap_err();
        let msg = err.to_string();
        assert_eq!(field(err), want, "{kind}");
        assert!(
            msg.contains(want) && msg.contains('0') || want == "hidden",
            "{msg}"
        );
        // Every other kind ignores the setting.
        for other in FlowKind::SINGLE.into_iter().filter(|k| *k != kind) {
            let shares = match want {
                "layers" => true,
                "hidden" => other.uses_made(),
                "sylvester_vectors" => other == FlowKind::SylvesterHouseholder,
                _ => false,
            };
            if shares {
                continue;
            }
            FlowConfig {
                kind: other.clone(),
                ..bad.clone()
            }
            .validate()
            .unwrap_or_else(|e| panic!("{other} with bad `{want}`: {e}"));
        }
    }
    // Counts are capped, so no size computed from them overflows.
    let err = FlowConfig {
        naf_units: 5000,
        ..base(FlowKind::Naf)
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("`naf_units` = 5000"), "{err}");
    // Checks and counts do not grow with `layers`.
    let many = FlowConfig {
        layers: 1 << 40,
        ..base(FlowKind::Planar)
    };
    many.validate().unwrap();
    assert!(many.uses_context());
    assert_eq!(
        many.parameter_count(8),
        (1 << 40) * many.parameters_per_layer(8)
    );
    assert!(many.forward_macs(8) > 1e12 && many.largest_activation(8) > 0);
    // NAF's MADE needs SNF-like context == hidden[0], like the IAF; planar does not.
    let snf = FlowConfig {
        context_size: 7,
        ..base(FlowKind::Naf)
    };
    assert!(matches!(snf.validate(), Err(Error::SnfContextSize { .. })));
    FlowConfig {
        kind: FlowKind::Planar,
        ..snf
    }
    .validate()
    .unwrap();

    // M > D is found when the latent size is known.
    let vs = nn::VarStore::new(Device::Cpu);
    for kind in [
        FlowKind::SylvesterOrthogonal,
        FlowKind::SylvesterHouseholder,
    ] {
        let cfg = FlowConfig {
            sylvester_vectors: Some(9),
            ..base(kind.clone())
        };
        cfg.validate().unwrap();
        let err = Flow::new(&(vs.root() / "f"), 8, &cfg, BN).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LatentSetting {
                    field: "sylvester_vectors",
                    latent: 8,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("sylvester_vectors` = 9"), "{err}");
    }
    // The triangular variant ignores it (M = D).
    let cfg = FlowConfig {
        sylvester_vectors: Some(9),
        ..base(FlowKind::SylvesterTriangular)
    };
    Flow::new(&(vs.root() / "g"), 8, &cfg, BN).unwrap();
}
