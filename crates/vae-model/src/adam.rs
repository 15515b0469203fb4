//! Adam over tch tensors with state that can be saved and restored.
//!
//! tch's `nn::Optimizer` wraps an opaque C++ optimizer whose moments and step cannot be read or
//! written (docs/TOOLCHAIN.md §5), so a resumable run needs its own Adam. This one applies TF's
//! update by default (ORIGINAL §4.3): `lr_t = lr √(1−β2^t)/(1−β1^t)`,
//! `θ −= lr_t m / (√v + ε)`; PyTorch's placement of ε (on the bias-corrected `√v̂`) is available
//! to compare with tch's Adam.
//!
//! Speed: the parameters are views into one flat tensor, and so, from the first step on, are
//! their gradients (which [`Adam::backward`] fills with one `cat`). An update is then about ten
//! kernels over the flat buffers whatever the number of variables, instead of a dozen per
//! variable: what decides a step's time on a GPU, where each launch costs microseconds of host
//! time (cargo xtask bench). Should something replace a parameter's storage (a `VarStore`
//! conversion, say), the update notices and falls back to one variable at a time.

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
    /// The step count on the device, once [`step_if`](Adam::step_if) has run: it counts only
    /// the updates the device applied, which the host learns when it reads it back.
    device_step: Option<Tensor>,
    flat: Option<Flat>,
}

/// The flat buffers: every parameter (and, once bound, its gradient) is a view into them.
#[derive(Debug)]
struct Flat {
    params: Tensor,
    m: Tensor,
    v: Tensor,
    /// The gradient buffer, after the first step found every gradient defined.
    grads: Option<Tensor>,
    /// Working space of the update, as large as the buffers (made on the first update).
    scratch: Option<Tensor>,
    /// `(offset, numel)` of each variable in the buffers.
    spans: Vec<(i64, i64)>,
}

/// Views into the flat buffer `buf`, one per tensor of `like`, at its span and in its shape.
fn views(buf: &Tensor, like: &[Tensor], spans: &[(i64, i64)]) -> Vec<Tensor> {
    like.iter()
        .zip(spans)
        .map(|(t, &(off, n))| buf.narrow(0, off, n).view(t.size().as_slice()))
        .collect()
}

/// Concatenates `tensors` into one new flat buffer and makes each of them a view into it, at
/// `spans`, with the same values; returns the buffer. The copy runs under `no_grad`, so the
/// buffer carries no autograd history.
fn rebind_as_views(tensors: &mut [Tensor], spans: &[(i64, i64)]) -> Tensor {
    let flat = tch::no_grad(|| {
        Tensor::cat(
            &tensors.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(),
            0,
        )
    });
    let views = views(&flat, tensors, spans);
    for (t, view) in tensors.iter_mut().zip(views) {
        t.set_data(&view);
    }
    flat
}

impl Flat {
    /// Makes every parameter a view into one new flat tensor, with the same values.
    fn bind(params: &mut [Tensor]) -> Option<Flat> {
        let first = params.first()?;
        let (kind, device) = (first.kind(), first.device());
        if params
            .iter()
            .any(|p| p.kind() != kind || p.device() != device)
        {
            return None;
        }
        let mut spans = Vec::with_capacity(params.len());
        let mut total = 0;
        for p in params.iter() {
            let n = p.numel() as i64;
            spans.push((total, n));
            total += n;
        }
        let flat = rebind_as_views(params, &spans);
        Some(Flat {
            m: flat.zeros_like(),
            v: flat.zeros_like(),
            params: flat,
            grads: None,
            scratch: None,
            spans,
        })
    }

    /// Whether every parameter (and gradient, if bound) still lives in the flat buffers.
    fn intact(&self, params: &[Tensor]) -> bool {
        let elt = self.params.kind().elt_size_in_bytes();
        let at = |base: &Tensor, off: i64| base.data_ptr() as usize + off as usize * elt;
        params.iter().zip(&self.spans).all(|(p, &(off, _))| {
            p.data_ptr() as usize == at(&self.params, off)
                && self.grads.as_ref().is_none_or(|g| {
                    let pg = p.grad();
                    pg.defined() && pg.data_ptr() as usize == at(g, off)
                })
        })
    }

