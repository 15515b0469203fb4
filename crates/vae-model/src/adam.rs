//! Adam over tch tensors with state that can be saved and restored.
//!
//! tch's `nn::Optimizer` wraps an opaque C++ optimizer whose moments and step cannot be read or
//! written (shared/TOOLCHAIN.md §5), so a resumable run needs its own Adam. This one applies TF's
//! update by default (SEED-SPEC §4.3): `lr_t = lr √(1−β2^t)/(1−β1^t)`,
//! `θ −= lr_t m / (√v + ε)`; PyTorch's placement of ε (on the bias-corrected `√v̂`) is available
//! to compare with tch's Adam.

use std::collections::HashMap;

use tch::{nn, Kind, Tensor};

use crate::config::AdamConfig;
use crate::error::{Error, Result};

/// Where ε enters the denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsPlacement {
    /// TF 1.x: `m / (√v + ε)` with the bias corrections folded into the step size.
    Tf,
    /// PyTorch: `m̂ / (√v̂ + ε)` with `m̂ = m/(1−β1^t)`, `v̂ = v/(1−β2^t)`.
    Torch,
}

/// Adam's state for every trainable variable of a `VarStore`, in name order.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    placement: EpsPlacement,
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i64,
}

impl Adam {
    /// Adam with TF's ε placement over the trainable variables of `vs`, moments at zero.
    pub fn new(vs: &nn::VarStore, cfg: AdamConfig) -> Adam {
        Self::with_placement(vs, cfg, EpsPlacement::Tf)
    }

    /// Adam with the given ε placement.
    pub fn with_placement(vs: &nn::VarStore, cfg: AdamConfig, placement: EpsPlacement) -> Adam {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<_>, Vec<_>) = vars.into_iter().unzip();
        let m = params.iter().map(Tensor::zeros_like).collect();
        let v = params.iter().map(Tensor::zeros_like).collect();
        Adam {
            cfg,
            placement,
            names,
            params,
            m,
            v,
            step: 0,
        }
    }

    /// Number of updates applied so far (`t`).
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// Clears the gradients of every variable.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global L2 norm of the current gradients (0 for variables without one).
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            let total: f64 = self
                .params
                .iter()
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .map(|g| g.square().sum(Kind::Double).double_value(&[]))
                .sum();
            total.sqrt()
        })
    }

    /// Whether every gradient is finite.
    pub fn grads_finite(&self) -> bool {
        tch::no_grad(|| {
            self.params
                .iter()
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .all(|g| g.isfinite().all().int64_value(&[]) == 1)
        })
    }

    /// Applies one update with learning rate `lr` from the gradients accumulated by `backward`.
    pub fn step(&mut self, lr: f64) {
        let AdamConfig {
            beta1: b1,
            beta2: b2,
            eps,
        } = self.cfg;
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                let update = match self.placement {
                    EpsPlacement::Tf => &*m / (v.sqrt() + eps) * (lr * c2.sqrt() / c1),
                    EpsPlacement::Torch => &*m / ((&*v / c2).sqrt() + eps) * (lr / c1),
                };
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// The state as named tensors: `adam.m.<var>`, `adam.v.<var>` and `adam.step`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len() + 1);
        for (i, name) in self.names.iter().enumerate() {
            out.push((format!("adam.m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("adam.v.{name}"), self.v[i].shallow_clone()));
        }
        out.push(("adam.step".into(), Tensor::from_slice(&[self.step])));
        out
    }

    /// Restores the state written by [`state_tensors`](Self::state_tensors); `path` names the
    /// checkpoint in errors.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        path: &std::path::Path,
    ) -> Result<()> {
        let err = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let step = tensors
            .get("adam.step")
            .ok_or_else(|| err("no adam.step tensor".into()))?;
        // Checked before anything is copied: a 0-dim or empty step made `int64_value` panic
        // (found by fuzz/ `checkpoint`), and `step` needs a count that fits its `i32` power.
        let step = match step.size().as_slice() {
            [1] => step.f_int64_value(&[0]).ok(),
            _ => None,
        }
        .filter(|s| (0..=i64::from(i32::MAX)).contains(s))
        .ok_or_else(|| {
            err(format!(
                "adam.step (shape {:?}) is not a step count in 0..={}",
                step.size(),
                i32::MAX
            ))
        })?;
        let mut loaded = Vec::with_capacity(self.names.len());
        for (i, name) in self.names.iter().enumerate() {
            let mut pair = Vec::with_capacity(2);
            for which in ["m", "v"] {
                let key = format!("adam.{which}.{name}");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| err(format!("no {key} tensor")))?;
                if t.size() != self.params[i].size() {
                    return Err(err(format!(
                        "{key} has shape {:?}, the model's {name} has {:?}",
                        t.size(),
                        self.params[i].size()
                    )));
                }
                pair.push(
                    t.to_device(self.params[i].device())
                        .to_kind(self.params[i].kind()),
                );
            }
            loaded.push(pair);
        }
        tch::no_grad(|| {
            for (i, pair) in loaded.into_iter().enumerate() {
                self.m[i].copy_(&pair[0]);
                self.v[i].copy_(&pair[1]);
            }
        });
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;

    fn store(seed: i64) -> (nn::VarStore, Tensor) {
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
}
