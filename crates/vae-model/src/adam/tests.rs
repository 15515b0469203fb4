//! Tests of `Adam` as a whole: each drives the update rules, the flat storage and (through
//! `state_tensors`) the state together, and they share the stores and losses below, so they
//! stay in one file rather than follow the three modules.

use super::*;
use std::collections::HashMap;
use tch::nn::OptimizerConfig;
use tch::Kind;

fn store(seed: i64) -> (nn::VarStore, Tensor) {
    // Tests run on parallel threads and tch has one generator: hold the lock from the seed
    // to the draw, or two stores made with one seed can differ.
    let _rng = vae_eval::rng_guard();
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let w = vs.root().randn("w", &[4, 3], 0.0, 1.0);
    (vs, w)
}

fn loss(w: &Tensor, k: i64) -> Tensor {
    // A different quadratic-plus-sine loss at each step, so gradients vary in size and sign.
    let target =
        Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([4, 3]) * (0.1 * k as f64);
    ((w - target).square() + (w * 3.0).sin()).sum(Kind::Float)
}

#[test]
fn torch_placement_matches_tch_adam() {
    let (vs_a, w_a) = store(3);
    let (vs_b, w_b) = store(3);
    let cfg = AdamConfig::default();
    let mut ours = Adam::with_placement(&vs_a, cfg, EpsPlacement::Torch);
    let mut theirs = nn::Adam {
        beta1: 0.9,
        beta2: 0.999,
        wd: 0.0,
        eps: 1e-8,
        amsgrad: false,
    }
    .build(&vs_b, 1e-2)
    .unwrap();
    for k in 0..20 {
        ours.zero_grad();
        loss(&w_a, k).backward();
        ours.step(1e-2);
        theirs.zero_grad();
        loss(&w_b, k).backward();
        theirs.step();
    }
    let diff = (&w_a - &w_b).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "max |Δw| = {diff}");
}

#[test]
fn tf_placement_is_the_closed_form() {
    // One step from zero moments: m = (1−β1) g, v = (1−β2) g², so θ moves by
    // lr √(1−β2)/(1−β1) · (1−β1) g / (√(1−β2) |g| + ε) = lr g / (|g| + ε/√(1−β2)).
    let (vs, w) = store(1);
    let before = w.detach().copy();
    let mut adam = Adam::new(&vs, AdamConfig::default());
    loss(&w, 1).backward();
    let g = w.grad().copy();
    adam.step(0.1);
    let want = &before - &g / (g.abs() + 1e-8 / (0.001f64).sqrt()) * 0.1;
    assert!((&w - want).abs().max().double_value(&[]) < 1e-6);
}

#[test]
fn flat_buffers_are_used_and_agree_with_one_variable_at_a_time() {
    let rng = vae_eval::rng_guard();
    tch::manual_seed(5);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let w = vs.root().randn("w", &[4, 3], 0.0, 1.0);
    let b = vs.root().randn("b", &[3], 0.0, 1.0);
    drop(rng);
    let (w2, b2) = (w.detach().copy(), b.detach().copy());
    let mut adam = Adam::new(&vs, AdamConfig::default());
    // The reference: the per-variable update on plain tensors.
    let vs2 = nn::VarStore::new(tch::Device::Cpu);
    let mut w_ref = vs2.root().var_copy("w", &w2);
    let mut b_ref = vs2.root().var_copy("b", &b2);
    let mut slow = Adam::new(&vs2, AdamConfig::default());
    slow.flat = None;
    // b's middle entry never gets a gradient: v stays 0 there (as for masked weights),
    // which the flat update's `rsqrt` turns into ∞.
    let b_loss = |b: &Tensor| {
        (b * Tensor::from_slice(&[2.0f32, 0.0, 2.0]))
            .sin()
            .sum(Kind::Float)
    };
    for k in 0..5 {
        adam.zero_grad();
        (loss(&w, k) + b_loss(&b)).backward();
        adam.step(1e-2);
        slow.zero_grad();
        (loss(&w_ref, k) + b_loss(&b_ref)).backward();
        // The gradient norm: both paths and the definition, before the update.
        let direct = (w_ref.grad().square().sum(Kind::Double)
            + b_ref.grad().square().sum(Kind::Double))
        .double_value(&[])
        .sqrt();
        for (path, norm) in [
            ("flat", adam.grad_norm()),
            ("per variable", slow.grad_norm()),
        ] {
            assert!(
                (norm - direct).abs() <= 1e-6 * direct,
                "step {k}: {path} gradient norm {norm} vs {direct}"
            );
        }
        slow.step(1e-2);
        assert!(
            adam.flat_grads().is_some(),
            "step {k}: the flat buffers were not used"
        );
    }
    for (a, r) in [(&w, &mut w_ref), (&b, &mut b_ref)] {
        let diff = (a - &*r).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "max |Δ| = {diff}");
    }
    // The variables the store hands out are the updated ones.
    let vars = vs.variables();
    assert!(vars["w"].equal(&w) && vars["b"].equal(&b));
}