    /// Moves every (defined) gradient into one flat buffer, as views; `None` if one is missing.
    fn bind_grads(&mut self, params: &[Tensor]) -> Option<()> {
        let mut grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
        if grads
            .iter()
            .any(|g| !g.defined() || g.kind() != self.params.kind())
        {
            return None;
        }
        let flat = rebind_as_views(&mut grads, &self.spans);
        self.grads = Some(flat);
        Some(())
    }

    /// The working buffer of an update (a view of it: it is made on the first call).
    fn scratch(&mut self) -> Tensor {
        let params = &self.params;
        self.scratch
            .get_or_insert_with(|| params.empty_like())
            .shallow_clone()
    }

    /// `params += m / d` with `d = c / rsqrt(v) + e` (`c`, `e` 0-dim tensors, which libtorch
    /// treats as scalars), computed in `scratch`. Both flat updates end here, so they run the
    /// same kernels and round alike (`tests/resume.rs` compares the two paths' training).
    fn add_update(&mut self, scratch: &mut Tensor, c: &Tensor, e: &Tensor) {
        let _ = self.v.rsqrt_out(scratch);
        let _ = c.div_out(scratch, scratch);
        let _ = scratch.g_add_(e);
        let _ = self.params.addcdiv_(&self.m, scratch);
    }
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
        let (names, mut params): (Vec<_>, Vec<_>) = vars.into_iter().unzip();
        let flat = Flat::bind(&mut params);
        let (m, v) = match &flat {
            // The moments are views into the flat moment buffers.
            Some(f) => (
                views(&f.m, &params, &f.spans),
                views(&f.v, &params, &f.spans),
            ),
            None => (
                params.iter().map(Tensor::zeros_like).collect(),
                params.iter().map(Tensor::zeros_like).collect(),
            ),
        };
        Adam {
            cfg,
            placement,
            names,
            params,
            m,
            v,
            step: 0,
            device_step: None,
            flat,
        }
    }

    /// Number of updates applied so far (`t`). After [`step_if`](Self::step_if) this reads the
    /// count back from the device (and waits for it).
    pub fn step_count(&self) -> i64 {
        match &self.device_step {
            Some(t) => t.double_value(&[]) as i64,
            None => self.step,
        }
    }

    /// Brings the host's step count up to date and drops the device's.
    fn host_step(&mut self) {
        if self.device_step.is_some() {
            self.step = self.step_count();
            self.device_step = None;
        }
    }

    /// The gradients of `loss` (a 0-dim tensor) with respect to every variable, in place of
    /// the previous ones: [`zero_grad`](Self::zero_grad) and `loss.backward()` in one.
    ///
    /// Once the flat gradient buffer is bound (after the first [`step`](Self::step)), autograd
    /// hands the gradients back (`torch.autograd.grad` semantics) instead of adding each into its
    /// variable's `.grad`, and one `cat` writes them all into the buffer: no `zero_` of the
    /// buffer and no `add_` per variable, which on a GPU are a launch each (the CPU default has
    /// 43 variables). The gradients autograd returns all live until the `cat`: the peak holds
    /// one more copy of the gradients (11 MB for the CPU default's 2.7 M parameters). A variable
    /// the loss does not reach gets a zero gradient, as `zero_grad` would leave it.
    pub fn backward(&mut self, loss: &Tensor) {
        if !self.flat_ready() {
            self.zero_grad();
            loss.backward();
            return;
        }
        let f = self.flat.as_ref().expect("flat_ready");
        let buffer = f.grads.as_ref().expect("flat_ready");
        let grads = Tensor::run_backward(&[loss], &self.params, false, false);
        let (kind, device) = (buffer.kind(), buffer.device());
        let pieces: Vec<Tensor> = grads
            .iter()
            .zip(&f.spans)
            .map(|(g, &(_, n))| match g.defined() {
                true => g.reshape([-1]),
                false => Tensor::zeros([n], (kind, device)),
            })
            .collect();
        let _ = tch::no_grad(|| Tensor::cat_out(buffer, &pieces, 0));
    }

    /// Clears the gradients of every variable.
    pub fn zero_grad(&mut self) {
        if let Some(g) = self.flat_grads() {
            let _ = tch::no_grad(|| g.shallow_clone().zero_());
            return;
        }
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// The flat gradient buffer, when every parameter and gradient still lives in the flat
    /// buffers (one kernel then does what one per variable would).
    fn flat_grads(&self) -> Option<&Tensor> {
        let f = self.flat.as_ref()?;
        let g = f.grads.as_ref()?;
        f.intact(&self.params).then_some(g)
    }

    /// Global L2 norm of the current gradients (0 for variables without one).
    pub fn grad_norm(&self) -> f64 {
        self.grad_sq_norm().double_value(&[]).sqrt()
    }

    /// Squared global L2 norm of the current gradients, as a 0-dim f64 tensor on their device:
    /// computed without waiting for the device, so that a caller can read it back together
    /// with other values in one transfer.
    ///
    /// Each norm is libtorch's one-pass f32 reduction, squared in f64: summing the squares in
    /// f64 took a cast, a temporary and two more passes over every gradient (1.9 ms against
    /// 0.3 ms for 2.7 M parameters on 2 cores, a thirtieth of the CPU default's step). A
    /// gradient whose f32 sum of squares overflows (norm > 1.8e19) counts as non-finite.
    pub fn grad_sq_norm(&self) -> Tensor {
        let sq = |g: &Tensor| g.norm().to_kind(Kind::Double).square();
        if let Some(g) = self.flat_grads() {
            return tch::no_grad(|| sq(g));
        }
        tch::no_grad(|| {
            let parts: Vec<Tensor> = self
                .params
                .iter()
                .map(|p| p.grad())
                .filter(|g| g.defined())
                .map(|g| sq(&g))
                .collect();
            match parts.is_empty() {
                true => Tensor::zeros([], (Kind::Double, self.device())),
                false => Tensor::stack(&parts, 0).sum(Kind::Double),
            }
        })
    }

    /// Where the variables live (the CPU if there are none).
    fn device(&self) -> tch::Device {
        self.params.first().map_or(tch::Device::Cpu, Tensor::device)
    }

    /// Whether every gradient is finite.
    pub fn grads_finite(&self) -> bool {
        if let Some(g) = self.flat_grads() {
            return tch::no_grad(|| g.isfinite().all().int64_value(&[]) == 1);
        }
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
        self.host_step();
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        if self.flat_ready() {
            self.flat_step(lr, c1, c2);
            return;
        }
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

    /// [`step`](Self::step) when `ok` (a 0-dim bool tensor on the variables' device, e.g. "the
    /// loss and gradient norm are finite") holds, and no change at all otherwise, decided on
    /// the device: the host need not wait for `ok`, so it can queue the next step's kernels
    /// while the GPU works (cargo xtask bench). On a skip the gradient buffer is zeroed in
    /// place first, so that its NaNs cannot reach the moments through the zero weight.
    /// Without the flat buffers this reads `ok` back and calls `step`.
    pub fn step_if(&mut self, lr: f64, ok: &Tensor) {
        if !self.flat_ready() {
            if ok.to_kind(Kind::Int64).int64_value(&[]) != 0 {
                self.step(lr);
            }
            return;
        }
        let AdamConfig {
            beta1: b1,
            beta2: b2,
            eps,
        } = self.cfg;
        let placement = self.placement;
        let f = self.flat.as_mut().expect("flat_ready");
        let mut g = f.grads.as_ref().expect("flat_ready").shallow_clone();
        let host_t = self.step as f64;
        let t = self
            .device_step
            .get_or_insert_with(|| Tensor::from(host_t).to_device(f.params.device()));
        tch::no_grad(|| {
            let mut scratch = f.scratch();
            let ok_f = ok.to_kind(f.m.kind());
            let _ = g.masked_fill_(&ok.logical_not(), 0.0);
            // A weight of 0 leaves the moments exactly as they were.
            let _ = f.m.lerp_tensor_(&g, &(&ok_f * (1.0 - b1)));
            let _ = g.square_out(&scratch);
            let _ = f.v.lerp_tensor_(&scratch, &(&ok_f * (1.0 - b2)));
            let _ = t.g_add_(&ok.to_kind(Kind::Double));
            let c1 = Tensor::pow_scalar(b1, &*t).neg() + 1.0;
            let c2 = Tensor::pow_scalar(b2, &*t).neg() + 1.0;
            // flat_step's denominator d = c / rsqrt(v) + e, from device-side c and e, through
            // the same `add_update`. A skipped step takes c = 0 and e = −∞: d = −∞ everywhere,
            // also where rsqrt(v) = ∞, and m / d adds exactly ±0; the step-size terms, infinite
            // or NaN at t = 0, are then not used.
            let (c, e) = match placement {
                EpsPlacement::Tf => {
                    let per_step = (c2.sqrt() / c1 * lr).reciprocal();
                    (-&per_step, per_step * -eps)
                }
                EpsPlacement::Torch => {
                    let per_step = (c1.reciprocal() * lr).reciprocal();
                    (-(&per_step / c2.sqrt()), per_step * -eps)
                }
            };
            let c = c.where_scalarother(ok, 0.0);
            let e = e.where_scalarother(ok, f64::NEG_INFINITY);
            f.add_update(&mut scratch, &c, &e);
        });
    }

    /// Whether the flat buffers can be used for an update (binding the gradients on the first
    /// call); gives them up for good when a storage was replaced.
    fn flat_ready(&mut self) -> bool {
        let Some(f) = self.flat.as_mut() else {
            return false;
        };
        if f.grads.is_none() && f.bind_grads(&self.params).is_none() {
            return false;
        }
        if !f.intact(&self.params) {
            // Something replaced a parameter's or gradient's storage: one variable at a time
            // from now on (the moments stay views into the flat buffers, which is harmless).
            self.flat = None;
            return false;
        }
        true
    }

    /// The update over the flat buffers, which [`flat_ready`](Self::flat_ready) checked: seven
    /// kernels, with no allocation after the first step (`scratch` holds `g²`, then the
    /// denominator).
    ///
    /// The denominator comes from `rsqrt`: `c / rsqrt(v) + e` is `−(√v + ε) / step` (TF) or
    /// `−(√v̂ + ε) / step` (torch), and `v = 0` gives `c / ∞ + e = e`, ε's term alone, as it
    /// should. libtorch's CPU `sqrt` calls MKL's vector library, which is slow on zeros and
    /// subnormals (masked cMADE weights and never-lit border pixels keep `v = 0` for good):
    /// 2.7 M values took 8.1 ms of zeros, 1.5 ms of random ones, against 0.8 ms for `rsqrt` and
    /// 0.3 ms for the division, one thread. The whole update took 2.7–3.5 ms on two threads
    /// against 3.0–4.4 with `sqrt` (PyTorch 2.11). The result differs from `√v` by rounding
    /// only (relative 2.4e-7 measured).
    fn flat_step(&mut self, lr: f64, c1: f64, c2: f64) {
        let AdamConfig {
            beta1: b1,
            beta2: b2,
            eps,
        } = self.cfg;
        // p += m / d with d = c / rsqrt(v) + e.
        let (c, e) = match self.placement {
            EpsPlacement::Tf => {
                let step = lr * c2.sqrt() / c1;
                (-1.0 / step, -eps / step)
            }
            EpsPlacement::Torch => {
                let step = lr / c1;
                (-1.0 / (step * c2.sqrt()), -eps / step)
            }
        };
        let f = self.flat.as_mut().expect("flat_ready");
        let g = f.grads.as_ref().expect("flat_ready").shallow_clone();
        tch::no_grad(|| {
            let mut scratch = f.scratch();
            let _ = f.m.lerp_(&g, 1.0 - b1);
            let _ = g.square_out(&scratch);
            let _ = f.v.lerp_(&scratch, 1.0 - b2);
            f.add_update(&mut scratch, &Tensor::from(c), &Tensor::from(e));
        });
    }

    /// The state as named tensors: `adam.m.<var>`, `adam.v.<var>` and `adam.step`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.names.len() + 1);
        for (i, name) in self.names.iter().enumerate() {
            out.push((format!("adam.m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("adam.v.{name}"), self.v[i].shallow_clone()));
        }
        out.push(("adam.step".into(), Tensor::from_slice(&[self.step_count()])));
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
        self.device_step = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;

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
}