/// `Adam::backward` leaves the same gradients and weights as `zero_grad` + `backward`,
/// through the flat buffer once it is bound: also for a gradient that autograd returns
/// transposed, and for a variable the loss stops reaching (its gradient becomes zero).
#[test]
fn backward_fills_the_flat_buffer_as_zero_grad_and_backward_would() {
    let build = || {
        let rng = vae_eval::rng_guard();
        tch::manual_seed(11);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().randn("w", &[4, 3], 0.0, 1.0);
        let c = vs.root().randn("c", &[3, 5], 0.0, 1.0);
        let u = vs.root().randn("u", &[2], 0.0, 1.0);
        drop(rng);
        (vs, w, c, u)
    };
    let step_loss = |w: &Tensor, c: &Tensor, u: &Tensor, k: i64| {
        let x = Tensor::arange(20, (Kind::Float, tch::Device::Cpu)).view([5, 4]) * 0.1;
        // `c` enters transposed and elementwise: its gradient comes back transposed, not
        // contiguous.
        let h = (x.matmul(w) * c.tr()).tanh();
        let l = loss(w, k) + h.sum(Kind::Float);
        // `u` takes part in the first two steps only.
        if k < 2 {
            l + u.square().sum(Kind::Float) * 3.0
        } else {
            l
        }
    };
    let (vs_a, w_a, c_a, u_a) = build();
    let (vs_b, w_b, c_b, u_b) = build();
    let mut fused = Adam::new(&vs_a, AdamConfig::default());
    let mut plain = Adam::new(&vs_b, AdamConfig::default());
    for k in 0..5 {
        fused.backward(&step_loss(&w_a, &c_a, &u_a, k));
        plain.zero_grad();
        step_loss(&w_b, &c_b, &u_b, k).backward();
        for (name, a, b) in [("w", &w_a, &w_b), ("c", &c_a, &c_b), ("u", &u_a, &u_b)] {
            assert!(
                a.grad().equal(&b.grad()),
                "step {k}: gradient of {name} differs"
            );
        }
        if k >= 2 {
            assert_eq!(u_a.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
        fused.step(1e-2);
        plain.step(1e-2);
        assert!(
            w_a.equal(&w_b) && c_a.equal(&c_b) && u_a.equal(&u_b),
            "step {k}"
        );
    }
    assert!(
        fused.flat_grads().is_some(),
        "the flat path was not exercised"
    );
}

/// The update decided on the device agrees with the host's: the same weights as `step`
/// when `ok` holds, and nothing at all (weights, moments, step count) when it does not,
/// even with NaN gradients; for both ε placements.
#[test]
fn step_if_skips_on_the_device_exactly_as_the_host_does() {
    for placement in [EpsPlacement::Tf, EpsPlacement::Torch] {
        let (vs_a, w_a) = store(7);
        let (vs_b, w_b) = store(7);
        let mut host = Adam::with_placement(&vs_a, AdamConfig::default(), placement);
        let mut dev = Adam::with_placement(&vs_b, AdamConfig::default(), placement);
        for k in 0..6 {
            let nan = k == 0 || k == 3; // a skip before any update, and one later
            host.zero_grad();
            loss(&w_a, k).backward();
            if !nan {
                host.step(1e-2);
            }
            dev.zero_grad();
            let mut l = loss(&w_b, k);
            if nan {
                l *= f64::NAN;
            }
            l.backward();
            let before = w_b.detach().copy();
            let ok = l.isfinite().logical_and(&dev.grad_sq_norm().isfinite());
            dev.step_if(1e-2, &ok);
            if nan {
                assert!(
                    w_b.equal(&before),
                    "{placement:?} step {k}: a skip moved weights"
                );
            }
            assert_eq!(
                dev.step_count(),
                host.step_count(),
                "{placement:?} step {k}"
            );
            let diff = (&w_a - &w_b).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{placement:?} step {k}: max |Δw| = {diff}");
        }
        assert!(
            dev.flat_grads().is_some(),
            "the flat path was not exercised"
        );
        for ((k, a), (_, b)) in host.state_tensors().iter().zip(&dev.state_tensors()) {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{placement:?} {k}: max |Δ| = {diff}");
        }
        // The host path picks up the device's count.
        dev.zero_grad();
        loss(&w_b, 9).backward();
        dev.step(1e-2);
        assert_eq!(dev.step_count(), 5);
    }
}

#[test]
fn state_round_trips() {
    let (vs, w) = store(2);
    let mut adam = Adam::new(&vs, AdamConfig::default());
    for k in 0..3 {
        adam.zero_grad();
        loss(&w, k).backward();
        adam.step(1e-2);
    }
    let saved: HashMap<String, Tensor> = adam
        .state_tensors()
        .into_iter()
        .map(|(k, t)| (k, t.copy()))
        .collect();
    let (vs2, _) = store(2);
    let mut fresh = Adam::new(&vs2, AdamConfig::default());
    fresh.load_state(&saved, std::path::Path::new("x")).unwrap();
    assert_eq!(fresh.step_count(), 3);
    for ((k, a), (_, b)) in adam
        .state_tensors()
        .iter()
        .zip(fresh.state_tensors().iter())
    {
        assert!(a.equal(b), "{k}");
    }
    let mut missing = saved;
    missing.remove("adam.v.w");
    let msg = fresh
        .load_state(&missing, std::path::Path::new("ck"))
        .unwrap_err()
        .to_string();
    assert_eq!(msg, "checkpoint ck: no adam.v.w tensor");
}
